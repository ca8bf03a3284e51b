//! The life of a table's optimizing: refresh (evaluate when the table changed), commit a process
//! whose tasks all succeeded, fail or cancel a process, and the keeper that hands back tasks of
//! lost optimizers, recovers processes after a restart and keeps every table out of stuck states.

use std::sync::Arc;

use loch_meta::{RuntimeRecord, TaskRecord, now_ms};

use crate::error::{OptimizingError, Result};
use crate::evaluator::{Evaluation, LastOptimized, evaluate};
use crate::process::{OPTIMIZING, ProcessKind};
use crate::record::{Processes, Summary, TableProcess};
use crate::service::{OptimizingService, PendingInput};
use crate::status::{ProcessStatus, TableStatus, TaskStatus, end_process, move_runtime};
use crate::table::ManagedTable;

/// Evaluates the table's current snapshot; `None` for a table without snapshots.
pub(crate) async fn evaluate_table(table: &ManagedTable, runtime: &RuntimeRecord) -> Result<Option<Evaluation>> {
    let times =
        LastOptimized { minor: runtime.last_minor_at, major: runtime.last_major_at, full: runtime.last_full_at };
    if table.is_change_store() {
        return Err(OptimizingError::Table(loch_table::TableError::Unsupported(
            "this is the change store of a keyed table; it is optimized with its base store".into(),
        )));
    }
    if let Some(keyed) = &table.keyed {
        return crate::keyed::evaluate_keyed(table, keyed, &times, now_ms()).await;
    }
    if table.record.format == loch_catalog::keyed::FORMAT_MIXED_ICEBERG
        && !loch_table::mixed::properties::primary_key(table.table.metadata().properties()).is_empty()
    {
        return Err(OptimizingError::Table(loch_table::TableError::Unsupported(
            "this keyed table's change store is missing; its base store alone cannot be optimized".into(),
        )));
    }
    let Some(snapshot) = table.table.metadata().current_snapshot().cloned() else { return Ok(None) };
    let evaluation =
        evaluate(table.table.file_io().clone(), table.table.metadata_ref(), snapshot, &table.props, &times, now_ms())
            .await?;
    Ok(Some(evaluation))
}

/// How long a table may stay in `planning` before the keeper assumes its planner died.
pub(crate) const PLANNING_STALE_MS: i64 = 10 * 60 * 1000;

/// A blocked table that does not change is looked at again after this long.
const BLOCKED_RECHECK_MS: i64 = 60 * 60 * 1000;

/// The periodic safety net checks the tables in this many slices, one slice per
/// `refresh-tables.interval / REFRESH_SLICES`, so its work is spread over the interval.
pub const REFRESH_SLICES: i64 = 16;

impl OptimizingService {
    /// Evaluates a table if it changed since its last evaluation: idle → pending when it needs
    /// optimizing. Creates its runtime on first sight.
    pub async fn refresh_table(&self, table_id: i64) -> Result<()> {
        self.refresh(table_id, false).await
    }

    /// Looks at a table (`due`: because its due time came, so time-based triggers are checked
    /// even if it did not change) and remembers the pointer it looked under.
    async fn refresh(&self, table_id: i64, due: bool) -> Result<()> {
        let Some(table) = ManagedTable::load(&self.catalogs, table_id).await? else {
            self.tracker.forget(table_id);
            self.tracker.set_due(table_id, None);
            self.lock_switches().remove(&table_id);
            return Ok(());
        };
        if table.is_change_store() {
            // A keyed table is looked at through its base store, which reads both stores.
            let location = table.table.metadata_location().unwrap_or_default().to_string();
            let base_name = table.name.name.strip_suffix(loch_catalog::keyed::CHANGE_SUFFIX).unwrap_or_default();
            let base = self.store.get_table(table.catalog.record.id, &table.name.namespace, base_name).await?;
            if let Some(base) = base {
                Box::pin(self.refresh(base.id, due)).await?;
            }
            self.tracker.looked(table_id, &location, table.catalog.record.updated_at);
            return Ok(());
        }
        let props = crate::properties::merge(&table.catalog.record.properties, table.table.metadata().properties());
        self.lock_switches().insert(table_id, crate::maintenance::switched_on(&props));
        let location = table.table.metadata_location().unwrap_or_default().to_string();
        let catalog_updated_at = table.catalog.record.updated_at;
        let outcome = self.refresh_loaded(&table, due).await;
        match outcome {
            Ok(true) => self.tracker.looked(table_id, &location, catalog_updated_at),
            Ok(false) | Err(_) => self.tracker.forget(table_id),
        }
        outcome.map(|_| ())
    }

