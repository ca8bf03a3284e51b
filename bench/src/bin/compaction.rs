//! Compaction benchmark: the same small Parquet files compacted by Loch's optimizer executor, by
//! delta-rs `optimize.compact()` (Python `deltalake`), and by a plain arrow-rs read→write loop
//! with Loch's Parquet settings (the practical limit), in one run so the ratios are comparable.
//!
//! Throughput is reported per wall second and per CPU second ("per core"), since the contenders
//! use different numbers of threads. Every run checks that its output holds every input row.
//! Build with `--release`; see `bench/README.md`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use clap::Parser;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, FormatVersion, NestedField, PrimitiveType, Schema, Struct, Type,
    UnboundPartitionSpec, serialize_data_file_to_json,
};
use loch_api::optimizer::{InputFile, TaskInput};
use loch_bench::process::{PeakRss, cpu_time};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, arrow_writer::ArrowWriterOptions};
use parquet::file::properties::WriterProperties;

#[derive(Debug, Parser)]
#[command(about = "Compaction benchmark: Loch's executor vs delta-rs vs a plain arrow-rs loop")]
struct Args {
    /// Number of small input files.
    #[arg(long, default_value_t = 400)]
    files: usize,
    /// Total rows over all input files.
    #[arg(long, default_value_t = 10_000_000)]
    rows: usize,
    /// Target size of the compacted files (Amoro's `self-optimizing.target-size` default).
    #[arg(long, default_value_t = 128 << 20)]
    target_size: u64,
    /// Rounds of measurements; each compactor's median round is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Working directory (default: a temporary one). Input files there are reused when present.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Python with `deltalake` (default: .venv-bench/bin/python of the workspace).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Skip delta-rs.
    #[arg(long)]
    no_delta: bool,
    /// Compact the Parquet files in this directory instead of generated ones (e.g. files pyarrow
    /// or PyIceberg wrote, with field ids); `--files` and `--rows` are then ignored.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Run only the compactors whose name starts with this (e.g. `loch`), for profiling.
    #[arg(long)]
    only: Option<String>,
}

/// One measurement.
#[derive(Debug, Clone)]
struct Measure {
    wall: Duration,
    cpu: Duration,
    /// Growth of this process's resident set during the run (in-process contenders only).
    peak_rss: Option<u64>,
    rows: u64,
    output_files: usize,
    output_bytes: u64,
}

/// The input: small Parquet files of an Iceberg table with mixed column types.
struct Input {
    schema: Schema,
    files: Vec<(PathBuf, u64, u64)>,
    bytes: u64,
    rows: u64,
}

fn schema() -> Result<Schema> {
    let field = |id, name: &str, t: PrimitiveType, required: bool| {
        let f = if required {
            NestedField::required(id, name, Type::Primitive(t))
        } else {
            NestedField::optional(id, name, Type::Primitive(t))
        };
        Arc::new(f)
    };
    Ok(Schema::builder()
        .with_fields(vec![
            field(1, "id", PrimitiveType::Long, true),
            field(2, "ts", PrimitiveType::Timestamptz, false),
            field(3, "category", PrimitiveType::String, false),
            field(4, "value", PrimitiveType::Double, false),
            field(5, "qty", PrimitiveType::Int, false),
            field(6, "flag", PrimitiveType::Boolean, false),
            field(7, "day", PrimitiveType::Date, false),
            field(8, "note", PrimitiveType::String, false),
        ])
        .build()?)
}

/// A deterministic generator (xorshift), so every run compacts the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const WORDS: [&str; 16] = [
    "order", "shipped", "returned", "pending", "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
    "hotel", "india", "juliet", "kilo", "lima",
];

