//! The receivers third-party agents feed, end to end: a real Prometheus
//! scrapes a device app and remote-writes to iotel's
//! `prometheus_remote_write` source; the `file` sink behind it holds
//! exactly those series and values.

// Test helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use util::{Iotel, Prometheus, serve_exposition, wait_for};

const DEVICE_APP: &str = "# HELP plant_temp_celsius Temperature at the sensor.\n\
# TYPE plant_temp_celsius gauge\n\
plant_temp_celsius{sensor=\"s1\"} 21.5\n\
plant_temp_celsius{sensor=\"s2\"} -3.25\n\
# TYPE packets_total counter\n\
packets_total{dir=\"rx\"} 1234\n";

/// Each series (name and labels, as `k=v` sorted) with the values of its
/// samples in the file the `file` sink wrote.
fn series_in(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let labels: Vec<String> = v["labels"]
            .as_object()
            .unwrap_or_else(|| panic!("labels as an object: {line}"))
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
            .collect();
        let key = format!("{}{{{}}}", v["name"].as_str().unwrap(), labels.join(","));
        out.entry(key).or_default().insert(v["value"].to_string());
    }
    out
}

#[test]
fn prometheus_remote_writes_scraped_series_exactly_into_the_remote_write_source() {
    let app = serve_exposition(DEVICE_APP);
    let port = util::free_port();
    // The remote_write section follows the scrape configs at the top level.
    let prom = Prometheus::start(
        &format!(
            "  - job_name: edge-app\n    static_configs:\n      - targets: ['{app}']\n\
             remote_write:\n  - url: http://127.0.0.1:{port}/api/v1/write\n    \
             queue_config:\n      batch_send_deadline: 200ms\n"
        ),
        &[],
    );
    let config = format!(
        r#"
[api]
address = "{{API}}"

[sources.prom_in]
type = "prometheus_remote_write"
address = "127.0.0.1:{port}"

[sinks.out]
type = "file"
inputs = ["prom_in"]
path = "{{DIR}}/samples.ndjson"
"#
    );
    let mut node = Iotel::start("gateway", &config, &[]);
    let out = node.dir().join("samples.ndjson");
    let instance = app.to_string();
    let want_keys = [
        format!("packets_total{{dir=rx,instance={instance},job=edge-app}}"),
        format!("plant_temp_celsius{{instance={instance},job=edge-app,sensor=s1}}"),
        format!("plant_temp_celsius{{instance={instance},job=edge-app,sensor=s2}}"),
        format!("up{{instance={instance},job=edge-app}}"),
    ];
    wait_for(
        "the scraped series to arrive through remote write",
        Duration::from_secs(60),
        || {
            let got = series_in(&std::fs::read_to_string(&out).ok()?);
            want_keys.iter().all(|k| got.contains_key(k)).then_some(())
        },
    );
    let status = node.proc.terminate(Duration::from_secs(20)).unwrap();
    assert!(
        status.success(),
        "exit status {status}\n{}",
        node.proc.report()
    );
    drop(prom);

    let got = series_in(&std::fs::read_to_string(&out).unwrap());
    let app_series: BTreeMap<&str, Vec<&str>> = got
        .iter()
        .filter(|(k, _)| {
            k.starts_with("plant_") || k.starts_with("packets_") || k.starts_with("up{")
        })
        .map(|(k, v)| (k.as_str(), v.iter().map(String::as_str).collect()))
        .collect();
    let want: BTreeMap<&str, Vec<&str>> = [
        (want_keys[0].as_str(), vec!["1234.0"]),
        (want_keys[1].as_str(), vec!["21.5"]),
        (want_keys[2].as_str(), vec!["-3.25"]),
        (want_keys[3].as_str(), vec!["1.0"]),
    ]
    .into_iter()
    .collect();
    assert_eq!(app_series, want);
    // Prometheus' own per-scrape series come along, and nothing was refused.
    assert!(
        got.contains_key(&format!(
            "scrape_samples_scraped{{instance={instance},job=edge-app}}"
        )),
        "{:?}",
        got.keys().collect::<Vec<_>>()
    );
    assert!(
        !node
            .proc
            .stderr()
            .contains("refused a remote write request"),
        "{}",
        node.proc.stderr()
    );
}

/// A Loki client (iotel's own `loki` sink, protobuf and JSON) pushes to the
/// `loki` source of the same node; the `file` sink behind it holds every
/// record with its line, structured metadata and `X-Scope-OrgID` tenant.
#[cfg(feature = "logs")]
#[test]
fn loki_pushes_arrive_through_the_loki_source_with_their_tenant() {
    let port = util::free_port();
    let config = format!(
        r#"
[api]
address = "{{API}}"

[sources.gen]
type = "generator"
signal = "log"
count = 4
batch_size = 2
interval = "50ms"

[sinks.push_protobuf]
type = "loki"
inputs = ["gen"]
endpoint = "http://127.0.0.1:{port}"
tenant_id = "fleet-a"
structured_metadata = ["seq"]

[sinks.push_json]
type = "loki"
inputs = ["gen"]
endpoint = "http://127.0.0.1:{port}"
encoding = "json"
structured_metadata = ["seq"]

[sources.loki_in]
type = "loki"
address = "127.0.0.1:{port}"

[sinks.out]
type = "file"
inputs = ["loki_in"]
path = "{{DIR}}/logs.ndjson"
"#
    );
    let mut node = Iotel::start("gateway", &config, &[]);
    let out = node.dir().join("logs.ndjson");
    wait_for(
        "8 records through the loki source",
        Duration::from_secs(30),
        || {
            let n = std::fs::read_to_string(&out).ok()?.lines().count();
            (n >= 8).then_some(n)
        },
    );
    let status = node.proc.terminate(Duration::from_secs(20)).unwrap();
    assert!(
        status.success(),
        "exit status {status}\n{}",
        node.proc.report()
    );
    let mut got: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{} {} {} {}",
                v["message"], v["labels"], v["fields"], v["severity"]
            )
        })
        .collect();
    got.sort();
    let mut want = Vec::new();
    for tenant in [r#","tenant":"fleet-a""#, ""] {
        for seq in 0..4 {
            want.push(format!(
                r#""generated line {seq}" {{"agent":"iotel"{tenant}}} {{"seq":"{seq}"}} null"#
            ));
        }
    }
    want.sort();
    assert_eq!(got, want, "{}", node.proc.report());
}
