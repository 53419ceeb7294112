//! End-to-end tests: the real binary, the seed configuration, the mock API, a DuckDB file.

mod common;

use common::*;

const RECORDS: u64 = 250;

const TABLES: [&str; 6] =
    ["forums", "external_accounts", "external_users", "features", "feedback_records", "suggestions"];

#[test]
fn seed_config_loads_every_resource_with_dlt_tables_and_types() {
    let mock = Mock::start(&["--records", &RECORDS.to_string()]);
    let s = Scratch::new();
    let out = run(&seed_config(), &mock, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("load id "), "{stdout}");
    let c = open(&s.db());
    for t in TABLES {
        let want = resttap_mock::data::record_count(t, RECORDS, 0, 2) as i64;
        assert_eq!(count(&c, &format!("SELECT count(*) FROM t_dataset.{t}")), want, "{t}");
        assert_eq!(count(&c, &format!("SELECT count(DISTINCT id) FROM t_dataset.{t}")), want, "{t}");
        assert!(stdout.contains(&format!("\n{t} ")) || stdout.starts_with(t), "summary lists {t}: {stdout}");
    }
    for (table, resource, field) in [
        ("forums__tags", "forums", "tags"),
        ("external_accounts__domains", "external_accounts", "domains"),
        ("external_users__roles", "external_users", "roles"),
        ("features__linked_suggestion_ids", "features", "linked_suggestion_ids"),
        ("feedback_records__labels", "feedback_records", "labels"),
        ("suggestions__categories", "suggestions", "categories"),
    ] {
        assert_eq!(
            count(&c, &format!("SELECT count(*) FROM t_dataset.{table}")),
            list_rows(resource, RECORDS, 0, 2, field),
            "{table}"
        );
    }
    // nested rows point at their parent and root
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM t_dataset.forums__tags t LEFT JOIN t_dataset.forums f ON t._dlt_parent_id = f._dlt_id WHERE f._dlt_id IS NULL OR t._dlt_root_id <> f._dlt_id"
        ),
        0
    );
    let ty = |t: &str, col: &str| -> (String, String) {
        c.query_row(
            "SELECT data_type, is_nullable FROM information_schema.columns WHERE table_schema='t_dataset' AND table_name=? AND column_name=?",
            [t, col],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or_else(|e| panic!("{t}.{col}: {e}"))
    };
    assert_eq!(ty("forums", "id"), ("BIGINT".into(), "NO".into()));
    assert_eq!(ty("forums", "updated_at").0, "TIMESTAMP WITH TIME ZONE");
    assert_eq!(ty("forums", "settings__moderation__level").0, "BIGINT");
    assert_eq!(ty("external_accounts", "mrr").0, "DOUBLE");
    assert_eq!(ty("external_accounts", "external_id").0, "VARCHAR");
    assert_eq!(ty("suggestions", "is_public").0, "BOOLEAN");
    assert_eq!(ty("forums__tags", "_dlt_list_idx"), ("BIGINT".into(), "NO".into()));
    assert_eq!(ty("forums__tags", "_dlt_root_id"), ("VARCHAR".into(), "NO".into()));
    // a field that is always null creates no column
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM information_schema.columns WHERE table_name='forums' AND column_name='archived_at'"
        ),
        0
    );
    // the same instant whatever offset the API wrote
    let first = resttap_mock::data::record("forums", 1, 0);
    let iso = first["updated_at"].as_str().unwrap();
    assert_eq!(
        count(&c, &format!("SELECT count(*) FROM t_dataset.forums WHERE id = 1 AND updated_at = '{iso}'::TIMESTAMPTZ")),
        1
    );
    // unicode survives
    let body = resttap_mock::data::record("feedback_records", 5, 0)["body"].as_str().unwrap().to_string();
    let got: String =
        c.query_row("SELECT body FROM t_dataset.feedback_records WHERE id = 5", [], |r| r.get(0)).unwrap();
    assert_eq!(got, body);
    // one load recorded, as dlt records it
    let (status, schema): (i64, String) = c
        .query_row("SELECT status, schema_name FROM t_dataset._dlt_loads", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((status, schema.as_str()), (0, "rest_api"));
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM t_dataset.forums WHERE _dlt_load_id = (SELECT load_id FROM t_dataset._dlt_loads)"
        ),
        25
    );
}

