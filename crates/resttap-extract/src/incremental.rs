//! Incremental loading (dlt's `endpoint.incremental`): which value a run starts from, which
//! records it keeps, and the position it leaves for the next run.
//!
//! - The first run starts at `initial_value`; later runs at the stored `last_value` (minus
//!   `lag`). The start value fills `{incremental.start_value}` placeholders and `start_param`.
//! - A record is kept when its cursor is within `[start, end)` (bounds per `range_start` /
//!   `range_end`). Records *at* the start value that the previous run already loaded are
//!   recognized by hash (of the primary key, or of the whole record) and skipped.
//! - Date-time cursors compare as instants (any ISO 8601 offset), numbers as numbers.
//! - With `end_value` (a backfill window) the stored position does not move, as in dlt.

use std::cmp::Ordering;
use std::collections::HashSet;

use resttap_config::{IncrementalConfig, LastValueFunc, OnCursorValueMissing, RangeBound, to_jsonpath};
use resttap_json::Node;
use resttap_schema::timestamp::{format_timestamp, parse_timestamp};
use resttap_state::{Backfill, IncrementalState, ResourceState};
use serde_json::Value;
use serde_json_path::JsonPath;

/// A record without a cursor value, with `on_cursor_value_missing: raise`.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "a record has no value at cursor_path `{cursor_path}` (set `on_cursor_value_missing: include` or `exclude` to accept such records): {excerpt}"
)]
pub struct MissingCursor {
    pub cursor_path: String,
    pub excerpt: String,
}

/// Compares two cursor values: as instants when both are ISO date-times, as numbers when both
/// are numbers, as text otherwise.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => x.as_f64().unwrap_or(0.0).partial_cmp(&y.as_f64().unwrap_or(0.0)).unwrap_or(Ordering::Equal),
        },
        (Value::String(x), Value::String(y)) => match (parse_timestamp(x), parse_timestamp(y)) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => x.cmp(y),
        },
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Python's `json.dumps(v, sort_keys=True)` (default separators, `ensure_ascii`), so that
/// record hashes match the ones dlt stores.
pub fn py_json(v: &Value) -> String {
    fn s(out: &mut String, text: &str) {
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    fn w(out: &mut String, v: &Value) {
        match v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => out.push_str(&i.to_string()),
                (_, Some(u), _) => out.push_str(&u.to_string()),
                (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e16 => out.push_str(&format!("{f:.1}")),
                (_, _, Some(f)) => out.push_str(&f.to_string()),
                _ => out.push_str(&n.to_string()),
            },
            Value::String(t) => s(out, t),
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    w(out, x);
                }
                out.push(']');
            }
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    s(out, k);
                    out.push_str(": ");
                    w(out, &m[*k]);
                }
                out.push('}');
            }
        }
    }
    let mut out = String::new();
    w(&mut out, v);
    out
}

/// dlt's `digest128(text)` (its default length, 15 bytes): how dlt before 1.29 (and resttap
/// before it followed) hashed boundary records, 20 characters; still recognized.
fn digest(text: &str) -> String {
    resttap_schema::digest::digest128(&[text.as_bytes()], 15)
}

/// dlt 1.31's `digest_dedup_value`: shake-128 of the key as orjson writes it (sorted keys), 9
/// bytes, base64 without padding: 12 characters.
fn dedup_hash(key: &Value) -> String {
    resttap_schema::digest::digest128(&[&resttap_json::canonical::to_sorted_vec(key)], 9)
}

/// The incremental filter of one resource for one run.
#[derive(Debug)]
pub struct Incremental {
    cfg: IncrementalConfig,
    cursor: JsonPath,
    /// The cursor path as plain keys (`updated_at`, `meta.changed`), when it is one.
    cursor_keys: Option<Vec<String>>,
    primary_key: Vec<String>,
    start: Option<Value>,
    prior: IncrementalState,
    seen_at_start: HashSet<String>,
    /// Some of `seen_at_start` are in the legacy form (20 characters).
    legacy_hashes: bool,
    new_last: Option<Value>,
    new_hashes: Vec<String>,
}

