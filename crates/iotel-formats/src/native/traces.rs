//! The traces section of a body (after the dictionary and the label-set
//! table): spans in batch order. `uv` is an unsigned varint, `iv` a zigzag
//! varint, `str` a dictionary index:
//!
//! ```text
//! base      iv  the first span's start, ns (0 when there is none)
//! spans     (as many as the header's record count), each:
//!             16 bytes trace id, 8 bytes span id,
//!             u8 0 = no parent | 1 = 8 bytes parent span id follow,
//!             str name,
//!             iv start (delta-of-delta from `base`, see `Timestamps`),
//!             iv duration (end - start, ns),
//!             uv label-set index,
//!             u8 status: 0 unset, 1 ok, 2 error,
//!             uv attribute count, then per attribute: str name, str value as JSON text
//! ```
//!
//! Ids go whole, as W3C Trace Context requires: never shortened.

use super::DecodeError;
use super::logs::{get_fields, put_fields};
use super::tables::TableWriter;
use super::wire::{Reader, Tables, Timestamps, put_ivarint, put_uvarint};
use iotel_model::{Span, SpanStatus};

/// The fewest bytes a span takes: ids, parent flag, name, start, duration,
/// labels, status, attribute count.
const MIN_SPAN_BYTES: usize = 16 + 8 + 7;

/// Appends `spans` to the section in `out`. `starts` carries the start
/// coder from one call to the next: `None` before the frame's first span,
/// whose start is then written as the base.
pub(super) fn encode(
    spans: &[Span],
    starts: &mut Option<Timestamps>,
    tables: &mut TableWriter,
    out: &mut Vec<u8>,
) {
    for s in spans {
        let coder = starts.get_or_insert_with(|| {
            put_ivarint(out, s.start_ns);
            Timestamps::new(s.start_ns)
        });
        out.extend_from_slice(&s.trace_id);
        out.extend_from_slice(&s.span_id);
        match s.parent_span_id {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&p);
            }
        }
        put_uvarint(out, u64::from(tables.string(&s.name)));
        coder.put(out, s.start_ns);
        put_ivarint(out, s.end_ns.wrapping_sub(s.start_ns));
        put_uvarint(out, u64::from(tables.label_set(&s.labels)));
        out.push(match s.status {
            SpanStatus::Unset => 0,
            SpanStatus::Ok => 1,
            SpanStatus::Error => 2,
        });
        put_fields(out, tables, s.attributes.iter());
    }
}

/// Reads exactly `records` spans.
pub(super) fn decode(
    r: &mut Reader<'_>,
    tables: &Tables,
    records: usize,
) -> Result<Vec<Span>, DecodeError> {
    let base = r.ivarint("base timestamp")?;
    if records > r.remaining() / MIN_SPAN_BYTES {
        return Err(DecodeError::ImpossibleCount {
            what: "span count",
            count: records as u64,
            room: (r.remaining() / MIN_SPAN_BYTES) as u64,
            offset: r.pos(),
        });
    }
    let mut out = Vec::with_capacity(records);
    let mut starts = Timestamps::new(base);
    for _ in 0..records {
        let trace_id = r.array("trace id")?;
        let span_id = r.array("span id")?;
        let at = r.pos();
        let parent_span_id = match r.u8("parent flag")? {
            0 => None,
            1 => Some(r.array("parent span id")?),
            flag => {
                return Err(DecodeError::BadValue {
                    what: "parent flag",
                    value: u64::from(flag),
                    expected: "0 (no parent) or 1 (a parent span id follows)",
                    offset: at,
                });
            }
        };
        let name = tables.string(r, "span name")?.to_string();
        let start_ns = starts.get(r, "span start")?;
        let end_ns = start_ns.wrapping_add(r.ivarint("span duration")?);
        let labels = tables.label_set(r, "span labels")?.clone();
        let at = r.pos();
        let status = match r.u8("span status")? {
            0 => SpanStatus::Unset,
            1 => SpanStatus::Ok,
            2 => SpanStatus::Error,
            code => {
                return Err(DecodeError::BadValue {
                    what: "span status",
                    value: u64::from(code),
                    expected: "0 (unset), 1 (ok) or 2 (error)",
                    offset: at,
                });
            }
        };
        let mut span = Span {
            trace_id,
            span_id,
            parent_span_id,
            name,
            start_ns,
            end_ns,
            labels,
            attributes: Default::default(),
            status,
        };
        get_fields(r, tables, |k, v| {
            span.attributes.insert(k, v);
        })?;
        out.push(span);
    }
    Ok(out)
}
