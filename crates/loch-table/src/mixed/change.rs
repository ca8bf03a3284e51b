//! Writing a keyed table's change store (Amoro's `ChangeTaskWriter`): each change is routed by
//! its kind to an insert (`I`) or delete (`ED`) file — both Iceberg *data* files holding whole
//! rows — of its key's bucket and partition, and numbered with `_file_offset` so that readers
//! order the changes of one transaction. Inserts, deletes and update-befores take the next
//! offset; an update-after reuses its update-before's, so the pair's delete never removes its
//! own insert. With upsert, an insert first deletes whatever row the key had.
//!
//! Files carry transaction id 0 in their names, as Flink's writer does: the transaction is the
//! sequence number of the change-store snapshot that commits them, so concurrent writers need
//! no id allocation and commit order is transaction order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::{Int64Array, RecordBatch, UInt32Array};
use iceberg::arrow::{RecordBatchPartitionSplitter, schema_to_arrow_schema};
use iceberg::spec::{DataFile, NestedField, PartitionKey, PrimitiveType, Schema, Type};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultLocationGenerator, FileNameGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};

use super::file_name::{FileName, FileType};
use super::key::KeyColumns;
use super::key_hash::key_hash;
use super::tree::TreeNode;
use crate::error::{Result, TableError};
use crate::write::parquet_writer_properties;

/// Field id of `_file_offset` (Amoro's `Integer.MAX_VALUE - 1002`).
pub const FILE_OFFSET_ID: i32 = i32::MAX - 1002;
/// Name of the offset column change files carry.
pub const FILE_OFFSET: &str = "_file_offset";

/// A change to one row, as Flink's `RowKind` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeOp {
    /// `+I`: a new row (with upsert: replaces the key's row).
    Insert,
    /// `-U`: the row before an update.
    UpdateBefore,
    /// `+U`: the row after an update.
    UpdateAfter,
    /// `-D`: a deleted row.
    Delete,
}

impl ChangeOp {
    /// Parses `+I`, `-U`, `+U`, `-D`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "+I" => Some(ChangeOp::Insert),
            "-U" => Some(ChangeOp::UpdateBefore),
            "+U" => Some(ChangeOp::UpdateAfter),
            "-D" => Some(ChangeOp::Delete),
            _ => None,
        }
    }

    /// Its short name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Insert => "+I",
            ChangeOp::UpdateBefore => "-U",
            ChangeOp::UpdateAfter => "+U",
            ChangeOp::Delete => "-D",
        }
    }
}

/// The schema of change files: the table's columns and `_file_offset`.
pub fn change_file_schema(table: &Schema) -> Result<Schema> {
    let mut fields: Vec<_> = table.as_struct().fields().to_vec();
    fields.push(Arc::new(NestedField::optional(FILE_OFFSET_ID, FILE_OFFSET, Type::Primitive(PrimitiveType::Long))));
    Ok(Schema::builder().with_schema_id(table.schema_id()).with_fields(fields).build()?)
}

/// How a keyed table is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeOptions {
    /// `change.file-index.hash-bucket` (4): buckets of the change store.
    pub buckets: u32,
    /// `write.upsert.enabled` (false): an insert replaces the key's row.
    pub upsert: bool,
    /// Bytes of rows [`ChangeWriter::append`] buffers before it writes them out as files, so
    /// a transaction of any size holds about this much in memory.
    pub buffer_bytes: usize,
}

impl Default for ChangeOptions {
    fn default() -> Self {
        Self { buckets: 4, upsert: false, buffer_bytes: 64 << 20 }
    }
}

/// Names files as Amoro does, for one (bucket, type) of one writer.
#[derive(Debug, Clone)]
struct MixedFileNames {
    node: TreeNode,
    file_type: FileType,
    transaction_id: i64,
    operation_id: u64,
    count: Arc<AtomicU64>,
}

