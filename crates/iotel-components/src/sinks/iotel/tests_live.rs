//! Backlog mode (`sinks::buffered`, "Backlog mode") against the real
//! `iotel` source, in one process: the live lane overtakes a paced
//! backlog, and an agent restarted mid-backlog is deduplicated.

use super::tests::{Agent, Receiver, agent, free_addr, numbers, receiver, wait_until};
use iotel_engine::ComponentMetrics;
use iotel_model::Events;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Backlog requests of 4 events paced at 20 events/s: 0.2 s apart.
const PACED: &str = "batch = { max_events = 4, timeout = \"10ms\" }\n\
                     request_timeout = \"200ms\"\n\
                     retry = { initial_backoff = \"10ms\", max_backoff = \"20ms\" }\n\
                     drain = { max_events_per_second = 20 }\n";

/// An agent that buffered `0..2 * batches` (in batches of two) while its
/// receiver was away.
async fn agent_with_a_backlog(endpoint: &str, dir: &Path, buffer: &str, batches: u32) -> Agent {
    let a = agent(endpoint, dir, &format!("{PACED}buffer = {buffer}"));
    for i in 0..batches {
        a.send(i * 2..i * 2 + 2).await;
    }
    wait_until("a failed attempt", || {
        a.metrics.errors("connection_failed").get() >= 1
    })
    .await;
    a
}

/// A receiver whose output is read all the time, as a sink downstream
/// would, into `got` in arrival order.
struct Collector {
    got: Arc<Mutex<Vec<String>>>,
    metrics: ComponentMetrics,
    rcv: Receiver,
}

impl Collector {
    async fn start(addr: std::net::SocketAddr, dir: &Path) -> Collector {
        let mut rcv = receiver(addr, dir, "").await;
        let (tx, rx) = iotel_engine::Output::for_test(1);
        // Swap the receiver's test output for one nobody reads; ours is
        // drained by a task.
        drop(tx);
        let mut output = std::mem::replace(&mut rcv.rx, rx);
        let got = Arc::new(Mutex::new(Vec::new()));
        let into = got.clone();
        tokio::spawn(async move {
            while let Some(events) = output.recv().await {
                if let Events::Logs(logs) = events {
                    into.lock()
                        .unwrap()
                        .extend(logs.into_iter().map(|l| l.message));
                }
            }
        });
        Collector {
            got,
            metrics: rcv.metrics.clone(),
            rcv,
        }
    }

    fn got(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }

    async fn wait_for(&self, what: &str, n: usize) -> Vec<String> {
        wait_until(what, || self.got.lock().unwrap().len() >= n).await;
        self.got()
    }
}

/// The agent's `iotel_buffer_records`.
fn buffer_records(m: &ComponentMetrics) -> Option<f64> {
    m.registry()
        .snapshot()
        .into_iter()
        .find(|s| &*s.name == "iotel_buffer_records")
        .map(|s| s.value)
}

fn position(got: &[String], message: &str) -> usize {
    got.iter()
        .position(|m| m == message)
        .unwrap_or_else(|| panic!("{message} did not arrive: {got:?}"))
}

/// `got` sorted, as numbers.
fn sorted(got: &[String]) -> Vec<u32> {
    let mut v: Vec<u32> = got.iter().map(|m| m.parse().unwrap()).collect();
    v.sort_unstable();
    v
}

fn backlog_and_live(backlog: u32) -> Vec<u32> {
    (0..backlog).chain(1000..1004).collect()
}

