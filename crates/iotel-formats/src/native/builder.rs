//! [`Builder`]: one frame from many batches, pushed one after another.
//!
//! An agent joins its buffered batches into one frame, because the
//! dictionary, label-set table and series headers are paid once per frame.
//! The builder encodes each batch as it is pushed, keeps what the frame
//! needs and lets the batch go, so a frame costs about its own size while it
//! is built, not the size of the events in it:
//!
//! - the two tables, as the bytes the body will hold (every string once);
//! - logs and spans: their section, written as they come (the section is in
//!   batch order);
//! - metrics: per family and series its table indices, timestamp and value
//!   coders' state and its samples, encoded (see `metrics.rs` for why a
//!   series' samples cannot go straight into the section).
//!
//! Every record is encoded in push order, and nothing depends on where one
//! batch ended and the next began, so the frame is byte for byte the one
//! [`encode`](super::encode) writes for the batches joined: `encode` is a
//! builder given one batch.

use super::metrics;
use super::tables::{self, TableWriter};
use super::wire::{Timestamps, put_ivarint, put_str, put_uvarint};
use super::{Compression, EncodeError, MAGIC, VERSION, compress, logs, signal_code, traces};
use iotel_model::{Events, Signal};

/// Why [`Builder::push`] refused a batch: a frame carries one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the frame being built holds {expected}; a batch of {found} goes into another")]
pub struct SignalMismatch {
    /// The signal of the frame being built.
    pub expected: Signal,
    /// The signal of the refused batch.
    pub found: Signal,
}

impl SignalMismatch {
    /// A stable code for metric labels.
    pub fn code(&self) -> &'static str {
        "signal_mismatch"
    }
}

/// Builds one frame from batches pushed one after another (see the module
/// docs of [`native`](super)).
///
/// ```
/// use iotel_formats::native::{Builder, Compression, Limits, decode, encode};
/// use iotel_model::{Events, Labels, Metric, MetricType};
///
/// let scrape = |t| {
///     Events::Metrics(vec![Metric::new("up", MetricType::Gauge, Labels::empty(), 1.0, t)])
/// };
/// let mut builder = Builder::new();
/// for t in [1_000, 2_000, 3_000] {
///     builder.push(&scrape(t))?;
/// }
/// assert_eq!(builder.records(), 3);
/// let frame = builder.finish("agent-1", 7, Compression::Snappy)?;
/// assert!(builder.is_empty());
///
/// // The frame `encode` writes for the batches joined.
/// let mut joined = scrape(1_000);
/// joined.append(scrape(2_000)).ok();
/// joined.append(scrape(3_000)).ok();
/// assert_eq!(frame, encode("agent-1", 7, &joined, Compression::Snappy)?);
/// assert_eq!(decode(&frame, &Limits::default())?.events.len(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct Builder {
    /// The signal of the first batch pushed since the builder was empty.
    signal: Option<Signal>,
    /// Records pushed, including any past [`Builder::MAX_RECORDS`].
    records: usize,
    tables: TableWriter,
    metrics: metrics::Encoder,
    /// The logs or traces section so far, after its base timestamp.
    section: Vec<u8>,
    /// The log timestamp or span start coder; `None` before the first
    /// record, whose timestamp is the section's base.
    times: Option<Timestamps>,
}

impl Builder {
    /// The most records one frame holds. The builder keeps table indices,
    /// series numbers and sample positions in 32 bits, which this keeps
    /// within range; decoders refuse far fewer by default
    /// ([`Limits::max_records`](super::Limits::max_records)).
    pub const MAX_RECORDS: usize = 1 << 30;

    /// An empty builder. It takes the signal of the first batch pushed.
    pub fn new() -> Self {
        Self::default()
    }

    /// The signal of the frame being built: that of the first batch pushed
    /// since the builder was new, finished or cleared.
    pub fn signal(&self) -> Option<Signal> {
        self.signal
    }

    /// Adds `events` to the frame: encodes them, interning their strings
    /// and label sets, and keeps nothing of them. An empty batch only sets
    /// the signal.
    ///
    /// # Errors
    /// [`SignalMismatch`] for a batch of another signal than the first one
    /// pushed; nothing is changed.
    pub fn push(&mut self, events: &Events) -> Result<(), SignalMismatch> {
        if let Some(expected) = self.signal
            && expected != events.signal()
        {
            return Err(SignalMismatch {
                expected,
                found: events.signal(),
            });
        }
        self.append(events);
        Ok(())
    }

