//! A table's branches and tags: iceberg-rust keeps them private in its metadata; its
//! serialized form holds them.

use std::collections::BTreeMap;

use iceberg::spec::{SnapshotReference, TableMetadata};

use crate::error::{Result, TableError};

/// Every branch and tag of `metadata`, by name.
pub fn refs(metadata: &TableMetadata) -> Result<BTreeMap<String, SnapshotReference>> {
    let json = serde_json::to_value(metadata).map_err(|e| TableError::Invalid(e.to_string()))?;
    match json.get("refs") {
        Some(refs) => serde_json::from_value(refs.clone()).map_err(|e| TableError::Invalid(e.to_string())),
        None => Ok(BTreeMap::new()),
    }
}
