//! The sink against the real `iotel` source, in one process.

use super::*;
use crate::sources;
use iotel_engine::shutdown::{self, ShutdownTrigger};
use iotel_engine::{
    Batch, ComponentError, ComponentKey, ComponentMetrics, Input, Output, SourceContext,
    TestReceiver,
};
use iotel_model::LogRecord;
use std::net::SocketAddr;
use std::path::Path;
use tokio::sync::mpsc;

pub(super) fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A receiver: the `iotel` source with a test output.
pub(super) struct Receiver {
    pub(super) rx: TestReceiver,
    pub(super) metrics: ComponentMetrics,
    pub(super) trigger: ShutdownTrigger,
    pub(super) task: tokio::task::JoinHandle<Result<(), ComponentError>>,
}

pub(super) async fn receiver(addr: SocketAddr, data_dir: &Path, extra: &str) -> Receiver {
    let cfg: sources::iotel::Config =
        toml::from_str(&format!("address = \"{addr}\"\n{extra}")).unwrap();
    let (out, rx) = Output::for_test(64);
    let (trigger, shutdown) = shutdown::channel();
    let metrics = ComponentMetrics::detached("in", "iotel");
    let cx = SourceContext {
        key: ComponentKey {
            id: "in".into(),
            type_name: "iotel".into(),
        },
        out,
        shutdown,
        metrics: metrics.clone(),
        data_dir: data_dir.to_path_buf(),
    };
    let task = tokio::spawn(cfg.build(&BuildContext::for_test("in")).unwrap().run(cx));
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Receiver {
        rx,
        metrics,
        trigger,
        task,
    }
}

impl Receiver {
    /// Log messages received until `n` arrived.
    pub(super) async fn take(&mut self, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            let events = tokio::time::timeout(std::time::Duration::from_secs(20), self.rx.recv())
                .await
                .expect("the receiver got nothing for 20s")
                .unwrap();
            let Events::Logs(logs) = events else {
                panic!("expected logs")
            };
            got.extend(logs.into_iter().map(|l| l.message));
        }
        got
    }

    pub(super) async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

/// The sink, fed through a channel.
pub(super) struct Agent {
    pub(super) tx: Option<mpsc::Sender<Batch>>,
    pub(super) metrics: ComponentMetrics,
    pub(super) trigger: ShutdownTrigger,
    pub(super) task: tokio::task::JoinHandle<Result<(), ComponentError>>,
}

pub(super) fn agent(endpoint: &str, data_dir: &Path, extra: &str) -> Agent {
    let cfg: Config = toml::from_str(&format!(
        "endpoint = \"{endpoint}\"\nagent_id = \"dev-1\"\n{extra}"
    ))
    .unwrap();
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate().len());
    run_agent(Box::new(cfg.sink().unwrap()), data_dir)
}

/// Runs a built sink, fed through a channel.
pub(super) fn run_agent(sink: Box<dyn Sink>, data_dir: &Path) -> Agent {
    let (tx, rx) = mpsc::channel(64);
    let metrics = ComponentMetrics::detached("up", "iotel");
    let (trigger, shutdown) = shutdown::channel();
    let cx = SinkContext {
        key: ComponentKey {
            id: "up".into(),
            type_name: "iotel".into(),
        },
        input: Input::new(rx, metrics.clone()),
        shutdown,
        metrics: metrics.clone(),
        data_dir: data_dir.to_path_buf(),
    };
    Agent {
        tx: Some(tx),
        metrics,
        trigger,
        task: tokio::spawn(sink.run(cx)),
    }
}

impl Agent {
    pub(super) async fn send(&self, range: std::ops::Range<u32>) {
        let events = Events::Logs(
            range
                .map(|i| LogRecord::new(i64::from(i), format!("{i}")))
                .collect(),
        );
        self.tx.as_ref().unwrap().send(events.into()).await.unwrap();
    }

    /// Closes the input and waits for the sink to finish.
    pub(super) async fn stop(mut self) -> ComponentMetrics {
        self.tx = None;
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
        self.metrics
    }
}

