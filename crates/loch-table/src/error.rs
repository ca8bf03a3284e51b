//! Errors of table operations.

/// What can go wrong building a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A file to remove is not live in the base snapshot (removed concurrently, or never added).
    #[error("file {0} is not part of the table's current snapshot")]
    FileNotInTable(String),
    /// A concurrent commit made the operation invalid (it removed a file the operation removes,
    /// or added a delete that applies to a file it rewrites).
    #[error("conflict with a concurrent commit: {0}")]
    Conflict(String),
    /// The operation is not valid for this table.
    #[error("{0}")]
    Invalid(String),
    /// The table holds something Loch does not read or rewrite (yet): deletion vectors, a
    /// non-Parquet file, a file outside the table's location.
    #[error("{0}")]
    Unsupported(String),
    /// Reading or writing Iceberg files failed.
    #[error(transparent)]
    Iceberg(#[from] iceberg::Error),
}

/// Result type of table operations.
pub type Result<T, E = TableError> = std::result::Result<T, E>;
