//! Decoding traces and metrics, and OTLP/JSON for every signal.
#![allow(clippy::unwrap_used)]

use super::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use super::proto::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value as Av};
use super::proto::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric as OtlpMetric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary, SummaryDataPoint, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use super::proto::resource::v1::Resource;
use super::proto::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan, span};
use super::*;
use iotel_model::{Labels, LogRecord, Metric, MetricType, Severity, Span, SpanStatus};
use proptest::prelude::*;
use prost::Message;
use serde_json::json;

const TRACE: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const SPAN: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
const PARENT: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

fn kv(key: &str, v: Av) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn resource(pairs: &[(&str, &str)]) -> Option<Resource> {
    Some(Resource {
        attributes: pairs
            .iter()
            .map(|(k, v)| kv(k, Av::StringValue((*v).into())))
            .collect(),
        ..Default::default()
    })
}

fn otlp_span(trace_id: &[u8], span_id: &[u8]) -> OtlpSpan {
    OtlpSpan {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        name: "GET /".into(),
        start_time_unix_nano: 10,
        end_time_unix_nano: 20,
        ..Default::default()
    }
}

fn trace_request(
    spans: Vec<OtlpSpan>,
) -> super::proto::collector::trace::v1::ExportTraceServiceRequest {
    super::proto::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(&[("service.name", "pump")]),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.pump".into(),
                    version: "1.2".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn a_span_decodes_field_by_field() {
    let mut s = otlp_span(&TRACE, &SPAN);
    s.parent_span_id = PARENT.to_vec();
    s.kind = span::SpanKind::Server as i32;
    s.attributes = vec![kv("http.status", Av::IntValue(500))];
    s.status = Some(super::proto::trace::v1::Status {
        message: "boom".into(),
        code: 2,
    });
    s.events = vec![span::Event::default(), span::Event::default()];
    s.links = vec![span::Link::default()];
    let body = trace_request(vec![s]).encode_to_vec();
    let d = traces::spans(traces::decode_request(&body).unwrap());
    assert_eq!(d.dropped_events, 2);
    assert_eq!(d.dropped_links, 1);
    assert_eq!(d.rejected, Rejected::default());
    let want = Span {
        trace_id: TRACE,
        span_id: SPAN,
        parent_span_id: Some(PARENT),
        name: "GET /".into(),
        start_ns: 10,
        end_ns: 20,
        labels: Labels::from_pairs([("service.name", "pump")]),
        attributes: json!({
            "http.status": 500,
            "span.kind": "server",
            "otel.status_description": "boom",
            "otel.scope.name": "io.pump",
            "otel.scope.version": "1.2",
        })
        .as_object()
        .unwrap()
        .clone(),
        status: SpanStatus::Error,
    };
    assert_eq!(d.spans, vec![want]);
}

#[test]
fn spans_with_invalid_ids_are_rejected_by_reason_and_the_rest_kept() {
    let mut bad_parent = otlp_span(&TRACE, &SPAN);
    bad_parent.parent_span_id = vec![1, 2, 3];
    let request = trace_request(vec![
        otlp_span(&[0; 16], &SPAN),
        otlp_span(&TRACE[..8], &SPAN),
        otlp_span(&TRACE, &[0; 8]),
        bad_parent,
        otlp_span(&TRACE, &SPAN),
    ]);
    let d = traces::spans(request);
    assert_eq!(d.spans.len(), 1);
    assert_eq!(
        d.rejected.by_reason,
        vec![
            ("invalid_trace_id", 2),
            ("invalid_span_id", 1),
            ("invalid_parent_span_id", 1)
        ]
    );
    let msg = d.rejected.message();
    assert!(msg.starts_with("rejected 4 (2 invalid_trace_id, 1 invalid_span_id, 1 invalid_parent_span_id); first: resource_spans[0].scope_spans[0].spans[0]: trace_id \"00000000000000000000000000000000\""), "{msg}");
    let response = traces::response(&d.rejected);
    let p = response.partial_success.unwrap();
    assert_eq!(p.rejected_spans, 4);
    assert_eq!(p.error_message, msg);
    assert_eq!(traces::response(&Rejected::default()).partial_success, None);
}

#[test]
fn otlp_json_spans_take_hex_ids_and_string_times() {
    // As the OTLP/JSON spec writes them: hex ids, 64-bit integers as
    // strings, enums as numbers, camelCase names.
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "pump"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
            "spanId": "00f067aa0ba902b7",
            "parentSpanId": "",
            "name": "read",
            "kind": 3,
            "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": 1700000000000000500u64,
            "attributes": [{"key": "n", "value": {"intValue": "7"}}],
            "status": {"code": 1}
        }]}]
    }]})
    .to_string();
    let d = traces::spans(traces::decode_json_request(body.as_bytes()).unwrap());
    assert_eq!(d.rejected.total(), 0);
    let s = &d.spans[0];
    assert_eq!(s.trace_id, TRACE);
    assert_eq!(s.span_id, SPAN);
    assert_eq!(s.parent_span_id, None);
    assert_eq!(s.name, "read");
    assert_eq!(s.start_ns, 1_700_000_000_000_000_000);
    assert_eq!(s.end_ns, 1_700_000_000_000_000_500);
    assert_eq!(s.status, SpanStatus::Ok);
    assert_eq!(s.labels, Labels::from_pairs([("service.name", "pump")]));
    assert_eq!(
        serde_json::Value::Object(s.attributes.clone()),
        json!({"n": 7, "span.kind": "client"})
    );
}

