//! The TLS listener against well-behaved and hostile clients.
#![allow(clippy::unwrap_used)]

use super::ServerTls;
use super::server::TlsListener;
use super::test_pki::{Ca, Leaf, client_config, connect, connect_and_send, request};
use crate::BuildContext;
use crate::http_util::{self, PeerIdentity};
use iotel_engine::shutdown::{self, ShutdownTrigger};
use rcgen::ExtendedKeyUsagePurpose;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Server {
    addr: SocketAddr,
    tls: TlsListener,
    cx: BuildContext,
    _trigger: ShutdownTrigger,
}

fn context(dir: &Path) -> BuildContext {
    let mut cx = BuildContext::for_test("in");
    cx.config_dir = dir.to_path_buf();
    cx
}

fn config(extra: &str) -> ServerTls {
    toml::from_str(&format!(
        "cert_file = \"server.pem\"\nkey_file = \"server.key\"\nca_file = \"ca.pem\"\n{extra}"
    ))
    .unwrap()
}

/// A server answering each request with its peer's identity.
async fn start(dir: &Path, cfg: &ServerTls) -> Server {
    let cx = context(dir);
    assert!(cfg.validate("tls").is_empty());
    let tls = cfg.build("tls", &cx, &[b"http/1.1"]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = shutdown::channel();
    tokio::spawn(tls.clone().watch(shutdown.clone()));
    tokio::spawn(http_util::serve_with(
        listener,
        shutdown,
        Some(tls.clone()),
        |req| async move {
            let id = req.extensions().get::<PeerIdentity>().cloned();
            http_util::response(200, "text/plain", format!("{id:?}"))
        },
    ));
    Server {
        addr,
        tls,
        cx,
        _trigger: trigger,
    }
}

impl Server {
    fn handshake_failures(&self) -> u64 {
        self.cx.metrics.errors("tls_handshake_failed").get()
    }
}

/// A CA, a server certificate (serial 0x51) and `ca.pem` in `dir`.
fn pki(dir: &Path) -> Ca {
    let ca = Ca::new("test CA");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    ca.server(&[0x51]).write(dir, "server");
    ca
}

const DEVICE: &str = "spiffe://iotel.test/device/dev-7";

#[tokio::test]
async fn a_verified_client_certificate_gives_each_request_its_identity() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let s = start(dir.path(), &config("")).await;
    let client = ca.client("dev-7", Some(DEVICE), &[0x0a, 0x1b]);
    let (mut c, server_serial) = connect(s.addr, client_config(&ca.pem, Some(&client)))
        .await
        .unwrap();
    assert_eq!(server_serial, "51");
    let (status, body) = request(&mut c, "/", vec![]).await.unwrap();
    assert_eq!(status, 200);
    let want = PeerIdentity {
        spiffe_id: Some(DEVICE.into()),
        common_name: Some("dev-7".into()),
        serial_hex: "0a1b".into(),
    };
    assert_eq!(body, format!("{:?}", Some(want)));
    assert_eq!(s.handshake_failures(), 0);
}

/// Connects with `client` and expects the server to refuse it with
/// `alert`, counted once.
async fn refused(dir: &Path, ca: &Ca, client_ca: &Ca, leaf: Leaf<'_>, alert: &str) {
    let s = start(dir, &config("")).await;
    let client = client_ca.leaf(leaf);
    let err = connect_and_send(s.addr, client_config(&ca.pem, Some(&client)), "/", vec![])
        .await
        .unwrap_err();
    assert!(
        err.contains(&format!("received fatal alert: {alert}")),
        "{err}"
    );
    wait_for(|| s.handshake_failures() == 1).await;
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_client_certificate_from_an_unknown_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let other = Ca::new("someone else's CA");
    refused(dir.path(), &ca, &other, Leaf::default(), "UnknownCA").await;
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let leaf = Leaf {
        not_before: rcgen::date_time_ymd(2021, 1, 1),
        not_after: rcgen::date_time_ymd(2022, 1, 1),
        ..Leaf::default()
    };
    refused(dir.path(), &ca, &ca, leaf, "CertificateExpired").await;
}

#[tokio::test]
async fn a_client_certificate_not_yet_valid_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let leaf = Leaf {
        not_before: rcgen::date_time_ymd(2080, 1, 1),
        not_after: rcgen::date_time_ymd(2089, 1, 1),
        ..Leaf::default()
    };
    // RFC 8446: certificate_expired covers "not currently valid".
    refused(dir.path(), &ca, &ca, leaf, "CertificateExpired").await;
}

