//! Destinations: where normalized rows go, and the contract every destination keeps.
//!
//! A load has two phases. While resources are extracted, [`Destination::stage`] receives
//! batches of rows and puts them somewhere the dataset's readers cannot see (DuckDB: the
//! dataset's own tables, inside a transaction not yet committed). When every resource has been
//! extracted without error, [`Destination::commit`] applies the whole load to the dataset in
//! **one transaction**: table creation and evolution, `append`, `replace` or `merge` per
//! resource, and the `_dlt_loads` record. A run that fails before or
//! during commit leaves the dataset exactly as the last successful run left it; what it staged
//! is discarded by [`Destination::abort`] or by the next [`Destination::begin`].

use resttap_normalize::TableBatch;
use resttap_schema::{Schema, WriteDisposition};
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
    /// The commit needed more memory than the destination was given.
    #[error(
        "{context}: {message}. The commit ran under a memory limit of {limit}: set RESTTAP_DUCKDB_COMMIT_MEMORY to more (for example 2GB) and run again"
    )]
    OutOfMemory { context: String, limit: String, message: String },
}

/// A place a dataset lives. Implementations: DuckDB (`resttap-duckdb`).
pub trait Destination: Send {
    /// The tables and columns the dataset already has (dlt's `_dlt_*` tables left out), so
    /// that the normalizer keeps column types and sends changed types to variant columns.
    fn existing_schema(&mut self) -> Result<Schema, LoadError>;

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
