//! The sink buffer: where a sink keeps the batches it was given until its
//! peer acknowledged them, in memory or on disk.
//!
//! ```toml
//! buffer = { type = "memory", max_events = 20000, when_full = "drop_oldest" }
//! buffer = { type = "disk", max_size = "64MiB", when_full = "drop_oldest", fsync = "1s" }
//! buffer = { type = "disk", when_full = "downsample", downsample_window = "1m", downsample_keep_one_in = 10 }
//! ```
//!
//! One sink task owns one [`SinkBuffer`]: it [`push`](SinkBuffer::push)es
//! every input batch (one input batch is one buffered batch), reads them
//! back oldest first with [`next`](SinkBuffer::next),
//! [`ack`](SinkBuffer::ack)s them once its peer confirmed delivery, and
//! [`rewind`](SinkBuffer::rewind)s to be handed again what it could not
//! deliver. A memory buffer loses what it holds when the process stops; a
//! disk buffer (`iotel_buffer`, one directory per sink) replays every
//! unacknowledged batch after a restart or a crash.
//!
//! While a backlog drains, a sink may also open the **live lane**
//! ([`begin_live`](SinkBuffer::begin_live)): `next` then hands out the
//! backlog only and [`next_live`](SinkBuffer::next_live) the batches pushed
//! since, and batches the peer took out of order are recorded with
//! [`mark_delivered`](SinkBuffer::mark_delivered). See `live.rs`.
//!
//! # Ids
//!
//! Every batch gets an id, one above the batch before. The native protocol
//! sends ids as its sequence and its receiver drops a sequence it has seen,
//! so ids must keep growing across restarts: a disk buffer continues from
//! its ledger; a new disk buffer (an empty directory) and every memory
//! buffer start at the current Unix time in microseconds. That stays above
//! the ids an earlier process gave as long as it gave fewer than one per
//! microsecond since it started, and the clock did not go back.
//!
//! # What is counted, in which unit
//!
//! - `iotel_buffer_records` and `iotel_buffer_dropped_total{reason}` count
//!   **batches** (buffer records), for both kinds of buffer. Damage on disk
//!   loses records whose event count cannot be read any more, so losses are
//!   counted in the one unit that is always known.
//! - The events of every lost batch whose size is known are counted in the
//!   component's `iotel_component_discarded_events_total` under the same
//!   reason (`drop_oldest`, `corrupt`, `segment_missing`), so that a sink's
//!   received = sent + discarded + `iotel_buffer_events` (a batch marked
//!   delivered out of order is sent, and leaves `iotel_buffer_records` and
//!   `iotel_buffer_events` then). Batches found lost
//!   when a disk buffer is opened (damage from before this process) add no
//!   events: nobody can tell how many they held.
//! - `downsampled` ([`SinkBuffer::compact`]): `iotel_buffer_dropped_total`
//!   counts the batches that were compacted (each is replaced, not lost:
//!   the compacted batches that take their place are new batches, in
//!   `iotel_buffer_records`); `iotel_component_discarded_events_total`
//!   counts the events the compaction removed, net: events in minus events
//!   out, the aggregate gauges it added being subtracted (10 samples of one
//!   series in one window become 4 events: 6 discarded). The identity
//!   above still holds.
//! - `iotel_buffer_events`: events waiting, exact for both kinds (a disk
//!   buffer keeps each waiting batch's event count in memory, 4 bytes a
//!   batch, read from the records' native headers when it is opened).
//! - `iotel_buffer_bytes`: the disk buffer's segment files. Not reported
//!   for a memory buffer, whose batches are not encoded.
//!
//! # When full
//!
//! - memory, `drop_oldest`: the oldest whole batches that are not handed out
//!   are dropped until the new one fits; batches handed out (being sent) are
//!   never dropped, and when they alone leave no room `push` returns
//!   [`PushError::Full`] until they are acknowledged.
//! - disk, `drop_oldest`: `iotel_buffer` deletes the oldest whole segment,
//!   whatever is in it. A batch deleted while handed out is still in the
//!   sink's hands: it is counted as dropped only if the sink then rewinds or
//!   closes without acknowledging it.
//! - `block`: `push` returns [`PushError::Full`] (retryable); the sink stops
//!   reading its input until an ack makes room.
//! - `downsample`: `push` returns [`PushError::Full`] as under `block`; the
//!   sink, once no request of its awaits an answer, calls
//!   [`SinkBuffer::compact`], which replaces the oldest batches with their
//!   downsampled form (see `downsample.rs` for what is kept:
//!   per series and `downsample_window` the last value with min, max and
//!   count; ERROR logs and error spans whole, 1 in
//!   `downsample_keep_one_in` of the rest), then pushes again. When
//!   compaction frees nothing the new batch is dropped, counted as
//!   `buffer_full` by the sink. The compacted batches are pushed at the
//!   tail with new ids, so a downsampled backlog is delivered *after*
//!   batches that were newer than it: ids must only grow, since the
//!   receiver drops an id (the native protocol's sequence) at or below one
//!   it has seen, and a batch cannot be put back at the head under a
//!   lower id. The events keep their own timestamps; a receiver must take
//!   them out of order (a Prometheus-compatible store refuses samples
//!   older than its newest of their series unless out-of-order ingestion
//!   is enabled).
//!
//! # Disk records
//!
//! A batch is stored as a native frame (`iotel_formats::native`, snappy,
//! no agent id, sequence 0: the record's id is the sequence), inside
//! `iotel_buffer`'s CRC-32C-checked record. A record whose checksum matched
//! but whose frame does not decode is skipped and counted as `corrupt`.
//! Opening a disk buffer reads every waiting record once to learn its event
//! count, so a full buffer costs one sequential read at start.

