#![allow(clippy::unwrap_used)]

use super::publish::Envelope;
use super::*;
use crate::nats_server::NatsServer;
use bytes::BytesMut;
use iotel_engine::shutdown::{self, ShutdownTrigger};
use iotel_engine::{Batch, ComponentError, ComponentKey, ComponentMetrics, Input, SinkContext};
use iotel_formats::native::{self, Limits};
use iotel_model::{Events, Labels, Metric, MetricType};
use proptest::prelude::*;
use std::path::Path;
use tokio::sync::mpsc;

fn config(toml_text: &str) -> Config {
    toml::from_str(toml_text).unwrap()
}

fn problems(toml_text: &str) -> Vec<(String, String)> {
    config(toml_text)
        .validate()
        .into_iter()
        .map(|p| (p.key, p.message))
        .collect()
}

#[test]
fn defaults_are_a_local_server_the_iotel_stream_and_16_shards() {
    let c = config("");
    assert_eq!(c.url, "nats://127.0.0.1:4222");
    assert_eq!(c.stream, "IOTEL");
    assert!(c.create_stream);
    assert_eq!(c.max_age.get(), std::time::Duration::from_secs(86_400));
    assert_eq!(c.max_bytes, None);
    assert_eq!(c.replicas.get(), 1);
    assert_eq!(
        c.duplicate_window.get(),
        std::time::Duration::from_secs(120)
    );
    assert_eq!(c.shards.get(), 16);
    assert_eq!(c.tenant_label, "tenant");
    assert_eq!(c.publisher_id, None);
    assert_eq!(c.batch.max_events.get(), 10_000);
    assert!(c.validate().is_empty());
}

#[test]
fn every_config_problem_is_reported_with_its_key() {
    assert_eq!(
        problems(
            r#"
url = "http://broker:4222"
stream = "a.b"
tenant_label = ""
publisher_id = ""
shards = 70000
replicas = 7
duplicate_window = "2h"
max_age = "1h"
max_bytes = 0
request_timeout = "0s"
"#
        ),
        vec![
            (
                "url".into(),
                "expected nats://host[:port] or tls://host[:port], got \"http://broker:4222\""
                    .into()
            ),
            (
                "stream".into(),
                "\"a.b\": a stream name cannot contain '.'".into()
            ),
            (
                "tenant_label".into(),
                "expected a label name such as \"tenant\"".into()
            ),
            ("publisher_id".into(), "expected a non-empty name".into()),
            ("shards".into(), "expected 1 to 65536, got 70000".into()),
            (
                "replicas".into(),
                "expected 1 to 5 (JetStream's limit), got 7".into()
            ),
            (
                "duplicate_window".into(),
                "expected at most max_age (1h), got 2h".into()
            ),
            (
                "max_bytes".into(),
                "expected a size above 0 (leave it out for no limit)".into()
            ),
            (
                "request_timeout".into(),
                "expected a duration above 0s".into()
            ),
        ]
    );
    assert!(problems("url = \"nats://a:4222, tls://b:4443\"").is_empty());
    assert_eq!(
        problems("url = \"\""),
        vec![(
            "url".into(),
            "expected a server such as \"nats://127.0.0.1:4222\"".into()
        )]
    );
}

#[test]
fn the_shard_hash_is_fnv1a_and_stable() {
    // FNV-1a 64 of "" is its offset basis; of "a\0" and "\0a" these
    // values: the layout of data in streams depends on them not changing.
    assert_eq!(
        shard("", "", u32::MAX),
        (0xaf63_bd4c_8601_b7df_u64 % u64::from(u32::MAX)) as u32
    );
    let spread: std::collections::BTreeSet<u32> = (0..1000)
        .map(|i| shard("acme", &format!("dev-{i}"), 16))
        .collect();
    assert_eq!(spread.len(), 16, "1000 devices cover every shard");
    assert_eq!(shard("acme", "dev-1", 16), shard("acme", "dev-1", 16));
    assert_ne!(
        (0..64)
            .map(|i| shard("a", &format!("{i}"), 16))
            .collect::<Vec<_>>(),
        (0..64)
            .map(|i| shard("b", &format!("{i}"), 16))
            .collect::<Vec<_>>(),
        "the tenant is part of the hash"
    );
    assert_eq!(shard("acme", "dev-1", 1), 0);
}

