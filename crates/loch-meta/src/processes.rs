//! Processes and their tasks. Every state change is one transaction guarded by the state it
//! expects (compare-and-set), so a stale actor — an optimizer that lost its task, a second
//! scheduler — changes nothing.

use sqlx::FromRow;

use crate::error::{MetaError, Result};
use crate::runtimes::{RuntimeRecord, update_runtime_sql};
use crate::store::{MetaStore, on_pool};

/// A stored process.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ProcessRecord {
    /// Process id.
    pub id: i64,
    /// The table it works on.
    pub table_id: i64,
    /// `optimizing` (maintenance kinds later).
    pub kind: String,
    /// `minor`, `major`, `full` (or a maintenance action).
    pub process_type: String,
    /// `running`, `success`, `failed` or `closed`.
    pub status: String,
    /// Optimizer group.
    pub group_name: String,
    /// Snapshot the process was planned on.
    pub target_snapshot_id: Option<i64>,
    /// Creation time (ms since epoch).
    pub created_at: i64,
    /// End time.
    pub finished_at: Option<i64>,
    /// Why it failed or was closed.
    pub fail_message: Option<String>,
    /// Input/output statistics (JSON).
    pub summary: String,
}

/// A stored task.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TaskRecord {
    /// Its process.
    pub process_id: i64,
    /// Task number within the process.
    pub task_id: i64,
    /// `planned`, `scheduled`, `acked`, `success`, `failed` or `canceled`.
    pub status: String,
    /// How often it was handed out; completions must name the current attempt.
    pub attempt: i64,
    /// Failed executions so far.
    pub retries: i64,
    /// The partition it rewrites, for display.
    pub partition_name: String,
    /// The task input (JSON).
    pub input: String,
    /// The task output (JSON), once successful.
    pub output: Option<String>,
    /// The optimizer holding it.
    pub optimizer_token: Option<String>,
    /// The optimizer thread holding it.
    pub thread_id: Option<i64>,
    /// When it entered this status (ms since epoch).
    pub status_since: i64,
    /// When the current attempt was acknowledged.
    pub started_at: Option<i64>,
    /// When it ended.
    pub finished_at: Option<i64>,
    /// Execution time over all attempts (ms).
    pub cost_ms: i64,
    /// Why the last attempt failed.
    pub fail_reason: Option<String>,
    /// Input files.
    pub input_files: i64,
    /// Input bytes.
    pub input_bytes: i64,
    /// Output files.
    pub output_files: i64,
    /// Output bytes.
    pub output_bytes: i64,
}

/// A task to create with its process.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Task number.
    pub task_id: i64,
    /// Its first status (the caller's state machine names it).
    pub status: String,
    /// Partition, for display.
    pub partition_name: String,
    /// Input (JSON).
    pub input: String,
    /// Input files.
    pub input_files: i64,
    /// Input bytes.
    pub input_bytes: i64,
}

/// A process to create.
#[derive(Debug, Clone)]
pub struct NewProcess {
    /// The table.
    pub table_id: i64,
    /// Process kind.
    pub kind: String,
    /// Process type.
    pub process_type: String,
    /// Its first status (the caller's state machine names it).
    pub status: String,
    /// Optimizer group.
    pub group_name: String,
    /// Planned snapshot.
    pub target_snapshot_id: Option<i64>,
    /// Statistics (JSON).
    pub summary: String,
}

/// The window of an ended task attempt, for quota accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRun {
    /// The table.
    pub table_id: i64,
    /// Start (ms since epoch).
    pub started_at: i64,
    /// End (ms since epoch).
    pub ended_at: i64,
}

const PROCESS_COLUMNS: &str = "id, table_id, kind, process_type, status, group_name, target_snapshot_id, created_at, finished_at, fail_message, summary";
const TASK_COLUMNS: &str = "process_id, task_id, status, attempt, retries, partition_name, input, output, optimizer_token, thread_id, \
                            status_since, started_at, finished_at, cost_ms, fail_reason, input_files, input_bytes, output_files, output_bytes";

