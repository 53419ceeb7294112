//! Keeps docs/config-keys.md true: every key marked supported (or a resttap extension) is
//! accepted by the validator when set to the table's example value; every key marked "not yet"
//! is rejected with a message naming it.

use std::path::Path;

use resttap_config::{ConfigError, Format, Overrides, SecretSources, load_str};
use serde_json::{Map, Value, json};

fn required(kind: &str) -> Map<String, Value> {
    let v = match kind {
        "offset" => json!({"limit": 10}),
        "bearer" => json!({"token": "t"}),
        "api_key" => json!({"api_key": "k"}),
        "http_basic" => json!({"username": "u", "password": "p"}),
        "oauth2_client_credentials" => {
            json!({"access_token_url": "http://x/t", "client_id": "a", "client_secret": "b"})
        }
        _ => json!({}),
    };
    v.as_object().unwrap().clone()
}

/// Sets `key` (the table's syntax) to `value` in `root`.
fn set(root: &mut Value, key: &str, value: Value) {
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = root;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let (name, kind) = match part.split_once('[') {
            Some((n, k)) => (n, Some(k.trim_end_matches(']'))),
            None => (*part, None),
        };
        if name == "resources[]" || (name == "resources" && kind == Some("")) {
            cur = &mut cur["resources"][0];
            continue;
        }
        let obj = cur.as_object_mut().unwrap();
        if let Some(kind) = kind {
            let mut m = required(kind);
            m.insert("type".into(), Value::String(kind.into()));
            let entry = obj.entry(name).or_insert_with(|| Value::Object(Map::new()));
            *entry = Value::Object(m);
            cur = entry;
            continue;
        }
        if last {
            obj.insert(name.into(), value);
            return;
        }
        let entry = obj.entry(name).or_insert_with(|| match name {
            "incremental" => json!({"cursor_path": "updated_at"}),
            _ => Value::Object(Map::new()),
        });
        cur = entry;
    }
}

fn load(v: &Value) -> Result<(), ConfigError> {
    let mut secrets =
        SecretSources { ignore_env: true, secrets_toml: Some("/nonexistent".into()), ..Default::default() };
    for name in ["api_key", "password", "other_token", "client_id"] {
        secrets.overrides.insert(name.into(), resttap_config::Secret::new("x"));
    }
    load_str(&v.to_string(), Format::Json, Path::new("keys.json"), &Overrides::default(), &secrets).map(|_| ())
}

#[test]
fn every_documented_key_behaves_as_documented() {
    let doc = std::fs::read_to_string(manifest_dir().join("../../docs/config-keys.md")).unwrap();
    let mut checked = 0;
    for line in doc.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| key") && !l.starts_with("|---")) {
        let cells: Vec<&str> = line.split(" | ").map(|c| c.trim_matches(|c| c == '|' || c == ' ')).collect();
        let (key, status, example) = (cells[0], cells[1], cells[2].trim_matches('`'));
        if status == "not applicable" {
            continue;
        }
        // `lists` is a parent the examples can refer to (`{resources.lists.id}`)
        let mut cfg = json!({"client": {"base_url": "http://localhost:1"}, "resources": [
            {"name": "r", "endpoint": {"path": "/r"}},
            {"name": "lists", "endpoint": {"path": "/lists"}}
        ]});
        if key == "resources[].include_from_parent" {
            cfg["resources"][0]["endpoint"]["path"] = json!("/lists/{resources.lists.id}/r");
        }
        if key == "resources[].endpoint.incremental.window" {
            // windows need a start and a way to send each window's bounds
            cfg["resources"][0]["endpoint"]["incremental"] = json!({"cursor_path": "updated_at",
                "initial_value": "2024-01-01T00:00:00Z", "start_param": "since", "end_param": "until"});
        }
        if key.ends_with(']') {
            set(&mut cfg, &format!("{key}.__dummy"), Value::Null);
            strip_dummy(&mut cfg);
        } else {
            assert!(!example.is_empty(), "{key}: every row but a bare paginator type needs an example");
            let value: Value = serde_norway::from_str(example).unwrap_or_else(|e| panic!("{key}: {e}"));
            set(&mut cfg, key, value);
        }
        let result = load(&cfg);
        match status {
            s if s.starts_with("supported") || s == "resttap extension" => {
                assert!(result.is_ok(), "{key} is documented as {status} but rejected: {}", result.unwrap_err());
                checked += 1;
            }
            "not yet" => {
                let err =
                    result.expect_err(&format!("{key} is documented as not yet supported but accepted")).to_string();
                assert!(err.contains("not supported"), "{key}: {err}");
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked > 70, "only {checked} rows checked");
}

fn strip_dummy(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("__dummy");
            m.values_mut().for_each(strip_dummy);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_dummy),
        _ => {}
    }
}

/// The crate's directory as `cargo test` reports it when the test runs: the build directory is
/// shared between clones, so the compile-time value can name another clone.
fn manifest_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()))
}
