//! The operator's command line, run as a user runs it: `check`, every configuration problem at
//! once, progress when stderr is not a terminal, `--log-format json`, `--quiet`, completions.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// `resttap ARGS` in `dir`, with the mock's token as `API_KEY` and resttap's variables cleared.
fn resttap(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .env("API_KEY", TOKEN)
        .env_remove("RESTTAP_LOG")
        .env_remove("DESTINATION__POSTGRES__CREDENTIALS")
        .env_remove("DESTINATION__FILESYSTEM__BUCKET_URL")
        .current_dir(dir)
        .output()
        .unwrap()
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn check_makes_one_request_per_resource_shows_what_a_run_would_make_and_writes_nothing() {
    let mock = Mock::start(&["--records", "100", "--page-size", "5"]);
    let s = Scratch::new();
    let config = s.write("seed.yaml", &std::fs::read_to_string(seed_config()).unwrap());
    let out = resttap(s.dir.path(), &["check", "seed.yaml", "--base-url", &mock.url, "--json"]);
    assert_ok(&out);
    assert_eq!(mock.requests(), 6, "one request per resource");
    assert_eq!(files_in(s.dir.path()), ["seed.yaml"], "check writes nothing");
    let checks: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["forums", "external_accounts", "external_users", "features", "feedback_records", "suggestions"]);
    for c in &checks {
        assert_eq!(c["outcome"], "page", "{c}");
        assert_eq!(c["status"], 200, "{c}");
        assert_eq!(c["paginator"], "cursor", "{c}");
        assert!(c["records"].as_u64().unwrap() > 0, "{c}");
        assert!(c["next_page"].as_str().unwrap().contains("cursor="), "{c}");
        let root = &c["tables"][0];
        assert_eq!(root["name"], c["name"], "{c}");
        // merge on primary key `id`: the key column is created NOT NULL
        let id = root["columns"].as_array().unwrap().iter().find(|col| col["name"] == "id").unwrap();
        assert_eq!((id["data_type"].as_str(), id["nullable"].as_bool()), (Some("bigint"), Some(false)), "{c}");
        for dlt in ["_dlt_load_id", "_dlt_id"] {
            assert!(root["columns"].as_array().unwrap().iter().any(|col| col["name"] == dlt), "{c}");
        }
    }
    // forums' tags are a nested table, as a run makes it
    assert!(checks[0]["tables"].as_array().unwrap().iter().any(|t| t["name"] == "forums__tags"), "{}", checks[0]);
    // the text form names the same things
    let out = resttap(s.dir.path(), &["check", config.to_str().unwrap(), "--base-url", &mock.url]);
    assert_ok(&out);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("forums: HTTP 200, 5 record(s) on the page") && stdout.contains("  table forums__tags"),
        "{stdout}"
    );
    assert!(stdout.contains("6 resource(s) checked, 0 failed; nothing was written"), "{stdout}");
    assert_eq!(files_in(s.dir.path()), ["seed.yaml"]);
}

#[test]
fn check_requests_a_child_for_its_parents_first_record_and_names_detections() {
    let mock = Mock::start(&["--records", "100"]);
    let s = Scratch::new();
    let pc = std::fs::read_to_string(repo_root().join("examples/parent-child.yaml")).unwrap();
    // forum_details has no data selector or paginator of its own in the defaults' place: let
    // one resource detect both
    let pc = pc.replace(
        "  endpoint:\n    paginator: { type: cursor, cursor_param: cursor, cursor_path: pagination.cursor }\n",
        "",
    );
    s.write("pc.yaml", &pc);
    let out = resttap(s.dir.path(), &["check", "pc.yaml", "--base-url", &mock.url, "--json"]);
    assert_ok(&out);
    let checks: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let forums = &checks[0];
    assert_eq!((forums["name"].as_str(), forums["loaded"].as_bool()), (Some("forums"), Some(false)));
    assert_eq!(forums["tables"].as_array().unwrap().len(), 0, "a resource that is not loaded creates no table");
    let child = &checks[1];
    assert_eq!(child["parent"], "forums");
    assert_eq!(child["outcome"], "page", "{child}");
    assert!(child["url"].as_str().unwrap().contains("/v1/forums/1/suggestions"), "{child}");
    let columns = child["tables"][0]["columns"].as_array().unwrap();
    assert!(columns.iter().any(|c| c["name"] == "_forums_name"), "include_from_parent: {child}");
    assert!(child["paginator"].as_str().unwrap().ends_with("(auto-detected)"), "{child}");
    assert_eq!(mock.requests(), 3, "one request per resource, the children's for one parent record");
}

