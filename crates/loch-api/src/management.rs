//! Management API types (`/api/v1/...`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A catalog as the management API shows it (secret properties masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    /// Unique name; also the Iceberg REST `warehouse`.
    pub name: String,
    /// Catalog type; `internal` is the only one so far.
    #[serde(rename = "type")]
    pub kind: String,
    /// Catalog properties: `warehouse`, storage settings (`s3.*`, `client.*`) and table
    /// defaults (`table.*`).
    pub properties: BTreeMap<String, String>,
    /// Creation time, ms since epoch.
    pub created_at: i64,
    /// Last change, ms since epoch.
    pub updated_at: i64,
}

/// Body of `POST /api/v1/catalogs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCatalogRequest {
    /// Unique name (letters, digits, `_`, `-`, `.`).
    pub name: String,
    /// Catalog type; defaults to `internal`.
    #[serde(rename = "type", default = "internal")]
    pub kind: String,
    /// Catalog properties; `warehouse` (`file:///...` or `s3://bucket/prefix`) is required.
    pub properties: BTreeMap<String, String>,
}

fn internal() -> String {
    "internal".to_string()
}

/// Body of `PUT /api/v1/catalogs/{name}`: the complete new property set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateCatalogRequest {
    /// New properties; secret values sent back masked (`******`) are kept.
    pub properties: BTreeMap<String, String>,
}

/// A table of a catalog with statistics of its current snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogTable {
    /// Namespace levels.
    pub namespace: Vec<String>,
    /// Table name.
    pub name: String,
    /// Table format: `iceberg`, or `mixed-iceberg` / `mixed-iceberg-change` for the two stores
    /// of a keyed table.
    pub format: String,
    /// A keyed table's primary-key columns (absent for other tables).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub primary_key: Vec<String>,
    /// Live data and delete files.
    pub file_count: i64,
    /// Live data files.
    pub data_files: i64,
    /// Live delete files.
    pub delete_files: i64,
    /// Bytes in live files.
    pub total_size: i64,
    /// Rows in live data files.
    pub total_records: i64,
    /// Time of the current snapshot, ms since epoch; absent for empty tables.
    pub last_commit_time: Option<i64>,
    /// Current metadata file.
    pub metadata_location: String,
    /// The last run of each maintenance action, by action; absent when none ran.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty", default)]
    pub maintenance: std::collections::BTreeMap<String, crate::optimizing::MaintenanceRun>,
}

/// A dropped table whose files are still being deleted (`purgeRequested`); its location stays
/// taken until the purge finishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Purge {
    /// Purge id.
    pub id: i64,
    /// `namespace.table` as dropped.
    pub table: String,
    /// The location whose files are deleted.
    pub location: String,
    /// When the table was dropped, ms since epoch.
    pub dropped_at: i64,
    /// Failed attempts so far (it is retried every minute).
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// Health of the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok` when the metadata store answers.
    pub status: String,
    /// Server version.
    pub version: String,
}

fn iceberg_format() -> String {
    "iceberg".to_string()
}

/// Body of `POST /api/v1/catalogs/{catalog}/namespaces/{ns}/tables`: a plain Iceberg table, or
/// a keyed table in Amoro's Mixed-Iceberg format (base store `name`, change store `name@change`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTableRequest {
    /// Table name.
    pub name: String,
    /// `iceberg` (default) or `mixed-iceberg`.
    #[serde(default = "iceberg_format")]
    pub format: String,
    /// The schema, as Iceberg's JSON writes it (`{"type": "struct", "fields": [...]}`).
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
    /// The partition spec, as Iceberg's JSON writes it; unpartitioned when absent.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub partition_spec: Option<serde_json::Value>,
    /// Primary-key columns (required for `mixed-iceberg`, refused for `iceberg`).
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Table properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// A table created through the management API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedTable {
    /// Namespace levels.
    pub namespace: Vec<String>,
    /// Name (for a keyed table: its base store; the change store is `name@change`).
    pub name: String,
    /// `iceberg` or `mixed-iceberg`.
    pub format: String,
    /// Table location.
    pub location: String,
    /// Current metadata file (of the base store).
    pub metadata_location: Option<String>,
    /// Primary-key columns (empty for plain tables).
    pub primary_key: Vec<String>,
}
