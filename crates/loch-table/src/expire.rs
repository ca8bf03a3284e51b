//! Snapshot expiry: which snapshots and refs go (iceberg's own `ExpireSnapshotsAction`, which
//! follows Java's `RemoveSnapshots`: per-branch retention, aged-out refs, tags, unreferenced
//! snapshots), as a change for Loch's commit path, and which files only the expired snapshots
//! reached.
//!
//! Finding those files reads the manifest lists of both versions and the manifests that only
//! expired snapshots use; the retained manifests are then streamed against the candidates a batch
//! at a time, so memory grows with the manifests and one batch, not with the table's files.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt, stream};
use iceberg::io::FileIO;
use iceberg::spec::{ManifestFile, ManifestStatus, TableMetadataBuilder, TableMetadataRef};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{
    Catalog, ErrorKind, Namespace, NamespaceIdent, TableCommit, TableCreation, TableIdent, TableRequirement,
    TableUpdate,
};

use crate::error::Result;
use crate::scan::manifests;

/// Candidate content files checked against the retained manifests at a time: bounds memory
/// (about 100 bytes each) at the cost of one more pass over the retained manifests per batch.
pub const CANDIDATE_BATCH: usize = 20_000;

/// Manifests read at once.
const READ_CONCURRENCY: usize = 8;

/// What an expiry removes from a table's metadata.
#[derive(Debug, Clone)]
pub struct ExpireChange {
    /// Assertions the commit makes (the table and its `main` head are as read).
    pub requirements: Vec<TableRequirement>,
    /// The removals.
    pub updates: Vec<TableUpdate>,
    /// The snapshots removed, ascending.
    pub expired_snapshots: Vec<i64>,
    /// The refs removed (aged-out branches and tags).
    pub removed_refs: Vec<String>,
    /// The metadata once the change applies (for a dry run, or to find the files to delete).
    pub after: TableMetadataRef,
}

/// Plans an expiry of `table`: snapshots older than `older_than_ms`, beyond the `retain_last`
/// newest of each branch, unless a ref or a branch's own retention keeps them. `None` when
/// nothing would be removed.
pub async fn plan_expiry(table: &Table, older_than_ms: i64, retain_last: usize) -> Result<Option<ExpireChange>> {
    let tx = Transaction::new(table);
    let action = tx.expire_snapshots().expire_older_than_ms(older_than_ms).retain_last(retain_last.max(1));
    let tx = action.apply(tx)?;
    let capture = Capture { table: table.clone(), captured: Mutex::new(None) };
    tx.commit(&capture).await?;
    let Some((requirements, updates)) = capture.captured.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return Ok(None);
    };
    if updates.is_empty() {
        return Ok(None);
    }
    let mut expired_snapshots = Vec::new();
    let mut removed_refs = Vec::new();
    for update in &updates {
        match update {
            TableUpdate::RemoveSnapshots { snapshot_ids } => expired_snapshots.extend(snapshot_ids),
            TableUpdate::RemoveSnapshotRef { ref_name } => removed_refs.push(ref_name.clone()),
            _ => {}
        }
    }
    expired_snapshots.sort_unstable();
    let mut builder =
        TableMetadataBuilder::new_from_metadata(table.metadata().clone(), table.metadata_location().map(String::from));
    for update in &updates {
        builder = update.clone().apply(builder)?;
    }
    let after = Arc::new(builder.build()?.metadata);
    Ok(Some(ExpireChange { requirements, updates, expired_snapshots, removed_refs, after }))
}

/// Files reachable from `before` but from no snapshot of `after`, to delete once `after` is
/// committed: content files first, then manifests, then manifest lists and statistics files, so
/// that a deletion interrupted midway can be found again from the same two versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unreachable {
    /// Data and delete files.
    pub content_files: Vec<String>,
    /// Manifests.
    pub manifests: Vec<String>,
    /// Manifest lists.
    pub manifest_lists: Vec<String>,
    /// Statistics and partition-statistics files.
    pub statistics_files: Vec<String>,
    /// Bytes of the content files, manifests and statistics files (manifest lists' sizes are
    /// not recorded anywhere and not counted).
    pub bytes: u64,
}

impl Unreachable {
    /// Every file, in deletion order.
    pub fn in_deletion_order(&self) -> impl Iterator<Item = &String> {
        self.content_files.iter().chain(&self.manifests).chain(&self.manifest_lists).chain(&self.statistics_files)
    }

    /// How many files.
    pub fn len(&self) -> usize {
        self.content_files.len() + self.manifests.len() + self.manifest_lists.len() + self.statistics_files.len()
    }

    /// True when nothing is unreachable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What an unreachable file is, in deletion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// A data or delete file.
    Content,
    /// A manifest.
    Manifest,
    /// A manifest list.
    ManifestList,
    /// A statistics or partition-statistics file.
    Statistics,
}