#[tokio::test]
async fn a_server_only_certificate_used_by_a_client_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let leaf = Leaf {
        usage: &[ExtendedKeyUsagePurpose::ServerAuth],
        ..Leaf::default()
    };
    refused(dir.path(), &ca, &ca, leaf, "UnsupportedCertificate").await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let s = start(dir.path(), &config("")).await;
    let err = connect_and_send(s.addr, client_config(&ca.pem, None), "/", vec![])
        .await
        .unwrap_err();
    assert!(
        err.contains("received fatal alert: CertificateRequired"),
        "{err}"
    );
    wait_for(|| s.handshake_failures() == 1).await;
}

#[tokio::test]
async fn garbage_instead_of_a_handshake_closes_that_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let s = start(dir.path(), &config("")).await;
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0, 0, 0, 0, 0][..],
        &[0u8; 4096][..],
    ] {
        let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let _ = tcp.write_all(garbage).await;
        let mut buf = Vec::new();
        // The server answers with an alert at most, then closes.
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf))
            .await
            .unwrap();
        assert!(buf.len() < 16, "{buf:?}");
    }
    wait_for(|| s.handshake_failures() == 3).await;
    let client = ca.client("dev-7", Some(DEVICE), &[0x07]);
    let (status, _) = connect_and_send(s.addr, client_config(&ca.pem, Some(&client)), "/", vec![])
        .await
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_rotated_server_certificate_is_used_by_new_connections_while_old_ones_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let s = start(dir.path(), &config("reload_interval = \"1s\"")).await;
    let client = client_config(&ca.pem, Some(&ca.client("dev-7", Some(DEVICE), &[0x07])));
    let (mut old, serial) = connect(s.addr, client.clone()).await.unwrap();
    assert_eq!(serial, "51");
    assert_eq!(request(&mut old, "/", vec![]).await.unwrap().0, 200);

    // Written as a deployment tool would: new files renamed into place.
    let staged = tempfile::tempdir_in(dir.path()).unwrap();
    let (cert, key) = ca.server(&[0x52]).write(staged.path(), "server");
    std::fs::rename(key, dir.path().join("server.key")).unwrap();
    std::fs::rename(cert, dir.path().join("server.pem")).unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, serial) = connect(s.addr, client.clone()).await.unwrap();
        if serial == "52" {
            break;
        }
        assert_eq!(serial, "51");
        assert!(tokio::time::Instant::now() < deadline, "never reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(request(&mut old, "/", vec![]).await.unwrap().0, 200);
    assert_eq!(s.cx.metrics.errors("tls_reload_failed").get(), 0);
}

#[tokio::test]
async fn a_reload_of_broken_files_keeps_the_previous_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let s = start(dir.path(), &config("")).await;
    std::fs::write(
        dir.path().join("server.pem"),
        "-----BEGIN CERTIFICATE-----\nhalf",
    )
    .unwrap();
    let p = s.tls.reload_now().unwrap_err();
    assert_eq!(p.key, "tls.cert_file");
    assert!(p.message.contains("server.pem"), "{}", p.message);
    // A key that is not the certificate's.
    let other = ca.server(&[0x53]);
    std::fs::write(dir.path().join("server.pem"), &other.cert_pem).unwrap();
    let p = s.tls.reload_now().unwrap_err();
    assert_eq!(p.key, "tls.key_file");
    assert!(p.message.contains("does not fit"), "{}", p.message);
    let client = client_config(&ca.pem, Some(&ca.client("dev-7", Some(DEVICE), &[0x07])));
    let (_, serial) = connect(s.addr, client).await.unwrap();
    assert_eq!(serial, "51");
}

#[test]
fn a_certificate_file_that_is_not_pem_is_a_build_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    std::fs::write(dir.path().join("server.pem"), "this is not a certificate\n").unwrap();
    let p = config("")
        .build("tls", &context(dir.path()), &[])
        .unwrap_err();
    assert_eq!(p.key, "tls.cert_file");
    assert_eq!(
        p.message,
        format!(
            "{}: expected PEM certificates, found none",
            dir.path().join("server.pem").display()
        )
    );
    std::fs::write(dir.path().join("server.key"), "no key\n").unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    pki(dir2.path());
    std::fs::write(dir2.path().join("server.key"), "no key\n").unwrap();
    let p = config("")
        .build("tls", &context(dir2.path()), &[])
        .unwrap_err();
    assert_eq!(p.key, "tls.key_file");
    assert!(p.message.contains("server.key"), "{}", p.message);
}

#[test]
fn the_expiry_of_the_certificate_and_the_ca_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let cx = context(dir.path());
    let _tls = config("").build("tls", &cx, &[]).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let mut seen = Vec::new();
    for m in cx.metrics.registry().snapshot() {
        if &*m.name == "iotel_tls_cert_expiry_seconds" {
            seen.push((m.labels.get("file").unwrap().to_string(), m.value));
        }
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    // The server's leaf ends 2089-01-01, the CA 2090-01-01.
    let until = |y: i16| {
        let t: jiff::Timestamp = format!("{y}-01-01T00:00:00Z").parse().unwrap();
        (t.as_second() - now) as f64
    };
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].0.ends_with("ca.pem"));
    assert!((seen[0].1 - until(2090)).abs() < 5.0, "{seen:?}");
    assert!(seen[1].0.ends_with("server.pem"));
    assert!((seen[1].1 - until(2089)).abs() < 5.0, "{seen:?}");
}

