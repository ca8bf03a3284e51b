//! Keyed (primary-key) tables in Amoro's Mixed-Iceberg format: one table to its users, two
//! Iceberg tables underneath, laid out as Amoro's internal catalog lays them out — the base
//! store `t` at the table's location and the change store `t@change` at `<location>/change`,
//! each a plain Iceberg table every engine can read through the REST catalog.
//!
//! The stores are two rows of the metadata store told apart by their format
//! (`mixed-iceberg`, `mixed-iceberg-change`, taken from Amoro's store properties when a table is
//! created or registered); only a pair may nest one location inside the other. Dropping the
//! table drops both; renaming is refused until both can move together.

use std::collections::HashMap;

use iceberg::spec::{FormatVersion, TableMetadata, Type};
use loch_table::mixed::properties::{
    BASE_BUCKETS, CHANGE_BUCKETS, PRIMARY_KEY_FIELDS, Store, TABLE_FORMAT, TABLE_STORE, store_of,
};

use crate::error::{CatalogError, Result};
use crate::service::{CatalogService, ResolvedCatalog};
use crate::tables::{CreateTable, FORMAT_ICEBERG, LoadedTable, TableName};

/// Format of a keyed table's base store (the table users name).
pub const FORMAT_MIXED_ICEBERG: &str = "mixed-iceberg";
/// Format of a keyed table's change store.
pub const FORMAT_MIXED_ICEBERG_CHANGE: &str = "mixed-iceberg-change";
/// Suffix naming a keyed table's change store (Amoro's internal catalog: `t@change`).
pub const CHANGE_SUFFIX: &str = "@change";
/// Amoro's property naming the change store of a base store.
const CHANGE_IDENTIFIER: &str = "mixed-format.change.identifier";

/// The format a table's row records, from Amoro's store properties in its metadata.
pub fn format_of(metadata: &TableMetadata) -> &'static str {
    match store_of(metadata.properties()) {
        Some(Store::Base) => FORMAT_MIXED_ICEBERG,
        Some(Store::Change) => FORMAT_MIXED_ICEBERG_CHANGE,
        None => FORMAT_ICEBERG,
    }
}

/// The change store's name of base store `name`.
pub fn change_name(name: &str) -> String {
    format!("{name}{CHANGE_SUFFIX}")
}

impl CatalogService {
    /// Creates a keyed table: its base store, then its change store with the same schema and
    /// partition spec; a failure of the second drops the first. `primary_key` names top-level
    /// primitive columns.
    pub async fn create_keyed_table(
        &self,
        catalog: &ResolvedCatalog,
        namespace: &[String],
        request: CreateTable,
        primary_key: Vec<String>,
    ) -> Result<LoadedTable> {
        if primary_key.is_empty() {
            return Err(CatalogError::BadRequest("a mixed-iceberg table needs a primary key".into()));
        }
        if request.name.ends_with(CHANGE_SUFFIX) {
            return Err(CatalogError::BadRequest(format!("a table name must not end with {CHANGE_SUFFIX}")));
        }
        if request.stage_create {
            return Err(CatalogError::BadRequest("a mixed-iceberg table cannot be staged".into()));
        }
        for (i, name) in primary_key.iter().enumerate() {
            let field = request.schema.as_struct().fields().iter().find(|f| &f.name == name).ok_or_else(|| {
                CatalogError::BadRequest(format!("primary key column {name:?} is not a top-level column"))
            })?;
            if !matches!(*field.field_type, Type::Primitive(_)) {
                return Err(CatalogError::BadRequest(format!(
                    "primary key column {name:?} is not of a primitive type"
                )));
            }
            if primary_key[..i].contains(name) {
                return Err(CatalogError::BadRequest(format!("primary key column {name:?} is named twice")));
            }
        }
        match request.properties.get("format-version").map(String::as_str) {
            None | Some("2") => {}
            Some(other) => {
                return Err(CatalogError::BadRequest(format!(
                    "mixed-iceberg stores are format version 2, not {other}"
                )));
            }
        }
        let base_name = TableName::new(namespace.to_vec(), request.name.clone());
        let change = change_name(&request.name);
        let mut properties = request.properties.clone();
        for (key, value) in [
            (TABLE_FORMAT, "MIXED_ICEBERG".to_string()),
            (TABLE_STORE, "base".to_string()),
            (PRIMARY_KEY_FIELDS, primary_key.join(",")),
            (CHANGE_IDENTIFIER, format!("{}.{change}", namespace.join("."))),
            ("format-version", "2".to_string()),
        ] {
            properties.insert(key.to_string(), value);
        }
        for key in [BASE_BUCKETS, CHANGE_BUCKETS] {
            properties.entry(key.to_string()).or_insert_with(|| "4".to_string());
        }
        let base = self.create_table(catalog, namespace, CreateTable { properties, ..request }).await?;
        let metadata = &base.metadata.metadata;
        let change_request = CreateTable {
            name: change.clone(),
            location: Some(format!("{}/change", metadata.location().trim_end_matches('/'))),
            schema: (**metadata.current_schema()).clone(),
            partition_spec: Some(metadata.default_partition_spec().as_ref().clone().into_unbound()),
            write_order: None,
            stage_create: false,
            properties: HashMap::from([
                (TABLE_STORE.to_string(), "change".to_string()),
                (TABLE_FORMAT.to_string(), "MIXED_ICEBERG".to_string()),
                ("format-version".to_string(), "2".to_string()),
            ]),
        };
        debug_assert_eq!(metadata.format_version(), FormatVersion::V2);
        if let Err(e) = self.create_table(catalog, namespace, change_request).await {
            tracing::warn!(table = %base_name, error = %e, "the change store could not be created; dropping the base store");
            if let Ok(row) = self.table_row(catalog, &base_name).await {
                let _ = self.store.delete_table(row.id, row.version, None).await;
            }
            return Err(e);
        }
        tracing::info!(table = %base_name, key = ?primary_key, "created keyed table");
        Ok(base)
    }
}
