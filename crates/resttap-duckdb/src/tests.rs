use std::sync::Arc;

use resttap_normalize::Normalizer;
use serde_json::{Value, json};

use super::*;

use resttap_load::contract::{items, load_into};

fn load(db: &mut DuckDb, wd: WriteDisposition, records: &[Value]) -> Result<CommitReport, LoadError> {
    load_into(db, wd, records, 2)
}

/// Resource `resource` loading into table `items`.
fn into_items(resource: &str, wd: WriteDisposition, primary_key: &str, keys_unique: bool) -> ResourceLoad {
    ResourceLoad {
        resource: resource.into(),
        root_table: "items".into(),
        write_disposition: wd,
        primary_key: vec![primary_key.into()],
        keys_unique,
        table_format: Default::default(),
        merge: Default::default(),
        contract: Default::default(),
    }
}

/// The plan of load `load_id`: `resources`, the tables of `schema`, no pipeline state.
fn plan(load_id: &str, schema: Schema, resources: Vec<ResourceLoad>) -> LoadPlan {
    LoadPlan {
        load_id: load_id.into(),
        schema_name: "rest_api".into(),
        schema,
        resources,
        state: None,
        state_resources: vec![],
    }
}

fn q<T: duckdb::types::FromSql>(db: &DuckDb, sql: &str) -> T {
    db.connection().query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn rows(db: &DuckDb, sql: &str) -> Vec<String> {
    let mut st = db.connection().prepare(sql).unwrap();
    st.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
}

fn temp() -> (tempfile::TempDir, DuckDb) {
    let dir = tempfile::tempdir().unwrap();
    let db = DuckDb::open(&dir.path().join("t.duckdb"), "ds").unwrap();
    (dir, db)
}

/// A new file for the destination contract's scenarios, read through the same connection.
struct Contract {
    db: DuckDb,
    _dir: tempfile::TempDir,
}

impl resttap_load::contract::Harness for Contract {
    fn dest(&mut self) -> &mut dyn Destination {
        &mut self.db
    }

    fn rows(&mut self, sql: &str) -> Vec<String> {
        rows(&self.db, sql)
    }
}

mod contract {
    use super::*;

    resttap_load::contract_tests!({
        let (_dir, db) = temp();
        Contract { db, _dir }
    });

    mod strategies {
        use super::*;

        resttap_load::contract_tests!(@strategies {
            let (_dir, db) = temp();
            Contract { db, _dir }
        });
    }
}

#[test]
fn new_columns_are_added_and_types_kept() {
    let (_d, mut db) = temp();
    load(&mut db, WriteDisposition::Merge, &[json!({"id": 1, "n": 1})]).unwrap();
    load(&mut db, WriteDisposition::Merge, &[json!({"id": 2, "n": "many", "extra": true})]).unwrap();
    let cols = rows(
        &db,
        "SELECT column_name || ' ' || data_type FROM information_schema.columns WHERE table_name = 'items' ORDER BY ordinal_position",
    );
    assert_eq!(
        cols,
        vec!["id BIGINT", "n BIGINT", "_dlt_load_id VARCHAR", "_dlt_id VARCHAR", "n__v_text VARCHAR", "extra BOOLEAN"]
    );
    assert_eq!(q::<String>(&db, "SELECT n__v_text FROM ds.items WHERE id = 2"), "many");
}

/// Writes `record` into `items` as load `load_id` without the normalizer knowing the dataset
/// (so its types may conflict with the table's), then commits with `primary_key` and a state.
fn load_raw(db: &mut DuckDb, load_id: &str, record: Value, primary_key: &str) -> Result<CommitReport, LoadError> {
    let mut n = Normalizer::new(items(WriteDisposition::Merge, load_id, 10), &Schema::default());
    n.push(&record, &mut Vec::new()).unwrap();
    db.begin(load_id)?;
    let written = n.finish().iter().try_for_each(|b| db.stage(b));
    if let Err(e) = written {
        db.abort();
        return Err(e);
    }
    let resources = vec![into_items("items", WriteDisposition::Merge, primary_key, false)];
    let state = PipelineState { version: 1, ..PipelineState::new("p") };
    db.commit(&LoadPlan { state: Some(state), ..plan(load_id, n.schema().clone(), resources) })
}

#[test]
fn a_failed_load_changes_nothing() {
    let (_d, mut db) = temp();
    load(&mut db, WriteDisposition::Merge, &[json!({"id": 1, "v": "a"})]).unwrap();
    let unchanged = |db: &mut DuckDb| {
        assert_eq!(rows(db, "SELECT id::VARCHAR || '=' || v FROM ds.items"), vec!["1=a"]);
        assert_eq!(q::<i64>(db, "SELECT count(*) FROM ds._dlt_loads"), 1);
        assert_eq!(db.load_state("p").unwrap(), None, "state is written with the data or not at all");
        let cols = rows(db, "SELECT column_name FROM information_schema.columns WHERE table_name = 'items'");
        assert!(!cols.contains(&"w".to_string()), "a column of a failed load is not added: {cols:?}");
    };
    // a value the table's column cannot take fails while the rows are written
    let err = load_raw(&mut db, "2", json!({"id": "not a number", "v": "b", "w": 1}), "id").unwrap_err();
    assert!(err.to_string().contains("items"), "{err}");
    unchanged(&mut db);
    // a commit that fails after its rows are written (a key column the table lacks) rolls them back
    let err = load_raw(&mut db, "3", json!({"id": 2, "v": "b", "w": 1}), "no_such_key").unwrap_err();
    assert!(err.to_string().contains("no_such_key") && err.to_string().contains("items"), "{err}");
    unchanged(&mut db);
    // and the next load goes through
    load(&mut db, WriteDisposition::Merge, &[json!({"id": 1, "v": "a2"})]).unwrap();
    assert_eq!(rows(&db, "SELECT v FROM ds.items"), vec!["a2"]);
}

#[test]
fn a_dataset_not_yet_in_the_file_reads_as_empty_and_another_datasets_tables_stay_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.duckdb");
    let mut db = DuckDb::open(&path, "ds").unwrap();
    assert!(!db.dataset_exists().unwrap());
    assert!(db.existing_schema().unwrap().tables.is_empty());
    assert_eq!(db.load_state("p").unwrap(), None);
    load(&mut db, WriteDisposition::Merge, &[json!({"id": 1, "l": [1, 2]})]).unwrap();
    assert!(db.dataset_exists().unwrap());
    db.save_state(&PipelineState::new("p")).unwrap();
    drop(db);

    // the same file, another dataset: nothing of `ds` is seen, and a first load there works
    let mut other = DuckDb::open(&path, "other").unwrap();
    assert!(!other.dataset_exists().unwrap());
    assert!(other.existing_schema().unwrap().tables.is_empty());
    assert_eq!(other.load_state("p").unwrap(), None);
    load(&mut other, WriteDisposition::Merge, &[json!({"id": 7, "x": true})]).unwrap();
    let tables = other.existing_schema().unwrap();
    assert_eq!(tables.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["items"]);
    assert!(tables.table("items").unwrap().column("l").is_none());
    // a schema of that name with no tables (created by hand) reads as empty as well
    other.connection().execute_batch("CREATE SCHEMA empty_one").unwrap();
    drop(other);
    let mut empty = DuckDb::open(&path, "empty_one").unwrap();
    assert!(empty.dataset_exists().unwrap());
    assert!(empty.existing_schema().unwrap().tables.is_empty());
    drop(empty);

    let mut db = DuckDb::open(&path, "ds").unwrap();
    let s = db.existing_schema().unwrap();
    assert_eq!(s.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["items", "items__l"]);
    assert_eq!(db.load_state("p").unwrap().map(|s| s.pipeline_name), Some("p".to_string()));
    assert_eq!(q::<i64>(&db, "SELECT count(*) FROM ds.items"), 1);
}

