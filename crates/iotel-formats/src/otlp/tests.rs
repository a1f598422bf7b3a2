#![allow(clippy::unwrap_used)]

use super::logs::{self, PartialSuccess, Stats};
use super::proto::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use super::proto::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value as Av,
};
use super::proto::logs::v1::SeverityNumber;
use super::*;
use iotel_model::{Labels, LogRecord, Severity};
use proptest::prelude::*;
use prost::Message;
use serde_json::json;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";
const TRACE_BYTES: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const SPAN_BYTES: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];

fn record(ts: i64, labels: &[(&str, &str)], message: &str, fields: serde_json::Value) -> LogRecord {
    let mut r = LogRecord::new(ts, message);
    r.labels = Labels::from_pairs(labels.iter().copied());
    if let serde_json::Value::Object(m) = fields {
        r.fields = m;
    }
    r
}

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Av::StringValue(v.into())),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        ..Default::default()
    }
}

#[test]
fn the_request_decodes_field_by_field() {
    let pump = [("device_id", "d-1"), ("service.name", "pump")];
    let mut first = record(
        1_700_000_000_123_456_789,
        &pump,
        "valve stuck",
        json!({"trace_id": TRACE, "span_id": SPAN, "attempt": 3, "ratio": 0.5, "ok": false,
               "tags": ["a", 1], "ctx": {"k": "v"}, "none": null, "big": 18446744073709551615u64}),
    );
    first.severity = Some(Severity::Error);
    let second = record(5, &[("device_id", "d-2")], "", json!({}));
    let third = record(-7, &pump, "again", json!({}));
    let observed = 1_800_000_000_000_000_000;
    let (body, stats) = logs::encode([first, second, third], observed);
    assert_eq!(stats, Stats::default());

    let request = ExportLogsServiceRequest::decode(body.as_slice()).unwrap();
    assert_eq!(request.resource_logs.len(), 2);
    let rl = &request.resource_logs[0];
    assert_eq!(
        rl.resource.as_ref().unwrap().attributes,
        [kv("device_id", s("d-1")), kv("service.name", s("pump"))]
    );
    assert_eq!(rl.scope_logs.len(), 1);
    assert_eq!(rl.scope_logs[0].scope, None);
    let records = &rl.scope_logs[0].log_records;
    assert_eq!(records.len(), 2);

    let r = &records[0];
    assert_eq!(r.time_unix_nano, 1_700_000_000_123_456_789);
    assert_eq!(r.observed_time_unix_nano, observed);
    assert_eq!(r.severity_number, 17);
    assert_eq!(r.severity_text, "ERROR");
    assert_eq!(r.body, s("valve stuck"));
    assert_eq!(r.trace_id, TRACE_BYTES);
    assert_eq!(r.span_id, SPAN_BYTES);
    assert_eq!(r.flags, 0);
    assert_eq!(r.dropped_attributes_count, 0);
    // Fields in their (sorted) order, ids taken out, values typed.
    assert_eq!(
        r.attributes,
        [
            kv(
                "attempt",
                Some(AnyValue {
                    value: Some(Av::IntValue(3))
                })
            ),
            kv(
                "big",
                Some(AnyValue {
                    value: Some(Av::DoubleValue(18446744073709551615.0))
                })
            ),
            kv(
                "ctx",
                Some(AnyValue {
                    value: Some(Av::KvlistValue(KeyValueList {
                        values: vec![kv("k", s("v"))]
                    }))
                })
            ),
            kv("none", Some(AnyValue { value: None })),
            kv(
                "ok",
                Some(AnyValue {
                    value: Some(Av::BoolValue(false))
                })
            ),
            kv(
                "ratio",
                Some(AnyValue {
                    value: Some(Av::DoubleValue(0.5))
                })
            ),
            kv(
                "tags",
                Some(AnyValue {
                    value: Some(Av::ArrayValue(ArrayValue {
                        values: vec![
                            s("a").unwrap(),
                            AnyValue {
                                value: Some(Av::IntValue(1))
                            }
                        ]
                    }))
                })
            ),
        ]
    );

    let before_1970 = &records[1];
    assert_eq!(before_1970.time_unix_nano, 0, "unknown");
    assert_eq!(before_1970.body, s("again"));

    let rl = &request.resource_logs[1];
    assert_eq!(
        rl.resource.as_ref().unwrap().attributes,
        [kv("device_id", s("d-2"))]
    );
    let r = &rl.scope_logs[0].log_records[0];
    assert_eq!(r.time_unix_nano, 5);
    assert_eq!(r.severity_number, 0);
    assert_eq!(r.severity_text, "");
    assert_eq!(r.body, None, "an empty message is no body");
    assert!(r.trace_id.is_empty() && r.span_id.is_empty() && r.attributes.is_empty());
}

