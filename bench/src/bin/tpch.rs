//! TPC-H through `loch serve`, Loch's SQL engine against DuckDB on the same Iceberg tables.
//!
//! `loch serve` runs in the benchmark's process (SQLite store, local disk, no optimizer threads,
//! so nothing rewrites the tables between the engines' runs). The tables are generated at scale
//! factor `--sf` by DuckDB's tpch extension and written by PyIceberg through Loch's REST
//! catalog, as an engine other than Loch would write them. Each
//! query (DuckDB's own text of TPC-H queries 1, 3, 5, 6, 10 and 12) then runs `--runs` times
//! through Loch's SQL engine — what `loch sql` runs: DataFusion over the REST catalog, tables
//! loaded per statement — and through DuckDB's iceberg extension attached to the same
//! catalog, each in one warm client process. The table shows each engine's median time, the
//! ratio, and whether the answers agree (numbers to a relative 1e-6, since DuckDB averages
//! decimals as doubles and DataFusion as decimals).
//!
//! ```sh
//! cargo build --release -p loch-bench --bin tpch-bench
//! "${CARGO_TARGET_DIR:-target}"/release/tpch-bench          # --sf 1 --runs 3
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use loch_sql::{HttpBackend, SqlEngine, parse_script};
use serde::Deserialize;

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "TPC-H queries through loch serve: Loch's SQL engine against DuckDB on the same Iceberg tables")]
struct Args {
    /// Python with PyIceberg, DuckDB and its extensions (default: .venv-bench/bin/python of the
    /// workspace; see bench/README.md).
    #[arg(long)]
    python: Option<PathBuf>,
    /// TPC-H scale factor.
    #[arg(long, default_value = "1")]
    sf: String,
    /// Queries to run.
    #[arg(long, default_value = "1,3,5,6,10,12")]
    queries: String,
    /// Runs of each query per engine (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Keep the server's data directory instead of deleting it at the end.
    #[arg(long)]
    keep: bool,
}

/// DuckDB's side of one query.
#[derive(Debug, Deserialize)]
struct DuckRun {
    seconds: Vec<f64>,
    rows: Vec<Vec<Option<String>>>,
}

/// One query's outcome.
struct Outcome {
    query: String,
    loch: Duration,
    duckdb: Duration,
    rows: usize,
    agree: Result<(), String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.runs > 0, "--runs must be positive");
    let python = args.python.clone().unwrap_or_else(|| loch_testkit::workspace_root().join(".venv-bench/bin/python"));
    let check = Command::new(&python).args(["-c", "import duckdb, duckdb_ext, pyiceberg"]).output();
    if !check.is_ok_and(|o| o.status.success()) {
        bail!(
            "{} cannot import duckdb and pyiceberg: python3 -m venv .venv-bench && .venv-bench/bin/pip install -r bench/requirements.txt",
            python.display()
        );
    }
    let script = loch_testkit::workspace_root().join("bench/tpch.py");
    let tmp = tempfile::Builder::new().prefix("tpch-bench").tempdir().context("cannot create a temporary directory")?;
    let dir = if args.keep { tmp.keep() } else { tmp.path().to_path_buf() };
    let mut config = loch_server::Config { data_dir: dir.clone(), bind: "127.0.0.1:0".parse()?, ..Default::default() };
    config.optimizer.local_threads = 0;
    let server = loch_server::start(config).await?;
    let result = run(&args, &python, &script, &server.url()).await;
    server.shutdown().await?;
    if args.keep {
        eprintln!("kept {}", dir.display());
    }
    let outcomes = result?;
    print_table(&args, &outcomes);
    let wrong: Vec<&str> = outcomes.iter().filter(|o| o.agree.is_err()).map(|o| o.query.as_str()).collect();
    ensure!(wrong.is_empty(), "Loch's answer differs from DuckDB's for query {}", wrong.join(", "));
    Ok(())
}

