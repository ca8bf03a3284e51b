//! Planning the files of the partitions the evaluator chose: decides file by file what to rewrite and
//! what to re-express, assigns each data file the deletes that apply to it (by sequence number),
//! bin-packs the work into tasks, and finds the delete files the whole plan makes obsolete.
//!
//! Rules (Amoro's `CommonPartitionEvaluator` and `BinPackingTaskSplitter`):
//! - an equality delete applies to a data file of the same partition with a lower data sequence
//!   number; a position delete to one with a lower or equal number whose path it may hold;
//! - rewrite: fragments, and files whose position deletes exceed the duplicate ratio; for full
//!   optimizing every file with deletes or below the segment size (or every file);
//! - for major optimizing, undersized segments are bin-packed and bins of two or more rewritten;
//! - reposition (keep the file, write one position delete file for it): segments with equality
//!   deletes, with two or more position delete files, or with one not written by optimizing;
//! - a task with a single data file and no deletes is dropped (rewriting it gains nothing);
//! - a delete file is removed when every data file it applies to is rewritten or repositioned.

use std::collections::{HashMap, HashSet};

use iceberg::spec::DataContentType;
use loch_table::position_delete::is_optimizing_delete_for;
use loch_table::scan::LiveFile;
use loch_table::snapshot::rewrite::position_delete_may_apply;

use crate::evaluator::{OptimizingType, PartitionId};
use crate::properties::OptimizingProperties;

/// The live files of one partition.
#[derive(Debug, Clone)]
pub struct PartitionFiles {
    /// The partition.
    pub id: PartitionId,
    /// Its data files.
    pub data: Vec<LiveFile>,
    /// Delete files that may apply to them (the partition's own, and global ones).
    pub deletes: Vec<LiveFile>,
    /// True when these are all the partition's files (only then can deletes be removed).
    pub complete: bool,
}

/// A data file in a task, with the deletes that apply to it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFile {
    /// The data file.
    pub file: LiveFile,
    /// Indexes into [`PlannedTask::deletes`].
    pub deletes: Vec<usize>,
}

/// One unit of work for one optimizer thread.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTask {
    /// The partition.
    pub partition: PartitionId,
    /// Data files whose live rows are rewritten.
    pub rewrite: Vec<PlannedFile>,
    /// Data files that stay; their deletes become one position delete file.
    pub reposition: Vec<PlannedFile>,
    /// The delete files referenced above.
    pub deletes: Vec<LiveFile>,
}

impl PlannedTask {
    /// The base-store part of a keyed task, its position deletes indexed as tasks index them.
    pub fn of_node(partition: &PartitionId, node: &loch_table::mixed::optimize::NodeFiles) -> Self {
        let mut task = PlannedTask {
            partition: partition.clone(),
            rewrite: Vec::new(),
            reposition: Vec::new(),
            deletes: Vec::new(),
        };
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut plan = |f: &loch_table::mixed::optimize::BaseFile, deletes: &mut Vec<LiveFile>| PlannedFile {
            file: f.file.clone(),
            deletes: f
                .deletes
                .iter()
                .map(|d| {
                    *index.entry(d.path().to_string()).or_insert_with(|| {
                        deletes.push(d.clone());
                        deletes.len() - 1
                    })
                })
                .collect(),
        };
        for f in &node.rewrite {
            let planned = plan(f, &mut task.deletes);
            task.rewrite.push(planned);
        }
        for f in &node.reposition {
            let planned = plan(f, &mut task.deletes);
            task.reposition.push(planned);
        }
        task
    }

    /// Input files and bytes.
    pub fn input_size(&self) -> (u64, u64) {
        let files = self.rewrite.iter().chain(&self.reposition).map(|f| &f.file).chain(&self.deletes);
        files.fold((0, 0), |(n, b), f| (n + 1, b + f.file.file_size_in_bytes()))
    }
}

/// The plan of one partition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionPlan {
    /// Its tasks.
    pub tasks: Vec<PlannedTask>,
    /// Delete files that no longer apply to any row once the tasks are committed.
    pub removed_deletes: Vec<LiveFile>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Keep,
    Rewrite,
    Reposition,
}

