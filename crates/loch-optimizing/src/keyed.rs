//! Self-optimizing of keyed (Mixed-Iceberg) tables, Amoro's §2 and §5 on Loch's process
//! framework: the base store's runtime stands for the table; its evaluation counts the change
//! files not folded yet as fragments; a process folds every such change file of the chosen
//! partitions (minor) and, for major and full, rewrites base files too; its tasks are split by
//! file-tree node; its commit is one base-store snapshot that swaps the files and advances each
//! partition's optimized sequence, so readers see the table before or after, never between.
//! Changes committed while a process runs have greater sequences and stay visible.

use std::collections::HashMap;

use futures::TryStreamExt;
use iceberg::spec::DataContentType;
use loch_api::optimizer::{InputFile, KeyedTask, TaskInput, TaskOutput, encode_file};
use loch_catalog::{CatalogError, CatalogService, TableChange};
use loch_table::mixed::change::change_file_schema;
use loch_table::mixed::file_name::{FileMeta, FileType};
use loch_table::mixed::optimize::KeyedCommit;
use loch_table::mixed::plan::{KeyedPartition, plan_partition};
use loch_table::mixed::sequence::{OptimizedSequence, partition_path, read_optimized_sequence};
use loch_table::scan::{LiveFile, live_files, live_files_after};
use loch_table::snapshot::{MergeManifests, merge_manifests};

use crate::committer::{OPTIMIZING_TYPE_PROPERTY, PROCESS_ID_PROPERTY, ProcessOutput, discard_written};
use crate::error::{OptimizingError, Result};
use crate::evaluator::{Evaluation, LastOptimized, OptimizingType, PartitionId, PartitionStats, check_supported};
use crate::plan::{ProcessPlan, choose_partitions};
use crate::table::{KeyedStores, ManagedTable};
use crate::task::{decode_file, live_file, task_input};

/// Evaluates a keyed table: its base store's files by Amoro's classes, and per partition the
/// change files above its optimized sequence.
pub(crate) async fn evaluate_keyed(
    table: &ManagedTable,
    keyed: &KeyedStores,
    times: &LastOptimized,
    now_ms: i64,
) -> Result<Option<Evaluation>> {
    let Some(state) = table.state() else { return Ok(None) };
    let base = &table.table;
    let sequence = read_optimized_sequence(base).await?;
    let mut partitions: HashMap<PartitionId, PartitionStats> = HashMap::new();
    let metadata = base.metadata_ref();
    if let Some(head) = metadata.current_snapshot().cloned() {
        let mut files = live_files(base.file_io().clone(), metadata.clone(), head);
        while let Some(file) = files.try_next().await? {
            check_supported(&metadata, &file)?;
            partitions.entry((file.spec_id, file.file.partition().clone())).or_default().add(&file, &table.props);
        }
    }
    for (file, _) in unfolded_change(table, keyed, &sequence).await? {
        let is_delete = FileMeta::of_change(file.path(), file.data_sequence_number).file_type == FileType::EqDelete;
        partitions.entry((file.spec_id, file.file.partition().clone())).or_default().add_change(&file, is_delete);
    }
    let snapshot_id = metadata.current_snapshot_id().unwrap_or(0);
    let mut evaluation = crate::evaluator::evaluate_partitions(
        snapshot_id,
        partitions,
        &table.props,
        times,
        now_ms,
        Some(keyed.buckets),
    );
    evaluation.state = state;
    Ok(Some(evaluation))
}

/// The change files above their partition's optimized `sequence`, with their partition path.
async fn unfolded_change(
    table: &ManagedTable,
    keyed: &KeyedStores,
    sequence: &OptimizedSequence,
) -> Result<Vec<(LiveFile, String)>> {
    let change = keyed.change.metadata_ref();
    let Some(head) = change.current_snapshot().cloned() else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    let floor = sequence.floor(&change);
    let mut files = live_files_after(keyed.change.file_io().clone(), change.clone(), head, floor);
    while let Some(file) = files.try_next().await? {
        check_supported(&change, &file)?;
        if file.is_delete() {
            return Err(OptimizingError::Table(loch_table::TableError::Unsupported(format!(
                "the change store of {} holds Iceberg delete file {}; keyed tables delete with ED files",
                table.display_name(),
                file.path()
            ))));
        }
        let spec = change
            .partition_spec_by_id(file.spec_id)
            .ok_or_else(|| OptimizingError::Corrupt(format!("change file {} has an unknown spec", file.path())))?;
        let path = partition_path(spec, file.file.partition(), change.current_schema())?;
        if !sequence.covers(&path, file.data_sequence_number) {
            out.push((file, path));
        }
    }
    Ok(out)
}

