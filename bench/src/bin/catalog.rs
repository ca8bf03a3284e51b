//! Catalog benchmark: loadTable and commit throughput and latency at several client counts,
//! for Loch on SQLite and on PostgreSQL, and for a peer Iceberg REST server (rustberg) when it
//! is installed, all in one run so the ratios are comparable on a noisy machine.
//!
//! A commit is what an engine's append sends: `add-snapshot` + `set-snapshot-ref` guarded by
//! `assert-ref-snapshot-id`; each client commits to its own table, so the numbers measure the
//! catalog, not contention on one table. Build with `--release`; see `bench/README.md`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "Iceberg REST catalog benchmark (loadTable and commit)")]
struct Args {
    /// How long each measurement runs.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent clients, comma-separated.
    #[arg(long, default_value = "1,8,32", value_delimiter = ',')]
    clients: Vec<usize>,
    /// rustberg binary for the peer comparison (default: ~/.cache/loch-tools/bin/rustberg if present).
    #[arg(long)]
    rustberg: Option<PathBuf>,
    /// Skip the PostgreSQL run.
    #[arg(long)]
    no_postgres: bool,
}

/// One measured configuration.
struct Row {
    server: String,
    op: &'static str,
    clients: usize,
    ops: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Row {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[i].as_secs_f64() * 1000.0
    }
}

/// An Iceberg REST endpoint under test.
struct Target {
    name: String,
    /// `{base}/v1/{prefix}`.
    catalog_url: String,
    client: reqwest::Client,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let mut rows = Vec::new();

    // Loch on SQLite.
    let sqlite = start_loch(tmp.path().join("sqlite"), None).await?;
    rows.extend(
        run_all(&target("loch/sqlite", &format!("{}/api/iceberg/rest", sqlite.url()), "local").await?, &args).await?,
    );
    sqlite.shutdown().await?;

    // Loch on PostgreSQL (fsync on, as in production).
    if !args.no_postgres {
        let pg = loch_testkit::postgres::PostgresServer::start(&tmp.path().join("pg"), true)?;
        let result = async {
            let loch = start_loch(tmp.path().join("pgdata"), Some(pg.admin_url.clone())).await?;
            let rows =
                run_all(&target("loch/postgres", &format!("{}/api/iceberg/rest", loch.url()), "local").await?, &args)
                    .await;
            loch.shutdown().await?;
            rows
        }
        .await;
        pg.stop()?;
        rows.extend(result?);
    }

    // The peer.
    let rustberg = args.rustberg.clone().or_else(|| {
        let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/loch-tools/bin/rustberg");
        cached.exists().then_some(cached)
    });
    match rustberg {
        Some(bin) => {
            let mut peer = Rustberg::start(&bin, &tmp.path().join("rustberg"))?;
            let result =
                async { run_all(&target("rustberg/redb", &peer.url, &peer.warehouse).await?, &args).await }.await;
            peer.stop();
            rows.extend(result?);
        }
        None => eprintln!(
            "rustberg not found: the peer comparison is skipped (cargo install rustberg --version 0.3.0 --no-default-features --features cli)"
        ),
    }

    print_table(&rows);
    Ok(())
}

async fn start_loch(dir: PathBuf, database: Option<String>) -> Result<loch_server::RunningServer> {
    let mut config = loch_server::Config { data_dir: dir, bind: "127.0.0.1:0".parse()?, ..Default::default() };
    config.database.max_connections = 32;
    if let Some(url) = database {
        config.database.url = url;
    }
    Ok(loch_server::start(config).await?)
}

/// Resolves the catalog prefix of the REST catalog at `root` through `GET /v1/config`.
async fn target(name: &str, root: &str, warehouse: &str) -> Result<Target> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let config: Value =
        client.get(format!("{root}/v1/config?warehouse={warehouse}")).send().await?.error_for_status()?.json().await?;
    let prefix = config["overrides"]["prefix"].as_str().or(config["defaults"]["prefix"].as_str()).unwrap_or("");
    let catalog_url = if prefix.is_empty() { format!("{root}/v1") } else { format!("{root}/v1/{prefix}") };
    Ok(Target { name: name.to_string(), catalog_url, client })
}

