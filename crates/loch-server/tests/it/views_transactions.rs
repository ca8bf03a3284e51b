//! Views (iceberg-rust's client has no view support, so these use the REST API directly with
//! iceberg's types) and multi-table transactions: all tables commit, or none.

use std::collections::HashMap;

use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};
use loch_table::snapshot::{OverwriteFiles, PendingCommit, SnapshotAction};
use loch_testkit::data::{append, scan_all, write_data_files};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Backend, Storage, TestServer, simple_schema};
use crate::rest_catalog::batch;

fn view_version(id: i64, sql: &str) -> Value {
    json!({
        "version-id": id,
        "schema-id": 0,
        "timestamp-ms": 1_700_000_000_000i64 + id,
        "summary": {"engine-name": "loch-tests"},
        "representations": [{"type": "sql", "sql": sql, "dialect": "spark"}],
        "default-namespace": ["db"],
    })
}

async fn json_request(server: &TestServer, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = server.request(method, &format!("/api/iceberg/rest/v1/catalogs/local{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn views(server: TestServer) {
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::new("db".into());
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    catalog.create_table(&ns, TableCreation::builder().name("t".into()).schema(simple_schema()).build()).await.unwrap();
    let schema = json!({"type": "struct", "schema-id": 0, "fields": [{"id": 1, "name": "id", "type": "long", "required": false}]});

    let create = json!({"name": "v", "schema": schema, "view-version": view_version(1, "SELECT id FROM db.t"), "properties": {"comment": "ids"}});
    let (status, created) = json_request(&server, Method::POST, "/namespaces/db/views", Some(create.clone())).await;
    assert_eq!(status, 200, "{created}");
    let uuid = created["metadata"]["view-uuid"].as_str().unwrap().to_string();
    assert!(created["metadata-location"].as_str().unwrap().starts_with(&server.warehouse));
    let (status, _) = json_request(&server, Method::POST, "/namespaces/db/views", Some(create)).await;
    assert_eq!(status, 409, "a view name is unique");
    let clash = json!({"name": "t", "schema": schema, "view-version": view_version(1, "SELECT 1"), "properties": {}});
    assert_eq!(
        json_request(&server, Method::POST, "/namespaces/db/views", Some(clash)).await.0,
        409,
        "views and tables share names"
    );
    assert!(
        catalog
            .create_table(&ns, TableCreation::builder().name("v".into()).schema(simple_schema()).build())
            .await
            .is_err(),
        "a table cannot take a view's name"
    );

    let (_, listed) = json_request(&server, Method::GET, "/namespaces/db/views", None).await;
    assert_eq!(listed["identifiers"], json!([{"namespace": ["db"], "name": "v"}]));
    assert_eq!(catalog.list_tables(&ns).await.unwrap(), vec![TableIdent::new(ns.clone(), "t".into())]);
    assert_eq!(
        server
            .request(Method::HEAD, "/api/iceberg/rest/v1/catalogs/local/namespaces/db/views/v")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        json_request(&server, Method::GET, "/namespaces/db/tables/v", None).await.0,
        404,
        "a view is not a table"
    );

    // Replace: a new version becomes current; a wrong UUID is a conflict.
    let replace = |uuid: &str| {
        json!({
            "requirements": [{"type": "assert-view-uuid", "uuid": uuid}],
            "updates": [
                {"action": "add-view-version", "view-version": view_version(2, "SELECT id FROM db.t WHERE id > 0")},
                {"action": "set-current-view-version", "view-version-id": -1},
            ],
        })
    };
    let (status, _) = json_request(
        &server,
        Method::POST,
        "/namespaces/db/views/v",
        Some(replace("00000000-0000-0000-0000-000000000000")),
    )
    .await;
    assert_eq!(status, 409);
    let (status, replaced) = json_request(&server, Method::POST, "/namespaces/db/views/v", Some(replace(&uuid))).await;
    assert_eq!(status, 200, "{replaced}");
    let (_, loaded) = json_request(&server, Method::GET, "/namespaces/db/views/v", None).await;
    assert_eq!(loaded["metadata"]["current-version-id"], 2);
    assert_eq!(loaded["metadata"]["versions"].as_array().unwrap().len(), 2);
    assert_eq!(loaded["metadata-location"], replaced["metadata-location"]);
    assert_eq!(loaded["metadata"]["properties"]["comment"], "ids");

    // Rename and drop.
    let rename =
        json!({"source": {"namespace": ["db"], "name": "v"}, "destination": {"namespace": ["db"], "name": "v2"}});
    assert_eq!(json_request(&server, Method::POST, "/views/rename", Some(rename)).await.0, 204);
    assert_eq!(json_request(&server, Method::GET, "/namespaces/db/views/v", None).await.0, 404);
    assert_eq!(
        json_request(&server, Method::GET, "/namespaces/db/views/v2", None).await.1["metadata"]["view-uuid"],
        uuid
    );
    assert_eq!(json_request(&server, Method::DELETE, "/namespaces/db/views/v2", None).await.0, 204);
    assert_eq!(json_request(&server, Method::DELETE, "/namespaces/db/views/v2", None).await.0, 404);
}

#[tokio::test]
async fn views_sqlite_file() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    views(server).await;
}

#[tokio::test]
async fn views_postgres_s3() {
    let Some(server) = TestServer::start(Backend::Postgres, Storage::S3).await else { return };
    views(server).await;
}

fn table_change(ident: &TableIdent, pending: &PendingCommit) -> Value {
    json!({
        "identifier": {"namespace": ident.namespace().clone().inner(), "name": ident.name()},
        "requirements": pending.requirements,
        "updates": pending.updates,
    })
}

async fn multi_table_transactions(server: TestServer) {
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::new("tx".into());
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    let mut tables = Vec::new();
    for name in ["a", "b"] {
        let t = catalog
            .create_table(&ns, TableCreation::builder().name(name.into()).schema(simple_schema()).build())
            .await
            .unwrap();
        let t = append(&catalog, &t, &batch(&t, &[1], "x")).await.unwrap();
        tables.push((TableIdent::new(ns.clone(), name.into()), t));
    }
    let old_b = tables[1].1.clone();

    // Both tables gain a file in one transaction.
    let mut changes = Vec::new();
    for (ident, table) in &tables {
        let files = write_data_files(table, &batch(table, &[2], "x")).await.unwrap();
        changes.push(table_change(ident, &OverwriteFiles::new().add_files(files).prepare(table).await.unwrap()));
    }
    let (status, body) =
        json_request(&server, Method::POST, "/transactions/commit", Some(json!({"table-changes": changes}))).await;
    assert_eq!(status, 204, "{body}");
    let mut locations = Vec::new();
    for (ident, _) in &tables {
        let t = catalog.load_table(ident).await.unwrap();
        assert_eq!(loch_testkit::data::row_count(&scan_all(&t).await.unwrap()), 2, "{ident}");
        locations.push(t.metadata_location().unwrap().to_string());
    }

    // One stale requirement (b's change is based on its old snapshot) fails the whole transaction.
    let a = catalog.load_table(&tables[0].0).await.unwrap();
    let fresh = OverwriteFiles::new()
        .add_files(write_data_files(&a, &batch(&a, &[3], "x")).await.unwrap())
        .prepare(&a)
        .await
        .unwrap();
    let stale = OverwriteFiles::new()
        .add_files(write_data_files(&old_b, &batch(&old_b, &[3], "x")).await.unwrap())
        .prepare(&old_b)
        .await
        .unwrap();
    let changes = vec![table_change(&tables[0].0, &fresh), table_change(&tables[1].0, &stale)];
    let (status, body) =
        json_request(&server, Method::POST, "/transactions/commit", Some(json!({"table-changes": changes}))).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["type"], "CommitFailedException");
    for ((ident, _), location) in tables.iter().zip(&locations) {
        let t = catalog.load_table(ident).await.unwrap();
        assert_eq!(t.metadata_location().unwrap(), location, "{ident} must be unchanged");
        assert_eq!(loch_testkit::data::row_count(&scan_all(&t).await.unwrap()), 2);
    }

    // A transaction naming a missing table fails as a whole too.
    let missing = TableIdent::new(ns.clone(), "missing".into());
    let changes = vec![table_change(&tables[0].0, &fresh), table_change(&missing, &fresh)];
    let (status, _) =
        json_request(&server, Method::POST, "/transactions/commit", Some(json!({"table-changes": changes}))).await;
    assert_eq!(status, 404);
    assert_eq!(catalog.load_table(&tables[0].0).await.unwrap().metadata_location().unwrap(), locations[0]);
}

