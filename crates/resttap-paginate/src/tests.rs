use super::*;
use resttap_config::Method;
use resttap_http::reqwest_header::{HeaderMap, HeaderValue};
use serde_json::json;

fn req(url: &str) -> RequestSpec {
    RequestSpec {
        method: Method::Get,
        url: Url::parse(url).unwrap(),
        query: vec![("limit".into(), "10".into())],
        headers: vec![],
        json: None,
        data: None,
        auth: None,
        origin: None,
    }
}

fn cursor(stop: Option<&str>) -> PaginatorConfig {
    PaginatorConfig::Cursor {
        cursor_path: "pagination.cursor".into(),
        cursor_param: Some("cursor".into()),
        cursor_body_path: None,
        stop_after_empty_page: false,
        has_more_path: None,
        stop_condition: stop.map(String::from),
    }
}

fn step(
    p: &mut Paginator,
    r: &RequestSpec,
    body: Value,
    headers: &HeaderMap,
) -> Result<Option<RequestSpec>, PaginateError> {
    let url = r.full_url();
    let page = Page { body: &body, headers, records: 1, url: &url };
    p.next(r, &page, &mut None)
}

#[test]
fn cursor_follows_until_missing_or_empty() {
    let h = HeaderMap::new();
    let mut p = Paginator::new(Some(&cursor(None)));
    let r0 = req("http://api/v1/x");
    let r1 = step(&mut p, &r0, json!({"pagination": {"cursor": "abc"}}), &h).unwrap().unwrap();
    assert_eq!(r1.full_url().as_str(), "http://api/v1/x?limit=10&cursor=abc");
    let r2 = step(&mut p, &r1, json!({"pagination": {"cursor": 42}}), &h).unwrap().unwrap();
    assert_eq!(r2.full_url().as_str(), "http://api/v1/x?limit=10&cursor=42");
    assert!(step(&mut p, &r2, json!({"pagination": {"cursor": ""}}), &h).unwrap().is_none());
    assert!(step(&mut Paginator::new(Some(&cursor(None))), &r0, json!({"pagination": {}}), &h).unwrap().is_none());
    assert!(
        step(&mut Paginator::new(Some(&cursor(None))), &r0, json!({"pagination": {"cursor": null}}), &h)
            .unwrap()
            .is_none()
    );
}

#[test]
fn stop_condition_stops_even_with_a_cursor() {
    let h = HeaderMap::new();
    let mut p = Paginator::new(Some(&cursor(Some("pagination.last == true"))));
    let r0 = req("http://api/v1/x");
    assert!(step(&mut p, &r0, json!({"pagination": {"cursor": "a", "last": false}}), &h).unwrap().is_some());
    assert!(step(&mut p, &r0, json!({"pagination": {"cursor": "b", "last": true}}), &h).unwrap().is_none());
}

#[test]
fn repeated_cursor_is_an_error() {
    let h = HeaderMap::new();
    let mut p = Paginator::new(Some(&cursor(None)));
    let r0 = req("http://api/v1/x");
    let r1 = step(&mut p, &r0, json!({"pagination": {"cursor": "same"}}), &h).unwrap().unwrap();
    let err = step(&mut p, &r1, json!({"pagination": {"cursor": "same"}}), &h).unwrap_err();
    assert!(matches!(err, PaginateError::Repeated { pages: 2, .. }), "{err:?}");
}

#[test]
fn has_more_and_empty_page() {
    let h = HeaderMap::new();
    let cfg = PaginatorConfig::Cursor {
        cursor_path: "next".into(),
        cursor_param: None,
        cursor_body_path: None,
        stop_after_empty_page: false,
        has_more_path: Some("more".into()),
        stop_condition: None,
    };
    let r0 = req("http://api/x");
    let mut p = Paginator::new(Some(&cfg));
    let r1 = step(&mut p, &r0, json!({"next": "c1", "more": true}), &h).unwrap().unwrap();
    assert!(r1.full_url().as_str().ends_with("cursor=c1"));
    assert!(step(&mut p, &r1, json!({"next": "c2", "more": "false"}), &h).unwrap().is_none());
    let err = step(&mut Paginator::new(Some(&cfg)), &r0, json!({"next": "c1"}), &h).unwrap_err();
    assert!(matches!(err, PaginateError::HasMore { .. }));
}