mod compact;
mod config;
mod disk;
pub mod downsample;
mod live;
mod memory;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_compact;
#[cfg(test)]
mod tests_downsample;
#[cfg(test)]
mod tests_live;
#[cfg(test)]
mod tests_model;

pub use compact::Compacted;
pub use config::{BufferConfig, DiskConfig, Downsample, Fsync, MemoryConfig, WhenFull};
pub use live::LIVE_COPY_MAX_BYTES;

pub use iotel_buffer::DropReason;

use crate::id_ranges::IdRanges;
use disk::DiskStore;
use iotel_engine::{ComponentMetrics, Counter, Gauge};
use iotel_model::Events;
use live::LiveLane;
use memory::MemoryBuffer;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// Errors

/// Why [`SinkBuffer::push`] did not store a batch. The caller still owns the
/// batch (`push` borrows it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// No room until the sink's peer acknowledges more (`when_full =
    /// "block"`, or only batches being sent are left to drop). Retry after
    /// an ack.
    #[error("the buffer is full until the sink's peer acknowledges more batches")]
    Full,
    /// A memory buffer's batch with more events than `max_events`: it can
    /// never fit. The caller counts it as discarded.
    #[error("a batch of {events} events is more than the buffer's max_events ({max_events})")]
    TooManyEvents { events: usize, max_events: usize },
    /// A disk buffer's batch larger, encoded, than one record of a segment:
    /// it can never fit. The caller counts it as discarded.
    #[error(
        "a batch of {events} events is {bytes} bytes encoded, more than the {max_bytes} bytes a \
         disk buffer record holds (max_segment_size minus the 32-byte header)"
    )]
    TooLarge {
        events: usize,
        bytes: u64,
        max_bytes: u64,
    },
    /// The batch could not be encoded for the disk (a body over 4 GiB).
    #[error("encoding a batch of {events} events for the disk buffer failed: {source}")]
    Encode {
        events: usize,
        #[source]
        source: iotel_formats::native::EncodeError,
    },
    /// The file system failed.
    #[error(transparent)]
    Io(iotel_buffer::BufferError),
}

impl PushError {
    /// Whether the same push may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            PushError::Full => true,
            PushError::Io(e) => e.is_retryable(),
            PushError::TooManyEvents { .. }
            | PushError::TooLarge { .. }
            | PushError::Encode { .. } => false,
        }
    }

    /// A stable name, for error and discard metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            PushError::Full => "buffer_full",
            PushError::TooManyEvents { .. } | PushError::TooLarge { .. } => "batch_too_large",
            PushError::Encode { .. } => "encode_failed",
            PushError::Io(_) => "buffer_write_failed",
        }
    }
}

/// Why [`SinkBuffer::next`], [`ack`](SinkBuffer::ack),
/// [`sync_if_due`](SinkBuffer::sync_if_due) or [`close`](SinkBuffer::close)
/// failed: the file system, or an ack of an id not handed out (a bug of the
/// caller).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BufferIoError {
    #[error("ack of batch id {id}, but the last id handed out is {last_handed_out:?}")]
    AckOutOfRange {
        id: u64,
        last_handed_out: Option<u64>,
    },
    #[error(transparent)]
    Disk(iotel_buffer::BufferError),
}

