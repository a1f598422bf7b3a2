//! Samples → OTLP metrics: the shapes field by field, and decode(encode(x))
//! == x for every x a decoded request can give.

#![allow(clippy::unwrap_used)]

use super::metrics::{self, export_request};
use super::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use super::proto::common::v1::{AnyValue, KeyValue, any_value::Value as Av};
use super::proto::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, Gauge, Histogram, HistogramDataPoint,
    Metric as OtlpMetric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use super::proto::resource::v1::Resource;
use iotel_model::{Exemplar, Labels, Metric, MetricMeta, MetricType};
use proptest::prelude::*;
use std::sync::Arc;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Av::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn sample(name: &str, meta: &Arc<MetricMeta>, labels: &[(&str, &str)], value: f64) -> Metric {
    Metric {
        name: name.into(),
        labels: Labels::from_pairs(labels.iter().copied()),
        value,
        timestamp_ms: 1_700_000_000_123,
        meta: meta.clone(),
        exemplar: None,
    }
}

#[test]
fn a_histogram_is_put_back_together_from_its_series() {
    let meta = Arc::new(
        MetricMeta::new("latency_seconds", MetricType::Histogram).with_help("Request latency."),
    );
    let l = |le: &'static str| [("device_id", "d-1"), ("le", le), ("route", "/a")];
    let base = [("device_id", "d-1"), ("route", "/a")];
    let samples = vec![
        sample("latency_seconds_bucket", &meta, &l("0.1"), 2.0),
        sample("latency_seconds_bucket", &meta, &l("0.5"), 5.0),
        sample("latency_seconds_bucket", &meta, &l("+Inf"), 7.0),
        sample("latency_seconds_sum", &meta, &base, 1.25),
        sample("latency_seconds_count", &meta, &base, 7.0),
    ];
    let req = export_request(samples.clone());
    assert_eq!(req.resource_metrics.len(), 1);
    let rm = &req.resource_metrics[0];
    assert_eq!(
        rm.resource.as_ref().unwrap().attributes,
        [kv("device_id", "d-1")]
    );
    let m = &rm.scope_metrics[0].metrics;
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].name, "latency_seconds");
    assert_eq!(m[0].description, "Request latency.");
    let Some(Data::Histogram(h)) = &m[0].data else {
        panic!("{:?}", m[0].data)
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    assert_eq!(
        h.data_points,
        [HistogramDataPoint {
            attributes: vec![kv("route", "/a")],
            time_unix_nano: 1_700_000_000_123_000_000,
            count: 7,
            sum: Some(1.25),
            explicit_bounds: vec![0.1, 0.5],
            bucket_counts: vec![2, 3, 2],
            ..Default::default()
        }]
    );
    assert_eq!(metrics::samples(req).samples, samples);
}

#[test]
fn counters_gauges_and_summaries_map_to_sums_gauges_and_summary_points() {
    let counter = Arc::new(MetricMeta::new("requests_total", MetricType::Counter));
    let gauge = Arc::new(MetricMeta::new("temperature", MetricType::Gauge));
    let summary = Arc::new(MetricMeta::new("rpc", MetricType::Summary));
    let mut with_exemplar = sample("requests_total", &counter, &[("code", "200")], 10.0);
    with_exemplar.exemplar = Some(Box::new(Exemplar {
        labels: Labels::from_pairs([
            ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ("user", "u1"),
        ]),
        value: 0.3,
        timestamp_ms: Some(5),
    }));
    let samples = vec![
        with_exemplar,
        sample("temperature", &gauge, &[("service.name", "pump")], 21.5),
        sample("rpc", &summary, &[("quantile", "0.9")], 0.2),
        sample("rpc", &summary, &[("quantile", "0.5")], 0.1),
        sample("rpc_sum", &summary, &[], 4.0),
        sample("rpc_count", &summary, &[], 20.0),
    ];
    let req = export_request(samples);
    assert_eq!(req.resource_metrics.len(), 2);
    let ns = 1_700_000_000_123_000_000;
    let m = &req.resource_metrics[0].scope_metrics[0].metrics;
    let Some(Data::Sum(s)) = &m[0].data else {
        panic!()
    };
    assert!(s.is_monotonic);
    assert_eq!(s.data_points.len(), 1);
    let p = &s.data_points[0];
    assert_eq!(p.attributes, [kv("code", "200")]);
    assert_eq!(p.value, Some(number_data_point::Value::AsDouble(10.0)));
    assert_eq!(p.exemplars.len(), 1);
    assert_eq!(p.exemplars[0].trace_id.len(), 16);
    assert_eq!(p.exemplars[0].filtered_attributes, [kv("user", "u1")]);
    assert_eq!(p.exemplars[0].time_unix_nano, 5_000_000);
    let Some(Data::Summary(s)) = &m[1].data else {
        panic!()
    };
    assert_eq!(
        s.data_points,
        [SummaryDataPoint {
            time_unix_nano: ns,
            count: 20,
            sum: 4.0,
            quantile_values: vec![
                ValueAtQuantile {
                    quantile: 0.5,
                    value: 0.1
                },
                ValueAtQuantile {
                    quantile: 0.9,
                    value: 0.2
                }
            ],
            ..Default::default()
        }]
    );
    let rm = &req.resource_metrics[1];
    assert_eq!(
        rm.resource.as_ref().unwrap().attributes,
        [kv("service.name", "pump")]
    );
    let Some(Data::Gauge(g)) = &rm.scope_metrics[0].metrics[0].data else {
        panic!()
    };
    assert_eq!(g.data_points[0].time_unix_nano, ns);
}

