//! End-to-end compaction benchmark, the way users meet it: a table written by PyIceberg in many
//! small appends (self-optimizing off) into `loch serve`, then self-optimizing switched on; the
//! clock runs from the property change to the optimizing commit being visible, and the CPU is
//! the server's (it runs in this process; the writer ran before, in Python). Beside it, delta-rs
//! `optimize.compact()` on the same rows, zstd level 3 on both sides, in the same run.
//!
//! Shapes are `FILESxROWS`, optionally `+deletes` (equality and position deletes committed after
//! the appends; delta-rs compacts as many files holding the live rows) or `+loch` (the appends
//! are written by Loch's own writer, the one its SQL `INSERT` uses, instead of PyIceberg).
//!
//! Build with `--release`; see `bench/README.md`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use loch_bench::process::{PeakRss, cpu_time};
use loch_bench::table_writes as loch_writes;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "Compaction end to end through loch serve (PyIceberg-written files) vs delta-rs compact()")]
struct Args {
    /// Shapes as FILESxROWS (appends × rows per append), each optionally `+deletes` or `+loch`,
    /// comma-separated.
    #[arg(long, default_value = "200x25000,2000x2500,200x25000+deletes,200x25000+loch")]
    shapes: String,
    /// Optimizer threads of the server, and delta-rs's `max_concurrent_tasks`.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Python with `pyiceberg` and `deltalake` (default: .venv-bench/bin/python of the workspace).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Skip delta-rs.
    #[arg(long)]
    no_delta: bool,
    /// Shapes of more files than this are written by pyarrow and added in one PyIceberg commit
    /// (`add_files`) rather than appended one commit each (which slows with every commit).
    #[arg(long, default_value_t = 500)]
    append_up_to: u64,
}

/// One shape: appends of rows, who writes them, whether deletes follow.
#[derive(Debug, Clone, Copy)]
struct Shape {
    files: u64,
    rows: u64,
    /// Written by Loch's writer instead of PyIceberg.
    loch_writer: bool,
    /// Equality and position deletes follow the appends.
    deletes: bool,
}

impl Shape {
    fn parse(text: &str) -> Result<Self> {
        let (size, variant) = text.trim().split_once('+').map_or((text.trim(), None), |(s, v)| (s, Some(v)));
        let (files, rows) = size.split_once('x').context("a shape is FILESxROWS[+deletes|+loch]")?;
        let (files, rows): (u64, u64) = (files.trim().parse()?, rows.trim().parse()?);
        ensure!(files > 0 && rows > 0, "a shape needs files and rows");
        let (loch_writer, deletes) = match variant {
            None => (false, false),
            Some("deletes") => (false, true),
            Some("loch") => (true, false),
            Some(other) => bail!("unknown shape variant +{other} (+deletes or +loch)"),
        };
        Ok(Self { files, rows, loch_writer, deletes })
    }

    fn label(&self) -> String {
        let base = format!("{} × {}", self.files, self.rows);
        match (self.loch_writer, self.deletes) {
            (true, _) => format!("{base}, Loch-written"),
            (_, true) => format!("{base} + deletes"),
            _ => base,
        }
    }

    /// Rows left once the shape's deletes apply.
    fn live_rows(&self) -> u64 {
        if !self.deletes {
            return self.files * self.rows;
        }
        (0..self.files * self.rows).filter(|&id| !deleted(id, self.rows)).count() as u64
    }
}

/// Equality deletes remove every id divisible by this.
const EQ_DELETE_EVERY: u64 = 97;
/// Equality delete files (as a streaming writer leaves several).
const EQ_DELETE_FILES: u64 = 20;
/// Every this-many-th data file gets a position delete file ...
const POS_DELETE_FILE_EVERY: u64 = 10;
/// ... removing the positions p with p % this == 1.
const POS_DELETE_EVERY: u64 = 50;

/// Whether the `+deletes` shape deletes row `id` (ids are numbered in append order, so append
/// `id / rows` holds it at position `id % rows`).
fn deleted(id: u64, rows: u64) -> bool {
    id.is_multiple_of(EQ_DELETE_EVERY)
        || ((id / rows).is_multiple_of(POS_DELETE_FILE_EVERY) && (id % rows) % POS_DELETE_EVERY == 1)
}

/// The same deletes for `e2e_compaction.py delta --deletes`, which leaves those rows out.
fn deletes_json() -> String {
    json!({"eq_every": EQ_DELETE_EVERY, "file_every": POS_DELETE_FILE_EVERY, "pos_every": POS_DELETE_EVERY}).to_string()
}

