//! The events of the next OTLP request: buffered batches of one signal,
//! joined while the request stays within `batch.max_events` and, about,
//! `batch.max_bytes` (as `sinks::buffered::log_batch` does for logs). A
//! batch of another signal starts the next request: an OTLP request
//! carries one signal.

use crate::sinks::buffered::log_batch::{LogBatchConfig, approx_bytes};
use iotel_model::{Events, Metric, Span};

#[derive(Debug)]
pub(super) struct SignalBatch {
    events: Option<Events>,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
}

impl SignalBatch {
    pub(super) fn new(config: &LogBatchConfig) -> Self {
        Self {
            events: None,
            bytes: 0,
            max_events: config.max_events.get(),
            max_bytes: usize::try_from(config.max_bytes.bytes()).unwrap_or(usize::MAX),
        }
    }

    /// Whether `events` may join: always into an empty request.
    pub(super) fn fits(&self, events: &Events) -> bool {
        let Some(have) = &self.events else {
            return true;
        };
        have.signal() == events.signal()
            && have.len() + events.len() <= self.max_events
            && self.bytes + size(events) <= self.max_bytes
    }

    /// Adds a batch that [`SignalBatch::fits`].
    pub(super) fn add(&mut self, events: Events) {
        self.bytes += size(&events);
        match &mut self.events {
            None => self.events = Some(events),
            Some(have) => {
                if let Err(other) = have.append(events) {
                    // `fits` said no, and the delivery loop asks it before
                    // adding to a request that is not empty.
                    tracing::error!(
                        "{} {} joined a request of {}: not sent",
                        other.len(),
                        other.signal(),
                        have.signal()
                    );
                }
            }
        }
    }

    /// The events added, leaving the batch empty.
    pub(super) fn take(&mut self) -> Option<Events> {
        self.bytes = 0;
        self.events.take()
    }

    pub(super) fn clear(&mut self) {
        self.bytes = 0;
        self.events = None;
    }
}

/// About how many bytes `events` add to a request. Cheap; for batching by
/// size.
fn size(events: &Events) -> usize {
    match events {
        Events::Logs(v) => v.iter().map(approx_bytes).sum(),
        Events::Traces(v) => v.iter().map(span_bytes).sum(),
        Events::Metrics(v) => v.iter().map(sample_bytes).sum(),
    }
}

fn labels_bytes(labels: &iotel_model::Labels) -> usize {
    labels
        .iter()
        .map(|l| l.name.len() + l.value.len() + 4)
        .sum()
}

fn span_bytes(s: &Span) -> usize {
    let attributes: usize = s
        .attributes
        .iter()
        .map(|(k, v)| k.len() + 8 + v.as_str().map_or(8, str::len))
        .sum();
    // Ids, times, kind and status.
    s.name.len() + labels_bytes(&s.labels) + attributes + 48
}

fn sample_bytes(m: &Metric) -> usize {
    m.name.len() + labels_bytes(&m.labels) + 24
}
