//! The storage policy: Loch owns where tables live, and touches only a table's own files.
//!
//! Every file operation of the catalog on a table goes through here:
//! - locations of new or moved tables and views lie strictly inside their catalog's warehouse,
//!   also after resolving symbolic links ([`check_new_location`]), and the directories a table's
//!   properties name lie inside the table's location ([`check_path_properties`]);
//! - writes land inside the acting table's location ([`write_inside`]);
//! - deletes touch only paths inside it; anything else a metadata file references is skipped and
//!   logged ([`delete_inside`], [`delete_tree`]);
//! - metadata reads are bounded in size and time ([`read_bounded`]); the storage layer below
//!   refuses non-regular local files.
//!
//! Overlaps between tables, views and purges are decided by the metadata store, in the same
//! transaction that claims a location.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::stream;
use iceberg::io::FileIO;
use loch_table::location::Location;

use super::{Warehouse, parse_location};
use crate::error::{CatalogError, Result};

/// Table properties naming directories a table writes to; each must lie inside the table.
pub const PATH_PROPERTIES: [&str; 4] =
    ["write.data.path", "write.metadata.path", "write.object-storage.path", "write.folder-storage.path"];

/// Limits on reading a metadata file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest file read (and largest decompressed content).
    pub max_bytes: u64,
    /// Longest a read may take.
    pub timeout: Duration,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self { max_bytes: 64 << 20, timeout: Duration::from_secs(30) }
    }
}

/// Counts of a confined delete.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    /// Paths handed to storage for deletion.
    pub deleted: u64,
    /// Paths left alone because they lie outside the table's location.
    pub skipped: u64,
}

/// Checks the location of a new or moved table or view (`field` names it in errors): a valid
/// location strictly inside the warehouse, also once symbolic links are resolved.
pub async fn check_new_location(warehouse: &Warehouse, field: &str, raw: &str) -> Result<Location> {
    let location = parse_location(field, raw)?;
    check_length(field, &location)?;
    if !warehouse.contains(&location) {
        return Err(CatalogError::BadRequest(format!(
            "invalid {field} {raw:?}: it must lie inside the catalog's warehouse {}",
            warehouse.location
        )));
    }
    if !resolves_inside(&warehouse.location, &location).await {
        return Err(CatalogError::BadRequest(format!(
            "invalid {field} {raw:?}: a symbolic link leads it out of the catalog's warehouse"
        )));
    }
    Ok(location)
}

/// Longest local path of a table's directory: room is left for the files inside it.
const MAX_LOCAL_PATH: usize = 3800;
/// Longest S3 key prefix of a table's directory (S3 keys end at 1,024 bytes).
const MAX_S3_KEY: usize = 800;
/// Longest file or directory name on common file systems.
const MAX_SEGMENT: usize = 255;

/// A 400 when a table's directory could not hold its files: a segment or the whole path is
/// longer than storage allows.
fn check_length(field: &str, location: &Location) -> Result<()> {
    let total: usize = location.segments().iter().map(|s| s.len() + 1).sum();
    let too_long = match location.local_path() {
        Some(_) => location.segments().iter().any(|s| s.len() > MAX_SEGMENT) || total > MAX_LOCAL_PATH,
        None => total > MAX_S3_KEY,
    };
    if too_long {
        return Err(CatalogError::BadRequest(format!(
            "invalid {field}: it is too long for storage ({total} bytes, names at most {MAX_SEGMENT}); use shorter names or an explicit location"
        )));
    }
    Ok(())
}

/// Checks that every directory a table's properties name lies inside the table's location.
pub fn check_path_properties(location: &Location, properties: &HashMap<String, String>) -> Result<()> {
    for key in PATH_PROPERTIES {
        let Some(value) = properties.get(key) else { continue };
        let dir = parse_location(key, value)?;
        if dir != *location && !location.contains(&dir) {
            return Err(CatalogError::BadRequest(format!(
                "invalid {key} {value:?}: it must lie inside the table's location {location}"
            )));
        }
    }
    Ok(())
}

/// Writes a file that must not exist yet at `path`, which must lie inside `scope`.
pub async fn write_inside(io: &FileIO, scope: &Location, path: &str, bytes: Bytes) -> Result<()> {
    let target = Location::parse(path).map_err(|e| CatalogError::Internal(format!("write target: {e}")))?;
    if !scope.contains(&target) {
        return Err(CatalogError::Internal(format!("refusing to write {path} outside {scope}")));
    }
    // The storage removes what a failed write left (see `loch_table::io`).
    let output = io.new_output(path).map_err(|e| CatalogError::storage(format!("create {path}"), e))?;
    output.write(bytes).await.map_err(|e| CatalogError::storage(format!("write {path}"), e))
}

