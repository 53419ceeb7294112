//! The HTTP client of resttap: one connection pool, auth, retries with exponential backoff and
//! `Retry-After`, and errors that name the URL (secrets redacted), the status and a body excerpt.

mod oauth;
mod redact;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use resttap_config::{ApiKeyLocation, AuthConfig, Method, Rendered, RetryConfig, Secrets, render};
use url::Url;

pub use oauth::OAuth2;
pub use redact::Redactor;
pub use reqwest::StatusCode;
/// Header types, re-exported so that paginators need not depend on reqwest.
pub use reqwest::header as reqwest_header;

/// One request to send.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub method: Method,
    /// Without the query parameters below.
    pub url: Url,
    /// Query parameters, in order; replaced or extended by paginators.
    pub query: Vec<(String, String)>,
    /// Extra headers for this request (rendered; may hold secrets).
    pub headers: Vec<(String, Rendered)>,
    /// A JSON body.
    pub json: Option<serde_json::Value>,
    /// A form or raw body (`endpoint.data`); not sent together with `json`.
    pub data: Option<Body>,
    /// The OAuth2 token source, when the request authenticates with one.
    pub oauth: Option<Arc<OAuth2>>,
}

/// A request body other than JSON, as dlt's `data`.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Sent `application/x-www-form-urlencoded`.
    Form(Vec<(String, Rendered)>),
    /// Sent as it is.
    Raw(Rendered),
}

impl RequestSpec {
    /// Sets query parameter `name`, replacing any earlier value.
    pub fn set_query(&mut self, name: &str, value: String) {
        self.query.retain(|(k, _)| k != name);
        self.query.push((name.to_string(), value));
    }

    /// A request with only a method and URL.
    pub fn new(method: Method, url: Url) -> Self {
        RequestSpec { method, url, query: Vec::new(), headers: Vec::new(), json: None, data: None, oauth: None }
    }

    /// Sets the value at a dot-separated path (`page.offset`) of the JSON body, creating the body
    /// and the objects on the way.
    pub fn set_json_path(&mut self, path: &str, value: serde_json::Value) {
        let mut cur = self.json.get_or_insert_with(|| serde_json::Value::Object(Default::default()));
        let keys: Vec<&str> = path.split('.').collect();
        for (i, k) in keys.iter().enumerate() {
            if !cur.is_object() {
                *cur = serde_json::Value::Object(Default::default());
            }
            let m = cur.as_object_mut().expect("made an object");
            if i + 1 == keys.len() {
                m.insert((*k).to_string(), value);
                return;
            }
            cur = m.entry((*k).to_string()).or_insert_with(|| serde_json::Value::Object(Default::default()));
        }
    }

    /// The full URL, query included.
    pub fn full_url(&self) -> Url {
        let mut u = self.url.clone();
        if !self.query.is_empty() {
            u.query_pairs_mut().extend_pairs(self.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        u
    }
}

/// A response that was successful (2xx).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The URL that was requested, query included.
    pub url: Url,
}

/// Why a request failed for good.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The server answered with a status that is not retried, or kept answering with one that is.
    #[error("HTTP {status} from {url} after {attempts} attempt(s){}: {excerpt}", hint(*status))]
    Status {
        url: String,
        status: u16,
        excerpt: String,
        attempts: u32,
        /// The whole body, for `response_actions` (never printed: it may be long).
        body: Bytes,
    },
    /// The request could not be sent or the response not read (connection refused, timeout, ...).
    #[error("request to {url} failed after {attempts} attempt(s): {message}")]
    Transport { url: String, message: String, attempts: u32 },
    /// The client could not be built or a header is invalid.
    #[error("invalid request setup: {0}")]
    Setup(String),
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => " (unauthorized: check the token or credentials in the config's `auth` and their secret)",
        403 => " (forbidden: the credentials lack permission for this endpoint)",
        404 => " (not found: check `client.base_url` and the endpoint `path`)",
        _ => "",
    }
}

