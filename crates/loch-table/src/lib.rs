//! Table operations on top of iceberg-rust that iceberg-rust 0.10 lacks.
//!
//! iceberg-rust can append files but not remove them. This crate builds snapshots that add and
//! remove data and delete files (overwrite now; rewrite and row-delta with Java-equivalent
//! validation as self-optimizing needs them) from iceberg's public manifest and manifest-list
//! writers. A [`snapshot::SnapshotAction`] turns into the requirements and updates that the
//! catalog's single commit path applies, so the same action commits in-process or over REST. It also
//! writes the files optimizing produces: data files with columns encoded in parallel
//! ([`parquet`]) and position delete files ([`position_delete`]).

mod error;
pub mod expire;
pub mod filter;
pub mod io;
pub mod location;
mod manifest_batch;
pub mod manifest_cache;
pub mod mixed;
pub mod orphans;
pub mod parquet;
pub mod position_delete;
pub mod refs;
pub mod scan;
pub mod snapshot;
pub mod write;

pub use error::{Result, TableError};
