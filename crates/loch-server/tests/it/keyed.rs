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

use crate::common::{Backend, Storage, TestServer, call, tables_py};

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
    let orders = listing.as_array().unwrap().iter().find(|t| t["name"] == "orders").unwrap();
    assert_eq!(orders["primaryKey"], json!(["id"]), "{orders}");

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
    if let Some(digest) = tables_py(&server, &["digest", "kt.orders"]).await {
        assert_eq!(digest["rows"], 0, "{digest}");
        let digest = tables_py(&server, &["digest", "kt.orders@change"]).await.unwrap();
        assert_eq!(digest["rows"], 8, "{digest}");
        let reachable = tables_py(&server, &["reachable", "kt.orders@change"]).await.unwrap();
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

/// `batch` as an Arrow IPC stream.
fn ipc_of(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
    writer.write(batch).unwrap();
    writer.finish().unwrap();
    drop(writer);
    out
}

/// An Arrow IPC stream of `(id, name, op)` rows.
fn ipc(rows: &[(Option<i64>, &str, Option<&str>)]) -> Vec<u8> {
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("id", arrow_schema::DataType::Int64, true),
        arrow_schema::Field::new("name", arrow_schema::DataType::Utf8, true),
        arrow_schema::Field::new("_op", arrow_schema::DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap();
    ipc_of(&batch)
}

fn read_ipc(bytes: &[u8]) -> Vec<RecordBatch> {
    arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap().map(|b| b.unwrap()).collect()
}

/// An Arrow IPC stream of `rows` rows `(i, "bulk row i", op)` in messages of `per_message`.
fn ipc_batches(rows: i64, per_message: i64, op: &str) -> Vec<u8> {
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("id", arrow_schema::DataType::Int64, true),
        arrow_schema::Field::new("name", arrow_schema::DataType::Utf8, true),
        arrow_schema::Field::new("_op", arrow_schema::DataType::Utf8, true),
    ]));
    let mut out = Vec::new();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, &schema).unwrap();
    for start in (0..rows).step_by(per_message as usize) {
        let ids: Vec<i64> = (start..(start + per_message).min(rows)).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("bulk row {i} {}", "x".repeat(60))))),
                Arc::new(StringArray::from_iter_values(ids.iter().map(|_| op))),
            ],
        )
        .unwrap();
        writer.write(&batch).unwrap();
    }
    writer.finish().unwrap();
    drop(writer);
    out
}

/// Parquet files under `dir`.
fn parquet_files(dir: &std::path::Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            count += parquet_files(&path);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            count += 1;
        }
    }
    count
}

/// The (id, name) schema `id_names` reads.
fn read_schema() -> Arc<arrow_schema::Schema> {
    Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("id", arrow_schema::DataType::Int64, false),
        arrow_schema::Field::new("name", arrow_schema::DataType::Utf8, true),
    ]))
}

