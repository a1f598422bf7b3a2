//! The native batch format between tiers: agent → gateway → cloud.
//!
//! One frame carries one batch of one signal. It is built for small,
//! repetitive device telemetry: every string is stored once per batch in a
//! dictionary, every label set once in a table, a series' timestamps as
//! delta-of-delta varints and its values as differences of scaled
//! integers when they are short decimals (else XORed with the previous
//! value, as Gorilla does), and then the whole body is compressed (snappy
//! at the edge, zstd or lz4 where they are built in).
//!
//! # Frame
//!
//! Do not reorder fields: this is the wire format. `uv` is an unsigned
//! LEB128 varint.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "IOTL"
//! 4       1     format version, [`VERSION`]
//! 5       1     flags: bits 0-1 compression (0 none, 1 snappy, 2 zstd, 3 lz4),
//!               bits 2-7 reserved, 0
//! 6       1     signal: 0 metrics, 1 logs, 2 traces
//! 7       uv+n  agent id: byte length, then UTF-8
//!         uv    sequence, per agent, increasing; the receiver drops a
//!               (agent id, sequence) it has seen (a retransmit)
//!         uv    record count: samples, log records or spans
//!         uv    body length before compression, bytes
//!         ...   body, compressed as the flags say, to the end of the frame
//! ```
//!
//! The body, once decompressed:
//!
//! ```text
//! dictionary   uv count, then per string: uv byte length, UTF-8
//! label sets   uv count, then per set: uv pair count, then per pair:
//!                uv name index, uv value index (into the dictionary)
//! section      the signal's own: see `metrics.rs`, `logs.rs`, `traces.rs`
//! ```
//!
//! A reader that does not know the version refuses the frame with
//! [`DecodeError::UnsupportedVersion`] before reading further: a new version
//! may change everything after the version byte.
//!
//! # Compression
//!
//! What follows the header, by the code in the flags:
//!
//! ```text
//! code  name    body on the wire                                built in
//! 0     none    the body itself                                 always
//! 1     snappy  one block of snappy's raw format (as remote     always
//!               write); its own header states the length
//! 2     zstd    zstd frames (RFC 8878) as ZSTD_decompress       feature `zstd`
//!               reads them; this encoder writes one frame, at
//!               level ZSTD_LEVEL, that records its content size
//!               and no checksum
//! 3     lz4     one LZ4 block (the block format: no frame, no   feature `lz4`
//!               size prefix; the header's body length is the
//!               decompressed size)
//! ```
//!
//! Both features are defaults of this crate, so gateways and clouds read
//! whatever an agent sends; an edge build with `--no-default-features`
//! carries only snappy. Encoding with a compression that is not built in
//! returns [`EncodeError::CompressionNotBuiltIn`], and a frame using one is
//! refused with [`DecodeError::CompressionNotBuiltIn`] (its header still
//! reads, see [`decode_header`]).
//!
//! # Limits
//!
//! [`decode`] refuses, before allocating for them, a body whose declared
//! length is over [`Limits::max_body_bytes`], and a record count over
//! [`Limits::max_records`] or larger than the body could hold. Every
//! compression then decompresses into one buffer of exactly the declared
//! length, allocated once, and a body that would decompress to more is
//! refused as soon as it fills that buffer
//! ([`DecodeError::DecompressedTooLarge`]), one that decompresses to less
//! when it ends ([`DecodeError::LengthMismatch`], as an uncompressed body
//! of another length than declared). Where the compressed data
//! states its own length (snappy's header, a zstd frame's content size), a
//! length other than the declared one — over it, for zstd, whose body may
//! hold more frames — is refused before that buffer is allocated. Inside
//! the body every count is checked against the bytes left and every index
//! against its table. Bad input is an error, never a panic.
//!
//! # One frame from many batches
//!
//! A [`Builder`] takes batches one after another and encodes each as it
//! comes, keeping what the frame needs (the tables as their body bytes,
//! per series its state and encoded samples) and nothing of the events:
//! an agent joins its buffered batches into one frame for about the
//! frame's size in memory. Its frame is byte for byte what [`encode`]
//! writes for the batches joined; `encode` is a builder given one batch.
//!
//! # Order
//!
//! Logs and spans come back in batch order. Metric samples come back
//! grouped by series (name, labels, family), series in the order first seen,
//! each series' samples in batch order: the same samples, every field bit
//! for bit, possibly in a different interleaving.