    /// [`Builder::push`] without the signal check: the caller knows the
    /// builder is empty or of the same signal.
    pub(super) fn append(&mut self, events: &Events) {
        self.signal = Some(events.signal());
        self.records = self.records.saturating_add(events.len());
        if self.records > Self::MAX_RECORDS {
            // Not encoded: `finish` refuses the frame.
            return;
        }
        match events {
            Events::Metrics(m) => self.metrics.push(m, &mut self.tables),
            Events::Logs(l) => {
                logs::encode(l, &mut self.times, &mut self.tables, &mut self.section)
            }
            Events::Traces(s) => {
                traces::encode(s, &mut self.times, &mut self.tables, &mut self.section)
            }
        }
    }

    /// Samples, log records or spans pushed since the builder was empty.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Whether no record was pushed (an empty batch may have been, setting
    /// the [`Builder::signal`]).
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// What the pushed records take in the builder, in bytes, roughly: the
    /// tables, the sections and encoded samples, and per family and series
    /// its fixed state (56 bytes a series) and index slots. It starts near
    /// zero and grows with what is pushed, so it can decide when to finish a
    /// frame. The buffers behind it grow by doubling and are kept by
    /// [`Builder::finish`] and [`Builder::clear`] for the next frame, so the
    /// builder may hold up to about twice the most this reached; `finish`
    /// needs the body (at most about this) and the frame on top, for a
    /// moment.
    pub fn approx_bytes(&self) -> usize {
        size_of::<Self>()
            + self.tables.bytes(false)
            + self.metrics.bytes(false)
            + self.section.len()
    }

    /// The memory the builder's buffers hold, room included.
    #[cfg(test)]
    pub(super) fn held_bytes(&self) -> usize {
        size_of::<Self>()
            + self.tables.bytes(true)
            + self.metrics.bytes(true)
            + self.section.capacity()
    }

    /// The frame of every batch pushed, in push order, from `agent_id` with
    /// `sequence`; the builder is then empty, as after [`Builder::clear`].
    ///
    /// # Errors
    /// [`EncodeError::NothingPushed`] when no batch was pushed (a frame
    /// needs a signal); [`EncodeError::TooLarge`] past
    /// [`Builder::MAX_RECORDS`] records, or past 2^32 - 2 distinct strings or
    /// label sets; and what [`encode`](super::encode) returns for the
    /// compression. On an error nothing is changed: finish again with
    /// another compression, or [`Builder::clear`].
    pub fn finish(
        &mut self,
        agent_id: &str,
        sequence: u64,
        compression: Compression,
    ) -> Result<Vec<u8>, EncodeError> {
        let Some(signal) = self.signal else {
            return Err(EncodeError::NothingPushed);
        };
        if !compression.is_built_in() {
            return Err(EncodeError::CompressionNotBuiltIn { compression });
        }
        if self.records > Self::MAX_RECORDS {
            return Err(EncodeError::TooLarge {
                what: "records",
                max: Self::MAX_RECORDS as u64,
            });
        }
        if let Some(what) = self.tables.overflow() {
            return Err(EncodeError::TooLarge {
                what,
                max: tables::MAX_ENTRIES as u64,
            });
        }
        let mut body = Vec::with_capacity(
            self.tables.written_len() + self.section.len() + self.metrics.written_len(),
        );
        self.tables.write(&mut body);
        match signal {
            Signal::Metrics => self.metrics.finish(&mut body),
            Signal::Logs | Signal::Traces => {
                if self.times.is_none() {
                    // No record: the base is 0.
                    put_ivarint(&mut body, 0);
                }
                body.extend_from_slice(&self.section);
            }
        }

        let mut frame = Vec::with_capacity(32 + agent_id.len() + body.len() / 2);
        frame.extend_from_slice(&MAGIC);
        frame.push(VERSION);
        frame.push(compression.code());
        frame.push(signal_code(signal));
        put_str(&mut frame, agent_id);
        put_uvarint(&mut frame, sequence);
        put_uvarint(&mut frame, self.records as u64);
        put_uvarint(&mut frame, body.len() as u64);
        compress(compression, &body, &mut frame)?;
        self.clear();
        Ok(frame)
    }

    /// Drops everything pushed, keeping the buffers (but for the hash
    /// indexes' slots, which regrow cheaply).
    pub fn clear(&mut self) {
        self.signal = None;
        self.records = 0;
        self.tables.clear();
        self.metrics.clear();
        self.section.clear();
        self.times = None;
    }
}
