//! Keyed (Mixed-Iceberg) tables through `loch serve`: created by the management API as a base
//! store `t` and a change store `t@change` at `<location>/change`, both plain Iceberg tables to
//! the REST catalog; changes written into the change store with Amoro's names and columns read
//! back through PyIceberg and merge correctly; bad requests are 400s; dropping the table drops
//! both stores.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use loch_table::mixed::change::{ChangeOp, ChangeOptions, ChangeWriter};
use loch_table::mixed::file_name::{FileMeta, FileType};
use loch_table::mixed::merge::merge_on_read;
use loch_table::snapshot::{RowDelta, SnapshotAction};
use loch_testkit::data::{arrow_schema, commit_over_rest};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Backend, Storage, TestServer, call};

fn create_body(name: &str, format: &str, primary_key: &[&str]) -> Value {
    json!({
        "name": name,
        "format": format,
        "schema": {"type": "struct", "schema-id": 0, "fields": [
            {"id": 1, "name": "id", "required": true, "type": "long"},
            {"id": 2, "name": "name", "required": false, "type": "string"},
        ]},
        "primary_key": primary_key,
        "properties": {"self-optimizing.enabled": "false"},
    })
}

/// A PyIceberg helper's answer for `table` (`digest` or `reachable`).
async fn tables_py(server: &TestServer, command: &str, table: &str) -> Option<Value> {
    let python = loch_testkit::python()?;
    let script = loch_testkit::workspace_root().join("tests/python/tables.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .args([command, table])
        .env("LOCH_URI", format!("{}/api/iceberg/rest", server.url))
        .env("LOCH_WAREHOUSE", "local")
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "tables.py {command} {table}: {}", String::from_utf8_lossy(&output.stderr));
    Some(serde_json::from_str(String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default()).unwrap())
}

