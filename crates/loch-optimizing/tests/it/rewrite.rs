//! Minor, major and full optimizing of tables with position and equality deletes, and the
//! interleavings with concurrent commits (made deterministic by running the steps by hand).

use std::collections::HashMap;

use iceberg::TableUpdate;
use iceberg::spec::Struct;
use loch_api::optimizer::{TaskInput, TaskOutput};
use loch_catalog::{TableChange, TableName};
use loch_optimizing::OptimizingError;
use loch_optimizing::committer::{Committed, ProcessOutput, commit_rewrite};
use loch_optimizing::evaluator::{LastOptimized, OptimizingType, evaluate};
use loch_optimizing::plan::{ProcessPlan, plan_process};
use loch_table::TableError;
use loch_table::position_delete::write_position_deletes;
use loch_table::snapshot::{OverwriteFiles, SnapshotAction};
use loch_testkit::local::write_equality_deletes;

use crate::common::{Env, batch};

/// Evaluates and plans the table as it is now.
async fn plan_now(env: &Env) -> Option<ProcessPlan> {
    let t = env.table().await;
    let snapshot = t.table.metadata().current_snapshot().unwrap().clone();
    let now = chrono_now();
    let evaluation = evaluate(
        t.table.file_io().clone(),
        t.table.metadata_ref(),
        snapshot,
        &t.props,
        &LastOptimized { minor: Some(now), ..Default::default() },
        now,
    )
    .await
    .unwrap();
    plan_process(&t, &evaluation, u64::MAX).await.unwrap()
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn execute(plan: &ProcessPlan) -> Vec<(TaskInput, TaskOutput)> {
    let mut results = Vec::new();
    for (_, input) in &plan.tasks {
        results.push((input.clone(), loch_optimizer::executor::execute(input).await.unwrap()));
    }
    results
}

async fn commit(
    env: &Env,
    plan: &ProcessPlan,
    results: &[(TaskInput, TaskOutput)],
) -> Result<Committed, OptimizingError> {
    let output = ProcessOutput {
        table_id: env.table_id,
        process_id: 42,
        kind: plan.kind,
        target_snapshot: plan.snapshot_id,
        results,
    };
    commit_rewrite(&env.catalogs, output).await
}

/// Plans full optimizing now, executes and commits it: every delete was applied while reading
/// (as many rows read as `before` holds) and the table holds the rows `before` after.
async fn compact_fully(env: &Env, before: &[std::collections::BTreeMap<String, String>]) -> ProcessPlan {
    let plan = plan_now(env).await.expect("full optimizing is due");
    let results = execute(&plan).await;
    let read: u64 = results.iter().map(|(_, out)| out.summary.rows_read).sum();
    assert_eq!(read as usize, before.len(), "the deletes were applied while reading");
    commit(env, &plan, &results).await.unwrap();
    assert_eq!(env.rows().await, before, "same rows, same deletes applied");
    plan
}

async fn set_properties(env: &Env, props: &[(&str, String)]) {
    let t = env.table().await;
    let updates = props.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<HashMap<_, _>>();
    let change = TableChange {
        ident: TableName::new(vec!["db".into()], "t"),
        requirements: vec![],
        updates: vec![TableUpdate::SetProperties { updates }],
    };
    env.catalogs.commit_table(&t.catalog, change).await.unwrap();
}

/// A table with one segment (ids 0..50000) whose size is the target size, so small appends are
/// fragments; returns the segment's path.
async fn with_segment(props: &[(&str, &str)]) -> (Env, String) {
    let env = Env::new(false, props).await;
    let segment = env.append(0..50_000, "a").await.remove(0);
    set_properties(&env, &[("self-optimizing.target-size", segment.file_size_in_bytes().to_string())]).await;
    (env, segment.file_path().to_string())
}

#[tokio::test]
async fn minor_optimizing_compacts_fragments() {
    let env = Env::new(true, &[]).await;
    for i in 0..26 {
        env.append(i * 10..i * 10 + 10, if i % 2 == 0 { "a" } else { "b" }).await;
    }
    let before = env.rows().await;
    assert_eq!(env.file_counts().await, (26, 0, 0));
    let plan = plan_now(&env).await.expect("13 fragments per partition trigger minor optimizing");
    assert_eq!(plan.kind, OptimizingType::Minor);
    assert_eq!(plan.tasks.len(), 2, "one task per partition");
    let results = execute(&plan).await;
    commit(&env, &plan, &results).await.unwrap();
    assert_eq!(env.rows().await, before);
    assert_eq!(env.file_counts().await, (2, 0, 0));
    let t = env.table().await;
    let summary = t.table.metadata().current_snapshot().unwrap().summary();
    assert_eq!(summary.additional_properties["snapshot.producer"], "OPTIMIZE");
    assert!(plan_now(&env).await.is_none(), "nothing left to do");
}

#[tokio::test]
async fn minor_optimizing_turns_equality_deletes_into_position_deletes() {
    let (env, segment) = with_segment(&[]).await;
    for i in 0..3 {
        env.append(100_000 + i * 10..100_000 + i * 10 + 10, "a").await;
    }
    let t = env.table().await;
    let eq = write_equality_deletes(&t.table, vec![1], &batch(&t.table, [5, 100_001], "a"), None).await.unwrap();
    let foreign_pos = write_position_deletes(t.table.file_io(), &segment, &[10, 11], Struct::empty(), 0).await.unwrap();
    env.delete(vec![eq, foreign_pos]).await;
    let before = env.rows().await;
    assert_eq!(before.len(), 50_000 + 30 - 4);
    assert_eq!(env.file_counts().await, (4, 1, 1));

    let plan = plan_now(&env).await.expect("equality deletes on a segment trigger minor optimizing");
    assert_eq!(plan.kind, OptimizingType::Minor);
    let reposition: usize = plan.tasks.iter().map(|(_, t)| t.reposition.len()).sum();
    let rewrite: usize = plan.tasks.iter().map(|(_, t)| t.rewrite.len()).sum();
    assert_eq!((reposition, rewrite), (1, 3), "the segment stays, the fragments are rewritten");
    let results = execute(&plan).await;
    commit(&env, &plan, &results).await.unwrap();
    assert_eq!(env.rows().await, before, "same rows, same deletes applied");
    // One data file from the fragments, the segment, and one position delete file for it.
    assert_eq!(env.file_counts().await, (2, 1, 0));
}

#[tokio::test]
async fn major_optimizing_rewrites_segments_with_many_deletes() {
    let (env, segment) = with_segment(&[]).await;
    let t = env.table().await;
    let positions: Vec<i64> = (0..50_000).step_by(7).collect(); // 14 % of the rows
    let pos = write_position_deletes(t.table.file_io(), &segment, &positions, Struct::empty(), 0).await.unwrap();
    env.delete(vec![pos]).await;
    let before = env.rows().await;
    let plan = plan_now(&env).await.expect("position deletes above the duplicate ratio trigger major optimizing");
    assert_eq!(plan.kind, OptimizingType::Major);
    let results = execute(&plan).await;
    commit(&env, &plan, &results).await.unwrap();
    assert_eq!(env.rows().await, before);
    assert_eq!(env.file_counts().await, (1, 0, 0));
}

#[tokio::test]
async fn full_optimizing_leaves_no_delete_files() {
    let (env, segment) = with_segment(&[("self-optimizing.full.trigger.interval", "0")]).await;
    env.append(100_000..100_010, "a").await;
    env.append(100_010..100_020, "a").await;
    let t = env.table().await;
    let eq = write_equality_deletes(&t.table, vec![1], &batch(&t.table, [3, 100_003], "a"), None).await.unwrap();
    let pos = write_position_deletes(t.table.file_io(), &segment, &[0, 1, 2], Struct::empty(), 0).await.unwrap();
    env.delete(vec![eq, pos]).await;
    let before = env.rows().await;
    let plan = plan_now(&env).await.unwrap();
    assert_eq!(plan.kind, OptimizingType::Full);
    let results = execute(&plan).await;
    commit(&env, &plan, &results).await.unwrap();
    assert_eq!(env.rows().await, before);
    let (_, pos_files, eq_files) = env.file_counts().await;
    assert_eq!((pos_files, eq_files), (0, 0), "full optimizing leaves no delete files");
}

/// Fragments with an equality delete, planned and executed; the commit is left to the test.
async fn executed() -> (Env, ProcessPlan, Vec<(TaskInput, TaskOutput)>) {
    let env = Env::new(false, &[]).await;
    for i in 0..12 {
        env.append(i * 10..i * 10 + 10, "a").await;
    }
    let plan = plan_now(&env).await.unwrap();
    let results = execute(&plan).await;
    (env, plan, results)
}

#[tokio::test]
async fn appends_and_equality_deletes_during_a_process_are_kept() {
    let (env, plan, results) = executed().await;
    env.append(1000..1005, "a").await;
    let t = env.table().await;
    let eq = write_equality_deletes(&t.table, vec![1], &batch(&t.table, [7, 1001], "a"), None).await.unwrap();
    env.delete(vec![eq]).await;
    let expected = env.rows().await;
    assert_eq!(expected.len(), 120 + 5 - 2);
    let committed = commit(&env, &plan, &results).await.unwrap();
    assert!(!committed.already);
    assert_eq!(env.rows().await, expected, "no row lost, no deleted row back");
}

#[tokio::test]
async fn a_position_delete_on_a_file_appended_during_a_process_is_kept() {
    let (env, plan, results) = executed().await;
    let appended = env.append(1000..1005, "a").await;
    let t = env.table().await;
    let pos =
        write_position_deletes(t.table.file_io(), appended[0].file_path(), &[0, 3], Struct::empty(), 0).await.unwrap();
    env.delete(vec![pos]).await;
    let expected = env.rows().await;
    assert_eq!(expected.len(), 120 + 5 - 2);
    let committed = commit(&env, &plan, &results).await.unwrap();
    assert!(!committed.already);
    assert_eq!(env.rows().await, expected, "the delete of a file the process did not read still applies");
}

#[tokio::test]
async fn a_position_delete_on_a_rewritten_file_fails_the_commit() {
    let (env, plan, results) = executed().await;
    let victim = results[0].0.rewrite[0].file.to_value()["file_path"].as_str().unwrap().to_string();
    let t = env.table().await;
    let pos = write_position_deletes(t.table.file_io(), &victim, &[0], Struct::empty(), 0).await.unwrap();
    env.delete(vec![pos]).await;
    let expected = env.rows().await;
    let err = commit(&env, &plan, &results).await.unwrap_err();
    assert!(matches!(err, OptimizingError::Table(TableError::Conflict(_))), "{err}");
    assert_eq!(env.rows().await, expected, "a failed commit changes nothing");
}

#[tokio::test]
async fn removing_a_rewritten_file_fails_the_commit() {
    let (env, plan, results) = executed().await;
    let victim = results[0].0.rewrite[0].file.to_value()["file_path"].as_str().unwrap().to_string();
    let t = env.table().await;
    env.commit(OverwriteFiles::new().delete_file(victim).prepare(&t.table).await.unwrap()).await;
    let err = commit(&env, &plan, &results).await.unwrap_err();
    assert!(matches!(err, OptimizingError::Table(TableError::Conflict(_))), "{err}");
}

#[tokio::test]
async fn a_commit_repeated_after_a_crash_is_recognized() {
    let (env, plan, results) = executed().await;
    let first = commit(&env, &plan, &results).await.unwrap();
    let again = commit(&env, &plan, &results).await.unwrap();
    assert_eq!((again.snapshot_id, again.already), (first.snapshot_id, true));
}

/// Hundreds of tiny files, read several at once by the executor, with an equality delete file
/// and position delete files that apply to many of them: the same rows come out, every delete
/// applied, in one file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tiny_files_with_shared_deletes_compact_to_the_same_rows() {
    let env = Env::new(false, &[("self-optimizing.full.trigger.interval", "0")]).await;
    let mut appended = Vec::new();
    for i in 0..200 {
        appended.extend(env.append(i * 5..i * 5 + 5, "a").await);
    }
    let t = env.table().await;
    let ids: Vec<i64> = (0..1_000).step_by(7).collect();
    let mut deletes = vec![write_equality_deletes(&t.table, vec![1], &batch(&t.table, ids, "a"), None).await.unwrap()];
    for file in appended.iter().step_by(9) {
        deletes.push(
            write_position_deletes(t.table.file_io(), file.file_path(), &[0, 3], Struct::empty(), 0).await.unwrap(),
        );
    }
    env.delete(deletes).await;
    let before = env.rows().await;
    assert!(before.len() < 1_000 - 143 && before.len() > 700, "{} rows left", before.len());
    let plan = compact_fully(&env, &before).await;
    assert_eq!(plan.tasks.iter().map(|(_, t)| t.rewrite.len()).sum::<usize>(), 200);
    assert_eq!(env.file_counts().await, (1, 0, 0));
}

