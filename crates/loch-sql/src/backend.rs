//! Where the SQL engine finds and changes tables: a Loch server over HTTP (the CLI) or the
//! server's own catalog service (its terminal). One small trait, so statements run the same
//! against either.

use std::collections::HashMap;
use std::fmt;

use arrow_array::RecordBatch;
use async_trait::async_trait;
use iceberg::spec::{Schema, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};

use crate::error::Result;

/// A table as statements name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    /// Catalog.
    pub catalog: String,
    /// Namespace levels.
    pub namespace: Vec<String>,
    /// Table.
    pub name: String,
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.catalog, self.namespace.join("."), self.name)
    }
}

/// A table as loaded: plain Iceberg, or keyed (Mixed-Iceberg: a base and a change store).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // One per statement and table, never in bulk.
pub enum LoadedTable {
    /// An Iceberg table.
    Iceberg(Table),
    /// A keyed table.
    Keyed {
        /// The base store (the table's name; it carries the schema, spec and properties).
        base: Table,
        /// The change store.
        change: Table,
        /// Primary key columns.
        primary_key: Vec<String>,
    },
}

impl LoadedTable {
    /// The store that carries the table's schema, spec and properties.
    pub fn table(&self) -> &Table {
        match self {
            Self::Iceberg(table) | Self::Keyed { base: table, .. } => table,
        }
    }

    /// The primary key (empty for Iceberg tables).
    pub fn primary_key(&self) -> &[String] {
        match self {
            Self::Iceberg(_) => &[],
            Self::Keyed { primary_key, .. } => primary_key,
        }
    }
}

/// What `CREATE TABLE` asks for.
#[derive(Debug, Clone)]
pub struct NewTable {
    /// Columns with field ids assigned.
    pub schema: Schema,
    /// Partitioning, unbound (field ids of source columns).
    pub partition_spec: Option<UnboundPartitionSpec>,
    /// Table properties.
    pub properties: HashMap<String, String>,
    /// Primary key: a keyed table when not empty.
    pub primary_key: Vec<String>,
}

/// A maintenance action and what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionOutcome {
    /// One line for the terminal.
    pub message: String,
    /// Files it removed or would remove.
    pub files: Vec<String>,
}

/// What `OPTIMIZE` came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptimizeOutcome {
    /// The process planned, with its type (`minor`, `major`, `full`) and task count; `None`
    /// when nothing is worth optimizing.
    pub process: Option<(i64, String, i64)>,
    /// One line for the terminal.
    pub message: String,
}

/// Catalog operations the SQL engine needs.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// Names of the catalogs.
    async fn catalogs(&self) -> Result<Vec<String>>;
    /// Namespaces of `catalog` (each as its levels).
    async fn namespaces(&self, catalog: &str) -> Result<Vec<Vec<String>>>;
    /// Creates a namespace.
    async fn create_namespace(&self, catalog: &str, namespace: &[String]) -> Result<()>;
    /// Drops an empty namespace.
    async fn drop_namespace(&self, catalog: &str, namespace: &[String]) -> Result<()>;
    /// Names of the tables of a namespace (keyed tables once, without their change store).
    async fn tables(&self, catalog: &str, namespace: &[String]) -> Result<Vec<String>>;
    /// Loads a table at its current metadata; `None` when it does not exist.
    async fn load(&self, table: &TableRef) -> Result<Option<LoadedTable>>;
    /// Creates a table.
    async fn create(&self, table: &TableRef, new: NewTable) -> Result<()>;
    /// Drops a table (with its files when `purge`).
    async fn drop_table(&self, table: &TableRef, purge: bool) -> Result<()>;
    /// Commits to one store of a table (`store` is the table's name or its change store's).
    async fn commit(
        &self,
        table: &TableRef,
        store: &str,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
    ) -> Result<()>;
    /// Writes changes (the table's columns and `_op`) to a keyed table as one transaction.
    async fn ingest(&self, table: &TableRef, changes: Vec<RecordBatch>) -> Result<()>;
    /// Runs a maintenance action (`expire-snapshots`, `clean-orphan-files`) now.
    async fn maintain(&self, table: &TableRef, action: &str, options: serde_json::Value) -> Result<ActionOutcome>;
    /// Asks the optimizing service to plan a process on the table now (`full`: a full one
    /// where worth it).
    async fn optimize(&self, table: &TableRef, full: bool) -> Result<OptimizeOutcome>;
}
