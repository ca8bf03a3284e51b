//! Scheduling: handing tasks to optimizer threads fairly across tables, planning the next table
//! when a group runs dry, and taking acknowledgements and results.
//!
//! A thread polls; the scheduler claims the first planned task (processes in creation order) of a
//! table still under its quota (`self-optimizing.quota` threads of the group). If none is ready,
//! the polling thread plans the group's next pending table — one planner per group — chosen by the
//! group's policy: least quota occupation over the last hour (`quota`) or least recently
//! optimized (`balanced`). At the end of a poll that found nothing, the quota is ignored rather
//! than leaving a thread idle (Amoro's `break-quota-limit-enabled`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use loch_api::optimizer::{TaskAssignment, TaskInput, TaskKey, TaskOutput};
use loch_meta::{NewTask, RuntimeRecord, TaskRecord, TaskRun, now_ms};

use crate::error::{OptimizingError, Result};
use crate::process::{OPTIMIZING, Planned, ProcessKind};
use crate::properties::SchedulingPolicy;
use crate::record::{Processes, Summary, TableProcess};
use crate::service::{OptimizingService, PendingInput};
use crate::status::{TableStatus, TaskStatus, move_runtime, move_task, names, next_runtime};
use crate::table::ManagedTable;
use crate::task::{input_size, output_size};

/// Look-back window of quota occupation.
const QUOTA_WINDOW_MS: i64 = 3_600_000;

