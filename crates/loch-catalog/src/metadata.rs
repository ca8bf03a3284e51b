//! Table metadata files: naming the next version, writing, reading through a cache, and the
//! snapshot statistics the catalog keeps on each table row.
//!
//! Metadata files are immutable, so the cache is keyed by location and never invalidated; it
//! keeps the parsed metadata and its JSON text, so loading a table serializes nothing.
//! Lists in the JSON are in one stable order (see [`crate::json_order`]).

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use iceberg::io::FileIO;
use iceberg::spec::TableMetadata;
use loch_meta::TableStats;
use serde_json::value::RawValue;

use crate::error::{CatalogError, Result};
use crate::json_order::{TABLE_LISTS, retain_in_lists, to_ordered_json};
use crate::storage::policy::{ReadLimits, read_bounded, write_inside};
use loch_table::location::Location;

/// Table property naming a directory for metadata files (instead of `{location}/metadata`).
const METADATA_PATH: &str = "write.metadata.path";
/// Table property choosing metadata file compression (`none` or `gzip`).
const METADATA_COMPRESSION: &str = "write.metadata.compression-codec";

/// Parsed table metadata together with its JSON text.
#[derive(Debug)]
pub struct CachedMetadata {
    /// The parsed metadata.
    pub metadata: Arc<TableMetadata>,
    /// The metadata as JSON, exactly as stored.
    pub json: Box<RawValue>,
    /// The JSON with only the snapshots a branch or tag references (`snapshots=refs`) and
    /// their statistics, made once: a streaming table keeps thousands of snapshots its
    /// readers never look at.
    refs_json: std::sync::OnceLock<Box<RawValue>>,
}

impl CachedMetadata {
    /// Serializes metadata with its lists in a stable order.
    pub fn from_metadata(metadata: TableMetadata) -> Result<Self> {
        let json = to_ordered_json(&metadata, TABLE_LISTS)
            .map_err(|e| CatalogError::Internal(format!("serialize metadata: {e}")))?;
        Ok(Self { metadata: Arc::new(metadata), json, refs_json: Default::default() })
    }

    /// The metadata JSON keeping only the snapshots a branch or tag references, and their
    /// statistics.
    pub fn referenced_snapshots_only(&self) -> Result<&RawValue> {
        if let Some(json) = self.refs_json.get() {
            return Ok(json);
        }
        let json = referenced_snapshots_only(self.json.get(), self.metadata.current_snapshot_id())?;
        Ok(self.refs_json.get_or_init(|| json))
    }

    /// Parses metadata JSON read from a file, keeping the text.
    fn parse(json: String) -> Result<Self> {
        let metadata: TableMetadata =
            serde_json::from_str(&json).map_err(|e| CatalogError::BadRequest(e.to_string()))?;
        let json = RawValue::from_string(json).map_err(|e| CatalogError::Internal(format!("metadata json: {e}")))?;
        Ok(Self { metadata: Arc::new(metadata), json, refs_json: Default::default() })
    }
}

/// `json` (a metadata file's text) with only the snapshots a ref or `current` references, and
/// their statistics (a keyed table's base store gets one per optimizing commit). Works on raw
/// JSON: a metadata file of thousands of snapshots is scanned, never built as a tree.
fn referenced_snapshots_only(json: &str, current: Option<i64>) -> Result<Box<RawValue>> {
    #[derive(serde::Deserialize)]
    struct Ref {
        #[serde(rename = "snapshot-id")]
        snapshot_id: i64,
    }
    #[derive(serde::Deserialize)]
    struct Refs {
        refs: Option<std::collections::HashMap<String, Ref>>,
    }
    const LISTS: crate::json_order::Lists = &[("snapshots", &[]), ("statistics", &[]), ("partition-statistics", &[])];
    let internal = |e: serde_json::Error| CatalogError::Internal(format!("metadata json: {e}"));
    let refs: Refs = serde_json::from_str(json).map_err(internal)?;
    // The refs' snapshots, and the current one (v1 metadata may name it without a ref).
    let mut referenced: std::collections::HashSet<i64> =
        refs.refs.unwrap_or_default().values().map(|r| r.snapshot_id).collect();
    referenced.extend(current);
    retain_in_lists(json, LISTS, |_, ids| referenced.contains(&ids.get("snapshot-id"))).map_err(internal)
}

