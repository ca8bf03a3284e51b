//! Minor optimizing of a keyed table (Amoro §5.8): the change files not yet folded into the
//! base are merged into it. Inserts that no later delete removed become base (`B`) files of
//! their key's bucket, named with the greatest sequence folded; base rows a later delete removed
//! get position deletes; each folded partition's optimized sequence advances to the greatest
//! sequence folded there, so readers stop reading those change files. Everything lands in one
//! base-store commit, so a reader sees either the old state or the new one, never a row twice.
//!
//! Changes committed while a fold runs have greater sequences than it planned with and stay
//! visible after it commits.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch};
use futures::TryStreamExt;
use iceberg::spec::DataFile;
use iceberg::table::Table;

use super::change::{FILE_OFFSET_ID, change_file_schema, write_base_files};
use super::file_name::{FileMeta, FileType};
use super::merge::{KeyEncoder, change_meta, offsets, partition_key};
use super::sequence::{
    OPTIMIZED_SEQUENCE_EXIST, OptimizedSequence, attach_optimized_sequence, partition_path, read_optimized_sequence,
};
use crate::error::{Result, TableError};
use crate::position_delete::write_position_deletes;
use crate::scan::{LiveFile, live_files, read_task, whole_file_task};
use crate::snapshot::{PendingCommit, RowDelta, SnapshotAction};

/// What a fold wrote, to commit to the base store in one snapshot with its sequence attached.
#[derive(Debug, Clone, Default)]
pub struct Fold {
    /// New base (`B`) files of the surviving inserts.
    pub data_files: Vec<DataFile>,
    /// Position deletes of base rows that later deletes removed.
    pub position_deletes: Vec<DataFile>,
    /// The optimized sequence after the fold (the old one, advanced for folded partitions).
    pub sequence: OptimizedSequence,
    /// Change files folded.
    pub change_files: usize,
    /// Rows the new base files hold.
    pub rows_inserted: u64,
    /// Base rows deleted.
    pub rows_deleted: u64,
}

impl Fold {
    /// Paths of every file the fold wrote (to delete if its commit fails).
    pub fn written_files(&self) -> Vec<String> {
        self.data_files.iter().chain(&self.position_deletes).map(|f| f.file_path().to_string()).collect()
    }

    /// Whether it folded anything.
    pub fn is_empty(&self) -> bool {
        self.change_files == 0
    }

    /// The base-store commit of the fold, prepared on `base` (the snapshot the fold read):
    /// its files, its position deletes and its optimized sequence in one snapshot.
    pub async fn prepare_commit(&self, base: &Table) -> Result<PendingCommit> {
        let mut delta = RowDelta::new().set_property(OPTIMIZED_SEQUENCE_EXIST, "true");
        for f in &self.data_files {
            delta = delta.add_rows(f.clone());
        }
        for f in &self.position_deletes {
            delta = delta.add_deletes(f.clone());
        }
        let mut pending = delta.prepare(base).await?;
        if let Err(e) = attach_optimized_sequence(base, &mut pending, &self.sequence).await {
            for path in &pending.written_files {
                let _ = base.file_io().delete(path).await;
            }
            return Err(e);
        }
        Ok(pending)
    }
}

/// Folds every change file above its partition's optimized sequence into the base store of a
/// table keyed by `primary_key` with `buckets` base buckets; an empty fold when there is none.
/// A failure deletes what it wrote.
pub async fn fold(base: &Table, change: &Table, primary_key: &[String], buckets: u32) -> Result<Fold> {
    let mut out = Fold::default();
    match fold_into(base, change, primary_key, buckets, &mut out).await {
        Ok(()) => Ok(out),
        Err(e) => {
            for path in out.written_files() {
                let _ = base.file_io().delete(&path).await;
            }
            Err(e)
        }
    }
}

