//! SQL terminal sessions over HTTP (the dashboard's terminal, Amoro's `/terminal` API): a script
//! runs in the background statement by statement; clients poll the session for each
//! statement's status, log and first rows, and may stop it. Sessions live in memory, at most
//! `terminal.max-sessions` at once, and go after `terminal.session.timeout` without a look.
//!
//! A session runs its statements as the client that started it: through the server's own
//! HTTP APIs on loopback, with the client's token, so it can do exactly what the client could.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use loch_sql::{HttpBackend, Output, SqlEngine, parse_script};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::TerminalConfig;
use crate::error::{ApiError, ApiPath, JsonBody};
use crate::state::AppState;

/// Routes of terminal sessions (need a token while authentication is on).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/terminal/sessions", post(create_session))
        .route("/api/v1/terminal/sessions/{id}", get(get_session))
        .route("/api/v1/terminal/sessions/{id}/stop", post(stop_session))
}

/// A script to run.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateSession {
    /// Catalog the statements start in.
    pub catalog: String,
    /// Statements separated by `;`.
    pub script: String,
    /// Stop at the first failing statement (default: `terminal.stop-on-error`).
    #[serde(default)]
    pub stop_on_error: Option<bool>,
}

/// A session's id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedSession {
    /// Poll `GET /api/v1/terminal/sessions/{session_id}`.
    pub session_id: String,
}

/// Where a session or statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Not started yet.
    Pending,
    /// Running now.
    Running,
    /// Done.
    Finished,
    /// Failed (see its error).
    Failed,
    /// Stopped by a client.
    Canceled,
}

/// One statement of a session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatementRun {
    /// Its text.
    pub sql: String,
    /// Its line in the script.
    pub line: u64,
    /// Where it is.
    pub status: RunStatus,
    /// How long it ran, in milliseconds.
    pub duration_ms: Option<u64>,
    /// What it answered in one line, or why it failed.
    pub message: Option<String>,
    /// Column names of its rows.
    pub columns: Vec<String>,
    /// Its first rows (up to `terminal.result.limit`), each value as text (`null` for NULL).
    pub rows: Vec<Vec<Option<String>>>,
    /// More rows were there than the limit.
    pub truncated: bool,
}

/// A session as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Session {
    /// Its id.
    pub session_id: String,
    /// Catalog it started in.
    pub catalog: String,
    /// Where the script is.
    pub status: RunStatus,
    /// Whether it stops at the first failing statement.
    pub stop_on_error: bool,
    /// Its statements in order.
    pub statements: Vec<StatementRun>,
    /// One line per event (statement started, finished, failed).
    pub logs: Vec<String>,
}

struct Entry {
    session: Session,
    last_seen: Instant,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The server's terminal sessions.
pub struct Terminal {
    config: TerminalConfig,
    /// Statements run here, not on the server's runtime: a heavy query must not starve the
    /// server's requests (a stop among them).
    runtime: Option<tokio::runtime::Runtime>,
    /// The server's own base URL (loopback), known once it listens.
    url: std::sync::OnceLock<String>,
    sessions: Mutex<HashMap<String, Entry>>,
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Dropped inside the server's runtime, which may not block on this one.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal").field("config", &self.config).field("url", &self.url).finish_non_exhaustive()
    }
}