impl OptimizingService {
    /// Long-polls a task for thread `thread_id` of the optimizer with `token`.
    pub async fn poll(self: &Arc<Self>, token: &str, thread_id: u32) -> Result<Option<TaskAssignment>> {
        let optimizer = self.optimizer(token).await?;
        let group = optimizer.group_name;
        self.release_thread_tasks(token, thread_id).await?;
        let deadline = Instant::now() + self.config.poll_timeout;
        loop {
            let wakeup = self.wakeup(&group);
            let notified = wakeup.notified();
            self.not_released(token)?;
            if let Some(task) = self.claim(&group, token, thread_id, false).await? {
                return Ok(Some(task));
            }
            if self.plan_next(&group).await? {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Rather than leave this thread idle, take a task over its table's quota.
                return self.claim(&group, token, thread_id, true).await;
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(500)), notified).await;
        }
    }

    /// A thread that polls holds no task: any it still holds was lost (its worker restarted
    /// the thread, or the completion never arrived) and goes back.
    async fn release_thread_tasks(&self, token: &str, thread_id: u32) -> Result<()> {
        for task in self.store.active_tasks(&names(&TaskStatus::HELD)).await? {
            if task.optimizer_token.as_deref() == Some(token) && task.thread_id == Some(i64::from(thread_id)) {
                self.reset_task(&task, "its thread asked for new work").await?;
            }
        }
        Ok(())
    }

    /// Claims the first planned task of a table under its quota (any table if `ignore_quota`).
    async fn claim(
        &self,
        group: &str,
        token: &str,
        thread_id: u32,
        ignore_quota: bool,
    ) -> Result<Option<TaskAssignment>> {
        let _one_claim_at_a_time = self.claiming.lock().await;
        let planned = self.store.group_tasks(group, &names(&[TaskStatus::Planned])).await?;
        if planned.is_empty() {
            return Ok(None);
        }
        let mut running: HashMap<i64, usize> = HashMap::new();
        for (table_id, _) in self.store.group_tasks(group, &names(&TaskStatus::HELD)).await? {
            *running.entry(table_id).or_default() += 1;
        }
        let threads = self.group_threads(group).await?;
        let mut quotas: HashMap<i64, f64> = HashMap::new();
        for (table_id, task) in planned {
            if !ignore_quota {
                let quota = match quotas.get(&task.process_id) {
                    Some(q) => *q,
                    None => {
                        let process = Processes(&self.store).get(task.process_id).await?;
                        let q = process.as_ref().map_or(0.5, |p| p.optimizing().quota);
                        quotas.insert(task.process_id, q);
                        q
                    }
                };
                let limit =
                    crate::properties::OptimizingProperties { quota, ..Default::default() }.quota_threads(threads);
                if running.get(&table_id).copied().unwrap_or(0) >= limit {
                    continue;
                }
            }
            let claim = |t: &mut TaskRecord| {
                t.attempt += 1;
                t.optimizer_token = Some(token.to_string());
                t.thread_id = Some(i64::from(thread_id));
                t.started_at = None;
            };
            let Some(claimed) = move_task(&self.store, &task, TaskStatus::Scheduled, None, claim).await? else {
                continue; // Another thread claimed it first.
            };
            let input: TaskInput = serde_json::from_str(&claimed.input)
                .map_err(|e| OptimizingError::Corrupt(format!("task input: {e}")))?;
            let key = TaskKey { process_id: claimed.process_id, task_id: claimed.task_id, attempt: claimed.attempt };
            tracing::debug!(?key, thread_id, "task scheduled");
            return Ok(Some(TaskAssignment { key, input }));
        }
        Ok(None)
    }

    /// Loads a task that `token`'s thread holds in `expected` status for this attempt.
    async fn held_task(&self, token: &str, thread_id: u32, key: &TaskKey, expected: TaskStatus) -> Result<TaskRecord> {
        let task = self
            .store
            .get_task(key.process_id, key.task_id)
            .await?
            .ok_or_else(|| OptimizingError::NotFound(format!("task {}/{}", key.process_id, key.task_id)))?;
        let holder = task.optimizer_token.as_deref() == Some(token) && task.thread_id == Some(i64::from(thread_id));
        if task.attempt != key.attempt || !holder || task.status != expected.as_str() {
            return Err(OptimizingError::Rejected(format!(
                "task {}/{} attempt {} is no longer {} by this thread (now {} attempt {})",
                key.process_id,
                key.task_id,
                key.attempt,
                expected.as_str(),
                task.status,
                task.attempt
            )));
        }
        Ok(task)
    }

    /// A thread starts a scheduled task.
    pub async fn ack(&self, token: &str, thread_id: u32, key: &TaskKey) -> Result<()> {
        self.optimizer(token).await?;
        let task = self.held_task(token, thread_id, key, TaskStatus::Scheduled).await?;
        let now = now_ms();
        if move_task(&self.store, &task, TaskStatus::Acked, None, |t| t.started_at = Some(now)).await?.is_some() {
            Ok(())
        } else {
            Err(OptimizingError::Rejected(format!(
                "task {}/{} changed while acknowledging",
                key.process_id, key.task_id
            )))
        }
    }

    /// A thread reports the result of an acknowledged task.
    pub async fn complete(
        self: &Arc<Self>,
        token: &str,
        thread_id: u32,
        key: &TaskKey,
        result: std::result::Result<TaskOutput, String>,
    ) -> Result<()> {
        let task = self.held_task(token, thread_id, key, TaskStatus::Acked).await?;
        let process = Processes(&self.store)
            .get(key.process_id)
            .await?
            .ok_or_else(|| OptimizingError::NotFound(format!("process {}", key.process_id)))?;
        let now = now_ms();
        let started = task.started_at.unwrap_or(task.status_since);
        let run = TaskRun { table_id: process.table_id, started_at: started, ended_at: now };
        let ended = |t: &mut TaskRecord| {
            t.finished_at = Some(now);
            t.cost_ms += (now - started).max(0);
        };
        metrics::histogram!("loch_optimizing_task_duration_seconds").record((now - started).max(0) as f64 / 1000.0);
        let changed = || OptimizingError::Rejected("task changed while completing".into());
        match result {
            Ok(output) => {
                let (files, bytes) = output_size(&output);
                let output = serde_json::to_string(&output).map_err(|e| OptimizingError::Corrupt(e.to_string()))?;
                let success = |t: &mut TaskRecord| {
                    ended(t);
                    t.output_files = files;
                    t.output_bytes = bytes;
                    t.fail_reason = None;
                    t.output = Some(output);
                };
                move_task(&self.store, &task, TaskStatus::Success, Some(run), success).await?.ok_or_else(changed)?;
                metrics::counter!("loch_optimizing_tasks_total", "result" => TaskStatus::Success.as_str()).increment(1);
                self.after_task_success(process.id).await;
            }
            Err(reason) => {
                let failed = |t: &mut TaskRecord| {
                    ended(t);
                    t.retries += 1;
                    t.fail_reason = Some(truncate(&reason, 4000));
                };
                let done =
                    move_task(&self.store, &task, TaskStatus::Failed, Some(run), failed).await?.ok_or_else(changed)?;
                metrics::counter!("loch_optimizing_tasks_total", "result" => TaskStatus::Failed.as_str()).increment(1);
                tracing::warn!(process = process.id, task = task.task_id, %reason, "optimizing task failed");
                let allowed = i64::from(process.optimizing().retries);
                if done.retries <= allowed {
                    self.reset_task(&done, "retry").await?;
                    self.wake(&process.group_name);
                } else {
                    let message = format!(
                        "task {} failed {} times; last error: {}",
                        task.task_id,
                        done.retries,
                        truncate(&reason, 1000)
                    );
                    self.fail_process(process.id, &message, false).await?;
                }
            }
        }
        Ok(())
    }

    /// Puts a task back to `planned` (retry, lost optimizer, timeout).
    pub(crate) async fn reset_task(&self, task: &TaskRecord, why: &str) -> Result<bool> {
        let reset = |t: &mut TaskRecord| {
            t.optimizer_token = None;
            t.thread_id = None;
            t.started_at = None;
        };
        let moved = move_task(&self.store, task, TaskStatus::Planned, None, reset).await?.is_some();
        if moved {
            tracing::info!(process = task.process_id, task = task.task_id, why, "task handed back");
        }
        Ok(moved)
    }

    /// Plans the group's next pending table, if no plan is being made for the group; true if a
    /// process was created.
    async fn plan_next(self: &Arc<Self>, group: &str) -> Result<bool> {
        let Some(planner) = Planner::take(self, group) else { return Ok(false) };
        // The plan runs on a task of its own: a poll that is dropped (its worker hung up) must not
        // stop it halfway, leaving the table in `planning` and the group without a planner.
        tokio::spawn(async move { planner.service.plan_next_locked(&planner.group).await })
            .await
            .map_err(|e| OptimizingError::Corrupt(format!("planning group {group} stopped: {e}")))?
    }

    async fn plan_next_locked(self: &Arc<Self>, group: &str) -> Result<bool> {
        let now = now_ms();
        let mut candidates: Vec<(RuntimeRecord, PendingInput)> = self
            .store
            .runtimes_in_status(group, TableStatus::Pending.as_str())
            .await?
            .into_iter()
            .map(|r| {
                let pending: PendingInput =
                    r.pending_input.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default();
                (r, pending)
            })
            .filter(|(r, p)| r.last_plan_at.is_none_or(|at| now - at >= p.min_plan_interval_ms))
            .collect();
        if candidates.is_empty() {
            return Ok(false);
        }
        let policy = self.group_properties(group).await?;
        match policy.policy {
            SchedulingPolicy::Quota => {
                let threads = self.group_threads(group).await?;
                let occupation = self.quota_occupation(now).await?;
                let key = |(r, p): &(RuntimeRecord, PendingInput)| {
                    let limit =
                        crate::properties::OptimizingProperties { quota: p.quota.max(0.01), ..Default::default() }
                            .quota_threads(threads);
                    occupation.get(&r.table_id).copied().unwrap_or(0.0) / limit as f64
                };
                candidates.sort_by(|a, b| key(a).total_cmp(&key(b)));
            }
            SchedulingPolicy::Balanced => {
                let last = |r: &RuntimeRecord| {
                    [r.last_minor_at, r.last_major_at, r.last_full_at].into_iter().flatten().max().unwrap_or(0)
                };
                candidates.sort_by_key(|(r, _)| last(r));
            }
        }
        for (runtime, _) in candidates {
            if self.plan_table(group, runtime).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Plans table `table_id` now, as a user asked (`OPTIMIZE t [FULL]`): its time-based
    /// triggers count as due (the full trigger too with `full`), so every partition worth
    /// rewriting by Amoro's rules is planned. The process, or `None` when nothing is worth doing.
    pub async fn optimize_now(self: &Arc<Self>, table_id: i64, full: bool) -> Result<Option<TableProcess>> {
        let table = ManagedTable::load(&self.catalogs, table_id)
            .await?
            .ok_or_else(|| OptimizingError::NotFound(format!("table {table_id}")))?;
        if table.is_change_store() {
            return Err(OptimizingError::Invalid(format!(
                "{} is the change store of a keyed table; optimize the keyed table itself",
                table.display_name()
            )));
        }
        if !table.props.enabled {
            return Err(OptimizingError::Rejected(format!(
                "self-optimizing is off for {} (self-optimizing.enabled=false)",
                table.display_name()
            )));
        }
        let runtime = self.store.ensure_runtime(table_id, &table.props.group, TableStatus::Idle.as_str()).await?;
        let group = runtime.group_name.clone();
        if self.store.get_group(&group).await?.is_none() {
            return Err(OptimizingError::NoSuchGroup(group));
        }
        let status = TableStatus::parse(&runtime.status)?;
        if !matches!(status, TableStatus::Idle | TableStatus::Pending) {
            let running = Processes(&self.store).running().await?;
            let process = running.iter().find(|p| p.table_id == table_id).map(|p| format!(" by process {}", p.id));
            return Err(OptimizingError::Rejected(format!(
                "{} is being optimized{} (status {}); wait for it to end or cancel it",
                table.display_name(),
                process.unwrap_or_default(),
                status.as_str()
            )));
        }
        let now = now_ms();
        let Some(planning) =
            move_runtime(&self.store, &runtime, TableStatus::Planning, |r| r.last_plan_at = Some(now)).await?
        else {
            return Err(OptimizingError::Rejected(format!(
                "{} is being planned right now; look at its processes in a moment",
                table.display_name()
            )));
        };
        let force = Some(if full { ForcedPlan::Full } else { ForcedPlan::Due });
        let outcome = match self.plan_table_locked(&group, &planning, force).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(table_id, error = %e, "planning by request failed; the table stays pending");
                move_runtime(&self.store, &planning, TableStatus::Pending, |_| {}).await?;
                return Err(e);
            }
        };
        match outcome {
            PlanOutcome::Created(id) => Ok(Some(self.process(table_id, id).await?)),
            PlanOutcome::Nothing => Ok(None),
            PlanOutcome::Blocked(reason) => Err(OptimizingError::Rejected(format!("cannot optimize: {reason}"))),
        }
    }

    /// A table's quota occupation now, as the `quota` policy ranks tables: its task time over
    /// the last hour divided by the threads its quota allows in `group`. 1.0 means it used its
    /// whole quota.
    pub async fn quota_occupation_of(&self, table_id: i64, group: &str, quota: f64) -> Result<f64> {
        let threads = self.group_threads(group).await?;
        let limit = crate::properties::OptimizingProperties { quota: quota.max(0.01), ..Default::default() }
            .quota_threads(threads);
        let used = self.quota_occupation(now_ms()).await?.get(&table_id).copied().unwrap_or(0.0);
        Ok(used / limit as f64)
    }

    /// Task time of each table over the last hour (ended runs plus running tasks), in hours.
    async fn quota_occupation(&self, now: i64) -> Result<HashMap<i64, f64>> {
        let since = now - QUOTA_WINDOW_MS;
        let mut occupied: HashMap<i64, i64> = HashMap::new();
        for run in self.store.task_runs_since(since).await? {
            *occupied.entry(run.table_id).or_default() += run.ended_at - run.started_at.max(since);
        }
        for task in self.store.active_tasks(&names(&[TaskStatus::Acked])).await? {
            if let Some(process) = Processes(&self.store).get(task.process_id).await? {
                *occupied.entry(process.table_id).or_default() += now - task.started_at.unwrap_or(now).max(since);
            }
        }
        Ok(occupied.into_iter().map(|(t, ms)| (t, ms as f64 / QUOTA_WINDOW_MS as f64)).collect())
    }

    /// Plans one pending table: pending → planning → a process (or idle when nothing is worth
    /// doing, or back to pending on failure). True if a process was created.
    async fn plan_table(self: &Arc<Self>, group: &str, runtime: RuntimeRecord) -> Result<bool> {
        let now = now_ms();
        let Some(planning) =
            move_runtime(&self.store, &runtime, TableStatus::Planning, |r| r.last_plan_at = Some(now)).await?
        else {
            return Ok(false);
        };
        let outcome = self.plan_table_locked(group, &planning, None).await;
        match outcome {
            Ok(outcome) => Ok(matches!(outcome, PlanOutcome::Created(_))),
            Err(e) => {
                tracing::warn!(table_id = runtime.table_id, error = %e, "planning failed; the table stays pending");
                move_runtime(&self.store, &planning, TableStatus::Pending, |_| {}).await?;
                Ok(false)
            }
        }
    }

    async fn plan_table_locked(
        self: &Arc<Self>,
        group: &str,
        planning: &RuntimeRecord,
        force: Option<ForcedPlan>,
    ) -> Result<PlanOutcome> {
        let Some(mut table) = ManagedTable::load(&self.catalogs, planning.table_id).await? else {
            return Ok(PlanOutcome::Nothing); // Dropped: its runtime row went with it.
        };
        let group_props = self.group_properties(group).await?;
        let threads = self.group_threads(group).await?;
        let budget = group_props.max_input_per_thread.saturating_mul(threads as u64);
        let kind = OPTIMIZING;
        // A forced plan sees its triggers as due; the stored runtime keeps its real times.
        let mut seen = planning.clone();
        if let Some(force) = force {
            force.apply(&mut table.props, &mut seen);
        }
        let plan = match kind.plan(&table, &seen, budget).await? {
            Planned::Process(plan) => plan,
            Planned::Nothing { evaluated_snapshot, due_at } => {
                let idle = |r: &mut RuntimeRecord| {
                    r.pending_input = None;
                    r.last_evaluated_snapshot = evaluated_snapshot;
                    r.due_at = due_at;
                };
                if let Some(idle) = move_runtime(&self.store, planning, TableStatus::Idle, idle).await? {
                    self.tracker.set_due(idle.table_id, idle.due_at);
                }
                return Ok(PlanOutcome::Nothing);
            }
            Planned::Blocked { snapshot, reason } => {
                self.block(&table.display_name(), planning, snapshot, &reason).await?;
                return Ok(PlanOutcome::Blocked(reason));
            }
        };
        let mut tasks = Vec::with_capacity(plan.tasks.len());
        for (i, (partition, input)) in plan.tasks.iter().enumerate() {
            let (files, bytes) = input_size(input);
            tasks.push(NewTask {
                task_id: i as i64,
                status: TaskStatus::Planned.as_str().into(),
                partition_name: partition.clone(),
                input: serde_json::to_string(input).map_err(|e| OptimizingError::Corrupt(e.to_string()))?,
                input_files: files,
                input_bytes: bytes,
            });
        }
        let process = TableProcess::new_row(
            table.record.id,
            plan.action,
            group,
            plan.target_snapshot_id,
            &Summary::Optimizing(plan.summary),
        )?;
        let running = next_runtime(planning, plan.running, |r| r.pending_input = None)?;
        let id = self.store.begin_process(&process, &tasks, &running, &planning.status).await?;
        tracing::info!(table = %table.display_name(), process = id, kind = kind.name(), r#type = plan.action.type_name(), tasks = tasks.len(), "process planned");
        metrics::counter!("loch_optimizing_processes_started_total", "type" => plan.action.type_name()).increment(1);
        self.wake(group);
        Ok(PlanOutcome::Created(id))
    }
}

