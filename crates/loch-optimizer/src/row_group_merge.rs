//! Row-group merge: compacting Parquet files by copying their column chunks, undecoded.
//!
//! Files that already hold large row groups (segment files a major optimizing combines) gain
//! nothing from being decoded and encoded again: their row groups are copied byte for byte, with
//! their statistics and page indexes, into output files of about the target size (whole input
//! files each). As in Amoro
//! (apache/amoro#4188) it is off unless [`ENABLED`] is set, since the output keeps every input
//! row group: fewer files, not fewer row groups. A task is merged only when every file holds
//! exactly the Parquet columns the table's writer would write (names, field ids, types) in the
//! table's codec, and its row groups average at least [`MIN_AVG_ROW_GROUP_SIZE`]; the caller
//! checks that no delete applies. Otherwise nothing is written and the rows are rewritten.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt, stream};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::io::{FileIO, FileRead, OutputFile};
use iceberg::spec::{DataFile, DataFileBuilder, PrimitiveType, SchemaRef, Type};
use iceberg::{Error, ErrorKind};
use parquet::arrow::ArrowWriter;
use parquet::arrow::async_reader::MetadataFetch;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnDescPtr;

/// Turns the row-group merge on for a table (Amoro's name; default off).
pub const ENABLED: &str = "self-optimizing.rewrite.use-parquet-row-group-merge.enabled";
/// The average compressed row-group size below which a task is rewritten row by row instead.
pub const MIN_AVG_ROW_GROUP_SIZE: &str =
    "self-optimizing.rewrite.use-parquet-row-group-merge.min-avg-row-group-size-bytes";
/// Amoro's default for [`MIN_AVG_ROW_GROUP_SIZE`]: 8 MiB.
pub const MIN_AVG_ROW_GROUP_SIZE_DEFAULT: u64 = 8 << 20;

/// Footers read at once while checking a task's files.
const FOOTERS_AT_ONCE: usize = 8;

/// How one task is merged: where its files are, what the output must look like.
pub struct Merge<'a> {
    /// Storage of the inputs and outputs.
    pub io: &'a FileIO,
    /// The table schema; the output's Parquet columns are the ones its writer would write.
    pub schema: &'a SchemaRef,
    /// The table's writer properties (the codec copied chunks must already have).
    pub props: &'a WriterProperties,
    /// Output files roll over before an input file would take them past this size.
    pub target_size: u64,
    /// See [`MIN_AVG_ROW_GROUP_SIZE`].
    pub min_avg_row_group_bytes: u64,
}

/// What [`Merge::run`] did.
pub enum Outcome {
    /// The files were merged into these outputs (content, partition and spec still to set).
    Merged {
        /// The output files.
        files: Vec<DataFileBuilder>,
        /// Rows copied.
        rows: u64,
        /// Row groups copied.
        row_groups: u64,
    },
    /// Nothing was written; the reason the rows must be rewritten instead.
    Declined(String),
}

/// One input file: its reader and footer (with page indexes when it has them).
struct Footer {
    reader: Box<dyn FileRead>,
    metadata: ParquetMetaData,
}

