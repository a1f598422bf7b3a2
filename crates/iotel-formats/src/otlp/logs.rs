//! Log records ↔ OTLP `ExportLogsServiceRequest`.
//!
//! | record                      | OTLP                                                   |
//! |-----------------------------|--------------------------------------------------------|
//! | labels                      | `Resource.attributes` (strings): one `ResourceLogs` per label set, in the order first seen, with one `ScopeLogs` (no scope) holding its records in batch order |
//! | `timestamp_ns`              | `time_unix_nano` (0, "unknown", before 1970)           |
//! | —                           | `observed_time_unix_nano`: when the request was made   |
//! | `message`                   | `body`, a string (none when the message is empty)      |
//! | `severity`                  | `severity_number` and `severity_text`, see [`severity_number`] |
//! | field `trace_id` (32 hex digits) | `trace_id`, 16 bytes                              |
//! | field `span_id` (16 hex digits)  | `span_id`, 8 bytes                                |
//! | other fields                | `attributes`, typed ([`super::any_value`])             |
//!
//! A `trace_id` or `span_id` field that is not a valid id (wrong length, not
//! hex, all zero, not a string) stays an attribute and is counted in
//! [`Stats`]: the caller reports it.
//!
//! Decoding ([`records`]) goes the other way: resource attribute values
//! become label values (non-strings as their JSON text), a body that is not
//! a string becomes its JSON text, `time_unix_nano` 0 falls back to
//! `observed_time_unix_nano`, ids become lowercase hex fields, and the
//! severity comes from `severity_number`, or else from `severity_text`.

use super::proto::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use super::proto::common::v1::{AnyValue, any_value::Value as Av};
use super::proto::logs::v1::{LogRecord as OtlpRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use super::proto::resource::v1::Resource;
use super::{hex, json_value, key_value, parse_id, string_attribute};
use iotel_model::{Labels, LogRecord, Severity};
use prost::Message;
use std::collections::HashMap;

/// The field that carries a record's trace id, 32 hex digits.
pub const TRACE_ID: &str = "trace_id";
/// The field that carries a record's span id, 16 hex digits.
pub const SPAN_ID: &str = "span_id";

/// What encoding found worth reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// `trace_id` fields that were not a valid id and went as attributes.
    pub invalid_trace_ids: usize,
    /// `span_id` fields that were not a valid id and went as attributes.
    pub invalid_span_ids: usize,
}

/// The OTLP severity number of a severity: the first of its range
/// (TRACE 1, DEBUG 5, INFO 9, WARN 13, ERROR 17, FATAL 21).
pub fn severity_number(s: Severity) -> SeverityNumber {
    match s {
        Severity::Trace => SeverityNumber::Trace,
        Severity::Debug => SeverityNumber::Debug,
        Severity::Info => SeverityNumber::Info,
        Severity::Warn => SeverityNumber::Warn,
        Severity::Error => SeverityNumber::Error,
        Severity::Fatal => SeverityNumber::Fatal,
    }
}

/// The severity text sent with it: `TRACE`, `DEBUG`, `INFO`, `WARN`,
/// `ERROR`, `FATAL` (OTLP's short names).
pub fn severity_text(s: Severity) -> &'static str {
    match s {
        Severity::Trace => "TRACE",
        Severity::Debug => "DEBUG",
        Severity::Info => "INFO",
        Severity::Warn => "WARN",
        Severity::Error => "ERROR",
        Severity::Fatal => "FATAL",
    }
}

/// A severity from an OTLP number (each range of four, `TRACE`..`TRACE4`
/// and so on, is one severity) or, when the number is 0 or out of range,
/// from the text.
pub fn severity(number: i32, text: &str) -> Option<Severity> {
    Some(match number {
        1..=4 => Severity::Trace,
        5..=8 => Severity::Debug,
        9..=12 => Severity::Info,
        13..=16 => Severity::Warn,
        17..=20 => Severity::Error,
        21..=24 => Severity::Fatal,
        _ => return Severity::parse(text),
    })
}

/// The request carrying `records`, `observed_unix_ns` as every record's
/// observed time.
pub fn export_request(
    records: impl IntoIterator<Item = LogRecord>,
    observed_unix_ns: u64,
) -> (ExportLogsServiceRequest, Stats) {
    let mut stats = Stats::default();
    let mut resources: Vec<ResourceLogs> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for r in records {
        let i = *index.entry(r.labels.clone()).or_insert_with(|| {
            resources.push(resource_logs(&r.labels));
            resources.len() - 1
        });
        let record = otlp_record(r, observed_unix_ns, &mut stats);
        if let Some(scope) = resources[i].scope_logs.first_mut() {
            scope.log_records.push(record);
        }
    }
    (
        ExportLogsServiceRequest {
            resource_logs: resources,
        },
        stats,
    )
}

/// The request body (protobuf, uncompressed) carrying `records`.
pub fn encode(
    records: impl IntoIterator<Item = LogRecord>,
    observed_unix_ns: u64,
) -> (Vec<u8>, Stats) {
    let (request, stats) = export_request(records, observed_unix_ns);
    (request.encode_to_vec(), stats)
}

/// The records of a request body (protobuf, uncompressed).
///
/// # Errors
/// A body that is not an `ExportLogsServiceRequest`.
pub fn decode(body: &[u8]) -> Result<Vec<LogRecord>, prost::DecodeError> {
    Ok(records(decode_request(body)?))
}

