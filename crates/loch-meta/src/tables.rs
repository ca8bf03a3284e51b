//! Table and view rows: the pointer to the current metadata file, swapped by compare-and-swap,
//! and statistics of the current snapshot for listings.

use sqlx::FromRow;

use crate::error::{MetaError, Result, is_unique_violation};
use crate::namespaces::join_name;
use crate::page::{Page, PageRequest};
use crate::purges::{NewPurge, PurgeRecord};
use crate::store::{MetaStore, on_pool};

/// Whether a row is a table or a view (they share one name space per namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// An Iceberg (or Mixed-Iceberg) table.
    Table,
    /// An Iceberg view.
    View,
}

impl TableKind {
    fn as_str(self) -> &'static str {
        match self {
            TableKind::Table => "table",
            TableKind::View => "view",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "table" => Ok(TableKind::Table),
            "view" => Ok(TableKind::View),
            other => Err(MetaError::Corrupt(format!("table kind {other}"))),
        }
    }
}

/// Statistics of a table's current snapshot, kept on the row for cheap listings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Current snapshot, if any.
    pub snapshot_id: Option<i64>,
    /// Live data files.
    pub data_files: i64,
    /// Live delete files.
    pub delete_files: i64,
    /// Bytes in live files.
    pub total_size: i64,
    /// Rows in live data files (before deletes).
    pub total_records: i64,
    /// When the current snapshot was committed (ms since epoch).
    pub last_commit_ms: Option<i64>,
}

/// A stored table or view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRecord {
    /// Stable id, kept across renames; runtimes and processes refer to it.
    pub id: i64,
    /// The catalog holding the table.
    pub catalog_id: i64,
    /// The namespace holding the table.
    pub namespace_id: i64,
    /// The namespace's levels.
    pub namespace: Vec<String>,
    /// Table name within its namespace.
    pub name: String,
    /// Table or view.
    pub kind: TableKind,
    /// Table format, e.g. `iceberg`.
    pub format: String,
    /// The table's UUID from its metadata.
    pub uuid: String,
    /// The table's base location.
    pub location: String,
    /// The current metadata file.
    pub metadata_location: String,
    /// The metadata file before the current one.
    pub previous_metadata_location: Option<String>,
    /// Compare-and-swap counter; incremented by every pointer change.
    pub version: i64,
    /// Statistics of the current snapshot.
    pub stats: TableStats,
    /// Creation time (ms since epoch).
    pub created_at: i64,
    /// Last pointer change (ms since epoch).
    pub updated_at: i64,
}

/// What is needed to insert a table or view row.
#[derive(Debug, Clone)]
pub struct NewTable {
    /// The catalog.
    pub catalog_id: i64,
    /// The namespace's levels; the namespace must exist.
    pub namespace: Vec<String>,
    /// The name, free among tables and views of the namespace.
    pub name: String,
    /// Table or view.
    pub kind: TableKind,
    /// Table format.
    pub format: String,
    /// UUID from the metadata.
    pub uuid: String,
    /// Base location.
    pub location: String,
    /// The first metadata file.
    pub metadata_location: String,
    /// Statistics of the current snapshot.
    pub stats: TableStats,
}

/// One pointer change of a commit: applied only if the row still has `expected_version`.
#[derive(Debug, Clone)]
pub struct PointerSwap {
    /// The table row.
    pub table_id: i64,
    /// The version the commit was based on.
    pub expected_version: i64,
    /// The metadata file being replaced.
    pub previous_metadata_location: String,
    /// The new metadata file.
    pub metadata_location: String,
    /// The (possibly changed) base location.
    pub location: String,
    /// Statistics of the new current snapshot.
    pub stats: TableStats,
}

/// A table that a multi-table commit reads but does not change: the commit only applies if the
/// table is still at `expected_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionCheck {
    /// The table row.
    pub table_id: i64,
    /// The version the commit's requirements were checked against.
    pub expected_version: i64,
}

/// Everything one commit changes in the store, applied in one transaction.
#[derive(Debug, Clone, Default)]
pub struct CommitBatch {
    /// Tables created by the commit.
    pub inserts: Vec<NewTable>,
    /// Pointer changes.
    pub swaps: Vec<PointerSwap>,
    /// Tables that must not have changed.
    pub checks: Vec<VersionCheck>,
}

