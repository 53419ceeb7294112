//! The lake destination: dlt's `filesystem` layout in a local directory or an S3 bucket, with
//! plain Parquet tables or Delta Lake tables (`table_format: delta`).
//!
//! # Layout (dlt 1.31's)
//!
//! `<bucket_url>/<dataset>/`: `init`; `<table>/<load_id>.<file_id>.parquet` (a Delta table's
//! files sit in the same place, beside its `_delta_log/`); `_dlt_loads/`, `_dlt_version/`,
//! `_dlt_pipeline_state/` as jsonl files ([`system`]). resttap keeps its own bookkeeping in
//! `_resttap/` (the lock, loads in progress), which dlt never reads.
//!
//! # What a load guarantees
//!
//! - **Files appear whole or not at all**: each is a multipart upload completed at its end.
//! - **Delta tables change by one commit per table per load**, carrying an application
//!   transaction (`txn`: app id `resttap/<dataset>`, version = the load id in microseconds).
//!   Before the first commit, the load's plan (every table's files to add and remove, the system
//!   files) is written to `_resttap/loads/<load_id>.json`; a load killed between two tables'
//!   commits is finished from it by the next run before it reads the state, and a table whose
//!   `txn` shows the load already is not written again. The pipeline state and `_dlt_loads` are
//!   written only after every table committed.
//! - **A killed run's files are never referenced**: Delta tables reference only committed files;
//!   files of a load that never reached its plan are deleted by the next run.
//! - Plain Parquet tables are as dlt makes them: `append`; `replace` deletes the table's earlier
//!   files, after the new ones are in; `merge` appends, as dlt does on plain files (with a
//!   warning: use `table_format: delta` to merge).
//! - `merge` on Delta tables: records replaced by primary key, the last of a load's duplicates
//!   kept, and the nested rows of replaced records removed (dlt's Delta `upsert` leaves those
//!   behind), copy-on-write: only files holding replaced keys are rewritten.
//! - One run per dataset: a lock (`flock` locally; on S3 a lease object refreshed while the
//!   run holds it).

mod delta;
pub mod files;
mod floor;
mod location;
mod lock;
pub mod system;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use deltalake_core::protocol::SaveMode;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use resttap_load::dlt::{self, SystemRows};
use resttap_load::{
    ColumnInfo, CommitReport, Destination, LoadError, LoadInfo, LoadPlan, LoadRows, PipelineState, TableInfo,
    TableReport,
};
use resttap_normalize::TableBatch;
use resttap_schema::{Column, Schema, TableFormat, WriteDisposition, cols};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use files::{FileWriter, WrittenFile};
pub use floor::{ParquetFloor, parquet_floor};
pub use location::{LakeLocation, S3Credentials, Secret};

/// Whether a lake is opened to read or to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Load,
}

/// A dataset in a lake.
pub struct Lake {
    loc: LakeLocation,
    store: Arc<dyn ObjectStore>,
    /// `<prefix>/<dataset>`
    root: Path,
    dataset: String,
    rt: Handle,
    _lock: Option<lock::Lock>,
    load_id: Option<String>,
    open: HashMap<String, FileWriter>,
    written: HashMap<String, Vec<WrittenFile>>,
    seq: u32,
}

/// A file of a load's plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileRec {
    path: String,
    size: u64,
    rows: u64,
    stats: String,
}

impl From<&WrittenFile> for FileRec {
    fn from(f: &WrittenFile) -> Self {
        FileRec { path: f.path.to_string(), size: f.size, rows: f.rows, stats: f.stats.clone() }
    }
}

impl From<&FileRec> for WrittenFile {
    fn from(f: &FileRec) -> Self {
        WrittenFile { path: Path::from(f.path.as_str()), size: f.size, rows: f.rows, stats: f.stats.clone() }
    }
}

/// One Delta table's part of a load.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeltaStep {
    table: String,
    columns: Vec<Column>,
    adds: Vec<FileRec>,
    removes: Vec<(String, i64)>,
    overwrite: bool,
    merge: bool,
    /// Rows of this load the table keeps (a merge drops a load's earlier duplicates).
    load_rows: u64,
}

/// A load's plan, written before its first commit and finished by the next run if it dies.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    load_id: String,
    delta: Vec<DeltaStep>,
    /// Keys deleted once the Delta tables committed (a replaced plain table's old files, files
    /// a merge rewrote before they were ever committed).
    delete: Vec<String>,
    /// System files, written in order after the tables (`_dlt_loads` last).
    system: Vec<(String, String)>,
}

const CONTROL: &str = "_resttap";

fn write_err(context: impl Into<String>, e: impl std::fmt::Display) -> LoadError {
    LoadError::Write { context: context.into(), message: location::redact(&e.to_string()) }
}

impl Lake {
    /// Opens dataset `dataset` at `loc`. [`Access::Load`] takes the dataset's lock and finishes
    /// a load a killed run left half-committed. Call it within a Tokio runtime's context (its
    /// I/O runs there), from a thread that may block.
    pub fn open(loc: &LakeLocation, dataset: &str, access: Access) -> Result<Self, LoadError> {
        let open_err = |m: String| LoadError::Open { location: loc.describe(), message: m };
        let rt = Handle::try_current().map_err(|e| open_err(e.to_string()))?;
        let (store, prefix) = loc.open().map_err(open_err)?;
        let root = prefix.clone().join(dataset);
        let mut lake = Lake {
            loc: loc.clone(),
            store,
            root,
            dataset: dataset.into(),
            rt,
            _lock: None,
            load_id: None,
            open: HashMap::new(),
            written: HashMap::new(),
            seq: 0,
        };
        if access == Access::Load {
            let key = lake.key(&format!("{CONTROL}/lock"));
            lake._lock = Some(lock::Lock::take(loc, &lake.rt, &lake.store, key, &lake.describe_dataset())?);
            lake.recover()?;
        }
        Ok(lake)
    }

