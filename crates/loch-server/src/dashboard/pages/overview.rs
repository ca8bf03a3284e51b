//! The overview: catalogs, tables, size and files, optimizer threads; tables by optimizing
//! status; size and file count over time (sampled by the server); the top tables.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use super::{all_runtimes, all_tables, health};
use crate::dashboard::layout::{Nav, bytes, count, table_href};
use crate::dashboard::{PageError, Viewer, chart, render};
use crate::state::AppState;

/// Samples kept: one a minute for 7 days.
const MAX_SAMPLES: usize = 7 * 24 * 60;

/// Total size and files over time.
#[derive(Debug, Default)]
pub struct Samples {
    points: Mutex<VecDeque<Sample>>,
}

/// One sample of the totals.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: i64,
    bytes: i64,
    files: i64,
}

impl Samples {
    /// Records the totals of every table now.
    pub async fn sample(&self, state: &AppState) {
        let Ok(tables) = all_tables(state).await else { return };
        let bytes = tables.iter().map(|(_, t)| t.total_size).sum();
        let files = tables.iter().map(|(_, t)| t.file_count).sum();
        let mut points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        points.push_back(Sample { at: crate::dashboard::layout::now_ms(), bytes, files });
        while points.len() > MAX_SAMPLES {
            points.pop_front();
        }
    }

    fn series(&self) -> Vec<Sample> {
        self.points.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect()
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
    let samples = state.dashboard.samples.series();
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
