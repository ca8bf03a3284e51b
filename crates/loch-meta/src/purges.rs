//! Purges of dropped tables: recorded when the table row goes (same transaction), worked off in
//! the background, removed when the files are gone. A location with a purge in progress counts
//! as taken, so no new table can move in while its predecessor's files are being deleted.

use sqlx::FromRow;

use crate::error::Result;
use crate::store::{MetaStore, on_pool};

/// A purge to record with a table's drop.
#[derive(Debug, Clone)]
pub struct NewPurge {
    /// The catalog of the dropped table (its storage settings reach the files).
    pub catalog_id: i64,
    /// `namespace.table`, for logs and messages.
    pub table_name: String,
    /// The table's location in canonical form; everything under it is deleted.
    pub location: String,
    /// The table's last metadata file (what it references is deleted first).
    pub metadata_location: String,
}

/// A purge in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeRecord {
    /// Id of the purge.
    pub id: i64,
    /// The catalog of the dropped table.
    pub catalog_id: i64,
    /// `namespace.table`.
    pub table_name: String,
    /// The table's location (canonical).
    pub location: String,
    /// The table's last metadata file.
    pub metadata_location: String,
    /// Failed attempts so far.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the table was dropped (ms since epoch).
    pub created_at: i64,
}

#[derive(FromRow)]
pub(crate) struct PurgeRow {
    id: i64,
    catalog_id: i64,
    table_name: String,
    location: String,
    metadata_location: String,
    attempts: i64,
    last_error: Option<String>,
    created_at: i64,
}

impl From<PurgeRow> for PurgeRecord {
    fn from(row: PurgeRow) -> Self {
        Self {
            id: row.id,
            catalog_id: row.catalog_id,
            table_name: row.table_name,
            location: row.location,
            metadata_location: row.metadata_location,
            attempts: row.attempts,
            last_error: row.last_error,
            created_at: row.created_at,
        }
    }
}

/// Inserts a purge: `$1` catalog id, `$2` table name, `$3` location, `$4` metadata location, `$5` now.
pub(crate) const INSERT_PURGE: &str = "INSERT INTO purges (catalog_id, table_name, location, metadata_location, \
     attempts, created_at, updated_at) VALUES ($1, $2, $3, $4, 0, $5, $5) \
     RETURNING id, catalog_id, table_name, location, metadata_location, attempts, last_error, created_at";

impl MetaStore {
    /// Purges not finished yet, oldest first.
    pub async fn pending_purges(&self) -> Result<Vec<PurgeRecord>> {
        let rows: Vec<PurgeRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, catalog_id, table_name, location, metadata_location, attempts, last_error, created_at \
                 FROM purges ORDER BY id",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(rows.into_iter().map(PurgeRecord::from).collect())
    }

    /// Removes a finished purge; its location is free again.
    pub async fn finish_purge(&self, id: i64) -> Result<()> {
        on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM purges WHERE id = $1").bind(id).execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// Records a failed attempt; the purge stays pending.
    pub async fn fail_purge(&self, id: i64, error: &str) -> Result<()> {
        let now = crate::now_ms();
        on_pool!(self, write, |pool| {
            sqlx::query("UPDATE purges SET attempts = attempts + 1, last_error = $1, updated_at = $2 WHERE id = $3")
                .bind(error)
                .bind(now)
                .bind(id)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(())
    }
}
