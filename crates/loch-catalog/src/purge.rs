//! Deleting a dropped table's files (`purgeRequested`), in the background and resumable.
//!
//! The drop records a purge in the same transaction that deletes the table row, so the files are
//! never forgotten and no new table can claim the location meanwhile. A purge then deletes, inside
//! the table's own location only, every file the last metadata reaches (data and delete files,
//! manifests, manifest lists, statistics, the metadata log), then the location's whole directory
//! tree (files of failed commits, say) when it lies inside the warehouse; and finally forgets the
//! record. The drop waits a while for its purge; the background purger picks up whatever is left,
//! including purges a restart interrupted. Files a metadata file references outside the location
//! are skipped and logged. Manifests are read one at a time, so memory stays bounded by the
//! largest manifest.

use std::sync::Arc;
use std::time::Duration;

use iceberg::io::FileIO;
use iceberg::spec::ManifestList;
use loch_meta::PurgeRecord;
use loch_table::location::Location;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{CatalogError, Result};
use crate::metadata::read_metadata;
use crate::service::CatalogService;
use crate::storage::policy::{Deleted, ReadLimits, delete_inside, delete_tree, read_bounded};

/// Counts of what a purge deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PurgeStats {
    /// Data and delete files.
    pub content_files: u64,
    /// Manifests and manifest lists.
    pub manifest_files: u64,
    /// Metadata and statistics files.
    pub metadata_files: u64,
    /// Reachable files left alone because they lie outside the table's location.
    pub skipped_foreign: u64,
    /// True when the location's directory tree was deleted too.
    pub tree_deleted: bool,
}

impl PurgeStats {
    fn add(&mut self, deleted: Deleted, kind: fn(&mut Self) -> &mut u64) {
        *kind(self) += deleted.deleted;
        self.skipped_foreign += deleted.skipped;
    }
}

/// How often the background purger retries purges that failed.
const RETRY_INTERVAL: Duration = Duration::from_secs(60);

impl CatalogService {
    /// Runs the purge of a just-dropped table on its own task, waiting for it up to the
    /// configured time; it finishes in the background if it takes longer.
    pub(crate) async fn purge_now(self: &Arc<Self>, record: PurgeRecord) {
        let service = self.clone();
        let task = tokio::spawn(async move { service.run_purge(record).await });
        if tokio::time::timeout(self.options.purge_wait, task).await.is_err() {
            tracing::info!("purge continues in the background");
        }
    }

    /// Starts the background purger: it works off pending purges now (those a restart
    /// interrupted), whenever woken, and retries failed ones every minute, until `stop`.
    pub fn spawn_purger(self: &Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                match service.store.pending_purges().await {
                    Ok(pending) => {
                        for record in pending {
                            if *stop.borrow() {
                                return;
                            }
                            service.run_purge(record).await;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot list pending purges"),
                }
                tokio::select! {
                    _ = service.purge_wake.notified() => {}
                    _ = tokio::time::sleep(RETRY_INTERVAL) => {}
                    _ = stop.changed() => return,
                }
            }
        })
    }

    /// Pending purges of a catalog (dropped tables whose files are still being deleted).
    pub async fn pending_purges(&self, catalog: &str) -> Result<Vec<PurgeRecord>> {
        let catalog = self.get_catalog(catalog).await?;
        Ok(self.store.pending_purges().await?.into_iter().filter(|p| p.catalog_id == catalog.id).collect())
    }

    /// Runs one purge unless it already runs in this process; records the outcome.
    async fn run_purge(&self, record: PurgeRecord) {
        {
            let Ok(mut running) = self.purging.lock() else { return };
            if !running.insert(record.id) {
                return;
            }
        }
        let outcome = self.purge(&record).await;
        if let Ok(mut running) = self.purging.lock() {
            running.remove(&record.id);
        }
        match outcome {
            Ok(stats) => {
                tracing::info!(table = %record.table_name, location = %record.location, ?stats, "purged table files");
                metrics::counter!("loch_catalog_purges_total", "result" => "success").increment(1);
                if let Err(e) = self.store.finish_purge(record.id).await {
                    tracing::warn!(error = %e, "cannot record a finished purge; it will run again");
                }
            }
            Err(e) => {
                tracing::warn!(table = %record.table_name, location = %record.location, error = %e,
                    "purge failed; it will be retried");
                metrics::counter!("loch_catalog_purges_total", "result" => "failure").increment(1);
                if let Err(e) = self.store.fail_purge(record.id, &e.to_string()).await {
                    tracing::warn!(error = %e, "cannot record a failed purge");
                }
            }
        }
    }

    async fn purge(&self, record: &PurgeRecord) -> Result<PurgeStats> {
        let catalog = self
            .store
            .get_catalog_by_id(record.catalog_id)
            .await?
            .ok_or_else(|| CatalogError::Internal(format!("catalog {} of a purge is gone", record.catalog_id)))?;
        let warehouse = self.warehouse_of(&catalog)?;
        let scope = Location::parse(&record.location)
            .map_err(|e| CatalogError::Internal(format!("location of a purge: {e}")))?;
        let io = &warehouse.file_io;
        // What the metadata reaches first (the tree deletion below may not be allowed); a
        // metadata file that cannot be read leaves the rest to the tree deletion.
        let reachable = if scope.contains_str(&record.metadata_location) {
            purge_reachable(io, &warehouse.location, &scope, &record.metadata_location, self.options.read_limits).await
        } else {
            Ok(PurgeStats::default())
        };
        let mut stats = match reachable {
            Ok(stats) => stats,
            Err(e) => {
                tracing::warn!(table = %record.table_name, error = %e, "cannot delete what the metadata reaches");
                PurgeStats::default()
            }
        };
        let live: Vec<_> = self
            .store
            .locations_overlapping(&record.location, None)
            .await?
            .into_iter()
            .filter(|o| o.kind != "purge")
            .collect();
        if live.is_empty() {
            stats.tree_deleted = delete_tree(io, &warehouse.location, &scope).await?;
        } else {
            tracing::warn!(location = %scope, ?live, "not deleting a directory other tables or views still use");
        }
        Ok(stats)
    }
}

