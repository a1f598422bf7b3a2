#![allow(clippy::unwrap_used)]

use super::*;
use iotel_model::{MetricType, SpanStatus};
use serde_json::json;

/// 2026-11-24T16:00:00Z, Unix milliseconds.
const T0: i64 = 1_764_000_000_000;
const MIN: i64 = 60_000;
const TRACE: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const TRACE_HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

struct Harness {
    t: DeviceLifecycle,
    clock: Arc<AtomicI64>,
    metrics: ComponentMetrics,
}

fn harness(toml_text: &str) -> Harness {
    let config: Config = toml::from_str(toml_text).unwrap();
    assert_eq!(config.validate(), []);
    let clock = Arc::new(AtomicI64::new(T0));
    let metrics = ComponentMetrics::detached("lifecycle", "device_lifecycle");
    Harness {
        t: DeviceLifecycle::new(config, Clock::Manual(clock.clone()), &metrics),
        clock,
        metrics,
    }
}

impl Harness {
    fn at(&self, ms: i64) {
        self.clock.store(ms, Ordering::Relaxed);
    }

    /// Runs a batch; checks it passed unchanged and returns the events made.
    fn run(&mut self, events: Events) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        self.t.transform(events.clone(), &mut out);
        assert_eq!(out, [events]);
        let mut routed = Vec::new();
        self.t.routed(&mut routed);
        routed
            .into_iter()
            .flat_map(|(name, e)| {
                assert_eq!(name, EVENTS);
                let Events::Logs(v) = e else {
                    panic!("expected logs")
                };
                v
            })
            .map(|r| {
                json!({
                    "time_ms": r.timestamp_ns / 1_000_000,
                    "labels": r.labels.to_string(),
                    "severity": r.severity.map(|s| format!("{s:?}")),
                    "message": r.message,
                    "fields": r.fields,
                })
            })
            .collect()
    }

    fn timeouts(&self) -> u64 {
        self.t.timeouts.get()
    }
}

fn info(device: &str, firmware: &str, ts: i64) -> Events {
    Events::Metrics(vec![Metric::new(
        "device_info",
        MetricType::Gauge,
        Labels::from_pairs([
            ("device_id", device),
            ("firmware", firmware),
            ("model", "m1"),
        ]),
        1.0,
        ts,
    )])
}

fn log(device: &str, fields: serde_json::Value) -> Events {
    let mut r = LogRecord::new(T0 * 1_000_000, "upgrade");
    r.labels = Labels::from_pairs([("device_id", device)]);
    let serde_json::Value::Object(f) = fields else {
        panic!("fields are an object")
    };
    r.fields = f;
    Events::Logs(vec![r])
}

fn span(device: &str, name: &str, attributes: serde_json::Value) -> Events {
    let serde_json::Value::Object(attributes) = attributes else {
        panic!("attributes are an object")
    };
    Events::Traces(vec![Span {
        trace_id: TRACE,
        span_id: [1; 8],
        parent_span_id: None,
        name: name.into(),
        start_ns: T0 * 1_000_000,
        end_ns: T0 * 1_000_000 + 1,
        labels: Labels::from_pairs([("device_id", device)]),
        attributes,
        status: SpanStatus::Unset,
    }])
}

#[test]
fn a_firmware_label_change_of_a_device_is_one_event_with_from_and_to() {
    let mut h = harness("");
    assert_eq!(
        h.run(info("d1", "1.0", T0)),
        Vec::<serde_json::Value>::new()
    );
    assert_eq!(
        h.run(info("d2", "7.0", T0)),
        Vec::<serde_json::Value>::new()
    );
    assert_eq!(
        h.run(info("d1", "1.1", T0 + MIN)),
        [json!({
            "time_ms": T0 + MIN,
            "labels": r#"{device_id="d1"}"#,
            "severity": "Info",
            "message": "the firmware changed from 1.0 to 1.1",
            "fields": {
                "event.name": "device.firmware.changed",
                "firmware.from": "1.0",
                "firmware.to": "1.1",
            },
        })]
    );
    assert_eq!(
        h.run(info("d1", "1.1", T0 + 2 * MIN)),
        Vec::<serde_json::Value>::new()
    );
    assert_eq!(
        h.run(info("d2", "7.0", T0 + 2 * MIN)),
        Vec::<serde_json::Value>::new()
    );
}

