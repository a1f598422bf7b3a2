//! Tests of `when_full = "downsample"`: its config and the pure
//! [`downsample`]; `tests_compact.rs` has [`SinkBuffer::compact`].

use super::downsample::{MetricsSummary, SampledSummary, Summary, downsample};
use super::tests::{parse, parse_error};
use super::*;
use crate::Problem;
use iotel_engine::config::Duration;
use iotel_model::{
    Exemplar, Labels, LogRecord, Metric, MetricMeta, MetricType, Severity, Span, SpanStatus,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration as StdDuration;

// ---------------------------------------------------------------------------
// Helpers

const MINUTE: StdDuration = StdDuration::from_secs(60);

pub(super) fn ten() -> NonZeroU32 {
    NonZeroU32::new(10).unwrap()
}

pub(super) fn sample(name: &str, kind: MetricType, device: &str, value: f64, at_s: i64) -> Metric {
    Metric::new(
        name,
        kind,
        Labels::from_pairs([("device", device)]),
        value,
        at_s * 1000,
    )
}

pub(super) fn gauge(name: &str, device: &str, value: f64, at_s: i64) -> Metric {
    sample(name, MetricType::Gauge, device, value, at_s)
}

/// (name, value, timestamp in seconds) of every sample.
pub(super) fn brief(events: &[Events]) -> Vec<(String, f64, i64)> {
    events
        .iter()
        .flat_map(|e| match e {
            Events::Metrics(v) => v.clone(),
            _ => panic!("not metrics: {e:?}"),
        })
        .map(|m| (m.name.to_string(), m.value, m.timestamp_ms / 1000))
        .collect()
}

fn log(stream: &str, severity: Option<Severity>, message: &str) -> LogRecord {
    LogRecord {
        labels: Labels::from_pairs([("stream", stream)]),
        severity,
        ..LogRecord::new(1_700_000_000_000_000_000, message)
    }
}

fn span(trace: u8, span: u8, status: SpanStatus) -> Span {
    let mut trace_id = [0u8; 16];
    trace_id[0] = 0xab;
    trace_id[15] = trace;
    Span {
        trace_id,
        span_id: [0, 0, 0, 0, 0, 0, trace, span],
        parent_span_id: None,
        name: format!("t{trace} s{span}"),
        start_ns: 1,
        end_ns: 2,
        labels: Labels::empty(),
        attributes: serde_json::Map::new(),
        status,
    }
}

fn span_names(events: &[Events]) -> Vec<String> {
    let [Events::Traces(v)] = events else {
        panic!("not one batch of spans: {events:?}");
    };
    v.iter().map(|s| s.name.clone()).collect()
}

// ---------------------------------------------------------------------------
// Config

#[test]
fn the_downsample_keys_are_read_for_both_kinds() {
    for kind in ["memory", "disk"] {
        let c = parse(&format!(
            "buffer = {{ type = \"{kind}\", when_full = \"downsample\", downsample_window = \
             \"5m\", downsample_keep_one_in = 3 }}"
        ));
        assert_eq!(c.validate("buffer"), vec![], "{kind}");
        assert_eq!(
            c.downsample(),
            Downsample {
                window: Duration::from_secs(300),
                keep_one_in: NonZeroU32::new(3).unwrap(),
            },
            "{kind}"
        );
    }
}

#[test]
fn the_downsample_keys_are_refused_with_another_policy() {
    let c = parse(
        "buffer = { type = \"disk\", when_full = \"block\", downsample_window = \"1m\", \
         downsample_keep_one_in = 3 }",
    );
    let only = |key: &str| {
        Problem::new(
            format!("sinks.up.buffer.{key}"),
            format!(
                "only used with when_full = \"downsample\", but when_full is \"block\"; remove \
                 {key} or set when_full = \"downsample\""
            ),
        )
    };
    assert_eq!(
        c.validate("sinks.up.buffer"),
        vec![only("downsample_window"), only("downsample_keep_one_in")]
    );
}

#[test]
fn a_zero_window_and_a_zero_keep_one_in_are_refused() {
    let c = parse(
        "buffer = { type = \"memory\", when_full = \"downsample\", downsample_window = \"0s\" }",
    );
    assert_eq!(
        c.validate("buffer"),
        vec![Problem::new(
            "buffer.downsample_window",
            "expected at least 1ms (metric timestamps are in milliseconds), such as \"1m\", got \
             \"0s\""
        )]
    );
    let e = parse_error(
        "buffer = { type = \"memory\", when_full = \"downsample\", downsample_keep_one_in = 0 }",
    );
    assert!(e.contains("nonzero"), "{e}");
}

// ---------------------------------------------------------------------------
// The pure function: metrics

#[test]
fn a_gauge_series_across_two_windows_keeps_its_last_value_with_min_max_and_count_per_window() {
    let exemplar = Box::new(Exemplar {
        labels: Labels::from_pairs([("trace_id", "abc")]),
        value: 9.0,
        timestamp_ms: None,
    });
    let mut last_of_first = gauge("temp", "a", 9.0, 50);
    last_of_first.exemplar = Some(exemplar);
    let input = vec![
        Events::Metrics(vec![
            gauge("temp", "a", 3.0, 0),
            gauge("temp", "a", 1.0, 10),
            gauge("temp", "a", 4.0, 20),
        ]),
        Events::Metrics(vec![
            gauge("temp", "a", 1.0, 30),
            gauge("temp", "a", 5.0, 40),
            last_of_first.clone(),
            // Second window: 60s..120s. Out of order: the last is at 110s.
            gauge("temp", "a", 2.0, 60),
            gauge("temp", "a", 6.0, 110),
            gauge("temp", "a", 5.0, 70),
            gauge("temp", "a", 3.0, 80),
            gauge("temp", "a", 8.0, 90),
        ]),
    ];
    let (out, summary) = downsample(input, MINUTE, ten());
    assert_eq!(
        brief(&out),
        [
            ("temp".into(), 9.0, 50),
            ("temp:min".into(), 1.0, 50),
            ("temp:max".into(), 9.0, 50),
            ("temp:count".into(), 6.0, 50),
            ("temp".into(), 6.0, 110),
            ("temp:min".into(), 2.0, 110),
            ("temp:max".into(), 8.0, 110),
            ("temp:count".into(), 5.0, 110),
        ]
    );
    let Events::Metrics(m) = &out[0] else {
        unreachable!()
    };
    // The last sample, unchanged.
    assert_eq!(m[0], last_of_first);
    // The aggregates: gauges, same labels, a help saying what they are.
    for (i, what) in [(1, "Minimum"), (2, "Maximum"), (3, "Samples")] {
        assert_eq!(m[i].labels, Labels::from_pairs([("device", "a")]));
        assert_eq!(m[i].meta.kind, MetricType::Gauge);
        assert_eq!(&*m[i].meta.family, &*m[i].name);
        assert_eq!(
            m[i].meta.help.as_deref(),
            Some(format!("{what} of temp per 1m window (downsampled)").as_str())
        );
        assert_eq!(m[i].exemplar, None);
    }
    assert_eq!(
        summary,
        Summary {
            events_in: 11,
            events_out: 8,
            metrics: MetricsSummary {
                samples_in: 11,
                samples_out: 8,
                windows_compacted: 2,
            },
            ..Summary::default()
        }
    );
    assert_eq!(summary.removed(), 3);
}

#[test]
fn a_window_of_four_samples_or_fewer_is_kept_as_it_is() {
    let input = vec![Events::Metrics(vec![
        gauge("temp", "a", 3.0, 0),
        gauge("temp", "b", 7.0, 0),
        gauge("temp", "a", 1.0, 10),
        gauge("temp", "a", 4.0, 20),
        gauge("temp", "a", 2.0, 30),
        // Another window.
        gauge("temp", "a", 5.0, 60),
    ])];
    let (out, summary) = downsample(input, MINUTE, ten());
    // Grouped by series and window, in order of first appearance.
    assert_eq!(
        brief(&out),
        [
            ("temp".into(), 3.0, 0),
            ("temp".into(), 1.0, 10),
            ("temp".into(), 4.0, 20),
            ("temp".into(), 2.0, 30),
            ("temp".into(), 7.0, 0),
            ("temp".into(), 5.0, 60),
        ]
    );
    assert_eq!((summary.events_in, summary.events_out), (6, 6));
    assert_eq!(summary.metrics.windows_compacted, 0);
}

#[test]
fn a_counter_keeps_its_last_value_and_a_tie_goes_to_the_later_sample() {
    let input = vec![Events::Metrics(vec![
        sample("reqs_total", MetricType::Counter, "a", 10.0, 1),
        sample("reqs_total", MetricType::Counter, "a", 12.0, 2),
        sample("reqs_total", MetricType::Counter, "a", 15.0, 3),
        sample("reqs_total", MetricType::Counter, "a", 19.0, 5),
        sample("reqs_total", MetricType::Counter, "a", 17.0, 4),
        // Same timestamp as the 19: the later one in input order wins.
        sample("reqs_total", MetricType::Counter, "a", 20.0, 5),
    ])];
    let (out, summary) = downsample(input, MINUTE, ten());
    assert_eq!(
        brief(&out),
        [
            ("reqs_total".into(), 20.0, 5),
            ("reqs_total:min".into(), 10.0, 5),
            ("reqs_total:max".into(), 20.0, 5),
            ("reqs_total:count".into(), 6.0, 5),
        ]
    );
    let Events::Metrics(m) = &out[0] else {
        unreachable!()
    };
    assert_eq!(m[0].meta.kind, MetricType::Counter);
    assert_eq!(summary.removed(), 2);
}

#[test]
fn each_series_of_a_histogram_keeps_its_last_value() {
    let meta = Arc::new(
        MetricMeta::new("latency_seconds", MetricType::Histogram).with_help("Request latency."),
    );
    let series = |name: &str, le: Option<&str>, value: f64, at_s: i64| Metric {
        name: Arc::from(name),
        labels: match le {
            Some(le) => Labels::from_pairs([("device", "a"), ("le", le)]),
            None => Labels::from_pairs([("device", "a")]),
        },
        value,
        timestamp_ms: at_s * 1000,
        meta: meta.clone(),
        exemplar: None,
    };
    // Five scrapes in one minute, each of four series.
    let input: Vec<Events> = (0..5)
        .map(|i| {
            let n = f64::from(i as u8);
            Events::Metrics(vec![
                series("latency_seconds_bucket", Some("0.1"), 10.0 * n, i * 10),
                series("latency_seconds_bucket", Some("+Inf"), 12.0 * n, i * 10),
                series("latency_seconds_sum", None, 1.5 * n, i * 10),
                series("latency_seconds_count", None, 12.0 * n, i * 10),
            ])
        })
        .collect();
    let (out, summary) = downsample(input, MINUTE, ten());
    assert_eq!(
        brief(&out),
        [
            ("latency_seconds_bucket".into(), 40.0, 40),
            ("latency_seconds_bucket:min".into(), 0.0, 40),
            ("latency_seconds_bucket:max".into(), 40.0, 40),
            ("latency_seconds_bucket:count".into(), 5.0, 40),
            ("latency_seconds_bucket".into(), 48.0, 40),
            ("latency_seconds_bucket:min".into(), 0.0, 40),
            ("latency_seconds_bucket:max".into(), 48.0, 40),
            ("latency_seconds_bucket:count".into(), 5.0, 40),
            ("latency_seconds_sum".into(), 6.0, 40),
            ("latency_seconds_sum:min".into(), 0.0, 40),
            ("latency_seconds_sum:max".into(), 6.0, 40),
            ("latency_seconds_sum:count".into(), 5.0, 40),
            ("latency_seconds_count".into(), 48.0, 40),
            ("latency_seconds_count:min".into(), 0.0, 40),
            ("latency_seconds_count:max".into(), 48.0, 40),
            ("latency_seconds_count:count".into(), 5.0, 40),
        ]
    );
    let Events::Metrics(m) = &out[0] else {
        unreachable!()
    };
    // The bucket's last sample keeps its family; its aggregates keep `le`.
    assert_eq!(m[4].meta, meta);
    assert_eq!(m[5].labels.get("le"), Some("+Inf"));
    assert_eq!(
        m[5].meta.help.as_deref(),
        Some("Minimum of latency_seconds_bucket per 1m window (downsampled)")
    );
    assert_eq!((summary.events_in, summary.events_out), (20, 16));
    assert_eq!(summary.metrics.windows_compacted, 4);
}

#[test]
fn compacting_a_compacted_window_again_merges_its_aggregates_instead_of_nesting_them() {
    let first: Vec<Metric> = (0..6)
        .map(|i| gauge("temp", "a", f64::from(i as u8), i * 5))
        .collect();
    let (once, _) = downsample(vec![Events::Metrics(first)], MINUTE, ten());
    assert_eq!(brief(&once)[3], ("temp:count".into(), 6.0, 25));
    // Later samples of the same window join the compacted ones.
    let mut input = once;
    input.push(Events::Metrics(vec![
        gauge("temp", "a", -3.0, 40),
        gauge("temp", "a", 2.0, 50),
    ]));
    let (twice, summary) = downsample(input, MINUTE, ten());
    assert_eq!(
        brief(&twice),
        [
            ("temp".into(), 2.0, 50),
            ("temp:min".into(), -3.0, 50),
            ("temp:max".into(), 5.0, 50),
            ("temp:count".into(), 8.0, 50),
        ]
    );
    assert_eq!((summary.events_in, summary.events_out), (6, 4));
    // Alone, a compacted window stays as it is.
    let (again, _) = downsample(twice.clone(), MINUTE, ten());
    assert_eq!(again, twice);
}

// ---------------------------------------------------------------------------
// The pure function: logs and spans

#[test]
fn logs_keep_error_and_above_and_the_first_of_every_ten_others_per_stream() {
    let mut logs = Vec::new();
    for i in 0..25 {
        logs.push(log("a", Some(Severity::Info), &format!("a info {i}")));
        if i == 5 || i == 15 {
            logs.push(log("a", Some(Severity::Error), &format!("a error {i}")));
        }
    }
    for i in 0..7 {
        logs.push(log("b", Some(Severity::Debug), &format!("b debug {i}")));
    }
    logs.push(log("b", Some(Severity::Fatal), "b fatal"));
    logs.push(log("b", Some(Severity::Warn), "b warn 0"));
    logs.push(log("b", None, "b plain 0"));
    logs.push(log("b", Some(Severity::Warn), "b warn 1"));
    logs.push(log("b", None, "b plain 1"));
    let (out, summary) = downsample(vec![Events::Logs(logs)], MINUTE, ten());
    let [Events::Logs(kept)] = &out[..] else {
        panic!("{out:?}");
    };
    let messages: Vec<&str> = kept.iter().map(|l| l.message.as_str()).collect();
    // Stream a: 25 INFO, of which the 1st, 11th and 21st; its 2 ERRORs.
    // Stream b: 11 below ERROR (DEBUG, WARN and none), of which the 1st and
    // the 11th; its FATAL.
    assert_eq!(
        messages,
        [
            "a info 0",
            "a error 5",
            "a info 10",
            "a error 15",
            "a info 20",
            "b debug 0",
            "b fatal",
            "b plain 1",
        ]
    );
    assert_eq!(
        summary.logs,
        SampledSummary {
            events_in: 39,
            events_out: 8,
            errors_kept: 3,
        }
    );
    assert_eq!((summary.events_in, summary.events_out), (39, 8));
}

#[test]
fn keep_one_in_one_keeps_every_log() {
    let logs: Vec<LogRecord> = (0..5).map(|i| log("a", None, &i.to_string())).collect();
    let (out, summary) = downsample(
        vec![Events::Logs(logs.clone())],
        MINUTE,
        NonZeroU32::new(1).unwrap(),
    );
    assert_eq!(out, vec![Events::Logs(logs)]);
    assert_eq!(summary.removed(), 0);
}

#[test]
fn spans_keep_errors_and_whole_traces_of_one_in_ten() {
    let mut spans = Vec::new();
    for trace in 0..25u8 {
        spans.push(span(trace, 1, SpanStatus::Ok));
    }
    // Three spans of trace 30 (kept: 30 is a multiple of 10), two of 31.
    for s in 0..3 {
        spans.push(span(30, s, SpanStatus::Unset));
        if s < 2 {
            spans.push(span(31, s, SpanStatus::Unset));
        }
    }
    spans.push(span(7, 2, SpanStatus::Error));
    spans.push(span(13, 2, SpanStatus::Error));
    let (out, summary) = downsample(vec![Events::Traces(spans)], MINUTE, ten());
    assert_eq!(
        span_names(&out),
        [
            "t0 s1", "t10 s1", "t20 s1", "t30 s0", "t30 s1", "t30 s2", "t7 s2", "t13 s2"
        ]
    );
    assert_eq!(
        summary.spans,
        SampledSummary {
            events_in: 32,
            events_out: 8,
            errors_kept: 2,
        }
    );
}

#[test]
fn the_output_has_one_batch_per_signal_in_the_order_they_first_appear() {
    let input = vec![
        Events::Logs(vec![log("a", None, "l0"), log("a", None, "l1")]),
        Events::Metrics(vec![gauge("temp", "a", 1.0, 0)]),
        Events::Traces(vec![span(1, 0, SpanStatus::Ok)]),
        Events::Logs(vec![log("a", Some(Severity::Error), "l2")]),
        Events::Metrics(vec![]),
    ];
    let (out, summary) = downsample(input, MINUTE, ten());
    assert_eq!(
        out,
        vec![
            Events::Logs(vec![
                log("a", None, "l0"),
                log("a", Some(Severity::Error), "l2")
            ]),
            Events::Metrics(vec![gauge("temp", "a", 1.0, 0)]),
        ]
    );
    assert_eq!((summary.events_in, summary.events_out), (5, 3));
    assert_eq!(summary.spans.events_in, 1);
    assert_eq!(summary.spans.events_out, 0);
}

// ---------------------------------------------------------------------------
// The pure function: properties

fn any_metric() -> impl Strategy<Value = Metric> {
    (0..3usize, 0..2usize, -100.0..100.0f64, 0..300i64).prop_map(|(name, device, value, at_s)| {
        let kind = if name == 1 {
            MetricType::Counter
        } else {
            MetricType::Gauge
        };
        sample(
            &format!("m{name}"),
            kind,
            &format!("d{device}"),
            value,
            at_s,
        )
    })
}

fn any_log() -> impl Strategy<Value = LogRecord> {
    let severity = prop_oneof![
        Just(None),
        Just(Some(Severity::Debug)),
        Just(Some(Severity::Info)),
        Just(Some(Severity::Warn)),
        Just(Some(Severity::Error)),
        Just(Some(Severity::Fatal)),
    ];
    (0..2usize, severity, any::<u32>())
        .prop_map(|(stream, s, id)| log(&format!("s{stream}"), s, &id.to_string()))
}

fn any_span() -> impl Strategy<Value = Span> {
    (any::<u8>(), any::<u8>(), any::<bool>()).prop_map(|(trace, s, error)| {
        let status = if error {
            SpanStatus::Error
        } else {
            SpanStatus::Ok
        };
        span(trace, s, status)
    })
}

fn any_batch() -> impl Strategy<Value = Events> {
    prop_oneof![
        3 => proptest::collection::vec(any_metric(), 0..30).prop_map(Events::Metrics),
        1 => proptest::collection::vec(any_log(), 0..20).prop_map(Events::Logs),
        1 => proptest::collection::vec(any_span(), 0..20).prop_map(Events::Traces),
    ]
}

type SeriesWindow = (String, String, i64);

fn key(m: &Metric, window_s: i64) -> SeriesWindow {
    let base = m.name.split(':').next().unwrap_or_default().to_string();
    let device = m.labels.get("device").unwrap_or_default().to_string();
    (base, device, (m.timestamp_ms / 1000).div_euclid(window_s))
}

/// One series window of the input: its last (timestamp, value), min, max
/// and count.
type Truth = BTreeMap<SeriesWindow, ((i64, f64), f64, f64, f64)>;

fn truth(input: &[Events], window_s: i64) -> Truth {
    let mut t = Truth::new();
    for e in input {
        let Events::Metrics(v) = e else { continue };
        for m in v {
            let e = t
                .entry(key(m, window_s))
                .or_insert(((i64::MIN, 0.0), f64::MAX, f64::MIN, 0.0));
            if m.timestamp_ms >= e.0.0 {
                e.0 = (m.timestamp_ms, m.value);
            }
            e.1 = e.1.min(m.value);
            e.2 = e.2.max(m.value);
            e.3 += 1.0;
        }
    }
    t
}

/// Checks `out` against the input's `truth`: each series window holds
/// its last sample, and either its other samples or min, max and count.
fn check_metrics(out: &[Events], truth: &Truth, window_s: i64) -> Result<(), TestCaseError> {
    #[derive(Default)]
    struct Seen {
        samples: Vec<(i64, f64)>,
        min: Vec<f64>,
        max: Vec<f64>,
        count: Vec<f64>,
    }
    let mut seen: BTreeMap<SeriesWindow, Seen> = BTreeMap::new();
    for e in out {
        let Events::Metrics(v) = e else { continue };
        for m in v {
            let s = seen.entry(key(m, window_s)).or_default();
            match m.name.split_once(':').map(|x| x.1) {
                None => s.samples.push((m.timestamp_ms, m.value)),
                Some("min") => s.min.push(m.value),
                Some("max") => s.max.push(m.value),
                Some("count") => s.count.push(m.value),
                Some(other) => prop_assert!(false, "unexpected {other}"),
            }
        }
    }
    prop_assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        truth.keys().collect::<Vec<_>>()
    );
    for (k, ((last_at, last), min, max, count)) in truth {
        let s = &seen[k];
        prop_assert!(
            s.samples.contains(&(*last_at, *last)),
            "{:?}: last {} at {} not kept",
            k,
            last,
            last_at
        );
        if s.count.is_empty() {
            prop_assert!(s.min.is_empty() && s.max.is_empty());
            prop_assert_eq!(s.samples.len() as f64, *count);
        } else {
            prop_assert_eq!(s.samples.len(), 1);
            prop_assert_eq!(&s.min, &vec![*min]);
            prop_assert_eq!(&s.max, &vec![*max]);
            prop_assert_eq!(&s.count, &vec![*count]);
            prop_assert!(*min <= *last && *last <= *max);
        }
    }
    Ok(())
}