#[test]
fn a_second_run_of_the_same_data_records_no_new_schema_version() {
    let mock = Mock::start(&["--records", "300"]);
    let s = Scratch::new();
    assert_ok(&run(&seed_config(), &mock, &s.db(), TOKEN, &[]));
    assert_ok(&run(&seed_config(), &mock, &s.db(), TOKEN, &[]));
    let c = open(&s.db());
    // dlt adds a _dlt_version row when the schema changes, and it did not
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset._dlt_version"), 1);
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset._dlt_loads"), 2);
    assert_eq!(count(&c, "SELECT count(DISTINCT schema_version_hash) FROM t_dataset._dlt_loads"), 1);
    // the stored schema is dlt's (engine 11) and knows the key; its hash is dlt's
    let (schema, hash): (String, String) = c
        .query_row("SELECT schema, version_hash FROM t_dataset._dlt_version", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
    assert_eq!((schema["engine_version"].as_i64(), schema["version_hash"].as_str()), (Some(11), Some(hash.as_str())));
    let id = &schema["tables"]["forums"]["columns"]["id"];
    assert_eq!((id["primary_key"].as_bool(), id["data_type"].as_str()), (Some(true), Some("bigint")), "{id}");
    assert_eq!(schema["tables"]["forums__tags"]["parent"], "forums");
    assert_eq!(schema["tables"]["forums"]["write_disposition"], "merge");
}

#[test]
fn merge_runs_one_over_another_fit_the_commits_memory() {
    // N=100,000 of the seed: 500,000 rows in 12 tables. The second merge run over the same
    // dataset needs more DuckDB memory than the first (measured: under 32 MB the first passes
    // and the second fails), so this guards how a deleting commit's limit is sized.
    let records = 100_000;
    let mock = Mock::start(&["--records", &records.to_string(), "--prerender"]);
    let s = Scratch::new();
    for _ in 0..3 {
        assert_ok(&run(&seed_config(), &mock, &s.db(), TOKEN, &[]));
    }
    let c = open(&s.db());
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset._dlt_loads"), 3);
    for t in TABLES {
        let want = resttap_mock::data::record_count(t, records, 0, 2) as i64;
        assert_eq!(count(&c, &format!("SELECT count(*) FROM t_dataset.{t}")), want, "{t}");
        assert_eq!(count(&c, &format!("SELECT count(DISTINCT id) FROM t_dataset.{t}")), want, "{t}");
    }
    // every nested row belongs to a root row of the last load
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM t_dataset.suggestions__categories n LEFT JOIN t_dataset.suggestions r \
             ON n._dlt_root_id = r._dlt_id WHERE r._dlt_id IS NULL"
        ),
        0
    );
    assert_eq!(
        count(&c, "SELECT count(*) FROM t_dataset.feedback_records__labels"),
        list_rows("feedback_records", records, 0, 2, "labels")
    );
}

