//! A rate limit as SaaS APIs enforce and announce them: a fixed window of `per_ms`
//! milliseconds (aligned to the Unix epoch) admits `requests`; the ones beyond get 429 with
//! `Retry-After` (whole seconds to the window's end, at least 1). Every answer on `/v1/` and
//! `/styles/` carries the budget in the chosen header style. Also counts the requests in
//! flight (the most at once, for tests of concurrent pages).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::server::{Shared, json_error};

/// A rate limit the server enforces.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests admitted per window.
    pub requests: u64,
    /// The window, in milliseconds.
    #[serde(default = "second")]
    pub per_ms: u64,
    /// How the budget is announced.
    #[serde(default)]
    pub style: LimitStyle,
}

fn second() -> u64 {
    1000
}

/// The response headers that announce the budget.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LimitStyle {
    /// The IETF draft's current fields: `RateLimit: "default";r=R;t=T` and
    /// `RateLimit-Policy: "default";q=L;w=W` (seconds from now).
    Ietf,
    /// The IETF draft's earlier separate fields: `RateLimit-Limit`, `-Remaining`, `-Reset`
    /// (seconds from now).
    RatelimitFields,
    /// GitHub's: `X-RateLimit-Limit`, `-Remaining`, `-Used`, `-Reset` (epoch seconds).
    Github,
    /// The seed's API: `X-Rate-Limit-Limit`, `-Remaining`, `-Reset` (epoch seconds).
    #[default]
    XRateLimit,
    /// None: only the 429s and their `Retry-After`.
    None,
}

/// The current window and the requests it admitted.
#[derive(Debug, Default)]
pub(crate) struct Window {
    index: u64,
    admitted: u64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn headers(limit: &RateLimit, remaining: u64, reset_ms: u64, now: u64) -> Vec<(&'static str, String)> {
    let (l, r) = (limit.requests, remaining);
    let delta = (reset_ms - now).div_ceil(1000).max(1);
    let epoch = reset_ms.div_ceil(1000);
    match limit.style {
        LimitStyle::Ietf => vec![
            ("ratelimit", format!("\"default\";r={r};t={delta}")),
            ("ratelimit-policy", format!("\"default\";q={l};w={}", limit.per_ms.div_ceil(1000))),
        ],
        LimitStyle::RatelimitFields => vec![
            ("ratelimit-limit", l.to_string()),
            ("ratelimit-remaining", r.to_string()),
            ("ratelimit-reset", delta.to_string()),
        ],
        LimitStyle::Github => vec![
            ("x-ratelimit-limit", l.to_string()),
            ("x-ratelimit-remaining", r.to_string()),
            ("x-ratelimit-used", (l - r).to_string()),
            ("x-ratelimit-reset", epoch.to_string()),
        ],
        LimitStyle::XRateLimit => vec![
            ("x-rate-limit-limit", l.to_string()),
            ("x-rate-limit-remaining", r.to_string()),
            ("x-rate-limit-reset", epoch.to_string()),
        ],
        LimitStyle::None => Vec::new(),
    }
}

fn add(h: &mut HeaderMap, pairs: Vec<(&'static str, String)>) {
    for (k, v) in pairs {
        h.insert(HeaderName::from_static(k), HeaderValue::from_str(&v).expect("ascii"));
    }
}

/// Decides whether a request fits the window: `Ok` with the headers to announce, or the 429
/// (the finished response as `Err`, axum's style, as in `styles`).
#[allow(clippy::result_large_err)]
fn admit(limit: &RateLimit, window: &Mutex<Window>) -> Result<Vec<(&'static str, String)>, Response> {
    let now = now_ms();
    let per = limit.per_ms.max(1);
    let index = now / per;
    let reset_ms = (index + 1) * per;
    let mut w = window.lock().expect("window");
    if w.index != index {
        *w = Window { index, admitted: 0 };
    }
    if w.admitted >= limit.requests {
        let mut resp = json_error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
        let h = resp.headers_mut();
        add(h, headers(limit, 0, reset_ms, now));
        let after = (reset_ms - now).div_ceil(1000).max(1);
        h.insert(header::RETRY_AFTER, HeaderValue::from_str(&after.to_string()).expect("ascii"));
        return Err(resp);
    }
    w.admitted += 1;
    Ok(headers(limit, limit.requests - w.admitted, reset_ms, now))
}

/// The middleware on the API's routes: rate limit, and requests in flight counted.
pub(crate) async fn layer(State(s): State<Arc<Shared>>, req: Request<Body>, next: Next) -> Response {
    let path = req.uri().path();
    if !(path.starts_with("/v1/") || path.starts_with("/styles/")) {
        return next.run(req).await;
    }
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let (limit, latency) = {
        let f = s.faults.lock().expect("faults");
        (f.rate_limit, f.slow_ms)
    };
    let resp = match limit.map(|l| (l, admit(&l, &s.window))) {
        Some((_, Err(refused))) => {
            s.requests.fetch_add(1, Ordering::Relaxed);
            s.rate_limited.fetch_add(1, Ordering::Relaxed);
            // a refusal takes as long to arrive as an answer (`slow_ms`, which the handlers add)
            tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
            refused
        }
        Some((_, Ok(announce))) => {
            let mut resp = next.run(req).await;
            add(resp.headers_mut(), announce);
            resp
        }
        None => next.run(req).await,
    };
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_its_budget_then_refuses_with_retry_after() {
        let limit = RateLimit { requests: 3, per_ms: 60_000, style: LimitStyle::Github };
        let w = Mutex::new(Window::default());
        let mut remaining = Vec::new();
        for _ in 0..3 {
            let h = admit(&limit, &w).unwrap();
            remaining.push(h.iter().find(|(k, _)| *k == "x-ratelimit-remaining").unwrap().1.clone());
        }
        assert_eq!(remaining, ["2", "1", "0"]);
        let refused = admit(&limit, &w).unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let after: u64 = refused.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&after));
        let reset: u64 = refused.headers()["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
        assert!(reset > now_ms() / 1000 && reset <= now_ms() / 1000 + 61);
    }
}
