//! Management API of self-optimizing: optimizer groups (CRUD), their optimizers and tables, and
//! each table's processes and tasks (`/api/v1/tables/{catalog}/{namespace}/{table}/...`, where
//! namespace levels are separated by `.` or U+001F).

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use loch_api::ErrorResponse;
use loch_api::optimizing::{
    CreateGroupRequest, MaintenanceRun, OptimizeRequest, OptimizeResponse, Optimizer, OptimizerGroup, Process,
    StoreFiles, TableOptimizing, Task, UpdateGroupRequest,
};
use loch_catalog::TableName;
use loch_meta::{GroupRecord, NamedRuntime, OptimizerRecord, TaskRecord, now_ms};
use loch_optimizing::TableProcess;
use loch_optimizing::maintenance::{MaintenanceAction, RunOptions};
use serde::Deserialize;

use crate::error::{ApiError, ApiPath, ApiQuery, JsonBody};
use crate::rest::split_namespace;
use crate::state::AppState;

/// Routes of the optimizing management API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/optimizer-groups", get(list_groups).post(create_group))
        .route("/api/v1/optimizer-groups/{name}", get(get_group).put(update_group).delete(delete_group))
        .route("/api/v1/optimizer-groups/{name}/optimizers", get(group_optimizers))
        .route("/api/v1/optimizer-groups/{name}/optimizers/{id}/release", post(release_optimizer))
        .route("/api/v1/optimizer-groups/{name}/tables", get(group_tables))
        .route("/api/v1/tables/{catalog}/{namespace}/{table}/optimizing", get(table_optimizing))
        .route(
            "/api/v1/tables/{catalog}/{namespace}/{table}/optimizing/processes",
            get(list_processes).post(optimize_table),
        )
        .route("/api/v1/tables/{catalog}/{namespace}/{table}/optimizing/processes/{id}", get(get_process))
        .route("/api/v1/tables/{catalog}/{namespace}/{table}/optimizing/processes/{id}/tasks", get(list_tasks))
        .route("/api/v1/tables/{catalog}/{namespace}/{table}/optimizing/processes/{id}/cancel", post(cancel_process))
        .route("/api/v1/tables/{catalog}/{namespace}/{table}/maintenance/runs", get(list_maintenance_runs))
        .route("/api/v1/tables/{catalog}/{namespace}/{table}/maintenance/{action}", post(run_maintenance))
}

/// First characters of an optimizer token: enough to tell optimizers apart, useless as a
/// credential.
fn short_id(token: &str) -> String {
    token.chars().take(8).collect()
}

async fn group_dto(state: &AppState, record: GroupRecord) -> Result<OptimizerGroup, ApiError> {
    let optimizers = state.optimizing.optimizers(Some(&record.name)).await?;
    let tables = state.optimizing.runtimes(Some(&record.name)).await?.len();
    Ok(OptimizerGroup {
        optimizers: optimizers.len(),
        threads: optimizers.iter().map(|o| o.threads).sum(),
        tables,
        name: record.name,
        properties: record.properties,
        created_at: record.created_at,
        updated_at: record.updated_at,
    })
}

fn optimizer_dto(record: OptimizerRecord, running: &HashMap<String, usize>) -> Optimizer {
    Optimizer {
        id: short_id(&record.token),
        running_tasks: running.get(&record.token).copied().unwrap_or(0),
        group: record.group_name,
        kind: record.kind,
        threads: record.threads,
        memory_mb: record.memory_mb,
        properties: serde_json::from_str::<BTreeMap<String, String>>(&record.properties).unwrap_or_default(),
        registered_at: record.registered_at,
        last_heartbeat: record.touched_at,
    }
}

fn table_dto(named: NamedRuntime) -> TableOptimizing {
    let runtime = named.runtime;
    let pending: Option<serde_json::Value> =
        runtime.pending_input.as_deref().and_then(|p| serde_json::from_str(p).ok());
    TableOptimizing {
        catalog: named.catalog,
        namespace: named.namespace,
        table: named.table,
        group: runtime.group_name,
        status: runtime.status,
        status_since: runtime.status_since,
        process_id: runtime.process_id,
        pending_files: pending.as_ref().and_then(|p| p["files"].as_u64()).unwrap_or(0),
        pending,
        summary: runtime.summary.as_deref().and_then(|s| serde_json::from_str(s).ok()),
        last_minor_at: runtime.last_minor_at,
        last_major_at: runtime.last_major_at,
        last_full_at: runtime.last_full_at,
        last_plan_at: runtime.last_plan_at,
        blocked: runtime.blocked,
        maintenance: Default::default(),
    }
}

