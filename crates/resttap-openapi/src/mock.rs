//! A mock API shaped like a spec (feature `mock`): every list endpoint [`crate::generate`] maps,
//! with records synthesized from the item schema, paged as the generated paginator expects,
//! behind the auth the spec declares, and child endpoints answering for each parent record.
//!
//! - Every secret has the value [`SECRET`]: bearer token `SECRET`, API key `SECRET`, basic auth
//!   `SECRET:SECRET`. Requests without it get 401. (OAuth2 client credentials: any bearer token
//!   is accepted; the mock serves no token URL.)
//! - Paths are served with and without the path of the spec's first server URL
//!   (`https://api.clerk.com/v1` -> `/v1/users` and `/users`).
//! - `records_per_endpoint` records per root resource, and that many per parent record for a
//!   child; [`expected_counts`] says how many each resource loads in all.
//! - Page sizes: the request's page-size parameter, else its default in the spec, else 10.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

use crate::analyze::{Auth, Keys, Pagination, Plan, ResourcePlan, plan};
use crate::naming::{loose, segments};
use crate::spec::Schema;
use crate::{OpenApiError, Options};

/// The value of every secret the generated configuration uses, as the mock expects it.
pub const SECRET: &str = "resttap-mock-secret";

/// Why the mock could not start.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error(transparent)]
    Spec(#[from] OpenApiError),
    #[error("the mock could not listen on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
}

/// The records each resource of the generated configuration loads from the mock, by resource
/// name.
pub fn expected_counts(spec_text: &str, records_per_endpoint: usize) -> Result<BTreeMap<String, usize>, OpenApiError> {
    let data = Data::build(spec_text, records_per_endpoint)?;
    Ok(data.plan.resources.iter().zip(&data.records).map(|(r, recs)| (r.name.clone(), recs.len())).collect())
}

/// Serves the mock on 127.0.0.1 (a free port) until the task is aborted.
pub async fn serve(spec_text: &str, records_per_endpoint: usize) -> Result<(SocketAddr, JoinHandle<()>), MockError> {
    let data = Arc::new(Data::build(spec_text, records_per_endpoint)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(MockError::Bind)?;
    let addr = listener.local_addr().map_err(MockError::Bind)?;
    let app = Router::new().fallback(handle).with_state(data);
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, handle))
}

/// One record of a resource, with the values of its parent's fields it was made for.
struct Rec {
    parent_key: Vec<String>,
    value: Value,
}

struct Data {
    plan: Plan,
    prefix: Vec<String>,
    records: Vec<Vec<Rec>>,
}

