#![allow(clippy::unwrap_used)]

use super::*;
use iotel_model::Labels;
use proptest::prelude::*;
use serde_json::json;

const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
/// 2026-03-29T16:00:00Z.
const T0: i64 = 1_774_800_000 * S;
const TRACE_A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_B: &str = "0af7651916cd43dd8448eb211c80319c";
const TRACE_C: &str = "b7ad6b7169203331b7ad6b7169203331";

const HOPS: &str = r#"
device = { match = { source = "device" }, device_id = "dev", trace_id = "trace" }
gateway = { match = { source = "gateway" }, device_id = "deviceId", gateway_id = "gw", trace_id = "traceparent" }
rule = { match = { source = "rules" }, device_id = "ctx.device", rule_id = "rule" }
"#;

fn build(extra: &str) -> (Correlate, BuildContext) {
    let text = format!("{extra}\n{HOPS}");
    let cfg: Config = toml::from_str(&text).unwrap();
    assert_eq!(cfg.validate(), vec![], "{text}");
    let cx = BuildContext::for_test("corr");
    (cfg.correlate(&cx), cx)
}

fn device(trace: &str, t: i64) -> LogRecord {
    let mut r = LogRecord::new(t, "reading sent");
    r.labels = Labels::from_pairs([("source", "device")]);
    r.fields.insert("dev".into(), json!("d1"));
    r.fields.insert("trace".into(), json!(trace));
    r
}

fn gateway(trace: &str, t: i64) -> LogRecord {
    let mut r = LogRecord::new(t, "forwarded");
    r.labels = Labels::from_pairs([("source", "gateway"), ("gw", "g1")]);
    r.fields.insert("deviceId".into(), json!("d1"));
    r.fields.insert(
        "traceparent".into(),
        json!(format!("00-{trace}-00f067aa0ba902b7-01")),
    );
    r
}

fn rule(trace: &str, t: i64) -> LogRecord {
    let mut r = LogRecord::new(t, "rule fired");
    r.labels = Labels::from_pairs([("source", "rules")]);
    r.fields.insert("ctx".into(), json!({ "device": "d1" }));
    r.fields.insert("rule".into(), json!("r7"));
    r.fields.insert("trace_id".into(), json!(trace));
    r
}

/// Runs one batch; returns (records passed on, chain records).
fn run(t: &mut Correlate, records: Vec<LogRecord>) -> (Vec<LogRecord>, Vec<LogRecord>) {
    let mut out = Vec::new();
    t.transform(Events::Logs(records), &mut out);
    split(out)
}

fn split(out: Vec<Events>) -> (Vec<LogRecord>, Vec<LogRecord>) {
    let (mut passed, mut chains) = (Vec::new(), Vec::new());
    for e in out {
        let Events::Logs(v) = e else {
            panic!("expected logs, got {e:?}")
        };
        for r in v {
            if r.labels.get(CHAIN_LABEL) == Some(CHAIN_VALUE) {
                chains.push(r);
            } else {
                passed.push(r);
            }
        }
    }
    (passed, chains)
}

fn one_by_one(t: &mut Correlate, records: Vec<LogRecord>) -> Vec<LogRecord> {
    let mut chains = Vec::new();
    for r in records {
        chains.extend(run(t, vec![r]).1);
    }
    chains
}

fn counter(cx: &BuildContext, name: &str, extra: Option<(&str, &str)>) -> u64 {
    let mut labels = vec![("component_id", "corr")];
    labels.extend(extra);
    cx.metrics.registry().counter(name, "", &labels).get()
}

fn unjoined(cx: &BuildContext, reason: &str) -> u64 {
    counter(
        cx,
        "iotel_correlate_unjoined_records_total",
        Some(("reason", reason)),
    )
}

fn chains(cx: &BuildContext, status: &str) -> u64 {
    counter(cx, "iotel_correlate_chains_total", Some(("status", status)))
}

fn status(r: &LogRecord) -> &str {
    r.fields["status"].as_str().unwrap()
}

