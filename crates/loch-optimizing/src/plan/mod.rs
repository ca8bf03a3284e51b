//! Planning a process: picks the evaluated partitions that fit the plan's input budget, reads
//! their files (a second streaming pass that keeps only those partitions), plans each, and builds
//! the task inputs.

pub mod partition;

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use loch_api::optimizer::TaskInput;
use loch_table::scan::{LiveFile, live_files};

use self::partition::{PartitionFiles, plan_partition};
use crate::error::{OptimizingError, Result};
use crate::evaluator::{Evaluation, OptimizingType, PartitionId};
use crate::table::ManagedTable;
use crate::task::task_input;

/// A process ready to be created.
#[derive(Debug, Clone)]
pub struct ProcessPlan {
    /// Its type (the heaviest of its partitions).
    pub kind: OptimizingType,
    /// The snapshot it was planned on.
    pub snapshot_id: i64,
    /// Its tasks: partition name and input.
    pub tasks: Vec<(String, TaskInput)>,
}

/// The evaluated partitions a plan takes: heaviest first, until `budget_bytes` of input or
/// `max-file-count` files (at least one).
pub(crate) fn choose_partitions(
    evaluation: &Evaluation,
    props: &crate::properties::OptimizingProperties,
    budget_bytes: u64,
) -> HashMap<PartitionId, OptimizingType> {
    let mut chosen: HashMap<PartitionId, OptimizingType> = HashMap::new();
    let (mut bytes, mut files) = (0u64, 0u64);
    for p in &evaluation.pending {
        let s = &p.stats;
        let input = match p.decision {
            OptimizingType::Full => s.data_bytes,
            _ => s.fragment_bytes + s.undersized_bytes,
        } + s.eq_delete_bytes
            + s.pos_delete_bytes
            + s.change_bytes;
        let count = s.data_files + s.eq_delete_files + s.pos_delete_files + s.change_files;
        if !chosen.is_empty() && (bytes + input > budget_bytes || files + count > props.max_file_count as u64) {
            break;
        }
        bytes += input;
        files += count;
        chosen.insert(p.id.clone(), p.decision);
    }
    chosen
}

/// Plans a process for `table` from `evaluation`, reading at most `budget_bytes` of input.
/// `None` when the chosen partitions turn out to have nothing worth doing.
pub async fn plan_process(
    table: &ManagedTable,
    evaluation: &Evaluation,
    budget_bytes: u64,
) -> Result<Option<ProcessPlan>> {
    let props = &table.props;
    let metadata = table.table.metadata_ref();
    let snapshot = metadata
        .snapshot_by_id(evaluation.snapshot_id)
        .cloned()
        .ok_or_else(|| OptimizingError::NotFound(format!("evaluated snapshot {}", evaluation.snapshot_id)))?;

    let chosen = choose_partitions(evaluation, props, budget_bytes);
    if chosen.is_empty() {
        return Ok(None);
    }

    // Second pass: the files of the chosen partitions (and deletes of unpartitioned specs, which
    // apply across partitions).
    let global_specs: HashSet<i32> =
        metadata.partition_specs_iter().filter(|s| s.is_unpartitioned()).map(|s| s.spec_id()).collect();
    let table_partitioned = !metadata.default_partition_spec().is_unpartitioned();
    let mut partitions: HashMap<PartitionId, PartitionFiles> = chosen
        .keys()
        .map(|id| {
            (id.clone(), PartitionFiles { id: id.clone(), data: Vec::new(), deletes: Vec::new(), complete: true })
        })
        .collect();
    let mut global_deletes: Vec<LiveFile> = Vec::new();
    let mut stream = live_files(table.table.file_io().clone(), metadata.clone(), snapshot);
    while let Some(file) = stream.try_next().await? {
        crate::evaluator::check_supported(&metadata, &file)?;
        if table_partitioned && file.is_delete() && global_specs.contains(&file.spec_id) {
            global_deletes.push(file);
            continue;
        }
        let id = (file.spec_id, file.file.partition().clone());
        let Some(part) = partitions.get_mut(&id) else { continue };
        if file.is_delete() {
            part.deletes.push(file);
        } else if part.data.len() < props.max_file_count {
            part.data.push(file);
        } else {
            part.complete = false;
        }
    }

    let schema = metadata.current_schema().clone();
    let mut kind = OptimizingType::Minor;
    let mut tasks = Vec::new();
    for (id, mut files) in partitions {
        files.deletes.extend(global_deletes.iter().cloned());
        let decision = chosen[&id];
        let plan = plan_partition(files, decision, props);
        if plan.tasks.is_empty() {
            continue;
        }
        kind = kind.max(decision);
        let name = match metadata.partition_spec_by_id(id.0) {
            Some(spec) if !spec.is_unpartitioned() => spec.partition_to_path(&id.1, schema.clone()),
            _ => "(unpartitioned)".to_string(),
        };
        for (i, task) in plan.tasks.iter().enumerate() {
            // The partition's obsolete deletes ride with its first task.
            let obsolete: &[LiveFile] = if i == 0 { &plan.removed_deletes } else { &[] };
            tasks.push((name.clone(), task_input(table, task, obsolete)?));
        }
    }
    if tasks.is_empty() {
        return Ok(None);
    }
    Ok(Some(ProcessPlan { kind, snapshot_id: evaluation.snapshot_id, tasks }))
}