#[test]
fn otlp_json_with_a_bad_hex_id_is_an_error_naming_the_place() {
    let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}"#;
    let e = traces::decode_json_request(body).unwrap_err().to_string();
    assert!(e.contains("line 1 column"), "{e}");
}

#[test]
fn otlp_json_logs_decode() {
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "device_id", "value": {"stringValue": "d1"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": "1700000000000000000",
            "severityNumber": 17,
            "body": {"stringValue": "overheat"},
            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
            "attributes": [{"key": "temp", "value": {"doubleValue": 91.5}}]
        }]}]
    }]})
    .to_string();
    let records = logs::records(logs::decode_json_request(body.as_bytes()).unwrap());
    let mut want = LogRecord::new(1_700_000_000_000_000_000, "overheat");
    want.labels = Labels::from_pairs([("device_id", "d1")]);
    want.severity = Some(Severity::Error);
    want.fields = json!({"temp": 91.5, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"})
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(records, vec![want]);
}

fn span_strategy() -> impl Strategy<Value = Span> {
    let id16 = any::<[u8; 16]>().prop_filter("not zero", |id| id.iter().any(|&b| b != 0));
    let id8 = any::<[u8; 8]>().prop_filter("not zero", |id| id.iter().any(|&b| b != 0));
    let kind = prop::sample::select(vec![None, Some("server"), Some("client"), Some("internal")]);
    let status = prop::sample::select(vec![SpanStatus::Unset, SpanStatus::Ok, SpanStatus::Error]);
    (
        id16,
        id8.clone(),
        proptest::option::of(id8),
        "[a-z /]{0,12}",
        0i64..i64::MAX,
        0i64..i64::MAX,
        prop::sample::select(vec!["a", "b"]),
        proptest::collection::btree_map("[a-z.]{1,6}", any::<i64>(), 0..4),
        (kind, status, proptest::option::of("[a-z]{1,5}")),
    )
        .prop_map(
            |(trace_id, span_id, parent, name, start, end, svc, attrs, (kind, status, scope))| {
                let mut attributes: serde_json::Map<String, serde_json::Value> = attrs
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with("otel.") && !k.starts_with("span."))
                    .map(|(k, v)| (k, v.into()))
                    .collect();
                if let Some(k) = kind {
                    attributes.insert(traces::KIND.into(), k.into());
                }
                if let Some(s) = scope {
                    attributes.insert(traces::SCOPE_NAME.into(), s.into());
                }
                Span {
                    trace_id,
                    span_id,
                    parent_span_id: parent,
                    name,
                    start_ns: start,
                    end_ns: end,
                    labels: Labels::from_pairs([("service.name", svc)]),
                    attributes,
                    status,
                }
            },
        )
}

