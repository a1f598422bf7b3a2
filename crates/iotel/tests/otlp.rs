//! OTLP end to end: an OpenTelemetry SDK client (`opentelemetry_sdk` with
//! `opentelemetry-otlp`'s gRPC exporters) sends spans and metrics to a real
//! `iotel` process (`otlp` source → `otlp` sink), which forwards them to an
//! OTLP receiver in the test (`opentelemetry-proto`'s generated tonic
//! `TraceService` and `MetricsService`, recording every request). The
//! receiver checks every field the SDK set that iotel's model carries.

#![allow(clippy::unwrap_used)]

mod util;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue as OtlpKeyValue, any_value::Value as Av,
};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, HistogramDataPoint, NumberDataPoint, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{Span as OtlpSpan, span, status};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use util::{Iotel, free_port, wait_for};

/// Records every request it takes.
#[derive(Debug, Clone, Default)]
struct Receiver {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.metrics.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.traces.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    fn start(rt: &tokio::runtime::Runtime) -> (Receiver, SocketAddr) {
        let receiver = Receiver::default();
        let _guard = rt.enter();
        let incoming =
            tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = incoming.local_addr().unwrap();
        let svc = TraceServiceServer::new(receiver.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        let metrics = MetricsServiceServer::new(receiver.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        rt.spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .add_service(metrics)
                .serve_with_incoming(incoming),
        );
        (receiver, addr)
    }

    /// Every span received, with its resource's attributes and its scope's
    /// name and version.
    fn spans(&self) -> Vec<(Vec<OtlpKeyValue>, (String, String), OtlpSpan)> {
        let mut out = Vec::new();
        for req in self.traces.lock().unwrap().iter() {
            for rs in &req.resource_spans {
                let resource = rs.resource.clone().unwrap_or_default().attributes;
                for ss in &rs.scope_spans {
                    let scope = ss.scope.clone().unwrap_or_default();
                    for s in &ss.spans {
                        out.push((
                            resource.clone(),
                            (scope.name.clone(), scope.version.clone()),
                            s.clone(),
                        ));
                    }
                }
            }
        }
        out
    }
}

fn config(grpc: u16, http: u16, receiver: SocketAddr) -> String {
    format!(
        r#"
[api]
address = "{{API}}"

[sources.otel]
type = "otlp"
grpc_address = "127.0.0.1:{grpc}"
http_address = "127.0.0.1:{http}"

[sinks.backend]
type = "otlp"
inputs = ["otel"]
protocol = "grpc"
endpoint = "http://{receiver}"
batch = {{ timeout = "50ms" }}
"#
    )
}

/// What the client sent: the two spans' contexts and times.
struct Sent {
    parent: SpanContext,
    child: SpanContext,
    t0: SystemTime,
}

/// Sends a server span and its client child through the SDK to
/// `endpoint`, and flushes. The SDK's simple processor blocks on each
/// export, so it runs on a thread of its own inside the runtime.
fn send_spans(endpoint: String, rt: &tokio::runtime::Runtime) -> Sent {
    let handle = rt.handle().clone();
    std::thread::spawn(move || {
        let _guard = handle.enter();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .unwrap();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder_empty()
                    .with_attributes([
                        KeyValue::new("service.name", "meter-api"),
                        KeyValue::new("device_id", "d-42"),
                    ])
                    .build(),
            )
            .build();
        let tracer = provider.tracer_with_scope(
            InstrumentationScope::builder("io.meter")
                .with_version("1.4.2")
                .build(),
        );
        let t0 = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let mut parent = tracer
            .span_builder("GET /readings")
            .with_kind(SpanKind::Server)
            .with_start_time(t0)
            .with_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.response.status_code", 200_i64),
                KeyValue::new("sampling.ratio", 0.25_f64),
                KeyValue::new("cache.hit", false),
                KeyValue::new(
                    "tags",
                    Value::Array(Array::String(vec![
                        StringValue::from("a"),
                        StringValue::from("b"),
                    ])),
                ),
            ])
            .start(&tracer);
        parent.set_status(Status::Ok);
        let parent_cx = opentelemetry::Context::current_with_span(parent);
        let mut child = tracer
            .span_builder("SELECT readings")
            .with_kind(SpanKind::Client)
            .with_start_time(t0 + Duration::from_millis(10))
            .with_attributes([KeyValue::new("db.rows", 3_i64)])
            .start_with_context(&tracer, &parent_cx);
        child.set_status(Status::error("db timeout"));
        let child_sc = child.span_context().clone();
        child.end_with_timestamp(t0 + Duration::from_millis(200));
        let parent_span = parent_cx.span();
        let parent_sc = parent_span.span_context().clone();
        parent_span.end_with_timestamp(t0 + Duration::from_millis(250));
        provider.shutdown().unwrap();
        Sent {
            parent: parent_sc,
            child: child_sc,
            t0,
        }
    })
    .join()
    .unwrap()
}

