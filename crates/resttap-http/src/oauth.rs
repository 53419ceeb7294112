//! OAuth2 client credentials (dlt's `oauth2_client_credentials`): the token is fetched once per
//! auth configuration, shared by every request that uses it, refreshed shortly before it expires
//! and once when the API answers 401.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use resttap_config::Rendered;
use tokio::sync::Mutex;

/// One token source: where to get a token and the token it holds.
#[derive(Debug)]
pub struct OAuth2 {
    /// The token endpoint (rendered).
    pub(crate) url: Rendered,
    /// Form fields of the token request: client_id, client_secret, grant_type, extra data.
    pub(crate) form: Vec<(String, Rendered)>,
    /// Lifetime assumed when the token response has no `expires_in`.
    pub(crate) default_expiration: Duration,
    token: Mutex<Option<Token>>,
    fetches: AtomicU64,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) value: Rendered,
    expires: Instant,
    /// Which fetch produced it, so that a 401 refreshes a token only once.
    pub(crate) generation: u64,
}

impl OAuth2 {
    pub(crate) fn new(url: Rendered, form: Vec<(String, Rendered)>, default_expiration: Duration) -> Self {
        OAuth2 { url, form, default_expiration, token: Mutex::new(None), fetches: AtomicU64::new(0) }
    }

    /// Token requests made so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The current token, fetched with `fetch` when there is none, it expires within the
    /// refresh margin, or it is the token of generation `stale` (rejected with a 401).
    pub(crate) async fn token<F, Fut, E>(&self, stale: Option<u64>, fetch: F) -> Result<Token, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(Rendered, Option<u64>), E>>,
    {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref()
            && Instant::now() < t.expires
            && stale != Some(t.generation)
        {
            return Ok(t.clone());
        }
        let (value, expires_in) = fetch().await?;
        let generation = self.fetches.fetch_add(1, Ordering::Relaxed) + 1;
        let lifetime = expires_in.map_or(self.default_expiration, Duration::from_secs);
        let t =
            Token { value, expires: Instant::now() + lifetime.saturating_sub(refresh_margin(lifetime)), generation };
        *slot = Some(t.clone());
        Ok(t)
    }
}

/// How long before expiry a token is replaced: a tenth of its lifetime, at most a minute.
pub(crate) fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(60))
}

/// Reads `access_token` and `expires_in` from a token response.
pub(crate) fn parse_token_response(body: &[u8]) -> Result<(String, Option<u64>), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the token response is not JSON ({e})"))?;
    let token = match v.get("access_token") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err("the token response has no `access_token`".into()),
    };
    let expires = match v.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_f64().map(|f| f.max(0.0) as u64),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    Ok((token, expires))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_responses() {
        assert_eq!(parse_token_response(br#"{"access_token":"t","expires_in":30}"#), Ok(("t".into(), Some(30))));
        assert_eq!(parse_token_response(br#"{"access_token":"t","expires_in":"30"}"#), Ok(("t".into(), Some(30))));
        assert_eq!(parse_token_response(br#"{"access_token":"t"}"#), Ok(("t".into(), None)));
        assert!(parse_token_response(br#"{"error":"invalid_client"}"#).unwrap_err().contains("access_token"));
        assert!(parse_token_response(b"<html>").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn refresh_margin_is_bounded() {
        assert_eq!(refresh_margin(Duration::from_secs(3600)), Duration::from_secs(60));
        assert_eq!(refresh_margin(Duration::from_secs(10)), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn cached_until_stale() {
        let o = OAuth2::new(Rendered::new("http://x".into(), false), vec![], Duration::from_secs(3600));
        let fetch = || async { Ok::<_, ()>((Rendered::new("a".into(), true), Some(100))) };
        let t1 = o.token(None, fetch).await.unwrap();
        let t2 = o.token(None, fetch).await.unwrap();
        assert_eq!((t1.generation, t2.generation, o.fetches()), (1, 1, 1));
        // a 401 with the current token fetches a new one; a 401 with an older one does not
        let t3 = o.token(Some(1), fetch).await.unwrap();
        assert_eq!(t3.generation, 2);
        let t4 = o.token(Some(1), fetch).await.unwrap();
        assert_eq!((t4.generation, o.fetches()), (2, 2));
        // an expired token is replaced
        let o = OAuth2::new(Rendered::new("http://x".into(), false), vec![], Duration::from_secs(3600));
        let zero = || async { Ok::<_, ()>((Rendered::new("a".into(), true), Some(0))) };
        o.token(None, zero).await.unwrap();
        o.token(None, zero).await.unwrap();
        assert_eq!(o.fetches(), 2);
    }
}