pub(super) fn numbers(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

pub(super) async fn wait_until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..4000 {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn batches_are_joined_into_one_request_and_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut rcv = receiver(addr, dir.path(), "").await;
    let a = agent(
        &format!("http://{addr}"),
        dir.path(),
        "batch = { max_events = 6, timeout = \"1h\" }",
    );
    a.send(0..2).await;
    a.send(2..4).await;
    a.send(4..6).await;
    // One request of six: three input batches joined.
    let first = rcv.rx.recv().await.unwrap();
    assert_eq!(first.len(), 6);
    let Events::Logs(logs) = first else { panic!() };
    let got: Vec<String> = logs.into_iter().map(|l| l.message).collect();
    assert_eq!(got, numbers(0..6));
    wait_until("the sink counted the delivery", || {
        a.metrics.sent_total() == 6
    })
    .await;
    // What is left at shutdown is flushed without waiting for the timeout.
    a.send(6..9).await;
    let (m, rest) = tokio::join!(a.stop(), rcv.take(3));
    assert_eq!(rest, numbers(6..9));
    assert_eq!(m.sent_total(), 9);
    rcv.stop().await;
}

#[tokio::test]
async fn a_receiver_that_comes_back_gets_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let a = agent(
        &format!("http://{addr}"),
        dir.path(),
        "batch = { max_events = 4, timeout = \"10ms\" }\n\
         retry = { initial_backoff = \"10ms\", max_backoff = \"50ms\" }",
    );
    for i in 0..10 {
        a.send(i * 3..i * 3 + 3).await;
    }
    wait_until("a few failed attempts", || {
        a.metrics.errors("connection_failed").get() >= 3
    })
    .await;
    let mut rcv = receiver(addr, dir.path(), "").await;
    assert_eq!(rcv.take(30).await, numbers(0..30));
    wait_until("all sent", || a.metrics.sent_total() == 30).await;
    let m = a.stop().await;
    assert_eq!(m.discards("rejected").get(), 0);
    rcv.stop().await;
}

#[tokio::test]
async fn what_the_receiver_already_has_is_acknowledged_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut rcv = receiver(addr, dir.path(), "").await;
    let endpoint = format!("http://{addr}");
    let a = agent(
        &endpoint,
        dir.path(),
        "buffer = { type = \"memory\" }\nbatch = { timeout = \"10ms\" }",
    );
    a.send(0..3).await;
    assert_eq!(rcv.take(3).await, numbers(0..3));
    wait_until("sent", || a.metrics.sent_total() == 3).await;
    a.stop().await;
    // A retransmit of the same ids, as after a lost answer: the ids of a
    // memory buffer start at the clock, so replay them by hand.
    let frame = native::encode(
        "dev-1",
        0,
        &Events::Logs(vec![LogRecord::new(0, "again".to_string())]),
        Compression::Snappy,
    )
    .unwrap();
    let client = http_util::client();
    let mut r = http::Request::new(Body::new(frame.into()));
    *r.method_mut() = http::Method::POST;
    *r.uri_mut() = format!("{endpoint}{BATCH_PATH}").parse().unwrap();
    let status = client.request(r).await.unwrap().status().as_u16();
    // dev-1's window is past the clock-based ids: 0 is long seen.
    assert_eq!(status, 409);
    rcv.stop().await;
}

#[tokio::test]
async fn a_refused_batch_is_dropped_and_counted_and_the_next_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut rcv = receiver(addr, dir.path(), "max_decoded_size = \"2KiB\"").await;
    let a = agent(
        &format!("http://{addr}"),
        dir.path(),
        "batch = { max_events = 1000, timeout = \"10ms\" }",
    );
    let big = Events::Logs(vec![LogRecord::new(0, "x".repeat(4096))]);
    a.tx.as_ref().unwrap().send(big.into()).await.unwrap();
    wait_until("rejected", || a.metrics.discards("rejected").get() == 1).await;
    a.send(0..2).await;
    assert_eq!(rcv.take(2).await, numbers(0..2));
    let m = a.stop().await;
    assert_eq!(m.errors("http_4xx").get(), 1);
    assert_eq!(m.sent_total(), 2);
    rcv.stop().await;
}

