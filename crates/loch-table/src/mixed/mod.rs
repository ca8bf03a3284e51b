//! Amoro's Mixed-Iceberg format, the layout of primary-key tables: a base store and a change
//! store (both plain Iceberg tables) whose files are spread over a tree of hash buckets by
//! primary key and named so that readers know each file's bucket, kind and transaction.
//! Each concept lives in its own module, matching Amoro's on-disk conventions exactly, so a
//! table Loch writes reads in Amoro's engines and the other way round.

pub mod change;
pub mod file_name;
pub mod fold;
pub mod key;
pub mod key_hash;
pub mod merge;
pub mod optimize;
pub mod overwrite;
pub mod plan;
pub mod properties;
pub mod prune;
pub mod sequence;
pub mod tree;
pub mod writer;
