//! Concurrent writers: 8 clients × 25 appends to one table through the REST API, retrying on
//! 409. Every append's rows must be in the final table, and every committed metadata file
//! must be in the metadata log as one unbroken chain.

use std::collections::{HashMap, HashSet};

use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, ErrorKind, NamespaceIdent, TableCreation, TableIdent};
use loch_catalog::parse_version;
use loch_testkit::data::{rows, scan_all, write_data_files};

use crate::common::{Backend, Storage, TestServer, simple_schema};
use crate::rest_catalog::batch;

const WRITERS: i64 = 8;
const APPENDS: i64 = 25;

async fn concurrent_appends(server: TestServer) {
    let setup = server.rest_catalog().await;
    let ns = NamespaceIdent::new("conc".into());
    setup.create_namespace(&ns, HashMap::new()).await.unwrap();
    let ident = TableIdent::new(ns.clone(), "events".into());
    let properties = HashMap::from([
        // Keep every metadata file in the log so the whole chain can be checked.
        ("write.metadata.previous-versions-max".to_string(), "1000".to_string()),
        // The client retries 409s itself (reload, re-apply) with a short jittered backoff.
        ("commit.retry.num-retries".to_string(), "50".to_string()),
        ("commit.retry.min-wait-ms".to_string(), "5".to_string()),
        ("commit.retry.max-wait-ms".to_string(), "200".to_string()),
    ]);
    setup
        .create_table(
            &ns,
            TableCreation::builder().name("events".into()).schema(simple_schema()).properties(properties).build(),
        )
        .await
        .unwrap();

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let catalog = server.rest_catalog().await;
        let ident = ident.clone();
        writers.push(tokio::spawn(async move {
            let mut committed = Vec::new();
            let mut conflicts = 0;
            for i in 0..APPENDS {
                let table = catalog.load_table(&ident).await.unwrap();
                let files = write_data_files(&table, &batch(&table, &[w * 1000 + i], "c")).await.unwrap();
                loop {
                    let table = catalog.load_table(&ident).await.unwrap();
                    let tx = Transaction::new(&table);
                    let tx = tx.fast_append().add_data_files(files.clone()).apply(tx).unwrap();
                    match tx.commit(&catalog).await {
                        Ok(t) => {
                            committed.push(t.metadata_location().unwrap().to_string());
                            break;
                        }
                        Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts => conflicts += 1,
                        Err(e) => panic!("writer {w} append {i}: {e}"),
                    }
                }
            }
            (committed, conflicts)
        }));
    }
    let mut committed = Vec::new();
    let mut conflicts = 0;
    for writer in writers {
        let (c, n) = writer.await.unwrap();
        committed.extend(c);
        conflicts += n;
    }
    assert_eq!(committed.len(), (WRITERS * APPENDS) as usize);

    let table = setup.load_table(&ident).await.unwrap();
    let ids: HashSet<i64> = rows(&scan_all(&table).await.unwrap()).iter().map(|r| r["id"].parse().unwrap()).collect();
    let expected: HashSet<i64> = (0..WRITERS).flat_map(|w| (0..APPENDS).map(move |i| w * 1000 + i)).collect();
    assert_eq!(ids, expected, "every append's rows, nothing else ({})", server.label());
    assert_eq!(table.metadata().snapshots().count(), (WRITERS * APPENDS) as usize);

    // The metadata log is one chain: create + 200 commits, versions 0..=200, every file present.
    let mut chain: Vec<String> = table.metadata().metadata_log().iter().map(|l| l.metadata_file.clone()).collect();
    chain.push(table.metadata_location().unwrap().to_string());
    assert_eq!(chain.len(), 1 + (WRITERS * APPENDS) as usize);
    for (expected_version, file) in chain.iter().enumerate() {
        assert_eq!(parse_version(file), Some(expected_version as i64), "{file}");
        assert!(table.file_io().exists(file).await.unwrap(), "{file} is missing");
    }
    let logged: HashSet<&String> = chain.iter().collect();
    for file in &committed {
        assert!(logged.contains(file), "committed metadata {file} is not in the log");
    }
    eprintln!("{}: {} appends, {} client-side conflicts", server.label(), committed.len(), conflicts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_sqlite_file() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    concurrent_appends(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_postgres_file() {
    let Some(server) = TestServer::start(Backend::Postgres, Storage::File).await else { return };
    concurrent_appends(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_sqlite_s3() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::S3).await else { return };
    concurrent_appends(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_postgres_s3() {
    let Some(server) = TestServer::start(Backend::Postgres, Storage::S3).await else { return };
    concurrent_appends(server).await;
}