#[test]
fn severities_map_to_the_first_number_of_their_range_and_back() {
    let table = [
        (Severity::Trace, 1, "TRACE", SeverityNumber::Trace),
        (Severity::Debug, 5, "DEBUG", SeverityNumber::Debug),
        (Severity::Info, 9, "INFO", SeverityNumber::Info),
        (Severity::Warn, 13, "WARN", SeverityNumber::Warn),
        (Severity::Error, 17, "ERROR", SeverityNumber::Error),
        (Severity::Fatal, 21, "FATAL", SeverityNumber::Fatal),
    ];
    for (sev, number, text, named) in table {
        assert_eq!(logs::severity_number(sev) as i32, number, "{sev:?}");
        assert_eq!(logs::severity_number(sev), named);
        assert_eq!(logs::severity_text(sev), text);
        for n in number..number + 4 {
            assert_eq!(logs::severity(n, ""), Some(sev), "{n}");
        }
    }
    assert_eq!(logs::severity(0, ""), None);
    assert_eq!(logs::severity(0, "warning"), Some(Severity::Warn));
    assert_eq!(logs::severity(25, "ERROR"), Some(Severity::Error));
    assert_eq!(logs::severity(99, "loud"), None);
    // A number wins over the text.
    assert_eq!(logs::severity(9, "ERROR"), Some(Severity::Info));
}

#[test]
fn invalid_ids_stay_attributes_and_are_counted() {
    let bad = [
        json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e473", "span_id": "00f067aa0ba902b7"}),
        json!({"trace_id": "zzf92f3577b34da6a3ce929d0e0e4736"}),
        json!({"trace_id": "00000000000000000000000000000000", "span_id": "0000000000000000"}),
        json!({"trace_id": 12, "span_id": "00F067AA0BA902B7"}),
        json!({"span_id": "00f067aa0ba902"}),
    ];
    let records = bad.iter().map(|f| record(1, &[], "m", f.clone()));
    let (request, stats) = logs::export_request(records, 0);
    assert_eq!(
        stats,
        Stats {
            invalid_trace_ids: 4,
            invalid_span_ids: 2
        }
    );
    let out = &request.resource_logs[0].scope_logs[0].log_records;
    let keys =
        |i: usize| -> Vec<&str> { out[i].attributes.iter().map(|a| a.key.as_str()).collect() };
    assert_eq!(keys(0), ["trace_id"]);
    assert_eq!(out[0].span_id, SPAN_BYTES);
    assert_eq!(keys(1), ["trace_id"]);
    assert_eq!(keys(2), ["span_id", "trace_id"]);
    assert!(out[2].trace_id.is_empty() && out[2].span_id.is_empty());
    assert_eq!(keys(3), ["trace_id"]);
    assert_eq!(out[3].span_id, SPAN_BYTES, "upper case hex is fine");
    assert_eq!(keys(4), ["span_id"]);
    assert_eq!(
        out[1].attributes[0].value,
        s("zzf92f3577b34da6a3ce929d0e0e4736")
    );
}

#[test]
fn partial_success_says_how_many_were_rejected_and_why() {
    let encode = |p: Option<ExportLogsPartialSuccess>| {
        ExportLogsServiceResponse { partial_success: p }.encode_to_vec()
    };
    assert_eq!(logs::decode_response(b"").unwrap(), None);
    assert_eq!(logs::decode_response(&encode(None)).unwrap(), None);
    assert_eq!(
        logs::decode_response(&encode(Some(ExportLogsPartialSuccess::default()))).unwrap(),
        None
    );
    assert_eq!(
        logs::decode_response(&encode(Some(ExportLogsPartialSuccess {
            rejected_log_records: 2,
            error_message: "2 records too old".into(),
        })))
        .unwrap(),
        Some(PartialSuccess {
            rejected: 2,
            message: "2 records too old".into()
        })
    );
    assert_eq!(
        logs::decode_response(&encode(Some(ExportLogsPartialSuccess {
            rejected_log_records: 0,
            error_message: "deprecated attribute".into(),
        })))
        .unwrap(),
        Some(PartialSuccess {
            rejected: 0,
            message: "deprecated attribute".into()
        })
    );
    assert!(logs::decode_response(&[0xff, 0xff]).is_err());
    let p = PartialSuccess {
        rejected: 7,
        message: "why".into(),
    };
    assert_eq!(
        logs::decode_response(&logs::encode_response(Some(&p))).unwrap(),
        Some(p)
    );
    assert_eq!(logs::encode_response(None), b"");
}

