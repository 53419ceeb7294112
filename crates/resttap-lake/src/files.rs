//! Parquet files in an object store: written as they stream (multipart uploads, so that a file
//! is either whole or absent, and memory stays bounded), and read back (footers, key columns,
//! whole files for a merge's rewrite).

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, TimeUnit};
use bytes::Bytes;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use resttap_schema::{Column, DataType};
use tokio::runtime::Handle;

/// Rows per row group at most: large enough for engines to read well (DuckDB's own are 122,880;
/// dlt's pyarrow files have 5,000).
pub const ROW_GROUP_ROWS: usize = 128 * 1024;
/// A row group is flushed early when its writer's memory (buffered pages and encoder state,
/// `ArrowWriter::memory_size`) reaches this: a writer per table is open at once. The seed's
/// wide tables then get row groups of ~80,000 rows; at N=1,000,000 peak RSS 151 MB (6 MiB:
/// 18,432-row groups, 137 MB; `in_progress_size` at 12 MiB: 131,072-row groups, 169 MB).
pub const ROW_GROUP_BYTES: usize = 12 << 20;
/// A file is closed, and the next rows go to a new one, at this many rows.
pub const FILE_ROWS: usize = 2 * 1024 * 1024;
/// Bytes sent per part of a multipart upload: S3 needs 5 MiB at least (but for the last); a
/// local file takes 1 MiB parts, so that each open file holds less (N=1,000,000: peak RSS 165
/// -> ~155 MB).
const S3_PART_BYTES: usize = 5 << 20;
const LOCAL_PART_BYTES: usize = 1 << 20;

/// The dlt type of a file's Arrow type (`None`: a type resttap does not write).
pub fn dlt_type(t: &ArrowType) -> Option<DataType> {
    Some(match t {
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => DataType::Text,
        ArrowType::Int64 | ArrowType::Int32 | ArrowType::Int16 | ArrowType::Int8 => DataType::Bigint,
        ArrowType::Float64 | ArrowType::Float32 => DataType::Double,
        ArrowType::Boolean => DataType::Bool,
        ArrowType::Timestamp(_, _) => DataType::Timestamp,
        ArrowType::Date32 | ArrowType::Date64 => DataType::Date,
        _ => return None,
    })
}