impl Merge<'_> {
    /// Merges `files` into new files, each at the location `next_location` gives.
    pub async fn run(
        &self,
        files: &[&DataFile],
        mut next_location: impl FnMut() -> String,
    ) -> iceberg::Result<Outcome> {
        // The manifests' split offsets (one per row group) bound the average from above, so a
        // task of small files is declined before any footer is read.
        let (size, groups) = files.iter().fold((0u64, 0u64), |(s, g), f| {
            (s + f.file_size_in_bytes(), g + f.split_offsets().map_or(1, |o| o.len().max(1) as u64))
        });
        if groups > 0 && size / groups < self.min_avg_row_group_bytes {
            return Ok(Outcome::Declined(format!(
                "files average {} bytes per row group, below {MIN_AVG_ROW_GROUP_SIZE} {}",
                size / groups,
                self.min_avg_row_group_bytes
            )));
        }
        let arrow = Arc::new(schema_to_arrow_schema(self.schema)?);
        let expected = ArrowWriter::try_new(Vec::new(), arrow.clone(), Some(self.props.clone()))
            .map_err(|e| parquet_error("schema", e))?;
        let (writer, _) = expected.into_serialized_writer().map_err(|e| parquet_error("schema", e))?;
        let expected: Vec<ColumnDescPtr> = writer.schema_descr().columns().to_vec();
        // Futures made up front: a stream `map` closure over borrowed files would not be `Send`.
        let reads: Vec<_> = files.iter().map(|f| self.footer(f)).collect();
        let footers: Vec<Footer> = stream::iter(reads).buffered(FOOTERS_AT_ONCE).try_collect().await?;
        let (mut bytes, mut groups) = (0u64, 0u64);
        for (file, footer) in files.iter().zip(&footers) {
            if let Some(why) = self.mismatch(&expected, file, &footer.metadata) {
                return Ok(Outcome::Declined(format!("{}: {why}", file.file_path())));
            }
            for group in footer.metadata.row_groups() {
                bytes += group.compressed_size() as u64;
                groups += 1;
            }
        }
        if groups > 0 && bytes / groups < self.min_avg_row_group_bytes {
            return Ok(Outcome::Declined(format!(
                "row groups average {} bytes, below {MIN_AVG_ROW_GROUP_SIZE} {}",
                bytes / groups,
                self.min_avg_row_group_bytes
            )));
        }

        // Outputs roll over between input files, never inside one, so each output's NaN counts
        // are the sums of its inputs'.
        let mut outputs = Vec::new();
        let mut open: Option<(Output, Vec<&DataFile>)> = None;
        let mut rows = 0u64;
        for (file, footer) in files.iter().zip(&footers) {
            if footer.metadata.row_groups().is_empty() {
                continue; // no rows: nothing to copy, and no empty output for it
            }
            let size: u64 = footer.metadata.row_groups().iter().map(|g| g.compressed_size() as u64).sum();
            if let Some((output, inputs)) = open.take_if(|(o, _)| o.groups > 0 && o.written() + size > self.target_size)
            {
                outputs.push(output.close(self.schema, nan_counts(self.schema, &inputs)).await?);
            }
            let (output, inputs) = match open.as_mut() {
                Some(open) => open,
                None => open.insert((Output::open(self.io, next_location(), arrow.clone(), self.props).await?, vec![])),
            };
            for (index, group) in footer.metadata.row_groups().iter().enumerate() {
                output.append(footer, index).await?;
                rows += group.num_rows() as u64;
            }
            inputs.push(file);
        }
        if let Some((output, inputs)) = open.take() {
            outputs.push(output.close(self.schema, nan_counts(self.schema, &inputs)).await?);
        }
        Ok(Outcome::Merged { files: outputs, rows, row_groups: groups })
    }

    async fn footer(&self, file: &DataFile) -> iceberg::Result<Footer> {
        let reader = self.io.new_input(file.file_path())?.reader().await?;
        let metadata = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .with_prefetch_hint(Some(64 << 10))
            .load_and_finish(Fetch(reader.as_ref()), file.file_size_in_bytes())
            .await
            .map_err(|e| parquet_error(&format!("footer of {}", file.file_path()), e))?;
        Ok(Footer { reader, metadata })
    }

    /// Why `metadata` cannot be copied into the table's output, if it cannot.
    fn mismatch(&self, expected: &[ColumnDescPtr], file: &DataFile, metadata: &ParquetMetaData) -> Option<String> {
        let columns = metadata.file_metadata().schema_descr().columns();
        if columns.len() != expected.len()
            || columns.iter().zip(expected).any(|(have, want)| have.as_ref() != want.as_ref())
        {
            return Some("its Parquet columns are not the ones the table's writer writes".into());
        }
        let rows: i64 = metadata.row_groups().iter().map(|g| g.num_rows()).sum();
        if u64::try_from(rows).ok() != Some(file.record_count()) {
            return Some(format!("it holds {rows} rows, its metadata says {}", file.record_count()));
        }
        for group in metadata.row_groups() {
            for column in group.columns() {
                let want = self.props.compression(column.column_path());
                if std::mem::discriminant(&column.compression()) != std::mem::discriminant(&want) {
                    return Some(format!("it is compressed with {}, the table writes {want}", column.compression()));
                }
            }
        }
        None
    }
}

/// The NaN counts of the outputs' float columns: the inputs' sums, where every input has one
/// (copied chunks are not decoded, and Parquet statistics do not count NaNs).
fn nan_counts(schema: &SchemaRef, files: &[&DataFile]) -> HashMap<i32, u64> {
    let mut out = HashMap::new();
    for field in schema.as_struct().fields() {
        if !matches!(field.field_type.as_ref(), Type::Primitive(PrimitiveType::Float | PrimitiveType::Double)) {
            continue;
        }
        let counts: Option<u64> = files.iter().map(|f| f.nan_value_counts().get(&field.id).copied()).sum();
        if let Some(n) = counts {
            out.insert(field.id, n);
        }
    }
    out
}

