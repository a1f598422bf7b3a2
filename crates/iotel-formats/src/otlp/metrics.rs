//! OTLP `ExportMetricsServiceRequest` → samples, flattened as Prometheus
//! sees them (the model's [`Metric`] is one sample of one series).
//!
//! | OTLP                                   | samples                                         |
//! |----------------------------------------|-------------------------------------------------|
//! | `Resource.attributes`                  | labels (non-strings as their JSON text)         |
//! | data point `attributes`                | labels too; a point's value wins over the resource's |
//! | `name`, `description`, `unit`          | the series name (as sent, not renamed), the family's help and unit |
//! | `time_unix_nano`                       | `timestamp_ms` (truncated to milliseconds)      |
//! | gauge                                  | a `gauge` sample per point                      |
//! | sum, monotonic, cumulative             | a `counter` sample per point                    |
//! | sum, not monotonic, cumulative         | a `gauge` sample per point                      |
//! | histogram, cumulative                  | `<name>_bucket{le}` (cumulative, `le="+Inf"` is the count), `<name>_sum` (when sent), `<name>_count` |
//! | summary                                | `<name>{quantile}`, `<name>_sum`, `<name>_count` |
//!
//! Not mapped, each data point rejected and counted by reason (see
//! [`super::Rejected`]): delta sums and delta histograms
//! (`delta_temporality`: Prometheus-style series are cumulative, and
//! accumulating deltas needs state a decoder does not keep), exponential
//! histograms (`exponential_histogram`), points without a value or flagged
//! "no recorded value" (`no_value`), points without a time (`no_time`),
//! histograms whose bucket counts do not match their bounds
//! (`invalid_histogram`). Not kept: start times, histogram min and max,
//! scopes, metric metadata and schema URLs.
//!
//! Exemplars become the model's (one per sample): labels `trace_id` and
//! `span_id` (lowercase hex, when not empty), the `filtered_attributes`,
//! the value, and `time_unix_nano` in ms (none when 0). A gauge's or
//! sum's point gives its sample its first exemplar; a histogram's point
//! gives each of its exemplars to the first bucket whose `le` is at or
//! above the exemplar's value (`+Inf` for the rest), as Prometheus's OTLP
//! receiver does. Exemplars left over (a second one for a sample or a
//! bucket, or one without a value) are counted in [`Decoded::dropped_exemplars`].

pub use super::metrics_export::{RESOURCE_LABELS, export_request};

use super::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use super::proto::common::v1::KeyValue;
use super::proto::metrics::v1::{
    AggregationTemporality, DataPointFlags, Exemplar as OtlpExemplar, HistogramDataPoint,
    Metric as OtlpMetric, NumberDataPoint, SummaryDataPoint, exemplar, metric::Data,
    number_data_point,
};
use super::{Rejected, hex, label_value, resource_labels};
use iotel_model::{Exemplar, Labels, Metric, MetricMeta, MetricType};
use prost::Message;
use std::sync::Arc;

/// The samples of a request and what did not convert.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub samples: Vec<Metric>,
    /// Data points rejected, by reason.
    pub rejected: Rejected,
    /// Exemplars left out (their points were taken): more than one for a
    /// sample or a bucket.
    pub dropped_exemplars: u64,
}

/// The `ExportMetricsServiceRequest` of a protobuf body (uncompressed).
///
/// # Errors
/// A body that is not one.
pub fn decode_request(body: &[u8]) -> Result<ExportMetricsServiceRequest, prost::DecodeError> {
    ExportMetricsServiceRequest::decode(body)
}

/// The `ExportMetricsServiceRequest` of an OTLP/JSON body (uncompressed).
///
/// # Errors
/// A body that is not one, with the place in it.
pub fn decode_json_request(body: &[u8]) -> Result<ExportMetricsServiceRequest, serde_json::Error> {
    serde_json::from_slice(body)
}

/// The body of a successful response (protobuf): a `partial_success` when
/// something was rejected.
pub fn encode_response(rejected: &Rejected) -> Vec<u8> {
    response(rejected).encode_to_vec()
}

/// The response message: a `partial_success` when something was rejected.
pub fn response(rejected: &Rejected) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: (rejected.total() > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(rejected.total()).unwrap_or(i64::MAX),
            error_message: rejected.message(),
        }),
    }
}