/// Cache of parsed metadata files, weighted by JSON size.
#[derive(Debug, Clone)]
pub struct MetadataCache {
    cache: moka::future::Cache<String, Arc<CachedMetadata>>,
    limits: ReadLimits,
}

impl MetadataCache {
    /// A cache holding up to `max_bytes` of metadata JSON, reading files within `limits`.
    ///
    /// Least recently used goes first. Moka's default (TinyLFU) admits a new entry into a full
    /// cache only when it was asked for more often than the entry it would evict, and a table's
    /// newest version never was: once a streaming table's versions filled the cache, every
    /// commit and load parsed the whole metadata file again, growing with its snapshot log.
    pub fn new(max_bytes: u64, limits: ReadLimits) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .weigher(|k: &String, v: &Arc<CachedMetadata>| {
                u32::try_from(k.len() + v.json.get().len() * 4).unwrap_or(u32::MAX)
            })
            .build();
        Self { cache, limits }
    }

    /// The metadata at `location`, read from storage on a miss (concurrent misses read once).
    pub async fn load(&self, io: &FileIO, location: &str) -> Result<Arc<CachedMetadata>> {
        self.cache
            .try_get_with(location.to_string(), async { read_metadata(io, location, self.limits).await.map(Arc::new) })
            .await
            // The catalog wrote or accepted this file: whatever is wrong with it now is a fault.
            .map_err(|e: Arc<CatalogError>| match &*e {
                CatalogError::Storage(inner) => CatalogError::Storage(clone_iceberg_error(inner)),
                other => CatalogError::Internal(format!("current metadata file {location}: {other}")),
            })
    }

    /// Remembers metadata just written to `location`.
    pub async fn insert(&self, location: &str, metadata: Arc<CachedMetadata>) {
        self.cache.insert(location.to_string(), metadata).await;
    }
}

fn clone_iceberg_error(e: &iceberg::Error) -> iceberg::Error {
    iceberg::Error::new(e.kind(), e.to_string())
}

/// Reads a whole metadata file (plain or gzip-compressed) as text, within `limits`.
pub(crate) async fn read_text(io: &FileIO, location: &str, limits: ReadLimits) -> Result<String> {
    let bytes = read_bounded(io, location, limits).await?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .take(limits.max_bytes + 1)
            .read_to_string(&mut out)
            .map_err(|e| CatalogError::BadRequest(format!("cannot decompress {location}: {e}")))?;
        if out.len() as u64 > limits.max_bytes {
            return Err(CatalogError::BadRequest(format!(
                "{location} decompresses to more than the limit of {} bytes for metadata files",
                limits.max_bytes
            )));
        }
        Ok(out)
    } else {
        String::from_utf8(bytes.to_vec()).map_err(|e| CatalogError::BadRequest(format!("{location} is not UTF-8: {e}")))
    }
}

/// Reads and parses a metadata file.
pub async fn read_metadata(io: &FileIO, location: &str, limits: ReadLimits) -> Result<CachedMetadata> {
    let json = read_text(io, location, limits).await?;
    CachedMetadata::parse(json)
        .map_err(|e| CatalogError::BadRequest(format!("{location} is not valid Iceberg table metadata: {e}")))
}

/// Location of the next metadata file: `{dir}/{version:05}-{uuid}[.gz].metadata.json`, one
/// version past `current` (or version 0 for a new table). `dir` keeps the client's spelling.
pub fn next_metadata_location(metadata: &TableMetadata, current: Option<&str>) -> String {
    let version = current.and_then(parse_version).map_or(0, |v| v + 1);
    let dir = match metadata.properties().get(METADATA_PATH) {
        Some(dir) => dir.trim_end_matches('/').to_string(),
        None => format!("{}/metadata", metadata.location().trim_end_matches('/')),
    };
    let gz = if is_gzip(metadata) { ".gz" } else { "" };
    format!("{dir}/{version:05}-{}{gz}.metadata.json", uuid::Uuid::new_v4())
}

fn is_gzip(metadata: &TableMetadata) -> bool {
    metadata.properties().get(METADATA_COMPRESSION).is_some_and(|c| c.eq_ignore_ascii_case("gzip"))
}

/// Version number of a metadata file named `NNNNN-uuid.metadata.json` or `vN.metadata.json`.
pub fn parse_version(location: &str) -> Option<i64> {
    let name = location.rsplit('/').next()?;
    let stem = name.strip_suffix(".metadata.json")?;
    let stem = stem.strip_suffix(".gz").unwrap_or(stem);
    match stem.split_once('-') {
        Some((v, _)) => v.parse().ok(),
        None => stem.strip_prefix('v')?.parse().ok(),
    }
}