/// Plans a process for a keyed table from its evaluation: the chosen partitions' change files
/// (at most `max-file-count`, taken whole by sequence number so each partition's folded range
/// is closed) and base files, one task per file-tree node.
pub(crate) async fn plan_keyed(
    table: &ManagedTable,
    keyed: &KeyedStores,
    evaluation: &Evaluation,
    budget_bytes: u64,
) -> Result<Option<ProcessPlan>> {
    let props = &table.props;
    let chosen = choose_partitions(evaluation, props, budget_bytes);
    if chosen.is_empty() {
        return Ok(None);
    }
    let base = &table.table;
    let metadata = base.metadata_ref();
    let sequence = read_optimized_sequence(base).await?;

    // Change files of the chosen partitions, up to a sequence number that keeps them within
    // max-file-count (every file at or below it is taken, so the folded range has no holes).
    let mut change: Vec<(LiveFile, String)> = unfolded_change(table, keyed, &sequence)
        .await?
        .into_iter()
        .filter(|(f, _)| chosen.contains_key(&(f.spec_id, f.file.partition().clone())))
        .collect();
    change.sort_by_key(|(f, _)| f.data_sequence_number);
    let mut keep = 0usize;
    for group in change.chunk_by(|a, b| a.0.data_sequence_number == b.0.data_sequence_number) {
        if keep > 0 && keep + group.len() > props.max_file_count {
            break;
        }
        keep += group.len();
    }
    change.truncate(keep);

    let mut partitions: HashMap<PartitionId, (String, KeyedPartition)> = HashMap::new();
    for (file, path) in change {
        let id = (file.spec_id, file.file.partition().clone());
        partitions.entry(id).or_insert_with(|| (path, KeyedPartition::default())).1.change.push(file);
    }
    if let Some(head) = metadata.current_snapshot().cloned() {
        let mut files = live_files(base.file_io().clone(), metadata.clone(), head);
        while let Some(file) = files.try_next().await? {
            check_supported(&metadata, &file)?;
            let id = (file.spec_id, file.file.partition().clone());
            if !chosen.contains_key(&id) {
                continue;
            }
            let spec = metadata
                .partition_spec_by_id(file.spec_id)
                .ok_or_else(|| OptimizingError::Corrupt(format!("file {} has an unknown spec", file.path())))?;
            let path = partition_path(spec, file.file.partition(), metadata.current_schema())?;
            let part = &mut partitions.entry(id).or_insert_with(|| (path, KeyedPartition::default())).1;
            match file.content() {
                DataContentType::Data => part.base.push(file),
                DataContentType::PositionDeletes => part.deletes.push(file),
                DataContentType::EqualityDeletes => {
                    return Err(OptimizingError::Table(loch_table::TableError::Unsupported(format!(
                        "the base store holds equality delete file {}; keyed tables delete base rows by position",
                        file.path()
                    ))));
                }
            }
        }
    }

    let base_metadata = base
        .metadata_location()
        .ok_or_else(|| OptimizingError::Corrupt(format!("{} has no metadata location", table.display_name())))?
        .to_string();
    let change_schema = change_file_schema(metadata.current_schema())?;
    let mut kind = OptimizingType::Minor;
    let mut tasks = Vec::new();
    for (id, (path, part)) in partitions {
        let decision = chosen[&id];
        let to_sequence = part.change.iter().map(|f| f.data_sequence_number).max();
        let fragment = |f: &LiveFile| f.file.file_size_in_bytes() <= props.fragment_size();
        let undersized = |f: &LiveFile| f.file.file_size_in_bytes() <= props.min_target_size();
        let too_many_deletes = |f: &LiveFile, deletes: &[LiveFile]| {
            let positions: u64 = deletes.iter().map(|d| d.file.record_count()).sum();
            positions as f64 > f.file.record_count() as f64 * props.major_duplicate_ratio
        };
        let plan = plan_partition(part, |f, deletes| match decision {
            OptimizingType::Full => props.full_rewrite_all_files || !deletes.is_empty() || undersized(f),
            OptimizingType::Major => undersized(f) || too_many_deletes(f, deletes),
            OptimizingType::Minor => fragment(f) || too_many_deletes(f, deletes),
        });
        if plan.tasks.is_empty() {
            continue;
        }
        kind = kind.max(decision);
        for (i, node) in plan.tasks.iter().enumerate() {
            // The partition's obsolete deletes ride with its first task.
            let obsolete: &[LiveFile] = if i == 0 { &plan.obsolete_deletes } else { &[] };
            let planned = crate::plan::partition::PlannedTask::of_node(&id, node);
            let mut input: TaskInput = task_input(table, &planned, obsolete)?;
            let change = node
                .change
                .iter()
                .map(|f| change_input(&metadata, &change_schema, f))
                .collect::<Result<Vec<InputFile>>>()?;
            input.keyed = Some(KeyedTask {
                base_metadata: base_metadata.clone(),
                primary_key: keyed.primary_key.clone(),
                buckets: keyed.buckets,
                partition: path.clone(),
                from_sequence: sequence.get(&path),
                to_sequence,
                change,
            });
            tasks.push((if path.is_empty() { "(unpartitioned)".to_string() } else { path.clone() }, input));
        }
    }
    if tasks.is_empty() {
        return Ok(None);
    }
    Ok(Some(ProcessPlan { kind, snapshot_id: evaluation.snapshot_id, tasks }))
}

