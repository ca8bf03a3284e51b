//! Table maintenance through `loch serve`'s management API: snapshot expiry keeps exactly the
//! snapshots it must (the head, a tagged snapshot), deletes exactly the files only expired
//! snapshots reached, reads the same afterwards, and refuses bad input with a clear 4xx.

use std::collections::HashMap;

use iceberg::table::Table;
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};
use loch_testkit::data::{append, commit_over_rest, data_file_paths, plan_replace_all, rows, scan_all, scan_snapshot};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Backend, Storage, TestServer, call, simple_schema, tables_py};
use crate::rest_catalog::batch;

fn ids(batches: &[arrow_array::RecordBatch]) -> Vec<i64> {
    let mut out: Vec<i64> = rows(batches).iter().map(|r| r["id"].parse().unwrap()).collect();
    out.sort();
    out
}

async fn ids_at(table: &Table, snapshot_id: i64) -> Vec<i64> {
    ids(&scan_snapshot(table, snapshot_id).await.unwrap())
}

/// Namespace `mnt` and in it table `t`, not optimized, whose snapshots expire as soon as they
/// are not the newest.
async fn expiring_table(server: &TestServer) -> (iceberg_catalog_rest::RestCatalog, NamespaceIdent, Table) {
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::new("mnt".into());
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    let props = HashMap::from([
        ("self-optimizing.enabled".to_string(), "false".to_string()),
        ("snapshot.keep.duration".to_string(), "0ms".to_string()),
    ]);
    let creation = TableCreation::builder().name("t".into()).schema(simple_schema()).properties(props).build();
    let table = catalog.create_table(&ns, creation).await.unwrap();
    (catalog, ns, table)
}

/// PyIceberg's digest of table `mnt.{table}` (its head, or the snapshot `reference` names):
/// rows, their SHA-256, file counts. `None` when the test venv is missing (after a loud message).
async fn pyiceberg_digest(server: &TestServer, table: &str, reference: Option<&str>) -> Option<Value> {
    let name = format!("mnt.{table}");
    let mut args = vec!["digest", name.as_str()];
    if let Some(reference) = reference {
        args.extend(["--ref", reference]);
    }
    let mut digest = tables_py(server, &args).await?;
    digest.as_object_mut().unwrap().remove("summary");
    Some(digest)
}

async fn expire(server: &TestServer, table: &str, query: &str) -> (u16, Value) {
    let path = format!("/api/v1/tables/local/mnt/{table}/maintenance/expire-snapshots{query}");
    call(server, Method::POST, &path, None).await
}

