//! The executor: runs one rewrite task.
//!
//! - Rewrite: the live rows of the task's data files (position and equality deletes applied by
//!   the executor while reading, [`crate::position`] and [`crate::equality`]) stream into new Parquet files of the target size, in the
//!   table's default partition spec. Memory is bounded by the task: batches stream from reader to
//!   writer, and only the task's delete files are held. Files are read several at once on tasks
//!   of their own ([`crate::read_ahead`]) and the writer encodes columns on tasks of their own,
//!   so one task can use every core.
//! - Reposition: for a data file that stays, the positions its deletes remove (old position
//!   deletes, and rows matching equality deletes) are written as one position delete file.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use arrow_row::{RowConverter, SortField};
use arrow_schema::Schema as ArrowSchema;
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::io::FileIO;
use iceberg::scan::FileScanTask;
use iceberg::spec::{
    DEFAULT_SCHEMA_NAME_MAPPING, DataContentType, DataFile, DataFileFormat, FormatVersion, NameMapping, PartitionKey,
    PartitionSpec, SchemaRef,
};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator, FileNameGenerator, LocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use loch_api::optimizer::{InputFile, OutputFile, TaskInput, TaskOutput, TaskSummary, decode_file, encode_file};
use loch_table::parquet::ParallelParquetWriterBuilder;
use loch_table::position_delete::write_position_deletes;
use loch_table::snapshot::rewrite::{POSITION_DELETE_FILE_PATH_ID, POSITION_DELETE_POS_ID};
use loch_table::write::parquet_writer_properties;

use crate::equality::EqualityDeletes;
use crate::error::{ExecuteError, Result};
use crate::plain_read::PlainTarget;
use crate::position::DeletedPositions;
use crate::read_ahead::{Readers, ScanFile, iceberg_reader};
use crate::row_group_merge;

/// A data or delete file of the task, decoded.
#[derive(Debug, Clone)]
struct TaskFile {
    file: DataFile,
    spec: Arc<PartitionSpec>,
    deletes: Vec<usize>,
    /// Data sequence number: which equality deletes apply.
    sequence: i64,
}

/// The task input, decoded into Iceberg types.
struct Decoded {
    schema: SchemaRef,
    default_spec: Arc<PartitionSpec>,
    format_version: FormatVersion,
    io: FileIO,
    /// The table's `schema.name-mapping.default`, for files written without field ids.
    name_mapping: Option<Arc<NameMapping>>,
    rewrite: Vec<TaskFile>,
    reposition: Vec<TaskFile>,
    deletes: Vec<TaskFile>,
}

fn decode(input: &TaskInput) -> Result<Decoded> {
    let schema = Arc::new(input.schema.clone());
    let mut specs: HashMap<i32, Arc<PartitionSpec>> = HashMap::new();
    for spec in &input.partition_specs {
        let bound = spec.clone().bind(schema.clone())?;
        specs.insert(bound.spec_id(), Arc::new(bound));
    }
    let default_spec = specs
        .get(&input.default_spec_id)
        .cloned()
        .ok_or_else(|| ExecuteError::Input("the default partition spec is missing".into()))?;
    let format_version = input.format_version;
    let decode_files = |files: &[InputFile]| -> Result<Vec<TaskFile>> {
        files
            .iter()
            .map(|f| {
                let spec = specs
                    .get(&f.spec_id)
                    .cloned()
                    .ok_or_else(|| ExecuteError::Input(format!("partition spec {} is missing", f.spec_id)))?;
                let file = decode_file(&f.file, &spec, &schema)?;
                Ok(TaskFile { file, spec, deletes: f.deletes.clone(), sequence: f.data_sequence_number })
            })
            .collect()
    };
    // Loch's guarded storage: paths mean what they say, and a FIFO cannot hang the worker.
    let io = loch_table::io::file_io(input.storage.clone());
    let name_mapping = match input.properties.get(DEFAULT_SCHEMA_NAME_MAPPING) {
        Some(text) => Some(Arc::new(serde_json::from_str::<NameMapping>(text).map_err(|e| {
            ExecuteError::Input(format!("the table property {DEFAULT_SCHEMA_NAME_MAPPING} is not a name mapping: {e}"))
        })?)),
        None => None,
    };
    Ok(Decoded {
        name_mapping,
        rewrite: decode_files(&input.rewrite)?,
        reposition: decode_files(&input.reposition)?,
        deletes: decode_files(&input.deletes)?,
        schema,
        default_spec,
        format_version,
        io,
    })
}

