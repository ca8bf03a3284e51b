//! Settings: the effective server configuration with secrets masked, the version, and links to
//! the API description and the metrics.

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use crate::dashboard::layout::{Nav, facts};
use crate::dashboard::{PageError, Viewer, render};
use crate::state::AppState;

/// `GET /settings`.
pub async fn page(viewer: Viewer, State(state): State<AppState>) -> Result<Response, PageError> {
    let mut rows = Vec::new();
    flatten("", state.dashboard.settings(), &mut rows);
    let body = html! {
        h1 { "Settings" }
        (facts([
            ("Version", html! { (env!("CARGO_PKG_VERSION")) }),
            ("API description", html! { a href="/api/v1/openapi.json" { "/api/v1/openapi.json" } }),
            ("Metrics", html! { a href="/metrics" { "/metrics" } }),
            ("Iceberg REST catalog", html! { code { "/api/iceberg/rest" } }),
        ]))
        h2 { "Effective configuration" }
        p.muted { "File, then LOCH_* variables, then flags; passwords, secrets and keys are masked." }
        (table(&rows))
    };
    Ok(render(&viewer, "Settings", Nav::Settings, body))
}

fn table(rows: &[(String, String)]) -> Markup {
    html! {
        div.scroll { table {
            thead { tr { th scope="col" { "Key" } th scope="col" { "Value" } } }
            tbody { @for (k, v) in rows { tr { td { code { (k) } } td.path { (v) } } } }
        } }
    }
}

/// Dotted keys and their values.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}
