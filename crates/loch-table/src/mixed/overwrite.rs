//! Dynamic partition overwrite of a keyed table (`INSERT OVERWRITE`): the new rows become
//! base (`B`) files, and one base-store commit drops every base file of the partitions they
//! fall in (the whole table when unpartitioned) and raises those partitions' optimized sequence
//! to the change store's last transaction, so the changes committed before the overwrite stop
//! applying there. Changes committed after it have greater transactions and apply on top, as
//! they would after any base commit.
//!
//! The commit requires the base snapshot the overwrite read, so a concurrent optimizing commit
//! makes it fail rather than resurrect or lose rows.

use std::collections::{BTreeSet, HashSet};

use arrow_array::RecordBatch;
use futures::TryStreamExt;
use iceberg::spec::DataFile;
use iceberg::table::Table;

use super::change::write_base_files;
use super::merge::KeyEncoder;
use super::optimize::KeyedCommit;
use super::sequence::{partition_path, read_optimized_sequence};
use crate::error::{Result, TableError};
use crate::scan::live_files;
use crate::snapshot::PendingCommit;

/// A prepared overwrite: its commit and what it changes.
#[derive(Debug)]
pub struct Overwrite {
    /// The base-store commit (its written files include the new base files).
    pub commit: PendingCommit,
    /// Partitions (as paths; `""` unpartitioned) whose content the rows replace.
    pub partitions: BTreeSet<String>,
    /// Base data files dropped.
    pub files_dropped: usize,
    /// Rows written.
    pub rows: u64,
}

/// Writes `batches` (rows of the table's current schema, each key at most once) as base files of
/// the keyed table whose stores are `base` and `change`, and prepares the commit that replaces
/// the partitions they fall in. A failure deletes what it wrote.
pub async fn prepare_overwrite(
    base: &Table,
    change: &Table,
    primary_key: &[String],
    buckets: u32,
    batches: &[RecordBatch],
) -> Result<Overwrite> {
    check_unique_keys(base, primary_key, batches)?;
    let metadata = base.metadata();
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().clone();
    // Every change committed so far: the new base rows are of this transaction.
    let transaction = change.metadata().last_sequence_number();
    let mut data_files: Vec<DataFile> = Vec::new();
    if let Err(e) = write_base_files(base, primary_key, buckets, transaction, batches, &mut data_files).await {
        delete(base, &data_files).await;
        return Err(e);
    }
    let rows = data_files.iter().map(|f| f.record_count()).sum();
    match commit_of(base, &spec, &schema, transaction, data_files.clone()).await {
        Ok((commit, partitions, files_dropped)) => Ok(Overwrite { commit, partitions, files_dropped, rows }),
        Err(e) => {
            delete(base, &data_files).await;
            Err(e)
        }
    }
}

async fn commit_of(
    base: &Table,
    spec: &iceberg::spec::PartitionSpecRef,
    schema: &iceberg::spec::SchemaRef,
    transaction: i64,
    data_files: Vec<DataFile>,
) -> Result<(PendingCommit, BTreeSet<String>, usize)> {
    let metadata = base.metadata_ref();
    let mut partitions = BTreeSet::new();
    if spec.is_unpartitioned() {
        partitions.insert(String::new());
    }
    for f in &data_files {
        partitions.insert(partition_path(spec, f.partition(), schema)?);
    }
    let written: Vec<String> = data_files.iter().map(|f| f.file_path().to_string()).collect();
    let mut commit = KeyedCommit {
        start: metadata.current_snapshot_id(),
        data_files,
        operation: Some(iceberg::spec::Operation::Overwrite),
        ..Default::default()
    };
    if let Some(snapshot) = metadata.current_snapshot().cloned() {
        let live: Vec<_> = live_files(base.file_io().clone(), metadata.clone(), snapshot).try_collect().await?;
        for f in live {
            let file_spec = metadata
                .partition_spec_by_id(f.spec_id)
                .ok_or_else(|| TableError::Invalid(format!("unknown partition spec {}", f.spec_id)))?;
            // A file of an older spec is replaced only by an overwrite of the whole table.
            let path = if file_spec.is_unpartitioned() {
                String::new()
            } else {
                partition_path(file_spec, f.file.partition(), schema)?
            };
            let replaced =
                spec.is_unpartitioned() || (file_spec.spec_id() == spec.spec_id() && partitions.contains(&path));
            if !replaced {
                continue;
            }
            if f.is_delete() {
                commit.obsolete_deletes.push(f);
            } else {
                commit.rewritten.push(f);
            }
        }
    }
    let dropped = commit.rewritten.len();
    let mut sequence = read_optimized_sequence(base).await?;
    for path in &partitions {
        let entry = sequence.0.entry(path.clone()).or_insert(transaction);
        *entry = (*entry).max(transaction);
    }
    commit.sequence = sequence;
    let mut pending = commit.prepare(base).await?;
    pending.written_files.extend(written);
    Ok((pending, partitions, dropped))
}

/// Refuses rows that hold a key twice: the base store holds each key once.
fn check_unique_keys(base: &Table, primary_key: &[String], batches: &[RecordBatch]) -> Result<()> {
    let encoder = KeyEncoder::new(primary_key, base.metadata().current_schema())?;
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    for batch in batches {
        let rows = encoder.rows(batch)?;
        for (i, key) in rows.iter().enumerate() {
            if !seen.insert(key.as_ref().to_vec()) {
                let values = primary_key
                    .iter()
                    .filter_map(|k| batch.column_by_name(k))
                    .map(|c| arrow_cast::display::array_value_to_string(c, i).unwrap_or_else(|_| "?".into()))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(TableError::Invalid(format!(
                    "the rows hold primary key ({}) = ({values}) more than once",
                    primary_key.join(", ")
                )));
            }
        }
    }
    Ok(())
}

async fn delete(base: &Table, files: &[DataFile]) {
    for f in files {
        let _ = base.file_io().delete(f.file_path()).await;
    }
}
