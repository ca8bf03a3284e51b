//! The table lifecycle through iceberg-rust's `RestCatalog`: namespaces, a partitioned table,
//! appends, schema evolution, deletes and overwrites (snapshots built by `loch-table`, committed
//! over REST), rename, purge, and the errors a client must see.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use iceberg::spec::{PrimitiveType, Transform, Type, UnboundPartitionSpec};
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, ErrorKind, NamespaceIdent, TableCreation, TableIdent};
use loch_testkit::data::{append, arrow_schema, commit_over_rest, plan_delete_where, plan_replace_all, rows, scan_all};

use crate::common::{Backend, Storage, TestServer, assert_kind, simple_schema};

/// A batch for `table`'s current schema; a column the schema has beyond the first three is null.
pub fn batch(table: &iceberg::table::Table, ids: &[i64], category: &str) -> RecordBatch {
    let schema = arrow_schema(table);
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.to_vec())),
        Arc::new(StringArray::from(vec![category; ids.len()])),
        Arc::new(Float64Array::from(ids.iter().map(|i| *i as f64 / 2.0).collect::<Vec<_>>())),
    ];
    for field in schema.fields().iter().skip(3) {
        columns.push(arrow_array::new_null_array(field.data_type(), ids.len()));
    }
    RecordBatch::try_new(schema, columns).unwrap()
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    let mut out: Vec<i64> = rows(batches).iter().map(|r| r["id"].parse().unwrap()).collect();
    out.sort();
    out
}

