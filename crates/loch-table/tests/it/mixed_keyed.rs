//! A keyed table under random changes: two writers (one plain, one upserting) interleave
//! inserts, updates, deletes and upserts on random keys over many commits, on a base store
//! seeded with rows. After every commit the merge-on-read equals an in-memory model of the
//! table, and replaying the CDC stream from the start onto the seed gives the same model.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use iceberg::expr::{Predicate, Reference};
use iceberg::spec::Datum;
use iceberg::spec::{Transform, UnboundPartitionSpec};
use loch_table::expire::{CANDIDATE_BATCH, plan_expiry, unreachable_files};
use loch_table::mixed::change::{ChangeOp, ChangeOptions, ChangeWriter};
use loch_table::mixed::file_name::{FileMeta, FileType};
use loch_table::mixed::fold::fold;
use loch_table::mixed::merge::{MergeRead, MergeStats, merge_on_read, read_changes, scan_merged};
use loch_table::mixed::sequence::{
    OPTIMIZED_SEQUENCE_EXIST, OptimizedSequence, attach_optimized_sequence, keep_optimized_sequence,
    read_optimized_sequence,
};
use loch_table::mixed::writer::{ChangeCommitter, Committed, KeyedTableWriter};
use loch_table::snapshot::{RowDelta, SnapshotAction};
use loch_testkit::data::{arrow_schema, write_data_files};
use loch_testkit::keyed::{Lcg, Model, Row, batch, model_of, replay, schema};
use loch_testkit::local::LocalTable;

/// Reads `filter` with `columns` merged; the rows as a model (columns beyond the key are
/// looked up by name) and what the read planned.
async fn read_filtered(
    base: &iceberg::table::Table,
    change: &iceberg::table::Table,
    filter: Predicate,
) -> (Model, MergeStats) {
    use futures::TryStreamExt;
    let read = MergeRead { columns: Some(vec!["v".into(), "id".into(), "region".into()]), filter: Some(filter) };
    let merged = scan_merged(base, change, &["id".to_string()], &read).await.unwrap();
    assert_eq!(merged.schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["v", "id", "region"]);
    let stats = merged.stats;
    let batches: Vec<RecordBatch> = merged.rows.try_collect().await.unwrap();
    // Back to the table's column order for `model_of`.
    let reordered: Vec<RecordBatch> = batches
        .iter()
        .map(|b| {
            RecordBatch::try_new(
                arrow_schema(base),
                vec![b.column(1).clone(), b.column(2).clone(), b.column(0).clone()],
            )
            .unwrap()
        })
        .collect();
    (model_of(&reordered), stats)
}

/// Filtered reads return exactly the model's rows that pass, and a key lookup skips files of
/// other buckets.
async fn filtered_reads_match(
    base: &iceberg::table::Table,
    change: &iceberg::table::Table,
    model: &Model,
    rng: &mut Lcg,
) {
    let id = rng.next(200) as i64;
    let (rows, stats) = read_filtered(base, change, Reference::new("id").equal_to(Datum::long(id))).await;
    let expected: Model = model.iter().filter(|(k, _)| **k == id).map(|(k, v)| (*k, v.clone())).collect();
    assert_eq!(rows, expected, "id = {id}");
    assert!(stats.change_files_read <= stats.change_files);
    if stats.change_files >= 8 {
        assert!(stats.skipped_by_bucket > 0, "a key lookup reads one bucket of four: {stats:?}");
    }

    let ids: Vec<i64> = (0..5).map(|_| rng.next(200) as i64).collect();
    let (rows, _) = read_filtered(base, change, Reference::new("id").is_in(ids.iter().map(|i| Datum::long(*i)))).await;
    let expected: Model = model.iter().filter(|(k, _)| ids.contains(k)).map(|(k, v)| (*k, v.clone())).collect();
    assert_eq!(rows, expected, "id in {ids:?}");

    let region = rng.next(3) as i64;
    let (rows, _) = read_filtered(base, change, Reference::new("region").equal_to(Datum::long(region))).await;
    let expected: Model = model.iter().filter(|(_, v)| v.0 == region).map(|(k, v)| (*k, v.clone())).collect();
    assert_eq!(rows, expected, "region = {region}");

    // A filter on a non-key column filters rows but never the deletes.
    let (rows, _) =
        read_filtered(base, change, Reference::new("v").greater_than_or_equal_to(Datum::string("w1"))).await;
    let expected: Model =
        model.iter().filter(|(_, v)| v.1.as_deref().is_some_and(|s| s >= "w1")).map(|(k, v)| (*k, v.clone())).collect();
    assert_eq!(rows, expected, "v >= w1");
    let (rows, _) = read_filtered(
        base,
        change,
        Reference::new("id").less_than(Datum::long(100)).and(Reference::new("v").less_than(Datum::string("w1"))),
    )
    .await;
    let expected: Model = model
        .iter()
        .filter(|(k, v)| **k < 100 && v.1.as_deref().is_some_and(|s| s < "w1"))
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_eq!(rows, expected, "id < 100 and v < w1");
}