    /// The look itself; true when it was complete (the table was idle, so nothing but a change
    /// or its due time can give it work).
    async fn refresh_loaded(&self, table: &ManagedTable, due: bool) -> Result<bool> {
        let table_id = table.record.id;
        let group = table.props.group.clone();
        let mut runtime = self.store.ensure_runtime(table_id, &group, TableStatus::Idle.as_str()).await?;
        if runtime.status != TableStatus::Idle.as_str() {
            return Ok(false);
        }
        if runtime.group_name != group
            && self.store.get_group(&group).await?.is_some()
            && let Some(moved) =
                move_runtime(&self.store, &runtime, TableStatus::Idle, |r| r.group_name = group.clone()).await?
        {
            runtime = moved;
        }
        let now = now_ms();
        let current = table.state();
        let block_expired = runtime.blocked.is_some() && now - runtime.status_since > BLOCKED_RECHECK_MS;
        let time_due = due && runtime.due_at.is_some_and(|at| at <= now);
        if !table.props.enabled
            || current.is_none()
            || (current == runtime.last_evaluated_snapshot && !block_expired && !time_due)
        {
            self.tracker.set_due(table_id, runtime.due_at.filter(|at| *at > now));
            return Ok(true);
        }
        let started = std::time::Instant::now();
        let evaluation = match evaluate_table(table, &runtime).await {
            Ok(Some(evaluation)) => {
                let elapsed_ms = started.elapsed().as_millis() as u64;
                tracing::debug!(table = %table.display_name(), elapsed_ms, "table evaluated");
                evaluation
            }
            Ok(None) => return Ok(true),
            Err(e) => match e.unsupported() {
                Some(reason) => {
                    self.block(&table.display_name(), &runtime, current, reason).await?;
                    return Ok(true);
                }
                None => return Err(e),
            },
        };
        let evaluated = |r: &mut RuntimeRecord| {
            r.blocked = None;
            r.summary = Some(evaluation.summary().to_string());
            r.due_at = evaluation.next_due_ms;
        };
        let pending = evaluation.pending_input();
        metrics::gauge!("loch_optimizing_pending_files", "table" => table.display_name())
            .set(pending.as_ref().and_then(|p| p["files"].as_f64()).unwrap_or(0.0));
        match (evaluation.optimizing_type(), pending) {
            (Some(kind), Some(pending)) if self.store.get_group(&runtime.group_name).await?.is_some() => {
                let input = PendingInput {
                    kind: kind.as_str().into(),
                    partitions: evaluation.pending.len(),
                    files: pending["files"].as_u64().unwrap_or(0),
                    bytes: pending["bytes"].as_u64().unwrap_or(0),
                    quota: table.props.quota,
                    min_plan_interval_ms: table.props.min_plan_interval_ms,
                };
                let pending = |r: &mut RuntimeRecord| {
                    evaluated(r);
                    r.pending_input = serde_json::to_string(&input).ok();
                };
                if move_runtime(&self.store, &runtime, TableStatus::Pending, pending).await?.is_some() {
                    tracing::debug!(table = %table.display_name(), kind = kind.as_str(), "table needs optimizing");
                    self.tracker.set_due(table_id, None);
                    self.wake(&runtime.group_name);
                }
                Ok(false)
            }
            (Some(_), _) => {
                tracing::warn!(table = %table.display_name(), group = %runtime.group_name, "table needs optimizing but its optimizer group does not exist");
                Ok(false)
            }
            _ => {
                let idle = |r: &mut RuntimeRecord| {
                    evaluated(r);
                    r.last_evaluated_snapshot = Some(evaluation.state);
                    r.pending_input = None;
                };
                if let Some(next) = move_runtime(&self.store, &runtime, TableStatus::Idle, idle).await? {
                    self.tracker.set_due(table_id, next.due_at);
                }
                Ok(true)
            }
        }
    }

