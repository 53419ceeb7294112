use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use resttap_schema::timestamp::parse_timestamp;

use crate::data::{RESOURCES, added_in, deleted_in, listed_id, record_count, record_with};

/// Faults the server injects into `/v1/` responses.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Every `fail_every`-th request to `/v1/` fails (0: never); a URL fails at most once, so
    /// a retry of it succeeds.
    pub fail_every: u64,
    /// Statuses used for the failures, in turn (default: 429, 500, 502, 503, 504).
    pub statuses: Vec<u16>,
    /// `Retry-After` value sent with 429 responses (default `0`).
    pub retry_after: Option<String>,
    /// Delay before every `/v1/` response, in milliseconds.
    pub slow_ms: u64,
    /// Every request to `/v1/` fails with this status (0: off), e.g. 500 to outlast retries.
    pub always: u16,
    /// Every `truncate_every`-th successful page is cut in half (0: never): a 200 whose body is
    /// not valid JSON, as a broken proxy or a dropped connection can produce.
    pub truncate_every: u64,
    /// A rate limit enforced on `/v1/` and `/styles/` and announced in their headers.
    pub rate_limit: Option<crate::throttle::RateLimit>,
}

/// What the server serves.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Records in `feedback_records` and `suggestions`; the other resources get a tenth.
    pub records: u64,
    /// Records per page unless the request sets `limit`.
    pub page_size: u64,
    /// The bearer token the server accepts.
    pub token: String,
    /// The starting revision (0: original data).
    pub revision: u64,
    /// Records added to each resource per revision.
    pub growth: u64,
    /// Injected faults.
    pub faults: Faults,
    /// Render every page of the starting revision before accepting requests.
    pub prerender: bool,
    /// `expires_in` of the OAuth2 tokens `POST /oauth/token` issues, in seconds.
    pub oauth_expires_in: u64,
    /// Serve requests without credentials too (counted as `none` in [`Stats::auth`]): a
    /// stand-in for another host that a next link or redirect leads to.
    pub open: bool,
    /// Records deleted by each revision (0: none): see [`crate::data::deleted_in`].
    pub deletes: u64,
    /// How a deleted record shows: absent from the listings, or served with `"deleted": true`
    /// (every other record then has `"deleted": false`), as soft-deleting APIs do.
    pub delete_style: DeleteStyle,
    /// List the records in a scrambled id order ([`crate::data::listed_id`]) instead of
    /// ascending ids.
    pub shuffle: bool,
}

/// How the server shows a record a revision deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeleteStyle {
    /// Left out of every listing.
    #[default]
    Absent,
    /// Listed with `"deleted": true`.
    Flag,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            records: 1000,
            page_size: 100,
            token: "demo-token".into(),
            revision: 0,
            growth: 2,
            faults: Faults::default(),
            prerender: false,
            oauth_expires_in: 3600,
            open: false,
            deletes: 0,
            delete_style: DeleteStyle::Absent,
            shuffle: false,
        }
    }
}

/// Counters exposed at `GET /admin/stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Requests to `/v1/` received, failed ones included.
    pub requests: u64,
    /// Responses that were injected faults.
    pub faults: u64,
    /// Requests rejected with 401.
    pub unauthorized: u64,
    /// The current revision.
    pub revision: u64,
    /// Accepted requests by the way they authenticated (`bearer`, `oauth2`, `http_basic`,
    /// `api_key_header`, `api_key_query`, `api_key_cookie`).
    #[serde(default)]
    pub auth: std::collections::BTreeMap<String, u64>,
    /// Requests to `POST /oauth/token` that issued a token.
    #[serde(default)]
    pub token_requests: u64,
    /// Requests refused with 429 by the rate limit ([`Faults::rate_limit`]; counted in
    /// `requests` too).
    #[serde(default)]
    pub rate_limited: u64,
    /// The most requests to `/v1/` and `/styles/` in flight at once.
    #[serde(default)]
    pub max_in_flight: u64,
}

/// (resource, offset, limit, revision, filter)
type PageKey = (usize, u64, u64, u64, Option<Filter>);

/// (resource, revision, filter)
type SelectionKey = (usize, u64, Filter);

