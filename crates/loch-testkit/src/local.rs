//! A table on local disk with a file-only commit path (check requirements, apply updates,
//! write the next metadata file), for tests of `loch-table` that need no catalog, and writers of
//! delete files for any test.

use std::sync::Arc;

use anyhow::{Result, ensure};
use arrow_array::RecordBatch;
use iceberg::arrow::arrow_schema_to_schema;
use iceberg::io::FileIO;
use iceberg::spec::{
    DataFile, DataFileFormat, PartitionKey, Schema, SortOrder, TableMetadataBuilder, UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::writer::base_writer::equality_delete_writer::{
    EqualityDeleteFileWriterBuilder, EqualityDeleteWriterConfig,
};
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{TableIdent, TableUpdate};
use loch_table::snapshot::{PendingCommit, RowDelta, SnapshotAction};
use parquet::file::properties::WriterProperties;

/// A table whose metadata pointer lives in this struct.
pub struct LocalTable {
    /// The current table.
    pub table: Table,
    version: u32,
}

impl LocalTable {
    /// Creates a v2 table under `location` (a local directory).
    pub async fn create(location: &std::path::Path, schema: Schema, spec: UnboundPartitionSpec) -> Result<Self> {
        let location = format!("file://{}", location.display());
        let metadata = TableMetadataBuilder::new(
            schema,
            spec,
            SortOrder::unsorted_order(),
            location.clone(),
            iceberg::spec::FormatVersion::V2,
            Default::default(),
        )?
        .build()?
        .metadata;
        let io = FileIO::new_with_fs();
        let metadata_location = format!("{location}/metadata/00000-{}.metadata.json", uuid::Uuid::new_v4());
        io.new_output(&metadata_location)?.write(serde_json::to_vec(&metadata)?.into()).await?;
        let table = Table::builder()
            .identifier(TableIdent::from_strs(["test", "t"])?)
            .file_io(io)
            .metadata(metadata)
            .metadata_location(metadata_location)
            .runtime(iceberg::Runtime::current())
            .build()?;
        Ok(Self { table, version: 0 })
    }

    /// Applies a pending commit: requirements, updates, next metadata file.
    pub async fn commit(&mut self, pending: PendingCommit) -> Result<()> {
        self.apply(pending.requirements, pending.updates).await
    }

    /// Applies requirements and updates: checks, applies, writes the next metadata file.
    pub async fn apply(
        &mut self,
        requirements: Vec<iceberg::TableRequirement>,
        updates: Vec<TableUpdate>,
    ) -> Result<()> {
        for requirement in &requirements {
            requirement.check(Some(self.table.metadata()))?;
        }
        let current = self.table.metadata_location().map(str::to_string);
        let mut builder = TableMetadataBuilder::new_from_metadata(self.table.metadata().clone(), current);
        for update in updates {
            builder = update.apply(builder)?;
        }
        let metadata = builder.build()?.metadata;
        self.version += 1;
        let location =
            format!("{}/metadata/{:05}-{}.metadata.json", metadata.location(), self.version, uuid::Uuid::new_v4());
        self.table.file_io().new_output(&location)?.write(serde_json::to_vec(&metadata)?.into()).await?;
        self.table = Table::builder()
            .identifier(self.table.identifier().clone())
            .file_io(self.table.file_io().clone())
            .metadata(metadata)
            .metadata_location(location)
            .runtime(iceberg::Runtime::current())
            .build()?;
        Ok(())
    }

    /// Appends `batch` (split by partition).
    pub async fn append(&mut self, batch: &RecordBatch) -> Result<Vec<DataFile>> {
        let files = crate::data::write_data_files(&self.table, batch).await?;
        let mut delta = RowDelta::new();
        for f in &files {
            delta = delta.add_rows(f.clone());
        }
        let pending = delta.prepare(&self.table).await?;
        self.commit(pending).await?;
        Ok(files)
    }

    /// Commits delete files.
    pub async fn add_deletes(&mut self, files: Vec<DataFile>) -> Result<()> {
        let mut delta = RowDelta::new();
        for f in files {
            delta = delta.add_deletes(f);
        }
        let pending = delta.prepare(&self.table).await?;
        self.commit(pending).await
    }
}

/// Writes `keys` (rows of the table schema; only `equality_ids` columns matter) as an equality
/// delete file in the partition `partition` (None when unpartitioned).
pub async fn write_equality_deletes(
    table: &Table,
    equality_ids: Vec<i32>,
    keys: &RecordBatch,
    partition: Option<PartitionKey>,
) -> Result<DataFile> {
    let metadata = table.metadata();
    let config = EqualityDeleteWriterConfig::new(equality_ids, metadata.current_schema().clone())?;
    let delete_schema = arrow_schema_to_schema(config.projected_arrow_schema_ref())?;
    let rolling = RollingFileWriterBuilder::new_with_default_file_size(
        ParquetWriterBuilder::new(WriterProperties::default(), Arc::new(delete_schema)),
        table.file_io().clone(),
        DefaultLocationGenerator::new(metadata)?,
        DefaultFileNameGenerator::new(format!("eqdel-{}", uuid::Uuid::now_v7()), None, DataFileFormat::Parquet),
    );
    let mut writer = EqualityDeleteFileWriterBuilder::new(rolling, config).build(partition).await?;
    writer.write(keys.clone()).await?;
    let mut files = writer.close().await?;
    ensure!(files.len() == 1, "expected one equality delete file, got {}", files.len());
    Ok(files.remove(0))
}
