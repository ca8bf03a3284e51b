//! SQL over Loch's tables (DataFusion): statements parsed with Loch's DDL and maintenance
//! extensions, run against a Loch server (or its catalog service) through [`Backend`], with
//! table providers for Iceberg and Mixed-Iceberg keyed tables.

pub mod backend;
pub mod ddl;
pub mod dml;
pub mod engine;
pub mod error;
pub mod evolve;
pub mod http;
pub mod iceberg_scan;
pub mod keyed;
mod merge;
pub mod meta_tables;
mod scan;
pub mod statement;
pub mod time_travel;
pub mod write;

pub use backend::{Backend, LoadedTable, TableRef};
pub use engine::{Output, SqlEngine};
pub use error::SqlError;
pub use http::HttpBackend;
pub use iceberg_scan::{IcebergScanExec, IcebergTableProvider};
pub use keyed::{KeyedScanExec, KeyedTableProvider};
pub use statement::{ColumnChange, Located, Statement, parse_script, split_script};
