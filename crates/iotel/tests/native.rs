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

/// Waits until `total` run1 records arrived and the agent holds nothing
/// more, then checks each arrived exactly once, in order.
fn all_arrived_once(agent: &Iotel, rcv: &Iotel, total: u64) {
    wait_for("everything to arrive", Duration::from_secs(60), || {
        (count(rcv.dir(), "run1") as u64 >= total).then_some(())
    });
    wait_for(
        "the agent's buffer to empty",
        Duration::from_secs(30),
        || (up(agent, "iotel_buffer_records", &[]) == 0.0).then_some(()),
    );
    assert_exactly_once(&received(rcv.dir())["run1"], total, "run1");
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
    // With the agent still connected (keep-alive), the receiver stops
    // promptly and cleanly: open connections are closed at shutdown.
    let mut rcv = rcv;
    let status = rcv.proc.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status}\n{}", rcv.proc.report());
    drop(agent);
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
    all_arrived_once(&agent, &rcv, total as u64);
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
    all_arrived_once(&agent, &rcv, total as u64);
    // The faults were felt: failed attempts and retransmits were counted.
    let errors = agent.metric("iotel_component_errors_total", &["component_id=\"up\""]);
    assert!(errors >= 4.0, "{errors} failed attempts");
    let duplicates = rcv.metric(
        "iotel_component_errors_total",
        &["component_id=\"agents\"", "error_code=\"duplicate\""],
    );
    assert!(duplicates >= 1.0, "DropResponse must cause a retransmit");
}

/// An agent generating `count` single-event batches as fast as it may while
/// its receiver at `port` is down, with `buffer`. Returns once the sink has
/// taken in everything it will take (`count` plus the keepalive), or has
/// stopped taking (under `block`).
fn offline_agent(port: u16, count: u64, buffer: &str) -> Iotel {
    Iotel::start(
        "agent",
        &agent_config(
            &format!("http://127.0.0.1:{port}"),
            "run1",
            &format!("interval = \"1ms\"\nbatch_size = 1\ncount = {count}"),
            buffer,
        ),
        &[],
    )
}

fn up(node: &Iotel, metric: &str, extra: &[&str]) -> f64 {
    let mut labels = vec!["component_id=\"up\""];
    labels.extend_from_slice(extra);
    node.metric(metric, &labels)
}

/// Every received record over all runs: each at most once, in order per run.
fn assert_in_order_and_once(dir: &Path) -> usize {
    let mut total = 0;
    for (run, seqs) in received(dir) {
        // Each agent run sends its own keepalive 0.
        assert!(
            run == "keepalive" || seqs.windows(2).all(|w| w[0] < w[1]),
            "{run}: out of order or duplicated"
        );
        total += seqs.len();
    }
    total
}

#[test]
fn drop_oldest_keeps_the_newest_and_counts_every_record_it_dropped() {
    let port = free_port();
    let n = 5000;
    let agent = offline_agent(
        port,
        n,
        r#"{ type = "disk", max_size = "128KiB", when_full = "drop_oldest" }"#,
    );
    wait_for("the generator to finish", Duration::from_secs(60), || {
        (agent.metric(
            "iotel_component_sent_events_total",
            &["component_id=\"gen\""],
        ) == n as f64)
            .then_some(())
    });
    wait_for(
        "the sink to take everything",
        Duration::from_secs(10),
        || {
            (up(&agent, "iotel_component_received_events_total", &[]) == (n + 1) as f64)
                .then_some(())
        },
    );
    let dropped_events = up(
        &agent,
        "iotel_component_discarded_events_total",
        &["reason=\"drop_oldest\""],
    );
    let dropped_batches = up(
        &agent,
        "iotel_buffer_dropped_total",
        &["reason=\"drop_oldest\""],
    );
    assert!(dropped_events > 1000.0, "{dropped_events} dropped");
    // One event per batch: the two counters agree.
    assert_eq!(dropped_events, dropped_batches);
    assert!(up(&agent, "iotel_buffer_bytes", &[]) <= 128.0 * 1024.0);

    let rcv = Iotel::start("gateway", &receiver_config(port), &[]);
    drained_and_accounted(&agent, n + 1);
    let received = assert_in_order_and_once(rcv.dir());
    let sent = up(&agent, "iotel_component_sent_events_total", &[]);
    assert_eq!(received as f64, sent);
    // Everything the sink took in was delivered or dropped for room, and
    // the newest record made it.
    let dropped = up(&agent, "iotel_component_discarded_events_total", &[]);
    assert_eq!(dropped, dropped_events, "only drop_oldest drops");
    assert_eq!(received as f64 + dropped, (n + 1) as f64);
    assert_eq!(received_last(rcv.dir(), "run1"), Some(n - 1));
}

