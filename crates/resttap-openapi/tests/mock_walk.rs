//! The mock serves every fixture's generated configuration: a walker that pages as resttap's
//! paginators do (offset, page numbers, cursors, next links, `Link` headers, single pages) and
//! resolves children from their parents' records gets exactly the expected records.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use resttap_openapi::mock::{SECRET, expected_counts, serve};
use resttap_openapi::{Options, generate};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

async fn get(addr: &str, path_and_query: &str, extra: &[(String, String)]) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers =
        lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect();
    Reply { status, headers, body: serde_json::from_str(body).unwrap_or(Value::Null) }
}

fn b64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            out.push(if k <= chunk.len() { T[(n >> (18 - 6 * k) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn at<'a>(body: &'a Value, path: &str) -> Option<&'a Value> {
    if path == "$" {
        return Some(body);
    }
    path.split('.').try_fold(body, |v, k| v.get(k))
}

type Pairs = Vec<(String, String)>;

/// Where and how to ask: the mock's address, the base URL's path, credentials (headers, query).
struct Client {
    addr: String,
    prefix: String,
    auth: Pairs,
    q_auth: Pairs,
}

/// Walks one resource's request chain; returns its records.
async fn walk(c: &Client, path: &str, params: &[(String, String)], pag: &Value, sel: &str) -> Vec<Value> {
    let (addr, prefix, auth, q_auth) = (c.addr.as_str(), c.prefix.as_str(), &c.auth, &c.q_auth);
    let kind = pag["type"].as_str().unwrap();
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    let mut counter: u64 = match kind {
        "page_number" => pag["base_page"].as_u64().unwrap_or(0),
        _ => 0,
    };
    let mut cursor: Option<String> = None;
    for round in 0.. {
        assert!(round < 1000, "pagination does not end");
        let mut q: Vec<(String, String)> = params.iter().chain(q_auth).cloned().collect();
        match kind {
            "offset" => {
                q.push((pag["offset_param"].as_str().unwrap().into(), counter.to_string()));
                q.push((pag["limit_param"].as_str().unwrap().into(), pag["limit"].to_string()));
            }
            "page_number" => q.push((pag["page_param"].as_str().unwrap().into(), counter.to_string())),
            "cursor" => q.extend(cursor.clone().map(|c| (pag["cursor_param"].as_str().unwrap().to_string(), c))),
            _ => {}
        }
        let target = match &next {
            Some(url) => url.strip_prefix(&format!("http://{addr}")).unwrap().to_string(),
            None => {
                let qs: Vec<String> = q.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
                format!("{prefix}{path}{}{}", if qs.is_empty() { "" } else { "?" }, qs.join("&"))
            }
        };
        let r = get(addr, &target, auth).await;
        assert_eq!(r.status, 200, "GET {target}: {}", r.body);
        let recs = at(&r.body, sel)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| panic!("GET {target}: no `{sel}` in {}", r.body));
        let n = recs.len() as u64;
        out.extend(recs);
        match kind {
            "single_page" => break,
            "offset" => {
                let limit = pag["limit"].as_u64().unwrap();
                counter += limit;
                let total = pag["total_path"].as_str().and_then(|t| at(&r.body, t)).and_then(Value::as_u64);
                let more = pag["has_more_path"].as_str().and_then(|t| at(&r.body, t)).and_then(Value::as_bool);
                if n == 0 || total.is_some_and(|t| counter >= t) || more == Some(false) {
                    break;
                }
            }
            "page_number" => {
                let total = pag["total_path"].as_str().and_then(|t| at(&r.body, t)).and_then(Value::as_u64);
                let base = pag["base_page"].as_u64().unwrap_or(0);
                counter += 1;
                if n == 0 || total.is_some_and(|t| counter - base >= t) {
                    break;
                }
            }
            "cursor" => match at(&r.body, pag["cursor_path"].as_str().unwrap()) {
                Some(Value::String(c)) => cursor = Some(c.clone()),
                _ => break,
            },
            "json_link" => match at(&r.body, pag["next_url_path"].as_str().unwrap()) {
                Some(Value::String(u)) => next = Some(u.clone()),
                _ => break,
            },
            "header_link" => {
                let link = r.headers.iter().find(|(k, _)| k == "link").map(|(_, v)| v.clone());
                match link.and_then(|l| {
                    l.strip_prefix('<').and_then(|l| l.split_once(">; rel=\"next\"")).map(|(u, _)| u.to_string())
                }) {
                    Some(u) => next = Some(u),
                    None => break,
                }
            }
            other => panic!("paginator {other}"),
        }
    }
    out
}

async fn walk_fixture(name: &str, prefix: &str, n: usize) {
    let text = fixture(name);
    let (addr, handle) = serve(&text, n).await.unwrap();
    let addr = addr.to_string();
    let g = generate(&text, &Options { base_url: Some(format!("http://{addr}{prefix}")) }).unwrap();
    let cfg: Value = serde_norway::from_str(&g.yaml).unwrap();
    let expected = expected_counts(&text, n).unwrap();
    let client = &cfg["client"];
    let (auth, q_auth): (Pairs, Pairs) = match client["auth"]["type"].as_str() {
        None => (vec![], vec![]),
        Some("bearer") => (vec![("Authorization".into(), format!("Bearer {SECRET}"))], vec![]),
        Some("http_basic") => {
            (vec![("Authorization".into(), format!("Basic {}", b64(format!("{SECRET}:{SECRET}").as_bytes())))], vec![])
        }
        Some("api_key") if client["auth"]["location"] == "query" => {
            (vec![], vec![(client["auth"]["name"].as_str().unwrap().into(), SECRET.into())])
        }
        Some("api_key") => (vec![(client["auth"]["name"].as_str().unwrap().into(), SECRET.into())], vec![]),
        Some(other) => panic!("auth {other}"),
    };
    // without credentials: 401
    let first = cfg["resources"][0]["endpoint"]["path"].as_str().unwrap();
    if !auth.is_empty() || !q_auth.is_empty() {
        assert_eq!(get(&addr, &format!("{prefix}{first}"), &[]).await.status, 401, "{name}");
    }
    let c = Client { addr: addr.clone(), prefix: prefix.to_string(), auth, q_auth };
    let mut loaded: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in cfg["resources"].as_array().unwrap() {
        let rname = r["name"].as_str().unwrap().to_string();
        let ep = &r["endpoint"];
        let pag = ep.get("paginator").unwrap_or(&client["paginator"]).clone();
        let sel = ep["data_selector"].as_str().unwrap();
        let mut statics = Vec::new();
        let mut resolves = Vec::new();
        for (k, v) in ep.get("params").and_then(Value::as_object).into_iter().flatten() {
            if v.get("type").and_then(Value::as_str) == Some("resolve") {
                resolves.push((
                    k.clone(),
                    v["resource"].as_str().unwrap().to_string(),
                    v["field"].as_str().unwrap().to_string(),
                ));
            } else {
                statics.push((k.clone(), v.as_str().map(String::from).unwrap_or_else(|| v.to_string())));
            }
        }
        let template = ep["path"].as_str().unwrap().to_string();
        // static values bound in the path leave the query
        let (bound, query): (Vec<_>, Vec<_>) =
            statics.into_iter().partition(|(k, _)| template.contains(&format!("{{{k}}}")));
        let mut base = template.clone();
        for (k, v) in &bound {
            base = base.replace(&format!("{{{k}}}"), &enc(v));
        }
        let mut records = Vec::new();
        if resolves.is_empty() {
            records = walk(&c, &base, &query, &pag, sel).await;
        } else {
            let parent = &resolves[0].1;
            for pr in loaded[parent].clone() {
                let mut path = base.clone();
                for (param, _, field) in &resolves {
                    let v = &pr[field];
                    path = path.replace(
                        &format!("{{{param}}}"),
                        &enc(&v.as_str().map(String::from).unwrap_or_else(|| v.to_string())),
                    );
                }
                records.extend(walk(&c, &path, &query, &pag, sel).await);
            }
        }
        if let Some(pk) = r["primary_key"].as_str() {
            let mut keys: Vec<String> = records.iter().map(|x| x[pk].to_string()).collect();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), records.len(), "{name}: {rname}: primary key `{pk}` not unique");
        }
        assert_eq!(Some(&records.len()), expected.get(&rname), "{name}: {rname}");
        loaded.insert(rname, records);
    }
    assert_eq!(loaded.len(), expected.len());
    handle.abort();
}

#[tokio::test]
async fn clerk_offset_limit_total() {
    walk_fixture("clerk-backend-2025-03-12.yaml", "", 12).await;
    // the server URL's path (`/v1`) is served too
    walk_fixture("clerk-backend-2025-03-12.yaml", "/v1", 3).await;
}

#[tokio::test]
async fn twilio_next_links_basic_auth_and_grandchildren() {
    walk_fixture("twilio-studio-v2.json", "", 12).await;
}

#[tokio::test]
async fn intercom_cursors_and_page_numbers() {
    walk_fixture("intercom-2.11.yaml", "", 12).await;
}

#[tokio::test]
async fn hydra_link_headers_and_top_level_arrays() {
    walk_fixture("ory-hydra.json", "", 25).await;
}

#[tokio::test]
async fn expected_counts_multiply_down_the_tree() {
    let c = expected_counts(&fixture("twilio-studio-v2.json"), 4).unwrap();
    assert_eq!(c["flows"], 4);
    assert_eq!(c["flow_executions"], 16);
    assert_eq!(c["flow_execution_steps"], 64);
}
