//! W3C Trace Context Level 1: the `traceparent` and `tracestate` headers.
//!
//! ```text
//! traceparent = version "-" trace-id "-" parent-id "-" trace-flags
//! version     = 2HEXDIGLC   ; ff is forbidden
//! trace-id    = 32HEXDIGLC  ; all zeros forbidden
//! parent-id   = 16HEXDIGLC  ; all zeros forbidden
//! trace-flags = 2HEXDIGLC
//! ```
//!
//! Version 00 is exactly 55 characters. A higher version is parsed by the
//! spec's rules for the future: at least 55 characters, the version 00
//! fields in their places, and if there is more it starts with `-`; only the
//! `sampled` flag is read. Leading and trailing spaces and tabs are allowed
//! around the value (HTTP's OWS). An invalid `traceparent` makes the whole
//! context invalid (and its `tracestate` is dropped with it); an invalid
//! `tracestate` alone is dropped and the `traceparent` kept.

use crate::ids::{decode_hex, hex_digit};
use crate::{Extract, Inject, ParseError, SpanContext, SpanId, TraceFlags, TraceId, TraceState};

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The length of a version 00 `traceparent`.
const LEN_V00: usize = 55;

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The version received; this crate always sends 00.
    pub version: u8,
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub trace_flags: TraceFlags,
}

impl TraceParent {
    /// Parses one `traceparent` value.
    ///
    /// # Errors
    /// Which part is wrong and at which byte (after trimming OWS).
    pub fn parse(header: &str) -> Result<Self, ParseError> {
        let s = header.trim_matches(|c| c == ' ' || c == '\t').as_bytes();
        if s.len() < 2 {
            return Err(ParseError::Length {
                what: "traceparent",
                expected: "55 characters",
                found: s.len(),
            });
        }
        if s[1] == b'-' {
            return Err(ParseError::Length {
                what: "version",
                expected: "2 hex digits",
                found: 1,
            });
        }
        let mut version = [0u8; 1];
        decode_hex("version", &s[..2], 0, &mut version)?;
        let version = version[0];
        if version == 0xff {
            return Err(ParseError::ForbiddenVersion);
        }
        // The dashes first: a field too long or too short is then reported
        // as such rather than as a stray character.
        for (field, (at, what)) in [(2, "version"), (35, "trace id"), (52, "parent id")]
            .into_iter()
            .enumerate()
        {
            match s.get(at) {
                Some(b'-') => {}
                Some(&c) if hex_digit(c).is_some() || s[at - 1] == b'-' => {
                    let found = s.split(|&c| c == b'-').nth(field).map_or(0, <[u8]>::len);
                    return Err(ParseError::Length {
                        what,
                        expected: field_len(what),
                        found,
                    });
                }
                Some(&c) => {
                    return Err(ParseError::InvalidChar {
                        what: "traceparent",
                        at,
                        found: char::from(c),
                        expected: "`-`",
                    });
                }
                None => break,
            }
        }
        if s.len() < LEN_V00 {
            return Err(ParseError::Length {
                what: "traceparent",
                expected: "55 characters",
                found: s.len(),
            });
        }
        let mut trace_id = [0u8; 16];
        decode_hex("trace id", &s[3..35], 3, &mut trace_id)?;
        let mut parent_id = [0u8; 8];
        decode_hex("parent id", &s[36..52], 36, &mut parent_id)?;
        let mut flags = [0u8; 1];
        decode_hex("trace flags", &s[53..55], 53, &mut flags)?;
        if s.len() > LEN_V00 {
            if version == 0 {
                return Err(ParseError::Length {
                    what: "traceparent version 00",
                    expected: "exactly 55 characters",
                    found: s.len(),
                });
            }
            if s[LEN_V00] != b'-' {
                return Err(ParseError::InvalidChar {
                    what: "traceparent",
                    at: LEN_V00,
                    found: char::from(s[LEN_V00]),
                    expected: "`-` after the trace flags",
                });
            }
        }
        let trace_id = TraceId(trace_id);
        let parent_id = SpanId(parent_id);
        if !trace_id.is_valid() {
            return Err(ParseError::ZeroId { what: "trace id" });
        }
        if !parent_id.is_valid() {
            return Err(ParseError::ZeroId { what: "parent id" });
        }
        Ok(Self {
            version,
            trace_id,
            parent_id,
            trace_flags: TraceFlags::from_byte(flags[0]),
        })
    }
}

fn field_len(what: &str) -> &'static str {
    match what {
        "version" => "2 hex digits",
        "trace id" => "32 hex digits",
        _ => "16 hex digits",
    }
}

/// The `traceparent` value for `ctx`, version 00.
pub fn format_traceparent(ctx: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        ctx.trace_id,
        ctx.span_id,
        ctx.trace_flags.to_byte()
    )
}

/// Reads `traceparent` and `tracestate` from `carrier`.
///
/// # Errors
/// No `traceparent`, more than one, or an invalid one. An invalid
/// `tracestate` is not an error: it is dropped, keeping the parent.
pub fn extract(carrier: &(impl Extract + ?Sized)) -> Result<SpanContext, ParseError> {
    let parents = carrier.get_all(TRACEPARENT);
    let parent = match parents.as_slice() {
        [] => {
            return Err(ParseError::Missing {
                header: TRACEPARENT,
            });
        }
        [one] => TraceParent::parse(one)?,
        many => {
            return Err(ParseError::Duplicate {
                header: TRACEPARENT,
                count: many.len(),
            });
        }
    };
    let trace_state = TraceState::parse_headers(carrier.get_all(TRACESTATE)).unwrap_or_default();
    Ok(SpanContext {
        trace_id: parent.trace_id,
        span_id: parent.parent_id,
        trace_flags: parent.trace_flags,
        trace_state,
    })
}

/// The context to continue: the received one if valid, otherwise a new
/// trace (random ids, sampled), so a bad header never fails a request.
/// Make the spans of this process with [`SpanContext::child`].
pub fn extract_or_new(carrier: &(impl Extract + ?Sized)) -> SpanContext {
    extract(carrier).unwrap_or_else(|_| SpanContext::new_root(true))
}

/// Writes `traceparent`, and `tracestate` when it is not empty.
pub fn inject(ctx: &SpanContext, carrier: &mut (impl Inject + ?Sized)) {
    carrier.set(TRACEPARENT, format_traceparent(ctx));
    if !ctx.trace_state.is_empty() {
        carrier.set(TRACESTATE, ctx.trace_state.header());
    }
}
