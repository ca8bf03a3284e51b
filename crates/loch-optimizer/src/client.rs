//! The optimizer protocol over HTTP (`loch optimizer`).

use std::time::Duration;

use async_trait::async_trait;
use loch_api::ErrorResponse;
use loch_api::optimizer::{
    AckRequest, CompleteRequest, PollRequest, PollResponse, ProtocolError, RegisterRequest, RegisterResponse,
    TaskAssignment, TaskKey, TouchRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ExecuteError, Result};
use crate::worker::Coordinator;

/// How an optimizer proves itself to a server with authentication on.
#[derive(Clone)]
pub enum Credential {
    /// A bearer token issued by the server.
    Token(String),
    /// An OAuth2 client (`auth.clients` on the server); tokens are fetched and renewed.
    Client {
        /// Client id.
        id: String,
        /// Client secret.
        secret: String,
    },
}

impl Credential {
    /// `id:secret` is a client credential, anything else a bearer token.
    pub fn parse(text: &str) -> Self {
        match text.split_once(':') {
            Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
                Credential::Client { id: id.to_string(), secret: secret.to_string() }
            }
            _ => Credential::Token(text.to_string()),
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(***)"),
            Credential::Client { id, .. } => write!(f, "Client({id}:***)"),
        }
    }
}

/// Talks to `loch serve` at a base URL (`http://host:1630`).
#[derive(Debug)]
pub struct HttpCoordinator {
    ams: String,
    base: String,
    client: reqwest::Client,
    credential: Option<Credential>,
    bearer: tokio::sync::RwLock<Option<String>>,
}

impl HttpCoordinator {
    /// A client of the server at `ams`; `credential` when the server has authentication on.
    pub fn new(ams: &str, credential: Option<Credential>) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ExecuteError::Server(format!("http client: {e}")))?;
        let ams = ams.trim_end_matches('/').to_string();
        let bearer = match &credential {
            Some(Credential::Token(token)) => Some(token.clone()),
            _ => None,
        };
        Ok(Self {
            base: format!("{ams}/api/optimizer/v1"),
            ams,
            client,
            credential,
            bearer: tokio::sync::RwLock::new(bearer),
        })
    }

    /// The bearer token to send, fetching one for a client credential when needed.
    async fn bearer(&self, renew: bool) -> Result<Option<String>> {
        let Some(Credential::Client { id, secret }) = &self.credential else {
            return Ok(self.bearer.read().await.clone());
        };
        if !renew && let Some(token) = self.bearer.read().await.clone() {
            return Ok(Some(token));
        }
        let form =
            [("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret), ("scope", "catalog")];
        let url = format!("{}/api/iceberg/rest/v1/oauth/tokens", self.ams);
        let response =
            self.client.post(url).form(&form).send().await.map_err(|e| ExecuteError::Server(format!("token: {e}")))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.map_err(|e| ExecuteError::Server(format!("token: {e}")))?;
        let token = match body["access_token"].as_str() {
            Some(token) if status.is_success() => token.to_string(),
            _ => return Err(ExecuteError::Rejected(format!("the server refused the credential: {body}"))),
        };
        *self.bearer.write().await = Some(token.clone());
        Ok(Some(token))
    }

    async fn call<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> Result<Option<R>> {
        let mut renew = false;
        loop {
            let mut request = self.client.post(format!("{}/{path}", self.base)).json(body);
            if let Some(token) = self.bearer(renew).await? {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.map_err(|e| ExecuteError::Server(format!("{path}: {e}")))?;
            // An expired token is renewed once per call.
            if response.status() == reqwest::StatusCode::UNAUTHORIZED
                && !renew
                && matches!(self.credential, Some(Credential::Client { .. }))
            {
                renew = true;
                continue;
            }
            return Self::answer(path, response).await;
        }
    }

    async fn answer<R: DeserializeOwned>(path: &str, response: reqwest::Response) -> Result<Option<R>> {
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
        let (error_type, message) = serde_json::from_slice::<ErrorResponse>(&bytes)
            .map(|e| (e.error.r#type, e.error.message))
            .unwrap_or_else(|_| (String::new(), String::from_utf8_lossy(&bytes).into_owned()));
        Err(ProtocolError::from_answer(status, &error_type, format!("{path}: {status}: {message}")).into())
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
