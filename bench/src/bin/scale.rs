//! Scale benchmark: what ONE `loch serve` process costs while it holds many tables and nobody
//! touches them, and how soon a commit is re-evaluated for self-optimizing.
//!
//! Idle work must be proportional to change, not to the number of tables (issue 9, acceptance
//! 5): at 10,000 tables an idle server should use less than 1 % of a core and less than 256 MB of
//! resident memory, and a commit should be re-evaluated within a second. This program starts the
//! real `loch` binary as a child process (embedded SQLite, embedded optimizer threads, the
//! refresh interval given by `--refresh-interval`, default Amoro's 60 s), then:
//!
//! - **empty**: creates the tables through the Iceberg REST API (spread over 100 namespaces), lets
//!   the server settle, then samples the server's CPU time (`/proc/<pid>/stat`) and resident
//!   memory (`/proc/<pid>/status`) over the idle window;
//! - **snapshots**: commits `--snapshots` snapshots to every table as an engine's append does
//!   (`add-snapshot` + `set-snapshot-ref`, guarded by `assert-ref-snapshot-id`), each with a real
//!   (empty) Avro manifest list so that the server's evaluation reads a file as it would for a
//!   real table, then settles and measures the idle window again;
//! - **latency**: commits one more snapshot to random tables, one at a time, and times from the
//!   commit's answer until the table's optimizing summary (`GET /api/v1/tables/.../optimizing`)
//!   names the new snapshot.
//!
//! Build with `--release`; see `bench/README.md`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use iceberg::io::FileIO;
use iceberg::spec::ManifestListWriter;
use rand::Rng;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    /// Tables without snapshots only.
    Empty,
    /// Tables with snapshots only (the tables are still created first, unmeasured).
    Snapshots,
    /// Both, one after the other on the same server.
    Both,
}

#[derive(Debug, Parser)]
#[command(about = "Idle cost and commit-to-evaluation latency of one loch server holding many tables")]
struct Args {
    /// The loch binary [default: $CARGO_TARGET_DIR/release/loch, or target/release/loch].
    #[arg(long)]
    loch: Option<PathBuf>,
    /// Tables to create.
    #[arg(long, default_value_t = 10_000)]
    tables: usize,
    /// Namespaces the tables are spread over.
    #[arg(long, default_value_t = 100)]
    namespaces: usize,
    /// Snapshots committed to every table in the snapshots phase.
    #[arg(long, default_value_t = 20)]
    snapshots: usize,
    /// Idle measurement window.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// Wait between the end of the setup and the idle window.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Commit-to-evaluation latency samples (0: none).
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// The server's `refresh-tables.interval` (Amoro's default is 60 s).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    refresh_interval: Duration,
    /// Which phases to run.
    #[arg(long, value_enum, default_value_t = Phase::Both)]
    phase: Phase,
    /// Concurrent create-table requests.
    #[arg(long, default_value_t = 16)]
    create_concurrency: usize,
    /// Concurrent committers (each on its own tables).
    #[arg(long, default_value_t = 32)]
    commit_concurrency: usize,
    /// The catalog the tables go to (the server's default catalog).
    #[arg(long, default_value = "local")]
    catalog: String,
    /// Keep the server's data directory and log instead of deleting them at the end.
    #[arg(long)]
    keep: bool,
}

/// The `loch serve` child process; killed when dropped.
struct Server {
    child: Child,
    pid: u32,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(bin: &Path, dir: &Path, refresh: Duration) -> Result<Self> {
        let port = loch_testkit::free_port();
        let log = dir.join("server.log");
        let mut command = Command::new(bin);
        command.arg("serve").arg("--data-dir").arg(dir.join("data")).arg("--bind").arg(format!("127.0.0.1:{port}"));
        // Only what the benchmark sets reaches the server's configuration.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LOCH_") {
                command.env_remove(name);
            }
        }
        command
            .env("LOCH_REFRESH__TABLES_INTERVAL", humantime::format_duration(refresh).to_string())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("server.out")).context("cannot create server.out")?)
            .stderr(std::fs::File::create(&log).context("cannot create server.log")?);
        let child = command.spawn().with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child.id();
        Ok(Self { child, pid, base: format!("http://127.0.0.1:{port}"), log })
    }

    /// Waits until `/health` answers 200.
    async fn wait_ready(&mut self, client: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.check_alive()?;
            if let Ok(response) = client.get(format!("{}/health", self.base)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server did not answer /health within 60 s; log: {}", self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails when the server has exited.
    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the server exited ({status}); last lines of its log:\n{}", tail(&self.log, 20));
        }
        Ok(())
    }

    /// SIGTERM, then up to 20 s for a clean shutdown, then SIGKILL.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("the server did not stop within 20 s of SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the clients share.
