//! The optimizer protocol (JSON over HTTP under `/api/optimizer/v1`), with the semantics of
//! Amoro's Thrift `OptimizingService`: `register` → token, `touch` (heartbeat), `poll` (long
//! poll for a task), `ack`, `complete`.
//!
//! A task input lists every file a worker needs with what it needs to read it (Iceberg data-file
//! JSON, partition spec, sequence numbers, which deletes apply) plus the table's schema, specs,
//! properties and storage settings — never a serialized table object.

use std::collections::BTreeMap;

use iceberg::spec::{
    DataFile, FormatVersion, PartitionSpec, Schema, UnboundPartitionSpec, deserialize_data_file_from_json,
    serialize_data_file_to_json,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// HTTP status with which the server says it does not know an optimizer token.
pub const UNKNOWN_OPTIMIZER_STATUS: u16 = 410;

/// Error type (with [`UNKNOWN_OPTIMIZER_STATUS`]) with which the server tells a released
/// optimizer to stop rather than register again.
pub const RELEASED_OPTIMIZER_TYPE: &str = "OptimizerReleasedException";

/// How a call of the protocol failed, the same whether it went over HTTP (`loch optimizer`) or
/// stayed inside the server (its own threads): both sides classify by the HTTP status the
/// server's routes answer with, so a worker reacts to an error the same way everywhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The server does not know the optimizer's token (410): register again.
    #[error("the server does not know this optimizer; registering again")]
    Unregistered,
    /// An operator released this optimizer: stop.
    #[error("an operator released this optimizer")]
    Released,
    /// The server refused the request (4xx), e.g. a result for a task handed to someone else.
    #[error("rejected by the server: {0}")]
    Rejected(String),
    /// The server could not be reached or failed (5xx): worth retrying.
    #[error("server: {0}")]
    Server(String),
}

impl ProtocolError {
    /// The error an answer with HTTP `status`, Iceberg error type `error_type` and `message`
    /// means; the type tells a release ([`RELEASED_OPTIMIZER_TYPE`]) from a forgotten token.
    pub fn from_answer(status: u16, error_type: &str, message: impl Into<String>) -> Self {
        match status {
            UNKNOWN_OPTIMIZER_STATUS if error_type == RELEASED_OPTIMIZER_TYPE => ProtocolError::Released,
            UNKNOWN_OPTIMIZER_STATUS => ProtocolError::Unregistered,
            400..=499 => ProtocolError::Rejected(message.into()),
            _ => ProtocolError::Server(message.into()),
        }
    }
}

/// `POST /register`: an optimizer joins a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct RegisterRequest {
    /// Optimizer group to serve.
    pub group: String,
    /// Executor threads.
    pub threads: u32,
    /// Memory available, in MiB.
    pub memory_mb: u64,
    /// Free-form properties (host, pid, version).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Answer to `register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct RegisterResponse {
    /// Token for every later call; it expires when heartbeats stop.
    pub token: String,
    /// How often to `touch`, in milliseconds.
    pub heartbeat_interval_ms: u64,
}

/// `POST /touch`: a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct TouchRequest {
    /// The optimizer's token.
    pub token: String,
}

/// `POST /poll`: ask for a task (waits up to the poll timeout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct PollRequest {
    /// The optimizer's token.
    pub token: String,
    /// The asking thread.
    pub thread_id: u32,
}

/// Answer to `poll`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct PollResponse {
    /// A task, or none when there is no work.
    pub task: Option<TaskAssignment>,
}

/// Identifies one hand-out of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct TaskKey {
    /// Process id.
    pub process_id: i64,
    /// Task id within the process.
    pub task_id: i64,
    /// Hand-out number; an ack or completion naming an older attempt is ignored.
    pub attempt: i64,
}

/// A task handed to an optimizer thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct TaskAssignment {
    /// Which task and attempt.
    pub key: TaskKey,
    /// What to do.
    pub input: TaskInput,
}

/// `POST /ack`: the thread starts the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct AckRequest {
    /// The optimizer's token.
    pub token: String,
    /// The thread.
    pub thread_id: u32,
    /// The task.
    pub key: TaskKey,
}

