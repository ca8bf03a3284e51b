//! Snapshot-producing table operations.
//!
//! Each action is a small builder ([`OverwriteFiles`], and later rewrite and row-delta) that
//! hands the files it adds and removes to one shared producer. The producer carries unchanged
//! manifests over, rewrites the manifests that hold removed files (removed entries marked
//! DELETED with their original sequence numbers, the rest EXISTING), writes manifests for added
//! files and the manifest list, and computes the snapshot summary. The result is a
//! [`PendingCommit`]: requirements and updates for the catalog's commit path.

pub mod merge_manifests;
mod overwrite;
mod producer;
pub mod rewrite;
mod row_delta;
mod summary;

use std::future::Future;

use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};

pub use merge_manifests::MergeManifests;
pub use overwrite::OverwriteFiles;
pub use rewrite::RewriteFiles;
pub use row_delta::RowDelta;

use crate::error::Result;

/// A new snapshot, written but not committed.
#[derive(Debug, Clone)]
pub struct PendingCommit {
    /// Id of the new snapshot.
    pub snapshot_id: i64,
    /// What the snapshot assumes about the table (its UUID, the branch head it builds on).
    pub requirements: Vec<TableRequirement>,
    /// The snapshot and the branch update.
    pub updates: Vec<TableUpdate>,
    /// Manifests and the manifest list written for the snapshot; orphans if it never commits.
    pub written_files: Vec<String>,
}

/// A table operation that produces one snapshot.
///
/// The trait is the seam to iceberg-rust: when it gains rewrite and row-delta actions, an
/// implementation can delegate to them without touching callers.
pub trait SnapshotAction {
    /// Writes the snapshot's manifests and manifest list on top of the branch head of `table`.
    fn prepare(self, table: &Table) -> impl Future<Output = Result<PendingCommit>> + Send;
}
