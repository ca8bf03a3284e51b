//! Catalogs: the list, one catalog's settings (secrets masked, as the API shows them), and
//! forms to create and delete catalogs with the API's own checks.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use crate::dashboard::layout::{Nav, bytes, count, facts, seg, table_href, time};
use crate::dashboard::{PageError, Viewer, render, see_other};
use crate::error::{ApiPath, JsonBody};
use crate::management;
use crate::state::AppState;

/// `GET /catalogs`.
pub async fn list(viewer: Viewer, State(state): State<AppState>) -> Result<Response, PageError> {
    let catalogs = management::list_catalogs(State(state.clone())).await?.0;
    let mut rows = Vec::with_capacity(catalogs.len());
    for c in catalogs {
        let tables = super::tables::catalog_tables(&state, &c.name).await?.len();
        rows.push((c, tables));
    }
    let body = html! {
        h1 { "Catalogs" }
        div.scroll { table {
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Warehouse" }
                th.num scope="col" { "Tables" } th scope="col" { "Created" }
            } }
            tbody {
                @for (c, tables) in &rows {
                    tr {
                        td { a href={ "/catalogs/" (seg(&c.name)) } { (c.name) } }
                        td { (c.kind) }
                        td.path { (c.properties.get("warehouse").map_or("", String::as_str)) }
                        td.num { (tables) }
                        td { (time(c.created_at)) }
                    }
                }
            }
        } }
        h2 { "Create a catalog" }
        form.stack method="post" action="/catalogs" {
            (viewer.csrf_field())
            label { "Name" input type="text" name="name" required pattern="[A-Za-z0-9_.-]+"; }
            label { "Warehouse (file:///… or s3://bucket/prefix)" input type="text" name="warehouse" required; }
            label {
                "Other properties, one key=value per line (s3.endpoint, s3.access-key-id, table.* defaults, …)"
                textarea name="properties" rows="4" {}
            }
            button.primary type="submit" { "Create catalog" }
        }
    };
    Ok(render(&viewer, "Catalogs", Nav::Catalogs, body))
}

/// The create form's fields.
#[derive(Debug, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    name: String,
    warehouse: String,
    #[serde(default)]
    properties: String,
}

/// `POST /catalogs`.
pub async fn create(
    viewer: Viewer,
    State(state): State<AppState>,
    Form(form): Form<CreateForm>,
) -> Result<Response, PageError> {
    viewer.check(&form.csrf)?;
    let mut properties = super::parse_properties(&form.properties)?;
    properties.insert("warehouse".into(), form.warehouse.trim().to_string());
    let request = loch_api::management::CreateCatalogRequest {
        name: form.name.trim().to_string(),
        kind: "internal".into(),
        properties,
    };
    let name = request.name.clone();
    let _created = management::create_catalog(State(state), JsonBody(request)).await?;
    Ok(see_other(&format!("/catalogs/{}", seg(&name))))
}

/// `GET /catalogs/{name}`.
pub async fn show(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let catalog = management::get_catalog(State(state.clone()), ApiPath(name.clone())).await?.0;
    let tables = super::tables::catalog_tables(&state, &name).await?;
    let title = format!("Catalog {name}");
    let body = html! {
        h1 { (title) }
        (facts([
            ("Type", html! { (catalog.kind) }),
            ("Created", html! { (time(catalog.created_at)) }),
            ("Updated", html! { (time(catalog.updated_at)) }),
            ("Tables", html! { (count(tables.len() as i64)) }),
            ("Size", html! { (bytes(tables.iter().map(|t| t.total_size).sum())) }),
        ]))
        h2 { "Properties" }
        div.scroll { table {
            thead { tr { th scope="col" { "Key" } th scope="col" { "Value" } } }
            tbody { @for (k, v) in &catalog.properties { tr { td { (k) } td.path { (v) } } } }
        } }
        h2 { "Tables" }
        div.scroll { table {
            thead { tr { th scope="col" { "Table" } th scope="col" { "Format" } th.num scope="col" { "Files" } th.num scope="col" { "Size" } } }
            tbody {
                @for t in &tables {
                    tr {
                        td { a href=(table_href(&name, &t.namespace, &t.name, "")) { (t.namespace.join(".")) "." (t.name) } }
                        td { (t.format) }
                        td.num { (count(t.file_count)) }
                        td.num { (bytes(t.total_size)) }
                    }
                }
            }
        } }
        h2 { "Edit properties" }
        form.stack method="post" action={ "/catalogs/" (seg(&name)) } {
            (viewer.csrf_field())
            label {
                "Properties, one key=value per line (a masked secret left as it is keeps its value)"
                textarea name="properties" rows=(catalog.properties.len() + 2) {
                    @for (k, v) in &catalog.properties { (k) "=" (v) "\n" }
                }
            }
            button.primary type="submit" { "Save properties" }
        }
        h2 { "Delete" }
        p.muted { "A catalog that still holds tables or views cannot be deleted." }
        form method="post" action={ "/catalogs/" (seg(&name)) "/delete" } {
            (viewer.csrf_field())
            button.danger type="submit" { "Delete catalog " (name) }
        }
    };
    Ok(render(&viewer, &title, Nav::Catalogs, body))
}

/// `POST /catalogs/{name}/delete`.
pub async fn delete(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Form(form): Form<crate::dashboard::CsrfForm>,
) -> Result<Response, PageError> {
    viewer.check(&form.csrf)?;
    management::delete_catalog(State(state), ApiPath(name)).await?;
    Ok(see_other("/catalogs"))
}

/// The edit form's fields.
#[derive(Debug, Deserialize)]
pub struct EditForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    properties: String,
}

/// `POST /catalogs/{name}`: replaces the catalog's properties (the API's checks apply).
pub async fn edit(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Form(form): Form<EditForm>,
) -> Result<Response, PageError> {
    viewer.check(&form.csrf)?;
    let properties = super::parse_properties(&form.properties)?;
    let request = loch_api::management::UpdateCatalogRequest { properties };
    let _updated = management::update_catalog(State(state), ApiPath(name.clone()), JsonBody(request)).await?;
    Ok(see_other(&format!("/catalogs/{}", seg(&name))))
}
