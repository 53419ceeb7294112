//! The DuckDB destination.
//!
//! The dataset is a DuckDB schema (`<pipeline>_dataset` by default) in one database file. A load
//! is one transaction: rows are inserted from Arrow batches straight into the dataset's tables
//! (created or widened as batches bring tables and columns), where no other connection sees
//! them until the commit; the commit then applies the write disposition with set-based SQL
//! over the load's rows, which carry its `_dlt_load_id` (`append`: nothing more; `replace`:
//! older rows and their nested rows go; `merge`: delete-insert by primary key, keeping the last
//! duplicate of a load and replacing nested rows of replaced parents), records the load in
//! `_dlt_loads`, and commits. Rows are written once, compressed as DuckDB writes any table,
//! and a failed run leaves nothing behind. DuckDB holds a file lock, so a second process cannot
//! open the same file while a run is going on.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use duckdb::Connection;
use resttap_load::dlt::{self, SystemRows};
pub use resttap_load::{ColumnInfo, TableInfo};
use resttap_load::{
    CommitReport, Destination, LoadError, LoadInfo, LoadPlan, LoadRows, PipelineState, ResourceLoad, TableReport,
};
use resttap_normalize::TableBatch;
use resttap_schema::{Column, DataType, Precision, Schema, Table, WriteDisposition, cols};

mod floor;
mod scan;

pub use floor::{InsertFloor, insert_floor};

/// DuckDB's memory limit for a load: rows beyond it spill to `<file>.tmp`.
pub const MEMORY_LIMIT: &str = "32MB";

/// DuckDB's memory limit, in MB, for a commit that deletes older rows of existing tables
/// (`merge`, `replace`), at least. What the deletes need grows with the tables they delete from
/// (measured, the seed's tables after a first load of N records): under the load's 32 MB a
/// merge of everything failed at N=300,000 ("could not allocate block"); at N=1,000,000 a merge
/// of everything passed with 128 MB, but an incremental merge of the fifth of the records that
/// changed failed with 128 MB ("failed to pin block": its deletes are scattered over every row
/// group) and passed with 256 MB; at N=6,000,000 a merge of everything failed with 256 MB and
/// passed with 1 GB. Most of the limit fills as a cache of what the deletes read, so it shows in
/// RSS: a merge run at N=1,000,000 peaked at 317 MB. The limit is set at the commit's first
/// heavy statement only: a merge that replaces every older record deletes by row-id range under
/// the load's limit and never raises it (resttap_load's merge plan, `delete_older`).
pub const COMMIT_MEMORY_MIN_MB: u64 = 256;

/// Bytes of DuckDB memory a deleting commit gets per row the tables it deletes from held when
/// the load began (see [`commit_memory_mb`]): at N=6,000,000 they held 30 million rows, and 48
/// bytes each gives 1.4 GB (1 GB passed, 256 MB failed); at N=1,000,000, 5 million rows, the
/// 256 MB minimum (which passed both merges there).
pub const COMMIT_MEMORY_PER_ROW: u64 = 48;

/// DuckDB's memory limit in MB for a commit that deletes from tables that held `rows` rows when
/// the load began: [`COMMIT_MEMORY_MIN_MB`] or [`COMMIT_MEMORY_PER_ROW`] bytes per row,
/// whichever is larger, but never more than `available_mb`, DuckDB's own default limit (80% of
/// the memory of the machine, or of the cgroup it runs in): a limit above what the machine has
/// gets the process killed by the kernel, where DuckDB at its limit spills to disk or fails
/// with an error that says what to do.
pub fn commit_memory_mb(rows: u64, available_mb: Option<u64>) -> u64 {
    let wanted = COMMIT_MEMORY_MIN_MB.max((rows * COMMIT_MEMORY_PER_ROW).div_ceil(1 << 20));
    available_mb.map_or(wanted, |cap| wanted.min(cap))
}

/// A size as DuckDB prints one (`18.8 GiB`, `908.8 MiB`, `100 bytes`), in MB (MiB).
fn parse_duckdb_size_mb(text: &str) -> Option<u64> {
    let (number, unit) = text.trim().split_once(' ')?;
    let number: f64 = number.parse().ok()?;
    let shift = match unit {
        "byte" | "bytes" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        "PiB" => 50,
        _ => return None,
    };
    (number.is_finite() && number >= 0.0).then(|| (number * (1u64 << shift) as f64 / (1u64 << 20) as f64) as u64)
}

/// Rows per DuckDB row group. DuckDB compresses and writes a table's row group when it is full,
/// on the loader thread while extraction goes on; with DuckDB's default (122,880) a table of
/// fewer rows is held uncompressed in memory until the commit, which then compresses everything
/// on one core. Measured at N=100,000 (240k records): wall 2.0 -> 1.8 s, peak RSS 225 -> 140 MB.
/// 8,192 rather than 16,384 (interleaved runs): N=100,000 1.28 -> 1.19 s, CPU -7%; N=1,000,000
/// 11.3 -> 10.5 s; the file 5% larger (smaller groups compress a little worse), peak RSS at
/// N=1,000,000 135 -> 146 MB (more row groups' metadata).
pub const ROW_GROUP_SIZE: u32 = 8_192;