/// `updated_after` / `updated_before` (microseconds) and `sort=updated_at`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Filter {
    after: Option<i64>,
    before: Option<i64>,
    sort: bool,
}

pub(crate) struct Shared {
    pub(crate) opts: MockOptions,
    pub(crate) revision: AtomicU64,
    pub(crate) requests: AtomicU64,
    faults_sent: AtomicU64,
    unauthorized: AtomicU64,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) max_in_flight: AtomicU64,
    pub(crate) window: Mutex<crate::throttle::Window>,
    /// URLs that got an injected fault already.
    failed: Mutex<std::collections::HashSet<String>>,
    pages: Mutex<HashMap<PageKey, Bytes>>,
    /// Ids matching a filter, in the order served.
    selections: Mutex<HashMap<SelectionKey, Arc<Vec<u64>>>>,
    /// Requests accepted per auth method.
    auth_used: Mutex<std::collections::BTreeMap<String, u64>>,
    /// OAuth2 tokens issued and not revoked.
    oauth_tokens: Mutex<std::collections::HashSet<String>>,
    token_requests: AtomicU64,
}

impl Shared {
    pub(crate) fn record(&self, name: &str, id: u64, revision: u64) -> serde_json::Value {
        let mut r = record_with(name, id, revision, added_in(name, id, self.opts.records, self.opts.growth));
        if self.opts.deletes > 0
            && self.opts.delete_style == DeleteStyle::Flag
            && let Some(obj) = r.as_object_mut()
        {
            obj.insert("deleted".into(), deleted_in(id, revision, self.opts.deletes).into());
        }
        r
    }

    /// Whether listings leave record `id` out at `revision`.
    fn absent(&self, id: u64, revision: u64) -> bool {
        self.opts.delete_style == DeleteStyle::Absent && deleted_in(id, revision, self.opts.deletes)
    }

    pub(crate) fn total(&self, name: &str) -> u64 {
        record_count(name, self.opts.records, self.revision.load(Ordering::Relaxed), self.opts.growth)
    }

