//! Management API types of self-optimizing (`/api/v1/optimizer-groups`, table processes).
//!
//! A process is any background action on a table: `kind` says which (`optimizing` now; table
//! maintenance actions later), `type` refines it (`minor`, `major`, `full` for optimizing).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An optimizer group with what currently serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OptimizerGroup {
    /// Unique name; tables choose it with `self-optimizing.group`.
    pub name: String,
    /// Group properties: `scheduling-policy` (`quota` or `balanced`),
    /// `max-input-file-size-per-thread`.
    pub properties: BTreeMap<String, String>,
    /// Registered optimizers.
    pub optimizers: usize,
    /// Their threads in total.
    pub threads: i64,
    /// Tables in the group.
    pub tables: usize,
    /// Creation time, ms since epoch.
    pub created_at: i64,
    /// Last change, ms since epoch.
    pub updated_at: i64,
}

/// Body of `POST /api/v1/optimizer-groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateGroupRequest {
    /// Unique name (letters, digits, `_`, `-`).
    pub name: String,
    /// Group properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Body of `PUT /api/v1/optimizer-groups/{name}`: the complete new property set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateGroupRequest {
    /// New properties.
    pub properties: BTreeMap<String, String>,
}

/// A registered optimizer (the server's own threads or a `loch optimizer` process).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Optimizer {
    /// Short id (a prefix of its token; the token itself is a credential and never shown).
    pub id: String,
    /// Group it serves.
    pub group: String,
    /// `embedded` (inside `loch serve`) or `external`.
    pub kind: String,
    /// Executor threads.
    pub threads: i64,
    /// Memory it reported, in MiB.
    pub memory_mb: i64,
    /// Properties it reported (host, pid, version).
    pub properties: BTreeMap<String, String>,
    /// Tasks it holds now.
    pub running_tasks: usize,
    /// Registration time, ms since epoch.
    pub registered_at: i64,
    /// Last heartbeat, ms since epoch.
    pub last_heartbeat: i64,
}

/// A table's optimizing state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableOptimizing {
    /// Catalog name.
    pub catalog: String,
    /// Namespace levels.
    pub namespace: Vec<String>,
    /// Table name.
    pub table: String,
    /// Optimizer group.
    pub group: String,
    /// `idle`, `pending`, `planning`, `minor`, `major`, `full` (optimizing) or `committing`.
    pub status: String,
    /// When it entered that status, ms since epoch.
    pub status_since: i64,
    /// The running process, if any.
    pub process_id: Option<i64>,
    /// What the last evaluation found pending: type, partitions, files, bytes.
    #[schema(value_type = Option<Object>)]
    pub pending: Option<serde_json::Value>,
    /// Files waiting for optimizing (0 when nothing is pending).
    pub pending_files: u64,
    /// Last evaluation's summary: file counts and sizes per class, health score.
    #[schema(value_type = Option<Object>)]
    pub summary: Option<serde_json::Value>,
    /// Last minor optimizing, ms since epoch.
    pub last_minor_at: Option<i64>,
    /// Last major optimizing, ms since epoch.
    pub last_major_at: Option<i64>,
    /// Last full optimizing, ms since epoch.
    pub last_full_at: Option<i64>,
    /// Last plan, ms since epoch: the next comes `self-optimizing.min-plan-interval` later at
    /// the earliest.
    #[serde(default)]
    pub last_plan_at: Option<i64>,
    /// Why self-optimizing skips the table until it changes (files Loch cannot rewrite yet, or
    /// a process that failed); absent when it does not.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub blocked: Option<String>,
    /// The last run of each maintenance action, by action; absent when none ran.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty", default)]
    pub maintenance: std::collections::BTreeMap<String, MaintenanceRun>,
}

/// Body of `POST /api/v1/tables/{catalog}/{namespace}/{table}/optimizing/processes`: plan a
/// process now (`OPTIMIZE t [FULL]`) instead of waiting for the triggers' intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OptimizeRequest {
    /// Take the full trigger as due too, so partitions worth a full rewrite get one.
    #[serde(default)]
    pub full: bool,
}