#[test]
fn a_chain_in_order_is_emitted_complete_with_its_records_and_hop_latencies() {
    let (mut t, cx) = build("");
    let (passed, out) = run(
        &mut t,
        vec![
            device(TRACE_A, T0),
            gateway(TRACE_A, T0 + 120 * MS),
            rule(TRACE_A, T0 + 155 * MS),
        ],
    );
    // Every record passes on, with the unified labels.
    assert_eq!(passed.len(), 3);
    assert_eq!(
        passed[0].labels,
        Labels::from_pairs([
            ("source", "device"),
            ("device_id", "d1"),
            ("trace_id", TRACE_A)
        ])
    );
    assert_eq!(
        passed[1].labels,
        Labels::from_pairs([
            ("source", "gateway"),
            ("gw", "g1"),
            ("device_id", "d1"),
            ("gateway_id", "g1"),
            ("trace_id", TRACE_A)
        ])
    );
    assert_eq!(
        passed[2].labels,
        Labels::from_pairs([
            ("source", "rules"),
            ("device_id", "d1"),
            ("rule_id", "r7"),
            ("trace_id", TRACE_A)
        ])
    );
    assert_eq!(passed[2].fields, rule(TRACE_A, 0).fields);
    let [chain] = &out[..] else {
        panic!("expected one chain, got {out:?}")
    };
    assert_eq!(chain.timestamp_ns, T0);
    assert_eq!(
        chain.labels,
        Labels::from_pairs([
            ("correlate", "chain"),
            ("trace_id", TRACE_A),
            ("device_id", "d1"),
            ("gateway_id", "g1"),
            ("rule_id", "r7"),
        ])
    );
    assert_eq!(
        chain.message,
        format!("chain {TRACE_A} complete: device → gateway +120ms → rule +35ms")
    );
    assert_eq!(
        Value::Object(chain.fields.clone()),
        json!({
            "status": "complete",
            "complete": true,
            "missing": [],
            "hops": {
                "device": { "timestamp_ns": T0, "message": "reading sent" },
                "gateway": { "timestamp_ns": T0 + 120 * MS, "message": "forwarded" },
                "rule": { "timestamp_ns": T0 + 155 * MS, "message": "rule fired" },
            },
            "device_gateway_ms": 120.0,
            "gateway_rule_ms": 35.0,
            "device_rule_ms": 155.0,
        })
    );
    assert_eq!(chains(&cx, "complete"), 1);
    assert_eq!(t.traces_held(), 1, "remembered until its window closes");
    assert_eq!(t.traces_open(), 0);
}