fn process_dto(record: TableProcess) -> Process {
    let summary = record.optimizing();
    Process {
        id: record.id,
        kind: record.action.kind().into(),
        process_type: record.action.type_name().into(),
        status: record.status.as_str().into(),
        group: record.group_name,
        target_snapshot_id: record.target_snapshot_id,
        committed_snapshot_id: summary.committed_snapshot_id,
        duration_ms: record.finished_at.unwrap_or_else(now_ms) - record.created_at,
        created_at: record.created_at,
        finished_at: record.finished_at,
        fail_message: record.fail_message,
        tasks: summary.tasks,
        input_files: summary.input_files,
        input_bytes: summary.input_bytes,
        output_files: summary.output_files,
        output_bytes: summary.output_bytes,
        stores: summary.keyed.then(|| StoreFiles {
            change_input_files: summary.change_input_files,
            change_input_bytes: summary.change_input_bytes,
            base_input_files: summary.input_files - summary.change_input_files,
            base_input_bytes: summary.input_bytes - summary.change_input_bytes,
            base_output_files: summary.output_files,
            base_output_bytes: summary.output_bytes,
        }),
    }
}

fn task_dto(record: TaskRecord) -> Task {
    Task {
        process_id: record.process_id,
        task_id: record.task_id,
        status: record.status,
        attempt: record.attempt,
        retries: record.retries,
        partition: record.partition_name,
        optimizer: record.optimizer_token.as_deref().map(short_id),
        thread_id: record.thread_id,
        status_since: record.status_since,
        started_at: record.started_at,
        finished_at: record.finished_at,
        cost_ms: record.cost_ms,
        fail_reason: record.fail_reason,
        input_files: record.input_files,
        input_bytes: record.input_bytes,
        output_files: record.output_files,
        output_bytes: record.output_bytes,
    }
}

/// List optimizer groups.
#[utoipa::path(get, path = "/api/v1/optimizer-groups", tag = "optimizing", responses((status = 200, body = [OptimizerGroup])))]
pub async fn list_groups(State(state): State<AppState>) -> Result<Json<Vec<OptimizerGroup>>, ApiError> {
    let mut groups = Vec::new();
    for record in state.optimizing.groups().await? {
        groups.push(group_dto(&state, record).await?);
    }
    Ok(Json(groups))
}

/// Create an optimizer group.
#[utoipa::path(post, path = "/api/v1/optimizer-groups", tag = "optimizing", request_body = CreateGroupRequest,
    responses((status = 201, body = OptimizerGroup), (status = 400, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn create_group(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateGroupRequest>,
) -> Result<(StatusCode, Json<OptimizerGroup>), ApiError> {
    let record = state.optimizing.create_group(&request.name, request.properties).await?;
    tracing::info!(group = %record.name, "created optimizer group");
    Ok((StatusCode::CREATED, Json(group_dto(&state, record).await?)))
}

/// Get an optimizer group.
#[utoipa::path(get, path = "/api/v1/optimizer-groups/{name}", tag = "optimizing", params(("name" = String, Path, description = "Group name")),
    responses((status = 200, body = OptimizerGroup), (status = 404, body = ErrorResponse)))]
