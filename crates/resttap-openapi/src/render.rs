//! The plan as a commented YAML configuration.

use std::fmt::Write;

use serde_json::{Map, Value, json};

use crate::analyze::{Auth, Pagination, Plan, ResourcePlan, selector};

/// The paginator most resources share, when one is clearly the most common (as
/// dlt-init-openapi picks a global paginator): it goes to `client.paginator`.
pub(crate) fn shared_paginator(plan: &Plan) -> Option<Value> {
    let mut counts: Vec<(Value, usize)> = Vec::new();
    for r in &plan.resources {
        if r.pagination == Pagination::Single {
            continue;
        }
        let c = r.pagination.config();
        match counts.iter_mut().find(|(v, _)| *v == c) {
            Some(e) => e.1 += 1,
            None => counts.push((c, 1)),
        }
    }
    counts.sort_by_key(|e| std::cmp::Reverse(e.1));
    match counts.as_slice() {
        [(v, n), rest @ ..] if *n >= 2 && rest.first().is_none_or(|s| s.1 < *n) => Some(v.clone()),
        _ => None,
    }
}

pub(crate) fn auth_config(plan: &Plan) -> Option<Value> {
    let secret = |name: &str| format!("{{secrets.sources.{}.{name}}}", plan.source);
    Some(match plan.auth.as_ref()? {
        Auth::Bearer => json!({"type": "bearer", "token": secret("token")}),
        Auth::ApiKey { name, location } => {
            json!({"type": "api_key", "name": name, "api_key": secret("api_key"), "location": location})
        }
        Auth::Basic => json!({"type": "http_basic", "username": secret("username"), "password": secret("password")}),
        Auth::OAuth2ClientCredentials { token_url, .. } => json!({
            "type": "oauth2_client_credentials",
            "access_token_url": token_url,
            "client_id": secret("client_id"),
            "client_secret": secret("client_secret"),
        }),
    })
}

/// A resource's mapping in the configuration.
pub(crate) fn resource_config(plan: &Plan, r: &ResourcePlan, shared: Option<&Value>) -> Value {
    let mut res = Map::new();
    res.insert("name".into(), json!(r.name));
    match &r.primary_key {
        Some(pk) => {
            res.insert("primary_key".into(), json!(pk));
        }
        None => {
            res.insert("write_disposition".into(), json!("append"));
        }
    }
    let mut ep = Map::new();
    ep.insert("path".into(), json!(r.path));
    let mut params = Map::new();
    if let Some(pi) = r.parent {
        for rv in &r.resolves {
            params.insert(
                rv.param.clone(),
                json!({"type": "resolve", "resource": plan.resources[pi].name, "field": rv.field}),
            );
        }
    }
    for (k, v) in r.fixed_path.iter().chain(r.params.iter()) {
        let v = match v {
            Value::String(s) => Value::String(literal(s)),
            other => other.clone(),
        };
        params.insert(k.clone(), v);
    }
    if !params.is_empty() {
        ep.insert("params".into(), Value::Object(params));
    }
    if !r.headers.is_empty() {
        let h: Map<String, Value> = r.headers.iter().map(|(k, v)| (k.clone(), json!(literal(v)))).collect();
        ep.insert("headers".into(), Value::Object(h));
    }
    ep.insert("data_selector".into(), json!(selector(&r.data_path)));
    let p = r.pagination.config();
    if shared != Some(&p) {
        ep.insert("paginator".into(), p);
    }
    res.insert("endpoint".into(), Value::Object(ep));
    Value::Object(res)
}

/// The configuration as a value (what the YAML says, without its comments).
pub(crate) fn config(plan: &Plan) -> Value {
    let shared = shared_paginator(plan);
    let mut client = Map::new();
    client.insert("base_url".into(), json!(plan.base_url));
    if let Some(a) = auth_config(plan) {
        client.insert("auth".into(), a);
    }
    if let Some(p) = &shared {
        client.insert("paginator".into(), p.clone());
    }
    let resources: Vec<Value> = plan.resources.iter().map(|r| resource_config(plan, r, shared.as_ref())).collect();
    json!({
        "client": Value::Object(client),
        "resource_defaults": {"write_disposition": "merge"},
        "resources": resources,
    })
}

