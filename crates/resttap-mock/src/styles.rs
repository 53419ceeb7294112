//! Routes that serve the same records the ways other APIs do, so that every paginator, request
//! body and parent/child configuration of dlt's REST API source can be tested end to end.
//!
//! - `GET /v1/{resource}/{id}`: one record, the whole body (dlt's single-entity endpoints).
//! - `GET /v1/{resource}/{id}/{child}`: the `child` records whose `<resource>_id` (singular) is
//!   `id`, e.g. `/v1/forums/3/suggestions`, paged with the seed's cursor envelope.
//! - `GET|POST /styles/{style}/{resource}`, `style` one of:
//!   - `json_link`: `{"data": [...], "links": {"next": "/styles/json_link/..?page_token=.."}}`
//!   - `header_link`: a top-level array and a `Link: <...>; rel="next"` header (absolute URL)
//!   - `header_cursor`: `{"items": [...]}` and an `X-Next-Cursor` header; `?cursor=`
//!   - `cursor`: `{"data": [...], "next": "<cursor>"}` (`null` on the last page); `?cursor=`
//!   - `offset`: `{"items": [...], "total": N}`; `?offset=&limit=`
//!   - `page_number`: `{"results": [...], "page": p, "total_pages": K}`; `?page=` from 1
//!   - `body`: POST with a JSON body: `{"page": {"offset": o, "limit": l}}` or
//!     `{"cursor": c}` or `{"page_number": p}`; answers `{"items": [...], "total": N,
//!     "next_cursor": c}`. A body `filter: {"min_id": n}` keeps ids from `n`.
//!   - `form`: POST with a form body `offset=&limit=` (or those in the query) and `min_id=`;
//!     answers like `offset`.
//!
//!   `json_link` and `header_link` take `?next_base=http://host:port`: the next link leads to
//!   that origin (another mock, in the tests of credentials crossing origins).
//! - `GET|POST /redirect/{rest}?to_base=URL`: a 307 to `{to_base}/{rest}` (this server's
//!   `/{rest}` without it), the other query parameters kept.
//!
//! Every route checks credentials like `/v1/` (bearer, OAuth2, basic, API key in a header,
//! query or cookie) and honours injected faults.

// Handlers return the finished error response as `Err` (axum's style); this is a test server,
// so the size of `Response` in a `Result` does not matter.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::data::RESOURCES;
use crate::server::{Shared, json_error};

fn known(resource: &str) -> Result<(), Response> {
    if RESOURCES.contains(&resource) {
        Ok(())
    } else {
        Err(json_error(StatusCode::NOT_FOUND, &format!("no resource named {resource:?}")))
    }
}

fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, Response> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| json_error(StatusCode::BAD_REQUEST, &format!("{name} must be a whole number"))),
    }
}

fn cursor_of(offset: u64) -> String {
    format!("c{offset}")
}

fn offset_of(cursor: &str) -> Result<u64, Response> {
    cursor
        .strip_prefix('c')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| json_error(StatusCode::BAD_REQUEST, "invalid cursor"))
}

