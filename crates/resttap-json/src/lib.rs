//! Records as the normalizer reads them.
//!
//! [`Node`] is the view the normalizer needs of a JSON value: its kind, an object's entries in
//! order, an array's items, and its compact text. `serde_json::Value` implements it, and so does
//! [`Json`], a tree parsed straight from a response body into an arena: strings borrowed from
//! the body (when they have no escapes), objects as slices of entries, no per-key hashing, no
//! allocation of its own and nothing to drop; the arena is reused from page to page. Extraction
//! uses [`Json`] where nothing but the normalizer looks at the records (no incremental cursor,
//! processing steps or child resources).

pub mod canonical;

use std::fmt;

pub use bumpalo::Bump;
use bumpalo::collections::Vec as BumpVec;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// What a JSON value is, borrowing its contents.
#[derive(Debug, PartialEq)]
pub enum Kind<'a, N> {
    Null,
    Bool(bool),
    /// An integer that fits `i64`.
    I64(i64),
    /// An integer above `i64::MAX`.
    U64(u64),
    F64(f64),
    Str(&'a str),
    Arr(&'a [N]),
    Obj,
}

impl<N> Clone for Kind<'_, N> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<N> Copy for Kind<'_, N> {}

/// A JSON value as the normalizer reads it.
pub trait Node: Sized {
    /// An object's entries, in document order.
    type Entries<'a>: Iterator<Item = (&'a str, &'a Self)>
    where
        Self: 'a;

    /// The kind of the value.
    fn kind(&self) -> Kind<'_, Self>;

    /// The entries, if the value is an object.
    fn entries(&self) -> Option<Self::Entries<'_>>;

    /// The value of `key`, if the value is an object that has it.
    fn get(&self, key: &str) -> Option<&Self> {
        self.entries()?.find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Compact JSON text, as `serde_json` writes it.
    fn to_json(&self) -> String;

    /// The same value as a `serde_json::Value`.
    fn to_value(&self) -> Value;

    /// Whether the value is `null`.
    fn is_null(&self) -> bool {
        matches!(self.kind(), Kind::Null)
    }
}

fn number_kind<N>(n: &serde_json::Number) -> Kind<'static, N> {
    if let Some(i) = n.as_i64() {
        Kind::I64(i)
    } else if let Some(u) = n.as_u64() {
        Kind::U64(u)
    } else {
        Kind::F64(n.as_f64().unwrap_or(f64::NAN))
    }
}

type ValueEntries<'a> = std::iter::Map<serde_json::map::Iter<'a>, fn((&'a String, &'a Value)) -> (&'a str, &'a Value)>;

impl Node for Value {
    type Entries<'a> = ValueEntries<'a>;

    fn kind(&self) -> Kind<'_, Self> {
        match self {
            Value::Null => Kind::Null,
            Value::Bool(b) => Kind::Bool(*b),
            Value::Number(n) => number_kind(n),
            Value::String(s) => Kind::Str(s),
            Value::Array(a) => Kind::Arr(a),
            Value::Object(_) => Kind::Obj,
        }
    }

    fn entries(&self) -> Option<Self::Entries<'_>> {
        fn entry<'a>((k, v): (&'a String, &'a Value)) -> (&'a str, &'a Value) {
            (k.as_str(), v)
        }
        match self {
            Value::Object(m) => Some(m.iter().map(entry as fn(_) -> _)),
            _ => None,
        }
    }

    fn get(&self, key: &str) -> Option<&Self> {
        Value::get(self, key)
    }

    fn to_json(&self) -> String {
        self.to_string()
    }

    fn to_value(&self) -> Value {
        self.clone()
    }
}

/// A JSON value parsed from a text into an arena ([`Json::parse`]): strings borrow from the
/// text when they have no escapes (else they are decoded into the arena), arrays and objects
/// are slices in the arena, objects keep their entries in order (a key given twice keeps its
/// first place and its last value, as `serde_json::Value` does). Nothing in it owns memory, so
/// dropping a tree costs nothing and the arena is reused from page to page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(&'a str),
    Arr(&'a [Json<'a>]),
    Obj(&'a [(&'a str, Json<'a>)]),
}

