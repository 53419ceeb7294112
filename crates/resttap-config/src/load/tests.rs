use super::*;
use crate::model::{DataType, Precision, RangeBound, RetryConfig, WriteDisposition};

fn sources() -> SecretSources {
    let mut s = SecretSources {
        ignore_env: true,
        secrets_toml: Some("/nonexistent/secrets.toml".into()),
        ..Default::default()
    };
    s.overrides.insert("api_key".into(), crate::Secret::new("t0ken"));
    s
}

fn load(text: &str, format: Format) -> Result<Config, ConfigError> {
    load_str(text, format, Path::new("test.yaml"), &Overrides::default(), &sources())
}

const SEED_YAML: &str = r#"
client:
  base_url: https://api.example.com
  auth:
    type: bearer
    token: "{secrets.api_key}"
resource_defaults:
  primary_key: id
  write_disposition: merge
resources:
  - name: forums
    endpoint:
      path: /v1/forums
      data_selector: forums
      paginator:
        type: cursor
        cursor_param: cursor
        cursor_path: pagination.cursor
        stop_condition: pagination.cursor is not defined
  - name: suggestions
    write_disposition: append
    endpoint:
      path: /v1/suggestions
      data_selector: suggestions
"#;

/// The first problem found (a mistake can lead to others, reported after it).
fn invalid(text: &str) -> (String, String, Option<String>) {
    let e = load(text, Format::Yaml).expect_err("the configuration is invalid");
    match e.problems()[0] {
        ConfigError::Invalid { key, message, suggestion, .. } => (key.clone(), message.clone(), suggestion.clone()),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn every_problem_is_reported_at_once_keys_and_types_before_secrets() {
    let mut sources = sources();
    sources.overrides.clear();
    let text = r#"
client:
  base_url: https://api.example.com
  auth: {type: bearer, token: "{secrets.api_key}"}
  timeout: fast
resource_defaults:
  primary_key: id
  write_dispositon: merge
resources:
  - name: forums
    endpoint:
      path: /v1/forums
      data_selectr: forums
      paginator: {type: cursor, cursor_pth: next}
  - name: topics
    endpoint:
      path: /v1/topics
      headers: {X-Other: "{secrets.other_key}"}
      paginator: {type: offst}
      incremental: {cursor_path: "updated_at[", initial_value: "2024-01-01T00:00:00Z"}
"#;
    let e = load_str(text, Format::Yaml, Path::new("test.yaml"), &Overrides::default(), &sources).unwrap_err();
    let keys: Vec<&str> = e.problems().iter().map(|p| p.key().unwrap_or("-")).collect();
    assert_eq!(
        keys,
        [
            "resource_defaults.write_dispositon",
            "client.timeout",
            "resources[0].endpoint.data_selectr",
            "resources[0].endpoint.paginator.cursor_pth",
            "resources[1].endpoint.paginator.type",
            "resources[1].endpoint.incremental.cursor_path",
            "client.auth.token",
            "resources[1].endpoint.headers.X-Other",
        ],
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.starts_with(
            "8 problems in config file test.yaml:\n  - test.yaml: resource_defaults.write_dispositon: unknown key"
        ),
        "{text}"
    );
    assert!(text.contains("did you mean `write_disposition`?") && text.contains("did you mean `offset`?"), "{text}");
    assert!(text.contains("API_KEY") && text.contains("OTHER_KEY"), "{text}");
    // a required key of the wrong type, a resource without a name or that is not a mapping:
    // the part stands in, and the others are still read
    let text = r#"
client:
  base_url: 5
resources:
  - name: [x]
    endpoint: /a
  - 7
  - name: c
    endpoint: {path: /c, data_selectr: x}
  - name: d
    endpoint: {path: /d, headerz: {X: "{secrets.never_asked}"}}
"#;
    let e = load_str(text, Format::Yaml, Path::new("test.yaml"), &Overrides::default(), &sources).unwrap_err();
    let keys: Vec<&str> = e.problems().iter().map(|p| p.key().unwrap_or("-")).collect();
    assert_eq!(
        keys,
        [
            "resources[1]",
            "client.base_url",
            "resources[0].name",
            "resources[2].endpoint.data_selectr",
            "resources[3].endpoint.headerz"
        ],
        "{e}"
    );
    assert!(!e.to_string().contains("never_asked"), "a key reported unknown asks for no secret: {e}");
    // one problem is reported as itself, as before
    let one = load(&SEED_YAML.replace("data_selector: forums", "data_selectr: forums"), Format::Yaml).unwrap_err();
    assert!(matches!(one, ConfigError::Invalid { .. }), "{one:?}");
}

#[test]
fn seed_config_loads_and_defaults_merge() {
    let c = load(SEED_YAML, Format::Yaml).unwrap();
    let r = &c.api.resources;
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].primary_key, vec!["id"]);
    assert_eq!(r[0].write_disposition, WriteDisposition::Merge);
    assert_eq!(r[1].write_disposition, WriteDisposition::Append);
    assert_eq!(r[1].primary_key, vec!["id"]);
    assert_eq!(r[0].endpoint.paginator.as_ref().unwrap().stop_condition(), Some("pagination.cursor is not defined"));
    assert_eq!(c.secrets.get("api_key").unwrap().expose(), "t0ken");
    // the secret is not in the model, and Debug output of the whole config hides it
    assert!(!format!("{c:?}").contains("t0ken"));
}

