//! The state machines of self-optimizing: a table's status, a process's status and a task's
//! status. Each has one `transition` that rejects illegal moves, and every stored change goes
//! through the `move_*` functions here: they check the move, stamp the time and write the row by
//! compare-and-swap on the state that was read, so a stale actor changes nothing. Status names
//! appear nowhere else.

use loch_meta::{MetaStore, RuntimeRecord, TaskRecord, TaskRun, now_ms};

use crate::error::{OptimizingError, Result};
use crate::evaluator::OptimizingType;
use crate::record::TableProcess;

/// Declares a status enum from one list of variants and their stored names: the enum, `ALL`,
/// `as_str` and `parse` cannot disagree.
macro_rules! stored_status {
    ($(#[$meta:meta])* $name:ident ($what:literal) {
        $($(#[$vmeta:meta])* $variant:ident => $stored:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every status.
            pub const ALL: [$name; [$($stored),+].len()] = [$($name::$variant),+];

            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $stored,)+
                }
            }

            /// Parses a stored name.
            pub fn parse(s: &str) -> Result<Self> {
                Self::ALL
                    .into_iter()
                    .find(|t| t.as_str() == s)
                    .ok_or_else(|| OptimizingError::Corrupt(format!(concat!($what, " {:?}"), s)))
            }
        }
    };
}

stored_status! {
    /// A table's self-optimizing status (Amoro's `OptimizingStatus`).
    TableStatus ("table status") {
        /// Nothing to do.
        Idle => "idle",
        /// Evaluation found work; waiting for the scheduler.
        Pending => "pending",
        /// A plan is being made.
        Planning => "planning",
        /// A minor optimizing process runs.
        Minor => "minor",
        /// A major optimizing process runs.
        Major => "major",
        /// A full optimizing process runs.
        Full => "full",
        /// The process's output is being committed.
        Committing => "committing",
    }
}

impl TableStatus {
    /// The status of a running process of `kind`.
    pub fn optimizing(kind: OptimizingType) -> Self {
        match kind {
            OptimizingType::Minor => TableStatus::Minor,
            OptimizingType::Major => TableStatus::Major,
            OptimizingType::Full => TableStatus::Full,
        }
    }

    /// True while a process exists.
    pub fn is_processing(self) -> bool {
        matches!(self, TableStatus::Minor | TableStatus::Major | TableStatus::Full | TableStatus::Committing)
    }

    /// Checks that `self → to` is a legal move.
    pub fn transition(self, to: TableStatus) -> Result<TableStatus> {
        use TableStatus::*;
        let legal = match (self, to) {
            // A stay: the runtime's data changes (evaluation, group, block), not its status.
            (a, b) if a == b => true,
            (Idle, Pending) | (Pending, Planning) | (Pending, Idle) => true,
            // A plan a user asked for (`OPTIMIZE t`) starts from an idle table.
            (Idle, Planning) => true,
            (Planning, Minor | Major | Full | Idle | Pending) => true,
            (Minor | Major | Full, Committing) => true,
            // A planner that died (restart, stale planning) leaves the table pending again.
            // A process ends (committed, failed, canceled), or evaluation finds nothing.
            (Minor | Major | Full | Committing, Idle) => true,
            _ => false,
        };
        if legal {
            Ok(to)
        } else {
            Err(OptimizingError::Rejected(format!("illegal table status change {} → {}", self.as_str(), to.as_str())))
        }
    }
}

stored_status! {
    /// A process's status.
    ProcessStatus ("process status") {
        /// Tasks are planned, running or being committed.
        Running => "running",
        /// Committed.
        Success => "success",
        /// A task failed too often, or the commit failed.
        Failed => "failed",
        /// Canceled by request.
        Closed => "closed",
    }
}

impl ProcessStatus {
    /// Checks that `self → to` is a legal move: a running process ends once.
    pub fn transition(self, to: ProcessStatus) -> Result<ProcessStatus> {
        use ProcessStatus::*;
        if matches!((self, to), (Running, Success | Failed | Closed)) {
            Ok(to)
        } else {
            Err(OptimizingError::Rejected(format!("illegal process status change {} → {}", self.as_str(), to.as_str())))
        }
    }
}

stored_status! {
    /// A task's status (Amoro's `TaskRuntime.Status`).
    TaskStatus ("task status") {
        /// Waiting for a thread.
        Planned => "planned",
        /// Handed to a thread, not acknowledged yet.
        Scheduled => "scheduled",
        /// Being executed.
        Acked => "acked",
        /// Done.
        Success => "success",
        /// The last attempt failed.
        Failed => "failed",
        /// Will not run (its process ended).
        Canceled => "canceled",
    }
}

impl TaskStatus {
    /// Statuses of a task an optimizer thread holds.
    pub const HELD: [TaskStatus; 2] = [TaskStatus::Scheduled, TaskStatus::Acked];

    /// Checks that `self → to` is a legal move.
    pub fn transition(self, to: TaskStatus) -> Result<TaskStatus> {
        use TaskStatus::*;
        let legal = matches!(
            (self, to),
            (Planned, Scheduled | Canceled)
                | (Scheduled, Planned | Acked | Canceled)
                | (Acked, Planned | Success | Failed | Canceled)
                | (Failed, Planned | Canceled)
        );
        if legal {
            Ok(to)
        } else {
            Err(OptimizingError::Rejected(format!("illegal task status change {} → {}", self.as_str(), to.as_str())))
        }
    }
}

/// Names of `statuses`, for store queries.
pub(crate) fn names(statuses: &[TaskStatus]) -> Vec<&'static str> {
    statuses.iter().map(|s| s.as_str()).collect()
}