/// Writes `batch` as a Parquet file at `name` under the table's data directory the way pyarrow
/// does for `add_files`: no field ids in the file.
async fn foreign_file(env: &Env, name: &str, batch: &arrow_array::RecordBatch) -> iceberg::spec::DataFile {
    let t = env.table().await;
    let plain = arrow_schema::Schema::new(
        batch
            .schema()
            .fields()
            .iter()
            .map(|f| arrow_schema::Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    let batch = arrow_array::RecordBatch::try_new(std::sync::Arc::new(plain), batch.columns().to_vec()).unwrap();
    let mut bytes = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let path = format!("{}/data/{name}", t.table.metadata().location());
    let size = bytes.len() as u64;
    t.table.file_io().new_output(&path).unwrap().write(bytes.into()).await.unwrap();
    iceberg::spec::DataFileBuilder::default()
        .content(iceberg::spec::DataContentType::Data)
        .file_path(path)
        .file_format(iceberg::spec::DataFileFormat::Parquet)
        .partition(Struct::empty())
        .record_count(batch.num_rows() as u64)
        .file_size_in_bytes(size)
        .build()
        .unwrap()
}

/// Files written by Loch (field ids), files added without field ids in the table's column order
/// and files added without field ids in another order (read by the table's name mapping, never
/// by position) compact to the same rows. The first two kinds take the plain read of whole
/// files; the last one takes iceberg's reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_without_field_ids_compact_by_the_name_mapping() {
    let env = Env::new(false, &[("self-optimizing.full.trigger.interval", "0")]).await;
    for i in 0..3 {
        env.append(i * 10..i * 10 + 10, "a").await;
    }
    let t = env.table().await;
    let mut added = vec![
        foreign_file(&env, "same-order-1.parquet", &batch(&t.table, 100..150, "b")).await,
        foreign_file(&env, "same-order-2.parquet", &batch(&t.table, 150..200, "c")).await,
    ];
    // Columns (value, category, id): read by position, ids would become values.
    let ordered = batch(&t.table, 200..230, "d");
    let reordered = arrow_array::RecordBatch::try_from_iter([
        ("value", ordered.column(2).clone()),
        ("category", ordered.column(1).clone()),
        ("id", ordered.column(0).clone()),
    ])
    .unwrap();
    added.push(foreign_file(&env, "other-order.parquet", &reordered).await);
    let mapping = r#"[{"field-id": 1, "names": ["id"]}, {"field-id": 2, "names": ["category"]},
        {"field-id": 3, "names": ["value"]}]"#;
    set_properties(&env, &[("schema.name-mapping.default", mapping.to_string())]).await;
    let t = env.table().await;
    let mut delta = loch_table::snapshot::RowDelta::new();
    for f in added {
        delta = delta.add_rows(f);
    }
    env.commit(delta.prepare(&t.table).await.unwrap()).await;
    let before = env.rows().await;
    assert_eq!(before.len(), 30 + 100 + 30);
    assert!(before.iter().any(|r| r["id"] == "229" && r["category"] == "d"), "the mapping reads the reordered file");
    let plan = plan_now(&env).await.expect("full optimizing is due");
    let results = execute(&plan).await;
    commit(&env, &plan, &results).await.unwrap();
    assert_eq!(env.rows().await, before, "same rows after compaction");
    assert_eq!(env.file_counts().await, (1, 0, 0));
}

