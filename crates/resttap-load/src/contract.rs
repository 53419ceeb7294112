//! The destination contract as tests: scenarios that every [`Destination`] must pass, run by
//! each destination crate's tests through [`contract_tests!`](crate::contract_tests) against a
//! real instance (a DuckDB file, a PostgreSQL server). A scenario drives the destination as the
//! pipeline does (normalizer batches, `begin`, `stage_all`, `commit` or `abort`) and reads the
//! dataset back with SQL that DuckDB and PostgreSQL both take, through the [`Harness`]'s own
//! reader. The dataset is `ds`; the root table `items`, keyed by `id`.
//!
//! Compiled with the `contract` feature only (the destination crates' dev-dependencies).

use std::sync::Arc;

use resttap_normalize::{ColumnHint, Normalizer, NormalizerConfig};
use resttap_schema::merge::{MergeSpec, MergeStrategy, Scd2, SortOrder};
use resttap_schema::{DataType, Schema, TableFormat, WriteDisposition};
use serde_json::{Value, json};

use crate::{CommitReport, Destination, LoadError, LoadPlan, PipelineState, ResourceLoad, TableReport};

/// A destination under test, with dataset `ds`, and a reader of what it committed.
pub trait Harness {
    /// The destination.
    fn dest(&mut self) -> &mut dyn Destination;
    /// The rows of `sql` (one column, as text).
    fn rows(&mut self, sql: &str) -> Vec<String>;
    /// The `table_format` the scenarios load with (a lake's Delta tables).
    fn table_format(&self) -> TableFormat {
        TableFormat::Native
    }
}

fn one(h: &mut dyn Harness, sql: &str) -> String {
    let rows = h.rows(sql);
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows.into_iter().next().unwrap_or_default()
}

fn count(h: &mut dyn Harness, table: &str) -> i64 {
    one(h, &format!("SELECT CAST(count(*) AS VARCHAR) FROM ds.{table}")).parse().expect("a count")
}

fn load_id() -> String {
    format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64())
}

/// The normalizer's configuration for table `items` keyed by `id` (for a destination's own
/// tests too).
pub fn items(wd: WriteDisposition, load_id: &str, batch_rows: usize) -> NormalizerConfig {
    NormalizerConfig {
        table: "items".into(),
        write_disposition: wd,
        primary_key: vec!["id".into()],
        max_nesting: None,
        load_id: Arc::from(load_id),
        batch_rows,
        hints: vec![],
        nested_hints: vec![],
        row_ids: resttap_normalize::RowIds::Random,
        validity: None,
        contract: Default::default(),
    }
}

fn into_items(wd: WriteDisposition, keys_unique: bool) -> ResourceLoad {
    into_items_as(wd, keys_unique, TableFormat::Native)
}

fn into_items_as(wd: WriteDisposition, keys_unique: bool, table_format: TableFormat) -> ResourceLoad {
    ResourceLoad {
        table_format,
        resource: "items".into(),
        root_table: "items".into(),
        write_disposition: wd,
        primary_key: vec!["id".into()],
        keys_unique,
        merge: Default::default(),
        contract: Default::default(),
    }
}

fn plan(load_id: &str, schema: Schema, resources: Vec<ResourceLoad>, state: Option<PipelineState>) -> LoadPlan {
    let state_resources = resources.iter().map(|r| r.resource.clone()).collect();
    LoadPlan { load_id: load_id.into(), schema_name: "rest_api".into(), schema, resources, state, state_resources }
}

/// One load of `records` into `items` of destination `d`, in batches of `batch_rows`, as the
/// pipeline loads (staging failure aborts); for a destination's own tests too.
pub fn load_into(
    d: &mut dyn Destination,
    wd: WriteDisposition,
    records: &[Value],
    batch_rows: usize,
) -> Result<CommitReport, LoadError> {
    load_into_as(d, wd, records, batch_rows, TableFormat::Native)
}

/// [`load_into`] with tables of `table_format`.
pub fn load_into_as(
    d: &mut dyn Destination,
    wd: WriteDisposition,
    records: &[Value],
    batch_rows: usize,
    table_format: TableFormat,
) -> Result<CommitReport, LoadError> {
    load_with(d, wd, &MergeSpec::default(), vec![], records, batch_rows, table_format)
}