impl From<iotel_buffer::BufferError> for BufferIoError {
    fn from(e: iotel_buffer::BufferError) -> Self {
        match e {
            iotel_buffer::BufferError::AckOutOfRange { id, last_read } => {
                BufferIoError::AckOutOfRange {
                    id,
                    last_handed_out: last_read,
                }
            }
            e => BufferIoError::Disk(e),
        }
    }
}

impl BufferIoError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            BufferIoError::AckOutOfRange { .. } => false,
            BufferIoError::Disk(e) => e.is_retryable(),
        }
    }

    /// A stable name, for error metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            BufferIoError::AckOutOfRange { .. } => "ack_out_of_range",
            BufferIoError::Disk(_) => "buffer_io_failed",
        }
    }
}

/// Why [`SinkBuffer::open`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BufferOpenError {
    /// The config has a problem `validate` reports (the first one).
    #[error("{key}: {message}")]
    InvalidConfig { key: String, message: String },
    /// The disk buffer's directory could not be opened or repaired.
    #[error("opening the disk buffer in {} failed: {source}", dir.display())]
    Disk {
        dir: PathBuf,
        #[source]
        source: iotel_buffer::BufferError,
    },
}

// ---------------------------------------------------------------------------
// Stats and counting

/// A batch handed out by [`SinkBuffer::next`].
#[derive(Debug, Clone, PartialEq)]
pub struct Buffered {
    /// Increasing, across restarts too (see the module docs, "Ids").
    pub id: u64,
    /// When it was pushed.
    pub written_unix_ms: u64,
    pub events: Events,
}

/// What was lost for one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lost {
    /// `iotel_buffer_dropped_total{reason}`.
    pub batches: u64,
    /// Their events where known: `iotel_component_discarded_events_total`.
    pub events: u64,
}

/// Losses by reason since this process opened the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dropped {
    pub drop_oldest: Lost,
    pub corrupt: Lost,
    pub segment_missing: Lost,
    /// Batches replaced by [`SinkBuffer::compact`], and the events that
    /// compaction removed (net: in minus out). See the module docs,
    /// "What is counted".
    pub downsampled: Lost,
}

impl Dropped {
    pub fn get(&self, reason: DropReason) -> Lost {
        match reason {
            DropReason::DropOldest => self.drop_oldest,
            DropReason::Corrupt => self.corrupt,
            DropReason::SegmentMissing => self.segment_missing,
        }
    }

    fn get_mut(&mut self, reason: DropReason) -> &mut Lost {
        match reason {
            DropReason::DropOldest => &mut self.drop_oldest,
            DropReason::Corrupt => &mut self.corrupt,
            DropReason::SegmentMissing => &mut self.segment_missing,
        }
    }
}

/// A snapshot of a buffer, as its gauges show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferStats {
    /// A disk buffer's segment files, acknowledged batches not yet deleted
    /// included; `None` for a memory buffer.
    pub bytes: Option<u64>,
    /// Batches not yet acknowledged, those handed out included.
    pub records: u64,
    /// Events in them. Known for both kinds of buffer; `None` only while a
    /// disk buffer holds a batch whose native header did not decode.
    pub events: Option<u64>,
    /// When the oldest unacknowledged batch was pushed; `None` when empty.
    /// A disk buffer may report an older time than the truth after acks,
    /// until it reads the next batch (it errs high, never to zero).
    pub oldest_unacked_unix_ms: Option<u64>,
    pub dropped: Dropped,
}

/// Counts losses: the stats, `iotel_buffer_dropped_total` and the
/// component's discarded events, together.
#[derive(Debug)]
struct DropCounter {
    dropped: Dropped,
    /// By `DropReason::ALL` order.
    batches: [Counter; 3],
    /// `iotel_buffer_dropped_total{reason="downsampled"}`: not an
    /// `iotel_buffer` reason, that crate does not know what records mean.
    downsampled: Counter,
    component: ComponentMetrics,
}

/// The reason label of compaction's counts.
const DOWNSAMPLED: &str = "downsampled";

