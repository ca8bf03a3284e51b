//! Table routes: list, create, load, exists, commit, drop, rename, register, credentials,
//! metrics reports and multi-table transactions.

use std::borrow::Cow;
use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use iceberg::TableIdent;
use iceberg_catalog_rest::{CommitTableRequest, CreateTableRequest, RegisterTableRequest, RenameTableRequest};
use loch_catalog::{CreateTable, LoadedTable, TableChange, TableName};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::{Paging, Target};
use crate::error::{ApiError, ApiPath, ApiQuery, JsonBody};
use crate::state::AppState;

/// A table identifier on the wire.
#[derive(Debug, Serialize)]
pub struct Identifier {
    namespace: Vec<String>,
    name: String,
}

impl Identifier {
    /// An identifier from its parts.
    pub fn new(namespace: Vec<String>, name: String) -> Self {
        Self { namespace, name }
    }
}

/// Body of the table and view listings.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ListTablesResponse {
    identifiers: Vec<Identifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<Option<String>>,
}

impl ListTablesResponse {
    /// A listing page.
    pub fn new(identifiers: Vec<Identifier>, next_page_token: Option<Option<String>>) -> Self {
        Self { identifiers, next_page_token }
    }
}

/// A load-table result whose metadata is pre-serialized JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct LoadTableResponse<'a> {
    metadata_location: Option<&'a str>,
    metadata: &'a RawValue,
    config: &'a HashMap<String, String>,
}

/// A commit result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct CommitTableResponse<'a> {
    metadata_location: &'a str,
    metadata: &'a RawValue,
}

/// Vended storage credentials.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadCredentialsResponse {
    storage_credentials: Vec<StorageCredential>,
}

/// Credentials for files under a prefix.
#[derive(Debug, Serialize)]
pub struct StorageCredential {
    prefix: String,
    config: HashMap<String, String>,
}

/// Body of `POST /v1/{prefix}/transactions/commit`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommitTransactionRequest {
    table_changes: Vec<CommitTableRequest>,
}

/// Query of the table load.
#[derive(Debug, Deserialize)]
pub struct LoadQuery {
    snapshots: Option<String>,
}

/// Query of the table drop.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DropQuery {
    purge_requested: Option<String>,
}

impl DropQuery {
    /// `purgeRequested`, accepting any letter case (PyIceberg sends `True`).
    fn purge(&self) -> Result<bool, ApiError> {
        match self.purge_requested.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!("purgeRequested must be true or false, not {other:?}"))),
        }
    }
}

pub(super) fn name_of(ident: &TableIdent) -> TableName {
    TableName::new(ident.namespace().clone().inner(), ident.name())
}

fn raw(json: String) -> Result<Box<RawValue>, ApiError> {
    RawValue::from_string(json).map_err(ApiError::internal)
}

fn json_response(status: StatusCode, body: &impl Serialize, headers: &[(header::HeaderName, HeaderValue)]) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response =
                (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name.clone(), value.clone());
            }
            response
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

fn load_response(table: &LoadedTable, metadata: &RawValue, etag: Option<HeaderValue>) -> Response {
    let body =
        LoadTableResponse { metadata_location: table.metadata_location.as_deref(), metadata, config: &table.config };
    let headers: Vec<_> = etag.into_iter().map(|v| (header::ETAG, v)).collect();
    json_response(StatusCode::OK, &body, &headers)
}

/// Statistics blob types PyIceberg accepts: its `BlobMetadata.type` is a closed list (0.12),
/// so one other type (Amoro's `optimized-sequence` of keyed tables) makes the whole table
/// unloadable there.
const PYICEBERG_BLOB_TYPES: [&str; 2] = ["apache-datasketches-theta-v1", "deletion-vector-v1"];

