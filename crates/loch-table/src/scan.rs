//! Reading a snapshot's file list: its live data and delete files with the sequence numbers and
//! partition spec that planning and delete application need, streamed in manifest order in
//! batches of manifests, a few batches read ahead ([`MANIFEST_READ_AHEAD`]), so memory stays
//! bounded by a few batches, not the table, and their reads overlap. Small manifests of a batch
//! decode in one pass ([`crate::manifest_cache::load_many`]).
//!
//! Manifest lists and manifests are only read inside the table's own location: a client writes
//! them, and Loch must not be made to read elsewhere (a FIFO, `/dev/zero`, another table's files).

use std::collections::HashSet;
use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use iceberg::io::FileIO;
use iceberg::spec::{
    DataContentType, DataFile, ManifestFile, ManifestList, ManifestStatus, SnapshotRef, TableMetadataRef,
};

use crate::error::{Result, TableError};
use crate::location::Location;
use crate::snapshot::merge_manifests::max_data_sequence;

/// Batches of manifests read at once while a snapshot's files are listed.
pub const MANIFEST_READ_AHEAD: usize = 2;

/// Most manifests in one batch.
const BATCH_MANIFESTS: usize = 64;

/// Most manifest bytes in one batch (a single larger manifest makes a batch of its own).
const BATCH_BYTES: i64 = 4 << 20;

/// A file of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveFile {
    /// The file (data, position deletes or equality deletes).
    pub file: DataFile,
    /// Its partition spec.
    pub spec_id: i32,
    /// Data sequence number: deletes with a higher one (equality) or an equal or higher one
    /// (position) apply to it.
    pub data_sequence_number: i64,
    /// Sequence number of the snapshot that added the file.
    pub file_sequence_number: i64,
}

impl LiveFile {
    /// The file's path.
    pub fn path(&self) -> &str {
        self.file.file_path()
    }

    /// Its content type.
    pub fn content(&self) -> DataContentType {
        self.file.content_type()
    }

    /// True for position and equality delete files.
    pub fn is_delete(&self) -> bool {
        self.content() != DataContentType::Data
    }
}

/// Loads the manifest list of `snapshot`.
pub async fn manifests(io: &FileIO, metadata: &TableMetadataRef, snapshot: &SnapshotRef) -> Result<Vec<ManifestFile>> {
    owned(metadata, snapshot.manifest_list(), "manifest list")?;
    let bytes = io.new_input(snapshot.manifest_list())?.read().await?;
    let list: Vec<ManifestFile> =
        ManifestList::parse_with_version(&bytes, metadata.format_version())?.consume_entries().into_iter().collect();
    for manifest in &list {
        owned(metadata, &manifest.manifest_path, "manifest")?;
    }
    Ok(list)
}

/// An [`TableError::Unsupported`] unless `path` lies inside the table's location.
pub fn owned(metadata: &TableMetadataRef, path: &str, what: &str) -> Result<()> {
    let inside = Location::str_contains(metadata.location(), path);
    if inside {
        Ok(())
    } else {
        Err(TableError::Unsupported(format!(
            "{what} {path} lies outside the table's location {}; Loch only reads files a table owns",
            metadata.location()
        )))
    }
}

/// Streams the live files of `snapshot`, one manifest in memory at a time.
pub fn live_files(
    io: FileIO,
    metadata: TableMetadataRef,
    snapshot: SnapshotRef,
) -> BoxStream<'static, Result<LiveFile>> {
    live_files_after(io, metadata, snapshot, i64::MIN)
}

/// Like [`live_files`], without the manifests whose files all have data sequence numbers at or
/// below `floor` (added at or below it, or merged from such manifests: see
/// [`crate::snapshot::merge_manifests`]); a keyed table's change store skips what its optimized
/// sequence already covers without reading it.
pub fn live_files_after(
    io: FileIO,
    metadata: TableMetadataRef,
    snapshot: SnapshotRef,
    floor: i64,
) -> BoxStream<'static, Result<LiveFile>> {
    stream::once(async move {
        let mut list = manifests(&io, &metadata, &snapshot).await?;
        // A manifest with neither added nor existing entries holds no live file.
        list.retain(|m| max_data_sequence(m) > floor && (m.has_added_files() || m.has_existing_files()));
        Ok::<_, TableError>(
            stream::iter(batches(list))
                .map(move |batch| {
                    let io = io.clone();
                    async move { batch_live_files(&io, &batch).await }
                })
                .buffered(MANIFEST_READ_AHEAD),
        )
    })
    .try_flatten()
    .map_ok(|files| stream::iter(files.into_iter().map(Ok)))
    .try_flatten()
    .boxed()
}