    /// Marks an idle table as skipped for `reason` until it changes (or an hour passes): it is
    /// not evaluated, planned or retried meanwhile, and the reason shows in the management API.
    pub(crate) async fn block(
        &self,
        table: &str,
        runtime: &RuntimeRecord,
        snapshot: Option<i64>,
        reason: &str,
    ) -> Result<()> {
        if runtime.blocked.as_deref() != Some(reason) {
            tracing::warn!(%table, %reason, "self-optimizing skips the table until it changes");
            metrics::counter!("loch_optimizing_blocked_total").increment(1);
        }
        let now = now_ms();
        let block = |r: &mut RuntimeRecord| {
            r.blocked = Some(reason.to_string());
            r.last_evaluated_snapshot = snapshot;
            r.pending_input = None;
            // The block's time: it is looked at again an hour later.
            r.status_since = now;
            r.due_at = Some(now + BLOCKED_RECHECK_MS);
        };
        if let Some(blocked) = move_runtime(&self.store, runtime, TableStatus::Idle, block).await? {
            self.tracker.set_due(runtime.table_id, blocked.due_at);
        }
        Ok(())
    }

    /// Looks at every table whose pointer moved since its last look (all of them after a
    /// restart). The refresh loop does the same one slice at a time.
    pub async fn refresh_all(&self) -> Result<()> {
        for slice in 0..REFRESH_SLICES {
            self.refresh_slice(slice).await?;
        }
        Ok(())
    }

    /// The periodic safety net for one slice of the tables (ids modulo [`REFRESH_SLICES`]): one
    /// query of pointers, and a look only at tables whose pointer moved without an announcement
    /// (another server, a restart, a lost event).
    pub(crate) async fn refresh_slice(&self, slice: i64) -> Result<()> {
        let pointers = self.store.table_pointers(REFRESH_SLICES, slice).await?;
        // Tables dropped since are forgotten.
        let live: std::collections::HashSet<i64> = pointers.iter().map(|p| p.id).collect();
        self.tracker.retain(|id| id.rem_euclid(REFRESH_SLICES) != slice || live.contains(&id));
        for pointer in pointers {
            if self.tracker.unchanged(&pointer) {
                continue;
            }
            if let Err(e) = self.refresh(pointer.id, false).await {
                tracing::warn!(table_id = pointer.id, error = %e, "table refresh failed");
            }
        }
        Ok(())
    }

    /// Looks at the tables whose due time came.
    pub(crate) async fn refresh_due(&self) {
        for id in self.tracker.take_due(now_ms()) {
            if let Err(e) = self.refresh(id, true).await {
                tracing::warn!(table_id = id, error = %e, "table refresh failed");
            }
        }
    }

