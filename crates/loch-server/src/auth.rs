//! Bearer-token authentication and the OAuth2 token endpoint (`client_credentials` and token
//! exchange for refresh), as Iceberg REST clients use it.
//!
//! Off while no clients are configured. Tokens are random, stored by SHA-256 in the metadata
//! store (so every replica accepts them and restarts keep them), and cached for a short while.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use loch_meta::{MetaStore, TokenRecord, now_ms};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::AuthConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// How long a verified token is trusted without asking the database again.
const VERIFY_CACHE_TTL: Duration = Duration::from_secs(30);

/// Authentication state of the server.
#[derive(Debug)]
pub struct Auth {
    /// client id → SHA-256 of its secret.
    clients: HashMap<String, [u8; 32]>,
    token_ttl: Duration,
    store: MetaStore,
    verified: moka::sync::Cache<String, (String, i64)>,
    rate: TokenRate,
}

/// Token requests per minute, counted per client id (for known clients) or per address.
#[derive(Debug)]
struct TokenRate {
    per_minute: u32,
    windows: std::sync::Mutex<HashMap<String, (i64, u32)>>,
}

impl TokenRate {
    /// Counts a request of `key`; false when it is over the limit for the current minute.
    fn allow(&self, key: &str) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let minute = now_ms() / 60_000;
        let Ok(mut windows) = self.windows.lock() else { return true };
        if windows.len() > 10_000 {
            windows.retain(|_, (m, _)| *m == minute);
        }
        let entry = windows.entry(key.to_string()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_minute
    }
}

/// The client a request was authenticated as (absent when auth is off).
#[derive(Debug, Clone)]
pub struct Principal(pub String);

/// A successful token response.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    issued_token_type: &'static str,
}

/// An OAuth2 error response (RFC 6749 §5.2).
#[derive(Debug, Serialize)]
pub struct OAuthError {
    #[serde(skip)]
    status: StatusCode,
    error: &'static str,
    error_description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self { status, error, error_description: description.into() }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(&self)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("60"));
        }
        response
    }
}

const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn token_hash(token: &str) -> String {
    hex::encode(sha256(token.as_bytes()))
}

impl Auth {
    /// Authentication for the configured clients.
    pub fn new(config: &AuthConfig, store: MetaStore) -> Self {
        Self {
            clients: config.clients.iter().map(|c| (c.id.clone(), sha256(c.secret.as_bytes()))).collect(),
            token_ttl: config.token_ttl,
            store,
            verified: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(VERIFY_CACHE_TTL).build(),
            rate: TokenRate { per_minute: config.token_requests_per_minute, windows: Default::default() },
        }
    }

    /// True when requests need a token.
    pub fn enabled(&self) -> bool {
        !self.clients.is_empty()
    }

    async fn issue(&self, client_id: &str) -> Result<TokenResponse, OAuthError> {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        if self.enabled() {
            let issued_at = now_ms();
            let expires_at = issued_at + i64::try_from(self.token_ttl.as_millis()).unwrap_or(i64::MAX / 2);
            let record =
                TokenRecord { token_hash: token_hash(&token), client_id: client_id.to_string(), issued_at, expires_at };
            self.store.insert_token(&record).await.map_err(|e| {
                tracing::error!(error = %e, "cannot store token");
                OAuthError::new(StatusCode::INTERNAL_SERVER_ERROR, "invalid_request", "cannot issue a token now")
            })?;
        }
        Ok(TokenResponse {
            access_token: token,
            token_type: "bearer",
            expires_in: self.token_ttl.as_secs(),
            issued_token_type: ACCESS_TOKEN_TYPE,
        })
    }

    /// A token for the dashboard's own calls (its terminal's statements) when clients need
    /// one: issued to the first configured client, as the dashboard's administrator may do
    /// anything a client may. `None` while authentication is off.
    pub async fn dashboard_token(&self) -> Result<Option<String>, ApiError> {
        let Some(client) = self.clients.keys().min().cloned() else { return Ok(None) };
        let issued = self.issue(&client).await.map_err(|e| ApiError::internal(e.error_description))?;
        Ok(Some(issued.access_token))
    }

