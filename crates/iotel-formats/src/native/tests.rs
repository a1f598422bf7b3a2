//! Round trips field by field and the size against remote write. Every
//! [`DecodeError`] is in `tests_errors.rs`; random batches and arbitrary
//! bytes are in `tests_prop.rs`.

use super::*;
use crate::remote_write;
use iotel_model::{
    Exemplar, Labels, LogRecord, Metric, MetricMeta, MetricType, Severity, Span, SpanStatus,
};
use std::sync::Arc;

/// A sample as comparable data: the value and the exemplar's as bits, so
/// NaN payloads, -0.0 and infinities are checked exactly.
pub(super) type MetricKey = (
    String,
    Labels,
    u64,
    i64,
    MetricMeta,
    Option<(Labels, u64, Option<i64>)>,
);

pub(super) fn key(m: &Metric) -> MetricKey {
    (
        m.name.to_string(),
        m.labels.clone(),
        m.value.to_bits(),
        m.timestamp_ms,
        (*m.meta).clone(),
        m.exemplar
            .as_deref()
            .map(|e| (e.labels.clone(), e.value.to_bits(), e.timestamp_ms)),
    )
}

/// `metrics` in the order decoding gives them back: grouped by (name,
/// labels, family), series in order of first sight, stable within.
pub(super) fn grouped(metrics: &[Metric]) -> Vec<MetricKey> {
    let mut series: Vec<(&str, &Labels, &MetricMeta)> = Vec::new();
    let mut with_series: Vec<(usize, MetricKey)> = metrics
        .iter()
        .map(|m| {
            let id = (&*m.name, &m.labels, &*m.meta);
            let s = series.iter().position(|s| *s == id).unwrap_or_else(|| {
                series.push(id);
                series.len() - 1
            });
            (s, key(m))
        })
        .collect();
    with_series.sort_by_key(|(s, _)| *s);
    with_series.into_iter().map(|(_, k)| k).collect()
}

/// Parses JSON into whatever the model's field maps hold.
pub(super) fn json<T: std::str::FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    text.parse().expect("test JSON")
}

/// The compressions this build has: none and snappy, and zstd and lz4 with
/// their features.
pub(super) fn built_in() -> Vec<Compression> {
    Compression::ALL
        .into_iter()
        .filter(|c| c.is_built_in())
        .collect()
}

/// `a` and `b` are the same events, every field bit for bit (metric values
/// and exemplars compared as bits), in the same order.
pub(super) fn assert_same_events(a: &Events, b: &Events, what: &str) {
    match (a, b) {
        (Events::Metrics(a), Events::Metrics(b)) => assert_eq!(
            a.iter().map(key).collect::<Vec<_>>(),
            b.iter().map(key).collect::<Vec<_>>(),
            "{what}"
        ),
        _ => assert_eq!(a, b, "{what}"),
    }
}

/// Encodes with every built-in compression, decodes, and checks the header
/// and that each compression decodes the same as the first (none);
/// returns the events.
pub(super) fn round_trip(events: &Events) -> Events {
    let mut decoded: Vec<Events> = Vec::new();
    for compression in built_in() {
        let frame = encode("agent-7", 42, events, compression).unwrap();
        let batch = decode(&frame, &Limits::default()).unwrap();
        assert_eq!(batch.header, decode_header(&frame).unwrap());
        assert_eq!(batch.header.agent_id, "agent-7");
        assert_eq!(batch.header.sequence, 42);
        assert_eq!(batch.header.signal, events.signal());
        assert_eq!(batch.header.records, events.len() as u64);
        assert_eq!(batch.header.compression, compression);
        if let Some(first) = decoded.first() {
            assert_same_events(&batch.events, first, compression.as_str());
        }
        decoded.push(batch.events);
    }
    decoded.swap_remove(0)
}

pub(super) fn metrics_of(events: Events) -> Vec<Metric> {
    match events {
        Events::Metrics(m) => m,
        other => panic!("expected metrics, got {other:?}"),
    }
}

fn family(name: &str, kind: MetricType, help: Option<&str>, unit: Option<&str>) -> Arc<MetricMeta> {
    Arc::new(MetricMeta {
        family: Arc::from(name),
        kind,
        help: help.map(Arc::from),
        unit: unit.map(Arc::from),
    })
}

