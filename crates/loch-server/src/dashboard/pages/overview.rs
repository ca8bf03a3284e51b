//! The overview: catalogs, tables, size and files, optimizer threads; tables by optimizing
//! status; size and file count over time (sampled by the server); the top tables.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use super::{all_runtimes, all_tables, health};
use crate::dashboard::layout::{Nav, bytes, count, table_href};
use crate::dashboard::{PageError, Viewer, chart, render};
use crate::state::AppState;

/// How long samples are kept: 7 days.
const KEEP_MS: i64 = 7 * 24 * 3_600_000;

/// Records the totals of every table now, in the metadata store (the charts outlive restarts).
pub async fn sample(state: &AppState) {
    let Ok(tables) = all_tables(state).await else { return };
    let now = crate::dashboard::layout::now_ms();
    let sample = loch_meta::TotalsSample {
        at: now,
        bytes: tables.iter().map(|(_, t)| t.total_size).sum(),
        files: tables.iter().map(|(_, t)| t.file_count).sum(),
    };
    if let Err(e) = state.catalogs.store().record_sample(sample, now - KEEP_MS).await {
        tracing::warn!(error = %e, "cannot record the totals sample");
    }
}

/// `GET /`.
pub async fn page(viewer: Viewer, State(state): State<AppState>) -> Result<Response, PageError> {
    let tables = all_tables(&state).await?;
    let runtimes = all_runtimes(&state).await?;
    let catalogs = crate::management::list_catalogs(State(state.clone())).await?.0;
    let groups = crate::optimizing::api::list_groups(State(state.clone())).await?.0;
    let threads: i64 = groups.iter().map(|g| g.threads).sum();
    let optimizers: usize = groups.iter().map(|g| g.optimizers).sum();
    let total_bytes: i64 = tables.iter().map(|(_, t)| t.total_size).sum();
    let total_files: i64 = tables.iter().map(|(_, t)| t.file_count).sum();

    let mut by_status: BTreeMap<String, f64> = BTreeMap::new();
    for r in &runtimes {
        *by_status.entry(r.status.clone()).or_default() += 1.0;
    }
    let samples =
        state.catalogs.store().samples_since(crate::dashboard::layout::now_ms() - KEEP_MS).await.unwrap_or_default();
    let top = |key: &dyn Fn(&loch_api::management::CatalogTable) -> i64| {
        let mut sorted: Vec<&(String, loch_api::management::CatalogTable)> = tables.iter().collect();
        sorted.sort_by_key(|(_, t)| std::cmp::Reverse(key(t)));
        sorted.into_iter().take(10).cloned().collect::<Vec<_>>()
    };
    let by_size = top(&|t| t.total_size);
    let by_files = top(&|t| t.file_count);
    let mut by_health: Vec<(&loch_api::optimizing::TableOptimizing, f64)> =
        runtimes.iter().filter_map(|r| health(r).map(|h| (r, h))).collect();
    by_health.sort_by(|a, b| a.1.total_cmp(&b.1));
    by_health.truncate(10);

    let body = html! {
        h1 { "Overview" }
        section.cards aria-label="Totals" {
            (card("Catalogs", &count(catalogs.len() as i64)))
            (card("Tables", &count(tables.len() as i64)))
            (card("Total size", &bytes(total_bytes)))
            (card("Files", &count(total_files)))
            (card("Optimizer threads", &count(threads)))
            (card("Optimizers", &count(optimizers as i64)))
        }
        div.row {
            section {
                h2 { "Tables by optimizing status" }
                (chart::bars("Tables by optimizing status", &by_status.into_iter().collect::<Vec<_>>(), |v| format!("{v:.0}")))
            }
            section {
                h2 { "Data size over time" }
                (chart::line("Total data size", &samples.iter().map(|s| (s.at, s.bytes as f64)).collect::<Vec<_>>(), |v| bytes(v as i64)))
            }
            section {
                h2 { "Files over time" }
                (chart::line("Total files", &samples.iter().map(|s| (s.at, s.files as f64)).collect::<Vec<_>>(), |v| count(v as i64)))
            }
        }
        div.row {
            section {
                h2 { "Largest tables" }
                (top_table(&by_size, "Size", |t| bytes(t.total_size)))
            }
            section {
                h2 { "Most files" }
                (top_table(&by_files, "Files", |t| count(t.file_count)))
            }
            section {
                h2 { "Lowest health score" }
                div.scroll { table {
                    thead { tr { th scope="col" { "Table" } th.num scope="col" { "Health" } } }
                    tbody {
                        @for (r, h) in &by_health {
                            tr {
                                td { a href=(table_href(&r.catalog, &r.namespace, &r.table, "")) { (r.catalog) "." (r.namespace.join(".")) "." (r.table) } }
                                td.num { (format!("{h:.1}")) }
                            }
                        }
                    }
                } }
            }
        }
    };
    Ok(render(&viewer, "Overview", Nav::Overview, body))
}

fn card(label: &str, value: &str) -> Markup {
    html! { div.card { div.value { (value) } div.label { (label) } } }
}

fn top_table(
    rows: &[(String, loch_api::management::CatalogTable)],
    what: &str,
    value: impl Fn(&loch_api::management::CatalogTable) -> String,
) -> Markup {
    html! {
        div.scroll { table {
            thead { tr { th scope="col" { "Table" } th.num scope="col" { (what) } } }
            tbody {
                @for (catalog, t) in rows {
                    tr {
                        td { a href=(table_href(catalog, &t.namespace, &t.name, "")) { (catalog) "." (t.namespace.join(".")) "." (t.name) } }
                        td.num { (value(t)) }
                    }
                }
            }
        } }
    }
}
