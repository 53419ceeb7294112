//! SQL text that DuckDB and PostgreSQL read alike: quoted identifiers and literals, and their
//! decimal types' arguments.

use resttap_schema::{DataType, Precision};

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

/// The dlt type of a decimal column type's arguments as both databases print them (`(10,2)`
/// of `DECIMAL(10,2)` or `numeric(10,2)`), as dlt reads it back: a decimal of dlt's default
/// precision is a plain `decimal`, one of the destination's `wei` precision `wei`.
pub fn decimal_type(args: &str, wei: (u16, u16)) -> Option<DataType> {
    Some(match decimal_args(args)? {
        p if p == wei => DataType::Wei,
        Precision::DEFAULT => DataType::Decimal(Precision::default()),
        (p, s) => DataType::Decimal(Precision { precision: Some(p), scale: Some(s) }),
    })
}

fn decimal_args(args: &str) -> Option<(u16, u16)> {
    let (p, s) = args.trim().strip_prefix('(')?.strip_suffix(')')?.split_once(',')?;
    Some((p.trim().parse().ok()?, s.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_types_read_back_as_dlt_reads_them() {
        let p = |precision, scale| DataType::Decimal(Precision { precision, scale });
        assert_eq!(decimal_type("(10,2)", (38, 0)), Some(p(Some(10), Some(2))));
        assert_eq!(decimal_type("(38, 9)", (38, 0)), Some(p(None, None)));
        assert_eq!(decimal_type("(38,0)", (38, 0)), Some(DataType::Wei));
        assert_eq!(decimal_type("(38)", (38, 0)), None);
        assert_eq!(decimal_type("", (38, 0)), None);
    }
}