async fn run(args: &Args, python: &Path, script: &Path, url: &str) -> Result<Vec<Outcome>> {
    let uri = format!("{url}/api/iceberg/rest");
    let loaded: serde_json::Value = python_json(python, script, &["load", "--uri", &uri, "--sf", &args.sf])?;
    eprintln!("loaded TPC-H sf {} in {:.1} s: {}", args.sf, loaded["seconds"].as_f64().unwrap_or(0.0), loaded["rows"]);
    let texts: BTreeMap<String, String> = python_json(python, script, &["queries", "--queries", &args.queries])?;
    let runs = args.runs.to_string();
    let duck: BTreeMap<String, DuckRun> =
        python_json(python, script, &["duckdb", "--uri", &uri, "--queries", &args.queries, "--runs", &runs])?;

    let backend = Arc::new(HttpBackend::new(url, None)?);
    let mut engine = SqlEngine::new(backend, "local");
    engine.run("USE tpch").await?;
    let mut outcomes = Vec::new();
    for number in args.queries.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let sql = texts.get(number).with_context(|| format!("DuckDB has no TPC-H query {number}"))?;
        let statements = parse_script(sql).with_context(|| format!("query {number}"))?;
        let [statement] = statements.as_slice() else { bail!("query {number} is not one statement") };
        let mut times = Vec::with_capacity(args.runs);
        let mut rows = Vec::new();
        for _ in 0..args.runs {
            let started = Instant::now();
            let output = engine.execute(statement, None).await.with_context(|| format!("query {number}"))?;
            times.push(started.elapsed());
            rows = strings(&output.batches)?;
        }
        let duck = duck.get(number).with_context(|| format!("DuckDB did not answer query {number}"))?;
        eprintln!("query {number}: Loch {:?}, DuckDB {:?} s", times, duck.seconds);
        outcomes.push(Outcome {
            query: number.to_string(),
            loch: median(times),
            duckdb: median(duck.seconds.iter().map(|s| Duration::from_secs_f64(*s)).collect()),
            rows: rows.len(),
            agree: same_answer(&rows, &duck.rows),
        });
    }
    Ok(outcomes)
}

/// Runs `tpch.py ARGS` and parses the JSON it prints last (the in-process server serves it
/// meanwhile on the runtime's other threads).
fn python_json<T: serde::de::DeserializeOwned>(python: &Path, script: &Path, args: &[&str]) -> Result<T> {
    let output = tokio::task::block_in_place(|| {
        Command::new(python).arg(script).args(args).stderr(std::process::Stdio::inherit()).output()
    })
    .with_context(|| format!("cannot run {}", python.display()))?;
    ensure!(output.status.success(), "tpch.py {} failed ({})", args.join(" "), output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("tpch.py {}: not JSON: {last}", args[0]))
}

/// Every cell as display text (NULL as `None`).
fn strings(batches: &[datafusion::arrow::array::RecordBatch]) -> Result<Vec<Vec<Option<String>>>> {
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let cells = batch.columns().iter().zip(&formatters);
            rows.push(cells.map(|(c, f)| (!c.is_null(row)).then(|| f.value(row).to_string())).collect());
        }
    }
    Ok(rows)
}

/// Same rows in the same order; numbers equal to a relative 1e-6, other values exactly.
fn same_answer(loch: &[Vec<Option<String>>], duck: &[Vec<Option<String>>]) -> Result<(), String> {
    if loch.len() != duck.len() {
        return Err(format!("{} rows, DuckDB {}", loch.len(), duck.len()));
    }
    for (i, (a, b)) in loch.iter().zip(duck).enumerate() {
        if a.len() != b.len() {
            return Err(format!("row {i}: {} columns, DuckDB {}", a.len(), b.len()));
        }
        for (x, y) in a.iter().zip(b) {
            let same = match (x, y) {
                (Some(x), Some(y)) => match (x.parse::<f64>(), y.parse::<f64>()) {
                    (Ok(p), Ok(q)) => (p - q).abs() <= 1e-6 * p.abs().max(q.abs()).max(1.0),
                    _ => x == y,
                },
                (None, None) => true,
                _ => false,
            };
            if !same {
                return Err(format!("row {i}: {a:?}, DuckDB {b:?}"));
            }
        }
    }
    Ok(())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn print_table(args: &Args, outcomes: &[Outcome]) {
    println!("TPC-H sf {}, median of {} runs per engine, same tables, same run", args.sf, args.runs);
    println!("| query | Loch (s) | DuckDB (s) | Loch / DuckDB | rows | answers |");
    println!("|---|---:|---:|---:|---:|---|");
    for o in outcomes {
        let agree = match &o.agree {
            Ok(()) => "same".to_string(),
            Err(e) => format!("DIFFER: {e}"),
        };
        println!(
            "| Q{} | {:.3} | {:.3} | {:.2}x | {} | {} |",
            o.query,
            o.loch.as_secs_f64(),
            o.duckdb.as_secs_f64(),
            o.loch.as_secs_f64() / o.duckdb.as_secs_f64().max(1e-9),
            o.rows,
            agree
        );
    }
}
