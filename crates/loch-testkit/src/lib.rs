//! Test fixtures shared by Loch's test suites: a PostgreSQL server, an S3-compatible server
//! (garage), and the Python interpreter of the test venv.
//!
//! `dev/test` starts PostgreSQL and garage once through the `loch-fixtures` runner and passes
//! their addresses in `LOCH_TEST_*` variables. A test process started without them (plain
//! `cargo nextest run`) starts private servers that a watchdog stops when the process exits.
//! What cannot run is skipped with a loud message, unless `LOCH_TEST_REQUIRE_ALL=1` (set by
//! `dev/test`) turns the skip into a failure.

pub mod data;
pub mod garage;
pub mod keyed;
pub mod local;
pub mod postgres;
mod process;
pub mod python;

use std::net::TcpListener;
use std::path::PathBuf;

pub use garage::{S3Fixture, s3};
pub use postgres::{PostgresFixture, postgres};
pub use python::python;

/// True when every fixture must be available (missing ones fail instead of skipping).
pub fn require_all() -> bool {
    std::env::var("LOCH_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Reports a fixture that is not available: fails under [`require_all`], else prints a loud skip.
pub fn unavailable(what: &str, why: &str) {
    if require_all() {
        panic!("{what} is required (LOCH_TEST_REQUIRE_ALL=1) but unavailable: {why}");
    }
    eprintln!(
        "\n==================== SKIPPED ====================\n{what} unavailable: {why}\nRun ./dev/test to run everything.\n=================================================\n"
    );
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free TCP port on 127.0.0.1")
}

/// A short random lowercase name, for databases, buckets and key prefixes.
pub fn unique_name(prefix: &str) -> String {
    use rand::Rng;
    let suffix: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(10)
        .map(|c| char::from(c).to_ascii_lowercase())
        .collect();
    format!("{prefix}{suffix}")
}

/// The workspace root (the directory holding the top `Cargo.toml`).
///
/// Taken from the running test's `CARGO_MANIFEST_DIR` (cargo and nextest set it) before the
/// compile-time one: a shared target directory may hold a build made in another checkout.
pub fn workspace_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.ancestors().nth(2).map(PathBuf::from).unwrap_or(manifest)
}
