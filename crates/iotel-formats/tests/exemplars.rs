//! A slow histogram bucket leads to its trace: the exemplar of a bucket
//! sample, scraped as OpenMetrics, keeps its trace and span id through
//! every format iotel moves it in — a native frame (each compression),
//! the OpenMetrics exposition, OTLP metrics and remote write — and the
//! Prometheus text format, which has no exemplars, says nothing wrong.

#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used)]

use iotel_formats::native::{self, Compression, Limits};
use iotel_formats::otlp::metrics as otlp;
use iotel_formats::otlp::proto::metrics::v1::metric::Data;
use iotel_formats::prometheus::Format;
use iotel_formats::prometheus::encode::{EncodeOptions, encode};
use iotel_formats::prometheus::parse::parse_str;
use iotel_formats::remote_write;
use iotel_model::{Events, Metric};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";
const FAST_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// Two buckets with an exemplar each: the fast one and the slow one.
fn scraped() -> Vec<Metric> {
    let text = format!(
        "# TYPE http_request_duration_seconds histogram\n\
         http_request_duration_seconds_bucket{{route=\"/a\",le=\"0.1\"}} 8 # {{trace_id=\"{FAST_TRACE}\"}} 0.043 1700000000.100\n\
         http_request_duration_seconds_bucket{{route=\"/a\",le=\"1.0\"}} 9\n\
         http_request_duration_seconds_bucket{{route=\"/a\",le=\"+Inf\"}} 10 # {{trace_id=\"{TRACE}\",span_id=\"{SPAN}\"}} 2.75 1700000000.250\n\
         http_request_duration_seconds_sum{{route=\"/a\"}} 3.2\n\
         http_request_duration_seconds_count{{route=\"/a\"}} 10\n\
         # EOF\n"
    );
    let (samples, errors) = parse_str(&text, Format::OpenMetrics, 1_700_000_000_000);
    assert_eq!(errors, vec![]);
    assert_eq!(samples.len(), 5);
    samples
}

/// (series, trace id, span id, value, time) of every sample's exemplar.
type Found = Vec<(String, String, Option<String>, f64, Option<i64>)>;

fn exemplars(samples: &[Metric]) -> Found {
    samples
        .iter()
        .filter_map(|m| {
            let e = m.exemplar.as_deref()?;
            Some((
                format!("{}{{le={:?}}}", m.name, m.labels.get("le").unwrap_or("")),
                e.labels.get("trace_id")?.to_string(),
                e.labels.get("span_id").map(str::to_string),
                e.value,
                e.timestamp_ms,
            ))
        })
        .collect()
}

fn want() -> Found {
    let bucket = |le: &str| format!("http_request_duration_seconds_bucket{{le={le:?}}}");
    vec![
        (
            bucket("0.1"),
            FAST_TRACE.into(),
            None,
            0.043,
            Some(1_700_000_000_100),
        ),
        (
            bucket("+Inf"),
            TRACE.into(),
            Some(SPAN.into()),
            2.75,
            Some(1_700_000_000_250),
        ),
    ]
}

#[test]
fn openmetrics_parsing_keeps_bucket_exemplars() {
    assert_eq!(exemplars(&scraped()), want());
}

#[test]
fn native_frames_keep_bucket_exemplars_in_every_compression() {
    let samples = scraped();
    for compression in [
        Compression::None,
        Compression::Snappy,
        Compression::Zstd,
        Compression::Lz4,
    ] {
        let frame =
            native::encode("agent-1", 7, &Events::Metrics(samples.clone()), compression).unwrap();
        let batch = native::decode(&frame, &Limits::default()).unwrap();
        let Events::Metrics(back) = batch.events else {
            panic!("expected metrics")
        };
        assert_eq!(back, samples, "{compression:?}");
    }
}

