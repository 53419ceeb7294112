//! Records to relational rows, the way dlt's relational normalizer does it, written straight
//! into Arrow column builders.
//!
//! - Nested objects flatten into `parent__child` columns; lists become nested tables
//!   `<table>__<field>` (lists of scalars in a `value` column) with `_dlt_parent_id`,
//!   `_dlt_list_idx` and `_dlt_id`, plus `_dlt_root_id` under `merge`. Root rows get
//!   `_dlt_load_id` and `_dlt_id`. Columns appear in dlt's order.
//! - `_dlt_id` of a root row is random (10 bytes, base64), or dlt's hash of the key (upsert,
//!   insert-only) or of the record (scd2: [`hash`], [`RowIds`]); of a nested row, a hash of
//!   `"{parent_id}_{table}_{index}"` ([`dlt_nested_id`] under deterministic roots, else
//!   [`nested_id`]).
//! - A `schema_contract` is applied to every row before it is written
//!   ([`NormalizerConfig::contract`]).
//! - Types come from JSON: integers `bigint`, floats `double`, booleans `bool`, ISO 8601
//!   date-time strings `timestamp`, other strings `text`. A column is created by its first
//!   non-null value. A later value that cannot be coerced to the column's type goes to a variant
//!   column `<column>__v_<type>`, as dlt does: nothing is lost.

/// Maps keyed by column names and JSON keys, hashed once per key per record: foldhash, not
/// SipHash (which was ~4% of a load's CPU profile).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, TimeUnit};
use arrow::record_batch::RecordBatch;
use base64::Engine;
use resttap_json::{Kind, Node};
use resttap_schema::contract::{ContractMode, SchemaContract};
use resttap_schema::naming::{PATH_SEPARATOR, normalize_identifier};
use resttap_schema::{Column, DataType, Schema, Table, WriteDisposition, cols};
use serde_json::Value;

pub use resttap_schema::timestamp::parse_timestamp;

pub mod hash;
pub mod values;

/// Rows of one table, ready to load: the columns they carry and their values.
#[derive(Debug, Clone)]
pub struct TableBatch {
    /// The table.
    pub table: String,
    /// The columns of `batch`, in order, with their dlt types.
    pub columns: Vec<Column>,
    /// The values.
    pub batch: RecordBatch,
    /// The resource's last rows for this table ([`Normalizer::finish`]): a destination that
    /// holds rows back to write them in larger pieces may write this table's now, while other
    /// resources still run, rather than at the end of the load. (Another resource may still
    /// write rows to the same table.)
    pub last: bool,
}

/// Why a record cannot be normalized.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NormalizeError {
    /// A root record lacks a primary key column, or has it null.
    #[error("a record of table `{table}` has no value for primary key column `{column}`: {excerpt}")]
    MissingPrimaryKey { table: String, column: String, excerpt: String },
    /// A root record lacks a column hinted `nullable: false`, or has it null.
    #[error(
        "a record of table `{table}` has no value for column `{column}`, which `columns` hints as `nullable: false`: {excerpt}"
    )]
    MissingRequired { table: String, column: String, excerpt: String },
    /// A root record's value for a primary key column, or one hinted `nullable: false`, is not
    /// of the column's type (a text id where the ids so far were numbers): it would go to a
    /// variant column and leave the column null.
    #[error(
        "a record of table `{table}` has a value for {role} column `{column}` that is not of its type `{data_type}` (it would leave the column null): {excerpt}"
    )]
    UnfitRequired { table: String, column: String, role: &'static str, data_type: DataType, excerpt: String },
    /// The data would change the schema where `schema_contract` freezes it.
    #[error("{detail}")]
    Frozen {
        /// `tables`, `columns` or `data_type`.
        entity: &'static str,
        table: String,
        /// The column (for a data type: the variant column it would make).
        column: Option<String>,
        detail: String,
    },
}

/// A `columns` hint of the root table (names already normalized).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnHint {
    pub name: String,
    /// The column's type whatever the data says; the column exists even if every value is null.
    pub data_type: Option<DataType>,
    pub nullable: Option<bool>,
    pub primary_key: bool,
}

/// How one resource's records become rows.
#[derive(Debug, Clone)]
pub struct NormalizerConfig {
    /// The root table's name (already normalized).
    pub table: String,
    pub write_disposition: WriteDisposition,
    /// Primary key columns (already normalized): the resource's `primary_key` and the columns
    /// hinted as keys.
    pub primary_key: Vec<String>,
    /// `max_table_nesting`: below this depth objects and lists stay whole, as `json`.
    pub max_nesting: Option<u32>,
    /// The load id written to `_dlt_load_id`.
    pub load_id: Arc<str>,
    /// Rows a table collects before it is handed over as a batch.
    pub batch_rows: usize,
    /// `columns` hints of the root table.
    pub hints: Vec<ColumnHint>,
    /// `nested_hints`: `columns` hints of nested tables, by table name (already normalized).
    pub nested_hints: Vec<(String, Vec<ColumnHint>)>,
    /// How root rows get their `_dlt_id`.
    pub row_ids: RowIds,
    /// `scd2`'s validity columns and the values this load's root rows get.
    pub validity: Option<Validity>,
    /// What the data may add to the schema ([`SchemaContract`]).
    pub contract: SchemaContract,
}

impl NormalizerConfig {
    /// The `columns` hints of table `table` (the root's or a nested table's).
    fn hints_of(&self, table: &str) -> &[ColumnHint] {
        if table == self.table {
            return &self.hints;
        }
        self.nested_hints.iter().find(|(t, _)| t == table).map_or(&[], |(_, h)| h.as_slice())
    }
}

/// How root rows get their `_dlt_id` (dlt's row id types). Nested rows' ids derive from their
/// parent's: with dlt's own hash when root ids are deterministic, so that they equal dlt's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RowIds {
    /// Random (append, replace, merge's delete-insert, scd2 with a row version column).
    #[default]
    Random,
    /// A hash of the primary key's values ([`hash::key_hash`]: upsert, insert-only).
    KeyHash,
    /// A hash of the whole record ([`hash::row_hash`]: scd2).
    RowHash,
}

/// `scd2`'s validity columns (normalized names) and their values for this load's rows, in
/// microseconds since the epoch: every version it brings is current from `from`, until `to`
/// (`None`: NULL, dlt's default for the current version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    pub from_column: String,
    pub to_column: String,
    pub from: i64,
    pub to: Option<i64>,
}

