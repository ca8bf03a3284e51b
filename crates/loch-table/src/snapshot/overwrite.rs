//! Overwrite: remove data files and add others in one snapshot (copy-on-write deletes,
//! updates and overwrites).

use std::collections::{HashMap, HashSet};

use iceberg::spec::{DataFile, MAIN_BRANCH, Operation};
use iceberg::table::Table;

use super::producer::{SnapshotChanges, produce};
use super::{PendingCommit, SnapshotAction};
use crate::error::Result;

/// Replaces data files: the removed files' rows disappear, the added files' rows appear.
///
/// The snapshot's operation is `overwrite`, or `delete` when nothing is added and `append` when
/// nothing is removed, as Iceberg Java labels them.
#[derive(Debug, Clone)]
pub struct OverwriteFiles {
    removed: HashSet<String>,
    added: Vec<DataFile>,
    properties: HashMap<String, String>,
    branch: String,
}

impl Default for OverwriteFiles {
    fn default() -> Self {
        Self::new()
    }
}

impl OverwriteFiles {
    /// An empty overwrite on the `main` branch.
    pub fn new() -> Self {
        Self { removed: HashSet::new(), added: Vec::new(), properties: HashMap::new(), branch: MAIN_BRANCH.to_string() }
    }

    /// Removes a live data file, by path.
    pub fn delete_file(mut self, path: impl Into<String>) -> Self {
        self.removed.insert(path.into());
        self
    }

    /// Adds a data file (in the table's default partition spec).
    pub fn add_file(mut self, file: DataFile) -> Self {
        self.added.push(file);
        self
    }

    /// Adds data files.
    pub fn add_files(mut self, files: impl IntoIterator<Item = DataFile>) -> Self {
        self.added.extend(files);
        self
    }

    /// Sets a snapshot summary property.
    pub fn set_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Commits to `branch` instead of `main`.
    pub fn to_branch(mut self, branch: impl Into<String>) -> Self {
        self.branch = branch.into();
        self
    }
}

impl SnapshotAction for OverwriteFiles {
    async fn prepare(self, table: &Table) -> Result<PendingCommit> {
        let operation = match (self.removed.is_empty(), self.added.is_empty()) {
            (true, _) => Operation::Append,
            (false, true) => Operation::Delete,
            (false, false) => Operation::Overwrite,
        };
        let changes = SnapshotChanges {
            operation,
            added_data_files: self.added,
            removed_paths: self.removed,
            properties: self.properties,
            branch: self.branch,
            ..SnapshotChanges::default()
        };
        produce(table, changes).await
    }
}
