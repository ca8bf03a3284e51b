//! Iceberg views: list, create, load, replace (commit), drop, rename.
//!
//! Views are rows of the same table as tables (one name space per namespace) with their own
//! metadata files, committed by the same compare-and-swap on the row's pointer.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use iceberg::ViewUpdate;
use iceberg::spec::{Schema, ViewFormatVersion, ViewMetadata, ViewMetadataBuilder, ViewVersion};
use loch_meta::{MetaError, NewTable, Page, PageRequest, PointerSwap, TableKind, TableRecord, TableStats};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{CatalogError, Result};
use crate::metadata::{delete_uncommitted, parse_version, read_file, write_new_file};
use crate::service::{CatalogService, ResolvedCatalog, table_key};
use crate::tables::TableName;

/// Table format recorded for views.
const FORMAT_VIEW: &str = "iceberg-view";

/// An assertion about a view's current metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ViewRequirement {
    /// The view's UUID must match.
    #[serde(rename = "assert-view-uuid")]
    UuidMatch {
        /// Expected UUID.
        uuid: Uuid,
    },
}

/// A loaded view.
#[derive(Debug, Clone)]
pub struct LoadedView {
    /// Its current metadata file.
    pub metadata_location: String,
    /// Its metadata.
    pub metadata: Arc<ViewMetadata>,
    /// Configuration for the client.
    pub config: HashMap<String, String>,
}

/// A create-view request.
#[derive(Debug, Clone)]
pub struct CreateView {
    /// View name.
    pub name: String,
    /// Location; chosen by the catalog when absent.
    pub location: Option<String>,
    /// The view's schema.
    pub schema: Schema,
    /// The first version (its schema id is replaced by the id assigned to `schema`).
    pub view_version: ViewVersion,
    /// View properties.
    pub properties: HashMap<String, String>,
}

/// Requested changes to a view.
#[derive(Debug, Clone)]
pub struct ViewChange {
    /// The view.
    pub ident: TableName,
    /// Assertions about its current metadata.
    pub requirements: Vec<ViewRequirement>,
    /// Changes to apply.
    pub updates: Vec<ViewUpdate>,
}

fn next_view_location(metadata: &ViewMetadata, current: Option<&str>) -> String {
    let version = current.and_then(parse_version).map_or(0, |v| v + 1);
    format!("{}/metadata/{version:05}-{}.metadata.json", metadata.location().trim_end_matches('/'), Uuid::new_v4())
}

async fn write_view(io: &iceberg::io::FileIO, location: &str, metadata: &ViewMetadata) -> Result<()> {
    let json =
        serde_json::to_vec(metadata).map_err(|e| CatalogError::Internal(format!("serialize view metadata: {e}")))?;
    write_new_file(io, location, Bytes::from(json)).await
}

async fn read_view(io: &iceberg::io::FileIO, location: &str) -> Result<ViewMetadata> {
    let bytes = read_file(io, location).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| CatalogError::Internal(format!("cannot parse view metadata {location}: {e}")))
}

fn apply_view_update(builder: ViewMetadataBuilder, update: ViewUpdate) -> iceberg::Result<ViewMetadataBuilder> {
    match update {
        ViewUpdate::AssignUuid { uuid } => Ok(builder.assign_uuid(uuid)),
        ViewUpdate::UpgradeFormatVersion { format_version } => builder.upgrade_format_version(format_version),
        ViewUpdate::AddSchema { schema, .. } => Ok(builder.add_schema(schema)),
        ViewUpdate::SetLocation { location } => Ok(builder.set_location(location)),
        ViewUpdate::SetProperties { updates } => builder.set_properties(updates),
        ViewUpdate::RemoveProperties { removals } => Ok(builder.remove_properties(&removals)),
        ViewUpdate::AddViewVersion { view_version } => builder.add_version(view_version),
        ViewUpdate::SetCurrentViewVersion { view_version_id } => builder.set_current_version_id(view_version_id),
    }
}

impl CatalogService {
    /// Views of a namespace.
    pub async fn list_views(
        &self,
        catalog: &ResolvedCatalog,
        namespace: &[String],
        page: &PageRequest,
    ) -> Result<Page<TableRecord>> {
        self.load_namespace(catalog, namespace).await?;
        Ok(self.store.list_tables(catalog.record.id, namespace, TableKind::View, page).await?)
    }

    async fn view_row(&self, catalog: &ResolvedCatalog, ident: &TableName) -> Result<TableRecord> {
        self.row_of_kind(catalog, ident, TableKind::View).await
    }

    /// True when the view exists.
    pub async fn view_exists(&self, catalog: &ResolvedCatalog, ident: &TableName) -> Result<bool> {
        self.exists_of_kind(catalog, ident, TableKind::View).await
    }

    /// Loads a view.
    pub async fn load_view(&self, catalog: &ResolvedCatalog, ident: &TableName) -> Result<LoadedView> {
        let row = self.view_row(catalog, ident).await?;
        let metadata = read_view(&catalog.warehouse.file_io, &row.metadata_location).await?;
        Ok(LoadedView {
            metadata_location: row.metadata_location,
            metadata: Arc::new(metadata),
            config: HashMap::new(),
        })
    }

