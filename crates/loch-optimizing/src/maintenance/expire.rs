//! Snapshot expiry of one table (Amoro's `expire-snapshots`): under the table's commit lock,
//! pick the snapshots older than the keep duration beyond each branch's newest `min-count`
//! (tags and refs' own retention keep theirs), commit their removal through the catalog's commit
//! path, then delete the files only they reached, inside the table's location only.
//!
//! Amoro's protections hold: the snapshot a running optimizing process planned from stays (its
//! commit validates against it), and so does the newest snapshot a writer other than Loch
//! committed, with everything after each.

use std::collections::HashSet;

use loch_catalog::storage::policy::delete_inside;
use loch_catalog::{CatalogService, TableChange};
use loch_meta::MetaStore;
use loch_table::expire::{CANDIDATE_BATCH, Unreachable, plan_expiry, unreachable_files};
use loch_table::location::Location;
use serde::{Deserialize, Serialize};

use crate::error::{OptimizingError, Result};
use crate::maintenance::properties::MaintenanceProperties;
use crate::record::Processes;
use crate::table::ManagedTable;

/// `snapshot.producer` values of snapshots Loch (or Amoro) wrote itself.
pub const OWN_PRODUCERS: [&str; 3] = ["OPTIMIZE", "DATA_EXPIRATION", "CLEAN_DANGLING_DELETE"];

/// Paths a dry run lists at most.
const LISTED_PATHS: usize = 1_000;

/// Files handed to storage per delete call.
const DELETE_CHUNK: usize = 1_000;

/// What an expiry did, or in a dry run would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpireSummary {
    /// Nothing was committed or deleted.
    pub dry_run: bool,
    /// Why the action did not run (a switch is off), if it did not.
    pub skipped: Option<String>,
    /// Snapshots older than this (ms since epoch) could expire.
    pub older_than_ms: i64,
    /// Snapshots expired.
    pub snapshots_expired: usize,
    /// Refs removed (aged-out branches and tags).
    pub refs_removed: Vec<String>,
    /// Data and delete files deleted.
    pub content_files: usize,
    /// Manifests, manifest lists and statistics files deleted.
    pub metadata_files: usize,
    /// Bytes deleted (manifest lists not counted: their size is recorded nowhere).
    pub bytes: u64,
    /// Files left alone because they lie outside the table's location.
    pub files_skipped: u64,
    /// The first files deleted (a dry run lists them).
    pub paths: Vec<String>,
    /// The metadata file before the expiry and the one it committed: from these two the files
    /// to delete can be found again if the deletion is interrupted.
    pub metadata_before: Option<String>,
    /// See `metadata_before`.
    pub metadata_after: Option<String>,
}

/// Expires the snapshots of table `table_id` as its properties say, at time `now_ms`; with
/// `dry_run`, reports what would go and changes nothing.
pub async fn expire_snapshots(
    catalogs: &CatalogService,
    store: &MetaStore,
    table_id: i64,
    now_ms: i64,
    dry_run: bool,
) -> Result<ExpireSummary> {
    let dropped = || OptimizingError::NotFound(format!("table {table_id}"));
    let named = ManagedTable::load(catalogs, table_id).await?.ok_or_else(dropped)?;
    let lock = catalogs.lock_table(&named.catalog, &named.name).await;
    // Read again under the lock: no commit through this server can come in between.
    let table = ManagedTable::load(catalogs, table_id).await?.ok_or_else(dropped)?;
    let metadata = table.table.metadata_ref();
    let props = MaintenanceProperties::resolve(&table.catalog.record.properties, metadata.properties())?;
    let mut summary = ExpireSummary { dry_run, ..ExpireSummary::default() };
    if !props.expire.enabled {
        summary.skipped = Some("snapshot expiry is off (table-expire.enabled or gc.enabled is false)".into());
        return Ok(summary);
    }

    let keep_ms = i64::try_from(props.expire.keep.as_millis()).unwrap_or(i64::MAX);
    let mut older_than = now_ms.saturating_sub(keep_ms);
    for process in Processes(store).running().await?.into_iter().filter(|p| p.table_id == table_id) {
        if let Some(base) = process.target_snapshot_id.and_then(|id| metadata.snapshot_by_id(id)) {
            older_than = older_than.min(base.timestamp_ms());
        }
    }
    let newest_foreign = metadata
        .snapshots()
        .filter(|s| {
            let producer = s.summary().additional_properties.get("snapshot.producer");
            !producer.is_some_and(|p| OWN_PRODUCERS.contains(&p.as_str()))
        })
        .map(|s| s.timestamp_ms())
        .max();
    if let Some(ts) = newest_foreign {
        older_than = older_than.min(ts);
    }
    summary.older_than_ms = older_than;

    let Some(change) = plan_expiry(&table.table, older_than, props.expire.min_count).await? else {
        return Ok(summary);
    };
    summary.snapshots_expired = change.expired_snapshots.len();
    summary.refs_removed = change.removed_refs.clone();
    summary.metadata_before = table.table.metadata_location().map(str::to_string);
    let io = table.table.file_io();
    if dry_run {
        let unreachable = unreachable_files(io, &metadata, &change.after, CANDIDATE_BATCH).await?;
        count(&mut summary, &unreachable);
        return Ok(summary);
    }

    let ident = table.name.clone();
    let change = TableChange { ident, requirements: change.requirements, updates: change.updates };
    let committed = catalogs.commit_table_locked(&lock, &table.catalog, change).await?;
    drop(lock);
    summary.metadata_after = Some(committed.metadata_location.clone());
    tracing::info!(
        table = %table.display_name(),
        expired = summary.snapshots_expired,
        refs = ?summary.refs_removed,
        "snapshots expired"
    );
    let after = committed.metadata.metadata.clone();
    let unreachable = unreachable_files(io, &metadata, &after, CANDIDATE_BATCH).await?;
    count(&mut summary, &unreachable);
    summary.files_skipped = delete_unreachable(&table, &after, &unreachable).await?;
    metrics::counter!("loch_maintenance_files_deleted_total", "action" => "expire-snapshots")
        .increment(unreachable.len() as u64);
    Ok(summary)
}

/// Counts what `unreachable` holds into `summary` and lists its first paths.
fn count(summary: &mut ExpireSummary, unreachable: &Unreachable) {
    summary.content_files = unreachable.content_files.len();
    summary.metadata_files = unreachable.len() - unreachable.content_files.len();
    summary.bytes = unreachable.bytes;
    summary.paths = unreachable.in_deletion_order().take(LISTED_PATHS).cloned().collect();
}

/// Deletes `unreachable` in its order (content files, manifests, lists, statistics), a chunk at
/// a time, only inside the table's location; returns how many files were left alone.
async fn delete_unreachable(
    table: &ManagedTable,
    after: &iceberg::spec::TableMetadata,
    unreachable: &Unreachable,
) -> Result<u64> {
    let scope = Location::parse(after.location())
        .map_err(|e| OptimizingError::Corrupt(format!("table location {}: {e}", after.location())))?;
    let io = table.table.file_io();
    let warehouse = &table.catalog.warehouse.location;
    let mut skipped = 0;
    let mut seen = HashSet::new();
    let paths: Vec<&String> = unreachable.in_deletion_order().filter(|p| seen.insert(p.as_str())).collect();
    for chunk in paths.chunks(DELETE_CHUNK) {
        let deleted = delete_inside(io, warehouse, &scope, chunk.iter().map(|p| p.to_string()).collect()).await?;
        skipped += deleted.skipped;
    }
    Ok(skipped)
}
