//! Orphan files: files under a table's location that no metadata references — left by failed
//! commits, crashed writers, or an expiry whose deletion was skipped.
//!
//! The referenced set is every path the table's metadata reaches (metadata files of its log,
//! statistics files, manifest lists, manifests, and the live entries of every manifest of every
//! snapshot), compared in canonical form: the same file spelled `file:/p` by Spark and
//! `file:///p` by PyIceberg, or `s3a://` and `s3://`, is one file. Java's orphan cleaning
//! compared strings and deleted live files that way. A path that does not parse aborts the
//! search: when unsure, nothing is deleted.

use std::collections::HashSet;
use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt, stream};
use iceberg::io::FileIO;
use iceberg::spec::{ManifestFile, ManifestStatus, TableMetadataRef};

use crate::error::{Result, TableError};
use crate::location::{Location, Store};
use crate::scan::manifests;

/// Manifests read at once.
const READ_CONCURRENCY: usize = 8;

/// A file found by listing a table's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    /// Its canonical path (`file:///p`, `s3://bucket/key`).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last modified (ms since the epoch), if storage says.
    pub modified_ms: Option<i64>,
}

/// The spellings under which storage may list a path a table's metadata names: its canonical
/// form and, for an S3 key with empty segments (`data//f`, from a `write.data.path` ending in
/// a slash), the key OpenDAL actually stores (`data/f`). An error when the path does not parse.
fn spellings(path: &str) -> Result<Vec<String>> {
    let location = Location::parse(path)
        .map_err(|e| TableError::Invalid(format!("the table's metadata references an unusable path: {e}")))?;
    let mut out = vec![location.canonical()];
    if let Store::S3 { bucket } = location.store()
        && location.has_empty_segments()
    {
        let key: Vec<&str> = location.segments().iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
        out.push(format!("s3://{bucket}/{}", key.join("/")));
    }
    Ok(out)
}

/// Every path a table's metadata references, canonical, gathered from one or more versions of
/// its metadata (each snapshot and manifest read once, however many versions name it).
#[derive(Debug, Default)]
pub struct Referenced {
    files: HashSet<String>,
    snapshots: HashSet<i64>,
    manifests: HashSet<String>,
}

impl Referenced {
    /// Adds what `metadata` (stored at `metadata_location`) references.
    pub async fn add(
        &mut self,
        io: &FileIO,
        metadata: &TableMetadataRef,
        metadata_location: Option<&str>,
    ) -> Result<()> {
        if let Some(location) = metadata_location {
            self.insert(location)?;
        }
        for entry in metadata.metadata_log() {
            self.insert(&entry.metadata_file)?;
        }
        for stats in metadata.statistics_iter() {
            self.insert(&stats.statistics_path)?;
        }
        for stats in metadata.partition_statistics_iter() {
            self.insert(&stats.statistics_path)?;
        }
        let mut new_manifests: Vec<ManifestFile> = Vec::new();
        for snapshot in metadata.snapshots() {
            if !self.snapshots.insert(snapshot.snapshot_id()) {
                continue;
            }
            self.insert(snapshot.manifest_list())?;
            for manifest in manifests(io, metadata, snapshot).await? {
                if self.manifests.insert(manifest.manifest_path.clone()) {
                    self.insert(&manifest.manifest_path)?;
                    new_manifests.push(manifest);
                }
            }
        }
        let mut entries = stream::iter(new_manifests)
            .map(|manifest| async move {
                let loaded = manifest.load_manifest(io).await?;
                let paths: Vec<String> = loaded
                    .entries()
                    .iter()
                    // A deleted entry names a file its snapshot removed: a retained snapshot
                    // still using it lists it as added or existing in another manifest.
                    .filter(|e| e.status() != ManifestStatus::Deleted)
                    .map(|e| e.file_path().to_string())
                    .collect();
                Ok::<_, TableError>(paths)
            })
            .buffer_unordered(READ_CONCURRENCY);
        while let Some(paths) = entries.try_next().await? {
            for path in paths {
                self.insert(&path)?;
            }
        }
        Ok(())
    }

    fn insert(&mut self, path: &str) -> Result<()> {
        self.files.extend(spellings(path)?);
        Ok(())
    }

    /// True when the metadata references `path` (in any spelling).
    pub fn contains(&self, path: &str) -> bool {
        Location::parse(path).is_ok_and(|l| self.files.contains(&l.canonical()))
    }

