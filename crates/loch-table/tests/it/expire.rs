//! Snapshot expiry on real files: the right snapshots go, tags and branch retention keep theirs,
//! exactly the files only expired snapshots reached are found, and the table reads the same
//! after they are deleted, also when a deletion is interrupted and resumed.

use std::collections::{BTreeSet, HashSet};

use iceberg::TableUpdate;
use iceberg::spec::{SnapshotReference, SnapshotRetention};
use iceberg::table::Table;
use loch_table::expire::{CANDIDATE_BATCH, plan_expiry, unreachable_files};
use loch_table::snapshot::SnapshotAction;
use loch_testkit::data::{scan_all, scan_snapshot};

use iceberg::spec::DataContentType;
use loch_table::snapshot::RewriteFiles;

use crate::{batch, fragmented, ids, plan_full_rewrite};

async fn reached_by(table: &Table, snapshot_id: i64) -> BTreeSet<String> {
    loch_testkit::data::reached_by(table, snapshot_id).await.unwrap()
}

fn exists(path: &str) -> bool {
    std::path::Path::new(path.strip_prefix("file://").unwrap()).exists()
}

async fn ids_at(table: &Table, snapshot_id: i64) -> Vec<i64> {
    ids(&scan_snapshot(table, snapshot_id).await.unwrap())
}

async fn delete(table: &Table, paths: impl IntoIterator<Item = &String>) {
    for path in paths {
        table.file_io().delete(path).await.unwrap();
    }
}

/// Five snapshots (three appends, deletes, a full rewrite) with a tag on the second: expiry keeps
/// the head and the tagged snapshot, and finds exactly the files only the other three reached.
#[tokio::test]
async fn expiry_removes_what_only_expired_snapshots_reach_and_keeps_tags() {
    let (mut t, _dir) = fragmented().await;
    let history = ancestry(&t.table);
    assert_eq!(history.len(), 4);
    let tagged = history[1];
    let tag = SnapshotReference::new(tagged, SnapshotRetention::Tag { max_ref_age_ms: None });
    t.apply(Vec::new(), vec![TableUpdate::SetSnapshotRef { ref_name: "keep".into(), reference: tag }]).await.unwrap();
    let rewrite = plan_full_rewrite(&t).await;
    t.commit(rewrite.prepare(&t.table).await.unwrap()).await.unwrap();
    let head = t.table.metadata().current_snapshot_id().unwrap();
    let rows = ids(&scan_all(&t.table).await.unwrap());
    let tagged_rows = ids_at(&t.table, tagged).await;
    assert_eq!(tagged_rows, (0..20).collect::<Vec<_>>());

    let before = t.table.metadata_ref();
    let mut everything = BTreeSet::new();
    for snapshot in before.snapshots() {
        everything.extend(reached_by(&t.table, snapshot.snapshot_id()).await);
    }
    let mut kept = reached_by(&t.table, head).await;
    kept.extend(reached_by(&t.table, tagged).await);

    // Nothing is old enough yet.
    let now = chrono::Utc::now().timestamp_millis();
    assert!(plan_expiry(&t.table, now - 3_600_000, 1).await.unwrap().is_none());

    let change = plan_expiry(&t.table, now + 1, 1).await.unwrap().expect("three snapshots expire");
    let expected: Vec<i64> = {
        let mut e = vec![history[0], history[2], history[3]];
        e.sort();
        e
    };
    assert_eq!(change.expired_snapshots, expected);
    assert!(change.removed_refs.is_empty());
    let after_ids: HashSet<i64> = change.after.snapshots().map(|s| s.snapshot_id()).collect();
    assert_eq!(after_ids, HashSet::from([head, tagged]));

    let unreachable = unreachable_files(t.table.file_io(), &before, &change.after, CANDIDATE_BATCH).await.unwrap();
    let found: BTreeSet<String> = unreachable.in_deletion_order().cloned().collect();
    let expected: BTreeSet<String> = everything.difference(&kept).cloned().collect();
    assert_eq!(found, expected, "exactly the files only expired snapshots reached");
    assert_eq!(unreachable.manifest_lists.len(), 3);
    assert!(unreachable.content_files.iter().any(|f| f.contains("delete") || f.ends_with(".parquet")));
    let tiny = unreachable_files(t.table.file_io(), &before, &change.after, 1).await.unwrap();
    assert_eq!(tiny, unreachable, "checking candidates one at a time finds the same");

    t.apply(change.requirements.clone(), change.updates.clone()).await.unwrap();
    delete(&t.table, unreachable.in_deletion_order()).await;
    assert!(kept.iter().all(|f| exists(f)), "every file a retained snapshot reaches is still there");
    assert!(found.iter().all(|f| !exists(f)));
    assert_eq!(ids(&scan_all(&t.table).await.unwrap()), rows, "the table reads the same");
    assert_eq!(ids_at(&t.table, tagged).await, tagged_rows, "and so does the tag");
}