#[test]
fn json_link_resolves_relative_and_clears_params() {
    let h = HeaderMap::new();
    let cfg = PaginatorConfig::JsonLink { next_url_path: "links.next".into(), stop_condition: None };
    let mut p = Paginator::new(Some(&cfg));
    let r0 = req("http://api/v1/items");
    let r1 = step(&mut p, &r0, json!({"links": {"next": "/v1/items?page=2"}}), &h).unwrap().unwrap();
    assert_eq!(r1.full_url().as_str(), "http://api/v1/items?page=2");
    assert!(step(&mut p, &r1, json!({"links": {"next": null}}), &h).unwrap().is_none());
}

#[test]
fn header_link_and_auto_detection() {
    let mut h = HeaderMap::new();
    h.insert(
        "link",
        HeaderValue::from_static("<http://api/x?page=2>; rel=\"next\", <http://api/x?page=9>; rel=\"last\""),
    );
    let r0 = req("http://api/x");
    let mut p = Paginator::new(None);
    let url = r0.full_url();
    let body = json!([1, 2]);
    let mut detected = None;
    let r1 = p.next(&r0, &Page { body: &body, headers: &h, records: 2, url: &url }, &mut detected).unwrap().unwrap();
    assert_eq!(r1.full_url().as_str(), "http://api/x?page=2");
    assert!(detected.unwrap().0.starts_with("header_link"));

    let mut p = Paginator::new(None);
    let mut detected = None;
    let body = json!({"data": [1], "meta": {"next": {"href": "http://api/x?p=2"}}});
    let r1 = p
        .next(&r0, &Page { body: &body, headers: &HeaderMap::new(), records: 1, url: &url }, &mut detected)
        .unwrap()
        .unwrap();
    assert_eq!(r1.full_url().as_str(), "http://api/x?p=2");
    assert_eq!(detected.unwrap().0, "json_link (next_url_path `meta.next.href`)");

    let mut p = Paginator::new(None);
    let mut detected = None;
    let body = json!({"data": [1]});
    assert!(
        p.next(&r0, &Page { body: &body, headers: &HeaderMap::new(), records: 1, url: &url }, &mut detected)
            .unwrap()
            .is_none()
    );
    assert!(detected.unwrap().0.starts_with("single_page"));
}

fn page(p: &mut Paginator, r: &RequestSpec, body: Value, records: usize) -> Result<Option<RequestSpec>, PaginateError> {
    let url = r.full_url();
    let h = HeaderMap::new();
    p.next(r, &Page { body: &body, headers: &h, records, url: &url }, &mut None)
}

fn offset(total_path: Option<&str>, maximum_offset: Option<u64>, stop_after_empty_page: bool) -> PaginatorConfig {
    PaginatorConfig::Offset {
        limit: 10,
        offset: 0,
        offset_param: "offset".into(),
        limit_param: "limit".into(),
        offset_body_path: None,
        limit_body_path: None,
        total_path: total_path.map(String::from),
        maximum_offset,
        stop_after_empty_page,
        has_more_path: None,
        stop_condition: None,
    }
}

