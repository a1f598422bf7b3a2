//! The metrics section of a body (after the dictionary and the label-set
//! table). Layout, in order; `uv` is an unsigned varint, `iv` a zigzag
//! varint, `str` a dictionary index, `str?` 0 for none or index + 1:
//!
//! ```text
//! families  uv count, then per family:
//!             str family name, u8 type (see `kind_code`), str? help, str? unit
//! base      iv  the batch's first timestamp, ms
//! series    uv count, then per series:
//!             str series name, uv family index, uv label-set index,
//!             uv sample count n,
//!             n × timestamp  (delta-of-delta from `base`, see `Timestamps`)
//!             u8 value coding: 0 = XOR with the previous value (`XorValues`),
//!                1 + d = decimals of d digits, 0 ≤ d ≤ 6 (`Decimal`),
//!             n × value
//!             uv exemplar count, then per exemplar:
//!               uv gap (sample position - position after the previous one),
//!               uv label-set index, 8 bytes value (f64 bits, little endian),
//!               u8 0 = no timestamp | 1 = iv (timestamp - sample timestamp)
//! ```
//!
//! A series is (name, label set, family): samples are grouped by it, series
//! in the order first seen and each series' samples in batch order, so
//! decoding gives back every sample with every field, grouped that way.
//!
//! Because a series' samples come together, and its value coding (chosen
//! from all its values) before them, the [`Encoder`] cannot write the
//! section as samples arrive. It keeps each series' samples encoded, a
//! timestamp and a value after another, in the coding its values so far
//! allow, and parts them into the two columns when the frame is finished.

use super::DecodeError;
use super::chunks::{Chunks, Stream};
use super::tables::{Index, TableWriter};
use super::wire::{Decimal, Part, Reader, Tables, Timestamps, XorValues, put_ivarint, put_uvarint};
use iotel_model::{Exemplar, Metric, MetricMeta, MetricType};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

/// The wire code of each metric type, as in remote write's
/// `MetricMetadata.MetricType`. Do not renumber.
fn kind_code(kind: MetricType) -> u8 {
    match kind {
        MetricType::Unknown => 0,
        MetricType::Counter => 1,
        MetricType::Gauge => 2,
        MetricType::Histogram => 3,
        MetricType::GaugeHistogram => 4,
        MetricType::Summary => 5,
        MetricType::Info => 6,
        MetricType::StateSet => 7,
    }
}

fn kind_of(code: u8) -> Option<MetricType> {
    Some(match code {
        0 => MetricType::Unknown,
        1 => MetricType::Counter,
        2 => MetricType::Gauge,
        3 => MetricType::Histogram,
        4 => MetricType::GaugeHistogram,
        5 => MetricType::Summary,
        6 => MetricType::Info,
        7 => MetricType::StateSet,
        _ => return None,
    })
}

/// The value coding code of [`XorValues`].
const XOR_CODING: u8 = 0;

/// The fewest bytes a series takes: name, family, label set, count,
/// value coding, exemplar count.
const MIN_SERIES_BYTES: usize = 6;
/// The fewest bytes a sample takes: a timestamp byte and a value byte.
const MIN_SAMPLE_BYTES: usize = 2;
/// The fewest bytes an exemplar takes: gap, label set, value, flag.
const MIN_EXEMPLAR_BYTES: usize = 11;

/// A series' value coder: XOR, or decimals of some digits.
#[derive(Debug, Clone, Copy)]
enum Values {
    Xor(XorValues),
    Decimal(Decimal),
}

impl Values {
    /// The coder of `digits` (`None`: XOR) at the start of a series.
    fn new(digits: Option<u8>) -> Self {
        match digits {
            None => Values::Xor(XorValues::default()),
            Some(d) => Values::Decimal(Decimal::new(d)),
        }
    }

    /// The coder of `digits` continuing from `state` (see [`Values::state`]).
    fn resume(digits: Option<u8>, state: u64) -> Self {
        match digits {
            None => Values::Xor(XorValues::resume(state)),
            Some(d) => Values::Decimal(Decimal::resume(d, state as i64)),
        }
    }