/// One writer's pending changes: rows, ops, and what they do to the model at commit.
struct Pending {
    writer: ChangeWriter,
    effects: Vec<(i64, Option<Row>)>,
}

/// Commits a writer's buffered changes to the change store (one transaction) and applies
/// their effects to the model.
async fn commit(change: &mut LocalTable, pending: &mut Pending, model: &mut Model) {
    let files = pending.writer.finish().await.unwrap();
    let mut delta = RowDelta::new();
    for f in files {
        delta = delta.add_rows(f);
    }
    change.commit(delta.prepare(&change.table).await.unwrap()).await.unwrap();
    for (id, effect) in std::mem::take(&mut pending.effects) {
        match effect {
            Some(row) => model.insert(id, row),
            None => model.remove(&id),
        };
    }
}

async fn random_changes(partitioned: bool, rng_seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let spec = if partitioned {
        UnboundPartitionSpec::builder().add_partition_field(2, "region", Transform::Identity).unwrap().build()
    } else {
        UnboundPartitionSpec::builder().build()
    };
    let mut base = LocalTable::create(dir.path(), schema(), spec.clone()).await.unwrap();
    let mut change = LocalTable::create(&dir.path().join("change"), schema(), spec).await.unwrap();
    let key = vec!["id".to_string()];
    let region = |id: i64| id.rem_euclid(3);

    // The seed: a bulk load into the base store (transaction 0).
    let seed: Vec<(i64, i64, Option<String>)> = (0..60).map(|id| (id, region(id), Some(format!("seed{id}")))).collect();
    let mut delta = RowDelta::new();
    for f in write_data_files(&base.table, &batch(&base.table, &seed)).await.unwrap() {
        delta = delta.add_rows(f);
    }
    base.commit(delta.prepare(&base.table).await.unwrap()).await.unwrap();
    let seed_model: Model = seed.iter().map(|r| (r.0, (r.1, r.2.clone()))).collect();
    let mut model = seed_model.clone();
    assert_eq!(model_of(&merge_on_read(&base.table, &change.table, &key).await.unwrap()), model);

    let mut rng = Lcg(rng_seed);
    // Writer 0 (plain) owns even keys, writer 1 (upsert) odd keys, so their changes interleave
    // without racing on a key; each commit applies its writer's effects to the model.
    let mut writers: Vec<Pending> = [false, true]
        .into_iter()
        .map(|upsert| Pending {
            writer: ChangeWriter::new(
                &change.table,
                &key,
                ChangeOptions { buckets: 4, upsert, ..ChangeOptions::default() },
            )
            .unwrap(),
            effects: Vec::new(),
        })
        .collect();
    let mut view: [Model; 2] = [model.clone(), model.clone()];
    let mut commits = 0;
    let mut folds = 0;
    let mut ops_done = 0;
    while commits < 40 {
        let w = rng.next(2) as usize;
        let n = 1 + rng.next(60) as usize;
        let mut rows = Vec::new();
        let mut ops = Vec::new();
        for _ in 0..n {
            let id = (rng.next(100) as i64) * 2 + w as i64;
            let value = Some(format!("w{w}c{commits}r{}", rng.next(1_000_000)));
            let current = view[w].get(&id).cloned();
            match (w, current, rng.next(4)) {
                // Upserts: insert whatever the key held.
                (1, _, 0 | 1) => {
                    rows.push((id, region(id), value.clone()));
                    ops.push(ChangeOp::Insert);
                    view[w].insert(id, (region(id), value.clone()));
                    writers[w].effects.push((id, Some((region(id), value))));
                }
                (_, None, _) => {
                    rows.push((id, region(id), value.clone()));
                    ops.push(ChangeOp::Insert);
                    view[w].insert(id, (region(id), value.clone()));
                    writers[w].effects.push((id, Some((region(id), value))));
                }
                (_, Some(old), 0 | 1) => {
                    rows.push((id, old.0, old.1));
                    ops.push(ChangeOp::UpdateBefore);
                    rows.push((id, region(id), value.clone()));
                    ops.push(ChangeOp::UpdateAfter);
                    view[w].insert(id, (region(id), value.clone()));
                    writers[w].effects.push((id, Some((region(id), value))));
                }
                (_, Some(old), _) => {
                    rows.push((id, old.0, old.1));
                    ops.push(ChangeOp::Delete);
                    view[w].remove(&id);
                    writers[w].effects.push((id, None));
                }
            }
        }
        ops_done += ops.len();
        writers[w].writer.write(&batch(&change.table, &rows), &ops).unwrap();
        // Commit now, or keep buffering so the other writer's commits land in between.
        if rng.next(3) == 0 {
            continue;
        }
        commit(&mut change, &mut writers[w], &mut model).await;
        commits += 1;
        let merged = model_of(&merge_on_read(&base.table, &change.table, &key).await.unwrap());
        assert_eq!(merged, model, "merge-on-read after commit {commits} (seed {rng_seed})");
        // Now and then, minor optimizing folds the change store into the base; sometimes the
        // other writer commits while the fold runs.
        if rng.next(5) == 0 {
            let folding = fold(&base.table, &change.table, &key, 4).await.unwrap();
            let other = 1 - w;
            if rng.next(2) == 0 && writers[other].writer.rows() > 0 {
                commit(&mut change, &mut writers[other], &mut model).await;
                commits += 1;
            }
            if !folding.is_empty() {
                let pending = folding.prepare_commit(&base.table).await.unwrap();
                base.commit(pending).await.unwrap();
                folds += 1;
            }
            let merged = model_of(&merge_on_read(&base.table, &change.table, &key).await.unwrap());
            assert_eq!(merged, model, "merge-on-read after fold {folds} (seed {rng_seed})");
        }
        filtered_reads_match(&base.table, &change.table, &model, &mut rng).await;
    }
    assert!(ops_done > 1_000, "thousands of changes: {ops_done}");
    assert!(folds >= 3, "the change store was folded into the base {folds} times");

    // Replaying the CDC stream from the start onto the seed gives the model, in commit order.
    for pending in &mut writers {
        commit(&mut change, pending, &mut model).await;
    }
    assert_eq!(model_of(&merge_on_read(&base.table, &change.table, &key).await.unwrap()), model);
    let mut replayed = seed_model;
    let transactions = replay(&mut replayed, &read_changes(&change.table, None, None).await.unwrap());
    assert_eq!(replayed, model, "CDC replay (seed {rng_seed})");
    assert!(transactions.windows(2).all(|w| w[0] <= w[1]), "changes come in transaction order");
    // A later window holds only the later transactions.
    let last = *transactions.last().unwrap();
    let tail = read_changes(&change.table, Some(last - 1), None).await.unwrap();
    assert!(replay(&mut Model::new(), &tail).iter().all(|t| *t == last));

    // Files carry Amoro's names: buckets of 4, inserts and deletes, transaction 0 (the sequence).
    let live = loch_testkit::data::reached_by(&change.table, change.table.metadata().current_snapshot_id().unwrap())
        .await
        .unwrap();
    let metas: Vec<FileMeta> =
        live.iter().filter(|p| p.ends_with(".parquet")).map(|p| FileMeta::of_change(p, 1)).collect();
    assert!(
        metas.iter().any(|m| m.file_type == FileType::EqDelete)
            && metas.iter().any(|m| m.file_type == FileType::Insert)
    );
    assert!(metas.iter().all(|m| m.node.mask() == 3 && m.transaction_id == 1), "{metas:?}");
}

