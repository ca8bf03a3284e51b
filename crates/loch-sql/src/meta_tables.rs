//! Metadata tables, named `t$snapshots`, `t$history`, `t$refs`, `t$manifests`, `t$files`,
//! `t$partitions` (as Spark's Iceberg runtime names them `t.snapshots`, ...), and for keyed
//! tables `t$changes`, the CDC stream. Each is computed once per statement from the loaded
//! metadata and served as an in-memory table.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::MemTable;
use datafusion::datasource::TableProvider;
use futures::TryStreamExt;
use iceberg::spec::{DataContentType, SnapshotReference, SnapshotRetention};
use iceberg::table::Table;
use loch_table::scan::{live_files, manifests};

use crate::backend::LoadedTable;
use crate::error::{Result, SqlError};

/// The metadata tables, by suffix.
pub const KINDS: [&str; 7] = ["snapshots", "history", "refs", "manifests", "files", "partitions", "changes"];

/// Splits `t$kind` into the table and a known kind; `None` for a plain name.
pub fn split(name: &str) -> Option<(&str, &str)> {
    let (table, kind) = name.rsplit_once('$')?;
    KINDS.contains(&kind).then_some((table, kind))
}

/// The metadata table `kind` of `table`.
pub async fn provider(table: &LoadedTable, kind: &str) -> Result<Arc<dyn TableProvider>> {
    let batch = match (kind, table) {
        ("changes", LoadedTable::Keyed { change, .. }) => {
            let batches = loch_table::mixed::merge::read_changes(change, None, None).await?;
            let Some(first) = batches.first() else {
                let schema = Arc::new(iceberg::arrow::schema_to_arrow_schema(change.metadata().current_schema())?);
                return Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?));
            };
            let schema = first.schema();
            return Ok(Arc::new(MemTable::try_new(schema, vec![batches])?));
        }
        ("changes", LoadedTable::Iceberg(_)) => {
            return Err(SqlError::invalid(
                "$changes is the CDC stream of a keyed table; this table has no primary key",
            ));
        }
        ("snapshots", t) => snapshots(t.table())?,
        ("history", t) => history(t.table())?,
        ("refs", t) => refs(t.table())?,
        ("manifests", t) => manifest_rows(t.table()).await?,
        ("files", t) => files(t.table()).await?,
        ("partitions", t) => partitions(t.table()).await?,
        (other, _) => return Err(SqlError::invalid(format!("unknown metadata table ${other}"))),
    };
    Ok(Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?))
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn millis_field(name: &str) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Millisecond, Some(Arc::from("+00:00"))), false)
}

