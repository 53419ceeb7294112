//! The destination contract (`resttap-load`'s documentation), the same assertions run against
//! every destination through the real binary: dlt's tables and system rows, merges that
//! converge to a clean load, failed and killed runs that change nothing, state that lives in
//! the destination alone, one run per dataset. Each scenario is a function over [`Dest`]; each
//! destination gets a `#[test]` per scenario (`duckdb_*`, `postgres_*`, `delta_*`: a local lake
//! of Delta tables read by delta-rs's Python package).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ROOTS: [&str; 6] =
    ["forums", "external_accounts", "external_users", "features", "feedback_records", "suggestions"];
const NESTED: [&str; 2] = ["forums__tags", "feedback_records__labels"];

/// A dataset in one destination, and an independent reader of it (the duckdb crate, psql,
/// delta-rs's Python package with DuckDB).
enum Dest {
    DuckDb { scratch: Scratch },
    Postgres { scratch: Scratch, db: String },
    Delta { scratch: Scratch },
}

impl Dest {
    fn duckdb() -> Dest {
        Dest::DuckDb { scratch: Scratch::new() }
    }

    fn postgres() -> Dest {
        Dest::Postgres { scratch: Scratch::new(), db: pg::server().new_db() }
    }

    fn delta() -> Dest {
        Dest::Delta { scratch: Scratch::new() }
    }

    fn scratch(&self) -> &Scratch {
        match self {
            Dest::DuckDb { scratch } | Dest::Postgres { scratch, .. } | Dest::Delta { scratch } => scratch,
        }
    }

    /// `--destination`.
    fn arg(&self) -> String {
        match self {
            Dest::DuckDb { scratch } => format!("duckdb:{}", scratch.db().display()),
            Dest::Postgres { db, .. } => pg::server().url(db),
            Dest::Delta { scratch } => format!("file://{}", scratch.path("lake").display()),
        }
    }

    /// Where resttap says the dataset is.
    fn shown(&self) -> String {
        match self {
            Dest::DuckDb { scratch } => scratch.db().display().to_string(),
            Dest::Postgres { db, .. } => pg::server().shown(db),
            Dest::Delta { scratch } => format!("file://{}", scratch.path("lake").display()),
        }
    }

    /// The dataset's URL, for the lake's reader.
    fn url(&self) -> String {
        format!("{}/t_dataset", self.arg())
    }

    /// `config` as this destination loads it: a lake's with `table_format: delta` in
    /// `resource_defaults`.
    fn config(&self, config: &Path) -> PathBuf {
        match self {
            Dest::Delta { scratch } => {
                let text = std::fs::read_to_string(config).unwrap();
                assert!(text.contains("resource_defaults:\n"), "{}", config.display());
                let name = config.file_name().unwrap().to_string_lossy().to_string();
                scratch
                    .write(&name, &text.replace("resource_defaults:\n", "resource_defaults:\n  table_format: delta\n"))
            }
            _ => config.to_path_buf(),
        }
    }

    fn run(&self, config: &Path, mock: &Mock, extra: &[&str]) -> Output {
        let mut cmd = run_to_command(&self.config(config), mock, &self.arg(), self.scratch().dir.path(), TOKEN);
        cmd.args(extra).output().unwrap()
    }

    fn spawn(&self, config: &Path, mock: &Mock, crash_at: Option<&str>) -> std::process::Child {
        self.spawn_with(config, mock, crash_at, &[])
    }

    fn spawn_with(&self, config: &Path, mock: &Mock, crash_at: Option<&str>, extra: &[&str]) -> std::process::Child {
        let mut cmd = run_to_command(&self.config(config), mock, &self.arg(), self.scratch().dir.path(), TOKEN);
        cmd.args(extra).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(p) = crash_at {
            cmd.env("RESTTAP_CRASH_AT", p);
        }
        cmd.spawn().unwrap()
    }

    /// `resttap <command> --pipeline t --destination ...`.
    fn command(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .args(["--pipeline", "t", "--destination", &self.arg()])
            .current_dir(self.scratch().dir.path())
            .output()
            .unwrap()
    }

