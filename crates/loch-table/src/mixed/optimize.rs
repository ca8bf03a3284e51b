//! One task of keyed optimizing (Amoro's minor, major and full on a Mixed-Iceberg table): the
//! files of one partition and one subtree of key buckets, so no key of the task lives in
//! another task.
//!
//! - Change inserts no later delete removed, and the live rows of base files chosen for
//!   rewriting, become base (`B`) files of their key's bucket, named with the greatest
//!   transaction among the task's inputs (a base row's sequence number is its file's
//!   transaction, so every change not folded yet — all of a greater transaction — still
//!   applies to it).
//! - Base files that stay get one position delete file each holding their old position deletes
//!   and the rows a later change delete removed; the commit drops the old ones.
//!
//! Memory holds the task's delete keys and at most [`FLUSH_BYTES`] of surviving rows.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch};
use iceberg::scan::FileScanTaskDeleteFile;
use iceberg::spec::{DataContentType, DataFile};
use iceberg::table::Table;

use super::change::{FILE_OFFSET_ID, change_file_schema, write_base_files};
use super::file_name::{FileMeta, FileType};
use super::merge::{KeyEncoder, change_meta, offsets, survivors};
use crate::error::{Result, TableError};
use crate::position_delete::{read_positions, write_position_deletes};
use crate::scan::{LiveFile, read_task, whole_file_task};

/// Surviving rows held before they are written out as base files.
pub const FLUSH_BYTES: usize = 256 << 20;

/// A base-store data file with the position deletes that apply to it.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseFile {
    /// The data file.
    pub file: LiveFile,
    /// Its position delete files.
    pub deletes: Vec<LiveFile>,
}

/// The files of one task: one partition, one subtree of key buckets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeFiles {
    /// Change files (inserts and deletes) above the partition's optimized sequence.
    pub change: Vec<LiveFile>,
    /// Base files whose live rows are rewritten together with the surviving inserts.
    pub rewrite: Vec<BaseFile>,
    /// Base files that stay; what later deletes removed from them and their old position
    /// deletes become one position delete file each.
    pub reposition: Vec<BaseFile>,
}

impl NodeFiles {
    /// The transaction new base files are named with: the greatest among the inputs.
    pub fn transaction(&self) -> i64 {
        let change = self.change.iter().map(|f| FileMeta::of_change(f.path(), f.data_sequence_number).transaction_id);
        let base = self.rewrite.iter().map(|f| FileMeta::of_base(f.file.path()).transaction_id);
        change.chain(base).max().unwrap_or(0)
    }
}

/// What a task wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeOutput {
    /// New base files.
    pub data_files: Vec<DataFile>,
    /// New position delete files, one per repositioned base file that has deleted rows, with
    /// the spec of that file.
    pub position_deletes: Vec<(DataFile, i32)>,
    /// Rows read from change inserts and rewritten base files (after deletes).
    pub rows_read: u64,
    /// Rows written to new base files.
    pub rows_written: u64,
    /// Base rows of repositioned files that change deletes removed.
    pub rows_deleted: u64,
    /// Positions written to new position delete files.
    pub positions_written: u64,
}

impl NodeOutput {
    /// Paths of every file written (to delete if the commit fails).
    pub fn written_files(&self) -> Vec<String> {
        let deletes = self.position_deletes.iter().map(|(f, _)| f);
        self.data_files.iter().chain(deletes).map(|f| f.file_path().to_string()).collect()
    }
}

/// Runs one task on the base store `base` of a table keyed by `primary_key` with `buckets`
/// base buckets. A failure deletes what it wrote.
pub async fn optimize_node(
    base: &Table,
    primary_key: &[String],
    buckets: u32,
    files: &NodeFiles,
) -> Result<NodeOutput> {
    let mut out = NodeOutput::default();
    match optimize_into(base, primary_key, buckets, files, &mut out).await {
        Ok(()) => Ok(out),
        Err(e) => {
            for path in out.written_files() {
                let _ = base.file_io().delete(&path).await;
            }
            Err(e)
        }
    }
}

