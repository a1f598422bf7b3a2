//! Payloads → events, by `format`.
//!
//! - `json`: a JSON object becomes one log record whose fields are the
//!   object's members; its `message` member, when present, becomes the
//!   record's message (a string as it is, anything else as JSON text) and
//!   not also a field. An array becomes one record per object in it; an
//!   element that is not an object is dropped and counted
//!   (`not_an_object`). Anything else is rejected: `invalid_json` or
//!   `not_an_object`.
//! - `raw`: the payload, which must be UTF-8, is the record's message;
//!   invalid UTF-8 is rejected (`invalid_utf8`) rather than mangled.
//! - `sparkplug_b`: `iotel_formats::sparkplug`; a topic outside the
//!   Sparkplug namespace (`not_sparkplug_topic`) or a payload that is not
//!   a Sparkplug `Payload` (`invalid_sparkplug`) is rejected.
//!
//! An empty payload (MQTT's way of clearing a retained message) carries no
//! event and is dropped as `empty_payload`. Records get the topic as a
//! label (`topic_label`); Sparkplug samples do not (their labels are
//! `group`, `edge_node`, `device`, the same on every message type, so that
//! a death's staleness markers end the very series the data made). Every reject names the topic
//! and what was expected.

use super::{JsonMetricsConfig, PayloadFormat, TopicPattern};
use iotel_formats::sparkplug::{self, Host, SequenceGap};
use iotel_model::{Events, Labels, LogRecord};
use iotel_propagation::{ParseError, SpanContext};
use serde_json::Value;

/// What a message came to.
#[derive(Debug, Default)]
pub(super) struct Decoded {
    pub events: Option<Events>,
    /// Parts dropped: (reason, how many, the first in words).
    pub dropped: Vec<(&'static str, usize, String)>,
    /// Sparkplug: the edge node's `seq` jumped.
    pub sequence_gap: Option<SequenceGap>,
    /// The JSON envelope's trace context, when asked for.
    pub envelope: Option<Result<SpanContext, ParseError>>,
    /// The topic did not match `topic_pattern`.
    pub topic_unmatched: bool,
}

/// A message rejected whole.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Rejected {
    /// A stable code, the metric label.
    pub code: &'static str,
    /// What was wrong, naming the topic and what was expected.
    pub message: String,
}

impl Rejected {
    fn new(code: &'static str, message: String) -> Self {
        Rejected { code, message }
    }
}

#[derive(Debug)]
pub(super) struct Decoder {
    pub format: PayloadFormat,
    /// The label name for the topic; empty for none.
    pub topic_label: String,
    pub trace_envelope: bool,
    pub host: Host,
    pub topic_pattern: Option<TopicPattern>,
    pub json_metrics: JsonMetricsConfig,
}

const MESSAGE: &str = "message";

impl Decoder {
    pub fn new(format: PayloadFormat, topic_label: &str, trace_envelope: bool) -> Self {
        Decoder {
            format,
            topic_label: topic_label.to_string(),
            trace_envelope,
            host: Host::new(),
            topic_pattern: None,
            json_metrics: JsonMetricsConfig::default(),
        }
    }

    /// The labels of a message on `topic`: the topic label and what
    /// `topic_pattern` captures; notes a topic the pattern does not match.
    fn labels(&self, topic: &str, out: &mut Decoded) -> Labels {
        let mut b = Labels::empty().to_builder();
        if !self.topic_label.is_empty() {
            b.set(&self.topic_label, topic);
        }
        if let Some(p) = &self.topic_pattern {
            out.topic_unmatched = !p.apply(topic, &mut b);
        }
        b.build()
    }

    /// # Errors
    /// The payload is not of the configured format.
    pub fn decode(
        &mut self,
        topic: &str,
        payload: &[u8],
        now_ns: i64,
    ) -> Result<Decoded, Rejected> {
        let mut out = Decoded::default();
        if payload.is_empty() {
            out.dropped.push((
                "empty_payload",
                1,
                format!("topic {topic:?}: an empty payload"),
            ));
            return Ok(out);
        }
        match self.format {
            PayloadFormat::Raw => {
                let text = std::str::from_utf8(payload).map_err(|e| {
                    Rejected::new(
                        "invalid_utf8",
                        format!(
                            "topic {topic:?}: expected UTF-8 text (format = \"raw\"), got invalid \
                             UTF-8 at byte {}",
                            e.valid_up_to()
                        ),
                    )
                })?;
                let mut record = LogRecord::new(now_ns, text);
                record.labels = self.labels(topic, &mut out);
                out.events = Some(Events::Logs(vec![record]));
            }
            PayloadFormat::Json | PayloadFormat::JsonMetrics => {
                self.decode_json(topic, payload, now_ns, &mut out)?;
            }
            PayloadFormat::SparkplugB => self.decode_sparkplug(topic, payload, now_ns, &mut out)?,
        }
        Ok(out)
    }