#[test]
fn rising_keys_skip_the_duplicate_check_only_for_a_table_one_resource_writes() {
    // two resources into one table, each with rising keys, together bringing key 2 twice
    let (_d, mut db) = temp();
    db.begin("1").unwrap();
    let mut batches = Vec::new();
    let mut resources = Vec::new();
    let mut schema = Schema::default();
    for (resource, ids) in [("a", [1, 2]), ("b", [2, 3])] {
        let mut n = Normalizer::new(items(WriteDisposition::Merge, "1", 10), &Schema::default());
        for id in ids {
            n.push(&json!({"id": id, "src": resource}), &mut batches).unwrap();
        }
        batches.extend(n.finish());
        assert!(n.keys_rising());
        resources.push(into_items(resource, WriteDisposition::Merge, "id", n.keys_rising()));
        schema = n.schema().clone();
    }
    db.stage_all(&mut batches.into_iter()).unwrap();
    db.commit(&plan("1", schema, resources)).unwrap();
    assert_eq!(rows(&db, "SELECT id || src FROM ds.items ORDER BY id"), vec!["1a", "2b", "3b"]);
}

#[test]
fn a_resources_last_rows_go_in_early_and_the_table_takes_more_after_them() {
    // resource a's last batch is written at once (`last`); b then adds rows to the same table
    // and a new column, through the same stage_all
    let (_d, mut db) = temp();
    db.begin("1").unwrap();
    let mut batches = Vec::new();
    let mut schema = Schema::default();
    for (resource, ids) in [("a", 1..=5), ("b", 6..=8)] {
        let mut n = Normalizer::new(items(WriteDisposition::Append, "1", 2), &schema);
        let start = batches.len();
        for id in ids {
            let record = if resource == "a" { json!({"id": id}) } else { json!({"id": id, "extra": id * 10}) };
            n.push(&record, &mut batches).unwrap();
        }
        let full = batches.len();
        batches.extend(n.finish());
        assert!(batches[start..full].iter().all(|b| !b.last) && batches[full..].iter().all(|b| b.last));
        schema = n.schema().clone();
    }
    assert_eq!(batches.iter().filter(|b| b.last).count(), 2);
    db.stage_all(&mut batches.into_iter()).unwrap();
    let resources = vec![into_items("a", WriteDisposition::Append, "id", false)];
    db.commit(&plan("1", schema, resources)).unwrap();
    assert_eq!(
        rows(&db, "SELECT id || ':' || coalesce(extra::TEXT, '-') FROM ds.items ORDER BY id"),
        vec!["1:-", "2:-", "3:-", "4:-", "5:-", "6:60", "7:70", "8:80"]
    );
}

