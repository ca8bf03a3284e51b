//! Amoro's table properties of Mixed-Iceberg stores, and telling a store from its properties:
//! a base or change store must never be treated as a plain Iceberg table by optimizing or data
//! expiration (change-store delete rows are Iceberg *data* files; compacting them as data would
//! bring deleted rows back).

use std::collections::HashMap;

/// `table-format`: `MIXED_ICEBERG` (or `MIXED_HIVE`) on a Mixed table's base store.
pub const TABLE_FORMAT: &str = "table-format";
/// `mixed-format.table-store`: `base` or `change`.
pub const TABLE_STORE: &str = "mixed-format.table-store";
/// `mixed-format.primary-key-fields`: the key's columns, comma-separated.
pub const PRIMARY_KEY_FIELDS: &str = "mixed-format.primary-key-fields";
/// `base.file-index.hash-bucket` (4).
pub const BASE_BUCKETS: &str = "base.file-index.hash-bucket";
/// `change.file-index.hash-bucket` (4).
pub const CHANGE_BUCKETS: &str = "change.file-index.hash-bucket";
/// `write.upsert.enabled` (false).
pub const UPSERT: &str = "write.upsert.enabled";

/// The primary key columns a base store's properties name (empty for an unkeyed table).
pub fn primary_key(properties: &HashMap<String, String>) -> Vec<String> {
    properties
        .get(PRIMARY_KEY_FIELDS)
        .map(|k| k.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect())
        .unwrap_or_default()
}

/// The base store's bucket count (`base.file-index.hash-bucket`, 4 by default), a power of two.
pub fn base_buckets(properties: &HashMap<String, String>) -> crate::Result<u32> {
    let Some(text) = properties.get(BASE_BUCKETS) else { return Ok(4) };
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| n.is_power_of_two())
        .ok_or_else(|| crate::TableError::Invalid(format!("{BASE_BUCKETS} is {text:?}, not a power of two")))
}

/// Change-store property: the greatest transaction whose change files the change-data TTL
/// removed; CDC reads starting before it would miss changes and are refused.
pub const REMOVED_THROUGH: &str = "loch.change-data.removed-through";

/// Which store of a Mixed table an Iceberg table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The base store (the table's location).
    Base,
    /// The change store (`<location>/change`).
    Change,
}

/// The Mixed store a table's properties say it is, if any.
pub fn store_of(properties: &HashMap<String, String>) -> Option<Store> {
    match properties.get(TABLE_STORE).map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("change") => Some(Store::Change),
        Some(_) => Some(Store::Base),
        None => properties
            .get(TABLE_FORMAT)
            .is_some_and(|f| f.to_ascii_uppercase().starts_with("MIXED"))
            .then_some(Store::Base),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_told_by_amoro_s_properties() {
        let props = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(store_of(&props(&[(TABLE_STORE, "change")])), Some(Store::Change));
        assert_eq!(store_of(&props(&[(TABLE_STORE, "base")])), Some(Store::Base));
        assert_eq!(store_of(&props(&[(TABLE_FORMAT, "MIXED_ICEBERG")])), Some(Store::Base));
        assert_eq!(store_of(&props(&[(TABLE_FORMAT, "ICEBERG")])), None);
        assert_eq!(store_of(&props(&[])), None);
    }
}
