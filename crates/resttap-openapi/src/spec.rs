//! Reading an OpenAPI 3.0/3.1 document: parsing (JSON or YAML), local `$ref`s and a flattened
//! view of schemas (`$ref`, `allOf`, `oneOf`/`anyOf` folded, cycles cut).

use serde_json::Value;

use crate::OpenApiError;

/// How deep nested properties are followed (dlt-init-openapi stops at 6 as well).
const MAX_DEPTH: usize = 6;
/// How many schema nodes one flattening may build (wide, deep specs would explode otherwise).
const MAX_NODES: usize = 4000;
/// How many `$ref`s in a row are followed before giving up.
const MAX_REF_HOPS: usize = 32;

/// A parsed OpenAPI document.
pub(crate) struct Spec {
    pub(crate) root: Value,
}

/// A schema with `$ref`s followed and `allOf`/`oneOf`/`anyOf` folded into one shape.
#[derive(Debug, Clone, Default)]
pub(crate) struct Schema {
    /// JSON types (`null` left out); empty when the schema does not say.
    pub(crate) types: Vec<String>,
    pub(crate) format: Option<String>,
    pub(crate) properties: Vec<(String, Schema)>,
    pub(crate) items: Option<Box<Schema>>,
    pub(crate) enum_values: Vec<Value>,
    pub(crate) default: Option<Value>,
    pub(crate) example: Option<Value>,
    pub(crate) description: Option<String>,
    pub(crate) minimum: Option<f64>,
    pub(crate) maximum: Option<f64>,
    /// The component name it came from (`#/components/schemas/Pet` -> `Pet`).
    pub(crate) name: Option<String>,
}

impl Schema {
    pub(crate) fn is(&self, t: &str) -> bool {
        self.types.iter().any(|x| x == t)
    }

    pub(crate) fn is_array(&self) -> bool {
        self.is("array") || (self.types.is_empty() && self.items.is_some())
    }

    pub(crate) fn is_object(&self) -> bool {
        self.is("object") || (self.types.is_empty() && !self.properties.is_empty())
    }

    pub(crate) fn property(&self, name: &str) -> Option<&Schema> {
        self.properties.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    fn merge(&mut self, other: Schema) {
        for t in other.types {
            if !self.types.contains(&t) {
                self.types.push(t);
            }
        }
        for (n, s) in other.properties {
            if self.property(&n).is_none() {
                self.properties.push((n, s));
            }
        }
        if self.items.is_none() {
            self.items = other.items;
        }
        if self.enum_values.is_empty() {
            self.enum_values = other.enum_values;
        }
        self.format = self.format.take().or(other.format);
        self.default = self.default.take().or(other.default);
        self.example = self.example.take().or(other.example);
        self.description = self.description.take().or(other.description);
        self.minimum = self.minimum.or(other.minimum);
        self.maximum = self.maximum.or(other.maximum);
        self.name = self.name.take().or(other.name);
    }
}

impl Spec {
    /// Parses JSON (when the text starts with `{`) or YAML, and checks it is OpenAPI 3.0 or 3.1.
    pub(crate) fn parse(text: &str) -> Result<Spec, OpenApiError> {
        let trimmed = text.trim_start_matches('\u{feff}').trim_start();
        let root: Value = if trimmed.starts_with('{') {
            serde_json::from_str(trimmed).map_err(OpenApiError::Json)?
        } else {
            serde_norway::from_str(trimmed).map_err(OpenApiError::Yaml)?
        };
        if !root.is_object() {
            return Err(OpenApiError::NotOpenApi("the document is not a mapping".into()));
        }
        if let Some(v) = root.get("swagger") {
            return Err(OpenApiError::UnsupportedVersion(format!("Swagger {}", scalar_text(v))));
        }
        let Some(version) = root.get("openapi") else {
            return Err(OpenApiError::NotOpenApi("it has no `openapi` version key".into()));
        };
        let version = scalar_text(version);
        if !(version.starts_with("3.0") || version.starts_with("3.1")) {
            return Err(OpenApiError::UnsupportedVersion(format!("OpenAPI {version}")));
        }
        if !root.get("paths").is_some_and(Value::is_object) {
            return Err(OpenApiError::NotOpenApi("it has no `paths`".into()));
        }
        Ok(Spec { root })
    }

