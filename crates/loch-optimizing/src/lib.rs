//! The management side of self-optimizing, by role:
//!
//! - `process`: the process framework — what a kind of process (optimizing now, maintenance
//!   next) implements: plan into tasks, commit their outputs, record its end;
//! - `record`: the typed process record (action, status, summary) and the one conversion
//!   from and to the store's row;
//! - `status`: the state machines of tables, processes and tasks, and the only functions that
//!   write a state change (checked, time-stamped, compare-and-swap);
//! - `service`: the shared state and the read views the management API shows;
//! - `registry`: optimizer groups and the optimizers serving them;
//! - `lifecycle`: a table's life — refresh (look when it changed or is due), evaluate, block,
//!   commit a finished process, fail or cancel one — with `tracker`, what refreshing knows
//!   without reading metadata;
//! - `scheduler`: handing tasks to optimizer threads fairly across tables, planning the next
//!   table when a group runs dry, and taking acknowledgements and results;
//! - `keeper`: housekeeping, recovery after a restart and the background loops;
//! - `evaluator` (which partitions need which optimizing), `plan` (a process's tasks; `plan::
//!   partition` for one partition's files), `task` (tasks ↔ the protocol's inputs and outputs),
//!   `committer` (one rewrite snapshot through the catalog's commit path), `keyed` (the same
//!   for keyed tables: change files folded into the base store, tasks by file-tree node).
//!
//! `maintenance` holds table maintenance (snapshot expiry first); its actions will run as
//! processes of the same framework.

pub mod committer;
pub mod error;
pub mod evaluator;
mod keeper;
mod keyed;
mod lifecycle;
pub mod maintenance;
pub mod plan;
mod process;
pub mod properties;
pub mod record;
mod registry;
mod scheduler;
mod service;
pub mod status;
pub mod table;
pub mod task;
mod tracker;

pub use error::{OptimizingError, Result};
pub use evaluator::{Evaluation, OptimizingType};
pub use properties::{GroupProperties, OptimizingProperties, SchedulingPolicy};
pub use record::{ProcessAction, ProcessSummary, TableProcess};
pub use service::{DEFAULT_GROUP, OptimizingConfig, OptimizingService, PendingInput};
