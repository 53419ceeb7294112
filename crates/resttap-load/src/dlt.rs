//! dlt's protocol, as every destination writes it: the system tables (`_dlt_loads`,
//! `_dlt_version`, `_dlt_pipeline_state`) with their columns and the rows a load adds to them,
//! the schema version hash, the staging dataset's name, and how a nested table's parent is found
//! from its name. A destination maps these to its own types and statements and keeps nothing of
//! dlt's protocol to itself.

use resttap_schema::contract::{ContractMode, SchemaContract};
use resttap_schema::{Column, DataType, Schema, Table};
use resttap_state::PipelineState;
use serde_json::Value;

/// The time of load `load_id` in microseconds since the epoch, as dlt reads it (scd2's
/// boundary: `pendulum.from_timestamp(float(load_id))`, the fraction's microseconds rounded
/// half to even).
pub fn load_time_micros(load_id: &str) -> i64 {
    let t: f64 = load_id.parse().unwrap_or(0.0);
    let secs = t.trunc();
    let micros = ((t - secs) * 1e6).round_ties_even();
    secs as i64 * 1_000_000 + micros as i64
}

/// `_dlt_loads`: one row per completed load.
pub const LOADS: &str = "_dlt_loads";
/// `_dlt_version`: one row per schema version.
pub const VERSION: &str = "_dlt_version";
/// `_dlt_pipeline_state`: one row per state version.
pub const PIPELINE_STATE: &str = "_dlt_pipeline_state";
/// dlt's own tables, left out of the user schema.
pub const SYSTEM_TABLES: [&str; 3] = [LOADS, VERSION, PIPELINE_STATE];

/// dlt's stored-schema engine version, written to `_dlt_version.engine_version`.
pub const SCHEMA_ENGINE_VERSION: u64 = 11;

/// `_dlt_loads.status` of a completed load.
pub const LOAD_STATUS_DONE: i64 = 0;

fn col(name: &str, data_type: DataType, nullable: bool) -> Column {
    Column { name: name.into(), data_type, nullable, primary_key: false }
}

/// The columns of a system table, in dlt's order, with dlt's types and nullability.
pub fn system_columns(table: &str) -> Vec<Column> {
    use DataType::{Bigint, Text, Timestamp};
    match table {
        LOADS => vec![
            col("load_id", Text, false),
            col("schema_name", Text, true),
            col("status", Bigint, false),
            col("inserted_at", Timestamp, false),
            col("schema_version_hash", Text, true),
        ],
        VERSION => vec![
            col("version", Bigint, false),
            col("engine_version", Bigint, false),
            col("inserted_at", Timestamp, false),
            col("schema_name", Text, false),
            col("version_hash", Text, false),
            col("schema", Text, false),
        ],
        PIPELINE_STATE => vec![
            col("version", Bigint, false),
            col("engine_version", Bigint, false),
            col("pipeline_name", Text, false),
            col("state", Text, false),
            col("created_at", Timestamp, false),
            col("version_hash", Text, true),
            col("_dlt_load_id", Text, false),
            col("_dlt_id", Text, false),
        ],
        _ => Vec::new(),
    }
}

/// The length dlt gives a text column of a system table (`varchar(64)` for load ids on
/// destinations that size text), if any.
pub fn system_text_length(table: &str, column: &str) -> Option<u32> {
    matches!((table, column), (LOADS, "load_id") | (PIPELINE_STATE, "_dlt_load_id")).then_some(64)
}

/// Whether dlt declares the column `UNIQUE` (with indexes, as dlt's SQL destinations create
/// them by default): `_dlt_id` of every data table and of `_dlt_pipeline_state`.
pub fn unique_column(table: &str, column: &str) -> bool {
    column == resttap_schema::cols::ID && table != LOADS && table != VERSION
}

