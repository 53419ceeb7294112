//! dlt's system files on a filesystem destination, as dlt 1.31 writes and reads them: `init`,
//! `_dlt_loads/<schema>__<load_id>.jsonl`, `_dlt_version/<schema>__<time>__<hex hash>.jsonl`,
//! `_dlt_pipeline_state/<pipeline>__<load_id>__<hex schema hash>.jsonl`, each one compact JSON
//! object without a trailing newline.

use resttap_load::dlt::{LOADS, LoadRow, PIPELINE_STATE, StateRow, VERSION, VersionRow};
use serde_json::{Value, json};

/// The content of `<dataset>/init`, dlt's storage version marker.
pub const INIT: &str = r#"{"initial_version":2,"current_version":2}"#;

/// dlt's timestamps in system files: `2026-12-02T01:09:24.636759+00:00`.
pub fn now_iso() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// dlt's seconds with a fraction, as `precise_time()` prints them.
pub fn now_seconds() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:07}", t.as_secs(), t.subsec_nanos() / 100)
}

/// The hex of a base64 hash, as dlt names files by it.
pub fn hex_of(b64: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
        .unwrap_or_else(|_| b64.replace(['/', '+', '='], "_"))
}

/// `_dlt_loads/<schema>__<load_id>.jsonl` and its content.
pub fn load_file(row: &LoadRow) -> (String, String) {
    let v = json!({
        "load_id": row.load_id,
        "schema_name": row.schema_name,
        "status": row.status,
        "inserted_at": now_iso(),
        "schema_version_hash": row.schema_version_hash,
    });
    (format!("{LOADS}/{}__{}.jsonl", row.schema_name, row.load_id), v.to_string())
}

/// `_dlt_version/<schema>__<time>__<hex>.jsonl` and its content, for schema version `version`.
pub fn version_file(row: &VersionRow, version: i64) -> (String, String) {
    let v = json!({
        "version_hash": row.version_hash,
        "schema_name": row.schema_name,
        "version": version,
        "engine_version": row.engine_version,
        "inserted_at": now_iso(),
        "schema": row.schema,
    });
    (format!("{VERSION}/{}__{}__{}.jsonl", row.schema_name, now_seconds(), hex_of(&row.version_hash)), v.to_string())
}

/// `_dlt_pipeline_state/<pipeline>__<load_id>__<hex schema hash>.jsonl` and its content.
pub fn state_file(row: &StateRow, schema_hash: &str) -> (String, String) {
    let v = json!({
        "version": row.version,
        "engine_version": row.engine_version,
        "pipeline_name": row.pipeline_name,
        "state": row.state,
        "created_at": now_iso(),
        "version_hash": row.version_hash,
        "_dlt_load_id": row.load_id,
    });
    (format!("{PIPELINE_STATE}/{}__{}__{}.jsonl", row.pipeline_name, row.load_id, hex_of(schema_hash)), v.to_string())
}

/// The load id in a `_dlt_pipeline_state` file name of `pipeline`.
pub fn load_id_of_state_file<'a>(name: &'a str, pipeline: &str) -> Option<&'a str> {
    let rest = name.strip_suffix(".jsonl")?.strip_prefix(pipeline)?.strip_prefix("__")?;
    rest.split_once("__").map(|(id, _)| id)
}

/// `(time, hex)` of a `_dlt_version` file name.
pub fn version_file_parts(name: &str) -> Option<(&str, &str)> {
    let stem = name.strip_suffix(".jsonl")?;
    let (rest, hex) = stem.rsplit_once("__")?;
    let (_, time) = rest.rsplit_once("__")?;
    Some((time, hex))
}

/// A load id as a number, to order them (dlt compares them as strings; numbers agree with
/// strings as long as the seconds have the same number of digits, and beyond).
pub fn load_order(id: &str) -> f64 {
    id.parse().unwrap_or(f64::NEG_INFINITY)
}

/// The `state` field of a state file's record.
pub fn state_of(record: &str) -> Option<String> {
    let v: Value = serde_json::from_str(record).ok()?;
    v.get("state")?.as_str().map(String::from)
}

/// The `schema` field of a version file's record.
pub fn schema_of(record: &str) -> Option<String> {
    let v: Value = serde_json::from_str(record).ok()?;
    v.get("schema")?.as_str().map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_dlts() {
        let row = LoadRow {
            load_id: "1796173764.2799957".into(),
            schema_name: "rest_api".into(),
            status: 0,
            schema_version_hash: "2bBaHXWfvMFcQd8i6G2jIFyWqcjqmm4M5icot9zxQHM=".into(),
        };
        let (name, body) = load_file(&row);
        assert_eq!(name, "_dlt_loads/rest_api__1796173764.2799957.jsonl");
        assert!(
            body.starts_with(r#"{"load_id":"1796173764.2799957","schema_name":"rest_api","status":0,"inserted_at":""#),
            "{body}"
        );
        assert!(!body.ends_with('\n'));
        assert_eq!(
            hex_of("2bBaHXWfvMFcQd8i6G2jIFyWqcjqmm4M5icot9zxQHM="),
            "d9b05a1d759fbcc15c41df22e86da3205c96a9c8ea9a6e0ce62728b7dcf14073"
        );
        assert_eq!(
            load_id_of_state_file("bench_dlt__1796173764.2799957__d9b0.jsonl", "bench_dlt"),
            Some("1796173764.2799957")
        );
        assert_eq!(load_id_of_state_file("bench_dlt_x__1.5__d9.jsonl", "bench_dlt"), None);
        assert_eq!(
            version_file_parts("rest_api__1796173764.6055179__d9b0.jsonl"),
            Some(("1796173764.6055179", "d9b0"))
        );
        assert!(load_order("1796173814.01711") > load_order("1796173797.0477128"));
    }
}