/// The `ExportLogsServiceRequest` of a body (protobuf, uncompressed).
///
/// # Errors
/// A body that is not one.
pub fn decode_request(body: &[u8]) -> Result<ExportLogsServiceRequest, prost::DecodeError> {
    ExportLogsServiceRequest::decode(body)
}

/// The `ExportLogsServiceRequest` of an OTLP/JSON body (uncompressed).
///
/// # Errors
/// A body that is not one, with the place in it.
pub fn decode_json_request(body: &[u8]) -> Result<ExportLogsServiceRequest, serde_json::Error> {
    serde_json::from_slice(body)
}

/// The records of a request, resource by resource.
pub fn records(request: ExportLogsServiceRequest) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for rl in request.resource_logs {
        let labels = super::resource_labels(rl.resource);
        for sl in rl.scope_logs {
            for lr in sl.log_records {
                out.push(model_record(&labels, lr));
            }
        }
    }
    out
}

/// What an `ExportLogsServiceResponse` says about records it did not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialSuccess {
    /// Records the peer rejected (0: all taken, with a warning).
    pub rejected: u64,
    pub message: String,
}

/// Reads a successful response's body: `None` when it took everything
/// without a word (an empty body included).
///
/// # Errors
/// A body that is not an `ExportLogsServiceResponse`.
pub fn decode_response(body: &[u8]) -> Result<Option<PartialSuccess>, prost::DecodeError> {
    let response = ExportLogsServiceResponse::decode(body)?;
    Ok(response.partial_success.and_then(|p| {
        let rejected = u64::try_from(p.rejected_log_records).unwrap_or(0);
        (rejected > 0 || !p.error_message.is_empty()).then_some(PartialSuccess {
            rejected,
            message: p.error_message,
        })
    }))
}

/// The body of a successful response: empty for `None`, else a
/// `partial_success` with `p`'s count and message.
pub fn encode_response(p: Option<&PartialSuccess>) -> Vec<u8> {
    ExportLogsServiceResponse {
        partial_success: p.map(|p| ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(p.rejected).unwrap_or(i64::MAX),
            error_message: p.message.clone(),
        }),
    }
    .encode_to_vec()
}

fn resource_logs(labels: &Labels) -> ResourceLogs {
    ResourceLogs {
        resource: Some(Resource {
            attributes: labels
                .iter()
                .map(|l| string_attribute(&l.name, &l.value))
                .collect(),
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs::default()],
        ..Default::default()
    }
}

fn otlp_record(mut r: LogRecord, observed_unix_ns: u64, stats: &mut Stats) -> OtlpRecord {
    let trace_id = take_id::<16>(&mut r.fields, TRACE_ID, &mut stats.invalid_trace_ids);
    let span_id = take_id::<8>(&mut r.fields, SPAN_ID, &mut stats.invalid_span_ids);
    OtlpRecord {
        time_unix_nano: u64::try_from(r.timestamp_ns).unwrap_or(0),
        observed_time_unix_nano: observed_unix_ns,
        severity_number: r
            .severity
            .map_or(SeverityNumber::Unspecified, severity_number) as i32,
        severity_text: r
            .severity
            .map(severity_text)
            .unwrap_or_default()
            .to_string(),
        body: (!r.message.is_empty()).then_some(AnyValue {
            value: Some(Av::StringValue(r.message)),
        }),
        attributes: r.fields.into_iter().map(|(k, v)| key_value(k, v)).collect(),
        trace_id: trace_id.map(Vec::from).unwrap_or_default(),
        span_id: span_id.map(Vec::from).unwrap_or_default(),
        ..Default::default()
    }
}

/// Takes a valid id out of the fields; leaves an invalid one there,
/// counted.
fn take_id<const N: usize>(
    fields: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    invalid: &mut usize,
) -> Option<[u8; N]> {
    let v = fields.get(name)?;
    match v.as_str().and_then(parse_id::<N>) {
        Some(id) => {
            fields.remove(name);
            Some(id)
        }
        None => {
            *invalid += 1;
            None
        }
    }
}

fn model_record(labels: &Labels, lr: OtlpRecord) -> LogRecord {
    let time = if lr.time_unix_nano != 0 {
        lr.time_unix_nano
    } else {
        lr.observed_time_unix_nano
    };
    let message = match lr.body {
        None => String::new(),
        Some(AnyValue {
            value: Some(Av::StringValue(s)),
        }) => s,
        Some(other) => json_value(other).to_string(),
    };
    let mut r = LogRecord::new(i64::try_from(time).unwrap_or(i64::MAX), message);
    r.labels = labels.clone();
    r.severity = severity(lr.severity_number, &lr.severity_text);
    for kv in lr.attributes {
        r.fields
            .insert(kv.key, kv.value.map_or(serde_json::Value::Null, json_value));
    }
    if !lr.trace_id.is_empty() {
        r.fields.insert(
            TRACE_ID.into(),
            serde_json::Value::String(hex(&lr.trace_id)),
        );
    }
    if !lr.span_id.is_empty() {
        r.fields
            .insert(SPAN_ID.into(), serde_json::Value::String(hex(&lr.span_id)));
    }
    r
}
