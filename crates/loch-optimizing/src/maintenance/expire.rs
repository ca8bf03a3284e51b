//! Snapshot expiry of one table (Amoro's `expire-snapshots`): under the table's commit lock,
//! pick the snapshots older than the keep duration beyond each branch's newest `min-count`
//! (tags and refs' own retention keep theirs), commit their removal through the catalog's commit
//! path, then delete the files only they reached, inside the table's location only.
//!
//! Amoro's protections hold: the snapshot a running optimizing process planned from stays (its
//! commit validates against it), and while data expiration counts from the last commit, so does
//! the newest snapshot a writer other than Loch committed, with everything after each.

use iceberg::io::FileIO;
use iceberg::spec::TableMetadataRef;
use loch_catalog::storage::policy::delete_inside;
use loch_catalog::{CatalogService, TableChange};
use loch_meta::MetaStore;
use loch_table::expire::{CANDIDATE_BATCH, FileKind, UnreachableSink, plan_expiry, walk_unreachable};
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
    expire_snapshots_retaining(catalogs, store, table_id, now_ms, dry_run, None).await
}

/// [`expire_snapshots`], or with `retain_last` (`EXPIRE SNAPSHOTS t RETAIN n`) keeping only the
/// `n` newest snapshots of each branch whatever their age. Either way the bases of running
/// processes stay, and the table's switches hold.
pub async fn expire_snapshots_retaining(
    catalogs: &CatalogService,
    store: &MetaStore,
    table_id: i64,
    now_ms: i64,
    dry_run: bool,
    retain_last: Option<usize>,
) -> Result<(MaintenanceSummary, Option<Expired>)> {
    let (mut lock, mut table) = ManagedTable::load_locked(catalogs, table_id).await?;
    let mut metadata = table.table.metadata_ref();
    let props = MaintenanceProperties::resolve(&table.catalog.record.properties, metadata.properties())?;
    let mut summary = MaintenanceSummary { dry_run, ..MaintenanceSummary::default() };
    if !props.expire.enabled {
        summary.skipped = Some("snapshot expiry is off (table-expire.enabled or gc.enabled is false)".into());
        return Ok((summary, None));
    }
    // A keyed table's change store first sheds folded change data past its TTL, so that
    // the expiry below deletes the files.
    if table.is_change_store() {
        drop(lock);
        summary.change_files_expired =
            super::change_ttl::expire_change_data(catalogs, table_id, now_ms, dry_run).await?;
        (lock, table) = ManagedTable::load_locked(catalogs, table_id).await?;
        metadata = table.table.metadata_ref();
    }

    let (keep_ms, min_count) = match retain_last {
        // Older than now: every snapshot but the newest `n` of each branch.
        Some(n) => (-1, n.max(1)),
        None => (i64::try_from(props.expire.keep.as_millis()).unwrap_or(i64::MAX), props.expire.min_count),
    };
    let mut older_than = now_ms.saturating_sub(keep_ms);
    let optimizing = |p: &crate::record::TableProcess| {
        p.table_id == table_id && matches!(p.action, crate::record::ProcessAction::Optimizing(_))
    };
    for process in Processes(store).running().await?.into_iter().filter(optimizing) {
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

    let Some(mut change) = plan_expiry(&table.table, older_than, min_count).await? else {
        return Ok((summary, None));
    };
    // A keyed table's base store keeps its optimized sequence (folded change files would be
    // read again otherwise).
    if loch_table::mixed::properties::store_of(table.table.metadata().properties())
        == Some(loch_table::mixed::properties::Store::Base)
    {
        loch_table::mixed::sequence::keep_optimized_sequence(&table.table.metadata_ref(), &mut change)?;
    }
    summary.snapshots_expired = change.expired_snapshots.len();
    summary.refs_removed = change.removed_refs.clone();
    summary.metadata_before = table.table.metadata_location().map(str::to_string);
    let io = table.table.file_io();
    if dry_run {
        let mut counter = Deleter {
            io: io.clone(),
            warehouse: table.catalog.warehouse.location.clone(),
            scope: None,
            summary: summary.clone(),
            pause: None,
        };
        walk_unreachable(io, &metadata, &change.after, CANDIDATE_BATCH, &mut counter).await?;
        return Ok((counter.summary, None));
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
    // The commit path re-applies a change that lost a race to the newer metadata, and removing
    // snapshots silently drops any ref a concurrent commit (on another server) pointed at one
    // of them. Files are deleted only when nothing came in between; otherwise orphan cleaning
    // gets them later.
    let base = after.metadata_log().last().map(|entry| entry.metadata_file.as_str());
    if base != summary.metadata_before.as_deref() {
        tracing::warn!(
            table = %table.display_name(),
            "another commit came in between the expiry's read and its commit; its files are left in place"
        );
        summary.skipped = Some("another commit came in between; expired files are left for orphan cleaning".into());
        return Ok((summary, None));
    }
    Ok((summary, Some(Expired { table, before: metadata, after })))
}

/// Deletes the files only the expired snapshots reached (content files, then manifests, then
/// manifest lists and statistics files), inside the table's location only, and counts them into
/// `summary`. Run again with the same versions, it finishes an interrupted deletion. Files are
/// deleted as they are found, a batch at a time, so memory does not grow with the table.
/// `pause` (a test hook) waits after each batch of deletions.
pub async fn delete_expired(
    expired: &Expired,
    summary: &mut MaintenanceSummary,
    pause: Option<std::time::Duration>,
) -> Result<()> {
    let after = &expired.after;
    let scope = Location::parse(after.location())
        .map_err(|e| OptimizingError::Corrupt(format!("table location {}: {e}", after.location())))?;
    let io = expired.table.table.file_io();
    let mut deleter = Deleter {
        io: io.clone(),
        warehouse: expired.table.catalog.warehouse.location.clone(),
        scope: Some(scope),
        summary: MaintenanceSummary::default(),
        pause,
    };
    walk_unreachable(io, &expired.before, after, CANDIDATE_BATCH, &mut deleter).await?;
    let found = deleter.summary;
    metrics::counter!("loch_maintenance_files_deleted_total", "action" => "expire-snapshots")
        .increment((found.content_files + found.metadata_files) as u64);
    summary.content_files = found.content_files;
    summary.metadata_files = found.metadata_files;
    summary.bytes = found.bytes;
    summary.files_skipped = found.files_skipped;
    summary.paths = found.paths;
    Ok(())
}

/// Counts unreachable files into a summary (the first paths listed) and, with a scope, deletes
/// them inside it.
struct Deleter {
    io: FileIO,
    warehouse: Location,
    /// The table's location; `None` only counts (a dry run).
    scope: Option<Location>,
    summary: MaintenanceSummary,
    /// Test hook: wait this long after each batch.
    pause: Option<std::time::Duration>,
}

impl UnreachableSink for Deleter {
    async fn take(&mut self, kind: FileKind, files: Vec<(String, u64)>) -> loch_table::Result<()> {
        let s = &mut self.summary;
        match kind {
            FileKind::Content => s.content_files += files.len(),
            _ => s.metadata_files += files.len(),
        }
        s.bytes += files.iter().map(|(_, size)| size).sum::<u64>();
        let room = LISTED_PATHS.saturating_sub(s.paths.len());
        s.paths.extend(files.iter().take(room).map(|(path, _)| path.clone()));
        let Some(scope) = &self.scope else { return Ok(()) };
        for chunk in files.chunks(DELETE_CHUNK) {
            let paths = chunk.iter().map(|(path, _)| path.clone()).collect();
            let deleted = delete_inside(&self.io, &self.warehouse, scope, paths)
                .await
                .map_err(|e| loch_table::TableError::Invalid(format!("deleting expired files: {e}")))?;
            s.files_skipped += deleted.skipped;
        }
        if let Some(pause) = self.pause {
            tracing::warn!(?pause, ?kind, "test hook: pausing after deleting a batch");
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }
}
