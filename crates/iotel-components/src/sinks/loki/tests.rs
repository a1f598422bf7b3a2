//! The sink against an in-process HTTP peer on a free loopback port that
//! records every request and answers from a script
//! (`sinks::buffered::test_peer`).

#![allow(clippy::unwrap_used)]

use super::*;
use crate::sinks::buffered::test_peer::{Logs, Peer, Running, eventually, reply};
use iotel_formats::loki::proto;
use iotel_model::{Labels, LogRecord, Severity};
use serde_json::json;

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
    let c = parse(r#"endpoint = "http://127.0.0.1:3100""#);
    assert!(c.validate().is_empty());
    assert_eq!(
        c.sink().unwrap().settings.peer,
        "http://127.0.0.1:3100/loki/api/v1/push"
    );
    assert_eq!(c.encoding, EncodingName::Protobuf);
    assert_eq!(c.tenant_id, None);
    assert_eq!(c.labels, None);
    assert_eq!(c.structured_metadata, ["trace_id", "span_id"]);
    assert_eq!(c.line_format, LineFormatName::Message);
    assert_eq!(c.level, LevelName::Metadata);
    assert_eq!(c.batch.max_events.get(), 10_000);
    assert_eq!(c.batch.max_bytes.bytes(), 1 << 20);
    assert_eq!(c.batch.timeout, Duration::from_secs(1));
    assert!(
        matches!(c.buffer, crate::sinks::buffer::BufferConfig::Memory(ref m) if m.max_events.get() == 20_000)
    );
    assert_eq!(c.request_timeout, Duration::from_secs(10));
    assert_eq!(c.retry.initial_backoff, Duration::from_millis(100));
    assert_eq!(c.retry.max_backoff, Duration::from_secs(30));
    assert!(c.headers.0.is_empty());
    // A path of its own is kept.
    let c = parse(r#"endpoint = "http://gw:8080/tenant/push""#);
    assert_eq!(
        c.sink().unwrap().settings.peer,
        "http://gw:8080/tenant/push"
    );
}

#[test]
fn every_mistake_is_reported_at_once() {
    let p = problems(
        r#"endpoint = "htp://x"
tenant_id = ""
labels = ["job", "", "job"]
structured_metadata = ["trace_id", "trace_id"]
request_timeout = "0s"
batch = { max_events = 50000, max_bytes = "0B", timeout = "0s" }
retry = { initial_backoff = "1s", max_backoff = "500ms" }
headers = { "X-Scope-OrgID" = "t", "Content-Encoding" = "gzip", "bad name" = "x" }
"#,
    );
    assert_eq!(
        p,
        [
            "endpoint: invalid URL \"htp://x\": expected http://host[:port]/path",
            "tenant_id: expected a non-empty tenant id of visible ASCII characters",
            "labels[1]: expected a name",
            "labels[2]: \"job\" is listed twice",
            "structured_metadata[1]: \"trace_id\" is listed twice",
            "batch.max_bytes: expected a size above 0, such as \"1MiB\"",
            "batch.timeout: expected a duration above 0s, such as \"1s\"",
            "request_timeout: expected a duration above 0s, such as \"10s\"",
            "retry.max_backoff: expected at least retry.initial_backoff (1s), got 500ms",
            "buffer.max_events: expected at least batch.max_events (50000), got 20000",
            "headers.Content-Encoding: Content-Encoding is set by the sink itself and cannot be configured",
            "headers.X-Scope-OrgID: X-Scope-OrgID cannot be configured here: set tenant_id instead",
            "headers.bad name: invalid header name",
        ]
    );
}

fn load(sink: &str) -> Result<crate::config::Loaded, Vec<String>> {
    let text = format!(
        r#"
[sources.gen]
type = "generator"
signal = "log"

[sinks.loki]
type = "loki"
inputs = ["gen"]
{sink}
"#
    );
    crate::config::load_for_test(&text, |_| None)
}

#[test]
fn a_config_loads_and_a_bad_key_is_reported_with_file_and_key_path() {
    assert!(load(r#"endpoint = "http://loki:3100""#).is_ok());
    assert_eq!(
        load("endpoint = \"http://loki:3100\"\nlevel = \"label\"\nlabels = [\"\"]").unwrap_err(),
        ["edge.toml: sinks.loki.labels[0]: expected a name"]
    );
}

#[test]
fn unknown_keys_and_values_are_refused() {
    for (text, want) in [
        ("batch = { max_event = 5 }", "unknown field `max_event`"),
        ("encoding = \"snappy\"", "unknown variant `snappy`"),
        ("level = \"stream\"", "unknown variant `stream`"),
        ("line_format = \"logfmt\"", "unknown variant `logfmt`"),
    ] {
        let e = toml::from_str::<Config>(&format!("endpoint = \"http://h/\"\n{text}")).unwrap_err();
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
}

#[test]
fn header_values_stay_out_of_debug_output() {
    let c = parse(
        r#"endpoint = "http://h/"
headers = { Authorization = "Basic aHVudGVyMg==" }"#,
    );
    let shown = format!("{c:?} {:?}", c.sink().unwrap());
    assert!(shown.to_lowercase().contains("authorization"));
    assert!(!shown.contains("aHVudGVyMg"), "{shown}");
}

// ---------------------------------------------------------------------------
// Against a peer

fn start(peer: &Peer, extra: &str) -> Running {
    let config = parse(&format!(
        "endpoint = \"{}\"\n{extra}",
        peer.url("/loki/api/v1/push")
    ));
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    Running::start(Box::new(config.sink().unwrap()), "loki", "loki")
}

fn log(ts: i64, device: &str, message: &str) -> LogRecord {
    let mut r = LogRecord::new(ts, message);
    r.labels = Labels::from_pairs([("device_id", device), ("service.name", "pump")]);
    r
}

/// `n` records of device d-1, numbered from `from`, one second apart.
fn logs(from: i64, n: i64) -> Events {
    Events::Logs(
        (from..from + n)
            .map(|i| {
                log(
                    1_700_000_000_000_000_000 + i * 1_000_000_000,
                    "d-1",
                    &format!("line {i}"),
                )
            })
            .collect(),
    )
}

/// The protobuf request of a body, snappy-decompressed.
fn unpack(body: &[u8]) -> proto::PushRequest {
    iotel_formats::loki::decode_request(body, usize::MAX).unwrap()
}

/// The lines of each request, in order.
fn lines(peer: &Peer) -> Vec<Vec<String>> {
    peer.seen()
        .iter()
        .map(|s| {
            iotel_formats::loki::decode_protobuf(&s.body)
                .unwrap()
                .into_iter()
                .map(|r| r.message)
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn a_batch_goes_out_with_the_push_headers_streams_sorted_entries_and_metadata() {
    let peer = Peer::start(vec![]).await;
    let sink = start(&peer, r#"tenant_id = "fleet-7""#);
    let mut late = log(1_700_000_000_000_000_300, "d-1", "valve closed");
    late.severity = Some(Severity::Warn);
    late.fields = json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "attempt": 2})
        .as_object()
        .unwrap()
        .clone();
    let early = log(1_700_000_000_000_000_100, "d-1", "valve open");
    let other = log(1_700_000_000_000_000_200, "d-2", "boot");
    sink.send(Events::Logs(vec![late, other, early])).await;
    eventually("delivery", || sink.sent() == 3).await;
    let metrics = sink.close().await;

    let seen = peer.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.path, "/loki/api/v1/push");
    assert_eq!(r.header("x-scope-orgid"), Some("fleet-7"));
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(r.header("content-encoding"), Some("snappy"));
    assert_eq!(
        r.header("user-agent"),
        Some(concat!("iotel/", env!("CARGO_PKG_VERSION")))
    );

    let request = unpack(&r.body);
    assert_eq!(request.streams.len(), 2);
    let s = &request.streams[0];
    assert_eq!(s.labels, r#"{device_id="d-1", service_name="pump"}"#);
    assert_eq!(s.hash, 0);
    assert_eq!(s.entries.len(), 2);
    assert_eq!(s.entries[0].line, "valve open");
    assert_eq!(
        s.entries[0].timestamp,
        Some(proto::Timestamp {
            seconds: 1_700_000_000,
            nanos: 100
        })
    );
    assert!(s.entries[0].structured_metadata.is_empty());
    assert_eq!(s.entries[1].line, "valve closed");
    assert_eq!(
        s.entries[1].timestamp,
        Some(proto::Timestamp {
            seconds: 1_700_000_000,
            nanos: 300
        })
    );
    let metadata: Vec<(&str, &str)> = s.entries[1]
        .structured_metadata
        .iter()
        .map(|p| (p.name.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(
        metadata,
        [
            ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ("span_id", "00f067aa0ba902b7"),
            ("level", "warn"),
        ]
    );
    let s = &request.streams[1];
    assert_eq!(s.labels, r#"{device_id="d-2", service_name="pump"}"#);
    assert_eq!(s.entries.len(), 1);
    assert_eq!(s.entries[0].line, "boot");

    assert_eq!(metrics.sent_total(), 3);
    assert_eq!(metrics.discards("rejected").get(), 0);
}

#[tokio::test]
async fn json_goes_out_as_the_push_apis_json_without_content_encoding() {
    let peer = Peer::start(vec![]).await;
    let sink = start(
        &peer,
        r#"encoding = "json"
line_format = "json"
labels = ["service.name"]
structured_metadata = ["device_id"]
level = "label""#,
    );
    let mut r = log(1_700_000_000_000_000_005, "d-9", "disk full");
    r.severity = Some(Severity::Error);
    r.fields = json!({"used": 0.97}).as_object().unwrap().clone();
    sink.send(Events::Logs(vec![r])).await;
    eventually("delivery", || sink.sent() == 1).await;
    sink.close().await;

    let seen = peer.seen();
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(seen[0].header("content-encoding"), None);
    assert_eq!(seen[0].header("x-scope-orgid"), None);
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        body,
        json!({"streams": [{
            "stream": {"service_name": "pump", "level": "error"},
            "values": [["1700000000000000005", r#"{"message":"disk full","used":0.97}"#, {"device_id": "d-9"}]],
        }]})
    );
}

#[tokio::test]
async fn a_500_is_retried_and_the_batch_delivered_once() {
    let peer = Peer::start(vec![reply(500)]).await;
    let sink = start(
        &peer,
        r#"batch = { max_events = 3 }
retry = { initial_backoff = "10ms" }"#,
    );
    sink.send(logs(0, 3)).await;
    eventually("delivery", || sink.sent() == 3).await;
    let metrics = sink.close().await;
    let seen = peer.seen();
    assert_eq!(seen.len(), 2, "one failed attempt, one delivery");
    assert_eq!(
        seen[0].body, seen[1].body,
        "the retry resends the batch as it was"
    );
    assert_eq!(lines(&peer)[1], ["line 0", "line 1", "line 2"]);
    assert_eq!(metrics.sent_total(), 3);
    assert_eq!(metrics.errors("http_5xx").get(), 1);
    assert_eq!(metrics.discards("rejected").get(), 0);
}

#[tokio::test]
async fn a_400_entry_out_of_order_is_logged_counted_not_retried_and_later_batches_go_out() {
    let (captured, _guard) = Logs::capture();
    let mut out_of_order = reply(400);
    out_of_order.body = bytes::Bytes::from_static(
        b"entry with timestamp 2023-11-14 22:13:20 +0000 UTC ignored, reason: 'entry out of order' \
          for stream: {device_id=\"d-1\", service_name=\"pump\"},\ntotal ignored: 2 out of 2",
    );
    let peer = Peer::start(vec![out_of_order]).await;
    let sink = start(&peer, r#"batch = { max_events = 2, timeout = "1h" }"#);
    sink.send(logs(0, 2)).await;
    eventually("the rejection", || sink.discarded("rejected") == 2).await;
    sink.send(logs(2, 2)).await;
    sink.send(logs(4, 2)).await;
    eventually("the next batches", || sink.sent() == 4).await;
    let metrics = sink.close().await;

    assert_eq!(
        lines(&peer),
        [
            ["line 0", "line 1"],
            ["line 2", "line 3"],
            ["line 4", "line 5"]
        ],
        "the refused batch went once; the next ones after it"
    );
    assert_eq!(metrics.sent_total(), 4);
    assert_eq!(metrics.discards("rejected").get(), 2);
    assert_eq!(metrics.errors("http_4xx").get(), 1);
    assert_eq!(metrics.errors("http_5xx").get(), 0);
    let warned = captured.lines_with("WARN");
    assert_eq!(warned.len(), 1, "{warned:#?}");
    let want = format!(
        "{} refused 2 log records (HTTP 400: \"entry with timestamp 2023-11-14 22:13:20 +0000 UTC \
         ignored, reason: 'entry out of order' for stream: {{device_id=\\\"d-1\\\", \
         service_name=\\\"pump\\\"}},\\ntotal ignored: 2 out of 2\"); dropped them (counted as \
         discarded, reason \"rejected\"), as sending them again would not help",
        peer.url("/loki/api/v1/push")
    );
    assert!(warned[0].contains(&want), "{}\nwanted: {want}", warned[0]);
}

#[tokio::test]
async fn a_request_holds_about_max_bytes() {
    let peer = Peer::start(vec![]).await;
    // Each record counts 100 (message) + 36 (labels) + 16 bytes: two fit in
    // 400, three do not.
    let sink = start(&peer, r#"batch = { max_bytes = "400B", timeout = "1h" }"#);
    for i in 0..3 {
        let r = log(i, "d-1", &format!("{i}{}", "x".repeat(99)));
        sink.send(Events::Logs(vec![r])).await;
    }
    // The third does not fit: the first two go at once, the third when
    // the input closes.
    eventually("the first request", || sink.sent() == 2).await;
    let metrics = sink.close().await;
    assert_eq!(metrics.sent_total(), 3);
    let counts: Vec<usize> = lines(&peer).iter().map(Vec::len).collect();
    assert_eq!(counts, [2, 1]);
}

#[tokio::test]
async fn a_partial_batch_leaves_after_the_timeout_with_the_input_open() {
    let peer = Peer::start(vec![]).await;
    let sink = start(&peer, r#"batch = { timeout = "50ms" }"#);
    sink.send(logs(0, 1)).await;
    eventually("delivery", || sink.sent() == 1).await;
    sink.close().await;
    assert_eq!(lines(&peer), [["line 0"]]);
}
