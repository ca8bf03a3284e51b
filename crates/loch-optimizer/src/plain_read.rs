//! Reading a small data file straight from its bytes (its deletes are applied by the executor
//! on the batches, as for any file).
//!
//! Streaming writers leave thousands of files of a few thousand rows. Iceberg's reader pays per
//! file for ranged reads (the footer, then each column chunk), an async decoder and a schema
//! transformer. A file that is small and already stores the table's columns in
//! the table's order and types needs none of that: it is read with one request and decoded by
//! the synchronous Parquet reader. Any other file (evolved schema, nested or promoted columns,
//! large files) goes through iceberg's reader, so this is a shortcut, never a second
//! set of read rules.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema as ArrowSchema};
use iceberg::io::FileIO;
use iceberg::scan::FileScanTask;
use iceberg::spec::{DataFileFormat, NameMapping};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::file::metadata::ParquetMetaDataReader;

/// Files up to this size may be read whole; larger ones stream through iceberg's reader.
pub const PLAIN_READ_MAX_BYTES: u64 = 32 << 20;
/// Rows per decoded batch, as iceberg's reader is configured.
const BATCH_ROWS: usize = 8192;

/// What a plain read checks a file against: the table's top-level field ids in schema order,
/// the Arrow schema batches must have, and the name mapping for files without field ids.
#[derive(Clone)]
pub struct PlainTarget {
    /// Top-level field ids of the table schema, in order.
    pub ids: Arc<[i32]>,
    /// The Arrow schema of the table (every field primitive, or plain reads are off).
    pub schema: Arc<ArrowSchema>,
    /// `schema.name-mapping.default`, for files written without field ids.
    pub mapping: Option<Arc<NameMapping>>,
}

impl PlainTarget {
    /// A target for `schema`, or `None` when a plain read could never apply (nested columns).
    pub fn new(ids: Vec<i32>, schema: Arc<ArrowSchema>, mapping: Option<Arc<NameMapping>>) -> Option<Self> {
        let flat = schema.fields().iter().all(|f| !f.data_type().is_nested());
        (flat && ids.len() == schema.fields().len()).then(|| Self { ids: ids.into(), schema, mapping })
    }

    /// Whether `scan` may be read plainly, before anything is read.
    pub fn accepts(&self, scan: &FileScanTask) -> bool {
        scan.deletes.is_empty()
            && scan.predicate.is_none()
            && scan.data_file_format == DataFileFormat::Parquet
            && scan.start == 0
            && scan.file_size_in_bytes <= PLAIN_READ_MAX_BYTES
    }

    /// The field id of a file's top-level column: its own, else the name mapping's.
    fn id_of(&self, column: &parquet::schema::types::Type) -> Option<i32> {
        let info = column.get_basic_info();
        if info.has_id() {
            return Some(info.id());
        }
        let mapping = self.mapping.as_ref()?;
        mapping.fields().iter().find(|f| f.names().iter().any(|n| n == column.name())).and_then(|f| f.field_id())
    }

    /// A reader of `bytes` yielding batches of the target schema, or `None` when the file's
    /// columns are not exactly the table's (then iceberg's reader maps them).
    pub fn open(&self, bytes: bytes::Bytes) -> Option<ParquetRecordBatchReader> {
        let metadata = Arc::new(ParquetMetaDataReader::new().parse_and_finish(&bytes).ok()?);
        let columns = metadata.file_metadata().schema_descr().root_schema().get_fields();
        if columns.len() != self.ids.len()
            || columns.iter().zip(self.ids.iter()).any(|(c, &id)| !c.is_primitive() || self.id_of(c) != Some(id))
        {
            return None;
        }
        // Read the file's columns as the table's types (a timestamp's zone, say), under the
        // file's names and nullability (the reader insists on both); then check the reader
        // agreed to every type before trusting it.
        let hint: Vec<Field> = columns
            .iter()
            .zip(self.schema.fields())
            .map(|(c, f)| {
                let nullable = c.get_basic_info().repetition() != parquet::basic::Repetition::REQUIRED;
                Field::new(c.name(), f.data_type().clone(), nullable)
            })
            .collect();
        let options =
            ArrowReaderOptions::new().with_skip_arrow_metadata(true).with_schema(Arc::new(ArrowSchema::new(hint)));
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(
            bytes,
            ArrowReaderMetadata::try_new(metadata, options).ok()?,
        );
        let agrees =
            builder.schema().fields().iter().zip(self.schema.fields()).all(|(a, b)| a.data_type() == b.data_type());
        agrees.then(|| builder.with_batch_size(BATCH_ROWS).build().ok()).flatten()
    }

    /// A decoded batch relabelled with the table's schema (checks required columns hold no nulls).
    pub fn relabel(&self, batch: RecordBatch) -> iceberg::Result<RecordBatch> {
        RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
            .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, format!("batch: {e}")))
    }
}