    /// The client a bearer token belongs to, if the token is valid.
    pub async fn verify(&self, token: &str) -> Result<String, ApiError> {
        let hash = token_hash(token);
        let now = now_ms();
        if let Some((client, expires_at)) = self.verified.get(&hash)
            && expires_at > now
        {
            return Ok(client);
        }
        let record = self.store.find_token(&hash, now).await.map_err(ApiError::internal)?;
        match record {
            // A client removed from the configuration loses its tokens.
            Some(r) if self.clients.contains_key(&r.client_id) => {
                self.verified.insert(hash, (r.client_id.clone(), r.expires_at));
                Ok(r.client_id)
            }
            _ => Err(ApiError::unauthorized("invalid or expired token")),
        }
    }

    /// Handles a token request body (form-encoded) with optional Basic credentials, from
    /// `peer`; each client (or, for ids nobody configured, each address) gets
    /// `auth.token-requests-per-minute` requests a minute.
    pub async fn token(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        peer: Option<std::net::IpAddr>,
    ) -> Result<TokenResponse, OAuthError> {
        let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
        let claimed = basic_credentials(headers).map(|(id, _)| id).or_else(|| form.get("client_id").cloned());
        let key = match claimed {
            Some(id) if self.clients.contains_key(&id) => format!("client {id}"),
            _ => format!("address {}", peer.map_or_else(|| "unknown".to_string(), |p| p.to_string())),
        };
        if !self.rate.allow(&key) {
            metrics::counter!("loch_auth_token_requests_limited_total").increment(1);
            return Err(OAuthError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                format!("more than {} token requests a minute; retry later", self.rate.per_minute),
            ));
        }
        let grant = form.get("grant_type").map(String::as_str).unwrap_or_default();
        match grant {
            "client_credentials" => {
                let (id, secret) = match basic_credentials(headers) {
                    Some(pair) => pair,
                    None => match (form.get("client_id"), form.get("client_secret")) {
                        (Some(id), Some(secret)) => (id.clone(), secret.clone()),
                        _ => {
                            return Err(OAuthError::new(
                                StatusCode::BAD_REQUEST,
                                "invalid_request",
                                "client_id and client_secret are required",
                            ));
                        }
                    },
                };
                if self.enabled() && self.clients.get(&id) != Some(&sha256(secret.as_bytes())) {
                    return Err(OAuthError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        "unknown client or wrong secret",
                    ));
                }
                self.issue(&id).await
            }
            "urn:ietf:params:oauth:grant-type:token-exchange" => {
                let subject = form.get("subject_token").ok_or_else(|| {
                    OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", "subject_token is required")
                })?;
                if !self.enabled() {
                    return self.issue("anonymous").await;
                }
                let client = self.verify(subject).await.map_err(|_| {
                    OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_grant", "subject token is invalid or expired")
                })?;
                self.issue(&client).await
            }
            "" => Err(OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required")),
            other => Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("unsupported grant_type {other}"),
            )),
        }
    }

    /// Deletes expired tokens; run periodically.
    pub async fn purge_expired(&self) {
        match self.store.purge_expired_tokens(now_ms()).await {
            Ok(n) if n > 0 => tracing::debug!(deleted = n, "purged expired tokens"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot purge expired tokens"),
        }
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Some((decode(id)?, decode(secret)?))
}

/// The bearer token of a request, if it has one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

/// Middleware: rejects requests without a valid bearer token while auth is enabled.
pub async fn require_token(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if !state.auth.enabled() {
        return next.run(request).await;
    }
    let Some(token) = bearer_token(request.headers()) else {
        return ApiError::unauthorized(
            "a bearer token is required; get one from POST /api/iceberg/rest/v1/oauth/tokens",
        )
        .into_response();
    };
    match state.auth.verify(token).await {
        Ok(client) => {
            request.extensions_mut().insert(Principal(client));
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}
