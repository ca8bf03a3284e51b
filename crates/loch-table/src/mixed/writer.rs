//! Writing a keyed table from Rust, one transaction per commit: inserts, updates, deletes and
//! upserts of Arrow batches are buffered (and flushed as change files past the buffer), then
//! committed to the change store as one snapshot whose sequence number is the transaction id.
//! How the snapshot reaches the catalog is the [`ChangeCommitter`]'s business (Loch's catalog
//! service under the table's lock; a test's local table), so the writer works for both.

use arrow_array::{Array, RecordBatch};
use async_trait::async_trait;
use iceberg::spec::DataFile;
use iceberg::table::Table;

use super::change::{ChangeOp, ChangeOptions, ChangeWriter};
use crate::error::{Result, TableError};

/// A committed transaction of a keyed table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The transaction: the change store's sequence number of the commit.
    pub transaction_id: i64,
    /// The change store's new snapshot.
    pub snapshot_id: i64,
}

/// Commits change files to a keyed table's change store as one snapshot, serialized with other
/// commits of the store so that commit order is transaction order.
#[async_trait]
pub trait ChangeCommitter: Send + Sync {
    /// What a failed commit says (the catalog's own errors, which a [`TableError`] converts to).
    type Error: From<TableError>;

    /// Commits `files` (all of one transaction) in one snapshot; if it fails for certain, it
    /// deletes them.
    async fn commit_files(&self, files: Vec<DataFile>) -> Result<Committed, Self::Error>;
}

/// Writes transactions of a keyed table (see the module documentation).
#[derive(Debug)]
pub struct KeyedTableWriter<C> {
    committer: C,
    writer: ChangeWriter,
    rows: u64,
}

impl<C: ChangeCommitter> KeyedTableWriter<C> {
    /// A writer of the keyed table whose change store is `change`, keyed by `primary_key`.
    pub fn new(change: &Table, primary_key: &[String], options: ChangeOptions, committer: C) -> Result<Self> {
        Ok(Self { committer, writer: ChangeWriter::new(change, primary_key, options)?, rows: 0 })
    }

    /// Rows given to this transaction so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Changes of any kind, one per row (`ops`, as Flink's row kinds).
    pub async fn apply(&mut self, rows: &RecordBatch, ops: &[ChangeOp]) -> Result<()> {
        self.writer.append(rows, ops).await?;
        self.rows += rows.num_rows() as u64;
        Ok(())
    }

    /// New rows (with `write.upsert.enabled`, each replaces its key's row).
    pub async fn insert(&mut self, rows: &RecordBatch) -> Result<()> {
        self.apply(rows, &vec![ChangeOp::Insert; rows.num_rows()]).await
    }

    /// Deletes the rows' keys.
    pub async fn delete(&mut self, rows: &RecordBatch) -> Result<()> {
        self.apply(rows, &vec![ChangeOp::Delete; rows.num_rows()]).await
    }

    /// Updates: row `i` of `before` becomes row `i` of `after` (an update-before and
    /// update-after pair each, as CDC readers see them).
    pub async fn update(&mut self, before: &RecordBatch, after: &RecordBatch) -> Result<()> {
        let pairs = interleave_pairs(before, after)?;
        let ops: Vec<ChangeOp> =
            (0..before.num_rows()).flat_map(|_| [ChangeOp::UpdateBefore, ChangeOp::UpdateAfter]).collect();
        self.writer.append(&pairs, &ops).await?;
        self.rows += after.num_rows() as u64;
        Ok(())
    }

    /// Inserts the rows, replacing whatever row their keys had, whatever the table's upsert
    /// setting: each becomes a delete of its key followed by its insert.
    pub async fn upsert(&mut self, rows: &RecordBatch) -> Result<()> {
        let pairs = interleave_pairs(rows, rows)?;
        let ops: Vec<ChangeOp> = (0..rows.num_rows()).flat_map(|_| [ChangeOp::Delete, ChangeOp::Insert]).collect();
        self.writer.append(&pairs, &ops).await?;
        self.rows += rows.num_rows() as u64;
        Ok(())
    }

    /// Writes what is buffered and commits the transaction; on failure the written files are
    /// deleted and nothing is committed (unless the commit's outcome is unknown).
    pub async fn commit(&mut self) -> Result<Committed, C::Error> {
        if self.rows == 0 {
            return Err(TableError::Invalid("the transaction holds no rows".into()).into());
        }
        let files = match self.writer.finish().await {
            Ok(files) => files,
            Err(e) => {
                self.abort().await;
                return Err(e.into());
            }
        };
        self.rows = 0;
        self.committer.commit_files(files).await
    }

    /// Abandons the transaction, deleting the files it wrote.
    pub async fn abort(&mut self) {
        self.writer.abort().await;
        self.rows = 0;
    }
}

/// `a[0], b[0], a[1], b[1], ...` of two batches of one schema and length.
fn interleave_pairs(a: &RecordBatch, b: &RecordBatch) -> Result<RecordBatch> {
    if a.num_rows() != b.num_rows() || a.schema() != b.schema() {
        return Err(TableError::Invalid(format!(
            "an update needs as many rows after ({}) as before ({}), of the same columns",
            b.num_rows(),
            a.num_rows()
        )));
    }
    let indices: Vec<(usize, usize)> = (0..a.num_rows()).flat_map(|i| [(0, i), (1, i)]).collect();
    let columns = (0..a.num_columns())
        .map(|c| {
            let arrays: [&dyn Array; 2] = [a.column(c).as_ref(), b.column(c).as_ref()];
            arrow_select::interleave::interleave(&arrays, &indices).map_err(|e| TableError::Invalid(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(a.schema(), columns).map_err(|e| TableError::Invalid(e.to_string()))
}
