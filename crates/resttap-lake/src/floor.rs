//! The benchmark's Parquet floor (`resttap parquet-floor`): the rows of a lake dataset's tables,
//! read into memory first (not timed), written again by the parquet crate alone, one local file
//! per table, with the settings resttap's files have (SNAPPY, dictionaries, statistics, the same
//! row groups). The least any loader spends writing these rows as Parquet.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use object_store::ObjectStore;
use parquet::arrow::ArrowWriter;

use resttap_load::thread_cpu;

use crate::files;

/// What the floor wrote, and the time of the writing alone.
pub struct ParquetFloor {
    pub tables: usize,
    pub rows: u64,
    pub wall: Duration,
    /// CPU time of the writing thread (`None` where /proc/thread-self is missing).
    pub cpu: Option<Duration>,
}

/// Reads every data table of the dataset folder `from` (Delta tables: their live files; plain
/// tables: every file), then times writing each into `to/<table>.parquet`. Call it from a
/// blocking thread of a Tokio runtime.
pub fn parquet_floor(from: &Path, to: &Path) -> Result<ParquetFloor, String> {
    let rt = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
    let mut tables: Vec<(String, Vec<RecordBatch>)> = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?.flatten().collect();
    dirs.sort_by_key(|e| e.file_name());
    for e in dirs {
        let name = e.file_name().to_string_lossy().to_string();
        if !e.path().is_dir() || name.starts_with("_dlt_") || name == crate::CONTROL {
            continue;
        }
        let live: Vec<String> = if e.path().join("_delta_log").exists() {
            let loc = crate::LakeLocation::Local(e.path());
            let key = object_store::path::Path::from(e.path().to_string_lossy().trim_start_matches('/'));
            let ls = crate::delta::log_store(&loc, &store, &key)?;
            let t = crate::delta::load(&rt, &ls)?.ok_or_else(|| format!("{name}: not a Delta table"))?;
            crate::delta::files(&t)?.into_iter().map(|f| format!("{}/{}", e.path().display(), f.0)).collect()
        } else {
            std::fs::read_dir(e.path())
                .map_err(|x| x.to_string())?
                .flatten()
                .map(|f| f.path().display().to_string())
                .filter(|p| p.ends_with(".parquet"))
                .collect()
        };
        let mut batches = Vec::new();
        for p in live {
            let key = object_store::path::Path::from(p.trim_start_matches('/'));
            for b in files::read(&rt, &store, &key, None, true)? {
                batches.push(b?);
            }
        }
        if !batches.is_empty() {
            tables.push((name, batches));
        }
    }
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let (t0, c0) = (Instant::now(), thread_cpu());
    let mut rows = 0;
    for (name, batches) in &tables {
        let f = std::fs::File::create(to.join(format!("{name}.parquet"))).map_err(|e| e.to_string())?;
        let mut w =
            ArrowWriter::try_new(f, batches[0].schema(), Some(files::properties())).map_err(|e| e.to_string())?;
        for b in batches {
            // files of one table may differ in columns: the floor writes the first's
            if b.schema() == batches[0].schema() {
                w.write(b).map_err(|e| e.to_string())?;
                rows += b.num_rows() as u64;
            }
        }
        w.close().map_err(|e| e.to_string())?;
    }
    let wall = t0.elapsed();
    let cpu = c0.zip(thread_cpu()).map(|(a, b)| b.saturating_sub(a));
    Ok(ParquetFloor { tables: tables.len(), rows, wall, cpu })
}