/// The Arrow schema of a file holding `columns`.
pub fn arrow_schema(columns: &[Column]) -> Arc<ArrowSchema> {
    Arc::new(ArrowSchema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, resttap_normalize::arrow_type(c.data_type), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// The writer settings of resttap's files.
pub fn properties() -> WriterProperties {
    // SNAPPY, dictionaries and statistics, as dlt's (pyarrow's) files have them
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("resttap version {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A `Write` that streams to a multipart upload: the object appears whole when the upload
/// completes, and never otherwise (a killed run leaves at most an aborted upload, which S3
/// expires and the local store keeps under a temporary name).
struct UploadSink {
    rt: Handle,
    upload: Box<dyn MultipartUpload>,
    buf: Vec<u8>,
    part_bytes: usize,
    written: u64,
}

impl UploadSink {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let part = PutPayload::from(std::mem::replace(&mut self.buf, Vec::with_capacity(self.part_bytes)));
        self.rt.block_on(self.upload.put_part(part)).map_err(std::io::Error::other)
    }
}

impl Write for UploadSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.written += data.len() as u64;
        if self.buf.len() >= self.part_bytes {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A file written.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    /// Its key in the store.
    pub path: Path,
    pub size: u64,
    pub rows: u64,
    /// Delta's statistics of it (`numRecords`, `nullCount`, `minValues`, `maxValues`), as JSON.
    pub stats: String,
}

/// One Parquet file being written.
pub struct FileWriter {
    path: Path,
    columns: Vec<Column>,
    writer: ArrowWriter<UploadSink>,
    rows: u64,
    stats: Stats,
}

impl FileWriter {
    /// Starts the file `path` for rows with `columns` (`local`: the store is a local folder).
    pub fn create(
        rt: &Handle,
        store: &Arc<dyn ObjectStore>,
        path: Path,
        columns: &[Column],
        local: bool,
    ) -> Result<Self, String> {
        let upload = rt.block_on(store.put_multipart(&path)).map_err(|e| e.to_string())?;
        let part_bytes = if local { LOCAL_PART_BYTES } else { S3_PART_BYTES };
        let sink = UploadSink { rt: rt.clone(), upload, buf: Vec::with_capacity(part_bytes), part_bytes, written: 0 };
        let writer =
            ArrowWriter::try_new(sink, arrow_schema(columns), Some(properties())).map_err(|e| e.to_string())?;
        Ok(FileWriter { path, columns: columns.to_vec(), writer, rows: 0, stats: Stats::new(columns) })
    }

    /// The columns of the file.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes `batch`, whose columns are the file's.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        // the normalizer's batches carry their own schema (same names and types); cast it away
        let batch = RecordBatch::try_new(arrow_schema(&self.columns), batch.columns().to_vec())
            .map_err(|e| format!("the rows do not fit the file's columns: {e}"))?;
        self.stats.add(&batch);
        self.writer.write(&batch).map_err(|e| e.to_string())?;
        self.rows += batch.num_rows() as u64;
        if self.writer.memory_size() >= ROW_GROUP_BYTES {
            self.writer.flush().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Finishes the file: it exists, whole, once this returns.
    pub fn finish(self, rt: &Handle) -> Result<WrittenFile, String> {
        let FileWriter { path, writer, rows, stats, .. } = self;
        let mut sink = writer.into_inner().map_err(|e| e.to_string())?;
        sink.send().map_err(|e| e.to_string())?;
        let size = sink.written;
        rt.block_on(sink.upload.complete()).map_err(|e| e.to_string())?;
        Ok(WrittenFile { path, size, rows, stats: stats.to_json(rows) })
    }

    /// Gives the file up: its upload is aborted and it never appears.
    pub fn abandon(self, rt: &Handle) {
        if let Ok(mut sink) = self.writer.into_inner() {
            let _ = rt.block_on(sink.upload.abort());
        }
    }
}

/// Delta's per-file statistics, gathered as rows are written: null counts for every column,
/// minimum and maximum for numbers, timestamps and dates (what data skipping uses; strings are
/// left out rather than truncated).
struct Stats {
    names: Vec<String>,
    nulls: Vec<u64>,
    min: Vec<Option<serde_json::Value>>,
    max: Vec<Option<serde_json::Value>>,
}

impl Stats {
    fn new(columns: &[Column]) -> Self {
        let n = columns.len();
        Stats {
            names: columns.iter().map(|c| c.name.clone()).collect(),
            nulls: vec![0; n],
            min: vec![None; n],
            max: vec![None; n],
        }
    }

    fn add(&mut self, batch: &RecordBatch) {
        use arrow::array::{AsArray, Date32Array, Float64Array, Int64Array, TimestampMicrosecondArray};
        use arrow::compute::{max, min};
        use serde_json::Value;
        for (i, col) in batch.columns().iter().enumerate() {
            self.nulls[i] += col.null_count() as u64;
            let (lo, hi): (Option<Value>, Option<Value>) = match col.data_type() {
                ArrowType::Int64 => {
                    let a: &Int64Array = col.as_primitive();
                    (min(a).map(Value::from), max(a).map(Value::from))
                }
                ArrowType::Float64 => {
                    let a: &Float64Array = col.as_primitive();
                    let f = |v: Option<f64>| {
                        v.filter(|x| x.is_finite()).and_then(serde_json::Number::from_f64).map(Value::Number)
                    };
                    (f(min(a)), f(max(a)))
                }
                ArrowType::Timestamp(TimeUnit::Microsecond, _) => {
                    let a: &TimestampMicrosecondArray = col.as_primitive();
                    let ts = |v: Option<i64>| {
                        v.and_then(chrono::DateTime::from_timestamp_micros)
                            .map(|d| Value::from(d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()))
                    };
                    // truncated to milliseconds, as Spark and delta-rs write them (readers widen
                    // the maximum by a millisecond)
                    let ms = |v: i64| v - v.rem_euclid(1000);
                    (ts(min(a).map(ms)), ts(max(a).map(ms)))
                }
                ArrowType::Date32 => {
                    let a: &Date32Array = col.as_primitive();
                    let d = |v: Option<i32>| {
                        v.and_then(|days| chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163))
                            .map(|d| Value::from(d.format("%Y-%m-%d").to_string()))
                    };
                    (d(min(a)), d(max(a)))
                }
                _ => (None, None),
            };
            merge_bound(&mut self.min[i], lo, true);
            merge_bound(&mut self.max[i], hi, false);
        }
    }

    fn to_json(&self, rows: u64) -> String {
        let mut nulls = serde_json::Map::new();
        let mut min = serde_json::Map::new();
        let mut max = serde_json::Map::new();
        for (i, name) in self.names.iter().enumerate() {
            nulls.insert(name.clone(), self.nulls[i].into());
            if let (Some(lo), Some(hi)) = (&self.min[i], &self.max[i]) {
                min.insert(name.clone(), lo.clone());
                max.insert(name.clone(), hi.clone());
            }
        }
        serde_json::json!({"numRecords": rows, "minValues": min, "maxValues": max, "nullCount": nulls}).to_string()
    }
}

fn merge_bound(cur: &mut Option<serde_json::Value>, new: Option<serde_json::Value>, lower: bool) {
    use serde_json::Value;
    let Some(new) = new else { return };
    let replace = match (&*cur, &new) {
        (None, _) => true,
        (Some(Value::Number(a)), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or_default(), b.as_f64().unwrap_or_default());
            if lower { b < a } else { b > a }
        }
        // ISO dates and timestamps of one format order as strings
        (Some(Value::String(a)), Value::String(b)) => {
            if lower {
                b < a
            } else {
                b > a
            }
        }
        _ => false,
    };
    if replace {
        *cur = Some(new);
    }
}

/// Reads a whole object.
pub fn get(rt: &Handle, store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Bytes, object_store::Error> {
    rt.block_on(async { store.get(path).await?.bytes().await })
}

/// Where a Parquet object is read from: a local file as it is (read in place, only the parts
/// needed), an object in a bucket whole.
fn open_reader(
    rt: &Handle,
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    local: bool,
) -> Result<ParquetRecordBatchReaderBuilder<Source>, String> {
    let source = if local {
        Source::File(std::fs::File::open(format!("/{path}")).map_err(|e| format!("/{path}: {e}"))?)
    } else {
        Source::Bytes(get(rt, store, path).map_err(|e| format!("{path}: {e}"))?)
    };
    ParquetRecordBatchReaderBuilder::try_new(source).map_err(|e| format!("{path}: {e}"))
}

/// A local file or a whole object, for the Parquet reader.
pub enum Source {
    File(std::fs::File),
    Bytes(Bytes),
}

impl parquet::file::reader::Length for Source {
    fn len(&self) -> u64 {
        match self {
            Source::File(f) => f.len(),
            Source::Bytes(b) => b.len() as u64,
        }
    }
}

impl parquet::file::reader::ChunkReader for Source {
    type T = Box<dyn std::io::Read + Send>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        match self {
            Source::File(f) => Ok(Box::new(f.get_read(start)?)),
            Source::Bytes(b) => Ok(Box::new(b.get_read(start)?)),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        match self {
            Source::File(f) => f.get_bytes(start, length),
            Source::Bytes(b) => b.get_bytes(start, length),
        }
    }
}

/// The footer of a Parquet object.
pub fn footer(
    rt: &Handle,
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    local: bool,
) -> Result<Arc<ParquetMetaData>, String> {
    Ok(open_reader(rt, store, path, local)?.metadata().clone())
}

/// The rows of a Parquet object, batch by batch as they are read, with only the columns `only`
/// (all when `None`).
pub fn read(
    rt: &Handle,
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    only: Option<&[&str]>,
    local: bool,
) -> Result<impl Iterator<Item = Result<RecordBatch, String>> + use<>, String> {
    let mut b = open_reader(rt, store, path, local)?;
    if let Some(names) = only {
        let schema = b.parquet_schema();
        let idx: Vec<usize> = (0..schema.num_columns()).filter(|&i| names.contains(&schema.column(i).name())).collect();
        let mask = parquet::arrow::ProjectionMask::leaves(schema, idx);
        b = b.with_projection(mask);
    }
    let reader = b.with_batch_size(64 * 1024).build().map_err(|e| format!("{path}: {e}"))?;
    let p = path.to_string();
    Ok(reader.map(move |r| r.map_err(|e| format!("{p}: {e}"))))
}

/// The string values of column `name` in `batch` (`None` for nulls), whatever its integer or
/// string type: merge keys compared as text.
pub fn key_strings(batch: &RecordBatch, names: &[String]) -> Option<Vec<String>> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let cols: Vec<_> = names.iter().map(|n| batch.column_by_name(n)).collect::<Option<Vec<_>>>()?;
    let opts = FormatOptions::default();
    let fmts: Vec<_> =
        cols.iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts)).collect::<Result<_, _>>().ok()?;
    Some(
        (0..batch.num_rows())
            .map(|r| {
                let mut k = String::new();
                for (i, f) in fmts.iter().enumerate() {
                    if i > 0 {
                        k.push('\u{1f}');
                    }
                    if cols[i].is_null(r) {
                        k.push('\u{0}');
                    } else {
                        k.push_str(&f.value(r).to_string());
                    }
                }
                k
            })
            .collect(),
    )
}

