//! Connecting to the database, running migrations, and picking a connection pool.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::error::{MetaError, Result};

/// Which database a [`MetaStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Connection settings of the metadata store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most connections held open (for SQLite: readers; there is always exactly one writer).
    pub max_connections: u32,
    /// How long a caller waits for a free connection before failing.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { max_connections: 16, acquire_timeout: Duration::from_secs(30) }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Pools {
    /// SQLite allows one writer at a time; a single write connection queues writers inside
    /// the process instead of failing them with SQLITE_BUSY, while readers run in parallel.
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
    },
    Postgres(PgPool),
}

/// Handle to the metadata store; cheap to clone (it holds connection pools).
#[derive(Debug, Clone)]
pub struct MetaStore {
    pub(crate) pools: Pools,
}

/// Runs `$body` with `$pool` bound to the pool for reading or writing, once per backend.
///
/// The body is written once and compiled for both drivers: the SQL text, `bind` calls and
/// `FromRow` decoding are the same for SQLite and PostgreSQL.
macro_rules! on_pool {
    ($store:expr, read, |$pool:ident| $body:expr) => {
        match &$store.pools {
            $crate::store::Pools::Sqlite { read: $pool, .. } => $body,
            $crate::store::Pools::Postgres($pool) => $body,
        }
    };
    ($store:expr, write, |$pool:ident| $body:expr) => {
        match &$store.pools {
            $crate::store::Pools::Sqlite { write: $pool, .. } => $body,
            $crate::store::Pools::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

impl MetaStore {
    /// Connects to `url` (`sqlite:PATH` or `postgres://...`) and brings its schema up to date.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self> {
        let pools = if url.starts_with("sqlite:") {
            Self::connect_sqlite(url, options).await?
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .connect(url)
                .await?;
            sqlx::migrate!("migrations/postgres").run(&pool).await?;
            Pools::Postgres(pool)
        } else {
            return Err(MetaError::InvalidUrl(redact_url(url)));
        };
        Ok(Self { pools })
    }

    async fn connect_sqlite(url: &str, options: &StoreOptions) -> Result<Pools> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|_| MetaError::InvalidUrl(url.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(options.acquire_timeout)
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.read_only(true))
            .await?;
        Ok(Pools::Sqlite { read, write })
    }

    /// The database behind this store.
    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// Checks that the database answers; used by health checks.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, read, |pool| sqlx::query("SELECT 1").execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Closes every connection; waits for checked-out connections to come back.
    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Pools::Postgres(pool) => pool.close().await,
        }
    }
}

/// The URL with any password replaced, safe to print in errors and logs.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://loch:secret@db:5432/loch"), "postgres://loch:***@db:5432/loch");
        assert_eq!(redact_url("sqlite:/tmp/x.db"), "sqlite:/tmp/x.db");
    }
}
