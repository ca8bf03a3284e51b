//! Managing catalogs: create, update, delete, list, and the tables of a catalog.

use std::collections::BTreeMap;

use bytes::Bytes;
use loch_meta::{CatalogRecord, NewCatalog, TableRecord};

use crate::error::{CatalogError, Result};
use crate::ident::validate_catalog_name;
use crate::service::CatalogService;
use crate::storage::policy::write_inside;
use crate::storage::{SECRET_PROPERTIES, Warehouse};

/// The only catalog kind so far: Loch stores the metadata pointers itself.
pub const INTERNAL: &str = "internal";

/// Placeholder shown instead of secret property values.
pub const MASK: &str = "******";

/// Prefix of catalog properties that are defaults for new tables (`table.write.format.default`).
pub const TABLE_DEFAULT_PREFIX: &str = "table.";

/// Table-default properties that describe Loch's management of a table rather than the table
/// itself; like Amoro, Loch applies them from the catalog at run time and never writes them
/// into table metadata, so changing the catalog default changes every table that inherits it.
pub const NON_PERSISTED_TABLE_PREFIXES: [&str; 7] = [
    "self-optimizing.",
    "table-expire.",
    "clean-orphan-file.",
    "clean-dangling-delete-files.",
    "data-expire.",
    "tag.auto-create.",
    "snapshot.keep.",
];

/// Replaces secret values with [`MASK`], for showing catalog properties.
pub fn mask_secrets(properties: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    properties
        .iter()
        .map(|(k, v)| {
            let shown = if SECRET_PROPERTIES.contains(&k.as_str()) { MASK.to_string() } else { v.clone() };
            (k.clone(), shown)
        })
        .collect()
}

/// Table properties a catalog contributes to new tables (its `table.*` defaults, minus the
/// non-persisted ones).
pub fn persisted_table_defaults(catalog: &CatalogRecord) -> impl Iterator<Item = (String, String)> + '_ {
    catalog.properties.iter().filter_map(|(k, v)| {
        let key = k.strip_prefix(TABLE_DEFAULT_PREFIX)?;
        (!NON_PERSISTED_TABLE_PREFIXES.iter().any(|p| key.starts_with(p))).then(|| (key.to_string(), v.clone()))
    })
}

impl CatalogService {
    /// All catalogs.
    pub async fn list_catalogs(&self) -> Result<Vec<CatalogRecord>> {
        Ok(self.store.list_catalogs().await?)
    }

    /// One catalog.
    pub async fn get_catalog(&self, name: &str) -> Result<CatalogRecord> {
        self.store.get_catalog(name).await?.ok_or_else(|| CatalogError::NoSuchCatalog(name.to_string()))
    }

    /// Creates an internal catalog after checking that its warehouse is writable.
    pub async fn create_catalog(
        &self,
        name: &str,
        kind: &str,
        properties: BTreeMap<String, String>,
    ) -> Result<CatalogRecord> {
        validate_catalog_name(name)?;
        if kind != INTERNAL {
            return Err(CatalogError::BadRequest(format!("unsupported catalog type {kind:?}; supported: {INTERNAL}")));
        }
        let warehouse = Warehouse::from_properties(&properties)?;
        let _claim = self.warehouse_claims.lock().await;
        self.check_warehouse_free(name, &warehouse).await?;
        probe_storage(&warehouse).await?;
        let new = NewCatalog { name: name.to_string(), kind: kind.to_string(), properties };
        let created = self.store.create_catalog(&new).await;
        self.forget_catalog(name);
        created.map_err(|e| match e {
            loch_meta::MetaError::AlreadyExists(_) => CatalogError::AlreadyExists(format!("catalog {name}")),
            other => other.into(),
        })
    }

    /// Replaces a catalog's properties. Secret values sent back as [`MASK`] keep their stored
    /// value. Moving the warehouse is refused while the catalog holds tables.
    pub async fn update_catalog(&self, name: &str, mut properties: BTreeMap<String, String>) -> Result<CatalogRecord> {
        let current = self.get_catalog(name).await?;
        for key in SECRET_PROPERTIES {
            if properties.get(key).map(String::as_str) == Some(MASK) {
                match current.properties.get(key) {
                    Some(old) => properties.insert(key.to_string(), old.clone()),
                    None => properties.remove(key),
                };
            }
        }
        let warehouse = Warehouse::from_properties(&properties)?;
        let _claim = self.warehouse_claims.lock().await;
        let moved =
            Warehouse::from_properties(&current.properties).map_or(true, |old| old.location != warehouse.location);
        if moved && self.store.count_tables(current.id).await? > 0 {
            return Err(CatalogError::BadRequest(format!(
                "cannot move the warehouse of catalog {name} while it holds tables or views"
            )));
        }
        self.check_warehouse_free(name, &warehouse).await?;
        probe_storage(&warehouse).await?;
        let updated = self.store.update_catalog(name, &properties).await;
        self.forget_catalog(name);
        updated.map_err(|e| match e {
            loch_meta::MetaError::NotFound(_) => CatalogError::NoSuchCatalog(name.to_string()),
            other => other.into(),
        })
    }

