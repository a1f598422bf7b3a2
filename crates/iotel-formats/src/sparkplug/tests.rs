#![allow(clippy::unwrap_used)]

use super::*;
use iotel_model::Labels;
use proptest::prelude::*;

fn metric(
    name: Option<&str>,
    alias: Option<u64>,
    datatype: Option<u32>,
    value: Value,
) -> PayloadMetric {
    PayloadMetric {
        name: name.map(str::to_string),
        alias,
        datatype,
        value: Some(value),
        ..PayloadMetric::default()
    }
}

fn payload(seq: Option<u64>, timestamp: u64, metrics: Vec<PayloadMetric>) -> Payload {
    Payload {
        timestamp: Some(timestamp),
        metrics,
        seq,
        ..Payload::default()
    }
}

/// (name, labels as "k=v,…", value bits as f64, timestamp) of each sample.
fn summary(out: &Outcome) -> Vec<(String, String, f64, i64)> {
    out.samples
        .iter()
        .map(|m| {
            let labels: Vec<String> = m
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect();
            (
                m.name.to_string(),
                labels.join(","),
                m.value,
                m.timestamp_ms,
            )
        })
        .collect()
}

fn handle(host: &mut Host, topic: &str, p: &Payload) -> Outcome {
    // Round-trip through the wire format, as the source sees it.
    let bytes = p.encode_to_vec();
    let decoded = decode_payload(&bytes).unwrap();
    host.handle(&Topic::parse(topic).unwrap(), &decoded, 999)
}

#[test]
fn topics_parse_into_group_type_node_and_device() {
    assert_eq!(
        Topic::parse("spBv1.0/plant1/DDATA/gw7/pump-3"),
        Ok(Topic::Message {
            group: "plant1",
            kind: MessageType::DData,
            edge_node: "gw7",
            device: Some("pump-3"),
        })
    );
    assert_eq!(Topic::parse("spBv1.0/STATE/scada"), Ok(Topic::State));
    assert_eq!(
        Topic::parse("sensors/a"),
        Err("expected a topic under spBv1.0/".to_string())
    );
    assert_eq!(
        Topic::parse("spBv1.0/g/NDATA/n/d"),
        Err("NDATA takes no device id".to_string())
    );
    assert_eq!(
        Topic::parse("spBv1.0/g/DDATA/n"),
        Err("DDATA needs a device id as the fifth topic level".to_string())
    );
    assert!(
        Topic::parse("spBv1.0/g/XDATA/n")
            .unwrap_err()
            .contains("\"XDATA\"")
    );
}

#[test]
fn metric_names_are_sanitised_to_prometheus_names() {
    assert_eq!(metric_name("Motor/RPM"), "Motor_RPM");
    assert_eq!(metric_name("1st stage"), "_1st_stage");
    assert_eq!(metric_name("temp:c"), "temp:c");
    assert_eq!(metric_name(""), "_");
}

#[test]
fn signed_integers_are_read_by_their_datatype() {
    assert_eq!(
        sample_value(&Value::Int(0xff), Some(datatype::INT8)),
        Some(-1.0)
    );
    assert_eq!(
        sample_value(&Value::Int(0xfffe), Some(datatype::INT16)),
        Some(-2.0)
    );
    assert_eq!(
        sample_value(&Value::Int(u32::MAX), Some(datatype::INT32)),
        Some(-1.0)
    );
    assert_eq!(
        sample_value(&Value::Int(u32::MAX), Some(7)),
        Some(4_294_967_295.0)
    );
    assert_eq!(
        sample_value(&Value::Long(u64::MAX), Some(datatype::INT64)),
        Some(-1.0)
    );
    assert_eq!(sample_value(&Value::Boolean(true), Some(11)), Some(1.0));
    assert_eq!(sample_value(&Value::String("x".into()), Some(12)), None);
}

