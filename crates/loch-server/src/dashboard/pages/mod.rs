//! The dashboard's pages, one module per section.

pub mod catalogs;
pub mod optimizing;
pub mod overview;
pub mod settings;
pub mod table;
pub mod tables;
pub mod terminal;

use axum::extract::State;
use loch_api::management::CatalogTable;
use loch_api::optimizing::TableOptimizing;

use super::PageError;
use crate::state::AppState;

/// Every table of every catalog (keyed tables once, with their change stores' files), with its
/// catalog.
pub async fn all_tables(state: &AppState) -> Result<Vec<(String, CatalogTable)>, PageError> {
    let mut out = Vec::new();
    let catalogs = crate::management::list_catalogs(State(state.clone())).await?.0;
    for catalog in catalogs {
        for t in tables::catalog_tables(state, &catalog.name).await? {
            out.push((catalog.name.clone(), t));
        }
    }
    Ok(out)
}

/// The optimizing state of every managed table, from every group.
pub async fn all_runtimes(state: &AppState) -> Result<Vec<TableOptimizing>, PageError> {
    let mut out = Vec::new();
    for group in state.optimizing.groups().await? {
        let tables =
            crate::optimizing::api::group_tables(State(state.clone()), crate::error::ApiPath(group.name.clone()))
                .await?
                .0;
        out.extend(tables);
    }
    Ok(out)
}

/// Properties typed one `key=value` per line (blank lines skipped).
pub fn parse_properties(text: &str) -> Result<std::collections::BTreeMap<String, String>, PageError> {
    let mut properties = std::collections::BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once('=').ok_or_else(|| {
            PageError::new(axum::http::StatusCode::BAD_REQUEST, format!("property line {line:?} is not key=value"))
        })?;
        properties.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(properties)
}

/// The health score in a runtime's summary.
pub fn health(runtime: &TableOptimizing) -> Option<f64> {
    runtime.summary.as_ref()?.get("healthScore")?.as_f64()
}
