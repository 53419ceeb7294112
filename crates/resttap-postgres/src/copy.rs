//! PostgreSQL's binary `COPY` format, written straight from the normalizer's Arrow batches: no
//! value goes through a per-value trait object or a text rendering. Each row is a field count
//! and, per field, a length (-1: NULL) and the value in PostgreSQL's binary form (big-endian
//! integers and floats, microseconds since 2000-01-01 for `timestamptz`, days since 2000-01-01
//! for `date`, a version byte before `jsonb`'s text).

use arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
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
}
