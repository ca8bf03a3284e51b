//! The management API (catalogs and their tables), its OpenAPI document, metrics and health.

use std::collections::HashMap;

use iceberg::{Catalog, NamespaceIdent, TableCreation};
use loch_testkit::data::append;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Backend, Storage, TestServer, call, simple_schema};
use crate::rest_catalog::batch;

#[tokio::test]
async fn catalogs_are_managed_through_the_api() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let warehouse = format!("file://{}/wh2", dir.path().display());

    let (status, created) = call(
        &server,
        Method::POST,
        "/api/v1/catalogs",
        Some(json!({"name": "second", "properties": {"warehouse": warehouse, "s3.secret-access-key": "hidden", "table.write.format.default": "parquet"}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["type"], "internal");
    assert_eq!(created["properties"]["s3.secret-access-key"], "******", "secrets are masked");
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/v1/catalogs",
        Some(json!({"name": "second", "properties": {"warehouse": warehouse}})),
    )
    .await;
    assert_eq!(status, 409);
    for bad in [
        json!({"name": "x", "properties": {}}),
        json!({"name": "x", "properties": {"warehouse": "relative"}}),
        json!({"name": "bad name", "properties": {"warehouse": warehouse}}),
        json!({"name": "x", "type": "hive", "properties": {"warehouse": warehouse}}),
        json!({"name": "x"}),
    ] {
        let (status, body) = call(&server, Method::POST, "/api/v1/catalogs", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert_eq!(body["error"]["code"], 400);
    }
    let (_, list) = call(&server, Method::GET, "/api/v1/catalogs", None).await;
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["local", "second"]);

    // Update: a masked secret keeps its stored value; other properties change.
    let (status, updated) = call(
        &server,
        Method::PUT,
        "/api/v1/catalogs/second",
        Some(json!({"properties": {"warehouse": warehouse, "s3.secret-access-key": "******", "table.write.format.default": "orc"}})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["properties"]["table.write.format.default"], "orc");

    // Tables of the catalog, with statistics; table defaults reach new tables.
    let catalog = server.rest_catalog_for("second").await;
    let ns = NamespaceIdent::new("db".into());
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    let table = catalog
        .create_table(&ns, TableCreation::builder().name("t".into()).schema(simple_schema()).build())
        .await
        .unwrap();
    assert_eq!(table.metadata().properties()["write.format.default"], "orc");
    let table = append(&catalog, &table, &batch(&table, &[1, 2, 3], "x")).await.unwrap();
    let table = append(&catalog, &table, &batch(&table, &[4], "y")).await.unwrap();
    let (status, tables) = call(&server, Method::GET, "/api/v1/catalogs/second/tables", None).await;
    assert_eq!(status, 200);
    let row = &tables[0];
    assert_eq!(
        (row["namespace"].clone(), row["name"].clone(), row["format"].clone()),
        (json!(["db"]), json!("t"), json!("iceberg"))
    );
    assert_eq!(row["fileCount"], 2);
    assert_eq!(row["totalRecords"], 4);
    assert!(row["totalSize"].as_i64().unwrap() > 0);
    assert_eq!(row["lastCommitTime"], table.metadata().current_snapshot().unwrap().timestamp_ms());

    // The warehouse cannot move, nor the catalog be deleted, while it holds tables.
    let (status, _) = call(
        &server,
        Method::PUT,
        "/api/v1/catalogs/second",
        Some(json!({"properties": {"warehouse": format!("{warehouse}-moved")}})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = call(&server, Method::DELETE, "/api/v1/catalogs/second", None).await;
    assert_eq!(status, 409, "{body}");
    catalog.purge_table(&iceberg::TableIdent::new(ns.clone(), "t".into())).await.unwrap();
    let (status, _) = call(&server, Method::DELETE, "/api/v1/catalogs/second", None).await;
    assert_eq!(status, 204);
    assert_eq!(call(&server, Method::GET, "/api/v1/catalogs/second", None).await.0, 404);
    assert_eq!(call(&server, Method::DELETE, "/api/v1/catalogs/second", None).await.0, 404);
}

#[tokio::test]
async fn openapi_metrics_and_health() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    let (status, doc) = call(&server, Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    for path in ["/api/v1/catalogs", "/api/v1/catalogs/{name}", "/api/v1/catalogs/{name}/tables", "/health"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    assert!(doc["components"]["schemas"].get("Catalog").is_some());

    let (status, health) = call(&server, Method::GET, "/health", None).await;
    assert_eq!((status, health["status"].clone()), (200, json!("ok")));

    // Make a commit so the catalog metrics exist.
    let catalog = server.rest_catalog().await;
    catalog.create_namespace(&NamespaceIdent::new("m".into()), HashMap::new()).await.unwrap();
    let table = catalog
        .create_table(
            &NamespaceIdent::new("m".into()),
            TableCreation::builder().name("t".into()).schema(simple_schema()).build(),
        )
        .await
        .unwrap();
    append(&catalog, &table, &batch(&table, &[1], "x")).await.unwrap();
    let metrics = server.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    for name in ["loch_http_requests_total", "loch_http_request_duration_seconds", "loch_catalog_commits_total"] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(
        metrics.contains("route=\"/api/iceberg/rest/v1/catalogs/{catalog}/namespaces/{namespace}/tables/{table}\"")
    );
}

#[tokio::test]
async fn config_picks_the_catalog_prefix() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    let (status, config) = call(&server, Method::GET, "/api/iceberg/rest/v1/config?warehouse=local", None).await;
    assert_eq!(status, 200);
    assert_eq!(config["overrides"]["prefix"], "catalogs/local");
    assert!(config["endpoints"].as_array().unwrap().contains(&json!("POST /v1/{prefix}/transactions/commit")));
    // Without a warehouse the default catalog is used; routes without a prefix address it too.
    let (_, config) = call(&server, Method::GET, "/api/iceberg/rest/v1/config", None).await;
    assert_eq!(config["overrides"]["prefix"], "catalogs/local");
    let (status, _) =
        call(&server, Method::POST, "/api/iceberg/rest/v1/namespaces", Some(json!({"namespace": ["p"]}))).await;
    assert_eq!(status, 200);
    let (_, listed) = call(&server, Method::GET, "/api/iceberg/rest/v1/catalogs/local/namespaces", None).await;
    assert_eq!(listed["namespaces"], json!([["p"]]));
}

#[tokio::test]
async fn listings_paginate() {
    let Some(server) = TestServer::start(Backend::Postgres, Storage::File).await else { return };
    for i in 0..5 {
        let (status, _) = call(
            &server,
            Method::POST,
            "/api/iceberg/rest/v1/catalogs/local/namespaces",
            Some(json!({"namespace": [format!("n{i}")]})),
        )
        .await;
        assert_eq!(status, 200);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (status, page) = call(
            &server,
            Method::GET,
            &format!("/api/iceberg/rest/v1/catalogs/local/namespaces?pageSize=2&pageToken={token}"),
            None,
        )
        .await;
        assert_eq!(status, 200);
        let items = page["namespaces"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|n| n[0].as_str().unwrap().to_string()));
        match page["next-page-token"].as_str() {
            Some(next) => token = next.to_string(),
            None => {
                assert!(page.get("next-page-token").is_some_and(Value::is_null), "the last page says null");
                break;
            }
        }
    }
    assert_eq!(seen, vec!["n0", "n1", "n2", "n3", "n4"]);
    // Without pageToken everything comes back in one page and no token is sent.
    let (_, all) = call(&server, Method::GET, "/api/iceberg/rest/v1/catalogs/local/namespaces?pageSize=2", None).await;
    assert_eq!(all["namespaces"].as_array().unwrap().len(), 5);
    assert!(all.get("next-page-token").is_none());
}
