//! dlt's merge strategies end to end, against dlt 1.31 itself: the same configuration loads the
//! same mock API, revision after revision (records changed, added, deleted and restored), once
//! with dlt and once with resttap, each into its own DuckDB file; the datasets must have the
//! same tables, columns and types, the same rows and the same `_dlt_id`s wherever dlt derives
//! them (upsert, insert-only, scd2), and scd2 versions current and retired in the same loads.

mod common;

use common::lake::dlt_load;
use common::*;

const CONFIG: &str = r#"
client:
  base_url: http://127.0.0.1:1
  auth: {type: bearer, token: "{secrets.api_key}"}
  paginator: {type: cursor, cursor_param: cursor, cursor_path: pagination.cursor}
resource_defaults:
  primary_key: id
  write_disposition: merge
resources:
  - name: suggestions
    write_disposition: {disposition: merge, strategy: upsert}
    endpoint: {path: /v1/suggestions, data_selector: suggestions}
  - name: forums
    write_disposition: {disposition: merge, strategy: scd2}
    endpoint: {path: /v1/forums, data_selector: forums}
  - name: features
    write_disposition: {disposition: merge, strategy: insert-only}
    endpoint: {path: /v1/features, data_selector: features}
  - name: external_users
    write_disposition:
      disposition: merge
      strategy: scd2
      validity_column_names: [valid_from, valid_to]
      active_record_timestamp: '9999-12-31'
    merge_key: account_id
    endpoint: {path: /v1/external_users, data_selector: external_users}
  - name: feedback_records
    columns:
      deleted: {data_type: bool, hard_delete: true}
    endpoint: {path: /v1/feedback_records, data_selector: feedback_records}
"#;

/// Tables whose root ids are random in both (delete-insert): compared without their ids.
const RANDOM_IDS: [&str; 2] = ["feedback_records", "feedback_records__labels"];

fn strings(c: &duckdb::Connection, sql: &str) -> Vec<String> {
    let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    st.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
}

fn tables(c: &duckdb::Connection) -> Vec<String> {
    strings(
        c,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 't_dataset' AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\' ORDER BY 1",
    )
}

/// The table's columns with their types and nullability, in order.
fn columns(c: &duckdb::Connection, table: &str) -> Vec<String> {
    strings(
        c,
        &format!(
            "SELECT column_name || ' ' || data_type || ' ' || is_nullable FROM information_schema.columns WHERE table_schema = 't_dataset' AND table_name = '{table}' ORDER BY ordinal_position"
        ),
    )
}

/// Every row as text, without what differs between two runs by design (load ids; the
/// validity timestamps, which are the loads' times; random ids), sorted.
fn rows(c: &duckdb::Connection, table: &str) -> Vec<String> {
    let mut skip = vec!["_dlt_load_id", "_dlt_valid_from", "_dlt_valid_to", "valid_from", "valid_to"];
    if RANDOM_IDS.contains(&table) {
        skip.extend(["_dlt_id", "_dlt_root_id", "_dlt_parent_id"]);
    }
    let cols: Vec<String> = columns(c, table)
        .into_iter()
        .map(|c| c.split(' ').next().unwrap().to_string())
        .filter(|c| !skip.contains(&c.as_str()))
        .map(|c| format!("coalesce(CAST(\"{c}\" AS VARCHAR), '∅')"))
        .collect();
    strings(c, &format!("SELECT {} FROM t_dataset.\"{table}\" ORDER BY 1", cols.join(" || '|' || ")))
}

/// Each version of an scd2 table: its id, and the loads (1, 2, ...) it became current and
/// stopped being current in (0: current). A load's number is the rank of its boundary among
/// the versions' start times.
fn versions(c: &duckdb::Connection, table: &str, from: &str, to: &str, active: &str) -> Vec<String> {
    strings(
        c,
        &format!(
            "SELECT x._dlt_id || ' ' || CAST((SELECT count(DISTINCT f.{from}) FROM t_dataset.{table} f WHERE f.{from} <= x.{from}) AS VARCHAR) || ' ' || \
             CASE WHEN {active} THEN '0' ELSE CAST((SELECT count(DISTINCT f.{from}) FROM t_dataset.{table} f WHERE f.{from} <= x.{to}) AS VARCHAR) END \
             FROM t_dataset.{table} x ORDER BY 1"
        ),
    )
}

