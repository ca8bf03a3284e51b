//! Namespace operations of the Iceberg REST API.

use std::collections::{BTreeMap, HashSet};

use loch_meta::{MetaError, NamespaceRecord, Page, PageRequest, PropertyChanges};

use crate::error::{CatalogError, Result};
use crate::ident::{display_namespace, validate_namespace};
use crate::service::{CatalogService, ResolvedCatalog};

impl CatalogService {
    /// Namespaces directly under `parent` (top level when empty).
    pub async fn list_namespaces(
        &self,
        catalog: &ResolvedCatalog,
        parent: &[String],
        page: &PageRequest,
    ) -> Result<Page<NamespaceRecord>> {
        if !parent.is_empty() {
            self.load_namespace(catalog, parent).await?;
        }
        Ok(self.store.list_namespaces(catalog.record.id, parent, page).await?)
    }

    /// Creates a namespace; its parent must exist.
    pub async fn create_namespace(
        &self,
        catalog: &ResolvedCatalog,
        levels: &[String],
        properties: BTreeMap<String, String>,
    ) -> Result<NamespaceRecord> {
        validate_namespace(levels)?;
        self.store.create_namespace(catalog.record.id, levels, &properties).await.map_err(|e| match e {
            MetaError::NotFound(_) => CatalogError::NoSuchNamespace(format!(
                "{} (parent of {})",
                display_namespace(&levels[..levels.len() - 1]),
                display_namespace(levels)
            )),
            MetaError::AlreadyExists(_) => CatalogError::namespace_exists(display_namespace(levels)),
            other => other.into(),
        })
    }

    /// A namespace and its properties.
    pub async fn load_namespace(&self, catalog: &ResolvedCatalog, levels: &[String]) -> Result<NamespaceRecord> {
        validate_namespace(levels)?;
        self.store
            .get_namespace(catalog.record.id, levels)
            .await?
            .ok_or_else(|| CatalogError::NoSuchNamespace(display_namespace(levels)))
    }

    /// Drops an empty namespace.
    pub async fn drop_namespace(&self, catalog: &ResolvedCatalog, levels: &[String]) -> Result<()> {
        validate_namespace(levels)?;
        self.store.drop_namespace(catalog.record.id, levels).await.map_err(|e| match e {
            MetaError::NotFound(_) => CatalogError::NoSuchNamespace(display_namespace(levels)),
            MetaError::NotEmpty(what) => CatalogError::NamespaceNotEmpty(what),
            other => other.into(),
        })
    }

    /// Sets and removes namespace properties; a key may not be in both.
    pub async fn update_namespace_properties(
        &self,
        catalog: &ResolvedCatalog,
        levels: &[String],
        updates: BTreeMap<String, String>,
        removals: Vec<String>,
    ) -> Result<PropertyChanges> {
        validate_namespace(levels)?;
        let removed: HashSet<&String> = removals.iter().collect();
        let both: Vec<&String> = updates.keys().filter(|k| removed.contains(k)).collect();
        if !both.is_empty() {
            return Err(CatalogError::Unprocessable(format!("properties both updated and removed: {both:?}")));
        }
        self.store.update_namespace_properties(catalog.record.id, levels, &updates, &removals).await.map_err(
            |e| match e {
                MetaError::NotFound(_) => CatalogError::NoSuchNamespace(display_namespace(levels)),
                other => other.into(),
            },
        )
    }
}
