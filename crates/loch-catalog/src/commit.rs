//! The commit path, the only way table metadata changes inside Loch: check every requirement
//! against the current metadata, apply every update, write the next metadata file, then swap
//! the pointer by compare-and-swap. Several tables commit together or not at all.
//!
//! A commit that loses the pointer race is re-applied to the new base (requirements included)
//! a few times before the client gets a 409: requirements are exactly what the client asserted,
//! so if they still hold, applying its updates to the newer metadata is what it asked for.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::future::join_all;
use iceberg::spec::{PartitionSpec, SortOrder, TableMetadata, TableMetadataBuilder};
use iceberg::{TableRequirement, TableUpdate};
use loch_meta::{CommitBatch, MetaError, NewTable, PointerSwap, TableKind, TableRecord, VersionCheck};

use loch_table::location::Location;

use crate::error::{CatalogError, Result};
use crate::metadata::{
    CachedMetadata, delete_uncommitted, next_metadata_location, stats_of, table_scope, write_metadata,
};
use crate::requirements;
use crate::retry::{RetryPolicy, run_with_retries};
use crate::service::{CatalogService, ResolvedCatalog, table_key};
use crate::storage::policy::{PATH_PROPERTIES, check_new_location, check_path_properties, delete_inside};
use crate::tables::{TableName, name_taken, take_format_version};

/// Table property: delete metadata files that fall out of the metadata log.
const DELETE_AFTER_COMMIT: &str = "write.metadata.delete-after-commit.enabled";

/// Requested changes to one table.
#[derive(Debug, Clone)]
pub struct TableChange {
    /// The table.
    pub ident: TableName,
    /// Assertions about its current metadata.
    pub requirements: Vec<TableRequirement>,
    /// Changes to apply if they hold.
    pub updates: Vec<TableUpdate>,
}

/// The outcome of a successful commit for one table.
#[derive(Debug, Clone)]
pub struct CommittedTable {
    /// The table.
    pub ident: TableName,
    /// Its metadata file after the commit.
    pub metadata_location: String,
    /// Its metadata after the commit.
    pub metadata: Arc<CachedMetadata>,
}

/// What a commit does to one table, decided against the current metadata.
enum Plan {
    /// All updates were no-ops.
    Unchanged { row: TableRecord, current: Arc<CachedMetadata> },
    /// A new metadata file replaces the current one.
    Update { row: TableRecord, metadata: Option<Box<TableMetadata>>, expired: Vec<String> },
    /// A create transaction: the table does not exist yet.
    Create { metadata: Option<Box<TableMetadata>> },
    /// A registration: an existing metadata file becomes the pointer of a new table (`row`
    /// absent) or of the table `row` (overwrite).
    Adopt { row: Option<TableRecord>, file: NewFile },
}

/// A registration: an existing metadata file, read and checked, that a table should point at.
#[derive(Debug, Clone)]
pub(crate) struct Adoption {
    /// The table.
    pub ident: TableName,
    /// The metadata file.
    pub metadata_location: String,
    /// Its contents.
    pub metadata: Arc<CachedMetadata>,
    /// Repoint an existing table rather than refuse the taken name.
    pub overwrite: bool,
}

/// What a commit asks of one table.
#[derive(Debug, Clone)]
pub(crate) enum Request {
    /// Requirements and updates: REST commits, creates, Loch's own writers.
    Change(TableChange),
    /// Point the table at an existing metadata file.
    Adopt(Adoption),
}

impl Request {
    fn ident(&self) -> &TableName {
        match self {
            Request::Change(change) => &change.ident,
            Request::Adopt(adoption) => &adoption.ident,
        }
    }
}

/// A metadata file written by a commit attempt: its location and contents.
type NewFile = (String, Arc<CachedMetadata>);

/// A table's commit lock (see [`CatalogService::lock_table`]).
pub struct TableLock<'a> {
    key: String,
    _guards: Vec<tokio::sync::MutexGuard<'a, ()>>,
}

/// Why an attempt did not commit.
pub(crate) enum Failure {
    /// Lost the pointer race; worth re-applying to the new base.
    Conflict(String),
    /// Anything else.
    Error(CatalogError),
}

