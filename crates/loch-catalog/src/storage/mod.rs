//! A catalog's warehouse: where its tables live and how to reach that storage, and the storage
//! policy ([`policy`]) every read, write and delete of a table's files goes through.
//!
//! Storage settings are catalog properties named as Iceberg's FileIO names them (`s3.endpoint`,
//! `s3.region`, `s3.access-key-id`, `s3.secret-access-key`, `s3.path-style-access`, ...), so the
//! same map configures Loch's own FileIO and is handed to clients in load-table results.

pub mod policy;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use iceberg::io::FileIO;
use loch_table::location::Location;

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
    /// The warehouse location; every table and view of the catalog lives strictly inside it.
    pub location: Location,
    /// FileIO for the warehouse (Loch's guarded storage, see `loch_table::io`).
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
        let location = parse_location(WAREHOUSE, raw)?;
        if location.segments().is_empty() && location.local_path().is_some() {
            return Err(CatalogError::BadRequest(
                "invalid warehouse: the file system root cannot be a warehouse".into(),
            ));
        }
        let client_config: HashMap<String, String> = properties
            .iter()
            .filter(|(k, _)| STORAGE_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let file_io = loch_table::io::file_io(client_config.clone());
        Ok(Arc::new(Self { location, file_io, client_config }))
    }

    /// Default location of a table or view: `{warehouse}/{namespace levels}/{name}`, each part
    /// one path segment (a `/` in a name is written `%2F`).
    pub fn default_location(&self, namespace: &[String], name: &str) -> String {
        let mut location = self.location.as_str().to_string();
        for part in namespace.iter().map(String::as_str).chain([name]) {
            location.push('/');
            location.push_str(&part.replace('/', "%2F"));
        }
        location
    }

    /// True when `location` lies strictly inside this warehouse.
    pub fn contains(&self, location: &Location) -> bool {
        self.location.contains(location)
    }
}

/// Parses a location a client sent in `field`: a 400 naming the field when it is not one.
pub fn parse_location(field: &str, raw: &str) -> Result<Location> {
    let location = Location::parse(raw).map_err(|e| {
        CatalogError::BadRequest(format!(
            "invalid {field} {raw:?}: {}; expected an absolute file:/path or s3://bucket/prefix",
            e.reason()
        ))
    })?;
    if location.has_empty_segments() {
        return Err(CatalogError::BadRequest(format!("invalid {field} {raw:?}: it has an empty path segment")));
    }
    Ok(location)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_locations_nest_namespaces() {
        let props =
            BTreeMap::from([(WAREHOUSE.to_string(), "s3://b/wh".to_string()), ("s3.region".into(), "r".into())]);
        let wh = Warehouse::from_properties(&props).unwrap();
        assert_eq!(wh.default_location(&["a".into(), "b".into()], "t"), "s3://b/wh/a/b/t");
        assert_eq!(wh.default_location(&["a/b".into()], "c/d"), "s3://b/wh/a%2Fb/c%2Fd");
        assert!(wh.contains(&Location::parse("s3a://b/wh/a/b/t").unwrap()));
        assert!(!wh.contains(&Location::parse("s3://b/wh2/t").unwrap()));
        assert_eq!(wh.client_config.get("s3.region").map(String::as_str), Some("r"));
        assert!(!wh.client_config.contains_key(WAREHOUSE));
    }

    #[test]
    fn warehouses_must_be_locations() {
        for bad in ["relative", "file:///", "/", "hdfs://nn/wh", "s3://b/a//c", "file:///a/../b"] {
            let props = BTreeMap::from([(WAREHOUSE.to_string(), bad.to_string())]);
            assert!(Warehouse::from_properties(&props).is_err(), "{bad}");
        }
        let props = BTreeMap::from([(WAREHOUSE.to_string(), "file:/data/wh/".to_string())]);
        assert_eq!(Warehouse::from_properties(&props).unwrap().location.canonical(), "file:///data/wh");
    }
}