enum Builder {
    Text(StringBuilder),
    Bigint(Int64Builder),
    Double(Float64Builder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Json(StringBuilder),
    Date(Date32Builder),
    /// `decimal` and `wei`: exact decimal text; the destination rounds it to its scale.
    Decimal(StringBuilder),
    Binary(BinaryBuilder),
    Time(Time64MicrosecondBuilder),
}

impl Builder {
    fn new(t: DataType) -> Builder {
        match t {
            DataType::Text => Builder::Text(StringBuilder::new()),
            DataType::Bigint => Builder::Bigint(Int64Builder::new()),
            DataType::Double => Builder::Double(Float64Builder::new()),
            DataType::Bool => Builder::Bool(BooleanBuilder::new()),
            DataType::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
            DataType::Json => Builder::Json(StringBuilder::new()),
            DataType::Date => Builder::Date(Date32Builder::new()),
            DataType::Decimal(_) | DataType::Wei => Builder::Decimal(StringBuilder::new()),
            DataType::Binary => Builder::Binary(BinaryBuilder::new()),
            DataType::Time => Builder::Time(Time64MicrosecondBuilder::new()),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Text(b) | Builder::Json(b) | Builder::Decimal(b) => b.append_null(),
            Builder::Bigint(b) => b.append_null(),
            Builder::Binary(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
            Builder::Double(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
        }
    }

    /// The values appended so far, as an array of `rows` rows. The builder starts over with room
    /// for as many rows and bytes, so that the next batch of the table grows no buffers (arrow's
    /// `finish` leaves a builder with no capacity: every batch would reallocate its way up).
    fn finish(&mut self, rows: usize) -> ArrayRef {
        fn swap<B>(b: &mut B, next: B, finish: impl FnOnce(&mut B) -> ArrayRef) -> ArrayRef {
            let array = finish(b);
            *b = next;
            array
        }
        match self {
            Builder::Text(b) | Builder::Json(b) | Builder::Decimal(b) => {
                let bytes = b.values_slice().len();
                swap(b, StringBuilder::with_capacity(rows, bytes), |b| Arc::new(b.finish()))
            }
            Builder::Binary(b) => {
                let bytes = b.values_slice().len();
                swap(b, BinaryBuilder::with_capacity(rows, bytes), |b| Arc::new(b.finish()))
            }
            Builder::Time(b) => swap(b, Time64MicrosecondBuilder::with_capacity(rows), |b| Arc::new(b.finish())),
            Builder::Bigint(b) => swap(b, Int64Builder::with_capacity(rows), |b| Arc::new(b.finish())),
            Builder::Double(b) => swap(b, Float64Builder::with_capacity(rows), |b| Arc::new(b.finish())),
            Builder::Bool(b) => swap(b, BooleanBuilder::with_capacity(rows), |b| Arc::new(b.finish())),
            Builder::Timestamp(b) => {
                let next = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
                swap(b, next, |b| Arc::new(b.finish()))
            }
            Builder::Date(b) => swap(b, Date32Builder::with_capacity(rows), |b| Arc::new(b.finish())),
        }
    }
}

/// The Arrow type resttap writes for a dlt type (a decimal as its exact text: destinations
/// differ in precision, and each rounds to its own scale as it does for dlt).
pub fn arrow_type(t: DataType) -> ArrowType {
    match t {
        DataType::Text | DataType::Json | DataType::Decimal(_) | DataType::Wei => ArrowType::Utf8,
        DataType::Binary => ArrowType::Binary,
        DataType::Time => ArrowType::Time64(TimeUnit::Microsecond),
        DataType::Bigint => ArrowType::Int64,
        DataType::Double => ArrowType::Float64,
        DataType::Bool => ArrowType::Boolean,
        DataType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        DataType::Date => ArrowType::Date32,
    }
}

struct ColBuf {
    column: Column,
    builder: Builder,
    len: usize,
}

struct TableBuf {
    name: String,
    cols: Vec<ColBuf>,
    index: HashMap<String, usize>,
    /// Column index by name node (`u32::MAX`: none yet).
    by_node: Vec<u32>,
    rows: usize,
}

impl TableBuf {
    fn new(name: String) -> Self {
        TableBuf { name, cols: Vec::new(), index: HashMap::default(), by_node: Vec::new(), rows: 0 }
    }

    /// Appends `cell` to column `ci` in the current row, padding the rows it skipped with nulls.
    fn append(&mut self, ci: usize, cell: Cell<'_>) {
        let row = self.rows;
        let c = &mut self.cols[ci];
        if c.len > row {
            // a second value for a column in one row: the first stays (a record's own
            // `_dlt_id` before the one resttap makes; keys that normalize alike are settled
            // before they get here)
            return;
        }
        while c.len < row {
            c.builder.append_null();
            c.len += 1;
        }
        append(&mut c.builder, cell);
        c.len += 1;
    }

    /// Adds `column` (already in the table's schema) to the buffer, if it lacks it.
    fn seed(&mut self, column: Column) {
        if !self.index.contains_key(&column.name) {
            self.index.insert(column.name.clone(), self.cols.len());
            self.cols.push(ColBuf { builder: Builder::new(column.data_type), column, len: 0 });
        }
    }

    fn flush(&mut self, last: bool) -> Option<TableBatch> {
        if self.rows == 0 {
            return None;
        }
        let rows = self.rows;
        let mut fields = Vec::with_capacity(self.cols.len());
        let mut arrays = Vec::with_capacity(self.cols.len());
        let mut columns = Vec::with_capacity(self.cols.len());
        for c in &mut self.cols {
            while c.len < rows {
                c.builder.append_null();
                c.len += 1;
            }
            fields.push(Field::new(&c.column.name, arrow_type(c.column.data_type), true));
            arrays.push(c.builder.finish(rows));
            columns.push(c.column.clone());
            c.len = 0;
        }
        self.rows = 0;
        let batch = RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), arrays)
            .expect("columns padded to the same length");
        Some(TableBatch { table: self.name.clone(), columns, batch, last })
    }
}

/// A value ready for a column of a given type.
enum Cell<'a> {
    Str(&'a str),
    Owned(String),
    I64(i64),
    F64(f64),
    Bool(bool),
    Ts(i64),
    /// Days since 1970-01-01.
    Date(i32),
    Bytes(Vec<u8>),
    /// Microseconds since midnight.
    Time(i64),
}

/// The variant column (name and type) a value of column `col` goes to when it does not fit the
/// column's type, as dlt makes it: named by the value's JSON type (`<col>__v_text` for any
/// string) and typed as a new column would be (a date-time string: `timestamp`, dlt's
/// `iso_timestamp` detection).
fn variant_for<N: Node>(col: &str, value: &N) -> (String, DataType) {
    let natural = natural_type(value);
    let named = if natural == DataType::Timestamp { DataType::Text } else { natural };
    (format!("{col}{PATH_SEPARATOR}v_{}", named.dlt_name()), natural)
}

/// Whether `table` is new to `schema` as dlt counts it for schema contracts: not there, or
/// without a column yet.
fn is_new(schema: &Schema, table: &str) -> bool {
    schema.table(table).is_none_or(|t| t.columns.is_empty())
}

/// The type a value has on its own (with dlt's `iso_timestamp` detection for strings).
fn natural_type<N: Node>(v: &N) -> DataType {
    match v.kind() {
        Kind::Bool(_) => DataType::Bool,
        Kind::I64(_) => DataType::Bigint,
        // integers beyond i64 and floats
        Kind::U64(_) => DataType::Text,
        Kind::F64(_) => DataType::Double,
        Kind::Str(s) if parse_timestamp(s).is_some() => DataType::Timestamp,
        Kind::Str(_) => DataType::Text,
        Kind::Arr(_) | Kind::Obj => DataType::Json,
        Kind::Null => DataType::Text,
    }
}

/// A date (`2024-03-01`) or the UTC date of a date-time, as days since 1970-01-01.
fn parse_date(s: &str) -> Option<i32> {
    let t = s.trim();
    if t.len() == 10 {
        return parse_timestamp(&format!("{t}T00:00:00Z")).map(|us| us.div_euclid(86_400_000_000) as i32);
    }
    parse_timestamp(t).map(|us| us.div_euclid(86_400_000_000) as i32)
}

/// Python's `str()` of a float, which is what dlt writes when a float lands in a text column.
fn py_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 { format!("{f:.1}") } else { f.to_string() }
}