mod builder;
mod chunks;
mod logs;
mod metrics;
mod tables;
mod traces;
mod wire;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_builder;
#[cfg(test)]
mod tests_errors;
#[cfg(test)]
mod tests_prop;

pub use builder::{Builder, SignalMismatch};
pub use wire::Part;

use iotel_model::{Events, Signal};
use std::borrow::Cow;
use wire::{Reader, Tables};

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"IOTL";
/// The format version this build writes.
pub const VERSION: u8 = 1;
/// The format versions this build reads.
pub const SUPPORTED_VERSIONS: &[u8] = &[1];
/// `Content-Type` of a native batch sent over HTTP.
pub const CONTENT_TYPE: &str = "application/x-iotel-batch";
/// The zstd level [`encode`] compresses at: 3, zstd's own default. On the
/// edge batch of 10 scrapes of 2,000 series (64 KiB of body) it takes
/// 0.2-0.4 ms and comes to 45-75% of snappy's size; level 9 is another
/// 6-25% smaller at five times the time, level 19 takes 20 ms (run
/// `every_compression_shrinks_a_device_metrics_batch` to see). zstd sizes
/// its tables to the body, so small bodies cost little memory to compress.
pub const ZSTD_LEVEL: i32 = 3;

/// How a frame's body is compressed; the code in the flags byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Code 0.
    None,
    /// Code 1: snappy's block format. The edge default.
    #[default]
    Snappy,
    /// Code 2: zstd, with the `zstd` Cargo feature (see the module docs).
    Zstd,
    /// Code 3: LZ4's block format, with the `lz4` Cargo feature.
    Lz4,
}

impl Compression {
    /// Every compression the wire format has, built in or not.
    pub const ALL: [Compression; 4] = [
        Compression::None,
        Compression::Snappy,
        Compression::Zstd,
        Compression::Lz4,
    ];

    fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Snappy => 1,
            Compression::Zstd => 2,
            Compression::Lz4 => 3,
        }
    }

    fn from_code(code: u8) -> Self {
        match code & 0b11 {
            0 => Compression::None,
            1 => Compression::Snappy,
            2 => Compression::Zstd,
            _ => Compression::Lz4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Snappy => "snappy",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
        }
    }

    /// Whether this build can encode and decode it: none and snappy always,
    /// zstd and lz4 with their Cargo features.
    pub fn is_built_in(self) -> bool {
        match self {
            Compression::None | Compression::Snappy => true,
            Compression::Zstd => cfg!(feature = "zstd"),
            Compression::Lz4 => cfg!(feature = "lz4"),
        }
    }
}

/// "none, snappy, ...": what this build has, for error messages.
fn built_in_names() -> String {
    let names: Vec<&str> = Compression::ALL
        .iter()
        .filter(|c| c.is_built_in())
        .map(|c| c.as_str())
        .collect();
    names.join(", ")
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn signal_code(signal: Signal) -> u8 {
    match signal {
        Signal::Metrics => 0,
        Signal::Logs => 1,
        Signal::Traces => 2,
    }
}

/// What a frame says about itself, readable without decoding the body (see
/// [`decode_header`]): enough to drop a retransmit or refuse a frame early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub agent_id: String,
    pub sequence: u64,
    pub signal: Signal,
    /// Samples, log records or spans in the body, as declared.
    pub records: u64,
    pub compression: Compression,
    /// The body's length before compression, as declared.
    pub body_bytes: u64,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub header: Header,
    pub events: Events,
}

/// What [`decode`] accepts at most. Both are checked before anything is
/// allocated for the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The body's length after decompression. It also bounds the memory of
    /// the decoded string dictionary and label-set table: at worst (a body
    /// of nothing but empty strings or empty label sets) about 32 bytes per
    /// body byte, so 8 MiB of body may cost up to 256 MiB while decoding.
    pub max_body_bytes: usize,
    /// Records in one frame. A record decodes to far more memory than it
    /// takes on the wire (a sample of a steady series is two bytes there),
    /// so this, not the body size, bounds what a frame costs in memory.
    pub max_records: usize,
}

impl Default for Limits {
    /// 8 MiB of body and a million records: an edge batch of 10 scrapes of
    /// 2,000 series is about 64 KiB of body.
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_records: 1 << 20,
        }
    }
}

