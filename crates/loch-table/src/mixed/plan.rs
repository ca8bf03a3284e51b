//! Splitting one partition of a keyed table into optimizing tasks by file-tree node (Amoro's
//! `TreeNodeTaskSplitter`): the nodes of the partition's files form a forest under `is_son_of`;
//! each tree's top node is one task holding every file below it. Keys of different tasks lie
//! in different buckets, so each task reads only the change files of its own keys.

use std::collections::HashSet;

use super::file_name::{FileMeta, FileType};
use super::optimize::{BaseFile, NodeFiles};
use super::tree::TreeNode;
use crate::position_delete::is_optimizing_delete_for;
use crate::scan::LiveFile;
use crate::snapshot::rewrite::position_delete_may_apply;

/// The live files of one partition of a keyed table.
#[derive(Debug, Clone, Default)]
pub struct KeyedPartition {
    /// Change files above the partition's optimized sequence.
    pub change: Vec<LiveFile>,
    /// Base data files.
    pub base: Vec<LiveFile>,
    /// Base position delete files.
    pub deletes: Vec<LiveFile>,
}

/// The tasks of one partition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyedPlan {
    /// One task per tree of nodes.
    pub tasks: Vec<NodeFiles>,
    /// Position delete files whose every data file a task rewrites or repositions: the
    /// commit removes them.
    pub obsolete_deletes: Vec<LiveFile>,
}

/// Plans one partition; `rewrite` says which base files (given their position deletes) are
/// rewritten rather than kept. A base file that stays is repositioned when change deletes may
/// hit it, or when its deletes are worth merging into one file.
pub fn plan_partition(part: KeyedPartition, rewrite: impl Fn(&LiveFile, &[LiveFile]) -> bool) -> KeyedPlan {
    let KeyedPartition { change, base, deletes } = part;
    let applying: Vec<Vec<usize>> = base
        .iter()
        .map(|d| {
            let applies = |del: &LiveFile| {
                del.data_sequence_number >= d.data_sequence_number && position_delete_may_apply(del, d)
            };
            deletes.iter().enumerate().filter(|(_, del)| applies(del)).map(|(i, _)| i).collect()
        })
        .collect();
    let change_nodes: Vec<(TreeNode, FileType)> = change
        .iter()
        .map(|f| {
            let meta = FileMeta::of_change(f.path(), f.data_sequence_number);
            (meta.node, meta.file_type)
        })
        .collect();
    let base_nodes: Vec<TreeNode> = base.iter().map(|f| FileMeta::of_base(f.path()).node).collect();
    let roots = roots(change_nodes.iter().map(|(n, _)| *n).chain(base_nodes.iter().copied()));

    let mut handled: HashSet<usize> = HashSet::new();
    let mut tasks = Vec::new();
    for root in roots {
        let mut task = NodeFiles::default();
        let mut change_deletes = false;
        for (file, (node, kind)) in change.iter().zip(&change_nodes) {
            if node.is_son_of(&root) {
                change_deletes |= *kind == FileType::EqDelete;
                task.change.push(file.clone());
            }
        }
        let mut members = Vec::new();
        for (i, file) in base.iter().enumerate() {
            if !base_nodes[i].is_son_of(&root) {
                continue;
            }
            let own: Vec<LiveFile> = applying[i].iter().map(|&j| deletes[j].clone()).collect();
            let merge_deletes =
                own.len() >= 2 || own.first().is_some_and(|d| !is_optimizing_delete_for(d.path(), file.path()));
            let entry = BaseFile { file: file.clone(), deletes: own };
            if rewrite(file, &entry.deletes) {
                task.rewrite.push(entry);
            } else if change_deletes || merge_deletes {
                task.reposition.push(entry);
            } else {
                continue;
            }
            members.push(i);
        }
        let lone_clean_rewrite = task.change.is_empty()
            && task.reposition.is_empty()
            && task.rewrite.len() == 1
            && task.rewrite[0].deletes.is_empty();
        if (task.change.is_empty() && task.rewrite.is_empty() && task.reposition.is_empty()) || lone_clean_rewrite {
            continue;
        }
        handled.extend(members);
        tasks.push(task);
    }
    let obsolete_deletes = deletes
        .iter()
        .enumerate()
        .filter(|(j, _)| applying.iter().enumerate().filter(|(_, d)| d.contains(j)).all(|(i, _)| handled.contains(&i)))
        .map(|(_, d)| d.clone())
        .collect();
    KeyedPlan { tasks, obsolete_deletes }
}

/// The top nodes of the forest `nodes` form: no two related, every node below one of them.
pub fn roots(nodes: impl IntoIterator<Item = TreeNode>) -> Vec<TreeNode> {
    let mut nodes: Vec<TreeNode> = nodes.into_iter().collect::<HashSet<_>>().into_iter().collect();
    nodes.sort_by_key(|n| (n.mask(), n.index()));
    let mut roots: Vec<TreeNode> = Vec::new();
    for node in nodes {
        if !roots.iter().any(|r| node.is_son_of(r)) {
            roots.push(node);
        }
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64) -> TreeNode {
        TreeNode::from_id(id).unwrap()
    }

    #[test]
    fn roots_are_the_top_nodes_of_each_tree() {
        // 4..7 are the four buckets of mask 3; 2 is the parent of 4 and 6.
        assert_eq!(roots([node(4), node(5), node(6), node(7)]), vec![node(4), node(5), node(6), node(7)]);
        assert_eq!(roots([node(4), node(2), node(6), node(5)]), vec![node(2), node(5)]);
        assert_eq!(roots([node(5), node(1), node(9)]), vec![node(1)], "the root covers every key");
        assert_eq!(roots([node(9), node(17), node(5)]), vec![node(5)], "8+1 and 16+1 lie below 4+1");
    }
}