fn batch(arrow: &Arc<arrow_schema::Schema>, first_id: i64, rows: usize, rng: &mut Rng) -> Result<RecordBatch> {
    let ids: Vec<i64> = (first_id..first_id + rows as i64).collect();
    let base = 1_767_225_600_000_000i64; // 2026-01-01T00:00:00Z in microseconds
    let ts: Vec<Option<i64>> = ids.iter().map(|i| Some(base + i * 997_000 + (rng.next() % 1_000_000) as i64)).collect();
    let category: Vec<Option<String>> = (0..rows).map(|_| Some(format!("cat-{:02}", rng.next() % 64))).collect();
    let value: Vec<Option<f64>> =
        (0..rows).map(|_| (!rng.next().is_multiple_of(50)).then(|| (rng.next() % 1_000_000) as f64 / 100.0)).collect();
    let qty: Vec<Option<i32>> = (0..rows).map(|_| Some((rng.next() % 1000) as i32)).collect();
    let flag: Vec<Option<bool>> = (0..rows).map(|_| Some(rng.next().is_multiple_of(3))).collect();
    let day: Vec<Option<i32>> = ids.iter().map(|i| Some(20_454 + (*i / 100_000) as i32)).collect();
    let note: Vec<Option<String>> = (0..rows)
        .map(|_| {
            let n = 1 + rng.next() % 5;
            Some((0..n).map(|_| WORDS[(rng.next() % 16) as usize]).collect::<Vec<_>>().join(" "))
        })
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("+00:00")),
        Arc::new(StringArray::from(category)),
        Arc::new(Float64Array::from(value)),
        Arc::new(Int32Array::from(qty)),
        Arc::new(BooleanArray::from(flag)),
        Arc::new(Date32Array::from(day)),
        Arc::new(StringArray::from(note)),
    ];
    Ok(RecordBatch::try_new(arrow.clone(), columns)?)
}

/// Loch's Parquet settings for a table without write properties (zstd level 3, 1 MiB pages).
fn writer_properties() -> Result<WriterProperties> {
    Ok(loch_table::write::parquet_writer_properties(&HashMap::new())?)
}

/// Writes (or finds) the input files under `dir/input`.
fn prepare_input(dir: &Path, files: usize, rows: usize) -> Result<Input> {
    let schema = schema()?;
    let arrow = Arc::new(schema_to_arrow_schema(&schema)?);
    let input_dir = dir.join(format!("input-v2-{files}-{rows}"));
    let per_file = rows.div_ceil(files);
    if !input_dir.join("done").exists() {
        eprintln!("writing {files} input files of {per_file} rows to {}", input_dir.display());
        let _ = std::fs::remove_dir_all(&input_dir);
        std::fs::create_dir_all(&input_dir)?;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for i in 0..files {
            let path = input_dir.join(format!("part-{i:05}.parquet"));
            // Without an embedded Arrow schema, as engines on the JVM write them.
            let options =
                ArrowWriterOptions::new().with_properties(writer_properties()?).with_skip_arrow_metadata(true);
            let mut writer = ArrowWriter::try_new_with_options(File::create(&path)?, arrow.clone(), options)?;
            let mut written = 0;
            while written < per_file {
                let n = (per_file - written).min(8192);
                writer.write(&batch(&arrow, (i * per_file + written) as i64, n, &mut rng)?)?;
                written += n;
            }
            writer.close()?;
        }
        File::create(input_dir.join("done"))?;
    }
    list_input(schema, &input_dir, Some(files))
}

/// The Parquet files in `dir`, in name order, for a table of `schema`.
fn list_input(schema: Schema, input_dir: &Path, files: Option<usize>) -> Result<Input> {
    let mut listed = Vec::new();
    for entry in std::fs::read_dir(input_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "parquet") {
            let size = std::fs::metadata(&path)?.len();
            let records =
                ParquetRecordBatchReaderBuilder::try_new(File::open(&path)?)?.metadata().file_metadata().num_rows();
            listed.push((path, size, records as u64));
        }
    }
    listed.sort();
    if let Some(files) = files {
        ensure!(listed.len() == files, "{} holds {} files, not {files}", input_dir.display(), listed.len());
    }
    ensure!(!listed.is_empty(), "{} holds no Parquet files", input_dir.display());
    let bytes = listed.iter().map(|f| f.1).sum();
    let rows = listed.iter().map(|f| f.2).sum();
    Ok(Input { schema, files: listed, bytes, rows })
}

/// Files another writer left in `dir`; the table's schema comes from the first file's field ids.
fn given_input(dir: &Path) -> Result<Input> {
    let first = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .min()
        .with_context(|| format!("{} holds no Parquet files", dir.display()))?;
    let arrow = ParquetRecordBatchReaderBuilder::try_new(File::open(&first)?)?.schema().clone();
    let schema = iceberg::arrow::arrow_schema_to_schema(&arrow)
        .with_context(|| format!("{} has no field ids to make a table schema of", first.display()))?;
    list_input(schema, dir, None)
}

