#![allow(clippy::unwrap_used)]

use super::*;
use iotel_model::{Labels, SpanStatus};
use std::sync::atomic::{AtomicI64, Ordering};

const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
/// 2026-03-29T16:00:00Z, local clock.
const T0: i64 = 1_774_800_000 * S;

#[derive(Debug)]
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ns(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn build(text: &str) -> (ClockSkew, Arc<TestClock>, BuildContext) {
    let cfg: Config = toml::from_str(text).unwrap();
    assert_eq!(cfg.validate(), vec![], "{text}");
    let cx = BuildContext::for_test("skew");
    let clock = Arc::new(TestClock(AtomicI64::new(T0)));
    (cfg.build_with_clock(&cx, clock.clone()), clock, cx)
}

fn span(device: &str, id: u8, start_ns: i64, end_ns: i64) -> Span {
    Span {
        trace_id: [1; 16],
        span_id: [id; 8],
        parent_span_id: None,
        name: "publish".into(),
        start_ns,
        end_ns,
        labels: Labels::from_pairs([("device_id", device)]),
        attributes: Default::default(),
        status: SpanStatus::Unset,
    }
}

fn run(t: &mut ClockSkew, spans: Vec<Span>) -> Vec<Span> {
    let mut out = Vec::new();
    t.transform(Events::Traces(spans), &mut out);
    let [Events::Traces(spans)] = &out[..] else {
        panic!("expected one batch of spans, got {out:?}")
    };
    spans.clone()
}

fn counter(cx: &BuildContext, name: &str) -> u64 {
    cx.metrics
        .registry()
        .counter(name, "", &[("component_id", "skew")])
        .get()
}

fn adjusted(s: &Span) -> Option<i64> {
    s.attributes.get(ADJUSTED_ATTRIBUTE).and_then(Value::as_i64)
}

/// Delays from 20 ms to 500 ms, deterministic.
struct Jitter(u64);

impl Jitter {
    fn next(&mut self) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        20 * MS + i64::try_from((self.0 >> 33) % 480).unwrap() * MS
    }
}

#[test]
fn devices_ahead_and_behind_are_corrected_within_the_bound_and_an_accurate_one_never() {
    let (mut t, clock, cx) = build("");
    // offset = local − device: ahead 30 s, behind 10 s, accurate.
    let devices = [("ahead", -30 * S), ("behind", 10 * S), ("accurate", 0)];
    let mut jitter = Jitter(7);
    let mut min_delay = [i64::MAX; 3];
    let mut adjusted_spans = 0;
    for k in 0..50 {
        let now = T0 + k * S;
        clock.0.store(now, Ordering::SeqCst);
        let mut batch = Vec::new();
        let mut delays = [0; 3];
        for (i, (name, offset)) in devices.iter().enumerate() {
            delays[i] = jitter.next();
            min_delay[i] = min_delay[i].min(delays[i]);
            // The span really ended `delay` before it arrived; the device
            // wrote it in its own clock.
            let end_device = now - delays[i] - offset;
            batch.push(span(
                name,
                u8::try_from(i).unwrap(),
                end_device - 100 * MS,
                end_device,
            ));
        }
        let before = batch.clone();
        let out = run(&mut t, batch);
        for (i, (name, offset)) in devices.iter().enumerate() {
            let estimate = t.estimate(name).unwrap();
            // The documented bound: 0 ≤ estimate − offset ≤ min delay.
            assert_eq!(estimate - offset, min_delay[i], "{name} after {k}");
            assert!(estimate - offset <= 500 * MS);
            if *offset == 0 {
                assert_eq!(out[i], before[i], "the accurate clock is never adjusted");
            } else {
                adjusted_spans += 1;
                assert_eq!(out[i].start_ns, before[i].start_ns + estimate);
                assert_eq!(out[i].end_ns, before[i].end_ns + estimate);
                assert_eq!(adjusted(&out[i]), Some(estimate));
                // Corrected, the span ends no later than it arrived, and
                // no earlier than the real end plus the bound.
                assert!(out[i].end_ns <= now);
                assert!(out[i].end_ns >= now - delays[i]);
            }
        }
    }
    assert_eq!(
        counter(&cx, "iotel_clock_skew_adjusted_spans_total"),
        adjusted_spans
    );
    assert_eq!(adjusted_spans, 100);
}

