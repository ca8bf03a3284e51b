//! What the table scans (Iceberg and keyed) share: which of a query's filters go down into
//! them, and stopping at a limit. The scans filter rows by what they are given, and DataFusion
//! applies every filter again above them (they are pushed down as `Inexact`), so a filter left
//! out only prunes less; one that went down wrongly would lose rows.

use arrow_array::RecordBatch;
use datafusion::common::tree_node::TreeNode;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::Expr;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use iceberg::expr::{Bind, Predicate};
use iceberg::spec::SchemaRef;
use iceberg_datafusion::physical_plan::convert_filters_to_predicate;

/// The conjunction of the filters that convert exactly to an Iceberg predicate on `schema`.
/// Each filter converts on its own, so one that does not convert leaves the others; none goes
/// through a cast (the converter drops casts: `CAST(id AS VARCHAR) < '5'` would become
/// `id < 5`), and none whose literal does not fit its column.
pub(crate) fn exact_predicate(filters: &[Expr], schema: &SchemaRef) -> Option<Predicate> {
    filters
        .iter()
        .filter(|f| !f.exists(|e| Ok(matches!(e, Expr::Cast(_) | Expr::TryCast(_)))).unwrap_or(true))
        .filter_map(|f| convert_filters_to_predicate(std::slice::from_ref(f)))
        .filter(|p| p.bind(schema.clone(), true).is_ok())
        .reduce(Predicate::and)
}

/// `rows` cut at `limit` rows; once it is reached no more is read (the files left are not
/// opened), and an error ends the stream.
pub(crate) fn limited(
    rows: impl Stream<Item = DFResult<RecordBatch>> + Send + 'static,
    limit: Option<usize>,
) -> BoxStream<'static, DFResult<RecordBatch>> {
    let Some(mut remaining) = limit else { return rows.boxed() };
    rows.map_ok(move |batch| {
        let rows = batch.num_rows().min(remaining);
        remaining -= rows;
        (batch.slice(0, rows), remaining == 0)
    })
    .scan(false, |done, item| {
        let next = match item {
            _ if *done => None,
            Ok((batch, last)) => {
                *done = last;
                Some(Ok(batch))
            }
            Err(e) => {
                *done = true;
                Some(Err(e))
            }
        };
        futures::future::ready(next)
    })
    .boxed()
}

/// The `, filter=…, limit=…` tail of a scan's one-line `EXPLAIN` text.
pub(crate) fn fmt_filter_limit(
    f: &mut std::fmt::Formatter,
    filter: Option<&Predicate>,
    limit: Option<usize>,
) -> std::fmt::Result {
    if let Some(filter) = filter {
        write!(f, ", filter={filter}")?;
    }
    if let Some(limit) = limit {
        write!(f, ", limit={limit}")?;
    }
    Ok(())
}
