//! State shared by all request handlers.

use std::sync::Arc;

use loch_catalog::{CatalogService, ResolvedCatalog};
use loch_optimizing::OptimizingService;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Auth;
use crate::error::ApiError;

/// Handles to the services; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The catalog service.
    pub catalogs: Arc<CatalogService>,
    /// Self-optimizing.
    pub optimizing: Arc<OptimizingService>,
    /// Authentication.
    pub auth: Arc<Auth>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Catalog used by Iceberg REST clients that name none.
    pub default_catalog: Arc<str>,
    /// SQL terminal sessions.
    pub terminal: Arc<crate::terminal::Terminal>,
    /// The web dashboard's logins and page caches.
    pub dashboard: Arc<crate::dashboard::Dashboard>,
}

impl AppState {
    /// Resolves a catalog by name (404 if unknown).
    pub async fn catalog(&self, name: &str) -> Result<ResolvedCatalog, ApiError> {
        Ok(self.catalogs.resolve(name).await?)
    }
}
