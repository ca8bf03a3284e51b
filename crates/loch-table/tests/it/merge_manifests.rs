//! Merging manifests covered by a sequence number: the files, their sequence numbers and the
//! rows stay; readers skipping what the bound covers still skip the merged manifest unread.

use std::collections::BTreeSet;

use futures::TryStreamExt;
use iceberg::spec::Operation;
use loch_table::scan::{changes_since, live_files_after, manifests};
use loch_table::snapshot::merge_manifests::recorded_max_sequence;
use loch_table::snapshot::{MergeManifests, OverwriteFiles, SnapshotAction};
use loch_testkit::data::scan_all;
use loch_testkit::local::write_equality_deletes;

use super::{batch, ids, live, table};

/// (path, data sequence number, file sequence number) of every live file.
async fn files(table: &iceberg::table::Table) -> BTreeSet<(String, i64, i64)> {
    live(table)
        .await
        .into_iter()
        .map(|f| (f.path().to_string(), f.data_sequence_number, f.file_sequence_number))
        .collect()
}

async fn paths_after(table: &iceberg::table::Table, floor: i64) -> BTreeSet<String> {
    let head = table.metadata().current_snapshot().unwrap().clone();
    live_files_after(table.file_io().clone(), table.metadata_ref(), head, floor)
        .map_ok(|f| f.path().to_string())
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn merging_covered_manifests_keeps_every_file_and_readers_still_skip_them() {
    let (mut t, _dir) = table().await;
    for i in 0..6 {
        t.append(&batch(&t.table, i * 10..i * 10 + 10)).await.unwrap();
    }
    let eq = write_equality_deletes(&t.table, vec![1], &batch(&t.table, [5, 55]), None).await.unwrap();
    t.add_deletes(vec![eq]).await.unwrap();
    let before = files(&t.table).await;
    let rows = ids(&scan_all(&t.table).await.unwrap());
    assert_eq!(rows.len(), 58);

    // Fewer than the minimum count qualify: nothing to do.
    assert!(MergeManifests::through(4).min_count(5).prepare(&t.table).await.unwrap().is_none());
    let pending = MergeManifests::through(4).min_count(3).prepare(&t.table).await.unwrap().unwrap();
    t.commit(pending).await.unwrap();

    let head = t.table.metadata().current_snapshot().unwrap().clone();
    assert_eq!(head.summary().operation, Operation::Replace);
    let summary = &head.summary().additional_properties;
    assert_eq!((summary["manifests-created"].as_str(), summary["manifests-replaced"].as_str()), ("1", "4"));
    assert_eq!((summary["total-data-files"].as_str(), summary["total-records"].as_str()), ("6", "60"));
    // Two appends and the delete manifest kept, one merged manifest for the first four appends.
    let list = manifests(t.table.file_io(), &t.table.metadata_ref(), &head).await.unwrap();
    assert_eq!(list.len(), 4);
    let merged: Vec<_> = list.iter().filter_map(recorded_max_sequence).collect();
    assert_eq!(merged, vec![4]);
    // Same files with the same sequence numbers, same rows.
    assert_eq!(files(&t.table).await, before);
    assert_eq!(ids(&scan_all(&t.table).await.unwrap()), rows);

    // Readers skipping what sequence 4 covers skip the merged manifest unread; below 4 they
    // read it whole (and filter its files themselves).
    let above = |floor: i64| -> BTreeSet<String> {
        before.iter().filter(|(_, seq, _)| *seq > floor).map(|(p, _, _)| p.clone()).collect()
    };
    assert_eq!(paths_after(&t.table, 4).await, above(4));
    assert_eq!(paths_after(&t.table, 3).await, above(0));

    // The merge adds and removes nothing for incremental readers.
    let merge = t.table.metadata().snapshot_by_id(head.snapshot_id()).cloned();
    let changes =
        changes_since(t.table.file_io(), &t.table.metadata_ref(), merge, head.parent_snapshot_id()).await.unwrap();
    assert!(changes.added.is_empty() && changes.removed.is_empty());

    // A file inside the merged manifest can still be removed, and merging again takes in the
    // rewritten manifest.
    let second = before.iter().find(|(_, seq, _)| *seq == 2).unwrap().0.clone();
    t.commit(OverwriteFiles::new().delete_file(&second).prepare(&t.table).await.unwrap()).await.unwrap();
    let mut expected = rows.clone();
    expected.retain(|id| !(10..20).contains(id));
    assert_eq!(ids(&scan_all(&t.table).await.unwrap()), expected);
    // The overwrite (sequence 9) rewrote the merged manifest: through 8, three qualify.
    assert!(MergeManifests::through(8).min_count(4).prepare(&t.table).await.unwrap().is_none());
    let pending = MergeManifests::through(9).min_count(4).prepare(&t.table).await.unwrap().unwrap();
    t.commit(pending).await.unwrap();
    let head = t.table.metadata().current_snapshot().unwrap().clone();
    let list = manifests(t.table.file_io(), &t.table.metadata_ref(), &head).await.unwrap();
    // One data manifest (greatest data sequence 6) and the delete manifest.
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list.iter().filter_map(recorded_max_sequence).collect::<Vec<_>>(), vec![6]);
    assert_eq!(ids(&scan_all(&t.table).await.unwrap()), expected);
    let mut left = above(0);
    left.remove(&second);
    assert_eq!(paths_after(&t.table, 6).await, above(6));
    assert_eq!(paths_after(&t.table, 5).await, left);
}