type JsonEntries<'a, 'b> =
    std::iter::Map<std::slice::Iter<'a, (&'b str, Json<'b>)>, fn(&'a (&'b str, Json<'b>)) -> (&'a str, &'a Json<'b>)>;

impl<'b> Node for Json<'b> {
    type Entries<'a>
        = JsonEntries<'a, 'b>
    where
        Self: 'a;

    fn kind(&self) -> Kind<'_, Self> {
        match self {
            Json::Null => Kind::Null,
            Json::Bool(b) => Kind::Bool(*b),
            Json::I64(i) => Kind::I64(*i),
            Json::U64(u) => Kind::U64(*u),
            Json::F64(f) => Kind::F64(*f),
            Json::Str(s) => Kind::Str(s),
            Json::Arr(a) => Kind::Arr(a),
            Json::Obj(_) => Kind::Obj,
        }
    }

    fn entries(&self) -> Option<Self::Entries<'_>> {
        fn entry<'a, 'b>(e: &'a (&'b str, Json<'b>)) -> (&'a str, &'a Json<'b>) {
            (e.0, &e.1)
        }
        match self {
            Json::Obj(m) => Some(m.iter().map(entry as fn(_) -> _)),
            _ => None,
        }
    }

    fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    fn to_value(&self) -> Value {
        self.to_value_without(&[])
    }
}

impl<'a> Json<'a> {
    /// Parses `text` (one JSON value, nothing after it but whitespace) into `arena`.
    pub fn parse(text: &'a str, arena: &'a Bump) -> Result<Json<'a>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        let value = JsonSeed::new(arena, OBJ_CAPACITY).deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }

    /// The value with the array or value at `path` (object keys) replaced by an empty array:
    /// the envelope of a page without its records, for the paginator.
    pub fn to_value_without(&self, path: &[String]) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::I64(i) => Value::from(*i),
            Json::U64(u) => Value::from(*u),
            Json::F64(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::Str(s) => Value::String(s.to_string()),
            Json::Arr(a) => Value::Array(a.iter().map(Node::to_value).collect()),
            Json::Obj(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        let v = match path {
                            [first] if first == k => Value::Array(Vec::new()),
                            [first, rest @ ..] if first == k => v.to_value_without(rest),
                            _ => Node::to_value(v),
                        };
                        (k.to_string(), v)
                    })
                    .collect(),
            ),
        }
    }
}

/// Room for entries an object starts with when no object came before it.
const OBJ_CAPACITY: usize = 8;

/// Parses one value into the arena (it is both the seed and the visitor); an object starts
/// with room for `obj_capacity` entries. An array passes the size of its last object element on
/// to the next: the records of a page have the same fields, so each record's entries are
/// allocated once, at their final size, instead of growing 8 -> 16 -> 32.
struct JsonSeed<'a> {
    arena: &'a Bump,
    obj_capacity: usize,
}

impl<'a> JsonSeed<'a> {
    fn new(arena: &'a Bump, obj_capacity: usize) -> Self {
        JsonSeed { arena, obj_capacity }
    }
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for JsonSeed<'a> {
    type Value = Json<'a>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json<'a>, D::Error> {
        d.deserialize_any(self)
    }
}

/// A key as the deserializer gives it: borrowed from the text when it has no escapes, else
/// decoded into the arena.
struct KeySeed<'a>(&'a Bump);

impl<'de: 'a, 'a> DeserializeSeed<'de> for KeySeed<'a> {
    type Value = &'a str;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'a str, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for KeySeed<'a> {
    type Value = &'a str;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<&'a str, E> {
        Ok(v)
    }

    fn visit_str<E>(self, v: &str) -> Result<&'a str, E> {
        Ok(self.0.alloc_str(v))
    }
}