impl HttpError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What happened before a retry, for progress reporting.
#[derive(Debug, Clone)]
pub struct RetryNotice {
    /// 1-based retry number.
    pub retry: u32,
    /// The status that caused it, or `None` for a transport error.
    pub status: Option<u16>,
    /// How long resttap waits before it.
    pub delay: Duration,
    /// The URL, secrets redacted.
    pub url: String,
}

/// The wait before retry `n` (1-based): `backoff_factor * 2^(n-1)` seconds, capped at `max_delay`.
pub fn backoff_delay(policy: &RetryConfig, retry: u32) -> Duration {
    let secs = policy.backoff_factor * 2f64.powi(retry.saturating_sub(1).min(30) as i32);
    Duration::from_secs_f64(secs.min(policy.max_delay).max(0.0))
}

/// Parses a `Retry-After` value: seconds or an HTTP date; capped at `max_delay`.
pub fn retry_after(value: &str, max_delay: f64, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    let secs = if let Ok(n) = v.parse::<f64>() {
        n
    } else {
        let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        (when.with_timezone(&chrono::Utc) - now).num_milliseconds() as f64 / 1000.0
    };
    Some(Duration::from_secs_f64(secs.clamp(0.0, max_delay.max(0.0))))
}

/// How much of a response body goes into an error message.
const EXCERPT_CHARS: usize = 300;

/// The start of a body as text, for error messages.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().count() > EXCERPT_CHARS {
        s.push('…');
    }
    if s.trim().is_empty() { "(empty body)".into() } else { s }
}

/// An HTTP client bound to one configuration's auth, headers, retry policy and secrets.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    retry: RetryConfig,
    redactor: Redactor,
    secrets: Secrets,
    /// OAuth2 token sources by token URL and client id, shared by every request using them.
    oauth: Arc<Mutex<HashMap<String, Arc<OAuth2>>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("retry", &self.retry).finish_non_exhaustive()
    }
}

