//! Deleting a dropped table's files (`purgeRequested`).
//!
//! First every file the metadata reaches (data and delete files, manifests, manifest lists,
//! statistics, metadata files of the log) that lies in one of the table's own directories —
//! files elsewhere (another table's, say, after a register) are never touched; then, when the
//! table's location is inside the warehouse and no other table shares it, everything left
//! under it (files of failed commits, for example). Manifests are read one at a time, so
//! memory stays bounded by the largest manifest, not the table.

use std::collections::HashSet;

use futures::stream;
use iceberg::io::FileIO;
use iceberg::spec::ManifestList;

use crate::error::{CatalogError, Result};
use crate::metadata::read_metadata;
use crate::storage::{is_under, table_directories};

/// Counts of what a purge deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PurgeStats {
    /// Data and delete files.
    pub content_files: u64,
    /// Manifests and manifest lists.
    pub manifest_files: u64,
    /// Metadata and statistics files.
    pub metadata_files: u64,
    /// Reachable files left alone because they lie outside the table's directories.
    pub skipped_foreign: u64,
}

/// Deletes a dropped table's files; failures are logged (the table is already dropped).
pub(crate) async fn purge_table(io: &FileIO, metadata_location: &str, location: &str, exclusive_location: bool) {
    match purge_reachable(io, metadata_location).await {
        Ok(stats) => tracing::info!(%location, ?stats, "purged table files"),
        Err(e) => tracing::warn!(%location, error = %e, "purge of reachable files failed; remaining files are orphans"),
    }
    if exclusive_location && let Err(e) = io.delete_prefix(format!("{location}/")).await {
        tracing::warn!(%location, error = %e, "cannot delete the table location");
    }
}

async fn purge_reachable(io: &FileIO, metadata_location: &str) -> Result<PurgeStats> {
    let cached = read_metadata(io, metadata_location).await?;
    let metadata = &cached.metadata;
    let dirs = table_directories(metadata);
    let owned = |path: &str| dirs.iter().any(|dir| is_under(path, dir));
    let mut stats = PurgeStats::default();
    let mut seen_manifests = HashSet::new();
    let delete = |path: String| async move {
        io.delete(&path).await.map_err(|e| CatalogError::storage(format!("delete {path}"), e))
    };

    for snapshot in metadata.snapshots() {
        let list_path = snapshot.manifest_list().to_string();
        if !owned(&list_path) {
            stats.skipped_foreign += 1;
            continue;
        }
        let read = match io.new_input(&list_path) {
            Ok(file) => file.read().await,
            Err(e) => Err(e),
        };
        let bytes = match read {
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
            if !owned(&manifest.manifest_path) {
                stats.skipped_foreign += 1;
                continue;
            }
            match manifest.load_manifest(io).await {
                Ok(loaded) => {
                    let (paths, foreign): (Vec<String>, Vec<String>) =
                        loaded.entries().iter().map(|e| e.file_path().to_string()).partition(|p| owned(p));
                    stats.content_files += paths.len() as u64;
                    stats.skipped_foreign += foreign.len() as u64;
                    io.delete_stream(stream::iter(paths))
                        .await
                        .map_err(|e| CatalogError::storage("delete content files", e))?;
                }
                Err(e) => {
                    tracing::warn!(path = %manifest.manifest_path, error = %e, "cannot read manifest during purge")
                }
            }
            delete(manifest.manifest_path.clone()).await?;
            stats.manifest_files += 1;
        }
        delete(list_path).await?;
        stats.manifest_files += 1;
    }

    let mut others: Vec<String> = metadata.statistics_iter().map(|s| s.statistics_path.clone()).collect();
    others.extend(metadata.partition_statistics_iter().map(|s| s.statistics_path.clone()));
    others.extend(metadata.metadata_log().iter().map(|l| l.metadata_file.clone()));
    others.push(metadata_location.to_string());
    for path in others {
        if owned(&path) {
            delete(path).await?;
            stats.metadata_files += 1;
        } else {
            stats.skipped_foreign += 1;
        }
    }
    Ok(stats)
}