    fn describe_dataset(&self) -> String {
        format!("{}/{}", self.loc.describe().split(" at ").next().unwrap_or_default(), self.dataset)
    }

    fn key(&self, rel: &str) -> Path {
        let mut p = self.root.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        p
    }

    fn put(&self, rel: &str, body: String) -> Result<(), LoadError> {
        let key = self.key(rel);
        self.rt
            .block_on(self.store.put(&key, PutPayload::from(body.into_bytes())))
            .map(|_| ())
            .map_err(|e| write_err(format!("writing {}/{rel}", self.describe_dataset()), e))
    }

    fn delete(&self, key: &Path) -> Result<(), LoadError> {
        match self.rt.block_on(self.store.delete(key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(write_err(format!("deleting {key}"), e)),
        }
    }

    /// The names of the objects directly in `rel` (not in its subfolders).
    fn list_files(&self, rel: &str) -> Result<Vec<(String, u64)>, LoadError> {
        let key = self.key(rel);
        let listed = self
            .rt
            .block_on(self.store.list_with_delimiter(Some(&key)))
            .map_err(|e| write_err(format!("listing {}/{rel}", self.describe_dataset()), e))?;
        Ok(listed.objects.into_iter().filter_map(|o| o.location.filename().map(|n| (n.to_string(), o.size))).collect())
    }

    /// The folders directly in `rel` ("" for the dataset's).
    fn list_dirs(&self, rel: &str) -> Result<Vec<String>, LoadError> {
        let key = self.key(rel);
        let listed = self
            .rt
            .block_on(self.store.list_with_delimiter(Some(&key)))
            .map_err(|e| write_err(format!("listing {}", self.describe_dataset()), e))?;
        Ok(listed.common_prefixes.into_iter().filter_map(|p| p.filename().map(String::from)).collect())
    }

    fn read_text(&self, rel: &str) -> Result<String, LoadError> {
        let bytes = files::get(&self.rt, &self.store, &self.key(rel))
            .map_err(|e| write_err(format!("reading {}/{rel}", self.describe_dataset()), e))?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| write_err(format!("reading {}/{rel}", self.describe_dataset()), e))
    }

    /// Whether the lake is a local folder (files are then read in place).
    fn local(&self) -> bool {
        matches!(self.loc, LakeLocation::Local(_))
    }

    fn app_id(&self) -> String {
        format!("resttap/{}", self.dataset)
    }

    /// The Delta log store of `table`, and the table when it is one.
    fn delta_table(
        &self,
        table: &str,
    ) -> Result<(deltalake_core::logstore::LogStoreRef, Option<deltalake_core::DeltaTable>), LoadError> {
        open_delta(&self.loc, &self.store, &self.rt, &self.key(table), &format!("{}/{table}", self.describe_dataset()))
    }

    /// Finishes what killed runs left: a load whose plan was written is committed (tables that
    /// hold it already are skipped); the files of a load that never reached its plan go.
    fn recover(&mut self) -> Result<(), LoadError> {
        let mut plans: Vec<String> =
            self.list_files(&format!("{CONTROL}/loads"))?.into_iter().map(|(n, _)| n).collect();
        plans.sort_by(|a, b| {
            system::load_order(a.trim_end_matches(".json")).total_cmp(&system::load_order(b.trim_end_matches(".json")))
        });
        for name in &plans {
            let text = self.read_text(&format!("{CONTROL}/loads/{name}"))?;
            let m: Manifest = serde_json::from_str(&text)
                .map_err(|e| write_err(format!("reading the unfinished load {CONTROL}/loads/{name}"), e))?;
            tracing::warn!(
                "finishing load {} of {}, which a run left half-committed",
                m.load_id,
                self.describe_dataset()
            );
            self.apply(&m)?;
        }
        for (name, _) in self.list_files(&format!("{CONTROL}/running"))? {
            if plans.iter().any(|p| p.trim_end_matches(".json") == name) {
                continue;
            }
            self.discard_load_files(&name)?;
            self.delete(&self.key(&format!("{CONTROL}/running/{name}")))?;
        }
        Ok(())
    }

