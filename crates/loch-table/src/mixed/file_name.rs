//! File names of Mixed-Iceberg tables (Amoro's `FileNameRules`):
//! `{node id}-{type}-{transaction id}-{partition id:05}-{task id}-{operation id}-{count:05}.{ext}`,
//! e.g. `4-ED-101-00000-0-4217271085623029157-00001.parquet`. A reader learns from the name
//! alone which bucket a file holds, whether its rows are inserts or deletes, and in which
//! transaction they were written; files other writers named otherwise still read (see
//! [`FileMeta::of_change`] and [`FileMeta::of_base`]).

use super::tree::TreeNode;

/// What a file of a keyed table holds (Amoro's `DataFileType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// `B`: rows of the base store.
    Base,
    /// `I`: inserted rows in the change store.
    Insert,
    /// `ED`: deleted rows in the change store (whole rows, stored as Iceberg *data* files).
    EqDelete,
    /// `PD`: position deletes of base files.
    PosDelete,
    /// `IED`: Iceberg equality-delete files.
    IcebergEqDelete,
    /// `L`: log files.
    Log,
}

impl FileType {
    /// Every type.
    pub const ALL: [FileType; 6] = [
        FileType::Base,
        FileType::Insert,
        FileType::EqDelete,
        FileType::PosDelete,
        FileType::IcebergEqDelete,
        FileType::Log,
    ];

    /// The short name file names carry.
    pub fn short_name(self) -> &'static str {
        match self {
            FileType::Base => "B",
            FileType::Insert => "I",
            FileType::EqDelete => "ED",
            FileType::PosDelete => "PD",
            FileType::IcebergEqDelete => "IED",
            FileType::Log => "L",
        }
    }

    /// Amoro's numeric id of the type.
    pub fn id(self) -> u8 {
        match self {
            FileType::Base => 0,
            FileType::Insert => 1,
            FileType::EqDelete => 2,
            FileType::PosDelete => 3,
            FileType::IcebergEqDelete => 4,
            FileType::Log => 5,
        }
    }

    /// The type of a short name, if it is one.
    pub fn of_short_name(name: &str) -> Option<FileType> {
        Self::ALL.into_iter().find(|t| t.short_name() == name)
    }
}

/// The parts of a file name a writer chooses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    /// The bucket.
    pub node: TreeNode,
    /// What the file holds.
    pub file_type: FileType,
    /// The transaction that wrote it (0: the reader takes the file's sequence number).
    pub transaction_id: i64,
    /// The writer's partition (task) number.
    pub partition_id: u32,
    /// The writer's task id.
    pub task_id: u64,
    /// A random id per writer, so two writers never pick the same name.
    pub operation_id: u64,
    /// The writer's file counter, from 1.
    pub count: u64,
}

impl FileName {
    /// The file name, with extension `ext` (`parquet`).
    pub fn render(&self, ext: &str) -> String {
        format!(
            "{}-{}-{}-{:05}-{}-{}-{:05}.{ext}",
            self.node.id(),
            self.file_type.short_name(),
            self.transaction_id,
            self.partition_id,
            self.task_id,
            self.operation_id,
            self.count
        )
    }
}

/// What a reader takes from a file's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    /// The file's transaction.
    pub transaction_id: i64,
    /// What it holds.
    pub file_type: FileType,
    /// Its bucket.
    pub node: TreeNode,
}

/// The leading fields of a Mixed file name — node, type, transaction — when `name` (without
/// directories) matches `\.?(\d+)-(\w+)-(\d+)-(\d+)-(\d+)-.*` with a known type, as Java's
/// `Matcher.matches` would.
fn leading_fields(path: &str) -> Option<(TreeNode, FileType, i64)> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let name = name.strip_prefix('.').unwrap_or(name);
    let mut parts = name.splitn(6, '-');
    let node: u64 = digits(parts.next()?)?;
    let kind = parts.next()?;
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let transaction: i64 = digits(parts.next()?)?;
    digits::<u64>(parts.next()?)?;
    digits::<u64>(parts.next()?)?;
    // The rest (`.*`) may be anything, but must be there.
    parts.next()?;
    Some((TreeNode::from_id(node).ok()?, FileType::of_short_name(kind)?, transaction))
}

fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

impl FileMeta {
    /// A change-store file: named ones keep their node and type; a transaction id of 0 (as
    /// Flink writes) and unnamed files take the file's data sequence number, unnamed files are
    /// inserts at the root.
    pub fn of_change(path: &str, sequence_number: i64) -> Self {
        match leading_fields(path) {
            Some((node, file_type, transaction)) => {
                Self { transaction_id: if transaction == 0 { sequence_number } else { transaction }, file_type, node }
            }
            None => Self { transaction_id: sequence_number, file_type: FileType::Insert, node: TreeNode::ROOT },
        }
    }

    /// A base-store file: an `I` name reads as `B`; unnamed files (Hive's, plain Iceberg
    /// writers') are base files at the root of transaction 0.
    pub fn of_base(path: &str) -> Self {
        match leading_fields(path) {
            Some((node, file_type, transaction)) => Self {
                transaction_id: transaction,
                file_type: if file_type == FileType::Insert { FileType::Base } else { file_type },
                node,
            },
            None => Self { transaction_id: 0, file_type: FileType::Base, node: TreeNode::ROOT },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_render_and_parse_as_amoro_s() {
        let name = FileName {
            node: TreeNode::new(3, 1).unwrap(),
            file_type: FileType::EqDelete,
            transaction_id: 101,
            partition_id: 0,
            task_id: 0,
            operation_id: 4_217_271_085_623_029_157,
            count: 1,
        };
        let rendered = name.render("parquet");
        assert_eq!(rendered, "5-ED-101-00000-0-4217271085623029157-00001.parquet");
        let meta = FileMeta::of_change(&format!("s3://b/t/change/data/{rendered}"), 7);
        assert_eq!((meta.node.id(), meta.file_type, meta.transaction_id), (5, FileType::EqDelete, 101));
    }

    #[test]
    fn other_writers_files_read_by_amoro_s_fallbacks() {
        let flink = FileMeta::of_change("/t/change/data/2-I-0-00001-3-77-00002.parquet", 42);
        assert_eq!((flink.transaction_id, flink.file_type), (42, FileType::Insert), "txid 0 takes the sequence");
        let plain = FileMeta::of_change("/t/change/data/00000-0-abc.parquet", 9);
        assert_eq!(plain, FileMeta { transaction_id: 9, file_type: FileType::Insert, node: TreeNode::ROOT });
        let base_insert = FileMeta::of_base("/t/data/1-I-5-00000-0-1-00001.parquet");
        assert_eq!(base_insert.file_type, FileType::Base);
        let hive = FileMeta::of_base("/t/data/part-00000.parquet");
        assert_eq!(hive, FileMeta { transaction_id: 0, file_type: FileType::Base, node: TreeNode::ROOT });
        let unknown_type = FileMeta::of_base("/t/data/1-X-5-00000-0-1-00001.parquet");
        assert_eq!(unknown_type.node, TreeNode::ROOT, "an unknown type is no Mixed name");
        assert_eq!(FileMeta::of_base("/t/data/.1-B-5-00000-0-1-00001.parquet").transaction_id, 5);
        assert_eq!(FileMeta::of_base("/t/data/1-B-5-00000-0").transaction_id, 0, "needs the trailing part");
    }
}
