//! OTLP over mutual TLS: HTTP and gRPC requests bound to the device in
//! the client certificate.
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

/// The source over mutual TLS, with `identity` (a TOML table, or empty for
/// none); `deny.txt` beside the config revokes serial 09.
async fn start(identity: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("device CA");
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    ca.server(&[0x51]).write(dir.path(), "server");
    std::fs::write(dir.path().join("deny.txt"), "# revoked\n09\n").unwrap();
    let (grpc, http) = (free_addr(), free_addr());
    let cfg: Config = toml::from_str(&format!(
        "grpc_address = \"{grpc}\"\nhttp_address = \"{http}\"\n\
         tls = {{ cert_file = \"server.pem\", key_file = \"server.key\", ca_file = \"ca.pem\" }}\n\
         {identity}"
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
    let r = start(TRUST_DOMAIN).await;
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
}

const TRUST_DOMAIN: &str = "identity = { trust_domain = \"iotel.test\", deny_list = \"deny.txt\" }";

/// A gRPC channel over TLS to `addr`, with `cert` as client certificate.
async fn grpc_channel(
    addr: SocketAddr,
    ca: &Ca,
    cert: Option<&crate::tls::test_pki::Issued>,
) -> tonic::transport::Channel {
    let mut config = (*client_config(&ca.pem, cert)).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    tonic::transport::Endpoint::from_static("http://localhost")
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
        .unwrap()
}

/// Exports `records` over gRPC as `cert`: OK, or the status code and
/// message.
async fn grpc_export(
    r: &Running,
    cert: &crate::tls::test_pki::Issued,
    records: Vec<LogRecord>,
) -> Result<(), (tonic::Code, String)> {
    use iotel_formats::otlp::proto::collector::logs::v1::logs_service_client::LogsServiceClient;
    let channel = grpc_channel(r.grpc, &r.ca, Some(cert)).await;
    let (request, _) = logs::export_request(records, 5);
    LogsServiceClient::new(channel)
        .export(request)
        .await
        .map(|_| ())
        .map_err(|s| (s.code(), s.message().to_string()))
}

#[tokio::test]
async fn otlp_grpc_records_get_the_certificates_device_id_and_a_spoofed_one_is_permission_denied() {
    let r = start(TRUST_DOMAIN).await;
    let dev =
        r.ca.client("dev-7", Some("spiffe://iotel.test/device/dev-7"), &[0x07]);
    grpc_export(&r, &dev, vec![record(None), record(Some("dev-7"))])
        .await
        .unwrap();
    assert_eq!(
        *r.received.lock().unwrap(),
        vec![
            Labels::from_pairs([("device_id", "dev-7")]),
            Labels::from_pairs([("device_id", "dev-7")])
        ]
    );

    // A record claiming another device: the whole request is refused.
    let spoofed = grpc_export(&r, &dev, vec![record(None), record(Some("dev-8"))]).await;
    assert_eq!(
        spoofed,
        Err((
            tonic::Code::PermissionDenied,
            "a record claims device_id \"dev-8\", but the client certificate is \"dev-7\"'s".into()
        ))
    );
    assert_eq!(r.metrics.errors("identity_mismatch").get(), 1);
    assert_eq!(r.received.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn otlp_grpc_refuses_a_revoked_serial_and_another_trust_domain_before_the_message() {
    let r = start(TRUST_DOMAIN).await;
    let revoked =
        r.ca.client("dev-9", Some("spiffe://iotel.test/device/dev-9"), &[0x09]);
    assert_eq!(
        grpc_export(&r, &revoked, vec![record(None)]).await,
        Err((
            tonic::Code::PermissionDenied,
            "device_id \"dev-9\" (certificate serial 09) is revoked: \"9\" in the deny list".into()
        ))
    );
    assert_eq!(r.metrics.errors("revoked").get(), 1);
    // The same certificate over HTTP: 403.
    let (body, _) = logs::encode([record(None)], 5);
    let (status, _) = connect_and_send(
        r.http,
        client_config(&r.ca.pem, Some(&revoked)),
        "/v1/logs",
        body,
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    assert_eq!(r.metrics.errors("revoked").get(), 2);

    let foreign =
        r.ca.client("dev-7", Some("spiffe://other.test/device/dev-7"), &[0x07]);
    assert_eq!(
        grpc_export(&r, &foreign, vec![record(None)]).await,
        Err((
            tonic::Code::PermissionDenied,
            "the certificate's SPIFFE id \"spiffe://other.test/device/dev-7\" is in trust \
             domain \"other.test\", expected \"iotel.test\""
                .into()
        ))
    );
    assert_eq!(r.metrics.errors("wrong_trust_domain").get(), 1);
    assert!(r.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn otlp_grpc_refuses_a_certificate_that_names_no_device() {
    let r = start("identity = {}").await;
    let nameless = r.ca.client("", None, &[0x0b]);
    assert_eq!(
        grpc_export(&r, &nameless, vec![record(None)]).await,
        Err((
            tonic::Code::PermissionDenied,
            "the certificate names no device: expected a SPIFFE id spiffe://TD/device/ID or a \
             subject CN"
                .into()
        ))
    );
    assert_eq!(r.metrics.errors("no_identity").get(), 1);
    assert!(r.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn otlp_grpc_is_served_over_tls_with_a_client_certificate() {
    use iotel_formats::otlp::proto::collector::logs::v1::logs_service_client::LogsServiceClient;
    let r = start("").await;
    let dev = r.ca.client("dev-7", None, &[0x07]);
    let addr = r.grpc;
    let channel = grpc_channel(addr, &r.ca, Some(&dev)).await;
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

#[cfg(feature = "auth")]
#[tokio::test]
async fn otlp_grpc_with_identity_and_auth_needs_both_and_stamps_tenant_and_device() {
    use crate::auth::test_keys::{auth_table, claims, ed25519, sign};
    use iotel_formats::otlp::proto::collector::logs::v1::logs_service_client::LogsServiceClient;
    let keys = tempfile::tempdir().unwrap();
    let key = ed25519("k1");
    let r = start(&format!(
        "{TRUST_DOMAIN}\n{}",
        auth_table(keys.path(), &[&key])
    ))
    .await;
    let dev =
        r.ca.client("dev-7", Some("spiffe://iotel.test/device/dev-7"), &[0x07]);
    let revoked =
        r.ca.client("dev-9", Some("spiffe://iotel.test/device/dev-9"), &[0x09]);
    let export = |cert, token: Option<String>| {
        let (ca, addr) = (&r.ca, r.grpc);
        async move {
            let channel = grpc_channel(addr, ca, Some(cert)).await;
            let (request, _) = logs::export_request([record(None)], 5);
            let mut request = tonic::Request::new(request);
            if let Some(t) = token {
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {t}").parse().unwrap());
            }
            LogsServiceClient::new(channel)
                .export(request)
                .await
                .map(|_| ())
                .map_err(|s| (s.code(), s.message().to_string()))
        }
    };
    let token = sign(&key, &claims());

    // The certificate alone is not enough, nor is a token with a revoked
    // certificate (the certificate is checked first).
    assert_eq!(
        export(&dev, None).await,
        Err((
            tonic::Code::Unauthenticated,
            "no bearer token (expected Authorization: Bearer <JWT>)".into()
        ))
    );
    assert_eq!(
        export(&revoked, Some(token.clone())).await.unwrap_err().0,
        tonic::Code::PermissionDenied
    );
    assert_eq!(r.metrics.errors("missing_token").get(), 1);
    assert_eq!(r.metrics.errors("revoked").get(), 1);

    export(&dev, Some(token)).await.unwrap();
    assert_eq!(
        *r.received.lock().unwrap(),
        vec![Labels::from_pairs([
            ("device_id", "dev-7"),
            ("tenant", "acme")
        ])]
    );
}
