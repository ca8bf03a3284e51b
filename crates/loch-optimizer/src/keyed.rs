//! Executing a keyed task (a Mixed-Iceberg table's minor, major or full optimizing of one
//! partition and bucket subtree): the files are decoded against the base store's metadata file
//! the task was planned on, and `loch_table::mixed::optimize` does the work.

use std::sync::Arc;
use std::time::Instant;

use iceberg::spec::{DataFile, Schema, TableMetadata};
use iceberg::table::Table;
use iceberg::{NamespaceIdent, Runtime, TableIdent};
use loch_api::optimizer::{
    InputFile, KeyedTask, OutputFile, TaskInput, TaskOutput, TaskSummary, decode_file, encode_file,
};
use loch_table::mixed::change::change_file_schema;
use loch_table::mixed::optimize::{BaseFile, NodeFiles, optimize_node};
use loch_table::scan::LiveFile;

use crate::error::{ExecuteError, Result};

/// Runs a keyed task.
pub async fn execute_keyed(input: &TaskInput, keyed: &KeyedTask) -> Result<TaskOutput> {
    let start = Instant::now();
    let io = loch_table::io::file_io(input.storage.clone());
    let metadata = TableMetadata::read_from(&io, &keyed.base_metadata).await?;
    if metadata.location() != input.location {
        return Err(ExecuteError::Input(format!(
            "the base metadata {} belongs to {}, not to the task's table at {}",
            keyed.base_metadata,
            metadata.location(),
            input.location
        )));
    }
    let schema = metadata.current_schema().clone();
    let change_schema = change_file_schema(&schema)?;
    let live = |f: &InputFile, schema: &Schema| -> Result<LiveFile> {
        let spec = metadata
            .partition_spec_by_id(f.spec_id)
            .ok_or_else(|| ExecuteError::Input(format!("partition spec {} is missing", f.spec_id)))?;
        Ok(LiveFile {
            file: decode_file(&f.file, spec, schema)?,
            spec_id: f.spec_id,
            data_sequence_number: f.data_sequence_number,
            file_sequence_number: f.file_sequence_number,
        })
    };
    let deletes: Vec<LiveFile> = input.deletes.iter().map(|f| live(f, &schema)).collect::<Result<_>>()?;
    let base_file = |f: &InputFile| -> Result<BaseFile> {
        let own = f
            .deletes
            .iter()
            .map(|&i| deletes.get(i).cloned().ok_or_else(|| ExecuteError::Input(format!("no delete file {i}"))))
            .collect::<Result<_>>()?;
        Ok(BaseFile { file: live(f, &schema)?, deletes: own })
    };
    let files = NodeFiles {
        change: keyed.change.iter().map(|f| live(f, &change_schema)).collect::<Result<_>>()?,
        rewrite: input.rewrite.iter().map(base_file).collect::<Result<_>>()?,
        reposition: input.reposition.iter().map(base_file).collect::<Result<_>>()?,
    };
    let mut summary = TaskSummary::default();
    let inputs = files.change.iter().chain(files.rewrite.iter().chain(&files.reposition).map(|f| &f.file));
    summary.input_bytes = inputs.chain(&deletes).map(|f| f.file.file_size_in_bytes()).sum();

    let version = metadata.format_version();
    let base = Table::builder()
        .identifier(TableIdent::new(NamespaceIdent::new("optimizing".into()), input.table.clone()))
        .file_io(io)
        .metadata(Arc::new(metadata))
        .metadata_location(keyed.base_metadata.clone())
        .runtime(Runtime::current())
        .build()?;
    let done = optimize_node(&base, &keyed.primary_key, keyed.buckets, &files).await?;
    let encode = |file: DataFile, spec_id: i32| -> Result<OutputFile> {
        let spec = base
            .metadata()
            .partition_spec_by_id(spec_id)
            .ok_or_else(|| ExecuteError::Input(format!("partition spec {spec_id} is missing")))?;
        Ok(OutputFile { file: encode_file(file, spec, &schema, version)?, spec_id })
    };
    let default_spec = base.metadata().default_partition_spec_id();
    let written = done.written_files();
    let outputs = done.data_files.iter().chain(done.position_deletes.iter().map(|(f, _)| f));
    summary.output_bytes = outputs.map(|f| f.file_size_in_bytes()).sum();
    summary.rows_read = done.rows_read;
    summary.rows_written = done.rows_written;
    summary.positions_written = done.positions_written;
    let encoded = (|| -> Result<(Vec<OutputFile>, Vec<OutputFile>)> {
        let data = done.data_files.into_iter().map(|f| encode(f, default_spec)).collect::<Result<_>>()?;
        let deletes = done.position_deletes.into_iter().map(|(f, spec)| encode(f, spec)).collect::<Result<_>>()?;
        Ok((data, deletes))
    })();
    let (data_files, delete_files) = match encoded {
        Ok(files) => files,
        Err(e) => {
            for path in written {
                let _ = base.file_io().delete(&path).await;
            }
            return Err(e);
        }
    };
    summary.duration_ms = start.elapsed().as_millis() as u64;
    Ok(TaskOutput { data_files, delete_files, summary })
}
