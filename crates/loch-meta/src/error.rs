//! Errors of the metadata store.

/// What can go wrong in the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The database URL is not one Loch understands.
    #[error("invalid database url `{0}`: expected sqlite:PATH or postgres://...")]
    InvalidUrl(String),
    /// A row that must be unique exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A row that the operation needs does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// A row cannot be removed while others depend on it.
    #[error("{0}")]
    NotEmpty(String),
    /// A compare-and-swap lost against a concurrent writer.
    #[error("concurrent modification of {0}")]
    Conflict(String),
    /// A location overlaps another table's, view's or purge's location.
    #[error("{0}")]
    Overlap(String),
    /// A stored value could not be decoded.
    #[error("corrupt metadata store value: {0}")]
    Corrupt(String),
    /// Applying migrations failed.
    #[error("migrating the metadata store failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database reported an error.
    #[error("metadata store error: {0}")]
    Database(#[from] sqlx::Error),
}

impl MetaError {
    /// True when the database may not have applied a write whose outcome is unknown
    /// (connection loss mid-commit); callers must not assume either outcome.
    pub fn is_unknown_outcome(&self) -> bool {
        matches!(self, MetaError::Database(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_)))
    }
}

/// Result type of the metadata store.
pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// True when `e` is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
