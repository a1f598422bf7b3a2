//! The sink against an in-process HTTP peer on a free loopback port that
//! records every request and answers from a script
//! (`sinks::buffered::test_peer`): these tests are about our handling of
//! the peer's answers. The check against a real Prometheus
//! lives with the binary's tests.

use super::*;
use crate::sinks::buffered::test_peer::{Peer, Running, eventually, reply};
use iotel_engine::Shutdown;
use iotel_model::{Labels, Metric, MetricType};
use std::sync::Arc;
use std::time::Duration as StdDuration;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::Notify;

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
    let c = parse(r#"endpoint = "http://127.0.0.1:9090/api/v1/write""#);
    assert!(c.validate().is_empty());
    assert_eq!(c.batch.max_samples.get(), 500);
    assert_eq!(c.batch.timeout, Duration::from_secs(1));
    assert!(
        matches!(c.buffer, crate::sinks::buffer::BufferConfig::Memory(ref m) if m.max_events.get() == 20_000)
    );
    assert_eq!(c.request_timeout, Duration::from_secs(10));
    assert_eq!(c.retry.initial_backoff, Duration::from_millis(100));
    assert_eq!(c.retry.max_backoff, Duration::from_secs(30));
    assert!(c.headers.0.is_empty());
    // A table given in part keeps the defaults of the rest.
    let c = parse(
        r#"endpoint = "http://h/w"
batch = { max_samples = 500 }"#,
    );
    assert_eq!(c.batch.timeout, Duration::from_secs(1));
}

#[test]
fn a_bad_endpoint_is_reported_with_file_and_key_path() {
    let text = r#"
[sources.gen]
type = "generator"
signal = "metric"

[sinks.prom]
type = "prometheus_remote_write"
inputs = ["gen"]
endpoint = "htp://x"
"#;
    let messages = crate::config::load_for_test(text, |_| None).unwrap_err();
    assert_eq!(
        messages,
        [
            r#"edge.toml: sinks.prom.endpoint: invalid URL "htp://x": expected http://host[:port]/path"#
        ]
    );
}