impl FileNameGenerator for MixedFileNames {
    fn generate_file_name(&self) -> String {
        let name = FileName {
            node: self.node,
            file_type: self.file_type,
            transaction_id: self.transaction_id,
            partition_id: 0,
            task_id: 0,
            operation_id: self.operation_id,
            count: self.count.fetch_add(1, Ordering::Relaxed) + 1,
        };
        name.render("parquet")
    }
}

/// Buffers the changes of one transaction and writes them as change files.
#[derive(Debug)]
pub struct ChangeWriter {
    table: Table,
    file_schema: Arc<Schema>,
    primary_key: Vec<String>,
    options: ChangeOptions,
    offset: i64,
    /// (type, bucket) → batches of rows with their `_file_offset`.
    groups: BTreeMap<(u8, TreeNode), Vec<RecordBatch>>,
    /// Bytes of `groups`.
    buffered: usize,
    /// Files written by earlier flushes of this transaction; deleted if the writer is dropped
    /// before [`ChangeWriter::finish`] hands them over.
    flushed: Vec<DataFile>,
    /// A flush failed part-way: rows of the transaction are lost, so it can only be aborted.
    failed: bool,
    rows: u64,
    operation_id: u64,
    count: Arc<AtomicU64>,
}

impl ChangeWriter {
    /// A writer of `change` (the change store) for a table keyed by `primary_key`.
    pub fn new(change: &Table, primary_key: &[String], options: ChangeOptions) -> Result<Self> {
        if primary_key.is_empty() {
            return Err(TableError::Invalid("a keyed table needs a primary key".into()));
        }
        if !options.buckets.is_power_of_two() {
            return Err(TableError::Invalid(format!("{} buckets is not a power of two", options.buckets)));
        }
        let file_schema = Arc::new(change_file_schema(change.metadata().current_schema())?);
        let operation_id = operation_id();
        Ok(Self {
            table: change.clone(),
            file_schema,
            primary_key: primary_key.to_vec(),
            options,
            offset: 0,
            groups: BTreeMap::new(),
            buffered: 0,
            flushed: Vec::new(),
            failed: false,
            rows: 0,
            operation_id,
            count: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Changes buffered so far (an upsert counts twice: its delete and its insert).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Buffers `batch` (the table's columns, in its order) whose rows are the changes `ops`.
    pub fn write(&mut self, batch: &RecordBatch, ops: &[ChangeOp]) -> Result<()> {
        self.check_usable()?;
        if ops.len() != batch.num_rows() {
            return Err(TableError::Invalid(format!("{} rows but {} operations", batch.num_rows(), ops.len())));
        }
        let arrow = Arc::new(schema_to_arrow_schema(self.table.metadata().current_schema())?);
        let batch = RecordBatch::try_new(arrow, batch.columns().to_vec())
            .map_err(|e| TableError::Invalid(format!("the rows do not match the table's columns: {e}")))?;
        let key = KeyColumns::find(&self.primary_key, &batch, self.table.metadata().current_schema())?;
        key.check_not_null(&batch)?;
        // (type, bucket) → (rows, offsets).
        let mut routed: BTreeMap<(u8, TreeNode), (Vec<u32>, Vec<i64>)> = BTreeMap::new();
        for (row, op) in ops.iter().enumerate() {
            let node = TreeNode::of_hash(key_hash(&key.java_values(&batch, row)?), self.options.buckets)
                .map_err(|e| TableError::Invalid(e.to_string()))?;
            let mut route = |file_type: FileType, offset: i64| {
                let entry = routed.entry((file_type.id(), node)).or_default();
                entry.0.push(row as u32);
                entry.1.push(offset);
            };
            match op {
                ChangeOp::Insert if self.options.upsert => {
                    self.offset += 1;
                    route(FileType::EqDelete, self.offset);
                    self.offset += 1;
                    route(FileType::Insert, self.offset);
                }
                ChangeOp::Insert => {
                    self.offset += 1;
                    route(FileType::Insert, self.offset);
                }
                ChangeOp::UpdateBefore | ChangeOp::Delete => {
                    self.offset += 1;
                    route(FileType::EqDelete, self.offset);
                }
                // Shares the update-before's offset (a lone one takes the next).
                ChangeOp::UpdateAfter => {
                    if self.offset == 0 {
                        self.offset = 1;
                    }
                    route(FileType::Insert, self.offset);
                }
            }
        }
        let file_arrow = Arc::new(schema_to_arrow_schema(&self.file_schema)?);
        for (group, (rows, offsets)) in routed {
            let indices = UInt32Array::from(rows);
            let mut columns = Vec::with_capacity(batch.num_columns() + 1);
            for column in batch.columns() {
                columns.push(
                    arrow_select::take::take(column, &indices, None)
                        .map_err(|e| TableError::Invalid(format!("routing rows: {e}")))?,
                );
            }
            self.rows += offsets.len() as u64;
            columns.push(Arc::new(Int64Array::from(offsets)));
            let routed = RecordBatch::try_new(file_arrow.clone(), columns)
                .map_err(|e| TableError::Invalid(format!("routing rows: {e}")))?;
            self.buffered += routed.get_array_memory_size();
            self.groups.entry(group).or_default().push(routed);
        }
        Ok(())
    }

    /// Buffers like [`Self::write`], then writes the buffer out as files once it holds
    /// [`ChangeOptions::buffer_bytes`]: memory stays bounded however large the transaction.
    pub async fn append(&mut self, batch: &RecordBatch, ops: &[ChangeOp]) -> Result<()> {
        self.write(batch, ops)?;
        if self.buffered >= self.options.buffer_bytes {
            self.write_files().await?;
        }
        Ok(())
    }

    /// Bytes of changes buffered in memory.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Writes the buffered changes as change files, one per (partition, bucket, type) and
    /// roll, and returns them with those earlier flushes wrote; the caller commits them to the
    /// change store in one snapshot (its sequence number is their transaction). The writer
    /// starts afresh.
    pub async fn finish(&mut self) -> Result<Vec<DataFile>> {
        self.check_usable()?;
        self.write_files().await?;
        let files = std::mem::take(&mut self.flushed);
        self.offset = 0;
        self.rows = 0;
        Ok(files)
    }

    /// Deletes the files flushes wrote and drops the buffer: the transaction is
    /// abandoned (best effort; what stays behind is an orphan).
    pub async fn abort(&mut self) {
        for file in std::mem::take(&mut self.flushed) {
            let _ = self.table.file_io().delete(file.file_path()).await;
        }
        self.groups.clear();
        self.buffered = 0;
        self.offset = 0;
        self.rows = 0;
        self.failed = false;
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(TableError::Invalid(
                "an earlier flush of this transaction failed; abort it and write it again".into(),
            ));
        }
        Ok(())
    }

    /// Writes the buffer out, adding the files to `flushed` as they close; a failure leaves
    /// the writer failed (the rows taken from the buffer are gone).
    async fn write_files(&mut self) -> Result<()> {
        self.buffered = 0;
        let groups = std::mem::take(&mut self.groups);
        self.failed = true;
        for ((type_id, node), batches) in groups {
            let file_type = FileType::ALL.into_iter().find(|t| t.id() == type_id).unwrap_or(FileType::Insert);
            let names = MixedFileNames {
                node,
                file_type,
                transaction_id: 0,
                operation_id: self.operation_id,
                count: self.count.clone(),
            };
            write_mixed_files(&self.table, self.file_schema.clone(), names, &batches, &mut self.flushed).await?;
        }
        self.failed = false;
        Ok(())
    }
}

impl Drop for ChangeWriter {
    /// A transaction dropped unfinished (a cancelled request) deletes the files it flushed.
    fn drop(&mut self) {
        let paths: Vec<String> = self.flushed.drain(..).map(|f| f.file_path().to_string()).collect();
        if paths.is_empty() {
            return;
        }
        let io = self.table.file_io().clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    for path in paths {
                        let _ = io.delete(&path).await;
                    }
                });
            }
            Err(_) => tracing::warn!(files = paths.len(), "a dropped change writer left its flushed files behind"),
        }
    }
}

