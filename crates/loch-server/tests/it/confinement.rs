//! Attacks on the catalog's storage, written the way a hostile client would try them: every
//! request that could make the server read, write or delete outside a table's own location, hang,
//! or answer 5xx. Sentinel files outside the warehouse and two victim tables (one in another
//! catalog) must come through untouched, and the victims must load after a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};
use loch_testkit::data::{append, rows, scan_all};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Backend, Storage, TestServer, call, simple_schema};
use crate::rest_catalog::batch;

/// Files and directories under `dir` with their size and modification time.
pub fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, (bool, u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.insert(path, (meta.is_dir(), meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH)));
        }
    }
    out
}

/// The server, the places it must not touch, and two victim tables.
struct Scene {
    server: TestServer,
    _root: tempfile::TempDir,
    /// Outside every warehouse: sentinel files live here.
    outside: PathBuf,
    sentinel: PathBuf,
    /// Warehouse of the second catalog `c2`.
    wh2: PathBuf,
    victim_rows: Vec<BTreeMap<String, String>>,
    victim2_rows: Vec<BTreeMap<String, String>>,
}

const NS: &str = "/api/iceberg/rest/v1/catalogs/local/namespaces";
const NS2: &str = "/api/iceberg/rest/v1/catalogs/c2/namespaces";

fn schema_json() -> Value {
    json!({"type": "struct", "schema-id": 0, "fields": [{"id": 1, "name": "id", "type": "long", "required": true}]})
}

impl Scene {
    async fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let sentinel = outside.join("sentinel.txt");
        std::fs::write(&sentinel, b"do not touch").unwrap();
        let wh2 = root.path().join("wh2");
        let server = TestServer::start_configured(Backend::Sqlite, Storage::File, false, |config| {
            config.catalog.purge_wait = Duration::from_secs(30);
        })
        .await
        .unwrap();
        server.add_file_catalog("c2", &wh2).await;

        // Victims: a table with data in each catalog.
        let mut victims = Vec::new();
        for catalog_name in ["local", "c2"] {
            let catalog = server.rest_catalog_for(catalog_name).await;
            let ns = NamespaceIdent::new("db".into());
            catalog.create_namespace(&ns, Default::default()).await.unwrap();
            let creation = TableCreation::builder().name("victim".into()).schema(simple_schema()).build();
            let table = catalog.create_table(&ns, creation).await.unwrap();
            let table = append(&catalog, &table, &batch(&table, &[1, 2, 3], "v")).await.unwrap();
            victims.push(rows(&scan_all(&table).await.unwrap()));
        }
        let (victim2_rows, victim_rows) = (victims.pop().unwrap(), victims.pop().unwrap());
        Self { server, _root: root, outside, sentinel, wh2, victim_rows, victim2_rows }
    }

    fn outside_uri(&self, rest: &str) -> String {
        format!("file://{}/{rest}", self.outside.display())
    }

    /// A REST request that must be refused with a 4xx ErrorModel (never 5xx).
    async fn refused(&self, method: Method, path: &str, body: Option<Value>, status: u16) -> String {
        let (got, answer) = call(&self.server, method.clone(), path, body.clone()).await;
        assert_eq!(got, status, "{method} {path} {body:?}: {answer}");
        answer["error"]["message"].as_str().unwrap_or_default().to_string()
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (got, answer) = call(&self.server, method.clone(), path, body.clone()).await;
        assert!(got < 300, "{method} {path} {body:?}: {got} {answer}");
        answer
    }

    async fn create(&self, name: &str, extra: Value) -> Value {
        let mut body = json!({"name": name, "schema": schema_json()});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        self.ok(Method::POST, &format!("{NS}/db/tables"), Some(body)).await
    }

    async fn commit(&self, table: &str, updates: Value) -> (u16, Value) {
        call(
            &self.server,
            Method::POST,
            &format!("{NS}/db/tables/{table}"),
            Some(json!({"requirements": [], "updates": updates})),
        )
        .await
    }

    /// Sentinels, victims and the outside directory are exactly as they were.
    async fn assert_unharmed(&self, outside_before: &BTreeMap<PathBuf, (bool, u64, std::time::SystemTime)>) {
        assert_eq!(std::fs::read(&self.sentinel).unwrap(), b"do not touch");
        assert_eq!(&fingerprint(&self.outside), outside_before, "nothing outside the warehouses changed");
        let local = self.server.rest_catalog().await;
        let victim = local.load_table(&TableIdent::from_strs(["db", "victim"]).unwrap()).await.unwrap();
        assert_eq!(rows(&scan_all(&victim).await.unwrap()), self.victim_rows);
        let c2 = self.server.rest_catalog_for("c2").await;
        let victim2 = c2.load_table(&TableIdent::from_strs(["db", "victim"]).unwrap()).await.unwrap();
        assert_eq!(rows(&scan_all(&victim2).await.unwrap()), self.victim2_rows);
    }

    /// The current metadata location and JSON of a table of `local`.
    async fn metadata(&self, table: &str) -> (String, Value) {
        let body = self.ok(Method::GET, &format!("{NS}/db/tables/{table}"), None).await;
        (body["metadata-location"].as_str().unwrap().to_string(), body["metadata"].clone())
    }
}

