//! B3 propagation (openzipkin/b3-propagation), single and multi header.
//!
//! ```text
//! b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]
//! b3: {SamplingState}                  ; a sampling decision only
//! X-B3-TraceId: 16 or 32 lower-hex     ; 64-bit ids are zero-extended
//! X-B3-SpanId: 16 lower-hex
//! X-B3-ParentSpanId: 16 lower-hex      ; optional
//! X-B3-Sampled: 1 | 0                  ; `true`/`false` accepted, never sent
//! X-B3-Flags: 1                        ; debug, implies sampled
//! ```
//!
//! A trace id whose high 64 bits are zero is sent as 16 hex digits, so a
//! 64-bit id goes out as it came in.

use crate::ids::decode_hex;
use crate::{Extract, Inject, ParseError, SpanContext, SpanId, TraceFlags, TraceId};

pub const B3: &str = "b3";
pub const TRACE_ID: &str = "x-b3-traceid";
pub const SPAN_ID: &str = "x-b3-spanid";
pub const PARENT_SPAN_ID: &str = "x-b3-parentspanid";
pub const SAMPLED: &str = "x-b3-sampled";
pub const FLAGS: &str = "x-b3-flags";

/// The B3 sampling state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// `1`: record and report.
    Accept,
    /// `0`: do not.
    Deny,
    /// `d`: debug, which implies accept.
    Debug,
    /// Absent: the receiver decides.
    Defer,
}

impl Sampling {
    pub fn is_sampled(self) -> bool {
        matches!(self, Self::Accept | Self::Debug)
    }
}

/// A B3 context with ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct B3Context {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub sampling: Sampling,
}

impl B3Context {
    /// The span context (no `tracestate` in B3); debug maps to sampled,
    /// defer to not sampled.
    pub fn span_context(&self) -> SpanContext {
        SpanContext::new(
            self.trace_id,
            self.span_id,
            TraceFlags::sampled(self.sampling.is_sampled()),
        )
    }

    pub fn from_span_context(ctx: &SpanContext) -> Self {
        Self {
            trace_id: ctx.trace_id,
            span_id: ctx.span_id,
            parent_span_id: None,
            sampling: if ctx.is_sampled() {
                Sampling::Accept
            } else {
                Sampling::Deny
            },
        }
    }
}

/// What a B3 carrier holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum B3 {
    Context(B3Context),
    /// Only a sampling decision (`b3: 0`, or `X-B3-Sampled` alone).
    SamplingOnly(Sampling),
}

/// Which headers to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// The `b3` header (smaller; what new deployments use).
    #[default]
    Single,
    /// The `X-B3-*` headers.
    Multi,
    /// Both, while peers migrate.
    SingleAndMulti,
}

fn trace_id(s: &str, offset: usize) -> Result<TraceId, ParseError> {
    let mut id = [0u8; 16];
    match s.len() {
        16 => decode_hex("trace id", s.as_bytes(), offset, &mut id[8..])?,
        32 => decode_hex("trace id", s.as_bytes(), offset, &mut id)?,
        found => {
            return Err(ParseError::Length {
                what: "trace id",
                expected: "16 or 32 hex digits",
                found,
            });
        }
    }
    let id = TraceId(id);
    if id.is_valid() {
        Ok(id)
    } else {
        Err(ParseError::ZeroId { what: "trace id" })
    }
}

fn span_id(what: &'static str, s: &str, offset: usize) -> Result<SpanId, ParseError> {
    let mut id = [0u8; 8];
    decode_hex(what, s.as_bytes(), offset, &mut id)?;
    let id = SpanId(id);
    if id.is_valid() {
        Ok(id)
    } else {
        Err(ParseError::ZeroId { what })
    }
}

fn sampling(s: &str) -> Result<Sampling, ParseError> {
    match s {
        "1" => Ok(Sampling::Accept),
        "0" => Ok(Sampling::Deny),
        "d" => Ok(Sampling::Debug),
        _ => Err(ParseError::B3Sampling {
            found: s.to_owned(),
        }),
    }
}

/// Parses a `b3` single header value.
///
/// # Errors
/// Which field is wrong and where.
pub fn parse_single(header: &str) -> Result<B3, ParseError> {
    let header = header.trim_matches(|c| c == ' ' || c == '\t');
    let parts: Vec<&str> = header.split('-').collect();
    let offset = |i: usize| parts[..i].iter().map(|p| p.len() + 1).sum::<usize>();
    match parts.as_slice() {
        [s] => Ok(B3::SamplingOnly(sampling(s)?)),
        [t, s, rest @ ..] if rest.len() <= 2 => {
            let trace = trace_id(t, 0)?;
            let span = span_id("span id", s, offset(1))?;
            let sampling = match rest.first() {
                Some(x) => sampling(x)?,
                None => Sampling::Defer,
            };
            let parent_span_id = match rest.get(1) {
                Some(p) => Some(span_id("parent span id", p, offset(3))?),
                None => None,
            };
            Ok(B3::Context(B3Context {
                trace_id: trace,
                span_id: span,
                parent_span_id,
                sampling,
            }))
        }
        _ => Err(ParseError::Length {
            what: "b3",
            expected: "1, 2, 3 or 4 fields separated by `-`",
            found: parts.len(),
        }),
    }
}

