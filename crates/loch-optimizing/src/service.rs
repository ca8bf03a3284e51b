//! The optimizing service: its settings, the state its roles share, and the read views of
//! runtimes, processes and tasks the management API shows. The roles themselves live in
//! `registry`, `lifecycle`, `scheduler` and `keeper`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loch_catalog::CatalogService;
use loch_meta::{MetaStore, NamedRuntime, TaskRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::error::{OptimizingError, Result};
use crate::record::{KIND_OPTIMIZING, Processes, TableProcess};

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
    /// Table maintenance.
    pub maintenance: crate::maintenance::runner::MaintenanceConfig,
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
            maintenance: crate::maintenance::runner::MaintenanceConfig::default(),
        }
    }
}

/// Name of the group every table uses unless it names another.
pub const DEFAULT_GROUP: &str = "default";

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
    /// Taken by each claim of a task: a claim counts the tasks each table holds before taking
    /// one, and two claims at once (threads woken together) would both see room under a quota.
    pub(crate) claiming: tokio::sync::Mutex<()>,
    pub(crate) committing: Mutex<HashSet<i64>>,
    pub(crate) tracker: crate::tracker::Tracker,
    /// The maintenance actions each table's properties switch on, as of its last look: the
    /// runner fires only those, without reading every table's metadata each tick.
    pub(crate) switches: Mutex<HashMap<i64, Vec<crate::maintenance::MaintenanceAction>>>,
    /// Tokens of released optimizers, with when: their next call tells them to stop instead of
    /// registering again. Kept a day (memory only: after a restart a released optimizer that
    /// still runs registers again).
    pub(crate) released: Mutex<HashMap<String, i64>>,
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
            claiming: tokio::sync::Mutex::new(()),
            committing: Mutex::new(HashSet::new()),
            tracker: crate::tracker::Tracker::default(),
            switches: Mutex::new(HashMap::new()),
            released: Mutex::new(HashMap::new()),
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

    // ---- Views and management ----

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
    pub async fn processes(&self, table_id: i64, limit: i64) -> Result<Vec<TableProcess>> {
        Processes(&self.store).of_table(table_id, KIND_OPTIMIZING, limit, 0).await
    }

    /// A process of a table.
    pub async fn process(&self, table_id: i64, process_id: i64) -> Result<TableProcess> {
        match Processes(&self.store).get(process_id).await? {
            Some(p) if p.table_id == table_id && p.action.kind() == KIND_OPTIMIZING => Ok(p),
            _ => Err(OptimizingError::NotFound(format!("process {process_id}"))),
        }
    }

    /// Tasks of a process of a table.
    pub async fn tasks(&self, table_id: i64, process_id: i64) -> Result<Vec<TaskRecord>> {
        self.process(table_id, process_id).await?;
        Ok(self.store.list_tasks(process_id).await?)
    }
}
