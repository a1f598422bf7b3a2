#![allow(clippy::unwrap_used)]

use super::*;
use crate::http_util;
use http_body_util::BodyExt;
use iotel_engine::shutdown::{self, ShutdownTrigger};
use iotel_engine::{
    ComponentError, ComponentKey, ComponentMetrics, Output, SourceContext, TestReceiver,
};
use iotel_formats::otlp::proto::collector::logs::v1::ExportLogsServiceResponse;
use iotel_formats::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use iotel_formats::otlp::proto::collector::trace::v1::ExportTraceServiceResponse;
use iotel_formats::otlp::proto::common::v1::{AnyValue, KeyValue, any_value::Value as Av};
use iotel_formats::otlp::proto::metrics::v1::{
    Gauge, Metric as OtlpMetric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data,
    number_data_point,
};
use iotel_formats::otlp::{RpcStatus, logs, traces};
use iotel_model::{Events, Labels, LogRecord, MetricType, Severity, Span, SpanStatus};
use prost::Message;
use serde_json::json;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

pub(super) struct Running {
    pub(super) grpc: SocketAddr,
    pub(super) http: SocketAddr,
    pub(super) rx: TestReceiver,
    pub(super) metrics: ComponentMetrics,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), ComponentError>>,
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub(super) async fn start(extra: &str) -> Running {
    let (grpc, http) = (free_addr(), free_addr());
    let cfg: Config = toml::from_str(&format!(
        "grpc_address = \"{grpc}\"\nhttp_address = \"{http}\"\n{extra}"
    ))
    .unwrap();
    assert!(cfg.validate().is_empty());
    let (out, rx) = Output::for_test(16);
    let metrics = ComponentMetrics::detached("in", "otlp");
    let (trigger, shutdown) = shutdown::channel();
    let dir = std::env::temp_dir();
    let cx = SourceContext {
        key: ComponentKey {
            id: "in".into(),
            type_name: "otlp".into(),
        },
        out,
        shutdown,
        metrics: metrics.clone(),
        data_dir: dir,
    };
    let task = tokio::spawn(cfg.build(&BuildContext::for_test("in")).unwrap().run(cx));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(http).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "not listening");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while tokio::net::TcpStream::connect(grpc).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "not listening");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Running {
        grpc,
        http,
        rx,
        metrics,
        trigger,
        task,
    }
}

