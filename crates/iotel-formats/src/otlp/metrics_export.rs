//! Samples → OTLP `ExportMetricsServiceRequest`: the inverse of
//! [`super::metrics::samples`], which puts flattened Prometheus-style series
//! back together into OTLP data points.
//!
//! | samples                                          | OTLP                                              |
//! |--------------------------------------------------|---------------------------------------------------|
//! | labels named in [`RESOURCE_LABELS`] (`device_id`, `gateway_id`, `tenant`, `service.*`, …) | `Resource.attributes` (strings): one `ResourceMetrics` per such label set, in the order first seen, with one `ScopeMetrics` (no scope) |
//! | the other labels                                 | data point `attributes` (strings)                 |
//! | the family's `help`, `unit`                      | `description`, `unit`                             |
//! | `timestamp_ms`                                   | `time_unix_nano` (ms × 10⁶); no start time        |
//! | `counter`                                        | a monotonic cumulative `sum` named as the series, `as_double` |
//! | `gauge`, `unknown`, `info`, `stateset`, `gaugehistogram` | a `gauge` named as the series, `as_double` |
//! | `histogram`: `<family>_bucket{le}`, `<family>_sum`, `<family>_count` of one label set and time | one cumulative `histogram` point named `<family>`: `explicit_bounds` the finite `le`s in order, `bucket_counts` the differences of the cumulative bucket values (the last up to `_count`, or the `+Inf` bucket without one), `sum` from `_sum` when there is one |
//! | `summary`: `<family>{quantile}`, `<family>_sum`, `<family>_count` | one `summary` point named `<family>` |
//! | exemplar (of a gauge or counter sample, or of a histogram's bucket, `_sum` or `_count`) | an exemplar of the point: `trace_id` / `span_id` labels as ids when valid, the other labels `filtered_attributes`; a histogram point's in the order of its samples |
//!
//! Metrics of a resource keep the order they were first seen in, and their
//! points the order of their samples, so decoding what this encodes gives
//! back the samples it was given when they came from a decoded request.
//! `le` and `quantile` may be spelled either way (`1` or OpenMetrics'
//! `1.0`); decoding gives back the shortest spelling. A histogram or
//! summary sample that does not fit the shape (another suffix such as
//! `_created`, a bucket without a numeric `le`, a negative or fractional
//! count) goes as a `gauge` under its own series name rather
//! than be lost. A summary's exemplars are not sent (OTLP summaries have
//! none; OpenMetrics allows none either).

use super::parse_id;
use super::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use super::proto::common::v1::KeyValue;
use super::proto::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, Gauge, Histogram, HistogramDataPoint,
    Metric as OtlpMetric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, metric::Data, number_data_point, summary_data_point,
};
use super::proto::resource::v1::Resource;
use super::string_attribute;
use iotel_model::{Labels, Metric, MetricType};
use std::collections::HashMap;
use std::sync::Arc;

/// Labels that describe where a sample comes from rather than what it
/// measures: they go to the resource. Any label starting with `service.`,
/// `host.`, `device.` or `k8s.` does too.
pub const RESOURCE_LABELS: &[&str] = &["device_id", "gateway_id", "tenant", "job", "instance"];

const RESOURCE_PREFIXES: &[&str] = &["service.", "host.", "device.", "k8s."];

fn is_resource_label(name: &str) -> bool {
    RESOURCE_LABELS.contains(&name) || RESOURCE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The data of one OTLP metric, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
    Summary,
}

/// What identifies one OTLP metric inside a resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MetricKey {
    name: Arc<str>,
    kind: Kind,
    help: Option<Arc<str>>,
    unit: Option<Arc<str>>,
}

/// What identifies one histogram or summary point inside a metric.
type PointKey = (usize, usize, Labels, i64);

/// A histogram point being put together.
#[derive(Debug, Default)]
struct HistogramParts {
    /// (le, cumulative count), as seen.
    buckets: Vec<(f64, f64)>,
    inf: Option<f64>,
    sum: Option<f64>,
    count: Option<f64>,
    /// The exemplars of its samples, as seen.
    exemplars: Vec<OtlpExemplar>,
}