/// Runs `$body` inside a write transaction bound to `$tx`; the body returns
/// `Ok(Result<T, MetaError>)` and commits only on `Ok(Ok(_))`.
/// The insert of a new process row (its id comes back), for either backend.
macro_rules! insert_process {
    ($process:expr, $now:expr) => {
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO processes (table_id, kind, process_type, status, group_name, target_snapshot_id, created_at, summary) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind($process.table_id)
        .bind(&$process.kind)
        .bind(&$process.process_type)
        .bind(&$process.status)
        .bind(&$process.group_name)
        .bind($process.target_snapshot_id)
        .bind($now)
        .bind(&$process.summary)
    };
}

macro_rules! in_write_tx {
    ($store:expr, |$tx:ident| $body:block) => {
        on_pool!($store, write, |pool| {
            async {
                let mut $tx = pool.begin().await?;
                let outcome: Result<_, MetaError> = $body;
                if outcome.is_ok() {
                    $tx.commit().await?;
                }
                Ok::<_, sqlx::Error>(outcome)
            }
            .await
        })?
    };
}

impl MetaStore {
    /// Creates a process and its tasks and moves the table's runtime from `expected_status` to
    /// `runtime` (which names the process), in one transaction. [`MetaError::Conflict`] if the
    /// runtime moved on meanwhile.
    pub async fn begin_process(
        &self,
        process: &NewProcess,
        tasks: &[NewTask],
        runtime: &RuntimeRecord,
        expected_status: &str,
    ) -> Result<i64> {
        let now = crate::now_ms();
        in_write_tx!(self, |tx| {
            let id: i64 = insert_process!(process, now).fetch_one(&mut *tx).await?;
            for task in tasks {
                sqlx::query(
                    "INSERT INTO tasks (process_id, task_id, status, attempt, retries, partition_name, input, status_since, cost_ms, \
                     input_files, input_bytes, output_files, output_bytes) VALUES ($1, $2, $8, 0, 0, $3, $4, $5, 0, $6, $7, 0, 0)",
                )
                .bind(id)
                .bind(task.task_id)
                .bind(&task.partition_name)
                .bind(&task.input)
                .bind(now)
                .bind(task.input_files)
                .bind(task.input_bytes)
                .bind(&task.status)
                .execute(&mut *tx)
                .await?;
            }
            let mut runtime = runtime.clone();
            runtime.process_id = Some(id);
            let moved = update_runtime_sql(&runtime, expected_status).execute(&mut *tx).await?.rows_affected();
            if moved == 1 { Ok(id) } else { Err(MetaError::Conflict(format!("runtime of table {}", process.table_id))) }
        })
    }

    /// Ends a process (`expected_status` → `process.status`, with its finish time, message and
    /// summary) and moves the runtime from `runtime_expected` to `runtime`, in one transaction.
    /// Its tasks not in `success` status are put in `canceled` status (the caller's names).
    pub async fn finish_process(
        &self,
        process: &ProcessRecord,
        expected_status: &str,
        [success, canceled]: [&str; 2],
        runtime: &RuntimeRecord,
        runtime_expected: &str,
    ) -> Result<()> {
        let now = crate::now_ms();
        in_write_tx!(self, |tx| {
            let updated = sqlx::query(
                "UPDATE processes SET status = $1, finished_at = $2, fail_message = $3, summary = $4 WHERE id = $5 AND status = $6",
            )
            .bind(&process.status)
            .bind(process.finished_at)
            .bind(&process.fail_message)
            .bind(&process.summary)
            .bind(process.id)
            .bind(expected_status)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated != 1 {
                Err(MetaError::Conflict(format!("process {}", process.id)))
            } else {
                sqlx::query(
                    "UPDATE tasks SET status = $3, status_since = $1, optimizer_token = NULL, thread_id = NULL \
                     WHERE process_id = $2 AND status <> $3 AND status <> $4",
                )
                .bind(now)
                .bind(process.id)
                .bind(canceled)
                .bind(success)
                .execute(&mut *tx)
                .await?;
                let moved = update_runtime_sql(runtime, runtime_expected).execute(&mut *tx).await?.rows_affected();
                if moved == 1 {
                    Ok(())
                } else {
                    Err(MetaError::Conflict(format!("runtime of table {}", process.table_id)))
                }
            }
        })
    }

    /// Starts a process that has no tasks and moves no runtime (a maintenance run); its id.
    pub async fn start_process(&self, process: &NewProcess) -> Result<i64> {
        let now = crate::now_ms();
        Ok(on_pool!(self, write, |pool| insert_process!(process, now).fetch_one(pool).await)?)
    }

