//! `loch serve` starts with nothing but flags, serves, shuts down cleanly on SIGTERM and SIGINT,
//! and keeps every namespace and table across restarts.

use std::process::Command;

use reqwest::Method;
use serde_json::json;

use crate::common::{LOCH, Serve, http::call};

#[test]
fn serve_restart_keeps_namespaces_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = loch_testkit::free_port();
    let server = Serve::start(&data, port);
    let rest = format!("{}/api/iceberg/rest/v1/catalogs/local", server.url);

    let (status, _) =
        call(Method::POST, &format!("{rest}/namespaces"), Some(json!({"namespace": ["db"], "properties": {"a": "b"}})));
    assert_eq!(status, 200);
    let schema = json!({"type": "struct", "fields": [{"id": 1, "name": "id", "type": "long", "required": true}]});
    let (status, created) =
        call(Method::POST, &format!("{rest}/namespaces/db/tables"), Some(json!({"name": "t", "schema": schema})));
    assert_eq!(status, 200, "{created}");
    let commit = json!({"requirements": [], "updates": [{"action": "set-properties", "updates": {"k": "v"}}]});
    let (status, committed) = call(Method::POST, &format!("{rest}/namespaces/db/tables/t"), Some(commit));
    assert_eq!(status, 200, "{committed}");

    // The embedded defaults: SQLite in DIR/loch.db, the `local` catalog's warehouse in DIR/warehouse.
    assert!(data.join("loch.db").exists());
    assert!(data.join("warehouse/db/t/metadata").is_dir());
    let stdout = server.stop("TERM");
    assert!(stdout.contains("/api/iceberg/rest"), "the banner says where to connect: {stdout}");
    assert!(stdout.contains("load_catalog("), "the banner shows PyIceberg: {stdout}");

    let server = Serve::start(&data, port);
    let (_, namespaces) = call(Method::GET, &format!("{rest}/namespaces"), None);
    assert_eq!(namespaces["namespaces"], json!([["db"]]));
    let (_, ns) = call(Method::GET, &format!("{rest}/namespaces/db"), None);
    assert_eq!(ns["properties"]["a"], "b");
    let (status, table) = call(Method::GET, &format!("{rest}/namespaces/db/tables/t"), None);
    assert_eq!(status, 200);
    assert_eq!(table["metadata-location"], committed["metadata-location"]);
    assert_eq!(table["metadata"]["properties"]["k"], "v");
    server.stop("INT");
}

#[test]
fn configuration_comes_from_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("loch.yaml");
    std::fs::write(&config, "catalog:\n  default-name: lake\n").unwrap();
    let port = loch_testkit::free_port();
    let mut command = Command::new(LOCH);
    command
        .args(["serve", "--config"])
        .arg(&config)
        .env("LOCH_DATA__DIR", dir.path().join("d"))
        .env("LOCH_BIND", format!("127.0.0.1:{port}"));
    let server = Serve::spawn(command, port);
    let url = server.url.clone();
    let (_, catalogs) = call(Method::GET, &format!("{url}/api/v1/catalogs"), None);
    assert_eq!(catalogs[0]["name"], "lake");
    assert!(dir.path().join("d/loch.db").exists());
    server.stop("TERM");
}

#[test]
fn bad_configuration_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("loch.yaml");
    std::fs::write(&config, "databse:\n  url: x\n").unwrap();
    let output = Command::new(LOCH).args(["serve", "--config"]).arg(&config).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("loch: "), "{stderr}");
    assert!(stderr.contains("databse"), "{stderr}");

    let output = Command::new(LOCH)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("LOCH_DATABASE_URL", "mysql://nope")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid database url"));

    let output =
        Command::new(LOCH).args(["optimizer", "--ams", "http://127.0.0.1:1", "--threads", "0"]).output().unwrap();
    assert!(!output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stderr), "loch: --threads must be at least 1\n");
}
