//! Integration tests of the metadata store against real SQLite files and a real PostgreSQL.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use loch_meta::{
    CommitBatch, MetaError, MetaStore, NewCatalog, NewPurge, NewTable, Occupant, PageRequest, PointerSwap,
    StoreOptions, TableKind, TableStats, TotalsSample, VersionCheck,
};

/// A store on a fresh SQLite file (kept alive by the returned directory).
async fn sqlite() -> (MetaStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("loch.db").display());
    (MetaStore::connect(&url, &StoreOptions::default()).await.unwrap(), dir)
}

/// A store on a fresh PostgreSQL database, or `None` when PostgreSQL cannot run here.
async fn postgres() -> Option<MetaStore> {
    let url = loch_testkit::postgres()?.create_database();
    Some(MetaStore::connect(&url, &StoreOptions::default()).await.unwrap())
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn levels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn new_table(catalog_id: i64, ns: &[&str], name: &str, kind: TableKind) -> NewTable {
    NewTable {
        catalog_id,
        namespace: levels(ns),
        name: name.into(),
        kind,
        format: "iceberg".into(),
        uuid: "00000000-0000-0000-0000-000000000001".into(),
        location: format!("file:///wh/{}/{name}", ns.join("/")),
        metadata_location: format!("file:///wh/{}/{name}/metadata/00000-a.metadata.json", ns.join("/")),
        stats: TableStats::default(),
    }
}

async fn catalogs_namespaces_tables(store: MetaStore) {
    // Catalogs.
    let cat = store
        .create_catalog(&NewCatalog {
            name: "c1".into(),
            kind: "internal".into(),
            properties: props(&[("warehouse", "file:///wh")]),
        })
        .await
        .unwrap();
    assert!(matches!(
        store.create_catalog(&NewCatalog { name: "c1".into(), kind: "internal".into(), properties: props(&[]) }).await,
        Err(MetaError::AlreadyExists(_))
    ));
    let updated = store.update_catalog("c1", &props(&[("warehouse", "file:///wh2")])).await.unwrap();
    assert_eq!(updated.properties["warehouse"], "file:///wh2");
    assert_eq!(store.list_catalogs().await.unwrap().len(), 1);

    // Namespaces: parents must exist, listing is per level and paginated.
    store.create_namespace(cat.id, &levels(&["a"]), &props(&[("owner", "x")])).await.unwrap();
    assert!(matches!(
        store.create_namespace(cat.id, &levels(&["a"]), &props(&[])).await,
        Err(MetaError::AlreadyExists(_))
    ));
    assert!(matches!(
        store.create_namespace(cat.id, &levels(&["nope", "b"]), &props(&[])).await,
        Err(MetaError::NotFound(_))
    ));
    for child in ["b", "c", "d"] {
        store.create_namespace(cat.id, &levels(&["a", child]), &props(&[])).await.unwrap();
    }
    store.create_namespace(cat.id, &levels(&["z"]), &props(&[])).await.unwrap();
    let top = store.list_namespaces(cat.id, &[], &PageRequest::all()).await.unwrap();
    assert_eq!(top.items.iter().map(|n| n.levels.clone()).collect::<Vec<_>>(), vec![levels(&["a"]), levels(&["z"])]);
    let first =
        store.list_namespaces(cat.id, &levels(&["a"]), &PageRequest { after: None, limit: Some(2) }).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let second = store
        .list_namespaces(cat.id, &levels(&["a"]), &PageRequest { after: first.next.clone(), limit: Some(2) })
        .await
        .unwrap();
    assert_eq!(second.items.iter().map(|n| n.levels.clone()).collect::<Vec<_>>(), vec![levels(&["a", "d"])]);
    assert_eq!(second.next, None);

    let changes = store
        .update_namespace_properties(cat.id, &levels(&["a"]), &props(&[("k", "v")]), &levels(&["owner", "missing"]))
        .await
        .unwrap();
    assert_eq!(
        (changes.updated, changes.removed, changes.missing),
        (levels(&["k"]), levels(&["owner"]), levels(&["missing"]))
    );
    assert_eq!(store.get_namespace(cat.id, &levels(&["a"])).await.unwrap().unwrap().properties, props(&[("k", "v")]));

    // Tables and views share names; the pointer moves only by compare-and-swap.
    let t = store.insert_table(&new_table(cat.id, &["a", "b"], "t", TableKind::Table)).await.unwrap();
    assert_eq!((t.version, t.namespace.clone()), (1, levels(&["a", "b"])));
    assert!(matches!(
        store.insert_table(&new_table(cat.id, &["a", "b"], "t", TableKind::View)).await,
        Err(MetaError::AlreadyExists(_))
    ));
    assert!(matches!(
        store.insert_table(&new_table(cat.id, &["q"], "t", TableKind::Table)).await,
        Err(MetaError::NotFound(_))
    ));
    store.insert_table(&new_table(cat.id, &["a", "b"], "v", TableKind::View)).await.unwrap();
    let tables = store.list_tables(cat.id, &levels(&["a", "b"]), TableKind::Table, &PageRequest::all()).await.unwrap();
    assert_eq!(tables.items.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["t"]);

    let swap = |expected_version, to: &str| PointerSwap {
        table_id: t.id,
        expected_version,
        previous_metadata_location: t.metadata_location.clone(),
        metadata_location: to.into(),
        location: t.location.clone(),
        stats: TableStats { snapshot_id: Some(7), data_files: 3, ..Default::default() },
    };
    store.swap_pointers(&[swap(1, "file:///m1")]).await.unwrap();
    // A second writer based on the same version loses, and changes nothing.
    assert!(matches!(store.swap_pointers(&[swap(1, "file:///m2")]).await, Err(MetaError::Conflict(_))));
    let now = store.get_table(cat.id, &levels(&["a", "b"]), "t").await.unwrap().unwrap();
    assert_eq!((now.version, now.metadata_location.as_str(), now.stats.data_files), (2, "file:///m1", 3));

    // A commit that reads a table it does not change applies only if that table is unchanged.
    let other = store.insert_table(&new_table(cat.id, &["a", "b"], "other", TableKind::Table)).await.unwrap();
    let guarded = |check_version| CommitBatch {
        swaps: vec![PointerSwap {
            table_id: other.id,
            expected_version: other.version,
            previous_metadata_location: other.metadata_location.clone(),
            metadata_location: "file:///other-m1".into(),
            location: other.location.clone(),
            stats: TableStats::default(),
        }],
        checks: vec![VersionCheck { table_id: t.id, expected_version: check_version }],
        ..CommitBatch::default()
    };
    assert!(matches!(store.apply_commit(&guarded(1)).await, Err(MetaError::Conflict(_))));
    assert_eq!(store.get_table_by_id(other.id).await.unwrap().unwrap().version, 1, "nothing applied");
    store.apply_commit(&guarded(2)).await.unwrap();
    assert_eq!(store.get_table_by_id(other.id).await.unwrap().unwrap().version, 2);
    assert_eq!(store.get_table_by_id(t.id).await.unwrap().unwrap().version, 2, "a check does not bump the version");
    store.delete_table(other.id, 2, None).await.unwrap();

    // Locations of two tables or views must not overlap, in any catalog.
    let names = |found: Vec<Occupant>| found.into_iter().map(|o| format!("{} {}", o.kind, o.name)).collect::<Vec<_>>();
    let overlapping = |location: &'static str| {
        let store = store.clone();
        async move { names(store.locations_overlapping(location, None).await.unwrap()) }
    };
    assert_eq!(overlapping("file:///wh/a/b/t").await, vec!["table c1.a.b.t"]);
    assert_eq!(overlapping("file:///wh/a/b/t/sub").await, vec!["table c1.a.b.t"]);
    assert_eq!(overlapping("file:///wh/a/b/v").await, vec!["view c1.a.b.v"]);
    assert_eq!(overlapping("file:///wh/a").await.len(), 2);
    assert!(overlapping("file:///wh/a/b/t2").await.is_empty());
    assert!(names(store.locations_overlapping("file:///wh/a/b/t", Some(t.id)).await.unwrap()).is_empty());
    let cat2 = store
        .create_catalog(&NewCatalog {
            name: "c2".into(),
            kind: "internal".into(),
            properties: props(&[("warehouse", "file:///other")]),
        })
        .await
        .unwrap();
    store.create_namespace(cat2.id, &levels(&["x"]), &props(&[])).await.unwrap();
    let mut intruder = new_table(cat2.id, &["x"], "t", TableKind::Table);
    intruder.location = "file:///wh/a/b/t/inner".into();
    assert!(matches!(store.insert_table(&intruder).await, Err(MetaError::Overlap(_))), "across catalogs too");
    let mut moved_in = PointerSwap {
        table_id: other.id,
        expected_version: 0,
        previous_metadata_location: String::new(),
        metadata_location: "file:///x".into(),
        location: "file:///wh".into(),
        stats: TableStats::default(),
    };
    intruder.location = "file:///other/x/t".into();
    let lone = store.insert_table(&intruder).await.unwrap();
    moved_in.table_id = lone.id;
    moved_in.expected_version = lone.version;
    moved_in.previous_metadata_location = lone.metadata_location.clone();
    assert!(matches!(store.swap_pointers(&[moved_in]).await, Err(MetaError::Overlap(_))), "a move is checked");

    // A purge is recorded with the drop and holds the location until it finishes.
    let purge = NewPurge {
        catalog_id: cat2.id,
        table_name: "x.t".into(),
        location: lone.location.clone(),
        metadata_location: lone.metadata_location.clone(),
    };
    let record = store.delete_table(lone.id, lone.version, Some(&purge)).await.unwrap().unwrap();
    assert_eq!(names(store.locations_overlapping("file:///other/x/t", None).await.unwrap()), vec!["purge c2.x.t"]);
    assert!(matches!(store.insert_table(&intruder).await, Err(MetaError::Overlap(_))));
    assert!(matches!(store.delete_catalog("c2").await, Err(MetaError::NotEmpty(_))), "purges need their catalog");
    store.fail_purge(record.id, "disk on fire").await.unwrap();
    let pending = store.pending_purges().await.unwrap();
    assert_eq!((pending.len(), pending[0].attempts, pending[0].last_error.as_deref()), (1, 1, Some("disk on fire")));
    store.finish_purge(record.id).await.unwrap();
    assert!(store.pending_purges().await.unwrap().is_empty());
    store.drop_namespace(cat2.id, &levels(&["x"])).await.unwrap();
    store.delete_catalog("c2").await.unwrap();

    // Non-empty namespaces and catalogs cannot be dropped.
    assert!(matches!(store.drop_namespace(cat.id, &levels(&["a"])).await, Err(MetaError::NotEmpty(_))));
    assert!(matches!(store.drop_namespace(cat.id, &levels(&["a", "b"])).await, Err(MetaError::NotEmpty(_))));
    assert!(matches!(store.delete_catalog("c1").await, Err(MetaError::NotEmpty(_))));

    store.rename_table(t.id, cat.id, &levels(&["a", "c"]), "t2").await.unwrap();
    assert!(store.get_table(cat.id, &levels(&["a", "b"]), "t").await.unwrap().is_none());
    let moved = store.get_table(cat.id, &levels(&["a", "c"]), "t2").await.unwrap().unwrap();
    assert_eq!(moved.id, t.id);
    assert!(matches!(store.delete_table(moved.id, 1, None).await, Err(MetaError::Conflict(_))));
    store.delete_table(moved.id, moved.version, None).await.unwrap();
    let view = store.get_table(cat.id, &levels(&["a", "b"]), "v").await.unwrap().unwrap();
    store.delete_table(view.id, view.version, None).await.unwrap();
    store.drop_namespace(cat.id, &levels(&["a", "b"])).await.unwrap();
    assert!(matches!(store.drop_namespace(cat.id, &levels(&["a", "b"])).await, Err(MetaError::NotFound(_))));
    store.delete_catalog("c1").await.unwrap();
    assert!(store.get_catalog("c1").await.unwrap().is_none());
}

