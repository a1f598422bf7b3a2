//! The on-disk frame of one record: a fixed 32-byte header, then the payload.
//!
//! ```text
//! offset size field
//!      0    4 magic           b"iotb"
//!      4    4 crc32c          u32 LE: CRC-32C (Castagnoli, polynomial 0x1EDC6F41,
//!                             the one in iSCSI/ext4/SSE 4.2) of bytes 8..32+len,
//!                             i.e. every header byte after this field and the payload
//!      8    1 version         format version, 1
//!      9    1 flags           0 for a record; FLAG_SKIP (1) for a skip marker
//!     10    2 reserved        zero (checked: part of the checksum)
//!     12    4 len             u32 LE payload length in bytes
//!     16    8 id              u64 LE record id, +1 per record, never reused while
//!                             the ledger survives
//!     24    8 written_unix_ms u64 LE wall-clock time of the push
//!     32  len payload         the caller's opaque bytes
//! ```
//!
//! A **skip marker** (`flags` = 1) carries no record: its 8-byte payload is
//! `skip_from` (u64 LE), and it says that the ids `skip_from ..= id` were
//! never given to a record that survived. The buffer writes one when it
//! opens after an unclean stop and moves its ids past every id it may have
//! handed out before (see `ledger.rs`, "Reservations"); readers step over it
//! without counting those ids as lost.
//!
//! Do not reorder, resize or reinterpret these fields: buffers written by one
//! build are read by the next. A change needs a new `version` and a reader
//! for the old one.
//!
//! Decoding is a pure function over a byte slice, so the recovery scanner and
//! the reader share it and it can be tested (and fuzzed) without files.

/// Magic bytes at the start of every frame; also what a resync scan looks for.
pub(crate) const MAGIC: [u8; 4] = *b"iotb";
/// The frame format this build writes and reads.
pub(crate) const VERSION: u8 = 1;
/// Bytes of header before the payload.
pub const HEADER_LEN: usize = 32;
/// The `flags` value of a skip marker.
pub(crate) const FLAG_SKIP: u8 = 1;
/// A skip marker's payload: `skip_from`, u64 LE.
pub(crate) const SKIP_PAYLOAD_LEN: u32 = 8;

/// A frame header as read from disk, after its checksum verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub id: u64,
    pub written_unix_ms: u64,
    pub len: u32,
    pub flags: u8,
}

impl Header {
    /// Bytes the whole frame takes on disk.
    pub(crate) fn frame_len(&self) -> usize {
        HEADER_LEN + self.len as usize
    }
}

/// What [`decode`] found at the start of a slice.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// A whole, checksum-valid frame.
    Frame(Header),
    /// The slice ends before the frame does; more bytes may complete it (or, at
    /// the end of a file, it is a torn tail).
    Incomplete,
    /// Not a valid frame here: wrong magic, unknown version, non-zero reserved
    /// bytes, a length above `max_payload`, or a checksum mismatch.
    Invalid,
}

/// Appends the frame for `payload` to `out`.
///
/// `payload.len()` must fit in a u32; the buffer refuses larger records
/// before they get here.
pub(crate) fn encode(id: u64, written_unix_ms: u64, payload: &[u8], out: &mut Vec<u8>) {
    encode_with_flags(id, written_unix_ms, 0, payload, out);
}

/// Appends a skip marker saying that ids `skip_from ..= id` are unused.
pub(crate) fn encode_skip(skip_from: u64, id: u64, written_unix_ms: u64, out: &mut Vec<u8>) {
    encode_with_flags(
        id,
        written_unix_ms,
        FLAG_SKIP,
        &skip_from.to_le_bytes(),
        out,
    );
}

