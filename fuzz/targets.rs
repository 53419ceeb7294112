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
pub const TARGETS: [(&str, Target); 9] = [
    ("ratelimit_headers", ratelimit_headers),
    ("retry_after", retry_after),
    ("duration", duration),
    ("expression", expression),
    ("config", config),
    ("link_header", link_header),
    ("json_page", json_page),
    ("normalizer", normalizer),
    ("paginator_body", paginator_body),
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

/// The normalizer on arbitrary records. The first byte chooses the resource's settings (write
/// disposition, nesting limit, batch size, a `nullable: false` hint, the schema contract, a
/// primary key); each following line that parses is a record. Every row goes to a batch whose
/// columns match its values, with a `_dlt_id` on every row and no null where a column is not
/// nullable; every record accepted makes one root row. The same records normalized again
/// against the schema they made, with that schema frozen, are all accepted again.
pub fn normalizer(data: &[u8]) {
    use resttap_normalize::{ColumnHint, Normalizer, NormalizerConfig, RowIds, TableBatch};
    use resttap_schema::contract::{ContractMode, SchemaContract};
    use resttap_schema::{DataType, Schema, WriteDisposition};

    let Some((&settings, rest)) = data.split_first() else { return };
    let (write_disposition, row_ids) = match settings & 3 {
        0 => (WriteDisposition::Append, RowIds::Random),
        1 => (WriteDisposition::Replace, RowIds::Random),
        2 => (WriteDisposition::Merge, RowIds::Random),
        _ => (WriteDisposition::Merge, RowIds::KeyHash),
    };
    let keyed = settings & 128 != 0 || row_ids == RowIds::KeyHash;
    let mode = [ContractMode::Evolve, ContractMode::Freeze, ContractMode::DiscardRow, ContractMode::DiscardValue]
        [usize::from((settings >> 5) & 3)];
    let cfg = NormalizerConfig {
        table: "items".into(),
        write_disposition,
        primary_key: if keyed { vec!["id".into()] } else { vec![] },
        max_nesting: (settings & 4 != 0).then_some(1),
        load_id: std::sync::Arc::from("1700000000.1"),
        batch_rows: if settings & 8 != 0 { 2 } else { 10_000 },
        hints: if settings & 16 != 0 {
            vec![ColumnHint {
                name: "name".into(),
                data_type: Some(DataType::Text),
                nullable: Some(false),
                primary_key: false,
            }]
        } else {
            vec![]
        },
        nested_hints: vec![],
        row_ids,
        validity: None,
        contract: SchemaContract { tables: ContractMode::Evolve, ..SchemaContract::all(mode) },
    };
    let text = text(rest);
    let arena = resttap_json::Bump::new();
    let records: Vec<resttap_json::Json<'_>> =
        text.lines().filter_map(|l| resttap_json::Json::parse(l, &arena).ok()).take(64).collect();

    // every batch well formed; the root rows it holds
    fn check(batches: &[TableBatch]) -> usize {
        let mut root = 0;
        for b in batches {
            assert_eq!(b.columns.len(), b.batch.num_columns(), "{}", b.table);
            for (i, c) in b.columns.iter().enumerate() {
                let values = b.batch.column(i);
                assert_eq!(values.len(), b.batch.num_rows());
                if c.name == "_dlt_id" || !c.nullable {
                    assert_eq!(values.null_count(), 0, "nulls in {}.{} ({})", b.table, c.name, c.data_type);
                }
            }
            assert!(b.columns.iter().any(|c| c.name == "_dlt_id"), "{} has no _dlt_id", b.table);
            if b.table == "items" {
                root += b.batch.num_rows();
            }
        }
        root
    }

    let mut n = Normalizer::new(cfg.clone(), &Schema::default());
    let (mut out, mut accepted) = (Vec::new(), 0);
    for r in &records {
        match n.push(r, &mut out) {
            Ok(()) => accepted += 1,
            // the load fails here: what was pushed before is never committed
            Err(_) if mode == ContractMode::Freeze => return,
            Err(_) => {}
        }
    }
    out.extend(n.finish());
    let rows = check(&out);
    if mode == ContractMode::Evolve {
        assert_eq!(rows, accepted, "root rows for accepted records");
    } else {
        // a discarded record is accepted and makes no row
        assert!(rows <= accepted);
    }
    if mode != ContractMode::Evolve || accepted != records.len() {
        return;
    }
    // the schema these records made holds them all again, frozen
    let made = n.schema().clone();
    let frozen = NormalizerConfig { contract: SchemaContract::all(ContractMode::Freeze), ..cfg };
    let mut again = Normalizer::new(frozen, &made);
    let mut out = Vec::new();
    for r in &records {
        if let Err(e) = again.push(r, &mut out) {
            panic!("refused against the schema it made: {e}\n{}", resttap_json::Node::to_json(r));
        }
    }
    out.extend(again.finish());
    assert_eq!(check(&out), records.len());
}

/// The paginators' reading of a response body: the first byte chooses the paginator (and
/// whether the page held records), the rest is the body. A next request goes to an http or
/// https URL, and the same body given again never yields a request made before: a paginator
/// fed one page over and over stops or fails instead of looping.
pub fn paginator_body(data: &[u8]) {
    let Some((&choice, rest)) = data.split_first() else { return };
    let Ok(body) = serde_json::from_slice::<Value>(rest) else { return };
    let cfg = match choice % 8 {
        0 => None,
        1 => Some(PaginatorConfig::Cursor {
            cursor_path: "next_cursor".into(),
            cursor_param: Some("cursor".into()),
            cursor_body_path: None,
            stop_after_empty_page: choice & 8 != 0,
            has_more_path: None,
            stop_condition: None,
        }),
        2 => Some(PaginatorConfig::Cursor {
            cursor_path: "meta.cursor".into(),
            cursor_param: None,
            cursor_body_path: (choice & 8 != 0).then(|| "cursor".into()),
            stop_after_empty_page: false,
            has_more_path: Some("meta.has_more".into()),
            stop_condition: Some("meta.done == true".into()),
        }),
        3 => Some(PaginatorConfig::JsonLink { next_url_path: "links.next".into(), stop_condition: None }),
        4 => Some(PaginatorConfig::JsonLink { next_url_path: "$..next".into(), stop_condition: None }),
        5 => Some(PaginatorConfig::Offset {
            limit: 10,
            offset: 0,
            offset_param: "offset".into(),
            limit_param: "limit".into(),
            offset_body_path: None,
            limit_body_path: None,
            total_path: Some("total".into()),
            maximum_offset: (choice & 8 != 0).then_some(100),
            stop_after_empty_page: true,
            has_more_path: None,
            stop_condition: None,
        }),
        6 => Some(PaginatorConfig::PageNumber {
            base_page: 1,
            page: None,
            page_param: "page".into(),
            page_body_path: None,
            total_path: Some("meta.total_pages".into()),
            maximum_page: (choice & 8 != 0).then_some(5),
            stop_after_empty_page: true,
            has_more_path: (choice & 16 != 0).then(|| "has_more".into()),
            stop_condition: None,
        }),
        _ => Some(PaginatorConfig::HeaderCursor {
            cursor_key: "next".into(),
            cursor_param: "cursor".into(),
            stop_condition: None,
        }),
    };
    let mut p = resttap_paginate::Paginator::new(cfg.as_ref());
    let mut req = resttap_http::RequestSpec::new(
        resttap_config::Method::Get,
        url::Url::parse("https://api.example.com/v1/items").expect("valid"),
    );
    p.init(&mut req);
    let headers = HeaderMap::new();
    let records = usize::from(choice & 32 == 0);
    let mut made = std::collections::HashSet::new();
    made.insert((req.full_url().to_string(), format!("{:?}", req.json)));
    for _ in 0..4 {
        let url = req.full_url();
        let page = resttap_paginate::Page { body: &body, headers: &headers, records, url: &url };
        let Ok(Some(next)) = p.next(&req, &page, &mut None) else { return };
        let to = next.full_url();
        assert!(matches!(to.scheme(), "http" | "https"), "{to}");
        if matches!(cfg, None | Some(PaginatorConfig::Cursor { .. } | PaginatorConfig::JsonLink { .. })) {
            assert!(made.insert((to.to_string(), format!("{:?}", next.json))), "the same page led again to {to}");
        }
        req = next;
    }
}
