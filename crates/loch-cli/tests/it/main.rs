//! The `loch` binary as users run it: `loch serve` and `loch optimizer` processes, driven over
//! HTTP, by PyIceberg, Spark and DuckDB, started, signalled and killed.

#![allow(clippy::unwrap_used, missing_docs)]

mod browser;
mod common;
mod dashboard;
mod durability;
mod engines;
mod optimizing;
mod serve;
mod sql;