/// Complete row groups a table buffers before DuckDB compresses and writes them
/// (`write_buffer_row_group_count`, DuckDB's default 5): one, so that each row group is written
/// as soon as it is full, on the loader thread while extraction goes on, instead of up to five
/// at a time, the last of them at the commit on one core with the other idle (and spilled to
/// `<file>.tmp` meanwhile under [`MEMORY_LIMIT`]). Measured at N=100,000 (interleaved, 12 runs
/// each): the commit 100-107 -> 42-53 ms, wall 1.02 -> 0.99 s, CPU 1.58 -> 1.53 s, peak RSS
/// 90 -> 87 MB, the file 25.2 -> 24.9 MB; N=1,000,000: peak RSS 114 -> 110 MB, time unchanged.
/// With it, larger row groups were still slower: 16,384 rows 0.96 s, 32,768 1.09 s (8,192: 0.92).
pub const WRITE_BUFFER_ROW_GROUPS: u32 = 1;

/// Rows of a table held before they are inserted into it (one `INSERT ... SELECT` from the
/// [`scan`] table function, which hands DuckDB the Arrow batches' strings without copying them).
/// Each insert is a statement DuckDB parses and plans, so they go in a few thousand rows at a
/// time; what waits is memory outside DuckDB's limit, for every table at once. Measured at
/// N=100,000 (interleaved, 8 runs each): 2,048 rows 1.52 s, 4,096 1.43 s, 8,192 1.41 s but
/// +5 MB peak RSS. (Through duckdb-rs's appender, which this replaced, 4,096 too: 16,384 rows
/// held ~35 MB in its buffers, 4,096 ~9 MB.) A resource's last rows of a table
/// ([`TableBatch::last`](resttap_normalize::TableBatch)) go in when they arrive: in the seed the
/// four small resources end at ~20% of the run, and their rows no longer wait for the load's
/// serial tail (loader's tail after the last batch 66-72 -> 0 ms; peak RSS -3 MB).
pub const FLUSH_ROWS: usize = 4096;

/// Identifiers and literals as both SQL destinations write them.
pub use resttap_load::sql::{ident, literal};

/// dlt's wei precision on DuckDB (its widest decimal).
const WEI: (u16, u16) = (38, 0);

/// The DuckDB type of a dlt type (as dlt's DuckDB destination maps it).
pub fn sql_type(t: DataType) -> String {
    match t {
        DataType::Text => "VARCHAR".into(),
        DataType::Bigint => "BIGINT".into(),
        DataType::Double => "DOUBLE".into(),
        DataType::Bool => "BOOLEAN".into(),
        DataType::Timestamp => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Json => "JSON".into(),
        DataType::Date => "DATE".into(),
        DataType::Decimal(p) => {
            let (precision, scale) = p.or(Precision::DEFAULT);
            format!("DECIMAL({precision},{scale})")
        }
        DataType::Wei => format!("DECIMAL({},{})", WEI.0, WEI.1),
        DataType::Binary => "BLOB".into(),
        DataType::Time => "TIME".into(),
    }
}

/// The dlt type of a DuckDB column type, as dlt reads it back: a decimal of dlt's default
/// precision is a plain `decimal`, one of its wei precision `wei`.
fn from_sql_type(t: &str) -> Option<DataType> {
    Some(match t {
        "VARCHAR" => DataType::Text,
        "BIGINT" => DataType::Bigint,
        "DOUBLE" => DataType::Double,
        "BOOLEAN" => DataType::Bool,
        "TIMESTAMP WITH TIME ZONE" => DataType::Timestamp,
        "JSON" => DataType::Json,
        "DATE" => DataType::Date,
        "BLOB" => DataType::Binary,
        "TIME" => DataType::Time,
        _ => resttap_load::sql::decimal_type(t.strip_prefix("DECIMAL")?, WEI)?,
    })
}

/// An error opening `location`: `Locked` when another process holds DuckDB's file lock.
fn open_error(location: &str) -> impl Fn(duckdb::Error) -> LoadError + '_ {
    move |e| {
        let message = e.to_string();
        if message.contains("lock") {
            LoadError::Locked { location: location.to_string(), message }
        } else {
            LoadError::Open { location: location.to_string(), message }
        }
    }
}

fn werr(context: impl Into<String>) -> impl FnOnce(duckdb::Error) -> LoadError {
    let context = context.into();
    move |e| LoadError::Write { context, message: e.to_string() }
}

/// A dataset in a DuckDB file.
pub struct DuckDb {
    conn: Connection,
    path: PathBuf,
    dataset: String,
    /// The tables this load has written to (inside its transaction), with their columns' names.
    written: BTreeMap<String, Vec<String>>,
    /// Rows this load appended, per table.
    appended: HashMap<String, u64>,
    /// The dataset's tables when the load began, with their columns' names.
    existing_at_begin: HashMap<String, Vec<String>>,
    /// The dataset's tables' rows when the load began (DuckDB's estimate).
    rows_at_begin: HashMap<String, u64>,
    /// The highest row id of each table that held rows when this load first wrote to it: the
    /// load's rows are above it ([`Sides`]).
    watermarks: HashMap<String, i64>,
    /// DuckDB's memory limit for a commit that deletes, as DuckDB takes it (`1GB`), when the
    /// user set one; else [`commit_memory_mb`] decides.
    commit_memory: Option<String>,
    /// The limit in force in the running commit, for its out-of-memory error.
    commit_limit: RefCell<Option<String>>,
    /// The limit a deleting commit gets at its first heavy statement
    /// ([`resttap_load::merge::Sql::before_heavy`]); until then it counts and deletes whole
    /// sides under the load's limit.
    pending_limit: RefCell<Option<String>>,
    /// Whether the load transaction is open.
    in_txn: bool,
}

