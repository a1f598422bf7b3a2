#![allow(clippy::unwrap_used)]

use super::consume::{DEAD_LETTER_REASON, DELIVERIES, ORIGINAL_SUBJECT};
use super::*;
use crate::nats_server::NatsServer;
use async_nats::jetstream;
use iotel_engine::shutdown::{self, ShutdownTrigger};
use iotel_engine::{
    Batch, ComponentError, ComponentKey, ComponentMetrics, Output, SourceContext, TestReceiver,
};
use iotel_formats::native::{self, Compression};
use iotel_model::{Events, Labels, Metric, MetricType};
use std::time::Duration as StdDuration;

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
fn defaults_are_one_shared_durable_on_the_iotel_subjects_without_dead_letters() {
    let c = config("");
    assert_eq!(c.url, "nats://127.0.0.1:4222");
    assert_eq!(c.stream, "IOTEL");
    assert_eq!(c.durable, "iotel-workers");
    assert_eq!(c.filter_subjects, vec!["iotel.*.*.*"]);
    assert_eq!(c.batch.get(), 64);
    assert_eq!(c.max_wait.get(), StdDuration::from_secs(1));
    assert_eq!(c.ack_wait.get(), StdDuration::from_secs(30));
    assert_eq!(c.max_ack_pending.get(), 1000);
    assert_eq!(c.max_deliver.get(), 5);
    assert_eq!(c.nak_delay.get(), StdDuration::from_secs(1));
    assert_eq!(c.dead_letter_subject, "iotel.dead.{subject}");
    assert_eq!(
        c.dead_letter_for("iotel.acme.logs.3"),
        "iotel.dead.iotel.acme.logs.3"
    );
    assert_eq!(c.dedup_window.get(), 100_000);
    assert!(c.validate().is_empty());
}

#[test]
fn every_config_problem_is_reported_with_its_key() {
    assert_eq!(
        problems(
            r#"
url = "nats//x"
durable = "a b"
filter_subjects = ["iotel.>", "a..b", "a.b*"]
max_wait = "1ms"
ack_wait = "100ms"
batch = 50
max_ack_pending = 10
max_decoded_size = 10
"#
        ),
        vec![
            (
                "url".into(),
                "expected nats://host[:port] or tls://host[:port], got \"nats//x\"".into()
            ),
            (
                "durable".into(),
                "\"a b\": a consumer name cannot contain ' '".into()
            ),
            (
                "filter_subjects[1]".into(),
                "\"a..b\": a subject cannot have an empty token (\"..\")".into()
            ),
            (
                "filter_subjects[2]".into(),
                "\"a.b*\": `*` must be a whole token, `>` the whole last one (like \"a.*.>\")"
                    .into()
            ),
            (
                "dead_letter_subject".into(),
                "\"iotel.dead.iotel.acme.metrics.0\" (for iotel.acme.metrics.0) matches filter \
                 \"iotel.>\": the consumer would take its dead letters again"
                    .into()
            ),
            ("max_wait".into(), "expected at least 10ms, got 1ms".into()),
            ("ack_wait".into(), "expected at least 1s, got 100ms".into()),
            (
                "batch".into(),
                "expected at most max_ack_pending (10), got 50".into()
            ),
            (
                "max_decoded_size".into(),
                "expected at least 1KiB, got 10B".into()
            ),
        ]
    );
    assert_eq!(
        problems("dead_letter_subject = \"dead.*.{subject}\""),
        vec![(
            "dead_letter_subject".into(),
            "\"dead.*.iotel.acme.metrics.0\": expected a subject without wildcards (with \
             {subject} = iotel.acme.metrics.0)"
                .into()
        )]
    );
    assert_eq!(
        problems("filter_subjects = []"),
        vec![(
            "filter_subjects".into(),
            "expected at least one subject filter, such as \"iotel.*.*.*\"".into()
        )]
    );
}

#[test]
fn subjects_match_filters_as_nats_does() {
    for (filter, subject, want) in [
        ("iotel.*.*.*", "iotel.acme.metrics.3", true),
        ("iotel.*.*.*", "iotel.dead.iotel.acme.metrics.3", false),
        ("iotel.>", "iotel.dead.x", true),
        ("iotel.>", "iotel", false),
        ("iotel.acme.*.*", "iotel.other.logs.1", false),
        ("a.b", "a.b", true),
        ("a.b", "a.b.c", false),
        ("a.*", "a", false),
    ] {
        assert_eq!(subject_matches(filter, subject), want, "{filter} {subject}");
    }
}