/// A task fails with a clear error naming the property when the name mapping is not JSON.
#[tokio::test]
async fn a_broken_name_mapping_fails_the_task_clearly() {
    let env = Env::new(false, &[("self-optimizing.full.trigger.interval", "0")]).await;
    for i in 0..3 {
        env.append(i * 10..i * 10 + 10, "a").await;
    }
    set_properties(&env, &[("schema.name-mapping.default", "{not json".to_string())]).await;
    let plan = plan_now(&env).await.expect("full optimizing is due");
    let error = loch_optimizer::executor::execute(&plan.tasks[0].1).await.unwrap_err();
    assert!(error.to_string().contains("schema.name-mapping.default"), "{error}");
}

/// Row groups of each live data file's footer.
async fn row_groups(env: &Env) -> Vec<usize> {
    let t = env.table().await;
    let mut out = Vec::new();
    for live in env.live_files().await {
        let bytes = t.table.file_io().new_input(live.file.file_path()).unwrap().read().await.unwrap();
        let metadata = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&bytes).unwrap();
        out.push(metadata.num_row_groups());
    }
    out
}

const MERGE_ON: (&str, &str) = (loch_optimizer::row_group_merge::ENABLED, "true");
const ANY_ROW_GROUP: (&str, &str) = (loch_optimizer::row_group_merge::MIN_AVG_ROW_GROUP_SIZE, "1");

