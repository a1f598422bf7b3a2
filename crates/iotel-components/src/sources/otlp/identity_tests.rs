//! OTLP/HTTP over mutual TLS: requests bound to the device in the client
//! certificate; OTLP/gRPC off.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::tls::test_pki::{Ca, client_config, connect_and_send};
use iotel_engine::shutdown::{self, ShutdownTrigger};
use iotel_engine::{ComponentKey, ComponentMetrics, Output, SourceContext, TestReceiver};
use iotel_formats::otlp::logs;
use iotel_model::{Events, Labels, LogRecord};
use std::sync::{Arc, Mutex};

struct Running {
    http: SocketAddr,
    grpc: SocketAddr,
    received: Arc<Mutex<Vec<Labels>>>,
    metrics: ComponentMetrics,
    ca: Ca,
    _trigger: ShutdownTrigger,
    _dir: tempfile::TempDir,
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn start(identity: bool) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("device CA");
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    ca.server(&[0x51]).write(dir.path(), "server");
    let (grpc, http) = (free_addr(), free_addr());
    let cfg: Config = toml::from_str(&format!(
        "grpc_address = \"{grpc}\"\nhttp_address = \"{http}\"\n\
         tls = {{ cert_file = \"server.pem\", key_file = \"server.key\", ca_file = \"ca.pem\" }}\n\
         {}",
        if identity {
            "identity = { trust_domain = \"iotel.test\" }"
        } else {
            ""
        }
    ))
    .unwrap();
    assert!(cfg.validate().is_empty());
    let (out, rx) = Output::for_test(16);
    let metrics = ComponentMetrics::detached("in", "otlp");
    let mut bcx = BuildContext::for_test("in");
    bcx.config_dir = dir.path().to_path_buf();
    bcx.metrics = metrics.clone();
    let (trigger, shutdown) = shutdown::channel();
    let cx = SourceContext {
        key: ComponentKey {
            id: "in".into(),
            type_name: "otlp".into(),
        },
        out,
        shutdown,
        metrics: metrics.clone(),
        data_dir: dir.path().to_path_buf(),
    };
    tokio::spawn(cfg.build(&bcx).unwrap().run(cx));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while tokio::net::TcpStream::connect(http).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "not listening");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let received = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(drain(rx, received.clone()));
    Running {
        http,
        grpc,
        received,
        metrics,
        ca,
        _trigger: trigger,
        _dir: dir,
    }
}

async fn drain(mut rx: TestReceiver, into: Arc<Mutex<Vec<Labels>>>) {
    while let Some(events) = rx.recv().await {
        if let Events::Logs(v) = events {
            into.lock().unwrap().extend(v.into_iter().map(|r| r.labels));
        }
    }
}

fn record(device: Option<&str>) -> LogRecord {
    let mut r = LogRecord::new(1_700_000_000_000_000_000, "overheat");
    if let Some(d) = device {
        r.labels = Labels::from_pairs([("device_id", d)]);
    }
    r
}

#[tokio::test]
async fn otlp_http_records_get_the_certificates_device_id_and_a_spoofed_one_is_refused() {
    let r = start(true).await;
    let dev =
        r.ca.client("dev-7", Some("spiffe://iotel.test/device/dev-7"), &[0x07]);
    let client = client_config(&r.ca.pem, Some(&dev));
    let (body, _) = logs::encode([record(None)], 5);
    let (status, _) = connect_and_send(r.http, client.clone(), "/v1/logs", body)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        *r.received.lock().unwrap(),
        vec![Labels::from_pairs([("device_id", "dev-7")])]
    );

    let (body, _) = logs::encode([record(Some("dev-7")), record(Some("dev-8"))], 5);
    let (status, _) = connect_and_send(r.http, client, "/v1/logs", body)
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert_eq!(r.metrics.errors("identity_mismatch").get(), 1);
    assert_eq!(r.received.lock().unwrap().len(), 1);
    // Nothing bypasses the binding over gRPC.
    assert!(tokio::net::TcpStream::connect(r.grpc).await.is_err());
}

#[tokio::test]
async fn otlp_grpc_is_served_over_tls_with_a_client_certificate() {
    use iotel_formats::otlp::proto::collector::logs::v1::logs_service_client::LogsServiceClient;
    let r = start(false).await;
    let dev = r.ca.client("dev-7", None, &[0x07]);
    let mut config = (*client_config(&r.ca.pem, Some(&dev))).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = r.grpc;
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: ::http::Uri| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .unwrap();
    let (request, _) = logs::export_request([record(Some("dev-7"))], 5);
    LogsServiceClient::new(channel)
        .export(request.clone())
        .await
        .unwrap();
    assert_eq!(
        *r.received.lock().unwrap(),
        vec![Labels::from_pairs([("device_id", "dev-7")])]
    );
    // Plain gRPC gets no answer from a TLS port.
    let plain = LogsServiceClient::connect(format!("http://{addr}")).await;
    let failed = match plain {
        Err(_) => true,
        Ok(mut c) => c.export(request).await.is_err(),
    };
    assert!(failed);
    wait_for_failures(&r.metrics, 1).await;
}

async fn wait_for_failures(metrics: &ComponentMetrics, n: u64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while metrics.errors("tls_handshake_failed").get() < n {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
