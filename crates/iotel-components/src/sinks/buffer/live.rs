//! The live lane and out-of-order acknowledgements: how a sink sends new
//! batches while a backlog drains behind them.
//!
//! # Lanes
//!
//! [`SinkBuffer::begin_live`] opens the live lane at `start`, the next id
//! the buffer gives. Then:
//!
//! - the **backlog lane** is [`next`](SinkBuffer::next): it hands out ids
//!   below `start` only, oldest first, as always;
//! - the **live lane** is [`next_live`](SinkBuffer::next_live): the batches
//!   pushed since, oldest first. A memory buffer serves them from its own
//!   queue by id. A disk buffer serves them from copies of their encoded
//!   records taken at push time, at most [`LIVE_COPY_MAX_BYTES`] together:
//!   a batch pushed while the copies are full is not copied, and no batch
//!   is until the live lane has sent what it holds (so the ids it misses
//!   come in long runs, not one in two). The batches not copied are read
//!   from the disk once the backlog lane reaches them;
//! - [`end_live`](SinkBuffer::end_live) closes the lane when the backlog
//!   lane has nothing left below `start`: `next` then goes on from `start`,
//!   skipping what the live lane delivered.
//!
//! Both lanes' batches are durable (pushed first); the copies only spare
//! the disk a read.
//!
//! # Out-of-order acknowledgements
//!
//! The underlying buffers acknowledge cumulatively ("everything up to id"),
//! the disk buffer only up to what it has handed out. A batch the peer took
//! out of order is recorded with [`mark_delivered`](SinkBuffer::mark_delivered)
//! in the `delivered` ranges, kept in memory only, at most
//! [`MAX_DELIVERED_RANGES`] of them. `next` skips a delivered id; it
//! acknowledges it at once when nothing handed out before it waits, else
//! once the cumulative ack of what waits reaches it. After a restart the
//! ranges are forgotten: those batches are sent again, and the receiver
//! recognises them (at-least-once; exactly-once after its dedup).
//!
//! A request must not span a delivered id (the receiver would answer that
//! it had part of the request, again and again): the sink cuts a request
//! where [`delivered_between`](SinkBuffer::delivered_between) says so, and
//! the live lane's requests only hold consecutive ids.

use super::{BufferIoError, Buffered, Inner, SinkBuffer, now_unix_ms};
use std::collections::VecDeque;

/// The bytes of encoded batches a disk buffer's live lane copies at most:
/// about a second of a busy gateway's input, a twentieth of the edge
/// agent's 5 MB budget.
pub const LIVE_COPY_MAX_BYTES: usize = 256 << 10;

/// Delivered ranges kept at most. Each costs 16 bytes; a backlog makes one
/// or two, a receiver's answer at most 64. Past this the highest range is
/// forgotten: those batches are sent again (and counted as sent again),
/// and the receiver drops them as retransmits.
pub(super) const MAX_DELIVERED_RANGES: usize = 4096;

/// The live lane stops copying past this many delivered ranges, so the
/// rest stay for what a receiver reports.
const LIVE_COPY_MAX_RANGES: usize = MAX_DELIVERED_RANGES / 2;

/// The live lane of one backlog. See the module docs.
#[derive(Debug)]
pub(super) struct LiveLane {
    /// Ids from here on are live.
    start: u64,
    /// `next_live` hands out the oldest live batch at or above this.
    cursor: u64,
    /// A disk buffer's copies, oldest first: (id, written, encoded batch).
    /// Delivered ones are removed.
    copies: VecDeque<(u64, u64, Vec<u8>)>,
    bytes: usize,
    /// A batch was not copied: none is until `copies` is empty.
    full: bool,
    /// Batches not copied in this backlog.
    missed: u64,
}

impl LiveLane {
    pub(super) fn start(&self) -> u64 {
        self.start
    }

    fn forget_copies(&mut self, first: u64, last: u64) {
        let bytes = &mut self.bytes;
        self.copies.retain(|(id, _, p)| {
            let keep = *id < first || *id > last;
            if !keep {
                *bytes -= p.len();
            }
            keep
        });
        if self.copies.is_empty() {
            self.full = false;
        }
    }
}

