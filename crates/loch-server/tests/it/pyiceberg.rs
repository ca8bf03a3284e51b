//! PyIceberg (in the test venv) against the server: `tests/python/test_pyiceberg.py` on every
//! combination of metadata store and warehouse, and once with authentication.

use crate::common::{Backend, CLIENT, Storage, TestServer};

async fn pytest(server: &TestServer) {
    let Some(python) = loch_testkit::python() else { return };
    let test = loch_testkit::workspace_root().join("tests/python/test_pyiceberg.py");
    let mut command = tokio::process::Command::new(python);
    command
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"])
        .arg(&test)
        .env("LOCH_URI", format!("{}/api/iceberg/rest", server.url))
        .env("LOCH_WAREHOUSE", "local");
    if server.token.is_some() {
        command.env("LOCH_CREDENTIAL", format!("{}:{}", CLIENT.0, CLIENT.1));
    }
    let output = command.output().await.expect("pytest runs");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "PyIceberg tests failed on {}:\n{report}", server.label());
    eprintln!("{}: {}", server.label(), report.lines().last().unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_sqlite_file() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    pytest(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_postgres_file() {
    let Some(server) = TestServer::start(Backend::Postgres, Storage::File).await else { return };
    pytest(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_sqlite_s3() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::S3).await else { return };
    pytest(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_postgres_s3() {
    let Some(server) = TestServer::start(Backend::Postgres, Storage::S3).await else { return };
    pytest(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_with_authentication() {
    let Some(server) = TestServer::start_with(Backend::Sqlite, Storage::File, true).await else { return };
    pytest(&server).await;
}
