//! A Parquet data-file writer that encodes the columns of a row group in parallel.
//!
//! iceberg-rust's `ParquetWriter` encodes and compresses on the calling task, so compacting into
//! one file uses one core however many are idle. This writer gives every top-level column of a
//! row group its own tokio task (as DataFusion's Parquet sink does), fed over a small bounded
//! channel, so memory stays at one row group plus a few batches. Finished row groups go to
//! storage as they close. It implements iceberg's `FileWriterBuilder`, so iceberg's rolling and
//! data-file writers wrap it unchanged; the Iceberg metrics come from the footer
//! ([`super::metrics`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{FieldRef, SchemaRef as ArrowSchemaRef};
use bytes::Bytes;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::io::{FileWrite, OutputFile};
use iceberg::spec::{DataFileBuilder, NestedFieldRef, SchemaRef};
use iceberg::writer::CurrentFileStatus;
use iceberg::writer::file_writer::{FileWriter, FileWriterBuilder};
use iceberg::{Error, ErrorKind};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::metrics::{count_nans, data_file_builder};

/// Batches a column task may hold before the writer waits for it.
const COLUMN_QUEUE: usize = 2;

/// Builds [`ParallelParquetWriter`]s for one table schema and set of writer properties.
#[derive(Debug, Clone)]
pub struct ParallelParquetWriterBuilder {
    props: WriterProperties,
    schema: SchemaRef,
}

impl ParallelParquetWriterBuilder {
    /// A builder writing `schema` (field ids go into the Parquet schema) with `props`.
    pub fn new(props: WriterProperties, schema: SchemaRef) -> Self {
        Self { props, schema }
    }
}

impl FileWriterBuilder for ParallelParquetWriterBuilder {
    type R = ParallelParquetWriter;

    async fn build(&self, output_file: OutputFile) -> iceberg::Result<ParallelParquetWriter> {
        let arrow_schema = Arc::new(schema_to_arrow_schema(&self.schema)?);
        Ok(ParallelParquetWriter {
            schema: self.schema.clone(),
            arrow_schema,
            props: self.props.clone(),
            output: output_file,
            open: None,
            rows: 0,
            nan_counts: HashMap::new(),
        })
    }
}

/// Writes one Parquet file; the file is created at the first row, so a writer that saw no rows
/// leaves nothing behind.
///
/// Sizes (row-group byte limit, `current_written_size` for rolling) are the column tasks'
/// estimates, which trail the batches handed over by at most the queue length. A `write` that is
/// canceled midway leaves the row group unusable: later writes fail instead of writing a file.
pub struct ParallelParquetWriter {
    schema: SchemaRef,
    arrow_schema: ArrowSchemaRef,
    props: WriterProperties,
    output: OutputFile,
    open: Option<Open>,
    rows: usize,
    nan_counts: HashMap<i32, u64>,
}

/// The file being written.
struct Open {
    file: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    sink: Box<dyn FileWrite>,
    /// Leaf columns of each top-level field, in schema order.
    leaves: Vec<usize>,
    group: Option<RowGroup>,
}

/// A row group being encoded: one task per top-level column.
struct RowGroup {
    columns: Vec<ColumnTask>,
    rows: usize,
}

impl RowGroup {
    fn estimated_bytes(&self) -> usize {
        self.columns.iter().map(|c| c.estimated.load(Ordering::Relaxed)).sum()
    }
}

impl Drop for RowGroup {
    fn drop(&mut self) {
        for column in &self.columns {
            column.done.abort();
        }
    }
}

/// A column's encoding task and its queue.
struct ColumnTask {
    /// Closed (`None`) when the row group ends.
    queue: Option<mpsc::Sender<ArrayRef>>,
    done: JoinHandle<iceberg::Result<Encoded>>,
    /// The encoded size of what the task has written so far, for row-group and file rolling.
    estimated: Arc<AtomicUsize>,
}

/// What a column task hands back when its row group closes.
struct Encoded {
    chunks: Vec<ArrowColumnChunk>,
    nan_counts: HashMap<i32, u64>,
}