#[test]
fn offset_with_total() {
    let mut p = Paginator::new(Some(&offset(Some("total"), None, true)));
    let mut r = RequestSpec { query: vec![], ..req("http://api/x") };
    p.init(&mut r);
    assert_eq!(r.full_url().as_str(), "http://api/x?offset=0&limit=10");
    let r1 = page(&mut p, &r, json!({"total": 25}), 10).unwrap().unwrap();
    assert_eq!(r1.full_url().as_str(), "http://api/x?offset=10&limit=10");
    let r2 = page(&mut p, &r1, json!({"total": 25}), 10).unwrap().unwrap();
    assert_eq!(r2.full_url().as_str(), "http://api/x?offset=20&limit=10");
    assert!(page(&mut p, &r2, json!({"total": 25}), 5).unwrap().is_none());
    let err = page(&mut Paginator::new(Some(&offset(Some("total"), None, true))), &r, json!({}), 10).unwrap_err();
    assert!(matches!(err, PaginateError::Total { .. }));
}

#[test]
fn offset_with_maximum_or_empty_page() {
    let mut p = Paginator::new(Some(&offset(None, Some(20), false)));
    let r = req("http://api/x");
    let r1 = page(&mut p, &r, json!({}), 10).unwrap().unwrap();
    assert!(page(&mut p, &r1, json!({}), 10).unwrap().is_none());
    let mut p = Paginator::new(Some(&offset(None, None, true)));
    let r1 = page(&mut p, &r, json!({}), 10).unwrap().unwrap();
    assert!(page(&mut p, &r1, json!({}), 0).unwrap().is_none());
}

/// Page numbers from 1, the number of pages at `total_path`.
fn pages_from_1(total_path: &str) -> PaginatorConfig {
    PaginatorConfig::PageNumber {
        base_page: 1,
        page: None,
        page_param: "page".into(),
        page_body_path: None,
        total_path: Some(total_path.into()),
        maximum_page: None,
        stop_after_empty_page: true,
        has_more_path: None,
        stop_condition: None,
    }
}

#[test]
fn page_number_counts_from_base_page_with_total_pages() {
    let mut p = Paginator::new(Some(&pages_from_1("meta.pages")));
    let mut r = RequestSpec { query: vec![], ..req("http://api/x") };
    p.init(&mut r);
    assert_eq!(r.full_url().as_str(), "http://api/x?page=1");
    let r2 = page(&mut p, &r, json!({"meta": {"pages": 2}}), 5).unwrap().unwrap();
    assert_eq!(r2.full_url().as_str(), "http://api/x?page=2");
    assert!(page(&mut p, &r2, json!({"meta": {"pages": 2}}), 5).unwrap().is_none());
}

#[test]
fn header_cursor() {
    let cfg = PaginatorConfig::HeaderCursor {
        cursor_key: "X-Next".into(),
        cursor_param: "after".into(),
        stop_condition: None,
    };
    let mut p = Paginator::new(Some(&cfg));
    let r = RequestSpec { query: vec![], ..req("http://api/x") };
    let mut h = HeaderMap::new();
    h.insert("x-next", HeaderValue::from_static("c2"));
    let url = r.full_url();
    let r1 = p.next(&r, &Page { body: &json!({}), headers: &h, records: 1, url: &url }, &mut None).unwrap().unwrap();
    assert_eq!(r1.full_url().as_str(), "http://api/x?after=c2");
    assert!(
        p.next(&r1, &Page { body: &json!({}), headers: &HeaderMap::new(), records: 1, url: &url }, &mut None)
            .unwrap()
            .is_none()
    );
}