/// The memory one rewrite task is built to stay within, for a table with `props`: the input
/// bytes its read-ahead may hold ([`crate::read_ahead::READ_BUDGET_BYTES`]) plus the one row
/// group its writer encodes before flushing (`write.parquet.row-group-size-bytes`).
pub fn task_memory_budget(props: &HashMap<String, String>) -> Result<u64> {
    let writer = parquet_writer_properties(props)?;
    let row_group = writer.max_row_group_bytes().unwrap_or(usize::MAX) as u64;
    Ok(crate::read_ahead::READ_BUDGET_BYTES.saturating_add(row_group))
}

/// Runs a task.
pub async fn execute(input: &TaskInput) -> Result<TaskOutput> {
    if let Some(keyed) = &input.keyed {
        return crate::keyed::execute_keyed(input, keyed).await;
    }
    let start = Instant::now();
    let task = decode(input)?;
    let mut summary = TaskSummary::default();
    for f in task.rewrite.iter().chain(&task.reposition).chain(&task.deletes) {
        summary.input_bytes += f.file.file_size_in_bytes();
    }
    let mut data_files = Vec::new();
    if !task.rewrite.is_empty() {
        let props: HashMap<String, String> = input.properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for file in rewrite(&task, input, &props, &mut summary).await? {
            summary.output_bytes += file.file_size_in_bytes();
            data_files.push(OutputFile {
                file: encode_file(file, &task.default_spec, &task.schema, task.format_version)?,
                spec_id: task.default_spec.spec_id(),
            });
        }
    }
    let mut delete_files = Vec::new();
    let from_position_deletes = position_deletes(&task, &task.reposition).await?;
    for (data, from_position_deletes) in task.reposition.iter().zip(from_position_deletes) {
        let positions = deleted_positions(&task, data, from_position_deletes).await?;
        if positions.is_empty() {
            continue;
        }
        summary.positions_written += positions.len() as u64;
        let file = write_position_deletes(
            &task.io,
            data.file.file_path(),
            &positions,
            data.file.partition().clone(),
            data.spec.spec_id(),
        )
        .await?;
        summary.output_bytes += file.file_size_in_bytes();
        delete_files.push(OutputFile {
            file: encode_file(file, &data.spec, &task.schema, task.format_version)?,
            spec_id: data.spec.spec_id(),
        });
    }
    summary.duration_ms = start.elapsed().as_millis() as u64;
    Ok(TaskOutput { data_files, delete_files, summary })
}

/// A scan task reading the whole `file` (no deletes: the executor applies them), projecting
/// `fields`; files without field ids (added by `add_files`, say) are mapped by the table's name
/// mapping.
fn scan_task(
    file: &TaskFile,
    schema: &SchemaRef,
    fields: Vec<i32>,
    name_mapping: Option<Arc<NameMapping>>,
) -> FileScanTask {
    FileScanTask {
        file_size_in_bytes: file.file.file_size_in_bytes(),
        start: 0,
        length: file.file.file_size_in_bytes(),
        record_count: Some(file.file.record_count()),
        data_file_path: file.file.file_path().to_string(),
        data_file_format: file.file.file_format(),
        schema: schema.clone(),
        project_field_ids: fields,
        predicate: None,
        deletes: Vec::new(),
        partition: Some(file.file.partition().clone()),
        partition_spec: Some(file.spec.clone()),
        name_mapping,
        case_sensitive: true,
    }
}