#[test]
fn tenants_become_subject_tokens() {
    assert_eq!(subject_token("acme"), "acme");
    assert_eq!(subject_token(""), "default");
    assert_eq!(subject_token("a.b *>c\td"), "a_b___c_d");
}

proptest! {
    #[test]
    fn any_tenant_and_device_make_a_valid_subject_on_a_shard_in_range(
        tenant in any::<String>(),
        device in any::<String>(),
        shards in 1u32..=65_536,
    ) {
        let n = shard(&tenant, &device, shards);
        prop_assert!(n < shards);
        let subject = format!("iotel.{}.metrics.{n}", subject_token(&tenant));
        prop_assert_eq!(
            crate::sources::nats_jetstream::check_subject(&subject, false),
            Ok(())
        );
        prop_assert!(crate::sources::nats_jetstream::subject_matches("iotel.*.*.*", &subject));
    }

    #[test]
    fn envelopes_read_back_as_written(
        messages in proptest::collection::vec(
            ("[a-z.]{1,40}", "[ -~]{0,80}", proptest::collection::vec(any::<u8>(), 0..300)),
            0..8,
        )
    ) {
        let messages: Vec<Envelope> = messages
            .into_iter()
            .map(|(subject, id, payload)| Envelope { subject, id, payload: payload.into() })
            .collect();
        let mut out = BytesMut::new();
        for m in &messages {
            m.write_for_test(&mut out);
        }
        let body = out.freeze();
        prop_assert_eq!(Envelope::read_all(body.clone()).unwrap(), messages);
        // Cut anywhere inside, it is refused, never misread.
        if !body.is_empty() {
            let cut = body.len() - 1;
            prop_assert!(Envelope::read_all(body.slice(..cut)).is_err());
        }
    }
}

// ---- Against a real nats-server ----

/// A running sink fed through a channel.
struct Running {
    tx: Option<mpsc::Sender<Batch>>,
    metrics: ComponentMetrics,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), ComponentError>>,
}

fn run_sink(url: &str, data_dir: &Path, extra: &str) -> Running {
    let cfg = config(&format!(
        "url = \"{url}\"\npublisher_id = \"node-1\"\nbatch = {{ max_events = 1000, timeout = \
         \"20ms\" }}\nrequest_timeout = \"2s\"\nretry = {{ initial_backoff = \"20ms\", \
         max_backoff = \"200ms\" }}\n{extra}"
    ));
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    let sink = cfg.build(&crate::BuildContext::for_test("stream")).unwrap();
    let (tx, rx) = mpsc::channel(64);
    let metrics = ComponentMetrics::detached("stream", "nats_jetstream");
    let (trigger, shutdown) = shutdown::channel();
    let cx = SinkContext {
        key: ComponentKey {
            id: "stream".into(),
            type_name: "nats_jetstream".into(),
        },
        input: Input::new(rx, metrics.clone()),
        shutdown,
        metrics: metrics.clone(),
        data_dir: data_dir.to_path_buf(),
    };
    Running {
        tx: Some(tx),
        metrics,
        trigger,
        task: tokio::spawn(sink.run(cx)),
    }
}

impl Running {
    async fn send(&self, events: Events) {
        self.tx.as_ref().unwrap().send(events.into()).await.unwrap();
    }

    async fn stop(mut self) -> ComponentMetrics {
        self.tx.take();
        self.task.await.unwrap().unwrap();
        self.metrics
    }

    fn counter(&self, name: &str) -> u64 {
        counter(&self.metrics, name)
    }
}

pub(crate) fn counter(m: &ComponentMetrics, name: &str) -> u64 {
    m.registry()
        .counter(name, "", &[("component_id", m.id())])
        .get()
}