fn compare(dlt: &duckdb::Connection, ours: &duckdb::Connection, after: &str) {
    let names = tables(dlt);
    assert_eq!(tables(ours), names, "tables after {after}");
    for t in &names {
        assert_eq!(columns(ours, t), columns(dlt, t), "columns of {t} after {after}");
        assert_eq!(rows(ours, t), rows(dlt, t), "rows of {t} after {after}");
    }
    let forums = |c| versions(c, "forums", "_dlt_valid_from", "_dlt_valid_to", "x._dlt_valid_to IS NULL");
    assert_eq!(forums(ours), forums(dlt), "forums' versions after {after}");
    let users = |c| {
        versions(c, "external_users", "valid_from", "valid_to", "x.valid_to = TIMESTAMPTZ '9999-12-31 00:00:00+00'")
    };
    assert_eq!(users(ours), users(dlt), "external_users' versions after {after}");
}

/// Loads revisions 0, 1 and 2 of a mock with `mock_args` with both tools, comparing after each.
fn same_as_dlt(mock_args: &[&str]) -> (duckdb::Connection, duckdb::Connection) {
    let mock = Mock::start(mock_args);
    let s = Scratch::new();
    let config = s.write("strategies.yaml", CONFIG);
    let (dlt_db, our_db) = (s.path("dlt.duckdb"), s.db());
    for rev in 0..3 {
        mock.set_revision(rev);
        let dest = format!("duckdb:{}", dlt_db.display());
        dlt_load(&config, &mock.url, TOKEN, &dest, &s.path("pipelines"), "t");
        assert_ok(&run(&config, &mock, &our_db, TOKEN, &[]));
        compare(&open(&dlt_db), &open(&our_db), &format!("revision {rev}"));
    }
    (open(&dlt_db), open(&our_db))
}

#[test]
fn records_deleted_and_restored_as_dlt_loads_them() {
    // every revision deletes about a third of the records (leaves them out of the listings),
    // and brings the ones the one before deleted back
    let (dlt, ours) = same_as_dlt(&["--records", "60", "--page-size", "10", "--deletes", "3"]);
    // the test saw what it is about: versions retired, and a retired version current again
    let retired = "SELECT count(*) FROM t_dataset.forums WHERE _dlt_valid_to IS NOT NULL";
    assert!(count(&ours, retired) >= 2, "{}", count(&ours, retired));
    let again = "SELECT count(*) FROM (SELECT _dlt_id FROM t_dataset.forums GROUP BY _dlt_id HAVING count(*) > 1)";
    assert!(count(&ours, again) >= 1, "a version that came back has its old id twice");
    let users = "SELECT count(*) FROM t_dataset.external_users WHERE valid_to <> TIMESTAMPTZ '9999-12-31 00:00:00+00'";
    assert!(count(&ours, users) >= 1);
    assert_eq!(
        count(&ours, "SELECT count(*) FROM t_dataset._dlt_loads"),
        count(&dlt, "SELECT count(*) FROM t_dataset._dlt_loads")
    );
}

#[test]
fn records_flagged_deleted_as_dlt_loads_them() {
    // deleted records are listed with `"deleted": true`: hard_delete removes them
    let (_dlt, ours) =
        same_as_dlt(&["--records", "60", "--page-size", "10", "--deletes", "4", "--delete-style", "flag"]);
    assert_eq!(count(&ours, "SELECT count(*) FROM t_dataset.feedback_records WHERE deleted"), 0);
    assert!(
        count(&ours, "SELECT count(*) FROM t_dataset.suggestions WHERE deleted") >= 1,
        "upsert keeps the flag as data"
    );
}