    /// How many distinct spellings of referenced files are known.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when nothing is referenced.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Lists every regular file under `root` (a table's location), recursively. Local symbolic
/// links are neither followed nor listed, and names that are not UTF-8 are skipped (no
/// metadata can name them).
pub async fn list_files(io: &FileIO, root: &Location) -> Result<Vec<ListedFile>> {
    match root.store() {
        Store::File => {
            let Some(dir) = root.local_path() else { return Ok(Vec::new()) };
            tokio::task::spawn_blocking(move || list_local(&dir))
                .await
                .map_err(|e| TableError::Invalid(format!("listing task failed: {e}")))?
        }
        Store::S3 { bucket } => list_s3(io, bucket, root).await,
    }
}

fn ms_of(time: SystemTime) -> Option<i64> {
    time.duration_since(SystemTime::UNIX_EPOCH).ok().and_then(|d| i64::try_from(d.as_millis()).ok())
}

fn list_local(root: &std::path::Path) -> Result<Vec<ListedFile>> {
    let io_error =
        |path: &std::path::Path, e: std::io::Error| TableError::Invalid(format!("cannot list {}: {e}", path.display()));
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&dir, e))?;
            let path = entry.path();
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&path, e)),
            };
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file() {
                let Some(name) = path.to_str() else {
                    tracing::warn!(path = %path.display(), "skipping a file whose name is not UTF-8");
                    continue;
                };
                let modified_ms = meta.modified().ok().and_then(ms_of);
                out.push(ListedFile { path: format!("file://{name}"), size: meta.len(), modified_ms });
            }
        }
    }
    Ok(out)
}

/// True when an Iceberg boolean property is set and truthy.
fn truthy(props: &std::collections::HashMap<String, String>, key: &str) -> bool {
    props.get(key).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "t" | "1" | "on"))
}

/// An OpenDAL operator for `bucket`, configured from the same FileIO properties iceberg's own
/// S3 storage reads (endpoint, region, keys, path-style access).
fn s3_operator(io: &FileIO, bucket: &str) -> Result<opendal::Operator> {
    let props = io.config().props();
    let mut builder = opendal::services::S3::default().bucket(bucket).root("/");
    if let Some(v) = props.get("s3.endpoint") {
        builder = builder.endpoint(v);
    }
    if let Some(v) = props.get("client.region").or_else(|| props.get("s3.region")) {
        builder = builder.region(v);
    }
    if let Some(v) = props.get("s3.access-key-id") {
        builder = builder.access_key_id(v);
    }
    if let Some(v) = props.get("s3.secret-access-key") {
        builder = builder.secret_access_key(v);
    }
    if let Some(v) = props.get("s3.session-token") {
        builder = builder.session_token(v);
    }
    // Iceberg's default is virtual-host style unless path-style access is asked for.
    if !truthy(props, "s3.path-style-access") {
        builder = builder.enable_virtual_host_style();
    }
    if truthy(props, "s3.allow-anonymous") {
        builder = builder.skip_signature();
    }
    if truthy(props, "s3.disable-ec2-metadata") {
        builder = builder.disable_ec2_metadata();
    }
    if truthy(props, "s3.disable-config-load") {
        builder = builder.disable_config_load();
    }
    let operator = opendal::Operator::new(builder)
        .map_err(|e| TableError::Invalid(format!("cannot list s3://{bucket}: {e}")))?
        .finish();
    Ok(operator)
}

async fn list_s3(io: &FileIO, bucket: &str, root: &Location) -> Result<Vec<ListedFile>> {
    let operator = s3_operator(io, bucket)?;
    let prefix = format!("{}/", root.segments().join("/"));
    let failed = |e: opendal::Error| TableError::Invalid(format!("cannot list {root}: {e}"));
    let mut lister = operator.lister_with(&prefix).recursive(true).await.map_err(failed)?;
    let mut out = Vec::new();
    while let Some(entry) = lister.try_next().await.map_err(failed)? {
        let meta = entry.metadata();
        if !meta.is_file() {
            continue;
        }
        let key = entry.path().trim_start_matches('/');
        let modified_ms = meta.last_modified().and_then(|t| ms_of(SystemTime::from(t)));
        out.push(ListedFile { path: format!("s3://{bucket}/{key}"), size: meta.content_length(), modified_ms });
    }
    Ok(out)
}

/// The files under `root` that `referenced` does not name and that were last modified before
/// `older_than_ms` (a file of unknown age is kept). Younger files may belong to a commit in
/// flight.
pub fn orphans_among(listed: Vec<ListedFile>, referenced: &Referenced, older_than_ms: i64) -> Vec<ListedFile> {
    listed
        .into_iter()
        .filter(|f| f.modified_ms.is_some_and(|m| m < older_than_ms) && !referenced.contains(&f.path))
        .collect()
}

/// Table properties naming directories a table writes files to, besides `data` and `metadata`.
const PATH_PROPERTIES: [&str; 4] =
    ["write.data.path", "write.metadata.path", "write.object-storage.path", "write.folder-storage.path"];