async fn fold_into(base: &Table, change: &Table, primary_key: &[String], buckets: u32, out: &mut Fold) -> Result<()> {
    let schema = base.metadata().current_schema().clone();
    let mut sequence = read_optimized_sequence(base).await?;
    let change_metadata = change.metadata_ref();
    let Some(head) = change_metadata.current_snapshot().cloned() else {
        out.sequence = sequence;
        return Ok(());
    };
    let files: Vec<LiveFile> =
        live_files(change.file_io().clone(), change_metadata.clone(), head).try_collect().await?;
    // Partition key (spec and values, as readers match deletes) → path and files to fold.
    let mut folded: Vec<(LiveFile, String, String)> = Vec::new();
    for file in files {
        change_meta(&file)?;
        let spec = change_metadata
            .partition_spec_by_id(file.spec_id)
            .ok_or_else(|| TableError::Invalid(format!("change file {} has an unknown spec", file.path())))?;
        let path = partition_path(spec, file.file.partition(), change_metadata.current_schema())?;
        if sequence.covers(&path, file.data_sequence_number) {
            continue;
        }
        let key = partition_key(file.file.partition());
        folded.push((file, key, path));
    }
    if folded.is_empty() {
        out.sequence = sequence;
        return Ok(());
    }

    let file_schema = Arc::new(change_file_schema(&schema)?);
    let all_fields: Vec<i32> = file_schema.as_struct().fields().iter().map(|f| f.id).collect();
    let mut key_fields: Vec<i32> = primary_key
        .iter()
        .map(|k| {
            schema.field_by_name(k).map(|f| f.id).ok_or_else(|| TableError::Invalid(format!("no key column {k:?}")))
        })
        .collect::<Result<_>>()?;
    key_fields.push(FILE_OFFSET_ID);
    let encoder = KeyEncoder::new(primary_key, &schema)?;

    // Deletes: (partition, key) → greatest LSN.
    let mut deletes: HashMap<(String, Vec<u8>), (i64, i64)> = HashMap::new();
    for (file, partition, _) in
        folded.iter().filter(|f| FileMeta::of_change(f.0.path(), 0).file_type == FileType::EqDelete)
    {
        let meta = FileMeta::of_change(file.path(), file.data_sequence_number);
        let task = whole_file_task(file, &change_metadata, file_schema.clone(), key_fields.clone());
        for batch in read_task(change.file_io(), task).await? {
            let offsets = offsets(&batch)?;
            for (i, key) in encoder.keys(&batch)?.into_iter().enumerate() {
                let lsn = (meta.transaction_id, offsets.value(i));
                let entry = deletes.entry((partition.clone(), key)).or_insert(lsn);
                *entry = (*entry).max(lsn);
            }
        }
    }

    // Surviving inserts, one partition at a time (memory holds one partition's), written as B
    // files named with the partition's greatest folded sequence.
    let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema)?);
    let mut to_sequence: HashMap<String, i64> = HashMap::new();
    for (file, _, path) in &folded {
        let entry = to_sequence.entry(path.clone()).or_insert(file.data_sequence_number);
        *entry = (*entry).max(file.data_sequence_number);
    }
    folded.sort_by(|a, b| a.2.cmp(&b.2));
    out.change_files = folded.len();
    for partition_files in folded.chunk_by(|a, b| a.2 == b.2) {
        let path = &partition_files[0].2;
        let mut inserts: Vec<RecordBatch> = Vec::new();
        for (file, partition, _) in partition_files {
            let meta = FileMeta::of_change(file.path(), file.data_sequence_number);
            if meta.file_type == FileType::EqDelete {
                continue;
            }
            let task = whole_file_task(file, &change_metadata, file_schema.clone(), all_fields.clone());
            for batch in read_task(change.file_io(), task).await? {
                let offsets = offsets(&batch)?;
                let keep: BooleanArray = encoder
                    .keys(&batch)?
                    .into_iter()
                    .enumerate()
                    .map(|(i, key)| {
                        let lsn = (meta.transaction_id, offsets.value(i));
                        Some(deletes.get(&(partition.clone(), key)).is_none_or(|d| *d <= lsn))
                    })
                    .collect();
                let kept = arrow_select::filter::filter_record_batch(&batch, &keep)
                    .map_err(|e| TableError::Invalid(e.to_string()))?;
                if kept.num_rows() > 0 {
                    let columns = kept.columns()[..arrow.fields().len()].to_vec();
                    inserts.push(
                        RecordBatch::try_new(arrow.clone(), columns).map_err(|e| TableError::Invalid(e.to_string()))?,
                    );
                }
            }
        }
        let transaction = to_sequence.get(path).copied().unwrap_or_default();
        out.rows_inserted += inserts.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        write_base_files(base, primary_key, buckets, transaction, &inserts, &mut out.data_files).await?;
    }

    // Base rows a folded delete removes: by position, in each base file of a folded partition.
    if !deletes.is_empty()
        && let Some(head) = base.metadata().current_snapshot().cloned()
    {
        let base_files: Vec<LiveFile> =
            live_files(base.file_io().clone(), base.metadata_ref(), head).try_collect().await?;
        let base_schema = base.metadata().current_schema().clone();
        let base_key_fields = key_fields[..key_fields.len() - 1].to_vec();
        for file in base_files.iter().filter(|f| !f.is_delete()) {
            let partition = partition_key(file.file.partition());
            let meta = FileMeta::of_base(file.path());
            let task = whole_file_task(file, &base.metadata_ref(), base_schema.clone(), base_key_fields.clone());
            let mut positions = Vec::new();
            let mut position = 0i64;
            for batch in read_task(base.file_io(), task).await? {
                for key in encoder.keys(&batch)? {
                    if deletes.get(&(partition.clone(), key)).is_some_and(|d| *d > (meta.transaction_id, i64::MAX)) {
                        positions.push(position);
                    }
                    position += 1;
                }
            }
            if !positions.is_empty() {
                out.rows_deleted += positions.len() as u64;
                out.position_deletes.push(
                    write_position_deletes(
                        base.file_io(),
                        file.path(),
                        &positions,
                        file.file.partition().clone(),
                        file.spec_id,
                    )
                    .await?,
                );
            }
        }
    }
    for (path, to) in to_sequence {
        let entry = sequence.0.entry(path).or_insert(to);
        *entry = (*entry).max(to);
    }
    out.sequence = sequence;
    Ok(())
}
