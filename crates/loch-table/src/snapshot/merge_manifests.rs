//! Merging the manifests whose files all lie at or below a data sequence number into fewer,
//! bigger ones, in a `replace` snapshot that changes no file.
//!
//! A keyed table's change store gets one manifest per commit and keeps its files for the
//! change-data TTL (7 days), long after they were folded into the base store. Readers skip the
//! manifests its optimized sequence covers without reading them, but the manifest list itself
//! grows with every commit, and every read and commit reads it whole. Merging the covered
//! manifests keeps the list short; a merged manifest's name records the greatest data sequence
//! number of its files, so readers still skip it unread (its own sequence number is the merge's,
//! above everything it holds).

use std::collections::{BTreeMap, HashMap};

use iceberg::spec::{MAIN_BRANCH, ManifestContentType, ManifestFile, Operation};
use iceberg::table::Table;

use super::PendingCommit;
use super::producer::Writer;
use crate::error::{Result, TableError};
use crate::scan::manifests;

/// What a merged manifest's file name holds before its greatest data sequence number.
const MAX_SEQUENCE_MARK: &str = "-max-seq-";

/// Iceberg's `commit.manifest.min-count-to-merge` default.
pub const DEFAULT_MIN_COUNT_TO_MERGE: usize = 100;
/// Iceberg's `commit.manifest.target-size-bytes` default (8 MiB).
pub const DEFAULT_TARGET_SIZE_BYTES: u64 = 8 * 1024 * 1024;

/// The greatest data sequence number of `manifest`'s live files as its name records it (a
/// manifest [`MergeManifests`] wrote), when that agrees with the sequence numbers the manifest
/// list gives it.
pub fn recorded_max_sequence(manifest: &ManifestFile) -> Option<i64> {
    let name = manifest.manifest_path.rsplit('/').next()?;
    let (_, number) = name.strip_suffix(".avro")?.rsplit_once(MAX_SEQUENCE_MARK)?;
    let max: i64 = number.parse().ok()?;
    (max <= manifest.sequence_number && max >= manifest.min_sequence_number).then_some(max)
}

/// The greatest data sequence number a live file of `manifest` can have: the one its name
/// records, else the sequence number it was added at (files carried into a manifest keep theirs,
/// which are lower).
pub fn max_data_sequence(manifest: &ManifestFile) -> i64 {
    recorded_max_sequence(manifest).unwrap_or(manifest.sequence_number)
}

/// Merges the manifests of `main`'s head whose files all have data sequence numbers at or below
/// a bound, once at least `min_count` of them are there, packed into manifests of about
/// `target_size_bytes` (Iceberg's `commit.manifest.*` properties name the same knobs).
#[derive(Debug, Clone)]
pub struct MergeManifests {
    through: i64,
    min_count: usize,
    target_size_bytes: u64,
    properties: HashMap<String, String>,
}

impl MergeManifests {
    /// Merges the manifests whose live files all have data sequence numbers `<= through`.
    pub fn through(through: i64) -> Self {
        Self {
            through,
            min_count: DEFAULT_MIN_COUNT_TO_MERGE,
            target_size_bytes: DEFAULT_TARGET_SIZE_BYTES,
            properties: HashMap::new(),
        }
    }

    /// Merges only when at least `count` manifests qualify (at least 2).
    pub fn min_count(mut self, count: usize) -> Self {
        self.min_count = count.max(2);
        self
    }

    /// The size merged manifests are packed to.
    pub fn target_size_bytes(mut self, bytes: u64) -> Self {
        self.target_size_bytes = bytes.max(1);
        self
    }

