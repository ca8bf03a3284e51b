//! The maintenance runner: each action fires per table once its interval has passed since the
//! table's last run, first runs spread over the interval (so thousands of tables do not fire
//! at once), a few at a time. Every run is a process of kind `maintenance`: recorded when it
//! starts, ended with its summary or its reason for failing, retried up to three times, and
//! finished after a restart when only its deletion was left.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use loch_meta::now_ms;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::error::{OptimizingError, Result};
use crate::maintenance::dangling::clean_dangling_deletes;
use crate::maintenance::data_expire::expire_data;
use crate::maintenance::expire::{Expired, delete_expired, expire_snapshots_retaining};
use crate::maintenance::orphans::clean_orphan_files;
use crate::maintenance::tags::auto_create_tags;
use crate::maintenance::{MaintenanceAction, MaintenanceSummary, RunOptions};
use crate::record::{KIND_MAINTENANCE, ProcessAction, Processes, Summary, TableProcess};
use crate::service::OptimizingService;
use crate::status::ProcessStatus;
use crate::table::ManagedTable;

/// The actions built so far.
const AVAILABLE: [MaintenanceAction; 5] = MaintenanceAction::ALL;

/// Attempts of a failing run before the table waits for the next interval.
const ATTEMPTS: u32 = 3;
/// Wait before retrying a failed run.
const RETRY_WAIT_MS: i64 = 60_000;
/// Group name recorded on maintenance runs (they run inside the server, not on optimizers).
const LOCAL: &str = "local";

/// Server-side settings of maintenance (Amoro's process-factory intervals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceConfig {
    /// How often each action runs per table (`expire-snapshots` 1 h, `clean-orphan-files` 1 d,
    /// `clean-dangling-delete-files` 1 d, `expire-data` 1 d, `auto-create-tags` 1 min); an
    /// action left out runs only on request.
    pub intervals: Vec<(MaintenanceAction, Duration)>,
    /// Runs at once (2).
    pub threads: usize,
    /// How often the runner looks for due tables (30 s).
    pub tick: Duration,
    /// Test hook: a pause after each batch of deletions (so a test can stop the server midway).
    pub test_delete_pause: Option<Duration>,
    /// The least age of a file orphan cleaning deletes, whatever a table's
    /// `clean-orphan-file.min-existing-time-minutes` says (1 h): long jobs commit files written
    /// hours before, and a table set to `0` would lose them.
    pub orphan_min_age_floor: Duration,
}

impl MaintenanceConfig {
    /// Amoro's default interval of each action.
    pub fn default_interval(action: MaintenanceAction) -> Duration {
        match action {
            MaintenanceAction::ExpireSnapshots => Duration::from_secs(3600),
            MaintenanceAction::AutoCreateTags => Duration::from_secs(60),
            _ => Duration::from_secs(24 * 3600),
        }
    }
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            intervals: MaintenanceAction::ALL.into_iter().map(|a| (a, Self::default_interval(a))).collect(),
            threads: 2,
            tick: Duration::from_secs(30),
            test_delete_pause: None,
            orphan_min_age_floor: Duration::from_secs(3600),
        }
    }
}

impl MaintenanceConfig {
    /// The scheduled actions (those built so far) and their intervals in ms.
    fn scheduled(&self) -> Vec<(MaintenanceAction, i64)> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1);
        self.intervals
            .iter()
            .filter(|(action, interval)| AVAILABLE.contains(action) && !interval.is_zero())
            .map(|&(action, interval)| (action, ms(interval)))
            .collect()
    }
}

/// When a table's next run of an action is due, and how many attempts failed in a row.
#[derive(Debug, Clone, Copy)]
struct Due {
    at: i64,
    failures: u32,
}

