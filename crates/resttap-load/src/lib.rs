//! Destinations: where normalized rows go, and the contract every destination keeps.
//!
//! # The contract
//!
//! A load has two phases, driven by the pipeline in this order: [`Destination::begin`], then
//! [`Destination::stage_all`] (the whole stream of batches), then [`Destination::commit`] or,
//! on any failure, [`Destination::abort`].
//!
//! - **Nothing is visible before the commit.** What `stage_all` writes is kept where the
//!   dataset's readers cannot see it (DuckDB: the dataset's tables inside a transaction not yet
//!   committed; PostgreSQL: the same, or staging tables created inside it).
//! - **The commit is one transaction**: table creation and evolution, `append`, `replace` or
//!   `merge` per resource, the `_dlt_loads` and `_dlt_version` rows, and the pipeline state
//!   ([`dlt`]) become visible together, or — when it returns an error — not at all.
//! - **A failure leaves the dataset exactly as the last successful commit left it**: an `Err`
//!   from `begin`, `stage_all` or `commit`, a process killed at any moment, a connection lost.
//!   What a failed load staged is discarded by `abort`, by the next `begin`, or by the
//!   destination itself when the process dies (an open transaction is rolled back).
//! - `abort` never fails and may be called more than once; after it the destination can
//!   `begin` again.
//! - **One run per dataset**: a destination refuses (`LoadError::Locked`) a load while another
//!   process loads the same dataset.
//! - Every method blocks the calling thread; call them off the async runtime's worker threads
//!   (`tokio::task::spawn_blocking`).
//!
//! dlt's protocol — the system tables and their rows, schema hashes, staging names, nested
//! tables' parents — is in [`dlt`], shared by every destination, so that each destination holds
//! only what is specific to it. [`contract`] (feature `contract`) holds the scenarios every
//! destination's tests run against a real instance, and the command line's `tests/contract.rs`
//! runs the same end-to-end assertions against each destination through the binary.

pub mod dlt;
pub mod merge;
pub mod sql;

#[cfg(feature = "contract")]
pub mod contract;

/// The environment variable that names a crash point ([`crash_point`]).
pub const CRASH_AT: &str = "RESTTAP_CRASH_AT";

/// Ends the process on the spot when `RESTTAP_CRASH_AT` names this point: only the crash-safety
/// tests set it. `abort` runs no destructor and flushes nothing, like a power cut. Points:
/// `after_first_page`, `before_commit` (the pipeline), `mid_copy` (PostgreSQL, after a table's
/// first `COPY`), `in_commit` (a destination, its commit's statements done but not `COMMIT`).
pub fn crash_point(name: &str) {
    if std::env::var(CRASH_AT).is_ok_and(|v| v == name) {
        std::process::abort();
    }
}

/// CPU time of the calling thread so far (`None` where /proc/thread-self is missing): for the
/// benchmark floors' own timings (`resttap insert-floor`, `resttap parquet-floor`).
pub fn thread_cpu() -> Option<std::time::Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(std::time::Duration::from_nanos(text.split_whitespace().next()?.parse().ok()?))
}

use resttap_normalize::TableBatch;
use resttap_schema::merge::MergeSpec;
use resttap_schema::{Schema, TableFormat, WriteDisposition};
pub use resttap_state::PipelineState;

/// What one resource contributes to a load.
#[derive(Debug, Clone)]
pub struct ResourceLoad {
    /// The resource name, for messages.
    pub resource: String,
    /// Its root table.
    pub root_table: String,
    pub write_disposition: WriteDisposition,
    /// Normalized primary key columns (empty: `merge` behaves as `append`).
    pub primary_key: Vec<String>,
    /// The resource brought no primary key twice in this load, as its normalizer saw them (one
    /// integer key column, rising: [`resttap_normalize::Normalizer::keys_rising`]); `false` when
    /// unknown, and the destination looks for duplicates itself.
    pub keys_unique: bool,
    /// `table_format` (a lake's Delta tables); the others ignore it.
    pub table_format: TableFormat,
    /// The merge strategy and its hints (for `merge`).
    pub merge: MergeSpec,
    /// The schema contract the load was made under (written to the stored schema, where dlt
    /// reads it when it attaches).
    pub contract: resttap_schema::contract::SchemaContract,
}

/// Everything [`Destination::commit`] needs.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// dlt's load id: the start time as Unix seconds with a fraction.
    pub load_id: String,
    /// `schema_name` in `_dlt_loads` (`rest_api`, as dlt's REST API source).
    pub schema_name: String,
    /// Every table the load may write, with all their columns (destination columns included),
    /// parents before children.
    pub schema: Schema,
    pub resources: Vec<ResourceLoad>,
    /// The pipeline state after this load, written in the same transaction when it changed.
    pub state: Option<PipelineState>,
    /// The resources whose state this load decides (those it ran); a destination where other
    /// runs of the pipeline may commit meanwhile keeps the others' as it has them
    /// ([`dlt::merge_state`]).
    pub state_resources: Vec<String>,
}

/// Rows committed to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: String,
    /// Rows inserted by this load.
    pub rows: u64,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitReport {
    pub load_id: String,
    pub tables: Vec<TableReport>,
}