/// What a requested plan came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OptimizeResponse {
    /// The process planned; absent when nothing is worth optimizing.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub process: Option<Process>,
    /// One line saying what happened.
    pub message: String,
}

/// A process run on a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    /// Process id.
    pub id: i64,
    /// What it does: `optimizing` (maintenance actions later).
    pub kind: String,
    /// Refinement of `kind`: `minor`, `major` or `full` for optimizing.
    #[serde(rename = "type")]
    pub process_type: String,
    /// `running`, `success`, `failed` or `closed` (canceled, or ended by a restart).
    pub status: String,
    /// Optimizer group that runs it.
    pub group: String,
    /// The snapshot it was planned against.
    pub target_snapshot_id: Option<i64>,
    /// The snapshot its commit produced.
    pub committed_snapshot_id: Option<i64>,
    /// Start, ms since epoch.
    pub created_at: i64,
    /// End, ms since epoch.
    pub finished_at: Option<i64>,
    /// Wall time so far or in total, in ms.
    pub duration_ms: i64,
    /// Why it failed or was closed.
    pub fail_message: Option<String>,
    /// Number of tasks.
    pub tasks: usize,
    /// Input files (data and delete).
    pub input_files: i64,
    /// Input bytes.
    pub input_bytes: i64,
    /// Files written (known once every task succeeded).
    pub output_files: i64,
    /// Bytes written.
    pub output_bytes: i64,
    /// For a keyed table, inputs and outputs per store (its base store and change store).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stores: Option<StoreFiles>,
}

/// A keyed table's process, per store: change files folded, base files rewritten or
/// repositioned, and what it wrote (always into the base store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreFiles {
    /// Change-store files read (inserts and deletes).
    pub change_input_files: i64,
    /// Their bytes.
    pub change_input_bytes: i64,
    /// Base-store files read (data and position deletes).
    pub base_input_files: i64,
    /// Their bytes.
    pub base_input_bytes: i64,
    /// Base-store files written (data and position deletes).
    pub base_output_files: i64,
    /// Their bytes.
    pub base_output_bytes: i64,
}

/// A maintenance run on a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceRun {
    /// Run id (a process id).
    pub id: i64,
    /// The action: `expire-snapshots`.
    pub action: String,
    /// `running`, `success` or `failed`.
    pub status: String,
    /// Start, ms since epoch.
    pub started_at: i64,
    /// End, ms since epoch.
    pub finished_at: Option<i64>,
    /// Why it failed.
    pub fail_message: Option<String>,
    /// What it did: snapshots expired, refs removed, files and bytes deleted, the first paths.
    #[schema(value_type = Object)]
    pub summary: Option<serde_json::Value>,
}

/// A task of a process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Process id.
    pub process_id: i64,
    /// Task id within the process.
    pub task_id: i64,
    /// `planned`, `scheduled`, `acked`, `success`, `failed` or `canceled`.
    pub status: String,
    /// How many times it was handed out.
    pub attempt: i64,
    /// Failed executions so far.
    pub retries: i64,
    /// Partition it works on.
    pub partition: String,
    /// Short id of the optimizer holding it.
    pub optimizer: Option<String>,
    /// Thread of that optimizer.
    pub thread_id: Option<i64>,
    /// When it entered its status, ms since epoch.
    pub status_since: i64,
    /// Start of the current execution, ms since epoch.
    pub started_at: Option<i64>,
    /// End, ms since epoch.
    pub finished_at: Option<i64>,
    /// Execution time summed over attempts, in ms.
    pub cost_ms: i64,
    /// Why the last execution failed.
    pub fail_reason: Option<String>,
    /// Input files.
    pub input_files: i64,
    /// Input bytes.
    pub input_bytes: i64,
    /// Files written.
    pub output_files: i64,
    /// Bytes written.
    pub output_bytes: i64,
}