/// A fresh writer's operation id (the unique part of its file names).
fn operation_id() -> u64 {
    u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap_or_default()) & (i64::MAX as u64)
}

/// Writes `batches` (rows of `file_schema`) of one (bucket, type) into `table`'s data
/// directory, one file per partition and roll, named by `names`, adding each to `written` as
/// it closes (so a failure part-way still knows what to delete).
async fn write_mixed_files(
    table: &Table,
    file_schema: Arc<Schema>,
    names: MixedFileNames,
    batches: &[RecordBatch],
    written: &mut Vec<DataFile>,
) -> Result<()> {
    let Some(first) = batches.first() else { return Ok(()) };
    let metadata = table.metadata();
    let spec = metadata.default_partition_spec().clone();
    let props = parquet_writer_properties(metadata.properties())?;
    let batch = arrow_select::concat::concat_batches(&first.schema(), batches)
        .map_err(|e| TableError::Invalid(format!("collecting rows: {e}")))?;
    let parts: Vec<(Option<PartitionKey>, RecordBatch)> = if spec.is_unpartitioned() {
        vec![(None, batch)]
    } else {
        RecordBatchPartitionSplitter::try_new_with_computed_values(file_schema.clone(), spec.clone())?
            .split(&batch)?
            .into_iter()
            .map(|(key, batch)| (Some(key), batch))
            .collect()
    };
    for (key, part) in parts {
        let rolling = RollingFileWriterBuilder::new_with_default_file_size(
            ParquetWriterBuilder::new(props.clone(), file_schema.clone()),
            table.file_io().clone(),
            DefaultLocationGenerator::new(metadata)?,
            names.clone(),
        );
        let mut writer = DataFileWriterBuilder::new(rolling).build(key).await?;
        writer.write(part).await?;
        written.extend(writer.close().await?);
    }
    Ok(())
}