/// Plans one partition for optimizing of `kind`.
pub fn plan_partition(files: PartitionFiles, kind: OptimizingType, props: &OptimizingProperties) -> PartitionPlan {
    let PartitionFiles { id, data, deletes, complete } = files;
    let same_partition = |d: &LiveFile| d.spec_id == id.0 && d.file.partition() == &id.1;
    // Deletes applying to each data file (indexes into `deletes`).
    let applying: Vec<Vec<usize>> = data
        .iter()
        .map(|d| deletes.iter().enumerate().filter(|(_, del)| applies(del, d)).map(|(i, _)| i).collect())
        .collect();

    let fragment = |f: &LiveFile| f.file.file_size_in_bytes() <= props.fragment_size();
    let undersized = |f: &LiveFile| !fragment(f) && f.file.file_size_in_bytes() <= props.min_target_size();
    let mut actions: Vec<Action> = data
        .iter()
        .zip(&applying)
        .map(|(d, dels)| {
            let pos_records: u64 = dels
                .iter()
                .map(|&i| &deletes[i])
                .filter(|del| del.content() == DataContentType::PositionDeletes)
                .map(|del| del.file.record_count())
                .sum();
            let too_many_pos = pos_records as f64 > d.file.record_count() as f64 * props.major_duplicate_ratio;
            let rewrite = match kind {
                OptimizingType::Full => {
                    props.full_rewrite_all_files || !dels.is_empty() || fragment(d) || undersized(d)
                }
                _ => fragment(d) || too_many_pos,
            };
            if rewrite {
                return Action::Rewrite;
            }
            let eq = dels
                .iter()
                .filter(|&&i| deletes[i].content() == DataContentType::EqualityDeletes && same_partition(&deletes[i]));
            let pos: Vec<&LiveFile> = dels
                .iter()
                .map(|&i| &deletes[i])
                .filter(|del| del.content() == DataContentType::PositionDeletes)
                .collect();
            let reposition = eq.count() > 0
                || pos.len() >= 2
                || (pos.len() == 1 && !is_optimizing_delete_for(pos[0].path(), d.path()));
            if reposition { Action::Reposition } else { Action::Keep }
        })
        .collect();

    // Major: merge undersized segments that are kept, in bins of two or more.
    if kind == OptimizingType::Major {
        let candidates: Vec<usize> =
            (0..data.len()).filter(|&i| actions[i] != Action::Rewrite && undersized(&data[i])).collect();
        for bin in bin_pack(&candidates, |i| data[i].file.file_size_in_bytes(), props.bin_size()) {
            if bin.len() >= 2 {
                for i in bin {
                    actions[i] = Action::Rewrite;
                }
            }
        }
    }

    // Tasks: rewrite and reposition files bin-packed together by size (not by open-file cost:
    // each task writes its own files, so bins must be as full as the target size allows).
    let work: Vec<usize> = (0..data.len()).filter(|&i| actions[i] != Action::Keep).collect();
    let mut tasks = Vec::new();
    for bin in bin_pack(&work, |i| data[i].file.file_size_in_bytes(), props.bin_size()) {
        let rewrites = bin.iter().filter(|&&i| actions[i] == Action::Rewrite).count();
        let only_one_clean_rewrite = bin.len() == 1 && rewrites == 1 && applying[bin[0]].is_empty();
        if only_one_clean_rewrite {
            actions[bin[0]] = Action::Keep;
            continue;
        }
        let mut task =
            PlannedTask { partition: id.clone(), rewrite: Vec::new(), reposition: Vec::new(), deletes: Vec::new() };
        let mut local: HashMap<usize, usize> = HashMap::new();
        for &i in &bin {
            let refs = applying[i]
                .iter()
                .map(|&del| {
                    *local.entry(del).or_insert_with(|| {
                        task.deletes.push(deletes[del].clone());
                        task.deletes.len() - 1
                    })
                })
                .collect();
            let planned = PlannedFile { file: data[i].clone(), deletes: refs };
            match actions[i] {
                Action::Rewrite => task.rewrite.push(planned),
                _ => task.reposition.push(planned),
            }
        }
        tasks.push(task);
    }

    // Delete files every data file of which is handled (or that apply to nothing) go away.
    let mut removed_deletes = Vec::new();
    if complete {
        let handled: HashSet<usize> = (0..data.len()).filter(|&i| actions[i] != Action::Keep).collect();
        for (j, del) in deletes.iter().enumerate() {
            if !same_partition(del) {
                continue; // A global delete may apply to other partitions.
            }
            let all_handled =
                applying.iter().enumerate().filter(|(_, dels)| dels.contains(&j)).all(|(i, _)| handled.contains(&i));
            if all_handled {
                removed_deletes.push(del.clone());
            }
        }
    }
    PartitionPlan { tasks, removed_deletes }
}

