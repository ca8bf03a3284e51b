//! Rewrite: replace data files by compacted ones and delete files by the deletes they left, without
//! changing the table's rows (the commit of self-optimizing).
//!
//! New data files keep the data sequence number of the snapshot the rewrite was planned on, so an
//! equality delete committed after planning still applies to the rewritten rows. Before
//! committing, every snapshot committed since planning is checked; the rewrite fails only if one
//! of them removed a file this rewrite removes, or added a position delete that may apply to a
//! data file this rewrite replaces. Unrelated appends and equality deletes never fail it.

use std::collections::{HashMap, HashSet};

use iceberg::spec::{DataContentType, DataFile, MAIN_BRANCH, Operation, PrimitiveLiteral};
use iceberg::table::Table;

use super::producer::{SnapshotChanges, produce};
use super::{PendingCommit, SnapshotAction};
use crate::error::{Result, TableError};
use crate::scan::{LiveFile, changes_since};

/// Field id of `file_path` in position delete files (Iceberg spec).
pub const POSITION_DELETE_FILE_PATH_ID: i32 = 2147483546;
/// Field id of `pos` in position delete files (Iceberg spec).
pub const POSITION_DELETE_POS_ID: i32 = 2147483545;

/// Replaces files without changing the table's rows.
#[derive(Debug, Clone)]
pub struct RewriteFiles {
    starting_snapshot_id: i64,
    rewritten_data: Vec<LiveFile>,
    removed_deletes: Vec<LiveFile>,
    added_data: Vec<DataFile>,
    added_deletes: Vec<(DataFile, Option<i32>)>,
    properties: HashMap<String, String>,
    operation: Operation,
}

impl RewriteFiles {
    /// A rewrite planned on snapshot `starting_snapshot_id` of `main`.
    pub fn new(starting_snapshot_id: i64) -> Self {
        Self {
            starting_snapshot_id,
            rewritten_data: Vec::new(),
            removed_deletes: Vec::new(),
            added_data: Vec::new(),
            added_deletes: Vec::new(),
            properties: HashMap::new(),
            operation: Operation::Replace,
        }
    }

    /// Removes a data file whose rows the added data files hold.
    pub fn rewrite_data_file(mut self, file: LiveFile) -> Self {
        self.rewritten_data.push(file);
        self
    }

    /// Removes a delete file that no longer applies to any live row.
    pub fn remove_delete_file(mut self, file: LiveFile) -> Self {
        self.removed_deletes.push(file);
        self
    }

    /// Adds a data file (in the table's default partition spec).
    pub fn add_data_file(mut self, file: DataFile) -> Self {
        self.added_data.push(file);
        self
    }

    /// Adds a position delete file (re-expressing deletes of a kept data file) in the table's
    /// default partition spec.
    pub fn add_delete_file(mut self, file: DataFile) -> Self {
        self.added_deletes.push((file, None));
        self
    }

    /// Adds a position delete file whose partition value is in spec `spec_id` (that of the
    /// data file it deletes from).
    pub fn add_delete_file_in_spec(mut self, file: DataFile, spec_id: i32) -> Self {
        self.added_deletes.push((file, Some(spec_id)));
        self
    }

    /// Sets a snapshot summary property (e.g. `snapshot.producer`).
    pub fn set_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Records the snapshot as `operation` instead of `replace`: a removal that changes the
    /// table's rows (data expiration) is a `delete`, so incremental readers see it.
    pub fn with_operation(mut self, operation: Operation) -> Self {
        self.operation = operation;
        self
    }

    /// Checks the snapshots committed since planning for the two conflicts.
    async fn validate(&self, table: &Table) -> Result<()> {
        let metadata = table.metadata_ref();
        let head = metadata.snapshot_for_ref(MAIN_BRANCH).cloned();
        let changes = changes_since(table.file_io(), &metadata, head, Some(self.starting_snapshot_id)).await?;
        if changes.snapshots.is_empty() {
            return Ok(());
        }
        let ours = self.rewritten_data.iter().chain(&self.removed_deletes);
        if let Some(gone) = ours.map(LiveFile::path).find(|p| changes.removed.contains(*p)) {
            return Err(TableError::Conflict(format!("{gone} was removed by a concurrent commit")));
        }
        for added in changes.added.iter().filter(|f| f.content() == DataContentType::PositionDeletes) {
            if let Some(data) = self.rewritten_data.iter().find(|d| position_delete_may_apply(added, d)) {
                return Err(TableError::Conflict(format!(
                    "position delete file {} committed concurrently may apply to rewritten file {}",
                    added.path(),
                    data.path()
                )));
            }
        }
        Ok(())
    }
}

/// True unless `delete` (a position delete file) provably cannot hold positions of `data`.
pub fn position_delete_may_apply(delete: &LiveFile, data: &LiveFile) -> bool {
    if let Some(referenced) = delete.file.referenced_data_file() {
        return referenced == data.path();
    }
    if delete.spec_id == data.spec_id && delete.file.partition() != data.file.partition() {
        return false;
    }
    let bound = |bounds: &HashMap<i32, iceberg::spec::Datum>| match bounds
        .get(&POSITION_DELETE_FILE_PATH_ID)
        .map(|d| d.literal())
    {
        Some(PrimitiveLiteral::String(s)) => Some(s.clone()),
        _ => None,
    };
    match (bound(delete.file.lower_bounds()), bound(delete.file.upper_bounds())) {
        (Some(lower), Some(upper)) => lower.as_str() <= data.path() && data.path() <= upper.as_str(),
        _ => true,
    }
}

impl SnapshotAction for RewriteFiles {
    async fn prepare(self, table: &Table) -> Result<PendingCommit> {
        let start = table.metadata().snapshot_by_id(self.starting_snapshot_id).cloned().ok_or_else(|| {
            TableError::Conflict(format!("the planned snapshot {} no longer exists", self.starting_snapshot_id))
        })?;
        if let Some(f) = self.removed_deletes.iter().find(|f| !f.is_delete()) {
            return Err(TableError::Invalid(format!("{} is a data file, not a delete file", f.path())));
        }
        if let Some((f, _)) =
            self.added_deletes.iter().find(|(f, _)| f.content_type() != DataContentType::PositionDeletes)
        {
            return Err(TableError::Invalid(format!("a rewrite may only add position deletes, not {}", f.file_path())));
        }
        self.validate(table).await?;
        let removed_paths: HashSet<String> =
            self.rewritten_data.iter().chain(&self.removed_deletes).map(|f| f.path().to_string()).collect();
        let changes = SnapshotChanges {
            operation: self.operation,
            added_data_files: self.added_data,
            added_delete_files: self.added_deletes,
            removed_paths,
            data_sequence_number: Some(start.sequence_number()),
            properties: self.properties,
            branch: MAIN_BRANCH.to_string(),
        };
        produce(table, changes).await.map_err(|e| match e {
            // Validation saw no removal, but the head moved on meanwhile: still a conflict.
            TableError::FileNotInTable(path) => TableError::Conflict(format!("{path} is no longer in the table")),
            other => other,
        })
    }
}
