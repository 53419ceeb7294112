//! Loading a configuration file: parse, apply `resource_defaults` and dlt's shorthands, check
//! every key strictly, resolve secrets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{ConfigError, suggest};
use crate::model::{AuthConfig, IncrementalConfig, LastValueFunc, PaginatorConfig, RestApiConfig};
use crate::secrets::{Piece, SecretSources, Secrets, parse_template, render};

/// A loaded, validated configuration and its secrets.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// The configuration, `resource_defaults` merged into every resource.
    pub api: RestApiConfig,
    /// The values of its `{secrets.NAME}` placeholders.
    pub secrets: Secrets,
}

impl Config {
    /// Loads only the resources named in `names` (dlt's `with_resources`): the others are not
    /// selected (a parent of a selected child is still fetched to feed it, as a resource with
    /// `selected: false` is). A name the configuration does not have is an error naming the
    /// closest one.
    pub fn select_resources(&mut self, names: &[String]) -> Result<(), ConfigError> {
        let known: Vec<String> = self.api.resources.iter().map(|r| r.name.clone()).collect();
        for n in names {
            if !known.contains(n) {
                return Err(ConfigError::Invalid {
                    path: self.path.clone(),
                    key: "--resources".into(),
                    message: format!("the configuration has no resource `{n}` (it has: {})", known.join(", ")),
                    suggestion: crate::suggest(n, known.iter().map(String::as_str)),
                });
            }
        }
        for r in &mut self.api.resources {
            r.selected = names.contains(&r.name);
        }
        Ok(())
    }
}

/// Options that change a configuration after it is read.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces `client.base_url` (e.g. to point a production config at a staging API).
    pub base_url: Option<String>,
}

/// The file formats a configuration can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Toml,
}

impl Format {
    /// The format for a file name, by extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
            Format::Toml => "TOML",
        }
    }
}

/// Reads, checks and resolves the configuration at `path`.
pub fn load_file(path: &Path, overrides: &Overrides, secrets: &SecretSources) -> Result<Config, ConfigError> {
    let format = Format::from_path(path).ok_or_else(|| ConfigError::UnknownFormat { path: path.to_path_buf() })?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
    load_str(&text, format, path, overrides, secrets)
}

/// Like [`load_file`], for text already read; `path` is used in messages.
pub fn load_str(
    text: &str,
    format: Format,
    path: &Path,
    overrides: &Overrides,
    secret_sources: &SecretSources,
) -> Result<Config, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax { path: path.to_path_buf(), format: format.name(), message };
    let mut root: Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?,
        Format::Yaml => serde_norway::from_str(text).map_err(|e| syntax(e.to_string()))?,
        Format::Toml => toml::from_str(text).map_err(|e| syntax(e.to_string()))?,
    };
    let ctx = Ctx { path, problems: Default::default(), stand_ins: Default::default() };
    if !root.is_object() {
        return Err(ctx.invalid("(top level)", "the configuration must be a mapping with `client` and `resources`"));
    }
    if let Some(url) = &overrides.base_url
        && let Some(client) = root.get_mut("client").and_then(Value::as_object_mut)
    {
        client.insert("base_url".into(), Value::String(url.clone()));
    }
    // Every problem is reported, as a compiler does: each stage goes on past what it finds
    // (a bad key is dropped and the rest read again), and the secrets come last, so that one
    // run names every mistyped key and wrong type before any missing secret.
    prepare(&ctx, &mut root);
    let api = deserialize_repairing::<RestApiConfig>(&ctx, &mut root, "");
    // Every placeholder must be known, and every secret must have a value, before any request
    // (read from what is left: a key reported unknown asks for no secret).
    let mut names = BTreeMap::new();
    collect_placeholders(&ctx, &root, &mut String::new(), &mut names);
    let (secrets, missing) = secret_sources.resolve_all(&names);
    if let Some(mut api) = api {
        // what stands in for a part that had to go is not checked further
        let stood_in = ctx.stand_ins.take();
        let skip: Vec<usize> =
            stood_in.iter().filter_map(|k| k.strip_prefix("resources[")?.strip_suffix(']')?.parse().ok()).collect();
        link_parents(&ctx, &mut api);
        for (i, res) in api.resources.iter_mut().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            let key = format!("resources[{i}]");
            if let Some(merge) = ctx.keep(crate::merge::resolve(&ctx, &key, res)) {
                res.merge = merge;
            }
            if let Some(contract) = ctx.keep(crate::contract::resolve(&ctx, &key, res)) {
                res.contract = contract;
            }
            ctx.keep(crate::columns::resolve(&ctx, &key, res));
        }
        let checks =
            Checks { secrets_complete: missing.is_empty(), client: !stood_in.iter().any(|k| k == "client"), skip };
        validate(&ctx, &api, &secrets, &checks);
        let mut problems = ctx.problems.into_inner();
        problems.extend(missing);
        return match problems.len() {
            0 => Ok(Config { path: path.to_path_buf(), api, secrets }),
            _ => Err(ConfigError::all(path, problems)),
        };
    }
    let mut problems = ctx.problems.into_inner();
    problems.extend(missing);
    Err(ConfigError::all(path, problems))
}