impl Running {
    pub(super) async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

pub(super) struct Answered {
    pub(super) status: u16,
    pub(super) content_type: String,
    pub(super) body: Vec<u8>,
    #[cfg_attr(not(feature = "auth"), allow(dead_code))]
    pub(super) www_authenticate: Option<String>,
}

impl Answered {
    fn rpc_status(&self) -> RpcStatus {
        assert_eq!(self.content_type, "application/x-protobuf");
        RpcStatus::decode(&self.body[..]).unwrap()
    }
}

pub(super) async fn post(
    addr: SocketAddr,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Answered {
    let mut r = ::http::Request::new(http_util::Body::new(body.into()));
    *r.method_mut() = ::http::Method::POST;
    *r.uri_mut() = format!("http://{addr}{path}").parse().unwrap();
    for (k, v) in headers {
        r.headers_mut().insert(
            ::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let resp = http_util::client().request(r).await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(::http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let www_authenticate = resp
        .headers()
        .get(::http::header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Answered {
        status,
        content_type,
        body,
        www_authenticate,
    }
}

pub(super) const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");
pub(super) const JSON: (&str, &str) = ("content-type", "application/json");

/// Posts a request that must be accepted; returns the answer and what
/// went downstream.
async fn accepted(
    r: &mut Running,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (Answered, Events) {
    let (answered, events) = tokio::join!(post(r.http, path, body, headers), r.rx.recv());
    assert_eq!(
        answered.status,
        200,
        "{}",
        String::from_utf8_lossy(&answered.body)
    );
    (answered, events.unwrap())
}

fn span() -> Span {
    Span {
        trace_id: [0x4b; 16],
        span_id: [7; 8],
        parent_span_id: Some([9; 8]),
        name: "GET /pump".into(),
        start_ns: 1_700_000_000_000_000_000,
        end_ns: 1_700_000_000_000_500_000,
        labels: Labels::from_pairs([("service.name", "pump")]),
        attributes: json!({"http.status": 200, "span.kind": "server"})
            .as_object()
            .unwrap()
            .clone(),
        status: SpanStatus::Ok,
    }
}

fn gauge_request() -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(iotel_formats::otlp::proto::resource::v1::Resource {
                attributes: vec![KeyValue {
                    key: "device_id".into(),
                    value: Some(AnyValue {
                        value: Some(Av::StringValue("d1".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![OtlpMetric {
                    name: "temp".into(),
                    description: "Temperature".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 1_700_000_000_123_000_000,
                            value: Some(number_data_point::Value::AsDouble(21.5)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn log_record() -> LogRecord {
    let mut r = LogRecord::new(1_700_000_000_000_000_000, "overheat");
    r.labels = Labels::from_pairs([("device_id", "d1")]);
    r.severity = Some(Severity::Error);
    r.fields = json!({"temp": 91.5}).as_object().unwrap().clone();
    r
}

fn check_gauge(events: Events) {
    let Events::Metrics(m) = events else {
        panic!("not metrics")
    };
    assert_eq!(m.len(), 1);
    assert_eq!(&*m[0].name, "temp");
    assert_eq!(m[0].labels, Labels::from_pairs([("device_id", "d1")]));
    assert_eq!(m[0].value, 21.5);
    assert_eq!(m[0].timestamp_ms, 1_700_000_000_123);
    assert_eq!(m[0].meta.kind, MetricType::Gauge);
    assert_eq!(m[0].meta.help.as_deref(), Some("Temperature"));
}

#[tokio::test]
async fn http_protobuf_requests_of_each_signal_become_exact_events() {
    let mut r = start("").await;
    let body = traces::export_request([span()]).encode_to_vec();
    let (a, events) = accepted(&mut r, "/v1/traces", body, &[PROTOBUF]).await;
    assert_eq!(events, Events::Traces(vec![span()]));
    assert_eq!(a.content_type, "application/x-protobuf");
    let resp = ExportTraceServiceResponse::decode(&a.body[..]).unwrap();
    assert_eq!(resp.partial_success, None);

    let body = gauge_request().encode_to_vec();
    let (_, events) = accepted(&mut r, "/v1/metrics", body, &[PROTOBUF]).await;
    check_gauge(events);

    let (body, _) = logs::encode([log_record()], 5);
    let (a, events) = accepted(&mut r, "/v1/logs", body, &[PROTOBUF]).await;
    assert_eq!(events, Events::Logs(vec![log_record()]));
    assert_eq!(
        ExportLogsServiceResponse::decode(&a.body[..]).unwrap(),
        ExportLogsServiceResponse::default()
    );
    assert_eq!(
        r.metrics.sent_total(),
        0,
        "Output::for_test counts on its own"
    );
    r.stop().await;
}

#[tokio::test]
async fn http_json_requests_of_each_signal_become_exact_events() {
    let mut r = start("").await;
    let body = serde_json::to_vec(&traces::export_request([span()])).unwrap();
    // Hex ids as the OTLP/JSON spec writes them.
    assert!(String::from_utf8_lossy(&body).contains("\"traceId\":\"4b4b4b4b"));
    let (a, events) = accepted(&mut r, "/v1/traces", body, &[JSON]).await;
    assert_eq!(events, Events::Traces(vec![span()]));
    assert_eq!(a.content_type, "application/json");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&a.body).unwrap(),
        json!({})
    );

    let body = serde_json::to_vec(&gauge_request()).unwrap();
    let (_, events) = accepted(&mut r, "/v1/metrics", body, &[JSON]).await;
    check_gauge(events);

    let (request, _) = logs::export_request([log_record()], 5);
    let body = serde_json::to_vec(&request).unwrap();
    let (_, events) = accepted(
        &mut r,
        "/v1/logs",
        body,
        &[("content-type", "application/json; charset=utf-8")],
    )
    .await;
    assert_eq!(events, Events::Logs(vec![log_record()]));
    r.stop().await;
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[tokio::test]
async fn gzip_bodies_are_inflated() {
    let mut r = start("").await;
    let body = gzip(&traces::export_request([span()]).encode_to_vec());
    let (_, events) = accepted(
        &mut r,
        "/v1/traces",
        body,
        &[PROTOBUF, ("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(events, Events::Traces(vec![span()]));
    r.stop().await;
}

#[tokio::test]
async fn oversize_bodies_and_gzip_bombs_are_refused_counted_and_the_rest_flows() {
    let mut r = start("max_body_size = \"2KiB\"\nmax_decoded_size = \"4KiB\"").await;
    let a = post(r.http, "/v1/traces", vec![0; 3000], &[PROTOBUF]).await;
    assert_eq!(a.status, 413);
    let s = a.rpc_status();
    assert_eq!(s.code, 8);
    assert!(
        s.message.contains("over max_body_size (2048 bytes)"),
        "{}",
        s.message
    );
    assert_eq!(r.metrics.errors("too_large").get(), 1);

    // 1 MiB of zeros gzips to about 1 KiB, under max_body_size; cut off
    // at 4 KiB.
    let bomb = gzip(&vec![0; 1 << 20]);
    assert!(bomb.len() <= 2048, "{}", bomb.len());
    let a = post(
        r.http,
        "/v1/traces",
        bomb,
        &[PROTOBUF, ("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(a.status, 413);
    assert!(
        a.rpc_status()
            .message
            .contains("inflates past max_decoded_size (4096 bytes)")
    );
    assert_eq!(r.metrics.errors("decoded_too_large").get(), 1);

    let body = traces::export_request([span()]).encode_to_vec();
    let (_, events) = accepted(&mut r, "/v1/traces", body, &[PROTOBUF]).await;
    assert_eq!(events.len(), 1);
    r.stop().await;
}

#[tokio::test]
async fn bad_payloads_and_unknown_content_types_are_refused_with_the_reason() {
    let r = start("").await;
    let a = post(r.http, "/v1/metrics", vec![0xff, 0xff, 0xff], &[PROTOBUF]).await;
    assert_eq!(a.status, 400);
    let s = a.rpc_status();
    assert_eq!(s.code, 3);
    assert!(
        s.message
            .starts_with("not a valid ExportMetricsServiceRequest: "),
        "{}",
        s.message
    );

    let a = post(
        r.http,
        "/v1/logs",
        b"{\"resourceLogs\": 5}".to_vec(),
        &[JSON],
    )
    .await;
    assert_eq!(a.status, 400);
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["code"], 3);
    assert!(
        v["message"].as_str().unwrap().contains("line 1 column"),
        "{v}"
    );

    let a = post(
        r.http,
        "/v1/logs",
        b"x".to_vec(),
        &[("content-type", "text/plain")],
    )
    .await;
    assert_eq!(a.status, 415);
    assert!(
        a.rpc_status()
            .message
            .contains("expected application/x-protobuf or application/json")
    );

    let a = post(
        r.http,
        "/v1/logs",
        b"x".to_vec(),
        &[PROTOBUF, ("content-encoding", "br")],
    )
    .await;
    assert_eq!(a.status, 415);
    let a = post(
        r.http,
        "/v1/logs",
        b"x".to_vec(),
        &[PROTOBUF, ("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(r.metrics.errors("bad_payload").get(), 2);
    assert_eq!(r.metrics.errors("unsupported_content_type").get(), 1);
    assert_eq!(r.metrics.errors("bad_gzip").get(), 1);
    r.stop().await;
}

#[tokio::test]
async fn rejected_spans_are_reported_as_a_partial_success_and_counted() {
    let mut r = start("").await;
    let mut request = traces::export_request([span()]);
    let mut bad = request.resource_spans[0].scope_spans[0].spans[0].clone();
    bad.trace_id = vec![0; 16];
    request.resource_spans[0].scope_spans[0].spans.push(bad);
    let (a, events) = accepted(&mut r, "/v1/traces", request.encode_to_vec(), &[PROTOBUF]).await;
    assert_eq!(events, Events::Traces(vec![span()]));
    let p = ExportTraceServiceResponse::decode(&a.body[..])
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(p.rejected_spans, 1);
    assert!(
        p.error_message.contains("1 invalid_trace_id"),
        "{}",
        p.error_message
    );
    assert_eq!(r.metrics.discards("invalid_trace_id").get(), 1);
    r.stop().await;
}

#[tokio::test]
async fn events_a_sink_could_not_store_are_answered_503_to_retry() {
    let mut r = start("").await;
    let body = traces::export_request([span()]).encode_to_vec();
    let (a, batch) = tokio::join!(post(r.http, "/v1/traces", body, &[PROTOBUF]), async {
        // Dropped without being marked done: not stored.
        drop(r.rx.recv_batch().await.unwrap());
    });
    let () = batch;
    assert_eq!(a.status, 503);
    assert_eq!(a.rpc_status().code, 14);
    assert_eq!(r.metrics.errors("not_stored").get(), 1);
    r.stop().await;
}

#[tokio::test]
async fn grpc_requests_of_each_signal_become_exact_events_and_bad_ones_get_their_code() {
    use iotel_formats::otlp::proto::collector::logs::v1::logs_service_client::LogsServiceClient;
    use iotel_formats::otlp::proto::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    use iotel_formats::otlp::proto::collector::trace::v1::trace_service_client::TraceServiceClient;
    let mut r = start("max_decoded_size = \"4KiB\"").await;
    let url = format!("http://{}", r.grpc);
    let mut traces_client = TraceServiceClient::connect(url.clone())
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let request = traces::export_request([span()]);
    let (answer, events) = tokio::join!(traces_client.export(request), r.rx.recv());
    assert_eq!(answer.unwrap().into_inner().partial_success, None);
    assert_eq!(events.unwrap(), Events::Traces(vec![span()]));

    let mut metrics_client = MetricsServiceClient::connect(url.clone()).await.unwrap();
    let (answer, events) = tokio::join!(metrics_client.export(gauge_request()), r.rx.recv());
    answer.unwrap();
    check_gauge(events.unwrap());

    let mut logs_client = LogsServiceClient::connect(url).await.unwrap();
    let (request, _) = logs::export_request([log_record()], 5);
    let (answer, events) = tokio::join!(logs_client.export(request), r.rx.recv());
    answer.unwrap();
    assert_eq!(events.unwrap(), Events::Logs(vec![log_record()]));

    // Over max_decoded_size as sent: RESOURCE_EXHAUSTED without retry
    // info, which OTLP exporters do not retry (tonic alone would say
    // OUT_OF_RANGE, which they would).
    let mut big = log_record();
    big.message = "x".repeat(8192);
    let (request, _) = logs::export_request([big.clone()], 5);
    let e = logs_client.export(request).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
    assert_eq!(
        e.message(),
        "the message is larger than max_decoded_size (4096 bytes)"
    );
    assert!(e.details().is_empty());
    assert_eq!(r.metrics.errors("too_large").get(), 1);

    // Under it as sent, over it once inflated: the gzip bomb guard.
    big.message = "x".repeat(1 << 20);
    let (request, _) = logs::export_request([big], 5);
    let mut gzip_logs = logs_client
        .clone()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let e = gzip_logs.export(request).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
    assert_eq!(
        e.message(),
        "the message inflates past max_decoded_size (4096 bytes)"
    );
    assert_eq!(r.metrics.errors("decoded_too_large").get(), 1);

    // A span with an invalid id: a partial success.
    let mut request = traces::export_request([span()]);
    request.resource_spans[0].scope_spans[0].spans[0].span_id = vec![1, 2];
    let p = traces_client
        .export(request)
        .await
        .unwrap()
        .into_inner()
        .partial_success
        .unwrap();
    assert_eq!(p.rejected_spans, 1);
    assert_eq!(r.metrics.discards("invalid_span_id").get(), 1);

    // Not stored downstream: UNAVAILABLE (retryable).
    let (answer, ()) = tokio::join!(
        traces_client.export(traces::export_request([span()])),
        async {
            drop(r.rx.recv_batch().await.unwrap());
        }
    );
    assert_eq!(answer.unwrap_err().code(), tonic::Code::Unavailable);
    r.stop().await;
}

/// Sends one gRPC message frame as it is (`flag` 1: compressed, with
/// `grpc-encoding: gzip`) and returns the status code and message.
async fn raw_grpc(addr: SocketAddr, path: &str, flag: u8, message: &[u8]) -> (i32, String) {
    use tower::ServiceExt;
    let mut frame = vec![flag];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = ::http::Request::new(tonic::body::Body::new(http_body_util::Full::new(
        bytes::Bytes::from(frame),
    )));
    *request.method_mut() = ::http::Method::POST;
    *request.uri_mut() = format!("http://{addr}{path}").parse().unwrap();
    let headers = request.headers_mut();
    headers.insert("content-type", "application/grpc".parse().unwrap());
    headers.insert("te", "trailers".parse().unwrap());
    if flag == 1 {
        headers.insert("grpc-encoding", "gzip".parse().unwrap());
    }
    let response = channel.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let trailers = body.collect().await.unwrap().trailers().cloned();
    let all = trailers.unwrap_or(parts.headers);
    let code = all["grpc-status"].to_str().unwrap().parse().unwrap();
    let message = all
        .get("grpc-message")
        .map(|m| percent_decode(m.to_str().unwrap()))
        .unwrap_or_default();
    (code, message)
}

/// `grpc-message` is percent-encoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn grpc_messages_that_do_not_decode_are_invalid_argument_counted_and_the_rest_flows() {
    let mut r = start("").await;
    let path = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    let (code, message) = raw_grpc(r.grpc, path, 0, &[0xff, 0xff, 0xff]).await;
    assert_eq!(code, 3, "{message}");
    assert!(
        message.starts_with("not a valid OTLP protobuf message: failed to decode Protobuf message"),
        "{message}"
    );
    assert_eq!(r.metrics.errors("bad_payload").get(), 1);

    let (code, message) = raw_grpc(r.grpc, path, 1, b"not gzip").await;
    assert_eq!(code, 3, "{message}");
    assert!(
        message.starts_with("grpc-encoding gzip, but the message does not inflate"),
        "{message}"
    );
    assert_eq!(r.metrics.errors("bad_gzip").get(), 1);

    let (code, message) = raw_grpc(r.grpc, path, 7, b"").await;
    assert_eq!(code, 3, "{message}");
    assert!(
        message.starts_with("not a valid gRPC message: protocol error"),
        "{message}"
    );
    assert_eq!(r.metrics.errors("bad_frame").get(), 1);

    let body = traces::export_request([span()]).encode_to_vec();
    let ((code, message), events) = tokio::join!(raw_grpc(r.grpc, path, 0, &body), r.rx.recv());
    assert_eq!(code, 0, "{message}");
    assert_eq!(events.unwrap(), Events::Traces(vec![span()]));
    r.stop().await;
}

#[tokio::test]
async fn span_events_links_and_exemplars_are_counted_as_not_mapped() {
    use iotel_formats::otlp::proto::trace::v1::span::{Event, Link};
    let mut r = start("").await;
    let mut request = traces::export_request([span()]);
    let s = &mut request.resource_spans[0].scope_spans[0].spans[0];
    s.events = vec![Event::default(), Event::default()];
    s.links = vec![Link::default()];
    let (_, events) = accepted(&mut r, "/v1/traces", request.encode_to_vec(), &[PROTOBUF]).await;
    assert_eq!(events, Events::Traces(vec![span()]));

    let mut request = gauge_request();
    let Some(Data::Gauge(g)) = &mut request.resource_metrics[0].scope_metrics[0].metrics[0].data
    else {
        panic!("a gauge")
    };
    g.data_points[0].exemplars = vec![Default::default(); 3];
    let (_, events) = accepted(&mut r, "/v1/metrics", request.encode_to_vec(), &[PROTOBUF]).await;
    check_gauge(events);

    let not_mapped = |part: &str| {
        r.metrics
            .registry()
            .counter(
                "iotel_otlp_not_mapped_total",
                "",
                &[("component_id", "in"), ("part", part)],
            )
            .get()
    };
    assert_eq!(not_mapped("span_event"), 2);
    assert_eq!(not_mapped("span_link"), 1);
    assert_eq!(not_mapped("exemplar"), 3);
    r.stop().await;
}
