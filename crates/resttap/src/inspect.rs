//! `resttap loads` and `resttap info`: what a dataset holds, read from the destination alone
//! (opened with [`Purpose::Read`]: nothing is written, no lock is taken).
//!
//! - `loads`: every load `_dlt_loads` records, newest first — load id, time (`inserted_at`),
//!   status (dlt's `_dlt_loads.status`, 0 = done), schema name, and per data table the rows
//!   whose `_dlt_load_id` is the load's. Those are the rows of the load **still in the table**:
//!   a later `merge` (or `replace`) replaces older rows, so an early load may show fewer rows
//!   than it inserted, or none. Nested tables (`<table>__<field>`) have no `_dlt_load_id` (as in
//!   dlt): only root tables are counted.
//! - `info`: the destination (its location, never a password), the dataset, its tables with
//!   their rows (data tables, then dlt's system tables), the newest load, and the position of
//!   each incremental resource in the pipeline's state (as `resttap state` reads it).
//!
//! Both print plain aligned text, or JSON with `--json`.

use std::fmt::Write as _;

use resttap_load::{Destination, LoadInfo, PipelineState, TableInfo, dlt};
use serde_json::{Value, json};

use crate::destinations::{DestinationSpec, Purpose};

/// What the `loads` text says under its table.
pub const ROWS_NOTE: &str = "rows: the load's rows still in each root table, counted by _dlt_load_id (a later merge or replace may have removed some of what the load inserted; nested tables have no _dlt_load_id)";

/// `resttap loads`: the dataset's loads, newest first (JSON: an array of [`LoadInfo`]).
pub fn loads_command(spec: &DestinationSpec, dataset: &str, json: bool) -> Result<String, String> {
    let mut db = spec.open(dataset, Purpose::Read).map_err(|e| e.to_string())?;
    let loads = db.loads().map_err(|e| e.to_string())?;
    if loads.is_empty() && db.describe().map_err(|e| e.to_string())?.is_empty() {
        return Err(no_dataset(&*db, dataset));
    }
    if json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(&loads).expect("serializable")));
    }
    if loads.is_empty() {
        return Ok(format!("dataset `{dataset}` in {} has no loads yet\n", db.location()));
    }
    Ok(loads_table(&loads))
}

/// `resttap info`: the pipeline's destination, dataset, tables, newest load and incremental
/// state.
pub fn info_command(spec: &DestinationSpec, pipeline: &str, dataset: &str, json: bool) -> Result<String, String> {
    let mut db = spec.open(dataset, Purpose::Read).map_err(|e| e.to_string())?;
    let tables = db.describe().map_err(|e| e.to_string())?;
    if tables.is_empty() {
        return Err(no_dataset(&*db, dataset));
    }
    let loads = db.loads().map_err(|e| e.to_string())?;
    let state = db.load_state(pipeline).map_err(|e| e.to_string())?;
    let info =
        Info { pipeline, destination: db.location(), dataset, tables: &tables, loads: &loads, state: state.as_ref() };
    Ok(if json {
        format!("{}\n", serde_json::to_string_pretty(&info.to_json()).expect("serializable"))
    } else {
        info.text()
    })
}

/// The error for a dataset that is not there.
fn no_dataset(db: &dyn Destination, dataset: &str) -> String {
    format!(
        "{} has no dataset `{dataset}` (or it has no tables); check --pipeline, --dataset and --destination, or run `resttap run` first",
        db.location()
    )
}

/// `0 (done)`, or dlt's other status numbers as they are.
fn status_text(status: i64) -> String {
    if status == dlt::LOAD_STATUS_DONE { format!("{status} (done)") } else { status.to_string() }
}

/// The loads as text: a line per load, its tables' rows under it.
pub fn loads_table(loads: &[LoadInfo]) -> String {
    let mut out = String::new();
    let iw = loads.iter().map(|l| l.load_id.len()).max().unwrap_or(0).max("load id".len());
    let tw = loads.iter().map(|l| l.inserted_at.len()).max().unwrap_or(0).max("inserted at".len());
    let sw = loads.iter().map(|l| status_text(l.status).len()).max().unwrap_or(0).max("status".len());
    let names = loads.iter().flat_map(|l| l.tables.iter().map(|t| t.table.len())).max().unwrap_or(0);
    let digits = loads.iter().flat_map(|l| l.tables.iter().map(|t| t.rows.to_string().len())).max().unwrap_or(0);
    let _ = writeln!(out, "{:<iw$}  {:<tw$}  {:<sw$}  schema", "load id", "inserted at", "status");
    for l in loads {
        let _ = writeln!(
            out,
            "{:<iw$}  {:<tw$}  {:<sw$}  {}",
            l.load_id,
            l.inserted_at,
            status_text(l.status),
            l.schema_name
        );
        if l.tables.is_empty() {
            let _ = writeln!(out, "  (no rows of this load left in any table)");
        }
        for t in &l.tables {
            let _ = writeln!(out, "  {:<names$}  {:>digits$}", t.table, t.rows);
        }
    }
    let _ = writeln!(out, "\n{ROWS_NOTE}");
    out
}