struct Ctx {
    client: reqwest::Client,
    base: String,
    catalog: String,
    /// `{base}/api/iceberg/rest/v1/{prefix}`.
    catalog_url: String,
    io: FileIO,
}

/// A table and the head of its `main` branch.
#[derive(Debug, Clone)]
struct Table {
    namespace: String,
    name: String,
    location: String,
    head: Option<i64>,
    sequence_number: i64,
}

/// One idle window.
struct Idle {
    phase: &'static str,
    tables: usize,
    snapshots: usize,
    wall_s: f64,
    cpu_s: f64,
    rss_start_kb: u64,
    rss_end_kb: u64,
    rss_max_kb: u64,
    hwm_kb: u64,
    threads: u64,
    /// Tables whose last evaluation is of their current snapshot, of those with snapshots.
    evaluated: Option<(usize, usize)>,
}

/// Commit-to-evaluation latencies.
#[derive(Default)]
struct Latency {
    samples: usize,
    done: Vec<Duration>,
    timeouts: usize,
    errors: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = args.loch.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from).join("release/loch")
    });
    if !bin.is_file() {
        bail!(
            "no loch binary at {} (build it with `cargo build --release -p loch-cli`, or pass --loch)",
            bin.display()
        );
    }
    if args.tables == 0 || args.namespaces == 0 {
        bail!("--tables and --namespaces must be positive");
    }
    let tmp =
        tempfile::Builder::new().prefix("scale-bench").tempdir().context("cannot create a temporary directory")?;
    let dir = tmp.path().to_path_buf();
    let clk_tck = clock_ticks();
    eprintln!(
        "scale-bench: {} tables in {} namespaces, {} snapshots/table, idle {}, settle {}, refresh interval {}, phase {:?}",
        args.tables,
        args.namespaces,
        args.snapshots,
        humantime::format_duration(args.idle),
        humantime::format_duration(args.settle),
        humantime::format_duration(args.refresh_interval),
        args.phase,
    );
    eprintln!("server: {} (data and log in {})", bin.display(), dir.display());

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(120))
        .build()
        .context("cannot build the HTTP client")?;
    let mut server = Server::start(&bin, &dir, args.refresh_interval)?;
    let result = run(&args, &mut server, client, clk_tck).await;
    server.stop();
    let report = log_report(&server.log, result.is_err());
    if args.keep {
        let kept = tmp.keep();
        eprintln!("kept {}", kept.display());
    }
    let (idle, latency, setup) = result?;
    print_results(&args, &idle, &latency, &setup);
    println!();
    println!("{report}");
    Ok(())
}

type Outcome = (Vec<Idle>, Latency, Vec<String>);

async fn run(args: &Args, server: &mut Server, client: reqwest::Client, clk_tck: f64) -> Result<Outcome> {
    server.wait_ready(&client).await?;
    eprintln!("server pid {} listening on {}", server.pid, server.base);
    let catalogs: Value = get_json(&client, &format!("{}/api/v1/catalogs", server.base)).await?;
    eprintln!("catalogs: {catalogs}");
    let config: Value =
        get_json(&client, &format!("{}/api/iceberg/rest/v1/config?warehouse={}", server.base, args.catalog)).await?;
    let prefix = config["overrides"]["prefix"].as_str().or(config["defaults"]["prefix"].as_str()).unwrap_or("");
    let root = format!("{}/api/iceberg/rest/v1", server.base);
    let catalog_url = if prefix.is_empty() { root } else { format!("{root}/{prefix}") };
    let ctx = Arc::new(Ctx {
        client,
        base: server.base.clone(),
        catalog: args.catalog.clone(),
        catalog_url,
        io: FileIO::new_with_fs(),
    });

    let mut setup = Vec::new();
    let mut idle = Vec::new();
    let mut tables = create_tables(&ctx, args, &mut setup).await?;
    server.check_alive()?;
    if matches!(args.phase, Phase::Empty | Phase::Both) {
        idle.push(measure_idle(server, &ctx, args, "empty", 0, &tables, clk_tck).await?);
    }
    if matches!(args.phase, Phase::Snapshots | Phase::Both) {
        tables = commit_snapshots(&ctx, args, tables, &mut setup).await?;
        server.check_alive()?;
        idle.push(measure_idle(server, &ctx, args, "snapshots", args.snapshots, &tables, clk_tck).await?);
    }
    let latency = measure_latency(&ctx, server, args, &mut tables).await?;
    Ok((idle, latency, setup))
}

