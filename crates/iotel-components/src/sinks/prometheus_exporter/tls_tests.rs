//! The exporter's HTTPS endpoint against rustls clients, with and without
//! client certificates, and the plaintext opt-in.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::tls::test_pki::{Ca, client_config, connect_and_send};
use iotel_engine::{Batch, ComponentKey, Input, Shutdown};
use iotel_model::MetricType;
use tokio::sync::mpsc;

/// A CA, the server certificate (serial 0x5e) and `ca.pem` in `dir`.
fn pki(dir: &std::path::Path) -> Ca {
    let ca = Ca::new("scrape CA");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    ca.server(&[0x5e]).write(dir, "server");
    ca
}

struct Running {
    addr: SocketAddr,
    tx: mpsc::Sender<Batch>,
    cx: BuildContext,
}

/// An exporter built from `extra` (paths relative to `dir`) on a free
/// loopback port, holding one sample.
async fn start(dir: &std::path::Path, extra: &str) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg: Config = toml::from_str(&format!("address = \"{addr}\"\n{extra}")).unwrap();
    assert_eq!(cfg.validate(), vec![]);
    let mut cx = BuildContext::for_test("prom");
    cx.config_dir = dir.to_path_buf();
    let mut exporter = cfg.exporter();
    exporter.tls = cfg.listener_tls(&cx).unwrap();
    let (tx, rx) = mpsc::channel(8);
    let sink_cx = SinkContext {
        key: ComponentKey {
            id: "prom".into(),
            type_name: "prometheus_exporter".into(),
        },
        input: Input::new(rx, cx.metrics.clone()),
        shutdown: Shutdown::never(),
        metrics: cx.metrics.clone(),
        data_dir: std::env::temp_dir(),
    };
    tokio::spawn(exporter.serve(listener, sink_cx));
    let sample = Metric::new(
        "temp_celsius",
        MetricType::Gauge,
        Labels::from_pairs([("sensor", "s1")]),
        21.5,
        1_700_000_000_000,
    );
    tx.send(Events::Metrics(vec![sample]).into()).await.unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while cx.metrics.sent_total() < 1 {
        assert!(Instant::now() < deadline, "the sample was never stored");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Running { addr, tx, cx }
}

const EXPOSITION: &str = "# TYPE temp_celsius gauge\ntemp_celsius{sensor=\"s1\"} 21.5\n";

/// A GET of /metrics over TLS: status and body, or the failure.
async fn scrape_over_tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<(u16, String), String> {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::get("/metrics")
        .header(http::header::HOST, "localhost")
        .body(Body::new(bytes::Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| {
        use std::error::Error;
        format!("{e}: {:?}", e.source().map(ToString::to_string))
    })?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn with_a_ca_file_scrapers_need_a_client_certificate_from_that_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let sink = start(
        dir.path(),
        "tls = { cert_file = \"server.pem\", key_file = \"server.key\", ca_file = \"ca.pem\" }",
    )
    .await;

    let prometheus = ca.client("prometheus", None, &[0x07]);
    let got = scrape_over_tls(sink.addr, client_config(&ca.pem, Some(&prometheus))).await;
    assert_eq!(got, Ok((200, EXPOSITION.to_string())));

    // No certificate: refused in the handshake (TLS 1.3: the alert comes
    // with the first read), counted.
    let err = connect_and_send(sink.addr, client_config(&ca.pem, None), "/metrics", vec![])
        .await
        .unwrap_err();
    assert!(
        err.contains("received fatal alert: CertificateRequired"),
        "{err}"
    );
    // A certificate from another CA: refused too.
    let other = Ca::new("other CA").client("intruder", None, &[0x08]);
    let err = connect_and_send(
        sink.addr,
        client_config(&ca.pem, Some(&other)),
        "/metrics",
        vec![],
    )
    .await
    .unwrap_err();
    assert!(err.contains("received fatal alert: UnknownCA"), "{err}");
    let failed = sink.cx.metrics.errors("tls_handshake_failed");
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while failed.get() < 2 {
        assert!(Instant::now() < deadline, "failed handshakes not counted");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(failed.get(), 2);
    drop(sink.tx);
}

#[tokio::test]
async fn without_a_ca_file_any_client_scrapes_over_https_and_expiry_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let sink = start(
        dir.path(),
        "tls = { cert_file = \"server.pem\", key_file = \"server.key\" }",
    )
    .await;
    let got = scrape_over_tls(sink.addr, client_config(&ca.pem, None)).await;
    assert_eq!(got, Ok((200, EXPOSITION.to_string())));
    // Plain HTTP on the TLS port gets no exposition.
    let mut plain = tokio::net::TcpStream::connect(sink.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(!String::from_utf8_lossy(&answer).contains("temp_celsius"));

    // The test PKI's leaves end 2089-01-01T00:00:00Z.
    let not_after = 3_755_376_000_i64;
    let file = dir.path().join("server.pem").display().to_string();
    let expiry = sink
        .cx
        .metrics
        .registry()
        .snapshot()
        .into_iter()
        .find(|m| {
            &*m.name == "iotel_tls_cert_expiry_seconds" && m.labels.get("file") == Some(&*file)
        })
        .unwrap();
    assert_eq!(expiry.labels.get("component_id"), Some("prom"));
    let now = jiff::Timestamp::now().as_second();
    #[allow(clippy::cast_precision_loss)]
    let want = (not_after - now) as f64;
    assert!(
        (want - expiry.value).abs() < 30.0,
        "{} vs {want}",
        expiry.value
    );
    drop(sink.tx);
}

#[test]
fn a_plaintext_endpoint_on_another_address_than_loopback_needs_plaintext_true() {
    let problems = |text: &str| -> Vec<(String, String)> {
        toml::from_str::<Config>(text)
            .unwrap()
            .validate()
            .into_iter()
            .map(|p| (p.key, p.message))
            .collect()
    };
    assert_eq!(
        problems("address = \"0.0.0.0:9598\""),
        [(
            "address".to_string(),
            "listening in plaintext on 0.0.0.0:9598: add a tls table, or set plaintext = true \
             to accept unencrypted connections"
                .to_string()
        )]
    );
    assert_eq!(problems("address = \"0.0.0.0:9598\"\nplaintext = true"), []);
    assert_eq!(problems("address = \"[::1]:9598\""), []);
    assert_eq!(
        problems(
            "address = \"0.0.0.0:9598\"\nplaintext = true\n\
             tls = { cert_file = \"s.pem\", key_file = \"s.key\" }"
        ),
        [(
            "plaintext".to_string(),
            "expected either a tls table or plaintext = true, not both".to_string()
        )]
    );
}
