//! The buffered sinks over https: mutual TLS with a private CA, a server
//! from an unknown CA, `server_name`, client-certificate rotation, the
//! plaintext warning, and the `tls` table's config errors.

#![allow(clippy::unwrap_used)]

use super::test_peer::{Logs, Running, eventually};
use crate::BuildContext;
use crate::sinks::{iotel, prometheus_remote_write};
use crate::tls::client_test_peer::{Issued, TestCa, TlsPeer};
use iotel_engine::ComponentMetrics;
use iotel_formats::remote_write;
use iotel_model::{Events, Labels, LogRecord, Metric, MetricType};
use std::path::Path;

/// A PKI in a directory: `ca.pem`, and `dev-1.pem` / `dev-1.key`, a client
/// certificate with CN `dev-1` and serial 0x0a.
struct Pki {
    dir: tempfile::TempDir,
    ca: TestCa,
    /// The server's certificate, for 127.0.0.1 and `gw.site.internal`.
    server: Issued,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("iotel test CA");
    ca.write(dir.path(), "ca.pem");
    ca.client("dev-1", 0x0a).write(dir.path(), "dev-1");
    let server = ca.server(&["gw.site.internal"], true);
    Pki { dir, ca, server }
}

const MTLS: &str =
    r#"tls = { ca_file = "ca.pem", cert_file = "dev-1.pem", key_file = "dev-1.key" }"#;

fn cx(dir: &Path, metrics: &ComponentMetrics) -> BuildContext {
    BuildContext {
        id: metrics.id().to_string(),
        metrics: metrics.clone(),
        data_dir: dir.to_path_buf(),
        config_dir: dir.to_path_buf(),
    }
}

/// A `prometheus_remote_write` sink to `endpoint`, built in `dir`, with
/// quick retries; its build context's counters are returned too.
fn remote_write(dir: &Path, endpoint: &str, extra: &str) -> (Running, ComponentMetrics) {
    let config: prometheus_remote_write::Config = toml::from_str(&format!(
        "endpoint = \"{endpoint}\"\nretry = {{ initial_backoff = \"10ms\", max_backoff = \"50ms\" }}\n{extra}"
    ))
    .unwrap();
    assert_eq!(config.validate(), vec![]);
    let metrics = ComponentMetrics::detached("rw", "prometheus_remote_write");
    let sink = config.build(&cx(dir, &metrics)).unwrap();
    (
        Running::start(sink, "rw", "prometheus_remote_write"),
        metrics,
    )
}

fn samples(values: std::ops::Range<u32>) -> Events {
    Events::Metrics(
        values
            .map(|v| {
                Metric::new(
                    "room_temperature_celsius",
                    MetricType::Gauge,
                    Labels::from_pairs([("device_id", "dev-1")]),
                    f64::from(v),
                    i64::from(v) * 1000,
                )
            })
            .collect(),
    )
}

/// The values each request to `peer` carried, in order.
fn values(peer: &TlsPeer) -> Vec<Vec<f64>> {
    peer.seen()
        .iter()
        .map(|s| {
            remote_write::decode(&s.body)
                .unwrap()
                .iter()
                .map(|m| m.value)
                .collect()
        })
        .collect()
}

fn identities(peer: &TlsPeer) -> Vec<(Option<String>, Option<String>)> {
    peer.seen()
        .into_iter()
        .map(|s| (s.client_cn, s.client_serial))
        .collect()
}

fn dev1(serial: &str) -> (Option<String>, Option<String>) {
    (Some("dev-1".into()), Some(serial.into()))
}

#[tokio::test]
async fn remote_write_delivers_over_mutual_tls_and_the_server_sees_its_cn() {
    let pki = pki();
    let peer = TlsPeer::start(&pki.server, Some(&pki.ca)).await;
    let (sink, _) = remote_write(pki.dir.path(), &peer.url("/api/v1/write"), MTLS);
    sink.send(samples(0..3)).await;
    let m = sink.close().await;
    assert_eq!(m.sent_total(), 3);
    assert_eq!(values(&peer), [vec![0.0, 1.0, 2.0]]);
    assert_eq!(peer.seen()[0].path, "/api/v1/write");
    assert_eq!(identities(&peer), [dev1("0a")]);
    assert_eq!(peer.failed_handshakes(), Vec::<String>::new());
}