async fn optimize_into(
    base: &Table,
    primary_key: &[String],
    buckets: u32,
    files: &NodeFiles,
    out: &mut NodeOutput,
) -> Result<()> {
    let metadata = base.metadata();
    let schema = metadata.current_schema().clone();
    let encoder = KeyEncoder::new(primary_key, &schema)?;
    let key_fields: Vec<i32> = primary_key
        .iter()
        .map(|k| {
            schema.field_by_name(k).map(|f| f.id).ok_or_else(|| TableError::Invalid(format!("no key column {k:?}")))
        })
        .collect::<Result<_>>()?;
    let file_schema = Arc::new(change_file_schema(&schema)?);
    let change_fields: Vec<i32> = file_schema.as_struct().fields().iter().map(|f| f.id).collect();
    let table_fields: Vec<i32> = schema.as_struct().fields().iter().map(|f| f.id).collect();

    // The task's deletes: key → greatest sequence number (transaction, offset).
    let mut deletes: HashMap<Vec<u8>, (i64, i64)> = HashMap::new();
    let mut inserts = Vec::new();
    for file in &files.change {
        let meta = change_meta(file)?;
        if meta.file_type != FileType::EqDelete {
            inserts.push((file, meta));
            continue;
        }
        let fields = key_fields.iter().copied().chain([FILE_OFFSET_ID]).collect();
        let task = whole_file_task(file, metadata, file_schema.clone(), fields);
        for batch in read_task(base.file_io(), task).await? {
            let offsets = offsets(&batch)?;
            for (i, key) in encoder.keys(&batch)?.into_iter().enumerate() {
                let lsn = (meta.transaction_id, offsets.value(i));
                let entry = deletes.entry(key).or_insert(lsn);
                *entry = (*entry).max(lsn);
            }
        }
    }
    let survives = |key: &[u8], lsn: (i64, i64)| deletes.get(key).is_none_or(|d| *d <= lsn);

    // Surviving rows: inserts, then the rewritten base files' live rows.
    let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema)?);
    let transaction = files.transaction();
    let mut rows = Rows { batches: Vec::new(), bytes: 0 };
    for (file, meta) in inserts {
        let task = whole_file_task(file, metadata, file_schema.clone(), change_fields.clone());
        for batch in read_task(base.file_io(), task).await? {
            let offsets = offsets(&batch)?;
            let keep = survivors(&encoder.rows(&batch)?, &deletes, |i| (meta.transaction_id, offsets.value(i)));
            let kept = filter(&batch, &keep)?;
            let columns = kept.columns()[..arrow.fields().len()].to_vec();
            let kept = RecordBatch::try_new(arrow.clone(), columns).map_err(|e| TableError::Invalid(e.to_string()))?;
            rows.push(kept, base, primary_key, buckets, transaction, out).await?;
        }
    }
    for file in &files.rewrite {
        let lsn = (FileMeta::of_base(file.file.path()).transaction_id, i64::MAX);
        let mut task = whole_file_task(&file.file, metadata, schema.clone(), table_fields.clone());
        task.deletes = file.deletes.iter().map(delete_ref).collect::<Result<_>>()?;
        for batch in read_task(base.file_io(), task).await? {
            let kept = if deletes.is_empty() {
                batch
            } else {
                filter(&batch, &survivors(&encoder.rows(&batch)?, &deletes, |_| lsn))?
            };
            rows.push(kept, base, primary_key, buckets, transaction, out).await?;
        }
    }
    rows.flush(base, primary_key, buckets, transaction, out).await?;

    // Base files that stay: old position deletes and the rows later deletes removed.
    for file in &files.reposition {
        let path = file.file.path();
        let mut positions = BTreeSet::new();
        for delete in &file.deletes {
            positions.extend(read_positions(base.file_io(), &delete.file, path).await?);
        }
        let before = positions.len();
        if !deletes.is_empty() {
            let lsn = (FileMeta::of_base(path).transaction_id, i64::MAX);
            let task = whole_file_task(&file.file, metadata, schema.clone(), key_fields.clone());
            let mut position = 0i64;
            for batch in read_task(base.file_io(), task).await? {
                for key in encoder.rows(&batch)?.iter() {
                    if !survives(key.as_ref(), lsn) {
                        positions.insert(position);
                    }
                    position += 1;
                }
            }
        }
        out.rows_deleted += (positions.len() - before) as u64;
        if positions.is_empty() {
            continue;
        }
        let positions: Vec<i64> = positions.into_iter().collect();
        out.positions_written += positions.len() as u64;
        let written = write_position_deletes(
            base.file_io(),
            path,
            &positions,
            file.file.file.partition().clone(),
            file.file.spec_id,
        )
        .await?;
        out.position_deletes.push((written, file.file.spec_id));
    }
    Ok(())
}

/// Surviving rows waiting to be written.
struct Rows {
    batches: Vec<RecordBatch>,
    bytes: usize,
}

