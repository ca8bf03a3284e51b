//! What refreshing knows without reading any metadata: the pointer each table was last looked at
//! under, and when each quiet table is next due for a time-based look. With it, idle work grows
//! with the changes and the due times, not with the number of tables.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use loch_meta::TablePointer;

/// The refresh loop's memory (rebuilt after a restart: due times from the stored runtimes,
/// pointers by one look at every table).
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    inner: Mutex<Inner>,
    /// Wakes the refresh loop when a due time earlier than every other one is set.
    earlier: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Inner {
    /// Table → (metadata location, catalog `updated_at`) at its last complete look.
    seen: HashMap<i64, (String, i64)>,
    /// `(due time, table)`, earliest first.
    due: BTreeSet<(i64, i64)>,
    /// Table → its entry in `due`.
    due_of: HashMap<i64, i64>,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True if the table was looked at under exactly this pointer (nothing changed since).
    pub(crate) fn unchanged(&self, pointer: &TablePointer) -> bool {
        self.lock()
            .seen
            .get(&pointer.id)
            .is_some_and(|(location, at)| *location == pointer.metadata_location && *at == pointer.catalog_updated_at)
    }

    /// Records a complete look at the table under this pointer.
    pub(crate) fn looked(&self, table_id: i64, metadata_location: &str, catalog_updated_at: i64) {
        self.lock().seen.insert(table_id, (metadata_location.to_string(), catalog_updated_at));
    }

    /// Forgets the table's pointer, so the next periodic check looks at it again.
    pub(crate) fn forget(&self, table_id: i64) {
        self.lock().seen.remove(&table_id);
    }

    /// Forgets every table `keep` refuses (dropped tables), pointer and due time.
    pub(crate) fn retain(&self, keep: impl Fn(i64) -> bool) {
        let mut inner = self.lock();
        inner.seen.retain(|id, _| keep(*id));
        let gone: Vec<(i64, i64)> =
            inner.due_of.iter().filter(|(id, _)| !keep(**id)).map(|(id, at)| (*id, *at)).collect();
        for (id, at) in gone {
            inner.due_of.remove(&id);
            inner.due.remove(&(at, id));
        }
    }

    /// Sets (or with `None` clears) when the table is next due.
    pub(crate) fn set_due(&self, table_id: i64, due: Option<i64>) {
        let mut inner = self.lock();
        if let Some(old) = inner.due_of.remove(&table_id) {
            inner.due.remove(&(old, table_id));
        }
        if let Some(due) = due {
            let earliest = inner.due.first().is_none_or(|(first, _)| due < *first);
            inner.due.insert((due, table_id));
            inner.due_of.insert(table_id, due);
            if earliest {
                self.earlier.notify_one();
            }
        }
    }

    /// Resolves when a new earliest due time was set since the last call.
    pub(crate) async fn changed(&self) {
        self.earlier.notified().await;
    }

    /// The earliest due time, if any.
    pub(crate) fn next_due(&self) -> Option<i64> {
        self.lock().due.first().map(|(due, _)| *due)
    }

    /// Removes and returns the tables due at `now`.
    pub(crate) fn take_due(&self, now: i64) -> Vec<i64> {
        let mut inner = self.lock();
        let mut taken = Vec::new();
        while let Some(&(due, table_id)) = inner.due.first() {
            if due > now {
                break;
            }
            inner.due.pop_first();
            inner.due_of.remove(&table_id);
            taken.push(table_id);
        }
        taken
    }

    /// Number of tables with a due time and of tables looked at (for tests and metrics).
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.due.len(), inner.seen.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer(id: i64, location: &str, at: i64) -> TablePointer {
        TablePointer { id, metadata_location: location.into(), catalog_updated_at: at }
    }

    #[test]
    fn a_table_is_unchanged_only_under_the_same_pointer_and_catalog() {
        let tracker = Tracker::default();
        assert!(!tracker.unchanged(&pointer(1, "m1", 5)), "never looked at");
        tracker.looked(1, "m1", 5);
        assert!(tracker.unchanged(&pointer(1, "m1", 5)));
        assert!(!tracker.unchanged(&pointer(1, "m2", 5)), "new metadata");
        assert!(!tracker.unchanged(&pointer(1, "m1", 6)), "catalog defaults changed");
        tracker.forget(1);
        assert!(!tracker.unchanged(&pointer(1, "m1", 5)));
    }

    #[test]
    fn dropped_tables_are_forgotten() {
        let tracker = Tracker::default();
        for id in 1..=4 {
            tracker.looked(id, "m", 0);
            tracker.set_due(id, Some(100 + id));
        }
        tracker.retain(|id| id % 2 == 0);
        assert_eq!(tracker.sizes(), (2, 2));
        assert_eq!(tracker.take_due(1000), vec![2, 4]);
        assert!(tracker.unchanged(&pointer(2, "m", 0)));
        assert!(!tracker.unchanged(&pointer(1, "m", 0)));
    }

    #[test]
    fn due_tables_come_out_in_time_order_and_once() {
        let tracker = Tracker::default();
        tracker.set_due(1, Some(300));
        tracker.set_due(2, Some(100));
        tracker.set_due(3, Some(200));
        tracker.set_due(3, Some(400)); // moved
        tracker.set_due(4, Some(50));
        tracker.set_due(4, None); // cleared
        assert_eq!(tracker.next_due(), Some(100));
        assert_eq!(tracker.take_due(99), Vec::<i64>::new());
        assert_eq!(tracker.take_due(300), vec![2, 1]);
        assert_eq!(tracker.take_due(300), Vec::<i64>::new());
        assert_eq!(tracker.next_due(), Some(400));
        assert_eq!(tracker.sizes(), (1, 0));
    }
}
