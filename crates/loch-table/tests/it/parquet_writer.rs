//! The parallel Parquet writer against iceberg-rust's own `ParquetWriter`: the same rows and the
//! same Iceberg metrics (a wrong bound would let scans prune rows away), across every primitive
//! type, nested fields, nulls and NaNs, several row groups, and rolling into several files.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray, Float32Array, Float64Array,
    Int32Array, Int64Array, LargeBinaryArray, ListArray, MapArray, RecordBatch, StringArray, StructArray,
    Time64MicrosecondArray, TimestampMicrosecondArray, TimestampNanosecondArray,
};
use arrow_schema::DataType;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::io::FileIO;
use iceberg::spec::{
    DataContentType, DataFile, DataFileFormat, Datum, FormatVersion, ListType, MapType, NestedField, PrimitiveType,
    Schema, SchemaRef, StructType, Type,
};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::{FileWriter, FileWriterBuilder, ParquetWriterBuilder};
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use loch_table::parquet::ParallelParquetWriterBuilder;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;

fn all_types() -> SchemaRef {
    let p = |id, name: &str, t: PrimitiveType| NestedField::optional(id, name, Type::Primitive(t)).into();
    let fields = vec![
        NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
        p(2, "flag", PrimitiveType::Boolean),
        p(3, "small", PrimitiveType::Int),
        p(4, "ratio", PrimitiveType::Float),
        p(5, "amount", PrimitiveType::Double),
        p(6, "price", PrimitiveType::Decimal { precision: 9, scale: 2 }),
        p(7, "total", PrimitiveType::Decimal { precision: 18, scale: 3 }),
        p(8, "huge", PrimitiveType::Decimal { precision: 38, scale: 5 }),
        p(9, "day", PrimitiveType::Date),
        p(10, "at_time", PrimitiveType::Time),
        p(11, "ts", PrimitiveType::Timestamp),
        p(12, "tstz", PrimitiveType::Timestamptz),
        p(13, "ts_ns", PrimitiveType::TimestampNs),
        p(14, "name", PrimitiveType::String),
        p(15, "uid", PrimitiveType::Uuid),
        p(16, "code", PrimitiveType::Fixed(4)),
        p(17, "blob", PrimitiveType::Binary),
        NestedField::optional(
            18,
            "point",
            Type::Struct(StructType::new(vec![
                NestedField::optional(19, "x", Type::Primitive(PrimitiveType::Int)).into(),
                NestedField::optional(20, "y", Type::Primitive(PrimitiveType::Double)).into(),
            ])),
        )
        .into(),
        NestedField::optional(
            21,
            "samples",
            Type::List(ListType::new(
                NestedField::optional(22, "element", Type::Primitive(PrimitiveType::Float)).into(),
            )),
        )
        .into(),
        NestedField::optional(
            23,
            "tags",
            Type::Map(MapType::new(
                NestedField::required(24, "key", Type::Primitive(PrimitiveType::String)).into(),
                NestedField::optional(25, "value", Type::Primitive(PrimitiveType::Double)).into(),
            )),
        )
        .into(),
    ];
    Arc::new(Schema::builder().with_fields(fields).build().unwrap())
}

