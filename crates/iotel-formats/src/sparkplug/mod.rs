//! Sparkplug B (Eclipse Sparkplug 3.0): the industrial MQTT payload, into
//! metric samples.
//!
//! - **Topics** are `spBv1.0/<group_id>/<message_type>/<edge_node_id>[/<device_id>]`
//!   ([`Topic::parse`]); `spBv1.0/STATE/<host_id>` is the host application's
//!   own state and carries no metrics.
//! - **Payloads** are the `org.eclipse.tahu.protobuf.Payload` message
//!   ([`Payload`], declared by hand below with the field numbers of
//!   `sparkplug_b.proto`); [`decode_payload`] reads them.
//! - **State** ([`Host`]) follows each edge node the way a Sparkplug host
//!   application does: NBIRTH and DBIRTH declare the metrics, their
//!   datatypes and their aliases; NDATA/DDATA may then name a metric by
//!   alias only, resolved from the last birth of that node or device.
//!   `seq` runs 0–255 per edge node over every message but NDEATH; a jump
//!   is a sequence gap (counted, and the new value is taken as the
//!   baseline). NDEATH (whose `bdSeq` must match the NBIRTH's, else it is
//!   an old session's will and is ignored) and DDEATH turn every series of
//!   that node or device stale: one Prometheus staleness marker per series.
//! - **Samples** are gauges named after the metric, sanitised to a
//!   Prometheus name (`Motor/RPM` → `Motor_RPM`), labelled `group`,
//!   `edge_node` and, for device metrics, `device`. Integer, float, double
//!   and boolean (0/1) values become samples; the `bdSeq` session counter
//!   does not. Strings, bytes, datasets and templates have no place in a
//!   sample and are dropped with a reason, as are null values and aliases
//!   no birth declared.
//!
//! Nothing here panics on any input (a property test and a fuzz target
//! hold it to that).

mod host;
#[cfg(test)]
mod tests;

pub use host::{Dropped, Host, Outcome, SequenceGap};

use prost::Message;

/// The namespace of Sparkplug B topics.
pub const NAMESPACE: &str = "spBv1.0";

/// Prometheus' staleness marker: the one NaN that means "this series ended".
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Sparkplug B's `Payload`, declared by hand with the field numbers of
/// `sparkplug_b.proto` (package `org.eclipse.tahu.protobuf`):
///
/// ```text
/// Payload { uint64 timestamp = 1; repeated Metric metrics = 2; uint64 seq = 3;
///           string uuid = 4; bytes body = 5; }
/// Metric  { string name = 1; uint64 alias = 2; uint64 timestamp = 3; uint32 datatype = 4;
///           bool is_historical = 5; bool is_transient = 6; bool is_null = 7;
///           MetaData metadata = 8; PropertySet properties = 9;
///           oneof value { uint32 int_value = 10; uint64 long_value = 11; float float_value = 12;
///                         double double_value = 13; bool boolean_value = 14;
///                         string string_value = 15; bytes bytes_value = 16;
///                         DataSet dataset_value = 17; Template template_value = 18;
///                         MetricValueExtension extension_value = 19; } }
/// ```
///
/// Metadata, properties, datasets, templates and extensions are not
/// declared: protobuf skips them as unknown fields, and a metric whose
/// value is one of them arrives with no value we read (dropped as
/// `sparkplug_unsupported_value`).
#[derive(Clone, PartialEq, Message)]
pub struct Payload {
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<PayloadMetric>,
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
    #[prost(string, optional, tag = "4")]
    pub uuid: Option<String>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub body: Option<Vec<u8>>,
}

/// One metric of a [`Payload`].
#[derive(Clone, PartialEq, Message)]
pub struct PayloadMetric {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    #[prost(oneof = "Value", tags = "10, 11, 12, 13, 14, 15, 16")]
    pub value: Option<Value>,
}

/// The value of a [`PayloadMetric`] (the kinds a sample can hold, and
/// strings and bytes, which it cannot).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(uint32, tag = "10")]
    Int(u32),
    #[prost(uint64, tag = "11")]
    Long(u64),
    #[prost(float, tag = "12")]
    Float(f32),
    #[prost(double, tag = "13")]
    Double(f64),
    #[prost(bool, tag = "14")]
    Boolean(bool),
    #[prost(string, tag = "15")]
    String(String),
    #[prost(bytes = "vec", tag = "16")]
    Bytes(Vec<u8>),
}

/// Sparkplug B datatypes (`DataType` in `sparkplug_b.proto`) that matter
/// for reading a value.
pub mod datatype {
    pub const INT8: u32 = 1;
    pub const INT16: u32 = 2;
    pub const INT32: u32 = 3;
    pub const INT64: u32 = 4;
    pub const DATETIME: u32 = 13;
}

