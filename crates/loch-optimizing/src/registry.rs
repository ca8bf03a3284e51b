//! The registry: optimizer groups and the optimizers that serve them (registration, heartbeats,
//! the threads a group has), as the scheduler and the management API see them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use loch_api::optimizer::{RegisterRequest, RegisterResponse};
use loch_meta::{GroupRecord, OptimizerRecord, now_ms};

use crate::error::{OptimizingError, Result};
use crate::properties::GroupProperties;
use crate::service::{DEFAULT_GROUP, OptimizingService};
use crate::status::{TaskStatus, names};

impl OptimizingService {
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
        for task in self.store.active_tasks(&names(&TaskStatus::HELD)).await? {
            if let Some(token) = task.optimizer_token {
                *running.entry(token).or_default() += 1;
            }
        }
        Ok(running)
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
