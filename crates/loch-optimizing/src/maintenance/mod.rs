//! Table maintenance beyond compaction (Amoro's actions, names and defaults): snapshot expiry
//! dangling-delete and orphan cleaning, data expiration, automatic tags. Each action
//! reads its table properties (`properties`), works on one table under its commit lock, commits
//! through the catalog's commit path and deletes only inside the table's location.

pub mod change_ttl;
pub mod dangling;
pub mod data_expire;
pub mod duration;
pub mod expire;
pub mod orphans;
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
    /// Rows data expiration removed (whole files and rows given position deletes).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub rows_expired: u64,
    /// Empty directories removed (orphan cleaning of a local table).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dirs_removed: usize,
    /// Change files of a keyed table removed by its change-data TTL (this expiry run's first step).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub change_files_expired: usize,
    /// The tag an `auto-create-tags` run made (or in a dry run would make).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_created: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// How a run asked for by a user differs from a scheduled one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Report what the run would do and change nothing (nor record a run).
    pub dry_run: bool,
    /// `expire-snapshots` only (`EXPIRE SNAPSHOTS t RETAIN n`): keep the `n` newest snapshots
    /// of each branch and expire every older one, whatever the table's keep duration.
    pub retain_last: Option<usize>,
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

    /// True when the action is on for a table that sets none of its properties.
    pub fn on_by_default(self) -> bool {
        matches!(self, MaintenanceAction::ExpireSnapshots | MaintenanceAction::CleanDanglingDeleteFiles)
    }

    /// Parses a name; a 400 naming the known actions for anything else.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
            OptimizingError::Invalid(format!("unknown maintenance action {name:?}; known: {}", known.join(", ")))
        })
    }
}

/// The actions a table's (merged) properties switch on. A switch that does not parse counts as
/// on, so that the action's run reports the bad value instead of the table going quiet.
pub fn switched_on(props: &std::collections::HashMap<&str, &str>) -> Vec<MaintenanceAction> {
    let flag = |key: &str, default: bool| match props.get(key).map(|v| v.to_ascii_lowercase()) {
        Some(v) if v == "false" => false,
        Some(v) if v == "true" => true,
        Some(_) => true,
        None => default,
    };
    let gc = flag("gc.enabled", true);
    MaintenanceAction::ALL
        .into_iter()
        .filter(|action| match action {
            MaintenanceAction::ExpireSnapshots => gc && flag("table-expire.enabled", true),
            MaintenanceAction::CleanOrphanFiles => gc && flag("clean-orphan-file.enabled", false),
            MaintenanceAction::CleanDanglingDeleteFiles => gc && flag("clean-dangling-delete-files.enabled", true),
            MaintenanceAction::ExpireData => gc && flag("data-expire.enabled", false),
            MaintenanceAction::AutoCreateTags => flag("tag.auto-create.enabled", false),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_follow_amoro_s_defaults_and_gc() {
        let on = |pairs: &[(&str, &str)]| switched_on(&pairs.iter().copied().collect());
        let defaults: Vec<_> = MaintenanceAction::ALL.into_iter().filter(|a| a.on_by_default()).collect();
        assert_eq!(on(&[]), defaults);
        assert_eq!(
            on(&[("gc.enabled", "false"), ("tag.auto-create.enabled", "true"), ("clean-orphan-file.enabled", "true")]),
            vec![MaintenanceAction::AutoCreateTags]
        );
        assert!(
            on(&[("data-expire.enabled", "yes")]).contains(&MaintenanceAction::ExpireData),
            "reported, not ignored"
        );
    }

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
