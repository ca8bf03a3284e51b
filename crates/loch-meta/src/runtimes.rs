//! Table runtimes: the self-optimizing state of each table, changed only by compare-and-set on
//! its status so concurrent schedulers (or a restarted server) cannot both act on a table.

use sqlx::FromRow;

use crate::error::Result;
use crate::store::{MetaStore, on_pool};

/// The self-optimizing state of one table.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct RuntimeRecord {
    /// The table.
    pub table_id: i64,
    /// Its optimizer group.
    pub group_name: String,
    /// `idle`, `pending`, `planning`, `minor`, `major`, `full` or `committing`.
    pub status: String,
    /// When it entered this status (ms since epoch).
    pub status_since: i64,
    /// The running process, if any.
    pub process_id: Option<i64>,
    /// The snapshot evaluated last; a table is not evaluated again until it changes.
    pub last_evaluated_snapshot: Option<i64>,
    /// End of the last minor optimizing (ms since epoch).
    pub last_minor_at: Option<i64>,
    /// End of the last major optimizing.
    pub last_major_at: Option<i64>,
    /// End of the last full optimizing.
    pub last_full_at: Option<i64>,
    /// Start of the last planning.
    pub last_plan_at: Option<i64>,
    /// What the last evaluation found to optimize (JSON).
    pub pending_input: Option<String>,
    /// File statistics and health of the last evaluation (JSON).
    pub summary: Option<String>,
    /// Why self-optimizing skips the table until it changes, if it does.
    pub blocked: Option<String>,
    /// When the table is next due for a look without any change (ms since epoch): a trigger
    /// interval elapses, or its block expires.
    pub due_at: Option<i64>,
    /// Last change (ms since epoch).
    pub updated_at: i64,
}

/// A runtime with its table's name, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRuntime {
    /// The runtime.
    pub runtime: RuntimeRecord,
    /// Catalog name.
    pub catalog: String,
    /// Namespace levels.
    pub namespace: Vec<String>,
    /// Table name.
    pub table: String,
}

#[derive(FromRow)]
struct NamedRow {
    #[sqlx(flatten)]
    runtime: RuntimeRecord,
    catalog: String,
    namespace: String,
    table_name: String,
}

const COLUMNS: &str = "r.table_id, r.group_name, r.status, r.status_since, r.process_id, r.last_evaluated_snapshot, r.last_minor_at, \
                       r.last_major_at, r.last_full_at, r.last_plan_at, r.pending_input, r.summary, r.blocked, r.due_at, r.updated_at";

impl MetaStore {
    /// Creates the runtime of a table in `status` unless it exists; returns the current one.
    pub async fn ensure_runtime(&self, table_id: i64, group: &str, status: &str) -> Result<RuntimeRecord> {
        let now = crate::now_ms();
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO table_runtimes (table_id, group_name, status, status_since, updated_at) \
                 SELECT $1, $2, $4, $3, $3 WHERE NOT EXISTS (SELECT 1 FROM table_runtimes WHERE table_id = $1)",
            )
            .bind(table_id)
            .bind(group)
            .bind(now)
            .bind(status)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        self.get_runtime(table_id)
            .await?
            .ok_or_else(|| crate::MetaError::NotFound(format!("runtime of table {table_id}")))
    }

    /// The runtime of a table.
    pub async fn get_runtime(&self, table_id: i64) -> Result<Option<RuntimeRecord>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM table_runtimes r WHERE r.table_id = $1")))
                .bind(table_id)
                .fetch_optional(pool)
                .await
        })?)
    }

    /// Runtimes with table names, of one group or all, by catalog, namespace and table.
    pub async fn list_runtimes(&self, group: Option<&str>) -> Result<Vec<NamedRuntime>> {
        self.named_runtimes(group, None).await
    }

    /// The runtime of a table, with its name.
    pub async fn get_named_runtime(&self, table_id: i64) -> Result<Option<NamedRuntime>> {
        Ok(self.named_runtimes(None, Some(table_id)).await?.into_iter().next())
    }

    async fn named_runtimes(&self, group: Option<&str>, table_id: Option<i64>) -> Result<Vec<NamedRuntime>> {
        let rows: Vec<NamedRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS}, c.name AS catalog, n.name AS namespace, t.name AS table_name FROM table_runtimes r \
                 JOIN tables t ON t.id = r.table_id JOIN namespaces n ON n.id = t.namespace_id JOIN catalogs c ON c.id = t.catalog_id \
                 WHERE ($1 IS NULL OR r.group_name = $1) AND ($2 IS NULL OR r.table_id = $2) ORDER BY c.name, n.name, t.name"
            )))
            .bind(group)
            .bind(table_id)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| NamedRuntime {
                runtime: r.runtime,
                catalog: r.catalog,
                namespace: r.namespace.split(crate::namespaces::LEVEL_SEPARATOR).map(str::to_string).collect(),
                table: r.table_name,
            })
            .collect())
    }

    /// Runtimes of a group in `status` (an index lookup: schedulers ask on every poll).
    pub async fn runtimes_in_status(&self, group: &str, status: &str) -> Result<Vec<RuntimeRecord>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM table_runtimes r WHERE r.group_name = $1 AND r.status = $2"
            )))
            .bind(group)
            .bind(status)
            .fetch_all(pool)
            .await
        })?)
    }

    /// Runtimes of every group that are not in `status` (the busy ones, for housekeeping that
    /// must not grow with the number of quiet tables).
    pub async fn runtimes_not_in_status(&self, status: &str) -> Result<Vec<RuntimeRecord>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM table_runtimes r WHERE r.status <> $1 ORDER BY r.table_id"
            )))
            .bind(status)
            .fetch_all(pool)
            .await
        })?)
    }

    /// `(table, due time)` of every runtime with one, to rebuild the due-time index at start-up.
    pub async fn due_runtimes(&self) -> Result<Vec<(i64, i64)>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as("SELECT table_id, due_at FROM table_runtimes WHERE due_at IS NOT NULL").fetch_all(pool).await
        })?)
    }

    /// Writes `runtime` if the stored status is still `expected_status`; false if it moved on.
    pub async fn update_runtime(&self, runtime: &RuntimeRecord, expected_status: &str) -> Result<bool> {
        let updated = on_pool!(self, write, |pool| {
            update_runtime_sql(runtime, expected_status).execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(updated == 1)
    }
}

/// The conditional update of a runtime row (shared with process transactions).
pub(crate) fn update_runtime_sql<'q, DB: sqlx::Database>(
    runtime: &'q RuntimeRecord,
    expected_status: &'q str,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "UPDATE table_runtimes SET group_name = $1, status = $2, status_since = $3, process_id = $4, last_evaluated_snapshot = $5, \
         last_minor_at = $6, last_major_at = $7, last_full_at = $8, last_plan_at = $9, pending_input = $10, summary = $11, \
         updated_at = $12, blocked = $15, due_at = $16 WHERE table_id = $13 AND status = $14",
    )
    .bind(runtime.group_name.as_str())
    .bind(runtime.status.as_str())
    .bind(runtime.status_since)
    .bind(runtime.process_id)
    .bind(runtime.last_evaluated_snapshot)
    .bind(runtime.last_minor_at)
    .bind(runtime.last_major_at)
    .bind(runtime.last_full_at)
    .bind(runtime.last_plan_at)
    .bind(runtime.pending_input.as_deref())
    .bind(runtime.summary.as_deref())
    .bind(crate::now_ms())
    .bind(runtime.table_id)
    .bind(expected_status)
    .bind(runtime.blocked.as_deref())
    .bind(runtime.due_at)
}