#[test]
fn birth_data_by_alias_gap_and_death_come_out_as_exact_samples() {
    let mut host = Host::new();
    let birth = payload(
        Some(0),
        1000,
        vec![
            metric(Some("bdSeq"), None, Some(datatype::INT64), Value::Long(3)),
            metric(Some("Motor/RPM"), Some(1), Some(9), Value::Float(1500.0)),
            metric(Some("Running"), Some(2), Some(11), Value::Boolean(true)),
        ],
    );
    let out = handle(&mut host, "spBv1.0/plant/NBIRTH/gw", &birth);
    assert_eq!(
        summary(&out),
        vec![
            (
                "Motor_RPM".into(),
                "edge_node=gw,group=plant".into(),
                1500.0,
                1000
            ),
            (
                "Running".into(),
                "edge_node=gw,group=plant".into(),
                1.0,
                1000
            ),
        ]
    );
    assert_eq!(out.sequence_gap, None);

    // Data by alias only, with the datatype left out as edge nodes do.
    let data = payload(
        Some(1),
        2000,
        vec![
            metric(None, Some(1), None, Value::Float(1600.0)),
            metric(None, Some(9), None, Value::Float(1.0)),
        ],
    );
    let out = handle(&mut host, "spBv1.0/plant/NDATA/gw", &data);
    assert_eq!(
        summary(&out),
        vec![(
            "Motor_RPM".into(),
            "edge_node=gw,group=plant".into(),
            1600.0,
            2000
        )]
    );
    assert_eq!(
        out.dropped,
        vec![Dropped {
            reason: "sparkplug_unknown_alias",
            count: 1,
            example: "alias 9, which no birth certificate declared".into(),
        }]
    );

    // A device is born with a signed datatype; seq 2 → 4 is a gap.
    let dbirth = payload(
        Some(2),
        3000,
        vec![metric(
            Some("temp"),
            Some(5),
            Some(datatype::INT16),
            Value::Int(0xfff6),
        )],
    );
    let out = handle(&mut host, "spBv1.0/plant/DBIRTH/gw/pump", &dbirth);
    assert_eq!(
        summary(&out),
        vec![(
            "temp".into(),
            "device=pump,edge_node=gw,group=plant".into(),
            -10.0,
            3000
        )]
    );
    let ddata = payload(
        Some(4),
        4000,
        vec![metric(None, Some(5), None, Value::Int(0xfff5))],
    );
    let out = handle(&mut host, "spBv1.0/plant/DDATA/gw/pump", &ddata);
    assert_eq!(
        out.sequence_gap,
        Some(SequenceGap {
            expected: 3,
            got: 4
        })
    );
    assert_eq!(
        summary(&out),
        vec![(
            "temp".into(),
            "device=pump,edge_node=gw,group=plant".into(),
            -11.0,
            4000
        )]
    );

    // An old session's NDEATH (bdSeq 2) changes nothing; the current one
    // turns every series of the node and its devices stale.
    let old_death = payload(
        None,
        5000,
        vec![metric(Some("bdSeq"), None, None, Value::Long(2))],
    );
    let out = handle(&mut host, "spBv1.0/plant/NDEATH/gw", &old_death);
    assert!(out.samples.is_empty());
    assert_eq!(out.ignored, Some("NDEATH of an earlier session (bdSeq)"));
    let death = payload(
        None,
        6000,
        vec![metric(Some("bdSeq"), None, None, Value::Long(3))],
    );
    let out = handle(&mut host, "spBv1.0/plant/NDEATH/gw", &death);
    let got: Vec<(String, String, u64, i64)> = out
        .samples
        .iter()
        .map(|m| {
            let labels: Vec<String> = m
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect();
            (
                m.name.to_string(),
                labels.join(","),
                m.value.to_bits(),
                m.timestamp_ms,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "Motor_RPM".into(),
                "edge_node=gw,group=plant".into(),
                STALE_NAN,
                6000
            ),
            (
                "Running".into(),
                "edge_node=gw,group=plant".into(),
                STALE_NAN,
                6000
            ),
            (
                "temp".into(),
                "device=pump,edge_node=gw,group=plant".into(),
                STALE_NAN,
                6000
            ),
        ]
    );

    // After the death, data waits for a new birth.
    let out = handle(&mut host, "spBv1.0/plant/NDATA/gw", &data);
    assert!(out.samples.is_empty());
    assert_eq!(
        out.dropped,
        vec![Dropped {
            reason: "sparkplug_no_birth",
            count: 2,
            example: "NDATA before the birth certificate it needs".into(),
        }]
    );
}

