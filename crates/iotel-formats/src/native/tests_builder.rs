//! [`Builder`] against its oracle: the frame it finishes is, byte for byte,
//! the one [`encode`] writes for every pushed batch joined in push order.

use super::tests::{built_in, device_metrics, every_metric_type, logs, metrics_of, spans};
use super::tests_prop::{log_batch, metric_batch, span_batch};
use super::wire::{Decimal, XorValues};
use super::*;
use iotel_model::{Label, Labels, Metric, MetricMeta, MetricType};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

fn slice(events: &Events, range: Range<usize>) -> Events {
    match events {
        Events::Metrics(m) => Events::Metrics(m[range].to_vec()),
        Events::Logs(l) => Events::Logs(l[range].to_vec()),
        Events::Traces(s) => Events::Traces(s[range].to_vec()),
    }
}

/// `events` cut at `cuts` (positions in any order; a repeated one makes an
/// empty chunk), in order.
fn chunks(events: &Events, cuts: &[Index]) -> Vec<Events> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(events.len() + 1)).collect();
    at.extend([0, events.len()]);
    at.sort_unstable();
    at.windows(2).map(|w| slice(events, w[0]..w[1])).collect()
}

fn push_all(builder: &mut Builder, chunks: &[Events]) {
    for chunk in chunks {
        builder.push(chunk).expect("one signal");
    }
}

/// Builds `events` from `chunks` with every built-in compression, reusing
/// one builder, and checks each frame against `encode`.
fn check_chunks(events: &Events, chunks: &[Events]) -> Result<(), TestCaseError> {
    let mut builder = Builder::new();
    for compression in built_in() {
        push_all(&mut builder, chunks);
        prop_assert_eq!(builder.records(), events.len());
        prop_assert_eq!(builder.signal(), Some(events.signal()));
        let frame = builder.finish("agent-1", 9, compression).unwrap();
        prop_assert!(builder.is_empty());
        prop_assert_eq!(builder.signal(), None);
        let expected = encode("agent-1", 9, events, compression).unwrap();
        prop_assert!(frame == expected, "{} differs", compression);
    }
    Ok(())
}

fn any_events() -> impl Strategy<Value = Events> {
    prop_oneof![
        metric_batch().prop_map(Events::Metrics),
        log_batch().prop_map(Events::Logs),
        span_batch().prop_map(Events::Traces),
    ]
}

proptest! {
    #[test]
    fn metric_batches_pushed_in_chunks_finish_as_encode_writes_them_joined(
        metrics in metric_batch(),
        cuts in proptest::collection::vec(any::<Index>(), 0..6),
    ) {
        let events = Events::Metrics(metrics);
        check_chunks(&events, &chunks(&events, &cuts))?;
    }

    #[test]
    fn log_batches_pushed_in_chunks_finish_as_encode_writes_them_joined(
        logs in log_batch(),
        cuts in proptest::collection::vec(any::<Index>(), 0..6),
    ) {
        let events = Events::Logs(logs);
        check_chunks(&events, &chunks(&events, &cuts))?;
    }

    #[test]
    fn span_batches_pushed_in_chunks_finish_as_encode_writes_them_joined(
        spans in span_batch(),
        cuts in proptest::collection::vec(any::<Index>(), 0..6),
    ) {
        let events = Events::Traces(spans);
        check_chunks(&events, &chunks(&events, &cuts))?;
    }

    /// Whatever the builder held before, of whichever signal, finished or
    /// cleared, leaves nothing behind.
    #[test]
    fn a_builder_reused_after_finish_or_clear_writes_what_a_new_one_writes(
        before in any_events(),
        cleared in any::<bool>(),
        events in any_events(),
        cuts in proptest::collection::vec(any::<Index>(), 0..4),
    ) {
        let chunks = chunks(&events, &cuts);
        let mut fresh = Builder::new();
        push_all(&mut fresh, &chunks);
        let expected = fresh.finish("a", 1, Compression::None).unwrap();

        let mut reused = Builder::new();
        reused.push(&before).unwrap();
        if cleared {
            reused.clear();
        } else {
            reused.finish("b", 2, Compression::Snappy).unwrap();
        }
        prop_assert!(reused.is_empty());
        prop_assert_eq!(reused.signal(), None);
        push_all(&mut reused, &chunks);
        prop_assert!(reused.finish("a", 1, Compression::None).unwrap() == expected);
    }
}

