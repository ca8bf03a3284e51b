//! Errors of table operations.

/// What can go wrong building a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A file to remove is not live in the base snapshot (removed concurrently, or never added).
    #[error("file {0} is not part of the table's current snapshot")]
    FileNotInTable(String),
    /// The operation is not valid for this table.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing Iceberg files failed.
    #[error(transparent)]
    Iceberg(#[from] iceberg::Error),
}

/// Result type of table operations.
pub type Result<T, E = TableError> = std::result::Result<T, E>;
