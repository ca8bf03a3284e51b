//! Iceberg data-file metrics (column sizes, value, null and NaN counts, lower and upper bounds)
//! from a Parquet footer, as iceberg-rust's own writer records them; iceberg-rust 0.10 keeps its
//! version crate-private.
//!
//! A bound tighter than the data would make scans prune files that hold matching rows. So a
//! field gets a bound only when every row group's statistics give one; truncated byte-array
//! statistics count (they stay valid bounds). iceberg-rust instead skips row groups whose
//! statistics were truncated, which can leave a bound that excludes their long values. Columns
//! are matched by the field ids the writer stored in the Parquet schema.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, Float32Array, Float64Array};
use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, Datum, NestedField, PrimitiveType, Schema, Struct, Type,
};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

use crate::error::{Result, TableError};

/// A data-file builder for a Parquet file of `schema`, with metrics from its footer and the
/// NaN counts gathered while writing (Parquet statistics do not hold them).
pub fn data_file_builder(
    schema: &Schema,
    metadata: &ParquetMetaData,
    file_size: u64,
    path: String,
    nan_value_counts: HashMap<i32, u64>,
) -> Result<DataFileBuilder> {
    let mut column_sizes: HashMap<i32, u64> = HashMap::new();
    let mut value_counts: HashMap<i32, u64> = HashMap::new();
    let mut null_counts: HashMap<i32, u64> = HashMap::new();
    let mut lower: HashMap<i32, Datum> = HashMap::new();
    let mut upper: HashMap<i32, Datum> = HashMap::new();
    // Fields with a chunk whose lower (0) or upper (1) bound is unknown get none at all.
    let mut unbounded: [HashSet<i32>; 2] = [HashSet::new(), HashSet::new()];
    for row_group in metadata.row_groups() {
        for column in row_group.columns() {
            let info = column.column_descr().self_type().get_basic_info();
            if !info.has_id() {
                continue;
            }
            let id = info.id();
            // Like Iceberg Java: columns that are not in the schema get no metrics.
            let Some(field) = schema.field_by_id(id) else { continue };
            let Type::Primitive(ty) = field.field_type.as_ref() else {
                return Err(TableError::Invalid(format!("parquet leaf column {id} is not a primitive field")));
            };
            *column_sizes.entry(id).or_default() += column.compressed_size() as u64;
            *value_counts.entry(id).or_default() += column.num_values() as u64;
            let Some(stats) = column.statistics() else {
                // Nothing is known of this chunk's values: no bound for the field may exclude them.
                unbounded[0].insert(id);
                unbounded[1].insert(id);
                continue;
            };
            if let Some(nulls) = stats.null_count_opt() {
                *null_counts.entry(id).or_default() += nulls;
            }
            let all_null = stats.null_count_opt() == Some(column.num_values() as u64);
            for (side, bounds, slot) in [(Side::Lower, &mut lower, 0), (Side::Upper, &mut upper, 1)] {
                match bound(ty, stats, side) {
                    Some(value) => merge(bounds, id, value, side),
                    None if all_null => {}
                    None => {
                        unbounded[slot].insert(id);
                    }
                }
            }
        }
    }
    for id in &unbounded[0] {
        lower.remove(id);
    }
    for id in &unbounded[1] {
        upper.remove(id);
    }
    let mut builder = DataFileBuilder::default();
    builder
        .content(DataContentType::Data)
        .file_path(path)
        .file_format(DataFileFormat::Parquet)
        .partition(Struct::empty())
        .record_count(metadata.file_metadata().num_rows() as u64)
        .file_size_in_bytes(file_size)
        .column_sizes(column_sizes)
        .value_counts(value_counts)
        .null_value_counts(null_counts)
        .nan_value_counts(nan_value_counts)
        .lower_bounds(lower)
        .upper_bounds(upper)
        .split_offsets(Some(metadata.row_groups().iter().filter_map(|g| g.file_offset()).collect()));
    Ok(builder)
}

fn merge(bounds: &mut HashMap<i32, Datum>, id: i32, value: Datum, side: Side) {
    match bounds.entry(id) {
        Entry::Occupied(mut e) => {
            let wider = match side {
                Side::Lower => value < *e.get(),
                Side::Upper => value > *e.get(),
            };
            if wider {
                e.insert(value);
            }
        }
        Entry::Vacant(e) => {
            e.insert(value);
        }
    }
}

#[derive(Clone, Copy)]
enum Side {
    Lower,
    Upper,
}

