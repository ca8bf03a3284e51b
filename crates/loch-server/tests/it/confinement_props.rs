//! A property test of the storage policy: random sequences of REST operations on two catalogs
//! (create, staged create, register of dropped and forged metadata, location-like properties,
//! set-location, statistics, appends, views, rename, drop with and without purge). After every
//! operation, no file outside the acting table's location was created, changed or removed, every
//! file a live table references still exists, and no request answered 5xx.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use iceberg::{Catalog, TableIdent};
use loch_table::location::Location;
use loch_testkit::data::{append, data_file_paths};
use proptest::prelude::*;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Backend, Storage, TestServer, call};
use crate::confinement::fingerprint;
use crate::rest_catalog::batch;

/// Where an operation points a location or a file.
#[derive(Debug, Clone)]
enum Place {
    /// No location: the catalog picks one (or a fresh place in the own warehouse).
    Default,
    /// A fresh directory in the acting catalog's warehouse, spelled `file:/` or `file:///`.
    Fresh(u8, bool),
    /// Another table's location, or inside it.
    OtherTable(u8, bool),
    /// Inside the other catalog's warehouse.
    OtherWarehouse,
    /// Outside every warehouse (the sentinel).
    Outside,
    /// Inside the own warehouse on paper, outside with `..`.
    DotDot,
    /// Not a location at all.
    Garbage(u8),
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        catalog: usize,
        table: u8,
        place: Place,
        stage: bool,
    },
    /// Register dropped metadata, or a forged file whose log and statistics name foreign files;
    /// then maybe expire its metadata log (delete-after-commit) or purge it.
    Register {
        catalog: usize,
        table: u8,
        forged: bool,
        then: u8,
    },
    SetPath {
        catalog: usize,
        table: u8,
        key: u8,
        place: Place,
    },
    SetLocation {
        catalog: usize,
        table: u8,
        place: Place,
    },
    SetStatistics {
        catalog: usize,
        table: u8,
        place: Place,
    },
    DeleteAfterCommit {
        catalog: usize,
        table: u8,
    },
    Append {
        catalog: usize,
        table: u8,
    },
    View {
        catalog: usize,
        view: u8,
        place: Place,
        update: bool,
    },
    Rename {
        catalog: usize,
        from: u8,
        to: u8,
    },
    Drop {
        catalog: usize,
        table: u8,
        purge: bool,
    },
}

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![
        3 => Just(Place::Default),
        2 => (0u8..4, any::<bool>()).prop_map(|(k, single)| Place::Fresh(k, single)),
        2 => (0u8..3, any::<bool>()).prop_map(|(t, inner)| Place::OtherTable(t, inner)),
        1 => Just(Place::OtherWarehouse),
        2 => Just(Place::Outside),
        1 => Just(Place::DotDot),
        1 => (0u8..3).prop_map(Place::Garbage),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0usize..2;
    // t2 exists only when a case creates it; most operations act on the two tables every case starts with.
    let t = prop_oneof![4 => 0u8..2, 1 => Just(2u8)];
    prop_oneof![
        4 => (c.clone(), t.clone(), place(), any::<bool>())
            .prop_map(|(catalog, table, place, stage)| Op::Create { catalog, table, place, stage }),
        3 => (c.clone(), t.clone(), any::<bool>(), 0u8..3)
            .prop_map(|(catalog, table, forged, then)| Op::Register { catalog, table, forged, then }),
        3 => (c.clone(), t.clone(), 0u8..4, place())
            .prop_map(|(catalog, table, key, place)| Op::SetPath { catalog, table, key, place }),
        2 => (c.clone(), t.clone(), place()).prop_map(|(catalog, table, place)| Op::SetLocation { catalog, table, place }),
        2 => (c.clone(), t.clone(), place()).prop_map(|(catalog, table, place)| Op::SetStatistics { catalog, table, place }),
        1 => (c.clone(), t.clone()).prop_map(|(catalog, table)| Op::DeleteAfterCommit { catalog, table }),
        3 => (c.clone(), t.clone()).prop_map(|(catalog, table)| Op::Append { catalog, table }),
        2 => (c.clone(), 0u8..2, place(), any::<bool>())
            .prop_map(|(catalog, view, place, update)| Op::View { catalog, view, place, update }),
        1 => (c.clone(), t.clone(), t.clone()).prop_map(|(catalog, from, to)| Op::Rename { catalog, from, to }),
        2 => (c, t, any::<bool>()).prop_map(|(catalog, table, purge)| Op::Drop { catalog, table, purge }),
    ]
}

