//! The optimizing service: shared state of scheduling, the optimizer registry, and the views the
//! management API shows. Scheduling lives in `scheduler`, evaluation and commits in `lifecycle`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loch_api::optimizer::{RegisterRequest, RegisterResponse};
use loch_catalog::CatalogService;
use loch_meta::{GroupRecord, MetaStore, NamedRuntime, OptimizerRecord, ProcessRecord, TaskRecord, now_ms};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::error::{OptimizingError, Result};
use crate::properties::GroupProperties;
use crate::status::TaskStatus;

/// Server-side settings of self-optimizing (Amoro's `config.yaml` names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizingConfig {
    /// `refresh-tables.interval` (1 min): how often every table is evaluated.
    pub refresh_interval: Duration,
    /// `optimizer.heart-beat-timeout` (1 min): an optimizer silent this long is dropped and its
    /// tasks are handed out again.
    pub heartbeat_timeout: Duration,
    /// `optimizer.task-ack-timeout` (30 s): a task not acknowledged this long goes back.
    pub ack_timeout: Duration,
    /// `optimizer.task-execute-timeout` (off): a task running this long goes back.
    pub execute_timeout: Option<Duration>,
    /// `optimizer.polling-timeout` (3 s): how long a poll waits for a task.
    pub poll_timeout: Duration,
    /// `process.history-data-keep-time` (7 days): finished processes are kept this long.
    pub history_keep: Duration,
}

impl Default for OptimizingConfig {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(60),
            heartbeat_timeout: Duration::from_secs(60),
            ack_timeout: Duration::from_secs(30),
            execute_timeout: None,
            poll_timeout: Duration::from_secs(3),
            history_keep: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Name of the group every table uses unless it names another.
pub const DEFAULT_GROUP: &str = "default";

/// Statistics kept on a process (JSON in `processes.summary`).
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
    /// Files written.
    pub output_files: i64,
    /// Bytes written.
    pub output_bytes: i64,
    /// The snapshot the commit produced.
    pub committed_snapshot_id: Option<i64>,
}

/// What the last evaluation found (JSON in `table_runtimes.pending_input`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingInput {
    /// The optimizing type needed.
    #[serde(rename = "type")]
    pub kind: String,
    /// Partitions needing it.
    pub partitions: usize,
    /// Their files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The table's quota.
    pub quota: f64,
    /// The table's minimum time between plans.
    pub min_plan_interval_ms: i64,
}

/// The optimizing service.
pub struct OptimizingService {
    pub(crate) catalogs: Arc<CatalogService>,
    pub(crate) store: MetaStore,
    pub(crate) config: OptimizingConfig,
    wakeups: Mutex<HashMap<String, Arc<Notify>>>,
    pub(crate) planning: Mutex<HashSet<String>>,
    pub(crate) committing: Mutex<HashSet<i64>>,
    pub(crate) tracker: crate::tracker::Tracker,
}

impl std::fmt::Debug for OptimizingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptimizingService").field("config", &self.config).finish_non_exhaustive()
    }
}