/// A summary point being put together.
#[derive(Debug, Default)]
struct SummaryParts {
    quantiles: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
}

/// Where a grouped point's parts are kept until the end.
#[derive(Debug)]
enum Parts {
    Histogram(HistogramParts),
    Summary(SummaryParts),
}

#[derive(Debug, Default)]
struct Builder {
    resources: Vec<ResourceMetrics>,
    by_resource: HashMap<Labels, usize>,
    /// (resource, metric key) → index into the resource's metrics.
    by_metric: HashMap<(usize, MetricKey), usize>,
    /// A histogram or summary point → its index into `parts`.
    by_point: HashMap<PointKey, usize>,
    /// (resource, metric, attributes, time, parts), in the order first seen.
    parts: Vec<(usize, usize, Labels, i64, Parts)>,
}

/// The request carrying `samples` (see the module docs).
pub fn export_request(samples: impl IntoIterator<Item = Metric>) -> ExportMetricsServiceRequest {
    let mut b = Builder::default();
    for m in samples {
        b.add(m);
    }
    b.finish()
}

impl Builder {
    fn add(&mut self, m: Metric) {
        let (resource, attributes) = split_labels(&m.labels);
        let r = self.resource(resource);
        let meta = &m.meta;
        let family = &meta.family;
        let grouped = match meta.kind {
            MetricType::Histogram => histogram_part(&m, family),
            MetricType::Summary => summary_part(&m, family),
            _ => None,
        };
        if let Some((kind, part)) = grouped {
            let key = MetricKey {
                name: family.clone(),
                kind,
                help: meta.help.clone(),
                unit: meta.unit.clone(),
            };
            let mi = self.metric(r, key);
            let attributes = match part {
                Part::Bucket(_) | Part::Quantile(_) => without(&attributes, part.label()),
                _ => attributes,
            };
            let point = (r, mi, attributes, m.timestamp_ms);
            let i = match self.by_point.get(&point) {
                Some(&i) => i,
                None => {
                    let parts = match kind {
                        Kind::Histogram => Parts::Histogram(HistogramParts::default()),
                        _ => Parts::Summary(SummaryParts::default()),
                    };
                    self.parts
                        .push((r, mi, point.2.clone(), m.timestamp_ms, parts));
                    self.by_point.insert(point, self.parts.len() - 1);
                    self.parts.len() - 1
                }
            };
            let parts = &mut self.parts[i].4;
            part.apply(parts, m.value);
            if let (Parts::Histogram(h), Some(e)) = (parts, m.exemplar.as_deref()) {
                h.exemplars.push(otlp_exemplar(e));
            }
            return;
        }
        let kind = match meta.kind {
            MetricType::Counter => Kind::Counter,
            _ => Kind::Gauge,
        };
        let key = MetricKey {
            name: m.name.clone(),
            kind,
            help: meta.help.clone(),
            unit: meta.unit.clone(),
        };
        let mi = self.metric(r, key);
        let point = NumberDataPoint {
            attributes: attributes_of(&attributes),
            time_unix_nano: time_ns(m.timestamp_ms),
            value: Some(number_data_point::Value::AsDouble(m.value)),
            exemplars: m
                .exemplar
                .as_deref()
                .map(otlp_exemplar)
                .into_iter()
                .collect(),
            ..Default::default()
        };
        match &mut self.metrics(r)[mi].data {
            Some(Data::Gauge(g)) => g.data_points.push(point),
            Some(Data::Sum(s)) => s.data_points.push(point),
            _ => {}
        }
    }

    fn metrics(&mut self, r: usize) -> &mut Vec<OtlpMetric> {
        &mut self.resources[r].scope_metrics[0].metrics
    }