#[test]
fn same_config_as_json_and_toml() {
    let json = r#"{"client": {"base_url": "http://localhost:1/", "auth": {"token": "{secrets.api_key}"}},
        "resources": ["forums", {"name": "x", "endpoint": "v1/x", "write_disposition": {"disposition": "merge", "strategy": "delete-insert"}, "primary_key": ["a", "b"]}]}"#;
    let c = load(json, Format::Json).unwrap();
    assert_eq!(c.api.resources[0].endpoint.path.as_deref(), Some("forums"));
    assert_eq!(c.api.resources[1].endpoint.path.as_deref(), Some("v1/x"));
    assert_eq!(c.api.resources[1].write_disposition, WriteDisposition::Merge);
    assert_eq!(c.api.resources[1].primary_key, vec!["a", "b"]);
    assert!(matches!(c.api.client.auth, Some(AuthConfig::Bearer { .. })));
    let toml = r#"
[client]
base_url = "http://localhost:1"
[client.paginator]
type = "cursor"
cursor_path = "next"
[[resources]]
name = "forums"
endpoint = { path = "/v1/forums", data_selector = "forums" }
"#;
    let c = load(toml, Format::Toml).unwrap();
    assert!(matches!(c.api.client.paginator, Some(PaginatorConfig::Cursor { .. })));
}

#[test]
fn unknown_key_names_path_and_suggests() {
    let text = SEED_YAML.replace("cursor_path: pagination.cursor", "cursor_pth: pagination.cursor");
    let (key, message, suggestion) = invalid(&text);
    assert_eq!(key, "resources[0].endpoint.paginator.cursor_pth");
    assert!(message.contains("unknown key `cursor_pth`"), "{message}");
    assert_eq!(suggestion.as_deref(), Some("cursor_path"));

    let text = SEED_YAML.replace("data_selector: suggestions", "data_selecter: suggestions");
    let (key, _, suggestion) = invalid(&text);
    assert_eq!(key, "resources[1].endpoint.data_selecter");
    assert_eq!(suggestion.as_deref(), Some("data_selector"));

    let text = SEED_YAML.replace("type: cursor", "type: cursr");
    let (key, message, suggestion) = invalid(&text);
    assert_eq!(key, "resources[0].endpoint.paginator.type");
    assert!(message.contains("unknown value `cursr`"), "{message}");
    assert_eq!(suggestion.as_deref(), Some("cursor"));

    let text = SEED_YAML.replace("primary_key: id", "primary_kee: id");
    let (key, _, suggestion) = invalid(&text);
    assert_eq!(key, "resource_defaults.primary_kee");
    assert_eq!(suggestion.as_deref(), Some("primary_key"));

    let text = SEED_YAML.replace("base_url:", "base_ur1:");
    let (key, message, _) = invalid(&text);
    assert_eq!(key, "client.base_ur1");
    assert!(message.contains("valid keys here"), "{message}");
}

