//! Decoded manifests, shared by everything in the process that reads them.
//!
//! A manifest never changes once written, and one commit makes the evaluator, the planner and
//! the dashboard read the same ones: decoding 100,000 entries costs about a second in a debug
//! build, so each is decoded once (off the async workers) and kept while memory allows.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use iceberg::io::FileIO;
use iceberg::spec::{Manifest, ManifestFile};

use crate::{Result, TableError};

/// Bytes of decoded manifests kept at once (estimated, see [`weight`]).
const BUDGET_BYTES: u64 = 256 * 1024 * 1024;

/// One manifest as one store holds it, with the list entry's fields its entries inherit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    /// The storage settings' fingerprint: two catalogs may name different stores alike.
    storage: u64,
    path: String,
    length: i64,
    added_snapshot_id: i64,
    sequence_number: i64,
    min_sequence_number: i64,
}

impl Key {
    fn of(storage: u64, manifest: &ManifestFile) -> Self {
        Self {
            storage,
            path: manifest.manifest_path.clone(),
            length: manifest.manifest_length,
            added_snapshot_id: manifest.added_snapshot_id,
            sequence_number: manifest.sequence_number,
            min_sequence_number: manifest.min_sequence_number,
        }
    }
}

static CACHE: LazyLock<moka::future::Cache<Key, Arc<Manifest>>> = LazyLock::new(|| {
    moka::future::Cache::builder()
        .weigher(|_, manifest: &Arc<Manifest>| weight(manifest))
        .max_capacity(BUDGET_BYTES)
        .build()
});

/// The manifest `manifest` names, decoded with its list entry's inherited fields; read and
/// decoded once however many tasks ask for it at the same time.
pub async fn load(io: &FileIO, manifest: &ManifestFile) -> Result<Arc<Manifest>> {
    let key = Key::of(storage_of(io), manifest);
    let (io, manifest) = (io.clone(), manifest.clone());
    CACHE
        .try_get_with(key, async move {
            // Decoding is CPU work of up to seconds: keep it off the async workers.
            let handle = tokio::runtime::Handle::current();
            let decoded = tokio::task::spawn_blocking(move || match local_bytes(&manifest) {
                Some(bytes) => crate::manifest_batch::decode(&manifest, &bytes?),
                None => Ok(handle.block_on(manifest.load_manifest(&io))?),
            })
            .await
            .map_err(|e| TableError::Invalid(format!("decoding a manifest stopped: {e}")))??;
            Ok::<_, TableError>(Arc::new(decoded))
        })
        .await
        .map_err(|e| match &*e {
            TableError::Iceberg(inner) => TableError::Iceberg(iceberg::Error::new(inner.kind(), inner.to_string())),
            other => TableError::Invalid(other.to_string()),
        })
}

/// Manifests read at once by [`load_many`] when they are not cached.
const READS_AT_ONCE: usize = 8;

/// The manifests `manifests` name, in order, like [`load`] for each; those not cached are read
/// together and decoded in one pass where their headers agree ([`crate::manifest_batch`]), which
/// is what makes thousands of one-entry manifests of a streaming table cheap to evaluate.
pub async fn load_many(io: &FileIO, manifests: &[ManifestFile]) -> Result<Vec<Arc<Manifest>>> {
    let storage = storage_of(io);
    let mut out: Vec<Option<Arc<Manifest>>> = Vec::with_capacity(manifests.len());
    let mut missing = Vec::new();
    for (index, manifest) in manifests.iter().enumerate() {
        let cached = CACHE.get(&Key::of(storage, manifest)).await;
        if cached.is_none() {
            if manifest.key_metadata.is_some() {
                // Encrypted: iceberg's own reader decrypts it.
                out.push(Some(load(io, manifest).await?));
                continue;
            }
            missing.push(index);
        }
        out.push(cached);
    }
    if !missing.is_empty() {
        let wanted: Vec<ManifestFile> = missing.iter().map(|i| manifests[*i].clone()).collect();
        let io = io.clone();
        let handle = tokio::runtime::Handle::current();
        // Reading small local files and decoding are CPU work: off the async workers.
        let decoded = tokio::task::spawn_blocking(move || {
            let files = handle.block_on(read_all(&io, wanted))?;
            Ok::<_, TableError>(crate::manifest_batch::decode_many(&files))
        })
        .await
        .map_err(|e| TableError::Invalid(format!("decoding manifests stopped: {e}")))??;
        for (index, manifest) in missing.into_iter().zip(decoded) {
            let manifest = Arc::new(manifest?);
            CACHE.insert(Key::of(storage, &manifests[index]), manifest.clone()).await;
            out[index] = Some(manifest);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// The bytes of each of `manifests`: local files read in turn on this thread, others through
/// the storage, several at once.
async fn read_all(io: &FileIO, manifests: Vec<ManifestFile>) -> Result<Vec<(ManifestFile, bytes::Bytes)>> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    stream::iter(manifests)
        .map(|manifest| async move {
            let bytes = match local_bytes(&manifest) {
                Some(read) => read?,
                None => io.new_input(&manifest.manifest_path)?.read().await?,
            };
            Ok::<_, TableError>((manifest, bytes))
        })
        .buffered(READS_AT_ONCE)
        .try_collect()
        .await
}

/// The bytes of an unencrypted local manifest, read on this (blocking) thread with the storage
/// guard's checks, rather than through an async hop per system call; `None` to read it through
/// the storage.
fn local_bytes(manifest: &ManifestFile) -> Option<Result<bytes::Bytes>> {
    if manifest.key_metadata.is_some() {
        return None;
    }
    crate::io::read_local_blocking(&manifest.manifest_path).map(|read| read.map_err(TableError::from))
}

/// A fingerprint of `io`'s storage settings.
fn storage_of(io: &FileIO) -> u64 {
    let sorted: BTreeMap<_, _> = io.config().props().iter().collect();
    let mut hasher = std::hash::DefaultHasher::new();
    sorted.hash(&mut hasher);
    hasher.finish()
}

/// About the bytes `manifest` holds in memory: its paths, partition values and column stats.
fn weight(manifest: &Manifest) -> u32 {
    let bytes: usize = manifest
        .entries()
        .iter()
        .map(|entry| {
            let file = entry.data_file();
            let counts = file.column_sizes().len()
                + file.value_counts().len()
                + file.null_value_counts().len()
                + file.nan_value_counts().len();
            let bounds = file.lower_bounds().len() + file.upper_bounds().len();
            400 + file.file_path().len() + 40 * counts + 80 * bounds + 48 * file.partition().fields().len()
        })
        .sum();
    u32::try_from(bytes).unwrap_or(u32::MAX)
}