/// A primary key value: an integer key as it is, others (several columns, text) as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Int(i64),
    Text(Box<str>),
}

/// The primary key of each row of `batch` (`None` when the key columns are missing).
pub fn keys(batch: &RecordBatch, names: &[String]) -> Option<Vec<Key>> {
    use arrow::array::AsArray;
    if let [name] = names
        && let Some(col) = batch.column_by_name(name)
        && col.data_type() == &ArrowType::Int64
        && col.null_count() == 0
    {
        let a = col.as_primitive::<arrow::datatypes::Int64Type>();
        return Some(a.values().iter().map(|v| Key::Int(*v)).collect());
    }
    key_strings(batch, names).map(|v| v.into_iter().map(|s| Key::Text(s.into())).collect())
}

/// The text of column `name` at `row` (`_dlt_id`s).
pub fn text_at(batch: &RecordBatch, name: &str, row: usize) -> Option<String> {
    use arrow::array::AsArray;
    let col = batch.column_by_name(name)?;
    let a = col.as_string_opt::<i32>()?;
    (!a.is_null(row)).then(|| a.value(row).to_string())
}

/// The minimum and maximum of an integer column in Delta statistics (`minValues` /
/// `maxValues`), when the file's statistics have them.
pub fn int_range(stats: &str, column: &str) -> Option<(i64, i64)> {
    let v: serde_json::Value = serde_json::from_str(stats).ok()?;
    Some((v.pointer(&format!("/minValues/{column}"))?.as_i64()?, v.pointer(&format!("/maxValues/{column}"))?.as_i64()?))
}