/// With the row-group merge on and row groups large enough, files without deletes are merged by
/// copying their row groups: the same rows come out, in one file holding every input row group,
/// with the bounds of all of them. Below the size threshold the same task rewrites rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_group_merge_copies_row_groups_and_keeps_the_rows() {
    // The test writer's files are uncompressed: so is the table's writer, or the codecs differ.
    let uncompressed = ("write.parquet.compression-codec", "uncompressed");
    let env =
        Env::new(false, &[("self-optimizing.full.trigger.interval", "0"), MERGE_ON, ANY_ROW_GROUP, uncompressed]).await;
    for i in 0..4 {
        env.append(i * 1_000..(i + 1) * 1_000, ["a", "b"][i as usize % 2]).await;
    }
    assert_eq!(row_groups(&env).await, vec![1; 4]);
    let before = env.rows().await;
    let plan = plan_now(&env).await.expect("full optimizing is due");
    assert_eq!(plan.tasks.len(), 1);

    // Below the threshold (Amoro's default, 8 MiB): rows are rewritten.
    let mut small = plan.tasks[0].1.clone();
    small.properties.remove(ANY_ROW_GROUP.0);
    let rewritten = loch_optimizer::executor::execute(&small).await.unwrap();
    assert_eq!(rewritten.summary.row_groups_copied, 0);
    assert_eq!(rewritten.summary.rows_written, 4_000);
    // In another codec than the table's: rows are rewritten.
    let mut zstd = plan.tasks[0].1.clone();
    zstd.properties.insert(uncompressed.0.to_string(), "zstd".to_string());
    let rewritten = loch_optimizer::executor::execute(&zstd).await.unwrap();
    assert_eq!(rewritten.summary.row_groups_copied, 0);

    // A target size smaller than a file: one output per input file, each with its own counts.
    let mut tiny = plan.tasks[0].1.clone();
    tiny.target_file_size = 1;
    let rolled = loch_optimizer::executor::execute(&tiny).await.unwrap();
    assert_eq!(rolled.summary.row_groups_copied, 4);
    let outputs: Vec<serde_json::Value> = rolled.data_files.iter().map(|f| f.file.to_value()).collect();
    assert_eq!(outputs.len(), 4, "{outputs:?}");
    assert!(outputs.iter().all(|f| f["record_count"] == 1_000), "{outputs:?}");

    let results = execute(&plan).await;
    assert_eq!(results[0].1.summary.row_groups_copied, 4, "every row group was copied");
    assert_eq!(results[0].1.summary.rows_written, 4_000);
    commit(&env, &plan, &results).await.unwrap();
    assert_eq!(env.rows().await, before, "same rows after the merge");
    assert_eq!(env.file_counts().await, (1, 0, 0));
    assert_eq!(row_groups(&env).await, vec![4], "the output keeps the input row groups");
    let merged = env.live_files().await.remove(0).file;
    assert_eq!(merged.record_count(), 4_000);
    assert_eq!(merged.lower_bounds()[&1], iceberg::spec::Datum::long(0));
    assert_eq!(merged.upper_bounds()[&1], iceberg::spec::Datum::long(3_999));
    assert_eq!(merged.null_value_counts()[&3], 0);
    assert_eq!(merged.nan_value_counts().get(&3), Some(&0), "NaN counts are the inputs' sums");
}

