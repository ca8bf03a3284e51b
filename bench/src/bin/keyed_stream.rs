//! Streaming-upsert benchmark of keyed tables, end to end through `loch serve` (the issue's
//! TPC-C-like workload, after Amoro's CH-benCHmark): three keyed tables — `orders`,
//! `order_line`, `stock` — take a fixed-rate stream of upserts through the ingest route, one
//! transaction per table every `--commit-secs` (new orders and their lines; stock updates on
//! random keys; deliveries, updates of the most recent orders and their lines; payments,
//! updates of random old orders), while an analytical query (a three-way join with an
//! aggregate) runs through the merge-on-read DataFusion provider every `--query-secs`.
//!
//! The arms run one after the other (or side by side with `--side-by-side`), each on its own
//! `loch serve` in this process. Each arm starts from the same state — the initial load folded
//! into the base stores — and then runs `--minutes` with self-optimizing on (the server's
//! optimizer thread, Amoro's default triggers, plans at most every 10 s) or off. Per minute it
//! reports ingest rows/s, commit-to-visible latency (from sending a transaction until a key
//! lookup through the rows route returns its newest order), query latency (the median of the
//! `--query-repeats` queries of the interval, spread over it), the live files the merge-on-read reads (change files
//! above the optimized sequence, base files) and what the stores' metadata holds. It prints a
//! table per arm, end/start query-latency ratios, and draws query latency over time for both
//! arms as a PNG (`--plot`).
//!
//! Build with `--release`; see `bench/README.md`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use clap::Parser;
use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{NamespaceIdent, Runtime, TableIdent};
use loch_bench::process::cpu_time;
use serde_json::{Value, json};

#[derive(Debug, Clone, Parser)]
#[command(about = "Streaming upserts into keyed tables with and without self-optimizing")]
struct Args {
    /// Minutes each arm streams.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Seconds between commits (one transaction per table).
    #[arg(long, default_value_t = 3)]
    commit_secs: u64,
    /// Seconds over which `--query-repeats` analytical queries are spread (one interval per
    /// reported minute by default).
    #[arg(long, default_value_t = 60)]
    query_secs: u64,
    /// Warehouses (10,000 stock items and `--orders-per-warehouse` orders each).
    #[arg(long, default_value_t = 10)]
    warehouses: i64,
    /// Orders per warehouse in the initial load (ten lines each).
    #[arg(long, default_value_t = 10_000)]
    orders_per_warehouse: i64,
    /// New orders per commit.
    #[arg(long, default_value_t = 4)]
    new_orders: i64,
    /// Stock updates (random items) per commit.
    #[arg(long, default_value_t = 200)]
    stock_updates: i64,
    /// Deliveries (the most recent undelivered orders) per commit.
    #[arg(long, default_value_t = 4)]
    deliveries: i64,
    /// Payments (random old orders updated) per commit.
    #[arg(long, default_value_t = 50)]
    payments: i64,
    /// Queries per `--query-secs`, evenly spaced (a query that falls behind skips the missed
    /// slots); the minute reports their median. Spread over the minute, they meet the folds
    /// running on the other core as often as a user's queries would, not all or none.
    #[arg(long, default_value_t = 5)]
    query_repeats: usize,
    /// Arms to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "on,off")]
    arms: Vec<String>,
    /// Run the arms side by side (each on its own server) instead of one after the other.
    #[arg(long)]
    side_by_side: bool,
    /// Where to draw the query latency over time.
    #[arg(long, default_value = "bench/keyed-stream.png")]
    plot: String,
}

const ITEMS: i64 = 10_000;
const LINES: i64 = 10;

/// One minute of one arm.
#[derive(Debug, Clone, Default)]
struct Minute {
    minute: u64,
    rows: u64,
    visible_ms: Vec<f64>,
    /// Latencies of the minute's queries.
    queries: Vec<f64>,
    /// Their median.
    query_s: Option<f64>,
    load_s: f64,
    change_files: usize,
    base_files: usize,
    shape: Shape,
    processes: usize,
}

/// What the stores' metadata holds (summed over the tables): what every query loads.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    change_snapshots: usize,
    change_manifests: usize,
    base_snapshots: usize,
    base_manifests: usize,
    base_deletes: usize,
    base_delete_records: u64,
    base_records: u64,
    /// Milliseconds to load the change stores' and the base stores' metadata (REST).
    change_load_ms: f64,
    base_load_ms: f64,
    /// Milliseconds to read the change stores' manifest lists.
    change_list_ms: f64,
}

struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let answer = self.http.post(format!("{}{path}", self.url)).json(&body).send().await?;
        let status = answer.status();
        let text = answer.text().await?;
        ensure!(status.is_success(), "POST {path}: {status} {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let answer = self.http.get(format!("{}{path}", self.url)).send().await?;
        ensure!(answer.status().is_success(), "GET {path}: {}", answer.status());
        Ok(answer.json().await?)
    }

    async fn ingest(&self, table: &str, batch: &RecordBatch) -> Result<()> {
        let mut body = Vec::new();
        let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut body, &batch.schema())?;
        writer.write(batch)?;
        writer.finish()?;
        drop(writer);
        let answer = self
            .http
            .post(format!("{}/api/v1/tables/local/tpcc/{table}/changes", self.url))
            .header("content-type", "application/vnd.apache.arrow.stream")
            .body(body)
            .send()
            .await?;
        ensure!(answer.status().is_success(), "ingest {table}: {}", answer.text().await?);
        Ok(())
    }

    /// True when the rows route finds order `id`.
    async fn sees_order(&self, id: i64) -> Result<bool> {
        let path = format!("/api/v1/tables/local/tpcc/orders/rows?columns=id&filter=id%20%3D%20{id}");
        let bytes = self.http.get(format!("{}{path}", self.url)).send().await?.bytes().await?;
        let rows: usize = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?
            .map(|b| b.map(|b| b.num_rows()))
            .sum::<Result<usize, _>>()?;
        Ok(rows > 0)
    }

    /// The base and change store of `table`, at their current metadata.
    async fn stores(&self, table: &str) -> Result<(Table, Table)> {
        Ok((self.load(table).await?, self.load(&format!("{table}@change")).await?))
    }

    /// Loads a table as a REST client does: its metadata from the `loadTable` answer.
    async fn load(&self, name: &str) -> Result<Table> {
        #[derive(serde::Deserialize)]
        struct Loaded {
            #[serde(rename = "metadata-location")]
            location: String,
            metadata: TableMetadata,
        }
        // Only the snapshots refs name: the reads here need the current one alone.
        let path = format!("/api/iceberg/rest/v1/catalogs/local/namespaces/tpcc/tables/{name}?snapshots=refs");
        let answer = self.http.get(format!("{}{path}", self.url)).send().await?;
        ensure!(answer.status().is_success(), "GET {path}: {}", answer.status());
        let Loaded { location, metadata } = serde_json::from_slice(&answer.bytes().await?)?;
        let io = loch_table::io::file_io(std::collections::HashMap::<String, String>::new());
        Ok(Table::builder()
            .identifier(TableIdent::new(NamespaceIdent::new("tpcc".into()), name.into()))
            .file_io(io)
            .metadata(Arc::new(metadata))
            .metadata_location(location)
            .runtime(Runtime::current())
            .build()?)
    }

    /// Successful optimizing processes of `table`.
    async fn processes(&self, table: &str) -> Result<usize> {
        let list = self.get(&format!("/api/v1/tables/local/tpcc/{table}/optimizing/processes")).await?;
        Ok(list.as_array().map(|a| a.iter().filter(|p| p["status"] == "success").count()).unwrap_or(0))
    }
}

fn schema(fields: &[&str]) -> Value {
    let fields: Vec<Value> = fields
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let kind = if *name == "note" { "string" } else { "long" };
            json!({"id": i + 1, "name": name, "required": i == 0, "type": kind})
        })
        .collect();
    json!({"type": "struct", "schema-id": 0, "fields": fields})
}

const ORDERS: [&str; 6] = ["id", "w_id", "c_id", "entry_ts", "carrier_id", "note"];
const ORDER_LINE: [&str; 6] = ["id", "order_id", "stock_id", "quantity", "amount", "delivery_ts"];
const STOCK: [&str; 5] = ["id", "w_id", "quantity", "ytd", "order_cnt"];

