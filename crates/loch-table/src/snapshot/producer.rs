//! The shared snapshot producer: manifests and manifest list for a snapshot that adds and
//! removes files.

use std::collections::{HashMap, HashSet};

use iceberg::spec::{
    DataContentType, DataFile, FormatVersion, ManifestContentType, ManifestFile, ManifestList, ManifestListWriter,
    ManifestWriter, ManifestWriterBuilder, Operation, PartitionSpecRef, Snapshot, SnapshotRef, SnapshotReference,
    SnapshotRetention, SnapshotSummaryCollector, Summary, TableMetadata, TableProperties, UNASSIGNED_SEQUENCE_NUMBER,
};
use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};
use uuid::Uuid;

use super::PendingCommit;
use super::summary::update_totals;
use crate::error::{Result, TableError};

/// What a snapshot changes.
#[derive(Debug, Clone, Default)]
pub(crate) struct SnapshotChanges {
    /// The snapshot's operation.
    pub operation: Operation,
    /// Data files to add (written in the table's default partition spec).
    pub added_data_files: Vec<DataFile>,
    /// Delete files to add, each with the partition spec its partition value is in (`None`:
    /// the default spec). A position delete of a data file written under an older spec keeps
    /// that file's spec, so readers scoping deletes by spec and partition still apply it.
    pub added_delete_files: Vec<(DataFile, Option<i32>)>,
    /// Paths of live data or delete files to remove.
    pub removed_paths: HashSet<String>,
    /// Data sequence number of the added data files; `None` inherits the new snapshot's.
    pub data_sequence_number: Option<i64>,
    /// Extra summary properties.
    pub properties: HashMap<String, String>,
    /// Branch the snapshot goes on.
    pub branch: String,
}

