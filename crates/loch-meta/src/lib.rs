//! Loch's metadata store: the relational state behind the catalog service and, later, the
//! optimizing and maintenance services.
//!
//! One [`MetaStore`] speaks to SQLite (the embedded default, WAL mode, one writer connection)
//! or PostgreSQL. Both run the same SQL text: statements use `$N` placeholders, which both
//! drivers accept, and every value is a plain integer or string. Each public method is one
//! domain operation and, where it writes, one transaction.

mod catalogs;
mod error;
mod groups;
mod namespaces;
mod page;
mod processes;
mod purges;
mod runtimes;
mod samples;
mod store;
mod tables;
mod tokens;

pub use catalogs::{CatalogRecord, NewCatalog};
pub use error::{MetaError, Result};
pub use groups::{GroupRecord, OptimizerRecord};
pub use namespaces::{NamespaceRecord, PropertyChanges};
pub use page::{Page, PageRequest};
pub use processes::{NewProcess, NewTask, ProcessRecord, TaskRecord, TaskRun};
pub use purges::{NewPurge, PurgeRecord};
pub use runtimes::{NamedRuntime, RuntimeRecord};
pub use samples::TotalsSample;
pub use store::{Backend, MetaStore, StoreOptions};
pub use tables::{
    CommitBatch, NewTable, Occupant, PointerSwap, TableKind, TablePointer, TableRecord, TableStats, VersionCheck,
};
pub use tokens::TokenRecord;

/// Milliseconds since the Unix epoch, the time unit of every column in the store.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
