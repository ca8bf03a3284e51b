//! Minor optimizing of a keyed table (Amoro §5.8): the change files not yet folded into the
//! base are merged into it. Inserts that no later delete removed become base (`B`) files of
//! their key's bucket, named with the greatest sequence folded; base rows a later delete removed
//! get position deletes; each folded partition's optimized sequence advances to the greatest
//! sequence folded there, so readers stop reading those change files. Everything lands in one
//! base-store commit, so a reader sees either the old state or the new one, never a row twice.
//!
//! Changes committed while a fold runs have greater sequences than it planned with and stay
//! visible after it commits.

use std::collections::{BTreeMap, HashMap};

use futures::TryStreamExt;
use iceberg::spec::{DataContentType, DataFile, TableMetadataRef};
use iceberg::table::Table;

use super::merge::change_meta;
use super::optimize::{KeyedCommit, optimize_node};
use super::plan::{KeyedPartition, plan_partition};
use super::sequence::{OptimizedSequence, partition_path, read_optimized_sequence};
use crate::error::{Result, TableError};
use crate::scan::{LiveFile, live_files, live_files_after};
use crate::snapshot::PendingCommit;

/// What a fold wrote, to commit to the base store in one snapshot with its sequence attached.
#[derive(Debug, Clone, Default)]
pub struct Fold {
    /// New base (`B`) files of the surviving inserts.
    pub data_files: Vec<DataFile>,
    /// Position deletes of base files later deletes hit (with their old positions), with
    /// the spec of the data file each belongs to.
    pub position_deletes: Vec<(DataFile, i32)>,
    /// Position delete files the new ones replace.
    pub obsolete_deletes: Vec<LiveFile>,
    /// The base snapshot the fold read.
    pub start: Option<i64>,
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
        let deletes = self.position_deletes.iter().map(|(f, _)| f);
        self.data_files.iter().chain(deletes).map(|f| f.file_path().to_string()).collect()
    }

    /// Whether it folded anything.
    pub fn is_empty(&self) -> bool {
        self.change_files == 0
    }

    /// The base-store commit of the fold, prepared on `base` (the snapshot the fold read):
    /// its files, its position deletes and its optimized sequence in one snapshot.
    pub async fn prepare_commit(&self, base: &Table) -> Result<PendingCommit> {
        KeyedCommit {
            start: self.start,
            rewritten: Vec::new(),
            obsolete_deletes: self.obsolete_deletes.clone(),
            data_files: self.data_files.clone(),
            position_deletes: self.position_deletes.clone(),
            sequence: self.sequence.clone(),
            properties: Vec::new(),
            operation: None,
        }
        .prepare(base)
        .await
    }
}

/// Folds every change file above its partition's optimized sequence into the base store of a
/// table keyed by `primary_key` with `buckets` base buckets; an empty fold when there is none.
/// Base files are kept (repositioned when change deletes may hit them); the tasks are those
/// the optimizing service would plan for minor optimizing, run one after the other.
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
    out.start = base.metadata().current_snapshot_id();
    let mut sequence = read_optimized_sequence(base).await?;
    let partitions = unfolded(base, change, &sequence).await?;
    let mut to_sequence: HashMap<String, i64> = HashMap::new();
    for (path, part) in partitions {
        let top = part.change.iter().map(|f| f.data_sequence_number).max().unwrap_or_default();
        out.change_files += part.change.len();
        let plan = plan_partition(part, |_, _| false);
        for task in &plan.tasks {
            let done = optimize_node(base, primary_key, buckets, task).await?;
            out.rows_inserted += done.rows_written;
            out.rows_deleted += done.rows_deleted;
            out.data_files.extend(done.data_files);
            out.position_deletes.extend(done.position_deletes);
        }
        out.obsolete_deletes.extend(plan.obsolete_deletes);
        to_sequence.insert(path, top);
    }
    for (path, to) in to_sequence {
        let entry = sequence.0.entry(path).or_insert(to);
        *entry = (*entry).max(to);
    }
    out.sequence = sequence;
    Ok(())
}

/// The partitions (by path) with change files above the optimized `sequence`, with those
/// files and the base store's live files of the partition.
pub async fn unfolded(
    base: &Table,
    change: &Table,
    sequence: &OptimizedSequence,
) -> Result<BTreeMap<String, KeyedPartition>> {
    let mut partitions: BTreeMap<String, KeyedPartition> = BTreeMap::new();
    let change_metadata = change.metadata_ref();
    let Some(head) = change_metadata.current_snapshot().cloned() else { return Ok(partitions) };
    let floor = sequence.floor(&change_metadata);
    let mut files = live_files_after(change.file_io().clone(), change_metadata.clone(), head, floor);
    while let Some(file) = files.try_next().await? {
        change_meta(&file)?;
        let path = path_of(&change_metadata, &file)?;
        if !sequence.covers(&path, file.data_sequence_number) {
            partitions.entry(path).or_default().change.push(file);
        }
    }
    let base_metadata = base.metadata_ref();
    let Some(head) = base_metadata.current_snapshot().cloned() else { return Ok(partitions) };
    let mut files = live_files(base.file_io().clone(), base_metadata.clone(), head);
    while let Some(file) = files.try_next().await? {
        let path = path_of(&base_metadata, &file)?;
        let Some(part) = partitions.get_mut(&path) else { continue };
        match file.content() {
            DataContentType::Data => part.base.push(file),
            DataContentType::PositionDeletes => part.deletes.push(file),
            DataContentType::EqualityDeletes => {
                return Err(TableError::Unsupported(format!(
                    "the base store holds equality delete file {}; keyed tables delete base rows by position",
                    file.path()
                )));
            }
        }
    }
    Ok(partitions)
}

/// The partition path of `file` (Java's `partitionToPath`, as optimized sequences key it).
fn path_of(metadata: &TableMetadataRef, file: &LiveFile) -> Result<String> {
    let spec = metadata
        .partition_spec_by_id(file.spec_id)
        .ok_or_else(|| TableError::Invalid(format!("file {} has an unknown spec", file.path())))?;
    partition_path(spec, file.file.partition(), metadata.current_schema())
}