    /// Deletes every data file of load `load_id` (a load that never committed), and what its
    /// killed uploads left (the local store's `<file>#<n>` parts).
    fn discard_load_files(&self, load_id: &str) -> Result<(), LoadError> {
        let prefix = format!("{load_id}.");
        for dir in self.list_dirs("")? {
            if dir.starts_with("_dlt_") || dir == CONTROL {
                continue;
            }
            for (name, _) in self.list_files(&dir)? {
                if name.starts_with(&prefix) && name.contains(".parquet") {
                    self.delete(&self.key(&format!("{dir}/{name}")))?;
                }
            }
            // the local store's upload parts (`<file>#<n>`) are hidden from its listings; on S3
            // an unfinished multipart upload is no object at all (a bucket's lifecycle rule for
            // incomplete uploads removes its parts)
            if self.local() {
                let folder = std::path::PathBuf::from(format!("/{}", self.key(&dir)));
                for e in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if name.starts_with(&prefix) && name.contains(".parquet#") {
                        std::fs::remove_file(e.path())
                            .map_err(|x| write_err(format!("deleting {}", e.path().display()), x))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Carries out a load's plan; every step may already have been done.
    fn apply(&self, m: &Manifest) -> Result<(), LoadError> {
        let tables = TableCommitter {
            loc: &self.loc,
            store: &self.store,
            rt: &self.rt,
            root: &self.root,
            dataset: self.describe_dataset(),
            app_id: self.app_id(),
            version: delta::txn_version(&m.load_id),
        };
        // the first table alone, then the others four at a time: each is one Delta commit of
        // its own, whatever the order (a load killed between two is finished by the next run)
        if let Some(first) = m.delta.first() {
            tables.commit(first)?;
        }
        resttap_load::crash_point("between_tables");
        for chunk in m.delta.get(1..).unwrap_or_default().chunks(4) {
            let results: Vec<Result<(), LoadError>> = std::thread::scope(|s| {
                let handles: Vec<_> = chunk.iter().map(|step| s.spawn(|| tables.commit(step))).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(write_err("committing", "a commit thread panicked"))))
                    .collect()
            });
            results.into_iter().collect::<Result<Vec<()>, _>>()?;
        }
        for k in &m.delete {
            self.delete(&Path::from(k.as_str()))?;
        }
        resttap_load::crash_point("in_commit");
        for (rel, body) in &m.system {
            self.put(rel, body.clone())?;
        }
        // the marker first: a marker without its plan means "never committed", and the next run
        // would delete the load's files
        self.delete(&self.key(&format!("{CONTROL}/running/{}", m.load_id)))?;
        self.delete(&self.key(&format!("{CONTROL}/loads/{}.json", m.load_id)))?;
        Ok(())
    }

    fn finish_file(&mut self, table: &str) -> Result<(), LoadError> {
        if let Some(w) = self.open.remove(table) {
            let f = w
                .finish(&self.rt)
                .map_err(|e| write_err(format!("writing a file of {}/{table}", self.describe_dataset()), e))?;
            self.written.entry(table.into()).or_default().push(f);
        }
        Ok(())
    }

    fn new_file_key(&mut self, table: &str) -> Path {
        self.seq += 1;
        let load_id = self.load_id.clone().unwrap_or_default();
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        self.key(&format!("{table}/{load_id}.{:05x}{:05x}.parquet", self.seq & 0xfffff, nanos & 0xfffff))
    }

    /// Rewrites the rows of `key` that `keep` keeps into a new file of the load; `None` when it
    /// keeps none.
    fn rewrite(
        &mut self,
        table: &str,
        key: &Path,
        keep: &dyn Fn(&RecordBatch) -> Result<BooleanArray, String>,
    ) -> Result<Option<WrittenFile>, LoadError> {
        let ctx = format!("rewriting {key} for a merge");
        let local = self.local();
        let mut batches =
            files::read(&self.rt, &self.store, key, None, local).map_err(|e| write_err(&ctx, e))?.peekable();
        let schema = match batches.peek() {
            Some(Ok(b)) => b.schema(),
            Some(Err(e)) => return Err(write_err(&ctx, e)),
            None => return Ok(None),
        };
        let columns: Vec<Column> = schema
            .fields()
            .iter()
            .filter_map(|f| {
                files::dlt_type(f.data_type()).map(|d| Column {
                    name: f.name().clone(),
                    data_type: d,
                    nullable: f.is_nullable(),
                    primary_key: false,
                })
            })
            .collect();
        let path = self.new_file_key(table);
        let mut w = FileWriter::create(&self.rt, &self.store, path, &columns, local).map_err(|e| write_err(&ctx, e))?;
        for b in batches {
            let b = b.map_err(|e| write_err(&ctx, e))?;
            let mask = keep(&b).map_err(|e| write_err(&ctx, e))?;
            let kept = arrow::compute::filter_record_batch(&b, &mask).map_err(|e| write_err(&ctx, e))?;
            if kept.num_rows() > 0 {
                w.write(&kept).map_err(|e| write_err(&ctx, e))?;
            }
        }
        if w.rows() == 0 {
            w.abandon(&self.rt);
            return Ok(None);
        }
        w.finish(&self.rt).map(Some).map_err(|e| write_err(&ctx, e))
    }

    /// Rewrites the file `key` of `table` without the rows whose text column `column` is in
    /// `ids`: `None` when it has none of them (the file stays), else the new file (`None` in it
    /// when no row is left).
    fn without_rows(
        &mut self,
        table: &str,
        key: &Path,
        column: &str,
        ids: &files::IdSet,
    ) -> Result<Option<Option<WrittenFile>>, LoadError> {
        let ctx = format!("rewriting {key} for a merge");
        let mut hit = false;
        for b in
            files::read(&self.rt, &self.store, key, Some(&[column]), self.local()).map_err(|e| write_err(&ctx, e))?
        {
            let b = b.map_err(|e| write_err(&ctx, e))?;
            hit |= files::rows_not_in(&b, column, ids).is_some_and(|(any, _)| any);
        }
        if !hit {
            return Ok(None);
        }
        let keep = |b: &RecordBatch| -> Result<BooleanArray, String> {
            files::rows_not_in(b, column, ids).map(|(_, keep)| keep).ok_or_else(|| format!("no column {column}"))
        };
        self.rewrite(table, key, &keep).map(Some)
    }

    /// The root table of `table` in `schema`.
    fn root_of(schema: &Schema, table: &str) -> String {
        let mut t = table.to_string();
        while let Some(p) = schema.table(&t).and_then(|x| x.parent.clone()) {
            t = p;
        }
        t
    }

    /// The table's folder holds plain Parquet files but no Delta log / a Delta log.
    fn format_conflict(&self, table: &str, want: TableFormat, have_delta: bool) -> Result<(), LoadError> {
        if want == TableFormat::Delta && !have_delta {
            let plain = self.list_files(table)?.iter().any(|(n, _)| n.ends_with(".parquet"));
            let ours = self.load_id.as_deref().map(|l| format!("{l}.")).unwrap_or_default();
            let old = self.list_files(table)?.iter().any(|(n, _)| n.ends_with(".parquet") && !n.starts_with(&ours));
            if plain && old {
                return Err(LoadError::Write {
                    context: format!("loading {}/{table}", self.describe_dataset()),
                    message: "the table holds plain Parquet files, not a Delta table: load it with its earlier table_format, or move its files away to start it anew as Delta".into(),
                });
            }
        }
        if want == TableFormat::Native && have_delta {
            return Err(LoadError::Write {
                context: format!("loading {}/{table}", self.describe_dataset()),
                message: "the table is a Delta table: set `table_format: delta` on its resource (plain files beside a Delta log would never be read)".into(),
            });
        }
        Ok(())
    }

    /// The Delta steps and deletions of a merge of `root` (keyed by `pk`) and its nested tables.
    #[allow(clippy::too_many_arguments)]
    fn plan_merge(
        &mut self,
        plan: &LoadPlan,
        root: &str,
        pk: &[String],
        keys_unique: bool,
        upsert: bool,
        steps: &mut HashMap<String, DeltaStep>,
        delete: &mut Vec<String>,
    ) -> Result<(), LoadError> {
        let ctx = format!("merging into {}/{root}", self.describe_dataset());
        let local = self.local();
        let new_files = self.written.get(root).cloned().unwrap_or_default();
        let mut wanted: Vec<&str> = pk.iter().map(String::as_str).collect();
        wanted.push(cols::ID);
        let (_, table) = self.delta_table(root)?;
        let no_key = || write_err(&ctx, format!("the primary key {pk:?} is not in the rows"));
        // the load's keys (needed to find them in the table's files) and the rows of a load's
        // earlier duplicates (the last one wins); a new table of unique keys needs neither
        let mut keys = files::KeySet::default();
        let mut dropped_new = files::IdSet::default();
        let mut new_dup_files: Vec<usize> = Vec::new();
        if table.is_some() || !keys_unique {
            let mut last: HashMap<files::Key, (usize, usize, usize)> = HashMap::new();
            let mut read: Vec<Vec<(RecordBatch, Vec<files::Key>)>> = Vec::new();
            for (fi, f) in new_files.iter().enumerate() {
                let mut batches = Vec::new();
                for (bi, b) in files::read(&self.rt, &self.store, &f.path, Some(&wanted), local)
                    .map_err(|e| write_err(&ctx, e))?
                    .enumerate()
                {
                    let b = b.map_err(|e| write_err(&ctx, e))?;
                    let ks = files::keys(&b, pk).ok_or_else(no_key)?;
                    if !keys_unique {
                        for (ri, k) in ks.iter().enumerate() {
                            last.insert(k.clone(), (fi, bi, ri));
                        }
                    }
                    if keys_unique {
                        keys.extend(ks);
                    } else {
                        keys.extend(ks.iter().cloned());
                        batches.push((b, ks));
                    }
                }
                read.push(batches);
            }
            if !keys_unique {
                for (fi, batches) in read.iter().enumerate() {
                    let mut any = false;
                    for (bi, (b, ks)) in batches.iter().enumerate() {
                        for (ri, k) in ks.iter().enumerate() {
                            if last.get(k) != Some(&(fi, bi, ri)) {
                                dropped_new.extend(files::text_at(b, cols::ID, ri));
                                any = true;
                            }
                        }
                    }
                    if any {
                        new_dup_files.push(fi);
                    }
                }
            }
        }
        if upsert && !dropped_new.is_empty() {
            // the copies share their `_dlt_id` (the key's hash): which rows belong to the last
            // one cannot be told from the files
            return Err(LoadError::Data {
                context: ctx,
                message: "the load brought a primary key twice, which merge strategy upsert on the filesystem destination cannot resolve (the copies have the same `_dlt_id`); use strategy delete-insert for this resource, or have the API return each record once".into(),
            });
        }
        // existing files holding the load's keys: rewritten without them (a file whose key range
        // misses the load's is not read)
        let range = keys.int_range().filter(|_| pk.len() == 1);
        let mut removes = Vec::new();
        let mut adds: Vec<WrittenFile> = Vec::new();
        let mut dropped_old = files::IdSet::default();
        if let Some(t) = &table {
            for (rel, size, _, stats) in delta::files(t).map_err(|e| write_err(&ctx, e))? {
                if let (Some((lo, hi)), Some((flo, fhi))) =
                    (range, stats.as_deref().and_then(|s| files::int_range(s, &pk[0])))
                    && (fhi < lo || flo > hi)
                {
                    continue;
                }
                let key = self.key(&format!("{root}/{rel}"));
                let mut hit = false;
                for b in
                    files::read(&self.rt, &self.store, &key, Some(&wanted), local).map_err(|e| write_err(&ctx, e))?
                {
                    let b = b.map_err(|e| write_err(&ctx, e))?;
                    let ks = files::keys(&b, pk).ok_or_else(no_key)?;
                    for (ri, k) in ks.iter().enumerate() {
                        if keys.contains(k) {
                            hit = true;
                            dropped_old.extend(files::text_at(&b, cols::ID, ri));
                        }
                    }
                }
                if hit {
                    let pkc = pk.to_vec();
                    let keys_ref = &keys;
                    let keep = move |b: &RecordBatch| -> Result<BooleanArray, String> {
                        let ks = files::keys(b, &pkc).ok_or("no key")?;
                        Ok(BooleanArray::from(ks.iter().map(|k| !keys_ref.contains(k)).collect::<Vec<_>>()))
                    };
                    if let Some(f) = self.rewrite(root, &key, &keep)? {
                        adds.push(f);
                    }
                    removes.push((rel, size));
                }
            }
        }
        // the load's own earlier duplicates
        let mut final_new = Vec::new();
        for (fi, f) in new_files.iter().enumerate() {
            if new_dup_files.contains(&fi)
                && let Some(rewritten) = self.without_rows(root, &f.path, cols::ID, &dropped_new)?
            {
                final_new.extend(rewritten);
                delete.push(f.path.to_string());
            } else {
                final_new.push(f.clone());
            }
        }
        let load_rows = final_new.iter().map(|f| f.rows).sum();
        final_new.extend(adds);
        let step = steps.get_mut(root).expect("the root's step exists");
        step.load_rows = load_rows;
        step.adds = final_new.iter().map(FileRec::from).collect();
        step.removes = removes;
        step.merge = true;
        // nested tables: rows of replaced records (and of the load's dropped duplicates) go
        let nested: Vec<String> = plan
            .schema
            .tables
            .iter()
            .filter(|t| t.parent.is_some() && Self::root_of(&plan.schema, &t.name) == root)
            .map(|t| t.name.clone())
            .collect();
        for child in nested {
            let mut adds: Vec<WrittenFile> = Vec::new();
            let mut removes = Vec::new();
            if !dropped_old.is_empty()
                && let (_, Some(t)) = self.delta_table(&child)?
            {
                for (rel, size, _, _) in delta::files(&t).map_err(|e| write_err(&ctx, e))? {
                    let key = self.key(&format!("{child}/{rel}"));
                    if let Some(rewritten) = self.without_rows(&child, &key, cols::ROOT_ID, &dropped_old)? {
                        adds.extend(rewritten);
                        removes.push((rel, size));
                    }
                }
            }
            let mut kept_new = Vec::new();
            for f in self.written.get(&child).cloned().unwrap_or_default() {
                if dropped_new.is_empty() {
                    kept_new.push(f);
                    continue;
                }
                match self.without_rows(&child, &f.path, cols::ROOT_ID, &dropped_new)? {
                    Some(rewritten) => {
                        kept_new.extend(rewritten);
                        delete.push(f.path.to_string());
                    }
                    None => kept_new.push(f),
                }
            }
            let load_rows = kept_new.iter().map(|f| f.rows).sum();
            kept_new.extend(adds);
            if let Some(step) = steps.get_mut(&child) {
                step.load_rows = load_rows;
                step.adds = kept_new.iter().map(FileRec::from).collect();
                step.removes = removes;
                step.merge = true;
            }
        }
        Ok(())
    }

    /// The newest stored schema's text (`_dlt_version`).
    fn stored_schema_text(&self) -> Result<Option<String>, LoadError> {
        let mut names: Vec<String> = self.list_files(dlt::VERSION)?.into_iter().map(|(n, _)| n).collect();
        names.sort_by(|a, b| {
            let t = |n: &str| {
                system::version_file_parts(n).map(|(t, _)| system::load_order(t)).unwrap_or(f64::NEG_INFINITY)
            };
            t(a).total_cmp(&t(b))
        });
        let Some(newest) = names.last() else { return Ok(None) };
        let text = self.read_text(&format!("{}/{newest}", dlt::VERSION))?;
        Ok(system::schema_of(&text))
    }

    /// The types of the newest stored schema (`_dlt_version`): dlt's format (resttap's since it
    /// writes dlt's), or the one resttap wrote before.
    fn stored_types(&self) -> Result<Option<Schema>, LoadError> {
        Ok(self
            .stored_schema_text()?
            .and_then(|s| dlt::schema_from_stored(&s).or_else(|| serde_json::from_str::<Schema>(&s).ok())))
    }

    /// Every data table with the keys of its live files: a Delta table's files in its current
    /// version, a plain table's listed Parquet files (as [`Lake::tables`] finds them).
    fn table_files(&self) -> Result<Vec<(String, Vec<Path>)>, LoadError> {
        let mut out = Vec::new();
        let mut dirs = self.list_dirs("")?;
        dirs.sort();
        for dir in dirs {
            if dir.starts_with("_dlt_") || dir == CONTROL {
                continue;
            }
            let ctx = || format!("reading the table {}/{dir}", self.describe_dataset());
            let keys: Vec<Path> = if self.list_dirs(&dir)?.iter().any(|d| d == "_delta_log") {
                let (_, Some(t)) = self.delta_table(&dir)? else { continue };
                delta::files(&t)
                    .map_err(|e| write_err(ctx(), e))?
                    .into_iter()
                    .map(|(rel, _, _, _)| self.key(&format!("{dir}/{rel}")))
                    .collect()
            } else {
                let mut names: Vec<String> =
                    self.list_files(&dir)?.into_iter().map(|(n, _)| n).filter(|n| n.ends_with(".parquet")).collect();
                names.sort();
                names.iter().map(|n| self.key(&format!("{dir}/{n}"))).collect()
            };
            if !keys.is_empty() {
                out.push((dir, keys));
            }
        }
        Ok(out)
    }

    /// The rows of each load in the files `keys` of `table`, by `_dlt_load_id` (only that
    /// column is read).
    fn rows_per_load(&self, table: &str, keys: &[Path]) -> Result<HashMap<String, u64>, LoadError> {
        use arrow::array::{Array, AsArray};
        let ctx = format!("counting the rows of each load in {}/{table}", self.describe_dataset());
        let mut counts: HashMap<String, u64> = HashMap::new();
        for key in keys {
            for b in files::read(&self.rt, &self.store, key, Some(&[cols::LOAD_ID]), self.local())
                .map_err(|e| write_err(&ctx, e))?
            {
                let b = b.map_err(|e| write_err(&ctx, e))?;
                let Some(col) = b.column_by_name(cols::LOAD_ID) else { continue };
                // dlt's files may hold it as a large or view string, or dictionary-encoded
                let col =
                    arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8).map_err(|e| write_err(&ctx, e))?;
                let ids = col.as_string::<i32>();
                for i in 0..ids.len() {
                    if ids.is_valid(i) {
                        let id = ids.value(i);
                        match counts.get_mut(id) {
                            Some(n) => *n += 1,
                            None => {
                                counts.insert(id.to_string(), 1);
                            }
                        }
                    }
                }
            }
        }
        Ok(counts)
    }

    /// Every load of `_dlt_loads/` (dlt's jsonl files), with its rows per data table.
    fn load_infos(&self) -> Result<Vec<LoadInfo>, LoadError> {
        let mut loads = Vec::new();
        let mut names: Vec<String> =
            self.list_files(dlt::LOADS)?.into_iter().map(|(n, _)| n).filter(|n| n.ends_with(".jsonl")).collect();
        names.sort();
        for name in names {
            let rel = format!("{}/{name}", dlt::LOADS);
            let text = self.read_text(&rel)?;
            let ctx = || format!("reading {}/{rel}", self.describe_dataset());
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: serde_json::Value = serde_json::from_str(line).map_err(|e| write_err(ctx(), e))?;
                let text_of = |k: &str| v.get(k).and_then(serde_json::Value::as_str).map(String::from);
                let load_id = text_of("load_id").ok_or_else(|| write_err(ctx(), "no `load_id` field"))?;
                let inserted_at = text_of("inserted_at").unwrap_or_default();
                // dlt writes `2026-12-02T01:09:24.636759+00:00`; shown as the SQL destinations show it
                let inserted_at = resttap_schema::timestamp::parse_timestamp(&inserted_at)
                    .map_or(inserted_at, resttap_schema::timestamp::format_timestamp);
                loads.push(LoadInfo {
                    load_id,
                    schema_name: text_of("schema_name").unwrap_or_default(),
                    status: v.get("status").and_then(serde_json::Value::as_i64).unwrap_or(dlt::LOAD_STATUS_DONE),
                    inserted_at,
                    tables: Vec::new(),
                });
            }
        }
        if loads.is_empty() {
            return Ok(loads);
        }
        let index: HashMap<String, usize> = loads.iter().enumerate().map(|(i, l)| (l.load_id.clone(), i)).collect();
        for (table, keys) in self.table_files()? {
            let mut counts: Vec<(String, u64)> = self.rows_per_load(&table, &keys)?.into_iter().collect();
            counts.sort();
            for (load_id, rows) in counts {
                if let Some(&i) = index.get(&load_id) {
                    loads[i].tables.push(LoadRows { table: table.clone(), rows });
                }
            }
        }
        resttap_load::sort_loads(&mut loads);
        Ok(loads)
    }

