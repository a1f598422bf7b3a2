//! The disk buffer: `iotel_buffer::DiskBuffer` holding native frames, plus
//! what the sink needs on top of it: decoding, and each waiting batch's
//! event count so that losses and the backlog are counted in events too.
//!
//! # The event index
//!
//! `iotel_buffer` gives consecutive ids and knows records only as bytes.
//! [`Index`] keeps one `u32` per id from `iotel_buffer`'s head (the oldest
//! id not acknowledged or dropped) to the next id to be given: the batch's
//! event count, [`LOST`] for an id whose record is gone (damaged, in a
//! deleted segment, never written, or skipped because it did not decode),
//! or [`UNKNOWN`] for a record whose native header did not decode. It is
//! filled at `open` by reading every waiting record once (only its header
//! is decoded), then by `push`, and trimmed as the head moves.
//!
//! # Matching `iotel_buffer`'s counts
//!
//! `iotel_buffer` counts lost records by reason; this module takes its
//! batch counts as they grow (`damage_seen` is what it had said so far) and
//! adds the events the index knew for the ids that were skipped. Ids are
//! skipped only where `next` finds a record past the id it expected, so the
//! ids from our own read position up to that record are exactly the ones
//! it counted. When one gap holds ids of both reasons (a damaged segment
//! followed by a deleted one), its events go to `corrupt`.
//!
//! `drop_oldest` deletes whole segments, batches handed out included. Those
//! are still in the sink's hands, and the sink will count them as sent or
//! discarded itself: they wait in `dropped_in_flight` and are counted as
//! dropped only if the sink rewinds or closes without acknowledging them.
//! While a backlog drains the same holds for the batches handed to the live
//! lane (`live_handed`): counted when the live lane is rewound or closed
//! without their delivery.
//!
//! # Out of order
//!
//! A batch the live lane delivered is marked [`LOST`] in the index (it no
//! longer waits: `records` and `events` leave it out) but stays on disk
//! until the cumulative ack passes it; the sink's reader skips it then.
//! The one record `next_below` read past the backlog's end waits in
//! `peeked` for the reader, who gets it once the backlog is done.

use super::{
    BufferIoError, BufferOpenError, BufferStats, Buffered, DiskConfig, DropCounter, DropReason,
    Lost, PushError,
};
use iotel_buffer::{BufferError, DiskBuffer, LedgerState, RecoveryReport};
use iotel_formats::native::{self, Compression};
use iotel_model::Events;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// An id whose record is gone: not waiting, counted already (or never
/// known).
const LOST: u32 = u32::MAX;
/// A waiting record whose event count could not be read.
const UNKNOWN: u32 = u32::MAX - 1;
/// The largest event count kept (a batch this large cannot be built).
const MAX_COUNT: u32 = u32::MAX - 2;

fn event_count(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(MAX_COUNT).min(MAX_COUNT)
}

/// The events a count stands for, 0 when not known.
fn known(count: u32) -> u64 {
    if count == LOST || count == UNKNOWN {
        0
    } else {
        u64::from(count)
    }
}

/// Event counts by id, from `base` on. See the module docs.
#[derive(Debug)]
struct Index {
    base: u64,
    counts: VecDeque<u32>,
    /// Entries not `LOST`.
    records: u64,
    /// Sum of the known counts.
    events: u64,
    /// Entries `UNKNOWN`.
    unknown: u64,
}

impl Index {
    fn new(base: u64) -> Self {
        Self {
            base,
            counts: VecDeque::new(),
            records: 0,
            events: 0,
            unknown: 0,
        }
    }

    fn end(&self) -> u64 {
        self.base + self.counts.len() as u64
    }

    fn add(&mut self, count: u32, sign: i8) {
        if count == LOST {
            return;
        }
        let (records, events, unknown) = (1, known(count), u64::from(count == UNKNOWN));
        if sign > 0 {
            self.records += records;
            self.events += events;
            self.unknown += unknown;
        } else {
            self.records -= records;
            self.events -= events;
            self.unknown -= unknown;
        }
    }