fn json_response(body: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Records `offset..offset+limit` of `resource` with id at least `min_id`, and how many there are.
fn slice(s: &Shared, resource: &str, offset: u64, limit: u64, min_id: u64) -> (Vec<Value>, u64) {
    let rev = s.revision.load(std::sync::atomic::Ordering::Relaxed);
    let first = min_id.max(1);
    let total = s.total(resource).saturating_sub(first - 1);
    let end = (offset + limit).min(total);
    ((offset..end).map(|i| s.record(resource, first + i, rev)).collect(), total)
}

/// `GET /v1/{resource}/{id}`.
pub(crate) async fn one(
    State(s): State<Arc<Shared>>,
    Path((resource, id)): Path<(String, u64)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = s.admit(&uri, &headers).await.and_then(|_| known(&resource)) {
        return r;
    }
    if id == 0 || id > s.total(&resource) {
        return json_error(StatusCode::NOT_FOUND, &format!("no {resource} with id {id}"));
    }
    json_response(s.record(&resource, id, s.revision.load(std::sync::atomic::Ordering::Relaxed)))
}

/// `GET /v1/{resource}/{id}/{child}`.
pub(crate) async fn children(
    State(s): State<Arc<Shared>>,
    Path((resource, id, child)): Path<(String, u64, String)>,
    Query(q): Query<HashMap<String, String>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let run = async {
        s.admit(&uri, &headers).await?;
        known(&resource)?;
        known(&child)?;
        if id == 0 || id > s.total(&resource) {
            return Err(json_error(StatusCode::NOT_FOUND, &format!("no {resource} with id {id}")));
        }
        let key = format!("{}_id", resource.trim_end_matches('s'));
        let rev = s.revision.load(std::sync::atomic::Ordering::Relaxed);
        let all: Vec<Value> = (1..=s.total(&child))
            .map(|i| s.record(&child, i, rev))
            .filter(|r| r.get(&key).and_then(Value::as_u64) == Some(id))
            .collect();
        let offset = match q.get("cursor") {
            Some(c) => offset_of(c)?,
            None => 0,
        };
        let limit = number(&q, "limit")?.unwrap_or(s.opts.page_size).max(1);
        let end = ((offset + limit) as usize).min(all.len());
        let page = all[(offset as usize).min(end)..end].to_vec();
        let mut pagination = json!({ "total": all.len() });
        if end < all.len() {
            pagination["cursor"] = cursor_of(end as u64).into();
        }
        Ok(json_response(json!({ child.as_str(): page, "pagination": pagination })))
    };
    run.await.unwrap_or_else(|r| r)
}

/// `GET|POST /styles/{style}/{resource}`.
pub(crate) async fn styled(
    State(s): State<Arc<Shared>>,
    Path((style, resource)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        s.admit(&uri, &headers).await?;
        known(&resource)?;
        let size = s.opts.page_size;
        let bad = |m: &str| json_error(StatusCode::BAD_REQUEST, m);
        let r = &resource;
        let resp = match style.as_str() {
            "json_link" => {
                let offset = match q.get("page_token") {
                    Some(t) => offset_of(t)?,
                    None => 0,
                };
                let (items, total) = slice(&s, r, offset, size, 0);
                // `next_base`: the next link leads to that origin (another host, in the tests)
                let base = q.get("next_base").map_or("", String::as_str);
                let next = (offset + size < total)
                    .then(|| format!("{base}/styles/json_link/{r}?page_token={}", cursor_of(offset + size)));
                json_response(json!({ "data": items, "links": { "next": next } }))
            }
            "header_link" => {
                let offset = number(&q, "offset")?.unwrap_or(0);
                let (items, total) = slice(&s, r, offset, size, 0);
                let mut resp = json_response(Value::Array(items));
                if offset + size < total {
                    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
                    let base = q.get("next_base").cloned().unwrap_or_else(|| format!("http://{host}"));
                    let link = format!(
                        "<{base}/styles/header_link/{r}?offset={}>; rel=\"next\", <http://{host}/styles/header_link/{r}?offset=0>; rel=\"first\"",
                        offset + size
                    );
                    resp.headers_mut().insert(header::LINK, HeaderValue::from_str(&link).expect("ascii"));
                }
                resp
            }
            "header_cursor" | "cursor" => {
                let offset = match q.get("cursor") {
                    Some(c) => offset_of(c)?,
                    None => 0,
                };
                let (items, total) = slice(&s, r, offset, size, 0);
                let next = (offset + size < total).then(|| cursor_of(offset + size));
                if style == "cursor" {
                    json_response(json!({ "data": items, "next": next }))
                } else {
                    let mut resp = json_response(json!({ "items": items }));
                    if let Some(c) = next {
                        resp.headers_mut().insert("x-next-cursor", HeaderValue::from_str(&c).expect("ascii"));
                    }
                    resp
                }
            }
            "offset" => {
                let offset = number(&q, "offset")?.ok_or_else(|| bad("offset is required"))?;
                let limit = number(&q, "limit")?.ok_or_else(|| bad("limit is required"))?.max(1);
                let (items, total) = slice(&s, r, offset, limit, 0);
                json_response(json!({ "items": items, "total": total }))
            }
            "page_number" => {
                let page = number(&q, "page")?.unwrap_or(1);
                if page == 0 {
                    return Err(bad("pages count from 1"));
                }
                let (items, total) = slice(&s, r, (page - 1) * size, size, 0);
                json_response(json!({ "results": items, "page": page, "total_pages": total.div_ceil(size) }))
            }
            "body" => {
                if method != Method::POST {
                    return Err(json_error(StatusCode::METHOD_NOT_ALLOWED, "POST a JSON body"));
                }
                let b: Value = if body.is_empty() {
                    json!({})
                } else {
                    serde_json::from_slice(&body).map_err(|e| bad(&format!("the body is not JSON: {e}")))?
                };
                let min_id = b.pointer("/filter/min_id").and_then(Value::as_u64).unwrap_or(0);
                let (offset, limit) = if let Some(c) = b.get("cursor").and_then(Value::as_str) {
                    (offset_of(c)?, size)
                } else if let Some(p) = b.get("page_number").and_then(Value::as_u64) {
                    (p.saturating_sub(1) * size, size)
                } else {
                    let o = b.pointer("/page/offset").and_then(Value::as_u64).unwrap_or(0);
                    (o, b.pointer("/page/limit").and_then(Value::as_u64).unwrap_or(size).max(1))
                };
                let (items, total) = slice(&s, r, offset, limit, min_id);
                let next = (offset + limit < total).then(|| cursor_of(offset + limit));
                json_response(json!({ "items": items, "total": total, "next_cursor": next }))
            }
            "form" => {
                let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
                if method != Method::POST || !ct.starts_with("application/x-www-form-urlencoded") {
                    return Err(bad("POST a form body (application/x-www-form-urlencoded)"));
                }
                let f: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
                // an offset paginator sends these as query parameters; the form may hold them too
                let offset = number(&q, "offset")?.or(number(&f, "offset")?).unwrap_or(0);
                let limit = number(&q, "limit")?.or(number(&f, "limit")?).unwrap_or(size).max(1);
                let (items, total) = slice(&s, r, offset, limit, number(&f, "min_id")?.unwrap_or(0));
                json_response(json!({ "items": items, "total": total }))
            }
            other => return Err(json_error(StatusCode::NOT_FOUND, &format!("no style named {other:?}"))),
        };
        Ok(resp)
    };
    run.await.unwrap_or_else(|r| r)
}

/// `GET|POST /redirect/{rest}?to_base=URL`: `307 Temporary Redirect` to `{to_base}/{rest}` (this
/// server's `/{rest}` without it), the other query parameters kept. Authenticated like the API.
pub(crate) async fn redirect(
    State(s): State<Arc<Shared>>,
    Path(rest): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = s.admit(&uri, &headers).await {
        return resp;
    }
    let base = q.iter().find(|(k, _)| k == "to_base").map_or("", |(_, v)| v.as_str());
    let kept: Vec<&(String, String)> = q.iter().filter(|(k, _)| k != "to_base").collect();
    let mut to = format!("{base}/{rest}");
    if !kept.is_empty() {
        let mut enc = url::form_urlencoded::Serializer::new(String::new());
        enc.extend_pairs(kept.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        to.push('?');
        to.push_str(&enc.finish());
    }
    match HeaderValue::from_str(&to) {
        Ok(v) => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, v)]).into_response(),
        Err(_) => json_error(StatusCode::BAD_REQUEST, "to_base is not a valid header value"),
    }
}
