//! Equality deletes applied by the executor rather than by iceberg's reader.
//!
//! iceberg-rust 0.10 turns every row of an equality delete file into a term of one predicate,
//! so each data batch is tested against every deleted key: the 51,000 keys a streaming upsert
//! left over 5 million rows took three minutes to compact. Here a task reads each of its
//! equality delete files once and keeps every key in a hash map with the newest sequence number
//! that deletes it; a data row is dropped when its key's number is above its file's data
//! sequence number (the rule of the Iceberg spec). A key of one integer column (the usual
//! primary key of a CDC stream) is kept as a number; other keys compare as Arrow rows. Either
//! way a null in a key column matches a null, as Iceberg's equality deletes require.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{ArrayRef, BooleanArray, RecordBatch};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{ArrowError, DataType, Schema as ArrowSchema};

/// Hashing of keys: a data row is looked up once per applying group, millions per task, and
/// the keys come from the table's own files.
type Hasher = foldhash::fast::RandomState;

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
    /// Each deleted key with the newest sequence number of a delete file holding it.
    keys: Keys,
}

/// Deleted keys of one group, each with the newest sequence number deleting it.
enum Keys {
    /// A key of one integer column, compared as a number.
    Integer(HashMap<Option<i64>, i64, Hasher>),
    /// Any other key, as Arrow rows.
    Rows(RowConverter, HashMap<Box<[u8]>, i64, Hasher>),
}

impl Keys {
    fn len(&self) -> usize {
        match self {
            Keys::Integer(keys) => keys.len(),
            Keys::Rows(_, keys) => keys.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Calls `f` with each value of `array` as an `i64`, when it is an integer column.
fn each_integer(array: &ArrayRef, mut f: impl FnMut(usize, Option<i64>)) -> bool {
    match array.data_type() {
        DataType::Int64 => array.as_primitive::<Int64Type>().iter().enumerate().for_each(|(i, v)| f(i, v)),
        DataType::Int32 => {
            array.as_primitive::<Int32Type>().iter().enumerate().for_each(|(i, v)| f(i, v.map(i64::from)))
        }
        _ => return false,
    }
    true
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
                let types: Vec<&DataType> = columns.iter().map(|&c| table.field(c).data_type()).collect();
                let keys = match types.as_slice() {
                    [DataType::Int64 | DataType::Int32] => Keys::Integer(HashMap::default()),
                    _ => {
                        let fields = types.into_iter().map(|t| SortField::new(t.clone())).collect();
                        Keys::Rows(RowConverter::new(fields)?, HashMap::default())
                    }
                };
                self.groups.push(Group { ids: ids.to_vec(), columns: columns.to_vec(), keys });
                self.groups.len() - 1
            }
        };
        let newest = |seen: &mut i64| *seen = (*seen).max(sequence);
        match &mut self.groups[index].keys {
            Keys::Integer(keys) => {
                let column = batch.columns().first().ok_or_else(|| ArrowError::SchemaError("no key column".into()))?;
                let integers = each_integer(column, |_, key| newest(keys.entry(key).or_insert(sequence)));
                if !integers {
                    return Err(ArrowError::SchemaError(format!("key column of type {}", column.data_type())));
                }
            }
            Keys::Rows(converter, keys) => {
                for row in converter.convert_columns(batch.columns())?.iter() {
                    newest(keys.entry(row.as_ref().into()).or_insert(sequence));
                }
            }
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
        let rows = batch.num_rows();
        let mut drop = |i: usize| keep.get_or_insert_with(|| vec![true; rows])[i] = false;
        let applies = |sequence: Option<&i64>| sequence.is_some_and(|&sequence| sequence > data_sequence);
        for group in &self.groups {
            let columns: Vec<_> = group.columns.iter().map(|&c| batch.column(c).clone()).collect();
            match &group.keys {
                Keys::Integer(keys) => {
                    let integers = each_integer(&columns[0], |i, key| {
                        if applies(keys.get(&key)) {
                            drop(i);
                        }
                    });
                    if !integers {
                        return Err(ArrowError::SchemaError(format!("key column of type {}", columns[0].data_type())));
                    }
                }
                Keys::Rows(converter, keys) => {
                    for (i, row) in converter.convert_columns(&columns)?.iter().enumerate() {
                        if applies(keys.get(row.as_ref())) {
                            drop(i);
                        }
                    }
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
        // A second group on the name column (compared as rows) applies beside the first.
        let names = RecordBatch::try_new(
            Arc::new(ArrowSchema::new(vec![table.field(1).clone()])),
            vec![Arc::new(StringArray::from(vec!["nSome(4)", "nSome(3)"]))],
        )
        .unwrap();
        deletes.add(&table, &[2], &key_columns(&table, &[2]).unwrap(), &names, 7).unwrap();
        assert_eq!(ids(&deletes.filter(batch.clone(), 1).unwrap()), Vec::<Option<i64>>::new());
        assert_eq!(ids(&deletes.filter(batch.clone(), 6).unwrap()), vec![Some(1), None]);
        assert_eq!(ids(&deletes.filter(batch, 7).unwrap()).len(), 3);
    }

    /// An `int` key is compared as a number too, nulls matching nulls.
    #[test]
    fn int_keys_match_as_numbers() {
        let field = Field::new("k", DataType::Int32, true)
            .with_metadata(Map::from([(PARQUET_FIELD_ID_META_KEY.to_string(), "1".to_string())]));
        let table = Arc::new(ArrowSchema::new(vec![field]));
        let batch = |values: Vec<Option<i32>>| {
            RecordBatch::try_new(table.clone(), vec![Arc::new(arrow_array::Int32Array::from(values))]).unwrap()
        };
        let mut deletes = EqualityDeletes::default();
        deletes.add(&table, &[1], &[0], &batch(vec![Some(-3), None]), 2).unwrap();
        let kept = deletes.filter(batch(vec![Some(-3), Some(3), None, Some(0)]), 1).unwrap();
        let column = kept.column(0).as_any().downcast_ref::<arrow_array::Int32Array>().unwrap();
        assert_eq!(column.iter().collect::<Vec<_>>(), vec![Some(3), Some(0)]);
    }
}
