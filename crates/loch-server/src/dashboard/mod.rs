//! The web dashboard at `/`: server-rendered pages (maud, compiled into the binary), charts as
//! SVG, forms that work without JavaScript. Every page and form needs a login
//! (`dashboard.admin-username` / `dashboard.admin-password`), every form a CSRF token; the
//! default password is only accepted on a loopback bind.

pub mod cache;
pub mod chart;
pub mod layout;
pub mod pages;
pub mod session;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, SET_COOKIE, X_FRAME_OPTIONS};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, middleware};
use maud::{Markup, html};
use serde::Deserialize;

use crate::config::{Config, DEFAULT_ADMIN_PASSWORD, DashboardConfig};
use crate::error::ApiError;
use crate::state::AppState;
pub use layout::Viewer;
use session::Sessions;

/// The dashboard's settings and logins.
#[derive(Debug)]
pub struct Dashboard {
    config: DashboardConfig,
    sessions: Sessions,
    /// Why the dashboard does not serve (off, or a default password on a public bind).
    refused: Option<String>,
    /// The effective configuration with secrets masked, for the settings page.
    settings: serde_json::Value,
    /// File lists and old metadata, by the immutable file they came from.
    pub cache: cache::PageCache,
}

impl Dashboard {
    /// The dashboard of a server started with `config`.
    pub fn new(config: &Config) -> Self {
        let dashboard = &config.dashboard;
        let refused = if !dashboard.enabled {
            Some("the dashboard is off (dashboard.enabled is false)".to_string())
        } else if !config.bind.ip().is_loopback() && dashboard.admin_password == DEFAULT_ADMIN_PASSWORD {
            Some(format!(
                "the dashboard is off: Loch listens on {}, which other hosts can reach, and dashboard.admin-password is still the default; set it (LOCH_DASHBOARD_ADMIN__PASSWORD) and restart",
                config.bind
            ))
        } else {
            None
        };
        if let Some(reason) = &refused {
            tracing::warn!("{reason}");
        }
        Self {
            config: dashboard.clone(),
            sessions: Sessions::new(dashboard.session_timeout),
            refused,
            settings: masked_settings(config),
            cache: cache::PageCache::default(),
        }
    }

    /// The effective configuration with every secret masked.
    pub fn settings(&self) -> &serde_json::Value {
        &self.settings
    }
}

/// What replaces a secret on the settings page.
pub const MASK: &str = "******";

/// The configuration as JSON with passwords, secrets and credentials in URLs masked.
fn masked_settings(config: &Config) -> serde_json::Value {
    fn mask(key: &str, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    mask(k, v);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items.iter_mut() {
                    mask(key, item);
                }
            }
            serde_json::Value::String(text) => {
                let secret = ["password", "secret", "key", "credential"].iter().any(|s| key.contains(s));
                if secret && !text.is_empty() {
                    *text = MASK.to_string();
                } else if key == "clients" {
                    if let Some((id, _)) = text.split_once(':') {
                        *text = format!("{id}:{MASK}");
                    }
                } else if let Ok(mut url) = url::Url::parse(text)
                    && url.password().is_some()
                {
                    let _ = url.set_password(Some(MASK));
                    *text = url.to_string();
                }
            }
            _ => {}
        }
    }
    let mut value = serde_json::to_value(config).unwrap_or(serde_json::Value::Null);
    mask("", &mut value);
    value
}

/// Routes of the dashboard (outside the API's token check: pages need a login instead).
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview::page))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/static/dashboard.css", get(css))
        .route("/static/terminal.js", get(terminal_js))
        .route("/catalogs", get(pages::catalogs::list).post(pages::catalogs::create))
        .route("/catalogs/{name}", get(pages::catalogs::show).post(pages::catalogs::edit))
        .route("/catalogs/{name}/delete", post(pages::catalogs::delete))
        .route("/tables", get(pages::tables::explorer))
        .route("/tables/{catalog}/{namespace}/{table}", get(pages::table::page))
        .route("/tables/{catalog}/{namespace}/{table}/processes/{id}/cancel", post(pages::table::cancel_process))
        .route("/tables/{catalog}/{namespace}/{table}/maintenance/{action}", post(pages::table::run_maintenance))
        .route("/optimizing", get(pages::optimizing::page))
        .route("/optimizing/groups", post(pages::optimizing::create_group))
        .route("/optimizing/groups/{name}", post(pages::optimizing::edit_group))
        .route("/optimizing/groups/{name}/delete", post(pages::optimizing::delete_group))
        .route("/optimizing/groups/{name}/optimizers/{id}/release", post(pages::optimizing::release_optimizer))
        .route("/terminal", get(pages::terminal::page).post(pages::terminal::run))
        .route("/terminal/{id}/stop", post(pages::terminal::stop))
        .route("/terminal/{id}/state", get(pages::terminal::state))
        .route("/settings", get(pages::settings::page))
        .layer(middleware::from_fn_with_state(state, page_headers))
}