#[test]
fn an_upgrade_that_never_reports_back_is_flagged_once_after_the_timeout() {
    let mut h = harness("upgrade_timeout = \"30m\"");
    h.run(info("d1", "1.0", T0));
    let start = log(
        "d1",
        json!({"event.name": "device.firmware.upgrade.start", "firmware.to": "2.0"}),
    );
    assert_eq!(h.run(start), Vec::<serde_json::Value>::new());
    assert_eq!(h.t.pending(), 1);
    h.at(T0 + 30 * MIN - 1);
    assert_eq!(
        h.run(info("d1", "1.0", T0 + 29 * MIN)),
        Vec::<serde_json::Value>::new()
    );
    h.at(T0 + 30 * MIN);
    assert_eq!(
        h.run(info("d2", "5.0", T0 + 30 * MIN)),
        [json!({
            "time_ms": T0 + 30 * MIN,
            "labels": r#"{device_id="d1"}"#,
            "severity": "Warn",
            "message": "the firmware upgrade of d1 to 2.0 did not report back within 30m",
            "fields": {
                "event.name": "device.firmware.upgrade.timeout",
                "firmware.result": "timeout",
                "firmware.from": "1.0",
                "firmware.to": "2.0",
            },
        })]
    );
    assert_eq!(h.timeouts(), 1);
    // Flagged once: later batches and a late result add nothing.
    h.at(T0 + 90 * MIN);
    assert_eq!(
        h.run(info("d1", "1.0", T0 + 90 * MIN)),
        Vec::<serde_json::Value>::new()
    );
    let end = log(
        "d1",
        json!({"event.name": "device.firmware.upgrade.end", "firmware.result": "ok"}),
    );
    assert_eq!(h.run(end), Vec::<serde_json::Value>::new());
    assert_eq!((h.timeouts(), h.t.pending()), (1, 0));
}

#[test]
fn an_upgrade_that_reports_back_in_any_of_the_three_ways_is_not_flagged() {
    let start = || {
        log(
            "d1",
            json!({"event.name": "device.firmware.upgrade.start", "firmware.to": "2.0"}),
        )
    };
    let reports: [Events; 3] = [
        log(
            "d1",
            json!({"event.name": "device.firmware.upgrade.end", "firmware.result": "failed"}),
        ),
        span("d1", "firmware.upgrade", json!({"firmware.result": "ok"})),
        info("d1", "2.0", T0 + 10 * MIN),
    ];
    for report in reports {
        let mut h = harness("");
        h.run(info("d1", "1.0", T0));
        h.run(start());
        h.at(T0 + 10 * MIN);
        h.run(report);
        assert_eq!(h.t.pending(), 0);
        h.at(T0 + 60 * MIN);
        assert_eq!(h.run(info("d9", "1", T0)), Vec::<serde_json::Value>::new());
        assert_eq!(h.timeouts(), 0);
    }
}

#[test]
fn step_spans_start_an_upgrade_that_times_out_with_their_trace_id_and_late_steps_start_none() {
    let mut h = harness("upgrade_timeout = \"5m\"");
    let download = span(
        "d1",
        "firmware.download",
        json!({"firmware.from": "1.0", "firmware.to": "2.0"}),
    );
    h.run(download);
    h.run(span("d1", "firmware.verify", json!({})));
    assert_eq!(h.t.pending(), 1);
    h.at(T0 + 5 * MIN);
    let got = h.run(Events::Traces(vec![]));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0]["fields"],
        json!({
            "event.name": "device.firmware.upgrade.timeout",
            "firmware.result": "timeout",
            "firmware.from": "1.0",
            "firmware.to": "2.0",
            "trace_id": TRACE_HEX,
        })
    );
    // A step of the same trace arriving late starts no new upgrade.
    h.run(span("d1", "firmware.apply", json!({})));
    assert_eq!(h.t.pending(), 0);
    h.at(T0 + 60 * MIN);
    assert_eq!(
        h.run(Events::Traces(vec![])),
        Vec::<serde_json::Value>::new()
    );
    assert_eq!(h.timeouts(), 1);
}

#[test]
fn a_device_that_reports_its_own_firmware_changes_is_not_reported_twice() {
    let mut h = harness("");
    h.run(info("d1", "1.0", T0));
    let changed = log(
        "d1",
        json!({"event.name": "device.firmware.changed", "firmware.from": "1.0", "firmware.to": "1.1"}),
    );
    h.run(changed);
    assert_eq!(
        h.run(info("d1", "1.1", T0 + MIN)),
        Vec::<serde_json::Value>::new()
    );
    // Even when the info metric comes first next time.
    assert_eq!(
        h.run(info("d1", "1.2", T0 + 2 * MIN)),
        Vec::<serde_json::Value>::new()
    );
}

