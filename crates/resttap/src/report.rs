//! What the command line prints: the run summary and `resttap schema`.

use std::fmt::Write as _;

use resttap_load::TableInfo;

use crate::pipeline::RunSummary;

/// The end-of-run summary: per table, the rows this load inserted (a loaded resource that
/// brought nothing shows its table with 0: an incremental run with nothing new is a normal
/// result), and the load id.
pub fn summary(s: &RunSummary) -> String {
    let mut out = String::new();
    let mut rows: Vec<(&str, u64)> = s.report.tables.iter().map(|t| (t.table.as_str(), t.rows)).collect();
    for t in s.resources.iter().filter_map(|r| r.table.as_deref()) {
        if !rows.iter().any(|(name, _)| *name == t) {
            rows.push((t, 0));
        }
    }
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
