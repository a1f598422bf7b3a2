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
//!
//! # Size against OTLP
//!
//! `bash bench/span-encoding.sh` (`examples/span_sizes.rs`) encodes the
//! same device and gateway spans (messaging and HTTP attributes, parent
//! chains, random ids) both ways. Bytes per span:
//!
//! ```text
//! spans/batch           OTLP   OTLP+gzip   native   +snappy   +zstd   +lz4
//! edge agent,     1    242.0       236.3    255.5     238.0   240.5  235.0
//! one device     10    172.3        65.1     81.9      66.5    62.7   65.5
//!               100    165.3        38.7     53.9      42.7    35.5   39.9
//!              1000    164.6        36.1     50.5      36.3    31.0   35.9
//! gateway,        1    290.4       271.3    300.9     275.2   274.2  273.6
//! 200 devices    10    236.3        83.5    119.4      91.9    84.4   92.0
//!               100    227.5        41.0     70.0      44.4    38.1   44.5
//!              1000    219.2        41.3     61.3      37.3    31.3   37.3
//! ```
//!
//! From 10 spans a batch on, the native body alone is 2-3.6 times smaller
//! than OTLP protobuf (the dictionary holds each name, key and value once)
//! and with zstd 2.8-7 times; against gzipped OTLP it is 1.0-1.3 times
//! smaller. A batch of one span gains nothing: the frame's header (agent
//! id, sequence) and a dictionary of every string once make it as large as
//! OTLP. Random ids set the floor, as they are kept whole: each trace's
//! 16-byte trace id and each span's 8-byte id (a parent id repeats one
//! already sent, which the compressors find) are 16 of the ~31 bytes a span
//! takes in the edge stream (2 spans a trace), 12 in the gateway's (4).

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