/// Rows, file count and bytes of the Parquet files under `dir`.
fn count_output(dir: &Path) -> Result<(u64, usize, u64)> {
    let (mut rows, mut files, mut bytes) = (0u64, 0usize, 0u64);
    for entry in walk(dir)? {
        if entry.extension().is_some_and(|e| e == "parquet") {
            rows += ParquetRecordBatchReaderBuilder::try_new(File::open(&entry)?)?.metadata().file_metadata().num_rows()
                as u64;
            files += 1;
            bytes += std::fs::metadata(&entry)?.len();
        }
    }
    Ok((rows, files, bytes))
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

/// The plain loop: read every file with arrow-rs, write rolling files of the target size.
fn plain_loop(input: &Input, out: &Path, target: u64) -> Result<Measure> {
    std::fs::create_dir_all(out)?;
    let peak = PeakRss::start();
    let cpu = cpu_time();
    let start = Instant::now();
    // The files' own Arrow schema, as read.
    let arrow = ParquetRecordBatchReaderBuilder::try_new(File::open(&input.files[0].0)?)?.schema().clone();
    let mut index = 0;
    let open = |index: usize| -> Result<ArrowWriter<File>> {
        let file = File::create(out.join(format!("out-{index:03}.parquet")))?;
        Ok(ArrowWriter::try_new(file, arrow.clone(), Some(writer_properties()?))?)
    };
    let mut writer = open(index)?;
    for (path, _, _) in &input.files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?.with_batch_size(8192).build()?;
        for batch in reader {
            writer.write(&batch?)?;
            if writer.bytes_written() as u64 + writer.in_progress_size() as u64 >= target {
                writer.close()?;
                index += 1;
                writer = open(index)?;
            }
        }
    }
    writer.close()?;
    let wall = start.elapsed();
    let cpu = cpu_time() - cpu;
    let peak_rss = Some(peak.growth());
    let (rows, output_files, output_bytes) = count_output(out)?;
    Ok(Measure { wall, cpu, peak_rss, rows, output_files, output_bytes })
}

