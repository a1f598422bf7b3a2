//! The native protocol end to end: an agent (`iotel agent`, generator →
//! `iotel` sink with a disk buffer) and a receiver (`iotel gateway`, `iotel`
//! source → file), both real processes, killed and restarted. Every record
//! is counted by the sequence number the generator put in it.

#![allow(clippy::unwrap_used)]

mod util;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use util::{Iotel, free_port, wait_for};

fn receiver_config(port: u16) -> String {
    format!(
        r#"
[api]
address = "{{API}}"

[sources.agents]
type = "iotel"
address = "127.0.0.1:{port}"

[sinks.out]
type = "file"
inputs = ["agents"]
path = "{{DIR}}/received.ndjson"
"#
    )
}

/// An agent sending generated log lines `<message> <seq>` to `endpoint`.
fn agent_config(endpoint: &str, message: &str, generator: &str, buffer: &str) -> String {
    format!(
        r#"
[api]
address = "{{API}}"

[sources.gen]
type = "generator"
signal = "log"
message = "{message}"
{generator}

# Keeps the sink's input open once a counted generator is done.
[sources.keep]
type = "generator"
signal = "log"
message = "keepalive"
interval = "1h"

[sinks.up]
type = "iotel"
inputs = ["gen", "keep"]
endpoint = "{endpoint}"
agent_id = "dev-1"
batch = {{ max_events = 200, timeout = "50ms" }}
request_timeout = "2s"
retry = {{ initial_backoff = "20ms", max_backoff = "200ms" }}
buffer = {buffer}
"#
    )
}

/// The sequence numbers received per message prefix ("run1", …), in the
/// order they arrived.
fn received(dir: &Path) -> BTreeMap<String, Vec<u64>> {
    let text = std::fs::read_to_string(dir.join("received.ndjson")).unwrap_or_default();
    let mut by_run: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in text.lines() {
        // A line being written right now may be cut; the next read has it.
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let message = v["message"].as_str().unwrap_or_default();
        let run = message.split(' ').next().unwrap_or_default().to_string();
        by_run
            .entry(run)
            .or_default()
            .push(v["fields"]["seq"].as_u64().unwrap());
    }
    by_run
}

fn count(dir: &Path, run: &str) -> usize {
    received(dir).get(run).map_or(0, Vec::len)
}

/// Asserts `seqs` is exactly `0..n` in order, each once.
fn assert_exactly_once(seqs: &[u64], n: u64, what: &str) {
    let dups = seqs.len() as u64 - {
        let mut s = seqs.to_vec();
        s.sort_unstable();
        s.dedup();
        s.len() as u64
    };
    assert_eq!(dups, 0, "{what}: {dups} duplicate(s)");
    let want: Vec<u64> = (0..n).collect();
    if seqs != want {
        let missing: Vec<u64> = (0..n).filter(|i| !seqs.contains(i)).take(20).collect();
        panic!(
            "{what}: expected 0..{n} in order, got {} records; first missing: {missing:?}",
            seqs.len()
        );
    }
}

const DISK: &str = r#"{ type = "disk", max_size = "16MiB" }"#;

#[test]
fn an_agent_killed_mid_stream_delivers_every_accepted_record_exactly_once() {
    let port = free_port();
    let rcv = Iotel::start("gateway", &receiver_config(port), &[]);
    let endpoint = format!("http://127.0.0.1:{port}");
    let agent = Iotel::start(
        "agent",
        &agent_config(
            &endpoint,
            "run1",
            "interval = \"2ms\"\nbatch_size = 5",
            DISK,
        ),
        &[],
    );
    wait_for("records to arrive", Duration::from_secs(30), || {
        (count(rcv.dir(), "run1") >= 500).then_some(())
    });
    // The agent runs one thread, which also serves /metrics: what its sink
    // had received is exactly what its buffer held.
    let accepted = agent.metric(
        "iotel_component_received_events_total",
        &["component_id=\"up\""],
    ) as u64
        // The keepalive line, sent at start.
        - 1;
    assert!(accepted >= 500, "{accepted}");
    let (dir, api, role) = agent.kill9();
    // Restarted (generating one batch, then idle), it replays what the
    // receiver had not acknowledged.
    let text = std::fs::read_to_string(dir.path().join("iotel.toml"))
        .unwrap()
        .replace("\"run1\"", "\"run2\"")
        .replace("interval = \"2ms\"", "interval = \"1h\"");
    std::fs::write(dir.path().join("iotel.toml"), text).unwrap();
    let agent = Iotel::restart_in(dir, api, &role);
    wait_for("the backlog to drain", Duration::from_secs(30), || {
        let empty = agent.metric("iotel_buffer_records", &["component_id=\"up\""]) == 0.0;
        (empty && count(rcv.dir(), "run2") > 0).then_some(())
    });
    let got = received(rcv.dir());
    let run1 = &got["run1"];
    assert!(
        run1.len() as u64 >= accepted,
        "accepted {accepted} before the kill, received {}",
        run1.len()
    );
    assert_exactly_once(run1, run1.len() as u64, "run1");
    drop(agent);
    drop(rcv);
}

