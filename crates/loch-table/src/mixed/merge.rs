//! Reading a keyed table: merge-on-read of its base and change stores, and the change store as
//! a CDC stream (Amoro's `MixedDeleteFilter` rules).
//!
//! Every row has a log sequence number, `(transaction, offset)`: change rows take their file's
//! transaction and their `_file_offset`, base rows their file's transaction and the largest
//! offset. Within a partition, a row (base or inserted) is dropped when a delete of the same
//! key has a strictly greater sequence number — so the latest change wins, and a base row only
//! loses to a delete of a later transaction.
//!
//! Change files already folded into the base (at or below their partition's optimized
//! sequence, see [`super::sequence`]) are not read; the CDC stream still holds them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::expr::{Bind, Predicate};
use iceberg::scan::FileScanTask;
use iceberg::spec::{Schema, Struct};
use iceberg::table::Table;

use super::change::{FILE_OFFSET, FILE_OFFSET_ID, change_file_schema};
use super::file_name::{FileMeta, FileType};
use super::key::KeyColumns;
use super::prune::{MergeFilter, identity_columns};
use super::sequence::{partition_path, read_optimized_sequence};
use crate::error::{Result, TableError};
use crate::scan::{LiveFile, live_files, live_files_after, read_task, whole_file_task};

/// Name of the CDC column holding the change (`INSERT`, `DELETE`, `UPDATE_BEFORE`, `UPDATE_AFTER`).
pub const CHANGE_ACTION: &str = "_change_action";
/// Name of the CDC column holding the change's transaction.
pub const TRANSACTION_ID: &str = "_transaction_id";

/// Files a merged read reads at once: a change store holds many small files, whose reads are
/// mostly waiting and per-file setup; a few at a time bounds the rows held in memory.
const READ_AHEAD_FILES: usize = 4;

/// Change files a merged read lists above which it prunes them by metrics too.
const METRICS_PRUNING_MIN_FILES: usize = 32;
/// The same, when the optimized sequence let it skip folded manifests.
const METRICS_PRUNING_FOLDED_MIN_FILES: usize = 256;

/// A change file read whole: its rows, transaction and kind.
struct ChangeRows {
    batch: RecordBatch,
    transaction: i64,
    file_type: FileType,
}

/// The key deletes and rows are matched by: the partition's values. Not its spec id: Iceberg's
/// scan plans base files without their spec, and both stores share their specs.
pub(super) fn partition_key(partition: &iceberg::spec::Struct) -> String {
    format!("{partition:?}")
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
        let meta = change_meta(&file)?;
        if from.is_some_and(|f| meta.transaction_id <= f) || to.is_some_and(|t| meta.transaction_id > t) {
            continue;
        }
        let task = whole_file_task(&file, &metadata, schema.clone(), fields.clone());
        for batch in read_task(change.file_io(), task).await? {
            out.push(ChangeRows { batch, transaction: meta.transaction_id, file_type: meta.file_type });
        }
    }
    Ok(out)
}

/// What a change file's name says; an Iceberg delete file in a change store is refused (keyed
/// tables delete with `ED` data files, which readers would not apply it with).
pub(super) fn change_meta(file: &LiveFile) -> Result<FileMeta> {
    if file.is_delete() {
        return Err(TableError::Unsupported(format!(
            "the change store holds Iceberg delete file {}; keyed tables delete with ED files",
            file.path()
        )));
    }
    Ok(FileMeta::of_change(file.path(), file.data_sequence_number))
}