/// `n` samples `value = i` of devices `dev-<i % devices>` of `tenant`.
pub(crate) fn samples(tenant: Option<&str>, range: std::ops::Range<u32>, devices: u32) -> Events {
    Events::Metrics(
        range
            .map(|i| {
                let device = format!("dev-{}", i % devices);
                let labels = match tenant {
                    Some(t) => Labels::from_pairs([("device_id", device.as_str()), ("tenant", t)]),
                    None => Labels::from_pairs([("device_id", device.as_str())]),
                };
                Metric::new(
                    "reading",
                    MetricType::Gauge,
                    labels,
                    f64::from(i),
                    1_700_000_000_000,
                )
            })
            .collect(),
    )
}

pub(crate) async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Every message in the stream, as (subject, Nats-Msg-Id, decoded frame).
pub(crate) async fn stream_contents(
    url: &str,
    stream: &str,
) -> Vec<(String, String, native::Batch)> {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut s = js.get_stream(stream).await.unwrap();
    let last = s.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let Ok(m) = s.get_raw_message(seq).await else {
            continue;
        };
        let id = m
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        let batch = native::decode(&m.payload, &Limits::default()).unwrap();
        out.push((m.subject.to_string(), id, batch));
    }
    out
}

/// The values of every sample in `contents`, sorted.
pub(crate) fn values(contents: &[(String, String, native::Batch)]) -> Vec<u32> {
    let mut v: Vec<u32> = contents
        .iter()
        .flat_map(|(_, _, b)| match &b.events {
            Events::Metrics(m) => m.iter().map(|m| m.value as u32).collect::<Vec<_>>(),
            _ => vec![],
        })
        .collect();
    v.sort_unstable();
    v
}

#[tokio::test]
async fn batches_are_published_per_tenant_signal_and_shard_with_acks() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let sink = run_sink(&server.url(), dir.path(), "shards = 4");
    sink.send(samples(Some("acme"), 0..40, 8)).await;
    sink.send(samples(None, 40..50, 2)).await;
    wait_until("every sample was published", || {
        sink.metrics.sent_total() == 50
    })
    .await;
    let m = sink.stop().await;

    let contents = stream_contents(&server.url(), "IOTEL").await;
    assert_eq!(values(&contents), (0..50).collect::<Vec<_>>());
    for (subject, id, batch) in &contents {
        let Events::Metrics(samples) = &batch.events else {
            panic!("{subject}: not metrics")
        };
        assert_eq!(batch.header.compression, native::Compression::Lz4);
        assert_eq!(batch.header.agent_id, "node-1");
        for s in samples {
            let tenant = s.labels.get("tenant").unwrap_or("default");
            let device = s.labels.get("device_id").unwrap();
            assert_eq!(
                *subject,
                format!("iotel.{tenant}.metrics.{}", shard(tenant, device, 4)),
                "sample {}",
                s.value
            );
        }
        // node-1:<first>-<last>:<subject>:<part>
        assert!(
            id.starts_with("node-1:") && id.ends_with(&format!(":{subject}:0")),
            "{id}"
        );
    }
    let subjects: std::collections::BTreeSet<&str> =
        contents.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(
        subjects.len(),
        contents.len(),
        "one message per subject and request"
    );
    assert_eq!(
        counter(&m, "iotel_nats_published_messages_total"),
        contents.len() as u64
    );
    assert_eq!(
        counter(&m, "iotel_nats_published_bytes_total"),
        contents
            .iter()
            .map(|(_, _, b)| native::encode(
                &b.header.agent_id,
                b.header.sequence,
                &b.events,
                native::Compression::Lz4
            )
            .unwrap()
            .len() as u64)
            .sum::<u64>()
    );
    assert_eq!(counter(&m, "iotel_nats_duplicate_messages_total"), 0);
}

