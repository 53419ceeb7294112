//! Delta Lake tables through delta-rs (`deltalake-core`, without DataFusion): the log store,
//! snapshots, and one commit per table per load carrying the files resttap wrote, the files a
//! replace or merge removed, a new schema when columns were added, and an application
//! transaction (`txn`) naming the load, so that a load committed again after a crash is
//! recognised and not written twice.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake_core::DeltaTable;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{
    Action, Add, DataType as DeltaType, MetadataExt, Remove, StructField, StructType, Transaction,
};
use deltalake_core::logstore::{LogStoreRef, StorageConfig, default_logstore};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use object_store::ObjectStore;
use object_store::path::Path;
use resttap_schema::{Column, DataType};
use tokio::runtime::Handle;

use crate::files::WrittenFile;
use crate::location::LakeLocation;

/// The log store of the table at `key`.
pub fn log_store(loc: &LakeLocation, store: &Arc<dyn ObjectStore>, key: &Path) -> Result<LogStoreRef, String> {
    let url = loc.url_of(key)?;
    let prefixed: Arc<dyn ObjectStore> = Arc::new(object_store::prefix::PrefixStore::new(store.clone(), key.clone()));
    Ok(default_logstore(prefixed, store.clone(), &url, &StorageConfig::default()))
}