async fn post_changes(server: &TestServer, body: Vec<u8>) -> (u16, Value) {
    let mut request = server
        .http
        .post(format!("{}/api/v1/tables/local/kt/orders/changes", server.url))
        .header("content-type", "application/vnd.apache.arrow.stream")
        .body(body);
    if let Some(token) = &server.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get_ipc(server: &TestServer, path: &str) -> Vec<RecordBatch> {
    let response = server.http.get(format!("{}{path}", server.url)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/vnd.apache.arrow.stream");
    read_ipc(&response.bytes().await.unwrap())
}

fn id_names(batches: &[RecordBatch]) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for b in batches {
        let (ids, names) = (b.column(0).as_primitive::<Int64Type>(), b.column(1).as_string::<i32>());
        out.extend((0..b.num_rows()).map(|i| (ids.value(i), names.value(i).to_string())));
    }
    out.sort();
    out
}

/// The ingest route commits each request as one transaction and answers its id; the rows route
/// merges; the changes route gives the CDC window. Bad requests are 400s that commit nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_read_over_http() {
    let Some(server) = TestServer::start_configured(Backend::Sqlite, Storage::File, false, |config| {
        config.http.max_body_size = 64 * 1024;
        config.http.max_ingest_size = 8 << 20;
    })
    .await
    else {
        return;
    };
    let catalog = server.rest_catalog().await;
    catalog.create_namespace(&NamespaceIdent::new("kt".into()), HashMap::new()).await.unwrap();
    let mut body = create_body("orders", "mixed-iceberg", &["id"]);
    body["properties"]["write.upsert.enabled"] = json!("true");
    let (status, created) =
        call(&server, Method::POST, "/api/v1/catalogs/local/namespaces/kt/tables", Some(body)).await;
    assert_eq!(status, 201, "{created}");

    let (status, first) = post_changes(
        &server,
        ipc(&[(Some(1), "a", Some("+I")), (Some(2), "b", Some("+I")), (Some(3), "c", Some("+I"))]),
    )
    .await;
    assert_eq!((status, first["rows"].as_u64()), (200, Some(3)), "{first}");
    // Upsert: +I of an existing key replaces it.
    let (status, second) = post_changes(
        &server,
        ipc(&[(Some(2), "b2", Some("+I")), (Some(3), "c", Some("-D")), (Some(4), "d", Some("+I"))]),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let (t1, t2) = (first["transaction_id"].as_i64().unwrap(), second["transaction_id"].as_i64().unwrap());
    assert!(t2 > t1, "transactions follow commit order: {t1} {t2}");

    let merged = id_names(&get_ipc(&server, "/api/v1/tables/local/kt/orders/rows").await);
    let expected = vec![(1, "a".to_string()), (2, "b2".to_string()), (4, "d".to_string())];
    assert_eq!(merged, expected);
    // Columns in the order asked, rows the filter holds for; bad ones are 400s naming them.
    let picked =
        get_ipc(&server, "/api/v1/tables/local/kt/orders/rows?columns=name,id&filter=id%20in%20(1,%204)").await;
    let fields: Vec<String> = picked[0].schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(fields, ["name", "id"]);
    let swapped: Vec<RecordBatch> = picked
        .iter()
        .map(|b| RecordBatch::try_new(read_schema(), vec![b.column(1).clone(), b.column(0).clone()]).unwrap())
        .collect();
    assert_eq!(id_names(&swapped), [(1, "a".to_string()), (4, "d".to_string())]);
    let filtered =
        get_ipc(&server, "/api/v1/tables/local/kt/orders/rows?filter=name%20%3E%3D%20'b'%20and%20id%20!%3D%204").await;
    assert_eq!(id_names(&filtered), [(2, "b2".to_string())]);
    for (query, says) in [
        ("columns=nope", "no top-level column \"nope\""),
        ("columns=,", "names no column"),
        ("filter=id%20%3D%20x", "not a value of \"id\""),
        ("filter=nope%20%3D%201", "no column \"nope\""),
        ("filter=id%20%3D%201%20or%20id%20%3D%202", "expected `and`"),
    ] {
        let response =
            server.http.get(format!("{}/api/v1/tables/local/kt/orders/rows?{query}", server.url)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{query}");
        let answer: Value = response.json().await.unwrap();
        assert!(answer["error"]["message"].as_str().unwrap_or_default().contains(says), "{query}: {answer}");
    }
    let all = get_ipc(&server, "/api/v1/tables/local/kt/orders/changes").await;
    // With upsert, every +I is a delete and an insert: 3 × 2, then 2 + 1 + 2.
    assert_eq!(all.iter().map(RecordBatch::num_rows).sum::<usize>(), 11, "upserts delete first");
    let window = get_ipc(&server, &format!("/api/v1/tables/local/kt/orders/changes?from={t1}&to={t2}")).await;
    let actions: Vec<String> = window
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name("_change_action").unwrap().as_string::<i32>().clone();
            (0..a.len()).map(move |i| a.value(i).to_string()).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(actions, ["DELETE", "INSERT", "DELETE", "DELETE", "INSERT"], "the second transaction, in order");
    assert!(window.iter().all(|b| {
        b.column_by_name("_transaction_id").unwrap().as_primitive::<Int64Type>().values().iter().all(|t| *t == t2)
    }));

    // Bad input: a 4xx naming the problem, and the change store does not move.
    let change_ident = TableIdent::new(NamespaceIdent::new("kt".into()), "orders@change".into());
    let before = catalog.load_table(&change_ident).await.unwrap().metadata_location().map(str::to_string);
    let mut truncated = ipc(&[(Some(9), "z", Some("+I"))]);
    truncated.truncate(truncated.len() - 20);
    let no_id = {
        let schema = Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("name", arrow_schema::DataType::Utf8, true),
            arrow_schema::Field::new("_op", arrow_schema::DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec!["x"])), Arc::new(StringArray::from(vec!["+I"]))],
        )
        .unwrap();
        ipc_of(&batch)
    };
    let wrong_type = {
        let schema = Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("id", arrow_schema::DataType::Utf8, true),
            arrow_schema::Field::new("name", arrow_schema::DataType::Utf8, true),
            arrow_schema::Field::new("_op", arrow_schema::DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["not a number"])),
                Arc::new(StringArray::from(vec!["x"])),
                Arc::new(StringArray::from(vec!["+I"])),
            ],
        )
        .unwrap();
        ipc_of(&batch)
    };
    let dictionary = {
        let names: arrow_array::DictionaryArray<arrow_array::types::Int32Type> = vec!["x"].into_iter().collect();
        let schema = Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("id", arrow_schema::DataType::Int64, true),
            arrow_schema::Field::new("name", names.data_type().clone(), true),
            arrow_schema::Field::new("_op", arrow_schema::DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![5])), Arc::new(names), Arc::new(StringArray::from(vec!["+I"]))],
        )
        .unwrap();
        ipc_of(&batch)
    };
    let huge: Vec<(Option<i64>, &str, Option<&str>)> = (0..20_000).map(|i| (Some(i), "bulk", Some("+I"))).collect();
    for (body, status, expected) in [
        (ipc(&[(Some(5), "e", Some("+X"))]), 400, "unknown operation \"+X\""),
        (ipc(&[(Some(5), "e", None)]), 400, "unknown operation \"null\""),
        (ipc(&[(None, "e", Some("+I"))]), 400, "\"id\" is required but holds a null"),
        (no_id, 400, "column \"id\" of the table is missing"),
        (wrong_type, 400, "\"id\" is Utf8, which does not fit"),
        (truncated, 400, "Arrow IPC"),
        (b"not arrow at all".to_vec(), 400, "not an Arrow IPC stream"),
        (dictionary, 400, "not dictionary or run-end encoded"),
        (ipc(&huge), 413, ""),
    ] {
        let (got, answer) = post_changes(&server, body).await;
        assert_eq!(got, status, "{answer}");
        if !expected.is_empty() {
            assert!(answer["error"]["message"].as_str().unwrap_or_default().contains(expected), "{expected}: {answer}");
        }
    }
    // Over the ingest limit in many small messages: refused part-way, nothing committed, and
    // the files its buffer flushed are gone again.
    let warehouse = std::path::PathBuf::from(server.warehouse.trim_start_matches("file://"));
    let files_before = parquet_files(&warehouse);
    let (got, answer) = post_changes(&server, ipc_batches(150_000, 500, "+I")).await;
    assert_eq!(got, 413, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap_or_default().contains("http.max-ingest-size"), "{answer}");
    let after = catalog.load_table(&change_ident).await.unwrap().metadata_location().map(str::to_string);
    assert_eq!(before, after, "nothing was committed");
    assert_eq!(parquet_files(&warehouse), files_before, "no files left behind");

    // A body far over http.max-body-size streams through in messages under it.
    let big = ipc_batches(60_000, 500, "+I");
    assert!(big.len() > 16 * 64 * 1024, "{} bytes", big.len());
    let (got, answer) = post_changes(&server, big).await;
    assert_eq!((got, answer["rows"].as_u64()), (200, Some(60_000)), "{answer}");
    let rows = get_ipc(&server, "/api/v1/tables/local/kt/orders/rows?columns=id&filter=id%20%3E%3D%201000").await;
    assert_eq!(rows.iter().map(RecordBatch::num_rows).sum::<usize>(), 59_000);
    assert!(parquet_files(&warehouse) > files_before);
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/catalogs/local/namespaces/kt/tables",
        Some(create_body("plain", "iceberg", &[])),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let response = server.http.get(format!("{}/api/v1/tables/local/kt/plain/rows", server.url)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400, "a plain table has no merged rows");
}