#[test]
fn events_without_the_device_label_pass_and_the_device_limit_is_counted() {
    let mut h = harness("max_devices = 2");
    let no_device = Events::Metrics(vec![Metric::new(
        "device_info",
        MetricType::Gauge,
        Labels::from_pairs([("firmware", "1")]),
        1.0,
        T0,
    )]);
    assert_eq!(h.run(no_device), Vec::<serde_json::Value>::new());
    h.run(info("d1", "1", T0));
    h.run(info("d2", "1", T0));
    h.run(info("d3", "1", T0));
    h.run(info("d3", "2", T0));
    assert_eq!(h.metrics.errors("too_many_devices").get(), 2);
    // Tracked devices still are.
    assert_eq!(h.run(info("d2", "2", T0)).len(), 1);
}

#[test]
fn config_problems_name_the_key() {
    let c: Config =
        toml::from_str("device_label = \"\"\nupgrade_timeout = \"500ms\"\ninfo_metric = \"\"")
            .unwrap();
    assert_eq!(
        c.validate(),
        [
            Problem::new("device_label", "expected a label name"),
            Problem::new("info_metric", "expected a metric name"),
            Problem::new("upgrade_timeout", "expected at least 1s, got 500ms"),
        ]
    );
    let e = toml::from_str::<Config>("timeout = \"1m\"").unwrap_err();
    assert!(e.to_string().contains("unknown field `timeout`"), "{e}");
}

fn harness_in(toml_text: &str, dir: &std::path::Path, at: i64) -> Harness {
    let mut h = harness(toml_text);
    h.at(at);
    let config: Config = toml::from_str(toml_text).unwrap();
    h.t = DeviceLifecycle::new(config, Clock::Manual(h.clock.clone()), &h.metrics)
        .with_state(state::StateFile::in_dir(dir));
    h
}

#[test]
fn upgrades_under_way_and_firmware_survive_a_clean_restart_of_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness_in("", dir.path(), T0);
    h.run(info("d1", "1.0", T0));
    h.run(info("d2", "7.0", T0));
    h.run(log(
        "d1",
        json!({"event.name": "device.firmware.upgrade.start", "firmware.to": "2.0"}),
    ));
    h.t.flush(&mut Vec::new());
    assert!(!dir.path().join("devices.json.tmp").exists());

    // The node starts again ten minutes later.
    let mut h = harness_in("", dir.path(), T0 + 10 * MIN);
    assert_eq!(h.t.pending(), 1);
    assert_eq!(
        h.run(info("d1", "1.0", T0 + 10 * MIN)),
        Vec::<serde_json::Value>::new()
    );
    let changed = h.run(info("d2", "7.1", T0 + 10 * MIN));
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(
        changed[0]["fields"],
        json!({"event.name": "device.firmware.changed", "firmware.from": "7.0", "firmware.to": "7.1"})
    );
    // The deadline is the one set before the restart.
    h.at(T0 + 30 * MIN);
    let got = h.run(Events::Logs(vec![]));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["labels"], r#"{device_id="d1"}"#);
    assert_eq!(
        got[0]["fields"],
        json!({
            "event.name": "device.firmware.upgrade.timeout",
            "firmware.result": "timeout",
            "firmware.from": "1.0",
            "firmware.to": "2.0",
        })
    );
    assert_eq!(h.metrics.errors("state_write_failed").get(), 0);
}

#[test]
fn an_unreadable_device_list_is_counted_and_the_transform_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("devices.json"),
        "{\"version\": 9, \"devices\": []}",
    )
    .unwrap();
    let mut h = harness_in("", dir.path(), T0);
    assert_eq!(h.metrics.errors("state_unreadable").get(), 1);
    assert_eq!(
        h.run(info("d1", "1.0", T0)),
        Vec::<serde_json::Value>::new()
    );
    // Replaced at the next clean stop.
    h.t.flush(&mut Vec::new());
    let saved = state::StateFile::in_dir(dir.path())
        .load()
        .unwrap()
        .unwrap();
    assert_eq!(saved.devices.len(), 1);
    assert_eq!(saved.devices[0].firmware.as_deref(), Some("1.0"));
}
