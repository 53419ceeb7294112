//! `resttap_batches(id)`: a table function that hands a table's Arrow batches to DuckDB without
//! copying their strings, for `INSERT INTO t (..) SELECT * FROM resttap_batches(id)`.
//!
//! Why not the appender: duckdb-rs's appender converts each Arrow batch into a DuckDB chunk
//! (copying every string and checking it is UTF-8 again), then DuckDB's appender copies the
//! chunk into its own collection before the insert copies it into the table: three copies of
//! every string on the loader thread, which is the run's bottleneck. Here the chunk's strings
//! point into the Arrow buffers (DuckDB's `string_t` may point to memory it does not own as
//! long as that memory outlives the chunk), so the insert's copy into the table is the only one.
//! The strings are valid UTF-8 already: they are Rust `str`s.
//!
//! The batches reach the function through a process-wide registry, by the id its one parameter
//! carries: [`Staged::register`] puts them in and returns a [`Ticket`]; the function's bind
//! takes them out (a statement binds once); a ticket dropped unused takes them out too.

// The one place where resttap writes DuckDB's vectors itself: `string_t`s built by hand (the
// C API's setter would copy), and the fixed-width values copied in place. Unsafe code is
// allowed in the three functions that do it (`write_column`, `write_bytes`, `copy`), each
// write bounded by the vector's capacity as DuckDB reports it (`duckdb_vector_size()`,
// through `FlatVector::capacity`), which `write_column` asserts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Float64Type, Int64Type, Time64MicrosecondType, TimestampMicrosecondType};
use duckdb::core::{DataChunkHandle, FlatVector, LogicalTypeHandle, LogicalTypeId};
use duckdb::ffi::duckdb_string_t;
use duckdb::vtab::{BindInfo, InitInfo, TableFunctionInfo, VTab};
use resttap_schema::{Column, DataType};

/// The table function's name.
pub(crate) const FUNCTION: &str = "resttap_batches";

static REGISTRY: LazyLock<Mutex<HashMap<u64, Staged>>> = LazyLock::new(Default::default);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One table's batches waiting for their `INSERT`, with their columns (names and dlt types).
pub(crate) struct Staged {
    pub columns: Arc<[Column]>,
    pub batches: Vec<RecordBatch>,
}

/// The right to a registered [`Staged`]; dropping it removes what the function did not take.
pub(crate) struct Ticket(u64);

impl Ticket {
    pub fn id(&self) -> u64 {
        self.0
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.0);
    }
}

impl Staged {
    pub fn register(self) -> Ticket {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).insert(id, self);
        Ticket(id)
    }
}

fn logical_type(t: DataType) -> LogicalTypeHandle {
    LogicalTypeHandle::from(match t {
        // JSON columns take VARCHAR (DuckDB casts, as it did for the appender); decimals too:
        // their exact text, which DuckDB's cast rounds to the column's scale
        DataType::Text | DataType::Json | DataType::Decimal(_) | DataType::Wei => LogicalTypeId::Varchar,
        DataType::Binary => LogicalTypeId::Blob,
        DataType::Time => LogicalTypeId::Time,
        DataType::Bigint => LogicalTypeId::Bigint,
        DataType::Double => LogicalTypeId::Double,
        DataType::Bool => LogicalTypeId::Boolean,
        DataType::Timestamp => LogicalTypeId::TimestampTZ,
        DataType::Date => LogicalTypeId::Date,
    })
}

/// The table function.
pub(crate) struct BatchScan;

pub(crate) struct ScanState {
    /// The next slice to hand over: (batch, first row).
    next: Mutex<(usize, usize)>,
}

impl VTab for BatchScan {
    type BindData = Staged;
    type InitData = ScanState;

    fn bind(bind: &BindInfo) -> Result<Staged, Box<dyn std::error::Error>> {
        let id = bind.get_parameter(0).to_int64() as u64;
        let staged = REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
            .ok_or_else(|| format!("{FUNCTION}({id}): no such batches (each set is read once)"))?;
        for c in staged.columns.iter() {
            bind.add_result_column(&c.name, logical_type(c.data_type));
        }
        Ok(staged)
    }

    fn init(init: &InitInfo) -> Result<ScanState, Box<dyn std::error::Error>> {
        init.set_max_threads(1);
        Ok(ScanState { next: Mutex::new((0, 0)) })
    }

