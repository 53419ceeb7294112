//! `run --checkpoint-every`: backfills that commit part-way and resume after their last
//! checkpoint (the contract scenario in `contract.rs` runs a killed one on every destination).
//! Here, on DuckDB: a windowed range with `end_value`, a run that fails after checkpoints,
//! checkpoints by time, and the resources refused.

mod common;

use common::*;

/// Suggestions by ascending `updated_at`, one day a window, to `end_value`: dlt keeps no
/// position for a range with an end, so the checkpoint's is resttap's own.
fn windowed(mock: &Mock) -> String {
    format!(
        r#"
client:
  base_url: {url}
  auth: {{type: bearer, token: "{{secrets.api_key}}"}}
resources:
  - name: suggestions
    primary_key: id
    write_disposition: merge
    endpoint:
      path: /v1/suggestions
      data_selector: suggestions
      params: {{sort: updated_at, limit: 20}}
      paginator: {{type: cursor, cursor_path: pagination.cursor, cursor_param: cursor}}
      incremental:
        cursor_path: updated_at
        initial_value: "2024-01-01T00:00:00Z"
        end_value: "2024-01-08T00:00:00Z"
        start_param: updated_after
        end_param: updated_before
        window: PT12H
"#,
        url = mock.url
    )
}

/// `last` (as the API wrote it, in any offset) is the newest `updated_at` loaded.
fn assert_newest(c: &duckdb::Connection, last: &str) {
    let sql = format!(
        "SELECT (count(*) FILTER (WHERE updated_at = TIMESTAMPTZ '{last}') > 0)::INT * 10 + count(*) FILTER (WHERE updated_at > TIMESTAMPTZ '{last}') FROM t_dataset.suggestions"
    );
    assert_eq!(count(c, &sql), 10, "{last} is not the newest updated_at loaded");
}

/// The stored state as JSON.
fn state(s: &Scratch) -> serde_json::Value {
    let out = std::process::Command::new(bin())
        .args(["state", "--pipeline", "t", "--destination"])
        .arg(format!("duckdb:{}", s.db().display()))
        .output()
        .unwrap();
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_killed_windowed_backfill_resumes_at_its_checkpoint_and_forgets_it_at_the_end() {
    let mock = Mock::start(&["--records", "600"]);
    let s = Scratch::new();
    let cfg = s.write("c.yaml", &windowed(&mock));
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("run")
        .arg(&cfg)
        .args(["--pipeline", "t", "--checkpoint-every", "100", "--destination"])
        .arg(format!("duckdb:{}", s.db().display()))
        .env("API_KEY", TOKEN)
        .env("RESTTAP_CRASH_AT", "after_checkpoint")
        .current_dir(s.dir.path());
    assert!(!cmd.output().unwrap().status.success(), "killed after the first checkpoint");
    let c = open(&s.db());
    let kept = count(&c, "SELECT count(*) FROM t_dataset.suggestions");
    assert!(kept >= 100, "the first checkpoint holds at least 100 records: {kept}");
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset._dlt_loads"), 1);
    // the backfill's progress: the greatest updated_at committed, for this range
    let progress =
        state(&s)["sources"]["rest_api"]["resources"]["suggestions"]["resttap_backfill"]["updated_at"].clone();
    assert_eq!(progress["end_value"], "2024-01-08T00:00:00Z", "{progress}");
    assert_newest(&c, progress["last_value"].as_str().unwrap());
    drop(c);

    let before = mock.requests();
    let out = run(&cfg, &mock, &s.db(), TOKEN, &["--checkpoint-every", "100"]);
    assert_ok(&out);
    let resumed = mock.requests() - before;
    let c = open(&s.db());
    let all = count(&c, "SELECT count(*) FROM t_dataset.suggestions");
    assert_eq!(count(&c, "SELECT count(DISTINCT id) FROM t_dataset.suggestions"), all, "each record once");
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM t_dataset.suggestions__categories WHERE _dlt_parent_id NOT IN (SELECT _dlt_id FROM t_dataset.suggestions)"
        ),
        0
    );
    // each load's rows carry its own load id, and every load id is a committed load
    assert_eq!(
        count(&c, "SELECT count(DISTINCT _dlt_load_id) FROM t_dataset.suggestions"),
        count(&c, "SELECT count(*) FROM t_dataset._dlt_loads")
    );
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM t_dataset.suggestions WHERE _dlt_load_id NOT IN (SELECT load_id FROM t_dataset._dlt_loads WHERE status = 0)"
        ),
        0
    );
    drop(c);
    // the range is done: its progress is gone, and no incremental position was stored
    let st = state(&s);
    assert!(st.pointer("/sources/rest_api/resources/suggestions/resttap_backfill").is_none(), "{st}");
    assert!(st.pointer("/sources/rest_api/resources/suggestions/incremental").is_none(), "{st}");

    // one load of the whole range, elsewhere: the same records, with more requests
    let whole = Scratch::new();
    let before = mock.requests();
    assert_ok(&run(&cfg, &mock, &whole.db(), TOKEN, &[]));
    assert!(mock.requests() - before > resumed, "the resumed run skipped the committed windows");
    assert_eq!(fingerprint(&open(&s.db()), "suggestions"), fingerprint(&open(&whole.db()), "suggestions"));
    assert_eq!(count(&open(&whole.db()), "SELECT count(*) FROM t_dataset._dlt_loads"), 1);
}