    /// Records `id` as holding `count`; ids between the end and it as lost.
    fn insert(&mut self, id: u64, count: u32) {
        if id < self.base {
            return;
        }
        while self.end() < id {
            self.counts.push_back(LOST);
        }
        let i = (id - self.base) as usize;
        match self.counts.get_mut(i) {
            Some(c) => {
                let old = std::mem::replace(c, count);
                self.add(old, -1);
            }
            None => self.counts.push_back(count),
        }
        self.add(count, 1);
    }

    /// Ids up to `end` that were never pushed or read are lost.
    fn pad_to(&mut self, end: u64) {
        while self.end() < end {
            self.counts.push_back(LOST);
        }
    }

    /// Marks `id` lost; returns its count if it was not lost already.
    fn mark_lost(&mut self, id: u64) -> Option<u32> {
        let i = usize::try_from(id.checked_sub(self.base)?).ok()?;
        let old = std::mem::replace(self.counts.get_mut(i)?, LOST);
        self.add(old, -1);
        (old != LOST).then_some(old)
    }

    /// Forgets every id below `head`, calling `f(id, count)` for each that
    /// was not lost.
    fn pop_below(&mut self, head: u64, mut f: impl FnMut(u64, u32)) {
        while self.base < head {
            let Some(count) = self.counts.pop_front() else {
                self.base = head;
                break;
            };
            self.add(count, -1);
            if count != LOST {
                f(self.base, count);
            }
            self.base += 1;
        }
    }
}

#[derive(Debug)]
pub(super) struct DiskStore {
    buffer: DiskBuffer,
    dir: PathBuf,
    component: String,
    limits: native::Limits,
    max_payload: u64,
    /// `max_segment_size`: what compaction must read to free a segment.
    segment_size: u64,
    index: Index,
    /// Every unacknowledged id below this was handed out since the last
    /// open or rewind: `iotel_buffer`'s read position.
    read_next: u64,
    /// Batches `drop_oldest` deleted while handed out: (id, event count).
    dropped_in_flight: VecDeque<(u64, u32)>,
    /// `iotel_buffer`'s damage counters as already counted here.
    damage_seen: iotel_buffer::Dropped,
    drops: DropCounter,
    /// A record read at or past the limit of `next_below`: the next one
    /// handed out.
    peeked: Option<Buffered>,
    /// Ids `lo..hi` handed to the live lane, while a backlog drains.
    live_handed: Option<(u64, u64)>,
}

/// Decode limits that take any record a segment holds: snappy expands at
/// most about 21 times (its longest copy, 64 bytes, takes 3), so 32 times
/// the segment bounds the body; every record takes at least one body byte.
fn limits(max_segment_size: u64) -> native::Limits {
    let body = usize::try_from(max_segment_size.saturating_mul(32)).unwrap_or(usize::MAX);
    native::Limits {
        max_body_bytes: body,
        max_records: body,
    }
}

impl DiskStore {
    /// Opens (creates, recovers) the buffer in `dir`, reads every waiting
    /// record's header for its event count, and logs what it found.
    pub(super) fn open(
        config: &DiskConfig,
        dir: &Path,
        mut drops: DropCounter,
    ) -> Result<DiskStore, BufferOpenError> {
        let buffer_config = config.buffer_config(dir, super::first_id_from_clock());
        let max_payload = buffer_config.max_payload();
        let failed = |source| BufferOpenError::Disk {
            dir: dir.to_path_buf(),
            source,
        };
        let (mut buffer, report) = DiskBuffer::open(buffer_config).map_err(failed)?;
        // The sink syncs on its timer, while a request is on the wire.
        buffer.sync_on_call_only();
        let mut index = Index::new(report.head_id);
        while let Some(record) = buffer.next().map_err(failed)? {
            let count =
                native::decode_header(&record.payload).map_or(UNKNOWN, |h| event_count(h.records));
            index.insert(record.id, count);
        }
        index.pad_to(report.next_id);
        buffer.rewind();
        // What recovery and this first read found lost: counted in batches
        // only, their event counts were never known to this process.
        let damage_seen = buffer.stats().dropped;
        for reason in [DropReason::Corrupt, DropReason::SegmentMissing] {
            let batches = damage_seen.get(reason);
            drops.count(reason, Lost { batches, events: 0 });
        }
        let store = DiskStore {
            read_next: buffer.head_id(),
            buffer,
            dir: dir.to_path_buf(),
            component: drops.component.id().to_string(),
            limits: limits(config.segment_size()),
            max_payload,
            segment_size: config.segment_size(),
            index,
            dropped_in_flight: VecDeque::new(),
            damage_seen,
            drops,
            peeked: None,
            live_handed: None,
        };
        store.log_recovery(&report);
        Ok(store)
    }