fn snapshots(table: &Table) -> Result<RecordBatch> {
    let metadata = table.metadata();
    let mut list: Vec<_> = metadata.snapshots().collect();
    list.sort_by_key(|s| (s.timestamp_ms(), s.sequence_number()));
    let mut committed = TimestampMillisecondBuilder::new().with_timezone("+00:00");
    let (mut id, mut parent, mut sequence) = (Int64Builder::new(), Int64Builder::new(), Int64Builder::new());
    let (mut operation, mut manifest_list, mut summary) =
        (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    for s in list {
        committed.append_value(s.timestamp_ms());
        id.append_value(s.snapshot_id());
        parent.append_option(s.parent_snapshot_id());
        sequence.append_value(s.sequence_number());
        operation.append_value(s.summary().operation.as_str());
        manifest_list.append_value(s.manifest_list());
        let props: BTreeMap<&String, &String> = s.summary().additional_properties.iter().collect();
        summary.append_value(serde_json::to_string(&props).unwrap_or_default());
    }
    batch(
        vec![
            millis_field("committed_at"),
            Field::new("snapshot_id", DataType::Int64, false),
            Field::new("parent_id", DataType::Int64, true),
            Field::new("sequence_number", DataType::Int64, false),
            Field::new("operation", DataType::Utf8, false),
            Field::new("manifest_list", DataType::Utf8, false),
            Field::new("summary", DataType::Utf8, false),
        ],
        vec![
            Arc::new(committed.finish()),
            Arc::new(id.finish()),
            Arc::new(parent.finish()),
            Arc::new(sequence.finish()),
            Arc::new(operation.finish()),
            Arc::new(manifest_list.finish()),
            Arc::new(summary.finish()),
        ],
    )
}

fn history(table: &Table) -> Result<RecordBatch> {
    let metadata = table.metadata();
    // Ancestors of the current snapshot.
    let mut ancestors = std::collections::HashSet::new();
    let mut cursor = metadata.current_snapshot();
    while let Some(s) = cursor {
        ancestors.insert(s.snapshot_id());
        cursor = s.parent_snapshot_id().and_then(|p| metadata.snapshot_by_id(p));
    }
    let mut made_current = TimestampMillisecondBuilder::new().with_timezone("+00:00");
    let (mut id, mut parent, mut ancestor) = (Int64Builder::new(), Int64Builder::new(), BooleanBuilder::new());
    for entry in metadata.history() {
        made_current.append_value(entry.timestamp_ms);
        id.append_value(entry.snapshot_id);
        parent.append_option(metadata.snapshot_by_id(entry.snapshot_id).and_then(|s| s.parent_snapshot_id()));
        ancestor.append_value(ancestors.contains(&entry.snapshot_id));
    }
    batch(
        vec![
            millis_field("made_current_at"),
            Field::new("snapshot_id", DataType::Int64, false),
            Field::new("parent_id", DataType::Int64, true),
            Field::new("is_current_ancestor", DataType::Boolean, false),
        ],
        vec![
            Arc::new(made_current.finish()),
            Arc::new(id.finish()),
            Arc::new(parent.finish()),
            Arc::new(ancestor.finish()),
        ],
    )
}

fn refs(table: &Table) -> Result<RecordBatch> {
    let refs = loch_table::refs::refs(table.metadata())?;
    let list: Vec<(&String, &SnapshotReference)> = refs.iter().collect();
    let (mut name, mut kind) = (StringBuilder::new(), StringBuilder::new());
    let (mut id, mut ref_age, mut min_keep, mut snap_age) =
        (Int64Builder::new(), Int64Builder::new(), Int32Builder::new(), Int64Builder::new());
    for (n, r) in list {
        name.append_value(n);
        id.append_value(r.snapshot_id);
        match r.retention {
            SnapshotRetention::Branch { min_snapshots_to_keep, max_snapshot_age_ms, max_ref_age_ms } => {
                kind.append_value("BRANCH");
                ref_age.append_option(max_ref_age_ms);
                min_keep.append_option(min_snapshots_to_keep);
                snap_age.append_option(max_snapshot_age_ms);
            }
            SnapshotRetention::Tag { max_ref_age_ms } => {
                kind.append_value("TAG");
                ref_age.append_option(max_ref_age_ms);
                min_keep.append_null();
                snap_age.append_null();
            }
        }
    }
    batch(
        vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("type", DataType::Utf8, false),
            Field::new("snapshot_id", DataType::Int64, false),
            Field::new("max_reference_age_in_ms", DataType::Int64, true),
            Field::new("min_snapshots_to_keep", DataType::Int32, true),
            Field::new("max_snapshot_age_in_ms", DataType::Int64, true),
        ],
        vec![
            Arc::new(name.finish()),
            Arc::new(kind.finish()),
            Arc::new(id.finish()),
            Arc::new(ref_age.finish()),
            Arc::new(min_keep.finish()),
            Arc::new(snap_age.finish()),
        ],
    )
}

async fn manifest_rows(table: &Table) -> Result<RecordBatch> {
    let metadata = table.metadata_ref();
    let list = match metadata.current_snapshot() {
        Some(s) => manifests(table.file_io(), &metadata, s).await?,
        None => Vec::new(),
    };
    let (mut content, mut path) = (Int32Builder::new(), StringBuilder::new());
    let (mut length, mut spec, mut added_by) = (Int64Builder::new(), Int32Builder::new(), Int64Builder::new());
    let (mut added, mut existing, mut deleted) = (Int32Builder::new(), Int32Builder::new(), Int32Builder::new());
    for m in &list {
        content.append_value(m.content as i32);
        path.append_value(&m.manifest_path);
        length.append_value(m.manifest_length);
        spec.append_value(m.partition_spec_id);
        added_by.append_value(m.added_snapshot_id);
        added.append_value(m.added_files_count.unwrap_or_default() as i32);
        existing.append_value(m.existing_files_count.unwrap_or_default() as i32);
        deleted.append_value(m.deleted_files_count.unwrap_or_default() as i32);
    }
    batch(
        vec![
            Field::new("content", DataType::Int32, false),
            Field::new("path", DataType::Utf8, false),
            Field::new("length", DataType::Int64, false),
            Field::new("partition_spec_id", DataType::Int32, false),
            Field::new("added_snapshot_id", DataType::Int64, false),
            Field::new("added_data_files_count", DataType::Int32, false),
            Field::new("existing_data_files_count", DataType::Int32, false),
            Field::new("deleted_data_files_count", DataType::Int32, false),
        ],
        vec![
            Arc::new(content.finish()),
            Arc::new(path.finish()),
            Arc::new(length.finish()),
            Arc::new(spec.finish()),
            Arc::new(added_by.finish()),
            Arc::new(added.finish()),
            Arc::new(existing.finish()),
            Arc::new(deleted.finish()),
        ],
    )
}

async fn current_files(table: &Table) -> Result<Vec<loch_table::scan::LiveFile>> {
    let metadata = table.metadata_ref();
    match metadata.current_snapshot().cloned() {
        Some(s) => Ok(live_files(table.file_io().clone(), metadata, s).try_collect().await?),
        None => Ok(Vec::new()),
    }
}