/// Items 1 and 2 of the attack list: deletes outside the warehouse, through purge and through
/// delete-after-commit, with locations, path properties, statistics and a registered metadata
/// file whose log lists a foreign file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_never_leave_the_table_s_location() {
    let scene = Scene::new().await;
    let before = fingerprint(&scene.outside);
    let outside_dir = scene.outside_uri("dir");

    // A location outside the warehouse, on create and staged create.
    let message = scene
        .refused(
            Method::POST,
            &format!("{NS}/db/tables"),
            Some(json!({"name": "a", "schema": schema_json(), "location": outside_dir})),
            400,
        )
        .await;
    assert!(message.contains("inside the catalog's warehouse"), "{message}");
    scene
        .refused(
            Method::POST,
            &format!("{NS}/db/tables"),
            Some(json!({"name": "a", "schema": schema_json(), "location": "file:///etc", "stage-create": true})),
            400,
        )
        .await;

    // Path properties outside the table, at create and by set-properties.
    for key in ["write.data.path", "write.metadata.path", "write.object-storage.path", "write.folder-storage.path"] {
        let message = scene
            .refused(
                Method::POST,
                &format!("{NS}/db/tables"),
                Some(json!({"name": "a", "schema": schema_json(), "properties": {key: outside_dir}})),
                400,
            )
            .await;
        assert!(message.contains(key), "{message}");
    }
    scene.create("t", json!({})).await;
    for key in ["write.data.path", "write.metadata.path"] {
        let (status, body) =
            scene.commit("t", json!([{"action": "set-properties", "updates": {key: outside_dir}}])).await;
        assert_eq!(status, 400, "{body}");
    }
    // Moving the table out of the warehouse, or onto the victim.
    let victim_location = scene.metadata("victim").await.1["location"].as_str().unwrap().to_string();
    for location in [outside_dir.clone(), victim_location.clone(), format!("{victim_location}/inner")] {
        let (status, body) = scene.commit("t", json!([{"action": "set-location", "location": location}])).await;
        assert_eq!(status, 400, "{location}: {body}");
    }

    // Statistics files outside the table are recorded but never deleted by a purge.
    let (_, metadata) = scene.metadata("t").await;
    let now = chrono_now();
    let (status, body) = scene
        .commit(
            "t",
            json!([
                {"action": "add-snapshot", "snapshot": {"snapshot-id": 11, "sequence-number": 1, "timestamp-ms": now,
                    "manifest-list": format!("{}/metadata/snap-11.avro", metadata["location"].as_str().unwrap()),
                    "summary": {"operation": "append"}, "schema-id": 0}},
                {"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": 11},
                {"action": "set-statistics", "statistics": {"snapshot-id": 11,
                    "statistics-path": format!("file://{}", scene.sentinel.display()),
                    "file-size-in-bytes": 12, "file-footer-size-in-bytes": 4, "blob-metadata": []}},
            ]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    scene.ok(Method::DELETE, &format!("{NS}/db/tables/t?purgeRequested=true"), None).await;

    // A registered metadata file whose metadata log lists a foreign file, then purged.
    let (location, metadata) = scene.create_with_history("r").await;
    let forged = forge(&metadata, &scene.sentinel, &location);
    let forged_path = format!("{location}/metadata/99999-forged.metadata.json");
    std::fs::write(forged_path.strip_prefix("file://").unwrap(), forged.to_string()).unwrap();
    scene.ok(Method::DELETE, &format!("{NS}/db/tables/r"), None).await;
    scene
        .ok(Method::POST, &format!("{NS}/db/register"), Some(json!({"name": "r", "metadata-location": forged_path})))
        .await;
    // Delete-after-commit keeping one version: the foreign log entry falls out of the log.
    for i in 0..3 {
        let (status, body) = scene
            .commit(
                "r",
                json!([{"action": "set-properties", "updates": {
                    "write.metadata.delete-after-commit.enabled": "true",
                    "write.metadata.previous-versions-max": "1", "round": i.to_string()}}]),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    scene.ok(Method::DELETE, &format!("{NS}/db/tables/r?purgeRequested=true"), None).await;
    assert!(!Path::new(location.strip_prefix("file://").unwrap()).exists(), "the purged table's own directory is gone");
    scene.assert_unharmed(&before).await;
}

impl Scene {
    /// A table `name` with a few metadata versions; its location and current metadata.
    async fn create_with_history(&self, name: &str) -> (String, Value) {
        self.create(name, json!({})).await;
        for i in 0..2 {
            let (status, body) =
                self.commit(name, json!([{"action": "set-properties", "updates": {"v": i.to_string()}}])).await;
            assert_eq!(status, 200, "{body}");
        }
        let (_, metadata) = self.metadata(name).await;
        (metadata["location"].as_str().unwrap().to_string(), metadata)
    }
}

/// `metadata` with the sentinel in its metadata log (and a statistics file pointing at it).
fn forge(metadata: &Value, sentinel: &Path, _location: &str) -> Value {
    let mut forged = metadata.clone();
    let sentinel = format!("file://{}", sentinel.display());
    let log = forged["metadata-log"].as_array_mut().unwrap();
    log.insert(0, json!({"metadata-file": sentinel, "timestamp-ms": 1}));
    forged
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Item 3: one table or catalog taking over another's files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_or_catalog_cannot_take_over_another_s_files() {
    let mut scene = Scene::new().await;
    let before = fingerprint(&scene.outside);
    let (victim_metadata, victim) = scene.metadata("victim").await;

    // Register a second table on the victim's metadata: its location is taken.
    let message = scene
        .refused(
            Method::POST,
            &format!("{NS}/db/register"),
            Some(json!({"name": "thief", "metadata-location": victim_metadata})),
            400,
        )
        .await;
    assert!(message.contains("overlaps table local.db.victim"), "{message}");
    // Nor in the other catalog (it lies outside that catalog's warehouse anyway).
    scene
        .refused(
            Method::POST,
            &format!("{NS2}/db/register"),
            Some(json!({"name": "thief", "metadata-location": victim_metadata})),
            400,
        )
        .await;
    // A table inside or around the victim's location.
    let victim_location = victim["location"].as_str().unwrap();
    for location in [victim_location.to_string(), format!("{victim_location}/sub"), format!("{victim_location}/..")] {
        scene
            .refused(
                Method::POST,
                &format!("{NS}/db/tables"),
                Some(json!({"name": "thief", "schema": schema_json(), "location": location})),
                400,
            )
            .await;
    }
    // The same place spelled differently is the same place.
    let spelled = victim_location.replacen("file:///", "file:/", 1);
    scene
        .refused(
            Method::POST,
            &format!("{NS}/db/tables"),
            Some(json!({"name": "thief", "schema": schema_json(), "location": spelled})),
            400,
        )
        .await;
    // A second catalog whose warehouse is, holds, or lies in another's.
    let wh1 = scene.server.warehouse.clone();
    let wh2 = format!("file://{}", scene.wh2.display());
    for warehouse in
        [wh1.clone(), format!("{wh1}/sub"), wh2.clone(), scene.outside_uri("").trim_end_matches('/').to_string()]
    {
        let (status, body) = call(
            &scene.server,
            Method::POST,
            "/api/v1/catalogs",
            Some(json!({"name": "c3", "properties": {"warehouse": warehouse}})),
        )
        .await;
        if warehouse.contains("outside") {
            assert_eq!(status, 201, "a warehouse elsewhere is fine: {body}");
            scene.ok(Method::DELETE, "/api/v1/catalogs/c3", None).await;
        } else {
            assert_eq!(status, 400, "{warehouse}: {body}");
        }
    }
    let parent = Path::new(wh1.strip_prefix("file://").unwrap()).parent().unwrap().display().to_string();
    let (status, body) = call(
        &scene.server,
        Method::PUT,
        "/api/v1/catalogs/c2",
        Some(json!({"properties": {"warehouse": format!("file://{parent}")}})),
    )
    .await;
    assert_eq!(status, 400, "moving a catalog onto another's warehouse: {body}");

    // Everything survives a restart (the metadata cache hid the damage before).
    scene.server.restart().await;
    let local = scene.server.rest_catalog().await;
    let table = local.load_table(&TableIdent::from_strs(["db", "victim"]).unwrap()).await.unwrap();
    assert_eq!(table.metadata_location(), Some(victim_metadata.as_str()));
    scene.assert_unharmed(&before).await;
}

/// Item 4: writes outside the warehouse, through locations of tables and views.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_never_leave_the_warehouse() {
    let scene = Scene::new().await;
    let before = fingerprint(&scene.outside);
    let target = scene.outside.join("x");

    scene
        .refused(
            Method::POST,
            &format!("{NS}/db/tables"),
            Some(json!({"name": "t", "schema": schema_json(), "location": target.display().to_string()})),
            400,
        )
        .await;
    scene.create("t", json!({})).await;
    let (_, metadata) = scene.metadata("t").await;
    let location = metadata["location"].as_str().unwrap().to_string();
    let escape = format!("{location}/../../../../../../../../..{}", target.display());
    let (status, body) =
        scene.commit("t", json!([{"action": "set-properties", "updates": {"write.metadata.path": escape}}])).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = scene
        .commit("t", json!([{"action": "set-properties", "updates": {"write.metadata.path": "relative/dir"}}]))
        .await;
    assert_eq!(status, 400, "a relative path is a client mistake, not a 500: {body}");

    // Views: create outside, move outside, move with `..`, move to "".
    let view = json!({
        "name": "v", "schema": schema_json(),
        "view-version": {"version-id": 1, "timestamp-ms": chrono_now(), "schema-id": 0, "summary": {},
            "representations": [{"type": "sql", "sql": "select 1", "dialect": "spark"}], "default-namespace": ["db"]},
        "properties": {},
    });
    let mut outside_view = view.clone();
    outside_view["location"] = json!(scene.outside_uri("v"));
    scene.refused(Method::POST, &format!("{NS}/db/views"), Some(outside_view), 400).await;
    scene.ok(Method::POST, &format!("{NS}/db/views"), Some(view)).await;
    let v = format!("{NS}/db/views/v");
    for location in [scene.outside_uri("v2"), format!("{location}/../../../{}", target.display()), String::new()] {
        let (status, body) = call(
            &scene.server,
            Method::POST,
            &v,
            Some(json!({"requirements": [], "updates": [{"action": "set-location", "location": location}]})),
        )
        .await;
        assert_eq!(status, 400, "view set-location {location:?}: {body}");
    }
    let mut properties_view = json!({"requirements": [], "updates": [
        {"action": "set-properties", "updates": {"write.metadata.path": scene.outside_uri("vm")}}]});
    let (status, body) = call(&scene.server, Method::POST, &v, Some(properties_view.take())).await;
    assert_eq!(status, 400, "{body}");
    assert!(!target.exists());
    scene.assert_unharmed(&before).await;
}

/// Items 5 and 6: reads that never end, reads as an oracle, and 5xx for client mistakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_bounded_and_mistakes_are_4xx() {
    let mut scene = Scene::new().await;
    let before = fingerprint(&scene.outside);
    let warehouse_dir = PathBuf::from(scene.server.warehouse.strip_prefix("file://").unwrap());
    let db_dir = warehouse_dir.join("db");

    // Outside the warehouse: refused without touching the file, whatever it is.
    let mut messages = Vec::new();
    for path in ["/dev/zero", "/etc/shadow", "/root", "/no/such/file.json"] {
        let started = Instant::now();
        let message = scene
            .refused(
                Method::POST,
                &format!("{NS}/db/register"),
                Some(json!({"name": "r", "metadata-location": format!("file://{path}")})),
                400,
            )
            .await;
        assert!(started.elapsed() < Duration::from_secs(1), "{path} took {:?}", started.elapsed());
        messages.push(message.replace(path, "PATH"));
    }
    assert!(messages.iter().all(|m| *m == messages[0]), "no file oracle: {messages:?}");

    // Inside the warehouse: a FIFO, a link to /dev/zero and a 1 GiB file.
    std::fs::create_dir_all(&db_dir).unwrap();
    let fifo = db_dir.join("fifo.metadata.json");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let zero = db_dir.join("zero.metadata.json");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let big = db_dir.join("big.metadata.json");
    std::fs::File::create(&big).unwrap().set_len(1 << 30).unwrap();
    let rss_before = rss_kib();
    for path in [&fifo, &zero, &big] {
        let started = Instant::now();
        scene
            .refused(
                Method::POST,
                &format!("{NS}/db/register"),
                Some(json!({"name": "r", "metadata-location": format!("file://{}", path.display())})),
                400,
            )
            .await;
        assert!(started.elapsed() < Duration::from_secs(1), "{} took {:?}", path.display(), started.elapsed());
    }
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "memory grew by {grown} KiB reading hostile files");

    // A path too long for any file system: 16 levels of 255 bytes and a long name.
    let levels: Vec<String> = (0..16).map(|i| format!("{i:x}").repeat(255).chars().take(255).collect()).collect();
    for depth in 1..=levels.len() {
        scene.ok(Method::POST, NS, Some(json!({"namespace": levels[..depth]}))).await;
    }
    let encoded = levels.join("%1F");
    let message = scene
        .refused(
            Method::POST,
            &format!("{NS}/{encoded}/tables"),
            Some(json!({"name": "t".repeat(255), "schema": schema_json()})),
            400,
        )
        .await;
    assert!(message.contains("too long"), "{message}");

    // A server fault answers a generic body: no paths, no causes, a request id.
    scene.create("t", json!({})).await;
    let (metadata_location, _) = scene.metadata("t").await;
    scene.server.restart().await; // empty the metadata cache
    std::fs::remove_file(metadata_location.strip_prefix("file://").unwrap()).unwrap();
    let (status, body) = call(&scene.server, Method::GET, &format!("{NS}/db/tables/t"), None).await;
    assert_eq!(status, 500, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("request id") && !message.contains('/'), "{message}");
    scene.assert_unharmed(&before).await;
}

