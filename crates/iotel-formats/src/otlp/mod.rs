//! OTLP (the OpenTelemetry protocol): the model to and from its protobuf
//! messages. The messages are the generated ones of the
//! `opentelemetry-proto` crate (re-exported as [`proto`]), built from the
//! official `opentelemetry-proto` definitions without any transport.
//!
//! - [`logs`]: log records ↔ `ExportLogsServiceRequest`.
//! - [`traces`]: `ExportTraceServiceRequest` → spans (and spans → it).
//! - [`metrics`]: `ExportMetricsServiceRequest` ↔ samples (the encoder is
//!   `metrics_export.rs`).
//!
//! Decoding a request gives the events it could convert and the
//! [`Rejected`] ones, counted by reason, for an OTLP partial success.
//!
//! Shared by every signal: labels ↔ resource attributes, fields ↔ typed
//! attributes ([`any_value`], [`json_value`]), ids ↔ hex.

pub mod logs;
pub mod metrics;
mod metrics_export;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_decode;
#[cfg(test)]
mod tests_metrics_export;
pub mod traces;

pub use opentelemetry_proto::tonic as proto;

use proto::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value as Av};
use serde_json::Value;

/// `Content-Type` of an OTLP/HTTP protobuf request and response.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// `Content-Type` of an OTLP/HTTP JSON request and response.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Records (spans, data points) a request carried that did not become
/// events, counted by reason, with the first one's detail for the peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejected {
    /// How many, by stable reason code (`invalid_trace_id`, …), in the
    /// order first seen.
    pub by_reason: Vec<(&'static str, u64)>,
    /// What was wrong with the first one, naming where it was.
    pub first: Option<String>,
}

impl Rejected {
    /// Counts one record rejected for `reason`; `detail` is called only
    /// for the first.
    pub fn add(&mut self, reason: &'static str, detail: impl FnOnce() -> String) {
        self.add_n(reason, 1, detail);
    }

    /// Counts `n` records rejected for `reason`.
    pub fn add_n(&mut self, reason: &'static str, n: u64, detail: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        match self.by_reason.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, c)) => *c += n,
            None => self.by_reason.push((reason, n)),
        }
        if self.first.is_none() {
            self.first = Some(detail());
        }
    }

    /// Every record rejected.
    pub fn total(&self) -> u64 {
        self.by_reason.iter().map(|(_, n)| n).sum()
    }

    /// The partial-success message: the count by reason and the first
    /// detail (empty when nothing was rejected).
    pub fn message(&self) -> String {
        let Some(first) = &self.first else {
            return String::new();
        };
        let reasons: Vec<String> = self
            .by_reason
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        format!(
            "rejected {} ({}); first: {first}",
            self.total(),
            reasons.join(", ")
        )
    }
}

/// A resource's attributes as labels: values as [`label_value`].
pub fn resource_labels(resource: Option<proto::resource::v1::Resource>) -> iotel_model::Labels {
    iotel_model::Labels::from_pairs(
        resource
            .into_iter()
            .flat_map(|r| r.attributes)
            .map(|kv| (kv.key, kv.value.map(label_value).unwrap_or_default())),
    )
}

/// Nanoseconds since the epoch as the model's `i64` (saturating).
pub fn unix_ns(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

/// A JSON value as an OTLP value: strings, booleans, integers (that fit an
/// `i64`) and doubles as such, arrays as `array_value`, objects as
/// `kvlist_value`, null as an empty value.
pub fn any_value(v: Value) -> AnyValue {
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(Av::BoolValue(b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => Av::IntValue(i),
            // Past i64::MAX, or not an integer.
            None => Av::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::String(s) => Some(Av::StringValue(s)),
        Value::Array(a) => Some(Av::ArrayValue(ArrayValue {
            values: a.into_iter().map(any_value).collect(),
        })),
        Value::Object(o) => Some(Av::KvlistValue(KeyValueList {
            values: o.into_iter().map(|(k, v)| key_value(k, v)).collect(),
        })),
    };
    AnyValue { value }
}

/// An attribute from a name and a JSON value.
pub fn key_value(key: String, v: Value) -> KeyValue {
    KeyValue {
        key,
        value: Some(any_value(v)),
        ..Default::default()
    }
}

/// A string attribute.
pub fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Av::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// An OTLP value as JSON, the inverse of [`any_value`]; bytes become a
/// lowercase hex string, a double that JSON cannot hold (NaN, ±∞) null.
/// Values by string-table index (`*_strindex`, profiles only) become null.
pub fn json_value(v: AnyValue) -> Value {
    match v.value {
        None | Some(Av::StringValueStrindex(_)) => Value::Null,
        Some(Av::StringValue(s)) => Value::String(s),
        Some(Av::BoolValue(b)) => Value::Bool(b),
        Some(Av::IntValue(i)) => Value::from(i),
        Some(Av::DoubleValue(d)) => {
            serde_json::Number::from_f64(d).map_or(Value::Null, Value::Number)
        }
        Some(Av::BytesValue(b)) => Value::String(hex(&b)),
        Some(Av::ArrayValue(a)) => Value::Array(a.values.into_iter().map(json_value).collect()),
        Some(Av::KvlistValue(kv)) => Value::Object(
            kv.values
                .into_iter()
                .map(|kv| (kv.key, kv.value.map_or(Value::Null, json_value)))
                .collect(),
        ),
    }
}

/// An OTLP value as a label value: a string as it is, anything else as its
/// JSON text.
pub fn label_value(v: AnyValue) -> String {
    match json_value(v) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// An id of `N` bytes from exactly `2 N` hex digits (either case), not all
/// zero (W3C Trace Context and OTLP take an all-zero id as "none").
pub fn parse_id<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    out.iter().any(|&x| x != 0).then_some(out)
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error response (protobuf;
/// OTLP/JSON writes the same fields as `{"code": …, "message": …}`).
/// `details` (field 3) is left out: iotel sends none.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// A gRPC status code (3 INVALID_ARGUMENT, 8 RESOURCE_EXHAUSTED, 14
    /// UNAVAILABLE, …).
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}