#[test]
fn body_paths_write_into_the_json_body() {
    let mut cfg = offset(Some("total"), None, true);
    if let PaginatorConfig::Offset { offset_body_path, limit_body_path, .. } = &mut cfg {
        *offset_body_path = Some("page.offset".into());
        *limit_body_path = Some("page.limit".into());
    }
    let mut p = Paginator::new(Some(&cfg));
    let mut r = RequestSpec { query: vec![], json: Some(json!({"q": "x"})), ..req("http://api/x") };
    p.init(&mut r);
    assert_eq!(r.json, Some(json!({"q": "x", "page": {"offset": 0, "limit": 10}})));
    assert_eq!(r.full_url().as_str(), "http://api/x");
    let r1 = page(&mut p, &r, json!({"total": 15}), 10).unwrap().unwrap();
    assert_eq!(r1.json, Some(json!({"q": "x", "page": {"offset": 10, "limit": 10}})));

    let mut cfg = cursor(None);
    if let PaginatorConfig::Cursor { cursor_param, cursor_body_path, .. } = &mut cfg {
        *cursor_param = None;
        *cursor_body_path = Some("after".into());
    }
    let mut p = Paginator::new(Some(&cfg));
    let r = RequestSpec { query: vec![], ..req("http://api/x") };
    let r1 = page(&mut p, &r, json!({"pagination": {"cursor": 42}}), 1).unwrap().unwrap();
    // the cursor keeps its JSON type in a body
    assert_eq!(r1.json, Some(json!({"after": 42})));

    let cfg = PaginatorConfig::PageNumber {
        base_page: 1,
        page: None,
        page_param: "page".into(),
        page_body_path: Some("paging.page".into()),
        total_path: None,
        maximum_page: Some(3),
        stop_after_empty_page: true,
        has_more_path: None,
        stop_condition: None,
    };
    let mut p = Paginator::new(Some(&cfg));
    let mut r = RequestSpec { query: vec![], ..req("http://api/x") };
    p.init(&mut r);
    assert_eq!(r.json, Some(json!({"paging": {"page": 1}})));
    let r2 = page(&mut p, &r, json!({}), 1).unwrap().unwrap();
    assert_eq!(r2.json, Some(json!({"paging": {"page": 2}})));
    assert!(page(&mut p, &r2, json!({}), 1).unwrap().is_none());
}

#[test]
fn auto_detects_total_pages_and_cursors_as_dlt() {
    let detect = |body: Value| {
        let r0 = RequestSpec { query: vec![], ..req("http://api/x") };
        let url = r0.full_url();
        let mut p = Paginator::new(None);
        let mut d = None;
        let next = p.next(&r0, &Page { body: &body, headers: &HeaderMap::new(), records: 1, url: &url }, &mut d);
        (next.unwrap().map(|r| r.full_url().to_string()), d.unwrap().0, p)
    };
    // a `next` that is not a URL is a cursor
    let (next, what, _) = detect(json!({"items": [1], "next": "abc"}));
    assert_eq!(next.as_deref(), Some("http://api/x?cursor=abc"));
    assert!(what.starts_with("cursor (cursor_path `next`"), "{what}");
    // a relative next URL is a link
    let (next, what, _) = detect(json!({"items": [1], "next": "/x?page=2"}));
    assert_eq!(next.as_deref(), Some("http://api/x?page=2"));
    assert!(what.starts_with("json_link"), "{what}");
    // total pages with the current page in the body: 1-based, stops after the last
    let (next, what, mut p) = detect(json!({"results": [1], "page": 1, "total_pages": 2}));
    assert_eq!(next.as_deref(), Some("http://api/x?page=2"), "{what}");
    assert!(what.starts_with("page_number (total_path `total_pages`"), "{what}");
    let r2 = RequestSpec { query: vec![("page".into(), "2".into())], ..req("http://api/x") };
    assert!(page(&mut p, &r2, json!({"results": [1], "page": 2, "total_pages": 2}), 1).unwrap().is_none());
}

