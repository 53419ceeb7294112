//! PostgreSQL's binary `COPY` format, written straight from the normalizer's Arrow batches: no
//! value goes through a per-value trait object or a text rendering. Each row is a field count
//! and, per field, a length (-1: NULL) and the value in PostgreSQL's binary form (big-endian
//! integers and floats, microseconds since 2000-01-01 for `timestamptz`, days since 2000-01-01
//! for `date`, microseconds since midnight for `time`, a version byte before `jsonb`'s text,
//! base-10000 digits for `numeric` ([`numeric`]), `bytea` as is).

use arrow::array::{
    Array, AsArray, BinaryArray, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray,
    Time64MicrosecondArray, TimestampMicrosecondArray,
};
use arrow::record_batch::RecordBatch;
use bytes::{BufMut, BytesMut};
use resttap_schema::{Column, DataType};

/// The file header: signature, flags, header extension length.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The file trailer: a field count of -1.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// Why a batch cannot be encoded: its arrays do not have the types its columns say.
#[derive(Debug, thiserror::Error)]
#[error("column `{column}` holds {found}, not the {expected} its type {data_type} is written from")]
pub struct EncodeError {
    pub column: String,
    pub data_type: DataType,
    pub expected: &'static str,
    pub found: String,
}

enum Values<'a> {
    Text(&'a StringArray),
    Json(&'a StringArray),
    Bigint(&'a Int64Array),
    Double(&'a Float64Array),
    Bool(&'a BooleanArray),
    Timestamp(&'a TimestampMicrosecondArray),
    Date(&'a Date32Array),
    /// Exact decimal text.
    Numeric(&'a StringArray),
    Bytea(&'a BinaryArray),
    Time(&'a Time64MicrosecondArray),
}

fn values<'a>(column: &Column, array: &'a dyn Array) -> Result<Values<'a>, EncodeError> {
    let err = |expected| EncodeError {
        column: column.name.clone(),
        data_type: column.data_type,
        expected,
        found: array.data_type().to_string(),
    };
    Ok(match column.data_type {
        DataType::Text => Values::Text(array.as_string_opt::<i32>().ok_or_else(|| err("Utf8"))?),
        DataType::Json => Values::Json(array.as_string_opt::<i32>().ok_or_else(|| err("Utf8"))?),
        DataType::Bigint => {
            Values::Bigint(array.as_primitive_opt::<arrow::datatypes::Int64Type>().ok_or_else(|| err("Int64"))?)
        }
        DataType::Double => {
            Values::Double(array.as_primitive_opt::<arrow::datatypes::Float64Type>().ok_or_else(|| err("Float64"))?)
        }
        DataType::Bool => Values::Bool(array.as_boolean_opt().ok_or_else(|| err("Boolean"))?),
        DataType::Timestamp => Values::Timestamp(
            array
                .as_primitive_opt::<arrow::datatypes::TimestampMicrosecondType>()
                .ok_or_else(|| err("Timestamp(Microsecond)"))?,
        ),
        DataType::Date => {
            Values::Date(array.as_primitive_opt::<arrow::datatypes::Date32Type>().ok_or_else(|| err("Date32"))?)
        }
        DataType::Decimal(_) | DataType::Wei => {
            Values::Numeric(array.as_string_opt::<i32>().ok_or_else(|| err("Utf8 (decimal text)"))?)
        }
        DataType::Binary => Values::Bytea(array.as_binary_opt::<i32>().ok_or_else(|| err("Binary"))?),
        DataType::Time => Values::Time(
            array
                .as_primitive_opt::<arrow::datatypes::Time64MicrosecondType>()
                .ok_or_else(|| err("Time64(Microsecond)"))?,
        ),
    })
}

/// Appends the rows of `batch` (whose columns are `columns`) to `out`, without header or trailer.
pub fn encode_rows(columns: &[Column], batch: &RecordBatch, out: &mut BytesMut) -> Result<(), EncodeError> {
    let arrays: Vec<Values<'_>> =
        columns.iter().zip(batch.columns()).map(|(c, a)| values(c, a.as_ref())).collect::<Result<_, _>>()?;
    let fields = i16::try_from(columns.len()).unwrap_or(i16::MAX);
    for row in 0..batch.num_rows() {
        out.put_i16(fields);
        for a in &arrays {
            encode_value(a, row, out);
        }
    }
    Ok(())
}

fn encode_value(values: &Values<'_>, row: usize, out: &mut BytesMut) {
    macro_rules! null_or {
        ($arr:expr, $body:expr) => {
            if $arr.is_null(row) {
                out.put_i32(-1);
            } else {
                $body
            }
        };
    }
    match values {
        Values::Text(a) => null_or!(a, {
            let s = a.value(row).as_bytes();
            out.put_i32(s.len() as i32);
            out.put_slice(s);
        }),
        Values::Json(a) => null_or!(a, {
            let s = a.value(row).as_bytes();
            out.put_i32(s.len() as i32 + 1);
            out.put_u8(1);
            out.put_slice(s);
        }),
        Values::Bigint(a) => null_or!(a, {
            out.put_i32(8);
            out.put_i64(a.value(row));
        }),
        Values::Double(a) => null_or!(a, {
            out.put_i32(8);
            out.put_f64(a.value(row));
        }),
        Values::Bool(a) => null_or!(a, {
            out.put_i32(1);
            out.put_u8(u8::from(a.value(row)));
        }),
        Values::Timestamp(a) => null_or!(a, {
            out.put_i32(8);
            out.put_i64(a.value(row).saturating_sub(PG_EPOCH_MICROS));
        }),
        Values::Date(a) => null_or!(a, {
            out.put_i32(4);
            out.put_i32(a.value(row).saturating_sub(PG_EPOCH_DAYS));
        }),
        Values::Numeric(a) => null_or!(a, numeric(a.value(row), out)),
        Values::Bytea(a) => null_or!(a, {
            let b = a.value(row);
            out.put_i32(b.len() as i32);
            out.put_slice(b);
        }),
        Values::Time(a) => null_or!(a, {
            out.put_i32(8);
            out.put_i64(a.value(row));
        }),
    }
}

/// A `numeric` in PostgreSQL's binary form from plain decimal text (`-123.45`, as the
/// normalizer writes it): digit count, weight of the first base-10000 digit, sign, display
/// scale, then the digits. The value keeps its own scale; the server rounds it to the
/// column's (half away from zero) and refuses one too large for its precision, as it does
/// for dlt's SQL literals.
pub fn numeric(text: &str, out: &mut BytesMut) {
    let (neg, t) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let int = int.trim_start_matches('0');
    // groups of four digits aligned on the point
    let lead = (4 - int.len() % 4) % 4;
    let int_digits = format!("{}{int}", "0".repeat(lead));
    let frac_digits = format!("{frac}{}", "0".repeat((4 - frac.len() % 4) % 4));
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).map_or(0, |g| g.parse().unwrap_or(0))).collect()
    };
    let mut digits = group(&int_digits);
    let mut weight = digits.len() as i32 - 1;
    digits.extend(group(&frac_digits));
    let first = digits.iter().position(|d| *d != 0);
    let (digits, weight) = match first {
        None => (Vec::new(), 0),
        Some(f) => {
            let last = digits.iter().rposition(|d| *d != 0).expect("a nonzero digit");
            weight -= f as i32;
            (digits[f..=last].to_vec(), weight)
        }
    };
    out.put_i32(8 + 2 * digits.len() as i32);
    out.put_i16(digits.len() as i16);
    out.put_i16(weight as i16);
    out.put_u16(if neg && !digits.is_empty() { 0x4000 } else { 0 });
    out.put_i16(frac.len().min(0x3FFF) as i16);
    for d in digits {
        out.put_i16(d);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::ArrayRef;

    use super::*;

    fn col(name: &str, data_type: DataType) -> Column {
        Column { name: name.into(), data_type, nullable: true, primary_key: false }
    }

    #[test]
    fn rows_are_written_in_postgres_binary_form() {
        let columns = vec![
            col("t", DataType::Text),
            col("j", DataType::Json),
            col("b", DataType::Bigint),
            col("d", DataType::Double),
            col("f", DataType::Bool),
            col("ts", DataType::Timestamp),
            col("day", DataType::Date),
        ];
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("hé"), None])),
            Arc::new(StringArray::from(vec![Some("[1]"), None])),
            Arc::new(Int64Array::from(vec![Some(-2), None])),
            Arc::new(Float64Array::from(vec![Some(1.5), None])),
            Arc::new(BooleanArray::from(vec![Some(true), None])),
            Arc::new(TimestampMicrosecondArray::from(vec![Some(PG_EPOCH_MICROS + 1), None]).with_timezone("UTC")),
            Arc::new(Date32Array::from(vec![Some(PG_EPOCH_DAYS - 1), None])),
        ];
        let batch = RecordBatch::try_from_iter(columns.iter().map(|c| c.name.clone()).zip(arrays)).unwrap();
        let mut out = BytesMut::new();
        encode_rows(&columns, &batch, &mut out).unwrap();
        let mut want: Vec<u8> = vec![0, 7];
        want.extend([0, 0, 0, 3, b'h', 0xc3, 0xa9]);
        want.extend([0, 0, 0, 4, 1, b'[', b'1', b']']);
        want.extend([0, 0, 0, 8]);
        want.extend((-2i64).to_be_bytes());
        want.extend([0, 0, 0, 8]);
        want.extend(1.5f64.to_be_bytes());
        want.extend([0, 0, 0, 1, 1]);
        want.extend([0, 0, 0, 8]);
        want.extend(1i64.to_be_bytes());
        want.extend([0, 0, 0, 4]);
        want.extend((-1i32).to_be_bytes());
        want.extend([0, 7]);
        for _ in 0..7 {
            want.extend((-1i32).to_be_bytes());
        }
        assert_eq!(&out[..], &want[..]);
    }

    #[test]
    fn a_column_of_the_wrong_arrow_type_is_an_error() {
        let columns = vec![col("n", DataType::Bigint)];
        let batch = RecordBatch::try_from_iter([("n", Arc::new(StringArray::from(vec!["1"])) as ArrayRef)]).unwrap();
        let e = encode_rows(&columns, &batch, &mut BytesMut::new()).unwrap_err();
        assert_eq!(e.to_string(), "column `n` holds Utf8, not the Int64 its type bigint is written from");
    }

    #[test]
    fn numerics_are_base_10000_digits_aligned_on_the_point() {
        let enc = |t: &str| {
            let mut out = BytesMut::new();
            numeric(t, &mut out);
            let v: Vec<i16> = out[4..].chunks(2).map(|c| i16::from_be_bytes([c[0], c[1]])).collect();
            assert_eq!(i32::from_be_bytes(out[..4].try_into().unwrap()) as usize, out.len() - 4);
            v
        };
        // ndigits, weight, sign, dscale, digits
        assert_eq!(enc("-123456.789"), vec![3, 1, 0x4000, 3, 12, 3456, 7890]);
        assert_eq!(enc("0.5"), vec![1, -1, 0, 1, 5000]);
        assert_eq!(enc("0.00001"), vec![1, -2, 0, 5, 1000]);
        assert_eq!(enc("10000"), vec![1, 1, 0, 0, 1]);
        assert_eq!(enc("0"), vec![0, 0, 0, 0]);
        assert_eq!(enc("-0.00"), vec![0, 0, 0, 2]);
        assert_eq!(enc("12.50"), vec![2, 0, 0, 2, 12, 5000]);
    }
}