fn string(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Av::StringValue(v.into())),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> OtlpKeyValue {
    OtlpKeyValue {
        key: key.into(),
        value,
        ..Default::default()
    }
}

fn typed(v: Av) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn sorted(mut attributes: Vec<OtlpKeyValue>) -> Vec<OtlpKeyValue> {
    attributes.sort_by(|a, b| a.key.cmp(&b.key));
    attributes
}

fn unix_ns(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_nanos()).unwrap()
}

#[test]
fn spans_from_the_opentelemetry_sdk_reach_an_otlp_backend_with_every_field() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (receiver, receiver_addr) = Receiver::start(&rt);
    let (grpc, http) = (free_port(), free_port());
    let node = Iotel::start("gateway", &config(grpc, http, receiver_addr), &[]);
    let sent = send_spans(format!("http://127.0.0.1:{grpc}"), &rt);

    let spans = wait_for(
        "the receiver to have both spans",
        Duration::from_secs(20),
        || {
            let s = receiver.spans();
            (s.len() >= 2).then_some(s)
        },
    );
    assert_eq!(spans.len(), 2, "{spans:#?}\n{}", node.proc.report());
    let resource = sorted(vec![
        kv("device_id", string("d-42")),
        kv("service.name", string("meter-api")),
    ]);
    let scope = ("io.meter".to_string(), "1.4.2".to_string());
    for (r, s, _) in &spans {
        assert_eq!(sorted(r.clone()), resource);
        assert_eq!(s, &scope);
    }
    let find = |name: &str| {
        spans
            .iter()
            .map(|(_, _, s)| s)
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"))
            .clone()
    };
    let t0 = unix_ns(sent.t0);

    let parent = find("GET /readings");
    assert_eq!(
        parent.trace_id,
        sent.parent.trace_id().to_bytes().to_vec(),
        "trace id"
    );
    assert_eq!(parent.span_id, sent.parent.span_id().to_bytes().to_vec());
    assert!(parent.parent_span_id.is_empty(), "a root span");
    assert_eq!(parent.kind, span::SpanKind::Server as i32);
    assert_eq!(parent.start_time_unix_nano, t0);
    assert_eq!(parent.end_time_unix_nano, t0 + 250_000_000);
    let st = parent.status.clone().unwrap();
    assert_eq!(
        (st.code, st.message.as_str()),
        (status::StatusCode::Ok as i32, "")
    );
    assert_eq!(
        sorted(parent.attributes.clone()),
        sorted(vec![
            kv("http.request.method", string("GET")),
            kv("http.response.status_code", typed(Av::IntValue(200))),
            kv("sampling.ratio", typed(Av::DoubleValue(0.25))),
            kv("cache.hit", typed(Av::BoolValue(false))),
            kv(
                "tags",
                typed(Av::ArrayValue(ArrayValue {
                    values: vec![string("a").unwrap(), string("b").unwrap()],
                }))
            ),
        ])
    );

    let child = find("SELECT readings");
    assert_eq!(child.trace_id, parent.trace_id, "one trace");
    assert_eq!(child.span_id, sent.child.span_id().to_bytes().to_vec());
    assert_eq!(child.parent_span_id, parent.span_id);
    assert_eq!(child.kind, span::SpanKind::Client as i32);
    assert_eq!(child.start_time_unix_nano, t0 + 10_000_000);
    assert_eq!(child.end_time_unix_nano, t0 + 200_000_000);
    let st = child.status.clone().unwrap();
    assert_eq!(
        (st.code, st.message.as_str()),
        (status::StatusCode::Error as i32, "db timeout")
    );
    assert_eq!(child.attributes, [kv("db.rows", typed(Av::IntValue(3)))]);

    // Counted on the way: two in, two out, nothing dropped.
    wait_for("the sink's counters", Duration::from_secs(10), || {
        (node.metric(
            "iotel_component_sent_events_total",
            &["component_id=\"backend\""],
        ) == 2.0)
            .then_some(())
    });
    assert_eq!(
        node.metric(
            "iotel_component_discarded_events_total",
            &["component_id=\"backend\""]
        ),
        0.0
    );
}