    /// The previous value's bits (XOR) or scaled integer (decimal).
    fn state(self) -> u64 {
        match self {
            Values::Xor(c) => c.state(),
            Values::Decimal(c) => c.state() as u64,
        }
    }

    /// The value coding byte of `digits`.
    fn code(digits: Option<u8>) -> u8 {
        digits.map_or(XOR_CODING, Decimal::code)
    }

    fn put(&mut self, out: &mut Vec<u8>, v: f64) {
        match self {
            Values::Xor(c) => c.put(out, v),
            Values::Decimal(c) => c.put(out, v),
        }
    }

    fn get(&mut self, r: &mut Reader<'_>) -> Result<f64, DecodeError> {
        match self {
            Values::Xor(c) => c.get(r),
            Values::Decimal(c) => c.get(r),
        }
    }
}

/// A family as the section lists it: dictionary indices (help and unit
/// + 1, 0 for none) and the type code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Family {
    name: u32,
    help: u32,
    unit: u32,
    kind: u8,
}

/// One series while a frame is built: what its header needs, its coders'
/// state, and its samples so far, encoded, in [`Encoder::samples`]. This,
/// and not the samples, is what a series costs: 56 bytes and its blocks.
#[derive(Debug)]
struct Series {
    times: Timestamps,
    /// The value coder's [`Values::state`].
    values: u64,
    name: u32,
    family: u32,
    labels: u32,
    samples: u32,
    /// Each sample's timestamp then its value, in the coding of `digits`:
    /// the series' two columns interleaved, parted when the frame is
    /// finished.
    bytes: Stream,
    /// The value coding: the fewest digits with which every value so far
    /// round-trips as a decimal, or `None` for XOR. Only a value that does
    /// not fit changes it, to more digits or to XOR, and the series' values
    /// are then written again in the new coding: a series changes coding
    /// at most seven times, and ends in the one its whole column needs.
    digits: Option<u8>,
}

// The 56 bytes `Builder::approx_bytes` documents.
const _: () = assert!(size_of::<Series>() <= 56);

impl Series {
    fn key(&self) -> (u32, u32, u32) {
        (self.name, self.labels, self.family)
    }
}

/// An exemplar waiting for its series to be written.
#[derive(Debug)]
struct PendingExemplar {
    series: u32,
    /// The sample's position in its series.
    position: u32,
    labels: u32,
    value_bits: u64,
    /// The exemplar's timestamp minus the sample's.
    timestamp: Option<i64>,
}

/// Calls `each` with every sample of `series`, whose bytes are `bytes`:
/// the bytes of its timestamp, those of its value, and the value.
fn each_sample(bytes: &[u8], series: &Series, mut each: impl FnMut(&[u8], &[u8], f64)) {
    let mut values = Values::new(series.digits);
    let mut r = Reader::new(bytes, Part::Body);
    for _ in 0..series.samples {
        // The encoder's own bytes: they always read back.
        let at = r.pos();
        if r.uvarint("sample timestamp").is_err() {
            return;
        }
        let value_at = r.pos();
        let Ok(v) = values.get(&mut r) else {
            return;
        };
        each(&bytes[at..value_at], &bytes[value_at..r.pos()], v);
    }
}

/// Builds a metrics section from batches of samples, one after another,
/// without keeping them: per family and series only the table indices, the
/// coders' state and the encoded samples. Everything a batch names is
/// interned into the [`TableWriter`] when it is pushed, in batch order, so
/// pushing batches one by one writes the same section as pushing them
/// joined.
#[derive(Debug, Default)]
pub(super) struct Encoder {
    hasher: RandomState,
    families: Vec<Family>,
    family_index: Index,
    /// The frame's first timestamp, from which every series' timestamps
    /// start.
    base: Option<i64>,
    series: Vec<Series>,
    series_index: Index,
    samples: Chunks,
    exemplars: Vec<PendingExemplar>,
    /// One sample's bytes; a series' bytes while it is recoded or written.
    scratch: Vec<u8>,
    /// A series' bytes recoded, or its value column.
    column: Vec<u8>,
    /// A series' values while it is recoded.
    values: Vec<f64>,
}

