//! The evaluator: does a table need optimizing, and which partitions most?
//!
//! One streaming pass over the live files of the current snapshot keeps a few counters per
//! partition — never the file list — so a table with half a million files costs a few bytes per
//! partition. Files are classed as in Amoro (fragment ≤ target/8, undersized segment ≤ 0.75 ×
//! target, segment above) and each partition gets the minor / major / full decision from
//! Amoro's trigger rules, evaluated on partition totals. The planner then looks at the chosen
//! partitions file by file.

use std::collections::HashMap;

use futures::TryStreamExt;
use iceberg::io::FileIO;
use iceberg::spec::{DataContentType, DataFileFormat, SnapshotRef, Struct, TableMetadataRef};
use loch_table::TableError;
use loch_table::position_delete::OPTIMIZING_DELETE_MARKER;
use loch_table::scan::{LiveFile, live_files};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::properties::OptimizingProperties;

/// The three kinds of optimizing, in increasing weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizingType {
    /// Compact fragments; re-express equality deletes on segments as position deletes.
    Minor,
    /// Also rewrite segments with many deletes and merge undersized segments.
    Major,
    /// Rewrite everything (or everything with deletes), leaving no delete files.
    Full,
}

impl OptimizingType {
    /// Lower-case name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            OptimizingType::Minor => "minor",
            OptimizingType::Major => "major",
            OptimizingType::Full => "full",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [OptimizingType::Minor, OptimizingType::Major, OptimizingType::Full].into_iter().find(|t| t.as_str() == s)
    }
}

/// A partition: its spec and value.
pub type PartitionId = (i32, Struct);

/// Counters of one partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionStats {
    /// Data files.
    pub data_files: u64,
    /// Bytes of data files.
    pub data_bytes: u64,
    /// Rows in data files.
    pub data_records: u64,
    /// Fragments (≤ fragment size).
    pub fragments: u64,
    /// Bytes of fragments.
    pub fragment_bytes: u64,
    /// Undersized segments.
    pub undersized: u64,
    /// Bytes of undersized segments.
    pub undersized_bytes: u64,
    /// The two smallest undersized segments.
    pub smallest_undersized: [Option<u64>; 2],
    /// Segments at target size.
    pub segments: u64,
    /// Rows in segments at target size or undersized.
    pub segment_records: u64,
    /// Bytes of segments at target size.
    pub segment_bytes: u64,
    /// Equality delete files.
    pub eq_delete_files: u64,
    /// Bytes of equality delete files.
    pub eq_delete_bytes: u64,
    /// Rows in equality delete files.
    pub eq_delete_records: u64,
    /// Position delete files.
    pub pos_delete_files: u64,
    /// Bytes of position delete files.
    pub pos_delete_bytes: u64,
    /// Positions in position delete files.
    pub pos_delete_records: u64,
    /// Position delete files not written by optimizing.
    pub foreign_pos_deletes: u64,
    /// Keyed tables: change files not folded into the base yet (inserts and deletes).
    #[serde(default)]
    pub change_files: u64,
    /// Keyed tables: change delete (`ED`) files among them.
    #[serde(default)]
    pub change_delete_files: u64,
    /// Keyed tables: bytes of those change files.
    #[serde(default)]
    pub change_bytes: u64,
    /// Keyed tables: rows of those change files.
    #[serde(default)]
    pub change_records: u64,
}

impl PartitionStats {
    pub(crate) fn add(&mut self, file: &LiveFile, props: &OptimizingProperties) {
        let size = file.file.file_size_in_bytes();
        let records = file.file.record_count();
        match file.content() {
            DataContentType::Data => {
                self.data_files += 1;
                self.data_bytes += size;
                self.data_records += records;
                if size <= props.fragment_size() {
                    self.fragments += 1;
                    self.fragment_bytes += size;
                } else {
                    self.segment_records += records;
                    if size <= props.min_target_size() {
                        self.undersized += 1;
                        self.undersized_bytes += size;
                        self.note_undersized(size);
                    } else {
                        self.segments += 1;
                        self.segment_bytes += size;
                    }
                }
            }
            DataContentType::EqualityDeletes => {
                self.eq_delete_files += 1;
                self.eq_delete_bytes += size;
                self.eq_delete_records += records;
            }
            DataContentType::PositionDeletes => {
                self.pos_delete_files += 1;
                self.pos_delete_bytes += size;
                self.pos_delete_records += records;
                if !file.path().contains(OPTIMIZING_DELETE_MARKER) {
                    self.foreign_pos_deletes += 1;
                }
            }
        }
    }