/// Deserializes `value` as a `T`, reporting what does not fit and reading the rest again
/// without it: an unknown key or a value of the wrong type is removed (a list element: its
/// list), so that the next error is found too; `client` or a whole resource that cannot be
/// read is replaced by a stand-in ([`Ctx::stand_ins`]) so that the others still are. `None`
/// when the top level itself does not fit. `prefix` is joined to the keys reported.
fn deserialize_repairing<T: serde::de::DeserializeOwned>(ctx: &Ctx, value: &mut Value, prefix: &str) -> Option<T> {
    let mut reported: Vec<String> = Vec::new();
    // each round removes a value, so the rounds end; the bound is a guard
    for _ in 0..1000 {
        let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        let err = ctx.serde_error(value, e);
        let key = err.key().unwrap_or("(top level)").to_string();
        // A key above one already reported is missing because of that one's removal.
        let known = reported.iter().any(|r| {
            r == &key
                || key == "(top level)"
                || r.strip_prefix(key.as_str()).is_some_and(|rest| rest.starts_with(['.', '[']))
        });
        if !known {
            ctx.report(match err {
                ConfigError::Invalid { path, key, message, suggestion } if !prefix.is_empty() => {
                    ConfigError::Invalid { path, key: join_key(prefix, &key), message, suggestion }
                }
                other => other,
            });
            reported.push(key.clone());
        }
        if !remove_at(value, &key) && !stand_in(ctx, value, &key) {
            return None;
        }
    }
    None
}

/// Replaces `client` or `resources[i]` by a minimal valid value (a resource keeps its name, so
/// that its children still find it), recording the key; false for any other key.
fn stand_in(ctx: &Ctx, root: &mut Value, key: &str) -> bool {
    let value = if key == "client" {
        serde_json::json!({ "base_url": "http://stand-in.invalid" })
    } else if let Some(i) = key.strip_prefix("resources[").and_then(|k| k.strip_suffix(']')?.parse::<usize>().ok()) {
        let name = lookup(root, key).and_then(|r| r.get("name")).and_then(Value::as_str).map(String::from);
        serde_json::json!({ "name": name.unwrap_or_else(|| format!("resources[{i}]")), "endpoint": { "path": "/" } })
    } else {
        return false;
    };
    let Some(slot) = lookup_mut(root, key) else { return false };
    if *slot == value {
        return false;
    }
    *slot = value;
    ctx.stand_ins.borrow_mut().push(key.to_string());
    true
}

/// Which checks [`validate`] makes.
struct Checks {
    /// Every secret had a value (else a URL made from one is not checked).
    secrets_complete: bool,
    /// `client` was read (not a stand-in).
    client: bool,
    /// Resources that are stand-ins.
    skip: Vec<usize>,
}

/// Removes the value at a key path (an element of a list: the whole list); false for the top
/// level, `client` and a whole resource, which are not removed ([`stand_in`]).
fn remove_at(root: &mut Value, key: &str) -> bool {
    let mut key = key;
    while let Some(stripped) = key.strip_suffix(']').and_then(|k| k.rsplit_once('[')).map(|(k, _)| k) {
        key = stripped;
    }
    if key.is_empty() || key == "(top level)" || key == "resources" || key == "client" {
        return false;
    }
    let (parent, last) = match key.rsplit_once('.') {
        Some((p, l)) => (p, l),
        None => ("", key),
    };
    let parent = if parent.is_empty() { Some(root) } else { lookup_mut(root, parent) };
    parent.and_then(Value::as_object_mut).and_then(|m| m.remove(last)).is_some()
}

pub(crate) struct Ctx<'a> {
    pub(crate) path: &'a Path,
    /// The problems found so far, in the order found.
    problems: std::cell::RefCell<Vec<ConfigError>>,
    /// The keys whose values were replaced by stand-ins (see [`stand_in`]).
    stand_ins: std::cell::RefCell<Vec<String>>,
}

impl Ctx<'_> {
    /// Records a problem; loading goes on, to find the others. One per key: a later stage
    /// tripping over a value already reported says nothing new.
    pub(crate) fn report(&self, e: ConfigError) {
        let mut problems = self.problems.borrow_mut();
        if e.key().is_none_or(|k| problems.iter().all(|p| p.key() != Some(k))) {
            problems.push(e);
        }
    }

    /// The value, or `None` with the error recorded.
    pub(crate) fn keep<T>(&self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.report(e)).ok()
    }

    pub(crate) fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            message: message.into(),
            suggestion: None,
        }
    }

    /// Turns a serde error into one that names the key and suggests the nearest valid one.
    fn serde_error(&self, root: &Value, e: serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
        let mut key = e.path().to_string();
        if key == "." {
            key = "(top level)".into();
        }
        let msg = e.inner().to_string();
        let ticks: Vec<&str> = msg.split('`').skip(1).step_by(2).collect();
        let (message, suggestion) = if let Some(rest) = msg.strip_prefix("unknown field ") {
            let field = ticks.first().copied().unwrap_or_default();
            if !(key == field || key.ends_with(&format!(".{field}"))) {
                key = join_key(&key, field);
            }
            let valid = &ticks[1.min(ticks.len())..];
            let _ = rest;
            let list = if valid.is_empty() { "none".to_string() } else { valid.join(", ") };
            (format!("unknown key `{field}` (valid keys here: {list})"), suggest(field, valid.iter().copied()))
        } else if msg.starts_with("unknown variant ") {
            let variant = ticks.first().copied().unwrap_or_default();
            let valid = &ticks[1.min(ticks.len())..];
            if lookup(root, &key).and_then(|v| v.get("type")).and_then(Value::as_str) == Some(variant) {
                key = join_key(&key, "type");
            }
            (
                format!("unknown value `{variant}` (expected one of: {})", valid.join(", ")),
                suggest(variant, valid.iter().copied()),
            )
        } else if let Some(field) = msg.strip_prefix("missing field ") {
            (format!("missing required key {field}"), None)
        } else {
            (msg.clone(), None)
        };
        ConfigError::Invalid { path: self.path.to_path_buf(), key, message, suggestion }
    }
}

