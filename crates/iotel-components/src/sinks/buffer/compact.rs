//! [`SinkBuffer::compact`]: `when_full = "downsample"` making room by
//! replacing the oldest batches with their downsampled form.
//!
//! # Steps
//!
//! 1. Rewind, and read from the head, through `next`, about an eighth of
//!    the waiting batches (at least 2). A disk buffer reads on until the
//!    records read take more than `max_segment_size` bytes: acks free
//!    space only by deleting whole segments, and the head's segment holds
//!    at most that many bytes of waiting records, so then it is read whole.
//!    It stops early past [`READ_SEGMENTS_AT_MOST`] segments' worth.
//! 2. [`downsample`](super::downsample::downsample) them, and cut the result
//!    into batches of at most as many events as the largest batch read (a
//!    disk batch also halved until it fits a record).
//! 3. Decide whether that frees room, **before** touching anything: in
//!    memory, fewer events out than in; on disk, fewer bytes out than the
//!    least the acks can free (see [`freed_at_least`]). If not, rewind and
//!    report `freed: false`: the buffer is as it was.
//! 4. Acknowledge up to the last id read (cumulative acks are why it reads
//!    from the head), count, push the compacted batches at the tail, and
//!    rewind so the sink's next `next` starts at the new head.
//!
//! # Order and ids
//!
//! The compacted batches get new ids, above every id given so far, so a
//! downsampled backlog is delivered after batches that were newer than it.
//! It cannot be put back at the head: the receiver of the native protocol
//! drops a sequence (our id) at or below one it has seen, so ids may only
//! grow, and the ids below the new head are taken. The events keep their
//! own timestamps, which is what a receiver orders by.
//!
//! # Crash safety
//!
//! A disk buffer has no room for the compacted batches until the acks
//! freed a segment, so the acks are written first. Between the ledger
//! recording them (at once under `fsync = "always"`, else at the next sync
//! or when the first push needs the segment's room) and the compacted
//! records reaching the disk, a crash loses the compacted data, uncounted.
//! A crash before the acks replays the originals: nothing is lost.

use super::downsample::{self, Summary};
use super::{BufferIoError, Inner, Lost, PushError, SinkBuffer, disk};
use iotel_model::Events;

/// What [`SinkBuffer::compact`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compacted {
    /// Batches read from the head and replaced (with `freed`), or looked at.
    pub batches_in: u64,
    /// Events in those.
    pub events_in: u64,
    /// Events in the compacted batches pushed (with `freed`), or that
    /// compaction would have pushed.
    pub events_out: u64,
    /// Whether the buffer now holds less: fewer events in memory, fewer
    /// bytes on disk (once the acknowledged segments are deleted, which the
    /// next push does first). When `false` nothing changed: fewer than two
    /// batches wait, or their compacted form would not be smaller (a
    /// backlog compacted already, series with one sample per window). Even
    /// when `true` the new batch may still not fit; its push says so.
    pub freed: bool,
}

/// Compaction takes at least this many batches: one batch alone gains
/// little and may be the one the sink is about to send.
const MIN_BATCHES: u64 = 2;

/// It takes about 1 in this many of the waiting batches: enough to make
/// room for a good while, little enough to leave most of the backlog at
/// full resolution.
const SHARE: u64 = 8;

/// A disk buffer's eighth is cut to about this many segments' worth of
/// records (but never below what frees one segment): they are decoded into
/// memory at once, and an eighth of a large buffer is more than an edge
/// device should hold (1 GiB / 8 decoded). With the default sizes (16
/// segments) an eighth is about this anyway.
const READ_SEGMENTS_AT_MOST: u64 = 2;

impl SinkBuffer {
    /// Replaces the oldest batches with their downsampled form (see the
    /// module docs of `compact.rs` and `downsample.rs`), under
    /// `downsample_window` and `downsample_keep_one_in`. The sink calls it
    /// when [`push`](Self::push) returned [`PushError::Full`] under
    /// `when_full = "downsample"`, then pushes again if it `freed` room,
    /// else drops the new batch (counted as `buffer_full`).
    ///
    /// Call it only with no request awaiting an answer: it closes the live
    /// lane and rewinds first, so batches handed out and not acknowledged
    /// are handed out again (the compacted ones among them under new ids),
    /// and rewinds at the end. Batches delivered out of order are
    /// acknowledged with the rest, not compacted.
    ///
    /// Counting: the batches replaced are counted in
    /// `iotel_buffer_dropped_total{reason="downsampled"}` and
    /// [`Dropped::downsampled`](super::Dropped::downsampled), and
    /// `events_in - events_out` in the component's
    /// `iotel_component_discarded_events_total{reason="downsampled"}`.
    /// They are not counted under any other reason.
    ///
    /// # Errors
    ///
    /// [`BufferIoError::Disk`] when reading, acknowledging or writing a
    /// disk buffer fails. If that happens after the acks, the compacted
    /// events not yet pushed are counted as discarded (`downsampled`).
    pub fn compact(&mut self) -> Result<Compacted, BufferIoError> {
        self.end_live();
        let result = self.try_compact();
        self.rewind();
        self.update_metrics();
        result
    }