/// Every paginator that follows what the API sends (a cursor in the body or a header, a next
/// link in the body or a `Link` header) refuses to follow the same value twice; the ranges
/// (offset, page number) only count up, and an API that ignores them is caught by the
/// extractor's same-page check (`tests/parity.rs`).
#[test]
fn every_followed_value_that_repeats_is_an_error() {
    let r0 = req("http://api/x");
    let url = r0.full_url();
    let run = |cfg: PaginatorConfig, body: Value, headers: HeaderMap| {
        let mut p = Paginator::new(Some(&cfg));
        let r1 = p.next(&r0, &Page { body: &body, headers: &headers, records: 1, url: &url }, &mut None);
        let r1 = r1.unwrap().expect("the first page leads to a second");
        let url1 = r1.full_url();
        p.next(&r1, &Page { body: &body, headers: &headers, records: 1, url: &url1 }, &mut None).unwrap_err()
    };
    let mut link = HeaderMap::new();
    link.insert("link", HeaderValue::from_static("<http://api/x?page=2>; rel=\"next\""));
    let mut next = HeaderMap::new();
    next.insert("x-next", HeaderValue::from_static("c2"));
    let cases = [
        (cursor(None), json!({"pagination": {"cursor": "c"}}), HeaderMap::new(), "cursor"),
        (
            PaginatorConfig::JsonLink { next_url_path: "next".into(), stop_condition: None },
            json!({"next": "/x?page=2"}),
            HeaderMap::new(),
            "next page URL",
        ),
        (
            PaginatorConfig::HeaderLink { links_next_key: "next".into(), stop_condition: None },
            json!({}),
            link,
            "next page URL",
        ),
        (
            PaginatorConfig::HeaderCursor {
                cursor_key: "X-Next".into(),
                cursor_param: "after".into(),
                stop_condition: None,
            },
            json!({}),
            next,
            "cursor",
        ),
    ];
    for (cfg, body, headers, what) in cases {
        let err = run(cfg, body, headers);
        assert!(matches!(&err, PaginateError::Repeated { what: w, pages: 2, .. } if *w == what), "{err:?}");
    }
}

#[test]
fn pages_known_ahead_are_offsets_and_page_numbers_below_the_total() {
    let urls = |v: Vec<RequestSpec>| v.iter().map(|r| r.full_url().to_string()).collect::<Vec<_>>();
    // offsets: a total of 45 with pages of 10 -> offsets 10 (next), then 20, 30, 40
    let mut p = Paginator::new(Some(&offset(Some("total"), None, false)));
    let mut r = RequestSpec { query: vec![], ..req("http://api/x") };
    p.init(&mut r);
    assert!(p.ahead(&r, 3).is_empty(), "nothing is known before the first response");
    let next = page(&mut p, &r, json!({"total": 45}), 10).unwrap().unwrap();
    assert_eq!(
        urls(p.ahead(&next, 5)),
        ["http://api/x?offset=20&limit=10", "http://api/x?offset=30&limit=10", "http://api/x?offset=40&limit=10"]
    );
    assert_eq!(urls(p.ahead(&next, 1)), ["http://api/x?offset=20&limit=10"]);
    // maximum_offset caps it
    let mut p = Paginator::new(Some(&offset(Some("total"), Some(30), false)));
    let next = page(&mut p, &r, json!({"total": 45}), 10).unwrap().unwrap();
    assert_eq!(urls(p.ahead(&next, 5)), ["http://api/x?offset=20&limit=10"]);
    // no total: nothing ahead (the end is not known)
    let mut p = Paginator::new(Some(&offset(None, Some(1000), true)));
    let next = page(&mut p, &r, json!({}), 10).unwrap().unwrap();
    assert!(p.ahead(&next, 5).is_empty());
    // has_more decides page by page: nothing ahead
    let mut cfg = offset(Some("total"), None, false);
    if let PaginatorConfig::Offset { has_more_path, .. } = &mut cfg {
        *has_more_path = Some("more".into());
    }
    let mut p = Paginator::new(Some(&cfg));
    let next = page(&mut p, &r, json!({"total": 45, "more": true}), 10).unwrap().unwrap();
    assert!(p.ahead(&next, 5).is_empty());
    // page numbers from 1, 3 pages: page 2 next, page 3 ahead
    let mut p = Paginator::new(Some(&pages_from_1("pages")));
    let mut r = RequestSpec { query: vec![], ..req("http://api/x") };
    p.init(&mut r);
    let next = page(&mut p, &r, json!({"pages": 3}), 5).unwrap().unwrap();
    assert_eq!(urls(p.ahead(&next, 4)), ["http://api/x?page=3"]);
    // cursors are never known ahead
    let mut p = Paginator::new(Some(&cursor(None)));
    let next = page(&mut p, &r, json!({"pagination": {"cursor": "c"}}), 5).unwrap().unwrap();
    assert!(p.ahead(&next, 4).is_empty());
}

