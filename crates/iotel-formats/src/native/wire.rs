//! The byte-level pieces every body section shares: varints, zigzag, the
//! delta-of-delta timestamp coder, the XOR and decimal value coders, the
//! decoder's side of the string dictionary and the label-set table (the
//! encoder's is in `tables.rs`), and a [`Reader`] whose every read is
//! bounds-checked and names what it was reading when it fails.

use super::DecodeError;
use iotel_model::{Labels, LabelsBuilder};
use std::sync::Arc;

/// Which part of a frame a `Reader` reads, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The frame header; offsets count from the frame's first byte.
    Header,
    /// The body after decompression; offsets count from its first byte.
    Body,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Header => "frame header",
            Part::Body => "body",
        })
    }
}

/// Appends `v` as an unsigned LEB128 varint (1 to 10 bytes).
pub(super) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Zigzag: small magnitudes of either sign become small unsigned numbers
/// (0, -1, 1, -2, … → 0, 1, 2, 3, …).
pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(super) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

pub(super) fn put_ivarint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v));
}

/// A length-prefixed UTF-8 string.
pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Delta-of-delta timestamps, as Gorilla and Prometheus' chunks do: each
/// value is written as (its delta to the previous value) minus (the
/// previous delta), zigzagged. A steady cadence costs one byte (0) per
/// sample. The coder starts at `base` with a previous delta of 0, so the
/// first value is written as its distance from `base`. Arithmetic wraps, so
/// any i64 sequence, out of order or negative, round-trips exactly.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timestamps {
    prev: i64,
    delta: i64,
}

impl Timestamps {
    pub(super) fn new(base: i64) -> Self {
        Self {
            prev: base,
            delta: 0,
        }
    }

    pub(super) fn put(&mut self, out: &mut Vec<u8>, t: i64) {
        let delta = t.wrapping_sub(self.prev);
        put_ivarint(out, delta.wrapping_sub(self.delta));
        self.prev = t;
        self.delta = delta;
    }

    pub(super) fn get(
        &mut self,
        r: &mut Reader<'_>,
        what: &'static str,
    ) -> Result<i64, DecodeError> {
        let dod = r.ivarint(what)?;
        self.delta = self.delta.wrapping_add(dod);
        self.prev = self.prev.wrapping_add(self.delta);
        Ok(self.prev)
    }
}

/// Float values XORed with the previous value of the series, as in Gorilla,
/// but byte-aligned so snappy can still find repeats: a control byte, then
/// the XOR's significant bytes.
///
/// Control byte: `0` = the same bits as the previous value (nothing
/// follows); otherwise high nibble = number of significant bytes `n`
/// (1..=8), low nibble = number of zero bytes below them `tz` (0..=7, with
/// `n + tz <= 8`), followed by the `n` bytes, least significant first. The
/// first value of a series is XORed with 0. Bits go as they are: NaN
/// payloads, -0.0 and infinities round-trip exactly.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct XorValues {
    prev: u64,
}

impl XorValues {
    /// A coder that continues after a value whose bits are `prev`.
    pub(super) fn resume(prev: u64) -> Self {
        Self { prev }
    }

    /// The state [`XorValues::resume`] continues from: the last value's bits.
    pub(super) fn state(self) -> u64 {
        self.prev
    }

    pub(super) fn put(&mut self, out: &mut Vec<u8>, v: f64) {
        let bits = v.to_bits();
        let x = bits ^ self.prev;
        self.prev = bits;
        if x == 0 {
            out.push(0);
            return;
        }
        let tz = x.trailing_zeros() / 8;
        let lz = x.leading_zeros() / 8;
        let n = 8 - tz - lz;
        out.push(((n << 4) | tz) as u8);
        out.extend_from_slice(&(x >> (tz * 8)).to_le_bytes()[..n as usize]);
    }