/// Why a batch could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(
        "compression {compression} is not built into this build (built in: {})",
        built_in_names()
    )]
    CompressionNotBuiltIn { compression: Compression },
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    #[error("zstd: cannot compress a body of {body_bytes} bytes: {reason}")]
    Zstd {
        body_bytes: usize,
        reason: &'static str,
    },
    #[error("lz4: cannot compress a body of {body_bytes} bytes: {reason}")]
    Lz4 { body_bytes: usize, reason: String },
    #[error(
        "nothing was pushed into the builder: a frame takes its signal from a batch, even an empty one"
    )]
    NothingPushed,
    #[error("the frame would hold more than {max} {what}")]
    TooLarge { what: &'static str, max: u64 },
}

impl EncodeError {
    /// A stable code for metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            EncodeError::CompressionNotBuiltIn { .. } => "compression_not_built_in",
            EncodeError::Snappy(_) => "snappy",
            EncodeError::Zstd { .. } => "zstd",
            EncodeError::Lz4 { .. } => "lz4",
            EncodeError::NothingPushed => "nothing_pushed",
            EncodeError::TooLarge { .. } => "too_large",
        }
    }
}

/// Why a frame could not be decoded. Offsets count from the start of the
/// [`Part`] named.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a native batch: expected magic \"IOTL\", found {found:02x?}")]
    BadMagic { found: Vec<u8> },
    #[error("format version {version} is not supported: this build reads version(s) {supported:?}")]
    UnsupportedVersion {
        version: u8,
        supported: &'static [u8],
    },
    #[error(
        "flags byte {flags:#04x} has reserved bits set: expected bits 0-1 compression, the rest 0"
    )]
    ReservedFlags { flags: u8 },
    #[error(
        "compression {compression} is not built into this build (built in: {})",
        built_in_names()
    )]
    CompressionNotBuiltIn { compression: Compression },
    #[error("unknown signal code {code}: expected 0 (metrics), 1 (logs) or 2 (traces)")]
    UnknownSignal { code: u8 },
    #[error("{part} ends at byte {offset} inside the {what}")]
    Truncated {
        what: &'static str,
        part: Part,
        offset: usize,
    },
    #[error("{part}: the {what} at byte {offset} is not a varint of at most 64 bits")]
    BadVarint {
        what: &'static str,
        part: Part,
        offset: usize,
    },
    #[error("{part}: the {what} at byte {offset} is not UTF-8")]
    BadUtf8 {
        what: &'static str,
        part: Part,
        offset: usize,
    },
    #[error("the body is {size} bytes before compression, more than the limit of {limit}")]
    BodyTooLarge { size: u64, limit: usize },
    #[error("the frame declares {count} records, more than the limit of {limit}")]
    TooManyRecords { count: u64, limit: usize },
    #[error(
        "the header declares a body of {declared} bytes, but it is {actual} (compression {compression})"
    )]
    LengthMismatch {
        compression: Compression,
        declared: u64,
        actual: u64,
    },
    #[error(
        "the header declares a body of {declared} bytes, but its {compression} data decompresses to more"
    )]
    DecompressedTooLarge {
        compression: Compression,
        declared: u64,
    },
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    #[error(
        "zstd: the body of {compressed_bytes} bytes does not decompress (declared {declared} bytes): {reason}"
    )]
    Zstd {
        compressed_bytes: usize,
        declared: u64,
        reason: &'static str,
    },
    #[error(
        "lz4: the body of {compressed_bytes} bytes does not decompress (declared {declared} bytes): {reason}"
    )]
    Lz4 {
        compressed_bytes: usize,
        declared: u64,
        reason: String,
    },
    #[error("body: the {what} at byte {offset} is {count}, but only {room} fit in the bytes left")]
    ImpossibleCount {
        what: &'static str,
        count: u64,
        room: u64,
        offset: usize,
    },
    #[error("body: the {what} at byte {offset} is {index}, past the end of its table of {len}")]
    BadIndex {
        what: &'static str,
        index: u64,
        len: usize,
        offset: usize,
    },
    #[error("body: the {what} at byte {offset} is {value}; expected {expected}")]
    BadValue {
        what: &'static str,
        value: u64,
        expected: &'static str,
        offset: usize,
    },
    #[error(
        "the header declares {declared} records, but the body holds {found} (at byte {offset})"
    )]
    RecordCountMismatch {
        declared: u64,
        found: u64,
        offset: usize,
    },
    #[error("field {field:?} at byte {offset} of the body is not JSON: {reason}")]
    BadJson {
        field: String,
        reason: String,
        offset: usize,
    },
    #[error("{count} bytes left over after the end of the {part}")]
    TrailingBytes { count: usize, part: Part },
}

