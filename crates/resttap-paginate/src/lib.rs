//! Paginators: each looks at a response and says which request fetches the next page, or that
//! there is none. They follow dlt's semantics; every type also honours resttap's
//! `stop_condition`, and none can loop forever: a cursor or URL seen before is an error.

use std::collections::HashSet;

use resttap_config::{PaginatorConfig, to_jsonpath};
use resttap_expr::Expr;
use resttap_http::RequestSpec;
use serde_json::Value;
use serde_json_path::JsonPath;
use url::Url;

/// What a paginator sees of one response.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The parsed body.
    pub body: &'a Value,
    /// The response headers.
    pub headers: &'a resttap_http::reqwest_header::HeaderMap,
    /// How many records the page held.
    pub records: usize,
    /// The URL requested, query included.
    pub url: &'a Url,
}

/// Why pagination cannot go on.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PaginateError {
    /// The API sent a cursor or next-page URL it had sent before: following it would loop.
    #[error(
        "the API returned the {what} `{value}` a second time after {pages} page(s); stopping instead of looping forever"
    )]
    Repeated { what: &'static str, value: String, pages: usize },
    /// A page is byte for byte the page before it: the API ignores what the paginator sends.
    #[error(
        "the API returned the same page again after {pages} page(s): it ignores the paginator's parameter (check the paginator's type and parameter names); stopping instead of looping forever"
    )]
    SamePage { pages: usize },
    /// A `has_more_path` is missing or not a boolean.
    #[error("`{path}` in the response is {found}, expected a boolean")]
    HasMore { path: String, found: String },
    /// `total_path` is missing or not a number.
    #[error(
        "`{path}` in the response is {found}, expected the total as a number (set `total_path: null` if the API sends none)"
    )]
    Total { path: String, found: String },
    /// A next-page URL cannot be resolved.
    #[error("invalid next page URL `{0}`")]
    BadUrl(String),
    /// A next-page URL that is not http or https (`file:`, `ftp:`, a typo such as `htps:`).
    #[error("the next page URL `{0}` is not an http or https URL; resttap follows only those")]
    Scheme(String),
}

/// A compiled paginator.
pub struct Paginator {
    kind: Kind,
    stop: Option<Expr>,
    seen: HashSet<String>,
    pages: usize,
}

enum Kind {
    Cursor {
        path: JsonPath,
        param: Target,
        has_more: Option<(String, JsonPath)>,
        stop_after_empty_page: bool,
    },
    JsonLink {
        path: JsonPath,
    },
    HeaderLink {
        rel: String,
    },
    HeaderCursor {
        key: String,
        param: String,
    },
    /// Offset or page number: a number that grows by `step` per page.
    Range(Range),
    Single,
    /// Not decided yet: the first response chooses (dlt's auto-detection).
    Auto,
}

/// Where a paginator puts its value in the next request.
#[derive(Debug, Clone)]
enum Target {
    /// A query parameter.
    Query(String),
    /// A dot-separated path in the JSON body (`cursor_body_path`, `offset_body_path`, ...).
    Body(String),
}

impl Target {
    fn new(param: &str, body_path: Option<&String>) -> Target {
        match body_path {
            Some(p) => Target::Body(p.clone()),
            None => Target::Query(param.to_string()),
        }
    }

    fn set(&self, req: &mut RequestSpec, value: Value) {
        match self {
            Target::Query(name) => req.set_query(name, as_param(&value)),
            Target::Body(path) => req.set_json_path(path, value),
        }
    }
}

struct Range {
    param: Target,
    /// `limit` for offsets: sent with every request.
    limit: Option<(Target, u64)>,
    current: u64,
    step: u64,
    base_index: u64,
    maximum: Option<u64>,
    total: Option<(String, JsonPath)>,
    stop_after_empty_page: bool,
    has_more: Option<(String, JsonPath)>,
    /// The first value past the last page, from the total the last response gave.
    end: Option<u64>,
}