// ---- Against a real nats-server ----

struct Worker {
    rx: TestReceiver,
    metrics: ComponentMetrics,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), ComponentError>>,
}

const FAST: &str = "max_wait = \"100ms\"\nack_wait = \"1s\"\nnak_delay = \"50ms\"\n";

fn worker(url: &str, extra: &str) -> Worker {
    let cfg = config(&format!("url = \"{url}\"\n{FAST}{extra}"));
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    let (out, rx) = Output::for_test(64);
    let metrics = ComponentMetrics::detached("work", "nats_jetstream");
    let (trigger, shutdown) = shutdown::channel();
    let cx = SourceContext {
        key: ComponentKey {
            id: "work".into(),
            type_name: "nats_jetstream".into(),
        },
        out,
        shutdown,
        metrics: metrics.clone(),
        data_dir: std::env::temp_dir(),
    };
    let source = cfg.build(&crate::BuildContext::for_test("work")).unwrap();
    Worker {
        rx,
        metrics,
        trigger,
        task: tokio::spawn(source.run(cx)),
    }
}

impl Worker {
    /// The next batch, with its acknowledgement still to give.
    async fn next(&mut self) -> Batch {
        tokio::time::timeout(StdDuration::from_secs(20), self.rx.recv_batch())
            .await
            .expect("a batch within 20s")
            .unwrap()
    }

    /// Whether a batch comes within `d`.
    async fn nothing_within(&mut self, d: StdDuration) -> bool {
        tokio::time::timeout(d, self.rx.recv_batch()).await.is_err()
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let mut all = vec![("component_id", "work")];
        all.extend_from_slice(labels);
        self.metrics.registry().counter(name, "", &all).get()
    }

    async fn stop(self) -> ComponentMetrics {
        self.trigger.trigger();
        drop(self.rx);
        self.task.await.unwrap().unwrap();
        self.metrics
    }
}

async fn js(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.unwrap())
}

/// The stream the sink would make.
async fn make_stream(js: &jetstream::Context, duplicate_window: StdDuration) {
    js.create_stream(jetstream::stream::Config {
        name: "IOTEL".into(),
        subjects: vec!["iotel.>".into()],
        duplicate_window,
        ..Default::default()
    })
    .await
    .unwrap();
}

fn frame(values: std::ops::Range<u32>) -> bytes::Bytes {
    let events = Events::Metrics(
        values
            .map(|i| {
                Metric::new(
                    "reading",
                    MetricType::Gauge,
                    Labels::from_pairs([("device_id", "dev-1"), ("tenant", "acme")]),
                    f64::from(i),
                    1_700_000_000_000,
                )
            })
            .collect(),
    );
    native::encode("node-1", 1, &events, Compression::Lz4)
        .unwrap()
        .into()
}

async fn publish(js: &jetstream::Context, subject: &str, id: &str, payload: bytes::Bytes) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    js.publish_with_headers(subject.to_string(), headers, payload)
        .await
        .unwrap()
        .await
        .unwrap();
}

fn values(b: &Batch) -> Vec<u32> {
    match &b.events {
        Events::Metrics(m) => m.iter().map(|m| m.value as u32).collect(),
        other => panic!("expected metrics, got {other:?}"),
    }
}

/// (pending, waiting for an acknowledgement) of the durable consumer.
async fn consumer_state(js: &jetstream::Context) -> (u64, usize) {
    let mut c: jetstream::consumer::PullConsumer = js
        .get_stream("IOTEL")
        .await
        .unwrap()
        .get_consumer("iotel-workers")
        .await
        .unwrap();
    let info = c.info().await.unwrap();
    (info.num_pending, info.num_ack_pending)
}

async fn wait_until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(20);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn messages_are_acknowledged_once_the_sinks_have_their_events() {
    let server = NatsServer::start();
    let js = js(&server.url()).await;
    make_stream(&js, StdDuration::from_secs(120)).await;
    publish(&js, "iotel.acme.metrics.0", "m1", frame(0..3)).await;
    publish(&js, "iotel.acme.metrics.1", "m2", frame(3..5)).await;
    let mut w = worker(&server.url(), "");
    let a = w.next().await;
    let b = w.next().await;
    assert_eq!((values(&a), values(&b)), (vec![0, 1, 2], vec![3, 4]));
    // Nothing is acknowledged while the sinks hold the events.
    assert_eq!(consumer_state(&js).await, (0, 2));
    assert_eq!(w.counter("iotel_nats_acked_messages_total", &[]), 0);
    a.ack.done();
    b.ack.done();
    wait_until("both were acknowledged", async || {
        consumer_state(&js).await == (0, 0)
    })
    .await;
    assert_eq!(w.counter("iotel_nats_acked_messages_total", &[]), 2);
    w.stop().await;
}