/// Reads a whole metadata file within `limits`.
pub async fn read_bounded(io: &FileIO, path: &str, limits: ReadLimits) -> Result<Bytes> {
    let read = async {
        let input = io.new_input(path).map_err(|e| CatalogError::storage(format!("open {path}"), e))?;
        let size = input.metadata().await.map_err(|e| CatalogError::storage(format!("stat {path}"), e))?.size;
        if size > limits.max_bytes {
            return Err(CatalogError::BadRequest(format!(
                "{path} is {size} bytes, more than the limit of {} bytes for metadata files",
                limits.max_bytes
            )));
        }
        let bytes = input.read().await.map_err(|e| CatalogError::storage(format!("read {path}"), e))?;
        if bytes.len() as u64 > limits.max_bytes {
            return Err(CatalogError::BadRequest(format!(
                "{path} grew past the limit of {} bytes for metadata files while it was read",
                limits.max_bytes
            )));
        }
        Ok(bytes)
    };
    tokio::time::timeout(limits.timeout, read).await.unwrap_or_else(|_| {
        Err(CatalogError::BadRequest(format!("reading {path} took longer than {:?}", limits.timeout)))
    })
}

/// Deletes each of `paths` that lies inside `scope`, a table's location in `warehouse` (for
/// local files also after resolving symbolic links, of the files and of the location); others
/// are skipped and logged. Missing files are not an error.
pub async fn delete_inside(io: &FileIO, warehouse: &Location, scope: &Location, paths: Vec<String>) -> Result<Deleted> {
    let mut counts = Deleted::default();
    let mut inside = Vec::with_capacity(paths.len());
    let mut checked_dirs: HashMap<PathBuf, bool> = HashMap::new();
    if scope.local_path().is_some() && !resolves_inside(warehouse, scope).await {
        tracing::warn!(table_location = %scope, %warehouse, "a symbolic link leads the table's location out of the warehouse; deleting nothing");
        counts.skipped = paths.len() as u64;
        return Ok(counts);
    }
    let scope_real = match scope.local_path() {
        Some(path) => Some(resolve_existing(&path).await),
        None => None,
    };
    for path in paths {
        let owned = match Location::parse(&path) {
            Ok(location) if scope.contains(&location) => match (&scope_real, location.local_path()) {
                (Some(scope_real), Some(local)) => {
                    let dir = local.parent().map(Path::to_path_buf).unwrap_or_default();
                    match checked_dirs.get(&dir) {
                        Some(ok) => *ok,
                        None => {
                            let ok = resolve_existing(&dir).await.starts_with(scope_real);
                            checked_dirs.insert(dir, ok);
                            ok
                        }
                    }
                }
                _ => true,
            },
            _ => false,
        };
        if owned {
            inside.push(path);
        } else {
            tracing::warn!(%path, table_location = %scope, "not deleting a file outside the table's location");
            counts.skipped += 1;
        }
    }
    counts.deleted = inside.len() as u64;
    if !inside.is_empty() {
        io.delete_stream(stream::iter(inside)).await.map_err(|e| CatalogError::storage("delete files", e))?;
    }
    Ok(counts)
}

/// Deletes everything under a dropped table's location. Only when the location lies strictly
/// inside the warehouse, also after resolving symbolic links (a location recorded before Loch
/// confined tables may not); otherwise nothing happens and `false` is returned.
pub async fn delete_tree(io: &FileIO, warehouse: &Location, scope: &Location) -> Result<bool> {
    if !warehouse.contains(scope) || !resolves_inside(warehouse, scope).await {
        tracing::warn!(location = %scope, %warehouse, "not deleting a table directory outside the warehouse");
        return Ok(false);
    }
    if let Some(local) = scope.local_path()
        && tokio::fs::symlink_metadata(&local).await.is_ok_and(|m| m.file_type().is_symlink())
    {
        tracing::warn!(location = %scope, "not deleting a table directory that is a symbolic link");
        return Ok(false);
    }
    io.delete_prefix(scope.canonical()).await.map_err(|e| CatalogError::storage(format!("delete {scope}"), e))?;
    Ok(true)
}

