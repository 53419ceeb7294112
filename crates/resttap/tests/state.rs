//! Incremental loading, pipeline state and crash safety, through the real binary.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const TABLES: [&str; 6] =
    ["forums", "external_accounts", "external_users", "features", "feedback_records", "suggestions"];

fn incremental_config() -> std::path::PathBuf {
    repo_root().join("examples/analytics-api-incremental.yaml")
}

fn state_json(db: &std::path::Path) -> serde_json::Value {
    let out = Command::new(bin())
        .args(["state", "--pipeline", "t", "--destination"])
        .arg(format!("duckdb:{}", db.display()))
        .output()
        .unwrap();
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_same_as_clean_run(mock: &Mock, db: &std::path::Path, config: &std::path::Path) {
    let clean = Scratch::new();
    assert_ok(&run(config, mock, &clean.db(), TOKEN, &[]));
    let (a, b) = (open(db), open(&clean.db()));
    for t in TABLES.iter().chain(["forums__tags", "feedback_records__labels"].iter()) {
        assert_eq!(fingerprint(&a, t), fingerprint(&b, t), "{t}");
        assert_eq!(count(&a, &format!("SELECT count(*) - count(DISTINCT _dlt_id) FROM t_dataset.\"{t}\"")), 0, "{t}");
    }
}

#[test]
fn incremental_runs_ask_only_for_new_records_and_converge() {
    let mock = Mock::start(&["--records", "400", "--growth", "3"]);
    let s = Scratch::new();
    let config = incremental_config();
    assert_ok(&run(&config, &mock, &s.db(), TOKEN, &[]));
    let first_requests = mock.requests();
    let st = state_json(&s.db());
    let last = st
        .pointer("/sources/rest_api/resources/suggestions/incremental/updated_at/last_value")
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert!(last.starts_with("20"), "{st}");
    // nothing changed: one page per resource, nothing loaded, and the summary says 0 for each
    let out = run(&config, &mock, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    let (stdout, _) = text(&out);
    for t in TABLES {
        assert!(stdout.lines().any(|l| l.split_whitespace().eq([t, "0"])), "{t} 0 in:\n{stdout}");
    }
    assert_eq!(mock.requests() - first_requests, 6);
    let c = open(&s.db());
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.suggestions"), 400);
    drop(c);
    // the API changes: the next run fetches the changed and new records only
    mock.set_revision(1);
    let before = mock.requests();
    let out = run(&config, &mock, &s.db(), TOKEN, &[]);
    assert_ok(&out);
    let changed: u64 = (1..=400).filter(|id| resttap_mock::data::changed_in(*id, 1)).count() as u64;
    let (stdout, _) = text(&out);
    assert!(stdout.contains(&"\nsuggestions  ".to_string()), "{stdout}");
    assert!(mock.requests() - before <= 6 * 2, "only a page or two per resource: {}", mock.requests() - before);
    let c = open(&s.db());
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.suggestions"), 403);
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset.suggestions WHERE title LIKE '%(rev 1)'"), changed as i64);
    drop(c);
    mock.set_revision(3);
    assert_ok(&run(&config, &mock, &s.db(), TOKEN, &[]));
    assert_same_as_clean_run(&mock, &s.db(), &config);
}

#[test]
fn state_lives_in_the_destination_and_can_be_reset() {
    let mock = Mock::start(&["--records", "100"]);
    let s = Scratch::new();
    let config = incremental_config();
    assert_ok(&run(&config, &mock, &s.db(), TOKEN, &[]));
    // a fresh machine has only the destination: the position comes from it
    let c = open(&s.db());
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset._dlt_pipeline_state WHERE pipeline_name = 't'"), 1);
    drop(c);
    let before = mock.requests();
    assert_ok(&run(&config, &mock, &s.db(), TOKEN, &[]));
    assert_eq!(mock.requests() - before, 6, "resumed from the stored position");
    let reset = Command::new(bin())
        .args(["state", "--pipeline", "t", "--reset", "--resource", "suggestions", "--destination"])
        .arg(format!("duckdb:{}", s.db().display()))
        .output()
        .unwrap();
    assert_ok(&reset);
    let st = state_json(&s.db());
    assert!(st.pointer("/sources/rest_api/resources/suggestions").is_none(), "{st}");
    assert!(st.pointer("/sources/rest_api/resources/forums/incremental/updated_at/last_value").is_some(), "{st}");
    let before = mock.requests();
    assert_ok(&run(&config, &mock, &s.db(), TOKEN, &[]));
    assert_eq!(mock.requests() - before, 5 + 1, "suggestions read from the start again (one page of 100)");
}

#[test]
fn failure_that_outlasts_retries_does_not_advance_state() {
    let mock = Mock::start(&["--records", "100"]);
    let s = Scratch::new();
    let text_cfg = std::fs::read_to_string(incremental_config()).unwrap().replacen(
        "client:\n",
        "client:\n  retry:\n    backoff_factor: 0.01\n",
        1,
    );
    let config = s.write("inc.yaml", &text_cfg);
    assert_ok(&run(&config, &mock, &s.db(), TOKEN, &[]));
    let st = state_json(&s.db());
    mock.set_revision(1);
    mock.set_faults(r#"{"always": 502}"#);
    let out = run(&config, &mock, &s.db(), TOKEN, &[]);
    assert!(!out.status.success());
    assert_eq!(state_json(&s.db()), st);
    mock.set_faults("{}");
    assert_ok(&run(&config, &mock, &s.db(), TOKEN, &[]));
    assert_same_as_clean_run(&mock, &s.db(), &config);
}

#[test]
fn a_second_run_at_the_same_time_is_refused() {
    let mock = Mock::start(&["--records", "2000", "--slow-ms", "40"]);
    let s = Scratch::new();
    let mut first = Command::new(bin())
        .args(["run", seed_config().to_str().unwrap(), "--base-url", &mock.url, "--pipeline", "t", "--destination"])
        .arg(format!("duckdb:{}", s.db().display()))
        .env("API_KEY", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while mock.requests() == 0 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = run(&seed_config(), &mock, &s.db(), TOKEN, &[]);
    assert!(!second.status.success());
    let (_, stderr) = text(&second);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert!(first.wait().unwrap().success(), "the first run is not disturbed");
}

/// Kills resttap at chosen points and at random moments; a rerun always ends with what one
/// clean run produces.
#[test]
fn killed_runs_leave_nothing_half_written_and_reruns_converge() {
    let mock = Mock::start(&["--records", "600", "--slow-ms", "2"]);
    let s = Scratch::new();
    let config = incremental_config();
    let spawn = |crash_at: Option<&str>| spawn_run(&config, &mock, &s.db(), crash_at);
    let mut revision = 0;
    // chosen points: mid-extract, after extraction, inside the commit transaction
    for point in ["after_first_page", "before_commit", "in_commit"] {
        revision += 1;
        mock.set_revision(revision);
        let status = spawn(Some(point)).wait().unwrap();
        assert!(!status.success(), "{point}: the process was killed");
    }
    // random moments: a seeded sequence of delays across a whole run
    let t0 = Instant::now();
    assert!(spawn(None).wait().unwrap().success());
    let full = t0.elapsed();
    let mut seed: u64 = 0x5eed;
    let mut killed = 0;
    for _ in 0..8 {
        revision += 1;
        mock.set_revision(revision);
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = full.mul_f64((seed >> 33) as f64 / (1u64 << 31) as f64);
        let mut child = spawn(None);
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
        // whatever the kill hit, the dataset is readable and consistent
        let c = open(&s.db());
        assert_eq!(count(&c, "SELECT count(*) - count(DISTINCT id) FROM t_dataset.suggestions"), 0);
    }
    assert!(killed >= 3, "most random kills land during a run ({killed})");
    assert_ok(&run(&config, &mock, &s.db(), TOKEN, &[]));
    assert_same_as_clean_run(&mock, &s.db(), &config);
}

/// Full row groups are compressed and written while extraction goes on, not held for the
/// commit: a run stopped just before its commit has already written a good part of what the
/// committed file holds (DuckDB's default buffers five row groups per table: ~12% here; one:
/// ~35%). The rows written early belong to no committed table, so the stopped run leaves the
/// dataset as it was.
#[test]
fn full_row_groups_reach_the_file_before_the_commit() {
    let mock = Mock::start(&["--records", "20000", "--page-size", "100"]);
    let s = Scratch::new();
    let stopped = s.path("stopped.duckdb");
    let status = spawn_run(&seed_config(), &mock, &stopped, Some("before_commit")).wait().unwrap();
    assert!(!status.success(), "the run was stopped before its commit");
    let written_early = std::fs::metadata(&stopped).unwrap().len();
    assert_ok(&run(&seed_config(), &mock, &s.db(), TOKEN, &[]));
    let committed = std::fs::metadata(s.db()).unwrap().len();
    assert!(
        written_early * 4 >= committed,
        "{written_early} bytes were in the file before the commit, {committed} after it"
    );
    let c = open(&stopped);
    assert_eq!(count(&c, "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 't_dataset'"), 0);
}