/// True when `delete` applies to `data` by the Iceberg rules.
pub fn applies(delete: &LiveFile, data: &LiveFile) -> bool {
    match delete.content() {
        DataContentType::EqualityDeletes => {
            let scoped = delete.spec_id != data.spec_id || delete.file.partition() == data.file.partition();
            scoped && delete.data_sequence_number > data.data_sequence_number
        }
        DataContentType::PositionDeletes => {
            delete.data_sequence_number >= data.data_sequence_number && position_delete_may_apply(delete, data)
        }
        DataContentType::Data => false,
    }
}

/// First-fit decreasing: groups `items` into bins whose `weight` sums stay within `capacity`
/// (an item heavier than the capacity gets a bin of its own).
fn bin_pack(items: &[usize], weight: impl Fn(usize) -> u64, capacity: u64) -> Vec<Vec<usize>> {
    let mut sorted: Vec<usize> = items.to_vec();
    sorted.sort_by_key(|&i| std::cmp::Reverse(weight(i)));
    let mut bins: Vec<(u64, Vec<usize>)> = Vec::new();
    for i in sorted {
        let w = weight(i);
        match bins.iter_mut().find(|(used, _)| used + w <= capacity) {
            Some((used, bin)) => {
                *used += w;
                bin.push(i);
            }
            None => bins.push((w, vec![i])),
        }
    }
    bins.into_iter().map(|(_, bin)| bin).collect()
}

#[cfg(test)]
mod tests {
    use iceberg::spec::{DataFileBuilder, DataFileFormat, Struct};

    use super::*;

    const MB: u64 = 1 << 20;

    fn file(path: &str, content: DataContentType, size: u64, records: u64, seq: i64) -> LiveFile {
        let mut b = DataFileBuilder::default();
        b.content(content)
            .file_path(path.to_string())
            .file_format(DataFileFormat::Parquet)
            .partition(Struct::empty())
            .record_count(records)
            .file_size_in_bytes(size);
        if content == DataContentType::EqualityDeletes {
            b.equality_ids(Some(vec![1]));
        }
        LiveFile { file: b.build().unwrap(), spec_id: 0, data_sequence_number: seq, file_sequence_number: seq }
    }

    fn plan(data: Vec<LiveFile>, deletes: Vec<LiveFile>, kind: OptimizingType) -> PartitionPlan {
        let files = PartitionFiles { id: (0, Struct::empty()), data, deletes, complete: true };
        plan_partition(files, kind, &OptimizingProperties::default())
    }

    fn paths(files: &[PlannedFile]) -> Vec<&str> {
        let mut p: Vec<&str> = files.iter().map(|f| f.file.path()).collect();
        p.sort();
        p
    }

    #[test]
    fn fragments_are_rewritten_together_and_segments_kept() {
        let data = vec![
            file("a", DataContentType::Data, MB, 10, 1),
            file("b", DataContentType::Data, MB, 10, 2),
            file("big", DataContentType::Data, 120 * MB, 1000, 1),
        ];
        let p = plan(data, vec![], OptimizingType::Minor);
        assert_eq!(p.tasks.len(), 1);
        assert_eq!(paths(&p.tasks[0].rewrite), vec!["a", "b"]);
        assert!(p.tasks[0].reposition.is_empty());
    }

    #[test]
    fn a_lone_clean_fragment_is_not_rewritten() {
        let p = plan(vec![file("a", DataContentType::Data, MB, 10, 1)], vec![], OptimizingType::Minor);
        assert!(p.tasks.is_empty());
    }

    #[test]
    fn deletes_follow_sequence_numbers() {
        let old = file("old", DataContentType::Data, MB, 10, 1);
        let new = file("new", DataContentType::Data, MB, 10, 3);
        let eq = file("eq", DataContentType::EqualityDeletes, 1024, 2, 2);
        assert!(applies(&eq, &old));
        assert!(!applies(&eq, &new), "an equality delete does not apply to later data");
        let pos = file("pos", DataContentType::PositionDeletes, 1024, 2, 3);
        assert!(applies(&pos, &new), "a position delete applies to data of the same sequence number");
        let p = plan(vec![old, new], vec![eq], OptimizingType::Minor);
        let task = &p.tasks[0];
        let old_file = task.rewrite.iter().find(|f| f.file.path() == "old").unwrap();
        assert_eq!(task.deletes[old_file.deletes[0]].path(), "eq");
        assert!(task.rewrite.iter().find(|f| f.file.path() == "new").unwrap().deletes.is_empty());
        assert_eq!(p.removed_deletes.len(), 1, "every file the delete applies to is rewritten");
    }