#[derive(FromRow)]
struct TableRow {
    id: i64,
    catalog_id: i64,
    namespace_id: i64,
    namespace: String,
    name: String,
    kind: String,
    format: String,
    uuid: String,
    location: String,
    metadata_location: String,
    previous_metadata_location: Option<String>,
    version: i64,
    snapshot_id: Option<i64>,
    data_files: i64,
    delete_files: i64,
    total_size: i64,
    total_records: i64,
    last_commit_ms: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<TableRow> for TableRecord {
    type Error = MetaError;
    fn try_from(row: TableRow) -> Result<Self> {
        Ok(Self {
            id: row.id,
            catalog_id: row.catalog_id,
            namespace_id: row.namespace_id,
            namespace: row.namespace.split(crate::namespaces::LEVEL_SEPARATOR).map(str::to_string).collect(),
            name: row.name,
            kind: TableKind::parse(&row.kind)?,
            format: row.format,
            uuid: row.uuid,
            location: row.location,
            metadata_location: row.metadata_location,
            previous_metadata_location: row.previous_metadata_location,
            version: row.version,
            stats: TableStats {
                snapshot_id: row.snapshot_id,
                data_files: row.data_files,
                delete_files: row.delete_files,
                total_size: row.total_size,
                total_records: row.total_records,
                last_commit_ms: row.last_commit_ms,
            },
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// What overlaps a location: tables and views of every catalog (id other than `$3`), and
/// purges in progress. `$1` is the location, `$2` the location with a trailing `/`.
const OVERLAP_SQL: &str = "SELECT c.name, n.name, t.name, t.kind FROM tables t \
     JOIN namespaces n ON n.id = t.namespace_id JOIN catalogs c ON c.id = t.catalog_id \
     WHERE t.id <> $3 AND (t.location = $1 OR substr(t.location, 1, length($2)) = $2 \
     OR substr($1, 1, length(t.location) + 1) = t.location || '/') \
     UNION ALL SELECT c.name, '', p.table_name, 'purge' FROM purges p JOIN catalogs c ON c.id = p.catalog_id \
     WHERE p.location = $1 OR substr(p.location, 1, length($2)) = $2 \
     OR substr($1, 1, length(p.location) + 1) = p.location || '/'";

/// [`OVERLAP_SQL`] for a new table (`$4` its format, `$5` catalog, `$6` namespace id, `$7`
/// name): the two stores of a keyed table (`t` as `mixed-iceberg`, `t@change` as
/// `mixed-iceberg-change`, one namespace) may nest; nothing else may.
const OVERLAP_NEW_SQL: &str = "SELECT c.name, n.name, t.name, t.kind FROM tables t \
     JOIN namespaces n ON n.id = t.namespace_id JOIN catalogs c ON c.id = t.catalog_id \
     WHERE t.id <> $3 AND (t.location = $1 OR substr(t.location, 1, length($2)) = $2 \
     OR substr($1, 1, length(t.location) + 1) = t.location || '/') \
     AND NOT (t.catalog_id = $5 AND t.namespace_id = $6 AND t.location <> $1 AND ( \
       ($4 = 'mixed-iceberg-change' AND t.format = 'mixed-iceberg' AND t.name || '@change' = $7) \
       OR ($4 = 'mixed-iceberg' AND t.format = 'mixed-iceberg-change' AND t.name = $7 || '@change'))) \
     UNION ALL SELECT c.name, '', p.table_name, 'purge' FROM purges p JOIN catalogs c ON c.id = p.catalog_id \
     WHERE p.location = $1 OR substr(p.location, 1, length($2)) = $2 \
     OR substr($1, 1, length(p.location) + 1) = p.location || '/'";

/// Something that occupies a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupant {
    /// `table`, `view`, or `purge` (a dropped table whose files are being deleted).
    pub kind: String,
    /// `catalog.namespace.name` (for purges, `catalog.namespace.table` as dropped).
    pub name: String,
}

impl std::fmt::Display for Occupant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind.as_str() {
            "purge" => write!(f, "dropped table {}, whose files are being purged", self.name),
            kind => write!(f, "{kind} {}", self.name),
        }
    }
}

/// Rows of [`OVERLAP_SQL`] as occupants.
fn occupants(rows: Vec<(String, String, String, String)>) -> Vec<Occupant> {
    rows.into_iter()
        .map(|(catalog, ns, name, kind)| {
            let name = if ns.is_empty() {
                format!("{catalog}.{name}")
            } else {
                format!("{catalog}.{}.{name}", ns.replace(crate::namespaces::LEVEL_SEPARATOR, "."))
            };
            Occupant { kind, name }
        })
        .collect()
}

/// The overlap error of a location claimed by a transaction.
fn overlap_error(location: &str, occupants: &[Occupant]) -> MetaError {
    let list: Vec<String> = occupants.iter().map(ToString::to_string).collect();
    MetaError::Overlap(format!("location {location} overlaps {}", list.join(", ")))
}

/// Serializes transactions that claim locations (creates, moves, purges) on PostgreSQL, so two
/// of them cannot both see a location free; SQLite has one writer anyway.
macro_rules! lock_locations {
    ($tx:ident, $postgres:expr, $locked:ident) => {
        if $postgres && !$locked {
            sqlx::query(LOCK_LOCATIONS).execute(&mut *$tx).await?;
            $locked = true;
        }
    };
}

/// A pointer swap that keeps the table's location.
const SWAP_IN_PLACE: &str = "UPDATE tables SET metadata_location = $1, previous_metadata_location = $2, location = $3, \
     version = version + 1, snapshot_id = $4, data_files = $5, delete_files = $6, total_size = $7, \
     total_records = $8, last_commit_ms = $9, updated_at = $10 \
     WHERE id = $11 AND version = $12 AND metadata_location = $2 AND location = $3";

/// A pointer swap that moves the table (its new location was checked for overlaps).
const SWAP_MOVE: &str = "UPDATE tables SET metadata_location = $1, previous_metadata_location = $2, location = $3, \
     version = version + 1, snapshot_id = $4, data_files = $5, delete_files = $6, total_size = $7, \
     total_records = $8, last_commit_ms = $9, updated_at = $10 \
     WHERE id = $11 AND version = $12 AND metadata_location = $2";

/// One of the swap statements with a [`PointerSwap`]'s values bound.
macro_rules! swap_query {
    ($sql:expr, $swap:expr, $now:expr) => {
        sqlx::query($sql)
            .bind(&$swap.metadata_location)
            .bind(&$swap.previous_metadata_location)
            .bind(&$swap.location)
            .bind($swap.stats.snapshot_id)
            .bind($swap.stats.data_files)
            .bind($swap.stats.delete_files)
            .bind($swap.stats.total_size)
            .bind($swap.stats.total_records)
            .bind($swap.stats.last_commit_ms)
            .bind($now)
            .bind($swap.table_id)
            .bind($swap.expected_version)
    };
}

/// The PostgreSQL advisory lock that [`lock_locations`] takes.
const LOCK_LOCATIONS: &str = "SELECT pg_advisory_xact_lock(7370011)";

/// [`OVERLAP_SQL`] inside a transaction, described.
macro_rules! overlaps_in {
    ($tx:ident, $location:expr, $except:expr) => {{
        let location: &str = $location;
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(OVERLAP_SQL)
            .bind(location)
            .bind(format!("{location}/"))
            .bind($except)
            .fetch_all(&mut *$tx)
            .await?;
        occupants(rows)
    }};
}

/// Columns of [`TableRow`], selected from `tables t JOIN namespaces n`.
macro_rules! table_select {
    ($($rest:literal),*) => {
        concat!(
            "SELECT t.id, t.catalog_id, t.namespace_id, n.name AS namespace, t.name, t.kind, t.format, t.uuid, ",
            "t.location, t.metadata_location, t.previous_metadata_location, t.version, t.snapshot_id, ",
            "t.data_files, t.delete_files, t.total_size, t.total_records, t.last_commit_ms, t.created_at, t.updated_at ",
            "FROM tables t JOIN namespaces n ON n.id = t.namespace_id ",
            $($rest),*
        )
    };
}

fn display(namespace: &[String], name: &str) -> String {
    format!("{}.{}", namespace.join("."), name)
}

impl MetaStore {
    /// Tables (or views) of one namespace, by name.
    pub async fn list_tables(
        &self,
        catalog_id: i64,
        namespace: &[String],
        kind: TableKind,
        page: &PageRequest,
    ) -> Result<Page<TableRecord>> {
        let ns = join_name(namespace);
        let rows: Vec<TableRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(table_select!(
                "WHERE n.catalog_id = $1 AND n.name = $2 AND t.kind = $3 AND t.name > $4 ORDER BY t.name LIMIT $5"
            ))
            .bind(catalog_id)
            .bind(&ns)
            .bind(kind.as_str())
            .bind(page.sql_after())
            .bind(page.sql_limit())
            .fetch_all(pool)
            .await
        })?;
        let items = rows.into_iter().map(TryInto::try_into).collect::<Result<Vec<TableRecord>>>()?;
        Ok(page.finish(items, |t| t.name.clone()))
    }