#[tokio::test]
async fn the_iotel_sink_delivers_over_mutual_tls_and_the_server_sees_its_cn() {
    let pki = pki();
    let peer = TlsPeer::start(&pki.server, Some(&pki.ca)).await;
    let config: iotel::Config = toml::from_str(&format!(
        "endpoint = \"{}\"\nagent_id = \"dev-1\"\n{MTLS}",
        peer.url("")
    ))
    .unwrap();
    assert_eq!(config.validate(), vec![]);
    let metrics = ComponentMetrics::detached("up", "iotel");
    let sink = config.build(&cx(pki.dir.path(), &metrics)).unwrap();
    let sink = Running::start(sink, "up", "iotel");
    sink.send(Events::Logs(vec![
        LogRecord::new(1, "door open"),
        LogRecord::new(2, "door closed"),
    ]))
    .await;
    let m = sink.close().await;
    assert_eq!(m.sent_total(), 2);
    let seen = peer.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, crate::native_protocol::BATCH_PATH);
    let frame =
        iotel_formats::native::decode(&seen[0].body, &iotel_formats::native::Limits::default())
            .unwrap();
    assert_eq!(frame.header.agent_id, "dev-1");
    assert_eq!(frame.events.len(), 2);
    assert_eq!(identities(&peer), [dev1("0a")]);
}

#[tokio::test]
async fn a_server_from_an_unknown_ca_fails_each_attempt_and_nothing_is_lost() {
    let pki = pki();
    let stranger = TestCa::new("someone else's CA").server(&["gw.site.internal"], true);
    let peer = TlsPeer::start(&stranger, Some(&pki.ca)).await;
    let (logs, _guard) = Logs::capture();
    let (sink, _) = remote_write(pki.dir.path(), &peer.url("/api/v1/write"), MTLS);
    sink.send(samples(0..3)).await;
    eventually("two failed attempts", || {
        sink.errors("connection_failed") >= 2
    })
    .await;
    assert_eq!(sink.sent(), 0);
    assert_eq!(peer.seen().len(), 0);
    let failed = logs.lines_with("TLS with 127.0.0.1 failed");
    assert!(
        failed[0].contains("TLS with 127.0.0.1 failed: invalid peer certificate: UnknownIssuer"),
        "{failed:?}"
    );
    // The server gets a certificate the sink trusts: the same batch goes.
    peer.set_cert(&pki.server);
    eventually("the batch delivered", || sink.sent() == 3).await;
    let m = sink.close().await;
    assert_eq!(m.discards("rejected").get(), 0);
    assert_eq!(values(&peer), [vec![0.0, 1.0, 2.0]]);
}

#[tokio::test]
async fn server_name_is_the_name_checked_when_the_url_has_another() {
    let pki = pki();
    // Named by DNS only: reached by address, only `server_name` matches.
    let dns_only = pki.ca.server(&["gw.site.internal"], false);
    let peer = TlsPeer::start(&dns_only, Some(&pki.ca)).await;
    let (logs, _guard) = Logs::capture();
    let (sink, _) = remote_write(pki.dir.path(), &peer.url("/w"), MTLS);
    sink.send(samples(0..1)).await;
    eventually("a failed attempt", || sink.errors("connection_failed") >= 1).await;
    let failed = logs.lines_with("TLS with 127.0.0.1 failed");
    assert!(
        failed[0].contains("certificate not valid for name"),
        "{failed:?}"
    );
    assert_eq!(sink.sent(), 0);

    let named = MTLS.replace(" }", r#", server_name = "gw.site.internal" }"#);
    let (sink, _) = remote_write(pki.dir.path(), &peer.url("/w"), &named);
    sink.send(samples(5..6)).await;
    let m = sink.close().await;
    assert_eq!(m.sent_total(), 1);
    assert_eq!(values(&peer), [vec![5.0]]);
}

#[tokio::test]
async fn a_rotated_client_certificate_is_presented_on_the_next_connection() {
    let pki = pki();
    let peer = TlsPeer::start(&pki.server, Some(&pki.ca)).await;
    let (sink, metrics) = remote_write(pki.dir.path(), &peer.url("/w"), MTLS);
    sink.send(samples(0..1)).await;
    eventually("the first batch", || sink.sent() == 1).await;
    pki.ca.client("dev-1", 0x0b).write(pki.dir.path(), "dev-1");
    sink.send(samples(1..2)).await;
    eventually("the second batch", || sink.sent() == 2).await;
    // A file that is not PEM: the material in use stays, and it is counted.
    std::fs::write(pki.dir.path().join("dev-1.pem"), "not a certificate\n").unwrap();
    sink.send(samples(2..3)).await;
    eventually("the third batch", || sink.sent() == 3).await;
    sink.close().await;
    assert_eq!(identities(&peer), [dev1("0a"), dev1("0b"), dev1("0b")]);
    assert_eq!(metrics.errors("tls_reload_failed").get(), 1);
}

#[tokio::test]
async fn plaintext_to_another_host_is_warned_at_start_and_to_this_one_not() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, _guard) = Logs::capture();
    let (sink, _) = remote_write(dir.path(), "http://192.0.2.7:9090/api/v1/write", "");
    eventually("the warning", || {
        !logs.lines_with("sending in plaintext").is_empty()
    })
    .await;
    sink.close().await;
    let (sink, _) = remote_write(dir.path(), "http://127.0.0.1:9/api/v1/write", "");
    let (local, _) = remote_write(dir.path(), "http://localhost:9/api/v1/write", "");
    sink.close().await;
    local.close().await;
    assert_eq!(
        logs.lines_with("sending in plaintext"),
        [
            " WARN iotel_components::http_util: sending in plaintext to 192.0.2.7: use an https:// \
          endpoint to encrypt (and a tls table for a private CA or a client certificate) \
          component=\"rw\""
        ]
    );
}

