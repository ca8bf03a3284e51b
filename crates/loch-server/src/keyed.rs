//! Keyed tables over HTTP, for writers without Flink or a JVM: ingest changes as an Arrow IPC
//! stream (the table's columns and `_op`: `+I`, `-U`, `+U`, `-D`), committed as one transaction
//! of the change store; read the merged rows and the CDC stream back as Arrow IPC streams.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use axum::Extension;
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use futures::stream::BoxStream;
use http_body_util::BodyExt;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::DataFile;
use loch_catalog::TableChange;
use loch_catalog::keyed::{FORMAT_MIXED_ICEBERG, change_name};
use loch_optimizing::table::ManagedTable;
use loch_table::TableError;
use loch_table::filter::parse_filter;
use loch_table::mixed::change::{ChangeOp, ChangeOptions};
use loch_table::mixed::merge::{MergeRead, read_changes, scan_merged};
use loch_table::mixed::properties::{CHANGE_BUCKETS, PRIMARY_KEY_FIELDS, UPSERT};
use loch_table::mixed::writer::{ChangeCommitter, Committed, KeyedTableWriter};
use loch_table::snapshot::{RowDelta, SnapshotAction};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiPath};
use crate::http::HttpLimits;
use crate::optimizing::api::{TablePath, table_id};
use crate::state::AppState;

/// The content type of Arrow IPC streams.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
/// The column holding each row's change.
pub const OP_COLUMN: &str = "_op";

/// Routes of keyed tables (need a token while authentication is on); ingest bodies stream
/// within `limits` (see [`crate::http::streams_body`]).
pub fn routes(limits: HttpLimits) -> Router<AppState> {
    Router::new()
        .route("/api/v1/tables/{catalog}/{namespace}/{table}/changes", post(ingest).get(changes))
        .route("/api/v1/tables/{catalog}/{namespace}/{table}/rows", get(rows))
        .layer(Extension(limits))
}

/// The answer to an ingest.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ingested {
    /// The transaction: the change store's sequence number of the commit.
    pub transaction_id: i64,
    /// The change store's new snapshot.
    pub snapshot_id: i64,
    /// Rows received.
    pub rows: u64,
}

/// A keyed table's two stores and its primary key; 400 for any other table.
struct Keyed {
    base: ManagedTable,
    change: ManagedTable,
    primary_key: Vec<String>,
}

async fn keyed(state: &AppState, path: &TablePath) -> Result<Keyed, ApiError> {
    let id = table_id(state, &path.catalog, &path.namespace, &path.table).await?;
    let missing = || ApiError::not_found(format!("table {}", path.table));
    let base = ManagedTable::load(&state.catalogs, id).await?.ok_or_else(missing)?;
    if base.record.format != FORMAT_MIXED_ICEBERG {
        return Err(ApiError::bad_request(format!(
            "{} is not a keyed table (its format is {}); create it with format mixed-iceberg",
            base.display_name(),
            base.record.format
        )));
    }
    let change_id = table_id(state, &path.catalog, &path.namespace, &change_name(&path.table)).await?;
    let change = ManagedTable::load(&state.catalogs, change_id).await?.ok_or_else(missing)?;
    let primary_key: Vec<String> = base
        .table
        .metadata()
        .properties()
        .get(PRIMARY_KEY_FIELDS)
        .map(|k| k.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect())
        .unwrap_or_default();
    if primary_key.is_empty() {
        return Err(ApiError::bad_request(format!("{} names no primary key", base.display_name())));
    }
    Ok(Keyed { base, change, primary_key })
}