/// One compactor's run on one shape.
struct Measure {
    shape: String,
    compactor: &'static str,
    rows: u64,
    wall: Duration,
    cpu: Duration,
    files_out: u64,
    peak_growth: u64,
}

/// Runs `script` with `args` and parses the last line of its output as JSON.
fn python_json(python: &Path, script: &Path, args: &[&str]) -> Result<Value> {
    let output = tokio::task::block_in_place(|| {
        Command::new(python).arg(script).args(args).stderr(std::process::Stdio::inherit()).output()
    })
    .with_context(|| format!("cannot run {}", python.display()))?;
    ensure!(output.status.success(), "e2e_compaction.py {} failed ({})", args.join(" "), output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("e2e_compaction.py {}: not JSON: {last}", args[0]))
}

/// Loch: PyIceberg (or Loch's writer) appends, the shape's deletes, then self-optimizing on;
/// timed until the optimizing commit.
async fn loch(args: &Args, python: &Path, script: &Path, shape: Shape) -> Result<Measure> {
    let (files, rows) = (shape.files, shape.rows);
    let tmp = tempfile::tempdir()?;
    let mut config =
        loch_server::Config { data_dir: tmp.path().to_path_buf(), bind: "127.0.0.1:0".parse()?, ..Default::default() };
    config.optimizer.local_threads = args.threads;
    let server = loch_server::start(config).await?;
    let url = server.url();
    // PyIceberg creates the table (and appends, unless Loch's writer does).
    let python_files = if shape.loch_writer { 0 } else { files };
    let (files_arg, rows_arg) = (python_files.to_string(), rows.to_string());
    let uri = format!("{url}/api/iceberg/rest");
    let mut command = vec!["iceberg", "--uri", &uri, "--table", "bench.t", "--files", &files_arg, "--rows", &rows_arg];
    if files > args.append_up_to {
        command.push("--add-files");
    }
    let written = python_json(python, script, &command)?;
    let client = reqwest::Client::new();
    let table = format!("{url}/api/iceberg/rest/v1/catalogs/local/namespaces/bench/tables/t");
    if shape.loch_writer {
        let started = Instant::now();
        loch_writes::append(&client, &table, files, rows).await?;
        eprintln!("loch: {files} files written by Loch's writer in {:.1} s", started.elapsed().as_secs_f64());
    } else {
        let seconds = written["seconds"].as_f64().unwrap_or(0.0);
        eprintln!("loch: {files} files written through PyIceberg in {seconds:.1} s");
    }
    if shape.deletes {
        let shape = [EQ_DELETE_EVERY, EQ_DELETE_FILES, POS_DELETE_FILE_EVERY, POS_DELETE_EVERY];
        let deletes = loch_writes::add_deletes(&client, &table, files, rows, shape).await?;
        eprintln!("loch: {deletes} delete files committed");
    }
    // Let the server settle after the appends (evaluations of the last commits).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (peak, cpu, start) = (PeakRss::start(), cpu_time(), Instant::now());
    // The server's clock (same machine) stamps the commit; the window starts here.
    let epoch_start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let update = json!({"requirements": [], "updates": [
        {"action": "set-properties", "updates": {"self-optimizing.enabled": "true"}}
    ]});
    let answer = client.post(&table).json(&update).send().await?;
    ensure!(answer.status().is_success(), "switching self-optimizing on: {}", answer.text().await?);
    let processes = format!("{url}/api/v1/tables/local/bench/t/optimizing/processes?limit=5");
    // Polls cost the server CPU too, so they are sparse; the wall time is the server's own record
    // of the commit, not when a poll saw it.
    let done = loop {
        let list: Value = client.get(&processes).send().await?.json().await?;
        if let Some(done) = list.as_array().into_iter().flatten().find(|p| p["status"] == "success") {
            break done.clone();
        }
        if let Some(failed) = list.as_array().into_iter().flatten().find(|p| p["status"] == "failed") {
            bail!("the optimizing process failed: {failed}");
        }
        ensure!(start.elapsed() < Duration::from_secs(600), "no optimizing commit after 10 minutes: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cpu = cpu_time().saturating_sub(cpu);
    let wall = match done["finishedAt"].as_i64() {
        Some(ms) if ms >= epoch_start => Duration::from_millis((ms - epoch_start) as u64),
        _ => start.elapsed(),
    };
    timeline(&client, &processes, &done, epoch_start).await?;
    let peak_growth = peak.growth();
    let loaded: Value = client.get(&table).send().await?.json().await?;
    let metadata = &loaded["metadata"];
    let current = metadata["current-snapshot-id"].clone();
    let snapshot = metadata["snapshots"].as_array().into_iter().flatten().find(|s| s["snapshot-id"] == current);
    let summary = snapshot.map(|s| s["summary"].clone()).unwrap_or_default();
    let number = |key: &str| summary[key].as_str().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let live = shape.live_rows();
    ensure!(number("total-records") == live, "the table holds {} rows, not {live}: {summary}", number("total-records"));
    server.shutdown().await?;
    Ok(Measure {
        shape: shape.label(),
        compactor: "loch serve",
        rows: live,
        wall,
        cpu,
        files_out: number("total-data-files"),
        peak_growth,
    })
}

/// Prints where the window went: plan (process created), each task's start and end, commit.
async fn timeline(client: &reqwest::Client, processes: &str, process: &Value, start: i64) -> Result<()> {
    let at = |v: &Value| v.as_i64().map_or("-".to_string(), |ms| format!("{:.2}", (ms - start) as f64 / 1000.0));
    let id = process["id"].as_i64().unwrap_or(0);
    let (base, _) = processes.split_once('?').unwrap_or((processes, ""));
    let tasks: Value = client.get(format!("{base}/{id}/tasks")).send().await?.json().await?;
    let mut line = format!("loch: timeline (s): planned {}", at(&process["createdAt"]));
    for task in tasks.as_array().into_iter().flatten() {
        line += &format!(
            ", task {} {}–{} ({} files)",
            task["taskId"],
            at(&task["startedAt"]),
            at(&task["finishedAt"]),
            task["inputFiles"]
        );
    }
    eprintln!("{line}, committed {}", at(&process["finishedAt"]));
    Ok(())
}

/// delta-rs: the same live rows as pyarrow files of a Delta table, then `compact()`.
fn delta(args: &Args, python: &Path, script: &Path, shape: Shape) -> Result<Measure> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("delta");
    let (files_arg, rows_arg, threads) = (shape.files.to_string(), shape.rows.to_string(), args.threads.to_string());
    let path_arg = path.to_string_lossy();
    let deletes = deletes_json();
    let mut command =
        vec!["delta", "--path", &path_arg, "--files", &files_arg, "--rows", &rows_arg, "--threads", &threads];
    if shape.deletes {
        command.extend(["--deletes", &deletes]);
    }
    let out = python_json(python, script, &command)?;
    let seconds = |key: &str| Duration::from_secs_f64(out[key].as_f64().unwrap_or(0.0));
    let live = shape.live_rows();
    ensure!(out["rows"].as_u64() == Some(live), "delta-rs holds {} rows, not {live}", out["rows"]);
    Ok(Measure {
        shape: shape.label(),
        compactor: "delta-rs compact",
        rows: live,
        wall: seconds("wall"),
        cpu: seconds("cpu"),
        files_out: out["files_out"].as_u64().unwrap_or(0),
        peak_growth: 0,
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    // The server's log, when asked for (e.g. RUST_LOG=loch_optimizing=debug to see its steps).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = args.python.clone().unwrap_or_else(|| root.join("../.venv-bench/bin/python"));
    let script = root.join("e2e_compaction.py");
    let mut measures = Vec::new();
    for text in args.shapes.split(',') {
        let shape = Shape::parse(text)?;
        measures.push(loch(&args, &python, &script, shape).await.with_context(|| format!("loch {text}"))?);
        if !args.no_delta {
            measures.push(delta(&args, &python, &script, shape).with_context(|| format!("delta-rs {text}"))?);
        }
    }
    println!(
        "| shape | compactor | rows | wall s | cpu s | cores | rows/s | rows per CPU-s | files out | peak RSS growth MB | wall vs delta-rs | per CPU-s vs delta-rs |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for m in &measures {
        let (wall, cpu) = (m.wall.as_secs_f64(), m.cpu.as_secs_f64().max(1e-9));
        let peer = measures.iter().find(|p| p.shape == m.shape && p.compactor == "delta-rs compact");
        let ratio = |f: fn(&Measure) -> f64| peer.map_or("-".into(), |p| format!("{:.2}", f(m) / f(p)));
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {} | {} | {} | {} |",
            m.shape,
            m.compactor,
            m.rows,
            wall,
            cpu,
            cpu / wall,
            m.rows as f64 / wall,
            m.rows as f64 / cpu,
            m.files_out,
            if m.compactor == "loch serve" { format!("{:.0}", m.peak_growth as f64 / 1e6) } else { "-".into() },
            ratio(|x| x.rows as f64 / x.wall.as_secs_f64()),
            ratio(|x| x.rows as f64 / x.cpu.as_secs_f64().max(1e-9)),
        );
    }
    Ok(())
}