/// Writes the manifests and manifest list of a snapshot with `changes` on top of the branch head.
pub(crate) async fn produce(table: &Table, changes: SnapshotChanges) -> Result<PendingCommit> {
    let metadata = table.metadata();
    let format = metadata.format_version();
    validate(metadata, &changes)?;
    let parent = metadata.snapshot_for_ref(&changes.branch).cloned();
    let mut writer = Writer::new(table);
    let schema = metadata.current_schema().clone();
    let mut summary = SnapshotSummaryCollector::default();
    let limit = metadata
        .properties()
        .get(TableProperties::PROPERTY_WRITE_PARTITION_SUMMARY_LIMIT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(TableProperties::PROPERTY_WRITE_PARTITION_SUMMARY_LIMIT_DEFAULT);
    summary.set_partition_summary_limit(limit);

    // New manifests first, as Iceberg Java orders them.
    let default_spec = metadata.default_partition_spec().clone();
    let mut manifests = Vec::new();
    if !changes.added_data_files.is_empty() {
        let mut w = writer.manifest(ManifestContentType::Data, default_spec.clone())?;
        let seq = changes.data_sequence_number.unwrap_or(UNASSIGNED_SEQUENCE_NUMBER);
        for file in &changes.added_data_files {
            summary.add_file(file, schema.clone(), default_spec.clone());
            w.add_file(file.clone(), seq)?;
        }
        manifests.push(w.write_manifest_file().await?);
    }
    // One delete manifest per partition spec.
    let mut deletes_by_spec: std::collections::BTreeMap<i32, Vec<&DataFile>> = std::collections::BTreeMap::new();
    for (file, spec_id) in &changes.added_delete_files {
        deletes_by_spec.entry(spec_id.unwrap_or(default_spec.spec_id())).or_default().push(file);
    }
    for (spec_id, files) in deletes_by_spec {
        let spec = metadata.partition_spec_by_id(spec_id).cloned().ok_or_else(|| {
            TableError::Invalid(format!("delete files name partition spec {spec_id}, which the table does not have"))
        })?;
        let mut w = writer.manifest(ManifestContentType::Deletes, spec.clone())?;
        for file in files {
            summary.add_file(file, schema.clone(), spec.clone());
            w.add_file(file.clone(), UNASSIGNED_SEQUENCE_NUMBER)?;
        }
        manifests.push(w.write_manifest_file().await?);
    }

    // Carry the parent's manifests, rewriting those that hold removed files.
    let mut found = HashSet::new();
    let mut filtered = Filtered::default();
    if let Some(parent) = &parent {
        let bytes = table.file_io().new_input(parent.manifest_list())?.read().await?;
        let parent_manifests: Vec<ManifestFile> =
            ManifestList::parse_with_version(&bytes, format)?.consume_entries().into_iter().collect();
        // A manifest left with DELETED entries only belongs to the snapshot that deleted them
        // (as Iceberg Java keeps it): carried on, every later snapshot would list it and every
        // scan read it, one more per rewrite.
        let live: Vec<ManifestFile> =
            parent_manifests.into_iter().filter(|m| m.has_added_files() || m.has_existing_files()).collect();
        let removed = &changes.removed_paths;
        let may_hold_removed = |found: &HashSet<String>| !removed.is_empty() && found.len() < removed.len();
        for chunk in live.chunks(FILTER_PREFETCH) {
            if may_hold_removed(&found) {
                // Decoded together into the cache (a cold cache would decode them one by one).
                crate::manifest_cache::load_many(table.file_io(), chunk).await?;
            }
            for manifest in chunk {
                if !may_hold_removed(&found)
                    || !writer.filter_manifest(manifest, removed, &mut found, &mut summary, &mut filtered).await?
                {
                    manifests.push(manifest.clone());
                }
            }
        }
    }
    manifests.extend(filtered.finish().await?);
    if let Some(missing) = changes.removed_paths.iter().find(|p| !found.contains(*p)) {
        writer.cleanup().await;
        return Err(TableError::FileNotInTable(missing.clone()));
    }

    let mut properties = changes.properties.clone();
    properties.extend(summary.build());
    writer.finish(parent, manifests, changes.operation, properties, changes.branch).await
}

fn validate(metadata: &TableMetadata, changes: &SnapshotChanges) -> Result<()> {
    if let Some(f) = changes.added_data_files.iter().find(|f| f.content_type() != DataContentType::Data) {
        return Err(TableError::Invalid(format!("{} is a delete file, not a data file", f.file_path())));
    }
    if let Some((f, _)) = changes.added_delete_files.iter().find(|(f, _)| f.content_type() == DataContentType::Data) {
        return Err(TableError::Invalid(format!("{} is a data file, not a delete file", f.file_path())));
    }
    let default_spec = metadata.default_partition_spec().spec_id();
    let added = changes
        .added_data_files
        .iter()
        .map(|f| (f, default_spec))
        .chain(changes.added_delete_files.iter().map(|(f, spec)| (f, spec.unwrap_or(default_spec))));
    for (f, spec_id) in added {
        let spec_fields = metadata.partition_spec_by_id(spec_id).map(|s| s.fields().len());
        if spec_fields != Some(f.partition().fields().len()) {
            return Err(TableError::Invalid(format!(
                "{} has a partition value of {} fields, which partition spec {spec_id} does not have",
                f.file_path(),
                f.partition().fields().len()
            )));
        }
    }
    if !changes.added_delete_files.is_empty() && metadata.format_version() == FormatVersion::V1 {
        return Err(TableError::Invalid("format version 1 tables cannot have delete files".into()));
    }
    Ok(())
}

/// A random positive snapshot id not used by the table yet.
fn unique_snapshot_id(metadata: &TableMetadata) -> i64 {
    loop {
        let (a, b) = Uuid::new_v4().as_u64_pair();
        let id = ((a ^ b) & (i64::MAX as u64)) as i64;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// Parent manifests decoded together while a commit looks for the files it removes.
const FILTER_PREFETCH: usize = 64;

/// Most entries of one manifest written for [`Filtered`] entries (about 8 MiB, the size Iceberg
/// Java merges manifests to, at typical column counts).
const FILTERED_ENTRIES_PER_MANIFEST: usize = 20_000;

/// The entries of parent manifests that hold removed files, gathered per content and partition
/// spec: a rewrite of files from hundreds of small manifests (a streaming writer's commits)
/// writes one manifest for them, as Iceberg Java's manifest merge would, not one each.
#[derive(Default)]
struct Filtered {
    /// Writers keyed by (delete manifest, spec id), with their entry counts.
    open: std::collections::BTreeMap<(bool, i32), (ManifestWriter, usize)>,
    /// Manifests already written.
    written: Vec<ManifestFile>,
}

impl Filtered {
    /// Writes the open manifests; every manifest of the gathered entries.
    async fn finish(mut self) -> Result<Vec<ManifestFile>> {
        for (writer, _) in self.open.into_values() {
            self.written.push(writer.write_manifest_file().await?);
        }
        Ok(self.written)
    }
}

/// Writes the new snapshot's manifests and remembers their paths.
pub(crate) struct Writer<'a> {
    table: &'a Table,
    commit_uuid: Uuid,
    snapshot_id: i64,
    counter: u32,
    written: Vec<String>,
}

impl<'a> Writer<'a> {
    /// A writer for a new snapshot of `table`.
    pub(crate) fn new(table: &'a Table) -> Self {
        Self {
            table,
            commit_uuid: Uuid::now_v7(),
            snapshot_id: unique_snapshot_id(table.metadata()),
            counter: 0,
            written: Vec::new(),
        }
    }

    fn manifest(&mut self, content: ManifestContentType, spec: PartitionSpecRef) -> Result<ManifestWriter> {
        self.manifest_named(content, spec, "")
    }

    /// A manifest writer whose file name ends in `suffix` before `.avro`.
    pub(crate) fn manifest_named(
        &mut self,
        content: ManifestContentType,
        spec: PartitionSpecRef,
        suffix: &str,
    ) -> Result<ManifestWriter> {
        let metadata = self.table.metadata();
        let path = format!(
            "{}/metadata/{}-m{}{suffix}.avro",
            metadata.location().trim_end_matches('/'),
            self.commit_uuid,
            self.counter
        );
        self.counter += 1;
        let output = self.table.file_io().new_output(&path)?;
        self.written.push(path);
        let builder = ManifestWriterBuilder::new(
            output,
            Some(self.snapshot_id),
            metadata.current_schema().clone(),
            (*spec).clone(),
        );
        Ok(match (metadata.format_version(), content) {
            (FormatVersion::V1, _) => builder.build_v1(),
            (FormatVersion::V2, ManifestContentType::Data) => builder.build_v2_data(),
            (FormatVersion::V2, ManifestContentType::Deletes) => builder.build_v2_deletes(),
            (FormatVersion::V3, ManifestContentType::Data) => builder.build_v3_data(),
            (FormatVersion::V3, ManifestContentType::Deletes) => builder.build_v3_deletes(),
        })
    }

    /// Takes `manifest`'s entries into `filtered` if it holds live files in `removed`: those
    /// become DELETED, the other live entries EXISTING (entries deleted by earlier snapshots are
    /// dropped). False when it holds none of them and is carried over as it is.
    async fn filter_manifest(
        &mut self,
        manifest: &ManifestFile,
        removed: &HashSet<String>,
        found: &mut HashSet<String>,
        summary: &mut SnapshotSummaryCollector,
        filtered: &mut Filtered,
    ) -> Result<bool> {
        let loaded = crate::manifest_cache::load(self.table.file_io(), manifest).await?;
        if !loaded.entries().iter().any(|e| e.is_alive() && removed.contains(e.file_path())) {
            return Ok(false);
        }
        let metadata = self.table.metadata();
        let spec: PartitionSpecRef =
            metadata.partition_spec_by_id(manifest.partition_spec_id).cloned().ok_or_else(|| {
                TableError::Invalid(format!(
                    "manifest {} uses unknown partition spec {}",
                    manifest.manifest_path, manifest.partition_spec_id
                ))
            })?;
        let schema = metadata.current_schema().clone();
        let key = (manifest.content == ManifestContentType::Deletes, spec.spec_id());
        let (writer, entries) = match filtered.open.entry(key) {
            std::collections::btree_map::Entry::Occupied(open) => open.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert((self.manifest(manifest.content, spec.clone())?, 0))
            }
        };
        for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
            let sequence_number = entry.sequence_number().ok_or_else(|| missing_sequence(entry.file_path()))?;
            let file_sequence_number = entry.file_sequence_number;
            let file = entry.data_file().clone();
            if removed.contains(entry.file_path()) {
                found.insert(entry.file_path().to_string());
                summary.remove_file(&file, schema.clone(), spec.clone());
                writer.add_delete_file(file, sequence_number, file_sequence_number)?;
            } else {
                let added_by = entry.snapshot_id().unwrap_or(manifest.added_snapshot_id);
                writer.add_existing_file(file, added_by, sequence_number, file_sequence_number)?;
            }
            *entries += 1;
        }
        if *entries >= FILTERED_ENTRIES_PER_MANIFEST
            && let Some((full, _)) = filtered.open.remove(&key)
        {
            filtered.written.push(full.write_manifest_file().await?);
        }
        Ok(true)
    }

    /// Writes the manifest list of `manifests` and the snapshot on top of `parent`, as the new
    /// head of `branch`.
    pub(crate) async fn finish(
        self,
        parent: Option<SnapshotRef>,
        manifests: Vec<ManifestFile>,
        operation: Operation,
        mut properties: HashMap<String, String>,
        branch: String,
    ) -> Result<PendingCommit> {
        let metadata = self.table.metadata();
        let format = metadata.format_version();
        let mut writer = self;
        let sequence_number = metadata.next_sequence_number();
        let first_row_id = metadata.next_row_id();
        let list_path = format!(
            "{}/metadata/snap-{}-0-{}.avro",
            metadata.location().trim_end_matches('/'),
            writer.snapshot_id,
            writer.commit_uuid
        );
        let parent_id = parent.as_ref().map(|p| p.snapshot_id());
        let output = writer.table.file_io().new_output(&list_path)?.writer().await?;
        writer.written.push(list_path.clone());
        let mut list = match format {
            FormatVersion::V1 => ManifestListWriter::v1(output, writer.snapshot_id, parent_id),
            FormatVersion::V2 => ManifestListWriter::v2(output, writer.snapshot_id, parent_id, sequence_number),
            FormatVersion::V3 => {
                ManifestListWriter::v3(output, writer.snapshot_id, parent_id, sequence_number, Some(first_row_id))
            }
        };
        list.add_manifests(manifests.into_iter())?;
        let next_row_id = list.next_row_id();
        list.close().await?;

        update_totals(&mut properties, parent.as_ref().map(|p| p.summary()));
        let snapshot = Snapshot::builder()
            .with_manifest_list(list_path)
            .with_snapshot_id(writer.snapshot_id)
            .with_parent_snapshot_id(parent_id)
            .with_sequence_number(sequence_number)
            .with_summary(Summary { operation, additional_properties: properties })
            .with_schema_id(metadata.current_schema_id())
            .with_timestamp_ms(chrono::Utc::now().timestamp_millis().max(metadata.last_updated_ms()));
        let snapshot = match next_row_id {
            Some(next) => snapshot.with_row_range(first_row_id, next - first_row_id).build(),
            None => snapshot.build(),
        };

        Ok(PendingCommit {
            snapshot_id: writer.snapshot_id,
            requirements: vec![
                TableRequirement::UuidMatch { uuid: metadata.uuid() },
                TableRequirement::RefSnapshotIdMatch { r#ref: branch.clone(), snapshot_id: parent_id },
            ],
            updates: vec![
                TableUpdate::AddSnapshot { snapshot },
                TableUpdate::SetSnapshotRef {
                    ref_name: branch,
                    reference: SnapshotReference::new(writer.snapshot_id, SnapshotRetention::branch(None, None, None)),
                },
            ],
            written_files: writer.written,
        })
    }

    /// Deletes what was written so far (the snapshot will not be committed).
    pub(crate) async fn cleanup(&self) {
        for path in &self.written {
            if let Err(e) = self.table.file_io().delete(path).await {
                tracing::warn!(%path, error = %e, "cannot delete an uncommitted manifest");
            }
        }
    }
}

fn missing_sequence(path: &str) -> TableError {
    TableError::Invalid(format!("manifest entry for {path} has no sequence number"))
}