const CATALOGS: [&str; 2] = ["local", "c2"];
const PATH_KEYS: [&str; 4] =
    ["write.data.path", "write.metadata.path", "write.object-storage.path", "write.folder-storage.path"];

/// Two catalogs, a place outside both, and what was dropped without purge (for registers).
struct World {
    server: TestServer,
    root: tempfile::TempDir,
    warehouses: [PathBuf; 2],
    outside: PathBuf,
    dropped: Vec<(usize, String)>,
    counter: u32,
}

impl World {
    async fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("sentinel"), b"keep").unwrap();
        let wh1 = root.path().join("wh1");
        let wh2 = root.path().join("wh2");
        let w1 = wh1.clone();
        let server = TestServer::start_configured(Backend::Sqlite, Storage::File, false, move |config| {
            config.catalog.default_warehouse = format!("file://{}", w1.display());
            config.catalog.purge_wait = std::time::Duration::from_secs(30);
        })
        .await
        .unwrap();
        server.add_file_catalog("c2", &wh2).await;
        for catalog in CATALOGS {
            let (status, body) = call(&server, Method::POST, &ns(catalog), Some(json!({"namespace": ["db"]}))).await;
            assert_eq!(status, 200, "{body}");
        }
        Self { server, root, warehouses: [wh1, wh2], outside, dropped: Vec::new(), counter: 0 }
    }

    fn fresh(&mut self) -> u32 {
        self.counter += 1;
        self.counter
    }

    async fn location(&self, catalog: usize, kind: &str, name: &str) -> Option<String> {
        let (status, body) =
            call(&self.server, Method::GET, &format!("{}/db/{kind}/{name}", ns(CATALOGS[catalog])), None).await;
        (status == 200).then(|| body["metadata"]["location"].as_str().unwrap_or_default().to_string())
    }

    async fn place(&mut self, catalog: usize, place: &Place) -> Option<String> {
        let warehouse = self.warehouses[catalog].display().to_string();
        Some(match place {
            Place::Default => return None,
            Place::Fresh(k, single) => {
                let n = self.fresh();
                if *single {
                    format!("file:{warehouse}/db/p{k}-{n}")
                } else {
                    format!("file://{warehouse}/db/p{k}-{n}")
                }
            }
            Place::OtherTable(t, inner) => {
                let location = self.location(catalog, "tables", &format!("t{t}")).await?;
                if *inner { format!("{location}/inner") } else { location }
            }
            Place::OtherWarehouse => format!("file://{}/db/x", self.warehouses[1 - catalog].display()),
            Place::Outside => format!("file://{}", self.outside.display()),
            Place::DotDot => format!("file://{warehouse}/db/../../outside"),
            Place::Garbage(0) => String::new(),
            Place::Garbage(1) => "relative/dir".into(),
            Place::Garbage(_) => "hdfs://nn/x".into(),
        })
    }

    /// A file at `place`: a statistics or log entry a hostile metadata file may name.
    async fn file_at(&mut self, catalog: usize, place: &Place) -> String {
        match place {
            Place::Outside => format!("file://{}/sentinel", self.outside.display()),
            Place::OtherTable(t, _) => {
                let (status, body) =
                    call(&self.server, Method::GET, &format!("{}/db/tables/t{t}", ns(CATALOGS[catalog])), None).await;
                if status == 200 {
                    body["metadata-location"].as_str().unwrap_or_default().to_string()
                } else {
                    format!("file://{}/sentinel", self.outside.display())
                }
            }
            other => match self.place(catalog, other).await {
                Some(location) => format!("{location}/stats.puffin"),
                None => format!("file://{}/sentinel", self.outside.display()),
            },
        }
    }

    async fn commit(&self, catalog: usize, table: u8, updates: Value) -> u16 {
        let path = format!("{}/db/tables/t{table}", ns(CATALOGS[catalog]));
        call(&self.server, Method::POST, &path, Some(json!({"requirements": [], "updates": updates}))).await.0
    }

    /// Runs `op`; returns the statuses it got and the locations it may touch.
    async fn run(&mut self, op: &Op) -> (Vec<u16>, Vec<String>) {
        let mut statuses = Vec::new();
        let mut acting = Vec::new();
        match op {
            Op::Create { catalog, table, place, stage } => {
                let location = self.place(*catalog, place).await;
                let mut body = json!({"name": format!("t{table}"), "schema": schema(), "stage-create": stage});
                if let Some(location) = &location {
                    body["location"] = json!(location);
                }
                let (status, answer) =
                    call(&self.server, Method::POST, &format!("{}/db/tables", ns(CATALOGS[*catalog])), Some(body))
                        .await;
                statuses.push(status);
                if status == 200 {
                    let location = answer["metadata"]["location"].as_str().unwrap_or_default().to_string();
                    acting.push(location);
                    if *stage {
                        // The create transaction of a staged create.
                        let metadata = &answer["metadata"];
                        let commit = json!({
                        "requirements": [{"type": "assert-create"}],
                        "updates": [
                            {"action": "assign-uuid", "uuid": metadata["table-uuid"]},
                            {"action": "upgrade-format-version", "format-version": 2},
                            {"action": "add-schema", "schema": metadata["schemas"][0]},
                            {"action": "set-current-schema", "schema-id": -1},
                            {"action": "add-spec", "spec": metadata["partition-specs"][0]},
                            {"action": "set-default-spec", "spec-id": -1},
                            {"action": "add-sort-order", "sort-order": metadata["sort-orders"][0]},
                            {"action": "set-default-sort-order", "sort-order-id": -1},
                            {"action": "set-location", "location": metadata["location"]},
                            {"action": "set-properties", "updates": metadata["properties"]},
                        ]});
                        let path = format!("{}/db/tables/t{table}", ns(CATALOGS[*catalog]));
                        statuses.push(call(&self.server, Method::POST, &path, Some(commit)).await.0);
                    }
                }
            }
            Op::Register { catalog, table, forged, then } => {
                let name = format!("t{table}");
                let metadata_location = if *forged {
                    self.forge(*catalog).await
                } else {
                    match self.dropped.iter().position(|(c, _)| c == catalog) {
                        Some(i) => self.dropped.remove(i).1,
                        None => return (statuses, acting),
                    }
                };
                if let Some(dir) = Location::parse(&metadata_location)
                    .ok()
                    .and_then(|l| l.local_path().and_then(|p| p.parent().and_then(Path::parent).map(Path::to_path_buf)))
                {
                    acting.push(format!("file://{}", dir.display()));
                }
                let path = format!("{}/db/register", ns(CATALOGS[*catalog]));
                let body = json!({"name": name, "metadata-location": metadata_location});
                let status = call(&self.server, Method::POST, &path, Some(body)).await.0;
                statuses.push(status);
                if status == 200 && *then == 1 {
                    let (more, _) =
                        Box::pin(self.run(&Op::DeleteAfterCommit { catalog: *catalog, table: *table })).await;
                    statuses.extend(more);
                } else if status == 200 && *then == 2 {
                    let (more, _) =
                        Box::pin(self.run(&Op::Drop { catalog: *catalog, table: *table, purge: true })).await;
                    statuses.extend(more);
                }
            }
            Op::SetPath { catalog, table, key, place } => {
                acting.extend(self.location(*catalog, "tables", &format!("t{table}")).await);
                let value = match self.place(*catalog, place).await {
                    Some(value) => value,
                    None => self.place(*catalog, &Place::Fresh(0, false)).await.unwrap_or_default(),
                };
                let updates = json!([{"action": "set-properties", "updates": {PATH_KEYS[*key as usize % 4]: value}}]);
                statuses.push(self.commit(*catalog, *table, updates).await);
            }
            Op::SetLocation { catalog, table, place } => {
                acting.extend(self.location(*catalog, "tables", &format!("t{table}")).await);
                let target = match self.place(*catalog, place).await {
                    Some(target) => target,
                    None => {
                        let n = self.fresh();
                        format!("file://{}/db/moved-{n}", self.warehouses[*catalog].display())
                    }
                };
                acting.push(target.clone());
                statuses
                    .push(self.commit(*catalog, *table, json!([{"action": "set-location", "location": target}])).await);
            }
            Op::SetStatistics { catalog, table, place } => {
                let name = format!("t{table}");
                let (status, body) =
                    call(&self.server, Method::GET, &format!("{}/db/tables/{name}", ns(CATALOGS[*catalog])), None)
                        .await;
                let Some(snapshot) =
                    (status == 200).then(|| body["metadata"]["current-snapshot-id"].as_i64()).flatten()
                else {
                    return (statuses, acting);
                };
                acting.extend(self.location(*catalog, "tables", &name).await);
                let path = self.file_at(*catalog, place).await;
                let updates = json!([{"action": "set-statistics", "statistics": {"snapshot-id": snapshot,
                    "statistics-path": path, "file-size-in-bytes": 4, "file-footer-size-in-bytes": 4, "blob-metadata": []}}]);
                statuses.push(self.commit(*catalog, *table, updates).await);
            }
            Op::DeleteAfterCommit { catalog, table } => {
                acting.extend(self.location(*catalog, "tables", &format!("t{table}")).await);
                for round in 0..3 {
                    let updates = json!([{"action": "set-properties", "updates": {
                        "write.metadata.delete-after-commit.enabled": "true",
                        "write.metadata.previous-versions-max": "1", "round": round.to_string()}}]);
                    statuses.push(self.commit(*catalog, *table, updates).await);
                }
            }
            Op::Append { catalog, table } => {
                let client = self.server.rest_catalog_for(CATALOGS[*catalog]).await;
                let ident = TableIdent::from_strs(["db", &format!("t{table}")]).unwrap();
                if let Ok(loaded) = client.load_table(&ident).await {
                    acting.push(loaded.metadata().location().to_string());
                    if loaded.metadata().current_schema().field_by_name("category").is_some() {
                        let appended = append(&client, &loaded, &batch(&loaded, &[1, 2], "x")).await;
                        statuses.push(if appended.is_ok() { 200 } else { 409 });
                    }
                }
            }
            Op::View { catalog, view, place, update } => {
                let name = format!("v{view}");
                let location = self.place(*catalog, place).await;
                if *update {
                    acting.extend(self.location(*catalog, "views", &name).await);
                    let target = match location {
                        Some(target) => target,
                        None => self.place(*catalog, &Place::Fresh(1, true)).await.unwrap_or_default(),
                    };
                    acting.push(target.clone());
                    let path = format!("{}/db/views/{name}", ns(CATALOGS[*catalog]));
                    let body = json!({"requirements": [], "updates": [{"action": "set-location", "location": target}]});
                    statuses.push(call(&self.server, Method::POST, &path, Some(body)).await.0);
                } else {
                    let mut body = json!({"name": name, "schema": schema(), "properties": {},
                        "view-version": {"version-id": 1, "timestamp-ms": 1, "schema-id": 0, "summary": {},
                            "representations": [{"type": "sql", "sql": "select 1", "dialect": "spark"}], "default-namespace": ["db"]}});
                    if let Some(location) = &location {
                        body["location"] = json!(location);
                    }
                    let path = format!("{}/db/views", ns(CATALOGS[*catalog]));
                    let (status, answer) = call(&self.server, Method::POST, &path, Some(body)).await;
                    statuses.push(status);
                    if status == 200 {
                        acting.push(answer["metadata"]["location"].as_str().unwrap_or_default().to_string());
                    }
                }
            }
            Op::Rename { catalog, from, to } => {
                let body = json!({"source": {"namespace": ["db"], "name": format!("t{from}")},
                    "destination": {"namespace": ["db"], "name": format!("t{to}")}});
                let path = format!("/api/iceberg/rest/v1/catalogs/{}/tables/rename", CATALOGS[*catalog]);
                statuses.push(call(&self.server, Method::POST, &path, Some(body)).await.0);
            }
            Op::Drop { catalog, table, purge } => {
                let path = format!("{}/db/tables/t{table}", ns(CATALOGS[*catalog]));
                let (status, body) = call(&self.server, Method::GET, &path, None).await;
                if status == 200 {
                    acting.push(body["metadata"]["location"].as_str().unwrap_or_default().to_string());
                    if !purge {
                        self.dropped.push((*catalog, body["metadata-location"].as_str().unwrap_or_default().into()));
                    }
                }
                statuses
                    .push(call(&self.server, Method::DELETE, &format!("{path}?purgeRequested={purge}"), None).await.0);
            }
        }
        (statuses, acting)
    }

    /// A metadata file in a fresh directory of `catalog`'s warehouse that is a copy of a live
    /// table's, with its log and statistics naming other tables' files and the sentinel.
    async fn forge(&mut self, catalog: usize) -> String {
        let n = self.fresh();
        let dir = self.warehouses[catalog].join(format!("db/forged-{n}"));
        let location = format!("file://{}", dir.display());
        let mut metadata = None;
        let mut foreign = vec![format!("file://{}/sentinel", self.outside.display())];
        for name in CATALOGS {
            for t in 0..3 {
                let path = format!("{}/db/tables/t{t}", ns(name));
                let (status, body) = call(&self.server, Method::GET, &path, None).await;
                if status == 200 {
                    foreign.push(body["metadata-location"].as_str().unwrap_or_default().to_string());
                    metadata.get_or_insert(body["metadata"].clone());
                }
            }
        }
        let mut metadata = metadata.unwrap_or_else(|| json!({}));
        metadata["location"] = json!(location);
        let log: Vec<Value> = foreign.iter().map(|f| json!({"metadata-file": f, "timestamp-ms": 1})).collect();
        metadata["metadata-log"] = json!(log);
        if let Some(snapshot) = metadata["current-snapshot-id"].as_i64().filter(|id| *id >= 0) {
            metadata["statistics"] = json!([{"snapshot-id": snapshot, "statistics-path": foreign[0],
                "file-size-in-bytes": 4, "file-footer-size-in-bytes": 4, "blob-metadata": []}]);
        }
        std::fs::create_dir_all(dir.join("metadata")).unwrap();
        let file = dir.join("metadata/00001-forged.metadata.json");
        std::fs::write(&file, metadata.to_string()).unwrap();
        format!("file://{}", file.display())
    }

    /// Every file inside its own location that a live table of either catalog references (a
    /// registered metadata file may reference other tables' files; those are theirs to delete).
    async fn referenced(&self) -> BTreeSet<String> {
        let mut files = BTreeSet::new();
        for catalog in CATALOGS {
            let client = self.server.rest_catalog_for(catalog).await;
            for t in 0..3 {
                let ident = TableIdent::from_strs(["db", &format!("t{t}")]).unwrap();
                let Ok(table) = client.load_table(&ident).await else { continue };
                let Ok(own) = Location::parse(table.metadata().location()) else { continue };
                let mut referenced: Vec<String> = table.metadata_location().map(str::to_string).into_iter().collect();
                referenced.extend(table.metadata().snapshots().map(|s| s.manifest_list().to_string()));
                let readable = table.metadata().snapshots().all(|s| own.contains_str(s.manifest_list()));
                if readable && table.metadata().current_snapshot().is_some() {
                    referenced.extend(data_file_paths(&table).await.unwrap_or_else(|e| panic!("{catalog}.t{t}: {e}")));
                }
                files.extend(referenced.into_iter().filter(|f| own.contains_str(f)));
            }
        }
        files
    }
}

