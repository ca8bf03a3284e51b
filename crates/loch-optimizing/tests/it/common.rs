//! A catalog on SQLite and a local warehouse, with helpers to write data and deletes through it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec};
use loch_catalog::{CatalogService, CreateTable, ServiceOptions, TableChange, TableName};
use loch_meta::{MetaStore, StoreOptions};
use loch_optimizing::table::ManagedTable;
use loch_table::snapshot::{PendingCommit, RowDelta, SnapshotAction};
use loch_testkit::data::{arrow_schema, rows, scan_all, write_data_files};

pub struct Env {
    pub catalogs: Arc<CatalogService>,
    pub table_id: i64,
    pub name: String,
    dir: Arc<tempfile::TempDir>,
}

pub fn schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::required(2, "category", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::optional(3, "value", Type::Primitive(PrimitiveType::Double)).into(),
        ])
        .with_identifier_field_ids(vec![1])
        .build()
        .unwrap()
}

impl Env {
    /// A table (partitioned by category when `partitioned`) with `properties`.
    pub async fn new(partitioned: bool, properties: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("loch.db").display());
        let store = MetaStore::connect(&url, &StoreOptions::default()).await.unwrap();
        let catalogs = Arc::new(CatalogService::new(store, ServiceOptions::default()));
        catalogs.ensure_catalog("local", &format!("file://{}/wh", dir.path().display())).await.unwrap();
        let catalog = catalogs.resolve("local").await.unwrap();
        catalogs.create_namespace(&catalog, &["db".to_string()], Default::default()).await.unwrap();
        Self::create(catalogs, Arc::new(dir), "t", partitioned, properties).await
    }

    /// Another table `name` in the same catalog.
    pub async fn other_table(&self, name: &str, partitioned: bool, properties: &[(&str, &str)]) -> Self {
        Self::create(self.catalogs.clone(), self.dir.clone(), name, partitioned, properties).await
    }

    /// Another table `name` with its own schema and partition spec.
    pub async fn custom_table(
        &self,
        name: &str,
        schema: Schema,
        spec: Option<UnboundPartitionSpec>,
        properties: &[(&str, &str)],
    ) -> Self {
        Self::create_with(self.catalogs.clone(), self.dir.clone(), name, schema, spec, properties).await
    }

    async fn create(
        catalogs: Arc<CatalogService>,
        dir: Arc<tempfile::TempDir>,
        name: &str,
        partitioned: bool,
        properties: &[(&str, &str)],
    ) -> Self {
        let spec = if partitioned {
            Some(
                UnboundPartitionSpec::builder()
                    .add_partition_field(2, "category", Transform::Identity)
                    .unwrap()
                    .build(),
            )
        } else {
            None
        };
        Self::create_with(catalogs, dir, name, schema(), spec, properties).await
    }

    async fn create_with(
        catalogs: Arc<CatalogService>,
        dir: Arc<tempfile::TempDir>,
        name: &str,
        schema: Schema,
        spec: Option<UnboundPartitionSpec>,
        properties: &[(&str, &str)],
    ) -> Self {
        let catalog = catalogs.resolve("local").await.unwrap();
        let create = CreateTable {
            name: name.into(),
            location: None,
            schema,
            partition_spec: spec,
            write_order: None,
            stage_create: false,
            properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(),
        };
        catalogs.create_table(&catalog, &["db".to_string()], create).await.unwrap();
        let record = catalogs.store().get_table(catalog.record.id, &["db".to_string()], name).await.unwrap().unwrap();
        Self { catalogs, table_id: record.id, name: name.to_string(), dir }
    }

    pub async fn table(&self) -> ManagedTable {
        ManagedTable::load(&self.catalogs, self.table_id).await.unwrap().unwrap()
    }

    pub async fn commit(&self, pending: PendingCommit) {
        let t = self.table().await;
        let change = TableChange {
            ident: TableName::new(vec!["db".into()], self.name.clone()),
            requirements: pending.requirements,
            updates: pending.updates,
        };
        self.catalogs.commit_table(&t.catalog, change).await.unwrap();
    }

    /// Appends rows `ids` of `category`, one data file per partition.
    pub async fn append(&self, ids: impl IntoIterator<Item = i64>, category: &str) -> Vec<iceberg::spec::DataFile> {
        let t = self.table().await;
        self.append_batch(&batch(&t.table, ids, category)).await
    }

    /// Appends the rows of `batch` (of the table's schema), one data file per partition.
    pub async fn append_batch(&self, batch: &RecordBatch) -> Vec<iceberg::spec::DataFile> {
        let t = self.table().await;
        let files = write_data_files(&t.table, batch).await.unwrap();
        let mut delta = RowDelta::new();
        for f in &files {
            delta = delta.add_rows(f.clone());
        }
        self.commit(delta.prepare(&t.table).await.unwrap()).await;
        files
    }

    /// Commits delete files.
    pub async fn delete(&self, files: Vec<iceberg::spec::DataFile>) {
        let t = self.table().await;
        let mut delta = RowDelta::new();
        for f in files {
            delta = delta.add_deletes(f);
        }
        self.commit(delta.prepare(&t.table).await.unwrap()).await;
    }

    /// Every row, sorted, as text maps.
    pub async fn rows(&self) -> Vec<std::collections::BTreeMap<String, String>> {
        rows(&scan_all(&self.table().await.table).await.unwrap())
    }

    /// The live files of the current snapshot.
    pub async fn live_files(&self) -> Vec<loch_table::scan::LiveFile> {
        let t = self.table().await;
        let snapshot = t.table.metadata().current_snapshot().unwrap().clone();
        futures::TryStreamExt::try_collect(loch_table::scan::live_files(
            t.table.file_io().clone(),
            t.table.metadata_ref(),
            snapshot,
        ))
        .await
        .unwrap()
    }

    /// Counts of live (data, position delete, equality delete) files.
    pub async fn file_counts(&self) -> (usize, usize, usize) {
        let files = self.live_files().await;
        let count = |c| files.iter().filter(|f| f.content() == c).count();
        (
            count(iceberg::spec::DataContentType::Data),
            count(iceberg::spec::DataContentType::PositionDeletes),
            count(iceberg::spec::DataContentType::EqualityDeletes),
        )
    }
}

pub fn batch(table: &iceberg::table::Table, ids: impl IntoIterator<Item = i64>, category: &str) -> RecordBatch {
    let ids: Vec<i64> = ids.into_iter().collect();
    RecordBatch::try_new(
        arrow_schema(table),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from(vec![category; ids.len()])),
            Arc::new(Float64Array::from(ids.iter().map(|i| *i as f64 * 1.5).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}