/// The README's Python example (`tests/python/keyed_example.py`) runs against a fresh server:
/// PyArrow upserts over the ingest route and reads the merged rows and the CDC stream back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_python_example_works() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    let Some(python) = loch_testkit::python() else { return };
    let script = loch_testkit::workspace_root().join("tests/python/keyed_example.py");
    let output = tokio::process::Command::new(python).arg(script).env("LOCH_URL", &server.url).output().await.unwrap();
    assert!(output.status.success(), "keyed_example.py: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(summary["rows"], json!([{"id": 1, "status": "paid"}]), "{stdout}");
    assert_eq!(
        summary["changes"],
        json!([
            {"id": 1, "_change_action": "DELETE"},
            {"id": 1, "_change_action": "INSERT"},
            {"id": 2, "_change_action": "DELETE"},
        ]),
        "{stdout}"
    );
}

/// Creates namespace `kt` and the keyed table `kt.orders` (key `id`).
async fn create_orders(server: &TestServer) {
    server.rest_catalog().await.create_namespace(&NamespaceIdent::new("kt".into()), HashMap::new()).await.unwrap();
    let body = Some(create_body("orders", "mixed-iceberg", &["id"]));
    let (status, created) = call(server, Method::POST, "/api/v1/catalogs/local/namespaces/kt/tables", body).await;
    assert_eq!(status, 201, "{created}");
}