#[test]
fn a_deleting_commit_gets_memory_by_the_rows_it_deletes_from() {
    assert_eq!(commit_memory_mb(0, None), COMMIT_MEMORY_MIN_MB);
    assert_eq!(commit_memory_mb(5_000_000, None), COMMIT_MEMORY_MIN_MB, "N=1,000,000 of the seed: 256 MB passed");
    assert_eq!(commit_memory_mb(30_000_000, None), 1374, "N=6,000,000 of the seed: 1 GB passed, 256 MB failed");
    // never more than DuckDB's own default, what the machine (or its cgroup) has
    assert_eq!(commit_memory_mb(30_000_000, Some(20_000)), 1374);
    assert_eq!(commit_memory_mb(30_000_000, Some(1000)), 1000);
    assert_eq!(commit_memory_mb(0, Some(200)), 200, "below the minimum on a small machine");
}

#[test]
fn duckdbs_default_memory_limit_is_read_as_it_prints_sizes() {
    assert_eq!(parse_duckdb_size_mb("18.8 GiB"), Some(19251));
    assert_eq!(parse_duckdb_size_mb("908.8 MiB"), Some(908));
    assert_eq!(parse_duckdb_size_mb("1.5 TiB"), Some(1_572_864));
    assert_eq!(parse_duckdb_size_mb("512.0 KiB"), Some(0));
    assert_eq!(parse_duckdb_size_mb("100 bytes"), Some(0));
    for bad in ["lots", "12 XB", "GiB", "-1.0 GiB", ""] {
        assert_eq!(parse_duckdb_size_mb(bad), None, "{bad}");
    }
    // what a database opened for a load reads is DuckDB's default, not the load's 32 MB
    let (_d, db) = temp();
    let fresh: String = Connection::open_in_memory()
        .unwrap()
        .query_row("SELECT current_setting('memory_limit')", [], |r| r.get(0))
        .unwrap();
    let default = db.default_memory_mb().unwrap();
    assert_eq!(default, parse_duckdb_size_mb(&fresh), "{fresh}");
    assert!(default.is_some_and(|mb| mb > 32), "{fresh}");
}