    fn try_compact(&mut self) -> Result<Compacted, BufferIoError> {
        self.rewind();
        let waiting = self.stats().records;
        if waiting < MIN_BATCHES {
            return Ok(Compacted::default());
        }
        let target = waiting.div_ceil(SHARE).max(MIN_BATCHES);
        let segment = match &self.inner {
            Inner::Memory(_) => None,
            Inner::Disk(d) => Some(d.segment_size()),
        };

        // 1. Read.
        let mut inputs = Vec::new();
        // (id, bytes of its record); bytes are 0 in memory.
        let mut records: Vec<(u64, u64)> = Vec::new();
        let mut bytes = 0u64;
        let enough = |n: u64, bytes: u64| match segment {
            None => n >= target,
            Some(s) => {
                n >= MIN_BATCHES && bytes > s && (n >= target || bytes > READ_SEGMENTS_AT_MOST * s)
            }
        };
        while !enough(records.len() as u64, bytes) {
            let next = match &mut self.inner {
                Inner::Memory(m) => m.next().map(|b| (b, 0)),
                Inner::Disk(d) => d.next_sized()?,
            };
            let Some((batch, len)) = next else { break };
            records.push((batch.id, len));
            bytes += len;
            // The peer has it already: acknowledged below, not compacted.
            if !self.delivered.contains(batch.id) {
                inputs.push(batch.events);
            }
        }
        let events_in: u64 = inputs.iter().map(|e| e.len() as u64).sum();
        let mut result = Compacted {
            batches_in: inputs.len() as u64,
            events_in,
            events_out: events_in,
            freed: false,
        };
        let Some(&(last_id, _)) = records.last() else {
            return Ok(result);
        };
        if (records.len() as u64) < MIN_BATCHES {
            return Ok(result);
        }

        // 2. Downsample and cut.
        let largest = inputs.iter().map(Events::len).max().unwrap_or(1).max(1);
        let d = self.downsample;
        let (out, summary) = downsample::downsample(inputs, d.window.get(), d.keep_one_in);
        result.events_out = summary.events_out;
        let batches: Vec<Events> = out.into_iter().flat_map(|e| cut(e, largest)).collect();

        // 3. Would it free room?
        let pushes = match &self.inner {
            Inner::Memory(_) => {
                if summary.events_out >= summary.events_in {
                    return Ok(result);
                }
                batches.into_iter().map(|e| (e, None)).collect::<Vec<_>>()
            }
            Inner::Disk(d) => {
                let Some(encoded) = encode_fitting(batches, d.max_payload()) else {
                    return Ok(result);
                };
                let out_bytes: u64 = encoded
                    .iter()
                    .map(|(_, p)| (iotel_buffer::HEADER_LEN + p.len()) as u64)
                    .sum();
                if out_bytes >= freed_at_least(&records, d.segment_size()) {
                    return Ok(result);
                }
                encoded.into_iter().map(|(e, p)| (e, Some(p))).collect()
            }
        };

        // 4. Replace.
        self.ack(last_id)?;
        self.count_downsampled(&summary, result.batches_in);
        result.freed = true;
        let mut pushes = pushes.into_iter();
        while let Some((events, payload)) = pushes.next() {
            let pushed = match (&mut self.inner, &payload) {
                (Inner::Memory(m), _) => m.push(&events),
                (Inner::Disk(d), Some(p)) => d.push_encoded(p, events.len()).map(|_| ()),
                (Inner::Disk(d), None) => d.push(&events).map(|_| ()),
            };
            let Err(e) = pushed else { continue };
            // Not expected: step 3 made sure they fit. What was not pushed
            // is lost; count it with what compaction removed.
            let lost = events.len() as u64 + pushes.map(|(e, _)| e.len() as u64).sum::<u64>();
            result.events_out -= lost;
            self.count_lost(lost, &e);
            return match e {
                PushError::Io(e) => Err(BufferIoError::Disk(e)),
                _ => Ok(result),
            };
        }
        Ok(result)
    }

