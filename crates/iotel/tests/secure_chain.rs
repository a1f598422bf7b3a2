//! The secured fleet end to end, with real processes and the certificates
//! `iotel certs` makes: an agent sends over mutual TLS with its device
//! certificate to a gateway, which binds the device's identity, and forwards
//! over mutual TLS with its gateway certificate to a cloud node that takes
//! only batches with a valid gateway token and batch signature. Every record
//! is counted by the sequence number the generator put in it; a device that
//! claims another device's id gets nothing through.

#![allow(clippy::unwrap_used)]

mod util;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use util::{Iotel, free_port, wait_for};

const RECORDS: u64 = 300;

fn certs(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .arg("certs")
        .args(args)
        .args(["--dir", &dir.display().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "iotel certs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cloud_config(port: u16, pki: &Path) -> String {
    let pki = pki.display();
    format!(
        r#"
[api]
address = "{{API}}"

[sources.gateways]
type = "iotel"
address = "127.0.0.1:{port}"
tls = {{ cert_file = "{pki}/servers/localhost.pem", key_file = "{pki}/servers/localhost.key", ca_file = "{pki}/ca.pem" }}
identity = {{ trust_domain = "fleet.test" }}

[sources.gateways.auth]
issuer = "iotel-gateways"
audience = "iotel-cloud"
jwks_file = "{pki}/gateways.jwks"
policy_file = "{{DIR}}/policy.toml"
audit_log = "{{DIR}}/audit.jsonl"
require_batch_signatures = true

[sinks.out]
type = "file"
inputs = ["gateways"]
path = "{{DIR}}/received.ndjson"
"#
    )
}

const POLICY: &str = r#"
[[grant]]
role = "gateway"
tenants = ["{tenant}"]
signals = ["*"]
actions = ["write"]
"#;

fn gateway_config(port: u16, cloud_port: u16, pki: &Path) -> String {
    let pki = pki.display();
    format!(
        r#"
[api]
address = "{{API}}"

[sources.agents]
type = "iotel"
address = "127.0.0.1:{port}"
tls = {{ cert_file = "{pki}/gateways/site-1.pem", key_file = "{pki}/gateways/site-1.key", ca_file = "{pki}/ca.pem" }}
identity = {{ trust_domain = "fleet.test" }}

[sinks.to_cloud]
type = "iotel"
inputs = ["agents"]
endpoint = "https://localhost:{cloud_port}"
agent_id = "site-1"
tls = {{ ca_file = "{pki}/ca.pem", cert_file = "{pki}/gateways/site-1.pem", key_file = "{pki}/gateways/site-1.key" }}
batch = {{ max_events = 100, timeout = "50ms" }}
retry = {{ initial_backoff = "20ms", max_backoff = "200ms" }}
sign = {{ key_file = "{pki}/gateways/site-1.signing.key", tenant = "acme", audience = "iotel-cloud" }}
"#
    )
}

/// A gateway sending to the cloud with its certificate but without `sign`.
fn rogue_config(cloud_port: u16, pki: &Path) -> String {
    let pki = pki.display();
    format!(
        r#"
[api]
address = "{{API}}"

[sources.gen]
type = "generator"
signal = "log"
message = "rogue"
interval = "50ms"

[sinks.to_cloud]
type = "iotel"
inputs = ["gen"]
endpoint = "https://localhost:{cloud_port}"
agent_id = "site-1"
tls = {{ ca_file = "{pki}/ca.pem", cert_file = "{pki}/gateways/site-1.pem", key_file = "{pki}/gateways/site-1.key" }}
retry = {{ initial_backoff = "20ms", max_backoff = "200ms" }}
"#
    )
}

/// An agent with `device`'s certificate sending numbered log lines
/// `<message> <seq>`; `claim` labels every record with that device id first.
fn agent_config(gateway_port: u16, pki: &Path, device: &str, message: &str, claim: &str) -> String {
    let pki = pki.display();
    format!(
        r#"
[api]
address = "{{API}}"

[sources.gen]
type = "generator"
signal = "log"
message = "{message}"
interval = "10ms"
batch_size = 10
count = {RECORDS}

[sources.keep]
type = "generator"
signal = "log"
message = "keepalive"
interval = "1h"

[transforms.claim]
type = "enrich"
inputs = ["gen"]
labels = {{ {claim} }}

[sinks.up]
type = "iotel"
inputs = ["claim", "keep"]
endpoint = "https://localhost:{gateway_port}"
agent_id = "{device}"
tls = {{ ca_file = "{pki}/ca.pem", cert_file = "{pki}/devices/{device}.pem", key_file = "{pki}/devices/{device}.key" }}
batch = {{ max_events = 50, timeout = "50ms" }}
retry = {{ initial_backoff = "20ms", max_backoff = "200ms" }}
"#
    )
}

/// The records the cloud wrote, as parsed JSON lines.
fn received(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("received.ndjson"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn sequence(record: &serde_json::Value) -> Option<u64> {
    record["message"].as_str()?.rsplit(' ').next()?.parse().ok()
}

#[test]
fn records_cross_agent_gateway_and_cloud_over_mtls_with_signed_batches_and_bound_identities() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = pki_dir.path();
    certs(pki, &["init", "--trust-domain", "fleet.test"]);
    certs(pki, &["issue-device", "--device-id", "dev-1"]);
    certs(pki, &["issue-device", "--device-id", "dev-2"]);
    certs(
        pki,
        &[
            "issue-gateway",
            "--gateway-id",
            "site-1",
            "--dns",
            "localhost",
        ],
    );
    certs(pki, &["issue-server", "--dns", "localhost"]);

    let cloud_port = free_port();
    let cloud = Iotel::start(
        "cloud",
        &cloud_config(cloud_port, pki),
        &[("policy.toml", POLICY)],
    );
    let gateway_port = free_port();
    let gateway = Iotel::start(
        "gateway",
        &gateway_config(gateway_port, cloud_port, pki),
        &[],
    );

    // dev-1 sends as itself; dev-2 claims to be dev-1.
    let honest = Iotel::start(
        "agent",
        &agent_config(gateway_port, pki, "dev-1", "honest", "site = \"plant-7\""),
        &[],
    );
    let spoofer = Iotel::start(
        "agent",
        &agent_config(
            gateway_port,
            pki,
            "dev-2",
            "spoofed",
            "device_id = \"dev-1\"",
        ),
        &[],
    );

    // A gateway with a valid certificate but neither token nor signature.
    let rogue = Iotel::start("gateway", &rogue_config(cloud_port, pki), &[]);

    let report = || {
        format!(
            "{}\n{}\n{}\n{}\n{}",
            cloud.proc.report(),
            gateway.proc.report(),
            honest.proc.report(),
            spoofer.proc.report(),
            rogue.proc.report()
        )
    };
    wait_for(
        "every honest record at the cloud",
        Duration::from_secs(60),
        || {
            let n = received(cloud.dir())
                .iter()
                .filter(|r| r["message"].as_str().unwrap_or("").starts_with("honest "))
                .count() as u64;
            (n >= RECORDS).then_some(())
        },
    );
    // The gateway refused the spoofer's batches, again and again.
    wait_for(
        "the gateway to refuse the spoofed batches",
        Duration::from_secs(30),
        || {
            (gateway.metric(
                "iotel_component_errors_total",
                &["error_code=\"identity_mismatch\""],
            ) >= 1.0)
                .then_some(())
        },
    );

    let records = received(cloud.dir());
    let mut seqs = BTreeSet::new();
    for r in &records {
        let message = r["message"].as_str().unwrap_or("");
        assert_eq!(r["labels"]["device_id"], "dev-1", "{r}");
        assert_eq!(r["labels"]["gateway_id"], "site-1", "{r}");
        assert_eq!(r["labels"]["tenant"], "acme", "{r}");
        if message == "keepalive 0" {
            continue;
        }
        assert!(
            message.starts_with("honest "),
            "only dev-1's records reach the cloud, got {r}\n{}",
            report()
        );
        assert_eq!(r["labels"]["site"], "plant-7", "{r}");
        assert!(seqs.insert(sequence(r).unwrap()), "duplicate {r}");
    }
    assert_eq!(seqs, (0..RECORDS).collect::<BTreeSet<_>>(), "{}", report());

    // The cloud refused the rogue gateway's batches, and only those.
    let refused = wait_for(
        "the cloud to refuse the unsigned batches",
        Duration::from_secs(30),
        || {
            let n = cloud.metric(
                "iotel_component_errors_total",
                &["error_code=\"missing_token\""],
            );
            (n >= 1.0).then_some(n)
        },
    );
    assert_eq!(
        cloud.metric("iotel_component_errors_total", &[]),
        refused,
        "{}",
        report()
    );
    let audit = std::fs::read_to_string(cloud.dir().join("audit.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(first["code"], "missing_token", "{audit}");
    assert_eq!(first["decision"], "unauthenticated", "{audit}");
    assert!(
        received(cloud.dir())
            .iter()
            .all(|r| r["message"] != "rogue 0"),
        "{}",
        report()
    );
    // dev-1's records and its one keepalive; none of the spoofer's.
    assert_eq!(
        gateway.metric(
            "iotel_component_received_events_total",
            &["component_id=\"agents\""]
        ),
        (RECORDS + 1) as f64,
        "{}",
        report()
    );
}
