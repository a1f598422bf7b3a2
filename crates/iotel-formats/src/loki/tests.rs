#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn record(ts: i64, labels: &[(&str, &str)], message: &str) -> LogRecord {
    let mut r = LogRecord::new(ts, message);
    r.labels = Labels::from_pairs(labels.iter().copied());
    r
}

fn with_fields(mut r: LogRecord, fields: serde_json::Value) -> LogRecord {
    if let serde_json::Value::Object(m) = fields {
        r.fields = m;
    }
    r
}

fn traced() -> Mapping {
    Mapping {
        structured_metadata: vec!["trace_id".into(), "span_id".into()],
        ..Mapping::default()
    }
}

fn pair(name: &str, value: &str) -> proto::LabelPairAdapter {
    proto::LabelPairAdapter {
        name: name.into(),
        value: value.into(),
    }
}

/// The protobuf request inside a body, snappy-decompressed by hand.
fn unpack(body: &[u8]) -> proto::PushRequest {
    let raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
    proto::PushRequest::decode(raw.as_slice()).unwrap()
}

fn sample() -> Vec<LogRecord> {
    let a = [("device_id", "d-1"), ("service.name", "pump")];
    let b = [("device_id", "d-2")];
    let mut late = with_fields(
        record(1_700_000_000_000_000_300, &a, "valve closed"),
        json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "attempt": 2}),
    );
    late.severity = Some(Severity::Warn);
    let mut early = record(1_700_000_000_000_000_100, &a, "valve open");
    early.severity = Some(Severity::Info);
    vec![
        late,
        record(1_700_000_000_000_000_200, &b, "boot"),
        early,
        record(1_700_000_000_000_000_200, &a, "same time as boot"),
    ]
}