/// The table at `key`, or `None` when there is no Delta table there.
pub fn load(rt: &Handle, ls: &LogStoreRef) -> Result<Option<DeltaTable>, String> {
    let mut t = DeltaTable::new(ls.clone());
    match rt.block_on(t.load()) {
        Ok(()) => Ok(Some(t)),
        Err(deltalake_core::DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn delta_type(t: DataType) -> DeltaType {
    match t {
        DataType::Text | DataType::Json => DeltaType::STRING,
        DataType::Bigint => DeltaType::LONG,
        DataType::Double => DeltaType::DOUBLE,
        DataType::Bool => DeltaType::BOOLEAN,
        DataType::Timestamp => DeltaType::TIMESTAMP,
        DataType::Date => DeltaType::DATE,
        // refused before the load (the lake does not write them yet); as text if one gets here
        DataType::Decimal(_) | DataType::Wei | DataType::Time => DeltaType::STRING,
        DataType::Binary => DeltaType::BINARY,
    }
}

/// The dlt type of a Delta column (`None`: a type resttap does not write).
pub fn dlt_type(t: &DeltaType) -> Option<DataType> {
    Some(match t {
        t if *t == DeltaType::STRING => DataType::Text,
        t if *t == DeltaType::LONG || *t == DeltaType::INTEGER || *t == DeltaType::SHORT || *t == DeltaType::BYTE => {
            DataType::Bigint
        }
        t if *t == DeltaType::DOUBLE || *t == DeltaType::FLOAT => DataType::Double,
        t if *t == DeltaType::BOOLEAN => DataType::Bool,
        t if *t == DeltaType::TIMESTAMP || *t == DeltaType::TIMESTAMP_NTZ => DataType::Timestamp,
        t if *t == DeltaType::DATE => DataType::Date,
        _ => return None,
    })
}

/// The columns of a Delta table, as resttap types them.
pub fn columns(t: &DeltaTable) -> Result<Vec<Column>, String> {
    let schema = t.snapshot().map_err(|e| e.to_string())?.schema();
    Ok(schema
        .fields()
        .filter_map(|f| {
            dlt_type(f.data_type()).map(|d| Column {
                name: f.name().clone(),
                data_type: d,
                nullable: f.is_nullable(),
                primary_key: false,
            })
        })
        .collect())
}

/// A live file of a table: its path relative to the table, size, row count when its
/// statistics say, and the statistics.
pub type LiveFile = (String, i64, Option<u64>, Option<String>);

/// The table's live files.
pub fn files(t: &DeltaTable) -> Result<Vec<LiveFile>, String> {
    let snap = t.snapshot().map_err(|e| e.to_string())?;
    Ok(snap
        .log_data()
        .iter()
        .map(|f| {
            let stats = f.stats();
            let rows = stats
                .as_deref()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                .and_then(|v| v.get("numRecords").and_then(|n| n.as_u64()));
            (f.path().to_string(), f.size(), rows, stats)
        })
        .collect())
}

/// What one load does to one Delta table.
pub struct TableCommit<'a> {
    /// All the table's columns after the load (the plan's), in order.
    pub columns: &'a [Column],
    /// Files written, keys relative to the store; `table_key` is their table's.
    pub adds: &'a [WrittenFile],
    pub table_key: &'a Path,
    /// Files of the table (paths relative to it) no longer part of it, with their sizes.
    pub removes: Vec<(String, i64)>,
    /// `Overwrite` for a replace, `Append` otherwise (a merge is an append that removes).
    pub mode: SaveMode,
    pub merge: bool,
    /// The application transaction: the dataset's app id and the load's number.
    pub app_id: &'a str,
    pub version: i64,
}

/// The load's number for Delta's `txn`: its id (seconds) in microseconds, rising from load to load.
pub fn txn_version(load_id: &str) -> i64 {
    let (s, frac) = load_id.split_once('.').unwrap_or((load_id, "0"));
    let us: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
    s.parse::<i64>().unwrap_or(0) * 1_000_000 + us.parse::<i64>().unwrap_or(0)
}

/// Whether `table` already holds the load numbered `version` of `app_id` (committed before a
/// crash).
pub fn holds(rt: &Handle, ls: &LogStoreRef, table: &DeltaTable, app_id: &str, version: i64) -> Result<bool, String> {
    let snap = table.snapshot().map_err(|e| e.to_string())?;
    let v = rt.block_on(snap.transaction_version(ls.as_ref(), app_id)).map_err(|e| e.to_string())?;
    Ok(v.is_some_and(|v| v >= version))
}

/// Commits `c` to the table (creating it when `table` is `None`). One Delta commit.
pub fn commit(rt: &Handle, ls: &LogStoreRef, table: Option<&DeltaTable>, c: TableCommit<'_>) -> Result<u64, String> {
    let now = chrono::Utc::now().timestamp_millis();
    let prefix = format!("{}/", c.table_key);
    let mut actions: Vec<Action> = Vec::new();
    for f in c.adds {
        let rel =
            f.path.as_ref().strip_prefix(&prefix).ok_or_else(|| format!("{} is not in {}", f.path, c.table_key))?;
        actions.push(Action::Add(Add {
            path: rel.to_string(),
            partition_values: HashMap::new(),
            size: f.size as i64,
            modification_time: now,
            data_change: true,
            stats: Some(f.stats.clone()),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
            clustering_provider: None,
        }));
    }
    for (path, size) in &c.removes {
        actions.push(Action::Remove(Remove {
            path: path.clone(),
            data_change: true,
            deletion_timestamp: Some(now),
            extended_file_metadata: Some(true),
            partition_values: Some(HashMap::new()),
            size: Some(*size),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
        }));
    }
    let fields: Vec<StructField> =
        c.columns.iter().map(|col| StructField::new(&col.name, delta_type(col.data_type), col.nullable)).collect();
    let props = CommitProperties::default().with_application_transaction(Transaction::new(c.app_id, c.version));
    let Some(table) = table else {
        let t = rt
            .block_on(
                CreateBuilder::new()
                    .with_log_store(ls.clone())
                    .with_columns(fields)
                    .with_actions(actions)
                    .with_save_mode(SaveMode::ErrorIfExists)
                    .with_commit_properties(props)
                    .into_future(),
            )
            .map_err(|e| e.to_string())?;
        return Ok(t.version().unwrap_or(0));
    };
    let snap = table.snapshot().map_err(|e| e.to_string())?;
    // columns the load added: a new schema, the others as they are
    let have: Vec<String> = snap.schema().fields().map(|f| f.name().clone()).collect();
    let added: Vec<StructField> = fields
        .into_iter()
        .filter(|f| !have.contains(f.name()))
        .map(|f| StructField::new(f.name(), f.data_type().clone(), true))
        .collect();
    if !added.is_empty() {
        let mut all: Vec<StructField> = snap.schema().fields().cloned().collect();
        all.extend(added);
        let schema = StructType::try_new(all).map_err(|e| e.to_string())?;
        let metadata = snap.metadata().clone().with_schema(&schema).map_err(|e| e.to_string())?;
        actions.insert(0, Action::Metadata(metadata));
    }
    let operation = if c.merge {
        DeltaOperation::Merge {
            predicate: None,
            merge_predicate: None,
            matched_predicates: vec![],
            not_matched_predicates: vec![],
            not_matched_by_source_predicates: vec![],
        }
    } else {
        DeltaOperation::Write { mode: c.mode, partition_by: None, predicate: None }
    };
    let done = rt
        .block_on(
            CommitBuilder::from(props).with_actions(actions).build(Some(snap), ls.clone(), operation).into_future(),
        )
        .map_err(|e| e.to_string())?;
    Ok(done.version())
}

#[cfg(test)]
mod tests {
    #[test]
    fn load_numbers_rise_with_load_ids() {
        assert_eq!(super::txn_version("1796173764.2799957"), 1_796_173_764_279_995);
        assert_eq!(super::txn_version("1796173814.01711"), 1_796_173_814_017_110);
        assert!(super::txn_version("1796173814.01711") > super::txn_version("1796173764.2799957"));
    }
}