/// An output file being assembled from copied row groups.
struct Output {
    file: SerializedFileWriter<Vec<u8>>,
    sink: Box<dyn iceberg::io::FileWrite>,
    output: OutputFile,
    groups: usize,
}

impl Output {
    async fn open(
        io: &FileIO,
        location: String,
        arrow: arrow_schema::SchemaRef,
        props: &WriterProperties,
    ) -> iceberg::Result<Self> {
        let writer =
            ArrowWriter::try_new(Vec::new(), arrow, Some(props.clone())).map_err(|e| parquet_error("create", e))?;
        let (file, _) = writer.into_serialized_writer().map_err(|e| parquet_error("create", e))?;
        let output = io.new_output(&location)?;
        let sink = output.writer().await?;
        Ok(Self { file, sink, output, groups: 0 })
    }

    fn written(&self) -> u64 {
        self.file.bytes_written() as u64
    }

    /// Copies row group `index` of `footer`'s file, read in one request.
    async fn append(&mut self, footer: &Footer, index: usize) -> iceberg::Result<()> {
        let group = &footer.metadata.row_groups()[index];
        let mut range: Option<Range<u64>> = None;
        for column in group.columns() {
            let (start, len) = column.byte_range();
            let end = start + len;
            range = Some(match range {
                Some(r) => r.start.min(start)..r.end.max(end),
                None => start..end,
            });
        }
        let Some(range) = range else { return Ok(()) };
        let slice = Slice { start: range.start, bytes: footer.reader.read(range).await? };
        let mut writer = self.file.next_row_group().map_err(|e| parquet_error("row group", e))?;
        for (column, chunk) in group.columns().iter().enumerate() {
            let column_index = footer
                .metadata
                .column_index()
                .and_then(|groups| groups.get(index))
                .and_then(|columns| columns.get(column))
                .filter(|c| !matches!(c, ColumnIndexMetaData::NONE))
                .cloned();
            let offset_index = footer
                .metadata
                .offset_index()
                .and_then(|groups| groups.get(index))
                .and_then(|c| c.get(column))
                .cloned();
            let close = ColumnCloseResult {
                bytes_written: chunk.compressed_size() as u64,
                rows_written: group.num_rows() as u64,
                metadata: chunk.clone(),
                bloom_filter: None,
                column_index,
                offset_index,
            };
            writer.append_column(&slice, close).map_err(|e| parquet_error("copy column chunk", e))?;
        }
        writer.close().map_err(|e| parquet_error("row group", e))?;
        self.groups += 1;
        self.drain().await
    }

    async fn drain(&mut self) -> iceberg::Result<()> {
        self.file.flush().map_err(|e| parquet_error("flush", e))?;
        let buffered = std::mem::take(self.file.inner_mut());
        if !buffered.is_empty() {
            self.sink.write(Bytes::from(buffered)).await?;
        }
        Ok(())
    }

    async fn close(mut self, schema: &SchemaRef, nan_counts: HashMap<i32, u64>) -> iceberg::Result<DataFileBuilder> {
        let metadata = self.file.finish().map_err(|e| parquet_error("footer", e))?;
        self.drain().await?;
        self.sink.close().await?;
        let size = self.file.bytes_written() as u64;
        loch_table::parquet::metrics::data_file_builder(
            schema,
            &metadata,
            size,
            self.output.location().to_string(),
            nan_counts,
        )
        .map_err(|e| Error::new(ErrorKind::DataInvalid, format!("data file metrics: {e}")))
    }
}

/// Storage reads for the footer reader.
struct Fetch<'a>(&'a dyn FileRead);

impl MetadataFetch for Fetch<'_> {
    fn fetch(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let reader = self.0;
        async move { reader.read(range).await.map_err(|e| ParquetError::External(Box::new(e))) }.boxed()
    }
}

/// The bytes of one row group, addressed by their offsets in the file.
struct Slice {
    start: u64,
    bytes: Bytes,
}

impl Slice {
    fn offset(&self, start: u64, len: usize) -> parquet::errors::Result<usize> {
        let offset = start
            .checked_sub(self.start)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|o| o.checked_add(len).is_some_and(|end| end <= self.bytes.len()))
            .ok_or_else(|| ParquetError::General(format!("bytes {start}+{len} are outside the row group read")))?;
        Ok(offset)
    }
}

impl Length for Slice {
    fn len(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

impl ChunkReader for Slice {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let offset = self.offset(start, 0)?;
        Ok(self.bytes.slice(offset..).reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let offset = self.offset(start, length)?;
        Ok(self.bytes.slice(offset..offset + length))
    }
}

fn parquet_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Unexpected, format!("row-group merge: {what}")).with_source(e)
}