impl<'de: 'a, 'a> Visitor<'de> for JsonSeed<'a> {
    type Value = Json<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json<'a>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'a>, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json<'a>, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json<'a>, E> {
        Ok(Json::I64(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json<'a>, E> {
        Ok(i64::try_from(v).map_or(Json::U64(v), Json::I64))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json<'a>, E> {
        Ok(Json::F64(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'a>, E> {
        Ok(Json::Str(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json<'a>, E> {
        Ok(Json::Str(self.arena.alloc_str(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'a>, A::Error> {
        let mut out = BumpVec::with_capacity_in(seq.size_hint().unwrap_or(0), self.arena);
        let mut obj_capacity = OBJ_CAPACITY;
        while let Some(v) = seq.next_element_seed(JsonSeed::new(self.arena, obj_capacity))? {
            if let Json::Obj(entries) = &v {
                obj_capacity = entries.len().max(1);
            }
            out.push(v);
        }
        Ok(Json::Arr(out.into_bump_slice()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'a>, A::Error> {
        let capacity = map.size_hint().unwrap_or(self.obj_capacity);
        let mut out: BumpVec<'a, (&'a str, Json<'a>)> = BumpVec::with_capacity_in(capacity, self.arena);
        while let Some(k) = map.next_key_seed(KeySeed(self.arena))? {
            let v = map.next_value_seed(JsonSeed::new(self.arena, OBJ_CAPACITY))?;
            match out.iter_mut().find(|(seen, _)| *seen == k) {
                Some(slot) => slot.1 = v,
                None => out.push((k, v)),
            }
        }
        Ok(Json::Obj(out.into_bump_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"b": 1, "a": [true, null, -2, 18446744073709551615, 1.5, "x\"y"], "o": {"k": "v"}, "b": 2}"#;

    #[test]
    fn parses_like_serde_json_value() {
        let arena = Bump::new();
        let j = Json::parse(DOC, &arena).unwrap();
        let v: Value = serde_json::from_str(DOC).unwrap();
        assert_eq!(Node::to_value(&j), v);
        assert_eq!(j.to_json(), v.to_string());
        // a repeated key keeps its first place and its last value, as serde_json does
        assert_eq!(j.entries().unwrap().map(|(k, _)| k).collect::<Vec<_>>(), ["b", "a", "o"]);
        assert_eq!(Node::get(&j, "b").map(Node::kind), Some(Kind::I64(2)));
        // escaped keys and strings are decoded; what follows the value must be whitespace only
        let j = Json::parse(r#" {"k\u00e9": "v\n\ud83d\ude80"} "#, &arena).unwrap();
        assert_eq!(Node::get(&j, "k\u{e9}").map(Node::kind), Some(Kind::Str("v\n\u{1f680}")));
        for bad in [r#"{"a": 1} x"#, r#"{"a": }"#, r#""\ud800""#, "[1,]", ""] {
            assert!(Json::parse(bad, &arena).is_err(), "{bad}");
        }
    }

    #[test]
    fn records_of_an_array_are_sized_after_the_one_before() {
        // growing, shrinking, empty and non-object elements, a repeated key, nested arrays
        let doc = r#"[{"a": 1}, {"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 2, "c": 3, "d": 4, "a": 5}, {}, 7,
            {"x": [{"p": 1, "q": 2}, {"p": 3}]}, {"a": 1, "b": 2}]"#;
        let arena = Bump::new();
        let j = Json::parse(doc, &arena).unwrap();
        let v: Value = serde_json::from_str(doc).unwrap();
        assert_eq!(Node::to_value(&j), v);
        // 50 records of 10 fields: after the first, each is allocated at its final size (a
        // record grown 8 -> 16 would leave 6 entries unused in the arena, 12 KB in all)
        let record = r#"{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8, "i": 9, "j": 10}"#;
        let page = format!("[{}]", vec![record; 50].join(","));
        let mut arena = Bump::new();
        assert!(matches!(Json::parse(&page, &arena).unwrap(), Json::Arr(r) if r.len() == 50));
        let used: usize = arena.iter_allocated_chunks().map(|c| c.len()).sum();
        let (entry, item) = (std::mem::size_of::<(&str, Json)>(), std::mem::size_of::<Json>());
        // the entries, the first record's growth (8 -> 16), the array's growth (up to 64 items)
        assert!(used >= 50 * 10 * entry, "{used}");
        assert!(used <= 50 * 10 * entry + 24 * entry + 128 * item, "{used}");
    }

    #[test]
    fn kinds_agree_with_value() {
        let arena = Bump::new();
        let j = Json::parse(DOC, &arena).unwrap();
        let v: Value = serde_json::from_str(DOC).unwrap();
        let (Kind::Arr(ja), Kind::Arr(va)) = (Node::get(&j, "a").unwrap().kind(), Node::get(&v, "a").unwrap().kind())
        else {
            panic!("arrays")
        };
        for (a, b) in ja.iter().zip(va) {
            match (a.kind(), b.kind()) {
                (Kind::Str(x), Kind::Str(y)) => assert_eq!(x, y),
                (Kind::Arr(_), Kind::Arr(_)) | (Kind::Obj, Kind::Obj) => {}
                (x, y) => assert_eq!(format!("{x:?}"), format!("{y:?}")),
            }
        }
        // strings without escapes are borrowed from the text
        let text = r#"{"k": "plain"}"#;
        let j = Json::parse(text, &arena).unwrap();
        let Some(Json::Str(s)) = Node::get(&j, "k") else { panic!("a string") };
        assert!(text.as_bytes().as_ptr_range().contains(&s.as_ptr()));
    }

    #[test]
    fn envelope_without_records() {
        let arena = Bump::new();
        let j = Json::parse(r#"{"data": {"items": [1, 2]}, "next": "c"}"#, &arena).unwrap();
        let env = j.to_value_without(&["data".to_string(), "items".to_string()]);
        assert_eq!(env, serde_json::json!({"data": {"items": []}, "next": "c"}));
    }
}