    fn resource(&mut self, labels: Labels) -> usize {
        let resources = &mut self.resources;
        *self.by_resource.entry(labels).or_insert_with_key(|labels| {
            resources.push(ResourceMetrics {
                resource: Some(Resource {
                    attributes: attributes_of(labels),
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics::default()],
                ..Default::default()
            });
            resources.len() - 1
        })
    }

    fn metric(&mut self, r: usize, key: MetricKey) -> usize {
        if let Some(&i) = self.by_metric.get(&(r, key.clone())) {
            return i;
        }
        let cumulative = AggregationTemporality::Cumulative as i32;
        let data = match key.kind {
            Kind::Gauge => Data::Gauge(Gauge::default()),
            Kind::Counter => Data::Sum(Sum {
                aggregation_temporality: cumulative,
                is_monotonic: true,
                data_points: vec![],
            }),
            Kind::Histogram => Data::Histogram(Histogram {
                aggregation_temporality: cumulative,
                data_points: vec![],
            }),
            Kind::Summary => Data::Summary(Summary::default()),
        };
        let metrics = self.metrics(r);
        metrics.push(OtlpMetric {
            name: key.name.to_string(),
            description: key.help.as_deref().unwrap_or_default().to_string(),
            unit: key.unit.as_deref().unwrap_or_default().to_string(),
            data: Some(data),
            ..Default::default()
        });
        let i = metrics.len() - 1;
        self.by_metric.insert((r, key), i);
        i
    }

    fn finish(mut self) -> ExportMetricsServiceRequest {
        for (r, mi, attributes, ms, parts) in std::mem::take(&mut self.parts) {
            let attributes = attributes_of(&attributes);
            let time_unix_nano = time_ns(ms);
            match (&mut self.metrics(r)[mi].data, parts) {
                (Some(Data::Histogram(h)), Parts::Histogram(p)) => {
                    h.data_points
                        .push(histogram_point(p, attributes, time_unix_nano));
                }
                (Some(Data::Summary(s)), Parts::Summary(p)) => {
                    let mut quantile_values: Vec<_> = p
                        .quantiles
                        .into_iter()
                        .map(|(quantile, value)| summary_data_point::ValueAtQuantile {
                            quantile,
                            value,
                        })
                        .collect();
                    quantile_values.sort_by(|a, b| a.quantile.total_cmp(&b.quantile));
                    s.data_points.push(SummaryDataPoint {
                        attributes,
                        time_unix_nano,
                        count: count(p.count.unwrap_or(0.0)),
                        sum: p.sum.unwrap_or(0.0),
                        quantile_values,
                        ..Default::default()
                    });
                }
                _ => {}
            }
        }
        ExportMetricsServiceRequest {
            resource_metrics: self.resources,
        }
    }
}

fn histogram_point(
    mut p: HistogramParts,
    attributes: Vec<KeyValue>,
    time_unix_nano: u64,
) -> HistogramDataPoint {
    p.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Two spellings of one bound (`1` and `1.0`) are one bucket: OTLP
    // bounds are strictly increasing.
    p.buckets.dedup_by(|a, b| a.0 == b.0);
    let total = p.count.or(p.inf).or(p.buckets.last().map(|b| b.1));
    let mut bucket_counts = Vec::with_capacity(p.buckets.len() + 1);
    let mut below = 0.0;
    for &(_, cumulative) in &p.buckets {
        bucket_counts.push(count(cumulative - below));
        below = cumulative;
    }
    bucket_counts.push(count(total.unwrap_or(below) - below));
    HistogramDataPoint {
        attributes,
        time_unix_nano,
        count: count(total.unwrap_or(0.0)),
        sum: p.sum,
        explicit_bounds: p.buckets.iter().map(|b| b.0).collect(),
        bucket_counts,
        exemplars: p.exemplars,
        ..Default::default()
    }
}

/// Which part of a histogram or summary point a sample is.
#[derive(Debug, Clone, Copy)]
enum Part {
    Bucket(Option<f64>),
    Quantile(f64),
    Sum,
    Count,
}

impl Part {
    fn label(self) -> &'static str {
        match self {
            Part::Quantile(_) => "quantile",
            _ => "le",
        }
    }