/// One load of `records` into `items` merging as `spec` says, with column hints `hints`.
pub fn load_with(
    d: &mut dyn Destination,
    wd: WriteDisposition,
    spec: &MergeSpec,
    hints: Vec<ColumnHint>,
    records: &[Value],
    batch_rows: usize,
    table_format: TableFormat,
) -> Result<CommitReport, LoadError> {
    let id = load_id();
    let existing = d.existing_schema()?;
    let (row_ids, validity) = crate::merge::row_ids(spec, wd == WriteDisposition::Merge, &id);
    let cfg = NormalizerConfig { hints, row_ids, validity, ..items(wd, &id, batch_rows) };
    let mut n = Normalizer::new(cfg, &existing);
    d.begin(&id)?;
    let mut out = Vec::new();
    for r in records {
        n.push(r, &mut out).expect("normalizes");
    }
    out.extend(n.finish());
    if let Err(e) = d.stage_all(&mut out.into_iter()) {
        d.abort();
        return Err(e);
    }
    let res = ResourceLoad { merge: spec.clone(), ..into_items_as(wd, n.keys_rising(), table_format) };
    d.commit(&plan(&id, n.schema().clone(), vec![res], None))
}

fn load_in(
    h: &mut dyn Harness,
    wd: WriteDisposition,
    records: &[Value],
    batch_rows: usize,
) -> Result<CommitReport, LoadError> {
    let f = h.table_format();
    load_into_as(h.dest(), wd, records, batch_rows, f)
}

fn load(h: &mut dyn Harness, wd: WriteDisposition, records: &[Value]) -> CommitReport {
    load_in(h, wd, records, 2).expect("the load commits")
}

/// `merge`: records replaced with their nested rows, the last of a load's duplicates kept.
pub fn merge_replaces_records_and_their_nested_rows_and_keeps_the_last_duplicate(h: &mut dyn Harness) {
    load(
        h,
        WriteDisposition::Merge,
        &[json!({"id": 1, "v": "a", "tags": ["x", "y"]}), json!({"id": 2, "v": "b", "tags": ["z"]})],
    );
    let report = load(
        h,
        WriteDisposition::Merge,
        &[
            json!({"id": 2, "v": "b2", "tags": ["z2", "z3"]}),
            json!({"id": 3, "v": "first", "tags": ["dropped"]}),
            json!({"id": 3, "v": "last", "tags": ["kept"]}),
        ],
    );
    assert_eq!(
        report.tables,
        vec![TableReport { table: "items".into(), rows: 2 }, TableReport { table: "items__tags".into(), rows: 3 }]
    );
    assert_eq!(h.rows("SELECT CAST(id AS VARCHAR) || '=' || v FROM ds.items ORDER BY id"), ["1=a", "2=b2", "3=last"]);
    assert_eq!(h.rows("SELECT value FROM ds.items__tags ORDER BY value"), ["kept", "x", "y", "z2", "z3"]);
    assert_eq!(count(h, "_dlt_loads"), 2);
    assert_eq!(
        one(h, "SELECT CAST(count(*) AS VARCHAR) FROM information_schema.tables WHERE table_schema = 'ds_staging'"),
        "0",
        "nothing is left staged"
    );
    // a first load into new tables collapses its duplicates too
    let fresh: Vec<Value> = vec![
        json!({"id": 10, "v": "old", "tags": ["gone"]}),
        json!({"id": 11, "v": "b", "tags": ["b"]}),
        json!({"id": 10, "v": "new", "tags": ["kept", "too"]}),
    ];
    let id = load_id();
    let f = h.table_format();
    let d = h.dest();
    let mut n = Normalizer::new(
        NormalizerConfig { table: "fresh".into(), ..items(WriteDisposition::Merge, &id, 2) },
        &d.existing_schema().unwrap(),
    );
    d.begin(&id).unwrap();
    let mut out = Vec::new();
    for r in &fresh {
        n.push(r, &mut out).unwrap();
    }
    out.extend(n.finish());
    d.stage_all(&mut out.into_iter()).unwrap();
    let res = ResourceLoad {
        resource: "fresh".into(),
        root_table: "fresh".into(),
        ..into_items_as(WriteDisposition::Merge, false, f)
    };
    d.commit(&plan(&id, n.schema().clone(), vec![res], None)).unwrap();
    assert_eq!(h.rows("SELECT CAST(id AS VARCHAR) || '=' || v FROM ds.fresh ORDER BY id"), ["10=new", "11=b"]);
    assert_eq!(h.rows("SELECT value FROM ds.fresh__tags ORDER BY value"), ["b", "kept", "too"]);
}

