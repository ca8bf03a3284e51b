//! Self-optimizing of keyed (Mixed-Iceberg) tables through the service, as an optimizer drives
//! it: two random writers (plain and upserting) commit transactions to the change store while
//! minor, major and full processes run at random points, some with a writer committing while
//! the process runs. After every process the merge-on-read equals a model of the table, and
//! the CDC stream replays to it; optimizers and servers that die mid-process lose nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iceberg::spec::{Transform, UnboundPartitionSpec};
use iceberg::table::Table;
use loch_api::optimizer::RegisterRequest;
use loch_catalog::{CatalogService, CreateTable, ServiceOptions, TableChange, TableName};
use loch_meta::{MetaStore, StoreOptions};
use loch_optimizing::status::ProcessStatus;
use loch_optimizing::table::ManagedTable;
use loch_optimizing::{OptimizingConfig, OptimizingService, OptimizingType, ProcessAction, TableProcess};
use loch_table::mixed::merge::{merge_on_read, read_changes};
use loch_table::snapshot::{RowDelta, SnapshotAction};
use loch_testkit::keyed::{Lcg, Model, RandomWriter, model_of, replay, schema};

struct Keyed {
    catalogs: Arc<CatalogService>,
    base_id: i64,
    _dir: tempfile::TempDir,
}

impl Keyed {
    /// A keyed table `db.t` keyed by `id`, partitioned by `region` when `partitioned`.
    async fn new(partitioned: bool, properties: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("loch.db").display());
        let store = MetaStore::connect(&url, &StoreOptions::default()).await.unwrap();
        let catalogs = Arc::new(CatalogService::new(store, ServiceOptions::default()));
        catalogs.ensure_catalog("local", &format!("file://{}/wh", dir.path().display())).await.unwrap();
        let catalog = catalogs.resolve("local").await.unwrap();
        catalogs.create_namespace(&catalog, &["db".to_string()], Default::default()).await.unwrap();
        let spec = partitioned.then(|| {
            UnboundPartitionSpec::builder().add_partition_field(2, "region", Transform::Identity).unwrap().build()
        });
        let create = CreateTable {
            name: "t".into(),
            location: None,
            schema: schema(),
            partition_spec: spec,
            write_order: None,
            stage_create: false,
            properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(),
        };
        catalogs.create_keyed_table(&catalog, &["db".to_string()], create, vec!["id".into()]).await.unwrap();
        let record = catalogs.store().get_table(catalog.record.id, &["db".to_string()], "t").await.unwrap().unwrap();
        Self { catalogs, base_id: record.id, _dir: dir }
    }

    async fn stores(&self) -> (Table, Table) {
        let table = ManagedTable::load(&self.catalogs, self.base_id).await.unwrap().unwrap();
        let change = table.keyed.as_ref().expect("a keyed table").change.clone();
        (table.table, change)
    }

    async fn change(&self) -> Table {
        self.stores().await.1
    }

    async fn commit(
        &self,
        name: &str,
        requirements_updates: (Vec<iceberg::TableRequirement>, Vec<iceberg::TableUpdate>),
    ) {
        let catalog = self.catalogs.resolve("local").await.unwrap();
        let (requirements, updates) = requirements_updates;
        let change = TableChange { ident: TableName::new(vec!["db".into()], name), requirements, updates };
        self.catalogs.commit_table(&catalog, change).await.unwrap();
    }

    /// Commits a writer's pending transaction and applies it to the model.
    async fn commit_writer(&self, writer: &mut RandomWriter, model: &mut Model) {
        let change = self.change().await;
        let mut delta = RowDelta::new();
        for f in writer.writer.finish().await.unwrap() {
            delta = delta.add_rows(f);
        }
        let pending = delta.prepare(&change).await.unwrap();
        self.commit("t@change", (pending.requirements, pending.updates)).await;
        writer.committed(model);
    }

    async fn set_properties(&self, properties: &[(&str, &str)]) {
        let updates = properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.commit("t", (vec![], vec![iceberg::TableUpdate::SetProperties { updates }])).await;
    }

    /// The merge-on-read of both stores.
    async fn read(&self) -> Model {
        let (base, change) = self.stores().await;
        model_of(&merge_on_read(&base, &change, &["id".to_string()]).await.unwrap())
    }

    /// The CDC stream from the start, replayed onto an empty table.
    async fn replayed(&self) -> Model {
        let mut model = Model::new();
        let transactions = replay(&mut model, &read_changes(&self.change().await, None, None).await.unwrap());
        assert!(transactions.windows(2).all(|w| w[0] <= w[1]), "changes come in transaction order");
        model
    }
}

