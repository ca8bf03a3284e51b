//! The keeper and the background loops: housekeeping (optimizers that stopped heart-beating,
//! tasks past their timeouts, processes ready to commit, tables in states no live process
//! explains), recovery after a restart, status metrics on scrape, and the refresh loop that
//! looks at tables as commits announce them, at their due times, and slice by slice as a safety
//! net.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use loch_meta::{RuntimeRecord, now_ms};
use tokio::sync::watch;

use crate::error::Result;
use crate::lifecycle::{PLANNING_STALE_MS, REFRESH_SLICES, all_succeeded};
use crate::record::Processes;
use crate::service::OptimizingService;
use crate::status::{TableStatus, TaskStatus, move_runtime, names};

/// Least time between two rounds of looking at committed tables: a burst of commits (a
/// streaming writer's checkpoint of many tables) is looked at once per table.
const COMMIT_SETTLE: Duration = Duration::from_millis(200);

impl OptimizingService {
    /// One round of housekeeping.
    pub async fn keep(self: &Arc<Self>) -> Result<()> {
        let now = now_ms();
        // Optimizers that stopped heart-beating are gone.
        let timeout = self.config.heartbeat_timeout.as_millis() as i64;
        let mut alive = HashSet::new();
        for optimizer in self.store.list_optimizers(None).await? {
            if now - optimizer.touched_at > timeout {
                self.store.delete_optimizer(&optimizer.token).await?;
                tracing::warn!(group = %optimizer.group_name, kind = %optimizer.kind, "optimizer expired: no heartbeat");
            } else {
                alive.insert(optimizer.token);
            }
        }
        // Their tasks, and tasks past their timeouts, go back to planned.
        let ack_timeout = self.config.ack_timeout.as_millis() as i64;
        for task in self.store.active_tasks(&names(&TaskStatus::HELD)).await? {
            let status = TaskStatus::parse(&task.status)?;
            let owner_gone = task.optimizer_token.as_ref().is_none_or(|t| !alive.contains(t));
            let unacked = status == TaskStatus::Scheduled && now - task.status_since > ack_timeout;
            let overtime = status == TaskStatus::Acked
                && self
                    .config
                    .execute_timeout
                    .is_some_and(|t| now - task.started_at.unwrap_or(now) > t.as_millis() as i64);
            let why = if owner_gone {
                Some("its optimizer is gone")
            } else if unacked {
                Some("not acknowledged in time")
            } else if overtime {
                Some("execution timed out")
            } else {
                None
            };
            if let Some(why) = why
                && self.reset_task(&task, why).await?
                && let Some(process) = Processes(&self.store).get(task.process_id).await?
            {
                self.wake(&process.group_name);
            }
        }
        // Running processes: commit those that are done; tables must point at them.
        let running = Processes(&self.store).running().await?;
        let running_ids: HashSet<i64> = running.iter().map(|p| p.id).collect();
        for process in running {
            let tasks = self.store.list_tasks(process.id).await?;
            if all_succeeded(&tasks) {
                let service = self.clone();
                tokio::spawn(async move { service.commit_process(process.id).await });
            }
        }
        // Tables in a state no live process explains return to where they can move on.
        for runtime in self.store.runtimes_not_in_status(TableStatus::Idle.as_str()).await? {
            let status = TableStatus::parse(&runtime.status)?;
            let orphaned = status.is_processing() && runtime.process_id.is_none_or(|id| !running_ids.contains(&id));
            let stale_planning = status == TableStatus::Planning && now - runtime.status_since > PLANNING_STALE_MS;
            if orphaned || stale_planning {
                let to = if stale_planning { TableStatus::Pending } else { TableStatus::Idle };
                let fix = |r: &mut RuntimeRecord| {
                    r.process_id = None;
                    r.last_evaluated_snapshot = None;
                };
                if move_runtime(&self.store, &runtime, to, fix).await?.is_some() {
                    tracing::warn!(table_id = runtime.table_id, from = %runtime.status, to = to.as_str(), "table status recovered");
                }
            }
        }
        Ok(())
    }

    /// Sets the table-status gauges. Called when metrics are scraped, not on a timer: with
    /// thousands of tables the per-table series cost something, and only a scrape reads them.
    pub async fn report_metrics(&self) -> Result<()> {
        let runtimes = self.store.list_runtimes(None).await?;
        for status in TableStatus::ALL {
            let count = runtimes.iter().filter(|r| r.runtime.status == status.as_str()).count();
            metrics::gauge!("loch_optimizing_tables", "status" => status.as_str()).set(count as f64);
        }
        let blocked = runtimes.iter().filter(|r| r.runtime.blocked.is_some()).count();
        metrics::gauge!("loch_optimizing_blocked_tables").set(blocked as f64);
        let (due, looked) = self.tracker.sizes();
        metrics::gauge!("loch_optimizing_due_tables").set(due as f64);
        metrics::gauge!("loch_optimizing_tracked_tables").set(looked as f64);
        let now = now_ms();
        // As Amoro: per table, the time spent so far in each status, 0 for the others.
        for named in runtimes {
            let table = format!("{}.{}.{}", named.catalog, named.namespace.join("."), named.table);
            for status in TableStatus::ALL {
                let seconds = if named.runtime.status == status.as_str() {
                    (now - named.runtime.status_since) as f64 / 1000.0
                } else {
                    0.0
                };
                metrics::gauge!("loch_optimizing_status_duration_seconds", "table" => table.clone(), "status" => status.as_str())
                    .set(seconds);
            }
        }
        Ok(())
    }