pub(super) fn offsets(batch: &RecordBatch) -> Result<&arrow_array::PrimitiveArray<Int64Type>> {
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
pub(super) struct KeyEncoder {
    converter: RowConverter,
    primary_key: Vec<String>,
    schema: Schema,
}

impl KeyEncoder {
    pub(super) fn new(primary_key: &[String], schema: &Schema) -> Result<Self> {
        let arrow = schema_to_arrow_schema(schema)?;
        let fields = primary_key
            .iter()
            .map(|k| {
                let field = arrow
                    .field_with_name(k)
                    .map_err(|_| TableError::Invalid(format!("the primary key column {k:?} is missing")))?;
                Ok(SortField::new(field.data_type().clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        let converter = RowConverter::new(fields).map_err(|e| TableError::Invalid(e.to_string()))?;
        Ok(Self { converter, primary_key: primary_key.to_vec(), schema: schema.clone() })
    }

    /// The keys of `batch`'s rows, owned (for maps of deletes, which outlive the batch).
    pub(super) fn keys(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        Ok(self.rows(batch)?.iter().map(|r| r.as_ref().to_vec()).collect())
    }

    /// The keys of `batch`'s rows in one buffer: looking rows up by `rows.row(i).as_ref()`
    /// costs no allocation per row, which matters on a scan of the whole base store.
    pub(super) fn rows(&self, batch: &RecordBatch) -> Result<arrow_row::Rows> {
        let columns = KeyColumns::find(&self.primary_key, batch, &self.schema)?.columns(batch);
        self.converter.convert_columns(&columns).map_err(|e| TableError::Invalid(e.to_string()))
    }
}

/// Which rows of `keys` no delete removes: a row survives unless `deletes` holds its key with
/// a sequence number greater than the row's own, `lsn(row)`.
pub(super) fn survivors(
    keys: &arrow_row::Rows,
    deletes: &HashMap<Vec<u8>, (i64, i64)>,
    lsn: impl Fn(usize) -> (i64, i64),
) -> BooleanArray {
    (0..keys.num_rows()).map(|i| Some(deletes.get(keys.row(i).as_ref()).is_none_or(|d| *d <= lsn(i)))).collect()
}

/// Which columns and rows a merged read returns.
#[derive(Debug, Clone, Default)]
pub struct MergeRead {
    /// Columns in this order; all of the table's when `None`.
    pub columns: Option<Vec<String>>,
    /// Only rows it holds for; it also prunes files by partition, metrics and bucket.
    pub filter: Option<Predicate>,
}

/// How many files a merged read planned and how many it reads after pruning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Live files of the change store.
    pub change_files: usize,
    /// Change files read (inserts and deletes the filter cannot rule out).
    pub change_files_read: usize,
    /// Base files read (after partition, metrics and bucket pruning).
    pub base_files_read: usize,
    /// Files (base and change) skipped because their bucket cannot hold a key the filter
    /// allows.
    pub skipped_by_bucket: usize,
    /// Change files skipped because their partition's optimized sequence covers them (their
    /// rows are in the base store).
    pub skipped_as_optimized: usize,
}

/// The rows of a merged read, streamed one file at a time after the deletes are loaded.
pub struct MergedRows {
    /// Their schema (the read's columns).
    pub schema: SchemaRef,
    /// What the read planned.
    pub stats: MergeStats,
    /// The rows.
    pub rows: BoxStream<'static, Result<RecordBatch>>,
}

impl std::fmt::Debug for MergedRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergedRows").field("schema", &self.schema).field("stats", &self.stats).finish_non_exhaustive()
    }
}

/// A file whose rows survive unless a later delete of their key removes them.
enum RowFile {
    Base(FileScanTask, FileMeta),
    Insert(FileScanTask, i64),
}

/// Reads a keyed table merged: the base store's rows (with its own position deletes) and the
/// change store's inserts, less every row a later delete of its key removed, as `read` asks.
pub async fn scan_merged(base: &Table, change: &Table, primary_key: &[String], read: &MergeRead) -> Result<MergedRows> {
    let schema = base.metadata().current_schema().clone();
    let arrow = Arc::new(schema_to_arrow_schema(&schema)?);
    let columns: Vec<String> = match &read.columns {
        Some(columns) => {
            for c in columns {
                if arrow.index_of(c).is_err() {
                    return Err(TableError::Invalid(format!("the table has no top-level column {c:?}")));
                }
            }
            columns.clone()
        }
        None => arrow.fields().iter().map(|f| f.name().clone()).collect(),
    };
    let positions = columns.iter().filter_map(|c| arrow.index_of(c).ok()).collect::<Vec<_>>();
    let output: SchemaRef = Arc::new(arrow.project(&positions).map_err(|e| TableError::Invalid(e.to_string()))?);
    let identity = identity_columns(&schema, change.metadata().partition_specs_iter());
    let filter = MergeFilter::new(read.filter.as_ref(), &schema, primary_key, &identity)?;
    // Data rows need the output columns and the key; delete rows the key alone.
    let mut needed = columns.clone();
    needed.extend(primary_key.iter().filter(|k| !columns.contains(k)).cloned());
    let encoder = Arc::new(KeyEncoder::new(primary_key, &schema)?);

    let mut stats = MergeStats::default();
    let mut row_files = Vec::new();
    // Partition → key → greatest delete sequence number: a file looks its partition up once,
    // and a file of a partition without deletes keeps its rows without encoding their keys.
    let mut deletes: HashMap<String, HashMap<Vec<u8>, (i64, i64)>> = HashMap::new();
    let mut delete_files = Vec::new();
    let change_metadata = change.metadata_ref();
    if let Some(head) = change_metadata.current_snapshot().cloned() {
        let optimized = read_optimized_sequence(base).await?;
        let floor = optimized.floor(&change_metadata);
        let files: Vec<LiveFile> =
            live_files_after(change.file_io().clone(), change_metadata.clone(), head, floor).try_collect().await?;
        stats.change_files = files.len();
        // Pruning by metrics plans the whole change store (iceberg's scan reads every
        // manifest, folded ones too): worth it for more than a few files, and once a folded
        // prefix was skipped above, only for many.
        let worth = if floor == i64::MIN { METRICS_PRUNING_MIN_FILES } else { METRICS_PRUNING_FOLDED_MIN_FILES };
        let (may_insert, may_delete) = if files.len() > worth {
            (surviving(change, filter.rows.as_ref()).await?, surviving(change, filter.deletes.as_ref()).await?)
        } else {
            (None, None)
        };
        let file_schema = Arc::new(change_file_schema(&schema)?);
        for file in files {
            let meta = change_meta(&file)?;
            if !optimized.is_empty() {
                let spec = change_metadata.partition_spec_by_id(file.spec_id).ok_or_else(|| {
                    TableError::Invalid(format!(
                        "change file {} has unknown partition spec {}",
                        file.path(),
                        file.spec_id
                    ))
                })?;
                let path = partition_path(spec, file.file.partition(), change_metadata.current_schema())?;
                if optimized.covers(&path, file.data_sequence_number) {
                    stats.skipped_as_optimized += 1;
                    continue;
                }
            }
            let (survivors, predicate, wanted) = match meta.file_type {
                FileType::EqDelete => (&may_delete, filter.deletes.as_ref(), primary_key),
                _ => (&may_insert, filter.rows.as_ref(), needed.as_slice()),
            };
            if !filter.holds(meta.node) {
                stats.skipped_by_bucket += 1;
                continue;
            }
            if survivors.as_ref().is_some_and(|s| !s.contains(file.path())) {
                continue;
            }
            stats.change_files_read += 1;
            let mut fields = field_ids(&file_schema, wanted)?;
            fields.push(FILE_OFFSET_ID);
            let mut task = whole_file_task(&file, &change_metadata, file_schema.clone(), fields);
            task.predicate = predicate.map(|p| p.bind(file_schema.clone(), true)).transpose()?;
            if meta.file_type != FileType::EqDelete {
                row_files.push(RowFile::Insert(task, meta.transaction_id));
                continue;
            }
            delete_files.push((partition_key(file.file.partition()), meta.transaction_id, task));
        }
    }
    // Delete files are small and many: read several at once.
    let io = change.file_io().clone();
    let mut read = stream::iter(delete_files)
        .map(|(partition, transaction, task)| {
            let io = io.clone();
            spawn_read(async move { Ok((partition, transaction, read_task(&io, task).await?)) })
        })
        .buffer_unordered(READ_AHEAD_FILES);
    while let Some((partition, transaction, batches)) = read.try_next().await? {
        let partition = deletes.entry(partition).or_default();
        for batch in batches {
            let offsets = offsets(&batch)?;
            for (i, key) in encoder.keys(&batch)?.into_iter().enumerate() {
                let lsn = (transaction, offsets.value(i));
                let entry = partition.entry(key).or_insert(lsn);
                *entry = (*entry).max(lsn);
            }
        }
    }
    let mut base_tasks = Vec::new();
    if base.metadata().current_snapshot().is_some() {
        let tasks = crate::scan::plan_current_schema(base, &needed, filter.rows.as_ref()).await?;
        for task in tasks {
            let meta = FileMeta::of_base(&task.data_file_path);
            if filter.holds(meta.node) {
                base_tasks.push(RowFile::Base(task, meta));
            } else {
                stats.skipped_by_bucket += 1;
            }
        }
    }
    stats.base_files_read = base_tasks.len();
    base_tasks.extend(row_files);

    let deletes = Arc::new(deletes);
    let (base_io, change_io) = (base.file_io().clone(), change.file_io().clone());
    let out = output.clone();
    let rows = stream::iter(base_tasks)
        .map(move |file| {
            let (deletes, encoder, out) = (deletes.clone(), encoder.clone(), out.clone());
            let (base_io, change_io) = (base_io.clone(), change_io.clone());
            spawn_read(async move {
                let (io, task, transaction, offsets_of) = match file {
                    RowFile::Base(task, meta) => (base_io, task, meta.transaction_id, false),
                    RowFile::Insert(task, transaction) => (change_io, task, transaction, true),
                };
                let partition = partition_key(&task.partition.clone().unwrap_or_else(Struct::empty));
                let deleted = deletes.get(&partition).filter(|d| !d.is_empty());
                let mut batches = Vec::new();
                for batch in read_task(&io, task).await? {
                    let kept = match deleted {
                        None => batch,
                        Some(deleted) => {
                            let offsets = if offsets_of { Some(offsets(&batch)?) } else { None };
                            let keep = survivors(&encoder.rows(&batch)?, deleted, |i| {
                                (transaction, offsets.map_or(i64::MAX, |o| o.value(i)))
                            });
                            filter_rows(&batch, &keep)?
                        }
                    };
                    if kept.num_rows() > 0 {
                        batches.push(project(&kept, &out)?);
                    }
                }
                Ok(stream::iter(batches.into_iter().map(Ok)))
            })
        })
        .buffered(READ_AHEAD_FILES)
        .try_flatten()
        .boxed();
    Ok(MergedRows { schema: output, stats, rows })
}

/// Runs one file's read on its own task, so reads overlap their I/O and decode on every core;
/// a read whose result is no longer wanted (the stream was dropped) stops.
async fn spawn_read<T: Send + 'static>(read: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(tokio::spawn(read));
    (&mut task.0).await.map_err(|e| TableError::Invalid(format!("a file read stopped: {e}")))?
}

/// Paths of `table`'s current files that `filter` cannot rule out by partition or metrics;
/// `None` when there is no filter (every file).
async fn surviving(table: &Table, filter: Option<&Predicate>) -> Result<Option<HashSet<String>>> {
    let Some(filter) = filter else { return Ok(None) };
    // A filter binds by name to the snapshot's schema: only while it is the current one.
    let metadata = table.metadata();
    if metadata.current_snapshot().and_then(|s| s.schema_id()).is_some_and(|id| id != metadata.current_schema_id()) {
        return Ok(None);
    }
    let tasks: Vec<FileScanTask> =
        table.scan().select_empty().with_filter(filter.clone()).build()?.plan_files().await?.try_collect().await?;
    Ok(Some(tasks.into_iter().map(|t| t.data_file_path).collect()))
}

fn field_ids(schema: &Schema, names: &[String]) -> Result<Vec<i32>> {
    names
        .iter()
        .map(|n| schema.field_by_name(n).map(|f| f.id).ok_or_else(|| TableError::Invalid(format!("no column {n:?}"))))
        .collect()
}

/// `batch`'s columns of `schema`, typed as it types them.
fn project(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            batch
                .column_by_name(f.name())
                .cloned()
                .ok_or_else(|| TableError::Invalid(format!("a file lacks column {}", f.name())))
        })
        .collect::<Result<Vec<_>>>()?;
    // With the row count, so a read of no columns (a count) still counts rows.
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(|e| TableError::Invalid(e.to_string()))
}