    /// Every data table: name, columns, rows.
    fn tables(&self) -> Result<Vec<(String, Vec<Column>, u64)>, LoadError> {
        let mut out = Vec::new();
        let mut dirs = self.list_dirs("")?;
        dirs.sort();
        for dir in dirs {
            if dir.starts_with("_dlt_") || dir == CONTROL {
                continue;
            }
            let ctx = || format!("reading the table {}/{dir}", self.describe_dataset());
            if self.list_dirs(&dir)?.iter().any(|d| d == "_delta_log") {
                let (_, Some(t)) = self.delta_table(&dir)? else { continue };
                let columns = delta::columns(&t).map_err(|e| write_err(ctx(), e))?;
                let mut rows = 0;
                for (rel, _, n, _) in delta::files(&t).map_err(|e| write_err(ctx(), e))? {
                    rows += match n {
                        Some(n) => n,
                        None => files::footer(&self.rt, &self.store, &self.key(&format!("{dir}/{rel}")), self.local())
                            .map_err(|e| write_err(ctx(), e))?
                            .file_metadata()
                            .num_rows() as u64,
                    };
                }
                out.push((dir, columns, rows));
            } else {
                let mut columns: Vec<Column> = Vec::new();
                let mut rows = 0;
                let mut names: Vec<String> =
                    self.list_files(&dir)?.into_iter().map(|(n, _)| n).filter(|n| n.ends_with(".parquet")).collect();
                names.sort();
                if names.is_empty() {
                    continue;
                }
                for n in names {
                    let meta = files::footer(&self.rt, &self.store, &self.key(&format!("{dir}/{n}")), self.local())
                        .map_err(|e| write_err(ctx(), e))?;
                    rows += meta.file_metadata().num_rows() as u64;
                    let schema = parquet::arrow::parquet_to_arrow_schema(
                        meta.file_metadata().schema_descr(),
                        meta.file_metadata().key_value_metadata(),
                    )
                    .map_err(|e| write_err(ctx(), e))?;
                    for f in schema.fields() {
                        if columns.iter().all(|c| &c.name != f.name())
                            && let Some(d) = files::dlt_type(f.data_type())
                        {
                            columns.push(Column {
                                name: f.name().clone(),
                                data_type: d,
                                nullable: f.is_nullable(),
                                primary_key: false,
                            });
                        }
                    }
                }
                out.push((dir, columns, rows));
            }
        }
        Ok(out)
    }
}

