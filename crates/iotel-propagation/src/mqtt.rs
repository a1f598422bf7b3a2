//! Trace context over MQTT, following the W3C Trace Context MQTT binding.
//!
//! MQTT v5: the `traceparent` and `tracestate` user properties, named in
//! lowercase, with the same values as the HTTP headers. Several `tracestate`
//! properties are combined in order, as HTTP header lines are. Any
//! `Vec<(String, String)>` of user properties is a carrier (see
//! [`crate::Extract`]); with the `rumqttc` feature, rumqttc's
//! `PublishProperties` is one too.
//!
//! MQTT 3.1.1 has no user properties. The binding recommends, for JSON
//! payloads, `traceparent` and `tracestate` string fields on the outermost
//! object; that envelope is opt-in (the `json` feature, [`json`]).

use crate::{Extract, Inject, ParseError, SpanContext, w3c};

/// Reads the trace context from MQTT v5 user properties.
///
/// # Errors
/// As [`w3c::extract`].
pub fn extract_v5(user_properties: &[(String, String)]) -> Result<SpanContext, ParseError> {
    w3c::extract(user_properties)
}

/// Sets the `traceparent` (and `tracestate`) user properties, replacing
/// earlier ones and keeping the application's other properties.
pub fn inject_v5(ctx: &SpanContext, user_properties: &mut Vec<(String, String)>) {
    w3c::inject(ctx, user_properties);
}

/// Any carrier that is not an MQTT packet, for symmetry with HTTP.
pub fn extract(carrier: &(impl Extract + ?Sized)) -> Result<SpanContext, ParseError> {
    w3c::extract(carrier)
}

/// Writes the context into any carrier.
pub fn inject(ctx: &SpanContext, carrier: &mut (impl Inject + ?Sized)) {
    w3c::inject(ctx, carrier);
}

/// The MQTT 3.1.1 JSON envelope: `traceparent` / `tracestate` string fields
/// on the payload's outermost JSON object.
#[cfg(feature = "json")]
pub mod json {
    use crate::{ParseError, SpanContext, TraceState, w3c};
    use serde_json::{Map, Value};

    /// Reads the trace context from a JSON payload object.
    ///
    /// # Errors
    /// Not an object, a field that is not a string, or an invalid
    /// `traceparent`. An invalid `tracestate` is dropped, as in HTTP.
    pub fn extract(payload: &Value) -> Result<SpanContext, ParseError> {
        let object = payload
            .as_object()
            .ok_or(ParseError::Envelope("the payload is not a JSON object"))?;
        let parent = match object.get(w3c::TRACEPARENT) {
            None => {
                return Err(ParseError::Missing {
                    header: w3c::TRACEPARENT,
                });
            }
            Some(Value::String(s)) => w3c::TraceParent::parse(s)?,
            Some(_) => return Err(ParseError::Envelope("`traceparent` is not a string")),
        };
        let trace_state = match object.get(w3c::TRACESTATE) {
            Some(Value::String(s)) => TraceState::parse(s).unwrap_or_default(),
            _ => TraceState::new(),
        };
        Ok(SpanContext {
            trace_id: parent.trace_id,
            span_id: parent.parent_id,
            trace_flags: parent.trace_flags,
            trace_state,
        })
    }

    /// Reads the trace context from payload bytes.
    ///
    /// # Errors
    /// Not JSON, or as [`extract`].
    pub fn extract_bytes(payload: &[u8]) -> Result<SpanContext, ParseError> {
        let value: Value = serde_json::from_slice(payload)
            .map_err(|_| ParseError::Envelope("the payload is not JSON"))?;
        extract(&value)
    }

    /// Sets the fields on the payload object, keeping its other fields.
    ///
    /// # Errors
    /// The payload is not a JSON object; it is left unchanged.
    pub fn inject(ctx: &SpanContext, payload: &mut Value) -> Result<(), ParseError> {
        let object: &mut Map<String, Value> = payload
            .as_object_mut()
            .ok_or(ParseError::Envelope("the payload is not a JSON object"))?;
        object.insert(
            w3c::TRACEPARENT.to_owned(),
            Value::String(w3c::format_traceparent(ctx)),
        );
        if ctx.trace_state.is_empty() {
            object.remove(w3c::TRACESTATE);
        } else {
            object.insert(
                w3c::TRACESTATE.to_owned(),
                Value::String(ctx.trace_state.header()),
            );
        }
        Ok(())
    }

    /// Sets the fields on a payload given as bytes, returning the new bytes.
    ///
    /// # Errors
    /// Not JSON, or not a JSON object.
    pub fn inject_bytes(ctx: &SpanContext, payload: &[u8]) -> Result<Vec<u8>, ParseError> {
        let mut value: Value = serde_json::from_slice(payload)
            .map_err(|_| ParseError::Envelope("the payload is not JSON"))?;
        inject(ctx, &mut value)?;
        serde_json::to_vec(&value).map_err(|_| ParseError::Envelope("cannot encode the payload"))
    }
}