impl DropCounter {
    fn new(metrics: &ComponentMetrics) -> Self {
        let counter = |reason: &str| {
            metrics.registry().counter(
                "iotel_buffer_dropped_total",
                "Batches a sink's buffer lost before its peer acknowledged them, by reason: \
                 drop_oldest (the buffer was full), corrupt (damaged on disk), segment_missing \
                 (a disk buffer's segment file was deleted), downsampled (replaced by their \
                 compacted form under when_full = downsample; the compacted batches are new \
                 batches). Their events are in iotel_component_discarded_events_total under \
                 the same reason; for downsampled only the events compaction removed, net.",
                &[("component_id", metrics.id()), ("reason", reason)],
            )
        };
        Self {
            dropped: Dropped::default(),
            batches: DropReason::ALL.map(|r| counter(r.code())),
            downsampled: counter(DOWNSAMPLED),
            component: metrics.clone(),
        }
    }

    /// Counts a compaction: `lost.batches` replaced, `lost.events` removed.
    fn count_downsampled(&mut self, lost: Lost) {
        self.dropped.downsampled.batches += lost.batches;
        self.dropped.downsampled.events += lost.events;
        self.downsampled.add(lost.batches);
        if lost.events > 0 {
            self.component.discarded(
                DOWNSAMPLED,
                usize::try_from(lost.events).unwrap_or(usize::MAX),
            );
        }
    }

    fn count(&mut self, reason: DropReason, lost: Lost) {
        if lost == Lost::default() {
            return;
        }
        let total = self.dropped.get_mut(reason);
        total.batches += lost.batches;
        total.events += lost.events;
        let i = match reason {
            DropReason::DropOldest => 0,
            DropReason::Corrupt => 1,
            DropReason::SegmentMissing => 2,
        };
        self.batches[i].add(lost.batches);
        if lost.events > 0 {
            self.component.discarded(
                reason.code(),
                usize::try_from(lost.events).unwrap_or(usize::MAX),
            );
        }
    }
}

/// The buffer's gauges.
#[derive(Debug)]
struct Gauges {
    /// Disk only.
    bytes: Option<Gauge>,
    records: Gauge,
    events: Gauge,
    oldest_age_seconds: Gauge,
    fill_ratio: Gauge,
}

impl Gauges {
    fn new(metrics: &ComponentMetrics, disk: bool) -> Self {
        let labels = [("component_id", metrics.id())];
        let r = metrics.registry();
        Self {
            bytes: disk.then(|| {
                r.gauge(
                    "iotel_buffer_bytes",
                    "Bytes of a sink's disk buffer files, acknowledged batches not yet deleted \
                     included. Stays within the buffer's max_size.",
                    &labels,
                )
            }),
            records: r.gauge(
                "iotel_buffer_records",
                "Batches waiting in a sink's buffer until its peer acknowledges them, those \
                 being sent included.",
                &labels,
            ),
            events: r.gauge(
                "iotel_buffer_events",
                "Events in the batches waiting in a sink's buffer.",
                &labels,
            ),
            fill_ratio: r.gauge(
                "iotel_buffer_fill_ratio",
                "How full a sink's buffer is, 0 to 1: events of its max_events in memory, bytes \
                 of its max_size on disk.",
                &labels,
            ),
            oldest_age_seconds: r.gauge(
                "iotel_buffer_oldest_age_seconds",
                "How long the oldest batch waiting in a sink's buffer has waited, in seconds; 0 \
                 when it is empty. Grows while the sink's peer is unreachable.",
                &labels,
            ),
        }
    }

    fn set(&self, s: &BufferStats) {
        if let (Some(g), Some(bytes)) = (&self.bytes, s.bytes) {
            g.set(bytes as f64);
        }
        self.records.set(s.records as f64);
        self.events.set(s.events.unwrap_or(0) as f64);
        let age_ms = s
            .oldest_unacked_unix_ms
            .map_or(0, |t| now_unix_ms().saturating_sub(t));
        self.oldest_age_seconds.set(age_ms as f64 / 1000.0);
    }
}

fn now_unix_ms() -> u64 {
    u64::try_from(iotel_model::now_unix_ms()).unwrap_or(0)
}

/// The first id of a new buffer: the clock in microseconds (see "Ids").
fn first_id_from_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .max(1)
}

// ---------------------------------------------------------------------------
// The buffer

/// A sink's buffer. Driven by the sink's one task; not shared.
#[derive(Debug)]
pub struct SinkBuffer {
    inner: Inner,
    gauges: Gauges,
    /// `max_events` of a memory buffer, `max_size` of a disk one.
    capacity: u64,
    /// What [`compact`](Self::compact) uses.
    downsample: Downsample,
    /// For logs.
    component: String,
    /// Ids the peer has although they are not acknowledged below: see
    /// `live.rs`, "Out-of-order acknowledgements".
    delivered: IdRanges,
    /// Ids `next` handed out and not yet acknowledged, oldest first.
    handed_out: VecDeque<u64>,
    /// The highest delivered id `next` skipped and could not acknowledge
    /// yet (an older one handed out waits).
    skipped: Option<u64>,
    /// Open while a backlog drains: see `live.rs`.
    live: Option<LiveLane>,
    /// `iotel_buffer_live_missed_total`.
    live_missed: Counter,
    /// Delivered ranges forgotten to stay within their bound (logged).
    forgotten_ranges: u64,
}