/// Waits until the agent's sink holds nothing and every one of the `total`
/// events it took in is counted as sent or discarded.
fn drained_and_accounted(agent: &Iotel, total: u64) {
    wait_for("the backlog to drain", Duration::from_secs(60), || {
        (up(agent, "iotel_buffer_events", &[]) == 0.0).then_some(())
    });
    wait_for(
        "the last delivery to be counted",
        Duration::from_secs(10),
        || {
            let sent = up(agent, "iotel_component_sent_events_total", &[]);
            let dropped = up(agent, "iotel_component_discarded_events_total", &[]);
            (sent + dropped == total as f64).then_some(())
        },
    );
}

fn received_last(dir: &Path, run: &str) -> Option<u64> {
    received(dir).get(run).and_then(|s| s.last().copied())
}

#[test]
fn block_holds_the_source_back_and_loses_nothing() {
    let port = free_port();
    let n = 5000;
    let agent = offline_agent(
        port,
        n,
        r#"{ type = "disk", max_size = "128KiB", when_full = "block" }"#,
    );
    // Full: the generator is held back, nothing is dropped.
    let held = wait_for(
        "the generator to be held back",
        Duration::from_secs(60),
        || {
            let a = agent.metric(
                "iotel_component_sent_events_total",
                &["component_id=\"gen\""],
            );
            std::thread::sleep(Duration::from_millis(500));
            let b = agent.metric(
                "iotel_component_sent_events_total",
                &["component_id=\"gen\""],
            );
            (a == b && b > 0.0 && b < n as f64).then_some(b)
        },
    );
    assert!(up(&agent, "iotel_buffer_bytes", &[]) > 100.0 * 1024.0);
    assert_eq!(
        up(&agent, "iotel_component_discarded_events_total", &[]),
        0.0
    );
    assert!(held < n as f64, "{held}");

    let rcv = Iotel::start("gateway", &receiver_config(port), &[]);
    wait_for("everything to arrive", Duration::from_secs(60), || {
        (count(rcv.dir(), "run1") == n as usize).then_some(())
    });
    assert_exactly_once(&received(rcv.dir())["run1"], n, "run1");
    assert_eq!(
        up(&agent, "iotel_component_discarded_events_total", &[]),
        0.0
    );
}

#[test]
fn a_corrupted_and_a_truncated_segment_lose_only_their_damaged_records() {
    let port = free_port();
    let n = 3000;
    let agent = offline_agent(
        port,
        n,
        r#"{ type = "disk", max_size = "4MiB", max_segment_size = "16KiB" }"#,
    );
    wait_for(
        "the sink to take everything",
        Duration::from_secs(60),
        || {
            (up(&agent, "iotel_component_received_events_total", &[]) == (n + 1) as f64)
                .then_some(())
        },
    );
    let mut agent = agent;
    agent.proc.terminate(Duration::from_secs(20));
    let dir = agent.dir().to_path_buf();
    let segments_dir = dir.join("data/buffers/up");
    let mut segments: Vec<_> = std::fs::read_dir(&segments_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("buffer-") && name.ends_with(".dat")
        })
        .collect();
    segments.sort();
    assert!(segments.len() >= 5, "{segments:?}");
    // A flipped byte in the middle of the second segment…
    let mut bytes = std::fs::read(&segments[1]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&segments[1], bytes).unwrap();
    // …and the third cut in half, as a lost write would leave it.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segments[2])
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
    drop(f);

    let rcv = Iotel::start("gateway", &receiver_config(port), &[]);
    let (tmp, api, role) = agent.kill9();
    let text = std::fs::read_to_string(tmp.path().join("iotel.toml"))
        .unwrap()
        .replace("\"run1\"", "\"run2\"")
        .replace(&format!("count = {n}"), "count = 1");
    std::fs::write(tmp.path().join("iotel.toml"), text).unwrap();
    let agent = Iotel::restart_in(tmp, api, &role);
    wait_for("the backlog to drain", Duration::from_secs(60), || {
        let empty = up(&agent, "iotel_buffer_records", &[]) == 0.0;
        (empty && count(rcv.dir(), "run2") == 1).then_some(())
    });
    let lost = up(
        &agent,
        "iotel_buffer_dropped_total",
        &["reason=\"corrupt\""],
    ) + up(
        &agent,
        "iotel_buffer_dropped_total",
        &["reason=\"segment_missing\""],
    );
    assert!(lost >= 2.0, "both damages are counted: {lost}");
    let received = assert_in_order_and_once(rcv.dir());
    // First run: n + keepalive; second: 1 + keepalive. One event a batch.
    assert_eq!(received as f64 + lost, (n + 1 + 2) as f64);
    // The records after the damage were delivered.
    assert_eq!(received_last(rcv.dir(), "run1"), Some(n - 1));
}

