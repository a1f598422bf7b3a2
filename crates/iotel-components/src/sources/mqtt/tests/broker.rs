//! The source against a real Mosquitto broker.

use super::super::Config;
use super::mosquitto::Mosquitto;
use crate::BuildContext;
use iotel_engine::shutdown::{self, ShutdownTrigger};
use iotel_engine::{
    ComponentError, ComponentKey, ComponentMetrics, Output, SourceContext, TestReceiver,
};
use iotel_formats::sparkplug::{Payload, PayloadMetric, STALE_NAN, Value};
use iotel_model::{Events, LogRecord, Metric, Span};
use prost::Message;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use std::time::Duration;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_ID: &str = "b7ad6b7169203331";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Running {
    rx: TestReceiver,
    metrics: ComponentMetrics,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), ComponentError>>,
}

impl Running {
    async fn start(broker: &Mosquitto, client_id: &str, extra: &str) -> Running {
        let src = Running::start_unsubscribed(broker, client_id, extra);
        let cfg = Running::config(broker, client_id, extra);
        for filter in &cfg.topics {
            broker.wait_subscribed(client_id, filter, 1).await;
        }
        src
    }

    /// The config: `extra` may set its own `url`.
    fn config(broker: &Mosquitto, client_id: &str, extra: &str) -> Config {
        let url = if extra.contains("url =") {
            String::new()
        } else {
            format!("url = \"{}\"\n", broker.url())
        };
        toml::from_str(&format!("{url}client_id = \"{client_id}\"\n{extra}")).unwrap()
    }

    /// Starts without waiting for the subscription.
    fn start_unsubscribed(broker: &Mosquitto, client_id: &str, extra: &str) -> Running {
        let cfg = Running::config(broker, client_id, extra);
        assert_eq!(cfg.validate(), vec![]);
        let (out, rx) = Output::for_test(64);
        let metrics = ComponentMetrics::detached("plant", "mqtt");
        let (trigger, shutdown) = shutdown::channel();
        let cx = SourceContext {
            key: ComponentKey {
                id: "plant".into(),
                type_name: "mqtt".into(),
            },
            out,
            shutdown,
            metrics: metrics.clone(),
            data_dir: std::env::temp_dir(),
        };
        let source = cfg.build(&BuildContext::for_test("plant")).unwrap();
        let task = tokio::spawn(source.run(cx));
        Running {
            rx,
            metrics,
            trigger,
            task,
        }
    }

    async fn next(&mut self) -> Events {
        tokio::time::timeout(Duration::from_secs(15), self.rx.recv())
            .await
            .expect("an event batch within 15s")
            .expect("the source is running")
    }

    async fn next_logs(&mut self) -> Vec<LogRecord> {
        match self.next().await {
            Events::Logs(l) => l,
            other => panic!("expected logs, got {other:?}"),
        }
    }

    async fn next_span(&mut self) -> Span {
        match self.next().await {
            Events::Traces(mut s) if s.len() == 1 => s.remove(0),
            other => panic!("expected one span, got {other:?}"),
        }
    }

    async fn next_metrics(&mut self) -> Vec<Metric> {
        match self.next().await {
            Events::Metrics(m) => m,
            other => panic!("expected metrics, got {other:?}"),
        }
    }

    async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the source stops within 10s")
            .unwrap()
            .unwrap();
    }
}

/// Publishes one QoS 1 message over MQTT v5 and waits for the broker's
/// PUBACK.
async fn publish_v5(broker: &Mosquitto, topic: &str, payload: &[u8], props: &[(&str, &str)]) {
    use rumqttc::v5::{AsyncClient, Event, MqttOptions, mqttbytes::v5::Packet};
    let opts = MqttOptions::new("test-publisher", "127.0.0.1", broker.port);
    let (client, mut events) = AsyncClient::new(opts, 10);
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

/// The same over MQTT 3.1.1 (no user properties).
async fn publish_v311(broker: &Mosquitto, topic: &str, payload: &[u8]) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
    let opts = MqttOptions::new("test-publisher-311", "127.0.0.1", broker.port);
    let (client, mut events) = AsyncClient::new(opts, 10);
    client
        .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.to_vec())
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

fn attr<'a>(span: &'a Span, key: &str) -> &'a serde_json::Value {
    span.attributes
        .get(key)
        .unwrap_or_else(|| panic!("span has no {key}: {span:?}"))
}

