//! Decoding many small manifests at once.
//!
//! Streaming writers leave one small manifest per commit, and decoding one with iceberg-rust
//! costs about 0.9 ms however few entries it holds: the Avro reader parses the header's writer
//! schema and resolves it against the reader schema for every file. Manifests of one table share
//! that header's metadata (schema, partition spec, content, codec; iceberg-rust writes the keys
//! in no fixed order), so the data blocks of manifests with equal metadata are joined into one
//! Avro container, under the first file's header and sync marker, and decoded in one pass; the
//! entries are split back by the blocks' object counts. Anything unexpected falls back to
//! decoding each file alone, which also gives iceberg's own error for a bad file.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{Manifest, ManifestEntry, ManifestFile, ManifestMetadata, ManifestStatus};

use crate::error::Result;

/// Avro object container magic.
const MAGIC: &[u8; 4] = b"Obj\x01";
/// Length of a container's sync marker.
const SYNC: usize = 16;

/// A metadata key and its value.
type Pair<'a> = (&'a [u8], &'a [u8]);

/// An Avro object container cut into its parts, borrowing the file's bytes.
struct Container<'a> {
    /// Magic and file metadata.
    header: &'a [u8],
    /// The metadata's entries sorted by key: equal ones mean equal schemas and codec.
    metadata: Vec<Pair<'a>>,
    /// The sync marker after the header.
    sync: &'a [u8],
    /// Data blocks (object count, byte size, data), without their trailing sync markers.
    blocks: Vec<&'a [u8]>,
    /// Objects in all blocks.
    objects: u64,
}

/// Decodes `files` (each a manifest list entry with its file's bytes), joining files with equal
/// headers; one result per file, in order.
pub(crate) fn decode_many(files: &[(ManifestFile, bytes::Bytes)]) -> Vec<Result<Manifest>> {
    let containers: Vec<Option<Container>> = files.iter().map(|(_, bytes)| Container::parse(bytes)).collect();
    let mut groups: HashMap<&[Pair], Vec<usize>> = HashMap::new();
    for (index, container) in containers.iter().enumerate() {
        if let Some(container) = container {
            groups.entry(&container.metadata).or_default().push(index);
        }
    }
    let mut out: Vec<Option<Result<Manifest>>> = (0..files.len()).map(|_| None).collect();
    for members in groups.into_values().filter(|m| m.len() > 1) {
        let parts: Vec<&Container> = members.iter().filter_map(|i| containers[*i].as_ref()).collect();
        let Some((metadata, split)) = decode_joined(&parts) else { continue };
        for (index, entries) in members.into_iter().zip(split) {
            let (manifest, _) = &files[index];
            out[index] = Some(Ok(Manifest::new(metadata.clone(), inherit(manifest, entries))));
        }
    }
    out.into_iter()
        .zip(files)
        .map(|(done, (manifest, bytes))| done.unwrap_or_else(|| decode(manifest, bytes)))
        .collect()
}

/// Decodes one manifest's bytes; its entries inherit what they leave out from the list entry,
/// as [`ManifestFile::load_manifest`] does.
pub(crate) fn decode(manifest: &ManifestFile, bytes: &[u8]) -> Result<Manifest> {
    let (entries, metadata) = Manifest::parse_avro(bytes)?.into_parts();
    let entries = entries.into_iter().map(Arc::unwrap_or_clone).collect();
    Ok(Manifest::new(metadata, inherit(manifest, entries)))
}

/// Fills in snapshot ids and sequence numbers the entries leave to their list entry: added
/// entries, and all entries of a v1 manifest (sequence number 0), take its sequence number.
fn inherit(manifest: &ManifestFile, mut entries: Vec<ManifestEntry>) -> Vec<ManifestEntry> {
    for entry in &mut entries {
        entry.snapshot_id.get_or_insert(manifest.added_snapshot_id);
        if entry.status == ManifestStatus::Added || manifest.sequence_number == 0 {
            entry.sequence_number.get_or_insert(manifest.sequence_number);
            entry.file_sequence_number.get_or_insert(manifest.sequence_number);
        }
    }
    entries
}