async fn table_lifecycle(server: TestServer) {
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::from_strs(["sales", "eu"]).unwrap();
    let parent = NamespaceIdent::new("sales".into());

    // Namespaces: nested, with properties.
    catalog.create_namespace(&parent, HashMap::from([("owner".into(), "data-team".into())])).await.unwrap();
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    assert_eq!(catalog.list_namespaces(None).await.unwrap(), vec![parent.clone()]);
    assert_eq!(catalog.list_namespaces(Some(&parent)).await.unwrap(), vec![ns.clone()]);
    assert!(catalog.namespace_exists(&ns).await.unwrap());
    assert_eq!(catalog.get_namespace(&parent).await.unwrap().properties()["owner"], "data-team");
    assert_kind(catalog.create_namespace(&ns, HashMap::new()).await, ErrorKind::NamespaceAlreadyExists);

    // A table partitioned by category.
    let ident = TableIdent::new(ns.clone(), "orders".into());
    let spec = UnboundPartitionSpec::builder().add_partition_field(2, "category", Transform::Identity).unwrap().build();
    let creation = TableCreation::builder()
        .name("orders".into())
        .schema(simple_schema())
        .partition_spec(spec)
        .properties(HashMap::from([("owner".to_string(), "tests".to_string())]))
        .build();
    let table = catalog.create_table(&ns, creation).await.unwrap();
    assert!(table.metadata_location().unwrap().starts_with(&server.warehouse), "{}", server.label());
    assert_kind(
        catalog.create_table(&ns, TableCreation::builder().name("orders".into()).schema(simple_schema()).build()).await,
        ErrorKind::TableAlreadyExists,
    );

    // Three appends, read back exactly.
    let mut table = table;
    for (i, category) in ["a", "b", "a"].iter().enumerate() {
        let base = i as i64 * 10;
        let b = batch(&table, &(base..base + 5).collect::<Vec<_>>(), category);
        table = append(&catalog, &table, &b).await.unwrap();
    }
    let table = catalog.load_table(&ident).await.unwrap();
    let expected: Vec<i64> = (0..5).chain(10..15).chain(20..25).collect();
    assert_eq!(ids(&scan_all(&table).await.unwrap()), expected);
    assert_eq!(table.metadata().snapshots().count(), 3);

    // Add a column, append rows that have it.
    let tx = Transaction::new(&table);
    let tx = tx
        .update_schema()
        .add_column(iceberg::transaction::AddColumn::optional("note", Type::Primitive(PrimitiveType::String)))
        .apply(tx)
        .unwrap();
    let table = tx.commit(&catalog).await.unwrap();
    assert!(table.metadata().current_schema().field_by_name("note").is_some());
    let table = append(&catalog, &table, &batch(&table, &[30, 31], "c")).await.unwrap();
    let all = scan_all(&table).await.unwrap();
    assert_eq!(all.iter().map(|b| b.num_columns()).max(), Some(4));
    assert_eq!(ids(&all).len(), 17);

    // Delete rows by filter (copy-on-write): ids 10..15 and 31.
    let delete = |b: &RecordBatch, i: usize| {
        let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(i);
        (10..15).contains(&id) || id == 31
    };
    let pending = plan_delete_where(&table, delete).await.unwrap();
    let (status, body) =
        commit_over_rest(&server.http, &server.catalog_url(), &ident, &pending, server.token.as_deref()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let table = catalog.load_table(&ident).await.unwrap();
    let expected: Vec<i64> = (0..5).chain(20..25).chain([30]).collect();
    assert_eq!(ids(&scan_all(&table).await.unwrap()), expected);
    let summary = &table.metadata().current_snapshot().unwrap().summary().additional_properties;
    assert_eq!(summary["total-records"], expected.len().to_string(), "{summary:?}");

    // A stale plan (built on the old snapshot) is refused and changes nothing.
    let (status, _) =
        commit_over_rest(&server.http, &server.catalog_url(), &ident, &pending, server.token.as_deref()).await.unwrap();
    assert_eq!(status, 409);
    assert_eq!(catalog.load_table(&ident).await.unwrap().metadata_location(), table.metadata_location());

    // Overwrite everything with new rows.
    let replacement = batch(&table, &[100, 101, 102], "z");
    let pending = plan_replace_all(&table, &replacement).await.unwrap();
    let (status, body) =
        commit_over_rest(&server.http, &server.catalog_url(), &ident, &pending, server.token.as_deref()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let table = catalog.load_table(&ident).await.unwrap();
    assert_eq!(rows(&scan_all(&table).await.unwrap()), rows(&[replacement]));
    let summary = &table.metadata().current_snapshot().unwrap().summary();
    assert_eq!(summary.operation, iceberg::spec::Operation::Overwrite);
    assert_eq!(summary.additional_properties["total-data-files"], "1");

    // Rename across namespaces keeps the data.
    let renamed = TableIdent::new(parent.clone(), "orders_v2".into());
    catalog.rename_table(&ident, &renamed).await.unwrap();
    assert!(!catalog.table_exists(&ident).await.unwrap());
    let table = catalog.load_table(&renamed).await.unwrap();
    assert_eq!(ids(&scan_all(&table).await.unwrap()), vec![100, 101, 102]);
    assert_kind(catalog.load_table(&ident).await, ErrorKind::TableNotFound);

    // The expected errors.
    let missing_ns = NamespaceIdent::new("nope".into());
    assert_kind(catalog.list_tables(&missing_ns).await, ErrorKind::NamespaceNotFound);
    assert_kind(
        catalog
            .create_table(&missing_ns, TableCreation::builder().name("t".into()).schema(simple_schema()).build())
            .await,
        ErrorKind::NamespaceNotFound,
    );
    assert_kind(catalog.load_table(&TableIdent::new(ns.clone(), "missing".into())).await, ErrorKind::TableNotFound);
    assert!(catalog.drop_namespace(&parent).await.is_err(), "non-empty namespace must not drop");

    // Drop with purge: every file of the table is gone.
    let io = table.file_io().clone();
    let mut files = vec![table.metadata_location().unwrap().to_string()];
    files.extend(table.metadata().metadata_log().iter().map(|l| l.metadata_file.clone()));
    files.extend(loch_testkit::data::data_file_paths(&table).await.unwrap());
    files.push(table.metadata().current_snapshot().unwrap().manifest_list().to_string());
    for f in &files {
        assert!(io.exists(f).await.unwrap(), "{f} exists before purge");
    }
    catalog.purge_table(&renamed).await.unwrap();
    assert!(!catalog.table_exists(&renamed).await.unwrap());
    for f in &files {
        assert!(!io.exists(f).await.unwrap(), "{f} still exists after purge ({})", server.label());
    }
    catalog.drop_namespace(&ns).await.unwrap();
    catalog.drop_namespace(&parent).await.unwrap();
    assert!(catalog.list_namespaces(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn lifecycle_sqlite_file() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    table_lifecycle(server).await;
}

#[tokio::test]
async fn lifecycle_postgres_file() {
    let Some(server) = TestServer::start(Backend::Postgres, Storage::File).await else { return };
    table_lifecycle(server).await;
}

#[tokio::test]
async fn lifecycle_sqlite_s3() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::S3).await else { return };
    table_lifecycle(server).await;
}

#[tokio::test]
async fn lifecycle_postgres_s3() {
    let Some(server) = TestServer::start(Backend::Postgres, Storage::S3).await else { return };
    table_lifecycle(server).await;
}

/// Namespaces, tables and their contents survive a restart.
#[tokio::test]
async fn restart_keeps_everything() {
    let Some(mut server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::new("keep".into());
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    let table = catalog
        .create_table(&ns, TableCreation::builder().name("t".into()).schema(simple_schema()).build())
        .await
        .unwrap();
    let table = append(&catalog, &table, &batch(&table, &[1, 2, 3], "x")).await.unwrap();
    server.restart().await;
    let catalog = server.rest_catalog().await;
    assert_eq!(catalog.list_namespaces(None).await.unwrap(), vec![ns.clone()]);
    let reloaded = catalog.load_table(&TableIdent::new(ns, "t".into())).await.unwrap();
    assert_eq!(reloaded.metadata_location(), table.metadata_location());
    assert_eq!(ids(&scan_all(&reloaded).await.unwrap()), vec![1, 2, 3]);
}

/// The `format-version` property of a create picks the table's format version (and is not kept
/// as a property); without it tables are v2; an unknown version is refused.
#[tokio::test]
async fn a_create_keeps_the_requested_format_version() {
    use iceberg::spec::FormatVersion;
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::new("fv".into());
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    for (name, requested, expected) in
        [("v1", Some("1"), FormatVersion::V1), ("v2", None, FormatVersion::V2), ("v3", Some("3"), FormatVersion::V3)]
    {
        let properties: HashMap<String, String> =
            requested.map(|v| ("format-version".to_string(), v.to_string())).into_iter().collect();
        let creation =
            TableCreation::builder().name(name.into()).schema(simple_schema()).properties(properties).build();
        let created = catalog.create_table(&ns, creation).await.unwrap();
        assert_eq!(created.metadata().format_version(), expected, "{name} as created");
        let loaded = catalog.load_table(&TableIdent::new(ns.clone(), name.into())).await.unwrap();
        assert_eq!(loaded.metadata().format_version(), expected, "{name} as loaded");
        assert!(!loaded.metadata().properties().contains_key("format-version"), "{name}");
    }
    let bad = HashMap::from([("format-version".to_string(), "9".to_string())]);
    let creation = TableCreation::builder().name("v9".into()).schema(simple_schema()).properties(bad).build();
    assert!(catalog.create_table(&ns, creation).await.is_err());
}

/// `loadTable?snapshots=refs` answers the snapshots a branch or tag references and no other
/// (what a reader of the current state needs, however long the history); `all` answers every
/// snapshot; anything else is a 400.
#[tokio::test]
async fn loading_with_snapshots_refs_answers_the_referenced_snapshots_only() {
    let Some(server) = TestServer::start(Backend::Sqlite, Storage::File).await else { return };
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::new("refs".into());
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    let mut table = catalog
        .create_table(&ns, TableCreation::builder().name("t".into()).schema(simple_schema()).build())
        .await
        .unwrap();
    for i in 0..4 {
        table = append(&catalog, &table, &batch(&table, &[i], "x")).await.unwrap();
    }
    let snapshots: Vec<i64> = table.metadata().snapshots().map(|s| s.snapshot_id()).collect();
    let first =
        *snapshots.iter().min_by_key(|id| table.metadata().snapshot_by_id(**id).unwrap().sequence_number()).unwrap();
    let tag = serde_json::json!({"requirements": [], "updates": [{"action": "set-snapshot-ref", "ref-name": "v1",
        "type": "tag", "snapshot-id": first}]});
    let path = "/api/iceberg/rest/v1/catalogs/local/namespaces/refs/tables/t";
    let (status, body) = crate::common::call(&server, reqwest::Method::POST, path, Some(tag)).await;
    assert_eq!(status, 200, "{body}");
    // Statistics for the tagged snapshot and for one no ref names.
    let unreferenced =
        *snapshots.iter().find(|id| **id != first && Some(**id) != table.metadata().current_snapshot_id()).unwrap();
    let location = table.metadata().location().to_string();
    let statistics = |id: i64| {
        serde_json::json!({"action": "set-statistics", "snapshot-id": id, "statistics": {
        "snapshot-id": id, "statistics-path": format!("{location}/metadata/{id}.stats"), "file-size-in-bytes": 10,
        "file-footer-size-in-bytes": 5, "blob-metadata": []}})
    };
    let set = serde_json::json!({"requirements": [], "updates": [statistics(first), statistics(unreferenced)]});
    let (status, body) = crate::common::call(&server, reqwest::Method::POST, path, Some(set)).await;
    assert_eq!(status, 200, "{body}");

    let ids = |body: &serde_json::Value| {
        let mut ids: Vec<i64> = body["metadata"]["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["snapshot-id"].as_i64().unwrap())
            .collect();
        ids.sort();
        ids
    };
    let current = table.metadata().current_snapshot_id().unwrap();
    let mut referenced = vec![first, current];
    referenced.sort();
    for _ in 0..2 {
        // Twice: the second answer comes from the cached entry.
        let (status, body) =
            crate::common::call(&server, reqwest::Method::GET, &format!("{path}?snapshots=refs"), None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(ids(&body), referenced);
        assert_eq!(body["metadata"]["current-snapshot-id"], current);
        assert_eq!(body["metadata"]["snapshot-log"].as_array().unwrap().len(), 4);
        let stats = body["metadata"]["statistics"].as_array().unwrap();
        assert_eq!(stats.iter().map(|s| s["snapshot-id"].as_i64().unwrap()).collect::<Vec<_>>(), vec![first]);
    }
    let (_, all) = crate::common::call(&server, reqwest::Method::GET, &format!("{path}?snapshots=all"), None).await;
    let mut every = snapshots.clone();
    every.sort();
    assert_eq!(ids(&all), every);
    assert_eq!(all["metadata"]["statistics"].as_array().unwrap().len(), 2);
    let (status, body) =
        crate::common::call(&server, reqwest::Method::GET, &format!("{path}?snapshots=some"), None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("snapshots must be"), "{body}");
}