fn parquet_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Unexpected, format!("parquet writer: {what}")).with_source(e)
}

impl ParallelParquetWriter {
    async fn open(&mut self) -> iceberg::Result<&mut Open> {
        if self.open.is_none() {
            let writer = ArrowWriter::try_new(Vec::new(), self.arrow_schema.clone(), Some(self.props.clone()))
                .map_err(|e| parquet_error("create", e))?;
            let (file, factory) = writer.into_serialized_writer().map_err(|e| parquet_error("create", e))?;
            let descr = file.schema_descr();
            let mut leaves = vec![0usize; self.arrow_schema.fields().len()];
            for i in 0..descr.num_columns() {
                if let Some(count) = leaves.get_mut(descr.get_column_root_idx(i)) {
                    *count += 1;
                }
            }
            let sink = self.output.writer().await?;
            self.open = Some(Open { file, factory, sink, leaves, group: None });
        }
        self.open.as_mut().ok_or_else(|| Error::new(ErrorKind::Unexpected, "parquet writer is not open"))
    }

    fn start_group(open: &mut Open, arrow_schema: &ArrowSchemaRef, schema: &SchemaRef) -> iceberg::Result<RowGroup> {
        let index = open.file.flushed_row_groups().len();
        let mut writers =
            open.factory.create_column_writers(index).map_err(|e| parquet_error("column writers", e))?.into_iter();
        let fields = schema.as_struct().fields();
        let mut columns = Vec::with_capacity(open.leaves.len());
        for (i, &leaves) in open.leaves.iter().enumerate() {
            let (Some(arrow_field), Some(field)) = (arrow_schema.fields().get(i), fields.get(i)) else {
                return Err(Error::new(ErrorKind::Unexpected, "arrow and iceberg schemas differ"));
            };
            let column_writers: Vec<ArrowColumnWriter> = writers.by_ref().take(leaves).collect();
            columns.push(spawn_column(arrow_field.clone(), field.clone(), column_writers));
        }
        Ok(RowGroup { columns, rows: 0 })
    }

    /// Closes the row group in progress and sends its bytes to storage.
    async fn flush_group(&mut self) -> iceberg::Result<()> {
        let Some(open) = self.open.as_mut() else { return Ok(()) };
        let Some(mut group) = open.group.take() else { return Ok(()) };
        // The tasks stay owned by the group until they finish: if one failed (or this future is
        // dropped), dropping the group aborts the others.
        for column in &mut group.columns {
            column.queue = None;
        }
        let mut chunks = Vec::new();
        for column in &mut group.columns {
            let encoded = (&mut column.done).await.map_err(|e| parquet_error("column task", e))??;
            chunks.extend(encoded.chunks);
            for (id, n) in encoded.nan_counts {
                *self.nan_counts.entry(id).or_default() += n;
            }
        }
        let mut row_group = open.file.next_row_group().map_err(|e| parquet_error("row group", e))?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group).map_err(|e| parquet_error("row group", e))?;
        }
        row_group.close().map_err(|e| parquet_error("row group", e))?;
        Self::drain(open).await
    }

    /// Sends what the Parquet writer buffered to storage.
    async fn drain(open: &mut Open) -> iceberg::Result<()> {
        open.file.flush().map_err(|e| parquet_error("flush", e))?;
        let buffered = std::mem::take(open.file.inner_mut());
        if !buffered.is_empty() {
            open.sink.write(Bytes::from(buffered)).await?;
        }
        Ok(())
    }

    /// The error that made a column task stop early.
    async fn column_failure(&mut self) -> Error {
        match self.flush_group().await {
            Err(e) => e,
            Ok(()) => Error::new(ErrorKind::Unexpected, "a parquet column task stopped"),
        }
    }
}