    /// Creates a view.
    pub async fn create_view(
        &self,
        catalog: &ResolvedCatalog,
        namespace: &[String],
        request: CreateView,
    ) -> Result<LoadedView> {
        let ident = TableName::new(namespace.to_vec(), request.name.clone());
        ident.validate()?;
        self.load_namespace(catalog, namespace).await?;
        if self.store.get_table(catalog.record.id, namespace, &request.name).await?.is_some() {
            return Err(CatalogError::AlreadyExists(format!("table or view {ident}")));
        }
        let location = self.choose_location(catalog, &ident, request.location.as_deref()).await?;
        let metadata = ViewMetadataBuilder::new(
            location.clone(),
            request.schema,
            request.view_version,
            ViewFormatVersion::V1,
            request.properties,
        )
        .and_then(|b| b.build())
        .map_err(|e| CatalogError::BadRequest(format!("invalid view definition: {}", e.message())))?
        .metadata;
        let _lock = self.lock_tables([table_key(catalog.record.id, namespace, &request.name)]).await;
        let metadata_location = next_view_location(&metadata, None);
        write_view(&catalog.warehouse.file_io, &metadata_location, &metadata).await?;
        let new = NewTable {
            catalog_id: catalog.record.id,
            namespace: namespace.to_vec(),
            name: request.name,
            kind: TableKind::View,
            format: FORMAT_VIEW.into(),
            uuid: metadata.uuid().to_string(),
            location,
            metadata_location: metadata_location.clone(),
            stats: TableStats::default(),
        };
        if let Err(e) = self.store.insert_table(&new).await {
            delete_uncommitted(&catalog.warehouse.file_io, std::slice::from_ref(&metadata_location)).await;
            return Err(match e {
                MetaError::AlreadyExists(_) => CatalogError::AlreadyExists(format!("table or view {ident}")),
                other => other.into(),
            });
        }
        Ok(LoadedView { metadata_location, metadata: Arc::new(metadata), config: HashMap::new() })
    }

    /// Commits changes to a view (the REST "replace view").
    pub async fn replace_view(&self, catalog: &ResolvedCatalog, change: ViewChange) -> Result<LoadedView> {
        change.ident.validate()?;
        let _lock = self.lock_tables([table_key(catalog.record.id, &change.ident.namespace, &change.ident.name)]).await;
        let io = &catalog.warehouse.file_io;
        let mut attempt = 0;
        loop {
            let row = self.view_row(catalog, &change.ident).await?;
            let current = read_view(io, &row.metadata_location).await?;
            for requirement in &change.requirements {
                let ViewRequirement::UuidMatch { uuid } = requirement;
                if *uuid != current.uuid() {
                    return Err(CatalogError::CommitFailed(format!("view {}: UUID does not match", change.ident)));
                }
            }
            let invalid = |e: iceberg::Error| {
                let message = format!("cannot apply updates to view {}: {}", change.ident, e.message());
                if attempt == 0 { CatalogError::BadRequest(message) } else { CatalogError::CommitFailed(message) }
            };
            let mut builder = ViewMetadataBuilder::new_from_metadata(current);
            for update in change.updates.iter().cloned() {
                builder = apply_view_update(builder, update).map_err(invalid)?;
            }
            let metadata = builder.build().map_err(invalid)?.metadata;
            let metadata_location = next_view_location(&metadata, Some(&row.metadata_location));
            write_view(io, &metadata_location, &metadata).await?;
            let swap = PointerSwap {
                table_id: row.id,
                expected_version: row.version,
                previous_metadata_location: row.metadata_location.clone(),
                metadata_location: metadata_location.clone(),
                location: crate::storage::normalize_location(metadata.location())?,
                stats: TableStats::default(),
            };
            match self.store.swap_pointers(&[swap]).await {
                Ok(()) => {
                    return Ok(LoadedView { metadata_location, metadata: Arc::new(metadata), config: HashMap::new() });
                }
                Err(MetaError::Conflict(_)) if attempt < self.options.commit_retries => {
                    delete_uncommitted(io, std::slice::from_ref(&metadata_location)).await;
                    attempt += 1;
                }
                Err(e) => {
                    if !e.is_unknown_outcome() {
                        delete_uncommitted(io, std::slice::from_ref(&metadata_location)).await;
                    }
                    return Err(e.into());
                }
            }
        }
    }

    /// Drops a view (its metadata files stay, as in Iceberg's catalogs).
    pub async fn drop_view(&self, catalog: &ResolvedCatalog, ident: &TableName) -> Result<()> {
        let _lock = self.lock_tables([table_key(catalog.record.id, &ident.namespace, &ident.name)]).await;
        let mut attempts = 0;
        loop {
            let row = self.view_row(catalog, ident).await?;
            match self.store.delete_table(row.id, row.version).await {
                Ok(()) => return Ok(()),
                Err(MetaError::Conflict(_)) if attempts < self.options.commit_retries => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Renames (or moves) a view within its catalog.
    pub async fn rename_view(&self, catalog: &ResolvedCatalog, from: &TableName, to: &TableName) -> Result<()> {
        self.rename(catalog, from, to, TableKind::View).await
    }
}