/// A change file as a task input carries it (encoded with the change store's file schema).
fn change_input(
    metadata: &iceberg::spec::TableMetadata,
    schema: &iceberg::spec::Schema,
    file: &LiveFile,
) -> Result<InputFile> {
    let spec = metadata
        .partition_spec_by_id(file.spec_id)
        .ok_or_else(|| OptimizingError::Corrupt(format!("unknown partition spec {}", file.spec_id)))?;
    Ok(InputFile {
        file: encode_file(file.file.clone(), spec, schema, metadata.format_version())?,
        spec_id: file.spec_id,
        data_sequence_number: file.data_sequence_number,
        file_sequence_number: file.file_sequence_number,
        deletes: Vec::new(),
    })
}

/// One attempt to commit a keyed process, under the base store's commit lock: recognizes an
/// earlier attempt that committed, checks that no partition's optimized sequence moved since
/// planning, and commits the files and the advanced sequence as one base snapshot.
pub(crate) async fn commit_keyed_once(
    catalogs: &CatalogService,
    output: ProcessOutput<'_>,
    start: Option<i64>,
) -> Result<crate::committer::Committed> {
    let ProcessOutput { table_id, process_id, kind, results, .. } = output;
    let (lock, table) = ManagedTable::load_locked(catalogs, table_id).await?;
    let metadata = table.table.metadata();
    if let Some(snapshot) = metadata
        .snapshots()
        .find(|s| s.summary().additional_properties.get(PROCESS_ID_PROPERTY) == Some(&process_id.to_string()))
    {
        return Ok(crate::committer::Committed { snapshot_id: snapshot.snapshot_id(), already: true });
    }
    let mut sequence = read_optimized_sequence(&table.table).await?;
    let mut commit = KeyedCommit {
        start,
        properties: vec![
            ("snapshot.producer".into(), "OPTIMIZE".into()),
            (PROCESS_ID_PROPERTY.into(), process_id.to_string()),
            (OPTIMIZING_TYPE_PROPERTY.into(), kind.as_str().into()),
        ],
        ..Default::default()
    };
    let mut advanced: HashMap<String, i64> = HashMap::new();
    for (input, out) in results {
        let task = input
            .keyed
            .as_ref()
            .ok_or_else(|| OptimizingError::Corrupt("a keyed process holds a task that is not keyed".into()))?;
        if sequence.get(&task.partition) != task.from_sequence {
            return Err(OptimizingError::Table(loch_table::TableError::Conflict(format!(
                "the optimized sequence of partition {:?} moved from {:?} to {:?} since planning",
                task.partition,
                task.from_sequence,
                sequence.get(&task.partition)
            ))));
        }
        if let Some(to) = task.to_sequence {
            let entry = advanced.entry(task.partition.clone()).or_insert(to);
            *entry = (*entry).max(to);
        }
        add_results(metadata, input, out, &mut commit)?;
    }
    for (path, to) in advanced {
        sequence.0.insert(path, to);
    }
    commit.sequence = sequence;
    let pending = commit.prepare(&table.table).await?;
    let change = TableChange {
        ident: table.name.clone(),
        requirements: pending.requirements.clone(),
        updates: pending.updates.clone(),
    };
    match catalogs.commit_table_locked(&lock, &table.catalog, change).await {
        Ok(_) => Ok(crate::committer::Committed { snapshot_id: pending.snapshot_id, already: false }),
        Err(e) => {
            discard_written(table.table.file_io(), &pending.written_files, &e).await;
            if let CatalogError::CommitFailed(reason) = &e {
                tracing::debug!(table_id, process_id, %reason, "keyed optimizing commit lost a race");
            }
            Err(e.into())
        }
    }
}