#[test]
fn a_commit_memory_limit_of_the_users_is_used_and_checked() {
    let (_d, mut db) = temp();
    let records: Vec<Value> = (0..3000).map(|i| json!({"id": i, "v": "a", "tags": [i, i + 1]})).collect();
    load(&mut db, WriteDisposition::Merge, &records).unwrap();
    // the sizing counts the rows the tables hold when a load begins
    db.begin("sizes").unwrap();
    assert_eq!((db.rows_at_begin["items"], db.rows_at_begin["items__tags"]), (3000, 6000));
    db.abort();
    // a merge that replaces every record deletes the older rows by side alone, under the
    // load's limit: it needs none of the commit's (the seed's scheduled run)
    db.set_commit_memory(Some("256KB".into()));
    load(&mut db, WriteDisposition::Merge, &records).unwrap();
    assert_eq!(q::<i64>(&db, "SELECT count(*) FROM ds.items__tags"), 6000);
    // from here a merge of half the records, whose deletes are scattered (joins with the keys)
    let records = &records[..1500];
    // a value DuckDB cannot read: the merge stops before it deletes anything
    db.set_commit_memory(Some("lots".into()));
    let err = load(&mut db, WriteDisposition::Merge, records).unwrap_err().to_string();
    assert!(err.contains("memory limit for the commit to \"lots\""), "{err}");
    assert_eq!(q::<i64>(&db, "SELECT count(*) FROM ds.items"), 3000);
    assert_eq!(q::<i64>(&db, "SELECT count(*) FROM ds._dlt_loads"), 2);
    // too little to merge: the error says what to do, and nothing changed
    db.set_commit_memory(Some("256KB".into()));
    let err = load(&mut db, WriteDisposition::Merge, records).unwrap_err();
    assert!(matches!(err, LoadError::OutOfMemory { .. }), "{err}");
    assert!(err.to_string().contains("RESTTAP_DUCKDB_COMMIT_MEMORY") && err.to_string().contains("256KB"), "{err}");
    assert!(!err.to_string().contains("SET memory_limit"), "DuckDB's own advice is left out: {err}");
    assert_eq!(q::<i64>(&db, "SELECT count(*) FROM ds.items"), 3000);
    assert_eq!(q::<i64>(&db, "SELECT count(*) FROM ds.items__tags"), 6000);
    // enough: it goes through, and the connection is back under the load's limit
    db.set_commit_memory(Some("64MB".into()));
    load(&mut db, WriteDisposition::Merge, records).unwrap();
    assert_eq!(q::<i64>(&db, "SELECT count(*) FROM ds.items__tags"), 6000);
    assert_eq!(
        q::<i64>(&db, "SELECT count(*) FROM ds.items WHERE _dlt_load_id = (SELECT max(load_id) FROM ds._dlt_loads)"),
        1500
    );
    assert_eq!(q::<String>(&db, "SELECT current_setting('memory_limit')"), q::<String>(&db, "SELECT '30.5 MiB'"));
}