fn join_key(base: &str, field: &str) -> String {
    if base.is_empty() || base == "." || base == "(top level)" { field.to_string() } else { format!("{base}.{field}") }
}

/// The steps of a key path like `resources[2].endpoint`: each key, with the list index after it.
fn key_parts(key: &str) -> impl Iterator<Item = (&str, Option<usize>)> {
    key.split('.').filter(|p| !p.is_empty()).map(|part| match part.split_once('[') {
        Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
        None => (part, None),
    })
}

/// Finds the value at a key path like `resources[2].endpoint`.
fn lookup<'a>(root: &'a Value, key: &str) -> Option<&'a Value> {
    key_parts(key).try_fold(root, |cur, (name, idx)| {
        let cur = if name.is_empty() { cur } else { cur.get(name)? };
        match idx {
            Some(i) => cur.get(i),
            None => Some(cur),
        }
    })
}

/// [`lookup`], for changing the value.
fn lookup_mut<'a>(root: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    key_parts(key).try_fold(root, |cur, (name, idx)| {
        let cur = if name.is_empty() { cur } else { cur.get_mut(name)? };
        match idx {
            Some(i) => cur.get_mut(i),
            None => Some(cur),
        }
    })
}

/// dlt's `_merge_resource_endpoints`: resource keys replace the defaults' keys, and so do
/// endpoint keys, except `params` and `json`, which merge one level deep; `columns` merge per
/// column. (A paginator or auth from the defaults is replaced whole, never mixed.)
fn merge_defaults(defaults: &Map<String, Value>, res: Map<String, Value>) -> Map<String, Value> {
    let mut out = defaults.clone();
    let mut endpoint = match defaults.get("endpoint") {
        Some(Value::Object(e)) => e.clone(),
        _ => Map::new(),
    };
    for (k, v) in res {
        match (k.as_str(), v) {
            ("endpoint", Value::Object(ep)) => {
                for (ek, ev) in ep {
                    match (ek.as_str(), endpoint.get_mut(&ek), ev) {
                        ("params" | "json", Some(Value::Object(base)), Value::Object(over)) => base.extend(over),
                        (_, _, ev) => {
                            endpoint.insert(ek, ev);
                        }
                    }
                }
            }
            ("columns", Value::Object(cols)) => match out.get_mut("columns") {
                Some(Value::Object(base)) => {
                    for (name, hint) in cols {
                        match (base.get_mut(&name), hint) {
                            (Some(Value::Object(b)), Value::Object(h)) => b.extend(h),
                            (_, h) => {
                                base.insert(name, h);
                            }
                        }
                    }
                }
                _ => {
                    out.insert(k, Value::Object(cols));
                }
            },
            (_, v) => {
                out.insert(k, v);
            }
        }
    }
    out.insert("endpoint".into(), Value::Object(endpoint));
    out
}

/// The placeholders of a Python format string (`{name}`; `{{` and `}}` are literal braces),
/// with the byte ranges they occupy.
fn format_fields(s: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' if b.get(i + 1) == Some(&b'{') => i += 2,
            b'}' if b.get(i + 1) == Some(&b'}') => i += 2,
            b'{' => match s[i + 1..].find('}') {
                Some(end) => {
                    out.push((i..i + end + 2, s[i + 1..i + 1 + end].trim().to_string()));
                    i += end + 2;
                }
                None => break,
            },
            _ => i += 1,
        }
    }
    out
}