    fn log_recovery(&self, report: &RecoveryReport) {
        let (component, dir) = (&self.component, self.dir.display());
        let events = self.index.events;
        let records = self.index.records;
        if records > 0 {
            tracing::info!(
                component = %component,
                "disk buffer {dir}: {records} batch(es) of {events} events from an earlier run \
                 to send, ids {}..{}",
                report.head_id,
                report.next_id
            );
        } else {
            tracing::info!(
                component = %component,
                "disk buffer {dir}: empty, next id {}",
                report.next_id
            );
        }
        if report.skipped_ids > 0 {
            tracing::info!(
                component = %component,
                "disk buffer {dir}: the last stop was unclean; new batches take ids from {} on, \
                 past every id the last run may have given out",
                report.next_id + report.skipped_ids
            );
        }
        let lost = self.damage_seen;
        if report.ledger == LedgerState::Corrupt {
            tracing::warn!(
                component = %component,
                "disk buffer {dir}: its ledger was damaged; every batch still on disk is sent \
                 again, acknowledged ones included"
            );
        }
        if report.damaged_regions > 0 || report.truncated_bytes > 0 || lost.total() > 0 {
            tracing::warn!(
                component = %component,
                "disk buffer {dir}: found {} damaged region(s) and cut a torn tail of {} \
                 bytes; lost {} batch(es) to damage (counted as dropped, reason \"corrupt\") \
                 and {} to deleted segment files (reason \"segment_missing\")",
                report.damaged_regions,
                report.truncated_bytes,
                lost.corrupt,
                lost.segment_missing
            );
        }
    }

    pub(super) fn push(&mut self, events: &Events) -> Result<u64, PushError> {
        let payload = encode(events)?;
        self.push_encoded(&payload, events.len())
    }

    /// Pushes a batch of `n` events that [`encode`] gave `payload`; returns
    /// its id.
    pub(super) fn push_encoded(&mut self, payload: &[u8], n: usize) -> Result<u64, PushError> {
        if payload.len() as u64 > self.max_payload {
            return Err(PushError::TooLarge {
                events: n,
                bytes: payload.len() as u64,
                max_bytes: self.max_payload,
            });
        }
        let result = self.buffer.push(payload);
        // `drop_oldest` may have deleted segments, even if the write failed.
        self.forget_below_head(true);
        match result {
            Ok(pushed) => {
                self.index.insert(pushed.id, event_count(n as u64));
                Ok(pushed.id)
            }
            Err(BufferError::Full { .. }) => Err(PushError::Full),
            Err(BufferError::RecordTooLarge { len, max_payload }) => Err(PushError::TooLarge {
                events: n,
                bytes: len as u64,
                max_bytes: max_payload,
            }),
            Err(e) => Err(PushError::Io(e)),
        }
    }

    pub(super) fn next(&mut self) -> Result<Option<Buffered>, BufferIoError> {
        if let Some(b) = self.peeked.take() {
            return Ok(Some(b));
        }
        Ok(self.next_sized()?.map(|(b, _)| b))
    }

    /// [`next`](Self::next), but nothing at or above `limit`: that is the
    /// live lane's, while a backlog drains. A record read past it waits in
    /// `peeked`.
    pub(super) fn next_below(
        &mut self,
        limit: Option<u64>,
    ) -> Result<Option<Buffered>, BufferIoError> {
        let Some(b) = self.next()? else {
            return Ok(None);
        };
        if limit.is_some_and(|l| b.id >= l) {
            self.peeked = Some(b);
            return Ok(None);
        }
        Ok(Some(b))
    }

    /// The oldest id not acknowledged or dropped.
    pub(super) fn head_id(&self) -> u64 {
        self.buffer.head_id()
    }

