//! A resource's merge, parsed once: `write_disposition: {disposition: merge, strategy: ...}` with
//! the strategy's options, `merge_key`, and the `merge_key`, `hard_delete` and `dedup_sort`
//! column hints, into a [`MergeSpec`].

use resttap_schema::merge::{MergeSpec, MergeStrategy, Scd2, SortOrder};
use resttap_schema::naming::normalize_path;
use resttap_schema::timestamp::parse_timestamp;
use serde_json::Value;

use crate::error::{ConfigError, suggest};
use crate::load::Ctx;
use crate::model::{Resource, WriteDisposition};

const STRATEGIES: [&str; 4] = ["delete-insert", "upsert", "insert-only", "scd2"];

/// The options each strategy takes, besides `strategy`.
fn options_of(strategy: &str) -> &'static [&'static str] {
    match strategy {
        "scd2" => {
            &["validity_column_names", "active_record_timestamp", "boundary_timestamp", "row_version_column_name"]
        }
        _ => &[],
    }
}

/// dlt's options resttap does not run yet, and why they matter.
const LATER: [(&str, &str); 4] = [
    ("source_filter", "an SQL condition over the loaded rows"),
    ("destination_scope", "an SQL condition over the destination's rows"),
    ("skip_unchanged_rows", "upsert's comparison of loaded and stored records"),
    ("deduplicated", "delete-insert's switch for de-duplicating staged rows"),
];

/// Parses the merge of resource `res` (at `key`, e.g. `resources[2]`).
pub(crate) fn resolve(ctx: &Ctx, key: &str, res: &Resource) -> Result<MergeSpec, ConfigError> {
    let wd_key = format!("{key}.write_disposition");
    let options = res.merge_options.clone().unwrap_or_default();
    let strategy_name = match options.get("strategy") {
        None | Some(Value::Null) => "delete-insert".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ctx.invalid(&format!("{wd_key}.strategy"), "must be a string such as `upsert`")),
    };
    if !options.is_empty() && res.write_disposition != WriteDisposition::Merge {
        return Err(ctx.invalid(
            &wd_key,
            format!(
                "`strategy` and its options apply to `disposition: merge`, not `{}`",
                disposition_name(res.write_disposition)
            ),
        ));
    }
    if strategy_name == "cdc" {
        return Err(ctx.invalid(
            &format!("{wd_key}.strategy"),
            "merge strategy `cdc` is not supported by resttap yet (supported: delete-insert, upsert, insert-only, scd2)",
        ));
    }
    if !STRATEGIES.contains(&strategy_name.as_str()) {
        return Err(ConfigError::Invalid {
            path: ctx.path.to_path_buf(),
            key: format!("{wd_key}.strategy"),
            message: format!("unknown merge strategy `{strategy_name}` (expected one of: {})", STRATEGIES.join(", ")),
            suggestion: suggest(&strategy_name, STRATEGIES),
        });
    }
    let allowed = options_of(&strategy_name);
    for k in options.keys().filter(|k| *k != "strategy") {
        if let Some((_, what)) = LATER.iter().find(|(name, _)| name == k) {
            return Err(ctx.invalid(&format!("{wd_key}.{k}"), format!("({what}) is not supported by resttap yet")));
        }
        if !allowed.contains(&k.as_str()) {
            let known: Vec<&str> = ["disposition", "strategy"].into_iter().chain(allowed.iter().copied()).collect();
            let elsewhere = STRATEGIES.iter().find(|s| options_of(s).contains(&k.as_str()));
            let message = match elsewhere {
                Some(s) => format!("`{k}` is an option of strategy `{s}`, not `{strategy_name}`"),
                None => format!("unknown key `{k}` (valid keys here: {})", known.join(", ")),
            };
            return Err(ConfigError::Invalid {
                path: ctx.path.to_path_buf(),
                key: format!("{wd_key}.{k}"),
                message,
                suggestion: suggest(k, known),
            });
        }
    }
    let strategy = match strategy_name.as_str() {
        "upsert" => MergeStrategy::Upsert,
        "insert-only" => MergeStrategy::InsertOnly,
        "scd2" => MergeStrategy::Scd2(scd2(ctx, &wd_key, &options)?),
        _ => MergeStrategy::DeleteInsert,
    };

    let hinted = |pick: fn(&crate::model::ColumnHint) -> bool| -> Vec<&(String, crate::model::ColumnHint)> {
        res.columns.iter().flatten().filter(|(_, h)| pick(h)).collect()
    };
    let mut merge_key: Vec<String> = res.merge_key.iter().map(|k| normalize_path(k)).collect();
    for (c, _) in hinted(|h| h.merge_key == Some(true)) {
        let c = normalize_path(c);
        if !merge_key.contains(&c) {
            merge_key.push(c);
        }
    }
    if res.merge_key.iter().any(|k| k.trim().is_empty()) {
        return Err(ctx.invalid(&format!("{key}.merge_key"), "column names must not be empty"));
    }
    // the one column with a hint, as (normalized name, its hint)
    let one = |what: &str, cols: Vec<&(String, crate::model::ColumnHint)>| match cols.as_slice() {
        [] => Ok(None),
        [(c, h)] => Ok(Some((normalize_path(c), h.clone()))),
        [(a, _), (b, _), ..] => Err(ctx.invalid(
            &format!("{key}.columns"),
            format!("`{what}` is set on two columns, `{a}` and `{b}`; a table can have one"),
        )),
    };
    let hard_delete = one("hard_delete", hinted(|h| h.hard_delete == Some(true)))?.map(|(c, _)| c);
    let dedup_sort = one("dedup_sort", hinted(|h| h.dedup_sort.is_some()))?
        .map(|(c, h)| (c, h.dedup_sort.unwrap_or(SortOrder::Desc)));
    let has_primary_key =
        !res.primary_key.is_empty() || res.columns.iter().flatten().any(|(_, h)| h.primary_key == Some(true));
    if res.write_disposition == WriteDisposition::Merge && strategy.needs_primary_key() && !has_primary_key {
        return Err(ctx.invalid(
            &format!("{key}.primary_key"),
            format!(
                "merge strategy `{strategy_name}` needs a primary key: set `primary_key` on the resource or in `resource_defaults`"
            ),
        ));
    }
    Ok(MergeSpec { strategy, merge_key, hard_delete, dedup_sort })
}

