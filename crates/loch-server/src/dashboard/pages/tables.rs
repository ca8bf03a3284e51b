//! The table explorer: catalog → namespace → table, with a search over names, a page at a time.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::Response;
use loch_api::management::CatalogTable;
use maud::html;
use serde::Deserialize;

use crate::dashboard::layout::{Nav, Paging, bytes, count, seg, table_href, time};
use crate::dashboard::{PageError, Viewer, render};
use crate::state::AppState;

/// Tables per page of the explorer.
const PER_PAGE: usize = 100;

/// The tables of one catalog: a keyed table once, its change store's files, size and records
/// counted with its base store's.
pub async fn catalog_tables(state: &AppState, catalog: &str) -> Result<Vec<CatalogTable>, PageError> {
    let records = state.catalogs.catalog_tables(catalog).await?;
    let (changes, tables): (Vec<_>, Vec<_>) =
        records.into_iter().partition(|t| t.format == loch_catalog::keyed::FORMAT_MIXED_ICEBERG_CHANGE);
    let changes: std::collections::HashMap<(Vec<String>, String), CatalogTable> =
        changes.into_iter().map(|t| ((t.namespace.clone(), t.name.clone()), crate::management::table_dto(t))).collect();
    Ok(tables
        .into_iter()
        .map(|t| {
            let mut table = crate::management::table_dto(t);
            let key = (table.namespace.clone(), loch_catalog::keyed::change_name(&table.name));
            if let Some(change) = changes.get(&key) {
                table.file_count += change.file_count;
                table.data_files += change.data_files;
                table.delete_files += change.delete_files;
                table.total_size += change.total_size;
                table.total_records += change.total_records;
                table.last_commit_time = table.last_commit_time.max(change.last_commit_time);
            }
            table
        })
        .collect())
}

/// The explorer's query.
#[derive(Debug, Deserialize)]
pub struct ExplorerQuery {
    #[serde(default)]
    catalog: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    page: Option<usize>,
}

/// `GET /tables`.
pub async fn explorer(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(query): Query<ExplorerQuery>,
) -> Result<Response, PageError> {
    let catalogs = crate::management::list_catalogs(State(state.clone())).await?.0;
    let catalog = query.catalog.clone().or_else(|| catalogs.first().map(|c| c.name.clone())).unwrap_or_default();
    let tables = if catalog.is_empty() { Vec::new() } else { catalog_tables(&state, &catalog).await? };
    let mut namespaces: BTreeMap<String, usize> = BTreeMap::new();
    for t in &tables {
        *namespaces.entry(t.namespace.join(".")).or_default() += 1;
    }
    let needle = query.q.as_deref().map(str::to_lowercase).unwrap_or_default();
    let shown: Vec<&CatalogTable> = tables
        .iter()
        .filter(|t| query.namespace.as_deref().is_none_or(|n| t.namespace.join(".") == n))
        .filter(|t| {
            needle.is_empty() || format!("{}.{}", t.namespace.join("."), t.name).to_lowercase().contains(&needle)
        })
        .collect();
    let paging = Paging::new(query.page, PER_PAGE, shown.len());
    let link = |page: usize| {
        let mut href = format!("/tables?catalog={}&page={page}", seg(&catalog));
        if let Some(n) = &query.namespace {
            href.push_str(&format!("&namespace={}", seg(n)));
        }
        if !needle.is_empty() {
            href.push_str(&format!("&q={}", seg(&needle)));
        }
        href
    };
    let body = html! {
        h1 { "Tables" }
        div.explorer {
            nav aria-label="Catalogs and namespaces" {
                h2 { "Catalogs" }
                ul {
                    @for c in &catalogs {
                        li {
                            @if c.name == catalog {
                                strong { (c.name) }
                                ul {
                                    @for (ns, n) in &namespaces {
                                        li { a href={ "/tables?catalog=" (seg(&catalog)) "&namespace=" (seg(ns)) } { (ns) } " " span.muted { "(" (n) ")" } }
                                    }
                                }
                            } @else {
                                a href={ "/tables?catalog=" (seg(&c.name)) } { (c.name) }
                            }
                        }
                    }
                }
            }
            section {
                form.row method="get" action="/tables" role="search" {
                    input type="hidden" name="catalog" value=(catalog);
                    @if let Some(n) = &query.namespace { input type="hidden" name="namespace" value=(n); }
                    label { "Search tables" input type="search" name="q" value=(needle); }
                    div { button type="submit" { "Search" } }
                }
                (paging.nav(link))
                div.scroll { table {
                    thead { tr {
                        th scope="col" { "Table" } th scope="col" { "Format" } th.num scope="col" { "Files" }
                        th.num scope="col" { "Records" } th.num scope="col" { "Size" } th scope="col" { "Last commit" }
                    } }
                    tbody {
                        @for t in &shown[paging.range()] {
                            tr {
                                td { a href=(table_href(&catalog, &t.namespace, &t.name, "")) { (t.namespace.join(".")) "." (t.name) } }
                                td { (if t.format == loch_catalog::keyed::FORMAT_MIXED_ICEBERG { "keyed (mixed-iceberg)" } else { t.format.as_str() }) }
                                td.num { (count(t.file_count)) }
                                td.num { (count(t.total_records)) }
                                td.num { (bytes(t.total_size)) }
                                td { (t.last_commit_time.map(time).unwrap_or_default()) }
                            }
                        }
                    }
                } }
            }
        }
    };
    Ok(render(&viewer, "Tables", Nav::Tables, body))
}