impl std::fmt::Debug for DuckDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuckDb").field("path", &self.path).field("dataset", &self.dataset).finish_non_exhaustive()
    }
}

impl DuckDb {
    fn with_connection(conn: Connection, path: &Path, dataset: &str) -> Self {
        DuckDb {
            conn,
            path: path.to_path_buf(),
            dataset: dataset.to_string(),
            written: BTreeMap::new(),
            appended: HashMap::new(),
            existing_at_begin: HashMap::new(),
            rows_at_begin: HashMap::new(),
            watermarks: HashMap::new(),
            commit_memory: None,
            commit_limit: RefCell::new(None),
            pending_limit: RefCell::new(None),
            in_txn: false,
        }
    }

    /// Opens (or creates) the database file at `path` for dataset `dataset`.
    pub fn open(path: &Path, dataset: &str) -> Result<Self, LoadError> {
        let location = path.display().to_string();
        // the file is attached (not opened as the main database) because only ATTACH takes a
        // row group size; `USE` makes it the default catalog, so names resolve as before
        let conn = Connection::open_in_memory().map_err(open_error(&location))?;
        let (file, temp) = (literal(&location), literal(&format!("{location}.tmp")));
        // one core is left to extraction and normalization, which run while DuckDB writes;
        // on 2 cores DuckDB's second worker only spun on its scheduler's lock (~5% of CPU)
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1));
        conn.execute_batch(&format!(
            "SET memory_limit = '{MEMORY_LIMIT}'; SET threads = {threads}; SET temp_directory = {temp}; \
             SET write_buffer_row_group_count = {WRITE_BUFFER_ROW_GROUPS}; ATTACH {file} AS resttap_db (ROW_GROUP_SIZE {ROW_GROUP_SIZE}); USE resttap_db"
        ))
        .map_err(open_error(&location))?;
        conn.register_table_function::<scan::BatchScan>(scan::FUNCTION).map_err(open_error(&location))?;
        Ok(Self::with_connection(conn, path, dataset))
    }

    /// Sets DuckDB's memory limit for commits that delete older rows (`merge`, `replace`), as
    /// DuckDB writes sizes (`512MB`, `2GB`); `None` sizes it from the rows the tables held when
    /// the load began ([`commit_memory_mb`]).
    pub fn set_commit_memory(&mut self, limit: Option<String>) {
        self.commit_memory = limit;
    }

    /// Opens an existing file read-only (for `resttap schema`); fails if it does not exist.
    pub fn open_read_only(path: &Path, dataset: &str) -> Result<Self, LoadError> {
        let location = path.display().to_string();
        if !path.exists() {
            return Err(LoadError::Open { location, message: "no such file; run `resttap run` first".into() });
        }
        let config =
            duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).map_err(open_error(&location))?;
        let conn = Connection::open_with_flags(path, config).map_err(open_error(&location))?;
        Ok(Self::with_connection(conn, path, dataset))
    }

    /// The connection, for tests and `resttap schema`.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn q(&self, table: &str) -> String {
        qualified(&self.dataset, table)
    }

    /// Every table of the dataset with its columns (as DuckDB has them) and row count.
    pub fn describe(&self) -> Result<Vec<TableInfo>, LoadError> {
        let mut tables = self.columns()?;
        for t in &mut tables {
            t.rows = self
                .conn
                .query_row(&format!("SELECT count(*) FROM {}", self.q(&t.name)), [], |r| r.get::<_, i64>(0))
                .map_err(werr(format!("counting rows of {}", t.name)))? as u64;
        }
        Ok(tables)
    }

    /// Every load of `_dlt_loads`, newest first, with its rows per data table (a `GROUP BY
    /// _dlt_load_id` of each table that has the column); empty without `_dlt_loads`.
    pub fn loads(&self) -> Result<Vec<LoadInfo>, LoadError> {
        let ctx = "reading _dlt_loads";
        if !self.system_table_exists(dlt::LOADS, ctx)? {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT load_id, coalesce(schema_name, ''), status, epoch_us(inserted_at) FROM {} \
             ORDER BY inserted_at DESC, load_id DESC",
            self.q(dlt::LOADS)
        );
        let mut stmt = self.conn.prepare(&sql).map_err(werr(ctx))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
            })
            .map_err(werr(ctx))?;
        let mut loads = Vec::new();
        for row in rows {
            let (load_id, schema_name, status, micros) = row.map_err(werr(ctx))?;
            let inserted_at = resttap_schema::timestamp::format_timestamp(micros);
            loads.push(LoadInfo { load_id, schema_name, status, inserted_at, tables: Vec::new() });
        }
        let listing = "listing the tables with _dlt_load_id";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = ? AND column_name = ? \
                 ORDER BY table_name",
            )
            .map_err(werr(listing))?;
        let tables: Vec<String> = stmt
            .query_map([self.dataset.as_str(), cols::LOAD_ID], |r| r.get::<_, String>(0))
            .map_err(werr(listing))?
            .collect::<Result<_, _>>()
            .map_err(werr(listing))?;
        let index: HashMap<String, usize> = loads.iter().enumerate().map(|(i, l)| (l.load_id.clone(), i)).collect();
        for table in tables.iter().filter(|t| !dlt::SYSTEM_TABLES.contains(&t.as_str())) {
            let ctx = format!("counting the rows of each load in {}.{table}", self.dataset);
            let sql = format!(
                "SELECT {id}, count(*) FROM {q} WHERE {id} IS NOT NULL GROUP BY {id}",
                id = ident(cols::LOAD_ID),
                q = self.q(table)
            );
            let mut stmt = self.conn.prepare(&sql).map_err(werr(&ctx))?;
            let counts =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(werr(&ctx))?;
            for c in counts {
                let (load_id, n) = c.map_err(werr(&ctx))?;
                if let Some(&i) = index.get(&load_id) {
                    loads[i].tables.push(LoadRows { table: table.clone(), rows: n.max(0) as u64 });
                }
            }
        }
        resttap_load::sort_loads(&mut loads);
        Ok(loads)
    }

    /// Whether the dataset's schema exists in the file. Asked once by each step of a start that
    /// lists tables or columns (reading the schema, the state, `begin`): DuckDB's table and
    /// column listings (`information_schema`, `duckdb_tables()`) first build the system
    /// catalog's default views, ~20 ms at every start, where listing schemas costs ~1 ms. A
    /// dataset that does not exist yet has nothing to list.
    fn dataset_exists(&self) -> Result<bool, LoadError> {
        let ctx = "looking for the dataset";
        let sql = "SELECT count(*) FROM duckdb_schemas() WHERE database_name = current_database() AND schema_name = ?";
        let n: i64 = self.conn.query_row(sql, [&self.dataset], |r| r.get(0)).map_err(werr(ctx))?;
        Ok(n > 0)
    }

    /// Whether the dataset has system table `name` (`ctx`: what for, in the error).
    fn system_table_exists(&self, name: &str, ctx: &str) -> Result<bool, LoadError> {
        if !self.dataset_exists()? {
            return Ok(false);
        }
        let sql = format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = {} AND table_name = {}",
            literal(&self.dataset),
            literal(name)
        );
        Ok(self.count(&sql, ctx)? > 0)
    }

    /// Every table of the dataset with its columns, without counting rows (which, inside the
    /// load transaction, means scanning what it wrote).
    fn columns(&self) -> Result<Vec<TableInfo>, LoadError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT table_name, column_name, data_type, is_nullable = 'YES' FROM information_schema.columns \
                 WHERE table_schema = ? ORDER BY table_name, ordinal_position",
            )
            .map_err(werr("reading the dataset's columns"))?;
        let rows = stmt
            .query_map([&self.dataset], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, bool>(3)?))
            })
            .map_err(werr("reading the dataset's columns"))?;
        let mut tables: Vec<TableInfo> = Vec::new();
        for row in rows {
            let (t, c, ty, nullable) = row.map_err(werr("reading the dataset's columns"))?;
            if tables.last().is_none_or(|last| last.name != t) {
                tables.push(TableInfo { name: t.clone(), rows: 0, columns: Vec::new() });
            }
            tables.last_mut().expect("pushed").columns.push(ColumnInfo { name: c, data_type: ty, nullable });
        }
        Ok(tables)
    }

    /// The estimated rows of every table of the dataset (from DuckDB's catalog: no scan).
    fn table_rows(&self) -> Result<HashMap<String, u64>, LoadError> {
        let ctx = "reading the dataset's table sizes";
        let mut stmt = self
            .conn
            .prepare("SELECT table_name, estimated_size FROM duckdb_tables() WHERE schema_name = ?")
            .map_err(werr(ctx))?;
        let rows = stmt
            .query_map([&self.dataset], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)))
            .map_err(werr(ctx))?;
        rows.map(|r| r.map_err(werr(ctx))).collect()
    }

    /// Runs one statement of a commit; logs what it did and how long it took (debug level).
    fn timed(&self, sql: &str, ctx: &str) -> Result<usize, LoadError> {
        let t = std::time::Instant::now();
        let n = self.conn.execute(sql, []).map_err(werr(ctx))?;
        tracing::debug!(rows = n, elapsed_ms = t.elapsed().as_millis() as u64, "{ctx}");
        Ok(n)
    }

    /// DuckDB's default memory limit in MB (80% of the machine's or cgroup's memory, as DuckDB
    /// computes it), read by resetting the connection's: the caller sets the one it wants next.
    fn default_memory_mb(&self) -> Result<Option<u64>, LoadError> {
        let ctx = "reading DuckDB's default memory limit";
        self.conn.execute_batch("RESET memory_limit").map_err(werr(ctx))?;
        let text: String =
            self.conn.query_row("SELECT current_setting('memory_limit')", [], |r| r.get(0)).map_err(werr(ctx))?;
        Ok(parse_duckdb_size_mb(&text))
    }

    fn set_memory_limit(&self, limit: &str) -> Result<(), LoadError> {
        self.conn.execute_batch(&format!("SET memory_limit = {}", literal(limit))).map_err(|e| LoadError::Write {
            context: format!("setting DuckDB's memory limit for the commit to {limit:?}"),
            message: e.to_string(),
        })
    }

    fn count(&self, sql: &str, ctx: &str) -> Result<u64, LoadError> {
        self.conn.query_row(sql, [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(werr(ctx))
    }

    /// Applies one resource's write disposition to the rows this load wrote; returns the rows
    /// it added per table. The load's root rows are those with its `_dlt_load_id`.
    fn apply(&self, res: &ResourceLoad, plan: &LoadPlan) -> Result<Vec<TableReport>, LoadError> {
        let root = res.root_table.as_str();
        let tables: Vec<&Table> = resource_tables(&plan.schema, root).collect();
        let existed = |t: &str| self.existing_at_begin.contains_key(t);
        let wrote = |t: &str| self.written.contains_key(t);
        let ctx = |what: &str| format!("{what} for resource {} (table {}.{root})", res.resource, self.dataset);
        let load_id = ident(cols::LOAD_ID);
        let this_load = literal(&plan.load_id);
        let (id, parent_id) = (ident(cols::ID), ident(cols::PARENT_ID));
        let r = self.q(root);
        if res.write_disposition == WriteDisposition::Replace && existed(root) {
            // every older root row goes; then, level by level, the nested rows left without a parent
            resttap_load::merge::Sql::before_heavy(self)?;
            self.timed(
                &format!("DELETE FROM {r} WHERE {load_id} IS DISTINCT FROM {this_load}"),
                &ctx("replacing rows"),
            )?;
            for t in tables.iter().skip(1).filter(|t| existed(&t.name)) {
                let Some(parent) = t.parent.as_deref() else { continue };
                let sql = format!(
                    "DELETE FROM {c} WHERE NOT EXISTS (SELECT 1 FROM {p} p WHERE p.{id} = {c}.{parent_id})",
                    c = self.q(&t.name),
                    p = self.q(parent)
                );
                self.timed(&sql, &ctx(&format!("replacing rows of {}", t.name)))?;
            }
        }
        let dropped = if res.write_disposition == WriteDisposition::Merge && wrote(root) {
            let steps = resttap_load::merge::plan(res, plan, &tables, &Sides { db: self });
            resttap_load::merge::execute(&steps, self)?
        } else {
            HashMap::new()
        };
        Ok(tables
            .iter()
            .filter(|t| wrote(&t.name))
            .map(|t| {
                let appended = self.appended.get(&t.name).copied().unwrap_or(0);
                TableReport {
                    table: t.name.clone(),
                    rows: appended.saturating_sub(dropped.get(&t.name).copied().unwrap_or(0)),
                }
            })
            .collect())
    }

    fn commit_inner(&mut self, plan: &LoadPlan) -> Result<CommitReport, LoadError> {
        // the tables that existed of the resources whose write disposition deletes
        let deleting: Vec<&str> = plan
            .resources
            .iter()
            .filter(|r| matches!(r.write_disposition, WriteDisposition::Replace | WriteDisposition::Merge))
            .filter(|r| self.existing_at_begin.contains_key(&r.root_table))
            .flat_map(|r| resource_tables(&plan.schema, &r.root_table).map(|t| t.name.as_str()))
            .filter(|t| self.existing_at_begin.contains_key(*t))
            .collect();
        if !deleting.is_empty() {
            let rows = deleting.iter().map(|t| self.rows_at_begin.get(*t).copied().unwrap_or(0)).sum();
            // reading DuckDB's default resets the connection's limit: the commit puts the
            // load's back whatever happens next
            *self.commit_limit.borrow_mut() = Some(MEMORY_LIMIT.to_string());
            let limit = match &self.commit_memory {
                Some(limit) => limit.clone(),
                None => format!("{}MB", commit_memory_mb(rows, self.default_memory_mb()?)),
            };
            // set once, so that a limit DuckDB cannot read stops the commit before it deletes
            self.set_memory_limit(&limit)?;
            self.set_memory_limit(MEMORY_LIMIT)?;
            *self.pending_limit.borrow_mut() = Some(limit);
        }
        for t in &plan.schema.tables {
            // the tables this load wrote were created and widened as it wrote them; an existing
            // table it did not write to still gets the columns its schema has (hinted ones); a
            // table no row was ever written to (all values null so far) is not created
            if let Some(known) = self.existing_at_begin.get(&t.name).filter(|_| !self.written.contains_key(&t.name)) {
                let ctx = format!("evolving table {}.{}", self.dataset, t.name);
                create_or_widen(&self.conn, &self.q(&t.name), Some(known.clone()), &t.columns, &ctx)?;
            }
        }
        let mut tables = Vec::new();
        for res in &plan.resources {
            let t = std::time::Instant::now();
            tables.extend(self.apply(res, plan)?);
            tracing::debug!(resource = %res.resource, elapsed_ms = t.elapsed().as_millis() as u64, "applied");
        }
        // for the crash-safety tests only: die with the transaction half done
        resttap_load::crash_point("in_commit");
        let rows = SystemRows::for_plan(plan);
        self.create_system_table(dlt::LOADS)?;
        let l = &rows.load;
        self.conn
            .execute(
                &format!("INSERT INTO {} VALUES (?, ?, ?, now(), ?)", self.q(dlt::LOADS)),
                duckdb::params![l.load_id, l.schema_name, l.status, l.schema_version_hash],
            )
            .map_err(werr("recording the load in _dlt_loads"))?;
        self.create_system_table(dlt::VERSION)?;
        let v = &rows.version;
        let known = self.count(
            &format!("SELECT count(*) FROM {} WHERE version_hash = {}", self.q(dlt::VERSION), literal(&v.version_hash)),
            "reading _dlt_version",
        )?;
        if known == 0 {
            let next = self.count(
                &format!("SELECT coalesce(max(version), 0) + 1 FROM {}", self.q(dlt::VERSION)),
                "reading _dlt_version",
            )?;
            self.conn
                .execute(
                    &format!("INSERT INTO {} VALUES (?, ?, now(), ?, ?, ?)", self.q(dlt::VERSION)),
                    duckdb::params![next as i64, v.engine_version, v.schema_name, v.version_hash, v.schema],
                )
                .map_err(werr("recording the schema in _dlt_version"))?;
        }
        if let Some(state) = &rows.state {
            self.write_state(state)?;
        }
        Ok(CommitReport { load_id: plan.load_id.clone(), tables })
    }

    /// Creates a system table ([`dlt::system_columns`]) when the dataset lacks it.
    fn create_system_table(&self, name: &str) -> Result<(), LoadError> {
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {}; {}",
            ident(&self.dataset),
            create_table_sql(&self.q(name), &dlt::system_columns(name))
        );
        self.conn.execute_batch(&sql).map_err(werr(format!("creating {name}")))
    }

    /// Appends a state row (dlt keeps every version; the highest is current).
    fn write_state(&self, row: &dlt::StateRow) -> Result<(), LoadError> {
        self.create_system_table(dlt::PIPELINE_STATE)?;
        self.conn
            .execute(
                &format!("INSERT INTO {} VALUES (?, ?, ?, ?, now(), ?, ?, ?)", self.q(dlt::PIPELINE_STATE)),
                duckdb::params![
                    row.version,
                    row.engine_version,
                    row.pipeline_name,
                    row.state,
                    row.version_hash,
                    row.load_id,
                    row.id
                ],
            )
            .map_err(werr("writing the pipeline state"))?;
        Ok(())
    }
}

