//! `when_full = "downsample"`: compacting a backlog into coarser data. A
//! pure function, no I/O; [`SinkBuffer::compact`](super::SinkBuffer::compact)
//! feeds it the oldest batches of a full buffer.
//!
//! # What is kept
//!
//! - **Metrics**: samples are grouped by series (name and labels) and by
//!   time window (`timestamp_ms.div_euclid(window)`). A group of more than
//!   [`KEPT_AS_IS`] samples becomes its last sample, unchanged (type, meta,
//!   exemplar), followed by three gauges `<name>:min`, `<name>:max` and
//!   `<name>:count` (the recording-rule naming, `level:metric:operation`),
//!   with the same labels, the last sample's timestamp, and a help ending in
//!   `(downsampled)`. A smaller group is kept as it is: its aggregate would
//!   take as many events (last, min, max, count) and say less. Every type is
//!   treated alike: a histogram's `_bucket{le}`, `_sum` and `_count` are
//!   series of their own and keep their last value.
//! - **Logs**: severity ERROR and above are kept whole. Of the others
//!   (no severity included), per stream (label set), the 1st, the
//!   `keep_one_in + 1`th, … in input order are kept: the first of every
//!   `keep_one_in`, so a quiet stream keeps at least its first line.
//! - **Spans**: spans whose status is error are kept whole. Of the others,
//!   those of 1 trace in `keep_one_in`: the trace id's last 8 bytes (its
//!   random part under W3C Trace Context), read as a big-endian number,
//!   divisible by `keep_one_in`. Whole traces, not every nth span: a kept
//!   trace stays complete, even when its spans are compacted in different
//!   calls, and compacting it again keeps it again.
//!
//! Output: one batch per signal found, in the order the signals first
//! appear; metric groups in the order they first appear, each group's
//! samples together; logs and spans in input order.
//!
//! # Compacting again
//!
//! A compacted backlog may be compacted again (it is pushed back at the
//! buffer's tail and reaches the head later). A gauge named `<name>:min`,
//! `:max` or `:count` whose help ends in `(downsampled)` is recognised as an
//! earlier aggregate of `<name>` and joins `<name>`'s group instead of
//! being aggregated itself (no `:min:min`): min of the mins, max of the
//! maxes, and the counts added. An earlier aggregate came with the last
//! sample it covered (same series, same timestamp); that sample is not
//! counted again. So `:count` keeps counting the samples that came in,
//! however often they are compacted. Aggregates count as group members
//! for the "more than four" rule, so the output never has more events than
//! the input.

use iotel_model::{Events, Labels, LogRecord, Metric, MetricMeta, MetricType, Severity, Signal};
use iotel_model::{Span, SpanStatus};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// The largest metric group kept as it is; larger ones become last, min,
/// max and count: 4 events, fewer than they were.
pub const KEPT_AS_IS: usize = 4;

/// What ends the help of every aggregate gauge; how a later compaction
/// recognises one.
const MARK: &str = "(downsampled)";

/// What [`downsample`] did, per signal. Events are samples, log records
/// and spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub events_in: u64,
    pub events_out: u64,
    pub metrics: MetricsSummary,
    pub logs: SampledSummary,
    pub spans: SampledSummary,
}