impl Destination for Lake {
    fn location(&self) -> String {
        self.describe_dataset()
    }

    fn describe(&mut self) -> Result<Vec<TableInfo>, LoadError> {
        let mut out = Vec::new();
        for sys in dlt::SYSTEM_TABLES {
            let n = self.list_files(sys)?.len() as u64;
            if n > 0 {
                let columns = dlt::system_columns(sys)
                    .into_iter()
                    .filter(|c| !(sys == dlt::PIPELINE_STATE && c.name == cols::ID))
                    .map(|c| ColumnInfo {
                        name: c.name,
                        data_type: c.data_type.dlt_name().into(),
                        nullable: c.nullable,
                    })
                    .collect();
                out.push(TableInfo { name: sys.into(), rows: n, columns });
            }
        }
        for (name, columns, rows) in self.tables()? {
            let columns = columns
                .into_iter()
                .map(|c| ColumnInfo { name: c.name, data_type: c.data_type.dlt_name().into(), nullable: c.nullable })
                .collect();
            out.push(TableInfo { name, rows, columns });
        }
        Ok(out)
    }

    fn loads(&mut self) -> Result<Vec<LoadInfo>, LoadError> {
        self.load_infos()
    }

    fn existing_schema(&mut self) -> Result<Schema, LoadError> {
        let stored = self.stored_types()?;
        let listing = self
            .tables()?
            .into_iter()
            .map(|(name, mut columns, _)| {
                // files hold json as text: the stored schema knows better
                if let Some(t) = stored.as_ref().and_then(|s| s.table(&name)) {
                    for c in &mut columns {
                        if let Some(sc) = t.column(&c.name) {
                            c.data_type = sc.data_type;
                        }
                    }
                }
                (name, columns)
            })
            .collect();
        Ok(dlt::schema_from_listing(listing))
    }