#[test]
fn a_histogram_series_that_does_not_fit_the_shape_goes_as_a_gauge() {
    let meta = Arc::new(MetricMeta::new("h", MetricType::Histogram));
    let samples = vec![
        sample("h_created", &meta, &[], 17.0),
        sample("h_bucket", &meta, &[("le", "soon")], 1.0),
    ];
    let req = export_request(samples.clone());
    let m = &req.resource_metrics[0].scope_metrics[0].metrics;
    let names: Vec<(&str, bool)> = m
        .iter()
        .map(|m| (m.name.as_str(), matches!(m.data, Some(Data::Gauge(_)))))
        .collect();
    assert_eq!(names, [("h_created", true), ("h_bucket", true)]);
}

// ---------------------------------------------------------------------------
// decode(encode(x)) == x

fn number(value: f64, t: u64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn point_attrs() -> impl Strategy<Value = Vec<KeyValue>> {
    proptest::collection::btree_map(
        prop::sample::select(vec!["route", "code", "sensor", "zone"]),
        "[a-z0-9/]{0,4}",
        0..3,
    )
    .prop_map(|m| m.into_iter().map(|(k, v)| kv(k, &v)).collect())
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        (-1000i64..1000).prop_map(|n| n as f64 / 8.0),
    ]
}

/// Up to `max` exemplars, with ids of any bytes (an all-zero id too).
fn exemplars(max: usize) -> impl Strategy<Value = Vec<OtlpExemplar>> {
    proptest::collection::vec(
        (
            prop::array::uniform16(any::<u8>()),
            prop::array::uniform8(any::<u8>()),
            finite(),
            0u64..1_000_000,
            point_attrs(),
        ),
        0..=max,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(trace, span, value, ms, attrs)| OtlpExemplar {
                filtered_attributes: attrs,
                time_unix_nano: ms * 1_000_000,
                value: Some(exemplar::Value::AsDouble(value)),
                span_id: span.to_vec(),
                trace_id: trace.to_vec(),
            })
            .collect()
    })
}

