//! From a spec to a plan: which GET endpoints are lists, where their records are, how they page,
//! their primary keys, parents and children, and the API's auth. Rendering (YAML) and the mock
//! both work from this plan, so they agree.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::naming::{common_prefix, loose, path_params, plural_name, resource_name, segments, singular, snake_case};
use crate::spec::{Schema, Spec, scalar_text};
use crate::{OpenApiError, Options, Skipped};

/// A JSON path in the response body, as keys (empty: the body itself).
pub(crate) type Keys = Vec<String>;

/// A page-size query parameter and its default.
pub(crate) type PageSize = (String, Option<u64>);

/// How a list endpoint pages.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pagination {
    Offset {
        offset_param: String,
        limit_param: String,
        limit: u64,
        total_path: Option<Keys>,
        has_more_path: Option<Keys>,
    },
    PageNumber {
        page_param: String,
        base_page: u64,
        total_path: Option<Keys>,
    },
    Cursor {
        cursor_param: String,
        cursor_path: Keys,
        has_more_path: Option<Keys>,
    },
    JsonLink {
        next_url_path: Keys,
    },
    HeaderLink,
    Single,
}

impl Pagination {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Pagination::Offset { .. } => "offset",
            Pagination::PageNumber { .. } => "page_number",
            Pagination::Cursor { .. } => "cursor",
            Pagination::JsonLink { .. } => "json_link",
            Pagination::HeaderLink => "header_link",
            Pagination::Single => "single_page",
        }
    }

    /// The paginator as dlt's config mapping.
    pub(crate) fn config(&self) -> Value {
        match self {
            Pagination::Offset { offset_param, limit_param, limit, total_path, has_more_path } => {
                let mut m = json!({
                    "type": "offset",
                    "limit": limit,
                    "offset_param": offset_param,
                    "limit_param": limit_param,
                    "total_path": total_path.as_ref().map(|k| selector(k)),
                });
                if let Some(h) = has_more_path {
                    m["has_more_path"] = json!(selector(h));
                }
                m
            }
            Pagination::PageNumber { page_param, base_page, total_path } => json!({
                "type": "page_number",
                "page_param": page_param,
                "base_page": base_page,
                "total_path": total_path.as_ref().map(|k| selector(k)),
            }),
            Pagination::Cursor { cursor_param, cursor_path, has_more_path } => {
                let mut m =
                    json!({"type": "cursor", "cursor_param": cursor_param, "cursor_path": selector(cursor_path)});
                if let Some(h) = has_more_path {
                    m["has_more_path"] = json!(selector(h));
                }
                m
            }
            Pagination::JsonLink { next_url_path } => {
                json!({"type": "json_link", "next_url_path": selector(next_url_path)})
            }
            Pagination::HeaderLink => json!({"type": "header_link"}),
            Pagination::Single => json!({"type": "single_page"}),
        }
    }
}

/// The API's auth, as resttap configures it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Auth {
    Bearer,
    ApiKey { name: String, location: String },
    Basic,
    OAuth2ClientCredentials { token_url: String, scopes: Vec<String> },
}

/// A parameter bound from the parent's records.
#[derive(Debug, Clone)]
pub(crate) struct Resolve {
    pub(crate) param: String,
    pub(crate) field: String,
}

/// A resource the configuration will have.
#[derive(Debug, Clone)]
pub(crate) struct ResourcePlan {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) summary: Option<String>,
    /// Where the records are in the body (empty: the body is the list).
    pub(crate) data_path: Keys,
    pub(crate) item: Schema,
    pub(crate) primary_key: Option<String>,
    pub(crate) pagination: Pagination,
    /// The page-size query parameter and its default, when the API has one (not for offset).
    #[cfg_attr(not(feature = "mock"), allow(dead_code))]
    pub(crate) page_size: Option<PageSize>,
    /// Static query parameters (required ones with a default, example or enum value).
    pub(crate) params: Vec<(String, Value)>,
    /// Path parameters bound to a fixed value (a default or the first enum value).
    pub(crate) fixed_path: Vec<(String, Value)>,
    /// Required headers with a default value.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) parent: Option<usize>,
    pub(crate) resolves: Vec<Resolve>,
    /// Remarks for the YAML comments.
    pub(crate) notes: Vec<String>,
}