    /// One number from `sql` (tables as `t_dataset.name`).
    fn count(&self, sql: &str) -> i64 {
        match self {
            Dest::DuckDb { scratch } => {
                if !scratch.db().exists() {
                    return 0;
                }
                count(&open(&scratch.db()), sql)
            }
            Dest::Postgres { db, .. } => pg::server().count(db, sql),
            Dest::Delta { .. } => self.strings(sql).first().and_then(|v| v.parse().ok()).unwrap_or(0),
        }
    }

    /// The dataset's tables.
    fn tables(&self) -> Vec<String> {
        self.strings("SELECT table_name FROM information_schema.tables WHERE table_schema = 't_dataset' ORDER BY 1")
    }

    fn strings(&self, sql: &str) -> Vec<String> {
        match self {
            Dest::DuckDb { scratch } => {
                if !scratch.db().exists() {
                    return Vec::new();
                }
                let c = open(&scratch.db());
                let mut st = c.prepare(sql).unwrap();
                st.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
            }
            Dest::Postgres { db, .. } => {
                pg::server().psql(db, sql).lines().filter(|l| !l.is_empty()).map(String::from).collect()
            }
            Dest::Delta { .. } => lake::query(&self.url(), &[], &[sql]).remove(0),
        }
    }

    /// A table's columns: name, dlt type, nullable.
    fn columns(&self, table: &str) -> Vec<(String, String, bool)> {
        let sql = format!(
            "SELECT column_name || '|' || data_type || '|' || is_nullable FROM information_schema.columns \
             WHERE table_schema = 't_dataset' AND table_name = '{table}' ORDER BY ordinal_position"
        );
        self.strings(&sql)
            .iter()
            .map(|l| {
                let p: Vec<&str> = l.split('|').collect();
                (p[0].to_string(), dlt_type(p[1]), p[2] == "YES")
            })
            .collect()
    }

