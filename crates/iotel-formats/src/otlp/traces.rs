//! OTLP `ExportTraceServiceRequest` ↔ spans.
//!
//! | span                 | OTLP                                                        |
//! |----------------------|-------------------------------------------------------------|
//! | labels               | `Resource.attributes` (non-strings as their JSON text)      |
//! | `trace_id`, `span_id`| the same 16 and 8 bytes                                     |
//! | `parent_span_id`     | `parent_span_id`, none when empty                           |
//! | `name`, `start_ns`, `end_ns` | `name`, `start_time_unix_nano`, `end_time_unix_nano` |
//! | `status`             | `status.code` (unset, ok, error)                            |
//! | attributes           | `attributes`, typed ([`super::json_value`]), plus:          |
//! | attribute `span.kind`| `kind` (`internal`, `server`, `client`, `producer`, `consumer`; none when unspecified) |
//! | attribute `otel.status_description` | `status.message`, when not empty         |
//! | attributes `otel.scope.name`, `otel.scope.version` | the instrumentation scope, when named |
//!
//! Not mapped, and counted in [`Decoded::dropped_events`] and
//! [`Decoded::dropped_links`]: span events and links. Not kept:
//! `trace_state`, `flags`, the `dropped_*_count`s and schema URLs.
//!
//! Rejected (see [`super::Rejected`]): a span whose trace id is not 16
//! bytes or is all zero (`invalid_trace_id`), whose span id is not 8 bytes
//! or is all zero (`invalid_span_id`), or whose parent span id is neither
//! empty nor 8 bytes (`invalid_parent_span_id`) — the OTLP spec calls such
//! ids invalid.

use super::proto::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use super::proto::common::v1::InstrumentationScope;
use super::proto::resource::v1::Resource;
use super::proto::trace::v1::{
    ResourceSpans, ScopeSpans, Span as OtlpSpan, Status, span::SpanKind, status::StatusCode,
};
use super::{Rejected, hex, json_value, key_value, resource_labels, string_attribute, unix_ns};
use iotel_model::{Labels, Span, SpanStatus};
use prost::Message;
use serde_json::Value;
use std::collections::HashMap;

/// The attribute that carries a span's kind.
pub const KIND: &str = "span.kind";
/// The attribute that carries a status message.
pub const STATUS_DESCRIPTION: &str = "otel.status_description";
/// The attribute that carries the instrumentation scope's name.
pub const SCOPE_NAME: &str = "otel.scope.name";
/// The attribute that carries the instrumentation scope's version.
pub const SCOPE_VERSION: &str = "otel.scope.version";

/// The spans of a request and what did not convert.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub spans: Vec<Span>,
    pub rejected: Rejected,
    /// Span events left out (not in the model).
    pub dropped_events: u64,
    /// Span links left out (not in the model).
    pub dropped_links: u64,
}

/// The `ExportTraceServiceRequest` of a protobuf body (uncompressed).
///
/// # Errors
/// A body that is not one.
pub fn decode_request(body: &[u8]) -> Result<ExportTraceServiceRequest, prost::DecodeError> {
    ExportTraceServiceRequest::decode(body)
}

/// The `ExportTraceServiceRequest` of an OTLP/JSON body (uncompressed).
///
/// # Errors
/// A body that is not one, with the place in it.
pub fn decode_json_request(body: &[u8]) -> Result<ExportTraceServiceRequest, serde_json::Error> {
    serde_json::from_slice(body)
}

/// The spans of a request, resource by resource, scope by scope.
pub fn spans(request: ExportTraceServiceRequest) -> Decoded {
    let mut d = Decoded::default();
    for (ri, rs) in request.resource_spans.into_iter().enumerate() {
        let labels = resource_labels(rs.resource);
        for (si, ss) in rs.scope_spans.into_iter().enumerate() {
            let scope = ss.scope.unwrap_or_default();
            for (i, s) in ss.spans.into_iter().enumerate() {
                let at = || format!("resource_spans[{ri}].scope_spans[{si}].spans[{i}]");
                d.dropped_events += s.events.len() as u64;
                d.dropped_links += s.links.len() as u64;
                if let Some(span) = model_span(&labels, &scope, s, &mut d.rejected, at) {
                    d.spans.push(span);
                }
            }
        }
    }
    d
}

/// The body of a successful response (protobuf): a `partial_success` when
/// something was rejected.
pub fn encode_response(rejected: &Rejected) -> Vec<u8> {
    response(rejected).encode_to_vec()
}

/// The response message: a `partial_success` when something was rejected.
pub fn response(rejected: &Rejected) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (rejected.total() > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: i64::try_from(rejected.total()).unwrap_or(i64::MAX),
            error_message: rejected.message(),
        }),
    }
}

