//! The cloud tier end to end on a real NATS server with JetStream: an
//! ingest node (`iotel cloud`) publishes numbered samples through the
//! `nats_jetstream` sink; two worker processes share one durable consumer
//! through the `nats_jetstream` source and write what they take to files.
//! One worker is frozen (SIGSTOP) while it has messages in hand, then
//! killed with SIGKILL; the other takes them over after `ack_wait`. Every sample arrives, and after
//! dedup by sample (what Prometheus does with a repeated sample) each
//! exactly once; the repeats are at most what the killed worker had in
//! hand.

#![allow(clippy::unwrap_used)]

#[path = "../../iotel-components/src/nats_server.rs"]
mod nats_server;
mod util;

use nats_server::NatsServer;
use std::collections::BTreeMap;
use std::time::Duration;
use util::{Iotel, wait_for};

const SAMPLES: u64 = 3_000;

fn ingest(url: &str) -> String {
    format!(
        r#"
[api]
address = "{{API}}"

[sources.gen]
type = "generator"
signal = "metric"
interval = "10ms"
batch_size = 10
count = {SAMPLES}

[transforms.tenant]
type = "enrich"
inputs = ["gen"]
labels = {{ tenant = "acme", device_id = "dev-1" }}

[sinks.stream]
type = "nats_jetstream"
inputs = ["tenant"]
url = "{url}"
publisher_id = "ingest-1"
shards = 4
batch = {{ max_events = 20, timeout = "10ms" }}
buffer = {{ type = "disk", when_full = "block" }}
"#
    )
}

fn worker(url: &str) -> String {
    format!(
        r#"
[api]
address = "{{API}}"

[sources.work]
type = "nats_jetstream"
url = "{url}"
durable = "workers"
batch = 4
max_wait = "100ms"
ack_wait = "2s"
nak_delay = "100ms"

[sinks.out]
type = "file"
inputs = ["work"]
path = "{{DIR}}/samples.ndjson"
"#
    )
}

/// Every `seq` in a worker's file, with how often it is there.
fn seqs(node_dir: &std::path::Path, into: &mut BTreeMap<u64, u32>) {
    let text = std::fs::read_to_string(node_dir.join("samples.ndjson")).unwrap_or_default();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let seq = v["labels"]["seq"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| v["value"].as_f64().map(|f| f as u64))
            .unwrap_or_else(|| panic!("no seq in {line}"));
        *into.entry(seq).or_default() += 1;
    }
}

#[test]
fn two_workers_share_a_consumer_and_a_killed_workers_messages_arrive_through_the_other() {
    let server = NatsServer::start();
    let url = server.url();
    let a = Iotel::start("cloud", &worker(&url), &[]);
    let b = Iotel::start("cloud", &worker(&url), &[]);
    // It stops by itself once the generator's count is published.
    let _ingest = Iotel::start("cloud", &ingest(&url), &[]);
    // Worker a has taken some messages: freeze it while it works, with a
    // pull outstanding, so the messages JetStream hands it next stay in
    // its hands, unacknowledged.
    wait_for(
        "worker a to acknowledge messages",
        Duration::from_secs(30),
        || (a.metric("iotel_nats_acked_messages_total", &[]) >= 5.0).then_some(()),
    );
    let status = std::process::Command::new("kill")
        .args(["-STOP", &a.proc.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // After ack_wait JetStream delivers them again, to b.
    wait_for(
        "worker b to take messages a held",
        Duration::from_secs(60),
        || (b.metric("iotel_nats_redelivered_messages_total", &[]) >= 1.0).then_some(()),
    );
    // Killed mid-batch, as a crash would.
    let (a_dir, _, _) = a.kill9();
    let mut got = BTreeMap::new();
    wait_for("every sample to arrive", Duration::from_secs(60), || {
        got.clear();
        seqs(a_dir.path(), &mut got);
        seqs(b.dir(), &mut got);
        (got.len() as u64 == SAMPLES).then_some(())
    });
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        (0..SAMPLES).collect::<Vec<_>>(),
        "nothing lost, nothing else"
    );
    // Repeats come only from what a had written and not acknowledged when
    // it was killed: at most one pull (4 messages of 20 samples).
    let repeated: u32 = got.values().map(|n| n - 1).sum();
    eprintln!(
        "{} samples, {repeated} repeated; b took {} redelivered message(s)",
        got.len(),
        b.metric("iotel_nats_redelivered_messages_total", &[])
    );
    assert!(
        repeated <= 4 * 20,
        "{repeated} repeated samples: more than the killed worker had in hand"
    );
    assert_eq!(b.metric("iotel_nats_dead_letters_total", &[]), 0.0);
}
