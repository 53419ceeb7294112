//! A resource's `columns` hints and `nested_hints`, typed once: each hint's `data_type` (with a
//! decimal's `precision` and `scale`) becomes a [`DataType`] in [`ColumnHint::typed`].

use resttap_schema::{DataType, Precision};

use crate::error::{ConfigError, suggest};
use crate::load::Ctx;
use crate::model::{ColumnHint, Resource};

/// dlt's data types, as a `columns` hint names them (`complex` is dlt's old name of `json`).
const HINT_TYPES: [&str; 12] =
    ["text", "bigint", "double", "bool", "timestamp", "json", "complex", "date", "decimal", "wei", "binary", "time"];

/// The largest precision resttap takes (PostgreSQL's `numeric` limit; DuckDB's is 38 and it
/// says so when the table is created).
const MAX_PRECISION: u16 = 1000;

/// Types the hints of resource `res` (at `key`, e.g. `resources[2]`), root and nested.
pub(crate) fn resolve(ctx: &Ctx, key: &str, res: &mut Resource) -> Result<(), ConfigError> {
    for (col, hint) in res.columns.iter_mut().flatten() {
        type_hint(ctx, &format!("{key}.columns.{col}"), col, hint)?;
    }
    for (path, nested) in res.nested_hints.iter_mut().flatten() {
        let at = format!("{key}.nested_hints.{path}");
        if path.trim().is_empty() || path.contains("__") {
            return Err(ctx.invalid(
                &at,
                "a key names a list field of the resource's records (`lines` for table `<table>__lines`); dlt reads \
                 `a__b` as one name (`a_b`), so a deeper table cannot be hinted from a configuration file",
            ));
        }
        let refused = [
            ("primary_key", nested.primary_key.is_some()),
            ("merge_key", nested.merge_key.is_some()),
            ("write_disposition", nested.write_disposition.is_some()),
            ("schema_contract", nested.schema_contract.is_some()),
            ("parent_table_name", nested.parent_table_name.is_some()),
            ("table_format", nested.table_format.is_some()),
            ("file_format", nested.file_format.is_some()),
            ("references", nested.references.is_some()),
        ];
        if let Some((k, _)) = refused.iter().find(|(_, set)| *set) {
            return Err(ctx.invalid(
                &format!("{at}.{k}"),
                "is not supported by resttap yet: a nested table takes `columns` hints (types, nullability)",
            ));
        }
        for (col, hint) in nested.columns.iter_mut().flatten() {
            let at = format!("{at}.columns.{col}");
            let keyed = [
                ("primary_key", hint.primary_key == Some(true)),
                ("merge_key", hint.merge_key == Some(true)),
                ("hard_delete", hint.hard_delete == Some(true)),
                ("dedup_sort", hint.dedup_sort.is_some()),
            ];
            if let Some((k, _)) = keyed.iter().find(|(_, set)| *set) {
                return Err(ctx.invalid(
                    &format!("{at}.{k}"),
                    "belongs to the resource's own table: a nested table's rows are keyed by `_dlt_id`",
                ));
            }
            type_hint(ctx, &at, col, hint)?;
        }
    }
    Ok(())
}

fn type_hint(ctx: &Ctx, at: &str, col: &str, hint: &mut ColumnHint) -> Result<(), ConfigError> {
    if let Some(name) = hint.name.as_ref().filter(|n| *n != col) {
        return Err(ctx.invalid(&format!("{at}.name"), format!("is `{name}`, but the column's key is `{col}`")));
    }
    let precision = Precision { precision: hint.precision, scale: hint.scale };
    let Some(name) = &hint.data_type else {
        if precision != Precision::default() {
            return Err(ctx.invalid(at, "`precision` and `scale` need a `data_type: decimal`"));
        }
        return Ok(());
    };
    let Some(t) = DataType::from_dlt(name, precision) else {
        return Err(ConfigError::Invalid {
            path: ctx.path.to_path_buf(),
            key: format!("{at}.data_type"),
            message: format!("unknown data type `{name}` (expected one of: {})", HINT_TYPES.join(", ")),
            suggestion: suggest(name, HINT_TYPES),
        });
    };
    if let DataType::Decimal(p) = t {
        let (digits, scale) = p.or(Precision::DEFAULT);
        if digits == 0 || digits > MAX_PRECISION {
            return Err(ctx.invalid(&format!("{at}.precision"), format!("must be from 1 to {MAX_PRECISION}")));
        }
        if scale > digits {
            let given = if hint.scale.is_some() { "" } else { " (the default scale, as in dlt)" };
            return Err(ctx.invalid(
                &format!("{at}.scale"),
                format!("{scale}{given} is more than the precision {digits}: a decimal has at most `precision` digits"),
            ));
        }
    } else if precision != Precision::default() {
        return Err(ctx.invalid(
            at,
            format!("`precision` and `scale` are supported by resttap for `decimal` only, not for `{name}`"),
        ));
    }
    hint.typed = Some(t);
    Ok(())
}
