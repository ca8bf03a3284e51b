//! A keyed table (base store seeded, then commits of inserts, updates and deletes to the change
//! store) queried with SQL; every answer is checked against an in-memory model.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
use datafusion::prelude::SessionContext;
use iceberg::spec::{NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec};
use loch_sql::{KeyedScanExec, KeyedTableProvider};
use loch_table::mixed::change::{ChangeOp, ChangeOptions, ChangeWriter};
use loch_table::snapshot::{RowDelta, SnapshotAction};
use loch_testkit::data::{arrow_schema, write_data_files};
use loch_testkit::local::LocalTable;

/// id → (region, value).
type Model = BTreeMap<i64, (i64, String)>;

fn schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::required(2, "region", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(3, "v", Type::Primitive(PrimitiveType::String)).into(),
        ])
        .build()
        .unwrap()
}

fn batch(table: &iceberg::table::Table, rows: &[(i64, i64, String)]) -> RecordBatch {
    RecordBatch::try_new(
        arrow_schema(table),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2.clone()))),
        ],
    )
    .unwrap()
}

/// A keyed table partitioned by region with 300 seeded rows and 12 commits of changes.
async fn keyed_table(dir: &std::path::Path) -> (KeyedTableProvider, Model) {
    let spec = UnboundPartitionSpec::builder().add_partition_field(2, "region", Transform::Identity).unwrap().build();
    let mut base = LocalTable::create(dir, schema(), spec.clone()).await.unwrap();
    let mut change = LocalTable::create(&dir.join("change"), schema(), spec).await.unwrap();
    let region = |id: i64| id % 3;
    let seed: Vec<(i64, i64, String)> = (0..300).map(|id| (id, region(id), format!("seed{id}"))).collect();
    let mut delta = RowDelta::new();
    for f in write_data_files(&base.table, &batch(&base.table, &seed)).await.unwrap() {
        delta = delta.add_rows(f);
    }
    base.commit(delta.prepare(&base.table).await.unwrap()).await.unwrap();
    let mut model: Model = seed.iter().map(|r| (r.0, (r.1, r.2.clone()))).collect();

    let key = vec!["id".to_string()];
    for commit in 0..12i64 {
        let mut writer = ChangeWriter::new(&change.table, &key, ChangeOptions::default()).unwrap();
        let (mut rows, mut ops) = (Vec::new(), Vec::new());
        for i in 0..40 {
            let id = (commit * 53 + i * 7) % 400;
            match (model.get(&id).cloned(), i % 5) {
                (Some(old), 0) => {
                    rows.push((id, old.0, old.1));
                    ops.push(ChangeOp::Delete);
                    model.remove(&id);
                }
                (Some(old), _) => {
                    let new = (region(id), format!("c{commit}u{id}"));
                    rows.push((id, old.0, old.1));
                    ops.push(ChangeOp::UpdateBefore);
                    rows.push((id, new.0, new.1.clone()));
                    ops.push(ChangeOp::UpdateAfter);
                    model.insert(id, new);
                }
                (None, _) => {
                    let new = (region(id), format!("c{commit}i{id}"));
                    rows.push((id, new.0, new.1.clone()));
                    ops.push(ChangeOp::Insert);
                    model.insert(id, new);
                }
            }
        }
        writer.write(&batch(&change.table, &rows), &ops).unwrap();
        let mut delta = RowDelta::new();
        for f in writer.finish().await.unwrap() {
            delta = delta.add_rows(f);
        }
        change.commit(delta.prepare(&change.table).await.unwrap()).await.unwrap();
    }
    (KeyedTableProvider::try_new(base.table, change.table, key).unwrap(), model)
}

/// Rows of `sql` as (id, region, v) triples (the query selects those three, in that order).
async fn query(ctx: &SessionContext, sql: &str) -> Vec<(i64, i64, String)> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        let (ids, regions) = (b.column(0).as_primitive::<Int64Type>(), b.column(1).as_primitive::<Int64Type>());
        for i in 0..b.num_rows() {
            let value = array_value_to_string(b.column(2), i).unwrap();
            out.push((ids.value(i), regions.value(i), value));
        }
    }
    out
}

/// Which model rows a filter keeps.
type Keep = fn(i64, &(i64, String)) -> bool;

fn expected(model: &Model, keep: Keep) -> Vec<(i64, i64, String)> {
    model.iter().filter(|(k, v)| keep(**k, v)).map(|(k, v)| (*k, v.0, v.1.clone())).collect()
}