#[tokio::test]
async fn a_message_a_sink_could_not_store_comes_again_then_goes_to_the_dead_letters() {
    let server = NatsServer::start();
    let js = js(&server.url()).await;
    make_stream(&js, StdDuration::from_secs(120)).await;
    publish(&js, "iotel.acme.metrics.0", "m1", frame(0..2)).await;
    let mut w = worker(&server.url(), "max_deliver = 3");
    for delivery in 1..=3 {
        let b = w.next().await;
        assert_eq!(values(&b), vec![0, 1], "delivery {delivery}");
        // Dropped without `done`: the sink could not store it.
        drop(b);
    }
    wait_until("the dead letter was counted", async || {
        w.counter(
            "iotel_nats_dead_letters_total",
            &[("reason", "max_deliver")],
        ) == 1
    })
    .await;
    let dead = js
        .get_stream("IOTEL")
        .await
        .unwrap()
        .get_last_raw_message_by_subject("iotel.dead.iotel.acme.metrics.0")
        .await
        .unwrap();
    let h = |name: &str| dead.headers.get(name).unwrap().as_str().to_string();
    assert_eq!(h(DEAD_LETTER_REASON), "max_deliver");
    assert_eq!(h(ORIGINAL_SUBJECT), "iotel.acme.metrics.0");
    assert_eq!(h(DELIVERIES), "3");
    assert_eq!(h("Nats-Msg-Id"), "dead:m1");
    assert_eq!(dead.payload, frame(0..2));
    wait_until("the message was terminated", async || {
        consumer_state(&js).await == (0, 0)
    })
    .await;
    assert!(w.nothing_within(StdDuration::from_millis(1500)).await);
    assert_eq!(w.counter("iotel_nats_nacked_messages_total", &[]), 2);
    assert_eq!(w.counter("iotel_nats_redelivered_messages_total", &[]), 2);
    let m = w.stop().await;
    assert_eq!(m.discards("dead_letter").get(), 2);
}

#[tokio::test]
async fn a_message_that_does_not_decode_goes_to_the_dead_letters_and_the_next_flows() {
    let server = NatsServer::start();
    let js = js(&server.url()).await;
    make_stream(&js, StdDuration::from_secs(120)).await;
    publish(
        &js,
        "iotel.acme.logs.2",
        "bad",
        bytes::Bytes::from_static(b"not a frame"),
    )
    .await;
    publish(&js, "iotel.acme.metrics.0", "good", frame(7..8)).await;
    let mut w = worker(&server.url(), "");
    let b = w.next().await;
    assert_eq!(values(&b), vec![7]);
    b.ack.done();
    wait_until("the bad message was dead-lettered", async || {
        w.counter(
            "iotel_nats_dead_letters_total",
            &[("reason", "decode: bad_magic")],
        ) == 1
    })
    .await;
    let dead = js
        .get_stream("IOTEL")
        .await
        .unwrap()
        .get_last_raw_message_by_subject("iotel.dead.iotel.acme.logs.2")
        .await
        .unwrap();
    assert_eq!(
        dead.headers.get(DEAD_LETTER_REASON).unwrap().as_str(),
        "decode: bad_magic"
    );
    assert_eq!(dead.payload.as_ref(), b"not a frame");
    wait_until("both were settled", async || {
        consumer_state(&js).await == (0, 0)
    })
    .await;
    let m = w.stop().await;
    assert_eq!(m.errors("bad_magic").get(), 1);
}