#[test]
fn second_run_after_changes_merges_without_duplicates() {
    let mock = Mock::start(&["--records", &RECORDS.to_string()]);
    let s = Scratch::new();
    assert_ok(&run(&seed_config(), &mock, &s.db(), TOKEN, &[]));
    mock.set_revision(2);
    let out = run(&seed_config(), &mock, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    let c = open(&s.db());
    for t in TABLES {
        let want = resttap_mock::data::record_count(t, RECORDS, 2, 2) as i64;
        assert_eq!(count(&c, &format!("SELECT count(*) FROM t_dataset.{t}")), want, "{t}");
        assert_eq!(count(&c, &format!("SELECT count(DISTINCT id) FROM t_dataset.{t}")), want, "{t}");
    }
    // changed records hold the new values
    let changed = (1..=20).find(|id| resttap_mock::data::changed_in(*id, 2)).unwrap();
    let want = resttap_mock::data::record("suggestions", changed, 2)["title"].as_str().unwrap().to_string();
    let got: String = c
        .query_row(&format!("SELECT title FROM t_dataset.suggestions WHERE id = {changed}"), [], |r| r.get(0))
        .unwrap();
    assert_eq!(got, want);
    // nested rows of changed records were replaced, not added to
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.forums__tags"), list_rows("forums", RECORDS, 2, 2, "tags"));
    assert_eq!(
        count(&c, "SELECT count(*) FROM t_dataset.feedback_records__labels"),
        list_rows("feedback_records", RECORDS, 2, 2, "labels")
    );
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM t_dataset.forums__tags t LEFT JOIN t_dataset.forums f ON t._dlt_root_id = f._dlt_id WHERE f._dlt_id IS NULL"
        ),
        0
    );
    // a value that no longer fits its column went to a variant column
    let v: String = c
        .query_row("SELECT employee_count__v_text FROM t_dataset.external_accounts WHERE id = 3", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, "1k+");
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset._dlt_loads"), 2);
    // the same data as one clean run at revision 2
    let fresh = Scratch::new();
    assert_ok(&run(&seed_config(), &mock, &fresh.db(), TOKEN, &[]));
    let f = open(&fresh.db());
    for t in TABLES.iter().chain(["forums__tags", "suggestions__categories"].iter()) {
        assert_eq!(fingerprint(&c, t), fingerprint(&f, t), "{t}");
    }
}