/// The keyed scan inside `plan`.
fn keyed_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&KeyedScanExec> {
    if let Some(scan) = plan.as_any().downcast_ref::<KeyedScanExec>() {
        return Some(scan);
    }
    plan.children().into_iter().find_map(keyed_scan)
}

#[tokio::test]
async fn sql_over_a_keyed_table_equals_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, model) = keyed_table(dir.path()).await;
    let ctx = SessionContext::new();
    ctx.register_table("t", Arc::new(provider)).unwrap();

    let all = query(&ctx, "SELECT id, region, v FROM t ORDER BY id").await;
    assert_eq!(all, expected(&model, |_, _| true));
    let count = ctx.sql("SELECT count(*) FROM t").await.unwrap().collect().await.unwrap();
    assert_eq!(count[0].column(0).as_primitive::<Int64Type>().value(0), model.len() as i64);

    let filters: [(&str, Keep); 4] = [
        ("id = 7", |k, _| k == 7),
        ("id IN (3, 21, 300, 333)", |k, _| [3, 21, 300, 333].contains(&k)),
        ("region = 1", |_, v| v.0 == 1),
        ("id < 50 AND region = 2", |k, v| k < 50 && v.0 == 2),
    ];
    for (sql_filter, keep) in filters {
        let rows = query(&ctx, &format!("SELECT id, region, v FROM t WHERE {sql_filter} ORDER BY id")).await;
        assert_eq!(rows, expected(&model, keep), "WHERE {sql_filter}");
    }
    // Filters through casts are not pushed down (the converter would drop the cast), and a
    // literal that does not fit its column does not fail the query.
    let rows = query(&ctx, "SELECT id, region, v FROM t WHERE CAST(id AS VARCHAR) < '5' ORDER BY id").await;
    assert_eq!(rows, expected(&model, |k, _| k.to_string().as_str() < "5"));
    let rows = query(&ctx, "SELECT id, region, v FROM t WHERE CAST(id AS DOUBLE) > 398.5 ORDER BY id").await;
    assert_eq!(rows, expected(&model, |k, _| k > 398));
    // Filters that do not become Iceberg predicates are applied by DataFusion above the scan.
    let rows = query(&ctx, "SELECT id, region, v FROM t WHERE v LIKE 'c1%' ORDER BY id").await;
    assert_eq!(rows, expected(&model, |_, v| v.1.starts_with("c1")));
    // Projections in any order, and limits.
    let rows = query(&ctx, "SELECT id, region, v FROM (SELECT v, region, id FROM t) ORDER BY id LIMIT 5").await;
    assert_eq!(rows, expected(&model, |_, _| true)[..5]);
    let limited = ctx.sql("SELECT * FROM t LIMIT 3").await.unwrap().collect().await.unwrap();
    assert_eq!(limited.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
}

#[tokio::test]
async fn key_and_partition_filters_prune_files() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, _) = keyed_table(dir.path()).await;
    let ctx = SessionContext::new();
    ctx.register_table("t", Arc::new(provider)).unwrap();
    let files_read = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
            collect(plan.clone(), ctx.task_ctx()).await.unwrap();
            let scan = keyed_scan(&plan).expect("a keyed scan");
            let text = displayable(scan).one_line().to_string();
            let metrics = scan.metrics().unwrap();
            let metric = |name: &str| metrics.sum_by_name(name).map(|v| v.as_usize()).unwrap();
            (
                metric("change_files"),
                metric("change_files_read"),
                metric("base_files_read"),
                metric("skipped_by_bucket"),
                text,
            )
        }
    };
    let (all, all_read, all_base, _, _) = files_read("SELECT * FROM t").await;
    assert_eq!(all, all_read, "no filter reads every change file");
    // 12 commits × 3 regions × up to 4 buckets × 2 kinds.
    assert!(all > 40, "{all} change files");

    let (_, key_read, _, by_bucket, text) = files_read("SELECT * FROM t WHERE id = 7").await;
    assert!(text.contains("KeyedScanExec") && text.contains("filter="), "{text}");
    // One bucket of four, in one partition of three; the bucket alone rules out most files.
    assert!(key_read * 6 <= all, "a key lookup read {key_read} of {all} change files");
    assert!(by_bucket * 2 >= all, "the key's bucket ruled out {by_bucket} of {all} change files");

    let (_, region_read, region_base, region_by_bucket, _) = files_read("SELECT * FROM t WHERE region = 1").await;
    assert_eq!(region_by_bucket, 0, "a partition filter pins no key");
    assert!(region_read * 2 < all, "a partition read {region_read} of {all} change files");
    assert!(region_base < all_base, "base files: {region_base} of {all_base}");
}
