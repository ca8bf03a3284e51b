//! Snapshot expiry of one table (Amoro's `expire-snapshots`): under the table's commit lock,
//! pick the snapshots older than the keep duration beyond each branch's newest `min-count`
//! (tags and refs' own retention keep theirs), commit their removal through the catalog's commit
//! path, then delete the files only they reached, inside the table's location only.
//!
//! Amoro's protections hold: the snapshot a running optimizing process planned from stays (its
//! commit validates against it), and while data expiration counts from the last commit, so does
//! the newest snapshot a writer other than Loch committed, with everything after each.

use std::collections::HashSet;

use iceberg::spec::TableMetadataRef;
use loch_catalog::storage::policy::delete_inside;
use loch_catalog::{CatalogService, TableChange};
use loch_meta::MetaStore;
use loch_table::expire::{CANDIDATE_BATCH, Unreachable, plan_expiry, unreachable_files};
use loch_table::location::Location;

use crate::error::{OptimizingError, Result};
use crate::maintenance::MaintenanceSummary;
use crate::maintenance::properties::MaintenanceProperties;
use crate::record::Processes;
use crate::table::ManagedTable;

/// `snapshot.producer` values of snapshots Loch (or Amoro) wrote itself.
pub const OWN_PRODUCERS: [&str; 3] = ["OPTIMIZE", "DATA_EXPIRATION", "CLEAN_DANGLING_DELETE"];

/// Paths a run lists at most.
const LISTED_PATHS: usize = 1_000;

/// Files handed to storage per delete call.
const DELETE_CHUNK: usize = 1_000;

/// What committing an expiry leaves to do: delete the files only the expired snapshots reached.
#[derive(Debug)]
pub struct Expired {
    /// The table.
    pub table: ManagedTable,
    /// Its metadata before the expiry.
    pub before: TableMetadataRef,
    /// Its metadata after.
    pub after: TableMetadataRef,
}

/// Expires the snapshots of table `table_id` as its properties say, at time `now_ms`, and
/// commits that; the summary names the metadata before and after, from which
/// [`delete_expired`] deletes the files. With `dry_run`, reports what would go (files
/// included) and changes nothing.
pub async fn expire_snapshots(
    catalogs: &CatalogService,
    store: &MetaStore,
    table_id: i64,
    now_ms: i64,
    dry_run: bool,
) -> Result<(MaintenanceSummary, Option<Expired>)> {
    let dropped = || OptimizingError::NotFound(format!("table {table_id}"));
    let named = ManagedTable::load(catalogs, table_id).await?.ok_or_else(dropped)?;
    let lock = catalogs.lock_table(&named.catalog, &named.name).await;
    // Read again under the lock: no commit through this server can come in between.
    let table = ManagedTable::load(catalogs, table_id).await?.ok_or_else(dropped)?;
    let metadata = table.table.metadata_ref();
    let props = MaintenanceProperties::resolve(&table.catalog.record.properties, metadata.properties())?;
    let mut summary = MaintenanceSummary { dry_run, ..MaintenanceSummary::default() };
    if !props.expire.enabled {
        summary.skipped = Some("snapshot expiry is off (table-expire.enabled or gc.enabled is false)".into());
        return Ok((summary, None));
    }

    let keep_ms = i64::try_from(props.expire.keep.as_millis()).unwrap_or(i64::MAX);
    let mut older_than = now_ms.saturating_sub(keep_ms);
    for process in Processes(store).running().await?.into_iter().filter(|p| p.table_id == table_id) {
        if let Some(base) = process.target_snapshot_id.and_then(|id| metadata.snapshot_by_id(id)) {
            older_than = older_than.min(base.timestamp_ms());
        }
    }
    let newest_foreign = props
        .data_expire_from_last_commit
        .then(|| {
            metadata
                .snapshots()
                .filter(|s| {
                    let producer = s.summary().additional_properties.get("snapshot.producer");
                    !producer.is_some_and(|p| OWN_PRODUCERS.contains(&p.as_str()))
                })
                .map(|s| s.timestamp_ms())
                .max()
        })
        .flatten();
    if let Some(ts) = newest_foreign {
        older_than = older_than.min(ts);
    }
    summary.older_than_ms = older_than;

    let Some(change) = plan_expiry(&table.table, older_than, props.expire.min_count).await? else {
        return Ok((summary, None));
    };
    summary.snapshots_expired = change.expired_snapshots.len();
    summary.refs_removed = change.removed_refs.clone();
    summary.metadata_before = table.table.metadata_location().map(str::to_string);
    let io = table.table.file_io();
    if dry_run {
        let unreachable = unreachable_files(io, &metadata, &change.after, CANDIDATE_BATCH).await?;
        count(&mut summary, &unreachable);
        return Ok((summary, None));
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
    Ok((summary, Some(Expired { table, before: metadata, after })))
}

/// Deletes the files only the expired snapshots reached (content files, then manifests, then
/// manifest lists and statistics files), inside the table's location only, and counts them into
/// `summary`. Run again with the same versions, it finishes an interrupted deletion.
pub async fn delete_expired(expired: &Expired, summary: &mut MaintenanceSummary) -> Result<()> {
    let io = expired.table.table.file_io();
    let unreachable = unreachable_files(io, &expired.before, &expired.after, CANDIDATE_BATCH).await?;
    count(summary, &unreachable);
    summary.files_skipped = delete_unreachable(&expired.table, &expired.after, &unreachable).await?;
    metrics::counter!("loch_maintenance_files_deleted_total", "action" => "expire-snapshots")
        .increment(unreachable.len() as u64);
    Ok(())
}

/// Counts what `unreachable` holds into `summary` and lists its first paths.
fn count(summary: &mut MaintenanceSummary, unreachable: &Unreachable) {
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