    pub(super) fn get(&mut self, r: &mut Reader<'_>) -> Result<f64, DecodeError> {
        const WHAT: &str = "sample value";
        let at = r.pos;
        let control = r.u8(WHAT)?;
        if control != 0 {
            let n = usize::from(control >> 4);
            let tz = usize::from(control & 0x0f);
            if n == 0 || n + tz > 8 {
                return Err(DecodeError::BadValue {
                    what: "sample value control byte",
                    value: u64::from(control),
                    expected: "0, or (n << 4) | tz with 1 <= n and n + tz <= 8",
                    offset: at,
                });
            }
            let mut le = [0u8; 8];
            le[..n].copy_from_slice(r.bytes(n, WHAT)?);
            self.prev ^= u64::from_le_bytes(le) << (tz * 8);
        }
        Ok(f64::from_bits(self.prev))
    }
}

/// The largest power of ten [`Decimal`] scales by: 10^6.
const MAX_DECIMAL_DIGITS: u8 = 6;
/// Scaled values stay within ±2^53, where every integer is an exact f64.
const MAX_EXACT_INT: i64 = 1 << 53;

/// Values that are decimals of a few digits (sensor readings in 0.1 steps,
/// integer counters) written as integers: each value times 10^`digits`,
/// as a zigzag varint of its difference to the previous one (the first to
/// 0). A reading that moves by one step costs one byte where its XOR costs
/// six or seven. Only used when every value of the series comes back bit
/// for bit from `n / 10^digits` (IEEE division is exact-rounded, so that
/// holds on every platform); -0.0, NaN and infinities never qualify.
#[derive(Debug, Clone, Copy)]
pub(super) struct Decimal {
    scale: f64,
    prev: i64,
}

impl Decimal {
    /// The most digits a decimal coding has.
    pub(super) const MAX_DIGITS: u8 = MAX_DECIMAL_DIGITS;

    /// Whether `v` round-trips as a decimal of `digits` digits.
    pub(super) fn fits(v: f64, digits: u8) -> bool {
        Self::scaled(v, Self::scale(digits)).is_some()
    }

    /// The fewest digits with which all `values` round-trip, if any.
    #[cfg(test)]
    pub(super) fn digits_for(values: impl Iterator<Item = f64> + Clone) -> Option<u8> {
        (0..=MAX_DECIMAL_DIGITS).find(|&digits| values.clone().all(|v| Self::fits(v, digits)))
    }

    /// 10^`digits`, exactly (up to 10^22 every power of ten is an f64).
    fn scale(digits: u8) -> f64 {
        const SCALES: [f64; MAX_DECIMAL_DIGITS as usize + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6];
        SCALES
            .get(usize::from(digits))
            .copied()
            .unwrap_or_else(|| 10f64.powi(i32::from(digits)))
    }

    fn scaled(v: f64, scale: f64) -> Option<i64> {
        let n = (v * scale).round();
        if n.is_nan() || n.abs() > MAX_EXACT_INT as f64 {
            return None;
        }
        let n = n as i64;
        ((n as f64 / scale).to_bits() == v.to_bits()).then_some(n)
    }

    pub(super) fn new(digits: u8) -> Self {
        Self {
            scale: Self::scale(digits),
            prev: 0,
        }
    }

    /// A coder of `digits` digits that continues after a value whose scaled
    /// integer was `prev`.
    pub(super) fn resume(digits: u8, prev: i64) -> Self {
        Self {
            prev,
            ..Self::new(digits)
        }
    }

    /// The state [`Decimal::resume`] continues from: the last scaled value.
    pub(super) fn state(self) -> i64 {
        self.prev
    }

    /// Writes `v`, which fits this coder's digits (see [`Decimal::fits`]).
    pub(super) fn put(&mut self, out: &mut Vec<u8>, v: f64) {
        let n = Self::scaled(v, self.scale).unwrap_or_default();
        put_ivarint(out, n.wrapping_sub(self.prev));
        self.prev = n;
    }

    pub(super) fn get(&mut self, r: &mut Reader<'_>) -> Result<f64, DecodeError> {
        self.prev = self.prev.wrapping_add(r.ivarint("sample value")?);
        Ok(self.prev as f64 / self.scale)
    }

    /// The wire code of a decimal coding of `digits`; 0 is [`XorValues`].
    pub(super) fn code(digits: u8) -> u8 {
        digits + 1
    }

    /// The digits of wire code `code`, if it is a decimal one.
    pub(super) fn digits_of(code: u8) -> Option<u8> {
        (1..=MAX_DECIMAL_DIGITS + 1)
            .contains(&code)
            .then(|| code - 1)
    }
}