fn apply_lag(v: &Value, lag: f64, func: LastValueFunc) -> Value {
    let sign = if func == LastValueFunc::Max { -1.0 } else { 1.0 };
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) if lag.fract() == 0.0 => Value::from(i + (sign * lag) as i64),
            _ => serde_json::Number::from_f64(n.as_f64().unwrap_or(0.0) + sign * lag).map_or(v.clone(), Value::Number),
        },
        Value::String(s) => match parse_timestamp(s) {
            Some(micros) => Value::String(format_timestamp(micros + (sign * lag * 1e6) as i64)),
            None => v.clone(),
        },
        other => other.clone(),
    }
}

impl Incremental {
    /// The filter for a run, given what the last successful run stored.
    ///
    /// A range with `end_value` neither reads nor writes the stored position, as in dlt (whose
    /// state for it is a stand-in starting at `initial_value`); see [`Incremental::resuming`].
    pub fn new(cfg: &IncrementalConfig, prior: Option<&IncrementalState>, primary_key: &[String]) -> Self {
        let prior = prior.filter(|_| cfg.end_value.is_none()).cloned().unwrap_or_default();
        let last = prior.last_value.clone();
        let start = match (&last, cfg.lag) {
            (Some(l), Some(lag)) if lag > 0.0 => Some(apply_lag(l, lag, cfg.last_value_func)),
            (Some(l), _) => Some(l.clone()),
            (None, _) => cfg.initial_value.clone(),
        };
        // boundary hashes only mean something when the run starts exactly at the stored value
        let seen_at_start = if start == last { prior.unique_hashes.iter().cloned().collect() } else { HashSet::new() };
        let cursor_keys = crate::plain_keys(&cfg.cursor_path).filter(|k| !k.is_empty());
        Incremental {
            cursor: JsonPath::parse(&to_jsonpath(&cfg.cursor_path))
                .expect("cursor_path validated by the config loader"),
            cursor_keys,
            cfg: cfg.clone(),
            primary_key: primary_key.to_vec(),
            start,
            prior,
            legacy_hashes: seen_at_start.iter().any(|h| h.len() == 20),
            seen_at_start,
            new_last: None,
            new_hashes: Vec::new(),
        }
    }

    /// Resumes a range with `end_value` after the last checkpoint a run of it committed
    /// (`run --checkpoint-every`), when `backfill` was made for the same `initial_value` and
    /// `end_value`; otherwise the filter is left as it is.
    pub fn resuming(mut self, backfill: Option<&Backfill>) -> Self {
        let same_range = |b: &&Backfill| {
            self.cfg.end_value.as_ref() == Some(&b.end_value) && self.cfg.initial_value == b.initial_value
        };
        if let Some(b) = backfill.filter(same_range) {
            self.prior = IncrementalState {
                initial_value: b.initial_value.clone(),
                last_value: Some(b.last_value.clone()),
                unique_hashes: b.unique_hashes.clone(),
            };
            self.start = Some(b.last_value.clone());
            self.seen_at_start = b.unique_hashes.iter().cloned().collect();
            self.legacy_hashes = false;
        }
        self
    }

    /// The value for `{incremental.<name>}`.
    pub fn placeholder(&self, name: &str) -> Option<Value> {
        match name {
            "start_value" => self.start.clone(),
            "last_value" => self.prior.last_value.clone().or_else(|| self.cfg.initial_value.clone()),
            "end_value" => self.cfg.end_value.clone(),
            "initial_value" => self.cfg.initial_value.clone(),
            _ => None,
        }
    }

    /// Query parameters the config asks for (`start_param`, `end_param`).
    pub fn params(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        if let (Some(p), Some(v)) = (&self.cfg.start_param, &self.start) {
            out.push((p.clone(), v.clone()));
        }
        if let (Some(p), Some(v)) = (&self.cfg.end_param, &self.cfg.end_value) {
            out.push((p.clone(), v.clone()));
        }
        out
    }