    fn func(info: &TableFunctionInfo<Self>, output: &mut DataChunkHandle) -> Result<(), Box<dyn std::error::Error>> {
        let staged = info.get_bind_data();
        let mut next = info.get_init_data().next.lock().unwrap_or_else(|e| e.into_inner());
        // an empty batch is passed over: a chunk of no rows would tell DuckDB the scan is done
        while staged.batches.get(next.0).is_some_and(|b| b.num_rows() == 0) {
            *next = (next.0 + 1, 0);
        }
        let (b, start) = *next;
        let Some(batch) = staged.batches.get(b) else {
            output.set_len(0);
            return Ok(());
        };
        // a longer batch is handed over in slices of a vector's capacity (DuckDB's
        // STANDARD_VECTOR_SIZE, which it reports)
        let capacity = (0..batch.num_columns()).map(|i| output.flat_vector(i).capacity()).min().unwrap_or(0);
        let len = (batch.num_rows() - start).min(capacity);
        *next = if start + len >= batch.num_rows() { (b + 1, 0) } else { (b, start + len) };
        for (i, (column, c)) in batch.columns().iter().zip(staged.columns.iter()).enumerate() {
            let column = column.slice(start, len);
            write_column(&mut output.flat_vector(i), &column, c.data_type)?;
        }
        output.set_len(len);
        Ok(())
    }

    fn parameters() -> Option<Vec<LogicalTypeHandle>> {
        Some(vec![LogicalTypeHandle::from(LogicalTypeId::UBigint)])
    }
}

/// Writes `column` (at most `out.capacity()` values) into `out`, whose type [`logical_type`] of
/// `t` is.
#[allow(unsafe_code)]
fn write_column(out: &mut FlatVector<'_>, column: &dyn Array, t: DataType) -> Result<(), String> {
    let len = column.len();
    // what every write below relies on
    assert!(len <= out.capacity(), "{len} rows do not fit a DuckDB vector of {}", out.capacity());
    match t {
        DataType::Text | DataType::Json | DataType::Decimal(_) | DataType::Wei => {
            let strings = column.as_string_opt::<i32>().ok_or("a text column is not Utf8")?;
            write_bytes(out, strings.value_offsets(), strings.values(), len);
        }
        DataType::Binary => {
            let bytes = column.as_binary_opt::<i32>().ok_or("a binary column is not Binary")?;
            write_bytes(out, bytes.value_offsets(), bytes.values(), len);
        }
        DataType::Time => {
            copy(out, column.as_primitive_opt::<Time64MicrosecondType>().ok_or("not Time64(Microsecond)")?.values())
        }
        DataType::Bigint => copy(out, column.as_primitive_opt::<Int64Type>().ok_or("not Int64")?.values()),
        DataType::Double => copy(out, column.as_primitive_opt::<Float64Type>().ok_or("not Float64")?.values()),
        DataType::Timestamp => {
            copy(out, column.as_primitive_opt::<TimestampMicrosecondType>().ok_or("not a timestamp")?.values())
        }
        DataType::Date => copy(out, column.as_primitive_opt::<Date32Type>().ok_or("not Date32")?.values()),
        DataType::Bool => {
            let bools = column.as_boolean_opt().ok_or("not Boolean")?;
            // SAFETY: a BOOLEAN vector's data is one byte (0 or 1) per row, `len` <= capacity
            let data = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr::<u8>(), len) };
            for (row, slot) in data.iter_mut().enumerate() {
                *slot = bools.value(row) as u8;
            }
        }
    }
    if let Some(nulls) = column.nulls().filter(|n| n.null_count() > 0) {
        for row in nulls.iter().enumerate().filter(|(_, valid)| !valid).map(|(row, _)| row) {
            out.set_null(row);
        }
    }
    Ok(())
}

/// Writes `len` values, given by Arrow `offsets` into `values`, into a VARCHAR or BLOB vector
/// (both hold `string_t`s).
#[allow(unsafe_code)]
fn write_bytes(out: &mut FlatVector<'_>, offsets: &[i32], values: &[u8], len: usize) {
    // SAFETY: a VARCHAR or BLOB vector's data is `len` (<= its capacity) `string_t`s; each one
    // written here is a whole value: inlined (<= 12 bytes, zero-padded, as DuckDB
    // compares them) or a length, a 4-byte prefix and a pointer into the Arrow values
    // buffer, which the bind data keeps alive until the statement ends.
    let data = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr::<duckdb_string_t>(), len) };
    for (row, slot) in data.iter_mut().enumerate() {
        let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
        let n = to - from;
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&(n as u32).to_ne_bytes());
        let bytes = &values[from..to];
        if n <= 12 {
            raw[4..4 + n].copy_from_slice(bytes);
        } else {
            raw[4..8].copy_from_slice(&bytes[..4]);
            raw[8..].copy_from_slice(&(bytes.as_ptr() as usize).to_ne_bytes());
        }
        // SAFETY: `duckdb_string_t` is 16 bytes of plain data, laid out as written above
        *slot = unsafe { std::mem::transmute::<[u8; 16], duckdb_string_t>(raw) };
    }
}

#[allow(unsafe_code)]
fn copy<T: Copy>(out: &mut FlatVector<'_>, values: &[T]) {
    // SAFETY: `T` is the vector's physical type (i64 for BIGINT, TIMESTAMPTZ and TIME, f64 for
    // DOUBLE, i32 for DATE), and `values` has at most the vector's capacity of elements
    // (asserted by `write_column`, its only caller; `FlatVector::copy` checks it too)
    unsafe { out.copy(values) }
}