/// Moves a table's runtime to `to` after `change`: checks the move, stamps `status_since` when
/// the status changes, and writes only if the stored status is still the one in `runtime`.
/// `None` when another actor moved it first.
pub(crate) async fn move_runtime(
    store: &MetaStore,
    runtime: &RuntimeRecord,
    to: TableStatus,
    change: impl FnOnce(&mut RuntimeRecord),
) -> Result<Option<RuntimeRecord>> {
    let next = next_runtime(runtime, to, change)?;
    Ok(store.update_runtime(&next, &runtime.status).await?.then_some(next))
}

/// The runtime after a checked move (for writes that go with a process change).
pub(crate) fn next_runtime(
    runtime: &RuntimeRecord,
    to: TableStatus,
    change: impl FnOnce(&mut RuntimeRecord),
) -> Result<RuntimeRecord> {
    let from = TableStatus::parse(&runtime.status)?;
    from.transition(to)?;
    let mut next = runtime.clone();
    change(&mut next);
    next.status = to.as_str().into();
    if from != to {
        next.status_since = now_ms();
    }
    Ok(next)
}

/// Moves a task to `to` after `change`: checks the move, stamps `status_since`, and writes only
/// if the stored task is still in the status and attempt read; `run` records the attempt's time
/// for quota accounting. `None` when another actor moved it first.
pub(crate) async fn move_task(
    store: &MetaStore,
    task: &TaskRecord,
    to: TaskStatus,
    run: Option<TaskRun>,
    change: impl FnOnce(&mut TaskRecord),
) -> Result<Option<TaskRecord>> {
    TaskStatus::parse(&task.status)?.transition(to)?;
    let mut next = task.clone();
    change(&mut next);
    next.status = to.as_str().into();
    next.status_since = now_ms();
    Ok(store.update_task(&next, &task.status, task.attempt, run).await?.then_some(next))
}

/// Ends a running process as `to` after `change` and moves its table's runtime with it, in one
/// transaction; unfinished tasks are canceled with it.
pub(crate) async fn end_process(
    store: &MetaStore,
    process: &TableProcess,
    to: ProcessStatus,
    change: impl FnOnce(&mut TableProcess),
    runtime: &RuntimeRecord,
    runtime_to: TableStatus,
    runtime_change: impl FnOnce(&mut RuntimeRecord),
) -> Result<()> {
    let from = process.status;
    from.transition(to)?;
    let mut done = process.clone();
    change(&mut done);
    done.status = to;
    done.finished_at = Some(now_ms());
    let next = next_runtime(runtime, runtime_to, runtime_change)?;
    store
        .finish_process(
            &done.to_row()?,
            from.as_str(),
            [TaskStatus::Success.as_str(), TaskStatus::Canceled.as_str()],
            &next,
            &runtime.status,
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pair of states: the legal ones must pass, every other one must be refused.
    fn walk<S: Copy + PartialEq + std::fmt::Debug>(
        all: &[S],
        legal: &[(S, S)],
        transition: impl Fn(S, S) -> Result<S>,
        name: impl Fn(S) -> &'static str,
        parse: impl Fn(&str) -> Result<S>,
    ) {
        let mut refused = 0;
        for &from in all {
            assert_eq!(parse(name(from)).unwrap(), from, "stored names read back");
            for &to in all {
                let result = transition(from, to);
                if legal.contains(&(from, to)) {
                    assert_eq!(result.unwrap(), to, "{from:?} → {to:?} is legal");
                } else {
                    let error = result.expect_err(&format!("{from:?} → {to:?} must be refused"));
                    assert!(matches!(error, OptimizingError::Rejected(_)), "{error}");
                    refused += 1;
                }
            }
        }
        assert_eq!(refused + legal.len(), all.len() * all.len());
        assert!(parse("bogus").is_err());
    }

    #[test]
    fn every_table_status_move_is_checked() {
        use TableStatus::*;
        let mut legal = vec![
            (Idle, Pending),
            (Idle, Planning), // a plan asked for by a user
            (Pending, Planning),
            (Pending, Idle),
            (Planning, Minor),
            (Planning, Major),
            (Planning, Full),
            (Planning, Idle),
            (Planning, Pending),
            (Minor, Committing),
            (Major, Committing),
            (Full, Committing),
            (Minor, Idle),
            (Major, Idle),
            (Full, Idle),
            (Committing, Idle),
        ];
        legal.extend(TableStatus::ALL.map(|s| (s, s)));
        walk(&TableStatus::ALL, &legal, |a, b| a.transition(b), TableStatus::as_str, TableStatus::parse);
    }

    #[test]
    fn every_process_status_move_is_checked() {
        use ProcessStatus::*;
        let legal = [(Running, Success), (Running, Failed), (Running, Closed)];
        walk(&ProcessStatus::ALL, &legal, |a, b| a.transition(b), ProcessStatus::as_str, ProcessStatus::parse);
    }

    #[test]
    fn every_task_status_move_is_checked() {
        use TaskStatus::*;
        let legal = [
            (Planned, Scheduled),
            (Planned, Canceled),
            (Scheduled, Planned), // not acknowledged in time, or its thread polled again
            (Scheduled, Acked),
            (Scheduled, Canceled),
            (Acked, Planned), // its optimizer is gone, or it ran too long
            (Acked, Success),
            (Acked, Failed),
            (Acked, Canceled),
            (Failed, Planned), // retry
            (Failed, Canceled),
        ];
        walk(&TaskStatus::ALL, &legal, |a, b| a.transition(b), TaskStatus::as_str, TaskStatus::parse);
    }
}