/// Headers of every dashboard answer: no framing, scripts and styles only from the server
/// itself, nothing cached.
async fn page_headers(State(_): State<AppState>, request: axum::extract::Request, next: middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.entry(CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let dashboard = &state.dashboard;
        if let Some(reason) = &dashboard.refused {
            return Err(PageError::new(StatusCode::SERVICE_UNAVAILABLE, reason.clone()).into_response());
        }
        match dashboard.sessions.of_request(&parts.headers) {
            Some((_, session)) => Ok(Viewer { user: session.user, csrf: session.csrf }),
            None => {
                let next = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let target = if parts.method == axum::http::Method::GET {
                    format!("/login?next={}", layout::seg(next))
                } else {
                    "/login".to_string()
                };
                Err(see_other(&target))
            }
        }
    }
}

impl Viewer {
    /// Refuses a form whose CSRF token is not this session's.
    pub fn check(&self, csrf: &str) -> Result<(), PageError> {
        if session::same_secret(csrf, &self.csrf) {
            Ok(())
        } else {
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is not this session's (a stale page or a forged request); reload the page and send it again",
            ))
        }
    }
}

/// A form that carries nothing but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    #[serde(default)]
    pub csrf: String,
}

/// A page that could not be shown: its status and why, as a page.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    /// An error page with `status` saying `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        Self { status: e.status(), message: e.message().to_string() }
    }
}

impl From<loch_catalog::CatalogError> for PageError {
    fn from(e: loch_catalog::CatalogError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<loch_optimizing::OptimizingError> for PageError {
    fn from(e: loch_optimizing::OptimizingError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = layout::bare_page(
            title,
            html! {
                h1 { (title) }
                (layout::notice("error", &self.message))
                p { a href="/" { "Back to the overview" } }
            },
        );
        (self.status, body).into_response()
    }
}

/// A `303 See Other` to `location` (after a form, or to the login).
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// Query of the login page.
#[derive(Debug, Deserialize)]
struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    failed: Option<String>,
}

/// Where a login may go next: a path of this server, nothing else.
fn local_target(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

async fn login_form(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<LoginQuery>,
) -> Response {
    if let Some(reason) = &state.dashboard.refused {
        return PageError::new(StatusCode::SERVICE_UNAVAILABLE, reason.clone()).into_response();
    }
    let next = local_target(query.next.as_deref());
    layout::bare_page(
        "Log in",
        html! {
            h1 { "Log in to Loch" }
            @if query.failed.is_some() { (layout::notice("error", "Wrong user name or password.")) }
            form.stack method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label { "User name" input type="text" name="username" autocomplete="username" required autofocus; }
                label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                button.primary type="submit" { "Log in" }
            }
        },
    )
    .into_response()
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let dashboard = &state.dashboard;
    if let Some(reason) = &dashboard.refused {
        return PageError::new(StatusCode::SERVICE_UNAVAILABLE, reason.clone()).into_response();
    }
    let next = local_target(form.next.as_deref());
    let user_ok = session::same_secret(&form.username, &dashboard.config.admin_username);
    let password_ok = session::same_secret(&form.password, &dashboard.config.admin_password);
    if !(user_ok && password_ok) {
        tracing::warn!(user = %form.username, "dashboard login refused");
        // A pause per failure slows guessing.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        return see_other(&format!("/login?failed=1&next={}", layout::seg(&next)));
    }
    let id = dashboard.sessions.start(&form.username);
    tracing::info!(user = %form.username, "dashboard login");
    let mut response = see_other(&next);
    if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(&id)) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

async fn logout(State(state): State<AppState>, headers: axum::http::HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    if let Some((id, session)) = state.dashboard.sessions.of_request(&headers) {
        if !session::same_secret(&form.csrf, &session.csrf) {
            return PageError::new(StatusCode::FORBIDDEN, "the logout form's CSRF token is not this session's")
                .into_response();
        }
        state.dashboard.sessions.end(&id);
    }
    let mut response = see_other("/login");
    if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie("")) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

async fn css() -> Response {
    static_file("text/css; charset=utf-8", layout::CSS)
}

async fn terminal_js() -> Response {
    static_file("text/javascript; charset=utf-8", pages::terminal::SCRIPT)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    response
}

/// Renders a page for `viewer`.
pub fn render(viewer: &Viewer, title: &str, nav: layout::Nav, body: Markup) -> Response {
    layout::page(viewer, title, nav, body).into_response()
}
