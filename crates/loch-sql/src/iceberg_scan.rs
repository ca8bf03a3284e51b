//! An Iceberg table as a DataFusion table whose files are planned with the query and read on
//! every core.
//!
//! iceberg-datafusion's scan plans its files only when it runs and reads them all in one
//! partition: one core decodes a whole query's input, and the optimizer knows no sizes to pick
//! a join's build side. This scan plans when DataFusion plans (files pruned by the filters
//! that convert exactly, rows filtered by DataFusion), splits large files into byte ranges — a row group belongs to the
//! range holding its midpoint, as iceberg's reader splits — deals the pieces over the session's
//! target partitions by size, and reports the rows and bytes it will read.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::{ArrowReaderBuilder, schema_to_arrow_schema};
use iceberg::expr::Predicate;
use iceberg::scan::FileScanTask;
use iceberg::spec::DataFileFormat;
use iceberg::table::Table;

use crate::scan::{exact_predicate, fmt_filter_limit, limited};

/// Input below this size is read in one partition: splitting it costs more than it saves.
const PARALLEL_FROM_BYTES: u64 = 16 << 20;
/// Smallest byte range a file is split into.
const MIN_SPLIT_BYTES: u64 = 8 << 20;
/// Largest byte range a file is split into (Iceberg's `read.split.target-size`).
const MAX_SPLIT_BYTES: u64 = 128 << 20;