/// The two sides of a DuckDB load: the load's rows are in the dataset's tables with it, inside
/// the load's transaction; rows a table held when the load began have row ids up to its
/// watermark, the load's rows above it (DuckDB numbers a transaction's new rows from 2^55, and
/// an `UPDATE` keeps a row's id).
struct Sides<'a> {
    db: &'a DuckDb,
}

impl resttap_load::merge::Rows for Sides<'_> {
    fn older(&self, table: &str) -> Option<String> {
        let q = self.db.q(table);
        self.db.existing_at_begin.contains_key(table).then(|| match self.db.watermarks.get(table) {
            Some(w) => format!("(SELECT * FROM {q} WHERE rowid <= {w})"),
            None => q,
        })
    }

    fn loaded(&self, table: &str) -> Option<String> {
        let q = self.db.q(table);
        let pos = resttap_load::merge::POSITION;
        self.db.written.contains_key(table).then(|| match self.db.watermarks.get(table) {
            Some(w) => format!("(SELECT *, rowid AS {pos} FROM {q} WHERE rowid > {w})"),
            None => format!("(SELECT *, rowid AS {pos} FROM {q})"),
        })
    }

    fn target(&self, table: &str, side: resttap_load::merge::Side) -> Option<resttap_load::merge::Target> {
        use resttap_load::merge::{Side, Target};
        let (existed, wrote) = (self.db.existing_at_begin.contains_key(table), self.db.written.contains_key(table));
        let w = self.db.watermarks.get(table);
        match side {
            Side::Old if existed => {
                Some(Target { table: self.db.q(table), filter: w.map(|w| format!("d.rowid <= {w}")) })
            }
            Side::New if wrote => Some(Target { table: self.db.q(table), filter: w.map(|w| format!("d.rowid > {w}")) }),
            _ => None,
        }
    }

    fn position(&self) -> &'static str {
        "rowid"
    }
}

