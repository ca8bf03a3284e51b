//! Namespace routes.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use iceberg_catalog_rest::{CreateNamespaceRequest, UpdateNamespacePropertiesRequest};
use serde::{Deserialize, Serialize};

use super::{Paging, Target, split_namespace};
use crate::error::{ApiError, ApiPath, ApiQuery, JsonBody};
use crate::state::AppState;

/// Query of the namespace listing.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    parent: Option<String>,
    page_token: Option<String>,
    page_size: Option<u32>,
}

/// Body of the namespace listing.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ListNamespacesResponse {
    namespaces: Vec<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<Option<String>>,
}

/// A namespace and its properties.
#[derive(Debug, Serialize)]
pub struct NamespaceResponse {
    namespace: Vec<String>,
    properties: BTreeMap<String, String>,
}

/// Body of a properties update.
#[derive(Debug, Serialize)]
pub struct UpdatePropertiesResponse {
    updated: Vec<String>,
    removed: Vec<String>,
    missing: Vec<String>,
}

/// `GET .../namespaces?parent=`.
pub async fn list(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ListNamespacesResponse>, ApiError> {
    let catalog = target.catalog(&state).await?;
    let parent = query.parent.as_deref().map(split_namespace).unwrap_or_default();
    let paging = Paging { page_token: query.page_token, page_size: query.page_size };
    let page = state.catalogs.list_namespaces(&catalog, &parent, &paging.request()?).await?;
    Ok(Json(ListNamespacesResponse {
        namespaces: page.items.into_iter().map(|n| n.levels).collect(),
        next_page_token: paging.next_token(page.next),
    }))
}

/// `POST .../namespaces`.
pub async fn create(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    JsonBody(request): JsonBody<CreateNamespaceRequest>,
) -> Result<Json<NamespaceResponse>, ApiError> {
    let catalog = target.catalog(&state).await?;
    let levels = request.namespace.inner();
    let properties: BTreeMap<String, String> = request.properties.into_iter().collect();
    let created = state.catalogs.create_namespace(&catalog, &levels, properties).await?;
    Ok(Json(NamespaceResponse { namespace: created.levels, properties: created.properties }))
}

/// `GET .../namespaces/{namespace}`.
pub async fn load(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
) -> Result<Json<NamespaceResponse>, ApiError> {
    let catalog = target.catalog(&state).await?;
    let ns = state.catalogs.load_namespace(&catalog, &target.namespace()).await?;
    Ok(Json(NamespaceResponse { namespace: ns.levels, properties: ns.properties }))
}

/// `HEAD .../namespaces/{namespace}`.
pub async fn exists(State(state): State<AppState>, ApiPath(target): ApiPath<Target>) -> Result<StatusCode, ApiError> {
    let catalog = target.catalog(&state).await?;
    state.catalogs.load_namespace(&catalog, &target.namespace()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE .../namespaces/{namespace}`.
pub async fn drop(State(state): State<AppState>, ApiPath(target): ApiPath<Target>) -> Result<StatusCode, ApiError> {
    let catalog = target.catalog(&state).await?;
    state.catalogs.drop_namespace(&catalog, &target.namespace()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST .../namespaces/{namespace}/properties`.
pub async fn update_properties(
    State(state): State<AppState>,
    ApiPath(target): ApiPath<Target>,
    JsonBody(request): JsonBody<UpdateNamespacePropertiesRequest>,
) -> Result<Json<UpdatePropertiesResponse>, ApiError> {
    let catalog = target.catalog(&state).await?;
    let updates: BTreeMap<String, String> = request.updates.into_iter().collect();
    let changes = state
        .catalogs
        .update_namespace_properties(&catalog, &target.namespace(), updates, request.removals.unwrap_or_default())
        .await?;
    Ok(Json(UpdatePropertiesResponse { updated: changes.updated, removed: changes.removed, missing: changes.missing }))
}