#[test]
fn injected_429_and_5xx_are_retried_and_the_data_is_the_same() {
    let mock = Mock::start(&["--records", "1000", "--fail-every", "3"]);
    let s = Scratch::new();
    let config = s.seed_with_client("  retry:\n    backoff_factor: 0.02\n");
    let out = run(&config, &mock, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    let stats = mock.stats();
    assert!(stats["faults"].as_u64().unwrap() >= 6, "{stats}");
    let (stdout, _) = text(&out);
    assert!(stdout.contains(&format!("({} retries)", stats["faults"])), "{stdout}");
    mock.set_faults("{}");
    let clean = Scratch::new();
    assert_ok(&run(&config, &mock, &clean.db(), TOKEN, &[]));
    let (a, b) = (open(&s.db()), open(&clean.db()));
    for t in TABLES {
        assert_eq!(fingerprint(&a, t), fingerprint(&b, t), "{t}");
    }
}

#[test]
fn wrong_token_fails_naming_401_and_url_and_leaves_destination_as_it_was() {
    let mock = Mock::start(&["--records", "100"]);
    let s = Scratch::new();
    assert_ok(&run(&seed_config(), &mock, &s.db(), TOKEN, &[]));
    let before = fingerprint(&open(&s.db()), "suggestions");
    let out = run(&seed_config(), &mock, &s.db(), "wrong-token-value", &[]);
    assert!(!out.status.success());
    let (stdout, stderr) = text(&out);
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(stderr.contains(&format!("{}/v1/", mock.url)), "{stderr}");
    assert!(stderr.contains("missing or invalid credentials"), "body excerpt: {stderr}");
    assert!(stderr.contains("nothing was committed"), "{stderr}");
    assert!(!stderr.contains("wrong-token-value") && !stdout.contains("wrong-token-value"), "{stderr}");
    let c = open(&s.db());
    assert_eq!(fingerprint(&c, "suggestions"), before);
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset._dlt_loads"), 1);
    assert_eq!(
        count(&c, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 't_dataset_staging'"),
        0
    );
}

#[test]
fn errors_that_outlast_retries_fail_with_status_url_and_excerpt() {
    let mock = Mock::start(&["--records", "100"]);
    mock.set_faults(r#"{"always": 503}"#);
    let s = Scratch::new();
    let config = s.seed_with_client("  retry:\n    backoff_factor: 0.01\n");
    let out = run(&config, &mock, &s.db(), TOKEN, &[]);
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert!(stderr.contains("HTTP 503") && stderr.contains("after 4 attempt(s)"), "{stderr}");
    assert!(stderr.contains("injected fault"), "{stderr}");
    assert!(stderr.contains("resource `"), "{stderr}");
    // nothing was loaded
    let c = duckdb::Connection::open(s.db()).unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 't_dataset'"), 0);
}

#[test]
fn malformed_config_fails_before_any_request() {
    let mock = Mock::start(&[]);
    let s = Scratch::new();
    let text_cfg = std::fs::read_to_string(seed_config()).unwrap().replacen("cursor_path:", "cursor_pth:", 1);
    let bad = s.write("bad.yaml", &text_cfg);
    let out = run(&bad, &mock, &s.db(), TOKEN, &[]);
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("resources[0].endpoint.paginator.cursor_pth"), "{stderr}");
    assert!(stderr.contains("did you mean `cursor_path`?"), "{stderr}");
    let bad_expr =
        s.write("expr.yaml", &std::fs::read_to_string(seed_config()).unwrap().replacen("is not defined", "is not", 1));
    let out = run(&bad_expr, &mock, &s.db(), TOKEN, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("stop_condition") && text(&out).1.contains("column"), "{}", text(&out).1);
    let missing = std::process::Command::new(bin())
        .args(["run", seed_config().to_str().unwrap(), "--base-url", &mock.url, "--destination"])
        .arg(format!("duckdb:{}", s.db().display()))
        .env_remove("API_KEY")
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let (_, stderr) = text(&missing);
    assert!(
        stderr.contains("API_KEY") && stderr.contains(".dlt/secrets.toml") && stderr.contains("client.auth.token"),
        "{stderr}"
    );
    assert_eq!(mock.requests(), 0, "a config error stops resttap before any request");
}

#[test]
fn secrets_toml_is_read_and_secrets_never_leak() {
    let mock = Mock::start(&["--records", "50"]);
    let s = Scratch::new();
    std::fs::create_dir_all(s.path(".dlt")).unwrap();
    std::fs::write(s.path(".dlt/secrets.toml"), format!("api_key = \"{TOKEN}\"\n")).unwrap();
    let out = std::process::Command::new(bin())
        .args(["run", seed_config().to_str().unwrap(), "--base-url", &mock.url, "--pipeline", "t", "--destination"])
        .arg(format!("duckdb:{}", s.db().display()))
        .env_remove("API_KEY")
        .env("RESTTAP_LOG", "debug")
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert_ok(&out);
    let (stdout, stderr) = text(&out);
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN), "token printed:\n{stderr}");
    let bytes = std::fs::read(s.db()).unwrap();
    assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()), "token stored in the database");
}

#[test]
fn schema_command_prints_tables_columns_types() {
    let mock = Mock::start(&["--records", "120"]);
    let s = Scratch::new();
    assert_ok(&run(&seed_config(), &mock, &s.db(), TOKEN, &[]));
    let out = std::process::Command::new(bin())
        .args(["schema", "--pipeline", "t", "--json", "--destination"])
        .arg(format!("duckdb:{}", s.db().display()))
        .output()
        .unwrap();
    assert_ok(&out);
    let tables: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shape: Vec<String> = tables
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t["name"].as_str().unwrap().starts_with("_dlt_"))
        .flat_map(|t| {
            let name = t["name"].as_str().unwrap().to_string();
            t["columns"].as_array().unwrap().iter().map(move |c| {
                format!(
                    "{name}.{} {}{}",
                    c["name"].as_str().unwrap(),
                    c["data_type"].as_str().unwrap(),
                    if c["nullable"].as_bool().unwrap() { "" } else { " NOT NULL" }
                )
            })
        })
        .collect();
    insta::assert_snapshot!("seed_schema", shape.join("\n"));
    let plain = std::process::Command::new(bin())
        .args(["schema", "--pipeline", "t", "--destination"])
        .arg(format!("duckdb:{}", s.db().display()))
        .output()
        .unwrap();
    assert_ok(&plain);
    let (table, _) = text(&plain);
    assert!(
        table.contains("forums (12 rows)") && table.contains("TIMESTAMP WITH TIME ZONE") && table.contains("NOT NULL"),
        "{table}"
    );
}

