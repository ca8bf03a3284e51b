//! Which snapshots a time travel reads: one for an Iceberg table; for a keyed table one per
//! store, each store's newest at or before the same moment, so the merge-on-read sees the
//! table as it was then (a fold's base commit only ever follows the changes it folded).

use iceberg::spec::{MAIN_BRANCH, SnapshotReference, SnapshotRetention, TableMetadata, TableMetadataBuilder};
use iceberg::table::Table;

use crate::error::{Result, SqlError};
use crate::statement::TimeTravel;

/// The snapshot of `table` a time travel reads.
pub fn snapshot_of(table: &Table, travel: &TimeTravel) -> Result<i64> {
    let metadata = table.metadata();
    let name = table.identifier().name();
    match travel {
        TimeTravel::Snapshot(id) => metadata
            .snapshot_by_id(*id)
            .map(|s| s.snapshot_id())
            .ok_or_else(|| SqlError::invalid(format!("table {name} has no snapshot {id}"))),
        TimeTravel::Time(at) => snapshot_at(metadata, millis(at)?)
            .ok_or_else(|| SqlError::invalid(format!("table {name} has no snapshot at or before '{at}'"))),
    }
}

/// A keyed table's stores as of a time travel, pinned there (read-only copies whose current
/// snapshot is the one read; a store without a snapshot then reads as empty). A snapshot id
/// may be either store's: the other store is read as of that snapshot's commit.
pub fn keyed_as_of(name: &str, base: &Table, change: &Table, travel: &TimeTravel) -> Result<(Table, Table)> {
    let (at_base, at_change) = match travel {
        TimeTravel::Snapshot(id) => {
            if let Some(s) = base.metadata().snapshot_by_id(*id) {
                (Some(*id), snapshot_at(change.metadata(), s.timestamp_ms()))
            } else if let Some(s) = change.metadata().snapshot_by_id(*id) {
                (snapshot_at(base.metadata(), s.timestamp_ms()), Some(*id))
            } else {
                return Err(SqlError::invalid(format!(
                    "keyed table {name} has no snapshot {id} in its base or change store"
                )));
            }
        }
        TimeTravel::Time(at) => {
            let millis = millis(at)?;
            let pinned = (snapshot_at(base.metadata(), millis), snapshot_at(change.metadata(), millis));
            if pinned == (None, None) {
                return Err(SqlError::invalid(format!("keyed table {name} has no snapshot at or before '{at}'")));
            }
            pinned
        }
    };
    Ok((pinned(base, at_base)?, pinned(change, at_change)?))
}

/// The newest snapshot of the main branch's history committed at or before `millis`.
fn snapshot_at(metadata: &TableMetadata, millis: i64) -> Option<i64> {
    metadata
        .history()
        .iter()
        .filter(|entry| entry.timestamp_ms <= millis && metadata.snapshot_by_id(entry.snapshot_id).is_some())
        .max_by_key(|entry| entry.timestamp_ms)
        .map(|entry| entry.snapshot_id)
}

fn millis(at: &str) -> Result<i64> {
    let nanos = arrow_cast::parse::string_to_timestamp_nanos(at)
        .map_err(|e| SqlError::invalid(format!("'{at}' is not a timestamp: {e}")))?;
    Ok(nanos / 1_000_000)
}

/// A read-only copy of `table` whose main branch is at `snapshot` (none: no snapshot yet).
fn pinned(table: &Table, snapshot: Option<i64>) -> Result<Table> {
    if snapshot == table.metadata().current_snapshot_id() {
        return Ok(table.clone());
    }
    let builder = TableMetadataBuilder::new_from_metadata(table.metadata().clone(), None);
    let builder = match snapshot {
        Some(id) => {
            builder.set_ref(MAIN_BRANCH, SnapshotReference::new(id, SnapshotRetention::branch(None, None, None)))?
        }
        None => builder.remove_ref(MAIN_BRANCH),
    };
    let mut pinned =
        Table::builder().metadata(builder.build()?.metadata).identifier(table.identifier().clone()).readonly(true);
    pinned = pinned.runtime(iceberg::Runtime::current());
    pinned = pinned.file_io(table.file_io().clone());
    if let Some(location) = table.metadata_location() {
        pinned = pinned.metadata_location(location);
    }
    Ok(pinned.build()?)
}
