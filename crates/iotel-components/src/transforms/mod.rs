//! Every transform type, in one enum.

pub mod cardinality_limit;
pub(crate) mod describe;
pub mod enrich;
pub mod filter;
pub mod labels;
pub mod map_fields;
pub mod names;
pub mod parse;
pub mod redact;
pub mod relabel;
pub mod sample;
pub mod schema;
pub mod timestamp;

use crate::{BuildContext, Problem};
use iotel_engine::{SignalSet, Transform};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
// Externally tagged: the loader moves `type` out of the table and wraps the
// body in it, so errors keep their key path (see `config::component`).
#[serde(rename_all = "snake_case")]
pub enum TransformConfig {
    CardinalityLimit(cardinality_limit::Config),
    Enrich(enrich::Config),
    Filter(filter::Config),
    Labels(labels::Config),
    Redact(redact::Config),
    Sample(sample::Config),
    Relabel(relabel::Config),
    Schema(schema::Config),
    MapFields(map_fields::Config),
    Parse(parse::Config),
    Timestamp(timestamp::Config),
}

impl TransformConfig {
    /// Every type name, as written in `type = "..."`.
    pub const TYPES: &'static [&'static str] = &[
        "cardinality_limit",
        "enrich",
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

    pub fn type_name(&self) -> &'static str {
        match self {
            TransformConfig::CardinalityLimit(_) => "cardinality_limit",
            TransformConfig::Enrich(_) => "enrich",
            TransformConfig::Filter(_) => "filter",
            TransformConfig::Labels(_) => "labels",
            TransformConfig::Redact(_) => "redact",
            TransformConfig::Sample(_) => "sample",
            TransformConfig::Relabel(_) => "relabel",
            TransformConfig::Schema(_) => "schema",
            TransformConfig::MapFields(_) => "map_fields",
            TransformConfig::Parse(_) => "parse",
            TransformConfig::Timestamp(_) => "timestamp",
        }
    }

    /// The signals this transform takes (and emits).
    pub fn signals(&self) -> SignalSet {
        match self {
            TransformConfig::CardinalityLimit(_) | TransformConfig::Relabel(_) => {
                SignalSet::METRICS
            }
            TransformConfig::Enrich(_) => SignalSet::ALL,
            TransformConfig::Filter(_)
            | TransformConfig::Labels(_)
            | TransformConfig::Redact(_)
            | TransformConfig::Sample(_) => SignalSet::LOGS,
            TransformConfig::Schema(_) => SignalSet::LOGS,
            TransformConfig::Parse(_) | TransformConfig::Timestamp(_) => SignalSet::LOGS,
            TransformConfig::MapFields(_) => SignalSet::LOGS.union(SignalSet::TRACES),
        }
    }

    /// Named outputs besides the default one, taken as input `<id>.<name>`.
    pub fn outputs(&self) -> &'static [&'static str] {
        match self {
            TransformConfig::Schema(_) => &[schema::DEAD_LETTER],
            _ => &[],
        }
    }

    pub fn validate(&self) -> Vec<Problem> {
        match self {
            TransformConfig::CardinalityLimit(c) => c.validate(),
            TransformConfig::Enrich(c) => c.validate(),
            #[cfg(feature = "logs")]
            TransformConfig::Filter(c) => c.validate(),
            #[cfg(not(feature = "logs"))]
            TransformConfig::Filter(_) => vec![crate::not_built(self.type_name(), "logs")],
            #[cfg(feature = "logs")]
            TransformConfig::Labels(c) => c.validate(),
            #[cfg(not(feature = "logs"))]
            TransformConfig::Labels(_) => vec![crate::not_built(self.type_name(), "logs")],
            #[cfg(feature = "logs")]
            TransformConfig::Redact(c) => c.validate(),
            #[cfg(not(feature = "logs"))]
            TransformConfig::Redact(_) => vec![crate::not_built(self.type_name(), "logs")],
            #[cfg(feature = "logs")]
            TransformConfig::Sample(c) => c.validate(),
            #[cfg(not(feature = "logs"))]
            TransformConfig::Sample(_) => vec![crate::not_built(self.type_name(), "logs")],
            TransformConfig::Relabel(c) => c.validate(),
            TransformConfig::Schema(c) => c.validate(),
            #[cfg(feature = "logs")]
            TransformConfig::MapFields(c) => c.validate(),
            #[cfg(not(feature = "logs"))]
            TransformConfig::MapFields(_) => vec![crate::not_built(self.type_name(), "logs")],
            #[cfg(feature = "logs")]
            TransformConfig::Parse(c) => c.validate(),
            #[cfg(not(feature = "logs"))]
            TransformConfig::Parse(_) => vec![crate::not_built(self.type_name(), "logs")],
            #[cfg(feature = "logs")]
            TransformConfig::Timestamp(c) => c.validate(),
            #[cfg(not(feature = "logs"))]
            TransformConfig::Timestamp(_) => vec![crate::not_built(self.type_name(), "logs")],
        }
    }

    /// # Errors
    /// A problem found only when building, such as an unreadable file.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        match self {
            TransformConfig::CardinalityLimit(c) => c.build(cx),
            TransformConfig::Enrich(c) => c.build(cx),
            #[cfg(feature = "logs")]
            TransformConfig::Filter(c) => c.build(cx),
            #[cfg(not(feature = "logs"))]
            TransformConfig::Filter(_) => Err(crate::not_built(self.type_name(), "logs")),
            #[cfg(feature = "logs")]
            TransformConfig::Labels(c) => c.build(cx),
            #[cfg(not(feature = "logs"))]
            TransformConfig::Labels(_) => Err(crate::not_built(self.type_name(), "logs")),
            #[cfg(feature = "logs")]
            TransformConfig::Redact(c) => c.build(cx),
            #[cfg(not(feature = "logs"))]
            TransformConfig::Redact(_) => Err(crate::not_built(self.type_name(), "logs")),
            #[cfg(feature = "logs")]
            TransformConfig::Sample(c) => c.build(cx),
            #[cfg(not(feature = "logs"))]
            TransformConfig::Sample(_) => Err(crate::not_built(self.type_name(), "logs")),
            TransformConfig::Relabel(c) => c.build(cx),
            TransformConfig::Schema(c) => c.build(cx),
            #[cfg(feature = "logs")]
            TransformConfig::MapFields(c) => c.build(cx),
            #[cfg(not(feature = "logs"))]
            TransformConfig::MapFields(_) => Err(crate::not_built(self.type_name(), "logs")),
            #[cfg(feature = "logs")]
            TransformConfig::Parse(c) => c.build(cx),
            #[cfg(not(feature = "logs"))]
            TransformConfig::Parse(_) => Err(crate::not_built(self.type_name(), "logs")),
            #[cfg(feature = "logs")]
            TransformConfig::Timestamp(c) => c.build(cx),
            #[cfg(not(feature = "logs"))]
            TransformConfig::Timestamp(_) => Err(crate::not_built(self.type_name(), "logs")),
        }
    }
}
