//! Errors of the optimizer worker.

/// What can go wrong executing a task or talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// The task input is not usable.
    #[error("invalid task input: {0}")]
    Input(String),
    /// Reading or writing Iceberg files failed.
    #[error(transparent)]
    Iceberg(#[from] iceberg::Error),
    /// Building a table file failed.
    #[error(transparent)]
    Table(#[from] loch_table::TableError),
    /// The server could not be reached or answered with an error.
    #[error("server: {0}")]
    Server(String),
    /// The server refused the request (e.g. a result for a task that was handed to someone else).
    #[error("rejected by the server: {0}")]
    Rejected(String),
    /// The server no longer knows this optimizer's token; register again.
    #[error("the server does not know this optimizer; registering again")]
    Unregistered,
    /// An operator released this optimizer: it stops.
    #[error("an operator released this optimizer")]
    Released,
}

impl From<loch_api::optimizer::ProtocolError> for ExecuteError {
    fn from(e: loch_api::optimizer::ProtocolError) -> Self {
        use loch_api::optimizer::ProtocolError;
        match e {
            ProtocolError::Unregistered => ExecuteError::Unregistered,
            ProtocolError::Released => ExecuteError::Released,
            ProtocolError::Rejected(message) => ExecuteError::Rejected(message),
            ProtocolError::Server(message) => ExecuteError::Server(message),
        }
    }
}

/// Result type of the worker.
pub type Result<T, E = ExecuteError> = std::result::Result<T, E>;
