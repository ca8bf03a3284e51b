//! Optimizer groups and the optimizers registered in them.

use std::collections::BTreeMap;

use sqlx::FromRow;

use crate::catalogs::{decode_properties, encode_properties};
use crate::error::{MetaError, Result, is_unique_violation};
use crate::store::{MetaStore, on_pool};

/// A stored optimizer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// Unique name; tables choose it with `self-optimizing.group`.
    pub name: String,
    /// Group properties (`scheduling-policy`, `max-input-file-size-per-thread`).
    pub properties: BTreeMap<String, String>,
    /// Creation time (ms since epoch).
    pub created_at: i64,
    /// Last change (ms since epoch).
    pub updated_at: i64,
}

#[derive(FromRow)]
struct GroupRow {
    name: String,
    properties: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<GroupRow> for GroupRecord {
    type Error = MetaError;
    fn try_from(row: GroupRow) -> Result<Self> {
        Ok(Self {
            properties: decode_properties(&row.properties)?,
            name: row.name,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A registered optimizer.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct OptimizerRecord {
    /// Secret token the optimizer authenticates with; also its id.
    pub token: String,
    /// Its group.
    pub group_name: String,
    /// `external` (a `loch optimizer` process) or `embedded` (threads in `loch serve`).
    pub kind: String,
    /// Executor threads.
    pub threads: i64,
    /// Memory it declared, in MiB.
    pub memory_mb: i64,
    /// Properties it declared (JSON).
    pub properties: String,
    /// Registration time (ms since epoch).
    pub registered_at: i64,
    /// Last heartbeat (ms since epoch).
    pub touched_at: i64,
}

impl MetaStore {
    /// All groups, by name.
    pub async fn list_groups(&self) -> Result<Vec<GroupRecord>> {
        let rows: Vec<GroupRow> = on_pool!(self, read, |pool| {
            sqlx::query_as("SELECT name, properties, created_at, updated_at FROM optimizer_groups ORDER BY name")
                .fetch_all(pool)
                .await
        })?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The group called `name`, if any.
    pub async fn get_group(&self, name: &str) -> Result<Option<GroupRecord>> {
        let row: Option<GroupRow> = on_pool!(self, read, |pool| {
            sqlx::query_as("SELECT name, properties, created_at, updated_at FROM optimizer_groups WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await
        })?;
        row.map(TryInto::try_into).transpose()
    }

    /// Creates a group; [`MetaError::AlreadyExists`] if the name is taken.
    pub async fn create_group(&self, name: &str, properties: &BTreeMap<String, String>) -> Result<GroupRecord> {
        let now = crate::now_ms();
        let result = on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO optimizer_groups (name, properties, created_at, updated_at) VALUES ($1, $2, $3, $3)",
            )
            .bind(name)
            .bind(encode_properties(properties))
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        });
        match result {
            Ok(_) => Ok(GroupRecord {
                name: name.to_string(),
                properties: properties.clone(),
                created_at: now,
                updated_at: now,
            }),
            Err(e) if is_unique_violation(&e) => Err(MetaError::AlreadyExists(format!("optimizer group {name}"))),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a group's properties.
    pub async fn update_group(&self, name: &str, properties: &BTreeMap<String, String>) -> Result<GroupRecord> {
        let now = crate::now_ms();
        let row: Option<GroupRow> = on_pool!(self, write, |pool| {
            sqlx::query_as(
                "UPDATE optimizer_groups SET properties = $1, updated_at = $2 WHERE name = $3 \
                 RETURNING name, properties, created_at, updated_at",
            )
            .bind(encode_properties(properties))
            .bind(now)
            .bind(name)
            .fetch_optional(pool)
            .await
        })?;
        row.ok_or_else(|| MetaError::NotFound(format!("optimizer group {name}")))?.try_into()
    }

    /// Deletes a group; [`MetaError::NotEmpty`] while tables or optimizers use it.
    pub async fn delete_group(&self, name: &str) -> Result<()> {
        on_pool!(self, write, |pool| {
            async {
                let mut tx = pool.begin().await?;
                let users: i64 = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM table_runtimes WHERE group_name = $1) + (SELECT COUNT(*) FROM optimizers WHERE group_name = $1)",
                )
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
                if users > 0 {
                    return Ok(Err(MetaError::NotEmpty(format!("optimizer group {name} still has tables or optimizers"))));
                }
                let deleted = sqlx::query("DELETE FROM optimizer_groups WHERE name = $1").bind(name).execute(&mut *tx).await?.rows_affected();
                if deleted == 0 {
                    return Ok(Err(MetaError::NotFound(format!("optimizer group {name}"))));
                }
                tx.commit().await?;
                Ok::<_, sqlx::Error>(Ok(()))
            }
            .await
        })?
    }

    /// Registers an optimizer.
    pub async fn insert_optimizer(&self, optimizer: &OptimizerRecord) -> Result<()> {
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO optimizers (token, group_name, kind, threads, memory_mb, properties, registered_at, touched_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&optimizer.token)
            .bind(&optimizer.group_name)
            .bind(&optimizer.kind)
            .bind(optimizer.threads)
            .bind(optimizer.memory_mb)
            .bind(&optimizer.properties)
            .bind(optimizer.registered_at)
            .bind(optimizer.touched_at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// Records a heartbeat; false when the optimizer is not (or no longer) registered.
    pub async fn touch_optimizer(&self, token: &str, now_ms: i64) -> Result<bool> {
        let updated = on_pool!(self, write, |pool| {
            sqlx::query("UPDATE optimizers SET touched_at = $1 WHERE token = $2")
                .bind(now_ms)
                .bind(token)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(updated == 1)
    }

    /// Unregisters an optimizer; true if it was registered.
    pub async fn delete_optimizer(&self, token: &str) -> Result<bool> {
        let deleted = on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM optimizers WHERE token = $1")
                .bind(token)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(deleted == 1)
    }

    /// The optimizer with this token.
    pub async fn get_optimizer(&self, token: &str) -> Result<Option<OptimizerRecord>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT token, group_name, kind, threads, memory_mb, properties, registered_at, touched_at FROM optimizers WHERE token = $1",
            )
            .bind(token)
            .fetch_optional(pool)
            .await
        })?)
    }

    /// Registered optimizers, of one group or all, oldest first.
    pub async fn list_optimizers(&self, group: Option<&str>) -> Result<Vec<OptimizerRecord>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT token, group_name, kind, threads, memory_mb, properties, registered_at, touched_at FROM optimizers \
                 WHERE $1 IS NULL OR group_name = $1 ORDER BY registered_at, token",
            )
            .bind(group)
            .fetch_all(pool)
            .await
        })?)
    }
}