    #[test]
    fn segments_with_equality_deletes_are_repositioned() {
        let seg = file("seg", DataContentType::Data, 120 * MB, 1000, 1);
        let frag = file("frag", DataContentType::Data, MB, 10, 1);
        let eq = file("eq", DataContentType::EqualityDeletes, 1024, 2, 2);
        let p = plan(vec![seg, frag], vec![eq], OptimizingType::Minor);
        let all_reposition: Vec<&str> = p.tasks.iter().flat_map(|t| paths(&t.reposition)).collect();
        let all_rewrite: Vec<&str> = p.tasks.iter().flat_map(|t| paths(&t.rewrite)).collect();
        assert_eq!(all_reposition, vec!["seg"]);
        assert_eq!(all_rewrite, vec!["frag"]);
        assert_eq!(p.removed_deletes.len(), 1);
    }

    #[test]
    fn deletes_on_kept_files_stay() {
        let seg = file("seg", DataContentType::Data, 120 * MB, 1000, 1);
        let frag = file("frag", DataContentType::Data, MB, 10, 1);
        let frag2 = file("frag2", DataContentType::Data, MB, 10, 1);
        // An optimizing-written position delete on the segment: the segment stays as it is.
        let pos = file("seg-delete-1.parquet", DataContentType::PositionDeletes, 1024, 1, 1);
        let p = plan(vec![seg, frag, frag2], vec![pos], OptimizingType::Minor);
        assert!(p.tasks.iter().all(|t| t.reposition.is_empty()));
        assert!(p.removed_deletes.is_empty(), "the delete still applies to the kept segment");
    }

    #[test]
    fn full_optimizing_rewrites_every_file_with_deletes() {
        let seg = file("seg", DataContentType::Data, 120 * MB, 1000, 1);
        let clean = file("clean", DataContentType::Data, 120 * MB, 1000, 3);
        let eq = file("eq", DataContentType::EqualityDeletes, 1024, 2, 2);
        let props = OptimizingProperties { full_rewrite_all_files: false, ..Default::default() };
        let files = PartitionFiles {
            id: (0, Struct::empty()),
            data: vec![seg.clone(), clean.clone()],
            deletes: vec![eq.clone()],
            complete: true,
        };
        let p = plan_partition(files, OptimizingType::Full, &props);
        let rewritten: Vec<&str> = p.tasks.iter().flat_map(|t| paths(&t.rewrite)).collect();
        assert_eq!(rewritten, vec!["seg"], "the clean segment is not touched when not rewriting all");
        assert_eq!(p.removed_deletes.len(), 1);
    }

    #[test]
    fn major_merges_undersized_segments() {
        let data: Vec<LiveFile> =
            (0..3).map(|i| file(&format!("u{i}"), DataContentType::Data, 50 * MB, 100, 1)).collect();
        assert!(plan(data.clone(), vec![], OptimizingType::Minor).tasks.is_empty());
        let p = plan(data, vec![], OptimizingType::Major);
        let rewritten: usize = p.tasks.iter().map(|t| t.rewrite.len()).sum();
        assert_eq!(rewritten, 2, "two of three 50 MB files fit one 128 MB bin");
    }

    #[test]
    fn bins_respect_capacity() {
        let bins = bin_pack(&[0, 1, 2, 3], |i| [70, 60, 50, 10][i], 128);
        assert_eq!(bins.len(), 2);
        assert!(bins.iter().all(|b| b.iter().map(|&i| [70u64, 60, 50, 10][i]).sum::<u64>() <= 128));
    }

    #[test]
    fn an_incomplete_partition_removes_no_deletes() {
        let files = PartitionFiles {
            id: (0, Struct::empty()),
            data: vec![file("a", DataContentType::Data, MB, 10, 1), file("b", DataContentType::Data, MB, 10, 1)],
            deletes: vec![file("eq", DataContentType::EqualityDeletes, 1024, 2, 2)],
            complete: false,
        };
        let p = plan_partition(files, OptimizingType::Minor, &OptimizingProperties::default());
        assert_eq!(p.tasks.len(), 1);
        assert!(p.removed_deletes.is_empty());
    }
}