#[test]
fn check_fails_with_1_on_a_refused_request_offline_makes_none_and_config_errors_are_2() {
    let mock = Mock::start(&["--records", "100"]);
    let s = Scratch::new();
    s.write("seed.yaml", &std::fs::read_to_string(seed_config()).unwrap());
    let out = Command::new(bin())
        .args(["check", "seed.yaml", "--base-url", &mock.url])
        .env("API_KEY", "not-the-token")
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (stdout, _) = text(&out);
    assert!(stdout.contains("forums: FAILED") && stdout.contains("HTTP 401"), "{stdout}");
    assert!(stdout.contains("6 resource(s) checked, 6 failed"), "{stdout}");
    assert!(!stdout.contains("not-the-token"), "{stdout}");
    let before = mock.requests();
    let out = resttap(s.dir.path(), &["check", "seed.yaml", "--offline"]);
    assert_ok(&out);
    assert!(text(&out).0.contains("valid; 6 resource(s): forums, external_accounts"), "{}", text(&out).0);
    assert_eq!(mock.requests(), before, "--offline makes no request");
    s.write(
        "bad.yaml",
        &std::fs::read_to_string(seed_config()).unwrap().replace("data_selector: forums", "data_selectr: forums"),
    );
    let out = resttap(s.dir.path(), &["check", "bad.yaml", "--offline"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("did you mean `data_selector`?"), "{}", text(&out).1);
}

#[test]
fn every_configuration_problem_is_reported_in_one_run_secrets_last() {
    let mock = Mock::start(&[]);
    let s = Scratch::new();
    let seed = std::fs::read_to_string(seed_config()).unwrap();
    let bad = seed
        .replacen("cursor_path:", "cursor_pth:", 1)
        .replacen("data_selector: suggestions", "data_selector: \"suggestions[\"", 1)
        .replacen("write_disposition: merge", "write_disposition: mrege", 1);
    s.write("bad.yaml", &bad);
    let out = Command::new(bin())
        .args(["run", "bad.yaml", "--base-url", &mock.url, "--destination", "duckdb:out.duckdb"])
        .env_remove("API_KEY")
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = text(&out);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines[0].starts_with("error: 4 problems in config file bad.yaml:"), "{stderr}");
    let at =
        |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}: {stderr}"));
    let (wd, cursor, selector, secret) = (
        at("resource_defaults.write_disposition: unknown value `mrege`"),
        at("resources[0].endpoint.paginator.cursor_pth"),
        at("resources[5].endpoint.data_selector: invalid JSONPath"),
        at("secret `api_key`"),
    );
    assert!(wd < cursor && cursor < selector && selector < secret, "keys and types first, then secrets: {stderr}");
    assert_eq!(mock.requests(), 0);
    assert_eq!(files_in(s.dir.path()), ["bad.yaml"], "nothing was created");
}

#[test]
fn progress_off_a_terminal_is_plain_lines_per_resource_and_a_heartbeat() {
    let mock = Mock::start(&["--records", "300", "--page-size", "10", "--slow-ms", "20"]);
    let s = Scratch::new();
    let out = run(&seed_config(), &mock, &s.db(), TOKEN, &["--heartbeat", "200ms"]);
    assert_ok(&out);
    let (stdout, stderr) = text(&out);
    assert!(!stderr.contains('\u{1b}') && !stdout.contains('\u{1b}'), "no control characters: {stderr:?}");
    for r in ["forums", "suggestions", "feedback_records", "features", "external_users", "external_accounts"] {
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("resource {r}: ")))
            .unwrap_or_else(|| panic!("no line for {r}: {stderr}"));
        assert!(line.contains(" records in ") && line.ends_with(" s"), "{line}");
        assert_eq!(stderr.matches(&format!("resource {r}: ")).count(), 1, "once each: {stderr}");
    }
    assert!(stderr.lines().any(|l| l.starts_with("still running after ")), "a heartbeat: {stderr}");
    assert!(stdout.starts_with("table "), "the summary follows on stdout: {stdout}");
    // --quiet: nothing but the exit status
    let out = run(&seed_config(), &mock, &s.db(), TOKEN, &["--quiet"]);
    assert_ok(&out);
    assert_eq!(text(&out), (String::new(), String::new()));
    let out = run(&seed_config(), &mock, &s.db(), TOKEN, &["--quiet", "--log-format", "json"]);
    assert_ok(&out);
    assert_eq!(text(&out), (String::new(), String::new()));
}

