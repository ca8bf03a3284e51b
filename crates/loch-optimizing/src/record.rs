//! The typed process record: what a process does, its status and its summary. The store keeps
//! a process as a row of names and a JSON summary; this module is the one place that row is read
//! into types and written back, so the rest of self-optimizing never handles the strings.

use loch_meta::{MetaStore, NewProcess, ProcessRecord};
use serde::{Deserialize, Serialize};

use crate::error::{OptimizingError, Result};
use crate::evaluator::OptimizingType;
use crate::maintenance::{MaintenanceAction, MaintenanceSummary};
use crate::status::ProcessStatus;

/// Stored kind of optimizing processes.
pub const KIND_OPTIMIZING: &str = "optimizing";
/// Stored kind of maintenance runs.
pub const KIND_MAINTENANCE: &str = "maintenance";

/// What a process does (`processes.kind` with `processes.process_type`). Maintenance actions
/// join optimizing here as they become process kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessAction {
    /// Rewrites of a table's files, of one optimizing type.
    Optimizing(OptimizingType),
    /// A maintenance action, run inside the server.
    Maintenance(MaintenanceAction),
}

impl ProcessAction {
    /// The stored kind.
    pub fn kind(self) -> &'static str {
        match self {
            ProcessAction::Optimizing(_) => KIND_OPTIMIZING,
            ProcessAction::Maintenance(_) => KIND_MAINTENANCE,
        }
    }

    /// The stored type within the kind.
    pub fn type_name(self) -> &'static str {
        match self {
            ProcessAction::Optimizing(t) => t.as_str(),
            ProcessAction::Maintenance(a) => a.as_str(),
        }
    }

    /// Parses a stored kind and type.
    pub fn parse(kind: &str, process_type: &str) -> Result<Self> {
        let corrupt = || OptimizingError::Corrupt(format!("process kind {kind:?} of type {process_type:?}"));
        match kind {
            KIND_OPTIMIZING => OptimizingType::parse(process_type).map(ProcessAction::Optimizing).ok_or_else(corrupt),
            KIND_MAINTENANCE => {
                MaintenanceAction::parse(process_type).map(ProcessAction::Maintenance).map_err(|_| corrupt())
            }
            _ => Err(corrupt()),
        }
    }
}

/// Statistics kept on a process (stored as JSON in `processes.summary`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessSummary {
    /// The table's quota when planned.
    pub quota: f64,
    /// Retries allowed per task.
    pub retries: u32,
    /// Tasks.
    pub tasks: usize,
    /// Input files (data and delete).
    pub input_files: i64,
    /// Input bytes.
    pub input_bytes: i64,
    /// Keyed tables: input files of the change store (included in `input_files`).
    #[serde(default)]
    pub change_input_files: i64,
    /// Keyed tables: input bytes of the change store (included in `input_bytes`).
    #[serde(default)]
    pub change_input_bytes: i64,
    /// True for a process of a keyed table (outputs go to its base store).
    #[serde(default)]
    pub keyed: bool,
    /// Files written.
    pub output_files: i64,
    /// Bytes written.
    pub output_bytes: i64,
    /// The snapshot the commit produced.
    pub committed_snapshot_id: Option<i64>,
}

/// A process on one table, typed (Amoro's `TableProcess`).
#[derive(Debug, Clone, PartialEq)]
pub struct TableProcess {
    /// Process id.
    pub id: i64,
    /// The table it works on.
    pub table_id: i64,
    /// What it does.
    pub action: ProcessAction,
    /// Where it is.
    pub status: ProcessStatus,
    /// The optimizer group running its tasks.
    pub group_name: String,
    /// The snapshot it was planned on.
    pub target_snapshot_id: Option<i64>,
    /// Creation time (ms since epoch).
    pub created_at: i64,
    /// End time.
    pub finished_at: Option<i64>,
    /// Why it failed or was closed.
    pub fail_message: Option<String>,
    /// Its statistics.
    pub summary: Summary,
}

/// A process's statistics, by what it does.
#[derive(Debug, Clone, PartialEq)]
pub enum Summary {
    /// An optimizing process's.
    Optimizing(ProcessSummary),
    /// A maintenance run's.
    Maintenance(MaintenanceSummary),
}

impl Summary {
    /// An empty summary for `action`.
    pub fn empty(action: ProcessAction) -> Self {
        match action {
            ProcessAction::Optimizing(_) => Summary::Optimizing(ProcessSummary::default()),
            ProcessAction::Maintenance(_) => Summary::Maintenance(MaintenanceSummary::default()),
        }
    }

    fn parse(action: ProcessAction, json: &str) -> serde_json::Result<Self> {
        Ok(match action {
            ProcessAction::Optimizing(_) => Summary::Optimizing(serde_json::from_str(json)?),
            ProcessAction::Maintenance(_) => Summary::Maintenance(serde_json::from_str(json)?),
        })
    }

    fn to_json(&self) -> Result<String> {
        match self {
            Summary::Optimizing(s) => serde_json::to_string(s),
            Summary::Maintenance(s) => serde_json::to_string(s),
        }
        .map_err(|e| OptimizingError::Corrupt(format!("process summary: {e}")))
    }
}

