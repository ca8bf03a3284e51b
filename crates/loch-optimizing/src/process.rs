//! The process framework: a process is background work on one table, planned into tasks that
//! optimizer threads execute, then committed as one change. The generic part — table and task
//! states, claiming, retries, quotas, failing, canceling, recovery — lives in the scheduler,
//! lifecycle and keeper; what a kind of process does lives behind [`ProcessKind`]. Optimizing
//! (minor, major, full) is the kind planned into tasks. Maintenance actions are processes of
//! kind `maintenance` in the same records, states and API, run inside the server by the
//! maintenance runner (`maintenance::runner`) rather than planned into tasks.

use std::future::Future;

use loch_api::optimizer::{TaskInput, TaskOutput};
use loch_catalog::CatalogService;
use loch_meta::{RuntimeRecord, TaskRecord};

use crate::committer::{ProcessOutput, commit_rewrite};
use crate::error::{OptimizingError, Result};
use crate::evaluator::OptimizingType;
use crate::lifecycle::evaluate_table;
use crate::plan::plan_process;
use crate::record::{ProcessAction, ProcessSummary, TableProcess};
use crate::status::TableStatus;
use crate::table::ManagedTable;
use crate::task::input_size;

/// A process a kind planned, for the scheduler to record and hand out.
#[derive(Debug)]
pub(crate) struct PlannedProcess {
    /// What it does.
    pub action: ProcessAction,
    /// The table's status while it runs.
    pub running: TableStatus,
    /// The snapshot it was planned on.
    pub target_snapshot_id: Option<i64>,
    /// Its tasks: what each works on (for display) and its input.
    pub tasks: Vec<(String, TaskInput)>,
    /// Its summary so far.
    pub summary: ProcessSummary,
}

/// What planning found.
#[derive(Debug)]
pub(crate) enum Planned {
    /// A process to run.
    Process(PlannedProcess),
    /// Nothing worth doing: the table goes idle, remembering what it looked at.
    Nothing {
        /// The snapshot looked at.
        evaluated_snapshot: Option<i64>,
        /// When time alone could give it work.
        due_at: Option<i64>,
    },
    /// The table is as Loch cannot process it: it is skipped (no process, no retries).
    Blocked {
        /// The snapshot looked at.
        snapshot: Option<i64>,
        /// Why.
        reason: String,
    },
}

/// A kind of process: how it is planned into tasks and how their outputs are committed.
pub(crate) trait ProcessKind: Send + Sync {
    /// Its name (`processes.kind`).
    fn name(&self) -> &'static str;

    /// Plans a process on `table`, whose runtime is `runtime`, reading at most `budget` input
    /// bytes into its tasks.
    fn plan(
        &self,
        table: &ManagedTable,
        runtime: &RuntimeRecord,
        budget: u64,
    ) -> impl Future<Output = Result<Planned>> + Send;

    /// Commits a process whose tasks all succeeded; the new snapshot's id.
    fn commit(
        &self,
        catalogs: &CatalogService,
        process: &TableProcess,
        tasks: &[TaskRecord],
    ) -> impl Future<Output = Result<i64>> + Send;

    /// Records on the runtime that a process doing `action` ended successfully at `at`.
    fn finished(&self, action: ProcessAction, runtime: &mut RuntimeRecord, at: i64);
}

/// Self-optimizing: minor, major and full rewrites of a table's files (Amoro's semantics).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Optimizing;

/// The optimizing kind, as the scheduler and lifecycle use it.
pub(crate) const OPTIMIZING: Optimizing = Optimizing;

