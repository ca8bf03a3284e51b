//! The management side of self-optimizing and table maintenance: table runtimes, the
//! evaluator, per-group scheduling with quotas, the planner, the process and task state
//! machines, and the committer (which commits through `loch-catalog`'s single commit path).
//!
//! Empty until the self-optimizing issue; the crate exists so the workspace's one-way
//! dependencies (`server` → `optimizing` → `catalog` → `table`/`meta` → `api`) hold from the start.