#[test]
fn demo_runs_end_to_end() {
    let s = Scratch::new();
    let out = std::process::Command::new(bin())
        .args(["demo", "--records", "200", "--output"])
        .arg(s.path("demo.duckdb"))
        .output()
        .unwrap();
    assert_ok(&out);
    let (_, stderr) = text(&out);
    // the next command to look at the data, which works as printed
    let hint = format!("resttap info --pipeline demo --destination duckdb:{}", s.path("demo.duckdb").display());
    assert!(stderr.contains(&hint) && stderr.contains("SELECT * FROM demo_dataset.suggestions"), "{stderr}");
    let info = std::process::Command::new(bin())
        .args(["info", "--pipeline", "demo", "--destination"])
        .arg(format!("duckdb:{}", s.path("demo.duckdb").display()))
        .output()
        .unwrap();
    assert_ok(&info);
    assert!(text(&info).0.contains("suggestions"), "{}", text(&info).0);
    let schema = std::process::Command::new(bin())
        .args(["schema", "--pipeline", "demo", "--destination"])
        .arg(format!("duckdb:{}", s.path("demo.duckdb").display()))
        .output()
        .unwrap();
    assert_ok(&schema);
    assert!(text(&schema).0.contains("suggestions (200 rows)"));
    let c = open(&s.path("demo.duckdb"));
    assert_eq!(count(&c, "SELECT count(*) FROM demo_dataset.suggestions"), 200);
}