impl Data {
    fn build(spec_text: &str, n: usize) -> Result<Data, OpenApiError> {
        let plan = plan(spec_text, &Options { base_url: Some("http://mock.invalid".into()) })?;
        let spec = crate::spec::Spec::parse(spec_text)?;
        let server = spec.root.pointer("/servers/0/url").and_then(Value::as_str).unwrap_or_default();
        let after_host =
            server.split_once("://").map(|(_, r)| r.find('/').map(|i| &r[i..]).unwrap_or("")).unwrap_or("");
        let prefix = segments(after_host).into_iter().filter(|s| !s.contains('{')).map(String::from).collect();
        let mut records: Vec<Vec<Rec>> = Vec::with_capacity(plan.resources.len());
        for r in &plan.resources {
            let mut recs = Vec::new();
            match r.parent {
                None => {
                    for i in 0..n {
                        recs.push(Rec { parent_key: vec![], value: record(r, i) });
                    }
                }
                Some(p) => {
                    for parent in &records[p] {
                        let key: Vec<Value> = r
                            .resolves
                            .iter()
                            .map(|rv| parent.value.get(&rv.field).cloned().unwrap_or(Value::Null))
                            .collect();
                        for _ in 0..n {
                            let i = recs.len();
                            let mut value = record(r, i);
                            // a field named like a path parameter carries the parent's value
                            // (a grandchild may resolve it from this record)
                            if let Value::Object(m) = &mut value {
                                for (rv, v) in r.resolves.iter().zip(&key) {
                                    // (never the record's own key: `/flows/{Sid}/revisions` has its own `sid`s)
                                    let names: Vec<String> = m
                                        .keys()
                                        .filter(|k| loose(k) == loose(&rv.param) && r.primary_key.as_ref() != Some(*k))
                                        .cloned()
                                        .collect();
                                    for k in names {
                                        m.insert(k, v.clone());
                                    }
                                }
                            }
                            recs.push(Rec { parent_key: key.iter().map(text).collect(), value });
                        }
                    }
                }
            }
            records.push(recs);
        }
        Ok(Data { plan, prefix, records })
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Record `i` of a resource: every property by its type and format; its key unique.
fn record(r: &ResourcePlan, i: usize) -> Value {
    let mut v = synth(&r.item, &r.name, i, 0);
    if !v.is_object() {
        v = json!({"id": i + 1});
    }
    v
}

fn synth(s: &Schema, name: &str, i: usize, depth: usize) -> Value {
    if let Some(e) = (!s.enum_values.is_empty()).then(|| s.enum_values[i % s.enum_values.len()].clone()) {
        return e;
    }
    if s.is_object() {
        let mut m = Map::new();
        if depth < 3 {
            for (k, p) in &s.properties {
                m.insert(k.clone(), synth(p, k, i, depth + 1));
            }
        }
        return Value::Object(m);
    }
    if s.is_array() {
        return match (&s.items, depth < 3) {
            (Some(item), true) => json!([synth(item, name, i, depth + 1)]),
            _ => json!([]),
        };
    }
    if s.is("integer") {
        return json!(i + 1);
    }
    if s.is("number") {
        return json!(i as f64 + 0.5);
    }
    if s.is("boolean") {
        return json!(i.is_multiple_of(2));
    }
    match s.format.as_deref() {
        Some("date-time") => json!(format!("2024-01-{:02}T{:02}:{:02}:00Z", i / 1440 % 28 + 1, i / 60 % 24, i % 60)),
        Some("date") => json!(format!("2024-{:02}-{:02}", i / 28 % 12 + 1, i % 28 + 1)),
        Some("uuid") => json!(format!("00000000-0000-4000-8000-{:012x}", i + 1)),
        Some("email") => json!(format!("user{i}@example.com")),
        Some(f) if f.starts_with("ur") => json!(format!("https://example.com/{name}/{i}")),
        _ => json!(format!("{}-{i}", name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"))),
    }
}

fn b64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) => {
                out.push(v);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn authorized(auth: Option<&Auth>, headers: &HeaderMap, q: &[(String, String)]) -> bool {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    match auth {
        None => true,
        Some(Auth::Bearer) => h("authorization") == format!("Bearer {SECRET}"),
        Some(Auth::OAuth2ClientCredentials { .. }) => h("authorization").starts_with("Bearer "),
        Some(Auth::Basic) => h("authorization") == format!("Basic {}", b64(format!("{SECRET}:{SECRET}").as_bytes())),
        Some(Auth::ApiKey { name, location }) => match location.as_str() {
            "query" => q.iter().any(|(k, v)| k == name && v == SECRET),
            "cookie" => h("cookie").split(';').any(|c| c.trim() == format!("{name}={SECRET}")),
            _ => h(name) == SECRET,
        },
    }
}

/// Matches a request path to a resource: its captured path parameters.
fn route(data: &Data, path: &str) -> Option<(usize, BTreeMap<String, String>)> {
    let mut segs: Vec<String> = segments(path).into_iter().map(decode).collect();
    let mut tries = vec![segs.clone()];
    if !data.prefix.is_empty() && segs.starts_with(&data.prefix) {
        segs.drain(..data.prefix.len());
        tries.insert(0, segs);
    }
    let mut best: Option<(usize, usize, BTreeMap<String, String>)> = None;
    for req in &tries {
        for (i, r) in data.plan.resources.iter().enumerate() {
            let tpl = segments(&r.path);
            if tpl.len() != req.len() {
                continue;
            }
            let mut caps = BTreeMap::new();
            let mut literal = 0;
            let ok = tpl.iter().zip(req).all(|(t, s)| match crate::naming::param_name(t) {
                Some(p) => {
                    caps.insert(p.to_string(), s.clone());
                    true
                }
                None => {
                    literal += 1;
                    *t == s.as_str()
                }
            });
            if ok && best.as_ref().is_none_or(|b| literal > b.0) {
                best = Some((literal, i, caps));
            }
        }
        if best.is_some() {
            break;
        }
    }
    best.map(|(_, i, c)| (i, c))
}

fn set(body: &mut Value, keys: &Keys, v: Value) {
    let mut cur = body;
    for (n, k) in keys.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let m = cur.as_object_mut().expect("object");
        if n + 1 == keys.len() {
            m.insert(k.clone(), v);
            return;
        }
        cur = m.entry(k.clone()).or_insert_with(|| Value::Object(Map::new()));
    }
}

async fn handle(State(data): State<Arc<Data>>, uri: Uri, headers: HeaderMap) -> Response {
    let q = query(&uri);
    if !authorized(data.plan.auth.as_ref(), &headers, &q) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "unauthorized"}))).into_response();
    }
    let Some((ri, caps)) = route(&data, uri.path()) else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "no such endpoint"}))).into_response();
    };
    let r = &data.plan.resources[ri];
    let all: Vec<&Value> = if r.parent.is_some() {
        let key: Vec<String> = r.resolves.iter().map(|rv| caps.get(&rv.param).cloned().unwrap_or_default()).collect();
        let recs: Vec<&Value> = data.records[ri].iter().filter(|x| x.parent_key == key).map(|x| &x.value).collect();
        if recs.is_empty() {
            return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "no such parent"}))).into_response();
        }
        recs
    } else {
        data.records[ri].iter().map(|x| &x.value).collect()
    };
    let get = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let num = |name: &str| get(name).and_then(|v| v.parse::<usize>().ok());
    let page_size = r.page_size.as_ref().and_then(|(p, d)| num(p).or(d.map(|d| d as usize))).unwrap_or(10).max(1);
    let len = all.len();
    let mut body = json!({});
    let mut link = None;
    let next_url = |start: usize| {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
        let mut rest: Vec<String> = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("mock_offset="))
            .map(String::from)
            .collect();
        rest.push(format!("mock_offset={start}"));
        format!("http://{host}{}?{}", uri.path(), rest.join("&"))
    };
    let (start, end) = match &r.pagination {
        Pagination::Offset { offset_param, limit_param, limit, total_path, has_more_path } => {
            let off = num(offset_param).unwrap_or(0);
            let lim = num(limit_param).unwrap_or(*limit as usize).max(1);
            if let Some(t) = total_path {
                set(&mut body, t, json!(len));
            }
            if let Some(h) = has_more_path {
                set(&mut body, h, json!(off + lim < len));
            }
            (off.min(len), (off + lim).min(len))
        }
        Pagination::PageNumber { page_param, base_page, total_path } => {
            let page = num(page_param).unwrap_or(*base_page as usize);
            let idx = page.saturating_sub(*base_page as usize);
            if let Some(t) = total_path {
                set(&mut body, t, json!(len.div_ceil(page_size)));
            }
            ((idx * page_size).min(len), ((idx + 1) * page_size).min(len))
        }
        Pagination::Cursor { cursor_param, cursor_path, has_more_path } => {
            let start = get(cursor_param).and_then(|c| c.strip_prefix('c').and_then(|n| n.parse().ok())).unwrap_or(0);
            let end = (start + page_size).min(len);
            set(&mut body, cursor_path, if end < len { json!(format!("c{end}")) } else { Value::Null });
            if let Some(h) = has_more_path {
                set(&mut body, h, json!(end < len));
            }
            (start.min(len), end)
        }
        Pagination::JsonLink { next_url_path } => {
            let start = num("mock_offset").unwrap_or(0);
            let end = (start + page_size).min(len);
            set(&mut body, next_url_path, if end < len { json!(next_url(end)) } else { Value::Null });
            (start.min(len), end)
        }
        Pagination::HeaderLink => {
            let start = num("mock_offset").unwrap_or(0);
            let end = (start + page_size).min(len);
            if end < len {
                link = Some(format!("<{}>; rel=\"next\"", next_url(end)));
            }
            (start.min(len), end)
        }
        Pagination::Single => (0, len),
    };
    let page: Vec<Value> = all[start..end].iter().map(|v| (*v).clone()).collect();
    if r.data_path.is_empty() {
        body = Value::Array(page);
    } else {
        set(&mut body, &r.data_path, Value::Array(page));
    }
    let mut resp = axum::Json(body).into_response();
    if let Some(l) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        resp.headers_mut().insert(header::LINK, l);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_percent_decoding() {
        assert_eq!(b64(b"a:b"), "YTpi");
        assert_eq!(b64(b"ab"), "YWI=");
        assert_eq!(b64(b"a"), "YQ==");
        assert_eq!(decode("a%20b+c%2"), "a b c%2");
    }
}
