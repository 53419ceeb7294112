//! What each fuzz target does with its input, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/*.rs`) and the replay of the kept corpus in an ordinary test
//! (`crates/resttap/tests/fuzz_corpus.rs`), so that CI runs every input ever kept. Each must
//! end without a panic on any input, and checks what must hold of its result.

use std::time::Duration;

use resttap_config::{Format, Overrides, PaginatorConfig, SecretSources};
use resttap_http::reqwest_header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

/// What a target runs on one input.
pub type Target = fn(&[u8]);

/// The targets by name (the corpus folders' names).
pub const TARGETS: [(&str, Target); 7] = [
    ("ratelimit_headers", ratelimit_headers),
    ("retry_after", retry_after),
    ("duration", duration),
    ("expression", expression),
    ("config", config),
    ("link_header", link_header),
    ("json_page", json_page),
];

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// `name: value` lines as response headers (lines that are not valid headers are skipped).
fn headers(data: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in text(data).lines() {
        if let Some((k, v)) = line.split_once(':')
            && let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(k.trim().as_bytes()), HeaderValue::from_str(v.trim()))
        {
            h.append(name, value);
        }
    }
    h
}

/// Rate-limit headers in every style: a budget, if any, whose reset is within a week.
pub fn ratelimit_headers(data: &[u8]) {
    if let Some(a) = resttap_http::ratelimit::announced(&headers(data), 1.8e9) {
        assert!(a.reset.is_none_or(|r| r <= Duration::from_secs(7 * 86400)), "{a:?}");
    }
}

/// `Retry-After`: never more than the cap.
pub fn retry_after(data: &[u8]) {
    let now = chrono_now();
    if let Some(d) = resttap_http::retry_after(&text(data), 60.0, now) {
        assert!(d <= Duration::from_secs(60), "{d:?}");
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
}

/// Durations as a configuration writes them.
pub fn duration(data: &[u8]) {
    let _ = resttap_config::duration::parse_duration(&text(data));
}

/// The expression language: the first line an expression, the rest a JSON document to
/// evaluate it on.
pub fn expression(data: &[u8]) {
    let t = text(data);
    let (src, doc) = t.split_once('\n').unwrap_or((&t, "null"));
    if let Ok(e) = resttap_expr::Expr::parse(src) {
        let doc: Value = serde_json::from_str(doc).unwrap_or(Value::Null);
        let _ = e.eval_bool(&doc);
    }
}

/// The configuration loader: the first byte picks YAML, JSON or TOML; the rest is the file.
pub fn config(data: &[u8]) {
    let Some((first, rest)) = data.split_first() else { return };
    let format = match first % 3 {
        0 => Format::Yaml,
        1 => Format::Json,
        _ => Format::Toml,
    };
    let sources = SecretSources { ignore_env: true, secrets_toml: Some("/nonexistent".into()), ..Default::default() };
    let _ = resttap_config::load_str(
        &text(rest),
        format,
        std::path::Path::new("fuzz.yaml"),
        &Overrides::default(),
        &sources,
    );
}

/// A `Link` header read by the header_link paginator: a next request, if any, to an http or
/// https URL.
pub fn link_header(data: &[u8]) {
    let cfg = PaginatorConfig::HeaderLink { links_next_key: "next".into(), stop_condition: None };
    let mut p = resttap_paginate::Paginator::new(Some(&cfg));
    let url = url::Url::parse("https://api.example.com/v1/items?page=1").expect("valid");
    let req = resttap_http::RequestSpec::new(resttap_config::Method::Get, url.clone());
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(data) {
        h.insert("link", v);
    }
    let page = resttap_paginate::Page { body: &Value::Null, headers: &h, records: 1, url: &url };
    if let Ok(Some(next)) = p.next(&req, &page, &mut None) {
        assert!(matches!(next.url.scheme(), "http" | "https"), "{}", next.url);
    }
}

/// The page parser: accepts exactly what serde_json accepts, and reads the same values.
pub fn json_page(data: &[u8]) {
    let Ok(t) = std::str::from_utf8(data) else { return };
    let arena = resttap_json::Bump::new();
    let ours = resttap_json::Json::parse(t, &arena);
    let theirs = serde_json::from_str::<Value>(t);
    assert_eq!(ours.is_ok(), theirs.is_ok(), "{t:?}: {:?} vs {:?}", ours.as_ref().err(), theirs.as_ref().err());
    if let (Ok(a), Ok(b)) = (ours, theirs) {
        assert_eq!(resttap_json::Node::to_value(&a), b);
    }
}
