//! Loch's catalog service: internal catalogs whose metadata pointers live in the metadata
//! store and whose metadata files live in the catalog's warehouse.
//!
//! Everything that changes a table goes through [`CatalogService::commit_tables`]: requirements
//! are checked against the current metadata, updates applied with iceberg's
//! `TableMetadataBuilder`, the next metadata file written, and the pointer swapped by
//! compare-and-swap. The Iceberg REST routes, optimizing commits, maintenance and SQL all use
//! that one path.

mod catalogs;
mod commit;
mod error;
pub mod ident;
mod json_order;
pub mod keyed;
mod metadata;
mod namespaces;
mod purge;
mod requirements;
pub mod retry;
mod service;
pub mod storage;
mod tables;
mod views;

pub use catalogs::{
    INTERNAL, MASK, NON_PERSISTED_TABLE_PREFIXES, TABLE_DEFAULT_PREFIX, mask_secrets, persisted_table_defaults,
};
pub use commit::{CommittedTable, TableChange, TableLock};
pub use error::{CatalogError, Result};
pub use metadata::{CachedMetadata, parse_version};
pub use purge::PurgeStats;
pub use service::{CatalogService, ResolvedCatalog, ServiceOptions};
pub use tables::{CreateTable, FORMAT_ICEBERG, LoadedTable, TableName};
pub use views::{CreateView, LoadedView, ViewChange, ViewRequirement};
