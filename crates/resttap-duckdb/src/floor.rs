//! The benchmark's insert floor: what DuckDB itself spends writing a loaded dataset's rows.
//!
//! The tables of a file resttap (or anything) loaded are copied into memory first (not timed),
//! then written into a new file as `CREATE TABLE ... AS SELECT` from those copies, every table
//! in one transaction, with the settings resttap loads with (one thread, the same row groups and
//! write buffer) but no memory limit to spill under. No loader that stores these rows in DuckDB
//! can spend less on DuckDB's side: no parsing, no normalizing, no statement per batch, only
//! DuckDB's insert path (appending, compressing, writing the row groups) and its commit.

use std::path::Path;
use std::time::{Duration, Instant};

use resttap_load::{LoadError, thread_cpu};

use crate::{DuckDb, ident, literal, werr};

/// What [`insert_floor`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertFloor {
    pub tables: usize,
    pub rows: u64,
    /// Wall time of the timed transaction.
    pub wall: Duration,
    /// CPU time of the thread that ran it (DuckDB runs on it alone: one thread); `None` where
    /// the platform does not tell (Linux's `/proc/thread-self/schedstat` does).
    pub cpu: Option<Duration>,
}

/// Writes every table of the DuckDB file `from` into a new file `to` (which must not exist),
/// timing only the writing (see the module's documentation).
pub fn insert_floor(from: &Path, to: &Path) -> Result<InsertFloor, LoadError> {
    if to.exists() {
        return Err(LoadError::Open { location: to.display().to_string(), message: "already exists".into() });
    }
    if !from.exists() {
        return Err(LoadError::Open { location: from.display().to_string(), message: "no such file".into() });
    }
    let db = DuckDb::open(to, "main")?;
    let conn = db.connection();
    let run = |sql: &str| conn.execute_batch(sql).map_err(werr(sql));
    run("SET memory_limit = '64GB'")?;
    run(&format!("ATTACH {} AS floor_src (READ_ONLY)", literal(&from.display().to_string())))?;
    let mut stmt = conn
        .prepare("SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'floor_src' ORDER BY ALL")
        .map_err(werr("listing tables"))?;
    let tables: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(werr("listing tables"))?;
    drop(stmt);
    let copy = |i: usize| format!("memory.main.{}", ident(&format!("floor_{i}")));
    let mut rows = 0u64;
    for (i, (schema, table)) in tables.iter().enumerate() {
        run(&format!("CREATE TABLE {} AS SELECT * FROM floor_src.{}.{}", copy(i), ident(schema), ident(table)))?;
        rows += conn
            .query_row(&format!("SELECT count(*) FROM {}", copy(i)), [], |r| r.get::<_, i64>(0))
            .map_err(werr("counting rows"))? as u64;
    }
    run("DETACH floor_src")?;

    let (t0, c0) = (Instant::now(), thread_cpu());
    run("BEGIN")?;
    for schema in tables.iter().map(|(s, _)| s).collect::<std::collections::BTreeSet<_>>() {
        run(&format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema)))?;
    }
    for (i, (schema, table)) in tables.iter().enumerate() {
        run(&format!("CREATE TABLE {}.{} AS SELECT * FROM {}", ident(schema), ident(table), copy(i)))?;
    }
    run("COMMIT")?;
    let wall = t0.elapsed();
    let cpu = c0.zip(thread_cpu()).map(|(a, b)| b.saturating_sub(a));
    Ok(InsertFloor { tables: tables.len(), rows, wall, cpu })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_table_and_counts_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from.duckdb"), dir.path().join("to.duckdb"));
        {
            let conn = duckdb::Connection::open(&from).unwrap();
            conn.execute_batch(
                "CREATE SCHEMA ds; CREATE TABLE ds.a AS SELECT range AS id, 'x' || range AS s FROM range(5000);
                 CREATE TABLE ds.b AS SELECT range AS id FROM range(7); CREATE TABLE main.c (id BIGINT);",
            )
            .unwrap();
        }
        let floor = insert_floor(&from, &to).unwrap();
        assert_eq!((floor.tables, floor.rows), (3, 5007));
        assert!(floor.wall > Duration::ZERO);
        if cfg!(target_os = "linux") {
            assert!(floor.cpu.is_some_and(|c| c > Duration::ZERO));
        }
        let conn = duckdb::Connection::open(&to).unwrap();
        let n: i64 = conn.query_row("SELECT count(*) FROM ds.a WHERE s = 'x' || id", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 5000);
        let n: i64 = conn.query_row("SELECT count(*) FROM ds.b", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 7);
        // the target must be new: a second run refuses to write into it
        assert!(matches!(insert_floor(&from, &to), Err(LoadError::Open { .. })));
    }
}