/// A nested table new in a merge keeps only the rows of the duplicate that won.
pub fn a_nested_table_new_in_a_merge_keeps_only_the_winning_duplicates_rows(h: &mut dyn Harness) {
    load(h, WriteDisposition::Merge, &[json!({"id": 1, "v": "a"})]);
    load(
        h,
        WriteDisposition::Merge,
        &[
            json!({"id": 1, "v": "first", "tags": ["dropped", "also dropped"]}),
            json!({"id": 2, "v": "b", "tags": ["b"]}),
            json!({"id": 1, "v": "last", "tags": ["kept"]}),
        ],
    );
    assert_eq!(h.rows("SELECT CAST(id AS VARCHAR) || '=' || v FROM ds.items ORDER BY id"), ["1=last", "2=b"]);
    assert_eq!(h.rows("SELECT value FROM ds.items__tags ORDER BY value"), ["b", "kept"]);
    let joined = "SELECT CAST(count(*) AS VARCHAR) FROM ds.items__tags t JOIN ds.items i ON t._dlt_root_id = i._dlt_id";
    assert_eq!(one(h, joined), "2");
    load(h, WriteDisposition::Merge, &[json!({"id": 2, "v": "b2", "tags": ["b2", "b3"]})]);
    assert_eq!(h.rows("SELECT value FROM ds.items__tags ORDER BY value"), ["b2", "b3", "kept"]);
}

/// `append` keeps every load's rows; `replace` keeps only the last load's, nested rows at every
/// depth included.
pub fn replace_and_append(h: &mut dyn Harness) {
    load(h, WriteDisposition::Append, &[json!({"id": 1, "tags": ["x"]})]);
    load(h, WriteDisposition::Append, &[json!({"id": 1, "tags": ["x"]})]);
    assert_eq!(count(h, "items"), 2);
    assert_eq!(count(h, "items__tags"), 2);
    load(h, WriteDisposition::Replace, &[json!({"id": 5})]);
    assert_eq!(count(h, "items"), 1);
    assert_eq!(count(h, "items__tags"), 0, "nested rows of replaced data go too");
    let deep = |v: i64| json!({"id": v, "tags": [v], "o": {"l": [[v, v], [v]]}});
    let report = load(h, WriteDisposition::Replace, &[deep(6), deep(7)]);
    assert_eq!(report.tables.iter().map(|t| t.rows).collect::<Vec<_>>(), vec![2, 2, 4, 6]);
    load(h, WriteDisposition::Replace, &[deep(8)]);
    assert_eq!(h.rows("SELECT CAST(id AS VARCHAR) FROM ds.items"), ["8"]);
    assert_eq!(h.rows("SELECT DISTINCT CAST(value AS VARCHAR) FROM ds.items__tags"), ["8"]);
    assert_eq!(count(h, "items__o__l"), 2);
    assert_eq!(h.rows("SELECT DISTINCT CAST(value AS VARCHAR) FROM ds.items__o__l__list"), ["8"]);
    assert_eq!(count(h, "items__o__l__list"), 3);
}