/// Rows as an upsert batch: long columns, then `note` as text when named, then `_op`.
fn batch(names: &[&str], columns: Vec<Vec<i64>>) -> Result<RecordBatch> {
    let rows = columns.first().map(Vec::len).unwrap_or(0);
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (name, values) in names.iter().zip(columns) {
        if *name == "note" {
            fields.push(Field::new(*name, DataType::Utf8, true));
            arrays.push(Arc::new(StringArray::from_iter_values(values.iter().map(|v| format!("note {v:012}")))));
        } else {
            fields.push(Field::new(*name, DataType::Int64, *name != "id"));
            arrays.push(Arc::new(Int64Array::from(values)));
        }
    }
    fields.push(Field::new("_op", DataType::Utf8, false));
    arrays.push(Arc::new(StringArray::from(vec!["+I"; rows])));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// The workload's state: next order id, undelivered orders, a random source.
struct Workload {
    args: Args,
    next_order: i64,
    undelivered: VecDeque<i64>,
    rng: u64,
}

impl Workload {
    fn random(&mut self, below: i64) -> i64 {
        self.rng = self.rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.rng >> 33) % below.max(1) as u64) as i64
    }

    fn order(&mut self, id: i64, ts: i64, carrier: i64) -> [i64; 6] {
        let w = id % self.args.warehouses;
        [id, w, self.random(3000), ts, carrier, id]
    }

    fn lines(&mut self, order: i64, delivered: i64) -> Vec<[i64; 6]> {
        let w = order % self.args.warehouses;
        (0..LINES)
            .map(|l| {
                let stock = w * ITEMS + self.random(ITEMS);
                [order * 16 + l, order, stock, 1 + self.random(10), 100 + self.random(10_000), delivered]
            })
            .collect()
    }

    /// One commit's transactions: orders, order lines, stock (each a batch of upserts) and the
    /// newest order id.
    fn commit(&mut self, ts: i64) -> Result<([RecordBatch; 3], i64, u64)> {
        let mut orders: Vec<[i64; 6]> = Vec::new();
        let mut lines: Vec<[i64; 6]> = Vec::new();
        for _ in 0..self.args.new_orders {
            let id = self.next_order;
            self.next_order += 1;
            orders.push(self.order(id, ts, 0));
            lines.extend(self.lines(id, 0));
            self.undelivered.push_back(id);
        }
        // Deliveries: the oldest undelivered of the recent orders, and their lines.
        for _ in 0..self.args.deliveries {
            let Some(id) = self.undelivered.pop_front() else { break };
            let carrier = 1 + self.random(10);
            orders.push(self.order(id, ts, carrier));
            lines.extend(self.lines(id, ts));
        }
        // Payments: random old orders change.
        for _ in 0..self.args.payments {
            let id = self.random(self.next_order);
            let carrier = 1 + self.random(10);
            orders.push(self.order(id, ts, carrier));
        }
        let stock: Vec<[i64; 5]> = (0..self.args.stock_updates)
            .map(|_| {
                let w = self.random(self.args.warehouses);
                [w * ITEMS + self.random(ITEMS), w, self.random(100), self.random(1_000_000), self.random(1000)]
            })
            .collect();
        let rows = (orders.len() + lines.len() + stock.len()) as u64;
        let newest = self.next_order - 1;
        Ok((
            [
                batch(&ORDERS, transpose(&orders))?,
                batch(&ORDER_LINE, transpose(&lines))?,
                batch(&STOCK, transpose(&stock))?,
            ],
            newest,
            rows,
        ))
    }
}

fn transpose<const N: usize>(rows: &[[i64; N]]) -> Vec<Vec<i64>> {
    (0..N).map(|c| rows.iter().map(|r| r[c]).collect()).collect()
}

const QUERY: &str = "SELECT o.w_id, count(*) AS lines, sum(ol.amount) AS amount, sum(s.quantity) AS stock \
    FROM orders o JOIN order_line ol ON ol.order_id = o.id JOIN stock s ON s.id = ol.stock_id \
    WHERE o.carrier_id > 0 GROUP BY o.w_id ORDER BY o.w_id";