    fn decode_json(
        &self,
        topic: &str,
        payload: &[u8],
        now_ns: i64,
        out: &mut Decoded,
    ) -> Result<(), Rejected> {
        let value: Value = serde_json::from_slice(payload).map_err(|e| {
            Rejected::new(
                "invalid_json",
                format!("topic {topic:?}: expected a JSON object or an array of objects: {e}"),
            )
        })?;
        if self.trace_envelope {
            out.envelope = Some(iotel_propagation::mqtt::json::extract(&value));
        }
        let labels = self.labels(topic, out);
        if self.format == PayloadFormat::JsonMetrics {
            return self.json_samples(topic, value, &labels, now_ns / 1_000_000, out);
        }
        let record = |fields: serde_json::Map<String, Value>| {
            let mut r = LogRecord::new(now_ns, String::new());
            r.labels = labels.clone();
            r.fields = fields;
            if let Some(m) = r.fields.remove(MESSAGE) {
                r.message = match m {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
            }
            r
        };
        let records: Vec<LogRecord> = objects(topic, value, out)?
            .into_iter()
            .map(record)
            .collect();
        if !records.is_empty() {
            out.events = Some(Events::Logs(records));
        }
        Ok(())
    }

    /// `json_metrics`: an object, or an array of objects, as samples.
    fn json_samples(
        &self,
        topic: &str,
        value: Value,
        labels: &Labels,
        now_ms: i64,
        out: &mut Decoded,
    ) -> Result<(), Rejected> {
        let objects = objects(topic, value, out)?;
        let mut samples = Vec::new();
        for o in &objects {
            if let Err((code, why)) = self.json_metrics.samples(o, labels, now_ms, &mut samples) {
                out.dropped
                    .push((code, 1, format!("topic {topic:?}: {why}")));
            }
        }
        if !samples.is_empty() {
            out.events = Some(Events::Metrics(samples));
        }
        Ok(())
    }

    fn decode_sparkplug(
        &mut self,
        topic: &str,
        payload: &[u8],
        now_ns: i64,
        out: &mut Decoded,
    ) -> Result<(), Rejected> {
        let parsed = sparkplug::Topic::parse(topic).map_err(|e| {
            Rejected::new(
                "not_sparkplug_topic",
                format!("topic {topic:?}: {e} (format = \"sparkplug_b\")"),
            )
        })?;
        let decoded = sparkplug::decode_payload(payload).map_err(|e| {
            Rejected::new(
                "invalid_sparkplug",
                format!("topic {topic:?}: expected a Sparkplug B payload (protobuf): {e}"),
            )
        })?;
        let outcome = self.host.handle(&parsed, &decoded, now_ns / 1_000_000);
        out.sequence_gap = outcome.sequence_gap;
        for d in outcome.dropped {
            out.dropped
                .push((d.reason, d.count, format!("topic {topic:?}: {}", d.example)));
        }
        if let Some(what) = outcome.ignored {
            tracing::debug!("topic {topic:?}: {what} carries no metrics; skipped");
        }
        // No topic label: a series' samples and its staleness marker come
        // on different topics (NDATA, NDEATH) and must share their labels.
        if !outcome.samples.is_empty() {
            out.events = Some(Events::Metrics(outcome.samples));
        }
        Ok(())
    }
}

/// A payload's objects: the object itself, or the objects of an array
/// (other elements are dropped, counted as `not_an_object`).
///
/// # Errors
/// Anything but an object or an array: `not_an_object`.
fn objects(
    topic: &str,
    value: Value,
    out: &mut Decoded,
) -> Result<Vec<serde_json::Map<String, Value>>, Rejected> {
    match value {
        Value::Object(o) => Ok(vec![o]),
        Value::Array(items) => {
            let total = items.len();
            let objects: Vec<_> = items
                .into_iter()
                .filter_map(|v| match v {
                    Value::Object(o) => Some(o),
                    _ => None,
                })
                .collect();
            let skipped = total - objects.len();
            if skipped > 0 {
                out.dropped.push((
                    "not_an_object",
                    skipped,
                    format!(
                        "topic {topic:?}: {skipped} element(s) of the array are not JSON objects"
                    ),
                ));
            }
            Ok(objects)
        }
        other => Err(Rejected::new(
            "not_an_object",
            format!(
                "topic {topic:?}: expected a JSON object or an array of objects, got {}",
                kind(&other)
            ),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
