#![allow(clippy::unwrap_used)]

use super::*;
use iotel_model::{LogRecord, Span, SpanStatus};
use proptest::prelude::Strategy;
use serde_json::json;

fn build(text: &str) -> (Box<dyn Transform>, BuildContext) {
    let cfg: Config = toml::from_str(text).unwrap();
    assert_eq!(cfg.validate(), vec![], "{text}");
    let cx = BuildContext::for_test("dt");
    (cfg.build(&cx).unwrap(), cx)
}

fn problems(text: &str) -> Vec<String> {
    let cfg: Config = toml::from_str(text).unwrap();
    cfg.validate()
        .iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect()
}

/// 2026-03-29T16:00:00Z plus `s` seconds.
const T0: i64 = 1_774_800_000_000_000_000;

fn log(t_s: i64, fields: Value, labels: &[(&str, &str)]) -> LogRecord {
    let mut r = LogRecord::new(T0 + t_s * 1_000_000_000, "uplink");
    let Value::Object(m) = fields else { panic!() };
    r.fields = m;
    r.labels = Labels::from_pairs(labels.iter().copied());
    r
}

fn run_logs(t: &mut Box<dyn Transform>, logs: Vec<LogRecord>) -> Vec<LogRecord> {
    let mut out = Vec::new();
    t.transform(Events::Logs(logs), &mut out);
    let [Events::Logs(logs)] = &out[..] else {
        panic!("expected one batch of logs, got {out:?}")
    };
    logs.clone()
}

fn unmapped(cx: &BuildContext, reason: &str) -> u64 {
    cx.metrics
        .registry()
        .counter(
            "iotel_device_trace_unmapped_total",
            "",
            &[("component_id", "dt"), ("reason", reason)],
        )
        .get()
}

fn field<'a>(r: &'a LogRecord, name: &str) -> &'a str {
    r.fields[name].as_str().unwrap()
}

#[test]
fn device_and_gateway_logs_of_one_lorawan_uplink_get_one_trace_id() {
    // The device logs its own field names and the full counter; the
    // gateway's packet forwarder names them differently and sees 16 bits.
    let (mut device, _) = build(
        r#"
protocol = "lorawan"
fields = { dev_addr = "devaddr", fcnt = "frame_counter" }
hop = "device"
"#,
    );
    let (mut gateway, gcx) = build(
        r#"
protocol = "lorawan"
hop = "gateway"
"#,
    );
    let d = run_logs(
        &mut device,
        vec![
            log(
                0,
                json!({"devaddr": "26011BDA", "frame_counter": 70000}),
                &[],
            ),
            log(
                60,
                json!({"devaddr": "26011BDA", "frame_counter": 70001}),
                &[],
            ),
        ],
    );
    // The gateway receives a second later, with the address as an integer
    // label and the on-air counter as text.
    let g = run_logs(
        &mut gateway,
        vec![
            log(1, json!({"fcnt": "4464"}), &[("dev_addr", "0x26011bda")]),
            log(61, json!({"fcnt": 4465, "dev_addr": 0x2601_1BDA_u32}), &[]),
        ],
    );
    assert_eq!(field(&d[0], "trace_id"), field(&g[0], "trace_id"));
    assert_eq!(field(&d[1], "trace_id"), field(&g[1], "trace_id"));
    assert_ne!(field(&d[0], "trace_id"), field(&d[1], "trace_id"));
    // Each hop has its own span id.
    assert_ne!(field(&d[0], "span_id"), field(&g[0], "span_id"));
    // The known-answer vector of iotel_formats::device_ids, bucketed by
    // the hour.
    let expected = device_ids::trace_id(
        &MessageKey::Lorawan {
            dev_addr: 0x2601_1BDA,
            fcnt: 4464,
            fcnt_bits: FcntBits::Low16,
            dev_eui: None,
        },
        &Discriminator {
            scope: "",
            bucket: Some(TimeBucket::of(
                T0,
                NonZeroU64::new(3_600_000_000_000).unwrap(),
            )),
        },
    );
    assert_eq!(field(&g[0], "trace_id"), device_ids::hex(&expected));
    assert_eq!(
        field(&g[0], "span_id"),
        device_ids::hex(&device_ids::span_id(&expected, "gateway"))
    );
    assert_eq!(unmapped(&gcx, "field_missing"), 0);
}