/// New columns are added; a changed type goes to a variant column; the dataset's schema reads
/// back with its types, nullability and nesting.
pub fn new_columns_are_added_and_types_kept(h: &mut dyn Harness) {
    load(h, WriteDisposition::Merge, &[json!({"id": 1, "n": 1, "at": "2024-01-01T00:00:00Z", "o": {"l": [[1]]}})]);
    load(h, WriteDisposition::Merge, &[json!({"id": 2, "n": "many", "extra": true, "day": "x"})]);
    let s = h.dest().existing_schema().unwrap();
    let t = s.table("items").expect("items");
    let cols: Vec<(&str, DataType)> = t.columns.iter().map(|c| (c.name.as_str(), c.data_type)).collect();
    assert_eq!(
        cols,
        [
            ("id", DataType::Bigint),
            ("n", DataType::Bigint),
            ("at", DataType::Timestamp),
            ("_dlt_load_id", DataType::Text),
            ("_dlt_id", DataType::Text),
            ("n__v_text", DataType::Text),
            ("extra", DataType::Bool),
            ("day", DataType::Text)
        ]
    );
    assert!(!t.column("id").unwrap().nullable && t.column("extra").unwrap().nullable);
    assert_eq!(s.table("items__o__l__list").unwrap().parent.as_deref(), Some("items__o__l"));
    assert!(s.table("_dlt_loads").is_none(), "dlt's tables are not the user's");
    assert_eq!(one(h, "SELECT n__v_text FROM ds.items WHERE id = 2"), "many");
    assert_eq!(
        one(
            h,
            "SELECT CAST(count(*) AS VARCHAR) FROM ds.items WHERE \"at\" = CAST('2024-01-01 00:00:00+00:00' AS TIMESTAMP WITH TIME ZONE)"
        ),
        "1"
    );
}

/// Rows across many batches and flushes, with columns that first appear part-way, into new
/// tables and then merged over them: nothing doubles, every value where it belongs.
pub fn rows_span_batches_and_follow_new_columns(h: &mut dyn Harness) {
    let n: i64 = 12_000;
    let split = 5_000;
    let records = |version: &str| -> Vec<Value> {
        (0..n)
            .map(|i| {
                if i < split {
                    json!({"id": i, "v": version, "tags": [i]})
                } else if version == "a" {
                    json!({"id": i, "v": version, "late": i * 2, "tags": [i, -1]})
                } else {
                    json!({"id": i, "v": version, "late": i * 2, "later": i * 3, "tags": [i, -1]})
                }
            })
            .collect()
    };
    let num = |h: &mut dyn Harness, sql: &str| -> i64 { one(h, sql).parse().expect("a number") };
    let late = n - split;
    for version in ["a", "b"] {
        load_in(h, WriteDisposition::Merge, &records(version), 2048).unwrap();
        assert_eq!(h.rows("SELECT DISTINCT v FROM ds.items"), [version]);
        assert_eq!(count(h, "items"), n);
        assert_eq!(num(h, "SELECT CAST(count(late) AS VARCHAR) FROM ds.items"), late);
        assert_eq!(
            num(h, "SELECT CAST(count(*) AS VARCHAR) FROM ds.items WHERE late IS NOT NULL AND late <> id * 2"),
            0
        );
        assert_eq!(count(h, "items__tags"), n + late);
        let joined =
            "SELECT CAST(count(*) AS VARCHAR) FROM ds.items__tags t JOIN ds.items i ON t._dlt_parent_id = i._dlt_id";
        assert_eq!(num(h, joined), n + late);
    }
    assert_eq!(num(h, "SELECT CAST(count(later) AS VARCHAR) FROM ds.items"), late);
    assert_eq!(num(h, "SELECT CAST(count(*) AS VARCHAR) FROM ds.items WHERE later IS NOT NULL AND later <> id * 3"), 0);
}

