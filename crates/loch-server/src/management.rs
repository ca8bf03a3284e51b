//! The management API under `/api/v1`: catalogs and their tables. Its OpenAPI document is
//! generated from these handlers and served at `/api/v1/openapi.json`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use loch_api::ErrorResponse;
use loch_api::management::{
    Catalog, CatalogTable, CreateCatalogRequest, CreateTableRequest, CreatedTable, Health, Purge, UpdateCatalogRequest,
};
use loch_catalog::mask_secrets;
use loch_meta::{CatalogRecord, TableRecord};
use utoipa::OpenApi;

use loch_api::optimizing::{
    CreateGroupRequest, MaintenanceRun, OptimizeRequest, OptimizeResponse, Optimizer, OptimizerGroup, Process,
    StoreFiles, TableOptimizing, Task, UpdateGroupRequest,
};

use crate::error::{ApiError, ApiPath, JsonBody};
use crate::optimizing::api;
use crate::state::AppState;

/// The management API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Loch management API", description = "Manage Loch's catalogs, optimizer groups and optimizing processes; the Iceberg REST catalog is under /api/iceberg/rest."),
    paths(list_catalogs, create_catalog, get_catalog, update_catalog, delete_catalog, list_catalog_tables, create_table, list_purges, crate::observability::health,
        api::list_groups, api::create_group, api::get_group, api::update_group, api::delete_group, api::group_optimizers, api::release_optimizer,
        api::group_tables, api::table_optimizing, api::list_processes, api::optimize_table, api::get_process, api::list_tasks, api::cancel_process, api::run_maintenance, api::list_maintenance_runs,
        crate::terminal::create_session, crate::terminal::get_session, crate::terminal::stop_session),
    components(schemas(Catalog, CreateCatalogRequest, UpdateCatalogRequest, CatalogTable, CreateTableRequest, CreatedTable, Purge, Health, ErrorResponse,
        OptimizerGroup, CreateGroupRequest, UpdateGroupRequest, Optimizer, TableOptimizing, Process, OptimizeRequest, OptimizeResponse, StoreFiles, Task, MaintenanceRun,
        crate::terminal::CreateSession, crate::terminal::CreatedSession, crate::terminal::Session, crate::terminal::StatementRun, crate::terminal::RunStatus)),
    tags((name = "catalogs", description = "Internal catalogs and their tables"),
        (name = "optimizing", description = "Optimizer groups, optimizers, and tables' optimizing processes"),
        (name = "maintenance", description = "Tables' maintenance: snapshot expiry, orphan and dangling-delete cleaning, data expiration, tags"),
        (name = "terminal", description = "SQL terminal sessions: scripts run in the background, polled for each statement's status and rows")),
    modifiers(&HttpLayerResponses)
)]
pub struct ManagementApi;

/// Adds the answers the HTTP layer may give on any route: 401 (authentication on, routes other
/// than `/health`), 408 (a body too slow), 413 (a body too large), 503 (too many bodies at
/// once), each an `ErrorResponse`.
struct HttpLayerResponses;

impl utoipa::Modify for HttpLayerResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorResponse"))).build();
            ResponseBuilder::new().description(description).content("application/json", content).build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                if path != "/health" {
                    responses
                        .entry("401".into())
                        .or_insert_with(|| error("Authentication is on and no valid token was sent").into());
                }
                responses
                    .entry("408".into())
                    .or_insert_with(|| error("The request body did not arrive in time").into());
                responses
                    .entry("413".into())
                    .or_insert_with(|| error("The request body is larger than http.max-body-size").into());
                responses.entry("503".into()).or_insert_with(|| {
                    error("Too many request bodies in flight, or the metadata store is unreachable; retry").into()
                });
            }
        }
    }
}

/// Routes of the management API (all need a token while authentication is on).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/catalogs", get(list_catalogs).post(create_catalog))
        .route("/api/v1/catalogs/{name}", get(get_catalog).put(update_catalog).delete(delete_catalog))
        .route("/api/v1/catalogs/{name}/tables", get(list_catalog_tables))
        .route("/api/v1/catalogs/{name}/namespaces/{namespace}/tables", axum::routing::post(create_table))
        .route("/api/v1/catalogs/{name}/purges", get(list_purges))
        .route("/api/v1/openapi.json", get(openapi))
}

