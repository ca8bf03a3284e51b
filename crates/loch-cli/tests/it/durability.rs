//! No acknowledged commit is lost: 32 writers commit to one table through `loch serve` while the
//! server is killed with SIGKILL and restarted, again and again. Every commit a writer saw
//! answered 200 must be in the table afterwards.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::common::{LOCH, Serve, http};

const WRITERS: usize = 32;
const KILLS: usize = 3;

fn start(data: &Path, port: u16, database: Option<&str>) -> Serve {
    let mut command = Command::new(LOCH);
    command.args(["serve", "--data-dir"]).arg(data).args(["--bind", &format!("127.0.0.1:{port}")]);
    command.env("LOCH_OPTIMIZER_LOCAL__THREADS", "0");
    if let Some(url) = database {
        command.env("LOCH_DATABASE_URL", url);
    }
    Serve::spawn(command, port)
}

fn acknowledged_commits_survive_repeated_kills(database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let port = loch_testkit::free_port();
    let mut server = start(dir.path(), port, database);
    let base = format!("{}/api/iceberg/rest/v1/catalogs/local/namespaces", server.url);
    let (status, body) = http::call(reqwest::Method::POST, &base, Some(json!({"namespace": ["db"]})));
    assert_eq!(status, 200, "{body}");
    let schema = json!({"type": "struct", "fields": [{"id": 1, "name": "id", "type": "long", "required": true}]});
    let (status, body) =
        http::call(reqwest::Method::POST, &format!("{base}/db/tables"), Some(json!({"name": "t", "schema": schema})));
    assert_eq!(status, 200, "{body}");

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let table = format!("{base}/db/tables/t");
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (acknowledged, stop, table) = (acknowledged.clone(), stop.clone(), table.clone());
        writers.push(runtime.spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{writer}-{n}");
                let body =
                    json!({"requirements": [], "updates": [{"action": "set-properties", "updates": {&key: "1"}}]});
                match client.post(&table).json(&body).send().await {
                    Ok(response) if response.status() == 200 => {
                        acknowledged.lock().unwrap().insert(key);
                        n += 1;
                    }
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // Conflicts after the server's own retries, and a commit cut by the kill.
                        assert!(matches!(status, 409 | 500 | 503), "writer {writer}: {status}");
                        n += 1;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }));
    }
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(1500));
        server.proc.kill();
        std::thread::sleep(Duration::from_millis(200));
        server = start(dir.path(), port, database);
    }
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for writer in writers {
            writer.await.unwrap();
        }
    });

    let (status, body) = http::call(reqwest::Method::GET, &table, None);
    assert_eq!(status, 200, "{body}");
    let properties = body["metadata"]["properties"].as_object().unwrap();
    let acknowledged = acknowledged.lock().unwrap();
    let lost: Vec<&String> = acknowledged.iter().filter(|k| !properties.contains_key(*k)).collect();
    assert!(acknowledged.len() > WRITERS * 2, "enough commits to mean something: {}", acknowledged.len());
    assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
    eprintln!("{} acknowledged commits across {KILLS} SIGKILLs, none lost", acknowledged.len());
    server.stop("TERM");
}

#[test]
fn no_acknowledged_commit_is_lost_under_32_writers_and_repeated_kill_9_sqlite() {
    acknowledged_commits_survive_repeated_kills(None);
}

#[test]
fn no_acknowledged_commit_is_lost_under_32_writers_and_repeated_kill_9_postgres() {
    let Some(postgres) = loch_testkit::postgres() else { return };
    acknowledged_commits_survive_repeated_kills(Some(&postgres.create_database()));
}
