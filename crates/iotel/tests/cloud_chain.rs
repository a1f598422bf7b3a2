//! The whole chain, every hop a real process or server: an agent sends
//! numbered samples to a gateway, which forwards them to a cloud ingest
//! node, which publishes them to NATS JetStream; two workers share one
//! durable consumer and remote-write what they take to a real Prometheus.
//! Prometheus ends up with exactly the agent's samples, each once.

#![allow(clippy::unwrap_used)]

#[path = "../../iotel-components/src/nats_server.rs"]
mod nats_server;
mod util;

use nats_server::NatsServer;
use std::time::Duration;
use util::{Iotel, Prometheus, free_port, wait_for};

const SAMPLES: u64 = 600;

#[test]
fn agent_gateway_cloud_jetstream_workers_and_prometheus_agree_on_every_sample() {
    let nats = NatsServer::start();
    let prometheus = Prometheus::start("", &[]);
    let worker = || {
        Iotel::start(
            "cloud",
            &format!(
                r#"
[api]
address = "{{API}}"

[sources.work]
type = "nats_jetstream"
url = "{}"
durable = "workers"
batch = 8
max_wait = "100ms"

[sinks.prometheus]
type = "prometheus_remote_write"
inputs = ["work.metrics"]
endpoint = "http://{}/api/v1/write"
batch = {{ max_samples = 200, timeout = "100ms" }}
buffer = {{ type = "disk", when_full = "block" }}
"#,
                nats.url(),
                prometheus.addr
            ),
            &[],
        )
    };
    let workers = [worker(), worker()];

    let ingest_port = free_port();
    let ingest = Iotel::start(
        "cloud",
        &format!(
            r#"
[api]
address = "{{API}}"

[sources.gateways]
type = "iotel"
address = "127.0.0.1:{ingest_port}"

[sinks.stream]
type = "nats_jetstream"
inputs = ["gateways"]
url = "{}"
shards = 4
batch = {{ max_events = 100, timeout = "50ms" }}
buffer = {{ type = "disk", when_full = "block" }}
"#,
            nats.url()
        ),
        &[],
    );

    let gateway_port = free_port();
    let gateway = Iotel::start(
        "gateway",
        &format!(
            r#"
[api]
address = "{{API}}"

[sources.agents]
type = "iotel"
address = "127.0.0.1:{gateway_port}"

[sinks.cloud]
type = "iotel"
inputs = ["agents"]
endpoint = "http://127.0.0.1:{ingest_port}"
compression = "zstd"
batch = {{ max_events = 200, timeout = "100ms" }}
buffer = {{ type = "disk" }}
"#
        ),
        &[],
    );

    let agent = Iotel::start(
        "agent",
        &format!(
            r#"
[api]
address = "{{API}}"

[sources.gen]
type = "generator"
signal = "metric"
interval = "10ms"
batch_size = 10
count = {SAMPLES}

[transforms.who]
type = "enrich"
inputs = ["gen"]
labels = {{ tenant = "acme", device_id = "pump-7" }}

[sinks.up]
type = "iotel"
inputs = ["who"]
endpoint = "http://127.0.0.1:{gateway_port}"
batch = {{ max_events = 50, timeout = "50ms" }}
buffer = {{ type = "disk" }}
"#
        ),
        &[],
    );

    let report = || {
        let nodes: Vec<String> = [&agent, &gateway, &ingest, &workers[0], &workers[1]]
            .iter()
            .map(|n| n.proc.report())
            .collect();
        format!("{}\n{}", nodes.join("\n"), nats.log())
    };
    let series = wait_for(
        "every sample in Prometheus",
        Duration::from_secs(90),
        || {
            let r = prometheus.query("count(iotel_generator_sample{tenant=\"acme\"})");
            let n: u64 = r.first().and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
            (n >= SAMPLES).then_some(n)
        },
    );
    assert_eq!(series, SAMPLES, "{}", report());
    // Each series is one sample whose value is its sequence number: the sum
    // says every value arrived, and its labels came along.
    let sum = prometheus.query("sum(iotel_generator_sample{tenant=\"acme\",device_id=\"pump-7\"})");
    assert_eq!(
        sum[0].1,
        (SAMPLES * (SAMPLES - 1) / 2).to_string(),
        "{}",
        report()
    );
    // The stream's messages were shared by the two workers, all acknowledged.
    let acked: f64 = workers
        .iter()
        .map(|w| w.metric("iotel_nats_acked_messages_total", &[]))
        .sum();
    let published = ingest.metric("iotel_nats_published_messages_total", &[]);
    assert!(published > 0.0, "{}", report());
    wait_for(
        "every message acknowledged",
        Duration::from_secs(30),
        || {
            let acked: f64 = workers
                .iter()
                .map(|w| w.metric("iotel_nats_acked_messages_total", &[]))
                .sum();
            (acked == published).then_some(())
        },
    );
    assert!(acked <= published);
    // And nothing was dropped on the way.
    for node in [&agent, &gateway, &ingest, &workers[0], &workers[1]] {
        assert_eq!(
            node.metric("iotel_component_discarded_events_total", &[]),
            0.0,
            "{}",
            report()
        );
    }
}
