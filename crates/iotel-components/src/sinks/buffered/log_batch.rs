//! The next request of a log sink (`loki`; `otlp` takes its config): buffered batches
//! of records joined while the request stays within a count and an
//! approximate size, and the `batch` table that sets them.
//!
//! Whole buffered batches join a request; one batch alone larger than
//! `max_bytes` still goes, in a request of its own (a batch is cut only by
//! count, `max_events`, when it enters the buffer).

// Builds without the log sinks use the config (and `otlp` the size estimate).
#![cfg_attr(not(feature = "logs"), allow(dead_code))]

use crate::Problem;
use iotel_engine::config::{ByteSize, Duration};
use iotel_model::{Events, LogRecord};
use serde::Deserialize;
use std::num::NonZeroUsize;

/// `batch`: when a log sink sends a request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogBatchConfig {
    /// Records per request at most.
    #[serde(default = "default_max_events")]
    pub max_events: NonZeroUsize,
    /// Bytes per request, about: lines (messages), labels and fields before
    /// encoding and compression. Promtail's `batchsize` is 1 MiB too.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// A request goes out once the oldest waiting record waited this long
    /// (Promtail's `batchwait`).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

fn default_max_events() -> NonZeroUsize {
    NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN)
}

fn default_max_bytes() -> ByteSize {
    ByteSize(1 << 20)
}

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

impl Default for LogBatchConfig {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            timeout: default_timeout(),
        }
    }
}

impl LogBatchConfig {
    /// Problems under the key `batch`.
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.max_bytes.bytes() == 0 {
            p.push(Problem::new(
                "batch.max_bytes",
                "expected a size above 0, such as \"1MiB\"",
            ));
        }
        if self.timeout.get().is_zero() {
            p.push(Problem::new(
                "batch.timeout",
                "expected a duration above 0s, such as \"1s\"",
            ));
        }
        p
    }
}

/// The records of the next request.
#[derive(Debug)]
pub(crate) struct LogBatch {
    records: Vec<LogRecord>,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
}

impl LogBatch {
    pub(crate) fn new(config: &LogBatchConfig) -> Self {
        Self {
            records: Vec::new(),
            bytes: 0,
            max_events: config.max_events.get(),
            max_bytes: usize::try_from(config.max_bytes.bytes()).unwrap_or(usize::MAX),
        }
    }

    /// Whether `events` may join: always into an empty request.
    pub(crate) fn fits(&self, events: &Events) -> bool {
        let Events::Logs(logs) = events else {
            return self.records.is_empty();
        };
        self.records.is_empty()
            || (self.records.len() + logs.len() <= self.max_events
                && self.bytes + logs.iter().map(approx_bytes).sum::<usize>() <= self.max_bytes)
    }

    /// Adds a batch. Log sinks take logs only: the graph sends them
    /// nothing else, but a disk buffer left by an earlier sink of the same
    /// name may hold other signals; those are not sent, with a warning.
    pub(crate) fn add(&mut self, events: Events) {
        match events {
            Events::Logs(logs) => {
                self.bytes += logs.iter().map(approx_bytes).sum::<usize>();
                self.records.extend(logs);
            }
            other => tracing::warn!(
                "a buffered batch of {} {} in a log sink's buffer (left by an earlier sink of \
                 the same name?) was not sent",
                other.len(),
                other.signal()
            ),
        }
    }

    /// The records added, leaving the batch empty.
    pub(crate) fn take(&mut self) -> Vec<LogRecord> {
        self.bytes = 0;
        std::mem::take(&mut self.records)
    }

    pub(crate) fn clear(&mut self) {
        self.bytes = 0;
        self.records.clear();
    }
}

/// About how many bytes a record adds to a request: its message, labels and
/// fields, plus a little for the framing. Cheap; for batching by size.
pub(crate) fn approx_bytes(record: &LogRecord) -> usize {
    fn value(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::String(s) => s.len() + 2,
            serde_json::Value::Array(a) => 2 + a.iter().map(value).sum::<usize>(),
            serde_json::Value::Object(o) => {
                2 + o.iter().map(|(k, v)| k.len() + 4 + value(v)).sum::<usize>()
            }
            _ => 8,
        }
    }
    let labels: usize = record
        .labels
        .iter()
        .map(|l| l.name.len() + l.value.len() + 4)
        .sum();
    let fields: usize = record
        .fields
        .iter()
        .map(|(k, v)| k.len() + 4 + value(v))
        .sum();
    record.message.len() + labels + fields + 16
}