/// Six appends, a tag on the second, then an overwrite of everything: expiry (keep 0, the
/// newest one per branch) keeps the head and the tagged snapshot and deletes the files of
/// appends 3–6, which only expired snapshots reached. A dry run first reports the same and
/// changes nothing.
async fn expiry_keeps_the_head_and_tags(server: TestServer) {
    let (catalog, ns, mut table) = expiring_table(&server).await;
    let mut files_of_append = Vec::new();
    for i in 0..6 {
        let before: Vec<String> = data_file_paths(&table).await.unwrap_or_default();
        table = append(&catalog, &table, &batch(&table, &[i], "a")).await.unwrap();
        let added: Vec<String> =
            data_file_paths(&table).await.unwrap().into_iter().filter(|f| !before.contains(f)).collect();
        files_of_append.push(added);
    }
    let ident = TableIdent::new(ns.clone(), "t".into());
    let tagged = table.metadata().snapshots().find(|s| s.sequence_number() == 2).unwrap().snapshot_id();
    let tag = json!({"action": "set-snapshot-ref", "ref-name": "second", "type": "tag", "snapshot-id": tagged});
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/iceberg/rest/v1/catalogs/local/namespaces/mnt/tables/t",
        Some(json!({"requirements": [], "updates": [tag]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let table = catalog.load_table(&ident).await.unwrap();
    let pending = plan_replace_all(&table, &batch(&table, &[100, 101], "b")).await.unwrap();
    let (status, body) =
        commit_over_rest(&server.http, &server.catalog_url(), &ident, &pending, server.token.as_deref()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let table = catalog.load_table(&ident).await.unwrap();
    assert_eq!(table.metadata().snapshots().len(), 7);
    let rows_now = ids(&scan_all(&table).await.unwrap());
    assert_eq!(rows_now, vec![100, 101]);
    assert_eq!(ids_at(&table, tagged).await, vec![0, 1]);
    let io = table.file_io().clone();
    let exists = |path: String| {
        let io = io.clone();
        async move { io.exists(&path).await.unwrap() }
    };

    let py_head = pyiceberg_digest(&server, "t", None).await;
    let py_tag = pyiceberg_digest(&server, "t", Some("second")).await;

    let (status, dry) = expire(&server, "t", "?dry_run=true").await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["snapshotsExpired"], 5, "{dry}");
    assert_eq!(dry["contentFiles"], 4, "{dry}");
    assert!(dry["bytes"].as_u64().unwrap() > 0);
    assert_eq!(catalog.load_table(&ident).await.unwrap().metadata().snapshots().len(), 7, "a dry run changes nothing");
    for file in files_of_append.iter().flatten() {
        assert!(exists(file.clone()).await, "{file} must still exist after a dry run");
    }

    let (status, run) = expire(&server, "t", "").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!((run["snapshotsExpired"].as_u64(), run["contentFiles"].as_u64()), (Some(5), Some(4)), "{run}");
    assert_eq!(run["paths"], dry["paths"], "the run deletes what the dry run listed");
    let table = catalog.load_table(&ident).await.unwrap();
    let kept: Vec<i64> = table.metadata().snapshots().map(|s| s.snapshot_id()).collect();
    assert_eq!(kept.len(), 2);
    assert!(kept.contains(&tagged));
    for (i, files) in files_of_append.iter().enumerate() {
        for file in files {
            assert_eq!(exists(file.clone()).await, i < 2, "{file} of append {}", i + 1);
        }
    }
    for path in run["paths"].as_array().unwrap() {
        assert!(!exists(path.as_str().unwrap().to_string()).await, "{path} was deleted");
    }
    assert_eq!(ids(&scan_all(&table).await.unwrap()), rows_now, "the table reads the same");
    assert_eq!(ids_at(&table, tagged).await, vec![0, 1], "and so does its tag");
    if let Some(before) = py_head {
        assert_eq!(before["rows"], 2);
        assert_eq!(pyiceberg_digest(&server, "t", None).await, Some(before), "PyIceberg reads the head the same");
    }
    if let Some(before) = py_tag {
        assert_eq!(before["rows"], 2);
        assert_eq!(pyiceberg_digest(&server, "t", Some("second")).await, Some(before), "and the tag");
    }

    let (status, again) = expire(&server, "t", "").await;
    assert_eq!((status, again["snapshotsExpired"].as_u64()), (200, Some(0)), "nothing left to expire: {again}");

    // Both runs are recorded, newest first; the dry run is not.
    let runs = runs_of(&server, "t", "").await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(
        (runs[0]["summary"]["snapshotsExpired"].as_u64(), runs[1]["summary"]["snapshotsExpired"].as_u64()),
        (Some(0), Some(5))
    );
    assert!(runs.iter().all(|r| r["status"] == "success" && r["action"] == "expire-snapshots"), "{runs:?}");
    assert_eq!(runs[1]["summary"]["contentFiles"], 4);
    let paged = runs_of(&server, "t", "?limit=1&offset=1").await;
    assert_eq!(paged, runs[1..].to_vec());
    let optimizing = call(&server, Method::GET, "/api/v1/tables/local/mnt/t/optimizing/processes", None).await.1;
    assert_eq!(optimizing, json!([]), "maintenance runs are not optimizing processes");

    // The table's state and the catalog's table listing show the last run of each action.
    let state = call(&server, Method::GET, "/api/v1/tables/local/mnt/t/optimizing", None).await.1;
    assert_eq!(state["maintenance"]["expire-snapshots"], runs[0], "{state}");
    let listing = call(&server, Method::GET, "/api/v1/catalogs/local/tables", None).await.1;
    let listed = listing.as_array().unwrap().iter().find(|t| t["name"] == "t").unwrap();
    assert_eq!(listed["maintenance"]["expire-snapshots"]["id"], runs[0]["id"], "{listed}");
}

async fn runs_of(server: &TestServer, table: &str, query: &str) -> Vec<Value> {
    let (status, body) =
        call(server, Method::GET, &format!("/api/v1/tables/local/mnt/{table}/maintenance/runs{query}"), None).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_keeps_the_head_and_tags_sqlite_file() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    expiry_keeps_the_head_and_tags(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_keeps_the_head_and_tags_postgres_s3() {
    let Some(server) = TestServer::start(Backend::Postgres, Storage::S3).await else { return };
    expiry_keeps_the_head_and_tags(server).await;
}

/// Unknown actions, missing tables, bad property values and bad options are 4xx with a message
/// that says what is wrong; a table whose switch is off is skipped and unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_refuses_bad_input_clearly() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::new("mnt".into());
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    let create = |name: &str, props: &[(&str, &str)]| {
        let props: HashMap<String, String> = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TableCreation::builder().name(name.into()).schema(simple_schema()).properties(props).build()
    };
    let bad = catalog.create_table(&ns, create("bad", &[("snapshot.keep.duration", "abc")])).await.unwrap();
    append(&catalog, &bad, &batch(&bad, &[1], "a")).await.unwrap();
    let off = catalog.create_table(&ns, create("off", &[("table-expire.enabled", "false")])).await.unwrap();
    let mut off = append(&catalog, &off, &batch(&off, &[1], "a")).await.unwrap();
    off = append(&catalog, &off, &batch(&off, &[2], "a")).await.unwrap();

    let (status, body) = call(&server, Method::POST, "/api/v1/tables/local/mnt/bad/maintenance/vacuum", None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("unknown maintenance action \"vacuum\""), "{body}");
    let (status, body) = expire(&server, "missing", "").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = expire(&server, "bad", "").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("snapshot.keep.duration=\"abc\""), "{body}");
    let runs = runs_of(&server, "bad", "").await;
    assert_eq!(runs.len(), 1, "the failed run is recorded: {runs:?}");
    assert_eq!(runs[0]["status"], "failed");
    assert!(runs[0]["failMessage"].as_str().unwrap().contains("snapshot.keep.duration"), "{runs:?}");
    let (status, body) = expire(&server, "bad", "?dry_run=maybe").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) =
        call(&server, Method::GET, "/api/v1/tables/local/mnt/bad/maintenance/expire-snapshots", None).await;
    assert!(status == 405 || status == 404, "{status} {body}");

    let (status, body) = expire(&server, "off", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["skipped"].as_str().unwrap().contains("table-expire.enabled"), "{body}");
    let ident = TableIdent::new(ns, "off".into());
    let reloaded = catalog.load_table(&ident).await.unwrap();
    assert_eq!(reloaded.metadata_location(), off.metadata_location(), "a skipped run changes nothing");
}

/// Scheduled expiry: with a one-second interval the runner expires a table's old snapshots by
/// itself and records the run; a table whose property is broken is retried and its runs say
/// why, without stopping the others. Scheduled tagging fires only where a table switches it on:
/// that table gets its hourly tag, the others get no run at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_expires_snapshots_on_its_own() {
    let Some(server) = TestServer::start_configured(Backend::Sqlite, Storage::File, false, |config| {
        config.maintenance.expire_snapshots_interval = std::time::Duration::from_secs(1);
        config.maintenance.auto_create_tags_interval = std::time::Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::new("mnt".into());
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    let create = |name: &str, keep: &str| {
        let props = HashMap::from([
            ("self-optimizing.enabled".to_string(), "false".to_string()),
            ("snapshot.keep.duration".to_string(), keep.to_string()),
        ]);
        TableCreation::builder().name(name.into()).schema(simple_schema()).properties(props).build()
    };
    let mut good = catalog.create_table(&ns, create("good", "0ms")).await.unwrap();
    let mut bad = catalog.create_table(&ns, create("bad", "soon")).await.unwrap();
    for i in 0..3 {
        good = append(&catalog, &good, &batch(&good, &[i], "a")).await.unwrap();
        bad = append(&catalog, &bad, &batch(&bad, &[i], "a")).await.unwrap();
    }
    let tag_props = HashMap::from([
        ("self-optimizing.enabled".to_string(), "false".to_string()),
        ("tag.auto-create.enabled".to_string(), "true".to_string()),
        ("tag.auto-create.trigger.period".to_string(), "hourly".to_string()),
    ]);
    let creation = TableCreation::builder().name("tagged".into()).schema(simple_schema()).properties(tag_props).build();
    let tagged = catalog.create_table(&ns, creation).await.unwrap();
    let tagged = append(&catalog, &tagged, &batch(&tagged, &[1], "a")).await.unwrap();
    let head = tagged.metadata().current_snapshot_id();
    let rows_before = ids(&scan_all(&good).await.unwrap());
    let ident = TableIdent::new(ns.clone(), "good".into());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let snapshots = catalog.load_table(&ident).await.unwrap().metadata().snapshots().len();
        // Finished runs only: the runner may be in the middle of the next one.
        let bad_runs: Vec<_> =
            runs_of(&server, "bad", "").await.into_iter().filter(|r| r["status"] != "running").collect();
        if snapshots == 1 && bad_runs.len() >= 2 {
            assert!(bad_runs.iter().all(|r| r["status"] == "failed"), "{bad_runs:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled expiry: {snapshots} snapshots, bad runs {bad_runs:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let runs = runs_of(&server, "good", "").await;
    assert!(runs.iter().any(|r| r["summary"]["snapshotsExpired"] == 2), "{runs:?}");
    let table = catalog.load_table(&ident).await.unwrap();
    assert_eq!(ids(&scan_all(&table).await.unwrap()), rows_before);

    loop {
        let path = "/api/iceberg/rest/v1/catalogs/local/namespaces/mnt/tables/tagged";
        let (_, loaded) = call(&server, Method::GET, path, None).await;
        let refs = loaded["metadata"]["refs"].as_object().unwrap().clone();
        if let Some((name, reference)) = refs.iter().find(|(name, _)| name.starts_with("tag-")) {
            assert_eq!(reference["snapshot-id"].as_i64(), head, "{name} tags the hour's first snapshot");
            assert_eq!(reference["type"], "tag");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no scheduled tag");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for name in ["good", "bad"] {
        let runs = runs_of(&server, name, "").await;
        assert!(runs.iter().all(|r| r["action"] == "expire-snapshots"), "tagging is off on {name}: {runs:?}");
    }
}

/// A server that stopped after an expiry committed but before its files were deleted finishes
/// the deletion when it starts again: the run (left `running`, naming the versions before and
/// after) ends as a success and the files only expired snapshots reached are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_finishes_an_interrupted_deletion() {
    use iceberg::transaction::{ApplyTransactionAction, Transaction};
    let Some(mut server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    let (catalog, ns, mut table) = expiring_table(&server).await;
    for i in 0..3 {
        table = append(&catalog, &table, &batch(&table, &[i], "a")).await.unwrap();
    }
    let ident = TableIdent::new(ns.clone(), "t".into());
    let pending = plan_replace_all(&table, &batch(&table, &[9], "b")).await.unwrap();
    let (status, body) =
        commit_over_rest(&server.http, &server.catalog_url(), &ident, &pending, server.token.as_deref()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let table = catalog.load_table(&ident).await.unwrap();
    let (_, dry) = expire(&server, "t", "?dry_run=true").await;
    let doomed: Vec<String> =
        dry["paths"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    assert_eq!(dry["contentFiles"], 3, "{dry}");

    // The expiry's commit, as a run would make it, then the server stops before deleting.
    let before = table.metadata_location().unwrap().to_string();
    let now = loch_meta::now_ms();
    let tx = Transaction::new(&table);
    let tx = tx.expire_snapshots().expire_older_than_ms(now + 1).retain_last(1).apply(tx).unwrap();
    let after_table = tx.commit(&catalog).await.unwrap();
    let after = after_table.metadata_location().unwrap().to_string();
    server.stop().await;
    let store =
        loch_meta::MetaStore::connect(&server.database_url(), &loch_meta::StoreOptions::default()).await.unwrap();
    let table_id = store.list_table_ids().await.unwrap()[0];
    let summary = loch_optimizing::maintenance::MaintenanceSummary {
        snapshots_expired: 3,
        metadata_before: Some(before),
        metadata_after: Some(after),
        ..Default::default()
    };
    let run = loch_meta::NewProcess {
        table_id,
        kind: "maintenance".into(),
        process_type: "expire-snapshots".into(),
        status: loch_optimizing::status::ProcessStatus::Running.as_str().into(),
        group_name: "local".into(),
        target_snapshot_id: None,
        summary: serde_json::to_string(&summary).unwrap(),
    };
    store.start_process(&run).await.unwrap();
    drop(store);
    let io = after_table.file_io().clone();
    for path in &doomed {
        assert!(io.exists(path).await.unwrap(), "{path} is still there before the restart");
    }

    server.start_again().await;
    let runs = runs_of(&server, "t", "").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "success", "{runs:?}");
    assert_eq!(runs[0]["summary"]["contentFiles"], 3, "{runs:?}");
    for path in &doomed {
        assert!(!io.exists(path).await.unwrap(), "{path} was deleted after the restart");
    }
    let table = catalog.load_table(&ident).await.unwrap();
    assert_eq!(ids(&scan_all(&table).await.unwrap()), vec![9]);
}

/// Every file under a location, canonical path → size.
async fn files_under(io: &iceberg::io::FileIO, location: &str) -> std::collections::BTreeMap<String, u64> {
    let root = loch_table::location::Location::parse(location).unwrap();
    let listed = loch_table::orphans::list_files(io, &root).await.unwrap();
    listed.into_iter().map(|f| (f.path, f.size)).collect()
}

/// Orphan cleaning through the API: a commit that failed (a stale writer lost the race; its
/// data file, manifest and manifest list stay behind) is cleaned once older than the threshold,
/// while a file of a commit in flight (younger), every referenced file and a file beside the
/// table survive; the warehouse is listed before and after and the table reads the same.
async fn orphans_of_a_failed_commit_are_cleaned(server: TestServer) {
    let (catalog, ns, mut table) = expiring_table(&server).await;
    let ident = TableIdent::new(ns.clone(), "t".into());
    for i in 0..3 {
        table = append(&catalog, &table, &batch(&table, &[i], "a")).await.unwrap();
    }
    let stale = table.clone();
    table = append(&catalog, &table, &batch(&table, &[3], "a")).await.unwrap();
    let io = table.file_io().clone();
    let location = table.metadata().location().to_string();
    let warehouse = location.rsplit_once("/mnt/").unwrap().0.to_string();
    let beside = format!("{warehouse}/mnt/t-beside/data/old.parquet");
    io.new_output(&beside).unwrap().write(bytes::Bytes::from_static(b"not the table's")).await.unwrap();

    let before_failure = files_under(&io, &location).await;
    let pending = plan_replace_all(&stale, &batch(&stale, &[100], "b")).await.unwrap();
    let (status, body) =
        commit_over_rest(&server.http, &server.catalog_url(), &ident, &pending, server.token.as_deref()).await.unwrap();
    assert_eq!(status, 409, "the stale writer's commit fails: {body}");
    let mut failed: Vec<String> =
        files_under(&io, &location).await.into_keys().filter(|f| !before_failure.contains_key(f)).collect();
    assert!(failed.len() >= 3, "a data file, a manifest and a manifest list: {failed:?}");
    // A crashed writer's file alone in its own directory: the file goes, then the directory.
    let lone = format!("{location}/data/crashed=1/part-0.parquet");
    io.new_output(&lone).unwrap().write(bytes::Bytes::from_static(b"half a file")).await.unwrap();
    let lone = loch_table::location::Location::parse(&lone).unwrap();
    failed.push(lone.canonical());
    failed.sort();

    let props = json!({"action": "set-properties", "updates": {
        "clean-orphan-file.enabled": "true",
        "clean-orphan-file.min-existing-time-minutes": "4s",
    }});
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/iceberg/rest/v1/catalogs/local/namespaces/mnt/tables/t",
        Some(json!({"requirements": [], "updates": [props]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let table = catalog.load_table(&ident).await.unwrap();
    let rows_before = ids(&scan_all(&table).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    // A writer's file, not yet committed: younger than the threshold.
    let in_flight = format!("{location}/data/in-flight.parquet");
    io.new_output(&in_flight).unwrap().write(bytes::Bytes::from_static(b"in flight")).await.unwrap();
    let listed_before = files_under(&io, &location).await;

    let path = "/api/v1/tables/local/mnt/t/maintenance/clean-orphan-files";
    let (status, dry) = call(&server, Method::POST, &format!("{path}?dry_run=true"), None).await;
    assert_eq!(status, 200, "{dry}");
    let mut listed: Vec<String> =
        dry["paths"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    listed.sort();
    assert_eq!(listed, failed, "the dry run finds exactly the failed commit's files");
    assert_eq!(files_under(&io, &location).await, listed_before, "a dry run deletes nothing");

    let (status, run) = call(&server, Method::POST, path, None).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["paths"], dry["paths"], "{run}");
    assert_eq!(
        run["contentFiles"].as_u64().unwrap() + run["metadataFiles"].as_u64().unwrap(),
        failed.len() as u64,
        "{run}"
    );
    let mut expected = listed_before.clone();
    expected.retain(|f, _| !failed.contains(f));
    assert_eq!(files_under(&io, &location).await, expected, "only the failed commit's files went");
    assert!(io.exists(&in_flight).await.unwrap(), "the in-flight file survives");
    if let Some(file) = lone.local_path() {
        assert!(!file.parent().unwrap().exists(), "the emptied directory is removed");
        assert_eq!(run["dirsRemoved"], 1, "{run}");
        assert!(file.parent().unwrap().parent().unwrap().exists(), "but never the data directory");
    }
    assert!(io.exists(&beside).await.unwrap(), "a file beside the table is never touched");
    let table = catalog.load_table(&ident).await.unwrap();
    assert_eq!(ids(&scan_all(&table).await.unwrap()), rows_before, "the table reads the same");
    for s in table.metadata().snapshots() {
        for file in loch_testkit::data::reached_by(&table, s.snapshot_id()).await.unwrap() {
            assert!(io.exists(&file).await.unwrap(), "{file} of snapshot {} survives", s.snapshot_id());
        }
    }
    let runs = runs_of(&server, "t", "").await;
    assert_eq!((runs.len(), runs[0]["action"].as_str()), (1, Some("clean-orphan-files")), "{runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_of_a_failed_commit_are_cleaned_sqlite_file() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    orphans_of_a_failed_commit_are_cleaned(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_of_a_failed_commit_are_cleaned_postgres_s3() {
    let Some(server) = TestServer::start(Backend::Postgres, Storage::S3).await else { return };
    orphans_of_a_failed_commit_are_cleaned(server).await;
}

/// An expiry that committed but whose deletion failed (storage refused a file: a directory
/// stands where a data file was) is recorded as failed with the reason; once the obstacle is
/// gone, the next expiry finishes that deletion, so nothing leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deletion_is_finished_by_the_next_run() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    let (catalog, ns, mut table) = expiring_table(&server).await;
    for i in 0..3 {
        table = append(&catalog, &table, &batch(&table, &[i], "a")).await.unwrap();
    }
    let ident = TableIdent::new(ns.clone(), "t".into());
    let pending = plan_replace_all(&table, &batch(&table, &[9], "b")).await.unwrap();
    let (status, body) =
        commit_over_rest(&server.http, &server.catalog_url(), &ident, &pending, server.token.as_deref()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, dry) = expire(&server, "t", "?dry_run=true").await;
    let doomed: Vec<String> =
        dry["paths"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    assert!(doomed.len() > 3, "{dry}");
    let local = |p: &str| loch_table::location::Location::parse(p).unwrap().local_path().unwrap();
    let blocked = local(&doomed[0]);
    std::fs::remove_file(&blocked).unwrap();
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("inside"), b"x").unwrap();

    let (status, body) = expire(&server, "t", "").await;
    assert_ne!(status, 200, "the deletion fails: {body}");
    let runs = runs_of(&server, "t", "").await;
    assert_eq!(runs[0]["status"], "failed", "{runs:?}");
    assert!(runs[0]["failMessage"].as_str().unwrap().contains("delet"), "{runs:?}");
    assert_eq!(runs[0]["summary"]["snapshotsExpired"], 3, "it had committed: {runs:?}");
    assert_eq!(catalog.load_table(&ident).await.unwrap().metadata().snapshots().len(), 1);

    std::fs::remove_dir_all(&blocked).unwrap();
    let (status, body) = expire(&server, "t", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["snapshotsExpired"], 0, "{body}");
    for path in &doomed {
        assert!(!local(path).exists(), "{path} was left behind");
    }
    let table = catalog.load_table(&ident).await.unwrap();
    assert_eq!(ids(&scan_all(&table).await.unwrap()), vec![9]);
}
