//! dlt's default naming convention (`snake_case`): what a JSON key becomes as a column or table
//! name. Mirrors `dlt.common.normalizers.naming.snake_case`, so that queries written against a
//! dlt-loaded dataset find the same names.

/// Separator between the names of nested objects and tables.
pub const PATH_SEPARATOR: &str = "__";

/// Normalizes one identifier the way dlt's `snake_case` convention does:
/// trims; maps `+ * - @ |` to `x x _ a l`; replaces other non-alphanumerics with `_`; breaks
/// camelCase into `camel_case`; lower-cases; prefixes a leading digit with `_`; turns trailing
/// underscores into `x`; squeezes runs of underscores to one. An empty key becomes `_empty`.
pub fn normalize_identifier(ident: &str) -> String {
    let ident = ident.trim();
    if ident.is_empty() {
        return "_empty".into();
    }
    // reduce alphabet, then everything else that is not [A-Za-z0-9_] becomes "_" (runs collapse)
    let mut s = String::with_capacity(ident.len());
    let mut in_run = false;
    for c in ident.chars() {
        let c = match c {
            '+' | '*' => 'x',
            '-' => '_',
            '@' => 'a',
            '|' => 'l',
            c => c,
        };
        if c.is_ascii_alphanumeric() || c == '_' {
            s.push(c);
            in_run = false;
        } else if !in_run {
            s.push('_');
            in_run = true;
        }
    }
    let s = snake_case(&s);
    // leading digits get a "_" prefix
    let s = if s.starts_with(|c: char| c.is_ascii_digit()) { format!("_{s}") } else { s };
    // trailing "_" become "x"
    let stripped = s.trim_end_matches('_');
    let mut out = stripped.to_string();
    out.extend(std::iter::repeat_n('x', s.len() - stripped.len()));
    squeeze_underscores(&out)
}

/// `([^_])([A-Z][a-z]+)` → `\1_\2`, then `([a-z0-9])([A-Z])` → `\1_\2`, then lower case: the two
/// regex passes of dlt's `_to_snake_case`, on ASCII input. (Python's `re.sub` does not rescan a
/// match; the only `[^_]` a match can swallow ends in lower case, so pass 2 inserts what pass 1
/// would have skipped, and the result is the same.)
fn snake_case(s: &str) -> String {
    let b: Vec<char> = s.chars().collect();
    // pass 1: insert "_" before an Upper followed by one or more lower, when preceded by non-"_"
    let mut p1: Vec<char> = Vec::with_capacity(b.len() + 4);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if i > 0
            && c.is_ascii_uppercase()
            && b.get(i + 1).is_some_and(|n| n.is_ascii_lowercase())
            && p1.last().is_some_and(|prev| *prev != '_')
        {
            p1.push('_');
        }
        p1.push(c);
        i += 1;
    }
    // pass 2: "_" between a lower/digit and an Upper
    let mut p2 = String::with_capacity(p1.len() + 4);
    for (i, c) in p1.iter().enumerate() {
        if i > 0 && c.is_ascii_uppercase() && (p1[i - 1].is_ascii_lowercase() || p1[i - 1].is_ascii_digit()) {
            p2.push('_');
        }
        p2.push(*c);
    }
    p2.to_ascii_lowercase()
}

fn squeeze_underscores(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev = false;
    for c in s.chars() {
        if c == '_' {
            if !prev {
                out.push(c);
            }
            prev = true;
        } else {
            out.push(c);
            prev = false;
        }
    }
    out
}

/// Joins normalized names into a path: `settings`, `moderation` → `settings__moderation`.
pub fn make_path<S: AsRef<str>>(parts: &[S]) -> String {
    parts.iter().map(AsRef::as_ref).filter(|p| !p.trim().is_empty()).collect::<Vec<_>>().join(PATH_SEPARATOR)
}

/// Normalizes a path given by the user, each `__`-separated part on its own (dlt's
/// `normalize_path`): a table name, or a column name from the configuration (`primary_key`,
/// `columns` hints), which may name a flattened column such as `creator__id`.
pub fn normalize_path(name: &str) -> String {
    let parts: Vec<String> =
        name.split(PATH_SEPARATOR).filter(|p| !p.trim().is_empty()).map(normalize_identifier).collect();
    make_path(&parts)
}

/// Normalizes a table name given by the user ([`normalize_path`]).
pub fn normalize_table_name(name: &str) -> String {
    normalize_path(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_their_separators() {
        // a hint or key naming a flattened column, as dlt's normalize_path reads it
        assert_eq!(normalize_path("custom_fields__industry"), "custom_fields__industry");
        assert_eq!(normalize_path("creator__externalId"), "creator__external_id");
        assert_eq!(normalize_identifier("custom_fields__industry"), "custom_fields_industry");
    }

    #[test]
    fn matches_dlt_snake_case() {
        let cases = [
            ("id", "id"),
            ("externalId", "external_id"),
            ("MRR", "mrr"),
            ("HTTPResponse", "http_response"),
            ("getHTTPResponseCode", "get_http_response_code"),
            ("camelCase2Go", "camel_case2_go"),
            ("Some Field!", "some_fieldx"),
            ("a__b", "a_b"),
            ("trailing_", "trailingx"),
            ("9lives", "_9lives"),
            ("e-mail", "e_mail"),
            ("user@host", "userahost"),
            ("a+b", "axb"),
            ("  spaced  ", "spaced"),
            ("", "_empty"),
            ("Zoë", "zox"),
            ("_dlt_id", "_dlt_id"),
            ("value", "value"),
            ("ABcDEf", "a_bc_d_ef"),
            ("__x", "_x"),
            ("x__", "xxx"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_identifier(input), want, "input {input:?}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(make_path(&["settings", "moderation", "level"]), "settings__moderation__level");
        assert_eq!(normalize_table_name("Feedback Records"), "feedback_records");
        assert_eq!(normalize_table_name("a__BigTable"), "a__big_table");
    }
}