/// Resident memory of this process in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A failed metadata write is a definite failure: 409 at once, no file left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_metadata_write_fails_the_commit_cleanly() {
    let scene = Scene::new().await;
    scene.create("t", json!({})).await;
    let (_, metadata) = scene.metadata("t").await;
    let location = metadata["location"].as_str().unwrap().to_string();
    let local = PathBuf::from(location.strip_prefix("file://").unwrap());
    // The new metadata directory is a plain file: the write of the next metadata file fails.
    std::fs::write(local.join("blocked"), b"not a directory").unwrap();
    let files_before = fingerprint(&local);
    let started = Instant::now();
    let (status, body) = scene
        .commit(
            "t",
            json!([{"action": "set-properties", "updates": {"write.metadata.path": format!("{location}/blocked")}}]),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(2), "no retries for seconds: {:?}", started.elapsed());
    assert_eq!(status, 409, "a definite failure, not 'state unknown': {body}");
    assert_eq!(body["error"]["type"], "CommitFailedException", "{body}");
    let (_, after) = scene.metadata("t").await;
    assert_eq!(after["properties"].get("write.metadata.path"), None, "nothing was committed");
    assert_eq!(fingerprint(&local), files_before, "no file left behind");
    let (status, body) = scene.commit("t", json!([{"action": "set-properties", "updates": {"k": "v"}}])).await;
    assert_eq!(status, 200, "the table still takes commits: {body}");
}

