//! Property test of orphan cleaning over random histories (appends, position deletes, full
//! rewrites, failed commits that leave their data files, manifests and manifest list behind,
//! expiries whose deletion ran or was skipped): deleting what [`find_orphans`] finds removes
//! every file of a failed commit, never a file any snapshot or metadata version references, and
//! every snapshot reads as before.

use std::collections::BTreeSet;

use iceberg::spec::{Datum, PrimitiveLiteral, Struct};
use loch_table::expire::{plan_expiry, unreachable_files};
use loch_table::location::Location;
use loch_table::orphans::{find_orphans, list_files, orphan_roots};
use loch_table::position_delete::write_position_deletes;
use loch_table::snapshot::{RewriteFiles, RowDelta, SnapshotAction};
use loch_testkit::data::{reached_by, rows, scan_snapshot, write_data_files};
use proptest::prelude::*;

use crate::{batch, live, plan_full_rewrite, table};

#[derive(Debug, Clone)]
enum Op {
    /// Two data files in one commit (one manifest holding both).
    Append(u8),
    /// Rewrites one data file into a copy of its rows: its manifest is rewritten with the other
    /// file carried over as an existing entry.
    RewriteOne(u8),
    DeletePositions(u8),
    RewriteAll,
    /// Writes data files and prepares their commit (manifest and manifest list written), then
    /// never commits.
    FailedAppend(u8),
    /// Expires at a cut; with `false` its files are left in place (as when another commit came
    /// in between), so orphan cleaning must find them.
    Expire(u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..4).prop_map(Op::Append),
        2 => any::<u8>().prop_map(Op::RewriteOne),
        1 => any::<u8>().prop_map(Op::DeletePositions),
        1 => Just(Op::RewriteAll),
        2 => (1u8..4).prop_map(Op::FailedAppend),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(cut, delete)| Op::Expire(cut, delete)),
    ]
}

fn local(path: &str) -> std::path::PathBuf {
    Location::parse(path).unwrap().local_path().unwrap()
}

async fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (mut t, _dir) = table().await;
    let mut next_id = 0i64;
    let mut failed: BTreeSet<String> = BTreeSet::new();
    t.append(&batch(&t.table, 0..3)).await.unwrap();
    next_id += 3;
    // A final expiry of all but the head, its files left behind, makes the orphan cleaner's
    // work the largest and leaves existing entries as the only reference to carried-over files.
    for op in ops.iter().chain([&Op::Expire(u8::MAX, false)]) {
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
            Op::FailedAppend(n) => {
                let n = i64::from(*n);
                let files = write_data_files(&t.table, &batch(&t.table, next_id..next_id + n)).await.unwrap();
                next_id += n;
                let mut delta = RowDelta::new();
                for f in &files {
                    failed.insert(f.file_path().to_string());
                    delta = delta.add_rows(f.clone());
                }
                let pending = delta.prepare(&t.table).await.unwrap();
                prop_assert!(!pending.written_files.is_empty(), "a prepared commit writes its manifests");
                failed.extend(pending.written_files);
            }
            Op::Expire(cut, delete) => {
                let before = t.table.metadata_ref();
                let mut times: Vec<i64> = before.snapshots().map(|s| s.timestamp_ms()).collect();
                times.sort();
                let older_than = times[(*cut as usize).min(times.len() - 1)] + 1;
                if let Some(change) = plan_expiry(&t.table, older_than, 1).await.unwrap() {
                    t.apply(change.requirements.clone(), change.updates.clone()).await.unwrap();
                    if *delete {
                        let unreachable =
                            unreachable_files(t.table.file_io(), &before, &change.after, 5).await.unwrap();
                        for path in unreachable.in_deletion_order() {
                            t.table.file_io().delete(path).await.unwrap();
                        }
                    }
                }
            }
        }
    }

    let metadata = t.table.metadata_ref();
    let mut referenced = BTreeSet::new();
    let mut snapshot_rows = Vec::new();
    for s in metadata.snapshots() {
        referenced.extend(reached_by(&t.table, s.snapshot_id()).await.unwrap());
        snapshot_rows.push((s.snapshot_id(), rows(&scan_snapshot(&t.table, s.snapshot_id()).await.unwrap())));
    }
    referenced.extend(metadata.metadata_log().iter().map(|m| m.metadata_file.clone()));
    referenced.insert(t.table.metadata_location().unwrap().to_string());

    // Everything is old enough: only references protect a file.
    let roots = orphan_roots(&metadata).unwrap();
    let future = loch_meta_now() + 60_000;
    let (_, orphans) =
        find_orphans(t.table.file_io(), &metadata, t.table.metadata_location(), &roots, future).await.unwrap();
    for orphan in &orphans {
        prop_assert!(
            !referenced.iter().any(|r| local(r) == local(&orphan.path)),
            "{} is referenced yet found orphaned (ops {ops:?})",
            orphan.path
        );
        std::fs::remove_file(local(&orphan.path)).unwrap();
    }

    for file in &referenced {
        prop_assert!(local(file).exists(), "{file}, which the metadata references, is gone (ops {ops:?})");
    }
    for file in &failed {
        prop_assert!(!local(file).exists(), "{file} of a failed commit survived (ops {ops:?})");
    }
    let mut left = BTreeSet::new();
    for root in &roots {
        left.extend(list_files(t.table.file_io(), root).await.unwrap().into_iter().map(|f| local(&f.path)));
    }
    let referenced_paths: BTreeSet<_> = referenced.iter().map(|r| local(r)).collect();
    prop_assert_eq!(left, referenced_paths, "only referenced files are left (ops {:?})", ops);
    for (id, expected) in snapshot_rows {
        prop_assert_eq!(rows(&scan_snapshot(&t.table, id).await.unwrap()), expected, "snapshot {}", id);
    }
    Ok(())
}

fn loch_meta_now() -> i64 {
    let elapsed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(elapsed.as_millis()).unwrap()
}

#[test]
fn orphan_cleaning_removes_failed_commits_and_never_a_referenced_file() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cases = std::env::var("LOCH_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24);
    let config = ProptestConfig { cases, failure_persistence: None, max_shrink_iters: 32, ..ProptestConfig::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = proptest::collection::vec(op(), 3..12);
    if let Err(e) = runner.run(&strategy, |ops| runtime.block_on(run_case(ops))) {
        panic!("{e}");
    }
}

/// Spellings differ between engines: a file the metadata names `file:/p` is the listed
/// `file:///p`, and so is never an orphan.
#[tokio::test]
async fn a_file_named_in_another_spelling_is_still_referenced() {
    let (mut t, _dir) = table().await;
    t.append(&batch(&t.table, 0..3)).await.unwrap();
    let data = live(&t.table).await;
    let path = data[0].path().to_string();
    let mut referenced = loch_table::orphans::Referenced::default();
    referenced.add(t.table.file_io(), &t.table.metadata_ref(), t.table.metadata_location()).await.unwrap();
    let java = path.replacen("file:///", "file:/", 1);
    assert_ne!(java, path);
    assert!(referenced.contains(&java) && referenced.contains(&path));
    assert!(!referenced.contains(&format!("{path}.copy")));
}
