//! `processing_steps`: dlt takes Python callables; resttap takes declarative steps, applied to
//! each record in order, before normalization (the applying is in `resttap-extract`).
//!
//! ```yaml
//! processing_steps:
//!   - filter: "status != 'spam' and score >= 0.5"   # keep records where the expression holds
//!   - map:
//!       rename: { userId: user_id }                   # old name -> new name (top-level keys)
//!       set: { source: "api", "meta.version": 2 }      # add or replace; dotted paths create objects
//!       remove: [internal_notes, "meta.debug"]         # drop keys; dotted paths reach into objects
//! ```
//!
//! A `filter` uses the expression language of `stop_condition`, evaluated against the record.
//! Within one `map`, `rename` runs first, then `set`, then `remove`.

use resttap_expr::Expr;
use serde_json::Value;

/// A compiled step.
#[derive(Debug, Clone)]
pub enum Step {
    Filter(Expr),
    Map { rename: Vec<(String, String)>, set: Vec<(Vec<String>, Value)>, remove: Vec<Vec<String>> },
}

/// Why a step is invalid, with the key (relative to the step list) it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    pub key: String,
    pub message: String,
}

fn path(s: &str) -> Vec<String> {
    s.split('.').map(String::from).collect()
}

/// Compiles `processing_steps` as written in the config.
pub fn compile(steps: &[Value]) -> Result<Vec<Step>, StepError> {
    let mut out = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let err = |key: String, message: String| StepError { key: format!("[{i}]{key}"), message };
        let Some(obj) = step.as_object().filter(|o| o.len() == 1) else {
            return Err(err(String::new(), "a step is a mapping with one key: `filter` or `map`".into()));
        };
        let (kind, body) = obj.iter().next().expect("one key");
        match kind.as_str() {
            "filter" => {
                let Some(src) = body.as_str() else {
                    return Err(err(".filter".into(), "must be an expression string".into()));
                };
                out.push(Step::Filter(Expr::parse(src).map_err(|e| err(".filter".into(), e.to_string()))?));
            }
            "map" => {
                let Some(m) = body.as_object() else {
                    return Err(err(".map".into(), "must be a mapping with `rename`, `set` and/or `remove`".into()));
                };
                let (mut rename, mut set, mut remove) = (Vec::new(), Vec::new(), Vec::new());
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("rename", Value::Object(r)) => {
                            for (from, to) in r {
                                let Some(to) = to.as_str() else {
                                    return Err(err(
                                        format!(".map.rename.{from}"),
                                        "the new name must be a string".into(),
                                    ));
                                };
                                rename.push((from.clone(), to.to_string()));
                            }
                        }
                        ("set", Value::Object(s)) => set.extend(s.iter().map(|(k, v)| (path(k), v.clone()))),
                        ("remove", Value::Array(r)) => {
                            for (j, f) in r.iter().enumerate() {
                                let Some(f) = f.as_str() else {
                                    return Err(err(format!(".map.remove[{j}]"), "must be a field name".into()));
                                };
                                remove.push(path(f));
                            }
                        }
                        ("rename" | "set" | "remove", _) => {
                            return Err(err(
                                format!(".map.{k}"),
                                "has the wrong type (rename and set take a mapping, remove a list)".into(),
                            ));
                        }
                        (other, _) => {
                            let hint = crate::suggest(other, ["rename", "set", "remove"])
                                .map(|s| format!("; did you mean `{s}`?"))
                                .unwrap_or_default();
                            return Err(err(
                                format!(".map.{other}"),
                                format!("unknown key (valid: rename, set, remove){hint}"),
                            ));
                        }
                    }
                }
                out.push(Step::Map { rename, set, remove });
            }
            other => {
                let hint = crate::suggest(other, ["filter", "map"])
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(err(format!(".{other}"), format!("unknown step (valid: filter, map){hint}")));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn invalid_steps_name_the_key() {
        let e = compile(&[json!({"filter": "a =="})]).unwrap_err();
        assert_eq!(e.key, "[0].filter");
        let e = compile(&[json!({"filter": "a"}), json!({"mapp": {}})]).unwrap_err();
        assert_eq!(e.key, "[1].mapp");
        assert!(e.message.contains("did you mean `map`"), "{}", e.message);
        let e = compile(&[json!({"map": {"sett": {}}})]).unwrap_err();
        assert_eq!(e.key, "[0].map.sett");
        assert!(compile(&[json!({"map": {"remove": "x"}})]).is_err());
    }
}