#[tokio::test]
async fn a_v5_traceparent_user_property_parents_the_consumer_span() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let mut src = Running::start(&broker, "iotel-t-v5", "topics = [\"plant/+/temp\"]").await;
    publish_v5(
        &broker,
        "plant/t1/temp",
        br#"{"message": "reading", "celsius": 21.5}"#,
        &[("traceparent", TRACEPARENT), ("tracestate", "vendor=x")],
    )
    .await;
    let records = src.next_logs().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].message, "reading");
    assert_eq!(records[0].labels.get("topic"), Some("plant/t1/temp"));
    assert_eq!(
        records[0].fields.get("celsius"),
        Some(&serde_json::json!(21.5))
    );

    let span = src.next_span().await;
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(
        span.parent_span_id.map(|p| hex(&p)).as_deref(),
        Some(PARENT_ID)
    );
    assert_ne!(hex(&span.span_id), PARENT_ID);
    assert_ne!(span.span_id, [0; 8]);
    assert_eq!(span.name, "receive plant/+/temp");
    assert!(span.start_ns <= span.end_ns);
    assert_eq!(attr(&span, "span.kind"), "consumer");
    assert_eq!(attr(&span, "messaging.system"), "mqtt");
    assert_eq!(attr(&span, "messaging.operation.type"), "receive");
    assert_eq!(attr(&span, "messaging.destination.name"), "plant/t1/temp");
    assert_eq!(
        attr(&span, "messaging.destination.subscription.name"),
        "plant/+/temp"
    );
    assert_eq!(attr(&span, "messaging.client.id"), "iotel-t-v5");
    assert_eq!(attr(&span, "messaging.message.body.size"), 39);
    assert_eq!(attr(&span, "server.port"), broker.port);

    // Without trace context, no span (spans = "traced"): the next batch is
    // the record of the following message.
    publish_v5(&broker, "plant/t2/temp", br#"{"celsius": 3}"#, &[]).await;
    let records = src.next_logs().await;
    assert_eq!(records[0].labels.get("topic"), Some("plant/t2/temp"));
    publish_v5(&broker, "plant/t3/temp", br#"{"celsius": 4}"#, &[]).await;
    let records = src.next_logs().await;
    assert_eq!(records[0].labels.get("topic"), Some("plant/t3/temp"));
    assert_eq!(
        src.metrics.sent_total(),
        0,
        "Output::for_test counts on its own"
    );
    src.stop().await;
}

#[tokio::test]
async fn a_v311_json_envelope_parents_the_consumer_span() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let mut src = Running::start(
        &broker,
        "iotel-t-311",
        "protocol = \"v311\"\ntopics = [\"dev/#\"]\ntrace_envelope = true",
    )
    .await;
    let payload = format!(r#"{{"traceparent": "{TRACEPARENT}", "v": 1}}"#);
    publish_v311(&broker, "dev/a", payload.as_bytes()).await;
    let records = src.next_logs().await;
    assert_eq!(records[0].fields.get("v"), Some(&serde_json::json!(1)));
    let span = src.next_span().await;
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(
        span.parent_span_id.map(|p| hex(&p)).as_deref(),
        Some(PARENT_ID)
    );
    assert_eq!(span.name, "receive dev/#");
    src.stop().await;
}

#[tokio::test]
async fn a_payload_that_is_not_json_is_counted_and_the_next_good_one_flows() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let mut src = Running::start(&broker, "iotel-t-bad", "topics = [\"s/#\"]").await;
    publish_v5(&broker, "s/1", b"not json", &[("traceparent", TRACEPARENT)]).await;
    publish_v5(&broker, "s/2", br#"{"ok": true}"#, &[]).await;
    // The bad message still gets its span, marked as an error.
    let span = src.next_span().await;
    assert_eq!(attr(&span, "error.type"), "invalid_json");
    assert_eq!(span.status, iotel_model::SpanStatus::Error);
    let records = src.next_logs().await;
    assert_eq!(records[0].labels.get("topic"), Some("s/2"));
    assert_eq!(src.metrics.discards("invalid_json").get(), 1);
    src.stop().await;
}

fn m(name: Option<&str>, alias: Option<u64>, datatype: Option<u32>, value: Value) -> PayloadMetric {
    PayloadMetric {
        name: name.map(str::to_string),
        alias,
        datatype,
        value: Some(value),
        ..PayloadMetric::default()
    }
}

fn spb(seq: Option<u64>, ts: u64, metrics: Vec<PayloadMetric>) -> Vec<u8> {
    Payload {
        timestamp: Some(ts),
        metrics,
        seq,
        ..Payload::default()
    }
    .encode_to_vec()
}

fn samples(ms: &[Metric]) -> Vec<(String, Option<String>, u64, i64)> {
    ms.iter()
        .map(|s| {
            (
                s.name.to_string(),
                s.labels.get("device").map(str::to_string),
                s.value.to_bits(),
                s.timestamp_ms,
            )
        })
        .collect()
}

#[tokio::test]
async fn sparkplug_birth_alias_data_gap_and_death_flow_as_exact_samples() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let mut src = Running::start(
        &broker,
        "iotel-t-spb",
        "topics = [\"spBv1.0/plant/#\"]\nformat = \"sparkplug_b\"",
    )
    .await;
    let t = "spBv1.0/plant";
    publish_v5(
        &broker,
        &format!("{t}/NBIRTH/gw"),
        &spb(
            Some(0),
            1000,
            vec![
                m(Some("bdSeq"), None, Some(4), Value::Long(0)),
                m(Some("Line/Speed"), Some(1), Some(10), Value::Double(2.5)),
            ],
        ),
        &[],
    )
    .await;
    let got = src.next_metrics().await;
    assert_eq!(
        samples(&got),
        vec![("Line_Speed".into(), None, 2.5f64.to_bits(), 1000)]
    );
    assert_eq!(got[0].labels.get("group"), Some("plant"));
    assert_eq!(got[0].labels.get("edge_node"), Some("gw"));

    publish_v5(
        &broker,
        &format!("{t}/DBIRTH/gw/pump"),
        &spb(
            Some(1),
            2000,
            vec![m(Some("rpm"), Some(7), Some(3), Value::Int(1200))],
        ),
        &[],
    )
    .await;
    assert_eq!(
        samples(&src.next_metrics().await),
        vec![("rpm".into(), Some("pump".into()), 1200f64.to_bits(), 2000)]
    );
    // By alias; seq 3 where 2 was due: a gap, counted; the data flows.
    publish_v5(
        &broker,
        &format!("{t}/DDATA/gw/pump"),
        &spb(
            Some(3),
            3000,
            vec![
                m(None, Some(7), None, Value::Int(1300)),
                m(None, Some(99), None, Value::Int(1)),
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(
        samples(&src.next_metrics().await),
        vec![("rpm".into(), Some("pump".into()), 1300f64.to_bits(), 3000)]
    );
    let gaps = src.metrics.registry().counter(
        "iotel_sparkplug_sequence_gaps_total",
        "",
        &[("component_id", "plant")],
    );
    assert_eq!(gaps.get(), 1);
    assert_eq!(src.metrics.discards("sparkplug_unknown_alias").get(), 1);

    publish_v5(
        &broker,
        &format!("{t}/NDEATH/gw"),
        &spb(
            None,
            4000,
            vec![m(Some("bdSeq"), None, Some(4), Value::Long(0))],
        ),
        &[],
    )
    .await;
    assert_eq!(
        samples(&src.next_metrics().await),
        vec![
            ("Line_Speed".into(), None, STALE_NAN, 4000),
            ("rpm".into(), Some("pump".into()), STALE_NAN, 4000),
        ]
    );
    // Data before a birth: counted, nothing flows; the next birth does.
    publish_v5(
        &broker,
        &format!("{t}/NDATA/gw"),
        &spb(
            Some(5),
            5000,
            vec![m(None, Some(1), None, Value::Double(1.0))],
        ),
        &[],
    )
    .await;
    publish_v5(
        &broker,
        &format!("{t}/NBIRTH/gw"),
        &spb(
            Some(0),
            6000,
            vec![m(Some("up"), None, Some(11), Value::Boolean(true))],
        ),
        &[],
    )
    .await;
    assert_eq!(
        samples(&src.next_metrics().await),
        vec![("up".into(), None, 1f64.to_bits(), 6000)]
    );
    assert_eq!(src.metrics.discards("sparkplug_no_birth").get(), 1);
    src.stop().await;
}

#[tokio::test]
async fn the_source_reconnects_and_resubscribes_after_the_broker_restarts() {
    let Some(mut broker) = Mosquitto::start() else {
        return;
    };
    let mut src = Running::start(&broker, "iotel-t-restart", "topics = [\"r/#\"]").await;
    publish_v5(&broker, "r/1", br#"{"n": 1}"#, &[]).await;
    assert_eq!(
        src.next_logs().await[0].fields.get("n"),
        Some(&serde_json::json!(1))
    );
    broker.restart();
    // Killed, it saved no session: the source subscribes again.
    broker.wait_subscribed("iotel-t-restart", "r/#", 2).await;
    publish_v5(&broker, "r/2", br#"{"n": 2}"#, &[]).await;
    assert_eq!(
        src.next_logs().await[0].fields.get("n"),
        Some(&serde_json::json!(2))
    );
    assert!(src.metrics.errors("connection").get() >= 1);
    src.stop().await;
}

#[tokio::test]
async fn a_message_no_sink_could_store_is_not_acknowledged_and_comes_again() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let id = "iotel-t-ack";
    let mut src = Running::start(&broker, id, "topics = [\"q/#\"]").await;
    publish_v5(&broker, "q/1", br#"{"n": 1}"#, &[]).await;
    // The sink drops the batch without marking it done: not stored.
    let batch = tokio::time::timeout(Duration::from_secs(15), src.rx.recv_batch())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&batch.events, Events::Logs(l) if l[0].fields.get("n") == Some(&serde_json::json!(1)))
    );
    drop(batch);
    // The source reconnects on the kept session and the broker sends the
    // message again; stored this time (the test receiver marks it done).
    let records = src.next_logs().await;
    assert_eq!(records[0].fields.get("n"), Some(&serde_json::json!(1)));
    assert_eq!(src.metrics.errors("not_stored").get(), 1);
    assert_eq!(src.metrics.errors("connection").get(), 0);
    broker
        .wait_logged(&format!("Received PUBACK from {id}"), 1)
        .await;
    src.stop().await;

    // Acknowledged: a new session on the same client id gets only what is
    // new.
    let mut src = Running::start_resumed(&broker, id, "topics = [\"q/#\"]").await;
    publish_v5(&broker, "q/2", br#"{"n": 2}"#, &[]).await;
    let records = src.next_logs().await;
    assert_eq!(records[0].fields.get("n"), Some(&serde_json::json!(2)));
    src.stop().await;
}

impl Running {
    /// Starts on a session the broker kept: it does not subscribe again,
    /// so wait for the connection instead.
    async fn start_resumed(broker: &Mosquitto, client_id: &str, extra: &str) -> Running {
        let connected = format!(" as {client_id} (");
        let before = broker.log().matches(&connected).count();
        let src = Running::start_unsubscribed(broker, client_id, extra);
        broker.wait_logged(&connected, before + 1).await;
        src
    }
}

#[tokio::test]
async fn mqtts_with_credentials_consumes_and_a_wrong_password_is_counted() {
    let Some(broker) = Mosquitto::start_tls() else {
        return;
    };
    let d = broker.dir.path().display().to_string();
    let tls_port = broker.tls_port.unwrap();
    let mut src = Running::start(
        &broker,
        "iotel-t-tls",
        &format!(
            "url = \"mqtts://127.0.0.1:{tls_port}\"\ntopics = [\"secure/#\"]\n\
             username = \"iotel\"\npassword_file = \"{d}/password\"\n\
             tls = {{ ca_file = \"{d}/ca.pem\" }}"
        ),
    )
    .await;
    publish_v5(&broker, "secure/a", br#"{"ok": 1}"#, &[]).await;
    assert_eq!(
        src.next_logs().await[0].labels.get("topic"),
        Some("secure/a")
    );
    src.stop().await;

    let bad = Running::start_unsubscribed(
        &broker,
        "iotel-t-badpw",
        &format!(
            "url = \"mqtts://127.0.0.1:{tls_port}\"\nusername = \"iotel\"\n\
             password = \"wrong\"\ntls = {{ ca_file = \"{d}/ca.pem\" }}"
        ),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while bad.metrics.errors("connection").get() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "refusals not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bad.stop().await;
}

#[tokio::test]
async fn a_ca_file_replaced_while_the_broker_is_refused_is_used_at_the_next_reconnection() {
    let Some(broker) = Mosquitto::start_tls() else {
        return;
    };
    let d = broker.dir.path().display().to_string();
    let tls_port = broker.tls_port.unwrap();
    // Starts trusting a CA that did not sign the broker's certificate.
    let mine = tempfile::tempdir().unwrap();
    let ca_file = mine.path().join("ca.pem");
    std::fs::write(
        &ca_file,
        crate::tls::test_pki::Ca::new("not the broker's CA").pem,
    )
    .unwrap();
    let id = "iotel-t-rotate";
    let mut src = Running::start_unsubscribed(
        &broker,
        id,
        &format!(
            "url = \"mqtts://127.0.0.1:{tls_port}\"\ntopics = [\"rot/#\"]\n\
             username = \"iotel\"\npassword = \"s3cret\"\nmax_reconnect_delay = \"200ms\"\n\
             tls = {{ ca_file = \"{}\" }}",
            ca_file.display()
        ),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while src.metrics.errors("connection").get() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the unknown CA was not refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!broker.log().contains(&format!(" as {id} (")));

    // The broker's CA, written over the file: no restart, the next
    // reconnection trusts it.
    std::fs::copy(format!("{d}/ca.pem"), &ca_file).unwrap();
    broker.wait_subscribed(id, "rot/#", 1).await;
    publish_v5(&broker, "rot/a", br#"{"n": 1}"#, &[]).await;
    assert_eq!(
        src.next_logs().await[0].fields.get("n"),
        Some(&serde_json::json!(1))
    );
    src.stop().await;
}

#[tokio::test]
async fn a_client_certificate_rotated_in_place_is_presented_at_the_next_reconnection() {
    let clients = crate::tls::test_pki::Ca::new("device CA");
    let Some(mut broker) = Mosquitto::start_mtls(&clients.pem) else {
        return;
    };
    let d = broker.dir.path().display().to_string();
    let tls_port = broker.tls_port.unwrap();
    let mine = tempfile::tempdir().unwrap();
    let m = mine.path().display().to_string();
    clients
        .client("dev-a", None, &[0x0a])
        .write(mine.path(), "client");
    let id = "iotel-t-certrot";
    let mut src = Running::start(
        &broker,
        id,
        &format!(
            "url = \"mqtts://127.0.0.1:{tls_port}\"\ntopics = [\"cr/#\"]\n\
             max_reconnect_delay = \"200ms\"\n\
             tls = {{ ca_file = \"{d}/ca.pem\", cert_file = \"{m}/client.pem\", \
             key_file = \"{m}/client.key\" }}"
        ),
    )
    .await;
    // Mosquitto takes the certificate's CN as the username and logs it.
    broker.wait_logged(&format!(" as {id} ("), 1).await;
    assert!(broker.log().contains("u'dev-a'"), "{}", broker.log());

    // Renewed in place while connected: the open connection keeps the old
    // one; after the broker restarts the reconnection presents the new.
    clients
        .client("dev-b", None, &[0x0b])
        .write(mine.path(), "client");
    broker.restart();
    broker.wait_logged("u'dev-b'", 1).await;
    // The killed broker kept no session: the source subscribes again.
    broker.wait_subscribed(id, "cr/#", 2).await;
    assert_eq!(src.metrics.errors("tls_reload_failed").get(), 0);
    publish_v5(&broker, "cr/a", br#"{"n": 2}"#, &[]).await;
    assert_eq!(
        src.next_logs().await[0].fields.get("n"),
        Some(&serde_json::json!(2))
    );
    src.stop().await;
}

#[tokio::test]
async fn tls_server_name_is_checked_against_the_brokers_certificate() {
    let Some(broker) = Mosquitto::start_tls() else {
        return;
    };
    let d = broker.dir.path().display().to_string();
    let tls_port = broker.tls_port.unwrap();
    let cfg = |name: &str| {
        format!(
            "url = \"mqtts://127.0.0.1:{tls_port}\"\ntopics = [\"n/#\"]\n\
             username = \"iotel\"\npassword = \"s3cret\"\n\
             tls = {{ ca_file = \"{d}/ca.pem\", server_name = \"{name}\" }}"
        )
    };
    // The certificate names localhost (and 127.0.0.1).
    let src = Running::start(&broker, "iotel-t-sni", &cfg("localhost")).await;
    src.stop().await;
    let wrong = Running::start_unsubscribed(&broker, "iotel-t-sni-bad", &cfg("broker.example"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while wrong.metrics.errors("connection").get() < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a wrong name was not refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!broker.log().contains(" as iotel-t-sni-bad ("));
    wrong.stop().await;
}

#[tokio::test]
async fn spans_all_starts_traces_for_untraced_messages_and_bad_traceparents_are_counted() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let mut src = Running::start(
        &broker,
        "iotel-t-all",
        "topics = [\"a/#\"]\nformat = \"raw\"\nspans = \"all\"",
    )
    .await;
    publish_v5(&broker, "a/1", b"plain text", &[]).await;
    assert_eq!(src.next_logs().await[0].message, "plain text");
    let span = src.next_span().await;
    assert_eq!(span.parent_span_id, None);
    assert_ne!(span.trace_id, [0; 16]);
    assert_eq!(attr(&span, "messaging.message.body.size"), 10);

    // An invalid traceparent (uppercase hex): counted, and the message is
    // taken as untraced.
    publish_v5(
        &broker,
        "a/2",
        b"x",
        &[(
            "traceparent",
            "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
        )],
    )
    .await;
    assert_eq!(src.next_logs().await[0].message, "x");
    let span = src.next_span().await;
    assert_eq!(span.parent_span_id, None);
    assert_ne!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(src.metrics.errors("invalid_trace_context").get(), 1);
    src.stop().await;
}

#[tokio::test]
async fn a_bridge_maps_topics_to_devices_and_json_readings_to_samples() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let mut src = Running::start(
        &broker,
        "iotel-t-bridge",
        r#"
topics = ["plant/#"]
format = "json_metrics"
topic_label = ""
topic_pattern = "plant/{site}/{device_id}/+"
spans = "none"
json_metrics = { metric_prefix = "sensor_", label_fields = ["unit"], timestamp_field = "ts" }
"#,
    )
    .await;
    publish_v5(
        &broker,
        "plant/p7/pump-3/telemetry",
        br#"{"temp": 21.5, "battery": {"volts": 3.6}, "unit": "C", "ts": 1700000000000}"#,
        &[],
    )
    .await;
    let got: Vec<(String, String, f64, i64)> = src
        .next_metrics()
        .await
        .iter()
        .map(|m| {
            let l = &m.labels;
            (
                m.name.to_string(),
                format!(
                    "{}/{}/{}",
                    l.get("site").unwrap_or("-"),
                    l.get("device_id").unwrap_or("-"),
                    l.get("unit").unwrap_or("-")
                ),
                m.value,
                m.timestamp_ms,
            )
        })
        .collect();
    let at = 1_700_000_000_000;
    assert_eq!(
        got,
        vec![
            ("sensor_battery_volts".into(), "p7/pump-3/C".into(), 3.6, at),
            ("sensor_temp".into(), "p7/pump-3/C".into(), 21.5, at),
        ]
    );
    // A topic outside the pattern still flows, without its labels, counted.
    publish_v5(&broker, "plant/p7/pump-3", br#"{"temp": 20}"#, &[]).await;
    let m = src.next_metrics().await;
    assert_eq!(m[0].labels.get("device_id"), None);
    assert_eq!(src.metrics.errors("topic_unmatched").get(), 1);
    // An object without readings is dropped, counted; the next one flows.
    publish_v5(
        &broker,
        "plant/p7/fan-1/telemetry",
        br#"{"unit": "C"}"#,
        &[],
    )
    .await;
    publish_v5(
        &broker,
        "plant/p7/fan-1/telemetry",
        br#"[{"rpm": 900}, 4]"#,
        &[],
    )
    .await;
    let m = src.next_metrics().await;
    assert_eq!((m[0].name.as_ref(), m[0].value), ("sensor_rpm", 900.0));
    assert_eq!(m[0].labels.get("device_id"), Some("fan-1"));
    assert_eq!(src.metrics.discards("no_readings").get(), 1);
    assert_eq!(src.metrics.discards("not_an_object").get(), 1);
    src.stop().await;
}