    /// How a request authenticates, if it does with something this server accepts.
    pub(crate) fn auth_method(&self, headers: &HeaderMap, query: Option<&str>) -> Option<&'static str> {
        use base64::engine::general_purpose::STANDARD;
        let token = self.opts.token.as_str();
        let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if let Some(t) = auth.strip_prefix("Bearer ") {
            if t == token {
                return Some("bearer");
            }
            if self.oauth_tokens.lock().expect("tokens").contains(t) {
                return Some("oauth2");
            }
        }
        if let Some(b) = auth.strip_prefix("Basic ")
            && STANDARD.decode(b).ok().is_some_and(|raw| raw == format!("demo:{token}").as_bytes())
        {
            return Some("http_basic");
        }
        if headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(token) {
            return Some("api_key_header");
        }
        let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if cookie.split(';').any(|c| c.trim() == format!("session={token}")) {
            return Some("api_key_cookie");
        }
        if url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).any(|(k, v)| k == "api_key" && v == token)
        {
            return Some("api_key_query");
        }
        None
    }

    /// Counts a request: `Err` with the response to send when it is unauthorized or a fault is
    /// injected for it.
    pub(crate) async fn admit(&self, uri: &axum::http::Uri, headers: &HeaderMap) -> Result<u64, Response> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let faults = self.faults.lock().expect("faults").clone();
        if faults.slow_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.slow_ms)).await;
        }
        match self.auth_method(headers, uri.query()).or(self.opts.open.then_some("none")) {
            Some(m) => *self.auth_used.lock().expect("auth").entry(m.to_string()).or_default() += 1,
            None => {
                self.unauthorized.fetch_add(1, Ordering::Relaxed);
                return Err(json_error(StatusCode::UNAUTHORIZED, "missing or invalid credentials"));
            }
        }
        let injected = if faults.always != 0 {
            Some(faults.always)
        } else if faults.fail_every > 0
            && n.is_multiple_of(faults.fail_every)
            && self.failed.lock().expect("failed").insert(uri.to_string())
        {
            let statuses =
                if faults.statuses.is_empty() { vec![429, 500, 502, 503, 504] } else { faults.statuses.clone() };
            Some(statuses[((n / faults.fail_every - 1) % statuses.len() as u64) as usize])
        } else {
            None
        };
        if let Some(code) = injected {
            self.faults_sent.fetch_add(1, Ordering::Relaxed);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = json_error(status, "injected fault");
            if code == 429 {
                let value = faults.retry_after.as_deref().unwrap_or("0");
                if let Ok(v) = HeaderValue::from_str(value) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            return Err(resp);
        }
        Ok(n)
    }

    fn selection(&self, resource: usize, revision: u64, filter: &Filter) -> Arc<Vec<u64>> {
        let key = (resource, revision, filter.clone());
        if let Some(ids) = self.selections.lock().expect("selections").get(&key) {
            return Arc::clone(ids);
        }
        let name = RESOURCES[resource];
        let total = record_count(name, self.opts.records, revision, self.opts.growth);
        let mut ids: Vec<(i64, u64)> = (0..total)
            .map(|pos| listed_id(pos, total, self.opts.shuffle))
            .filter(|id| !self.absent(*id, revision))
            .filter_map(|id| {
                let at = self.record(name, id, revision)["updated_at"].as_str().and_then(parse_timestamp).unwrap_or(0);
                let keep = filter.after.is_none_or(|a| at >= a) && filter.before.is_none_or(|b| at < b);
                keep.then_some((at, id))
            })
            .collect();
        if filter.sort {
            ids.sort();
        }
        let ids = Arc::new(ids.into_iter().map(|(_, id)| id).collect::<Vec<u64>>());
        self.selections.lock().expect("selections").insert(key, Arc::clone(&ids));
        ids
    }

    fn render_page(&self, resource: usize, offset: u64, limit: u64, revision: u64, filter: Option<Filter>) -> Bytes {
        let key = (resource, offset, limit, revision, filter.clone());
        if let Some(b) = self.pages.lock().expect("page cache").get(&key) {
            return b.clone();
        }
        let name = RESOURCES[resource];
        // with deletions the listing is a selection of ids too
        let deleting = self.opts.deletes > 0 && self.opts.delete_style == DeleteStyle::Absent;
        let filter = filter.or_else(|| deleting.then_some(Filter { after: None, before: None, sort: false }));
        let (total, items): (u64, Vec<serde_json::Value>) = match &filter {
            None => {
                let total = record_count(name, self.opts.records, revision, self.opts.growth);
                let end = (offset + limit).min(total);
                (
                    total,
                    (offset..end)
                        .map(|i| self.record(name, listed_id(i, total, self.opts.shuffle), revision))
                        .collect(),
                )
            }
            Some(f) => {
                let ids = self.selection(resource, revision, f);
                let total = ids.len() as u64;
                let end = (offset + limit).min(total) as usize;
                (
                    total,
                    ids[(offset as usize).min(end)..end].iter().map(|id| self.record(name, *id, revision)).collect(),
                )
            }
        };
        let end = (offset + limit).min(total);
        let mut pagination = serde_json::Map::new();
        if end < total {
            pagination.insert("cursor".into(), encode_cursor(end).into());
        }
        pagination.insert("page_size".into(), limit.into());
        pagination.insert("total".into(), total.into());
        let mut body = serde_json::Map::new();
        body.insert(name.into(), items.into());
        body.insert("pagination".into(), pagination.into());
        let bytes = Bytes::from(serde_json::to_vec(&body).expect("serializable page"));
        self.pages.lock().expect("page cache").insert(key, bytes.clone());
        bytes
    }
}