/// A small tmpfs mounted for one test (needs root); unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: PathBuf, size: &str) -> Option<Self> {
        std::fs::create_dir_all(&path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .is_ok_and(|o| o.status.success());
        mounted.then_some(Self { path })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.path).status();
    }
}

/// A full disk fails the commit at once with a 409, leaves no partial metadata file, and the
/// table takes commits again once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_commit_and_leaves_no_partial_file() {
    let root = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(root.path().join("disk"), "256k") else {
        eprintln!(
            "\n==================== SKIPPED ====================\ncannot mount a tmpfs here (not root?): the full-disk test did not run\n=================================================\n"
        );
        return;
    };
    let server = TestServer::start(Backend::Sqlite, Storage::File).await.unwrap();
    let warehouse = format!("file://{}/wh", disk.path.display());
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/v1/catalogs",
        Some(json!({"name": "small", "properties": {"warehouse": warehouse}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let ns = "/api/iceberg/rest/v1/catalogs/small/namespaces";
    assert_eq!(call(&server, Method::POST, ns, Some(json!({"namespace": ["db"]}))).await.0, 200);
    let (status, body) =
        call(&server, Method::POST, &format!("{ns}/db/tables"), Some(json!({"name": "t", "schema": schema_json()})))
            .await;
    assert_eq!(status, 200, "{body}");
    let table_dir = disk.path.join("wh/db/t");
    let before = fingerprint(&table_dir);
    // Fill the disk, then commit metadata bigger than what is left.
    let filler = disk.path.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);
    let big = "x".repeat(64 * 1024);
    let commit = json!({"requirements": [], "updates": [{"action": "set-properties", "updates": {"big": big}}]});
    let started = Instant::now();
    let (status, body) = call(&server, Method::POST, &format!("{ns}/db/tables/t"), Some(commit.clone())).await;
    assert!(started.elapsed() < Duration::from_secs(2), "no retries for seconds: {:?}", started.elapsed());
    assert_eq!(status, 409, "a definite failure: {body}");
    let files = |f: BTreeMap<PathBuf, (bool, u64, std::time::SystemTime)>| {
        f.into_iter().filter(|(_, (dir, ..))| !dir).collect::<BTreeMap<_, _>>()
    };
    assert_eq!(files(fingerprint(&table_dir)), files(before), "no partial or empty metadata file left behind");
    std::fs::remove_file(&filler).unwrap();
    let (status, body) = call(&server, Method::POST, &format!("{ns}/db/tables/t"), Some(commit)).await;
    assert_eq!(status, 200, "room again: {body}");
}

/// A purge cut short by a crash (the drop committed, the files were not deleted yet) is finished
/// by the next start; until then the location is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_finishes_an_interrupted_purge() {
    let mut server = TestServer::start(Backend::Sqlite, Storage::File).await.unwrap();
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::new("db".into());
    catalog.create_namespace(&ns, Default::default()).await.unwrap();
    let table = catalog
        .create_table(&ns, TableCreation::builder().name("t".into()).schema(simple_schema()).build())
        .await
        .unwrap();
    let table = append(&catalog, &table, &batch(&table, &[1, 2], "x")).await.unwrap();
    let location = table.metadata().location().to_string();
    let dir = PathBuf::from(location.strip_prefix("file://").unwrap());
    assert!(dir.join("data").exists() && dir.join("metadata").exists());
    server.stop().await;

    // What a crash right after the drop's commit leaves: no table row, a pending purge.
    let store = loch_meta::MetaStore::connect(&server.database_url(), &Default::default()).await.unwrap();
    let local = store.get_catalog("local").await.unwrap().unwrap();
    let row = store.get_table(local.id, &["db".to_string()], "t").await.unwrap().unwrap();
    let purge = loch_meta::NewPurge {
        catalog_id: local.id,
        table_name: "db.t".into(),
        location: row.location.clone(),
        metadata_location: row.metadata_location.clone(),
    };
    store.delete_table(row.id, row.version, Some(&purge)).await.unwrap();
    assert_eq!(store.pending_purges().await.unwrap().len(), 1);
    // The location is taken while the purge is pending.
    let occupants = store.locations_overlapping(&row.location, None).await.unwrap();
    assert_eq!(occupants.len(), 1, "{occupants:?}");
    store.close().await;
    assert!(dir.exists(), "nothing deleted yet");

    server.start_again().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while dir.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!dir.exists(), "the restarted server purged the table's directory");
    let store = loch_meta::MetaStore::connect(&server.database_url(), &Default::default()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !store.pending_purges().await.unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(store.pending_purges().await.unwrap().is_empty(), "the purge is recorded as done");
    // The name and the place are free again.
    let table = catalog
        .create_table(&ns, TableCreation::builder().name("t".into()).schema(simple_schema()).build())
        .await
        .unwrap();
    assert_eq!(table.metadata().location(), location);
}