/// Streams the live rows of the rewrite files into new files of the target size.
async fn rewrite(
    task: &Decoded,
    input: &TaskInput,
    props: &HashMap<String, String>,
    summary: &mut TaskSummary,
) -> Result<Vec<DataFile>> {
    let first = &task.rewrite[0];
    if task
        .rewrite
        .iter()
        .any(|f| f.spec.spec_id() != task.default_spec.spec_id() || f.file.partition() != first.file.partition())
    {
        return Err(ExecuteError::Input("rewrite files must share one partition of the default spec".into()));
    }
    let fields: Vec<i32> = task.schema.as_struct().fields().iter().map(|f| f.id).collect();
    let target = Arc::new(schema_to_arrow_schema(&task.schema)?);
    let equality = equality_deletes(task, &target).await?;
    let positions = position_deletes(task, &task.rewrite).await?;
    let scans: Vec<ScanFile> = task
        .rewrite
        .iter()
        .zip(positions)
        .map(|(f, positions)| ScanFile {
            scan: scan_task(f, &task.schema, fields.clone(), task.name_mapping.clone()),
            positions: (!positions.is_empty()).then(|| Arc::new(DeletedPositions::new(positions))),
            equality: f
                .deletes
                .iter()
                .any(|&i| task.deletes[i].file.content_type() == DataContentType::EqualityDeletes)
                .then(|| (equality.clone(), f.sequence)),
        })
        .collect();
    let writer_props = parquet_writer_properties(props)?;
    let metadata = synthetic_metadata(task, input)?;
    let locations = DefaultLocationGenerator::new(&metadata)?;
    let names =
        DefaultFileNameGenerator::new(format!("opt-{}", uuid::Uuid::now_v7().simple()), None, DataFileFormat::Parquet);
    let key = (!task.default_spec.is_unpartitioned())
        .then(|| PartitionKey::new((*task.default_spec).clone(), task.schema.clone(), first.file.partition().clone()));
    if let Some(files) = merge_row_groups(task, input, props, &writer_props, summary, || {
        locations.generate_location(key.as_ref(), &names.generate_file_name())
    })
    .await?
    {
        return Ok(files);
    }

    // Files are read and decoded several at once on tasks of their own while the writer
    // encodes columns on others, so one task can use every core; memory stays bounded.
    let readers = Readers {
        io: task.io.clone(),
        plain: PlainTarget::new(fields.clone(), target.clone(), task.name_mapping.clone()),
    };
    let mut batches = crate::read_ahead::read_ahead(readers, scans, target);

    let rolling = RollingFileWriterBuilder::new(
        ParallelParquetWriterBuilder::new(writer_props, task.schema.clone()),
        usize::try_from(input.target_file_size).unwrap_or(usize::MAX),
        task.io.clone(),
        locations,
        names,
    );
    let mut writer = DataFileWriterBuilder::new(rolling).build(key).await?;
    while let Some(batch) = batches.try_next().await? {
        summary.rows_read += batch.num_rows() as u64;
        if batch.num_rows() > 0 {
            summary.rows_written += batch.num_rows() as u64;
            writer.write(batch).await?;
        }
    }
    Ok(writer.close().await?)
}

/// The keys of the equality deletes that apply to the rewrite files, each file read once.
/// Deletes on nested columns are refused: iceberg-rust 0.10's reader cannot apply them either
/// (its loader panics, "field not found"), and the rows must not come out with them unapplied.
async fn equality_deletes(task: &Decoded, target: &ArrowSchema) -> Result<Arc<EqualityDeletes>> {
    let referenced: BTreeSet<usize> = task.rewrite.iter().flat_map(|f| f.deletes.iter().copied()).collect();
    let mut deletes = EqualityDeletes::default();
    for index in referenced {
        let delete = &task.deletes[index];
        if delete.file.content_type() != DataContentType::EqualityDeletes {
            continue;
        }
        let ids = delete.file.equality_ids().unwrap_or_default();
        let Some(columns) = crate::equality::key_columns(target, &ids) else {
            return Err(ExecuteError::Input(format!(
                "{}: equality deletes on nested columns (field ids {ids:?}) are not supported",
                delete.file.file_path()
            )));
        };
        let scan = scan_task(delete, &task.schema, ids.clone(), task.name_mapping.clone());
        let mut stream = iceberg_reader(&task.io).read(Box::pin(futures::stream::iter([Ok(scan)])))?.stream();
        while let Some(batch) = stream.try_next().await? {
            deletes
                .add(target, &ids, &columns, &batch, delete.sequence)
                .map_err(|e| ExecuteError::Input(format!("equality deletes of {}: {e}", delete.file.file_path())))?;
        }
    }
    Ok(Arc::new(deletes))
}

/// Position delete files read at once.
const POSITION_DELETE_READS: usize = 4;

/// The positions that the position delete files of `files` delete, one list per file in
/// `files`' order (unsorted, possibly repeated). Each delete file is read once, however many of
/// the files it covers, keeping only their rows. Deletion vectors (Puffin) are refused:
/// iceberg-rust 0.10 cannot read them either.
async fn position_deletes(task: &Decoded, files: &[TaskFile]) -> Result<Vec<Vec<i64>>> {
    let mut users: BTreeMap<usize, HashMap<String, usize>> = BTreeMap::new();
    for (n, f) in files.iter().enumerate() {
        for &i in &f.deletes {
            let delete = &task.deletes[i];
            match (delete.file.content_type(), delete.file.file_format()) {
                (DataContentType::EqualityDeletes, _) => {}
                (DataContentType::PositionDeletes, DataFileFormat::Parquet) => {
                    users.entry(i).or_default().insert(f.file.file_path().to_string(), n);
                }
                (DataContentType::PositionDeletes, format) => {
                    return Err(ExecuteError::Input(format!(
                        "{}: position deletes in {format:?} files (deletion vectors) are not supported",
                        delete.file.file_path()
                    )));
                }
                (DataContentType::Data, _) => {
                    return Err(ExecuteError::Input(format!("{} is not a delete file", delete.file.file_path())));
                }
            }
        }
    }
    let reads =
        users.into_iter().map(|(index, paths)| async move { position_rows(task, &task.deletes[index], &paths).await });
    let mut positions = vec![Vec::new(); files.len()];
    let mut reads = futures::stream::iter(reads).buffered(POSITION_DELETE_READS);
    while let Some(rows) = reads.try_next().await? {
        for (n, pos) in rows {
            positions[n].push(pos);
        }
    }
    Ok(positions)
}

