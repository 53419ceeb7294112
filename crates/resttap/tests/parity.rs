//! dlt `rest_api` parity, end to end: every paginator style, request bodies, auth types
//! (OAuth2 included), parent/child resources and column hints, each through the real binary
//! against the mock API's routes for that style.

mod common;

use common::*;

/// `--records 250 --page-size 10`: 25 forums, 250 suggestions, pages of 10.
const MOCK_ARGS: [&str; 4] = ["--records", "250", "--page-size", "10"];
const FORUMS: i64 = 25;

fn column_types(c: &duckdb::Connection, table: &str) -> Vec<(String, String, String)> {
    let mut st = c
        .prepare("SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema='t_dataset' AND table_name=? ORDER BY ordinal_position")
        .unwrap();
    st.query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

/// Runs `yaml` (written as `file`) against a new mock with [`MOCK_ARGS`] and asserts success.
/// Returns the scratch directory (which holds the database), stderr and the database.
fn load_ok(file: &str, yaml: &str) -> (Scratch, String, duckdb::Connection) {
    let mock = Mock::start(&MOCK_ARGS);
    let s = Scratch::new();
    let out = run(&s.write(file, yaml), &mock, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    let (_, stderr) = text(&out);
    let c = open(&s.db());
    (s, stderr, c)
}

fn table_exists(c: &duckdb::Connection, table: &str) -> bool {
    count(
        c,
        &format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema='t_dataset' AND table_name='{table}'"
        ),
    ) == 1
}

const STYLES: &str = r#"
client:
  base_url: http://127.0.0.1:1
  auth: {token: "{secrets.api_key}"}
resource_defaults:
  primary_key: id
  write_disposition: merge
resources:
  - name: json_link
    endpoint:
      path: /styles/json_link/forums
      data_selector: data
      paginator: {type: json_link, next_url_path: links.next}
  - name: header_link
    endpoint:
      path: /styles/header_link/forums
      data_selector: $
      paginator: header_link
  - name: header_cursor
    endpoint:
      path: /styles/header_cursor/forums
      data_selector: items
      paginator: {type: header_cursor, cursor_key: X-Next-Cursor, cursor_param: cursor}
  - name: cursor
    endpoint:
      path: /styles/cursor/forums
      data_selector: data
      paginator: {type: cursor, cursor_path: next, cursor_param: cursor}
  - name: offset
    endpoint:
      path: /styles/offset/forums
      data_selector: items
      paginator: {type: offset, limit: 7, total_path: total}
  - name: page_number
    endpoint:
      path: /styles/page_number/forums
      data_selector: results
      paginator: {type: page_number, base_page: 1, total_path: total_pages}
  - name: page_number_stopped
    endpoint:
      path: /styles/page_number/forums
      data_selector: results
      paginator: {type: page_number, base_page: 1, total_path: total_pages, stop_condition: "page >= 2"}
  - name: body_offset
    endpoint:
      path: /styles/body/forums
      method: POST
      json: {filter: {min_id: 1}}
      data_selector: items
      paginator: {type: offset, limit: 9, offset_body_path: page.offset, limit_body_path: page.limit, total_path: total}
  - name: body_cursor
    endpoint:
      path: /styles/body/forums
      method: POST
      data_selector: items
      paginator: {type: cursor, cursor_path: next_cursor, cursor_body_path: cursor}
  - name: body_page
    endpoint:
      path: /styles/body/forums
      method: POST
      data_selector: items
      paginator: {type: page_number, base_page: 1, page_body_path: page_number, total_path: null}
  - name: form
    endpoint:
      path: /styles/form/forums
      method: POST
      data: {min_id: 3}
      data_selector: items
      paginator: {type: offset, limit: 6, total_path: total}
  - name: static_path_param
    endpoint:
      path: /styles/{style}/forums
      params: {style: offset}
      data_selector: items
      paginator: {type: offset, limit: 10, total_path: total}
  - name: auto_json_link
    endpoint: /styles/json_link/forums
  - name: auto_page_number
    endpoint: /styles/page_number/forums
  - name: auto_cursor
    endpoint: /styles/cursor/forums
"#;

#[test]
fn every_paginator_style_and_request_body_loads_every_record_once() {
    let (_s, stderr, c) = load_ok("styles.yaml", STYLES);
    for (table, want) in [
        ("json_link", FORUMS),
        ("header_link", FORUMS),
        ("header_cursor", FORUMS),
        ("cursor", FORUMS),
        ("offset", FORUMS),
        ("page_number", FORUMS),
        ("page_number_stopped", 20), // stop_condition after page 2 of 10 records
        ("body_offset", FORUMS),
        ("body_cursor", FORUMS),
        ("body_page", FORUMS),
        ("form", FORUMS - 2),          // `data: {min_id: 3}` went in the form body
        ("static_path_param", FORUMS), // `{style}` bound from params, not sent as a query parameter
        ("auto_json_link", FORUMS),
        ("auto_page_number", FORUMS),
        ("auto_cursor", FORUMS),
    ] {
        assert_eq!(count(&c, &format!("SELECT count(*) FROM t_dataset.{table}")), want, "{table}");
        assert_eq!(count(&c, &format!("SELECT count(DISTINCT id) FROM t_dataset.{table}")), want, "{table}");
    }
    assert_eq!(count(&c, "SELECT min(id) FROM t_dataset.form"), 3);
    // what auto-detection chose is said, as dlt logs it
    for want in [
        "resource `auto_json_link`: auto-detected paginator json_link (next_url_path `links.next`)",
        "resource `auto_page_number`: auto-detected paginator page_number (total_path `total_pages`",
        "resource `auto_cursor`: auto-detected paginator cursor (cursor_path `next`",
        "resource `auto_json_link`: auto-detected data_selector `data`",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
}

#[test]
fn repeated_cursor_is_an_error_naming_the_resource() {
    let mock = Mock::start(&MOCK_ARGS);
    let s = Scratch::new();
    // the cursor is read from a path that never changes: following it would loop forever
    let cfg = STYLES.split("  - name: json_link").next().unwrap().to_string()
        + "  - name: looping\n    endpoint:\n      path: /styles/page_number/forums\n      data_selector: results\n      paginator: {type: cursor, cursor_path: total_pages, cursor_param: page}\n";
    let out = run(&s.write("loop.yaml", &cfg), &mock, &s.db(), TOKEN, &[]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("resource `looping`") && stderr.contains("a second time"), "{stderr}");
    assert!(!s.db().exists() || !table_exists(&open(&s.db()), "looping"));
    // page numbers sent to an API that ignores them: the same page comes back
    let cfg = STYLES.split("  - name: json_link").next().unwrap().to_string()
        + "  - name: ignored\n    endpoint:\n      path: /styles/cursor/forums\n      data_selector: data\n      paginator: {type: page_number, total_path: null, maximum_page: 1000}\n";
    let out = run(&s.write("same.yaml", &cfg), &mock, &s.db(), TOKEN, &[]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("resource `ignored`") && stderr.contains("the same page again after 1 page(s)"),
        "{stderr}"
    );
}

fn auth_config(mock: &Mock) -> String {
    format!(
        r#"
client:
  base_url: {url}
  auth: {{type: bearer, token: "{{secrets.api_key}}"}}
resource_defaults:
  primary_key: id
  endpoint:
    path: /v1/forums
    data_selector: forums
    paginator: {{type: cursor, cursor_path: pagination.cursor, cursor_param: cursor}}
resources:
  - name: with_bearer
  - name: with_api_key_header
    endpoint:
      auth: {{type: api_key, name: X-API-Key, api_key: "{{secrets.api_key}}"}}
  - name: with_api_key_query
    endpoint:
      auth: {{type: api_key, name: api_key, api_key: "{{secrets.api_key}}", location: query}}
  - name: with_api_key_cookie
    endpoint:
      auth: {{type: api_key, name: session, api_key: "{{secrets.api_key}}", location: cookie}}
  - name: with_basic
    endpoint:
      auth: {{type: http_basic, username: demo, password: "{{secrets.api_key}}"}}
  - name: with_oauth2
    endpoint:
      auth:
        type: oauth2_client_credentials
        access_token_url: {url}/oauth/token
        client_id: demo
        client_secret: "{{secrets.api_key}}"
        access_token_request_data: {{scope: read}}
  - name: with_oauth2_again
    endpoint:
      path: /v1/external_users
      data_selector: external_users
      auth:
        type: oauth2_client_credentials
        access_token_url: {url}/oauth/token
        client_id: demo
        client_secret: "{{secrets.api_key}}"
"#,
        url = mock.url
    )
}

#[test]
fn every_auth_type_authenticates_and_oauth2_tokens_are_shared() {
    let mock = Mock::start(&MOCK_ARGS);
    let s = Scratch::new();
    let out = run(&s.write("auth.yaml", &auth_config(&mock)), &mock, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    let c = open(&s.db());
    for t in
        ["with_bearer", "with_api_key_header", "with_api_key_query", "with_api_key_cookie", "with_basic", "with_oauth2"]
    {
        assert_eq!(count(&c, &format!("SELECT count(*) FROM t_dataset.{t}")), FORUMS, "{t}");
    }
    let stats = mock.stats();
    for m in ["bearer", "api_key_header", "api_key_query", "api_key_cookie", "http_basic", "oauth2"] {
        assert!(stats["auth"][m].as_u64().unwrap_or(0) >= 3, "{m}: {stats}");
    }
    // one token for both resources that use the same client (3 + 3 pages with it)
    assert_eq!(stats["token_requests"], 1, "{stats}");
    assert_eq!(stats["auth"]["oauth2"], 6, "{stats}");
    // the API key in the query string never shows in output
    let (stdout, stderr) = text(&out);
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));
}

#[test]
fn wrong_oauth2_secret_names_the_token_endpoint_and_writes_nothing() {
    let mock = Mock::start(&MOCK_ARGS);
    let s = Scratch::new();
    let cfg = auth_config(&mock).replace("client_secret: \"{secrets.api_key}\"", "client_secret: wrong");
    let out = run(&s.write("auth.yaml", &cfg), &mock, &s.db(), TOKEN, &[]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("HTTP 401") && stderr.contains("/oauth/token (the OAuth2 token endpoint)"), "{stderr}");
    assert!(stderr.contains("invalid client credentials"), "{stderr}");
    assert!(!s.db().exists() || !table_exists(&open(&s.db()), "with_bearer"));
}

fn oauth_only(mock: &Mock) -> String {
    format!(
        r#"
client:
  base_url: {url}
  auth:
    type: oauth2_client_credentials
    access_token_url: {url}/oauth/token
    client_id: demo
    client_secret: "{{secrets.api_key}}"
resources:
  - name: forums
    primary_key: id
    endpoint:
      path: /v1/forums
      data_selector: forums
      paginator: {{type: cursor, cursor_path: pagination.cursor, cursor_param: cursor}}
"#,
        url = mock.url
    )
}

#[test]
fn oauth2_token_is_refreshed_once_on_401() {
    let mock = Mock::start(&["--records", "250", "--page-size", "5", "--slow-ms", "150"]);
    let s = Scratch::new();
    let cfg = s.write("oauth.yaml", &oauth_only(&mock));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(450));
            assert_eq!(mock.admin("POST", "/admin/oauth/revoke"), 204);
        });
        let out = run(&cfg, &mock, &s.db(), TOKEN, &[]);
        assert_ok(&out);
    });
    let stats = mock.stats();
    assert_eq!(stats["token_requests"], 2, "{stats}");
    assert!(stats["unauthorized"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(count(&open(&s.db()), "SELECT count(DISTINCT id) FROM t_dataset.forums"), FORUMS);
}

#[test]
fn oauth2_token_is_refreshed_before_it_expires() {
    let mock = Mock::start(&["--records", "250", "--page-size", "5", "--slow-ms", "300", "--oauth-expires-in", "1"]);
    let s = Scratch::new();
    let out = run(&s.write("oauth.yaml", &oauth_only(&mock)), &mock, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    let stats = mock.stats();
    // 5 pages of 300 ms with a token that lives 1 s: renewed on the way, never rejected
    assert!(stats["token_requests"].as_u64().unwrap() >= 2, "{stats}");
    assert_eq!(stats["unauthorized"], 0, "{stats}");
}

const PARENT_CHILD: &str = r#"
client:
  base_url: http://127.0.0.1:1
  auth: {token: "{secrets.api_key}"}
resource_defaults:
  primary_key: id
  write_disposition: merge
  endpoint:
    paginator: {type: cursor, cursor_path: pagination.cursor, cursor_param: cursor}
resources:
  - name: forums
    selected: false
    endpoint:
      path: /v1/forums
      data_selector: forums
  - name: forum_suggestions
    include_from_parent: [name, id]
    endpoint:
      path: "/v1/forums/{resources.forums.id}/suggestions"
      params: {limit: 4}
      data_selector: suggestions
  - name: forum_detail
    endpoint:
      path: "/v1/forums/{resources.forums.id}"
  - name: forum_features
    endpoint:
      path: /v1/forums/{forum}/features
      params:
        forum: {type: resolve, resource: forums, field: id}
      data_selector: features
  - name: forum_suggestions_auto
    endpoint:
      path: "/v1/forums/{resources.forums.id}/suggestions"
      paginator: auto
      data_selector: suggestions
  - name: body_child
    primary_key: []
    write_disposition: append
    include_from_parent: [id]
    endpoint:
      path: /styles/body/suggestions
      method: POST
      json: {filter: {min_id: "{resources.forums.id}"}, page: {limit: 1000}}
      data_selector: items
      paginator: single_page
  - name: suggestion_detail
    processing_steps:
      - filter: "vote_count >= 500"
    endpoint:
      path: "/v1/suggestions/{resources.forum_suggestions.id}"
"#;

#[test]
fn parent_child_resources_fan_out_per_parent_record() {
    let (_s, stderr, c) = load_ok("pc.yaml", PARENT_CHILD);
    // a child's request chains auto-detect too, and say so once
    let line = "resource `forum_suggestions_auto`: auto-detected paginator single_page";
    assert_eq!(stderr.matches(line).count(), 1, "{stderr}");
    // `selected: false`: fetched to feed its children, not loaded
    assert!(!table_exists(&c, "forums"));
    let suggestions = resttap_mock::data::record_count("suggestions", 250, 0, 2) as i64;
    assert_eq!(count(&c, "SELECT count(DISTINCT id) FROM t_dataset.forum_suggestions"), suggestions);
    // include_from_parent: `_<parent>_<field>`, the parent's values
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM t_dataset.forum_suggestions WHERE _forums_id <> forum_id OR _forums_name NOT LIKE 'Forum ' || forum_id || ':%'"
        ),
        0
    );
    // a path ending in a placeholder is one record per parent (single entity)
    assert_eq!(count(&c, "SELECT count(DISTINCT id) FROM t_dataset.forum_detail"), FORUMS);
    // the legacy `type: resolve` param
    let features = resttap_mock::data::record_count("features", 250, 0, 2);
    let with_forum = (1..=features)
        .filter(|id| resttap_mock::data::record("features", *id, 0)["forum_id"].as_u64().unwrap() <= FORUMS as u64)
        .count() as i64;
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.forum_features"), with_forum);
    // a JSON body whose value is one placeholder keeps the parent's type: the mock reads
    // `min_id` only as a number
    let per_forum: i64 = (1..=FORUMS).map(|f| suggestions - f + 1).sum();
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.body_child"), per_forum);
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.body_child WHERE id < _forums_id"), 0);
    // a grandchild: one request per suggestion; the processing step filtered its records
    let popular = (1..=suggestions as u64)
        .filter(|id| resttap_mock::data::record("suggestions", *id, 0)["vote_count"].as_u64().unwrap() >= 500)
        .count() as i64;
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.suggestion_detail"), popular);
    assert!(popular > 0 && popular < suggestions);
}

