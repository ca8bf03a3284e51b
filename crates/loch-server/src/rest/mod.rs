//! The Iceberg REST catalog under `/api/iceberg/rest`, following Apache Iceberg 1.10's
//! `rest-catalog-open-api.yaml`.
//!
//! A catalog is addressed by the prefix `catalogs/{name}` that `GET /v1/config?warehouse=NAME`
//! hands out; routes without a prefix address the default catalog.

mod config;
mod namespaces;
mod tables;
mod views;

use axum::Router;
use axum::routing::{get, post};
use base64::Engine;
use loch_catalog::{ResolvedCatalog, TableName};
use loch_meta::PageRequest;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// Routes that need no token: configuration and the token endpoint.
pub fn public_routes() -> Router<AppState> {
    Router::new().route("/v1/config", get(config::get_config)).route("/v1/oauth/tokens", post(config::get_token))
}

/// Routes of one catalog, nested under `/v1/catalogs/{catalog}` and under `/v1`.
fn catalog_routes() -> Router<AppState> {
    Router::new()
        .route("/namespaces", get(namespaces::list).post(namespaces::create))
        .route("/namespaces/{namespace}", get(namespaces::load).head(namespaces::exists).delete(namespaces::drop))
        .route("/namespaces/{namespace}/properties", post(namespaces::update_properties))
        .route("/namespaces/{namespace}/tables", get(tables::list).post(tables::create))
        .route(
            "/namespaces/{namespace}/tables/{table}",
            get(tables::load).head(tables::exists).post(tables::commit).delete(tables::drop),
        )
        .route("/namespaces/{namespace}/tables/{table}/credentials", get(tables::credentials))
        .route("/namespaces/{namespace}/tables/{table}/metrics", post(tables::report_metrics))
        .route("/namespaces/{namespace}/register", post(tables::register))
        .route("/tables/rename", post(tables::rename))
        .route("/transactions/commit", post(tables::commit_transaction))
        .route("/namespaces/{namespace}/views", get(views::list).post(views::create))
        .route(
            "/namespaces/{namespace}/views/{view}",
            get(views::load).head(views::exists).post(views::replace).delete(views::drop),
        )
        .route("/views/rename", post(views::rename))
}

/// Routes that need a token while authentication is on.
pub fn protected_routes() -> Router<AppState> {
    Router::new().nest("/v1/catalogs/{catalog}", catalog_routes()).nest("/v1", catalog_routes())
}

/// Every endpoint this server implements, as `GET /v1/config` lists them.
pub const ENDPOINTS: &[&str] = &[
    "GET /v1/{prefix}/namespaces",
    "POST /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "DELETE /v1/{prefix}/namespaces/{namespace}",
    "POST /v1/{prefix}/namespaces/{namespace}/properties",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "POST /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}/credentials",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
    "POST /v1/{prefix}/namespaces/{namespace}/register",
    "POST /v1/{prefix}/tables/rename",
    "POST /v1/{prefix}/transactions/commit",
    "GET /v1/{prefix}/namespaces/{namespace}/views",
    "POST /v1/{prefix}/namespaces/{namespace}/views",
    "GET /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "POST /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "DELETE /v1/{prefix}/namespaces/{namespace}/views/{view}",
    "POST /v1/{prefix}/views/rename",
];

/// Path parameters of catalog routes; which are present depends on the route.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Target {
    catalog: Option<String>,
    namespace: Option<String>,
    table: Option<String>,
    view: Option<String>,
}

impl Target {
    /// The addressed catalog (the default one for routes without a prefix).
    pub async fn catalog(&self, state: &AppState) -> Result<ResolvedCatalog, ApiError> {
        state.catalog(self.catalog.as_deref().unwrap_or(&state.default_catalog)).await
    }

    /// The namespace path parameter, split at U+001F.
    pub fn namespace(&self) -> Vec<String> {
        self.namespace.as_deref().map(split_namespace).unwrap_or_default()
    }

    /// The table addressed by the path.
    pub fn table(&self) -> TableName {
        TableName::new(self.namespace(), self.table.clone().unwrap_or_default())
    }

    /// The view addressed by the path.
    pub fn view(&self) -> TableName {
        TableName::new(self.namespace(), self.view.clone().unwrap_or_default())
    }
}

/// Splits a namespace as encoded in paths and `parent` queries: levels separated by U+001F.
pub fn split_namespace(encoded: &str) -> Vec<String> {
    if encoded.is_empty() { Vec::new() } else { encoded.split('\u{1f}').map(str::to_string).collect() }
}

/// Pagination query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Paging {
    pub(super) page_token: Option<String>,
    pub(super) page_size: Option<u32>,
}

/// Default page size when a client paginates without choosing one.
const DEFAULT_PAGE_SIZE: u32 = 1000;

impl Paging {
    /// The page asked for. Per the spec, a request without `pageToken` gets everything.
    pub fn request(&self) -> Result<PageRequest, ApiError> {
        let Some(token) = &self.page_token else { return Ok(PageRequest::all()) };
        if self.page_size == Some(0) {
            return Err(ApiError::bad_request("pageSize must be at least 1"));
        }
        let after = if token.is_empty() {
            None
        } else {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .map_err(|_| ApiError::bad_request("invalid pageToken"))?;
            Some(String::from_utf8(bytes).map_err(|_| ApiError::bad_request("invalid pageToken"))?)
        };
        Ok(PageRequest { after, limit: Some(self.page_size.unwrap_or(DEFAULT_PAGE_SIZE)) })
    }

    /// `next-page-token` for a page: absent when not paginating, `null` on the last page.
    pub fn next_token(&self, next: Option<String>) -> Option<Option<String>> {
        self.page_token.as_ref()?;
        Some(next.map(|n| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_split_at_unit_separator() {
        assert_eq!(split_namespace("a\u{1f}b"), vec!["a", "b"]);
        assert_eq!(split_namespace("a.b"), vec!["a.b"]);
        assert!(split_namespace("").is_empty());
    }

    #[test]
    fn paging_round_trips_tokens() {
        let all = Paging::default();
        assert_eq!(all.request().unwrap(), PageRequest::all());
        assert_eq!(all.next_token(Some("x".into())), None);
        let first = Paging { page_token: Some(String::new()), page_size: Some(2) };
        assert_eq!(first.request().unwrap(), PageRequest { after: None, limit: Some(2) });
        let token = first.next_token(Some("ns\u{1f}b".into())).unwrap().unwrap();
        let second = Paging { page_token: Some(token), page_size: Some(2) };
        assert_eq!(second.request().unwrap().after.as_deref(), Some("ns\u{1f}b"));
        assert_eq!(second.next_token(None), Some(None));
        assert!(Paging { page_token: Some("!!".into()), page_size: None }.request().is_err());
    }
}