/// The request carrying `spans`: one `ResourceSpans` per label set, in the
/// order first seen, one scope per scope name; the inverse of [`spans`].
pub fn export_request(spans: impl IntoIterator<Item = Span>) -> ExportTraceServiceRequest {
    let mut resources: Vec<ResourceSpans> = Vec::new();
    let mut by_labels: HashMap<Labels, usize> = HashMap::new();
    let mut by_scope: HashMap<(usize, Option<String>, Option<String>), usize> = HashMap::new();
    for mut s in spans {
        let r = *by_labels.entry(s.labels.clone()).or_insert_with(|| {
            resources.push(ResourceSpans {
                resource: Some(Resource {
                    attributes: s
                        .labels
                        .iter()
                        .map(|l| string_attribute(&l.name, &l.value))
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            });
            resources.len() - 1
        });
        let name = take_string(&mut s.attributes, SCOPE_NAME);
        let version = take_string(&mut s.attributes, SCOPE_VERSION);
        let scopes = &mut resources[r].scope_spans;
        let sc = *by_scope
            .entry((r, name.clone(), version.clone()))
            .or_insert_with(|| {
                scopes.push(ScopeSpans {
                    scope: (name.is_some() || version.is_some()).then(|| InstrumentationScope {
                        name: name.unwrap_or_default(),
                        version: version.unwrap_or_default(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                scopes.len() - 1
            });
        scopes[sc].spans.push(otlp_span(s));
    }
    ExportTraceServiceRequest {
        resource_spans: resources,
    }
}

fn take_string(attrs: &mut serde_json::Map<String, Value>, key: &str) -> Option<String> {
    match attrs.get(key) {
        Some(Value::String(_)) => match attrs.remove(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn otlp_span(mut s: Span) -> OtlpSpan {
    let kind = match take_string(&mut s.attributes, KIND).as_deref() {
        Some("internal") => SpanKind::Internal,
        Some("server") => SpanKind::Server,
        Some("client") => SpanKind::Client,
        Some("producer") => SpanKind::Producer,
        Some("consumer") => SpanKind::Consumer,
        Some(other) => {
            s.attributes
                .insert(KIND.into(), Value::String(other.to_string()));
            SpanKind::Unspecified
        }
        None => SpanKind::Unspecified,
    };
    let message = take_string(&mut s.attributes, STATUS_DESCRIPTION).unwrap_or_default();
    let code = match s.status {
        SpanStatus::Unset => StatusCode::Unset,
        SpanStatus::Ok => StatusCode::Ok,
        SpanStatus::Error => StatusCode::Error,
    };
    OtlpSpan {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        parent_span_id: s.parent_span_id.map(Vec::from).unwrap_or_default(),
        name: s.name,
        kind: kind as i32,
        start_time_unix_nano: u64::try_from(s.start_ns).unwrap_or(0),
        end_time_unix_nano: u64::try_from(s.end_ns).unwrap_or(0),
        attributes: s
            .attributes
            .into_iter()
            .map(|(k, v)| key_value(k, v))
            .collect(),
        status: (code != StatusCode::Unset || !message.is_empty()).then_some(Status {
            message,
            code: code as i32,
        }),
        ..Default::default()
    }
}

fn id<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    let id: [u8; N] = bytes.try_into().ok()?;
    id.iter().any(|&b| b != 0).then_some(id)
}

fn model_span(
    labels: &Labels,
    scope: &InstrumentationScope,
    s: OtlpSpan,
    rejected: &mut Rejected,
    at: impl Fn() -> String,
) -> Option<Span> {
    let Some(trace_id) = id::<16>(&s.trace_id) else {
        rejected.add("invalid_trace_id", || {
            format!(
                "{}: trace_id {:?} is not 16 bytes, not all zero",
                at(),
                hex(&s.trace_id)
            )
        });
        return None;
    };
    let Some(span_id) = id::<8>(&s.span_id) else {
        rejected.add("invalid_span_id", || {
            format!(
                "{}: span_id {:?} is not 8 bytes, not all zero",
                at(),
                hex(&s.span_id)
            )
        });
        return None;
    };
    let parent_span_id = if s.parent_span_id.is_empty() {
        None
    } else if let Ok(p) = <[u8; 8]>::try_from(s.parent_span_id.as_slice()) {
        // All zero: no parent, as W3C Trace Context reads it.
        p.iter().any(|&b| b != 0).then_some(p)
    } else {
        rejected.add("invalid_parent_span_id", || {
            format!(
                "{}: parent_span_id {:?} is neither empty nor 8 bytes",
                at(),
                hex(&s.parent_span_id)
            )
        });
        return None;
    };
    let mut attributes = serde_json::Map::new();
    for kv in s.attributes {
        attributes.insert(kv.key, kv.value.map_or(Value::Null, json_value));
    }
    let kind = match SpanKind::try_from(s.kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Unspecified => None,
        SpanKind::Internal => Some("internal"),
        SpanKind::Server => Some("server"),
        SpanKind::Client => Some("client"),
        SpanKind::Producer => Some("producer"),
        SpanKind::Consumer => Some("consumer"),
    };
    if let Some(kind) = kind {
        attributes.insert(KIND.into(), Value::String(kind.into()));
    }
    let status = s.status.unwrap_or_default();
    if !status.message.is_empty() {
        attributes.insert(STATUS_DESCRIPTION.into(), Value::String(status.message));
    }
    if !scope.name.is_empty() {
        attributes.insert(SCOPE_NAME.into(), Value::String(scope.name.clone()));
    }
    if !scope.version.is_empty() {
        attributes.insert(SCOPE_VERSION.into(), Value::String(scope.version.clone()));
    }
    Some(Span {
        trace_id,
        span_id,
        parent_span_id,
        name: s.name,
        start_ns: unix_ns(s.start_time_unix_nano),
        end_ns: unix_ns(s.end_time_unix_nano),
        labels: labels.clone(),
        attributes,
        status: match StatusCode::try_from(status.code).unwrap_or(StatusCode::Unset) {
            StatusCode::Unset => SpanStatus::Unset,
            StatusCode::Ok => SpanStatus::Ok,
            StatusCode::Error => SpanStatus::Error,
        },
    })
}