impl Range {
    fn apply(&self, value: u64, req: &mut RequestSpec) {
        self.param.set(req, Value::from(value));
        if let Some((target, limit)) = &self.limit {
            target.set(req, Value::from(*limit));
        }
    }
}

fn has_more_at(raw: &str, path: &JsonPath, body: &Value) -> Result<bool, PaginateError> {
    match first(path, body) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(PaginateError::HasMore {
            path: raw.to_string(),
            found: other.map_or("missing".to_string(), |v| format!("`{v}`")),
        }),
    }
}

/// What auto-detection chose, for the warning a person sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected(pub String);

fn compile(path: &str) -> JsonPath {
    // paths were validated with the config; an invalid one here is a bug
    JsonPath::parse(&to_jsonpath(path)).expect("JSONPath validated by the config loader")
}

fn first<'a>(path: &JsonPath, doc: &'a Value) -> Option<&'a Value> {
    path.query(doc).all().into_iter().next()
}

/// A value as dlt treats it for "is there a next page": null, false, 0, "" and [] mean no.
fn falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn as_param(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The URL with `rel` in a `Link` header (RFC 8288), if any.
fn link_header(headers: &resttap_http::reqwest_header::HeaderMap, rel: &str) -> Option<String> {
    for value in headers.get_all("link") {
        let Ok(text) = value.to_str() else { continue };
        for part in text.split(',') {
            let mut pieces = part.split(';');
            let target = pieces.next()?.trim();
            let target = target.strip_prefix('<')?.strip_suffix('>')?;
            for p in pieces {
                let p = p.trim();
                if let Some(v) = p.strip_prefix("rel=")
                    && v.trim_matches('"').split_whitespace().any(|r| r.eq_ignore_ascii_case(rel))
                {
                    return Some(target.to_string());
                }
            }
        }
    }
    None
}

/// The first key (depth first, in body order, at any depth) for which `hit` gives a path tail,
/// as a dotted path: the search dlt's paginator detectors make.
fn search_key(v: &Value, path: &mut Vec<String>, hit: &dyn Fn(&str, &Value) -> Option<Vec<String>>) -> Option<String> {
    let Value::Object(m) = v else { return None };
    for (k, child) in m {
        if let Some(tail) = hit(k, child) {
            path.push(k.clone());
            path.extend(tail);
            return Some(path_text(path));
        }
        if child.is_object() {
            path.push(k.clone());
            if let Some(found) = search_key(child, path, hit) {
                return Some(found);
            }
            path.pop();
        }
    }
    None
}

/// A found path as a selector: dotted (`links.next`) when every key is a plain name, else in
/// JSONPath's bracket notation (`$['$a']['next']`). Found by fuzzing
/// (fuzz/corpus/paginator_body): keys were joined with dots whatever they held, so `$a` made a
/// path that did not parse (a panic) and `a.b` one that named another field.
fn path_text(keys: &[String]) -> String {
    let plain = |k: &String| {
        let mut chars = k.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if keys.iter().all(plain) {
        return keys.join(".");
    }
    // RFC 9535's single-quoted names: `\`, `'` and control characters escaped (the last found
    // by fuzzing too: a tab in a key)
    let mut quoted = String::from("$");
    for k in keys {
        quoted.push_str("['");
        for c in k.chars() {
            match c {
                '\\' | '\'' => {
                    quoted.push('\\');
                    quoted.push(c);
                }
                c if u32::from(c) < 0x20 => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => quoted.push(c),
            }
        }
        quoted.push_str("']");
    }
    quoted
}

/// dlt's search for a next-page link in a body: a key named `next` holding a string, or a
/// dict with `href`/`url`, up to any depth.
fn find_next_path(v: &Value, path: &mut Vec<String>) -> Option<String> {
    search_key(v, path, &|k, child| {
        if !k.eq_ignore_ascii_case("next") {
            return None;
        }
        match child {
            Value::Object(inner) => inner
                .iter()
                .find(|(ik, iv)| {
                    (ik.eq_ignore_ascii_case("href") || ik.eq_ignore_ascii_case("url"))
                        && (iv.is_string() || iv.is_number())
                })
                .map(|(ik, _)| vec![ik.clone()]),
            Value::String(_) | Value::Number(_) => Some(Vec::new()),
            _ => None,
        }
    })
}

/// dlt's `pages_number_paginator_detector`: a `total_pages`, `pages` or `totalPages` number
/// (at any depth) means page numbers. dlt then counts from 0 and requests `page=1` next, which
/// fetches the first page twice from an API that counts from 1; resttap takes the current page
/// from the request's `page` parameter or the body's `page`/`current_page` when one is there.
fn total_pages(body: &Value, url: &Url) -> Option<(String, Range)> {
    let p = search_key(body, &mut Vec::new(), &|k, child| {
        let lower = k.to_ascii_lowercase();
        let number = child.is_number() || child.as_str().is_some_and(|s| s.trim().parse::<u64>().is_ok());
        (["total_pages", "pages", "totalpages"].contains(&lower.as_str()) && number).then(Vec::new)
    })?;
    let from_query = url.query_pairs().find(|(k, _)| k == "page").and_then(|(_, v)| v.parse::<u64>().ok());
    let from_body = ["page", "current_page", "currentPage", "page_number"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64));
    let current = from_query.or(from_body);
    let range = Range {
        param: Target::Query("page".into()),
        limit: None,
        current: current.unwrap_or(0),
        step: 1,
        // a 1-based API reports page 1 first: its last page is `total`, not `total - 1`
        base_index: if current == Some(1) { 1 } else { 0 },
        maximum: None,
        total: Some((p.clone(), compile(&p))),
        stop_after_empty_page: true,
        has_more: None,
        end: None,
    };
    Some((p, range))
}

impl Paginator {
    /// Builds the paginator for a config (`None`: auto-detect from the first response).
    pub fn new(config: Option<&PaginatorConfig>) -> Paginator {
        let kind = match config {
            None | Some(PaginatorConfig::Auto { .. }) => Kind::Auto,
            Some(PaginatorConfig::Cursor {
                cursor_path,
                cursor_param,
                cursor_body_path,
                has_more_path,
                stop_after_empty_page,
                ..
            }) => Kind::Cursor {
                path: compile(cursor_path),
                param: Target::new(cursor_param.as_deref().unwrap_or("cursor"), cursor_body_path.as_ref()),
                has_more: has_more_path.as_ref().map(|p| (p.clone(), compile(p))),
                stop_after_empty_page: *stop_after_empty_page,
            },
            Some(PaginatorConfig::JsonLink { next_url_path, .. }) => Kind::JsonLink { path: compile(next_url_path) },
            Some(PaginatorConfig::HeaderLink { links_next_key, .. }) => {
                Kind::HeaderLink { rel: links_next_key.clone() }
            }
            Some(PaginatorConfig::HeaderCursor { cursor_key, cursor_param, .. }) => {
                Kind::HeaderCursor { key: cursor_key.clone(), param: cursor_param.clone() }
            }
            Some(PaginatorConfig::Offset {
                limit,
                offset,
                offset_param,
                limit_param,
                offset_body_path,
                limit_body_path,
                total_path,
                maximum_offset,
                stop_after_empty_page,
                has_more_path,
                ..
            }) => Kind::Range(Range {
                param: Target::new(offset_param, offset_body_path.as_ref()),
                limit: Some((Target::new(limit_param, limit_body_path.as_ref()), *limit)),
                current: *offset,
                step: *limit,
                base_index: 0,
                maximum: *maximum_offset,
                total: total_path.as_ref().map(|p| (p.clone(), compile(p))),
                stop_after_empty_page: *stop_after_empty_page,
                has_more: has_more_path.as_ref().map(|p| (p.clone(), compile(p))),
                end: None,
            }),
            Some(PaginatorConfig::PageNumber {
                base_page,
                page,
                page_param,
                page_body_path,
                total_path,
                maximum_page,
                stop_after_empty_page,
                has_more_path,
                ..
            }) => Kind::Range(Range {
                param: Target::new(page_param, page_body_path.as_ref()),
                limit: None,
                current: page.unwrap_or(*base_page),
                step: 1,
                base_index: *base_page,
                maximum: *maximum_page,
                total: total_path.as_ref().map(|p| (p.clone(), compile(p))),
                stop_after_empty_page: *stop_after_empty_page,
                has_more: has_more_path.as_ref().map(|p| (p.clone(), compile(p))),
                end: None,
            }),
            Some(PaginatorConfig::SinglePage { .. }) => Kind::Single,
        };
        let stop = config
            .and_then(PaginatorConfig::stop_condition)
            .map(|c| Expr::parse(c).expect("stop_condition validated by the config loader"));
        Paginator { kind, stop, seen: HashSet::new(), pages: 0 }
    }

    /// Sets what the first request needs (the offset and limit, or the page number).
    pub fn init(&self, req: &mut RequestSpec) {
        if let Kind::Range(r) = &self.kind {
            r.apply(r.current, req);
        }
    }

    /// The request for the page after `page`, or `None` when it was the last one. The first
    /// call of an auto-detecting paginator may return what it chose in `detected`.
    pub fn next(
        &mut self,
        current: &RequestSpec,
        page: &Page<'_>,
        detected: &mut Option<Detected>,
    ) -> Result<Option<RequestSpec>, PaginateError> {
        self.pages += 1;
        if let Kind::Auto = self.kind {
            let next = find_next_path(page.body, &mut Vec::new());
            let next_is_url = next.as_ref().is_some_and(|p| {
                first(&compile(p), page.body)
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.starts_with("http") || v.starts_with('/'))
            });
            let (kind, what) = if link_header(page.headers, "next").is_some() {
                (Kind::HeaderLink { rel: "next".into() }, "header_link (a `Link: rel=\"next\"` header)".to_string())
            } else if let (Some(p), true) = (&next, next_is_url) {
                let what = format!("json_link (next_url_path `{p}`)");
                (Kind::JsonLink { path: compile(p) }, what)
            } else if let Some((p, r)) = total_pages(page.body, page.url) {
                let what = format!("page_number (total_path `{p}`, page_param `page`, next page {})", r.current + 1);
                (Kind::Range(r), what)
            } else if let Some(p) = &next {
                let what = format!("cursor (cursor_path `{p}`, cursor_param `cursor`)");
                let kind = Kind::Cursor {
                    path: compile(p),
                    param: Target::Query("cursor".into()),
                    has_more: None,
                    stop_after_empty_page: false,
                };
                (kind, what)
            } else {
                (Kind::Single, "single_page (no next-page link in the first response)".to_string())
            };
            *detected = Some(Detected(what));
            self.kind = kind;
        }
        let (seen, pages) = (&mut self.seen, self.pages);
        // where a range ends, from the total this page gives ([`Paginator::ahead`] plans by it)
        let mut learned_end = None;
        let next = match &self.kind {
            Kind::Auto | Kind::Single => None,
            Kind::Cursor { path, param, has_more, stop_after_empty_page } => {
                let cursor = first(path, page.body).filter(|v| !falsy(v)).cloned();
                let mut more = cursor.is_some();
                if *stop_after_empty_page && page.records == 0 {
                    more = false;
                } else if let Some((raw, hp)) = has_more {
                    more = has_more_at(raw, hp, page.body)? && cursor.is_some();
                }
                match cursor {
                    Some(c) if more => {
                        check_new(seen, pages, "cursor", &as_param(&c))?;
                        let mut req = current.clone();
                        param.set(&mut req, c);
                        Some(req)
                    }
                    _ => None,
                }
            }
            Kind::HeaderCursor { key, param } => {
                match page.headers.get(key.as_str()).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()) {
                    Some(c) => {
                        let c = c.to_string();
                        check_new(seen, pages, "cursor", &c)?;
                        let mut req = current.clone();
                        req.set_query(param, c);
                        Some(req)
                    }
                    None => None,
                }
            }
            Kind::Range(r) => {
                if r.stop_after_empty_page && page.records == 0 {
                    None
                } else {
                    let total = match &r.total {
                        None => None,
                        Some((raw, path)) => Some(match first(path, page.body) {
                            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().expect("checked"),
                            Some(Value::String(s)) if s.trim().parse::<u64>().is_ok() => {
                                s.trim().parse().expect("checked")
                            }
                            other => {
                                return Err(PaginateError::Total {
                                    path: raw.clone(),
                                    found: other.map_or("missing".into(), |v| format!("`{v}`")),
                                });
                            }
                        }),
                    };
                    learned_end = total.map(|t| {
                        let end = t + r.base_index;
                        r.maximum.map_or(end, |m| end.min(m))
                    });
                    let next_value = r.current + r.step;
                    let mut more = !(total.is_some_and(|t| next_value >= t + r.base_index)
                        || r.maximum.is_some_and(|m| next_value >= m));
                    if let Some((raw, path)) = &r.has_more {
                        more = has_more_at(raw, path, page.body)?;
                    }
                    if more {
                        let mut req = current.clone();
                        r.apply(next_value, &mut req);
                        Some(req)
                    } else {
                        None
                    }
                }
            }
            Kind::JsonLink { path } => match first(path, page.body).filter(|v| !falsy(v)).map(as_param) {
                Some(link) => Some(follow(seen, pages, current, page.url, &link)?),
                None => None,
            },
            Kind::HeaderLink { rel } => match link_header(page.headers, rel) {
                Some(link) => Some(follow(seen, pages, current, page.url, &link)?),
                None => None,
            },
        };
        if next.is_some() {
            if let Kind::Range(r) = &mut self.kind {
                r.current += r.step;
                r.end = learned_end;
            }
            if let Some(stop) = &self.stop
                && stop.eval_bool(page.body)
            {
                return Ok(None);
            }
        }
        Ok(next)
    }
}