impl TryFrom<ProcessRecord> for TableProcess {
    type Error = OptimizingError;

    fn try_from(row: ProcessRecord) -> Result<Self> {
        let action = ProcessAction::parse(&row.kind, &row.process_type)?;
        // A summary that cannot be read loses statistics, not the process: it reads as empty.
        let summary = Summary::parse(action, &row.summary).unwrap_or_else(|e| {
            tracing::warn!(process = row.id, error = %e, "unreadable process summary");
            Summary::empty(action)
        });
        Ok(Self {
            id: row.id,
            table_id: row.table_id,
            action,
            status: ProcessStatus::parse(&row.status)?,
            group_name: row.group_name,
            target_snapshot_id: row.target_snapshot_id,
            created_at: row.created_at,
            finished_at: row.finished_at,
            fail_message: row.fail_message,
            summary,
        })
    }
}

impl TableProcess {
    /// The row that stores it.
    pub(crate) fn to_row(&self) -> Result<ProcessRecord> {
        Ok(ProcessRecord {
            id: self.id,
            table_id: self.table_id,
            kind: self.action.kind().into(),
            process_type: self.action.type_name().into(),
            status: self.status.as_str().into(),
            group_name: self.group_name.clone(),
            target_snapshot_id: self.target_snapshot_id,
            created_at: self.created_at,
            finished_at: self.finished_at,
            fail_message: self.fail_message.clone(),
            summary: self.summary.to_json()?,
        })
    }

    /// Its optimizing statistics (empty for a maintenance run).
    pub fn optimizing(&self) -> ProcessSummary {
        match &self.summary {
            Summary::Optimizing(s) => s.clone(),
            Summary::Maintenance(_) => ProcessSummary::default(),
        }
    }

    /// The row of a new running process (the store assigns its id and times).
    pub(crate) fn new_row(
        table_id: i64,
        action: ProcessAction,
        group_name: &str,
        target_snapshot_id: Option<i64>,
        summary: &Summary,
    ) -> Result<NewProcess> {
        Ok(NewProcess {
            table_id,
            kind: action.kind().into(),
            process_type: action.type_name().into(),
            status: ProcessStatus::Running.as_str().into(),
            group_name: group_name.to_string(),
            target_snapshot_id,
            summary: summary.to_json()?,
        })
    }
}

/// Reads processes from the store, typed.
pub(crate) struct Processes<'a>(pub &'a MetaStore);

impl Processes<'_> {
    /// One process.
    pub async fn get(&self, id: i64) -> Result<Option<TableProcess>> {
        self.0.get_process(id).await?.map(TableProcess::try_from).transpose()
    }

    /// Every running process.
    pub async fn running(&self) -> Result<Vec<TableProcess>> {
        self.0.running_processes().await?.into_iter().map(TableProcess::try_from).collect()
    }

    /// A table's latest processes of `kind`, newest first, after skipping `offset`.
    pub async fn of_table(&self, table_id: i64, kind: &str, limit: i64, offset: i64) -> Result<Vec<TableProcess>> {
        let rows = self.0.list_processes_of_kind(table_id, kind, limit, offset).await?;
        rows.into_iter().map(TableProcess::try_from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_reads_back_from_its_row() {
        let process = TableProcess {
            id: 7,
            table_id: 3,
            action: ProcessAction::Optimizing(OptimizingType::Major),
            status: ProcessStatus::Failed,
            group_name: "default".into(),
            target_snapshot_id: Some(42),
            created_at: 1,
            finished_at: Some(2),
            fail_message: Some("boom".into()),
            summary: Summary::Optimizing(ProcessSummary {
                tasks: 3,
                input_files: 9,
                committed_snapshot_id: None,
                ..Default::default()
            }),
        };
        let row = process.to_row().unwrap();
        assert_eq!((row.kind.as_str(), row.process_type.as_str()), ("optimizing", "major"));
        assert_eq!(row.status, ProcessStatus::Failed.as_str());
        assert_eq!(TableProcess::try_from(row.clone()).unwrap(), process);

        let unknown = ProcessRecord { kind: "expire-snapshots".into(), ..row.clone() };
        assert!(matches!(TableProcess::try_from(unknown), Err(OptimizingError::Corrupt(_))));
        let garbled = ProcessRecord { summary: "{not json".into(), ..row };
        assert_eq!(TableProcess::try_from(garbled).unwrap().summary, Summary::Optimizing(ProcessSummary::default()));

        let run = TableProcess {
            action: ProcessAction::Maintenance(MaintenanceAction::ExpireSnapshots),
            summary: Summary::Maintenance(MaintenanceSummary { snapshots_expired: 4, ..Default::default() }),
            ..process
        };
        let row = run.to_row().unwrap();
        assert_eq!((row.kind.as_str(), row.process_type.as_str()), ("maintenance", "expire-snapshots"));
        assert_eq!(TableProcess::try_from(row).unwrap(), run);
    }
}
