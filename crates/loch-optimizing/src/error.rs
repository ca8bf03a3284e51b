//! Errors of self-optimizing.

use loch_catalog::CatalogError;
use loch_meta::MetaError;
use loch_table::TableError;

/// What can go wrong while evaluating, planning, scheduling or committing.
#[derive(Debug, thiserror::Error)]
pub enum OptimizingError {
    /// A property has an invalid value.
    #[error("invalid property: {0}")]
    InvalidProperty(String),
    /// An optimizer called with a token the server does not know (expired or never issued);
    /// the optimizer registers again.
    #[error("unknown optimizer token; register again")]
    UnknownOptimizer,
    /// A request names something that does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// A request is malformed (bad name, bad value).
    #[error("{0}")]
    Invalid(String),
    /// A request is not valid now (wrong task state, wrong thread, ...).
    #[error("{0}")]
    Rejected(String),
    /// The group name is not a configured optimizer group.
    #[error("optimizer group {0} does not exist")]
    NoSuchGroup(String),
    /// Reading or committing the table failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Building the rewrite snapshot failed (including conflicts with concurrent commits).
    #[error(transparent)]
    Table(#[from] TableError),
    /// Iceberg files could not be read or decoded.
    #[error(transparent)]
    Iceberg(#[from] iceberg::Error),
    /// The metadata store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// A stored value could not be decoded.
    #[error("corrupt optimizing state: {0}")]
    Corrupt(String),
}

impl OptimizingError {
    /// Why Loch cannot optimize the table as it is (it is skipped, not retried), if that is
    /// what this error says.
    pub fn unsupported(&self) -> Option<&str> {
        match self {
            OptimizingError::Table(TableError::Unsupported(reason)) => Some(reason),
            _ => None,
        }
    }
}

/// Result type of self-optimizing.
pub type Result<T, E = OptimizingError> = std::result::Result<T, E>;