/// Runs the analytical query through the merge-on-read provider; its time (loading the
/// tables' metadata included), the part of it spent loading, and the rows of its answer.
async fn query(client: &Client) -> Result<(f64, f64, usize)> {
    let start = Instant::now();
    let ctx = datafusion::prelude::SessionContext::new();
    for table in ["orders", "order_line", "stock"] {
        let (base, change) = client.stores(table).await?;
        let provider = loch_sql::KeyedTableProvider::try_new(base, change, vec!["id".into()])?;
        ctx.register_table(table, Arc::new(provider))?;
    }
    let loaded = start.elapsed().as_secs_f64();
    let batches = ctx.sql(QUERY).await?.collect().await?;
    Ok((start.elapsed().as_secs_f64(), loaded, batches.iter().map(|b| b.num_rows()).sum()))
}

/// The stores' snapshots, manifests and base delete files.
async fn shape(client: &Client) -> Result<Shape> {
    let mut shape = Shape::default();
    for table in ["orders", "order_line", "stock"] {
        let start = Instant::now();
        let base = client.load(table).await?;
        shape.base_load_ms += start.elapsed().as_secs_f64() * 1000.0;
        let start = Instant::now();
        let change = client.load(&format!("{table}@change")).await?;
        shape.change_load_ms += start.elapsed().as_secs_f64() * 1000.0;
        for (store, snapshots, manifests) in [
            (&change, &mut shape.change_snapshots, &mut shape.change_manifests),
            (&base, &mut shape.base_snapshots, &mut shape.base_manifests),
        ] {
            // The snapshot log: loads answer only the snapshots refs name.
            *snapshots += store.metadata().history().len();
            if let Some(head) = store.metadata().current_snapshot() {
                let start = Instant::now();
                *manifests += loch_table::scan::manifests(store.file_io(), &store.metadata_ref(), head).await?.len();
                if std::ptr::eq(store, &change) {
                    shape.change_list_ms += start.elapsed().as_secs_f64() * 1000.0;
                }
            }
        }
        if let Some(head) = base.metadata().current_snapshot().cloned() {
            let files = loch_table::scan::live_files(base.file_io().clone(), base.metadata_ref(), head);
            for file in futures::TryStreamExt::try_collect::<Vec<_>>(files).await? {
                if file.is_delete() {
                    shape.base_deletes += 1;
                    shape.base_delete_records += file.file.record_count();
                } else {
                    shape.base_records += file.file.record_count();
                }
            }
        }
    }
    Ok(shape)
}

/// Live files merge-on-read reads: change files above the optimized sequence, base files.
async fn live_files(client: &Client) -> Result<(usize, usize)> {
    let (mut change_files, mut base_files) = (0, 0);
    for table in ["orders", "order_line", "stock"] {
        let (base, change) = client.stores(table).await?;
        let sequence = loch_table::mixed::sequence::read_optimized_sequence(&base).await?;
        let unfolded = loch_table::mixed::fold::unfolded(&base, &change, &sequence).await?;
        change_files += unfolded.values().map(|p| p.change.len()).sum::<usize>();
        if let Some(head) = base.metadata().current_snapshot().cloned() {
            let files = loch_table::scan::live_files(base.file_io().clone(), base.metadata_ref(), head);
            base_files += futures::TryStreamExt::try_collect::<Vec<_>>(files).await?.len();
        }
    }
    Ok((change_files, base_files))
}

