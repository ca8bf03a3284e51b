//! Table maintenance beyond compaction (Amoro's actions, names and defaults): snapshot expiry
//! and dangling-delete cleaning now; orphan cleaning, data expiration and automatic tags next. Each action
//! reads its table properties (`properties`), works on one table under its commit lock, commits
//! through the catalog's commit path and deletes only inside the table's location.

pub mod dangling;
pub mod duration;
pub mod expire;
pub mod properties;
pub mod runner;
pub mod tags;

use serde::{Deserialize, Serialize};

use crate::error::{OptimizingError, Result};

/// What a maintenance run did, or in a dry run would do (stored as the run's summary).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceSummary {
    /// Nothing was committed or deleted.
    pub dry_run: bool,
    /// Why the action did not run (a switch is off), if it did not.
    pub skipped: Option<String>,
    /// Snapshots older than this (ms since epoch) could expire.
    pub older_than_ms: i64,
    /// Snapshots expired.
    pub snapshots_expired: usize,
    /// Refs removed (aged-out branches and tags).
    pub refs_removed: Vec<String>,
    /// Data and delete files deleted.
    pub content_files: usize,
    /// Manifests, manifest lists and statistics files deleted.
    pub metadata_files: usize,
    /// Bytes deleted (manifest lists not counted: their size is recorded nowhere).
    pub bytes: u64,
    /// Files left alone because they lie outside the table's location.
    pub files_skipped: u64,
    /// The first files deleted (a dry run lists those it would delete).
    pub paths: Vec<String>,
    /// The metadata file before the run's commit and the one it committed: from these two the
    /// files to delete are found again when a restart interrupted the deletion.
    pub metadata_before: Option<String>,
    /// See `metadata_before`.
    pub metadata_after: Option<String>,
    /// The tag an `auto-create-tags` run made (or in a dry run would make).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_created: Option<String>,
}

/// A maintenance action, by Amoro's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaintenanceAction {
    /// `expire-snapshots`: drop old snapshots and the files only they reached.
    ExpireSnapshots,
    /// `clean-orphan-files`: delete files no snapshot or metadata references.
    CleanOrphanFiles,
    /// `clean-dangling-delete-files`: drop delete files that apply to no live data file.
    CleanDanglingDeleteFiles,
    /// `expire-data`: drop rows older than the table's retention.
    ExpireData,
    /// `auto-create-tags`: tag a snapshot each period.
    AutoCreateTags,
}

impl MaintenanceAction {
    /// Every action.
    pub const ALL: [MaintenanceAction; 5] = [
        MaintenanceAction::ExpireSnapshots,
        MaintenanceAction::CleanOrphanFiles,
        MaintenanceAction::CleanDanglingDeleteFiles,
        MaintenanceAction::ExpireData,
        MaintenanceAction::AutoCreateTags,
    ];

    /// Its name, as in Amoro and in the API's paths.
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceAction::ExpireSnapshots => "expire-snapshots",
            MaintenanceAction::CleanOrphanFiles => "clean-orphan-files",
            MaintenanceAction::CleanDanglingDeleteFiles => "clean-dangling-delete-files",
            MaintenanceAction::ExpireData => "expire-data",
            MaintenanceAction::AutoCreateTags => "auto-create-tags",
        }
    }

    /// Parses a name; a 400 naming the known actions for anything else.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
            OptimizingError::Invalid(format!("unknown maintenance action {name:?}; known: {}", known.join(", ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_have_amoro_s_names() {
        for action in MaintenanceAction::ALL {
            assert_eq!(MaintenanceAction::parse(action.as_str()).unwrap(), action);
        }
        let error = MaintenanceAction::parse("vacuum").unwrap_err().to_string();
        assert!(
            error.contains("unknown maintenance action \"vacuum\"") && error.contains("expire-snapshots"),
            "{error}"
        );
    }
}