/// Rows `start..start + n`: every third value null, NaNs in the float columns, strings of
/// different lengths, negative decimals.
fn batch(schema: &Schema, start: i64, n: usize) -> RecordBatch {
    let arrow = Arc::new(schema_to_arrow_schema(schema).unwrap());
    let ids: Vec<i64> = (start..start + n as i64).collect();
    let some = |i: i64| i % 3 != 0;
    let opt = |f: &dyn Fn(i64) -> i64| ids.iter().map(|&i| some(i).then(|| f(i))).collect::<Vec<_>>();
    let field_type = |name: &str| arrow.field_with_name(name).unwrap().data_type().clone();
    let struct_fields = match field_type("point") {
        DataType::Struct(f) => f,
        _ => unreachable!(),
    };
    let list_field = match field_type("samples") {
        DataType::List(f) => f,
        _ => unreachable!(),
    };
    let (entries_field, entry_fields) = match field_type("tags") {
        DataType::Map(f, _) => match f.data_type() {
            DataType::Struct(inner) => (f.clone(), inner.clone()),
            _ => unreachable!(),
        },
        _ => unreachable!(),
    };
    let float = |i: i64| if i % 7 == 0 { f64::NAN } else { (i as f64) * 0.5 - 100.0 };
    let decimal = |values: Vec<Option<i64>>, p: u8, s: i8| -> ArrayRef {
        Arc::new(
            Decimal128Array::from(values.into_iter().map(|v| v.map(|v| v as i128 * 1_000_003)).collect::<Vec<_>>())
                .with_precision_and_scale(p, s)
                .unwrap(),
        )
    };
    let names: Vec<Option<String>> =
        ids.iter().map(|&i| some(i).then(|| format!("name-{}-{}", i % 97, "x".repeat((i % 40) as usize)))).collect();
    let uuids: Vec<Option<[u8; 16]>> = ids.iter().map(|&i| some(i).then(|| (i as u128 * 7919).to_be_bytes())).collect();
    let codes: Vec<Option<[u8; 4]>> = ids.iter().map(|&i| some(i).then(|| (i as u32).to_be_bytes())).collect();
    let point = StructArray::new(
        struct_fields,
        vec![
            Arc::new(Int32Array::from(opt(&|i| i % 1000).into_iter().map(|v| v.map(|v| v as i32)).collect::<Vec<_>>())),
            Arc::new(Float64Array::from(ids.iter().map(|&i| (i % 5 != 0).then(|| float(i))).collect::<Vec<_>>())),
        ],
        Some(ids.iter().map(|&i| i % 11 != 0).collect::<Vec<_>>().into()),
    );
    let samples = {
        let mut offsets = vec![0i32];
        let mut values = Vec::new();
        for &i in &ids {
            for k in 0..(i % 4) {
                values.push(if (i + k) % 9 == 0 { None } else { Some(float(i + k) as f32) });
            }
            offsets.push(values.len() as i32);
        }
        ListArray::new(
            list_field,
            arrow_buffer::OffsetBuffer::new(offsets.into()),
            Arc::new(Float32Array::from(values)),
            Some(ids.iter().map(|&i| i % 13 != 0).collect::<Vec<_>>().into()),
        )
    };
    let tags = {
        let mut offsets = vec![0i32];
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for &i in &ids {
            for k in 0..(i % 3) {
                keys.push(format!("k{k}"));
                values.push(((i + k) % 4 != 0).then(|| float(i * 3 + k)));
            }
            offsets.push(keys.len() as i32);
        }
        let entries = StructArray::new(
            entry_fields,
            vec![Arc::new(StringArray::from(keys)), Arc::new(Float64Array::from(values))],
            None,
        );
        MapArray::try_new(entries_field, arrow_buffer::OffsetBuffer::new(offsets.into()), entries, None, false).unwrap()
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(BooleanArray::from(ids.iter().map(|&i| some(i).then_some(i % 2 == 0)).collect::<Vec<_>>())),
        Arc::new(Int32Array::from(
            opt(&|i| (i * 37) % 2001 - 1000).into_iter().map(|v| v.map(|v| v as i32)).collect::<Vec<_>>(),
        )),
        Arc::new(Float32Array::from(ids.iter().map(|&i| some(i).then(|| float(i) as f32)).collect::<Vec<_>>())),
        Arc::new(Float64Array::from(ids.iter().map(|&i| some(i).then(|| float(i))).collect::<Vec<_>>())),
        decimal(opt(&|i| (i % 500) - 250), 9, 2),
        decimal(opt(&|i| i * 1_000 - 5_000_000), 18, 3),
        decimal(opt(&|i| i * 1_000_000_007 - 3), 38, 5),
        Arc::new(Date32Array::from(
            opt(&|i| i % 20_000 - 100).into_iter().map(|v| v.map(|v| v as i32)).collect::<Vec<_>>(),
        )),
        Arc::new(Time64MicrosecondArray::from(opt(&|i| (i * 1_000_003) % 86_400_000_000))),
        Arc::new(TimestampMicrosecondArray::from(opt(&|i| 1_700_000_000_000_000 + i * 1_000_001))),
        Arc::new(TimestampMicrosecondArray::from(opt(&|i| 1_600_000_000_000_000 - i * 999)).with_timezone("+00:00")),
        Arc::new(TimestampNanosecondArray::from(opt(&|i| 1_700_000_000_000_000_000 + i * 13))),
        Arc::new(StringArray::from(names)),
        Arc::new(FixedSizeBinaryArray::try_from_sparse_iter_with_size(uuids.into_iter(), 16).unwrap()),
        Arc::new(FixedSizeBinaryArray::try_from_sparse_iter_with_size(codes.into_iter(), 4).unwrap()),
        Arc::new(LargeBinaryArray::from(
            ids.iter()
                .map(|&i| some(i).then(|| vec![(i % 256) as u8; (i % 5) as usize]))
                .collect::<Vec<_>>()
                .iter()
                .map(|v| v.as_deref())
                .collect::<Vec<_>>(),
        )),
        Arc::new(point),
        Arc::new(samples),
        Arc::new(tags),
    ];
    RecordBatch::try_new(arrow, columns).unwrap()
}