#[test]
fn settings_are_checked() {
    let t: ServerTls =
        toml::from_str("cert_file = \"a\"\nkey_file = \"b\"\nverify_client = true\nmin_version = \"1.1\"\nreload_interval = \"10ms\"")
            .unwrap();
    let keys: Vec<String> = t.validate("tls").into_iter().map(|p| p.key).collect();
    assert_eq!(
        keys,
        ["tls.ca_file", "tls.min_version", "tls.reload_interval"]
    );
}

#[tokio::test]
async fn with_min_version_1_3_a_tls_1_2_client_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let s = start(dir.path(), &config("min_version = \"1.3\"")).await;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let tls12 = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let err = connect(s.addr, std::sync::Arc::new(tls12))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("received fatal alert: ProtocolVersion"),
        "{err}"
    );
    wait_for(|| s.handshake_failures() == 1).await;
}

#[tokio::test]
async fn leaves_of_an_intermediate_ca_verify_against_the_root_as_iotel_certs_makes_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = Ca::new("root");
    let int = root.intermediate("intermediate");
    std::fs::write(dir.path().join("ca.pem"), &root.pem).unwrap();
    int.server(&[0x61]).write(dir.path(), "server");
    let s = start(dir.path(), &config("")).await;
    let device = int.client("d1", Some("spiffe://iotel.test/device/d1"), &[0x62]);
    let (mut c, serial) = connect(s.addr, client_config(&root.pem, Some(&device)))
        .await
        .unwrap();
    assert_eq!(serial, "61");
    let (status, body) = request(&mut c, "/", vec![]).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("serial_hex: \"62\""), "{body}");
    // A leaf sent without its intermediate does not chain to the root.
    let mut bare = int.client("d2", None, &[0x63]);
    bare.cert_pem =
        bare.cert_pem[..bare.cert_pem.find("-----END CERTIFICATE-----").unwrap() + 26].to_string();
    let err = connect_and_send(s.addr, client_config(&root.pem, Some(&bare)), "/", vec![])
        .await
        .unwrap_err();
    assert!(err.contains("received fatal alert: UnknownCA"), "{err}");
}

#[test]
fn a_plaintext_listener_needs_loopback_tls_or_plaintext_true_and_not_both() {
    use super::server::validate_plaintext;
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    let refused = |a: &str| {
        vec![crate::Problem::new(
            "address",
            format!(
                "listening in plaintext on {a}: add a tls table, or set plaintext = true to \
                 accept unencrypted connections"
            ),
        )]
    };
    for a in [
        "0.0.0.0:9000",
        "[::]:9000",
        "10.1.2.3:9000",
        "[fe80::1]:9000",
    ] {
        assert_eq!(
            validate_plaintext("address", addr(a), false, false),
            refused(a)
        );
        assert_eq!(validate_plaintext("address", addr(a), false, true), []);
        assert_eq!(validate_plaintext("address", addr(a), true, false), []);
    }
    for a in ["127.0.0.1:9000", "127.8.9.1:9000", "[::1]:9000"] {
        assert_eq!(validate_plaintext("address", addr(a), false, false), []);
    }
    assert_eq!(
        validate_plaintext("address", addr("127.0.0.1:9000"), true, true),
        [crate::Problem::new(
            "plaintext",
            "expected either a tls table or plaintext = true, not both"
        )]
    );
}

#[cfg(feature = "otlp")]
#[test]
fn the_otlp_source_checks_both_its_addresses_and_tells_a_contradiction_once() {
    let problems = |text: &str| -> Vec<(String, String)> {
        let c: crate::sources::otlp::Config = toml::from_str(text).unwrap();
        c.validate()
            .into_iter()
            .map(|p| (p.key, p.message))
            .collect()
    };
    assert_eq!(
        problems("grpc_address = \"0.0.0.0:4317\""),
        [(
            "grpc_address".to_string(),
            "listening in plaintext on 0.0.0.0:4317: add a tls table, or set plaintext = true \
             to accept unencrypted connections"
                .to_string()
        )]
    );
    assert_eq!(
        problems("plaintext = true\ntls = { cert_file = \"s.pem\", key_file = \"s.key\" }"),
        [(
            "plaintext".to_string(),
            "expected either a tls table or plaintext = true, not both".to_string()
        )]
    );
}