impl DecodeError {
    /// A stable code for metric labels, one per variant.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::BadMagic { .. } => "bad_magic",
            DecodeError::UnsupportedVersion { .. } => "unsupported_version",
            DecodeError::ReservedFlags { .. } => "reserved_flags",
            DecodeError::CompressionNotBuiltIn { .. } => "compression_not_built_in",
            DecodeError::UnknownSignal { .. } => "unknown_signal",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::BadVarint { .. } => "bad_varint",
            DecodeError::BadUtf8 { .. } => "bad_utf8",
            DecodeError::BodyTooLarge { .. } => "body_too_large",
            DecodeError::TooManyRecords { .. } => "too_many_records",
            DecodeError::LengthMismatch { .. } => "length_mismatch",
            DecodeError::DecompressedTooLarge { .. } => "decompressed_too_large",
            DecodeError::Snappy(_) => "snappy",
            DecodeError::Zstd { .. } => "zstd",
            DecodeError::Lz4 { .. } => "lz4",
            DecodeError::ImpossibleCount { .. } => "impossible_count",
            DecodeError::BadIndex { .. } => "bad_index",
            DecodeError::BadValue { .. } => "bad_value",
            DecodeError::RecordCountMismatch { .. } => "record_count_mismatch",
            DecodeError::BadJson { .. } => "bad_json",
            DecodeError::TrailingBytes { .. } => "trailing_bytes",
        }
    }
}

/// Encodes one batch as a frame.
///
/// The same as a [`Builder`] given `events` alone; to join many batches
/// into one frame, push them into a builder rather than joining them
/// first.
///
/// # Errors
/// [`EncodeError::CompressionNotBuiltIn`] for a compression this build does
/// not have (see [`Compression::is_built_in`]); [`EncodeError::Snappy`] for
/// a body over 4 GiB, the most one snappy block holds; [`EncodeError::Zstd`]
/// and [`EncodeError::Lz4`] if those libraries fail (out of memory);
/// [`EncodeError::TooLarge`] past [`Builder::MAX_RECORDS`] records.
pub fn encode(
    agent_id: &str,
    sequence: u64,
    events: &Events,
    compression: Compression,
) -> Result<Vec<u8>, EncodeError> {
    if !compression.is_built_in() {
        return Err(EncodeError::CompressionNotBuiltIn { compression });
    }
    let mut builder = Builder::new();
    builder.append(events);
    builder.finish(agent_id, sequence, compression)
}

/// Appends `body` to `frame`, compressed. Each compressor writes straight
/// into the frame, sized for its worst case, which is then cut to what it
/// wrote.
fn compress(compression: Compression, body: &[u8], frame: &mut Vec<u8>) -> Result<(), EncodeError> {
    let at = frame.len();
    match compression {
        Compression::None => frame.extend_from_slice(body),
        Compression::Snappy => {
            frame.resize(at + snap::raw::max_compress_len(body.len()), 0);
            if frame.len() == at && !body.is_empty() {
                return Err(EncodeError::Snappy(snap::Error::TooBig {
                    given: body.len() as u64,
                    max: u64::from(u32::MAX),
                }));
            }
            let n = snap::raw::Encoder::new().compress(body, &mut frame[at..])?;
            frame.truncate(at + n);
        }
        #[cfg(feature = "zstd")]
        Compression::Zstd => {
            use zstd::zstd_safe;
            frame.resize(at + zstd_safe::compress_bound(body.len()), 0);
            // One frame, with its content size (zstd's default), which
            // `decode` checks before allocating.
            let n = zstd_safe::compress(&mut frame[at..], body, ZSTD_LEVEL).map_err(|code| {
                EncodeError::Zstd {
                    body_bytes: body.len(),
                    reason: zstd_safe::get_error_name(code),
                }
            })?;
            frame.truncate(at + n);
        }
        #[cfg(feature = "lz4")]
        Compression::Lz4 => {
            frame.resize(at + lz4_flex::block::get_maximum_output_size(body.len()), 0);
            let n = lz4_flex::block::compress_into(body, &mut frame[at..]).map_err(|e| {
                EncodeError::Lz4 {
                    body_bytes: body.len(),
                    reason: e.to_string(),
                }
            })?;
            frame.truncate(at + n);
        }
        #[cfg(not(all(feature = "zstd", feature = "lz4")))]
        _ => return Err(EncodeError::CompressionNotBuiltIn { compression }),
    }
    Ok(())
}