#[test]
fn wrong_types_and_values() {
    let (key, message, _) = invalid(&SEED_YAML.replace("write_disposition: append", "write_disposition: 7"));
    assert_eq!(key, "resources[1].write_disposition");
    assert!(message.contains("invalid type"), "{message}");
    let (key, _, suggestion) = invalid(&SEED_YAML.replace("write_disposition: append", "write_disposition: apend"));
    assert_eq!(key, "resources[1].write_disposition");
    assert_eq!(suggestion.as_deref(), Some("append"));
    let (key, message, _) = invalid(&SEED_YAML.replace("is not defined", "is not"));
    assert_eq!(key, "resources[0].endpoint.paginator.stop_condition");
    assert!(message.contains("column"), "{message}");
    let (key, message, _) = invalid(&SEED_YAML.replace("data_selector: forums", "data_selector: \"forums[\""));
    assert_eq!(key, "resources[0].endpoint.data_selector");
    assert!(message.contains("invalid JSONPath"), "{message}");
    let (key, _, _) = invalid(&SEED_YAML.replace("https://api.example.com", "not a url"));
    assert_eq!(key, "client.base_url");
    let (key, message, _) = invalid(&SEED_YAML.replace("name: suggestions", "name: forums"));
    assert_eq!(key, "resources[1].name");
    assert!(message.contains("resources[0]"));
    let offset = "client:\n  base_url: http://x\n  paginator:\n    type: offset\n    limit: 10\n    total_path: null\n    stop_after_empty_page: false\nresources: [a]\n";
    let (key, message, _) = invalid(offset);
    assert_eq!(key, "client.paginator");
    assert!(message.contains("must end the pagination"), "{message}");
    let oauth = "client:\n  base_url: http://x\n  auth:\n    type: oauth2_client_credentials\n    access_token_url: http://x/t\n    client_id: a\n    client_secret: b\n    access_token_request_data: [1]\nresources: [a]\n";
    let (key, _, _) = invalid(oauth);
    assert_eq!(key, "client.auth.access_token_request_data");
    assert!(load(&oauth.replace("    access_token_request_data: [1]\n", ""), Format::Yaml).is_ok());
}

const PARENT_CHILD: &str = r#"
client:
  base_url: https://api.example.com
resource_defaults:
  primary_key: id
  endpoint:
    params: {limit: 50}
    paginator: {type: cursor, cursor_path: next}
resources:
  - name: forums
  - name: forum_suggestions
    include_from_parent: [name]
    endpoint:
      path: forums/{forum_id}/suggestions
      params:
        forum_id: {type: resolve, resource: forums, field: id}
        status: open
      paginator: {type: offset, limit: 10, total_path: null}
  - name: forum
    endpoint:
      path: "forums/{resources.forums.id}"
      headers: {X-Forum: "{resources.forums.name}"}
  - name: archive
    endpoint:
      path: "archive/{year}"
      params: {year: 2024}
"#;

#[test]
fn parents_resolve_params_and_dlt_merge_rules() {
    let c = load(PARENT_CHILD, Format::Yaml).unwrap();
    let r = &c.api.resources;
    assert_eq!(r[0].parent, None);
    // the legacy resolve param became a placeholder and left the query params
    assert_eq!(r[1].endpoint.path.as_deref(), Some("forums/{resources.forums.id}/suggestions"));
    assert_eq!(r[1].parent.as_deref(), Some("forums"));
    assert_eq!(r[1].endpoint.params.keys().collect::<Vec<_>>(), vec!["limit", "status"]);
    // the resource's paginator replaces the default whole (no cursor keys mixed into offset)
    assert_eq!(r[1].endpoint.paginator.as_ref().unwrap().type_name(), "offset");
    // a path ending in a placeholder is a single entity: whole body, one page
    assert_eq!(r[2].endpoint.data_selector.as_deref(), Some("$"));
    assert_eq!(r[2].endpoint.paginator.as_ref().unwrap().type_name(), "cursor"); // from the defaults
    assert_eq!(r[2].parent.as_deref(), Some("forums"));
    assert_eq!(
        r[2].endpoint.parent_refs().into_iter().collect::<Vec<_>>(),
        vec![("forums".to_string(), "id".to_string()), ("forums".to_string(), "name".to_string())]
    );
    // a static path param is bound and removed
    assert_eq!(r[3].endpoint.path.as_deref(), Some("archive/2024"));
    assert!(!r[3].endpoint.params.contains_key("year"));
}