    fn note_undersized(&mut self, size: u64) {
        let mut smallest: Vec<u64> = self.smallest_undersized.iter().flatten().copied().chain([size]).collect();
        smallest.sort_unstable();
        self.smallest_undersized = [smallest.first().copied(), smallest.get(1).copied()];
    }

    /// Counts a change file of a keyed table (not folded yet); every one is a fragment.
    pub fn add_change(&mut self, file: &LiveFile, is_delete: bool) {
        self.change_files += 1;
        self.change_delete_files += u64::from(is_delete);
        self.change_bytes += file.file.file_size_in_bytes();
        self.change_records += file.file.record_count();
    }

    /// The optimizing a partition of a keyed table needs (Amoro's
    /// `MixedIcebergPartitionEvaluator`): change files count as fragments; minor folds them
    /// once there are `max(buckets + 1, minor.trigger.file-count)` small files, or any after
    /// the minor interval; major and full as for Iceberg tables, full also for change files.
    pub fn keyed_decision(
        &self,
        props: &OptimizingProperties,
        times: &LastOptimized,
        now_ms: i64,
        buckets: u32,
    ) -> Option<OptimizingType> {
        let full_due =
            props.full_trigger_interval_ms >= 0 && now_ms - times.full.unwrap_or(0) > props.full_trigger_interval_ms;
        if full_due {
            let worth = self.delete_files() > 0 || self.fragments > u64::from(buckets) || self.change_files > 0;
            return worth.then_some(OptimizingType::Full);
        }
        let small = self.fragments + self.eq_delete_files + self.change_files;
        let minor_interval_due = now_ms - times.minor.unwrap_or(0) > props.minor_trigger_interval_ms;
        let trigger = (u64::from(buckets) + 1).max(props.minor_trigger_file_count as u64);
        let minor = small >= trigger
            || ((small > u64::from(buckets) || self.change_files > 0) && minor_interval_due)
            || self.pos_delete_files > self.segments + self.undersized;
        let enough_undersized = self.undersized_bytes >= props.target_size
            && matches!(self.smallest_undersized, [Some(a), Some(b)] if a + b <= props.target_size);
        if self.rewrite_segments(props) || enough_undersized {
            Some(OptimizingType::Major)
        } else if minor {
            Some(OptimizingType::Minor)
        } else {
            None
        }
    }

    /// When a keyed partition's time-based triggers could next change its decision.
    pub fn keyed_next_due(&self, props: &OptimizingProperties, times: &LastOptimized, buckets: u32) -> Option<i64> {
        let full_worth = self.delete_files() > 0 || self.fragments > u64::from(buckets) || self.change_files > 0;
        let full = (props.full_trigger_interval_ms >= 0 && full_worth)
            .then(|| times.full.unwrap_or(0).saturating_add(props.full_trigger_interval_ms).saturating_add(1));
        let small = self.fragments + self.eq_delete_files + self.change_files;
        let minor = (small > u64::from(buckets) || self.change_files > 0)
            .then(|| times.minor.unwrap_or(0).saturating_add(props.minor_trigger_interval_ms).saturating_add(1));
        full.into_iter().chain(minor).min()
    }

    fn delete_files(&self) -> u64 {
        self.eq_delete_files + self.pos_delete_files
    }

    /// Segments probably worth rewriting: their position deletes exceed the duplicate ratio.
    fn rewrite_segments(&self, props: &OptimizingProperties) -> bool {
        self.segment_records > 0
            && self.pos_delete_records as f64 > self.segment_records as f64 * props.major_duplicate_ratio
    }

    /// Segments whose deletes should be re-expressed as one position delete file each.
    fn reposition_segments(&self) -> bool {
        let segments = self.segments + self.undersized;
        segments > 0 && (self.eq_delete_files > 0 || self.foreign_pos_deletes > 0 || self.pos_delete_files > segments)
    }

