//! Stored answers, written in groups: the answer a message got is bookkeeping (it only
//! protects a redelivery), and one transaction per answer was a commit per message. Whatever
//! arrives while a group is being written goes into the next one, so under load a group
//! grows with the load and at rest it is a single answer, written at once.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// What is waiting to be written, and whether a writer is on its way.
pub(crate) struct Group<T> {
    state: Mutex<(Vec<T>, bool)>,
}

impl<T> Default for Group<T> {
    fn default() -> Self {
        Group {
            state: Mutex::new((Vec::new(), false)),
        }
    }
}

impl<T> std::fmt::Debug for Group<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Group")
            .field("waiting", &state.0.len())
            .field("writing", &state.1)
            .finish()
    }
}

impl<T> Group<T> {
    fn lock(&self) -> MutexGuard<'_, (Vec<T>, bool)> {
        // Nothing panics while holding the lock; a poisoned one still holds a sound list.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `item`. `true`: no writer is on its way, so the caller starts one, which calls
    /// [`take`](Self::take) until it comes back empty.
    pub(crate) fn push(&self, item: T) -> bool {
        let mut state = self.lock();
        state.0.push(item);
        !std::mem::replace(&mut state.1, true)
    }

    /// Everything waiting. Empty: the writer is done, and the next push starts another.
    pub(crate) fn take(&self) -> Vec<T> {
        let mut state = self.lock();
        let items = std::mem::take(&mut state.0);
        if items.is_empty() {
            state.1 = false;
        }
        items
    }

    /// Everything waiting, and the writer is done with it: for a writer that runs once (the
    /// next push queues another behind it).
    pub(crate) fn take_all(&self) -> Vec<T> {
        let mut state = self.lock();
        state.1 = false;
        std::mem::take(&mut state.0)
    }
}

/// A writer task's hold on its group: if the task is dropped before it finished (its runtime
/// shut down), the items waiting are dropped with it, so whoever waits on them hears (their
/// channels close), and the next push starts a writer again.
pub(crate) struct Writing<T>(pub(crate) std::sync::Arc<Group<T>>, bool);

impl<T> Writing<T> {
    pub(crate) fn new(group: std::sync::Arc<Group<T>>) -> Self {
        Writing(group, false)
    }

    /// The next items to write; empty when the writer is done.
    pub(crate) fn take(&mut self) -> Vec<T> {
        let items = self.0.take();
        self.1 = items.is_empty();
        items
    }
}

impl<T> Drop for Writing<T> {
    fn drop(&mut self) {
        if !self.1 {
            drop(self.0.take_all());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Group;

    #[test]
    fn the_first_push_starts_a_writer_and_the_rest_join_its_group() {
        let g = Group::default();
        assert!(g.push(1));
        assert!(!g.push(2), "a writer is already on its way");
        assert_eq!(g.take(), vec![1, 2]);
        assert!(!g.push(3), "the writer has not finished: it takes 3 next");
        assert_eq!(g.take(), vec![3]);
        assert!(g.take().is_empty());
        assert!(g.push(4), "the writer finished: a new one starts");
    }

    #[test]
    fn a_one_shot_writer_leaves_the_next_push_to_start_another() {
        let g = Group::default();
        assert!(g.push("a"));
        assert!(!g.push("b"));
        assert_eq!(g.take_all(), vec!["a", "b"]);
        assert!(g.push("c"));
    }
}