/// Reads a frame's header only: who sent it, its sequence and what it
/// declares, so a receiver can drop a retransmit or refuse the frame
/// without decompressing it.
///
/// # Errors
/// A frame that is not a native batch, of a version this build does not
/// read, with reserved flag bits set, an unknown signal, or cut short.
pub fn decode_header(frame: &[u8]) -> Result<Header, DecodeError> {
    read_header(frame).map(|(h, _)| h)
}

fn read_header(frame: &[u8]) -> Result<(Header, usize), DecodeError> {
    let mut r = Reader::new(frame, Part::Header);
    if frame.len() < MAGIC.len() || frame[..MAGIC.len()] != MAGIC {
        return Err(DecodeError::BadMagic {
            found: frame[..frame.len().min(MAGIC.len())].to_vec(),
        });
    }
    r.bytes(MAGIC.len(), "magic")?;
    let version = r.u8("format version")?;
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(DecodeError::UnsupportedVersion {
            version,
            supported: SUPPORTED_VERSIONS,
        });
    }
    let flags = r.u8("flags")?;
    if flags & !0b11 != 0 {
        return Err(DecodeError::ReservedFlags { flags });
    }
    let signal = match r.u8("signal")? {
        0 => Signal::Metrics,
        1 => Signal::Logs,
        2 => Signal::Traces,
        code => return Err(DecodeError::UnknownSignal { code }),
    };
    let agent_id = r.str("agent id")?.to_owned();
    let sequence = r.uvarint("sequence")?;
    let records = r.uvarint("record count")?;
    let body_bytes = r.uvarint("body length")?;
    let header = Header {
        agent_id,
        sequence,
        signal,
        records,
        compression: Compression::from_code(flags),
        body_bytes,
    };
    Ok((header, r.pos()))
}

/// Decodes a frame, within `limits`.
///
/// # Errors
/// Any [`DecodeError`]: a bad header (see [`decode_header`]), a compression
/// not built in, a body or record count over `limits`, a body that does not
/// decompress or whose length differs from the declared one, or a body that
/// is not what the header declares (truncated, counts that cannot fit,
/// indices past their table, unknown codes, bytes left over). Nothing is
/// allocated for a body before its size was checked against `limits`, and
/// no compression writes past the declared size.
pub fn decode(frame: &[u8], limits: &Limits) -> Result<Batch, DecodeError> {
    let (header, at) = read_header(frame)?;
    if !header.compression.is_built_in() {
        return Err(DecodeError::CompressionNotBuiltIn {
            compression: header.compression,
        });
    }
    if header.body_bytes > limits.max_body_bytes as u64 {
        return Err(DecodeError::BodyTooLarge {
            size: header.body_bytes,
            limit: limits.max_body_bytes,
        });
    }
    if header.records > limits.max_records as u64 {
        return Err(DecodeError::TooManyRecords {
            count: header.records,
            limit: limits.max_records,
        });
    }
    // Within `max_body_bytes`, a `usize`: the cast is exact.
    let body = decompress(header.compression, &frame[at..], header.body_bytes as usize)?;
    let mut r = Reader::new(&body, Part::Body);
    let tables = Tables::read(&mut r)?;
    // Every record takes at least one byte (a sample two), so this bounds
    // what is reserved for them by the body's size.
    let records = usize::try_from(header.records)
        .ok()
        .filter(|&n| n <= r.remaining())
        .ok_or(DecodeError::ImpossibleCount {
            what: "record count",
            count: header.records,
            room: r.remaining() as u64,
            offset: r.pos(),
        })?;
    let events = match header.signal {
        Signal::Metrics => Events::Metrics(metrics::decode(&mut r, &tables, records)?),
        Signal::Logs => Events::Logs(logs::decode(&mut r, &tables, records)?),
        Signal::Traces => Events::Traces(traces::decode(&mut r, &tables, records)?),
    };
    if events.len() != records {
        return Err(DecodeError::RecordCountMismatch {
            declared: header.records,
            found: events.len() as u64,
            offset: r.pos(),
        });
    }
    r.finish()?;
    Ok(Batch { header, events })
}

