//! Table data for tests: writing Parquet data files with iceberg's writers, appending them,
//! reading a table back, and copy-on-write deletes and overwrites built with `loch-table`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::{Array, BooleanArray, RecordBatch};
use futures::TryStreamExt;
use iceberg::arrow::{RecordBatchPartitionSplitter, schema_to_arrow_schema};
use iceberg::spec::{DataFile, DataFileFormat, PartitionKey};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Catalog, TableIdent};
use loch_table::snapshot::{OverwriteFiles, PendingCommit, SnapshotAction};
use parquet::file::properties::WriterProperties;

/// The table's current schema as Arrow (with Iceberg field ids), for building batches.
pub fn arrow_schema(table: &Table) -> Arc<arrow_schema::Schema> {
    Arc::new(schema_to_arrow_schema(table.metadata().current_schema()).expect("schema converts to arrow"))
}

/// Writes `batch` as Parquet data files of `table`, one per partition.
pub async fn write_data_files(table: &Table, batch: &RecordBatch) -> Result<Vec<DataFile>> {
    let metadata = table.metadata();
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().clone();
    let parts: Vec<(Option<PartitionKey>, RecordBatch)> = if spec.is_unpartitioned() {
        vec![(None, batch.clone())]
    } else {
        RecordBatchPartitionSplitter::try_new_with_computed_values(schema.clone(), spec)?
            .split(batch)?
            .into_iter()
            .map(|(key, batch)| (Some(key), batch))
            .collect()
    };
    let mut files = Vec::new();
    for (key, part) in parts {
        files.extend(write_partition(table, key, part).await?);
    }
    Ok(files)
}

async fn write_partition(table: &Table, key: Option<PartitionKey>, batch: RecordBatch) -> Result<Vec<DataFile>> {
    let metadata = table.metadata();
    let rolling = RollingFileWriterBuilder::new_with_default_file_size(
        ParquetWriterBuilder::new(WriterProperties::default(), metadata.current_schema().clone()),
        table.file_io().clone(),
        DefaultLocationGenerator::new(metadata)?,
        DefaultFileNameGenerator::new(uuid::Uuid::now_v7().to_string(), None, DataFileFormat::Parquet),
    );
    let mut writer = DataFileWriterBuilder::new(rolling).build(key).await?;
    writer.write(batch).await?;
    Ok(writer.close().await?)
}

/// Appends `batch` with a fast append committed through `catalog`; returns the new table.
pub async fn append(catalog: &dyn Catalog, table: &Table, batch: &RecordBatch) -> Result<Table> {
    let files = write_data_files(table, batch).await?;
    let tx = Transaction::new(table);
    let tx = tx.fast_append().add_data_files(files).apply(tx)?;
    Ok(tx.commit(catalog).await?)
}

/// Every row of the table's current snapshot (deletes applied).
pub async fn scan_all(table: &Table) -> Result<Vec<RecordBatch>> {
    let stream = table.scan().select_all().build()?.to_arrow().await?;
    Ok(stream.try_collect().await?)
}

/// Every row of snapshot `snapshot_id` (a tag's, an older one's).
pub async fn scan_snapshot(table: &Table, snapshot_id: i64) -> Result<Vec<RecordBatch>> {
    let stream = table.scan().snapshot_id(snapshot_id).select_all().build()?.to_arrow().await?;
    Ok(stream.try_collect().await?)
}

/// Every file snapshot `snapshot_id` reaches: its manifest list, its manifests and their live
/// data and delete files.
pub async fn reached_by(table: &Table, snapshot_id: i64) -> Result<std::collections::BTreeSet<String>> {
    let metadata = table.metadata_ref();
    let snapshot = metadata.snapshot_by_id(snapshot_id).context("no such snapshot")?;
    let io = table.file_io();
    let mut files = std::collections::BTreeSet::from([snapshot.manifest_list().to_string()]);
    for manifest in loch_table::scan::manifests(io, &metadata, snapshot).await? {
        files.insert(manifest.manifest_path.clone());
        for entry in manifest.load_manifest(io).await?.entries() {
            if entry.is_alive() {
                files.insert(entry.file_path().to_string());
            }
        }
    }
    Ok(files)
}