fn encode_cursor(offset: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn decode_cursor(cursor: &str) -> Option<u64> {
    let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    std::str::from_utf8(&raw).ok()?.strip_prefix("offset:")?.parse().ok()
}

pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": status.canonical_reason().unwrap_or("error"), "message": message });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn list(
    State(s): State<Arc<Shared>>,
    Path(resource): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let n = match s.admit(&uri, &headers).await {
        Ok(n) => n,
        Err(resp) => return resp,
    };
    let Some(idx) = RESOURCES.iter().position(|r| *r == resource) else {
        return json_error(StatusCode::NOT_FOUND, &format!("no resource named {resource:?}"));
    };
    let offset = match q.get("cursor").map(String::as_str) {
        None | Some("") => 0,
        Some(c) => match decode_cursor(c) {
            Some(o) => o,
            None => return json_error(StatusCode::BAD_REQUEST, "invalid cursor"),
        },
    };
    let limit = match q.get("limit").map(|l| l.parse::<u64>()) {
        None => s.opts.page_size,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        Some(_) => return json_error(StatusCode::BAD_REQUEST, "limit must be 1..=1000"),
    };
    let mut filter = Filter { after: None, before: None, sort: false };
    for (param, slot) in [("updated_after", &mut filter.after), ("updated_before", &mut filter.before)] {
        if let Some(v) = q.get(param) {
            match parse_timestamp(v) {
                Some(t) => *slot = Some(t),
                None => return json_error(StatusCode::BAD_REQUEST, &format!("{param} must be an ISO 8601 date-time")),
            }
        }
    }
    match q.get("sort").map(String::as_str) {
        None => {}
        Some("updated_at") => filter.sort = true,
        Some(other) => {
            return json_error(StatusCode::BAD_REQUEST, &format!("cannot sort by {other:?}; only updated_at"));
        }
    }
    let filter = (filter.after.is_some() || filter.before.is_some() || filter.sort).then_some(filter);
    let revision = s.revision.load(Ordering::Relaxed);
    let mut body = s.render_page(idx, offset, limit, revision, filter);
    let truncate_every = s.faults.lock().expect("faults").truncate_every;
    if truncate_every > 0 && n % truncate_every == 0 {
        body = body.slice(..body.len() / 2);
    }
    ([(header::CONTENT_TYPE, "application/json")], Body::from(body)).into_response()
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(Stats {
        requests: s.requests.load(Ordering::Relaxed),
        faults: s.faults_sent.load(Ordering::Relaxed),
        unauthorized: s.unauthorized.load(Ordering::Relaxed),
        revision: s.revision.load(Ordering::Relaxed),
        auth: s.auth_used.lock().expect("auth").clone(),
        token_requests: s.token_requests.load(Ordering::Relaxed),
        rate_limited: s.rate_limited.load(Ordering::Relaxed),
        max_in_flight: s.max_in_flight.load(Ordering::Relaxed),
    })
    .into_response()
}

async fn set_revision(State(s): State<Arc<Shared>>, Path(rev): Path<u64>) -> Response {
    s.revision.store(rev, Ordering::Relaxed);
    s.pages.lock().expect("page cache").retain(|k, _| k.3 == rev);
    s.selections.lock().expect("selections").retain(|k, _| k.1 == rev);
    StatusCode::NO_CONTENT.into_response()
}

async fn set_faults(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(f) => {
            *s.faults.lock().expect("faults") = f;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// `POST /oauth/token`: OAuth2 client credentials in the form body (`client_id=demo`,
/// `client_secret=<token>`, `grant_type=client_credentials`); issues `oauth-<n>` tokens.
async fn oauth_token(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return json_error(StatusCode::BAD_REQUEST, "grant_type must be client_credentials");
    }
    if form.get("client_id").map(String::as_str) != Some("demo") || form.get("client_secret") != Some(&s.opts.token) {
        return json_error(StatusCode::UNAUTHORIZED, "invalid client credentials");
    }
    let n = s.token_requests.fetch_add(1, Ordering::Relaxed) + 1;
    let token = format!("oauth-{n}");
    s.oauth_tokens.lock().expect("tokens").insert(token.clone());
    let mut body = serde_json::json!({ "access_token": token, "token_type": "bearer" });
    if s.opts.oauth_expires_in > 0 {
        body["expires_in"] = s.opts.oauth_expires_in.into();
    }
    axum::Json(body).into_response()
}

/// `POST /admin/oauth/revoke`: every OAuth2 token issued so far stops working.
async fn oauth_revoke(State(s): State<Arc<Shared>>) -> Response {
    s.oauth_tokens.lock().expect("tokens").clear();
    StatusCode::NO_CONTENT.into_response()
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/{resource}", get(list))
        .route("/v1/{resource}/{id}", get(crate::styles::one))
        .route("/v1/{resource}/{id}/{child}", get(crate::styles::children))
        .route("/styles/{style}/{resource}", get(crate::styles::styled).post(crate::styles::styled))
        .route("/redirect/{*rest}", get(crate::styles::redirect).post(crate::styles::redirect))
        .route("/oauth/token", post(oauth_token))
        .route("/admin/oauth/revoke", post(oauth_revoke))
        .route("/admin/stats", get(stats))
        .route("/admin/revision/{rev}", post(set_revision))
        .route("/admin/faults", put(set_faults))
        .route("/health", get(|| async { "ok" }))
        // a proxy's or login page's answer: 200 with HTML, as some APIs send when a session expires
        .route(
            "/login",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<!DOCTYPE html><html><body>Please sign in</body></html>",
                )
            }),
        )
        .route(
            "/typed/payments",
            get(|State(s): State<Arc<Shared>>| async move {
                axum::Json(crate::data::payments(s.revision.load(Ordering::Relaxed)))
            }),
        )
        // a key of another type halfway: numeric ids, then a text one (an API that changed its
        // ids, or a test record)
        .route(
            "/mixed-keys",
            get(|| async {
                axum::Json(serde_json::json!({"forums": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": "forum-3", "name": "c"}]}))
            }),
        )
        // a body that says it is gzip and is not: a valid gzip header, then bytes that do not
        // inflate (a broken proxy or a truncated cache entry)
        .route(
            "/broken-gzip",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json"), (header::CONTENT_ENCODING, "gzip")],
                    b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03{\"forums\": [not deflate data".to_vec(),
                )
            }),
        )
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&shared), crate::throttle::layer))
        .with_state(shared)
}