#[test]
fn a_truncated_page_fails_naming_resource_url_and_excerpt_and_commits_nothing() {
    let mock = Mock::start(&["--records", "300"]);
    let s = Scratch::new();
    assert_ok(&run(&seed_config(), &mock, &s.db(), TOKEN, &[]));
    let before = fingerprint(&open(&s.db()), "suggestions");
    mock.set_revision(1);
    mock.set_faults(r#"{"truncate_every": 4}"#);
    let out = run(&seed_config(), &mock, &s.db(), TOKEN, &[]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("is not valid JSON") && stderr.contains("resource `"), "{stderr}");
    assert!(stderr.contains(&format!("{}/v1/", mock.url)) && stderr.contains("it starts with: {"), "{stderr}");
    let c = open(&s.db());
    assert_eq!(fingerprint(&c, "suggestions"), before);
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset._dlt_loads"), 1);
}

#[test]
fn response_actions_ignore_a_missing_endpoint() {
    let mock = Mock::start(&["--records", "50"]);
    let s = Scratch::new();
    let base = std::fs::read_to_string(seed_config()).unwrap();
    let extra = "  - name: archived_things\n    endpoint:\n      path: /v1/archived_things\n";
    let without = s.write("without.yaml", &format!("{base}{extra}"));
    let out = run(&without, &mock, &s.db(), TOKEN, &[]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("HTTP 404"), "{}", text(&out).1);
    let with = s.write(
        "with.yaml",
        &format!("{base}{extra}      response_actions:\n        - status_code: 404\n          action: ignore\n"),
    );
    let out = run(&with, &mock, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    let c = open(&s.db());
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.suggestions"), 50);
    assert_eq!(count(&c, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'archived_things'"), 0);
}

#[test]
fn the_benchmarks_floors_run_against_the_mock_and_a_loaded_dataset() {
    let mock = Mock::start(&["--records", &RECORDS.to_string()]);
    let s = Scratch::new();
    assert_ok(&run(&seed_config(), &mock, &s.db(), TOKEN, &[]));
    let requests = mock.requests();
    // the transfer floor: every page of the six resources, once
    let out = std::process::Command::new(bin())
        .args(["fetch-floor", "--base-url", &mock.url, "--token", TOKEN])
        .output()
        .unwrap();
    assert_ok(&out);
    let pages = mock.requests() - requests;
    assert_eq!(pages, requests, "the floor fetches the pages the run fetched");
    assert!(text(&out).0.starts_with(&format!("fetched {pages} pages, ")), "{}", text(&out).0);
    // the insert floor: every table of the loaded file written into a new one, rows counted
    let c = open(&s.db());
    let tables = count(&c, "SELECT count(*) FROM duckdb_tables()");
    let rows: i64 = c
        .prepare("SELECT schema_name, table_name FROM duckdb_tables()")
        .unwrap()
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|t| t.unwrap())
        .map(|(schema, table)| count(&c, &format!("SELECT count(*) FROM \"{schema}\".\"{table}\"")))
        .sum();
    drop(c);
    let (db, copy) = (s.db(), s.path("floor.duckdb"));
    let args = ["insert-floor", "--from", db.to_str().unwrap(), "--to", copy.to_str().unwrap()];
    let out = std::process::Command::new(bin()).args(args).output().unwrap();
    assert_ok(&out);
    let stdout = text(&out).0;
    assert!(stdout.starts_with(&format!("tables={tables} rows={rows} wall_s=")), "{stdout}");
    assert!(stdout.contains(" cpu_s="), "{stdout}");
    let c = open(&copy);
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.feedback_records"), RECORDS as i64);
    // it writes a new file only
    let out = std::process::Command::new(bin()).args(args).output().unwrap();
    assert!(!out.status.success() && text(&out).1.contains("already exists"), "{:?}", text(&out));
}

#[test]
fn resources_selects_what_is_loaded_and_feeds_children_from_unloaded_parents() {
    let mock = Mock::start(&["--records", "100"]);
    let s = Scratch::new();
    let out = run(&seed_config(), &mock, &s.db(), TOKEN, &["--resources", "forums,suggestions"]);
    assert_ok(&out);
    let c = open(&s.db());
    let tables: Vec<String> = {
        let mut st = c
            .prepare("SELECT table_name FROM information_schema.tables WHERE table_schema = 't_dataset' AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\' ORDER BY 1")
            .unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(tables, ["forums", "forums__tags", "suggestions", "suggestions__categories"]);
    drop(c);
    // a child selected alone: its parent is fetched, not loaded
    let s = Scratch::new();
    let cfg = s.write("pc.yaml", &std::fs::read_to_string(repo_root().join("examples/parent-child.yaml")).unwrap());
    let yaml = std::fs::read_to_string(&cfg).unwrap();
    let child = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
        .nth(1)
        .expect("the example has a child resource")
        .to_string();
    let out = run(&cfg, &mock, &s.db(), TOKEN, &["--resources", &child]);
    assert_ok(&out);
    let c = open(&s.db());
    assert!(count(&c, &format!("SELECT count(*) FROM t_dataset.\"{child}\"")) > 0);
    let first = yaml.lines().filter_map(|l| l.trim().strip_prefix("- name: ")).next().unwrap();
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 't_dataset' AND table_name = '{first}'"
            )
        ),
        0,
        "the parent is not loaded"
    );
    drop(c);
    // an unknown name is a configuration error with the nearest name
    let out = run(&seed_config(), &mock, &s.path("x.duckdb"), TOKEN, &["--resources", "forum"]);
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("--resources: the configuration has no resource `forum`")
            && stderr.contains("did you mean `forums`?"),
        "{stderr}"
    );
}
