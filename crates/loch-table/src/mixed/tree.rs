//! The file tree of hash buckets (Amoro's `DataTreeNode`): a node is `(mask, index)` with
//! `mask = 2^n - 1` and `index <= mask`; a key belongs to node `(mask, hash & mask)`. Splitting
//! a bucket makes its two children, so files written with different bucket counts still relate:
//! a file can only hold keys of its own node's ancestors and descendants, never of a sibling.

use std::fmt;

/// A node of the bucket tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TreeNode {
    mask: u64,
    index: u64,
}

/// Why a node cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tree node: {0}")]
pub struct TreeNodeError(String);

impl TreeNode {
    /// The root: every key.
    pub const ROOT: TreeNode = TreeNode { mask: 0, index: 0 };

    /// The node `(mask, index)`; `mask` must be one less than a power of two and `index` at
    /// most `mask`.
    pub fn new(mask: u64, index: u64) -> Result<Self, TreeNodeError> {
        if mask == u64::MAX || !(mask + 1).is_power_of_two() {
            return Err(TreeNodeError(format!("mask {mask} is not 2^n - 1")));
        }
        if index > mask {
            return Err(TreeNodeError(format!("index {index} exceeds mask {mask}")));
        }
        Ok(Self { mask, index })
    }

    /// The node of `buckets` buckets (a power of two) a key with this hash falls in.
    pub fn of_hash(hash: i32, buckets: u32) -> Result<Self, TreeNodeError> {
        if !buckets.is_power_of_two() {
            return Err(TreeNodeError(format!("{buckets} buckets is not a power of two")));
        }
        let mask = u64::from(buckets) - 1;
        // Java: Math.abs(hash) & mask, on a hash that is already never negative.
        Self::new(mask, u64::from(hash.unsigned_abs()) & mask)
    }

    /// Its id in heap numbering (`mask + 1 + index`: root 1, children 2 and 3, ...), the
    /// number file names carry.
    pub fn id(&self) -> u64 {
        self.mask + 1 + self.index
    }

    /// The node with heap id `id` (at least 1).
    pub fn from_id(id: u64) -> Result<Self, TreeNodeError> {
        if id == 0 {
            return Err(TreeNodeError("node ids start at 1".into()));
        }
        let mask = (1u64 << (63 - id.leading_zeros())) - 1;
        Self::new(mask, id - mask - 1)
    }

    /// The mask.
    pub fn mask(&self) -> u64 {
        self.mask
    }

    /// The index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Its first child.
    pub fn left(&self) -> Self {
        Self { mask: 2 * self.mask + 1, index: self.index }
    }

    /// Its second child.
    pub fn right(&self) -> Self {
        Self { mask: 2 * self.mask + 1, index: self.index + self.mask + 1 }
    }

    /// True when this node is `other` or lies below it (Amoro's `isSonOf`).
    pub fn is_son_of(&self, other: &TreeNode) -> bool {
        self == other || (self.mask > other.mask && self.index & other.mask == other.index)
    }

    /// True when one of the two lies below the other: only then can their files share keys.
    pub fn related(&self, other: &TreeNode) -> bool {
        self.is_son_of(other) || other.is_son_of(self)
    }
}

impl fmt::Display for TreeNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.mask, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_ids_number_the_tree() {
        assert_eq!(TreeNode::ROOT.id(), 1);
        assert_eq!((TreeNode::ROOT.left().id(), TreeNode::ROOT.right().id()), (2, 3));
        for id in 1..2_000 {
            let node = TreeNode::from_id(id).unwrap();
            assert_eq!(node.id(), id);
            assert!(node.left().is_son_of(&node) && node.right().is_son_of(&node));
            assert_eq!(
                (node.left().mask(), node.right().index()),
                (2 * node.mask() + 1, node.index() + node.mask() + 1)
            );
        }
        assert_eq!(TreeNode::from_id(7).unwrap(), TreeNode::new(3, 3).unwrap());
        assert!(TreeNode::from_id(0).is_err() && TreeNode::new(2, 0).is_err() && TreeNode::new(3, 4).is_err());
    }

    #[test]
    fn only_ancestors_and_descendants_are_related() {
        let four = |i| TreeNode::new(3, i).unwrap();
        let two = |i| TreeNode::new(1, i).unwrap();
        assert!(four(1).is_son_of(&two(1)) && four(3).is_son_of(&two(1)));
        assert!(!four(2).is_son_of(&two(1)) && four(2).is_son_of(&two(0)));
        assert!(four(0).related(&TreeNode::ROOT) && TreeNode::ROOT.related(&four(0)));
        assert!(!four(0).related(&four(1)));
        assert_eq!(TreeNode::of_hash(7, 4).unwrap(), four(3));
        assert!(TreeNode::of_hash(7, 3).is_err());
    }
}
