//! Equality deletes applied by the executor rather than by iceberg's reader.
//!
//! iceberg-rust 0.10 turns every row of an equality delete file into a term of one predicate,
//! so each data batch is tested against every deleted key: the 51,000 keys a streaming upsert
//! left over 5 million rows took three minutes to compact. Here a task reads each of its
//! equality delete files once and keeps every key in a hash map with the newest sequence number
//! that deletes it; a data row is dropped when its key's number is above its file's data
//! sequence number (the rule of the Iceberg spec). Keys compare as Arrow rows, so a null in a
//! key column matches a null, as Iceberg's equality deletes require.

use std::collections::HashMap;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{ArrowError, Schema as ArrowSchema};

/// The equality deletes of one task, by the set of columns they compare.
#[derive(Default)]
pub struct EqualityDeletes {
    groups: Vec<Group>,
}

/// Deletes comparing one set of columns.
struct Group {
    ids: Vec<i32>,
    /// Positions of the key columns in the table's Arrow schema (and in conformed batches).
    columns: Vec<usize>,
    converter: RowConverter,
    /// Each deleted key with the newest sequence number of a delete file holding it.
    keys: HashMap<Box<[u8]>, i64>,
}

/// The top-level positions of `ids` in `table`, or `None` when one is not a top-level column
/// (such deletes stay with iceberg's reader).
pub fn key_columns(table: &ArrowSchema, ids: &[i32]) -> Option<Vec<usize>> {
    ids.iter()
        .map(|id| {
            table.fields().iter().position(|f| {
                f.metadata().get(parquet::arrow::PARQUET_FIELD_ID_META_KEY).and_then(|v| v.parse::<i32>().ok())
                    == Some(*id)
            })
        })
        .collect()
}

impl EqualityDeletes {
    /// Adds the rows of an equality delete file of sequence number `sequence` comparing `ids`
    /// (at `columns` of the table schema `table`); `batch` holds the key columns in `ids` order.
    pub fn add(
        &mut self,
        table: &ArrowSchema,
        ids: &[i32],
        columns: &[usize],
        batch: &RecordBatch,
        sequence: i64,
    ) -> Result<(), ArrowError> {
        let index = match self.groups.iter().position(|g| g.ids == ids) {
            Some(index) => index,
            None => {
                let fields = columns.iter().map(|&c| SortField::new(table.field(c).data_type().clone())).collect();
                self.groups.push(Group {
                    ids: ids.to_vec(),
                    columns: columns.to_vec(),
                    converter: RowConverter::new(fields)?,
                    keys: HashMap::new(),
                });
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[index];
        let rows = group.converter.convert_columns(batch.columns())?;
        for row in rows.iter() {
            let newest = group.keys.entry(row.as_ref().into()).or_insert(sequence);
            *newest = (*newest).max(sequence);
        }
        Ok(())
    }

    /// Whether no key was added.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.keys.is_empty())
    }

    /// The rows of `batch` (in the table schema, from a data file of data sequence number
    /// `data_sequence`) that no delete removes.
    pub fn filter(&self, batch: RecordBatch, data_sequence: i64) -> Result<RecordBatch, ArrowError> {
        let mut keep: Option<Vec<bool>> = None;
        for group in &self.groups {
            let columns: Vec<_> = group.columns.iter().map(|&c| batch.column(c).clone()).collect();
            let rows = group.converter.convert_columns(&columns)?;
            for (i, row) in rows.iter().enumerate() {
                if group.keys.get(row.as_ref()).is_some_and(|&sequence| sequence > data_sequence) {
                    keep.get_or_insert_with(|| vec![true; batch.num_rows()])[i] = false;
                }
            }
        }
        match keep {
            None => Ok(batch),
            Some(keep) => arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(keep)),
        }
    }
}

impl std::fmt::Debug for EqualityDeletes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<(&[i32], usize)> = self.groups.iter().map(|g| (g.ids.as_slice(), g.keys.len())).collect();
        f.debug_struct("EqualityDeletes").field("keys", &keys).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap as Map;
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field};
    use parquet::arrow::PARQUET_FIELD_ID_META_KEY;

    use super::*;

    fn table() -> ArrowSchema {
        let field = |id: i32, name: &str, ty: DataType| {
            Field::new(name, ty, true)
                .with_metadata(Map::from([(PARQUET_FIELD_ID_META_KEY.to_string(), id.to_string())]))
        };
        ArrowSchema::new(vec![field(1, "id", DataType::Int64), field(2, "name", DataType::Utf8)])
    }

    fn data(ids: Vec<Option<i64>>) -> RecordBatch {
        let names: Vec<String> = ids.iter().map(|i| format!("n{i:?}")).collect();
        RecordBatch::try_new(
            Arc::new(table()),
            vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names))],
        )
        .unwrap()
    }

    fn ids(batch: &RecordBatch) -> Vec<Option<i64>> {
        let column = batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        column.iter().collect()
    }

    /// A key deletes rows of files with a lower data sequence number only, the newest delete of
    /// a key counts, and a null key deletes null rows.
    #[test]
    fn keys_delete_older_rows_only() {
        let table = table();
        let columns = key_columns(&table, &[1]).unwrap();
        assert_eq!(columns, vec![0]);
        assert_eq!(key_columns(&table, &[7]), None);
        let keys = |values: Vec<Option<i64>>| {
            let schema = Arc::new(ArrowSchema::new(vec![table.field(0).clone()]));
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values))]).unwrap()
        };
        let mut deletes = EqualityDeletes::default();
        assert!(deletes.is_empty());
        deletes.add(&table, &[1], &columns, &keys(vec![Some(1), Some(2), None]), 5).unwrap();
        deletes.add(&table, &[1], &columns, &keys(vec![Some(2), Some(3)]), 9).unwrap();
        assert!(!deletes.is_empty());
        let batch = data(vec![Some(1), Some(2), Some(3), Some(4), None]);
        assert_eq!(ids(&deletes.filter(batch.clone(), 1).unwrap()), vec![Some(4)]);
        assert_eq!(ids(&deletes.filter(batch.clone(), 5).unwrap()), vec![Some(1), Some(4), None]);
        assert_eq!(ids(&deletes.filter(batch.clone(), 9).unwrap()).len(), 5);
    }
}