/// The lower or upper bound of a column chunk's statistics as a value of the field's type.
///
/// Truncated statistics count: arrow-rs cuts long byte-array minimums to a prefix (still a lower
/// bound) and increments cut maximums (still an upper bound), as Iceberg Java truncates bounds.
/// `None` when there is none or the physical and logical types do not pair up (e.g. a cut
/// fixed-length value); the caller then drops the field's bound, since no bound is safe and a
/// tighter one would let scans prune matching rows.
fn bound(ty: &PrimitiveType, stats: &Statistics, side: Side) -> Option<Datum> {
    macro_rules! pick {
        ($s:expr) => {
            match side {
                Side::Lower => $s.min_opt(),
                Side::Upper => $s.max_opt(),
            }
        };
    }
    let bytes = match side {
        Side::Lower => stats.min_bytes_opt(),
        Side::Upper => stats.max_bytes_opt(),
    };
    let from_bytes = |bytes: &[u8]| Datum::try_from_bytes(bytes, ty.clone()).ok();
    match (ty, stats) {
        (PrimitiveType::Boolean, Statistics::Boolean(s)) => pick!(s).map(|v| Datum::bool(*v)),
        (PrimitiveType::Int, Statistics::Int32(s)) => pick!(s).map(|v| Datum::int(*v)),
        (PrimitiveType::Date, Statistics::Int32(s)) => pick!(s).map(|v| Datum::date(*v)),
        (PrimitiveType::Long, Statistics::Int64(s)) => pick!(s).map(|v| Datum::long(*v)),
        (PrimitiveType::Time, Statistics::Int64(s)) => pick!(s).and_then(|v| Datum::time_micros(*v).ok()),
        (PrimitiveType::Timestamp, Statistics::Int64(s)) => pick!(s).map(|v| Datum::timestamp_micros(*v)),
        (PrimitiveType::Timestamptz, Statistics::Int64(s)) => pick!(s).map(|v| Datum::timestamptz_micros(*v)),
        (PrimitiveType::TimestampNs, Statistics::Int64(s)) => pick!(s).map(|v| Datum::timestamp_nanos(*v)),
        (PrimitiveType::TimestamptzNs, Statistics::Int64(s)) => pick!(s).map(|v| Datum::timestamptz_nanos(*v)),
        (PrimitiveType::Float, Statistics::Float(s)) => pick!(s).map(|v| Datum::float(*v)),
        (PrimitiveType::Double, Statistics::Double(s)) => pick!(s).map(|v| Datum::double(*v)),
        (PrimitiveType::String | PrimitiveType::Binary, Statistics::ByteArray(_)) => bytes.and_then(from_bytes),
        (PrimitiveType::Decimal { .. }, Statistics::ByteArray(_) | Statistics::FixedLenByteArray(_))
            if stats.min_is_exact() && stats.max_is_exact() =>
        {
            bytes.and_then(from_bytes)
        }
        (PrimitiveType::Decimal { .. }, Statistics::Int32(s)) => {
            pick!(s).and_then(|v| from_bytes(&i128::from(*v).to_be_bytes()))
        }
        (PrimitiveType::Decimal { .. }, Statistics::Int64(s)) => {
            pick!(s).and_then(|v| from_bytes(&i128::from(*v).to_be_bytes()))
        }
        (PrimitiveType::Uuid, Statistics::FixedLenByteArray(_)) => bytes.filter(|b| b.len() == 16).and_then(from_bytes),
        (PrimitiveType::Fixed(len), Statistics::FixedLenByteArray(_)) => {
            bytes.filter(|b| b.len() as u64 == *len).and_then(from_bytes)
        }
        _ => None,
    }
}

/// Adds the NaN values of `array` (a column of `field`, nested fields included) to `counts`,
/// keyed by field id; every float and double field gets an entry, as Iceberg records them.
pub fn count_nans(field: &NestedField, array: &ArrayRef, counts: &mut HashMap<i32, u64>) {
    match field.field_type.as_ref() {
        Type::Primitive(PrimitiveType::Float) => {
            if let Some(values) = array.as_any().downcast_ref::<Float32Array>() {
                *counts.entry(field.id).or_default() +=
                    values.iter().filter(|v| v.is_some_and(f32::is_nan)).count() as u64;
            }
        }
        Type::Primitive(PrimitiveType::Double) => {
            if let Some(values) = array.as_any().downcast_ref::<Float64Array>() {
                *counts.entry(field.id).or_default() +=
                    values.iter().filter(|v| v.is_some_and(f64::is_nan)).count() as u64;
            }
        }
        Type::Primitive(_) => {}
        Type::Struct(st) => {
            if let Some(columns) = array.as_struct_opt() {
                for (f, column) in st.fields().iter().zip(columns.columns()) {
                    count_nans(f, column, counts);
                }
            }
        }
        Type::List(list) => {
            if let Some(l) = array.as_list_opt::<i32>() {
                count_nans(&list.element_field, &referenced(l.values(), l.value_offsets()), counts);
            } else if let Some(l) = array.as_list_opt::<i64>() {
                count_nans(&list.element_field, &referenced(l.values(), l.value_offsets()), counts);
            }
        }
        Type::Map(map) => {
            if let Some(m) = array.as_map_opt() {
                count_nans(&map.key_field, &referenced(m.keys(), m.value_offsets()), counts);
                count_nans(&map.value_field, &referenced(m.values(), m.value_offsets()), counts);
            }
        }
    }
}

/// The child values a (possibly sliced) list or map array refers to.
fn referenced<O: Copy + TryInto<usize>>(values: &ArrayRef, offsets: &[O]) -> ArrayRef {
    let at = |o: Option<&O>| o.and_then(|o| (*o).try_into().ok()).unwrap_or(0);
    let (start, end) = (at(offsets.first()), at(offsets.last()));
    values.slice(start, end.saturating_sub(start))
}