    fn stored_schema(&mut self) -> Result<Option<String>, LoadError> {
        self.stored_schema_text()
    }

    fn load_state(&mut self, pipeline: &str) -> Result<Option<PipelineState>, LoadError> {
        let newest = self
            .list_files(dlt::PIPELINE_STATE)?
            .into_iter()
            .filter_map(|(n, _)| {
                system::load_id_of_state_file(&n, pipeline).map(|id| (system::load_order(id), n.clone()))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let Some((_, name)) = newest else { return Ok(None) };
        let rel = format!("{}/{name}", dlt::PIPELINE_STATE);
        let text = self.read_text(&rel)?;
        let ctx = || format!("reading the pipeline state {}/{rel}", self.describe_dataset());
        let encoded = system::state_of(&text).ok_or_else(|| write_err(ctx(), "no `state` field"))?;
        PipelineState::decode(&encoded).map(Some).map_err(|e| write_err(ctx(), e))
    }

    fn save_state(&mut self, state: &PipelineState) -> Result<(), LoadError> {
        let load_id = system::now_seconds();
        let hash = self
            .list_files(dlt::VERSION)?
            .into_iter()
            .filter_map(|(n, _)| system::version_file_parts(&n).map(|(t, h)| (system::load_order(t), h.to_string())))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, h)| h)
            .unwrap_or_default();
        let row = dlt::StateRow::new(state, &load_id);
        let (mut rel, body) = system::state_file(&row, "");
        rel = rel.replace(&format!("__{load_id}__.jsonl"), &format!("__{load_id}__{hash}.jsonl"));
        self.put(&rel, body)
    }