/// One decoded batch of an ingest body as rows of the table and their changes; every problem
/// is a 400 naming it (`row_base`: rows before this batch, for messages).
fn changes_of(
    batch: &RecordBatch,
    target: &arrow_schema::SchemaRef,
    row_base: u64,
) -> Result<(RecordBatch, Vec<ChangeOp>), ApiError> {
    let bad = |m: String| ApiError::bad_request(m);
    let schema = batch.schema();
    let ops_column = batch
        .column_by_name(OP_COLUMN)
        .ok_or_else(|| bad(format!("the stream has no {OP_COLUMN} column (+I, -U, +U, -D per row)")))?;
    let ops_strings = match ops_column.data_type() {
        DataType::Utf8 => ops_column.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect::<Vec<_>>(),
        DataType::LargeUtf8 => ops_column.as_string::<i64>().iter().map(|v| v.map(str::to_string)).collect(),
        DataType::Utf8View => ops_column.as_string_view().iter().map(|v| v.map(str::to_string)).collect(),
        other => return Err(bad(format!("{OP_COLUMN} must be a string column, not {other}"))),
    };
    let mut ops = Vec::with_capacity(ops_strings.len());
    for (i, op) in ops_strings.iter().enumerate() {
        let parsed = op.as_deref().and_then(ChangeOp::parse).ok_or_else(|| {
            bad(format!(
                "row {}: unknown operation {:?}; use +I, -U, +U or -D",
                row_base + i as u64,
                op.as_deref().unwrap_or("null")
            ))
        })?;
        ops.push(parsed);
    }
    if let Some(extra) =
        schema.fields().iter().map(|f| f.name()).find(|n| *n != OP_COLUMN && target.field_with_name(n).is_err())
    {
        return Err(bad(format!("column {extra:?} is not a column of the table")));
    }
    let mut columns = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let column = batch
            .column_by_name(field.name())
            .ok_or_else(|| bad(format!("column {:?} of the table is missing", field.name())))?;
        let column = if column.data_type() == field.data_type() {
            column.clone()
        } else {
            // Not `safe`: a value that does not convert is an error, not a null.
            let options = arrow_cast::CastOptions { safe: false, ..Default::default() };
            arrow_cast::cast_with_options(column, field.data_type(), &options).map_err(|_| {
                bad(format!(
                    "column {:?} is {}, which does not fit the table's {}",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                ))
            })?
        };
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(bad(format!("column {:?} is required but holds a null", field.name())));
        }
        columns.push(column);
    }
    let rows = RecordBatch::try_new(target.clone(), columns).map_err(|e| bad(format!("the rows do not fit: {e}")))?;
    Ok((rows, ops))
}

/// Decodes an ingest body as it arrives and hands each batch to `writer`, which writes files
/// past its buffer: memory holds one IPC message and the writer's buffer, never the body.
/// Returns the rows read.
async fn stream_changes(
    writer: &mut KeyedTableWriter<StoreCommitter>,
    body: &mut Body,
    limits: &HttpLimits,
    target: &arrow_schema::SchemaRef,
) -> Result<u64, ApiError> {
    let mut decoder = arrow_ipc::reader::StreamDecoder::new();
    let (mut total, mut since_batch, mut rows) = (0u64, 0u64, 0u64);
    let mut schema_checked = false;
    loop {
        // Time between frames, not for the whole body: a large ingest may take long.
        let frame = tokio::time::timeout(limits.body_read_timeout, body.frame()).await.map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeoutException",
                format!("the request body stalled for {:?}", limits.body_read_timeout),
            )
        })?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        total += data.len() as u64;
        since_batch += data.len() as u64;
        if total > limits.max_ingest_bytes {
            return Err(too_large(format!(
                "the ingest body is larger than the limit of {} bytes (http.max-ingest-size)",
                limits.max_ingest_bytes
            )));
        }
        let mut buffer = arrow_buffer::Buffer::from(data);
        while !buffer.is_empty() {
            // Arrow asserts on some malformed messages (a buffer past the body's end): that is
            // the client's broken stream, not a server failure.
            let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoder.decode(&mut buffer)))
                .map_err(|_| ApiError::bad_request("the Arrow IPC stream is broken: a message is malformed"))?
                .map_err(|e| broken(&decoder, e))?;
            if !schema_checked && let Some(schema) = decoder.schema() {
                check_ingest_schema(&schema)?;
                schema_checked = true;
            }
            if let Some(batch) = decoded {
                // What is left of this frame starts the next message.
                since_batch = buffer.len() as u64;
                let (batch, ops) = changes_of(&batch, target, rows)?;
                writer.apply(&batch, &ops).await?;
                rows += batch.num_rows() as u64;
            }
        }
        // The decoder holds the message being received; it may not grow past a body's limit.
        if since_batch > limits.max_body_bytes {
            return Err(too_large(format!(
                "an Arrow IPC message is larger than {} bytes (http.max-body-size); send smaller batches",
                limits.max_body_bytes
            )));
        }
    }
    decoder.finish().map_err(|e| broken(&decoder, e))?;
    if total == 0 {
        return Err(ApiError::bad_request("the body is not an Arrow IPC stream: it is empty"));
    }
    Ok(rows)
}