fn sample(
    meta: &Arc<MetricMeta>,
    name: &str,
    labels: &[(&str, &str)],
    value: f64,
    ts: i64,
) -> Metric {
    Metric {
        name: Arc::from(name),
        labels: Labels::from_pairs(labels.iter().copied()),
        value,
        timestamp_ms: ts,
        meta: meta.clone(),
        exemplar: None,
    }
}

/// One family of every metric type, histograms and summaries flattened as
/// the model has them, with help, units and exemplars.
pub(super) fn every_metric_type() -> Vec<Metric> {
    let t = 1_700_000_000_000;
    let dev = ("device_id", "d-17");
    let counter = family(
        "requests",
        MetricType::Counter,
        Some("Requests."),
        Some("requests"),
    );
    let gauge = family(
        "temperature_celsius",
        MetricType::Gauge,
        Some("Board temperature."),
        Some("celsius"),
    );
    let hist = family(
        "rtt_seconds",
        MetricType::Histogram,
        Some("Round trips."),
        Some("seconds"),
    );
    let ghist = family(
        "queue_bytes",
        MetricType::GaugeHistogram,
        None,
        Some("bytes"),
    );
    let summary = family(
        "latency_seconds",
        MetricType::Summary,
        Some("Latency."),
        None,
    );
    let info = family("build", MetricType::Info, Some("Build info."), None);
    let stateset = family("link_state", MetricType::StateSet, None, None);
    let unknown = family("mystery", MetricType::Unknown, None, None);
    let mut m = vec![
        sample(
            &counter,
            "requests_total",
            &[dev, ("code", "200")],
            1027.0,
            t,
        ),
        sample(
            &counter,
            "requests_created",
            &[dev, ("code", "200")],
            1.6e9,
            t,
        ),
        sample(&gauge, "temperature_celsius", &[dev], 41.25, t),
    ];
    for (le, v) in [("0.1", 3.0), ("0.5", 7.0), ("+Inf", 9.0)] {
        m.push(sample(
            &hist,
            "rtt_seconds_bucket",
            &[dev, ("le", le)],
            v,
            t,
        ));
    }
    m.push(sample(&hist, "rtt_seconds_sum", &[dev], 1.75, t));
    m.push(sample(&hist, "rtt_seconds_count", &[dev], 9.0, t));
    m.push(sample(
        &ghist,
        "queue_bytes_bucket",
        &[dev, ("le", "+Inf")],
        4.0,
        t,
    ));
    m.push(sample(&ghist, "queue_bytes_gsum", &[dev], 4096.0, t));
    m.push(sample(&ghist, "queue_bytes_gcount", &[dev], 4.0, t));
    m.push(sample(
        &summary,
        "latency_seconds",
        &[dev, ("quantile", "0.99")],
        0.3,
        t,
    ));
    m.push(sample(&summary, "latency_seconds_sum", &[dev], 12.5, t));
    m.push(sample(&summary, "latency_seconds_count", &[dev], 100.0, t));
    m.push(sample(
        &info,
        "build_info",
        &[dev, ("version", "1.2.3")],
        1.0,
        t,
    ));
    m.push(sample(
        &stateset,
        "link_state",
        &[dev, ("link_state", "up")],
        1.0,
        t,
    ));
    m.push(sample(
        &stateset,
        "link_state",
        &[dev, ("link_state", "down")],
        0.0,
        t,
    ));
    m.push(sample(&unknown, "mystery", &[], 7.0, t));
    // Exemplars: with and without a timestamp, on a bucket and a counter.
    m[3].exemplar = Some(Box::new(Exemplar {
        labels: Labels::from_pairs([("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")]),
        value: 0.042,
        timestamp_ms: Some(t - 250),
    }));
    m[0].exemplar = Some(Box::new(Exemplar {
        labels: Labels::from_pairs([("span_id", "00f067aa0ba902b7")]),
        value: 1.0,
        timestamp_ms: None,
    }));
    m
}

