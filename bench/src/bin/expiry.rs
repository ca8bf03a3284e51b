//! Snapshot expiry benchmark: a table of N data files written by 1,000 appends and then
//! compacted into one file, whose 1,000 old snapshots are expired — the shape streaming ingest
//! plus self-optimizing leaves. Each size is measured in a child process of its own, so its peak
//! RSS (`VmHWM`) is the expiry's alone: selecting the snapshots and walking the files only they
//! reached, as `loch serve` does before deleting them. The data files are manifest entries only
//! (never written): expiry reads manifests, not data.
//!
//! Build with `--release`; see `bench/README.md`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use futures::TryStreamExt;
use iceberg::io::FileIO;
use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, NestedField, PrimitiveType, Schema, Struct, TableMetadata, Type,
    UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::{Runtime, TableIdent};
use loch_table::expire::{CANDIDATE_BATCH, FileKind, UnreachableSink, plan_expiry, walk_unreachable};
use loch_table::scan::live_files;
use loch_table::snapshot::{RewriteFiles, RowDelta, SnapshotAction};
use loch_testkit::local::LocalTable;

#[derive(Debug, Parser)]
#[command(about = "Snapshot expiry: time and peak memory at 10,000 and 100,000 files")]
struct Args {
    /// Table sizes in data files.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    files: Vec<usize>,
    /// Appends (snapshots expired).
    #[arg(long, default_value_t = 1_000)]
    snapshots: usize,
    /// Internal: measure the expiry of the table whose metadata file this is.
    #[arg(long, hide = true)]
    measure: Option<String>,
}

fn schema() -> Result<Schema> {
    Ok(Schema::builder()
        .with_fields(vec![NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into()])
        .build()?)
}

/// Builds the table under `dir`: `snapshots` appends of `files / snapshots` entries each, then
/// one rewrite of all of them into one file. Returns its metadata file.
async fn build(dir: &Path, files: usize, snapshots: usize) -> Result<String> {
    let mut t = LocalTable::create(dir, schema()?, UnboundPartitionSpec::builder().build()).await?;
    let location = t.table.metadata().location().to_string();
    let per = files.div_ceil(snapshots);
    let entry = |i: usize| {
        DataFileBuilder::default()
            .content(DataContentType::Data)
            .file_path(format!("{location}/data/{i:08}-0-bench.parquet"))
            .file_format(DataFileFormat::Parquet)
            .partition(Struct::empty())
            .record_count(100)
            .file_size_in_bytes(4096)
            .build()
    };
    let mut written = 0;
    for _ in 0..snapshots {
        let mut delta = RowDelta::new();
        for _ in 0..per.min(files - written) {
            delta = delta.add_rows(entry(written)?);
            written += 1;
        }
        t.commit(delta.prepare(&t.table).await?).await?;
    }
    let head = t.table.metadata().current_snapshot().context("no snapshot")?.clone();
    let live: Vec<_> =
        live_files(t.table.file_io().clone(), t.table.metadata_ref(), head.clone()).try_collect().await?;
    let mut rewrite = RewriteFiles::new(head.snapshot_id()).set_property("snapshot.producer", "OPTIMIZE");
    for file in live {
        rewrite = rewrite.rewrite_data_file(file);
    }
    rewrite = rewrite.add_data_file(entry(files)?);
    t.commit(rewrite.prepare(&t.table).await?).await?;
    t.table.metadata_location().map(str::to_string).context("no metadata location")
}

/// Counts what the walk hands out.
#[derive(Default)]
struct Count {
    content: usize,
    metadata: usize,
}

impl UnreachableSink for Count {
    async fn take(&mut self, kind: FileKind, files: Vec<(String, u64)>) -> loch_table::Result<()> {
        match kind {
            FileKind::Content => self.content += files.len(),
            _ => self.metadata += files.len(),
        }
        Ok(())
    }
}

/// The child: plans the expiry of every snapshot but the head and walks the files only they
/// reached; prints one JSON line.
async fn measure(metadata_location: &str) -> Result<()> {
    let io = FileIO::new_with_fs();
    let bytes = io.new_input(metadata_location)?.read().await?;
    let metadata: TableMetadata = serde_json::from_slice(&bytes)?;
    let table = Table::builder()
        .identifier(TableIdent::from_strs(["bench", "t"])?)
        .file_io(io.clone())
        .metadata(metadata)
        .metadata_location(metadata_location)
        .runtime(Runtime::current())
        .build()?;
    let started = Instant::now();
    let now = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis())?;
    let change = plan_expiry(&table, now + 1, 1).await?.context("nothing to expire")?;
    let planned = started.elapsed();
    let mut count = Count::default();
    walk_unreachable(&io, &table.metadata_ref(), &change.after, CANDIDATE_BATCH, &mut count).await?;
    let total = started.elapsed();
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({
            "expired": change.expired_snapshots.len(),
            "content": count.content,
            "metadata": count.metadata,
            "plan_secs": planned.as_secs_f64(),
            "secs": total.as_secs_f64(),
            "peak_mb": peak_kb as f64 / 1024.0,
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(location) = &args.measure {
        return measure(location).await;
    }
    let exe = std::env::current_exe()?;
    println!(
        "| data files | snapshots expired | files found unreachable | time (s) | of which planning (s) | peak RSS (MB) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for &files in &args.files {
        let dir = tempfile::tempdir()?;
        let built = Instant::now();
        let location = build(dir.path(), files, args.snapshots).await?;
        eprintln!("built {files} files in {:.0?}", built.elapsed());
        let output = Command::new(&exe).args(["--measure", &location]).output()?;
        ensure!(output.status.success(), "measuring failed: {}", String::from_utf8_lossy(&output.stderr));
        let line = String::from_utf8_lossy(&output.stdout);
        let m: serde_json::Value = serde_json::from_str(line.trim())?;
        let found = m["content"].as_u64().unwrap_or(0) + m["metadata"].as_u64().unwrap_or(0);
        ensure!(m["content"].as_u64() == Some(files as u64), "expected every appended file unreachable: {m}");
        println!(
            "| {files} | {} | {found} | {:.2} | {:.2} | {:.0} |",
            m["expired"],
            m["secs"].as_f64().unwrap_or(0.0),
            m["plan_secs"].as_f64().unwrap_or(0.0),
            m["peak_mb"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}