#[tokio::test]
async fn transactions_sqlite_file() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    multi_table_transactions(server).await;
}

#[tokio::test]
async fn transactions_postgres_s3() {
    let Some(server) = TestServer::start(Backend::Postgres, Storage::S3).await else { return };
    multi_table_transactions(server).await;
}

/// Register goes through the commit path: a taken name is refused (by a table or a view), and
/// `overwrite` repoints an existing table at another of its metadata files, which then loads
/// and reads as that version; an overwrite cannot take a view's name.
async fn registration(server: TestServer) {
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::new("reg".into());
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    let ident = TableIdent::new(ns.clone(), "t".into());
    let t = catalog.create_table(&ns, TableCreation::builder().name("t".into()).schema(simple_schema()).build()).await;
    let t = t.unwrap();
    let one = append(&catalog, &t, &batch(&t, &[1], "x")).await.unwrap();
    let two = append(&catalog, &one, &batch(&one, &[2], "x")).await.unwrap();
    let (old, current) = (one.metadata_location().unwrap().to_string(), two.metadata_location().unwrap().to_string());

    let register = |name: &str, location: &str, overwrite: bool| json!({"name": name, "metadata-location": location, "overwrite": overwrite});
    let (status, body) =
        json_request(&server, Method::POST, "/namespaces/reg/register", Some(register("t", &old, false))).await;
    assert_eq!((status, body["error"]["type"].as_str()), (409, Some("AlreadyExistsException")), "{body}");
    assert_eq!(catalog.load_table(&ident).await.unwrap().metadata_location(), Some(current.as_str()), "unchanged");

    let (status, body) =
        json_request(&server, Method::POST, "/namespaces/reg/register", Some(register("t", &old, true))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["metadata-location"], old.as_str());
    let loaded = catalog.load_table(&ident).await.unwrap();
    assert_eq!(loaded.metadata_location(), Some(old.as_str()), "the overwrite is the table's pointer");
    assert_eq!(loch_testkit::data::row_count(&scan_all(&loaded).await.unwrap()), 1, "and reads as that version");
    // The table commits on from there.
    let three = append(&catalog, &loaded, &batch(&loaded, &[3], "x")).await.unwrap();
    assert_eq!(loch_testkit::data::row_count(&scan_all(&three).await.unwrap()), 2);

    let schema = json!({"type": "struct", "schema-id": 0, "fields": [{"id": 1, "name": "id", "type": "long", "required": false}]});
    let view = json!({"name": "v", "schema": schema, "view-version": view_version(1, "SELECT 1"), "properties": {}});
    assert_eq!(json_request(&server, Method::POST, "/namespaces/reg/views", Some(view)).await.0, 200);
    let (status, body) =
        json_request(&server, Method::POST, "/namespaces/reg/register", Some(register("v", &current, true))).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("View with same name already exists"), "{body}");
    assert_eq!(json_request(&server, Method::GET, "/namespaces/reg/views/v", None).await.0, 200, "the view stays");
}

#[tokio::test]
async fn registration_sqlite_file() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    registration(server).await;
}

#[tokio::test]
async fn registration_postgres_s3() {
    let Some(server) = TestServer::start(Backend::Postgres, Storage::S3).await else { return };
    registration(server).await;
}