#[test]
fn the_openmetrics_exposition_writes_bucket_exemplars_and_reads_back() {
    let samples = scraped();
    let mut out = String::new();
    encode(
        &samples,
        Format::OpenMetrics,
        &EncodeOptions::default(),
        &mut out,
    );
    assert!(
        out.contains(&format!(
            "http_request_duration_seconds_bucket{{route=\"/a\",le=\"+Inf\"}} 10 \
             # {{span_id=\"{SPAN}\",trace_id=\"{TRACE}\"}} 2.75 1700000000.250\n"
        )),
        "{out}"
    );
    let (back, errors) = parse_str(&out, Format::OpenMetrics, 1_700_000_000_000);
    assert_eq!(errors, vec![]);
    assert_eq!(exemplars(&back), want());
    // Prometheus text 0.0.4 cannot carry them and leaves them out.
    let mut text = String::new();
    encode(&samples, Format::Text, &EncodeOptions::default(), &mut text);
    assert!(!text.contains(TRACE), "{text}");
}

#[test]
fn otlp_metrics_carry_bucket_exemplars_as_ids_on_the_histogram_point() {
    let samples = scraped();
    let request = otlp::export_request(samples.clone());
    // One histogram (OpenMetrics' `le="1.0"` spelling fits it), whose point
    // holds both exemplars with their ids as bytes.
    let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
    assert_eq!(metrics.len(), 1);
    let Some(Data::Histogram(h)) = &metrics[0].data else {
        panic!("expected a histogram, got {metrics:?}")
    };
    let p = &h.data_points[0];
    assert_eq!(p.explicit_bounds, [0.1, 1.0]);
    assert_eq!(p.bucket_counts, [8, 1, 1]);
    let ids: Vec<(String, String)> = p
        .exemplars
        .iter()
        .map(|e| {
            (
                iotel_formats::otlp::hex(&e.trace_id),
                iotel_formats::otlp::hex(&e.span_id),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            (FAST_TRACE.to_string(), String::new()),
            (TRACE.to_string(), SPAN.to_string())
        ]
    );
    let back = otlp::samples(request);
    assert_eq!(back.rejected.total(), 0);
    assert_eq!(back.dropped_exemplars, 0);
    assert_eq!(exemplars(&back.samples), want());
}

#[test]
fn remote_write_carries_bucket_exemplars_in_their_series() {
    let samples = scraped();
    let body = remote_write::encode(&samples);
    let back = remote_write::decode(&body).unwrap();
    assert_eq!(exemplars(&back), want());
}

#[test]
fn a_trace_id_survives_the_whole_path_from_scrape_to_every_backend() {
    // Agent: scrape → native frame. Gateway: native frame → native frame
    // (zstd). Cloud: → OTLP, remote write and the OpenMetrics exposition.
    let edge = native::encode(
        "agent-1",
        1,
        &Events::Metrics(scraped()),
        Compression::Snappy,
    )
    .unwrap();
    let at_gateway = native::decode(&edge, &Limits::default()).unwrap().events;
    let upstream = native::encode("gw-1", 1, &at_gateway, Compression::Zstd).unwrap();
    let Events::Metrics(at_cloud) = native::decode(&upstream, &Limits::default())
        .unwrap()
        .events
    else {
        panic!("expected metrics")
    };
    let via_otlp = otlp::samples(otlp::export_request(at_cloud.clone())).samples;
    let via_remote_write = remote_write::decode(&remote_write::encode(&via_otlp)).unwrap();
    assert_eq!(exemplars(&via_otlp), want());
    assert_eq!(exemplars(&via_remote_write), want());
    let mut exposition = String::new();
    encode(
        &via_remote_write,
        Format::OpenMetrics,
        &EncodeOptions::default(),
        &mut exposition,
    );
    let (scraped_again, errors) = parse_str(&exposition, Format::OpenMetrics, 0);
    assert_eq!(errors, vec![]);
    assert_eq!(exemplars(&scraped_again), want());
}