/// The body from `compressed`, which the header declares is `declared`
/// bytes once decompressed (already checked against the limits). Each
/// compression writes into one buffer of `declared` bytes and fails rather
/// than write past it; a shorter body is refused here.
fn decompress(
    compression: Compression,
    compressed: &[u8],
    declared: usize,
) -> Result<Cow<'_, [u8]>, DecodeError> {
    let body = match compression {
        Compression::None => Cow::Borrowed(compressed),
        Compression::Snappy => {
            // The snappy header states the decompressed length: checked
            // before the buffer for it is allocated.
            let size = snap::raw::decompress_len(compressed)?;
            if size != declared {
                return Err(DecodeError::LengthMismatch {
                    compression,
                    declared: declared as u64,
                    actual: size as u64,
                });
            }
            Cow::Owned(snap::raw::Decoder::new().decompress_vec(compressed)?)
        }
        #[cfg(feature = "zstd")]
        Compression::Zstd => Cow::Owned(zstd_decompress(compressed, declared)?),
        #[cfg(feature = "lz4")]
        Compression::Lz4 => Cow::Owned(lz4_decompress(compressed, declared)?),
        #[cfg(not(all(feature = "zstd", feature = "lz4")))]
        _ => return Err(DecodeError::CompressionNotBuiltIn { compression }),
    };
    if body.len() != declared {
        return Err(DecodeError::LengthMismatch {
            compression,
            declared: declared as u64,
            actual: body.len() as u64,
        });
    }
    Ok(body)
}

/// zstd's one-shot decompression (`ZSTD_decompress`) into a `Vec` of
/// capacity `declared`: it writes only into that capacity, and fails with
/// "destination too small" rather than grow it. One-shot decompression
/// uses the output as its window, so a frame's window size costs nothing.
#[cfg(feature = "zstd")]
fn zstd_decompress(compressed: &[u8], declared: usize) -> Result<Vec<u8>, DecodeError> {
    use zstd::zstd_safe::{self, zstd_sys::ZSTD_ErrorCode};
    // The first frame's content size, when it records one (ours do): a
    // lie in the header is caught before the buffer is allocated. Only
    // "over": more frames may follow, and zstd decompresses them all.
    if let Ok(Some(size)) = zstd_safe::get_frame_content_size(compressed)
        && size > declared as u64
    {
        return Err(DecodeError::LengthMismatch {
            compression: Compression::Zstd,
            declared: declared as u64,
            actual: size,
        });
    }
    let mut body = Vec::with_capacity(declared);
    match zstd_safe::decompress(&mut body, compressed) {
        Ok(_) => Ok(body),
        Err(code)
            if zstd_safe::is_error_kind(code, ZSTD_ErrorCode::ZSTD_error_dstSize_tooSmall) =>
        {
            Err(DecodeError::DecompressedTooLarge {
                compression: Compression::Zstd,
                declared: declared as u64,
            })
        }
        Err(code) => Err(DecodeError::Zstd {
            compressed_bytes: compressed.len(),
            declared: declared as u64,
            reason: zstd_safe::get_error_name(code),
        }),
    }
}

/// An LZ4 block into a buffer of exactly `declared` bytes: lz4_flex's
/// safe decoder refuses to write past its end.
#[cfg(feature = "lz4")]
fn lz4_decompress(compressed: &[u8], declared: usize) -> Result<Vec<u8>, DecodeError> {
    use lz4_flex::block::DecompressError;
    let mut body = vec![0; declared];
    match lz4_flex::block::decompress_into(compressed, &mut body) {
        Ok(n) => {
            body.truncate(n);
            Ok(body)
        }
        Err(DecompressError::OutputTooSmall { .. }) => Err(DecodeError::DecompressedTooLarge {
            compression: Compression::Lz4,
            declared: declared as u64,
        }),
        Err(e) => Err(DecodeError::Lz4 {
            compressed_bytes: compressed.len(),
            declared: declared as u64,
            reason: e.to_string(),
        }),
    }
}