impl Terminal {
    /// Sessions of a server (see [`Terminal::listening_on`]).
    pub fn new(config: TerminalConfig) -> std::io::Result<Arc<Self>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads.max(1))
            .thread_name("loch-terminal")
            .enable_all()
            .build()?;
        Ok(Arc::new(Self {
            config,
            runtime: Some(runtime),
            url: std::sync::OnceLock::new(),
            sessions: Mutex::new(HashMap::new()),
        }))
    }

    /// Where the server listens: sessions reach its APIs there, on loopback when it listens on
    /// every address.
    pub fn listening_on(&self, addr: std::net::SocketAddr) {
        let ip = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => std::net::IpAddr::from([127, 0, 0, 1]),
            ip if ip.is_unspecified() => std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let _ = self.url.set(format!("http://{}", std::net::SocketAddr::new(ip, addr.port())));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops sessions idle longer than the timeout (stopping any still running).
    fn expire(&self) {
        let timeout = self.config.session.timeout;
        let mut sessions = self.lock();
        sessions.retain(|_, entry| {
            let keep = entry.last_seen.elapsed() < timeout;
            if !keep && let Some(task) = entry.task.take() {
                task.abort();
            }
            keep
        });
    }

    /// Expires idle sessions, then marks session `id` seen, applies `f` to it and answers it.
    fn visit(&self, id: &str, f: impl FnOnce(&mut Entry)) -> Result<Session, ApiError> {
        self.expire();
        let mut sessions = self.lock();
        let entry = sessions.get_mut(id).ok_or_else(|| not_found(id))?;
        entry.last_seen = Instant::now();
        f(entry);
        Ok(entry.session.clone())
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Session)) {
        if let Some(entry) = self.lock().get_mut(id) {
            f(&mut entry.session);
        }
    }
}

fn now_text() -> String {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO);
    format!("{:.3}", since.as_secs_f64())
}

/// Rows of an answer as text, at most `limit`.
fn rows_of(output: &Output, limit: usize) -> (Vec<String>, Vec<Vec<Option<String>>>, bool) {
    let columns = output.schema.fields().iter().map(|f| f.name().clone()).collect();
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    let mut truncated = output.truncated;
    'batches: for batch in &output.batches {
        let formatters: Vec<_> =
            batch.columns().iter().filter_map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok()).collect();
        for row in 0..batch.num_rows() {
            if rows.len() == limit {
                truncated = true;
                break 'batches;
            }
            let values = batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(c, f)| if c.is_null(row) { None } else { Some(f.value(row).to_string()) })
                .collect();
            rows.push(values);
        }
    }
    (columns, rows, truncated)
}

async fn run_session(terminal: Arc<Terminal>, id: String, mut engine: SqlEngine, statements: Vec<loch_sql::Located>) {
    let limit = terminal.config.result.limit;
    let stop_on_error = terminal.lock().get(&id).is_some_and(|e| e.session.stop_on_error);
    let mut failed = false;
    for (i, statement) in statements.iter().enumerate() {
        terminal.update(&id, |s| {
            s.statements[i].status = RunStatus::Running;
            s.logs.push(format!("{} statement {} (line {}) started", now_text(), i + 1, statement.line));
        });
        let started = Instant::now();
        let result = engine.execute(statement, Some(limit)).await;
        let elapsed = started.elapsed().as_millis() as u64;
        terminal.update(&id, |s| {
            let run = &mut s.statements[i];
            run.duration_ms = Some(elapsed);
            match result {
                Ok(output) => {
                    let (columns, rows, truncated) = rows_of(&output, limit);
                    run.status = RunStatus::Finished;
                    run.message = Some(output.summary.clone());
                    run.columns = columns;
                    run.rows = rows;
                    run.truncated = truncated;
                    s.logs.push(format!("{} statement {} finished: {}", now_text(), i + 1, output.summary));
                }
                Err(e) => {
                    run.status = RunStatus::Failed;
                    run.message = Some(e.to_string());
                    s.logs.push(format!("{} statement {} failed: {e}", now_text(), i + 1));
                    failed = true;
                }
            }
        });
        if failed && stop_on_error {
            terminal.update(&id, |s| s.logs.push(format!("{} stopped at the first error (stop-on-error)", now_text())));
            break;
        }
    }
    terminal.update(&id, |s| {
        s.status = if failed { RunStatus::Failed } else { RunStatus::Finished };
    });
    if let Some(entry) = terminal.lock().get_mut(&id) {
        entry.task = None;
    }
}