/// A purge that cannot finish (here: a mount point inside the table's directory) is listed with
/// its failure, and keeps its location taken until it succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_purge_is_listed_and_keeps_its_location() {
    let server = TestServer::start(Backend::Sqlite, Storage::File).await.unwrap();
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::new("db".into());
    catalog.create_namespace(&ns, Default::default()).await.unwrap();
    let creation = TableCreation::builder().name("t".into()).schema(simple_schema()).build();
    let table = catalog.create_table(&ns, creation).await.unwrap();
    let table = append(&catalog, &table, &batch(&table, &[1], "x")).await.unwrap();
    let location = table.metadata().location().to_string();
    let dir = PathBuf::from(location.strip_prefix("file://").unwrap());
    let Some(_mount) = SmallDisk::mount(dir.join("data/busy"), "64k") else {
        eprintln!(
            "\n==================== SKIPPED ====================\ncannot mount a tmpfs here (not root?): the failing-purge test did not run\n=================================================\n"
        );
        return;
    };
    let (status, body) = call(&server, Method::DELETE, &format!("{NS}/db/tables/t?purgeRequested=true"), None).await;
    assert_eq!(status, 204, "the drop itself succeeds: {body}");
    let (status, purges) = call(&server, Method::GET, "/api/v1/catalogs/local/purges", None).await;
    assert_eq!(status, 200, "{purges}");
    let purge = &purges[0];
    assert_eq!((purge["table"].as_str(), purge["attempts"].as_i64()), (Some("db.t"), Some(1)), "{purges}");
    assert!(purge["lastError"].as_str().unwrap_or_default().contains("busy"), "{purges}");
    // Its place is taken: neither the same default location nor an explicit one inside it.
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("{NS}/db/tables"),
        Some(json!({"name": "u", "schema": schema_json(), "location": format!("{location}/inner")})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("being purged"), "{body}");
    let (status, body) =
        call(&server, Method::POST, &format!("{NS}/db/tables"), Some(json!({"name": "t", "schema": schema_json()})))
            .await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["metadata"]["location"].as_str(), Some(location.as_str()), "a sibling location instead");
}