/// A deletion interrupted after the content files and some manifests is found again, without
/// error, from the same two versions; finishing it leaves the table readable.
#[tokio::test]
async fn an_interrupted_deletion_is_found_again_and_finished() {
    let (mut t, _dir) = fragmented().await;
    let rewrite = plan_full_rewrite(&t).await;
    t.commit(rewrite.prepare(&t.table).await.unwrap()).await.unwrap();
    t.append(&batch(&t.table, 100..105)).await.unwrap();
    let rows = ids(&scan_all(&t.table).await.unwrap());
    let before = t.table.metadata_ref();
    let now = chrono::Utc::now().timestamp_millis();
    let change = plan_expiry(&t.table, now + 1, 2).await.unwrap().unwrap();
    assert_eq!(change.expired_snapshots.len(), 4, "all but the two newest");
    t.apply(change.requirements.clone(), change.updates.clone()).await.unwrap();
    let io = t.table.file_io().clone();
    let full = unreachable_files(&io, &before, &change.after, CANDIDATE_BATCH).await.unwrap();
    assert!(!full.content_files.is_empty() && full.manifests.len() > 1);

    delete(&t.table, &full.content_files).await;
    delete(&t.table, &full.manifests[..1]).await;
    let again = unreachable_files(&io, &before, &change.after, CANDIDATE_BATCH).await.unwrap();
    assert_eq!(again.manifest_lists, full.manifest_lists);
    assert!(again.manifests.iter().all(|m| full.manifests.contains(m)));
    delete(&t.table, again.in_deletion_order()).await;
    assert!(full.in_deletion_order().all(|f| !exists(f)));
    assert_eq!(ids(&scan_all(&t.table).await.unwrap()), rows);

    assert_eq!(t.table.metadata().snapshots().len(), 2);
}

/// The current snapshot's ancestry, oldest first.
fn ancestry(table: &Table) -> Vec<i64> {
    let metadata = table.metadata();
    let mut chain = Vec::new();
    let mut next = metadata.current_snapshot_id();
    while let Some(id) = next {
        chain.push(id);
        next = metadata.snapshot_by_id(id).and_then(|s| s.parent_snapshot_id());
    }
    chain.reverse();
    chain
}

/// A manifest only expired snapshots use may list a file a retained manifest still lists as
/// live (a commit rewrote the manifest around it): that file stays. Here a rewrite drops the
/// equality delete of a manifest that also holds a position delete.
#[tokio::test]
async fn a_file_a_retained_manifest_still_lists_is_kept() {
    let (mut t, _dir) = fragmented().await;
    let head = t.table.metadata().current_snapshot_id().unwrap();
    let files = crate::live(&t.table).await;
    let equality = files.iter().find(|f| f.content() == DataContentType::EqualityDeletes).unwrap().clone();
    let position = files.iter().find(|f| f.content() == DataContentType::PositionDeletes).unwrap().clone();
    let rewrite = RewriteFiles::new(head).remove_delete_file(equality.clone());
    t.commit(rewrite.prepare(&t.table).await.unwrap()).await.unwrap();
    let rows = ids(&scan_all(&t.table).await.unwrap());

    let before = t.table.metadata_ref();
    let now = chrono::Utc::now().timestamp_millis();
    let change = plan_expiry(&t.table, now + 1, 1).await.unwrap().unwrap();
    t.apply(change.requirements.clone(), change.updates.clone()).await.unwrap();
    let unreachable = unreachable_files(t.table.file_io(), &before, &change.after, CANDIDATE_BATCH).await.unwrap();
    assert_eq!(unreachable.content_files, vec![equality.path().to_string()], "only the dropped delete file");
    assert_eq!(unreachable.manifest_lists.len(), 4);
    delete(&t.table, unreachable.in_deletion_order()).await;
    assert!(exists(position.path()), "the position delete a retained manifest lists stays");
    assert_eq!(ids(&scan_all(&t.table).await.unwrap()), rows);
}