/// A set of primary keys, compact for integer keys (a merge holds the load's keys while it scans
/// the table's files).
#[derive(Debug, Default)]
pub struct KeySet {
    ints: std::collections::HashSet<i64>,
    texts: std::collections::HashSet<Box<str>>,
    range: Option<(i64, i64)>,
}

impl KeySet {
    pub fn insert(&mut self, k: Key) {
        match k {
            Key::Int(i) => {
                self.ints.insert(i);
                self.range = Some(self.range.map_or((i, i), |(lo, hi)| (lo.min(i), hi.max(i))));
            }
            Key::Text(t) => {
                self.texts.insert(t);
            }
        }
    }

    pub fn contains(&self, k: &Key) -> bool {
        match k {
            Key::Int(i) => self.ints.contains(i),
            Key::Text(t) => self.texts.contains(t),
        }
    }

    /// The smallest and largest integer key, when every key is one.
    pub fn int_range(&self) -> Option<(i64, i64)> {
        self.range.filter(|_| self.texts.is_empty())
    }
}

impl Extend<Key> for KeySet {
    fn extend<I: IntoIterator<Item = Key>>(&mut self, iter: I) {
        for k in iter {
            self.insert(k);
        }
    }
}

/// A set of `_dlt_id`s: ids of 16 bytes or less (dlt's are 14) inline, without an allocation
/// each.
#[derive(Debug, Default)]
pub struct IdSet {
    short: std::collections::HashSet<[u8; 16]>,
    long: std::collections::HashSet<Box<str>>,
}

impl IdSet {
    fn pack(s: &str) -> Option<[u8; 16]> {
        let b = s.as_bytes();
        (b.len() <= 16 && !b.contains(&0)).then(|| {
            let mut a = [0u8; 16];
            a[..b.len()].copy_from_slice(b);
            a
        })
    }

    pub fn insert(&mut self, s: &str) {
        match Self::pack(s) {
            Some(a) => {
                self.short.insert(a);
            }
            None => {
                self.long.insert(s.into());
            }
        }
    }

    pub fn contains(&self, s: &str) -> bool {
        match Self::pack(s) {
            Some(a) => self.short.contains(&a),
            None => self.long.contains(s),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.short.is_empty() && self.long.is_empty()
    }
}

impl Extend<String> for IdSet {
    fn extend<I: IntoIterator<Item = String>>(&mut self, iter: I) {
        for s in iter {
            self.insert(&s);
        }
    }
}

/// Whether any row of `batch`'s text column `name` is in `ids`, and which rows are not.
pub fn rows_not_in(batch: &RecordBatch, name: &str, ids: &IdSet) -> Option<(bool, arrow::array::BooleanArray)> {
    use arrow::array::AsArray;
    let a = batch.column_by_name(name)?.as_string_opt::<i32>()?;
    let keep: arrow::array::BooleanArray =
        (0..a.len()).map(|i| Some(a.is_null(i) || !ids.contains(a.value(i)))).collect();
    let any = keep.false_count() > 0;
    Some((any, keep))
}

#[cfg(test)]
mod sets {
    use super::*;

    #[test]
    fn keys_and_ids_are_found_as_inserted() {
        let mut k = KeySet::default();
        k.extend([Key::Int(5), Key::Int(-2), Key::Text("a\u{1f}b".into())]);
        assert!(k.contains(&Key::Int(5)) && !k.contains(&Key::Int(6)) && k.contains(&Key::Text("a\u{1f}b".into())));
        assert_eq!(k.int_range(), None, "not every key is an integer");
        let mut ids = IdSet::default();
        ids.extend(["z5jIxXIbUnmbKw".to_string(), "a-much-longer-id-than-sixteen".to_string()]);
        assert!(
            ids.contains("z5jIxXIbUnmbKw")
                && ids.contains("a-much-longer-id-than-sixteen")
                && !ids.contains("z5jIxXIbUnmbK")
        );
    }
}