impl SinkBuffer {
    /// Opens the live lane: batches pushed from now on are live; `next`
    /// hands out older ones only. Returns the first live id. Opening it
    /// again starts a new one.
    pub fn begin_live(&mut self) -> u64 {
        let start = match &self.inner {
            Inner::Memory(m) => m.next_id(),
            Inner::Disk(d) => d.next_id(),
        };
        self.end_live();
        self.live = Some(LiveLane {
            start,
            cursor: start,
            copies: VecDeque::new(),
            bytes: 0,
            full: false,
            missed: 0,
        });
        start
    }

    /// Closes the live lane: what it handed out and did not deliver is
    /// handed out by `next` again, after the backlog.
    pub fn end_live(&mut self) {
        let Some(live) = self.live.take() else {
            return;
        };
        self.forget_live_handed(&live);
        self.set_live_handed(None);
    }

    /// The first live id while the live lane is open.
    pub fn live_start(&self) -> Option<u64> {
        self.live.as_ref().map(LiveLane::start)
    }

    /// The oldest live batch not handed out since the lane opened or was
    /// rewound, and not delivered; `None` when there is none, or the live
    /// lane is closed.
    ///
    /// # Errors
    ///
    /// None today (the copies are in memory); the signature is `next`'s.
    pub fn next_live(&mut self) -> Result<Option<Buffered>, BufferIoError> {
        let Some(live) = &mut self.live else {
            return Ok(None);
        };
        let found = match &mut self.inner {
            Inner::Memory(m) => loop {
                let Some(b) = m.batch_at_or_after(live.cursor) else {
                    break None;
                };
                live.cursor = b.id + 1;
                if !self.delivered.contains(b.id) {
                    break Some(b);
                }
            },
            Inner::Disk(d) => {
                // Copies below the head were deleted by `drop_oldest`
                // (counted by the disk store) or acknowledged.
                let head = d.head_id();
                while live.copies.front().is_some_and(|c| c.0 < head) {
                    if let Some((_, _, p)) = live.copies.pop_front() {
                        live.bytes -= p.len();
                    }
                }
                let cursor = live.cursor;
                let at = live.copies.partition_point(|c| c.0 < cursor);
                loop {
                    let Some((id, written, payload)) = live.copies.get(at) else {
                        break None;
                    };
                    let id = *id;
                    live.cursor = id + 1;
                    if let Some(events) = d.decode(payload) {
                        break Some(Buffered {
                            id,
                            written_unix_ms: *written,
                            events,
                        });
                    }
                    // Not expected: we encoded it. The reader takes the
                    // record from the disk later.
                    if let Some((_, _, p)) = live.copies.remove(at) {
                        live.bytes -= p.len();
                    }
                }
            }
        };
        let handed = (live.start, live.cursor);
        self.set_live_handed(Some(handed));
        Ok(found)
    }

    /// Makes `next_live` start again at the oldest live batch not
    /// delivered (after a failed request the sink gave up, or a peer's
    /// answer that it had part of one).
    pub fn rewind_live(&mut self) {
        let Some(live) = self.live.take() else {
            return;
        };
        self.forget_live_handed(&live);
        let start = live.start;
        self.live = Some(LiveLane {
            cursor: start,
            ..live
        });
        self.set_live_handed(Some((start, start)));
    }

    /// Counts what `drop_oldest` deleted while the live lane had it and
    /// that it will not deliver now.
    fn forget_live_handed(&mut self, live: &LiveLane) {
        if let Inner::Disk(d) = &mut self.inner {
            d.forget_live_in_flight(live.start, live.cursor);
        }
    }

    fn set_live_handed(&mut self, handed: Option<(u64, u64)>) {
        match &mut self.inner {
            Inner::Memory(m) => m.set_live_handed(handed),
            Inner::Disk(d) => d.set_live_handed(handed),
        }
    }

