//! Dangling delete files (Amoro's `clean-dangling-delete-files`): delete files that can no
//! longer apply to any live data file — their data was rewritten or removed — still cost every
//! reader a read. Under the table's commit lock they are removed with one snapshot
//! (`snapshot.producer=CLEAN_DANGLING_DELETE`); their files go when that snapshot's parent
//! expires.

use futures::TryStreamExt;
use loch_catalog::{CatalogService, TableChange};
use loch_table::scan::{LiveFile, live_files};
use loch_table::snapshot::{RewriteFiles, SnapshotAction};

use crate::error::Result;
use crate::maintenance::MaintenanceSummary;
use crate::maintenance::properties::MaintenanceProperties;
use crate::plan::partition::applies;
use crate::table::ManagedTable;

/// Snapshot producer of the cleaning commit.
pub const PRODUCER: &str = "CLEAN_DANGLING_DELETE";

/// The delete files of `files` that apply to none of its data files.
pub fn dangling(files: &[LiveFile]) -> Vec<&LiveFile> {
    let data: Vec<&LiveFile> = files.iter().filter(|f| !f.is_delete()).collect();
    files.iter().filter(|d| d.is_delete() && !data.iter().any(|f| applies(d, f))).collect()
}

/// Removes the dangling delete files of table `table_id` as its properties allow; with
/// `dry_run`, only counts them.
pub async fn clean_dangling_deletes(
    catalogs: &CatalogService,
    table_id: i64,
    dry_run: bool,
) -> Result<MaintenanceSummary> {
    let (lock, table) = ManagedTable::load_locked(catalogs, table_id).await?;
    let metadata = table.table.metadata_ref();
    let props = MaintenanceProperties::resolve(&table.catalog.record.properties, metadata.properties())?;
    let mut summary = MaintenanceSummary { dry_run, ..MaintenanceSummary::default() };
    if !props.clean_dangling_deletes {
        summary.skipped = Some("clean-dangling-delete-files.enabled or gc.enabled is false".into());
        return Ok(summary);
    }
    let Some(head) = metadata.current_snapshot().cloned() else { return Ok(summary) };
    let files: Vec<LiveFile> =
        live_files(table.table.file_io().clone(), metadata.clone(), head.clone()).try_collect().await?;
    let dangling: Vec<LiveFile> = dangling(&files).into_iter().cloned().collect();
    summary.content_files = dangling.len();
    summary.bytes = dangling.iter().map(|f| f.file.file_size_in_bytes()).sum();
    summary.paths = dangling.iter().take(1_000).map(|f| f.path().to_string()).collect();
    if dry_run || dangling.is_empty() {
        return Ok(summary);
    }
    let mut rewrite = RewriteFiles::new(head.snapshot_id()).set_property("snapshot.producer", PRODUCER);
    for file in dangling {
        rewrite = rewrite.remove_delete_file(file);
    }
    let pending = rewrite.prepare(&table.table).await?;
    let change =
        TableChange { ident: table.name.clone(), requirements: pending.requirements, updates: pending.updates };
    if let Err(e) = catalogs.commit_table_locked(&lock, &table.catalog, change).await {
        crate::committer::discard_written(table.table.file_io(), &pending.written_files, &e).await;
        return Err(e.into());
    }
    tracing::info!(table = %table.display_name(), removed = summary.content_files, "dangling delete files removed");
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use iceberg::spec::{DataContentType, DataFileBuilder, DataFileFormat, Struct};

    use super::*;

    fn file(path: &str, content: DataContentType, seq: i64) -> LiveFile {
        let file = DataFileBuilder::default()
            .content(content)
            .file_path(path.into())
            .file_format(DataFileFormat::Parquet)
            .partition(Struct::empty())
            .record_count(1)
            .file_size_in_bytes(10)
            .equality_ids(if content == DataContentType::EqualityDeletes { Some(vec![1]) } else { None })
            .referenced_data_file(if content == DataContentType::PositionDeletes { Some("a".into()) } else { None })
            .build()
            .unwrap();
        LiveFile { file, spec_id: 0, data_sequence_number: seq, file_sequence_number: seq }
    }

    #[test]
    fn a_delete_is_dangling_when_no_live_data_file_takes_it() {
        let a_pos = file("pos-a", DataContentType::PositionDeletes, 3);
        let eq_new = file("eq-new", DataContentType::EqualityDeletes, 3);
        let eq_old = file("eq-old", DataContentType::EqualityDeletes, 1);
        let b = file("b", DataContentType::Data, 2);
        // `a` is gone: its position deletes dangle; an equality delete newer than `b` applies,
        // one older than every data file does not.
        let files = vec![a_pos.clone(), eq_new, eq_old.clone(), b.clone()];
        let found: Vec<&str> = dangling(&files).iter().map(|f| f.path()).collect();
        assert_eq!(found, vec!["pos-a", "eq-old"]);
        let a = file("a", DataContentType::Data, 1);
        assert!(dangling(&[a_pos, a, b]).is_empty(), "with `a` live nothing dangles");
    }
}