pub(crate) fn yaml(plan: &Plan) -> String {
    let cfg = config(plan);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# resttap configuration (dlt rest_api_source) generated from the OpenAPI spec \"{}\".",
        one_line(&plan.title)
    );
    let _ = writeln!(
        out,
        "# {} resources mapped, {} endpoints skipped (listed at the end).",
        plan.resources.len(),
        plan.skipped.len()
    );
    let secrets = plan.secret_names();
    if !secrets.is_empty() {
        let env: Vec<String> = secrets.iter().map(|s| s.to_uppercase().replace('.', "__")).collect();
        let _ = writeln!(out, "# Secrets: set {} in the environment,", env.join(", "));
        let _ = writeln!(out, "# or in .dlt/secrets.toml under [sources.{}].", plan.source);
    }
    if let Some(n) = &plan.auth_note {
        let _ = writeln!(out, "# Auth: {}", one_line(n));
    }
    out.push_str("client:\n");
    emit_map(&mut out, 2, cfg["client"].as_object().expect("object"));
    out.push_str("resource_defaults:\n");
    emit_map(&mut out, 2, cfg["resource_defaults"].as_object().expect("object"));
    out.push_str("resources:\n");
    for (r, v) in plan.resources.iter().zip(cfg["resources"].as_array().expect("array")) {
        let _ = write!(out, "  # GET {}", r.path);
        if let Some(s) = &r.summary {
            let _ = write!(out, " — {}", one_line(s));
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "  # paginator: {}{}",
            r.pagination.kind(),
            if r.primary_key.is_none() { "; no primary key found: appended" } else { "" }
        );
        if let Some(pi) = r.parent {
            let _ = writeln!(out, "  # one request per record of `{}`", plan.resources[pi].name);
        }
        for n in &r.notes {
            let _ = writeln!(out, "  # {}", one_line(n));
        }
        out.push_str("  - ");
        emit_map_after_dash(&mut out, 4, v.as_object().expect("object"));
    }
    if !plan.skipped.is_empty() {
        out.push_str("\n# Endpoints not mapped:\n");
        for s in &plan.skipped {
            let _ = writeln!(out, "#   {}: {}", one_line(&s.method_path), one_line(&s.reason));
        }
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn emit_map(out: &mut String, indent: usize, m: &Map<String, Value>) {
    for (k, v) in m {
        out.push_str(&" ".repeat(indent));
        emit_entry(out, indent, k, v);
    }
}

fn emit_map_after_dash(out: &mut String, indent: usize, m: &Map<String, Value>) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push_str(&" ".repeat(indent));
        }
        emit_entry(out, indent, k, v);
    }
}

fn emit_entry(out: &mut String, indent: usize, k: &str, v: &Value) {
    out.push_str(&key(k));
    out.push(':');
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            emit_map(out, indent + 2, m);
        }
        Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
            out.push('\n');
            for x in a {
                out.push_str(&" ".repeat(indent + 2));
                out.push_str("- ");
                match x {
                    Value::Object(m) if !m.is_empty() => emit_map_after_dash(out, indent + 4, m),
                    other => {
                        out.push_str(&flow(other));
                        out.push('\n');
                    }
                }
            }
        }
        other => {
            out.push(' ');
            out.push_str(&flow(other));
            out.push('\n');
        }
    }
}

/// A value on one line: scalars, `[a, b]`, `{}`.
fn flow(v: &Value) -> String {
    match v {
        Value::String(s) => scalar(s),
        Value::Array(a) => format!("[{}]", a.iter().map(flow).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => {
            format!("{{{}}}", m.iter().map(|(k, v)| format!("{}: {}", key(k), flow(v))).collect::<Vec<_>>().join(", "))
        }
        other => other.to_string(),
    }
}

fn is_plain(s: &str) -> bool {
    const RESERVED: &[&str] = &["true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"];
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str())
}

fn scalar(s: &str) -> String {
    if is_plain(s) { s.to_string() } else { serde_json::to_string(s).expect("a string serializes") }
}

fn key(k: &str) -> String {
    scalar(k)
}

/// A value sent as written: braces doubled, as the configuration's templates read them.
fn literal(s: &str) -> String {
    s.replace('{', "{{").replace('}', "}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_round_trip_through_yaml() {
        let v = json!({
            "a": "plain_text",
            "b": "{secrets.x.y}",
            "c": "$",
            "d": "yes",
            "e": "12",
            "f": "with: colon # and hash",
            "g": null,
            "h": 5,
            "i": "/v1/forums/{forum_id}/topics",
            "Intercom-Version": "2.11",
            "j": {"k": [1, "x"], "l": {}},
            "m": [{"n": 1, "o": {"p": true}}, {"q": "r"}],
            "s": "ünïcode \"quoted\"",
        });
        let mut out = String::new();
        emit_map(&mut out, 0, v.as_object().unwrap());
        let back: Value = serde_norway::from_str(&out).unwrap();
        assert_eq!(back, v, "{out}");
    }
}
