//! https:// targets with the `tls` table: a private CA, a client
//! certificate the target requires, rotation and expiry.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::http_util::{PeerIdentity, response, serve_with};
use crate::tls::test_pki::Ca;
use iotel_engine::{ComponentKey, shutdown};
use std::path::Path;
use std::time::{Duration as StdDuration, Instant};

/// An HTTPS target that requires a client certificate from `ca.pem` and
/// answers with the serial of the one presented; each answer closes the
/// connection, so every scrape makes a new one.
async fn mtls_target(dir: &Path) -> (std::net::SocketAddr, iotel_engine::ShutdownTrigger) {
    let mut cx = BuildContext::for_test("target");
    cx.config_dir = dir.to_path_buf();
    let tls: crate::tls::ServerTls = toml::from_str(
        "cert_file = \"server.pem\"\nkey_file = \"server.key\"\nca_file = \"ca.pem\"",
    )
    .unwrap();
    let tls = tls.build("tls", &cx, &[b"http/1.1"]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, stop) = shutdown::channel();
    tokio::spawn(serve_with(listener, stop, Some(tls), |req| async move {
        let serial = req
            .extensions()
            .get::<PeerIdentity>()
            .map(|i| i.serial_hex.clone())
            .unwrap_or_default();
        let mut r = response(
            200,
            "text/plain; version=0.0.4",
            format!("scraped_by{{serial=\"{serial}\"}} 1\n"),
        );
        r.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        r
    }));
    (addr, trigger)
}

/// The `scraped_by` samples' serials as the scrapes come, until `want`
/// is seen (every serial before it, in order, deduplicated).
async fn serials_until(rx: &mut iotel_engine::TestReceiver, want: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + StdDuration::from_secs(20);
    while seen.last().map(String::as_str) != Some(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = tokio::time::timeout(left, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no scrape presented {want}; saw {seen:?}"));
        let Some(Events::Metrics(batch)) = batch else {
            panic!("expected metrics");
        };
        for m in batch {
            if &*m.name == "up" {
                assert_eq!(m.value, 1.0, "a scrape failed");
            }
            if &*m.name == "scraped_by" {
                let serial = m.labels.get("serial").unwrap_or_default().to_string();
                if seen.last() != Some(&serial) {
                    seen.push(serial);
                }
            }
        }
    }
    seen
}

fn expiry(metrics: &ComponentMetrics, file: &Path) -> f64 {
    let file = file.display().to_string();
    metrics
        .registry()
        .snapshot()
        .into_iter()
        .find(|m| {
            &*m.name == "iotel_tls_cert_expiry_seconds"
                && m.labels.get("component_id") == Some("scrape")
                && m.labels.get("file") == Some(&*file)
        })
        .unwrap_or_else(|| panic!("no expiry gauge for {file}"))
        .value
}

#[tokio::test]
async fn an_https_target_gets_the_client_certificate_and_a_rotated_one_on_the_next_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("scrape CA");
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    ca.server(&[0x5e]).write(dir.path(), "server");
    ca.client("agent-1", None, &[0x0a])
        .write(dir.path(), "client");
    let (addr, _server) = mtls_target(dir.path()).await;

    // By IP address, so the certificate (for localhost) is checked against
    // server_name.
    let cfg: Config = toml::from_str(&format!(
        "targets = [\"https://{addr}/metrics\"]\ninterval = \"1s\"\njob = \"device\"\n\
         tls = {{ ca_file = \"ca.pem\", cert_file = \"client.pem\", key_file = \"client.key\", \
         server_name = \"localhost\" }}"
    ))
    .unwrap();
    assert_eq!(cfg.validate(), vec![]);
    let mut bcx = BuildContext::for_test("scrape");
    bcx.config_dir = dir.path().to_path_buf();
    let metrics = bcx.metrics.clone();
    let (out, mut rx) = Output::for_test(64);
    let (trigger, shutdown) = shutdown::channel();
    let cx = SourceContext {
        key: ComponentKey {
            id: "scrape".into(),
            type_name: "prometheus_scrape".into(),
        },
        out,
        shutdown,
        metrics: metrics.clone(),
        data_dir: std::env::temp_dir(),
    };
    let task = tokio::spawn(cfg.build(&bcx).unwrap().run(cx));

    assert_eq!(serials_until(&mut rx, "0a").await, ["0a"]);
    // 2089-01-01 and 2090-01-01, the test PKI's leaf and CA notAfter.
    let now = jiff::Timestamp::now().as_second();
    #[allow(clippy::cast_precision_loss)]
    let left = |t: i64| (t - now) as f64;
    let client_expiry = expiry(&metrics, &dir.path().join("client.pem"));
    assert!(
        (client_expiry - left(3_755_376_000)).abs() < 30.0,
        "{client_expiry}"
    );
    let ca_expiry = expiry(&metrics, &dir.path().join("ca.pem"));
    assert!(
        (ca_expiry - left(3_786_912_000)).abs() < 30.0,
        "{ca_expiry}"
    );

    // Rotated in place: the next connection presents the new certificate.
    let mut renewed = ca.leaf(crate::tls::test_pki::Leaf {
        cn: "agent-1",
        serial: &[0x0b],
        not_after: rcgen::date_time_ymd(2080, 1, 1),
        ..crate::tls::test_pki::Leaf::default()
    });
    // A byte longer: the change shows even where modification times are
    // coarse.
    renewed.cert_pem.push('\n');
    renewed.write(dir.path(), "client");
    // (A scrape already under way may still show the old one.)
    let seen = serials_until(&mut rx, "0b").await;
    assert!(seen == ["0b"] || seen == ["0a", "0b"], "{seen:?}");
    let client_expiry = expiry(&metrics, &dir.path().join("client.pem"));
    assert!(
        (client_expiry - left(3_471_292_800)).abs() < 30.0,
        "{client_expiry}"
    );
    assert_eq!(metrics.errors("tls_reload_failed").get(), 0);
    assert_eq!(metrics.errors("scrape_failed").get(), 0);

    trigger.trigger();
    drop(rx);
    task.await.unwrap().unwrap();
}

#[test]
fn a_tls_table_needs_an_https_target_and_https_instances_default_to_443() {
    let cfg: Config = toml::from_str(
        "targets = [\"http://10.0.0.1:9100/metrics\"]\ntls = { ca_file = \"ca.pem\" }",
    )
    .unwrap();
    let p: Vec<(String, String)> = cfg
        .validate()
        .into_iter()
        .map(|p| (p.key, p.message))
        .collect();
    assert_eq!(
        p,
        [(
            "tls".to_string(),
            "no target is https://: the tls table applies to https:// targets only".to_string()
        )]
    );
    assert_eq!(
        parse_target("https://plc-1.plant.local/metrics")
            .unwrap()
            .instance,
        "plc-1.plant.local:443"
    );
    assert_eq!(
        parse_target("http://plc-1.plant.local/metrics")
            .unwrap()
            .instance,
        "plc-1.plant.local:80"
    );
}