#[test]
fn next_links_that_are_not_http_are_refused() {
    // found by fuzzing (fuzz/corpus/link_header): `httprs:+/...` was followed as a next page
    let cfg = PaginatorConfig::HeaderLink { links_next_key: "next".into(), stop_condition: None };
    for link in ["<httprs:+/api.example/x?page=2>; rel=\"next\"", "<file:///etc/passwd>; rel=\"next\""] {
        let mut p = Paginator::new(Some(&cfg));
        let r = req("https://api.example/x");
        let mut h = HeaderMap::new();
        h.insert("link", HeaderValue::from_str(link).unwrap());
        let url = r.full_url();
        let e = p.next(&r, &Page { body: &json!({}), headers: &h, records: 1, url: &url }, &mut None).unwrap_err();
        assert!(matches!(e, PaginateError::Scheme(_)), "{link}: {e}");
    }
    // a relative link stays on the page's scheme
    let mut p = Paginator::new(Some(&cfg));
    let r = req("https://api.example/x");
    let mut h = HeaderMap::new();
    h.insert("link", HeaderValue::from_static("</x?page=2>; rel=\"next\""));
    let url = r.full_url();
    let next = p.next(&r, &Page { body: &json!({}), headers: &h, records: 1, url: &url }, &mut None).unwrap().unwrap();
    assert_eq!(next.url.as_str(), "https://api.example/x?page=2");
}

#[test]
fn a_next_link_back_to_the_page_just_read_is_an_error() {
    // found by fuzzing (fuzz/corpus/paginator_body): `https:` resolves, under https, to the URL
    // requested (here `http:`)
    let h = HeaderMap::new();
    let cfg = PaginatorConfig::JsonLink { next_url_path: "links.next".into(), stop_condition: None };
    for link in ["http:", "http://api/v1/x?limit=10", "?limit=10"] {
        let mut p = Paginator::new(Some(&cfg));
        let err = step(&mut p, &req("http://api/v1/x"), json!({"links": {"next": link}}), &h).unwrap_err();
        assert!(matches!(err, PaginateError::Repeated { pages: 1, .. }), "{link}: {err:?}");
    }
}

#[test]
fn auto_detection_reads_keys_that_are_not_plain_names() {
    // found by fuzzing (fuzz/corpus/paginator_body): a key `$a` made a path that did not parse
    let h = HeaderMap::new();
    for (body, next) in [
        (json!({"$a": {"next": "/v1/x?page=2"}}), "http://api/v1/x?page=2"),
        (json!({"a.b": {"next": "/v1/x?page=3"}, "a": {"b": {"next": "/v1/x?page=9"}}}), "http://api/v1/x?page=3"),
        (json!({"it's \\ ok": {"next": {"href": "/v1/x?page=4"}}}), "http://api/v1/x?page=4"),
        // and a control character (a tab) in a key
        (json!({"dq\ta&v0lin?s": {"next": "/v1/x?page=5"}}), "http://api/v1/x?page=5"),
    ] {
        let mut p = Paginator::new(None);
        let r = step(&mut p, &req("http://api/v1/x"), body.clone(), &h)
            .unwrap()
            .unwrap_or_else(|| panic!("no next page: {body}"));
        assert_eq!(r.full_url().as_str(), next, "{body}");
    }
    assert_eq!(path_text(&["links".into(), "next".into()]), "links.next");
    assert_eq!(path_text(&["it's".into(), "a\\b".into()]), "$['it\\'s']['a\\\\b']");
    assert_eq!(path_text(&["a\tb".into()]), "$['a\\u0009b']");
}