    /// Deletes a catalog; refused while it holds tables or views.
    pub async fn delete_catalog(&self, name: &str) -> Result<()> {
        let deleted = self.store.delete_catalog(name).await;
        self.forget_catalog(name);
        deleted.map_err(|e| match e {
            loch_meta::MetaError::NotFound(_) => CatalogError::NoSuchCatalog(name.to_string()),
            loch_meta::MetaError::NotEmpty(what) => CatalogError::CatalogNotEmpty(what),
            other => other.into(),
        })
    }

    /// A 400 when `warehouse` overlaps the warehouse of another catalog: tables of two catalogs
    /// must never share files (purging one would delete the other's).
    async fn check_warehouse_free(&self, name: &str, warehouse: &Warehouse) -> Result<()> {
        for other in self.store.list_catalogs().await? {
            if other.name == name {
                continue;
            }
            let Ok(theirs) = Warehouse::from_properties(&other.properties) else { continue };
            if theirs.location.overlaps(&warehouse.location) {
                return Err(CatalogError::BadRequest(format!(
                    "warehouse {} overlaps the warehouse {} of catalog {}",
                    warehouse.location, theirs.location, other.name
                )));
            }
        }
        Ok(())
    }

    /// Every table of a catalog with its current statistics.
    pub async fn catalog_tables(&self, name: &str) -> Result<Vec<TableRecord>> {
        let catalog = self.get_catalog(name).await?;
        Ok(self.store.list_catalog_tables(catalog.id).await?)
    }

    /// Creates catalog `name` with a `file://` warehouse at `warehouse` unless it exists; used at
    /// start-up for the embedded default catalog.
    pub async fn ensure_catalog(&self, name: &str, warehouse: &str) -> Result<CatalogRecord> {
        if let Some(existing) = self.store.get_catalog(name).await? {
            return Ok(existing);
        }
        let properties = BTreeMap::from([(crate::storage::WAREHOUSE.to_string(), warehouse.to_string())]);
        match self.create_catalog(name, INTERNAL, properties).await {
            Err(CatalogError::AlreadyExists(_)) => self.get_catalog(name).await,
            other => other,
        }
    }
}

/// Writes and deletes a small file in the warehouse, so bad storage settings fail at once.
async fn probe_storage(warehouse: &Warehouse) -> Result<()> {
    let probe = warehouse.location.join(&format!(".loch-probe-{}", uuid::Uuid::new_v4()));
    let check = async {
        write_inside(&warehouse.file_io, &warehouse.location, &probe, Bytes::from_static(b"loch")).await?;
        warehouse.file_io.delete(&probe).await.map_err(|e| CatalogError::storage(format!("delete {probe}"), e))
    };
    check.await.map_err(|e| CatalogError::BadRequest(format!("warehouse {} is not writable: {e}", warehouse.location)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let props = BTreeMap::from([
            ("s3.secret-access-key".to_string(), "s".to_string()),
            ("s3.access-key-id".to_string(), "a".to_string()),
        ]);
        let masked = mask_secrets(&props);
        assert_eq!(masked["s3.secret-access-key"], MASK);
        assert_eq!(masked["s3.access-key-id"], "a");
    }

    #[test]
    fn only_persisted_table_defaults_reach_tables() {
        let catalog = CatalogRecord {
            id: 1,
            name: "c".into(),
            kind: INTERNAL.into(),
            properties: BTreeMap::from([
                ("table.write.format.default".to_string(), "parquet".to_string()),
                ("table.self-optimizing.group".to_string(), "g".to_string()),
                ("warehouse".to_string(), "file:///w".to_string()),
            ]),
            created_at: 0,
            updated_at: 0,
        };
        let defaults: Vec<_> = persisted_table_defaults(&catalog).collect();
        assert_eq!(defaults, vec![("write.format.default".to_string(), "parquet".to_string())]);
    }
}