fn errors(events: &[Events]) -> (Vec<LogRecord>, Vec<Span>) {
    let mut logs = Vec::new();
    let mut spans = Vec::new();
    for e in events {
        match e {
            Events::Logs(v) => logs.extend(
                v.iter()
                    .filter(|l| l.severity >= Some(Severity::Error))
                    .cloned(),
            ),
            Events::Traces(v) => {
                spans.extend(v.iter().filter(|s| s.status == SpanStatus::Error).cloned())
            }
            Events::Metrics(_) => {}
        }
    }
    (logs, spans)
}

proptest! {
    /// Never more out than in; every error kept; per series and window
    /// the last value kept, min ≤ last ≤ max, and the counts adding up
    /// to the samples that came in.
    #[test]
    fn downsampling_keeps_errors_last_values_and_counts(
        input in proptest::collection::vec(any_batch(), 0..8),
        window_s in 1..120i64,
        keep in 1..5u32,
    ) {
        let window = StdDuration::from_secs(window_s as u64);
        let keep = NonZeroU32::new(keep).unwrap();
        let (out, summary) = downsample(input.clone(), window, keep);
        let events_in: usize = input.iter().map(Events::len).sum();
        let events_out: usize = out.iter().map(Events::len).sum();
        prop_assert_eq!(summary.events_in, events_in as u64);
        prop_assert_eq!(summary.events_out, events_out as u64);
        prop_assert!(events_out <= events_in);
        prop_assert_eq!(errors(&out), errors(&input));
        check_metrics(&out, &truth(&input, window_s), window_s)?;
        // The same input, the same output.
        prop_assert_eq!(downsample(input, window, keep).0, out);
    }

    /// Compacting a compacted backlog together with newer samples still
    /// counts every sample once and keeps the true min and max.
    #[test]
    fn downsampling_twice_counts_every_sample_once(
        older in proptest::collection::vec(any_batch(), 0..5),
        newer in proptest::collection::vec(any_batch(), 0..5),
        window_s in 1..120i64,
    ) {
        let window = StdDuration::from_secs(window_s as u64);
        let (mut twice, _) = downsample(older.clone(), window, ten());
        twice.extend(newer.clone());
        let (out, summary) = downsample(twice, window, ten());
        prop_assert!(summary.events_out <= summary.events_in);
        let all: Vec<Events> = older.into_iter().chain(newer).collect();
        prop_assert_eq!(errors(&out), errors(&all));
        check_metrics(&out, &truth(&all, window_s), window_s)?;
    }
}
