//! The sink over OTLP/gRPC against an in-process tonic server on a free
//! loopback port (`opentelemetry-proto`'s generated `TraceService`) that
//! records every request and answers from a script of statuses.

#![allow(clippy::unwrap_used)]

use super::grpc::{self, ProtoAny, ProtoDuration, RETRY_INFO_TYPE, RetryInfo, RpcStatus};
use super::*;
use crate::sinks::buffered::test_peer::{Logs, Running, eventually};
use iotel_formats::otlp::proto::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use iotel_formats::otlp::proto::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use iotel_formats::otlp::proto::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use iotel_formats::otlp::proto::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use iotel_formats::otlp::proto::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use iotel_formats::otlp::proto::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use iotel_formats::otlp::traces;
use iotel_model::{Events, Labels, Span, SpanStatus};
use prost::Message;
use serde_json::json;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tonic::Code;
use tonic::codec::CompressionEncoding;

type Answer = Result<ExportTraceServiceResponse, tonic::Status>;

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    request: ExportTraceServiceRequest,
    metadata: tonic::metadata::MetadataMap,
    at: Instant,
}

#[derive(Debug, Clone, Default)]
struct Server {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    /// What the metrics and logs services took, decoded.
    samples: Arc<Mutex<Vec<iotel_model::Metric>>>,
    records: Arc<Mutex<Vec<iotel_model::LogRecord>>>,
}

#[tonic::async_trait]
impl MetricsService for Server {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let d = iotel_formats::otlp::metrics::samples(request.into_inner());
        self.samples.lock().unwrap().extend(d.samples);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Server {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let records = iotel_formats::otlp::logs::records(request.into_inner());
        self.records.lock().unwrap().extend(records);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Server {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.seen.lock().unwrap().push(Seen {
            metadata: request.metadata().clone(),
            request: request.into_inner(),
            at: Instant::now(),
        });
        let next = self.script.lock().unwrap().pop_front();
        next.unwrap_or(Ok(ExportTraceServiceResponse::default()))
            .map(tonic::Response::new)
    }
}

impl Server {
    /// Serves on a free loopback port, answering from `script`, then OK.
    async fn start(script: Vec<Answer>) -> (Server, SocketAddr) {
        let server = Server {
            script: Arc::new(Mutex::new(script.into())),
            ..Server::default()
        };
        let incoming =
            tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = incoming.local_addr().unwrap();
        let svc =
            TraceServiceServer::new(server.clone()).accept_compressed(CompressionEncoding::Gzip);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .add_service(
                    MetricsServiceServer::new(server.clone())
                        .accept_compressed(CompressionEncoding::Gzip),
                )
                .add_service(
                    LogsServiceServer::new(server.clone())
                        .accept_compressed(CompressionEncoding::Gzip),
                )
                .serve_with_incoming(incoming),
        );
        (server, addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn start(addr: SocketAddr, extra: &str) -> Running {
    let config: Config = toml::from_str(&format!(
        "endpoint = \"http://{addr}\"\nprotocol = \"grpc\"\n{extra}"
    ))
    .unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    Running::start(Box::new(config.sink().unwrap()), "otel", "otlp")
}

fn span(i: u8) -> Span {
    Span {
        trace_id: [i + 1; 16],
        span_id: [i + 1; 8],
        parent_span_id: None,
        name: format!("publish {i}"),
        start_ns: 1_700_000_000_000_000_000,
        end_ns: 1_700_000_000_000_500_000,
        labels: Labels::from_pairs([("device_id", "d-7"), ("service.name", "meter")]),
        attributes: json!({"span.kind": "producer", "messaging.system": "mqtt"})
            .as_object()
            .unwrap()
            .clone(),
        status: SpanStatus::Error,
    }
}

fn spans(n: u8) -> Events {
    Events::Traces((0..n).map(span).collect())
}

/// A status with a `RetryInfo` of `delay` in its details.
fn with_retry_info(code: Code, delay: std::time::Duration) -> tonic::Status {
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(delay.as_secs()).unwrap(),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap(),
        }),
    };
    let details = RpcStatus {
        code: code as i32,
        message: "slow down".into(),
        details: vec![ProtoAny {
            type_url: RETRY_INFO_TYPE.into(),
            value: info.encode_to_vec(),
        }],
    };
    tonic::Status::with_details(code, "slow down", details.encode_to_vec().into())
}

const FAST_RETRY: &str = r#"batch = { max_events = 2, timeout = "1h" }
retry = { initial_backoff = "10ms", max_backoff = "5s" }"#;