/// The samples of a request, in request order.
pub fn samples(request: ExportMetricsServiceRequest) -> Decoded {
    let mut d = Decoded::default();
    for (ri, rm) in request.resource_metrics.into_iter().enumerate() {
        let labels = resource_labels(rm.resource);
        for (si, sm) in rm.scope_metrics.into_iter().enumerate() {
            for (mi, m) in sm.metrics.into_iter().enumerate() {
                let at = format!(
                    "resource_metrics[{ri}].scope_metrics[{si}].metrics[{mi}] ({:?})",
                    m.name
                );
                metric(&labels, m, &at, &mut d);
            }
        }
    }
    d
}

fn meta(m: &OtlpMetric, kind: MetricType) -> Arc<MetricMeta> {
    let mut meta = MetricMeta::new(m.name.as_str(), kind);
    if !m.description.is_empty() {
        meta.help = Some(m.description.as_str().into());
    }
    if !m.unit.is_empty() {
        meta.unit = Some(m.unit.as_str().into());
    }
    Arc::new(meta)
}

fn is_cumulative(temporality: i32) -> bool {
    temporality == AggregationTemporality::Cumulative as i32
}

fn metric(resource: &Labels, mut m: OtlpMetric, at: &str, d: &mut Decoded) {
    let Some(data) = m.data.take() else {
        return;
    };
    let kind = match &data {
        Data::Gauge(_) => MetricType::Gauge,
        Data::Sum(s) if s.is_monotonic => MetricType::Counter,
        Data::Sum(_) => MetricType::Gauge,
        Data::Histogram(_) => MetricType::Histogram,
        Data::Summary(_) => MetricType::Summary,
        Data::ExponentialHistogram(h) => {
            d.rejected
                .add_n("exponential_histogram", h.data_points.len() as u64, || {
                    format!("{at}: exponential histograms are not supported")
                });
            return;
        }
    };
    let meta = meta(&m, kind);
    match data {
        Data::Gauge(g) => numbers(resource, &meta, g.data_points, at, d),
        Data::Sum(s) if is_cumulative(s.aggregation_temporality) => {
            numbers(resource, &meta, s.data_points, at, d);
        }
        Data::Sum(s) => {
            d.rejected
                .add_n("delta_temporality", s.data_points.len() as u64, || {
                    format!("{at}: a sum with delta temporality is not supported; send cumulative")
                });
        }
        Data::Histogram(h) if is_cumulative(h.aggregation_temporality) => {
            for p in h.data_points {
                histogram(resource, &meta, p, at, d);
            }
        }
        Data::Histogram(h) => {
            d.rejected
                .add_n("delta_temporality", h.data_points.len() as u64, || {
                    format!(
                        "{at}: a histogram with delta temporality is not supported; send cumulative"
                    )
                });
        }
        Data::Summary(s) => {
            for p in s.data_points {
                summary(resource, &meta, p, at, d);
            }
        }
        Data::ExponentialHistogram(_) => {}
    }
}

fn point_labels(resource: &Labels, attributes: Vec<KeyValue>) -> Labels {
    if attributes.is_empty() {
        return resource.clone();
    }
    let mut b = resource.to_builder();
    for kv in attributes {
        let v = kv.value.map(label_value).unwrap_or_default();
        b.set(&kv.key, &v);
    }
    b.build()
}

fn no_recorded_value(flags: u32) -> bool {
    flags & DataPointFlags::NoRecordedValueMask as u32 != 0
}

fn time_ms(ns: u64, at: &str, d: &mut Decoded) -> Option<i64> {
    if ns == 0 {
        d.rejected.add("no_time", || {
            format!("{at}: a data point without time_unix_nano")
        });
        return None;
    }
    Some(i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX))
}

fn sample(name: &str, meta: &Arc<MetricMeta>, labels: Labels, value: f64, ms: i64) -> Metric {
    Metric {
        name: name.into(),
        labels,
        value,
        timestamp_ms: ms,
        meta: meta.clone(),
        exemplar: None,
    }
}

fn numbers(
    resource: &Labels,
    meta: &Arc<MetricMeta>,
    points: Vec<NumberDataPoint>,
    at: &str,
    d: &mut Decoded,
) {
    for p in points {
        let value = match p.value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            None => f64::NAN,
        };
        if p.value.is_none() || no_recorded_value(p.flags) {
            d.rejected
                .add("no_value", || format!("{at}: a data point without a value"));
            continue;
        }
        let Some(ms) = time_ms(p.time_unix_nano, at, d) else {
            continue;
        };
        let labels = point_labels(resource, p.attributes);
        let mut s = sample(&meta.family, meta, labels, value, ms);
        let n = p.exemplars.len();
        s.exemplar = p.exemplars.into_iter().find_map(model_exemplar);
        d.dropped_exemplars += (n - usize::from(s.exemplar.is_some())) as u64;
        d.samples.push(s);
    }
}

