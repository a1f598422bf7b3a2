//! The worker's memory of messages: those it is handling, and the last
//! `capacity` it acknowledged, oldest forgotten first (see the parent's
//! "Duplicates").

use std::collections::{HashSet, VecDeque};

/// What the worker knows of a message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    New,
    /// Being handled: sent downstream, not yet acknowledged.
    InFlight,
    /// Acknowledged before.
    Done,
}

#[derive(Debug)]
pub(super) struct Window {
    capacity: usize,
    done: HashSet<String>,
    /// `done` in the order added, to forget the oldest.
    order: VecDeque<String>,
    in_flight: HashSet<String>,
}

impl Window {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            done: HashSet::new(),
            order: VecDeque::new(),
            in_flight: HashSet::new(),
        }
    }

    pub(super) fn seen(&self, id: &str) -> Seen {
        if self.in_flight.contains(id) {
            Seen::InFlight
        } else if self.done.contains(id) {
            Seen::Done
        } else {
            Seen::New
        }
    }

    /// The message is being handled.
    pub(super) fn begin(&mut self, id: &str) {
        self.in_flight.insert(id.to_string());
    }

    /// Its handling ended: `stored` when every sink has its events (it is
    /// remembered as done), else it is forgotten, to be taken again.
    pub(super) fn end(&mut self, id: &str, stored: bool) {
        self.in_flight.remove(id);
        if stored && self.done.insert(id.to_string()) {
            self.order.push_back(id.to_string());
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.done.remove(&old);
                }
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.done.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_remembers_the_last_ids_stored_and_nothing_failed() {
        let mut w = Window::new(2);
        assert_eq!(w.seen("a"), Seen::New);
        w.begin("a");
        assert_eq!(w.seen("a"), Seen::InFlight);
        w.end("a", true);
        assert_eq!(w.seen("a"), Seen::Done);
        w.begin("b");
        w.end("b", false);
        assert_eq!(w.seen("b"), Seen::New, "a failed message is taken again");
        for id in ["c", "d"] {
            w.begin(id);
            w.end(id, true);
        }
        assert_eq!(w.seen("a"), Seen::New, "the oldest is forgotten");
        assert_eq!((w.seen("c"), w.seen("d")), (Seen::Done, Seen::Done));
        assert_eq!(w.len(), 2);
        // Ending twice does not count twice.
        w.end("d", true);
        assert_eq!(w.len(), 2);
        assert_eq!(w.seen("c"), Seen::Done);
    }
}
