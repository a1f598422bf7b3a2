//! Every transform type, in one enum.

// Anomaly detection is for gateways and clouds: the edge build leaves it out.
#[cfg(feature = "anomaly")]
pub mod anomaly;
pub mod cardinality_limit;
// Spans enter a node through the `otlp` source: the edge build, which has
// none, leaves this out.
#[cfg(feature = "otlp")]
pub mod clock_skew;
#[cfg(feature = "logs")]
pub mod correlate;
pub(crate) mod describe;
pub mod device_lifecycle;
#[cfg(feature = "logs")]
pub mod device_trace;
pub mod enrich;
#[cfg(feature = "logs")]
pub mod filter;
#[cfg(feature = "logs")]
pub mod labels;
#[cfg(feature = "logs")]
pub mod map_fields;
pub mod names;
#[cfg(feature = "logs")]
pub mod parse;
#[cfg(feature = "logs")]
pub mod redact;
pub mod relabel;
#[cfg(feature = "logs")]
pub mod sample;
pub mod schema;
#[cfg(feature = "logs")]
pub mod timestamp;

use crate::{BuildContext, Problem};
use iotel_engine::{SignalSet, Transform};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
// Externally tagged: the loader moves `type` out of the table and wraps the
// body in it, so errors keep their key path (see `config::component`).
#[serde(rename_all = "snake_case")]
pub enum TransformConfig {
    #[cfg(feature = "anomaly")]
    Anomaly(anomaly::Config),
    CardinalityLimit(cardinality_limit::Config),
    #[cfg(feature = "otlp")]
    ClockSkew(clock_skew::Config),
    #[cfg(feature = "logs")]
    Correlate(correlate::Config),
    Enrich(enrich::Config),
    DeviceLifecycle(device_lifecycle::Config),
    #[cfg(feature = "logs")]
    DeviceTrace(device_trace::Config),
    #[cfg(feature = "logs")]
    Filter(filter::Config),
    #[cfg(feature = "logs")]
    Labels(labels::Config),
    #[cfg(feature = "logs")]
    Redact(redact::Config),
    #[cfg(feature = "logs")]
    Sample(sample::Config),
    Relabel(relabel::Config),
    Schema(schema::Config),
    #[cfg(feature = "logs")]
    MapFields(map_fields::Config),
    #[cfg(feature = "logs")]
    Parse(parse::Config),
    #[cfg(feature = "logs")]
    Timestamp(timestamp::Config),
}

