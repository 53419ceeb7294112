//! Names: resource and table names from paths (as dlt-init-openapi derives them), snake_case,
//! singular forms, and the loose comparison of field and parameter names.

/// `FlowSid`, `flow-sid`, `flow_sid` -> `flow_sid`; anything else than ASCII letters and digits
/// becomes `_`.
pub(crate) fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && i > 0 {
                let prev = chars[i - 1];
                let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
                if prev.is_ascii_lowercase() || prev.is_ascii_digit() || (prev.is_ascii_uppercase() && next_lower) {
                    out.push('_');
                }
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push('_');
        }
    }
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        if c == '_' && (collapsed.is_empty() || collapsed.ends_with('_')) {
            continue;
        }
        collapsed.push(c);
    }
    collapsed.trim_end_matches('_').to_string()
}

/// A name fit for a table: snake_case, not empty, not starting with a digit.
pub(crate) fn table_name(s: &str) -> String {
    let n = snake_case(s);
    if n.is_empty() {
        "resource".into()
    } else if n.starts_with(|c: char| c.is_ascii_digit()) {
        format!("r_{n}")
    } else {
        n
    }
}

/// English singular of a plural word, for the common cases (`forums` -> `forum`,
/// `categories` -> `category`, `addresses` -> `address`); other words are left alone.
pub(crate) fn singular(word: &str) -> String {
    let lower = word.to_ascii_lowercase();
    let keep = ["status", "news", "data", "series", "species", "analysis", "alias", "access", "business"];
    if keep.iter().any(|k| lower.ends_with(k)) {
        return word.to_string();
    }
    if let Some(stem) = lower.strip_suffix("ies")
        && stem.len() > 1
    {
        return format!("{}y", &word[..stem.len()]);
    }
    for suffix in ["sses", "shes", "ches", "xes", "zes"] {
        if lower.ends_with(suffix) {
            return word[..word.len() - 2].to_string();
        }
    }
    if lower.ends_with('s')
        && !lower.ends_with("ss")
        && !lower.ends_with("us")
        && !lower.ends_with("is")
        && word.len() > 1
    {
        return word[..word.len() - 1].to_string();
    }
    word.to_string()
}

/// Names compared loosely: case, `_` and `-` ignored (`FlowSid` ~ `flow_sid`).
pub(crate) fn loose(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

/// The segments of a path (`/v1/pets/{id}` -> `["v1", "pets", "{id}"]`).
pub(crate) fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// The name of a `{param}` segment.
pub(crate) fn param_name(seg: &str) -> Option<&str> {
    let s = seg.trim();
    if s.len() > 2 && s.starts_with('{') && s.ends_with('}') { Some(s[1..s.len() - 1].trim()) } else { None }
}

/// Every `{param}` in a path, in order (also inside a segment: `/files/{name}.json`).
pub(crate) fn path_params(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else { break };
        out.push(rest[start + 1..start + end].trim().to_string());
        rest = &rest[start + end + 1..];
    }
    out
}

/// The leading segments every path shares (none of them a parameter), as dlt-init-openapi strips
/// them (`/api/v2/users`, `/api/v2/teams` -> `api`, `v2`).
pub(crate) fn common_prefix(paths: &[&str]) -> usize {
    let split: Vec<Vec<&str>> = paths.iter().map(|p| segments(p)).collect();
    let Some(first) = split.first() else { return 0 };
    let mut n = 0;
    'outer: while n < first.len() {
        let seg = first[n];
        if param_name(seg).is_some() || seg.contains('{') {
            break;
        }
        for s in &split {
            // keep at least one fixed segment for every path's name
            let fixed_after = s.iter().skip(n + 1).any(|x| !x.contains('{'));
            if s.get(n) != Some(&seg) || !fixed_after {
                break 'outer;
            }
        }
        n += 1;
    }
    n
}

/// The resource name for a path: its fixed segments after the common prefix, all but the last
/// in the singular (`/v2/Flows/{Sid}/Revisions` -> `flow_revisions`).
pub(crate) fn resource_name(path: &str, prefix: usize) -> String {
    let segs = segments(path);
    let fixed: Vec<&str> = segs.iter().skip(prefix).copied().filter(|s| !s.contains('{')).collect();
    let fixed: Vec<&str> =
        if fixed.is_empty() { segs.iter().copied().filter(|s| !s.contains('{')).collect() } else { fixed };
    let n = fixed.len();
    let parts: Vec<String> = fixed
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let clean = s.split('.').next().unwrap_or(s);
            if i + 1 < n { singular(clean) } else { clean.to_string() }
        })
        .collect();
    table_name(&parts.join("_"))
}

/// The resource name with every segment as it is (`/organizations/{id}/memberships` ->
/// `organizations_memberships`), for when [`resource_name`] is taken.
pub(crate) fn plural_name(path: &str, prefix: usize) -> String {
    let segs = segments(path);
    let fixed: Vec<&str> = segs.iter().skip(prefix).copied().filter(|s| !s.contains('{')).collect();
    table_name(&fixed.join("_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake() {
        assert_eq!(snake_case("FlowSid"), "flow_sid");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(snake_case("help_center/collections"), "help_center_collections");
        assert_eq!(snake_case("x-total-count"), "x_total_count");
        assert_eq!(table_name("2fa"), "r_2fa");
    }

    #[test]
    fn singulars() {
        for (p, s) in [
            ("forums", "forum"),
            ("categories", "category"),
            ("addresses", "address"),
            ("Flows", "Flow"),
            ("status", "status"),
            ("boxes", "box"),
            ("data", "data"),
        ] {
            assert_eq!(singular(p), s);
        }
    }

    #[test]
    fn names_from_paths() {
        let paths = ["/v1/pets", "/v1/forums/{id}/topics", "/v1/forums"];
        let p = common_prefix(&paths);
        assert_eq!(p, 1);
        assert_eq!(resource_name("/v1/pets", p), "pets");
        assert_eq!(resource_name("/v1/forums/{id}/topics", p), "forum_topics");
        // a single path keeps its name
        assert_eq!(common_prefix(&["/v1/pets"]), 1);
        assert_eq!(resource_name("/v1/pets", 1), "pets");
        assert_eq!(common_prefix(&["/pets", "/pets/{id}/toys"]), 0);
        assert_eq!(resource_name("/v2/Flows/{FlowSid}/Executions/{ExecutionSid}/Steps", 1), "flow_execution_steps");
        assert_eq!(path_params("/a/{x}/b/{ y }.json"), ["x", "y"]);
        assert_eq!(loose("Flow-Sid"), loose("flow_sid"));
    }
}