    /// Every table (not view) of a catalog, by namespace and name.
    pub async fn list_catalog_tables(&self, catalog_id: i64) -> Result<Vec<TableRecord>> {
        let rows: Vec<TableRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(table_select!("WHERE t.catalog_id = $1 AND t.kind = 'table' ORDER BY n.name, t.name"))
                .bind(catalog_id)
                .fetch_all(pool)
                .await
        })?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The table or view called `name` in a namespace, whatever its kind.
    pub async fn get_table(&self, catalog_id: i64, namespace: &[String], name: &str) -> Result<Option<TableRecord>> {
        let ns = join_name(namespace);
        let row: Option<TableRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(table_select!("WHERE n.catalog_id = $1 AND n.name = $2 AND t.name = $3"))
                .bind(catalog_id)
                .bind(&ns)
                .bind(name)
                .fetch_optional(pool)
                .await
        })?;
        row.map(TryInto::try_into).transpose()
    }

    /// The table or view with this id.
    pub async fn get_table_by_id(&self, id: i64) -> Result<Option<TableRecord>> {
        let row: Option<TableRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(table_select!("WHERE t.id = $1")).bind(id).fetch_optional(pool).await
        })?;
        row.map(TryInto::try_into).transpose()
    }

    /// What occupies `location` or overlaps it (equal, inside, or containing it), in any
    /// catalog: tables, views, and locations of dropped tables still being purged. Two of them
    /// must never share files. `except` is a table id to leave out (the one being moved).
    pub async fn locations_overlapping(&self, location: &str, except: Option<i64>) -> Result<Vec<Occupant>> {
        let location = location.trim_end_matches('/');
        let under = format!("{location}/");
        let rows: Vec<(String, String, String, String)> = on_pool!(self, read, |pool| {
            sqlx::query_as(OVERLAP_SQL).bind(location).bind(&under).bind(except.unwrap_or(-1)).fetch_all(pool).await
        })?;
        Ok(occupants(rows))
    }

    /// Applies a commit in one transaction: inserts new tables and swaps pointers, all or
    /// nothing; returns the ids of the inserted rows, in order. [`MetaError::Conflict`] if a row
    /// moved past its expected version, [`MetaError::AlreadyExists`] if a new table's name was
    /// taken meanwhile.
    pub async fn apply_commit(&self, batch: &CommitBatch) -> Result<Vec<i64>> {
        let CommitBatch { inserts, swaps, checks } = batch;
        let now = crate::now_ms();
        let postgres = self.backend() == crate::Backend::Postgres;
        let outcome = on_pool!(self, write, |pool| {
            async {
                let mut tx = pool.begin().await?;
                let mut locked = false;
                let mut ids = Vec::with_capacity(inserts.len());
                for new in inserts.iter() {
                    lock_locations!(tx, postgres, locked);
                    let ns_id: Option<i64> =
                        sqlx::query_scalar("SELECT id FROM namespaces WHERE catalog_id = $1 AND name = $2")
                            .bind(new.catalog_id)
                            .bind(join_name(&new.namespace))
                            .fetch_optional(&mut *tx)
                            .await?;
                    let Some(ns_id) = ns_id else {
                        return Ok(Err(MetaError::NotFound(format!("namespace {}", new.namespace.join(".")))));
                    };
                    // Inserted first, so a taken name reports as such rather than as an overlap.
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO tables (catalog_id, namespace_id, name, kind, format, uuid, location, \
                         metadata_location, version, snapshot_id, data_files, delete_files, total_size, total_records, \
                         last_commit_ms, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11, $12, $13, $14, $15, $15) RETURNING id",
                    )
                    .bind(new.catalog_id)
                    .bind(ns_id)
                    .bind(&new.name)
                    .bind(new.kind.as_str())
                    .bind(&new.format)
                    .bind(&new.uuid)
                    .bind(&new.location)
                    .bind(&new.metadata_location)
                    .bind(new.stats.snapshot_id)
                    .bind(new.stats.data_files)
                    .bind(new.stats.delete_files)
                    .bind(new.stats.total_size)
                    .bind(new.stats.total_records)
                    .bind(new.stats.last_commit_ms)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    let rows: Vec<(String, String, String, String)> = sqlx::query_as(OVERLAP_NEW_SQL)
                        .bind(&new.location)
                        .bind(format!("{}/", new.location))
                        .bind(id)
                        .bind(&new.format)
                        .bind(new.catalog_id)
                        .bind(ns_id)
                        .bind(&new.name)
                        .fetch_all(&mut *tx)
                        .await?;
                    let overlaps = occupants(rows);
                    if !overlaps.is_empty() {
                        return Ok(Err(overlap_error(&new.location, &overlaps)));
                    }
                    ids.push(id);
                }
                for swap in swaps.iter() {
                    // Most commits keep the location: one statement. A move is checked for
                    // overlaps first, under the location lock.
                    let mut updated = swap_query!(SWAP_IN_PLACE, swap, now).execute(&mut *tx).await?.rows_affected();
                    if updated == 0 {
                        let moved: Option<String> = sqlx::query_scalar(
                            "SELECT location FROM tables WHERE id = $1 AND version = $2 AND location <> $3",
                        )
                        .bind(swap.table_id)
                        .bind(swap.expected_version)
                        .bind(&swap.location)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if moved.is_some() {
                            lock_locations!(tx, postgres, locked);
                            let overlaps = overlaps_in!(tx, &swap.location, swap.table_id);
                            if !overlaps.is_empty() {
                                return Ok(Err(overlap_error(&swap.location, &overlaps)));
                            }
                            updated = swap_query!(SWAP_MOVE, swap, now).execute(&mut *tx).await?.rows_affected();
                        }
                    }
                    if updated != 1 {
                        return Ok(Err(MetaError::Conflict(format!("table id {}", swap.table_id))));
                    }
                }
                for check in checks.iter() {
                    // A no-op update: it locks the row (PostgreSQL) and matches only the version.
                    let matched = sqlx::query("UPDATE tables SET version = version WHERE id = $1 AND version = $2")
                        .bind(check.table_id)
                        .bind(check.expected_version)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if matched != 1 {
                        return Ok(Err(MetaError::Conflict(format!("table id {}", check.table_id))));
                    }
                }
                tx.commit().await?;
                Ok::<_, sqlx::Error>(Ok(ids))
            }
            .await
        });
        match outcome {
            Ok(result) => result,
            Err(e) if is_unique_violation(&e) => {
                let names: Vec<String> = inserts.iter().map(|n| display(&n.namespace, &n.name)).collect();
                Err(MetaError::AlreadyExists(names.join(", ")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Swaps pointers of existing tables in one transaction; see [`MetaStore::apply_commit`].
    pub async fn swap_pointers(&self, swaps: &[PointerSwap]) -> Result<()> {
        self.apply_commit(&CommitBatch { swaps: swaps.to_vec(), ..CommitBatch::default() }).await.map(drop)
    }

    /// Inserts a table or view. Fails with [`MetaError::NotFound`] if the namespace is gone and
    /// [`MetaError::AlreadyExists`] if the name is taken by a table or view.
    pub async fn insert_table(&self, new: &NewTable) -> Result<TableRecord> {
        self.apply_commit(&CommitBatch { inserts: vec![new.clone()], ..CommitBatch::default() }).await?;
        self.get_table(new.catalog_id, &new.namespace, &new.name)
            .await?
            .ok_or_else(|| MetaError::NotFound(display(&new.namespace, &new.name)))
    }

    /// Deletes a table or view row, if it is still at `expected_version`; with `purge`, records
    /// the purge of its files in the same transaction (see [`MetaStore::pending_purges`]).
    pub async fn delete_table(
        &self,
        table_id: i64,
        expected_version: i64,
        purge: Option<&NewPurge>,
    ) -> Result<Option<PurgeRecord>> {
        let now = crate::now_ms();
        let postgres = self.backend() == crate::Backend::Postgres;
        let outcome = on_pool!(self, write, |pool| {
            async {
                let mut tx = pool.begin().await?;
                if purge.is_some() && postgres {
                    sqlx::query(LOCK_LOCATIONS).execute(&mut *tx).await?;
                }
                let deleted = sqlx::query("DELETE FROM tables WHERE id = $1 AND version = $2")
                    .bind(table_id)
                    .bind(expected_version)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted != 1 {
                    return Ok(Err(MetaError::Conflict(format!("table id {table_id}"))));
                }
                let record = match purge {
                    Some(purge) => Some(
                        sqlx::query_as::<_, crate::purges::PurgeRow>(crate::purges::INSERT_PURGE)
                            .bind(purge.catalog_id)
                            .bind(&purge.table_name)
                            .bind(&purge.location)
                            .bind(&purge.metadata_location)
                            .bind(now)
                            .fetch_one(&mut *tx)
                            .await?,
                    ),
                    None => None,
                };
                tx.commit().await?;
                Ok::<_, sqlx::Error>(Ok(record))
            }
            .await
        })?;
        Ok(outcome?.map(PurgeRecord::from))
    }

    /// Moves a table or view to another namespace and/or name; the id and files stay.
    pub async fn rename_table(&self, table_id: i64, catalog_id: i64, namespace: &[String], name: &str) -> Result<()> {
        let ns = join_name(namespace);
        let now = crate::now_ms();
        let result = on_pool!(self, write, |pool| {
            async {
                let mut tx = pool.begin().await?;
                let ns_id: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM namespaces WHERE catalog_id = $1 AND name = $2")
                        .bind(catalog_id)
                        .bind(&ns)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(ns_id) = ns_id else {
                    return Ok(Err(MetaError::NotFound(format!("namespace {}", namespace.join(".")))));
                };
                let updated =
                    sqlx::query("UPDATE tables SET namespace_id = $1, name = $2, updated_at = $3 WHERE id = $4")
                        .bind(ns_id)
                        .bind(name)
                        .bind(now)
                        .bind(table_id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                if updated != 1 {
                    return Ok(Err(MetaError::NotFound(format!("table id {table_id}"))));
                }
                tx.commit().await?;
                Ok::<_, sqlx::Error>(Ok(()))
            }
            .await
        });
        match result {
            Ok(outcome) => outcome,
            Err(e) if is_unique_violation(&e) => Err(MetaError::AlreadyExists(display(namespace, name))),
            Err(e) => Err(e.into()),
        }
    }

    /// Ids of every table (not view), in id order.
    pub async fn list_table_ids(&self) -> Result<Vec<i64>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT id FROM tables WHERE kind = 'table' ORDER BY id").fetch_all(pool).await
        })?)
    }

    /// Current metadata pointers of the tables whose id falls in `slice` of `slices` (ids modulo
    /// `slices`), with their catalog's last change: what a periodic check needs to notice a
    /// changed table without reading its metadata, a slice at a time.
    pub async fn table_pointers(&self, slices: i64, slice: i64) -> Result<Vec<TablePointer>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT t.id, t.metadata_location, c.updated_at AS catalog_updated_at FROM tables t \
                 JOIN catalogs c ON c.id = t.catalog_id WHERE t.kind = 'table' AND t.id % $1 = $2 ORDER BY t.id",
            )
            .bind(slices.max(1))
            .bind(slice)
            .fetch_all(pool)
            .await
        })?)
    }

    /// Number of tables and views in a catalog.
    pub async fn count_tables(&self, catalog_id: i64) -> Result<i64> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM tables WHERE catalog_id = $1")
                .bind(catalog_id)
                .fetch_one(pool)
                .await
        })?)
    }
}

/// Where a table's metadata is now, and when its catalog last changed (catalog properties are
/// table defaults): if neither moved, nothing about the table changed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TablePointer {
    /// The table.
    pub id: i64,
    /// Its current metadata file.
    pub metadata_location: String,
    /// Its catalog's `updated_at`.
    pub catalog_updated_at: i64,
}