impl Paginator {
    /// The requests of up to `n` pages after `next` (what [`Paginator::next`] just returned)
    /// that are known to exist: offsets or page numbers below the total the last response
    /// gave, when no `has_more_path` decides page by page. Empty for every other paginator.
    /// The pages they fetch are still read in order by [`Paginator::next`], whose stop
    /// conditions may end pagination before them.
    pub fn ahead(&self, next: &RequestSpec, n: usize) -> Vec<RequestSpec> {
        let Kind::Range(r) = &self.kind else { return Vec::new() };
        let (Some(end), None) = (r.end, &r.has_more) else { return Vec::new() };
        (1..=n as u64)
            .map(|i| r.current + i * r.step)
            .take_while(|v| *v < end)
            .map(|v| {
                let mut req = next.clone();
                r.apply(v, &mut req);
                req
            })
            .collect()
    }
}

fn check_new(seen: &mut HashSet<String>, pages: usize, what: &'static str, value: &str) -> Result<(), PaginateError> {
    if !seen.insert(value.to_string()) {
        return Err(PaginateError::Repeated { what, value: value.to_string(), pages });
    }
    Ok(())
}

fn follow(
    seen: &mut HashSet<String>,
    pages: usize,
    current: &RequestSpec,
    base: &Url,
    link: &str,
) -> Result<RequestSpec, PaginateError> {
    let url = base.join(link).map_err(|_| PaginateError::BadUrl(link.to_string()))?;
    // found by fuzzing (fuzz/corpus/link_header): any scheme was followed
    if !matches!(url.scheme(), "http" | "https") {
        return Err(PaginateError::Scheme(url.to_string()));
    }
    // the page just read counts as seen: a link back to it (found by fuzzing,
    // fuzz/corpus/paginator_body: `"next": "https:"` resolves to the URL requested) would
    // fetch it a second time before the repeat showed
    seen.insert(base.as_str().to_string());
    check_new(seen, pages, "next page URL", url.as_str())?;
    let mut req = current.clone();
    req.url = url;
    // the link carries its own query; earlier params would be appended twice
    req.query.clear();
    Ok(req)
}

#[cfg(test)]
mod tests;
