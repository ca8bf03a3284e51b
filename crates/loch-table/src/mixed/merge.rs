//! Reading a keyed table: merge-on-read of its base and change stores, and the change store as
//! a CDC stream (Amoro's `MixedDeleteFilter` rules).
//!
//! Every row has a log sequence number, `(transaction, offset)`: change rows take their file's
//! transaction and their `_file_offset`, base rows their file's transaction and the largest
//! offset. Within a partition, a row (base or inserted) is dropped when a delete of the same
//! key has a strictly greater sequence number — so the latest change wins, and a base row only
//! loses to a delete of a later transaction.
//!
//! Change rows already merged into the base (a partition's optimized sequence) are skipped
//! once optimizing of keyed tables exists; until then every change row is read.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, Field, Schema as ArrowSchema};
use futures::TryStreamExt;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::scan::FileScanTask;
use iceberg::table::Table;

use super::change::{FILE_OFFSET, change_file_schema};
use super::file_name::{FileMeta, FileType};
use super::key::KeyColumns;
use crate::error::{Result, TableError};
use crate::scan::{LiveFile, live_files, read_task, whole_file_task};

/// Name of the CDC column holding the change (`INSERT`, `DELETE`, `UPDATE_BEFORE`, `UPDATE_AFTER`).
pub const CHANGE_ACTION: &str = "_change_action";
/// Name of the CDC column holding the change's transaction.
pub const TRANSACTION_ID: &str = "_transaction_id";

/// A change file read whole: its rows, transaction, kind and partition.
struct ChangeRows {
    batch: RecordBatch,
    transaction: i64,
    file_type: FileType,
    partition: String,
}

fn partition_key(spec_id: i32, partition: &iceberg::spec::Struct) -> String {
    format!("{spec_id}:{partition:?}")
}

/// Reads the change files whose transaction lies in `(from, to]`, with `_file_offset`.
async fn read_change_files(change: &Table, from: Option<i64>, to: Option<i64>) -> Result<Vec<ChangeRows>> {
    let metadata = change.metadata_ref();
    let Some(head) = metadata.current_snapshot().cloned() else { return Ok(Vec::new()) };
    let files: Vec<LiveFile> = live_files(change.file_io().clone(), metadata.clone(), head).try_collect().await?;
    let schema = Arc::new(change_file_schema(metadata.current_schema())?);
    let fields: Vec<i32> = schema.as_struct().fields().iter().map(|f| f.id).collect();
    let mut out = Vec::new();
    for file in files {
        if file.is_delete() {
            return Err(TableError::Unsupported(format!(
                "the change store holds Iceberg delete file {}; keyed tables delete with ED files",
                file.path()
            )));
        }
        let meta = FileMeta::of_change(file.path(), file.data_sequence_number);
        if from.is_some_and(|f| meta.transaction_id <= f) || to.is_some_and(|t| meta.transaction_id > t) {
            continue;
        }
        let task = whole_file_task(&file, &metadata, schema.clone(), fields.clone());
        let partition = partition_key(file.spec_id, file.file.partition());
        for batch in read_task(change.file_io(), task).await? {
            out.push(ChangeRows {
                batch,
                transaction: meta.transaction_id,
                file_type: meta.file_type,
                partition: partition.clone(),
            });
        }
    }
    Ok(out)
}

fn offsets(batch: &RecordBatch) -> Result<&arrow_array::PrimitiveArray<Int64Type>> {
    batch
        .column_by_name(FILE_OFFSET)
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| TableError::Invalid(format!("a change file lacks its {FILE_OFFSET} column")))
}

/// Drops `_file_offset`.
fn without_offset(batch: &RecordBatch) -> RecordBatch {
    let keep: Vec<usize> =
        (0..batch.num_columns()).filter(|&i| batch.schema().field(i).name() != FILE_OFFSET).collect();
    batch.project(&keep).unwrap_or_else(|_| batch.clone())
}

/// Encodes keys as comparable bytes with one converter, so equal keys give equal bytes across
/// files.
struct KeyEncoder {
    converter: Option<RowConverter>,
    primary_key: Vec<String>,
    schema: iceberg::spec::Schema,
}

impl KeyEncoder {
    fn keys(&mut self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let columns = KeyColumns::find(&self.primary_key, batch, &self.schema)?.columns(batch);
        if self.converter.is_none() {
            let fields = columns.iter().map(|c| SortField::new(c.data_type().clone())).collect();
            self.converter = Some(RowConverter::new(fields).map_err(|e| TableError::Invalid(e.to_string()))?);
        }
        let Some(converter) = &self.converter else { return Ok(Vec::new()) };
        let rows = converter.convert_columns(&columns).map_err(|e| TableError::Invalid(e.to_string()))?;
        Ok(rows.iter().map(|r| r.as_ref().to_vec()).collect())
    }
}

