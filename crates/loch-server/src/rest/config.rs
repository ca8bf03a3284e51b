//! `GET /v1/config` and `POST /v1/oauth/tokens`.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ENDPOINTS;
use crate::auth::bearer_token;
use crate::error::{ApiError, ApiQuery};
use crate::state::AppState;

/// Query of `GET /v1/config`.
#[derive(Debug, Deserialize)]
pub struct ConfigQuery {
    warehouse: Option<String>,
}

/// Body of `GET /v1/config`.
#[derive(Debug, Serialize)]
pub struct CatalogConfig {
    defaults: BTreeMap<String, String>,
    overrides: BTreeMap<String, String>,
    endpoints: &'static [&'static str],
}

/// Tells a client which catalog prefix to use for the requested warehouse (catalog name), and
/// the catalog's storage settings as defaults, so file access works even for tables a client
/// builds from responses that carry no config (iceberg-rust's commit path). Credentials are only
/// sent to authenticated callers, since this route is open.
pub async fn get_config(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ConfigQuery>,
    headers: HeaderMap,
) -> Result<Json<CatalogConfig>, ApiError> {
    let name = match query.warehouse.filter(|w| !w.is_empty()) {
        Some(name) => name,
        None => default_catalog_name(&state).await?,
    };
    let catalog = state.catalog(&name).await?;
    let authenticated = match bearer_token(&headers) {
        _ if !state.auth.enabled() => true,
        Some(token) => state.auth.verify(token).await.is_ok(),
        None => false,
    };
    let defaults = catalog
        .warehouse
        .client_config
        .iter()
        .filter(|(key, _)| authenticated || !is_credential(key))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let overrides = BTreeMap::from([("prefix".to_string(), format!("catalogs/{}", catalog.record.name))]);
    Ok(Json(CatalogConfig { defaults, overrides, endpoints: ENDPOINTS }))
}

/// Storage properties that grant access (kept from unauthenticated callers).
fn is_credential(key: &str) -> bool {
    loch_catalog::storage::SECRET_PROPERTIES.contains(&key) || key == "s3.access-key-id"
}

/// The catalog of a client that names no warehouse: the default catalog, or the only one.
async fn default_catalog_name(state: &AppState) -> Result<String, ApiError> {
    let catalogs = state.catalogs.list_catalogs().await?;
    if catalogs.iter().any(|c| *c.name == *state.default_catalog) {
        return Ok(state.default_catalog.to_string());
    }
    match catalogs.as_slice() {
        [only] => Ok(only.name.clone()),
        _ => Err(ApiError::bad_request(format!(
            "set the `warehouse` property to a catalog name, one of: {}",
            catalogs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Exchanges client credentials (or a valid token) for a bearer token.
pub async fn get_token(
    State(state): State<AppState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let peer = peer.map(|p| p.0.0.ip());
    match state.auth.token(&headers, &body, peer).await {
        Ok(token) => Json(token).into_response(),
        Err(e) => e.into_response(),
    }
}