fn config() -> OptimizingConfig {
    OptimizingConfig {
        refresh_interval: Duration::from_secs(3600),
        heartbeat_timeout: Duration::from_secs(60),
        ack_timeout: Duration::from_secs(30),
        execute_timeout: None,
        poll_timeout: Duration::from_millis(100),
        history_keep: Duration::from_secs(3600),
        ..OptimizingConfig::default()
    }
}

async fn register(service: &OptimizingService, embedded: bool) -> String {
    let request =
        RegisterRequest { group: "default".into(), threads: 1, memory_mb: 1024, properties: Default::default() };
    service.register(&request, embedded).await.unwrap().token
}

/// Acknowledges, executes and completes a task.
async fn run(service: &Arc<OptimizingService>, token: &str, task: &loch_api::optimizer::TaskAssignment) {
    service.ack(token, 0, &task.key).await.unwrap();
    let output = loch_optimizer::executor::execute(&task.input).await.map_err(|e| e.to_string());
    service.complete(token, 0, &task.key, output).await.unwrap();
}

/// Runs every task of the running process, starting with `first`, and waits for its end.
async fn run_process(
    service: &Arc<OptimizingService>,
    token: &str,
    table_id: i64,
    first: loch_api::optimizer::TaskAssignment,
) -> TableProcess {
    let process_id = first.key.process_id;
    let mut task = Some(first);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = task.take() {
            run(service, token, &t).await;
        }
        let process = service.processes(table_id, 2).await.unwrap().into_iter().find(|p| p.id == process_id).unwrap();
        if process.status != ProcessStatus::Running {
            return process;
        }
        assert!(Instant::now() < deadline, "process {process_id} did not finish");
        let tasks = service.tasks(table_id, process_id).await.unwrap();
        if tasks.iter().all(|t| t.status == "success") {
            tokio::time::sleep(Duration::from_millis(20)).await; // committing
        } else {
            task = service.poll(token, 0).await.unwrap();
            assert!(task.as_ref().is_none_or(|t| t.key.process_id == process_id), "one process at a time");
        }
    }
}

/// Properties that make the next evaluation choose `kind`.
fn settings(kind: OptimizingType) -> [(&'static str, &'static str); 3] {
    match kind {
        // Tiny targets make the base files segments: minor keeps them, and the deletes that
        // hit them become position deletes.
        OptimizingType::Minor => [
            ("self-optimizing.full.trigger.interval", "-1"),
            ("self-optimizing.target-size", "1024"),
            ("self-optimizing.major.trigger.duplicate-ratio", "10"),
        ],
        // Small targets make the base files undersized segments that fit together.
        OptimizingType::Major => [
            ("self-optimizing.full.trigger.interval", "-1"),
            ("self-optimizing.target-size", "4096"),
            ("self-optimizing.major.trigger.duplicate-ratio", "0.0"),
        ],
        OptimizingType::Full => [
            ("self-optimizing.full.trigger.interval", "0"),
            ("self-optimizing.target-size", "134217728"),
            ("self-optimizing.major.trigger.duplicate-ratio", "0.1"),
        ],
    }
}

/// Plans at once; the change store's folded manifests merge after nearly every fold (once two
/// are there), so reads, CDC and later folds run across merged manifests.
const PROPERTIES: [(&str, &str); 3] = [
    ("self-optimizing.min-plan-interval", "0"),
    ("self-optimizing.minor.trigger.interval", "0"),
    ("commit.manifest.min-count-to-merge", "2"),
];

