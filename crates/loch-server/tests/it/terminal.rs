//! SQL terminal sessions over HTTP: scripts with a failing statement (with and without
//! stop-on-error), stopping a long query, the row limit, expiry, the session limit, and
//! sessions running with the caller's token when authentication is on.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Backend, Storage, TestServer};

async fn start_session(server: &TestServer, body: Value) -> (u16, Value) {
    let response = server.request(Method::POST, "/api/v1/terminal/sessions").json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn session(server: &TestServer, id: &str) -> (u16, Value) {
    let response = server.request(Method::GET, &format!("/api/v1/terminal/sessions/{id}")).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls a session until it is no longer running.
async fn finished(server: &TestServer, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = session(server, id).await;
        assert_eq!(status, 200, "{body}");
        if body["status"] != "running" {
            return body;
        }
        assert!(Instant::now() < deadline, "session did not finish: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn statuses(session: &Value) -> Vec<String> {
    session["statements"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap().to_string()).collect()
}

/// Ten statements, the fifth failing.
const SCRIPT: &str = "
CREATE NAMESPACE IF NOT EXISTS term;
CREATE TABLE term.t (id BIGINT NOT NULL, name STRING);
INSERT INTO term.t VALUES (1, 'a'), (2, 'b');
SELECT count(*) AS n FROM term.t;
SELECT * FROM term.no_such_table;
INSERT INTO term.t VALUES (3, 'c');
SELECT id, name FROM term.t ORDER BY id;
SHOW TABLES IN term;
DESCRIBE term.t;
SELECT max(id) FROM term.t;
";

#[tokio::test]
async fn a_script_with_a_failing_statement_runs_on_or_stops_as_asked() {
    let server = TestServer::start(Backend::Sqlite, Storage::File).await.unwrap();
    let (status, created) = start_session(&server, json!({"catalog": "local", "script": SCRIPT})).await;
    assert_eq!(status, 201, "{created}");
    let done = finished(&server, created["session_id"].as_str().unwrap()).await;
    let mut expected = vec!["finished"; 10];
    expected[4] = "failed";
    assert_eq!(statuses(&done), expected, "{done}");
    assert_eq!(done["status"], "failed");
    assert!(done["statements"][4]["message"].as_str().unwrap().contains("no_such_table"), "{done}");
    assert_eq!(done["statements"][3]["rows"], json!([["2"]]));
    assert_eq!(done["statements"][6]["columns"], json!(["id", "name"]));
    assert_eq!(done["statements"][6]["rows"], json!([["1", "a"], ["2", "b"], ["3", "c"]]));
    assert_eq!(done["statements"][9]["rows"], json!([["3"]]));
    assert!(done["logs"].as_array().unwrap().len() >= 20, "{done}");

    // With stop-on-error the rest never runs (the table exists now: statement 2 fails first).
    let (_, created) =
        start_session(&server, json!({"catalog": "local", "script": SCRIPT, "stop_on_error": true})).await;
    let done = finished(&server, created["session_id"].as_str().unwrap()).await;
    let mut expected = vec!["pending"; 10];
    expected[0] = "finished";
    expected[1] = "failed";
    assert_eq!(statuses(&done), expected, "{done}");
    assert!(done["statements"][1]["message"].as_str().unwrap().contains("already exists"), "{done}");
}

#[tokio::test]
async fn a_long_query_is_stopped_and_the_row_limit_holds() {
    let server = TestServer::start(Backend::Sqlite, Storage::File).await.unwrap();
    // 10^12 joined rows: minutes at least.
    let long = "SELECT sum(a.value * b.value) FROM range(1000000) a CROSS JOIN range(1000000) b; SELECT 1;";
    let (_, created) = start_session(&server, json!({"catalog": "local", "script": long})).await;
    let id = created["session_id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, running) = session(&server, &id).await;
    assert_eq!(running["status"], "running", "{running}");
    assert_eq!(statuses(&running), ["running", "pending"]);
    let started = Instant::now();
    let response = server.request(Method::POST, &format!("/api/v1/terminal/sessions/{id}/stop")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let stopped: Value = response.json().await.unwrap();
    assert_eq!(stopped["status"], "canceled", "{stopped}");
    assert_eq!(statuses(&stopped), ["canceled", "canceled"]);
    // It stays stopped, and the server answers at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, later) = session(&server, &id).await;
    assert_eq!(later["status"], "canceled", "{later}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // 5,000 rows answer 1,000 (terminal.result.limit) and say so.
    let (_, created) = start_session(&server, json!({"catalog": "local", "script": "SELECT * FROM range(5000)"})).await;
    let done = finished(&server, created["session_id"].as_str().unwrap()).await;
    let statement = &done["statements"][0];
    assert_eq!(statement["status"], "finished", "{done}");
    assert_eq!(statement["rows"].as_array().unwrap().len(), 1000);
    assert_eq!(statement["truncated"], true);
    assert_eq!(statement["rows"][999], json!(["999"]));
}

#[tokio::test]
async fn idle_sessions_expire_and_the_session_limit_holds() {
    let server = TestServer::start_configured(Backend::Sqlite, Storage::File, false, |c| {
        c.terminal.session.timeout = Duration::from_secs(1);
        c.terminal.max_sessions = 2;
    })
    .await
    .unwrap();
    let (_, a) = start_session(&server, json!({"catalog": "local", "script": "SELECT 1"})).await;
    let (_, b) = start_session(&server, json!({"catalog": "local", "script": "SELECT 2"})).await;
    let (status, refused) = start_session(&server, json!({"catalog": "local", "script": "SELECT 3"})).await;
    assert_eq!(status, 429, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("terminal.max-sessions"), "{refused}");
    let a = a["session_id"].as_str().unwrap().to_string();
    finished(&server, &a).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, gone) = session(&server, &a).await;
    assert_eq!(status, 404, "{gone}");
    assert!(gone["error"]["message"].as_str().unwrap().contains("expire"), "{gone}");
    let (status, _) = session(&server, b["session_id"].as_str().unwrap()).await;
    assert_eq!(status, 404);
    // Expired sessions free their places.
    let (status, _) = start_session(&server, json!({"catalog": "local", "script": "SELECT 4"})).await;
    assert_eq!(status, 201);

    // A client's mistakes are 4xx with a message.
    let (status, bad) = start_session(&server, json!({"catalog": "local", "script": "SELEC 1"})).await;
    assert_eq!(status, 400, "{bad}");
    let (status, _) = start_session(&server, json!({"catalog": "nope", "script": "SELECT 1"})).await;
    assert_eq!(status, 404);
    let (status, _) = start_session(&server, json!({"catalog": "local", "script": " ; "})).await;
    assert_eq!(status, 400);
    let (status, _) = session(&server, "not-a-session").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn sessions_run_with_the_callers_token() {
    let server = TestServer::start_with(Backend::Sqlite, Storage::File, true).await.unwrap();
    let script = "CREATE NAMESPACE n; CREATE TABLE n.t (id INT); INSERT INTO n.t VALUES (7); SELECT * FROM n.t";
    let (status, created) = start_session(&server, json!({"catalog": "local", "script": script})).await;
    assert_eq!(status, 201, "{created}");
    let done = finished(&server, created["session_id"].as_str().unwrap()).await;
    assert_eq!(statuses(&done), ["finished"; 4], "{done}");
    assert_eq!(done["statements"][3]["rows"], json!([["7"]]));
    // Without a token, no session.
    let response = server
        .http
        .post(format!("{}/api/v1/terminal/sessions", server.url))
        .json(&json!({"catalog": "local", "script": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