impl OptimizingService {
    /// Runs maintenance `action` on table `table_id` now; with `dry_run`, reports what it would
    /// delete and changes nothing (and records no run). The action honours the table's switches
    /// and thresholds. A run is recorded as a process; its summary is returned.
    pub async fn run_maintenance(
        &self,
        table_id: i64,
        action: MaintenanceAction,
        options: RunOptions,
    ) -> Result<MaintenanceSummary> {
        if !AVAILABLE.contains(&action) {
            let available: Vec<&str> = AVAILABLE.iter().map(|a| a.as_str()).collect();
            return Err(OptimizingError::Invalid(format!(
                "maintenance action {} is not available yet; available: {}",
                action.as_str(),
                available.join(", ")
            )));
        }
        if options.retain_last.is_some() && action != MaintenanceAction::ExpireSnapshots {
            return Err(OptimizingError::Invalid(format!(
                "retain_last applies to expire-snapshots, not to {}",
                action.as_str()
            )));
        }
        if options.retain_last == Some(0) {
            return Err(OptimizingError::Invalid("retain_last must be at least 1".into()));
        }
        let started = std::time::Instant::now();
        let outcome = if options.dry_run {
            self.execute(table_id, action, options).await.map(|(summary, _)| summary)
        } else {
            self.recorded_run(table_id, action, options).await
        };
        let result = match &outcome {
            Ok(_) => ProcessStatus::Success.as_str(),
            Err(e) if e.http().is_some() => "rejected",
            Err(_) => ProcessStatus::Failed.as_str(),
        };
        metrics::counter!("loch_maintenance_runs_total", "action" => action.as_str(), "result" => result).increment(1);
        metrics::histogram!("loch_maintenance_run_duration_seconds", "action" => action.as_str())
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    /// The last run of each action of table `table_id`, or of every table.
    pub async fn last_maintenance_runs(&self, table_id: Option<i64>) -> Result<Vec<TableProcess>> {
        let rows = self.store.latest_processes(KIND_MAINTENANCE, table_id).await?;
        rows.into_iter().map(TableProcess::try_from).collect()
    }

    /// A table's maintenance runs, newest first.
    pub async fn maintenance_runs(&self, table_id: i64, limit: i64, offset: i64) -> Result<Vec<TableProcess>> {
        Processes(&self.store).of_table(table_id, KIND_MAINTENANCE, limit, offset).await
    }

    /// Runs `action` on a table as a recorded process: started, committed (its summary then
    /// names the versions before and after), files deleted, ended.
    async fn recorded_run(
        &self,
        table_id: i64,
        action: MaintenanceAction,
        options: RunOptions,
    ) -> Result<MaintenanceSummary> {
        let action_of = ProcessAction::Maintenance(action);
        let table = ManagedTable::load(&self.catalogs, table_id)
            .await?
            .ok_or_else(|| OptimizingError::NotFound(format!("table {table_id}")))?;
        if action == MaintenanceAction::ExpireSnapshots {
            self.finish_failed_deletion(table_id).await;
        }
        let snapshot = table.table.metadata().current_snapshot_id();
        let row = TableProcess::new_row(table_id, action_of, LOCAL, snapshot, &Summary::empty(action_of))?;
        let id = self.store.start_process(&row).await?;
        let Some(mut process) = Processes(&self.store).get(id).await? else {
            return Err(OptimizingError::NotFound(format!("process {id}")));
        };
        let expiry = self.execute(table_id, action, options).await;
        let outcome = match expiry {
            Ok((mut summary, Some(expired))) => {
                // Committed: record the two versions first, so a restart can finish the deletion.
                process.summary = Summary::Maintenance(summary.clone());
                self.store.update_process_summary(id, &process.to_row()?.summary).await?;
                let pause = self.config.maintenance.test_delete_pause;
                delete_expired(&expired, &mut summary, pause).await.map(|()| summary)
            }
            Ok((summary, None)) => Ok(summary),
            Err(e) => Err(e),
        };
        self.end_run(process, &outcome).await?;
        outcome
    }

    /// Runs `action` once on a table; what an expiry leaves to delete comes back with its summary.
    async fn execute(
        &self,
        table_id: i64,
        action: MaintenanceAction,
        options: RunOptions,
    ) -> Result<(MaintenanceSummary, Option<Expired>)> {
        let now = now_ms();
        let dry_run = options.dry_run;
        let alone = |summary: MaintenanceSummary| (summary, None);
        match action {
            MaintenanceAction::ExpireSnapshots => {
                let (catalogs, store) = (&self.catalogs, &self.store);
                expire_snapshots_retaining(catalogs, store, table_id, now, dry_run, options.retain_last).await
            }
            MaintenanceAction::CleanOrphanFiles => {
                let floor = self.config.maintenance.orphan_min_age_floor;
                clean_orphan_files(&self.catalogs, table_id, now, floor, dry_run).await.map(alone)
            }
            MaintenanceAction::CleanDanglingDeleteFiles => {
                clean_dangling_deletes(&self.catalogs, table_id, dry_run).await.map(alone)
            }
            MaintenanceAction::AutoCreateTags => {
                auto_create_tags(&self.catalogs, table_id, now, dry_run).await.map(alone)
            }
            MaintenanceAction::ExpireData => expire_data(&self.catalogs, table_id, now, dry_run).await.map(alone),
        }
    }

    /// Ends a maintenance run with its summary, or as failed with the error's message.
    async fn end_run(&self, mut process: TableProcess, outcome: &Result<MaintenanceSummary>) -> Result<()> {
        let from = process.status;
        let to = match outcome {
            Ok(summary) => {
                process.summary = Summary::Maintenance(summary.clone());
                ProcessStatus::Success
            }
            Err(e) => {
                process.fail_message = Some(e.to_string());
                ProcessStatus::Failed
            }
        };
        from.transition(to)?;
        process.status = to;
        process.finished_at = Some(now_ms());
        if !self.store.update_process_alone(&process.to_row()?, from.as_str()).await? {
            tracing::warn!(process = process.id, "a maintenance run changed while it ended");
        }
        Ok(())
    }

    /// After a restart: finishes the runs that committed and were deleting files, and ends as
    /// failed those that had not committed (the next run does their work).
    pub(crate) async fn recover_maintenance(&self) -> Result<()> {
        for process in Processes(&self.store).running().await? {
            let ProcessAction::Maintenance(_) = process.action else { continue };
            let resumed = self.resume_deletion(&process).await;
            let outcome = match resumed {
                Ok(Some(summary)) => Ok(summary),
                Ok(None) => Err(OptimizingError::Rejected("interrupted by a restart before it committed".into())),
                Err(e) => Err(e),
            };
            if let Err(e) = &outcome {
                tracing::warn!(process = process.id, table_id = process.table_id, error = %e, "maintenance run ended after a restart");
            } else {
                tracing::info!(
                    process = process.id,
                    table_id = process.table_id,
                    "maintenance run finished after a restart"
                );
            }
            self.end_run(process, &outcome).await?;
        }
        Ok(())
    }

    /// The last expiry of a table committed but failed while deleting (storage refused a file):
    /// its retry finishes that deletion first, so its files do not leak.
    async fn finish_failed_deletion(&self, table_id: i64) {
        let expiry = ProcessAction::Maintenance(MaintenanceAction::ExpireSnapshots);
        let runs = match self.last_maintenance_runs(Some(table_id)).await {
            Ok(runs) => runs,
            Err(e) => {
                tracing::warn!(table_id, error = %e, "cannot read the last expiry");
                return;
            }
        };
        for run in runs.iter().filter(|r| r.action == expiry && r.status == ProcessStatus::Failed) {
            match self.resume_deletion(run).await {
                Ok(Some(summary)) => tracing::info!(
                    process = run.id,
                    table_id,
                    files = summary.content_files + summary.metadata_files,
                    "finished the deletion a failed expiry left"
                ),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(process = run.id, table_id, error = %e, "the deletion a failed expiry left still fails")
                }
            }
        }
    }