/// What `resttap info` shows.
struct Info<'a> {
    pipeline: &'a str,
    destination: String,
    dataset: &'a str,
    tables: &'a [TableInfo],
    loads: &'a [LoadInfo],
    state: Option<&'a PipelineState>,
}

/// One cursor of one incremental resource.
struct Cursor<'a> {
    resource: &'a str,
    cursor_path: &'a str,
    initial_value: Option<&'a Value>,
    last_value: Option<&'a Value>,
    unique_hashes: usize,
    /// A range with an end loaded part-way (`run --checkpoint-every`): end value and how far.
    backfill: Option<&'a resttap_state::Backfill>,
}

impl Info<'_> {
    /// Data tables, then system tables, each by name.
    fn split_tables(&self) -> (Vec<&TableInfo>, Vec<&TableInfo>) {
        let (mut system, mut data): (Vec<&TableInfo>, Vec<&TableInfo>) =
            self.tables.iter().partition(|t| dlt::SYSTEM_TABLES.contains(&t.name.as_str()));
        data.sort_by(|a, b| a.name.cmp(&b.name));
        system.sort_by(|a, b| a.name.cmp(&b.name));
        (data, system)
    }

    fn cursors(&self) -> Vec<Cursor<'_>> {
        let mut out = Vec::new();
        let Some(state) = self.state else { return out };
        for (resource, r) in &state.resources {
            let mut paths: Vec<&str> = r.incremental.keys().chain(r.backfill.keys()).map(String::as_str).collect();
            paths.sort_unstable();
            paths.dedup();
            for path in paths {
                let inc = r.incremental.get(path);
                out.push(Cursor {
                    resource,
                    cursor_path: path,
                    initial_value: inc.and_then(|i| i.initial_value.as_ref()),
                    last_value: inc.and_then(|i| i.last_value.as_ref()),
                    unique_hashes: inc.map_or(0, |i| i.unique_hashes.len()),
                    backfill: r.backfill.get(path),
                });
            }
        }
        out
    }

    fn to_json(&self) -> Value {
        let (data, system) = self.split_tables();
        let rows =
            |ts: &[&TableInfo]| -> Vec<Value> { ts.iter().map(|t| json!({"name": t.name, "rows": t.rows})).collect() };
        let state = self.state.map(|s| {
            let incremental: Vec<Value> = self
                .cursors()
                .iter()
                .map(|c| {
                    json!({
                        "resource": c.resource,
                        "cursor_path": c.cursor_path,
                        "initial_value": c.initial_value,
                        "last_value": c.last_value,
                        "unique_hashes": c.unique_hashes,
                        "backfill": c.backfill.map(|b| json!({
                            "initial_value": b.initial_value,
                            "end_value": b.end_value,
                            "last_value": b.last_value,
                        })),
                    })
                })
                .collect();
            json!({"version": s.version, "incremental": incremental})
        });
        json!({
            "pipeline": self.pipeline,
            "destination": self.destination,
            "dataset": self.dataset,
            "tables": rows(&data),
            "system_tables": rows(&system),
            "loads": self.loads.len(),
            "newest_load": self.loads.first(),
            "state": state,
        })
    }

    fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "pipeline     {}", self.pipeline);
        let _ = writeln!(out, "destination  {}", self.destination);
        let _ = writeln!(out, "dataset      {}", self.dataset);
        out.push('\n');
        let (data, system) = self.split_tables();
        let nw = self.tables.iter().map(|t| t.name.len()).max().unwrap_or(0).max("system tables".len());
        let rw = self.tables.iter().map(|t| t.rows.to_string().len()).max().unwrap_or(0).max("rows".len());
        let _ = writeln!(out, "{:<w$}  {:>rw$}", "tables", "rows", w = nw + 2);
        for t in &data {
            let _ = writeln!(out, "  {:<nw$}  {:>rw$}", t.name, t.rows);
        }
        let _ = writeln!(out, "system tables");
        for t in &system {
            let _ = writeln!(out, "  {:<nw$}  {:>rw$}", t.name, t.rows);
        }
        out.push('\n');
        match self.loads.first() {
            None => {
                let _ = writeln!(out, "loads        none yet");
            }
            Some(l) => {
                let rows: u64 = l.tables.iter().map(|t| t.rows).sum();
                let _ = writeln!(out, "loads        {} in all; the newest:", self.loads.len());
                let _ = writeln!(
                    out,
                    "  {}  at {}  status {}  schema {}  {rows} rows of it still in {} root tables",
                    l.load_id,
                    l.inserted_at,
                    status_text(l.status),
                    l.schema_name,
                    l.tables.len()
                );
            }
        }
        out.push('\n');
        let Some(state) = self.state else {
            let _ = writeln!(out, "pipeline `{}` has no stored state in this dataset", self.pipeline);
            return out;
        };
        let cursors = self.cursors();
        if cursors.is_empty() {
            let _ = writeln!(out, "state (version {}): no incremental resources", state.version);
            return out;
        }
        let _ = writeln!(out, "incremental state (version {}):", state.version);
        let shown = |v: Option<&Value>| match v {
            None | Some(Value::Null) => "-".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        let lines: Vec<[String; 5]> = cursors
            .iter()
            .map(|c| {
                let mut last = shown(c.last_value);
                if let Some(b) = c.backfill {
                    last = format!(
                        "{last} (backfill to {}: at {})",
                        shown(Some(&b.end_value)),
                        shown(Some(&b.last_value))
                    );
                }
                [
                    c.resource.to_string(),
                    c.cursor_path.to_string(),
                    last,
                    shown(c.initial_value),
                    c.unique_hashes.to_string(),
                ]
            })
            .collect();
        let head = ["resource", "cursor", "last_value", "initial_value", "hashes"];
        let w: Vec<usize> =
            (0..5).map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0).max(head[i].len())).collect();
        let row = |cells: [&str; 5]| {
            format!(
                "  {:<a$}  {:<b$}  {:<c$}  {:<d$}  {:>e$}\n",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                cells[4],
                a = w[0],
                b = w[1],
                c = w[2],
                d = w[3],
                e = w[4]
            )
        };
        out.push_str(&row(head));
        for l in &lines {
            out.push_str(&row([&l[0], &l[1], &l[2], &l[3], &l[4]]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resttap_load::LoadRows;

    fn load(id: &str, at: &str, tables: &[(&str, u64)]) -> LoadInfo {
        LoadInfo {
            load_id: id.into(),
            schema_name: "rest_api".into(),
            status: 0,
            inserted_at: at.into(),
            tables: tables.iter().map(|(t, n)| LoadRows { table: (*t).into(), rows: *n }).collect(),
        }
    }

    #[test]
    fn loads_print_as_an_aligned_table_with_their_rows() {
        let text = loads_table(&[
            load("1700000100.5", "2023-11-14T22:15:00.500000Z", &[("forums", 3), ("suggestions", 1200)]),
            load("1700000000.25", "2023-11-14T22:13:20.250000Z", &[]),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "load id        inserted at                  status    schema");
        assert_eq!(lines[1], "1700000100.5   2023-11-14T22:15:00.500000Z  0 (done)  rest_api");
        assert_eq!(lines[2], "  forums          3");
        assert_eq!(lines[3], "  suggestions  1200");
        assert_eq!(lines[5], "  (no rows of this load left in any table)");
        assert!(text.contains("still in each root table"), "{text}");
    }

    #[test]
    fn info_lists_data_tables_then_system_tables_and_each_cursor() {
        let tables: Vec<TableInfo> = ["_dlt_loads", "suggestions", "_dlt_version", "forums"]
            .iter()
            .map(|n| TableInfo { name: (*n).into(), rows: 2, columns: Vec::new() })
            .collect();
        let mut state = PipelineState::new("p");
        state.version = 4;
        let mut r = resttap_state::ResourceState::default();
        r.incremental.insert(
            "updated_at".into(),
            resttap_state::IncrementalState {
                initial_value: Some(json!("2024-01-01T00:00:00Z")),
                last_value: Some(json!("2024-05-01T00:00:00Z")),
                unique_hashes: vec!["a".into()],
            },
        );
        state.resources.insert("suggestions".into(), r);
        let loads = [load("1700000100.5", "2023-11-14T22:15:00.500000Z", &[("suggestions", 2)])];
        let info = Info {
            pipeline: "p",
            destination: "x.duckdb".into(),
            dataset: "p_dataset",
            tables: &tables,
            loads: &loads,
            state: Some(&state),
        };
        let v = info.to_json();
        let names = |k: &str| -> Vec<String> {
            v[k].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(names("tables"), ["forums", "suggestions"]);
        assert_eq!(names("system_tables"), ["_dlt_loads", "_dlt_version"]);
        assert_eq!(v["newest_load"]["load_id"], "1700000100.5");
        assert_eq!(v["state"]["incremental"][0]["last_value"], "2024-05-01T00:00:00Z");
        assert_eq!(v["state"]["incremental"][0]["unique_hashes"], 1);
        let text = info.text();
        assert!(text.contains("  suggestions  updated_at  2024-05-01T00:00:00Z  2024-01-01T00:00:00Z"), "{text}");
        assert!(text.find("forums").unwrap() < text.find("_dlt_loads").unwrap(), "{text}");
    }
}
