//! The state of a pipeline: what a run must remember for the next one — today the incremental
//! position of each resource.
//!
//! It is stored in the destination, in dlt's `_dlt_pipeline_state` table, written in the same
//! transaction as the data it describes, so data and state cannot disagree. The JSON layout is
//! dlt's (`sources.<source>.resources.<resource>.incremental.<cursor_path>`), compressed as dlt
//! compresses it (zlib, base64), so either tool can read it.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// dlt's state engine version.
pub const ENGINE_VERSION: u64 = 4;

/// The name of the source in the state (dlt's REST API source is named `rest_api`).
pub const SOURCE: &str = "rest_api";

/// The incremental position of one cursor of one resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IncrementalState {
    pub initial_value: Option<Value>,
    pub last_value: Option<Value>,
    /// Hashes of the records whose cursor equals `last_value`, so that a run starting at that
    /// value (inclusive) does not load them twice.
    #[serde(default)]
    pub unique_hashes: Vec<String>,
}

/// How far a run with `end_value` got before its last checkpoint (`run --checkpoint-every`), by
/// cursor path: a run of the same range resumes there. dlt stores no position for a range with
/// an end, so this is resttap's own key (`resttap_backfill`); dlt keeps it as it keeps any key
/// it does not know. A run that reaches the end removes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    pub initial_value: Option<Value>,
    pub end_value: Value,
    /// The greatest cursor value committed so far.
    pub last_value: Value,
    /// Hashes of the committed records whose cursor equals `last_value`.
    #[serde(default)]
    pub unique_hashes: Vec<String>,
}

/// The state of one resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub incremental: BTreeMap<String, IncrementalState>,
    #[serde(default, rename = "resttap_backfill", skip_serializing_if = "BTreeMap::is_empty")]
    pub backfill: BTreeMap<String, Backfill>,
    /// Keys resttap does not use (a dlt resource's own state), kept as they were.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// The state of a pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineState {
    pub pipeline_name: String,
    /// The dataset the state belongs to (dlt's `dataset_name`, which dlt needs to attach).
    pub dataset_name: String,
    /// Increases by one with every change.
    pub version: u64,
    pub resources: BTreeMap<String, ResourceState>,
}

/// Why stored state cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("the stored pipeline state cannot be read: {0}")]
pub struct StateError(String);

impl PipelineState {
    /// An empty state for `pipeline_name`.
    pub fn new(pipeline_name: &str) -> Self {
        PipelineState {
            pipeline_name: pipeline_name.into(),
            dataset_name: String::new(),
            version: 0,
            resources: BTreeMap::new(),
        }
    }

    /// The state as dlt lays it out.
    pub fn to_json(&self) -> Value {
        let resources: serde_json::Map<String, Value> =
            self.resources.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).expect("serializable"))).collect();
        let mut v = serde_json::json!({
            "_state_version": self.version,
            "_state_engine_version": ENGINE_VERSION,
            "pipeline_name": self.pipeline_name,
            "dataset_name": self.dataset_name,
            "default_schema_name": SOURCE,
            "schema_names": [SOURCE],
            "sources": { SOURCE: { "resources": resources } },
        });
        let hash = version_hash(&v);
        v.as_object_mut().expect("object").insert("_version_hash".into(), hash.into());
        v
    }

    /// Reads the layout written by [`PipelineState::to_json`] (or by dlt).
    pub fn from_json(v: &Value) -> Result<Self, StateError> {
        let pipeline_name = v.get("pipeline_name").and_then(Value::as_str).unwrap_or_default().to_string();
        let dataset_name = v.get("dataset_name").and_then(Value::as_str).unwrap_or_default().to_string();
        let version = v.get("_state_version").and_then(Value::as_u64).unwrap_or(0);
        let mut resources = BTreeMap::new();
        if let Some(Value::Object(m)) = v.pointer(&format!("/sources/{SOURCE}/resources")) {
            for (k, r) in m {
                let rs: ResourceState =
                    serde_json::from_value(r.clone()).map_err(|e| StateError(format!("resource `{k}`: {e}")))?;
                resources.insert(k.clone(), rs);
            }
        }
        Ok(PipelineState { pipeline_name, dataset_name, version, resources })
    }

    /// dlt's `compress_state`: JSON, zlib, base64.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(&self.to_json()).expect("serializable");
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&json).expect("in memory");
        base64::engine::general_purpose::STANDARD.encode(z.finish().expect("in memory"))
    }

    /// dlt's `decompress_state`: base64 and zlib, or plain JSON.
    pub fn decode(s: &str) -> Result<Self, StateError> {
        let json: Value = match base64::engine::general_purpose::STANDARD.decode(s.trim()) {
            Ok(bytes) => {
                let mut out = Vec::new();
                flate2::read::ZlibDecoder::new(&bytes[..])
                    .read_to_end(&mut out)
                    .map_err(|e| StateError(e.to_string()))?;
                serde_json::from_slice(&out).map_err(|e| StateError(e.to_string()))?
            }
            Err(_) => serde_json::from_str(s).map_err(|e| StateError(e.to_string()))?,
        };
        Self::from_json(&json)
    }

    /// A hash of the content, for `_dlt_pipeline_state.version_hash`: changes when the state does.
    pub fn content_hash(&self) -> String {
        // dlt's `_version_hash`, which `to_json` computes
        self.to_json()["_version_hash"].as_str().expect("to_json sets it").to_string()
    }
}

