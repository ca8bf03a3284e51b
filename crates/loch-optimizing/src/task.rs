//! Converting between planned tasks and the protocol's task inputs and outputs.

use std::collections::BTreeSet;

use iceberg::spec::{DataFile, TableMetadata};
use loch_api::optimizer::{InputFile, TaskInput, TaskOutput, encode_file};
use loch_table::scan::LiveFile;

use crate::error::{OptimizingError, Result};
use crate::plan::partition::{PlannedFile, PlannedTask};
use crate::table::ManagedTable;

/// The task input of `task`; `obsolete` are delete files the commit removes.
pub fn task_input(table: &ManagedTable, task: &PlannedTask, obsolete: &[LiveFile]) -> Result<TaskInput> {
    let metadata = table.table.metadata();
    let files = task.rewrite.iter().chain(&task.reposition).map(|f| &f.file).chain(&task.deletes).chain(obsolete);
    let mut spec_ids: BTreeSet<i32> = files.map(|f| f.spec_id).collect();
    spec_ids.insert(metadata.default_partition_spec_id());
    let partition_specs = spec_ids
        .iter()
        .map(|id| {
            let spec = metadata
                .partition_spec_by_id(*id)
                .ok_or_else(|| OptimizingError::Corrupt(format!("unknown partition spec {id}")))?;
            Ok((**spec).clone().into_unbound())
        })
        .collect::<Result<Vec<_>>>()?;
    let planned = |files: &[PlannedFile]| -> Result<Vec<InputFile>> {
        files.iter().map(|f| input_file(metadata, &f.file, f.deletes.clone())).collect()
    };
    Ok(TaskInput {
        table: table.display_name(),
        location: metadata.location().to_string(),
        format_version: metadata.format_version(),
        schema: metadata.current_schema().as_ref().clone(),
        partition_specs,
        default_spec_id: metadata.default_partition_spec_id(),
        properties: metadata.properties().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        storage: table.storage().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        target_file_size: table.props.target_size,
        rewrite: planned(&task.rewrite)?,
        reposition: planned(&task.reposition)?,
        deletes: task.deletes.iter().map(|f| input_file(metadata, f, Vec::new())).collect::<Result<_>>()?,
        obsolete_deletes: obsolete.iter().map(|f| input_file(metadata, f, Vec::new())).collect::<Result<_>>()?,
        keyed: None,
    })
}

fn input_file(metadata: &TableMetadata, file: &LiveFile, deletes: Vec<usize>) -> Result<InputFile> {
    let spec = metadata
        .partition_spec_by_id(file.spec_id)
        .ok_or_else(|| OptimizingError::Corrupt(format!("unknown partition spec {}", file.spec_id)))?;
    Ok(InputFile {
        file: encode_file(file.file.clone(), spec, metadata.current_schema(), metadata.format_version())?,
        spec_id: file.spec_id,
        data_sequence_number: file.data_sequence_number,
        file_sequence_number: file.file_sequence_number,
        deletes,
    })
}

/// A file of a task input, decoded against the table's metadata.
pub fn live_file(metadata: &TableMetadata, input: &InputFile) -> Result<LiveFile> {
    Ok(LiveFile {
        file: decode_file(metadata, &input.file, input.spec_id)?,
        spec_id: input.spec_id,
        data_sequence_number: input.data_sequence_number,
        file_sequence_number: input.file_sequence_number,
    })
}

/// Decodes a data-file JSON of partition spec `spec_id`.
pub fn decode_file(metadata: &TableMetadata, json: &loch_api::optimizer::FileJson, spec_id: i32) -> Result<DataFile> {
    let spec = metadata
        .partition_spec_by_id(spec_id)
        .ok_or_else(|| OptimizingError::Corrupt(format!("unknown partition spec {spec_id}")))?;
    Ok(loch_api::optimizer::decode_file(json, spec, metadata.current_schema())?)
}

/// Input files and bytes of a task input (both stores of a keyed table).
pub fn input_size(input: &TaskInput) -> (i64, i64) {
    let change = input.keyed.iter().flat_map(|k| &k.change);
    files_size(input.rewrite.iter().chain(&input.reposition).chain(&input.deletes).chain(change))
}

/// Count and bytes of `files`.
pub fn files_size<'a>(files: impl IntoIterator<Item = &'a loch_api::optimizer::InputFile>) -> (i64, i64) {
    files.into_iter().fold((0, 0), |(n, b), f| (n + 1, b + f.file.file_size_in_bytes()))
}

/// Output files and bytes of a task output.
pub fn output_size(output: &TaskOutput) -> (i64, i64) {
    let files = output.data_files.iter().chain(&output.delete_files);
    files.fold((0, 0), |(n, b), f| (n + 1, b + f.file.file_size_in_bytes()))
}