/// All rows of a keyed table, merged (see [`scan_merged`]).
pub async fn merge_on_read(base: &Table, change: &Table, primary_key: &[String]) -> Result<Vec<RecordBatch>> {
    scan_merged(base, change, primary_key, &MergeRead::default()).await?.rows.try_collect().await
}

fn filter_rows(batch: &RecordBatch, keep: &BooleanArray) -> Result<RecordBatch> {
    arrow_select::filter::filter_record_batch(batch, keep).map_err(|e| TableError::Invalid(e.to_string()))
}

/// The changes of transactions `(from, to]` in the order they were made (transaction, then
/// offset, a delete before the insert of the same offset), with `_change_action` and
/// `_transaction_id`. A delete and an insert sharing an offset are an update's two halves.
/// Refused when the change-data TTL removed changes after `from` (they would be missing).
pub async fn read_changes(change: &Table, from: Option<i64>, to: Option<i64>) -> Result<Vec<RecordBatch>> {
    let removed = change.metadata().properties().get(super::properties::REMOVED_THROUGH);
    if let Some(through) = removed.and_then(|v| v.parse::<i64>().ok())
        && from.unwrap_or(0) < through
    {
        return Err(TableError::Invalid(format!(
            "the changes of transactions up to {through} were removed by change.data.ttl.minutes; \
             read changes after transaction {through} (from={through}) or read the table itself"
        )));
    }
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