fn catalog_dto(record: CatalogRecord) -> Catalog {
    Catalog {
        properties: mask_secrets(&record.properties),
        name: record.name,
        kind: record.kind,
        created_at: record.created_at,
        updated_at: record.updated_at,
    }
}

/// A table record as the API lists it.
pub(crate) fn table_dto(record: TableRecord) -> CatalogTable {
    CatalogTable {
        namespace: record.namespace,
        name: record.name,
        format: record.format,
        primary_key: Vec::new(),
        file_count: record.stats.data_files + record.stats.delete_files,
        data_files: record.stats.data_files,
        delete_files: record.stats.delete_files,
        total_size: record.stats.total_size,
        total_records: record.stats.total_records,
        last_commit_time: record.stats.last_commit_ms,
        metadata_location: record.metadata_location,
        maintenance: Default::default(),
    }
}

/// List catalogs.
#[utoipa::path(get, path = "/api/v1/catalogs", tag = "catalogs", responses((status = 200, body = [Catalog])))]
pub async fn list_catalogs(State(state): State<AppState>) -> Result<Json<Vec<Catalog>>, ApiError> {
    Ok(Json(state.catalogs.list_catalogs().await?.into_iter().map(catalog_dto).collect()))
}

/// Create an internal catalog; its warehouse must be writable.
#[utoipa::path(post, path = "/api/v1/catalogs", tag = "catalogs", request_body = CreateCatalogRequest,
    responses((status = 201, body = Catalog), (status = 400, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn create_catalog(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateCatalogRequest>,
) -> Result<(StatusCode, Json<Catalog>), ApiError> {
    let record = state.catalogs.create_catalog(&request.name, &request.kind, request.properties).await?;
    tracing::info!(catalog = %record.name, "created catalog");
    Ok((StatusCode::CREATED, Json(catalog_dto(record))))
}

/// Get a catalog (secret properties masked).
#[utoipa::path(get, path = "/api/v1/catalogs/{name}", tag = "catalogs", params(("name" = String, Path, description = "Catalog name")),
    responses((status = 200, body = Catalog), (status = 404, body = ErrorResponse)))]
pub async fn get_catalog(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Catalog>, ApiError> {
    Ok(Json(catalog_dto(state.catalogs.get_catalog(&name).await?)))
}

/// Replace a catalog's properties.
#[utoipa::path(put, path = "/api/v1/catalogs/{name}", tag = "catalogs", request_body = UpdateCatalogRequest,
    params(("name" = String, Path, description = "Catalog name")),
    responses((status = 200, body = Catalog), (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn update_catalog(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    JsonBody(request): JsonBody<UpdateCatalogRequest>,
) -> Result<Json<Catalog>, ApiError> {
    let record = state.catalogs.update_catalog(&name, request.properties).await?;
    tracing::info!(catalog = %name, "updated catalog");
    Ok(Json(catalog_dto(record)))
}

/// Delete a catalog; refused while it holds tables or views.
#[utoipa::path(delete, path = "/api/v1/catalogs/{name}", tag = "catalogs", params(("name" = String, Path, description = "Catalog name")),
    responses((status = 204), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn delete_catalog(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.catalogs.delete_catalog(&name).await?;
    tracing::info!(catalog = %name, "deleted catalog");
    Ok(StatusCode::NO_CONTENT)
}

/// Create a table: a plain Iceberg table, or a keyed (primary-key) table in Amoro's
/// Mixed-Iceberg format, whose change store the REST catalog shows as `name@change`. The
/// namespace's levels are separated by `.` (or U+001F, `%1F`).
#[utoipa::path(post, path = "/api/v1/catalogs/{name}/namespaces/{namespace}/tables", tag = "catalogs",
    request_body = CreateTableRequest,
    params(("name" = String, Path, description = "Catalog name"), ("namespace" = String, Path, description = "Namespace")),
    responses((status = 201, body = CreatedTable), (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse)))]
pub async fn create_table(
    State(state): State<AppState>,
    ApiPath((name, namespace)): ApiPath<(String, String)>,
    JsonBody(request): JsonBody<CreateTableRequest>,
) -> Result<(StatusCode, Json<CreatedTable>), ApiError> {
    let bad = |m: String| ApiError::from(loch_catalog::CatalogError::BadRequest(m));
    let catalog = state.catalogs.resolve(&name).await?;
    let separator = if namespace.contains('\u{1f}') { '\u{1f}' } else { '.' };
    let levels: Vec<String> = namespace.split(separator).map(str::to_string).collect();
    let schema: iceberg::spec::Schema =
        serde_json::from_value(request.schema).map_err(|e| bad(format!("invalid schema: {e}")))?;
    let partition_spec = match request.partition_spec {
        Some(spec) => Some(
            serde_json::from_value::<iceberg::spec::UnboundPartitionSpec>(spec)
                .map_err(|e| bad(format!("invalid partition_spec: {e}")))?,
        ),
        None => None,
    };
    let create = loch_catalog::CreateTable {
        name: request.name.clone(),
        location: None,
        schema,
        partition_spec,
        write_order: None,
        stage_create: false,
        properties: request.properties.into_iter().collect(),
    };
    let loaded = match request.format.as_str() {
        "iceberg" if request.primary_key.is_empty() => state.catalogs.create_table(&catalog, &levels, create).await?,
        "iceberg" => return Err(bad("a primary key needs format mixed-iceberg".into())),
        "mixed-iceberg" => {
            state.catalogs.create_keyed_table(&catalog, &levels, create, request.primary_key.clone()).await?
        }
        other => return Err(bad(format!("unknown table format {other:?}; use iceberg or mixed-iceberg"))),
    };
    let location = loaded.metadata.metadata.location().to_string();
    tracing::info!(catalog = %name, table = %request.name, format = %request.format, "created table");
    Ok((
        StatusCode::CREATED,
        Json(CreatedTable {
            namespace: levels,
            name: request.name,
            format: request.format,
            location,
            metadata_location: loaded.metadata_location,
            primary_key: request.primary_key,
        }),
    ))
}

/// List a catalog's tables with file count, size and last commit time.
#[utoipa::path(get, path = "/api/v1/catalogs/{name}/tables", tag = "catalogs", params(("name" = String, Path, description = "Catalog name")),
    responses((status = 200, body = [CatalogTable]), (status = 404, body = ErrorResponse)))]