/// Receives unreachable files a batch at a time, in deletion order (every content file before
/// any manifest, manifests before manifest lists, those before statistics files), each with
/// its size (0 where none is recorded).
pub trait UnreachableSink: Send {
    /// Takes one batch.
    fn take(&mut self, kind: FileKind, files: Vec<(String, u64)>) -> impl Future<Output = Result<()>> + Send;
}

impl UnreachableSink for Unreachable {
    async fn take(&mut self, kind: FileKind, files: Vec<(String, u64)>) -> Result<()> {
        self.bytes += files.iter().map(|(_, size)| size).sum::<u64>();
        let paths = files.into_iter().map(|(path, _)| path);
        match kind {
            FileKind::Content => self.content_files.extend(paths),
            FileKind::Manifest => self.manifests.extend(paths),
            FileKind::ManifestList => self.manifest_lists.extend(paths),
            FileKind::Statistics => self.statistics_files.extend(paths),
        }
        Ok(())
    }
}

/// Finds the files only `before` reaches, all at once and sorted (see [`walk_unreachable`],
/// which hands them out a batch at a time instead).
pub async fn unreachable_files(
    io: &FileIO,
    before: &TableMetadataRef,
    after: &TableMetadataRef,
    batch: usize,
) -> Result<Unreachable> {
    let mut unreachable = Unreachable::default();
    walk_unreachable(io, before, after, batch, &mut unreachable).await?;
    unreachable.content_files.sort();
    unreachable.manifests.sort();
    unreachable.manifest_lists.sort();
    unreachable.statistics_files.sort();
    Ok(unreachable)
}

/// Hands `sink` the files only `before` reaches, in deletion order. A manifest list or
/// manifest of an expired snapshot that is already gone (a deletion interrupted and resumed)
/// counts as cleaned. At most `batch` candidate content files are held at once, so memory grows
/// with the number of manifests, not of files.
pub async fn walk_unreachable(
    io: &FileIO,
    before: &TableMetadataRef,
    after: &TableMetadataRef,
    batch: usize,
    sink: &mut impl UnreachableSink,
) -> Result<()> {
    let kept_ids: HashSet<i64> = after.snapshots().map(|s| s.snapshot_id()).collect();
    let kept_lists: HashSet<&str> = after.snapshots().map(|s| s.manifest_list()).collect();

    // Every manifest a retained snapshot uses (one entry per manifest, not per file).
    let mut kept_manifests: HashMap<String, ManifestFile> = HashMap::new();
    for snapshot in after.snapshots() {
        for manifest in manifests(io, after, snapshot).await? {
            kept_manifests.entry(manifest.manifest_path.clone()).or_insert_with(|| manifest.clone());
        }
    }

    let mut lists = Vec::new();
    let mut candidate_manifests: HashMap<String, ManifestFile> = HashMap::new();
    for snapshot in before.snapshots().filter(|s| !kept_ids.contains(&s.snapshot_id())) {
        if kept_lists.contains(snapshot.manifest_list()) {
            continue;
        }
        // Already deleted by an interrupted run: its manifests were deleted before it.
        if io.exists(snapshot.manifest_list()).await? {
            for manifest in manifests(io, before, snapshot).await? {
                if !kept_manifests.contains_key(&manifest.manifest_path) {
                    candidate_manifests.entry(manifest.manifest_path.clone()).or_insert_with(|| manifest.clone());
                }
            }
        }
        lists.push((snapshot.manifest_list().to_string(), 0));
    }

    // Content files of the manifests only expired snapshots use, minus those a retained
    // manifest still lists as live, a batch at a time.
    let mut candidates: HashMap<String, u64> = HashMap::new();
    let candidate_list: Vec<ManifestFile> = candidate_manifests.into_values().collect();
    let reads: Vec<_> = candidate_list.iter().map(|m| load_paths(io.clone(), m.clone(), false)).collect();
    let mut loaded = stream::iter(reads).buffered(READ_CONCURRENCY);
    while let Some(paths) = loaded.next().await {
        candidates.extend(paths?);
        if candidates.len() >= batch {
            retain_unreferenced(io, &kept_manifests, &mut candidates, sink).await?;
        }
    }
    retain_unreferenced(io, &kept_manifests, &mut candidates, sink).await?;
    drop(loaded);
    let mut manifests: Vec<(String, u64)> =
        candidate_list.into_iter().map(|m| (m.manifest_path, m.manifest_length.max(0) as u64)).collect();
    manifests.sort();
    lists.sort();
    if !manifests.is_empty() {
        sink.take(FileKind::Manifest, manifests).await?;
    }
    if !lists.is_empty() {
        sink.take(FileKind::ManifestList, lists).await?;
    }

    let kept_statistics: HashSet<&str> = after
        .statistics_iter()
        .map(|s| s.statistics_path.as_str())
        .chain(after.partition_statistics_iter().map(|s| s.statistics_path.as_str()))
        .collect();
    let mut statistics: HashMap<String, u64> = HashMap::new();
    for (path, size) in before
        .statistics_iter()
        .map(|s| (s.statistics_path.as_str(), s.file_size_in_bytes))
        .chain(before.partition_statistics_iter().map(|s| (s.statistics_path.as_str(), s.file_size_in_bytes)))
    {
        if !kept_statistics.contains(path) {
            statistics.insert(path.to_string(), size.max(0) as u64);
        }
    }
    if !statistics.is_empty() {
        let mut statistics: Vec<(String, u64)> = statistics.into_iter().collect();
        statistics.sort();
        sink.take(FileKind::Statistics, statistics).await?;
    }
    Ok(())
}