/// A delete on one of the files, or a file whose Parquet columns are not the table writer's
/// (no field ids), makes the task rewrite rows: the same rows, deletes applied. A property that
/// is not a boolean fails the task with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_group_merge_declines_files_it_cannot_copy() {
    let env = Env::new(false, &[("self-optimizing.full.trigger.interval", "0"), MERGE_ON, ANY_ROW_GROUP]).await;
    let mut appended = Vec::new();
    for i in 0..3 {
        appended.extend(env.append(i * 100..(i + 1) * 100, "a").await);
    }
    let t = env.table().await;
    let deletes =
        write_position_deletes(t.table.file_io(), appended[1].file_path(), &[0, 5], Struct::empty(), 0).await.unwrap();
    env.delete(vec![deletes]).await;
    let before = env.rows().await;
    assert_eq!(before.len(), 298);
    let plan = plan_now(&env).await.expect("full optimizing is due");
    let mut bad = plan.tasks[0].1.clone();
    bad.properties.insert(MERGE_ON.0.to_string(), "yes".to_string());
    let error = loch_optimizer::executor::execute(&bad).await.unwrap_err();
    assert!(error.to_string().contains(MERGE_ON.0), "{error}");
    let results = execute(&plan).await;
    assert_eq!(results[0].1.summary.row_groups_copied, 0, "a delete applies: rows are rewritten");
    commit(&env, &plan, &results).await.unwrap();
    assert_eq!(env.rows().await, before, "same rows, the delete applied");
    assert_eq!(env.file_counts().await, (1, 0, 0));

    // A file added without field ids next to a file of the table's writer (both uncompressed, as
    // the table writes): rewritten by rows, read by the name mapping.
    let uncompressed = ("write.parquet.compression-codec", "uncompressed");
    let env =
        Env::new(false, &[("self-optimizing.full.trigger.interval", "0"), MERGE_ON, ANY_ROW_GROUP, uncompressed]).await;
    env.append(0..100, "a").await;
    let t = env.table().await;
    let foreign = foreign_file(&env, "no-ids.parquet", &batch(&t.table, 500..520, "z")).await;
    let mapping = r#"[{"field-id": 1, "names": ["id"]}, {"field-id": 2, "names": ["category"]},
        {"field-id": 3, "names": ["value"]}]"#;
    set_properties(&env, &[("schema.name-mapping.default", mapping.to_string())]).await;
    let t = env.table().await;
    env.commit(loch_table::snapshot::RowDelta::new().add_rows(foreign).prepare(&t.table).await.unwrap()).await;
    let before = env.rows().await;
    assert_eq!(before.len(), 120);
    let plan = plan_now(&env).await.expect("full optimizing is due");
    let results = execute(&plan).await;
    assert_eq!(results[0].1.summary.row_groups_copied, 0, "a file without field ids is rewritten by rows");
    commit(&env, &plan, &results).await.unwrap();
    assert_eq!(env.rows().await, before);
    assert_eq!(env.file_counts().await, (1, 0, 0));
}

