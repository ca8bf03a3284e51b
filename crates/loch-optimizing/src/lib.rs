//! The management side of self-optimizing: the evaluator decides which tables and partitions need
//! minor, major or full optimizing; the planner turns them into tasks; the scheduler hands tasks
//! to optimizer threads fairly across tables; the committer commits their output through the
//! catalog's single commit path. Table maintenance will run as processes of the same framework.

pub mod commit;
pub mod error;
pub mod evaluator;
mod lifecycle;
pub mod plan;
pub mod planner;
pub mod properties;
mod scheduler;
mod service;
pub mod status;
pub mod table;
pub mod task;
mod tracker;

pub use error::{OptimizingError, Result};
pub use evaluator::{Evaluation, OptimizingType};
pub use properties::{GroupProperties, OptimizingProperties, SchedulingPolicy};
pub use service::{DEFAULT_GROUP, OptimizingConfig, OptimizingService, PendingInput, ProcessSummary};