/// A record's own `_dlt_id` as dlt keeps it (`if not row_id: make one`): a truthy scalar, as
/// text (`2` -> "2", `2.0` -> "2.0" by [`py_float`], `true` -> "True", as Python's `str`);
/// empty text, 0, false, null, objects and lists are none, and the row gets the id resttap
/// makes. Found by fuzzing
/// (fuzz/corpus/normalizer): a number made a bigint `_dlt_id` column, and the ids made for the
/// other rows went to a variant, leaving `_dlt_id` null.
fn own_row_id<N: Node>(v: &N) -> Option<Cow<'_, str>> {
    match v.kind() {
        Kind::Str(s) if !s.is_empty() => Some(Cow::Borrowed(s)),
        Kind::I64(i) if i != 0 => Some(Cow::Owned(i.to_string())),
        Kind::U64(u) => Some(Cow::Owned(u.to_string())),
        Kind::F64(f) if f != 0.0 => Some(Cow::Owned(py_float(f))),
        Kind::Bool(true) => Some(Cow::Borrowed("True")),
        _ => None,
    }
}

/// `value` as a cell of type `t`, or `None` when it cannot be coerced (dlt's coercion table).
fn coerce<N: Node>(t: DataType, v: &N) -> Option<Cell<'_>> {
    let as_f64 = |k: &Kind<'_, N>| match *k {
        Kind::I64(i) => Some(i as f64),
        Kind::U64(u) => Some(u as f64),
        Kind::F64(f) => Some(f),
        _ => None,
    };
    let k = v.kind();
    Some(match (t, k) {
        (DataType::Json, _) => Cell::Owned(v.to_json()),
        (_, Kind::Arr(_) | Kind::Obj) => return None,
        (DataType::Text, Kind::Str(s)) => Cell::Str(s),
        (DataType::Text, Kind::Bool(b)) => Cell::Owned(if b { "True".into() } else { "False".into() }),
        (DataType::Text, Kind::I64(i)) => Cell::Owned(i.to_string()),
        (DataType::Text, Kind::U64(u)) => Cell::Owned(u.to_string()),
        (DataType::Text, Kind::F64(f)) => Cell::Owned(py_float(f)),
        (DataType::Bigint, Kind::I64(i)) => Cell::I64(i),
        (DataType::Bigint, Kind::F64(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Cell::I64(f as i64),
        (DataType::Bigint, Kind::Str(s)) => Cell::I64(s.trim().parse().ok()?),
        (DataType::Double, Kind::I64(_) | Kind::U64(_) | Kind::F64(_)) => Cell::F64(as_f64(&k)?),
        (DataType::Double, Kind::Str(s)) => Cell::F64(s.trim().parse().ok()?),
        (DataType::Bool, Kind::Bool(b)) => Cell::Bool(b),
        (DataType::Bool, Kind::I64(_) | Kind::U64(_) | Kind::F64(_)) => Cell::Bool(as_f64(&k)? != 0.0),
        (DataType::Bool, Kind::Str(s)) => Cell::Bool(match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" | "on" => true,
            "false" | "no" | "n" | "0" | "off" => false,
            _ => return None,
        }),
        (DataType::Decimal(_) | DataType::Wei, Kind::I64(i)) => Cell::Owned(i.to_string()),
        (DataType::Decimal(_) | DataType::Wei, Kind::U64(u)) => Cell::Owned(u.to_string()),
        (DataType::Decimal(_) | DataType::Wei, Kind::F64(f)) => Cell::Owned(values::float_decimal_text(f)?),
        (DataType::Decimal(_) | DataType::Wei, Kind::Str(s)) => Cell::Owned(values::decimal_text(s)?),
        (DataType::Binary, Kind::Str(s)) => Cell::Bytes(values::binary_from_text(s)?),
        (DataType::Binary, Kind::I64(i)) => Cell::Bytes(values::binary_from_int(u64::try_from(i).ok()?)),
        (DataType::Binary, Kind::U64(u)) => Cell::Bytes(values::binary_from_int(u)),
        (DataType::Time, Kind::Str(s)) => Cell::Time(values::time_of_day(s)?),
        (DataType::Timestamp, Kind::Str(s)) => Cell::Ts(parse_timestamp(s)?),
        (DataType::Date, Kind::Str(s)) => Cell::Date(parse_date(s)?),
        (DataType::Timestamp, Kind::I64(_) | Kind::U64(_) | Kind::F64(_)) => {
            let secs = as_f64(&k)?;
            if !secs.is_finite() || secs.abs() > 1e13 {
                return None;
            }
            Cell::Ts((secs * 1e6).round() as i64)
        }
        _ => return None,
    })
}

fn append(b: &mut Builder, cell: Cell<'_>) {
    match (b, cell) {
        (Builder::Text(b) | Builder::Json(b) | Builder::Decimal(b), Cell::Str(s)) => b.append_value(s),
        (Builder::Text(b) | Builder::Json(b) | Builder::Decimal(b), Cell::Owned(s)) => b.append_value(s),
        (Builder::Binary(b), Cell::Bytes(v)) => b.append_value(v),
        (Builder::Time(b), Cell::Time(t)) => b.append_value(t),
        (Builder::Bigint(b), Cell::I64(i)) => b.append_value(i),
        (Builder::Double(b), Cell::F64(f)) => b.append_value(f),
        (Builder::Bool(b), Cell::Bool(x)) => b.append_value(x),
        (Builder::Timestamp(b), Cell::Ts(t)) => b.append_value(t),
        (Builder::Date(b), Cell::Date(d)) => b.append_value(d),
        (b, _) => b.append_null(),
    }
}

/// A normalized column path, interned: node 0 is the record itself; each node knows its
/// full `__`-joined name and its children by raw JSON key, so a key seen before costs one hash
/// lookup and no allocation.
struct NameNode {
    full: Arc<str>,
    /// The raw JSON key it was reached by (empty for node 0).
    key: Box<str>,
    children: HashMap<String, usize>,
    /// The children in the order the last object of this node listed its keys: the records
    /// of a page have the same keys in the same order, so the key at a place is compared with
    /// the one there last time before the map is asked ([`Normalizer::child_at`]).
    order: Vec<usize>,
    /// The first node with the same full name (itself, unless two raw keys normalize alike:
    /// `a b` and `a_b`).
    alias_of: usize,
    /// It names a system column (`_dlt_id`, `_dlt_load_id`, ...): a record's own key by that
    /// name is settled as dlt does ([`Normalizer::settle_system_keys`]).
    system: bool,
}

