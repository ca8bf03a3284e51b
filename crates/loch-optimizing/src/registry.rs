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

/// How long a released optimizer's token is remembered (to tell it to stop).
const RELEASED_KEPT_MS: i64 = 24 * 3_600_000;

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
        self.not_released(token)?;
        if self.store.touch_optimizer(token, now_ms()).await? { Ok(()) } else { Err(OptimizingError::UnknownOptimizer) }
    }

    /// The optimizer with `token`, or [`OptimizingError::UnknownOptimizer`]
    /// ([`OptimizingError::OptimizerReleased`] once released).
    pub(crate) async fn optimizer(&self, token: &str) -> Result<OptimizerRecord> {
        self.not_released(token)?;
        self.store.get_optimizer(token).await?.ok_or(OptimizingError::UnknownOptimizer)
    }

    /// [`OptimizingError::OptimizerReleased`] if an operator released the optimizer with
    /// `token`.
    pub(crate) fn not_released(&self, token: &str) -> Result<()> {
        let released = self.released.lock().unwrap_or_else(|e| e.into_inner());
        if released.contains_key(token) { Err(OptimizingError::OptimizerReleased) } else { Ok(()) }
    }

    /// Releases the external optimizer of `group` whose id (its token's first characters, as
    /// listed) is `id`: it is forgotten, its tasks go back to the queue, and its next call tells it to
    /// stop. The server's own threads are refused: `optimizing.embedded-threads` sets them.
    pub async fn release(&self, group: &str, id: &str) -> Result<OptimizerRecord> {
        let matching: Vec<OptimizerRecord> = if id.len() < 8 {
            Vec::new()
        } else {
            self.store.list_optimizers(Some(group)).await?.into_iter().filter(|o| o.token.starts_with(id)).collect()
        };
        let optimizer = match <[OptimizerRecord; 1]>::try_from(matching) {
            Ok([one]) => one,
            Err(none) if none.is_empty() => {
                return Err(OptimizingError::NotFound(format!("optimizer {id} of group {group}")));
            }
            Err(_) => return Err(OptimizingError::Rejected(format!("optimizer id {id} is ambiguous"))),
        };
        if optimizer.kind == "embedded" {
            return Err(OptimizingError::Rejected(
                "the server's own optimizer threads cannot be released; set optimizing.embedded-threads".into(),
            ));
        }
        {
            let now = now_ms();
            let mut released = self.released.lock().unwrap_or_else(|e| e.into_inner());
            released.retain(|_, at| now - *at < RELEASED_KEPT_MS);
            released.insert(optimizer.token.clone(), now);
        }
        self.store.delete_optimizer(&optimizer.token).await?;
        for task in self.store.active_tasks(&names(&TaskStatus::HELD)).await? {
            if task.optimizer_token.as_deref() == Some(optimizer.token.as_str()) {
                self.reset_task(&task, "its optimizer was released").await?;
            }
        }
        self.wake(&optimizer.group_name);
        tracing::warn!(group = %optimizer.group_name, id, "optimizer released by an operator");
        Ok(optimizer)
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