#[test]
fn log_format_json_makes_every_line_a_json_object() {
    let mock = Mock::start(&["--records", "200", "--fail-every", "7", "--fault-statuses", "503"]);
    let s = Scratch::new();
    let config = s.seed_with_client("  retry:\n    backoff_factor: 0.01\n");
    let out = run(&config, &mock, &s.db(), TOKEN, &["--log-format", "json"]);
    assert_ok(&out);
    let (stdout, stderr) = text(&out);
    let events: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{stderr}")))
        .collect();
    assert_eq!(events[0]["event"], "run_start", "{stderr}");
    assert_eq!(events[0]["resources"].as_array().unwrap().len(), 6);
    let done: Vec<&Value> = events.iter().filter(|e| e["event"] == "resource_done").collect();
    assert_eq!(done.len(), 6, "{stderr}");
    assert!(done.iter().all(|e| e["records"].as_u64().unwrap() > 0 && e["seconds"].is_number()), "{stderr}");
    let retries = events
        .iter()
        .filter(|e| e["level"] == "WARN" && e["message"].as_str().unwrap_or("").contains("retrying"))
        .count();
    assert!(retries > 0, "retries are logged as JSON too: {stderr}");
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(summary["event"], "summary");
    let c = open(&s.db());
    let suggestions = summary["tables"].as_array().unwrap().iter().find(|t| t["table"] == "suggestions").unwrap();
    assert_eq!(suggestions["rows"].as_i64().unwrap(), count(&c, "SELECT count(*) FROM t_dataset.suggestions"));
    let retried: u64 = summary["resources"].as_array().unwrap().iter().map(|r| r["retries"].as_u64().unwrap()).sum();
    assert_eq!(retried as usize, retries);
    drop(c);
    // a failure is a JSON object too, saying what was committed
    let out = run(&config, &mock, &s.db(), "wrong", &["--log-format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let last: Value = serde_json::from_str(text(&out).1.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "error");
    assert!(last["message"].as_str().unwrap().contains("HTTP 401"), "{last}");
    assert!(last["committed"].as_str().unwrap().contains("nothing was committed"), "{last}");
}

#[test]
fn json_logs_cover_configuration_errors_and_each_resources_rate_limit_waits() {
    let s = Scratch::new();
    s.write("bad.yaml", &std::fs::read_to_string(seed_config()).unwrap().replacen("cursor_path:", "cursor_pth:", 1));
    let out = resttap(s.dir.path(), &["run", "bad.yaml", "--log-format", "json", "--destination", "duckdb:x.duckdb"]);
    assert_eq!(out.status.code(), Some(2));
    let (stdout, stderr) = text(&out);
    assert!(stdout.is_empty(), "{stdout}");
    let lines: Vec<Value> =
        stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert_eq!(lines[0]["event"], "error");
    assert!(lines[0]["message"].as_str().unwrap().contains("cursor_pth"), "{stderr}");
    // a rate limit the API announces: each resource's wait, and the run's
    let mock =
        Mock::start(&["--records", "100", "--page-size", "10", "--rate-limit", "10", "--rate-limit-per-ms", "300"]);
    let out = run(&seed_config(), &mock, &s.db(), TOKEN, &["--log-format", "json"]);
    assert_ok(&out);
    let (stdout, stderr) = text(&out);
    let waited: f64 = stderr
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "resource_done")
        .map(|e| e["rate_limit_wait_s"].as_f64().unwrap())
        .sum();
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    let total = summary["rate_limit_wait_s"].as_f64().unwrap();
    assert!(total > 0.5, "the run waited on the rate limit: {summary}");
    // the resources' waits are the run's, up to rounding (0.05 s each)
    assert!((waited - total).abs() <= 0.4, "resources {waited} s, run {total} s");
}

#[test]
fn version_and_shell_completions() {
    let out = Command::new(bin()).arg("--version").output().unwrap();
    assert_ok(&out);
    assert_eq!(text(&out).0.trim(), format!("resttap {}", env!("CARGO_PKG_VERSION")));
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(bin()).args(["completions", shell]).output().unwrap();
        assert_ok(&out);
        let script = text(&out).0;
        for word in ["check", "run", "checkpoint-every", "log-format"] {
            assert!(script.contains(word), "{shell} completions name {word}");
        }
    }
    let out = Command::new(bin()).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