#[test]
fn parent_errors_name_the_key() {
    let (key, message, suggestion) = invalid(&PARENT_CHILD.replace("resource: forums", "resource: forumz"));
    assert_eq!(key, "resources[1].endpoint");
    assert!(message.contains("`forumz` that is not defined"), "{message}");
    assert_eq!(suggestion.as_deref(), Some("forums"));
    let (key, message, _) = invalid(&PARENT_CHILD.replace("{resources.forums.name}", "{resources.archive.name}"));
    assert_eq!(key, "resources[2].endpoint");
    assert!(message.contains("two parent"), "{message}");
    let looped =
        PARENT_CHILD.replace("  - name: forums\n", "  - name: forums\n    endpoint: \"f/{resources.forum.id}/x\"\n");
    let (_, message, _) = invalid(&looped);
    assert!(message.contains("loop") && message.contains("forums -> forum -> forums"), "{message}");
    let (key, message, _) = invalid(&PARENT_CHILD.replace("params: {year: 2024}", "params: {}"));
    assert_eq!(key, "resources[3].endpoint.path");
    assert!(message.contains("`{year}`"), "{message}");
    let (key, message, _) =
        invalid(&PARENT_CHILD.replace("path: forums/{forum_id}/suggestions", "path: forums/suggestions"));
    assert_eq!(key, "resources[1].endpoint.params.forum_id");
    assert!(message.contains("bound in the path"), "{message}");
    let (key, _, _) =
        invalid(&PARENT_CHILD.replace("  - name: forums\n", "  - name: forums\n    include_from_parent: [id]\n"));
    assert_eq!(key, "resources[0].include_from_parent");
}

#[test]
fn columns_data_and_body_paths() {
    let base = "client:\n  base_url: http://x\nresources:\n  - name: a\n";
    let ok = format!(
        "{base}    columns:\n      id: {{data_type: bigint, nullable: false, primary_key: true}}\n      day: {{data_type: date}}\n    endpoint:\n      method: POST\n      data: {{q: x, n: 1}}\n      paginator: {{type: offset, limit: 5, offset_body_path: page.offset, limit_body_path: page.limit}}\n"
    );
    let c = load(&ok, Format::Yaml).unwrap();
    let cols = c.api.resources[0].columns.as_ref().unwrap();
    assert_eq!((cols[0].0.as_str(), cols[0].1.nullable, cols[1].0.as_str()), ("id", Some(false), "day"));
    let (_, _, suggestion) = invalid(&ok.replace("data_type: date", "data_type: bigin"));
    assert_eq!(suggestion.as_deref(), Some("bigint"));
    let (key, _, _) = invalid(&ok.replace("page.offset", "page..offset"));
    assert_eq!(key, "resources[0].endpoint.paginator.offset_body_path");
    let (key, _, _) = invalid(&ok.replace("{q: x, n: 1}", "{q: [1]}"));
    assert_eq!(key, "resources[0].endpoint.data");
}

#[test]
fn placeholders_are_checked() {
    let (key, message, suggestion) = invalid(&SEED_YAML.replace("{secrets.api_key}", "{secret.api_key}"));
    assert_eq!(key, "client.auth.token");
    assert!(message.contains("namespace `secret`"), "{message}");
    assert_eq!(suggestion.as_deref(), Some("{secrets.api_key}"));
    let err = load(&SEED_YAML.replace("{secrets.api_key}", "{secrets.other_key}"), Format::Yaml).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("OTHER_KEY") && text.contains("client.auth.token") && text.contains("secrets.toml"),
        "{text}"
    );
}

#[test]
fn syntax_errors_name_the_file() {
    let err = load("client: [", Format::Yaml).unwrap_err().to_string();
    assert!(err.starts_with("test.yaml: invalid YAML"), "{err}");
    let err = load("{", Format::Json).unwrap_err().to_string();
    assert!(err.contains("invalid JSON") && err.contains("line 1"), "{err}");
}