/// Reads a Sparkplug B payload.
///
/// # Errors
/// The bytes are not a `Payload` protobuf message.
pub fn decode_payload(bytes: &[u8]) -> Result<Payload, prost::DecodeError> {
    Payload::decode(bytes)
}

/// The message types of Sparkplug B topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    NBirth,
    NDeath,
    DBirth,
    DDeath,
    NData,
    DData,
    NCmd,
    DCmd,
}

impl MessageType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NBIRTH" => MessageType::NBirth,
            "NDEATH" => MessageType::NDeath,
            "DBIRTH" => MessageType::DBirth,
            "DDEATH" => MessageType::DDeath,
            "NDATA" => MessageType::NData,
            "DDATA" => MessageType::DData,
            "NCMD" => MessageType::NCmd,
            "DCMD" => MessageType::DCmd,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::NBirth => "NBIRTH",
            MessageType::NDeath => "NDEATH",
            MessageType::DBirth => "DBIRTH",
            MessageType::DDeath => "DDEATH",
            MessageType::NData => "NDATA",
            MessageType::DData => "DDATA",
            MessageType::NCmd => "NCMD",
            MessageType::DCmd => "DCMD",
        }
    }

    fn is_device(self) -> bool {
        matches!(
            self,
            MessageType::DBirth | MessageType::DDeath | MessageType::DData | MessageType::DCmd
        )
    }
}

/// A parsed Sparkplug B topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic<'a> {
    /// `spBv1.0/<group>/<type>/<edge_node>[/<device>]`.
    Message {
        group: &'a str,
        kind: MessageType,
        edge_node: &'a str,
        device: Option<&'a str>,
    },
    /// `spBv1.0/STATE/<host_id>`: a host application's birth and death.
    State,
}

impl<'a> Topic<'a> {
    /// # Errors
    /// What the topic lacks, in words, for the error that names it.
    pub fn parse(topic: &'a str) -> Result<Self, String> {
        let mut levels = topic.split('/');
        if levels.next() != Some(NAMESPACE) {
            return Err(format!("expected a topic under {NAMESPACE}/"));
        }
        let group = levels.next().unwrap_or("");
        if group == "STATE" {
            return Ok(Topic::State);
        }
        let kind_s = levels.next().unwrap_or("");
        let Some(kind) = MessageType::parse(kind_s) else {
            return Err(format!(
                "expected {NAMESPACE}/<group>/<NBIRTH|NDEATH|DBIRTH|DDEATH|NDATA|DDATA|NCMD|DCMD>/\
                 <edge_node>[/<device>], got message type {kind_s:?}"
            ));
        };
        let edge_node = levels.next().unwrap_or("");
        let device = levels.next();
        if group.is_empty() || edge_node.is_empty() || levels.next().is_some() {
            return Err(format!(
                "expected {NAMESPACE}/<group>/{}/<edge_node>{}",
                kind.as_str(),
                if kind.is_device() { "/<device>" } else { "" }
            ));
        }
        if kind.is_device() != device.is_some_and(|d| !d.is_empty()) {
            return Err(if kind.is_device() {
                format!(
                    "{} needs a device id as the fifth topic level",
                    kind.as_str()
                )
            } else {
                format!("{} takes no device id", kind.as_str())
            });
        }
        Ok(Topic::Message {
            group,
            kind,
            edge_node,
            device,
        })
    }
}

/// A Sparkplug metric name as a Prometheus metric name: every character
/// outside `[a-zA-Z0-9_:]` becomes `_`, and a leading digit gets a `_`
/// before it (`Motor/RPM` → `Motor_RPM`, `1st stage` → `_1st_stage`).
pub fn metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) || name.is_empty() {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        }
    }));
    out
}

/// A metric's value as a sample value, read by its datatype (signed
/// integers travel as their two's complement in an unsigned field).
/// `None` for values a sample cannot hold.
pub fn sample_value(value: &Value, datatype: Option<u32>) -> Option<f64> {
    Some(match *value {
        Value::Int(v) => match datatype {
            Some(datatype::INT8) => f64::from(v as u8 as i8),
            Some(datatype::INT16) => f64::from(v as u16 as i16),
            Some(datatype::INT32) => f64::from(v as i32),
            _ => f64::from(v),
        },
        Value::Long(v) => match datatype {
            Some(datatype::INT64 | datatype::DATETIME) => v as i64 as f64,
            _ => v as f64,
        },
        Value::Float(v) => f64::from(v),
        Value::Double(v) => v,
        Value::Boolean(v) => f64::from(u8::from(v)),
        Value::String(_) | Value::Bytes(_) => return None,
    })
}
