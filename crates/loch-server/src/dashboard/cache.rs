//! What the table pages read from a snapshot's manifests or from old metadata files, kept by
//! the immutable file it came from: a snapshot's file list never changes, nor does an old
//! metadata file, so a second look at a table of 100,000 files reads nothing again.

use std::sync::Arc;

use futures::TryStreamExt;
use iceberg::spec::{SchemaRef, TableMetadata};
use iceberg::table::Table;

use super::PageError;

/// Files of listed snapshots kept at once (summed over the snapshots).
const MAX_FILE_ROWS: u64 = 2_000_000;
/// Old metadata files whose summaries are kept.
const MAX_VERSIONS: u64 = 10_000;
/// Metadata files whose refs are kept.
const MAX_REFS: u64 = 1_000;

/// One live file as the Files tab shows it.
#[derive(Debug, Clone)]
pub struct FileRow {
    /// Its partition's path (`(unpartitioned)` for none).
    pub partition: String,
    /// Its path.
    pub path: String,
    /// Data, position deletes or equality deletes.
    pub content: &'static str,
    /// Bytes.
    pub size: i64,
    /// Rows.
    pub records: i64,
    /// Sequence number of the snapshot that added it.
    pub sequence: i64,
}

/// What the Operations tab compares of one metadata file.
#[derive(Debug, Clone)]
pub struct Version {
    /// When it was written.
    pub at: i64,
    /// Its current schema.
    pub schema: SchemaRef,
    /// Its default spec, as `transform(column)` fields.
    pub spec: Vec<String>,
    /// Its default spec id.
    pub spec_id: i32,
    /// Its properties.
    pub properties: std::collections::BTreeMap<String, String>,
    /// Its format version.
    pub format_version: u8,
}

impl Version {
    /// The parts of `metadata` the Operations tab compares.
    pub fn of(metadata: &TableMetadata, at: i64) -> Self {
        let schema = metadata.current_schema().clone();
        let spec = metadata
            .default_partition_spec()
            .fields()
            .iter()
            .map(|f| format!("{}({})", f.transform, schema.field_by_id(f.source_id).map_or("?", |c| c.name.as_str())))
            .collect();
        Self {
            at,
            spec,
            spec_id: metadata.default_partition_spec_id(),
            properties: metadata.properties().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            format_version: metadata.format_version() as u8,
            schema,
        }
    }
}

/// The dashboard's caches.
#[derive(Debug)]
pub struct PageCache {
    files: moka::future::Cache<String, Arc<Vec<FileRow>>>,
    versions: moka::future::Cache<String, Option<Arc<Version>>>,
    refs: moka::sync::Cache<String, Arc<Refs>>,
}

/// A table's branches and tags by name.
pub type Refs = std::collections::BTreeMap<String, iceberg::spec::SnapshotReference>;

impl Default for PageCache {
    fn default() -> Self {
        Self {
            files: moka::future::Cache::builder()
                .weigher(|_, rows: &Arc<Vec<FileRow>>| u32::try_from(rows.len().max(1)).unwrap_or(u32::MAX))
                .max_capacity(MAX_FILE_ROWS)
                .build(),
            versions: moka::future::Cache::builder().max_capacity(MAX_VERSIONS).build(),
            refs: moka::sync::Cache::builder().max_capacity(MAX_REFS).build(),
        }
    }
}

impl PageCache {
    /// The live files of `table`'s current snapshot, sorted by partition and path.
    pub async fn files(&self, table: &Table) -> Result<Arc<Vec<FileRow>>, PageError> {
        let metadata = table.metadata_ref();
        let Some(snapshot) = metadata.current_snapshot().cloned() else { return Ok(Arc::new(Vec::new())) };
        let key = format!("{}#{}", metadata.location(), snapshot.manifest_list());
        let io = table.file_io().clone();
        self.files
            .try_get_with(key, async move {
                let schema = metadata.current_schema();
                let live: Vec<loch_table::scan::LiveFile> =
                    loch_table::scan::live_files(io, metadata.clone(), snapshot).try_collect().await?;
                let mut rows: Vec<FileRow> = live
                    .iter()
                    .map(|f| FileRow {
                        partition: metadata
                            .partition_spec_by_id(f.spec_id)
                            .and_then(|spec| {
                                loch_table::mixed::sequence::partition_path(spec, f.file.partition(), schema).ok()
                            })
                            .filter(|p| !p.is_empty())
                            .unwrap_or_else(|| "(unpartitioned)".into()),
                        path: f.path().to_string(),
                        content: match f.content() {
                            iceberg::spec::DataContentType::Data => "data",
                            iceberg::spec::DataContentType::PositionDeletes => "position deletes",
                            iceberg::spec::DataContentType::EqualityDeletes => "equality deletes",
                        },
                        size: i64::try_from(f.file.file_size_in_bytes()).unwrap_or(i64::MAX),
                        records: i64::try_from(f.file.record_count()).unwrap_or(i64::MAX),
                        sequence: f.file_sequence_number,
                    })
                    .collect();
                rows.sort_by(|a, b| (&a.partition, &a.path).cmp(&(&b.partition, &b.path)));
                Ok::<_, loch_table::TableError>(Arc::new(rows))
            })
            .await
            .map_err(|e| {
                PageError::new(axum::http::StatusCode::BAD_GATEWAY, format!("reading the table's manifests: {e}"))
            })
    }

    /// The branches and tags of `table`, kept by its metadata file: iceberg-rust lists them only
    /// through the metadata's JSON, which for 5,000 snapshots takes a while to write.
    pub fn refs(&self, table: &Table) -> Arc<Refs> {
        let metadata = table.metadata();
        let read = || Arc::new(loch_table::refs::refs(metadata).unwrap_or_default());
        match table.metadata_location() {
            Some(location) => self.refs.get_with(location.to_string(), read),
            None => read(),
        }
    }

    /// The summary of the metadata file at `path` of `table` (`None`: unreadable, or outside the
    /// table's location, which is never read).
    pub async fn version(&self, table: &Table, path: &str, at: i64) -> Option<Arc<Version>> {
        let own = table.metadata_ref();
        let io = table.file_io().clone();
        let path = path.to_string();
        self.versions
            .get_with(path.clone(), async move {
                loch_table::scan::owned(&own, &path, "metadata file").ok()?;
                let data = io.new_input(&path).ok()?.read().await.ok()?;
                let metadata: TableMetadata = serde_json::from_slice(&data).ok()?;
                Some(Arc::new(Version::of(&metadata, at)))
            })
            .await
    }
}