#[test]
fn every_metric_type_round_trips_field_by_field() {
    let metrics = every_metric_type();
    let back = metrics_of(round_trip(&Events::Metrics(metrics.clone())));
    // Each series here has one sample, so the order is the batch's.
    assert_eq!(back.len(), metrics.len());
    for (m, d) in metrics.iter().zip(&back) {
        assert_eq!(d.name, m.name);
        assert_eq!(d.labels, m.labels);
        assert_eq!(d.value.to_bits(), m.value.to_bits());
        assert_eq!(d.timestamp_ms, m.timestamp_ms);
        assert_eq!(d.meta.family, m.meta.family);
        assert_eq!(d.meta.kind, m.meta.kind);
        assert_eq!(d.meta.help, m.meta.help);
        assert_eq!(d.meta.unit, m.meta.unit);
        assert_eq!(d.exemplar, m.exemplar);
    }
    // Samples of one family share one `MetricMeta` again.
    assert!(Arc::ptr_eq(&back[3].meta, &back[4].meta));
}

#[test]
fn special_values_round_trip_bit_for_bit() {
    let meta = family("v", MetricType::Gauge, None, None);
    let values = [
        f64::NAN,
        f64::from_bits(0x7ff0_0000_0000_0002), // Prometheus' staleness marker
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        f64::MIN_POSITIVE / 4.0, // subnormal
        f64::MAX,
        f64::MIN,
        1.0,
        1.0,
    ];
    let mut metrics: Vec<Metric> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| sample(&meta, "v", &[], v, i as i64 * 1000))
        .collect();
    metrics[4].exemplar = Some(Box::new(Exemplar {
        labels: Labels::empty(),
        value: f64::NAN,
        timestamp_ms: Some(i64::MIN),
    }));
    let back = metrics_of(round_trip(&Events::Metrics(metrics.clone())));
    assert_eq!(back.iter().map(key).collect::<Vec<_>>(), grouped(&metrics));
}

#[test]
fn negative_out_of_order_and_extreme_timestamps_round_trip() {
    let meta = family("t", MetricType::Counter, None, None);
    let times = [
        5_000,
        1_000,
        -3,
        i64::MIN,
        i64::MAX,
        0,
        0,
        -1_700_000_000_000,
        7,
    ];
    let metrics: Vec<Metric> = times
        .iter()
        .map(|&t| sample(&meta, "t_total", &[("a", "b")], 1.0, t))
        .collect();
    let back = metrics_of(round_trip(&Events::Metrics(metrics.clone())));
    let got: Vec<i64> = back.iter().map(|m| m.timestamp_ms).collect();
    assert_eq!(got, times);
}

#[test]
fn samples_come_back_grouped_by_series_each_in_batch_order() {
    let meta = family("x", MetricType::Gauge, None, None);
    let other_family = family("x", MetricType::Counter, None, None);
    let metrics = vec![
        sample(&meta, "x", &[("s", "a")], 1.0, 10),
        sample(&meta, "x", &[("s", "b")], 2.0, 10),
        sample(&meta, "x", &[("s", "a")], 3.0, 5),
        // Same name and labels, another family: another series.
        sample(&other_family, "x", &[("s", "a")], 4.0, 20),
        sample(&meta, "x", &[("s", "b")], 5.0, 20),
    ];
    let back = metrics_of(round_trip(&Events::Metrics(metrics.clone())));
    let values: Vec<f64> = back.iter().map(|m| m.value).collect();
    assert_eq!(values, [1.0, 3.0, 2.0, 5.0, 4.0]);
    assert_eq!(back[4].meta.kind, MetricType::Counter);
}

#[test]
fn empty_batches_of_every_signal_round_trip() {
    for events in [
        Events::Metrics(vec![]),
        Events::Logs(vec![]),
        Events::Traces(vec![]),
    ] {
        assert_eq!(round_trip(&events), events);
    }
}