/// Whether `table` is the root table of an scd2 resource of `plan`: its `_dlt_id` is the row
/// hash, which a version that comes back shares with its retired one, so dlt does not declare
/// it unique (`unique: false` in its schema).
pub fn versioned_root(plan: &crate::LoadPlan, table: &str) -> bool {
    plan.resources.iter().any(|r| {
        r.root_table == table
            && r.write_disposition == resttap_schema::WriteDisposition::Merge
            && matches!(r.merge.strategy, resttap_schema::merge::MergeStrategy::Scd2(_))
    })
}

/// A system table as a [`Table`], for a destination's `CREATE TABLE`.
pub fn system_table(name: &str) -> Table {
    let mut t = Table::new(name, None);
    for c in system_columns(name) {
        t.add_column(c);
    }
    t
}

/// The staging dataset of `dataset` (dlt's `<dataset>_staging`), where destinations that stage
/// outside the dataset put a load's rows before the commit applies them.
pub fn staging_dataset(dataset: &str) -> String {
    format!("{dataset}_staging")
}

/// What dlt 1.31 wrote for its own tables and settings (a rest_api pipeline on DuckDB): the
/// system tables' entries, `settings` and the normalizer's name are copied from it, so that
/// they are dlt's to the byte.
const DLT_SCHEMA: &str = include_str!("dlt_schema_run1.json");

