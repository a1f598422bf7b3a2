//! The native receiver over mutual TLS: batches bound to the device in the
//! client certificate.

use super::*;
use crate::tls::test_pki::{Ca, Issued, client_config, connect_and_send};
use iotel_engine::shutdown::{self, ShutdownTrigger};
use iotel_engine::{ComponentKey, TestReceiver};
use iotel_formats::native::Compression;
use iotel_model::{Events, Labels, LogRecord};
use std::path::Path;

struct Running {
    addr: SocketAddr,
    /// The labels of the records received downstream (and acknowledged).
    received: Arc<Mutex<Vec<Labels>>>,
    metrics: ComponentMetrics,
    ca: Ca,
    _trigger: ShutdownTrigger,
}

/// A receiver with `tls` (a CA and a server certificate in `dir`) and
/// `identity = { <identity> }`.
async fn start(dir: &Path, identity: &str) -> Running {
    let ca = Ca::new("device CA");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    ca.server(&[0x51]).write(dir, "server");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg: Config = toml::from_str(&format!(
        "address = \"{addr}\"\n\
         tls = {{ cert_file = \"server.pem\", key_file = \"server.key\", ca_file = \"ca.pem\" }}\n\
         identity = {{ {identity} }}"
    ))
    .unwrap();
    assert!(cfg.validate().is_empty());
    let (out, rx) = Output::for_test(16);
    let metrics = ComponentMetrics::detached("in", "iotel");
    let mut bcx = BuildContext::for_test("in");
    bcx.config_dir = dir.to_path_buf();
    bcx.metrics = metrics.clone();
    let (trigger, shutdown) = shutdown::channel();
    let cx = SourceContext {
        key: ComponentKey {
            id: "in".into(),
            type_name: "iotel".into(),
        },
        out,
        shutdown,
        metrics: metrics.clone(),
        data_dir: dir.to_path_buf(),
    };
    let source = cfg.build(&bcx).unwrap();
    tokio::spawn(source.run(cx));
    // Listening once a TCP connection is accepted; one handshake fails.
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let received = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(drain(rx, received.clone()));
    Running {
        addr,
        received,
        metrics,
        ca,
        _trigger: trigger,
    }
}

async fn drain(mut rx: TestReceiver, into: Arc<Mutex<Vec<Labels>>>) {
    while let Some(events) = rx.recv().await {
        if let Events::Logs(v) = events {
            lock(&into).extend(v.into_iter().map(|r| r.labels));
        }
    }
}

/// Log records, the first `claimed` of them labelled `device_id = claim`.
fn records(n: u32, claimed: u32, claim: &str) -> Events {
    Events::Logs(
        (0..n)
            .map(|i| {
                let mut r = LogRecord::new(i64::from(i), format!("line {i}"));
                if i < claimed {
                    r.labels = Labels::from_pairs([("device_id", claim)]);
                }
                r
            })
            .collect(),
    )
}

impl Running {
    async fn post(&self, client: &Issued, events: &Events) -> (u16, String) {
        let body = native::encode("agent-1", 1, events, Compression::Snappy).unwrap();
        connect_and_send(
            self.addr,
            client_config(&self.ca.pem, Some(client)),
            BATCH_PATH,
            body,
        )
        .await
        .unwrap()
    }

    fn labels_received(&mut self) -> Vec<Labels> {
        std::mem::take(&mut *lock(&self.received))
    }
}

const TD: &str = "trust_domain = \"iotel.test\"";

#[tokio::test]
async fn a_device_certificate_puts_its_device_id_on_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path(), TD).await;
    let dev =
        r.ca.client("dev-7", Some("spiffe://iotel.test/device/dev-7"), &[0x07]);
    assert_eq!(
        r.post(&dev, &records(3, 1, "dev-7")).await,
        (200, String::new())
    );
    let want = Labels::from_pairs([("device_id", "dev-7")]);
    assert_eq!(r.labels_received(), vec![want.clone(), want.clone(), want]);
}

#[tokio::test]
async fn a_gateway_certificate_puts_its_gateway_id_on_records_and_leaves_device_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path(), TD).await;
    let gw =
        r.ca.client("gw-1", Some("spiffe://iotel.test/gateway/gw-1"), &[0x08]);
    assert_eq!(
        r.post(&gw, &records(2, 1, "dev-3")).await,
        (200, String::new())
    );
    assert_eq!(
        r.labels_received(),
        vec![
            Labels::from_pairs([("device_id", "dev-3"), ("gateway_id", "gw-1")]),
            Labels::from_pairs([("gateway_id", "gw-1")]),
        ]
    );
}

