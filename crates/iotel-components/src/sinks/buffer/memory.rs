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
//! - While a backlog drains, the batches handed to the live lane
//!   (`live_handed`, see `live.rs`) are not dropped to make room either.
//! - A batch delivered out of order is removed at once, from the first
//!   `handed_out` too (the sink rewinds before it reads them again).

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
    /// Ids `lo..hi` handed to the live lane (those of them still here are
    /// being sent), while a backlog drains.
    live_handed: Option<(u64, u64)>,
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
            live_handed: None,
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
            let sending = self.handed_out_events + self.live_handed_events();
            if self.refuse_when_full || sending + n > self.max_events {
                return Err(PushError::Full);
            }
            let mut lost = Lost::default();
            while self.events + n > self.max_events {
                let Some(oldest) = self.oldest_droppable().and_then(|i| self.batches.remove(i))
                else {
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

    /// The index of the oldest batch that is not being sent.
    fn oldest_droppable(&self) -> Option<usize> {
        let first = self.batches.get(self.handed_out)?;
        let Some((lo, hi)) = self.live_handed else {
            return Some(self.handed_out);
        };
        if first.id < lo || first.id >= hi {
            return Some(self.handed_out);
        }
        // The live lane's batches are consecutive in id: skip them.
        let after = self.batches.partition_point(|b| b.id < hi);
        (after < self.batches.len()).then_some(after)
    }

    /// Events in the batches handed to the live lane.
    fn live_handed_events(&self) -> usize {
        let Some((lo, hi)) = self.live_handed else {
            return 0;
        };
        let from = self
            .batches
            .partition_point(|b| b.id < lo)
            .max(self.handed_out);
        self.batches
            .range(from..)
            .take_while(|b| b.id < hi)
            .map(|b| b.events.len())
            .sum()
    }

    /// Marks ids `lo..hi` as handed to the live lane (`None`: no live lane).
    pub(super) fn set_live_handed(&mut self, handed: Option<(u64, u64)>) {
        self.live_handed = handed;
    }

    /// The next id to be given.
    pub(super) fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The oldest id not acknowledged, dropped or delivered.
    pub(super) fn head_id(&self) -> u64 {
        self.batches.front().map_or(self.next_id, |b| b.id)
    }

    /// [`next`](Self::next), but nothing at or above `limit`: that is the
    /// live lane's, while a backlog drains.
    pub(super) fn next_below(&mut self, limit: Option<u64>) -> Option<Buffered> {
        let b = self.batches.get(self.handed_out)?;
        if limit.is_some_and(|l| b.id >= l) {
            return None;
        }
        self.next()
    }

    /// A copy of the oldest batch with an id at or above `id` that `next`
    /// has not handed out: what the live lane sends.
    pub(super) fn batch_at_or_after(&self, id: u64) -> Option<Buffered> {
        let i = self
            .batches
            .partition_point(|b| b.id < id)
            .max(self.handed_out);
        self.batches.get(i).map(|b| Buffered {
            id: b.id,
            written_unix_ms: b.arrived_unix_ms,
            events: b.events.clone(),
        })
    }

    /// Removes the batches of ids `first ..= last`: the peer has them
    /// (delivered out of order). Handed-out ones among them leave the
    /// handed-out count too: the sink rewinds or acknowledges past them.
    pub(super) fn remove_delivered(&mut self, first: u64, last: u64) {
        let from = self.batches.partition_point(|b| b.id < first);
        let to = self.batches.partition_point(|b| b.id <= last).max(from);
        for (i, b) in self.batches.drain(from..to).enumerate() {
            let n = b.events.len();
            self.events -= n;
            if from + i < self.handed_out {
                self.handed_out_events -= n;
            }
        }
        let handed = self
            .handed_out
            .min(to)
            .saturating_sub(from.min(self.handed_out));
        self.handed_out -= handed;
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
