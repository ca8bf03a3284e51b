//! Writing position delete files (iceberg-rust 0.10 has no writer for them).
//!
//! One file per data file, next to it and named `<data file>-delete-<uuid>.parquet`, as Amoro
//! names the position deletes optimizing produces (the evaluator recognizes them by that name),
//! with `referenced_data_file` set so readers and validation can match it exactly.

use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::io::FileIO;
use iceberg::spec::{DataContentType, DataFile, DataFileFormat, NestedField, PrimitiveType, Schema, Struct, Type};
use iceberg::writer::file_writer::{FileWriter, FileWriterBuilder, ParquetWriterBuilder};
use parquet::file::properties::WriterProperties;

use crate::error::{Result, TableError};
use crate::snapshot::rewrite::{POSITION_DELETE_FILE_PATH_ID, POSITION_DELETE_POS_ID};

/// Marker in the names of position delete files written by optimizing.
pub const OPTIMIZING_DELETE_MARKER: &str = "-delete-";

/// The schema of position delete files.
pub fn position_delete_schema() -> Result<Schema> {
    Ok(Schema::builder()
        .with_fields(vec![
            NestedField::required(POSITION_DELETE_FILE_PATH_ID, "file_path", Type::Primitive(PrimitiveType::String))
                .into(),
            NestedField::required(POSITION_DELETE_POS_ID, "pos", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()?)
}

/// Location of the position delete file optimizing writes for `data_file_path`.
pub fn position_delete_location(data_file_path: &str) -> String {
    let stem = data_file_path.strip_suffix(".parquet").unwrap_or(data_file_path);
    format!("{stem}{OPTIMIZING_DELETE_MARKER}{}.parquet", uuid::Uuid::now_v7().simple())
}

/// True when `delete_path` is a position delete file optimizing wrote for `data_file_path`.
pub fn is_optimizing_delete_for(delete_path: &str, data_file_path: &str) -> bool {
    let stem = data_file_path.strip_suffix(".parquet").unwrap_or(data_file_path);
    delete_path.strip_prefix(stem).is_some_and(|rest| rest.starts_with(OPTIMIZING_DELETE_MARKER))
}

/// Writes the deleted `positions` (ascending) of `data_file_path` as a position delete file in
/// the data file's partition.
pub async fn write_position_deletes(
    io: &FileIO,
    data_file_path: &str,
    positions: &[i64],
    partition: Struct,
    spec_id: i32,
) -> Result<DataFile> {
    if positions.is_empty() {
        return Err(TableError::Invalid("a position delete file needs at least one position".into()));
    }
    if positions.windows(2).any(|w| w[0] >= w[1]) {
        return Err(TableError::Invalid("positions must be strictly ascending".into()));
    }
    let schema = Arc::new(position_delete_schema()?);
    let arrow = Arc::new(schema_to_arrow_schema(&schema)?);
    let batch = RecordBatch::try_new(
        arrow,
        vec![
            Arc::new(StringArray::from(vec![data_file_path; positions.len()])),
            Arc::new(Int64Array::from(positions.to_vec())),
        ],
    )
    .map_err(|e| TableError::Invalid(format!("position delete batch: {e}")))?;
    let location = position_delete_location(data_file_path);
    let mut writer =
        ParquetWriterBuilder::new(WriterProperties::default(), schema).build(io.new_output(&location)?).await?;
    writer.write(&batch).await?;
    let mut builders = writer.close().await?;
    let mut builder = builders.pop().ok_or_else(|| TableError::Invalid("the parquet writer wrote no file".into()))?;
    builder
        .content(DataContentType::PositionDeletes)
        .partition(partition)
        .partition_spec_id(spec_id)
        .referenced_data_file(Some(data_file_path.to_string()))
        .file_format(DataFileFormat::Parquet);
    builder.build().map_err(|e| TableError::Invalid(format!("position delete file: {e}")))
}

/// The positions a position delete file holds for `data_path`.
pub async fn read_positions(io: &FileIO, delete: &DataFile, data_path: &str) -> Result<Vec<i64>> {
    let schema = Arc::new(position_delete_schema()?);
    let task = iceberg::scan::FileScanTask {
        file_size_in_bytes: delete.file_size_in_bytes(),
        start: 0,
        length: delete.file_size_in_bytes(),
        record_count: Some(delete.record_count()),
        data_file_path: delete.file_path().to_string(),
        data_file_format: delete.file_format(),
        schema,
        project_field_ids: vec![POSITION_DELETE_FILE_PATH_ID, POSITION_DELETE_POS_ID],
        predicate: None,
        deletes: vec![],
        partition: None,
        partition_spec: None,
        name_mapping: None,
        case_sensitive: true,
    };
    let mut out = Vec::new();
    for batch in crate::scan::read_task(io, task).await? {
        let paths = batch.column(0).as_any().downcast_ref::<StringArray>();
        let pos = batch.column(1).as_any().downcast_ref::<Int64Array>();
        let (Some(paths), Some(pos)) = (paths, pos) else {
            return Err(TableError::Invalid(format!("{} is not a position delete file", delete.file_path())));
        };
        out.extend((0..batch.num_rows()).filter(|&i| paths.value(i) == data_path).map(|i| pos.value(i)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimizing_deletes_are_named_after_their_data_file() {
        let data = "s3://b/t/data/cat=a/00000-1-abc.parquet";
        let delete = position_delete_location(data);
        assert!(delete.starts_with("s3://b/t/data/cat=a/00000-1-abc-delete-"));
        assert!(delete.ends_with(".parquet"));
        assert!(is_optimizing_delete_for(&delete, data));
        assert!(!is_optimizing_delete_for(&delete, "s3://b/t/data/cat=a/00000-2-abc.parquet"));
        assert!(!is_optimizing_delete_for("s3://b/t/data/other.parquet", data));
    }
}