fn disposition_name(wd: WriteDisposition) -> &'static str {
    match wd {
        WriteDisposition::Append => "append",
        WriteDisposition::Replace => "replace",
        WriteDisposition::Merge => "merge",
    }
}

fn scd2(ctx: &Ctx, wd_key: &str, options: &serde_json::Map<String, Value>) -> Result<Scd2, ConfigError> {
    let mut s = Scd2::default();
    if let Some(v) = options.get("validity_column_names") {
        let k = format!("{wd_key}.validity_column_names");
        let names: Vec<&str> = match v {
            Value::Array(items) => items.iter().filter_map(Value::as_str).filter(|n| !n.trim().is_empty()).collect(),
            _ => Vec::new(),
        };
        match (names.as_slice(), v.as_array().map(Vec::len)) {
            ([from, to], Some(2)) => {
                s.valid_from = normalize_path(from);
                s.valid_to = normalize_path(to);
                if s.valid_from == s.valid_to {
                    return Err(ctx.invalid(&k, "needs two different column names"));
                }
            }
            _ => return Err(ctx.invalid(&k, "must be a list of two column names, e.g. [valid_from, valid_to]")),
        }
    }
    s.active_record_timestamp = timestamp(ctx, &format!("{wd_key}.active_record_timestamp"), options)?;
    s.boundary_timestamp = timestamp(ctx, &format!("{wd_key}.boundary_timestamp"), options)?;
    if let Some(v) = options.get("row_version_column_name") {
        match v.as_str().filter(|n| !n.trim().is_empty()) {
            Some(n) => s.row_version_column = Some(normalize_path(n)),
            None => return Err(ctx.invalid(&format!("{wd_key}.row_version_column_name"), "must be a column name")),
        }
    }
    Ok(s)
}

/// A date-time option: an ISO 8601 date-time (UTC without an offset), a date (its midnight,
/// UTC), Unix seconds, or null. In microseconds since the epoch.
fn timestamp(ctx: &Ctx, key: &str, options: &serde_json::Map<String, Value>) -> Result<Option<i64>, ConfigError> {
    let name = key.rsplit('.').next().unwrap_or(key);
    let bad = || {
        ctx.invalid(key, "must be an ISO 8601 date or date-time (e.g. `9999-12-31` or `2024-01-01T00:00:00Z`), Unix seconds, or null")
    };
    match options.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => {
            let t = t.trim();
            let parsed = if t.len() == 10 { parse_timestamp(&format!("{t}T00:00:00Z")) } else { parse_timestamp(t) };
            parsed.map(Some).ok_or_else(bad)
        }
        Some(Value::Number(n)) => {
            n.as_f64().filter(|f| f.is_finite()).map(|f| Some((f * 1e6).round() as i64)).ok_or_else(bad)
        }
        Some(_) => Err(bad()),
    }
}
