//! Iceberg views: list, create, load, replace (commit), drop, rename.
//!
//! Views are rows of the same table as tables (one name space per namespace) with their own
//! metadata files, committed by the same compare-and-swap on the row's pointer.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use iceberg::ViewUpdate;
use iceberg::spec::{Schema, ViewFormatVersion, ViewMetadata, ViewMetadataBuilder, ViewVersion};
use loch_meta::{CommitBatch, NewTable, Page, PageRequest, PointerSwap, TableKind, TableRecord, TableStats};
use loch_table::location::Location;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::commit::Failure;
use crate::error::{CatalogError, Result};
use crate::json_order::{VIEW_LISTS, to_ordered_json};
use crate::metadata::{parse_version, read_text, table_scope};
use crate::retry::{RetryPolicy, run_with_retries};
use crate::service::{CatalogService, ResolvedCatalog, table_key};
use crate::storage::policy::{PATH_PROPERTIES, ReadLimits, check_new_location, check_path_properties, write_inside};
use crate::tables::{TableName, name_taken};

/// View property naming a directory for metadata files (instead of `{location}/metadata`).
const METADATA_PATH: &str = "write.metadata.path";

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
    /// Its metadata as stored (lists in a stable order), for answers.
    pub json: Box<RawValue>,
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

/// Location of a view's next metadata file: in `write.metadata.path` when set, else in
/// `{location}/metadata`.
fn next_view_location(metadata: &ViewMetadata, current: Option<&str>) -> String {
    let version = current.and_then(parse_version).map_or(0, |v| v + 1);
    let dir = match metadata.properties().get(METADATA_PATH) {
        Some(dir) => dir.trim_end_matches('/').to_string(),
        None => format!("{}/metadata", metadata.location().trim_end_matches('/')),
    };
    format!("{dir}/{version:05}-{}.metadata.json", Uuid::new_v4())
}

/// Writes view metadata (lists in a stable order) inside the view's location; returns the JSON.
async fn write_view(io: &iceberg::io::FileIO, location: &str, metadata: &ViewMetadata) -> Result<Box<RawValue>> {
    let json = to_ordered_json(metadata, VIEW_LISTS)
        .map_err(|e| CatalogError::Internal(format!("serialize view metadata: {e}")))?;
    let scope = table_scope(metadata.location())?;
    write_inside(io, &scope, location, Bytes::from(json.get().as_bytes().to_vec())).await?;
    Ok(json)
}

/// Reads view metadata and its text.
async fn read_view(
    io: &iceberg::io::FileIO,
    location: &str,
    limits: ReadLimits,
) -> Result<(ViewMetadata, Box<RawValue>)> {
    let text = read_text(io, location, limits).await?;
    let metadata = serde_json::from_str(&text)
        .map_err(|e| CatalogError::Internal(format!("cannot parse view metadata {location}: {e}")))?;
    let json = RawValue::from_string(text).map_err(|e| CatalogError::Internal(format!("view metadata json: {e}")))?;
    Ok((metadata, json))
}