impl resttap_load::merge::Sql for DuckDb {
    fn run(&self, sql: &str, context: &str) -> Result<u64, LoadError> {
        self.timed(sql, context).map(|n| n as u64)
    }

    fn count(&self, sql: &str, context: &str) -> Result<u64, LoadError> {
        DuckDb::count(self, sql, context)
    }

    fn sample(&self, sql: &str, context: &str) -> Result<Option<String>, LoadError> {
        use duckdb::OptionalExt;
        self.conn.query_row(sql, [], |r| r.get::<_, String>(0)).optional().map_err(werr(context))
    }

    fn before_heavy(&self) -> Result<(), LoadError> {
        let Some(limit) = self.pending_limit.borrow_mut().take() else { return Ok(()) };
        self.set_memory_limit(&limit)?;
        tracing::debug!(limit = %limit, "raised DuckDB's memory limit for the commit's deletes");
        *self.commit_limit.borrow_mut() = Some(limit);
        Ok(())
    }
}

/// `CREATE TABLE` for a dataset table.
fn create_table_sql(qualified: &str, columns: &[Column]) -> String {
    let defs: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}{}", ident(&c.name), sql_type(c.data_type), if c.nullable { "" } else { " NOT NULL" }))
        .collect();
    format!("CREATE TABLE IF NOT EXISTS {qualified} ({})", defs.join(", "))
}