async fn random_keyed_optimizing(partitioned: bool, seed: u64) {
    let env = Keyed::new(partitioned, &PROPERTIES).await;
    let service = OptimizingService::new(env.catalogs.clone(), config()).await.unwrap();
    let token = register(&service, false).await;
    let mut rng = Lcg(seed);
    let mut model = Model::new();
    let change = env.change().await;
    let mut writers = [RandomWriter::new(&change, 0, false, &model), RandomWriter::new(&change, 1, true, &model)];
    let mut kinds: BTreeSet<OptimizingType> = BTreeSet::new();
    let mut during = 0;
    for step in 0..36 {
        let w = rng.next(2) as usize;
        let n = 1 + rng.next(40) as usize;
        writers[w].write_random(&change, &mut rng, n, &format!("s{step}"));
        if rng.next(3) != 0 {
            env.commit_writer(&mut writers[w], &mut model).await;
        }
        if rng.next(3) != 0 {
            continue;
        }
        let kind = [OptimizingType::Minor, OptimizingType::Major, OptimizingType::Full][rng.next(3) as usize];
        env.set_properties(&settings(kind)).await;
        service.refresh_table(env.base_id).await.unwrap();
        let Some(first) = service.poll(&token, 0).await.unwrap() else { continue };
        // A transaction lands while the process runs: it stays visible after the commit.
        let other = 1 - w;
        if rng.next(2) == 0 && writers[other].pending() {
            env.commit_writer(&mut writers[other], &mut model).await;
            during += 1;
        }
        let process = run_process(&service, &token, env.base_id, first).await;
        assert_eq!(process.status, ProcessStatus::Success, "{:?} (seed {seed})", process.fail_message);
        let ProcessAction::Optimizing(done) = process.action else { panic!("not optimizing") };
        kinds.insert(done);
        assert_eq!(
            env.read().await,
            model,
            "merge-on-read after {} optimizing at step {step} (seed {seed})",
            done.as_str()
        );
    }
    writers[0].write_random(&change, &mut rng, 10, "last");
    for writer in &mut writers {
        if writer.pending() {
            env.commit_writer(writer, &mut model).await;
        }
    }
    assert_eq!(env.read().await, model, "seed {seed}");
    assert_eq!(env.replayed().await, model, "CDC replay (seed {seed})");
    assert!(during >= 1, "a transaction landed during a process (seed {seed})");
    assert_eq!(kinds.len(), 3, "minor, major and full all ran: {kinds:?} (seed {seed})");
    // An unpartitioned change store merged its folded manifests (a partitioned one has no
    // single optimized sequence to merge below).
    let change = env.change().await;
    let merges = change
        .metadata()
        .snapshots()
        .filter(|s| s.summary().additional_properties.contains_key("manifests-created"))
        .count();
    assert_eq!(merges > 0, !partitioned, "{merges} merges of folded manifests (seed {seed})");

    // A full optimizing leaves a base store that alone holds the table.
    env.set_properties(&settings(OptimizingType::Full)).await;
    service.refresh_table(env.base_id).await.unwrap();
    let first = service.poll(&token, 0).await.unwrap().expect("a full process");
    assert_eq!(run_process(&service, &token, env.base_id, first).await.status, ProcessStatus::Success);
    let (base, _) = env.stores().await;
    assert_eq!(model_of(&loch_testkit::data::scan_all(&base).await.unwrap()), model, "the base store alone");
    assert_eq!(env.read().await, model);
}

#[tokio::test]
async fn random_keyed_changes_optimized_partitioned() {
    random_keyed_optimizing(true, 11).await;
}

#[tokio::test]
async fn random_keyed_changes_optimized_unpartitioned() {
    random_keyed_optimizing(false, 29).await;
}

/// Writes and commits a few transactions with inserts, updates and deletes, folding once in
/// between so later deletes hit base rows.
async fn history(env: &Keyed, service: &Arc<OptimizingService>, token: &str, model: &mut Model) {
    let change = env.change().await;
    let mut rng = Lcg(7);
    let mut writers = [RandomWriter::new(&change, 0, false, model), RandomWriter::new(&change, 1, true, model)];
    for round in 0..6 {
        for writer in &mut writers {
            writer.write_random(&change, &mut rng, 30, &format!("h{round}"));
            env.commit_writer(writer, model).await;
        }
        if round == 2 {
            service.refresh_table(env.base_id).await.unwrap();
            let first = service.poll(token, 0).await.unwrap().expect("a process");
            assert_eq!(run_process(service, token, env.base_id, first).await.status, ProcessStatus::Success);
        }
    }
}

