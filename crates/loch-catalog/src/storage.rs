//! A catalog's warehouse: where its tables live and how to reach that storage.
//!
//! Storage settings are catalog properties named as Iceberg's FileIO names them (`s3.endpoint`,
//! `s3.region`, `s3.access-key-id`, `s3.secret-access-key`, `s3.path-style-access`, ...), so the
//! same map configures Loch's own FileIO and is handed to clients in load-table results.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use iceberg::io::{FileIO, FileIOBuilder};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;

use crate::error::{CatalogError, Result};

/// Catalog property holding the warehouse location.
pub const WAREHOUSE: &str = "warehouse";

/// Prefixes of catalog properties that configure storage clients.
const STORAGE_PREFIXES: [&str; 2] = ["s3.", "client."];

/// Catalog properties whose values are secrets (masked in the management API).
pub const SECRET_PROPERTIES: [&str; 2] = ["s3.secret-access-key", "s3.session-token"];

/// The storage of one catalog.
#[derive(Debug, Clone)]
pub struct Warehouse {
    /// Normalized warehouse location (`file:///...` or `s3://bucket/prefix`), no trailing `/`.
    pub location: String,
    /// FileIO for the warehouse.
    pub file_io: FileIO,
    /// Storage properties a client needs to read and write the catalog's tables.
    pub client_config: HashMap<String, String>,
}

impl Warehouse {
    /// Builds the storage of a catalog from its properties; fails on a missing or unsupported
    /// warehouse location.
    pub fn from_properties(properties: &BTreeMap<String, String>) -> Result<Arc<Self>> {
        let raw = properties
            .get(WAREHOUSE)
            .ok_or_else(|| CatalogError::BadRequest("catalog property `warehouse` is required".into()))?;
        let location = normalize_location(raw)?;
        let client_config: HashMap<String, String> = properties
            .iter()
            .filter(|(k, _)| STORAGE_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let file_io = FileIOBuilder::new(Arc::new(OpenDalResolvingStorageFactory::new()))
            .with_props(client_config.clone())
            .build();
        Ok(Arc::new(Self { location, file_io, client_config }))
    }

    /// Default location of a table or view: `{warehouse}/{namespace levels}/{name}`.
    pub fn default_location(&self, namespace: &[String], name: &str) -> String {
        let mut location = self.location.clone();
        for part in namespace.iter().map(String::as_str).chain([name]) {
            location.push('/');
            location.push_str(part);
        }
        location
    }

    /// True when `location` lies inside this warehouse.
    pub fn contains(&self, location: &str) -> bool {
        location.starts_with(&format!("{}/", self.location))
    }
}

/// True when `path` lies under the directory `dir` (`s3a://` and `s3://` are the same store).
pub fn is_under(path: &str, dir: &str) -> bool {
    let canonical = |p: &str| match p.strip_prefix("s3a://") {
        Some(rest) => format!("s3://{rest}"),
        None => p.to_string(),
    };
    let dir = canonical(dir.trim_end_matches('/'));
    canonical(path).starts_with(&format!("{dir}/"))
}

/// Directories a table writes files to: its location, plus `write.data.path` and
/// `write.metadata.path` when set.
pub fn table_directories(metadata: &iceberg::spec::TableMetadata) -> Vec<String> {
    let mut dirs = vec![metadata.location().trim_end_matches('/').to_string()];
    for key in ["write.data.path", "write.metadata.path"] {
        if let Some(dir) = metadata.properties().get(key) {
            dirs.push(dir.trim_end_matches('/').to_string());
        }
    }
    dirs
}

/// Normalizes a location: `/abs/path` becomes `file:///abs/path`; `file://`, `s3://` and
/// `s3a://` are accepted; trailing slashes are removed.
pub fn normalize_location(raw: &str) -> Result<String> {
    let raw = raw.trim();
    let location = if raw.starts_with('/') { format!("file://{raw}") } else { raw.to_string() };
    let supported = ["file:///", "s3://", "s3a://"].iter().any(|s| location.starts_with(s));
    let rest = location.split_once("://").map(|(_, r)| r.trim_matches('/')).unwrap_or_default();
    if !supported || rest.is_empty() || location.contains("/../") || location.ends_with("/..") {
        return Err(CatalogError::BadRequest(format!(
            "unsupported location {raw:?}: expected an absolute file:///path or s3://bucket/prefix"
        )));
    }
    Ok(location.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_normalized() {
        assert_eq!(normalize_location("/data/wh/").unwrap(), "file:///data/wh");
        assert_eq!(normalize_location("s3://bucket/prefix/").unwrap(), "s3://bucket/prefix");
        assert_eq!(normalize_location("s3://bucket").unwrap(), "s3://bucket");
        for bad in ["relative/path", "hdfs://nn/wh", "s3://", "file://", "file:///a/../b", "gs://b"] {
            assert!(normalize_location(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_under_directories() {
        assert!(is_under("s3://b/t/metadata/x.avro", "s3://b/t"));
        assert!(is_under("s3a://b/t/x", "s3://b/t/"));
        assert!(!is_under("s3://b/t2/x", "s3://b/t"));
        assert!(!is_under("s3://b/t", "s3://b/t"));
        assert!(!is_under("file:///etc/passwd", "file:///wh/t"));
    }

    #[test]
    fn default_locations_nest_namespaces() {
        let props =
            BTreeMap::from([(WAREHOUSE.to_string(), "s3://b/wh".to_string()), ("s3.region".into(), "r".into())]);
        let wh = Warehouse::from_properties(&props).unwrap();
        assert_eq!(wh.default_location(&["a".into(), "b".into()], "t"), "s3://b/wh/a/b/t");
        assert!(wh.contains("s3://b/wh/a/b/t"));
        assert!(!wh.contains("s3://b/wh2/t"));
        assert_eq!(wh.client_config.get("s3.region").map(String::as_str), Some("r"));
        assert!(!wh.client_config.contains_key(WAREHOUSE));
    }
}