    /// At start-up, before any optimizer registers: the previous server's own optimizer threads
    /// and its plans in progress died with it, so their tasks go back and their tables are
    /// pending again; processes whose tasks all succeeded are committed.
    pub async fn recover(self: &Arc<Self>) -> Result<()> {
        for optimizer in self.store.list_optimizers(None).await? {
            if optimizer.kind == "embedded" {
                self.store.delete_optimizer(&optimizer.token).await?;
            }
        }
        for runtime in self.store.runtimes_not_in_status(TableStatus::Idle.as_str()).await? {
            if TableStatus::parse(&runtime.status)? == TableStatus::Planning {
                move_runtime(&self.store, &runtime, TableStatus::Pending, |_| {}).await?;
            }
        }
        if let Err(e) = self.recover_maintenance().await {
            tracing::warn!(error = %e, "finishing interrupted maintenance runs failed");
        }
        let running = self.store.running_processes().await?.len();
        if running > 0 {
            tracing::info!(running, "resuming optimizing processes of the previous run");
        }
        self.keep().await
    }

    /// Runs the refresh loop (every refresh interval, and soon after commits) and the keeper
    /// until `stop` turns true. Call [`OptimizingService::recover`] first.
    pub fn spawn_background(self: &Arc<Self>, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        let refresher = {
            let service = self.clone();
            let mut stop = stop.clone();
            let mut commits = self.catalogs.subscribe_commits();
            tokio::spawn(async move {
                match service.store.due_runtimes().await {
                    Ok(due) => due.into_iter().for_each(|(table, at)| service.tracker.set_due(table, Some(at))),
                    Err(e) => tracing::warn!(error = %e, "cannot read due times; tables wait for a change"),
                }
                let mut tick = tokio::time::interval(service.config.refresh_interval / REFRESH_SLICES as u32);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut slice = 0;
                let now = tokio::time::Instant::now();
                let mut last_round = now.checked_sub(COMMIT_SETTLE).unwrap_or(now);
                loop {
                    let until_due =
                        service.tracker.next_due().map(|at| Duration::from_millis((at - now_ms()).max(0) as u64));
                    let due = async {
                        match until_due {
                            Some(wait) => tokio::time::sleep(wait).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = tick.tick() => {
                            if let Err(e) = service.refresh_slice(slice).await {
                                tracing::warn!(error = %e, "refreshing tables failed");
                            }
                            slice = (slice + 1) % REFRESH_SLICES;
                        }
                        _ = due => service.refresh_due().await,
                        _ = service.tracker.changed() => {}
                        event = commits.recv() => match event {
                            Ok(table_id) => {
                                tracing::debug!(table_id, "commit announced");
                                // A lone commit is looked at at once; a burst settles, so
                                // rounds start at most every COMMIT_SETTLE and each looks
                                // once per table.
                                let mut ids = HashSet::from([table_id]);
                                let settle = COMMIT_SETTLE.saturating_sub(last_round.elapsed());
                                if !settle.is_zero() {
                                    tokio::time::sleep(settle).await;
                                }
                                last_round = tokio::time::Instant::now();
                                while let Ok(id) = commits.try_recv() {
                                    ids.insert(id);
                                }
                                for id in ids {
                                    if let Err(e) = service.refresh_table(id).await {
                                        tracing::warn!(table_id = id, error = %e, "table refresh failed");
                                    }
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                                // Announcements were lost: find the changed tables by pointer.
                                tracing::info!(missed, "commit announcements overflowed; checking every table's pointer");
                                if let Err(e) = service.refresh_all().await {
                                    tracing::warn!(error = %e, "refreshing tables failed");
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                        },
                        _ = stop.changed() => break,
                    }
                }
            })
        };
        let stop_maintenance = stop.clone();
        let keeper = {
            let service = self.clone();
            let mut stop = stop;
            tokio::spawn(async move {
                let period =
                    (service.config.heartbeat_timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
                let mut tick = tokio::time::interval(period);
                let mut last_purge = 0i64;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if let Err(e) = service.keep().await {
                                tracing::warn!(error = %e, "optimizing housekeeping failed");
                            }
                            let now = now_ms();
                            if now - last_purge > 3_600_000 {
                                last_purge = now;
                                let before = now - service.config.history_keep.as_millis() as i64;
                                if let Err(e) = service.store.purge_history(before).await {
                                    tracing::warn!(error = %e, "purging process history failed");
                                }
                            }
                        }
                        _ = stop.changed() => break,
                    }
                }
            })
        };
        let maintenance = self.spawn_maintenance(stop_maintenance);
        vec![refresher, keeper, maintenance]
    }
}
