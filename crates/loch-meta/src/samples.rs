//! Samples of the totals of every table (bytes and files), taken by the server once a minute
//! for the dashboard's charts and kept a bounded time.

use crate::error::Result;
use crate::store::{MetaStore, on_pool};

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct TotalsSample {
    /// When it was taken (ms since epoch).
    pub at: i64,
    /// Bytes of all tables' live files.
    pub bytes: i64,
    /// Number of all tables' live files.
    pub files: i64,
}

impl MetaStore {
    /// Records `sample` (a second one at the same millisecond, from another server, is
    /// dropped) and forgets samples older than `keep_after`.
    pub async fn record_sample(&self, sample: TotalsSample, keep_after: i64) -> Result<()> {
        on_pool!(self, write, |pool| {
            sqlx::query("INSERT INTO totals_samples (at, bytes, files) VALUES ($1, $2, $3) ON CONFLICT (at) DO NOTHING")
                .bind(sample.at)
                .bind(sample.bytes)
                .bind(sample.files)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM totals_samples WHERE at < $1")
                .bind(keep_after)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// Samples taken after `since`, oldest first.
    pub async fn samples_since(&self, since: i64) -> Result<Vec<TotalsSample>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as("SELECT at, bytes, files FROM totals_samples WHERE at > $1 ORDER BY at")
                .bind(since)
                .fetch_all(pool)
                .await
        })?)
    }
}