/// Merges the change store's manifests that the optimized sequence covers, once there are
/// `commit.manifest.min-count-to-merge` (100) of them, into manifests of about
/// `commit.manifest.target-size-bytes` (see [`MergeManifests`]): the change store gets one
/// manifest per commit and keeps folded files for the change-data TTL, and without this every
/// read and ingest commit reads a manifest list that grows for days. True when it committed.
pub(crate) async fn merge_folded_change_manifests(catalogs: &CatalogService, table_id: i64) -> Result<bool> {
    let Some(base) = ManagedTable::load(catalogs, table_id).await? else { return Ok(false) };
    if base.keyed.is_none() {
        return Ok(false);
    }
    let change_name = loch_catalog::keyed::change_name(&base.name.name);
    let Some(record) = catalogs.store().get_table(base.catalog.record.id, &base.name.namespace, &change_name).await?
    else {
        return Ok(false);
    };
    let sequence = read_optimized_sequence(&base.table).await?;
    let (lock, change) = ManagedTable::load_locked(catalogs, record.id).await?;
    let metadata = change.table.metadata();
    let floor = sequence.floor(metadata);
    // The keyed table's properties (catalog defaults, base store), then the change store's own.
    let mut props = crate::properties::merge(&base.catalog.record.properties, base.table.metadata().properties());
    props.extend(metadata.properties().iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let props = crate::properties::Props(&props);
    let enabled = props.bool(MANIFEST_MERGE_ENABLED, true)?;
    if floor == i64::MIN || !enabled {
        return Ok(false);
    }
    let min_count = props.num(MANIFEST_MIN_MERGE_COUNT, merge_manifests::DEFAULT_MIN_COUNT_TO_MERGE)?;
    let target = props.num(MANIFEST_TARGET_SIZE_BYTES, merge_manifests::DEFAULT_TARGET_SIZE_BYTES)?;
    let merge = MergeManifests::through(floor)
        .min_count(min_count)
        .target_size_bytes(target)
        .set_property("snapshot.producer", "OPTIMIZE");
    let Some(pending) = merge.prepare(&change.table).await? else { return Ok(false) };
    let commit =
        TableChange { ident: change.name.clone(), requirements: pending.requirements, updates: pending.updates };
    if let Err(e) = catalogs.commit_table_locked(&lock, &change.catalog, commit).await {
        discard_written(change.table.file_io(), &pending.written_files, &e).await;
        return Err(e.into());
    }
    tracing::debug!(table = %change.display_name(), floor, "merged the change store's folded manifests");
    Ok(true)
}

/// Iceberg's `commit.manifest-merge.enabled`.
const MANIFEST_MERGE_ENABLED: &str = "commit.manifest-merge.enabled";
/// Iceberg's `commit.manifest.min-count-to-merge`.
const MANIFEST_MIN_MERGE_COUNT: &str = "commit.manifest.min-count-to-merge";
/// Iceberg's `commit.manifest.target-size-bytes`.
const MANIFEST_TARGET_SIZE_BYTES: &str = "commit.manifest.target-size-bytes";

fn add_results(
    metadata: &iceberg::spec::TableMetadata,
    input: &TaskInput,
    out: &TaskOutput,
    commit: &mut KeyedCommit,
) -> Result<()> {
    for f in &input.rewrite {
        commit.rewritten.push(live_file(metadata, f)?);
    }
    for f in &input.obsolete_deletes {
        commit.obsolete_deletes.push(live_file(metadata, f)?);
    }
    for f in &out.data_files {
        commit.data_files.push(decode_file(metadata, &f.file, f.spec_id)?);
    }
    for f in &out.delete_files {
        commit.position_deletes.push((decode_file(metadata, &f.file, f.spec_id)?, f.spec_id));
    }
    Ok(())
}