#[test]
fn a_device_slightly_behind_is_not_told_from_export_delay_but_one_slightly_ahead_is_corrected() {
    let (mut t, _clock, _) = build("");
    // 0.5 s behind with a 0.2 s delay: 0.7 s, under the threshold.
    let behind = run(&mut t, vec![span("b", 1, T0 - 800 * MS, T0 - 700 * MS)]);
    assert_eq!(adjusted(&behind[0]), None);
    // Ends 50 ms after it arrived: the device is ahead; always corrected.
    let ahead = run(&mut t, vec![span("a", 2, T0 - 50 * MS, T0 + 50 * MS)]);
    assert_eq!(adjusted(&ahead[0]), Some(-50 * MS));
    assert_eq!(ahead[0].end_ns, T0);
}

#[test]
fn spans_that_end_before_they_start_get_their_start_clamped() {
    let (mut t, _clock, cx) = build("");
    let out = run(&mut t, vec![span("d", 1, T0 - 200 * MS, T0 - 500 * MS)]);
    assert_eq!(out[0].start_ns, T0 - 500 * MS);
    assert_eq!(out[0].end_ns, T0 - 500 * MS);
    assert_eq!(
        out[0].attributes.get(NEGATIVE_DURATION_ATTRIBUTE),
        Some(&Value::from(-300 * MS))
    );
    assert_eq!(adjusted(&out[0]), Some(0));
    assert_eq!(counter(&cx, "iotel_clock_skew_adjusted_spans_total"), 1);
}

#[test]
fn a_child_from_another_device_starting_before_its_parent_is_centred_in_it() {
    let (mut t, _clock, _) = build("");
    // The gateway's span (accurate clock) is the parent of the device's,
    // whose clock is 0.5 s behind: under the threshold, so only the
    // in-trace fix applies. The device's own child moves with it.
    let parent = span("gateway", 1, T0 - 300 * MS, T0 - 200 * MS);
    let mut child = span("sensor", 2, T0 - 780 * MS, T0 - 760 * MS);
    child.parent_span_id = Some([1; 8]);
    let mut grandchild = span("sensor", 3, T0 - 775 * MS, T0 - 770 * MS);
    grandchild.parent_span_id = Some([2; 8]);
    let out = run(&mut t, vec![grandchild, child, parent.clone()]);
    // Centred: (100 ms − 20 ms) / 2 = 40 ms after the parent's start.
    let by = (T0 - 260 * MS) - (T0 - 780 * MS);
    assert_eq!(out[1].start_ns, T0 - 260 * MS);
    assert_eq!(out[1].end_ns, T0 - 240 * MS);
    assert_eq!(adjusted(&out[1]), Some(by));
    assert_eq!(out[0].start_ns, T0 - 775 * MS + by);
    assert_eq!(adjusted(&out[0]), Some(by));
    assert_eq!(out[2], parent);
}

#[test]
fn spans_an_earlier_hop_corrected_and_spans_without_a_device_pass_unchanged() {
    let (mut t, _clock, cx) = build("");
    let mut done = span("d", 1, T0 + 10 * S, T0 + 11 * S);
    done.attributes
        .insert(ADJUSTED_ATTRIBUTE.into(), Value::from(5));
    let mut anonymous = span("d", 2, T0 + 10 * S, T0 + 11 * S);
    anonymous.labels = Labels::empty();
    let out = run(&mut t, vec![done.clone(), anonymous.clone()]);
    assert_eq!(out, [done, anonymous]);
    assert_eq!(t.estimate("d"), None);
    assert_eq!(counter(&cx, "iotel_clock_skew_unlabelled_spans_total"), 1);
}

#[test]
fn the_device_table_is_bounded_and_evicts_the_least_recently_seen() {
    let (mut t, _clock, cx) = build("max_devices = 16");
    for d in 0..16 {
        run(&mut t, vec![span(&format!("d{d}"), 1, T0 - 2 * S, T0 - S)]);
    }
    // d0 and d1 are seen again: d2 and d3 are now the least recent.
    run(&mut t, vec![span("d0", 1, T0 - 2 * S, T0 - S)]);
    run(&mut t, vec![span("d1", 1, T0 - 2 * S, T0 - S)]);
    run(&mut t, vec![span("new", 3, T0 - 2 * S, T0 - S)]);
    // A full table drops its least recently seen eighth at once.
    assert_eq!(t.devices(), 15.0);
    assert_eq!(t.estimate("d2"), None);
    assert_eq!(t.estimate("d3"), None);
    assert_eq!(t.estimate("d4"), Some(S));
    assert_eq!(t.estimate("d0"), Some(S));
    assert_eq!(t.estimate("new"), Some(S));
    assert_eq!(counter(&cx, "iotel_clock_skew_evicted_devices_total"), 2);
}