/// `POST /complete`: the result of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct CompleteRequest {
    /// The optimizer's token.
    pub token: String,
    /// The thread.
    pub thread_id: u32,
    /// The task.
    pub key: TaskKey,
    /// The output, when it succeeded.
    pub output: Option<TaskOutput>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// What a rewrite task works on, in Iceberg's own types: planner, worker and committer share
/// it, and it is encoded once, as the JSON Iceberg defines for each part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct TaskInput {
    /// `catalog.namespace.table`, for logs.
    pub table: String,
    /// The table's location.
    pub location: String,
    /// Iceberg format version of the table.
    #[schema(value_type = u8)]
    pub format_version: FormatVersion,
    /// The current schema.
    #[schema(value_type = Object)]
    pub schema: Schema,
    /// Every partition spec the task's files use, plus the default one.
    #[schema(value_type = Vec<Object>)]
    pub partition_specs: Vec<UnboundPartitionSpec>,
    /// Id of the default partition spec; new files are written in it.
    pub default_spec_id: i32,
    /// Table properties (write settings).
    pub properties: BTreeMap<String, String>,
    /// Storage settings to read and write the table's files.
    pub storage: BTreeMap<String, String>,
    /// Target size of written data files, in bytes.
    pub target_file_size: u64,
    /// Data files whose live rows are rewritten into new files.
    pub rewrite: Vec<InputFile>,
    /// Data files that stay, whose deletes are re-expressed as one position delete file each.
    pub reposition: Vec<InputFile>,
    /// Delete files the data files above refer to.
    pub deletes: Vec<InputFile>,
    /// Delete files the commit removes once every task of the process succeeded (every data
    /// file they apply to is rewritten or repositioned); the task does not read them.
    #[serde(default)]
    pub obsolete_deletes: Vec<InputFile>,
    /// For a keyed (Mixed-Iceberg) table: the change files and key layout of the task; the
    /// files above are then base-store files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyed: Option<KeyedTask>,
}

/// The keyed part of a task: one partition and one subtree of key buckets of a Mixed-Iceberg
/// table. Surviving change inserts and the rewrite files' live rows become base files; change
/// deletes that hit repositioned base files become their position deletes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct KeyedTask {
    /// The base store's metadata file the task was planned on (the worker writes with its
    /// schema, spec and properties).
    pub base_metadata: String,
    /// Primary key columns.
    pub primary_key: Vec<String>,
    /// Base buckets (`base.file-index.hash-bucket`) new base files are spread over.
    pub buckets: u32,
    /// The partition, as Amoro's optimized sequence names it (`region=1`, empty when
    /// unpartitioned).
    pub partition: String,
    /// The partition's optimized sequence when planned; the commit fails if it moved.
    pub from_sequence: Option<i64>,
    /// The greatest change sequence the process folds in the partition.
    pub to_sequence: Option<i64>,
    /// Change files (inserts and deletes), encoded with the change store's file schema
    /// (the table's columns and `_file_offset`).
    pub change: Vec<InputFile>,
}

/// A file of a task input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct InputFile {
    /// Iceberg data-file JSON (iceberg-rust's `serialize_data_file_to_json`).
    #[schema(value_type = Object)]
    pub file: FileJson,
    /// Its partition spec.
    pub spec_id: i32,
    /// Data sequence number.
    pub data_sequence_number: i64,
    /// File sequence number.
    pub file_sequence_number: i64,
    /// For data files: indexes into [`TaskInput::deletes`] of the delete files that apply.
    #[serde(default)]
    pub deletes: Vec<usize>,
}

/// What a task produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct TaskOutput {
    /// New data files (in the default partition spec).
    pub data_files: Vec<OutputFile>,
    /// New position delete files (in the spec of the data file they belong to).
    pub delete_files: Vec<OutputFile>,
    /// Statistics.
    pub summary: TaskSummary,
}

/// A file a task wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct OutputFile {
    /// Iceberg data-file JSON.
    #[schema(value_type = Object)]
    pub file: FileJson,
    /// Its partition spec.
    pub spec_id: i32,
}