/// The load's schema in dlt's stored-schema format (engine 11), as `_dlt_version.schema` holds
/// it, so that dlt can attach to the dataset (`pipeline.sync_destination()`) and read its
/// tables: dlt's system tables, then each table with its columns (`data_type`, `nullable`,
/// `primary_key`, the merge hints, dlt's system column hints), write disposition, merge
/// strategy and parent; `normalizers` with the root key propagation of merge tables.
/// Returns the JSON and dlt's version hash of it ([`dlt_schema_hash`]).
pub fn stored_schema(plan: &crate::LoadPlan) -> (String, String) {
    use resttap_schema::merge::MergeStrategy;
    use serde_json::{Map, Value, json};
    let template: Value = serde_json::from_str(DLT_SCHEMA).expect("the template is JSON");
    let system = |name: &str| template["tables"][name].clone();
    let mut tables = Map::new();
    for name in [VERSION, LOADS] {
        tables.insert(name.into(), system(name));
    }
    let mut propagation = Map::new();
    let resource_of = |table: &Table| -> Option<&crate::ResourceLoad> {
        let mut root = table;
        while let Some(p) = root.parent.as_deref().and_then(|p| plan.schema.table(p)) {
            root = p;
        }
        plan.resources.iter().find(|r| r.root_table == root.name)
    };
    for t in &plan.schema.tables {
        let res = resource_of(t);
        let merging = res.is_some_and(|r| r.write_disposition == resttap_schema::WriteDisposition::Merge);
        let strategy = res.filter(|_| merging).map(|r| &r.merge.strategy);
        let scd2 = match strategy {
            Some(MergeStrategy::Scd2(s)) => Some(s),
            _ => None,
        };
        let mut columns = Map::new();
        for c in &t.columns {
            let mut col = Map::new();
            col.insert("name".into(), c.name.clone().into());
            col.insert("data_type".into(), c.data_type.dlt_name().into());
            // as hinted: dlt keeps a decimal's precision and scale beside its type
            let p = c.data_type.precision();
            if let Some(n) = p.precision {
                col.insert("precision".into(), n.into());
            }
            if let Some(n) = p.scale {
                col.insert("scale".into(), n.into());
            }
            col.insert("nullable".into(), c.nullable.into());
            let mut hint = |k: &str, v: Value| {
                col.insert(k.into(), v);
            };
            if c.primary_key {
                hint("primary_key", true.into());
            }
            match c.name.as_str() {
                resttap_schema::cols::ID
                    if t.parent.is_none() && scd2.is_some_and(|s| s.row_version_column.is_none()) =>
                {
                    hint("x-row-version", true.into());
                    hint("unique", false.into());
                    hint("row_key", false.into());
                }
                resttap_schema::cols::ID => {
                    hint("unique", true.into());
                    hint("row_key", true.into());
                }
                resttap_schema::cols::ROOT_ID if t.parent.is_some() => hint("root_key", true.into()),
                resttap_schema::cols::PARENT_ID if t.parent.is_some() => hint("parent_key", true.into()),
                _ => {}
            }
            if let (Some(r), None) = (res.filter(|_| merging), &t.parent) {
                let m = &r.merge;
                if m.merge_key.contains(&c.name) {
                    hint("merge_key", true.into());
                }
                if m.hard_delete.as_deref() == Some(c.name.as_str()) {
                    hint("hard_delete", true.into());
                }
                if let Some((col_name, order)) = &m.dedup_sort
                    && *col_name == c.name
                {
                    hint("dedup_sort", serde_json::to_value(order).expect("serializable"));
                }
                if let Some(s) = scd2 {
                    if c.name == s.valid_from {
                        hint("x-valid-from", true.into());
                    }
                    if c.name == s.valid_to {
                        hint("x-valid-to", true.into());
                        let active = s.active_record_timestamp.map(resttap_schema::timestamp::format_timestamp);
                        hint("x-active-record-timestamp", active.map_or(Value::Null, Value::from));
                    }
                    if s.row_version_column.as_deref() == Some(c.name.as_str()) {
                        hint("x-row-version", true.into());
                    }
                }
            }
            columns.insert(c.name.clone(), Value::Object(col));
        }
        let mut table = Map::new();
        table.insert("name".into(), t.name.clone().into());
        table.insert("columns".into(), Value::Object(columns));
        match &t.parent {
            Some(p) => {
                table.insert("parent".into(), p.clone().into());
            }
            None => {
                let wd = res.map_or(resttap_schema::WriteDisposition::Append, |r| r.write_disposition);
                table.insert("write_disposition".into(), serde_json::to_value(wd).expect("serializable"));
                table.insert("resource".into(), res.map_or(t.name.clone(), |r| r.resource.clone()).into());
                if let Some(s) = strategy.filter(|s| **s != MergeStrategy::DeleteInsert) {
                    table.insert("x-merge-strategy".into(), s.name().into());
                }
                if let Some(c) = res.map(|r| r.contract).filter(|c| !c.evolves()) {
                    // dlt's expanded form (its `schema_contract` table hint)
                    let contract = json!({"tables": c.tables.name(), "columns": c.columns.name(), "data_type": c.data_type.name()});
                    table.insert("schema_contract".into(), contract);
                }
                if merging && scd2.is_none() {
                    propagation
                        .insert(t.name.clone(), json!({ resttap_schema::cols::ID: resttap_schema::cols::ROOT_ID }));
                }
            }
        }
        table.insert("x-normalizer".into(), json!({"seen-data": true}));
        tables.insert(t.name.clone(), Value::Object(table));
    }
    if plan.state.is_some() {
        tables.insert(PIPELINE_STATE.into(), system(PIPELINE_STATE));
    }
    let mut normalizers = template["normalizers"].clone();
    match propagation.is_empty() {
        true => {
            normalizers["json"].as_object_mut().expect("an object").remove("config");
        }
        false => normalizers["json"]["config"] = json!({"propagation": {"tables": propagation}}),
    }
    let mut schema = Map::new();
    schema.insert("version".into(), 1.into());
    schema.insert("version_hash".into(), "".into());
    schema.insert("engine_version".into(), SCHEMA_ENGINE_VERSION.into());
    schema.insert("name".into(), plan.schema_name.clone().into());
    schema.insert("tables".into(), Value::Object(tables));
    schema.insert("settings".into(), template["settings"].clone());
    schema.insert("normalizers".into(), normalizers);
    schema.insert("previous_hashes".into(), json!([]));
    let mut schema = Value::Object(schema);
    let hash = dlt_schema_hash(&schema);
    schema["version_hash"] = hash.clone().into();
    (hash, serde_json::to_string(&schema).expect("a schema serializes"))
}