#[test]
fn decoding_falls_back_to_the_observed_time_and_reads_any_body() {
    let resource = Some(super::proto::resource::v1::Resource {
        attributes: vec![
            kv("host", s("h")),
            kv(
                "port",
                Some(AnyValue {
                    value: Some(Av::IntValue(80)),
                }),
            ),
        ],
        ..Default::default()
    });
    let otlp_record = super::proto::logs::v1::LogRecord {
        observed_time_unix_nano: 42,
        body: Some(AnyValue {
            value: Some(Av::KvlistValue(KeyValueList {
                values: vec![kv(
                    "a",
                    Some(AnyValue {
                        value: Some(Av::BytesValue(vec![1, 0xab])),
                    }),
                )],
            })),
        }),
        severity_text: "Warning".into(),
        trace_id: TRACE_BYTES.to_vec(),
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![super::proto::logs::v1::ResourceLogs {
            resource,
            scope_logs: vec![super::proto::logs::v1::ScopeLogs {
                log_records: vec![otlp_record],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let got = logs::decode(&request.encode_to_vec()).unwrap();
    let mut want = record(
        42,
        &[("host", "h"), ("port", "80")],
        r#"{"a":"01ab"}"#,
        json!({"trace_id": TRACE}),
    );
    want.severity = Some(Severity::Warn);
    assert_eq!(got, [want]);
}

#[test]
fn ids_parse_from_hex_of_the_exact_length_only() {
    assert_eq!(parse_id::<8>(SPAN), Some(SPAN_BYTES));
    assert_eq!(parse_id::<16>(TRACE), Some(TRACE_BYTES));
    for bad in [
        "",
        "00f067aa0ba902b",
        "00f067aa0ba902b7a",
        "00f067aa0ba902bg",
        "0000000000000000",
        "+0f067aa0ba902b7",
    ] {
        assert_eq!(parse_id::<8>(bad), None, "{bad:?}");
    }
    assert_eq!(hex(&SPAN_BYTES), SPAN);
}

fn arb_record() -> impl Strategy<Value = LogRecord> {
    let labels = crate::strategies::labels(&["device_id", "service.name", "job"]);
    let field_value = prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        ".{0,8}".prop_map(serde_json::Value::from),
        (-1000i32..1000).prop_map(|n| serde_json::Value::from(f64::from(n) + 0.5)),
        Just(json!({"k": [1, "x", null, {"n": true}]})),
        Just(serde_json::Value::Null),
    ];
    (
        1i64..i64::MAX,
        labels,
        ".{0,20}",
        crate::strategies::severity(),
        proptest::collection::btree_map("[a-z]{1,6}", field_value, 0..4),
        proptest::option::of(proptest::sample::select(vec![TRACE, "bad"])),
    )
        .prop_map(|(ts, labels, message, severity, fields, trace)| {
            let mut r = LogRecord::new(ts, message);
            r.labels = labels;
            r.severity = severity;
            r.fields = fields.into_iter().collect();
            if let Some(t) = trace {
                r.fields.insert("trace_id".into(), json!(t));
            }
            r
        })
}

proptest! {
    #[test]
    fn records_come_back_from_the_request_grouped_by_resource(records in proptest::collection::vec(arb_record(), 0..12)) {
        let (body, _) = logs::encode(records.clone(), 1);
        let got = logs::decode(&body).unwrap();
        // Grouped by label set in the order first seen, batch order within.
        let mut order: Vec<Labels> = Vec::new();
        for r in &records {
            if !order.contains(&r.labels) {
                order.push(r.labels.clone());
            }
        }
        let want: Vec<LogRecord> = order
            .iter()
            .flat_map(|l| records.iter().filter(move |r| &r.labels == l).cloned())
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = logs::decode(&bytes);
        let _ = logs::decode_response(&bytes);
    }
}