    /// The windows (`incremental.window`) of this run's range, in order: from the start value
    /// to `end_value`, or to `now` (Unix microseconds) for date-times, each `size` long (the
    /// last one shorter). The first starts at the start value as it is written and the last
    /// ends at `end_value` as written; the boundaries between are in UTC. A range that is
    /// empty is one window. `None` without a window or a start.
    pub fn windows(&self, now_micros: i64) -> Result<Option<Vec<(Value, Value)>>, String> {
        let (Some(size), Some(start)) = (self.cfg.window, &self.start) else { return Ok(None) };
        const MOST: u64 = 100_000;
        let too_many = |n: f64| {
            format!(
                "`incremental.window` splits the range into {n:.0} windows, more than {MOST}: choose a larger window"
            )
        };
        let mut out = Vec::new();
        match start {
            Value::String(text) => {
                let s = parse_timestamp(text).ok_or_else(|| format!("the start value `{text}` is not a date-time"))?;
                let (e, end_text) = match &self.cfg.end_value {
                    Some(Value::String(t)) => {
                        (parse_timestamp(t).ok_or_else(|| format!("`end_value` `{t}` is not a date-time"))?, t.clone())
                    }
                    _ => (now_micros, format_timestamp(now_micros)),
                };
                let step = (size.as_micros() as i64).max(1);
                let n = ((e - s) as f64 / step as f64).ceil().max(1.0);
                if n > MOST as f64 {
                    return Err(too_many(n));
                }
                let mut at = s;
                let mut from = Value::String(text.clone());
                while at + step < e {
                    at += step;
                    let boundary = Value::String(format_timestamp(at));
                    out.push((from, boundary.clone()));
                    from = boundary;
                }
                out.push((from, Value::String(end_text)));
            }
            Value::Number(n) => {
                let end = self.cfg.end_value.clone().ok_or("a numeric cursor's windows need `end_value`")?;
                let (s, e) = (n.as_f64().unwrap_or(0.0), end.as_f64().unwrap_or(0.0));
                let step = size.as_secs_f64();
                let count = ((e - s) / step).ceil().max(1.0);
                if count > MOST as f64 {
                    return Err(too_many(count));
                }
                let integral = n.is_i64() && end.is_i64() && step.fract() == 0.0;
                let number = |x: f64| {
                    if integral {
                        Value::from(x as i64)
                    } else {
                        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
                    }
                };
                let mut at = s;
                let mut from = start.clone();
                while at + step < e {
                    at += step;
                    out.push((from, number(at)));
                    from = number(at);
                }
                out.push((from, end));
            }
            other => return Err(format!("the start value `{other}` is neither a date-time nor a number")),
        }
        Ok(Some(out))
    }

    /// Whether `record`'s cursor lies in the window `[start, end)` (`end: None`: the last window,
    /// open above), so that an API that includes both ends of a window does not send a record
    /// twice. Records without a cursor value are for [`Incremental::keep`] to judge.
    pub fn in_window<N: Node>(&self, record: &N, start: &Value, end: Option<&Value>) -> bool {
        let Some(v) = self.cursor_value(record) else { return true };
        compare(&v, start) != Ordering::Less && end.is_none_or(|e| compare(&v, e) == Ordering::Less)
    }

    fn hash<N: Node>(&self, record: &N) -> String {
        dedup_hash(&self.dedup_key(record))
    }

    /// Whether the record is one the last run loaded at the start value (its hash in either
    /// dlt's current form or the legacy one).
    fn seen<N: Node>(&self, record: &N) -> bool {
        let key = self.dedup_key(record);
        self.seen_at_start.contains(&dedup_hash(&key))
            || (self.legacy_hashes && self.seen_at_start.contains(&digest(&py_json(&key))))
    }

    /// What dlt hashes of a record: its primary key's value (a list of them for several), or
    /// the whole record without a key.
    fn dedup_key<N: Node>(&self, record: &N) -> Value {
        match self.primary_key.as_slice() {
            [] => record.to_value(),
            // a record without its key is hashed whole, as before
            [one] => record.get(one).map_or_else(|| record.to_value(), Node::to_value),
            many => Value::Array(many.iter().map(|k| record.get(k).map_or(Value::Null, Node::to_value)).collect()),
        }
    }

