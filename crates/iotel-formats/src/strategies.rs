//! Proptest strategies for model values, shared by the codecs' property
//! tests. Values lean on the edges a codec gets wrong: empty strings,
//! non-ASCII, NaN payloads, negative zero, extreme timestamps.

use iotel_model::{Exemplar, Labels, MetricMeta, MetricType, Severity};
use proptest::prelude::*;
use proptest::sample::select;
use std::sync::Arc;

/// Up to three labels with names drawn from `names`, values from a fixed
/// set with empties, escapes and non-ASCII.
pub(crate) fn labels(names: &[&'static str]) -> impl Strategy<Value = Labels> + Clone {
    let name = select(names.to_vec());
    let value = select(vec!["", "1", "x", "d-17", "+Inf", "ünï\n\"", "a"]);
    proptest::collection::vec((name, value), 0..4).prop_map(Labels::from_pairs)
}

pub(crate) fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        (-100_000i64..100_000).prop_map(|n| n as f64 / 10.0),
        (-1000i64..1000).prop_map(|n| n as f64 / 1000.0),
        Just(0.0),
        Just(-0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        // Prometheus' staleness marker.
        Just(f64::from_bits(0x7ff0_0000_0000_0002)),
    ]
}

pub(crate) fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        -3i64..4,
        any::<i64>(),
        (0i64..100_000).prop_map(|d| 1_700_000_000_000 + d),
    ]
}

/// A log record's severity, or none.
pub(crate) fn severity() -> impl Strategy<Value = Option<Severity>> {
    proptest::option::of(select(vec![
        Severity::Trace,
        Severity::Debug,
        Severity::Info,
        Severity::Warn,
        Severity::Error,
        Severity::Fatal,
    ]))
}

pub(crate) fn meta() -> impl Strategy<Value = Arc<MetricMeta>> {
    let kind = select(vec![
        MetricType::Unknown,
        MetricType::Counter,
        MetricType::Gauge,
        MetricType::Histogram,
        MetricType::GaugeHistogram,
        MetricType::Summary,
        MetricType::Info,
        MetricType::StateSet,
    ]);
    let text = || proptest::option::of(select(vec!["", "h", "seconds", "Ünï"]));
    (select(vec!["", "up", "rtt"]), kind, text(), text()).prop_map(|(family, kind, help, unit)| {
        Arc::new(MetricMeta {
            family: Arc::from(family),
            kind,
            help: help.map(Arc::from),
            unit: unit.map(Arc::from),
        })
    })
}

/// An exemplar, or none, with label names from `names`.
pub(crate) fn exemplar(names: &[&'static str]) -> impl Strategy<Value = Option<Box<Exemplar>>> {
    proptest::option::of((labels(names), value(), proptest::option::of(timestamp()))).prop_map(
        |e| {
            e.map(|(labels, value, timestamp_ms)| {
                Box::new(Exemplar {
                    labels,
                    value,
                    timestamp_ms,
                })
            })
        },
    )
}