/// Equality deletes apply by sequence number (rows appended after a delete of their key stay),
/// every delete file's keys apply, and a delete on two columns matches on both; the rows before
/// and after full optimizing are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equality_deletes_apply_to_older_rows_only() {
    let env = Env::new(false, &[("self-optimizing.full.trigger.interval", "0")]).await;
    for i in 0..4 {
        env.append(i * 100..(i + 1) * 100, "a").await;
    }
    let t = env.table().await;
    let eq = |ids: Vec<i32>, rows: Vec<i64>, category: &'static str| {
        let t = t.clone();
        async move { write_equality_deletes(&t.table, ids, &batch(&t.table, rows, category), None).await.unwrap() }
    };
    let thirds = eq(vec![1], (0..400).step_by(3).collect(), "a").await;
    let sevenths = eq(vec![1], (0..400).step_by(7).collect(), "a").await;
    env.delete(vec![thirds, sevenths]).await;
    // The same ids again, after the deletes: they stay, but for the ("b", even id < 20) keys
    // deleted next on (id, category).
    env.append(0..50, "b").await;
    let t = env.table().await;
    let pairs =
        write_equality_deletes(&t.table, vec![1, 2], &batch(&t.table, (0..20).step_by(2), "b"), None).await.unwrap();
    env.delete(vec![pairs]).await;
    let before = env.rows().await;
    let older = (0..400).filter(|i| i % 3 != 0 && i % 7 != 0).count();
    assert_eq!(before.len(), older + 40);
    compact_fully(&env, &before).await;
    assert_eq!(env.file_counts().await.0, 1);
}

