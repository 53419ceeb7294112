//! What the command line prints: the run summary and `resttap schema`.

use std::fmt::Write as _;

use resttap_load::TableInfo;

use crate::check::{Outcome, ResourceCheck};
use crate::pipeline::RunSummary;

/// The end-of-run summary: per table, the rows this load inserted (a loaded resource that
/// brought nothing shows its table with 0: an incremental run with nothing new is a normal
/// result), and the load id.
pub fn summary(s: &RunSummary) -> String {
    let mut out = String::new();
    let rows = table_rows(s);
    let width = rows.iter().map(|(t, _)| t.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(out, "{:<width$}  {:>10}", "table", "rows");
    let mut total = 0;
    for (table, n) in &rows {
        let _ = writeln!(out, "{table:<width$}  {n:>10}");
        total += n;
    }
    let records: u64 = s.resources.iter().map(|r| r.records).sum();
    let pages: u64 = s.resources.iter().map(|r| r.pages).sum();
    let retries: u64 = s.resources.iter().map(|r| r.retries).sum();
    let secs = s.elapsed.as_secs_f64();
    let _ = writeln!(out, "{:<width$}  {:>10}", "total", total);
    let _ = writeln!(
        out,
        "fetched {records} records in {pages} pages ({retries} retries) from {} resources; loaded into {} (dataset {}) in {secs:.2} s",
        s.resources.len(),
        s.destination,
        s.dataset
    );
    if s.throttled > 0 || !s.rate_limit_wait.is_zero() {
        let _ = writeln!(
            out,
            "rate limits: requests waited {:.1} s in all for their turn; {} response(s) 429",
            s.rate_limit_wait.as_secs_f64(),
            s.throttled
        );
    }
    if s.checkpoints > 0 {
        let _ = writeln!(
            out,
            "checkpoints: {} load(s) committed along the way, then the last; the rows above are all of them",
            s.checkpoints
        );
    }
    let _ = writeln!(out, "load id {}", s.load_id);
    out
}

/// The rows each table received, a loaded resource that brought nothing with 0.
fn table_rows(s: &RunSummary) -> Vec<(&str, u64)> {
    let mut rows: Vec<(&str, u64)> = s.report.tables.iter().map(|t| (t.table.as_str(), t.rows)).collect();
    for t in s.resources.iter().filter_map(|r| r.table.as_deref()) {
        if !rows.iter().any(|(name, _)| *name == t) {
            rows.push((t, 0));
        }
    }
    rows
}

/// The end-of-run summary as one JSON object (`--log-format json`).
pub fn summary_json(s: &RunSummary) -> serde_json::Value {
    let tables: Vec<serde_json::Value> =
        table_rows(s).into_iter().map(|(table, rows)| serde_json::json!({"table": table, "rows": rows})).collect();
    let resources: Vec<serde_json::Value> = s
        .resources
        .iter()
        .map(|r| {
            serde_json::json!({
                "resource": r.name, "table": r.table, "pages": r.pages, "records": r.records, "retries": r.retries,
            })
        })
        .collect();
    serde_json::json!({
        "event": "summary",
        "pipeline": s.pipeline,
        "dataset": s.dataset,
        "destination": s.destination,
        "load_id": s.load_id,
        "tables": tables,
        "resources": resources,
        "seconds": (s.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "responses_429": s.throttled,
        "rate_limit_wait_s": (s.rate_limit_wait.as_secs_f64() * 10.0).round() / 10.0,
        "checkpoints": s.checkpoints,
    })
}

/// `resttap schema` as a table.
pub fn schema_table(tables: &[TableInfo]) -> String {
    let mut out = String::new();
    for t in tables {
        let _ = writeln!(out, "{} ({} rows)", t.name, t.rows);
        let w = t.columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let tw = t.columns.iter().map(|c| c.data_type.len()).max().unwrap_or(0);
        for c in &t.columns {
            let _ = writeln!(
                out,
                "  {:<w$}  {:<tw$}  {}",
                c.name,
                c.data_type,
                if c.nullable { "NULL" } else { "NOT NULL" }
            );
        }
        out.push('\n');
    }
    out
}

/// `resttap check` as text: a block per resource.
pub fn check(checks: &[ResourceCheck]) -> String {
    let mut out = String::new();
    for c in checks {
        let parent = c.parent.as_ref().map(|p| format!(" (for the first record of `{p}`)")).unwrap_or_default();
        match &c.outcome {
            Outcome::Page { status, url, records, next_page, tables, refused } => {
                let loaded = if c.loaded { "" } else { "; not loaded, only requested to feed its children" };
                let _ = writeln!(out, "{}: HTTP {status}, {records} record(s) on the page{parent}{loaded}", c.name);
                let _ = writeln!(out, "  request        {url}");
                let _ = writeln!(out, "  data selector  {}", c.data_selector);
                let next =
                    next_page.as_ref().map_or("none (this is the last page)".to_string(), |u| format!("next {u}"));
                let _ = writeln!(out, "  paginator      {}: {next}", c.paginator);
                for t in tables {
                    let _ = writeln!(out, "  table {}", t.name);
                    let w = t.columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
                    for col in &t.columns {
                        let null = if col.nullable { "" } else { " NOT NULL" };
                        let _ = writeln!(out, "    {:<w$}  {}{null}", col.name, col.data_type);
                    }
                }
                if tables.is_empty() && c.loaded {
                    let _ = writeln!(out, "  no table: the page has no records to make one from");
                }
                if let Some(r) = refused {
                    let _ = writeln!(out, "  a run would stop here: {r}");
                }
            }
            Outcome::Ignored => {
                let _ = writeln!(out, "{}: the response was ignored by `response_actions`{parent}", c.name);
            }
            Outcome::NotRequested { reason } => {
                let _ = writeln!(out, "{}: not requested: {reason}", c.name);
            }
            Outcome::Failed { error } => {
                let _ = writeln!(out, "{}: FAILED{parent}: {error}", c.name);
            }
        }
    }
    let failed = checks.iter().filter(|c| c.failed()).count();
    let _ = writeln!(out, "{} resource(s) checked, {failed} failed; nothing was written", checks.len());
    out
}
