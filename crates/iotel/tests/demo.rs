//! `iotel demo`: the whole chain comes up over mutual TLS, its nodes' status
//! pages answer while it runs, data reaches the cloud, and everything is
//! stopped and removed at the end.

#![allow(clippy::unwrap_used)]

mod util;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;
use util::http_get;

/// Demos run one at a time: each takes the roles' usual ports when free,
/// and two starting together would both find them free.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn the_demo_runs_the_chain_shows_its_pages_and_cleans_up() {
    let _one = one_at_a_time();
    // The gateway's usual API port is taken: the demo picks another and
    // says so.
    let taken = TcpListener::bind("127.0.0.1:8687");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .args([
            "demo",
            "--devices",
            "4",
            "--agents",
            "2",
            "--duration",
            "10s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut out = Vec::new();
    let mut pages = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        out.push(line.clone());
        // `<role> http://…`: a node's status page.
        if let Some((name, url)) = line.split_once(" http://")
            && !name.contains(' ')
        {
            pages.push((name.to_string(), url.trim_end_matches('/').to_string()));
        }
        if line.starts_with("stopping in") {
            break;
        }
    }
    let text = out.join("\n");
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
    let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["cloud", "gateway", "agent-1", "agent-2"], "{text}");
    // Each status page answers, and its JSON names the node's components.
    for (name, addr) in &pages {
        let addr: SocketAddr = addr.parse().unwrap();
        let (status, content_type, _) = http_get(addr, "/", None).unwrap();
        assert_eq!(
            (status, content_type.as_str()),
            (200, "text/html; charset=utf-8"),
            "{name}"
        );
        let (_, _, body) = http_get(addr, "/api/v1/components", None).unwrap();
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
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = demo.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut demo.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{}\n{stderr}", rest.join("\n"));
    // Every signal reached the cloud through the chain.
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
    // And what it made is gone.
    let removed = rest
        .iter()
        .find_map(|l| l.strip_prefix("removed "))
        .unwrap_or_else(|| panic!("{rest:?}"));
    assert!(!std::path::Path::new(removed).exists());
    drop(taken);
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn the_demo_with_prometheus_has_it_scrape_the_fleet() {
    let _one = one_at_a_time();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .args([
            "demo",
            "--devices",
            "2",
            "--agents",
            "1",
            "--duration",
            "15s",
            "--with-prometheus",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut prometheus = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("prometheus http://") {
            prometheus = Some(url.trim_end_matches('/').parse::<SocketAddr>().unwrap());
        }
        if line.starts_with("stopping in") {
            break;
        }
    }
    let prometheus = prometheus.expect("a prometheus line");
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
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(rest.iter().any(|l| l.starts_with("removed ")), "{rest:?}");
    let status = demo.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut demo.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
}

#[test]
fn the_demo_with_nats_runs_the_cloud_as_ingest_and_worker() {
    let _one = one_at_a_time();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .args([
            "demo",
            "--devices",
            "2",
            "--agents",
            "1",
            "--duration",
            "10s",
            "--with-nats",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<String> = BufReader::new(demo.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    let status = demo.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut demo.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{lines:?}\n{stderr}");
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once(" http://").map(|(n, _)| n))
        .filter(|n| !n.contains(' '))
        .collect();
    assert_eq!(
        names,
        ["cloud", "cloud-worker", "gateway", "agent-1"],
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("the cloud publishes to NATS JetStream at nats://127.0.0.1:")),
        "{lines:?}"
    );
    // Every signal went through JetStream to the worker's backends.
    let totals = lines
        .iter()
        .find(|l| l.starts_with("the cloud received "))
        .unwrap_or_else(|| panic!("{lines:?}"));
    let numbers: Vec<u64> = totals
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 3, "{totals}");
    assert!(numbers.iter().all(|n| *n > 0), "{totals}");
}

#[test]
fn the_demo_with_mosquitto_bridges_devices_that_speak_only_mqtt() {
    let _one = one_at_a_time();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .args([
            "demo",
            "--devices",
            "2",
            "--agents",
            "1",
            "--duration",
            "15s",
            "--with-mosquitto",
            "--mqtt-devices",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut exporter = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("the fleet's metrics at the cloud: http://") {
            let addr = rest.split('/').next().unwrap();
            exporter = Some(addr.parse::<SocketAddr>().unwrap());
        }
        if line.starts_with("stopping in") {
            break;
        }
    }
    let exporter = exporter.expect("the exporter's address");
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
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = demo.wait().unwrap();
    assert!(status.success(), "{rest:?}");
}