    /// A table's contents, summarized the same way on every destination: rows, and per user
    /// column (by name) the non-null and distinct values.
    fn fingerprint(&self, table: &str) -> String {
        let cols: Vec<String> = self
            .columns(table)
            .into_iter()
            .map(|c| c.0)
            .filter(|c| !c.starts_with("_dlt_"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut parts = vec![format!("rows={}", self.count(&format!("SELECT count(*) FROM t_dataset.\"{table}\"")))];
        for c in cols {
            let n = self.count(&format!("SELECT count(\"{c}\") FROM t_dataset.\"{table}\""));
            let d = self.count(&format!("SELECT count(DISTINCT \"{c}\") FROM t_dataset.\"{table}\""));
            parts.push(format!("{c}={n}/{d}"));
        }
        parts.join(" ")
    }

    /// Every user table's fingerprint.
    fn fingerprints(&self) -> Vec<(String, String)> {
        if let Dest::Delta { .. } = self {
            return self.lake_fingerprints();
        }
        ROOTS.iter().chain(NESTED.iter()).map(|t| (t.to_string(), self.fingerprint(t))).collect()
    }

    /// [`Dest::fingerprint`] of every table in two reads (each read starts Python).
    fn lake_fingerprints(&self) -> Vec<(String, String)> {
        let tables: Vec<&str> = ROOTS.iter().chain(NESTED.iter()).copied().collect();
        let col_sql: Vec<String> = tables
            .iter()
            .map(|t| {
                format!(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = 't_dataset' \
                     AND table_name = '{t}' AND column_name NOT LIKE '\\_dlt\\_%' ESCAPE '\\' ORDER BY column_name"
                )
            })
            .collect();
        let cols = lake::query(&self.url(), &[], &col_sql.iter().map(String::as_str).collect::<Vec<_>>());
        let mut sql = Vec::new();
        for (t, cs) in tables.iter().zip(&cols) {
            sql.push(format!("SELECT count(*) FROM t_dataset.\"{t}\""));
            for c in cs {
                sql.push(format!("SELECT count(\"{c}\") || '/' || count(DISTINCT \"{c}\") FROM t_dataset.\"{t}\""));
            }
        }
        let mut values = lake::query(&self.url(), &[], &sql.iter().map(String::as_str).collect::<Vec<_>>()).into_iter();
        tables
            .iter()
            .zip(&cols)
            .map(|(t, cs)| {
                let mut parts = vec![format!("rows={}", values.next().unwrap().join(""))];
                for c in cs {
                    parts.push(format!("{c}={}", values.next().unwrap().join("")));
                }
                (t.to_string(), parts.join(" "))
            })
            .collect()
    }

    /// Tables left in the staging schema.
    fn staging_tables(&self) -> i64 {
        self.count("SELECT count(*) FROM information_schema.tables WHERE table_schema = 't_dataset_staging'")
    }
}

/// A destination's type name as dlt's type.
fn dlt_type(t: &str) -> String {
    match t {
        "VARCHAR" | "character varying" => "text",
        "BIGINT" | "bigint" => "bigint",
        "DOUBLE" | "double precision" => "double",
        "BOOLEAN" | "boolean" => "bool",
        "TIMESTAMP WITH TIME ZONE" | "timestamp with time zone" => "timestamp",
        "JSON" | "jsonb" => "json",
        "DATE" | "date" => "date",
        other => other,
    }
    .to_string()
}

fn incremental_config() -> PathBuf {
    repo_root().join("examples/analytics-api-incremental.yaml")
}

fn assert_converged(d: &Dest, mock: &Mock, config: &Path, make: fn() -> Dest) {
    let clean = make();
    assert_ok(&clean.run(config, mock, &[]));
    assert_eq!(d.fingerprints(), clean.fingerprints());
    for t in ROOTS.iter().chain(NESTED.iter()) {
        assert_eq!(d.count(&format!("SELECT count(*) - count(DISTINCT _dlt_id) FROM t_dataset.\"{t}\"")), 0, "{t}");
    }
    for t in ROOTS {
        assert_eq!(d.count(&format!("SELECT count(*) - count(DISTINCT id) FROM t_dataset.{t}")), 0, "{t}");
    }
}

// --- the scenarios ------------------------------------------------------------------------

/// The nested rows, and dlt's columns, types and nullability of a root and a nested table of a
/// first load of the seed (N=300).
fn assert_seed_columns(d: &Dest) {
    assert_eq!(d.count("SELECT count(*) FROM t_dataset.forums__tags"), list_rows("forums", 300, 0, 2, "tags"));
    let cols = d.columns("suggestions");
    let find = |n: &str| cols.iter().find(|c| c.0 == n).unwrap_or_else(|| panic!("{n}: {cols:?}")).clone();
    assert_eq!(find("id"), ("id".into(), "bigint".into(), false));
    assert_eq!(find("updated_at").1, "timestamp");
    assert_eq!(find("_dlt_load_id"), ("_dlt_load_id".into(), "text".into(), false));
    assert_eq!(find("_dlt_id"), ("_dlt_id".into(), "text".into(), false));
    let nested = d.columns("forums__tags");
    let names: Vec<&str> = nested.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["value", "_dlt_root_id", "_dlt_parent_id", "_dlt_list_idx", "_dlt_id"]);
}

/// The seed's tables with dlt's columns, types and system rows.
fn first_load(make: fn() -> Dest) {
    let mock = Mock::start(&["--records", "300"]);
    let d = make();
    let out = d.run(&seed_config(), &mock, &[]);
    assert_ok(&out);
    let (stdout, _) = text(&out);
    assert!(stdout.contains(&format!("loaded into {} (dataset t_dataset)", d.shown())), "{stdout}");
    let tables = d.tables();
    for t in ROOTS.iter().chain(NESTED.iter()).chain(["_dlt_loads", "_dlt_version"].iter()) {
        assert!(tables.contains(&t.to_string()), "{t} missing: {tables:?}");
    }
    for t in ROOTS {
        let n = resttap_mock::data::record_count(t, 300, 0, 2) as i64;
        assert_eq!(d.count(&format!("SELECT count(*) FROM t_dataset.{t}")), n, "{t}");
    }
    assert_seed_columns(&d);
    // system tables as dlt has them
    let loads = d.columns("_dlt_loads");
    let l: Vec<(&str, &str, bool)> = loads.iter().map(|c| (c.0.as_str(), c.1.as_str(), c.2)).collect();
    assert_eq!(
        l,
        [
            ("load_id", "text", false),
            ("schema_name", "text", true),
            ("status", "bigint", false),
            ("inserted_at", "timestamp", false),
            ("schema_version_hash", "text", true)
        ]
    );
    assert_eq!(d.count("SELECT count(*) FROM t_dataset._dlt_loads WHERE status = 0 AND schema_name = 'rest_api'"), 1);
    assert_eq!(d.count("SELECT count(*) FROM t_dataset._dlt_version WHERE engine_version = 11"), 1);
    assert_eq!(
        d.count("SELECT count(*) FROM t_dataset._dlt_loads l JOIN t_dataset._dlt_version v ON v.version_hash = l.schema_version_hash"),
        1
    );
    assert_eq!(d.count("SELECT count(DISTINCT _dlt_load_id) FROM t_dataset.suggestions"), 1);
    assert_eq!(d.staging_tables(), 0);
    // the same data again: no new schema version, a second load
    assert_ok(&d.run(&seed_config(), &mock, &[]));
    assert_eq!(d.count("SELECT count(*) FROM t_dataset._dlt_loads"), 2);
    assert_eq!(d.count("SELECT count(*) FROM t_dataset._dlt_version"), 1);
    assert_eq!(d.count("SELECT count(*) FROM t_dataset.suggestions"), 300);
    assert_eq!(d.staging_tables(), 0);
}

/// Merge runs over changed data end where one clean load of that data ends.
fn merges_converge(make: fn() -> Dest) {
    let mock = Mock::start(&["--records", "500", "--growth", "4"]);
    let d = make();
    assert_ok(&d.run(&seed_config(), &mock, &[]));
    for rev in [1, 2] {
        mock.set_revision(rev);
        assert_ok(&d.run(&seed_config(), &mock, &[]));
    }
    assert_eq!(d.count("SELECT count(*) FROM t_dataset.suggestions"), 508);
    assert!(d.count("SELECT count(*) FROM t_dataset.suggestions WHERE title LIKE '%(rev %'") > 0);
    assert_converged(&d, &mock, &seed_config(), make);
}

/// A run that fails after staging rows (a truncated page) changes nothing.
fn failed_load_changes_nothing(make: fn() -> Dest) {
    let mock = Mock::start(&["--records", "400"]);
    let d = make();
    assert_ok(&d.run(&seed_config(), &mock, &[]));
    let before = d.fingerprints();
    mock.set_revision(1);
    mock.set_faults(r#"{"truncate_every": 9}"#);
    let out = d.run(&seed_config(), &mock, &[]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("nothing was committed"), "{stderr}");
    assert_eq!(d.fingerprints(), before);
    assert_eq!(d.count("SELECT count(*) FROM t_dataset._dlt_loads"), 1);
    assert_eq!(d.staging_tables(), 0);
    mock.set_faults("{}");
    assert_ok(&d.run(&seed_config(), &mock, &[]));
    assert_converged(&d, &mock, &seed_config(), make);
}

/// Killed at chosen points and at random moments, a run leaves the dataset as it was; a rerun
/// converges.
fn killed_runs_change_nothing(make: fn() -> Dest, points: &[&str]) {
    let mock = Mock::start(&["--records", "600", "--slow-ms", "2"]);
    let d = make();
    let config = incremental_config();
    assert_ok(&d.run(&config, &mock, &[]));
    let mut revision = 0;
    for point in points {
        revision += 1;
        mock.set_revision(revision);
        let before = d.fingerprints();
        let status = d.spawn(&config, &mock, Some(point)).wait().unwrap();
        assert!(!status.success(), "{point}: the process was killed");
        assert_eq!(d.fingerprints(), before, "{point}");
        assert_eq!(d.count("SELECT count(*) FROM t_dataset._dlt_loads"), 1, "{point}");
    }
    killed_at_random_moments(&d, &config, &mock, &mut revision, 0x5eed);
    assert_ok(&d.run(&config, &mock, &[]));
    assert_converged(&d, &mock, &config, make);
}

/// Six runs over new revisions of the data, each SIGKILLed at a moment drawn from `seed` within
/// the time of a whole run; after each, no record is there twice.
fn killed_at_random_moments(d: &Dest, config: &Path, mock: &Mock, revision: &mut u64, seed: u64) {
    let t0 = Instant::now();
    assert!(d.spawn(config, mock, None).wait().unwrap().success());
    let full = t0.elapsed();
    let mut seed = seed;
    for _ in 0..6 {
        *revision += 1;
        mock.set_revision(*revision);
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = full.mul_f64((seed >> 33) as f64 / (1u64 << 31) as f64);
        let mut child = d.spawn(config, mock, None);
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
        }
        child.wait().unwrap();
        assert_eq!(d.count("SELECT count(*) - count(DISTINCT id) FROM t_dataset.suggestions"), 0);
    }
}

/// The incremental position lives in the destination: a run from another directory (nothing
/// local) resumes from it; `resttap state` reads it.
fn state_resumes_from_the_destination(make: fn() -> Dest) {
    let mock = Mock::start(&["--records", "200"]);
    let d = make();
    let config = incremental_config();
    assert_ok(&d.run(&config, &mock, &[]));
    let state = d.command(&["state"]);
    assert_ok(&state);
    let st: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    assert!(st.pointer("/sources/rest_api/resources/suggestions/incremental/updated_at/last_value").is_some(), "{st}");
    let elsewhere = tempfile::tempdir().unwrap();
    let before = mock.requests();
    let out = run_to_command(&d.config(&config), &mock, &d.arg(), elsewhere.path(), TOKEN).output().unwrap();
    assert_ok(&out);
    assert_eq!(mock.requests() - before, 6, "one page per resource: resumed from the stored position");
    let schema = d.command(&["schema"]);
    assert_ok(&schema);
    let (stdout, _) = text(&schema);
    assert!(stdout.contains("suggestions (200 rows)"), "{stdout}");
}

/// `run --checkpoint-every`: a backfill killed right after its first checkpoint keeps it — a
/// load of its own, with the state that goes with it — and the next run resumes from there:
/// fewer requests than a run from the start, more checkpoints, and in the end the same tables
/// as one load of everything, each record once.
fn checkpointed_backfill_resumes(make: fn() -> Dest) {
    let mock = Mock::start(&["--records", "600", "--page-size", "20", "--slow-ms", "2"]);
    let d = make();
    let yaml = std::fs::read_to_string(incremental_config()).unwrap();
    let from = "      initial_value: \"2024-01-01T00:00:00Z\"\n";
    assert!(yaml.contains(from));
    // the mock returns records by ascending updated_at, as `sort: updated_at` asks
    let config = d.scratch().write("checkpointed.yaml", &yaml.replace(from, &format!("{from}      row_order: asc\n")));
    let every = ["--checkpoint-every", "150"];
    assert!(!d.spawn_with(&config, &mock, Some("after_checkpoint"), &every).wait().unwrap().success(), "killed");
    assert_eq!(d.count("SELECT count(*) FROM t_dataset._dlt_loads"), 1, "the first checkpoint is committed");
    let kept = d.count("SELECT count(*) FROM t_dataset.suggestions");
    assert!((1..600).contains(&kept), "part of the backfill: {kept}");
    let state = d.command(&["state"]);
    assert_ok(&state);
    let st: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    assert!(st.pointer("/sources/rest_api/resources/suggestions/incremental/updated_at/last_value").is_some(), "{st}");

    let before = mock.requests();
    let out = d.run(&config, &mock, &every);
    assert_ok(&out);
    let resumed = mock.requests() - before;
    assert!(text(&out).0.contains("load(s) committed along the way"), "{}", text(&out).0);
    assert!(d.count("SELECT count(*) FROM t_dataset._dlt_loads") >= 3);
    assert!(d.count("SELECT count(DISTINCT _dlt_load_id) FROM t_dataset.suggestions") >= 3);

    let clean = make();
    let before = mock.requests();
    assert_ok(&clean.run(&config, &mock, &[]));
    let whole = mock.requests() - before;
    assert!(resumed < whole, "resumed after the checkpoint: {resumed} requests, {whole} from the start");
    assert_eq!(d.fingerprints(), clean.fingerprints());
    for t in ROOTS.iter().chain(NESTED.iter()) {
        assert_eq!(d.count(&format!("SELECT count(*) - count(DISTINCT _dlt_id) FROM t_dataset.\"{t}\"")), 0, "{t}");
    }
    for t in ROOTS {
        assert_eq!(d.count(&format!("SELECT count(*) - count(DISTINCT id) FROM t_dataset.{t}")), 0, "{t}");
    }
}

/// A second run on a dataset that a run is loading is refused; the first is not disturbed.
fn second_run_is_refused(make: fn() -> Dest) {
    // slow enough that the first run outlasts the second's wait for the lock (PostgreSQL: 3 s)
    let mock = Mock::start(&["--records", "2000", "--slow-ms", "300"]);
    let d = make();
    let mut first = d.spawn(&seed_config(), &mock, None);
    let started = Instant::now();
    while mock.requests() == 0 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = d.run(&seed_config(), &mock, &[]);
    assert_eq!(second.status.code(), Some(1));
    let (_, stderr) = text(&second);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert!(first.wait().unwrap().success(), "the first run is not disturbed");
}

macro_rules! contract {
    ($($name:ident => $body:expr;)*) => {
        mod duckdb {
            use super::*;
            $(#[test] fn $name() { let make: fn() -> Dest = Dest::duckdb; $body(make) })*
        }
        mod postgres {
            use super::*;
            $(#[test] fn $name() { let make: fn() -> Dest = Dest::postgres; $body(make) })*
        }
    };
}

contract! {
    first_load_has_dlt_tables_types_and_system_rows => first_load;
    merge_runs_converge_to_a_clean_load => merges_converge;
    a_failed_load_changes_nothing => failed_load_changes_nothing;
    the_state_resumes_from_the_destination_alone => state_resumes_from_the_destination;
    a_second_run_on_the_dataset_is_refused => second_run_is_refused;
    a_killed_checkpointed_backfill_resumes_after_its_last_checkpoint => checkpointed_backfill_resumes;
}

/// The seed into a local lake of Delta tables: dlt's layout and files, dlt's types as Delta
/// and Parquet hold them, the system files' records.
fn first_load_lake(make: fn() -> Dest) {
    let mock = Mock::start(&["--records", "300"]);
    let d = make();
    let out = d.run(&seed_config(), &mock, &[]);
    assert_ok(&out);
    let (stdout, _) = text(&out);
    assert!(stdout.contains(&format!("loaded into {} (dataset t_dataset)", d.shown())), "{stdout}");
    let root = d.scratch().path("lake").join("t_dataset");
    assert_eq!(std::fs::read_to_string(root.join("init")).unwrap(), r#"{"initial_version":2,"current_version":2}"#);
    let tables = d.tables();
    for t in ROOTS.iter().chain(NESTED.iter()).chain(["_dlt_loads", "_dlt_version"].iter()) {
        assert!(tables.contains(&t.to_string()), "{t} missing: {tables:?}");
    }
    for t in ROOTS {
        let n = resttap_mock::data::record_count(t, 300, 0, 2) as i64;
        assert_eq!(d.count(&format!("SELECT count(*) FROM t_dataset.{t}")), n, "{t}");
        assert!(root.join(t).join("_delta_log/00000000000000000000.json").exists(), "{t} is a Delta table");
        let files: Vec<String> = std::fs::read_dir(root.join(t))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        assert_eq!(files.len(), 1, "{t}: one file per table per load: {files:?}");
        let (load_id, rest) = files[0].split_once('.').unwrap();
        let (frac, rest) = rest.split_once('.').unwrap();
        let (fid, ext) = rest.split_once('.').unwrap();
        assert!(
            load_id.parse::<u64>().is_ok() && frac.parse::<u64>().is_ok(),
            "{}: <load_id>.<file_id>.parquet",
            files[0]
        );
        assert_eq!((fid.len(), ext), (10, "parquet"), "{}", files[0]);
    }
    assert_seed_columns(&d);
    // dlt's system records, one compact JSON object per file
    let loads: Vec<_> = std::fs::read_dir(root.join("_dlt_loads")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(loads.len(), 1);
    let rec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&loads[0]).unwrap()).unwrap();
    let keys: Vec<&str> = rec.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["load_id", "schema_name", "status", "inserted_at", "schema_version_hash"]);
    let name = loads[0].file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(name, format!("rest_api__{}.jsonl", rec["load_id"].as_str().unwrap()));
    assert_eq!(d.count("SELECT count(*) FROM t_dataset._dlt_loads WHERE status = 0 AND schema_name = 'rest_api'"), 1);
    assert_eq!(d.count("SELECT count(*) FROM t_dataset._dlt_version WHERE engine_version = 11"), 1);
    assert_eq!(
        d.count("SELECT count(*) FROM t_dataset._dlt_loads l JOIN t_dataset._dlt_version v ON v.version_hash = l.schema_version_hash"),
        1
    );
    assert_eq!(d.count("SELECT count(DISTINCT _dlt_load_id) FROM t_dataset.suggestions"), 1);
    assert!(
        !root.join("_resttap/loads").exists()
            || std::fs::read_dir(root.join("_resttap/loads")).unwrap().next().is_none()
    );
    // the same data again: no new schema version, a second load, the merge keeps 300 rows
    assert_ok(&d.run(&seed_config(), &mock, &[]));
    assert_eq!(d.count("SELECT count(*) FROM t_dataset._dlt_loads"), 2);
    assert_eq!(d.count("SELECT count(*) FROM t_dataset._dlt_version"), 1);
    assert_eq!(d.count("SELECT count(*) FROM t_dataset.suggestions"), 300);
}

/// A lake killed at chosen points and at random moments: a load killed before its plan is
/// written changes nothing; one killed after it (before or between its tables' Delta commits)
/// is finished by the next run, each table written once; every table stays readable; a rerun
/// converges.
fn killed_lake_runs_are_finished_or_change_nothing(make: fn() -> Dest) {
    let mock = Mock::start(&["--records", "600", "--slow-ms", "2"]);
    let d = make();
    let config = incremental_config();
    assert_ok(&d.run(&config, &mock, &[]));
    let plans = d.scratch().path("lake").join("t_dataset/_resttap/loads");
    let planned = || std::fs::read_dir(&plans).map(|r| r.count()).unwrap_or(0);
    let mut revision = 0;
    for point in ["after_first_page", "before_commit", "before_delta_commits"] {
        revision += 1;
        mock.set_revision(revision);
        let before = d.fingerprints();
        assert!(!d.spawn(&config, &mock, Some(point)).wait().unwrap().success(), "{point}: killed");
        assert_eq!(d.fingerprints(), before, "{point}");
        assert_eq!(d.count("SELECT count(*) FROM t_dataset._dlt_loads"), 1, "{point}");
    }
    assert_eq!(planned(), 1, "the killed load's plan is kept for the next run");
    // the next run finishes that load first, and dies between two of its tables' commits
    revision += 1;
    mock.set_revision(revision);
    assert!(!d.spawn(&config, &mock, Some("between_tables")).wait().unwrap().success());
    assert_eq!(d.count("SELECT count(*) FROM t_dataset._dlt_loads"), 1, "not finished: no _dlt_loads record");
    assert_eq!(planned(), 1);
    assert_each_load_committed_once(&d);
    for t in ROOTS.iter().chain(NESTED.iter()) {
        assert_eq!(d.count(&format!("SELECT count(*) - count(DISTINCT _dlt_id) FROM t_dataset.\"{t}\"")), 0, "{t}");
    }
    // the one after finishes it (the table that holds it is not written again), then loads
    assert_ok(&d.run(&config, &mock, &[]));
    assert_eq!(d.count("SELECT count(*) FROM t_dataset._dlt_loads"), 3);
    assert_eq!(planned(), 0);
    assert_each_load_committed_once(&d);
    // a load of its own killed between its tables: finished by the next run
    revision += 1;
    mock.set_revision(revision);
    assert!(!d.spawn(&config, &mock, Some("between_tables")).wait().unwrap().success());
    assert_ok(&d.run(&config, &mock, &[]));
    assert_eq!(d.count("SELECT count(*) FROM t_dataset._dlt_loads"), 5);
    assert_each_load_committed_once(&d);
    killed_at_random_moments(&d, &config, &mock, &mut revision, 0x1a4e);
    assert_ok(&d.run(&config, &mock, &[]));
    assert_eq!(planned(), 0);
    assert_each_load_committed_once(&d);
    assert_no_orphan_files(&d);
    assert_converged(&d, &mock, &config, make);
}

/// Every file in a Delta table's folder was committed to it at some point (files a merge or
/// replace removed stay on disk, as delta-rs and dlt leave them until a vacuum): what killed
/// runs wrote is gone.
fn assert_no_orphan_files(d: &Dest) {
    let root = d.scratch().path("lake").join("t_dataset");
    for e in std::fs::read_dir(&root).unwrap() {
        let dir = e.unwrap().path();
        if !dir.join("_delta_log").exists() {
            continue;
        }
        let mut added = std::collections::HashSet::new();
        for f in std::fs::read_dir(dir.join("_delta_log")).unwrap() {
            for line in std::fs::read_to_string(f.unwrap().path()).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(p) = v.pointer("/add/path").and_then(|p| p.as_str()) {
                    added.insert(p.to_string());
                }
            }
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let name = f.unwrap().file_name().to_string_lossy().to_string();
            if name != "_delta_log" {
                assert!(added.contains(&name), "{}/{name} was never committed", dir.display());
            }
        }
    }
}

/// No Delta table of the lake holds a load twice: every commit's application transaction
/// (`txn`, one per load) is distinct within a table.
fn assert_each_load_committed_once(d: &Dest) {
    let root = d.scratch().path("lake").join("t_dataset");
    for e in std::fs::read_dir(&root).unwrap() {
        let log = e.unwrap().path().join("_delta_log");
        if !log.exists() {
            continue;
        }
        let mut versions = Vec::new();
        for f in std::fs::read_dir(&log).unwrap() {
            for line in std::fs::read_to_string(f.unwrap().path()).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(t) = v.get("txn") {
                    versions.push(t["version"].as_i64().unwrap());
                }
            }
        }
        let n = versions.len();
        versions.sort();
        versions.dedup();
        assert_eq!(versions.len(), n, "{}: a load committed twice", log.display());
    }
}