impl NameNode {
    fn new(full: Arc<str>, key: &str, alias_of: usize) -> Self {
        let (children, order) = (HashMap::default(), Vec::new());
        NameNode { full, key: Box::from(key), children, order, alias_of, system: false }
    }
}

/// dlt flattens an object into a Python dict: where two keys of it get the same name, the later
/// value replaces the earlier one, in the earlier one's place. `items` are (name node, value)
/// in the order dlt assigns them.
fn keep_last_in_place<T: Copy>(names: &[NameNode], items: &mut Vec<(usize, T)>) {
    let mut first: Vec<(usize, usize)> = Vec::new();
    let mut keep = vec![true; items.len()];
    for i in 0..items.len() {
        let alias = names[items[i].0].alias_of;
        match first.iter().find(|(a, _)| *a == alias) {
            Some(&(_, j)) => {
                items[j].1 = items[i].1;
                keep[i] = false;
            }
            None => first.push((alias, i)),
        }
    }
    let mut i = 0;
    items.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}

/// Node ids of the system columns, fixed at construction.
struct SysNodes {
    load_id: usize,
    id: usize,
    root_id: usize,
    parent_id: usize,
    list_idx: usize,
    value: usize,
    list: usize,
}

/// Turns one resource's records into batches of rows for its tables.
pub struct Normalizer {
    cfg: NormalizerConfig,
    schema: Schema,
    bufs: Vec<TableBuf>,
    buf_index: HashMap<String, usize>,
    names: Vec<NameNode>,
    /// The root table's name, shared with each record's work.
    root: Arc<str>,
    /// Columns every root row must have (non-null): the key's first, then those hinted
    /// `nullable: false`; each name once, `true` where it is a key column.
    required: Vec<(String, bool)>,
    /// Index in `required` of the column each name node writes at the root (`u32::MAX`: none).
    required_of: Vec<u32>,
    /// Which of `required` the current record has, reused from record to record.
    required_seen: Vec<bool>,
    /// Buffer index and table name of the nested table under a buffer's name node.
    nested: HashMap<(usize, usize), (usize, Arc<str>)>,
    /// The first name node of each full name, and whether any other node has one of them.
    by_full: HashMap<Arc<str>, usize>,
    aliased: bool,
    /// Whether the object flattened last had a key named like a system column.
    system_key: bool,
    sys: SysNodes,
    /// Nested rows get `_dlt_root_id` (merge, but not scd2).
    merge: bool,
    /// Name nodes of the validity columns (scd2).
    validity_nodes: Option<(usize, usize)>,
    /// The text a deterministic id hashes, reused.
    hash_buf: Vec<u8>,
    /// The contract needs checking (it does not let everything evolve).
    policed: bool,
    /// The root table is new to the dataset: under the contract, this load may add its columns.
    root_new: bool,
    /// Columns of `discard_row` whose key drops any later row that has it, even null (dlt's
    /// filter): (table, column).
    discarded: std::collections::HashSet<(Arc<str>, Arc<str>)>,
    /// The current record's primary key, for messages (`id=3`), under a contract.
    record_key: String,
    records: u64,
    keys: KeyOrder,
}

/// What the root rows' keys have been so far, for [`Normalizer::keys_rising`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyOrder {
    /// No row yet.
    Start,
    /// One integer key column whose every value was above the one before; the last.
    Rising(i64),
    /// Anything else: a key that did not rise, or was not an integer, or a key of several columns.
    Unknown,
}

/// A list found while flattening: its name node and items.
type ListAt<'a, N> = (usize, &'a [N]);

impl Normalizer {
    /// A normalizer for one resource. `existing` is what the destination already holds, so that
    /// column types stay as they are and changed types go to variant columns.
    pub fn new(cfg: NormalizerConfig, existing: &Schema) -> Self {
        let mut schema = Schema::default();
        for t in &existing.tables {
            if t.name == cfg.table || t.name.starts_with(&format!("{}{PATH_SEPARATOR}", cfg.table)) {
                let mut t = t.clone();
                if t.name == cfg.table {
                    // the destination keeps columns, types and nullability, not which columns are
                    // the key: the configuration says so again, as it did when they were created
                    for c in &mut t.columns {
                        c.primary_key |= cfg.primary_key.contains(&c.name);
                    }
                }
                t.reindex();
                schema.tables.push(t);
            }
        }
        let merge = cfg.write_disposition == WriteDisposition::Merge && cfg.validity.is_none();
        let names = vec![NameNode::new(Arc::from(""), "", 0)];
        let sys = SysNodes { load_id: 0, id: 0, root_id: 0, parent_id: 0, list_idx: 0, value: 0, list: 0 };
        let keys = if cfg.primary_key.len() == 1 { KeyOrder::Start } else { KeyOrder::Unknown };
        let mut required: Vec<(String, bool)> = Vec::new();
        let hinted = cfg.hints.iter().filter(|h| h.nullable == Some(false) && !h.primary_key);
        for (name, is_key) in cfg.primary_key.iter().map(|k| (k, true)).chain(hinted.map(|h| (&h.name, false))) {
            if !required.iter().any(|(r, _)| r == name) {
                required.push((name.clone(), is_key));
            }
        }
        let mut n = Normalizer {
            root: Arc::from(cfg.table.as_str()),
            required_seen: vec![false; required.len()],
            required,
            required_of: vec![u32::MAX],
            nested: HashMap::default(),
            by_full: HashMap::default(),
            aliased: false,
            system_key: false,
            cfg,
            schema,
            bufs: Vec::new(),
            buf_index: HashMap::default(),
            names,
            sys,
            merge,
            validity_nodes: None,
            hash_buf: Vec::new(),
            policed: false,
            root_new: false,
            discarded: Default::default(),
            record_key: String::new(),
            records: 0,
            keys,
        };
        n.sys = SysNodes {
            load_id: n.child(0, cols::LOAD_ID),
            id: n.child(0, cols::ID),
            root_id: n.child(0, cols::ROOT_ID),
            parent_id: n.child(0, cols::PARENT_ID),
            list_idx: n.child(0, cols::LIST_IDX),
            value: n.child(0, cols::VALUE),
            list: n.child(0, "list"),
        };
        for node in [n.sys.load_id, n.sys.id, n.sys.root_id, n.sys.parent_id, n.sys.list_idx] {
            n.names[node].system = true;
        }
        if let Some(v) = n.cfg.validity.clone() {
            n.validity_nodes = Some((n.child(0, &v.from_column), n.child(0, &v.to_column)));
        }
        n.policed = !n.cfg.contract.evolves();
        n.root_new = is_new(existing, &n.cfg.table);
        n
    }