/// Paths of the live data files of the table's current snapshot.
pub async fn data_file_paths(table: &Table) -> Result<Vec<String>> {
    let tasks: Vec<_> = table.scan().build()?.plan_files().await?.try_collect().await?;
    Ok(tasks.into_iter().map(|t| t.data_file_path).collect())
}

/// Total rows in `batches`.
pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Plans a copy-on-write delete: every data file with a row for which `delete` is true is
/// replaced by a file without those rows (or just removed when nothing is left).
pub async fn plan_delete_where(table: &Table, delete: impl Fn(&RecordBatch, usize) -> bool) -> Result<PendingCommit> {
    let tasks: Vec<_> = table.scan().select_all().build()?.plan_files().await?.try_collect().await?;
    let reader = table.reader_builder().build();
    let mut action = OverwriteFiles::new();
    let mut changed = false;
    for task in tasks {
        let path = task.data_file_path.clone();
        let partition = task.partition.clone();
        let batches: Vec<RecordBatch> =
            reader.clone().read(Box::pin(futures::stream::iter([Ok(task)])))?.stream().try_collect().await?;
        let mut kept = Vec::new();
        let mut removed_any = false;
        for batch in batches {
            let mask: BooleanArray = (0..batch.num_rows()).map(|i| Some(!delete(&batch, i))).collect();
            removed_any |= mask.false_count() > 0;
            kept.push(arrow_select::filter::filter_record_batch(&batch, &mask)?);
        }
        if !removed_any {
            continue;
        }
        changed = true;
        action = action.delete_file(path);
        let remaining = arrow_select::concat::concat_batches(&arrow_schema(table), &kept)?;
        if remaining.num_rows() > 0 {
            // Scan tasks carry the partition value but not the spec; files are in the default spec.
            let spec = table.metadata().default_partition_spec();
            let key = partition
                .filter(|_| !spec.is_unpartitioned())
                .map(|data| PartitionKey::new((**spec).clone(), table.metadata().current_schema().clone(), data));
            action = action.add_files(write_partition(table, key, remaining).await?);
        }
    }
    anyhow::ensure!(changed, "no row matched the delete");
    Ok(action.prepare(table).await?)
}

/// Plans an overwrite replacing every current data file with the rows of `batch`.
pub async fn plan_replace_all(table: &Table, batch: &RecordBatch) -> Result<PendingCommit> {
    let tasks: Vec<_> = table.scan().build()?.plan_files().await?.try_collect().await?;
    let mut action = OverwriteFiles::new().add_files(write_data_files(table, batch).await?);
    for task in tasks {
        action = action.delete_file(task.data_file_path);
    }
    Ok(action.prepare(table).await?)
}

/// Commits `pending` through the Iceberg REST API (iceberg-rust's REST client cannot send
/// arbitrary updates). Returns the HTTP status and body.
pub async fn commit_over_rest(
    client: &reqwest::Client,
    catalog_url: &str,
    ident: &TableIdent,
    pending: &PendingCommit,
    token: Option<&str>,
) -> Result<(u16, serde_json::Value)> {
    let url = format!(
        "{catalog_url}/namespaces/{}/tables/{}",
        ident.namespace().clone().inner().join("\u{1f}").replace('\u{1f}', "%1F"),
        ident.name()
    );
    let body = serde_json::json!({
        "identifier": {"namespace": ident.namespace().clone().inner(), "name": ident.name()},
        "requirements": pending.requirements,
        "updates": pending.updates,
    });
    let mut request = client.post(&url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.context("commit request failed")?;
    let status = response.status().as_u16();
    let value = response.json().await.unwrap_or(serde_json::Value::Null);
    Ok((status, value))
}

/// Rows as sorted `(column → value as text)` maps, for comparing table contents exactly.
pub fn rows(batches: &[RecordBatch]) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    for batch in batches {
        for i in 0..batch.num_rows() {
            let mut row = BTreeMap::new();
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                let value = if column.is_null(i) { "null".to_string() } else { arrow_cast_display(column.as_ref(), i) };
                row.insert(field.name().clone(), value);
            }
            out.push(row);
        }
    }
    out.sort();
    out
}

fn arrow_cast_display(column: &dyn Array, i: usize) -> String {
    arrow_cast::display::ArrayFormatter::try_new(column, &Default::default())
        .map(|f| f.value(i).to_string())
        .unwrap_or_else(|_| "?".into())
}