/// Checks a view's location and the metadata directory its properties may name.
async fn check_view_paths(catalog: &ResolvedCatalog, metadata: &ViewMetadata, moved: bool) -> Result<()> {
    let location = if moved {
        check_new_location(&catalog.warehouse, "location", metadata.location()).await?
    } else {
        table_scope(metadata.location())?
    };
    check_path_properties(&location, metadata.properties())
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
        let (metadata, json) =
            read_view(&catalog.warehouse.file_io, &row.metadata_location, self.options.read_limits).await?;
        Ok(LoadedView {
            metadata_location: row.metadata_location,
            metadata: Arc::new(metadata),
            json,
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
        if let Some(row) = self.store.get_table(catalog.record.id, namespace, &request.name).await? {
            return Err(name_taken(&ident, row.kind, TableKind::View));
        }
        let location = self.choose_location(catalog, &ident, request.location.as_deref(), None).await?;
        let metadata = ViewMetadataBuilder::new(
            location.as_str().to_string(),
            request.schema,
            request.view_version,
            ViewFormatVersion::V1,
            request.properties,
        )
        .and_then(|b| b.build())
        .map_err(|e| CatalogError::Invalid(format!("invalid view definition: {}", e.message())))?
        .metadata;
        check_path_properties(&location, metadata.properties())?;
        let _lock = self.lock_tables([table_key(catalog.record.id, namespace, &request.name)]).await;
        let policy = async { RetryPolicy::for_table(metadata.properties(), self.options.commit_retries) };
        run_with_retries(policy, |_| self.create_view_once(catalog, &ident, &location, &metadata), Failure::is_conflict)
            .await
            .map_err(|(e, _)| e.into_error())
    }

    /// One attempt of [`CatalogService::create_view`]: its first metadata file, then its row.
    async fn create_view_once(
        &self,
        catalog: &ResolvedCatalog,
        ident: &TableName,
        location: &Location,
        metadata: &ViewMetadata,
    ) -> Result<LoadedView, Failure> {
        // Created by someone else since the last attempt.
        if let Some(row) = self.store.get_table(catalog.record.id, &ident.namespace, &ident.name).await? {
            return Err(name_taken(ident, row.kind, TableKind::View).into());
        }
        let io = &catalog.warehouse.file_io;
        let metadata_location = next_view_location(metadata, None);
        let json = write_view(io, &metadata_location, metadata).await?;
        let new = NewTable {
            catalog_id: catalog.record.id,
            namespace: ident.namespace.clone(),
            name: ident.name.clone(),
            kind: TableKind::View,
            format: FORMAT_VIEW.into(),
            uuid: metadata.uuid().to_string(),
            location: location.canonical(),
            metadata_location: metadata_location.clone(),
            stats: TableStats::default(),
        };
        let batch = CommitBatch { inserts: vec![new], ..CommitBatch::default() };
        self.publish(io, &batch, std::slice::from_ref(&metadata_location)).await?;
        Ok(LoadedView { metadata_location, metadata: Arc::new(metadata.clone()), json, config: HashMap::new() })
    }

    /// Commits changes to a view (the REST "replace view").
    pub async fn replace_view(&self, catalog: &ResolvedCatalog, change: ViewChange) -> Result<LoadedView> {
        change.ident.validate()?;
        let _lock = self.lock_tables([table_key(catalog.record.id, &change.ident.namespace, &change.ident.name)]).await;
        let policy = self.view_retry_policy(catalog, &change.ident);
        run_with_retries(policy, |attempt| self.replace_view_once(catalog, &change, attempt), Failure::is_conflict)
            .await
            .map_err(|(e, _)| e.into_error())
    }

    /// The retry policy of a view: its `commit.retry.*` properties (the server's when the view
    /// cannot be read).
    async fn view_retry_policy(&self, catalog: &ResolvedCatalog, ident: &TableName) -> RetryPolicy {
        let server = RetryPolicy::server(self.options.commit_retries);
        let Ok(row) = self.view_row(catalog, ident).await else { return server };
        match read_view(&catalog.warehouse.file_io, &row.metadata_location, self.options.read_limits).await {
            Ok((current, _)) => RetryPolicy::for_table(current.properties(), self.options.commit_retries),
            Err(_) => server,
        }
    }

    /// One attempt of [`CatalogService::replace_view`]: the view's new state.
    async fn replace_view_once(
        &self,
        catalog: &ResolvedCatalog,
        change: &ViewChange,
        attempt: u32,
    ) -> Result<LoadedView, Failure> {
        let io = &catalog.warehouse.file_io;
        let row = self.view_row(catalog, &change.ident).await?;
        let (current, _) = read_view(io, &row.metadata_location, self.options.read_limits).await?;
        for requirement in &change.requirements {
            let ViewRequirement::UuidMatch { uuid } = requirement;
            if *uuid != current.uuid() {
                return Err(CatalogError::CommitFailed(format!(
                    "Requirement failed: view UUID does not match: expected {} != {uuid}",
                    current.uuid()
                ))
                .into());
            }
        }
        let invalid = |e: iceberg::Error| {
            let message = format!("cannot apply updates to view {}: {}", change.ident, e.message());
            if attempt == 0 { CatalogError::Invalid(message) } else { CatalogError::CommitFailed(message) }
        };
        let old_location = current.location().to_string();
        let old_paths: Vec<Option<String>> =
            PATH_PROPERTIES.iter().map(|k| current.properties().get(*k).cloned()).collect();
        let mut builder = ViewMetadataBuilder::new_from_metadata(current);
        for update in change.updates.iter().cloned() {
            builder = apply_view_update(builder, update).map_err(invalid)?;
        }
        let metadata = builder.build().map_err(invalid)?.metadata;
        let moved = metadata.location() != old_location;
        let paths: Vec<Option<String>> =
            PATH_PROPERTIES.iter().map(|k| metadata.properties().get(*k).cloned()).collect();
        if moved || paths != old_paths {
            check_view_paths(catalog, &metadata, moved).await?;
        }
        let metadata_location = next_view_location(&metadata, Some(&row.metadata_location));
        let json = write_view(io, &metadata_location, &metadata).await.map_err(|e| {
            tracing::error!(error = %e, "cannot write a new view metadata file; the commit fails");
            CatalogError::CommitFailed(format!(
                "the new metadata file could not be written, nothing was committed: {}",
                e.client_message()
            ))
        })?;
        let swap = PointerSwap {
            table_id: row.id,
            expected_version: row.version,
            previous_metadata_location: row.metadata_location.clone(),
            metadata_location: metadata_location.clone(),
            location: table_scope(metadata.location())?.canonical(),
            stats: TableStats::default(),
        };
        let batch = CommitBatch { swaps: vec![swap], ..CommitBatch::default() };
        self.publish(io, &batch, std::slice::from_ref(&metadata_location)).await?;
        Ok(LoadedView { metadata_location, metadata: Arc::new(metadata), json, config: HashMap::new() })
    }

    /// Drops a view (its metadata files stay, as in Iceberg's catalogs).
    pub async fn drop_view(&self, catalog: &ResolvedCatalog, ident: &TableName) -> Result<()> {
        let _lock = self.lock_tables([table_key(catalog.record.id, &ident.namespace, &ident.name)]).await;
        let drop = |_| async {
            let row = self.view_row(catalog, ident).await?;
            self.store.delete_table(row.id, row.version, None).await?;
            Ok::<_, Failure>(())
        };
        RetryPolicy::server(self.options.commit_retries)
            .run(drop, Failure::is_conflict)
            .await
            .map_err(|(e, _)| e.into_error())
    }

    /// Renames (or moves) a view within its catalog.
    pub async fn rename_view(&self, catalog: &ResolvedCatalog, from: &TableName, to: &TableName) -> Result<()> {
        self.rename(catalog, from, to, TableKind::View).await
    }
}