    /// The load must fail before it starts: the root table is new to the dataset and the
    /// contract freezes tables (dlt fails at extract, before the first request's data lands).
    pub fn refuses_root(&self) -> Option<NormalizeError> {
        (self.root_new && self.cfg.contract.tables == ContractMode::Freeze).then(|| NormalizeError::Frozen {
            entity: "tables",
            table: self.cfg.table.clone(),
            column: None,
            detail: format!(
                "the dataset has no table `{}` and `schema_contract` freezes `tables`: the first load of a resource creates its table, so start with `tables: evolve` (for example `schema_contract: {{tables: evolve, columns: freeze, data_type: freeze}}`)",
                self.cfg.table
            ),
        })
    }

    /// Applies the contract to a row of `table` about to be written: `Ok(false)` when the row
    /// is to be dropped (with its nested rows); values to drop are taken out of `fields`.
    /// `evolve_columns`: the table may take new columns with this row (a new root table in its
    /// first load; a nested table in the row that creates it, as in dlt).
    fn police<N: Node>(
        &mut self,
        table: &Arc<str>,
        fields: &mut Vec<(usize, &N)>,
        evolve_columns: bool,
    ) -> Result<bool, NormalizeError> {
        let contract = self.cfg.contract;
        let mut i = 0;
        while i < fields.len() {
            let (node, v) = fields[i];
            let col = Arc::clone(&self.names[node].full);
            if col.starts_with("_dlt") {
                i += 1;
                continue;
            }
            if !self.discarded.is_empty() && self.discarded.contains(&(Arc::clone(table), Arc::clone(&col))) {
                return Ok(false);
            }
            if v.is_null() {
                i += 1;
                continue;
            }
            let t = self.schema.table(table);
            let verdict = match t.and_then(|t| t.column(&col)) {
                Some(c) if coerce(c.data_type, v).is_some() => None,
                Some(c) => {
                    let (variant, _) = variant_for(&col, v);
                    match t.and_then(|t| t.column(&variant)) {
                        Some(vc) if coerce(vc.data_type, v).is_some() => None,
                        _ => Some(("data_type", contract.data_type, variant, Some(c.data_type))),
                    }
                }
                None if evolve_columns => None,
                None => Some(("columns", contract.columns, col.to_string(), None)),
            };
            let Some((entity, mode, column, was)) = verdict else {
                i += 1;
                continue;
            };
            match mode {
                ContractMode::Evolve => i += 1,
                ContractMode::DiscardValue => {
                    fields.remove(i);
                }
                ContractMode::DiscardRow => {
                    if entity == "columns" {
                        self.discarded.insert((Arc::clone(table), col));
                    }
                    return Ok(false);
                }
                ContractMode::Freeze => {
                    let mut value: String = v.to_json().chars().take(80).collect();
                    if value.len() >= 80 {
                        value.push('…');
                    }
                    let detail = match was {
                        None => format!(
                            "table `{table}` has no column `{column}` and `schema_contract` freezes `columns`; the record with {key} brings it (value {value}). Declare it in `columns`, or let columns `evolve`, `discard_value` or `discard_row`",
                            key = self.record_key
                        ),
                        Some(t) => format!(
                            "a value of column `{col}` of table `{table}` does not fit its type {t} and would make variant column `{column}`, and `schema_contract` freezes `data_type`; the record with {key} has {value}. Let data types `evolve`, `discard_value` or `discard_row`",
                            key = self.record_key
                        ),
                    };
                    return Err(NormalizeError::Frozen {
                        entity,
                        table: table.to_string(),
                        column: Some(column),
                        detail,
                    });
                }
            }
        }
        Ok(true)
    }

    /// The record's primary key as text (`id=3`), for the contract's messages.
    fn key_text<N: Node>(&self, fields: &[(usize, &N)]) -> String {
        let parts: Vec<String> = self
            .cfg
            .primary_key
            .iter()
            .filter_map(|k| {
                let (_, v) = fields.iter().find(|(node, _)| *self.names[*node].full == **k)?;
                Some(format!("{k}={}", v.to_json()))
            })
            .collect();
        if parts.is_empty() {
            format!("no primary key (record {} of the load)", self.records + 1)
        } else {
            parts.join(", ")
        }
    }

    /// Records normalized so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Whether the primary key is one column whose values were integers, each above the one
    /// before, written as `bigint` or `text` (where distinct integers stay distinct): then no
    /// key came twice, and the destination need not look for duplicates (paged APIs commonly
    /// return records by ascending id). `false` when unsure.
    pub fn keys_rising(&self) -> bool {
        let column_keeps_them_apart = || {
            let column = self.schema.table(&self.cfg.table).and_then(|t| t.column(&self.cfg.primary_key[0]));
            column.is_none_or(|c| matches!(c.data_type, DataType::Bigint | DataType::Text))
        };
        matches!(self.keys, KeyOrder::Start | KeyOrder::Rising(_)) && column_keeps_them_apart()
    }

    /// The tables and columns this resource has produced so far, with those it started with.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The node for raw key `key` under `parent`.
    fn child(&mut self, parent: usize, key: &str) -> usize {
        if let Some(&id) = self.names[parent].children.get(key) {
            return id;
        }
        let seg = if key.trim().is_empty() { "_empty".to_string() } else { normalize_identifier(key) };
        let full: Arc<str> = if parent == 0 {
            Arc::from(seg)
        } else {
            Arc::from(format!("{}{PATH_SEPARATOR}{seg}", self.names[parent].full))
        };
        let id = self.names.len();
        let required = self.required.iter().position(|(r, _)| **r == *full);
        self.required_of.push(required.map_or(u32::MAX, |i| i as u32));
        let alias_of = *self.by_full.entry(Arc::clone(&full)).or_insert(id);
        self.aliased |= alias_of != id;
        let mut node = NameNode::new(full, key, alias_of);
        node.system = alias_of != id && self.names[alias_of].system;
        self.names.push(node);
        self.names[parent].children.insert(key.to_string(), id);
        id
    }