    /// No id below this was given; every id given from now on is at or
    /// above it (after an unclean stop the first is well above).
    pub(super) fn next_id(&self) -> u64 {
        self.index.end()
    }

    /// Marks ids `lo..hi` as handed to the live lane (`None`: no live lane).
    pub(super) fn set_live_handed(&mut self, handed: Option<(u64, u64)>) {
        self.live_handed = handed;
    }

    /// The peer has ids `first ..= last` (delivered out of order): they no
    /// longer wait. Those `drop_oldest` deleted while being sent were
    /// delivered after all: not counted as dropped.
    pub(super) fn mark_delivered(&mut self, first: u64, last: u64) {
        let from = first.max(self.index.base);
        let to = last.saturating_add(1).min(self.index.end());
        for id in from..to {
            self.index.mark_lost(id);
        }
        self.dropped_in_flight
            .retain(|&(id, _)| id < first || id > last);
    }

    /// Counts as dropped the batches of ids `lo..hi` that `drop_oldest`
    /// deleted while the live lane had them and that it no longer sends
    /// (its rewind or end). The record waiting in `peeked` is not among
    /// them: the reader still hands it out.
    pub(super) fn forget_live_in_flight(&mut self, lo: u64, hi: u64) {
        let peeked = self.peeked.as_ref().map(|b| b.id);
        let mut lost = Lost::default();
        self.dropped_in_flight.retain(|&(id, count)| {
            let gone = id >= lo && id < hi && Some(id) != peeked;
            if gone {
                lost.batches += 1;
                lost.events += known(count);
            }
            !gone
        });
        self.drops.count(DropReason::DropOldest, lost);
    }

    /// Decodes a batch as [`encode`] stored it.
    pub(super) fn decode(&self, payload: &[u8]) -> Option<Events> {
        native::decode(payload, &self.limits).ok().map(|b| b.events)
    }

    /// [`next`](Self::next), with the bytes the batch's record takes in its
    /// segment (header included).
    pub(super) fn next_sized(&mut self) -> Result<Option<(Buffered, u64)>, BufferIoError> {
        loop {
            let record = self.buffer.next();
            let found = match &record {
                Ok(Some(r)) => r.id,
                _ => self.read_next,
            };
            self.count_damage(found);
            let Some(record) = record? else {
                return Ok(None);
            };
            self.read_next = record.id + 1;
            match native::decode(&record.payload, &self.limits) {
                Ok(batch) => {
                    let frame_len = (iotel_buffer::HEADER_LEN + record.payload.len()) as u64;
                    let batch = Buffered {
                        id: record.id,
                        written_unix_ms: record.written_unix_ms,
                        events: batch.events,
                    };
                    return Ok(Some((batch, frame_len)));
                }
                Err(e) => self.skip_undecodable(record.id, &e)?,
            }
        }
    }

    /// Counts what `iotel_buffer` found lost since we last looked, with the
    /// events of the ids it skipped, from our read position to `found`.
    fn count_damage(&mut self, found: u64) {
        let now = self.buffer.stats().dropped;
        let corrupt = now.corrupt - self.damage_seen.corrupt;
        let missing = now.segment_missing - self.damage_seen.segment_missing;
        self.damage_seen = now;
        let mut events = 0;
        for id in self.read_next.max(self.index.base)..found.min(self.index.end()) {
            events += self.index.mark_lost(id).map_or(0, known);
        }
        let events_to = if missing > 0 && corrupt == 0 {
            DropReason::SegmentMissing
        } else {
            DropReason::Corrupt
        };
        for (reason, batches) in [
            (DropReason::Corrupt, corrupt),
            (DropReason::SegmentMissing, missing),
        ] {
            let events = if reason == events_to { events } else { 0 };
            self.drops.count(reason, Lost { batches, events });
        }
    }