fn props(rows_per_group: usize) -> WriterProperties {
    WriterProperties::builder().set_max_row_group_row_count(Some(rows_per_group)).set_max_row_group_bytes(None).build()
}

/// Writes `batches` with a file writer from `builder` into `path`, returning the data file.
async fn write_one<B: FileWriterBuilder>(builder: &B, io: &FileIO, path: &str, batches: &[RecordBatch]) -> DataFile {
    let mut writer = builder.build(io.new_output(path).unwrap()).await.unwrap();
    for b in batches {
        writer.write(b).await.unwrap();
    }
    let mut files = writer.close().await.unwrap();
    assert_eq!(files.len(), 1);
    files.pop().unwrap().partition_spec_id(0).build().unwrap()
}

fn read(path: &str) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path.strip_prefix("file://").unwrap_or(path)).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().map(|b| b.unwrap()).collect()
}

fn concat(batches: &[RecordBatch]) -> RecordBatch {
    arrow_select::concat::concat_batches(&batches[0].schema(), batches).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parallel_writer_records_what_iceberg_s_writer_records() {
    let dir = tempfile::tempdir().unwrap();
    let io = FileIO::new_with_fs();
    let schema = all_types();
    // Batches of uneven sizes; 700-row groups split batches across row groups.
    let batches: Vec<RecordBatch> =
        [(0, 500), (500, 1), (501, 1499), (2000, 800)].into_iter().map(|(start, n)| batch(&schema, start, n)).collect();
    let base = format!("file://{}", dir.path().display());
    let ours = write_one(
        &ParallelParquetWriterBuilder::new(props(700), schema.clone()),
        &io,
        &format!("{base}/ours.parquet"),
        &batches,
    )
    .await;
    let theirs = write_one(
        &ParquetWriterBuilder::new(props(700), schema.clone()),
        &io,
        &format!("{base}/theirs.parquet"),
        &batches,
    )
    .await;

    assert_eq!(ours.record_count(), 2800);
    assert_eq!(ours.record_count(), theirs.record_count());
    assert_eq!(ours.content_type(), DataContentType::Data);
    assert_eq!(ours.file_format(), DataFileFormat::Parquet);
    assert_eq!(ours.split_offsets().map(|s| s.len()), Some(4), "2800 rows in 700-row groups");
    assert_eq!(ours.split_offsets(), theirs.split_offsets());
    assert_eq!(ours.column_sizes(), theirs.column_sizes());
    assert_eq!(ours.value_counts(), theirs.value_counts());
    assert_eq!(ours.null_value_counts(), theirs.null_value_counts());
    assert_eq!(ours.nan_value_counts(), theirs.nan_value_counts());
    assert_eq!(ours.lower_bounds(), theirs.lower_bounds());
    assert_eq!(ours.upper_bounds(), theirs.upper_bounds());
    assert_eq!(ours.file_size_in_bytes(), std::fs::metadata(dir.path().join("ours.parquet")).unwrap().len());
    // The metrics are not vacuous: every leaf has counts, bounds exist for the sortable ones,
    // and NaNs were seen in all four float leaves.
    assert_eq!(ours.value_counts().len(), 22);
    assert!(ours.lower_bounds().contains_key(&14) && ours.upper_bounds().contains_key(&8));
    for id in [4, 5, 20, 22, 25] {
        assert!(ours.nan_value_counts().get(&id).is_some_and(|n| *n > 0), "NaNs of field {id}");
    }

    let written = concat(&batches);
    assert_eq!(concat(&read(ours.file_path())), concat(&read(theirs.file_path())));
    let read_back = concat(&read(ours.file_path()));
    assert_eq!(read_back.columns(), written.columns());
}

/// On a current-thread runtime (column tasks interleave with the writer), with row groups cut by
/// bytes.
#[tokio::test]
async fn the_rolling_writer_splits_parallel_files_at_the_target_size() {
    let dir = tempfile::tempdir().unwrap();
    let io = FileIO::new_with_fs();
    let schema = all_types();
    let metadata = iceberg::spec::TableMetadataBuilder::new(
        (*schema).clone(),
        iceberg::spec::UnboundPartitionSpec::builder().build(),
        iceberg::spec::SortOrder::unsorted_order(),
        format!("file://{}", dir.path().display()),
        FormatVersion::V2,
        HashMap::new(),
    )
    .unwrap()
    .build()
    .unwrap()
    .metadata;
    let rolling = RollingFileWriterBuilder::new(
        ParallelParquetWriterBuilder::new(
            WriterProperties::builder().set_max_row_group_bytes(Some(16 * 1024)).build(),
            schema.clone(),
        ),
        64 * 1024,
        io.clone(),
        DefaultLocationGenerator::new(&metadata).unwrap(),
        DefaultFileNameGenerator::new("roll".into(), None, DataFileFormat::Parquet),
    );
    let mut writer = DataFileWriterBuilder::new(rolling).build(None).await.unwrap();
    let batches: Vec<RecordBatch> = (0..200).map(|k| batch(&schema, k * 100, 100)).collect();
    for b in &batches {
        writer.write(b.clone()).await.unwrap();
    }
    let files = writer.close().await.unwrap();
    assert!(files.len() > 2, "20,000 rows in 64 KiB files: {} files", files.len());
    assert_eq!(files.iter().map(|f| f.record_count()).sum::<u64>(), 20_000);
    let shape: Vec<(u64, u64, usize)> = files
        .iter()
        .map(|f| (f.record_count(), f.file_size_in_bytes(), f.split_offsets().map_or(0, |s| s.len())))
        .collect();
    assert!(files.iter().any(|f| f.split_offsets().is_some_and(|s| s.len() > 1)), "16 KiB row groups: {shape:?}");
    // A file rolls once its size passes the target, so it overshoots by at most about one
    // 100-row batch (~14 KB) and the footer; stale size estimates would add batches.
    assert!(files.iter().all(|f| f.file_size_in_bytes() < (64 + 20) * 1024), "files near 64 KiB: {shape:?}");
    let mut read_back = Vec::new();
    for f in &files {
        let rows = read(f.file_path());
        assert_eq!(rows.iter().map(|b| b.num_rows() as u64).sum::<u64>(), f.record_count());
        read_back.extend(rows);
    }
    assert_eq!(concat(&read_back).columns(), concat(&batches).columns());
    let ids = concat(&read_back);
    let ids = ids.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
    assert!(ids.values().windows(2).all(|w| w[0] + 1 == w[1]), "rows keep their order across files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_without_rows_leaves_no_file_and_a_mismatched_batch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let io = FileIO::new_with_fs();
    let schema = all_types();
    let builder = ParallelParquetWriterBuilder::new(props(1000), schema.clone());
    let path = format!("file://{}/empty.parquet", dir.path().display());
    let mut writer = builder.build(io.new_output(&path).unwrap()).await.unwrap();
    writer.write(&batch(&schema, 0, 0)).await.unwrap();
    assert!(writer.close().await.unwrap().is_empty());
    assert!(!dir.path().join("empty.parquet").exists());

    let mut writer = builder.build(io.new_output(&path).unwrap()).await.unwrap();
    let other = RecordBatch::try_from_iter([("id", Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef)]).unwrap();
    let err = writer.write(&other).await.unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

/// Values longer than the 64 bytes arrow-rs keeps in statistics, in one row group of two: the
/// bounds still hold every value (iceberg-rust 0.10 drops such row groups' statistics and records
/// bounds from the other row group alone, which would prune the long values away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds_hold_values_longer_than_the_statistics_keep() {
    let dir = tempfile::tempdir().unwrap();
    let io = FileIO::new_with_fs();
    let schema = Arc::new(
        Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "name", Type::Primitive(PrimitiveType::String)).into(),
                NestedField::required(2, "blob", Type::Primitive(PrimitiveType::Binary)).into(),
                NestedField::required(3, "code", Type::Primitive(PrimitiveType::Fixed(100))).into(),
            ])
            .build()
            .unwrap(),
    );
    let arrow = Arc::new(schema_to_arrow_schema(&schema).unwrap());
    let long = |c: char, tail: char| format!("{}{tail}", c.to_string().repeat(99));
    // First row group: long values at both ends; second: short values in between.
    let names = vec![long('z', 'z'), long('0', '1'), "m".to_string(), "b".to_string()];
    let blobs: Vec<Vec<u8>> = vec![vec![0xff; 100], vec![0x00; 100], vec![0x80], vec![0x10]];
    let codes: Vec<Vec<u8>> = (0..4u8).map(|i| vec![0xf0 - i * 0x30; 100]).collect();
    let batch = RecordBatch::try_new(
        arrow,
        vec![
            Arc::new(StringArray::from(names.clone())),
            Arc::new(LargeBinaryArray::from(blobs.iter().map(|b| b.as_slice()).collect::<Vec<_>>())),
            Arc::new(FixedSizeBinaryArray::try_from_iter(codes.iter()).unwrap()),
        ],
    )
    .unwrap();
    let file = write_one(
        &ParallelParquetWriterBuilder::new(props(2), schema.clone()),
        &io,
        &format!("file://{}/long.parquet", dir.path().display()),
        &[batch],
    )
    .await;
    assert_eq!(file.split_offsets().map(|s| s.len()), Some(2));
    let values: [(i32, Vec<Datum>); 3] = [
        (1, names.iter().map(Datum::string).collect()),
        (2, blobs.iter().map(|b| Datum::binary(b.clone())).collect()),
        (3, codes.iter().map(|c| Datum::fixed(c.clone())).collect()),
    ];
    for (id, values) in values {
        if let Some(lower) = file.lower_bounds().get(&id) {
            assert!(values.iter().all(|v| lower <= v), "lower bound of {id}: {lower:?}");
        }
        if let Some(upper) = file.upper_bounds().get(&id) {
            assert!(values.iter().all(|v| upper >= v), "upper bound of {id}: {upper:?}");
        }
    }
    // Strings and binaries keep (truncated) bounds; a cut fixed-length value is no bound at all.
    for id in [1, 2] {
        assert!(file.lower_bounds().contains_key(&id) && file.upper_bounds().contains_key(&id), "bounds of {id}");
    }
    assert!(!file.lower_bounds().contains_key(&3) && !file.upper_bounds().contains_key(&3));
}