fn partition_text(partition: &iceberg::spec::Struct) -> String {
    let values: Vec<String> = partition.iter().map(|v| v.map_or_else(|| "null".to_string(), literal_text)).collect();
    format!("{{{}}}", values.join(", "))
}

/// A partition value as text: strings quoted, numbers as numbers.
fn literal_text(literal: &iceberg::spec::Literal) -> String {
    use iceberg::spec::{Literal, PrimitiveLiteral as P};
    match literal {
        Literal::Primitive(p) => match p {
            P::Boolean(b) => b.to_string(),
            P::Int(i) => i.to_string(),
            P::Long(l) => l.to_string(),
            P::Float(f) => f.to_string(),
            P::Double(d) => d.to_string(),
            P::String(s) => format!("{s:?}"),
            P::Binary(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
            P::Int128(i) => i.to_string(),
            P::UInt128(u) => u.to_string(),
            P::AboveMax | P::BelowMin => format!("{p:?}"),
        },
        other => format!("{other:?}"),
    }
}

fn content_name(content: DataContentType) -> &'static str {
    match content {
        DataContentType::Data => "DATA",
        DataContentType::PositionDeletes => "POSITION_DELETES",
        DataContentType::EqualityDeletes => "EQUALITY_DELETES",
    }
}

async fn files(table: &Table) -> Result<RecordBatch> {
    let mut list = current_files(table).await?;
    list.sort_by(|a, b| a.path().cmp(b.path()));
    let (mut content, mut path, mut format) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let (mut spec, mut partition) = (Int32Builder::new(), StringBuilder::new());
    let (mut records, mut size, mut sequence) = (Int64Builder::new(), Int64Builder::new(), Int64Builder::new());
    for f in &list {
        content.append_value(content_name(f.content()));
        path.append_value(f.path());
        format.append_value(f.file.file_format().to_string().to_uppercase());
        spec.append_value(f.spec_id);
        partition.append_value(partition_text(f.file.partition()));
        records.append_value(f.file.record_count() as i64);
        size.append_value(f.file.file_size_in_bytes() as i64);
        sequence.append_value(f.data_sequence_number);
    }
    batch(
        vec![
            Field::new("content", DataType::Utf8, false),
            Field::new("file_path", DataType::Utf8, false),
            Field::new("file_format", DataType::Utf8, false),
            Field::new("spec_id", DataType::Int32, false),
            Field::new("partition", DataType::Utf8, false),
            Field::new("record_count", DataType::Int64, false),
            Field::new("file_size_in_bytes", DataType::Int64, false),
            Field::new("data_sequence_number", DataType::Int64, false),
        ],
        vec![
            Arc::new(content.finish()),
            Arc::new(path.finish()),
            Arc::new(format.finish()),
            Arc::new(spec.finish()),
            Arc::new(partition.finish()),
            Arc::new(records.finish()),
            Arc::new(size.finish()),
            Arc::new(sequence.finish()),
        ],
    )
}

async fn partitions(table: &Table) -> Result<RecordBatch> {
    #[derive(Default)]
    struct Totals {
        records: i64,
        files: i32,
        bytes: i64,
        delete_files: i32,
    }
    let mut by: BTreeMap<(i32, String), Totals> = BTreeMap::new();
    for f in current_files(table).await? {
        let t = by.entry((f.spec_id, partition_text(f.file.partition()))).or_default();
        if f.is_delete() {
            t.delete_files += 1;
        } else {
            t.records += f.file.record_count() as i64;
            t.files += 1;
            t.bytes += f.file.file_size_in_bytes() as i64;
        }
    }
    let (mut partition, mut spec) = (StringBuilder::new(), Int32Builder::new());
    let (mut records, mut files, mut bytes, mut deletes) =
        (Int64Builder::new(), Int32Builder::new(), Int64Builder::new(), Int32Builder::new());
    for ((s, p), t) in by {
        partition.append_value(p);
        spec.append_value(s);
        records.append_value(t.records);
        files.append_value(t.files);
        bytes.append_value(t.bytes);
        deletes.append_value(t.delete_files);
    }
    batch(
        vec![
            Field::new("partition", DataType::Utf8, false),
            Field::new("spec_id", DataType::Int32, false),
            Field::new("record_count", DataType::Int64, false),
            Field::new("file_count", DataType::Int32, false),
            Field::new("total_data_file_size_in_bytes", DataType::Int64, false),
            Field::new("delete_file_count", DataType::Int32, false),
        ],
        vec![
            Arc::new(partition.finish()),
            Arc::new(spec.finish()),
            Arc::new(records.finish()),
            Arc::new(files.finish()),
            Arc::new(bytes.finish()),
            Arc::new(deletes.finish()),
        ],
    )
}