#[test]
fn samples_older_than_the_window_stop_counting() {
    let (mut t, clock, _) = build("window = \"80s\"");
    // A prompt span (d = 10 s), then only late ones (d = 20 s).
    run(&mut t, vec![span("d", 1, T0 - 11 * S, T0 - 10 * S)]);
    for k in 1..=10 {
        let now = T0 + k * 10 * S;
        clock.0.store(now, Ordering::SeqCst);
        run(&mut t, vec![span("d", 1, now - 21 * S, now - 20 * S)]);
    }
    // 8 sub-windows of 10 s: after 100 s the first sample is gone.
    assert_eq!(t.estimate("d"), Some(20 * S));
}

#[test]
fn config_errors_name_the_key() {
    let cfg: Config = toml::from_str("device_label = \"\"\nwindow = \"10ms\"").unwrap();
    let p: Vec<String> = cfg
        .validate()
        .iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    assert_eq!(
        p,
        [
            "device_label: expected a label name, got \"\"",
            "window: expected at least 1s, got 10ms",
        ]
    );
}

#[cfg(feature = "logs")]
#[test]
fn an_otlp_device_trace_clock_skew_pipeline_loads() {
    let loaded = crate::config::load_for_test(
        r#"
[sources.otlp_in]
type = "otlp"

[transforms.ids]
type = "device_trace"
inputs = ["otlp_in"]
protocol = "mqtt"
hop = "agent"

[transforms.skew]
type = "clock_skew"
inputs = ["ids"]
threshold = "2s"

[sinks.out]
type = "console"
inputs = ["skew"]
"#,
        |_| None,
    )
    .unwrap();
    let types: Vec<&str> = loaded.components.iter().map(|c| c.type_name()).collect();
    assert_eq!(types, ["otlp", "device_trace", "clock_skew", "console"]);
    let bad = crate::config::load_for_test(
        "[sources.otlp_in]\ntype = \"otlp\"\n\n[transforms.skew]\ntype = \"clock_skew\"\ninputs = [\"otlp_in\"]\nwindow = \"1ms\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"skew\"]\n",
        |_| None,
    )
    .unwrap_err();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].contains("transforms.skew.window")
            && bad[0].contains("expected at least 1s, got 1ms"),
        "{bad:?}"
    );
}

#[test]
fn logs_pass_unchanged() {
    let (mut t, _clock, _) = build("");
    let logs = Events::Logs(vec![iotel_model::LogRecord::new(
        T0 + 3600 * S,
        "from the future",
    )]);
    let mut out = Vec::new();
    t.transform(logs.clone(), &mut out);
    assert_eq!(out, [logs]);
}

proptest::proptest! {
    #[test]
    fn arbitrary_spans_with_parent_cycles_and_extreme_times_never_panic(
        spans in proptest::collection::vec(
            (0u8..6, proptest::option::of(0u8..6), proptest::num::i64::ANY, proptest::num::i64::ANY, 0u8..3),
            0..12,
        ),
        now in proptest::num::i64::ANY,
    ) {
        let (mut t, clock, _) = build("max_devices = 2");
        clock.0.store(now, Ordering::SeqCst);
        let batch: Vec<Span> = spans
            .iter()
            .map(|(id, parent, start, end, device)| {
                let mut s = span(&format!("d{device}"), *id, *start, *end);
                s.parent_span_id = parent.map(|p| [p; 8]);
                s
            })
            .collect();
        let out = run(&mut t, batch.clone());
        proptest::prop_assert_eq!(out.len(), batch.len());
        for (a, b) in out.iter().zip(&batch) {
            proptest::prop_assert_eq!(a.span_id, b.span_id);
            proptest::prop_assert!(a.end_ns >= a.start_ns);
        }
    }
}

#[test]
fn a_cycle_of_parent_ids_is_cut_and_both_spans_pass() {
    let (mut t, _clock, _) = build("");
    let mut a = span("x", 1, T0 - 2 * S, T0 - S);
    a.parent_span_id = Some([2; 8]);
    let mut b = span("y", 2, T0 - 3 * S, T0 - 2 * S);
    b.parent_span_id = Some([1; 8]);
    let out = run(&mut t, vec![a, b]);
    assert_eq!(out.len(), 2);
}