#[tokio::test]
async fn sqlite_catalogs_namespaces_tables() {
    let (store, _dir) = sqlite().await;
    catalogs_namespaces_tables(store).await;
}

#[tokio::test]
async fn postgres_catalogs_namespaces_tables() {
    let Some(store) = postgres().await else { return };
    catalogs_namespaces_tables(store).await;
}

async fn concurrent_swaps_serialize(store: MetaStore) {
    let cat = store
        .create_catalog(&NewCatalog { name: "c".into(), kind: "internal".into(), properties: props(&[]) })
        .await
        .unwrap();
    store.create_namespace(cat.id, &levels(&["n"]), &props(&[])).await.unwrap();
    let t = store.insert_table(&new_table(cat.id, &["n"], "t", TableKind::Table)).await.unwrap();
    // 8 writers race 20 times each; every version is won by exactly one of them.
    let mut handles = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        let id = t.id;
        handles.push(tokio::spawn(async move {
            let mut wins = 0;
            while wins < 20 {
                let cur = store.get_table_by_id(id).await.unwrap().unwrap();
                let swap = PointerSwap {
                    table_id: id,
                    expected_version: cur.version,
                    previous_metadata_location: cur.metadata_location.clone(),
                    metadata_location: format!("file:///m-{w}-{wins}"),
                    location: cur.location.clone(),
                    stats: TableStats::default(),
                };
                match store.swap_pointers(&[swap]).await {
                    Ok(()) => wins += 1,
                    Err(MetaError::Conflict(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(store.get_table_by_id(t.id).await.unwrap().unwrap().version, 1 + 8 * 20);
}

#[tokio::test]
async fn sqlite_concurrent_swaps_serialize() {
    let (store, _dir) = sqlite().await;
    concurrent_swaps_serialize(store).await;
}

#[tokio::test]
async fn postgres_concurrent_swaps_serialize() {
    let Some(store) = postgres().await else { return };
    concurrent_swaps_serialize(store).await;
}

#[tokio::test]
async fn sqlite_survives_reopen_and_tokens_expire() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("loch.db").display());
    {
        let store = MetaStore::connect(&url, &StoreOptions::default()).await.unwrap();
        store
            .create_catalog(&NewCatalog { name: "kept".into(), kind: "internal".into(), properties: props(&[]) })
            .await
            .unwrap();
        store
            .insert_token(&loch_meta::TokenRecord {
                token_hash: "h".into(),
                client_id: "c".into(),
                issued_at: 1,
                expires_at: 1000,
            })
            .await
            .unwrap();
        store.close().await;
    }
    let store = MetaStore::connect(&url, &StoreOptions::default()).await.unwrap();
    assert!(store.get_catalog("kept").await.unwrap().is_some());
    assert!(store.find_token("h", 999).await.unwrap().is_some());
    assert!(store.find_token("h", 1000).await.unwrap().is_none());
    assert_eq!(store.purge_expired_tokens(2000).await.unwrap(), 1);
}

#[tokio::test]
async fn bad_urls_are_rejected() {
    let err = MetaStore::connect("mysql://u:secret@h/db", &StoreOptions::default()).await.unwrap_err();
    assert!(matches!(err, MetaError::InvalidUrl(ref u) if !u.contains("secret")), "{err}");
}

async fn optimizing_state(store: MetaStore) {
    use loch_meta::{NewProcess, NewTask, OptimizerRecord, TaskRun};

    // Groups.
    store.create_group("default", &props(&[])).await.unwrap();
    assert!(matches!(store.create_group("default", &props(&[])).await, Err(MetaError::AlreadyExists(_))));
    let g = store.update_group("default", &props(&[("scheduling-policy", "balanced")])).await.unwrap();
    assert_eq!(g.properties["scheduling-policy"], "balanced");
    assert_eq!(store.list_groups().await.unwrap().len(), 1);

    // Optimizers register, heartbeat and leave.
    let optimizer = OptimizerRecord {
        token: "tok".into(),
        group_name: "default".into(),
        kind: "external".into(),
        threads: 2,
        memory_mb: 1024,
        properties: "{}".into(),
        registered_at: 1,
        touched_at: 1,
    };
    store.insert_optimizer(&optimizer).await.unwrap();
    assert!(store.touch_optimizer("tok", 5).await.unwrap());
    assert!(!store.touch_optimizer("nope", 5).await.unwrap());
    assert_eq!(store.list_optimizers(Some("default")).await.unwrap()[0].touched_at, 5);
    assert!(matches!(store.delete_group("default").await, Err(MetaError::NotEmpty(_))));

    // A runtime moves only from the status it is expected in.
    let cat = store
        .create_catalog(&NewCatalog { name: "c".into(), kind: "internal".into(), properties: props(&[]) })
        .await
        .unwrap();
    store.create_namespace(cat.id, &levels(&["n"]), &props(&[])).await.unwrap();
    let t = store.insert_table(&new_table(cat.id, &["n"], "t", TableKind::Table)).await.unwrap();
    let rt = store.ensure_runtime(t.id, "default", "idle").await.unwrap();
    assert_eq!(rt.status, "idle");
    assert_eq!(
        store.ensure_runtime(t.id, "other", "idle").await.unwrap().group_name,
        "default",
        "ensure keeps the existing row"
    );
    let mut pending = rt.clone();
    pending.status = "pending".into();
    pending.pending_input = Some("{\"files\":3}".into());
    assert!(store.update_runtime(&pending, "idle").await.unwrap());
    assert!(!store.update_runtime(&pending, "idle").await.unwrap(), "second mover loses");
    let named = store.list_runtimes(Some("default")).await.unwrap();
    assert_eq!(
        (named[0].catalog.as_str(), named[0].table.as_str(), named[0].runtime.status.as_str()),
        ("c", "t", "pending")
    );

    // A process begins atomically with its tasks and the runtime move.
    let process = NewProcess {
        table_id: t.id,
        kind: "optimizing".into(),
        process_type: "minor".into(),
        status: "running".into(),
        group_name: "default".into(),
        target_snapshot_id: Some(7),
        summary: "{}".into(),
    };
    let tasks: Vec<NewTask> = (0..2)
        .map(|i| NewTask {
            task_id: i,
            status: "planned".into(),
            partition_name: "p".into(),
            input: "{}".into(),
            input_files: 3,
            input_bytes: 30,
        })
        .collect();
    let mut minor = pending.clone();
    minor.status = "minor".into();
    assert!(matches!(store.begin_process(&process, &tasks, &minor, "idle").await, Err(MetaError::Conflict(_))));
    assert!(store.running_processes().await.unwrap().is_empty(), "a failed begin leaves nothing");
    let pid = store.begin_process(&process, &tasks, &minor, "pending").await.unwrap();
    assert_eq!(store.get_runtime(t.id).await.unwrap().unwrap().process_id, Some(pid));
    assert_eq!(store.group_tasks("default", &["planned"]).await.unwrap().len(), 2);

    // Task transitions are compare-and-set on status and attempt.
    let mut task = store.get_task(pid, 0).await.unwrap().unwrap();
    task.status = "scheduled".into();
    task.attempt = 1;
    task.optimizer_token = Some("tok".into());
    assert!(store.update_task(&task, "planned", 0, None).await.unwrap());
    assert!(!store.update_task(&task, "planned", 0, None).await.unwrap(), "a second claim loses");
    task.status = "success".into();
    task.output = Some("{}".into());
    let run = TaskRun { table_id: t.id, started_at: 10, ended_at: 20 };
    assert!(store.update_task(&task, "scheduled", 1, Some(run)).await.unwrap());
    assert_eq!(store.task_runs_since(15).await.unwrap(), vec![run]);
    assert!(store.task_runs_since(21).await.unwrap().is_empty());

    // Finishing the process cancels what is left and frees the runtime.
    let mut finished = store.get_process(pid).await.unwrap().unwrap();
    finished.status = "closed".into();
    finished.finished_at = Some(30);
    finished.fail_message = Some("canceled".into());
    let mut idle = store.get_runtime(t.id).await.unwrap().unwrap();
    idle.status = "idle".into();
    idle.process_id = None;
    store.finish_process(&finished, "running", ["success", "canceled"], &idle, "minor").await.unwrap();
    assert!(matches!(
        store.finish_process(&finished, "running", ["success", "canceled"], &idle, "minor").await,
        Err(MetaError::Conflict(_))
    ));
    let tasks = store.list_tasks(pid).await.unwrap();
    assert_eq!(tasks.iter().map(|t| t.status.as_str()).collect::<Vec<_>>(), vec!["success", "canceled"]);
    assert_eq!(store.list_processes(t.id, 10).await.unwrap()[0].status, "closed");
    assert_eq!(store.purge_history(31).await.unwrap(), 1);
    assert!(store.list_processes(t.id, 10).await.unwrap().is_empty());

    // Dropping the table drops its runtime.
    store.delete_table(t.id, t.version, None).await.unwrap();
    assert!(store.get_runtime(t.id).await.unwrap().is_none());
    assert!(store.delete_optimizer("tok").await.unwrap());
    store.delete_group("default").await.unwrap();
}

#[tokio::test]
async fn sqlite_optimizing_state() {
    let (store, _dir) = sqlite().await;
    optimizing_state(store).await;
}

#[tokio::test]
async fn postgres_optimizing_state() {
    let Some(store) = postgres().await else { return };
    optimizing_state(store).await;
}

/// Samples are kept in time order, a second one at the same moment is dropped, and old ones
/// go when a new one is recorded.
async fn totals_samples(store: MetaStore) {
    let sample = |at, bytes, files| TotalsSample { at, bytes, files };
    store.record_sample(sample(1_000, 10, 1), 0).await.unwrap();
    store.record_sample(sample(3_000, 30, 3), 0).await.unwrap();
    store.record_sample(sample(2_000, 20, 2), 0).await.unwrap();
    store.record_sample(sample(2_000, 99, 9), 0).await.unwrap();
    assert_eq!(
        store.samples_since(0).await.unwrap(),
        [sample(1_000, 10, 1), sample(2_000, 20, 2), sample(3_000, 30, 3)]
    );
    assert_eq!(store.samples_since(2_000).await.unwrap(), [sample(3_000, 30, 3)]);
    store.record_sample(sample(4_000, 40, 4), 2_500).await.unwrap();
    assert_eq!(store.samples_since(0).await.unwrap(), [sample(3_000, 30, 3), sample(4_000, 40, 4)]);
}

#[tokio::test]
async fn sqlite_totals_samples() {
    let (store, _dir) = sqlite().await;
    totals_samples(store).await;
}

#[tokio::test]
async fn postgres_totals_samples() {
    let Some(store) = postgres().await else { return };
    totals_samples(store).await;
}
