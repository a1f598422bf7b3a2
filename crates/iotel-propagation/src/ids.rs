//! Trace ids, span ids and trace flags: fixed-size, lossless, hex on the wire.

use crate::ParseError;
use std::fmt;

/// A 16-byte trace id. The all-zero id is invalid in every format.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id. The all-zero id is invalid in every format.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    pub const INVALID: Self = Self([0; 16]);

    /// A new random, non-zero trace id.
    pub fn random() -> Self {
        let mut id = random_bytes::<16>();
        if id == [0; 16] {
            id[15] = 1;
        }
        Self(id)
    }

    pub fn is_valid(&self) -> bool {
        self.0 != [0; 16]
    }

    /// Parses 32 lowercase hex characters.
    ///
    /// # Errors
    /// A wrong length, a character that is not lowercase hex, or all zeros.
    pub fn from_hex(s: &str) -> Result<Self, ParseError> {
        let mut id = [0; 16];
        decode_hex("trace id", s.as_bytes(), 0, &mut id)?;
        let id = Self(id);
        if id.is_valid() {
            Ok(id)
        } else {
            Err(ParseError::ZeroId { what: "trace id" })
        }
    }

    /// Whether the high 64 bits are zero: a 64-bit B3 trace id.
    pub fn high_is_zero(&self) -> bool {
        self.0[..8] == [0; 8]
    }
}

impl SpanId {
    pub const INVALID: Self = Self([0; 8]);

    /// A new random, non-zero span id.
    pub fn random() -> Self {
        let mut id = random_bytes::<8>();
        if id == [0; 8] {
            id[7] = 1;
        }
        Self(id)
    }

    pub fn is_valid(&self) -> bool {
        self.0 != [0; 8]
    }

    /// Parses 16 lowercase hex characters.
    ///
    /// # Errors
    /// A wrong length, a character that is not lowercase hex, or all zeros.
    pub fn from_hex(s: &str) -> Result<Self, ParseError> {
        let mut id = [0; 8];
        decode_hex("span id", s.as_bytes(), 0, &mut id)?;
        let id = Self(id);
        if id.is_valid() {
            Ok(id)
        } else {
            Err(ParseError::ZeroId { what: "span id" })
        }
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// The trace flags byte. Level 1 of W3C Trace Context defines one flag,
/// `sampled`; the others are reserved, ignored when received and sent as zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

impl TraceFlags {
    pub const SAMPLED: Self = Self(0x01);
    pub const NOT_SAMPLED: Self = Self(0x00);
    /// The flags this crate understands and propagates.
    const KNOWN: u8 = 0x01;

    /// Keeps the known flags of `byte` and drops the reserved ones.
    pub fn from_byte(byte: u8) -> Self {
        Self(byte & Self::KNOWN)
    }

    pub fn sampled(sampled: bool) -> Self {
        if sampled {
            Self::SAMPLED
        } else {
            Self::NOT_SAMPLED
        }
    }

    pub fn is_sampled(self) -> bool {
        self.0 & 0x01 != 0
    }

    pub fn to_byte(self) -> u8 {
        self.0
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceFlags({:02x})", self.0)
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// The value of one lowercase hex digit (`HEXDIGLC`); uppercase is invalid.
pub(crate) fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Decodes `src` (exactly `2 * out.len()` lowercase hex digits) into `out`;
/// `offset` is where `src` starts in the whole header, for error positions.
pub(crate) fn decode_hex(
    what: &'static str,
    src: &[u8],
    offset: usize,
    out: &mut [u8],
) -> Result<(), ParseError> {
    if src.len() != out.len() * 2 {
        return Err(ParseError::Length {
            what,
            expected: hex_len_text(out.len()),
            found: src.len(),
        });
    }
    for (i, pair) in src.chunks_exact(2).enumerate() {
        let mut byte = 0u8;
        for (j, &c) in pair.iter().enumerate() {
            let Some(v) = hex_digit(c) else {
                return Err(ParseError::InvalidChar {
                    what,
                    at: offset + 2 * i + j,
                    found: char::from(c),
                    expected: "lowercase hex digit",
                });
            };
            byte = byte << 4 | v;
        }
        out[i] = byte;
    }
    Ok(())
}

fn hex_len_text(bytes: usize) -> &'static str {
    match bytes {
        1 => "2 hex digits",
        8 => "16 hex digits",
        16 => "32 hex digits",
        _ => "a fixed number of hex digits",
    }
}

/// Random bytes from the operating system; if it cannot give any (no
/// entropy source on a bare device), a SplitMix64 stream seeded from the
/// clock and a process-wide counter, which is unique enough for ids.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if getrandom::fill(&mut out).is_ok() {
        return out;
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut state = nanos ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
    out
}