    fn begin(&mut self, load_id: &str) -> Result<(), LoadError> {
        self.abort();
        self.load_id = Some(load_id.to_string());
        let init = self.key("init");
        let opts = object_store::PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.rt.block_on(self.store.put_opts(&init, PutPayload::from(system::INIT), opts)) {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(write_err(format!("writing {}/init", self.describe_dataset()), e)),
        }
        self.put(&format!("{CONTROL}/running/{load_id}"), String::new())
    }

    fn stage_all(&mut self, batches: &mut dyn Iterator<Item = TableBatch>) -> Result<(), LoadError> {
        if self.load_id.is_none() {
            self.begin(&system::now_seconds())?;
        }
        for batch in batches {
            let same = self.open.get(&batch.table).is_some_and(|w| w.columns() == batch.columns.as_slice());
            if !same {
                // new columns: the next rows go to a new file with all of them
                self.finish_file(&batch.table)?;
                let key = self.new_file_key(&batch.table);
                let w = FileWriter::create(&self.rt, &self.store, key, &batch.columns, self.local()).map_err(|e| {
                    write_err(format!("writing a file of {}/{}", self.describe_dataset(), batch.table), e)
                })?;
                self.open.insert(batch.table.clone(), w);
            }
            let what = format!("writing rows of {}/{}", self.describe_dataset(), batch.table);
            let w = self.open.get_mut(&batch.table).expect("opened above");
            w.write(&batch.batch).map_err(|e| write_err(what, e))?;
            if w.rows() >= files::FILE_ROWS as u64 || batch.last {
                self.finish_file(&batch.table)?;
            }
        }
        Ok(())
    }

    fn commit(&mut self, plan: &LoadPlan) -> Result<CommitReport, LoadError> {
        let t0 = std::time::Instant::now();
        let planned = self.plan_commit(plan);
        tracing::debug!(elapsed_ms = t0.elapsed().as_secs_f64() * 1e3, "planned");
        let manifest = match planned {
            Ok(m) => m,
            Err(e) => {
                // nothing was committed: the load's files go
                self.abort();
                return Err(e);
            }
        };
        // from here on the plan references the files: a failure leaves them to the next run,
        // which finishes the load
        let mut report = CommitReport { load_id: manifest.load_id.clone(), tables: Vec::new() };
        // parents before children, as the plan lists them
        let names: Vec<String> =
            plan.schema.tables.iter().map(|t| t.name.clone()).filter(|t| self.written.contains_key(t)).collect();
        for t in names {
            let rows = match manifest.delta.iter().find(|s| s.table == t) {
                Some(step) => step.load_rows,
                None => self.written[&t].iter().map(|f| f.rows).sum(),
            };
            report.tables.push(TableReport { table: t, rows });
        }
        self.written.clear();
        self.load_id = None;
        self.apply(&manifest)?;
        Ok(report)
    }

    fn abort(&mut self) {
        for (_, w) in self.open.drain() {
            w.abandon(&self.rt);
        }
        for (_, files) in self.written.drain() {
            for f in files {
                let _ = self.rt.block_on(self.store.delete(&f.path));
            }
        }
        if let Some(id) = self.load_id.take() {
            let _ = self.rt.block_on(self.store.delete(&self.key(&format!("{CONTROL}/running/{id}"))));
        }
    }
}

/// The Delta log store of the table at `key` (`what` names it in errors), and the table when
/// it is one.
fn open_delta(
    loc: &LakeLocation,
    store: &Arc<dyn ObjectStore>,
    rt: &Handle,
    key: &Path,
    what: &str,
) -> Result<(deltalake_core::logstore::LogStoreRef, Option<deltalake_core::DeltaTable>), LoadError> {
    let ctx = || format!("opening the Delta table {what}");
    let ls = delta::log_store(loc, store, key).map_err(|e| write_err(ctx(), e))?;
    let t = delta::load(rt, &ls).map_err(|e| write_err(ctx(), e))?;
    Ok((ls, t))
}

/// What committing a table needs, shared by the threads that commit a load's tables.
struct TableCommitter<'a> {
    loc: &'a LakeLocation,
    store: &'a Arc<dyn ObjectStore>,
    rt: &'a Handle,
    root: &'a Path,
    dataset: String,
    app_id: String,
    version: i64,
}