    /// Sets a snapshot summary property.
    pub fn set_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Writes the merged manifests and the `replace` snapshot listing them; `None` when there
    /// is nothing worth merging (fewer than the minimum count qualify, no snapshot, or a v1
    /// table, whose manifests carry no sequence numbers).
    pub async fn prepare(self, table: &Table) -> Result<Option<PendingCommit>> {
        let metadata = table.metadata_ref();
        if metadata.format_version() == iceberg::spec::FormatVersion::V1 {
            return Ok(None);
        }
        let Some(head) = metadata.snapshot_for_ref(MAIN_BRANCH).cloned() else { return Ok(None) };
        let list: Vec<ManifestFile> = manifests(table.file_io(), &metadata, &head)
            .await?
            .into_iter()
            // A manifest left with DELETED entries only belongs to the snapshot that wrote it.
            .filter(|m| m.has_added_files() || m.has_existing_files())
            .collect();
        let qualifies = |m: &ManifestFile| max_data_sequence(m) <= self.through;
        if list.iter().filter(|m| qualifies(m)).count() < self.min_count {
            return Ok(None);
        }

        // Bins per content and spec, filled in list order (newest first) up to the target size.
        let mut groups: BTreeMap<(bool, i32), Vec<Vec<usize>>> = BTreeMap::new();
        let mut bin_bytes: HashMap<(bool, i32), u64> = HashMap::new();
        for (i, m) in list.iter().enumerate().filter(|(_, m)| qualifies(m)) {
            let key = (m.content == ManifestContentType::Deletes, m.partition_spec_id);
            let bins = groups.entry(key).or_default();
            let bytes = bin_bytes.entry(key).or_default();
            let length = u64::try_from(m.manifest_length).unwrap_or(0);
            match bins.last_mut() {
                Some(bin) if *bytes + length <= self.target_size_bytes => bin.push(i),
                _ => {
                    bins.push(vec![i]);
                    *bytes = 0;
                }
            }
            *bytes += length;
        }

        let mut writer = Writer::new(table);
        // Index of a bin's first manifest → the merged manifest that takes the bin's place.
        let mut merged: HashMap<usize, ManifestFile> = HashMap::new();
        let mut replaced = std::collections::HashSet::new();
        let mut entries = 0usize;
        for bin in groups.into_values().flatten().filter(|bin| bin.len() > 1) {
            match merge_bin(&mut writer, table, &list, &bin).await {
                Ok((manifest, count)) => {
                    entries += count;
                    replaced.extend(bin.iter().copied());
                    merged.insert(bin[0], manifest);
                }
                Err(e) => {
                    writer.cleanup().await;
                    return Err(e);
                }
            }
        }
        if merged.is_empty() {
            return Ok(None);
        }
        let created = merged.len();
        let mut out = Vec::with_capacity(list.len() - replaced.len() + created);
        for (i, m) in list.into_iter().enumerate() {
            if let Some(manifest) = merged.remove(&i) {
                out.push(manifest);
            } else if !replaced.contains(&i) {
                out.push(m);
            }
        }
        let mut properties = self.properties;
        properties.extend([
            ("manifests-created".to_string(), created.to_string()),
            ("manifests-replaced".to_string(), replaced.len().to_string()),
            ("manifests-kept".to_string(), (out.len() - created).to_string()),
            ("entries-processed".to_string(), entries.to_string()),
        ]);
        let pending = writer.finish(Some(head), out, Operation::Replace, properties, MAIN_BRANCH.to_string()).await;
        Ok(Some(pending?))
    }
}

/// Writes the live entries of the manifests `bin` names as EXISTING entries of one manifest,
/// keeping their snapshot ids and sequence numbers; the manifest and its entry count.
async fn merge_bin(
    writer: &mut Writer<'_>,
    table: &Table,
    list: &[ManifestFile],
    bin: &[usize],
) -> Result<(ManifestFile, usize)> {
    let first = &list[bin[0]];
    let spec = table.metadata().partition_spec_by_id(first.partition_spec_id).cloned().ok_or_else(|| {
        TableError::Invalid(format!(
            "manifest {} uses unknown partition spec {}",
            first.manifest_path, first.partition_spec_id
        ))
    })?;
    // The live entries first: the name records their greatest data sequence number exactly
    // (a manifest rewritten by a later removal is bounded only by its own sequence number).
    let mut live = Vec::new();
    for &i in bin {
        let manifest = &list[i];
        let loaded = crate::manifest_cache::load(table.file_io(), manifest).await?;
        for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
            let sequence = entry.sequence_number().ok_or_else(|| {
                TableError::Invalid(format!("manifest entry for {} has no sequence number", entry.file_path()))
            })?;
            let added_by = entry.snapshot_id().unwrap_or(manifest.added_snapshot_id);
            live.push((entry.data_file().clone(), added_by, sequence, entry.file_sequence_number));
        }
    }
    let max = live.iter().map(|(_, _, sequence, _)| *sequence).max().unwrap_or(first.sequence_number);
    let mut out = writer.manifest_named(first.content, spec, &format!("{MAX_SEQUENCE_MARK}{max}"))?;
    let count = live.len();
    for (file, added_by, sequence, file_sequence) in live {
        out.add_existing_file(file, added_by, sequence, file_sequence)?;
    }
    Ok((out.write_manifest_file().await?, count))
}