/// dlt's `generate_version_hash` of a stored schema: SHA3-256 of its sorted compact JSON
/// (orjson's) without `version`, `version_hash`, `imported_version_hash` and
/// `previous_hashes`, then of each table's name (sorted) followed by its columns' names in
/// their order; padded base64.
pub fn dlt_schema_hash(schema: &serde_json::Value) -> String {
    use base64::Engine;
    use tiny_keccak::Hasher;
    let skip = |k: &str| matches!(k, "version" | "version_hash" | "imported_version_hash" | "previous_hashes");
    let mut buf = Vec::new();
    resttap_json::canonical::write_sorted_without(schema, &skip, &mut buf);
    let mut h = tiny_keccak::Sha3::v256();
    h.update(&buf);
    if let Some(tables) = schema.get("tables").and_then(|t| t.as_object()) {
        let mut names: Vec<&String> = tables.keys().collect();
        names.sort();
        for name in names {
            h.update(name.as_bytes());
            if let Some(columns) = tables[name].get("columns").and_then(|c| c.as_object()) {
                for c in columns.keys() {
                    h.update(c.as_bytes());
                }
            }
        }
    }
    let mut out = [0u8; 32];
    h.finalize(&mut out);
    base64::engine::general_purpose::STANDARD.encode(out)
}

/// The tables and columns of a stored schema in dlt's format (what dlt or resttap wrote to
/// `_dlt_version`), system tables left out; columns of types resttap does not have are left
/// out too. `None` when it is not such a schema.
pub fn schema_from_stored(text: &str) -> Option<Schema> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let tables = v.get("tables")?.as_object()?;
    let mut schema = Schema::default();
    for (name, t) in tables {
        if name.starts_with("_dlt_") {
            continue;
        }
        let parent = t.get("parent").and_then(|p| p.as_str()).map(String::from);
        let mut table = Table::new(name.clone(), parent);
        for (cname, c) in t.get("columns")?.as_object()? {
            let number = |k: &str| c.get(k).and_then(serde_json::Value::as_u64).and_then(|n| u16::try_from(n).ok());
            let precision = resttap_schema::Precision { precision: number("precision"), scale: number("scale") };
            let dtype = c.get("data_type").and_then(|d| d.as_str()).and_then(|d| DataType::from_dlt(d, precision));
            let Some(data_type) = dtype else { continue };
            table.add_column(Column {
                name: cname.clone(),
                data_type,
                nullable: c.get("nullable").and_then(|n| n.as_bool()).unwrap_or(true),
                primary_key: c.get("primary_key").and_then(|n| n.as_bool()).unwrap_or(false),
            });
        }
        schema.tables.push(table);
    }
    // in the stored order: dlt (and resttap) add a nested table after its parent
    Some(schema)
}

/// The `schema_contract` each root table has in a stored schema (dlt's table hint: a mode, or
/// some of `tables`, `columns`, `data_type`), for the resources that declare none.
pub fn stored_contracts(text: &str) -> Vec<(String, SchemaContract)> {
    let Ok(v) = serde_json::from_str::<Value>(text) else { return Vec::new() };
    let mode = |v: &Value| v.as_str().and_then(ContractMode::parse);
    let mut out = Vec::new();
    for (name, t) in v.get("tables").and_then(Value::as_object).into_iter().flatten() {
        let contract = match t.get("schema_contract") {
            Some(v @ Value::String(_)) => mode(v).map(SchemaContract::all),
            Some(Value::Object(m)) => {
                let get = |k: &str| m.get(k).map_or(Some(ContractMode::Evolve), mode);
                match (get("tables"), get("columns"), get("data_type")) {
                    (Some(tables), Some(columns), Some(data_type)) => {
                        Some(SchemaContract { tables, columns, data_type })
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(c) = contract {
            out.push((name.clone(), c));
        }
    }
    out
}

/// The `_dlt_loads` row of a completed load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRow {
    pub load_id: String,
    pub schema_name: String,
    pub status: i64,
    pub schema_version_hash: String,
}

/// A `_dlt_version` row: written when the load's schema hash is not there yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub engine_version: i64,
    pub schema_name: String,
    pub version_hash: String,
    /// The stored schema.
    pub schema: String,
}

/// A `_dlt_pipeline_state` row (dlt keeps every version; the highest is current).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    pub version: i64,
    pub engine_version: i64,
    pub pipeline_name: String,
    /// dlt's encoding: zlib-compressed JSON in base64.
    pub state: String,
    pub version_hash: String,
    pub load_id: String,
    /// `<pipeline>-<version>`.
    pub id: String,
}

impl StateRow {
    /// The row that stores `state` in load `load_id`.
    pub fn new(state: &PipelineState, load_id: &str) -> Self {
        StateRow {
            version: state.version as i64,
            engine_version: resttap_state::ENGINE_VERSION as i64,
            pipeline_name: state.pipeline_name.clone(),
            state: state.encode(),
            version_hash: state.content_hash(),
            load_id: load_id.into(),
            id: format!("{}-{}", state.pipeline_name, state.version),
        }
    }
}

/// The system rows of one load: what every destination writes in the commit's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemRows {
    pub load: LoadRow,
    pub version: VersionRow,
    pub state: Option<StateRow>,
}

