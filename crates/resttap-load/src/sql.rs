//! SQL text that DuckDB and PostgreSQL read alike: quoted identifiers and literals.

/// Quotes an identifier: `"it""s"`.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal: `'it''s'`.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A `timestamp with time zone` literal for `micros` since the epoch.
pub fn timestamp_literal(micros: i64) -> String {
    format!("CAST({} AS TIMESTAMP WITH TIME ZONE)", literal(&resttap_schema::timestamp::format_timestamp(micros)))
}

/// The precision and scale of a decimal type's arguments as both databases print them:
/// `(10,2)` of `DECIMAL(10,2)` or `numeric(10,2)`.
pub fn decimal_args(args: &str) -> Option<(u16, u16)> {
    let (p, s) = args.trim().strip_prefix('(')?.strip_suffix(')')?.split_once(',')?;
    Some((p.trim().parse().ok()?, s.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_args_read_both_spellings() {
        assert_eq!(super::decimal_args("(10,2)"), Some((10, 2)));
        assert_eq!(super::decimal_args("(38, 9)"), Some((38, 9)));
        assert_eq!(super::decimal_args("(38)"), None);
        assert_eq!(super::decimal_args(""), None);
    }
}
