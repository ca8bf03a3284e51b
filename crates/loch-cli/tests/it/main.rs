//! The `loch` binary as users run it: `loch serve` and `loch optimizer` processes, driven over
//! HTTP and by PyIceberg, started, signalled and killed.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;
mod optimizing;
mod serve;
