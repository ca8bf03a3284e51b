//! Integration tests of the snapshot producers on real files: rewrites keep every row and every
//! delete, keep the planned sequence number, and conflict only in the two documented cases.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
use futures::TryStreamExt;
use iceberg::spec::{
    DataContentType, NestedField, Operation, PrimitiveType, Schema, Struct, Type, UnboundPartitionSpec,
};
use iceberg::table::Table;
use loch_table::TableError;
use loch_table::position_delete::write_position_deletes;
use loch_table::scan::{LiveFile, live_files};
use loch_table::snapshot::{OverwriteFiles, RewriteFiles, SnapshotAction};
use loch_testkit::data::{arrow_schema, rows, scan_all, write_data_files};
use loch_testkit::local::{LocalTable, write_equality_deletes};

mod expire;
mod expire_props;
mod manifest_cache;
mod merge_manifests;
mod mixed_hash;
mod mixed_keyed;
mod orphan_props;
mod parquet_writer;

fn schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(2, "category", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::optional(3, "value", Type::Primitive(PrimitiveType::Double)).into(),
        ])
        .with_identifier_field_ids(vec![1])
        .build()
        .unwrap()
}

fn batch(table: &Table, ids: impl IntoIterator<Item = i64>) -> RecordBatch {
    let ids: Vec<i64> = ids.into_iter().collect();
    RecordBatch::try_new(
        arrow_schema(table),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from(vec!["c"; ids.len()])),
            Arc::new(Float64Array::from(ids.iter().map(|i| *i as f64).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

async fn table() -> (LocalTable, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let t = LocalTable::create(dir.path(), schema(), UnboundPartitionSpec::builder().build()).await.unwrap();
    (t, dir)
}

async fn live(table: &Table) -> Vec<LiveFile> {
    let snapshot = table.metadata().current_snapshot().unwrap().clone();
    live_files(table.file_io().clone(), table.metadata_ref(), snapshot).try_collect().await.unwrap()
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    let mut out: Vec<i64> = rows(batches).iter().map(|r| r["id"].parse().unwrap()).collect();
    out.sort();
    out
}

/// Three data files, a position delete (ids 1, 2) and an equality delete (ids 15, 25).
async fn fragmented() -> (LocalTable, tempfile::TempDir) {
    let (mut t, dir) = table().await;
    let first = t.append(&batch(&t.table, 0..10)).await.unwrap();
    t.append(&batch(&t.table, 10..20)).await.unwrap();
    t.append(&batch(&t.table, 20..30)).await.unwrap();
    let pos =
        write_position_deletes(t.table.file_io(), first[0].file_path(), &[1, 2], Struct::empty(), 0).await.unwrap();
    let eq = write_equality_deletes(&t.table, vec![1], &batch(&t.table, [15, 25]), None).await.unwrap();
    t.add_deletes(vec![pos, eq]).await.unwrap();
    (t, dir)
}

/// Compacts every data file into one and drops every delete file, planned on the current head.
async fn plan_full_rewrite(t: &LocalTable) -> RewriteFiles {
    let head = t.table.metadata().current_snapshot_id().unwrap();
    let rows = scan_all(&t.table).await.unwrap();
    let merged = arrow_select::concat::concat_batches(&arrow_schema(&t.table), &rows).unwrap();
    let mut rewrite = RewriteFiles::new(head).set_property("snapshot.producer", "OPTIMIZE");
    for f in write_data_files(&t.table, &merged).await.unwrap() {
        rewrite = rewrite.add_data_file(f);
    }
    for f in live(&t.table).await {
        rewrite = if f.is_delete() { rewrite.remove_delete_file(f) } else { rewrite.rewrite_data_file(f) };
    }
    rewrite
}

#[tokio::test]
async fn rewrite_keeps_every_row_and_drops_applied_deletes() {
    let (mut t, _dir) = fragmented().await;
    let before = ids(&scan_all(&t.table).await.unwrap());
    assert_eq!(before.len(), 26);
    let rewrite = plan_full_rewrite(&t).await;
    t.commit(rewrite.prepare(&t.table).await.unwrap()).await.unwrap();
    assert_eq!(ids(&scan_all(&t.table).await.unwrap()), before);
    let snapshot = t.table.metadata().current_snapshot().unwrap();
    let summary = &snapshot.summary().additional_properties;
    assert_eq!(snapshot.summary().operation, Operation::Replace);
    assert_eq!(summary["snapshot.producer"], "OPTIMIZE");
    assert_eq!((summary["total-data-files"].as_str(), summary["total-delete-files"].as_str()), ("1", "0"));
    assert_eq!(summary["total-records"], "26");
    let files = live(&t.table).await;
    assert_eq!(files.len(), 1);
    // The new file keeps the planned snapshot's sequence number.
    assert_eq!(files[0].data_sequence_number, 4);
    assert_eq!(files[0].file_sequence_number, 5);
}

/// Manifests of `table`'s current snapshot: (with live entries, with DELETED entries only).
async fn manifest_kinds(table: &Table) -> (usize, usize) {
    let head = table.metadata().current_snapshot().unwrap();
    let list = loch_table::scan::manifests(table.file_io(), &table.metadata_ref(), head).await.unwrap();
    let live = list.iter().filter(|m| m.has_added_files() || m.has_existing_files()).count();
    (live, list.len() - live)
}

#[tokio::test]
async fn manifests_of_deleted_entries_only_stay_with_the_snapshot_that_deleted_them() {
    let (mut t, _dir) = fragmented().await;
    let before = ids(&scan_all(&t.table).await.unwrap());
    t.commit(plan_full_rewrite(&t).await.prepare(&t.table).await.unwrap()).await.unwrap();
    // The rewrite lists the manifests that mark the old files DELETED beside the new one: the
    // entries of the three data manifests gathered in one, and one for the delete manifest.
    assert_eq!(manifest_kinds(&t.table).await, (1, 2));
    let rewrite = t.table.metadata().current_snapshot_id().unwrap();
    // The next snapshots do not carry them on (otherwise every rewrite leaves one more manifest
    // that every later scan reads).
    t.append(&batch(&t.table, 100..105)).await.unwrap();
    assert_eq!(manifest_kinds(&t.table).await, (2, 0));
    let mut expected = before;
    expected.extend(100..105);
    assert_eq!(ids(&scan_all(&t.table).await.unwrap()), expected);
    // What the rewrite removed is still told by its own snapshot.
    let changes = loch_table::scan::changes_since(
        t.table.file_io(),
        &t.table.metadata_ref(),
        t.table.metadata().snapshot_by_id(rewrite).cloned(),
        t.table.metadata().snapshot_by_id(rewrite).and_then(|s| s.parent_snapshot_id()),
    )
    .await
    .unwrap();
    assert_eq!(changes.removed.len(), 5);
}

#[tokio::test]
async fn equality_deletes_committed_after_planning_still_apply() {
    let (mut t, _dir) = fragmented().await;
    let rewrite = plan_full_rewrite(&t).await;
    // Concurrently: delete id 5 (a row the rewrite carries) and append new rows.
    let eq = write_equality_deletes(&t.table, vec![1], &batch(&t.table, [5]), None).await.unwrap();
    t.add_deletes(vec![eq]).await.unwrap();
    t.append(&batch(&t.table, 100..102)).await.unwrap();
    t.commit(rewrite.prepare(&t.table).await.unwrap()).await.unwrap();
    let got = ids(&scan_all(&t.table).await.unwrap());
    assert!(!got.contains(&5), "a delete committed after planning must not be undone");
    assert!(got.contains(&100) && got.contains(&101), "concurrent appends stay");
    assert_eq!(got.len(), 26 - 1 + 2);
}

#[tokio::test]
async fn concurrent_position_delete_on_a_rewritten_file_conflicts() {
    let (mut t, _dir) = fragmented().await;
    let rewrite = plan_full_rewrite(&t).await;
    let victim = live(&t.table).await.into_iter().find(|f| !f.is_delete()).unwrap();
    let pos = write_position_deletes(t.table.file_io(), victim.path(), &[0], Struct::empty(), 0).await.unwrap();
    t.add_deletes(vec![pos]).await.unwrap();
    let err = rewrite.prepare(&t.table).await.unwrap_err();
    assert!(matches!(err, TableError::Conflict(_)), "{err}");
}

#[tokio::test]
async fn concurrent_removal_of_a_rewritten_file_conflicts() {
    let (mut t, _dir) = fragmented().await;
    let rewrite = plan_full_rewrite(&t).await;
    let victim = live(&t.table).await.into_iter().find(|f| !f.is_delete()).unwrap();
    let pending = OverwriteFiles::new().delete_file(victim.path()).prepare(&t.table).await.unwrap();
    t.commit(pending).await.unwrap();
    let err = rewrite.prepare(&t.table).await.unwrap_err();
    assert!(matches!(err, TableError::Conflict(ref m) if m.contains("removed")), "{err}");
}

#[tokio::test]
async fn position_deletes_of_other_files_do_not_conflict() {
    let (mut t, _dir) = table().await;
    let first = t.append(&batch(&t.table, 0..10)).await.unwrap().remove(0);
    let second = t.append(&batch(&t.table, 10..20)).await.unwrap().remove(0);
    let files = live(&t.table).await;
    let head = t.table.metadata().current_snapshot_id().unwrap();
    // Rewrite only the first file into a new file.
    let first = files.iter().find(|f| f.path() == first.file_path()).unwrap().clone();
    let mut rewrite = RewriteFiles::new(head).rewrite_data_file(first);
    for f in write_data_files(&t.table, &batch(&t.table, 0..10)).await.unwrap() {
        rewrite = rewrite.add_data_file(f);
    }
    // Concurrently delete a row of the other file by position.
    let pos = write_position_deletes(t.table.file_io(), second.file_path(), &[0], Struct::empty(), 0).await.unwrap();
    t.add_deletes(vec![pos]).await.unwrap();
    t.commit(rewrite.prepare(&t.table).await.unwrap()).await.unwrap();
    let got = ids(&scan_all(&t.table).await.unwrap());
    assert_eq!(got.len(), 19);
    assert!(!got.contains(&10));
}

#[tokio::test]
async fn equality_deletes_become_position_deletes() {
    let (mut t, _dir) = table().await;
    let data = t.append(&batch(&t.table, 0..10)).await.unwrap();
    let eq = write_equality_deletes(&t.table, vec![1], &batch(&t.table, [3, 7]), None).await.unwrap();
    t.add_deletes(vec![eq]).await.unwrap();
    let before = ids(&scan_all(&t.table).await.unwrap());
    let head = t.table.metadata().current_snapshot_id().unwrap();
    let eq_file = live(&t.table).await.into_iter().find(|f| f.content() == DataContentType::EqualityDeletes).unwrap();
    // Rows are written in id order, so ids 3 and 7 sit at positions 3 and 7.
    let pos =
        write_position_deletes(t.table.file_io(), data[0].file_path(), &[3, 7], Struct::empty(), 0).await.unwrap();
    let pending =
        RewriteFiles::new(head).remove_delete_file(eq_file).add_delete_file(pos).prepare(&t.table).await.unwrap();
    t.commit(pending).await.unwrap();
    assert_eq!(ids(&scan_all(&t.table).await.unwrap()), before);
    let summary = &t.table.metadata().current_snapshot().unwrap().summary().additional_properties;
    assert_eq!(summary["total-equality-deletes"], "0");
    assert_eq!(summary["total-position-deletes"], "2");
}

#[tokio::test]
async fn rewrites_refuse_files_that_are_not_live() {
    let (t, _dir) = fragmented().await;
    let head = t.table.metadata().current_snapshot_id().unwrap();
    let mut gone = live(&t.table).await.into_iter().find(|f| !f.is_delete()).unwrap();
    gone.file = write_data_files(&t.table, &batch(&t.table, [1])).await.unwrap().remove(0);
    let err = RewriteFiles::new(head).rewrite_data_file(gone).prepare(&t.table).await.unwrap_err();
    assert!(matches!(err, TableError::Conflict(_)), "{err}");
}