/// Creates the tables and loads them, and waits until the load is folded into the base stores.
async fn load(client: &Client, args: &Args, work: &mut Workload) -> Result<()> {
    client.post("/api/iceberg/rest/v1/catalogs/local/namespaces", json!({"namespace": ["tpcc"]})).await?;
    for (name, fields) in [("orders", &ORDERS[..]), ("order_line", &ORDER_LINE[..]), ("stock", &STOCK[..])] {
        let create = json!({
            "name": name, "format": "mixed-iceberg", "primary_key": ["id"], "schema": schema(fields),
            // Streaming tables plan as often as every 10 s (Amoro's default is 60 s).
            "properties": {"write.upsert.enabled": "true", "self-optimizing.min-plan-interval": "10000"},
        });
        client.post("/api/v1/catalogs/local/namespaces/tpcc/tables", create).await?;
    }
    let stock: Vec<[i64; 5]> = (0..args.warehouses * ITEMS).map(|id| [id, id / ITEMS, 50, 0, 0]).collect();
    client.ingest("stock", &batch(&STOCK, transpose(&stock))?).await?;
    let orders = args.warehouses * args.orders_per_warehouse;
    for start in (0..orders).step_by(20_000) {
        let ids: Vec<i64> = (start..(start + 20_000).min(orders)).collect();
        let rows: Vec<[i64; 6]> = ids.iter().map(|&id| work.order(id, 0, 1 + id % 10)).collect();
        client.ingest("orders", &batch(&ORDERS, transpose(&rows))?).await?;
        let lines: Vec<[i64; 6]> = ids.iter().flat_map(|&id| work.lines(id, 1)).collect();
        client.ingest("order_line", &batch(&ORDER_LINE, transpose(&lines))?).await?;
    }
    work.next_order = orders;
    // Fold the load into the base stores (both arms start there).
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let (change_files, _) = live_files(client).await?;
        if change_files == 0 {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "the initial load was not folded in time");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Runs one arm, its queries shifted by `offset` (so that arms running side by side do not
/// query at the same moment); its minutes.
async fn arm(args: &Args, optimizing: bool, offset: Duration) -> Result<(Vec<Minute>, f64, f64)> {
    let tmp = tempfile::tempdir()?;
    let mut config =
        loch_server::Config { data_dir: tmp.path().to_path_buf(), bind: "127.0.0.1:0".parse()?, ..Default::default() };
    config.optimizer.local_threads = 1;
    config.http.max_body_size = 1 << 30;
    let server = loch_server::start(config).await?;
    let client = Client { http: reqwest::Client::new(), url: server.url() };
    let mut work = Workload { args: args.clone(), next_order: 0, undelivered: VecDeque::new(), rng: 42 };
    let load_start = Instant::now();
    load(&client, args, &mut work).await.context("initial load")?;
    eprintln!(
        "arm {}: initial load folded in {:.0} s",
        if optimizing { "on" } else { "off" },
        load_start.elapsed().as_secs_f64()
    );
    if !optimizing {
        for table in ["orders", "order_line", "stock"] {
            let off = json!({"requirements": [], "updates": [{"action": "set-properties",
                "updates": {"self-optimizing.enabled": "false"}}]});
            client.post(&format!("/api/iceberg/rest/v1/catalogs/local/namespaces/tpcc/tables/{table}"), off).await?;
        }
    }

    let cpu0 = cpu_time();
    let start = Instant::now();
    let total = Duration::from_secs(args.minutes * 60);
    let mut minutes: Vec<Minute> = (0..args.minutes).map(|m| Minute { minute: m + 1, ..Default::default() }).collect();
    let mut next_query = offset;
    let step = Duration::from_secs_f64(args.query_secs as f64 / args.query_repeats.max(1) as f64);
    let mut tick = tokio::time::interval(Duration::from_secs(args.commit_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rows_total = 0u64;
    while start.elapsed() < total {
        tick.tick().await;
        let at = start.elapsed();
        let slot = ((at.as_secs() / 60) as usize).min(minutes.len() - 1);
        let (batches, newest, rows) = work.commit(at.as_millis() as i64)?;
        let sent = Instant::now();
        for (table, batch) in ["orders", "order_line", "stock"].iter().zip(&batches) {
            client.ingest(table, batch).await?;
        }
        while !client.sees_order(newest).await? {}
        minutes[slot].visible_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
        minutes[slot].rows += rows;
        rows_total += rows;
        if start.elapsed() >= next_query {
            while next_query <= start.elapsed() {
                next_query += step;
            }
            let (seconds, load_s, _) = query(&client).await.context("query")?;
            let m = &mut minutes[slot];
            m.queries.push(seconds);
            m.query_s = Some(percentile(&m.queries, 0.5));
            m.load_s = m.load_s.max(load_s);
            if m.queries.len() > 1 {
                continue;
            }
            // Once a minute, what the merge-on-read reads and what the metadata holds.
            let (change_files, base_files) = live_files(&client).await?;
            let shape = shape(&client).await?;
            let mut processes = 0;
            for table in ["orders", "order_line", "stock"] {
                processes += client.processes(table).await?;
            }
            let m = &mut minutes[slot];
            m.shape = shape;
            m.change_files = change_files;
            m.base_files = base_files;
            m.processes = processes;
            eprintln!(
                "arm {} minute {}: query {seconds:.2} s (loading {load_s:.3} s), change files {change_files}, base files {base_files}, processes {processes}, {shape:?}",
                if optimizing { "on" } else { "off" },
                slot + 1
            );
        }
    }
    // Process CPU (server and client): with arms side by side it is shared.
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    let rows_per_s = rows_total as f64 / start.elapsed().as_secs_f64();
    server.shutdown().await?;
    Ok((minutes, rows_per_s, rows_total as f64 / cpu.max(1e-9)))
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Median latency of the queries of the first and of the last `n` minutes that ran queries.
fn ends(minutes: &[Minute], n: usize) -> (f64, f64) {
    let with: Vec<&Minute> = minutes.iter().filter(|m| !m.queries.is_empty()).collect();
    let n = n.min(with.len() / 2).max(1);
    let pooled = |ms: &[&Minute]| -> Vec<f64> { ms.iter().flat_map(|m| m.queries.iter().copied()).collect() };
    (
        percentile(&pooled(&with[..n.min(with.len())]), 0.5),
        percentile(&pooled(&with[with.len().saturating_sub(n)..]), 0.5),
    )
}

fn plot(path: &str, arms: &[(String, Vec<Minute>)]) -> Result<()> {
    use plotters::prelude::*;
    if let Ok(font) = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf") {
        let font: &'static [u8] = Box::leak(font.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, font)
            .map_err(|_| anyhow::anyhow!("the font does not load"))?;
    }
    let max_minute = arms.iter().flat_map(|(_, m)| m.iter().map(|m| m.minute)).max().unwrap_or(1) as f64;
    let max_latency =
        arms.iter().flat_map(|(_, m)| m.iter().filter_map(|m| m.query_s)).fold(0.0f64, f64::max).max(0.1) * 1.1;
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Query latency under streaming upserts (keyed tables, MOR)", ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_minute, 0.0..max_latency)?;
    chart.configure_mesh().x_desc("minutes of streaming").y_desc("query latency (s)").draw()?;
    for (i, (name, minutes)) in arms.iter().enumerate() {
        let color = if i == 0 { RED } else { BLUE };
        let points: Vec<(f64, f64)> = minutes.iter().filter_map(|m| Some((m.minute as f64, m.query_s?))).collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(format!("self-optimizing {name}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    for name in &args.arms {
        ensure!(name == "on" || name == "off", "unknown arm {name:?}; use on or off");
    }
    let run = |i: usize, name: String| {
        let args = &args;
        async move {
            // Side by side, the arms' queries are spread over the query interval.
            let share = if args.side_by_side { i as u64 } else { 0 };
            let offset = Duration::from_secs(args.query_secs * share / args.arms.len().max(1) as u64);
            let (minutes, rows_per_s, rows_per_core) =
                arm(args, name == "on", offset).await.with_context(|| format!("arm {name}"))?;
            Ok::<_, anyhow::Error>((name, minutes, rows_per_s, rows_per_core))
        }
    };
    let results = if args.side_by_side {
        futures::future::try_join_all(args.arms.iter().enumerate().map(|(i, n)| run(i, n.clone()))).await?
    } else {
        let mut results = Vec::new();
        for (i, name) in args.arms.iter().enumerate() {
            results.push(run(i, name.clone()).await?);
        }
        results
    };
    for (name, minutes, rows_per_s, rows_per_core) in &results {
        println!(
            "### self-optimizing {name}: {rows_per_s:.0} rows/s, {rows_per_core:.0} rows/s per CPU-second of the process{}",
            if args.side_by_side { " (shared by the arms)" } else { "" }
        );
        println!();
        println!(
            "| minute | rows/s | commit to visible p50 (ms) | p99 (ms) | query (s) | live change files | base files | processes |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for m in minutes {
            println!(
                "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} |",
                m.minute,
                m.rows as f64 / 60.0,
                percentile(&m.visible_ms, 0.5),
                percentile(&m.visible_ms, 0.99),
                m.query_s.map(|q| format!("{q:.2}")).unwrap_or_default(),
                m.change_files,
                m.base_files,
                m.processes,
            );
        }
        let (first, last) = ends(minutes, 3);
        println!();
        println!(
            "query latency, median of the queries of the first 3 minutes {first:.2} s, of the last 3 {last:.2} s: end/start {:.2}",
            last / first
        );
        println!();
    }
    let arms: Vec<(String, Vec<Minute>)> = results.into_iter().map(|(n, m, _, _)| (n, m)).collect();
    plot(&args.plot, &arms).context("plot")?;
    println!("plot: {}", args.plot);
    Ok(())
}
