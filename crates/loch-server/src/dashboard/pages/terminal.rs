//! The SQL terminal in a page: an editor, run and stop, the log, and a result tab per
//! statement. The
//! script runs as a terminal session (the same as `POST /api/v1/terminal/sessions`); without
//! JavaScript the page shows the session as it is when loaded, with JavaScript it refreshes
//! itself until the script ends.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use maud::html;
use serde::Deserialize;

use crate::dashboard::layout::{Nav, duration, seg};
use crate::dashboard::{CsrfForm, PageError, Viewer, render, see_other};
use crate::error::{ApiPath, JsonBody};
use crate::state::AppState;
use crate::terminal::{self, CreateSession, RunStatus};

/// The page's script: refresh while the session runs.
pub const SCRIPT: &str = include_str!("terminal.js");

/// Example snippets offered under the editor.
const EXAMPLES: [(&str, &str); 5] = [
    ("Namespaces and tables", "SHOW NAMESPACES;\nSHOW TABLES;"),
    (
        "Create a keyed table",
        "CREATE NAMESPACE IF NOT EXISTS demo;\nCREATE TABLE demo.users (id BIGINT, name STRING, PRIMARY KEY (id))\n  TBLPROPERTIES ('write.upsert.enabled' = 'true');\nINSERT INTO demo.users VALUES (1, 'ann'), (2, 'bob');\nSELECT * FROM demo.users;",
    ),
    ("Snapshots of a table", "SELECT snapshot_id, committed_at, operation FROM demo.users$snapshots;"),
    ("Optimize now", "OPTIMIZE demo.users;"),
    ("Expire snapshots", "EXPIRE SNAPSHOTS demo.users RETAIN 5;"),
];

/// The page's query.
#[derive(Debug, Deserialize)]
pub struct TerminalQuery {
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    example: Option<usize>,
    /// The statement whose result tab is open (1-based).
    #[serde(default)]
    result: Option<usize>,
}

/// `GET /terminal`.
pub async fn page(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(query): Query<TerminalQuery>,
) -> Result<Response, PageError> {
    let catalogs = crate::management::list_catalogs(State(state.clone())).await?.0;
    let session = match &query.session {
        Some(id) => Some(terminal::get_session(State(state.clone()), ApiPath(id.clone())).await?.0),
        None => None,
    };
    let script = match (&session, query.example.and_then(|i| EXAMPLES.get(i))) {
        (_, Some((_, example))) => example.to_string(),
        (Some(s), None) => s.statements.iter().map(|st| format!("{};", st.sql)).collect::<Vec<_>>().join("\n"),
        (None, None) => String::new(),
    };
    let running = session.as_ref().is_some_and(|s| s.status == RunStatus::Running);
    // The result tab open: the one asked for, else the last statement with rows, else the last.
    let open = session.as_ref().and_then(|s| {
        let asked = query.result.and_then(|r| r.checked_sub(1)).filter(|&i| i < s.statements.len());
        asked
            .or_else(|| s.statements.iter().rposition(|st| !st.columns.is_empty()))
            .or_else(|| s.statements.len().checked_sub(1))
    });
    // The session's catalog, else the server's default one.
    let chosen = session.as_ref().map_or_else(|| state.default_catalog.to_string(), |s| s.catalog.clone());
    let body = html! {
        h1 { "Terminal" }
        form.stack method="post" action="/terminal" {
            (viewer.csrf_field())
            div.row {
                label { "Catalog"
                    select name="catalog" {
                        @for c in &catalogs {
                            @if c.name == chosen { option value=(c.name) selected { (c.name) } }
                            @else { option value=(c.name) { (c.name) } }
                        }
                    }
                }
                label.check { input type="checkbox" name="stop_on_error" value="true" checked; "Stop at the first error" }
            }
            label { "SQL (statements end with ;)" textarea name="script" id="script" rows="10" spellcheck="false" { (script) } }
            div { button.primary type="submit" { "Run" } }
        }
        @if let Some(s) = &session {
            section id="session" data-session=(s.session_id) data-running=(if running { "true" } else { "false" }) {
                h2 { "Session " code { (s.session_id) } " — " span class={ "badge " (status(s.status)) } { (status(s.status)) } }
                @if running {
                    form method="post" action={ "/terminal/" (s.session_id) "/stop" } {
                        (viewer.csrf_field())
                        button.danger type="submit" { "Stop" }
                    }
                }
                h3 { "Log" }
                pre { @for line in &s.logs { (line) "\n" } }
                @if let Some(open) = open {
                    nav aria-label="Results" {
                        ul.tabs {
                            @for (i, run) in s.statements.iter().enumerate() {
                                @let label = format!("{} · {}", i + 1, status(run.status));
                                @let href = format!("/terminal?session={}&result={}", seg(&s.session_id), i + 1);
                                li { @if i == open { a href=(href) aria-current="page" { (label) } } @else { a href=(href) { (label) } } }
                            }
                        }
                    }
                    @if let Some(run) = s.statements.get(open) {
                        section.card {
                            h3 { "Statement " (open + 1) " (line " (run.line) ") — " span class={ "badge " (status(run.status)) } { (status(run.status)) }
                                @if let Some(ms) = run.duration_ms { " " span.muted { (duration(ms as i64)) } } }
                            pre { (run.sql) }
                            @if let Some(m) = &run.message { p { (m) } }
                            @if !run.columns.is_empty() {
                                div.scroll { table {
                                    thead { tr { @for c in &run.columns { th scope="col" { (c) } } } }
                                    tbody { @for row in &run.rows { tr { @for v in row { td { (v.as_deref().unwrap_or("NULL")) } } } } }
                                } }
                                @if run.truncated { p.muted { "Only the first " (run.rows.len()) " rows are shown (terminal.result.limit)." } }
                            }
                        }
                    }
                }
            }
            script src="/static/terminal.js" {}
        }
        h2 { "Examples" }
        ul { @for (i, (label, _)) in EXAMPLES.iter().enumerate() { li { a href={ "/terminal?example=" (i) } { (label) } } } }
    };
    Ok(render(&viewer, "Terminal", Nav::Terminal, body))
}