proptest! {
    #[test]
    fn spans_survive_encoding_and_decoding(spans in proptest::collection::vec(span_strategy(), 0..8)) {
        let body = traces::export_request(spans.clone()).encode_to_vec();
        let d = traces::spans(traces::decode_request(&body).unwrap());
        prop_assert_eq!(d.rejected.total(), 0);
        // Grouped by resource and scope, so compare as multisets.
        let key = |s: &Span| (s.trace_id, s.span_id, s.start_ns, s.name.clone());
        let mut got = d.spans;
        let mut want = spans;
        got.sort_by_key(key);
        want.sort_by_key(key);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn gauge_points_keep_their_value_labels_and_time(
        points in proptest::collection::vec((any::<f64>().prop_filter("not NaN", |v| !v.is_nan()), "[a-z]{1,4}", 1u64..u64::MAX), 1..8)
    ) {
        let request = metrics_request(vec![OtlpMetric {
            name: "temp".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: points.iter().map(|(v, room, t)| NumberDataPoint {
                    attributes: vec![kv("room", Av::StringValue(room.clone()))],
                    time_unix_nano: *t,
                    value: Some(number_data_point::Value::AsDouble(*v)),
                    ..Default::default()
                }).collect(),
            })),
            ..Default::default()
        }]);
        let d = metrics::samples(request);
        prop_assert_eq!(d.samples.len(), points.len());
        for (m, (v, room, t)) in d.samples.iter().zip(&points) {
            prop_assert_eq!(m.value, *v);
            prop_assert_eq!(m.timestamp_ms, i64::try_from(t / 1_000_000).unwrap());
            prop_assert_eq!(m.labels.get("room"), Some(room.as_str()));
            prop_assert_eq!(m.labels.get("device_id"), Some("d1"));
        }
    }
}

fn metrics_request(metrics: Vec<OtlpMetric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(&[("device_id", "d1")]),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

const T: u64 = 1_700_000_000_123_456_789;
const MS: i64 = 1_700_000_000_123;

fn number(v: number_data_point::Value, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        time_unix_nano: T,
        value: Some(v),
        ..Default::default()
    }
}

fn simple(m: &Metric) -> (String, Vec<(String, String)>, f64, i64, MetricType) {
    (
        m.name.to_string(),
        m.labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect(),
        m.value,
        m.timestamp_ms,
        m.meta.kind,
    )
}

fn want(
    name: &str,
    labels: &[(&str, &str)],
    v: f64,
    kind: MetricType,
) -> (String, Vec<(String, String)>, f64, i64, MetricType) {
    let labels = Labels::from_pairs(labels.iter().copied());
    (
        name.into(),
        labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect(),
        v,
        MS,
        kind,
    )
}