#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per sink, built once and never moved in a loop: a box would buy nothing"
)]
enum Inner {
    Memory(MemoryBuffer),
    Disk(DiskStore),
}

impl SinkBuffer {
    /// Opens the buffer `config` describes and registers its metrics under
    /// `metrics`' component id. `dir` is the buffer's own directory (the
    /// sink passes `data_dir/buffers/<component id>`), created if missing;
    /// a memory buffer ignores it. A disk buffer recovers what a crash left
    /// there and logs what it found.
    ///
    /// # Errors
    ///
    /// [`BufferOpenError::InvalidConfig`] for a config `validate` refuses;
    /// [`BufferOpenError::Disk`] when the directory cannot be created,
    /// read or repaired. Damaged contents are not an error: they are
    /// skipped and counted.
    pub fn open(
        config: &BufferConfig,
        dir: &Path,
        metrics: &ComponentMetrics,
    ) -> Result<SinkBuffer, BufferOpenError> {
        if let Some(p) = config.validate("buffer").into_iter().next() {
            return Err(BufferOpenError::InvalidConfig {
                key: p.key,
                message: p.message,
            });
        }
        let drops = DropCounter::new(metrics);
        let inner = match config {
            BufferConfig::Memory(c) => {
                Inner::Memory(MemoryBuffer::new(c, first_id_from_clock(), drops))
            }
            BufferConfig::Disk(c) => Inner::Disk(DiskStore::open(c, dir, drops)?),
        };
        let capacity = match config {
            BufferConfig::Memory(c) => c.max_events.get() as u64,
            BufferConfig::Disk(c) => c.max_size.bytes(),
        };
        let buffer = SinkBuffer {
            gauges: Gauges::new(metrics, matches!(inner, Inner::Disk(_))),
            inner,
            capacity,
            downsample: config.downsample(),
            component: metrics.id().to_string(),
            delivered: IdRanges::new(),
            handed_out: VecDeque::new(),
            skipped: None,
            live: None,
            live_missed: metrics.registry().counter(
                "iotel_buffer_live_missed_total",
                "Batches pushed while a backlog drained that the live lane had no room to copy \
                 (a disk buffer's live lane holds 256 KiB): they are sent after the backlog.",
                &[("component_id", metrics.id())],
            ),
            forgotten_ranges: 0,
        };
        buffer.update_metrics();
        Ok(buffer)
    }

