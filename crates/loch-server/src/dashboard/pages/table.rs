//! A table's page, one tab at a time: details (schema, key, spec, properties, totals, health
//! and why it is or is not optimizing), files (by partition, paged), snapshots (paged, with
//! charts), optimizing (processes and their tasks, cancel), maintenance (runs, preview, run
//! now), operations (schema and property history as DDL) and, for keyed tables, the change
//! store.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use iceberg::spec::TableMetadata;
use loch_api::optimizing::{Process, TableOptimizing};
use loch_optimizing::table::ManagedTable;
use maud::{Markup, html};
use serde::Deserialize;

use crate::dashboard::cache::Version;
use crate::dashboard::layout::{Nav, Paging, bytes, count, duration, facts, notice, now_ms, seg, table_href, time};
use crate::dashboard::{PageError, Viewer, render, see_other};
use crate::error::{ApiPath, ApiQuery};
use crate::optimizing::api::{self, MaintenancePath, MaintenanceQuery, ProcessPath, ProcessQuery, TablePath};
use crate::state::AppState;

/// Rows per page of files and snapshots.
const PER_PAGE: usize = 50;

const TABS: [(&str, &str); 7] = [
    ("details", "Details"),
    ("files", "Files"),
    ("snapshots", "Snapshots"),
    ("optimizing", "Optimizing"),
    ("maintenance", "Maintenance"),
    ("operations", "Operations"),
    ("changes", "Change store"),
];

/// The table's path segments.
#[derive(Debug, Deserialize)]
pub struct TableSegments {
    catalog: String,
    namespace: String,
    table: String,
}

/// Which tab and page.
#[derive(Debug, Deserialize, Default)]
pub struct TabQuery {
    #[serde(default)]
    tab: Option<String>,
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    partition: Option<String>,
    #[serde(default)]
    process: Option<i64>,
}

struct Loaded {
    catalog: String,
    namespace: Vec<String>,
    name: String,
    managed: ManagedTable,
    runtime: Option<TableOptimizing>,
}

impl Loaded {
    fn href(&self, tab: &str) -> String {
        table_href(&self.catalog, &self.namespace, &self.name, tab)
    }

    fn metadata(&self) -> &TableMetadata {
        self.managed.table.metadata()
    }

    fn api_path(&self) -> TablePath {
        TablePath { catalog: self.catalog.clone(), namespace: self.namespace.join("."), table: self.name.clone() }
    }
}

async fn load(state: &AppState, path: &TableSegments) -> Result<Loaded, PageError> {
    let id = api::table_id(state, &path.catalog, &path.namespace, &path.table).await?;
    let managed = ManagedTable::load(&state.catalogs, id)
        .await?
        .ok_or_else(|| PageError::not_found(format!("table {}.{} does not exist", path.namespace, path.table)))?;
    let api_path =
        TablePath { catalog: path.catalog.clone(), namespace: path.namespace.clone(), table: path.table.clone() };
    let runtime = api::table_optimizing(State(state.clone()), ApiPath(api_path)).await.ok().map(|j| j.0);
    Ok(Loaded {
        catalog: path.catalog.clone(),
        namespace: managed.name.namespace.clone(),
        name: managed.name.name.clone(),
        managed,
        runtime,
    })
}

/// `GET /tables/{catalog}/{namespace}/{table}`.
pub async fn page(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(path): Path<TableSegments>,
    Query(query): Query<TabQuery>,
) -> Result<Response, PageError> {
    let table = load(&state, &path).await?;
    let keyed = table.managed.keyed.is_some();
    let tab = query.tab.clone().unwrap_or_else(|| "details".into());
    let content = match tab.as_str() {
        "details" => details(&state, &table).await?,
        "files" => files(&state, &table, &query).await?,
        "snapshots" => snapshots(&table, &query, &state.dashboard.cache.refs(&table.managed.table)),
        "optimizing" => optimizing(&state, &viewer, &table, &query).await?,
        "maintenance" => maintenance(&state, &viewer, &table).await?,
        "operations" => operations(&state, &table, &query).await?,
        "changes" if keyed => changes(&table).await?,
        other => return Err(PageError::not_found(format!("table pages have no tab {other:?}"))),
    };
    let full_name = format!("{}.{}.{}", table.catalog, table.namespace.join("."), table.name);
    let label = TABS.iter().find(|(t, _)| *t == tab).map_or("", |(_, l)| l);
    let body = html! {
        p.muted { a href="/tables" { "Tables" } " / " a href={ "/tables?catalog=" (seg(&table.catalog)) } { (table.catalog) } " / " (table.namespace.join(".")) }
        h1 { (full_name) @if keyed { " " span.badge { "keyed" } } }
        nav aria-label="Table tabs" {
            ul.tabs {
                @for (t, l) in TABS {
                    @if t != "changes" || keyed {
                        li {
                            @if t == tab { a href=(table.href(t)) aria-current="page" { (l) } }
                            @else { a href=(table.href(t)) { (l) } }
                        }
                    }
                }
            }
        }
        h2 { (label) }
        (content)
    };
    Ok(render(&viewer, &format!("{full_name} · {label}"), Nav::Tables, body))
}