/// Why a destination failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Another process holds the destination (for example another run of the same pipeline).
    #[error(
        "the destination {location} is in use by another process: {message}. Wait for the other run to finish; resttap does not write to a dataset two runs share"
    )]
    Locked { location: String, message: String },
    /// The destination cannot be opened.
    #[error("cannot open the destination {location}: {message}")]
    Open { location: String, message: String },
    /// A statement or write failed.
    #[error("{context}: {message}")]
    Write { context: String, message: String },
    /// The load's data cannot be applied as configured (nothing was committed).
    #[error("{context}: {message}")]
    Data { context: String, message: String },
    /// The commit needed more memory than the destination was given; `advice` says how to
    /// give it more.
    #[error("{context}: {message}. The commit ran under a memory limit of {limit}: {advice}")]
    OutOfMemory { context: String, limit: String, message: String, advice: String },
}

/// A column as the destination has it, for `resttap schema`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ColumnInfo {
    pub name: String,
    /// The destination's type name, e.g. `TIMESTAMP WITH TIME ZONE`.
    pub data_type: String,
    pub nullable: bool,
}

/// A table as the destination has it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableInfo {
    pub name: String,
    pub rows: u64,
    pub columns: Vec<ColumnInfo>,
}

/// A load the dataset records (dlt's `_dlt_loads`), for `resttap loads` and `resttap info`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoadInfo {
    pub load_id: String,
    /// `_dlt_loads.schema_name` (`rest_api`; empty when the row has none).
    pub schema_name: String,
    /// `_dlt_loads.status`: [`dlt::LOAD_STATUS_DONE`] (0) for a completed load.
    pub status: i64,
    /// When the load was recorded (`_dlt_loads.inserted_at`), RFC 3339 in UTC.
    pub inserted_at: String,
    /// The rows of each data table whose `_dlt_load_id` is this load's, by table name (tables
    /// without any left out). These are the rows of the load **still in the table**: a later
    /// `merge` or `replace` may have removed some of what the load inserted. Only tables with a
    /// `_dlt_load_id` column count: root tables; nested tables (`<table>__<field>`) have none,
    /// as in dlt, and are not listed.
    pub tables: Vec<LoadRows>,
}

/// Rows of one load in one table ([`LoadInfo::tables`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoadRows {
    pub table: String,
    pub rows: u64,
}

/// Orders loads newest first — by `inserted_at` (RFC 3339 in UTC, as [`LoadInfo`] has it), then
/// by load id as a number — and each load's tables by name.
pub fn sort_loads(loads: &mut [LoadInfo]) {
    let id = |l: &LoadInfo| l.load_id.parse::<f64>().unwrap_or(f64::NEG_INFINITY);
    let at = |l: &LoadInfo| resttap_schema::timestamp::parse_timestamp(&l.inserted_at).unwrap_or(i64::MIN);
    loads.sort_by(|a, b| at(b).cmp(&at(a)).then(id(b).total_cmp(&id(a))));
    for l in loads {
        l.tables.sort_by(|a, b| a.table.cmp(&b.table));
    }
}

/// A place a dataset lives. Implementations: DuckDB (`resttap-duckdb`), PostgreSQL
/// (`resttap-postgres`). See the crate's documentation for the contract.
pub trait Destination: Send {
    /// Where the dataset lives, for messages (never with a password).
    fn location(&self) -> String;

    /// Every table of the dataset (system tables included) with its columns, as the
    /// destination types them, and its row count; empty when the dataset does not exist.
    fn describe(&mut self) -> Result<Vec<TableInfo>, LoadError>;

    /// Every load the dataset records in `_dlt_loads`, newest first, tables by name ([`sort_loads`]),
    /// each with its rows per data table (counted by `_dlt_load_id`, root tables only: the rows
    /// of the load still there, see [`LoadInfo::tables`]); empty when the dataset has no loads or does not exist.
    /// Reads only.
    fn loads(&mut self) -> Result<Vec<LoadInfo>, LoadError>;

    /// The tables and columns the dataset already has (dlt's `_dlt_*` tables left out), so
    /// that the normalizer keeps column types and sends changed types to variant columns.
    fn existing_schema(&mut self) -> Result<Schema, LoadError>;

    /// The newest schema the dataset records in `_dlt_version` (dlt's stored-schema JSON,
    /// written by dlt or by resttap), `None` before the first load. What it says that the
    /// tables cannot (a table's `schema_contract`) outlives the configuration that said it.
    fn stored_schema(&mut self) -> Result<Option<String>, LoadError>;

    /// The pipeline's state as the last successful load left it (`None` before the first).
    fn load_state(&mut self, pipeline: &str) -> Result<Option<PipelineState>, LoadError>;

    /// Writes a new version of the pipeline's state on its own (for `resttap state --reset`).
    fn save_state(&mut self, state: &PipelineState) -> Result<(), LoadError>;

    /// Starts a load: clears anything a failed run left staged.
    fn begin(&mut self, load_id: &str) -> Result<(), LoadError>;

    /// Stages every batch `batches` yields, until it ends (the loader's whole loop, so that a
    /// destination can keep a writer per table open across batches). Nothing is visible in the
    /// dataset yet.
    fn stage_all(&mut self, batches: &mut dyn Iterator<Item = TableBatch>) -> Result<(), LoadError>;

    /// Stages one batch of rows.
    fn stage(&mut self, batch: &TableBatch) -> Result<(), LoadError> {
        self.stage_all(&mut std::iter::once(batch.clone()))
    }

    /// Applies everything staged, atomically.
    fn commit(&mut self, plan: &LoadPlan) -> Result<CommitReport, LoadError>;

    /// Discards what was staged; the dataset stays as the last commit left it.
    fn abort(&mut self);
}
