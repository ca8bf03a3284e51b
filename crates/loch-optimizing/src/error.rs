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
    /// An optimizer called after an operator released it; it stops.
    #[error("this optimizer was released; stop")]
    OptimizerReleased,
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
    /// The HTTP status and Iceberg error type this error is answered with, or `None` for a
    /// failure of the server itself (500). The management routes, the protocol routes and the
    /// server's own optimizer threads all classify errors with it.
    pub fn http(&self) -> Option<(u16, &'static str)> {
        Some(match self {
            OptimizingError::Catalog(inner) => (inner.status(), inner.error_type()),
            OptimizingError::Invalid(_) | OptimizingError::InvalidProperty(_) => (400, "BadRequestException"),
            OptimizingError::UnknownOptimizer => {
                (loch_api::optimizer::UNKNOWN_OPTIMIZER_STATUS, "UnknownOptimizerException")
            }
            OptimizingError::OptimizerReleased => {
                (loch_api::optimizer::UNKNOWN_OPTIMIZER_STATUS, loch_api::optimizer::RELEASED_OPTIMIZER_TYPE)
            }
            OptimizingError::NotFound(_)
            | OptimizingError::NoSuchGroup(_)
            | OptimizingError::Meta(MetaError::NotFound(_)) => (404, "NotFoundException"),
            OptimizingError::Meta(MetaError::AlreadyExists(_)) => (409, "AlreadyExistsException"),
            OptimizingError::Meta(MetaError::NotEmpty(_)) => (409, "NotEmptyException"),
            OptimizingError::Rejected(_) => (409, "RejectedException"),
            _ => return None,
        })
    }

    /// What a worker makes of this error (see [`loch_api::optimizer::ProtocolError`]).
    pub fn protocol(&self) -> loch_api::optimizer::ProtocolError {
        let (status, error_type) = self.http().unwrap_or((500, ""));
        loch_api::optimizer::ProtocolError::from_answer(status, error_type, self.to_string())
    }

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