/// A load that is aborted, or whose commit fails, leaves data, columns, loads and state as they
/// were; the next load goes through.
pub fn a_failed_load_changes_nothing(h: &mut dyn Harness) {
    let f = h.table_format();
    load(h, WriteDisposition::Merge, &[json!({"id": 1, "v": "a"})]);
    let unchanged = |h: &mut dyn Harness| {
        assert_eq!(h.rows("SELECT CAST(id AS VARCHAR) || '=' || v FROM ds.items"), ["1=a"]);
        assert_eq!(count(h, "_dlt_loads"), 1);
        assert_eq!(h.dest().load_state("p").unwrap(), None, "state is written with the data or not at all");
        let s = h.dest().existing_schema().unwrap();
        assert!(s.table("items").unwrap().column("w").is_none(), "a column of a failed load is not added");
        assert!(s.table("other").is_none(), "a table of a failed load is not created");
    };
    // staged, then aborted: a new column and a new table
    let id = load_id();
    let d = h.dest();
    let existing = d.existing_schema().unwrap();
    let mut n = Normalizer::new(items(WriteDisposition::Merge, &id, 10), &existing);
    let mut other = Normalizer::new(
        NormalizerConfig { table: "other".into(), ..items(WriteDisposition::Append, &id, 10) },
        &existing,
    );
    let mut out = Vec::new();
    n.push(&json!({"id": 1, "v": "b", "w": 1}), &mut out).unwrap();
    other.push(&json!({"id": 1}), &mut out).unwrap();
    out.extend(n.finish());
    out.extend(other.finish());
    d.begin(&id).unwrap();
    d.stage_all(&mut out.clone().into_iter()).unwrap();
    d.abort();
    d.abort();
    unchanged(h);
    // a commit that fails after its rows are staged (a key column the table lacks)
    let d = h.dest();
    d.begin(&id).unwrap();
    d.stage_all(&mut out.into_iter()).unwrap();
    let bad =
        ResourceLoad { primary_key: vec!["no_such_key".into()], ..into_items_as(WriteDisposition::Merge, false, f) };
    let state = PipelineState { version: 1, ..PipelineState::new("p") };
    let err = d.commit(&plan(&id, n.schema().clone(), vec![bad], Some(state))).unwrap_err();
    assert!(err.to_string().contains("no_such_key") && err.to_string().contains("items"), "{err}");
    unchanged(h);
    load(h, WriteDisposition::Merge, &[json!({"id": 1, "v": "a2"})]);
    assert_eq!(h.rows("SELECT v FROM ds.items"), ["a2"]);
}

/// The pipeline state round-trips, written with a load or alone; the highest version wins.
pub fn state_round_trips_and_the_highest_version_wins(h: &mut dyn Harness) {
    let d = h.dest();
    assert_eq!(d.load_state("p").unwrap(), None);
    let mut s = PipelineState::new("p");
    s.version = 1;
    d.save_state(&s).unwrap();
    s.version = 2;
    s.resources.entry("r".into()).or_default();
    d.save_state(&s).unwrap();
    assert_eq!(d.load_state("p").unwrap().unwrap().version, 2);
    assert_eq!(d.load_state("other").unwrap(), None);
    // with a load, in its transaction
    let id = load_id();
    let existing = d.existing_schema().unwrap();
    let mut n = Normalizer::new(items(WriteDisposition::Append, &id, 10), &existing);
    let mut out = Vec::new();
    n.push(&json!({"id": 1}), &mut out).unwrap();
    out.extend(n.finish());
    d.begin(&id).unwrap();
    d.stage_all(&mut out.into_iter()).unwrap();
    s.version = 3;
    d.commit(&plan(&id, n.schema().clone(), vec![into_items(WriteDisposition::Append, true)], Some(s.clone())))
        .unwrap();
    assert_eq!(d.load_state("p").unwrap(), Some(s));
    assert_eq!(one(h, "SELECT CAST(count(*) AS VARCHAR) FROM ds._dlt_pipeline_state WHERE pipeline_name = 'p'"), "3");
    assert_eq!(
        one(h, "SELECT _dlt_load_id FROM ds._dlt_pipeline_state WHERE version = 3"),
        id,
        "the state row names its load"
    );
}

/// `describe` lists the tables with their rows; an unknown dataset reads as empty.
pub fn describe_lists_tables_with_rows(h: &mut dyn Harness) {
    assert!(h.dest().describe().unwrap().is_empty());
    assert!(h.dest().existing_schema().unwrap().tables.is_empty());
    load(h, WriteDisposition::Merge, &[json!({"id": 1, "tags": ["a", "b"]})]);
    let tables: Vec<(String, u64)> = h.dest().describe().unwrap().into_iter().map(|t| (t.name, t.rows)).collect();
    for want in [("items", 1), ("items__tags", 2), ("_dlt_loads", 1), ("_dlt_version", 1)] {
        assert!(tables.contains(&(want.0.to_string(), want.1)), "{want:?} in {tables:?}");
    }
}

