//! `DELETE`, `UPDATE` and the matched rows of `MERGE`.
//!
//! - Iceberg tables (merge-on-read, as Iceberg's v2 row-level operations): each data file's live
//!   rows are matched against the `WHERE` clause (or `MERGE`'s source) with their positions in
//!   the file; the matches become one position delete file per data file, and the rows changed
//!   rather than deleted new data files, all in one row-delta snapshot that asserts the branch
//!   head it read (a concurrent commit fails it rather than letting it delete from files that
//!   changed).
//! - Keyed tables: the matching rows are written to the change store as deletes (`-D`), or as
//!   update pairs (`-U`, `+U`), in one transaction.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::{BooleanArray, Int64Array, RecordBatch};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, Field, Schema as ArrowSchema};
use datafusion::catalog::MemTable;
use datafusion::execution::context::SessionContext;
use iceberg::scan::FileScanTask;
use iceberg::table::Table;
use loch_table::position_delete::write_position_deletes;
use loch_table::scan::read_task;
use loch_table::snapshot::RowDelta;

use crate::backend::{Backend, TableRef};
use crate::error::{Result, SqlError};
use crate::write;

/// Name under which one data file's rows are queried.
pub const FILE_ROWS: &str = "__loch_file_rows";
/// Column holding a row's position in its data file.
pub const POSITION: &str = "__loch_pos";
/// Column of a row-level query saying whether a changed row is written anew (`UPDATE`) or
/// only deleted.
pub const KEEP: &str = "__loch_keep";

/// What an `UPDATE` sets: for each table column, the SQL of its new value (`None`: unchanged).
pub type Assignments = Vec<Option<String>>;

/// The live rows of one data file with their positions in it: the file read whole, and read with
/// its deletes applied by Iceberg's reader; the second is a subsequence of the first, and lining
/// them up gives each live row its position.
async fn live_rows_with_positions(
    table: &Table,
    arrow: &arrow_schema::SchemaRef,
    task: &FileScanTask,
) -> Result<Option<RecordBatch>> {
    let mut whole = task.clone();
    whole.start = 0;
    whole.length = whole.file_size_in_bytes;
    whole.predicate = None;
    let mut with_deletes = whole.clone();
    whole.deletes = Vec::new();
    let all = read_task(table.file_io(), whole).await?;
    let all = concat(arrow, &all)?;
    if all.num_rows() == 0 {
        return Ok(None);
    }
    let (live, positions) = if with_deletes.deletes.is_empty() {
        let positions: Vec<i64> = (0..all.num_rows() as i64).collect();
        (all, positions)
    } else {
        with_deletes.predicate = None;
        let live = read_task(table.file_io(), with_deletes).await?;
        let live = concat(arrow, &live)?;
        let positions = align(&all, &live)?;
        (live, positions)
    };
    if live.num_rows() == 0 {
        return Ok(None);
    }
    let mut fields: Vec<Field> = live.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(POSITION, DataType::Int64, false));
    let mut columns = live.columns().to_vec();
    columns.push(Arc::new(Int64Array::from(positions)));
    Ok(Some(RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns)?))
}

fn concat(schema: &arrow_schema::SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    let batches: Vec<RecordBatch> = batches.iter().map(|b| write::conform(b, schema)).collect::<Result<_>>()?;
    Ok(arrow_select::concat::concat_batches(schema, &batches)?)
}

/// Positions in `all` of the rows of `live`, a subsequence of it (greedy: identical rows are
/// interchangeable, so any embedding deletes the same content).
fn align(all: &RecordBatch, live: &RecordBatch) -> Result<Vec<i64>> {
    let fields = all.schema().fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
    let converter = RowConverter::new(fields)?;
    let all_rows = converter.convert_columns(all.columns())?;
    let live_rows = converter.convert_columns(live.columns())?;
    let mut positions = Vec::with_capacity(live.num_rows());
    let mut i = 0usize;
    for row in live_rows.iter() {
        while i < all_rows.num_rows() && all_rows.row(i) != row {
            i += 1;
        }
        if i == all_rows.num_rows() {
            return Err(SqlError::invalid(
                "a live row is missing from its data file (the reader disagrees with itself)",
            ));
        }
        positions.push(i as i64);
        i += 1;
    }
    Ok(positions)
}

/// The per-file query of `DELETE` (`assignments` = `None`) or `UPDATE` (see
/// [`iceberg_row_level`]): the rows matching `selection` go, and with `assignments` come back
/// with their new values.
pub fn row_query(table: &Table, alias: &str, selection: Option<&str>, assignments: Option<&Assignments>) -> String {
    let schema = table.metadata().current_schema();
    let columns: Vec<String> = schema.as_struct().fields().iter().map(|f| f.name.clone()).collect();
    let projection = match assignments {
        None => format!("{POSITION}, false AS {KEEP}"),
        Some(values) => {
            let mut items = vec![POSITION.to_string(), format!("true AS {KEEP}")];
            for (column, value) in columns.iter().zip(values) {
                let quoted = crate::ddl::quote(column);
                items.push(match value {
                    Some(sql) => format!("{sql} AS {quoted}"),
                    None => quoted,
                });
            }
            items.join(", ")
        }
    };
    let filter = selection.map(|s| format!(" WHERE {s}")).unwrap_or_default();
    format!("SELECT {projection} FROM {FILE_ROWS} AS {}{filter}", crate::ddl::quote(alias))
}