    /// The optimizing this partition needs, by Amoro's trigger rules.
    pub fn decision(&self, props: &OptimizingProperties, times: &LastOptimized, now_ms: i64) -> Option<OptimizingType> {
        let full_due =
            props.full_trigger_interval_ms >= 0 && now_ms - times.full.unwrap_or(0) > props.full_trigger_interval_ms;
        if full_due {
            let worth = self.delete_files() > 0
                || self.fragments >= 2
                || self.undersized >= 2
                || self.rewrite_segments(props)
                || self.reposition_segments();
            return worth.then_some(OptimizingType::Full);
        }
        let small = self.fragments + self.eq_delete_files;
        let minor_interval_due = now_ms - times.minor.unwrap_or(0) > props.minor_trigger_interval_ms;
        let minor = small >= props.minor_trigger_file_count as u64
            || (small > 1 && minor_interval_due)
            || self.reposition_segments();
        let enough_undersized = self.undersized_bytes >= props.target_size
            && matches!(self.smallest_undersized, [Some(a), Some(b)] if a + b <= props.target_size);
        let major = self.rewrite_segments(props) || enough_undersized;
        if major {
            Some(OptimizingType::Major)
        } else if minor {
            Some(OptimizingType::Minor)
        } else {
            None
        }
    }

    /// When the time-based rules (full and minor trigger intervals) could next change this
    /// partition's decision, if they can: a quiet table is looked at again then, not before.
    pub fn next_due(&self, props: &OptimizingProperties, times: &LastOptimized) -> Option<i64> {
        let full_worth = self.delete_files() > 0
            || self.fragments >= 2
            || self.undersized >= 2
            || self.rewrite_segments(props)
            || self.reposition_segments();
        let full = (props.full_trigger_interval_ms >= 0 && full_worth)
            .then(|| times.full.unwrap_or(0).saturating_add(props.full_trigger_interval_ms).saturating_add(1));
        let minor = (self.fragments + self.eq_delete_files > 1)
            .then(|| times.minor.unwrap_or(0).saturating_add(props.minor_trigger_interval_ms).saturating_add(1));
        full.into_iter().chain(minor).min()
    }

    /// Planning weight (Amoro's partition cost): bytes to rewrite, delete bytes and file count.
    pub fn cost(&self, props: &OptimizingProperties) -> u64 {
        (self.fragment_bytes + self.undersized_bytes + self.change_bytes) * 2
            + self.segment_bytes / 10
            + self.pos_delete_bytes
            + self.eq_delete_bytes
            + (self.data_files + self.delete_files() + self.change_files) * props.open_file_cost
    }

    /// Health score 0–100: small files (≤ 40), equality deletes (≤ 40), position deletes (≤ 20).
    pub fn health(&self, props: &OptimizingProperties) -> f64 {
        if self.data_files == 0 {
            return 100.0;
        }
        let small = 40.0 * (self.fragments + self.undersized) as f64 / self.data_files as f64;
        let records = self.data_records.max(1) as f64;
        let eq = (40.0 * self.eq_delete_records as f64 / (records * props.major_duplicate_ratio)).min(40.0);
        let pos = (20.0 * self.pos_delete_records as f64 / (records * 2.0 * props.major_duplicate_ratio)).min(20.0);
        (100.0 - small - eq - pos).max(0.0)
    }
}

/// When a table was last optimized, per type (ms since epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastOptimized {
    /// Last minor optimizing.
    pub minor: Option<i64>,
    /// Last major optimizing.
    pub major: Option<i64>,
    /// Last full optimizing.
    pub full: Option<i64>,
}

/// A partition that needs optimizing.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingPartition {
    /// The partition.
    pub id: PartitionId,
    /// What it needs.
    pub decision: OptimizingType,
    /// Planning weight.
    pub cost: u64,
    /// Its counters.
    pub stats: PartitionStats,
}

/// The result of evaluating a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The evaluated snapshot (of the base store for a keyed table; 0 when it has none).
    pub snapshot_id: i64,
    /// What was evaluated, as the runtime remembers it: the snapshot id, or for a keyed table
    /// a mix of both stores' snapshot ids (see `ManagedTable::state`).
    pub state: i64,
    /// Partitions that need optimizing, heaviest first.
    pub pending: Vec<PendingPartition>,
    /// Totals over all partitions.
    pub totals: PartitionStats,
    /// Number of partitions.
    pub partitions: usize,
    /// Average partition health.
    pub health: f64,
    /// When a time-based trigger could next find work in a partition that needs none now.
    pub next_due_ms: Option<i64>,
}

impl Evaluation {
    /// The heaviest optimizing any partition needs.
    pub fn optimizing_type(&self) -> Option<OptimizingType> {
        self.pending.iter().map(|p| p.decision).max()
    }

    /// Summary for the runtime's `summary` column and the management API.
    pub fn summary(&self) -> serde_json::Value {
        let t = &self.totals;
        serde_json::json!({
            "snapshotId": self.snapshot_id,
            "partitions": self.partitions,
            "dataFiles": t.data_files,
            "dataBytes": t.data_bytes,
            "records": t.data_records,
            "fragments": t.fragments,
            "undersizedSegments": t.undersized,
            "segments": t.segments,
            "equalityDeleteFiles": t.eq_delete_files,
            "positionDeleteFiles": t.pos_delete_files,
            "changeFiles": t.change_files,
            "healthScore": (self.health * 10.0).round() / 10.0,
        })
    }

