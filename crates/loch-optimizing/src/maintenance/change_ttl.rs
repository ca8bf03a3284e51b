//! Change-data TTL of keyed tables (Amoro §4.5): change files already folded into the base
//! store (at or below their partition's optimized sequence) and added longer ago than
//! `change.data.ttl.minutes` (7 days) leave the change store; snapshot expiry then deletes them.
//! The change store records the greatest transaction removed, and CDC reads that start
//! before it answer with an error instead of silently skipping changes.

use std::collections::HashMap;

use futures::TryStreamExt;
use iceberg::TableUpdate;
use iceberg::spec::Operation;
use loch_catalog::{CatalogService, TableChange};
use loch_table::mixed::properties::REMOVED_THROUGH;
use loch_table::mixed::sequence::{partition_path, read_optimized_sequence};
use loch_table::scan::live_files;
use loch_table::snapshot::{RewriteFiles, SnapshotAction};

use crate::error::{OptimizingError, Result};
use crate::properties::{Props, merge};
use crate::table::ManagedTable;

/// `change.data.ttl.minutes`: how long folded change files stay in the change store.
pub const CHANGE_DATA_TTL: &str = "change.data.ttl.minutes";
/// Its default: 7 days.
pub const DEFAULT_CHANGE_DATA_TTL_MINUTES: i64 = 10080;

/// Removes the change store `change_id`'s folded change files older than its TTL at `now_ms`
/// (only counts them with `dry_run`); the number of files.
pub async fn expire_change_data(
    catalogs: &CatalogService,
    change_id: i64,
    now_ms: i64,
    dry_run: bool,
) -> Result<usize> {
    let (lock, change) = ManagedTable::load_locked(catalogs, change_id).await?;
    let Some(head) = change.table.metadata().current_snapshot().cloned() else { return Ok(0) };
    let base_name = change.name.name.strip_suffix(loch_catalog::keyed::CHANGE_SUFFIX).unwrap_or_default();
    let Some(base) = catalogs.store().get_table(change.catalog.record.id, &change.name.namespace, base_name).await?
    else {
        return Ok(0);
    };
    let Some(base) = ManagedTable::load(catalogs, base.id).await? else { return Ok(0) };
    let mut props = merge(&change.catalog.record.properties, base.table.metadata().properties());
    props.extend(change.table.metadata().properties().iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let ttl_minutes = Props(&props).num(CHANGE_DATA_TTL, DEFAULT_CHANGE_DATA_TTL_MINUTES)?;
    let older_than = now_ms.saturating_sub(ttl_minutes.saturating_mul(60_000));
    let sequence = read_optimized_sequence(&base.table).await?;

    let metadata = change.table.metadata_ref();
    // When each file was added: its snapshot's time (an expired snapshot was older still).
    let added_at: HashMap<i64, i64> = metadata.snapshots().map(|s| (s.sequence_number(), s.timestamp_ms())).collect();
    let mut expired = Vec::new();
    let mut files = live_files(change.table.file_io().clone(), metadata.clone(), head.clone());
    while let Some(file) = files.try_next().await? {
        let at = added_at.get(&file.file_sequence_number).copied().unwrap_or(i64::MIN);
        let spec = metadata
            .partition_spec_by_id(file.spec_id)
            .ok_or_else(|| OptimizingError::Corrupt(format!("change file {} has an unknown spec", file.path())))?;
        let path = partition_path(spec, file.file.partition(), metadata.current_schema())?;
        if !file.is_delete() && at < older_than && sequence.covers(&path, file.data_sequence_number) {
            expired.push(file);
        }
    }
    if expired.is_empty() || dry_run {
        return Ok(expired.len());
    }
    let through = expired.iter().map(|f| f.data_sequence_number).max().unwrap_or_default();
    let recorded = metadata.properties().get(REMOVED_THROUGH).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let count = expired.len();
    let mut delete = RewriteFiles::new(head.snapshot_id())
        .with_operation(Operation::Delete)
        .set_property("snapshot.producer", "loch-change-data-ttl");
    for file in expired {
        delete = delete.rewrite_data_file(file);
    }
    let mut pending = delete.prepare(&change.table).await?;
    pending.updates.push(TableUpdate::SetProperties {
        updates: HashMap::from([(REMOVED_THROUGH.to_string(), through.max(recorded).to_string())]),
    });
    let commit =
        TableChange { ident: change.name.clone(), requirements: pending.requirements, updates: pending.updates };
    if let Err(e) = catalogs.commit_table_locked(&lock, &change.catalog, commit).await {
        crate::committer::discard_written(change.table.file_io(), &pending.written_files, &e).await;
        return Err(e.into());
    }
    tracing::info!(table = %change.display_name(), files = count, through, "change data past its TTL removed");
    Ok(count)
}
