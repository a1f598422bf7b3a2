//! The shipped role configs working together: an agent sends metrics and
//! logs to a gateway running config/gateway.toml, which forwards them to a
//! cloud node running config/cloud.toml (the embedded default). Only the
//! ports are changed, to free ones. Metrics come out of the cloud's exporter
//! with the agent's labels; log lines land in the cloud's events file.

#![allow(clippy::unwrap_used)]

mod util;

use std::time::Duration;
use util::{Iotel, free_port, http_get, wait_for};

/// A shipped config with each of `ports` replaced by a free one.
fn shipped(name: &str, ports: &[&str]) -> (String, Vec<(String, u16)>) {
    let path = format!("{}/../../config/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(path).unwrap();
    let mut chosen = Vec::new();
    for p in ports {
        let port = free_port();
        let from = format!("127.0.0.1:{p}");
        assert!(text.contains(&from), "{name} listens on {from}");
        text = text.replace(&from, &format!("127.0.0.1:{port}"));
        chosen.push((p.to_string(), port));
    }
    (text, chosen)
}

fn port(chosen: &[(String, u16)], default: &str) -> u16 {
    chosen.iter().find(|(p, _)| p == default).unwrap().1
}

#[test]
fn an_agent_feeds_the_shipped_gateway_which_forwards_to_the_shipped_cloud() {
    let (cloud_text, cloud_ports) = shipped(
        "cloud.toml",
        &["8688", "7080", "4417", "4418", "9202", "3101", "9600"],
    );
    // The events file follows IOTEL_DATA_DIR; here, the node's own dir.
    let cloud_text =
        cloud_text.replace("${IOTEL_DATA_DIR:-/var/lib/iotel}/cloud/", "{DIR}/events/");
    let cloud = Iotel::start_on(port(&cloud_ports, "8688"), "cloud", &cloud_text, &[]);

    let (gateway_text, gateway_ports) = shipped(
        "gateway.toml",
        &["8687", "7070", "4317", "4318", "9201", "3100", "9599"],
    );
    let gateway_text = gateway_text.replace(
        "${IOTEL_CLOUD_URL:-http://127.0.0.1:7080}",
        &format!("http://127.0.0.1:{}", port(&cloud_ports, "7080")),
    );
    let gateway = Iotel::start_on(port(&gateway_ports, "8687"), "gateway", &gateway_text, &[]);

    let agent = Iotel::start(
        "agent",
        &format!(
            r#"
[api]
address = "{{API}}"

[sources.lines]
type = "generator"
signal = "log"
message = "reading"
interval = "20ms"
batch_size = 5
count = 100

[sources.samples]
type = "generator"
signal = "metric"
interval = "50ms"

[transforms.tags]
type = "enrich"
inputs = ["lines", "samples"]
labels = {{ device_id = "pump-7", tenant = "acme" }}

[sinks.up]
type = "iotel"
inputs = ["tags"]
endpoint = "http://127.0.0.1:{}"
batch = {{ max_events = 50, timeout = "50ms" }}
"#,
            port(&gateway_ports, "7070")
        ),
        &[],
    );
    let report = || {
        format!(
            "{}\n{}\n{}",
            cloud.proc.report(),
            gateway.proc.report(),
            agent.proc.report()
        )
    };

    // Logs: all 100 lines in the cloud's events file, with the agent's labels.
    let events_dir = cloud.dir().join("events");
    let lines = wait_for(
        "100 log lines at the cloud",
        Duration::from_secs(60),
        || {
            let mut lines: Vec<serde_json::Value> = std::fs::read_dir(&events_dir)
                .ok()?
                .flatten()
                .flat_map(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .lines()
                        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                        .collect::<Vec<_>>()
                })
                .filter(|v| v["signal"] == "log")
                .collect();
            lines.sort_by_key(|v| v["fields"]["seq"].as_u64());
            (lines.len() >= 100).then_some(lines)
        },
    );
    assert_eq!(lines.len(), 100, "{}", report());
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["message"], format!("reading {i}"));
        assert_eq!(l["labels"]["device_id"], "pump-7");
        assert_eq!(l["labels"]["tenant"], "acme");
    }

    // Metrics: the generator's series on the cloud's exporter, labelled.
    let exporter: std::net::SocketAddr = format!("127.0.0.1:{}", port(&cloud_ports, "9600"))
        .parse()
        .unwrap();
    let body = wait_for(
        "the agent's series at the cloud",
        Duration::from_secs(30),
        || {
            let (_, _, body) = http_get(exporter, "/metrics", None)?;
            body.lines()
                .any(|l| l.contains("device_id=\"pump-7\"") && l.contains("tenant=\"acme\""))
                .then_some(body)
        },
    );
    // And the gateway's own metrics, forwarded with the rest.
    assert!(
        body.contains("iotel_component_received_events_total{"),
        "{body}\n{}",
        report()
    );
    // Nothing was discarded for want of a consumer at the cloud.
    assert_eq!(
        cloud.metric(
            "iotel_component_discarded_events_total",
            &["reason=\"no_consumer\""]
        ),
        0.0,
        "{}",
        report()
    );
}