/// Statistics of a task execution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct TaskSummary {
    /// Rows read (after deletes) from rewritten files.
    pub rows_read: u64,
    /// Rows written to new data files.
    pub rows_written: u64,
    /// Bytes of input files.
    pub input_bytes: u64,
    /// Bytes of output files.
    pub output_bytes: u64,
    /// Positions written to new position delete files.
    pub positions_written: u64,
    /// Execution time in milliseconds.
    pub duration_ms: u64,
    /// Row groups copied undecoded into the output (the row-group merge); 0 when rows were
    /// rewritten.
    #[serde(default)]
    pub row_groups_copied: u64,
}

/// A data or delete file as the protocol carries it: Iceberg's data-file JSON, which needs the
/// partition type to encode and decode (iceberg-rust's `serialize_data_file_to_json`).
pub fn encode_file(
    file: DataFile,
    spec: &PartitionSpec,
    schema: &Schema,
    version: FormatVersion,
) -> iceberg::Result<FileJson> {
    let text = serialize_data_file_to_json(file, &spec.partition_type(schema)?, version)?;
    serde_json::value::RawValue::from_string(text)
        .map(FileJson)
        .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e.to_string()))
}

/// Decodes a file [`encode_file`] encoded, of partition spec `spec`.
pub fn decode_file(json: &FileJson, spec: &PartitionSpec, schema: &Schema) -> iceberg::Result<DataFile> {
    deserialize_data_file_from_json(json.as_str(), spec.spec_id(), &spec.partition_type(schema)?, schema)
}

/// An Iceberg data file's JSON, kept as its text: a task of thousands of files is encoded,
/// stored, sent and decoded several times, and only iceberg's decoder needs to look inside.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FileJson(Box<serde_json::value::RawValue>);

impl FileJson {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The file's size as its JSON states it (0 when it does not), read without decoding the rest.
    pub fn file_size_in_bytes(&self) -> i64 {
        #[derive(Deserialize)]
        struct Size {
            file_size_in_bytes: i64,
        }
        serde_json::from_str::<Size>(self.as_str()).map_or(0, |s| s.file_size_in_bytes)
    }

    /// The JSON as a value, for tests and tools that look inside.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).unwrap_or(serde_json::Value::Null)
    }
}

impl PartialEq for FileJson {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed input reads what the untyped one wrote (stored tasks of an older server) and
    /// writes the same JSON back.
    #[test]
    fn a_task_input_keeps_its_wire_format() {
        let json = serde_json::json!({
            "table": "c.ns.t", "location": "file:///w/ns/t", "format-version": 2,
            "schema": {"type": "struct", "schema-id": 0, "fields": [
                {"id": 1, "name": "id", "required": true, "type": "long"},
                {"id": 2, "name": "day", "required": false, "type": "date"}]},
            "partition-specs": [{"spec-id": 1, "fields": [
                {"source-id": 2, "field-id": 1000, "name": "day", "transform": "identity"}]}],
            "default-spec-id": 1, "properties": {}, "storage": {}, "target-file-size": 128,
            "rewrite": [{"file": {"file_path": "file:///w/ns/t/a.parquet", "file_size_in_bytes": 42},
                "spec-id": 1, "data-sequence-number": 3, "file-sequence-number": 3, "deletes": []}],
            "reposition": [], "deletes": [], "obsolete-deletes": []
        });
        assert!(serde_json::from_value::<TaskInput>(json.clone()).unwrap().keyed.is_none());
        let input: TaskInput = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(input.format_version, FormatVersion::V2);
        assert_eq!(input.schema.as_struct().fields().len(), 2);
        assert_eq!(input.partition_specs[0].spec_id(), Some(1));
        assert_eq!(serde_json::to_value(&input).unwrap(), json);
        // From text (the store, the protocol) as from a value: the file's JSON is kept as text.
        let parsed: TaskInput = serde_json::from_str(&json.to_string()).unwrap();
        assert_eq!(parsed, input);
        assert_eq!(parsed.rewrite[0].file.file_size_in_bytes(), 42);
        assert_eq!(parsed.rewrite[0].file.to_value()["file_path"], "file:///w/ns/t/a.parquet");
    }
}
