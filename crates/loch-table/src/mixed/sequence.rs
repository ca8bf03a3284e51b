//! A keyed table's per-partition *optimized sequence*: the greatest change-store sequence
//! already folded into the base store. Change files at or below their partition's sequence are
//! invisible to readers (their rows live in the base now) until change TTL deletes them.
//!
//! Stored as Amoro stores it (`StatisticsFileUtil`, `MixedTableUtil.readOptimizedSequence`):
//! a Puffin file `<base location>/data/puffin/<snapshot id>-<uuid>.puffin` attached to the base
//! snapshot that advanced it as its statistics file, with one uncompressed blob of type
//! `optimized-sequence` holding JSON `{"<partition path>": sequence}` (`PartitionSpec.
//! partitionToPath`, values URL-encoded; `""` for an unpartitioned table), and the snapshot's
//! summary flag `optimized-sequence.exist=true`. Readers take the latest such file from the
//! current snapshot back through its ancestors.

use std::collections::{BTreeMap, HashMap};

use iceberg::compression::CompressionCodec;
use iceberg::puffin::{Blob, PuffinReader, PuffinWriter};
use iceberg::spec::{
    BlobMetadata, PartitionSpec, SchemaRef, StatisticsFile, Struct, TableMetadata, TableMetadataBuilder,
};
use iceberg::table::Table;

use crate::error::{Result, TableError};
use crate::expire::ExpireChange;

/// Blob type of the optimized sequence.
pub const BLOB_TYPE_OPTIMIZED_SEQUENCE: &str = "optimized-sequence";
/// Snapshot summary flag of a base snapshot that carries an optimized sequence.
pub const OPTIMIZED_SEQUENCE_EXIST: &str = "optimized-sequence.exist";

/// Partition path → optimized sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptimizedSequence(pub BTreeMap<String, i64>);

impl OptimizedSequence {
    /// The sequence of the partition at `path`, if it was ever optimized.
    pub fn get(&self, path: &str) -> Option<i64> {
        self.0.get(path).copied()
    }

    /// Whether a change file of sequence `sequence` in the partition at `path` is folded into
    /// the base (and so must not be read again).
    pub fn covers(&self, path: &str, sequence: i64) -> bool {
        self.get(path).is_some_and(|optimized| sequence <= optimized)
    }

    /// A sequence number every change file at or below which is covered, when one holds for
    /// every partition of the change store `change` (an unpartitioned one: its only partition).
    /// Change-store manifests added at or below it need not be read.
    pub fn floor(&self, change: &TableMetadata) -> i64 {
        if change.partition_specs_iter().all(|s| s.is_unpartitioned()) {
            self.get("").unwrap_or(i64::MIN)
        } else {
            i64::MIN
        }
    }

