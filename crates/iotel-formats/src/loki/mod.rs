//! Loki's push API (`POST /loki/api/v1/push`): protobuf + snappy, and JSON.
//!
//! How a batch of log records becomes a push request ([`streams`], then
//! [`encode_protobuf`] or [`encode_json`]):
//!
//! - **Streams.** Records with the same stream labels (below) form one
//!   stream. Streams are in
//!   the order first seen; the entries of each stream are sorted by
//!   timestamp (stably: records with equal timestamps keep their order), as
//!   Loki wants them.
//! - **Stream labels** are the record's labels, or those named in
//!   [`Mapping::stream_labels`]. Names Loki does not accept
//!   (`[a-zA-Z_][a-zA-Z0-9_]*`) are sanitised as the OpenTelemetry
//!   Collector's Loki exporter does ([`sanitize_label_name`]:
//!   `service.name` → `service_name`). Labels with an empty value are left
//!   out (Loki reads an empty value as "no such label"); when two names
//!   sanitise to the same one, the later in byte order of the original names
//!   wins. A stream left without labels gets [`FALLBACK_LABEL`], since Loki
//!   refuses a stream without any.
//! - **Structured metadata** (Loki 3): the names in
//!   [`Mapping::structured_metadata`], taken from the record's fields, or
//!   else from its labels that are not stream labels. A string value goes as
//!   it is; any other JSON value as its JSON text; null and empty values are
//!   left out. Names are sanitised like label names.
//! - **Severity** goes where [`Mapping::level`] says: structured metadata
//!   `level` (default), a stream label `level`, or nowhere. The value is
//!   lowercase (`info`, `warn`, …), which Loki 3 reads as the entry's level.
//! - **The line** is the record's message ([`LineFormat::Message`]), or one
//!   JSON object with the message under `message` followed by every field
//!   not sent as structured metadata ([`LineFormat::Json`]).
//! - **Timestamps** are nanoseconds since the Unix epoch: a protobuf
//!   `google.protobuf.Timestamp`, or a decimal string in JSON.
//!
//! [`decode_protobuf`] and [`decode_json`] read a push request back into
//! records (stream labels as labels, structured metadata as string fields,
//! `level` metadata as the severity), for tests and for receivers.

mod decode;
#[cfg(test)]
mod tests;

pub use decode::{
    DecodeError, decode_json, decode_protobuf, decode_protobuf_with_limit, decode_request,
};

use iotel_model::{Labels, LogRecord, Severity};
use prost::Message;
use std::collections::HashMap;

/// `Content-Type` of a protobuf push request (its body snappy-compressed).
pub const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";
/// `Content-Type` of a JSON push request.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// `Content-Encoding` sent with a protobuf body. Loki snappy-decodes every
/// protobuf body whatever this header says, and accepts this value for it;
/// it tells proxies on the way what the body is.
pub const CONTENT_ENCODING_PROTOBUF: &str = "snappy";
/// The path of the push API.
pub const PUSH_PATH: &str = "/loki/api/v1/push";
/// The largest body [`decode_protobuf`] decompresses, 64 MiB.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;
/// The label of a stream that would have none.
pub const FALLBACK_LABEL: (&str, &str) = ("agent", "iotel");
/// The label or structured metadata name that carries the severity.
pub const LEVEL: &str = "level";

/// Loki's push messages, declared by hand with the field numbers of
/// `pkg/push/push.proto` in grafana/loki (package `logproto`):
///
/// ```text
/// PushRequest      { repeated StreamAdapter streams = 1; string format = 2; }
/// StreamAdapter    { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
/// EntryAdapter     { google.protobuf.Timestamp timestamp = 1; string line = 2;
///                    repeated LabelPairAdapter structuredMetadata = 3;
///                    repeated LabelPairAdapter parsed = 4; }
/// LabelPairAdapter { string name = 1; string value = 2; }
/// ```
///
/// and `google.protobuf.Timestamp { int64 seconds = 1; int32 nanos = 2; }`.
/// `PushRequest.format` (set by Loki itself for OTLP ingestion) and
/// `EntryAdapter.parsed` (query responses only) are not declared: clients
/// leave them empty, and prost skips them when decoding. `hash` is Loki's
/// own and left 0 by clients.
///
/// Field numbers are the wire format: do not renumber.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        /// The stream selector: `{name="value", …}`.
        #[prost(string, tag = "1")]
        pub labels: String,
        /// In timestamp order.
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
    }

    #[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
    pub struct LabelPairAdapter {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `google.protobuf.Timestamp`: `nanos` in `0..1_000_000_000`, also
    /// before 1970.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

/// The line of an entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LineFormat {
    /// The record's message, as it is.
    #[default]
    Message,
    /// `{"message":"…", <fields not sent as structured metadata>}`.
    Json,
}

/// Where a record's severity goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LevelAs {
    /// Structured metadata `level` (Loki 3).
    #[default]
    Metadata,
    /// A stream label `level`: one stream per severity.
    Label,
    /// Not sent.
    None,
}