/// Consecutive manifests read and decoded together: up to [`BATCH_MANIFESTS`] of them, or
/// fewer once they hold [`BATCH_BYTES`], so large manifests still come one at a time.
fn batches(list: Vec<ManifestFile>) -> Vec<Vec<ManifestFile>> {
    let mut out: Vec<Vec<ManifestFile>> = Vec::new();
    let mut bytes = 0i64;
    for manifest in list {
        match out.last_mut() {
            Some(batch) if batch.len() < BATCH_MANIFESTS && bytes + manifest.manifest_length <= BATCH_BYTES => {
                bytes += manifest.manifest_length;
                batch.push(manifest);
            }
            _ => {
                bytes = manifest.manifest_length;
                out.push(vec![manifest]);
            }
        }
    }
    out
}

async fn batch_live_files(io: &FileIO, batch: &[ManifestFile]) -> Result<Vec<LiveFile>> {
    let loaded = crate::manifest_cache::load_many(io, batch).await?;
    let mut files = Vec::new();
    for (manifest, loaded) in batch.iter().zip(loaded) {
        for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
            files.push(LiveFile {
                spec_id: manifest.partition_spec_id,
                data_sequence_number: entry.sequence_number().ok_or_else(|| missing_sequence(entry.file_path()))?,
                file_sequence_number: entry.file_sequence_number.unwrap_or(manifest.sequence_number),
                file: entry.data_file().clone(),
            });
        }
    }
    Ok(files)
}

fn missing_sequence(path: &str) -> TableError {
    TableError::Invalid(format!("manifest entry for {path} has no sequence number"))
}

/// What the snapshots committed after some snapshot changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangesSince {
    /// Ids of those snapshots, newest first.
    pub snapshots: Vec<i64>,
    /// Paths of files they removed.
    pub removed: HashSet<String>,
    /// Files they added.
    pub added: Vec<LiveFile>,
}

/// The changes committed on the branch whose head is `head` after `base` (exclusive); fails
/// if `base` is not an ancestor of `head` (the history was rewritten, e.g. by a rollback).
pub async fn changes_since(
    io: &FileIO,
    metadata: &TableMetadataRef,
    head: Option<SnapshotRef>,
    base: Option<i64>,
) -> Result<ChangesSince> {
    let mut changes = ChangesSince::default();
    let mut cursor = head;
    loop {
        let Some(snapshot) = cursor else {
            if base.is_none() {
                return Ok(changes);
            }
            return Err(TableError::Conflict(format!(
                "snapshot {} is no longer an ancestor of the branch head",
                base.unwrap_or_default()
            )));
        };
        if Some(snapshot.snapshot_id()) == base {
            return Ok(changes);
        }
        changes.snapshots.push(snapshot.snapshot_id());
        for manifest in manifests(io, metadata, &snapshot).await? {
            if manifest.added_snapshot_id != snapshot.snapshot_id() {
                continue;
            }
            let loaded = crate::manifest_cache::load(io, &manifest).await?;
            for entry in loaded.entries().iter().filter(|e| e.snapshot_id() == Some(snapshot.snapshot_id())) {
                match entry.status() {
                    ManifestStatus::Deleted => {
                        changes.removed.insert(entry.file_path().to_string());
                    }
                    ManifestStatus::Added => changes.added.push(LiveFile {
                        spec_id: manifest.partition_spec_id,
                        data_sequence_number: entry.sequence_number().unwrap_or(snapshot.sequence_number()),
                        file_sequence_number: entry.file_sequence_number.unwrap_or(snapshot.sequence_number()),
                        file: entry.data_file().clone(),
                    }),
                    ManifestStatus::Existing => {}
                }
            }
        }
        cursor = match snapshot.parent_snapshot_id() {
            Some(parent) => Some(
                metadata
                    .snapshot_by_id(parent)
                    .cloned()
                    .ok_or_else(|| TableError::Conflict(format!("parent snapshot {parent} was expired")))?,
            ),
            None => None,
        };
    }
}