#[test]
fn codes_are_retried_as_the_otlp_spec_says() {
    let retried = [
        Code::Cancelled,
        Code::DeadlineExceeded,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unavailable,
        Code::DataLoss,
    ];
    let all = [
        Code::Unknown,
        Code::InvalidArgument,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Unimplemented,
        Code::Internal,
        Code::Unauthenticated,
    ];
    for code in retried {
        assert_eq!(grpc::judge(code, &[]), (true, None), "{code:?}");
    }
    for code in all {
        assert_eq!(grpc::judge(code, &[]), (false, None), "{code:?}");
    }
    let delay = std::time::Duration::from_millis(1500);
    let s = with_retry_info(Code::ResourceExhausted, delay);
    assert_eq!(
        grpc::judge(Code::ResourceExhausted, s.details()),
        (true, Some(delay))
    );
    assert_eq!(grpc::retry_delay(b"\xff\xff not a status"), None);
}

#[tokio::test]
async fn spans_go_out_gzipped_with_the_configured_metadata_and_every_field() {
    let (server, addr) = Server::start(vec![]).await;
    let sink = start(addr, r#"headers = { authorization = "Bearer t0ken" }"#);
    sink.send(spans(2)).await;
    eventually("delivery", || sink.sent() == 2).await;
    let metrics = sink.close().await;
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let md = &seen[0].metadata;
    assert_eq!(md.get("authorization").unwrap(), "Bearer t0ken");
    assert_eq!(md.get("grpc-encoding").unwrap(), "gzip");
    assert!(
        md.get("user-agent")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(concat!("iotel/", env!("CARGO_PKG_VERSION"))),
        "{md:?}"
    );
    let d = traces::spans(seen[0].request.clone());
    assert_eq!(d.spans, [span(0), span(1)]);
    assert_eq!(metrics.sent_total(), 2);
}

#[tokio::test]
async fn metrics_and_logs_go_to_their_own_services() {
    let (server, addr) = Server::start(vec![]).await;
    let sink = start(addr, r#"batch = { timeout = "20ms" }"#);
    let sample = iotel_model::Metric::new(
        "requests_total",
        iotel_model::MetricType::Counter,
        Labels::from_pairs([("device_id", "d-7"), ("code", "200")]),
        12.0,
        1_700_000_000_000,
    );
    let mut record = iotel_model::LogRecord::new(1_700_000_000_000_000_000, "valve stuck");
    record.labels = Labels::from_pairs([("device_id", "d-7")]);
    sink.send(Events::Metrics(vec![sample.clone()])).await;
    sink.send(Events::Logs(vec![record.clone()])).await;
    eventually("delivery", || sink.sent() == 2).await;
    sink.close().await;
    assert_eq!(*server.samples.lock().unwrap(), [sample]);
    assert_eq!(*server.records.lock().unwrap(), [record]);
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn unavailable_is_retried_and_invalid_argument_is_not() {
    let (captured, _guard) = Logs::capture();
    let (server, addr) = Server::start(vec![
        Err(tonic::Status::unavailable("restarting")),
        Ok(ExportTraceServiceResponse::default()),
        Err(tonic::Status::invalid_argument("span name too long")),
    ])
    .await;
    let sink = start(addr, FAST_RETRY);
    sink.send(spans(2)).await;
    eventually("delivery after one failure", || sink.sent() == 2).await;
    sink.send(spans(2)).await;
    eventually("the rejection", || sink.discarded("rejected") == 2).await;
    let metrics = sink.close().await;
    assert_eq!(server.seen().len(), 3);
    assert_eq!(metrics.sent_total(), 2);
    assert_eq!(metrics.errors("grpc_unavailable").get(), 1);
    assert_eq!(metrics.errors("grpc_invalid_argument").get(), 1);
    assert_eq!(metrics.discards("rejected").get(), 2);
    let warned = captured.lines_with("WARN");
    assert_eq!(warned.len(), 2, "{warned:#?}");
    let want = "(gRPC UNAVAILABLE: \"restarting\"); retrying in";
    assert!(warned[0].contains(want), "{}\nwanted: {want}", warned[0]);
    let want = format!(
        "http://{addr}/ refused 2 events (gRPC INVALID_ARGUMENT: \"span name too long\"); \
         dropped them (counted as discarded, reason \"rejected\"), as sending them again would \
         not help"
    );
    assert!(warned[1].contains(&want), "{}\nwanted: {want}", warned[1]);
}

#[tokio::test]
async fn resource_exhausted_is_retried_after_its_retry_info_and_rejected_without_one() {
    let delay = std::time::Duration::from_millis(400);
    let (server, addr) = Server::start(vec![
        Err(with_retry_info(Code::ResourceExhausted, delay)),
        Ok(ExportTraceServiceResponse::default()),
        Err(tonic::Status::resource_exhausted("quota")),
    ])
    .await;
    let sink = start(addr, FAST_RETRY);
    sink.send(spans(2)).await;
    eventually("delivery after the RetryInfo delay", || sink.sent() == 2).await;
    sink.send(spans(2)).await;
    eventually("the rejection", || sink.discarded("rejected") == 2).await;
    let metrics = sink.close().await;
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= delay,
        "retried after {waited:?}, before {delay:?}"
    );
    assert_eq!(seen[0].request, seen[1].request);
    assert_eq!(metrics.sent_total(), 2);
    assert_eq!(metrics.errors("grpc_resource_exhausted").get(), 2);
    assert_eq!(metrics.discards("rejected").get(), 2);
}

#[tokio::test]
async fn a_partial_success_over_grpc_counts_the_rejected_spans_and_logs_the_message() {
    let (captured, _guard) = Logs::capture();
    let (server, addr) = Server::start(vec![Ok(ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 1,
            error_message: "1 span is older than 7d".into(),
        }),
    })])
    .await;
    let sink = start(addr, FAST_RETRY);
    sink.send(spans(2)).await;
    eventually("the answer", || sink.sent() == 1).await;
    let metrics = sink.close().await;
    assert_eq!(server.seen().len(), 1);
    assert_eq!(metrics.discards("rejected").get(), 1);
    assert_eq!(metrics.errors("partial_success").get(), 1);
    let warned = captured.lines_with("WARN");
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(
        warned[0].contains("took 1 of 2 events and rejected 1 (counted as discarded, reason \"rejected\"): \"1 span is older than 7d\""),
        "{}",
        warned[0]
    );
}