fn status(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Pending => "pending",
        RunStatus::Running => "running",
        RunStatus::Finished => "finished",
        RunStatus::Failed => "failed",
        RunStatus::Canceled => "canceled",
    }
}

/// The run form's fields.
#[derive(Debug, Deserialize)]
pub struct RunForm {
    #[serde(default)]
    csrf: String,
    catalog: String,
    script: String,
    #[serde(default)]
    stop_on_error: Option<String>,
}

/// `POST /terminal`: starts the script as a session and shows it.
pub async fn run(
    viewer: Viewer,
    State(state): State<AppState>,
    Form(form): Form<RunForm>,
) -> Result<Response, PageError> {
    viewer.check(&form.csrf)?;
    let request = CreateSession {
        catalog: form.catalog,
        script: form.script,
        stop_on_error: Some(form.stop_on_error.as_deref() == Some("true")),
    };
    // With auth.clients on, the statements call the server with a token of their own.
    let mut headers = HeaderMap::new();
    if let Some(token) = state.auth.dashboard_token().await?
        && let Ok(value) = axum::http::HeaderValue::from_str(&format!("Bearer {token}"))
    {
        headers.insert(axum::http::header::AUTHORIZATION, value);
    }
    let created = terminal::create_session(State(state), headers, JsonBody(request)).await?.1;
    Ok(see_other(&format!("/terminal?session={}", crate::dashboard::layout::seg(&created.0.session_id))))
}

/// `POST /terminal/{id}/stop`.
pub async fn stop(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    viewer.check(&form.csrf)?;
    let _session = terminal::stop_session(State(state), ApiPath(id.clone())).await?;
    Ok(see_other(&format!("/terminal?session={}", crate::dashboard::layout::seg(&id))))
}

/// `GET /terminal/{id}/state`: the session's status, for the page's refresh.
pub async fn state(
    _viewer: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let session = terminal::get_session(State(state), ApiPath(id)).await?.0;
    Ok(Json(serde_json::json!({ "status": status(session.status) })).into_response())
}