    /// The record's cursor value, if it has one that is not null.
    fn cursor_value<N: Node>(&self, record: &N) -> Option<Value> {
        let found = match &self.cursor_keys {
            Some(keys) => keys.iter().try_fold(record, |cur, k| cur.get(k)).map(Node::to_value),
            // a JSONPath beyond plain keys: query the record as a serde_json value
            None => self.cursor.query(&record.to_value()).all().into_iter().next().cloned(),
        };
        found.filter(|v| !v.is_null())
    }

    /// Orders `a` against `b` so that `Greater` means newer.
    fn newer(&self, a: &Value, b: &Value) -> Ordering {
        let o = compare(a, b);
        if self.cfg.last_value_func == LastValueFunc::Min { o.reverse() } else { o }
    }

    /// Whether to keep `record`; tracks the new position.
    pub fn keep<N: Node>(&mut self, record: &N) -> Result<bool, MissingCursor> {
        let Some(value) = self.cursor_value(record) else {
            return match self.cfg.on_cursor_value_missing {
                OnCursorValueMissing::Raise => Err(MissingCursor {
                    cursor_path: self.cfg.cursor_path.clone(),
                    excerpt: record.to_json().chars().take(200).collect(),
                }),
                OnCursorValueMissing::Include => Ok(true),
                OnCursorValueMissing::Exclude => Ok(false),
            };
        };
        if let Some(end) = &self.cfg.end_value {
            match self.newer(&value, end) {
                Ordering::Greater => return Ok(false),
                Ordering::Equal if self.cfg.range_end == RangeBound::Open => return Ok(false),
                _ => {}
            }
        }
        if let Some(start) = &self.start {
            match self.newer(&value, start) {
                Ordering::Less => return Ok(false),
                Ordering::Equal if self.cfg.range_start == RangeBound::Open => return Ok(false),
                Ordering::Equal if !self.seen_at_start.is_empty() && self.seen(record) => {
                    return Ok(false);
                }
                _ => {}
            }
        }
        let order = self.new_last.as_ref().map(|l| self.newer(&value, l));
        match order {
            None | Some(Ordering::Greater) => {
                self.new_hashes = vec![self.hash(record)];
                self.new_last = Some(value);
            }
            Some(Ordering::Equal) => {
                let h = self.hash(record);
                self.new_hashes.push(h);
            }
            Some(Ordering::Less) => {}
        }
        Ok(true)
    }

    /// The position to store after a successful run, or `None` to leave the stored one.
    pub fn state(&self) -> Option<IncrementalState> {
        if self.cfg.end_value.is_some() {
            return None;
        }
        Some(self.position())
    }

    /// Writes this run's position into its resource's state: at a checkpoint (`finished:
    /// false`), a range with `end_value` records how far it got ([`Backfill`]); once the run has
    /// read everything, that record goes and only [`Incremental::state`] stays.
    pub fn save(&self, into: &mut ResourceState, finished: bool) {
        let path = &self.cfg.cursor_path;
        match (&self.cfg.end_value, self.position()) {
            (None, position) => {
                into.incremental.insert(path.clone(), position);
                into.backfill.remove(path);
            }
            (Some(end), IncrementalState { last_value: Some(last), unique_hashes, .. }) if !finished => {
                let b = Backfill {
                    initial_value: self.cfg.initial_value.clone(),
                    end_value: end.clone(),
                    last_value: last,
                    unique_hashes,
                };
                into.backfill.insert(path.clone(), b);
            }
            _ => {
                into.backfill.remove(path);
            }
        }
    }