#[test]
fn ddeath_marks_only_that_device_stale() {
    let mut host = Host::new();
    handle(
        &mut host,
        "spBv1.0/g/NBIRTH/n",
        &payload(
            Some(0),
            1,
            vec![metric(Some("up"), None, Some(11), Value::Boolean(true))],
        ),
    );
    handle(
        &mut host,
        "spBv1.0/g/DBIRTH/n/d",
        &payload(
            Some(1),
            2,
            vec![metric(Some("v"), None, Some(10), Value::Double(2.5))],
        ),
    );
    let out = handle(
        &mut host,
        "spBv1.0/g/DDEATH/n/d",
        &payload(Some(2), 3, vec![]),
    );
    assert_eq!(out.samples.len(), 1);
    assert_eq!(&*out.samples[0].name, "v");
    assert_eq!(out.samples[0].labels.get("device"), Some("d"));
    assert_eq!(out.samples[0].value.to_bits(), STALE_NAN);
    assert_eq!(out.sequence_gap, None);
    // The device's data needs a new DBIRTH; the node's still flows.
    let out = handle(
        &mut host,
        "spBv1.0/g/DDATA/n/d",
        &payload(
            Some(3),
            4,
            vec![metric(Some("v"), None, None, Value::Double(1.0))],
        ),
    );
    assert_eq!(out.dropped[0].reason, "sparkplug_no_birth");
    let out = handle(
        &mut host,
        "spBv1.0/g/NDATA/n",
        &payload(
            Some(4),
            5,
            vec![metric(Some("up"), None, None, Value::Boolean(false))],
        ),
    );
    assert_eq!(out.samples[0].value, 0.0);
    assert_eq!(
        out.samples[0].labels,
        Labels::from_pairs([("edge_node", "n"), ("group", "g")])
    );
}

#[test]
fn sequence_numbers_wrap_after_255_without_a_gap() {
    let mut host = Host::new();
    handle(
        &mut host,
        "spBv1.0/g/NBIRTH/n",
        &payload(Some(255), 1, vec![]),
    );
    let out = handle(&mut host, "spBv1.0/g/NDATA/n", &payload(Some(0), 2, vec![]));
    assert_eq!(out.sequence_gap, None);
}

#[test]
fn strings_and_nulls_are_dropped_with_their_reason() {
    let mut host = Host::new();
    let mut null = metric(Some("n"), None, Some(10), Value::Double(0.0));
    null.is_null = Some(true);
    null.value = None;
    let out = handle(
        &mut host,
        "spBv1.0/g/NBIRTH/n",
        &payload(
            Some(0),
            1,
            vec![
                metric(Some("s"), None, Some(12), Value::String("x".into())),
                null,
            ],
        ),
    );
    assert!(out.samples.is_empty());
    let reasons: Vec<_> = out.dropped.iter().map(|d| (d.reason, d.count)).collect();
    assert_eq!(
        reasons,
        vec![
            ("sparkplug_unsupported_value", 1),
            ("sparkplug_null_value", 1)
        ]
    );
}

#[test]
fn commands_and_host_state_are_ignored() {
    let mut host = Host::new();
    let out = handle(&mut host, "spBv1.0/g/NCMD/n", &payload(None, 1, vec![]));
    assert_eq!(out.ignored, Some("NCMD"));
    let out = host.handle(&Topic::State, &Payload::default(), 0);
    assert_eq!(out.ignored, Some("STATE"));
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut host = Host::new();
        if let Ok(p) = decode_payload(&bytes) {
            for topic in ["spBv1.0/g/NBIRTH/n", "spBv1.0/g/NDATA/n", "spBv1.0/g/DBIRTH/n/d",
                          "spBv1.0/g/DDATA/n/d", "spBv1.0/g/DDEATH/n/d", "spBv1.0/g/NDEATH/n"] {
                let _ = host.handle(&Topic::parse(topic).unwrap(), &p, 0);
            }
        }
    }

    #[test]
    fn parsing_arbitrary_topics_never_panics(topic in "[a-zA-Z0-9/.]{0,40}") {
        let _ = Topic::parse(&topic);
    }
}