    /// What is pending, for the runtime's `pending_input` column.
    pub fn pending_input(&self) -> Option<serde_json::Value> {
        let kind = self.optimizing_type()?;
        let mut files = 0;
        let mut bytes = 0;
        for p in &self.pending {
            files += p.stats.data_files + p.stats.eq_delete_files + p.stats.pos_delete_files + p.stats.change_files;
            bytes += p.stats.data_bytes + p.stats.eq_delete_bytes + p.stats.pos_delete_bytes + p.stats.change_bytes;
        }
        Some(
            serde_json::json!({"type": kind.as_str(), "partitions": self.pending.len(), "files": files, "bytes": bytes}),
        )
    }
}

/// Evaluates `snapshot`, streaming its manifests.
pub async fn evaluate(
    io: FileIO,
    metadata: TableMetadataRef,
    snapshot: SnapshotRef,
    props: &OptimizingProperties,
    times: &LastOptimized,
    now_ms: i64,
) -> Result<Evaluation> {
    let snapshot_id = snapshot.snapshot_id();
    let mut partitions: HashMap<PartitionId, PartitionStats> = HashMap::new();
    let mut files = live_files(io, metadata.clone(), snapshot);
    while let Some(file) = files.try_next().await? {
        check_supported(&metadata, &file)?;
        partitions.entry((file.spec_id, file.file.partition().clone())).or_default().add(&file, props);
    }
    Ok(evaluate_partitions(snapshot_id, partitions, props, times, now_ms, None))
}

/// Refuses files Loch cannot rewrite yet, so the table is skipped (and says why) instead of
/// failing a process again and again: deletion vectors, non-Parquet files, files elsewhere.
pub fn check_supported(metadata: &TableMetadataRef, file: &LiveFile) -> std::result::Result<(), TableError> {
    match file.file.file_format() {
        DataFileFormat::Puffin => {
            return Err(TableError::Unsupported("format v3 deletion vectors are not supported yet".into()));
        }
        DataFileFormat::Parquet => {}
        other => {
            return Err(TableError::Unsupported(format!(
                "{other:?} files ({}) are not supported yet; Loch rewrites Parquet files",
                file.path()
            )));
        }
    }
    loch_table::scan::owned(metadata, file.path(), "file")
}