#[test]
fn a_receiver_killed_repeatedly_loses_nothing_and_duplicates_nothing() {
    let port = free_port();
    let rcv = Iotel::start("gateway", &receiver_config(port), &[]);
    let endpoint = format!("http://127.0.0.1:{port}");
    let total = 3000;
    let mut agent = Iotel::start(
        "agent",
        &agent_config(
            &endpoint,
            "run1",
            &format!("interval = \"2ms\"\nbatch_size = 5\ncount = {total}"),
            DISK,
        ),
        &[],
    );
    let mut rcv = rcv;
    for round in 1..=3 {
        let before = count(rcv.dir(), "run1");
        wait_for("records to arrive", Duration::from_secs(30), || {
            (count(rcv.dir(), "run1") >= before + 100 || before + 100 > total).then_some(())
        });
        let (dir, api, role) = rcv.kill9();
        // Down for a moment: the agent retries, its buffer holds on.
        std::thread::sleep(Duration::from_millis(200 * round));
        rcv = Iotel::restart_in(dir, api, &role);
    }
    wait_for("everything to arrive", Duration::from_secs(60), || {
        (count(rcv.dir(), "run1") >= total).then_some(())
    });
    wait_for(
        "the agent's buffer to empty",
        Duration::from_secs(30),
        || (agent.metric("iotel_buffer_records", &["component_id=\"up\""]) == 0.0).then_some(()),
    );
    assert_exactly_once(&received(rcv.dir())["run1"], total as u64, "run1");
    assert_eq!(
        agent.metric(
            "iotel_component_sent_events_total",
            &["component_id=\"up\""]
        ),
        // The keepalive line too.
        total as f64 + 1.0
    );
    agent.proc.terminate(Duration::from_secs(20));
}

#[test]
fn every_network_fault_between_agent_and_receiver_ends_with_each_record_once() {
    use std::num::NonZeroU64;
    use util::proxy::{Fault, FaultProxy};
    let port = free_port();
    let rcv = Iotel::start("gateway", &receiver_config(port), &[]);
    let proxy = FaultProxy::start(format!("127.0.0.1:{port}").parse().unwrap());
    let endpoint = format!("http://{}", proxy.addr());
    let total = 6000;
    let agent = Iotel::start(
        "agent",
        &agent_config(
            &endpoint,
            "run1",
            &format!("interval = \"10ms\"\nbatch_size = 5\ncount = {total}"),
            DISK,
        ),
        &[],
    );
    let faults = [
        Fault::Refuse,
        Fault::ResetMidRequest { after_bytes: 100 },
        Fault::Blackhole,
        Fault::SlowDrip {
            bytes_per_sec: NonZeroU64::new(200).unwrap(),
        },
        Fault::DropResponse,
        Fault::Flapping {
            up: Duration::from_millis(150),
            down: Duration::from_millis(150),
        },
    ];
    for fault in faults {
        let label = format!("{fault:?}");
        proxy.set(fault);
        std::thread::sleep(Duration::from_millis(700));
        proxy.set(Fault::Pass);
        let before = count(rcv.dir(), "run1");
        // Healed: records flow again before the next fault.
        wait_for(
            &format!("records to flow again after {label}"),
            Duration::from_secs(30),
            || (count(rcv.dir(), "run1") > before || before >= total).then_some(()),
        );
    }
    wait_for("everything to arrive", Duration::from_secs(60), || {
        (count(rcv.dir(), "run1") >= total).then_some(())
    });
    wait_for(
        "the agent's buffer to empty",
        Duration::from_secs(30),
        || (agent.metric("iotel_buffer_records", &["component_id=\"up\""]) == 0.0).then_some(()),
    );
    assert_exactly_once(&received(rcv.dir())["run1"], total as u64, "run1");
    // The faults were felt: failed attempts and retransmits were counted.
    let errors = agent.metric("iotel_component_errors_total", &["component_id=\"up\""]);
    assert!(errors >= 4.0, "{errors} failed attempts");
    let duplicates = rcv.metric(
        "iotel_component_errors_total",
        &["component_id=\"agents\"", "error_code=\"duplicate\""],
    );
    assert!(duplicates >= 1.0, "DropResponse must cause a retransmit");
}
