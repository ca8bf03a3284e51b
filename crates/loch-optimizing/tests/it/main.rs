//! Integration tests of self-optimizing on a real catalog (SQLite) and real files: evaluation,
//! planning, execution by the optimizer's executor, and commits — rows before and after must be
//! identical, also with writers committing in between.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;
mod data_expire;
mod expiry;
mod keyed;
mod orphans;
mod rewrite;
mod service;