fn install_crypto() {
    // Several clients may race here; only the first install wins, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Client {
    /// A client with the given policy. `secrets` are used to render auth and headers and are
    /// scrubbed from every message.
    pub fn new(retry: RetryConfig, timeout: Duration, secrets: Secrets) -> Result<Self, HttpError> {
        install_crypto();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(32)
            .tcp_nodelay(true)
            .user_agent(concat!("resttap/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Setup(e.to_string()))?;
        Ok(Client { http, retry, redactor: Redactor::new(&secrets), secrets, oauth: Arc::default() })
    }

    /// The redactor for this client's secrets.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Renders a template with this client's secrets.
    pub fn render(&self, template: &str) -> Rendered {
        render(template, &self.secrets)
    }

    /// Renders a template with this client's secrets and other placeholder values.
    pub fn render_with(&self, template: &str, values: &dyn Fn(&str, &str) -> Option<String>) -> Rendered {
        resttap_config::render_with(template, &self.secrets, values)
    }

    /// Applies `auth` to a request spec (headers or query parameters).
    pub fn apply_auth(&self, auth: &AuthConfig, req: &mut RequestSpec) -> Result<(), HttpError> {
        match auth {
            AuthConfig::Bearer { token } => {
                let t = self.render(token);
                req.headers.push(("Authorization".into(), Rendered::new(format!("Bearer {}", t.expose()), true)));
            }
            AuthConfig::ApiKey { name, api_key, location } => {
                let key = self.render(api_key);
                match location {
                    ApiKeyLocation::Header => req.headers.push((name.clone(), key)),
                    ApiKeyLocation::Query => req.query.push((name.clone(), key.expose().to_string())),
                    ApiKeyLocation::Cookie => {
                        let cookie = format!("{name}={}", key.expose());
                        req.headers.push(("Cookie".into(), Rendered::new(cookie, true)));
                    }
                }
            }
            AuthConfig::HttpBasic { username, password } => {
                use base64::Engine;
                let raw = format!("{}:{}", self.render(username).expose(), self.render(password).expose());
                let enc = base64::engine::general_purpose::STANDARD.encode(raw);
                req.headers.push(("Authorization".into(), Rendered::new(format!("Basic {enc}"), true)));
            }
            AuthConfig::Oauth2ClientCredentials {
                access_token_url,
                client_id,
                client_secret,
                access_token_request_data,
                default_token_expiration,
            } => {
                let url = self.render(access_token_url);
                let id = self.render(client_id);
                let key = format!("{}\u{0}{}", url.expose(), id.expose());
                let mut cache = self.oauth.lock().expect("oauth cache");
                let source = cache.entry(key).or_insert_with(|| {
                    let mut form = vec![
                        ("client_id".to_string(), id.clone()),
                        ("client_secret".to_string(), self.render(client_secret)),
                        ("grant_type".to_string(), Rendered::new("client_credentials".into(), false)),
                    ];
                    for (k, v) in access_token_request_data.iter().flat_map(|d| d.as_object()).flatten() {
                        let text = match v {
                            serde_json::Value::String(s) => self.render(s),
                            other => Rendered::new(other.to_string(), false),
                        };
                        form.retain(|(name, _)| name != k);
                        form.push((k.clone(), text));
                    }
                    let lifetime = Duration::from_secs(default_token_expiration.unwrap_or(3600));
                    Arc::new(OAuth2::new(url.clone(), form, lifetime))
                });
                req.oauth = Some(Arc::clone(source));
            }
        }
        Ok(())
    }

    /// Sends `req`, retrying as the policy says. `on_retry` is called before each wait. With
    /// OAuth2, the token is added (fetched first when needed) and a 401 refreshes it once.
    pub async fn send(
        &self,
        req: &RequestSpec,
        on_retry: &(dyn Fn(&RetryNotice) + Sync),
    ) -> Result<Response, HttpError> {
        let Some(oauth) = &req.oauth else { return self.send_with_retries(req, on_retry).await };
        let mut stale = None;
        loop {
            let token = oauth.token(stale, || self.fetch_token(oauth, on_retry)).await?;
            let mut authed = req.clone();
            authed.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
            authed
                .headers
                .push(("Authorization".into(), Rendered::new(format!("Bearer {}", token.value.expose()), true)));
            match self.send_with_retries(&authed, on_retry).await {
                Err(HttpError::Status { status: 401, .. }) if stale.is_none() => {
                    tracing::info!("the API rejected the OAuth2 token (401); fetching a new one");
                    stale = Some(token.generation);
                }
                other => return other,
            }
        }
    }

    /// Requests a token from the OAuth2 token endpoint (dlt's form: client id and secret in the
    /// form body with `grant_type=client_credentials`).
    async fn fetch_token(
        &self,
        oauth: &OAuth2,
        on_retry: &(dyn Fn(&RetryNotice) + Sync),
    ) -> Result<(Rendered, Option<u64>), HttpError> {
        let url = Url::parse(oauth.url.expose())
            .map_err(|e| HttpError::Setup(format!("OAuth2 `access_token_url` is not a valid URL: {e}")))?;
        let mut req = RequestSpec::new(Method::Post, url);
        req.data = Some(Body::Form(oauth.form.clone()));
        let resp = self.send_with_retries(&req, on_retry).await.map_err(|e| match e {
            HttpError::Status { url, status, excerpt, attempts, body } => {
                HttpError::Status { url: format!("{url} (the OAuth2 token endpoint)"), status, excerpt, attempts, body }
            }
            other => other,
        })?;
        let (token, expires) = oauth::parse_token_response(&resp.body).map_err(|m| {
            HttpError::Setup(format!(
                "OAuth2 token from {}: {m}; it starts with: {}",
                self.redactor.redact(resp.url.as_str()),
                self.redactor.redact(&excerpt(&resp.body))
            ))
        })?;
        Ok((Rendered::new(token, true), expires))
    }

    async fn send_with_retries(
        &self,
        req: &RequestSpec,
        on_retry: &(dyn Fn(&RetryNotice) + Sync),
    ) -> Result<Response, HttpError> {
        let url = req.full_url();
        let shown = self.redactor.redact(url.as_str());
        let mut headers = HeaderMap::new();
        for (k, v) in &req.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| HttpError::Setup(format!("header name `{k}`: {e}")))?;
            let mut value = HeaderValue::from_str(v.expose())
                .map_err(|_| HttpError::Setup(format!("header `{k}` has a value that is not valid in HTTP")))?;
            value.set_sensitive(v.is_secret() || name == reqwest::header::AUTHORIZATION);
            headers.insert(name, value);
        }
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let mut builder = match req.method {
                Method::Get => self.http.get(url.clone()),
                Method::Post => self.http.post(url.clone()),
            }
            .headers(headers.clone());
            if let Some(j) = &req.json {
                builder = builder.json(j);
            }
            match &req.data {
                Some(Body::Form(fields)) => {
                    let mut enc = url::form_urlencoded::Serializer::new(String::new());
                    for (k, v) in fields {
                        enc.append_pair(k, v.expose());
                    }
                    builder = builder
                        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(enc.finish());
                }
                Some(Body::Raw(text)) => builder = builder.body(text.expose().to_string()),
                None => {}
            }
            let outcome = match builder.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let resp_headers = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(body) => Ok((status, resp_headers, body)),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            let retries_left = attempt <= self.retry.max_retries;
            match outcome {
                Ok((status, resp_headers, body)) if status.is_success() => {
                    return Ok(Response { status, headers: resp_headers, body, url });
                }
                Ok((status, resp_headers, body)) => {
                    let code = status.as_u16();
                    if !retries_left || !self.retry.statuses.contains(&code) {
                        return Err(HttpError::Status {
                            url: shown,
                            status: code,
                            excerpt: self.redactor.redact(&excerpt(&body)),
                            attempts: attempt,
                            body,
                        });
                    }
                    let delay = resp_headers
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry_after(v, self.retry.max_delay, chrono::Utc::now()))
                        .unwrap_or_else(|| backoff_delay(&self.retry, attempt));
                    on_retry(&RetryNotice { retry: attempt, status: Some(code), delay, url: shown.clone() });
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    if !retries_left {
                        let mut message = self.redactor.redact(&error_chain(&e));
                        if e.is_timeout() {
                            message.push_str(" (timed out; raise `client.timeout` if the API is slow)");
                        }
                        return Err(HttpError::Transport { url: shown, message, attempts: attempt });
                    }
                    let delay = backoff_delay(&self.retry, attempt);
                    on_retry(&RetryNotice { retry: attempt, status: None, delay, url: shown.clone() });
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// An error and its causes, joined: reqwest's top-level message alone rarely says what failed.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_exponential_with_factor_and_cap() {
        let p = RetryConfig::default();
        let d: Vec<f64> = (1..=4).map(|n| backoff_delay(&p, n).as_secs_f64()).collect();
        assert_eq!(d, vec![2.0, 4.0, 8.0, 16.0]);
        let capped = RetryConfig { max_delay: 5.0, ..RetryConfig::default() };
        assert_eq!(backoff_delay(&capped, 3).as_secs_f64(), 5.0);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(retry_after("3", 60.0, now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("3600", 60.0, now), Some(Duration::from_secs(60)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:10 GMT", 60.0, now), Some(Duration::from_secs(10)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:27:00 GMT", 60.0, now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", 60.0, now), None);
    }

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(excerpt(b""), "(empty body)");
        let long = "x".repeat(1000);
        assert_eq!(excerpt(long.as_bytes()).chars().count(), EXCERPT_CHARS + 1);
    }
}