/// The group's one planner while it lives; the group is free to plan again when it is dropped,
/// however the plan ended.
struct Planner {
    service: Arc<OptimizingService>,
    group: String,
}

impl Planner {
    /// The group's planner slot, unless another plan for the group is being made.
    fn take(service: &Arc<OptimizingService>, group: &str) -> Option<Self> {
        let mut planning = service.planning.lock().unwrap_or_else(|e| e.into_inner());
        planning.insert(group.to_string()).then(|| Self { service: service.clone(), group: group.to_string() })
    }
}

impl Drop for Planner {
    fn drop(&mut self) {
        self.service.planning.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.group);
    }
}

/// What planning a table came to.
enum PlanOutcome {
    /// Process `id` was created.
    Created(i64),
    /// Nothing is worth doing (or the table is gone).
    Nothing,
    /// Loch cannot optimize the table as it is, for this reason.
    Blocked(String),
}

/// A plan a user asked for: the time-based triggers count as due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForcedPlan {
    /// The minor trigger interval has passed (`OPTIMIZE t`).
    Due,
    /// The full trigger interval has passed too (`OPTIMIZE t FULL`).
    Full,
}

impl ForcedPlan {
    /// Makes the triggers due in the properties and last-run times the planner sees.
    fn apply(self, props: &mut crate::properties::OptimizingProperties, runtime: &mut RuntimeRecord) {
        props.minor_trigger_interval_ms = 0;
        runtime.last_minor_at = None;
        if self == ForcedPlan::Full {
            props.full_trigger_interval_ms = 0;
            runtime.last_full_at = None;
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