    /// Writes a process without tasks or runtime (its status, end, message and summary), if it
    /// is still in `expected_status`; false when another actor changed it first.
    pub async fn update_process_alone(&self, process: &ProcessRecord, expected_status: &str) -> Result<bool> {
        let updated = on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE processes SET status = $1, finished_at = $2, fail_message = $3, summary = $4 WHERE id = $5 AND status = $6",
            )
            .bind(&process.status)
            .bind(process.finished_at)
            .bind(&process.fail_message)
            .bind(&process.summary)
            .bind(process.id)
            .bind(expected_status)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(updated == 1)
    }

    /// A table's processes of `kind`, newest first: at most `limit`, after skipping `offset`.
    pub async fn list_processes_of_kind(
        &self,
        table_id: i64,
        kind: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<ProcessRecord>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {PROCESS_COLUMNS} FROM processes WHERE table_id = $1 AND kind = $2 ORDER BY id DESC LIMIT $3 OFFSET $4"
            )))
            .bind(table_id)
            .bind(kind)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await
        })?)
    }

    /// The latest process of each type of `kind` of each table (of table `table_id` only, when
    /// given).
    pub async fn latest_processes(&self, kind: &str, table_id: Option<i64>) -> Result<Vec<ProcessRecord>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {PROCESS_COLUMNS} FROM processes WHERE id IN (SELECT MAX(id) FROM processes \
                 WHERE kind = $1 AND ($2 < 0 OR table_id = $2) GROUP BY table_id, process_type) ORDER BY id"
            )))
            .bind(kind)
            .bind(table_id.unwrap_or(-1))
            .fetch_all(pool)
            .await
        })?)
    }

    /// A process by id.
    pub async fn get_process(&self, id: i64) -> Result<Option<ProcessRecord>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {PROCESS_COLUMNS} FROM processes WHERE id = $1")))
                .bind(id)
                .fetch_optional(pool)
                .await
        })?)
    }

    /// The processes of a table, newest first, at most `limit`.
    pub async fn list_processes(&self, table_id: i64, limit: i64) -> Result<Vec<ProcessRecord>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {PROCESS_COLUMNS} FROM processes WHERE table_id = $1 ORDER BY id DESC LIMIT $2"
            )))
            .bind(table_id)
            .bind(limit)
            .fetch_all(pool)
            .await
        })?)
    }

    /// Processes that have not ended (no end time: a process runs until it has one), oldest
    /// first.
    pub async fn running_processes(&self) -> Result<Vec<ProcessRecord>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {PROCESS_COLUMNS} FROM processes WHERE finished_at IS NULL ORDER BY id"
            )))
            .fetch_all(pool)
            .await
        })?)
    }

    /// Updates a running process's summary.
    pub async fn update_process_summary(&self, id: i64, summary: &str) -> Result<()> {
        on_pool!(self, write, |pool| {
            sqlx::query("UPDATE processes SET summary = $1 WHERE id = $2")
                .bind(summary)
                .bind(id)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// The tasks of a process, by task id.
    pub async fn list_tasks(&self, process_id: i64) -> Result<Vec<TaskRecord>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE process_id = $1 ORDER BY task_id"
            )))
            .bind(process_id)
            .fetch_all(pool)
            .await
        })?)
    }

    /// One task.
    pub async fn get_task(&self, process_id: i64, task_id: i64) -> Result<Option<TaskRecord>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE process_id = $1 AND task_id = $2"
            )))
            .bind(process_id)
            .bind(task_id)
            .fetch_optional(pool)
            .await
        })?)
    }

    /// Tasks of running processes of `group` in one of `statuses`, in process and task order.
    pub async fn group_tasks(&self, group: &str, statuses: &[&str]) -> Result<Vec<(i64, TaskRecord)>> {
        #[derive(FromRow)]
        struct Row {
            table_id: i64,
            #[sqlx(flatten)]
            task: TaskRecord,
        }
        let rows: Vec<Row> = on_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT p.table_id, {} FROM tasks t JOIN processes p ON p.id = t.process_id \
                 WHERE p.finished_at IS NULL AND p.group_name = $1 ORDER BY t.process_id, t.task_id",
                TASK_COLUMNS.split(", ").map(|c| format!("t.{}", c.trim())).collect::<Vec<_>>().join(", ")
            )))
            .bind(group)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .filter(|r| statuses.contains(&r.task.status.as_str()))
            .map(|r| (r.table_id, r.task))
            .collect())
    }

    /// Tasks of every running process in one of `statuses`.
    pub async fn active_tasks(&self, statuses: &[&str]) -> Result<Vec<TaskRecord>> {
        let rows: Vec<TaskRecord> = on_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM tasks t JOIN processes p ON p.id = t.process_id WHERE p.finished_at IS NULL ORDER BY t.process_id, t.task_id",
                TASK_COLUMNS.split(", ").map(|c| format!("t.{}", c.trim())).collect::<Vec<_>>().join(", ")
            )))
            .fetch_all(pool)
            .await
        })?;
        Ok(rows.into_iter().filter(|t| statuses.contains(&t.status.as_str())).collect())
    }

    /// Writes `task` if the stored one still has `expected_status` and `expected_attempt`;
    /// records `run` (an ended attempt) in the same transaction. False if the task moved on.
    pub async fn update_task(
        &self,
        task: &TaskRecord,
        expected_status: &str,
        expected_attempt: i64,
        run: Option<TaskRun>,
    ) -> Result<bool> {
        let outcome = in_write_tx!(self, |tx| {
            let updated = sqlx::query(
                "UPDATE tasks SET status = $1, attempt = $2, retries = $3, output = $4, optimizer_token = $5, thread_id = $6, \
                 status_since = $7, started_at = $8, finished_at = $9, cost_ms = $10, fail_reason = $11, output_files = $12, \
                 output_bytes = $13 WHERE process_id = $14 AND task_id = $15 AND status = $16 AND attempt = $17",
            )
            .bind(&task.status)
            .bind(task.attempt)
            .bind(task.retries)
            .bind(&task.output)
            .bind(&task.optimizer_token)
            .bind(task.thread_id)
            .bind(task.status_since)
            .bind(task.started_at)
            .bind(task.finished_at)
            .bind(task.cost_ms)
            .bind(&task.fail_reason)
            .bind(task.output_files)
            .bind(task.output_bytes)
            .bind(task.process_id)
            .bind(task.task_id)
            .bind(expected_status)
            .bind(expected_attempt)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated != 1 {
                Err(MetaError::Conflict(format!("task {}/{}", task.process_id, task.task_id)))
            } else {
                if let Some(run) = run {
                    sqlx::query(
                        "INSERT INTO task_runs (process_id, task_id, attempt, table_id, started_at, ended_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(task.process_id)
                    .bind(task.task_id)
                    .bind(expected_attempt)
                    .bind(run.table_id)
                    .bind(run.started_at)
                    .bind(run.ended_at)
                    .execute(&mut *tx)
                    .await?;
                }
                Ok(())
            }
        });
        match outcome {
            Ok(()) => Ok(true),
            Err(MetaError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Ended task attempts of a group's tables that overlap `[since, now]`.
    pub async fn task_runs_since(&self, since_ms: i64) -> Result<Vec<TaskRun>> {
        let rows: Vec<(i64, i64, i64)> = on_pool!(self, read, |pool| {
            sqlx::query_as("SELECT table_id, started_at, ended_at FROM task_runs WHERE ended_at >= $1")
                .bind(since_ms)
                .fetch_all(pool)
                .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(table_id, started_at, ended_at)| TaskRun { table_id, started_at, ended_at })
            .collect())
    }

    /// Deletes finished processes (and their tasks) and task runs that ended before `before_ms`.
    pub async fn purge_history(&self, before_ms: i64) -> Result<u64> {
        let deleted = in_write_tx!(self, |tx| {
            sqlx::query("DELETE FROM task_runs WHERE ended_at < $1").bind(before_ms).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM tasks WHERE process_id IN (SELECT id FROM processes WHERE finished_at < $1)")
                .bind(before_ms)
                .execute(&mut *tx)
                .await?;
            let n = sqlx::query("DELETE FROM processes WHERE finished_at < $1")
                .bind(before_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            Ok::<u64, MetaError>(n)
        })?;
        Ok(deleted)
    }
}