#[test]
fn the_protobuf_body_decodes_field_by_field_with_streams_and_sorted_entries() {
    let body = encode_protobuf(sample(), &traced()).unwrap();
    let request = unpack(&body);
    assert_eq!(request.streams.len(), 2);

    let a = &request.streams[0];
    assert_eq!(a.labels, r#"{device_id="d-1", service_name="pump"}"#);
    assert_eq!(a.hash, 0);
    let lines: Vec<&str> = a.entries.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(lines, ["valve open", "same time as boot", "valve closed"]);
    let times: Vec<proto::Timestamp> = a.entries.iter().map(|e| e.timestamp.unwrap()).collect();
    assert_eq!(
        times,
        [100, 200, 300].map(|n| proto::Timestamp {
            seconds: 1_700_000_000,
            nanos: n
        })
    );
    assert_eq!(a.entries[0].structured_metadata, [pair("level", "info")]);
    assert_eq!(a.entries[1].structured_metadata, []);
    assert_eq!(
        a.entries[2].structured_metadata,
        [
            pair("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
            pair("span_id", "00f067aa0ba902b7"),
            pair("level", "warn"),
        ]
    );

    let b = &request.streams[1];
    assert_eq!(b.labels, r#"{device_id="d-2"}"#);
    assert_eq!(b.entries.len(), 1);
    assert_eq!(b.entries[0].line, "boot");
    assert_eq!(b.entries[0].structured_metadata, []);
}

#[test]
fn the_json_body_is_the_push_apis_json() {
    let body = encode_json(sample(), &traced());
    let want = json!({"streams": [
        {"stream": {"device_id": "d-1", "service_name": "pump"}, "values": [
            ["1700000000000000100", "valve open", {"level": "info"}],
            ["1700000000000000200", "same time as boot"],
            ["1700000000000000300", "valve closed", {
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "span_id": "00f067aa0ba902b7",
                "level": "warn"
            }],
        ]},
        {"stream": {"device_id": "d-2"}, "values": [["1700000000000000200", "boot"]]},
    ]});
    let got: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(got, want);
    // Metadata keeps its order on the wire.
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains(r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","level":"warn"}"#),
        "{text}"
    );
}

#[test]
fn both_encodings_decode_back_to_the_records_stream_by_stream() {
    let mut want = vec![
        sample()[2].clone(),
        sample()[3].clone(),
        sample()[0].clone(),
        sample()[1].clone(),
    ];
    for r in &mut want {
        // Sanitised on the way out.
        if r.labels.get("service.name").is_some() {
            r.labels = Labels::from_pairs([("device_id", "d-1"), ("service_name", "pump")]);
        }
        // Sent as structured metadata: strings; `attempt` is not sent.
        r.fields.remove("attempt");
    }
    assert_eq!(
        decode_protobuf(&encode_protobuf(sample(), &traced()).unwrap()).unwrap(),
        want
    );
    assert_eq!(
        decode_json(&encode_json(sample(), &traced())).unwrap(),
        want
    );
}

#[test]
fn label_names_are_sanitised_as_the_collectors_loki_exporter_does() {
    for (name, want) in [
        ("device_id", "device_id"),
        ("service.name", "service_name"),
        ("cloud.region", "cloud_region"),
        ("k8s-pod/name", "k8s_pod_name"),
        ("1st", "key_1st"),
        ("_private", "key_private"),
        ("__internal", "__internal"),
        ("ünï", "key_n_"),
        ("a b", "a_b"),
        ("", ""),
        ("A1", "A1"),
    ] {
        assert_eq!(sanitize_label_name(name), want, "{name:?}");
    }
}

#[test]
fn selectors_escape_values_and_parse_back() {
    let labels = vec![
        ("a".to_string(), "x\"y\\z\nw\r\tv ünï".to_string()),
        ("b".to_string(), "{}=,".to_string()),
    ];
    let s = selector(&labels);
    assert_eq!(s, r#"{a="x\"y\\z\nw\r\tv ünï", b="{}=,"}"#);
    let parsed = decode::parse_selector(&s).unwrap();
    assert_eq!(
        parsed,
        Labels::from_pairs(labels.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    );
    // Loki's own spellings.
    assert_eq!(
        decode::parse_selector(" { job = `raw\\n` ,x=\"\\x41\\u00e9\\101\" } ").unwrap(),
        Labels::from_pairs([("job", "raw\\n"), ("x", "AéA")])
    );
    assert_eq!(decode::parse_selector("{}").unwrap(), Labels::empty());
}

#[test]
fn bad_selectors_say_what_was_expected_and_where() {
    for (s, want) in [
        ("", "expected '{' at byte 0, found the end"),
        ("{a=\"1\"", "expected ',' at byte 6, found the end"),
        ("{1a=\"x\"}", "expected a label name at byte 1, found '1'"),
        ("{a!=\"x\"}", "expected '=' at byte 2, found '!'"),
        ("{a=\"x\", a=\"y\"}", "duplicate label name \"a\""),
        ("{a=\"x}", "unterminated quoted string"),
        ("{a=\"\\q\"}", "unknown escape \\q at byte 5"),
        ("{a=\"x\"} y", "unexpected \"y\" after the closing brace"),
    ] {
        assert_eq!(decode::parse_selector(s).unwrap_err(), want, "{s:?}");
    }
}

#[test]
fn a_label_list_picks_stream_labels_and_the_rest_can_be_metadata() {
    let m = Mapping {
        stream_labels: Some(vec!["service_name".into()]),
        structured_metadata: vec!["device_id".into(), "trace_id".into(), "missing".into()],
        ..Mapping::default()
    };
    let r = with_fields(
        record(
            5,
            &[
                ("device_id", "d-9"),
                ("service.name", "pump"),
                ("site", "x"),
            ],
            "m",
        ),
        json!({"trace_id": "abc"}),
    );
    let request = unpack(&encode_protobuf([r], &m).unwrap());
    let s = &request.streams[0];
    // `service.name` matched by its sanitised name; `site` is neither.
    assert_eq!(s.labels, r#"{service_name="pump"}"#);
    assert_eq!(
        s.entries[0].structured_metadata,
        [pair("device_id", "d-9"), pair("trace_id", "abc")]
    );
}

#[test]
fn empty_values_are_left_out_and_a_stream_without_labels_gets_the_fallback() {
    let m = Mapping {
        structured_metadata: vec!["x".into(), "y".into(), "z".into()],
        ..Mapping::default()
    };
    let r = with_fields(
        record(1, &[("empty", "")], "m"),
        json!({"x": "", "y": null, "z": {"k": [1, true]}}),
    );
    let request = unpack(&encode_protobuf([r], &m).unwrap());
    assert_eq!(request.streams[0].labels, r#"{agent="iotel"}"#);
    assert_eq!(
        request.streams[0].entries[0].structured_metadata,
        [pair("z", r#"{"k":[1,true]}"#)]
    );
}

#[test]
fn of_two_names_that_sanitise_alike_the_later_one_wins() {
    let r = record(1, &[("a.b", "dotted"), ("a_b", "plain")], "m");
    let request = unpack(&encode_protobuf([r], &Mapping::default()).unwrap());
    assert_eq!(request.streams[0].labels, r#"{a_b="plain"}"#);
}

#[test]
fn severity_as_a_label_splits_streams_and_wins_over_a_level_label() {
    let m = Mapping {
        level: LevelAs::Label,
        ..Mapping::default()
    };
    let mut warn = record(2, &[("job", "j"), ("level", "bogus")], "w");
    warn.severity = Some(Severity::Warn);
    let mut err = record(1, &[("job", "j"), ("level", "bogus")], "e");
    err.severity = Some(Severity::Error);
    let plain = record(3, &[("job", "j"), ("level", "bogus")], "p");
    let request = unpack(&encode_protobuf([warn, err, plain], &m).unwrap());
    let selectors: Vec<&str> = request.streams.iter().map(|s| s.labels.as_str()).collect();
    assert_eq!(
        selectors,
        [
            r#"{job="j", level="warn"}"#,
            r#"{job="j", level="error"}"#,
            r#"{job="j", level="bogus"}"#
        ]
    );
    assert!(
        request
            .streams
            .iter()
            .all(|s| s.entries[0].structured_metadata.is_empty())
    );

    let none = Mapping {
        level: LevelAs::None,
        ..Mapping::default()
    };
    let mut r = record(1, &[("job", "j")], "x");
    r.severity = Some(Severity::Fatal);
    let request = unpack(&encode_protobuf([r], &none).unwrap());
    assert_eq!(request.streams[0].labels, r#"{job="j"}"#);
    assert!(request.streams[0].entries[0].structured_metadata.is_empty());
}

#[test]
fn a_json_line_holds_the_message_then_the_fields_not_sent_as_metadata() {
    let m = Mapping {
        line_format: LineFormat::Json,
        structured_metadata: vec!["trace_id".into()],
        ..Mapping::default()
    };
    let r = with_fields(
        record(1, &[("job", "j")], "disk \"full\""),
        json!({"trace_id": "t", "used": 0.97, "mount": "/data", "message": "shadowed", "tags": ["a"]}),
    );
    let request = unpack(&encode_protobuf([r], &m).unwrap());
    let e = &request.streams[0].entries[0];
    assert_eq!(
        e.line,
        r#"{"message":"disk \"full\"","mount":"/data","tags":["a"],"used":0.97}"#
    );
    assert_eq!(e.structured_metadata, [pair("trace_id", "t")]);
}

#[test]
fn times_before_1970_keep_nanos_positive() {
    let r = record(-1, &[("a", "b")], "m");
    let request = unpack(&encode_protobuf([r.clone()], &Mapping::default()).unwrap());
    assert_eq!(
        request.streams[0].entries[0].timestamp,
        Some(proto::Timestamp {
            seconds: -1,
            nanos: 999_999_999
        })
    );
    let json: serde_json::Value =
        serde_json::from_slice(&encode_json([r.clone()], &Mapping::default())).unwrap();
    assert_eq!(json["streams"][0]["values"][0][0], "-1");
    assert_eq!(
        decode_protobuf(&encode_protobuf([r.clone()], &Mapping::default()).unwrap()).unwrap(),
        [r]
    );
}

#[test]
fn content_headers_follow_the_encoding() {
    assert_eq!(Encoding::Protobuf.content_type(), "application/x-protobuf");
    assert_eq!(Encoding::Protobuf.content_encoding(), Some("snappy"));
    assert_eq!(Encoding::Json.content_type(), "application/json");
    assert_eq!(Encoding::Json.content_encoding(), None);
}

#[test]
fn bad_json_bodies_name_the_place() {
    for (body, want) in [
        (r#"{}"#, "streams: expected an array of streams"),
        (
            r#"{"streams":[{"values":[]}]}"#,
            "streams[0].stream: expected an object of labels",
        ),
        (
            r#"{"streams":[{"stream":{"a":1},"values":[]}]}"#,
            "streams[0].stream.a: expected a string",
        ),
        (
            r#"{"streams":[{"stream":{}}]}"#,
            "streams[0].values: expected an array of entries",
        ),
        (
            r#"{"streams":[{"stream":{},"values":[["1"]]}]}"#,
            r#"streams[0].values[0]: expected ["<ns>", "<line>"] or ["<ns>", "<line>", {…}]"#,
        ),
        (
            r#"{"streams":[{"stream":{},"values":[[1,"x"]]}]}"#,
            "streams[0].values[0][0]: expected a string of nanoseconds since the epoch",
        ),
        (
            r#"{"streams":[{"stream":{},"values":[["1",2]]}]}"#,
            "streams[0].values[0][1]: expected a string",
        ),
        (
            r#"{"streams":[{"stream":{},"values":[["1","x",[]]]}]}"#,
            "streams[0].values[0][2]: expected an object of structured metadata",
        ),
        (
            r#"{"streams":[{"stream":{},"values":[["1","x",{"k":1}]]}]}"#,
            "streams[0].values[0][2].k: expected a string",
        ),
    ] {
        let e = decode_json(body.as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), want, "{body}");
        assert_eq!(e.code(), "invalid");
    }
    assert_eq!(decode_json(b"{").unwrap_err().code(), "json");
}

#[test]
fn bad_protobuf_bodies_are_refused_with_their_reason() {
    assert_eq!(decode_protobuf(b"not snappy").unwrap_err().code(), "snappy");
    let big = snap::raw::Encoder::new()
        .compress_vec(&[0u8; 1000])
        .unwrap();
    let e = decode_protobuf_with_limit(&big, 999).unwrap_err();
    assert_eq!(
        e.to_string(),
        "snappy: the body would decompress to 1000 bytes, more than the limit of 999"
    );
    let garbage = snap::raw::Encoder::new().compress_vec(&[0xff; 8]).unwrap();
    assert_eq!(decode_protobuf(&garbage).unwrap_err().code(), "protobuf");
    let pack = |r: &proto::PushRequest| {
        snap::raw::Encoder::new()
            .compress_vec(&r.encode_to_vec())
            .unwrap()
    };
    let bad_labels = proto::PushRequest {
        streams: vec![proto::StreamAdapter {
            labels: "{a=}".into(),
            ..Default::default()
        }],
    };
    assert_eq!(
        decode_protobuf(&pack(&bad_labels)).unwrap_err().to_string(),
        "streams[0].labels: expected '\"' at byte 3, found '}'"
    );
    let bad_time = proto::PushRequest {
        streams: vec![proto::StreamAdapter {
            labels: "{a=\"b\"}".into(),
            entries: vec![proto::EntryAdapter {
                timestamp: Some(proto::Timestamp {
                    seconds: i64::MAX,
                    nanos: 0,
                }),
                ..Default::default()
            }],
            hash: 0,
        }],
    };
    assert_eq!(
        decode_protobuf(&pack(&bad_time)).unwrap_err().to_string(),
        "streams[0].entries[0].timestamp: 9223372036854775807s 0ns is not a time between 1677 and 2262"
    );
}

// ---------------------------------------------------------------------------
// Properties

fn arb_record() -> impl Strategy<Value = LogRecord> {
    const NAMES: &[&str] = &["job", "device_id", "service.name", "level", "9x"];
    let labels = crate::strategies::labels(NAMES);
    let field = proptest::option::of(proptest::sample::select(vec!["", "abc", "ünï\n\"", "4bf9"]));
    (
        prop_oneof![
            -3i64..4,
            any::<i64>(),
            (0i64..1000).prop_map(|d| 1_700_000_000_000_000_000 + d)
        ],
        labels,
        any::<String>(),
        crate::strategies::severity(),
        field,
    )
        .prop_map(|(ts, labels, message, severity, trace)| {
            let mut r = LogRecord::new(ts, message);
            r.labels = labels;
            r.severity = severity;
            if let Some(t) = trace {
                r.fields
                    .insert("trace_id".into(), serde_json::Value::String(t.into()));
            }
            r
        })
}

/// What a record looks like after the trip with [`traced`]: labels
/// sanitised, empties dropped, the fallback label; empty metadata dropped.
fn after_trip(mut r: LogRecord) -> LogRecord {
    let mut pairs: Vec<(String, String)> = r
        .labels
        .iter()
        .filter(|l| !l.value.is_empty())
        .map(|l| {
            (
                sanitize_label_name(&l.name).into_owned(),
                l.value.to_string(),
            )
        })
        .collect();
    if pairs.is_empty() {
        pairs.push(("agent".into(), "iotel".into()));
    }
    r.labels = Labels::from_pairs(pairs);
    if r.fields.get("trace_id").and_then(|v| v.as_str()) == Some("") {
        r.fields.remove("trace_id");
    }
    r
}

fn sort_key(r: &LogRecord) -> (String, i64, String, String) {
    (
        r.labels.to_string(),
        r.timestamp_ns,
        r.message.clone(),
        format!("{:?}{:?}", r.severity, r.fields),
    )
}

proptest! {
    #[test]
    fn protobuf_and_json_carry_every_record(records in proptest::collection::vec(arb_record(), 0..20)) {
        let mut want: Vec<LogRecord> = records.iter().cloned().map(after_trip).collect();
        want.sort_by_key(sort_key);
        for body in [
            decode_protobuf(&encode_protobuf(records.clone(), &traced()).unwrap()).unwrap(),
            decode_json(&encode_json(records.clone(), &traced())).unwrap(),
        ] {
            let mut got = body;
            got.sort_by_key(sort_key);
            prop_assert_eq!(&got, &want);
        }
    }

    #[test]
    fn entries_of_each_stream_are_in_time_order(records in proptest::collection::vec(arb_record(), 0..30)) {
        let request = unpack(&encode_protobuf(records, &traced()).unwrap());
        for s in &request.streams {
            prop_assert!(s.entries.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
            let parsed = decode::parse_selector(&s.labels).unwrap();
            prop_assert!(!parsed.is_empty());
        }
        let mut selectors: Vec<&str> = request.streams.iter().map(|s| s.labels.as_str()).collect();
        selectors.sort_unstable();
        let n = selectors.len();
        selectors.dedup();
        prop_assert_eq!(selectors.len(), n, "one stream per label set");
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_protobuf(&bytes);
        let _ = decode_protobuf(&snap::raw::Encoder::new().compress_vec(&bytes).unwrap());
        let _ = decode_json(&bytes);
        let _ = decode::parse_selector(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn any_selector_we_write_parses_back(pairs in proptest::collection::vec(("[a-z_][a-z0-9_]{0,5}", any::<String>()), 0..4)) {
        let labels = Labels::from_pairs(pairs);
        let sorted: Vec<(String, String)> = labels.iter().map(|l| (l.name.to_string(), l.value.to_string())).collect();
        prop_assert_eq!(decode::parse_selector(&selector(&sorted)).unwrap(), labels);
    }
}
