//! `resttap loads` and `resttap info` through the binary, on DuckDB, PostgreSQL and a local lake
//! of Delta tables: the mock API loaded twice (the second run incremental, after the API
//! changed, merging the changed records), then both commands' JSON checked against what an
//! independent reader finds in the destination (the duckdb crate, psql, pyarrow/deltalake).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

const MOCK: [&str; 4] = ["--records", "200", "--growth", "3"];

fn incremental_config() -> PathBuf {
    repo_root().join("examples/analytics-api-incremental.yaml")
}

/// `resttap COMMAND --pipeline t --destination DESTINATION ARGS...` from `cwd`.
fn resttap(command: &str, destination: &str, cwd: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args([command, "--pipeline", "t", "--destination", destination])
        .args(args)
        .env_remove("RESTTAP_LOG")
        .env_remove("DESTINATION__POSTGRES__CREDENTIALS")
        .env_remove("DESTINATION__FILESYSTEM__BUCKET_URL")
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// The JSON a command prints with `--json`.
fn json_of(command: &str, destination: &str, cwd: &Path) -> Value {
    let out = resttap(command, destination, cwd, &["--json"]);
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{command} --json: {e}:\n{}", text(&out).0))
}

/// Loads `config` from `mock` into `destination` twice: a first load, then (the API changed)
/// an incremental one that merges the changed and new records.
fn load_twice(config: &Path, mock: &Mock, destination: &str, cwd: &Path) {
    assert_ok(&run_to_command(config, mock, destination, cwd, TOKEN).output().unwrap());
    mock.set_revision(1);
    assert_ok(&run_to_command(config, mock, destination, cwd, TOKEN).output().unwrap());
}

/// What an independent reader finds in the dataset `t_dataset`.
#[derive(Debug)]
struct Truth {
    /// `_dlt_loads`: (load_id, status), newest first.
    loads: Vec<(String, i64)>,
    /// The data tables' rows, by table.
    tables: BTreeMap<String, u64>,
    /// The data tables with a `_dlt_load_id` column (root tables: nested ones have none).
    roots: Vec<String>,
    /// Rows by load id, then by root table (tables without any left out).
    per_load: BTreeMap<String, BTreeMap<String, u64>>,
}

const DATA_TABLES: &str = "SELECT table_name FROM information_schema.tables WHERE table_schema = 't_dataset' \
     AND table_name NOT LIKE '\\_dlt\\_%' ESCAPE '\\' ORDER BY 1";
const ROOT_TABLES: &str = "SELECT table_name FROM information_schema.columns WHERE table_schema = 't_dataset' \
     AND column_name = '_dlt_load_id' AND table_name NOT LIKE '\\_dlt\\_%' ESCAPE '\\' ORDER BY 1";
const LOADS: &str =
    "SELECT load_id || '|' || CAST(status AS VARCHAR) FROM t_dataset._dlt_loads ORDER BY inserted_at DESC";

fn count_sql(table: &str) -> String {
    format!("SELECT CAST(count(*) AS VARCHAR) FROM t_dataset.\"{table}\"")
}

fn per_load_sql(table: &str) -> String {
    format!("SELECT _dlt_load_id || '|' || CAST(count(*) AS VARCHAR) FROM t_dataset.\"{table}\" GROUP BY _dlt_load_id")
}

/// Asks `query` (each SQL's first column, as text, one line per row) what the dataset holds.
fn truth(query: &dyn Fn(&[String]) -> Vec<Vec<String>>) -> Truth {
    let mut listed = query(&[DATA_TABLES.to_string(), ROOT_TABLES.to_string()]);
    let (names, roots) = (listed.remove(0), listed.remove(0));
    assert!(roots.len() >= 6 && names.len() > roots.len(), "the seed's tables: {names:?}, {roots:?}");
    let mut sqls = vec![LOADS.to_string()];
    sqls.extend(names.iter().map(|t| count_sql(t)));
    sqls.extend(roots.iter().map(|t| per_load_sql(t)));
    let got = query(&sqls);
    let loads = got[0]
        .iter()
        .map(|l| {
            let (id, status) = l.split_once('|').unwrap();
            (id.to_string(), status.parse().unwrap())
        })
        .collect();
    let tables = names.iter().enumerate().map(|(i, t)| (t.clone(), got[1 + i][0].parse().unwrap())).collect();
    let mut per_load: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (i, t) in roots.iter().enumerate() {
        for l in &got[1 + names.len() + i] {
            let (id, n) = l.split_once('|').unwrap();
            per_load.entry(id.to_string()).or_default().insert(t.clone(), n.parse().unwrap());
        }
    }
    Truth { loads, tables, roots, per_load }
}

/// A load's tables in the JSON as a map.
fn tables_of(load: &Value) -> BTreeMap<String, u64> {
    load["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap().to_string(), t["rows"].as_u64().unwrap()))
        .collect()
}

/// Checks `resttap loads --json` and `resttap info --json` against `truth` and `resttap state`.
fn check(destination: &str, cwd: &Path, truth: &Truth) {
    assert_eq!(truth.loads.len(), 2, "{truth:?}");
    let loads = json_of("loads", destination, cwd);
    let loads = loads.as_array().unwrap();
    assert_eq!(loads.len(), 2, "{loads:?}");
    let ids: Vec<(String, i64)> =
        loads.iter().map(|l| (l["load_id"].as_str().unwrap().to_string(), l["status"].as_i64().unwrap())).collect();
    assert_eq!(ids, truth.loads, "newest first, as _dlt_loads has them");
    assert!(
        ids[0].0.parse::<f64>().unwrap() > ids[1].0.parse::<f64>().unwrap(),
        "the newest load has the later load id: {ids:?}"
    );
    let at: Vec<chrono::DateTime<chrono::FixedOffset>> = loads
        .iter()
        .map(|l| chrono::DateTime::parse_from_rfc3339(l["inserted_at"].as_str().unwrap()).unwrap())
        .collect();
    assert!(at[0] >= at[1], "{at:?}");
    for l in loads {
        assert_eq!(l["status"], 0);
        assert_eq!(l["schema_name"], "rest_api");
        let id = l["load_id"].as_str().unwrap();
        assert_eq!(tables_of(l), truth.per_load.get(id).cloned().unwrap_or_default(), "rows of load {id}");
    }
    // every row of a root table is of one of the two loads; the second brought rows, and
    // replaced some of the first's by merging
    for t in &truth.roots {
        let sum: u64 = loads.iter().map(|l| tables_of(l).get(t).copied().unwrap_or(0)).sum();
        assert_eq!(sum, truth.tables[t], "{t}");
    }
    for l in loads {
        assert!(tables_of(l).keys().all(|t| truth.roots.contains(t)), "root tables only: {l}");
    }
    let newest = tables_of(&loads[0]);
    assert!(newest.get("suggestions").is_some_and(|n| *n > 0), "{newest:?}");
    let first_suggestions = tables_of(&loads[1])["suggestions"];
    assert!(first_suggestions < resttap_mock::data::record_count("suggestions", 200, 0, 3), "merged away");

    let info = json_of("info", destination, cwd);
    assert_eq!(info["pipeline"], "t");
    assert_eq!(info["dataset"], "t_dataset");
    assert_eq!(info["loads"], 2);
    assert_eq!(info["newest_load"], loads[0]);
    let tables: Vec<(String, u64)> = info["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t["rows"].as_u64().unwrap()))
        .collect();
    assert_eq!(tables, truth.tables.iter().map(|(t, n)| (t.clone(), *n)).collect::<Vec<_>>());
    let system: BTreeMap<String, u64> = info["system_tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t["rows"].as_u64().unwrap()))
        .collect();
    assert_eq!(system.get("_dlt_loads"), Some(&2), "{system:?}");
    assert!(system.contains_key("_dlt_version") && system.contains_key("_dlt_pipeline_state"), "{system:?}");
    // the state as `resttap state` prints it
    let state = resttap("state", destination, cwd, &[]);
    assert_ok(&state);
    let state: Value = serde_json::from_slice(&state.stdout).unwrap();
    assert_eq!(info["state"]["version"], state["_state_version"]);
    let cursors = info["state"]["incremental"].as_array().unwrap();
    let resources = state.pointer("/sources/rest_api/resources").unwrap().as_object().unwrap();
    assert_eq!(cursors.len(), 6, "{cursors:?}");
    assert_eq!(cursors.len(), resources.len());
    for c in cursors {
        let r = c["resource"].as_str().unwrap();
        assert_eq!(c["cursor_path"], "updated_at");
        let stored = &resources[r]["incremental"]["updated_at"];
        assert_eq!(c["initial_value"], stored["initial_value"], "{r}");
        assert_eq!(c["last_value"], stored["last_value"], "{r}");
        assert!(c["last_value"].as_str().is_some_and(|v| v.starts_with("20")), "{c}");
        assert_eq!(c["unique_hashes"], stored["unique_hashes"].as_array().map_or(0, Vec::len), "{r}");
    }
}

#[test]
fn loads_and_info_on_duckdb() {
    let mock = Mock::start(&MOCK);
    let s = Scratch::new();
    let dest = format!("duckdb:{}", s.db().display());
    load_twice(&incremental_config(), &mock, &dest, s.dir.path());
    let conn = open(&s.db());
    let query = |sqls: &[String]| -> Vec<Vec<String>> {
        sqls.iter()
            .map(|sql| {
                let mut st = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                st.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
            })
            .collect()
    };
    let truth = truth(&query);
    drop(conn);
    check(&dest, s.dir.path(), &truth);
    let info = json_of("info", &dest, s.dir.path());
    assert_eq!(info["destination"], s.db().display().to_string());
    // the text forms
    let out = resttap("loads", &dest, s.dir.path(), &[]);
    assert_ok(&out);
    let (stdout, _) = text(&out);
    let first = stdout.find(&truth.loads[0].0).unwrap();
    let second = stdout.find(&truth.loads[1].0).unwrap();
    assert!(first < second, "newest first:\n{stdout}");
    assert!(stdout.contains("0 (done)") && stdout.contains("still in each root table"), "{stdout}");
    let out = resttap("info", &dest, s.dir.path(), &[]);
    assert_ok(&out);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("dataset      t_dataset") && stdout.contains("incremental state"), "{stdout}");
    assert!(stdout.find("suggestions").unwrap() < stdout.find("_dlt_loads").unwrap(), "{stdout}");
    // a dataset that is not there
    for command in ["loads", "info"] {
        let out = resttap(command, &dest, s.dir.path(), &["--dataset", "nope", "--json"]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        let (_, stderr) = text(&out);
        assert!(stderr.contains("no dataset `nope`") && stderr.contains("--dataset"), "{command}: {stderr}");
    }
}

#[test]
fn loads_and_info_on_postgres() {
    let server = pg::server();
    let mock = Mock::start(&MOCK);
    let s = Scratch::new();
    let db = server.new_db();
    let dest = server.url(&db);
    load_twice(&incremental_config(), &mock, &dest, s.dir.path());
    let query = |sqls: &[String]| -> Vec<Vec<String>> {
        sqls.iter().map(|sql| server.psql(&db, sql).lines().map(String::from).collect()).collect()
    };
    let truth = truth(&query);
    check(&dest, s.dir.path(), &truth);
    let out = resttap("info", &dest, s.dir.path(), &["--json"]);
    assert_ok(&out);
    let (stdout, stderr) = text(&out);
    assert!(!stdout.contains(pg::PASSWORD) && !stderr.contains(pg::PASSWORD), "the password was printed");
    let info: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(info["destination"], server.shown(&db));
    let out = resttap("loads", &dest, s.dir.path(), &["--dataset", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("no dataset `nope`"), "{}", text(&out).1);
}

#[test]
fn loads_and_info_on_a_delta_lake() {
    let mock = Mock::start(&MOCK);
    let s = Scratch::new();
    let config = std::fs::read_to_string(incremental_config()).unwrap();
    let config = s
        .write("seed.yaml", &config.replacen("resource_defaults:\n", "resource_defaults:\n  table_format: delta\n", 1));
    let dest = format!("file://{}", s.path("lake").display());
    load_twice(&config, &mock, &dest, s.dir.path());
    assert!(s.path("lake/t_dataset/suggestions/_delta_log").is_dir(), "Delta tables");
    let url = format!("{dest}/t_dataset");
    let query = |sqls: &[String]| -> Vec<Vec<String>> {
        let sqls: Vec<&str> = sqls.iter().map(String::as_str).collect();
        lake::query(&url, &[], &sqls)
    };
    let truth = truth(&query);
    check(&dest, s.dir.path(), &truth);
    let out = resttap("info", &dest, s.dir.path(), &["--dataset", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("no dataset `nope`"), "{}", text(&out).1);
}