pub async fn get_group(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<OptimizerGroup>, ApiError> {
    let record = state.optimizing.group(&name).await?;
    Ok(Json(group_dto(&state, record).await?))
}

/// Replace an optimizer group's properties.
#[utoipa::path(put, path = "/api/v1/optimizer-groups/{name}", tag = "optimizing", request_body = UpdateGroupRequest,
    params(("name" = String, Path, description = "Group name")),
    responses((status = 200, body = OptimizerGroup), (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn update_group(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    JsonBody(request): JsonBody<UpdateGroupRequest>,
) -> Result<Json<OptimizerGroup>, ApiError> {
    let record = state.optimizing.update_group(&name, request.properties).await?;
    tracing::info!(group = %name, "updated optimizer group");
    Ok(Json(group_dto(&state, record).await?))
}

/// Delete an optimizer group; refused while tables or optimizers use it, and for `default`.
#[utoipa::path(delete, path = "/api/v1/optimizer-groups/{name}", tag = "optimizing", params(("name" = String, Path, description = "Group name")),
    responses((status = 204), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn delete_group(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.optimizing.delete_group(&name).await?;
    tracing::info!(group = %name, "deleted optimizer group");
    Ok(StatusCode::NO_CONTENT)
}

/// List the optimizers serving a group, with the tasks each holds.
#[utoipa::path(get, path = "/api/v1/optimizer-groups/{name}/optimizers", tag = "optimizing", params(("name" = String, Path, description = "Group name")),
    responses((status = 200, body = [Optimizer]), (status = 404, body = ErrorResponse)))]
pub async fn group_optimizers(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<Optimizer>>, ApiError> {
    state.optimizing.group(&name).await?;
    let running = state.optimizing.running_tasks_by_optimizer().await?;
    let optimizers = state.optimizing.optimizers(Some(&name)).await?;
    Ok(Json(optimizers.into_iter().map(|o| optimizer_dto(o, &running)).collect()))
}

/// Path of one optimizer of a group.
#[derive(Debug, Deserialize)]
pub struct OptimizerPath {
    /// The group.
    pub(crate) name: String,
    /// The optimizer's id as listed.
    pub(crate) id: String,
}

/// Release an external optimizer (Amoro's "release"): the server forgets it, hands its tasks
/// to other optimizers, and its next call tells the `loch optimizer` process to stop.
#[utoipa::path(post, path = "/api/v1/optimizer-groups/{name}/optimizers/{id}/release", tag = "optimizing",
    params(("name" = String, Path, description = "Group name"), ("id" = String, Path, description = "Optimizer id as listed")),
    responses((status = 200, body = Optimizer), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn release_optimizer(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<OptimizerPath>,
) -> Result<Json<Optimizer>, ApiError> {
    state.optimizing.group(&path.name).await?;
    let optimizer = state.optimizing.release(&path.name, &path.id).await?;
    Ok(Json(optimizer_dto(optimizer, &HashMap::new())))
}

/// List the tables of a group with their optimizing status and pending files.
#[utoipa::path(get, path = "/api/v1/optimizer-groups/{name}/tables", tag = "optimizing", params(("name" = String, Path, description = "Group name")),
    responses((status = 200, body = [TableOptimizing]), (status = 404, body = ErrorResponse)))]
pub async fn group_tables(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<TableOptimizing>>, ApiError> {
    state.optimizing.group(&name).await?;
    Ok(Json(state.optimizing.runtimes(Some(&name)).await?.into_iter().map(table_dto).collect()))
}

/// Path of a table in the management API.
#[derive(Debug, Deserialize)]
pub struct TablePath {
    /// The catalog.
    pub(crate) catalog: String,
    /// The namespace (levels separated by U+001F or `.`).
    pub(crate) namespace: String,
    /// The table.
    pub(crate) table: String,
}

/// Path of a process of a table.
#[derive(Debug, Deserialize)]
pub struct ProcessPath {
    pub(crate) catalog: String,
    pub(crate) namespace: String,
    pub(crate) table: String,
    pub(crate) id: i64,
}

/// Resolves a table to its id (404 when unknown). The namespace is the REST spec's form (levels
/// separated by U+001F, `%1F` in the path) or, for convenience, levels separated by `.`; a
/// name without U+001F is first tried as one level, so a namespace `x.y` can be addressed.
pub(crate) async fn table_id(state: &AppState, catalog: &str, namespace: &str, table: &str) -> Result<i64, ApiError> {
    let catalog = state.catalog(catalog).await?;
    let candidates = if namespace.contains('\u{1f}') {
        vec![split_namespace(namespace)]
    } else if namespace.contains('.') {
        vec![vec![namespace.to_string()], namespace.split('.').map(str::to_string).collect()]
    } else {
        vec![vec![namespace.to_string()]]
    };
    let mut result = Err(ApiError::bad_request("no namespace"));
    for levels in candidates {
        result =
            state.catalogs.table_id(&catalog, &TableName::new(levels, table.to_string())).await.map_err(Into::into);
        if result.is_ok() {
            break;
        }
    }
    result
}

/// A table's optimizing status.
#[utoipa::path(get, path = "/api/v1/tables/{catalog}/{namespace}/{table}/optimizing", tag = "optimizing",
    params(("catalog" = String, Path), ("namespace" = String, Path, description = "Levels separated by U+001F (`%1F`) or `.`"), ("table" = String, Path)),
    responses((status = 200, body = TableOptimizing), (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn table_optimizing(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<TablePath>,
) -> Result<Json<TableOptimizing>, ApiError> {
    let id = table_id(&state, &path.catalog, &path.namespace, &path.table).await?;
    let runtime = state.optimizing.table_runtime(id).await?;
    let mut dto = table_dto(runtime);
    dto.maintenance = last_runs(state.optimizing.last_maintenance_runs(Some(id)).await?);
    Ok(Json(dto))
}

/// Paging of process lists.
#[derive(Debug, Deserialize)]
pub struct ProcessQuery {
    pub(crate) limit: Option<i64>,
}

/// A table's processes, newest first (`limit`, default 50, at most 1000).
#[utoipa::path(get, path = "/api/v1/tables/{catalog}/{namespace}/{table}/optimizing/processes", tag = "optimizing",
    params(("catalog" = String, Path), ("namespace" = String, Path, description = "Levels separated by U+001F (`%1F`) or `.`"), ("table" = String, Path),
        ("limit" = Option<i64>, Query, description = "Most processes returned")),
    responses((status = 200, body = [Process]), (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn list_processes(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<TablePath>,
    ApiQuery(query): ApiQuery<ProcessQuery>,
) -> Result<Json<Vec<Process>>, ApiError> {
    let id = table_id(&state, &path.catalog, &path.namespace, &path.table).await?;
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    Ok(Json(state.optimizing.processes(id, limit).await?.into_iter().map(process_dto).collect()))
}

/// One process of a table.
#[utoipa::path(get, path = "/api/v1/tables/{catalog}/{namespace}/{table}/optimizing/processes/{id}", tag = "optimizing",
    params(("catalog" = String, Path), ("namespace" = String, Path), ("table" = String, Path), ("id" = i64, Path)),
    responses((status = 200, body = Process), (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn get_process(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ProcessPath>,
) -> Result<Json<Process>, ApiError> {
    let id = table_id(&state, &path.catalog, &path.namespace, &path.table).await?;
    Ok(Json(process_dto(state.optimizing.process(id, path.id).await?)))
}

/// The tasks of a process.
#[utoipa::path(get, path = "/api/v1/tables/{catalog}/{namespace}/{table}/optimizing/processes/{id}/tasks", tag = "optimizing",
    params(("catalog" = String, Path), ("namespace" = String, Path), ("table" = String, Path), ("id" = i64, Path)),
    responses((status = 200, body = [Task]), (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn list_tasks(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ProcessPath>,
) -> Result<Json<Vec<Task>>, ApiError> {
    let id = table_id(&state, &path.catalog, &path.namespace, &path.table).await?;
    Ok(Json(state.optimizing.tasks(id, path.id).await?.into_iter().map(task_dto).collect()))
}

/// Cancel a running process: its tasks are canceled and the table returns to idle.
#[utoipa::path(post, path = "/api/v1/tables/{catalog}/{namespace}/{table}/optimizing/processes/{id}/cancel", tag = "optimizing",
    params(("catalog" = String, Path), ("namespace" = String, Path), ("table" = String, Path), ("id" = i64, Path)),
    responses((status = 200, body = Process), (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn cancel_process(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ProcessPath>,
) -> Result<Json<Process>, ApiError> {
    let id = table_id(&state, &path.catalog, &path.namespace, &path.table).await?;
    let process = state.optimizing.cancel_process(id, path.id).await?;
    tracing::info!(process = path.id, "process canceled by request");
    Ok(Json(process_dto(process)))
}

/// Plan a process on the table now (`OPTIMIZE t [FULL]`): its minor trigger interval (and with
/// `full` its full trigger interval) count as passed, so every partition worth rewriting by
/// the table's rules is planned; the optimizer group's threads run it as any other process.
#[utoipa::path(post, path = "/api/v1/tables/{catalog}/{namespace}/{table}/optimizing/processes", tag = "optimizing",
    params(("catalog" = String, Path), ("namespace" = String, Path, description = "Levels separated by U+001F (`%1F`) or `.`"), ("table" = String, Path)),
    request_body = OptimizeRequest,
    responses((status = 200, body = OptimizeResponse, description = "The process planned, or why none was"), (status = 400, body = ErrorResponse),
        (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse, description = "The table is being optimized, self-optimizing is off for it, or Loch cannot rewrite its files")))]
pub async fn optimize_table(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<TablePath>,
    JsonBody(request): JsonBody<OptimizeRequest>,
) -> Result<Json<OptimizeResponse>, ApiError> {
    let id = table_id(&state, &path.catalog, &path.namespace, &path.table).await?;
    let process = state.optimizing.optimize_now(id, request.full).await?.map(process_dto);
    let message = match &process {
        Some(p) => format!(
            "process {} planned: {} optimizing in {} task{}",
            p.id,
            p.process_type,
            p.tasks,
            if p.tasks == 1 { "" } else { "s" }
        ),
        None => "nothing is worth optimizing".to_string(),
    };
    tracing::info!(table = %path.table, full = request.full, %message, "optimizing requested");
    Ok(Json(OptimizeResponse { process, message }))
}

/// A maintenance action on a table.
#[derive(Debug, Deserialize)]
pub struct MaintenancePath {
    pub(crate) catalog: String,
    pub(crate) namespace: String,
    pub(crate) table: String,
    pub(crate) action: String,
}

/// Options of a maintenance run.
#[derive(Debug, Deserialize)]
pub struct MaintenanceQuery {
    pub(crate) dry_run: Option<bool>,
    pub(crate) retain_last: Option<usize>,
}

/// Run a maintenance action on a table now (`expire-snapshots`); with `dry_run=true`, report
/// what it would delete (counts, bytes, the first 1,000 paths) and change nothing. The table's
/// switches and thresholds apply.
#[utoipa::path(post, path = "/api/v1/tables/{catalog}/{namespace}/{table}/maintenance/{action}", tag = "maintenance",
    params(("catalog" = String, Path), ("namespace" = String, Path, description = "Levels separated by U+001F (`%1F`) or `.`"), ("table" = String, Path),
        ("action" = String, Path, description = "expire-snapshots"),
        ("dry_run" = Option<bool>, Query, description = "Report only"),
        ("retain_last" = Option<usize>, Query, description = "expire-snapshots only: keep this many newest snapshots of each branch, expire every older one whatever its age")),
    responses((status = 200, body = Object, description = "The run's summary"), (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn run_maintenance(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<MaintenancePath>,
    ApiQuery(query): ApiQuery<MaintenanceQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let action = MaintenanceAction::parse(&path.action)?;
    let id = table_id(&state, &path.catalog, &path.namespace, &path.table).await?;
    let dry_run = query.dry_run.unwrap_or(false);
    let options = RunOptions { dry_run, retain_last: query.retain_last };
    let summary = state.optimizing.run_maintenance(id, action, options).await?;
    tracing::info!(table = %path.table, action = action.as_str(), dry_run, "maintenance run by request");
    Ok(Json(serde_json::to_value(summary).map_err(ApiError::internal)?))
}

/// Paging of maintenance runs.
#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    pub(crate) limit: Option<i64>,
    pub(crate) offset: Option<i64>,
}

/// A table's maintenance runs, newest first (`limit`, default 50, at most 1000; `offset`).
#[utoipa::path(get, path = "/api/v1/tables/{catalog}/{namespace}/{table}/maintenance/runs", tag = "maintenance",
    params(("catalog" = String, Path), ("namespace" = String, Path, description = "Levels separated by U+001F (`%1F`) or `.`"), ("table" = String, Path),
        ("limit" = Option<i64>, Query, description = "Most runs returned"), ("offset" = Option<i64>, Query, description = "Runs skipped")),
    responses((status = 200, body = [MaintenanceRun]), (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn list_maintenance_runs(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<TablePath>,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> Result<Json<Vec<MaintenanceRun>>, ApiError> {
    let id = table_id(&state, &path.catalog, &path.namespace, &path.table).await?;
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let offset = query.offset.unwrap_or(0).max(0);
    let runs = state.optimizing.maintenance_runs(id, limit, offset).await?;
    Ok(Json(runs.into_iter().map(run_dto).collect()))
}

/// Last runs by action.
pub(crate) fn last_runs(runs: Vec<TableProcess>) -> std::collections::BTreeMap<String, MaintenanceRun> {
    runs.into_iter().map(|r| (r.action.type_name().to_string(), run_dto(r))).collect()
}

fn run_dto(record: TableProcess) -> MaintenanceRun {
    let summary = match record.summary {
        loch_optimizing::record::Summary::Maintenance(summary) => serde_json::to_value(summary).ok(),
        loch_optimizing::record::Summary::Optimizing(_) => None,
    };
    MaintenanceRun {
        id: record.id,
        action: record.action.type_name().into(),
        status: record.status.as_str().into(),
        started_at: record.created_at,
        finished_at: record.finished_at,
        fail_message: record.fail_message,
        summary,
    }
}