async fn details(state: &AppState, table: &Loaded) -> Result<Markup, PageError> {
    let metadata = table.metadata();
    let schema = metadata.current_schema();
    let summary = metadata.current_snapshot().map(|s| s.summary().additional_properties.clone()).unwrap_or_default();
    let num = |k: &str| summary.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let (files, size, records) = (num("total-data-files"), num("total-files-size"), num("total-records"));
    let primary_key = table.managed.keyed.as_ref().map(|k| k.primary_key.join(", "));
    let spec = metadata.default_partition_spec();
    let processes = api::list_processes(
        State(state.clone()),
        ApiPath(table.api_path()),
        ApiQuery(ProcessQuery { limit: Some(20) }),
    )
    .await
    .map(|p| p.0)
    .unwrap_or_default();
    Ok(html! {
        (facts([
            ("Format", html! { @if primary_key.is_some() { "Mixed-Iceberg (keyed)" } @else { "Iceberg" } " v" (metadata.format_version() as u8) }),
            ("Primary key", html! { (primary_key.clone().unwrap_or_else(|| "—".into())) }),
            ("Partition spec", html! { @if spec.is_unpartitioned() { "unpartitioned" } @else { @for (i, f) in spec.fields().iter().enumerate() { @if i > 0 { ", " } (f.transform) "(" (schema.field_by_id(f.source_id).map_or("?", |c| c.name.as_str())) ")" } } }),
            ("Location", html! { code { (metadata.location()) } }),
            ("Data files", html! { (count(files)) " (" (count(num("total-delete-files"))) " delete files)" }),
            ("Records", html! { (count(records)) }),
            ("Size", html! { (bytes(size)) }),
            ("Average file size", html! { (if files > 0 { bytes(size / files) } else { "—".into() }) }),
            ("Snapshots", html! { (count(metadata.snapshots().count() as i64)) }),
            ("Last commit", html! { (metadata.current_snapshot().map(|s| time(s.timestamp_ms())).unwrap_or_else(|| "—".into())) }),
        ]))
        h3 { "Schema" }
        div.scroll { table {
            thead { tr { th.num scope="col" { "Id" } th scope="col" { "Column" } th scope="col" { "Type" } th scope="col" { "Required" } th scope="col" { "Comment" } } }
            tbody {
                @for f in schema.as_struct().fields() {
                    tr { td.num { (f.id) } td { (f.name) } td { code { (f.field_type.to_string()) } } td { (if f.required { "yes" } else { "no" }) } td { (f.doc.clone().unwrap_or_default()) } }
                }
            }
        } }
        h3 { "Health" }
        (health(table))
        h3 { "Why (not) optimizing?" }
        (why(state, table, &processes).await?)
        h3 { "Properties" }
        div.scroll { table {
            thead { tr { th scope="col" { "Key" } th scope="col" { "Value" } } }
            tbody { @for (k, v) in metadata.properties().iter().collect::<BTreeMap<_, _>>() { tr { td { (k) } td.path { (v) } } } }
        } }
    })
}

/// The health score and what lowers it (the last evaluation's counters).
fn health(table: &Loaded) -> Markup {
    let Some(summary) = table.runtime.as_ref().and_then(|r| r.summary.clone()) else {
        return html! { p.muted { "Not evaluated yet: self-optimizing has not looked at this table." } };
    };
    let n = |k: &str| summary.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
    let score = summary.get("healthScore").and_then(|v| v.as_f64()).unwrap_or(100.0);
    html! {
        (facts([
            ("Health score", html! { strong { (format!("{score:.1}")) } " / 100" }),
            ("Small files (fragments)", html! { (count(n("fragments"))) " of " (count(n("dataFiles"))) " data files — up to 40 points" }),
            ("Undersized segments", html! { (count(n("undersizedSegments"))) }),
            ("Equality delete files", html! { (count(n("equalityDeleteFiles"))) " — up to 40 points" }),
            ("Position delete files", html! { (count(n("positionDeleteFiles"))) " — up to 20 points" }),
            ("Change files (keyed)", html! { (count(n("changeFiles"))) }),
            ("Partitions", html! { (count(n("partitions"))) }),
        ]))
    }
}

