//! The edge metrics path end to end, against a real Prometheus: the agent
//! scrapes a device app, enriches, relabels and remote-writes; Prometheus
//! answers queries with exactly those series, and scrapes the agent's own
//! `/metrics` too.

// Test helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod util;

use std::time::Duration;
use util::{Iotel, Prometheus, serve_exposition, wait_for};

const DEVICE_APP: &str = "# HELP plant_temp_celsius Temperature at the sensor.\n\
# TYPE plant_temp_celsius gauge\n\
plant_temp_celsius{sensor=\"s1\"} 21.5\n\
plant_temp_celsius{sensor=\"s2\"} -3.25\n\
# TYPE packets_total counter\n\
packets_total{dir=\"rx\"} 1234\n\
# TYPE debug_noise gauge\n\
debug_noise 1\n";

const DEVICES_CSV: &str =
    "device_id,plant,line,asset_class\ndev-42,plant-7,L3,press\ndev-43,plant-7,L4,oven\n";

fn labels(m: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    m.iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
        .collect()
}

#[test]
fn agent_scrapes_enriches_and_remote_writes_exact_series_into_prometheus() {
    let api_port = util::free_port();
    let prom = Prometheus::start(
        &format!(
            "  - job_name: iotel-agent\n    static_configs:\n      - targets: ['127.0.0.1:{api_port}']\n"
        ),
        &[],
    );
    let app = serve_exposition(DEVICE_APP);
    let config = format!(
        r#"
[api]
address = "{{API}}"

[sources.app]
type = "prometheus_scrape"
targets = ["http://{app}/metrics"]
interval = "1s"
job = "edge-app"

[transforms.tags]
type = "enrich"
inputs = ["app"]
labels = {{ device_id = "dev-42" }}
device_metadata = {{ path = "devices.csv", key = "device_id" }}

[transforms.tidy]
type = "relabel"
inputs = ["tags"]
rules = [
  {{ source_labels = ["__name__"], regex = "debug_.*", action = "drop" }},
  {{ source_labels = ["asset_class"], target_label = "asset", action = "replace" }},
  {{ regex = "asset_class", action = "labeldrop" }},
]

[sinks.prom]
type = "prometheus_remote_write"
inputs = ["tidy"]
endpoint = "http://{prom}/api/v1/write"
batch = {{ max_samples = 500, timeout = "200ms" }}
"#,
        prom = prom.addr
    );
    let mut agent = Iotel::start_on(api_port, "agent", &config, &[("devices.csv", DEVICES_CSV)]);
    let instance = app.to_string();

    let temps = prom.wait_for_series("plant_temp_celsius");
    let mut got: Vec<(Vec<String>, String)> =
        temps.iter().map(|(m, v)| (labels(m), v.clone())).collect();
    got.sort();
    let expect = |sensor: &str, value: &str| {
        (
            vec![
                "__name__=plant_temp_celsius".to_string(),
                "asset=press".into(),
                "device_id=dev-42".into(),
                format!("instance={instance}"),
                "job=edge-app".into(),
                "line=L3".into(),
                "plant=plant-7".into(),
                format!("sensor={sensor}"),
            ],
            value.to_string(),
        )
    };
    assert_eq!(got, vec![expect("s1", "21.5"), expect("s2", "-3.25")]);

    let packets = prom.wait_for_series("packets_total");
    assert_eq!(packets.len(), 1);
    assert_eq!(packets[0].1, "1234");
    assert_eq!(packets[0].0["dir"], "rx");

    let up = prom.wait_for_series(r#"up{job="edge-app"}"#);
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1, "1");
    assert_eq!(up[0].0["instance"], instance.as_str());

    assert!(
        prom.query("debug_noise").is_empty(),
        "the relabel drop rule kept debug_noise"
    );

    // Prometheus scrapes the agent's own /metrics and finds it up.
    let own = prom.wait_for_series(r#"up{job="iotel-agent"}"#);
    assert_eq!(own[0].1, "1");
    let sent = wait_for(
        "the agent to report delivered samples",
        Duration::from_secs(30),
        || {
            let r = prom.query(
                r#"iotel_component_sent_events_total{job="iotel-agent",component_id="prom"}"#,
            );
            r.first()
                .and_then(|(_, v)| v.parse::<f64>().ok())
                .filter(|v| *v >= 3.0)
        },
    );
    assert!(sent >= 3.0);

    let status = agent.proc.terminate(Duration::from_secs(20)).unwrap();
    assert!(
        status.success(),
        "agent exited with {status}\n{}",
        agent.proc.report()
    );
}

#[test]
fn prometheus_scrapes_device_health_from_the_exporter_with_exact_values() {
    let fixture = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let p = fixture.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("sys/class/thermal/thermal_zone0/temp", "48500\n");
    write("sys/class/thermal/thermal_zone0/type", "cpu-thermal\n");
    write("sys/class/power_supply/BAT0/type", "Battery\n");
    write("sys/class/power_supply/BAT0/capacity", "87\n");

    let exporter_port = util::free_port();
    let prom = Prometheus::start(
        &format!(
            "  - job_name: device\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
        ),
        &[],
    );
    let config = format!(
        r#"
[api]
address = "{{API}}"

[sources.health]
type = "device_health"
interval = "1s"
sensors = ["cpu_temp", "battery"]
sysfs_root = "{root}/sys"

[transforms.tags]
type = "enrich"
inputs = ["health"]
labels = {{ device_id = "dev-7" }}

[sinks.local]
type = "prometheus_exporter"
inputs = ["tags"]
address = "127.0.0.1:{exporter_port}"
"#,
        root = fixture.path().display()
    );
    let _agent = Iotel::start("agent", &config, &[]);

    let temp = prom.wait_for_series("cpu_temp_celsius");
    assert_eq!(temp.len(), 1);
    assert_eq!(
        labels(&temp[0].0),
        [
            "__name__=cpu_temp_celsius",
            "device_id=dev-7",
            &format!("instance=127.0.0.1:{exporter_port}"),
            "job=device",
            "sensor=cpu-thermal",
            "zone=thermal_zone0",
        ]
    );
    assert_eq!(temp[0].1, "48.5");
    let battery = prom.wait_for_series(r#"battery_level_percent{supply="BAT0"}"#);
    assert_eq!(battery[0].1, "87");
}

/// `iotel certs` in `dir`: a CA, a server certificate for localhost and
/// 127.0.0.1, and a client certificate for Prometheus.
fn pki(dir: &std::path::Path) {
    let d = dir.display().to_string();
    for args in [
        vec!["certs", "init", "--dir", &d],
        vec![
            "certs",
            "issue-server",
            "--dir",
            &d,
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
        ],
        vec![
            "certs",
            "issue-device",
            "--dir",
            &d,
            "--device-id",
            "prometheus",
        ],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_iotel"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn prometheus_scrapes_the_exporter_and_the_node_api_over_https_with_a_client_certificate() {
    let certs = tempfile::tempdir().unwrap();
    pki(certs.path());
    let p = certs.path().display().to_string();
    let exporter_port = util::free_port();
    let api_port = util::free_port();
    let job = |name: &str, port: u16| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {p}/ca.pem\n\
             \x20     cert_file: {p}/devices/prometheus.pem\n      key_file: {p}/devices/prometheus.key\n\
             \x20   static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        )
    };
    let prom = Prometheus::start(
        &format!("{}{}", job("device", exporter_port), job("node", api_port)),
        &[],
    );
    let tls = format!(
        "{{ cert_file = \"{p}/servers/localhost.pem\", key_file = \"{p}/servers/localhost.key\", \
         ca_file = \"{p}/ca.pem\" }}"
    );
    let config = format!(
        r#"
[api]
address = "127.0.0.1:{api_port}"
tls = {tls}

[sources.gen]
type = "generator"
signal = "metric"
interval = "1s"

[sinks.local]
type = "prometheus_exporter"
inputs = ["gen"]
address = "127.0.0.1:{exporter_port}"
tls = {tls}
"#
    );
    let _agent = Iotel::start_unready("agent", &config);

    let up = prom.wait_for_series(r#"up{job="device"} == 1"#);
    assert_eq!(up.len(), 1);
    let samples = prom.wait_for_series(r#"iotel_generator_sample{job="device"}"#);
    assert!(!samples.is_empty());
    let up = prom.wait_for_series(r#"up{job="node"} == 1"#);
    assert_eq!(up.len(), 1);
    // The node's own metrics, over HTTPS: the expiry of the exporter's and
    // the API's certificates (365 days, `iotel certs`' default).
    let expiry = prom.wait_for_series(
        r#"iotel_tls_cert_expiry_seconds{job="node",component_id=~"local|\\[api\\]",file=~".*localhost.pem"}"#,
    );
    let mut ids: Vec<String> = expiry
        .iter()
        .map(|(m, _)| m["component_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["[api]", "local"]);
    for (_, v) in &expiry {
        let days = v.parse::<f64>().unwrap() / 86_400.0;
        assert!((364.0..=365.0).contains(&days), "{days}");
    }
}