/// The whole plan.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) title: String,
    pub(crate) source: String,
    pub(crate) base_url: String,
    pub(crate) auth: Option<Auth>,
    pub(crate) auth_note: Option<String>,
    pub(crate) resources: Vec<ResourcePlan>,
    pub(crate) skipped: Vec<Skipped>,
}

impl Plan {
    /// The secret names the configuration uses (dotted, as `{secrets.NAME}` has them).
    pub(crate) fn secret_names(&self) -> Vec<String> {
        let base = format!("sources.{}", self.source);
        match &self.auth {
            None => vec![],
            Some(Auth::Bearer) => vec![format!("{base}.token")],
            Some(Auth::ApiKey { .. }) => vec![format!("{base}.api_key")],
            Some(Auth::Basic) => vec![format!("{base}.username"), format!("{base}.password")],
            Some(Auth::OAuth2ClientCredentials { .. }) => {
                vec![format!("{base}.client_id"), format!("{base}.client_secret")]
            }
        }
    }
}

/// dlt's JSONPath shorthand for a key path (`data`, `meta.next_page_url`, `$` for the body),
/// bracketed where a key is not a plain name.
pub(crate) fn selector(keys: &[String]) -> String {
    if keys.is_empty() {
        return "$".into();
    }
    let plain = |k: &str| {
        !k.is_empty()
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !k.starts_with(|c: char| c.is_ascii_digit())
    };
    if keys.iter().all(|k| plain(k)) {
        return keys.join(".");
    }
    let mut s = String::from("$");
    for k in keys {
        if plain(k) {
            s.push('.');
            s.push_str(k);
        } else {
            s.push_str(&format!("['{}']", k.replace('\\', "\\\\").replace('\'', "\\'")));
        }
    }
    s
}

// Parameter and field names, compared loosely (see `naming::loose`).
const CURSOR_PARAMS: &[&str] = &[
    "cursor",
    "after",
    "startingafter",
    "pagetoken",
    "nextpagetoken",
    "nexttoken",
    "continuationtoken",
    "continuation",
    "startcursor",
    "pagecursor",
    "marker",
    "nextcursor",
];
const CURSOR_FIELDS: &[&str] = &[
    "nextcursor",
    "cursor",
    "nextpagetoken",
    "nexttoken",
    "continuationtoken",
    "endcursor",
    "nextpagecursor",
    "nextmarker",
    "afterCursor",
    "aftercursor",
];
const OFFSET_PARAMS: &[&str] = &["offset", "skip", "start", "startindex", "startat", "startposition"];
const LIMIT_PARAMS: &[&str] =
    &["limit", "perpage", "pagesize", "size", "maxresults", "take", "count", "pagelimit", "top", "resultsperpage"];
const PAGE_PARAMS: &[&str] = &["page", "pagenumber", "pagenum", "pageno", "pageindex"];
const NEXT_FIELDS: &[&str] = &["next", "nexturl", "nextpageurl", "nextpage", "nextlink", "nextpagelink", "nexthref"];
const TOTAL_FIELDS: &[&str] = &[
    "total",
    "totalcount",
    "count",
    "totalresults",
    "totalitems",
    "totalrecords",
    "totalsize",
    "totalelements",
    "totalentries",
    "totalhits",
    "recordcount",
    "itemcount",
];
const TOTAL_PAGES_FIELDS: &[&str] = &["totalpages", "pages", "pagecount", "numpages", "lastpage", "pagestotal"];
const HAS_MORE_FIELDS: &[&str] = &["hasmore", "more", "hasnext", "hasnextpage", "morerecords", "moreitems"];
const ID_NAMES: &[&str] = &["id", "uuid", "guid", "pk", "sid", "key", "identifier", "uid"];

fn in_list(name: &str, list: &[&str]) -> bool {
    let l = loose(name);
    list.iter().any(|x| x.eq_ignore_ascii_case(&l))
}

/// A parameter of an operation, resolved.
#[derive(Debug, Clone)]
struct Param {
    name: String,
    location: String,
    required: bool,
    schema: Schema,
}

impl Param {
    fn default_value(&self) -> Option<Value> {
        self.schema
            .default
            .clone()
            .or_else(|| self.schema.enum_values.first().cloned())
            .filter(|v| !v.is_object() && !v.is_array() && !v.is_null())
    }
}

