//! Integration tests of the Loch server against real clients (iceberg-rust's REST client,
//! PyIceberg), real metadata stores (SQLite, PostgreSQL) and real storage (files, garage S3).

#![allow(clippy::unwrap_used, missing_docs)]

mod auth;
mod bad_input;
mod common;
mod concurrency;
mod confinement;
mod confinement_props;
mod http_limits;
mod keyed;
mod maintenance;
mod management;
mod optimizing;
mod pyiceberg;
mod rest_catalog;
mod terminal;
mod views_transactions;
