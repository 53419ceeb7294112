//! Extraction of one resource: build the first request from the config, send it, parse the
//! body once, select the records (dlt's `data_selector` rules), ask the paginator for the next
//! request, and fetch that page while the caller processes this one.

pub mod incremental;
pub mod steps;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use incremental::Incremental;
use resttap_config::Rendered;
use resttap_config::{AuthConfig, ClientConfig, Resource, py_str, to_jsonpath};
use resttap_http::{Body, Client, HttpError, RequestSpec, Response, RetryNotice};
use resttap_json::Bump;
pub use resttap_json::{Json, Node};
use resttap_paginate::{Detected, Page as PageView, PaginateError, Paginator};
use serde_json::Value;
use serde_json_path::JsonPath;
use tokio::task::JoinHandle;
use url::Url;

/// Why a resource could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("resource `{resource}`: {source}")]
    Http {
        resource: String,
        #[source]
        source: HttpError,
    },
    /// A body is not valid JSON (for example a truncated page).
    /// `message` names the parser's complaint and the response's `Content-Type`.
    #[error("resource `{resource}`: the response from {url} is not valid JSON ({message}); it starts with: {excerpt}")]
    Json { resource: String, url: String, message: String, excerpt: String },
    #[error("resource `{resource}`: pagination of {url} failed: {source}")]
    Paginate {
        resource: String,
        url: String,
        #[source]
        source: PaginateError,
    },
    /// A child resource's placeholder names a field its parent record does not have.
    #[error(
        "resource `{resource}`: the record from parent resource `{parent}` has no field `{field}` (for `{{resources.{parent}.{field}}}`); its fields are: {available}"
    )]
    ParentField { resource: String, parent: String, field: String, available: String },
    /// The endpoint URL cannot be built.
    #[error("resource `{resource}`: cannot build the URL from `client.base_url` and `endpoint.path`: {message}")]
    Url { resource: String, message: String },
}

/// Live counters of one resource, shared with the progress display.
#[derive(Debug, Default)]
pub struct Counters {
    pub pages: AtomicU64,
    pub records: AtomicU64,
    pub retries: AtomicU64,
    pub bytes: AtomicU64,
    /// Microseconds the resource's requests waited for their turns under rate limits.
    pub rate_limit_us: AtomicU64,
}

/// One page of records.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<Value>,
    /// The URL it came from (secrets redacted).
    pub url: String,
}

/// What [`Extractor::probe`] found on a resource's first page.
#[derive(Debug)]
pub struct Probe {
    /// The HTTP status.
    pub status: u16,
    /// The URL the page came from (secrets redacted; after redirects).
    pub url: String,
    /// The page's records.
    pub records: Vec<Value>,
    /// The next page's URL (secrets redacted), if the paginator would ask for one.
    pub next_page: Option<String>,
    /// What auto-detection chose (data selector, paginator), as in [`Extractor::detected`].
    pub detected: Vec<String>,
}

/// dlt's `join_url`: the base with exactly one `/` before the path; an absolute path wins.
pub fn join_url(base: &str, path: &str) -> Result<Url, String> {
    if let Ok(abs) = Url::parse(path)
        && abs.has_host()
    {
        return Ok(abs);
    }
    let joined = if path.is_empty() {
        base.to_string()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
    };
    Url::parse(&joined).map_err(|e| format!("`{joined}`: {e}"))
}

fn param_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The values a request's placeholders take besides secrets: `{incremental.*}` (as they are at
/// the start of the run) and `{resources.<parent>.<field>}`; and the incremental query params.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// `"incremental.start_value"`, `"resources.forums.id"`, ... → value.
    values: HashMap<String, Value>,
    /// `start_param` / `end_param` with their values.
    params: Vec<(String, Value)>,
}

impl Context {
    /// The placeholder values and params of an incremental resource (or none).
    pub fn new(inc: Option<&Incremental>) -> Self {
        let mut c = Context::default();
        if let Some(inc) = inc {
            for name in ["start_value", "last_value", "end_value", "initial_value"] {
                if let Some(v) = inc.placeholder(name) {
                    c.values.insert(format!("incremental.{name}"), v);
                }
            }
            c.params = inc.params();
        }
        c
    }

