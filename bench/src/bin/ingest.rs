//! Keyed-table ingest benchmark, end to end through `loch serve`'s HTTP routes: upserts of
//! ~100-byte rows posted as Arrow IPC streams (`POST .../changes`, one transaction per request),
//! with random keys (every row a new key) and with recent keys (a small hot set updated over and
//! over, upsert on). It reports rows per second of wall time and per second of the server's CPU,
//! the time of a merge-on-read of the whole table right after the last commit (commit to
//! visible: a committed row is in the next read), and that read's rows per second.
//!
//! The request bodies are built before the clock starts; the server runs in this process, so the
//! CPU time measured is the server's (the client only sends bytes). Build with `--release`; see
//! `bench/README.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use clap::Parser;
use futures::StreamExt;
use loch_bench::process::{cpu_time, status_bytes};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Keyed-table ingest through loch serve: rows/s, rows/s per server core, commit to visible")]
struct Args {
    /// Rows per commit (one HTTP request each).
    #[arg(long, default_value_t = 50_000)]
    rows_per_commit: usize,
    /// Commits per workload.
    #[arg(long, default_value_t = 20)]
    commits: usize,
    /// Distinct keys of the recent-keys workload.
    #[arg(long, default_value_t = 10_000)]
    hot_keys: i64,
    /// Rows of the bulk workload: one transaction streamed by the client as it is generated.
    #[arg(long, default_value_t = 5_000_000)]
    bulk_rows: usize,
}

/// One transaction of `rows` upserts sent as a streamed body generated on the fly (the client
/// holds one message at a time): the time, the body's size and how far this process's peak
/// RSS rose above where it started, which bounds the server's memory for the transaction.
async fn bulk(client: &reqwest::Client, url: &str, rows: usize) -> Result<(Duration, u64, u64)> {
    create(client, url, "bulk", false).await?;
    // Reset the peak RSS (Linux: writing 5 to clear_refs), then measure from here.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = status_bytes("VmRSS");
    let per_message = 10_000usize;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    let chunks = futures::stream::iter((0..rows).step_by(per_message)).map(move |start| {
        let keys = (start as i64..(start + per_message).min(rows) as i64)
            .map(|i| i.wrapping_mul(2_654_435_761) & 0x7fff_ffff_ffff);
        // Each message a whole stream minus its end marker; the first keeps the schema.
        let mut bytes = body(keys)?;
        bytes.truncate(bytes.len() - 8);
        if start > 0 {
            bytes.drain(..schema_message_len(&bytes)?);
        }
        if start + per_message >= rows {
            bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        }
        counter.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok::<_, anyhow::Error>(bytes)
    });
    let start = Instant::now();
    let answer = client
        .post(format!("{url}/api/v1/tables/local/bench/bulk/changes"))
        .header("content-type", "application/vnd.apache.arrow.stream")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await?;
    ensure!(answer.status().is_success(), "bulk ingest: {}", answer.text().await?);
    let wall = start.elapsed();
    let peak = status_bytes("VmHWM").saturating_sub(rss_before);
    Ok((wall, sent.load(std::sync::atomic::Ordering::Relaxed), peak))
}

/// Length of the schema message at the head of an Arrow IPC stream (continuation marker, length,
/// padded flatbuffer).
fn schema_message_len(stream: &[u8]) -> Result<usize> {
    ensure!(stream.len() >= 8 && stream[..4] == [0xff; 4], "not an IPC stream");
    let len = u32::from_le_bytes(stream[4..8].try_into()?) as usize;
    Ok(8 + len)
}