fn merge_as(
    h: &mut dyn Harness,
    spec: &MergeSpec,
    hints: &[(&str, DataType)],
    records: &[Value],
) -> Result<CommitReport, LoadError> {
    let hints = hints
        .iter()
        .map(|(name, t)| ColumnHint { name: (*name).into(), data_type: Some(*t), nullable: None, primary_key: false })
        .collect();
    let f = h.table_format();
    load_with(h.dest(), WriteDisposition::Merge, spec, hints, records, 2, f)
}

fn strategy(s: MergeStrategy) -> MergeSpec {
    MergeSpec { strategy: s, ..MergeSpec::default() }
}

/// `upsert`: root ids are dlt's hash of the key and stay from load to load; a record's nested
/// rows are those it brings now; a key that comes twice is de-duplicated, unless its copies
/// have nested rows (which cannot be told apart): then the load fails and nothing changes.
pub fn upsert_keeps_ids_and_replaces_nested_rows(h: &mut dyn Harness) {
    let spec = strategy(MergeStrategy::Upsert);
    merge_as(
        h,
        &spec,
        &[],
        &[json!({"id": 5, "v": "a", "tags": ["x", "y"]}), json!({"id": 6, "v": "b", "tags": ["z"]})],
    )
    .unwrap();
    // dlt 1.31: digest128('{"id":5}') and its nested rows' digest128(f"{parent}_{table}_{idx}")
    assert_eq!(one(h, "SELECT _dlt_id FROM ds.items WHERE id = 5"), "k2m2W4pvOwjKag");
    let second = merge_as(
        h,
        &spec,
        &[],
        &[
            json!({"id": 6, "v": "b2", "tags": ["z2", "z3"]}),
            json!({"id": 7, "v": "c", "tags": []}),
            json!({"id": 8, "v": "p"}),
            json!({"id": 8, "v": "q"}),
        ],
    )
    .unwrap();
    assert_eq!(
        h.rows("SELECT CAST(id AS VARCHAR) || '=' || v FROM ds.items ORDER BY id"),
        ["5=a", "6=b2", "7=c", "8=q"]
    );
    assert_eq!(one(h, "SELECT _dlt_id FROM ds.items WHERE id = 5"), "k2m2W4pvOwjKag");
    assert_eq!(one(h, "SELECT _dlt_id FROM ds.items WHERE id = 6"), "GVkOEPGs6KtYtg");
    assert_eq!(one(h, "SELECT _dlt_load_id FROM ds.items WHERE id = 6"), second.load_id);
    let tag = |value: &str, root: &str, idx: usize| {
        format!("{value}:{}:{root}", resttap_normalize::dlt_nested_id(root, "items__tags", idx).as_str())
    };
    let (five, six) = ("k2m2W4pvOwjKag", "GVkOEPGs6KtYtg");
    assert_eq!(
        h.rows("SELECT value || ':' || _dlt_id || ':' || _dlt_root_id FROM ds.items__tags ORDER BY value"),
        [tag("x", five, 0), tag("y", five, 1), tag("z2", six, 0), tag("z3", six, 1)]
    );
    let loads = count(h, "_dlt_loads");
    let err =
        merge_as(h, &spec, &[], &[json!({"id": 9, "tags": ["a"]}), json!({"id": 9, "tags": ["b", "c"]})]).unwrap_err();
    assert!(matches!(err, LoadError::Data { .. }), "{err}");
    assert!(err.to_string().contains("id=9") && err.to_string().contains("delete-insert"), "{err}");
    assert_eq!(count(h, "_dlt_loads"), loads, "the failed load committed nothing");
    assert_eq!(count(h, "items"), 4);
}

