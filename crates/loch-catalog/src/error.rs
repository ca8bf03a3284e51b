//! Errors of the catalog service, each with the Iceberg REST error type it maps to.
//!
//! Messages follow the wording of Iceberg's reference catalog (`Table does not exist: ns.t`,
//! `Namespace already exists: ns`, ...): clients and Iceberg's compatibility kit match on it.

use loch_meta::MetaError;

/// What can go wrong in a catalog operation.
///
/// Every variant but [`CatalogError::Internal`], [`CatalogError::Storage`] and
/// [`CatalogError::CommitStateUnknown`] is the caller's doing and maps to a 4xx response.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The request is malformed or asks for something the catalog refuses.
    #[error("{0}")]
    BadRequest(String),
    /// The request describes invalid table or view metadata (Java's `IllegalArgumentException`).
    #[error("{0}")]
    Invalid(String),
    /// No catalog has this name.
    #[error("Catalog does not exist: {0}")]
    NoSuchCatalog(String),
    /// The namespace does not exist.
    #[error("Namespace does not exist: {0}")]
    NoSuchNamespace(String),
    /// The table does not exist.
    #[error("Table does not exist: {0}")]
    NoSuchTable(String),
    /// The view does not exist.
    #[error("View does not exist: {0}")]
    NoSuchView(String),
    /// The name is taken (the whole message, see [`CatalogError::table_exists`] and friends).
    #[error("{0}")]
    AlreadyExists(String),
    /// The namespace still holds namespaces, tables or views.
    #[error("{0}")]
    NamespaceNotEmpty(String),
    /// The catalog still holds tables or views.
    #[error("{0}")]
    CatalogNotEmpty(String),
    /// A requirement failed or a concurrent commit won; the client may retry.
    #[error("{0}")]
    CommitFailed(String),
    /// The same key was both set and removed.
    #[error("{0}")]
    Unprocessable(String),
    /// The commit may or may not have been applied.
    #[error("commit state unknown: {0}")]
    CommitStateUnknown(String),
    /// Reading or writing table files failed.
    #[error("storage error: {0}")]
    Storage(#[source] iceberg::Error),
    /// A server-side fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CatalogError {
    /// The Iceberg REST error type (`ErrorModel.type`) of this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            CatalogError::BadRequest(_) => "BadRequestException",
            CatalogError::Invalid(_) => "IllegalArgumentException",
            CatalogError::NoSuchCatalog(_) => "NoSuchWarehouseException",
            CatalogError::NoSuchNamespace(_) => "NoSuchNamespaceException",
            CatalogError::NoSuchTable(_) => "NoSuchTableException",
            CatalogError::NoSuchView(_) => "NoSuchViewException",
            CatalogError::AlreadyExists(_) => "AlreadyExistsException",
            CatalogError::NamespaceNotEmpty(_) => "NamespaceNotEmptyException",
            CatalogError::CatalogNotEmpty(_) => "CatalogNotEmptyException",
            CatalogError::CommitFailed(_) => "CommitFailedException",
            CatalogError::Unprocessable(_) => "UnprocessableEntityException",
            CatalogError::CommitStateUnknown(_) => "CommitStateUnknownException",
            CatalogError::Storage(_) | CatalogError::Internal(_) => "ServiceFailureException",
        }
    }

    /// The HTTP status code of this error.
    pub fn status(&self) -> u16 {
        match self {
            CatalogError::BadRequest(_) | CatalogError::Invalid(_) => 400,
            CatalogError::NoSuchCatalog(_)
            | CatalogError::NoSuchNamespace(_)
            | CatalogError::NoSuchTable(_)
            | CatalogError::NoSuchView(_) => 404,
            CatalogError::AlreadyExists(_)
            | CatalogError::NamespaceNotEmpty(_)
            | CatalogError::CatalogNotEmpty(_)
            | CatalogError::CommitFailed(_) => 409,
            CatalogError::Unprocessable(_) => 422,
            CatalogError::CommitStateUnknown(_) | CatalogError::Storage(_) | CatalogError::Internal(_) => 500,
        }
    }

    /// `Table already exists: ns.t`.
    pub fn table_exists(ident: impl std::fmt::Display) -> Self {
        CatalogError::AlreadyExists(format!("Table already exists: {ident}"))
    }

    /// `View already exists: ns.v`.
    pub fn view_exists(ident: impl std::fmt::Display) -> Self {
        CatalogError::AlreadyExists(format!("View already exists: {ident}"))
    }

    /// `Namespace already exists: ns`.
    pub fn namespace_exists(namespace: impl std::fmt::Display) -> Self {
        CatalogError::AlreadyExists(format!("Namespace already exists: {namespace}"))
    }

    /// The message to show a client: the error itself for client mistakes; for faults, only
    /// what the operation was (the cause goes to the log).
    pub fn client_message(&self) -> String {
        match self {
            CatalogError::Storage(e) => format!("storage error: {} ({})", e.message(), e.kind()),
            CatalogError::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        }
    }

    /// A storage error with context.
    pub(crate) fn storage(context: impl std::fmt::Display, e: iceberg::Error) -> Self {
        CatalogError::Storage(e.with_context("operation", context.to_string()))
    }
}

impl From<MetaError> for CatalogError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::AlreadyExists(what) => CatalogError::AlreadyExists(what),
            MetaError::NotFound(what) => CatalogError::BadRequest(format!("{what} does not exist")),
            MetaError::NotEmpty(what) => CatalogError::NamespaceNotEmpty(what),
            MetaError::Conflict(what) => CatalogError::CommitFailed(format!("concurrent modification of {what}")),
            MetaError::Overlap(what) => CatalogError::BadRequest(what),
            other => CatalogError::Internal(other.to_string()),
        }
    }
}

/// Result type of the catalog service.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
