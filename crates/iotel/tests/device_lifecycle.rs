//! The agent tells its device's lifecycle across its own runs: a restart
//! after a clean stop, a restart after a crash, a firmware change — from
//! the state it keeps in its data dir (docs/device-lifecycle.md).

#![allow(clippy::unwrap_used)]

mod util;

use std::time::Duration;
use util::{Iotel, wait_for};

const CONFIG: &str = r#"
[api]
address = "{API}"

[sources.lifecycle]
type = "device_lifecycle"
interval = "1s"
firmware_file = "os-release"

[sinks.events]
type = "file"
inputs = ["lifecycle.logs"]
path = "{DIR}/events.ndjson"
"#;

/// Waits until the events file holds a line with every one of `parts`.
fn wait_for_event(node: &Iotel, parts: &[&str]) -> serde_json::Value {
    let path = node.dir().join("events.ndjson");
    let what = format!("an event with {parts:?}");
    let line = wait_for(&what, Duration::from_secs(20), || {
        std::fs::read_to_string(&path)
            .ok()?
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_string)
    });
    serde_json::from_str(&line).unwrap()
}

fn restart(node: Iotel) -> Iotel {
    let (dir, port, role) = node.kill9();
    Iotel::restart_in(dir, port, &role)
}

#[test]
fn the_agent_tells_a_clean_restart_a_crash_and_a_firmware_change_across_its_runs() {
    let mut node = Iotel::start("agent", CONFIG, &[("os-release", "VERSION_ID=\"1.0\"\n")]);
    // The first reading remembered the firmware.
    let state = node
        .dir()
        .join("data/device_lifecycle/lifecycle/state.json");
    wait_for("the first reading", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&state).ok()?;
        text.contains("\"firmware\": \"1.0\"").then_some(())
    });
    let status = node.proc.terminate(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "{}", node.proc.report());

    // Stopped cleanly, started again on the same boot.
    let node = restart(node);
    let e = wait_for_event(&node, &["\"iotel.agent.restart.reason\":\"clean\""]);
    assert_eq!(e["severity"], "INFO", "{e}");
    assert_eq!(e["fields"]["event.name"], "iotel.agent.restart", "{e}");

    // Killed, as a crash would, and started again.
    let mut node = restart(node);
    let e = wait_for_event(&node, &["\"iotel.agent.restart.reason\":\"crash\""]);
    assert_eq!(e["severity"], "WARN", "{e}");

    std::fs::write(node.dir().join("os-release"), "VERSION_ID=\"1.1\"\n").unwrap();
    let e = wait_for_event(&node, &["device.firmware.changed"]);
    assert_eq!(
        e["fields"],
        serde_json::json!({
            "event.name": "device.firmware.changed",
            "firmware.from": "1.0",
            "firmware.to": "1.1",
        })
    );
    let status = node.proc.terminate(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "{}", node.proc.report());
    // The same boot throughout: no boot event.
    let events = std::fs::read_to_string(node.dir().join("events.ndjson")).unwrap();
    assert!(!events.contains("\"device.boot\""), "{events}");
}