#[tokio::test]
async fn random_changes_merge_and_replay_to_the_model_unpartitioned() {
    random_changes(false, 7).await;
}

#[tokio::test]
async fn random_changes_merge_and_replay_to_the_model_partitioned() {
    random_changes(true, 11).await;
}

/// A writer that flushes past a tiny buffer writes many files and reads back the same rows as
/// one that buffers the whole transaction; aborting deletes what the flushes wrote.
#[tokio::test]
async fn a_bounded_buffer_writes_the_same_rows_and_abort_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spec = UnboundPartitionSpec::builder().build();
    let base = LocalTable::create(dir.path(), schema(), spec.clone()).await.unwrap();
    let mut change = LocalTable::create(&dir.path().join("change"), schema(), spec).await.unwrap();
    let key = vec!["id".to_string()];
    let options = ChangeOptions { buffer_bytes: 4096, ..ChangeOptions::default() };
    let mut bounded = ChangeWriter::new(&change.table, &key, options).unwrap();
    let mut model = Model::new();
    for round in 0..20i64 {
        let rows: Vec<(i64, i64, Option<String>)> =
            (0..100).map(|i| ((round * 37 + i) % 500, 0, Some(format!("r{round}i{i}")))).collect();
        // Inserts of keys already written become updates: delete, then insert.
        let mut ops = Vec::new();
        let mut batch_rows = Vec::new();
        for row in rows {
            if let Some(old) = model.get(&row.0) {
                batch_rows.push((row.0, old.0, old.1.clone()));
                ops.push(ChangeOp::UpdateBefore);
                ops.push(ChangeOp::UpdateAfter);
            } else {
                ops.push(ChangeOp::Insert);
            }
            model.insert(row.0, (row.1, row.2.clone()));
            batch_rows.push(row);
        }
        bounded.append(&batch(&change.table, &batch_rows), &ops).await.unwrap();
        assert!(bounded.buffered_bytes() < 4096 + 64 * 1024, "the buffer stays bounded");
    }
    let files = bounded.finish().await.unwrap();
    assert!(files.len() > 20, "flushes wrote files as the buffer filled: {}", files.len());
    let mut delta = RowDelta::new();
    for f in files {
        delta = delta.add_rows(f);
    }
    change.commit(delta.prepare(&change.table).await.unwrap()).await.unwrap();
    assert_eq!(model_of(&merge_on_read(&base.table, &change.table, &key).await.unwrap()), model);

    // An abandoned transaction leaves no files behind.
    let parquet_files =
        || walk(&dir.path().join("change/data")).into_iter().filter(|p| p.ends_with(".parquet")).count();
    let before = parquet_files();
    let mut abandoned = ChangeWriter::new(&change.table, &key, options).unwrap();
    let rows: Vec<(i64, i64, Option<String>)> = (1000..1500).map(|i| (i, 0, Some("x".repeat(50)))).collect();
    abandoned.append(&batch(&change.table, &rows), &vec![ChangeOp::Insert; rows.len()]).await.unwrap();
    assert!(parquet_files() > before, "the flush wrote files");
    abandoned.abort().await;
    assert_eq!(parquet_files(), before);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.to_string_lossy().into_owned());
        }
    }
    out
}