    /// This context for one window of `incremental.window`: the window's start and end as
    /// `{incremental.start_value}` and `{incremental.end_value}`, and in `start_param` and
    /// `end_param`.
    pub fn for_window(&self, cfg: &resttap_config::IncrementalConfig, start: &Value, end: &Value) -> Self {
        let mut c = self.clone();
        c.values.insert("incremental.start_value".into(), start.clone());
        c.values.insert("incremental.end_value".into(), end.clone());
        for (param, value) in [(&cfg.start_param, start), (&cfg.end_param, end)] {
            if let Some(p) = param {
                c.params.retain(|(k, _)| k != p);
                c.params.push((p.clone(), value.clone()));
            }
        }
        c
    }

    /// This context with the values of one parent record (from [`parent_values`]).
    pub fn with_parent(&self, parent: HashMap<String, Value>) -> Self {
        let mut c = self.clone();
        c.values.extend(parent.into_iter().map(|(k, v)| (format!("resources.{k}"), v)));
        c
    }

    /// The value of placeholder `{ns.name}`, keeping its JSON type.
    fn value(&self, ns: &str, name: &str) -> Option<Value> {
        self.values.get(&format!("{ns}.{name}")).cloned()
    }

    fn text(&self, ns: &str, name: &str) -> Option<String> {
        self.value(ns, name).map(|v| param_text(&v))
    }
}

/// The values a child's placeholders take from one parent record (dlt's
/// `collect_resolved_values`: a field is a key or a JSONPath into the record).
pub fn parent_values(res: &Resource, record: &Value) -> Result<HashMap<String, Value>, ExtractError> {
    let mut out = HashMap::new();
    for (parent, field) in res.endpoint.parent_refs() {
        let found = match record.get(&field) {
            Some(v) => Some(v.clone()),
            None => JsonPath::parse(&to_jsonpath(&field))
                .ok()
                .and_then(|p| p.query(record).all().into_iter().next().cloned()),
        };
        match found {
            Some(v) => {
                out.insert(format!("{parent}.{field}"), v);
            }
            None => {
                let available = fields_of(record);
                return Err(ExtractError::ParentField { resource: res.name.clone(), parent, field, available });
            }
        }
    }
    Ok(out)
}

/// dlt's `include_from_parent`: the parent record's fields to add to each child record, named
/// `_<parent>_<field>` as dlt's `make_parent_key_name` does.
pub fn included_from_parent(res: &Resource, record: &Value) -> Result<Vec<(String, Value)>, ExtractError> {
    let parent = res.parent.clone().unwrap_or_default();
    let mut out = Vec::new();
    for field in res.include_from_parent.iter().flatten() {
        match record.get(field) {
            Some(v) => out.push((format!("_{parent}_{field}"), v.clone())),
            None => {
                return Err(ExtractError::ParentField {
                    resource: res.name.clone(),
                    parent,
                    field: field.clone(),
                    available: fields_of(record),
                });
            }
        }
    }
    Ok(out)
}

/// The top-level keys of a record, for messages.
fn fields_of(record: &Value) -> String {
    match record {
        Value::Object(m) => m.keys().cloned().collect::<Vec<_>>().join(", "),
        other => format!("none (the record is `{}`)", resttap_http::excerpt(other.to_string().as_bytes())),
    }
}