/// The `b3` single header value.
pub fn format_single(ctx: &B3Context) -> String {
    let mut out = format!("{}-{}", trace_id_hex(ctx.trace_id), ctx.span_id);
    let state = match ctx.sampling {
        Sampling::Accept => Some("1"),
        Sampling::Deny => Some("0"),
        Sampling::Debug => Some("d"),
        Sampling::Defer => None,
    };
    if let Some(state) = state {
        out.push('-');
        out.push_str(state);
        if let Some(parent) = ctx.parent_span_id {
            out.push('-');
            out.push_str(&parent.to_string());
        }
    }
    out
}

/// 16 hex digits for a 64-bit id, else 32.
fn trace_id_hex(id: TraceId) -> String {
    let hex = id.to_string();
    if id.high_is_zero() {
        hex[16..].to_owned()
    } else {
        hex
    }
}

fn one<'a>(
    carrier: &'a (impl Extract + ?Sized),
    name: &'static str,
) -> Result<Option<&'a str>, ParseError> {
    match carrier.get_all(name).as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.trim_matches(|c| c == ' ' || c == '\t'))),
        many => Err(ParseError::Duplicate {
            header: name,
            count: many.len(),
        }),
    }
}

/// Parses the `X-B3-*` headers.
///
/// # Errors
/// A malformed header, a duplicate one, or only one of trace id and span id.
pub fn extract_multi(carrier: &(impl Extract + ?Sized)) -> Result<B3, ParseError> {
    let debug = match one(carrier, FLAGS)? {
        Some("1") => true,
        Some("0") | None => false,
        Some(other) => {
            return Err(ParseError::B3Sampling {
                found: other.to_owned(),
            });
        }
    };
    let sampled = match one(carrier, SAMPLED)? {
        Some("1") | Some("true") => Sampling::Accept,
        Some("0") | Some("false") => Sampling::Deny,
        Some(other) => {
            return Err(ParseError::B3Sampling {
                found: other.to_owned(),
            });
        }
        None => Sampling::Defer,
    };
    let sampling = if debug { Sampling::Debug } else { sampled };
    match (one(carrier, TRACE_ID)?, one(carrier, SPAN_ID)?) {
        (Some(t), Some(s)) => Ok(B3::Context(B3Context {
            trace_id: trace_id(t, 0)?,
            span_id: span_id("span id", s, 0)?,
            parent_span_id: one(carrier, PARENT_SPAN_ID)?
                .map(|p| span_id("parent span id", p, 0))
                .transpose()?,
            sampling,
        })),
        (None, None) if sampling != Sampling::Defer => Ok(B3::SamplingOnly(sampling)),
        (None, None) => Err(ParseError::Missing { header: TRACE_ID }),
        (Some(_), None) => Err(ParseError::B3Incomplete("X-B3-TraceId without X-B3-SpanId")),
        (None, Some(_)) => Err(ParseError::B3Incomplete("X-B3-SpanId without X-B3-TraceId")),
    }
}

/// Reads the `b3` single header, or else the `X-B3-*` headers.
///
/// # Errors
/// As [`parse_single`] or [`extract_multi`]; `Missing` when neither is there.
pub fn extract(carrier: &(impl Extract + ?Sized)) -> Result<B3, ParseError> {
    match one(carrier, B3)? {
        Some(single) => parse_single(single),
        None => extract_multi(carrier),
    }
}

/// The context to continue: the received one if it has ids, otherwise a new
/// trace that keeps a received sampling decision (sampled when none).
pub fn extract_or_new(carrier: &(impl Extract + ?Sized)) -> SpanContext {
    match extract(carrier) {
        Ok(B3::Context(ctx)) => ctx.span_context(),
        Ok(B3::SamplingOnly(s)) => SpanContext::new_root(s.is_sampled()),
        Err(_) => SpanContext::new_root(true),
    }
}

/// Writes `ctx` in the given encoding.
pub fn inject(ctx: &B3Context, encoding: Encoding, carrier: &mut (impl Inject + ?Sized)) {
    if matches!(encoding, Encoding::Single | Encoding::SingleAndMulti) {
        carrier.set(B3, format_single(ctx));
    }
    if matches!(encoding, Encoding::Multi | Encoding::SingleAndMulti) {
        carrier.set(TRACE_ID, trace_id_hex(ctx.trace_id));
        carrier.set(SPAN_ID, ctx.span_id.to_string());
        if let Some(parent) = ctx.parent_span_id {
            carrier.set(PARENT_SPAN_ID, parent.to_string());
        }
        match ctx.sampling {
            // Debug implies sampled: X-B3-Sampled is not sent with it.
            Sampling::Debug => carrier.set(FLAGS, "1".to_owned()),
            Sampling::Accept => carrier.set(SAMPLED, "1".to_owned()),
            Sampling::Deny => carrier.set(SAMPLED, "0".to_owned()),
            Sampling::Defer => {}
        }
    }
}
