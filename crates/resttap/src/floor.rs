//! The benchmark's transfer floor: every page of the mock API fetched through the same HTTP
//! client, one request chain per resource, all resources at once, bodies discarded. The cursor
//! is found by a byte search, not by parsing JSON.

use std::time::Duration;

use resttap_config::{Method, Rendered, RetryConfig, Secrets};
use resttap_http::{Client, HttpError, RequestSpec};

fn cursor(body: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"cursor\":\"";
    let at = body.windows(KEY.len()).rposition(|w| w == KEY)? + KEY.len();
    let end = body[at..].iter().position(|b| *b == b'"')?;
    Some(String::from_utf8_lossy(&body[at..at + end]).into_owned())
}

/// Fetches every page; returns (pages, bytes).
pub async fn fetch_all(base_url: &str, token: &str) -> Result<(u64, u64), HttpError> {
    let client = Client::new(RetryConfig::default(), Duration::from_secs(60), Secrets::default())?;
    let mut tasks = tokio::task::JoinSet::new();
    for resource in resttap_mock::data::RESOURCES {
        let client = client.clone();
        let url = url::Url::parse(&format!("{}/v1/{resource}", base_url.trim_end_matches('/')))
            .map_err(|e| HttpError::Setup(e.to_string()))?;
        let auth = Rendered::new(format!("Bearer {token}"), true);
        tasks.spawn(async move {
            let mut req = RequestSpec::new(Method::Get, url);
            req.headers.push(("Authorization".into(), auth));
            let (mut pages, mut bytes) = (0u64, 0u64);
            loop {
                let resp = client.send(&req, &|_| {}).await?;
                pages += 1;
                bytes += resp.body.len() as u64;
                match cursor(&resp.body) {
                    Some(c) => req.set_query("cursor", c),
                    None => return Ok::<_, HttpError>((pages, bytes)),
                }
            }
        });
    }
    let (mut pages, mut bytes) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (p, b) = r.map_err(|e| HttpError::Setup(e.to_string()))??;
        pages += p;
        bytes += b;
    }
    Ok((pages, bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_cursor() {
        assert_eq!(super::cursor(br#"{"x":[],"pagination":{"cursor":"b2Zm","total":3}}"#).as_deref(), Some("b2Zm"));
        assert_eq!(super::cursor(br#"{"x":[],"pagination":{"total":3}}"#), None);
    }
}