    /// After a task succeeded: commit when every task of the process has.
    pub(crate) async fn after_task_success(self: &Arc<Self>, process_id: i64) {
        match self.store.list_tasks(process_id).await {
            Ok(tasks) if all_succeeded(&tasks) => {
                let service = self.clone();
                tokio::spawn(async move { service.commit_process(process_id).await });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(process_id, error = %e, "cannot check the process's tasks"),
        }
    }

    /// Commits a process whose tasks all succeeded; failures fail the process.
    pub async fn commit_process(&self, process_id: i64) {
        if !self.committing.lock().unwrap_or_else(|e| e.into_inner()).insert(process_id) {
            return;
        }
        if let Err(e) = self.commit_process_locked(process_id).await {
            tracing::error!(process_id, error = %e, "committing the process failed");
        }
        self.committing.lock().unwrap_or_else(|e| e.into_inner()).remove(&process_id);
    }

    async fn commit_process_locked(&self, process_id: i64) -> Result<()> {
        let Some(process) = Processes(&self.store).get(process_id).await? else { return Ok(()) };
        if process.status != ProcessStatus::Running {
            return Ok(());
        }
        let Some(runtime) = self.store.get_runtime(process.table_id).await? else { return Ok(()) };
        let runtime = match move_runtime(&self.store, &runtime, TableStatus::Committing, |_| {}).await? {
            Some(committing) => committing,
            None => return Ok(()),
        };
        let tasks = self.store.list_tasks(process_id).await?;
        let kind = OPTIMIZING;
        match kind.commit(&self.catalogs, &process, &tasks).await {
            Ok(snapshot_id) => {
                let summarize = |p: &mut TableProcess| {
                    if let Summary::Optimizing(s) = &mut p.summary {
                        s.committed_snapshot_id = Some(snapshot_id);
                        s.output_files = tasks.iter().map(|t| t.output_files).sum();
                        s.output_bytes = tasks.iter().map(|t| t.output_bytes).sum();
                    }
                };
                let at = now_ms();
                let idle = |r: &mut RuntimeRecord| {
                    r.process_id = None;
                    r.last_evaluated_snapshot = None;
                    r.due_at = None;
                    kind.finished(process.action, r, at);
                };
                let success = ProcessStatus::Success;
                end_process(&self.store, &process, success, summarize, &runtime, TableStatus::Idle, idle).await?;
                let process_type = process.action.type_name();
                metrics::counter!("loch_optimizing_processes_total", "type" => process_type, "result" => success.as_str())
                    .increment(1);
                tracing::info!(
                    process_id,
                    table_id = process.table_id,
                    kind = kind.name(),
                    r#type = process.action.type_name(),
                    snapshot = snapshot_id,
                    "process committed"
                );
                // Look at the table again: it may need more (a bounded plan left work behind).
                if let Err(e) = self.refresh_table(process.table_id).await {
                    tracing::warn!(table_id = process.table_id, error = %e, "refresh after commit failed");
                }
                Ok(())
            }
            Err(e) => {
                let message = format!("commit failed: {e}");
                tracing::warn!(process_id, table_id = process.table_id, %message, "process failed");
                self.fail_process(process_id, &message, false).await
            }
        }
    }

    /// Ends a running process as failed (or closed, when canceled) and frees its table.
    pub(crate) async fn fail_process(&self, process_id: i64, message: &str, closed: bool) -> Result<()> {
        let Some(process) = Processes(&self.store).get(process_id).await? else { return Ok(()) };
        if process.status != ProcessStatus::Running {
            return Ok(());
        }
        let status = if closed { ProcessStatus::Closed } else { ProcessStatus::Failed };
        let failed = |p: &mut TableProcess| p.fail_message = Some(message.to_string());
        let runtime = self.store.get_runtime(process.table_id).await?;
        match runtime {
            Some(runtime) if runtime.process_id == Some(process_id) => {
                let due = (!closed).then(|| now_ms() + BLOCKED_RECHECK_MS);
                let idle = |r: &mut RuntimeRecord| {
                    r.process_id = None;
                    r.last_evaluated_snapshot = None;
                    if !closed {
                        // Not again on the same files: the table waits until it changes (or an hour).
                        r.last_evaluated_snapshot = process.target_snapshot_id;
                        r.blocked = Some(format!("the last optimizing process ({process_id}) failed: {message}"));
                        r.due_at = due;
                    }
                };
                end_process(&self.store, &process, status, failed, &runtime, TableStatus::Idle, idle).await?;
                if !closed {
                    metrics::counter!("loch_optimizing_blocked_total").increment(1);
                    self.tracker.set_due(process.table_id, due);
                }
            }
            _ => {
                // The runtime no longer points at the process: end it alone (the runtime stays).
                let current = self.store.get_runtime(process.table_id).await?;
                if let Some(current) = current {
                    let stay = TableStatus::parse(&current.status)?;
                    end_process(&self.store, &process, status, failed, &current, stay, |_| {}).await?;
                }
            }
        }
        let process_type = process.action.type_name();
        metrics::counter!("loch_optimizing_processes_total", "type" => process_type, "result" => status.as_str())
            .increment(1);
        // Look at the table again now rather than at the next refresh; the minimum plan
        // interval still spaces out attempts.
        if let Err(e) = self.refresh_table(process.table_id).await {
            tracing::warn!(table_id = process.table_id, error = %e, "refresh after a failed process failed");
        }
        Ok(())
    }

    /// Cancels a running process of a table (its tasks are canceled; output already written
    /// becomes orphan files for cleanup).
    pub async fn cancel_process(&self, table_id: i64, process_id: i64) -> Result<TableProcess> {
        let process = self.process(table_id, process_id).await?;
        if process.status != ProcessStatus::Running {
            return Err(OptimizingError::Rejected(format!(
                "process {process_id} is {}, not running",
                process.status.as_str()
            )));
        }
        if self.committing.lock().unwrap_or_else(|e| e.into_inner()).contains(&process_id) {
            return Err(OptimizingError::Rejected(format!("process {process_id} is committing")));
        }
        self.fail_process(process_id, "canceled by request", true).await?;
        self.process(table_id, process_id).await
    }
}

/// True when a process has tasks and every one of them succeeded.
pub(crate) fn all_succeeded(tasks: &[TaskRecord]) -> bool {
    !tasks.is_empty() && tasks.iter().all(|t| t.status == TaskStatus::Success.as_str())
}
