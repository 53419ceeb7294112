//! Credentials stay with their origin: a next link (`json_link`, `Link` header) or a redirect
//! to another origin is followed without them, or refused; within the origin they go along.
//! "Another origin" is a second mock on another port: the same host, another origin.

mod common;

use common::*;

const MOCK_ARGS: [&str; 4] = ["--records", "250", "--page-size", "10"];
/// Forums at `--records 250`: three pages of ten, and five.
const FORUMS: i64 = 25;

/// One resource `forums` at `path` with `params`, authenticated with `auth`.
fn config(mock: &Mock, auth: &str, path: &str, params: &str, paginator: &str, extra_client: &str) -> String {
    format!(
        r#"
client:
  base_url: {url}
  auth: {auth}
{extra_client}
resource_defaults:
  primary_key: id
  write_disposition: merge
resources:
  - name: forums
    endpoint:
      path: {path}
      params: {params}
      data_selector: data
      paginator: {paginator}
"#,
        url = mock.url
    )
}

const BEARER: &str = r#"{type: bearer, token: "{secrets.api_key}"}"#;
const JSON_LINK: &str = "{type: json_link, next_url_path: links.next}";

/// Credentials other hosts received, by kind (`none`: none at all).
fn auth_seen(mock: &Mock) -> serde_json::Value {
    mock.stats()["auth"].clone()
}

#[test]
fn a_next_link_to_another_origin_is_followed_without_the_token_and_warned_about() {
    let home = Mock::start(&MOCK_ARGS);
    let other = Mock::start(&[&MOCK_ARGS[..], &["--open"]].concat());
    let s = Scratch::new();
    let params = format!("{{next_base: '{}'}}", other.url);
    let cfg = config(&home, BEARER, "/styles/json_link/forums", &params, JSON_LINK, "");
    let out = run(&s.write("c.yaml", &cfg), &home, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    let (stdout, stderr) = text(&out);
    // every page after the first came from the other origin, without the token
    let seen = auth_seen(&other);
    assert_eq!(seen["none"], 2, "{seen}");
    assert!(seen.get("bearer").is_none(), "the other origin received the bearer token: {seen}");
    assert_eq!(auth_seen(&home)["bearer"], 1);
    assert_eq!(count(&open(&s.db()), "SELECT count(*) FROM t_dataset.forums"), FORUMS);
    let warning = format!("leads to {}", other.url);
    assert_eq!(stderr.matches(&warning).count(), 1, "one warning naming the other origin:\n{stderr}");
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));
}