/// `insert-only`: records whose key the table holds are not loaded, nor their nested rows.
pub fn insert_only_leaves_known_records_alone(h: &mut dyn Harness) {
    let spec = strategy(MergeStrategy::InsertOnly);
    merge_as(h, &spec, &[], &[json!({"id": 1, "v": "a", "tags": ["x"]})]).unwrap();
    let report = merge_as(
        h,
        &spec,
        &[],
        &[json!({"id": 1, "v": "changed", "tags": ["x", "y"]}), json!({"id": 2, "v": "b", "tags": ["z"]})],
    )
    .unwrap();
    assert_eq!(h.rows("SELECT CAST(id AS VARCHAR) || '=' || v FROM ds.items ORDER BY id"), ["1=a", "2=b"]);
    assert_eq!(h.rows("SELECT value FROM ds.items__tags ORDER BY value"), ["x", "z"]);
    assert_eq!(
        report.tables,
        vec![TableReport { table: "items".into(), rows: 1 }, TableReport { table: "items__tags".into(), rows: 1 }]
    );
}

/// `scd2`: versions kept with the span they were current in; a record absent from the load
/// is retired, a changed one versioned, an unchanged one left alone, and one that comes back
/// is current again with its old row hash and nested rows.
pub fn scd2_keeps_every_version(h: &mut dyn Harness) {
    let spec = strategy(MergeStrategy::Scd2(Scd2::default()));
    let a = json!({"id": 1, "v": "a", "tags": ["x"]});
    let (b, b2) = (json!({"id": 2, "v": "b"}), json!({"id": 2, "v": "b2"}));
    let (c, d) = (json!({"id": 3, "v": "c"}), json!({"id": 4, "v": "d"}));
    merge_as(h, &spec, &[], &[a.clone(), b.clone(), c.clone()]).unwrap();
    let second = merge_as(h, &spec, &[], &[a.clone(), b2.clone(), d.clone()]).unwrap();
    let third = merge_as(h, &spec, &[], &[a.clone(), b2.clone(), d.clone(), c.clone(), c.clone()]).unwrap();
    let state = "CASE WHEN _dlt_valid_to IS NULL THEN 'current' ELSE 'retired' END";
    assert_eq!(
        h.rows(&format!("SELECT v || ':' || {state} FROM ds.items ORDER BY v, _dlt_valid_from")),
        ["a:current", "b:retired", "b2:current", "c:retired", "c:current", "d:current"]
    );
    // a version ends when the next begins: at the second load's boundary
    assert_eq!(
        one(
            h,
            "SELECT CAST(count(*) AS VARCHAR) FROM ds.items o JOIN ds.items n ON o._dlt_valid_to = n._dlt_valid_from WHERE o.v = 'b' AND n.v = 'b2'"
        ),
        "1"
    );
    assert_eq!(one(h, "SELECT CAST(count(DISTINCT _dlt_valid_from) AS VARCHAR) FROM ds.items"), "3");
    assert_eq!(one(h, "SELECT _dlt_load_id FROM ds.items WHERE v = 'd'"), second.load_id);
    assert_eq!(
        one(h, &format!("SELECT _dlt_load_id FROM ds.items WHERE v = 'c' AND {state} = 'current'")),
        third.load_id
    );
    // the row hash is the id (dlt's: shake-128 of the record as orjson writes it, keys sorted)
    assert_eq!(one(h, "SELECT CAST(count(DISTINCT _dlt_id) AS VARCHAR) FROM ds.items"), "5");
    assert_eq!(
        one(
            h,
            "SELECT CAST(count(*) AS VARCHAR) FROM ds.items WHERE v = 'c' AND _dlt_id IN (SELECT _dlt_id FROM ds.items WHERE v = 'a')"
        ),
        "0"
    );
    // nested rows once per version, shared by a version that comes back; no _dlt_root_id
    assert_eq!(h.rows("SELECT value FROM ds.items__tags"), ["x"]);
    assert_eq!(
        one(
            h,
            "SELECT CAST(count(*) AS VARCHAR) FROM information_schema.columns WHERE table_schema = 'ds' AND table_name = 'items__tags' AND column_name = '_dlt_root_id'"
        ),
        "0"
    );
}

