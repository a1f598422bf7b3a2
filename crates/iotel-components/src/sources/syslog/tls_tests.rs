//! Syslog over TLS (RFC 5425) with real handshakes, and the plaintext
//! opt-in.
#![allow(clippy::unwrap_used)]

use super::tests::start;
use super::*;
use crate::tls::test_pki::{Ca, client_config};
use std::time::{Duration as StdDuration, Instant};
use tokio::io::AsyncWriteExt;

/// A CA, the server certificate and `ca.pem` in `dir`; the `tls` table
/// naming them.
fn pki(dir: &std::path::Path) -> (Ca, String) {
    let ca = Ca::new("syslog CA");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    ca.server(&[0x33]).write(dir, "server");
    let d = dir.display();
    let table = format!(
        "tls = {{ cert_file = \"{d}/server.pem\", key_file = \"{d}/server.key\", \
         ca_file = \"{d}/ca.pem\" }}"
    );
    (ca, table)
}

async fn tls_connect(
    addr: SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn octet_counted_messages_over_tls_from_a_verified_client_become_records() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, table) = pki(dir.path());
    let mut s = start("tcp", &table).await;
    // The plain probe that tells the source listens fails its handshake.
    wait_for("the probe to be counted", || {
        s.errors("tls_handshake_failed") == 1
    })
    .await;

    let client = ca.client("gw-1", None, &[0x44]);
    let mut c = tls_connect(s.addr, client_config(&ca.pem, Some(&client)))
        .await
        .unwrap();
    let first = "<165>1 2003-10-11T22:14:15.003Z gw-1 evntslog - ID47 - An event";
    let second = "<30>Oct 11 22:14:15 gw-2 sshd[42]: Accepted key";
    let framed = format!("{} {first}{} {second}", first.len(), second.len());
    c.write_all(framed.as_bytes()).await.unwrap();
    c.shutdown().await.unwrap();
    let r = s.records(2).await;
    assert_eq!(r[0].message, "An event");
    assert_eq!(
        r[0].labels,
        Labels::from_pairs([("app_name", "evntslog"), ("hostname", "gw-1")])
    );
    assert_eq!(r[0].fields.get("source_ip"), Some(&"127.0.0.1".into()));
    assert_eq!(r[1].message, "Accepted key");
    assert_eq!(
        r[1].labels,
        Labels::from_pairs([("app_name", "sshd"), ("hostname", "gw-2")])
    );

    // No client certificate: the handshake fails, nothing is received.
    let refused = tls_connect(s.addr, client_config(&ca.pem, None)).await;
    if let Ok(mut c) = refused {
        // TLS 1.3: the refusal arrives after the client's last flight.
        let _ = c.write_all(b"5 <13>x").await;
        let mut buf = [0u8; 16];
        use tokio::io::AsyncReadExt;
        let err = c.read(&mut buf).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("received fatal alert: CertificateRequired"),
            "{err}"
        );
    }
    wait_for("the refusal to be counted", || {
        s.errors("tls_handshake_failed") == 2
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn with_identity_records_get_the_certificates_device_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, table) = pki(dir.path());
    let extra = format!(
        "{table}\nidentity = {{ trust_domain = \"iotel.test\", gateway_label = \"hostname\" }}"
    );
    let mut s = start("tcp", &extra).await;
    wait_for("the probe to be counted", || {
        s.errors("tls_handshake_failed") == 1
    })
    .await;
    let addr = s.addr;
    let send = |cert: crate::tls::test_pki::Issued, message: &'static str| {
        let ca_pem = ca.pem.clone();
        async move {
            let mut c = tls_connect(addr, client_config(&ca_pem, Some(&cert)))
                .await
                .unwrap();
            let _ = c
                .write_all(format!("{} {message}", message.len()).as_bytes())
                .await;
            let _ = c.shutdown().await;
        }
    };
    // A device: its records get device_id from the SPIFFE id.
    send(
        ca.client("pump-1", Some("spiffe://iotel.test/device/pump-1"), &[0x51]),
        "<165>1 2003-10-11T22:14:15.003Z pump-1 app - - - reading",
    )
    .await;
    let r = s.records(1).await;
    assert_eq!(r[0].labels.get("device_id"), Some("pump-1"));
    assert_eq!(r[0].message, "reading");
    // Another trust domain: disconnected before anything is read.
    send(
        ca.client("pump-2", Some("spiffe://other.test/device/pump-2"), &[0x52]),
        "<165>1 2003-10-11T22:14:15.003Z pump-2 app - - - nope",
    )
    .await;
    wait_for("the refusal to be counted", || {
        s.errors("wrong_trust_domain") == 1
    })
    .await;
    // A gateway's certificate binds the hostname label here: a record from
    // another host drops its batch, counted.
    send(
        ca.client("gw-1", Some("spiffe://iotel.test/gateway/gw-1"), &[0x53]),
        "<165>1 2003-10-11T22:14:15.003Z gw-9 app - - - spoofed",
    )
    .await;
    wait_for("the mismatch to be counted", || {
        s.errors("identity_mismatch") == 1
    })
    .await;
    send(
        ca.client("gw-1", Some("spiffe://iotel.test/gateway/gw-1"), &[0x53]),
        "<165>1 2003-10-11T22:14:15.003Z gw-1 app - - - honest",
    )
    .await;
    let r = s.records(1).await;
    assert_eq!(
        (r[0].message.as_str(), r[0].labels.get("hostname")),
        ("honest", Some("gw-1"))
    );
    s.stop().await;
}

#[test]
fn udp_has_no_tls_and_listeners_off_loopback_need_tls_or_plaintext() {
    let problems = |text: &str| -> Vec<(String, String)> {
        toml::from_str::<Config>(text)
            .unwrap()
            .validate()
            .into_iter()
            .map(|p| (p.key, p.message))
            .collect()
    };
    let plaintext = |addr: &str| {
        (
            "address".to_string(),
            format!(
                "listening in plaintext on {addr}: add a tls table, or set plaintext = true to \
                 accept unencrypted connections"
            ),
        )
    };
    assert_eq!(
        problems("address = \"udp://0.0.0.0:5514\""),
        [plaintext("0.0.0.0:5514")]
    );
    assert_eq!(
        problems("address = \"tcp://10.1.2.3:6514\""),
        [plaintext("10.1.2.3:6514")]
    );
    assert_eq!(
        problems("address = \"udp://0.0.0.0:5514\"\nplaintext = true"),
        []
    );
    assert_eq!(problems("address = \"tcp://127.0.0.1:5514\""), []);
    assert_eq!(
        problems(
            "address = \"udp://127.0.0.1:5514\"\n\
             tls = { cert_file = \"s.pem\", key_file = \"s.key\" }"
        ),
        [(
            "tls".to_string(),
            "syslog over UDP has no TLS: use a tcp:// address with tls".to_string()
        )]
    );
    assert_eq!(
        problems(
            "address = \"tcp://0.0.0.0:6514\"\n\
             tls = { cert_file = \"s.pem\", key_file = \"s.key\" }"
        ),
        []
    );
}
