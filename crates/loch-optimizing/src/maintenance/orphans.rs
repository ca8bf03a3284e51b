//! Orphan file cleaning (Amoro's `clean-orphan-files`): files under a table's location that no
//! version of its metadata references and that are older than
//! `clean-orphan-file.min-existing-time-minutes` — the leftovers of failed commits and crashed
//! writers — are deleted, then empty directories.
//!
//! The listing runs without the table's lock (it can take long on object stores). Before
//! anything is deleted the table is loaded again and whatever a commit made meanwhile
//! references is kept too; a younger file (a commit in flight) is never a candidate.

use loch_catalog::CatalogService;
use loch_catalog::storage::policy::delete_inside;
use loch_table::location::Location;
use loch_table::orphans::{ListedFile, find_orphans, orphan_roots, remove_empty_dirs};

use crate::error::{OptimizingError, Result};
use crate::maintenance::MaintenanceSummary;
use crate::maintenance::properties::MaintenanceProperties;
use crate::table::ManagedTable;

/// Files handed to storage per delete call.
const DELETE_CHUNK: usize = 1_000;
/// Paths a run lists at most.
const LISTED_PATHS: usize = 1_000;

fn location_of(raw: &str) -> Result<Location> {
    Location::parse(raw).map_err(|e| OptimizingError::Corrupt(format!("table location {raw}: {e}")))
}

/// Cleans the orphan files of table `table_id` as its properties say (but never files younger
/// than `floor`), at time `now_ms`; with `dry_run`, reports what would go (counts, bytes, the
/// first paths) and deletes nothing.
pub async fn clean_orphan_files(
    catalogs: &CatalogService,
    table_id: i64,
    now_ms: i64,
    floor: std::time::Duration,
    dry_run: bool,
) -> Result<MaintenanceSummary> {
    let missing = || OptimizingError::NotFound(format!("table {table_id}"));
    let table = ManagedTable::load(catalogs, table_id).await?.ok_or_else(missing)?;
    let metadata = table.table.metadata_ref();
    let props = MaintenanceProperties::resolve(&table.catalog.record.properties, metadata.properties())?;
    let mut summary = MaintenanceSummary { dry_run, ..MaintenanceSummary::default() };
    if !props.orphans.enabled {
        summary.skipped =
            Some("orphan cleaning is off (clean-orphan-file.enabled is false or gc.enabled is false)".into());
        return Ok(summary);
    }
    let min_existing = i64::try_from(props.orphans.min_existing.max(floor).as_millis()).unwrap_or(i64::MAX);
    let older_than = now_ms.saturating_sub(min_existing);
    summary.older_than_ms = older_than;
    let scope = location_of(metadata.location())?;
    let io = table.table.file_io();
    let roots = orphan_roots(&metadata)?;
    let (mut referenced, found) =
        find_orphans(io, &metadata, table.table.metadata_location(), &roots, older_than).await?;

    // Commits that landed while listing: keep what they reference as well.
    let latest = ManagedTable::load(catalogs, table_id).await?.ok_or_else(missing)?;
    if latest.table.metadata_location() != table.table.metadata_location() {
        let newer = latest.table.metadata_ref();
        referenced.add(io, &newer, latest.table.metadata_location()).await?;
        if location_of(newer.location())? != scope {
            summary.skipped = Some("the table moved while its location was listed; nothing deleted".into());
            return Ok(summary);
        }
    }
    let orphans: Vec<ListedFile> = found.into_iter().filter(|f| !referenced.contains(&f.path)).collect();

    let metadata_dir = metadata
        .properties()
        .get("write.metadata.path")
        .and_then(|p| Location::parse(p).ok())
        .unwrap_or_else(|| location_of(&scope.join("metadata")).unwrap_or_else(|_| scope.clone()));
    for file in &orphans {
        if metadata_dir.contains_str(&file.path) {
            summary.metadata_files += 1;
        } else {
            summary.content_files += 1;
        }
        summary.bytes += file.size;
    }
    summary.paths = orphans.iter().take(LISTED_PATHS).map(|f| f.path.clone()).collect();
    if dry_run {
        return Ok(summary);
    }
    for chunk in orphans.chunks(DELETE_CHUNK) {
        let paths = chunk.iter().map(|f| f.path.clone()).collect();
        let deleted = delete_inside(io, &table.catalog.warehouse.location, &scope, paths).await?;
        summary.files_skipped += deleted.skipped;
    }
    for root in &roots {
        summary.dirs_removed += remove_empty_dirs(root).await;
    }
    metrics::counter!("loch_maintenance_files_deleted_total", "action" => "clean-orphan-files")
        .increment(orphans.len() as u64);
    tracing::info!(
        table = %table.display_name(),
        files = orphans.len(),
        bytes = summary.bytes,
        dirs = summary.dirs_removed,
        referenced = referenced.len(),
        "orphan files deleted"
    );
    Ok(summary)
}
