//! Self-optimizing inside the server: processes and tasks visible and cancelable through the
//! management API, optimizer groups, the optimizer protocol over HTTP (with authentication), and
//! metrics. Rows read before and after optimizing must be identical.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_rest::RestCatalog;
use loch_api::optimizer::RegisterRequest;
use loch_optimizer::{Coordinator, Credential, ExecuteError, HttpCoordinator, WorkerConfig};
use loch_testkit::data::{append, rows, scan_all};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Backend, CLIENT, Storage, TestServer, call, simple_schema};
use crate::rest_catalog::batch;

async fn get(server: &TestServer, path: &str) -> Value {
    let (status, body) = call(server, Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Table `ns.t` with `properties`, given `appends` appends of ten rows each. Self-optimizing is
/// switched on only after the last append, so that one process takes every fragment.
async fn fragmented_table(server: &TestServer, appends: i64, properties: &[(&str, &str)]) -> (RestCatalog, Table) {
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::new("ns".into());
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    let mut props: HashMap<String, String> = properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    props.insert("self-optimizing.enabled".into(), "false".into());
    let creation = TableCreation::builder().name("t".into()).schema(simple_schema()).properties(props).build();
    let mut table = catalog.create_table(&ns, creation).await.unwrap();
    for i in 0..appends {
        let ids: Vec<i64> = (i * 10..i * 10 + 10).collect();
        table = append(&catalog, &table, &batch(&table, &ids, "a")).await.unwrap();
    }
    let tx = Transaction::new(&table);
    let tx = tx.update_table_properties().set("self-optimizing.enabled".into(), "true".into()).apply(tx).unwrap();
    let table = tx.commit(&catalog).await.unwrap();
    (catalog, table)
}

async fn current_rows(catalog: &RestCatalog) -> Vec<BTreeMap<String, String>> {
    let table = catalog.load_table(&TableIdent::from_strs(["ns", "t"]).unwrap()).await.unwrap();
    rows(&scan_all(&table).await.unwrap())
}

const PROCESSES: &str = "/api/v1/tables/local/ns/t/optimizing/processes";

/// Waits until `check` accepts the table's process list.
async fn wait_processes(server: &TestServer, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let list = get(server, PROCESSES).await;
        let list = list.as_array().unwrap().clone();
        if check(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {list:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn optimizing_is_visible_and_cancelable(backend: Backend) {
    let Some(server) = TestServer::start_configured(backend, Storage::File, false, |config| {
        config.optimizer.local_threads = 1;
        config.optimizer.test_task_delay = Some(Duration::from_secs(2));
    })
    .await
    else {
        return;
    };
    let (catalog, _) = fragmented_table(&server, 12, &[("self-optimizing.min-plan-interval", "0")]).await;
    let before = current_rows(&catalog).await;

    // The embedded thread acknowledges the task, then holds it for the test delay.
    let running =
        wait_processes(&server, "a running process", |list| list.first().is_some_and(|p| p["status"] == "running"))
            .await;
    let process = &running[0];
    assert_eq!((process["kind"].as_str(), process["type"].as_str()), (Some("optimizing"), Some("minor")));
    assert_eq!(process["inputFiles"], 12);
    let id = process["id"].as_i64().unwrap();
    let tasks = get(&server, &format!("{PROCESSES}/{id}/tasks")).await;
    assert_eq!(tasks.as_array().unwrap().len(), 1);
    let optimizers = get(&server, "/api/v1/optimizer-groups/default/optimizers").await;
    assert_eq!(optimizers.as_array().unwrap().len(), 1);
    assert_eq!(optimizers[0]["kind"], "embedded");
    assert_eq!(optimizers[0]["threads"], 1);
    assert_eq!(optimizers[0]["id"].as_str().unwrap().len(), 8, "only a prefix of the token is shown");
    let tables = get(&server, "/api/v1/optimizer-groups/default/tables").await;
    assert_eq!(tables[0]["table"], "t");
    assert_eq!(tables[0]["processId"], id);
    let state = get(&server, "/api/v1/tables/local/ns/t/optimizing").await;
    assert!(["minor", "committing"].contains(&state["status"].as_str().unwrap()), "{state}");

    let (status, canceled) = call(&server, Method::POST, &format!("{PROCESSES}/{id}/cancel"), None).await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], "closed");
    assert_eq!(canceled["failMessage"], "canceled by request");
    let (status, again) = call(&server, Method::POST, &format!("{PROCESSES}/{id}/cancel"), None).await;
    assert_eq!((status, again["error"]["code"].as_i64()), (409, Some(409)), "{again}");
    let tasks = get(&server, &format!("{PROCESSES}/{id}/tasks")).await;
    assert_eq!(tasks[0]["status"], "canceled");

    // The table is planned again and optimized; the canceled task's late result is refused.
    let list =
        wait_processes(&server, "a successful process", |list| list.first().is_some_and(|p| p["status"] == "success"))
            .await;
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["status"], "closed");
    assert_eq!(list[0]["outputFiles"], 1);
    assert!(list[0]["committedSnapshotId"].is_i64());
    assert_eq!(current_rows(&catalog).await, before, "same rows after optimizing");
    let listed = get(&server, "/api/v1/catalogs/local/tables").await;
    assert_eq!(listed[0]["dataFiles"], 1);
    let state = get(&server, "/api/v1/tables/local/ns/t/optimizing").await;
    assert_eq!(state["status"], "idle", "{state}");
    assert!(state["lastMinorAt"].is_i64());

    let (status, _) = call(&server, Method::GET, &format!("{PROCESSES}/{}", id + 1000), None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&server, Method::GET, "/api/v1/tables/local/ns/missing/optimizing/processes", None).await;
    assert_eq!(status, 404);

    // Status durations are reported by the housekeeper, every few seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = server.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
        if metrics.contains("loch_optimizing_status_duration_seconds") || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for expected in [
        r#"loch_optimizing_processes_total{type="minor",result="closed"} 1"#,
        r#"loch_optimizing_processes_total{type="minor",result="success"} 1"#,
        "loch_optimizing_task_duration_seconds",
        r#"loch_optimizing_pending_files{table="local.ns.t"}"#,
        r#"loch_optimizing_status_duration_seconds{table="local.ns.t",status="idle"}"#,
    ] {
        assert!(metrics.contains(expected), "metrics lack {expected}:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimizing_is_visible_and_cancelable_sqlite() {
    optimizing_is_visible_and_cancelable(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimizing_is_visible_and_cancelable_postgres() {
    optimizing_is_visible_and_cancelable(Backend::Postgres).await;
}

fn worker(group: &str, threads: u32) -> WorkerConfig {
    WorkerConfig {
        group: group.into(),
        threads,
        memory_mb: 512,
        properties: BTreeMap::from([("host".to_string(), "test".to_string())]),
        shutdown_grace: Duration::from_secs(5),
        task_delay: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_optimizer_authenticates_and_optimizes_over_http() {
    let Some(server) = TestServer::start_configured(Backend::Sqlite, Storage::File, true, |config| {
        config.optimizer.local_threads = 0;
        config.optimizer.polling_timeout = Duration::from_millis(500);
    })
    .await
    else {
        return;
    };
    let register = RegisterRequest { group: "default".into(), threads: 1, memory_mb: 0, properties: BTreeMap::new() };
    for credential in [None, Some(Credential::parse("tester:wrong"))] {
        let client = HttpCoordinator::new(&server.url, credential).unwrap();
        assert!(
            matches!(client.register(&register).await, Err(ExecuteError::Rejected(_))),
            "refused without a valid credential"
        );
    }

    let (catalog, _) = fragmented_table(&server, 12, &[]).await;
    let before = current_rows(&catalog).await;
    let client =
        HttpCoordinator::new(&server.url, Some(Credential::parse(&format!("{}:{}", CLIENT.0, CLIENT.1)))).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(loch_optimizer::worker::run(Arc::new(client), worker("default", 2), stopped));

    let list =
        wait_processes(&server, "a successful process", |list| list.first().is_some_and(|p| p["status"] == "success"))
            .await;
    assert_eq!(list[0]["outputFiles"], 1);
    assert_eq!(current_rows(&catalog).await, before);
    let optimizers = get(&server, "/api/v1/optimizer-groups/default/optimizers").await;
    assert_eq!(optimizers[0]["kind"], "external");
    assert_eq!(optimizers[0]["threads"], 2);
    assert_eq!(optimizers[0]["properties"]["host"], "test");
    let groups = get(&server, "/api/v1/optimizer-groups").await;
    assert_eq!(
        (groups[0]["name"].as_str(), groups[0]["threads"].as_i64(), groups[0]["tables"].as_i64()),
        (Some("default"), Some(2), Some(1))
    );
    // Released by an operator, it stops by itself and is no longer listed.
    let id = optimizers[0]["id"].as_str().unwrap().to_string();
    let release = format!("/api/v1/optimizer-groups/default/optimizers/{id}/release");
    let (status, released) = call(&server, Method::POST, &release, None).await;
    assert_eq!((status, released["id"].as_str()), (200, Some(id.as_str())), "{released}");
    let ending = tokio::time::timeout(Duration::from_secs(30), worker).await.expect("a released worker stops").unwrap();
    assert_eq!(ending, loch_optimizer::worker::Ending::Released);
    assert_eq!(get(&server, "/api/v1/optimizer-groups/default/optimizers").await, json!([]));
    assert_eq!(call(&server, Method::POST, &release, None).await.0, 404);
    drop(stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimizer_groups_and_the_protocol_refuse_bad_requests() {
    let Some(server) = TestServer::start_configured(Backend::Sqlite, Storage::File, false, |config| {
        config.optimizer.local_threads = 0;
        config.optimizer.polling_timeout = Duration::from_millis(200);
    })
    .await
    else {
        return;
    };
    // Groups.
    let (status, created) = call(
        &server,
        Method::POST,
        "/api/v1/optimizer-groups",
        Some(json!({"name": "etl", "properties": {"scheduling-policy": "balanced"}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!((created["optimizers"].as_i64(), created["tables"].as_i64()), (Some(0), Some(0)));
    for (body, code) in [
        (json!({"name": "etl"}), 409),
        (json!({"name": "bad name"}), 400),
        (json!({"name": "x", "properties": {"scheduling-policy": "fastest"}}), 400),
        (json!({"name": "x", "properties": {"max-input-file-size-per-thread": "-3"}}), 400),
        (json!({"nom": "x"}), 400),
    ] {
        let (status, error) = call(&server, Method::POST, "/api/v1/optimizer-groups", Some(body.clone())).await;
        assert_eq!(status, code, "{body} → {error}");
        assert_eq!(error["error"]["code"], code);
    }
    let (status, updated) = call(
        &server,
        Method::PUT,
        "/api/v1/optimizer-groups/etl",
        Some(json!({"properties": {"scheduling-policy": "quota"}})),
    )
    .await;
    assert_eq!((status, updated["properties"]["scheduling-policy"].as_str()), (200, Some("quota")));
    let (status, _) =
        call(&server, Method::PUT, "/api/v1/optimizer-groups/nope", Some(json!({"properties": {}}))).await;
    assert_eq!(status, 404);
    let names: Vec<String> = get(&server, "/api/v1/optimizer-groups")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["default", "etl"]);
    assert_eq!(call(&server, Method::DELETE, "/api/v1/optimizer-groups/default", None).await.0, 409);
    assert_eq!(call(&server, Method::DELETE, "/api/v1/optimizer-groups/nope", None).await.0, 404);
    assert_eq!(call(&server, Method::GET, "/api/v1/optimizer-groups/nope/tables", None).await.0, 404);

    // The protocol.
    let post = |path: &str, body: Value| {
        let path = format!("/api/optimizer/v1/{path}");
        let server = &server;
        async move { call(server, Method::POST, &path, Some(body)).await }
    };
    let (status, error) = post("touch", json!({"token": "forgotten"})).await;
    assert_eq!((status, error["error"]["type"].as_str()), (410, Some("UnknownOptimizerException")));
    assert_eq!(post("register", json!({"group": "default", "threads": 0, "memory-mb": 0})).await.0, 400);
    assert_eq!(post("register", json!({"group": "nope", "threads": 1, "memory-mb": 0})).await.0, 404);
    assert_eq!(post("register", json!({"group": "default"})).await.0, 400);
    let (status, registered) = post("register", json!({"group": "etl", "threads": 1, "memory-mb": 64})).await;
    assert_eq!(status, 200, "{registered}");
    let token = registered["token"].as_str().unwrap().to_string();
    assert!(registered["heartbeat-interval-ms"].as_u64().unwrap() > 0);
    assert_eq!(post("touch", json!({"token": token})).await.0, 200);
    let (status, polled) = post("poll", json!({"token": token, "thread-id": 0})).await;
    assert_eq!((status, &polled), (200, &json!({"task": null})));
    let key = json!({"process-id": 1, "task-id": 0, "attempt": 1});
    assert_eq!(post("ack", json!({"token": token, "thread-id": 0, "key": key})).await.0, 404);
    assert_eq!(post("complete", json!({"token": token, "thread-id": 0, "key": key})).await.0, 400);
    assert_eq!(
        call(&server, Method::DELETE, "/api/v1/optimizer-groups/etl", None).await.0,
        409,
        "an optimizer serves it"
    );
    // Release: by the id the list shows, in its own group only; the server's threads refuse.
    let release = |group: &str, id: &str| format!("/api/v1/optimizer-groups/{group}/optimizers/{id}/release");
    let id = &token[..8];
    for (path, code) in [(release("default", id), 404), (release("etl", &token[..4]), 404), (release("nope", id), 404)]
    {
        let (status, error) = call(&server, Method::POST, &path, None).await;
        assert_eq!((status, error["error"]["code"].as_u64()), (code, Some(u64::from(code))), "{path}: {error}");
    }
    for embedded in get(&server, "/api/v1/optimizer-groups/default/optimizers").await.as_array().unwrap() {
        assert_eq!(embedded["kind"], "embedded");
        let (status, error) =
            call(&server, Method::POST, &release("default", embedded["id"].as_str().unwrap()), None).await;
        assert_eq!(status, 409, "{error}");
    }
    assert_eq!(call(&server, Method::POST, &release("etl", id), None).await.0, 200);
    for call in ["touch", "poll"] {
        let (status, error) = post(call, json!({"token": token, "thread-id": 0})).await;
        assert_eq!((status, error["error"]["type"].as_str()), (410, Some("OptimizerReleasedException")), "{call}");
    }
    assert_eq!(call(&server, Method::DELETE, "/api/v1/optimizer-groups/etl", None).await.0, 204, "no optimizer left");

    let openapi = get(&server, "/api/v1/openapi.json").await;
    for path in
        ["/api/v1/optimizer-groups", "/api/v1/tables/{catalog}/{namespace}/{table}/optimizing/processes/{id}/cancel"]
    {
        assert!(openapi["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
}

/// A registered table is announced like a commit: self-optimizing looks at it at once, not at
/// its next periodic check (set to an hour here), and an optimizer then optimizes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_table_is_optimized_without_waiting_for_the_refresh_interval() {
    let Some(server) = TestServer::start_configured(Backend::Sqlite, Storage::File, false, |config| {
        config.optimizer.local_threads = 0;
        config.optimizer.polling_timeout = Duration::from_millis(500);
        config.refresh_tables.interval = Duration::from_secs(3600);
    })
    .await
    else {
        return;
    };
    // Twelve fragments under `ns.src`, which is then dropped without purge: its files stay.
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::new("ns".into());
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    let props = HashMap::from([("self-optimizing.min-plan-interval".to_string(), "0".to_string())]);
    let creation = TableCreation::builder().name("src".into()).schema(simple_schema()).properties(props).build();
    let mut table = catalog.create_table(&ns, creation).await.unwrap();
    for i in 0..12 {
        let ids: Vec<i64> = (i * 10..i * 10 + 10).collect();
        table = append(&catalog, &table, &batch(&table, &ids, "a")).await.unwrap();
    }
    let before = rows(&scan_all(&table).await.unwrap());
    let metadata_location = table.metadata_location().unwrap().to_string();
    catalog.drop_table(table.identifier()).await.unwrap();

    let registered_at = Instant::now();
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/iceberg/rest/v1/catalogs/local/namespaces/ns/register",
        Some(json!({"name": "t", "metadata-location": metadata_location})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The group's table list shows runtimes as they are (the table's own route would evaluate
    // a table it has not seen yet, and so cannot tell).
    let state = loop {
        let tables = get(&server, "/api/v1/optimizer-groups/default/tables").await;
        let state = tables.as_array().unwrap().iter().find(|t| t["table"] == "t").cloned().unwrap_or_default();
        if state["status"] == "pending" {
            break state;
        }
        assert!(
            registered_at.elapsed() < Duration::from_secs(10),
            "the registered table was not looked at (refresh interval 1 h): {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(state["pendingFiles"], 12, "{state}");

    let client = HttpCoordinator::new(&server.url, None).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(loch_optimizer::worker::run(Arc::new(client), worker("default", 1), stopped));
    let list =
        wait_processes(&server, "a successful process", |list| list.first().is_some_and(|p| p["status"] == "success"))
            .await;
    assert_eq!(list[0]["inputFiles"], 12);
    assert_eq!(current_rows(&catalog).await, before, "same rows after optimizing");
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), worker).await.expect("the worker stops").unwrap();
}

/// A quiet table whose minor trigger interval elapses is looked at again at that time, from the
/// due time its last evaluation stored, not at the next periodic check (set to an hour here):
/// two fragments written after a minor optimizing are compacted once the interval has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_interval_that_elapses_on_a_quiet_table_starts_optimizing() {
    let Some(server) = TestServer::start_configured(Backend::Sqlite, Storage::File, false, |config| {
        config.optimizer.local_threads = 1;
        config.refresh_tables.interval = Duration::from_secs(3600);
    })
    .await
    else {
        return;
    };
    let (catalog, mut table) = fragmented_table(
        &server,
        12,
        &[("self-optimizing.min-plan-interval", "0"), ("self-optimizing.minor.trigger.interval", "4000")],
    )
    .await;
    wait_processes(&server, "the first process", |list| list.first().is_some_and(|p| p["status"] == "success")).await;
    table = catalog.load_table(table.identifier()).await.unwrap();
    for i in 100..102 {
        table = append(&catalog, &table, &batch(&table, &[i], "b")).await.unwrap();
    }
    let before = current_rows(&catalog).await;
    let appended = Instant::now();
    // Three small files are too few for the file-count trigger: the commits' own evaluation
    // finds nothing until the interval since the last minor optimizing has passed.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let state = get(&server, "/api/v1/tables/local/ns/t/optimizing").await;
    assert_eq!((state["status"].as_str(), state["summary"]["dataFiles"].as_i64()), (Some("idle"), Some(3)), "{state}");
    let list =
        wait_processes(&server, "a second process", |list| list.len() == 2 && list[0]["status"] == "success").await;
    assert!(appended.elapsed() < Duration::from_secs(60), "optimized after {:?}", appended.elapsed());
    assert_eq!((list[0]["type"].as_str(), list[0]["inputFiles"].as_i64()), (Some("minor"), Some(3)));
    assert_eq!(current_rows(&catalog).await, before, "same rows after optimizing");
}