impl From<CatalogError> for Failure {
    fn from(e: CatalogError) -> Self {
        Failure::Error(e)
    }
}

impl From<MetaError> for Failure {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Conflict(what) => Failure::Conflict(what),
            other => Failure::Error(other.into()),
        }
    }
}

impl Failure {
    /// True for a lost race (what the retry policy retries).
    pub(crate) fn is_conflict(&self) -> bool {
        matches!(self, Failure::Conflict(_))
    }

    /// The error a caller sees once retrying is over.
    pub(crate) fn into_error(self) -> CatalogError {
        match self {
            Failure::Conflict(what) => MetaError::Conflict(what).into(),
            Failure::Error(e) => e,
        }
    }
}

impl CatalogService {
    /// Commits changes to one table.
    pub async fn commit_table(&self, catalog: &ResolvedCatalog, change: TableChange) -> Result<CommittedTable> {
        let mut committed = self.commit_tables(catalog, vec![change]).await?;
        committed.pop().ok_or_else(|| CatalogError::Internal("commit returned no table".into()))
    }

    /// Commits changes to several tables atomically: all of them or none.
    pub async fn commit_tables(
        &self,
        catalog: &ResolvedCatalog,
        changes: Vec<TableChange>,
    ) -> Result<Vec<CommittedTable>> {
        let _locks = self
            .lock_tables(changes.iter().map(|c| table_key(catalog.record.id, &c.ident.namespace, &c.ident.name)))
            .await;
        self.commit_tables_locked(catalog, changes.into_iter().map(Request::Change).collect()).await
    }

