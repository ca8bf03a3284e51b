//! Writing rows a statement produced: Parquet data files of an Iceberg table (split by its
//! partition spec), committed as one snapshot through the backend; keyed tables take their
//! rows as change-store upserts through the backend's ingest.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use futures::{Stream, StreamExt};
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::table::Table;
use iceberg::writer::IcebergWriterBuilder;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::unpartitioned_writer::UnpartitionedWriter;
use loch_table::snapshot::{PendingCommit, SnapshotAction};

use crate::backend::{Backend, TableRef};
use crate::error::{Result, SqlError};

/// The column of ingested changes that holds each row's operation.
pub const OP_COLUMN: &str = "_op";

/// `batch` as `target` types it, column by column in order (an `INSERT` matches columns by
/// position, as SQL does); a column that does not cast is an error naming it.
pub fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    if batch.num_columns() != target.fields().len() {
        return Err(SqlError::invalid(format!(
            "the table has {} columns but the statement gives {}",
            target.fields().len(),
            batch.num_columns()
        )));
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (column, field) in batch.columns().iter().zip(target.fields()) {
        let cast = if column.data_type() == field.data_type() {
            column.clone()
        } else {
            let options = arrow_cast::CastOptions { safe: false, ..Default::default() };
            arrow_cast::cast_with_options(column, field.data_type(), &options).map_err(|e| {
                SqlError::invalid(format!(
                    "column {}: cannot store {} as {}: {e}",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                ))
            })?
        };
        if !field.is_nullable() && cast.null_count() > 0 {
            return Err(SqlError::invalid(format!("column {} is NOT NULL but the statement gives NULL", field.name())));
        }
        columns.push(cast);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(target.clone(), columns, &options)?)
}

/// The Arrow schema rows of `table` are written with (field ids included).
pub fn table_arrow_schema(table: &Table) -> Result<SchemaRef> {
    Ok(Arc::new(iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())?))
}

enum Writer<B: IcebergWriterBuilder> {
    Unpartitioned(UnpartitionedWriter<B>),
    Partitioned(Box<(FanoutWriter<B>, RecordBatchPartitionSplitter)>),
}

/// Writes `rows` (already conformed to the table's schema) as data files of `table`'s default
/// spec; a failure deletes what it wrote.
pub async fn write_data_files(
    table: &Table,
    rows: impl Stream<Item = Result<RecordBatch>> + Unpin,
) -> Result<(Vec<DataFile>, u64)> {
    let metadata = table.metadata();
    let props = metadata.table_properties()?;
    let schema = metadata.current_schema().clone();
    let parquet =
        ParquetWriterBuilder::new(loch_table::write::parquet_writer_properties(metadata.properties())?, schema.clone());
    let rolling = RollingFileWriterBuilder::new(
        parquet,
        props.write_target_file_size_bytes,
        table.file_io().clone(),
        DefaultLocationGenerator::new(metadata)?,
        DefaultFileNameGenerator::new(uuid::Uuid::now_v7().to_string(), None, DataFileFormat::Parquet),
    );
    let builder = DataFileWriterBuilder::new(rolling);
    let spec = metadata.default_partition_spec().clone();
    let mut writer = if spec.is_unpartitioned() {
        Writer::Unpartitioned(UnpartitionedWriter::new(builder))
    } else {
        let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema.clone(), spec)?;
        Writer::Partitioned(Box::new((FanoutWriter::new(builder), splitter)))
    };
    let mut rows = rows;
    let mut count = 0u64;
    let mut failure = None;
    while let Some(batch) = rows.next().await {
        let result = match batch {
            Ok(batch) if batch.num_rows() == 0 => Ok(()),
            Ok(batch) => {
                count += batch.num_rows() as u64;
                match &mut writer {
                    Writer::Unpartitioned(w) => w.write(batch).await.map_err(SqlError::from),
                    Writer::Partitioned(parts) => {
                        let (w, splitter) = parts.as_mut();
                        write_split(w, splitter, &batch).await
                    }
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            failure = Some(e);
            break;
        }
    }
    let files = match writer {
        Writer::Unpartitioned(w) => w.close().await,
        Writer::Partitioned(parts) => parts.0.close().await,
    };
    match (files, failure) {
        (Ok(files), None) => Ok((files, count)),
        (Ok(files), Some(e)) => {
            delete_files(table, &files).await;
            Err(e)
        }
        (Err(e), _) => Err(e.into()),
    }
}

async fn write_split<B: IcebergWriterBuilder>(
    writer: &mut FanoutWriter<B>,
    splitter: &RecordBatchPartitionSplitter,
    batch: &RecordBatch,
) -> Result<()> {
    for (key, part) in splitter.split(batch)? {
        writer.write(key, part).await?;
    }
    Ok(())
}

/// Deletes written files that will not be committed.
pub async fn delete_files(table: &Table, files: &[DataFile]) {
    for file in files {
        let _ = table.file_io().delete(file.file_path()).await;
    }
}

/// Commits `action` to `store` of `table` through the backend; a failure deletes the
/// manifests it wrote.
pub async fn commit(
    backend: &dyn Backend,
    table: &TableRef,
    store: &Table,
    action: impl SnapshotAction,
) -> Result<PendingCommit> {
    let pending = action.prepare(store).await?;
    let name = store.identifier().name().to_string();
    if let Err(e) = backend.commit(table, &name, pending.requirements.clone(), pending.updates.clone()).await {
        for path in &pending.written_files {
            let _ = store.file_io().delete(path).await;
        }
        return Err(e);
    }
    Ok(pending)
}

/// `batch` with an `_op` column of `op` (`+I`, `-D`, ...) for a keyed table's ingest.
pub fn with_op(batch: &RecordBatch, op: &str) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec![op; batch.num_rows()])));
    Ok(RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns)?)
}

/// `UPDATE`'s rows for a keyed table: each old row (`-U`) followed by its new one (`+U`).
pub fn update_pairs(before: &RecordBatch, after: &RecordBatch) -> Result<RecordBatch> {
    let old = with_op(before, "-U")?;
    let new = with_op(after, "+U")?;
    let both = arrow_select::concat::concat_batches(&old.schema(), [&old, &new])?;
    // Interleave: row i of before, then row i of after.
    let n = before.num_rows() as u32;
    let order: Vec<u32> = (0..n).flat_map(|i| [i, i + n]).collect();
    let indices = arrow_array::UInt32Array::from(order);
    Ok(arrow_select::take::take_record_batch(&both, &indices)?)
}