impl TableCommitter<'_> {
    /// Commits `step` to its Delta table, unless the table holds the load already.
    fn commit(&self, step: &DeltaStep) -> Result<(), LoadError> {
        let t0 = std::time::Instant::now();
        let ctx = || format!("committing to the Delta table {}/{}", self.dataset, step.table);
        let table_key = self.root.clone().join(step.table.as_str());
        let (ls, table) =
            open_delta(self.loc, self.store, self.rt, &table_key, &format!("{}/{}", self.dataset, step.table))?;
        if let Some(t) = &table
            && delta::holds(self.rt, &ls, t, &self.app_id, self.version).map_err(|e| write_err(ctx(), e))?
        {
            return Ok(());
        }
        let adds: Vec<WrittenFile> = step.adds.iter().map(WrittenFile::from).collect();
        delta::commit(
            self.rt,
            &ls,
            table.as_ref(),
            delta::TableCommit {
                columns: &step.columns,
                adds: &adds,
                table_key: &table_key,
                removes: step.removes.clone(),
                mode: if step.overwrite { SaveMode::Overwrite } else { SaveMode::Append },
                merge: step.merge,
                app_id: &self.app_id,
                version: self.version,
            },
        )
        .map_err(|e| write_err(ctx(), e))?;
        tracing::debug!(table = %step.table, elapsed_ms = t0.elapsed().as_secs_f64() * 1e3, "committed");
        Ok(())
    }
}

impl Lake {
    /// Closes the load's files and writes its plan ([`Manifest`]); nothing is committed yet.
    fn plan_commit(&mut self, plan: &LoadPlan) -> Result<Manifest, LoadError> {
        let tables: Vec<String> = self.open.keys().cloned().collect();
        for t in tables {
            self.finish_file(&t)?;
        }
        let load_id = plan.load_id.clone();
        let mut steps: HashMap<String, DeltaStep> = HashMap::new();
        let mut delete: Vec<String> = Vec::new();
        let mut order: Vec<String> = Vec::new();
        for t in &plan.schema.tables {
            let root = Self::root_of(&plan.schema, &t.name);
            let Some(res) = plan.resources.iter().find(|r| r.root_table == root) else { continue };
            let have_delta = self.list_dirs(&t.name)?.iter().any(|d| d == "_delta_log");
            self.format_conflict(&t.name, res.table_format, have_delta)?;
            let new_files = self.written.get(&t.name).cloned().unwrap_or_default();
            match res.table_format {
                TableFormat::Delta => {
                    let replace = res.write_disposition == WriteDisposition::Replace;
                    let mut removes = Vec::new();
                    if replace
                        && have_delta
                        && let (_, Some(dt)) = self.delta_table(&t.name)?
                    {
                        removes = delta::files(&dt)
                            .map_err(|e| write_err(format!("replacing {}/{}", self.describe_dataset(), t.name), e))?
                            .into_iter()
                            .map(|(p, s, _, _)| (p, s))
                            .collect();
                    }
                    if new_files.is_empty() && removes.is_empty() && have_delta {
                        continue;
                    }
                    order.push(t.name.clone());
                    steps.insert(
                        t.name.clone(),
                        DeltaStep {
                            table: t.name.clone(),
                            columns: t.columns.clone(),
                            adds: new_files.iter().map(FileRec::from).collect(),
                            removes,
                            overwrite: replace,
                            merge: false,
                            load_rows: new_files.iter().map(|f| f.rows).sum(),
                        },
                    );
                }
                TableFormat::Native => {
                    if res.write_disposition == WriteDisposition::Replace {
                        let ours = format!("{load_id}.");
                        for (n, _) in self.list_files(&t.name)? {
                            if n.ends_with(".parquet") && !n.starts_with(&ours) {
                                delete.push(self.key(&format!("{}/{n}", t.name)).to_string());
                            }
                        }
                    }
                    // a merge here appends (the pipeline loads such resources as `append`,
                    // as dlt does): nothing more to do
                }
            }
        }
        for res in &plan.resources {
            if res.table_format == TableFormat::Delta
                && res.write_disposition == WriteDisposition::Merge
                && !res.primary_key.is_empty()
                && steps.contains_key(&res.root_table)
            {
                self.plan_merge(
                    plan,
                    &res.root_table.clone(),
                    &res.primary_key,
                    res.keys_unique,
                    res.merge.strategy == resttap_schema::merge::MergeStrategy::Upsert,
                    &mut steps,
                    &mut delete,
                )?;
            }
        }
        // system files: _dlt_version when the schema is new, the state, _dlt_loads last
        let rows = SystemRows::for_plan(plan);
        let mut system_files = Vec::new();
        let versions = self.list_files(dlt::VERSION)?;
        let hex = system::hex_of(&rows.version.version_hash);
        if !versions.iter().any(|(n, _)| system::version_file_parts(n).is_some_and(|(_, h)| h == hex)) {
            let same_schema =
                versions.iter().filter(|(n, _)| n.starts_with(&format!("{}__", plan.schema_name))).count();
            system_files.push(system::version_file(&rows.version, same_schema as i64 + 1));
        }
        if let Some(state) = &rows.state {
            system_files.push(system::state_file(state, &rows.version.version_hash));
        }
        system_files.push(system::load_file(&rows.load));
        let manifest = Manifest {
            load_id: load_id.clone(),
            delta: order.iter().filter_map(|t| steps.remove(t)).collect(),
            delete,
            system: system_files,
        };
        let body = serde_json::to_string(&manifest).map_err(|e| write_err("writing the load's plan", e))?;
        self.put(&format!("{CONTROL}/loads/{load_id}.json"), body)?;
        resttap_load::crash_point("before_delta_commits");
        Ok(manifest)
    }
}