    /// A record whose checksum matched but whose batch does not decode
    /// (written by a broken build, or not by us): skipped and counted once,
    /// even when a rewind reads it again. It is acknowledged at once when
    /// nothing older waits; else with the next ack past it.
    fn skip_undecodable(&mut self, id: u64, e: &native::DecodeError) -> Result<(), BufferIoError> {
        if let Some(count) = self.index.mark_lost(id) {
            self.drops.count(
                DropReason::Corrupt,
                Lost {
                    batches: 1,
                    events: known(count),
                },
            );
            tracing::warn!(
                component = %self.component,
                "disk buffer {}: batch {id} does not decode ({e}); skipped it (counted as \
                 dropped, reason \"corrupt\")",
                self.dir.display()
            );
        }
        if id == self.buffer.head_id() {
            self.buffer.ack(id)?;
            self.forget_below_head(false);
        }
        Ok(())
    }

    pub(super) fn ack(&mut self, id: u64) -> Result<(), BufferIoError> {
        let result = self.buffer.ack(id);
        // The head moves before the ledger is written, which may fail.
        self.forget_below_head(false);
        result?;
        // Batches dropped while handed out and acknowledged now: the sink
        // delivered (or discarded) them and counted them itself.
        while self
            .dropped_in_flight
            .front()
            .is_some_and(|&(d, _)| d <= id)
        {
            self.dropped_in_flight.pop_front();
        }
        Ok(())
    }

    /// Moves the index to `iotel_buffer`'s head. Ids it passed were
    /// acknowledged, or with `dropped` deleted by `drop_oldest`.
    fn forget_below_head(&mut self, dropped: bool) {
        let head = self.buffer.head_id();
        let read_next = self.read_next;
        let live = self.live_handed;
        let in_flight = &mut self.dropped_in_flight;
        let mut lost = Lost::default();
        self.index.pop_below(head, |id, count| {
            if !dropped {
                return;
            }
            if id < read_next || live.is_some_and(|(lo, hi)| id >= lo && id < hi) {
                in_flight.push_back((id, count));
            } else {
                lost.batches += 1;
                lost.events += known(count);
            }
        });
        self.drops.count(DropReason::DropOldest, lost);
        self.read_next = self.read_next.max(head);
    }

    /// Counts the batches dropped while handed out and not acknowledged:
    /// no one will hand them out again.
    /// The live lane's (`live_handed`) are left to it with `keep_live`.
    fn count_dropped_in_flight(&mut self, keep_live: bool) {
        let live = self.live_handed.filter(|_| keep_live);
        let mut lost = Lost::default();
        self.dropped_in_flight.retain(|&(id, count)| {
            if live.is_some_and(|(lo, hi)| id >= lo && id < hi) {
                return true;
            }
            lost.batches += 1;
            lost.events += known(count);
            false
        });
        self.drops.count(DropReason::DropOldest, lost);
    }

    pub(super) fn rewind(&mut self) {
        self.peeked = None;
        self.count_dropped_in_flight(true);
        self.buffer.rewind();
        self.read_next = self.buffer.head_id();
    }

    pub(super) fn sync_if_due(&mut self) -> Result<(), BufferIoError> {
        Ok(self.buffer.sync_if_due()?)
    }

    pub(super) fn close(mut self) -> Result<(), BufferIoError> {
        self.count_dropped_in_flight(false);
        Ok(self.buffer.close()?)
    }

    /// The largest payload a record takes.
    pub(super) fn max_payload(&self) -> u64 {
        self.max_payload
    }

    pub(super) fn segment_size(&self) -> u64 {
        self.segment_size
    }

    pub(super) fn drops(&mut self) -> &mut DropCounter {
        &mut self.drops
    }

    pub(super) fn stats(&self) -> BufferStats {
        let s = self.buffer.stats();
        let records = self.index.records;
        BufferStats {
            bytes: Some(s.bytes),
            records,
            events: (self.index.unknown == 0).then_some(self.index.events),
            oldest_unacked_unix_ms: s.oldest_unacked_unix_ms.filter(|_| records > 0),
            dropped: self.drops.dropped,
        }
    }
}

/// A batch as a disk record stores it: a native frame, snappy, no agent id,
/// sequence 0.
pub(super) fn encode(events: &Events) -> Result<Vec<u8>, PushError> {
    native::encode("", 0, events, Compression::Snappy).map_err(|source| PushError::Encode {
        events: events.len(),
        source,
    })
}