/// Concurrent ingests into one table all commit, one transaction each, and every row reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingests_serialize() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    create_orders(&server).await;
    let server = Arc::new(server);
    let mut handles = Vec::new();
    for w in 0..8i64 {
        let server = server.clone();
        handles.push(tokio::spawn(async move {
            let rows: Vec<(Option<i64>, &str, Option<&str>)> =
                (0..50).map(|i| (Some(w * 1000 + i), "x", Some("+I"))).collect();
            post_changes(&server, ipc(&rows)).await
        }));
    }
    let mut transactions = Vec::new();
    for handle in handles {
        let (status, answer) = handle.await.unwrap();
        assert_eq!(status, 200, "{answer}");
        transactions.push(answer["transaction_id"].as_i64().unwrap());
    }
    transactions.sort();
    assert_eq!(transactions, (1..=8).collect::<Vec<_>>(), "one transaction each, in commit order");
    let merged = id_names(&get_ipc(&server, "/api/v1/tables/local/kt/orders/rows").await);
    assert_eq!(merged.len(), 400);
}

/// Two servers on one PostgreSQL store and warehouse ingest into one table at once: their
/// locks are per process, so commits race in the store; the losers retry on the new head, and
/// every ingest gets its own transaction, in commit order, with no row lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingests_through_two_servers_serialize() {
    let Some(first) = TestServer::start(Backend::Postgres, Storage::File).await else { return };
    let shared = first.config().clone();
    let Some(second) = TestServer::start_configured(Backend::Postgres, Storage::File, false, |config| {
        config.database.url = shared.database.url.clone();
        config.data_dir = shared.data_dir.clone();
    })
    .await
    else {
        return;
    };
    create_orders(&first).await;
    let servers = [Arc::new(first), Arc::new(second)];
    let mut handles = Vec::new();
    for w in 0..12i64 {
        let server = servers[(w % 2) as usize].clone();
        handles.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for round in 0..3i64 {
                let rows: Vec<(Option<i64>, &str, Option<&str>)> =
                    (0..20).map(|i| (Some(w * 10_000 + round * 100 + i), "x", Some("+I"))).collect();
                answers.push(post_changes(&server, ipc(&rows)).await);
            }
            answers
        }));
    }
    let mut transactions = Vec::new();
    for handle in handles {
        for (status, answer) in handle.await.unwrap() {
            assert_eq!(status, 200, "{answer}");
            transactions.push(answer["transaction_id"].as_i64().unwrap());
        }
    }
    transactions.sort();
    assert_eq!(transactions, (1..=36).collect::<Vec<_>>(), "one transaction each, in commit order");
    for server in &servers {
        let merged = id_names(&get_ipc(server, "/api/v1/tables/local/kt/orders/rows").await);
        assert_eq!(merged.len(), 12 * 3 * 20, "every row, read through either server");
    }
}