impl TransformConfig {
    /// Every type name, as written in `type = "..."`.
    pub const TYPES: &'static [&'static str] = &[
        "anomaly",
        "cardinality_limit",
        "clock_skew",
        "correlate",
        "enrich",
        "device_lifecycle",
        "device_trace",
        "filter",
        "labels",
        "redact",
        "relabel",
        "sample",
        "schema",
        "map_fields",
        "parse",
        "timestamp",
    ];

    /// The Cargo feature a type needs when this build left it out (the
    /// edge build keeps only what a device needs): the loader says so
    /// instead of calling the type unknown.
    pub fn missing_feature(type_name: &str) -> Option<&'static str> {
        const LOGS: &[&str] = &[
            "filter",
            "labels",
            "map_fields",
            "parse",
            "redact",
            "sample",
            "timestamp",
            "device_trace",
            "correlate",
        ];
        if !cfg!(feature = "otlp") && type_name == "clock_skew" {
            return Some("otlp");
        }
        if !cfg!(feature = "anomaly") && type_name == "anomaly" {
            return Some("anomaly");
        }
        (!cfg!(feature = "logs") && LOGS.contains(&type_name)).then_some("logs")
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            #[cfg(feature = "anomaly")]
            TransformConfig::Anomaly(_) => "anomaly",
            TransformConfig::CardinalityLimit(_) => "cardinality_limit",
            #[cfg(feature = "otlp")]
            TransformConfig::ClockSkew(_) => "clock_skew",
            #[cfg(feature = "logs")]
            TransformConfig::Correlate(_) => "correlate",
            TransformConfig::Enrich(_) => "enrich",
            TransformConfig::DeviceLifecycle(_) => "device_lifecycle",
            #[cfg(feature = "logs")]
            TransformConfig::DeviceTrace(_) => "device_trace",
            #[cfg(feature = "logs")]
            TransformConfig::Filter(_) => "filter",
            #[cfg(feature = "logs")]
            TransformConfig::Labels(_) => "labels",
            #[cfg(feature = "logs")]
            TransformConfig::Redact(_) => "redact",
            #[cfg(feature = "logs")]
            TransformConfig::Sample(_) => "sample",
            TransformConfig::Relabel(_) => "relabel",
            TransformConfig::Schema(_) => "schema",
            #[cfg(feature = "logs")]
            TransformConfig::MapFields(_) => "map_fields",
            #[cfg(feature = "logs")]
            TransformConfig::Parse(_) => "parse",
            #[cfg(feature = "logs")]
            TransformConfig::Timestamp(_) => "timestamp",
        }
    }

    /// The signals this transform takes (and emits).
    pub fn signals(&self) -> SignalSet {
        match self {
            // Metrics pass unchanged; the anomaly events it makes of them
            // (logs) go to its output `anomalies` (`output_signals`).
            #[cfg(feature = "anomaly")]
            TransformConfig::Anomaly(_) => SignalSet::METRICS,
            TransformConfig::CardinalityLimit(_) | TransformConfig::Relabel(_) => {
                SignalSet::METRICS
            }
            TransformConfig::Enrich(_) => SignalSet::ALL,
            // Everything passes unchanged; the lifecycle events it makes
            // (logs) go to its output `events` (`output_signals`).
            TransformConfig::DeviceLifecycle(_) => SignalSet::ALL,
            // Logs and metrics pass unchanged, so an OTLP source can feed it.
            #[cfg(feature = "otlp")]
            TransformConfig::ClockSkew(_) => SignalSet::ALL,
            #[cfg(feature = "logs")]
            TransformConfig::Correlate(_) => SignalSet::LOGS,
            // Metrics pass unchanged, so an OTLP source (all signals) can feed it.
            #[cfg(feature = "logs")]
            TransformConfig::DeviceTrace(_) => SignalSet::ALL,
            #[cfg(feature = "logs")]
            TransformConfig::Filter(_) => SignalSet::LOGS,
            #[cfg(feature = "logs")]
            TransformConfig::Labels(_) => SignalSet::LOGS,
            #[cfg(feature = "logs")]
            TransformConfig::Redact(_) => SignalSet::LOGS,
            #[cfg(feature = "logs")]
            TransformConfig::Sample(_) => SignalSet::LOGS,
            TransformConfig::Schema(_) => SignalSet::LOGS,
            #[cfg(feature = "logs")]
            TransformConfig::Parse(_) => SignalSet::LOGS,
            #[cfg(feature = "logs")]
            TransformConfig::Timestamp(_) => SignalSet::LOGS,
            #[cfg(feature = "logs")]
            TransformConfig::MapFields(_) => SignalSet::LOGS.union(SignalSet::TRACES),
        }
    }

    /// Named outputs besides the default one, taken as input `<id>.<name>`.
    pub fn outputs(&self) -> &'static [&'static str] {
        match self {
            TransformConfig::Schema(_) => &[schema::DEAD_LETTER],
            #[cfg(feature = "anomaly")]
            TransformConfig::Anomaly(_) => &[anomaly::ANOMALIES],
            TransformConfig::DeviceLifecycle(_) => &[device_lifecycle::EVENTS],
            _ => &[],
        }
    }

    /// Named outputs whose signals differ from the default output's.
    pub fn output_signals(&self) -> &'static [(&'static str, SignalSet)] {
        match self {
            #[cfg(feature = "anomaly")]
            TransformConfig::Anomaly(_) => &[(anomaly::ANOMALIES, SignalSet::LOGS)],
            TransformConfig::DeviceLifecycle(_) => &[(device_lifecycle::EVENTS, SignalSet::LOGS)],
            _ => &[],
        }
    }

    pub fn validate(&self) -> Vec<Problem> {
        match self {
            #[cfg(feature = "anomaly")]
            TransformConfig::Anomaly(c) => c.validate(),
            TransformConfig::CardinalityLimit(c) => c.validate(),
            #[cfg(feature = "otlp")]
            TransformConfig::ClockSkew(c) => c.validate(),
            #[cfg(feature = "logs")]
            TransformConfig::Correlate(c) => c.validate(),
            TransformConfig::Enrich(c) => c.validate(),
            TransformConfig::DeviceLifecycle(c) => c.validate(),
            #[cfg(feature = "logs")]
            TransformConfig::DeviceTrace(c) => c.validate(),
            #[cfg(feature = "logs")]
            TransformConfig::Filter(c) => c.validate(),
            #[cfg(feature = "logs")]
            TransformConfig::Labels(c) => c.validate(),
            #[cfg(feature = "logs")]
            TransformConfig::Redact(c) => c.validate(),
            #[cfg(feature = "logs")]
            TransformConfig::Sample(c) => c.validate(),
            TransformConfig::Relabel(c) => c.validate(),
            TransformConfig::Schema(c) => c.validate(),
            #[cfg(feature = "logs")]
            TransformConfig::MapFields(c) => c.validate(),
            #[cfg(feature = "logs")]
            TransformConfig::Parse(c) => c.validate(),
            #[cfg(feature = "logs")]
            TransformConfig::Timestamp(c) => c.validate(),
        }
    }

    /// # Errors
    /// A problem found only when building, such as an unreadable file.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        match self {
            #[cfg(feature = "anomaly")]
            TransformConfig::Anomaly(c) => c.build(cx),
            TransformConfig::CardinalityLimit(c) => c.build(cx),
            #[cfg(feature = "otlp")]
            TransformConfig::ClockSkew(c) => c.build(cx),
            #[cfg(feature = "logs")]
            TransformConfig::Correlate(c) => c.build(cx),
            TransformConfig::Enrich(c) => c.build(cx),
            TransformConfig::DeviceLifecycle(c) => c.build(cx),
            #[cfg(feature = "logs")]
            TransformConfig::DeviceTrace(c) => c.build(cx),
            #[cfg(feature = "logs")]
            TransformConfig::Filter(c) => c.build(cx),
            #[cfg(feature = "logs")]
            TransformConfig::Labels(c) => c.build(cx),
            #[cfg(feature = "logs")]
            TransformConfig::Redact(c) => c.build(cx),
            #[cfg(feature = "logs")]
            TransformConfig::Sample(c) => c.build(cx),
            TransformConfig::Relabel(c) => c.build(cx),
            TransformConfig::Schema(c) => c.build(cx),
            #[cfg(feature = "logs")]
            TransformConfig::MapFields(c) => c.build(cx),
            #[cfg(feature = "logs")]
            TransformConfig::Parse(c) => c.build(cx),
            #[cfg(feature = "logs")]
            TransformConfig::Timestamp(c) => c.build(cx),
        }
    }
}
