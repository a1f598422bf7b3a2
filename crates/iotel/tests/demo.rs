//! `iotel demo`: the whole chain comes up over mutual TLS, its nodes' status
//! pages answer while it runs, data reaches the cloud, and everything is
//! stopped and removed at the end.

#![allow(clippy::unwrap_used)]

mod util;

use std::io::{BufRead, BufReader, Lines};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;
use util::http_get;

/// Demos run one at a time: each takes the roles' usual ports when free,
/// and two starting together would both find them free.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A running `iotel demo` and what it printed up to `stopping in …`.
struct Demo {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    head: Vec<String>,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let mut child = Command::new(env!("CARGO_BIN_EXE_iotel"))
            .arg("demo")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut head = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let last = line.starts_with("stopping in");
            head.push(line);
            if last {
                break;
            }
        }
        Demo {
            child,
            lines,
            head,
            _one: one,
        }
    }

    /// `<name> http://<addr>/` lines: each node's status page.
    fn pages(&self) -> Vec<(String, SocketAddr)> {
        self.head
            .iter()
            .filter_map(|l| l.split_once(" http://"))
            .filter(|(name, _)| !name.contains(' '))
            .map(|(name, url)| (name.to_string(), url.trim_end_matches('/').parse().unwrap()))
            .collect()
    }

    /// The address in the line starting with `prefix` (up to its path).
    fn address_after(&self, prefix: &str) -> SocketAddr {
        let line = self.head.iter().find_map(|l| l.strip_prefix(prefix));
        let line = line.unwrap_or_else(|| panic!("no {prefix:?} in {:?}", self.head));
        line.split('/').next().unwrap().parse().unwrap()
    }

    /// Waits for the end: what it printed after `stopping in …`, once it
    /// exited successfully.
    fn finish(mut self) -> Vec<String> {
        let rest: Vec<String> = self.lines.by_ref().map(Result::unwrap).collect();
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(status.success(), "{:?}\n{rest:?}\n{stderr}", self.head);
        rest
    }
}

/// What the cloud received, by signal, from the demo's last lines: every
/// signal got there.
fn assert_every_signal_arrived(rest: &[String]) {
    let totals = rest
        .iter()
        .find(|l| l.starts_with("the cloud received "))
        .unwrap_or_else(|| panic!("{rest:?}"));
    let numbers: Vec<u64> = totals
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 3, "{totals}");
    assert!(numbers.iter().all(|n| *n > 0), "{totals}");
}

#[test]
fn the_demo_runs_the_chain_shows_its_pages_and_cleans_up() {
    // The gateway's usual API port is taken: the demo picks another and
    // says so.
    let taken = TcpListener::bind("127.0.0.1:8687");
    let demo = Demo::start(&["--devices", "4", "--agents", "2", "--duration", "10s"]);
    let text = demo.head.join("\n");
    assert!(
        text.contains(
            "iotel demo: 4 devices behind 2 agents, a gateway and a cloud, over mutual TLS"
        ),
        "{text}"
    );
    if taken.is_ok() {
        assert!(
            text.contains("port 8687 is taken: the gateway's API is on 127.0.0.1:"),
            "{text}"
        );
    }
    let pages = demo.pages();
    let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["cloud", "gateway", "agent-1", "agent-2"], "{text}");
    // Each status page answers, and its JSON names the node's components.
    for (name, addr) in &pages {
        let (status, content_type, _) = http_get(*addr, "/", None).unwrap();
        assert_eq!(
            (status, content_type.as_str()),
            (200, "text/html; charset=utf-8"),
            "{name}"
        );
        let (_, _, body) = http_get(*addr, "/api/v1/components", None).unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let ids: Vec<&str> = json["node"]["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        let expected: &[&str] = match name.as_str() {
            "cloud" => &["gateways", "logs", "metrics", "spans"],
            "gateway" => &["agents", "to_cloud"],
            _ => &["devices", "own", "to_gateway"],
        };
        assert_eq!(ids, expected, "{name}");
    }
    let rest = demo.finish();
    assert_every_signal_arrived(&rest);
    // And what it made is gone.
    let removed = rest
        .iter()
        .find_map(|l| l.strip_prefix("removed "))
        .unwrap_or_else(|| panic!("{rest:?}"));
    assert!(!std::path::Path::new(removed).exists());
    drop(taken);
}

#[test]
fn the_demo_with_prometheus_has_it_scrape_the_fleet() {
    let demo = Demo::start(&[
        "--devices",
        "2",
        "--agents",
        "1",
        "--duration",
        "15s",
        "--with-prometheus",
    ]);
    let prometheus = demo.address_after("prometheus http://");
    // The fleet's readings, scraped from the cloud's exporter.
    let found = util::wait_for("the fleet in Prometheus", Duration::from_secs(30), || {
        let (_, _, body) = http_get(
            prometheus,
            "/api/v1/query?query=count(device_temperature_celsius)",
            None,
        )?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        let n: u64 = json["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()?;
        (n > 0).then_some(n)
    });
    assert_eq!(found, 2, "one series per device");
    let rest = demo.finish();
    assert!(rest.iter().any(|l| l.starts_with("removed ")), "{rest:?}");
}

#[test]
fn the_demo_with_nats_runs_the_cloud_as_ingest_and_worker() {
    let demo = Demo::start(&[
        "--devices",
        "2",
        "--agents",
        "1",
        "--duration",
        "10s",
        "--with-nats",
    ]);
    let names: Vec<String> = demo.pages().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["cloud", "cloud-worker", "gateway", "agent-1"],
        "{:?}",
        demo.head
    );
    assert!(
        demo.head
            .iter()
            .any(|l| l.starts_with("the cloud publishes to NATS JetStream at nats://127.0.0.1:")),
        "{:?}",
        demo.head
    );
    // Every signal went through JetStream to the worker's backends.
    assert_every_signal_arrived(&demo.finish());
}

#[test]
fn the_demo_with_mosquitto_bridges_devices_that_speak_only_mqtt() {
    let demo = Demo::start(&[
        "--devices",
        "2",
        "--agents",
        "1",
        "--duration",
        "15s",
        "--with-mosquitto",
        "--mqtt-devices",
        "3",
    ]);
    let exporter = demo.address_after("the fleet's metrics at the cloud: http://");
    // The MQTT devices (dev-00002 … dev-00004) reach the cloud through the
    // broker and the gateway, each reading a gauge labelled from its topic.
    let devices = util::wait_for(
        "the MQTT devices at the cloud",
        Duration::from_secs(30),
        || {
            let (_, _, body) = http_get(exporter, "/metrics", None)?;
            let mut seen: Vec<String> = body
                .lines()
                .filter(|l| l.starts_with("temperature_celsius{"))
                .filter_map(|l| {
                    let at = l.find("device_id=\"")? + "device_id=\"".len();
                    Some(l[at..at + 9].to_string())
                })
                .collect();
            seen.sort();
            seen.dedup();
            (seen.len() == 3).then_some(seen)
        },
    );
    assert_eq!(devices, ["dev-00002", "dev-00003", "dev-00004"]);
    demo.finish();
}