/// The whole of `scan`'s file, in one read: a local file on this thread, like the decoding that
/// follows (through the storage, each of its system calls is a hop to a blocking thread, paid
/// per file, thousands of times for a streaming table's files).
pub async fn read_whole(io: &FileIO, scan: &FileScanTask) -> iceberg::Result<bytes::Bytes> {
    if let Some(read) = loch_table::io::read_local_blocking(&scan.data_file_path) {
        return read;
    }
    io.new_input(&scan.data_file_path)?.read().await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow_array::{ArrayRef, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow_schema::{DataType, TimeUnit};
    use iceberg::spec::MappedField;
    use parquet::arrow::{ArrowWriter, PARQUET_FIELD_ID_META_KEY};

    use super::*;

    /// The table: id long required (1), name string (2), at timestamptz (3).
    fn table() -> Arc<ArrowSchema> {
        let field = |name: &str, ty: DataType, nullable: bool, id: i32| {
            Field::new(name, ty, nullable)
                .with_metadata(HashMap::from([(PARQUET_FIELD_ID_META_KEY.to_string(), id.to_string())]))
        };
        Arc::new(ArrowSchema::new(vec![
            field("id", DataType::Int64, false, 1),
            field("name", DataType::Utf8, true, 2),
            field("at", DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())), true, 3),
        ]))
    }

    fn target(mapping: Option<NameMapping>) -> PlainTarget {
        PlainTarget::new(vec![1, 2, 3], table(), mapping.map(Arc::new)).expect("flat schema")
    }

    fn mapping() -> NameMapping {
        NameMapping::new(vec![
            MappedField::new(Some(1), vec!["id".into()], vec![]),
            MappedField::new(Some(2), vec!["name".into()], vec![]),
            MappedField::new(Some(3), vec!["at".into()], vec![]),
        ])
    }

    /// A Parquet file of `columns` (name, field id or none, values); `id` is a required column
    /// when it holds no nulls, as Loch's writer stores a required field.
    fn file(columns: Vec<(&str, Option<i32>, ArrayRef)>) -> bytes::Bytes {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, id, values)| {
                let required = *name == "id" && values.null_count() == 0;
                let field = Field::new(*name, values.data_type().clone(), !required);
                match id {
                    Some(id) => {
                        field.with_metadata(HashMap::from([(PARQUET_FIELD_ID_META_KEY.to_string(), id.to_string())]))
                    }
                    None => field,
                }
            })
            .collect();
        let batch =
            RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns.into_iter().map(|c| c.2).collect())
                .unwrap();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out.into()
    }

    fn ids() -> ArrayRef {
        Arc::new(Int64Array::from(vec![1, 2, 3]))
    }
    fn names() -> ArrayRef {
        Arc::new(StringArray::from(vec![Some("a"), None, Some("c")]))
    }
    fn times() -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(vec![10, 20, 30]).with_timezone("UTC"))
    }

    fn read(target: &PlainTarget, bytes: bytes::Bytes) -> Option<Vec<RecordBatch>> {
        let reader = target.open(bytes)?;
        Some(reader.map(|b| target.relabel(b.unwrap()).unwrap()).collect())
    }

    #[test]
    fn a_file_with_the_tables_field_ids_is_read_as_the_table() {
        let bytes = file(vec![("id", Some(1), ids()), ("name", Some(2), names()), ("at", Some(3), times())]);
        let batches = read(&target(None), bytes).expect("plainly readable");
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].schema(), table(), "the table's schema, zone included");
        assert_eq!(batches[0].column(1).as_ref(), names().as_ref());
    }

    #[test]
    fn a_file_without_field_ids_is_read_only_through_the_name_mapping() {
        let columns = || vec![("id", None, ids()), ("name", None, names()), ("at", None, times())];
        assert!(read(&target(None), file(columns())).is_none(), "no ids and no mapping: iceberg's reader decides");
        let batches = read(&target(Some(mapping())), file(columns())).expect("mapped by name");
        assert_eq!(batches[0].num_rows(), 3);
    }

    #[test]
    fn other_orders_ids_and_types_are_declined() {
        let reordered = file(vec![("name", Some(2), names()), ("id", Some(1), ids()), ("at", Some(3), times())]);
        assert!(read(&target(None), reordered).is_none());
        let renumbered = file(vec![("id", Some(1), ids()), ("name", Some(4), names()), ("at", Some(3), times())]);
        assert!(read(&target(None), renumbered).is_none());
        let narrower: ArrayRef = Arc::new(Int32Array::from(vec![1, 2, 3]));
        let promoted = file(vec![("id", Some(1), narrower), ("name", Some(2), names()), ("at", Some(3), times())]);
        assert!(read(&target(None), promoted).is_none(), "int to long is iceberg's promotion to make");
        let fewer = file(vec![("id", Some(1), ids()), ("name", Some(2), names())]);
        assert!(read(&target(None), fewer).is_none(), "a column added later is iceberg's to fill");
    }

    #[test]
    fn a_null_in_a_required_column_is_an_error_not_a_row() {
        let with_null: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]));
        let bytes = file(vec![("id", Some(1), with_null), ("name", Some(2), names()), ("at", Some(3), times())]);
        let target = target(None);
        let mut reader = target.open(bytes).expect("the columns match");
        let error = target.relabel(reader.next().unwrap().unwrap()).unwrap_err();
        assert!(error.to_string().contains("null"), "{error}");
    }

    #[test]
    fn nested_schemas_never_take_the_plain_read() {
        let nested = Arc::new(ArrowSchema::new(vec![Field::new(
            "s",
            DataType::Struct(vec![Field::new("a", DataType::Int64, true)].into()),
            true,
        )]));
        assert!(PlainTarget::new(vec![1], nested, None).is_none());
    }
}