#[tokio::test]
async fn a_disk_buffer_keeps_undelivered_batches_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let extra = "batch = { max_events = 100, timeout = \"10ms\" }\n\
                 request_timeout = \"200ms\"\n\
                 retry = { initial_backoff = \"10ms\", max_backoff = \"20ms\" }\n\
                 buffer = { type = \"disk\", max_size = \"1MiB\" }";
    let a = agent(&format!("http://{addr}"), dir.path(), extra);
    a.send(0..5).await;
    a.send(5..10).await;
    wait_until("a failed attempt", || {
        a.metrics.errors("connection_failed").get() >= 1
    })
    .await;
    let m = a.stop().await;
    assert_eq!(m.sent_total(), 0);
    assert_eq!(m.discards("shutdown").get(), 0, "the disk keeps them");
    let mut rcv = receiver(addr, dir.path(), "").await;
    let a = agent(&format!("http://{addr}"), dir.path(), extra);
    assert_eq!(rcv.take(10).await, numbers(0..10));
    wait_until("sent", || a.metrics.sent_total() == 10).await;
    a.stop().await;
    rcv.stop().await;
}

#[tokio::test]
async fn a_sink_held_back_by_a_full_buffer_still_stops_at_the_node_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let a = agent(
        &format!("http://{addr}"),
        dir.path(),
        "buffer = { type = \"memory\", max_events = 4, when_full = \"block\" }\n\
         batch = { max_events = 4, timeout = \"10ms\" }\n\
         retry = { initial_backoff = \"10ms\", max_backoff = \"20ms\" }",
    );
    // Four fit; the fifth waits for room that never comes (no receiver).
    for i in 0..5 {
        a.send(i..i + 1).await;
    }
    wait_until("a failed attempt", || {
        a.metrics.errors("connection_failed").get() >= 1
    })
    .await;
    // The input stays open; only the node's deadline ends the sink.
    a.trigger
        .trigger_with_deadline(std::time::Instant::now() + std::time::Duration::from_secs(1));
    let result = tokio::time::timeout(std::time::Duration::from_secs(5), a.task)
        .await
        .expect("the sink ended by the deadline");
    result.unwrap().unwrap();
    // The memory buffer's four and the one held back: all counted.
    assert_eq!(a.metrics.discards("shutdown").get(), 5);
    drop(a.tx);
}

#[cfg(feature = "auth")]
#[tokio::test]
async fn a_signing_gateway_is_taken_by_a_cloud_that_requires_signatures_and_an_unsigned_one_is_not()
{
    use crate::auth::test_keys::{auth_table_jwks, ed25519_key_file};
    let dir = tempfile::tempdir().unwrap();
    let key_file = ed25519_key_file(dir.path(), "site-1");
    let signer =
        crate::auth::signing::Signer::load(&key_file, "site-1", "i", "a", "t", 60).unwrap();
    let addr = free_addr();
    let table =
        auth_table_jwks(dir.path(), vec![signer.jwk()]) + "require_batch_signatures = true\n";
    let mut rcv = receiver(addr, dir.path(), &table).await;

    let start = |extra: &str| {
        let cfg: Config = toml::from_str(&format!(
            "endpoint = \"http://{addr}\"\nagent_id = \"site-1\"\n\
             batch = {{ max_events = 3, timeout = \"10ms\" }}\n\
             retry = {{ initial_backoff = \"10ms\", max_backoff = \"20ms\" }}\n{extra}"
        ))
        .unwrap();
        assert!(cfg.validate().is_empty());
        let mut cx = BuildContext::for_test("up");
        cx.config_dir = dir.path().to_path_buf();
        run_agent(
            cfg.build(&cx).unwrap(),
            &dir.path().join(extra.len().to_string()),
        )
    };

    // Unsigned (no token either): refused, counted by the sink as rejected.
    let unsigned = start("");
    unsigned.send(0..3).await;
    wait_until("the receiver refused it", || {
        rcv.metrics.errors("missing_token").get() == 1
    })
    .await;
    let m = unsigned.stop().await;
    assert_eq!(m.discards("rejected").get(), 3);
    assert!(rcv.rx.try_recv().is_none());

    let signed = start(&format!(
        "sign = {{ key_file = \"{}\", tenant = \"acme\", audience = \"iotel-cloud\", \
         issuer = \"https://idp.example\" }}",
        key_file.display()
    ));
    signed.send(3..6).await;
    signed.send(6..9).await;
    assert_eq!(rcv.take(6).await, numbers(3..9));
    let m = signed.stop().await;
    assert_eq!(m.sent_total(), 6);
    rcv.stop().await;
}