/// An Arrow IPC body of `keys` upserts with ~100-byte rows.
fn body(keys: impl Iterator<Item = i64>) -> Result<Vec<u8>> {
    let keys: Vec<i64> = keys.collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("payload", DataType::Utf8, true),
        Field::new("_op", DataType::Utf8, false),
    ]));
    let payloads: Vec<String> = keys.iter().map(|k| format!("{k:020}-{}", "p".repeat(70))).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(keys.clone())),
            Arc::new(StringArray::from(payloads)),
            Arc::new(StringArray::from(vec!["+I"; keys.len()])),
        ],
    )?;
    let mut out = Vec::new();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, &schema)?;
    writer.write(&batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

struct Measured {
    workload: &'static str,
    rows: usize,
    wall: Duration,
    cpu: Duration,
    read: Duration,
    read_rows: usize,
}

async fn workload(
    client: &reqwest::Client,
    url: &str,
    name: &'static str,
    upsert: bool,
    bodies: Vec<Vec<u8>>,
    rows: usize,
) -> Result<Measured> {
    create(client, url, name, upsert).await?;
    let changes = format!("{url}/api/v1/tables/local/bench/{name}/changes");
    let (cpu0, start) = (cpu_time(), Instant::now());
    for body in bodies {
        let answer = client
            .post(&changes)
            .header("content-type", "application/vnd.apache.arrow.stream")
            .body(body)
            .send()
            .await?;
        ensure!(answer.status().is_success(), "ingest: {}", answer.text().await?);
    }
    let (wall, cpu) = (start.elapsed(), cpu_time() - cpu0);
    let read_start = Instant::now();
    let bytes = client.get(format!("{url}/api/v1/tables/local/bench/{name}/rows")).send().await?.bytes().await?;
    let read = read_start.elapsed();
    let read_rows = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?
        .map(|b| b.map(|b| b.num_rows()))
        .sum::<Result<usize, _>>()?;
    Ok(Measured { workload: name, rows, wall, cpu, read, read_rows })
}

/// Creates the keyed table `bench.{name}`.
async fn create(client: &reqwest::Client, url: &str, name: &str, upsert: bool) -> Result<()> {
    let create = json!({
        "name": name,
        "format": "mixed-iceberg",
        "primary_key": ["id"],
        "schema": {"type": "struct", "schema-id": 0, "fields": [
            {"id": 1, "name": "id", "required": true, "type": "long"},
            {"id": 2, "name": "payload", "required": false, "type": "string"},
        ]},
        "properties": {"write.upsert.enabled": upsert.to_string(), "self-optimizing.enabled": "false"},
    });
    let created =
        client.post(format!("{url}/api/v1/catalogs/local/namespaces/bench/tables")).json(&create).send().await?;
    ensure!(created.status().is_success(), "create {name}: {}", created.text().await?);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let mut config =
        loch_server::Config { data_dir: tmp.path().to_path_buf(), bind: "127.0.0.1:0".parse()?, ..Default::default() };
    config.optimizer.local_threads = 0;
    config.http.max_body_size = 1 << 30;
    config.http.max_in_flight_body_bytes = 1 << 31;
    let server = loch_server::start(config).await?;
    let url = server.url();
    let client = reqwest::Client::new();
    let ns = client
        .post(format!("{url}/api/iceberg/rest/v1/catalogs/local/namespaces"))
        .json(&json!({"namespace": ["bench"]}))
        .send()
        .await?;
    ensure!(ns.status().is_success(), "namespace: {}", ns.text().await?);

    let (bulk_wall, bulk_bytes, bulk_peak) = bulk(&client, &url, args.bulk_rows).await.context("bulk")?;
    let n = args.rows_per_commit as i64;
    let total = args.rows_per_commit * args.commits;
    let random: Vec<Vec<u8>> = (0..args.commits as i64)
        .map(|c| body((0..n).map(move |i| (c * n + i).wrapping_mul(2_654_435_761) & 0x7fff_ffff_ffff)))
        .collect::<Result<_>>()?;
    let recent: Vec<Vec<u8>> = (0..args.commits as i64)
        .map(|c| body((0..n).map(move |i| (c * 7_919 + i) % args.hot_keys)))
        .collect::<Result<_>>()?;
    let results = vec![
        workload(&client, &url, "random_keys", false, random, total).await.context("random keys")?,
        workload(&client, &url, "recent_keys", true, recent, total).await.context("recent keys")?,
    ];
    server.shutdown().await?;

    println!(
        "| workload | rows | commits | rows/s | server CPU s | rows/s per server core | MOR read after last commit (s) | rows read | MOR rows/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for m in results {
        let secs = m.wall.as_secs_f64();
        let cpu = m.cpu.as_secs_f64().max(1e-9);
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.0} | {:.2} | {} | {:.0} |",
            m.workload,
            m.rows,
            args.commits,
            m.rows as f64 / secs,
            cpu,
            m.rows as f64 / cpu,
            m.read.as_secs_f64(),
            m.read_rows,
            m.read_rows as f64 / m.read.as_secs_f64(),
        );
    }
    println!();
    println!("| bulk transaction | rows | body MB | rows/s | peak RSS growth MB |");
    println!("|---|---|---|---|---|");
    println!(
        "| one streamed ingest | {} | {:.0} | {:.0} | {:.0} |",
        args.bulk_rows,
        bulk_bytes as f64 / 1e6,
        args.bulk_rows as f64 / bulk_wall.as_secs_f64(),
        bulk_peak as f64 / 1e6
    );
    Ok(())
}