/// The evaluator's reasoning now: status, what is pending against each trigger, when a plan is
/// next allowed, the quota, the group's free threads, the last failure.
async fn why(state: &AppState, table: &Loaded, processes: &[Process]) -> Result<Markup, PageError> {
    let props = &table.managed.props;
    let Some(runtime) = &table.runtime else {
        return Ok(html! { p.muted { "Self-optimizing has no record of this table yet." } });
    };
    let summary = runtime.summary.clone().unwrap_or_default();
    let n = |k: &str| summary.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
    let fragments = n("fragments") + n("equalityDeleteFiles");
    // The group's threads and how many its optimizers' tasks hold now.
    let optimizers = api::group_optimizers(State(state.clone()), ApiPath(runtime.group.clone()))
        .await
        .map(|o| o.0)
        .unwrap_or_default();
    let threads: i64 = optimizers.iter().map(|o| o.threads).sum();
    let busy: i64 = optimizers.iter().map(|o| o.running_tasks as i64).sum();
    let occupation =
        state.optimizing.quota_occupation_of(table.managed.record.id, &runtime.group, props.quota).await.unwrap_or(0.0);
    let now = now_ms();
    let last_minor = runtime.last_minor_at.unwrap_or(0);
    let minor_due = last_minor.saturating_add(props.minor_trigger_interval_ms);
    let last_failure = processes.iter().find(|p| p.status == "failed");
    let next_plan = match runtime.last_plan_at {
        None => "now (never planned)".to_string(),
        Some(last) => {
            let at = last.saturating_add(props.min_plan_interval_ms);
            let when = if at > now { format!("in {}", duration(at - now)) } else { "now".to_string() };
            format!("{when} (last plan {})", time(last))
        }
    };
    let verdict = if !props.enabled {
        "No: self-optimizing.enabled is false for this table.".to_string()
    } else if let Some(reason) = &runtime.blocked {
        format!("No: {reason}")
    } else if runtime.status != "idle" && runtime.status != "pending" {
        format!(
            "Yes: it is {} now (process {}).",
            runtime.status,
            runtime.process_id.map_or("—".into(), |p| p.to_string())
        )
    } else if runtime.status == "pending" {
        "Soon: the last evaluation found work; it waits for the group's threads and its quota.".to_string()
    } else if fragments as usize >= props.minor_trigger_file_count {
        "Soon: enough small files for a minor; the next evaluation plans it.".to_string()
    } else {
        "No: nothing reaches a trigger yet.".to_string()
    };
    Ok(html! {
        (notice("info", &verdict))
        (facts([
            ("Status", html! { span class={ "badge " (runtime.status) } { (runtime.status) } " since " (time(runtime.status_since)) }),
            ("Group", html! { (runtime.group) " — " (threads) " threads, " ((threads - busy).max(0)) " free (" (busy) " tasks running)" }),
            ("Quota", html! { (props.quota) @if props.quota <= 1.0 { " of the group's threads" } @else { " threads" } " (self-optimizing.quota); occupied " (format!("{:.0}", occupation * 100.0)) " % over the last hour" }),
            ("Plan interval", html! { "at most one plan every " (duration(props.min_plan_interval_ms)) " (self-optimizing.min-plan-interval); next plan allowed " (next_plan) }),
            ("Minor trigger", html! { (fragments) " small or equality-delete files of " (props.minor_trigger_file_count) " (self-optimizing.minor.trigger.file-count), or every " (duration(props.minor_trigger_interval_ms)) " — next by time " (if minor_due <= now { "now".to_string() } else { format!("in {}", duration(minor_due - now)) }) }),
            ("Major trigger", html! { "duplicate ratio " (props.major_duplicate_ratio) " (self-optimizing.major.trigger.duplicate-ratio); " (n("undersizedSegments")) " undersized segments" }),
            ("Full trigger", html! { @if props.full_trigger_interval_ms < 0 { "off (self-optimizing.full.trigger.interval = -1)" } @else { "every " (duration(props.full_trigger_interval_ms)) } }),
            ("Pending", html! { @if let Some(p) = &runtime.pending { (p.to_string()) } @else { "nothing" } }),
            ("Last minor / major / full", html! { (runtime.last_minor_at.map(time).unwrap_or_else(|| "never".into())) " / " (runtime.last_major_at.map(time).unwrap_or_else(|| "never".into())) " / " (runtime.last_full_at.map(time).unwrap_or_else(|| "never".into())) }),
            ("Last failure", html! { @if let Some(p) = last_failure { "process " (p.id) " at " (time(p.created_at)) ": " (p.fail_message.clone().unwrap_or_default()) } @else { "none" } }),
        ]))
    })
}