/// Refuses stream columns whose memory is not bounded by their message: dictionaries (delta
/// dictionaries accumulate across messages) and run-end encoding (a tiny message expands).
fn check_ingest_schema(schema: &arrow_schema::Schema) -> Result<(), ApiError> {
    fn unbounded(ty: &DataType) -> bool {
        match ty {
            DataType::Dictionary(..) | DataType::RunEndEncoded(..) => true,
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) | DataType::Map(f, _) => {
                unbounded(f.data_type())
            }
            DataType::ListView(f) | DataType::LargeListView(f) => unbounded(f.data_type()),
            DataType::Struct(fields) => fields.iter().any(|f| unbounded(f.data_type())),
            DataType::Union(fields, _) => fields.iter().any(|(_, f)| unbounded(f.data_type())),
            _ => false,
        }
    }
    match schema.fields().iter().find(|f| unbounded(f.data_type())) {
        Some(f) => Err(ApiError::bad_request(format!(
            "column {:?} is {}; send plain (not dictionary or run-end encoded) columns",
            f.name(),
            f.data_type()
        ))),
        None => Ok(()),
    }
}

/// A 400 for a body the decoder gave up on: not a stream at all before its schema, broken after.
fn broken(decoder: &arrow_ipc::reader::StreamDecoder, error: arrow_schema::ArrowError) -> ApiError {
    if decoder.schema().is_none() {
        ApiError::bad_request(format!("the body is not an Arrow IPC stream: {error}"))
    } else {
        ApiError::bad_request(format!("the Arrow IPC stream is broken: {error}"))
    }
}

fn too_large(message: String) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLargeException", message)
}

/// Ingest changes into a keyed table: an Arrow IPC stream (`application/vnd.apache.arrow.stream`)
/// of the table's columns and `_op`, read as it arrives and committed atomically as one
/// transaction; a bad body commits nothing and leaves no files behind.
pub async fn ingest(
    State(state): State<AppState>,
    Extension(limits): Extension<HttpLimits>,
    ApiPath(path): ApiPath<TablePath>,
    mut body: Body,
) -> Result<Json<Ingested>, ApiError> {
    let keyed = keyed(&state, &path).await?;
    let change = &keyed.change;
    let props = keyed.base.table.metadata().properties();
    let number = |key: &str, default: u32| -> Result<u32, ApiError> {
        props.get(key).map_or(Ok(default), |v| {
            v.parse().map_err(|_| ApiError::bad_request(format!("table property {key}={v:?} is not a number")))
        })
    };
    let options = ChangeOptions {
        buckets: number(CHANGE_BUCKETS, 4)?,
        upsert: props.get(UPSERT).is_some_and(|v| v.eq_ignore_ascii_case("true")),
        ..ChangeOptions::default()
    };
    let target =
        Arc::new(schema_to_arrow_schema(change.table.metadata().current_schema()).map_err(ApiError::internal)?);
    let committer = StoreCommitter { state: state.clone(), change: change.clone() };
    let mut writer = KeyedTableWriter::new(&change.table, &keyed.primary_key, options, committer)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let rows = match stream_changes(&mut writer, &mut body, &limits, &target).await {
        Ok(0) => Err(ApiError::bad_request("the stream holds no rows")),
        other => other,
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            writer.abort().await;
            crate::http::drain(&mut body).await;
            return Err(e);
        }
    };
    let Committed { transaction_id, snapshot_id } = writer.commit().await?;
    metrics::counter!("loch_keyed_rows_ingested_total").increment(rows);
    Ok(Json(Ingested { transaction_id, snapshot_id, rows }))
}