struct Candidate {
    path: String,
    op: Value,
    params: Vec<Param>,
}

pub(crate) fn plan(text: &str, opts: &Options) -> Result<Plan, OpenApiError> {
    let spec = Spec::parse(text)?;
    let root = &spec.root;
    let title = root.pointer("/info/title").map(scalar_text).unwrap_or_else(|| "api".into());
    let mut source = snake_case(&title);
    if source.is_empty() || source.starts_with(|c: char| c.is_ascii_digit()) {
        source = format!("api_{source}").trim_end_matches('_').to_string();
    }
    let base_url = base_url(root, opts)?;

    let mut skipped = Vec::new();
    let mut candidates = Vec::new();
    let paths = root.get("paths").and_then(Value::as_object).cloned().unwrap_or_default();
    for (path, item) in &paths {
        let item = match spec.resolve(item) {
            Ok(i) => i.clone(),
            Err(e) => {
                skipped.push(Skipped { method_path: format!("* {path}"), reason: e });
                continue;
            }
        };
        for method in ["post", "put", "patch", "delete", "head", "options", "trace"] {
            if item.get(method).is_some() {
                skipped.push(Skipped {
                    method_path: format!("{} {path}", method.to_uppercase()),
                    reason: "not a GET endpoint (resttap reads with GET)".into(),
                });
            }
        }
        let Some(op) = item.get("get") else { continue };
        let mut params: Vec<Param> = Vec::new();
        for list in [item.get("parameters"), op.get("parameters")].into_iter().flatten() {
            for p in list.as_array().into_iter().flatten() {
                let Ok(p) = spec.resolve(p) else { continue };
                let (Some(name), Some(location)) =
                    (p.get("name").and_then(Value::as_str), p.get("in").and_then(Value::as_str))
                else {
                    continue;
                };
                let schema = p.get("schema").map(|s| spec.schema(s)).unwrap_or_default();
                let param = Param {
                    name: name.to_string(),
                    location: location.to_string(),
                    required: p.get("required").and_then(Value::as_bool).unwrap_or(location == "path"),
                    schema,
                };
                params.retain(|q| !(q.name == param.name && q.location == param.location));
                params.push(param);
            }
        }
        candidates.push(Candidate { path: path.clone(), op: op.clone(), params });
    }

    // names: the common prefix of every GET path is left out, as dlt-init-openapi does
    let get_paths: Vec<&str> = candidates.iter().map(|c| c.path.as_str()).collect();
    let prefix = common_prefix(&get_paths);

    // parents first: fewer path parameters, then shorter paths
    candidates.sort_by_key(|c| (path_params(&c.path).len(), segments(&c.path).len()));
    let mut resources: Vec<ResourcePlan> = Vec::new();
    let mut used_names = BTreeSet::new();
    for c in &candidates {
        let method_path = format!("GET {}", c.path);
        match map_endpoint(&spec, c, &resources) {
            Ok(mut r) => {
                let mut base = resource_name(&c.path, prefix);
                if used_names.contains(&base) {
                    // `/organizations/{id}/memberships` beside `/organization_memberships`
                    base = plural_name(&c.path, prefix);
                }
                let mut name = base.clone();
                let mut n = 2;
                while used_names.contains(&name) {
                    name = format!("{base}_{n}");
                    n += 1;
                }
                used_names.insert(name.clone());
                r.name = name;
                resources.push(r);
            }
            Err(reason) => skipped.push(Skipped { method_path, reason }),
        }
    }
    if resources.is_empty() {
        return Err(OpenApiError::NothingToLoad { skipped: skipped.len() });
    }
    // back to the spec's order, parents before children (indices follow)
    let order: Vec<String> = paths.keys().cloned().collect();
    let mut idx: Vec<usize> = (0..resources.len()).collect();
    idx.sort_by_key(|&i| {
        let depth = {
            let mut d = 0;
            let mut cur = resources[i].parent;
            while let Some(p) = cur {
                d += 1;
                cur = resources[p].parent;
            }
            d
        };
        (depth, order.iter().position(|p| *p == resources[i].path).unwrap_or(usize::MAX))
    });
    let remap: BTreeMap<usize, usize> = idx.iter().enumerate().map(|(new, &old)| (old, new)).collect();
    let mut sorted: Vec<ResourcePlan> = idx.iter().map(|&i| resources[i].clone()).collect();
    for r in &mut sorted {
        r.parent = r.parent.map(|p| remap[&p]);
    }
    let resources = sorted;

    let (auth, auth_note) = detect_auth(&spec, &candidates);
    Ok(Plan { title, source, base_url, auth, auth_note, resources, skipped })
}