/// A task of Loch's optimizer rewriting `files` into `out`, as the planner would send it.
fn loch_task(input: &Input, files: &[(PathBuf, u64, u64)], out: &Path, target: u64) -> Result<TaskInput> {
    let spec = UnboundPartitionSpec::builder().with_spec_id(0).build();
    let partition_type = spec.clone().bind(Arc::new(input.schema.clone()))?.partition_type(&input.schema)?;
    let rewrite = files
        .iter()
        .map(|(path, size, records)| {
            let file = DataFileBuilder::default()
                .content(DataContentType::Data)
                .file_path(format!("file://{}", path.display()))
                .file_format(DataFileFormat::Parquet)
                .partition(Struct::empty())
                .record_count(*records)
                .file_size_in_bytes(*size)
                .partition_spec_id(0)
                .build()?;
            let json = serialize_data_file_to_json(file, &partition_type, FormatVersion::V2)?;
            Ok(InputFile {
                file: serde_json::from_str(&json)?,
                spec_id: 0,
                deletes: vec![],
                data_sequence_number: 1,
                file_sequence_number: 1,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TaskInput {
        table: "bench.compaction".into(),
        location: format!("file://{}", out.display()),
        format_version: FormatVersion::V2,
        schema: input.schema.clone(),
        partition_specs: vec![spec],
        default_spec_id: 0,
        properties: BTreeMap::new(),
        storage: BTreeMap::new(),
        target_file_size: target,
        rewrite,
        reposition: vec![],
        deletes: vec![],
        obsolete_deletes: vec![],
        keyed: None,
    })
}

/// Loch's executor running `tasks` tasks at once (as that many optimizer threads would), the
/// files split evenly between them.
fn loch(runtime: &tokio::runtime::Runtime, input: &Input, out: &Path, target: u64, tasks: usize) -> Result<Measure> {
    std::fs::create_dir_all(out)?;
    let per_task = input.files.len().div_ceil(tasks);
    let inputs =
        input.files.chunks(per_task).map(|files| loch_task(input, files, out, target)).collect::<Result<Vec<_>>>()?;
    let peak = PeakRss::start();
    let cpu = cpu_time();
    let start = Instant::now();
    let outputs = runtime.block_on(async {
        let handles: Vec<_> = inputs
            .into_iter()
            .map(|task| tokio::spawn(async move { loch_optimizer::executor::execute(&task).await }))
            .collect();
        let mut outputs = Vec::new();
        for handle in handles {
            outputs.push(handle.await?);
        }
        anyhow::Ok(outputs)
    })?;
    let wall = start.elapsed();
    let cpu = cpu_time() - cpu;
    let peak_rss = Some(peak.growth());
    let mut rows = 0;
    for output in outputs {
        rows += output?.summary.rows_written;
    }
    let (counted, output_files, output_bytes) = count_output(out)?;
    ensure!(counted == rows, "the executor reports {rows} rows, its files hold {counted}");
    Ok(Measure { wall, cpu, peak_rss, rows, output_files, output_bytes })
}

const DELTA_SCRIPT: &str = r#"
import json, os, resource, sys, time
from deltalake import DeltaTable, WriterProperties, convert_to_deltalake
path, target, tasks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
convert_to_deltalake(path)
table = DeltaTable(path)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0, t0 = cpu(), time.perf_counter()
metrics = table.optimize.compact(target_size=target, max_concurrent_tasks=tasks,
    writer_properties=WriterProperties(compression="ZSTD", compression_level=3))
wall, used = time.perf_counter() - t0, cpu() - c0
table = DeltaTable(path)
rows = table.to_pyarrow_dataset().count_rows()
files = table.file_uris()
size = sum(os.path.getsize(f.removeprefix("file://")) for f in files)
print(json.dumps({"wall": wall, "cpu": used, "rows": rows, "files": len(files), "bytes": size,
    "removed": metrics["numFilesRemoved"]}))
"#;

/// delta-rs compacting a Delta table made of (hard links to) the input files.
fn delta(python: &Path, input: &Input, out: &Path, target: u64, tasks: usize) -> Result<Measure> {
    std::fs::create_dir_all(out)?;
    for (path, _, _) in &input.files {
        let name = path.file_name().context("input file name")?;
        std::fs::hard_link(path, out.join(name)).or_else(|_| std::fs::copy(path, out.join(name)).map(|_| ()))?;
    }
    let output = Command::new(python)
        .args(["-c", DELTA_SCRIPT])
        .arg(out)
        .arg(target.to_string())
        .arg(tasks.to_string())
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !output.status.success() {
        bail!("delta-rs run failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let result: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    ensure!(result["removed"].as_u64() == Some(input.files.len() as u64), "delta-rs compacted {result}");
    Ok(Measure {
        wall: Duration::from_secs_f64(result["wall"].as_f64().unwrap_or(f64::NAN)),
        cpu: Duration::from_secs_f64(result["cpu"].as_f64().unwrap_or(f64::NAN)),
        peak_rss: None,
        rows: result["rows"].as_u64().unwrap_or(0),
        output_files: result["files"].as_u64().unwrap_or(0) as usize,
        output_bytes: result["bytes"].as_u64().unwrap_or(0),
    })
}

/// The run of median wall time.
fn median(mut runs: Vec<Measure>) -> Measure {
    runs.sort_by_key(|m| m.wall);
    runs.swap_remove(runs.len() / 2)
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.files > 0 && args.rows >= args.files && args.runs > 0, "need files > 0, rows >= files, runs > 0");
    let temp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let input = match &args.input {
        Some(files) => given_input(files)?,
        None => prepare_input(&dir, args.files, args.rows)?,
    };
    let python = args.python.clone().unwrap_or_else(|| loch_testkit::workspace_root().join(".venv-bench/bin/python"));
    let delta_ok = !args.no_delta
        && Command::new(&python).args(["-c", "import deltalake"]).output().is_ok_and(|o| o.status.success());
    if !args.no_delta && !delta_ok {
        eprintln!("delta-rs skipped: {} cannot import deltalake (see bench/README.md)", python.display());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;

    type Contender<'a> = (&'static str, Box<dyn Fn(&Path) -> Result<Measure> + 'a>);
    let target = args.target_size;
    let mut contenders: Vec<Contender> = vec![
        ("arrow-rs loop, 1 thread", Box::new(|out| plain_loop(&input, out, target))),
        ("loch executor, 1 task", Box::new(|out| loch(&runtime, &input, out, target, 1))),
        ("loch executor, 2 tasks", Box::new(|out| loch(&runtime, &input, out, target, 2))),
    ];
    if delta_ok {
        contenders.push(("delta-rs compact, 1 task", Box::new(|out| delta(&python, &input, out, target, 1))));
        contenders.push(("delta-rs compact, 2 tasks", Box::new(|out| delta(&python, &input, out, target, 2))));
    }
    if let Some(only) = &args.only {
        contenders.retain(|(name, _)| name.starts_with(only.as_str()));
    }
    // Rounds visit every compactor in turn, so a slow spell of the machine hits them all alike.
    let mut runs: Vec<Vec<Measure>> = vec![Vec::new(); contenders.len()];
    for round in 0..args.runs {
        for ((name, run), measures) in contenders.iter().zip(&mut runs) {
            let out = dir.join(format!("out-{}-{round}", name.replace([' ', ','], "_")));
            let _ = std::fs::remove_dir_all(&out);
            let measure = run(&out)?;
            let _ = std::fs::remove_dir_all(&out);
            ensure!(measure.rows == input.rows, "{name} wrote {} rows of {}", measure.rows, input.rows);
            eprintln!(
                "round {round}: {name}: {:.2?} wall, {:.2?} cpu, {} files, {} bytes",
                measure.wall, measure.cpu, measure.output_files, measure.output_bytes
            );
            measures.push(measure);
        }
    }
    let results: Vec<(&str, Measure)> =
        contenders.iter().zip(runs).map(|((name, _), measures)| (*name, median(measures))).collect();
    print_table(&args, &input, &results);
    let budget = loch_optimizer::executor::task_memory_budget(&HashMap::new())?;
    println!();
    println!(
        "One task's memory budget at the table defaults: {:.0} MB (read-ahead input {:.0} MB + one row group {:.0} MB).",
        budget as f64 / 1e6,
        loch_optimizer::read_ahead::READ_BUDGET_BYTES as f64 / 1e6,
        (budget - loch_optimizer::read_ahead::READ_BUDGET_BYTES) as f64 / 1e6
    );
    Ok(())
}

fn print_table(args: &Args, input: &Input, results: &[(&str, Measure)]) {
    let mb = input.bytes as f64 / 1e6;
    println!(
        "{} files, {} rows, {:.1} MB in, target {} MiB, median of {} rounds",
        input.files.len(),
        input.rows,
        mb,
        args.target_size >> 20,
        args.runs
    );
    println!();
    println!(
        "| compactor | wall s | cpu s | cores | rows/s | MB/s | rows/s per core | MB/s per core | files out | MB out | peak RSS growth MB | per core vs arrow-rs loop | per core vs delta-rs (same tasks) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let per_core = |m: &Measure| input.rows as f64 / m.cpu.as_secs_f64().max(1e-9);
    let plain = results.iter().find(|(n, _)| n.starts_with("arrow-rs")).map(|(_, m)| per_core(m));
    for (name, m) in results {
        let wall = m.wall.as_secs_f64().max(1e-9);
        let cpu = m.cpu.as_secs_f64().max(1e-9);
        let tasks = name.rsplit(", ").next().unwrap_or_default();
        let delta =
            results.iter().find(|(n, _)| n.starts_with("delta-rs") && n.ends_with(tasks)).map(|(_, d)| per_core(d));
        let ratio = |base: Option<f64>| base.map_or("-".to_string(), |b| format!("{:.2}", per_core(m) / b));
        println!(
            "| {name} | {wall:.2} | {cpu:.2} | {:.2} | {:.0} | {:.1} | {:.0} | {:.1} | {} | {:.1} | {} | {} | {} |",
            cpu / wall,
            input.rows as f64 / wall,
            mb / wall,
            input.rows as f64 / cpu,
            mb / cpu,
            m.output_files,
            m.output_bytes as f64 / 1e6,
            m.peak_rss.map_or("-".to_string(), |b| format!("{:.0}", b as f64 / 1e6)),
            ratio(plain),
            if name.starts_with("loch") { ratio(delta) } else { "-".into() },
        );
    }
}