/// The directories orphan cleaning lists: the table's `data` and `metadata` directories and
/// the directories its `write.*.path` properties name inside its location (a directory inside
/// another is listed with it). Nothing outside the table's location is ever a root.
pub fn orphan_roots(metadata: &TableMetadataRef) -> Result<Vec<Location>> {
    let table = Location::parse(metadata.location())
        .map_err(|e| TableError::Invalid(format!("the table's location is unusable: {e}")))?;
    let mut roots = Vec::new();
    let named = PATH_PROPERTIES.iter().filter_map(|key| metadata.properties().get(*key)).cloned();
    for raw in [table.join("data"), table.join("metadata")].into_iter().chain(named) {
        match Location::parse(&raw) {
            Ok(root) if table.contains(&root) => roots.push(root),
            _ => tracing::warn!(path = %raw, table = %table, "not listing a directory outside the table's location"),
        }
    }
    let all = roots.clone();
    let mut distinct: Vec<Location> = Vec::new();
    for root in roots {
        if !all.iter().any(|other| other.contains(&root)) && !distinct.contains(&root) {
            distinct.push(root);
        }
    }
    Ok(distinct)
}

/// The Flink job that committed last (`flink.job-id` of the newest snapshot naming one): its
/// committer keeps manifests of checkpoints not yet committed, named after the job, and
/// restores them from its state, so they are not orphans even when old.
pub fn flink_job_prefix(metadata: &TableMetadataRef) -> Option<String> {
    let mut snapshots: Vec<_> = metadata.snapshots().collect();
    snapshots.sort_by_key(|s| std::cmp::Reverse(s.sequence_number()));
    snapshots
        .into_iter()
        .find_map(|s| s.summary().additional_properties.get("flink.job-id").filter(|id| !id.is_empty()).cloned())
}

/// Finds the orphans of a table: lists `roots` (see [`orphan_roots`]), then keeps what
/// `metadata` does not reference and is older than `older_than_ms`, sparing the latest Flink
/// job's pending manifests. Also returns the referenced set, to which a caller adds newer
/// versions of the metadata before deleting (a commit may land while the listing runs).
pub async fn find_orphans(
    io: &FileIO,
    metadata: &TableMetadataRef,
    metadata_location: Option<&str>,
    roots: &[Location],
    older_than_ms: i64,
) -> Result<(Referenced, Vec<ListedFile>)> {
    let mut referenced = Referenced::default();
    referenced.add(io, metadata, metadata_location).await?;
    let flink = flink_job_prefix(metadata);
    let mut orphans = Vec::new();
    for root in roots {
        let listed = list_files(io, root).await?;
        orphans.extend(orphans_among(listed, &referenced, older_than_ms).into_iter().filter(|f| {
            let name = f.path.rsplit('/').next().unwrap_or_default();
            !flink.as_deref().is_some_and(|job| name.starts_with(job))
        }));
    }
    Ok((referenced, orphans))
}

/// Removes the empty directories below `root` (a local directory of a table), deepest first,
/// never `root` itself, never following symbolic links. Answers how many went. Only empty ones can go
/// (`remove_dir` refuses others), so a file written meanwhile keeps its directory.
pub async fn remove_empty_dirs(root: &Location) -> usize {
    let Some(dir) = root.local_path() else { return 0 };
    tokio::task::spawn_blocking(move || {
        fn walk(dir: &std::path::Path, removed: &mut usize) -> bool {
            let Ok(entries) = std::fs::read_dir(dir) else { return false };
            let mut empty = true;
            for entry in entries.flatten() {
                let path = entry.path();
                let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
                if is_dir && walk(&path, removed) && std::fs::remove_dir(&path).is_ok() {
                    *removed += 1;
                } else {
                    empty = false;
                }
            }
            empty
        }
        let mut removed = 0;
        walk(&dir, &mut removed);
        removed
    })
    .await
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_key_with_empty_segments_is_also_known_as_storage_keeps_it() {
        let mut referenced = Referenced::default();
        referenced.insert("s3a://b/wh/t/data//f.parquet").unwrap();
        assert!(referenced.contains("s3://b/wh/t/data/f.parquet"), "OpenDAL stores data//f as data/f");
        assert!(referenced.contains("s3://b/wh/t/data//f.parquet"));
        assert!(!referenced.contains("s3://b/wh/t/data/g.parquet"));
        referenced.insert("file:/wh/t/data/x.parquet").unwrap();
        assert!(referenced.contains("file:///wh/t/data/x.parquet"));
        assert!(referenced.insert("ftp://elsewhere/x").is_err(), "an unusable path stops the search");
    }
}