/// Deletes what the metadata at `metadata_location` reaches inside `scope`. A missing metadata
/// file (a purge interrupted after deleting it) leaves the rest to the tree deletion.
async fn purge_reachable(
    io: &FileIO,
    warehouse: &Location,
    scope: &Location,
    metadata_location: &str,
    limits: ReadLimits,
) -> Result<PurgeStats> {
    let mut stats = PurgeStats::default();
    if !io.exists(metadata_location).await.unwrap_or(false) {
        return Ok(stats);
    }
    let cached = read_metadata(io, metadata_location, limits).await?;
    let metadata = &cached.metadata;
    let mut seen_manifests = std::collections::HashSet::new();

    for snapshot in metadata.snapshots() {
        let list_path = snapshot.manifest_list();
        if !scope.contains_str(list_path) {
            stats.skipped_foreign += 1;
            continue;
        }
        let bytes = match read_bounded(io, list_path, limits).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(path = %list_path, error = %e, "cannot read manifest list during purge");
                continue;
            }
        };
        let list = ManifestList::parse_with_version(&bytes, metadata.format_version())
            .map_err(|e| CatalogError::storage(format!("parse {list_path}"), e))?;
        for manifest in list.entries() {
            if !seen_manifests.insert(manifest.manifest_path.clone()) {
                continue;
            }
            if !scope.contains_str(&manifest.manifest_path) {
                stats.skipped_foreign += 1;
                continue;
            }
            match manifest.load_manifest(io).await {
                Ok(loaded) => {
                    let paths = loaded.entries().iter().map(|e| e.file_path().to_string()).collect();
                    stats.add(delete_inside(io, warehouse, scope, paths).await?, |s| &mut s.content_files);
                }
                Err(e) => {
                    tracing::warn!(path = %manifest.manifest_path, error = %e, "cannot read manifest during purge")
                }
            }
            stats.add(delete_inside(io, warehouse, scope, vec![manifest.manifest_path.clone()]).await?, |s| {
                &mut s.manifest_files
            });
        }
        stats.add(delete_inside(io, warehouse, scope, vec![list_path.to_string()]).await?, |s| &mut s.manifest_files);
    }

    let mut others: Vec<String> = metadata.statistics_iter().map(|s| s.statistics_path.clone()).collect();
    others.extend(metadata.partition_statistics_iter().map(|s| s.statistics_path.clone()));
    others.extend(metadata.metadata_log().iter().map(|l| l.metadata_file.clone()));
    others.push(metadata_location.to_string());
    stats.add(delete_inside(io, warehouse, scope, others).await?, |s| &mut s.metadata_files);
    Ok(stats)
}
