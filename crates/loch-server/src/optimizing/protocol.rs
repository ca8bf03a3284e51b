//! The optimizer protocol under `/api/optimizer/v1`: `register`, `touch`, `poll`, `ack`,
//! `complete` (JSON, POST). An unknown or expired token is a 410 so the optimizer registers
//! again; a stale acknowledgement or result is a 409 the optimizer drops.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use loch_api::optimizer::{
    AckRequest, CompleteRequest, PollRequest, PollResponse, RegisterRequest, RegisterResponse, TouchRequest,
};
use serde_json::{Value, json};

use crate::error::{ApiError, JsonBody};
use crate::state::AppState;

/// Routes of the optimizer protocol (they need a token while authentication is on).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/optimizer/v1/register", post(register))
        .route("/api/optimizer/v1/touch", post(touch))
        .route("/api/optimizer/v1/poll", post(poll))
        .route("/api/optimizer/v1/ack", post(ack))
        .route("/api/optimizer/v1/complete", post(complete))
}

async fn register(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<RegisterRequest>,
) -> Result<Json<RegisterResponse>, ApiError> {
    Ok(Json(state.optimizing.register(&request, false).await?))
}

async fn touch(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<TouchRequest>,
) -> Result<Json<Value>, ApiError> {
    state.optimizing.touch(&request.token).await?;
    Ok(Json(json!({})))
}

async fn poll(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<PollRequest>,
) -> Result<Json<PollResponse>, ApiError> {
    let task = state.optimizing.poll(&request.token, request.thread_id).await?;
    Ok(Json(PollResponse { task }))
}

async fn ack(State(state): State<AppState>, JsonBody(request): JsonBody<AckRequest>) -> Result<Json<Value>, ApiError> {
    state.optimizing.ack(&request.token, request.thread_id, &request.key).await?;
    Ok(Json(json!({})))
}

async fn complete(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CompleteRequest>,
) -> Result<Json<Value>, ApiError> {
    let result = match (request.output, request.error) {
        (Some(output), None) => Ok(output),
        (None, Some(error)) => Err(error),
        _ => return Err(ApiError::bad_request("a completion carries exactly one of `output` and `error`")),
    };
    state.optimizing.complete(&request.token, request.thread_id, &request.key, result).await?;
    Ok(Json(json!({})))
}
