//! The `mqtt` source end to end: the real binary (`iotel agent`) subscribes
//! to a real Mosquitto; a publisher sends a payload that is not JSON, then
//! one with a `traceparent` user property (MQTT v5); a `file` sink records
//! what came through. The bad message is counted and the good one arrives
//! as a log record and a consumer span with the publisher's trace id and
//! parent span.

#![allow(clippy::unwrap_used)]

mod util;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use std::time::Duration;
use util::{Iotel, Mosquitto, wait_for};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn publish(port: u16, topic: &str, payload: &[u8], props: &[(&str, &str)]) {
    let (client, mut events) = AsyncClient::new(MqttOptions::new("e2e-pub", "127.0.0.1", port), 10);
    let properties = PublishProperties {
        user_properties: props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..PublishProperties::default()
    };
    client
        .publish_with_properties(topic, QoS::AtLeastOnce, false, payload.to_vec(), properties)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let e = tokio::time::timeout_at(deadline, events.poll())
            .await
            .expect("PUBACK within 10s")
            .unwrap();
        if let Event::Incoming(Packet::PubAck(_)) = e {
            break;
        }
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
}

#[tokio::test]
async fn a_published_traceparent_parents_the_agents_consumer_span_and_bad_payloads_are_counted() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let config = format!(
        r#"
[api]
address = "{{API}}"

[sources.plant]
type = "mqtt"
url = "mqtt://127.0.0.1:{}"
topics = ["plant/+/reading"]
client_id = "iotel-e2e"

[sinks.out]
type = "file"
inputs = ["plant"]
path = "{{DIR}}/received.ndjson"
"#,
        broker.port
    );
    let node = Iotel::start("agent", &config, &[]);
    wait_for("the agent to subscribe", Duration::from_secs(15), || {
        broker
            .log()
            .contains(" iotel-e2e 1 plant/+/reading")
            .then_some(())
    });
    publish(broker.port, "plant/p1/reading", b"\x00not json", &[]).await;
    publish(
        broker.port,
        "plant/p1/reading",
        br#"{"message": "ok", "kpa": 101.3}"#,
        &[("traceparent", TRACEPARENT)],
    )
    .await;

    let path = node.dir().join("received.ndjson");
    let records: Vec<serde_json::Value> = wait_for("two records", Duration::from_secs(15), || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let v: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (v.len() >= 2).then_some(v)
    });
    let log = records.iter().find(|r| r["signal"] == "log").unwrap();
    assert_eq!(log["message"], "ok");
    assert_eq!(log["fields"]["kpa"], 101.3);
    assert_eq!(log["labels"]["topic"], "plant/p1/reading");
    let span = records.iter().find(|r| r["signal"] == "span").unwrap();
    assert_eq!(span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(span["name"], "receive plant/+/reading");
    assert_eq!(span["attributes"]["span.kind"], "consumer");
    assert_eq!(
        span["attributes"]["messaging.destination.name"],
        "plant/p1/reading"
    );
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(
        node.metric(
            "iotel_component_discarded_events_total",
            &["component_id=\"plant\"", "reason=\"invalid_json\""]
        ),
        1.0
    );
}