/// A table with a struct column: position deletes are applied by the executor, counted over
/// the file's rows (same rows before and after); an equality delete on a nested column, which
/// iceberg-rust's reader cannot apply either, fails the task with an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn position_deletes_apply_and_nested_equality_deletes_are_refused() {
    use arrow_array::{Array, Int64Array, StringArray, StructArray};
    use iceberg::spec::{NestedField, PrimitiveType, Schema, StructType, Type};
    let root = Env::new(false, &[]).await;
    let schema = Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::required(
                2,
                "info",
                Type::Struct(StructType::new(vec![
                    NestedField::required(3, "tag", Type::Primitive(PrimitiveType::String)).into(),
                ])),
            )
            .into(),
        ])
        .build()
        .unwrap();
    let env = root.custom_table("nested", schema, None, &[("self-optimizing.full.trigger.interval", "0")]).await;
    let t = env.table().await;
    let arrow = loch_testkit::data::arrow_schema(&t.table);
    let rows = |ids: std::ops::Range<i64>| {
        let tags: Vec<&str> = ids.clone().map(|i| if i % 4 == 0 { "x" } else { "y" }).collect();
        let arrow_schema::DataType::Struct(fields) = arrow.field(1).data_type().clone() else { panic!("a struct") };
        let tags = std::sync::Arc::new(StringArray::from(tags)) as std::sync::Arc<dyn Array>;
        arrow_array::RecordBatch::try_new(
            arrow.clone(),
            vec![
                std::sync::Arc::new(Int64Array::from_iter_values(ids)),
                std::sync::Arc::new(StructArray::new(fields, vec![tags], None)),
            ],
        )
        .unwrap()
    };
    let mut files = Vec::new();
    for i in 0..3 {
        files.extend(env.append_batch(&rows(i * 10..i * 10 + 10)).await);
    }
    let io = t.table.file_io();
    let mut deletes = Vec::new();
    // Two delete files for file 0, one overlapping the other; one for file 2.
    for (file, positions) in [(&files[0], vec![1, 2]), (&files[0], vec![2, 9]), (&files[2], vec![0, 5])] {
        deletes.push(write_position_deletes(io, file.file_path(), &positions, Struct::empty(), 0).await.unwrap());
    }
    env.delete(deletes).await;
    let before = env.rows().await;
    let mut ids: Vec<i64> = before.iter().map(|r| r["id"].parse().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (0..30).filter(|i| ![1, 2, 9, 20, 25].contains(i)).collect::<Vec<_>>());
    compact_fully(&env, &before).await;
    assert_eq!(env.file_counts().await, (1, 0, 0));

    let t = env.table().await;
    env.delete(vec![write_equality_deletes(&t.table, vec![3], &rows(0..1), None).await.unwrap()]).await;
    let plan = plan_now(&env).await.expect("full optimizing is due");
    for (_, input) in &plan.tasks {
        let error = loch_optimizer::executor::execute(input).await.expect_err("a nested equality delete is refused");
        assert!(error.to_string().contains("equality deletes on nested columns"), "{error}");
    }
}

/// Position delete files of a partitioned table (they hold no partition column) are read with
/// their own schema: compacting the partition applies them, and the rows stay the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn position_deletes_apply_in_a_partitioned_table() {
    let env = Env::new(true, &[("self-optimizing.full.trigger.interval", "0")]).await;
    let mut files = Vec::new();
    for i in 0..3 {
        files.extend(env.append(i * 10..i * 10 + 10, "a").await);
    }
    let t = env.table().await;
    let spec = t.table.metadata().default_partition_spec_id();
    let mut deletes = Vec::new();
    for (file, positions) in [(&files[0], vec![0, 4]), (&files[2], vec![9])] {
        let io = t.table.file_io();
        deletes.push(
            write_position_deletes(io, file.file_path(), &positions, file.partition().clone(), spec).await.unwrap(),
        );
    }
    env.delete(deletes).await;
    let before = env.rows().await;
    let mut ids: Vec<i64> = before.iter().map(|r| r["id"].parse().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (0..30).filter(|i| ![0, 4, 29].contains(i)).collect::<Vec<_>>());
    compact_fully(&env, &before).await;
    assert_eq!(env.file_counts().await, (1, 0, 0));
}