/// Runs `statement`, a row-level change (`DELETE`, `UPDATE`, `MERGE`), on an Iceberg table: `query` runs over
/// each data file's live rows (as [`FILE_ROWS`], with [`POSITION`]) and answers `POSITION`,
/// [`KEEP`] and, where `KEEP` is true, every table column's new value. Each position it names
/// is deleted, each kept row written anew, and `inserts` added, all in one row-delta snapshot;
/// the rows changed (deleted or rewritten), not counting `inserts`. A position named twice (a
/// `MERGE` whose source matches a row twice) fails the statement.
pub async fn iceberg_row_level(
    backend: &dyn Backend,
    table_ref: &TableRef,
    table: &Table,
    ctx: &SessionContext,
    statement: &str,
    query: &str,
    inserts: Vec<RecordBatch>,
) -> Result<u64> {
    match table.metadata().format_version() {
        iceberg::spec::FormatVersion::V2 => {}
        iceberg::spec::FormatVersion::V1 => {
            return Err(SqlError::invalid(format!(
                "{statement} needs position deletes, which table {} cannot hold: it is format-version 1; upgrade it with ALTER TABLE ... SET TBLPROPERTIES ('format-version' = '2')",
                table.identifier()
            )));
        }
        other => {
            return Err(SqlError::invalid(format!(
                "{statement} on table {} (format-version {}) needs deletion vectors, which Loch does not write yet",
                table.identifier(),
                other as u8
            )));
        }
    }
    let columns: Vec<String> =
        table.metadata().current_schema().as_struct().fields().iter().map(|f| f.name.clone()).collect();
    let tasks: Vec<FileScanTask> = loch_table::scan::plan_current_schema(table, &columns, None).await?;
    let target = write::table_arrow_schema(table)?;

    let mut delta = RowDelta::new();
    let mut written = Vec::new();
    let mut new_rows = inserts;
    let mut changed = 0u64;
    let result: Result<()> = async {
        for task in &tasks {
            let Some(rows) = live_rows_with_positions(table, &target, task).await? else { continue };
            let _ = ctx.deregister_table(FILE_ROWS)?;
            ctx.register_table(FILE_ROWS, Arc::new(MemTable::try_new(rows.schema(), vec![vec![rows]])?))?;
            let matched: Vec<RecordBatch> = ctx.sql(query).await?.collect().await?;
            let mut positions = BTreeSet::new();
            for batch in matched.iter().filter(|b| b.num_rows() > 0) {
                let column = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(|| SqlError::invalid("row positions are not 64-bit integers"))?;
                for position in column.values().iter().copied() {
                    if !positions.insert(position) {
                        return Err(SqlError::invalid(format!(
                            "{statement} matched a row of {} with more than one source row",
                            table.identifier()
                        )));
                    }
                }
                let keep = batch
                    .column(1)
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| SqlError::invalid("the keep flags are not booleans"))?;
                if batch.num_columns() > 2 && keep.true_count() > 0 {
                    let kept = arrow_select::filter::filter_record_batch(batch, keep)?;
                    let values = kept.project(&(2..kept.num_columns()).collect::<Vec<_>>())?;
                    new_rows.push(write::conform(&values, &target)?);
                }
            }
            if positions.is_empty() {
                continue;
            }
            changed += positions.len() as u64;
            let positions: Vec<i64> = positions.into_iter().collect();
            let spec_id = task.partition_spec.as_ref().map_or(0, |s| s.spec_id());
            let partition = task.partition.clone().unwrap_or_else(iceberg::spec::Struct::empty);
            let file =
                write_position_deletes(table.file_io(), &task.data_file_path, &positions, partition, spec_id).await?;
            written.push(file.clone());
            delta = std::mem::take(&mut delta).add_deletes(file);
        }
        let _ = ctx.deregister_table(FILE_ROWS)?;
        new_rows.retain(|b| b.num_rows() > 0);
        if changed == 0 && new_rows.is_empty() {
            return Ok(());
        }
        if !new_rows.is_empty() {
            let stream = futures::stream::iter(new_rows.drain(..).map(Ok));
            let (files, _) = write::write_data_files(table, stream).await?;
            for f in files {
                written.push(f.clone());
                delta = std::mem::take(&mut delta).add_rows(f);
            }
        }
        write::commit(backend, table_ref, table, std::mem::take(&mut delta)).await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        write::delete_files(table, &written).await;
        return Err(e);
    }
    Ok(changed)
}
