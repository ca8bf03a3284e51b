//! Primary-key columns of Arrow rows, and their values as Java values for bucketing (see
//! [`super::key_hash`]).

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type, Time64MicrosecondType,
    TimestampMicrosecondType, TimestampNanosecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

use super::key_hash::JavaValue;
use crate::error::{Result, TableError};

/// The columns of a primary key in batches of one schema.
#[derive(Debug, Clone)]
pub struct KeyColumns {
    names: Vec<String>,
    positions: Vec<usize>,
    /// Which are Iceberg uuids (Arrow cannot tell them from `fixed[16]`; Java hashes them
    /// differently).
    uuids: Vec<bool>,
}

impl KeyColumns {
    /// Finds the key columns `names` in `batch`'s schema (`table` is the table's Iceberg
    /// schema); an error names a missing one.
    pub fn find(names: &[String], batch: &RecordBatch, table: &iceberg::spec::Schema) -> Result<Self> {
        let schema = batch.schema();
        let missing = |name: &str| TableError::Invalid(format!("the primary key column {name:?} is missing"));
        let positions =
            names.iter().map(|name| schema.index_of(name).map_err(|_| missing(name))).collect::<Result<Vec<_>>>()?;
        let uuids = names
            .iter()
            .map(|name| {
                let field = table.field_by_name(name).ok_or_else(|| missing(name))?;
                Ok(matches!(*field.field_type, iceberg::spec::Type::Primitive(iceberg::spec::PrimitiveType::Uuid)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { names: names.to_vec(), positions, uuids })
    }

    /// The Java values of row `row`'s key, for bucketing.
    pub fn java_values(&self, batch: &RecordBatch, row: usize) -> Result<Vec<JavaValue>> {
        self.positions.iter().zip(&self.uuids).map(|(&p, &uuid)| java_value(batch.column(p), row, uuid)).collect()
    }

    /// The key columns of `batch`.
    pub fn columns(&self, batch: &RecordBatch) -> Vec<ArrayRef> {
        self.positions.iter().map(|&p| batch.column(p).clone()).collect()
    }

    /// Fails on the first row whose key has a null (a key identifies a row; null cannot).
    pub fn check_not_null(&self, batch: &RecordBatch) -> Result<()> {
        for (name, &p) in self.names.iter().zip(&self.positions) {
            if batch.column(p).null_count() > 0 {
                return Err(TableError::Invalid(format!("the primary key column {name:?} holds a null")));
            }
        }
        Ok(())
    }
}

/// The value of `column` at `row` as Iceberg's Java code holds it (`uuid`: the column is an
/// Iceberg uuid).
pub fn java_value(column: &ArrayRef, row: usize, uuid: bool) -> Result<JavaValue> {
    if column.is_null(row) {
        return Ok(JavaValue::Null);
    }
    Ok(match column.data_type() {
        DataType::Boolean => JavaValue::Boolean(column.as_boolean().value(row)),
        DataType::Int32 => JavaValue::Int(column.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => JavaValue::Long(column.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => JavaValue::Float(column.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => JavaValue::Double(column.as_primitive::<Float64Type>().value(row)),
        DataType::Date32 => JavaValue::Int(column.as_primitive::<Date32Type>().value(row)),
        DataType::Time64(TimeUnit::Microsecond) => {
            JavaValue::Long(column.as_primitive::<Time64MicrosecondType>().value(row))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            JavaValue::Long(column.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            JavaValue::Long(column.as_primitive::<TimestampNanosecondType>().value(row))
        }
        DataType::Decimal128(_, scale) => JavaValue::Decimal {
            unscaled: column.as_primitive::<Decimal128Type>().value(row),
            scale: i32::from(*scale),
        },
        DataType::Utf8 => JavaValue::String(column.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => JavaValue::String(column.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => JavaValue::String(column.as_string_view().value(row).to_string()),
        DataType::Binary => JavaValue::Bytes(column.as_binary::<i32>().value(row).to_vec()),
        DataType::LargeBinary => JavaValue::Bytes(column.as_binary::<i64>().value(row).to_vec()),
        DataType::FixedSizeBinary(16) if uuid => {
            let bytes = column.as_fixed_size_binary().value(row);
            JavaValue::Uuid(bytes.try_into().unwrap_or([0; 16]))
        }
        DataType::FixedSizeBinary(_) => JavaValue::Bytes(column.as_fixed_size_binary().value(row).to_vec()),
        other => return Err(TableError::Unsupported(format!("a primary key column of type {other} is not supported"))),
    })
}
