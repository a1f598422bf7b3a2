#![allow(clippy::unwrap_used)]

mod broker;
mod mosquitto;

use super::decode::{Decoder, Rejected};
use super::spans::matches;
use super::*;
use iotel_model::{Events, Labels};
use proptest::prelude::*;
use serde_json::json;

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
fn defaults_are_a_local_broker_every_topic_v5_qos1_json_and_traced_spans() {
    let c = config("");
    assert_eq!(c.url, "mqtt://127.0.0.1:1883");
    assert_eq!(c.topics, vec!["#"]);
    assert_eq!(c.protocol, Protocol::V5);
    assert_eq!(c.qos, 1);
    assert!(!c.clean_start);
    assert_eq!(c.format, PayloadFormat::Json);
    assert_eq!(c.spans, SpanPolicy::Traced);
    assert_eq!(c.topic_label, "topic");
    assert!(c.validate().is_empty());
    assert_eq!(c.signals(), SignalSet::LOGS.union(SignalSet::TRACES));
    let c = config("format = \"sparkplug_b\"\nspans = \"none\"");
    assert_eq!(c.signals(), SignalSet::METRICS);
}

#[test]
fn every_config_problem_is_reported_with_its_key() {
    assert_eq!(
        problems(
            r#"
url = "tcp://broker:1883"
topics = ["a/#/b", "a/b+", "ok/+", "ok/+"]
qos = 2
password = "x"
keep_alive = "1s"
format = "raw"
trace_envelope = true
"#
        ),
        vec![
            (
                "url".into(),
                "expected mqtt://host[:port] or mqtts://host[:port], got \"tcp://broker:1883\""
                    .into()
            ),
            (
                "topics[0]".into(),
                "\"a/#/b\": `#` must be a whole level and the last one (like `a/#`)".into()
            ),
            (
                "topics[1]".into(),
                "\"a/b+\": `+` must be a whole level (like `a/+/b`)".into()
            ),
            ("topics[3]".into(), "\"ok/+\" is listed twice".into()),
            ("qos".into(), "expected 0 or 1, got 2".into()),
            (
                "username".into(),
                "a password needs a username (MQTT sends none without it)".into()
            ),
            ("keep_alive".into(), "expected 5s to 65535s, got 1s".into()),
            (
                "trace_envelope".into(),
                "the envelope is a JSON payload's fields: it needs format = \"json\"".into()
            ),
        ]
    );
    assert_eq!(
        problems("url = \"mqtt://b\"\ntls = { cert_file = \"c.pem\" }"),
        vec![
            (
                "tls".into(),
                "mqtt://b is plain MQTT: use mqtts:// for TLS".into()
            ),
            (
                "tls.key_file".into(),
                "cert_file is set: expected key_file with the certificate's private key".into()
            ),
        ]
    );
    assert!(toml::from_str::<Config>("protocol = \"v4\"").is_err());
    assert!(toml::from_str::<Config>("bogus = 1").is_err());
}

#[test]
fn broker_urls_parse_with_default_ports_and_ipv6() {
    let u = BrokerUrl::parse("mqtt://10.0.0.1").unwrap();
    assert_eq!((u.tls, u.host.as_str(), u.port), (false, "10.0.0.1", 1883));
    let u = BrokerUrl::parse("mqtts://broker.local").unwrap();
    assert_eq!((u.tls, u.port), (true, 8883));
    let u = BrokerUrl::parse("mqtt://[::1]:1884").unwrap();
    assert_eq!((u.host.as_str(), u.port), ("::1", 1884));
    assert_eq!(u.to_string(), "mqtt://[::1]:1884");
    assert_eq!(
        BrokerUrl::parse("mqtt://b:0"),
        Err("\"mqtt://b:0\": expected a port 1-65535, got \"0\"".into())
    );
    assert!(BrokerUrl::parse("mqtt://user@b").is_err());
    assert!(BrokerUrl::parse("mqtt://").is_err());
}

#[test]
fn passwords_do_not_show_in_debug_output() {
    let c = config("username = \"u\"\npassword = \"s3cret\"");
    assert!(!format!("{c:?}").contains("s3cret"));
    assert_eq!(c.password.as_ref().map(Password::expose), Some("s3cret"));
}