/// An optimizer that dies holding a keyed task, a server that dies with a process running, one
/// that dies after every task succeeded, and one that dies after the commit landed but before
/// it was recorded: after the restart no row is lost, duplicated or resurrected.
#[tokio::test]
async fn killed_optimizers_and_servers_lose_no_keyed_row() {
    let env = Keyed::new(true, &PROPERTIES).await;
    env.set_properties(&settings(OptimizingType::Minor)).await;
    let fast = OptimizingConfig { heartbeat_timeout: Duration::from_millis(300), ..config() };
    let mut model = Model::new();
    let first = OptimizingService::new(env.catalogs.clone(), fast.clone()).await.unwrap();
    let token = register(&first, false).await;
    history(&env, &first, &token, &mut model).await;

    // 1. The optimizer dies after acknowledging a task: it goes to another optimizer.
    first.refresh_table(env.base_id).await.unwrap();
    let lost = first.poll(&token, 0).await.unwrap().expect("a process");
    first.ack(&token, 0, &lost.key).await.unwrap();
    let other = register(&first, false).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.touch(&other).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.keep().await.unwrap();
    let again = first.poll(&other, 0).await.unwrap().expect("the task again");
    assert_eq!((again.key.task_id, again.key.attempt), (lost.key.task_id, 2));
    assert_eq!(run_process(&first, &other, env.base_id, again).await.status, ProcessStatus::Success);
    assert_eq!(env.read().await, model, "after a lost optimizer");

    // 2. The server dies with a task running on its own threads; the restarted one resumes.
    let change = env.change().await;
    let mut writer = RandomWriter::new(&change, 0, false, &model);
    writer.write_random(&change, &mut Lcg(3), 40, "k2");
    env.commit_writer(&mut writer, &mut model).await;
    first.refresh_table(env.base_id).await.unwrap();
    let embedded = register(&first, true).await;
    let running = first.poll(&embedded, 0).await.unwrap().expect("a process");
    first.ack(&embedded, 0, &running.key).await.unwrap();
    drop(first);
    let second = OptimizingService::new(env.catalogs.clone(), config()).await.unwrap();
    second.recover().await.unwrap();
    let token = register(&second, true).await;
    let resumed = second.poll(&token, 0).await.unwrap().expect("the task after the restart");
    assert_eq!(resumed.key.process_id, running.key.process_id);
    assert_eq!(run_process(&second, &token, env.base_id, resumed).await.status, ProcessStatus::Success);
    assert_eq!(env.read().await, model, "after a restart mid-process");

    // 3. Every task succeeded, then the server died before committing; 4. the commit landed,
    // then the server died before recording it. Both are committed exactly once on restart.
    for commit_first in [false, true] {
        let mut writer = RandomWriter::new(&change, 1, true, &model);
        writer.write_random(&change, &mut Lcg(if commit_first { 5 } else { 9 }), 40, "k3");
        env.commit_writer(&mut writer, &mut model).await;
        let server = OptimizingService::new(env.catalogs.clone(), config()).await.unwrap();
        let token = register(&server, false).await;
        server.refresh_table(env.base_id).await.unwrap();
        let mut task = server.poll(&token, 0).await.unwrap();
        let process_id = task.as_ref().expect("a process").key.process_id;
        let store = env.catalogs.store();
        let mut results = Vec::new();
        while let Some(t) = task.take() {
            server.ack(&token, 0, &t.key).await.unwrap();
            let output = loch_optimizer::executor::execute(&t.input).await.unwrap();
            let held = store.get_task(t.key.process_id, t.key.task_id).await.unwrap().unwrap();
            let mut done = held.clone();
            done.status = "success".into();
            done.output = Some(serde_json::to_string(&output).unwrap());
            assert!(store.update_task(&done, "acked", held.attempt, None).await.unwrap());
            results.push((t.input.clone(), output));
            task = server.poll(&token, 0).await.unwrap();
        }
        let process = server.processes(env.base_id, 1).await.unwrap().remove(0);
        assert_eq!(process.id, process_id);
        if commit_first {
            let output = loch_optimizing::committer::ProcessOutput {
                table_id: env.base_id,
                process_id,
                kind: OptimizingType::Minor,
                target_snapshot: process.target_snapshot_id.unwrap_or_default(),
                results: &results,
            };
            let committed = loch_optimizing::committer::commit_keyed(&env.catalogs, output, process.target_snapshot_id)
                .await
                .unwrap();
            assert!(!committed.already);
        }
        drop(server);
        let restarted = OptimizingService::new(env.catalogs.clone(), config()).await.unwrap();
        restarted.recover().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let process = loop {
            let p = restarted.processes(env.base_id, 1).await.unwrap().remove(0);
            if p.status != ProcessStatus::Running {
                break p;
            }
            assert!(Instant::now() < deadline, "the process was not committed after the restart");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(process.status, ProcessStatus::Success, "{:?}", process.fail_message);
        assert_eq!(env.read().await, model, "after a crash around the commit (commit landed: {commit_first})");
        let (base, _) = env.stores().await;
        let commits = base
            .metadata()
            .snapshots()
            .filter(|s| {
                s.summary().additional_properties.get(loch_optimizing::committer::PROCESS_ID_PROPERTY)
                    == Some(&process_id.to_string())
            })
            .count();
        assert_eq!(commits, 1, "committed exactly once");
    }
    assert_eq!(env.replayed().await, model);
}

/// Folded change files past `change.data.ttl.minutes` leave the change store (and disk, with
/// snapshot expiry); unfolded ones stay; the table reads the same; a CDC read across the
/// removed range is refused with the reason, one after it still replays.
#[tokio::test]
async fn change_data_past_its_ttl_is_removed_and_cdc_says_so() {
    let env = Keyed::new(true, &PROPERTIES).await;
    env.set_properties(&settings(OptimizingType::Minor)).await;
    let service = OptimizingService::new(env.catalogs.clone(), config()).await.unwrap();
    let token = register(&service, false).await;
    let mut model = Model::new();
    history(&env, &service, &token, &mut model).await;
    service.refresh_table(env.base_id).await.unwrap();
    let first = service.poll(&token, 0).await.unwrap().expect("a process");
    assert_eq!(run_process(&service, &token, env.base_id, first).await.status, ProcessStatus::Success);
    let change = env.change().await;
    let mut writer = RandomWriter::new(&change, 0, false, &model);
    writer.write_random(&change, &mut Lcg(13), 20, "late");
    env.commit_writer(&mut writer, &mut model).await;
    let last = env.change().await.metadata().last_sequence_number();

    let catalog = env.catalogs.resolve("local").await.unwrap();
    let change_id =
        env.catalogs.store().get_table(catalog.record.id, &["db".into()], "t@change").await.unwrap().unwrap().id;
    let ttl = [("change.data.ttl.minutes", "0"), ("snapshot.keep.duration", "0")];
    let updates = ttl.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.commit("t@change", (vec![], vec![iceberg::TableUpdate::SetProperties { updates }])).await;
    let live_before = live_count(&env.change().await).await;
    let now = loch_meta::now_ms() + 1000;
    let (mut summary, expired) = loch_optimizing::maintenance::expire::expire_snapshots(
        &env.catalogs,
        env.catalogs.store(),
        change_id,
        now,
        false,
    )
    .await
    .unwrap();
    assert!(summary.change_files_expired > 0, "{summary:?}");
    let live_after = live_count(&env.change().await).await;
    assert_eq!(live_after, live_before - summary.change_files_expired, "the unfolded transaction's files stay");
    loch_optimizing::maintenance::expire::delete_expired(&expired.expect("expired snapshots"), &mut summary, None)
        .await
        .unwrap();
    assert!(summary.content_files >= summary.change_files_expired, "the removed files left the disk: {summary:?}");
    assert_eq!(env.read().await, model, "the table reads the same");

    let change = env.change().await;
    let through: i64 = change.metadata().properties()[loch_table::mixed::properties::REMOVED_THROUGH].parse().unwrap();
    assert!(through < last);
    let refused = read_changes(&change, None, None).await.unwrap_err().to_string();
    assert!(refused.contains("change.data.ttl.minutes"), "{refused}");
    let tail = read_changes(&change, Some(through), None).await.unwrap();
    let mut replayed = Model::new();
    let transactions = replay(&mut replayed, &tail);
    assert!(transactions.contains(&last), "the late transaction is still there");
}

async fn live_count(table: &Table) -> usize {
    let Some(head) = table.metadata().current_snapshot().cloned() else { return 0 };
    let files = loch_table::scan::live_files(table.file_io().clone(), table.metadata_ref(), head);
    futures::TryStreamExt::try_collect::<Vec<_>>(files).await.unwrap().len()
}

/// A commit to the change store (which announces the change store) makes the base store's
/// runtime evaluate the table.
#[tokio::test]
async fn a_change_store_commit_refreshes_the_keyed_table() {
    let env = Keyed::new(false, &PROPERTIES).await;
    let service = OptimizingService::new(env.catalogs.clone(), config()).await.unwrap();
    let token = register(&service, false).await;
    let change = env.change().await;
    let mut model = Model::new();
    let mut writer = RandomWriter::new(&change, 0, false, &model);
    writer.write_random(&change, &mut Lcg(1), 30, "a");
    env.commit_writer(&mut writer, &mut model).await;
    let catalog = env.catalogs.resolve("local").await.unwrap();
    let change_id =
        env.catalogs.store().get_table(catalog.record.id, &["db".into()], "t@change").await.unwrap().unwrap().id;
    service.refresh_table(change_id).await.unwrap();
    let runtime = service.table_runtime(env.base_id).await.unwrap().runtime;
    assert_eq!(runtime.status, "pending", "{runtime:?}");
    let first = service.poll(&token, 0).await.unwrap().expect("a process");
    assert_eq!(run_process(&service, &token, env.base_id, first).await.status, ProcessStatus::Success);
    assert_eq!(env.read().await, model);
}
