//! dlt's merge strategies and schema contracts end to end, against dlt 1.31 itself: the same
//! configuration loads the same mock API, revision after revision (records changed, added,
//! deleted and restored, a value that no longer fits its column), once with dlt and once with
//! resttap, each into its own DuckDB file; the datasets must have the same tables, columns and
//! types, the same rows and the same `_dlt_id`s wherever dlt derives them (upsert, insert-only,
//! scd2), scd2 versions current and retired in the same loads, and a frozen contract must fail
//! both runs and leave both datasets as they were.

mod common;

use common::lake::{dlt_load, dlt_run};
use common::*;

/// The client and defaults of every configuration here.
const HEAD: &str = r#"
client:
  base_url: http://127.0.0.1:1
  auth: {type: bearer, token: "{secrets.api_key}"}
  paginator: {type: cursor, cursor_param: cursor, cursor_path: pagination.cursor}
resource_defaults:
  primary_key: id
  write_disposition: merge
"#;

/// The resources of the strategies' comparison (after [`HEAD`]).
const CONFIG: &str = r#"
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
fn rows(c: &duckdb::Connection, table: &str, random_ids: bool) -> Vec<String> {
    let mut skip = vec!["_dlt_load_id", "_dlt_valid_from", "_dlt_valid_to", "valid_from", "valid_to"];
    if random_ids {
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

/// The same tables, columns and rows; `derived_ids`: tables whose `_dlt_id`s dlt derives from
/// the data (the others' are random, and are left out).
fn compare_tables(
    dlt: &duckdb::Connection,
    ours: &duckdb::Connection,
    after: &str,
    derived_ids: &dyn Fn(&str) -> bool,
) {
    let names = tables(dlt);
    assert_eq!(tables(ours), names, "tables after {after}");
    for t in &names {
        assert_eq!(columns(ours, t), columns(dlt, t), "columns of {t} after {after}");
        let random = !derived_ids(t);
        assert_eq!(rows(ours, t, random), rows(dlt, t, random), "rows of {t} after {after}");
    }
}

/// Tables of the default strategy: random ids.
fn random(_: &str) -> bool {
    false
}

fn compare(dlt: &duckdb::Connection, ours: &duckdb::Connection, after: &str) {
    compare_tables(dlt, ours, after, &|t| !RANDOM_IDS.contains(&t));
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
    let config = s.write("strategies.yaml", &format!("{HEAD}{CONFIG}"));
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

/// The contract's comparison (after [`HEAD`]).
const CONTRACT: &str = r#"
  schema_contract: {data_type: MODE}
resources:
  - name: external_accounts
    endpoint: {path: /v1/external_accounts, data_selector: external_accounts}
  - name: forums
    schema_contract: {tables: evolve}
    endpoint: {path: /v1/forums, data_selector: forums}
"#;

/// Revision 0, then revision 2 (where account 3's `employee_count` becomes `"1k+"`, which no
/// longer fits its bigint column), with both tools under `data_type: MODE`.
fn variant_under(mode: &str) -> (Scratch, bool, bool) {
    let mock = Mock::start(&["--records", "60", "--page-size", "10"]);
    let s = Scratch::new();
    let config = s.write("contract.yaml", &format!("{HEAD}{}", CONTRACT.replace("MODE", mode)));
    let (dlt_db, our_db) = (s.path("dlt.duckdb"), s.db());
    let dest = format!("duckdb:{}", dlt_db.display());
    dlt_load(&config, &mock.url, TOKEN, &dest, &s.path("pipelines"), "t");
    assert_ok(&run(&config, &mock, &our_db, TOKEN, &[]));
    mock.set_revision(2);
    let dlt_ok = dlt_run(&config, &mock.url, TOKEN, &dest, &s.path("pipelines"), "t").status.success();
    let ours = run(&config, &mock, &our_db, TOKEN, &[]);
    if !ours.status.success() {
        let (_, err) = text(&ours);
        assert!(err.contains("employee_count__v_text") && err.contains("id=3") && err.contains("data_type"), "{err}");
    }
    (s, dlt_ok, ours.status.success())
}

#[test]
fn a_frozen_data_type_fails_both_and_changes_nothing() {
    let (s, dlt_ok, ours_ok) = variant_under("freeze");
    assert!(!dlt_ok && !ours_ok, "dlt {dlt_ok}, resttap {ours_ok}");
    let (dlt, ours) = (open(&s.path("dlt.duckdb")), open(&s.db()));
    compare_tables(&dlt, &ours, "the refused load", &random);
    // the other resource's rows did not land either
    assert_eq!(count(&ours, "SELECT count(*) FROM t_dataset._dlt_loads"), 1);
    assert_eq!(count(&ours, "SELECT count(*) FROM t_dataset.forums"), 6);
}

#[test]
fn discarded_rows_and_values_are_those_dlt_discards() {
    for mode in ["discard_row", "discard_value"] {
        let (s, dlt_ok, ours_ok) = variant_under(mode);
        assert!(dlt_ok && ours_ok, "{mode}: dlt {dlt_ok}, resttap {ours_ok}");
        let (dlt, ours) = (open(&s.path("dlt.duckdb")), open(&s.db()));
        compare_tables(&dlt, &ours, mode, &random);
        let three =
            count(&ours, "SELECT count(*) FROM t_dataset.external_accounts WHERE id = 3 AND employee_count IS NULL");
        assert_eq!(three, i64::from(mode == "discard_value"), "{mode}");
    }
}

#[test]
fn a_frozen_table_refuses_a_first_load_as_dlt_does() {
    let mock = Mock::start(&["--records", "60", "--page-size", "10"]);
    let s = Scratch::new();
    let config = s.write("contract.yaml", &format!("{HEAD}{}", CONTRACT.replace("{data_type: MODE}", "freeze")));
    let dest = format!("duckdb:{}", s.path("dlt.duckdb").display());
    assert!(!dlt_run(&config, &mock.url, TOKEN, &dest, &s.path("pipelines"), "t").status.success());
    let out = run(&config, &mock, &s.db(), TOKEN, &[]);
    let (_, err) = text(&out);
    assert!(!out.status.success() && err.contains("freezes `tables`") && err.contains("external_accounts"), "{err}");
    assert!(
        !s.db().exists()
            || count(
                &open(&s.db()),
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 't_dataset' AND table_name = 'external_accounts'"
            ) == 0
    );
}

/// A contract outlives the configuration that declared it, as in dlt: loaded once under
/// `data_type: freeze`, the dataset refuses revision 2's variant also when the configuration no
/// longer says so (the stored schema does); a contract declared again (`evolve`) replaces it.
#[test]
fn a_contract_outlives_the_configuration_that_set_it_as_dlt_keeps_it() {
    let mock = Mock::start(&["--records", "60", "--page-size", "10"]);
    let s = Scratch::new();
    let with = |mode: Option<&str>| {
        let c = match mode {
            Some(m) => CONTRACT.replace("MODE", m),
            None => CONTRACT.replace("  schema_contract: {data_type: MODE}\n", ""),
        };
        s.write(&format!("contract-{}.yaml", mode.unwrap_or("none")), &format!("{HEAD}{c}"))
    };
    let (dlt_db, our_db) = (s.path("dlt.duckdb"), s.db());
    let dest = format!("duckdb:{}", dlt_db.display());
    let frozen = with(Some("freeze"));
    dlt_load(&frozen, &mock.url, TOKEN, &dest, &s.path("pipelines"), "t");
    assert_ok(&run(&frozen, &mock, &our_db, TOKEN, &[]));
    mock.set_revision(2);
    let silent = with(None);
    assert!(!dlt_run(&silent, &mock.url, TOKEN, &dest, &s.path("pipelines"), "t").status.success());
    let out = run(&silent, &mock, &our_db, TOKEN, &[]);
    let (_, err) = text(&out);
    assert!(!out.status.success() && err.contains("employee_count__v_text") && err.contains("id=3"), "{err}");
    compare_tables(&open(&dlt_db), &open(&our_db), "the refused load", &random);
    // declared again, it replaces the stored one (dlt: a new pipelines directory, as its failed
    // package would otherwise be retried first; it restores the schema from the dataset)
    let evolving = with(Some("evolve"));
    dlt_load(&evolving, &mock.url, TOKEN, &dest, &s.path("pipelines-2"), "t");
    assert_ok(&run(&evolving, &mock, &our_db, TOKEN, &[]));
    compare_tables(&open(&dlt_db), &open(&our_db), "the evolving load", &random);
    let variant = "SELECT count(*) FROM t_dataset.external_accounts WHERE employee_count__v_text = '1k+'";
    assert_eq!(count(&open(&our_db), variant), 1);
}

/// The shipped example that declares the seed's schema: the same tables and columns as dlt
/// makes of it, and its contract stops both at the API change of revision 2 (an account's
/// `employee_count` becomes text), the dataset untouched.
#[test]
fn the_typed_seed_example_loads_as_dlt_and_catches_an_api_change() {
    let mock = Mock::start(&["--records", "60", "--page-size", "10"]);
    let s = Scratch::new();
    let config = repo_root().join("examples/analytics-api-typed.yaml");
    let (dlt_db, our_db) = (s.path("dlt.duckdb"), s.db());
    let dest = format!("duckdb:{}", dlt_db.display());
    dlt_load(&config, &mock.url, TOKEN, &dest, &s.path("pipelines"), "t");
    assert_ok(&run(&config, &mock, &our_db, TOKEN, &[]));
    compare_tables(&open(&dlt_db), &open(&our_db), "revision 0", &random);
    let hinted = columns(&open(&our_db), "forums");
    assert_eq!(hinted[..2], ["id BIGINT NO", "name VARCHAR YES"]);
    assert!(
        hinted.contains(&"archived_at TIMESTAMP WITH TIME ZONE YES".to_string()),
        "a hinted column exists though always null"
    );
    mock.set_revision(2);
    assert!(!dlt_run(&config, &mock.url, TOKEN, &dest, &s.path("pipelines"), "t").status.success());
    let out = run(&config, &mock, &our_db, TOKEN, &[]);
    let (_, err) = text(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("external_accounts") && err.contains("employee_count") && err.contains("id=3"), "{err}");
    compare_tables(&open(&dlt_db), &open(&our_db), "the refused load", &random);
    assert_eq!(count(&open(&our_db), "SELECT count(*) FROM t_dataset._dlt_loads"), 1);
    // the contract is in the stored schema, as dlt keeps it, and dlt takes that schema
    let schema: String = open(&our_db)
        .query_row("SELECT schema FROM t_dataset._dlt_version ORDER BY inserted_at DESC LIMIT 1", [], |r| r.get(0))
        .unwrap();
    let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
    assert_eq!(
        schema["tables"]["forums"]["schema_contract"],
        serde_json::json!({"tables": "evolve", "columns": "freeze", "data_type": "freeze"})
    );
    mock.set_revision(0);
    let ours = format!("duckdb:{}", our_db.display());
    dlt_load(&config, &mock.url, TOKEN, &ours, &s.path("attaching-pipelines"), "t");
    assert_eq!(count(&open(&our_db), "SELECT count(*) FROM t_dataset._dlt_loads"), 2, "dlt attached and loaded");
}

fn root_counts(c: &duckdb::Connection, load_id: &str) -> Vec<(String, i64, i64, i64)> {
    let tables = strings(
        c,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 't_dataset' AND table_name NOT LIKE '%\\_\\_%' ESCAPE '\\' AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\' ORDER BY 1",
    );
    tables
        .into_iter()
        .map(|t| {
            let all = count(c, &format!("SELECT count(*) FROM t_dataset.{t}"));
            let distinct = count(c, &format!("SELECT count(DISTINCT id) FROM t_dataset.{t}"));
            let this = count(c, &format!("SELECT count(*) FROM t_dataset.{t} WHERE _dlt_load_id = '{load_id}'"));
            (t, all, distinct, this)
        })
        .collect()
}

/// The switch both ways on one DuckDB dataset of the incremental seed: resttap loads revision
/// 0; dlt 1.31, with no local pipeline state, attaches (it reads resttap's `_dlt_version` and
/// `_dlt_pipeline_state`), loads revision 1 from resttap's position and merges it; resttap
/// loads revision 2 from dlt's position. Every record once, each run fetching only what
/// changed.
#[test]
fn dlt_continues_what_resttap_loaded_and_resttap_what_dlt_loaded() {
    let mock = Mock::start(&["--records", "200", "--page-size", "50"]);
    let s = Scratch::new();
    let config = repo_root().join("examples/analytics-api-incremental.yaml");
    let db = s.db();
    assert_ok(&run(&config, &mock, &db, TOKEN, &[]));
    let check = |rev: u64, who: &str| {
        let c = open(&db);
        let last = strings(&c, "SELECT load_id FROM t_dataset._dlt_loads ORDER BY load_id DESC LIMIT 1").remove(0);
        for (t, all, distinct, this) in root_counts(&c, &last) {
            let want = resttap_mock::data::record_count(&t, 200, rev, 2) as i64;
            assert_eq!((all, distinct), (want, want), "{t} after {who} loaded revision {rev}");
            if rev > 0 {
                // the changed fifth and the added ones, not everything
                assert!(this > 0 && this * 2 < all, "{t}: {who}'s load wrote {this} of {all} rows");
            }
        }
    };
    check(0, "resttap");
    mock.set_revision(1);
    let dest = format!("duckdb:{}", db.display());
    dlt_load(&config, &mock.url, TOKEN, &dest, &s.path("fresh-pipelines"), "t");
    check(1, "dlt");
    mock.set_revision(2);
    assert_ok(&run(&config, &mock, &db, TOKEN, &[]));
    check(2, "resttap");
    let c = open(&db);
    assert_eq!(count(&c, "SELECT count(*) FROM t_dataset._dlt_loads"), 3);
}

/// `decimal` (with and without precision and scale), `wei`, `binary` and `time` hints and a
/// nested table's hints load as dlt loads them: the same column types, the same values
/// (rounded to the scale as dlt's are; bytes from base64 and hex; times with an offset in UTC),
/// the same variant columns for values that fit none, revision after revision; the stored
/// schema keeps the precision and scale as hinted.
#[test]
fn decimal_wei_binary_and_time_hints_and_nested_hints_load_as_dlt_loads_them() {
    let mock = Mock::start(&["--records", "10"]);
    let s = Scratch::new();
    let config = repo_root().join("crates/resttap/tests/typed.yaml");
    let (dlt_db, our_db) = (s.path("dlt.duckdb"), s.db());
    let dest = format!("duckdb:{}", dlt_db.display());
    for rev in 0..2 {
        mock.set_revision(rev);
        dlt_load(&config, &mock.url, TOKEN, &dest, &s.path("pipelines"), "t");
        assert_ok(&run(&config, &mock, &our_db, TOKEN, &[]));
        compare_tables(&open(&dlt_db), &open(&our_db), &format!("revision {rev}"), &random);
    }
    let ours = open(&our_db);
    let cols = columns(&ours, "payments");
    for want in [
        "amount DECIMAL(10,2) YES",
        "fee DECIMAL(38,9) YES",
        "balance_wei DECIMAL(38,0) YES",
        "receipt BLOB YES",
        "due TIME YES",
        "amount__v_text VARCHAR YES",
    ] {
        assert!(cols.contains(&want.to_string()), "{want} not in {cols:?}");
    }
    assert!(columns(&ours, "payments__lines").contains(&"price DECIMAL(6,2) YES".to_string()));
    let one = |sql: &str| strings(&ours, sql).join(",");
    assert_eq!(one("SELECT CAST(receipt AS VARCHAR) FROM t_dataset.payments WHERE id = 1"), "hello");
    assert_eq!(one("SELECT CAST(due AS VARCHAR) FROM t_dataset.payments WHERE id = 1"), "07:30:00");
    assert_eq!(one("SELECT CAST(amount AS VARCHAR) FROM t_dataset.payments WHERE id = 2"), "7.78");
    let schema: String = ours
        .query_row("SELECT schema FROM t_dataset._dlt_version ORDER BY inserted_at DESC LIMIT 1", [], |r| r.get(0))
        .unwrap();
    let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
    let amount = &schema["tables"]["payments"]["columns"]["amount"];
    assert_eq!(
        (amount["data_type"].as_str(), amount["precision"].as_u64(), amount["scale"].as_u64()),
        (Some("decimal"), Some(10), Some(2))
    );
    assert_eq!(schema["tables"]["payments"]["columns"]["fee"].get("precision"), None);
    assert_eq!(schema["tables"]["payments"]["columns"]["balance_wei"]["data_type"], "wei");
}