/// The task's files merged by copying row groups ([`crate::row_group_merge`]), when the table
/// turned that on, no delete applies and the files qualify; `None` when the rows must be
/// rewritten (nothing was written then).
async fn merge_row_groups(
    task: &Decoded,
    input: &TaskInput,
    props: &HashMap<String, String>,
    writer_props: &parquet::file::properties::WriterProperties,
    summary: &mut TaskSummary,
    next_location: impl FnMut() -> String,
) -> Result<Option<Vec<DataFile>>> {
    let enabled = match props.get(row_group_merge::ENABLED).map(|v| v.trim().to_ascii_lowercase()) {
        None => false,
        Some(v) => v.parse::<bool>().map_err(|_| {
            ExecuteError::Input(format!("the table property {} is not true or false: {v:?}", row_group_merge::ENABLED))
        })?,
    };
    let min_avg = match props.get(row_group_merge::MIN_AVG_ROW_GROUP_SIZE) {
        None => row_group_merge::MIN_AVG_ROW_GROUP_SIZE_DEFAULT,
        Some(v) => v.trim().parse::<u64>().map_err(|_| {
            ExecuteError::Input(format!(
                "the table property {} is not a byte count: {v:?}",
                row_group_merge::MIN_AVG_ROW_GROUP_SIZE
            ))
        })?,
    };
    if !enabled {
        return Ok(None);
    }
    let why_not = if task.format_version > FormatVersion::V2 {
        Some("format v3 tables carry row lineage".to_string())
    } else {
        task.rewrite.iter().find_map(|f| {
            if !f.deletes.is_empty() {
                Some(format!("deletes apply to {}", f.file.file_path()))
            } else if f.file.file_format() != DataFileFormat::Parquet {
                Some(format!("{} is not Parquet", f.file.file_path()))
            } else {
                None
            }
        })
    };
    let outcome = match why_not {
        Some(reason) => row_group_merge::Outcome::Declined(reason),
        None => {
            let files: Vec<&DataFile> = task.rewrite.iter().map(|f| &f.file).collect();
            let merge = row_group_merge::Merge {
                io: &task.io,
                schema: &task.schema,
                props: writer_props,
                target_size: input.target_file_size,
                min_avg_row_group_bytes: min_avg,
            };
            merge.run(&files, next_location).await?
        }
    };
    match outcome {
        row_group_merge::Outcome::Declined(reason) => {
            tracing::info!(table = %input.location, %reason, "row-group merge declined, rewriting rows");
            Ok(None)
        }
        row_group_merge::Outcome::Merged { files, rows, row_groups } => {
            tracing::info!(table = %input.location, row_groups, outputs = files.len(), "row-group merge: copied row groups undecoded");
            summary.rows_read += rows;
            summary.rows_written += rows;
            summary.row_groups_copied += row_groups;
            let partition = task.rewrite[0].file.partition().clone();
            let files = files
                .into_iter()
                .map(|mut builder| {
                    builder
                        .content(DataContentType::Data)
                        .partition(partition.clone())
                        .partition_spec_id(task.default_spec.spec_id())
                        .build()
                        .map_err(|e| ExecuteError::Input(format!("merged data file: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Some(files))
        }
    }
}

/// Table metadata standing in for the table where iceberg's writers need one (data location).
fn synthetic_metadata(task: &Decoded, input: &TaskInput) -> Result<iceberg::spec::TableMetadata> {
    let props: HashMap<String, String> = input
        .properties
        .iter()
        .filter(|(k, _)| k.starts_with("write.data.path") || k.starts_with("write.folder-storage.path"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(iceberg::spec::TableMetadataBuilder::new(
        (*task.schema).clone(),
        task.default_spec.clone().as_ref().clone().into_unbound(),
        iceberg::spec::SortOrder::unsorted_order(),
        input.location.clone(),
        task.format_version,
        props,
    )?
    .build()?
    .metadata)
}

/// Positions of `data` removed by its position deletes (`from_position_deletes`, read before)
/// and its equality deletes, ascending.
async fn deleted_positions(task: &Decoded, data: &TaskFile, from_position_deletes: Vec<i64>) -> Result<Vec<i64>> {
    let mut positions = BTreeSet::from_iter(from_position_deletes);
    let mut eq_groups: HashMap<Vec<i32>, Vec<&TaskFile>> = HashMap::new();
    for del in data.deletes.iter().map(|&i| &task.deletes[i]) {
        match del.file.content_type() {
            DataContentType::PositionDeletes => {}
            DataContentType::EqualityDeletes => {
                let ids = del.file.equality_ids().unwrap_or_default();
                eq_groups.entry(ids).or_default().push(del);
            }
            DataContentType::Data => {
                return Err(ExecuteError::Input(format!("{} is not a delete file", del.file.file_path())));
            }
        }
    }
    for (ids, deletes) in eq_groups {
        positions.extend(equality_deleted_positions(task, data, &ids, &deletes).await?);
    }
    Ok(positions.into_iter().collect())
}

/// The rows of the position delete file `delete` whose path is a key of `paths`, as (the
/// path's value in `paths`, position).
async fn position_rows(task: &Decoded, delete: &TaskFile, paths: &HashMap<String, usize>) -> Result<Vec<(usize, i64)>> {
    let schema = Arc::new(loch_table::position_delete::position_delete_schema()?);
    let mut scan = scan_task(delete, &schema, vec![POSITION_DELETE_FILE_PATH_ID, POSITION_DELETE_POS_ID], None);
    // The file holds no partition columns: its partition is not looked up in its schema.
    (scan.partition, scan.partition_spec) = (None, None);
    let mut batches = iceberg_reader(&task.io).read(Box::pin(futures::stream::iter([Ok(scan)])))?.stream();
    let mut out = Vec::new();
    while let Some(batch) = batches.try_next().await? {
        let paths_column = batch.column(0).as_any().downcast_ref::<StringArray>();
        let pos = batch.column(1).as_any().downcast_ref::<Int64Array>();
        let (Some(column), Some(pos)) = (paths_column, pos) else {
            return Err(ExecuteError::Input(format!("{} is not a position delete file", delete.file.file_path())));
        };
        for i in 0..batch.num_rows() {
            if let Some(&n) = paths.get(column.value(i)) {
                out.push((n, pos.value(i)));
            }
        }
    }
    Ok(out)
}

/// Positions of rows of `data` whose `ids` columns match a row of one of `deletes`.
async fn equality_deleted_positions(
    task: &Decoded,
    data: &TaskFile,
    ids: &[i32],
    deletes: &[&TaskFile],
) -> Result<Vec<i64>> {
    let read = |file: &TaskFile| scan_task(file, &task.schema, ids.to_vec(), task.name_mapping.clone());
    let delete_scans: Vec<iceberg::Result<FileScanTask>> = deletes.iter().map(|d| Ok(read(d))).collect();
    let delete_batches: Vec<RecordBatch> =
        iceberg_reader(&task.io).read(Box::pin(futures::stream::iter(delete_scans)))?.stream().try_collect().await?;
    let Some(first) = delete_batches.first() else { return Ok(Vec::new()) };
    let fields: Vec<SortField> =
        first.schema().fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
    let converter = RowConverter::new(fields).map_err(|e| ExecuteError::Input(format!("equality key: {e}")))?;
    let mut keys: HashSet<Vec<u8>> = HashSet::new();
    for batch in &delete_batches {
        let rows = converter
            .convert_columns(batch.columns())
            .map_err(|e| ExecuteError::Input(format!("equality key: {e}")))?;
        keys.extend(rows.iter().map(|r| r.as_ref().to_vec()));
    }
    // Rows of the data file in file order: the running count is the position.
    let mut stream = iceberg_reader(&task.io).read(Box::pin(futures::stream::iter([Ok(read(data))])))?.stream();
    let mut position = 0i64;
    let mut out = Vec::new();
    while let Some(batch) = stream.try_next().await? {
        let columns: Vec<Arc<dyn Array>> = batch.columns().to_vec();
        let rows =
            converter.convert_columns(&columns).map_err(|e| ExecuteError::Input(format!("equality key: {e}")))?;
        for (i, row) in rows.iter().enumerate() {
            if keys.contains(row.as_ref()) {
                out.push(position + i as i64);
            }
        }
        position += batch.num_rows() as i64;
    }
    Ok(out)
}