/// True when, once symbolic links are resolved, `inner` still lies inside `outer` (always true
/// for object stores, which have no links).
pub async fn resolves_inside(outer: &Location, inner: &Location) -> bool {
    match (outer.local_path(), inner.local_path()) {
        (Some(outer), Some(inner)) => {
            let (outer, inner) = (resolve_existing(&outer).await, resolve_existing(&inner).await);
            inner.starts_with(&outer) && inner != outer
        }
        _ => true,
    }
}

/// The path with its longest existing prefix resolved to its real path (symbolic links
/// followed) and the rest appended as is.
async fn resolve_existing(path: &Path) -> PathBuf {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut rest = Vec::new();
        let mut current = path.as_path();
        loop {
            if let Ok(real) = std::fs::canonicalize(current) {
                return rest.into_iter().rev().fold(real, |acc: PathBuf, part| acc.join(part));
            }
            match (current.parent(), current.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    current = parent;
                }
                _ => return path.clone(),
            }
        }
    })
    .await
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(s: &str) -> Location {
        Location::parse(s).unwrap()
    }

    #[test]
    fn path_properties_stay_inside_the_table() {
        let table = loc("file:///wh/db/t");
        let props = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        assert!(check_path_properties(&table, &props("write.data.path", "file:/wh/db/t/data")).is_ok());
        assert!(check_path_properties(&table, &props("write.metadata.path", "/wh/db/t")).is_ok());
        assert!(check_path_properties(&table, &props("other", "/etc")).is_ok());
        for (key, value) in [
            ("write.data.path", "/tmp/x"),
            ("write.metadata.path", "file:///wh/db/t/../../../tmp/x"),
            ("write.object-storage.path", "/wh/db/t2"),
            ("write.folder-storage.path", "/wh/db"),
            ("write.metadata.path", "relative"),
            ("write.data.path", ""),
        ] {
            let err = check_path_properties(&table, &props(key, value)).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[tokio::test]
    async fn symbolic_links_do_not_lead_out() {
        let dir = tempfile::tempdir().unwrap();
        let wh = dir.path().join("wh");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(wh.join("db")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, wh.join("db/escape")).unwrap();
        let wh_loc = loc(wh.to_str().unwrap());
        assert!(resolves_inside(&wh_loc, &loc(&format!("{}/db/t/new", wh.display()))).await);
        assert!(!resolves_inside(&wh_loc, &loc(&format!("{}/db/escape/t", wh.display()))).await);

        let io = loch_table::io::file_io(HashMap::new());
        let victim = outside.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let scope = loc(&format!("{}/db/escape", wh.display()));
        let victim_path = format!("{}/db/escape/victim", wh.display());
        let deleted = delete_inside(&io, &wh_loc, &scope, vec![victim_path]).await.unwrap();
        assert_eq!(deleted, Deleted { deleted: 0, skipped: 1 });
        assert!(victim.exists());
        assert!(!delete_tree(&io, &wh_loc, &scope).await.unwrap());
        assert!(victim.exists());
        // A link inside a table's own directory leads out of it just the same.
        let table = wh.join("db/t");
        std::fs::create_dir_all(&table).unwrap();
        std::os::unix::fs::symlink(&outside, table.join("data")).unwrap();
        let table_loc = loc(table.to_str().unwrap());
        let paths = vec![format!("{}/data/victim", table.display()), format!("{}/own", table.display())];
        std::fs::write(table.join("own"), b"x").unwrap();
        let deleted = delete_inside(&io, &wh_loc, &table_loc, paths).await.unwrap();
        assert_eq!(deleted, Deleted { deleted: 1, skipped: 1 });
        assert!(victim.exists());
        assert!(!table.join("own").exists());
    }

    #[tokio::test]
    async fn reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; 4096]).unwrap();
        let io = loch_table::io::file_io(HashMap::new());
        let limits = ReadLimits { max_bytes: 1024, timeout: Duration::from_secs(5) };
        let err = read_bounded(&io, big.to_str().unwrap(), limits).await.unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        assert!(read_bounded(&io, "/dev/zero", limits).await.is_err());
        let small = dir.path().join("small.json");
        std::fs::write(&small, b"{}").unwrap();
        assert_eq!(read_bounded(&io, &format!("file:{}", small.display()), limits).await.unwrap(), "{}");
    }
}