fn external(e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// An Iceberg table at its current snapshot, or at one snapshot (time travel), for DataFusion.
#[derive(Debug, Clone)]
pub struct IcebergTableProvider {
    table: Table,
    snapshot_id: Option<i64>,
    table_schema: iceberg::spec::SchemaRef,
    schema: SchemaRef,
}

impl IcebergTableProvider {
    /// `table` at its current snapshot, or at `snapshot_id` with that snapshot's schema.
    pub fn try_new(table: Table, snapshot_id: Option<i64>) -> DFResult<Self> {
        let metadata = table.metadata();
        let table_schema = match snapshot_id {
            Some(id) => {
                let snapshot = metadata.snapshot_by_id(id).ok_or_else(|| {
                    DataFusionError::Plan(format!("table {} has no snapshot {id}", table.identifier()))
                })?;
                snapshot.schema(metadata).map_err(external)?
            }
            None => metadata.current_schema().clone(),
        };
        let schema = Arc::new(schema_to_arrow_schema(&table_schema).map_err(external)?);
        Ok(Self { table, snapshot_id, table_schema, schema })
    }
}

#[async_trait]
impl TableProvider for IcebergTableProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let output = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let columns: Vec<String> = output.fields().iter().map(|f| f.name().clone()).collect();
        let filter = exact_predicate(filters, &self.table_schema);
        let mut tasks: Vec<FileScanTask> = match self.snapshot_id {
            // The current snapshot, read with the current schema (columns added since it
            // read as NULL).
            None => loch_table::scan::plan_current_schema(&self.table, &columns, filter.as_ref())
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
            // Time travel reads the snapshot with its own schema.
            Some(id) => {
                let mut builder = self.table.scan().select(columns.clone()).snapshot_id(id);
                if let Some(filter) = &filter {
                    builder = builder.with_filter(filter.clone());
                }
                builder
                    .build()
                    .map_err(external)?
                    .plan_files()
                    .await
                    .map_err(external)?
                    .try_collect()
                    .await
                    .map_err(external)?
            }
        };
        // The filter pruned files by their partitions and column bounds; within a file the rows
        // are filtered by DataFusion above the scan (every pushed filter is `Inexact`), which
        // vectorizes where iceberg's Parquet row filter decodes the predicate's columns twice:
        // TPC-H Q1 takes 0.49 s instead of 0.60 s (bench/README.md). Row groups are not pruned
        // within a file then, as in DataFusion's own Parquet scan without filter pushdown.
        for task in &mut tasks {
            task.predicate = None;
        }
        let rows: u64 = tasks.iter().filter_map(|t| t.record_count).sum();
        let bytes: u64 = tasks.iter().map(|t| t.length).sum();
        let target = state.config().target_partitions().max(1);
        let partitions = deal(split(tasks, bytes, target), bytes, target);
        let statistics = Statistics {
            num_rows: Precision::Inexact(usize::try_from(rows).unwrap_or(usize::MAX)),
            total_byte_size: Precision::Inexact(usize::try_from(bytes).unwrap_or(usize::MAX)),
            column_statistics: Statistics::unknown_column(&output),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(output),
            Partitioning::UnknownPartitioning(partitions.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(IcebergScanExec {
            table: self.table.clone(),
            columns,
            filter,
            partitions,
            limit,
            batch_size: state.config().batch_size(),
            statistics,
            properties,
        }))
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

/// The tasks with every large Parquet file cut into byte ranges of about `total / (2 × target)`
/// bytes (8–128 MiB), so that the pieces can be dealt evenly; nothing is cut when the whole
/// input is small.
fn split(tasks: Vec<FileScanTask>, total: u64, target: usize) -> Vec<FileScanTask> {
    if target <= 1 || total < PARALLEL_FROM_BYTES {
        return tasks;
    }
    let piece = (total / (2 * target as u64)).clamp(MIN_SPLIT_BYTES, MAX_SPLIT_BYTES);
    tasks.into_iter().flat_map(|task| cut(task, piece)).collect()
}

/// A Parquet file's task cut into contiguous byte ranges of about `piece` bytes (not cut when
/// it is under 1.5 pieces); each range reads the row groups whose midpoints it holds.
fn cut(task: FileScanTask, piece: u64) -> Vec<FileScanTask> {
    if task.data_file_format != DataFileFormat::Parquet || piece == 0 || task.length <= piece + piece / 2 {
        return vec![task];
    }
    let step = task.length.div_ceil(task.length.div_ceil(piece));
    let end = task.start + task.length;
    let mut pieces = Vec::new();
    let mut start = task.start;
    while start < end {
        let length = step.min(end - start);
        let record_count = task.record_count.map(|r| r.saturating_mul(length) / task.length);
        pieces.push(FileScanTask { start, length, record_count, ..task.clone() });
        start += length;
    }
    pieces
}

/// The pieces dealt over at most `target` partitions, largest first onto the lightest one; one
/// partition (in file order) when the input is small.
fn deal(mut tasks: Vec<FileScanTask>, total: u64, target: usize) -> Vec<Vec<FileScanTask>> {
    if target <= 1 || total < PARALLEL_FROM_BYTES || tasks.len() <= 1 {
        return vec![tasks];
    }
    tasks.sort_by_key(|t| std::cmp::Reverse(t.length));
    let mut partitions: Vec<(u64, Vec<FileScanTask>)> = vec![(0, Vec::new()); target.min(tasks.len())];
    for task in tasks {
        let Some(lightest) = partitions.iter_mut().min_by_key(|(bytes, _)| *bytes) else { break };
        lightest.0 += task.length;
        lightest.1.push(task);
    }
    partitions.into_iter().map(|(_, tasks)| tasks).collect()
}

/// Reads its partitions' pieces with iceberg's Arrow reader, which applies deletes and the
/// filter within each file.
#[derive(Debug)]
pub struct IcebergScanExec {
    table: Table,
    columns: Vec<String>,
    filter: Option<Predicate>,
    partitions: Vec<Vec<FileScanTask>>,
    limit: Option<usize>,
    batch_size: usize,
    statistics: Statistics,
    properties: Arc<PlanProperties>,
}

impl IcebergScanExec {
    /// How many pieces (files or byte ranges of files) each partition reads.
    pub fn pieces(&self) -> Vec<usize> {
        self.partitions.iter().map(Vec::len).collect()
    }
}

impl DisplayAs for IcebergScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "IcebergScanExec: columns=[{}], pieces={:?}", self.columns.join(", "), self.pieces())?;
        fmt_filter_limit(f, self.filter.as_ref(), self.limit)
    }
}