/// Removes from `candidates` every file a kept manifest lists as live, and hands the rest to
/// `sink`.
async fn retain_unreferenced(
    io: &FileIO,
    kept: &HashMap<String, ManifestFile>,
    candidates: &mut HashMap<String, u64>,
    sink: &mut impl UnreachableSink,
) -> Result<()> {
    if candidates.is_empty() {
        return Ok(());
    }
    let reads: Vec<_> = kept.values().map(|m| load_paths(io.clone(), m.clone(), true)).collect();
    let mut live = stream::iter(reads).buffered(READ_CONCURRENCY);
    while let Some(paths) = live.try_next().await? {
        for (path, _) in paths {
            candidates.remove(&path);
        }
        if candidates.is_empty() {
            break;
        }
    }
    let mut files: Vec<(String, u64)> = candidates.drain().collect();
    files.sort();
    sink.take(FileKind::Content, files).await
}

/// The content files of a manifest with their sizes: only live entries when `live_only` (a retained
/// manifest, which must be readable), else every entry of an expired one (none when an
/// interrupted run already deleted it, after its files).
async fn load_paths(io: FileIO, manifest: ManifestFile, live_only: bool) -> Result<Vec<(String, u64)>> {
    if !live_only && !io.exists(&manifest.manifest_path).await? {
        return Ok(Vec::new());
    }
    let loaded = manifest.load_manifest(&io).await?;
    Ok(loaded
        .entries()
        .iter()
        .filter(|e| !live_only || e.status() != ManifestStatus::Deleted)
        .map(|e| (e.file_path().to_string(), e.file_size_in_bytes()))
        .collect())
}

/// A catalog of one table that records the commit a transaction makes instead of making it: it
/// turns iceberg's transaction actions into requirements and updates for Loch's commit path.
#[derive(Debug)]
struct Capture {
    table: Table,
    captured: Mutex<Option<Captured>>,
}

/// A captured commit: its requirements and updates.
type Captured = (Vec<TableRequirement>, Vec<TableUpdate>);

fn unsupported<T>() -> iceberg::Result<T> {
    Err(iceberg::Error::new(ErrorKind::FeatureUnsupported, "a capturing catalog only loads and updates its table"))
}

#[async_trait]
impl Catalog for Capture {
    async fn list_namespaces(&self, _parent: Option<&NamespaceIdent>) -> iceberg::Result<Vec<NamespaceIdent>> {
        unsupported()
    }
    async fn create_namespace(
        &self,
        _namespace: &NamespaceIdent,
        _properties: HashMap<String, String>,
    ) -> iceberg::Result<Namespace> {
        unsupported()
    }
    async fn get_namespace(&self, _namespace: &NamespaceIdent) -> iceberg::Result<Namespace> {
        unsupported()
    }
    async fn namespace_exists(&self, _namespace: &NamespaceIdent) -> iceberg::Result<bool> {
        unsupported()
    }
    async fn update_namespace(
        &self,
        _namespace: &NamespaceIdent,
        _properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        unsupported()
    }
    async fn drop_namespace(&self, _namespace: &NamespaceIdent) -> iceberg::Result<()> {
        unsupported()
    }
    async fn list_tables(&self, _namespace: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        unsupported()
    }
    async fn create_table(&self, _namespace: &NamespaceIdent, _creation: TableCreation) -> iceberg::Result<Table> {
        unsupported()
    }
    async fn load_table(&self, table: &TableIdent) -> iceberg::Result<Table> {
        if table == self.table.identifier() { Ok(self.table.clone()) } else { unsupported() }
    }
    async fn drop_table(&self, _table: &TableIdent) -> iceberg::Result<()> {
        unsupported()
    }
    async fn purge_table(&self, _table: &TableIdent) -> iceberg::Result<()> {
        unsupported()
    }
    async fn table_exists(&self, table: &TableIdent) -> iceberg::Result<bool> {
        Ok(table == self.table.identifier())
    }
    async fn rename_table(&self, _src: &TableIdent, _dest: &TableIdent) -> iceberg::Result<()> {
        unsupported()
    }
    async fn register_table(&self, _table: &TableIdent, _metadata_location: String) -> iceberg::Result<Table> {
        unsupported()
    }
    async fn update_table(&self, mut commit: TableCommit) -> iceberg::Result<Table> {
        let captured = (commit.take_requirements(), commit.take_updates());
        *self.captured.lock().unwrap_or_else(|e| e.into_inner()) = Some(captured);
        Ok(self.table.clone())
    }
}