/// Creates the namespaces and tables, `--create-concurrency` requests at a time.
async fn create_tables(ctx: &Arc<Ctx>, args: &Args, setup: &mut Vec<String>) -> Result<Vec<Table>> {
    let namespaces = args.namespaces.min(args.tables);
    let start = Instant::now();
    for n in 0..namespaces {
        post(ctx, &format!("{}/namespaces", ctx.catalog_url), &json!({"namespace": [namespace_name(n)]}))
            .await
            .with_context(|| format!("creating namespace {}", namespace_name(n)))?;
    }
    eprintln!("creating {} tables ({} at a time)", args.tables, args.create_concurrency);
    let mut created = Vec::with_capacity(args.tables);
    let mut errors = 0usize;
    let mut results = futures::stream::iter(0..args.tables)
        .map(|i| {
            let ctx = ctx.clone();
            async move {
                let namespace = namespace_name(i % namespaces);
                let name = format!("t{i:05}");
                let location = create_table(&ctx, &namespace, &name).await;
                (namespace, name, location)
            }
        })
        .buffer_unordered(args.create_concurrency.max(1));
    while let Some((namespace, name, location)) = results.next().await {
        match location {
            Ok(location) => created.push(Table { namespace, name, location, head: None, sequence_number: 0 }),
            Err(e) => {
                errors += 1;
                if errors <= 5 {
                    eprintln!("create {namespace}.{name} failed: {e:#}");
                }
            }
        }
        let done = created.len() + errors;
        if done.is_multiple_of(1000) {
            eprintln!("  {done}/{} tables ({:.0} s)", args.tables, start.elapsed().as_secs_f64());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let line = format!(
        "created {} tables in {namespaces} namespaces in {secs:.1} s ({:.0} tables/s, {} at a time, {errors} errors)",
        created.len(),
        created.len() as f64 / secs,
        args.create_concurrency
    );
    eprintln!("{line}");
    setup.push(line);
    if created.is_empty() {
        bail!("no table could be created");
    }
    created.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(created)
}

/// Commits `--snapshots` snapshots to every table, `--commit-concurrency` committers each on its
/// own tables.
async fn commit_snapshots(
    ctx: &Arc<Ctx>,
    args: &Args,
    tables: Vec<Table>,
    setup: &mut Vec<String>,
) -> Result<Vec<Table>> {
    let workers = args.commit_concurrency.clamp(1, tables.len());
    let total = tables.len() * args.snapshots;
    eprintln!("committing {total} snapshots ({} per table, {workers} committers)", args.snapshots);
    let mut chunks: Vec<Vec<Table>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, table) in tables.into_iter().enumerate() {
        chunks[i % workers].push(table);
    }
    let start = Instant::now();
    let progress = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for mut chunk in chunks {
        let ctx = ctx.clone();
        let progress = progress.clone();
        let snapshots = args.snapshots;
        tasks.push(tokio::spawn(async move {
            let mut errors = 0usize;
            let mut first_error = None;
            for table in &mut chunk {
                for _ in 0..snapshots {
                    if let Err(e) = commit_snapshot(&ctx, table).await {
                        errors += 1;
                        first_error.get_or_insert(format!("{}.{}: {e:#}", table.namespace, table.name));
                        // The head may be unknown now; leave the table alone.
                        break;
                    }
                    let done = progress.fetch_add(1, Ordering::Relaxed) + 1;
                    if done.is_multiple_of(10_000) {
                        eprintln!("  {done}/{total} commits ({:.0} s)", start.elapsed().as_secs_f64());
                    }
                }
            }
            (chunk, errors, first_error)
        }));
    }
    let mut tables = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (chunk, e, first) = task.await.context("a committer panicked")?;
        tables.extend(chunk);
        errors += e;
        if let Some(first) = first {
            eprintln!("commit failed: {first}");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let commits = progress.load(Ordering::Relaxed);
    let line = format!(
        "committed {commits} snapshots ({} per table, each with a real manifest list) in {secs:.1} s ({:.0} commits/s, {workers} committers, {errors} errors)",
        args.snapshots,
        commits as f64 / secs
    );
    eprintln!("{line}");
    setup.push(line);
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tables)
}

/// Settles, then samples the server's CPU time and memory over the idle window.
async fn measure_idle(
    server: &mut Server,
    ctx: &Ctx,
    args: &Args,
    phase: &'static str,
    snapshots: usize,
    tables: &[Table],
    clk_tck: f64,
) -> Result<Idle> {
    eprintln!("{phase}: settling for {}", humantime::format_duration(args.settle));
    tokio::time::sleep(args.settle).await;
    server.check_alive()?;
    eprintln!("{phase}: measuring idle for {}", humantime::format_duration(args.idle));
    let pid = server.pid;
    let rss_start_kb = status_kb(pid, "VmRSS")?;
    let cpu_start = cpu_ticks(pid)?;
    let start = Instant::now();
    let mut rss_max_kb = rss_start_kb;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while start.elapsed() < args.idle {
        tick.tick().await;
        server.check_alive()?;
        rss_max_kb = rss_max_kb.max(status_kb(pid, "VmRSS")?);
    }
    let cpu_end = cpu_ticks(pid)?;
    let wall_s = start.elapsed().as_secs_f64();
    let rss_end_kb = status_kb(pid, "VmRSS")?;
    rss_max_kb = rss_max_kb.max(rss_end_kb);
    let hwm_kb = status_kb(pid, "VmHWM")?;
    let threads = status_kb(pid, "Threads")?;
    let cpu_s = cpu_end.saturating_sub(cpu_start) as f64 / clk_tck;
    let evaluated = if snapshots > 0 { Some(evaluated_at_head(ctx, tables).await?) } else { None };
    let idle = Idle {
        phase,
        tables: tables.len(),
        snapshots,
        wall_s,
        cpu_s,
        rss_start_kb,
        rss_end_kb,
        rss_max_kb,
        hwm_kb,
        threads,
        evaluated,
    };
    eprintln!(
        "{phase}: {:.2} CPU s in {wall_s:.1} s = {:.2} % of a core; RSS {} → {} MB (max {}, HWM {}), {threads} threads{}",
        cpu_s,
        cpu_s / wall_s * 100.0,
        mb(rss_start_kb),
        mb(rss_end_kb),
        mb(rss_max_kb),
        mb(hwm_kb),
        evaluated.map_or(String::new(), |(e, n)| format!("; {e}/{n} tables evaluated at their current snapshot")),
    );
    Ok(idle)
}

/// Counts the tables whose optimizing summary names their current snapshot, from the default
/// optimizer group's table list (one request).
async fn evaluated_at_head(ctx: &Ctx, tables: &[Table]) -> Result<(usize, usize)> {
    let list: Value = get_json(&ctx.client, &format!("{}/api/v1/optimizer-groups/default/tables", ctx.base)).await?;
    let mut evaluated: HashMap<(String, String), i64> = HashMap::new();
    for entry in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        let namespace = entry["namespace"]
            .as_array()
            .map(|levels| levels.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("."))
            .unwrap_or_default();
        let table = entry["table"].as_str().unwrap_or_default().to_string();
        if let Some(id) = entry["summary"]["snapshotId"].as_i64() {
            evaluated.insert((namespace, table), id);
        }
    }
    let with_snapshots: Vec<&Table> = tables.iter().filter(|t| t.head.is_some()).collect();
    let at_head = with_snapshots
        .iter()
        .filter(|t| evaluated.get(&(t.namespace.clone(), t.name.clone())).copied() == t.head)
        .count();
    Ok((at_head, with_snapshots.len()))
}