/// The expected row `i` of [`scanned_batches_arrive_whole`]'s table.
#[allow(clippy::type_complexity)]
fn scan_row(i: i64) -> (i64, Option<String>, Option<f64>, Option<bool>, Option<i64>, Option<i64>, Option<String>) {
    let text = match i % 6 {
        0 => String::new(),
        1 => "abc".into(),
        2 => "123456789012".into(),                     // the longest DuckDB inlines
        3 => "1234567890123".into(),                    // the shortest it does not
        4 => format!("é漢字🙂 {i} {}", "x".repeat(40)), // multi-byte, long
        _ => format!("{i:>12}"),
    };
    (
        i,
        (i % 7 != 0).then_some(text),
        (i % 11 != 0).then_some(i as f64 / 3.0),
        (i % 13 != 0).then_some(i % 2 == 0),
        (i % 17 != 0).then_some(i * 1_000_003),
        (i % 19 != 0).then_some(i - 2_500),
        (i % 23 != 0).then(|| format!("{{\"k\":{i}}}")),
    )
}

#[test]
fn scanned_batches_arrive_whole() {
    // every type a column can have, nulls in each, strings inlined and not, batches longer than
    // a DuckDB vector (sliced), shorter and empty, through one INSERT as stage_all does
    use arrow::array::{ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray};
    use arrow::array::{RecordBatch, TimestampMicrosecondArray};
    let (_d, db) = temp();
    db.connection()
        .execute_batch(
            "CREATE SCHEMA ds; CREATE TABLE ds.t (id BIGINT, s VARCHAR, d DOUBLE, b BOOLEAN, \
             ts TIMESTAMP WITH TIME ZONE, dt DATE, j JSON)",
        )
        .unwrap();
    let batch = |range: std::ops::Range<i64>| {
        let rows: Vec<_> = range.map(scan_row).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1.clone()))),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| r.3))),
            Arc::new(TimestampMicrosecondArray::from_iter(rows.iter().map(|r| r.4)).with_timezone("UTC")),
            Arc::new(Date32Array::from_iter(rows.iter().map(|r| r.5.map(|d| d as i32)))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.6.clone()))),
        ];
        let names = ["id", "s", "d", "b", "ts", "dt", "j"];
        RecordBatch::try_from_iter(names.into_iter().zip(columns)).unwrap()
    };
    let columns: Vec<Column> = [
        ("id", DataType::Bigint),
        ("s", DataType::Text),
        ("d", DataType::Double),
        ("b", DataType::Bool),
        ("ts", DataType::Timestamp),
        ("dt", DataType::Date),
        ("j", DataType::Json),
    ]
    .into_iter()
    .map(|(name, data_type)| Column { name: name.into(), data_type, nullable: true, primary_key: false })
    .collect();
    let mut pending = Pending::new(&qualified("ds", "t"), &columns, "test".into());
    pending.batches = vec![batch(0..4500), batch(4500..4500), batch(4500..4600), batch(4600..6000)];
    pending.flush(db.connection()).unwrap();
    assert!(pending.batches.is_empty() && pending.rows() == 0);
    let mut st = db
        .connection()
        .prepare(
            "SELECT id, s, d, b, epoch_us(ts), CAST(dt - DATE '1970-01-01' AS BIGINT), CAST(j AS VARCHAR) \
             FROM ds.t ORDER BY id",
        )
        .unwrap();
    let got: Vec<_> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want: Vec<_> = (0..6000).map(scan_row).collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    // the strings are DuckDB's own copies: equal and ordered as DuckDB compares them
    let twelve = want.iter().filter(|r| r.1.as_deref() == Some("123456789012")).count();
    assert_eq!(q::<i64>(&db, "SELECT count(*) FROM ds.t WHERE s = '123456789012'"), twelve as i64);
    assert_eq!(
        q::<String>(&db, "SELECT max(s) FROM ds.t WHERE s LIKE 'é%'"),
        want.iter().filter_map(|r| r.1.clone()).filter(|s| s.starts_with('é')).max().unwrap()
    );
    // nothing is left behind in the registry, and an id is read once
    let id_column = Column { name: "id".into(), data_type: DataType::Bigint, nullable: true, primary_key: false };
    let staged = scan::Staged { columns: Arc::from([id_column]), batches: vec![] };
    let id = staged.register().id();
    let err = db.connection().execute_batch(&format!("SELECT * FROM {}({id})", scan::FUNCTION)).unwrap_err();
    assert!(err.to_string().contains("no such batches"), "{err}");
}