#[test]
fn retry_is_configurable() {
    let c = load(SEED_YAML, Format::Yaml).unwrap();
    assert_eq!(c.api.client.retry, RetryConfig::default());
    let text = SEED_YAML.replace("  auth:", "  retry:\n    max_retries: 5\n    backoff_factor: 0.5\n  auth:");
    let c = load(&text, Format::Yaml).unwrap();
    assert_eq!(c.api.client.retry.max_retries, 5);
    assert_eq!(c.api.client.retry.statuses, vec![429, 500, 502, 503, 504]);
    let (key, _, suggestion) = invalid(&SEED_YAML.replace("  auth:", "  retry:\n    max_retry: 5\n  auth:"));
    assert_eq!(key, "client.retry.max_retry");
    assert_eq!(suggestion.as_deref(), Some("max_retries"));
}

#[test]
fn jsonpath_shorthand() {
    assert_eq!(to_jsonpath("forums"), "$.forums");
    assert_eq!(to_jsonpath("data.items"), "$.data.items");
    assert_eq!(to_jsonpath("$"), "$");
    assert_eq!(to_jsonpath("[*]"), "$[*]");
}

#[test]
fn shipped_examples_agree_in_all_formats() {
    let root = manifest_dir().join("../../examples");
    let load = |f: &str| format!("{:?}", load_file(&root.join(f), &Overrides::default(), &sources()).unwrap().api);
    let yaml = load("analytics-api.yaml");
    assert!(yaml.contains("pagination.cursor is not defined"));
    assert_eq!(yaml, load("analytics-api.json"));
    assert_eq!(yaml, load("analytics-api.toml"));
}

#[test]
fn incremental_config_and_legacy_form() {
    let text = SEED_YAML.replace(
        "      data_selector: suggestions",
        "      data_selector: suggestions\n      params:\n        updated_after: \"{incremental.start_value}\"\n      incremental:\n        cursor_path: updated_at\n        initial_value: \"2024-01-01T00:00:00Z\"",
    );
    let c = load(&text, Format::Yaml).unwrap();
    let inc = c.api.resources[1].endpoint.incremental.as_ref().unwrap();
    assert_eq!(inc.cursor_path, "updated_at");
    assert_eq!(inc.range_start, RangeBound::Closed);
    let legacy = SEED_YAML.replace(
        "      data_selector: suggestions",
        "      data_selector: suggestions\n      params:\n        since:\n          type: incremental\n          cursor_path: updated_at\n          initial_value: 5",
    );
    let c = load(&legacy, Format::Yaml).unwrap();
    let inc = c.api.resources[1].endpoint.incremental.as_ref().unwrap();
    assert_eq!(inc.start_param.as_deref(), Some("since"));
    assert!(c.api.resources[1].endpoint.params.is_empty());
    let (key, message, _) = invalid(&SEED_YAML.replace(
        "      data_selector: suggestions",
        "      data_selector: suggestions\n      params:\n        since: \"{incremental.start_value}\"",
    ));
    assert_eq!(key, "resources[1].endpoint");
    assert!(message.contains("no `incremental` section"), "{message}");
    let (key, _, suggestion) = invalid(&SEED_YAML.replace("      data_selector: suggestions", "      data_selector: suggestions\n      params:\n        since: \"{incremental.start_valu}\"\n      incremental:\n        cursor_path: x"));
    assert_eq!(key, "resources[1].endpoint.params.since");
    assert_eq!(suggestion.as_deref(), Some("{incremental.start_value}"));
    let (key, _, suggestion) = invalid(&SEED_YAML.replace(
        "      data_selector: suggestions",
        "      data_selector: suggestions\n      incremental:\n        cursor_path: x\n        range_strat: open",
    ));
    assert_eq!(key, "resources[1].endpoint.incremental.range_strat");
    assert_eq!(suggestion.as_deref(), Some("range_start"));
}