impl SystemRows {
    /// The rows for `plan`.
    pub fn for_plan(plan: &crate::LoadPlan) -> Self {
        let (hash, schema) = stored_schema(plan);
        SystemRows {
            load: LoadRow {
                load_id: plan.load_id.clone(),
                schema_name: plan.schema_name.clone(),
                status: LOAD_STATUS_DONE,
                schema_version_hash: hash.clone(),
            },
            version: VersionRow {
                engine_version: SCHEMA_ENGINE_VERSION as i64,
                schema_name: plan.schema_name.clone(),
                version_hash: hash,
                schema,
            },
            state: plan.state.as_ref().map(|s| StateRow::new(s, &plan.load_id)),
        }
    }
}

/// The state a load writes when another load may have committed since it read the state:
/// `latest` (what the destination has now) with the entries of `owned` (the resources this load
/// ran) taken from `ours`, one version above `latest`; `None` when that changes nothing.
pub fn merge_state(latest: Option<PipelineState>, ours: &PipelineState, owned: &[String]) -> Option<PipelineState> {
    let Some(latest) = latest else { return Some(ours.clone()) };
    if latest.version < ours.version {
        // nobody committed in between
        return Some(ours.clone());
    }
    let mut merged = latest.clone();
    for r in owned {
        match ours.resources.get(r) {
            Some(st) => {
                merged.resources.insert(r.clone(), st.clone());
            }
            None => {
                merged.resources.remove(r);
            }
        }
    }
    (merged.content_hash() != latest.content_hash()).then(|| {
        merged.version = latest.version + 1;
        merged
    })
}

/// A nested table's parent among `tables`: the longest table name that `name` extends by
/// `__<more>` (dlt names `a__b` the list `b` of table `a`). `None` for a root table.
pub fn parent_of<'a>(name: &str, tables: impl Fn(&str) -> bool + 'a) -> Option<String> {
    // every `__`, overlapping ones too: `items___links` (the key `_links`) is `links` of `items`
    let bytes = name.as_bytes();
    (1..bytes.len().saturating_sub(1))
        .rev()
        .filter(|&i| bytes[i] == b'_' && bytes[i + 1] == b'_')
        .map(|i| &name[..i])
        .find(|p| tables(p))
        .map(String::from)
}

