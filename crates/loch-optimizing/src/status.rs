//! The state machines: a table's optimizing status and a task's status. Each has one
//! `transition` that rejects illegal moves; the caller then writes the move to the metadata store
//! as a compare-and-set on the old state.

use crate::error::{OptimizingError, Result};
use crate::evaluator::OptimizingType;

/// A table's self-optimizing status (Amoro's `OptimizingStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableStatus {
    /// Nothing to do.
    Idle,
    /// Evaluation found work; waiting for the scheduler.
    Pending,
    /// A plan is being made.
    Planning,
    /// A minor optimizing process runs.
    Minor,
    /// A major optimizing process runs.
    Major,
    /// A full optimizing process runs.
    Full,
    /// The process's output is being committed.
    Committing,
}

impl TableStatus {
    /// Every status, for metrics.
    pub const ALL: [TableStatus; 7] = [
        TableStatus::Idle,
        TableStatus::Pending,
        TableStatus::Planning,
        TableStatus::Minor,
        TableStatus::Major,
        TableStatus::Full,
        TableStatus::Committing,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TableStatus::Idle => "idle",
            TableStatus::Pending => "pending",
            TableStatus::Planning => "planning",
            TableStatus::Minor => "minor",
            TableStatus::Major => "major",
            TableStatus::Full => "full",
            TableStatus::Committing => "committing",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| OptimizingError::Corrupt(format!("table status {s:?}")))
    }

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
            (Idle, Pending) | (Pending, Planning) | (Pending, Idle) => true,
            (Planning, Minor | Major | Full | Idle | Pending) => true,
            (Minor | Major | Full, Committing) => true,
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

/// A task's status (Amoro's `TaskRuntime.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Waiting for a thread.
    Planned,
    /// Handed to a thread, not acknowledged yet.
    Scheduled,
    /// Being executed.
    Acked,
    /// Done.
    Success,
    /// The last attempt failed.
    Failed,
    /// Will not run (its process ended).
    Canceled,
}

impl TaskStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Planned => "planned",
            TaskStatus::Scheduled => "scheduled",
            TaskStatus::Acked => "acked",
            TaskStatus::Success => "success",
            TaskStatus::Failed => "failed",
            TaskStatus::Canceled => "canceled",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self> {
        [
            TaskStatus::Planned,
            TaskStatus::Scheduled,
            TaskStatus::Acked,
            TaskStatus::Success,
            TaskStatus::Failed,
            TaskStatus::Canceled,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| OptimizingError::Corrupt(format!("task status {s:?}")))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_status_moves() {
        assert!(TableStatus::Idle.transition(TableStatus::Pending).is_ok());
        assert!(TableStatus::Pending.transition(TableStatus::Planning).is_ok());
        assert!(TableStatus::Planning.transition(TableStatus::Major).is_ok());
        assert!(TableStatus::Major.transition(TableStatus::Committing).is_ok());
        assert!(TableStatus::Committing.transition(TableStatus::Idle).is_ok());
        assert!(TableStatus::Idle.transition(TableStatus::Committing).is_err());
        assert!(TableStatus::Pending.transition(TableStatus::Minor).is_err());
        assert!(TableStatus::Committing.transition(TableStatus::Minor).is_err());
        for s in TableStatus::ALL {
            assert_eq!(TableStatus::parse(s.as_str()).unwrap(), s);
        }
    }

    #[test]
    fn task_status_moves() {
        use TaskStatus::*;
        assert!(Planned.transition(Scheduled).is_ok());
        assert!(Scheduled.transition(Acked).is_ok());
        assert!(Acked.transition(Success).is_ok());
        assert!(Acked.transition(Failed).is_ok());
        assert!(Failed.transition(Planned).is_ok());
        assert!(Scheduled.transition(Planned).is_ok(), "ack timeout");
        assert!(Success.transition(Planned).is_err(), "success is terminal");
        assert!(Canceled.transition(Planned).is_err(), "canceled is terminal");
        assert!(Planned.transition(Acked).is_err(), "an ack needs a schedule first");
    }
}
