//! End-to-end compaction benchmark, the way users meet it: a table written by PyIceberg in many
//! small appends (self-optimizing off) into `loch serve`, then self-optimizing switched on; the
//! clock runs from the property change to the optimizing commit being visible, and the CPU is
//! the server's (it runs in this process; the writer ran before, in Python). Beside it, delta-rs
//! `optimize.compact()` on the same rows, zstd level 3 on both sides, in the same run.
//!
//! Build with `--release`; see `bench/README.md`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use loch_bench::process::{PeakRss, cpu_time};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "Compaction end to end through loch serve (PyIceberg-written files) vs delta-rs compact()")]
struct Args {
    /// Shapes as FILESxROWS (appends × rows per append), comma-separated.
    #[arg(long, default_value = "200x25000,2000x2500")]
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

/// Loch: PyIceberg appends, then self-optimizing on; timed until the optimizing commit.
async fn loch(args: &Args, python: &Path, script: &Path, files: u64, rows: u64) -> Result<Measure> {
    let tmp = tempfile::tempdir()?;
    let mut config =
        loch_server::Config { data_dir: tmp.path().to_path_buf(), bind: "127.0.0.1:0".parse()?, ..Default::default() };
    config.optimizer.local_threads = args.threads;
    let server = loch_server::start(config).await?;
    let url = server.url();
    let (files_arg, rows_arg) = (files.to_string(), rows.to_string());
    let uri = format!("{url}/api/iceberg/rest");
    let mut command = vec!["iceberg", "--uri", &uri, "--table", "bench.t", "--files", &files_arg, "--rows", &rows_arg];
    if files > args.append_up_to {
        command.push("--add-files");
    }
    let written = python_json(python, script, &command)?;
    eprintln!("loch: {files} files written through PyIceberg in {:.1} s", written["seconds"].as_f64().unwrap_or(0.0));
    let client = reqwest::Client::new();
    let table = format!("{url}/api/iceberg/rest/v1/catalogs/local/namespaces/bench/tables/t");
    // Let the server settle after the appends (evaluations of the last commits).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (peak, cpu, start) = (PeakRss::start(), cpu_time(), Instant::now());
    let epoch_start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let update = json!({"requirements": [], "updates": [
        {"action": "set-properties", "updates": {"self-optimizing.enabled": "true"}}
    ]});
    let answer = client.post(&table).json(&update).send().await?;
    ensure!(answer.status().is_success(), "switching self-optimizing on: {}", answer.text().await?);
    let processes = format!("{url}/api/v1/tables/local/bench/t/optimizing/processes?limit=5");
    loop {
        let list: Value = client.get(&processes).send().await?.json().await?;
        if let Some(done) = list.as_array().into_iter().flatten().find(|p| p["status"] == "success") {
            timeline(&client, &processes, done, epoch_start).await?;
            break;
        }
        if let Some(failed) = list.as_array().into_iter().flatten().find(|p| p["status"] == "failed") {
            bail!("the optimizing process failed: {failed}");
        }
        ensure!(start.elapsed() < Duration::from_secs(600), "no optimizing commit after 10 minutes: {list}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (wall, cpu) = (start.elapsed(), cpu_time().saturating_sub(cpu));
    let peak_growth = peak.growth();
    let loaded: Value = client.get(&table).send().await?.json().await?;
    let metadata = &loaded["metadata"];
    let current = metadata["current-snapshot-id"].clone();
    let snapshot = metadata["snapshots"].as_array().into_iter().flatten().find(|s| s["snapshot-id"] == current);
    let summary = snapshot.map(|s| s["summary"].clone()).unwrap_or_default();
    let number = |key: &str| summary[key].as_str().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    ensure!(number("total-records") == files * rows, "the table holds {} rows: {summary}", number("total-records"));
    server.shutdown().await?;
    Ok(Measure {
        shape: format!("{files} × {rows}"),
        compactor: "loch serve",
        rows: files * rows,
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

/// delta-rs: the same appends into a Delta table, then `compact()`.
fn delta(args: &Args, python: &Path, script: &Path, files: u64, rows: u64) -> Result<Measure> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("delta");
    let (files_arg, rows_arg, threads) = (files.to_string(), rows.to_string(), args.threads.to_string());
    let path_arg = path.to_string_lossy();
    let out = python_json(
        python,
        script,
        &["delta", "--path", &path_arg, "--files", &files_arg, "--rows", &rows_arg, "--threads", &threads],
    )?;
    let seconds = |key: &str| Duration::from_secs_f64(out[key].as_f64().unwrap_or(0.0));
    ensure!(out["rows"].as_u64() == Some(files * rows), "delta-rs holds {} rows", out["rows"]);
    Ok(Measure {
        shape: format!("{files} × {rows}"),
        compactor: "delta-rs compact",
        rows: files * rows,
        wall: seconds("wall"),
        cpu: seconds("cpu"),
        files_out: out["files_out"].as_u64().unwrap_or(0),
        peak_growth: 0,
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = args.python.clone().unwrap_or_else(|| root.join("../.venv-bench/bin/python"));
    let script = root.join("e2e_compaction.py");
    let mut measures = Vec::new();
    for shape in args.shapes.split(',') {
        let (files, rows) = shape.split_once('x').context("a shape is FILESxROWS")?;
        let (files, rows): (u64, u64) = (files.trim().parse()?, rows.trim().parse()?);
        measures.push(loch(&args, &python, &script, files, rows).await.with_context(|| format!("loch {shape}"))?);
        if !args.no_delta {
            measures.push(delta(&args, &python, &script, files, rows).with_context(|| format!("delta-rs {shape}"))?);
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
