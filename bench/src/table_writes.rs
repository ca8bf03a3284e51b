//! Writing to a table of a running `loch serve` from Rust, for benchmarks: appends by Loch's own
//! writer (the one its SQL `INSERT` uses) and equality and position deletes (as Flink leaves
//! them), each committed through the REST catalog like any engine's commit.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, new_null_array,
};
use arrow_schema::DataType;
use futures::TryStreamExt;
use iceberg::TableIdent;
use iceberg::io::FileIO;
use iceberg::spec::{DataContentType, Datum, PrimitiveLiteral, Struct};
use iceberg::table::{StaticTable, Table};
use loch_table::snapshot::{PendingCommit, RowDelta, SnapshotAction};
use serde_json::{Value, json};

/// The table at `url` (its REST route), as its current metadata file describes it.
async fn load(client: &reqwest::Client, url: &str) -> Result<Table> {
    let loaded: Value = client.get(url).send().await?.error_for_status()?.json().await?;
    let location = loaded["metadata-location"].as_str().context("no metadata-location")?;
    let table =
        StaticTable::from_metadata_file(location, TableIdent::from_strs(["bench", "t"])?, FileIO::new_with_fs())
            .await?
            .into_table();
    Ok(table)
}

/// Commits `pending` through the REST route at `url`.
async fn commit(client: &reqwest::Client, url: &str, pending: PendingCommit) -> Result<()> {
    let body = json!({"requirements": pending.requirements, "updates": pending.updates});
    let answer = client.post(url).json(&body).send().await?;
    ensure!(answer.status().is_success(), "commit: {}", answer.text().await?);
    Ok(())
}

/// Rows `start..start + rows` of the benchmark's events table (the values `e2e_compaction.py`
/// generates), in the table's Arrow schema.
pub fn batch(table: &Table, start: u64, rows: u64) -> Result<RecordBatch> {
    let schema = Arc::new(iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())?);
    let ids: Vec<i64> = (start as i64..(start + rows) as i64).collect();
    let tz = match schema.field_with_name("ts")?.data_type() {
        DataType::Timestamp(_, tz) => tz.clone(),
        other => anyhow::bail!("ts is {other}"),
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(
            TimestampMicrosecondArray::from(ids.iter().map(|i| 1_700_000_000_000_000 + i * 1_000).collect::<Vec<_>>())
                .with_timezone_opt(tz),
        ),
        Arc::new(StringArray::from(ids.iter().map(|i| format!("user-{:05}", i % 5_000)).collect::<Vec<_>>())),
        Arc::new(StringArray::from(
            ids.iter().map(|i| ["click", "view", "purchase", "scroll"][(i % 4) as usize]).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            ids.iter().map(|i| (i % 10 != 0).then(|| (i % 1_000) as f64 * 0.25)).collect::<Vec<_>>(),
        )),
        Arc::new(Int32Array::from(ids.iter().map(|i| (i % 97) as i32).collect::<Vec<_>>())),
        Arc::new(BooleanArray::from(ids.iter().map(|i| i % 3 == 0).collect::<Vec<_>>())),
        Arc::new(Date32Array::from(ids.iter().map(|i| 19_000 + (i / 100_000) as i32).collect::<Vec<_>>())),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Appends `files` batches of `rows` rows, one file and one commit each, by Loch's writer.
pub async fn append(client: &reqwest::Client, url: &str, files: u64, rows: u64) -> Result<()> {
    for i in 0..files {
        let table = load(client, url).await?;
        let rows = batch(&table, i * rows, rows)?;
        let stream = futures::stream::iter([Ok(rows)]);
        let (written, _) = loch_sql::write::write_data_files(&table, stream).await?;
        let mut delta = RowDelta::new();
        for file in written {
            delta = delta.add_rows(file);
        }
        commit(client, url, delta.prepare(&table).await?).await?;
    }
    Ok(())
}

/// Commits the `+deletes` shape's deletes in one snapshot: equality deletes of every id
/// divisible by `eq_every`, in `eq_files` files; for every `file_every`-th append, a position
/// delete file of the positions p with p % `pos_every` == 1. Returns the delete files written.
pub async fn add_deletes(
    client: &reqwest::Client,
    url: &str,
    files: u64,
    rows: u64,
    [eq_every, eq_files, file_every, pos_every]: [u64; 4],
) -> Result<usize> {
    let table = load(client, url).await?;
    let snapshot = table.metadata().current_snapshot().context("no snapshot")?.clone();
    let live: Vec<_> =
        loch_table::scan::live_files(table.file_io().clone(), table.metadata_ref(), snapshot).try_collect().await?;
    let id_field = table.metadata().current_schema().field_by_name("id").context("no id column")?.id;
    let mut delta = RowDelta::new();
    let mut count = 0;
    for data in live.iter().filter(|f| f.file.content_type() == DataContentType::Data) {
        // The append a file holds, from its smallest id.
        let first = match data.file.lower_bounds().get(&id_field).map(Datum::literal) {
            Some(PrimitiveLiteral::Long(id)) => *id as u64,
            other => anyhow::bail!("{}: no id lower bound ({other:?})", data.file.file_path()),
        };
        if !(first / rows).is_multiple_of(file_every) {
            continue;
        }
        let positions: Vec<i64> = (0..rows as i64).filter(|p| p % pos_every as i64 == 1).collect();
        let file = loch_table::position_delete::write_position_deletes(
            table.file_io(),
            data.file.file_path(),
            &positions,
            Struct::empty(),
            0,
        )
        .await?;
        delta = delta.add_deletes(file);
        count += 1;
    }
    let total = files * rows;
    let ids: Vec<i64> = (0..total).filter(|id| id % eq_every == 0).map(|id| id as i64).collect();
    let schema = Arc::new(iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())?);
    for chunk in ids.chunks(ids.len().div_ceil(eq_files as usize).max(1)) {
        let mut columns: Vec<ArrayRef> = Vec::new();
        for field in schema.fields() {
            columns.push(if field.name() == "id" {
                Arc::new(Int64Array::from(chunk.to_vec()))
            } else {
                new_null_array(field.data_type(), chunk.len())
            });
        }
        let keys = RecordBatch::try_new(schema.clone(), columns)?;
        let file = loch_testkit::local::write_equality_deletes(&table, vec![id_field], &keys, None).await?;
        delta = delta.add_deletes(file);
        count += 1;
    }
    commit(client, url, delta.prepare(&table).await?).await?;
    Ok(count)
}
