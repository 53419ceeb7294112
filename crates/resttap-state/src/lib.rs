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

/// The state of one resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub incremental: BTreeMap<String, IncrementalState>,
}

/// The state of a pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineState {
    pub pipeline_name: String,
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
        PipelineState { pipeline_name: pipeline_name.into(), version: 0, resources: BTreeMap::new() }
    }

    /// The state as dlt lays it out.
    pub fn to_json(&self) -> Value {
        let resources: serde_json::Map<String, Value> =
            self.resources.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).expect("serializable"))).collect();
        serde_json::json!({
            "_state_version": self.version,
            "_state_engine_version": ENGINE_VERSION,
            "pipeline_name": self.pipeline_name,
            "sources": { SOURCE: { "resources": resources } },
        })
    }

    /// Reads the layout written by [`PipelineState::to_json`] (or by dlt).
    pub fn from_json(v: &Value) -> Result<Self, StateError> {
        let pipeline_name = v.get("pipeline_name").and_then(Value::as_str).unwrap_or_default().to_string();
        let version = v.get("_state_version").and_then(Value::as_u64).unwrap_or(0);
        let mut resources = BTreeMap::new();
        if let Some(Value::Object(m)) = v.pointer(&format!("/sources/{SOURCE}/resources")) {
            for (k, r) in m {
                let rs: ResourceState =
                    serde_json::from_value(r.clone()).map_err(|e| StateError(format!("resource `{k}`: {e}")))?;
                resources.insert(k.clone(), rs);
            }
        }
        Ok(PipelineState { pipeline_name, version, resources })
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
        let mut v = self.to_json();
        v.as_object_mut().expect("object").remove("_state_version");
        let bytes = serde_json::to_vec(&v).expect("serializable");
        // FNV-1a 64: enough to tell states apart, no extra dependency
        let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
        format!("{h:016x}")
    }
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
}