mod delta {
    use super::*;
    #[test]
    fn killed_runs_are_finished_or_change_nothing() {
        killed_lake_runs_are_finished_or_change_nothing(Dest::delta)
    }
    #[test]
    fn first_load_has_dlt_layout_tables_types_and_system_files() {
        first_load_lake(Dest::delta)
    }
    #[test]
    fn merge_runs_converge_to_a_clean_load() {
        merges_converge(Dest::delta)
    }
    #[test]
    fn a_failed_load_changes_nothing() {
        failed_load_changes_nothing(Dest::delta)
    }
    #[test]
    fn the_state_resumes_from_the_destination_alone() {
        state_resumes_from_the_destination(Dest::delta)
    }
    #[test]
    fn a_second_run_on_the_dataset_is_refused() {
        second_run_is_refused(Dest::delta)
    }
    #[test]
    fn a_killed_checkpointed_backfill_resumes_after_its_last_checkpoint() {
        checkpointed_backfill_resumes(Dest::delta)
    }
}

#[test]
fn duckdb_killed_runs_change_nothing() {
    killed_runs_change_nothing(Dest::duckdb, &["after_first_page", "before_commit", "in_commit"]);
}

#[test]
fn postgres_killed_runs_change_nothing() {
    killed_runs_change_nothing(Dest::postgres, &["after_first_page", "mid_copy", "before_commit", "in_commit"]);
}
