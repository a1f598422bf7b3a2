//! The iotel data model.
//!
//! An [`Event`] is a metric sample, a log record or a span. Events travel
//! between components in [`Events`] batches that hold one signal each.
//! Conversions to and from wire formats live in `iotel-formats`; this crate
//! knows nothing of I/O.

mod labels;
mod log;
mod metric;
mod span;

pub use labels::{Label, Labels, LabelsBuilder};
pub use log::{LogRecord, Severity};
pub use metric::{Exemplar, Metric, MetricMeta, MetricType};
pub use span::{Span, SpanStatus};

use serde::Serialize;

/// The three kinds of telemetry iotel moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Metrics,
    Logs,
    Traces,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Metrics, Signal::Logs, Signal::Traces];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Traces => "traces",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event of any signal; used where a single record is handled on its own
/// (the `file` and `console` sinks write one per line).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "signal", rename_all = "lowercase")]
pub enum Event {
    Metric(Metric),
    Log(LogRecord),
    Span(Span),
}

/// A batch of events of one signal, the unit that moves between components.
#[derive(Debug, Clone, PartialEq)]
pub enum Events {
    Metrics(Vec<Metric>),
    Logs(Vec<LogRecord>),
    Traces(Vec<Span>),
}

impl Events {
    pub fn signal(&self) -> Signal {
        match self {
            Events::Metrics(_) => Signal::Metrics,
            Events::Logs(_) => Signal::Logs,
            Events::Traces(_) => Signal::Traces,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Events::Metrics(v) => v.len(),
            Events::Logs(v) => v.len(),
            Events::Traces(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `other` if it is of the same signal; else hands it back.
    ///
    /// # Errors
    /// `other`, untouched, when its signal differs.
    pub fn append(&mut self, other: Events) -> Result<(), Events> {
        match (self, other) {
            (Events::Metrics(a), Events::Metrics(b)) => a.extend(b),
            (Events::Logs(a), Events::Logs(b)) => a.extend(b),
            (Events::Traces(a), Events::Traces(b)) => a.extend(b),
            (_, other) => return Err(other),
        }
        Ok(())
    }

    /// Visits every event, in order, as an [`Event`] reference.
    pub fn for_each(&self, mut f: impl FnMut(EventRef<'_>)) {
        match self {
            Events::Metrics(v) => v.iter().for_each(|m| f(EventRef::Metric(m))),
            Events::Logs(v) => v.iter().for_each(|l| f(EventRef::Log(l))),
            Events::Traces(v) => v.iter().for_each(|s| f(EventRef::Span(s))),
        }
    }
}

/// A borrowed [`Event`].
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "signal", rename_all = "lowercase")]
pub enum EventRef<'a> {
    Metric(&'a Metric),
    Log(&'a LogRecord),
    Span(&'a Span),
}

impl<'a> EventRef<'a> {
    /// The event's labels.
    pub fn labels(&self) -> &'a Labels {
        match self {
            EventRef::Metric(m) => &m.labels,
            EventRef::Log(r) => &r.labels,
            EventRef::Span(s) => &s.labels,
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_ns() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_joins_batches_of_one_signal_and_hands_back_others() {
        let log = |m: &str| LogRecord::new(0, m.to_string());
        let mut a = Events::Logs(vec![log("a")]);
        assert_eq!(a.append(Events::Logs(vec![log("b"), log("c")])), Ok(()));
        assert_eq!(a, Events::Logs(vec![log("a"), log("b"), log("c")]));
        let other = Events::Metrics(vec![]);
        assert_eq!(a.append(other.clone()), Err(other));
        assert_eq!(a.len(), 3);
    }
}