/// Casts columns the reader produced in another encoding (identity partition columns come back
/// as run-end encoded constants) to `target`'s types, so batches of different files agree.
pub fn conform(batch: arrow_array::RecordBatch, target: &arrow_schema::SchemaRef) -> Result<arrow_array::RecordBatch> {
    if batch.schema().fields().iter().zip(target.fields()).all(|(a, b)| a.data_type() == b.data_type()) {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                arrow_cast::cast(column, field.data_type())
                    .map_err(|e| TableError::Invalid(format!("column {}: {e}", field.name())))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    arrow_array::RecordBatch::try_new(target.clone(), columns).map_err(|e| TableError::Invalid(format!("batch: {e}")))
}

/// A task reading all of `file` (no deletes applied), projecting `fields` of `schema` — what a
/// reader needs to look at one file's rows as they are stored.
pub fn whole_file_task(
    file: &LiveFile,
    metadata: &iceberg::spec::TableMetadata,
    schema: iceberg::spec::SchemaRef,
    fields: Vec<i32>,
) -> iceberg::scan::FileScanTask {
    let f = &file.file;
    iceberg::scan::FileScanTask {
        file_size_in_bytes: f.file_size_in_bytes(),
        start: 0,
        length: f.file_size_in_bytes(),
        record_count: Some(f.record_count()),
        data_file_path: f.file_path().to_string(),
        data_file_format: f.file_format(),
        schema,
        project_field_ids: fields,
        predicate: None,
        deletes: vec![],
        partition: Some(f.partition().clone()),
        partition_spec: metadata.partition_spec_by_id(file.spec_id).cloned(),
        name_mapping: None,
        case_sensitive: true,
    }
}

/// Reads one task's rows, in file order, its projected columns typed as its schema types them
/// (see [`conform`]).
pub async fn read_task(io: &FileIO, task: iceberg::scan::FileScanTask) -> Result<Vec<arrow_array::RecordBatch>> {
    let target = Arc::new(iceberg::arrow::schema_to_arrow_schema(&task.schema)?);
    let reader = iceberg::arrow::ArrowReaderBuilder::new(io.clone(), iceberg::Runtime::current())
        .with_data_file_concurrency_limit(1)
        .with_batch_size(8192)
        .build();
    let batches: Vec<arrow_array::RecordBatch> =
        reader.read(Box::pin(stream::iter([Ok(task)])))?.stream().try_collect().await?;
    batches
        .into_iter()
        .map(|b| {
            // The projected columns, each as the task's schema types it.
            let fields: Vec<arrow_schema::FieldRef> = b
                .schema()
                .fields()
                .iter()
                .map(|f| target.field_with_name(f.name()).map(|t| Arc::new(t.clone())).unwrap_or_else(|_| f.clone()))
                .collect();
            conform(b, &Arc::new(arrow_schema::Schema::new(fields)))
        })
        .collect()
}

/// Plans `table`'s current snapshot to be read with the table's *current* schema, `columns` (by
/// name) in that order. iceberg-rust plans with the snapshot's schema, which lacks the columns
/// added since (`ALTER TABLE ... ADD COLUMN` commits no snapshot): each task is given the
/// current schema and its columns' field ids, and the reader fills columns a file lacks with
/// NULL. `filter` prunes files only while the snapshot's schema is the current one (a column
/// renamed since would bind to the wrong field); callers filter the rows themselves.
pub async fn plan_current_schema(
    table: &iceberg::table::Table,
    columns: &[String],
    filter: Option<&iceberg::expr::Predicate>,
) -> Result<Vec<iceberg::scan::FileScanTask>> {
    let metadata = table.metadata();
    let Some(snapshot) = metadata.current_snapshot() else { return Ok(Vec::new()) };
    let current = metadata.current_schema().clone();
    let ids = columns
        .iter()
        .map(|c| current.field_by_name(c).map(|f| f.id).ok_or_else(|| TableError::Invalid(format!("no column {c:?}"))))
        .collect::<Result<Vec<i32>>>()?;
    let same_schema = snapshot.schema_id().is_none_or(|id| id == current.schema_id());
    let mut scan = table.scan().select_empty();
    if let Some(filter) = filter.filter(|_| same_schema) {
        scan = scan.with_filter(filter.clone());
    }
    let mut tasks: Vec<iceberg::scan::FileScanTask> = scan.build()?.plan_files().await?.try_collect().await?;
    for task in &mut tasks {
        task.schema = current.clone();
        task.project_field_ids = ids.clone();
    }
    Ok(tasks)
}