fn ns(catalog: &str) -> String {
    format!("/api/iceberg/rest/v1/catalogs/{catalog}/namespaces")
}

fn schema() -> Value {
    json!({"type": "struct", "schema-id": 0, "fields": [
        {"id": 1, "name": "id", "type": "long", "required": true},
        {"id": 2, "name": "category", "type": "string", "required": false},
        {"id": 3, "name": "value", "type": "double", "required": false}]})
}

fn local(uri: &str) -> Option<PathBuf> {
    Location::parse(uri).ok().and_then(|l| l.local_path())
}

/// Files (not directories) whose content or presence differs.
fn changed_files(
    before: &BTreeMap<PathBuf, (bool, u64, std::time::SystemTime)>,
    after: &BTreeMap<PathBuf, (bool, u64, std::time::SystemTime)>,
) -> Vec<PathBuf> {
    let keys: BTreeSet<&PathBuf> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| {
            let is_dir = before.get(*k).or(after.get(*k)).is_some_and(|e| e.0);
            !is_dir && before.get(*k) != after.get(*k)
        })
        .cloned()
        .collect()
}

async fn run_case(ops: Vec<Op>, tally: &std::sync::Mutex<BTreeMap<String, usize>>) -> Result<(), TestCaseError> {
    let mut world = World::new().await;
    let outside_before = fingerprint(&world.outside);
    // Every case starts from two tables per catalog, one with data, then does random things.
    let mut start = Vec::new();
    for catalog in 0..2 {
        for table in 0..2 {
            start.push(Op::Create { catalog, table, place: Place::Default, stage: table == 1 });
        }
        start.push(Op::Append { catalog, table: 0 });
    }
    for (i, op) in start.iter().chain(&ops).enumerate() {
        let before = fingerprint(world.root.path());
        let (statuses, acting) = world.run(op).await;
        if let Ok(mut tally) = tally.lock() {
            let kind = format!("{op:?}").split([' ', '{']).next().unwrap_or_default().to_string();
            for status in &statuses {
                *tally.entry(format!("{kind} {status}")).or_default() += 1;
            }
        }
        prop_assert!(statuses.iter().all(|s| *s < 500), "op {i} {op:?} answered {statuses:?}");
        let after = fingerprint(world.root.path());
        let allowed: Vec<PathBuf> = acting.iter().filter_map(|a| local(a)).collect();
        for path in changed_files(&before, &after) {
            prop_assert!(
                allowed.iter().any(|a| path.starts_with(a)),
                "op {i} {op:?} touched {} outside {allowed:?}",
                path.display()
            );
        }
        prop_assert_eq!(&fingerprint(&world.outside), &outside_before, "op {} {:?} touched the outside", i, op);
        for file in world.referenced().await {
            if let Some(path) = local(&file) {
                prop_assert!(path.exists(), "op {i} {op:?} lost {file}, which a live table references");
            }
        }
    }
    Ok(())
}

#[test]
fn random_operations_stay_inside_the_acting_table() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cases = std::env::var("LOCH_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48);
    let config = ProptestConfig { cases, failure_persistence: None, max_shrink_iters: 64, ..ProptestConfig::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = proptest::collection::vec(op(), 6..16);
    let tally = std::sync::Mutex::new(BTreeMap::new());
    let result = runner.run(&strategy, |ops| runtime.block_on(run_case(ops, &tally)));
    eprintln!("operations by answer: {:?}", tally.lock().map(|t| t.clone()).unwrap_or_default());
    if let Err(e) = result {
        panic!("{e}");
    }
}
