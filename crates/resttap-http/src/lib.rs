//! The HTTP client of resttap: one connection pool, auth, retries with exponential backoff and
//! `Retry-After`, and errors that name the URL (secrets redacted), the status and a body excerpt.

mod oauth;
pub mod ratelimit;
mod redact;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use resttap_config::{ApiKeyLocation, AuthConfig, CrossOrigin, Method, Rendered, RetryConfig, Secrets, render};
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
    /// Extra headers for this request (rendered; may hold secrets: those are sent only to
    /// [`RequestSpec::origin`], like the credentials).
    pub headers: Vec<(String, Rendered)>,
    /// A JSON body.
    pub json: Option<serde_json::Value>,
    /// A form or raw body (`endpoint.data`); not sent together with `json`.
    pub data: Option<Body>,
    /// How the request authenticates ([`Client::apply_auth`]); added when it is sent, and only
    /// to [`RequestSpec::origin`].
    pub auth: Option<Arc<Credentials>>,
    /// The one origin (scheme, host, port) the credentials and secret headers may go to: the
    /// resource's first request's. `None`: the URL's own (nothing to keep from anyone).
    pub origin: Option<url::Origin>,
}

/// What authenticates requests: added to each request as it is sent, so that a next link or a
/// redirect gets them again when it stays on their origin, and never when it leaves it.
#[derive(Debug, Default)]
pub struct Credentials {
    /// Headers (`Authorization`, an API key, a cookie).
    pub headers: Vec<(String, Rendered)>,
    /// Query parameters (an API key in the query).
    pub query: Vec<(String, Rendered)>,
    /// The OAuth2 token source, when the requests authenticate with one.
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
        let origin = Some(url.origin());
        RequestSpec { method, url, query: Vec::new(), headers: Vec::new(), json: None, data: None, auth: None, origin }
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
    /// A next link or redirect leads to another origin than the credentials', and
    /// `client.cross_origin` is `refuse` (or the request would carry a secret there).
    #[error("refused to send a request to {url}: it is on {other}, not on {origin} where the credentials belong{why}")]
    CrossOrigin { url: String, other: String, origin: String, why: &'static str },
    /// A response body larger than `client.max_response_bytes`.
    #[error(
        "the response from {url} is larger than client.max_response_bytes ({limit} bytes): {seen}; raise the limit if such pages are expected"
    )]
    TooLarge { url: String, limit: u64, seen: String },
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
    /// Why, for people: `HTTP 503`, or the transport error with its causes (`connection
    /// refused`, `timed out`), secrets redacted.
    pub reason: String,
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

/// [`backoff_delay`] with "equal jitter": between half and all of it, so that requests that
/// failed together do not come back together.
pub fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

/// The least wait before retry `n` when a `Retry-After` says less: half the backoff's step, so
/// that `Retry-After: 0` cannot spend every retry at once.
pub fn retry_after_floor(policy: &RetryConfig, retry: u32) -> Duration {
    backoff_delay(policy, retry) / 2
}

