//! Table and view rows: the pointer to the current metadata file, swapped by compare-and-swap,
//! and statistics of the current snapshot for listings.

use sqlx::FromRow;

use crate::error::{MetaError, Result, is_unique_violation};
use crate::namespaces::join_name;
use crate::page::{Page, PageRequest};
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

    /// Names of the tables of a catalog whose location equals `location`, lies under it, or
    /// contains it; two tables must never share files.
    pub async fn tables_overlapping_location(&self, catalog_id: i64, location: &str) -> Result<Vec<String>> {
        let location = location.trim_end_matches('/');
        let under = format!("{location}/");
        let rows: Vec<(String, String)> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT n.name, t.name FROM tables t JOIN namespaces n ON n.id = t.namespace_id \
                 WHERE t.catalog_id = $1 AND t.kind = 'table' AND (t.location = $2 \
                 OR substr(t.location, 1, length($3)) = $3 \
                 OR substr($3, 1, length(t.location) + 1) = t.location || '/')",
            )
            .bind(catalog_id)
            .bind(location)
            .bind(&under)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(ns, name)| format!("{}.{name}", ns.replace(crate::namespaces::LEVEL_SEPARATOR, ".")))
            .collect())
    }

    /// Applies a commit in one transaction: inserts new tables and swaps pointers, all or
    /// nothing. [`MetaError::Conflict`] if a row moved past its expected version,
    /// [`MetaError::AlreadyExists`] if a new table's name was taken meanwhile.
    pub async fn apply_commit(&self, batch: &CommitBatch) -> Result<()> {
        let CommitBatch { inserts, swaps, checks } = batch;
        let now = crate::now_ms();
        let outcome = on_pool!(self, write, |pool| {
            async {
                let mut tx = pool.begin().await?;
                for new in inserts.iter() {
                    let ns_id: Option<i64> =
                        sqlx::query_scalar("SELECT id FROM namespaces WHERE catalog_id = $1 AND name = $2")
                            .bind(new.catalog_id)
                            .bind(join_name(&new.namespace))
                            .fetch_optional(&mut *tx)
                            .await?;
                    let Some(ns_id) = ns_id else {
                        return Ok(Err(MetaError::NotFound(format!("namespace {}", new.namespace.join(".")))));
                    };
                    sqlx::query(
                        "INSERT INTO tables (catalog_id, namespace_id, name, kind, format, uuid, location, \
                         metadata_location, version, snapshot_id, data_files, delete_files, total_size, total_records, \
                         last_commit_ms, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11, $12, $13, $14, $15, $15)",
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
                    .execute(&mut *tx)
                    .await?;
                }
                for swap in swaps.iter() {
                    let updated = sqlx::query(
                        "UPDATE tables SET metadata_location = $1, previous_metadata_location = $2, location = $3, \
                         version = version + 1, snapshot_id = $4, data_files = $5, delete_files = $6, total_size = $7, \
                         total_records = $8, last_commit_ms = $9, updated_at = $10 \
                         WHERE id = $11 AND version = $12 AND metadata_location = $2",
                    )
                    .bind(&swap.metadata_location)
                    .bind(&swap.previous_metadata_location)
                    .bind(&swap.location)
                    .bind(swap.stats.snapshot_id)
                    .bind(swap.stats.data_files)
                    .bind(swap.stats.delete_files)
                    .bind(swap.stats.total_size)
                    .bind(swap.stats.total_records)
                    .bind(swap.stats.last_commit_ms)
                    .bind(now)
                    .bind(swap.table_id)
                    .bind(swap.expected_version)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
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
                Ok::<_, sqlx::Error>(Ok(()))
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
        self.apply_commit(&CommitBatch { swaps: swaps.to_vec(), ..CommitBatch::default() }).await
    }

    /// Inserts a table or view. Fails with [`MetaError::NotFound`] if the namespace is gone and
    /// [`MetaError::AlreadyExists`] if the name is taken by a table or view.
    pub async fn insert_table(&self, new: &NewTable) -> Result<TableRecord> {
        self.apply_commit(&CommitBatch { inserts: vec![new.clone()], ..CommitBatch::default() }).await?;
        self.get_table(new.catalog_id, &new.namespace, &new.name)
            .await?
            .ok_or_else(|| MetaError::NotFound(display(&new.namespace, &new.name)))
    }

    /// Deletes a table or view row, if it is still at `expected_version`.
    pub async fn delete_table(&self, table_id: i64, expected_version: i64) -> Result<()> {
        let deleted = on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM tables WHERE id = $1 AND version = $2")
                .bind(table_id)
                .bind(expected_version)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        if deleted == 1 { Ok(()) } else { Err(MetaError::Conflict(format!("table id {table_id}"))) }
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