impl Summary {
    /// Events the compaction removed, net: `events_in - events_out` (the
    /// aggregate gauges it added are subtracted).
    pub fn removed(&self) -> u64 {
        self.events_in - self.events_out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsSummary {
    pub samples_in: u64,
    /// Aggregate gauges included.
    pub samples_out: u64,
    /// Series windows that became last, min, max and count.
    pub windows_compacted: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SampledSummary {
    pub events_in: u64,
    pub events_out: u64,
    /// Kept whatever the sampling: logs of severity ERROR and above, spans
    /// whose status is error. Included in `events_out`.
    pub errors_kept: u64,
}

/// Compacts `batches` (see the module docs). Deterministic: the same input
/// gives the same output. A `window` under 1 ms counts as 1 ms.
pub fn downsample(
    batches: Vec<Events>,
    window: Duration,
    keep_one_in: NonZeroU32,
) -> (Vec<Events>, Summary) {
    let mut metrics = Vec::new();
    let mut logs = Vec::new();
    let mut spans = Vec::new();
    let mut signals: Vec<Signal> = Vec::new();
    for batch in batches {
        if batch.is_empty() {
            continue;
        }
        if !signals.contains(&batch.signal()) {
            signals.push(batch.signal());
        }
        match batch {
            Events::Metrics(v) => metrics.extend(v),
            Events::Logs(v) => logs.extend(v),
            Events::Traces(v) => spans.extend(v),
        }
    }
    let mut summary = Summary::default();
    let metrics = downsample_metrics(metrics, window, &mut summary.metrics);
    let logs = sample_logs(logs, keep_one_in, &mut summary.logs);
    let spans = sample_spans(spans, keep_one_in, &mut summary.spans);
    summary.events_in =
        summary.metrics.samples_in + summary.logs.events_in + summary.spans.events_in;
    summary.events_out =
        summary.metrics.samples_out + summary.logs.events_out + summary.spans.events_out;
    let (mut metrics, mut logs, mut spans) = (Some(metrics), Some(logs), Some(spans));
    let out = signals
        .into_iter()
        .filter_map(|s| match s {
            Signal::Metrics => metrics.take().map(Events::Metrics),
            Signal::Logs => logs.take().map(Events::Logs),
            Signal::Traces => spans.take().map(Events::Traces),
        })
        .filter(|e| !e.is_empty())
        .collect();
    (out, summary)
}

// ---------------------------------------------------------------------------
// Metrics

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Min,
    Max,
    Count,
}

impl Op {
    const ALL: [Op; 3] = [Op::Min, Op::Max, Op::Count];

    fn suffix(self) -> &'static str {
        match self {
            Op::Min => ":min",
            Op::Max => ":max",
            Op::Count => ":count",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Op::Min => "Minimum",
            Op::Max => "Maximum",
            Op::Count => "Samples",
        }
    }
}

/// The series `m` is an earlier aggregate of, and which one.
fn aggregate_of(m: &Metric) -> Option<(&str, Op)> {
    if m.meta.kind != MetricType::Gauge
        || !m.meta.help.as_deref().is_some_and(|h| h.ends_with(MARK))
    {
        return None;
    }
    Op::ALL.into_iter().find_map(|op| {
        m.name
            .strip_suffix(op.suffix())
            .filter(|base| !base.is_empty())
            .map(|base| (base, op))
    })
}

/// One series in one window, its samples (and earlier aggregates) in input
/// order.
#[derive(Debug, Default)]
struct Group {
    members: Vec<(Metric, Option<Op>)>,
}

fn downsample_metrics(
    metrics: Vec<Metric>,
    window: Duration,
    summary: &mut MetricsSummary,
) -> Vec<Metric> {
    summary.samples_in = metrics.len() as u64;
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
    let mut groups: Vec<Group> = Vec::new();
    let mut by_key: HashMap<(Arc<str>, Labels, i64), usize> = HashMap::new();
    for m in metrics {
        let (base, op) = match aggregate_of(&m) {
            Some((base, op)) => (Arc::from(base), Some(op)),
            None => (m.name.clone(), None),
        };
        let key = (base, m.labels.clone(), m.timestamp_ms.div_euclid(window_ms));
        let i = *by_key.entry(key).or_insert_with(|| {
            groups.push(Group::default());
            groups.len() - 1
        });
        groups[i].members.push((m, op));
    }
    let mut metas = Metas {
        window: iotel_engine::config::Duration(Duration::from_millis(window_ms as u64)),
        cache: HashMap::new(),
    };
    let mut out = Vec::new();
    for group in groups {
        if group.members.len() > KEPT_AS_IS
            && let Some(compacted) = compact_group(&group, &mut metas)
        {
            summary.windows_compacted += 1;
            out.extend(compacted);
        } else {
            out.extend(group.members.into_iter().map(|(m, _)| m));
        }
    }
    summary.samples_out = out.len() as u64;
    out
}

/// An aggregate gauge's name and meta.
type Aggregate = (Arc<str>, Arc<MetricMeta>);

/// The metas of the aggregate gauges, one per name and operation.
#[derive(Debug)]
struct Metas {
    window: iotel_engine::config::Duration,
    cache: HashMap<(Arc<str>, Op), Aggregate>,
}

impl Metas {
    fn get(&mut self, last: &Metric, op: Op) -> Aggregate {
        let window = self.window;
        self.cache
            .entry((last.name.clone(), op))
            .or_insert_with(|| {
                let name: Arc<str> = Arc::from(format!("{}{}", last.name, op.suffix()));
                let mut meta = MetricMeta::new(name.clone(), MetricType::Gauge).with_help(format!(
                    "{} of {} per {window} window {MARK}",
                    op.what(),
                    last.name
                ));
                if op != Op::Count {
                    meta.unit.clone_from(&last.meta.unit);
                }
                (name, Arc::new(meta))
            })
            .clone()
    }
}

/// The group's last sample and its min, max and count; `None` when the
/// group holds only earlier aggregates (no sample to call the last).
fn compact_group(group: &Group, metas: &mut Metas) -> Option<[Metric; 4]> {
    let mut last: Option<&Metric> = None;
    let (mut min, mut max) = (None::<f64>, None::<f64>);
    let mut count = 0f64;
    // Timestamps of earlier `:count`s: each covered one sample at that time.
    let mut counted_at: Vec<i64> = Vec::new();
    for (m, op) in &group.members {
        match op {
            Some(Op::Min) => min = Some(min.map_or(m.value, |x| x.min(m.value))),
            Some(Op::Max) => max = Some(max.map_or(m.value, |x| x.max(m.value))),
            Some(Op::Count) => {
                count += m.value;
                counted_at.push(m.timestamp_ms);
            }
            None => {}
        }
    }
    for (m, op) in &group.members {
        if op.is_some() {
            continue;
        }
        // Ties go to the later one in input order.
        if last.is_none_or(|l| m.timestamp_ms >= l.timestamp_ms) {
            last = Some(m);
        }
        min = Some(min.map_or(m.value, |x| x.min(m.value)));
        max = Some(max.map_or(m.value, |x| x.max(m.value)));
        match counted_at.iter().position(|t| *t == m.timestamp_ms) {
            Some(i) => {
                counted_at.swap_remove(i);
            }
            None => count += 1.0,
        }
    }
    let last = last?;
    let gauge = |metas: &mut Metas, op: Op, value: f64| {
        let (name, meta) = metas.get(last, op);
        Metric {
            name,
            labels: last.labels.clone(),
            value,
            timestamp_ms: last.timestamp_ms,
            meta,
            exemplar: None,
        }
    };
    Some([
        last.clone(),
        gauge(metas, Op::Min, min.unwrap_or(last.value)),
        gauge(metas, Op::Max, max.unwrap_or(last.value)),
        gauge(metas, Op::Count, count),
    ])
}

// ---------------------------------------------------------------------------
// Logs and spans

fn sample_logs(
    logs: Vec<LogRecord>,
    keep_one_in: NonZeroU32,
    summary: &mut SampledSummary,
) -> Vec<LogRecord> {
    summary.events_in = logs.len() as u64;
    let n = u64::from(keep_one_in.get());
    let mut seen: HashMap<Labels, u64> = HashMap::new();
    let out: Vec<LogRecord> = logs
        .into_iter()
        .filter(|l| {
            if l.severity.is_some_and(|s| s >= Severity::Error) {
                summary.errors_kept += 1;
                return true;
            }
            let i = seen.entry(l.labels.clone()).or_default();
            let keep = i.is_multiple_of(n);
            *i += 1;
            keep
        })
        .collect();
    summary.events_out = out.len() as u64;
    out
}

/// Whether the non-error spans of trace `trace_id` are kept.
fn trace_kept(trace_id: &[u8; 16], keep_one_in: NonZeroU32) -> bool {
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    u64::from_be_bytes(low).is_multiple_of(u64::from(keep_one_in.get()))
}

fn sample_spans(
    spans: Vec<Span>,
    keep_one_in: NonZeroU32,
    summary: &mut SampledSummary,
) -> Vec<Span> {
    summary.events_in = spans.len() as u64;
    let out: Vec<Span> = spans
        .into_iter()
        .filter(|s| {
            if s.status == SpanStatus::Error {
                summary.errors_kept += 1;
                return true;
            }
            trace_kept(&s.trace_id, keep_one_in)
        })
        .collect();
    summary.events_out = out.len() as u64;
    out
}