    /// True when no partition was optimized.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The path of `partition` as Java's `PartitionSpec.partitionToPath` writes it: `name=value`
/// per field, joined by `/`, each value in its human form and URL-encoded as
/// `java.net.URLEncoder` does.
pub fn partition_path(spec: &PartitionSpec, partition: &Struct, schema: &SchemaRef) -> Result<String> {
    let partition_type = spec.partition_type(schema)?;
    let types = partition_type.fields();
    let mut parts = Vec::with_capacity(spec.fields().len());
    for (i, field) in spec.fields().iter().enumerate() {
        let value = partition.fields().get(i).and_then(|v| v.as_ref());
        let ty = types
            .get(i)
            .map(|t| t.field_type.as_ref())
            .ok_or_else(|| TableError::Invalid(format!("partition field {} has no type in the spec", field.name)))?;
        parts.push(format!("{}={}", field.name, url_encode(&field.transform.to_human_string(ty, value))));
    }
    Ok(parts.join("/"))
}

/// `java.net.URLEncoder.encode(text, UTF_8)`: letters, digits and `.-*_` stay, a space is `+`,
/// every other byte `%XX`.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => out.push(byte as char),
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// The statistics file that holds the optimized sequence as of the current snapshot: the
/// newest one with the blob, from the current snapshot back through its ancestors.
pub fn optimized_sequence_file(metadata: &TableMetadata) -> Option<StatisticsFile> {
    let mut cursor = metadata.current_snapshot_id();
    while let Some(snapshot_id) = cursor {
        if let Some(file) = metadata
            .statistics_for_snapshot(snapshot_id)
            .filter(|f| f.blob_metadata.iter().any(|b| b.r#type == BLOB_TYPE_OPTIMIZED_SEQUENCE))
        {
            return Some(file.clone());
        }
        cursor = metadata.snapshot_by_id(snapshot_id).and_then(|s| s.parent_snapshot_id());
    }
    None
}

/// The optimized sequence of a keyed table whose base store is `base`, as of its current
/// snapshot (empty when nothing was optimized).
pub async fn read_optimized_sequence(base: &Table) -> Result<OptimizedSequence> {
    let Some(file) = optimized_sequence_file(base.metadata()) else { return Ok(OptimizedSequence::default()) };
    crate::scan::owned(&base.metadata_ref(), &file.statistics_path, "statistics file")?;
    let reader = PuffinReader::new(base.file_io().new_input(&file.statistics_path)?);
    let footer = reader.file_metadata().await?.clone();
    let Some(blob) = footer.blobs().iter().find(|b| b.blob_type() == BLOB_TYPE_OPTIMIZED_SEQUENCE) else {
        return Err(TableError::Invalid(format!(
            "statistics file {} lists an optimized sequence but holds none",
            file.statistics_path
        )));
    };
    let data = reader.blob(blob).await?;
    let map: HashMap<String, i64> = serde_json::from_slice(data.data()).map_err(|e| {
        TableError::Invalid(format!("the optimized sequence in {} is not valid: {e}", file.statistics_path))
    })?;
    Ok(OptimizedSequence(map.into_iter().collect()))
}

/// Keeps an expiry of a base store from losing its optimized sequence (which would make folded
/// change files visible again, every folded row twice): when the snapshot carrying it expires,
/// its statistics entry moves onto the current snapshot, pointing at the same file, as Amoro's
/// `copyToSnapshot` does. Refused (an error) when the current snapshot has statistics of its
/// own, which the move would replace.
pub fn keep_optimized_sequence(before: &TableMetadata, change: &mut ExpireChange) -> Result<()> {
    let Some(file) = optimized_sequence_file(before) else { return Ok(()) };
    let Some(current) = before.current_snapshot_id() else { return Ok(()) };
    if file.snapshot_id == current || !change.expired_snapshots.contains(&file.snapshot_id) {
        return Ok(());
    }
    if before.statistics_for_snapshot(current).is_some() {
        return Err(TableError::Unsupported(format!(
            "expiring snapshot {} would drop the keyed table's optimized sequence, and the current snapshot has \
             statistics of its own to keep; keep more snapshots",
            file.snapshot_id
        )));
    }
    let update = iceberg::TableUpdate::SetStatistics { statistics: StatisticsFile { snapshot_id: current, ..file } };
    let after =
        update.clone().apply(TableMetadataBuilder::new_from_metadata((*change.after).clone(), None))?.build()?;
    change.after = std::sync::Arc::new(after.metadata);
    change.updates.push(update);
    Ok(())
}

/// Writes `sequence` as the Puffin statistics file of base snapshot `snapshot_id` (sequence
/// number `sequence_number`); the caller commits it with the snapshot (`SetStatistics`) and
/// sets [`OPTIMIZED_SEQUENCE_EXIST`] in the snapshot's summary.
pub async fn write_optimized_sequence(
    base: &Table,
    snapshot_id: i64,
    sequence_number: i64,
    sequence: &OptimizedSequence,
) -> Result<StatisticsFile> {
    let path = format!(
        "{}/data/puffin/{snapshot_id}-{}.puffin",
        base.metadata().location().trim_end_matches('/'),
        uuid::Uuid::new_v4()
    );
    let data = serde_json::to_vec(&sequence.0).map_err(|e| TableError::Invalid(e.to_string()))?;
    let output = base.file_io().new_output(&path)?;
    let mut writer = PuffinWriter::new(&output, HashMap::new(), false).await?;
    let blob = Blob::builder()
        .r#type(BLOB_TYPE_OPTIMIZED_SEQUENCE.to_string())
        .fields(Vec::new())
        .snapshot_id(snapshot_id)
        .sequence_number(sequence_number)
        .data(data)
        .properties(HashMap::new())
        .build();
    writer.add(blob, CompressionCodec::None).await?;
    writer.close().await?;
    // The footer: magic, payload, payload length (4), flags (4), magic (4).
    let bytes = base.file_io().new_input(&path)?.read().await?;
    let payload = bytes
        .len()
        .checked_sub(12)
        .and_then(|at| bytes.get(at..at + 4))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(i32::from_le_bytes)
        .ok_or_else(|| TableError::Invalid(format!("puffin file {path} has no footer")))?;
    Ok(StatisticsFile {
        snapshot_id,
        statistics_path: path,
        file_size_in_bytes: bytes.len() as i64,
        file_footer_size_in_bytes: i64::from(payload) + 16,
        key_metadata: None,
        blob_metadata: vec![BlobMetadata {
            r#type: BLOB_TYPE_OPTIMIZED_SEQUENCE.to_string(),
            snapshot_id,
            sequence_number,
            fields: Vec::new(),
            properties: HashMap::new(),
        }],
    })
}

/// Attaches `sequence` to the base-store snapshot `pending` will commit (prepared on `base`
/// with [`OPTIMIZED_SEQUENCE_EXIST`] set in its summary): writes the Puffin file and adds the
/// `SetStatistics` update; the file is an orphan if the commit never lands.
pub async fn attach_optimized_sequence(
    base: &Table,
    pending: &mut crate::snapshot::PendingCommit,
    sequence: &OptimizedSequence,
) -> Result<()> {
    let sequence_number = base.metadata().last_sequence_number() + 1;
    let statistics = write_optimized_sequence(base, pending.snapshot_id, sequence_number, sequence).await?;
    pending.written_files.push(statistics.statistics_path.clone());
    pending.updates.push(iceberg::TableUpdate::SetStatistics { statistics });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_url_encoded_as_java_does() {
        assert_eq!(url_encode("2022-01-01"), "2022-01-01");
        assert_eq!(url_encode("a b/c=d~é"), "a+b%2Fc%3Dd%7E%C3%A9");
        assert_eq!(url_encode("x.y*z_1"), "x.y*z_1");
    }

    #[test]
    fn a_sequence_covers_files_at_or_below_it() {
        let sequence = OptimizedSequence([("region=1".to_string(), 5)].into_iter().collect());
        assert!(sequence.covers("region=1", 5) && sequence.covers("region=1", 1));
        assert!(!sequence.covers("region=1", 6) && !sequence.covers("region=2", 1));
    }
}