    /// After an object was flattened, its keys named like system columns, as dlt settles them:
    /// an own `_dlt_id` ([`own_row_id`]) is kept and is the row's id, which its nested rows point to
    /// (returned); the system value replaces the object's own for the columns `overwritten`
    /// (`_dlt_load_id` of a root row, `_dlt_root_id` of a nested one), and for those of
    /// `unless_own_id` when it has no `_dlt_id` of its own (a nested row's `_dlt_parent_id` and
    /// `_dlt_list_idx`: dlt sets them with the id it makes). Looks only when the object had such
    /// a key.
    fn settle_system_keys<'v, N: Node>(
        &mut self,
        fields: &mut Vec<(usize, &'v N)>,
        overwritten: &[usize],
        unless_own_id: &[usize],
    ) -> Option<Cow<'v, str>> {
        if !std::mem::take(&mut self.system_key) {
            return None;
        }
        let own =
            fields.iter().find(|(node, _)| self.names[*node].alias_of == self.sys.id).and_then(|(_, v)| own_row_id(*v));
        // the own id is written as the row's `_dlt_id` by the caller, whatever its JSON type
        let gone = |node: &usize| {
            let alias = self.names[*node].alias_of;
            alias == self.sys.id || overwritten.contains(&alias) || (own.is_none() && unless_own_id.contains(&alias))
        };
        fields.retain(|(node, _)| !gone(node));
        own
    }

    /// [`Normalizer::child`] for the `pos`-th key of an object under `parent`: the key found
    /// at that place in the object before is compared first.
    fn child_at(&mut self, parent: usize, pos: usize, key: &str) -> usize {
        if let Some(&id) = self.names[parent].order.get(pos)
            && *self.names[id].key == *key
        {
            self.system_key |= self.names[id].system;
            return id;
        }
        let id = self.child(parent, key);
        let order = &mut self.names[parent].order;
        if pos < order.len() {
            order[pos] = id;
        } else if pos == order.len() {
            order.push(id);
        }
        self.system_key |= self.names[id].system;
        id
    }

    fn buf(&mut self, table: &str, parent: Option<&str>) -> usize {
        if let Some(i) = self.buf_index.get(table) {
            return *i;
        }
        if self.schema.table(table).is_none() {
            self.schema.tables.push(Table::new(table, parent.map(String::from)));
        }
        let i = self.bufs.len();
        self.bufs.push(TableBuf::new(table.to_string()));
        self.buf_index.insert(table.to_string(), i);
        self.seed_hints(i, parent.is_none());
        i
    }

    /// Hinted columns come first and exist even when every value is null, as in dlt; in the
    /// root table scd2's validity columns follow them.
    fn seed_hints(&mut self, bi: usize, is_root: bool) {
        let name = self.bufs[bi].name.clone();
        for h in self.cfg.hints_of(&name).to_vec() {
            let Some(dtype) = h.data_type else { continue };
            let table = self.schema.table_mut(&name).expect("registered");
            if table.column(&h.name).is_none() {
                let pk = is_root && (h.primary_key || self.cfg.primary_key.contains(&h.name));
                table.add_column(Column {
                    name: h.name.clone(),
                    data_type: dtype,
                    nullable: !pk && h.nullable != Some(false),
                    primary_key: pk,
                });
            }
            let column = table.column(&h.name).expect("added").clone();
            self.bufs[bi].seed(column);
        }
        // scd2's validity columns come after the hinted ones, before the data's (as in dlt)
        if let Some(v) = self.cfg.validity.clone().filter(|_| is_root) {
            for name in [v.from_column, v.to_column] {
                let table = self.schema.table_mut(&self.cfg.table).expect("registered");
                if table.column(&name).is_none() {
                    table.add_column(Column {
                        name: name.clone(),
                        data_type: DataType::Timestamp,
                        nullable: true,
                        primary_key: false,
                    });
                }
                let column = table.column(&name).expect("added").clone();
                self.bufs[bi].seed(column);
            }
        }
    }

    /// Writes `value` into the column of name node `node` in the current row of buffer `bi`.
    fn put<N: Node>(&mut self, bi: usize, node: usize, value: &N, not_null: bool) {
        if value.is_null() {
            return;
        }
        // fast path: a column this batch already has, and a value of its type
        if let Some(ci) = self.bufs[bi].by_node.get(node).copied().filter(|c| *c != u32::MAX)
            && let Some(cell) = coerce(self.bufs[bi].cols[ci as usize].column.data_type, value)
        {
            self.bufs[bi].append(ci as usize, cell);
            return;
        }
        let name = Arc::clone(&self.names[node].full);
        self.put_slow(bi, node, &name, value, not_null);
    }

    /// A system column value, without building a JSON value for it.
    fn put_sys(&mut self, bi: usize, node: usize, cell: Cell<'_>) {
        if let Some(ci) = self.bufs[bi].by_node.get(node).copied().filter(|c| *c != u32::MAX) {
            self.bufs[bi].append(ci as usize, cell);
            return;
        }
        if let Cell::Ts(_) = cell {
            // scd2's validity columns, seeded with the table
            let buf = &mut self.bufs[bi];
            let ci = *buf.index.get(&*self.names[node].full).expect("validity columns are seeded");
            if buf.by_node.len() <= node {
                buf.by_node.resize(node + 1, u32::MAX);
            }
            buf.by_node[node] = ci as u32;
            buf.append(ci, cell);
            return;
        }
        let value = match cell {
            Cell::Str(s) => Value::String(s.to_string()),
            Cell::Owned(s) => Value::String(s),
            Cell::I64(i) => Value::from(i),
            _ => unreachable!("system columns are text or bigint"),
        };
        let name = Arc::clone(&self.names[node].full);
        self.put_slow(bi, node, &name, &value, true);
    }

    /// Creates the column (or a variant column) as dlt would, then writes the value.
    fn put_slow<N: Node>(&mut self, bi: usize, node: usize, col: &str, value: &N, not_null: bool) {
        let buf = &mut self.bufs[bi];
        let table = self.schema.table_mut(&buf.name).expect("table registered with its buffer");
        let (col_name, dtype, is_base) = match table.column(col).map(|c| c.data_type) {
            Some(t) if coerce(t, value).is_some() => (col.to_string(), t, true),
            Some(_) => {
                let (variant, vt) = variant_for(col, value);
                match table.column(&variant).map(|c| c.data_type) {
                    Some(t) if coerce(t, value).is_some() => (variant, t, false),
                    Some(_) => return, // dlt fails here; resttap keeps the rest of the row
                    None => (variant, vt, false),
                }
            }
            None => (col.to_string(), natural_type(value), true),
        };
        if table.column(&col_name).is_none() {
            let root = !table.is_nested();
            let pk = root && self.cfg.primary_key.contains(&col_name);
            let hinted = self.cfg.hints_of(&buf.name).iter().find(|h| h.name == col_name).and_then(|h| h.nullable);
            table.add_column(Column {
                name: col_name.clone(),
                data_type: dtype,
                nullable: !(pk || not_null) && hinted != Some(false),
                primary_key: pk,
            });
        }
        let ci = match buf.index.get(&col_name) {
            Some(i) => *i,
            None => {
                let column = table.column(&col_name).expect("just added").clone();
                let mut builder = Builder::new(dtype);
                for _ in 0..buf.rows {
                    builder.append_null();
                }
                buf.cols.push(ColBuf { column, builder, len: buf.rows });
                buf.index.insert(col_name, buf.cols.len() - 1);
                buf.cols.len() - 1
            }
        };
        if is_base {
            if buf.by_node.len() <= node {
                buf.by_node.resize(node + 1, u32::MAX);
            }
            buf.by_node[node] = ci as u32;
        }
        buf.append(ci, coerce(dtype, value).expect("checked coercible"));
    }

    fn end_row(&mut self, bi: usize) {
        self.bufs[bi].rows += 1;
    }

    /// Is `name` in `table` to be kept whole as json (nesting limit or an existing json column)?
    fn keep_whole(&self, table: &str, name: &str, level: i64) -> bool {
        level <= 0
            || self.schema.table(table).and_then(|t| t.column(name)).is_some_and(|c| c.data_type == DataType::Json)
    }

    /// dlt's `_flatten`: scalars of `obj` and its nested objects (depth first, last object
    /// first, as dlt's stack does) with their name nodes, and the lists found on the way.
    fn flatten<'v, N: Node>(
        &mut self,
        table: &str,
        obj: &'v N,
        level: i64,
        out: &mut Vec<(usize, &'v N)>,
        lists: &mut Vec<ListAt<'v, N>>,
    ) {
        let mut stack: Vec<(&N, i64, usize)> = vec![(obj, level, 0)];
        while let Some((cur, lvl, parent)) = stack.pop() {
            for (pos, (k, v)) in cur.entries().into_iter().flatten().enumerate() {
                let node = self.child_at(parent, pos, k);
                match v.kind() {
                    Kind::Obj if !self.keep_whole(table, &self.names[node].full, lvl) => stack.push((v, lvl - 1, node)),
                    Kind::Arr(a) if !self.keep_whole(table, &self.names[node].full, lvl) => lists.push((node, a)),
                    _ => out.push((node, v)),
                }
            }
        }
        if self.aliased {
            keep_last_in_place(&self.names, out);
            keep_last_in_place(&self.names, lists);
        }
    }

    /// Normalizes one record of the resource. Returns the batches of tables that are full.
    pub fn push<N: Node>(&mut self, record: &N, out: &mut Vec<TableBatch>) -> Result<(), NormalizeError> {
        if record.entries().is_none() {
            // dlt wraps non-objects as {"value": ...}
            let inner: Value = serde_json::from_str(&record.to_json()).expect("a node is valid JSON");
            let mut m = serde_json::Map::new();
            m.insert(cols::VALUE.into(), inner);
            return self.push(&Value::Object(m), out);
        }
        let root = Arc::clone(&self.root);
        let level = self.cfg.max_nesting.map_or(1000, i64::from);
        let mut fields = Vec::with_capacity(16);
        let mut lists = Vec::new();
        self.flatten(&root, record, level, &mut fields, &mut lists);
        let own_id = self.settle_system_keys(&mut fields, &[self.sys.load_id], &[]);
        // the key's value as the table gets it (the first non-null of the keys normalized to
        // its name), for the order of keys
        let mut first_key = None;
        self.required_seen.fill(false);
        // a required value of another type would go to a variant column, leaving the required
        // column null: dlt's load fails on the NOT NULL constraint, resttap before loading
        let mut unfit = None;
        let table = self.schema.table(&root);
        for (node, v) in &fields {
            let r = self.required_of[*node];
            if r != u32::MAX && !v.is_null() {
                // required[0] is the key's first column when there is a key
                if r == 0 && self.required[0].1 && first_key.is_none() {
                    first_key = Some(v.kind());
                }
                self.required_seen[r as usize] = true;
                let existing = table.and_then(|t| t.column(&self.names[*node].full));
                if let Some(c) = existing.filter(|c| coerce(c.data_type, *v).is_none()) {
                    unfit.get_or_insert((r as usize, c.data_type));
                }
            }
        }
        let excerpt = || {
            let mut excerpt: String = record.to_json().chars().take(200).collect();
            if excerpt.len() >= 200 {
                excerpt.push('…');
            }
            excerpt
        };
        if let Some(missing) = self.required_seen.iter().position(|seen| !seen) {
            let ((column, is_key), table) = (self.required[missing].clone(), root.to_string());
            return Err(if is_key {
                NormalizeError::MissingPrimaryKey { table, column, excerpt: excerpt() }
            } else {
                NormalizeError::MissingRequired { table, column, excerpt: excerpt() }
            });
        }
        if let Some((r, data_type)) = unfit {
            let ((column, is_key), table) = (self.required[r].clone(), root.to_string());
            let role = if is_key { "primary key" } else { "`nullable: false`" };
            return Err(NormalizeError::UnfitRequired { table, column, role, data_type, excerpt: excerpt() });
        }
        if self.policed {
            if self.root_new && self.cfg.contract.tables != ContractMode::Evolve {
                // freeze was refused before the load; discard_*: the resource's rows are dropped
                if let Some(e) = self.refuses_root() {
                    return Err(e);
                }
                return Ok(());
            }
            self.record_key = self.key_text(&fields);
            let root_new = self.root_new;
            if !self.police(&root, &mut fields, root_new)? {
                return Ok(());
            }
        }
        self.keys = match (self.keys, first_key) {
            (KeyOrder::Start, Some(Kind::I64(k))) => KeyOrder::Rising(k),
            (KeyOrder::Rising(last), Some(Kind::I64(k))) if k > last => KeyOrder::Rising(k),
            _ => KeyOrder::Unknown,
        };
        let bi = self.buf(&root, None);
        for (node, v) in &fields {
            self.put(bi, *node, *v, false);
        }
        let load_id = Arc::clone(&self.cfg.load_id);
        self.put_sys(bi, self.sys.load_id, Cell::Str(&load_id));
        let id = match self.cfg.row_ids {
            RowIds::Random => random_id(),
            RowIds::RowHash => hash::row_hash(record, &mut self.hash_buf),
            RowIds::KeyHash => {
                let mut key: Vec<(&str, &N)> = fields
                    .iter()
                    .filter(|(node, _)| self.cfg.primary_key.iter().any(|k| **k == *self.names[*node].full))
                    .map(|(node, v)| (&*self.names[*node].full, *v))
                    .collect();
                hash::key_hash(&mut key, &mut self.hash_buf)
            }
        };
        self.put_sys(bi, self.sys.id, Cell::Str(own_id.as_deref().unwrap_or(id.as_str())));
        if let (Some((from, to)), Some(v)) = (self.validity_nodes, &self.cfg.validity) {
            let (from_ts, to_ts) = (v.from, v.to);
            self.put_sys(bi, from, Cell::Ts(from_ts));
            if let Some(t) = to_ts {
                self.put_sys(bi, to, Cell::Ts(t));
            }
        }
        self.end_row(bi);
        let row_id = own_id.as_deref().unwrap_or(id.as_str());
        let root_id = if self.merge { Some(row_id) } else { None };
        for (node, items) in lists {
            self.list(bi, node, items, row_id, root_id, level - 1)?;
        }
        self.records += 1;
        for b in &mut self.bufs {
            if b.rows >= self.cfg.batch_rows {
                out.extend(b.flush(false));
            }
        }
        Ok(())
    }

    /// Rows of the nested table for the list at name node `node` of a row of buffer `parent`.
    fn list<N: Node>(
        &mut self,
        parent: usize,
        node: usize,
        items: &[N],
        parent_id: &str,
        root_id: Option<&str>,
        level: i64,
    ) -> Result<(), NormalizeError> {
        let (bi, table) = match self.nested.get(&(parent, node)) {
            Some((bi, table)) => (*bi, Arc::clone(table)),
            None => {
                let parent_table = self.bufs[parent].name.clone();
                let table: Arc<str> = Arc::from(format!("{parent_table}{PATH_SEPARATOR}{}", self.names[node].full));
                if self.policed && !items.is_empty() && is_new(&self.schema, &table) {
                    match self.cfg.contract.tables {
                        ContractMode::Evolve => {}
                        ContractMode::Freeze => {
                            return Err(NormalizeError::Frozen {
                                entity: "tables",
                                table: table.to_string(),
                                column: None,
                                detail: format!(
                                    "the dataset has no table `{table}` and `schema_contract` freezes `tables`; the record with {} brings it (a list in `{}`). Let tables `evolve`, or drop it with `discard_row`",
                                    self.record_key, self.names[node].full
                                ),
                            });
                        }
                        // the new table's rows (and theirs) are dropped, the parent row kept
                        ContractMode::DiscardRow | ContractMode::DiscardValue => return Ok(()),
                    }
                }
                let bi = self.buf(&table, Some(&parent_table));
                self.nested.insert((parent, node), (bi, Arc::clone(&table)));
                (bi, table)
            }
        };
        let mut fields = Vec::new();
        let dlt_hash = self.cfg.row_ids != RowIds::Random;
        for (idx, item) in items.iter().enumerate() {
            let id = if dlt_hash { dlt_nested_id(parent_id, &table, idx) } else { nested_id(parent_id, &table, idx) };
            let mut child_lists: Vec<ListAt<'_, N>> = Vec::new();
            let mut own_id = None;
            fields.clear();
            match item.kind() {
                Kind::Obj => {
                    self.flatten(&table, item, level, &mut fields, &mut child_lists);
                    let overwritten = if root_id.is_some() { &[self.sys.root_id][..] } else { &[] };
                    let made = [self.sys.parent_id, self.sys.list_idx];
                    own_id = self.settle_system_keys(&mut fields, overwritten, &made);
                    if self.policed && !self.police(&table, &mut fields, is_new(&self.schema, &table))? {
                        continue;
                    }
                    for (node, v) in &fields {
                        self.put(bi, *node, *v, false);
                    }
                }
                // a list in a list: dlt wraps it as {"list": [...]}, one table deeper
                Kind::Arr(a) => child_lists.push((self.sys.list, a)),
                _ if self.policed => {
                    let mut value = vec![(self.sys.value, item)];
                    if !self.police(&table, &mut value, is_new(&self.schema, &table))? {
                        continue;
                    }
                    // a value the contract discarded leaves the row without it, as in dlt
                    if !value.is_empty() {
                        self.put(bi, self.sys.value, item, false)
                    }
                }
                _ => self.put(bi, self.sys.value, item, false),
            }
            if let Some(r) = root_id {
                self.put_sys(bi, self.sys.root_id, Cell::Str(r));
            }
            self.put_sys(bi, self.sys.parent_id, Cell::Str(parent_id));
            self.put_sys(bi, self.sys.list_idx, Cell::I64(idx as i64));
            self.put_sys(bi, self.sys.id, Cell::Str(own_id.as_deref().unwrap_or(id.as_str())));
            self.end_row(bi);
            let next_level = if matches!(item.kind(), Kind::Arr(_)) { level - 1 } else { level };
            for (node, sub) in child_lists {
                self.list(bi, node, sub, own_id.as_deref().unwrap_or(id.as_str()), root_id, next_level - 1)?;
            }
        }
        Ok(())
    }

    /// Hands over every row still buffered. The normalizer goes on taking records after it
    /// (a checkpoint hands over a load's rows part-way through a run).
    pub fn finish(&mut self) -> Vec<TableBatch> {
        self.bufs.iter_mut().filter_map(|b| b.flush(true)).collect()
    }

    /// Stamps the rows of records pushed from now on with another load id (the next load of a
    /// run that commits at checkpoints); call it after [`Normalizer::finish`].
    pub fn set_load_id(&mut self, load_id: Arc<str>) {
        debug_assert!(self.bufs.iter().all(|b| b.rows == 0), "rows of the last load still buffered");
        self.cfg.load_id = load_id;
    }
}