impl ProcessKind for Optimizing {
    fn name(&self) -> &'static str {
        "optimizing"
    }

    async fn plan(&self, table: &ManagedTable, runtime: &RuntimeRecord, budget: u64) -> Result<Planned> {
        let blocked = |snapshot: Option<i64>, e: OptimizingError| match e.unsupported() {
            Some(reason) => Ok(Planned::Blocked { snapshot, reason: reason.to_string() }),
            None => Err(e),
        };
        let evaluation = match evaluate_table(table, runtime).await {
            Ok(evaluation) => evaluation,
            Err(e) => return blocked(table.state(), e),
        };
        let evaluation = match evaluation {
            Some(evaluation) if evaluation.optimizing_type().is_some() => evaluation,
            other => {
                return Ok(Planned::Nothing {
                    evaluated_snapshot: other.as_ref().map(|e| e.state),
                    due_at: other.as_ref().and_then(|e| e.next_due_ms),
                });
            }
        };
        let planned = match &table.keyed {
            Some(keyed) => crate::keyed::plan_keyed(table, keyed, &evaluation, budget).await,
            None => plan_process(table, &evaluation, budget).await,
        };
        let plan = match planned {
            Ok(Some(plan)) => plan,
            Ok(None) => return Ok(Planned::Nothing { evaluated_snapshot: Some(evaluation.state), due_at: None }),
            Err(e) => return blocked(Some(evaluation.state), e),
        };
        let mut summary = ProcessSummary {
            quota: table.props.quota,
            retries: table.props.execute_retries,
            tasks: plan.tasks.len(),
            keyed: table.keyed.is_some(),
            ..Default::default()
        };
        for (_, input) in &plan.tasks {
            let (files, bytes) = input_size(input);
            summary.input_files += files;
            summary.input_bytes += bytes;
            if let Some(keyed) = &input.keyed {
                let (files, bytes) = crate::task::files_size(&keyed.change);
                summary.change_input_files += files;
                summary.change_input_bytes += bytes;
            }
        }
        Ok(Planned::Process(PlannedProcess {
            action: ProcessAction::Optimizing(plan.kind),
            running: TableStatus::optimizing(plan.kind),
            // A keyed table's base store may have no snapshot yet.
            target_snapshot_id: Some(plan.snapshot_id).filter(|id| table.keyed.is_none() || *id != 0),
            tasks: plan.tasks,
            summary,
        }))
    }

    async fn commit(&self, catalogs: &CatalogService, process: &TableProcess, tasks: &[TaskRecord]) -> Result<i64> {
        let mut results: Vec<(TaskInput, TaskOutput)> = Vec::with_capacity(tasks.len());
        for task in tasks {
            let input =
                serde_json::from_str(&task.input).map_err(|e| OptimizingError::Corrupt(format!("task input: {e}")))?;
            let output = task
                .output
                .as_deref()
                .ok_or_else(|| OptimizingError::Corrupt(format!("task {} has no output", task.task_id)))?;
            let output =
                serde_json::from_str(output).map_err(|e| OptimizingError::Corrupt(format!("task output: {e}")))?;
            results.push((input, output));
        }
        let ProcessAction::Optimizing(kind) = process.action else {
            return Err(OptimizingError::Corrupt(format!("process {} is not an optimizing process", process.id)));
        };
        let keyed = results.first().is_some_and(|(input, _)| input.keyed.is_some());
        let target = process.target_snapshot_id;
        if target.is_none() && !keyed {
            return Err(OptimizingError::Corrupt("process without target snapshot".into()));
        }
        let output = ProcessOutput {
            table_id: process.table_id,
            process_id: process.id,
            kind,
            target_snapshot: target.unwrap_or_default(),
            results: &results,
        };
        let committed = match keyed {
            true => crate::committer::commit_keyed(catalogs, output, target).await?,
            false => commit_rewrite(catalogs, output).await?,
        };
        if keyed {
            // Tidying the change store's metadata is no part of the process: a failure waits
            // for the next fold.
            if let Err(e) = crate::keyed::merge_folded_change_manifests(catalogs, process.table_id).await {
                tracing::warn!(table_id = process.table_id, error = %e, "cannot merge the change store's folded manifests");
            }
        }
        Ok(committed.snapshot_id)
    }

    fn finished(&self, action: ProcessAction, runtime: &mut RuntimeRecord, at: i64) {
        match action {
            ProcessAction::Optimizing(OptimizingType::Minor) => runtime.last_minor_at = Some(at),
            ProcessAction::Optimizing(OptimizingType::Major) => runtime.last_major_at = Some(at),
            ProcessAction::Optimizing(OptimizingType::Full) => runtime.last_full_at = Some(at),
            ProcessAction::Maintenance(_) => {}
        }
    }
}