async fn run_all(target: &Target, args: &Args) -> Result<Vec<Row>> {
    let max = args.clients.iter().copied().max().unwrap_or(1);
    let ns = format!("bench{}", std::process::id());
    post(target, &format!("{}/namespaces", target.catalog_url), &json!({"namespace": [ns]})).await?;
    // Tables to load: one per client slot, each with some history (20 snapshots).
    for t in 0..max {
        let mut head = Head::new(create_table(target, &ns, &format!("load{t}")).await?);
        for _ in 0..20 {
            commit_append(target, &ns, &format!("load{t}"), &mut head).await?;
        }
    }
    let mut rows = Vec::new();
    for &clients in &args.clients {
        rows.push(
            measure(target, "loadTable", clients, args.duration, |i| {
                let url = format!("{}/namespaces/{ns}/tables/load{}", target.catalog_url, i % max);
                let client = target.client.clone();
                move || {
                    let (url, client) = (url.clone(), client.clone());
                    async move {
                        client
                            .get(&url)
                            .send()
                            .await?
                            .error_for_status()?
                            .bytes()
                            .await
                            .map(|_| ())
                            .map_err(anyhow::Error::from)
                    }
                }
            })
            .await?,
        );
        // Fresh tables per commit run, one per client.
        let run = format!("c{clients}");
        let mut heads = Vec::new();
        for t in 0..clients {
            heads.push(Arc::new(tokio::sync::Mutex::new(Head::new(
                create_table(target, &ns, &format!("{run}_{t}")).await?,
            ))));
        }
        let target_ref = Arc::new(Target {
            name: target.name.clone(),
            catalog_url: target.catalog_url.clone(),
            client: target.client.clone(),
        });
        rows.push(
            measure(target, "commit", clients, args.duration, |i| {
                let table = format!("{run}_{i}");
                let ns = ns.clone();
                let target = target_ref.clone();
                let head = heads[i].clone();
                move || {
                    let (table, ns, target, head) = (table.clone(), ns.clone(), target.clone(), head.clone());
                    async move { commit_append(&target, &ns, &table, &mut *head.lock().await).await }
                }
            })
            .await?,
        );
    }
    Ok(rows)
}

/// Runs `clients` loops of the operation made by `make(i)` for `duration`.
async fn measure<F, Op, Fut>(
    target: &Target,
    op: &'static str,
    clients: usize,
    duration: Duration,
    make: F,
) -> Result<Row>
where
    F: Fn(usize) -> Op,
    Op: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for i in 0..clients {
        let op = make(i);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            while Instant::now() < deadline {
                let t = Instant::now();
                match op().await {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e, first) = task.await?;
        latencies.extend(l);
        errors += e;
        if let Some(first) = first {
            eprintln!("{} {op} x{clients}: error: {first}", target.name);
        }
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let row = Row { server: target.name.clone(), op, clients, ops: latencies.len(), errors, elapsed, latencies };
    eprintln!(
        "{:<14} {:<9} clients={:<3} {:>8.0} ops/s  p99 {:>7.2} ms",
        row.server,
        op,
        clients,
        row.ops as f64 / elapsed.as_secs_f64(),
        row.percentile(0.99)
    );
    Ok(row)
}

async fn post(target: &Target, url: &str, body: &Value) -> Result<Value> {
    let text = post_raw(target, url, body).await?;
    Ok(serde_json::from_slice(&text).unwrap_or(Value::Null))
}

/// POSTs `body`; returns the response body unparsed (commits only need the status).
async fn post_raw(target: &Target, url: &str, body: &Value) -> Result<bytes::Bytes> {
    let response = target.client.post(url).json(body).send().await?;
    let status = response.status();
    let text = response.bytes().await?;
    if !status.is_success() {
        bail!("POST {url}: {status}: {}", String::from_utf8_lossy(&text));
    }
    Ok(text)
}

/// Creates a table; returns its location.
async fn create_table(target: &Target, ns: &str, name: &str) -> Result<String> {
    let schema = json!({"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "id", "type": "long", "required": true},
        {"id": 2, "name": "payload", "type": "string", "required": false},
    ]});
    let created = post(
        target,
        &format!("{}/namespaces/{ns}/tables", target.catalog_url),
        &json!({"name": name, "schema": schema}),
    )
    .await?;
    created["metadata"]["location"].as_str().map(str::to_string).context("no location in the create response")
}

