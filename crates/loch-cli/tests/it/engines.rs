//! Other engines against `loch serve`: Spark 3.5 with Iceberg's own Java runtime, DuckDB's
//! iceberg extension, and a schema-driven fuzz of both OpenAPI documents. Each is a Python
//! program under `tests/python`, run by the test venv that `dev/test` prepares.

use std::path::Path;
use std::process::Command;

use crate::common::Serve;

/// Runs `python -m pytest FILE` (or `python FILE ARGS` for a plain script) against `server`.
/// A script that exits 2 could not run (its spec could not be fetched, say): a loud skip.
fn python(server: &Serve, file: &str, pytest: bool, args: &[&str], env: &[(&str, String)]) {
    let Some(python) = loch_testkit::python() else { return };
    let root = loch_testkit::workspace_root();
    let mut command = Command::new(python);
    if pytest {
        command.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"]);
    }
    command
        .arg(root.join("tests/python").join(file))
        .args(args)
        .current_dir(&root)
        .env("LOCH_URI", format!("{}/api/iceberg/rest", server.url))
        .env("LOCH_WAREHOUSE", "local")
        .env("LOCH_MANAGEMENT", &server.url)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let output = command.output().expect("python runs");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !pytest && output.status.code() == Some(2) {
        loch_testkit::unavailable(file, &report);
        return;
    }
    assert!(output.status.success(), "{file} failed:\n{report}\nserver log:\n{}", server.proc.log_tail());
    eprintln!("{file}: {}", report.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default());
}

/// `file://DIR/warehouse`, a warehouse outside the server's data directory.
fn warehouse_env(dir: &Path) -> String {
    format!("file://{}", dir.join("warehouse").display())
}

#[test]
fn spark_writes_deletes_and_evolves_and_reads_the_same_rows_after_loch_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = warehouse_env(dir.path());
    let server = Serve::start_with(
        &dir.path().join("data"),
        loch_testkit::free_port(),
        &[
            ("LOCH_CATALOG_DEFAULT__WAREHOUSE", &warehouse),
            ("LOCH_OPTIMIZER_LOCAL__THREADS", "1"),
            ("LOCH_REFRESH__TABLES_INTERVAL", "1s"),
        ],
    );
    python(&server, "test_spark.py", true, &[], &[]);
}

#[test]
fn duckdb_lists_and_reads_a_pyiceberg_table_with_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start_with(
        &dir.path().join("data"),
        loch_testkit::free_port(),
        &[("LOCH_OPTIMIZER_LOCAL__THREADS", "0")],
    );
    python(&server, "test_duckdb.py", true, &[], &[]);
}

#[test]
fn fuzzing_both_openapi_documents_finds_no_server_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start_with(
        &dir.path().join("data"),
        loch_testkit::free_port(),
        &[("LOCH_OPTIMIZER_LOCAL__THREADS", "0")],
    );
    let cache = std::env::var("LOCH_TOOLS_DIR")
        .map(|d| format!("{d}/openapi"))
        .unwrap_or_else(|_| format!("{}/.cache/loch-tools/openapi", std::env::var("HOME").unwrap_or_default()));
    python(
        &server,
        "fuzz_openapi.py",
        false,
        &["--timeout", "240"],
        &[("LOCH_URL", server.url.clone()), ("LOCH_SPEC_CACHE", cache)],
    );
}