    /// Holds a table's commit lock: commits through this server wait until it is dropped. Loch's
    /// own writers build expensive changes (rewrites) under it, so that no commit can slip in
    /// between reading the table and swapping its pointer.
    pub async fn lock_table(&self, catalog: &ResolvedCatalog, ident: &TableName) -> TableLock<'_> {
        let key = table_key(catalog.record.id, &ident.namespace, &ident.name);
        TableLock { _guards: self.lock_tables([key.clone()]).await, key }
    }

    /// Commits a change to the table whose lock `lock` is.
    pub async fn commit_table_locked(
        &self,
        lock: &TableLock<'_>,
        catalog: &ResolvedCatalog,
        change: TableChange,
    ) -> Result<CommittedTable> {
        if lock.key != table_key(catalog.record.id, &change.ident.namespace, &change.ident.name) {
            return Err(CatalogError::Internal(format!("commit to {} under another table's lock", change.ident)));
        }
        let mut committed = self.commit_tables_locked(catalog, vec![Request::Change(change)]).await?;
        committed.pop().ok_or_else(|| CatalogError::Internal("commit returned no table".into()))
    }

    /// Points a table at an existing, checked metadata file (register): a new table, or with
    /// `overwrite` an existing one, through the same swap, retries and announcement as a commit.
    pub(crate) async fn adopt_metadata(&self, catalog: &ResolvedCatalog, adoption: Adoption) -> Result<CommittedTable> {
        let _locks =
            self.lock_tables([table_key(catalog.record.id, &adoption.ident.namespace, &adoption.ident.name)]).await;
        let mut committed = self.commit_tables_locked(catalog, vec![Request::Adopt(adoption)]).await?;
        committed.pop().ok_or_else(|| CatalogError::Internal("commit returned no table".into()))
    }

    async fn commit_tables_locked(
        &self,
        catalog: &ResolvedCatalog,
        requests: Vec<Request>,
    ) -> Result<Vec<CommittedTable>> {
        if requests.is_empty() {
            return Err(CatalogError::BadRequest("a commit needs at least one table change".into()));
        }
        let mut seen = HashSet::new();
        for request in &requests {
            request.ident().validate()?;
            if !seen.insert(request.ident()) {
                return Err(CatalogError::BadRequest(format!("table {} appears twice in one commit", request.ident())));
            }
        }
        let timer = std::time::Instant::now();
        let policy = self.retry_policy(catalog, requests[0].ident());
        let outcome = run_with_retries(policy, |n| self.try_commit(catalog, &requests, n), Failure::is_conflict).await;
        let outcome = outcome.map_err(|(e, attempts)| match e {
            Failure::Conflict(what) => {
                CatalogError::CommitFailed(format!("concurrent commits to {what} won {attempts} times in a row; retry"))
            }
            Failure::Error(e) => e,
        });
        let result = match &outcome {
            Ok(_) => "success",
            Err(CatalogError::CommitFailed(_)) => "conflict",
            Err(e) if e.status() < 500 => "rejected",
            Err(_) => "error",
        };
        metrics::counter!("loch_catalog_commits_total", "result" => result).increment(1);
        metrics::histogram!("loch_catalog_commit_duration_seconds").record(timer.elapsed().as_secs_f64());
        outcome
    }

    /// The retry policy of a table (the server's when the table cannot be read).
    async fn retry_policy(&self, catalog: &ResolvedCatalog, ident: &TableName) -> RetryPolicy {
        let server = RetryPolicy::server(self.options.commit_retries);
        let Ok(Some(row)) = self.store.get_table(catalog.record.id, &ident.namespace, &ident.name).await else {
            return server;
        };
        match self.metadata.load(&catalog.warehouse.file_io, &row.metadata_location).await {
            Ok(current) => RetryPolicy::for_table(current.metadata.properties(), self.options.commit_retries),
            Err(_) => server,
        }
    }

    async fn try_commit(
        &self,
        catalog: &ResolvedCatalog,
        requests: &[Request],
        attempt: u32,
    ) -> Result<Vec<CommittedTable>, Failure> {
        let mut plans = Vec::with_capacity(requests.len());
        for request in requests {
            plans.push(match request {
                Request::Change(change) => self.plan(catalog, change, attempt).await?,
                Request::Adopt(adoption) => self.plan_adoption(catalog, adoption).await?,
            });
        }

        // Write every new metadata file before touching any pointer.
        let io = &catalog.warehouse.file_io;
        // The new metadata moves into its file write; the plans keep what the swap needs.
        let writes = plans.iter_mut().map(|plan| {
            let (metadata, current) = match plan {
                Plan::Unchanged { .. } | Plan::Adopt { .. } => (None, None),
                Plan::Update { row, metadata, .. } => (metadata.take(), Some(row.metadata_location.clone())),
                Plan::Create { metadata } => (metadata.take(), None),
            };
            async move {
                let Some(metadata) = metadata else { return Ok(None) };
                let location = next_metadata_location(&metadata, current.as_deref());
                write_metadata(io, &location, *metadata).await.map(|m| Some((location, m)))
            }
        });
        let written: Vec<Result<Option<NewFile>>> = join_all(writes).await;
        let new_files: Vec<String> = written.iter().flatten().flatten().map(|(l, _)| l.clone()).collect();
        let mut files = Vec::with_capacity(written.len());
        for (w, plan) in written.into_iter().zip(&plans) {
            match (w, plan) {
                // A registration's file is the client's, already in place.
                (Ok(None), Plan::Adopt { file, .. }) => files.push(Some(file.clone())),
                (Ok(file), _) => files.push(file),
                (Err(e), _) => {
                    delete_uncommitted(io, &new_files).await;
                    // No pointer moved: the commit definitely did not happen (a 409, not the
                    // 5xx that clients must read as "state unknown").
                    tracing::error!(error = %e, "cannot write a new metadata file; the commit fails");
                    return Err(Failure::Error(CatalogError::CommitFailed(format!(
                        "the new metadata file could not be written, nothing was committed: {}",
                        e.client_message()
                    ))));
                }
            }
        }

        let mut batch = CommitBatch::default();
        for ((plan, request), file) in plans.iter().zip(requests).zip(&files) {
            let ident = request.ident();
            match (plan, file) {
                (Plan::Update { row, .. } | Plan::Adopt { row: Some(row), .. }, Some((location, metadata))) => {
                    batch.swaps.push(PointerSwap {
                        table_id: row.id,
                        expected_version: row.version,
                        previous_metadata_location: row.metadata_location.clone(),
                        metadata_location: location.clone(),
                        location: table_scope(metadata.metadata.location())?.canonical(),
                        stats: stats_of(&metadata.metadata),
                    })
                }
                (Plan::Create { .. } | Plan::Adopt { row: None, .. }, Some((location, metadata))) => {
                    batch.inserts.push(NewTable {
                        catalog_id: catalog.record.id,
                        namespace: ident.namespace.clone(),
                        name: ident.name.clone(),
                        kind: TableKind::Table,
                        format: crate::keyed::format_of(&metadata.metadata).into(),
                        uuid: metadata.metadata.uuid().to_string(),
                        location: table_scope(metadata.metadata.location())?.canonical(),
                        metadata_location: location.clone(),
                        stats: stats_of(&metadata.metadata),
                    })
                }
                // A table whose requirements held but that does not change: in a multi-table
                // commit, it must still be unchanged when the others swap.
                (Plan::Unchanged { row, .. }, _) if requests.len() > 1 => {
                    batch.checks.push(VersionCheck { table_id: row.id, expected_version: row.version })
                }
                _ => {}
            }
        }
        self.publish(io, &batch, &new_files).await?;

        let mut committed = Vec::with_capacity(plans.len());
        for ((plan, request), file) in plans.into_iter().zip(requests).zip(files) {
            let ident = request.ident();
            let (metadata_location, metadata) = match (plan, file) {
                (Plan::Unchanged { row, current }, _) => (row.metadata_location, current),
                (Plan::Update { expired, .. }, Some((location, metadata))) => {
                    self.metadata.insert(&location, metadata.clone()).await;
                    if metadata.metadata.properties().get(DELETE_AFTER_COMMIT).is_some_and(|v| v == "true") {
                        // Committed already: a failure here only leaves orphans.
                        let deleted = match table_scope(metadata.metadata.location()) {
                            Ok(scope) => delete_inside(io, &catalog.warehouse.location, &scope, expired).await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = deleted {
                            tracing::warn!(table = %ident, error = %e, "cannot delete expired metadata files");
                        }
                    }
                    (location, metadata)
                }
                (Plan::Create { .. } | Plan::Adopt { .. }, Some((location, metadata))) => {
                    self.metadata.insert(&location, metadata.clone()).await;
                    (location, metadata)
                }
                _ => return Err(Failure::Error(CatalogError::Internal("commit plan without metadata file".into()))),
            };
            tracing::debug!(table = %ident, %metadata_location, "committed");
            committed.push(CommittedTable { ident: ident.clone(), metadata_location, metadata });
        }
        Ok(committed)
    }

    /// Moves the pointers of `batch` in one transaction, the new metadata files `written`
    /// already in place: the one place a table or view pointer changes. When the store refuses,
    /// the files are deleted (not when the outcome is unknown: the store may have applied it);
    /// on success every changed table or view is announced to optimizing. Returns the ids of
    /// the inserted rows.
    pub(crate) async fn publish(
        &self,
        io: &iceberg::io::FileIO,
        batch: &CommitBatch,
        written: &[String],
    ) -> Result<Vec<i64>, Failure> {
        if batch.inserts.is_empty() && batch.swaps.is_empty() {
            return Ok(Vec::new());
        }
        let inserted = match self.store.apply_commit(batch).await {
            Ok(ids) => ids,
            Err(e) if e.is_unknown_outcome() => {
                // The database may have applied it: the files must stay.
                return Err(Failure::Error(CatalogError::CommitStateUnknown(e.to_string())));
            }
            Err(e) => {
                delete_uncommitted(io, written).await;
                return Err(match e {
                    // A lost race, or a name taken meanwhile: the next attempt sees the winner.
                    MetaError::Conflict(what) | MetaError::AlreadyExists(what) => Failure::Conflict(what),
                    MetaError::Overlap(what) => Failure::Error(CatalogError::BadRequest(what)),
                    MetaError::NotFound(what) => Failure::Error(CatalogError::NoSuchNamespace(
                        what.strip_prefix("namespace ").unwrap_or(&what).to_string(),
                    )),
                    other => Failure::Error(other.into()),
                });
            }
        };
        for id in batch.swaps.iter().map(|s| s.table_id).chain(inserted.iter().copied()) {
            self.announce_commit(id);
        }
        Ok(inserted)
    }

    /// Decides what registering `adoption` does: a new table, or a repointed one.
    async fn plan_adoption(&self, catalog: &ResolvedCatalog, adoption: &Adoption) -> Result<Plan, Failure> {
        let ident = &adoption.ident;
        let row = self.store.get_table(catalog.record.id, &ident.namespace, &ident.name).await?;
        let row = match row {
            Some(row) if adoption.overwrite && row.kind == TableKind::Table => Some(row),
            Some(row) => return Err(Failure::Error(name_taken(ident, row.kind, TableKind::Table))),
            None => None,
        };
        Ok(Plan::Adopt { row, file: (adoption.metadata_location.clone(), adoption.metadata.clone()) })
    }

    /// Decides what `change` does to the table as it is now.
    async fn plan(&self, catalog: &ResolvedCatalog, change: &TableChange, attempt: u32) -> Result<Plan, Failure> {
        let creates = change.requirements.iter().any(|r| matches!(r, TableRequirement::NotExist));
        let row = self
            .store
            .get_table(catalog.record.id, &change.ident.namespace, &change.ident.name)
            .await
            .map_err(CatalogError::from)?;
        let row = match row {
            Some(row) if row.kind == TableKind::View => {
                return Err(Failure::Error(if creates {
                    CatalogError::AlreadyExists(format!("View with same name already exists: {}", change.ident))
                } else {
                    CatalogError::NoSuchTable(change.ident.to_string())
                }));
            }
            Some(row) => row,
            None if creates => {
                for requirement in &change.requirements {
                    requirements::check(requirement, None).map_err(|message| {
                        Failure::Error(CatalogError::CommitFailed(format!("{message}: {}", change.ident)))
                    })?;
                }
                let metadata = self.created_metadata(catalog, &change.ident, &change.updates).await?;
                return Ok(Plan::Create { metadata: Some(Box::new(metadata)) });
            }
            None => return Err(Failure::Error(CatalogError::NoSuchTable(change.ident.to_string()))),
        };

        let current = self.metadata.load(&catalog.warehouse.file_io, &row.metadata_location).await?;
        for requirement in &change.requirements {
            requirements::check(requirement, Some(&current))
                .map_err(|message| Failure::Error(CatalogError::CommitFailed(message)))?;
        }
        let invalid = |e: iceberg::Error| {
            let message = format!("cannot apply updates to table {}: {}", change.ident, e.message());
            // Updates that applied to the client's base but not to a newer one are a conflict.
            Failure::Error(if attempt == 0 {
                CatalogError::Invalid(message)
            } else {
                CatalogError::CommitFailed(message)
            })
        };
        let mut builder =
            TableMetadataBuilder::new_from_metadata((*current.metadata).clone(), Some(row.metadata_location.clone()));
        for update in &change.updates {
            if let TableUpdate::AssignUuid { uuid } = update
                && *uuid != current.metadata.uuid()
            {
                return Err(Failure::Error(CatalogError::BadRequest(format!(
                    "cannot change the UUID of existing table {}",
                    change.ident
                ))));
            }
            builder = update.clone().apply(builder).map_err(invalid)?;
        }
        let built = builder.build().map_err(invalid)?;
        if built.changes.is_empty() {
            return Ok(Plan::Unchanged { row, current });
        }
        let location = if built.metadata.location() == current.metadata.location() {
            table_scope(built.metadata.location())?
        } else {
            // A move: the new place is checked here, and for overlaps when the pointer swaps.
            check_new_location(&catalog.warehouse, "location", built.metadata.location()).await?
        };
        let paths_changed = PATH_PROPERTIES
            .iter()
            .any(|key| built.metadata.properties().get(*key) != current.metadata.properties().get(*key));
        if paths_changed || built.metadata.location() != current.metadata.location() {
            check_path_properties(&location, built.metadata.properties())?;
        }
        check_snapshot_files(&change.ident, &location, &change.updates)?;
        let expired = built.expired_metadata_logs.into_iter().map(|l| l.metadata_file).collect();
        Ok(Plan::Update { row, metadata: Some(Box::new(built.metadata)), expired })
    }

    /// Metadata of a table created by a create transaction: built from the transaction's first
    /// schema, spec, sort order, location, format version and properties, then every update
    /// applied in order (re-adding the same schema or spec reuses it, so ids stay the client's).
    async fn created_metadata(
        &self,
        catalog: &ResolvedCatalog,
        ident: &TableName,
        updates: &[TableUpdate],
    ) -> Result<TableMetadata> {
        self.load_namespace(catalog, &ident.namespace).await?;
        let mut schema = None;
        let mut spec = None;
        let mut sort_order = None;
        let mut location = None;
        let mut format_version = None;
        let mut properties = HashMap::new();
        for update in updates {
            match update {
                TableUpdate::AddSchema { schema: s } if schema.is_none() => schema = Some(s.clone()),
                TableUpdate::AddSpec { spec: s } if spec.is_none() => spec = Some(s.clone()),
                TableUpdate::AddSortOrder { sort_order: s } if sort_order.is_none() => sort_order = Some(s.clone()),
                TableUpdate::SetLocation { location: l } if location.is_none() => location = Some(l.clone()),
                TableUpdate::UpgradeFormatVersion { format_version: v } if format_version.is_none() => {
                    format_version = Some(*v)
                }
                TableUpdate::SetProperties { updates } => properties.extend(updates.clone()),
                _ => {}
            }
        }
        let schema = schema.ok_or_else(|| {
            CatalogError::BadRequest(format!("create transaction for {ident} has no add-schema update"))
        })?;
        // A keyed table's change store lies inside its base store's location.
        let nested_in = match ident.name.strip_suffix(crate::keyed::CHANGE_SUFFIX) {
            Some(base)
                if loch_table::mixed::properties::store_of(&properties)
                    == Some(loch_table::mixed::properties::Store::Change) =>
            {
                self.store
                    .get_table(catalog.record.id, &ident.namespace, base)
                    .await?
                    .filter(|row| row.format == crate::keyed::FORMAT_MIXED_ICEBERG)
                    .map(|row| row.id)
            }
            _ => None,
        };
        let location = self.choose_location(catalog, ident, location.as_deref(), nested_in).await?;
        let mut properties = Self::new_table_properties(catalog, properties);
        let requested_version = take_format_version(&mut properties)?;
        let format_version = format_version.unwrap_or(requested_version);
        let invalid = |e: iceberg::Error| {
            CatalogError::Invalid(format!("invalid create transaction for {ident}: {}", e.message()))
        };
        let mut builder = TableMetadataBuilder::new(
            schema,
            spec.unwrap_or_else(|| PartitionSpec::unpartition_spec().into_unbound()),
            sort_order.unwrap_or_else(SortOrder::unsorted_order),
            location.as_str().to_string(),
            format_version,
            properties,
        )
        .map_err(invalid)?;
        for update in updates {
            let update = match update {
                // The catalog decided the location (the requested one was checked above).
                TableUpdate::SetLocation { .. } => TableUpdate::SetLocation { location: location.as_str().to_string() },
                other => other.clone(),
            };
            builder = update.apply(builder).map_err(invalid)?;
        }
        let metadata = builder.build().map_err(invalid)?.metadata;
        check_path_properties(&location, metadata.properties())?;
        check_snapshot_files(ident, &location, updates)?;
        Ok(metadata)
    }
}

/// Refuses snapshots whose manifest list lies outside the table's location: the catalog reads
/// it to plan optimizing and maintenance, so a commit may only record manifest lists the table
/// owns.
fn check_snapshot_files(ident: &TableName, location: &Location, updates: &[TableUpdate]) -> Result<()> {
    for update in updates {
        if let TableUpdate::AddSnapshot { snapshot } = update
            && !location.contains_str(snapshot.manifest_list())
        {
            return Err(CatalogError::BadRequest(format!(
                "snapshot {} of table {ident} has its manifest list {} outside the table's location {location}",
                snapshot.snapshot_id(),
                snapshot.manifest_list(),
            )));
        }
    }
    Ok(())
}