async fn keyed_tables(server: TestServer) {
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::new("kt".into());
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    let path = "/api/v1/catalogs/local/namespaces/kt/tables";

    // Bad requests create nothing.
    for (body, expected) in [
        (create_body("bad", "mixed-iceberg", &[]), "needs a primary key"),
        (create_body("bad", "mixed-iceberg", &["nope"]), "\"nope\" is not a top-level column"),
        (create_body("bad", "delta", &[]), "unknown table format"),
        (create_body("bad", "iceberg", &["id"]), "needs format mixed-iceberg"),
        (create_body("bad@change", "mixed-iceberg", &["id"]), "must not end with @change"),
    ] {
        let (status, answer) = call(&server, Method::POST, path, Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(expected), "{answer}");
    }
    assert!(catalog.list_tables(&ns).await.unwrap().is_empty());

    let (status, created) =
        call(&server, Method::POST, path, Some(create_body("orders", "mixed-iceberg", &["id"]))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!((created["format"].as_str(), created["primary_key"].clone()), (Some("mixed-iceberg"), json!(["id"])));
    let mut names: Vec<String> =
        catalog.list_tables(&ns).await.unwrap().into_iter().map(|t| t.name().to_string()).collect();
    names.sort();
    assert_eq!(names, vec!["orders", "orders@change"]);
    let (status, again) =
        call(&server, Method::POST, path, Some(create_body("orders", "mixed-iceberg", &["id"]))).await;
    assert_eq!(status, 409, "{again}");

    let base_ident = TableIdent::new(ns.clone(), "orders".into());
    let change_ident = TableIdent::new(ns.clone(), "orders@change".into());
    let base = catalog.load_table(&base_ident).await.unwrap();
    let change = catalog.load_table(&change_ident).await.unwrap();
    let props = base.metadata().properties();
    assert_eq!(props.get("table-format").map(String::as_str), Some("MIXED_ICEBERG"));
    assert_eq!(props.get("mixed-format.primary-key-fields").map(String::as_str), Some("id"));
    assert_eq!(change.metadata().properties().get("mixed-format.table-store").map(String::as_str), Some("change"));
    assert_eq!(change.metadata().location(), format!("{}/change", base.metadata().location()));
    assert_eq!(change.metadata().current_schema().as_struct(), base.metadata().current_schema().as_struct());
    let listing = call(&server, Method::GET, "/api/v1/catalogs/local/tables", None).await.1;
    let formats: BTreeMap<String, String> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t["format"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(formats.get("orders").map(String::as_str), Some("mixed-iceberg"));
    assert_eq!(formats.get("orders@change").map(String::as_str), Some("mixed-iceberg-change"));

    // One transaction: five inserts, an update of 2, a delete of 3.
    let rows: Vec<(i64, &str, ChangeOp)> = vec![
        (1, "a", ChangeOp::Insert),
        (2, "b", ChangeOp::Insert),
        (3, "c", ChangeOp::Insert),
        (4, "d", ChangeOp::Insert),
        (5, "e", ChangeOp::Insert),
        (2, "b", ChangeOp::UpdateBefore),
        (2, "b2", ChangeOp::UpdateAfter),
        (3, "c", ChangeOp::Delete),
    ];
    let batch = RecordBatch::try_new(
        arrow_schema(&change),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .unwrap();
    let ops: Vec<ChangeOp> = rows.iter().map(|r| r.2).collect();
    let mut writer = ChangeWriter::new(&change, &["id".to_string()], ChangeOptions::default()).unwrap();
    writer.write(&batch, &ops).unwrap();
    let mut delta = RowDelta::new();
    for f in writer.finish().await.unwrap() {
        delta = delta.add_rows(f);
    }
    let pending = delta.prepare(&change).await.unwrap();
    let (status, body) =
        commit_over_rest(&server.http, &server.catalog_url(), &change_ident, &pending, server.token.as_deref())
            .await
            .unwrap();
    assert_eq!(status, 200, "{body}");
    let change = catalog.load_table(&change_ident).await.unwrap();

    let merged = merge_on_read(&base, &change, &["id".to_string()]).await.unwrap();
    let mut read: Vec<(i64, String)> = Vec::new();
    for b in &merged {
        let (ids, names) = (b.column(0).as_primitive::<Int64Type>(), b.column(1).as_string::<i32>());
        read.extend((0..b.num_rows()).map(|i| (ids.value(i), names.value(i).to_string())));
        assert_eq!(b.column(1).null_count(), 0);
    }
    read.sort();
    let expected: Vec<(i64, String)> =
        [(1, "a"), (2, "b2"), (4, "d"), (5, "e")].into_iter().map(|(i, n)| (i, n.to_string())).collect();
    assert_eq!(read, expected);

    // PyIceberg sees the base store (empty) and the change store: eight change rows in files
    // named as Amoro names them, with the `_file_offset` column.
    if let Some(digest) = tables_py(&server, "digest", "kt.orders").await {
        assert_eq!(digest["rows"], 0, "{digest}");
        let digest = tables_py(&server, "digest", "kt.orders@change").await.unwrap();
        assert_eq!(digest["rows"], 8, "{digest}");
        let reachable = tables_py(&server, "reachable", "kt.orders@change").await.unwrap();
        let files: Vec<&str> = reachable["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f.as_str())
            .filter(|f| f.ends_with(".parquet"))
            .collect();
        assert!(!files.is_empty());
        for file in &files {
            let meta = FileMeta::of_change(file, 0);
            assert_eq!(meta.node.mask(), 3, "{file} is named after a bucket of 4");
            assert!(matches!(meta.file_type, FileType::Insert | FileType::EqDelete), "{file}");
            assert!(file.contains("/change/data/"), "{file}");
        }
    }

    // The change store cannot be dropped or renamed alone; dropping the table drops both.
    let drop_change = "/api/iceberg/rest/v1/catalogs/local/namespaces/kt/tables/orders@change";
    let (status, body) = call(&server, Method::DELETE, drop_change, None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("drop kt.orders instead"), "{body}");
    let rename =
        json!({"source": {"namespace": ["kt"], "name": "orders"}, "destination": {"namespace": ["kt"], "name": "o2"}});
    let (status, body) =
        call(&server, Method::POST, "/api/iceberg/rest/v1/catalogs/local/tables/rename", Some(rename)).await;
    assert_eq!(status, 400, "{body}");
    catalog.drop_table(&base_ident).await.unwrap();
    assert!(catalog.list_tables(&ns).await.unwrap().is_empty(), "both stores are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_tables_sqlite_file() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    keyed_tables(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_tables_postgres_s3() {
    let Some(server) = TestServer::start(Backend::Postgres, Storage::S3).await else { return };
    keyed_tables(server).await;
}
