//! The memory buffer: a queue of whole batches, bounded in events.
//!
//! Invariants:
//! - Batches leave in the order they came; ids grow by one per batch.
//! - The first `handed_out` batches were handed out by `next` since the
//!   last rewind and are not acknowledged: they are being sent. They are
//!   never dropped to make room.
//! - At most `max_events` events are held, handed out ones included: a
//!   push that would pass it drops the oldest batches not handed out, or
//!   under `block` and `downsample` (or when only handed-out batches are
//!   older) is refused. `downsample`'s compaction acknowledges the batches
//!   it read and pushes their compacted form: fewer events, so it fits.

use super::{BufferIoError, BufferStats, Buffered, DropCounter, Lost, MemoryConfig, PushError};
use super::{DropReason, WhenFull, now_unix_ms};
use iotel_model::Events;
use std::collections::VecDeque;

#[derive(Debug)]
pub(super) struct MemoryBuffer {
    batches: VecDeque<Held>,
    /// How many of the first `batches` are handed out.
    handed_out: usize,
    /// Events in those.
    handed_out_events: usize,
    /// Events in `batches`.
    events: usize,
    /// The last id `next` handed out (or, after a rewind, the last id
    /// acknowledged or dropped): `ack` takes no higher id.
    last_handed_out: Option<u64>,
    next_id: u64,
    max_events: usize,
    /// `block` and `downsample`: a full buffer refuses the push.
    refuse_when_full: bool,
    drops: DropCounter,
}

#[derive(Debug)]
struct Held {
    id: u64,
    arrived_unix_ms: u64,
    events: Events,
}

impl MemoryBuffer {
    pub(super) fn new(config: &MemoryConfig, first_id: u64, drops: DropCounter) -> Self {
        Self {
            batches: VecDeque::new(),
            handed_out: 0,
            handed_out_events: 0,
            events: 0,
            last_handed_out: first_id.checked_sub(1),
            next_id: first_id,
            max_events: config.max_events.get(),
            refuse_when_full: config.when_full != WhenFull::DropOldest,
            drops,
        }
    }

    /// See [`SinkBuffer::push`](super::SinkBuffer::push); `events` is not
    /// empty.
    pub(super) fn push(&mut self, events: &Events) -> Result<(), PushError> {
        let n = events.len();
        if n > self.max_events {
            return Err(PushError::TooManyEvents {
                events: n,
                max_events: self.max_events,
            });
        }
        if self.events + n > self.max_events {
            // Dropping every batch not handed out would not be enough:
            // only acks of the handed-out ones make room.
            if self.refuse_when_full || self.handed_out_events + n > self.max_events {
                return Err(PushError::Full);
            }
            let mut lost = Lost::default();
            while self.events + n > self.max_events {
                let Some(oldest) = self.batches.remove(self.handed_out) else {
                    break;
                };
                let len = oldest.events.len();
                self.events -= len;
                lost.batches += 1;
                lost.events += len as u64;
            }
            self.drops.count(DropReason::DropOldest, lost);
        }
        self.batches.push_back(Held {
            id: self.next_id,
            arrived_unix_ms: now_unix_ms(),
            events: events.clone(),
        });
        self.next_id += 1;
        self.events += n;
        Ok(())
    }

    pub(super) fn next(&mut self) -> Option<Buffered> {
        let b = self.batches.get(self.handed_out)?;
        self.handed_out += 1;
        self.handed_out_events += b.events.len();
        self.last_handed_out = Some(b.id);
        Some(Buffered {
            id: b.id,
            written_unix_ms: b.arrived_unix_ms,
            events: b.events.clone(),
        })
    }

    pub(super) fn ack(&mut self, id: u64) -> Result<(), BufferIoError> {
        if self.last_handed_out.is_none_or(|last| id > last) {
            return Err(BufferIoError::AckOutOfRange {
                id,
                last_handed_out: self.last_handed_out,
            });
        }
        // Every batch with an id up to `last_handed_out` is handed out, so
        // these are all among the first `handed_out`.
        while self.batches.front().is_some_and(|b| b.id <= id) {
            if let Some(b) = self.batches.pop_front() {
                let len = b.events.len();
                self.events -= len;
                self.handed_out_events -= len;
                self.handed_out -= 1;
            }
        }
        Ok(())
    }

    pub(super) fn rewind(&mut self) {
        self.handed_out = 0;
        self.handed_out_events = 0;
        let head = self.batches.front().map_or(self.next_id, |b| b.id);
        self.last_handed_out = head.checked_sub(1);
    }

    pub(super) fn drops(&mut self) -> &mut DropCounter {
        &mut self.drops
    }

    pub(super) fn stats(&self) -> BufferStats {
        BufferStats {
            bytes: None,
            records: self.batches.len() as u64,
            events: Some(self.events as u64),
            oldest_unacked_unix_ms: self.batches.front().map(|b| b.arrived_unix_ms),
            dropped: self.drops.dropped,
        }
    }
}