/// Renders placeholders in a JSON body: a string that is exactly one placeholder takes the
/// value with its type (`{"since": "{incremental.start_value}"}` stays a number if it is one).
fn render_json(client: &Client, v: &Value, ctx: &Context) -> Value {
    let text = |ns: &str, name: &str| ctx.text(ns, name);
    match v {
        Value::String(s) => {
            let whole = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')).filter(|r| !r.contains(['{', '}']));
            if let Some(val) = whole.and_then(|w| w.split_once('.')).and_then(|(ns, name)| ctx.value(ns, name)) {
                return val;
            }
            Value::String(client.render_with(s, &text).expose().to_string())
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| render_json(client, x, ctx)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (client.render_with(k, &text).expose().to_string(), render_json(client, x, ctx)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The first request of a resource, from the client and endpoint config and the placeholder
/// values of `ctx` (the incremental start, the parent record).
pub fn first_request(
    client: &Client,
    cfg: &ClientConfig,
    res: &Resource,
    ctx: &Context,
) -> Result<RequestSpec, ExtractError> {
    let uerr = |message: String| ExtractError::Url { resource: res.name.clone(), message };
    let values = |ns: &str, name: &str| -> Option<String> { ctx.text(ns, name) };
    let base = client.render(&cfg.base_url);
    let path = client.render_with(res.endpoint.path.as_deref().unwrap_or(&res.name), &values);
    let url = join_url(base.expose(), path.expose()).map_err(|m| uerr(client.redactor().redact(&m)))?;
    // the credentials' origin comes from the configuration alone: the path with only secrets
    // filled in (a parent's or the incremental's values come from the API, and could name any
    // host), joined with `client.base_url`
    let configured = join_url(base.expose(), client.render(res.endpoint.path.as_deref().unwrap_or(&res.name)).expose())
        .map_or_else(|_| url.origin(), |u| u.origin());
    let mut req = RequestSpec::new(res.endpoint.method, url);
    req.origin = Some(configured);
    req.json = res.endpoint.json.as_ref().map(|j| render_json(client, j, ctx));
    req.data = match &res.endpoint.data {
        Some(Value::String(s)) => Some(Body::Raw(client.render_with(s, &values))),
        Some(Value::Object(m)) => Some(Body::Form(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => client.render_with(s, &values),
                        other => Rendered::new(py_str(other), false),
                    };
                    (k.clone(), text)
                })
                .collect(),
        )),
        _ => None, // other shapes are rejected by the config loader
    };
    for (k, v) in cfg.headers.iter().chain(res.endpoint.headers.iter()) {
        req.headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
        req.headers.push((k.clone(), client.render_with(v, &values)));
    }
    for (k, v) in &res.endpoint.params {
        let text = match v {
            Value::String(s) => client.render_with(s, &values).expose().to_string(),
            Value::Null => continue,
            other => other.to_string(),
        };
        req.query.push((k.clone(), text));
    }
    for (k, v) in &ctx.params {
        req.set_query(k, param_text(v));
    }
    let auth: Option<&AuthConfig> = res.endpoint.auth.as_ref().or(cfg.auth.as_ref());
    if let Some(a) = auth {
        client.apply_auth(a, &mut req).map_err(|source| ExtractError::Http { resource: res.name.clone(), source })?;
    }
    Ok(req)
}

/// How records are found in a body.
enum Selector {
    /// `$.a.b`: taken out of the body without copying.
    Keys(Vec<String>),
    /// Any other JSONPath.
    Path(JsonPath),
    /// Not configured: detected on the first page, as dlt does.
    Detect,
}

impl Selector {
    fn new(data_selector: Option<&str>) -> Selector {
        let Some(sel) = data_selector else { return Selector::Detect };
        match plain_keys(sel) {
            Some(keys) => Selector::Keys(keys),
            None => Selector::Path(
                JsonPath::parse(&to_jsonpath(sel)).expect("data_selector validated by the config loader"),
            ),
        }
    }
}

/// A JSONPath (or dlt's shorthand) that is only object keys (`$`, `data.items`, `$.a.b`), as
/// those keys: such a path is followed without a JSONPath engine.
pub fn plain_keys(path: &str) -> Option<Vec<String>> {
    let p = to_jsonpath(path);
    let rest = p.strip_prefix('$').unwrap_or(&p);
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let keys: Vec<&str> = rest.strip_prefix('.')?.split('.').collect();
    keys.iter()
        .all(|k| !k.is_empty() && k.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-'))
        .then(|| keys.into_iter().map(String::from).collect())
}

/// Parses a response body. A UTF-8 body (every JSON body should be) is checked once as a whole
/// and parsed as text, which spares serde_json a check of every string; anything else is parsed
/// as bytes for serde_json's error, which names the line and column.
fn parse_body<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, serde_json::Error> {
    match simdutf8::basic::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
}

/// [`parse_body`] into a [`Json`] tree in `arena`.
fn parse_json<'a>(body: &'a [u8], arena: &'a Bump) -> Result<Json<'a>, serde_json::Error> {
    match simdutf8::basic::from_utf8(body) {
        Ok(text) => Json::parse(text, arena),
        // serde_json's error says where the bytes that are not UTF-8 are
        Err(_) => Err(serde_json::from_slice::<Value>(body)
            .err()
            .unwrap_or_else(|| serde::de::Error::custom("the body is not UTF-8"))),
    }
}

/// dlt's `find_response_page_data`: the first list under a records-like key (`data`, `items`,
/// `results`, ...) within three levels, else the first list, else the whole body.
fn detect(body: &Value) -> Vec<String> {
    const RECORD_KEYS: [&str; 11] = [
        "data", "items", "results", "entries", "records", "rows", "entities", "payload", "content", "objects", "values",
    ];
    fn lists(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if path.len() > 2 {
            return;
        }
        if let Value::Object(m) = v {
            for (k, child) in m {
                path.push(k.clone());
                if child.is_array() {
                    out.push(path.clone());
                } else if child.is_object() {
                    lists(child, path, out);
                }
                path.pop();
            }
        }
    }
    let mut found = Vec::new();
    lists(body, &mut Vec::new(), &mut found);
    found
        .iter()
        .find(|p| p.last().is_some_and(|k| RECORD_KEYS.contains(&k.as_str())))
        .or(found.first())
        .cloned()
        .unwrap_or_default()
}

/// Takes the records out of `body` (dlt's `extract_response`: one match is the data, a list is
/// the records, anything else one record; null or no match is an empty page).
fn take_records(selector: &Selector, body: &mut Value) -> (Vec<Value>, bool) {
    let data = match selector {
        Selector::Keys(keys) => {
            let mut cur = &mut *body;
            for k in keys {
                match cur.get_mut(k) {
                    Some(next) => cur = next,
                    None => return (Vec::new(), true),
                }
            }
            cur.take()
        }
        Selector::Path(p) => {
            let mut found: Vec<Value> = p.query(body).all().into_iter().cloned().collect();
            match found.len() {
                0 => return (Vec::new(), true),
                1 => found.pop().expect("one"),
                _ => Value::Array(found),
            }
        }
        Selector::Detect => unreachable!("detected before use"),
    };
    match data {
        Value::Array(a) => (a, false),
        Value::Null => (Vec::new(), true),
        other => (vec![other], false),
    }
}

fn count_records(selector: &Selector, body: &Value) -> usize {
    match selector {
        Selector::Keys(keys) => keys.iter().try_fold(body, |cur, k| cur.get(k)).map_or(0, |v| match v {
            Value::Array(a) => a.len(),
            Value::Null => 0,
            _ => 1,
        }),
        Selector::Path(p) => {
            let found = p.query(body).all();
            match found.as_slice() {
                [] => 0,
                [Value::Array(a)] => a.len(),
                [Value::Null] => 0,
                [_] => 1,
                many => many.len(),
            }
        }
        Selector::Detect => 0,
    }
}

type Pending = JoinHandle<Result<Response, HttpError>>;

/// The pages of one resource, fetched ahead of the caller: the next one always, and up to
/// `client.page_concurrency` at once when the paginator knows them ahead
/// ([`Paginator::ahead`]). Pages reach the caller in order, each once.
pub struct Extractor {
    resource: String,
    client: Client,
    selector: Selector,
    paginator: Paginator,
    /// Requests sent and not yet read, in page order.
    queue: std::collections::VecDeque<(RequestSpec, Pending)>,
    /// Pages in flight at most.
    concurrency: usize,
    counters: Arc<Counters>,
    actions: Vec<resttap_config::ResponseAction>,
    /// The previous page's body: an identical next page means the API ignores the paginator.
    last_body: Option<bytes::Bytes>,
    /// Where [`Extractor::next_page_borrowed`] parses a page, reused from page to page.
    arena: Bump,
    /// What auto-detection chose, once (paginator and data selector), for a warning.
    pub detected: Vec<String>,
}

fn spawn_fetch(client: &Client, req: &RequestSpec, counters: &Arc<Counters>) -> Pending {
    let client = client.clone();
    let req = req.clone();
    let counters = Arc::clone(counters);
    tokio::spawn(async move {
        let on_retry = |n: &RetryNotice| {
            counters.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("retrying request {} of {} in {:.1} s: {}", n.retry, n.url, n.delay.as_secs_f64(), n.reason);
        };
        let (sent, waited) = resttap_http::ratelimit::measure_wait(client.send(&req, &on_retry)).await;
        counters.rate_limit_us.fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        sent
    })
}

impl Extractor {
    /// Starts fetching the first page of `res`.
    pub fn start(
        client: Client,
        cfg: &ClientConfig,
        res: &Resource,
        counters: Arc<Counters>,
        ctx: &Context,
    ) -> Result<Self, ExtractError> {
        let mut req = first_request(&client, cfg, res, ctx)?;
        let paginator_cfg = res.endpoint.paginator.as_ref().or(cfg.paginator.as_ref());
        let paginator = Paginator::new(paginator_cfg);
        paginator.init(&mut req);
        let pending = spawn_fetch(&client, &req, &counters);
        Ok(Extractor {
            resource: res.name.clone(),
            selector: Selector::new(res.endpoint.data_selector.as_deref()),
            paginator,
            actions: res.endpoint.response_actions.clone().unwrap_or_default(),
            queue: std::collections::VecDeque::from([(req, pending)]),
            concurrency: cfg.page_concurrency.max(1),
            client,
            counters,
            last_body: None,
            arena: Bump::new(),
            detected: Vec::new(),
        })
    }

    /// The next response, or `None` after the last one (or when `response_actions` ignore it).
    async fn receive(&mut self) -> Result<Option<(RequestSpec, Response, String)>, ExtractError> {
        let Some((req, pending)) = self.queue.pop_front() else { return Ok(None) };
        let resource = &self.resource;
        let resp = match pending.await {
            Ok(Err(HttpError::Status { status, body, .. }))
                if self.actions.iter().any(|a| a.matches(status, &body)) =>
            {
                tracing::info!(resource = %resource, status, "response ignored by response_actions");
                return Ok(None);
            }
            Ok(r) => r.map_err(|source| ExtractError::Http { resource: resource.clone(), source })?,
            Err(join) => {
                return Err(ExtractError::Http {
                    resource: resource.clone(),
                    source: HttpError::Setup(format!("request task failed: {join}")),
                });
            }
        };
        if self.actions.iter().any(|a| a.matches(resp.status.as_u16(), &resp.body)) {
            tracing::info!(resource = %resource, status = resp.status.as_u16(), "response ignored by response_actions");
            return Ok(None);
        }
        let shown = self.client.redactor().redact(resp.url.as_str());
        Ok(Some((req, resp, shown)))
    }

    fn json_error(&self, resp: &Response, shown: &str, e: serde_json::Error) -> ExtractError {
        let content_type = resp
            .headers
            .get(resttap_http::reqwest_header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none given")
            .to_string();
        ExtractError::Json {
            resource: self.resource.clone(),
            url: shown.to_string(),
            message: format!("{e}; Content-Type: {content_type}"),
            excerpt: self.client.redactor().redact(&resttap_http::excerpt(&resp.body)),
        }
    }

    /// After a page with `n` records: refuses a page identical to the one before, asks the
    /// paginator for the next request (`body` is what it reads) and starts fetching it.
    fn advance(
        &mut self,
        req: &RequestSpec,
        resp: &Response,
        shown: &str,
        body: &Value,
        n: usize,
    ) -> Result<(), ExtractError> {
        let perr = |source| ExtractError::Paginate { resource: self.resource.clone(), url: shown.to_string(), source };
        if n > 0 && self.last_body.as_ref().is_some_and(|prev| *prev == resp.body) {
            let pages = self.counters.pages.load(Ordering::Relaxed) as usize;
            return Err(perr(PaginateError::SamePage { pages }));
        }
        self.last_body = Some(resp.body.clone());
        let mut detected: Option<Detected> = None;
        let page = PageView { body, headers: &resp.headers, records: n, url: &resp.url };
        let next = self.paginator.next(req, &page, &mut detected).map_err(perr)?;
        if let Some(d) = detected {
            self.detected.push(format!("paginator {}", d.0));
        }
        // the fetches already under way that are the plan's first pages go on; the rest stop
        let plan: Vec<RequestSpec> = match next {
            Some(next_req) => {
                let ahead = self.paginator.ahead(&next_req, self.concurrency - 1);
                std::iter::once(next_req).chain(ahead).collect()
            }
            None => Vec::new(),
        };
        let kept = self.queue.iter().zip(&plan).take_while(|((queued, _), want)| same_request(queued, want)).count();
        for (_, pending) in self.queue.drain(kept..) {
            pending.abort();
        }
        for want in plan.into_iter().skip(kept) {
            let pending = spawn_fetch(&self.client, &want, &self.counters);
            self.queue.push_back((want, pending));
        }
        self.counters.pages.fetch_add(1, Ordering::Relaxed);
        self.counters.records.fetch_add(n as u64, Ordering::Relaxed);
        self.counters.bytes.fetch_add(resp.body.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Without a configured data selector, detects it on the first page, as dlt does.
    fn detect_selector(&mut self, body: &Value) {
        if let Selector::Detect = self.selector {
            let path = detect(body);
            let shown_path = if path.is_empty() { "$".to_string() } else { path.join(".") };
            self.detected.push(format!("data_selector `{shown_path}`"));
            self.selector = Selector::Keys(path);
        }
    }

    /// The next page, or `None` after the last one.
    pub async fn next_page(&mut self) -> Result<Option<Page>, ExtractError> {
        let Some((req, resp, shown)) = self.receive().await? else { return Ok(None) };
        let mut body: Value = parse_body(&resp.body).map_err(|e| self.json_error(&resp, &shown, e))?;
        self.detect_selector(&body);
        let n = count_records(&self.selector, &body);
        self.advance(&req, &resp, &shown, &body, n)?;
        // as in `next_page_borrowed`: the next request goes out before the caller gets the records
        tokio::task::yield_now().await;
        let (records, empty_match) = take_records(&self.selector, &mut body);
        if empty_match && self.counters.pages.load(Ordering::Relaxed) == 1 {
            tracing::warn!(resource = %self.resource, url = %shown, "the data selector matched nothing or null: empty page");
        }
        Ok(Some(Page { records, url: shown }))
    }

    /// The first response alone, for `resttap check`: its status and records, the data
    /// selector (detected if not configured) and whether the paginator would ask for another
    /// page. No second request is sent. `None` when `response_actions` ignore the response.
    pub async fn probe(mut self) -> Result<Option<Probe>, ExtractError> {
        let Some((req, resp, shown)) = self.receive().await? else { return Ok(None) };
        let mut body: Value = parse_body(&resp.body).map_err(|e| self.json_error(&resp, &shown, e))?;
        self.detect_selector(&body);
        let n = count_records(&self.selector, &body);
        let mut detected: Option<Detected> = None;
        let page = PageView { body: &body, headers: &resp.headers, records: n, url: &resp.url };
        let next = self.paginator.next(&req, &page, &mut detected).map_err(|source| ExtractError::Paginate {
            resource: self.resource.clone(),
            url: shown.clone(),
            source,
        })?;
        if let Some(d) = detected {
            self.detected.push(format!("paginator {}", d.0));
        }
        let next_page = next.map(|r| self.client.redactor().redact(r.full_url().as_str()));
        let (records, _) = take_records(&self.selector, &mut body);
        Ok(Some(Probe {
            status: resp.status.as_u16(),
            url: shown,
            records,
            next_page,
            detected: std::mem::take(&mut self.detected),
        }))
    }

    /// The key path to the records when it is a plain one (`data.items`), which
    /// [`Extractor::next_page_borrowed`] needs.
    pub fn records_path(&self) -> Option<&[String]> {
        match &self.selector {
            Selector::Keys(k) if !k.is_empty() => Some(k),
            _ => None,
        }
    }

    /// Like [`Extractor::next_page`], for a resource whose records only the normalizer reads:
    /// the body is parsed once into a [`Json`] tree that borrows from it, `f` gets the records,
    /// and the paginator reads the rest of the body. Returns `false` after the last page.
    /// Requires [`Extractor::records_path`].
    pub async fn next_page_borrowed<E: From<ExtractError>>(
        &mut self,
        f: impl FnOnce(&[Json<'_>]) -> Result<(), E>,
    ) -> Result<bool, E> {
        let Some((req, resp, shown)) = self.receive().await? else { return Ok(false) };
        let keys = self.records_path().expect("next_page_borrowed needs a plain records path").to_vec();
        // the page before's tree is gone: its arena is reused (an error leaves a new one)
        let mut arena = std::mem::take(&mut self.arena);
        arena.reset();
        {
            let body = parse_json(&resp.body, &arena).map_err(|e| self.json_error(&resp, &shown, e))?;
            let found = keys.iter().try_fold(&body, |cur, k| Node::get(cur, k));
            let records: &[Json<'_>] = match found {
                None | Some(Json::Null) => &[],
                Some(Json::Arr(a)) => a,
                Some(one) => std::slice::from_ref(one),
            };
            if found.is_none_or(|v| matches!(v, Json::Null)) && self.counters.pages.load(Ordering::Relaxed) == 0 {
                tracing::warn!(resource = %self.resource, url = %shown, "the data selector matched nothing or null: empty page");
            }
            let envelope = body.to_value_without(&keys);
            self.advance(&req, &resp, &shown, &envelope, records.len())?;
            // the next page's request (spawned by `advance`) goes out before this page's records
            // are read: without the yield it waits for `f` to return, on the worker running this
            tokio::task::yield_now().await;
            f(records)?;
        }
        self.arena = arena;
        Ok(true)
    }
}

/// Whether two requests fetch the same page.
fn same_request(a: &RequestSpec, b: &RequestSpec) -> bool {
    a.method == b.method && a.full_url() == b.full_url() && a.json == b.json && a.data == b.data
}

impl Drop for Extractor {
    fn drop(&mut self) {
        for (_, pending) in self.queue.drain(..) {
            pending.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Serves `/items` in two pages (`{"items": [...], "next": "2"}`, then `"next": null`) and
    /// counts the requests received.
    fn serve_two_pages() -> (String, Arc<AtomicUsize>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&requests);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let count = Arc::clone(&count);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut conn = conn;
                    loop {
                        let mut first = String::new();
                        if reader.read_line(&mut first).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut line = String::new();
                        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                            line.clear();
                        }
                        count.fetch_add(1, Ordering::SeqCst);
                        let body = if first.contains("cursor=2") {
                            r#"{"items": [{"id": 2}], "next": null}"#
                        } else {
                            r#"{"items": [{"id": 1}], "next": "2"}"#
                        };
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                        if conn.write_all(format!("{head}{body}").as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (format!("http://{addr}"), requests)
    }

    /// Waits (blocking the thread) up to 5 s for the server to have `n` requests; returns the count.
    fn blocking_wait_for(requests: &AtomicUsize, n: usize) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while requests.load(Ordering::SeqCst) < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        requests.load(Ordering::SeqCst)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_next_page_is_requested_before_the_records_of_this_one_are_read() {
        for borrowed in [true, false] {
            let (base, requests) = serve_two_pages();
            let yaml = format!(
                "client: {{base_url: '{base}'}}\nresources:\n  - name: items\n    endpoint:\n      path: items\n      \
                 data_selector: items\n      paginator: {{type: cursor, cursor_path: next, cursor_param: cursor}}\n"
            );
            let sources = resttap_config::SecretSources { ignore_env: true, ..Default::default() };
            let path = std::path::Path::new("t.yaml");
            let config =
                resttap_config::load_str(&yaml, resttap_config::Format::Yaml, path, &Default::default(), &sources)
                    .unwrap();
            let client =
                Client::new(config.api.client.retry.clone(), Duration::from_secs(10), config.secrets.clone()).unwrap();
            let res = &config.api.resources[0];
            let counters = Arc::new(Counters::default());
            let mut ex = Extractor::start(client, &config.api.client, res, counters, &Context::new(None)).unwrap();
            // this runtime's one thread is blocked while a page's records are read: only a
            // request sent before can reach the server
            let mut seen = Vec::new();
            if borrowed {
                loop {
                    let read = |records: &[Json<'_>]| {
                        seen.push((records.len(), blocking_wait_for(&requests, 2)));
                        Ok::<(), ExtractError>(())
                    };
                    if !ex.next_page_borrowed(read).await.unwrap() {
                        break;
                    }
                }
            } else {
                while let Some(page) = ex.next_page().await.unwrap() {
                    seen.push((page.records.len(), blocking_wait_for(&requests, 2)));
                }
            }
            // while page 1 was read, the server had the request for page 2
            assert_eq!(seen, [(1, 2), (1, 2)], "borrowed: {borrowed}");
        }
    }

    #[test]
    fn bodies_parse_as_text_and_bad_bytes_are_located() {
        let v: Value = parse_body(b"{\"a\": [\"x\\u00e9\", \"\xc3\xa9\"]}").unwrap();
        assert_eq!(v, json!({"a": ["x\u{e9}", "\u{e9}"]}));
        let arena = Bump::new();
        let j = parse_json(br#"{"a": "b"}"#, &arena).unwrap();
        assert_eq!(j.to_value(), json!({"a": "b"}));
        // a body that is not UTF-8 gets serde_json's error with its position, both ways
        let e = parse_body::<Value>(b"{\"a\":\n \"\xff\"}").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = parse_json(b"{\"a\":\n \"\xff\"}", &arena).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        // truncated text, too
        let e = parse_json(br#"{"a": [1, 2"#, &arena).unwrap_err();
        assert!(e.to_string().contains("EOF"), "{e}");
    }

    #[test]
    fn join_url_like_dlt() {
        assert_eq!(
            join_url("https://api.example.com", "/v1/forums").unwrap().as_str(),
            "https://api.example.com/v1/forums"
        );
        assert_eq!(
            join_url("https://api.example.com/api/", "v1/x").unwrap().as_str(),
            "https://api.example.com/api/v1/x"
        );
        assert_eq!(join_url("https://a.example", "https://b.example/x").unwrap().as_str(), "https://b.example/x");
    }

    #[test]
    fn selectors() {
        let mut body = json!({"forums": [{"id": 1}, {"id": 2}], "pagination": {}});
        let s = Selector::new(Some("forums"));
        assert_eq!(count_records(&s, &body), 2);
        let (r, _) = take_records(&s, &mut body);
        assert_eq!(r.len(), 2);
        let mut body = json!({"data": {"item": {"id": 1}}});
        let (r, _) = take_records(&Selector::new(Some("data.item")), &mut body);
        assert_eq!(r, vec![json!({"id": 1})]);
        let mut body = json!({"data": null});
        assert_eq!(take_records(&Selector::new(Some("data")), &mut body), (vec![], true));
        let mut body = json!([{"a": 1}, {"b": 2}]);
        assert_eq!(take_records(&Selector::new(Some("$")), &mut body).0.len(), 2);
        let mut body = json!({"d": [{"x": {"id": 1}}, {"x": {"id": 2}}]});
        let s = Selector::new(Some("$.d[*].x"));
        assert_eq!(count_records(&s, &body), 2);
        assert_eq!(take_records(&s, &mut body).0, vec![json!({"id": 1}), json!({"id": 2})]);
    }

    #[test]
    fn plain_key_paths() {
        assert_eq!(plain_keys("$"), Some(vec![]));
        assert_eq!(plain_keys("data.items"), Some(vec!["data".to_string(), "items".to_string()]));
        assert_eq!(plain_keys("$.updated-at"), Some(vec!["updated-at".to_string()]));
        assert_eq!(plain_keys("$.data[*]"), None);
        assert_eq!(plain_keys("$..id"), None);
    }

    #[test]
    fn detection_prefers_record_keys() {
        assert_eq!(detect(&json!({"meta": {"tags": []}, "results": [1]})), vec!["results"]);
        assert_eq!(detect(&json!({"meta": {"tags": []}, "other": 1})), vec!["meta", "tags"]);
        assert_eq!(detect(&json!([1, 2])), Vec::<String>::new());
        assert_eq!(detect(&json!({"a": {"b": {"c": {"data": [1]}}}})), Vec::<String>::new());
    }
}