/// For a table this load writes to: creates it with `columns` when it has none yet (`known`
/// is `None`), else adds the columns of `columns` it lacks (nullable: the rows it has get
/// NULL). Returns the names of its columns afterwards.
fn create_or_widen(
    conn: &Connection,
    qualified: &str,
    known: Option<Vec<String>>,
    columns: &[Column],
    ctx: &str,
) -> Result<Vec<String>, LoadError> {
    let Some(mut known) = known else {
        conn.execute_batch(&create_table_sql(qualified, columns)).map_err(werr(ctx))?;
        return Ok(columns.iter().map(|c| c.name.clone()).collect());
    };
    for c in columns {
        if !known.contains(&c.name) {
            let sql = format!("ALTER TABLE {qualified} ADD COLUMN {} {}", ident(&c.name), sql_type(c.data_type));
            conn.execute_batch(&sql).map_err(werr(ctx))?;
            known.push(c.name.clone());
        }
    }
    Ok(known)
}

/// A resource's tables in `schema`: its root table, then its nested tables, parents before
/// children.
fn resource_tables<'a>(schema: &'a Schema, root: &'a str) -> impl Iterator<Item = &'a Table> + 'a {
    schema.table(root).into_iter().chain(schema.descendants(root))
}

/// `"dataset"."table"`.
fn qualified(dataset: &str, table: &str) -> String {
    format!("{}.{}", ident(dataset), ident(table))
}