/// Attempts of an ingest's commit that loses races with other servers (each after a short,
/// growing, jittered pause, so two busy servers take turns).
const COMMIT_ATTEMPTS: u32 = 20;

/// Commits a transaction's change files through the catalog service, under the change store's
/// lock so that concurrent ingests commit one after the other (commit order is transaction
/// order).
struct StoreCommitter {
    state: AppState,
    change: ManagedTable,
}

#[async_trait::async_trait]
impl ChangeCommitter for StoreCommitter {
    type Error = ApiError;

    async fn commit_files(&self, files: Vec<DataFile>) -> Result<Committed, ApiError> {
        let (state, change) = (&self.state, &self.change);
        let io = change.table.file_io().clone();
        let written: Vec<String> = files.iter().map(|f| f.file_path().to_string()).collect();
        let discard = || async {
            for path in &written {
                let _ = io.delete(path).await;
            }
        };
        let lock = state.catalogs.lock_table(&change.catalog, &change.name).await;
        // The lock serializes this process's ingests; another server's commit can still land
        // first, so a lost race is retried on the new head (appends never truly conflict).
        let mut attempt = 0;
        let (committed, snapshot_id) = loop {
            attempt += 1;
            let current = match ManagedTable::load(&state.catalogs, change.record.id).await {
                Ok(Some(current)) => current,
                other => {
                    discard().await;
                    return Err(other
                        .err()
                        .map(ApiError::from)
                        .unwrap_or_else(|| ApiError::not_found("the change store is gone")));
                }
            };
            let mut delta = RowDelta::new();
            for f in &files {
                delta = delta.add_rows(f.clone());
            }
            let pending = match delta.prepare(&current.table).await {
                Ok(pending) => pending,
                Err(e) => {
                    discard().await;
                    return Err(ApiError::internal(e));
                }
            };
            let (snapshot_id, metadata_files) = (pending.snapshot_id, pending.written_files);
            let request = TableChange {
                ident: current.name.clone(),
                requirements: pending.requirements,
                updates: pending.updates,
            };
            match state.catalogs.commit_table_locked(&lock, &current.catalog, request).await {
                Ok(committed) => break (committed, snapshot_id),
                Err(e) => {
                    if matches!(e, loch_catalog::CatalogError::CommitStateUnknown(_)) {
                        return Err(e.into());
                    }
                    for path in &metadata_files {
                        let _ = io.delete(path).await;
                    }
                    if !matches!(e, loch_catalog::CatalogError::CommitFailed(_)) || attempt >= COMMIT_ATTEMPTS {
                        discard().await;
                        return Err(e.into());
                    }
                    tracing::info!(table = %change.name, attempt, "an ingest lost a commit race; retrying");
                    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 16);
                    let pause = std::time::Duration::from_millis((4u64 << attempt.min(5)) + jitter);
                    tokio::time::sleep(pause).await;
                }
            }
        };
        drop(lock);
        let transaction_id = committed
            .metadata
            .metadata
            .snapshot_by_id(snapshot_id)
            .map(|s| s.sequence_number())
            .ok_or_else(|| ApiError::internal("the committed snapshot is missing"))?;
        Ok(Committed { transaction_id, snapshot_id })
    }
}

/// An Arrow IPC stream response of `batches` with `schema`.
fn arrow_response(schema: Arc<arrow_schema::Schema>, batches: &[RecordBatch]) -> Result<Response, ApiError> {
    let mut buffer = Vec::new();
    {
        let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut buffer, &schema).map_err(ApiError::internal)?;
        for batch in batches {
            writer.write(batch).map_err(ApiError::internal)?;
        }
        writer.finish().map_err(ApiError::internal)?;
    }
    Ok(([(header::CONTENT_TYPE, ARROW_STREAM)], buffer).into_response())
}

/// What a read of a keyed table's rows returns.
#[derive(Debug, Deserialize)]
pub struct RowsQuery {
    /// Columns, comma-separated, in this order (all by default).
    pub columns: Option<String>,
    /// Rows: comparisons joined by `and` (`id in (1, 2) and day >= 2024-05-01`).
    pub filter: Option<String>,
}