impl ExecutionPlan for IcebergScanExec {
    fn name(&self) -> &str {
        "IcebergScanExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DFResult<SendableRecordBatchStream> {
        let tasks = self
            .partitions
            .get(partition)
            .cloned()
            .ok_or_else(|| DataFusionError::Internal(format!("IcebergScanExec has no partition {partition}")))?;
        let reader = ArrowReaderBuilder::new(self.table.file_io().clone(), iceberg::Runtime::current())
            .with_data_file_concurrency_limit(1)
            .with_batch_size(self.batch_size)
            .build();
        let rows = reader
            .read(futures::stream::iter(tasks.into_iter().map(Ok)).boxed())
            .map_err(external)?
            .stream()
            .map_err(external);
        let schema = self.properties.eq_properties.schema().clone();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, limited(rows, self.limit))))
    }

    fn partition_statistics(&self, partition: Option<usize>) -> DFResult<Statistics> {
        match partition {
            None => Ok(self.statistics.clone()),
            Some(_) => Ok(Statistics::new_unknown(self.properties.eq_properties.schema())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use arrow_array::{Int64Array, RecordBatch};
    use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;

    const MB: u64 = 1 << 20;

    fn schema() -> iceberg::spec::SchemaRef {
        let id = NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long));
        Arc::new(Schema::builder().with_fields(vec![id.into()]).build().unwrap())
    }

    fn task(path: &str, length: u64, rows: u64) -> FileScanTask {
        FileScanTask {
            file_size_in_bytes: length,
            start: 0,
            length,
            record_count: Some(rows),
            data_file_path: path.into(),
            data_file_format: DataFileFormat::Parquet,
            schema: schema(),
            project_field_ids: vec![1],
            predicate: None,
            deletes: vec![],
            partition: None,
            partition_spec: None,
            name_mapping: None,
            case_sensitive: true,
        }
    }

    #[test]
    fn large_files_are_cut_into_contiguous_ranges_and_dealt_evenly() {
        let tasks = vec![task("a", 200 * MB, 2000), task("b", 10 * MB, 100), task("c", MB, 10)];
        let total = 211 * MB;
        let pieces = split(tasks, total, 2);
        let a: Vec<&FileScanTask> = pieces.iter().filter(|t| t.data_file_path == "a").collect();
        assert_eq!(a.len(), 4, "about total / 4 bytes each: {pieces:?}");
        let mut next = 0;
        for piece in &a {
            assert_eq!(piece.start, next, "contiguous");
            assert!(piece.length <= 53 * MB);
            next += piece.length;
        }
        assert_eq!(next, 200 * MB, "the whole file");
        let rows: u64 = a.iter().map(|p| p.record_count.unwrap()).sum();
        assert!((1996..=2000).contains(&rows), "{rows}");
        assert_eq!(pieces.iter().filter(|t| t.data_file_path != "a").count(), 2, "small files stay whole");

        let partitions = deal(pieces, total, 2);
        assert_eq!(partitions.len(), 2);
        let bytes: Vec<u64> = partitions.iter().map(|p| p.iter().map(|t| t.length).sum()).collect();
        assert_eq!(bytes.iter().sum::<u64>(), total);
        assert!(bytes[0].abs_diff(bytes[1]) <= 11 * MB, "{bytes:?}");

        // A small input stays one partition, in file order.
        let small = vec![task("x", 3 * MB, 1), task("y", 4 * MB, 1)];
        let partitions = deal(split(small, 7 * MB, 4), 7 * MB, 4);
        assert_eq!(partitions.len(), 1);
        let names: Vec<&str> = partitions[0].iter().map(|t| t.data_file_path.as_str()).collect();
        assert_eq!(names, ["x", "y"]);
        // Never more partitions than pieces.
        let two = vec![task("x", 30 * MB, 1), task("y", 30 * MB, 1)];
        assert_eq!(deal(two, 60 * MB, 8).len(), 2);
    }

    #[tokio::test]
    async fn the_ranges_of_a_file_read_each_row_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        let arrow = Arc::new(schema_to_arrow_schema(&schema()).unwrap());
        let props = WriterProperties::builder().set_max_row_group_row_count(Some(1000)).build();
        let mut writer = ArrowWriter::try_new(File::create(&path).unwrap(), arrow.clone(), Some(props)).unwrap();
        let ids = Arc::new(Int64Array::from_iter_values(0..5000));
        writer.write(&RecordBatch::try_new(arrow, vec![ids]).unwrap()).unwrap();
        assert_eq!(writer.close().unwrap().row_groups().len(), 5);
        let length = std::fs::metadata(&path).unwrap().len();
        let io = loch_table::io::file_io(Vec::<(String, String)>::new());
        let pieces = cut(task(&format!("file://{}", path.display()), length, 5000), length.div_ceil(3));
        assert_eq!(pieces.len(), 3);
        let mut read = Vec::new();
        for piece in pieces {
            let reader = ArrowReaderBuilder::new(io.clone(), iceberg::Runtime::current()).build();
            let batches: Vec<RecordBatch> =
                reader.read(futures::stream::iter([Ok(piece)]).boxed()).unwrap().stream().try_collect().await.unwrap();
            let rows: Vec<i64> = batches
                .iter()
                .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
                .collect();
            assert!(!rows.is_empty(), "each range holds a row group's midpoint");
            read.extend(rows);
        }
        read.sort_unstable();
        assert_eq!(read, (0..5000).collect::<Vec<i64>>());
    }
}