#[test]
fn exact_ids_for_each_protocol_match_the_known_answer_vectors() {
    let (mut lora, _) =
        build("protocol = \"lorawan\"\nhop = \"gateway\"\ntime_bucket = \"0s\"\nfcnt_bits = 16");
    let out = run_logs(
        &mut lora,
        vec![log(0, json!({"dev_addr": "26011BDA", "fcnt": 70000}), &[])],
    );
    assert_eq!(
        field(&out[0], "trace_id"),
        "1facd1417d9a9ba4d31b042987092d5b"
    );
    assert_eq!(field(&out[0], "span_id"), "da99d662b01823aa");

    let (mut coap, _) = build("protocol = \"coap\"\nhop = \"server\"\ntime_bucket = \"0s\"");
    let out = run_logs(
        &mut coap,
        vec![log(
            0,
            json!({"endpoint": "10.0.0.7:5683", "message_id": 0x7d34}),
            &[],
        )],
    );
    // A missing token is the empty token.
    assert_eq!(
        field(&out[0], "trace_id"),
        "3c73bf2b11f457a99cd0ec84ad019ab9"
    );

    let (mut mqtt, _) = build(
        "protocol = \"mqtt\"\nhop = \"broker\"\nfields = { client_id = \"clientid\", packet_id = \"mid\" }",
    );
    // 2026-03-29T16:00Z is hour 493,000 since the epoch.
    let out = run_logs(
        &mut mqtt,
        vec![log(5, json!({"clientid": "sensor-0042", "mid": 17}), &[])],
    );
    assert_eq!(
        field(&out[0], "trace_id"),
        "c5375452a63eeb79033aa85408236159"
    );
    assert_eq!(field(&out[0], "span_id"), "daf5a25360851af5");
}

#[test]
fn records_missing_or_with_invalid_identifiers_pass_unchanged_and_are_counted() {
    let (mut t, cx) = build("protocol = \"mqtt\"\nhop = \"broker\"");
    let records = vec![
        log(0, json!({"client_id": "c1"}), &[]),
        log(0, json!({"client_id": "c1", "packet_id": 0}), &[]),
        log(0, json!({"client_id": "c1", "packet_id": 70000}), &[]),
        log(0, json!({"client_id": ["x"], "packet_id": 3}), &[]),
        log(0, json!({"client_id": "c1", "packet_id": 3}), &[]),
    ];
    let out = run_logs(&mut t, records.clone());
    assert_eq!(out[..4], records[..4]);
    assert_eq!(field(&out[4], "trace_id").len(), 32);
    assert_eq!(unmapped(&cx, "field_missing"), 1);
    assert_eq!(unmapped(&cx, "field_invalid"), 3);
}

/// What is logged on this thread while the guard lives.
#[derive(Debug, Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

#[test]
fn an_invalid_identifier_is_logged_with_the_field_the_value_and_what_was_expected() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (mut t, _) = build("protocol = \"mqtt\"\nhop = \"broker\"");
    let bad = || log(0, json!({"client_id": "c1", "packet_id": 0}), &[]);
    run_logs(&mut t, vec![bad(), bad(), bad()]);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // The 1st and 2nd time, not the 3rd.
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].ends_with(
            "field \"packet_id\" holds 0, expected an MQTT Packet Identifier: an integer from 1 \
             to 65535; the record passes without a derived trace id (1 so far) component_id=dt"
        ),
        "{lines:?}"
    );
}

#[test]
fn a_record_with_a_trace_id_is_left_alone_unless_overwrite() {
    let fields =
        json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "client_id": "c", "packet_id": 1});
    let (mut keep, cx) = build("protocol = \"mqtt\"\nhop = \"broker\"");
    let out = run_logs(&mut keep, vec![log(0, fields.clone(), &[])]);
    assert_eq!(Value::Object(out[0].fields.clone()), fields);
    assert_eq!(unmapped(&cx, "has_trace_id"), 1);
    let (mut replace, _) = build("protocol = \"mqtt\"\nhop = \"broker\"\noverwrite = true");
    let out = run_logs(&mut replace, vec![log(0, fields, &[])]);
    assert_ne!(
        field(&out[0], "trace_id"),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
}

#[test]
fn spans_without_a_trace_id_get_ids_and_the_parent_hop() {
    let (mut t, cx) = build(
        "protocol = \"coap\"\nhop = \"server\"\nparent_hop = \"device\"\nfields = { endpoint = \"device_id\" }",
    );
    let mut s = Span {
        trace_id: [0; 16],
        span_id: [0; 8],
        parent_span_id: None,
        name: "POST /telemetry".into(),
        start_ns: T0,
        end_ns: T0 + 1_000,
        labels: Labels::from_pairs([("device_id", "d-7")]),
        attributes: Map::new(),
        status: SpanStatus::Unset,
    };
    s.attributes.insert("token".into(), json!("0a0b"));
    s.attributes.insert("message_id".into(), json!(12));
    let traced = Span {
        trace_id: [9; 16],
        ..s.clone()
    };
    let mut out = Vec::new();
    t.transform(Events::Traces(vec![s, traced.clone()]), &mut out);
    let [Events::Traces(spans)] = &out[..] else {
        panic!("{out:?}")
    };
    let d = Discriminator {
        scope: "",
        bucket: Some(TimeBucket::of(
            T0,
            NonZeroU64::new(3_600_000_000_000).unwrap(),
        )),
    };
    let expected = device_ids::trace_id(
        &MessageKey::Coap {
            endpoint: "d-7",
            token: CoapToken::new(&[10, 11]).unwrap(),
            message_id: 12,
        },
        &d,
    );
    assert_eq!(spans[0].trace_id, expected);
    assert_eq!(spans[0].span_id, device_ids::span_id(&expected, "server"));
    assert_eq!(
        spans[0].parent_span_id,
        Some(device_ids::span_id(&expected, "device"))
    );
    assert_eq!(spans[1], traced);
    assert_eq!(unmapped(&cx, "has_trace_id"), 1);
}