/// Parses a `Retry-After` value: seconds or an HTTP date; capped at `max_delay`.
pub fn retry_after(value: &str, max_delay: f64, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    // `NaN` and `inf` parse as floats but are no number of seconds (found by fuzzing: `NaN`
    // made Duration::from_secs_f64 panic)
    let secs = if let Some(n) = v.parse::<f64>().ok().filter(|n| n.is_finite()) {
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
    cross_origin: CrossOrigin,
    /// The largest body accepted (`client.max_response_bytes`).
    max_body: u64,
    /// Other origins warned about (once each).
    warned: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Paces the requests to each host, shared by every clone.
    limiter: Arc<ratelimit::Limiter>,
    /// Responses 429 received, all requests together.
    throttled: Arc<std::sync::atomic::AtomicU64>,
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
        Self::build(retry, timeout, None, secrets)
    }

    fn build(
        retry: RetryConfig,
        timeout: Duration,
        read_timeout: Option<Duration>,
        secrets: Secrets,
    ) -> Result<Self, HttpError> {
        install_crypto();
        let mut builder = reqwest::Client::builder();
        if let Some(t) = read_timeout {
            builder = builder.read_timeout(t);
        }
        let http = builder
            .timeout(timeout)
            // redirects are followed by `send`, which decides what goes to another origin
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(32)
            .tcp_nodelay(true)
            .user_agent(concat!("resttap/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Setup(e.to_string()))?;
        Ok(Client {
            http,
            retry,
            redactor: Redactor::new(&secrets),
            secrets,
            oauth: Arc::default(),
            cross_origin: CrossOrigin::default(),
            max_body: resttap_config::DEFAULT_MAX_RESPONSE_BYTES,
            warned: Arc::default(),
            limiter: Arc::default(),
            throttled: Arc::default(),
        })
    }

    /// A client as `client` configures it: retries, timeouts, the largest body, what crosses
    /// origins.
    pub fn from_config(client: &resttap_config::ClientConfig, secrets: Secrets) -> Result<Self, HttpError> {
        let mut c = Self::build(
            client.retry.clone(),
            Duration::from_secs_f64(client.timeout),
            Some(Duration::from_secs_f64(client.read_timeout)),
            secrets,
        )?;
        c.cross_origin = client.cross_origin;
        c.max_body = client.max_response_bytes;
        c.limiter = Arc::new(ratelimit::Limiter::new(client.rate_limit.clone()));
        Ok(c)
    }

    /// How long requests waited for their turn under rate limits, all together.
    pub fn rate_limit_wait(&self) -> Duration {
        self.limiter.waited()
    }

    /// Responses 429 received so far (retried ones included).
    pub fn throttled(&self) -> u64 {
        self.throttled.load(std::sync::atomic::Ordering::Relaxed)
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

    /// Sets the credentials `auth` describes on a request: they are added when it is sent,
    /// and only to the request's origin ([`RequestSpec::origin`], its URL's when this is called).
    pub fn apply_auth(&self, auth: &AuthConfig, req: &mut RequestSpec) -> Result<(), HttpError> {
        let mut creds = Credentials::default();
        match auth {
            AuthConfig::Bearer { token } => {
                let t = self.render(token);
                creds.headers.push(("Authorization".into(), Rendered::new(format!("Bearer {}", t.expose()), true)));
            }
            AuthConfig::ApiKey { name, api_key, location } => {
                let key = self.render(api_key);
                match location {
                    ApiKeyLocation::Header => creds.headers.push((name.clone(), key)),
                    ApiKeyLocation::Query => creds.query.push((name.clone(), key)),
                    ApiKeyLocation::Cookie => {
                        let cookie = format!("{name}={}", key.expose());
                        creds.headers.push(("Cookie".into(), Rendered::new(cookie, true)));
                    }
                }
            }
            AuthConfig::HttpBasic { username, password } => {
                use base64::Engine;
                let raw = format!("{}:{}", self.render(username).expose(), self.render(password).expose());
                let enc = base64::engine::general_purpose::STANDARD.encode(raw);
                creds.headers.push(("Authorization".into(), Rendered::new(format!("Basic {enc}"), true)));
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
                creds.oauth = Some(Arc::clone(source));
            }
        }
        req.origin.get_or_insert_with(|| req.url.origin());
        req.auth = Some(Arc::new(creds));
        Ok(())
    }

    /// Sends `req`, retrying as the policy says, following redirects (at most
    /// [`MAX_REDIRECTS`]). `on_retry` is called before each wait. With OAuth2, the token is
    /// added (fetched first when needed) and a 401 refreshes it once. Credentials and secret
    /// headers go only to the request's origin ([`RequestSpec::origin`]); see
    /// [`CrossOrigin`] for a request that leaves it.
    pub async fn send(
        &self,
        req: &RequestSpec,
        on_retry: &(dyn Fn(&RetryNotice) + Sync),
    ) -> Result<Response, HttpError> {
        let Some(oauth) = req.auth.as_ref().and_then(|a| a.oauth.as_ref()) else {
            return self.send_following(req, None, on_retry).await;
        };
        let mut stale = None;
        loop {
            let token = oauth.token(stale, || self.fetch_token(oauth, on_retry)).await?;
            let bearer = Rendered::new(format!("Bearer {}", token.value.expose()), true);
            match self.send_following(req, Some(&bearer), on_retry).await {
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
        let resp = self.send_following(&req, None, on_retry).await.map_err(|e| match e {
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

    /// Sends `req` and follows the redirects it gets, each hop with its own retries. Each hop
    /// is checked against the request's origin ([`Client::hop`]).
    async fn send_following(
        &self,
        req: &RequestSpec,
        bearer: Option<&Rendered>,
        on_retry: &(dyn Fn(&RetryNotice) + Sync),
    ) -> Result<Response, HttpError> {
        let mut hop = Hop { method: req.method, url: req.full_url(), body: true };
        for _ in 0..=MAX_REDIRECTS {
            let (send_url, headers) = self.hop(req, &hop, bearer)?;
            match self.send_with_retries(req, &hop, send_url, headers, on_retry).await? {
                Sent::Done(resp) => return Ok(resp),
                Sent::Redirect(next) => hop = next,
            }
        }
        Err(HttpError::Transport {
            url: self.redactor.redact(hop.url.as_str()),
            message: format!("more than {MAX_REDIRECTS} redirects"),
            attempts: 1,
        })
    }

    /// The URL and headers of one hop: credentials and secret headers when it goes to the
    /// request's origin; without them (and a warning, once per origin) when it goes elsewhere
    /// and `client.cross_origin` is `follow`; an error when it is `refuse`, or when the request
    /// would carry a secret anyway (in its URL or body).
    fn hop(&self, req: &RequestSpec, hop: &Hop, bearer: Option<&Rendered>) -> Result<(Url, HeaderMap), HttpError> {
        let here = hop.url.origin();
        let home = req.origin.as_ref().unwrap_or(&here);
        let at_home = same_origin(home, &hop.url);
        let creds_query: Vec<&str> = req.auth.iter().flat_map(|c| c.query.iter().map(|(k, _)| k.as_str())).collect();
        if !at_home {
            let refuse = |why| HttpError::CrossOrigin {
                url: self.redactor.redact(hop.url.as_str()),
                other: here.ascii_serialization(),
                origin: home.ascii_serialization(),
                why,
            };
            if self.cross_origin == CrossOrigin::Refuse {
                return Err(refuse(" (`client.cross_origin: refuse`)"));
            }
            // a link that echoes the credentials' query parameters loses them; any other secret
            // in the URL stops the request
            let mut stripped = hop.url.clone();
            strip_query(&mut stripped, &creds_query);
            if self.redactor.contains_secret(stripped.as_str()) {
                return Err(refuse(" (its URL holds a secret)"));
            }
            let body_secret = hop.body
                && (req.json.as_ref().is_some_and(|j| self.redactor.contains_secret(&j.to_string()))
                    || match &req.data {
                        Some(Body::Form(fields)) => {
                            fields.iter().any(|(k, v)| v.is_secret() || SECRET_FIELDS.contains(&k.as_str()))
                        }
                        Some(Body::Raw(text)) => text.is_secret(),
                        None => false,
                    });
            if body_secret {
                return Err(refuse(" (its body holds a secret)"));
            }
            let dropped =
                req.auth.is_some() || bearer.is_some() || req.headers.iter().any(|(k, v)| is_credential(k, v));
            let other = here.ascii_serialization();
            if dropped && self.warned.lock().expect("warned origins").insert(other.clone()) {
                tracing::warn!(
                    "a next page or redirect leads to {other}, not to {}: it is requested without credentials (set `client.cross_origin: refuse` to stop instead)",
                    home.ascii_serialization()
                );
            }
            let mut headers = HeaderMap::new();
            for (k, v) in req.headers.iter().filter(|(k, v)| !is_credential(k, v)) {
                insert_header(&mut headers, k, v)?;
            }
            return Ok((stripped, headers));
        }
        let mut url = hop.url.clone();
        let mut headers = HeaderMap::new();
        if let Some(c) = req.auth.as_deref().filter(|c| !c.query.is_empty()) {
            // a link that already carries them (servers echo the query) gets them once
            strip_query(&mut url, &creds_query);
            url.query_pairs_mut().extend_pairs(c.query.iter().map(|(k, v)| (k.as_str(), v.expose())));
        }
        let token = bearer.map(|b| ("Authorization".to_string(), b.clone()));
        let creds = req.auth.iter().flat_map(|c| c.headers.iter());
        for (k, v) in req.headers.iter().chain(creds).chain(token.as_ref()) {
            insert_header(&mut headers, k, v)?;
        }
        Ok((url, headers))
    }

    /// One hop with its retries: the response, or where a redirect leads.
    async fn send_with_retries(
        &self,
        req: &RequestSpec,
        hop: &Hop,
        url: Url,
        headers: HeaderMap,
        on_retry: &(dyn Fn(&RetryNotice) + Sync),
    ) -> Result<Sent, HttpError> {
        let shown = self.redactor.redact(url.as_str());
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let mut builder = match hop.method {
                Method::Get => self.http.get(url.clone()),
                Method::Post => self.http.post(url.clone()),
            }
            .headers(headers.clone());
            if let Some(j) = req.json.as_ref().filter(|_| hop.body) {
                builder = builder.json(j);
            }
            match req.data.as_ref().filter(|_| hop.body) {
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
            let host = format!("{}:{}", url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(0));
            let turn = self.limiter.acquire(&host).await;
            let outcome = match builder.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let resp_headers = resp.headers().clone();
                    match read_body(resp, self.max_body).await {
                        Ok(body) => Ok((status, resp_headers, body)),
                        Err(BodyError::TooLarge(seen)) => {
                            drop(turn);
                            return Err(HttpError::TooLarge { url: shown, limit: self.max_body, seen });
                        }
                        Err(BodyError::Read(e)) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            let retries_left = attempt <= self.retry.max_retries;
            // the budget the answer announces; what its `Retry-After` says (never less than half
            // the backoff's step); a hold on the host when it says "too fast" (429, or 503 with
            // a `Retry-After`)
            let (answer_headers, after, hold) = match &outcome {
                Ok((status, h, _)) => {
                    let after = h
                        .get(reqwest::header::RETRY_AFTER)
                        .filter(|_| !status.is_success())
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry_after(v, self.retry.max_delay, chrono::Utc::now()))
                        .map(|d| d.max(retry_after_floor(&self.retry, attempt)));
                    let hold = match status.as_u16() {
                        429 => {
                            self.throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            Some(after.unwrap_or_else(|| jittered(backoff_delay(&self.retry, attempt))))
                        }
                        503 => after,
                        _ => None,
                    };
                    (Some(h), after, hold)
                }
                Err(_) => (None, None, None),
            };
            turn.finish(answer_headers, hold);
            match outcome {
                Ok((status, resp_headers, body)) if status.is_success() => {
                    // the URL without the credentials' query: paginators read it, messages show it
                    return Ok(Sent::Done(Response { status, headers: resp_headers, body, url: hop.url.clone() }));
                }
                Ok((status, resp_headers, body)) if status.is_redirection() => {
                    let location = resp_headers.get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok());
                    let next = location.and_then(|l| hop.url.join(l).ok());
                    if let Some(other) = next.as_ref().filter(|u| !matches!(u.scheme(), "http" | "https")) {
                        return Err(HttpError::Status {
                            url: shown,
                            status: status.as_u16(),
                            excerpt: format!("a redirect to a {}: URL, which resttap does not follow", other.scheme()),
                            attempts: attempt,
                            body,
                        });
                    }
                    let Some(next) = next else {
                        return Err(HttpError::Status {
                            url: shown,
                            status: status.as_u16(),
                            excerpt: "a redirect without a valid Location header".into(),
                            attempts: attempt,
                            body,
                        });
                    };
                    // 307 and 308 repeat the request as it was; the others become a GET
                    let same = matches!(status.as_u16(), 307 | 308);
                    let method = if same { hop.method } else { Method::Get };
                    return Ok(Sent::Redirect(Hop { method, url: next, body: same && hop.body }));
                }
                Ok((status, _, body)) => {
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
                    // the host's hold, else what `Retry-After` says, else the backoff with jitter
                    let delay = hold.or(after).unwrap_or_else(|| jittered(backoff_delay(&self.retry, attempt)));
                    let reason = format!("HTTP {code}");
                    on_retry(&RetryNotice { retry: attempt, status: Some(code), reason, delay, url: shown.clone() });
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    if !retries_left {
                        let mut message = self.redactor.redact(&error_chain(&e));
                        if e.is_timeout() {
                            message.push_str(
                                " (timed out; raise `client.timeout` or `client.read_timeout` if the API is slow)",
                            );
                        }
                        return Err(HttpError::Transport { url: shown, message, attempts: attempt });
                    }
                    let delay = jittered(backoff_delay(&self.retry, attempt));
                    let reason = self.redactor.redact(&error_chain(&e));
                    on_retry(&RetryNotice { retry: attempt, status: None, reason, delay, url: shown.clone() });
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Why a body was not read whole.
enum BodyError {
    /// Over the limit: what was seen of its size.
    TooLarge(String),
    Read(reqwest::Error),
}

/// Reads a body of at most `limit` bytes, refusing a larger one by its `Content-Length` or as
/// soon as more arrives (nothing past the limit is buffered).
async fn read_body(mut resp: reqwest::Response, limit: u64) -> Result<Bytes, BodyError> {
    match resp.content_length() {
        Some(n) if n > limit => return Err(BodyError::TooLarge(format!("its Content-Length is {n}"))),
        // the framing ends the body at its declared length: read whole, without a copy
        Some(_) => return resp.bytes().await.map_err(BodyError::Read),
        None => {}
    }
    let mut buf = bytes::BytesMut::with_capacity(resp.content_length().unwrap_or(64 << 10).min(limit) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Read)? {
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge(format!("more than {limit} bytes arrived")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Header names that carry credentials whatever their value's source: never sent to another
/// origin, even when written in the config as plain text.
const CREDENTIAL_HEADERS: [&str; 5] = ["authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"];

/// Form fields that hold credentials (an OAuth2 token request's): such a body never goes to
/// another origin.
const SECRET_FIELDS: [&str; 3] = ["client_secret", "password", "refresh_token"];

fn is_credential(name: &str, value: &Rendered) -> bool {
    value.is_secret() || CREDENTIAL_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h))
}

fn insert_header(headers: &mut HeaderMap, k: &str, v: &Rendered) -> Result<(), HttpError> {
    let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| HttpError::Setup(format!("header name `{k}`: {e}")))?;
    let mut value = HeaderValue::from_str(v.expose())
        .map_err(|_| HttpError::Setup(format!("header `{k}` has a value that is not valid in HTTP")))?;
    value.set_sensitive(is_credential(k, v));
    headers.insert(name, value);
    Ok(())
}

/// Removes the query parameters named `names`.
fn strip_query(url: &mut Url, names: &[&str]) {
    if names.is_empty() || url.query().is_none() {
        return;
    }
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !names.contains(&k.as_ref()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
}

/// Whether `url` is on `home`: the same scheme, host and port, or the same host upgraded from
/// http to https on the default ports (as requests, dlt's HTTP library, keeps credentials for).
fn same_origin(home: &url::Origin, url: &Url) -> bool {
    let here = url.origin();
    if *home == here {
        return true;
    }
    match (home, &here) {
        (url::Origin::Tuple(hs, hh, hp), url::Origin::Tuple(s, h, p)) => {
            hs == "http" && s == "https" && hh == h && *hp == 80 && *p == 443
        }
        _ => false,
    }
}

/// Redirects followed for one request, at most (reqwest's and browsers' default).
pub const MAX_REDIRECTS: usize = 10;

/// One request of a redirect chain.
struct Hop {
    method: Method,
    /// With the request's query, without the credentials'.
    url: Url,
    /// Whether the body goes with it (not after a 301, 302 or 303).
    body: bool,
}

/// What one hop brought.
enum Sent {
    Done(Response),
    Redirect(Hop),
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
        // found by fuzzing (fuzz/corpus/retry_after): these panicked
        for odd in ["NaN", "nan", "inf", "-inf", "1e999"] {
            assert_eq!(retry_after(odd, 60.0, now), None, "{odd}");
        }
    }

    #[test]
    fn credential_query_parameters_are_stripped_by_name_and_https_upgrades_stay_home() {
        let mut u = Url::parse("https://a.example/x?page=2&api_key=K&api_key=K&q=1").unwrap();
        strip_query(&mut u, &["api_key"]);
        assert_eq!(u.as_str(), "https://a.example/x?page=2&q=1");
        let mut u = Url::parse("https://a.example/x?api_key=K").unwrap();
        strip_query(&mut u, &["api_key"]);
        assert_eq!(u.as_str(), "https://a.example/x");
        let home = Url::parse("http://a.example/v1").unwrap().origin();
        assert!(same_origin(&home, &Url::parse("http://a.example/v2?x").unwrap()));
        assert!(same_origin(&home, &Url::parse("https://a.example/v2").unwrap()), "an upgrade to https");
        assert!(!same_origin(&home, &Url::parse("https://a.example:8443/v2").unwrap()));
        assert!(!same_origin(&home, &Url::parse("http://b.example/v1").unwrap()));
        let secure = Url::parse("https://a.example/v1").unwrap().origin();
        assert!(!same_origin(&secure, &Url::parse("http://a.example/v1").unwrap()), "never down to http");
        let literal = Rendered::new("k".into(), false);
        assert!(is_credential("X-API-Key", &literal) && is_credential("authorization", &literal));
        assert!(!is_credential("X-Api-Version", &literal));
    }

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(excerpt(b""), "(empty body)");
        let long = "x".repeat(1000);
        assert_eq!(excerpt(long.as_bytes()).chars().count(), EXCERPT_CHARS + 1);
    }
}
