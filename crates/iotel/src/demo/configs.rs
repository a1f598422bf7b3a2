//! The demo's config files: the secured chain of `tests/secure_chain.rs`,
//! with the cloud's embedded sinks at its end.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub const TRUST_DOMAIN: &str = "demo.iotel";
pub const GATEWAY: &str = "site-1";
pub const TENANT: &str = "demo";

/// Where the configs go and the PKI they name.
pub struct Files<'a> {
    pub dir: &'a Path,
    pub pki: &'a Path,
}

impl Files<'_> {
    fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// The cloud: gateways' batches over mutual TLS, each with a valid
    /// gateway token and batch signature; metrics to an exporter, logs and
    /// spans to files; or, with `nats` (a NATS server's port), everything
    /// to JetStream for the worker.
    pub fn cloud(
        &self,
        api: u16,
        receiver: u16,
        metrics: u16,
        nats: Option<u16>,
    ) -> Result<PathBuf> {
        let (pki, dir) = (self.pki.display(), self.dir.display());
        std::fs::create_dir_all(self.dir.join("cloud"))?;
        self.write(
            "policy.toml",
            &format!(
                "[[grant]]\nrole = \"gateway\"\ntenants = [\"{TENANT}\"]\nsignals = [\"*\"]\n\
                 actions = [\"write\"]\n"
            ),
        )?;
        self.write(
            "cloud.toml",
            &format!(
                r#"# The demo's cloud node.
[api]
address = "127.0.0.1:{api}"

[sources.gateways]
type = "iotel"
address = "127.0.0.1:{receiver}"
tls = {{ cert_file = "{pki}/servers/localhost.pem", key_file = "{pki}/servers/localhost.key", ca_file = "{pki}/ca.pem" }}
identity = {{ trust_domain = "{TRUST_DOMAIN}" }}

[sources.gateways.auth]
issuer = "iotel-gateways"
audience = "iotel-cloud"
jwks_file = "{pki}/gateways.jwks"
policy_file = "{dir}/policy.toml"
audit_log = "{dir}/cloud/audit.jsonl"
require_batch_signatures = true
{}"#,
                match nats {
                    None => self.backends("gateways", metrics),
                    Some(port) => format!(
                        r#"
[sinks.stream]
type = "nats_jetstream"
inputs = ["gateways"]
url = "nats://127.0.0.1:{port}"
shards = 4
buffer = {{ type = "disk", max_size = "256MiB", when_full = "block" }}
"#
                    ),
                }
            ),
        )
    }

    /// A cloud worker: what the cloud published to JetStream, to the
    /// backends.
    pub fn worker(&self, api: u16, metrics: u16, nats: u16) -> Result<PathBuf> {
        self.write(
            "cloud-worker.toml",
            &format!(
                r#"# The demo's cloud worker.
[api]
address = "127.0.0.1:{api}"

[sources.work]
type = "nats_jetstream"
url = "nats://127.0.0.1:{nats}"
durable = "iotel-demo"
{}"#,
                self.backends("work", metrics)
            ),
        )
    }

    /// The embedded backends at the end of the chain, fed by `from`.
    fn backends(&self, from: &str, metrics: u16) -> String {
        let dir = self.dir.display();
        format!(
            r#"
[sinks.metrics]
type = "prometheus_exporter"
inputs = ["{from}.metrics"]
address = "127.0.0.1:{metrics}"

[sinks.logs]
type = "file"
inputs = ["{from}.logs"]
path = "{dir}/cloud/logs.ndjson"

[sinks.spans]
type = "file"
inputs = ["{from}.traces"]
path = "{dir}/cloud/spans.ndjson"
"#
        )
    }

    /// The gateway: agents over mutual TLS, each bound to its device
    /// certificate (`agent_id`); everything on to the cloud, signed.
    pub fn gateway(
        &self,
        api: u16,
        receiver: u16,
        cloud: u16,
        mqtt: Option<u16>,
    ) -> Result<PathBuf> {
        let pki = self.pki.display();
        // Devices that speak only MQTT, through the site's broker.
        let (mqtt_source, mqtt_input) = match mqtt {
            Some(port) => (
                format!(
                    r#"
[sources.mqtt_devices]
type = "mqtt"
url = "mqtt://127.0.0.1:{port}"
topics = ["plant/+/+/telemetry"]
topic_pattern = "plant/{{site}}/{{device_id}}/+"
format = "json_metrics"
"#
                ),
                r#", "mqtt_devices""#,
            ),
            None => (String::new(), ""),
        };
        self.write(
            "gateway.toml",
            &format!(
                r#"# The demo's site gateway.
[api]
address = "127.0.0.1:{api}"

[sources.agents]
type = "iotel"
address = "127.0.0.1:{receiver}"
tls = {{ cert_file = "{pki}/gateways/{GATEWAY}.pem", key_file = "{pki}/gateways/{GATEWAY}.key", ca_file = "{pki}/ca.pem" }}
identity = {{ trust_domain = "{TRUST_DOMAIN}", label = "agent_id" }}
{mqtt_source}
[sinks.to_cloud]
type = "iotel"
inputs = ["agents"{mqtt_input}]
endpoint = "https://localhost:{cloud}"
agent_id = "{GATEWAY}"
tls = {{ ca_file = "{pki}/ca.pem", cert_file = "{pki}/gateways/{GATEWAY}.pem", key_file = "{pki}/gateways/{GATEWAY}.key" }}
sign = {{ key_file = "{pki}/gateways/{GATEWAY}.signing.key", tenant = "{TENANT}", audience = "iotel-cloud" }}
compression = "zstd"
batch = {{ max_events = 5000, timeout = "200ms" }}
buffer = {{ type = "disk", max_size = "256MiB" }}
"#
            ),
        )
    }

    /// Agent `i`: its devices' batches on loopback, its own metrics, all
    /// to the gateway with its device certificate.
    pub fn agent(&self, i: usize, api: u16, receiver: u16, gateway: u16) -> Result<PathBuf> {
        let pki = self.pki.display();
        self.write(
            &format!("agent-{i}.toml"),
            &format!(
                r#"# The demo's edge agent {i}.
[api]
address = "127.0.0.1:{api}"

[sources.devices]
type = "iotel"
address = "127.0.0.1:{receiver}"

[sources.own]
type = "internal_metrics"
interval = "5s"

[sinks.to_gateway]
type = "iotel"
inputs = ["devices", "own"]
endpoint = "https://localhost:{gateway}"
agent_id = "agent-{i}"
tls = {{ ca_file = "{pki}/ca.pem", cert_file = "{pki}/devices/agent-{i}.pem", key_file = "{pki}/devices/agent-{i}.key" }}
batch = {{ max_events = 1000, timeout = "200ms" }}
buffer = {{ type = "disk", max_size = "64MiB" }}
"#
            ),
        )
    }

    /// A Mosquitto broker for the site, anonymous, on loopback.
    pub fn mosquitto(&self, port: u16) -> Result<PathBuf> {
        let root = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        self.write(
            "mosquitto.conf",
            &format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{}",
                // As root, Mosquitto would switch to a user that cannot
                // read the demo's directory.
                if root { "user root\n" } else { "" }
            ),
        )
    }

    /// Prometheus scraping the cloud's metrics and the nodes' own.
    pub fn prometheus(&self, cloud_metrics: u16, apis: &[u16]) -> Result<PathBuf> {
        let nodes: Vec<String> = apis.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        self.write(
            "prometheus.yml",
            &format!(
                "global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: fleet\n    \
                 static_configs:\n      - targets: ['127.0.0.1:{cloud_metrics}']\n  - job_name: \
                 iotel\n    static_configs:\n      - targets: [{}]\n",
                nodes.join(", ")
            ),
        )
    }
}
