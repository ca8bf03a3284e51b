//! A managed table as self-optimizing sees it: its catalog, name, current metadata and an
//! iceberg `Table` over the catalog's storage.

use std::collections::HashMap;

use iceberg::table::Table;
use iceberg::{NamespaceIdent, Runtime, TableIdent};
use loch_catalog::{CatalogService, ResolvedCatalog, TableLock, TableName};
use loch_meta::TableRecord;

use crate::error::{OptimizingError, Result};
use crate::properties::OptimizingProperties;

/// A loaded managed table.
#[derive(Debug, Clone)]
pub struct ManagedTable {
    /// Its row.
    pub record: TableRecord,
    /// Its catalog.
    pub catalog: ResolvedCatalog,
    /// Its name.
    pub name: TableName,
    /// The table at its current metadata.
    pub table: Table,
    /// Effective self-optimizing properties.
    pub props: OptimizingProperties,
    /// For a keyed (Mixed-Iceberg) table, whose base store this is: its change store and key.
    pub keyed: Option<KeyedStores>,
}

/// What optimizing needs of a keyed table besides its base store.
#[derive(Debug, Clone)]
pub struct KeyedStores {
    /// The change store at its current metadata.
    pub change: Table,
    /// Primary key columns.
    pub primary_key: Vec<String>,
    /// Base buckets (`base.file-index.hash-bucket`).
    pub buckets: u32,
}

impl ManagedTable {
    /// Loads table `table_id`; `None` when it was dropped (or is a view).
    pub async fn load(catalogs: &CatalogService, table_id: i64) -> Result<Option<Self>> {
        let Some(record) = catalogs.store().get_table_by_id(table_id).await? else { return Ok(None) };
        if record.kind != loch_meta::TableKind::Table {
            return Ok(None);
        }
        let catalog_record = catalogs
            .store()
            .get_catalog_by_id(record.catalog_id)
            .await?
            .ok_or_else(|| OptimizingError::NotFound(format!("catalog of table {table_id}")))?;
        let catalog = catalogs.resolve(&catalog_record.name).await?;
        let name = TableName::new(record.namespace.clone(), record.name.clone());
        let loaded = match catalogs.load_table(&catalog, &name).await {
            Ok(loaded) => loaded,
            Err(loch_catalog::CatalogError::NoSuchTable(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let props = OptimizingProperties::resolve(&catalog.record.properties, loaded.metadata.metadata.properties())?;
        let table = iceberg_table(&catalog, &name, &loaded)?;
        let keyed = match record.format.as_str() {
            loch_catalog::keyed::FORMAT_MIXED_ICEBERG => {
                let properties = table.metadata().properties();
                let primary_key = loch_table::mixed::properties::primary_key(properties);
                if primary_key.is_empty() {
                    None
                } else {
                    let buckets = loch_table::mixed::properties::base_buckets(properties)?;
                    let change_name =
                        TableName::new(name.namespace.clone(), loch_catalog::keyed::change_name(&name.name));
                    // Without its change store (a half-registered table) it is no keyed table
                    // to optimize; evaluation blocks it with the reason.
                    match catalogs.load_table(&catalog, &change_name).await {
                        Ok(loaded) => Some(KeyedStores {
                            change: iceberg_table(&catalog, &change_name, &loaded)?,
                            primary_key,
                            buckets,
                        }),
                        Err(loch_catalog::CatalogError::NoSuchTable(_)) => None,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            _ => None,
        };
        Ok(Some(Self { record, catalog, name, table, props, keyed }))
    }

    /// What the runtime remembers as evaluated: the current snapshot id, or for a keyed table
    /// a mix of both stores' (so a commit to either is a change); `None` without any snapshot.
    pub fn state(&self) -> Option<i64> {
        let base = self.table.metadata().current_snapshot_id();
        match &self.keyed {
            None => base,
            Some(keyed) => match (base, keyed.change.metadata().current_snapshot_id()) {
                (None, None) => None,
                (b, c) => Some(b.unwrap_or(0) ^ c.unwrap_or(0).rotate_left(29)),
            },
        }
    }

    /// True for the change store of a keyed table, which is optimized with its base store.
    pub fn is_change_store(&self) -> bool {
        self.record.format == loch_catalog::keyed::FORMAT_MIXED_ICEBERG_CHANGE
    }

    /// Loads table `table_id` under its commit lock, so that no commit through this server
    /// comes in between reading it and committing a change built on it (404 when it is gone).
    /// A rename between taking the lock and reading again takes the lock of the new name.
    pub async fn load_locked(catalogs: &CatalogService, table_id: i64) -> Result<(TableLock<'_>, Self)> {
        let dropped = || OptimizingError::NotFound(format!("table {table_id}"));
        let mut named = Self::load(catalogs, table_id).await?.ok_or_else(dropped)?;
        loop {
            let lock = catalogs.lock_table(&named.catalog, &named.name).await;
            let table = Self::load(catalogs, table_id).await?.ok_or_else(dropped)?;
            if table.name == named.name && table.catalog.record.id == named.catalog.record.id {
                return Ok((lock, table));
            }
            drop(lock);
            named = table;
        }
    }

    /// `catalog.namespace.table`, for logs and task inputs.
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.catalog.record.name, self.name)
    }

    /// Storage settings the workers need.
    pub fn storage(&self) -> &HashMap<String, String> {
        &self.catalog.warehouse.client_config
    }
}

/// An iceberg `Table` over the catalog's storage at `loaded`'s metadata.
fn iceberg_table(catalog: &ResolvedCatalog, name: &TableName, loaded: &loch_catalog::LoadedTable) -> Result<Table> {
    Ok(Table::builder()
        .identifier(TableIdent::new(NamespaceIdent::from_vec(name.namespace.clone())?, name.name.clone()))
        .file_io(catalog.warehouse.file_io.clone())
        .metadata(loaded.metadata.metadata.clone())
        .metadata_location(loaded.metadata_location.clone().unwrap_or_default())
        .runtime(Runtime::current())
        .build()?)
}
