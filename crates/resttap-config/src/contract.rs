//! A resource's `schema_contract`, parsed once into a [`SchemaContract`]: a mode (`freeze`) for
//! everything, or `{tables, columns, data_type}` with the keys not given evolving, as in dlt. A
//! resource's contract replaces the one of `resource_defaults` whole (dlt merges neither).

use resttap_schema::contract::{ContractMode, SchemaContract};
use serde_json::Value;

use crate::error::{ConfigError, suggest};
use crate::load::Ctx;
use crate::model::Resource;

const ENTITIES: [&str; 3] = ["tables", "columns", "data_type"];

/// Parses the contract of resource `res` (at `key`, e.g. `resources[2]`).
pub(crate) fn resolve(ctx: &Ctx, key: &str, res: &Resource) -> Result<Option<SchemaContract>, ConfigError> {
    let key = format!("{key}.schema_contract");
    let mode = |k: &str, v: &Value| -> Result<ContractMode, ConfigError> {
        let name = v.as_str().unwrap_or_default();
        ContractMode::parse(name).ok_or_else(|| ConfigError::Invalid {
            path: ctx.path.to_path_buf(),
            key: k.to_string(),
            message: format!("must be one of: {} (got {v})", ContractMode::NAMES.join(", ")),
            suggestion: suggest(name, ContractMode::NAMES),
        })
    };
    match &res.schema_contract {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::String(_)) => Ok(Some(SchemaContract::all(mode(&key, v)?))),
        Some(Value::Object(m)) => {
            let mut c = SchemaContract::default();
            for (k, v) in m {
                let slot = match k.as_str() {
                    "tables" => &mut c.tables,
                    "columns" => &mut c.columns,
                    "data_type" => &mut c.data_type,
                    _ => {
                        return Err(ConfigError::Invalid {
                            path: ctx.path.to_path_buf(),
                            key: format!("{key}.{k}"),
                            message: format!("unknown key `{k}` (valid keys here: {})", ENTITIES.join(", ")),
                            suggestion: suggest(k, ENTITIES),
                        });
                    }
                };
                *slot = mode(&format!("{key}.{k}"), v)?;
            }
            Ok(Some(c))
        }
        Some(_) => Err(ctx.invalid(&key, "must be a mode (evolve, freeze, discard_row, discard_value) or a mapping of tables, columns and data_type to modes")),
    }
}
