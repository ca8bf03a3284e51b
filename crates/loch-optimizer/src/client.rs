//! The optimizer protocol over HTTP (`loch optimizer`).

use std::time::Duration;

use async_trait::async_trait;
use loch_api::ErrorResponse;
use loch_api::optimizer::{
    AckRequest, CompleteRequest, PollRequest, PollResponse, RegisterRequest, RegisterResponse, TaskAssignment, TaskKey,
    TouchRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ExecuteError, Result};
use crate::worker::Coordinator;

/// HTTP status with which the server says it does not know an optimizer token.
pub const UNKNOWN_OPTIMIZER_STATUS: u16 = 410;

/// Talks to `loch serve` at a base URL (`http://host:1630`).
#[derive(Debug, Clone)]
pub struct HttpCoordinator {
    base: String,
    client: reqwest::Client,
    auth: Option<String>,
}

impl HttpCoordinator {
    /// A client of the server at `ams`; `auth` is a bearer token when the server has
    /// authentication on.
    pub fn new(ams: &str, auth: Option<String>) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ExecuteError::Server(format!("http client: {e}")))?;
        Ok(Self { base: format!("{}/api/optimizer/v1", ams.trim_end_matches('/')), client, auth })
    }

    async fn call<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> Result<Option<R>> {
        let mut request = self.client.post(format!("{}/{path}", self.base)).json(body);
        if let Some(auth) = &self.auth {
            request = request.bearer_auth(auth);
        }
        let response = request.send().await.map_err(|e| ExecuteError::Server(format!("{path}: {e}")))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| ExecuteError::Server(format!("{path}: {e}")))?;
        if (200..300).contains(&status) {
            if bytes.is_empty() {
                return Ok(None);
            }
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ExecuteError::Server(format!("{path}: bad response: {e}")));
        }
        let message = serde_json::from_slice::<ErrorResponse>(&bytes)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        Err(match status {
            UNKNOWN_OPTIMIZER_STATUS => ExecuteError::Unregistered,
            400..=499 => ExecuteError::Rejected(format!("{path}: {message}")),
            _ => ExecuteError::Server(format!("{path}: {status}: {message}")),
        })
    }
}

#[async_trait]
impl Coordinator for HttpCoordinator {
    async fn register(&self, request: &RegisterRequest) -> Result<RegisterResponse> {
        self.call("register", request).await?.ok_or_else(|| ExecuteError::Server("register: empty response".into()))
    }

    async fn touch(&self, token: &str) -> Result<()> {
        self.call::<_, serde_json::Value>("touch", &TouchRequest { token: token.to_string() }).await.map(|_| ())
    }

    async fn poll(&self, token: &str, thread_id: u32) -> Result<Option<TaskAssignment>> {
        let response: Option<PollResponse> =
            self.call("poll", &PollRequest { token: token.to_string(), thread_id }).await?;
        Ok(response.and_then(|r| r.task))
    }

    async fn ack(&self, token: &str, thread_id: u32, key: TaskKey) -> Result<()> {
        self.call::<_, serde_json::Value>("ack", &AckRequest { token: token.to_string(), thread_id, key })
            .await
            .map(|_| ())
    }

    async fn complete(&self, request: CompleteRequest) -> Result<()> {
        self.call::<_, serde_json::Value>("complete", &request).await.map(|_| ())
    }
}