#[test]
fn a_run_that_fails_after_checkpoints_keeps_them_and_says_how_to_resume() {
    // every 9th request fails with 500, and the config allows no retry
    let mock = Mock::start(&["--records", "400", "--fail-every", "9", "--fault-statuses", "500"]);
    let s = Scratch::new();
    let yaml = windowed(&mock)
        .replace("  auth:", "  retry: {max_retries: 0}\n  auth:")
        .replace("        end_value: \"2024-01-08T00:00:00Z\"\n", "")
        .replace("        window: PT12H\n", "        row_order: asc\n");
    let cfg = s.write("c.yaml", &yaml);
    let out = run(&cfg, &mock, &s.db(), TOKEN, &["--checkpoint-every", "40"]);
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert!(stderr.contains("500"), "{stderr}");
    assert!(
        stderr.contains("checkpoint(s) were committed before the failure") && stderr.contains("run again to resume"),
        "{stderr}"
    );
    let kept = count(&open(&s.db()), "SELECT count(*) FROM t_dataset.suggestions");
    assert!(kept >= 40, "{kept}");
    let st = state(&s);
    let last = st.pointer("/sources/rest_api/resources/suggestions/incremental/updated_at/last_value").cloned();
    assert!(last.is_some(), "{st}");

    mock.set_faults("{}");
    let out = run(&cfg, &mock, &s.db(), TOKEN, &["--checkpoint-every", "40"]);
    assert_ok(&out);
    let c = open(&s.db());
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.suggestions"), 400);
    assert_eq!(count(&c, "SELECT count(DISTINCT id) FROM t_dataset.suggestions"), 400);
    // the incremental position is dlt's: the newest record
    let st = state(&s);
    let last = st.pointer("/sources/rest_api/resources/suggestions/incremental/updated_at/last_value").unwrap();
    assert_newest(&c, last.as_str().unwrap());
}

#[test]
fn checkpoints_by_time_commit_while_the_run_goes_on() {
    let mock = Mock::start(&["--records", "300", "--slow-ms", "40"]);
    let s = Scratch::new();
    let cfg = s.write("c.yaml", &windowed(&mock).replace("window: PT12H", "window: PT6H"));
    let out = run(&cfg, &mock, &s.db(), TOKEN, &["--checkpoint-every", "300ms", "--page-concurrency", "1"]);
    assert_ok(&out);
    let (stdout, _) = text(&out);
    let c = open(&s.db());
    let loads = count(&c, "SELECT count(*) FROM t_dataset._dlt_loads");
    // about 30 windows of at least 40 ms each, one at a time: over a second in all
    assert!(loads >= 3, "{loads} loads\n{stdout}");
    assert!(stdout.contains(&format!("checkpoints: {} load(s) committed along the way", loads - 1)), "{stdout}");
    let rows = count(&c, "SELECT count(*) FROM t_dataset.suggestions");
    let total: i64 = stdout
        .lines()
        .find(|l| l.starts_with("suggestions "))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert_eq!(total, rows, "the summary counts the rows of every load\n{stdout}");
}

#[test]
fn resources_whose_checkpoints_could_not_resume_are_refused_all_at_once_before_any_request() {
    let mock = Mock::start(&["--records", "10"]);
    let s = Scratch::new();
    let cfg = s.write(
        "c.yaml",
        &format!(
            r#"
client:
  base_url: {url}
  auth: {{type: bearer, token: "{{secrets.api_key}}"}}
resource_defaults:
  primary_key: id
  endpoint:
    paginator: {{type: cursor, cursor_path: pagination.cursor, cursor_param: cursor}}
resources:
  - name: forums
    write_disposition: replace
    endpoint:
      path: /v1/forums
      data_selector: forums
      incremental: {{cursor_path: updated_at, initial_value: "2024-01-01T00:00:00Z", row_order: asc}}
  - name: features
    endpoint:
      path: /v1/features
      data_selector: features
  - name: suggestions
    write_disposition: append
    endpoint:
      path: /v1/suggestions
      data_selector: suggestions
      incremental: {{cursor_path: updated_at, initial_value: "2024-01-01T00:00:00Z"}}
  - name: feedback_records
    write_disposition: {{disposition: merge, strategy: scd2}}
    endpoint:
      path: /v1/feedback_records
      data_selector: feedback_records
      incremental: {{cursor_path: updated_at, initial_value: "2024-01-01T00:00:00Z", row_order: asc}}
  - name: external_users
    write_disposition: merge
    merge_key: external_account_id
    endpoint:
      path: /v1/external_users
      data_selector: external_users
      incremental: {{cursor_path: updated_at, initial_value: "2024-01-01T00:00:00Z", row_order: asc}}
  - name: external_accounts
    endpoint:
      path: /v1/external_accounts
      data_selector: external_accounts
  - name: account_users
    endpoint:
      path: /v1/external_accounts/{{resources.external_accounts.id}}/users
      data_selector: external_users
"#,
            url = mock.url
        ),
    );
    let out = run(&cfg, &mock, &s.db(), TOKEN, &["--checkpoint-every", "1000"]);
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    for says in [
        "resource `forums`: `write_disposition: replace`",
        "resource `features`: has no `endpoint.incremental`",
        "resource `suggestions`: resttap can resume only where",
        "`incremental.row_order: asc`",
        "resource `feedback_records`: merge strategy scd2",
        "resource `external_users`: `merge_key`",
        "resource `external_accounts`: child resources",
        "resource `account_users`: child resources",
        "without --checkpoint-every (run --resources",
        "nothing was committed",
    ] {
        assert!(stderr.contains(says), "{says:?} not in:\n{stderr}");
    }
    assert_eq!(mock.requests(), 0, "refused before any request");
    // the same resources load without --checkpoint-every (the refusal is the flag's alone)
    let out = run(&cfg, &mock, &s.db(), TOKEN, &["--resources", "features,suggestions"]);
    assert_ok(&out);
}
