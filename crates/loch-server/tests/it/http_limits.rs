//! The HTTP layer against slow, large and greedy clients, and the request forms real clients send:
//! a prefix percent-encoded as one segment (DuckDB), `file:/` locations (Java), `/` in names,
//! `%1F`-separated namespaces in the management API.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Backend, CLIENT, Storage, TestServer, call};

const NS: &str = "/api/iceberg/rest/v1/catalogs/local/namespaces";

/// Sends raw bytes and returns what the server answers until it closes (or `wait` passes).
async fn raw(server: &TestServer, request: &[u8], wait: Duration) -> (String, Duration) {
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    (String::from_utf8_lossy(&answer).to_string(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_large_and_greedy_clients_are_cut_off() {
    let Some(server) = TestServer::start_configured(Backend::Sqlite, Storage::File, false, |config| {
        config.http.header_read_timeout = Duration::from_millis(500);
        config.http.body_read_timeout = Duration::from_secs(3);
        config.http.max_body_size = 1000;
        config.http.max_in_flight_body_bytes = 1500;
    })
    .await
    else {
        return;
    };
    // Headers that never finish: the connection is closed.
    let (answer, took) = raw(&server, b"GET /health HTTP/1.1\r\nHost: x\r\n", Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "closed after the header timeout, not {took:?} ({answer})");
    assert!(!answer.contains("200 OK"), "{answer}");
    // A body that never finishes: 408.
    let request = b"POST /api/iceberg/rest/v1/oauth/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc";
    let (answer, took) = raw(&server, request, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    // A body over the limit: 413. (Refused bodies close their connection: no client pool here.)
    let mut server = server;
    server.http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let big = "x".repeat(2000);
    let (status, body) = call(&server, Method::POST, NS, Some(json!({"namespace": [big]}))).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["type"], "RequestTooLargeException");
    // Two bodies at once beyond the shared budget: the second is told to come back.
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let head =
        format!("POST {NS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n");
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&[b' '; 900]).await.unwrap();
    // The server holds those 900 bytes until the body times out (3 s).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let filler = " ".repeat(950);
    let (status, body) =
        call(&server, Method::POST, NS, Some(json!({"namespace": ["n"], "properties": {"p": filler}}))).await;
    assert_eq!(status, 503, "{body}");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"), "the slow body times out");
    // With the budget free again, the same request goes through.
    let (status, body) =
        call(&server, Method::POST, NS, Some(json!({"namespace": ["n"], "properties": {"p": "v"}}))).await;
    assert_eq!(status, 200, "{body}");
    // Every answer names its request.
    let response = server.request(Method::GET, "/health").send().await.unwrap();
    assert!(response.headers().get("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_are_rate_limited_per_client() {
    let Some(server) = TestServer::start_configured(Backend::Sqlite, Storage::File, true, |config| {
        config.auth.token_requests_per_minute = 3;
    })
    .await
    else {
        return;
    };
    // The harness fetched one token already; two more are allowed this minute.
    let form = [("grant_type", "client_credentials"), ("client_id", CLIENT.0), ("client_secret", CLIENT.1)];
    let url = format!("{}/api/iceberg/rest/v1/oauth/tokens", server.url);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = server.http.post(&url).form(&form).send().await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert_eq!(response.headers()["retry-after"], "60");
        }
    }
    assert_eq!(statuses, vec![200, 200, 429]);
    // Guessing secrets of unknown clients is limited per address.
    let mut last = 0;
    for i in 0..5 {
        let guess = [("grant_type", "client_credentials"), ("client_id", "nobody"), ("client_secret", &*i.to_string())];
        last = server.http.post(&url).form(&guess).send().await.unwrap().status().as_u16();
    }
    assert_eq!(last, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_spell_prefixes_locations_and_names_their_own_way() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    // DuckDB sends the prefix `catalogs/local` as one percent-encoded segment.
    let (status, body) = call(&server, Method::POST, NS, Some(json!({"namespace": ["db"]}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&server, Method::GET, "/api/iceberg/rest/v1/catalogs%2Flocal/namespaces", None).await;
    assert_eq!((status, body["namespaces"].clone()), (200, json!([["db"]])));

    // Java engines write local paths as `file:/path`; the location keeps the client's spelling.
    let schema = json!({"type": "struct", "fields": [{"id": 1, "name": "id", "type": "long", "required": true}]});
    let spelled = format!("file:{}/db/spelled", server.warehouse.strip_prefix("file://").unwrap());
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("{NS}/db/tables"),
        Some(json!({"name": "spelled", "schema": schema, "location": spelled})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["metadata"]["location"], spelled.as_str());
    assert!(body["metadata-location"].as_str().unwrap().starts_with(&format!("{spelled}/metadata/")));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let commit = json!({"requirements": [], "updates": [
        {"action": "add-snapshot", "snapshot": {"snapshot-id": 5, "sequence-number": 1, "timestamp-ms": now,
            "manifest-list": format!("{spelled}/metadata/snap-5.avro"), "summary": {"operation": "append"}, "schema-id": 0}},
        {"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": 5}]});
    let (status, body) = call(&server, Method::POST, &format!("{NS}/db/tables/spelled"), Some(commit)).await;
    assert_eq!(status, 200, "a manifest list spelled file:/ is inside the table: {body}");
    // The same place in another spelling is taken.
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("{NS}/db/tables"),
        Some(json!({"name": "other", "schema": schema, "location": format!("file://localhost{}", &spelled[5..])})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // Names with `/`, as the REST spec allows (the client encodes them).
    let (status, body) = call(&server, Method::POST, NS, Some(json!({"namespace": ["new/db"]}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("{NS}/new%2Fdb/tables"),
        Some(json!({"name": "tab/le", "schema": schema})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["metadata"]["location"].as_str().unwrap().ends_with("/new%2Fdb/tab%2Fle"), "{body}");
    let (status, _) = call(&server, Method::GET, &format!("{NS}/new%2Fdb/tables/tab%2Fle"), None).await;
    assert_eq!(status, 200);
    let (status, _) =
        call(&server, Method::DELETE, &format!("{NS}/new%2Fdb/tables/tab%2Fle?purgeRequested=true"), None).await;
    assert_eq!(status, 204);

    // The management API takes `%1F`-separated levels, and a level with a dot.
    for levels in [json!(["x.y"]), json!(["a"]), json!(["a", "b"])] {
        let (status, body) = call(&server, Method::POST, NS, Some(json!({"namespace": levels}))).await;
        assert_eq!(status, 200, "{body}");
    }
    for ns in ["x.y", "a%1Fb"] {
        let (status, body) =
            call(&server, Method::POST, &format!("{NS}/{ns}/tables"), Some(json!({"name": "t", "schema": schema})))
                .await;
        assert_eq!(status, 200, "{body}");
    }
    for (path, namespace) in [("x.y", json!(["x.y"])), ("a%1Fb", json!(["a", "b"])), ("a.b", json!(["a", "b"]))] {
        let (status, body) =
            call(&server, Method::GET, &format!("/api/v1/tables/local/{path}/t/optimizing"), None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["namespace"], namespace, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_lists_keep_one_order() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    let (status, _) = call(&server, Method::POST, NS, Some(json!({"namespace": ["db"]}))).await;
    assert_eq!(status, 200);
    let schema = json!({"type": "struct", "fields": [{"id": 1, "name": "id", "type": "long", "required": true}]});
    let (_, created) =
        call(&server, Method::POST, &format!("{NS}/db/tables"), Some(json!({"name": "t", "schema": schema}))).await;
    let location = created["metadata"]["location"].as_str().unwrap().to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    for i in 1..=12i64 {
        let commit = json!({"requirements": [], "updates": [
            {"action": "add-snapshot", "snapshot": {"snapshot-id": 1000 - i, "sequence-number": i, "timestamp-ms": now + i,
                "manifest-list": format!("{location}/metadata/snap-{i}.avro"), "summary": {"operation": "append"}, "schema-id": 0}},
            {"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": 1000 - i},
            {"action": "add-schema", "schema": {"type": "struct", "schema-id": i as i32, "fields": [
                {"id": 1, "name": "id", "type": "long", "required": true},
                {"id": 1 + i, "name": format!("c{i}"), "type": "string", "required": false}]}}]});
        let (status, body) = call(&server, Method::POST, &format!("{NS}/db/tables/t"), Some(commit)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, first) = call(&server, Method::GET, &format!("{NS}/db/tables/t"), None).await;
    let sequence: Vec<i64> = first["metadata"]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sequence-number"].as_i64().unwrap())
        .collect();
    assert_eq!(sequence, (1..=12).collect::<Vec<_>>(), "snapshots in commit order");
    let schema_ids: Vec<i64> =
        first["metadata"]["schemas"].as_array().unwrap().iter().map(|s| s["schema-id"].as_i64().unwrap()).collect();
    assert_eq!(schema_ids, (0..=12).collect::<Vec<_>>());
    server.request(Method::GET, "/health").send().await.unwrap();
    let mut server = server;
    server.restart().await;
    let (_, again) = call(&server, Method::GET, &format!("{NS}/db/tables/t"), None).await;
    assert_eq!(first, again, "the same answer after a restart (read back from the file)");
}