#[test]
fn out_of_order_records_of_interleaved_traces_join_into_exact_chains() {
    let (mut t, cx) = build("");
    let out = one_by_one(
        &mut t,
        vec![
            rule(TRACE_B, T0 + 2 * S),
            rule(TRACE_A, T0 + 300 * MS),
            device(TRACE_B, T0 + S),
            gateway(TRACE_A, T0 + 100 * MS),
            device(TRACE_A, T0),
            gateway(TRACE_B, T0 + 1500 * MS),
        ],
    );
    let got: Vec<(&str, &str, f64, f64)> = out
        .iter()
        .map(|r| {
            (
                r.labels.get("trace_id").unwrap(),
                status(r),
                r.fields["device_gateway_ms"].as_f64().unwrap(),
                r.fields["gateway_rule_ms"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (TRACE_A, "complete", 100.0, 200.0),
            (TRACE_B, "complete", 500.0, 500.0)
        ]
    );
    assert_eq!(chains(&cx, "complete"), 2);
    for reason in ["late", "outside_window", "duplicate", "no_trace_id"] {
        assert_eq!(unjoined(&cx, reason), 0, "{reason}");
    }
}

#[test]
fn a_late_record_passes_on_unjoined_and_counted_and_the_partial_chain_closes() {
    let (mut t, cx) = build(r#"allowed_lateness = "30s""#);
    // Trace A's device record: its gateway may come until T0 + 10s, its
    // rule until T0 + 15s, so the trace closes when the watermark passes
    // T0 + 15s, that is once T0 + 45s has been seen.
    let mut out = one_by_one(&mut t, vec![device(TRACE_A, T0)]);
    out.extend(one_by_one(&mut t, vec![device(TRACE_B, T0 + 45 * S)]));
    assert_eq!(out, [], "the watermark is at T0 + 15s, not past it");
    let (passed, out) = run(&mut t, vec![device(TRACE_C, T0 + 45 * S + 1)]);
    assert_eq!(passed.len(), 1);
    let [chain] = &out[..] else {
        panic!("expected trace A's chain, got {out:?}")
    };
    assert_eq!(chain.labels.get("trace_id"), Some(TRACE_A));
    assert_eq!(
        chain.message,
        format!("chain {TRACE_A} window_closed: device")
    );
    assert_eq!(chain.fields["complete"], json!(false));
    assert_eq!(chain.fields["missing"], json!(["gateway", "rule"]));
    assert_eq!(chains(&cx, "window_closed"), 1);
    // The watermark is T0 + 15s + 1ns: a gateway record of trace A at
    // T0 + 5s is late. It passes on, labelled, and joins nothing.
    let (passed, out) = run(&mut t, vec![gateway(TRACE_A, T0 + 5 * S)]);
    assert_eq!(out, []);
    assert_eq!(passed.len(), 1);
    assert_eq!(passed[0].labels.get("trace_id"), Some(TRACE_A));
    assert_eq!(unjoined(&cx, "late"), 1);
    // Exactly at the watermark is not late.
    let (_, out) = run(&mut t, vec![gateway(TRACE_B, T0 + 15 * S + 1)]);
    assert_eq!(out, []);
    assert_eq!(unjoined(&cx, "late"), 1);
    assert_eq!(unjoined(&cx, "outside_window"), 1, "30s before B's device");
}

#[test]
fn window_bounds_are_inclusive_and_a_record_past_them_is_outside_the_window() {
    let (mut t, cx) = build(r#"allowed_lateness = "1m""#);
    let out = one_by_one(
        &mut t,
        vec![
            device(TRACE_A, T0),
            gateway(TRACE_A, T0 + 10 * S),
            rule(TRACE_A, T0 + 15 * S),
            device(TRACE_B, T0),
            gateway(TRACE_B, T0 - 10 * S - 1),
            gateway(TRACE_B, T0 - 10 * S),
            rule(TRACE_B, T0 - 15 * S - 1),
        ],
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].labels.get("trace_id"), Some(TRACE_A));
    assert_eq!(status(&out[0]), "complete");
    assert_eq!(unjoined(&cx, "outside_window"), 2);
    // A rule record with no gateway yet is held to the device's window
    // plus the gateway's.
    let out = one_by_one(
        &mut t,
        vec![device(TRACE_C, T0), rule(TRACE_C, T0 + 15 * S)],
    );
    assert_eq!(out, []);
    assert_eq!(unjoined(&cx, "outside_window"), 2);
    let out = one_by_one(&mut t, vec![gateway(TRACE_C, T0 + 10 * S + 1)]);
    assert_eq!(out, []);
    assert_eq!(unjoined(&cx, "outside_window"), 3, "11s after its device");
}

#[test]
fn a_full_table_evicts_the_trace_that_closes_first_and_counts_it() {
    let (mut t, cx) = build("max_traces = 2");
    let out = one_by_one(
        &mut t,
        vec![
            device(TRACE_A, T0 + S),
            device(TRACE_B, T0),
            device(TRACE_C, T0 + 2 * S),
        ],
    );
    let [chain] = &out[..] else {
        panic!("expected B's chain, got {out:?}")
    };
    assert_eq!(chain.labels.get("trace_id"), Some(TRACE_B));
    assert_eq!(status(chain), "evicted");
    assert_eq!(
        counter(&cx, "iotel_correlate_evicted_traces_total", None),
        1
    );
    assert_eq!(chains(&cx, "evicted"), 1);
    assert_eq!((t.traces_held(), t.traces_open()), (2, 2));
    // The others still join.
    let out = one_by_one(
        &mut t,
        vec![gateway(TRACE_A, T0 + S), rule(TRACE_A, T0 + S)],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), "complete");
}

#[test]
fn a_record_repeated_after_its_chain_completed_is_a_duplicate() {
    let (mut t, cx) = build("");
    let out = one_by_one(
        &mut t,
        vec![
            device(TRACE_A, T0),
            device(TRACE_A, T0 + MS),
            gateway(TRACE_A, T0 + MS),
            rule(TRACE_A, T0 + 2 * MS),
            rule(TRACE_A, T0 + 2 * MS),
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(unjoined(&cx, "duplicate"), 2);
    // Forgotten once the watermark passes its newest record; a
    // retransmission is late then, and opens no trace.
    one_by_one(&mut t, vec![device(TRACE_B, T0 + 30 * S + 2 * MS)]);
    assert_eq!(t.traces_held(), 2);
    one_by_one(&mut t, vec![device(TRACE_B, T0 + 30 * S + 2 * MS + 1)]);
    assert_eq!((t.traces_held(), t.traces_open()), (1, 1));
    let out = one_by_one(&mut t, vec![rule(TRACE_A, T0 + 2 * MS)]);
    assert_eq!(out, []);
    assert_eq!(unjoined(&cx, "late"), 1);
    assert_eq!(unjoined(&cx, "duplicate"), 3, "B's device again");
}

#[test]
fn unmatched_records_and_records_without_a_trace_id_pass_on_counted() {
    let (mut t, cx) = build("");
    let mut other = LogRecord::new(T0, "kernel: eth0 up");
    other.labels = Labels::from_pairs([("source", "syslog")]);
    let mut no_trace = device(TRACE_A, T0);
    no_trace.fields.remove("trace");
    let (passed, out) = run(&mut t, vec![other.clone(), no_trace]);
    assert_eq!(out, []);
    assert_eq!(passed[0], other, "unmatched records pass unchanged");
    assert_eq!(
        passed[1].labels,
        Labels::from_pairs([("source", "device"), ("device_id", "d1")])
    );
    assert_eq!(
        counter(
            &cx,
            "iotel_correlate_records_total",
            Some(("hop", "unmatched"))
        ),
        1
    );
    assert_eq!(
        counter(
            &cx,
            "iotel_correlate_records_total",
            Some(("hop", "device"))
        ),
        1
    );
    assert_eq!(unjoined(&cx, "no_trace_id"), 1);
}

#[test]
fn metrics_and_spans_pass_unchanged() {
    let (mut t, _) = build("");
    let metrics = Events::Metrics(vec![iotel_model::Metric::new(
        "up",
        iotel_model::MetricType::Gauge,
        Labels::empty(),
        1.0,
        0,
    )]);
    let mut out = Vec::new();
    t.transform(metrics.clone(), &mut out);
    assert_eq!(out, [metrics]);
}

#[test]
fn shutdown_emits_every_open_trace_and_emit_partial_false_only_counts_them() {
    let (mut t, cx) = build("");
    one_by_one(&mut t, vec![device(TRACE_A, T0), gateway(TRACE_B, T0)]);
    let mut out = Vec::new();
    t.flush(&mut out);
    let (_, out) = split(out);
    let got: Vec<(&str, &str)> = out
        .iter()
        .map(|r| (r.labels.get("trace_id").unwrap(), status(r)))
        .collect();
    // B (gateway only) closes at T0 + 10s, A (device only) at T0 + 15s.
    assert_eq!(got, [(TRACE_B, "shutdown"), (TRACE_A, "shutdown")]);
    assert_eq!(out[0].fields["missing"], json!(["device", "rule"]));
    assert_eq!(chains(&cx, "shutdown"), 2);
    assert_eq!(t.traces_held(), 0);

    let (mut t, cx) = build("emit_partial = false");
    one_by_one(&mut t, vec![device(TRACE_A, T0)]);
    let mut out = Vec::new();
    t.flush(&mut out);
    assert_eq!(out, []);
    assert_eq!(chains(&cx, "shutdown"), 1);
}

#[test]
fn a_join_of_two_hops_completes_without_the_third() {
    let cfg: Config = toml::from_str(
        r#"
device = { match = { source = "device" }, device_id = "dev", trace_id = "trace" }
gateway = { match = { source = "gateway" }, device_id = "deviceId", gateway_id = "gw", trace_id = "traceparent" }
"#,
    )
    .unwrap();
    assert_eq!(cfg.validate(), vec![]);
    let cx = BuildContext::for_test("corr");
    let mut t = cfg.correlate(&cx);
    let out = one_by_one(&mut t, vec![gateway(TRACE_A, T0 + S), device(TRACE_A, T0)]);
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), "complete");
    assert_eq!(out[0].fields["device_gateway_ms"], json!(1000.0));
    // A rule log is just another record here.
    let (passed, _) = run(&mut t, vec![rule(TRACE_A, T0)]);
    assert_eq!(passed[0].labels, rule(TRACE_A, T0).labels);
}

#[test]
fn trace_ids_are_read_from_traceparents_and_hex_ids_are_lowercased() {
    assert_eq!(
        trace_id_of("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        TRACE_A
    );
    assert_eq!(trace_id_of(" 4BF92F3577B34DA6A3CE929D0E0E4736 "), TRACE_A);
    assert_eq!(trace_id_of("order-42"), "order-42");
    assert_eq!(
        trace_id_of("00-xyz-00f067aa0ba902b7-01"),
        "00-xyz-00f067aa0ba902b7-01"
    );
}

const PIPELINE: &str = r#"
[sources.logs]
type = "generator"
signal = "log"

[sinks.out]
type = "console"
inputs = ["chains"]

[transforms.chains]
type = "correlate"
inputs = ["logs"]
"#;

fn load_errors(extra: &str) -> Vec<String> {
    match crate::config::load_for_test(&format!("{PIPELINE}{extra}"), |_| None) {
        Ok(_) => vec![],
        Err(e) => e,
    }
}

#[test]
fn negative_and_zero_windows_are_refused_naming_their_key() {
    assert_eq!(
        load_errors(&format!("device_gateway = \"-10s\"\n{HOPS}")),
        [
            "edge.toml: transforms.chains.device_gateway: expected a duration such as \"30s\", \
             \"500ms\" or \"5m\", got \"-10s\" (expected number at 0)"
        ]
    );
    assert_eq!(
        load_errors(&format!(
            "device_gateway = \"0s\"\ngateway_rule = \"0ms\"\nmax_traces = 0\n{HOPS}"
        )),
        [
            "edge.toml: transforms.chains.max_traces: invalid value: integer `0`, expected a nonzero usize"
        ]
    );
    assert_eq!(
        load_errors(&format!(
            "device_gateway = \"0s\"\ngateway_rule = \"0ms\"\n{HOPS}"
        )),
        [
            "edge.toml: transforms.chains.device_gateway: expected a window above 0s, such as \"10s\"",
            "edge.toml: transforms.chains.gateway_rule: expected a window above 0s, such as \"5s\"",
        ]
    );
}

#[test]
fn hops_without_a_match_or_fewer_than_two_hops_are_refused() {
    assert_eq!(
        load_errors("device = { match = {} , device_id = \"\" }"),
        [
            "edge.toml: transforms.chains.device: expected at least two of the tables `device`, \
             `gateway` and `rule`, each with a `match`, to join records of",
            "edge.toml: transforms.chains.device.match: expected at least one label or field and \
             its value, such as { source = \"gateway\" }",
            "edge.toml: transforms.chains.device.device_id: expected a label or field name, got \"\"",
        ]
    );
    assert_eq!(
        load_errors("device = { matches = { a = \"b\" } }"),
        [
            "edge.toml: transforms.chains.device.matches: unknown key `matches`, expected one of \
          `match`, `device_id`, `gateway_id`, `rule_id`, `trace_id`"
        ]
    );
}

/// The records of `n` traces, each complete and inside the windows.
fn traces(n: usize) -> Vec<LogRecord> {
    (0..n)
        .flat_map(|i| {
            let id = format!("{:032x}", i + 1);
            let t = T0 + i as i64 * 100 * MS;
            [
                device(&id, t),
                gateway(&id, t + 40 * MS),
                rule(&id, t + 70 * MS),
            ]
        })
        .collect()
}

proptest! {
    /// Whatever order the records of complete traces come in (all within
    /// the allowed lateness), each trace gives exactly one complete chain
    /// with the same latencies, and nothing is counted unjoined.
    #[test]
    fn any_arrival_order_gives_each_trace_one_complete_chain(
        order in Just((0..24).collect::<Vec<usize>>()).prop_shuffle(),
        batch in 1usize..5,
    ) {
        let (mut t, cx) = build("");
        let records = traces(8);
        let shuffled: Vec<LogRecord> = order.iter().map(|&i| records[i].clone()).collect();
        let mut out = Vec::new();
        for chunk in shuffled.chunks(batch) {
            out.extend(run(&mut t, chunk.to_vec()).1);
        }
        let mut got: Vec<(String, f64, f64)> = out
            .iter()
            .map(|r| {
                prop_assert_eq!(status(r), "complete");
                Ok((
                    r.labels.get("trace_id").unwrap().to_string(),
                    r.fields["device_gateway_ms"].as_f64().unwrap(),
                    r.fields["gateway_rule_ms"].as_f64().unwrap(),
                ))
            })
            .collect::<Result<_, _>>()?;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let want: Vec<(String, f64, f64)> =
            (0..8).map(|i| (format!("{:032x}", i + 1), 40.0, 30.0)).collect();
        prop_assert_eq!(got, want);
        for reason in ["late", "outside_window", "duplicate", "no_trace_id"] {
            prop_assert_eq!(unjoined(&cx, reason), 0);
        }
    }
}

#[test]
fn the_transform_is_registered_and_a_valid_pipeline_loads() {
    assert_eq!(load_errors(HOPS), Vec::<String>::new());
    let cfg: crate::transforms::TransformConfig =
        toml::from_str(&format!("[correlate]\n{HOPS}")).unwrap();
    assert_eq!(cfg.type_name(), "correlate");
    assert!(crate::transforms::TransformConfig::TYPES.contains(&"correlate"));
    assert_eq!(
        crate::transforms::TransformConfig::missing_feature("correlate"),
        None
    );
    assert_eq!(cfg.validate(), vec![]);
    let mut t = cfg.build(&BuildContext::for_test("corr")).unwrap();
    let mut out = Vec::new();
    t.transform(
        Events::Logs(vec![
            device(TRACE_A, T0),
            gateway(TRACE_A, T0),
            rule(TRACE_A, T0),
        ]),
        &mut out,
    );
    let (passed, chains) = split(out);
    assert_eq!((passed.len(), chains.len()), (3, 1));
}