#[test]
fn gauges_sums_histograms_and_summaries_become_prometheus_samples() {
    use number_data_point::Value::{AsDouble, AsInt};
    let cumulative = AggregationTemporality::Cumulative as i32;
    let request = metrics_request(vec![
        OtlpMetric {
            name: "temp".into(),
            description: "Temperature".into(),
            unit: "Cel".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![number(
                    AsDouble(21.5),
                    vec![kv("device_id", Av::StringValue("d2".into()))],
                )],
            })),
            ..Default::default()
        },
        OtlpMetric {
            name: "requests".into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![number(AsInt(42), vec![])],
                aggregation_temporality: cumulative,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        OtlpMetric {
            name: "queue".into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![number(AsInt(-3), vec![])],
                aggregation_temporality: cumulative,
                is_monotonic: false,
            })),
            ..Default::default()
        },
        OtlpMetric {
            name: "latency".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    time_unix_nano: T,
                    count: 6,
                    sum: Some(2.5),
                    bucket_counts: vec![1, 2, 3],
                    explicit_bounds: vec![0.1, 1.0],
                    ..Default::default()
                }],
                aggregation_temporality: cumulative,
            })),
            ..Default::default()
        },
        OtlpMetric {
            name: "size".into(),
            data: Some(Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: T,
                    count: 4,
                    sum: 10.0,
                    quantile_values: vec![ValueAtQuantile {
                        quantile: 0.5,
                        value: 2.0,
                    }],
                    ..Default::default()
                }],
            })),
            ..Default::default()
        },
    ]);
    let d = metrics::samples(request);
    assert_eq!(d.rejected, Rejected::default());
    let got: Vec<_> = d.samples.iter().map(simple).collect();
    use MetricType::{Counter, Gauge as G, Histogram as H, Summary as S};
    assert_eq!(
        got,
        vec![
            want("temp", &[("device_id", "d2")], 21.5, G),
            want("requests", &[("device_id", "d1")], 42.0, Counter),
            want("queue", &[("device_id", "d1")], -3.0, G),
            want(
                "latency_bucket",
                &[("device_id", "d1"), ("le", "0.1")],
                1.0,
                H
            ),
            want(
                "latency_bucket",
                &[("device_id", "d1"), ("le", "1")],
                3.0,
                H
            ),
            want(
                "latency_bucket",
                &[("device_id", "d1"), ("le", "+Inf")],
                6.0,
                H
            ),
            want("latency_sum", &[("device_id", "d1")], 2.5, H),
            want("latency_count", &[("device_id", "d1")], 6.0, H),
            want("size", &[("device_id", "d1"), ("quantile", "0.5")], 2.0, S),
            want("size_sum", &[("device_id", "d1")], 10.0, S),
            want("size_count", &[("device_id", "d1")], 4.0, S),
        ]
    );
    let temp = &d.samples[0].meta;
    assert_eq!(&*temp.family, "temp");
    assert_eq!(temp.help.as_deref(), Some("Temperature"));
    assert_eq!(temp.unit.as_deref(), Some("Cel"));
    assert_eq!(&*d.samples[3].meta.family, "latency");
}

#[test]
fn unmapped_metric_points_are_rejected_by_reason() {
    use number_data_point::Value::AsInt;
    let delta = AggregationTemporality::Delta as i32;
    let request = metrics_request(vec![
        OtlpMetric {
            name: "d".into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![number(AsInt(1), vec![]), number(AsInt(2), vec![])],
                aggregation_temporality: delta,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        OtlpMetric {
            name: "e".into(),
            data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint::default()],
                aggregation_temporality: delta,
            })),
            ..Default::default()
        },
        OtlpMetric {
            name: "g".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![
                    NumberDataPoint {
                        time_unix_nano: T,
                        ..Default::default()
                    },
                    NumberDataPoint {
                        value: Some(AsInt(1)),
                        ..Default::default()
                    },
                    number(AsInt(5), vec![]),
                ],
            })),
            ..Default::default()
        },
        OtlpMetric {
            name: "h".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    time_unix_nano: T,
                    bucket_counts: vec![1],
                    explicit_bounds: vec![1.0],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        },
    ]);
    let d = metrics::samples(request);
    assert_eq!(d.samples.len(), 1);
    assert_eq!(d.samples[0].value, 5.0);
    assert_eq!(
        d.rejected.by_reason,
        vec![
            ("delta_temporality", 2),
            ("exponential_histogram", 1),
            ("no_value", 1),
            ("no_time", 1),
            ("invalid_histogram", 1)
        ]
    );
    let p = metrics::response(&d.rejected).partial_success.unwrap();
    assert_eq!(p.rejected_data_points, 6);
    assert!(
        p.error_message
            .contains("metrics[0] (\"d\"): a sum with delta temporality"),
        "{}",
        p.error_message
    );
}

#[test]
fn otlp_json_metrics_decode_with_string_integers() {
    let body = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
        "name": "requests",
        "sum": {"aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [
            {"timeUnixNano": "1700000000123456789", "asInt": "42",
             "attributes": [{"key": "code", "value": {"intValue": 200}}]}
        ]}
    }]}]}]})
    .to_string();
    let d = metrics::samples(metrics::decode_json_request(body.as_bytes()).unwrap());
    let got: Vec<_> = d.samples.iter().map(simple).collect();
    assert_eq!(
        got,
        vec![want(
            "requests",
            &[("code", "200")],
            42.0,
            MetricType::Counter
        )]
    );
}