/// A bound as Prometheus writes `le` and `quantile`: the shortest text
/// that reads back as the same double, `+Inf`, `-Inf`, `NaN`.
pub fn float_label(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn histogram(
    resource: &Labels,
    meta: &Arc<MetricMeta>,
    p: HistogramDataPoint,
    at: &str,
    d: &mut Decoded,
) {
    if no_recorded_value(p.flags) {
        d.rejected
            .add("no_value", || format!("{at}: a data point without a value"));
        return;
    }
    if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
        d.rejected.add("invalid_histogram", || {
            format!(
                "{at}: {} bucket counts for {} bounds; expected one more count than bounds",
                p.bucket_counts.len(),
                p.explicit_bounds.len()
            )
        });
        return;
    }
    let Some(ms) = time_ms(p.time_unix_nano, at, d) else {
        return;
    };
    let labels = point_labels(resource, p.attributes);
    let family = &meta.family;
    let bucket = format!("{family}_bucket");
    let first_bucket = d.samples.len();
    let mut cumulative = 0u64;
    for (bound, count) in p.explicit_bounds.iter().zip(&p.bucket_counts) {
        cumulative = cumulative.saturating_add(*count);
        let l = labels.with("le", &float_label(*bound));
        d.samples
            .push(sample(&bucket, meta, l, cumulative as f64, ms));
    }
    let inf = labels.with("le", "+Inf");
    d.samples
        .push(sample(&bucket, meta, inf, p.count as f64, ms));
    let buckets = &mut d.samples[first_bucket..];
    for e in p.exemplars {
        let Some(e) = model_exemplar(e) else {
            d.dropped_exemplars += 1;
            continue;
        };
        let i = p
            .explicit_bounds
            .iter()
            .take(buckets.len() - 1)
            .position(|&le| e.value <= le)
            .unwrap_or(buckets.len() - 1);
        match &mut buckets[i].exemplar {
            Some(_) => d.dropped_exemplars += 1,
            slot => *slot = Some(e),
        }
    }
    if let Some(sum) = p.sum {
        d.samples.push(sample(
            &format!("{family}_sum"),
            meta,
            labels.clone(),
            sum,
            ms,
        ));
    }
    d.samples.push(sample(
        &format!("{family}_count"),
        meta,
        labels,
        p.count as f64,
        ms,
    ));
}

/// The model's exemplar of an OTLP one (see the module docs); none
/// without a value.
fn model_exemplar(e: OtlpExemplar) -> Option<Box<Exemplar>> {
    let value = match e.value? {
        exemplar::Value::AsDouble(v) => v,
        exemplar::Value::AsInt(i) => i as f64,
    };
    let mut b = Labels::empty().to_builder();
    for kv in e.filtered_attributes {
        let v = kv.value.map(label_value).unwrap_or_default();
        b.set(&kv.key, &v);
    }
    if !e.trace_id.is_empty() {
        b.set("trace_id", &hex(&e.trace_id));
    }
    if !e.span_id.is_empty() {
        b.set("span_id", &hex(&e.span_id));
    }
    Some(Box::new(Exemplar {
        labels: b.build(),
        value,
        timestamp_ms: (e.time_unix_nano != 0)
            .then(|| i64::try_from(e.time_unix_nano / 1_000_000).unwrap_or(i64::MAX)),
    }))
}

fn summary(
    resource: &Labels,
    meta: &Arc<MetricMeta>,
    p: SummaryDataPoint,
    at: &str,
    d: &mut Decoded,
) {
    if no_recorded_value(p.flags) {
        d.rejected
            .add("no_value", || format!("{at}: a data point without a value"));
        return;
    }
    let Some(ms) = time_ms(p.time_unix_nano, at, d) else {
        return;
    };
    let labels = point_labels(resource, p.attributes);
    let family = &meta.family;
    for q in p.quantile_values {
        let l = labels.with("quantile", &float_label(q.quantile));
        d.samples.push(sample(family, meta, l, q.value, ms));
    }
    d.samples.push(sample(
        &format!("{family}_sum"),
        meta,
        labels.clone(),
        p.sum,
        ms,
    ));
    d.samples.push(sample(
        &format!("{family}_count"),
        meta,
        labels,
        p.count as f64,
        ms,
    ));
}
