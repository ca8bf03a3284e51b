//! View routes: list, create, load, exists, replace, drop, rename.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use iceberg::spec::{Schema, ViewVersion};
use iceberg::{TableIdent, ViewUpdate};
use iceberg_catalog_rest::RenameTableRequest;
use loch_catalog::{CreateView, LoadedView, ViewChange, ViewRequirement};
use serde::{Deserialize, Serialize};

use super::tables::{Identifier, ListTablesResponse, name_of};
use super::{Paging, Target};
use crate::error::{ApiError, ApiPath, ApiQuery, JsonBody};
use crate::state::AppState;

/// Body of `POST .../views`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreateViewRequest {
    name: String,
    location: Option<String>,
    schema: Schema,
    view_version: ViewVersion,
    #[serde(default)]
    properties: HashMap<String, String>,
}

/// Body of `POST .../views/{view}`.
#[derive(Debug, Deserialize)]
pub struct CommitViewRequest {
    identifier: Option<TableIdent>,
    #[serde(default)]
    requirements: Vec<ViewRequirement>,
    updates: Vec<ViewUpdate>,
}

/// A loaded view.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadViewResponse {
    metadata_location: String,
    metadata: Box<serde_json::value::RawValue>,
    config: HashMap<String, String>,
}

impl From<LoadedView> for LoadViewResponse {
    fn from(v: LoadedView) -> Self {
        Self { metadata_location: v.metadata_location, metadata: v.json, config: v.config }
    }
}

/// `GET .../namespaces/{namespace}/views`.
pub async fn list(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<ListTablesResponse>, ApiError> {
    let catalog = target.catalog(&state).await?;
    let page = state.catalogs.list_views(&catalog, &target.namespace(), &paging.request()?).await?;
    Ok(Json(ListTablesResponse::new(
        page.items.into_iter().map(|t| Identifier::new(t.namespace, t.name)).collect(),
        paging.next_token(page.next),
    )))
}

/// `POST .../namespaces/{namespace}/views`.
pub async fn create(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    JsonBody(request): JsonBody<CreateViewRequest>,
) -> Result<Json<LoadViewResponse>, ApiError> {
    let catalog = target.catalog(&state).await?;
    let create = CreateView {
        name: request.name,
        location: request.location,
        schema: request.schema,
        view_version: request.view_version,
        properties: request.properties,
    };
    Ok(Json(state.catalogs.create_view(&catalog, &target.namespace(), create).await?.into()))
}

/// `GET .../views/{view}`.
pub async fn load(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
) -> Result<Json<LoadViewResponse>, ApiError> {
    let catalog = target.catalog(&state).await?;
    Ok(Json(state.catalogs.load_view(&catalog, &target.view()).await?.into()))
}

/// `HEAD .../views/{view}`.
pub async fn exists(State(state): State<AppState>, ApiPath(target): ApiPath<Target>) -> Result<StatusCode, ApiError> {
    let catalog = target.catalog(&state).await?;
    let found = state.catalogs.view_exists(&catalog, &target.view()).await?;
    Ok(if found { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND })
}

/// `POST .../views/{view}`: commit view updates.
pub async fn replace(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    JsonBody(request): JsonBody<CommitViewRequest>,
) -> Result<Json<LoadViewResponse>, ApiError> {
    let catalog = target.catalog(&state).await?;
    let ident = target.view();
    if let Some(body_ident) = &request.identifier
        && name_of(body_ident) != ident
    {
        return Err(ApiError::bad_request(format!(
            "identifier {} in the body does not match the path {ident}",
            name_of(body_ident)
        )));
    }
    let change = ViewChange { ident, requirements: request.requirements, updates: request.updates };
    Ok(Json(state.catalogs.replace_view(&catalog, change).await?.into()))
}

/// `DELETE .../views/{view}`.
pub async fn drop(State(state): State<AppState>, ApiPath(target): ApiPath<Target>) -> Result<StatusCode, ApiError> {
    let catalog = target.catalog(&state).await?;
    state.catalogs.drop_view(&catalog, &target.view()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/{prefix}/views/rename`.
pub async fn rename(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    JsonBody(request): JsonBody<RenameTableRequest>,
) -> Result<StatusCode, ApiError> {
    let catalog = target.catalog(&state).await?;
    state.catalogs.rename_view(&catalog, &name_of(&request.source), &name_of(&request.destination)).await?;
    Ok(StatusCode::NO_CONTENT)
}
