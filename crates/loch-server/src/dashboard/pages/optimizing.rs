//! Optimizing: every managed table with its group, status, time in status, pending work and
//! quota; the optimizers with their threads, heartbeat and tasks, and a form to release one;
//! the groups, with forms to create, edit and delete them (the API's checks apply).

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::all_runtimes;
use crate::dashboard::layout::{Nav, bytes, count, duration, now_ms, seg, table_href, time};
use crate::dashboard::{CsrfForm, PageError, Viewer, render, see_other};
use crate::error::{ApiPath, JsonBody};
use crate::optimizing::api;
use crate::state::AppState;

/// `GET /optimizing`.
pub async fn page(viewer: Viewer, State(state): State<AppState>) -> Result<Response, PageError> {
    let tables = all_runtimes(&state).await?;
    let groups = api::list_groups(State(state.clone())).await?.0;
    let mut optimizers = Vec::new();
    for g in &groups {
        optimizers.extend(api::group_optimizers(State(state.clone()), ApiPath(g.name.clone())).await?.0);
    }
    let now = now_ms();
    let body = html! {
        h1 { "Optimizing" }
        h2 { "Tables" }
        div.scroll { table {
            thead { tr {
                th scope="col" { "Table" } th scope="col" { "Group" } th scope="col" { "Status" } th scope="col" { "In status" }
                th.num scope="col" { "Pending files" } th scope="col" { "Pending" } th.num scope="col" { "Health" }
            } }
            tbody {
                @for t in &tables {
                    tr {
                        td { a href=(table_href(&t.catalog, &t.namespace, &t.table, "optimizing")) { (t.catalog) "." (t.namespace.join(".")) "." (t.table) } }
                        td { (t.group) }
                        td { span class={ "badge " (t.status) } { (t.status) } @if let Some(b) = &t.blocked { " " span.muted title=(b) { "blocked" } } }
                        td { (duration(now - t.status_since)) }
                        td.num { (count(t.pending_files as i64)) }
                        td { @if let Some(p) = &t.pending { (p.get("type").and_then(|v| v.as_str()).unwrap_or("")) " " (bytes(p.get("bytes").and_then(|v| v.as_i64()).unwrap_or(0))) } }
                        td.num { (super::health(t).map(|h| format!("{h:.1}")).unwrap_or_default()) }
                    }
                }
            }
        } }
        h2 { "Optimizers" }
        div.scroll { table {
            thead { tr {
                th scope="col" { "Optimizer" } th scope="col" { "Group" } th scope="col" { "Kind" } th.num scope="col" { "Threads" }
                th.num scope="col" { "Running tasks" } th scope="col" { "Last heartbeat" } th scope="col" { "Registered" }
                th scope="col" { "Action" }
            } }
            tbody {
                @for o in &optimizers {
                    tr {
                        td { code { (o.id) } } td { (o.group) } td { (o.kind) } td.num { (o.threads) }
                        td.num { (o.running_tasks) } td { (duration(now - o.last_heartbeat)) " ago" } td { (time(o.registered_at)) }
                        td {
                            @if o.kind == "external" {
                                form.inline method="post" action={ "/optimizing/groups/" (seg(&o.group)) "/optimizers/" (seg(&o.id)) "/release" } {
                                    (viewer.csrf_field())
                                    button.danger type="submit" aria-label={ "Release optimizer " (o.id) } title="Its tasks go to other optimizers and the process stops" { "Release" }
                                }
                            } @else {
                                span.muted title="The server's own threads: set optimizing.embedded-threads" { "server threads" }
                            }
                        }
                    }
                }
            }
        } }
        h2 { "Groups" }
        div.scroll { table {
            thead { tr {
                th scope="col" { "Group" } th scope="col" { "Properties" } th.num scope="col" { "Optimizers" } th.num scope="col" { "Threads" }
                th.num scope="col" { "Tables" } th scope="col" { "Action" }
            } }
            tbody {
                @for g in &groups {
                    tr {
                        td { (g.name) }
                        td.path { @for (k, v) in &g.properties { (k) "=" (v) " " } }
                        td.num { (g.optimizers) } td.num { (g.threads) } td.num { (g.tables) }
                        td {
                            details {
                                summary { "Edit" }
                                form.stack method="post" action={ "/optimizing/groups/" (seg(&g.name)) } {
                                    (viewer.csrf_field())
                                    label { "Properties of " (g.name) ", one key=value per line"
                                        textarea name="properties" rows="3" { @for (k, v) in &g.properties { (k) "=" (v) "\n" } }
                                    }
                                    button.primary type="submit" { "Save" }
                                }
                            }
                            form.inline method="post" action={ "/optimizing/groups/" (seg(&g.name)) "/delete" } {
                                (viewer.csrf_field())
                                button.danger type="submit" aria-label={ "Delete group " (g.name) } { "Delete" }
                            }
                        }
                    }
                }
            }
        } }
        h3 { "Create a group" }
        form.stack method="post" action="/optimizing/groups" {
            (viewer.csrf_field())
            label { "Name" input type="text" name="name" required pattern="[A-Za-z0-9_-]+"; }
            label { "Scheduling policy"
                select name="scheduling_policy" { option value="quota" { "quota" } option value="balanced" { "balanced" } }
            }
            label { "Other properties, one key=value per line" textarea name="properties" rows="3" {} }
            button.primary type="submit" { "Create group" }
        }
    };
    Ok(render(&viewer, "Optimizing", Nav::Optimizing, body))
}

/// The create form's fields.
#[derive(Debug, Deserialize)]
pub struct GroupForm {
    #[serde(default)]
    csrf: String,
    name: String,
    #[serde(default)]
    scheduling_policy: Option<String>,
    #[serde(default)]
    properties: String,
}

/// `POST /optimizing/groups`.
pub async fn create_group(
    viewer: Viewer,
    State(state): State<AppState>,
    Form(form): Form<GroupForm>,
) -> Result<Response, PageError> {
    viewer.check(&form.csrf)?;
    let mut properties = super::parse_properties(&form.properties)?;
    if let Some(policy) = form.scheduling_policy.filter(|p| !p.is_empty()) {
        properties.insert("scheduling-policy".into(), policy);
    }
    let request = loch_api::optimizing::CreateGroupRequest { name: form.name.trim().to_string(), properties };
    let _created = api::create_group(State(state), JsonBody(request)).await?;
    Ok(see_other("/optimizing"))
}

/// `POST /optimizing/groups/{name}/delete`.
pub async fn delete_group(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    viewer.check(&form.csrf)?;
    api::delete_group(State(state), ApiPath(name)).await?;
    Ok(see_other("/optimizing"))
}

/// `POST /optimizing/groups/{name}/optimizers/{id}/release`.
pub async fn release_optimizer(
    viewer: Viewer,
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    viewer.check(&form.csrf)?;
    let _released = api::release_optimizer(State(state), ApiPath(api::OptimizerPath { name, id })).await?;
    Ok(see_other("/optimizing"))
}

/// The edit form's fields.
#[derive(Debug, Deserialize)]
pub struct EditGroupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    properties: String,
}

/// `POST /optimizing/groups/{name}`: replaces the group's properties (the API's checks apply).
pub async fn edit_group(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Form(form): Form<EditGroupForm>,
) -> Result<Response, PageError> {
    viewer.check(&form.csrf)?;
    let properties = super::parse_properties(&form.properties)?;
    let request = loch_api::optimizing::UpdateGroupRequest { properties };
    let _updated = api::update_group(State(state), ApiPath(name), JsonBody(request)).await?;
    Ok(see_other("/optimizing"))
}