impl Encoder {
    /// Adds `metrics`, interning their strings and label sets in `tables`.
    pub(super) fn push(&mut self, metrics: &[Metric], tables: &mut TableWriter) {
        // Samples of one family share its `Arc`, and often their name's:
        // while the batch is borrowed, the same pointer is the same family
        // or name as the sample before.
        let mut last_family: Option<(&Arc<MetricMeta>, u32)> = None;
        let mut last_name: Option<(&Arc<str>, u32)> = None;
        for m in metrics {
            let family = match last_family {
                Some((meta, family)) if Arc::ptr_eq(meta, &m.meta) => family,
                _ => {
                    let family = self.family(&m.meta, tables);
                    last_family = Some((&m.meta, family));
                    family
                }
            };
            let name = match last_name {
                Some((name, i)) if Arc::ptr_eq(name, &m.name) => i,
                _ => {
                    let i = tables.string(&m.name);
                    last_name = Some((&m.name, i));
                    i
                }
            };
            let labels = tables.label_set(&m.labels);
            let s = self.series(name, labels, family, m.timestamp_ms);
            if let Some(e) = m.exemplar.as_deref() {
                self.exemplars.push(PendingExemplar {
                    series: s as u32,
                    position: self.series[s].samples,
                    labels: tables.label_set(&e.labels),
                    value_bits: e.value.to_bits(),
                    timestamp: e.timestamp_ms.map(|t| t.wrapping_sub(m.timestamp_ms)),
                });
            }
            self.put_sample(s, m.timestamp_ms, m.value);
        }
    }

    fn family(&mut self, meta: &MetricMeta, tables: &mut TableWriter) -> u32 {
        let key = Family {
            name: tables.string(&meta.family),
            kind: kind_code(meta.kind),
            help: tables.opt_string(meta.help.as_deref()),
            unit: tables.opt_string(meta.unit.as_deref()),
        };
        let hash = self.hasher.hash_one(key);
        let families = &self.families;
        if let Some(f) = self.family_index.find(hash, |f| families[f] == key) {
            return f as u32;
        }
        let f = self.families.len();
        self.families.push(key);
        let (hasher, families) = (&self.hasher, &self.families);
        self.family_index
            .insert(hash, f, |f| hasher.hash_one(families[f]));
        f as u32
    }

    /// The series (name, labels, family), added on first sight with its
    /// timestamps starting from the frame's first, `t` if this is it.
    fn series(&mut self, name: u32, labels: u32, family: u32, t: i64) -> usize {
        let key = (name, labels, family);
        let hash = self.hasher.hash_one(key);
        let series = &self.series;
        if let Some(s) = self.series_index.find(hash, |s| series[s].key() == key) {
            return s;
        }
        let base = *self.base.get_or_insert(t);
        let s = self.series.len();
        self.series.push(Series {
            times: Timestamps::new(base),
            values: 0,
            name,
            family,
            labels,
            samples: 0,
            bytes: Stream::EMPTY,
            digits: None,
        });
        let (hasher, series) = (&self.hasher, &self.series);
        self.series_index
            .insert(hash, s, |s| hasher.hash_one(series[s].key()));
        s
    }

    fn put_sample(&mut self, s: usize, t: i64, v: f64) {
        let series = &self.series[s];
        let digits = match series.digits {
            _ if series.samples == 0 => (0..=Decimal::MAX_DIGITS).find(|&d| Decimal::fits(v, d)),
            Some(d) if Decimal::fits(v, d) => Some(d),
            Some(d) => self.recode(s, v, d + 1),
            None => None,
        };
        let series = &mut self.series[s];
        let mut values = Values::resume(digits, series.values);
        self.scratch.clear();
        series.times.put(&mut self.scratch, t);
        values.put(&mut self.scratch, v);
        self.samples.append(&mut series.bytes, &self.scratch);
        series.values = values.state();
        series.digits = digits;
        series.samples += 1;
    }