#[tokio::test]
async fn a_server_down_at_start_holds_the_data_until_it_is_up() {
    let mut server = NatsServer::start();
    server.kill();
    let dir = tempfile::tempdir().unwrap();
    let sink = run_sink(
        &server.url(),
        dir.path(),
        "buffer = { type = \"disk\", when_full = \"block\" }",
    );
    sink.send(samples(Some("acme"), 0..100, 10)).await;
    wait_until("a failed attempt was counted", || {
        sink.metrics.errors("disconnected").get() >= 2
    })
    .await;
    assert_eq!(sink.metrics.sent_total(), 0);
    server.restart();
    wait_until("every sample was published", || {
        sink.metrics.sent_total() == 100
    })
    .await;
    let m = sink.stop().await;
    let contents = stream_contents(&server.url(), "IOTEL").await;
    assert_eq!(values(&contents), (0..100).collect::<Vec<_>>());
    assert_eq!(m.discards("rejected").get(), 0);
}

#[tokio::test]
async fn a_server_lost_mid_stream_loses_nothing_and_duplicates_nothing() {
    let mut server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let sink = run_sink(
        &server.url(),
        dir.path(),
        "buffer = { type = \"disk\", when_full = \"block\" }",
    );
    sink.send(samples(Some("acme"), 0..50, 5)).await;
    wait_until("the first samples were published", || {
        sink.metrics.sent_total() == 50
    })
    .await;
    server.kill();
    sink.send(samples(Some("acme"), 50..120, 5)).await;
    wait_until("failed attempts were counted", || {
        let m = &sink.metrics;
        m.errors("disconnected").get()
            + m.errors("publish_timeout").get()
            + m.errors("publish_failed").get()
            + m.errors("request_timeout").get()
            >= 2
    })
    .await;
    assert_eq!(sink.metrics.sent_total(), 50);
    server.restart();
    wait_until("every sample was published", || {
        sink.metrics.sent_total() == 120
    })
    .await;
    let m = sink.stop().await;
    let contents = stream_contents(&server.url(), "IOTEL").await;
    assert_eq!(values(&contents), (0..120).collect::<Vec<_>>());
    assert_eq!(m.discards("rejected").get(), 0);
}

#[tokio::test]
async fn a_stream_that_does_not_take_the_subjects_is_an_error_and_the_data_waits() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "IOTEL".into(),
        subjects: vec!["other.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = run_sink(&server.url(), dir.path(), "");
    sink.send(samples(Some("acme"), 0..10, 2)).await;
    wait_until("the mismatch was counted", || {
        sink.metrics.errors("stream_mismatch").get() >= 2
    })
    .await;
    assert_eq!(sink.metrics.sent_total(), 0);
    // Fixed by an operator: the data goes out.
    js.update_stream(async_nats::jetstream::stream::Config {
        name: "IOTEL".into(),
        subjects: vec!["other.>".into(), "iotel.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    wait_until("every sample was published", || {
        sink.metrics.sent_total() == 10
    })
    .await;
    sink.stop().await;
}

#[tokio::test]
async fn without_create_stream_a_missing_stream_is_an_error_and_the_data_waits() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let sink = run_sink(&server.url(), dir.path(), "create_stream = false");
    sink.send(samples(Some("acme"), 0..10, 2)).await;
    wait_until("the missing stream was counted", || {
        sink.metrics.errors("stream_not_found").get() >= 2
    })
    .await;
    assert_eq!(sink.metrics.sent_total(), 0);
    assert_eq!(sink.counter("iotel_nats_published_messages_total"), 0);
    let m = sink.stop_now().await;
    assert_eq!(m.discards("rejected").get(), 0);
}

impl Running {
    /// Stops a sink that cannot deliver: the node's shutdown fires with a
    /// short deadline.
    async fn stop_now(mut self) -> ComponentMetrics {
        self.tx.take();
        self.trigger.trigger_with_deadline(
            std::time::Instant::now() + std::time::Duration::from_millis(600),
        );
        self.task.await.unwrap().unwrap();
        self.metrics
    }
}