/// One metric of a kind the decoder maps, `i` making its name unique, its
/// points at distinct times.
fn metric(i: usize) -> impl Strategy<Value = OtlpMetric> {
    let times = proptest::collection::btree_set(1u64..1_000_000, 1..4);
    let data = (0u8..5, times).prop_flat_map(|(kind, times)| {
        let times: Vec<u64> = times.into_iter().map(|t| t * 1_000_000).collect();
        let n = times.len();
        let nums = proptest::collection::vec((finite(), point_attrs(), exemplars(2)), n);
        let hist = proptest::collection::vec(
            (
                proptest::collection::btree_set(-50i32..50, 0..4),
                proptest::collection::vec(0u64..1000, 5),
                proptest::option::of(finite()),
                point_attrs(),
                exemplars(3),
            ),
            n,
        );
        let summ = proptest::collection::vec(
            (
                proptest::collection::btree_set(0u32..=100, 0..3),
                finite(),
                0u64..1000,
                point_attrs(),
            ),
            n,
        );
        let cumulative = AggregationTemporality::Cumulative as i32;
        match kind {
            0..=2 => nums
                .prop_map(move |points| {
                    let points: Vec<NumberDataPoint> = points
                        .into_iter()
                        .zip(&times)
                        .map(|((v, a, e), t)| NumberDataPoint {
                            exemplars: e,
                            ..number(v, *t, a)
                        })
                        .collect();
                    match kind {
                        0 => Data::Gauge(Gauge {
                            data_points: points,
                        }),
                        k => Data::Sum(Sum {
                            data_points: points,
                            aggregation_temporality: cumulative,
                            is_monotonic: k == 1,
                        }),
                    }
                })
                .boxed(),
            3 => hist
                .prop_map(move |points| {
                    Data::Histogram(Histogram {
                        aggregation_temporality: cumulative,
                        data_points: points
                            .into_iter()
                            .zip(&times)
                            .map(|((bounds, counts, sum, a, e), t)| {
                                let bounds: Vec<f64> =
                                    bounds.into_iter().map(|b| f64::from(b) / 4.0).collect();
                                let counts = counts[..=bounds.len()].to_vec();
                                HistogramDataPoint {
                                    attributes: a,
                                    time_unix_nano: *t,
                                    count: counts.iter().sum(),
                                    sum,
                                    explicit_bounds: bounds,
                                    bucket_counts: counts,
                                    exemplars: e,
                                    ..Default::default()
                                }
                            })
                            .collect(),
                    })
                })
                .boxed(),
            _ => summ
                .prop_map(move |points| {
                    Data::Summary(Summary {
                        data_points: points
                            .into_iter()
                            .zip(&times)
                            .map(|((qs, sum, count, a), t)| SummaryDataPoint {
                                attributes: a,
                                time_unix_nano: *t,
                                count,
                                sum,
                                quantile_values: qs
                                    .into_iter()
                                    .map(|q| ValueAtQuantile {
                                        quantile: f64::from(q) / 100.0,
                                        value: f64::from(q) * 1.5,
                                    })
                                    .collect(),
                                ..Default::default()
                            })
                            .collect(),
                    })
                })
                .boxed(),
        }
    });
    (
        data,
        "[a-z]{0,6}",
        prop::sample::select(vec!["", "s", "By"]),
    )
        .prop_map(move |(data, help, unit)| OtlpMetric {
            name: format!("m{i}"),
            description: help,
            unit: unit.into(),
            data: Some(data),
            ..Default::default()
        })
}