/// Start running a script; answers at once with the session's id.
#[utoipa::path(post, path = "/api/v1/terminal/sessions", tag = "terminal", request_body = CreateSession,
    responses((status = 201, body = CreatedSession), (status = 400, body = loch_api::ErrorResponse),
        (status = 404, body = loch_api::ErrorResponse, description = "No such catalog"),
        (status = 429, body = loch_api::ErrorResponse)))]
pub async fn create_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CreateSession>,
) -> Result<(StatusCode, Json<CreatedSession>), ApiError> {
    let terminal = state.terminal.clone();
    terminal.expire();
    state.catalog(&request.catalog).await?;
    let statements = parse_script(&request.script).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if statements.is_empty() {
        return Err(ApiError::bad_request("the script holds no statement"));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let url = terminal.url.get().ok_or_else(|| ApiError::internal("the server is not listening yet"))?;
    let backend = HttpBackend::new(url, token).map_err(ApiError::internal)?;
    let engine = SqlEngine::new(Arc::new(backend), request.catalog.clone());
    let id = uuid::Uuid::new_v4().to_string();
    let stop_on_error = request.stop_on_error.unwrap_or(terminal.config.stop_on_error);
    let session = Session {
        session_id: id.clone(),
        catalog: request.catalog.clone(),
        status: RunStatus::Running,
        stop_on_error,
        statements: statements
            .iter()
            .map(|s| StatementRun {
                sql: s.text.clone(),
                line: s.line,
                status: RunStatus::Pending,
                duration_ms: None,
                message: None,
                columns: Vec::new(),
                rows: Vec::new(),
                truncated: false,
            })
            .collect(),
        logs: Vec::new(),
    };
    {
        let mut sessions = terminal.lock();
        if sessions.len() >= terminal.config.max_sessions {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManySessions",
                format!(
                    "{} terminal sessions are open (terminal.max-sessions); wait for one to expire",
                    sessions.len()
                ),
            ));
        }
        sessions.insert(id.clone(), Entry { session, last_seen: Instant::now(), task: None });
    }
    let runtime = terminal.runtime.as_ref().ok_or_else(|| ApiError::internal("the terminal is shutting down"))?;
    let task = runtime.spawn(run_session(terminal.clone(), id.clone(), engine, statements));
    if let Some(entry) = terminal.lock().get_mut(&id)
        && entry.session.status == RunStatus::Running
    {
        entry.task = Some(task);
    }
    tracing::info!(session = %id, catalog = %request.catalog, "terminal session started");
    Ok((StatusCode::CREATED, Json(CreatedSession { session_id: id })))
}

/// A session: its status, each statement's status, message and first rows, and its log.
#[utoipa::path(get, path = "/api/v1/terminal/sessions/{id}", tag = "terminal",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = Session), (status = 404, body = loch_api::ErrorResponse)))]
pub async fn get_session(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, ApiError> {
    state.terminal.visit(&id, |_| {}).map(Json)
}

/// Stop a session: its running statement is cancelled and the rest do not run.
#[utoipa::path(post, path = "/api/v1/terminal/sessions/{id}/stop", tag = "terminal",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = Session), (status = 404, body = loch_api::ErrorResponse)))]
pub async fn stop_session(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, ApiError> {
    state
        .terminal
        .visit(&id, |entry| {
            let Some(task) = entry.task.take() else { return };
            task.abort();
            let session = &mut entry.session;
            session.status = RunStatus::Canceled;
            for run in &mut session.statements {
                if matches!(run.status, RunStatus::Running | RunStatus::Pending) {
                    run.status = RunStatus::Canceled;
                }
            }
            session.logs.push(format!("{} stopped by a client", now_text()));
            tracing::info!(session = %session.session_id, "terminal session stopped");
        })
        .map(Json)
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no terminal session {id} (sessions expire after terminal.session.timeout)"))
}