/// Commits one snapshot to random tables, one at a time, and times until its evaluation shows.
async fn measure_latency(ctx: &Ctx, server: &mut Server, args: &Args, tables: &mut [Table]) -> Result<Latency> {
    let mut latency = Latency { samples: args.samples.min(tables.len()), ..Latency::default() };
    if latency.samples == 0 {
        return Ok(latency);
    }
    let picks = rand::seq::index::sample(&mut rand::rng(), tables.len(), latency.samples).into_vec();
    eprintln!("latency: {} samples, one a second", latency.samples);
    for (n, i) in picks.into_iter().enumerate() {
        if n > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        server.check_alive()?;
        let table = &mut tables[i];
        let snapshot_id = match commit_snapshot(ctx, table).await {
            Ok(id) => id,
            Err(e) => {
                latency.errors += 1;
                eprintln!("latency: commit to {}.{} failed: {e:#}", table.namespace, table.name);
                continue;
            }
        };
        let start = Instant::now();
        let url = format!("{}/api/v1/tables/{}/{}/{}/optimizing", ctx.base, ctx.catalog, table.namespace, table.name);
        loop {
            let seen = match ctx.client.get(&url).send().await {
                Ok(response) if response.status().is_success() => {
                    response.json::<Value>().await.ok().and_then(|v| v["summary"]["snapshotId"].as_i64())
                }
                _ => None,
            };
            if seen == Some(snapshot_id) {
                let elapsed = start.elapsed();
                eprintln!("  {}.{}: evaluated {:.0} ms after the commit", table.namespace, table.name, ms(elapsed));
                latency.done.push(elapsed);
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                eprintln!("  {}.{}: not evaluated within 30 s (summary names {seen:?})", table.namespace, table.name);
                latency.timeouts += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    latency.done.sort();
    Ok(latency)
}

fn namespace_name(n: usize) -> String {
    format!("ns{n:03}")
}

/// Creates a table; returns its location (without a trailing `/`).
async fn create_table(ctx: &Ctx, namespace: &str, name: &str) -> Result<String> {
    let schema = json!({"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "id", "type": "long", "required": true},
        {"id": 2, "name": "payload", "type": "string", "required": false},
    ]});
    let body = post(
        ctx,
        &format!("{}/namespaces/{namespace}/tables", ctx.catalog_url),
        &json!({"name": name, "schema": schema}),
    )
    .await?;
    let created: Value = serde_json::from_slice(&body).context("create-table response is not JSON")?;
    let location = created["metadata"]["location"].as_str().context("no location in the create response")?;
    Ok(location.trim_end_matches('/').to_string())
}

/// Writes an empty manifest list for a new snapshot and commits what an engine's append sends:
/// the snapshot and the branch move, guarded by the head. Returns the new snapshot's id.
async fn commit_snapshot(ctx: &Ctx, table: &mut Table) -> Result<i64> {
    let snapshot_id = rand::rng().random_range(1..i64::MAX);
    let sequence_number = table.sequence_number + 1;
    let manifest_list = format!("{}/metadata/snap-{snapshot_id}-{}.avro", table.location, uuid::Uuid::new_v4());
    let output = ctx.io.new_output(&manifest_list).context("manifest list output")?;
    let writer = output.writer().await.with_context(|| format!("cannot create {manifest_list}"))?;
    ManifestListWriter::v2(writer, snapshot_id, table.head, sequence_number)
        .close()
        .await
        .with_context(|| format!("cannot write {manifest_list}"))?;
    let body = json!({
        "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": table.head}],
        "updates": [
            {"action": "add-snapshot", "snapshot": {
                "snapshot-id": snapshot_id,
                "parent-snapshot-id": table.head,
                "sequence-number": sequence_number,
                "timestamp-ms": now_ms(),
                "manifest-list": manifest_list,
                "summary": {"operation": "append", "added-data-files": "0", "added-records": "0",
                            "total-data-files": "0", "total-records": "0", "total-files-size": "0",
                            "total-delete-files": "0", "total-position-deletes": "0", "total-equality-deletes": "0"},
                "schema-id": 0,
            }},
            {"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": snapshot_id},
        ],
    });
    post(ctx, &format!("{}/namespaces/{}/tables/{}", ctx.catalog_url, table.namespace, table.name), &body)
        .await
        .context("commit")?;
    table.head = Some(snapshot_id);
    table.sequence_number = sequence_number;
    Ok(snapshot_id)
}