    fn apply(self, parts: &mut Parts, value: f64) {
        match (parts, self) {
            (Parts::Histogram(h), Part::Bucket(Some(le))) => h.buckets.push((le, value)),
            (Parts::Histogram(h), Part::Bucket(None)) => h.inf = Some(value),
            (Parts::Histogram(h), Part::Sum) => h.sum = Some(value),
            (Parts::Histogram(h), Part::Count) => h.count = Some(value),
            (Parts::Summary(s), Part::Quantile(q)) => s.quantiles.push((q, value)),
            (Parts::Summary(s), Part::Sum) => s.sum = Some(value),
            (Parts::Summary(s), Part::Count) => s.count = Some(value),
            _ => {}
        }
    }
}

/// A whole, non-negative count that fits a `u64`.
fn is_count(v: f64) -> bool {
    v >= 0.0 && v.fract() == 0.0 && v < 18_446_744_073_709_551_616.0
}

fn count(v: f64) -> u64 {
    // Checked by `is_count` on the way in; differences of valid cumulative
    // counts stay whole.
    if v > 0.0 { v as u64 } else { 0 }
}

/// The part of a histogram a sample is, when it fits the shape.
fn histogram_part(m: &Metric, family: &str) -> Option<(Kind, Part)> {
    let suffix = m.name.strip_prefix(family)?;
    let part = match suffix {
        "_bucket" => {
            let le = m.labels.get("le")?;
            if le == "+Inf" {
                Part::Bucket(None)
            } else {
                // Any spelling of a finite bound: OpenMetrics writes `1.0`
                // where Prometheus text writes `1` (the decoder gives back
                // `float_label`'s spelling).
                let v: f64 = le.parse().ok().filter(|v: &f64| v.is_finite())?;
                Part::Bucket(Some(v))
            }
        }
        "_sum" => Part::Sum,
        "_count" => Part::Count,
        _ => return None,
    };
    if !matches!(part, Part::Sum) && !is_count(m.value) {
        return None;
    }
    Some((Kind::Histogram, part))
}

/// The part of a summary a sample is, when it fits the shape.
fn summary_part(m: &Metric, family: &str) -> Option<(Kind, Part)> {
    let suffix = m.name.strip_prefix(family)?;
    let part = match suffix {
        "" => {
            let v: f64 = m.labels.get("quantile")?.parse().ok()?;
            Part::Quantile(v)
        }
        "_sum" => Part::Sum,
        "_count" if is_count(m.value) => Part::Count,
        _ => return None,
    };
    Some((Kind::Summary, part))
}

/// (resource labels, the rest).
fn split_labels(labels: &Labels) -> (Labels, Labels) {
    if labels.iter().all(|l| is_resource_label(&l.name)) {
        return (labels.clone(), Labels::empty());
    }
    if !labels.iter().any(|l| is_resource_label(&l.name)) {
        return (Labels::empty(), labels.clone());
    }
    let mut resource = labels.to_builder();
    resource.retain(|l| is_resource_label(&l.name));
    let mut rest = labels.to_builder();
    rest.retain(|l| !is_resource_label(&l.name));
    (resource.build(), rest.build())
}

fn without(labels: &Labels, name: &str) -> Labels {
    let mut b = labels.to_builder();
    b.remove(name);
    b.build()
}

fn attributes_of(labels: &Labels) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|l| string_attribute(&l.name, &l.value))
        .collect()
}

fn time_ns(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

fn otlp_exemplar(e: &iotel_model::Exemplar) -> OtlpExemplar {
    let trace_id = e.labels.get("trace_id").and_then(parse_id::<16>);
    let span_id = e.labels.get("span_id").and_then(parse_id::<8>);
    let filtered = e
        .labels
        .iter()
        .filter(|l| {
            !(l.name.as_ref() == "trace_id" && trace_id.is_some()
                || l.name.as_ref() == "span_id" && span_id.is_some())
        })
        .map(|l| string_attribute(&l.name, &l.value))
        .collect();
    OtlpExemplar {
        filtered_attributes: filtered,
        time_unix_nano: e.timestamp_ms.map_or(0, time_ns),
        value: Some(exemplar::Value::AsDouble(e.value)),
        span_id: span_id.map(Vec::from).unwrap_or_default(),
        trace_id: trace_id.map(Vec::from).unwrap_or_default(),
    }
}