/// Starts the task encoding one top-level column of a row group.
fn spawn_column(arrow_field: FieldRef, field: NestedFieldRef, mut writers: Vec<ArrowColumnWriter>) -> ColumnTask {
    let (queue, mut arrays) = mpsc::channel::<ArrayRef>(COLUMN_QUEUE);
    let estimated = Arc::new(AtomicUsize::new(0));
    let size = estimated.clone();
    let done = tokio::spawn(async move {
        let mut nan_counts = HashMap::new();
        while let Some(array) = arrays.recv().await {
            let leaves = compute_leaves(&arrow_field, &array).map_err(|e| parquet_error("levels", e))?;
            for (writer, leaf) in writers.iter_mut().zip(&leaves) {
                writer.write(leaf).map_err(|e| parquet_error("encode", e))?;
            }
            count_nans(&field, &array, &mut nan_counts);
            size.store(writers.iter().map(|w| w.get_estimated_total_bytes()).sum(), Ordering::Relaxed);
        }
        let chunks = writers
            .into_iter()
            .map(|w| w.close().map_err(|e| parquet_error("close column", e)))
            .collect::<iceberg::Result<Vec<_>>>()?;
        Ok(Encoded { chunks, nan_counts })
    });
    ColumnTask { queue: Some(queue), done, estimated }
}

impl FileWriter for ParallelParquetWriter {
    async fn write(&mut self, batch: &RecordBatch) -> iceberg::Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if batch.num_columns() != self.arrow_schema.fields().len()
            || batch.columns().iter().zip(self.arrow_schema.fields()).any(|(c, f)| c.data_type() != f.data_type())
        {
            return Err(Error::new(ErrorKind::DataInvalid, "record batch does not match the table schema"));
        }
        let max_rows = self.props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        let max_bytes = self.props.max_row_group_bytes();
        let (arrow_schema, schema) = (self.arrow_schema.clone(), self.schema.clone());
        let mut offset = 0;
        while offset < batch.num_rows() {
            let open = self.open().await?;
            let group = match open.group.take() {
                Some(group) => open.group.insert(group),
                None => {
                    let group = Self::start_group(open, &arrow_schema, &schema)?;
                    open.group.insert(group)
                }
            };
            // Row groups hold at most `max_rows`: a batch that crosses the limit is split.
            let n = (max_rows - group.rows.min(max_rows)).max(1).min(batch.num_rows() - offset);
            let mut failed = false;
            for (column, array) in group.columns.iter().zip(batch.columns()) {
                let sent = match column.queue.as_ref() {
                    Some(queue) => queue.send(array.slice(offset, n)).await.is_ok(),
                    None => false,
                };
                if !sent {
                    failed = true;
                    break;
                }
            }
            if failed {
                return Err(self.column_failure().await);
            }
            group.rows += n;
            // Lets the column tasks take the slice now where they share this thread (a
            // current-thread runtime), so the size estimates below do not fall behind.
            tokio::task::yield_now().await;
            let full = group.rows >= max_rows || max_bytes.is_some_and(|max| group.estimated_bytes() >= max);
            offset += n;
            self.rows += n;
            if full {
                self.flush_group().await?;
            }
        }
        Ok(())
    }

    async fn close(mut self) -> iceberg::Result<Vec<DataFileBuilder>> {
        if self.open.is_none() {
            return Ok(vec![]);
        }
        self.flush_group().await?;
        let Some(mut open) = self.open.take() else { return Ok(vec![]) };
        let metadata = open.file.finish().map_err(|e| parquet_error("footer", e))?;
        Self::drain(&mut open).await?;
        open.sink.close().await?;
        let size = open.file.bytes_written() as u64;
        let builder = data_file_builder(
            &self.schema,
            &metadata,
            size,
            self.output.location().to_string(),
            std::mem::take(&mut self.nan_counts),
        )
        .map_err(|e| Error::new(ErrorKind::DataInvalid, format!("data file metrics: {e}")))?;
        Ok(vec![builder])
    }
}

impl CurrentFileStatus for ParallelParquetWriter {
    fn current_file_path(&self) -> String {
        self.output.location().to_string()
    }

    fn current_row_num(&self) -> usize {
        self.rows
    }

    fn current_written_size(&self) -> usize {
        self.open
            .as_ref()
            .map_or(0, |open| open.file.bytes_written() + open.group.as_ref().map_or(0, RowGroup::estimated_bytes))
    }
}