fn shared(opts: MockOptions) -> Arc<Shared> {
    let s = Arc::new(Shared {
        revision: AtomicU64::new(opts.revision),
        requests: AtomicU64::new(0),
        faults_sent: AtomicU64::new(0),
        unauthorized: AtomicU64::new(0),
        faults: Mutex::new(opts.faults.clone()),
        failed: Mutex::new(std::collections::HashSet::new()),
        pages: Mutex::new(HashMap::new()),
        selections: Mutex::new(HashMap::new()),
        auth_used: Mutex::new(Default::default()),
        oauth_tokens: Mutex::new(Default::default()),
        token_requests: AtomicU64::new(0),
        rate_limited: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        max_in_flight: AtomicU64::new(0),
        window: Mutex::default(),
        opts,
    });
    if s.opts.prerender {
        for (idx, name) in RESOURCES.iter().enumerate() {
            let total = record_count(name, s.opts.records, s.opts.revision, s.opts.growth);
            let mut offset = 0;
            while offset < total.max(1) {
                s.render_page(idx, offset, s.opts.page_size, s.opts.revision, None);
                offset += s.opts.page_size;
            }
        }
    }
    s
}

/// The mock API's routes and state; with `opts.prerender`, every page is rendered first (seconds
/// for millions of records: call it off the async runtime).
pub fn app(opts: MockOptions) -> Router {
    router(shared(opts))
}