#[test]
fn windows_take_placeholders_in_headers_and_are_refused_on_child_resources() {
    let windowed = |request: &str| {
        SEED_YAML.replace(
            "      data_selector: suggestions",
            &format!(
                "      data_selector: suggestions\n{request}      incremental:\n        cursor_path: updated_at\n        initial_value: \"2024-01-01T00:00:00Z\"\n        window: P1D"
            ),
        )
    };
    // the window's ends sent in headers, as the first request fills them
    let c = load(
        &windowed("      headers:\n        X-From: \"{incremental.start_value}\"\n        X-To: \"{incremental.end_value}\"\n"),
        Format::Yaml,
    )
    .unwrap();
    assert_eq!(
        c.api.resources[1].endpoint.incremental.as_ref().unwrap().window,
        Some(std::time::Duration::from_secs(86_400))
    );
    // a child's requests come from its parent's records: no range of its own to split
    let (key, message, _) = invalid(&windowed(
        "      params:\n        forum: \"{resources.forums.id}\"\n        since: \"{incremental.start_value}\"\n        until: \"{incremental.end_value}\"\n",
    ));
    assert_eq!(key, "resources[1].endpoint.incremental.window");
    assert!(message.contains("parent `forums`"), "{message}");
}

#[test]
fn incremental_example_loads() {
    let root = manifest_dir().join("../../examples");
    let c = load_file(&root.join("analytics-api-incremental.yaml"), &Overrides::default(), &sources()).unwrap();
    for r in &c.api.resources {
        assert_eq!(r.endpoint.incremental.as_ref().unwrap().cursor_path, "updated_at", "{}", r.name);
        assert_eq!(r.endpoint.params["sort"], "updated_at");
        assert!(r.endpoint.paginator.is_some());
    }
}

/// The crate's directory as `cargo test` reports it when the test runs: the build directory is
/// shared between clones, so the compile-time value can name another clone.
fn manifest_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()))
}

#[test]
fn column_hints_keep_their_order_in_every_format() {
    let yaml = "client: {base_url: \"http://x\"}\nresources:\n  - name: a\n    columns: {zeta: {data_type: text}, alpha: {data_type: bigint}}\n";
    let toml = "[client]\nbase_url = \"http://x\"\n[[resources]]\nname = \"a\"\n[resources.columns.zeta]\ndata_type = \"text\"\n[resources.columns.alpha]\ndata_type = \"bigint\"\n";
    let json = r#"{"client": {"base_url": "http://x"}, "resources": [{"name": "a", "columns": {"zeta": {"data_type": "text"}, "alpha": {"data_type": "bigint"}}}]}"#;
    for (text, format) in [(yaml, Format::Yaml), (toml, Format::Toml), (json, Format::Json)] {
        let c = load(text, format).unwrap();
        let names: Vec<&str> = c.api.resources[0].columns.as_ref().unwrap().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha"], "{format:?}");
    }
}