#[test]
fn a_filling_buffer_stretches_the_scrape_interval_until_it_drains() {
    // A device app with 60 gauges.
    let body: String = std::iter::once("# TYPE sensor gauge\n".to_string())
        .chain((0..60).map(|i| format!("sensor{{i=\"{i}\"}} {i}\n")))
        .collect();
    let app = util::serve_exposition(Box::leak(body.into_boxed_str()));
    let port = free_port();
    let config = format!(
        r#"
[api]
address = "{{API}}"

[sources.app]
type = "prometheus_scrape"
targets = ["http://{app}/metrics"]
interval = "1s"

[sinks.up]
type = "iotel"
inputs = ["app"]
endpoint = "http://127.0.0.1:{port}"
agent_id = "dev-1"
batch = {{ max_events = 40, timeout = "50ms" }}
retry = {{ initial_backoff = "20ms", max_backoff = "200ms" }}
buffer = {{ type = "memory", max_events = 200 }}
"#
    );
    let agent = Iotel::start("agent", &config, &[]);
    let interval = |node: &Iotel| node.metric("iotel_scrape_interval_seconds", &[]);
    let factor = |node: &Iotel| node.metric("iotel_backlog_slowdown_factor", &[]);
    // 63 events a scrape (60 samples, up, duration, count) into a buffer of
    // 200 with the receiver away: past half full after two scrapes.
    wait_for("the slowdown", Duration::from_secs(30), || {
        (factor(&agent) >= 2.0 && interval(&agent) >= 2.0).then_some(())
    });
    let stderr = agent.proc.stderr();
    assert!(
        stderr.contains("sources that adapt now produce 2× less often"),
        "{stderr}"
    );
    let _rcv = Iotel::start("gateway", &receiver_config(port), &[]);
    wait_for("the normal rate again", Duration::from_secs(30), || {
        (factor(&agent) == 1.0 && interval(&agent) == 1.0).then_some(())
    });
    assert!(
        agent
            .proc
            .stderr()
            .contains("sources back to their configured rate"),
    );
}

#[test]
fn downsample_compacts_the_backlog_and_counts_exactly_what_it_removed() {
    let port = free_port();
    let n = 3000;
    let agent = Iotel::start(
        "agent",
        &agent_config(
            &format!("http://127.0.0.1:{port}"),
            "run1",
            &format!("interval = \"1ms\"\nbatch_size = 10\ncount = {n}"),
            r#"{ type = "memory", max_events = 500, when_full = "downsample", downsample_keep_one_in = 10 }"#,
        ),
        &[],
    );
    wait_for(
        "the sink to take everything",
        Duration::from_secs(60),
        || {
            let taken = up(&agent, "iotel_component_received_events_total", &[]);
            (taken == (n + 1) as f64).then_some(())
        },
    );
    let downsampled = up(
        &agent,
        "iotel_component_discarded_events_total",
        &["reason=\"downsampled\""],
    );
    assert!(
        downsampled > 1000.0,
        "{downsampled} removed by downsampling"
    );
    assert!(
        up(
            &agent,
            "iotel_buffer_dropped_total",
            &["reason=\"downsampled\""]
        ) > 0.0
    );
    assert!(up(&agent, "iotel_buffer_events", &[]) <= 500.0);

    let rcv = Iotel::start("gateway", &receiver_config(port), &[]);
    drained_and_accounted(&agent, n + 1);
    // Compacted batches come after newer ones: no order, but never twice.
    let got = received(rcv.dir());
    let mut run1 = got["run1"].clone();
    let received_total: usize = got.values().map(Vec::len).sum();
    run1.sort_unstable();
    let unique = {
        let mut u = run1.clone();
        u.dedup();
        u.len()
    };
    assert_eq!(unique, run1.len(), "duplicates");
    let sent = up(&agent, "iotel_component_sent_events_total", &[]);
    assert_eq!(received_total as f64, sent);
    // Every event is delivered, or counted with its reason.
    let dropped = up(&agent, "iotel_component_discarded_events_total", &[]);
    let full = up(
        &agent,
        "iotel_component_discarded_events_total",
        &["reason=\"buffer_full\""],
    );
    assert_eq!(dropped, downsampled + full, "no other reason");
    assert_eq!(received_total as f64 + dropped, (n + 1) as f64);
}

