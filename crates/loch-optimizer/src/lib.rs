//! The optimizer worker: executes rewrite tasks (reads input files with deletes applied, writes
//! target-sized files and position deletes) and speaks the optimizer protocol. It runs embedded
//! in `loch serve` or as `loch optimizer`, and never depends on the server or the metadata store.

pub mod client;
pub mod equality;
mod error;
pub mod executor;
mod keyed;
pub mod plain_read;
pub mod position;
pub mod read_ahead;
pub mod row_group_merge;
pub mod worker;

pub use client::{Credential, HttpCoordinator};
pub use error::{ExecuteError, Result};
pub use worker::{Coordinator, WorkerConfig};
