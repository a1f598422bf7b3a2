//! The logs section of a body (after the dictionary and the label-set
//! table): records in batch order. `uv` is an unsigned varint, `iv` a
//! zigzag varint, `str` a dictionary index:
//!
//! ```text
//! base      iv  the first record's timestamp, ns (0 when there is none)
//! records   (as many as the header's record count), each:
//!             iv timestamp (delta-of-delta from `base`, see `Timestamps`),
//!             uv label-set index, str message,
//!             u8 severity: 0 none, 1 trace, 2 debug, 3 info, 4 warn, 5 error, 6 fatal,
//!             uv field count, then per field: str name, str value as JSON text
//! ```
//!
//! Messages go through the dictionary like every other string: device logs
//! repeat the same few messages, and a message seen once costs only its
//! index (one to three bytes) more than inline.

use super::DecodeError;
use super::tables::TableWriter;
use super::wire::{Reader, Tables, Timestamps, put_ivarint, put_uvarint};
use iotel_model::{LogRecord, Severity};

/// Wire codes of severities; 0 is "none". Do not renumber.
fn severity_code(s: Option<Severity>) -> u8 {
    match s {
        None => 0,
        Some(Severity::Trace) => 1,
        Some(Severity::Debug) => 2,
        Some(Severity::Info) => 3,
        Some(Severity::Warn) => 4,
        Some(Severity::Error) => 5,
        Some(Severity::Fatal) => 6,
    }
}

/// The fewest bytes a record takes: timestamp, labels, message, severity,
/// field count.
const MIN_RECORD_BYTES: usize = 5;

/// Appends `logs` to the section in `out`. `times` carries the timestamp
/// coder from one call to the next: `None` before the frame's first record,
/// whose timestamp is then written as the base.
pub(super) fn encode(
    logs: &[LogRecord],
    times: &mut Option<Timestamps>,
    tables: &mut TableWriter,
    out: &mut Vec<u8>,
) {
    for l in logs {
        let ts = times.get_or_insert_with(|| {
            put_ivarint(out, l.timestamp_ns);
            Timestamps::new(l.timestamp_ns)
        });
        ts.put(out, l.timestamp_ns);
        put_uvarint(out, u64::from(tables.label_set(&l.labels)));
        put_uvarint(out, u64::from(tables.string(&l.message)));
        out.push(severity_code(l.severity));
        put_fields(out, tables, l.fields.iter());
    }
}

/// Writes structured fields as (name, JSON text) pairs. `serde_json::Value`
/// displays as compact JSON.
pub(super) fn put_fields<'a, V: std::fmt::Display + 'a>(
    out: &mut Vec<u8>,
    tables: &mut TableWriter,
    fields: impl ExactSizeIterator<Item = (&'a String, &'a V)>,
) {
    put_uvarint(out, fields.len() as u64);
    for (name, value) in fields {
        put_uvarint(out, u64::from(tables.string(name)));
        put_uvarint(out, u64::from(tables.display_string(value)));
    }
}

/// Reads fields written by [`put_fields`] into `insert`.
///
/// `T` is `serde_json::Value`, inferred from the model's field maps: this
/// crate reads JSON through the model's types rather than depending on
/// serde_json itself. Numbers come back as serde_json parses them; its
/// `float_roundtrip` feature (on in this crate) reads every float back bit
/// for bit.
pub(super) fn get_fields<T: std::str::FromStr>(
    r: &mut Reader<'_>,
    tables: &Tables,
    mut insert: impl FnMut(String, T),
) -> Result<(), DecodeError>
where
    T::Err: std::fmt::Display,
{
    let n = r.count("field count", 2)?;
    for _ in 0..n {
        let name = tables.string(r, "field name")?;
        let at = r.pos();
        let text = tables.string(r, "field value")?;
        let value = text.parse::<T>().map_err(|e| DecodeError::BadJson {
            field: name.to_string(),
            reason: e.to_string(),
            offset: at,
        })?;
        insert(name.to_string(), value);
    }
    Ok(())
}

/// Reads exactly `records` log records.
pub(super) fn decode(
    r: &mut Reader<'_>,
    tables: &Tables,
    records: usize,
) -> Result<Vec<LogRecord>, DecodeError> {
    let base = r.ivarint("base timestamp")?;
    if records > r.remaining() / MIN_RECORD_BYTES {
        return Err(DecodeError::ImpossibleCount {
            what: "log record count",
            count: records as u64,
            room: (r.remaining() / MIN_RECORD_BYTES) as u64,
            offset: r.pos(),
        });
    }
    let mut out = Vec::with_capacity(records);
    let mut ts = Timestamps::new(base);
    for _ in 0..records {
        let mut l = LogRecord::new(ts.get(r, "log timestamp")?, String::new());
        l.labels = tables.label_set(r, "log labels")?.clone();
        l.message = tables.string(r, "log message")?.to_string();
        let at = r.pos();
        l.severity = match r.u8("severity")? {
            0 => None,
            1 => Some(Severity::Trace),
            2 => Some(Severity::Debug),
            3 => Some(Severity::Info),
            4 => Some(Severity::Warn),
            5 => Some(Severity::Error),
            6 => Some(Severity::Fatal),
            code => {
                return Err(DecodeError::BadValue {
                    what: "severity",
                    value: u64::from(code),
                    expected: "0 (none) to 6 (fatal)",
                    offset: at,
                });
            }
        };
        get_fields(r, tables, |k, v| {
            l.fields.insert(k, v);
        })?;
        out.push(l);
    }
    Ok(out)
}