#[test]
fn a_dev_eui_named_in_fields_is_part_of_the_id_and_required() {
    let (mut t, cx) = build(
        "protocol = \"lorawan\"\nhop = \"ns\"\nfcnt_bits = 32\nfields = { dev_eui = \"deveui\" }",
    );
    let out = run_logs(
        &mut t,
        vec![
            log(
                0,
                json!({"dev_addr": "26011bda", "fcnt": 1, "deveui": "70B3D57ED0001234"}),
                &[],
            ),
            log(
                0,
                json!({"dev_addr": "26011bda", "fcnt": 1, "deveui": "70B3D57ED0001235"}),
                &[],
            ),
            log(0, json!({"dev_addr": "26011bda", "fcnt": 1}), &[]),
        ],
    );
    assert_ne!(field(&out[0], "trace_id"), field(&out[1], "trace_id"));
    assert!(!out[2].fields.contains_key("trace_id"));
    assert_eq!(unmapped(&cx, "field_missing"), 1);
}

#[test]
fn config_errors_name_the_key() {
    assert_eq!(
        problems(
            "protocol = \"mqtt\"\nhop = \"\"\nfcnt_bits = 16\nparent_hop = \"\"\nfields = { fcnt = \"f\", client_id = \"\" }"
        ),
        [
            "fields.client_id: expected a field name, got \"\"",
            "fields.fcnt: unknown identifier \"fcnt\" for this protocol; expected one of client_id, packet_id",
            "hop: expected the hop's name, got \"\"",
            "parent_hop: expected the previous hop's name, got \"\"",
            "fcnt_bits: applies to protocol \"lorawan\" only",
        ]
    );
    assert_eq!(
        problems("protocol = \"lorawan\"\nhop = \"g\"\nfcnt_bits = 24\ntime_bucket = \"10ms\""),
        [
            "fcnt_bits: expected 16 or 32, got 24",
            "time_bucket: expected \"0s\" or at least one second",
        ]
    );
}

#[test]
fn metrics_pass_unchanged() {
    let (mut t, _) = build("protocol = \"mqtt\"\nhop = \"broker\"");
    let metrics = Events::Metrics(Vec::new());
    let mut out = Vec::new();
    t.transform(metrics.clone(), &mut out);
    assert_eq!(out, [metrics]);
}

proptest::proptest! {
    #[test]
    fn arbitrary_identifier_values_never_panic_and_every_record_is_mapped_or_counted(
        values in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::num::i64::ANY.prop_map(Value::from),
                proptest::num::u64::ANY.prop_map(Value::from),
                proptest::num::f64::NORMAL.prop_map(Value::from),
                "[0-9a-fA-F:x -]{0,20}".prop_map(Value::from),
                proptest::prelude::any::<String>().prop_map(Value::from),
            ],
            6,
        ),
        protocol in 0usize..3,
        time in proptest::num::i64::ANY,
    ) {
        let (name, ids) = [
            ("lorawan", ["dev_addr", "fcnt", "dev_eui"]),
            ("coap", ["endpoint", "token", "message_id"]),
            ("mqtt", ["client_id", "packet_id", "unused"]),
        ][protocol];
        let extra = if protocol == 0 { "\nfields = { dev_eui = \"dev_eui\" }" } else { "" };
        let (mut t, cx) = build(&format!("protocol = \"{name}\"\nhop = \"h\"{extra}"));
        let mut fields = Map::new();
        for (id, v) in ids.iter().zip(&values) {
            fields.insert((*id).to_string(), v.clone());
        }
        let mut r = LogRecord::new(time, "m");
        r.fields = fields;
        let out = run_logs(&mut t, vec![r]);
        let mapped = u64::from(out[0].fields.contains_key("trace_id"));
        proptest::prop_assert_eq!(
            mapped + unmapped(&cx, "field_missing") + unmapped(&cx, "field_invalid"),
            1
        );
    }
}
