//! Position deletes applied by the executor rather than by iceberg's reader.
//!
//! iceberg-rust 0.10 loads a position delete file once for all clones of a reader, and a
//! reader that finds the file being loaded by another waits on a `Notify` it may subscribe to
//! only after the load finished: the wake-up is lost and the task hangs for good
//! (apache/iceberg-rust#2859), which a compaction of many files sharing delete files met under
//! load. Here a task reads each of its position delete files once, keeps the deleted positions
//! of each data file, and drops them from the file's rows as they stream by: files are read
//! whole and in order, so a running count of rows is the position. A file whose deletes are all
//! applied here also qualifies for the plain read ([`crate::plain_read`]).

use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::ArrowError;

/// The deleted positions of one data file, ascending and distinct.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeletedPositions {
    sorted: Vec<i64>,
}

impl DeletedPositions {
    /// The positions `positions` in any order, repeats allowed (several delete files may
    /// delete one row).
    pub fn new(mut positions: Vec<i64>) -> Self {
        positions.sort_unstable();
        positions.dedup();
        Self { sorted: positions }
    }

    /// How many positions are deleted.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether no position is deleted.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
}

/// Drops deleted positions from one file's batches, fed in file order.
pub struct PositionFilter {
    positions: Arc<DeletedPositions>,
    /// Index of the first position not yet passed.
    next: usize,
    /// Position of the next batch's first row.
    offset: i64,
}

impl PositionFilter {
    /// A filter for a file read from its first row.
    pub fn new(positions: Arc<DeletedPositions>) -> Self {
        Self { positions, next: 0, offset: 0 }
    }

    /// `batch` (the file's rows after those already fed) without its deleted rows.
    pub fn apply(&mut self, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
        let sorted = &self.positions.sorted;
        let start = self.offset;
        let end = start + batch.num_rows() as i64;
        self.offset = end;
        // Negative positions delete nothing; they are passed over with the rest.
        let first = self.next + sorted[self.next..].partition_point(|&p| p < start);
        let last = first + sorted[first..].partition_point(|&p| p < end);
        self.next = last;
        if first == last {
            return Ok(batch);
        }
        let mut keep = vec![true; batch.num_rows()];
        for &position in &sorted[first..last] {
            // In range by construction: start <= position < end.
            keep[(position - start) as usize] = false;
        }
        arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(keep))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Array, Int64Array, RecordBatch};

    use super::{DeletedPositions, PositionFilter};

    fn batch(range: std::ops::Range<i64>) -> RecordBatch {
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from_iter_values(range)) as Arc<dyn Array>)]).unwrap()
    }

    fn values(batch: &RecordBatch) -> Vec<i64> {
        batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()
    }

    #[test]
    fn positions_are_counted_across_batches() {
        let positions = Arc::new(DeletedPositions::new(vec![9, 0, 3, 3, 4, 10, -1, 25]));
        assert_eq!(positions.len(), 7);
        let mut filter = PositionFilter::new(positions);
        // Rows hold their own position as value: what survives is what was not deleted.
        let mut kept = Vec::new();
        for range in [0..4, 4..5, 5..9, 9..20, 20..21] {
            kept.extend(values(&filter.apply(batch(range)).unwrap()));
        }
        let expected: Vec<i64> = (0..21).filter(|p| ![0, 3, 4, 9, 10].contains(p)).collect();
        assert_eq!(kept, expected);
    }

    #[test]
    fn empty_batches_and_no_positions_pass_through() {
        let mut filter = PositionFilter::new(Arc::new(DeletedPositions::default()));
        assert_eq!(values(&filter.apply(batch(0..3)).unwrap()), vec![0, 1, 2]);
        let mut filter = PositionFilter::new(Arc::new(DeletedPositions::new(vec![0])));
        assert_eq!(filter.apply(batch(0..0)).unwrap().num_rows(), 0);
        assert_eq!(values(&filter.apply(batch(0..2)).unwrap()), vec![1]);
    }
}