pub(super) fn logs() -> Vec<LogRecord> {
    let severities = [
        None,
        Some(Severity::Trace),
        Some(Severity::Debug),
        Some(Severity::Info),
        Some(Severity::Warn),
        Some(Severity::Error),
        Some(Severity::Fatal),
    ];
    let t = 1_700_000_000_123_456_789;
    severities
        .iter()
        .enumerate()
        .map(|(i, &severity)| {
            let mut l = LogRecord::new(
                t + (i as i64 * 7 - 20) * 1_000_003,
                format!("event {}", i % 3),
            );
            l.labels = Labels::from_pairs([
                ("device_id", "d-1"),
                ("stream", if i % 2 == 0 { "app" } else { "kernel" }),
            ]);
            l.severity = severity;
            if i % 2 == 1 {
                l.fields.insert("attempt".into(), json(&i.to_string()));
                l.fields.insert("peer".into(), json(r#""10.0.0.7:443""#));
                l.fields
                    .insert("nested".into(), json(r#"{"a":[1,true,null,"ü"],"b":0.5}"#));
            }
            l
        })
        .collect()
}

#[test]
fn logs_round_trip_in_order_with_every_field() {
    let mut logs = logs();
    logs[0].message = "multi\nline ünïcode \u{1F600}".into();
    logs[1].timestamp_ns = i64::MIN;
    logs[2].timestamp_ns = -1;
    logs[3].labels = Labels::empty();
    let events = Events::Logs(logs);
    assert_eq!(round_trip(&events), events);
}

pub(super) fn spans() -> Vec<Span> {
    let trace_id = *b"\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36";
    let mut root = Span {
        trace_id,
        span_id: [0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
        parent_span_id: None,
        name: "GET /config".into(),
        start_ns: 1_700_000_000_000_000_000,
        end_ns: 1_700_000_000_250_000_000,
        labels: Labels::from_pairs([("service.name", "updater")]),
        attributes: Default::default(),
        status: SpanStatus::Ok,
    };
    root.attributes
        .insert("http.status_code".into(), json("200"));
    let child = Span {
        span_id: [0xff; 8],
        parent_span_id: Some(root.span_id),
        name: "mqtt publish".into(),
        start_ns: root.start_ns + 1_000,
        end_ns: root.start_ns, // ends before it starts: kept as sent
        status: SpanStatus::Error,
        ..root.clone()
    };
    let other = Span {
        trace_id: [0xff; 16],
        span_id: [0; 8],
        parent_span_id: Some([0; 8]),
        status: SpanStatus::Unset,
        start_ns: i64::MIN,
        end_ns: i64::MAX,
        attributes: Default::default(),
        ..root.clone()
    };
    vec![root, child, other]
}

#[test]
fn spans_round_trip_with_whole_ids() {
    let events = Events::Traces(spans());
    let back = round_trip(&events);
    assert_eq!(back, events);
    let Events::Traces(back) = back else {
        unreachable!()
    };
    assert_eq!(back[0].trace_id.len(), 16);
    assert_eq!(back[1].parent_span_id, Some(back[0].span_id));
}

#[test]
fn every_signal_round_trips_with_every_compression_field_by_field() {
    let metrics = every_metric_type();
    let batches = [
        Events::Metrics(metrics.clone()),
        Events::Logs(logs()),
        Events::Traces(spans()),
    ];
    // Not `round_trip`: each compression's result against the original.
    for events in &batches {
        let uncompressed = encode("agent-7", 42, events, Compression::None).unwrap();
        let body_at =
            uncompressed.len() - decode_header(&uncompressed).unwrap().body_bytes as usize;
        for compression in built_in() {
            let what = format!("{:?} with {compression}", events.signal());
            let frame = encode("agent-7", 42, events, compression).unwrap();
            // The decompressed body is the uncompressed frame's, byte for byte.
            let header = decode_header(&frame).unwrap();
            let body =
                decompress(compression, &frame[body_at..], header.body_bytes as usize).unwrap();
            assert_eq!(&body[..], &uncompressed[body_at..], "{what}");
            let batch = decode(&frame, &Limits::default()).unwrap();
            assert_eq!(batch.header.compression, compression, "{what}");
            assert_eq!(batch.header.body_bytes, header.body_bytes, "{what}");
            match (&batch.events, events) {
                // One sample per series: the batch's order.
                (Events::Metrics(back), Events::Metrics(_)) => {
                    assert_eq!(back.len(), metrics.len(), "{what}");
                    for (d, m) in back.iter().zip(&metrics) {
                        assert_eq!(key(d), key(m), "{what}");
                    }
                }
                (back, events) => assert_eq!(back, events, "{what}"),
            }
        }
    }
}

#[test]
fn strings_are_stored_once_per_batch() {
    let meta = family(
        "a_rather_long_metric_family_name",
        MetricType::Gauge,
        Some("A long help text."),
        None,
    );
    let labels = [("a_long_label_name", "a_long_label_value")];
    let one = vec![sample(
        &meta,
        "a_rather_long_metric_family_name",
        &labels,
        1.0,
        0,
    )];
    let many: Vec<Metric> = (0..100)
        .map(|i| {
            sample(
                &meta,
                "a_rather_long_metric_family_name",
                &labels,
                1.0,
                i * 1000,
            )
        })
        .collect();
    let size = |m: &[Metric]| {
        encode("a", 1, &Events::Metrics(m.to_vec()), Compression::None)
            .unwrap()
            .len()
    };
    let text = "a_rather_long_metric_family_name".len();
    // 99 more samples of a steady series: a timestamp byte and a value byte
    // each, and no string again.
    assert!(
        size(&many) - size(&one) <= 99 * 2 + 2,
        "{} vs {}",
        size(&many),
        size(&one)
    );
    assert!(size(&one) < 2 * text + 60);
}

// --- Size against remote write ----------------------------------------

/// A deterministic xorshift, for test data.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The shape of `bench/edge-scrape-remote-write.sh`: 200 gauge families ×
/// 10 series, labels device, zone, job, instance, scraped every second,
/// `scrapes` scrapes in one batch, scrape by scrape. `steady` keeps the
/// bench's constant values and exact cadence; otherwise values random-walk
/// in 0.1 steps and each scrape's timestamp jitters by a few ms.
pub(super) fn device_metrics(scrapes: i64, steady: bool) -> Vec<Metric> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let families: Vec<Arc<MetricMeta>> = (0..200)
        .map(|f| {
            Arc::new(
                MetricMeta::new(format!("bench_sensor_{f}"), MetricType::Gauge)
                    .with_help("A benchmark sensor."),
            )
        })
        .collect();
    let series: Vec<(Arc<MetricMeta>, Labels)> = (0..2000)
        .map(|i| {
            let f = i / 10;
            let labels = Labels::from_pairs([
                ("device", format!("d{}", i % 10)),
                ("zone", format!("z{}", f % 7)),
                ("job", "edge".to_string()),
                ("instance", "127.0.0.1:9100".to_string()),
            ]);
            (families[f].clone(), labels)
        })
        .collect();
    let mut values: Vec<f64> = (0..2000).map(|i| i as f64 + 0.5).collect();
    let mut out = Vec::new();
    for s in 0..scrapes {
        let jitter = if steady {
            0
        } else {
            (rng.next() % 7) as i64 - 3
        };
        let t = 1_700_000_000_000 + s * 1000 + jitter;
        for (i, (meta, labels)) in series.iter().enumerate() {
            if !steady {
                let step = (rng.next() % 3) as f64 - 1.0;
                values[i] = ((values[i] * 10.0 + step).round()) / 10.0;
            }
            out.push(Metric {
                name: meta.family.clone(),
                labels: labels.clone(),
                value: values[i],
                timestamp_ms: t,
                meta: meta.clone(),
                exemplar: None,
            });
        }
    }
    out
}

#[test]
fn native_snappy_is_at_most_a_third_of_remote_write_on_device_metrics() {
    let mut ratios = Vec::new();
    for (steady, what) in [
        (true, "bench shape (steady values)"),
        (false, "random-walk values, jitter"),
    ] {
        for scrapes in [1, 10] {
            let metrics = device_metrics(scrapes, steady);
            let rw = remote_write::encode(&metrics).len();
            let events = Events::Metrics(metrics);
            let native = encode("agent", 1, &events, Compression::Snappy).unwrap();
            let raw = encode("agent", 1, &events, Compression::None)
                .unwrap()
                .len();
            let ratio = rw as f64 / native.len() as f64;
            println!(
                "{what}, {scrapes} scrape(s), {} samples: native {} bytes (uncompressed {raw}), \
                 remote write {rw} bytes: {ratio:.1}x smaller",
                events.len(),
                native.len(),
            );
            assert_eq!(
                decode(&native, &Limits::default()).unwrap().header.records,
                events.len() as u64
            );
            ratios.push((steady, scrapes, ratio));
        }
    }
    // The issue's target, on batches of 10 scrapes (one scrape alone is
    // mostly labels, which remote write's snappy compresses well too).
    for (steady, scrapes, ratio) in ratios {
        if scrapes == 10 {
            assert!(
                ratio >= 3.0,
                "steady={steady}: only {ratio:.2}x smaller than remote write"
            );
        }
    }
}

/// The frame size of the edge batch (10 scrapes of 2,000 series) under
/// every built-in compression, and with zstd at other levels than
/// [`ZSTD_LEVEL`]. Run with `--nocapture` to see them.
#[test]
fn every_compression_shrinks_a_device_metrics_batch() {
    for steady in [true, false] {
        let events = Events::Metrics(device_metrics(10, steady));
        let none = encode("agent", 1, &events, Compression::None).unwrap();
        for compression in built_in() {
            let started = std::time::Instant::now();
            let frame = encode("agent", 1, &events, compression).unwrap();
            let encoded = started.elapsed();
            let started = std::time::Instant::now();
            let batch = decode(&frame, &Limits::default()).unwrap();
            let decoded = started.elapsed();
            println!(
                "steady={steady}, {} samples, {compression}: {} bytes \
                 (encode {encoded:?}, decode {decoded:?})",
                events.len(),
                frame.len(),
            );
            assert_eq!(batch.events.len(), events.len());
            if compression != Compression::None {
                assert!(frame.len() < none.len(), "{compression}");
            }
        }
        #[cfg(feature = "zstd")]
        {
            let body_at = none.len() - decode_header(&none).unwrap().body_bytes as usize;
            let body = &none[body_at..];
            for level in [1, 3, 6, 9, 19] {
                let started = std::time::Instant::now();
                let mut out = vec![0; zstd::zstd_safe::compress_bound(body.len())];
                let n = zstd::zstd_safe::compress(&mut out[..], body, level).unwrap();
                println!(
                    "steady={steady}, zstd level {level}: body {} -> {n} bytes ({:?})",
                    body.len(),
                    started.elapsed()
                );
            }
        }
    }
}

#[test]
fn decimal_and_xor_values_beat_raw_floats_after_snappy() {
    use super::wire::{Decimal, XorValues};
    for steady in [true, false] {
        let metrics = device_metrics(10, steady);
        // The value columns as the encoder lays them out: per series.
        let (mut decimal, mut xor, mut raw) = (Vec::new(), Vec::new(), Vec::new());
        for s in 0..2000 {
            let values = (0..10).map(|scrape| metrics[scrape * 2000 + s].value);
            let digits = Decimal::digits_for(values.clone()).unwrap();
            let mut coder = Decimal::new(digits);
            values.clone().for_each(|v| coder.put(&mut decimal, v));
            let mut coder = XorValues::default();
            values.clone().for_each(|v| coder.put(&mut xor, v));
            values.for_each(|v| raw.extend_from_slice(&v.to_le_bytes()));
        }
        let snappy = |b: &[u8]| snap::raw::Encoder::new().compress_vec(b).unwrap().len();
        println!(
            "values, steady={steady}: decimal {} bytes ({} snappy), xor {} bytes ({} snappy), \
             raw f64 {} bytes ({} snappy)",
            decimal.len(),
            snappy(&decimal),
            xor.len(),
            snappy(&xor),
            raw.len(),
            snappy(&raw)
        );
        assert!(snappy(&decimal) < snappy(&xor));
        assert!(snappy(&xor) < snappy(&raw));
    }
}

#[test]
fn decimal_coding_is_only_used_where_values_come_back_exactly() {
    use super::wire::Decimal;
    let digits = |v: &[f64]| Decimal::digits_for(v.iter().copied());
    assert_eq!(digits(&[1.0, 2.0, 1e15]), Some(0));
    assert_eq!(digits(&[21.5, 21.6, 21.4]), Some(1));
    assert_eq!(digits(&[0.001, -3.25]), Some(3));
    assert_eq!(digits(&[]), Some(0));
    for bad in [
        f64::NAN,
        f64::INFINITY,
        -0.0,
        1e300,
        0.1 + 0.2,
        std::f64::consts::PI,
        1e-7,
    ] {
        assert_eq!(digits(&[1.0, bad]), None, "{bad}");
    }
    // Negative decimals round-trip through the whole codec.
    let meta = family("g", MetricType::Gauge, None, None);
    let metrics: Vec<Metric> = [-40.5, -40.4, 0.0, 125.25, -0.5]
        .iter()
        .enumerate()
        .map(|(i, &v)| sample(&meta, "g", &[], v, i as i64))
        .collect();
    let back = metrics_of(round_trip(&Events::Metrics(metrics.clone())));
    assert_eq!(back.iter().map(key).collect::<Vec<_>>(), grouped(&metrics));
}
