//! `grpc-trace-bin`: the OpenCensus binary format that gRPC carries in
//! binary metadata (base64 on the wire; tonic decodes it).
//!
//! ```text
//! byte 0        version = 0
//! byte 1        field id 0, then 16 bytes trace id
//! byte 18       field id 1, then 8 bytes span id
//! byte 27       field id 2, then 1 byte trace options (bit 0: sampled)  ; optional
//! ```
//!
//! Fields come in this order. Parsing stops at the first unknown field id
//! after the known ones (the format's rule for extension), so newer senders'
//! extra fields are skipped. A missing trace options field means not sampled.

use crate::{ParseError, SpanContext, SpanId, TraceFlags, TraceId};

/// The metadata key gRPC and OpenCensus use.
pub const GRPC_TRACE_BIN: &str = "grpc-trace-bin";

/// The encoded length with all three fields.
pub const ENCODED_LEN: usize = 29;

const VERSION: u8 = 0;
const TRACE_ID_FIELD: u8 = 0;
const SPAN_ID_FIELD: u8 = 1;
const TRACE_OPTIONS_FIELD: u8 = 2;

/// Encodes `ctx` (its `tracestate` has no place in this format).
pub fn encode(ctx: &SpanContext) -> [u8; ENCODED_LEN] {
    let mut out = [0u8; ENCODED_LEN];
    out[0] = VERSION;
    out[1] = TRACE_ID_FIELD;
    out[2..18].copy_from_slice(&ctx.trace_id.0);
    out[18] = SPAN_ID_FIELD;
    out[19..27].copy_from_slice(&ctx.span_id.0);
    out[27] = TRACE_OPTIONS_FIELD;
    out[28] = ctx.trace_flags.to_byte();
    out
}

/// Decodes a `grpc-trace-bin` value.
///
/// # Errors
/// Another version, a value cut short, fields out of order, or zero ids.
pub fn decode(bytes: &[u8]) -> Result<SpanContext, ParseError> {
    let Some(&version) = bytes.first() else {
        return Err(ParseError::Binary {
            at: 0,
            reason: "empty value",
        });
    };
    if version != VERSION {
        return Err(ParseError::BinaryVersion { found: version });
    }
    let trace_id: [u8; 16] = field(bytes, 1, TRACE_ID_FIELD, "expected field 0 (trace id)")?;
    let span_id: [u8; 8] = field(bytes, 18, SPAN_ID_FIELD, "expected field 1 (span id)")?;
    let options = match bytes.get(27) {
        Some(&TRACE_OPTIONS_FIELD) => {
            let [options]: [u8; 1] = field(bytes, 27, TRACE_OPTIONS_FIELD, "")?;
            options
        }
        // No options, or an unknown field from a newer sender: stop here.
        _ => 0,
    };
    let ctx = SpanContext::new(
        TraceId(trace_id),
        SpanId(span_id),
        TraceFlags::from_byte(options),
    );
    if !ctx.trace_id.is_valid() {
        return Err(ParseError::ZeroId { what: "trace id" });
    }
    if !ctx.span_id.is_valid() {
        return Err(ParseError::ZeroId { what: "span id" });
    }
    Ok(ctx)
}

/// The `N` bytes after the field id at `at`.
fn field<const N: usize>(
    bytes: &[u8],
    at: usize,
    id: u8,
    wrong_id: &'static str,
) -> Result<[u8; N], ParseError> {
    match bytes.get(at) {
        Some(&found) if found == id => {}
        Some(_) => {
            return Err(ParseError::Binary {
                at,
                reason: wrong_id,
            });
        }
        None => {
            return Err(ParseError::Binary {
                at,
                reason: "value ends before a required field",
            });
        }
    }
    bytes
        .get(at + 1..at + 1 + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(ParseError::Binary {
            at: at + 1,
            reason: "value ends inside a field",
        })
}
