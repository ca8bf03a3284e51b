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

static CACHE: LazyLock<moka::future::Cache<Key, Arc<Manifest>>> = LazyLock::new(|| {
    moka::future::Cache::builder()
        .weigher(|_, manifest: &Arc<Manifest>| weight(manifest))
        .max_capacity(BUDGET_BYTES)
        .build()
});

/// The manifest `manifest` names, decoded with its list entry's inherited fields; read and
/// decoded once however many tasks ask for it at the same time.
pub async fn load(io: &FileIO, manifest: &ManifestFile) -> Result<Arc<Manifest>> {
    let key = Key {
        storage: storage_of(io),
        path: manifest.manifest_path.clone(),
        length: manifest.manifest_length,
        added_snapshot_id: manifest.added_snapshot_id,
        sequence_number: manifest.sequence_number,
        min_sequence_number: manifest.min_sequence_number,
    };
    let (io, manifest) = (io.clone(), manifest.clone());
    CACHE
        .try_get_with(key, async move {
            // Decoding is CPU work of up to seconds: keep it off the async workers.
            let handle = tokio::runtime::Handle::current();
            let decoded = tokio::task::spawn_blocking(move || handle.block_on(manifest.load_manifest(&io)))
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