    fn count_downsampled(&mut self, summary: &Summary, batches: u64) {
        let lost = Lost {
            batches,
            events: summary.removed(),
        };
        match &mut self.inner {
            Inner::Memory(m) => m.drops().count_downsampled(lost),
            Inner::Disk(d) => d.drops().count_downsampled(lost),
        }
    }

    fn count_lost(&mut self, events: u64, e: &PushError) {
        let drops = match &mut self.inner {
            Inner::Memory(m) => m.drops(),
            Inner::Disk(d) => d.drops(),
        };
        tracing::warn!(
            component = %drops.component.id(),
            "compacting the buffer: pushing the compacted batches failed ({e}); {events} \
             compacted events are lost (counted as discarded, reason \"downsampled\")"
        );
        drops.count_downsampled(Lost { batches: 0, events });
    }
}

/// `events` in batches of at most `max` events.
fn cut(events: Events, max: usize) -> Vec<Events> {
    fn cut<T>(v: Vec<T>, max: usize, batch: fn(Vec<T>) -> Events) -> Vec<Events> {
        let mut out = Vec::new();
        let mut rest = v.into_iter().peekable();
        while rest.peek().is_some() {
            out.push(batch(rest.by_ref().take(max).collect()));
        }
        out
    }
    match events {
        Events::Metrics(v) => cut(v, max, Events::Metrics),
        Events::Logs(v) => cut(v, max, Events::Logs),
        Events::Traces(v) => cut(v, max, Events::Traces),
    }
}

/// `events` split in two halves.
fn halves(events: Events) -> (Events, Events) {
    match events {
        Events::Metrics(mut v) => {
            let b = v.split_off(v.len() / 2);
            (Events::Metrics(v), Events::Metrics(b))
        }
        Events::Logs(mut v) => {
            let b = v.split_off(v.len() / 2);
            (Events::Logs(v), Events::Logs(b))
        }
        Events::Traces(mut v) => {
            let b = v.split_off(v.len() / 2);
            (Events::Traces(v), Events::Traces(b))
        }
    }
}

/// Every batch encoded for a disk record, halved until it fits
/// `max_payload`; `None` if one event alone does not, or encoding fails.
fn encode_fitting(batches: Vec<Events>, max_payload: u64) -> Option<Vec<(Events, Vec<u8>)>> {
    let mut out = Vec::new();
    // A stack, last batch first, so the output keeps the order.
    let mut todo: Vec<Events> = batches.into_iter().rev().collect();
    while let Some(events) = todo.pop() {
        let payload = disk::encode(&events).ok()?;
        if payload.len() as u64 <= max_payload {
            out.push((events, payload));
        } else if events.len() > 1 {
            let (a, b) = halves(events);
            todo.push(b);
            todo.push(a);
        } else {
            return None;
        }
    }
    Some(out)
}

/// The fewest bytes acknowledging `records` (`(id, bytes)`, read in order
/// from the head of a disk buffer whose segments close at `segment` bytes)
/// is sure to free. Only whole segments are deleted, and where they begin
/// is not known here; what is:
///
/// - the head's segment holds the first `k` records read, `k ≥ 1`, and
///   maybe records lost to damage, so `sum(records[..k]) ≤ segment`;
/// - if `k < records.len()`, the record `k` is in a later segment, so the
///   acks delete the head's segment whole: at least `sum(records[..k])`
///   bytes; and if record `k`'s id follows record `k - 1`'s, it was the
///   first of the next segment, which was started because it did not fit:
///   the head's segment is more than `segment - bytes(k)` bytes;
/// - if `k = records.len()` is possible, nothing is sure to be deleted.
///
/// So the least over every `k` possible. The reader makes `k =
/// records.len()` impossible by reading more than `segment` bytes.
pub(super) fn freed_at_least(records: &[(u64, u64)], segment: u64) -> u64 {
    let mut least = u64::MAX;
    let mut before = 0u64;
    for (k, &(id, bytes)) in records.iter().enumerate() {
        if k > 0 {
            let started_next = if id == records[k - 1].0 + 1 {
                (segment + 1).saturating_sub(bytes)
            } else {
                0
            };
            least = least.min(before.max(started_next));
        }
        before += bytes;
        if before > segment {
            // `least` is unset only if one record takes more than a
            // segment, which a disk buffer refuses.
            return if least == u64::MAX { 0 } else { least };
        }
    }
    // All of them may be in the head's segment.
    0
}