/// One table's batches not yet inserted, and the columns they have.
struct Pending {
    columns: Arc<[Column]>,
    batches: Vec<arrow::array::RecordBatch>,
    /// `INSERT INTO "dataset"."table" ("a", ...) SELECT * FROM`, built once.
    insert: String,
    ctx: String,
}

impl Pending {
    fn new(qualified_table: &str, columns: &[Column], ctx: String) -> Self {
        let list = columns.iter().map(|c| ident(&c.name)).collect::<Vec<_>>().join(", ");
        Pending {
            columns: columns.into(),
            batches: Vec::new(),
            insert: format!("INSERT INTO {qualified_table} ({list}) SELECT * FROM"),
            ctx,
        }
    }

    fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// Inserts the batches into the table (one `INSERT` through [`scan::FUNCTION`]).
    fn flush(&mut self, conn: &Connection) -> Result<(), LoadError> {
        if self.batches.is_empty() {
            return Ok(());
        }
        let staged = scan::Staged { columns: Arc::clone(&self.columns), batches: std::mem::take(&mut self.batches) };
        let ticket = staged.register();
        let sql = format!("{} {}({})", self.insert, scan::FUNCTION, ticket.id());
        conn.execute_batch(&sql).map_err(werr(&self.ctx))
    }
}

impl Destination for DuckDb {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn describe(&mut self) -> Result<Vec<TableInfo>, LoadError> {
        DuckDb::describe(self)
    }

    fn loads(&mut self) -> Result<Vec<LoadInfo>, LoadError> {
        DuckDb::loads(self)
    }

    fn existing_schema(&mut self) -> Result<Schema, LoadError> {
        if !self.dataset_exists()? {
            return Ok(Schema::default());
        }
        let listing = self
            .columns()?
            .into_iter()
            .map(|info| {
                let columns = info
                    .columns
                    .into_iter()
                    .filter_map(|c| match from_sql_type(&c.data_type) {
                        Some(data_type) => Some(Column { name: c.name, data_type, nullable: c.nullable, primary_key: false }),
                        None => {
                            tracing::warn!(table = %info.name, column = %c.name, sql_type = %c.data_type, "column type not produced by resttap; new values go to variant columns");
                            None
                        }
                    })
                    .collect();
                (info.name, columns)
            })
            .collect();
        Ok(dlt::schema_from_listing(listing))
    }