/// `scd2` with a merge key retires only versions whose merge key the load brings; with
/// `active_record_timestamp`, current versions hold it instead of NULL.
pub fn scd2_merge_key_scopes_retirement(h: &mut dyn Harness) {
    let spec = MergeSpec {
        merge_key: vec!["forum".into()],
        ..strategy(MergeStrategy::Scd2(Scd2 {
            active_record_timestamp: Some(253_402_214_400_000_000),
            ..Scd2::default()
        }))
    };
    merge_as(
        h,
        &spec,
        &[],
        &[json!({"id": 1, "forum": 10}), json!({"id": 2, "forum": 10}), json!({"id": 3, "forum": 20})],
    )
    .unwrap();
    merge_as(h, &spec, &[], &[json!({"id": 1, "forum": 10})]).unwrap();
    let state = "CASE WHEN _dlt_valid_to = CAST('9999-12-31T00:00:00Z' AS TIMESTAMP WITH TIME ZONE) THEN 'current' ELSE 'retired' END";
    assert_eq!(
        h.rows(&format!("SELECT CAST(id AS VARCHAR) || ':' || {state} FROM ds.items ORDER BY id")),
        ["1:current", "2:retired", "3:current"]
    );
}

/// delete-insert with a merge key, `hard_delete` and `dedup_sort` (dlt's observed results):
/// older rows go by primary key or merge key; of a key's copies the highest `dedup_sort` wins;
/// a record flagged deleted takes its key's rows (and their nested rows) with it.
pub fn delete_insert_with_merge_key_hard_delete_and_dedup_sort(h: &mut dyn Harness) {
    let spec = MergeSpec {
        merge_key: vec!["forum".into()],
        hard_delete: Some("deleted".into()),
        dedup_sort: Some(("upd".into(), SortOrder::Desc)),
        ..MergeSpec::default()
    };
    let hints = [("deleted", DataType::Bool), ("upd", DataType::Bigint)];
    merge_as(
        h,
        &spec,
        &hints,
        &[
            json!({"id": 1, "forum": 10, "v": "one"}),
            json!({"id": 2, "forum": 10, "v": "two"}),
            json!({"id": 3, "forum": 20, "v": "three"}),
            json!({"id": 4, "forum": 30, "v": "four", "tags": ["t"]}),
        ],
    )
    .unwrap();
    merge_as(
        h,
        &spec,
        &hints,
        &[
            json!({"id": 1, "forum": 10, "upd": 1, "v": "old"}),
            json!({"id": 1, "forum": 10, "upd": 3, "v": "new"}),
            json!({"id": 1, "forum": 10, "upd": 2, "v": "mid"}),
            json!({"id": 3, "forum": 40, "v": "moved"}),
            json!({"id": 4, "forum": 30, "deleted": true}),
            json!({"id": 5, "forum": 50, "deleted": true, "tags": ["never"]}),
            json!({"id": 6, "forum": 60, "deleted": false, "v": "kept"}),
        ],
    )
    .unwrap();
    assert_eq!(
        h.rows("SELECT CAST(id AS VARCHAR) || '=' || v FROM ds.items ORDER BY id"),
        ["1=new", "3=moved", "6=kept"]
    );
    assert_eq!(count(h, "items__tags"), 0);
}

/// Runs every scenario of the contract, each against a new harness from `$make` (an
/// expression giving a `impl Harness`).
#[macro_export]
macro_rules! contract_tests {
    ($make:expr) => {
        $crate::contract_tests!(@each $make;
            merge_replaces_records_and_their_nested_rows_and_keeps_the_last_duplicate,
            a_nested_table_new_in_a_merge_keeps_only_the_winning_duplicates_rows,
            replace_and_append,
            new_columns_are_added_and_types_kept,
            rows_span_batches_and_follow_new_columns,
            a_failed_load_changes_nothing,
            state_round_trips_and_the_highest_version_wins,
            describe_lists_tables_with_rows);
    };
    (@strategies $make:expr) => {
        $crate::contract_tests!(@each $make;
            upsert_keeps_ids_and_replaces_nested_rows,
            insert_only_leaves_known_records_alone,
            scd2_keeps_every_version,
            scd2_merge_key_scopes_retirement,
            delete_insert_with_merge_key_hard_delete_and_dedup_sort);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let mut h = $make;
                $crate::contract::$name(&mut h);
            }
        )*
    };
}