    /// The value a local JSON pointer (`#/components/schemas/Pet`) names.
    pub(crate) fn pointer(&self, reference: &str) -> Result<&Value, String> {
        let Some(ptr) = reference.strip_prefix('#') else {
            return Err(format!("`{reference}` is not a local reference (only `#/...` references are resolved)"));
        };
        let decoded = percent_decode(ptr);
        self.root.pointer(&decoded).ok_or_else(|| format!("`{reference}` points to nothing in the spec"))
    }

    /// Follows `$ref`s until a value that is not a reference.
    pub(crate) fn resolve<'a>(&'a self, mut v: &'a Value) -> Result<&'a Value, String> {
        for _ in 0..MAX_REF_HOPS {
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => v = self.pointer(r)?,
                None => return Ok(v),
            }
        }
        Err("a chain of `$ref`s loops".into())
    }

    /// The flattened form of a schema value.
    pub(crate) fn schema(&self, v: &Value) -> Schema {
        let mut budget = MAX_NODES;
        self.flatten(v, &mut Vec::new(), 0, &mut budget)
    }

    fn flatten(&self, v: &Value, stack: &mut Vec<String>, depth: usize, budget: &mut usize) -> Schema {
        if *budget == 0 {
            return Schema::default();
        }
        *budget -= 1;
        if let Some(r) = v.get("$ref").and_then(Value::as_str) {
            if stack.iter().any(|s| s == r) {
                // a cycle: the shape repeats, stop here
                return Schema { name: component_name(r), ..Schema::default() };
            }
            let Ok(target) = self.pointer(r) else { return Schema::default() };
            stack.push(r.to_string());
            let mut s = self.flatten(target, stack, depth, budget);
            stack.pop();
            s.name = component_name(r);
            if let Some(d) = v.get("description").and_then(Value::as_str) {
                s.description = Some(d.to_string());
            }
            return s;
        }
        let mut s = Schema::default();
        match v.get("type") {
            Some(Value::String(t)) if t != "null" => s.types.push(t.clone()),
            Some(Value::Array(ts)) => {
                s.types = ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").map(String::from).collect();
            }
            _ => {}
        }
        s.format = v.get("format").and_then(Value::as_str).map(String::from);
        s.enum_values = v.get("enum").and_then(Value::as_array).cloned().unwrap_or_default();
        if s.enum_values.is_empty()
            && let Some(c) = v.get("const")
        {
            s.enum_values.push(c.clone());
        }
        s.enum_values.retain(|e| !e.is_null());
        s.default = v.get("default").cloned();
        s.example = v.get("example").cloned().or_else(|| v.get("examples").and_then(|e| e.get(0)).cloned());
        s.description = v.get("description").and_then(Value::as_str).map(String::from);
        s.minimum = v.get("minimum").and_then(Value::as_f64);
        s.maximum = v.get("maximum").and_then(Value::as_f64);
        if depth < MAX_DEPTH {
            if let Some(Value::Object(props)) = v.get("properties") {
                for (name, pv) in props {
                    let child = self.flatten(pv, stack, depth + 1, budget);
                    s.properties.push((name.clone(), child));
                }
            }
            if let Some(items) = v.get("items").filter(|i| i.is_object()) {
                s.items = Some(Box::new(self.flatten(items, stack, depth + 1, budget)));
            }
        } else if v.get("items").is_some() && s.types.is_empty() {
            s.types.push("array".into());
        }
        if let Some(Value::Array(parts)) = v.get("allOf") {
            for p in parts {
                let sub = self.flatten(p, stack, depth, budget);
                s.merge(sub);
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(Value::Array(variants)) = v.get(key) {
                let subs: Vec<Schema> = variants
                    .iter()
                    .filter(|x| x.get("type").and_then(Value::as_str) != Some("null"))
                    .map(|x| self.flatten(x, stack, depth, budget))
                    .collect();
                let objects: Vec<&Schema> = subs.iter().filter(|x| x.is_object()).collect();
                if objects.is_empty() {
                    if let Some(first) = subs.into_iter().next() {
                        s.merge(first);
                    }
                } else {
                    let merged: Vec<Schema> = objects.into_iter().cloned().collect();
                    for m in merged {
                        s.merge(m);
                    }
                }
            }
        }
        if s.types.is_empty() {
            if !s.properties.is_empty() {
                s.types.push("object".into());
            } else if s.items.is_some() {
                s.types.push("array".into());
            }
        }
        s
    }
}

fn component_name(r: &str) -> Option<String> {
    r.rsplit('/').next().filter(|n| !n.is_empty()).map(String::from)
}

/// A YAML scalar as text (`openapi: 3.0` may arrive as a number).
pub(crate) fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (hex(b.get(i + 1)), hex(b.get(i + 2)))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: Option<&u8>) -> Option<u8> {
    match c? {
        c @ b'0'..=b'9' => Some(c - b'0'),
        c @ b'a'..=b'f' => Some(c - b'a' + 10),
        c @ b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_json_and_versions() {
        let y = Spec::parse("openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths: {}\n").unwrap();
        assert!(y.root.get("paths").is_some());
        let j = Spec::parse(" {\"openapi\": \"3.0.3\", \"paths\": {}}").unwrap();
        assert!(j.root.get("paths").is_some());
        assert!(matches!(Spec::parse("swagger: '2.0'\npaths: {}"), Err(OpenApiError::UnsupportedVersion(_))));
        assert!(matches!(Spec::parse("openapi: 4.0.0\npaths: {}"), Err(OpenApiError::UnsupportedVersion(_))));
        assert!(matches!(Spec::parse("{\"openapi\": "), Err(OpenApiError::Json(_))));
        assert!(matches!(Spec::parse("a: [1, 2"), Err(OpenApiError::Yaml(_))));
        assert!(matches!(Spec::parse("just: text"), Err(OpenApiError::NotOpenApi(_))));
    }

    #[test]
    fn integer_response_keys_in_yaml_become_strings() {
        let s =
            Spec::parse("openapi: 3.0.0\npaths:\n  /a:\n    get:\n      responses:\n        200: {description: ok}\n")
                .unwrap();
        assert!(s.root.pointer("/paths/~1a/get/responses/200").is_some());
    }

    #[test]
    fn refs_allof_and_cycles() {
        let spec = Spec::parse(
            r##"
openapi: 3.0.0
paths: {}
components:
  schemas:
    Base: {type: object, properties: {id: {type: integer}}}
    Node:
      allOf:
        - $ref: '#/components/schemas/Base'
        - type: object
          properties:
            name: {type: string}
            parent: {$ref: '#/components/schemas/Node'}
            children: {type: array, items: {$ref: '#/components/schemas/Node'}}
    Loop1: {$ref: '#/components/schemas/Loop2'}
    Loop2: {$ref: '#/components/schemas/Loop1'}
"##,
        )
        .unwrap();
        let node = spec.schema(&serde_json::json!({"$ref": "#/components/schemas/Node"}));
        assert!(node.is_object());
        assert_eq!(
            node.properties.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
            ["id", "name", "parent", "children"]
        );
        assert_eq!(node.name.as_deref(), Some("Node"));
        // the cycle is cut: the nested Node has no properties
        assert!(node.property("parent").unwrap().properties.is_empty());
        let lp = spec.schema(&serde_json::json!({"$ref": "#/components/schemas/Loop1"}));
        assert!(lp.types.is_empty());
        assert!(spec.resolve(&serde_json::json!({"$ref": "#/components/schemas/Loop1"})).is_err());
        assert!(spec.pointer("#/components/schemas/Nope").is_err());
        assert!(spec.pointer("other.yaml#/x").is_err());
    }

    #[test]
    fn openapi_31_type_arrays_and_nullable_unions() {
        let spec = Spec::parse("openapi: 3.1.0\npaths: {}").unwrap();
        let s = spec.schema(&serde_json::json!({"type": ["string", "null"], "format": "date-time"}));
        assert_eq!(s.types, ["string"]);
        let s = spec.schema(&serde_json::json!({"anyOf": [{"type": "null"}, {"type": "integer"}]}));
        assert_eq!(s.types, ["integer"]);
    }
}