#[tokio::test]
async fn a_batch_with_a_record_claiming_another_device_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path(), TD).await;
    let dev =
        r.ca.client("dev-7", Some("spiffe://iotel.test/device/dev-7"), &[0x07]);
    assert_eq!(
        r.post(&dev, &records(3, 1, "dev-8")).await,
        (
            403,
            "a record claims device_id \"dev-8\", but the client certificate is \"dev-7\"'s".into()
        )
    );
    assert_eq!(r.metrics.errors("identity_mismatch").get(), 1);
    assert!(r.labels_received().is_empty());
}

#[tokio::test]
async fn with_policy_overwrite_a_spoofed_device_id_is_replaced_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path(), &format!("{TD}, policy = \"overwrite\"")).await;
    let dev =
        r.ca.client("dev-7", Some("spiffe://iotel.test/device/dev-7"), &[0x07]);
    assert_eq!(
        r.post(&dev, &records(3, 2, "dev-8")).await,
        (200, String::new())
    );
    let want = Labels::from_pairs([("device_id", "dev-7")]);
    assert_eq!(r.labels_received(), vec![want.clone(), want.clone(), want]);
    assert_eq!(r.metrics.errors("identity_overwritten").get(), 2);
}

#[tokio::test]
async fn a_spiffe_id_in_another_trust_domain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path(), TD).await;
    let dev =
        r.ca.client("dev-7", Some("spiffe://evil.test/device/dev-7"), &[0x07]);
    assert_eq!(
        r.post(&dev, &records(1, 0, "")).await,
        (
            403,
            "the certificate's SPIFFE id \"spiffe://evil.test/device/dev-7\" is in trust domain \
             \"evil.test\", expected \"iotel.test\""
                .into()
        )
    );
    let no_spiffe = r.ca.client("dev-7", None, &[0x09]);
    assert_eq!(
        r.post(&no_spiffe, &records(1, 0, "")).await,
        (
            403,
            "the certificate carries no SPIFFE id; expected one in trust domain \"iotel.test\""
                .into()
        )
    );
    assert_eq!(r.metrics.errors("wrong_trust_domain").get(), 2);
    assert!(r.labels_received().is_empty());
}

#[tokio::test]
async fn a_revoked_serial_or_device_is_refused_and_the_deny_list_is_reread_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("revoked.txt");
    std::fs::write(&list, "# revoked\n0A:1B  # lost in the field\n").unwrap();
    let mut r = start(dir.path(), &format!("{TD}, deny_list = \"revoked.txt\"")).await;
    let lost = r.ca.client(
        "dev-7",
        Some("spiffe://iotel.test/device/dev-7"),
        &[0x0a, 0x1b],
    );
    let other =
        r.ca.client("dev-8", Some("spiffe://iotel.test/device/dev-8"), &[0x0c]);
    assert_eq!(
        r.post(&lost, &records(1, 0, "")).await,
        (
            403,
            "device_id \"dev-7\" (certificate serial 0a1b) is revoked: \"a1b\" in the deny list"
                .into()
        )
    );
    assert_eq!(r.post(&other, &records(1, 0, "")).await.0, 200);
    std::fs::write(&list, "0a1b\ndev-8\n").unwrap();
    assert_eq!(
        r.post(&other, &records(1, 0, "")).await,
        (
            403,
            "device_id \"dev-8\" (certificate serial 0c) is revoked: \"dev-8\" in the deny list"
                .into()
        )
    );
    assert_eq!(r.metrics.errors("revoked").get(), 2);
    assert_eq!(r.labels_received().len(), 1);
}

#[tokio::test]
async fn without_a_trust_domain_the_cn_names_a_certificate_without_a_spiffe_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path(), "from = \"cn\"").await;
    let dev =
        r.ca.client("dev-9", Some("spiffe://iotel.test/device/dev-7"), &[0x07]);
    assert_eq!(r.post(&dev, &records(1, 0, "")).await, (200, String::new()));
    assert_eq!(
        r.labels_received(),
        vec![Labels::from_pairs([("device_id", "dev-9")])]
    );
}

#[test]
fn identity_needs_a_listener_that_verifies_client_certificates() {
    let cfg: Config =
        toml::from_str("address = \"127.0.0.1:1\"\nidentity = { trust_domain = \"a/b\" }").unwrap();
    let p: Vec<(String, String)> = cfg
        .validate()
        .into_iter()
        .map(|p| (p.key, p.message))
        .collect();
    assert_eq!(
        p,
        [
            (
                "identity.trust_domain".to_string(),
                "expected a trust domain name like \"iotel.test\", got \"a/b\"".to_string()
            ),
            (
                "identity".to_string(),
                "identities come from client certificates: expected tls with a ca_file".to_string()
            )
        ]
    );
}