pub async fn list_catalog_tables(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<CatalogTable>>, ApiError> {
    let tables = state.catalogs.catalog_tables(&name).await?;
    let mut runs: std::collections::HashMap<i64, Vec<loch_optimizing::TableProcess>> = Default::default();
    if !tables.is_empty() {
        for run in state.optimizing.last_maintenance_runs(None).await? {
            runs.entry(run.table_id).or_default().push(run);
        }
    }
    let catalog = state.catalogs.resolve(&name).await?;
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        // Only keyed tables' metadata is read: their key lives in the base store's properties.
        let primary_key = if t.format == loch_catalog::keyed::FORMAT_MIXED_ICEBERG {
            let ident = loch_catalog::TableName::new(t.namespace.clone(), t.name.clone());
            match state.catalogs.load_table(&catalog, &ident).await {
                Ok(loaded) => loaded
                    .metadata
                    .metadata
                    .properties()
                    .get(loch_table::mixed::properties::PRIMARY_KEY_FIELDS)
                    .map(|k| k.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect())
                    .unwrap_or_default(),
                Err(_) => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let last = runs.remove(&t.id).unwrap_or_default();
        out.push(CatalogTable { maintenance: api::last_runs(last), primary_key, ..table_dto(t) });
    }
    Ok(Json(out))
}

/// List a catalog's purges in progress: dropped tables whose files are still being deleted, with
/// their failed attempts and the last failure.
#[utoipa::path(get, path = "/api/v1/catalogs/{name}/purges", tag = "catalogs", params(("name" = String, Path, description = "Catalog name")),
    responses((status = 200, body = [Purge]), (status = 404, body = ErrorResponse)))]
pub async fn list_purges(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<Purge>>, ApiError> {
    let purges = state.catalogs.pending_purges(&name).await?;
    Ok(Json(
        purges
            .into_iter()
            .map(|p| Purge {
                id: p.id,
                table: p.table_name,
                location: p.location,
                dropped_at: p.created_at,
                attempts: p.attempts,
                last_error: p.last_error,
            })
            .collect(),
    ))
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> Result<Response, ApiError> {
    let json = ManagementApi::openapi().to_pretty_json().map_err(ApiError::internal)?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], json).into_response())
}