/// A dataset's user schema from what a destination lists: tables with their columns (those whose
/// type the destination could map), system tables left out, each nested table (one with
/// `_dlt_parent_id`) given its parent, found from its name.
pub fn schema_from_listing(tables: Vec<(String, Vec<Column>)>) -> Schema {
    let names: std::collections::HashSet<String> = tables.iter().map(|(n, _)| n.clone()).collect();
    let mut schema = Schema::default();
    for (name, columns) in tables {
        if SYSTEM_TABLES.contains(&name.as_str()) {
            continue;
        }
        // only dlt's nested tables have `_dlt_parent_id`: another resource's root table named
        // like `users__admins` is not a child of `users`
        let nested = columns.iter().any(|c| c.name == resttap_schema::cols::PARENT_ID);
        let parent = if nested { parent_of(&name, |p| names.contains(p)) } else { None };
        let mut t = Table::new(name, parent);
        for c in columns {
            t.add_column(c);
        }
        schema.tables.push(t);
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_tables_find_their_longest_existing_parent() {
        let known = ["a", "a__b", "x"];
        let has = |p: &str| known.contains(&p);
        assert_eq!(parent_of("a__b__c", has), Some("a__b".into()));
        assert_eq!(parent_of("a__zz__c", has), Some("a".into()));
        assert_eq!(parent_of("a", has), None);
        assert_eq!(parent_of("y__b", has), None);
        assert_eq!(parent_of("a___links", has), Some("a".into()), "the key `_links` of `a`");
        assert_eq!(parent_of("__a", has), None);
    }

    #[test]
    fn the_listing_leaves_system_tables_out_and_links_parents() {
        let c = |n: &str| Column { name: n.into(), data_type: DataType::Text, nullable: true, primary_key: false };
        let s = schema_from_listing(vec![
            ("_dlt_loads".into(), vec![c("load_id")]),
            ("f".into(), vec![c("id")]),
            ("f__tags".into(), vec![c("value"), c("_dlt_parent_id")]),
            ("f__admins".into(), vec![c("id"), c("_dlt_id")]),
        ]);
        let names: Vec<(&str, Option<&str>)> =
            s.tables.iter().map(|t| (t.name.as_str(), t.parent.as_deref())).collect();
        assert_eq!(
            names,
            vec![("f", None), ("f__tags", Some("f")), ("f__admins", None)],
            "a root table named like a child"
        );
        assert_eq!(s.table("f__tags").unwrap().column("value").unwrap().name, "value");
    }

    #[test]
    fn a_loads_resources_go_over_the_latest_state_and_the_others_stay() {
        let mut latest = PipelineState::new("p");
        latest.version = 5;
        latest.resources.entry("a".into()).or_default().incremental.insert("c".into(), Default::default());
        latest.resources.entry("b".into()).or_default();
        // ours was read at version 3 and changed b only
        let mut ours = PipelineState::new("p");
        ours.version = 4;
        let mut b = resttap_state::ResourceState::default();
        b.incremental.insert("x".into(), Default::default());
        ours.resources.insert("b".into(), b.clone());
        let merged = merge_state(Some(latest.clone()), &ours, &["b".into()]).unwrap();
        assert_eq!(merged.version, 6);
        assert_eq!(merged.resources["b"], b);
        assert!(merged.resources.contains_key("a"), "another run's resource stays");
        // nobody in between: ours as it is; nothing new: nothing to write
        assert_eq!(merge_state(None, &ours, &["b".into()]), Some(ours.clone()));
        // another run committed version 6 with the same position for b: nothing to write
        let mut again = ours.clone();
        again.version = 6;
        assert_eq!(merge_state(Some(merged.clone()), &again, &["b".into()]), None);
    }

    #[test]
    fn the_schema_hash_is_dlts() {
        // dlt 1.31's stored schema of a rest_api pipeline, and the hash dlt gave it
        let v: serde_json::Value = serde_json::from_str(DLT_SCHEMA).unwrap();
        assert_eq!(dlt_schema_hash(&v), "bVfUdt9e338ezhrrmFFwr91Ok1IA4qMulDRiEKJC3JM=");
        assert_eq!(dlt_schema_hash(&v), v["version_hash"].as_str().unwrap());
        let back = schema_from_stored(DLT_SCHEMA).unwrap();
        let items = back.table("items").unwrap();
        assert_eq!(
            items.column("id").map(|c| (c.data_type, c.nullable, c.primary_key)),
            Some((DataType::Bigint, false, true))
        );
        assert_eq!(back.table("items__tags").unwrap().parent.as_deref(), Some("items"));
        assert!(back.table("_dlt_loads").is_none());
    }
}
