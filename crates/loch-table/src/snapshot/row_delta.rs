//! Row delta: add data files and delete files in one snapshot (merge-on-read deletes and
//! upserts).

use std::collections::HashMap;

use iceberg::spec::{DataFile, MAIN_BRANCH, Operation};
use iceberg::table::Table;

use super::producer::{SnapshotChanges, produce};
use super::{PendingCommit, SnapshotAction};
use crate::error::Result;

/// Adds rows (data files) and deletes rows (position or equality delete files).
///
/// The operation is `overwrite`, or `delete` when only delete files are added and `append` when
/// only data files are, as Iceberg Java labels row deltas.
#[derive(Debug, Clone)]
pub struct RowDelta {
    data: Vec<DataFile>,
    deletes: Vec<DataFile>,
    properties: HashMap<String, String>,
}

impl Default for RowDelta {
    fn default() -> Self {
        Self::new()
    }
}

impl RowDelta {
    /// An empty row delta on `main`.
    pub fn new() -> Self {
        Self { data: Vec::new(), deletes: Vec::new(), properties: HashMap::new() }
    }

    /// Adds a data file.
    pub fn add_rows(mut self, file: DataFile) -> Self {
        self.data.push(file);
        self
    }

    /// Adds a position or equality delete file.
    pub fn add_deletes(mut self, file: DataFile) -> Self {
        self.deletes.push(file);
        self
    }

    /// Sets a snapshot summary property.
    pub fn set_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }
}

impl SnapshotAction for RowDelta {
    async fn prepare(self, table: &Table) -> Result<PendingCommit> {
        let operation = match (self.data.is_empty(), self.deletes.is_empty()) {
            (false, true) => Operation::Append,
            (true, false) => Operation::Delete,
            _ => Operation::Overwrite,
        };
        let changes = SnapshotChanges {
            operation,
            added_data_files: self.data,
            added_delete_files: self.deletes.into_iter().map(|f| (f, None)).collect(),
            properties: self.properties,
            branch: MAIN_BRANCH.to_string(),
            ..SnapshotChanges::default()
        };
        produce(table, changes).await
    }
}