/// Commits to a local table, as the catalog service does under its lock.
struct LocalCommitter(Arc<tokio::sync::Mutex<LocalTable>>);

#[async_trait::async_trait]
impl ChangeCommitter for LocalCommitter {
    type Error = loch_table::TableError;

    async fn commit_files(&self, files: Vec<iceberg::spec::DataFile>) -> Result<Committed, Self::Error> {
        let mut change = self.0.lock().await;
        let mut delta = RowDelta::new();
        for f in files {
            delta = delta.add_rows(f);
        }
        let pending = delta.prepare(&change.table).await?;
        let snapshot_id = pending.snapshot_id;
        change.commit(pending).await.map_err(|e| loch_table::TableError::Invalid(e.to_string()))?;
        let transaction_id = change.table.metadata().snapshot_by_id(snapshot_id).unwrap().sequence_number();
        Ok(Committed { transaction_id, snapshot_id })
    }
}

/// The Rust writer's four kinds of change, one transaction per commit: the merged rows follow
/// them and the CDC stream names them (an upsert is a delete and an insert, an update a pair).
#[tokio::test]
async fn the_keyed_table_writer_inserts_updates_deletes_and_upserts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = UnboundPartitionSpec::builder().build();
    let base = LocalTable::create(dir.path(), schema(), spec.clone()).await.unwrap();
    let change = LocalTable::create(&dir.path().join("change"), schema(), spec).await.unwrap();
    let table = change.table.clone();
    let key = vec!["id".to_string()];
    let shared = Arc::new(tokio::sync::Mutex::new(change));
    let committer = LocalCommitter(shared.clone());
    let mut writer = KeyedTableWriter::new(&table, &key, ChangeOptions::default(), committer).unwrap();
    let row = |id: i64, v: &str| (id, 0, Some(v.to_string()));

    assert!(writer.commit().await.is_err(), "an empty transaction is refused");
    writer.insert(&batch(&table, &[row(1, "a"), row(2, "b"), row(3, "c")])).await.unwrap();
    let first = writer.commit().await.unwrap();
    writer.update(&batch(&table, &[row(1, "a")]), &batch(&table, &[row(1, "a2")])).await.unwrap();
    writer.delete(&batch(&table, &[row(2, "b")])).await.unwrap();
    writer.upsert(&batch(&table, &[row(3, "c2"), row(4, "d")])).await.unwrap();
    assert!(
        writer.update(&batch(&table, &[row(1, "x")]), &batch(&table, &[])).await.is_err(),
        "an update needs a row after for each row before"
    );
    assert_eq!(writer.rows(), 4);
    let second = writer.commit().await.unwrap();
    assert!(second.transaction_id > first.transaction_id);

    let table = shared.lock().await.table.clone();
    let merged = model_of(&merge_on_read(&base.table, &table, &key).await.unwrap());
    let expected: Model = [(1, "a2"), (3, "c2"), (4, "d")].into_iter().map(|(k, v)| (k, (0, Some(v.into())))).collect();
    assert_eq!(merged, expected);
    let cdc = read_changes(&table, Some(first.transaction_id), None).await.unwrap();
    let actions: Vec<String> = cdc
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name("_change_action").unwrap().as_string::<i32>().clone();
            (0..a.len()).map(move |i| a.value(i).to_string()).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(actions, ["UPDATE_BEFORE", "UPDATE_AFTER", "DELETE", "DELETE", "INSERT", "DELETE", "INSERT"]);
}