    /// The position reached: the greatest cursor value kept, over the one the run started from.
    fn position(&self) -> IncrementalState {
        let mut s = self.prior.clone();
        s.initial_value = self.cfg.initial_value.clone();
        match (&self.new_last, &self.prior.last_value) {
            (Some(new), Some(old)) if self.newer(new, old) == Ordering::Equal => {
                for h in &self.new_hashes {
                    if !s.unique_hashes.contains(h) {
                        s.unique_hashes.push(h.clone());
                    }
                }
            }
            (Some(new), Some(old)) if self.newer(new, old) == Ordering::Less => {}
            (Some(new), _) => {
                s.last_value = Some(new.clone());
                s.unique_hashes = self.new_hashes.clone();
            }
            (None, _) => {}
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn windows_split_the_range_and_keep_its_ends_as_written() {
        let mut c = cfg(json!({"initial_value": "2024-01-01T00:00:00+01:00", "end_value": "2024-01-01T02:30:00Z"}));
        c.window = Some(std::time::Duration::from_secs(3600));
        let inc = Incremental::new(&c, None, &[]);
        let w = inc.windows(0).unwrap().unwrap();
        let shown: Vec<(String, String)> =
            w.iter().map(|(a, b)| (a.as_str().unwrap().to_string(), b.as_str().unwrap().to_string())).collect();
        assert_eq!(
            shown,
            [
                ("2024-01-01T00:00:00+01:00".into(), "2024-01-01T00:00:00Z".into()),
                ("2024-01-01T00:00:00Z".into(), "2024-01-01T01:00:00Z".into()),
                ("2024-01-01T01:00:00Z".into(), "2024-01-01T02:00:00Z".into()),
                ("2024-01-01T02:00:00Z".into(), "2024-01-01T02:30:00Z".into()),
            ]
        );
        // to now, without end_value; an empty range is one window
        c.end_value = None;
        let now = parse_timestamp("2024-01-01T00:30:00Z").unwrap();
        assert_eq!(Incremental::new(&c, None, &[]).windows(now).unwrap().unwrap().len(), 2, "1.5 h from 23:00Z");
        let before = parse_timestamp("2023-12-31T22:00:00Z").unwrap();
        assert_eq!(Incremental::new(&c, None, &[]).windows(before).unwrap().unwrap().len(), 1);
        // numbers, in units
        let mut n = cfg(json!({"initial_value": 0, "end_value": 25}));
        n.window = Some(std::time::Duration::from_secs(10));
        let w = Incremental::new(&n, None, &[]).windows(0).unwrap().unwrap();
        assert_eq!(w, [(json!(0), json!(10)), (json!(10), json!(20)), (json!(20), json!(25))]);
        // too many is an error that says what to do
        c.window = Some(std::time::Duration::from_millis(1));
        let far = parse_timestamp("2030-01-01T00:00:00Z").unwrap();
        assert!(Incremental::new(&c, None, &[]).windows(far).unwrap_err().contains("larger window"));
        // a record belongs to one window
        let inc = Incremental::new(&n, None, &[]);
        let rec = |v: i64| json!({"updated_at": v});
        assert!(inc.in_window(&rec(10), &json!(10), Some(&json!(20))));
        assert!(!inc.in_window(&rec(20), &json!(10), Some(&json!(20))));
        assert!(inc.in_window(&rec(99), &json!(20), None));
    }

    fn cfg(extra: Value) -> IncrementalConfig {
        let mut v = json!({"cursor_path": "updated_at", "initial_value": "2024-01-01T00:00:00Z"});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    fn rec(id: u64, at: &str) -> Value {
        json!({"id": id, "updated_at": at})
    }

    #[test]
    fn first_run_starts_at_initial_value_and_stores_the_max() {
        let mut inc = Incremental::new(&cfg(json!({})), None, &["id".into()]);
        assert_eq!(inc.placeholder("start_value"), Some(json!("2024-01-01T00:00:00Z")));
        assert!(!inc.keep(&rec(1, "2023-12-31T23:59:59Z")).unwrap());
        assert!(inc.keep(&rec(2, "2024-01-01T02:00:00+02:00")).unwrap(), "the same instant as the start: closed range");
        assert!(inc.keep(&rec(3, "2024-03-01T00:00:00Z")).unwrap());
        assert!(inc.keep(&rec(4, "2024-03-01T01:00:00+01:00")).unwrap());
        let s = inc.state().unwrap();
        assert_eq!(s.last_value, Some(json!("2024-03-01T00:00:00Z")));
        assert_eq!(s.unique_hashes.len(), 2, "both records at the last value");
    }

    #[test]
    fn next_run_skips_boundary_records_already_loaded() {
        let mut first = Incremental::new(&cfg(json!({})), None, &["id".into()]);
        first.keep(&rec(3, "2024-03-01T00:00:00Z")).unwrap();
        let stored = first.state().unwrap();
        let mut next = Incremental::new(&cfg(json!({})), Some(&stored), &["id".into()]);
        assert_eq!(next.placeholder("start_value"), Some(json!("2024-03-01T00:00:00Z")));
        assert!(!next.keep(&rec(3, "2024-03-01T00:00:00Z")).unwrap(), "loaded last time");
        assert!(next.keep(&rec(9, "2024-03-01T00:00:00Z")).unwrap(), "same value, new record");
        let s = next.state().unwrap();
        assert_eq!(s.unique_hashes.len(), 2);
        // nothing new at all: the position stays
        let idle = Incremental::new(&cfg(json!({})), Some(&s), &["id".into()]);
        assert_eq!(idle.state().unwrap(), s);
    }

    #[test]
    fn boundary_hashes_of_dlt_and_of_older_runs_are_recognized() {
        let at = "2024-03-01T00:00:00Z";
        // dlt 1.31's hash of id 3, and the 20-character one of dlt before 1.29 (and older resttap)
        for hash in ["Cn/dwi436vBb", "Cn/dwi436vBbdERZ9hKf"] {
            let stored =
                IncrementalState { initial_value: None, last_value: Some(json!(at)), unique_hashes: vec![hash.into()] };
            let mut next = Incremental::new(&cfg(json!({})), Some(&stored), &["id".into()]);
            assert!(!next.keep(&rec(3, at)).unwrap(), "{hash}: loaded by the run before");
            assert!(next.keep(&rec(4, at)).unwrap());
        }
        let mut first = Incremental::new(&cfg(json!({})), None, &["id".into()]);
        first.keep(&rec(3, at)).unwrap();
        assert_eq!(first.state().unwrap().unique_hashes, ["Cn/dwi436vBb"], "stored as dlt 1.31 stores it");
    }

    #[test]
    fn lag_end_value_open_ranges_and_numbers() {
        let stored = IncrementalState {
            initial_value: None,
            last_value: Some(json!("2024-03-01T00:00:00Z")),
            unique_hashes: vec![],
        };
        let inc = Incremental::new(&cfg(json!({"lag": 3600})), Some(&stored), &[]);
        assert_eq!(inc.placeholder("start_value"), Some(json!("2024-02-29T23:00:00Z")));
        let mut w =
            Incremental::new(&cfg(json!({"end_value": "2024-02-01T00:00:00Z", "end_param": "until"})), None, &[]);
        assert!(!w.keep(&rec(1, "2024-02-01T00:00:00Z")).unwrap(), "end is open by default");
        assert!(w.keep(&rec(1, "2024-01-31T00:00:00Z")).unwrap());
        assert_eq!(w.state(), None, "a backfill window does not move the position");
        assert_eq!(w.params(), vec![("until".to_string(), json!("2024-02-01T00:00:00Z"))]);
        let mut n = Incremental::new(
            &cfg(json!({"cursor_path": "seq", "initial_value": 10, "range_start": "open"})),
            None,
            &[],
        );
        assert!(!n.keep(&json!({"seq": 10})).unwrap());
        assert!(n.keep(&json!({"seq": 11})).unwrap());
        assert!(n.keep(&json!({"seq": 9.5})).is_ok_and(|k| !k));
    }

    #[test]
    fn a_range_with_an_end_ignores_the_stored_position_and_resumes_its_own_checkpoint() {
        let range = json!({"end_value": "2024-02-01T00:00:00Z"});
        let stored = IncrementalState { last_value: Some(json!("2024-01-20T00:00:00Z")), ..Default::default() };
        let inc = Incremental::new(&cfg(range.clone()), Some(&stored), &["id".into()]);
        assert_eq!(inc.placeholder("start_value"), Some(json!("2024-01-01T00:00:00Z")), "dlt's stand-in state");

        // a checkpoint part-way records how far the range got; the incremental position stays
        let mut first = Incremental::new(&cfg(range.clone()), None, &["id".into()]);
        for (id, at) in [(1, "2024-01-02T00:00:00Z"), (2, "2024-01-05T00:00:00Z")] {
            assert!(first.keep(&rec(id, at)).unwrap());
        }
        let mut rs = ResourceState::default();
        first.save(&mut rs, false);
        assert!(rs.incremental.is_empty());
        let b = rs.backfill["updated_at"].clone();
        assert_eq!((b.last_value.clone(), b.unique_hashes.len()), (json!("2024-01-05T00:00:00Z"), 1));

        // the next run of the same range starts there and does not load record 2 again
        let mut next = Incremental::new(&cfg(range.clone()), None, &["id".into()]).resuming(Some(&b));
        assert_eq!(next.placeholder("start_value"), Some(json!("2024-01-05T00:00:00Z")));
        assert!(!next.keep(&rec(2, "2024-01-05T00:00:00Z")).unwrap());
        assert!(next.keep(&rec(3, "2024-01-05T00:00:00Z")).unwrap());
        next.save(&mut rs, false);
        assert_eq!(rs.backfill["updated_at"].unique_hashes.len(), 2, "both records at the boundary");
        next.save(&mut rs, true);
        assert!(rs.backfill.is_empty(), "a finished range leaves no checkpoint");

        // another range does not take it up
        let other = Incremental::new(&cfg(json!({"end_value": "2024-03-01T00:00:00Z"})), None, &[]).resuming(Some(&b));
        assert_eq!(other.placeholder("start_value"), Some(json!("2024-01-01T00:00:00Z")));
        // without an end, a checkpoint is the incremental position itself
        let mut open = Incremental::new(&cfg(json!({})), None, &[]);
        open.keep(&rec(1, "2024-01-02T00:00:00Z")).unwrap();
        let mut rs = ResourceState::default();
        open.save(&mut rs, false);
        assert_eq!(rs.incremental["updated_at"].last_value, Some(json!("2024-01-02T00:00:00Z")));
        assert!(rs.backfill.is_empty());
    }

    #[test]
    fn missing_cursor_follows_the_config() {
        let mut raise = Incremental::new(&cfg(json!({})), None, &[]);
        assert!(raise.keep(&json!({"id": 1})).is_err());
        let mut inc = Incremental::new(&cfg(json!({"on_cursor_value_missing": "include"})), None, &[]);
        assert!(inc.keep(&json!({"id": 1, "updated_at": null})).unwrap());
        let mut exc = Incremental::new(&cfg(json!({"on_cursor_value_missing": "exclude"})), None, &[]);
        assert!(!exc.keep(&json!({"id": 1})).unwrap());
    }

    #[test]
    fn min_moves_backwards() {
        let mut inc = Incremental::new(
            &cfg(json!({"cursor_path": "n", "initial_value": 100, "last_value_func": "min"})),
            None,
            &[],
        );
        assert!(!inc.keep(&json!({"n": 101})).unwrap());
        assert!(inc.keep(&json!({"n": 50})).unwrap());
        assert!(inc.keep(&json!({"n": 70})).unwrap());
        assert_eq!(inc.state().unwrap().last_value, Some(json!(50)));
    }

    #[test]
    fn python_json_and_digest_match_dlt() {
        assert_eq!(py_json(&json!({"b": 1, "a": [true, null, "é"]})), r#"{"a": [true, null, "\u00e9"], "b": 1}"#);
        // python: dlt.common.utils.digest128(json.dumps(5, sort_keys=True))
        assert_eq!(digest("5"), DLT_DIGEST_OF_5);
        // dlt 1.31's dedup hashes (digest_dedup_value)
        assert_eq!(dedup_hash(&json!(3)), "Cn/dwi436vBb");
        assert_eq!(dedup_hash(&json!(5)), "tIXXf9wiHssy");
        assert_eq!(dedup_hash(&json!("abc")), "Q7izEiCRBJq3");
        assert_eq!(dedup_hash(&json!([1, "a"])), "ndvRJS8rm8iA");
        let row = json!({"id": 3, "updated_at": "2024-01-03T00:00:00Z", "name": "c", "tags": []});
        assert_eq!(dedup_hash(&row), "s1+RliPZOZsH");
    }

    const DLT_DIGEST_OF_5: &str = "tIXXf9wiHssyAgHEzQnu";
}