    /// Records that the peer has ids `first ..= last`, delivered out of
    /// order: they no longer wait (the stats leave them out), the live lane
    /// does not send them again, and `next` skips them (after a
    /// [`rewind`](Self::rewind), for ids it had handed out). Ids already
    /// acknowledged are ignored.
    pub fn mark_delivered(&mut self, first: u64, last: u64) {
        // Before the head too: `drop_oldest` may have deleted them while
        // they were being sent.
        match &mut self.inner {
            Inner::Memory(m) => m.remove_delivered(first, last),
            Inner::Disk(d) => d.mark_delivered(first, last),
        }
        if let Some(live) = &mut self.live {
            live.forget_copies(first, last);
        }
        let first = first.max(self.head_id());
        if last < first {
            return;
        }
        self.delivered.insert(first, last);
        while self.delivered.range_count() > MAX_DELIVERED_RANGES {
            let Some((a, b)) = self.delivered.pop_last() else {
                break;
            };
            self.forgotten_ranges += 1;
            if self.forgotten_ranges.is_power_of_two() {
                tracing::warn!(
                    component = %self.component,
                    "more than {MAX_DELIVERED_RANGES} ranges of batches delivered out of order; \
                     forgot ids {a}..={b}: they are sent again, and the receiver drops them as \
                     retransmits (times so far: {})",
                    self.forgotten_ranges
                );
            }
        }
    }

    /// Whether an id strictly between `after` and `before` was delivered
    /// out of order: a request must not span it.
    pub fn delivered_between(&self, after: u64, before: u64) -> bool {
        before > after.saturating_add(1) && self.delivered.intersects(after + 1, before - 1)
    }

    /// The oldest id that may still be sent: every id below it was
    /// acknowledged, dropped, or (in memory) delivered out of order.
    pub fn head_id(&self) -> u64 {
        match &self.inner {
            Inner::Memory(m) => m.head_id(),
            Inner::Disk(d) => d.head_id(),
        }
    }

    /// The oldest id the sink may still send: below the head, the batches
    /// being sent (`drop_oldest` may have deleted them while they were),
    /// and the live lane's. What `Iotel-Oldest-Sequence` says: a receiver
    /// takes every id below it as settled.
    pub fn oldest_id(&self) -> u64 {
        let mut oldest = self.head_id();
        if let Some(&h) = self.handed_out.front() {
            oldest = oldest.min(h);
        }
        if let Some(live) = &self.live
            && live.cursor > live.start
        {
            oldest = oldest.min(live.start);
        }
        oldest
    }

    /// Keeps a copy of a disk buffer's batch `id`, encoded as `payload`,
    /// for the live lane, if it is open, live, and there is room.
    pub(super) fn copy_for_live(&mut self, id: u64, payload: Vec<u8>) {
        let Some(live) = &mut self.live else {
            return;
        };
        if id < live.start {
            return;
        }
        let fits = live.bytes + payload.len() <= LIVE_COPY_MAX_BYTES
            && self.delivered.range_count() < LIVE_COPY_MAX_RANGES;
        if live.full || !fits {
            live.full = true;
            live.missed += 1;
            self.live_missed.inc();
            if live.missed == 1 {
                tracing::warn!(
                    component = %self.component,
                    "the live lane holds {} KiB of batches not yet sent, its limit: batch {id} \
                     and those after it wait for the backlog to drain until the live lane has \
                     sent what it holds (counted in iotel_buffer_live_missed_total)",
                    live.bytes >> 10
                );
            }
            return;
        }
        live.bytes += payload.len();
        live.copies.push_back((id, now_unix_ms(), payload));
    }

    /// Acknowledges a delivered id `next` skipped, if nothing handed out
    /// before it waits; else once the cumulative ack passes what waits.
    pub(super) fn skip_delivered(&mut self, id: u64) -> Result<(), BufferIoError> {
        if self.handed_out.is_empty() {
            return self.inner_ack(id);
        }
        self.skipped = Some(id);
        Ok(())
    }
}