    fn stored_schema(&mut self) -> Result<Option<String>, LoadError> {
        if !self.system_table_exists(dlt::VERSION, "reading _dlt_version")? {
            return Ok(None);
        }
        let sql =
            format!("SELECT schema FROM {} ORDER BY inserted_at DESC, version DESC LIMIT 1", self.q(dlt::VERSION));
        match self.conn.query_row(&sql, [], |r| r.get::<_, String>(0)) {
            Ok(s) => Ok(Some(s)),
            Err(duckdb::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(werr("reading _dlt_version")(e)),
        }
    }

    fn load_state(&mut self, pipeline: &str) -> Result<Option<PipelineState>, LoadError> {
        if !self.system_table_exists(dlt::PIPELINE_STATE, "reading the pipeline state")? {
            return Ok(None);
        }
        let row: Option<String> = match self.conn.query_row(
            &format!(
                "SELECT state FROM {} WHERE pipeline_name = ? ORDER BY version DESC, created_at DESC LIMIT 1",
                self.q(dlt::PIPELINE_STATE)
            ),
            [pipeline],
            |r| r.get(0),
        ) {
            Ok(s) => Some(s),
            Err(duckdb::Error::QueryReturnedNoRows) => None,
            Err(e) => return Err(werr("reading the pipeline state")(e)),
        };
        row.map(|s| {
            PipelineState::decode(&s)
                .map_err(|e| LoadError::Write { context: "reading the pipeline state".into(), message: e.to_string() })
        })
        .transpose()
    }

    fn save_state(&mut self, state: &PipelineState) -> Result<(), LoadError> {
        self.conn.execute_batch("BEGIN TRANSACTION").map_err(werr("starting a transaction"))?;
        let load_id = format!(
            "{}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64()
        );
        match self.write_state(&dlt::StateRow::new(state, &load_id)) {
            Ok(()) => self.conn.execute_batch("COMMIT").map_err(werr("committing the state")),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn begin(&mut self, _load_id: &str) -> Result<(), LoadError> {
        self.abort();
        // asked before the schema is created: a new dataset has no tables to list
        if self.dataset_exists()? {
            self.existing_at_begin = self
                .columns()?
                .into_iter()
                .map(|t| (t.name, t.columns.into_iter().map(|c| c.name).collect()))
                .collect();
            self.rows_at_begin = self.table_rows()?;
        } else {
            self.existing_at_begin.clear();
            self.rows_at_begin.clear();
        }
        self.conn
            .execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {};", ident(&self.dataset)))
            .map_err(werr("preparing the load"))?;
        // everything from here to the commit is one transaction: rows are written in place and
        // appear, with everything else, at COMMIT or never
        self.conn.execute_batch("BEGIN TRANSACTION").map_err(werr("starting the load transaction"))?;
        self.in_txn = true;
        Ok(())
    }

    /// Each table's batches are inserted [`FLUSH_ROWS`] rows at a time (and before a batch
    /// with new columns, which are added to the table first), into the dataset's table itself:
    /// inside the load transaction, so nothing shows before the commit.
    fn stage_all(&mut self, batches: &mut dyn Iterator<Item = TableBatch>) -> Result<(), LoadError> {
        let Self { conn, dataset, written, appended, existing_at_begin, watermarks, .. } = self;
        let conn: &Connection = conn;
        let mut pending: HashMap<String, Pending> = HashMap::new();
        for batch in batches {
            let same = pending
                .get(&batch.table)
                .is_some_and(|p| p.columns.iter().map(|c| &c.name).eq(batch.columns.iter().map(|c| &c.name)));
            if !same {
                // the columns changed: what is pending goes in before the table grows
                if let Some(mut p) = pending.remove(&batch.table) {
                    p.flush(conn)?;
                }
                let table = &batch.table;
                let ctx = format!("writing rows of table {dataset}.{table}");
                let first_write = !written.contains_key(table);
                let known = written.remove(table).or_else(|| existing_at_begin.get(table).cloned());
                let q = qualified(dataset, table);
                if first_write && existing_at_begin.contains_key(table) {
                    let w: Option<i64> = conn
                        .query_row(&format!("SELECT max(rowid) FROM {q}"), [], |r| r.get(0))
                        .map_err(werr(format!("reading the last row id of {dataset}.{table}")))?;
                    watermarks.insert(table.clone(), w.unwrap_or(-1));
                }
                written.insert(table.clone(), create_or_widen(conn, &q, known, &batch.columns, &ctx)?);
                pending.insert(table.clone(), Pending::new(&q, &batch.columns, ctx));
            }
            let p = pending.get_mut(&batch.table).expect("inserted above");
            *appended.entry(batch.table).or_default() += batch.batch.num_rows() as u64;
            p.batches.push(batch.batch);
            // a resource's last rows of a table go in now, not in the load's serial tail
            if p.rows() >= FLUSH_ROWS || batch.last {
                p.flush(conn)?;
            }
        }
        for p in pending.values_mut() {
            p.flush(conn)?;
        }
        Ok(())
    }

    fn commit(&mut self, plan: &LoadPlan) -> Result<CommitReport, LoadError> {
        if !self.in_txn {
            self.conn.execute_batch("BEGIN TRANSACTION").map_err(werr("starting the load transaction"))?;
            self.in_txn = true;
        }
        let result = self.commit_inner(plan);
        let limit = self.commit_limit.take();
        self.pending_limit.take();
        let result = match result {
            Ok(report) => {
                let t = std::time::Instant::now();
                self.conn.execute_batch("COMMIT").map_err(werr("committing the load"))?;
                tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, "COMMIT");
                self.in_txn = false;
                self.written.clear();
                self.appended.clear();
                self.watermarks.clear();
                Ok(report)
            }
            Err(e) => {
                self.abort();
                Err(match (e, &limit) {
                    (LoadError::Write { context, message }, Some(limit)) if message.contains("Out of Memory") => {
                        // DuckDB's advice (SET memory_limit) is not the user's to follow
                        let message = message.lines().next().unwrap_or_default().to_string();
                        LoadError::OutOfMemory {
                            context,
                            limit: limit.clone(),
                            message,
                            advice: "set RESTTAP_DUCKDB_COMMIT_MEMORY to more (for example 2GB) and run again".into(),
                        }
                    }
                    (e, _) => e,
                })
            }
        };
        if limit.is_some() {
            // back to the load's limit for whatever this connection does next (outside the
            // transaction, which DuckDB refuses statements in once one failed)
            let _ = self.conn.execute_batch(&format!("SET memory_limit = '{MEMORY_LIMIT}'"));
        }
        result
    }

    fn abort(&mut self) {
        if self.in_txn {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.in_txn = false;
        }
        self.written.clear();
        self.appended.clear();
        self.watermarks.clear();
    }
}

#[cfg(test)]
mod tests;