/// The branch head a client commits on top of.
struct Head {
    location: String,
    snapshot_id: Option<i64>,
    sequence_number: i64,
}

impl Head {
    fn new(location: String) -> Self {
        Self { location, snapshot_id: None, sequence_number: 0 }
    }
}

/// Commits what an append sends: a new snapshot and the branch move, guarded by the head.
async fn commit_append(target: &Target, ns: &str, table: &str, head: &mut Head) -> Result<()> {
    let snapshot_id = (rand_u63() % (i64::MAX as u64)) as i64;
    let sequence = head.sequence_number + 1;
    let n = sequence.to_string();
    let body = json!({
        "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": head.snapshot_id}],
        "updates": [
            {"action": "add-snapshot", "snapshot": {
                "snapshot-id": snapshot_id,
                "parent-snapshot-id": head.snapshot_id,
                "sequence-number": sequence,
                "timestamp-ms": now_ms(),
                "manifest-list": format!("{}/metadata/snap-{snapshot_id}.avro", head.location),
                "summary": {"operation": "append", "added-data-files": "1", "added-records": "100",
                            "total-data-files": n, "total-records": (sequence * 100).to_string(), "total-files-size": (sequence * 4096).to_string()},
                "schema-id": 0,
            }},
            {"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": snapshot_id},
        ],
    });
    post_raw(target, &format!("{}/namespaces/{ns}/tables/{table}", target.catalog_url), &body)
        .await
        .context("commit")?;
    head.snapshot_id = Some(snapshot_id);
    head.sequence_number = sequence;
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn rand_u63() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos() ^ now_ms() as u128);
    h.finish() >> 1
}

fn print_table(rows: &[Row]) {
    println!("| server | op | clients | ops/s | p50 ms | p99 ms | errors | ops/s vs loch/sqlite |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let rate = row.ops as f64 / row.elapsed.as_secs_f64();
        let base = rows
            .iter()
            .find(|b| b.server == "loch/sqlite" && b.op == row.op && b.clients == row.clients)
            .map(|b| b.ops as f64 / b.elapsed.as_secs_f64());
        let ratio = base.map_or("-".to_string(), |b| format!("{:.2}", rate / b));
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {} | {} |",
            row.server,
            row.op,
            row.clients,
            rate,
            row.percentile(0.5),
            row.percentile(0.99),
            row.errors,
            ratio
        );
    }
}

/// A rustberg server (crates.io `rustberg` 0.3.0) with an embedded redb store.
struct Rustberg {
    child: Child,
    url: String,
    warehouse: String,
}

impl Rustberg {
    fn start(bin: &Path, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("wh"))?;
        std::fs::create_dir_all(dir.join("cat"))?;
        let port = loch_testkit::free_port();
        let warehouse = format!("file://{}", dir.join("wh").display());
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--warehouse", &warehouse])
            .args(["--catalog-url", &format!("file://{}", dir.join("cat").display())])
            .args(["--no-auth", "--insecure-http", "--dev"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rustberg.log"))?)
            .spawn()
            .context("cannot start rustberg")?;
        let url = format!("http://127.0.0.1:{port}");
        let mut peer = Self { child, url, warehouse };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                peer.stop();
                bail!("rustberg did not start; see {}", dir.join("rustberg.log").display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(peer)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