impl OptimizingService {
    /// A service over the catalog service; creates the `default` group if missing.
    pub async fn new(catalogs: Arc<CatalogService>, config: OptimizingConfig) -> Result<Arc<Self>> {
        let store = catalogs.store().clone();
        if store.get_group(DEFAULT_GROUP).await?.is_none() {
            match store.create_group(DEFAULT_GROUP, &BTreeMap::new()).await {
                Ok(_) | Err(loch_meta::MetaError::AlreadyExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Arc::new(Self {
            catalogs,
            store,
            config,
            wakeups: Mutex::new(HashMap::new()),
            planning: Mutex::new(HashSet::new()),
            committing: Mutex::new(HashSet::new()),
            tracker: crate::tracker::Tracker::default(),
        }))
    }

    /// The service's settings.
    pub fn config(&self) -> &OptimizingConfig {
        &self.config
    }

    /// The notifier pollers of `group` wait on.
    pub(crate) fn wakeup(&self, group: &str) -> Arc<Notify> {
        let mut map = self.wakeups.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(group.to_string()).or_insert_with(|| Arc::new(Notify::new())).clone()
    }

    /// Wakes every poller of `group` (new tasks, or tasks handed back).
    pub(crate) fn wake(&self, group: &str) {
        self.wakeup(group).notify_waiters();
    }

    /// Registers an optimizer; `embedded` marks the server's own threads.
    pub async fn register(&self, request: &RegisterRequest, embedded: bool) -> Result<RegisterResponse> {
        if request.threads == 0 {
            return Err(OptimizingError::Invalid("an optimizer needs at least one thread".into()));
        }
        if self.store.get_group(&request.group).await?.is_none() {
            return Err(OptimizingError::NoSuchGroup(request.group.clone()));
        }
        let now = now_ms();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let record = OptimizerRecord {
            token: token.clone(),
            group_name: request.group.clone(),
            kind: if embedded { "embedded" } else { "external" }.into(),
            threads: i64::from(request.threads),
            memory_mb: i64::try_from(request.memory_mb).unwrap_or(i64::MAX),
            properties: serde_json::to_string(&request.properties).unwrap_or_else(|_| "{}".into()),
            registered_at: now,
            touched_at: now,
        };
        self.store.insert_optimizer(&record).await?;
        tracing::info!(group = %request.group, threads = request.threads, embedded, "optimizer registered");
        let interval = (self.config.heartbeat_timeout / 4).min(Duration::from_secs(10));
        Ok(RegisterResponse { token, heartbeat_interval_ms: interval.as_millis() as u64 })
    }

    /// A heartbeat; [`OptimizingError::UnknownOptimizer`] when the token expired.
    pub async fn touch(&self, token: &str) -> Result<()> {
        if self.store.touch_optimizer(token, now_ms()).await? { Ok(()) } else { Err(OptimizingError::UnknownOptimizer) }
    }

    /// The optimizer with `token`, or [`OptimizingError::UnknownOptimizer`].
    pub(crate) async fn optimizer(&self, token: &str) -> Result<OptimizerRecord> {
        self.store.get_optimizer(token).await?.ok_or(OptimizingError::UnknownOptimizer)
    }

    /// Threads registered in `group` (at least 1, so quotas stay meaningful with none).
    pub(crate) async fn group_threads(&self, group: &str) -> Result<usize> {
        let threads: i64 = self.store.list_optimizers(Some(group)).await?.iter().map(|o| o.threads).sum();
        Ok(usize::try_from(threads).unwrap_or(0).max(1))
    }

    /// Group properties of `group`.
    pub(crate) async fn group_properties(&self, group: &str) -> Result<GroupProperties> {
        let record =
            self.store.get_group(group).await?.ok_or_else(|| OptimizingError::NoSuchGroup(group.to_string()))?;
        GroupProperties::parse(&record.properties)
    }

    // ---- Views and management ----

    /// All groups.
    pub async fn groups(&self) -> Result<Vec<GroupRecord>> {
        Ok(self.store.list_groups().await?)
    }

    /// A group, or [`OptimizingError::NoSuchGroup`].
    pub async fn group(&self, name: &str) -> Result<GroupRecord> {
        self.store.get_group(name).await?.ok_or_else(|| OptimizingError::NoSuchGroup(name.to_string()))
    }

    /// Creates a group.
    pub async fn create_group(&self, name: &str, properties: BTreeMap<String, String>) -> Result<GroupRecord> {
        validate_group_name(name)?;
        GroupProperties::parse(&properties)?;
        Ok(self.store.create_group(name, &properties).await?)
    }

    /// Replaces a group's properties.
    pub async fn update_group(&self, name: &str, properties: BTreeMap<String, String>) -> Result<GroupRecord> {
        GroupProperties::parse(&properties)?;
        Ok(self.store.update_group(name, &properties).await?)
    }

    /// Deletes a group that no table or optimizer uses.
    pub async fn delete_group(&self, name: &str) -> Result<()> {
        if name == DEFAULT_GROUP {
            return Err(OptimizingError::Rejected("the default group cannot be deleted".into()));
        }
        Ok(self.store.delete_group(name).await?)
    }

    /// Optimizers of a group (or all).
    pub async fn optimizers(&self, group: Option<&str>) -> Result<Vec<OptimizerRecord>> {
        Ok(self.store.list_optimizers(group).await?)
    }

    /// Tasks held (scheduled or running) per optimizer token.
    pub async fn running_tasks_by_optimizer(&self) -> Result<HashMap<String, usize>> {
        let mut running = HashMap::new();
        for task in self.store.active_tasks(&crate::status::names(&TaskStatus::HELD)).await? {
            if let Some(token) = task.optimizer_token {
                *running.entry(token).or_default() += 1;
            }
        }
        Ok(running)
    }

    /// The runtime of a table, evaluating the table first if it has none yet.
    pub async fn table_runtime(&self, table_id: i64) -> Result<NamedRuntime> {
        if let Some(runtime) = self.store.get_named_runtime(table_id).await? {
            return Ok(runtime);
        }
        self.refresh_table(table_id).await?;
        self.store
            .get_named_runtime(table_id)
            .await?
            .ok_or_else(|| OptimizingError::NotFound(format!("table {table_id}")))
    }

    /// Table runtimes of a group (or all).
    pub async fn runtimes(&self, group: Option<&str>) -> Result<Vec<NamedRuntime>> {
        Ok(self.store.list_runtimes(group).await?)
    }

    /// Processes of a table, newest first.
    pub async fn processes(&self, table_id: i64, limit: i64) -> Result<Vec<ProcessRecord>> {
        Ok(self.store.list_processes(table_id, limit).await?)
    }

    /// A process of a table.
    pub async fn process(&self, table_id: i64, process_id: i64) -> Result<ProcessRecord> {
        match self.store.get_process(process_id).await? {
            Some(p) if p.table_id == table_id => Ok(p),
            _ => Err(OptimizingError::NotFound(format!("process {process_id}"))),
        }
    }

    /// Tasks of a process of a table.
    pub async fn tasks(&self, table_id: i64, process_id: i64) -> Result<Vec<TaskRecord>> {
        self.process(table_id, process_id).await?;
        Ok(self.store.list_tasks(process_id).await?)
    }
}

fn validate_group_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(OptimizingError::Invalid(format!("invalid group name {name:?}: use letters, digits, `_` and `-`")))
    }
}

/// Parses a process summary (an unreadable one reads as empty).
pub(crate) fn process_summary(process: &ProcessRecord) -> ProcessSummary {
    serde_json::from_str(&process.summary).unwrap_or_default()
}
