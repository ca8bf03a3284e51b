//! The committer: turns the outputs of a process's tasks into one rewrite snapshot and commits
//! it through the catalog's commit path.
//!
//! The rewrite is built and validated against every snapshot committed since planning (see
//! `loch_table::snapshot::RewriteFiles`) while holding the table's commit lock, so writers
//! committing through this server cannot slip in between; losing the pointer race to another
//! server only means validating again against the newer head. The snapshot names its process, so a commit
//! repeated after a crash recognizes that it already happened.

use loch_api::optimizer::{TaskInput, TaskOutput};
use loch_catalog::retry::{RetryPolicy, run_with_retries};
use loch_catalog::{CatalogError, CatalogService, TableChange};
use loch_table::snapshot::{RewriteFiles, SnapshotAction};

use crate::error::{OptimizingError, Result};
use crate::evaluator::OptimizingType;
use crate::table::ManagedTable;
use crate::task::{decode_file, live_file};

/// Snapshot summary property naming the optimizing process that committed the snapshot.
pub const PROCESS_ID_PROPERTY: &str = "loch.optimizing-process-id";
/// Snapshot summary property naming the optimizing type.
pub const OPTIMIZING_TYPE_PROPERTY: &str = "loch.optimizing-type";

/// Retries of a commit that lost the pointer race when the table's policy cannot be read.
const COMMIT_RETRIES: u32 = 4;

/// A committed rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The new snapshot.
    pub snapshot_id: i64,
    /// True when an earlier attempt had already committed it.
    pub already: bool,
}

/// What a finished optimizing process commits.
#[derive(Debug, Clone, Copy)]
pub struct ProcessOutput<'a> {
    /// The table.
    pub table_id: i64,
    /// The process, named in the snapshot so a repeated commit recognizes itself.
    pub process_id: i64,
    /// Its optimizing type.
    pub kind: OptimizingType,
    /// The snapshot it was planned on; the rewrite is validated against every one since.
    pub target_snapshot: i64,
    /// Each task's input and output.
    pub results: &'a [(TaskInput, TaskOutput)],
}

/// Commits the results of a process. A lost race is validated and tried again as the table's
/// `commit.retry.*` properties allow.
pub async fn commit_rewrite(catalogs: &CatalogService, output: ProcessOutput<'_>) -> Result<Committed> {
    let retried = |e: &OptimizingError| matches!(e, OptimizingError::Catalog(CatalogError::CommitFailed(_)));
    let policy = async {
        match ManagedTable::load(catalogs, output.table_id).await {
            Ok(Some(table)) => RetryPolicy::for_table(table.table.metadata().properties(), COMMIT_RETRIES),
            _ => RetryPolicy::server(COMMIT_RETRIES),
        }
    };
    run_with_retries(policy, |_| commit_once(catalogs, output), retried).await.map_err(|(e, _)| e)
}

/// Commits the results of a keyed process (see `keyed`), retried like [`commit_rewrite`];
/// `start` is the base snapshot it was planned on.
pub async fn commit_keyed(
    catalogs: &CatalogService,
    output: ProcessOutput<'_>,
    start: Option<i64>,
) -> Result<Committed> {
    let retried = |e: &OptimizingError| matches!(e, OptimizingError::Catalog(CatalogError::CommitFailed(_)));
    let policy = async {
        match ManagedTable::load(catalogs, output.table_id).await {
            Ok(Some(table)) => RetryPolicy::for_table(table.table.metadata().properties(), COMMIT_RETRIES),
            _ => RetryPolicy::server(COMMIT_RETRIES),
        }
    };
    run_with_retries(policy, |_| crate::keyed::commit_keyed_once(catalogs, output, start), retried)
        .await
        .map_err(|(e, _)| e)
}

/// One attempt: under the table's commit lock, recognizes an earlier attempt that committed,
/// or builds the rewrite against the current head and commits it.
async fn commit_once(catalogs: &CatalogService, output: ProcessOutput<'_>) -> Result<Committed> {
    let ProcessOutput { table_id, process_id, kind, target_snapshot, results } = output;
    let dropped = || OptimizingError::NotFound(format!("table {table_id} (dropped while optimizing)"));
    let named = ManagedTable::load(catalogs, table_id).await?.ok_or_else(dropped)?;
    let lock = catalogs.lock_table(&named.catalog, &named.name).await;
    let table = ManagedTable::load(catalogs, table_id).await?.ok_or_else(dropped)?;
    if table.name != named.name || table.catalog.record.id != named.catalog.record.id {
        // Renamed meanwhile: the next attempt locks the new name.
        return Err(CatalogError::CommitFailed(format!("table {table_id} was renamed while committing")).into());
    }
    let metadata = table.table.metadata();
    if let Some(snapshot) = metadata
        .snapshots()
        .find(|s| s.summary().additional_properties.get(PROCESS_ID_PROPERTY) == Some(&process_id.to_string()))
    {
        return Ok(Committed { snapshot_id: snapshot.snapshot_id(), already: true });
    }
    let mut rewrite = RewriteFiles::new(target_snapshot)
        .set_property("snapshot.producer", "OPTIMIZE")
        .set_property(PROCESS_ID_PROPERTY, process_id.to_string())
        .set_property(OPTIMIZING_TYPE_PROPERTY, kind.as_str());
    for (input, output) in results {
        for f in &input.rewrite {
            rewrite = rewrite.rewrite_data_file(live_file(metadata, f)?);
        }
        for f in &input.obsolete_deletes {
            rewrite = rewrite.remove_delete_file(live_file(metadata, f)?);
        }
        for f in &output.data_files {
            rewrite = rewrite.add_data_file(decode_file(metadata, &f.file, f.spec_id)?);
        }
        for f in &output.delete_files {
            rewrite = rewrite.add_delete_file_in_spec(decode_file(metadata, &f.file, f.spec_id)?, f.spec_id);
        }
    }
    let pending = rewrite.prepare(&table.table).await?;
    let change = TableChange {
        ident: table.name.clone(),
        requirements: pending.requirements.clone(),
        updates: pending.updates.clone(),
    };
    match catalogs.commit_table_locked(&lock, &table.catalog, change).await {
        Ok(_) => Ok(Committed { snapshot_id: pending.snapshot_id, already: false }),
        Err(e) => {
            discard_written(table.table.file_io(), &pending.written_files, &e).await;
            if let CatalogError::CommitFailed(reason) = &e {
                tracing::debug!(table_id, process_id, %reason, "optimizing commit lost a race; validating again");
            }
            Err(e.into())
        }
    }
}

/// Deletes the files a refused commit wrote — unless its outcome is unknown: the store may have
/// applied it, and its snapshot would then need them (orphan cleaning takes them otherwise).
pub(crate) async fn discard_written(io: &iceberg::io::FileIO, written: &[String], error: &CatalogError) {
    if matches!(error, CatalogError::CommitStateUnknown(_)) {
        tracing::warn!(files = written.len(), %error, "commit outcome unknown; keeping the files it wrote");
        return;
    }
    for path in written {
        let _ = io.delete(path).await;
    }
}