/// Records a counter (two series), a gauge and a histogram through the SDK,
/// exported to `endpoint` when the provider shuts down.
fn send_metrics(endpoint: String, rt: &tokio::runtime::Runtime) {
    let handle = rt.handle().clone();
    std::thread::spawn(move || {
        let _guard = handle.enter();
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .unwrap();
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
            .with_periodic_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder_empty()
                    .with_attributes([
                        KeyValue::new("service.name", "meter-api"),
                        KeyValue::new("device_id", "d-42"),
                    ])
                    .build(),
            )
            .build();
        let meter = provider.meter("io.meter");
        let readings = meter
            .u64_counter("readings")
            .with_description("Readings taken.")
            .with_unit("{reading}")
            .build();
        readings.add(3, &[KeyValue::new("sensor", "s1")]);
        readings.add(4, &[KeyValue::new("sensor", "s1")]);
        readings.add(5, &[KeyValue::new("sensor", "s2")]);
        meter
            .f64_gauge("temperature")
            .with_unit("Cel")
            .build()
            .record(21.5, &[KeyValue::new("sensor", "s1")]);
        let latency = meter
            .f64_histogram("latency")
            .with_unit("s")
            .with_boundaries(vec![0.1, 0.5, 1.0])
            .build();
        for v in [0.05, 0.3, 0.7, 2.0] {
            latency.record(v, &[KeyValue::new("route", "/readings")]);
        }
        provider.shutdown().unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn metrics_from_the_opentelemetry_sdk_reach_an_otlp_backend_as_sums_gauges_and_histograms() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (receiver, receiver_addr) = Receiver::start(&rt);
    let (grpc, http) = (free_port(), free_port());
    let node = Iotel::start("gateway", &config(grpc, http, receiver_addr), &[]);
    send_metrics(format!("http://127.0.0.1:{grpc}"), &rt);

    // (name, description, unit, data), of every resource.
    let metrics = wait_for(
        "the receiver to have the three metrics",
        Duration::from_secs(20),
        || {
            let mut out = Vec::new();
            for req in receiver.metrics.lock().unwrap().iter() {
                for rm in &req.resource_metrics {
                    let attributes = rm.resource.clone().unwrap_or_default().attributes;
                    for sm in &rm.scope_metrics {
                        for m in &sm.metrics {
                            out.push((sorted(attributes.clone()), m.clone()));
                        }
                    }
                }
            }
            (out.len() >= 3).then_some(out)
        },
    );
    assert_eq!(metrics.len(), 3, "{metrics:#?}\n{}", node.proc.report());
    let resource = sorted(vec![
        kv("device_id", string("d-42")),
        kv("service.name", string("meter-api")),
    ]);
    for (r, _) in &metrics {
        assert_eq!(r, &resource);
    }
    let find = |name: &str| {
        metrics
            .iter()
            .map(|(_, m)| m)
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no metric {name:?} in {metrics:#?}"))
            .clone()
    };
    // Times come back in whole milliseconds: the model's resolution.
    let time = |p: &NumberDataPoint| {
        assert!(p.time_unix_nano > 0 && p.time_unix_nano.is_multiple_of(1_000_000));
        p.time_unix_nano
    };
    let number = |p: &NumberDataPoint, attributes: Vec<OtlpKeyValue>, v: f64| NumberDataPoint {
        attributes,
        time_unix_nano: time(p),
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };

    let readings = find("readings");
    assert_eq!(
        (readings.description.as_str(), readings.unit.as_str()),
        ("Readings taken.", "{reading}")
    );
    let Some(Data::Sum(sum)) = readings.data else {
        panic!("{readings:?}")
    };
    assert!(sum.is_monotonic);
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let mut points = sum.data_points.clone();
    points.sort_by(|a, b| format!("{:?}", a.attributes).cmp(&format!("{:?}", b.attributes)));
    assert_eq!(
        points,
        [
            number(&points[0], vec![kv("sensor", string("s1"))], 7.0),
            number(&points[1], vec![kv("sensor", string("s2"))], 5.0),
        ]
    );

    let temperature = find("temperature");
    assert_eq!(temperature.unit, "Cel");
    let Some(Data::Gauge(gauge)) = temperature.data else {
        panic!("{temperature:?}")
    };
    let p = &gauge.data_points[0];
    assert_eq!(
        gauge.data_points,
        [number(p, vec![kv("sensor", string("s1"))], 21.5)]
    );

    let latency = find("latency");
    assert_eq!(latency.unit, "s");
    let Some(Data::Histogram(h)) = latency.data else {
        panic!("{latency:?}")
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let p = &h.data_points[0];
    assert!(p.time_unix_nano > 0 && p.time_unix_nano.is_multiple_of(1_000_000));
    assert_eq!(
        h.data_points,
        [HistogramDataPoint {
            attributes: vec![kv("route", string("/readings"))],
            time_unix_nano: p.time_unix_nano,
            count: 4,
            sum: Some(0.05 + 0.3 + 0.7 + 2.0),
            explicit_bounds: vec![0.1, 0.5, 1.0],
            bucket_counts: vec![1, 1, 1, 1],
            ..Default::default()
        }]
    );
}