#[test]
fn a_batch_of_another_signal_is_refused_and_changes_nothing() {
    let metrics = Events::Metrics(every_metric_type());
    let mut builder = Builder::new();
    builder.push(&metrics).unwrap();
    let (records, bytes) = (builder.records(), builder.approx_bytes());
    for other in [Events::Logs(logs()), Events::Traces(vec![])] {
        let e = builder.push(&other).unwrap_err();
        assert_eq!(
            e,
            SignalMismatch {
                expected: Signal::Metrics,
                found: other.signal(),
            }
        );
        assert_eq!(e.code(), "signal_mismatch");
        assert_eq!(builder.signal(), Some(Signal::Metrics));
        assert_eq!(builder.records(), records);
        assert_eq!(builder.approx_bytes(), bytes);
    }
    assert_eq!(
        builder.push(&Events::Logs(vec![])).unwrap_err().to_string(),
        "the frame being built holds metrics; a batch of logs goes into another"
    );
    let frame = builder.finish("a", 1, Compression::Snappy).unwrap();
    assert_eq!(
        frame,
        encode("a", 1, &metrics, Compression::Snappy).unwrap()
    );
}

#[test]
fn an_empty_batch_sets_the_signal_of_the_frame() {
    let mut builder = Builder::new();
    builder.push(&Events::Traces(vec![])).unwrap();
    assert_eq!(builder.signal(), Some(Signal::Traces));
    assert!(builder.is_empty());
    assert_eq!(builder.records(), 0);
    let e = builder.push(&Events::Metrics(vec![])).unwrap_err();
    assert_eq!(e.expected, Signal::Traces);
    builder.push(&Events::Traces(spans())).unwrap();
    assert_eq!(builder.records(), 3);
    let frame = builder.finish("a", 1, Compression::None).unwrap();
    assert_eq!(
        frame,
        encode("a", 1, &Events::Traces(spans()), Compression::None).unwrap()
    );
    // Nothing but an empty batch: an empty frame of that signal.
    builder.push(&Events::Logs(vec![])).unwrap();
    let frame = builder.finish("a", 1, Compression::None).unwrap();
    assert_eq!(
        frame,
        encode("a", 1, &Events::Logs(vec![]), Compression::None).unwrap()
    );
    let batch = decode(&frame, &Limits::default()).unwrap();
    assert_eq!(batch.events, Events::Logs(vec![]));
}

#[test]
fn finishing_a_builder_nothing_was_pushed_into_is_refused() {
    let mut builder = Builder::new();
    let e = builder.finish("a", 1, Compression::Snappy).unwrap_err();
    assert!(matches!(e, EncodeError::NothingPushed), "{e}");
    assert_eq!(e.code(), "nothing_pushed");
    assert_eq!(builder.signal(), None);
}

/// Without zstd built in, finishing with it fails and keeps the frame for
/// another compression.
#[cfg(not(feature = "zstd"))]
#[test]
fn finishing_with_a_compression_not_built_in_keeps_what_was_pushed() {
    let events = Events::Logs(logs());
    let mut builder = Builder::new();
    builder.push(&events).unwrap();
    let e = builder.finish("a", 1, Compression::Zstd).unwrap_err();
    assert_eq!(e.code(), "compression_not_built_in");
    assert_eq!(builder.records(), events.len());
    assert_eq!(
        builder.finish("a", 1, Compression::Snappy).unwrap(),
        encode("a", 1, &events, Compression::Snappy).unwrap()
    );
}

/// One series whose values, one batch each, need ever more digits and then
/// XOR: it is written again at each step, and ends as `encode` writes the
/// whole column.
#[test]
fn a_series_whose_later_values_need_another_coding_ends_as_encode_writes_it() {
    let meta = Arc::new(MetricMeta::new("g", MetricType::Gauge));
    let values = [
        3.0,
        4.0,
        4.5,
        -4.25,
        0.001,
        2.0,
        1e-6,
        std::f64::consts::PI,
        5.0,
    ];
    let metrics: Vec<Metric> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| Metric {
            name: Arc::from("g"),
            labels: Labels::empty(),
            value: v,
            timestamp_ms: 1_000 * i as i64,
            meta: meta.clone(),
            exemplar: None,
        })
        .collect();
    for coded_upto in 0..values.len() {
        // The first `coded_upto + 1` values, one batch each.
        let joined = Events::Metrics(metrics[..=coded_upto].to_vec());
        let mut builder = Builder::new();
        for m in &metrics[..=coded_upto] {
            builder.push(&Events::Metrics(vec![m.clone()])).unwrap();
        }
        let frame = builder.finish("a", 1, Compression::None).unwrap();
        assert_eq!(
            frame,
            encode("a", 1, &joined, Compression::None).unwrap(),
            "after {} values",
            coded_upto + 1
        );
        let back = metrics_of(decode(&frame, &Limits::default()).unwrap().events);
        let bits: Vec<u64> = back.iter().map(|m| m.value.to_bits()).collect();
        let sent = &values[..=coded_upto];
        assert_eq!(bits, sent.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        // The value coding is the one the whole column needs: its byte
        // and the column, as the batch coders write them, are in the frame.
        let mut column = Vec::new();
        match Decimal::digits_for(sent.iter().copied()) {
            Some(digits) => {
                column.push(Decimal::code(digits));
                let mut coder = Decimal::new(digits);
                sent.iter().for_each(|&v| coder.put(&mut column, v));
            }
            None => {
                column.push(0);
                let mut coder = XorValues::default();
                sent.iter().for_each(|&v| coder.put(&mut column, v));
            }
        }
        assert!(
            frame.windows(column.len()).any(|w| w == column),
            "after {} values: no {column:02x?} in {frame:02x?}",
            coded_upto + 1
        );
    }
}