/// dlt's state `_version_hash` (`generate_state_version_hash`): SHA3-256 of the state's sorted
/// compact JSON (orjson's) without `_local`, `_state_version`, `_state_engine_version` and
/// `_version_hash`, in padded base64.
pub fn version_hash(state: &Value) -> String {
    use tiny_keccak::Hasher;
    let mut buf = Vec::new();
    let skip = |k: &str| matches!(k, "_local" | "_state_version" | "_state_engine_version" | "_version_hash");
    resttap_json::canonical::write_sorted_without(state, &skip, &mut buf);
    let mut h = tiny_keccak::Sha3::v256();
    h.update(&buf);
    let mut out = [0u8; 32];
    h.finalize(&mut out);
    base64::engine::general_purpose::STANDARD.encode(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_dlt_encoding() {
        let mut s = PipelineState::new("p");
        s.version = 3;
        s.resources.entry("forums".into()).or_default().incremental.insert(
            "updated_at".into(),
            IncrementalState {
                initial_value: Some("2024-01-01T00:00:00Z".into()),
                last_value: Some("2024-02-01T00:00:00Z".into()),
                unique_hashes: vec!["h1".into()],
            },
        );
        let enc = s.encode();
        assert!(enc.starts_with("eN"), "zlib stream in base64: {enc}");
        assert_eq!(PipelineState::decode(&enc).unwrap(), s);
        assert_eq!(PipelineState::decode(&s.to_json().to_string()).unwrap(), s);
        assert_eq!(
            s.to_json().pointer("/sources/rest_api/resources/forums/incremental/updated_at/last_value").unwrap(),
            "2024-02-01T00:00:00Z"
        );
        let before = s.content_hash();
        s.version = 9;
        assert_eq!(s.content_hash(), before, "the version is not content");
        s.resources.clear();
        assert_ne!(s.content_hash(), before);
    }

    #[test]
    fn a_backfill_position_and_keys_of_others_survive_a_round_trip() {
        let json = serde_json::json!({
            "pipeline_name": "p", "_state_version": 2,
            "sources": {"rest_api": {"resources": {"forums": {
                "incremental": {"updated_at": {"initial_value": "2024-01-01", "last_value": null, "unique_hashes": []}},
                "resttap_backfill": {"updated_at": {"initial_value": "2024-01-01", "end_value": "2025-01-01",
                    "last_value": "2024-06-01", "unique_hashes": ["h"]}},
                "custom": {"seen": [1, 2]}
            }}}}
        });
        let s = PipelineState::from_json(&json).unwrap();
        let forums = &s.resources["forums"];
        assert_eq!(forums.backfill["updated_at"].last_value, "2024-06-01");
        assert_eq!(forums.other["custom"], serde_json::json!({"seen": [1, 2]}));
        let back = s.to_json();
        assert_eq!(back.pointer("/sources/rest_api/resources/forums/custom/seen/1").unwrap(), 2);
        assert_eq!(PipelineState::from_json(&back).unwrap(), s);
    }

    #[test]
    fn version_hash_is_dlts() {
        // what dlt 1.31 wrote for a first incremental run, with its `_version_hash`
        let state: Value = serde_json::from_str(include_str!("dlt_state_run1.json")).unwrap();
        assert_eq!(version_hash(&state), state["_version_hash"].as_str().unwrap());
        let ours = PipelineState::from_json(&state).unwrap();
        assert_eq!((ours.dataset_name.as_str(), ours.version), ("t_dataset", 1));
        let json = ours.to_json();
        for key in ["_version_hash", "dataset_name", "schema_names", "default_schema_name", "pipeline_name"] {
            assert!(json.get(key).is_some(), "dlt needs `{key}` to attach");
        }
        assert_eq!(json["_version_hash"], ours.content_hash().as_str());
    }
}
