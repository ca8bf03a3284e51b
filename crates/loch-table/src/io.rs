//! The storage every Loch FileIO uses: iceberg's OpenDAL storage behind a guard that parses each
//! path as a [`Location`] first.
//!
//! OpenDAL's local storage strips `file:/` and hands the rest to the file system, so
//! `file://localhost/p` would land in `/localhost/p` and `..` segments would be resolved by the
//! kernel. The guard refuses paths that do not parse, gives the inner storage the canonical
//! spelling, and refuses to read local files that are not regular files (a FIFO would hang a
//! reader forever, `/dev/zero` would never end). Where a table's files may be is decided above
//! this layer (the catalog's storage policy); this layer makes sure a path means what it says.
//!
//! Whole-file writes and deletes of local files bypass OpenDAL: it takes every unknown I/O
//! error as temporary and retries for about seven seconds, where a full disk or a file in place
//! of a directory will not heal.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{
    FileIO, FileIOBuilder, FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;
use serde::{Deserialize, Serialize};

use crate::location::Location;

/// A FileIO over Loch's guarded storage, configured with Iceberg FileIO properties
/// (`s3.endpoint`, `s3.region`, ...).
pub fn file_io(props: impl IntoIterator<Item = (String, String)>) -> FileIO {
    FileIOBuilder::new(Arc::new(GuardedStorageFactory::default())).with_props(props).build()
}

/// Builds [`GuardedStorage`] over iceberg's resolving OpenDAL storage.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GuardedStorageFactory {
    inner: OpenDalResolvingStorageFactory,
}

#[typetag::serde]
impl StorageFactory for GuardedStorageFactory {
    fn build(&self, config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        let inner = self.inner.build(config)?;
        let props = config.props().clone();
        Ok(Arc::new_cyclic(|me| GuardedStorage { props, inner: Some(inner), me: me.clone() }))
    }
}

/// Storage that checks every path before the inner storage sees it (see the module docs).
#[derive(Debug, Serialize, Deserialize)]
pub struct GuardedStorage {
    props: HashMap<String, String>,
    #[serde(skip)]
    inner: Option<Arc<dyn Storage>>,
    #[serde(skip)]
    me: Weak<GuardedStorage>,
}

impl GuardedStorage {
    fn inner(&self) -> Result<&Arc<dyn Storage>> {
        self.inner.as_ref().ok_or_else(|| {
            Error::new(ErrorKind::Unexpected, "guarded storage was deserialized; rebuild it from its factory")
        })
    }

    fn me(&self) -> Result<Arc<dyn Storage>> {
        let me: Arc<GuardedStorage> =
            self.me.upgrade().ok_or_else(|| Error::new(ErrorKind::Unexpected, "guarded storage is gone"))?;
        Ok(me)
    }

    /// Reads of local files must hit regular files; anything else is refused before opening.
    async fn check_readable(location: &Location) -> Result<()> {
        let Some(path) = location.local_path() else { return Ok(()) };
        match tokio::fs::metadata(&path).await {
            Ok(meta) if !meta.is_file() => Err(not_regular(location)),
            // Missing files and other errors are the inner storage's to report, in its kinds.
            _ => Ok(()),
        }
    }
}

/// The guard's refusal of a local path that is not a regular file (a FIFO, a device, a
/// directory): opening one could block or read without end.
fn not_regular(location: &Location) -> Error {
    Error::new(ErrorKind::DataInvalid, format!("{} is not a regular file", location.as_str()))
}

/// Writes a whole local file. OpenDAL would retry a full disk or a missing directory for
/// seconds (it takes every unknown I/O error as temporary) and leave a partial file; this
/// fails at once and removes what it wrote.
async fn write_local(path: std::path::PathBuf, bytes: Bytes) -> Result<()> {
    let shown = path.display().to_string();
    let written = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
            return Err(std::io::Error::other("the path exists and is not a regular file"));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
        let result = file.write_all(&bytes).and_then(|()| file.flush());
        if result.is_err() {
            drop(file);
            let _ = std::fs::remove_file(&path);
        }
        result
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Unexpected, format!("write task failed: {e}")))?;
    written.map_err(|e| Error::new(ErrorKind::Unexpected, format!("cannot write {shown}: {e}")).with_source(e))
}

