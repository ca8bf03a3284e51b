//! Property test of snapshot expiry over random histories (appends, position deletes, full
//! rewrites, tags, branches; then an expiry at a random cut with a random minimum to keep):
//! after deleting what the walk finds, every file a kept snapshot reaches still exists, and the
//! head and every ref read exactly as before.

use std::collections::BTreeSet;

use iceberg::TableUpdate;
use iceberg::spec::{Datum, PrimitiveLiteral, SnapshotReference, SnapshotRetention, Struct};
use loch_table::expire::{plan_expiry, unreachable_files};
use loch_table::position_delete::write_position_deletes;
use loch_table::snapshot::{RewriteFiles, RowDelta, SnapshotAction};
use loch_testkit::data::{reached_by, rows, scan_all, scan_snapshot, write_data_files};
use proptest::prelude::*;

use crate::{batch, live, plan_full_rewrite, table};

#[derive(Debug, Clone)]
enum Op {
    /// Two data files in one commit (one manifest holding both).
    Append(u8),
    /// Rewrites one data file into a copy of its rows, so that its manifest is rewritten with
    /// the other file carried over.
    RewriteOne(u8),
    DeletePositions(u8),
    RewriteAll,
    Tag(u8),
    Branch(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..5).prop_map(Op::Append),
        2 => any::<u8>().prop_map(Op::RewriteOne),
        1 => any::<u8>().prop_map(Op::DeletePositions),
        1 => Just(Op::RewriteAll),
        1 => any::<u8>().prop_map(Op::Tag),
        1 => (any::<u8>(), 1u8..4).prop_map(|(at, keep)| Op::Branch(at, keep)),
    ]
}

fn exists(path: &str) -> bool {
    std::path::Path::new(path.strip_prefix("file://").unwrap_or(path)).exists()
}

async fn run_case(ops: Vec<Op>, cut: u8, keep: u8) -> Result<(), TestCaseError> {
    let (mut t, _dir) = table().await;
    let mut next_id = 0i64;
    let mut refs = 0;
    t.append(&batch(&t.table, 0..3)).await.unwrap();
    next_id += 3;
    for op in &ops {
        let snapshots: Vec<i64> = t.table.metadata().snapshots().map(|s| s.snapshot_id()).collect();
        let pick = |n: u8| snapshots[n as usize % snapshots.len()];
        match op {
            Op::Append(n) => {
                let n = i64::from(*n);
                let mut delta = RowDelta::new();
                for ids in [next_id..next_id + n, next_id + n..next_id + 2 * n] {
                    for f in write_data_files(&t.table, &batch(&t.table, ids)).await.unwrap() {
                        delta = delta.add_rows(f);
                    }
                }
                next_id += 2 * n;
                t.commit(delta.prepare(&t.table).await.unwrap()).await.unwrap();
            }
            Op::RewriteOne(n) => {
                let data: Vec<_> = live(&t.table).await.into_iter().filter(|f| !f.is_delete()).collect();
                let target = data[*n as usize % data.len()].clone();
                let bound = |b: Option<&Datum>| match b.map(|d| d.literal()) {
                    Some(PrimitiveLiteral::Long(v)) => *v,
                    _ => 0,
                };
                let (lo, hi) = (bound(target.file.lower_bounds().get(&1)), bound(target.file.upper_bounds().get(&1)));
                let head = t.table.metadata().current_snapshot_id().unwrap();
                let mut rewrite = RewriteFiles::new(head).rewrite_data_file(target);
                for f in write_data_files(&t.table, &batch(&t.table, lo..hi + 1)).await.unwrap() {
                    rewrite = rewrite.add_data_file(f);
                }
                t.commit(rewrite.prepare(&t.table).await.unwrap()).await.unwrap();
            }
            Op::DeletePositions(n) => {
                let data: Vec<_> = live(&t.table).await.into_iter().filter(|f| !f.is_delete()).collect();
                let target = &data[*n as usize % data.len()];
                let file =
                    write_position_deletes(t.table.file_io(), target.path(), &[0], Struct::empty(), 0).await.unwrap();
                t.add_deletes(vec![file]).await.unwrap();
            }
            Op::RewriteAll => {
                let rewrite = plan_full_rewrite(&t).await;
                t.commit(rewrite.prepare(&t.table).await.unwrap()).await.unwrap();
            }
            Op::Tag(at) => {
                refs += 1;
                let reference = SnapshotReference::new(pick(*at), SnapshotRetention::Tag { max_ref_age_ms: None });
                let update = TableUpdate::SetSnapshotRef { ref_name: format!("tag{refs}"), reference };
                t.apply(vec![], vec![update]).await.unwrap();
            }
            Op::Branch(at, keep) => {
                refs += 1;
                let retention = SnapshotRetention::Branch {
                    min_snapshots_to_keep: Some(i32::from(*keep)),
                    max_snapshot_age_ms: None,
                    max_ref_age_ms: None,
                };
                let update = TableUpdate::SetSnapshotRef {
                    ref_name: format!("branch{refs}"),
                    reference: SnapshotReference::new(pick(*at), retention),
                };
                t.apply(vec![], vec![update]).await.unwrap();
            }
        }
    }
    let before = t.table.metadata_ref();
    let head_rows = rows(&scan_all(&t.table).await.unwrap());
    let mut ref_rows = Vec::new();
    for i in 1..=refs {
        for name in [format!("tag{i}"), format!("branch{i}")] {
            if let Some(s) = before.snapshot_for_ref(&name) {
                ref_rows.push((s.snapshot_id(), rows(&scan_snapshot(&t.table, s.snapshot_id()).await.unwrap())));
            }
        }
    }
    let mut times: Vec<i64> = before.snapshots().map(|s| s.timestamp_ms()).collect();
    times.sort();
    let older_than = times[cut as usize % times.len()] + 1;
    let Some(change) = plan_expiry(&t.table, older_than, usize::from(keep)).await.unwrap() else { return Ok(()) };
    t.apply(change.requirements.clone(), change.updates.clone()).await.unwrap();
    let unreachable = unreachable_files(t.table.file_io(), &before, &change.after, 3).await.unwrap();
    for path in unreachable.in_deletion_order() {
        t.table.file_io().delete(path).await.unwrap();
    }

    let mut kept = BTreeSet::new();
    for s in t.table.metadata().snapshots() {
        kept.extend(reached_by(&t.table, s.snapshot_id()).await.unwrap());
    }
    for file in &kept {
        prop_assert!(exists(file), "{file}, which a kept snapshot reaches, was deleted (ops {ops:?})");
    }
    prop_assert_eq!(rows(&scan_all(&t.table).await.unwrap()), head_rows);
    for (id, expected) in ref_rows {
        prop_assert_eq!(rows(&scan_snapshot(&t.table, id).await.unwrap()), expected, "ref at snapshot {}", id);
    }
    Ok(())
}

#[test]
fn expiry_never_deletes_what_a_kept_snapshot_reaches() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cases = std::env::var("LOCH_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(32);
    let config = ProptestConfig { cases, failure_persistence: None, max_shrink_iters: 32, ..ProptestConfig::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = (proptest::collection::vec(op(), 3..12), any::<u8>(), 1u8..4);
    if let Err(e) = runner.run(&strategy, |(ops, cut, keep)| runtime.block_on(run_case(ops, cut, keep))) {
        panic!("{e}");
    }
}