/// Folding the change store into the base (as keyed optimizing does) and recording the
/// partitions' optimized sequence in a Puffin file as Amoro does hides the folded change files
/// from merge-on-read, while later changes still apply to the folded rows.
#[tokio::test]
async fn an_optimized_sequence_hides_folded_change_files() {
    let dir = tempfile::tempdir().unwrap();
    let spec = UnboundPartitionSpec::builder().add_partition_field(2, "region", Transform::Identity).unwrap().build();
    let mut base = LocalTable::create(dir.path(), schema(), spec.clone()).await.unwrap();
    let mut change = LocalTable::create(&dir.path().join("change"), schema(), spec).await.unwrap();
    let key = vec!["id".to_string()];
    let mut model = Model::new();
    let mut pending = Pending {
        writer: ChangeWriter::new(&change.table, &key, ChangeOptions::default()).unwrap(),
        effects: Vec::new(),
    };
    // Three transactions: inserts, then updates and deletes of some of them.
    let rows: Vec<(i64, i64, Option<String>)> = (0..30).map(|id| (id, id % 3, Some(format!("v{id}")))).collect();
    pending.writer.write(&batch(&change.table, &rows), &vec![ChangeOp::Insert; rows.len()]).unwrap();
    pending.effects.extend(rows.iter().map(|r| (r.0, Some((r.1, r.2.clone())))));
    commit(&mut change, &mut pending, &mut model).await;
    let updates: Vec<(i64, i64, Option<String>)> =
        (0..10).flat_map(|id| [(id, id % 3, Some(format!("v{id}"))), (id, id % 3, Some(format!("u{id}")))]).collect();
    let ops: Vec<ChangeOp> = (0..10).flat_map(|_| [ChangeOp::UpdateBefore, ChangeOp::UpdateAfter]).collect();
    pending.writer.write(&batch(&change.table, &updates), &ops).unwrap();
    pending.effects.extend((0..10).map(|id| (id, Some((id % 3, Some(format!("u{id}")))))));
    commit(&mut change, &mut pending, &mut model).await;
    let deletes: Vec<(i64, i64, Option<String>)> = (20..25).map(|id| (id, id % 3, Some(format!("v{id}")))).collect();
    pending.writer.write(&batch(&change.table, &deletes), &vec![ChangeOp::Delete; deletes.len()]).unwrap();
    pending.effects.extend((20..25).map(|id| (id, None)));
    commit(&mut change, &mut pending, &mut model).await;
    let folded_up_to = change.table.metadata().last_sequence_number();

    // Fold: the merged rows become base files, and every partition's sequence is advanced.
    let merged = merge_on_read(&base.table, &change.table, &key).await.unwrap();
    assert_eq!(model_of(&merged), model);
    let mut delta = RowDelta::new().set_property(OPTIMIZED_SEQUENCE_EXIST, "true");
    for b in &merged {
        for f in write_data_files(&base.table, b).await.unwrap() {
            delta = delta.add_rows(f);
        }
    }
    let mut commit_base = delta.prepare(&base.table).await.unwrap();
    let sequence = OptimizedSequence((0..3).map(|r| (format!("region={r}"), folded_up_to)).collect());
    attach_optimized_sequence(&base.table, &mut commit_base, &sequence).await.unwrap();
    base.commit(commit_base).await.unwrap();
    assert_eq!(read_optimized_sequence(&base.table).await.unwrap(), sequence);
    let statistics = base.table.metadata().statistics_iter().next().unwrap().clone();
    assert!(statistics.statistics_path.contains("/data/puffin/"), "{}", statistics.statistics_path);

    // Without the sequence every key would be read twice (base and change); with it, once.
    let read = scan_merged(&base.table, &change.table, &key, &MergeRead::default()).await.unwrap();
    let stats = read.stats;
    let batches: Vec<RecordBatch> = futures::TryStreamExt::try_collect(read.rows).await.unwrap();
    assert_eq!(model_of(&batches), model);
    assert_eq!(stats.skipped_as_optimized, stats.change_files, "{stats:?}");

    // Changes after the fold apply to the folded rows; the sequence persists across snapshots.
    let later: Vec<(i64, i64, Option<String>)> = vec![
        (1, 1, Some("u1".into())),
        (1, 1, Some("later1".into())),
        (2, 2, Some("u2".into())),
        (40, 1, Some("new".into())),
    ];
    let ops = [ChangeOp::UpdateBefore, ChangeOp::UpdateAfter, ChangeOp::Delete, ChangeOp::Insert];
    pending.writer.write(&batch(&change.table, &later), &ops).unwrap();
    pending.effects.extend([(1, Some((1, Some("later1".into())))), (2, None), (40, Some((1, Some("new".into()))))]);
    commit(&mut change, &mut pending, &mut model).await;
    base.commit(RowDelta::new().prepare(&base.table).await.unwrap()).await.unwrap();
    assert_eq!(read_optimized_sequence(&base.table).await.unwrap(), sequence, "read from the ancestor");
    assert_eq!(model_of(&merge_on_read(&base.table, &change.table, &key).await.unwrap()), model);

    // Expiring every snapshot but the current one moves the sequence onto it: the Puffin file
    // is kept, and folded change files stay hidden.
    let now = chrono::Utc::now().timestamp_millis();
    let mut expiry = plan_expiry(&base.table, now + 1, 1).await.unwrap().expect("older snapshots expire");
    let before = base.table.metadata_ref();
    keep_optimized_sequence(&before, &mut expiry).unwrap();
    let doomed = unreachable_files(base.table.file_io(), &before, &expiry.after, CANDIDATE_BATCH).await.unwrap();
    assert!(!doomed.statistics_files.contains(&statistics.statistics_path), "{doomed:?}");
    base.apply(expiry.requirements, expiry.updates).await.unwrap();
    assert_eq!(base.table.metadata().snapshots().count(), 1);
    assert_eq!(read_optimized_sequence(&base.table).await.unwrap(), sequence, "carried onto the current snapshot");
    assert_eq!(model_of(&merge_on_read(&base.table, &change.table, &key).await.unwrap()), model);
}