/// Writes `metadata` to `location`, which must lie inside the table's own location; returns it
/// with its JSON text for the cache.
pub async fn write_metadata(io: &FileIO, location: &str, metadata: TableMetadata) -> Result<Arc<CachedMetadata>> {
    let cached = CachedMetadata::from_metadata(metadata)?;
    let text = cached.json.get().as_bytes();
    let payload = if is_gzip(&cached.metadata) {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder
            .write_all(text)
            .and_then(|_| encoder.finish())
            .map_err(|e| CatalogError::Internal(format!("gzip: {e}")))?
    } else {
        text.to_vec()
    };
    let scope = table_scope(cached.metadata.location())?;
    write_inside(io, &scope, location, Bytes::from(payload)).await?;
    Ok(Arc::new(cached))
}

/// The parsed location of a table the catalog already accepted.
pub(crate) fn table_scope(location: &str) -> Result<Location> {
    Location::parse(location).map_err(|e| CatalogError::Internal(format!("table location: {e}")))
}

/// Deletes files that were written but never committed; failures only leave orphans.
pub async fn delete_uncommitted(io: &FileIO, locations: &[String]) {
    for location in locations {
        if let Err(e) = io.delete(location).await {
            tracing::warn!(%location, error = %e, "cannot delete uncommitted metadata file; it is an orphan now");
        }
    }
}

/// Statistics of the current snapshot, from its summary.
pub fn stats_of(metadata: &TableMetadata) -> TableStats {
    let Some(snapshot) = metadata.current_snapshot() else {
        return TableStats::default();
    };
    let summary = &snapshot.summary().additional_properties;
    let total = |key: &str| summary.get(key).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    TableStats {
        snapshot_id: Some(snapshot.snapshot_id()),
        data_files: total("total-data-files"),
        delete_files: total("total-delete-files"),
        total_size: total("total-files-size"),
        total_records: total("total-records"),
        last_commit_ms: Some(snapshot.timestamp_ms()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::{
        NestedField, PrimitiveType, Schema, SortOrder, TableMetadataBuilder, Type, UnboundPartitionSpec,
    };

    fn metadata(location: &str) -> TableMetadata {
        let schema = Schema::builder()
            .with_fields(vec![NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into()])
            .build()
            .unwrap();
        let spec = UnboundPartitionSpec::builder().build();
        let format = iceberg::spec::FormatVersion::V2;
        let builder = TableMetadataBuilder::new(
            schema,
            spec,
            SortOrder::unsorted_order(),
            location.into(),
            format,
            Default::default(),
        );
        builder.unwrap().build().unwrap().metadata
    }

    /// A streaming table writes a new version every few seconds, each read again right after:
    /// the newest must stay cached however full the cache is of older, often-read versions.
    #[tokio::test]
    async fn a_full_cache_keeps_the_newest_version() {
        let entry = Arc::new(CachedMetadata::from_metadata(metadata("file:///wh/t")).unwrap());
        let weight = (entry.json.get().len() * 4 + 64) as u64;
        let cache = MetadataCache::new(weight * 4, ReadLimits::default());
        let io = FileIO::new_with_fs();
        for version in 0..40 {
            let location = format!("file:///wh/t/metadata/{version:05}-x.metadata.json");
            cache.insert(&location, entry.clone()).await;
            cache.cache.run_pending_tasks().await;
            // Read as often as a streaming table's versions are: more than once.
            for _ in 0..3 {
                let loaded = cache.load(&io, &location).await;
                assert!(loaded.is_ok(), "version {version} was not cached: {:?}", loaded.err());
            }
        }
    }

    #[test]
    fn versions_are_parsed_from_both_naming_styles() {
        assert_eq!(
            parse_version("s3://b/t/metadata/00012-1b4e28ba-2fa1-11d2-883f-0016d3cca427.metadata.json"),
            Some(12)
        );
        assert_eq!(parse_version("file:///t/metadata/00003-abc.gz.metadata.json"), Some(3));
        assert_eq!(parse_version("file:///t/metadata/v7.metadata.json"), Some(7));
        assert_eq!(parse_version("file:///t/metadata/whatever.json"), None);
    }
}
