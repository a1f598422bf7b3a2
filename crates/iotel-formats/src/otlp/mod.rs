//! OTLP (the OpenTelemetry protocol): the model to and from its protobuf
//! messages. The messages are the generated ones of the
//! `opentelemetry-proto` crate (re-exported as [`proto`]), built from the
//! official `opentelemetry-proto` definitions without any transport.
//!
//! - [`logs`]: log records ↔ `ExportLogsServiceRequest`.
//!
//! Shared by every signal: labels ↔ resource attributes, fields ↔ typed
//! attributes ([`any_value`], [`json_value`]), ids ↔ hex.

pub mod logs;
#[cfg(test)]
mod tests;

pub use opentelemetry_proto::tonic as proto;

use proto::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value as Av};
use serde_json::Value;

/// `Content-Type` of an OTLP/HTTP protobuf request and response.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

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