#[test]
fn merge_strategies_and_their_hints_are_parsed_once() {
    use crate::model::{MergeStrategy, SortOrder};
    let base = "client:\n  base_url: http://x\nresource_defaults:\n  primary_key: id\nresources:\n  - name: a\n    endpoint: v1/a\n";
    let with = |extra: &str| format!("{base}{extra}");
    let c = load(&with("    write_disposition: {disposition: merge, strategy: upsert}\n"), Format::Yaml).unwrap();
    assert_eq!(c.api.resources[0].merge.strategy, MergeStrategy::Upsert);
    let c = load(&with("    write_disposition: merge\n"), Format::Yaml).unwrap();
    assert_eq!(c.api.resources[0].merge.strategy, MergeStrategy::DeleteInsert);
    let scd2 = "    write_disposition:\n      disposition: merge\n      strategy: scd2\n      validity_column_names: [Valid From, valid_to]\n      active_record_timestamp: '9999-12-31'\n      boundary_timestamp: '2024-01-01T10:00:00+02:00'\n      row_version_column_name: Row Hash\n";
    let c = load(&with(scd2), Format::Yaml).unwrap();
    let MergeStrategy::Scd2(s) = &c.api.resources[0].merge.strategy else { panic!("scd2") };
    assert_eq!((s.valid_from.as_str(), s.valid_to.as_str()), ("valid_from", "valid_to"));
    assert_eq!(s.active_record_timestamp, Some(253_402_214_400_000_000));
    assert_eq!(s.boundary_timestamp, Some(1_704_096_000_000_000));
    assert_eq!(s.row_version_column.as_deref(), Some("row_hash"));
    // hints: merge key from the resource and the columns, one hard_delete, one dedup_sort
    let hints = "    write_disposition: merge\n    merge_key: Forum Id\n    columns:\n      region: {merge_key: true}\n      deleted: {hard_delete: true}\n      updatedAt: {dedup_sort: asc}\n";
    let m = load(&with(hints), Format::Yaml).unwrap().api.resources[0].merge.clone();
    assert_eq!(m.merge_key, vec!["forum_id", "region"]);
    assert_eq!(m.hard_delete.as_deref(), Some("deleted"));
    assert_eq!(m.dedup_sort, Some(("updated_at".to_string(), SortOrder::Asc)));

    // what is refused, and where
    let (key, message, suggestion) = invalid(&with("    write_disposition: {disposition: merge, strategy: upsrt}\n"));
    assert_eq!(key, "resources[0].write_disposition.strategy");
    assert!(message.contains("unknown merge strategy `upsrt`"), "{message}");
    assert_eq!(suggestion.as_deref(), Some("upsert"));
    let (_, message, _) = invalid(&with("    write_disposition: {disposition: merge, strategy: cdc}\n"));
    assert!(message.contains("not supported by resttap yet"), "{message}");
    let (key, message, _) = invalid(&with(
        "    write_disposition: {disposition: merge, strategy: upsert, validity_column_names: [a, b]}\n",
    ));
    assert_eq!(key, "resources[0].write_disposition.validity_column_names");
    assert!(message.contains("option of strategy `scd2`"), "{message}");
    let (key, _, _) = invalid(&with("    write_disposition: {disposition: append, strategy: scd2}\n"));
    assert_eq!(key, "resources[0].write_disposition");
    let (key, _, _) =
        invalid(&with("    write_disposition: {disposition: merge, strategy: scd2, validity_column_names: [a]}\n"));
    assert_eq!(key, "resources[0].write_disposition.validity_column_names");
    let (key, _, _) =
        invalid(&with("    write_disposition: {disposition: merge, strategy: scd2, boundary_timestamp: yesterday}\n"));
    assert_eq!(key, "resources[0].write_disposition.boundary_timestamp");
    let (key, message, _) = invalid(&with(
        "    write_disposition: merge\n    columns:\n      a: {hard_delete: true}\n      b: {hard_delete: true}\n",
    ));
    assert_eq!(key, "resources[0].columns");
    assert!(message.contains("`a` and `b`"), "{message}");
    let no_key = "client:\n  base_url: http://x\nresources:\n  - name: a\n    endpoint: v1/a\n    write_disposition: {disposition: merge, strategy: insert-only}\n";
    let (key, message, _) = invalid(no_key);
    assert_eq!(key, "resources[0].primary_key");
    assert!(message.contains("needs a primary key"), "{message}");
    let (_, message, _) = invalid(&with(
        "    write_disposition: {disposition: merge, strategy: delete-insert, source_filter: 'x > 1'}\n",
    ));
    assert!(message.contains("not supported by resttap yet"), "{message}");
}

#[test]
fn schema_contracts_are_parsed_once() {
    use crate::model::{ContractMode, SchemaContract};
    let base = "client:\n  base_url: http://x\nresource_defaults:\n  schema_contract: {columns: discard_row}\nresources:\n  - name: a\n    endpoint: v1/a\n";
    let c = load(base, Format::Yaml).unwrap();
    let want = SchemaContract { columns: ContractMode::DiscardRow, ..SchemaContract::default() };
    assert_eq!(c.api.resources[0].contract, Some(want));
    // a resource's contract replaces the default's whole, as in dlt
    let c = load(&format!("{base}    schema_contract: {{tables: freeze}}\n"), Format::Yaml).unwrap();
    assert_eq!(
        c.api.resources[0].contract,
        Some(SchemaContract { tables: ContractMode::Freeze, ..SchemaContract::default() })
    );
    let c = load(&format!("{base}    schema_contract: freeze\n"), Format::Yaml).unwrap();
    assert_eq!(c.api.resources[0].contract, Some(SchemaContract::all(ContractMode::Freeze)));
    let (key, message, suggestion) = invalid(&format!("{base}    schema_contract: {{columns: frezee}}\n"));
    assert_eq!(key, "resources[0].schema_contract.columns");
    assert!(message.contains("evolve, freeze, discard_row, discard_value"), "{message}");
    assert_eq!(suggestion.as_deref(), Some("freeze"));
    let (key, _, suggestion) = invalid(&format!("{base}    schema_contract: {{column: freeze}}\n"));
    assert_eq!((key.as_str(), suggestion.as_deref()), ("resources[0].schema_contract.column", Some("columns")));
    let (key, _, _) = invalid(&format!("{base}    schema_contract: [freeze]\n"));
    assert_eq!(key, "resources[0].schema_contract");
}

