//! A keyed table as a DataFusion table: a merge-on-read of its base and change stores with the
//! query's projection and filters pushed down, so a point lookup by key reads only the files
//! of the key's bucket and a filter on a partition column only that partition's files.
//!
//! Filters are pushed down as `Inexact`: DataFusion applies them again above the scan, so one
//! that only prunes (or does not convert to an Iceberg predicate at all) is still exact.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::TryStreamExt;
use iceberg::table::Table;
use loch_table::mixed::merge::{MergeRead, scan_merged};

use crate::scan::{exact_predicate, fmt_filter_limit, limited};

/// A keyed table's two stores at the snapshots they were loaded at, as a DataFusion table.
#[derive(Debug, Clone)]
pub struct KeyedTableProvider {
    base: Table,
    change: Table,
    primary_key: Vec<String>,
    schema: SchemaRef,
}

impl KeyedTableProvider {
    /// The table whose base store is `base` and change store `change`, keyed by `primary_key`.
    pub fn try_new(base: Table, change: Table, primary_key: Vec<String>) -> DFResult<Self> {
        let schema = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(base.metadata().current_schema())
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
        );
        Ok(Self { base, change, primary_key, schema })
    }
}

#[async_trait]
impl TableProvider for KeyedTableProvider {
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
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let output = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let columns = output.fields().iter().map(|f| f.name().clone()).collect();
        let filter = exact_predicate(filters, self.base.metadata().current_schema());
        Ok(Arc::new(KeyedScanExec {
            provider: self.clone(),
            read: MergeRead { columns: Some(columns), filter },
            limit,
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(output),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

/// The merge-on-read of a keyed table; its metrics count the files pruning left to read.
#[derive(Debug)]
pub struct KeyedScanExec {
    provider: KeyedTableProvider,
    read: MergeRead,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl KeyedScanExec {
    /// The columns and filter the scan reads with.
    pub fn read(&self) -> &MergeRead {
        &self.read
    }
}

impl DisplayAs for KeyedScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "KeyedScanExec: columns=[{}]", self.read.columns.as_deref().unwrap_or_default().join(", "))?;
        fmt_filter_limit(f, self.read.filter.as_ref(), self.limit)
    }
}

impl ExecutionPlan for KeyedScanExec {
    fn name(&self) -> &str {
        "KeyedScanExec"
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
        let p = &self.provider;
        let (base, change, key, read) = (p.base.clone(), p.change.clone(), p.primary_key.clone(), self.read.clone());
        let counters = [
            MetricBuilder::new(&self.metrics).counter("change_files", partition),
            MetricBuilder::new(&self.metrics).counter("change_files_read", partition),
            MetricBuilder::new(&self.metrics).counter("base_files_read", partition),
            MetricBuilder::new(&self.metrics).counter("skipped_by_bucket", partition),
        ];
        let external = |e: loch_table::TableError| DataFusionError::External(Box::new(e));
        let rows = futures::stream::once(async move {
            let merged = scan_merged(&base, &change, &key, &read).await.map_err(external)?;
            counters[0].add(merged.stats.change_files);
            counters[1].add(merged.stats.change_files_read);
            counters[2].add(merged.stats.base_files_read);
            counters[3].add(merged.stats.skipped_by_bucket);
            Ok::<_, DataFusionError>(merged.rows.map_err(external))
        })
        .try_flatten();
        let limited = limited(rows, self.limit);
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.properties.eq_properties.schema().clone(), limited)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}