/// POSTs `body`; returns the response body, or the status and body as the error.
async fn post(ctx: &Ctx, url: &str, body: &Value) -> Result<bytes::Bytes> {
    let response = ctx.client.post(url).json(body).send().await.with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let text = response.bytes().await?;
    if !status.is_success() {
        bail!("POST {url}: {status}: {}", String::from_utf8_lossy(&text));
    }
    Ok(text)
}

async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value> {
    let response = client.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let text = response.bytes().await?;
    if !status.is_success() {
        bail!("GET {url}: {status}: {}", String::from_utf8_lossy(&text));
    }
    serde_json::from_slice(&text).with_context(|| format!("GET {url}: not JSON"))
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("cannot read /proc/<pid>/stat")?;
    // The command name (field 2) may hold spaces; count fields after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("unexpected /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let field = |i: usize| -> Result<u64> {
        fields.get(i).context("short /proc/<pid>/stat")?.parse::<u64>().context("bad number in /proc/<pid>/stat")
    };
    Ok(field(11)? + field(12)?)
}

/// A numeric field of `/proc/<pid>/status` (`VmRSS`, `VmHWM` in kB; `Threads`).
fn status_kb(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("cannot read /proc/<pid>/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

fn mb(kb: u64) -> String {
    format!("{:.0}", kb as f64 / 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Counts WARN and ERROR lines of the server's log; shows some of them, and the last lines of
/// the log when there were any or the run failed.
fn log_report(path: &Path, failed: bool) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let is = |line: &str, level: &str| line.split_whitespace().nth(1) == Some(level);
    let warns: Vec<&str> = lines.iter().copied().filter(|l| is(l, "WARN")).collect();
    let errors: Vec<&str> = lines.iter().copied().filter(|l| is(l, "ERROR")).collect();
    let mut report =
        format!("server log: {} lines, {} WARN, {} ERROR ({})", lines.len(), warns.len(), errors.len(), path.display());
    if !warns.is_empty() || !errors.is_empty() || failed {
        let first: Vec<&str> = lines.iter().copied().filter(|l| is(l, "WARN") || is(l, "ERROR")).take(5).collect();
        if !first.is_empty() {
            report.push_str("\nfirst WARN/ERROR lines:\n");
            report.push_str(&first.join("\n"));
        }
        report.push_str("\nlast 20 lines:\n");
        report.push_str(&lines[lines.len().saturating_sub(20)..].join("\n"));
    }
    report
}

fn print_results(args: &Args, idle: &[Idle], latency: &Latency, setup: &[String]) {
    println!();
    for line in setup {
        println!("setup: {line}");
    }
    println!();
    println!(
        "| phase | tables | snapshots/table | idle CPU % of a core | RSS start MB | RSS end MB | RSS max MB | VmHWM MB | threads | evaluated at head |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in idle {
        println!(
            "| {} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} |",
            row.phase,
            row.tables,
            row.snapshots,
            row.cpu_s / row.wall_s * 100.0,
            mb(row.rss_start_kb),
            mb(row.rss_end_kb),
            mb(row.rss_max_kb),
            mb(row.hwm_kb),
            row.threads,
            row.evaluated.map_or("-".to_string(), |(e, n)| format!("{e}/{n}")),
        );
    }
    println!(
        "\n(idle window {}, after {} settling; refresh-tables.interval {})",
        humantime::format_duration(args.idle),
        humantime::format_duration(args.settle),
        humantime::format_duration(args.refresh_interval)
    );
    if latency.samples > 0 {
        let p50 = latency
            .done
            .get((latency.done.len().saturating_sub(1)) / 2)
            .map_or("-".to_string(), |d| format!("{:.0}", ms(*d)));
        let max = latency.done.last().map_or("-".to_string(), |d| format!("{:.0}", ms(*d)));
        println!();
        println!("| samples | p50 ms | max ms | timeouts | commit errors |");
        println!("|---:|---:|---:|---:|---:|");
        println!("| {} | {p50} | {max} | {} | {} |", latency.samples, latency.timeouts, latency.errors);
    }
}