impl Rows {
    async fn push(
        &mut self,
        batch: RecordBatch,
        base: &Table,
        primary_key: &[String],
        buckets: u32,
        transaction: i64,
        out: &mut NodeOutput,
    ) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        out.rows_read += batch.num_rows() as u64;
        self.bytes += batch.get_array_memory_size();
        self.batches.push(batch);
        if self.bytes >= FLUSH_BYTES {
            self.flush(base, primary_key, buckets, transaction, out).await?;
        }
        Ok(())
    }

    async fn flush(
        &mut self,
        base: &Table,
        primary_key: &[String],
        buckets: u32,
        transaction: i64,
        out: &mut NodeOutput,
    ) -> Result<()> {
        let batches = std::mem::take(&mut self.batches);
        self.bytes = 0;
        out.rows_written += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        write_base_files(base, primary_key, buckets, transaction, &batches, &mut out.data_files).await
    }
}

fn filter(batch: &RecordBatch, keep: &BooleanArray) -> Result<RecordBatch> {
    arrow_select::filter::filter_record_batch(batch, keep).map_err(|e| TableError::Invalid(e.to_string()))
}

/// A position delete file as iceberg's reader applies it.
fn delete_ref(file: &LiveFile) -> Result<FileScanTaskDeleteFile> {
    if file.content() != DataContentType::PositionDeletes {
        return Err(TableError::Unsupported(format!(
            "the base store holds {:?} file {}; keyed tables delete base rows by position",
            file.content(),
            file.path()
        )));
    }
    Ok(FileScanTaskDeleteFile {
        file_path: file.path().to_string(),
        file_size_in_bytes: file.file.file_size_in_bytes(),
        file_type: file.content(),
        partition_spec_id: file.spec_id,
        equality_ids: None,
    })
}

/// The base-store commit of keyed optimizing: one snapshot that swaps the files and advances
/// the optimized sequence, so a reader sees the table before or after it, never in between
/// (the change store is not touched: its folded files stop being read).
#[derive(Debug, Clone, Default)]
pub struct KeyedCommit {
    /// The base snapshot the tasks were planned on; `None` for an empty base store.
    pub start: Option<i64>,
    /// Base data files the tasks rewrote.
    pub rewritten: Vec<LiveFile>,
    /// Position delete files that no longer apply.
    pub obsolete_deletes: Vec<LiveFile>,
    /// New base files.
    pub data_files: Vec<DataFile>,
    /// New position delete files, with the spec of the data file each belongs to.
    pub position_deletes: Vec<(DataFile, i32)>,
    /// The optimized sequence after the commit.
    pub sequence: super::sequence::OptimizedSequence,
    /// Snapshot summary properties.
    pub properties: Vec<(String, String)>,
    /// The snapshot's operation when it is not `replace` (an overwrite changes the rows).
    pub operation: Option<iceberg::spec::Operation>,
}

impl KeyedCommit {
    /// Prepares the commit on `base`'s current metadata: a rewrite validated against every
    /// base commit since `start` (an append to an empty base store), with the sequence's
    /// Puffin file attached. A failure deletes the manifests it wrote.
    pub async fn prepare(self, base: &Table) -> Result<crate::snapshot::PendingCommit> {
        use crate::snapshot::{RewriteFiles, RowDelta, SnapshotAction};
        let flag = (super::sequence::OPTIMIZED_SEQUENCE_EXIST.to_string(), "true".to_string());
        let properties = self.properties.into_iter().chain([flag]);
        let mut pending = match self.start {
            Some(start) => {
                let mut rewrite = RewriteFiles::new(start);
                if let Some(operation) = self.operation {
                    rewrite = rewrite.with_operation(operation);
                }
                for (k, v) in properties {
                    rewrite = rewrite.set_property(k, v);
                }
                for f in self.rewritten {
                    rewrite = rewrite.rewrite_data_file(f);
                }
                for f in self.obsolete_deletes {
                    rewrite = rewrite.remove_delete_file(f);
                }
                for f in self.data_files {
                    rewrite = rewrite.add_data_file(f);
                }
                for (f, spec) in self.position_deletes {
                    rewrite = rewrite.add_delete_file_in_spec(f, spec);
                }
                rewrite.prepare(base).await?
            }
            None => {
                if !self.rewritten.is_empty() || !self.obsolete_deletes.is_empty() || !self.position_deletes.is_empty()
                {
                    return Err(TableError::Invalid("an empty base store has no files to rewrite or delete".into()));
                }
                let mut delta = RowDelta::new();
                for (k, v) in properties {
                    delta = delta.set_property(k, v);
                }
                for f in self.data_files {
                    delta = delta.add_rows(f);
                }
                delta.prepare(base).await?
            }
        };
        if let Err(e) = super::sequence::attach_optimized_sequence(base, &mut pending, &self.sequence).await {
            for path in &pending.written_files {
                let _ = base.file_io().delete(path).await;
            }
            return Err(e);
        }
        Ok(pending)
    }
}