#[test]
fn tls_table_mistakes_are_problems_under_tls() {
    let config: prometheus_remote_write::Config = toml::from_str(
        r#"endpoint = "http://gw:9090/w"
tls = { cert_file = "c.pem", server_name = "" }"#,
    )
    .unwrap();
    let shown: Vec<String> = config
        .validate()
        .into_iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    assert_eq!(
        shown,
        [
            "tls.key_file: cert_file is set: expected key_file with the certificate's private key",
            "tls.server_name: expected a DNS name or an IP address, got an empty string",
            "tls: http://gw:9090/w is plain HTTP: use https:// for TLS",
        ]
    );
}

#[test]
fn files_that_are_not_pem_or_do_not_match_fail_the_build_naming_key_and_file() {
    let pki = pki();
    let dir = pki.dir.path();
    std::fs::write(dir.join("junk.pem"), "not a certificate\n").unwrap();
    pki.ca.client("dev-2", 2).write(dir, "dev-2");
    let build = |tls: &str| {
        let config: prometheus_remote_write::Config =
            toml::from_str(&format!("endpoint = \"https://gw/w\"\ntls = {tls}")).unwrap();
        assert_eq!(config.validate(), vec![]);
        let metrics = ComponentMetrics::detached("rw", "prometheus_remote_write");
        let p = config.build(&cx(dir, &metrics)).map(|_| ()).unwrap_err();
        (p.key, p.message.replace(&format!("{}/", dir.display()), ""))
    };
    assert_eq!(
        build(r#"{ ca_file = "ca.pem", cert_file = "junk.pem", key_file = "dev-1.key" }"#),
        (
            "tls.cert_file".to_string(),
            "junk.pem: expected a PEM certificate, found none".to_string()
        )
    );
    assert_eq!(
        build(r#"{ ca_file = "junk.pem" }"#),
        (
            "tls.ca_file".to_string(),
            "junk.pem: expected PEM certificates, found none".to_string()
        )
    );
    assert_eq!(
        build(r#"{ ca_file = "ca.pem", cert_file = "dev-1.pem", key_file = "dev-2.key" }"#),
        (
            "tls.key_file".to_string(),
            "dev-2.key with dev-1.pem: the key does not match the certificate".to_string()
        )
    );
}

#[tokio::test]
async fn without_a_tls_table_https_trusts_the_system_roots_and_not_a_private_ca() {
    let pki = pki();
    let peer = TlsPeer::start(&pki.server, None).await;
    let (logs, _guard) = Logs::capture();
    let (sink, _) = remote_write(pki.dir.path(), &peer.url("/w"), "");
    sink.send(samples(0..1)).await;
    eventually("a failed attempt", || sink.errors("connection_failed") >= 1).await;
    let failed = logs.lines_with("TLS with 127.0.0.1 failed");
    assert!(
        failed[0].contains("TLS with 127.0.0.1 failed: invalid peer certificate: UnknownIssuer"),
        "{failed:?}"
    );
    assert_eq!(sink.sent(), 0);
    assert_eq!(peer.seen().len(), 0);
}