/// A request of distinct resources (by `device_id`), each with metrics of
/// distinct names.
fn request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    let resource = (
        proptest::option::of("[a-z]{1,5}"),
        proptest::collection::vec(0usize..8, 0..4),
    );
    proptest::collection::vec(resource, 0..3)
        .prop_flat_map(|resources| {
            resources
                .into_iter()
                .enumerate()
                .map(|(ri, (service, names))| {
                    let mut names = names;
                    names.sort_unstable();
                    names.dedup();
                    let metrics: Vec<_> = names.into_iter().map(metric).collect();
                    (Just(ri), Just(service), metrics)
                })
                .collect::<Vec<_>>()
        })
        .prop_map(|resources| ExportMetricsServiceRequest {
            resource_metrics: resources
                .into_iter()
                .map(|(ri, service, metrics)| {
                    let mut attributes = vec![kv("device_id", &format!("d-{ri}"))];
                    if let Some(s) = service {
                        attributes.push(kv("service.name", &s));
                    }
                    ResourceMetrics {
                        resource: Some(Resource {
                            attributes,
                            ..Default::default()
                        }),
                        scope_metrics: vec![ScopeMetrics {
                            metrics,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }
                })
                .collect(),
        })
}

proptest! {
    #[test]
    fn decoded_samples_survive_encoding_and_decoding(req in request()) {
        let x = metrics::samples(req);
        prop_assert_eq!(x.rejected.total(), 0);
        let again = metrics::samples(export_request(x.samples.clone()));
        prop_assert_eq!(again.rejected.total(), 0);
        prop_assert_eq!(again.samples, x.samples);
    }

    #[test]
    fn interleaved_series_come_back_as_the_same_set(req in request()) {
        // Reversed, so resources and metrics interleave: the encoder groups
        // them, and the decoded set is the same in another order.
        let mut x = metrics::samples(req).samples;
        x.reverse();
        let key = |m: &Metric| format!("{}{} {} {}", m.name, m.labels, m.timestamp_ms, m.value.to_bits());
        let mut again = metrics::samples(export_request(x.clone())).samples;
        x.sort_by_key(key);
        again.sort_by_key(key);
        prop_assert_eq!(again, x);
    }
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn exemplar(value: f64) -> Option<Box<Exemplar>> {
    Some(Box::new(Exemplar {
        labels: Labels::from_pairs([("span_id", SPAN), ("trace_id", TRACE)]),
        value,
        timestamp_ms: Some(1_700_000_000_100),
    }))
}

#[test]
fn a_slow_buckets_exemplar_goes_with_its_histogram_point_and_comes_back_on_its_bucket() {
    let meta = Arc::new(MetricMeta::new("latency_seconds", MetricType::Histogram));
    let l = |le: &'static str| [("le", le), ("route", "/a")];
    let mut slow = sample("latency_seconds_bucket", &meta, &l("+Inf"), 7.0);
    slow.exemplar = exemplar(2.5);
    let mut fast = sample("latency_seconds_bucket", &meta, &l("0.1"), 2.0);
    fast.exemplar = Some(Box::new(Exemplar {
        labels: Labels::from_pairs([("trace_id", "not-hex")]),
        value: 0.05,
        timestamp_ms: None,
    }));
    let samples = vec![
        fast,
        sample("latency_seconds_bucket", &meta, &l("0.5"), 5.0),
        slow,
        sample("latency_seconds_count", &meta, &[("route", "/a")], 7.0),
    ];
    let req = export_request(samples.clone());
    let Some(Data::Histogram(h)) = &req.resource_metrics[0].scope_metrics[0].metrics[0].data else {
        panic!("expected a histogram: {req:?}")
    };
    let p = &h.data_points[0];
    assert_eq!(p.exemplars.len(), 2);
    assert_eq!(p.exemplars[0].trace_id, Vec::<u8>::new());
    assert_eq!(
        p.exemplars[0].filtered_attributes,
        [kv("trace_id", "not-hex")]
    );
    assert_eq!(p.exemplars[0].time_unix_nano, 0);
    assert_eq!(super::hex(&p.exemplars[1].trace_id), TRACE);
    assert_eq!(super::hex(&p.exemplars[1].span_id), SPAN);
    assert_eq!(p.exemplars[1].time_unix_nano, 1_700_000_000_100_000_000);
    // Decoded, each lands on the bucket its value falls in.
    let back = metrics::samples(req);
    assert_eq!(back.dropped_exemplars, 0);
    assert_eq!(back.samples, samples);
}

#[test]
fn decoding_keeps_one_exemplar_per_sample_and_counts_the_rest() {
    let ex = |trace: u8, value: f64| OtlpExemplar {
        trace_id: vec![trace; 16],
        value: Some(exemplar::Value::AsInt(value as i64)),
        time_unix_nano: 0,
        ..Default::default()
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    OtlpMetric {
                        name: "temp".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                exemplars: vec![ex(1, 3.0), ex(2, 4.0)],
                                ..number(20.0, 5_000_000, vec![])
                            }],
                        })),
                        ..Default::default()
                    },
                    OtlpMetric {
                        name: "lat".into(),
                        data: Some(Data::Histogram(Histogram {
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            data_points: vec![HistogramDataPoint {
                                time_unix_nano: 5_000_000,
                                count: 3,
                                explicit_bounds: vec![1.0],
                                bucket_counts: vec![1, 2],
                                exemplars: vec![ex(3, 1.0), ex(4, 9.0), ex(5, 0.0)],
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let d = metrics::samples(req);
    assert_eq!(d.dropped_exemplars, 2);
    let traces: Vec<(String, Option<String>)> = d
        .samples
        .iter()
        .map(|m| {
            (
                format!("{}{}", m.name, m.labels),
                m.exemplar
                    .as_ref()
                    .and_then(|e| e.labels.get("trace_id").map(str::to_string)),
            )
        })
        .collect();
    let id = |b: u8| Some(super::hex(&[b; 16]));
    assert_eq!(
        traces,
        [
            ("temp{}".to_string(), id(1)),
            ("lat_bucket{le=\"1\"}".to_string(), id(3)),
            ("lat_bucket{le=\"+Inf\"}".to_string(), id(4)),
            ("lat_count{}".to_string(), None),
        ]
    );
    assert_eq!(d.samples[0].exemplar.as_ref().unwrap().value, 3.0);
    assert_eq!(d.samples[0].exemplar.as_ref().unwrap().timestamp_ms, None);
}