/// A row's `_dlt_id`: 10 bytes in base64 without padding, 14 ASCII characters kept inline
/// (one is made for every row: no allocation, and read as text without checking it again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowId(tinystr::TinyAsciiStr<14>);

impl RowId {
    pub(crate) fn encode(bytes: &[u8; 10]) -> RowId {
        let mut out = [0u8; 14];
        let n = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode_slice(bytes, &mut out)
            .expect("10 bytes are 14 base64 characters");
        debug_assert_eq!(n, out.len());
        RowId(tinystr::TinyAsciiStr::try_from_raw(out).expect("base64 is ASCII"))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// dlt's `uniq_id_base64(10)`: 10 random bytes, base64 without padding.
fn random_id() -> RowId {
    RowId::encode(&rand::random())
}

/// dlt's `_dlt_id` of the nested row at `idx` of `table` under the row `parent_id`:
/// `digest128("{parent_id}_{table}_{idx}")`, for tables whose root ids are deterministic.
pub fn dlt_nested_id(parent_id: &str, table: &str, idx: usize) -> RowId {
    let mut digits = itoa::Buffer::new();
    let parts = [parent_id.as_bytes(), b"_", table.as_bytes(), b"_", digits.format(idx).as_bytes()];
    RowId::encode(&resttap_schema::digest::shake128(&parts))
}

/// The `_dlt_id` of the nested row at `idx` of `table` under the row `parent_id`: 10 bytes of the
/// XXH3-128 hash of `"{parent_id}_{table}_{idx}"`, base64 without padding, as long as dlt's ids
/// and in the same alphabet.
///
/// dlt hashes the same text with shake-128 (`digest128`, [`dlt_nested_id`]). That only tells
/// apart datasets whose root ids are deterministic (upsert, insert-only, scd2, which use
/// [`dlt_nested_id`]): under `append`, `replace` and merge's `delete-insert` every root id is
/// random, so no nested id can equal dlt's whatever the hash, and what holds is what dlt's ids
/// give: unique, and the same for the same parent, table and position. Shake-128 cost 13-17% of
/// the extraction workers' CPU.
pub fn nested_id(parent_id: &str, table: &str, idx: usize) -> RowId {
    // the text on the stack when it fits (ids are 14 characters; table names are short)
    let mut digits = itoa::Buffer::new();
    let parts = [parent_id.as_bytes(), b"_", table.as_bytes(), b"_", digits.format(idx).as_bytes()];
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut stack = [0u8; 256];
    let mut heap = Vec::new();
    let text: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    let mut at = 0;
    for p in parts {
        text[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    let hash = twox_hash::XxHash3_128::oneshot(text).to_le_bytes();
    RowId::encode(hash[..10].try_into().expect("16 bytes"))
}

#[cfg(test)]
mod tests;