#[test]
fn endpoints_must_be_plain_http_urls_with_a_host() {
    for bad in ["", "x", "/api/v1/write", "ftp://h/w", "http:///w"] {
        let p = problems(&format!("endpoint = {bad:?}"));
        assert_eq!(
            p,
            [format!(
                "endpoint: invalid URL \"{bad}\": expected http://host[:port]/path"
            )],
            "{bad}"
        );
    }
    #[cfg(feature = "tls")]
    assert_eq!(
        problems(r#"endpoint = "https://mimir/api/v1/push""#),
        Vec::<String>::new()
    );
    #[cfg(not(feature = "tls"))]
    assert_eq!(
        problems(r#"endpoint = "https://mimir/api/v1/push""#),
        [
            "endpoint: invalid URL \"https://mimir/api/v1/push\": https needs TLS support, \
             which this build does not have (the `tls` feature)"
        ]
    );
    let p = problems(r#"endpoint = "http://user:secret@h/w""#);
    assert_eq!(p.len(), 1);
    assert!(
        p[0].contains("credentials in the URL are not supported"),
        "{p:?}"
    );
    assert!(
        !p[0].contains("secret"),
        "the message must not echo the password"
    );
}

#[test]
fn every_other_mistake_is_reported_at_once() {
    let p = problems(
        r#"endpoint = "http://h/w"
request_timeout = "0s"
batch = { max_samples = 5000, timeout = "0s" }
buffer = { type = "memory", max_events = 1000 }
retry = { initial_backoff = "1s", max_backoff = "500ms" }
headers = { "Content-Type" = "text/plain", "bad name" = "x", "X-Ok" = "line\nbreak" }
"#,
    );
    assert_eq!(
        p,
        [
            "batch.timeout: expected a duration above 0s, such as \"1s\"",
            "request_timeout: expected a duration above 0s, such as \"10s\"",
            "retry.max_backoff: expected at least retry.initial_backoff (1s), got 500ms",
            "buffer.max_events: expected at least batch.max_samples (5000), got 1000",
            "headers.Content-Type: Content-Type is set by the sink itself and cannot be configured",
            "headers.X-Ok: invalid header value: expected visible ASCII characters and spaces",
            "headers.bad name: invalid header name",
        ]
    );
}

#[test]
fn unknown_keys_are_refused() {
    let e = toml::from_str::<Config>(
        r#"endpoint = "http://h/w"
batch = { max_sample = 5 }"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown field `max_sample`"), "{e}");
}

#[test]
fn header_values_stay_out_of_debug_output() {
    let c = parse(
        r#"endpoint = "http://h/w"
headers = { Authorization = "Bearer hunter2" }"#,
    );
    let shown = format!("{c:?} {:?}", c.remote_write().unwrap());
    assert!(shown.contains("authorization") || shown.contains("Authorization"));
    assert!(!shown.contains("hunter2"), "{shown}");
}

// ---------------------------------------------------------------------------
// Against a peer

fn endpoint(peer: &Peer) -> String {
    peer.url("/api/v1/write")
}

/// The values each request carried, in order.
fn values(peer: &Peer) -> Vec<Vec<f64>> {
    peer.seen()
        .iter()
        .map(|s| {
            remote_write::decode(&s.body)
                .unwrap()
                .iter()
                .map(|m| m.value)
                .collect()
        })
        .collect()
}

/// An address where nothing listens.
async fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/api/v1/write")
}

fn start(endpoint: &str, extra: &str) -> Running {
    start_with(endpoint, extra, Shutdown::never())
}

fn start_with(endpoint: &str, extra: &str, shutdown: Shutdown) -> Running {
    let config = parse(&format!("endpoint = \"{endpoint}\"\n{extra}"));
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let sink = Box::new(config.remote_write().unwrap());
    Running::start_with(sink, "prom", "prometheus_remote_write", shutdown)
}

/// Samples of one series, valued and timed by `values`.
fn samples(values: std::ops::Range<u32>) -> Events {
    Events::Metrics(
        values
            .map(|v| {
                Metric::new(
                    "room_temperature_celsius",
                    MetricType::Gauge,
                    Labels::from_pairs([("device_id", "d-1")]),
                    f64::from(v),
                    1_700_000_000_000 + i64::from(v),
                )
            })
            .collect(),
    )
}

fn series(values: std::ops::Range<u32>) -> Vec<f64> {
    values.map(f64::from).collect()
}

#[tokio::test]
async fn a_batch_goes_out_with_the_protocol_headers_and_is_acknowledged_on_2xx() {
    let peer = Peer::start(vec![reply(200)]).await;
    let sink = start(
        &endpoint(&peer),
        r#"batch = { max_samples = 3 }
headers = { "X-Scope-OrgID" = "tenant-7" }"#,
    );
    sink.send(samples(0..3)).await;
    eventually("the batch to be acknowledged", || sink.sent() == 3).await;
    let metrics = sink.close().await;

    let seen = peer.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.path, "/api/v1/write");
    let header = |name: &str| r.header(name);
    assert_eq!(header("content-encoding"), Some("snappy"));
    assert_eq!(header("content-type"), Some("application/x-protobuf"));
    assert_eq!(header("x-prometheus-remote-write-version"), Some("0.1.0"));
    assert_eq!(
        header("user-agent"),
        Some(concat!("iotel/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(header("x-scope-orgid"), Some("tenant-7"));

    let samples = remote_write::decode(&r.body).unwrap();
    assert_eq!(samples.len(), 3);
    for (i, m) in samples.iter().enumerate() {
        assert_eq!(&*m.name, "room_temperature_celsius");
        assert_eq!(m.labels, Labels::from_pairs([("device_id", "d-1")]));
        assert_eq!(m.value, i as f64);
        assert_eq!(m.timestamp_ms, 1_700_000_000_000 + i as i64);
        assert_eq!(m.meta.kind, MetricType::Gauge);
    }
    assert_eq!(metrics.sent_total(), 3);
    for reason in ["rejected", "drop_oldest", "shutdown"] {
        assert_eq!(metrics.discards(reason).get(), 0, "{reason}");
    }
}

#[tokio::test]
async fn batches_hold_at_most_max_samples_and_a_partial_one_leaves_after_the_timeout() {
    let peer = Peer::start(vec![]).await;
    let sink = start(
        &endpoint(&peer),
        r#"batch = { max_samples = 2, timeout = "50ms" }"#,
    );
    sink.send(samples(0..5)).await;
    // The fifth sample goes out alone once it has waited 50ms, input open.
    eventually("three requests", || peer.requests() == 3).await;
    eventually("all acknowledged", || sink.sent() == 5).await;
    sink.close().await;
    assert_eq!(values(&peer), [series(0..2), series(2..4), series(4..5)]);
}

#[tokio::test]
async fn a_500_is_retried_with_the_same_batch_until_it_is_delivered() {
    let peer = Peer::start(vec![reply(500), reply(503)]).await;
    let sink = start(
        &endpoint(&peer),
        r#"batch = { max_samples = 4 }
retry = { initial_backoff = "10ms" }"#,
    );
    sink.send(samples(0..4)).await;
    eventually("delivery", || sink.sent() == 4).await;
    assert_eq!(sink.errors("http_5xx"), 2);
    let metrics = sink.close().await;
    assert_eq!(peer.requests(), 3);
    let seen = peer.seen();
    assert!(
        seen.iter().all(|s| s.body == seen[0].body),
        "retries resend the batch as it was"
    );
    assert_eq!(metrics.sent_total(), 4);
    assert_eq!(metrics.discards("rejected").get(), 0);
}

#[tokio::test]
async fn a_429_is_retried_after_the_retry_after_it_names() {
    let mut too_many = reply(429);
    too_many.headers = vec![("retry-after", "1")];
    let peer = Peer::start(vec![too_many]).await;
    let sink = start(
        &endpoint(&peer),
        r#"batch = { max_samples = 2 }
retry = { initial_backoff = "10ms" }"#,
    );
    sink.send(samples(0..2)).await;
    eventually("delivery", || sink.sent() == 2).await;
    assert_eq!(sink.errors("http_429"), 1);
    sink.close().await;
    let seen = peer.seen();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at.duration_since(seen[0].at);
    // The backoff alone would have been 5–10ms.
    assert!(
        waited >= StdDuration::from_secs(1),
        "retried after {waited:?}"
    );
}

#[tokio::test]
async fn a_400_drops_the_batch_without_retrying_and_the_next_one_goes_out() {
    let mut bad = reply(400);
    bad.body = Bytes::from_static(b"out of order sample");
    let peer = Peer::start(vec![bad]).await;
    let sink = start(&endpoint(&peer), r#"batch = { max_samples = 2 }"#);
    sink.send(samples(0..2)).await;
    eventually("the rejection", || sink.discarded("rejected") == 2).await;
    sink.send(samples(2..4)).await;
    eventually("the next batch", || sink.sent() == 2).await;
    assert_eq!(sink.errors("http_4xx"), 1);
    let metrics = sink.close().await;
    assert_eq!(values(&peer), [series(0..2), series(2..4)]);
    assert_eq!(metrics.sent_total(), 2);
    assert_eq!(metrics.discards("rejected").get(), 2);
}

#[tokio::test]
async fn a_request_that_times_out_is_retried() {
    let mut slow = reply(204);
    slow.delay = StdDuration::from_secs(5);
    let peer = Peer::start(vec![slow]).await;
    let sink = start(
        &endpoint(&peer),
        r#"batch = { max_samples = 1 }
request_timeout = "200ms"
retry = { initial_backoff = "10ms" }"#,
    );
    sink.send(samples(0..1)).await;
    eventually("delivery", || sink.sent() == 1).await;
    assert_eq!(sink.errors("request_timeout"), 1);
    sink.close().await;
    assert_eq!(peer.requests(), 2);
}

#[tokio::test]
async fn while_the_peer_stalls_input_is_buffered_and_the_oldest_dropped_when_full() {
    let gate = Arc::new(Notify::new());
    let mut stalled = reply(503);
    stalled.gate = Some(gate.clone());
    let peer = Peer::start(vec![stalled]).await;
    let sink = start(
        &endpoint(&peer),
        r#"batch = { max_samples = 2, timeout = "1h" }
buffer = { type = "memory", max_events = 4 }
retry = { initial_backoff = "10ms" }"#,
    );
    sink.send(samples(0..2)).await; // sent at once and held by the peer
    eventually("the first request", || peer.requests() == 1).await;
    // 2..8 in three batches: room for one behind the batch in flight, so
    // each new one pushes out the one before.
    sink.send(samples(2..4)).await;
    sink.send(samples(4..6)).await;
    sink.send(samples(6..8)).await;
    eventually("the drops", || sink.discarded("drop_oldest") == 4).await;
    gate.notify_one(); // 503, then the retry and the rest go through
    eventually("delivery", || sink.sent() == 4).await;
    let metrics = sink.close().await;
    assert_eq!(values(&peer), [series(0..2), series(0..2), series(6..8)]);
    assert_eq!(metrics.errors("http_5xx").get(), 1);
    assert_eq!(metrics.discards("drop_oldest").get(), 4);
    assert_eq!(metrics.discards("shutdown").get(), 0);
}

#[tokio::test]
async fn requests_read_while_one_is_retried_go_out_after_it_in_order() {
    let gate = Arc::new(Notify::new());
    let mut stalled = reply(503);
    stalled.gate = Some(gate.clone());
    let peer = Peer::start(vec![stalled]).await;
    let sink = start(
        &endpoint(&peer),
        r#"batch = { max_samples = 2, timeout = "1h" }
retry = { initial_backoff = "10ms" }"#,
    );
    sink.send(samples(0..2)).await;
    eventually("the first request", || peer.requests() == 1).await;
    // Read (and the first of them encoded) while the first waits for its
    // answer, which is a failure: the first goes again before them.
    sink.send(samples(2..4)).await;
    sink.send(samples(4..6)).await;
    sink.send(samples(6..7)).await;
    gate.notify_one();
    // The last sample waits for the batch timeout, or the close.
    eventually("delivery", || sink.sent() == 6).await;
    let metrics = sink.close().await;
    assert_eq!(
        values(&peer),
        [
            series(0..2),
            series(0..2),
            series(2..4),
            series(4..6),
            series(6..7)
        ]
    );
    assert_eq!(metrics.errors("http_5xx").get(), 1);
    assert_eq!(metrics.sent_total(), 7);
}

#[tokio::test]
async fn closing_the_input_flushes_without_waiting_for_the_batch_timeout() {
    let peer = Peer::start(vec![]).await;
    let sink = start(&endpoint(&peer), r#"batch = { timeout = "1h" }"#);
    sink.send(samples(0..3)).await;
    let metrics = sink.close().await;
    assert_eq!(values(&peer), [series(0..3)]);
    assert_eq!(metrics.sent_total(), 3);
}

#[tokio::test]
async fn the_final_flush_ends_before_the_nodes_shutdown_deadline_and_counts_the_rest() {
    let endpoint = dead_endpoint().await;
    let (trigger, shutdown) = iotel_engine::shutdown::channel();
    let sink = start_with(
        &endpoint,
        r#"batch = { max_samples = 2, timeout = "1h" }
request_timeout = "10s"
retry = { initial_backoff = "10ms", max_backoff = "20ms" }"#,
        shutdown,
    );
    sink.send(samples(0..5)).await;
    // The node gives the pipeline 1.5s; the sink's own flush would take 30s.
    let started = Instant::now();
    trigger.trigger_with_deadline(started + StdDuration::from_millis(1500));
    let metrics = sink.close().await;
    let took = started.elapsed();
    assert!(
        took < StdDuration::from_millis(1500),
        "the flush ran past the node's deadline: {took:?}"
    );
    assert_eq!(metrics.sent_total(), 0);
    assert_eq!(metrics.discards("shutdown").get(), 5);
}

#[tokio::test]
async fn what_the_final_flush_cannot_deliver_is_counted_as_shutdown_drops() {
    let endpoint = dead_endpoint().await;
    let sink = start(
        &endpoint,
        r#"batch = { max_samples = 2, timeout = "1h" }
request_timeout = "100ms"
retry = { initial_backoff = "10ms", max_backoff = "20ms" }"#,
    );
    sink.send(samples(0..5)).await;
    let started = Instant::now();
    let metrics = sink.close().await;
    // The flush gives up 3 × request_timeout after the input closed.
    assert!(started.elapsed() < StdDuration::from_secs(5));
    assert_eq!(metrics.sent_total(), 0);
    assert_eq!(metrics.discards("shutdown").get(), 5);
    assert!(metrics.errors("connection_failed").get() >= 1);
}
