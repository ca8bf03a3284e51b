//! Errors of the SQL engine: each one line a terminal can show as is.

use datafusion::error::DataFusionError;
use loch_table::TableError;

/// What went wrong running a statement.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The text is not a statement (with its position).
    #[error("syntax error: {0}")]
    Parse(String),
    /// The statement names something that does not exist, or asks for what Loch does not do.
    #[error("{0}")]
    Invalid(String),
    /// The catalog server refused or failed the request.
    #[error("{0}")]
    Catalog(String),
    /// A commit lost a race with another commit to the same table (nothing was committed; the
    /// statement may run again on the new state).
    #[error("{0}")]
    CommitConflict(String),
    /// Planning or running a query.
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    /// Reading or writing a table's files.
    #[error("{0}")]
    Table(#[from] TableError),
    /// iceberg-rust.
    #[error("{0}")]
    Iceberg(#[from] iceberg::Error),
    /// Arrow.
    #[error("{0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// The statement was stopped.
    #[error("the statement was cancelled")]
    Cancelled,
}

impl SqlError {
    /// A [`SqlError::Invalid`] from any message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}

/// Results of the SQL engine.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;
