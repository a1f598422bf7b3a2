#![cfg(feature = "otlp")]

//! The sink over OTLP/HTTP against an in-process HTTP peer on a free
//! loopback port that records every request and answers from a script
//! (`sinks::buffered::test_peer`). Bodies are read back with the same
//! OTLP messages. OTLP/gRPC: `tests_grpc.rs`.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::sinks::buffered::Protocol;
use crate::sinks::buffered::test_peer::{Logs, Peer, Running, Seen, eventually, reply};
use iotel_formats::otlp::proto::collector::logs::v1::ExportLogsServiceRequest;
use iotel_formats::otlp::proto::common::v1::{AnyValue, KeyValue, any_value::Value as Av};
use iotel_formats::otlp::{logs, traces};
use iotel_model::Events;
use iotel_model::{Labels, LogRecord, Severity};
use serde_json::json;
use std::io::Read;

// ---------------------------------------------------------------------------
// Config

fn parse(toml_text: &str) -> Config {
    toml::from_str(toml_text).unwrap()
}

fn problems(toml_text: &str) -> Vec<String> {
    parse(toml_text)
        .validate()
        .into_iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect()
}

fn http_endpoints(c: &Config) -> [String; 3] {
    match c.endpoints().unwrap() {
        Endpoints::Http {
            traces,
            metrics,
            logs,
        } => [traces.to_string(), metrics.to_string(), logs.to_string()],
        other => panic!("{other:?}"),
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = parse(r#"endpoint = "http://127.0.0.1:4318""#);
    assert!(c.validate().is_empty());
    assert_eq!(c.sink().unwrap().settings.peer, "http://127.0.0.1:4318/");
    assert_eq!(
        http_endpoints(&c),
        [
            "http://127.0.0.1:4318/v1/traces",
            "http://127.0.0.1:4318/v1/metrics",
            "http://127.0.0.1:4318/v1/logs"
        ]
    );
    assert_eq!(c.protocol, ProtocolName::Http);
    assert_eq!(c.compression, CompressionName::Gzip);
    assert_eq!(c.batch.max_events.get(), 10_000);
    assert_eq!(c.batch.max_bytes.bytes(), 1 << 20);
    assert_eq!(c.batch.timeout, Duration::from_secs(1));
    assert_eq!(c.request_timeout, Duration::from_secs(10));
    assert_eq!(c.retry.initial_backoff, Duration::from_millis(100));
    assert_eq!(c.retry.max_backoff, Duration::from_secs(30));
    assert!(c.headers.0.is_empty());
}

#[test]
fn the_signal_paths_are_appended_to_the_endpoint_unless_a_signal_has_its_own() {
    let c = parse(
        r#"endpoint = "http://collector:4318/otlp/"
logs_endpoint = "http://loki:3100/otlp/v1/logs""#,
    );
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    assert_eq!(
        http_endpoints(&c),
        [
            "http://collector:4318/otlp/v1/traces",
            "http://collector:4318/otlp/v1/metrics",
            "http://loki:3100/otlp/v1/logs"
        ]
    );
    let c = parse(
        r#"endpoint = "http://127.0.0.1:4317"
protocol = "grpc""#,
    );
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    assert_eq!(
        c.endpoints().unwrap(),
        Endpoints::Grpc("http://127.0.0.1:4317".parse().unwrap())
    );
}

#[test]
fn a_grpc_endpoint_takes_no_path_and_no_signal_endpoints() {
    let p = problems(
        r#"endpoint = "http://127.0.0.1:4317/v1"
protocol = "grpc"
traces_endpoint = "http://127.0.0.1:4318/v1/traces"
headers = { "grpc-timeout" = "1S", "x-tenant" = "a" }"#,
    );
    assert_eq!(
        p,
        [
            "endpoint: invalid gRPC endpoint \"http://127.0.0.1:4317/v1\": expected http://host:port, \
             without a path",
            "traces_endpoint: only for protocol = \"http\": gRPC sends every signal to endpoint",
            "headers.grpc-timeout: grpc-timeout cannot be configured here: set request_timeout instead",
        ]
    );
}

#[test]
fn every_mistake_is_reported_at_once() {
    let p = problems(
        r#"endpoint = "ftp://collector:4318/v1/logs"
request_timeout = "0s"
batch = { timeout = "0s" }
headers = { "Content-Type" = "application/json", "Authorization" = "Bearer\nx" }
"#,
    );
    assert_eq!(
        p,
        [
            "endpoint: invalid URL \"ftp://collector:4318/v1/logs\": expected http://host[:port]/path",
            "batch.timeout: expected a duration above 0s, such as \"1s\"",
            "request_timeout: expected a duration above 0s, such as \"10s\"",
            "headers.Authorization: invalid header value: expected visible ASCII characters and spaces",
            "headers.Content-Type: Content-Type is set by the sink itself and cannot be configured",
        ]
    );
    let e =
        toml::from_str::<Config>("endpoint = \"http://h/\"\ncompression = \"zstd\"").unwrap_err();
    assert!(e.to_string().contains("unknown variant `zstd`"), "{e}");
}

#[test]
fn only_the_statuses_the_otlp_spec_names_are_retried() {
    let protocol = parse(r#"endpoint = "http://h/""#).sink().unwrap().protocol;
    for status in [429, 502, 503, 504] {
        assert!(protocol.retryable(status), "{status}");
    }
    for status in [400, 401, 403, 404, 408, 413, 500, 501, 505] {
        assert!(!protocol.retryable(status), "{status}");
    }
}

// ---------------------------------------------------------------------------
// Against a peer

fn start(peer: &Peer, extra: &str) -> Running {
    let config = parse(&format!("endpoint = \"{}\"\n{extra}", peer.url("")));
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    Running::start(Box::new(config.sink().unwrap()), "otel", "otlp")
}

fn log(ts: i64, message: &str) -> LogRecord {
    let mut r = LogRecord::new(ts, message);
    r.labels = Labels::from_pairs([("device_id", "d-1"), ("service.name", "pump")]);
    r
}

fn logs(n: usize) -> Events {
    Events::Logs(
        (0..n)
            .map(|i| log(1 + i as i64, &format!("line {i}")))
            .collect(),
    )
}

/// The request in a body, gunzipped when it says so.
fn request(seen: &Seen) -> ExportLogsServiceRequest {
    let mut raw = Vec::new();
    if seen.header("content-encoding") == Some("gzip") {
        flate2::read::GzDecoder::new(&seen.body[..])
            .read_to_end(&mut raw)
            .unwrap();
    } else {
        raw = seen.body.to_vec();
    }
    logs::decode_request(&raw).unwrap()
}

fn string(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Av::StringValue(v.into())),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_batch_goes_out_gzipped_as_an_export_request_with_every_field() {
    let peer = Peer::start(vec![reply(200)]).await;
    let sink = start(&peer, r#"headers = { Authorization = "Bearer t0ken" }"#);
    let mut r = log(1_700_000_000_123_456_789, "valve stuck");
    r.severity = Some(Severity::Error);
    r.fields = json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "attempt": 3})
        .as_object()
        .unwrap()
        .clone();
    let mut other = LogRecord::new(7, "boot");
    other.labels = Labels::from_pairs([("device_id", "d-2")]);
    other.severity = Some(Severity::Info);
    let before = iotel_model::now_unix_ns() as u64;
    sink.send(Events::Logs(vec![r, other])).await;
    eventually("delivery", || sink.sent() == 2).await;
    let after = iotel_model::now_unix_ns() as u64;
    let metrics = sink.close().await;

    let seen = peer.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.path, "/v1/logs");
    assert_eq!(s.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(s.header("content-encoding"), Some("gzip"));
    assert_eq!(s.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(
        s.header("user-agent"),
        Some(concat!("iotel/", env!("CARGO_PKG_VERSION")))
    );

    let req = request(s);
    assert_eq!(req.resource_logs.len(), 2);
    let rl = &req.resource_logs[0];
    assert_eq!(
        rl.resource.as_ref().unwrap().attributes,
        [
            kv("device_id", string("d-1")),
            kv("service.name", string("pump"))
        ]
    );
    assert_eq!(rl.scope_logs.len(), 1);
    let lr = &rl.scope_logs[0].log_records[0];
    assert_eq!(lr.time_unix_nano, 1_700_000_000_123_456_789);
    assert!(
        (before..=after).contains(&lr.observed_time_unix_nano),
        "observed {} not in {before}..={after}",
        lr.observed_time_unix_nano
    );
    assert_eq!(lr.severity_number, 17);
    assert_eq!(lr.severity_text, "ERROR");
    assert_eq!(lr.body, string("valve stuck"));
    assert_eq!(
        lr.trace_id,
        [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36
        ]
    );
    assert_eq!(lr.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    assert_eq!(
        lr.attributes,
        [kv(
            "attempt",
            Some(AnyValue {
                value: Some(Av::IntValue(3))
            })
        )]
    );
    assert_eq!(lr.flags, 0);

    let rl = &req.resource_logs[1];
    assert_eq!(
        rl.resource.as_ref().unwrap().attributes,
        [kv("device_id", string("d-2"))]
    );
    let lr = &rl.scope_logs[0].log_records[0];
    assert_eq!(lr.time_unix_nano, 7);
    assert_eq!((lr.severity_number, lr.severity_text.as_str()), (9, "INFO"));
    assert_eq!(lr.body, string("boot"));
    assert!(lr.trace_id.is_empty() && lr.span_id.is_empty() && lr.attributes.is_empty());

    assert_eq!(metrics.sent_total(), 2);
    assert_eq!(metrics.discards("rejected").get(), 0);
}

#[tokio::test]
async fn without_compression_the_body_is_plain_protobuf() {
    let peer = Peer::start(vec![]).await;
    let sink = start(&peer, r#"compression = "none""#);
    sink.send(logs(2)).await;
    eventually("delivery", || sink.sent() == 2).await;
    sink.close().await;
    let seen = peer.seen();
    assert_eq!(seen[0].header("content-encoding"), None);
    let records = iotel_formats::otlp::logs::decode(&seen[0].body).unwrap();
    let messages: Vec<&str> = records.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(messages, ["line 0", "line 1"]);
}

#[tokio::test]
async fn a_partial_success_counts_the_rejected_records_and_logs_the_peers_message() {
    let (captured, _guard) = Logs::capture();
    let mut partial = reply(200);
    partial.body = bytes::Bytes::from(logs::encode_response(Some(&logs::PartialSuccess {
        rejected: 2,
        message: "2 log records are older than 7d".into(),
    })));
    let peer = Peer::start(vec![partial]).await;
    let sink = start(&peer, r#"batch = { max_events = 5, timeout = "1h" }"#);
    sink.send(logs(5)).await;
    eventually("the answer", || sink.sent() == 3).await;
    let metrics = sink.close().await;
    assert_eq!(metrics.sent_total(), 3);
    assert_eq!(metrics.discards("rejected").get(), 2);
    assert_eq!(metrics.errors("partial_success").get(), 1);
    assert_eq!(peer.requests(), 1, "a partial success is not retried");
    let warned = captured.lines_with("WARN");
    assert_eq!(warned.len(), 1, "{warned:#?}");
    let want = format!(
        "{} took 3 of 5 events and rejected 2 (counted as discarded, reason \"rejected\"): \
         \"2 log records are older than 7d\"",
        peer.url("/")
    );
    assert!(warned[0].contains(&want), "{}\nwanted: {want}", warned[0]);
}

#[tokio::test]
async fn statuses_429_502_503_504_are_retried_and_a_500_is_not() {
    let peer = Peer::start(vec![
        reply(502),
        reply(503),
        reply(504),
        reply(429),
        reply(200),
        reply(500),
    ])
    .await;
    let sink = start(
        &peer,
        r#"batch = { max_events = 2, timeout = "1h" }
retry = { initial_backoff = "10ms", max_backoff = "20ms" }"#,
    );
    sink.send(logs(2)).await;
    eventually("delivery after four failures", || sink.sent() == 2).await;
    assert_eq!(sink.errors("http_429"), 1);
    sink.send(logs(2)).await;
    eventually("the rejection", || sink.discarded("rejected") == 2).await;
    let metrics = sink.close().await;
    assert_eq!(peer.requests(), 6);
    assert_eq!(metrics.errors("http_5xx").get(), 3 + 1);
    assert_eq!(metrics.errors("http_429").get(), 1);
    assert_eq!(metrics.sent_total(), 2);
    assert_eq!(metrics.discards("rejected").get(), 2);
}

#[tokio::test]
async fn an_invalid_trace_id_goes_as_an_attribute_and_is_counted() {
    let (captured, _guard) = Logs::capture();
    let peer = Peer::start(vec![]).await;
    let sink = start(&peer, r#"compression = "none""#);
    let mut r = log(1, "m");
    r.fields = json!({"trace_id": "not-a-trace-id", "span_id": "00f067aa0ba902b7"})
        .as_object()
        .unwrap()
        .clone();
    sink.send(Events::Logs(vec![r])).await;
    eventually("delivery", || sink.sent() == 1).await;
    let metrics = sink.close().await;
    assert_eq!(metrics.errors("invalid_trace_id").get(), 1);
    assert_eq!(metrics.errors("invalid_span_id").get(), 0);
    let req = request(&peer.seen()[0]);
    let lr = &req.resource_logs[0].scope_logs[0].log_records[0];
    assert!(lr.trace_id.is_empty());
    assert_eq!(lr.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    assert_eq!(lr.attributes, [kv("trace_id", string("not-a-trace-id"))]);
    let warned = captured.lines_with("WARN");
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(
        warned[0].contains(
            "1 record(s) had a trace_id field that is not 32 hex digits (or is all zeros); sent \
             it as an attribute instead (error \"invalid_trace_id\", 1 so far)"
        ),
        "{}",
        warned[0]
    );
}

fn span(i: u8) -> iotel_model::Span {
    iotel_model::Span {
        trace_id: [i + 1; 16],
        span_id: [i + 1; 8],
        parent_span_id: Some([0xaa; 8]),
        name: format!("read sensor {i}"),
        start_ns: 1_700_000_000_000_000_000,
        end_ns: 1_700_000_000_250_000_000,
        labels: Labels::from_pairs([("device_id", "d-1")]),
        attributes: json!({"span.kind": "client", "otel.scope.name": "io.sensor", "bytes": 12})
            .as_object()
            .unwrap()
            .clone(),
        status: iotel_model::SpanStatus::Ok,
    }
}

fn spans(n: u8) -> Events {
    Events::Traces((0..n).map(span).collect())
}

fn gunzip(seen: &Seen) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&seen.body[..])
        .read_to_end(&mut raw)
        .unwrap();
    raw
}

#[tokio::test]
async fn each_signal_goes_to_its_path_in_a_request_of_its_own() {
    let peer = Peer::start(vec![]).await;
    let sink = start(&peer, r#"batch = { max_events = 100, timeout = "50ms" }"#);
    let sample = iotel_model::Metric::new(
        "temperature_celsius",
        iotel_model::MetricType::Gauge,
        Labels::from_pairs([("device_id", "d-1"), ("sensor", "s1")]),
        21.5,
        1_700_000_000_000,
    );
    sink.send(spans(2)).await;
    sink.send(Events::Metrics(vec![sample.clone()])).await;
    sink.send(spans(1)).await;
    eventually("delivery", || sink.sent() == 4).await;
    let metrics = sink.close().await;
    assert_eq!(metrics.sent_total(), 4);
    let seen = peer.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/v1/traces", "/v1/metrics", "/v1/traces"]);
    let t = traces::spans(traces::decode_request(&gunzip(&seen[0])).unwrap());
    assert_eq!(t.spans, [span(0), span(1)]);
    let m = iotel_formats::otlp::metrics::samples(
        iotel_formats::otlp::metrics::decode_request(&gunzip(&seen[1])).unwrap(),
    );
    assert_eq!(m.samples, [sample]);
    let t = traces::spans(traces::decode_request(&gunzip(&seen[2])).unwrap());
    assert_eq!(t.spans, [span(0)]);
}

#[tokio::test]
async fn a_503_with_retry_after_is_retried_after_that_delay_and_delivered_once() {
    let mut busy = reply(503);
    busy.headers = vec![("retry-after", "1")];
    let peer = Peer::start(vec![busy, reply(200)]).await;
    let sink = start(
        &peer,
        r#"batch = { max_events = 3, timeout = "1h" }
retry = { initial_backoff = "10ms", max_backoff = "5s" }"#,
    );
    sink.send(spans(3)).await;
    eventually("delivery", || sink.sent() == 3).await;
    let metrics = sink.close().await;
    let seen = peer.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, seen[1].body, "the retry sends the same body");
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= std::time::Duration::from_secs(1),
        "retried after {waited:?}, before Retry-After"
    );
    assert_eq!(metrics.sent_total(), 3);
    assert_eq!(metrics.errors("http_5xx").get(), 1);
    assert_eq!(metrics.discards("rejected").get(), 0);
}

#[tokio::test]
async fn a_400_is_not_retried_and_its_events_are_counted_as_rejected_with_the_answer_logged() {
    let (captured, _guard) = Logs::capture();
    let mut bad = reply(400);
    bad.body = bytes::Bytes::from_static(b"span name too long");
    let peer = Peer::start(vec![bad]).await;
    let sink = start(&peer, r#"batch = { max_events = 2, timeout = "1h" }"#);
    sink.send(spans(2)).await;
    eventually("the rejection", || sink.discarded("rejected") == 2).await;
    let metrics = sink.close().await;
    assert_eq!(peer.requests(), 1);
    assert_eq!(metrics.sent_total(), 0);
    assert_eq!(metrics.errors("http_4xx").get(), 1);
    let warned = captured.lines_with("WARN");
    assert_eq!(warned.len(), 1, "{warned:#?}");
    let want = format!(
        "{} refused 2 events (HTTP 400: \"span name too long\"); dropped them (counted as \
         discarded, reason \"rejected\"), as sending them again would not help",
        peer.url("/")
    );
    assert!(warned[0].contains(&want), "{}\nwanted: {want}", warned[0]);
}

#[tokio::test]
async fn a_partial_success_of_spans_counts_the_rejected_spans() {
    use iotel_formats::otlp::proto::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    use prost::Message;
    let mut partial = reply(200);
    partial.body = bytes::Bytes::from(
        ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 1,
                error_message: "1 span without a name".into(),
            }),
        }
        .encode_to_vec(),
    );
    let peer = Peer::start(vec![partial]).await;
    let sink = start(&peer, r#"batch = { max_events = 4, timeout = "1h" }"#);
    sink.send(spans(4)).await;
    eventually("the answer", || sink.sent() == 3).await;
    let metrics = sink.close().await;
    assert_eq!(metrics.discards("rejected").get(), 1);
    assert_eq!(metrics.errors("partial_success").get(), 1);
    assert_eq!(peer.requests(), 1);
}
