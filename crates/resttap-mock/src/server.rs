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

use crate::data::{RESOURCES, record, record_count};

/// Faults the server injects into `/v1/` responses.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Every `fail_every`-th request to `/v1/` fails (0: never).
    pub fail_every: u64,
    /// Statuses used for the failures, in turn (default: 429, 500, 502, 503, 504).
    pub statuses: Vec<u16>,
    /// `Retry-After` value sent with 429 responses (default `0`).
    pub retry_after: Option<String>,
    /// Delay before every `/v1/` response, in milliseconds.
    pub slow_ms: u64,
    /// Every request to `/v1/` fails with this status (0: off), e.g. 500 to outlast retries.
    pub always: u16,
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
}

type PageKey = (usize, u64, u64, u64);

struct Shared {
    opts: MockOptions,
    revision: AtomicU64,
    requests: AtomicU64,
    faults_sent: AtomicU64,
    unauthorized: AtomicU64,
    faults: Mutex<Faults>,
    pages: Mutex<HashMap<PageKey, Bytes>>,
}

impl Shared {
    fn render_page(&self, resource: usize, offset: u64, limit: u64, revision: u64) -> Bytes {
        let key = (resource, offset, limit, revision);
        if let Some(b) = self.pages.lock().expect("page cache").get(&key) {
            return b.clone();
        }
        let name = RESOURCES[resource];
        let total = record_count(name, self.opts.records, revision, self.opts.growth);
        let end = (offset + limit).min(total);
        let items: Vec<serde_json::Value> = (offset..end).map(|i| record(name, i + 1, revision)).collect();
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

fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": status.canonical_reason().unwrap_or("error"), "message": message });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn list(
    State(s): State<Arc<Shared>>,
    Path(resource): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let n = s.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let faults = s.faults.lock().expect("faults").clone();
    if faults.slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.slow_ms)).await;
    }
    let expected = format!("Bearer {}", s.opts.token);
    if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        s.unauthorized.fetch_add(1, Ordering::Relaxed);
        return json_error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
    }
    let injected = if faults.always != 0 {
        Some(faults.always)
    } else if faults.fail_every > 0 && n % faults.fail_every == 0 {
        let statuses = if faults.statuses.is_empty() { vec![429, 500, 502, 503, 504] } else { faults.statuses.clone() };
        Some(statuses[((n / faults.fail_every - 1) % statuses.len() as u64) as usize])
    } else {
        None
    };
    if let Some(code) = injected {
        s.faults_sent.fetch_add(1, Ordering::Relaxed);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = json_error(status, "injected fault");
        if code == 429 {
            let value = faults.retry_after.as_deref().unwrap_or("0");
            if let Ok(v) = HeaderValue::from_str(value) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        return resp;
    }
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
    let revision = s.revision.load(Ordering::Relaxed);
    let body = s.render_page(idx, offset, limit, revision);
    ([(header::CONTENT_TYPE, "application/json")], Body::from(body)).into_response()
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(Stats {
        requests: s.requests.load(Ordering::Relaxed),
        faults: s.faults_sent.load(Ordering::Relaxed),
        unauthorized: s.unauthorized.load(Ordering::Relaxed),
        revision: s.revision.load(Ordering::Relaxed),
    })
    .into_response()
}

async fn set_revision(State(s): State<Arc<Shared>>, Path(rev): Path<u64>) -> Response {
    s.revision.store(rev, Ordering::Relaxed);
    s.pages.lock().expect("page cache").retain(|k, _| k.3 == rev);
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

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/{resource}", get(list))
        .route("/admin/stats", get(stats))
        .route("/admin/revision/{rev}", post(set_revision))
        .route("/admin/faults", put(set_faults))
        .route("/health", get(|| async { "ok" }))
        .with_state(shared)
}

fn shared(opts: MockOptions) -> Arc<Shared> {
    let s = Arc::new(Shared {
        revision: AtomicU64::new(opts.revision),
        requests: AtomicU64::new(0),
        faults_sent: AtomicU64::new(0),
        unauthorized: AtomicU64::new(0),
        faults: Mutex::new(opts.faults.clone()),
        pages: Mutex::new(HashMap::new()),
        opts,
    });
    if s.opts.prerender {
        for (idx, name) in RESOURCES.iter().enumerate() {
            let total = record_count(name, s.opts.records, s.opts.revision, s.opts.growth);
            let mut offset = 0;
            while offset < total.max(1) {
                s.render_page(idx, offset, s.opts.page_size, s.opts.revision);
                offset += s.opts.page_size;
            }
        }
    }
    s
}

/// Serves the mock API on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, opts: MockOptions) -> std::io::Result<()> {
    axum::serve(listener, router(shared(opts))).await
}

/// Binds `addr` (port 0 picks a free port), and serves the mock API on a background task.
/// Returns the bound address.
pub async fn spawn(addr: SocketAddr, opts: MockOptions) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(shared(opts));
    Ok((local, tokio::spawn(async move { axum::serve(listener, app).await })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        assert_eq!(decode_cursor(&encode_cursor(1200)), Some(1200));
        assert_eq!(decode_cursor("not-a-cursor"), None);
    }

    #[test]
    fn last_page_has_no_cursor() {
        let s = shared(MockOptions { records: 150, ..MockOptions::default() });
        let idx = RESOURCES.iter().position(|r| *r == "suggestions").unwrap();
        let first: serde_json::Value = serde_json::from_slice(&s.render_page(idx, 0, 100, 0)).unwrap();
        assert_eq!(first["suggestions"].as_array().unwrap().len(), 100);
        assert!(first["pagination"]["cursor"].is_string());
        let last: serde_json::Value = serde_json::from_slice(&s.render_page(idx, 100, 100, 0)).unwrap();
        assert_eq!(last["suggestions"].as_array().unwrap().len(), 50);
        assert!(last["pagination"].get("cursor").is_none());
        assert_eq!(last["pagination"]["total"], 150);
    }
}