    /// Series `s`'s values so far do not take `v` in their coding: writes
    /// them again in the fewest digits of at least `from` with which they
    /// and `v` round-trip, or XORed, and returns that coding.
    fn recode(&mut self, s: usize, v: f64, from: u8) -> Option<u8> {
        let series = &mut self.series[s];
        self.scratch.clear();
        self.samples.read(&series.bytes, &mut self.scratch);
        let values = &mut self.values;
        values.clear();
        each_sample(&self.scratch, series, |_, _, v| values.push(v));
        let digits = (from..=Decimal::MAX_DIGITS)
            .find(|&d| Decimal::fits(v, d) && values.iter().all(|&v| Decimal::fits(v, d)));
        let mut to = Values::new(digits);
        let mut values = self.values.iter();
        let column = &mut self.column;
        column.clear();
        each_sample(&self.scratch, series, |timestamp, _, _| {
            column.extend_from_slice(timestamp);
            if let Some(&v) = values.next() {
                to.put(column, v);
            }
        });
        self.samples.free(&mut series.bytes);
        self.samples.append(&mut series.bytes, &self.column);
        series.values = to.state();
        digits
    }

    /// Writes the section: families, base, then every series with its
    /// timestamp column, value coding, value column and exemplars.
    pub(super) fn finish(&mut self, out: &mut Vec<u8>) {
        put_uvarint(out, self.families.len() as u64);
        for f in &self.families {
            put_uvarint(out, u64::from(f.name));
            out.push(f.kind);
            put_uvarint(out, u64::from(f.help));
            put_uvarint(out, u64::from(f.unit));
        }
        put_ivarint(out, self.base.unwrap_or(0));
        put_uvarint(out, self.series.len() as u64);
        // Positions are unique within a series: the order is total.
        self.exemplars
            .sort_unstable_by_key(|e| (e.series, e.position));
        let mut exemplars = &self.exemplars[..];
        for (s, series) in self.series.iter().enumerate() {
            put_uvarint(out, u64::from(series.name));
            put_uvarint(out, u64::from(series.family));
            put_uvarint(out, u64::from(series.labels));
            put_uvarint(out, u64::from(series.samples));
            self.scratch.clear();
            self.samples.read(&series.bytes, &mut self.scratch);
            self.column.clear();
            let column = &mut self.column;
            each_sample(&self.scratch, series, |timestamp, value, _| {
                out.extend_from_slice(timestamp);
                column.extend_from_slice(value);
            });
            out.push(Values::code(series.digits));
            out.extend_from_slice(&self.column);
            let n = exemplars
                .iter()
                .take_while(|e| e.series as usize == s)
                .count();
            let (these, rest) = exemplars.split_at(n);
            exemplars = rest;
            put_uvarint(out, n as u64);
            let mut expected = 0;
            for e in these {
                put_uvarint(out, u64::from(e.position - expected));
                expected = e.position + 1;
                put_uvarint(out, u64::from(e.labels));
                out.extend_from_slice(&e.value_bits.to_le_bytes());
                match e.timestamp {
                    None => out.push(0),
                    Some(delta) => {
                        out.push(1);
                        put_ivarint(out, delta);
                    }
                }
            }
        }
    }

    /// About the bytes [`Encoder::finish`] writes: the samples, plus a
    /// bound on the rest for small tables.
    pub(super) fn written_len(&self) -> usize {
        self.samples.bytes(false)
            + 16 * (self.families.len() + self.series.len())
            + 24 * self.exemplars.len()
            + 16
    }

    /// Empties the encoder for the next frame, keeping its buffers.
    pub(super) fn clear(&mut self) {
        self.families.clear();
        self.family_index.clear();
        self.base = None;
        self.series.clear();
        self.series_index.clear();
        self.samples.clear();
        self.exemplars.clear();
    }

    /// The memory the encoder takes: by what it holds, or with `held` by
    /// what its buffers have room for.
    pub(super) fn bytes(&self, held: bool) -> usize {
        fn vec<T>(v: &Vec<T>, held: bool) -> usize {
            size_of::<T>() * if held { v.capacity() } else { v.len() }
        }
        let scratch = if held {
            self.scratch.capacity()
                + self.column.capacity()
                + self.values.capacity() * size_of::<f64>()
        } else {
            0
        };
        vec(&self.families, held)
            + vec(&self.series, held)
            + vec(&self.exemplars, held)
            + self.family_index.bytes()
            + self.series_index.bytes()
            + self.samples.bytes(held)
            + scratch
    }
}

