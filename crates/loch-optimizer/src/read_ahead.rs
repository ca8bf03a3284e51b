//! Reading a task's files ahead of its writer, several at once.
//!
//! Streaming engines leave thousands of tiny files; read one after another, each file's footer
//! read, schema mapping and decode run on one core while the writer waits. Here every file is
//! read by a tokio task of its own, up to [`FILES_AHEAD`] files at once, each decoding at most
//! [`BATCHES_PER_FILE`] batches ahead. Memory is bounded per task, not per file: files start
//! only while the bytes of the files being read fit [`READ_BUDGET_BYTES`] (one file always
//! may), since a reader holds a row group's column chunks. The output keeps the input's order
//! of files and rows.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Schema as ArrowSchema;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, future};
use iceberg::Runtime;
use iceberg::arrow::{ArrowReader, ArrowReaderBuilder};
use iceberg::io::FileIO;
use iceberg::scan::FileScanTask;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::equality::EqualityDeletes;
use crate::plain_read::PlainTarget;
use crate::position::{DeletedPositions, PositionFilter};

/// Files read beyond the one the writer takes batches from.
pub const FILES_AHEAD: usize = 6;
/// Batches one file may hold decoded before the writer takes them.
pub const BATCHES_PER_FILE: usize = 2;
/// Bytes of input files being read at once by one task (a larger file takes all of it).
pub const READ_BUDGET_BYTES: u64 = 256 << 20;

/// How one task's files are read: iceberg's reader and, for small files that hold exactly the
/// table's columns, a plain read of the whole file ([`crate::plain_read`]).
#[derive(Clone)]
pub struct Readers {
    /// Storage, for both reads.
    pub io: FileIO,
    /// What plain reads check files against; `None` turns them off.
    pub plain: Option<PlainTarget>,
}

/// iceberg's reader for one file, which the executor gives no deletes ([`crate::position`]
/// says why).
pub fn iceberg_reader(io: &FileIO) -> ArrowReader {
    ArrowReaderBuilder::new(io.clone(), Runtime::current())
        .with_data_file_concurrency_limit(2)
        .with_batch_size(8192)
        .build()
}

/// One file to read: iceberg's scan of it (without deletes) and the position and equality
/// deletes the executor applies itself ([`crate::position`], [`crate::equality`]), positions
/// first since they count the file's rows.
pub struct ScanFile {
    /// The scan of the file.
    pub scan: FileScanTask,
    /// Deleted positions of the file.
    pub positions: Option<Arc<DeletedPositions>>,
    /// Equality deletes to apply, with the file's data sequence number.
    pub equality: Option<(Arc<EqualityDeletes>, i64)>,
}

/// The rows of `scans`, in order, conformed to `target`; each file is read and decoded on its
/// own tokio task.
pub fn read_ahead(
    readers: Readers,
    scans: Vec<ScanFile>,
    target: Arc<ArrowSchema>,
) -> BoxStream<'static, iceberg::Result<RecordBatch>> {
    // Permits are KiB of input, taken in file order (so the file being written always has
    // its share) before the file's reader starts; a file's reader holds them until it ends.
    let budget = Arc::new(Semaphore::new(kib(READ_BUDGET_BYTES) as usize));
    stream::iter(scans)
        .then(move |scan| {
            let budget = budget.clone();
            async move {
                let share = kib(scan.scan.file_size_in_bytes).min(kib(READ_BUDGET_BYTES));
                (budget.acquire_many_owned(share).await.ok(), scan)
            }
        })
        .map(move |(permit, scan)| future::ready(FileReader::spawn(readers.clone(), scan, target.clone(), permit)))
        .buffered(FILES_AHEAD)
        .flat_map(|file| stream::unfold(file, |mut file| async move { file.batches.recv().await.map(|b| (b, file)) }))
        .boxed()
}

/// One file being read on its own task; dropping it stops the task (e.g. when writing failed).
struct FileReader {
    batches: mpsc::Receiver<iceberg::Result<RecordBatch>>,
    task: tokio::task::AbortHandle,
}

impl FileReader {
    fn spawn(readers: Readers, file: ScanFile, target: Arc<ArrowSchema>, permit: Option<OwnedSemaphorePermit>) -> Self {
        let (tx, batches) = mpsc::channel(BATCHES_PER_FILE);
        let ScanFile { scan, positions, equality } = file;
        let mut positions = positions.map(PositionFilter::new);
        let mut deletes = move |batch: RecordBatch| {
            let batch = match positions.as_mut() {
                None => batch,
                Some(filter) => filter.apply(batch).map_err(|e| {
                    iceberg::Error::new(iceberg::ErrorKind::DataInvalid, format!("position deletes: {e}"))
                })?,
            };
            match &equality {
                None => Ok(batch),
                Some((deletes, sequence)) => deletes.filter(batch, *sequence).map_err(|e| {
                    iceberg::Error::new(iceberg::ErrorKind::DataInvalid, format!("equality deletes: {e}"))
                }),
            }
        };
        let task = tokio::spawn(async move {
            let _permit = permit;
            if let Some(plain) = readers.plain.as_ref().filter(|p| p.accepts(&scan)) {
                match read_plain(&readers.io, plain, &scan, &tx, &mut deletes).await {
                    Plain::Done => return,
                    Plain::Declined => {}
                }
            }
            let mut stream = match iceberg_reader(&readers.io).read(Box::pin(stream::iter([Ok(scan)]))) {
                Ok(result) => result.stream(),
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            while let Some(item) = stream.next().await {
                let item = item
                    .and_then(|batch| {
                        loch_table::scan::conform(batch, &target)
                            .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e.to_string()))
                    })
                    .and_then(&mut deletes);
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        })
        .abort_handle();
        Self { batches, task }
    }
}

/// How a plain read ended.
enum Plain {
    /// Every batch (or the error) was sent.
    Done,
    /// The file is not plainly readable; nothing was sent.
    Declined,
}

/// Reads `scan`'s file whole and sends its batches, unless its columns need iceberg's mapping.
async fn read_plain(
    io: &FileIO,
    plain: &PlainTarget,
    scan: &FileScanTask,
    tx: &mpsc::Sender<iceberg::Result<RecordBatch>>,
    deletes: &mut impl FnMut(RecordBatch) -> iceberg::Result<RecordBatch>,
) -> Plain {
    let bytes = match crate::plain_read::read_whole(io, scan).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return Plain::Done;
        }
    };
    let Some(reader) = plain.open(bytes) else { return Plain::Declined };
    for batch in reader {
        let item = batch
            .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, format!("{}: {e}", scan.data_file_path)))
            .and_then(|b| plain.relabel(b))
            .and_then(&mut *deletes);
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            break;
        }
    }
    Plain::Done
}

impl Drop for FileReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `bytes` in KiB, rounded up (at least 1).
fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX)
}
