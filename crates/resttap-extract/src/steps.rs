//! Applying `processing_steps` (compiled by `resttap_config::steps`) to records.

use resttap_config::steps::Step;
use serde_json::{Map, Value};

fn set_path(obj: &mut Map<String, Value>, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut cur = obj;
    for p in parents {
        let entry = cur.entry(p.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        cur = entry.as_object_mut().expect("object");
    }
    cur.insert(last.clone(), value);
}

fn remove_path(obj: &mut Map<String, Value>, path: &[String]) {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut cur = obj;
    for p in parents {
        match cur.get_mut(p).and_then(Value::as_object_mut) {
            Some(next) => cur = next,
            None => return,
        }
    }
    cur.shift_remove(last);
}

/// Applies the steps to one record; `None` when a filter drops it.
pub fn apply(steps: &[Step], mut record: Value) -> Option<Value> {
    for step in steps {
        match step {
            Step::Filter(e) => {
                if !e.eval_bool(&record) {
                    return None;
                }
            }
            Step::Map { rename, set, remove } => {
                let Some(obj) = record.as_object_mut() else { continue };
                for (from, to) in rename {
                    if let Some(v) = obj.shift_remove(from) {
                        obj.insert(to.clone(), v);
                    }
                }
                for (p, v) in set {
                    set_path(obj, p, v.clone());
                }
                for p in remove {
                    remove_path(obj, p);
                }
            }
        }
    }
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use resttap_config::steps::compile;
    use serde_json::json;

    #[test]
    fn filter_and_map() {
        let steps = compile(&[
            json!({"filter": "status != 'spam' and score >= 0.5"}),
            json!({"map": {"rename": {"userId": "user_id"}, "set": {"source": "api", "meta.v": 2}, "remove": ["secret", "meta.debug"]}}),
        ])
        .unwrap();
        assert_eq!(apply(&steps, json!({"status": "spam", "score": 1})), None);
        assert_eq!(apply(&steps, json!({"status": "ok", "score": 0.1})), None);
        let out = apply(
            &steps,
            json!({"status": "ok", "score": 0.9, "userId": 7, "secret": "x", "meta": {"debug": true, "a": 1}}),
        )
        .unwrap();
        assert_eq!(out, json!({"status": "ok", "score": 0.9, "user_id": 7, "meta": {"a": 1, "v": 2}, "source": "api"}));
    }
}