/// Binds `addr` (port 0 picks a free port), and serves the mock API on a background task.
/// Returns the bound address.
pub async fn spawn(
    addr: SocketAddr,
    opts: MockOptions,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = app(opts);
    Ok((local, tokio::spawn(async move { axum::serve(listener, app).await })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_updated_at_and_sorts() {
        let s = shared(MockOptions { records: 300, ..MockOptions::default() });
        let idx = RESOURCES.iter().position(|r| *r == "suggestions").unwrap();
        let all = s.selection(idx, 0, &Filter { after: None, before: None, sort: true });
        assert_eq!(all.len(), 300);
        let at = |id: u64| {
            parse_timestamp(crate::data::record("suggestions", id, 0)["updated_at"].as_str().unwrap()).unwrap()
        };
        assert!(all.windows(2).all(|w| at(w[0]) <= at(w[1])));
        let cut = at(all[150]);
        let newer = s.selection(idx, 0, &Filter { after: Some(cut), before: None, sort: true });
        assert_eq!(newer.len(), 150);
        assert!(newer.iter().all(|id| at(*id) >= cut));
    }

    #[test]
    fn cursor_round_trips() {
        assert_eq!(decode_cursor(&encode_cursor(1200)), Some(1200));
        assert_eq!(decode_cursor("not-a-cursor"), None);
    }

    #[test]
    fn last_page_has_no_cursor() {
        let s = shared(MockOptions { records: 150, ..MockOptions::default() });
        let idx = RESOURCES.iter().position(|r| *r == "suggestions").unwrap();
        let first: serde_json::Value = serde_json::from_slice(&s.render_page(idx, 0, 100, 0, None)).unwrap();
        assert_eq!(first["suggestions"].as_array().unwrap().len(), 100);
        assert!(first["pagination"]["cursor"].is_string());
        let last: serde_json::Value = serde_json::from_slice(&s.render_page(idx, 100, 100, 0, None)).unwrap();
        assert_eq!(last["suggestions"].as_array().unwrap().len(), 50);
        assert!(last["pagination"].get("cursor").is_none());
        assert_eq!(last["pagination"]["total"], 150);
    }

    #[test]
    fn a_shuffled_listing_serves_every_record_once_in_no_key_order() {
        let ids = |s: &Shared, rev| -> Vec<u64> {
            let idx = RESOURCES.iter().position(|r| *r == "suggestions").unwrap();
            let mut all = Vec::new();
            for offset in (0..).step_by(7) {
                let v: serde_json::Value = serde_json::from_slice(&s.render_page(idx, offset, 7, rev, None)).unwrap();
                let page = v["suggestions"].as_array().unwrap();
                all.extend(page.iter().map(|r| r["id"].as_u64().unwrap()));
                if page.len() < 7 {
                    break;
                }
            }
            all
        };
        for records in [1, 2, 3, 10, 100, 144] {
            let s = shared(MockOptions { records, shuffle: true, ..MockOptions::default() });
            for rev in [0, 1] {
                let got = ids(&s, rev);
                let total = record_count("suggestions", records, rev, 2);
                let mut sorted = got.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (1..=total).collect::<Vec<_>>(), "records {records} revision {rev}");
                if total >= 10 {
                    let rising = got.windows(2).filter(|w| w[1] > w[0]).count();
                    assert!(rising < got.len() - 1 && rising > 0, "{got:?}");
                }
            }
        }
        // with deletions too (the listing is then a selection of the scrambled ids)
        let s = shared(MockOptions { records: 100, deletes: 10, shuffle: true, ..MockOptions::default() });
        let idx = RESOURCES.iter().position(|r| *r == "suggestions").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&s.render_page(idx, 0, 1000, 1, None)).unwrap();
        let got: Vec<u64> = v["suggestions"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
        assert_eq!(got.len(), 102 - 11);
        assert!(!got.contains(&11) && got.contains(&12) && got.windows(2).any(|w| w[1] < w[0]));
    }

    #[test]
    fn deleted_records_leave_the_listing_or_are_flagged() {
        let page = |s: &Shared, rev| -> Vec<serde_json::Value> {
            let idx = RESOURCES.iter().position(|r| *r == "suggestions").unwrap();
            let v: serde_json::Value = serde_json::from_slice(&s.render_page(idx, 0, 1000, rev, None)).unwrap();
            v["suggestions"].as_array().unwrap().clone()
        };
        let absent = shared(MockOptions { records: 100, deletes: 10, ..MockOptions::default() });
        assert_eq!(page(&absent, 0).len(), 100);
        // revision 1 adds 2 (ids 101, 102) and deletes ids 1, 11, ..., 101
        let ids: Vec<u64> = page(&absent, 1).iter().map(|r| r["id"].as_u64().unwrap()).collect();
        assert_eq!(ids.len(), 102 - 11);
        assert!(!ids.contains(&11) && ids.contains(&12) && !ids.contains(&101) && ids.contains(&102));
        let flag = shared(MockOptions {
            records: 100,
            deletes: 10,
            delete_style: DeleteStyle::Flag,
            ..MockOptions::default()
        });
        let rows = page(&flag, 1);
        assert_eq!(rows.len(), 102);
        let deleted: Vec<u64> =
            rows.iter().filter(|r| r["deleted"] == true).map(|r| r["id"].as_u64().unwrap()).collect();
        assert_eq!(deleted, vec![1, 11, 21, 31, 41, 51, 61, 71, 81, 91, 101]);
        assert!(rows.iter().all(|r| r["deleted"].is_boolean()));
    }
}
