//! The consumer span of a received message.
//!
//! Follows the OpenTelemetry semantic conventions for messaging spans
//! (semconv 1.37, `docs/messaging/messaging-spans.md`, status
//! "development"): span name `{messaging.operation.name} {destination}`,
//! where the destination is low-cardinality — here the subscription's
//! topic filter, not the topic, which often carries a device id; kind
//! CONSUMER (carried as the attribute `span.kind`, as
//! `iotel_formats::otlp::traces` maps it); attributes
//! `messaging.system` (`"mqtt"`, not in the conventions' list, which allows
//! others), `messaging.operation.type` and `.name` (`"receive"`),
//! `messaging.destination.name` (the topic),
//! `messaging.destination.subscription.name` (the filter),
//! `messaging.client.id`, `messaging.message.body.size`, `server.address`
//! and `server.port`; `error.type` on a message that was rejected.
//!
//! The span's parent is the publisher's span from the message's trace
//! context; its id is new. It starts when the message arrived and ends
//! once its events were handed on.

use iotel_model::{Labels, Span, SpanStatus};
use iotel_propagation::{SpanContext, SpanId};
use serde_json::{Map, Value};

/// What the span says about one message.
#[derive(Debug)]
pub(super) struct Received<'a> {
    pub topic: &'a str,
    pub filter: &'a str,
    pub client_id: &'a str,
    pub broker_host: &'a str,
    pub broker_port: u16,
    pub body_size: usize,
    pub start_ns: i64,
    pub end_ns: i64,
    /// The stable code of the reject, when the message was rejected.
    pub error: Option<&'a str>,
}

pub(super) fn consumer_span(parent: Option<&SpanContext>, m: &Received<'_>) -> Span {
    let (trace_id, parent_span_id) = match parent {
        Some(p) => (p.trace_id.0, Some(p.span_id.0)),
        None => (SpanContext::new_root(true).trace_id.0, None),
    };
    let mut attributes = Map::new();
    let mut set = |k: &str, v: Value| {
        attributes.insert(k.to_string(), v);
    };
    set("span.kind", "consumer".into());
    set("messaging.system", "mqtt".into());
    set("messaging.operation.type", "receive".into());
    set("messaging.operation.name", "receive".into());
    set("messaging.destination.name", m.topic.into());
    set("messaging.destination.subscription.name", m.filter.into());
    set("messaging.client.id", m.client_id.into());
    set("messaging.message.body.size", m.body_size.into());
    set("server.address", m.broker_host.into());
    set("server.port", m.broker_port.into());
    if let Some(e) = m.error {
        set("error.type", e.into());
    }
    Span {
        trace_id,
        span_id: SpanId::random().0,
        parent_span_id,
        name: format!("receive {}", m.filter),
        start_ns: m.start_ns,
        end_ns: m.end_ns.max(m.start_ns),
        labels: Labels::empty(),
        attributes,
        status: if m.error.is_some() {
            SpanStatus::Error
        } else {
            SpanStatus::Unset
        },
    }
}

/// Whether `topic` matches the MQTT topic `filter` (`+` one level, `#` the
/// rest, including none; topics starting with `$` match no wildcard at the
/// first level).
pub(super) fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
