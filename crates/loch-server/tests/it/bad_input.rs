//! Bad input gets a 4xx `ErrorModel`, never a 5xx, and leaves tables unchanged.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Backend, Storage, TestServer};

/// Sends a request and checks the answer is an `ErrorModel` with `status` and `error_type`.
async fn expect_error(
    server: &TestServer,
    method: Method,
    path: &str,
    body: Option<&str>,
    status: u16,
    error_type: &str,
) -> String {
    let mut request = server.request(method.clone(), path);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{method} {path} {body:?}: {text}");
    if method == Method::HEAD {
        return text;
    }
    let model: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
    assert_eq!(model["error"]["code"], status, "{text}");
    assert_eq!(model["error"]["type"], error_type, "{text}");
    assert!(model["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
    text
}

async fn metadata_location(server: &TestServer, table: &str) -> String {
    let body: Value = server
        .request(Method::GET, &format!("/api/iceberg/rest/v1/catalogs/local/namespaces/db/tables/{table}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["metadata-location"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn bad_input_is_a_client_error_and_changes_nothing() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    let ns = "/api/iceberg/rest/v1/catalogs/local/namespaces";
    let create = server.request(Method::POST, ns).json(&json!({"namespace": ["db"]})).send().await.unwrap();
    assert_eq!(create.status(), 200);
    let table = json!({
        "name": "t",
        "schema": {"type": "struct", "fields": [{"id": 1, "name": "id", "type": "long", "required": true}]},
    });
    let created = server.request(Method::POST, &format!("{ns}/db/tables")).json(&table).send().await.unwrap();
    assert_eq!(created.status(), 200, "{}", created.text().await.unwrap());
    let before = metadata_location(&server, "t").await;
    let t = format!("{ns}/db/tables/t");

    // Malformed JSON.
    expect_error(&server, Method::POST, ns, Some("{\"namespace\": "), 400, "BadRequestException").await;
    expect_error(&server, Method::POST, &t, Some("{not json"), 400, "BadRequestException").await;
    expect_error(&server, Method::POST, &t, Some("[]"), 400, "BadRequestException").await;
    // Unknown update and requirement types.
    let unknown_update = json!({"requirements": [], "updates": [{"action": "frobnicate-table"}]}).to_string();
    let text = expect_error(&server, Method::POST, &t, Some(&unknown_update), 400, "BadRequestException").await;
    assert!(text.contains("frobnicate"), "{text}");
    let unknown_requirement =
        json!({"requirements": [{"type": "assert-mood", "mood": "good"}], "updates": []}).to_string();
    expect_error(&server, Method::POST, &t, Some(&unknown_requirement), 400, "BadRequestException").await;
    // Updates that cannot apply: a schema that does not exist.
    let bad_update =
        json!({"requirements": [], "updates": [{"action": "set-current-schema", "schema-id": 99}]}).to_string();
    // Iceberg's reference catalog answers invalid metadata with `IllegalArgumentException`.
    expect_error(&server, Method::POST, &t, Some(&bad_update), 400, "IllegalArgumentException").await;
    // A snapshot whose manifest list lies outside the table's directories.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let foreign = json!({"requirements": [], "updates": [
        {"action": "add-snapshot", "snapshot": {"snapshot-id": 7, "sequence-number": 1, "timestamp-ms": now,
            "manifest-list": "file:///etc/other-table/snap-7.avro", "summary": {"operation": "append"}, "schema-id": 0}},
        {"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": 7},
    ]})
    .to_string();
    let text = expect_error(&server, Method::POST, &t, Some(&foreign), 400, "BadRequestException").await;
    assert!(text.contains("outside the table"), "{text}");
    // A failed requirement is a conflict.
    let stale = json!({
        "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": 12345}],
        "updates": [{"action": "set-properties", "updates": {"k": "v"}}],
    })
    .to_string();
    expect_error(&server, Method::POST, &t, Some(&stale), 409, "CommitFailedException").await;
    let wrong_uuid = json!({
        "requirements": [{"type": "assert-table-uuid", "uuid": "00000000-0000-0000-0000-000000000000"}],
        "updates": [{"action": "set-properties", "updates": {"k": "v"}}],
    })
    .to_string();
    expect_error(&server, Method::POST, &t, Some(&wrong_uuid), 409, "CommitFailedException").await;
    // Identifier in the body that does not match the path.
    let other =
        json!({"identifier": {"namespace": ["db"], "name": "other"}, "requirements": [], "updates": []}).to_string();
    expect_error(&server, Method::POST, &t, Some(&other), 400, "BadRequestException").await;
    // Requirements on a missing table.
    let on_missing = json!({
        "requirements": [{"type": "assert-table-uuid", "uuid": "00000000-0000-0000-0000-000000000000"}],
        "updates": [],
    })
    .to_string();
    expect_error(
        &server,
        Method::POST,
        &format!("{ns}/db/tables/missing"),
        Some(&on_missing),
        404,
        "NoSuchTableException",
    )
    .await;
    expect_error(&server, Method::POST, &format!("{ns}/nope/tables/t"), Some(&on_missing), 404, "NoSuchTableException")
        .await;
    assert_eq!(metadata_location(&server, "t").await, before, "bad commits must not change the table");

    // Invalid identifiers.
    let long = "x".repeat(256);
    for namespace in [json!([]), json!([""]), json!([long]), json!(["a", ".."]), json!(["tab\u{1f}sep"])] {
        let body = json!({"namespace": namespace}).to_string();
        expect_error(&server, Method::POST, ns, Some(&body), 400, "BadRequestException").await;
    }
    for name in ["", &long, "..", "new\nline"] {
        let body = json!({"name": name, "schema": table["schema"]}).to_string();
        expect_error(&server, Method::POST, &format!("{ns}/db/tables"), Some(&body), 400, "BadRequestException").await;
    }
    let bad_schema = json!({"name": "t2", "schema": {"type": "struct", "fields": [{"id": 1, "name": "x", "type": "no-such-type", "required": true}]}}).to_string();
    expect_error(&server, Method::POST, &format!("{ns}/db/tables"), Some(&bad_schema), 400, "BadRequestException")
        .await;
    let bad_location = json!({"name": "t3", "location": "relative/dir", "schema": table["schema"]}).to_string();
    expect_error(&server, Method::POST, &format!("{ns}/db/tables"), Some(&bad_location), 400, "BadRequestException")
        .await;

    // Other 4xx cases of the spec.
    expect_error(
        &server,
        Method::POST,
        ns,
        Some(&json!({"namespace": ["db"]}).to_string()),
        409,
        "AlreadyExistsException",
    )
    .await;
    expect_error(
        &server,
        Method::POST,
        &format!("{ns}/db/tables"),
        Some(&table.to_string()),
        409,
        "AlreadyExistsException",
    )
    .await;
    expect_error(&server, Method::DELETE, &format!("{ns}/db"), None, 409, "NamespaceNotEmptyException").await;
    expect_error(&server, Method::GET, &format!("{ns}/nope"), None, 404, "NoSuchNamespaceException").await;
    expect_error(&server, Method::GET, &format!("{ns}/nope/tables"), None, 404, "NoSuchNamespaceException").await;
    expect_error(&server, Method::GET, &format!("{ns}/db/tables/missing"), None, 404, "NoSuchTableException").await;
    expect_error(&server, Method::HEAD, &format!("{ns}/db/tables/missing"), None, 404, "").await;
    expect_error(&server, Method::GET, &format!("{ns}/db/views/missing"), None, 404, "NoSuchViewException").await;
    expect_error(&server, Method::GET, &format!("{t}?snapshots=some"), None, 400, "BadRequestException").await;
    expect_error(&server, Method::DELETE, &format!("{t}?purgeRequested=maybe"), None, 400, "BadRequestException").await;
    expect_error(&server, Method::GET, &format!("{ns}?pageToken=%21%21"), None, 400, "BadRequestException").await;
    let both = json!({"updates": {"a": "1"}, "removals": ["a"]}).to_string();
    expect_error(
        &server,
        Method::POST,
        &format!("{ns}/db/properties"),
        Some(&both),
        422,
        "UnprocessableEntityException",
    )
    .await;
    let rename_missing =
        json!({"source": {"namespace": ["db"], "name": "missing"}, "destination": {"namespace": ["db"], "name": "x"}})
            .to_string();
    expect_error(
        &server,
        Method::POST,
        "/api/iceberg/rest/v1/catalogs/local/tables/rename",
        Some(&rename_missing),
        404,
        "NoSuchTableException",
    )
    .await;
    let rename_to_missing_ns =
        json!({"source": {"namespace": ["db"], "name": "t"}, "destination": {"namespace": ["nope"], "name": "x"}})
            .to_string();
    expect_error(
        &server,
        Method::POST,
        "/api/iceberg/rest/v1/catalogs/local/tables/rename",
        Some(&rename_to_missing_ns),
        404,
        "NoSuchNamespaceException",
    )
    .await;
    let register_garbage =
        json!({"name": "r", "metadata-location": format!("{}/nowhere.metadata.json", server.warehouse)}).to_string();
    expect_error(
        &server,
        Method::POST,
        &format!("{ns}/db/register"),
        Some(&register_garbage),
        400,
        "BadRequestException",
    )
    .await;
    let no_identifier = json!({"table-changes": [{"requirements": [], "updates": []}]}).to_string();
    expect_error(
        &server,
        Method::POST,
        "/api/iceberg/rest/v1/catalogs/local/transactions/commit",
        Some(&no_identifier),
        400,
        "BadRequestException",
    )
    .await;
    expect_error(
        &server,
        Method::GET,
        "/api/iceberg/rest/v1/catalogs/nope/namespaces",
        None,
        404,
        "NoSuchWarehouseException",
    )
    .await;
    expect_error(
        &server,
        Method::GET,
        "/api/iceberg/rest/v1/config?warehouse=nope",
        None,
        404,
        "NoSuchWarehouseException",
    )
    .await;
    expect_error(&server, Method::GET, "/api/iceberg/rest/v2/whatever", None, 404, "NotFoundException").await;
    expect_error(&server, Method::PATCH, &t, None, 405, "MethodNotAllowedException").await;

    assert_eq!(metadata_location(&server, "t").await, before, "nothing above may change the table");
}