/// Decodes containers of one header as one: the shared metadata and each one's entries, or
/// `None` when the joined file does not decode into exactly their objects.
fn decode_joined(parts: &[&Container]) -> Option<(ManifestMetadata, Vec<Vec<ManifestEntry>>)> {
    let first = parts.first()?;
    let size = parts.iter().map(|c| c.blocks.iter().map(|b| b.len() + SYNC).sum::<usize>()).sum::<usize>();
    let mut joined = Vec::with_capacity(first.header.len() + SYNC + size);
    joined.extend_from_slice(first.header);
    joined.extend_from_slice(first.sync);
    for container in parts {
        for block in &container.blocks {
            joined.extend_from_slice(block);
            joined.extend_from_slice(first.sync);
        }
    }
    let (entries, metadata) = Manifest::parse_avro(&joined).ok()?.into_parts();
    if entries.len() as u64 != parts.iter().map(|c| c.objects).sum::<u64>() {
        return None;
    }
    let mut entries = entries.into_iter().map(Arc::unwrap_or_clone);
    let split = parts.iter().map(|c| entries.by_ref().take(c.objects as usize).collect()).collect();
    Some((metadata, split))
}

impl<'a> Container<'a> {
    /// Cuts `bytes` into header, sync marker and blocks; `None` for anything but a well-formed
    /// container whose every block ends in its sync marker.
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        if !bytes.starts_with(MAGIC) {
            return None;
        }
        let mut pos = MAGIC.len();
        let mut metadata = Vec::new();
        // File metadata: a map of string keys to byte values, in blocks ending with a 0 count.
        loop {
            let count = read_long(bytes, &mut pos)?;
            if count == 0 {
                break;
            }
            if count < 0 {
                read_long(bytes, &mut pos)?; // The block's byte size.
            }
            for _ in 0..count.unsigned_abs() {
                let key = read_bytes(bytes, &mut pos)?;
                metadata.push((key, read_bytes(bytes, &mut pos)?));
            }
        }
        metadata.sort_unstable();
        let header = &bytes[..pos];
        let sync = bytes.get(pos..pos + SYNC)?;
        pos += SYNC;
        let mut blocks = Vec::new();
        let mut objects = 0u64;
        while pos < bytes.len() {
            let start = pos;
            let count = u64::try_from(read_long(bytes, &mut pos)?).ok()?;
            let size = usize::try_from(read_long(bytes, &mut pos)?).ok()?;
            let end = pos.checked_add(size)?;
            if bytes.get(end..end.checked_add(SYNC)?)? != sync {
                return None;
            }
            blocks.push(&bytes[start..end]);
            objects = objects.checked_add(count)?;
            pos = end + SYNC;
        }
        Some(Self { header, metadata, sync, blocks, objects })
    }
}

/// Reads a zig-zag encoded variable-length long at `pos`.
fn read_long(bytes: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

/// Reads a length-prefixed string or bytes value at `pos`.
fn read_bytes<'a>(bytes: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(read_long(bytes, pos)?).ok()?;
    let value = bytes.get(*pos..pos.checked_add(len)?)?;
    *pos += len;
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_decode_zig_zag_and_refuse_truncation() {
        let cases: [(&[u8], i64); 5] = [(&[0], 0), (&[1], -1), (&[2], 1), (&[0x80, 0x01], 64), (&[0x7f], -64)];
        for (bytes, want) in cases {
            assert_eq!(read_long(bytes, &mut 0), Some(want), "{bytes:?}");
        }
        assert_eq!(read_long(&[0x80], &mut 0), None);
        assert_eq!(read_long(&[0xff; 11], &mut 0), None);
    }

    #[test]
    fn malformed_containers_are_refused() {
        assert!(Container::parse(b"").is_none());
        assert!(Container::parse(b"Obj\x02\0").is_none());
        // An empty metadata map, a sync marker and no blocks: well formed.
        let mut empty = b"Obj\x01\0".to_vec();
        empty.extend([7u8; SYNC]);
        let parsed = Container::parse(&empty).map(|c| (c.blocks.len(), c.objects));
        assert_eq!(parsed, Some((0, 0)));
        // A block whose size runs past the end, and one without its sync marker.
        let mut past = empty.clone();
        past.extend([2, 100, 1, 2, 3]);
        assert!(Container::parse(&past).is_none());
        let mut unsynced = empty.clone();
        unsynced.extend([2, 2, 9]);
        unsynced.extend([8u8; SYNC]);
        assert!(Container::parse(&unsynced).is_none());
    }
}
