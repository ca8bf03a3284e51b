//! SQL over Loch's tables (DataFusion): table providers for Mixed-Iceberg keyed tables today;
//! catalog and schema providers, DDL with primary keys and terminal sessions with the SQL
//! terminal.

pub mod keyed;

pub use keyed::{KeyedScanExec, KeyedTableProvider};