async fn files(state: &AppState, table: &Loaded, query: &TabQuery) -> Result<Markup, PageError> {
    let metadata = table.metadata();
    if metadata.current_snapshot().is_none() {
        return Ok(html! { p.muted { "The table has no snapshot yet." } });
    }
    let rows = state.dashboard.cache.files(&table.managed.table).await?;
    let Some(partition) = &query.partition else {
        let mut partitions: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
        for f in rows.iter() {
            let entry = partitions.entry(&f.partition).or_default();
            entry.0 += 1;
            entry.1 += f.size;
            entry.2 += f.records;
        }
        let listed: Vec<_> = partitions.iter().collect();
        let paging = Paging::new(query.page, PER_PAGE, listed.len());
        let base = table.href("files");
        return Ok(html! {
            p { (count(rows.len() as i64)) " live files in " (count(partitions.len() as i64)) " partitions." }
            (paging.nav(|p| format!("{base}&page={p}")))
            div.scroll { table {
                thead { tr { th scope="col" { "Partition" } th.num scope="col" { "Files" } th.num scope="col" { "Size" } th.num scope="col" { "Records" } } }
                tbody {
                    @for (p, (n, size, records)) in &listed[paging.range()] {
                        tr {
                            td { a href={ (base) "&partition=" (seg(p)) } { (p) } }
                            td.num { (count(*n)) } td.num { (bytes(*size)) } td.num { (count(*records)) }
                        }
                    }
                }
            } }
        });
    };
    // Rows are sorted by partition, then path: the partition's files are one run.
    let start = rows.partition_point(|f| f.partition.as_str() < partition.as_str());
    let end = rows.partition_point(|f| f.partition.as_str() <= partition.as_str());
    let chosen = &rows[start..end];
    let paging = Paging::new(query.page, PER_PAGE, chosen.len());
    let base = format!("{}&partition={}", table.href("files"), seg(partition));
    // A file's commit: the snapshot of its file sequence number.
    let committed: BTreeMap<i64, i64> = metadata.snapshots().map(|s| (s.sequence_number(), s.timestamp_ms())).collect();
    Ok(html! {
        p { a href=(table.href("files")) { "All partitions" } " / " strong { (partition) } " — " (count(chosen.len() as i64)) " files" }
        (paging.nav(|p| format!("{base}&page={p}")))
        div.scroll { table {
            thead { tr { th scope="col" { "File" } th scope="col" { "Type" } th.num scope="col" { "Size" } th.num scope="col" { "Records" } th scope="col" { "Committed" } } }
            tbody {
                @for f in &chosen[paging.range()] {
                    tr {
                        td.path { (f.path) }
                        td { (f.content) }
                        td.num { (bytes(f.size)) }
                        td.num { (count(f.records)) }
                        td { (committed.get(&f.sequence).map(|t| time(*t)).unwrap_or_else(|| "—".into())) }
                    }
                }
            }
        } }
    })
}