#[tokio::test]
async fn live_batches_arrive_before_the_paced_backlog_has_drained() {
    for buffer in [
        r#"{ type = "memory" }"#,
        r#"{ type = "disk", max_size = "1MiB" }"#,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let endpoint = format!("http://{addr}");
        let a = agent_with_a_backlog(&endpoint, dir.path(), buffer, 20).await;
        let rcv = Collector::start(addr, dir.path()).await;
        // The first request goes in order; the rest is a backlog.
        wait_until("the first request counted", || a.metrics.sent_total() >= 4).await;
        assert_eq!(rcv.got()[..4], numbers(0..4), "{buffer}");
        a.send(1000..1002).await;
        a.send(1002..1004).await;
        let got = rcv.wait_for("everything", 44).await;
        wait_until("all counted", || a.metrics.sent_total() == 44).await;
        // Live data did not wait for the backlog, which took 1.8 s.
        assert!(
            position(&got, "1003") < position(&got, "39"),
            "{buffer}: {got:?}"
        );
        // Each lane oldest first, and everything exactly once.
        let backlog: Vec<String> = got.iter().filter(|m| m.len() < 4).cloned().collect();
        assert_eq!(backlog, numbers(0..40), "{buffer}");
        let live: Vec<String> = got.iter().filter(|m| m.len() == 4).cloned().collect();
        assert_eq!(live, numbers(1000..1004), "{buffer}");
        assert_eq!(sorted(&got), backlog_and_live(40), "{buffer}");
        let m = a.stop().await;
        assert_eq!(m.sent_total(), 44, "{buffer}");
        assert_eq!(m.discards("rejected").get(), 0, "{buffer}");
        assert_eq!(rcv.metrics.discards("duplicate").get(), 0, "{buffer}");
        assert_eq!(rcv.got().len(), 44, "{buffer}");
        rcv.rcv.stop().await;
    }
}

#[tokio::test]
async fn an_agent_restarted_mid_backlog_resends_what_its_live_lane_delivered_and_the_receiver_keeps_one()
 {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let endpoint = format!("http://{addr}");
    let buffer = r#"{ type = "disk", max_size = "1MiB" }"#;
    // 19 batches: the restarted agent's last backlog request holds the
    // last of them and the first live batch, which the receiver has.
    let a = agent_with_a_backlog(&endpoint, dir.path(), buffer, 19).await;
    let rcv = Collector::start(addr, dir.path()).await;
    wait_until("the first request counted", || a.metrics.sent_total() >= 4).await;
    a.send(1000..1002).await;
    a.send(1002..1004).await;
    wait_until("the live lane's delivery", || {
        rcv.got().contains(&"1003".to_string())
    })
    .await;
    // Stopped mid-backlog: its flush (3 × 200 ms) cannot send 1.8 s of it.
    let first_run = a.stop().await;
    let before = rcv.got().len();
    assert!(before < 42, "{:?}", rcv.got());
    // The restarted agent knows nothing of what the live lane delivered:
    // it sends its whole buffer again, oldest first.
    let a = agent(&endpoint, dir.path(), &format!("{PACED}buffer = {buffer}"));
    let got = rcv.wait_for("everything", 42).await;
    wait_until("the buffer drained", || {
        buffer_records(&a.metrics) == Some(0.0)
    })
    .await;
    let m = a.stop().await;
    assert_eq!(sorted(&got), backlog_and_live(38));
    assert_eq!(rcv.got().len(), 42);
    // Batch 18 and live batch 1000..1002 in one request: 409 with
    // Iotel-Received naming the live one at its end; sent again without
    // it. Then 1002..1004 alone: 409, all of it. (A request whose answer
    // the first run's stop cut off is another whole one, of 4 events.)
    assert_eq!(rcv.metrics.errors("sequence_overlap").get(), 1);
    let whole = rcv.metrics.errors("duplicate").get();
    assert!(whole >= 1);
    assert_eq!(
        rcv.metrics.discards("duplicate").get(),
        4 + 2 + 4 * (whole - 1)
    );
    // Both runs count what the receiver had as sent: the live batches
    // twice.
    assert_eq!(
        first_run.sent_total() + m.sent_total(),
        42 + 4 + 4 * (whole - 1)
    );
    assert_eq!(m.discards("rejected").get(), 0);
    rcv.rcv.stop().await;
}