    /// Deletes again what a committed run left, from the two versions its summary names;
    /// `None` when it had not committed.
    async fn resume_deletion(&self, process: &TableProcess) -> Result<Option<MaintenanceSummary>> {
        let Summary::Maintenance(summary) = &process.summary else { return Ok(None) };
        let (Some(before), Some(after)) = (&summary.metadata_before, &summary.metadata_after) else {
            return Ok(None);
        };
        let Some(table) = ManagedTable::load(&self.catalogs, process.table_id).await? else {
            return Ok(Some(summary.clone()));
        };
        let before = self.catalogs.metadata_at(&table.catalog, before).await?.metadata.clone();
        let after = self.catalogs.metadata_at(&table.catalog, after).await?.metadata.clone();
        let mut summary = summary.clone();
        delete_expired(&Expired { table, before, after }, &mut summary, None).await?;
        Ok(Some(summary))
    }

    /// Starts the runner: every `tick`, runs each due table's actions, `threads` at a time.
    pub(crate) fn spawn_maintenance(self: &Arc<Self>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let config = service.config.maintenance.clone();
            let scheduled = config.scheduled();
            if scheduled.is_empty() {
                return;
            }
            let interval_of: HashMap<MaintenanceAction, i64> = scheduled.iter().copied().collect();
            let permits = Arc::new(Semaphore::new(config.threads.max(1)));
            let mut due: HashMap<(i64, MaintenanceAction), Due> = HashMap::new();
            match service.last_maintenance_runs(None).await {
                Ok(runs) => {
                    for run in runs {
                        if let ProcessAction::Maintenance(action) = run.action
                            && let Some(interval) = interval_of.get(&action)
                        {
                            due.insert((run.table_id, action), Due { at: run.created_at + interval, failures: 0 });
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the last maintenance runs; all tables start afresh"),
            }
            let mut tick = tokio::time::interval(config.tick);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Runs in flight: a long one (orphan listing of a large table) holds one permit and
            // its own table's slot, never the scheduling of the others. Stopping aborts them,
            // as a crash would; recovery finishes what they committed.
            let mut running: JoinSet<Result<MaintenanceSummary>> = JoinSet::new();
            let mut in_flight: HashMap<tokio::task::Id, (i64, MaintenanceAction)> = HashMap::new();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    Some(ended) = running.join_next_with_id(), if !running.is_empty() => {
                        let (id, outcome) = match ended {
                            Ok((id, outcome)) => (id, outcome),
                            // A run that panicked counts as failed (its record ends at restart).
                            Err(e) => (e.id(), Err(OptimizingError::Rejected(format!("the run panicked: {e}")))),
                        };
                        let Some((table_id, action)) = in_flight.remove(&id) else { continue };
                        let interval_ms = interval_of.get(&action).copied().unwrap_or(i64::MAX);
                        let entry = due.entry((table_id, action)).or_insert(Due { at: 0, failures: 0 });
                        let ended = now_ms();
                        match outcome {
                            Ok(_) => *entry = Due { at: ended + interval_ms, failures: 0 },
                            Err(e) => {
                                entry.failures += 1;
                                let retry = entry.failures < ATTEMPTS;
                                entry.at = ended + if retry { RETRY_WAIT_MS.min(interval_ms) } else { interval_ms };
                                if !retry {
                                    entry.failures = 0;
                                }
                                tracing::warn!(table_id, action = action.as_str(), error = %e, retry, "maintenance run failed");
                            }
                        }
                        continue;
                    }
                    _ = stop.changed() => {
                        running.shutdown().await;
                        break;
                    }
                }
                let tables = match service.store.list_table_ids().await {
                    Ok(tables) => tables,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list tables for maintenance");
                        continue;
                    }
                };
                let now = now_ms();
                let known: std::collections::HashSet<i64> = tables.iter().copied().collect();
                due.retain(|(id, _), _| known.contains(id));
                let switches = service.lock_switches().clone();
                for table_id in tables {
                    for &(action, interval_ms) in &scheduled {
                        let first = || Due { at: now + spread(table_id, interval_ms), failures: 0 };
                        let entry = due.entry((table_id, action)).or_insert_with(first);
                        let on = switches.get(&table_id).map_or(action.on_by_default(), |on| on.contains(&action));
                        if entry.at <= now && !on {
                            // Switched off: no run and no record; looked at again next interval.
                            entry.at = now + interval_ms;
                        } else if entry.at <= now {
                            // Not again until this run ends and sets the next time.
                            entry.at = i64::MAX;
                            let (service, permits) = (service.clone(), permits.clone());
                            let handle = running.spawn(async move {
                                match permits.acquire_owned().await {
                                    Ok(_permit) => {
                                        service.run_maintenance(table_id, action, RunOptions::default()).await
                                    }
                                    Err(_) => Err(OptimizingError::Rejected("the maintenance runner stopped".into())),
                                }
                            });
                            in_flight.insert(handle.id(), (table_id, action));
                        }
                    }
                }
            }
        })
    }
}

impl OptimizingService {
    /// The maintenance switches of every table looked at so far.
    pub(crate) fn lock_switches(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Vec<MaintenanceAction>>> {
        self.switches.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A table's first run falls at a fixed point of the interval, so that tables spread out.
fn spread(table_id: i64, interval_ms: i64) -> i64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    table_id.hash(&mut hasher);
    (hasher.finish() % interval_ms.max(1) as u64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_runs_spread_over_the_interval() {
        let interval = 3_600_000;
        let offsets: Vec<i64> = (0..1_000).map(|id| spread(id, interval)).collect();
        assert!(offsets.iter().all(|o| (0..interval).contains(o)));
        let early = offsets.iter().filter(|o| **o < interval / 10).count();
        assert!((50..=150).contains(&early), "about a tenth in the first tenth: {early}");
        assert_eq!(spread(7, interval), spread(7, interval), "stable");
    }
}