fn snapshots(table: &Loaded, query: &TabQuery, refs: &crate::dashboard::cache::Refs) -> Markup {
    let metadata = table.metadata();
    let mut all: Vec<_> = metadata.snapshots().collect();
    all.sort_by_key(|s| std::cmp::Reverse((s.timestamp_ms(), s.sequence_number())));
    let paging = Paging::new(query.page, PER_PAGE, all.len());
    let base = table.href("snapshots");
    let mut series: Vec<(i64, f64, f64)> = all
        .iter()
        .map(|s| {
            let p = &s.summary().additional_properties;
            let num = |k: &str| p.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            (s.timestamp_ms(), num("total-data-files") + num("total-delete-files"), num("total-records"))
        })
        .collect();
    series.reverse();
    // Charts of at most 500 points: every n-th snapshot of a long history.
    let step = series.len().div_ceil(500).max(1);
    let sampled: Vec<_> = series.iter().step_by(step).collect();
    html! {
        div.row {
            section { h3 { "Files over time" } (crate::dashboard::chart::line("Files per snapshot", &sampled.iter().map(|(t, f, _)| (*t, *f)).collect::<Vec<_>>(), |v| count(v as i64))) }
            section { h3 { "Records over time" } (crate::dashboard::chart::line("Records per snapshot", &sampled.iter().map(|(t, _, r)| (*t, *r)).collect::<Vec<_>>(), |v| count(v as i64))) }
        }
        h3 { "Branches and tags" }
        div.scroll { table {
            thead { tr { th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Snapshot" } } }
            tbody { @for (name, r) in refs { tr { td { (name) } td { (if r.is_branch() { "branch" } else { "tag" }) } td { (r.snapshot_id) } } } }
        } }
        h3 { "Snapshots" }
        (paging.nav(|p| format!("{base}&page={p}")))
        div.scroll { table {
            thead { tr { th scope="col" { "Snapshot" } th scope="col" { "Committed" } th scope="col" { "Operation" } th scope="col" { "Summary" } } }
            tbody {
                @for s in &all[paging.range()] {
                    @let p = &s.summary().additional_properties;
                    tr {
                        td { (s.snapshot_id()) }
                        td { (time(s.timestamp_ms())) }
                        td { (s.summary().operation.as_str()) }
                        td.path {
                            @for key in ["added-data-files", "deleted-data-files", "added-delete-files", "added-records", "deleted-records", "total-records", "total-data-files", "snapshot.producer", "optimizing-type"] {
                                @if let Some(v) = p.get(key) { (key) "=" (v) " " }
                            }
                        }
                    }
                }
            }
        } }
    }
}

async fn optimizing(state: &AppState, viewer: &Viewer, table: &Loaded, query: &TabQuery) -> Result<Markup, PageError> {
    let processes = api::list_processes(
        State(state.clone()),
        ApiPath(table.api_path()),
        ApiQuery(ProcessQuery { limit: Some(100) }),
    )
    .await?
    .0;
    let tasks = match query.process {
        Some(id) => {
            let path = ProcessPath {
                catalog: table.catalog.clone(),
                namespace: table.namespace.join("."),
                table: table.name.clone(),
                id,
            };
            Some((id, api::list_tasks(State(state.clone()), ApiPath(path)).await?.0))
        }
        None => None,
    };
    let base = table.href("optimizing");
    Ok(html! {
        (why(state, table, &processes).await?)
        h3 { "Processes" }
        div.scroll { table {
            thead { tr {
                th.num scope="col" { "Process" } th scope="col" { "Type" } th scope="col" { "Status" } th scope="col" { "Started" }
                th scope="col" { "Duration" } th.num scope="col" { "Tasks" } th scope="col" { "Input" } th scope="col" { "Output" } th scope="col" { "Failure" } th scope="col" { "Action" }
            } }
            tbody {
                @for p in &processes {
                    tr {
                        td.num { a href={ (base) "&process=" (p.id) } { (p.id) } }
                        td { (p.process_type) }
                        td { span class={ "badge " (p.status) } { (p.status) } }
                        td { (time(p.created_at)) }
                        td { (duration(p.duration_ms)) }
                        td.num { (p.tasks) }
                        td { (count(p.input_files)) " files, " (bytes(p.input_bytes)) }
                        td { (count(p.output_files)) " files, " (bytes(p.output_bytes)) }
                        td { (p.fail_message.clone().unwrap_or_default()) }
                        td {
                            @if p.status == "running" {
                                form.inline method="post" action={ (table_href(&table.catalog, &table.namespace, &table.name, "")) "/processes/" (p.id) "/cancel" } {
                                    (viewer.csrf_field())
                                    button.danger type="submit" { "Cancel" }
                                }
                            }
                        }
                    }
                }
            }
        } }
        @if let Some((id, tasks)) = &tasks {
            h3 { "Tasks of process " (id) }
            div.scroll { table {
                thead { tr { th.num scope="col" { "Task" } th scope="col" { "Status" } th scope="col" { "Partition" } th.num scope="col" { "Attempt" } th scope="col" { "Optimizer" } th scope="col" { "Since" } th scope="col" { "Failure" } } }
                tbody {
                    @for t in tasks {
                        tr {
                            td.num { (t.task_id) } td { span class={ "badge " (t.status) } { (t.status) } } td { (t.partition) }
                            td.num { (t.attempt) } td { (t.optimizer.clone().unwrap_or_default()) } td { (time(t.status_since)) }
                            td { (t.fail_reason.clone().unwrap_or_default()) }
                        }
                    }
                }
            } }
        }
    })
}

async fn maintenance(state: &AppState, viewer: &Viewer, table: &Loaded) -> Result<Markup, PageError> {
    let runs = api::list_maintenance_runs(
        State(state.clone()),
        ApiPath(table.api_path()),
        ApiQuery(api::RunsQuery { limit: Some(100), offset: None }),
    )
    .await?
    .0;
    let action_base = table_href(&table.catalog, &table.namespace, &table.name, "");
    Ok(html! {
        p.muted { "Preview runs an action with dry_run: it reports what would go and changes nothing." }
        div.scroll { table {
            thead { tr { th scope="col" { "Action" } th scope="col" { "Last run" } th scope="col" { "Do" } } }
            tbody {
                @for action in loch_optimizing::maintenance::MaintenanceAction::ALL {
                    @let name = action.as_str();
                    @let last = runs.iter().find(|r| r.action == name);
                    tr {
                        td { (name) }
                        td { @if let Some(r) = last { span class={ "badge " (r.status) } { (r.status) } " " (time(r.started_at)) } @else { "never" } }
                        td {
                            form.inline method="post" action={ (action_base) "/maintenance/" (name) } {
                                (viewer.csrf_field())
                                input type="hidden" name="dry_run" value="true";
                                button type="submit" { "Preview" }
                            }
                            " "
                            form.inline method="post" action={ (action_base) "/maintenance/" (name) } {
                                (viewer.csrf_field())
                                input type="hidden" name="dry_run" value="false";
                                button.primary type="submit" { "Run now" }
                            }
                        }
                    }
                }
            }
        } }
        h3 { "Runs" }
        div.scroll { table {
            thead { tr { th.num scope="col" { "Run" } th scope="col" { "Action" } th scope="col" { "Status" } th scope="col" { "Started" } th scope="col" { "Summary" } th scope="col" { "Failure" } } }
            tbody {
                @for r in &runs {
                    tr {
                        td.num { (r.id) } td { (r.action) } td { span class={ "badge " (r.status) } { (r.status) } } td { (time(r.started_at)) }
                        td.path { (r.summary.as_ref().map(summary_text).unwrap_or_default()) }
                        td { (r.fail_message.clone().unwrap_or_default()) }
                    }
                }
            }
        } }
    })
}

/// A run's summary without its list of paths.
fn summary_text(summary: &serde_json::Value) -> String {
    match summary {
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_array() && !v.is_object())
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// Metadata files of the log compared per page of the Operations tab.
const LOG_PAGE: usize = 20;

/// Schema, spec and property changes, newest first, read from the metadata log a page of
/// files at a time and written as the DDL that would make them.
async fn operations(state: &AppState, table: &Loaded, query: &TabQuery) -> Result<Markup, PageError> {
    let metadata = table.metadata();
    let log = metadata.metadata_log();
    // Page 1 compares the newest files: the current metadata and the log's last LOG_PAGE.
    let paging = Paging::new(query.page, LOG_PAGE, log.len());
    let newest_first: Vec<_> = log.iter().rev().collect();
    let chosen = &newest_first[paging.range()];
    let mut versions = Vec::new();
    if paging.page == 1 {
        versions.push(Some(std::sync::Arc::new(crate::dashboard::cache::Version::of(
            metadata,
            metadata.last_updated_ms(),
        ))));
    } else if let Some(newer) = newest_first.get(paging.range().start - 1) {
        versions
            .push(state.dashboard.cache.version(&table.managed.table, &newer.metadata_file, newer.timestamp_ms).await);
    }
    for entry in chosen {
        versions
            .push(state.dashboard.cache.version(&table.managed.table, &entry.metadata_file, entry.timestamp_ms).await);
    }
    let name = format!("{}.{}", table.namespace.join("."), table.name);
    let mut operations: Vec<(i64, String)> = Vec::new();
    for pair in versions.windows(2) {
        if let [Some(after), Some(before)] = pair {
            for ddl in ddl_between(&name, before, after) {
                operations.push((after.at, ddl));
            }
        }
    }
    let base = table.href("operations");
    Ok(html! {
        p.muted { "Changes between the files of the metadata log (" (log.len()) " files), newest first." }
        (paging.nav(|p| format!("{base}&page={p}")))
        @if operations.is_empty() { p { "No schema, partitioning or property change between these files." } }
        @else {
            div.scroll { table {
                thead { tr { th scope="col" { "Time" } th scope="col" { "Operation" } } }
                tbody { @for (at, ddl) in &operations { tr { td { (time(*at)) } td { code { (ddl) } } } } }
            } }
        }
    })
}

/// The DDL that turns `before` into `after`: columns added, dropped, renamed or retyped,
/// partitioning replaced, properties set or unset.
fn ddl_between(name: &str, before: &Version, after: &Version) -> Vec<String> {
    let mut out = Vec::new();
    let (old, new) = (&before.schema, &after.schema);
    if old.schema_id() != new.schema_id() {
        for f in new.as_struct().fields() {
            match old.field_by_id(f.id) {
                None => out.push(format!("ALTER TABLE {name} ADD COLUMN {} {}", f.name, f.field_type)),
                Some(o) => {
                    if o.name != f.name {
                        out.push(format!("ALTER TABLE {name} RENAME COLUMN {} TO {}", o.name, f.name));
                    }
                    if o.field_type != f.field_type {
                        out.push(format!("ALTER TABLE {name} ALTER COLUMN {} TYPE {}", f.name, f.field_type));
                    }
                }
            }
        }
        for o in old.as_struct().fields() {
            if new.field_by_id(o.id).is_none() {
                out.push(format!("ALTER TABLE {name} DROP COLUMN {}", o.name));
            }
        }
    }
    if before.spec_id != after.spec_id {
        out.push(format!("ALTER TABLE {name} REPLACE PARTITION FIELDS ({})", after.spec.join(", ")));
    }
    let set: Vec<String> = after
        .properties
        .iter()
        .filter(|(k, v)| before.properties.get(*k) != Some(v))
        .map(|(k, v)| format!("'{k}' = '{v}'"))
        .collect();
    if !set.is_empty() {
        out.push(format!("ALTER TABLE {name} SET TBLPROPERTIES ({})", set.join(", ")));
    }
    let unset: Vec<String> =
        before.properties.keys().filter(|k| !after.properties.contains_key(*k)).map(|k| format!("'{k}'")).collect();
    if !unset.is_empty() {
        out.push(format!("ALTER TABLE {name} UNSET TBLPROPERTIES ({})", unset.join(", ")));
    }
    if before.format_version != after.format_version {
        out.push(format!("ALTER TABLE {name} SET TBLPROPERTIES ('format-version' = '{}')", after.format_version));
    }
    out
}

/// A keyed table's change store: its transactions and the newest changes.
async fn changes(table: &Loaded) -> Result<Markup, PageError> {
    let Some(keyed) = &table.managed.keyed else { return Ok(html! {}) };
    let change = keyed.change.metadata();
    let mut snapshots: Vec<_> = change.snapshots().collect();
    snapshots.sort_by_key(|s| std::cmp::Reverse(s.sequence_number()));
    let total = |k: &str| {
        change
            .current_snapshot()
            .and_then(|s| s.summary().additional_properties.get(k).and_then(|v| v.parse::<i64>().ok()))
            .unwrap_or(0)
    };
    Ok(html! {
        (facts([
            ("Change files", html! { (count(total("total-data-files") + total("total-delete-files"))) }),
            ("Change records", html! { (count(total("total-records"))) }),
            ("Transactions kept", html! { (count(snapshots.len() as i64)) }),
            ("Last transaction", html! { (change.last_sequence_number()) }),
        ]))
        h3 { "CDC stream: the newest changes" }
        p.muted { "The last " (CDC_TRANSACTIONS) " transactions, at most " (CDC_ROWS) " rows; the whole stream is " code { (table.name) "$changes" } " in the terminal." }
        (cdc_rows(&keyed.change).await)
        h3 { "Newest transactions" }
        div.scroll { table {
            thead { tr { th.num scope="col" { "Transaction" } th scope="col" { "Committed" } th scope="col" { "Operation" } th.num scope="col" { "Records added" } } }
            tbody {
                @for s in snapshots.iter().take(PER_PAGE) {
                    tr {
                        td.num { (s.sequence_number()) } td { (time(s.timestamp_ms())) } td { (s.summary().operation.as_str()) }
                        td.num { (s.summary().additional_properties.get("added-records").cloned().unwrap_or_default()) }
                    }
                }
            }
        } }
    })
}

/// Transactions of the CDC stream shown.
const CDC_TRANSACTIONS: i64 = 10;
/// Rows of the CDC stream shown.
const CDC_ROWS: usize = 200;

/// The newest changes of a change store as a table (or why they cannot be shown).
async fn cdc_rows(change: &iceberg::table::Table) -> Markup {
    let last = change.metadata().last_sequence_number();
    let removed = change
        .metadata()
        .properties()
        .get(loch_table::mixed::properties::REMOVED_THROUGH)
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let from = (last - CDC_TRANSACTIONS).max(removed).max(0);
    let batches = match loch_table::mixed::merge::read_changes(change, Some(from), None).await {
        Ok(batches) => batches,
        Err(e) => return notice("error", &format!("cannot read the changes: {e}")),
    };
    let Some(first) = batches.first() else { return html! { p { "No changes." } } };
    let options = arrow_cast::display::FormatOptions::default().with_null("NULL");
    let mut rows: Vec<Vec<String>> = Vec::new();
    'batches: for batch in batches.iter().rev() {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .filter_map(|c| arrow_cast::display::ArrayFormatter::try_new(c.as_ref(), &options).ok())
            .collect();
        for row in (0..batch.num_rows()).rev() {
            if rows.len() >= CDC_ROWS {
                break 'batches;
            }
            rows.push(formatters.iter().map(|f| f.value(row).to_string()).collect());
        }
    }
    rows.reverse();
    html! {
        div.scroll { table {
            thead { tr { @for f in first.schema().fields() { th scope="col" { (f.name()) } } } }
            tbody { @for row in &rows { tr { @for v in row { td { (v) } } } } }
        } }
    }
}

/// `POST .../processes/{id}/cancel`.
pub async fn cancel_process(
    viewer: Viewer,
    State(state): State<AppState>,
    Path((catalog, namespace, table, id)): Path<(String, String, String, i64)>,
    Form(form): Form<crate::dashboard::CsrfForm>,
) -> Result<Response, PageError> {
    viewer.check(&form.csrf)?;
    let path = ProcessPath { catalog: catalog.clone(), namespace: namespace.clone(), table: table.clone(), id };
    let _process = api::cancel_process(State(state), ApiPath(path)).await?;
    let namespace: Vec<String> = namespace.split('.').map(str::to_string).collect();
    Ok(see_other(&table_href(&catalog, &namespace, &table, "optimizing")))
}

/// The maintenance form.
#[derive(Debug, Deserialize)]
pub struct MaintenanceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    dry_run: Option<String>,
}

/// `POST .../maintenance/{action}`: runs it (or previews it) and shows what it did.
pub async fn run_maintenance(
    viewer: Viewer,
    State(state): State<AppState>,
    Path((catalog, namespace, table, action)): Path<(String, String, String, String)>,
    Form(form): Form<MaintenanceForm>,
) -> Result<Response, PageError> {
    viewer.check(&form.csrf)?;
    let dry_run = form.dry_run.as_deref() == Some("true");
    let path = MaintenancePath {
        catalog: catalog.clone(),
        namespace: namespace.clone(),
        table: table.clone(),
        action: action.clone(),
    };
    let summary = api::run_maintenance(
        State(state),
        ApiPath(path),
        ApiQuery(MaintenanceQuery { dry_run: Some(dry_run), retain_last: None }),
    )
    .await?
    .0;
    let levels: Vec<String> = namespace.split('.').map(str::to_string).collect();
    let files: Vec<String> = summary
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(|v| v.as_array())
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let title = format!("{} {action} on {namespace}.{table}", if dry_run { "Preview of" } else { "Run of" });
    let body = html! {
        h1 { (title) }
        (notice(if dry_run { "info" } else { "ok" }, &summary_text(&summary)))
        @if !files.is_empty() {
            h2 { @if dry_run { "Files it would delete" } @else { "Files deleted" } }
            div.scroll { table { tbody { @for f in &files { tr { td.path { (f) } } } } } }
        }
        p { a href=(table_href(&catalog, &levels, &table, "maintenance")) { "Back to the table's maintenance" } }
    };
    Ok(render(&viewer, &title, Nav::Tables, body))
}