/// How records map onto streams and entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    /// The record labels that become stream labels, by their name in the
    /// record or its sanitised form; `None`: all of them.
    pub stream_labels: Option<Vec<String>>,
    /// Names sent as structured metadata, in this order: from the record's
    /// fields, or else from its labels that are not stream labels.
    pub structured_metadata: Vec<String>,
    pub line_format: LineFormat,
    pub level: LevelAs,
}

impl Mapping {
    fn is_stream_label(&self, name: &str) -> bool {
        match &self.stream_labels {
            None => true,
            Some(names) => names
                .iter()
                .any(|n| n == name || *n == sanitize_label_name(name)),
        }
    }
}

/// How a push request is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// Protobuf, snappy-compressed (block format).
    #[default]
    Protobuf,
    Json,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => CONTENT_TYPE_PROTOBUF,
            Encoding::Json => CONTENT_TYPE_JSON,
        }
    }

    /// The `Content-Encoding` to send, if any.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Encoding::Protobuf => Some(CONTENT_ENCODING_PROTOBUF),
            Encoding::Json => None,
        }
    }
}

/// One stream of a push request.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// Sorted by name, names valid for Loki and unique, values non-empty.
    pub labels: Vec<(String, String)>,
    /// In timestamp order.
    pub entries: Vec<proto::EntryAdapter>,
}

/// Groups records into streams (see the module docs). Takes the records so
/// their messages move into the lines without a copy.
pub fn streams(records: impl IntoIterator<Item = LogRecord>, mapping: &Mapping) -> Vec<Stream> {
    let mut out: Vec<Stream> = Vec::new();
    // Label sets that end up alike (differing in empty values, or in names
    // that sanitise alike) share one stream.
    let mut by_labels: HashMap<Vec<(String, String)>, usize> = HashMap::new();
    let mut by_record: HashMap<(Labels, Option<Severity>), usize> = HashMap::new();
    for record in records {
        let level = match mapping.level {
            LevelAs::Label => record.severity,
            _ => None,
        };
        let i = *by_record
            .entry((record.labels.clone(), level))
            .or_insert_with(|| {
                let labels = stream_labels(&record.labels, level, mapping);
                *by_labels.entry(labels.clone()).or_insert_with(|| {
                    out.push(Stream {
                        labels,
                        entries: Vec::new(),
                    });
                    out.len() - 1
                })
            });
        out[i].entries.push(entry(record, mapping));
    }
    for s in &mut out {
        s.entries.sort_by_key(|e| e.timestamp.unwrap_or_default());
    }
    out
}

/// Encodes records as a protobuf push request body, snappy-compressed.
///
/// # Errors
/// A request too large for one snappy block (over 4 GiB).
pub fn encode_protobuf(
    records: impl IntoIterator<Item = LogRecord>,
    mapping: &Mapping,
) -> Result<Vec<u8>, snap::Error> {
    let request = push_request(streams(records, mapping));
    let raw = request.encode_to_vec();
    drop(request);
    snap::raw::Encoder::new().compress_vec(&raw)
}

/// Encodes records as a JSON push request body.
pub fn encode_json(records: impl IntoIterator<Item = LogRecord>, mapping: &Mapping) -> Vec<u8> {
    json_body(&streams(records, mapping))
}

/// Encodes records as a push request body in `encoding`.
///
/// # Errors
/// See [`encode_protobuf`].
pub fn encode(
    records: impl IntoIterator<Item = LogRecord>,
    mapping: &Mapping,
    encoding: Encoding,
) -> Result<Vec<u8>, snap::Error> {
    match encoding {
        Encoding::Protobuf => encode_protobuf(records, mapping),
        Encoding::Json => Ok(encode_json(records, mapping)),
    }
}

/// The protobuf message of `streams`.
pub fn push_request(streams: Vec<Stream>) -> proto::PushRequest {
    proto::PushRequest {
        streams: streams
            .into_iter()
            .map(|s| proto::StreamAdapter {
                labels: selector(&s.labels),
                entries: s.entries,
                hash: 0,
            })
            .collect(),
    }
}

/// A label name as Loki accepts it, made as the OpenTelemetry Collector's
/// Loki exporter makes it (its Prometheus label normalisation, ASCII only):
/// every character outside `[a-zA-Z0-9_]` becomes `_`; a name that then
/// starts with a digit gets the prefix `key_`, one that starts with a single
/// `_` the prefix `key`. `service.name` → `service_name`, `1x` → `key_1x`,
/// `_x` → `key_x`; `__x` stays. An empty name stays empty.
pub fn sanitize_label_name(name: &str) -> std::borrow::Cow<'_, str> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let starts_ok = |s: &str| {
        let b = s.as_bytes();
        match b.first() {
            None => true,
            Some(c) if c.is_ascii_digit() => false,
            Some(b'_') => b.get(1) == Some(&b'_'),
            Some(_) => true,
        }
    };
    if name.chars().all(valid) && starts_ok(name) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut s: String = name
        .chars()
        .map(|c| if valid(c) { c } else { '_' })
        .collect();
    if s.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        s.insert_str(0, "key_");
    } else if s.starts_with('_') && !s.starts_with("__") {
        s.insert_str(0, "key");
    }
    std::borrow::Cow::Owned(s)
}