#[test]
fn pushed_batches_are_not_kept() {
    let metrics = every_metric_type();
    let meta = metrics[0].meta.clone();
    let name = metrics[0].name.clone();
    let mut builder = Builder::new();
    builder.push(&Events::Metrics(metrics.clone())).unwrap();
    drop(metrics);
    // Only this test's clones are left.
    assert_eq!(Arc::strong_count(&meta), 1);
    assert_eq!(Arc::strong_count(&name), 1);
    assert_eq!(builder.records(), every_metric_type().len());
}

/// The memory of `metrics` as `decode` gives them back: the `Metric`s, and
/// every label set, string and family behind them once (they are shared
/// within a decoded frame, not across frames).
fn decoded_bytes(metrics: &[Metric]) -> usize {
    const ARC_COUNTS: usize = 2 * size_of::<usize>();
    let mut seen: HashSet<*const u8> = HashSet::new();
    let mut bytes = size_of_val(metrics);
    let string = |s: &Arc<str>, seen: &mut HashSet<*const u8>| {
        if seen.insert(Arc::as_ptr(s).cast()) {
            ARC_COUNTS + s.len()
        } else {
            0
        }
    };
    for m in metrics {
        bytes += string(&m.name, &mut seen);
        if seen.insert(Arc::as_ptr(&m.meta).cast()) {
            bytes += ARC_COUNTS + size_of::<MetricMeta>() + string(&m.meta.family, &mut seen);
            for s in [&m.meta.help, &m.meta.unit].into_iter().flatten() {
                bytes += string(s, &mut seen);
            }
        }
        let first: Option<*const Label> = m.labels.iter().next().map(|l| l as *const Label);
        if let Some(first) = first
            && seen.insert(first.cast())
        {
            bytes += ARC_COUNTS + m.labels.len() * size_of::<Label>();
            for l in m.labels.iter() {
                bytes += string(&l.name, &mut seen) + string(&l.value, &mut seen);
            }
        }
    }
    bytes
}

/// The edge sink's case: 10 buffered scrapes of 2,000 series, each decoded
/// from its own frame, joined into one. The builder holds about the frame's
/// body and per-series state; the decoded events take several times more.
#[test]
fn ten_scrapes_of_two_thousand_series_take_far_less_in_a_builder_than_decoded() {
    for steady in [false, true] {
        let metrics = device_metrics(10, steady);
        let mut builder = Builder::new();
        let mut decoded = Vec::new();
        for scrape in metrics.chunks(2000) {
            let frame = encode(
                "a",
                1,
                &Events::Metrics(scrape.to_vec()),
                Compression::Snappy,
            )
            .unwrap();
            let events = decode(&frame, &Limits::default()).unwrap().events;
            builder.push(&events).unwrap();
            decoded.extend(metrics_of(events));
        }
        let decoded_bytes = decoded_bytes(&decoded);
        let (approx, held) = (builder.approx_bytes(), builder.held_bytes());
        let events = Events::Metrics(decoded);
        let frame = builder.finish("a", 1, Compression::None).unwrap();
        let body = decode_header(&frame).unwrap().body_bytes;
        println!(
            "{} samples ({}): builder approx_bytes {approx}, buffers held {held}; \
             decoded events {decoded_bytes} bytes; frame body {body} bytes",
            events.len(),
            if steady {
                "steady"
            } else {
                "random walk, jitter"
            },
        );
        assert_eq!(frame, encode("a", 1, &events, Compression::None).unwrap());
        assert!(approx < 300_000, "approx_bytes {approx}");
        assert!(held < 2 * approx, "held {held}, approx_bytes {approx}");
        assert!(approx * 4 < decoded_bytes, "{approx} vs {decoded_bytes}");
        // Finished: back to (nearly) nothing, the buffers kept.
        assert!(builder.approx_bytes() < 1_000, "{}", builder.approx_bytes());
        assert!(builder.held_bytes() >= held / 2);
    }
}