/// The rows of a keyed table, merged: the base store's (with its own position deletes) and the
/// change store's inserts, less every row a later delete of its key removed.
pub async fn merge_on_read(base: &Table, change: &Table, primary_key: &[String]) -> Result<Vec<RecordBatch>> {
    let mut encoder = KeyEncoder {
        converter: None,
        primary_key: primary_key.to_vec(),
        schema: (**base.metadata().current_schema()).clone(),
    };
    let changes = read_change_files(change, None, None).await?;
    // (partition, key) → the greatest (transaction, offset) of a delete.
    let mut deletes: HashMap<(String, Vec<u8>), (i64, i64)> = HashMap::new();
    for rows in changes.iter().filter(|r| r.file_type == FileType::EqDelete) {
        let offsets = offsets(&rows.batch)?;
        for (i, key) in encoder.keys(&rows.batch)?.into_iter().enumerate() {
            let lsn = (rows.transaction, offsets.value(i));
            let entry = deletes.entry((rows.partition.clone(), key)).or_insert(lsn);
            *entry = (*entry).max(lsn);
        }
    }
    let deleted_after = |partition: &str, key: Vec<u8>, lsn: (i64, i64)| {
        deletes.get(&(partition.to_string(), key)).is_some_and(|d| *d > lsn)
    };

    let mut out = Vec::new();
    if base.metadata().current_snapshot().is_some() {
        let tasks: Vec<FileScanTask> = base.scan().select_all().build()?.plan_files().await?.try_collect().await?;
        for task in tasks {
            let meta = FileMeta::of_base(&task.data_file_path);
            let spec_id = task.partition_spec.as_ref().map(|s| s.spec_id()).unwrap_or_default();
            let partition =
                partition_key(spec_id, &task.partition.clone().unwrap_or_else(iceberg::spec::Struct::empty));
            for batch in read_task(base.file_io(), task).await? {
                let keys = encoder.keys(&batch)?;
                let keep: BooleanArray = keys
                    .into_iter()
                    .map(|k| Some(!deleted_after(&partition, k, (meta.transaction_id, i64::MAX))))
                    .collect();
                out.push(filter(&batch, &keep)?);
            }
        }
    }
    for rows in changes.iter().filter(|r| r.file_type == FileType::Insert) {
        let offsets = offsets(&rows.batch)?;
        let keys = encoder.keys(&rows.batch)?;
        let keep: BooleanArray = keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| Some(!deleted_after(&rows.partition, k, (rows.transaction, offsets.value(i)))))
            .collect();
        out.push(without_offset(&filter(&rows.batch, &keep)?));
    }
    let schema = Arc::new(schema_to_arrow_schema(base.metadata().current_schema())?);
    out.into_iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| {
            RecordBatch::try_new(schema.clone(), b.columns().to_vec()).map_err(|e| TableError::Invalid(e.to_string()))
        })
        .collect()
}

fn filter(batch: &RecordBatch, keep: &BooleanArray) -> Result<RecordBatch> {
    arrow_select::filter::filter_record_batch(batch, keep).map_err(|e| TableError::Invalid(e.to_string()))
}

/// The changes of transactions `(from, to]` in the order they were made (transaction, then
/// offset, a delete before the insert of the same offset), with `_change_action` and
/// `_transaction_id`. A delete and an insert sharing an offset are an update's two halves.
pub async fn read_changes(change: &Table, from: Option<i64>, to: Option<i64>) -> Result<Vec<RecordBatch>> {
    let files = read_change_files(change, from, to).await?;
    // (transaction, offset, 0 for deletes / 1 for inserts, file, row).
    let mut order: Vec<(i64, i64, u8, usize, usize)> = Vec::new();
    for (f, rows) in files.iter().enumerate() {
        let offsets = offsets(&rows.batch)?;
        let kind = u8::from(rows.file_type != FileType::EqDelete);
        order.extend((0..rows.batch.num_rows()).map(|r| (rows.transaction, offsets.value(r), kind, f, r)));
    }
    order.sort_unstable();
    let schema = Arc::new(schema_to_arrow_schema(change.metadata().current_schema())?);
    if order.is_empty() {
        return Ok(Vec::new());
    }
    let batches: Vec<RecordBatch> = files.iter().map(|r| without_offset(&r.batch)).collect();
    let mut actions = Vec::with_capacity(order.len());
    for (i, &(tx, off, kind, _, _)) in order.iter().enumerate() {
        let paired = |j: usize| order.get(j).is_some_and(|o| o.0 == tx && o.1 == off && o.2 != kind);
        let update = if kind == 0 { paired(i + 1) } else { i > 0 && paired(i - 1) };
        actions.push(match (kind, update) {
            (0, true) => "UPDATE_BEFORE",
            (0, false) => "DELETE",
            (_, true) => "UPDATE_AFTER",
            (_, false) => "INSERT",
        });
    }
    let mut out = Vec::new();
    for (chunk, chunk_actions) in order.chunks(8192).zip(actions.chunks(8192)) {
        let indices: Vec<(usize, usize)> = chunk.iter().map(|o| (o.3, o.4)).collect();
        let mut columns = Vec::with_capacity(schema.fields().len() + 2);
        for c in 0..schema.fields().len() {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            columns.push(
                arrow_select::interleave::interleave(&arrays, &indices)
                    .map_err(|e| TableError::Invalid(e.to_string()))?,
            );
        }
        columns.push(Arc::new(StringArray::from(chunk_actions.to_vec())));
        columns.push(Arc::new(Int64Array::from(chunk.iter().map(|o| o.0).collect::<Vec<_>>())));
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(CHANGE_ACTION, DataType::Utf8, false));
        fields.push(Field::new(TRANSACTION_ID, DataType::Int64, false));
        let cdc = Arc::new(ArrowSchema::new(fields));
        out.push(RecordBatch::try_new(cdc, columns).map_err(|e| TableError::Invalid(e.to_string()))?);
    }
    Ok(out)
}