#[tokio::test]
async fn a_message_id_acknowledged_before_is_dropped_when_it_comes_again() {
    let server = NatsServer::start();
    let js = js(&server.url()).await;
    // A short duplicate window: the second publish of "m1" is stored.
    make_stream(&js, StdDuration::from_millis(100)).await;
    publish(&js, "iotel.acme.metrics.0", "m1", frame(0..2)).await;
    let mut w = worker(&server.url(), "");
    w.next().await.ack.done();
    wait_until("it was acknowledged", async || {
        consumer_state(&js).await == (0, 0)
    })
    .await;
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    publish(&js, "iotel.acme.metrics.0", "m1", frame(0..2)).await;
    publish(&js, "iotel.acme.metrics.0", "m2", frame(2..3)).await;
    let b = w.next().await;
    assert_eq!(values(&b), vec![2], "m1 is not sent downstream twice");
    b.ack.done();
    wait_until("both were acknowledged", async || {
        consumer_state(&js).await == (0, 0)
    })
    .await;
    assert_eq!(w.counter("iotel_nats_duplicate_deliveries_total", &[]), 1);
    let m = w.stop().await;
    assert_eq!(m.discards("duplicate").get(), 2);
}

#[tokio::test]
async fn a_slow_sink_keeps_the_message_without_a_redelivery() {
    let server = NatsServer::start();
    let js = js(&server.url()).await;
    make_stream(&js, StdDuration::from_secs(120)).await;
    publish(&js, "iotel.acme.metrics.0", "m1", frame(0..1)).await;
    let mut w = worker(&server.url(), "");
    let b = w.next().await;
    // Three times ack_wait: the worker says it is in progress meanwhile.
    assert!(w.nothing_within(StdDuration::from_secs(3)).await);
    b.ack.done();
    wait_until("it was acknowledged", async || {
        consumer_state(&js).await == (0, 0)
    })
    .await;
    assert_eq!(w.counter("iotel_nats_acked_messages_total", &[]), 1);
    w.stop().await;
}

#[tokio::test]
async fn a_server_lost_while_a_sink_stores_redelivers_and_the_window_drops_the_repeat() {
    let mut server = NatsServer::start();
    let js = js(&server.url()).await;
    make_stream(&js, StdDuration::from_secs(120)).await;
    publish(&js, "iotel.acme.metrics.0", "m1", frame(0..2)).await;
    let mut w = worker(&server.url(), "");
    let b = w.next().await;
    server.kill();
    // Stored downstream, but the acknowledgement cannot reach JetStream.
    b.ack.done();
    wait_until("the failed acknowledgement was counted", async || {
        w.metrics.errors("ack_failed").get() >= 1
    })
    .await;
    server.restart();
    let js = self::js(&server.url()).await;
    publish(&js, "iotel.acme.metrics.1", "m2", frame(2..3)).await;
    let b = w.next().await;
    assert_eq!(values(&b), vec![2], "m1 is not sent downstream twice");
    b.ack.done();
    wait_until("everything was acknowledged", async || {
        consumer_state(&js).await == (0, 0)
    })
    .await;
    assert_eq!(w.counter("iotel_nats_duplicate_deliveries_total", &[]), 1);
    w.stop().await;
}

#[tokio::test]
async fn two_workers_share_one_consumer_and_take_each_message_once() {
    let server = NatsServer::start();
    let js = js(&server.url()).await;
    make_stream(&js, StdDuration::from_secs(120)).await;
    let mut a = worker(&server.url(), "batch = 1");
    let mut b = worker(&server.url(), "batch = 1");
    for i in 0..20 {
        publish(
            &js,
            "iotel.acme.metrics.0",
            &format!("m{i}"),
            frame(i..i + 1),
        )
        .await;
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        let batch = tokio::select! {
            x = a.next() => x,
            x = b.next() => x,
        };
        got.extend(values(&batch));
        batch.ack.done();
    }
    got.sort_unstable();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    wait_until("everything was acknowledged", async || {
        consumer_state(&js).await == (0, 0)
    })
    .await;
    assert!(a.nothing_within(StdDuration::from_millis(300)).await);
    assert!(b.nothing_within(StdDuration::from_millis(10)).await);
    assert_eq!(
        a.counter("iotel_nats_acked_messages_total", &[])
            + b.counter("iotel_nats_acked_messages_total", &[]),
        20
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_server_down_at_start_is_waited_for() {
    let mut server = NatsServer::start();
    server.kill();
    let mut w = worker(&server.url(), "");
    wait_until("a failed attempt was counted", async || {
        w.metrics.errors("consumer_failed").get() >= 1
    })
    .await;
    server.restart();
    let js = js(&server.url()).await;
    make_stream(&js, StdDuration::from_secs(120)).await;
    publish(&js, "iotel.acme.metrics.0", "m1", frame(0..1)).await;
    let b = w.next().await;
    assert_eq!(values(&b), vec![0]);
    b.ack.done();
    w.stop().await;
}