/// The randomized model test through the HTTP routes: 25 ingests of random inserts, updates,
/// deletes and upserts (upsert on) on 300 keys; after every ingest `GET .../rows` equals the
/// model, and at the end replaying `GET .../changes` from the start gives it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_ingests_over_http_match_a_model() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    let catalog = server.rest_catalog().await;
    catalog.create_namespace(&NamespaceIdent::new("kt".into()), HashMap::new()).await.unwrap();
    let mut body = create_body("orders", "mixed-iceberg", &["id"]);
    body["properties"]["write.upsert.enabled"] = json!("true");
    let (status, created) =
        call(&server, Method::POST, "/api/v1/catalogs/local/namespaces/kt/tables", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let mut model: BTreeMap<i64, String> = BTreeMap::new();
    let mut state = 0x5eed_u64;
    let mut next = |below: u64| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % below
    };
    let mut total = 0;
    for commit in 0..25 {
        let mut rows: Vec<(Option<i64>, String, Option<&str>)> = Vec::new();
        let mut view = model.clone();
        for _ in 0..(20 + next(80)) {
            let id = next(300) as i64;
            let value = format!("c{commit}v{}", next(1_000_000));
            match (view.get(&id).cloned(), next(3)) {
                (Some(old), 0) => {
                    rows.push((Some(id), old, Some("-U")));
                    rows.push((Some(id), value.clone(), Some("+U")));
                    view.insert(id, value);
                }
                (Some(old), 1) => {
                    rows.push((Some(id), old, Some("-D")));
                    view.remove(&id);
                }
                // Upsert: insert whatever the key held.
                _ => {
                    rows.push((Some(id), value.clone(), Some("+I")));
                    view.insert(id, value);
                }
            }
        }
        total += rows.len();
        let borrowed: Vec<(Option<i64>, &str, Option<&str>)> = rows.iter().map(|r| (r.0, r.1.as_str(), r.2)).collect();
        let (status, answer) = post_changes(&server, ipc(&borrowed)).await;
        assert_eq!(status, 200, "{answer}");
        model = view;
        let merged = id_names(&get_ipc(&server, "/api/v1/tables/local/kt/orders/rows").await);
        let expected: Vec<(i64, String)> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
        assert_eq!(merged, expected, "merged rows after ingest {commit}");
    }
    assert!(total > 1_000, "{total} changes");
    let mut replayed: BTreeMap<i64, String> = BTreeMap::new();
    for b in get_ipc(&server, "/api/v1/tables/local/kt/orders/changes").await {
        let (ids, names) = (b.column(0).as_primitive::<Int64Type>(), b.column(1).as_string::<i32>());
        let actions = b.column_by_name("_change_action").unwrap().as_string::<i32>().clone();
        for i in 0..b.num_rows() {
            match actions.value(i) {
                "INSERT" | "UPDATE_AFTER" => replayed.insert(ids.value(i), names.value(i).to_string()),
                _ => replayed.remove(&ids.value(i)),
            };
        }
    }
    assert_eq!(replayed, model, "the CDC stream replays to the model");
}
/// `loch serve` optimizes keyed tables by itself: ingested transactions are folded by its
/// optimizer thread (the process shows its change-store inputs), and after a full optimizing
/// PyIceberg reading the base store alone sees exactly what the merge-on-read returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_tables_are_optimized_by_the_server() {
    let Some(server) = TestServer::start_configured(Backend::Sqlite, Storage::File, false, |config| {
        config.optimizer.local_threads = 1;
        config.refresh_tables.interval = std::time::Duration::from_millis(500);
    })
    .await
    else {
        return;
    };
    create_orders(&server).await;
    let props = json!({"requirements": [], "updates": [{"action": "set-properties", "updates": {
        "self-optimizing.enabled": "true",
        "self-optimizing.min-plan-interval": "0",
        "self-optimizing.minor.trigger.file-count": "1",
    }}]});
    let table = "/api/iceberg/rest/v1/catalogs/local/namespaces/kt/tables/orders";
    assert_eq!(call(&server, Method::POST, table, Some(props)).await.0, 200);
    for round in 0..6i64 {
        let rows: Vec<(Option<i64>, String, Option<&str>)> = (0..20)
            .map(|i| (Some((round * 7 + i) % 50), format!("r{round}i{i}"), Some(if i % 5 == 4 { "-D" } else { "+I" })))
            .collect();
        let rows: Vec<(Option<i64>, &str, Option<&str>)> =
            rows.iter().map(|(id, n, op)| (*id, n.as_str(), *op)).collect();
        let (status, body) = post_changes(&server, ipc(&rows)).await;
        assert_eq!(status, 200, "{body}");
    }
    let processes = "/api/v1/tables/local/kt/orders/optimizing/processes";
    let state = "/api/v1/tables/local/kt/orders/optimizing";
    let server = &server;
    let wait_for = |count: usize| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let list = call(server, Method::GET, processes, None).await.1;
            let done: Vec<Value> =
                list.as_array().unwrap().iter().filter(|p| p["status"] == "success").cloned().collect();
            if done.len() >= count && list.as_array().unwrap().iter().all(|p| p["status"] != "running") {
                return done;
            }
            if std::time::Instant::now() > deadline {
                let runtime = call(server, Method::GET, state, None).await.1;
                let metrics =
                    server.http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
                let metrics: Vec<&str> =
                    metrics.lines().filter(|l| l.contains("optimizing") && !l.starts_with('#')).collect();
                panic!("no keyed process finished: {list}; {runtime}; {metrics:?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    let done = wait_for(1).await;
    let stores = &done[0]["stores"];
    assert!(stores["changeInputFiles"].as_i64().unwrap() > 0, "{}", done[0]);
    assert!(stores["baseOutputFiles"].as_i64().unwrap() > 0, "{}", done[0]);

    // A property change is no data change: the next transaction is evaluated with it.
    let full = json!({"requirements": [], "updates": [{"action": "set-properties",
        "updates": {"self-optimizing.full.trigger.interval": "0"}}]});
    assert_eq!(call(server, Method::POST, table, Some(full)).await.0, 200);
    let (status, body) = post_changes(server, ipc(&[(Some(3), "late", Some("+I")), (Some(4), "x", Some("-D"))])).await;
    assert_eq!(status, 200, "{body}");
    let merged = id_names(&get_ipc(server, "/api/v1/tables/local/kt/orders/rows").await);
    let done = wait_for(done.len() + 1).await;
    assert!(done.iter().any(|p| p["type"] == "full"), "{done:?}");
    assert_eq!(id_names(&get_ipc(server, "/api/v1/tables/local/kt/orders/rows").await), merged);
    // The full process may have been planned before the late transaction landed (it folds what
    // came before); the next one folds the rest. Once no process is pending, PyIceberg reading
    // the base store alone sees what the merge-on-read returns.
    let rows: Vec<String> = merged.iter().map(|(id, name)| format!("{{\"id\": {id}, \"name\": \"{name}\"}}")).collect();
    let sha = sha256_hex(format!("[{}]", rows.join(", ")).as_bytes());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let Some(digest) = tables_py(server, &["digest", "kt.orders"]).await else { break };
        if digest["sha256"] == sha.as_str() {
            assert_eq!(digest["rows"], merged.len(), "{digest}");
            assert_eq!(digest["delete_files"], 0, "no deletes left after full optimizing: {digest}");
            break;
        }
        if std::time::Instant::now() >= deadline {
            // What the server thinks of the table, to tell a plan that never came from a wrong fold.
            let runtime = call(server, Method::GET, state, None).await.1;
            let list = call(server, Method::GET, processes, None).await.1;
            panic!(
                "PyIceberg reads the base store as the merge-on-read once the folds are done: {digest}\n\
                 runtime: {runtime}\nprocesses: {list}"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(id_names(&get_ipc(server, "/api/v1/tables/local/kt/orders/rows").await), merged);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