/// The decisions for already counted partitions; `keyed_buckets` for a keyed table (its base
/// buckets), whose rules differ.
pub fn evaluate_partitions(
    snapshot_id: i64,
    partitions: HashMap<PartitionId, PartitionStats>,
    props: &OptimizingProperties,
    times: &LastOptimized,
    now_ms: i64,
    keyed_buckets: Option<u32>,
) -> Evaluation {
    let mut totals = PartitionStats::default();
    let mut health = 0.0;
    let count = partitions.len();
    let mut pending = Vec::new();
    let mut next_due_ms = None;
    for (id, stats) in partitions {
        for (sum, part) in [
            (&mut totals.data_files, stats.data_files),
            (&mut totals.data_bytes, stats.data_bytes),
            (&mut totals.data_records, stats.data_records),
            (&mut totals.fragments, stats.fragments),
            (&mut totals.undersized, stats.undersized),
            (&mut totals.segments, stats.segments),
            (&mut totals.eq_delete_files, stats.eq_delete_files),
            (&mut totals.pos_delete_files, stats.pos_delete_files),
            (&mut totals.change_files, stats.change_files),
            (&mut totals.change_bytes, stats.change_bytes),
        ] {
            *sum += part;
        }
        health += stats.health(props);
        let (decision, next_due) = match keyed_buckets {
            Some(buckets) => {
                (stats.keyed_decision(props, times, now_ms, buckets), stats.keyed_next_due(props, times, buckets))
            }
            None => (stats.decision(props, times, now_ms), stats.next_due(props, times)),
        };
        if let Some(decision) = decision {
            // Keyed partitions with change files go first (Amoro's weight).
            let cost = stats.cost(props) + if stats.change_files > 0 { 1 << 50 } else { 0 };
            pending.push(PendingPartition { cost, id, decision, stats });
        } else if let Some(due) = next_due.filter(|due| *due > now_ms) {
            next_due_ms = Some(next_due_ms.map_or(due, |d: i64| d.min(due)));
        }
    }
    pending.sort_by(|a, b| b.decision.cmp(&a.decision).then(b.cost.cmp(&a.cost)));
    Evaluation {
        snapshot_id,
        state: snapshot_id,
        pending,
        totals,
        partitions: count,
        health: if count == 0 { 100.0 } else { health / count as f64 },
        next_due_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn stats(data: &[u64], eq_deletes: u64, pos_deletes: u64) -> PartitionStats {
        let props = OptimizingProperties::default();
        let mut s = PartitionStats::default();
        for &size in data {
            let f = fake(size, DataContentType::Data, "d.parquet");
            s.add(&f, &props);
        }
        for _ in 0..eq_deletes {
            s.add(&fake(1024, DataContentType::EqualityDeletes, "e.parquet"), &props);
        }
        for _ in 0..pos_deletes {
            s.add(&fake(1024, DataContentType::PositionDeletes, "p.parquet"), &props);
        }
        s
    }

    fn fake(size: u64, content: DataContentType, path: &str) -> LiveFile {
        let file = iceberg::spec::DataFileBuilder::default()
            .content(content)
            .file_path(path.to_string())
            .file_format(iceberg::spec::DataFileFormat::Parquet)
            .partition(Struct::empty())
            .record_count(size / 100)
            .file_size_in_bytes(size)
            .build()
            .unwrap();
        LiveFile { file, spec_id: 0, data_sequence_number: 1, file_sequence_number: 1 }
    }

    fn decide(s: &PartitionStats, last_minor: Option<i64>) -> Option<OptimizingType> {
        let times = LastOptimized { minor: last_minor, ..Default::default() };
        s.decision(&OptimizingProperties::default(), &times, 10_000_000)
    }

    #[test]
    fn twelve_fragments_trigger_minor() {
        assert_eq!(decide(&stats(&[MB; 11], 0, 0), Some(10_000_000)), None);
        assert_eq!(decide(&stats(&[MB; 12], 0, 0), Some(10_000_000)), Some(OptimizingType::Minor));
        // Fragments plus equality deletes count together.
        assert_eq!(decide(&stats(&[MB; 6], 6, 0), Some(10_000_000)), Some(OptimizingType::Minor));
    }

    #[test]
    fn two_fragments_trigger_minor_after_the_interval() {
        assert_eq!(decide(&stats(&[MB; 2], 0, 0), Some(10_000_000)), None);
        assert_eq!(decide(&stats(&[MB; 2], 0, 0), Some(1)), Some(OptimizingType::Minor));
        assert_eq!(decide(&stats(&[MB; 1], 0, 0), Some(1)), None, "one fragment is not worth it");
    }

    #[test]
    fn equality_deletes_on_segments_trigger_minor() {
        assert_eq!(decide(&stats(&[120 * MB], 1, 0), Some(10_000_000)), Some(OptimizingType::Minor));
        assert_eq!(decide(&stats(&[120 * MB], 0, 0), Some(10_000_000)), None);
    }

    #[test]
    fn undersized_segments_that_fit_together_trigger_major() {
        assert_eq!(decide(&stats(&[60 * MB, 60 * MB], 0, 0), Some(10_000_000)), None, "less than a target together");
        assert_eq!(decide(&stats(&[60 * MB, 60 * MB, 60 * MB], 0, 0), Some(10_000_000)), Some(OptimizingType::Major));
    }

    #[test]
    fn many_position_deletes_trigger_major() {
        let mut s = stats(&[120 * MB], 0, 0);
        s.pos_delete_files = 1;
        s.pos_delete_records = s.segment_records / 5;
        assert_eq!(decide(&s, Some(10_000_000)), Some(OptimizingType::Major));
    }

    #[test]
    fn full_when_its_interval_is_due() {
        let props = OptimizingProperties { full_trigger_interval_ms: 1000, ..Default::default() };
        let s = stats(&[MB; 2], 1, 0);
        let times = LastOptimized { full: Some(0), ..Default::default() };
        assert_eq!(s.decision(&props, &times, 5000), Some(OptimizingType::Full));
        let clean = stats(&[120 * MB], 0, 0);
        assert_eq!(clean.decision(&props, &times, 5000), None, "nothing to gain");
    }

    #[test]
    fn health_drops_with_small_files_and_deletes() {
        let props = OptimizingProperties::default();
        assert_eq!(stats(&[120 * MB], 0, 0).health(&props), 100.0);
        assert!(stats(&[MB; 10], 0, 0).health(&props) <= 60.0);
    }
}