#[tokio::test]
async fn a_peer_that_is_not_there_is_unavailable_and_retried() {
    // A port nobody listens on: bound, then closed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (captured, _guard) = Logs::capture();
    let sink = start(addr, FAST_RETRY);
    sink.send(spans(2)).await;
    eventually("two failed attempts", || {
        sink.errors("grpc_unavailable") >= 2
    })
    .await;
    assert_eq!(sink.sent(), 0);
    assert_eq!(sink.discarded("rejected"), 0);
    let warned = captured.lines_with("WARN");
    let want = format!("sending 2 events to http://{addr}/ failed (gRPC UNAVAILABLE");
    assert!(warned[0].contains(&want), "{}\nwanted: {want}", warned[0]);
}

/// A connection to the TLS server, for tonic.
#[cfg(feature = "tls")]
struct TlsIo(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

#[cfg(feature = "tls")]
impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

#[cfg(feature = "tls")]
impl tokio::io::AsyncRead for TlsIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

#[cfg(feature = "tls")]
impl tokio::io::AsyncWrite for TlsIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn spans_go_over_mutual_tls_with_alpn_h2_and_the_server_sees_the_client_cn() {
    use crate::tls::client_test_peer::{TestCa, identity, server_config};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("collector CA");
    ca.write(dir.path(), "ca.pem");
    ca.client("gw-1", 7).write(dir.path(), "gw-1");
    let mut config =
        (*server_config(&ca.server(&["collector.local"], false), Some(&ca.pem))).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clients = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn({
        let clients = clients.clone();
        async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let conn = tls.get_ref().1;
                let cert = conn.peer_certificates().unwrap()[0].clone();
                clients
                    .lock()
                    .unwrap()
                    .push((identity(&cert), conn.alpn_protocol().map(|p| p.to_vec())));
                if tx.send(Ok::<_, std::io::Error>(TlsIo(tls))).await.is_err() {
                    return;
                }
            }
        }
    });
    let server = Server::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                TraceServiceServer::new(server.clone())
                    .accept_compressed(CompressionEncoding::Gzip),
            )
            .serve_with_incoming(tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(
                rx,
            )),
    );
    let config: Config = toml::from_str(&format!(
        "endpoint = \"https://{addr}\"\nprotocol = \"grpc\"\n\
         tls = {{ ca_file = \"ca.pem\", cert_file = \"gw-1.pem\", key_file = \"gw-1.key\", \
         server_name = \"collector.local\" }}"
    ))
    .unwrap();
    assert_eq!(config.validate(), vec![]);
    let mut cx = BuildContext::for_test("otel");
    cx.config_dir = dir.path().to_path_buf();
    let sink = Running::start(config.build(&cx).unwrap(), "otel", "otlp");
    sink.send(spans(2)).await;
    eventually("delivery", || sink.sent() == 2).await;
    sink.close().await;
    assert_eq!(server.seen()[0].request.resource_spans.len(), 1);
    assert_eq!(
        clients.lock().unwrap().clone(),
        [(
            (Some("gw-1".to_string()), Some("07".to_string())),
            Some(b"h2".to_vec())
        )]
    );
}