#[test]
fn the_default_client_id_is_stable_and_safe() {
    let id = default_client_id("plant.1");
    assert_eq!(id, default_client_id("plant.1"));
    assert!(id.starts_with("iotel-") && id.ends_with("-plant-1"), "{id}");
    assert!(
        id.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
}

#[test]
fn topic_filters_match_as_mqtt_says() {
    assert!(matches("a/+/c", "a/b/c"));
    assert!(!matches("a/+/c", "a/b/d"));
    assert!(matches("a/#", "a"));
    assert!(matches("a/#", "a/b/c"));
    assert!(matches("#", "x/y"));
    assert!(!matches("#", "$SYS/x"));
    assert!(!matches("a/b", "a/b/c"));
    assert!(matches("+/+", "/x"));
}

fn decode(
    format: PayloadFormat,
    topic: &str,
    payload: &[u8],
) -> Result<super::decode::Decoded, Rejected> {
    Decoder::new(format, "topic", true).decode(topic, payload, 7)
}

fn logs(events: Option<Events>) -> Vec<iotel_model::LogRecord> {
    match events {
        Some(Events::Logs(l)) => l,
        other => panic!("expected logs, got {other:?}"),
    }
}

#[test]
fn json_objects_and_arrays_become_records_with_the_topic_label() {
    let d = decode(
        PayloadFormat::Json,
        "plant/t1",
        br#"{"message": "hot", "temp": 81.5, "tags": {"a": 1}}"#,
    )
    .unwrap();
    let r = logs(d.events);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].message, "hot");
    assert_eq!(r[0].timestamp_ns, 7);
    assert_eq!(r[0].labels, Labels::from_pairs([("topic", "plant/t1")]));
    assert_eq!(
        serde_json::Value::Object(r[0].fields.clone()),
        json!({"temp": 81.5, "tags": {"a": 1}})
    );

    let d = decode(PayloadFormat::Json, "t", br#"[{"a": 1}, 2, {"b": 2}]"#).unwrap();
    assert_eq!(
        d.dropped,
        vec![(
            "not_an_object",
            1,
            "topic \"t\": 1 element(s) of the array are not JSON objects".into()
        )]
    );
    let r = logs(d.events);
    assert_eq!(r.len(), 2);
    assert_eq!(r[1].fields.get("b"), Some(&json!(2)));
}

#[test]
fn payloads_not_in_the_configured_format_are_rejected_naming_the_topic() {
    let e = decode(PayloadFormat::Json, "s/1", b"{not json").unwrap_err();
    assert_eq!(e.code, "invalid_json");
    assert!(
        e.message
            .starts_with("topic \"s/1\": expected a JSON object or an array of objects: "),
        "{}",
        e.message
    );
    assert_eq!(
        decode(PayloadFormat::Json, "s/1", b"42").unwrap_err(),
        Rejected {
            code: "not_an_object",
            message: "topic \"s/1\": expected a JSON object or an array of objects, got a number"
                .into()
        }
    );
    assert_eq!(
        decode(PayloadFormat::Raw, "s/2", b"ok\xff").unwrap_err(),
        Rejected {
            code: "invalid_utf8",
            message:
                "topic \"s/2\": expected UTF-8 text (format = \"raw\"), got invalid UTF-8 at byte 2"
                    .into()
        }
    );
    assert_eq!(
        decode(PayloadFormat::SparkplugB, "plant/x", b"\x08\x01").unwrap_err(),
        Rejected {
            code: "not_sparkplug_topic",
            message:
                "topic \"plant/x\": expected a topic under spBv1.0/ (format = \"sparkplug_b\")"
                    .into()
        }
    );
    let e = decode(
        PayloadFormat::SparkplugB,
        "spBv1.0/g/NDATA/n",
        b"\xff\xff\xff",
    )
    .unwrap_err();
    assert_eq!(e.code, "invalid_sparkplug");
    assert!(
        e.message.starts_with(
            "topic \"spBv1.0/g/NDATA/n\": expected a Sparkplug B payload (protobuf): "
        )
    );
}

#[test]
fn raw_payloads_become_the_message_and_empty_ones_are_dropped() {
    let r = logs(
        decode(PayloadFormat::Raw, "t", "héllo".as_bytes())
            .unwrap()
            .events,
    );
    assert_eq!(r[0].message, "héllo");
    let d = decode(PayloadFormat::Raw, "t", b"").unwrap();
    assert!(d.events.is_none());
    assert_eq!(d.dropped[0].0, "empty_payload");
}

#[test]
fn the_json_envelope_carries_trace_context() {
    let d = decode(
        PayloadFormat::Json,
        "t",
        br#"{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "v": 1}"#,
    )
    .unwrap();
    let ctx = d.envelope.unwrap().unwrap();
    assert_eq!(
        ctx.span_id.0,
        [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]
    );
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        topic in "[a-zA-Z0-9/.+]{0,30}",
    ) {
        for format in [PayloadFormat::Json, PayloadFormat::Raw, PayloadFormat::SparkplugB] {
            let _ = decode(format, &topic, &bytes);
            let _ = decode(format, "spBv1.0/g/NBIRTH/n", &bytes);
        }
    }

    #[test]
    fn checking_arbitrary_filters_never_panics(filter in "[a-z/+#\\x00]{0,20}") {
        let _ = check_topic_filter(&filter);
        let _ = matches(&filter, "a/b");
    }
}