/// Reads the metrics section: exactly `records` samples.
pub(super) fn decode(
    r: &mut Reader<'_>,
    tables: &Tables,
    records: usize,
) -> Result<Vec<Metric>, DecodeError> {
    let n = r.count("family count", 4)?;
    let mut families = Vec::with_capacity(n);
    for _ in 0..n {
        let family = tables.string(r, "family name")?.clone();
        let at = r.pos();
        let code = r.u8("metric type")?;
        let kind = kind_of(code).ok_or(DecodeError::BadValue {
            what: "metric type",
            value: u64::from(code),
            expected: "0 (unknown) to 7 (stateset)",
            offset: at,
        })?;
        let help = tables.opt_string(r, "family help")?.cloned();
        let unit = tables.opt_string(r, "family unit")?.cloned();
        families.push(Arc::new(MetricMeta {
            family,
            kind,
            help,
            unit,
        }));
    }
    let base = r.ivarint("base timestamp")?;
    let n = r.count("series count", MIN_SERIES_BYTES)?;
    let mut out = Vec::with_capacity(records.min(r.remaining() / MIN_SAMPLE_BYTES));
    for _ in 0..n {
        let name = tables.string(r, "series name")?.clone();
        let meta = families[r.index("series family", families.len())?].clone();
        let labels = tables.label_set(r, "series labels")?.clone();
        let at = r.pos();
        let samples = r.count("sample count", MIN_SAMPLE_BYTES)?;
        if samples > records - out.len() {
            return Err(DecodeError::RecordCountMismatch {
                declared: records as u64,
                found: (out.len() + samples) as u64,
                offset: at,
            });
        }
        let first = out.len();
        let mut ts = Timestamps::new(base);
        for _ in 0..samples {
            out.push(Metric {
                name: name.clone(),
                labels: labels.clone(),
                value: 0.0,
                timestamp_ms: ts.get(r, "sample timestamp")?,
                meta: meta.clone(),
                exemplar: None,
            });
        }
        let series = &mut out[first..];
        let at = r.pos();
        let digits = match r.u8("value coding")? {
            XOR_CODING => None,
            code => Some(Decimal::digits_of(code).ok_or(DecodeError::BadValue {
                what: "value coding",
                value: u64::from(code),
                expected: "0 (xor) or 1 to 7 (decimals of 0 to 6 digits)",
                offset: at,
            })?),
        };
        let mut values = Values::new(digits);
        for m in series.iter_mut() {
            m.value = values.get(r)?;
        }
        let n = r.count("exemplar count", MIN_EXEMPLAR_BYTES)?;
        let mut pos = 0usize;
        for _ in 0..n {
            let at = r.pos();
            let gap = r.uvarint("exemplar position")?;
            let target = usize::try_from(gap)
                .ok()
                .and_then(|gap| pos.checked_add(gap))
                .filter(|&p| p < series.len())
                .ok_or(DecodeError::BadIndex {
                    what: "exemplar position",
                    index: gap,
                    len: series.len() - pos.min(series.len()),
                    offset: at,
                })?;
            pos = target + 1;
            let labels = tables.label_set(r, "exemplar labels")?.clone();
            let value = f64::from_bits(u64::from_le_bytes(r.array("exemplar value")?));
            let at = r.pos();
            let timestamp_ms = match r.u8("exemplar timestamp flag")? {
                0 => None,
                1 => Some(
                    series[target]
                        .timestamp_ms
                        .wrapping_add(r.ivarint("exemplar timestamp")?),
                ),
                flag => {
                    return Err(DecodeError::BadValue {
                        what: "exemplar timestamp flag",
                        value: u64::from(flag),
                        expected: "0 (none) or 1 (a timestamp follows)",
                        offset: at,
                    });
                }
            };
            series[target].exemplar = Some(Box::new(Exemplar {
                labels,
                value,
                timestamp_ms,
            }));
        }
    }
    Ok(out)
}