/// The metadata as `headers`' client can read it: for PyIceberg, without the statistics files
/// holding blob types it rejects (statistics are optional to readers; the stored metadata keeps
/// them, and commits apply to the stored metadata). Others get it unchanged.
fn for_client<'a>(metadata: &'a RawValue, headers: &HeaderMap) -> Result<Cow<'a, RawValue>, ApiError> {
    let pyiceberg = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|agent| agent.starts_with("PyIceberg/"));
    if !pyiceberg || !metadata.get().contains("\"statistics\"") {
        return Ok(Cow::Borrowed(metadata));
    }
    let mut value: serde_json::Value = serde_json::from_str(metadata.get()).map_err(ApiError::internal)?;
    let Some(statistics) = value.get_mut("statistics").and_then(|s| s.as_array_mut()) else {
        return Ok(Cow::Borrowed(metadata));
    };
    let before = statistics.len();
    statistics.retain(|file| {
        let blobs = file.get("blob-metadata").and_then(|b| b.as_array());
        blobs.is_none_or(|blobs| {
            blobs
                .iter()
                .all(|b| b.get("type").and_then(|t| t.as_str()).is_some_and(|t| PYICEBERG_BLOB_TYPES.contains(&t)))
        })
    });
    if statistics.len() == before {
        return Ok(Cow::Borrowed(metadata));
    }
    Ok(Cow::Owned(raw(value.to_string())?))
}

fn etag_of(metadata_location: &str, mode: &str) -> Option<HeaderValue> {
    let digest = Sha256::digest(format!("{metadata_location}|{mode}").as_bytes());
    HeaderValue::from_str(&format!("\"{}\"", &hex::encode(digest)[..32])).ok()
}

/// `GET .../namespaces/{namespace}/tables`.
pub async fn list(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<ListTablesResponse>, ApiError> {
    let catalog = target.catalog(&state).await?;
    let page = state.catalogs.list_tables(&catalog, &target.namespace(), &paging.request()?).await?;
    Ok(Json(ListTablesResponse::new(
        page.items.into_iter().map(|t| Identifier::new(t.namespace, t.name)).collect(),
        paging.next_token(page.next),
    )))
}

/// `POST .../namespaces/{namespace}/tables`.
pub async fn create(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    JsonBody(request): JsonBody<CreateTableRequest>,
) -> Result<Response, ApiError> {
    let catalog = target.catalog(&state).await?;
    let create = CreateTable {
        name: request.name,
        location: request.location,
        schema: request.schema,
        partition_spec: request.partition_spec,
        write_order: request.write_order,
        stage_create: request.stage_create.unwrap_or(false),
        properties: request.properties,
    };
    let table = state.catalogs.create_table(&catalog, &target.namespace(), create).await?;
    let etag = table.metadata_location.as_deref().and_then(|l| etag_of(l, "all"));
    Ok(load_response(&table, &table.metadata.json, etag))
}

/// `GET .../tables/{table}?snapshots=all|refs`, answering 304 to a matching `If-None-Match`.
pub async fn load(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    ApiQuery(query): ApiQuery<LoadQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mode = query.snapshots.as_deref().unwrap_or("all");
    if mode != "all" && mode != "refs" {
        return Err(ApiError::bad_request(format!("snapshots must be `all` or `refs`, not {mode:?}")));
    }
    let catalog = target.catalog(&state).await?;
    let table = state.catalogs.load_table(&catalog, &target.table()).await?;
    let etag = table.metadata_location.as_deref().and_then(|l| etag_of(l, mode));
    if let (Some(etag), Some(given)) = (&etag, headers.get(header::IF_NONE_MATCH))
        && given == etag
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag.clone())]).into_response());
    }
    if mode == "refs" {
        let filtered = table.metadata.referenced_snapshots_only()?;
        return Ok(load_response(&table, &for_client(filtered, &headers)?, etag));
    }
    Ok(load_response(&table, &for_client(&table.metadata.json, &headers)?, etag))
}

/// `HEAD .../tables/{table}`.
pub async fn exists(State(state): State<AppState>, ApiPath(target): ApiPath<Target>) -> Result<StatusCode, ApiError> {
    let catalog = target.catalog(&state).await?;
    let found = state.catalogs.table_exists(&catalog, &target.table()).await?;
    Ok(if found { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND })
}

