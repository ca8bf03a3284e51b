//! Table operations of the Iceberg REST API other than commits: create (a commit that asserts
//! the table does not exist), load, list, drop, rename, register, credentials.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{FormatVersion, Schema, SortOrder, TableMetadataBuilder, UnboundPartitionSpec};
use iceberg::{TableCreation, TableRequirement, TableUpdate};
use loch_meta::{MetaError, NewPurge, Page, PageRequest, TableKind, TableRecord};

use crate::catalogs::persisted_table_defaults;
use crate::commit::{Adoption, Failure, TableChange};
use crate::error::{CatalogError, Result};
use crate::ident::{display_namespace, validate_name, validate_namespace};
use crate::metadata::{CachedMetadata, read_metadata};
use crate::retry::RetryPolicy;
use crate::service::{CatalogService, ResolvedCatalog, table_key};
use crate::storage::parse_location;
use crate::storage::policy::{check_new_location, check_path_properties, resolves_inside};
use loch_table::location::Location;

/// Table format of plain Iceberg tables.
pub const FORMAT_ICEBERG: &str = "iceberg";

/// A table or view identifier: namespace levels and a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    /// Namespace levels, outermost first.
    pub namespace: Vec<String>,
    /// Name within the namespace.
    pub name: String,
}

impl TableName {
    /// An identifier from its parts.
    pub fn new(namespace: Vec<String>, name: impl Into<String>) -> Self {
        Self { namespace, name: name.into() }
    }

    /// Checks both parts (400 on invalid identifiers).
    pub fn validate(&self) -> Result<()> {
        validate_namespace(&self.namespace)?;
        validate_name("name", &self.name)
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", display_namespace(&self.namespace), self.name)
    }
}

/// A loaded table: its metadata and the configuration a client needs to read its files.
#[derive(Debug, Clone)]
pub struct LoadedTable {
    /// The current metadata file; `None` for a staged (uncommitted) create.
    pub metadata_location: Option<String>,
    /// The metadata.
    pub metadata: Arc<CachedMetadata>,
    /// Storage properties for the table's files.
    pub config: HashMap<String, String>,
}

/// A create-table request.
#[derive(Debug, Clone)]
pub struct CreateTable {
    /// Table name.
    pub name: String,
    /// Location; the catalog picks one under its warehouse when absent.
    pub location: Option<String>,
    /// Schema (field ids are reassigned).
    pub schema: Schema,
    /// Partition spec; unpartitioned when absent.
    pub partition_spec: Option<UnboundPartitionSpec>,
    /// Sort order; unsorted when absent.
    pub write_order: Option<SortOrder>,
    /// Only build and return the metadata; the client commits it with `assert-create`.
    pub stage_create: bool,
    /// Table properties (`format-version` picks the format version).
    pub properties: HashMap<String, String>,
}

impl CatalogService {
    /// Tables of a namespace.
    pub async fn list_tables(
        &self,
        catalog: &ResolvedCatalog,
        namespace: &[String],
        page: &PageRequest,
    ) -> Result<Page<TableRecord>> {
        self.load_namespace(catalog, namespace).await?;
        Ok(self.store.list_tables(catalog.record.id, namespace, TableKind::Table, page).await?)
    }

    /// The row of a table or view, or 404 if there is none of that kind (a view of the same
    /// name is not a table, and the other way round).
    pub(crate) async fn row_of_kind(
        &self,
        catalog: &ResolvedCatalog,
        ident: &TableName,
        kind: TableKind,
    ) -> Result<TableRecord> {
        ident.validate()?;
        match self.store.get_table(catalog.record.id, &ident.namespace, &ident.name).await? {
            Some(row) if row.kind == kind => Ok(row),
            _ => Err(missing(ident, kind)),
        }
    }