/// Reads a body or header front to back. Every read checks its bounds and
/// returns a [`DecodeError`] naming the field and the byte offset.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    part: Part,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8], part: Part) -> Self {
        Self { buf, pos: 0, part }
    }

    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn truncated(&self, what: &'static str) -> DecodeError {
        DecodeError::Truncated {
            what,
            part: self.part,
            offset: self.pos,
        }
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.truncated(what))?;
        self.pos += 1;
        Ok(b)
    }

    pub(super) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.truncated(what));
        }
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    pub(super) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N, what)?);
        Ok(a)
    }

    /// An unsigned LEB128 varint of at most 10 bytes whose value fits u64.
    pub(super) fn uvarint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.u8(what)?;
            if shift == 63 && b > 1 {
                break;
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint {
            what,
            part: self.part,
            offset: start,
        })
    }

    pub(super) fn ivarint(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        self.uvarint(what).map(unzigzag)
    }

    /// A count of items each taking at least `min_bytes` of what follows:
    /// refused, before anything is allocated for them, when they cannot fit.
    pub(super) fn count(
        &mut self,
        what: &'static str,
        min_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let at = self.pos;
        let count = self.uvarint(what)?;
        let room = (self.remaining() / min_bytes.max(1)) as u64;
        if count > room {
            return Err(DecodeError::ImpossibleCount {
                what,
                count,
                room,
                offset: at,
            });
        }
        Ok(count as usize)
    }

    /// An index into a table of `len` entries.
    pub(super) fn index(&mut self, what: &'static str, len: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let index = self.uvarint(what)?;
        if index >= len as u64 {
            return Err(DecodeError::BadIndex {
                what,
                index,
                len,
                offset: at,
            });
        }
        Ok(index as usize)
    }

    pub(super) fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let len = self.uvarint(what)?;
        // Past the end either way: `bytes` refuses it without allocating.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let at = self.pos;
        std::str::from_utf8(self.bytes(len, what)?).map_err(|_| DecodeError::BadUtf8 {
            what,
            part: self.part,
            offset: at,
        })
    }

    /// Refuses bytes left over after the last field.
    pub(super) fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                count,
                part: self.part,
            }),
        }
    }
}

/// The decoder's side of the tables: strings shared as `Arc<str>`, label
/// sets built once and shared by every record that names them.
#[derive(Debug)]
pub(super) struct Tables {
    strings: Vec<Arc<str>>,
    label_sets: Vec<Labels>,
}

impl Tables {
    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        // Each entry takes at least its length byte.
        let n = r.count("dictionary size", 1)?;
        let mut strings: Vec<Arc<str>> = Vec::with_capacity(n);
        for _ in 0..n {
            strings.push(Arc::from(r.str("dictionary string")?));
        }
        // Each label set takes at least its pair count, each pair two indices.
        let n = r.count("label set count", 1)?;
        let mut label_sets = Vec::with_capacity(n);
        for _ in 0..n {
            let pairs = r.count("label count", 2)?;
            let mut b = LabelsBuilder::with_capacity(pairs);
            for _ in 0..pairs {
                let name = strings[r.index("label name", strings.len())?].clone();
                let value = strings[r.index("label value", strings.len())?].clone();
                b.set_shared(name, value);
            }
            label_sets.push(b.build());
        }
        Ok(Self {
            strings,
            label_sets,
        })
    }

    pub(super) fn string(
        &self,
        r: &mut Reader<'_>,
        what: &'static str,
    ) -> Result<&Arc<str>, DecodeError> {
        Ok(&self.strings[r.index(what, self.strings.len())?])
    }

    /// 0 for `None`, else a dictionary index + 1.
    pub(super) fn opt_string(
        &self,
        r: &mut Reader<'_>,
        what: &'static str,
    ) -> Result<Option<&Arc<str>>, DecodeError> {
        match r.index(what, self.strings.len() + 1)? {
            0 => Ok(None),
            i => Ok(Some(&self.strings[i - 1])),
        }
    }

    pub(super) fn label_set(
        &self,
        r: &mut Reader<'_>,
        what: &'static str,
    ) -> Result<&Labels, DecodeError> {
        Ok(&self.label_sets[r.index(what, self.label_sets.len())?])
    }
}