/// `POST .../tables/{table}`: commit requirements and updates.
pub async fn commit(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CommitTableRequest>,
) -> Result<Response, ApiError> {
    let catalog = target.catalog(&state).await?;
    let ident = target.table();
    if let Some(body_ident) = &request.identifier
        && name_of(body_ident) != ident
    {
        return Err(ApiError::bad_request(format!(
            "identifier {} in the body does not match the path {ident}",
            name_of(body_ident)
        )));
    }
    let change = TableChange { ident, requirements: request.requirements, updates: request.updates };
    let committed = state.catalogs.commit_table(&catalog, change).await?;
    let metadata = for_client(&committed.metadata.json, &headers)?;
    let body = CommitTableResponse { metadata_location: &committed.metadata_location, metadata: &metadata };
    Ok(json_response(StatusCode::OK, &body, &[]))
}

/// `DELETE .../tables/{table}?purgeRequested=`.
pub async fn drop(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    ApiQuery(query): ApiQuery<DropQuery>,
) -> Result<StatusCode, ApiError> {
    let catalog = target.catalog(&state).await?;
    state.catalogs.drop_table(&catalog, &target.table(), query.purge()?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET .../tables/{table}/credentials`.
pub async fn credentials(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
) -> Result<Json<LoadCredentialsResponse>, ApiError> {
    let catalog = target.catalog(&state).await?;
    let credentials = state.catalogs.table_credentials(&catalog, &target.table()).await?;
    Ok(Json(LoadCredentialsResponse {
        storage_credentials: credentials
            .into_iter()
            .map(|(prefix, config)| StorageCredential { prefix, config })
            .collect(),
    }))
}

/// `POST .../tables/{table}/metrics`: accepted and counted.
pub async fn report_metrics(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    JsonBody(report): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Result<StatusCode, ApiError> {
    let catalog = target.catalog(&state).await?;
    let ident = target.table();
    if !state.catalogs.table_exists(&catalog, &ident).await? {
        return Err(loch_catalog::CatalogError::NoSuchTable(ident.to_string()).into());
    }
    let kind = report.get("report-type").and_then(|t| t.as_str()).unwrap_or("unknown").to_string();
    metrics::counter!("loch_rest_metrics_reports_total", "type" => kind).increment(1);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST .../namespaces/{namespace}/register`.
pub async fn register(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    JsonBody(request): JsonBody<RegisterTableRequest>,
) -> Result<Response, ApiError> {
    let catalog = target.catalog(&state).await?;
    let ident = TableName::new(target.namespace(), request.name);
    let table = state
        .catalogs
        .register_table(&catalog, &ident, &request.metadata_location, request.overwrite.unwrap_or(false))
        .await?;
    let etag = table.metadata_location.as_deref().and_then(|l| etag_of(l, "all"));
    Ok(load_response(&table, &table.metadata.json, etag))
}

/// `POST /v1/{prefix}/tables/rename`.
pub async fn rename(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    JsonBody(request): JsonBody<RenameTableRequest>,
) -> Result<StatusCode, ApiError> {
    let catalog = target.catalog(&state).await?;
    state.catalogs.rename_table(&catalog, &name_of(&request.source), &name_of(&request.destination)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/{prefix}/transactions/commit`: every table change commits, or none.
pub async fn commit_transaction(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    JsonBody(request): JsonBody<CommitTransactionRequest>,
) -> Result<StatusCode, ApiError> {
    let catalog = target.catalog(&state).await?;
    let mut changes = Vec::with_capacity(request.table_changes.len());
    for change in request.table_changes {
        let ident = change
            .identifier
            .as_ref()
            .map(name_of)
            .ok_or_else(|| ApiError::bad_request("every table change of a transaction needs an `identifier`"))?;
        changes.push(TableChange { ident, requirements: change.requirements, updates: change.updates });
    }
    state.catalogs.commit_tables(&catalog, changes).await?;
    Ok(StatusCode::NO_CONTENT)
}