#[test]
fn after_an_outage_new_records_overtake_the_paced_backlog_and_each_arrives_once() {
    use util::proxy::{Fault, FaultProxy};
    let port = free_port();
    let rcv = Iotel::start("gateway", &receiver_config(port), &[]);
    let proxy = FaultProxy::start(format!("127.0.0.1:{port}").parse().unwrap());
    // The outage from the start: the receiver never answers, then refuses.
    proxy.set(Fault::Blackhole);
    let total = 8000;
    // 1,000 records a second; a backlog drains at 500 a second.
    let agent = Iotel::start(
        "agent",
        &agent_config(
            &format!("http://{}", proxy.addr()),
            "run1",
            &format!("interval = \"5ms\"\nbatch_size = 5\ncount = {total}"),
            &format!("{DISK}\ndrain = {{ max_events_per_second = 500 }}"),
        ),
        &[],
    );
    let agent = &agent;
    let buffered = |n: f64| move || (up(agent, "iotel_buffer_events", &[]) >= n).then_some(());
    wait_for(
        "a backlog of 1,000",
        Duration::from_secs(30),
        buffered(1000.0),
    );
    proxy.set(Fault::Refuse);
    wait_for(
        "a backlog of 2,500",
        Duration::from_secs(30),
        buffered(2500.0),
    );
    proxy.set(Fault::Pass);
    // Every record numbered from here on was generated after the heal.
    let healed_at = agent.metric(
        "iotel_component_sent_events_total",
        &["component_id=\"gen\""],
    ) as u64;
    assert!(healed_at < total - 2000, "{healed_at}");
    wait_for("everything to arrive", Duration::from_secs(60), || {
        (count(rcv.dir(), "run1") as u64 >= total).then_some(())
    });
    wait_for(
        "the agent's buffer to empty",
        Duration::from_secs(30),
        || (up(agent, "iotel_buffer_records", &[]) == 0.0).then_some(()),
    );
    let arrived = &received(rcv.dir())["run1"];
    // New records did not wait for the backlog: the first of them arrived
    // before the last record of the outage.
    let first_new = arrived.iter().position(|s| *s >= healed_at).unwrap();
    let last_old = arrived.iter().rposition(|s| *s < healed_at).unwrap();
    assert!(
        first_new < last_old,
        "the first record generated after the heal arrived {first_new}th, the last one \
         generated before it {last_old}th"
    );
    // Each lane oldest first: the backlog's records among themselves, the
    // new ones among themselves.
    let old: Vec<u64> = arrived.iter().copied().filter(|s| *s < healed_at).collect();
    assert_exactly_once(&old, healed_at, "records generated before the heal");
    // The new records that arrived while the backlog drained came by the
    // live lane (the backlog lane sends its records oldest first, so the
    // few generated before it began go after the outage's).
    let live: Vec<u64> = arrived[..last_old]
        .iter()
        .copied()
        .filter(|s| *s >= healed_at)
        .collect();
    assert!(
        live.windows(2).all(|w| w[0] < w[1]),
        "live records out of order"
    );
    assert!(
        live.len() >= 1000,
        "{} new records arrived while the backlog drained (healed at {healed_at})",
        live.len()
    );
    // And every record exactly once, in no particular order.
    let mut all = arrived.clone();
    all.sort_unstable();
    assert_exactly_once(&all, total, "run1");
    let sent = up(agent, "iotel_component_sent_events_total", &[]);
    assert_eq!(sent, total as f64 + 1.0, "the keepalive line too");
}
