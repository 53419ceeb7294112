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