/// Reads a whole local file on the calling thread, with the guard's checks (a path that parses,
/// a regular file). For small files read by callers off the async workers or about to decode
/// them there: a read through the storage costs an async hop per system call. `None` when
/// `path` is not a local file.
pub fn read_local_blocking(path: &str) -> Option<Result<Bytes>> {
    let location = Location::parse(path).ok()?;
    let local = location.local_path()?;
    let failed = |e: std::io::Error| {
        let kind =
            if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::DataInvalid } else { ErrorKind::Unexpected };
        Error::new(kind, format!("cannot read {path}: {e}")).with_source(e)
    };
    Some(match std::fs::metadata(&local) {
        Ok(meta) if !meta.is_file() => Err(not_regular(&location)),
        Ok(_) => std::fs::read(&local).map(Bytes::from).map_err(failed),
        Err(e) => Err(failed(e)),
    })
}

/// Parses a path for storage: the canonical spelling, or a `DataInvalid` error.
pub fn storage_path(path: &str) -> Result<(Location, String)> {
    let location =
        Location::parse(path).map_err(|e| Error::new(ErrorKind::DataInvalid, format!("refused path: {e}")))?;
    let canonical = location.canonical();
    Ok((location, canonical))
}

#[async_trait]
#[typetag::serde]
impl Storage for GuardedStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        let (_, path) = storage_path(path)?;
        self.inner()?.exists(&path).await
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let (_, path) = storage_path(path)?;
        self.inner()?.metadata(&path).await
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let (location, path) = storage_path(path)?;
        Self::check_readable(&location).await?;
        self.inner()?.read(&path).await
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        let (location, path) = storage_path(path)?;
        Self::check_readable(&location).await?;
        self.inner()?.reader(&path).await
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        let (location, path) = storage_path(path)?;
        match location.local_path() {
            Some(local) => write_local(local, bs).await,
            None => self.inner()?.write(&path, bs).await,
        }
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        let (_, path) = storage_path(path)?;
        self.inner()?.writer(&path).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let (location, path) = storage_path(path)?;
        match location.local_path() {
            // OpenDAL would retry for seconds on an error that cannot heal (a file for a directory).
            Some(local) => {
                match tokio::fs::remove_file(&local).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(()),
                    Err(e) => Err(Error::new(ErrorKind::Unexpected, format!("cannot delete {}: {e}", local.display()))
                        .with_source(e)),
                }
            }
            None => self.inner()?.delete(&path).await,
        }
    }

    /// Deletes a whole directory (never a string prefix: `t` must not take `t2` along).
    async fn delete_prefix(&self, path: &str) -> Result<()> {
        let (location, path) = storage_path(path)?;
        match location.local_path() {
            // std's remove_dir_all does not follow symbolic links.
            Some(local) => tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&local) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::new(ErrorKind::Unexpected, format!("cannot delete {}: {e}", local.display()))
                        .with_source(e))
                }
                _ => Ok(()),
            })
            .await
            .map_err(|e| Error::new(ErrorKind::Unexpected, format!("delete task failed: {e}")))?,
            None => self.inner()?.delete_prefix(&format!("{path}/")).await,
        }
    }

    async fn delete_stream(&self, paths: BoxStream<'static, String>) -> Result<()> {
        let checked: Vec<String> = paths
            .map(|p| storage_path(&p).map(|(_, c)| c))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        self.inner()?.delete_stream(futures::stream::iter(checked).boxed()).await
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        storage_path(path)?;
        Ok(InputFile::new(self.me()?, path.to_string()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        storage_path(path)?;
        Ok(OutputFile::new(self.me()?, path.to_string()))
    }
}