    /// True when a table or view of `kind` has this name.
    pub(crate) async fn exists_of_kind(
        &self,
        catalog: &ResolvedCatalog,
        ident: &TableName,
        kind: TableKind,
    ) -> Result<bool> {
        match self.row_of_kind(catalog, ident, kind).await {
            Ok(_) => Ok(true),
            Err(CatalogError::NoSuchTable(_) | CatalogError::NoSuchView(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The table row, or 404 if there is no table.
    pub(crate) async fn table_row(&self, catalog: &ResolvedCatalog, ident: &TableName) -> Result<TableRecord> {
        self.row_of_kind(catalog, ident, TableKind::Table).await
    }

    /// The id of a table (what runtimes and processes refer to), or 404.
    pub async fn table_id(&self, catalog: &ResolvedCatalog, ident: &TableName) -> Result<i64> {
        Ok(self.table_row(catalog, ident).await?.id)
    }

    /// True when the table exists.
    pub async fn table_exists(&self, catalog: &ResolvedCatalog, ident: &TableName) -> Result<bool> {
        self.exists_of_kind(catalog, ident, TableKind::Table).await
    }

    /// Loads a table's current metadata.
    pub async fn load_table(&self, catalog: &ResolvedCatalog, ident: &TableName) -> Result<LoadedTable> {
        let row = self.table_row(catalog, ident).await?;
        let metadata = self.metadata.load(&catalog.warehouse.file_io, &row.metadata_location).await?;
        Ok(LoadedTable {
            metadata_location: Some(row.metadata_location),
            metadata,
            config: catalog.warehouse.client_config.clone(),
        })
    }

    /// The current metadata location of a table; cheap (no file access), for conditional loads.
    pub async fn table_metadata_location(&self, catalog: &ResolvedCatalog, ident: &TableName) -> Result<String> {
        Ok(self.table_row(catalog, ident).await?.metadata_location)
    }

    /// Picks the location of a new table or view: the requested one, which must lie inside the
    /// warehouse and overlap nothing, or `{warehouse}/{namespace}/{name}`, made unique if taken.
    /// The metadata store checks overlaps again when the location is claimed.
    pub(crate) async fn choose_location(
        &self,
        catalog: &ResolvedCatalog,
        ident: &TableName,
        requested: Option<&str>,
        nested_in: Option<i64>,
    ) -> Result<Location> {
        if let Some(requested) = requested {
            let location = check_new_location(&catalog.warehouse, "location", requested).await?;
            self.check_free(&location, nested_in).await?;
            return Ok(location);
        }
        let base = catalog.warehouse.default_location(&ident.namespace, &ident.name);
        let location = check_new_location(&catalog.warehouse, "default location", &base).await?;
        if self.store.locations_overlapping(&location.canonical(), None).await?.is_empty() {
            return Ok(location);
        }
        // Taken (a renamed table, or a dropped one whose files are being purged): a unique
        // sibling, unless something contains the whole namespace directory.
        let unique = format!("{base}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let location = check_new_location(&catalog.warehouse, "default location", &unique).await?;
        self.check_free(&location, None).await?;
        Ok(location)
    }

    /// A 400 when something else occupies or overlaps `location`.
    pub(crate) async fn check_free(&self, location: &Location, except: Option<i64>) -> Result<()> {
        let occupants = self.store.locations_overlapping(&location.canonical(), except).await?;
        if occupants.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = occupants.iter().map(ToString::to_string).collect();
        Err(CatalogError::BadRequest(format!("location {location} overlaps {}", list.join(", "))))
    }

    /// Table properties of a new table: the catalog's table defaults, then the request's.
    pub(crate) fn new_table_properties(
        catalog: &ResolvedCatalog,
        requested: HashMap<String, String>,
    ) -> HashMap<String, String> {
        let mut properties: HashMap<String, String> = persisted_table_defaults(&catalog.record).collect();
        properties.extend(requested);
        properties
    }

    /// Creates a table, or with `stage_create` returns the metadata a create transaction starts from.
    pub async fn create_table(
        &self,
        catalog: &ResolvedCatalog,
        namespace: &[String],
        request: CreateTable,
    ) -> Result<LoadedTable> {
        let ident = TableName::new(namespace.to_vec(), request.name.clone());
        ident.validate()?;
        self.load_namespace(catalog, namespace).await?;
        if let Some(row) = self.store.get_table(catalog.record.id, namespace, &request.name).await? {
            return Err(name_taken(&ident, row.kind, TableKind::Table));
        }
        let mut properties = Self::new_table_properties(catalog, request.properties);
        let format_version = take_format_version(&mut properties)?;
        // A staged create hands out metadata now, so its location is chosen and checked here;
        // a create's commit chooses and checks it (once) like any create transaction's.
        let location = if request.stage_create {
            let location = self.choose_location(catalog, &ident, request.location.as_deref(), None).await?;
            check_path_properties(&location, &properties)?;
            location.as_str().to_string()
        } else {
            request.location.clone().unwrap_or_else(|| catalog.warehouse.default_location(namespace, &request.name))
        };
        let creation = TableCreation::builder()
            .name(request.name.clone())
            .location(location)
            .schema(request.schema)
            .partition_spec_opt(request.partition_spec)
            .sort_order_opt(request.write_order)
            .properties(properties)
            .format_version(format_version)
            .build();
        let built = TableMetadataBuilder::from_table_creation(creation)
            .and_then(|b| b.build())
            .map_err(|e| CatalogError::BadRequest(format!("invalid table definition: {e}")))?;
        let config = catalog.warehouse.client_config.clone();
        if request.stage_create {
            let metadata = Arc::new(CachedMetadata::from_metadata(built.metadata)?);
            return Ok(LoadedTable { metadata_location: None, metadata, config });
        }

        // A create is a commit asserting that the table does not exist, with the updates that
        // build its metadata: the one commit path writes, records and announces it.
        // The builder records no change for the format version it starts from: say it first.
        let mut updates = vec![TableUpdate::UpgradeFormatVersion { format_version }];
        let requested_location = request.location.is_some();
        updates.extend(
            built.changes.into_iter().filter(|u| requested_location || !matches!(u, TableUpdate::SetLocation { .. })),
        );
        let change = TableChange { ident: ident.clone(), requirements: vec![TableRequirement::NotExist], updates };
        match self.commit_table(catalog, change).await {
            Ok(committed) => Ok(LoadedTable {
                metadata_location: Some(committed.metadata_location),
                metadata: committed.metadata,
                config,
            }),
            // Created by someone else meanwhile.
            Err(CatalogError::CommitFailed(_))
                if self.store.get_table(catalog.record.id, namespace, &request.name).await?.is_some() =>
            {
                Err(CatalogError::table_exists(&ident))
            }
            Err(e) => Err(e),
        }
    }

    /// Drops a table; with `purge`, also deletes its files: the purge is recorded with the drop
    /// and runs on its own task (see [`crate::purge`]).
    pub async fn drop_table(self: &Arc<Self>, catalog: &ResolvedCatalog, ident: &TableName, purge: bool) -> Result<()> {
        // A keyed table: its change store goes first (its files lie inside the base's
        // location, so the base's purge takes them); a change store alone cannot go.
        if let Some(row) = self.store.get_table(catalog.record.id, &ident.namespace, &ident.name).await? {
            if row.format == crate::keyed::FORMAT_MIXED_ICEBERG_CHANGE {
                let base = ident.name.strip_suffix(crate::keyed::CHANGE_SUFFIX).unwrap_or(&ident.name);
                let base = TableName::new(ident.namespace.clone(), base.to_string());
                return Err(CatalogError::BadRequest(format!(
                    "{ident} is the change store of keyed table {base}; drop {base} instead"
                )));
            }
            if row.format == crate::keyed::FORMAT_MIXED_ICEBERG {
                let change = TableName::new(ident.namespace.clone(), crate::keyed::change_name(&ident.name));
                if let Some(change_row) =
                    self.store.get_table(catalog.record.id, &change.namespace, &change.name).await?
                {
                    let _lock = self.lock_tables([table_key(catalog.record.id, &change.namespace, &change.name)]).await;
                    self.store.delete_table(change_row.id, change_row.version, None).await?;
                    tracing::info!(table = %change, "dropped the change store");
                }
            }
        }
        let _lock = self.lock_tables([table_key(catalog.record.id, &ident.namespace, &ident.name)]).await;
        let drop = |_| async {
            let row = self.table_row(catalog, ident).await?;
            let request = purge.then(|| NewPurge {
                catalog_id: catalog.record.id,
                table_name: format!("{}.{}", display_namespace(&row.namespace), row.name),
                location: row.location.clone(),
                metadata_location: row.metadata_location.clone(),
            });
            Ok::<_, Failure>(self.store.delete_table(row.id, row.version, request.as_ref()).await?)
        };
        let purge_record = RetryPolicy::server(self.options.commit_retries)
            .run(drop, Failure::is_conflict)
            .await
            .map_err(|(e, _)| e.into_error())?;
        tracing::info!(table = %ident, purge, "dropped table");
        if let Some(record) = purge_record {
            self.purge_now(record).await;
        }
        Ok(())
    }

    /// Renames (or moves) a table within its catalog.
    pub async fn rename_table(&self, catalog: &ResolvedCatalog, from: &TableName, to: &TableName) -> Result<()> {
        self.rename(catalog, from, to, TableKind::Table).await
    }

    pub(crate) async fn rename(
        &self,
        catalog: &ResolvedCatalog,
        from: &TableName,
        to: &TableName,
        kind: TableKind,
    ) -> Result<()> {
        from.validate()?;
        to.validate()?;
        let row = match self.store.get_table(catalog.record.id, &from.namespace, &from.name).await? {
            Some(row) if row.kind == kind => row,
            _ => return Err(missing(from, kind)),
        };
        if row.format.starts_with(crate::keyed::FORMAT_MIXED_ICEBERG) {
            return Err(CatalogError::BadRequest(format!(
                "{from} belongs to a keyed (mixed-iceberg) table, which cannot be renamed yet"
            )));
        }
        self.load_namespace(catalog, &to.namespace).await?;
        let _lock = self
            .lock_tables([
                table_key(catalog.record.id, &from.namespace, &from.name),
                table_key(catalog.record.id, &to.namespace, &to.name),
            ])
            .await;
        let taken = |kind: TableKind| {
            let what = match kind {
                TableKind::Table => "Table",
                TableKind::View => "View",
            };
            CatalogError::AlreadyExists(format!("Cannot rename {from} to {to}. {what} already exists"))
        };
        if let Some(existing) = self.store.get_table(catalog.record.id, &to.namespace, &to.name).await? {
            return Err(taken(existing.kind));
        }
        self.store.rename_table(row.id, catalog.record.id, &to.namespace, &to.name).await.map_err(|e| match e {
            MetaError::AlreadyExists(_) => taken(kind),
            MetaError::NotFound(what) if what.starts_with("namespace") => {
                CatalogError::NoSuchNamespace(display_namespace(&to.namespace))
            }
            MetaError::NotFound(_) => missing(from, kind),
            other => other.into(),
        })
    }

    /// Registers an existing metadata file as a table; `overwrite` repoints an existing table.
    ///
    /// Only metadata inside the catalog's warehouse is read (bounded in size and time), and the
    /// table it describes must live inside the warehouse, hold the metadata file, and overlap no
    /// other table: a registered table is purged like any other, so it must own its location.
    pub async fn register_table(
        &self,
        catalog: &ResolvedCatalog,
        ident: &TableName,
        metadata_location: &str,
        overwrite: bool,
    ) -> Result<LoadedTable> {
        ident.validate()?;
        self.load_namespace(catalog, &ident.namespace).await?;
        let file = parse_location("metadata-location", metadata_location)?;
        if !catalog.warehouse.contains(&file) || !resolves_inside(&catalog.warehouse.location, &file).await {
            return Err(CatalogError::BadRequest(format!(
                "cannot register {metadata_location}: metadata files must lie inside the catalog's warehouse {}",
                catalog.warehouse.location
            )));
        }
        let metadata =
            read_metadata(&catalog.warehouse.file_io, metadata_location, self.options.read_limits).await.map_err(
                |e| CatalogError::BadRequest(format!("cannot register {metadata_location}: {}", e.client_message())),
            )?;
        let metadata = Arc::new(metadata);
        let location =
            check_new_location(&catalog.warehouse, "location of the registered metadata", metadata.metadata.location())
                .await?;
        if !location.contains(&file) {
            return Err(CatalogError::BadRequest(format!(
                "cannot register {metadata_location}: the metadata file lies outside the table's location {location}"
            )));
        }
        check_path_properties(&location, metadata.metadata.properties())?;
        let adoption =
            Adoption { ident: ident.clone(), metadata_location: metadata_location.to_string(), metadata, overwrite };
        let committed = self.adopt_metadata(catalog, adoption).await?;
        Ok(LoadedTable {
            metadata_location: Some(committed.metadata_location),
            metadata: committed.metadata,
            config: catalog.warehouse.client_config.clone(),
        })
    }

    /// A metadata file at `location` inside the catalog's warehouse (a version a table had),
    /// read through the metadata cache.
    pub async fn metadata_at(&self, catalog: &ResolvedCatalog, location: &str) -> Result<Arc<CachedMetadata>> {
        let file = parse_location("metadata-location", location)?;
        if !catalog.warehouse.contains(&file) {
            return Err(CatalogError::BadRequest(format!("{location} lies outside the catalog's warehouse")));
        }
        self.metadata.load(&catalog.warehouse.file_io, location).await
    }

    /// Storage credentials for a table's files, as `(location prefix, properties)` pairs.
    pub async fn table_credentials(
        &self,
        catalog: &ResolvedCatalog,
        ident: &TableName,
    ) -> Result<Vec<(String, HashMap<String, String>)>> {
        let row = self.table_row(catalog, ident).await?;
        let config = &catalog.warehouse.client_config;
        if config.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![(row.location, config.clone())])
    }
}

/// The 409 for a create whose name is taken: `kind` is what exists, `creating` what the request
/// creates (Iceberg words the four cases differently).
pub(crate) fn name_taken(ident: &TableName, kind: TableKind, creating: TableKind) -> CatalogError {
    match (kind, creating) {
        (TableKind::Table, TableKind::Table) => CatalogError::table_exists(ident),
        (TableKind::View, TableKind::View) => CatalogError::view_exists(ident),
        (TableKind::Table, TableKind::View) => {
            CatalogError::AlreadyExists(format!("Table with same name already exists: {ident}"))
        }
        (TableKind::View, TableKind::Table) => {
            CatalogError::AlreadyExists(format!("View with same name already exists: {ident}"))
        }
    }
}

/// The 404 for a missing table or view.
fn missing(ident: &TableName, kind: TableKind) -> CatalogError {
    match kind {
        TableKind::Table => CatalogError::NoSuchTable(ident.to_string()),
        TableKind::View => CatalogError::NoSuchView(ident.to_string()),
    }
}

/// Removes the reserved `format-version` property and returns the version it asks for (v2
/// when absent).
pub(crate) fn take_format_version(properties: &mut HashMap<String, String>) -> Result<FormatVersion> {
    match properties.remove("format-version").as_deref() {
        None => Ok(FormatVersion::V2),
        Some("1") => Ok(FormatVersion::V1),
        Some("2") => Ok(FormatVersion::V2),
        Some("3") => Ok(FormatVersion::V3),
        Some(other) => Err(CatalogError::BadRequest(format!("unsupported format-version {other:?}; use 1, 2 or 3"))),
    }
}