/// A keyed table's merged rows (base and change stores, latest change per key), as an Arrow
/// IPC stream written as the files are read: `columns=` picks columns, `filter=` rows (and
/// prunes files by partition, metrics and key bucket).
pub async fn rows(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<TablePath>,
    Query(query): Query<RowsQuery>,
) -> Result<Response, ApiError> {
    let keyed = keyed(&state, &path).await?;
    let schema = keyed.base.table.metadata().current_schema();
    let columns = match &query.columns {
        Some(list) => {
            let columns: Vec<String> =
                list.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect();
            if columns.is_empty() {
                return Err(ApiError::bad_request("columns= names no column"));
            }
            if let Some(unknown) = columns.iter().find(|c| schema.as_struct().field_by_name(c).is_none()) {
                return Err(ApiError::bad_request(format!("the table has no top-level column {unknown:?}")));
            }
            Some(columns)
        }
        None => None,
    };
    let filter = match &query.filter {
        Some(text) => Some(parse_filter(text, schema).map_err(|e| ApiError::bad_request(e.to_string()))?),
        None => None,
    };
    let read = MergeRead { columns, filter };
    let merged =
        scan_merged(&keyed.base.table, &keyed.change.table, &keyed.primary_key, &read).await.map_err(|e| match e {
            TableError::Invalid(m) => ApiError::bad_request(m),
            other => ApiError::internal(other),
        })?;
    arrow_stream_response(merged.schema, merged.rows)
}

/// An Arrow IPC stream response written batch by batch as `rows` yields them; a failure
/// part-way ends the body without the stream's end marker, so readers see it broken.
fn arrow_stream_response(
    schema: Arc<arrow_schema::Schema>,
    rows: BoxStream<'static, Result<RecordBatch, TableError>>,
) -> Result<Response, ApiError> {
    let writer = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &schema).map_err(ApiError::internal)?;
    let body = futures::stream::unfold(Some((writer, rows)), |state| async move {
        let (mut writer, mut rows) = state?;
        let chunk = match rows.next().await {
            Some(Ok(batch)) => writer.write(&batch).map(|()| true),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "reading a keyed table's rows failed part-way");
                return Some((Err(std::io::Error::other(e.to_string())), None));
            }
            None => writer.finish().map(|()| false),
        };
        match chunk {
            Ok(more) => {
                let bytes = Bytes::from(std::mem::take(writer.get_mut()));
                Some((Ok::<_, std::io::Error>(bytes), more.then_some((writer, rows))))
            }
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
        }
    });
    Ok(([(header::CONTENT_TYPE, ARROW_STREAM)], axum::body::Body::from_stream(body)).into_response())
}

/// The window of a CDC read.
#[derive(Debug, Deserialize)]
pub struct ChangesQuery {
    /// Transactions after this one (exclusive).
    pub from: Option<i64>,
    /// Transactions up to this one (inclusive).
    pub to: Option<i64>,
}

/// A keyed table's changes between two transactions, in order, with `_change_action` and
/// `_transaction_id`, as an Arrow IPC stream.
pub async fn changes(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<TablePath>,
    Query(window): Query<ChangesQuery>,
) -> Result<Response, ApiError> {
    let keyed = keyed(&state, &path).await?;
    let batches = read_changes(&keyed.change.table, window.from, window.to).await.map_err(ApiError::internal)?;
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => {
            let mut fields: Vec<arrow_schema::Field> =
                schema_to_arrow_schema(keyed.change.table.metadata().current_schema())
                    .map_err(ApiError::internal)?
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
            fields.push(arrow_schema::Field::new(loch_table::mixed::merge::CHANGE_ACTION, DataType::Utf8, false));
            fields.push(arrow_schema::Field::new(loch_table::mixed::merge::TRANSACTION_ID, DataType::Int64, false));
            Arc::new(arrow_schema::Schema::new(fields))
        }
    };
    arrow_response(schema, &batches)
}