/// dlt's `_bind_path_params`: a path placeholder without a namespace (`/forums/{forum_id}`)
/// takes a static value from `params` or names a `type: resolve` param, which becomes the
/// `{resources.<parent>.<field>}` placeholder it stands for. Bound params leave `params`.
fn bind_path_params(ctx: &Ctx, key: &str, ep: &mut Map<String, Value>) -> Result<(), ConfigError> {
    let Some(Value::String(path)) = ep.get("path").cloned() else { return Ok(()) };
    let mut params = match ep.get("params") {
        Some(Value::Object(p)) => p.clone(),
        _ => Map::new(),
    };
    let mut resolve: Vec<String> = params
        .iter()
        .filter(|(_, v)| v.get("type").and_then(Value::as_str) == Some("resolve"))
        .map(|(k, _)| k.clone())
        .collect();
    for name in &resolve {
        let cfg = params[name].as_object().expect("checked object");
        for k in cfg.keys() {
            if !["type", "resource", "field"].contains(&k.as_str()) {
                return Err(ConfigError::Invalid {
                    path: ctx.path.to_path_buf(),
                    key: format!("{key}.endpoint.params.{name}.{k}"),
                    message: format!("unknown key `{k}` (valid keys here: type, resource, field)"),
                    suggestion: suggest(k, ["type", "resource", "field"]),
                });
            }
        }
        for k in ["resource", "field"] {
            if cfg.get(k).and_then(Value::as_str).is_none_or(|v| v.trim().is_empty()) {
                return Err(ctx.invalid(&format!("{key}.endpoint.params.{name}.{k}"), "missing required key (a name)"));
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    let mut last = 0;
    for (range, field) in format_fields(&path) {
        out.push_str(&path[last..range.start]);
        last = range.end;
        if field.contains('.') {
            out.push_str(&path[range]);
            continue;
        }
        match params.get(&field).cloned() {
            Some(Value::Object(r)) if resolve.contains(&field) => {
                out.push_str(&format!(
                    "{{resources.{}.{}}}",
                    r["resource"].as_str().unwrap_or_default(),
                    r["field"].as_str().unwrap_or_default()
                ));
                resolve.retain(|n| *n != field);
                params.remove(&field);
            }
            Some(v @ (Value::Object(_) | Value::Array(_))) => {
                return Err(ctx.invalid(
                    &format!("{key}.endpoint.params.{field}"),
                    format!(
                        "is bound in the path `{path}` but is {}; a path can bind a value or a `type: resolve` param",
                        if v.is_array() { "a list" } else { "a mapping" }
                    ),
                ));
            }
            Some(v) => {
                out.push_str(&py_str(&v).replace('{', "{{").replace('}', "}}"));
                params.remove(&field);
            }
            None => {
                return Err(ctx.invalid(
                    &format!("{key}.endpoint.path"),
                    format!(
                        "the path `{path}` has a placeholder `{{{field}}}` but `endpoint.params` has no `{field}`; use `{{resources.<parent>.<field>}}` for a value from a parent resource"
                    ),
                ));
            }
        }
    }
    out.push_str(&path[last..]);
    if let Some(name) = resolve.first() {
        return Err(ctx.invalid(
            &format!("{key}.endpoint.params.{name}"),
            format!(
                "a `type: resolve` param must be bound in the path (`{{{name}}}`); to send a parent's field as a query parameter write `{name}: \"{{resources.<parent>.<field>}}\"`"
            ),
        ));
    }
    ep.insert("path".into(), Value::String(out));
    if ep.contains_key("params") {
        ep.insert("params".into(), Value::Object(params));
    }
    Ok(())
}

/// dlt's `single_entity_path`: a path whose last segment holds a placeholder returns one object,
/// so the whole body is the record and there is one page, unless the endpoint says otherwise.
fn single_entity_defaults(ep: &mut Map<String, Value>) {
    let Some(Value::String(path)) = ep.get("path") else { return };
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
    let single = format_fields(last)
        .iter()
        .any(|(_, f)| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
    if single {
        if ep.get("data_selector").is_none_or(Value::is_null) {
            ep.insert("data_selector".into(), Value::String("$".into()));
        }
        if ep.get("paginator").is_none_or(Value::is_null) {
            ep.insert("paginator".into(), serde_json::json!({ "type": "single_page" }));
        }
    }
}

/// dlt's shorthands, expanded in place: resources given as a string, `endpoint` as a string,
/// `paginator` as a string, `auth: {token: ...}`, `write_disposition` as a dict.
fn expand_resource(ctx: &Ctx, key: &str, r: &mut Map<String, Value>) -> Result<(), ConfigError> {
    if let Some(Value::String(p)) = r.get("endpoint") {
        let p = p.clone();
        r.insert("endpoint".into(), serde_json::json!({ "path": p }));
    }
    if let Some(Value::Object(ep)) = r.get_mut("endpoint") {
        expand_legacy_incremental(ctx, key, ep)?;
        if let Some(p) = ep.get_mut("paginator") {
            expand_paginator(p);
        }
        if let Some(a) = ep.get_mut("auth") {
            expand_auth(a);
        }
    }
    if let Some(Value::Object(mut wd)) = r.get("write_disposition").cloned() {
        let disposition = wd.remove("disposition").unwrap_or(Value::Null);
        r.insert("write_disposition".into(), disposition);
        if !wd.is_empty() {
            // the strategy and its options, parsed by `merge::resolve`
            r.insert("merge_options".into(), Value::Object(wd));
        }
    }
    Ok(())
}

/// dlt's legacy form `params: {name: {type: incremental, cursor_path: ...}}` becomes
/// `incremental` with `start_param: name`.
fn expand_legacy_incremental(ctx: &Ctx, key: &str, ep: &mut Map<String, Value>) -> Result<(), ConfigError> {
    let Some(Value::Object(params)) = ep.get_mut("params") else { return Ok(()) };
    let legacy: Vec<String> = params
        .iter()
        .filter(|(_, v)| v.get("type").and_then(Value::as_str) == Some("incremental"))
        .map(|(k, _)| k.clone())
        .collect();
    match legacy.as_slice() {
        [] => Ok(()),
        [name] => {
            let mut inc = params.remove(name).expect("present");
            let obj = inc.as_object_mut().expect("checked object");
            obj.remove("type");
            obj.insert("start_param".into(), Value::String(name.clone()));
            if ep.contains_key("incremental") {
                return Err(ctx.invalid(
                    &format!("{key}.endpoint.params.{name}"),
                    "use either `endpoint.incremental` or an incremental param, not both",
                ));
            }
            ep.insert("incremental".into(), inc);
            Ok(())
        }
        _ => Err(ctx.invalid(&format!("{key}.endpoint.params"), "only one param can be of `type: incremental`")),
    }
}

fn expand_paginator(p: &mut Value) {
    if let Value::String(s) = p {
        *p = serde_json::json!({ "type": s.clone() });
    }
}

fn expand_auth(a: &mut Value) {
    if let Value::Object(m) = a
        && !m.contains_key("type")
        && m.contains_key("token")
    {
        m.insert("type".into(), "bearer".into());
    }
}

/// Applies `resource_defaults` and dlt's shorthands; what does not fit is reported and left
/// out (a `resource_defaults` key that does not fit is not merged into any resource).
fn prepare(ctx: &Ctx, root: &mut Value) {
    let obj = root.as_object_mut().expect("checked object");
    if let Some(client) = obj.get_mut("client").and_then(Value::as_object_mut) {
        if let Some(p) = client.get_mut("paginator") {
            expand_paginator(p);
        }
        if let Some(a) = client.get_mut("auth") {
            expand_auth(a);
        }
    }
    let defaults = match obj.get_mut("resource_defaults") {
        None => None,
        Some(Value::Object(dm)) => {
            if dm.remove("name").is_some() {
                ctx.report(ctx.invalid("resource_defaults.name", "a default cannot set `name`"));
            }
            // Check the defaults on their own, so that an error names `resource_defaults`.
            let mut probe = dm.clone();
            probe.insert("name".into(), "resource_defaults".into());
            ctx.keep(expand_resource(ctx, "resource_defaults", &mut probe));
            probe.entry("endpoint").or_insert_with(|| Value::Object(Map::new()));
            let mut probe = Value::Object(probe);
            let fits = deserialize_repairing::<crate::model::Resource>(ctx, &mut probe, "resource_defaults").is_some();
            let Value::Object(mut probe) = probe else { unreachable!("a mapping stays one") };
            probe.remove("name");
            fits.then_some(probe)
        }
        Some(_) => {
            ctx.report(ctx.invalid("resource_defaults", "must be a mapping of resource keys"));
            None
        }
    };
    let Some(resources) = obj.get_mut("resources") else { return };
    let Value::Array(list) = resources else {
        ctx.report(ctx.invalid("resources", "must be a list of resources"));
        return;
    };
    for (i, r) in list.iter_mut().enumerate() {
        let key = format!("resources[{i}]");
        if let Value::String(name) = r {
            *r = serde_json::json!({ "name": name.clone(), "endpoint": { "path": name.clone() } });
        }
        let Value::Object(m) = r else {
            ctx.report(ctx.invalid(&key, "a resource must be a name or a mapping with `name` and `endpoint`"));
            *r = serde_json::json!({ "name": key.clone(), "endpoint": { "path": "/" } });
            ctx.stand_ins.borrow_mut().push(key);
            continue;
        };
        ctx.keep(expand_resource(ctx, &key, m));
        if let Some(dm) = &defaults {
            *m = merge_defaults(dm, std::mem::take(m));
        }
        let name = m.get("name").cloned();
        let ep = m.entry("endpoint").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(ep) = ep {
            if let (false, Some(Value::String(name))) = (ep.contains_key("path"), name) {
                ep.insert("path".into(), Value::String(name));
            }
            ctx.keep(bind_path_params(ctx, &key, ep));
            single_entity_defaults(ep);
        }
    }
}

fn collect_placeholders(ctx: &Ctx, v: &Value, key: &mut String, names: &mut BTreeMap<String, String>) {
    match v {
        Value::String(s) if s.contains('{') || s.contains('}') => {
            // expressions and selectors are not templates
            if key.ends_with("stop_condition") || key.ends_with("data_selector") {
                return;
            }
            let pieces = match parse_template(s) {
                Ok(p) => p,
                Err(m) => return ctx.report(ctx.invalid(key, m)),
            };
            for p in pieces {
                if let Piece::Placeholder(ns, name) = p {
                    match ns.as_str() {
                        "secrets" => {
                            names.entry(name).or_insert_with(|| key.clone());
                        }
                        "incremental"
                            if ["start_value", "last_value", "end_value", "initial_value"].contains(&name.as_str()) => {
                        }
                        "incremental" => {
                            ctx.report(ConfigError::Invalid {
                                path: ctx.path.to_path_buf(),
                                key: key.clone(),
                                message: format!("unknown incremental value `{{incremental.{name}}}`"),
                                suggestion: suggest(&name, ["start_value", "last_value", "end_value", "initial_value"])
                                    .map(|s| format!("{{incremental.{s}}}")),
                            });
                        }
                        "resources" => {
                            if !name.split_once('.').is_some_and(|(r, f)| !r.is_empty() && !f.is_empty()) {
                                ctx.report(ctx.invalid(
                                    key,
                                    format!("`{{resources.{name}}}` must look like `{{resources.<parent>.<field>}}`"),
                                ));
                            }
                        }
                        other => {
                            ctx.report(ConfigError::Invalid {
                                path: ctx.path.to_path_buf(),
                                key: key.clone(),
                                message: format!("unknown placeholder namespace `{other}` in `{{{other}.{name}}}`"),
                                suggestion: suggest(other, ["secrets", "resources", "incremental"])
                                    .map(|s| format!("{{{s}.{name}}}")),
                            });
                        }
                    }
                }
            }
        }
        Value::Object(m) => {
            for (k, child) in m {
                let len = key.len();
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
                collect_placeholders(ctx, child, key, names);
                key.truncate(len);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let len = key.len();
                key.push_str(&format!("[{i}]"));
                collect_placeholders(ctx, child, key, names);
                key.truncate(len);
            }
        }
        _ => {}
    }
}

/// dlt's dependency graph: a resource whose requests use `{resources.<parent>.<field>}` is
/// fetched once per record of that one parent. Checks the parent exists, is the only one, and
/// that no chain of parents loops.
fn link_parents(ctx: &Ctx, api: &mut RestApiConfig) {
    let names: Vec<String> = api.resources.iter().map(|r| r.name.clone()).collect();
    for (i, res) in api.resources.iter_mut().enumerate() {
        let key = format!("resources[{i}]");
        let parents: std::collections::BTreeSet<String> =
            res.endpoint.parent_refs().into_iter().map(|(r, _)| r).collect();
        let mut it = parents.iter();
        match (it.next(), it.next()) {
            (None, _) => {
                if res.include_from_parent.is_some() {
                    ctx.report(ctx.invalid(
                        &format!("{key}.include_from_parent"),
                        format!(
                            "resource `{}` has no parent: no `{{resources.<parent>.<field>}}` in its endpoint",
                            res.name
                        ),
                    ));
                }
            }
            (Some(a), Some(b)) => {
                ctx.report(ctx.invalid(
                    &format!("{key}.endpoint"),
                    format!("refers to two parent resources, `{a}` and `{b}`; a resource can depend on one"),
                ));
            }
            (Some(p), None) => {
                if *p == res.name {
                    ctx.report(ctx.invalid(&format!("{key}.endpoint"), format!("resource `{p}` refers to itself")));
                }
                if !names.contains(p) {
                    ctx.report(ConfigError::Invalid {
                        path: ctx.path.to_path_buf(),
                        key: format!("{key}.endpoint"),
                        message: format!("refers to a parent resource `{p}` that is not defined"),
                        suggestion: suggest(p, names.iter().map(String::as_str)),
                    });
                }
                res.parent = Some(p.clone());
            }
        }
    }
    for (i, res) in api.resources.iter().enumerate() {
        let mut seen = vec![res.name.as_str()];
        let mut cur = res.parent.as_deref();
        while let Some(p) = cur {
            if seen.contains(&p) {
                seen.push(p);
                ctx.report(ctx.invalid(
                    &format!("resources[{i}].endpoint"),
                    format!("parent resources form a loop: {}", seen.join(" -> ")),
                ));
                // the other resources on the loop (or led into it) would say it again
                return;
            }
            seen.push(p);
            cur = api.resources.iter().find(|r| r.name == p).and_then(|r| r.parent.as_deref());
        }
    }
}

/// `incremental.window`: a size above zero, a start to split from, and a way to send each
/// window's start and end; numbers need an `end_value` (there is no "now" for them).
fn check_window(
    ctx: &Ctx,
    key: &str,
    res: &crate::model::Resource,
    inc: &IncrementalConfig,
    window: std::time::Duration,
) -> Result<(), ConfigError> {
    let wkey = format!("{key}.window");
    if window.is_zero() {
        return Err(ctx.invalid(&wkey, "must be more than zero"));
    }
    let Some(initial) = &inc.initial_value else {
        return Err(ctx.invalid(&wkey, "needs `initial_value`: the first run's range starts there"));
    };
    match initial {
        Value::String(s) if resttap_schema::timestamp::parse_timestamp(s).is_some() => {}
        Value::Number(_) if inc.end_value.as_ref().is_some_and(Value::is_number) => {}
        Value::Number(_) => {
            return Err(ctx.invalid(&wkey, "on a numeric cursor needs a numeric `end_value` (where the windows stop)"));
        }
        other => {
            return Err(ctx.invalid(
                &wkey,
                format!("needs an `initial_value` that is an ISO 8601 date-time or a number, not `{other}`"),
            ));
        }
    }
    if inc.last_value_func != LastValueFunc::Max {
        return Err(ctx.invalid(&wkey, "needs `last_value_func: max` (windows go forward in time)"));
    }
    if let Some((parent, _)) = res.endpoint.parent_refs().into_iter().next() {
        return Err(ctx.invalid(
            &wkey,
            format!(
                "is for a resource's own range; this one's requests come from its parent `{parent}`'s records (windows of child resources are not supported)"
            ),
        ));
    }
    let request = request_texts(res);
    let texts = |name: &str| {
        let needle = format!("{{incremental.{name}}}");
        request.iter().any(|t| t.contains(&needle))
    };
    if inc.start_param.is_none() && !texts("start_value") {
        return Err(ctx.invalid(
            &wkey,
            "needs `start_param` (or `{incremental.start_value}` in the request) to send each window's start",
        ));
    }
    if inc.end_param.is_none() && !texts("end_value") {
        return Err(ctx.invalid(
            &wkey,
            "needs `end_param` (or `{incremental.end_value}` in the request) to send each window's end",
        ));
    }
    Ok(())
}

fn uses_incremental_placeholder(res: &crate::model::Resource) -> bool {
    request_texts(res).iter().any(|t| t.contains("{incremental."))
}

/// Every part of a resource's request that placeholders can be in: the path, the params, the
/// headers, the body.
fn request_texts(res: &crate::model::Resource) -> Vec<String> {
    let ep = &res.endpoint;
    let mut texts: Vec<String> = ep.path.iter().cloned().collect();
    texts.extend(ep.params.values().map(Value::to_string));
    texts.extend(ep.headers.values().cloned());
    texts.extend(ep.json.iter().chain(ep.data.iter()).map(Value::to_string));
    texts
}

/// Python's `str()` of a scalar, which is what dlt (through `str.format` and `requests`) sends
/// for a value bound into a path or a form field: `True`, `None`, `5`, the text itself.
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// Converts dlt's JSONPath shorthand (`forums`, `data.items`) to RFC 9535 (`$.forums`).
pub fn to_jsonpath(selector: &str) -> String {
    let s = selector.trim();
    if s.starts_with('$') {
        s.to_string()
    } else if s.starts_with('[') {
        format!("${s}")
    } else {
        format!("$.{s}")
    }
}

fn check_paginator(ctx: &Ctx, key: &str, p: &PaginatorConfig) -> Result<(), ConfigError> {
    if let Some(cond) = p.stop_condition() {
        resttap_expr::Expr::parse(cond).map_err(|e| ctx.invalid(&format!("{key}.stop_condition"), e.to_string()))?;
    }
    match p {
        PaginatorConfig::Cursor { cursor_param, cursor_body_path, has_more_path, cursor_path, .. } => {
            if cursor_param.is_some() && cursor_body_path.is_some() {
                return Err(ctx.invalid(key, "set either `cursor_param` or `cursor_body_path`, not both"));
            }
            check_body_path(ctx, key, "cursor_body_path", cursor_body_path)?;
            for (k, path) in [("cursor_path", Some(cursor_path)), ("has_more_path", has_more_path.as_ref())] {
                if let Some(path) = path {
                    serde_json_path::JsonPath::parse(&to_jsonpath(path))
                        .map_err(|e| ctx.invalid(&format!("{key}.{k}"), format!("invalid JSONPath `{path}`: {e}")))?;
                }
            }
            Ok(())
        }
        PaginatorConfig::Offset {
            offset_body_path,
            limit_body_path,
            total_path,
            maximum_offset,
            stop_after_empty_page,
            has_more_path,
            limit,
            ..
        } => {
            for (k, p) in [("offset_body_path", offset_body_path), ("limit_body_path", limit_body_path)] {
                check_body_path(ctx, key, k, p)?;
            }
            if *limit == 0 {
                return Err(ctx.invalid(&format!("{key}.limit"), "must be at least 1"));
            }
            check_range(ctx, key, total_path, maximum_offset, *stop_after_empty_page, has_more_path)
        }
        PaginatorConfig::PageNumber {
            page_body_path,
            total_path,
            maximum_page,
            stop_after_empty_page,
            has_more_path,
            ..
        } => {
            check_body_path(ctx, key, "page_body_path", page_body_path)?;
            check_range(ctx, key, total_path, maximum_page, *stop_after_empty_page, has_more_path)
        }
        PaginatorConfig::JsonLink { next_url_path: p, .. } => {
            serde_json_path::JsonPath::parse(&to_jsonpath(p))
                .map_err(|e| ctx.invalid(&format!("{key}.next_url_path"), format!("invalid JSONPath `{p}`: {e}")))?;
            Ok(())
        }
        PaginatorConfig::HeaderLink { .. }
        | PaginatorConfig::HeaderCursor { .. }
        | PaginatorConfig::SinglePage { .. }
        | PaginatorConfig::Auto { .. } => Ok(()),
    }
}

/// A body path is dot-separated keys (`page.offset`), where the paginator writes its value
/// into the JSON body.
fn check_body_path(ctx: &Ctx, key: &str, name: &str, path: &Option<String>) -> Result<(), ConfigError> {
    match path {
        Some(p) if p.split('.').any(|k| k.trim().is_empty()) => Err(ctx
            .invalid(&format!("{key}.{name}"), format!("`{p}` must be dot-separated key names such as `page.offset`"))),
        _ => Ok(()),
    }
}

/// dlt's rule for offset and page-number paginators: something must end the pagination.
fn check_range(
    ctx: &Ctx,
    key: &str,
    total_path: &Option<String>,
    maximum: &Option<u64>,
    stop_after_empty_page: bool,
    has_more_path: &Option<String>,
) -> Result<(), ConfigError> {
    if total_path.is_none() && maximum.is_none() && has_more_path.is_none() && !stop_after_empty_page {
        return Err(ctx.invalid(
            key,
            "one of `total_path`, a maximum, `has_more_path` or `stop_after_empty_page: true` must end the pagination",
        ));
    }
    for (k, p) in [("total_path", total_path), ("has_more_path", has_more_path)] {
        if let Some(p) = p {
            serde_json_path::JsonPath::parse(&to_jsonpath(p))
                .map_err(|e| ctx.invalid(&format!("{key}.{k}"), format!("invalid JSONPath `{p}`: {e}")))?;
        }
    }
    Ok(())
}

fn check_auth(ctx: &Ctx, key: &str, a: &AuthConfig) -> Result<(), ConfigError> {
    if let AuthConfig::Oauth2ClientCredentials { access_token_request_data: Some(d), .. } = a
        && !d.is_object()
    {
        return Err(ctx.invalid(
            &format!("{key}.access_token_request_data"),
            "must be a mapping of form fields sent with the token request",
        ));
    }
    Ok(())
}

/// The checks the model's types do not make; each problem is reported.
fn validate(ctx: &Ctx, api: &RestApiConfig, secrets: &Secrets, checks: &Checks) {
    if checks.client {
        validate_client(ctx, api, secrets, checks);
    }
    validate_resources(ctx, api, &checks.skip);
}

fn validate_client(ctx: &Ctx, api: &RestApiConfig, secrets: &Secrets, checks: &Checks) {
    let base = render(&api.client.base_url, secrets);
    match url::Url::parse(base.expose()) {
        _ if !checks.secrets_complete && api.client.base_url.contains("{secrets.") => {}
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
        Ok(u) => {
            ctx.report(ctx.invalid("client.base_url", format!("must be an http or https URL, not `{}:`", u.scheme())));
        }
        Err(e) => {
            let shown = if base.is_secret() { "(from a secret)".to_string() } else { format!("`{}`", base.expose()) };
            ctx.report(ctx.invalid("client.base_url", format!("{shown} is not a valid URL: {e}")));
        }
    }
    // NaN is refused too
    if api.client.timeout.is_nan() || api.client.timeout <= 0.0 {
        ctx.report(ctx.invalid("client.timeout", "must be a positive number of seconds"));
    }
    if api.client.read_timeout.is_nan() || api.client.read_timeout <= 0.0 {
        ctx.report(ctx.invalid("client.read_timeout", "must be a positive number of seconds"));
    }
    if api.client.max_response_bytes == 0 {
        ctx.report(ctx.invalid("client.max_response_bytes", "must be a positive number of bytes"));
    }
    if let Some(rl) = &api.client.rate_limit {
        if rl.requests == 0 || rl.per.is_zero() {
            ctx.report(ctx.invalid("client.rate_limit", "`requests` and `per` must be more than zero"));
        }
        if rl.burst == Some(0) {
            ctx.report(ctx.invalid("client.rate_limit.burst", "must be at least 1 (or left out: the whole budget)"));
        }
    }
    if api.client.page_concurrency == 0 {
        ctx.report(ctx.invalid("client.page_concurrency", "must be at least 1 (1: one page at a time)"));
    }
    let r = &api.client.retry;
    if [r.backoff_factor, r.max_delay].iter().any(|x| x.is_nan() || *x < 0.0) {
        ctx.report(ctx.invalid("client.retry", "`backoff_factor` and `max_delay` must be zero or more seconds"));
    }
    if api.client.session.is_some() {
        ctx.report(
            ctx.invalid("client.session", "is a Python requests.Session in dlt; it has no meaning in a config file"),
        );
    }
    if let Some(p) = &api.client.paginator {
        ctx.keep(check_paginator(ctx, "client.paginator", p));
    }
    if let Some(a) = &api.client.auth {
        ctx.keep(check_auth(ctx, "client.auth", a));
    }
}

fn validate_resources(ctx: &Ctx, api: &RestApiConfig, skip: &[usize]) {
    if api.resources.is_empty() {
        ctx.report(ctx.invalid("resources", "lists no resource"));
    }
    let mut seen = BTreeMap::new();
    for (i, res) in api.resources.iter().enumerate() {
        if skip.contains(&i) {
            continue;
        }
        let key = format!("resources[{i}]");
        if res.name.trim().is_empty() {
            ctx.report(ctx.invalid(&format!("{key}.name"), "must not be empty"));
        }
        if let Some(j) = seen.insert(res.name.clone(), i) {
            ctx.report(
                ctx.invalid(&format!("{key}.name"), format!("`{}` is also the name of resources[{j}]", res.name)),
            );
        }
        let ep = &res.endpoint;
        if let Some(p) = &ep.paginator {
            ctx.keep(check_paginator(ctx, &format!("{key}.endpoint.paginator"), p));
        }
        if let Some(a) = &ep.auth {
            ctx.keep(check_auth(ctx, &format!("{key}.endpoint.auth"), a));
        }
        if let Some(sel) = &ep.data_selector {
            ctx.keep(serde_json_path::JsonPath::parse(&to_jsonpath(sel)).map_err(|e| {
                ctx.invalid(&format!("{key}.endpoint.data_selector"), format!("invalid JSONPath `{sel}`: {e}"))
            }));
        }
        for (k, v) in &ep.params {
            if v.is_object() || v.is_array() {
                ctx.report(ctx.invalid(
                    &format!("{key}.endpoint.params.{k}"),
                    "a query parameter must be a single value; a `type: resolve` param must be bound in the path, and \
                     a parent's field in a query parameter is written `\"{resources.<parent>.<field>}\"`",
                ));
            }
        }
        match &ep.data {
            None | Some(Value::String(_)) => {}
            Some(Value::Object(m)) if m.values().all(|v| !v.is_object() && !v.is_array()) => {}
            Some(_) => {
                ctx.report(ctx.invalid(
                    &format!("{key}.endpoint.data"),
                    "must be a mapping of form fields with single values (sent form-encoded) or a string (sent as is)",
                ));
            }
        }
        if ep.data.is_some() && ep.json.is_some() {
            ctx.report(ctx.invalid(&format!("{key}.endpoint"), "set either `json` or `data`, not both"));
        }
        if let Some(steps) = &res.processing_steps {
            ctx.keep(
                crate::steps::compile(steps)
                    .map_err(|e| ctx.invalid(&format!("{key}.processing_steps{}", e.key), e.message)),
            );
        }
        if let Some(inc) = &ep.incremental {
            ctx.keep(serde_json_path::JsonPath::parse(&to_jsonpath(&inc.cursor_path)).map_err(|e| {
                ctx.invalid(
                    &format!("{key}.endpoint.incremental.cursor_path"),
                    format!("invalid JSONPath `{}`: {e}", inc.cursor_path),
                )
            }));
            if inc.lag.is_some_and(|l| l.is_nan() || l < 0.0) {
                ctx.report(ctx.invalid(&format!("{key}.endpoint.incremental.lag"), "must be zero or more"));
            }
            if let Some(w) = inc.window {
                ctx.keep(check_window(ctx, &format!("{key}.endpoint.incremental"), res, inc, w));
            }
        } else if uses_incremental_placeholder(res) {
            ctx.report(ctx.invalid(
                &format!("{key}.endpoint"),
                "uses `{incremental.…}` placeholders but has no `incremental` section",
            ));
        }
        for (j, a) in ep.response_actions.iter().flatten().enumerate() {
            let k = format!("{key}.endpoint.response_actions[{j}]");
            if a.action != "ignore" {
                ctx.report(ctx.invalid(
                    &format!("{k}.action"),
                    format!(
                        "`{}` is not supported: only `ignore` (dlt's Python hooks have no meaning in a file)",
                        a.action
                    ),
                ));
            }
            if a.status_code.is_none() && a.content.is_none() {
                ctx.report(ctx.invalid(&k, "needs `status_code`, `content` or both"));
            }
            if a.status_code.is_some() && a.status().is_none() {
                ctx.report(ctx.invalid(&format!("{k}.status_code"), "must be an HTTP status such as 404"));
            }
        }
        if res.parent_table_name.is_some() {
            ctx.report(ctx.invalid(&format!("{key}.parent_table_name"), "is not supported by resttap yet"));
        }
        if res.primary_key.iter().any(|k| k.trim().is_empty()) {
            ctx.report(ctx.invalid(&format!("{key}.primary_key"), "column names must not be empty"));
        }
    }
}

#[cfg(test)]
mod tests;