#[test]
fn hint_types_with_precision_and_nested_hints_are_typed_once() {
    let base = "client:\n  base_url: http://x\nresources:\n  - name: a\n    endpoint: /a\n";
    let ok = format!(
        "{base}    columns:\n      amount: {{data_type: decimal, precision: 10, scale: 2}}\n      fee: {{data_type: decimal}}\n      wei: {{data_type: wei}}\n      raw: {{data_type: binary}}\n      at: {{data_type: time}}\n      short: {{data_type: decimal, precision: 5}}\n    nested_hints:\n      lines:\n        columns:\n          qty: {{data_type: bigint}}\n          price: {{data_type: decimal, precision: 6, scale: 2}}\n"
    );
    // `short`'s scale defaults to 9, more than its precision: refused, naming the default
    let (key, message, _) = invalid(&ok);
    assert_eq!(key, "resources[0].columns.short.scale");
    assert!(message.contains("the default scale"), "{message}");
    let ok = ok.replace("precision: 5}", "precision: 12}");
    let c = load(&ok, Format::Yaml).unwrap();
    let r = &c.api.resources[0];
    let typed: Vec<Option<DataType>> = r.columns.iter().flatten().map(|(_, h)| h.typed).collect();
    let p = |precision, scale| DataType::Decimal(Precision { precision, scale });
    assert_eq!(
        typed,
        [
            Some(p(Some(10), Some(2))),
            Some(p(None, None)),
            Some(DataType::Wei),
            Some(DataType::Binary),
            Some(DataType::Time),
            Some(p(Some(12), None))
        ]
    );
    let (path, nested) = &r.nested_hints.as_ref().unwrap()[0];
    assert_eq!(path, "lines");
    let nested: Vec<(&str, Option<DataType>)> =
        nested.columns.iter().flatten().map(|(n, h)| (n.as_str(), h.typed)).collect();
    assert_eq!(nested, [("qty", Some(DataType::Bigint)), ("price", Some(p(Some(6), Some(2))))]);

    let cases = [
        ("scale: 2}", "scale: 11}", "resources[0].columns.amount.scale", "more than the precision 10"),
        ("precision: 10,", "precision: 0,", "resources[0].columns.amount.precision", "from 1 to 1000"),
        ("{data_type: binary}", "{data_type: binary, precision: 3}", "resources[0].columns.raw", "for `decimal` only"),
        ("{data_type: time}", "{scale: 3}", "resources[0].columns.at", "need a `data_type: decimal`"),
        (
            "qty: {data_type: bigint}",
            "qty: {data_type: bigint, primary_key: true}",
            "resources[0].nested_hints.lines.columns.qty.primary_key",
            "keyed by `_dlt_id`",
        ),
        (
            "        columns:\n          qty",
            "        primary_key: qty\n        columns:\n          qty",
            "resources[0].nested_hints.lines.primary_key",
            "not supported by resttap yet",
        ),
        ("      lines:\n", "      lines__tags:\n", "resources[0].nested_hints.lines__tags", "one name"),
        (
            "qty: {data_type: bigint}",
            "qty: {name: quantity, data_type: bigint}",
            "resources[0].nested_hints.lines.columns.qty.name",
            "the column's key is `qty`",
        ),
    ];
    for (from, to, want_key, says) in cases {
        let (key, message, _) = invalid(&ok.replace(from, to));
        assert_eq!(key, want_key, "{to}");
        assert!(message.contains(says), "{to}: {message}");
    }
    let (key, message, suggestion) = invalid(&ok.replace("data_type: wei", "data_type: decimals"));
    assert_eq!((key.as_str(), suggestion.as_deref()), ("resources[0].columns.wei.data_type", Some("decimal")));
    assert!(message.contains("unknown data type"), "{message}");
}