fn encode_with_flags(id: u64, written_unix_ms: u64, flags: u8, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[0; 4]); // checksum, filled in below
    out.push(VERSION);
    out.push(flags);
    out.extend_from_slice(&[0; 2]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&written_unix_ms.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Decodes the frame at the start of `buf`. Never panics, whatever `buf` holds.
///
/// A length above `max_payload` is `Invalid` at once, so a flipped bit in the
/// length cannot make the reader wait for (or allocate) gigabytes.
pub(crate) fn decode(buf: &[u8], max_payload: u32) -> Decoded {
    // Check what we can as early as we can: a prefix that already disagrees
    // with the format is Invalid even if the frame is incomplete.
    let prefix = buf.len().min(4);
    if buf[..prefix] != MAGIC[..prefix] {
        return Decoded::Invalid;
    }
    if buf.len() < HEADER_LEN {
        if buf.len() > 8 && buf[8] != VERSION {
            return Decoded::Invalid;
        }
        return Decoded::Incomplete;
    }
    let flags = buf[9];
    if buf[8] != VERSION || flags > FLAG_SKIP || buf[10..12] != [0, 0] {
        return Decoded::Invalid;
    }
    let len = u32_at(buf, 12);
    if len > max_payload || (flags == FLAG_SKIP && len != SKIP_PAYLOAD_LEN) {
        return Decoded::Invalid;
    }
    let header = Header {
        id: u64_at(buf, 16),
        written_unix_ms: u64_at(buf, 24),
        len,
        flags,
    };
    let end = header.frame_len();
    if buf.len() < end {
        return Decoded::Incomplete;
    }
    if crc32c::crc32c(&buf[8..end]) != u32_at(buf, 4) {
        return Decoded::Invalid;
    }
    Decoded::Frame(header)
}

/// Offset of the next place at or after `from` where a frame could start
/// (the first byte of [`MAGIC`], or a partial magic at the very end).
pub(crate) fn next_candidate(buf: &[u8], from: usize) -> usize {
    buf.get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == MAGIC[0]))
        .map_or(buf.len(), |p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(id: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(id, 1_700_000_000_000, payload, &mut out);
        out
    }

    #[test]
    fn encoded_frame_decodes_to_its_header() {
        let f = frame(42, b"hello");
        assert_eq!(f.len(), HEADER_LEN + 5);
        assert_eq!(
            decode(&f, 1024),
            Decoded::Frame(Header {
                id: 42,
                written_unix_ms: 1_700_000_000_000,
                len: 5,
                flags: 0,
            })
        );
        assert_eq!(&f[HEADER_LEN..], b"hello");
    }

    #[test]
    fn checksum_is_crc32c_of_everything_after_the_checksum_field() {
        let f = frame(7, b"payload");
        let stored = u32_at(&f, 4);
        assert_eq!(stored, crc32c::crc32c(&f[8..]));
        // And it is Castagnoli, not IEEE: the standard check value of
        // CRC-32C over "123456789" is 0xE3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn layout_matches_the_documented_offsets() {
        let f = frame(0x0102_0304_0506_0708, b"xy");
        assert_eq!(&f[0..4], b"iotb");
        assert_eq!(f[8], VERSION);
        assert_eq!(&f[9..12], &[0, 0, 0]); // flags 0: a record
        assert_eq!(u32_at(&f, 12), 2);
        assert_eq!(u64_at(&f, 16), 0x0102_0304_0506_0708);
        assert_eq!(u64_at(&f, 24), 1_700_000_000_000);
    }

    #[test]
    fn a_flipped_bit_anywhere_makes_the_frame_invalid() {
        let f = frame(3, b"some payload bytes");
        for byte in 0..f.len() {
            for bit in 0..8 {
                let mut g = f.clone();
                g[byte] ^= 1 << bit;
                let d = decode(&g, 1024);
                assert!(
                    matches!(d, Decoded::Invalid | Decoded::Incomplete),
                    "byte {byte} bit {bit}: {d:?}"
                );
                // Incomplete only when the length grew: still never a frame.
            }
        }
    }

    #[test]
    fn a_skip_marker_decodes_with_its_flag_and_range_start() {
        let mut f = Vec::new();
        encode_skip(10, 4105, 7, &mut f);
        assert_eq!(f[9], FLAG_SKIP);
        let Decoded::Frame(h) = decode(&f, 1024) else {
            panic!("not a frame")
        };
        assert_eq!((h.id, h.flags, h.len), (4105, FLAG_SKIP, 8));
        assert_eq!(u64_at(&f, HEADER_LEN), 10);
    }

    #[test]
    fn a_skip_marker_of_the_wrong_length_or_unknown_flags_are_invalid() {
        let mut f = Vec::new();
        encode_with_flags(3, 7, FLAG_SKIP, b"abc", &mut f);
        assert_eq!(decode(&f, 1024), Decoded::Invalid);
        let mut g = Vec::new();
        encode_with_flags(3, 7, 2, b"12345678", &mut g);
        assert_eq!(decode(&g, 1024), Decoded::Invalid);
    }

    #[test]
    fn a_length_above_the_limit_is_invalid_without_waiting_for_more_bytes() {
        let mut f = frame(3, b"abc");
        f[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&f, 1 << 20), Decoded::Invalid);
    }

    #[test]
    fn a_prefix_of_a_frame_is_incomplete() {
        let f = frame(9, b"0123456789");
        for cut in 0..f.len() {
            assert_eq!(decode(&f[..cut], 1024), Decoded::Incomplete, "cut {cut}");
        }
    }

    #[test]
    fn next_candidate_finds_the_next_magic_byte() {
        let mut buf = vec![0u8; 10];
        buf.extend(frame(1, b""));
        assert_eq!(next_candidate(&buf, 0), 10);
        assert_eq!(next_candidate(&buf, 11), buf.len());
        assert_eq!(next_candidate(&buf, 500), buf.len());
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            max in any::<u32>(),
        ) {
            let _ = decode(&bytes, max);
        }

        #[test]
        fn any_payload_round_trips(
            id in any::<u64>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let f = frame(id, &payload);
            let Decoded::Frame(h) = decode(&f, 300) else { panic!("not a frame") };
            prop_assert_eq!(h.id, id);
            prop_assert_eq!(&f[HEADER_LEN..h.frame_len()], &payload[..]);
        }
    }
}