fn base_url(root: &Value, opts: &Options) -> Result<String, OpenApiError> {
    if let Some(u) = &opts.base_url {
        return Ok(u.trim_end_matches('/').to_string());
    }
    let Some(server) = root.pointer("/servers/0") else { return Err(OpenApiError::NoBaseUrl) };
    let mut url = server.get("url").map(scalar_text).unwrap_or_default();
    if let Some(Value::Object(vars)) = server.get("variables") {
        for (k, v) in vars {
            let value = v.get("default").map(scalar_text).unwrap_or_default();
            url = url.replace(&format!("{{{k}}}"), &value);
        }
    }
    // a variable the server object does not declare leaves a brace: not a URL to send to
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains(['{', '}']) {
        return Err(OpenApiError::RelativeBaseUrl(url));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The response an endpoint's records come from: 200, else the first 2xx, else `default`.
fn main_response<'a>(spec: &'a Spec, op: &'a Value) -> Result<&'a Value, String> {
    let responses = op.get("responses").and_then(Value::as_object).ok_or("declares no responses")?;
    let mut codes: Vec<&String> = responses.keys().filter(|k| k.starts_with('2')).collect();
    codes.sort_by_key(|k| (k.as_str() != "200", k.to_string()));
    let key = codes.first().copied().or_else(|| responses.keys().find(|k| *k == "default"));
    let Some(key) = key else { return Err("declares no success (2xx) response".into()) };
    spec.resolve(&responses[key]).map_err(|e| format!("response {key}: {e}"))
}

fn json_schema(resp: &Value) -> Option<&Value> {
    let content = resp.get("content")?.as_object()?;
    let (_, media) = content.iter().find(|(k, _)| {
        let k = k.to_ascii_lowercase();
        k.starts_with("application/json") || (k.contains("+json") || k.contains("/json")) || k == "*/*"
    })?;
    media.get("schema")
}

/// Object properties of a schema at every depth (not inside arrays), shallow first.
fn fields(s: &Schema, max_depth: usize) -> Vec<(Keys, &Schema)> {
    let mut out = Vec::new();
    let mut queue: Vec<(Keys, &Schema)> = vec![(vec![], s)];
    let mut i = 0;
    while i < queue.len() {
        let (keys, sch) = (queue[i].0.clone(), queue[i].1);
        i += 1;
        if keys.len() >= max_depth {
            continue;
        }
        for (n, child) in &sch.properties {
            let mut k = keys.clone();
            k.push(n.clone());
            out.push((k.clone(), child));
            if child.is_object() {
                queue.push((k, child));
            }
        }
    }
    out.sort_by_key(|(k, _)| k.len());
    out
}

fn find_field<'a>(
    all: &[(Keys, &'a Schema)],
    names: &[&str],
    ok: impl Fn(&Schema) -> bool,
    except: &Keys,
) -> Option<(Keys, &'a Schema)> {
    all.iter()
        .filter(|(k, _)| !k.starts_with(except) || except.is_empty())
        .find(|(k, s)| in_list(k.last().expect("non-empty"), names) && ok(s))
        .map(|(k, s)| (k.clone(), *s))
}

fn is_int(s: &Schema) -> bool {
    s.types.is_empty() || s.is("integer") || s.is("number")
}

fn is_bool(s: &Schema) -> bool {
    s.types.is_empty() || s.is("boolean")
}

fn is_text(s: &Schema) -> bool {
    s.types.is_empty() || s.is("string")
}

fn map_endpoint(spec: &Spec, c: &Candidate, known: &[ResourcePlan]) -> Result<ResourcePlan, String> {
    let resp = main_response(spec, &c.op)?;
    let Some(schema_v) = json_schema(resp) else {
        return Err("the success response has no JSON body".into());
    };
    if let Some(r) = schema_v.get("$ref").and_then(Value::as_str) {
        spec.pointer(r)?;
    }
    let body = spec.schema(schema_v);
    let last_fixed = segments(&c.path).into_iter().rev().find(|s| !s.contains('{')).unwrap_or_default().to_string();
    let single = c.path.trim_end_matches('/').ends_with('}');
    if single && !body.is_array() {
        return Err("a single record, not a list (the path ends in a parameter)".into());
    }
    let (data_path, item) =
        find_records(&body, &last_fixed).ok_or_else(|| "the response body has no list of records".to_string())?;
    let headers_declare_link = resp
        .get("headers")
        .and_then(Value::as_object)
        .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("link")));

    let query: Vec<&Param> = c.params.iter().filter(|p| p.location == "query").collect();
    let (pagination, used, page_size) = detect_pagination(&body, &data_path, &query, headers_declare_link);

    let mut params = Vec::new();
    let mut notes = Vec::new();
    for p in &query {
        if used.contains(&p.name) || !p.required {
            continue;
        }
        match p.default_value().or_else(|| p.schema.example.clone().filter(|v| !v.is_object() && !v.is_array())) {
            Some(v) => params.push((p.name.clone(), v)),
            None => return Err(format!("required query parameter `{}` has no default, example or enum value", p.name)),
        }
    }
    let mut headers = Vec::new();
    for p in c.params.iter().filter(|p| p.location == "header" && p.required) {
        match p.default_value() {
            Some(v) => headers.push((p.name.clone(), scalar_text(&v))),
            None => notes.push(format!("required header `{}` has no default: set it in `endpoint.headers`", p.name)),
        }
    }

    // path parameters: from a parent list endpoint, or fixed values
    let names = path_params(&c.path);
    let mut parent = None;
    let mut resolves = Vec::new();
    let mut fixed_path = Vec::new();
    if !names.is_empty() {
        match find_parent(&c.path, known) {
            Some(pi) => {
                let p = &known[pi];
                let parent_params = path_params(&p.path);
                for name in &names {
                    let field = if parent_params.contains(name) {
                        // the parent's own parameter: a field of its records must carry it
                        field_for(&p.item, name, &p.path, false).ok_or_else(|| {
                            format!(
                                "path parameter `{{{name}}}` is not a field of the records of the parent resource `{}`",
                                p.name
                            )
                        })?
                    } else {
                        field_for(&p.item, name, &p.path, true)
                            .or_else(|| p.primary_key.clone())
                            .ok_or_else(|| {
                                format!(
                                    "path parameter `{{{name}}}` matches no field of the records of `{}` (and it has no primary key)",
                                    p.name
                                )
                            })?
                    };
                    resolves.push(Resolve { param: name.clone(), field });
                }
                parent = Some(pi);
            }
            None => {
                for name in &names {
                    let fixed = c
                        .params
                        .iter()
                        .find(|p| p.location == "path" && p.name == *name)
                        .and_then(Param::default_value);
                    match fixed {
                        Some(v) => {
                            notes.push(format!("path parameter `{{{name}}}` set to its default `{}`", scalar_text(&v)));
                            fixed_path.push((name.clone(), v));
                        }
                        None => {
                            return Err(format!(
                                "path parameter `{{{name}}}` has no parent list endpoint to take its values from"
                            ));
                        }
                    }
                }
            }
        }
    }

    let primary_key = primary_key(&item, &c.path, known);
    let summary =
        c.op.get("summary")
            .or_else(|| c.op.get("operationId"))
            .and_then(Value::as_str)
            .map(|s| s.lines().next().unwrap_or_default().trim().chars().take(100).collect::<String>())
            .filter(|s| !s.is_empty());
    Ok(ResourcePlan {
        name: String::new(),
        path: c.path.clone(),
        summary,
        data_path,
        item,
        primary_key,
        pagination,
        page_size,
        params,
        fixed_path,
        headers,
        parent,
        resolves,
        notes,
    })
}

/// Where the records are: the body itself when it is an array, else the array property that
/// best looks like the list (shallow, of objects, named like the path or `data`/`items`/...).
fn find_records(body: &Schema, last_segment: &str) -> Option<(Keys, Schema)> {
    if body.is_array() {
        let item = body.items.as_deref().cloned().unwrap_or_default();
        return Some((vec![], item));
    }
    let wanted = [loose(last_segment), "data".into(), "items".into(), "results".into(), "records".into()];
    let mut best: Option<(i64, Keys, Schema)> = None;
    for (keys, s) in fields(body, 2) {
        if !s.is_array() {
            continue;
        }
        let item = s.items.as_deref().cloned().unwrap_or_default();
        // records are objects (or of a shape the spec leaves open)
        if !(item.is_object() || item.types.is_empty()) {
            continue;
        }
        let name = loose(keys.last().expect("non-empty"));
        let named = wanted.iter().position(|w| *w == name);
        // an array inside a record-like object with many fields is a field of that record,
        // not the list (`/.well-known/openid-configuration`)
        let holder = if keys.len() == 1 { Some(body) } else { None };
        if named.is_none() && holder.is_some_and(|h| h.properties.len() > 8) {
            continue;
        }
        let mut score = -(keys.len() as i64) * 10;
        if item.is_object() {
            score += 20;
        }
        if let Some(pos) = named {
            score += 10 - pos as i64;
        }
        if ["errors", "warnings", "messages"].contains(&name.as_str()) {
            score -= 30;
        }
        if best.as_ref().is_none_or(|b| score > b.0) {
            best = Some((score, keys, item));
        }
    }
    best.map(|(_, k, s)| (k, s))
}

fn limit_value(p: &Param) -> Option<u64> {
    let d = p.schema.default.as_ref().and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
    d.or_else(|| p.schema.maximum.filter(|m| *m >= 1.0).map(|m| (m as u64).min(100)))
}

/// Detects the paginator from the query parameters and the response's fields, in dlt-init-openapi's
/// spirit: cursors, offset/limit, page numbers with a page count, next links in the body, `Link`
/// headers, page numbers alone. Returns it, the parameters it uses, and a page-size parameter.
fn detect_pagination(
    body: &Schema,
    data_path: &Keys,
    query: &[&Param],
    link_header: bool,
) -> (Pagination, Vec<String>, Option<PageSize>) {
    let all = fields(body, 4);
    let not_data = |k: &Keys| data_path.is_empty() || !k.starts_with(data_path);
    let all: Vec<(Keys, &Schema)> = all.into_iter().filter(|(k, _)| not_data(k)).collect();
    let find = |names: &[&str], ok: fn(&Schema) -> bool| find_field(&all, names, ok, &vec![]);
    let param = |list: &[&str]| query.iter().find(|p| in_list(&p.name, list)).copied();
    let limit = param(LIMIT_PARAMS);
    let page_size = limit.map(|p| (p.name.clone(), limit_value(p)));
    let has_more = find(HAS_MORE_FIELDS, is_bool).map(|f| f.0);

    // a cursor parameter fed by a field of the body (the field named like it, or like a cursor)
    if let Some(cp) = param(CURSOR_PARAMS) {
        let same =
            all.iter().find(|(k, s)| loose(k.last().expect("non-empty")) == loose(&cp.name) && is_text_or_int(s));
        let field = same
            .map(|(k, _)| k.clone())
            .or_else(|| find(CURSOR_FIELDS, |s| is_text_or_int(s) && s.format.as_deref() != Some("uri")).map(|f| f.0));
        if let Some(cursor_path) = field {
            let mut used = vec![cp.name.clone()];
            used.extend(page_size.iter().map(|p| p.0.clone()));
            return (
                Pagination::Cursor { cursor_param: cp.name.clone(), cursor_path, has_more_path: has_more },
                used,
                page_size,
            );
        }
    }
    if let (Some(op), Some(lp)) = (param(OFFSET_PARAMS), limit) {
        let total = find(TOTAL_FIELDS, is_int).map(|f| f.0);
        // with a has-more flag, pages end on it (a total may be left empty by the API)
        let (total_path, has_more_path) = match (&has_more, total) {
            (Some(h), _) => (None, Some(h.clone())),
            (None, t) => (t, None),
        };
        return (
            Pagination::Offset {
                offset_param: op.name.clone(),
                limit_param: lp.name.clone(),
                limit: limit_value(lp).unwrap_or(20).max(1),
                total_path,
                has_more_path,
            },
            vec![op.name.clone(), lp.name.clone()],
            None,
        );
    }
    let page = param(PAGE_PARAMS);
    let base_page = |p: &Param| {
        p.schema
            .default
            .as_ref()
            .and_then(Value::as_u64)
            .or_else(|| p.schema.minimum.map(|m| m.max(0.0) as u64))
            .unwrap_or(1)
            .min(1)
    };
    let used_with = |first: &str| {
        let mut u = vec![first.to_string()];
        u.extend(page_size.iter().map(|p| p.0.clone()));
        u
    };
    if let Some(pp) = page
        && let Some((total_path, _)) = find(TOTAL_PAGES_FIELDS, is_int)
    {
        return (
            Pagination::PageNumber {
                page_param: pp.name.clone(),
                base_page: base_page(pp),
                total_path: Some(total_path),
            },
            used_with(&pp.name),
            page_size.clone(),
        );
    }
    let next = find(NEXT_FIELDS, is_text).or_else(|| {
        // `next: {href: ...}` (HAL and similar)
        all.iter()
            .find(|(k, s)| {
                k.len() >= 2
                    && in_list(&k[k.len() - 2], NEXT_FIELDS)
                    && loose(k.last().expect("non-empty")) == "href"
                    && is_text(s)
            })
            .map(|(k, s)| (k.clone(), *s))
    });
    if let Some((next_url_path, s)) = next
        && (s.format.as_deref().is_some_and(|f| f.contains("ur")) || param(CURSOR_PARAMS).is_none() || !s.is_object())
    {
        let used = page.map(|p| used_with(&p.name)).unwrap_or_else(|| page_size.iter().map(|p| p.0.clone()).collect());
        return (Pagination::JsonLink { next_url_path }, used, page_size.clone());
    }
    if link_header || (data_path.is_empty() && (param(CURSOR_PARAMS).is_some() || page.is_some())) {
        let mut used: Vec<String> = page_size.iter().map(|p| p.0.clone()).collect();
        used.extend(param(CURSOR_PARAMS).map(|p| p.name.clone()));
        used.extend(page.map(|p| p.name.clone()));
        return (Pagination::HeaderLink, used, page_size.clone());
    }
    if let Some(pp) = page {
        return (
            Pagination::PageNumber { page_param: pp.name.clone(), base_page: base_page(pp), total_path: None },
            used_with(&pp.name),
            page_size.clone(),
        );
    }
    (Pagination::Single, vec![], None)
}

fn is_text_or_int(s: &Schema) -> bool {
    !s.is_object() && !s.is_array() && (is_text(s) || s.is("integer"))
}

/// The nearest list endpoint up the path (`/forums/{id}/topics` -> `/forums`), also under its
/// singular or plural name (`/pokemon/{id}/moves` -> `/pokemons`).
fn find_parent(path: &str, known: &[ResourcePlan]) -> Option<usize> {
    let segs = segments(path);
    for cut in (1..segs.len()).rev() {
        let prefix = &segs[..cut];
        let last = prefix.last()?;
        if last.contains('{') {
            continue;
        }
        // the segment right after must be a parameter: `/forums/{id}/...`
        if !segs.get(cut).is_some_and(|s| s.contains('{')) {
            continue;
        }
        let variants = [last.to_string(), singular(last), format!("{last}s")];
        for (i, r) in known.iter().enumerate() {
            let rs = segments(&r.path);
            if rs.len() == prefix.len()
                && rs[..cut - 1] == prefix[..cut - 1]
                && variants.iter().any(|v| v.eq_ignore_ascii_case(rs[cut - 1]))
            {
                return Some(i);
            }
        }
    }
    None
}

/// The field of a parent's records a path parameter takes its value from: a field named like the
/// parameter (`forum_id`, `FlowSid` ~ `flow_sid`), or, when `strip` allows, the parameter without
/// the parent's singular name (`forum_id` -> `id`, `FlowSid` -> `sid`).
fn field_for(item: &Schema, param: &str, parent_path: &str, strip: bool) -> Option<String> {
    let lp = loose(param);
    if let Some((n, _)) = item.properties.iter().find(|(n, _)| loose(n) == lp) {
        return Some(n.clone());
    }
    if strip {
        let last = segments(parent_path).into_iter().rev().find(|s| !s.contains('{')).unwrap_or_default();
        let sing = loose(&singular(last));
        if let Some(rest) = lp.strip_prefix(&sing)
            && !rest.is_empty()
            && let Some((n, _)) = item.properties.iter().find(|(n, _)| loose(n) == rest)
        {
            return Some(n.clone());
        }
    }
    None
}

/// `id` if the records have it; else the field a sibling detail endpoint (`/flows/{Sid}`) is
/// keyed by; else `<singular>_id`, `uuid` and the like; else the only `format: uuid` field.
fn primary_key(item: &Schema, path: &str, _known: &[ResourcePlan]) -> Option<String> {
    let scalar =
        |s: &Schema| !s.is_object() && !s.is_array() && (s.types.is_empty() || s.is("string") || s.is("integer"));
    let has =
        |name: &str| item.properties.iter().find(|(n, s)| loose(n) == loose(name) && scalar(s)).map(|(n, _)| n.clone());
    if let Some(n) = item.properties.iter().find(|(n, s)| n == "id" && scalar(s)) {
        return Some(n.0.clone());
    }
    let last = segments(path).into_iter().rev().find(|s| !s.contains('{')).unwrap_or_default();
    let sing = singular(last);
    for cand in [format!("{sing}_id"), format!("{sing}Id"), format!("{last}_id")] {
        if let Some(n) = has(&cand) {
            return Some(n);
        }
    }
    for cand in ID_NAMES {
        if let Some(n) = has(cand) {
            return Some(n);
        }
    }
    let uuids: Vec<&String> =
        item.properties.iter().filter(|(_, s)| s.format.as_deref() == Some("uuid")).map(|(n, _)| n).collect();
    if uuids.len() == 1 {
        return Some(uuids[0].clone());
    }
    None
}

/// Auth from the security schemes: the global requirement's first supported scheme, else the
/// first one the GET operations require, else the first supported scheme declared.
fn detect_auth(spec: &Spec, candidates: &[Candidate]) -> (Option<Auth>, Option<String>) {
    let schemes =
        spec.root.pointer("/components/securitySchemes").and_then(Value::as_object).cloned().unwrap_or_default();
    if schemes.is_empty() {
        return (None, None);
    }
    let mut order: Vec<String> = Vec::new();
    let requirement_names = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .flat_map(|m| m.keys().cloned().collect::<Vec<_>>())
            .collect()
    };
    order.extend(requirement_names(spec.root.get("security")));
    for c in candidates {
        order.extend(requirement_names(c.op.get("security")));
    }
    order.extend(schemes.keys().cloned());
    let mut unsupported = Vec::new();
    for name in order {
        let Some(s) = schemes.get(&name).and_then(|s| spec.resolve(s).ok()) else { continue };
        let kind = s.get("type").and_then(Value::as_str).unwrap_or_default();
        let scheme = s.get("scheme").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
        let auth = match (kind, scheme.as_str()) {
            ("http", "bearer") => Some(Auth::Bearer),
            ("http", "basic") => Some(Auth::Basic),
            ("apiKey", _) => Some(Auth::ApiKey {
                name: s.get("name").and_then(Value::as_str).unwrap_or("Authorization").to_string(),
                location: s.get("in").and_then(Value::as_str).unwrap_or("header").to_string(),
            }),
            ("oauth2", _) => s.pointer("/flows/clientCredentials").and_then(|f| {
                let token_url = f.get("tokenUrl").and_then(Value::as_str)?.to_string();
                let scopes =
                    f.get("scopes").and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default();
                Some(Auth::OAuth2ClientCredentials { token_url, scopes })
            }),
            _ => None,
        };
        match auth {
            Some(a) => {
                let note = (!unsupported.is_empty())
                    .then(|| format!("security schemes not supported by resttap: {}", unsupported.join(", ")));
                return (Some(a), note);
            }
            None => {
                let label = format!(
                    "`{name}` ({kind}{})",
                    if scheme.is_empty() { String::new() } else { format!(" {scheme}") }
                );
                if !unsupported.contains(&label) {
                    unsupported.push(label);
                }
            }
        }
    }
    (None, Some(format!("no supported security scheme (found {}); add `client.auth` yourself", unsupported.join(", "))))
}