    /// Stores `events` as one batch, after the batches already there. An
    /// empty batch is not stored. Under `when_full = "drop_oldest"` older
    /// batches may be dropped to make room (counted, see the module docs).
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] (retryable: wait for an ack);
    /// [`PushError::TooManyEvents`] and [`PushError::TooLarge`] for a batch
    /// that can never fit, [`PushError::Encode`]: the caller counts those as
    /// discarded; [`PushError::Io`].
    pub fn push(&mut self, events: &Events) -> Result<(), PushError> {
        if events.is_empty() {
            return Ok(());
        }
        match &mut self.inner {
            Inner::Memory(m) => m.push(events),
            Inner::Disk(d) => {
                let payload = disk::encode(events)?;
                let id = d.push_encoded(&payload, events.len())?;
                self.copy_for_live(id, payload);
                Ok(())
            }
        }
    }

    /// The oldest batch not handed out since the buffer was opened or
    /// [`rewind`](Self::rewind)ed, or `None` when there is none yet. A batch
    /// lost to damage is skipped and counted; one delivered out of order
    /// ([`mark_delivered`](Self::mark_delivered)) is skipped. While the
    /// live lane is open, only batches older than it (the backlog).
    ///
    /// # Errors
    ///
    /// [`BufferIoError::Disk`] when reading the disk fails.
    // Not `Iterator`: `None` means "nothing yet", not "done".
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Buffered>, BufferIoError> {
        let limit = self.live_start();
        loop {
            let b = match &mut self.inner {
                Inner::Memory(m) => m.next_below(limit),
                Inner::Disk(d) => d.next_below(limit)?,
            };
            let Some(b) = b else {
                return Ok(None);
            };
            if self.delivered.contains(b.id) {
                self.skip_delivered(b.id)?;
                continue;
            }
            self.handed_out.push_back(b.id);
            return Ok(Some(b));
        }
    }

    /// Acknowledges every batch up to and including `id`: delivered (or
    /// given up by the sink), never handed out again. Delivered batches
    /// `next` skipped after it are acknowledged with it when nothing
    /// handed out waits before them.
    ///
    /// # Errors
    ///
    /// [`BufferIoError::AckOutOfRange`] if `id` was not handed out;
    /// [`BufferIoError::Disk`] when the ledger cannot be written.
    pub fn ack(&mut self, id: u64) -> Result<(), BufferIoError> {
        self.inner_ack(id)?;
        while self.handed_out.front().is_some_and(|h| *h <= id) {
            self.handed_out.pop_front();
        }
        if let Some(skipped) = self.skipped {
            // Every id between `id` and the oldest still handed out was
            // skipped as delivered, or is gone.
            let upto = match self.handed_out.front() {
                Some(&h) => skipped.min(h.saturating_sub(1)),
                None => skipped,
            };
            if upto > id {
                self.inner_ack(upto)?;
            }
            if upto.max(id) >= skipped {
                self.skipped = None;
            }
        }
        Ok(())
    }

    fn inner_ack(&mut self, id: u64) -> Result<(), BufferIoError> {
        match &mut self.inner {
            Inner::Memory(m) => m.ack(id)?,
            Inner::Disk(d) => d.ack(id)?,
        }
        // A memory buffer's head may be past ids it removed as delivered.
        let head = self.head_id().max(id.saturating_add(1));
        self.delivered.remove_below(head);
        Ok(())
    }

    /// Makes the next [`next`](Self::next) start again at the oldest
    /// unacknowledged batch. Batches a disk buffer's `drop_oldest` deleted
    /// while they were handed out cannot be handed out again: they are
    /// counted as dropped now. The live lane is not rewound (see
    /// [`rewind_live`](Self::rewind_live)).
    pub fn rewind(&mut self) {
        match &mut self.inner {
            Inner::Memory(m) => m.rewind(),
            Inner::Disk(d) => d.rewind(),
        }
        self.handed_out.clear();
        self.skipped = None;
    }

    /// Syncs a disk buffer if its `fsync` interval says one is due. Call it
    /// on a timer, so an idle buffer does not keep data unsynced.
    ///
    /// # Errors
    ///
    /// [`BufferIoError::Disk`].
    pub fn sync_if_due(&mut self) -> Result<(), BufferIoError> {
        match &mut self.inner {
            Inner::Memory(_) => Ok(()),
            Inner::Disk(d) => d.sync_if_due(),
        }
    }

    /// The clean shutdown: a disk buffer syncs its records and ledger, so
    /// nothing acknowledged is replayed at the next start. A memory buffer's
    /// batches are gone; the caller counts them (see
    /// [`stats`](Self::stats)).
    ///
    /// # Errors
    ///
    /// [`BufferIoError::Disk`].
    pub fn close(self) -> Result<(), BufferIoError> {
        match self.inner {
            Inner::Memory(_) => Ok(()),
            Inner::Disk(d) => d.close(),
        }
    }

    pub fn stats(&self) -> BufferStats {
        match &self.inner {
            Inner::Memory(m) => m.stats(),
            Inner::Disk(d) => d.stats(),
        }
    }

    /// How full the buffer is, 0 to 1: events of `max_events` in memory,
    /// bytes of `max_size` on disk. What the node's backlog pressure reads.
    pub fn fill_ratio(&self) -> f64 {
        let s = self.stats();
        let used = match self.inner {
            Inner::Memory(_) => s.events.unwrap_or(0),
            Inner::Disk(_) => s.bytes.unwrap_or(0),
        };
        used as f64 / self.capacity.max(1) as f64
    }

    /// Whether no batch waits (none unacknowledged).
    pub fn is_empty(&self) -> bool {
        self.stats().records == 0
    }

    /// Sets the gauges from [`stats`](Self::stats). The sink calls it after
    /// pushes and acks and on a timer (the oldest batch's age grows by
    /// itself). Drop counters are counted as drops happen.
    pub fn update_metrics(&self) {
        self.gauges.set(&self.stats());
        self.gauges.fill_ratio.set(self.fill_ratio());
    }
}
