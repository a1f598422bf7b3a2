//! `iotel loadgen` against a real gateway process that forwards to the
//! loadgen's own listener: every generated event is acknowledged, arrives
//! once, and the report says so.

#![allow(clippy::unwrap_used)]

mod util;

use std::process::Command;
use util::{Iotel, free_port};

fn loadgen(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .arg("loadgen")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn loadgen_through_a_gateway_counts_every_event_once_end_to_end() {
    let gateway_port = free_port();
    let listen_port = free_port();
    let gateway = Iotel::start(
        "gateway",
        &format!(
            r#"
[api]
address = "{{API}}"

[sources.agents]
type = "iotel"
address = "127.0.0.1:{gateway_port}"

[sinks.up]
type = "iotel"
inputs = ["agents"]
endpoint = "http://127.0.0.1:{listen_port}"
agent_id = "gw-1"
batch = {{ max_events = 5000, timeout = "100ms" }}
"#
        ),
        &[],
    );
    let report = gateway.dir().join("report.json");
    let (code, out, err) = loadgen(&[
        "--target",
        &format!("http://127.0.0.1:{gateway_port}"),
        "--listen",
        &format!("127.0.0.1:{listen_port}"),
        "--devices",
        "120",
        "--devices-per-agent",
        "25",
        "--spans-per-second",
        "2",
        "--duration",
        "3s",
        "--interval",
        "200ms",
        "--tenant",
        "acme",
        "--report-json",
        &report.display().to_string(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}\n{}", gateway.proc.report());
    assert!(
        err.contains("120 devices in 5 agent(s)"),
        "the start line names the fleet: {err}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    // 120 devices for 3 s: 10 samples, 1 log line and 2 spans per device
    // per second.
    for (signal, generated) in [("metrics", 3600), ("logs", 360), ("traces", 720)] {
        let s = &r["signals"][signal];
        assert_eq!(s["generated"], generated, "{signal}: {r}");
        assert_eq!(s["acked"], generated, "{signal}: {r}");
        assert_eq!(s["received"], generated, "{signal}: {r}");
        assert_eq!(s["duplicates"], 0, "{signal}: {r}");
        assert_eq!(s["refused"], 0, "{signal}: {r}");
    }
    assert!(r["end_to_end_latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(out.contains("received at --listen:"), "{out}");
    // The gateway saw exactly what loadgen had acknowledged.
    assert_eq!(
        gateway.metric(
            "iotel_component_received_events_total",
            &["component_id=\"agents\""]
        ),
        4680.0
    );
    // The gateway's sink reports the latency it added.
    let p99 = util::wait_for(
        "the gateway's sink latency",
        std::time::Duration::from_secs(10),
        || {
            let v = gateway.metric("iotel_sink_latency_seconds", &["quantile=\"0.99\""]);
            (v > 0.0).then_some(v)
        },
    );
    let p50 = gateway.metric("iotel_sink_latency_seconds", &["quantile=\"0.5\""]);
    assert!(0.0 < p50 && p50 <= p99, "p50 {p50}, p99 {p99}");
    // And how long its requests took, within what they added.
    let request_p99 = gateway.metric("iotel_sink_request_seconds", &["quantile=\"0.99\""]);
    let request_p50 = gateway.metric("iotel_sink_request_seconds", &["quantile=\"0.5\""]);
    assert!(
        0.0 < request_p50 && request_p50 <= request_p99,
        "p50 {request_p50}, p99 {request_p99}"
    );
}

#[test]
fn loadgen_against_nothing_reports_the_connection_errors_and_fails() {
    let port = free_port();
    let (code, out, err) = loadgen(&[
        "--target",
        &format!("http://127.0.0.1:{port}"),
        "--devices",
        "3",
        "--duration",
        "1s",
        "--drain-timeout",
        "1s",
    ]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("acked:     0 metrics, 0 logs, 0 traces"),
        "{out}"
    );
    assert!(out.contains("Connection refused"), "{out}");
}

#[test]
fn loadgen_refuses_a_bad_share_of_flapping_agents() {
    let (code, _, err) = loadgen(&["--target", "http://127.0.0.1:1", "--flapping", "2"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("error: --flapping is a share of agents: expected 0 to 1, got 2"),
        "{err}"
    );
}