/// Writes base-store (`B`) files of transaction `transaction_id` from rows of the table's
/// schema, routed to `buckets` buckets by key, as optimizing folds changes into the base; each
/// file is added to `written` as it closes.
pub async fn write_base_files(
    base: &Table,
    primary_key: &[String],
    buckets: u32,
    transaction_id: i64,
    batches: &[RecordBatch],
    written: &mut Vec<DataFile>,
) -> Result<()> {
    let schema = base.metadata().current_schema().clone();
    let mut groups: BTreeMap<TreeNode, Vec<RecordBatch>> = BTreeMap::new();
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        let key = KeyColumns::find(primary_key, batch, &schema)?;
        let mut routed: BTreeMap<TreeNode, Vec<u32>> = BTreeMap::new();
        for row in 0..batch.num_rows() {
            let node = TreeNode::of_hash(key_hash(&key.java_values(batch, row)?), buckets)
                .map_err(|e| TableError::Invalid(e.to_string()))?;
            routed.entry(node).or_default().push(row as u32);
        }
        for (node, rows) in routed {
            let indices = UInt32Array::from(rows);
            let taken = arrow_select::take::take_record_batch(batch, &indices)
                .map_err(|e| TableError::Invalid(format!("routing rows: {e}")))?;
            groups.entry(node).or_default().push(taken);
        }
    }
    let (operation_id, count) = (operation_id(), Arc::new(AtomicU64::new(0)));
    for (node, batches) in groups {
        let names =
            MixedFileNames { node, file_type: FileType::Base, transaction_id, operation_id, count: count.clone() };
        write_mixed_files(base, schema.clone(), names, &batches, written).await?;
    }
    Ok(())
}