#[test]
fn refuse_stops_at_a_next_link_to_another_origin_and_commits_nothing() {
    let home = Mock::start(&MOCK_ARGS);
    let other = Mock::start(&[&MOCK_ARGS[..], &["--open"]].concat());
    let s = Scratch::new();
    let params = format!("{{next_base: '{}'}}", other.url);
    let cfg = config(&home, BEARER, "/styles/json_link/forums", &params, JSON_LINK, "  cross_origin: refuse");
    let out = run(&s.write("c.yaml", &cfg), &home, &s.db(), TOKEN, &[]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(stderr.contains(&format!("it is on {}, not on {}", other.url, home.url)), "{stderr}");
    assert!(stderr.contains("client.cross_origin: refuse"), "{stderr}");
    assert_eq!(other.requests(), 0, "the other origin was asked");
    assert!(
        !s.db().exists()
            || count(&open(&s.db()), "SELECT count(*) FROM information_schema.tables WHERE table_name = 'forums'") == 0
    );
}

#[test]
fn an_api_key_in_the_query_goes_with_every_next_link_on_its_origin_and_never_elsewhere() {
    let auth = r#"{type: api_key, name: api_key, api_key: "{secrets.api_key}", location: query}"#;
    // on its origin: every page carries the key (the link's own query replaces the request's)
    let home = Mock::start(&MOCK_ARGS);
    let s = Scratch::new();
    let cfg = config(&home, auth, "/styles/json_link/forums", "{}", JSON_LINK, "");
    assert_ok(&run(&s.write("c.yaml", &cfg), &home, &s.db(), TOKEN, &[]));
    assert_eq!(auth_seen(&home)["api_key_query"], 3);
    // a Link header to another origin: followed without it
    let other = Mock::start(&[&MOCK_ARGS[..], &["--open"]].concat());
    let s = Scratch::new();
    let params = format!("{{next_base: '{}'}}", other.url);
    let cfg = config(&home, auth, "/styles/header_link/forums", &params, "header_link", "")
        .replace("data_selector: data", "data_selector: $");
    let out = run(&s.write("c.yaml", &cfg), &home, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    let seen = auth_seen(&other);
    assert_eq!(seen["none"], 2, "{seen}");
    assert!(seen.get("api_key_query").is_none(), "{seen}");
    assert_eq!(count(&open(&s.db()), "SELECT count(*) FROM t_dataset.forums"), FORUMS);
}

#[test]
fn redirects_keep_credentials_on_their_origin_and_drop_them_elsewhere() {
    let home = Mock::start(&MOCK_ARGS);
    let other = Mock::start(&[&MOCK_ARGS[..], &["--open"]].concat());
    // within the origin: followed with the token (the redirect and the page both authenticated)
    let s = Scratch::new();
    let cfg = config(
        &home,
        BEARER,
        "/redirect/styles/cursor/forums",
        "{}",
        "{type: cursor, cursor_path: next, cursor_param: cursor}",
        "",
    );
    assert_ok(&run(&s.write("c.yaml", &cfg), &home, &s.db(), TOKEN, &[]));
    assert_eq!(count(&open(&s.db()), "SELECT count(*) FROM t_dataset.forums"), FORUMS);
    assert_eq!(auth_seen(&home)["bearer"], 6, "three pages, each through the redirect");
    // to another origin: the custom secret header and the token stay home
    let s = Scratch::new();
    let params = format!("{{to_base: '{}'}}", other.url);
    let cfg = config(
        &home,
        BEARER,
        "/redirect/styles/cursor/forums",
        &params,
        "{type: cursor, cursor_path: next, cursor_param: cursor}",
        "  headers: {X-API-Key: \"{secrets.api_key}\"}",
    );
    let out = run(&s.write("c.yaml", &cfg), &home, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    let seen = auth_seen(&other);
    assert_eq!(seen["none"], 3, "{seen}");
    assert_eq!(seen.as_object().unwrap().len(), 1, "the other origin received credentials: {seen}");
    let (_, stderr) = text(&out);
    assert!(stderr.contains(&format!("leads to {}", other.url)), "{stderr}");
    assert_eq!(count(&open(&s.db()), "SELECT count(*) FROM t_dataset.forums"), FORUMS);
}

#[test]
fn a_parent_record_cannot_send_a_childs_credentials_elsewhere() {
    // the parent's records name a URL on another origin (a processing step sets it, as an API
    // could); the child's requests there go without the token and the configured headers
    let home = Mock::start(&MOCK_ARGS);
    let other = Mock::start(&[&MOCK_ARGS[..], &["--open"]].concat());
    let s = Scratch::new();
    let cfg = format!(
        r#"
client:
  base_url: {url}
  auth: {{type: bearer, token: "{{secrets.api_key}}"}}
  headers: {{X-API-Key: "{TOKEN}"}}
resources:
  - name: forums
    primary_key: id
    endpoint: {{path: /v1/forums, data_selector: forums, paginator: {{type: cursor, cursor_path: pagination.cursor, cursor_param: cursor}}}}
    processing_steps:
      - map: {{set: {{href: "{other}/v1/forums/1"}}}}
  - name: details
    write_disposition: append
    endpoint:
      path: "{{resources.forums.href}}"
      data_selector: $
      paginator: single_page
"#,
        url = home.url,
        other = other.url
    );
    let out = run(&s.write("c.yaml", &cfg), &home, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    let seen = auth_seen(&other);
    assert_eq!(seen["none"], FORUMS, "{seen}");
    assert_eq!(seen.as_object().unwrap().len(), 1, "the other origin received credentials: {seen}");
    assert_eq!(count(&open(&s.db()), "SELECT count(*) FROM t_dataset.details"), FORUMS);
}