#[test]
fn a_missing_parent_field_fails_with_the_fields_there_are() {
    let mock = Mock::start(&MOCK_ARGS);
    let s = Scratch::new();
    let cfg = PARENT_CHILD.replace(
        "{resources.forums.id}\"\n  - name: forum_features",
        "{resources.forums.idd}\"\n  - name: forum_features",
    );
    let out = run(&s.write("pc.yaml", &cfg), &mock, &s.db(), TOKEN, &[]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("resource `forum_detail`: the record from parent resource `forums` has no field `idd`")
            && stderr.contains("its fields are: id, name"),
        "{stderr}"
    );
    assert!(!s.db().exists() || !table_exists(&open(&s.db()), "forum_suggestions"));
}

#[test]
fn column_hints_set_types_nullability_and_order() {
    let cfg = std::fs::read_to_string(seed_config()).unwrap().replace(
        "  - name: forums\n",
        "  - name: forums\n    columns:\n      is_public: {data_type: text}\n      created_at: {data_type: date}\n      legacy_code: {data_type: bigint}\n      name: {nullable: false}\n",
    );
    let (_s, _, c) = load_ok("hints.yaml", &cfg);
    let cols = column_types(&c, "forums");
    let at = |n: &str| cols.iter().position(|c| c.0 == n).unwrap_or_else(|| panic!("no {n}: {cols:?}"));
    assert_eq!(cols[..3].iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), ["is_public", "created_at", "legacy_code"]);
    assert_eq!(cols[at("is_public")].1, "VARCHAR");
    assert_eq!(cols[at("created_at")].1, "DATE");
    assert_eq!(cols[at("legacy_code")].1, "BIGINT");
    assert_eq!(cols[at("name")].2, "NO");
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.forums WHERE is_public IN ('True', 'False')"), FORUMS);
    let first = resttap_mock::data::record("forums", 1, 0);
    let day = &first["created_at"].as_str().unwrap()[..10];
    assert_eq!(
        count(&c, &format!("SELECT count(*) FROM t_dataset.forums WHERE id = 1 AND created_at = DATE '{day}'")),
        1
    );
}

#[test]
fn the_parent_child_example_runs() {
    let mock = Mock::start(&MOCK_ARGS);
    let s = Scratch::new();
    let out = run(&repo_root().join("examples/parent-child.yaml"), &mock, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    let c = open(&s.db());
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.forum_suggestions"), 250);
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.forum_details"), FORUMS);
    assert_eq!(count(&c, "SELECT count(DISTINCT _forums_name) FROM t_dataset.forum_suggestions"), 10);
}
