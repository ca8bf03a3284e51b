//! HTTP errors: every failure becomes an Iceberg `ErrorModel` body with the right status, and
//! extractors turn malformed JSON, paths and queries into 400s instead of axum's plain text.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use loch_api::ErrorResponse;
use loch_catalog::CatalogError;
use loch_optimizing::OptimizingError;
use serde::de::DeserializeOwned;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    r#type: &'static str,
    message: String,
}

impl ApiError {
    /// An error with an explicit status and Iceberg error type.
    pub fn new(status: StatusCode, r#type: &'static str, message: impl Into<String>) -> Self {
        Self { status, r#type, message: message.into() }
    }

    /// 400 `BadRequestException`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
    }

    /// 401 `NotAuthorizedException`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "NotAuthorizedException", message)
    }

    /// 404 `NotFoundException` for unknown routes.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFoundException", message)
    }

    /// 500 `ServiceFailureException`; the cause is logged, the client gets the request id.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceFailureException",
            generic_failure("internal server error"),
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The one-line message clients see.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The message of a 5xx: what failed, and the request id to find the cause in the log.
fn generic_failure(what: &str) -> String {
    match crate::http::request_id() {
        Some(id) => format!("{what} (request id {id}; the cause is in the server log)"),
        None => format!("{what} (the cause is in the server log)"),
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), "catalog operation failed");
            let what = match &e {
                CatalogError::CommitStateUnknown(_) => "the commit's outcome is unknown; reload the table",
                CatalogError::Storage(_) => "the table's storage failed",
                _ => "internal server error",
            };
            return Self { status, r#type: e.error_type(), message: generic_failure(what) };
        }
        Self { status, r#type: e.error_type(), message: e.to_string() }
    }
}

impl From<OptimizingError> for ApiError {
    fn from(e: OptimizingError) -> Self {
        let Some((status, r#type)) = e.http() else { return ApiError::internal(e) };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %e, "optimizing operation failed");
            return Self { status, r#type, message: generic_failure("internal server error") };
        }
        Self { status, r#type, message: e.to_string() }
    }
}

impl From<loch_table::TableError> for ApiError {
    /// Invalid input is the client's (400), a lost race a 409; the rest is the server's.
    fn from(e: loch_table::TableError) -> Self {
        match e {
            loch_table::TableError::Invalid(m) => ApiError::bad_request(m),
            loch_table::TableError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, "CommitFailedException", format!("conflict: {m}"))
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse::new(self.status.as_u16(), self.r#type, self.message);
        (self.status, axum::Json(body)).into_response()
    }
}

/// The answer when a handler panics: a generic 500 (the panic goes to the log).
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    ApiError::internal(format!("handler panicked: {what}")).into_response()
}

/// A JSON body; malformed JSON or an unknown update type is a 400 `ErrorModel`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read request body: {e}")))?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| ApiError::bad_request(format!("malformed request body at `{}`: {}", e.path(), e.inner())))?;
        de.end().map_err(|e| ApiError::bad_request(format!("malformed request body: {e}")))?;
        Ok(JsonBody(value))
    }
}

/// Path parameters; undecodable ones are a 400.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError::bad_request(format!("invalid path: {}", e.body_text())))
    }
}

/// Query parameters; invalid ones are a 400.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::bad_request(format!("invalid query: {}", e.body_text())))
    }
}

/// Answer for unknown routes.
pub async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

/// Answer for known routes called with the wrong method.
pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowedException",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