/// The stream selector of sorted labels: `{a="1", b="x\"y"}`. Values are
/// escaped as Go quotes them, which Loki's parser reads back.
pub fn selector(labels: &[(String, String)]) -> String {
    let mut s = String::with_capacity(
        2 + labels
            .iter()
            .map(|(n, v)| n.len() + v.len() + 5)
            .sum::<usize>(),
    );
    s.push('{');
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(name);
        s.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

/// The lowercase name Loki uses for a level.
pub fn level_name(s: Severity) -> &'static str {
    match s {
        Severity::Trace => "trace",
        Severity::Debug => "debug",
        Severity::Info => "info",
        Severity::Warn => "warn",
        Severity::Error => "error",
        Severity::Fatal => "fatal",
    }
}

/// Nanoseconds since the epoch as a protobuf timestamp.
pub fn timestamp(ns: i64) -> proto::Timestamp {
    proto::Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        // In 0..1e9: fits.
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}

fn stream_labels(labels: &Labels, level: Option<Severity>, m: &Mapping) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = labels
        .iter()
        .filter(|l| !l.value.is_empty() && m.is_stream_label(&l.name))
        .map(|l| {
            (
                sanitize_label_name(&l.name).into_owned(),
                l.value.to_string(),
            )
        })
        .collect();
    if let Some(s) = level {
        out.push((LEVEL.to_string(), level_name(s).to_string()));
    }
    // Stable: of equal (sanitised) names the later one comes last and is
    // the one kept; the severity, pushed last, wins over a `level` label.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let mut kept: Vec<(String, String)> = Vec::with_capacity(out.len());
    for l in out {
        match kept.last_mut() {
            Some(last) if last.0 == l.0 => *last = l,
            _ => kept.push(l),
        }
    }
    if kept.is_empty() {
        kept.push((FALLBACK_LABEL.0.to_string(), FALLBACK_LABEL.1.to_string()));
    }
    kept
}

fn entry(mut record: LogRecord, m: &Mapping) -> proto::EntryAdapter {
    let mut metadata = Vec::new();
    for name in &m.structured_metadata {
        let value = match record.fields.remove(name) {
            Some(v) => metadata_value(v),
            None if !m.is_stream_label(name) => record.labels.get(name).map(str::to_string),
            None => None,
        };
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            metadata.push(proto::LabelPairAdapter {
                name: sanitize_label_name(name).into_owned(),
                value,
            });
        }
    }
    if let (LevelAs::Metadata, Some(s)) = (m.level, record.severity) {
        metadata.push(proto::LabelPairAdapter {
            name: LEVEL.to_string(),
            value: level_name(s).to_string(),
        });
    }
    let line = match m.line_format {
        LineFormat::Message => record.message,
        LineFormat::Json => json_line(&record.message, &record.fields),
    };
    proto::EntryAdapter {
        timestamp: Some(timestamp(record.timestamp_ns)),
        line,
        structured_metadata: metadata,
    }
}

fn metadata_value(v: serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// `{"message":…,"field":…}`: the message first, then the fields in their
/// order; a field named `message` gives way to the record's message.
fn json_line(message: &str, fields: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut out = Vec::with_capacity(message.len() + 16);
    out.extend_from_slice(b"{\"message\":");
    put_json(&mut out, message);
    for (k, v) in fields {
        if k == "message" {
            continue;
        }
        out.push(b',');
        put_json(&mut out, k);
        out.push(b':');
        // Nor can serialising a JSON value.
        let _ = serde_json::to_writer(&mut out, v);
    }
    out.push(b'}');
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes a string as JSON. Writing to a `Vec` cannot fail, nor can
/// serialising a string.
fn put_json(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The JSON push body of `streams`:
/// `{"streams":[{"stream":{…},"values":[["<ns>","<line>",{<metadata>}],…]}]}`;
/// the metadata object only when there is some.
pub fn json_body(streams: &[Stream]) -> Vec<u8> {
    let size: usize = streams
        .iter()
        .flat_map(|s| &s.entries)
        .map(|e| e.line.len() + 32)
        .sum();
    let mut out = Vec::with_capacity(size + 16);
    out.extend_from_slice(b"{\"streams\":[");
    for (i, s) in streams.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"stream\":{");
        for (j, (name, value)) in s.labels.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            put_json(&mut out, name);
            out.push(b':');
            put_json(&mut out, value);
        }
        out.extend_from_slice(b"},\"values\":[");
        for (j, e) in s.entries.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            let t = e.timestamp.unwrap_or_default();
            let ns = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
            out.extend_from_slice(format!("[\"{ns}\",").as_bytes());
            put_json(&mut out, &e.line);
            if !e.structured_metadata.is_empty() {
                out.extend_from_slice(b",{");
                for (k, l) in e.structured_metadata.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    put_json(&mut out, &l.name);
                    out.push(b':');
                    put_json(&mut out, &l.value);
                }
                out.push(b'}');
            }
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
    out
}
