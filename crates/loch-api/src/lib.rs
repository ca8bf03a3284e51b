//! Wire types shared by Loch's server, its workers and its clients: the management API's
//! requests and responses (camelCase JSON, as Amoro's dashboard API) and the error model.
//!
//! The crate depends on serde and utoipa only, so workers and tools can use it without
//! pulling in the server.

pub mod management;
pub mod optimizer;
pub mod optimizing;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Error body of every non-2xx response, the Iceberg REST `IcebergErrorResponse` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorModel,
}

/// Details of an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorModel {
    /// Human-readable message.
    pub message: String,
    /// Error type, e.g. `NoSuchTableException`.
    #[serde(rename = "type")]
    pub r#type: String,
    /// HTTP status code.
    pub code: u16,
}

impl ErrorResponse {
    /// An error response.
    pub fn new(code: u16, r#type: impl Into<String>, message: impl Into<String>) -> Self {
        Self { error: ErrorModel { message: message.into(), r#type: r#type.into(), code } }
    }
}
