#![cfg(feature = "otlp")]

//! The sink against an in-process HTTP peer on a free loopback port that
//! records every request and answers from a script
//! (`sinks::buffered::test_peer`). Bodies are read back with the same
//! OTLP messages.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::sinks::buffered::Protocol;
use crate::sinks::buffered::test_peer::{Logs, Peer, Running, Seen, eventually, reply};
use iotel_formats::otlp::logs;
use iotel_formats::otlp::proto::collector::logs::v1::ExportLogsServiceRequest;
use iotel_formats::otlp::proto::common::v1::{AnyValue, KeyValue, any_value::Value as Av};
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

#[test]
fn defaults_are_the_documented_ones() {
    let c = parse(r#"endpoint = "http://127.0.0.1:4318""#);
    assert!(c.validate().is_empty());
    assert_eq!(
        c.sink().unwrap().settings.peer,
        "http://127.0.0.1:4318/v1/logs"
    );
    assert_eq!(c.compression, CompressionName::Gzip);
    assert_eq!(c.batch.max_events.get(), 10_000);
    assert_eq!(c.batch.max_bytes.bytes(), 1 << 20);
    assert_eq!(c.batch.timeout, Duration::from_secs(1));
    assert_eq!(c.request_timeout, Duration::from_secs(10));
    assert_eq!(c.retry.initial_backoff, Duration::from_millis(100));
    assert!(c.headers.0.is_empty());
    let c = parse(r#"endpoint = "http://collector:4318/custom/logs""#);
    assert_eq!(
        c.sink().unwrap().settings.peer,
        "http://collector:4318/custom/logs"
    );
}

#[test]
fn every_mistake_is_reported_at_once() {
    let p = problems(
        r#"endpoint = "https://collector:4318/v1/logs"
request_timeout = "0s"
batch = { timeout = "0s" }
headers = { "Content-Type" = "application/json", "Authorization" = "Bearer\nx" }
"#,
    );
    assert_eq!(
        p,
        [
            "endpoint: invalid URL \"https://collector:4318/v1/logs\": https needs TLS support, \
             which this build does not have yet",
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
    let config = parse(&format!("endpoint = \"{}\"\n{extra}", peer.url("/v1/logs")));
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    Running::start(Box::new(config.sink().unwrap()), "otel", "otlp_logs")
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
        "{} took 3 of 5 log records and rejected 2 (counted as discarded, reason \"rejected\"): \
         \"2 log records are older than 7d\"",
        peer.url("/v1/logs")
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
