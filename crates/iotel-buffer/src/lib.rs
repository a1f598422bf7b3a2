//! iotel's disk buffer: a segmented, checksummed, at-least-once queue of
//! opaque records (`&[u8]`), one per sink, in its own directory.
//!
//! It knows no protocol, no network and no async runtime: a sink encodes its
//! batches to bytes, [`push`](DiskBuffer::push)es them, reads them back with
//! [`next`](DiskBuffer::next), and [`ack`](DiskBuffer::ack)s them once its
//! peer confirmed delivery. Only acknowledged records are ever deleted —
//! except by `when_full = drop_oldest` and by damage, each counted under its
//! reason. After a crash, every unacknowledged record is replayed, oldest
//! first.
//!
//! # Layout
//!
//! ```text
//! <dir>/buffer-000000000001.dat   segment: frames of ids 1..
//! <dir>/buffer-000000004711.dat   the next segment: its name is its first id
//! <dir>/ledger.dat                40 bytes: head_id, next_id, reserved_until, checksum
//! <dir>/ledger.tmp                only while the ledger is being replaced
//! ```
//!
//! Segments are append-only and closed at `max_segment_size`; all of them
//! together stay within `max_size`. A segment is deleted as a whole once the
//! ledger records every id in it as acknowledged (the next segment's name is
//! at or below `head_id`).
//!
//! # Framing
//!
//! Every record is a 32-byte header and the payload (little-endian):
//!
//! ```text
//! magic "iotb" | crc32c u32 | version u8 = 1 | flags u8 | 2 reserved zero bytes |
//! len u32 | id u64 | written_unix_ms u64 | payload (len bytes)
//! ```
//!
//! `flags` is 0 for a record and 1 for a skip marker (ids never used; see
//! `frame.rs`).
//!
//! The checksum is **CRC-32C (Castagnoli)**, as computed by the `crc32c`
//! crate (hardware-accelerated where the CPU has it), over every byte after
//! the checksum field: header bytes 8..32 and the payload. The magic is not
//! covered; it is only what a resynchronising scan looks for. Ids start at 1
//! (or at [`BufferConfig::first_id`] when the buffer is created), grow by one
//! per record (and jump past a reservation after an unclean stop), and are
//! never reused while the ledger survives.
//!
//! # Ledger
//!
//! `ledger.dat` holds `head_id` (every id below it was acknowledged or
//! dropped), `next_id` and `reserved_until`, with its own CRC-32C. It is replaced, never
//! edited: written to `ledger.tmp`, fsynced, renamed over `ledger.dat`, and
//! the directory fsynced. It is written after the segment data it describes
//! is synced, on `sync`, when a sync is due under the fsync policy, after
//! every `ack` under `fsync = always`, before any segment is deleted, and at
//! `open`. The read position is not stored: a restart replays from
//! `head_id`.
//!
//! # Recovery
//!
//! `open` never fails on what it finds in the directory, only on file-system
//! errors, and never panics:
//!
//! - a corrupt or missing ledger: replay every record on disk (at-least-once
//!   prefers duplicates over losses);
//! - a torn tail (a frame half-written at power loss) in the last segment:
//!   truncated to the last valid frame;
//! - a frame with a bad checksum, impossible length or unknown version:
//!   skipped; the scan moves forward to the next offset where a whole
//!   checksum-valid frame starts and continues there, so one flipped bit
//!   costs one record, and the records after it are delivered;
//! - a segment cut short: read up to the damage, then the next segment;
//! - a deleted segment: its ids are missing before the next file's name.
//!
//! Losses are counted by id (ids are consecutive), never guessed from
//! bytes: ids missing before a segment's first id count as
//! `segment_missing`, ids missing inside a segment as `corrupt`. The full
//! rules are at the top of `recovery.rs`; the reader applies the same ones
//! to damage that appears while the buffer is open, and counts each lost id
//! once.
//!
//! # Fsync policies and what they risk
//!
//! A `kill -9` of the process loses nothing under any policy: every push is
//! written to the kernel before it returns. Power loss is another matter:
//!
//! | policy | power loss can lose | acks replayed after power loss |
//! |---|---|---|
//! | `Always` | nothing that `push` returned | none |
//! | `Interval(d)` (default 1 s) | records of the last `d` (uncounted: nothing on disk knew of them) | those of the last `d` |
//! | `Never` | whatever the kernel had not written back (Linux: ~30 s) | those since the kernel last wrote the ledger |
//!
//! See [`FsyncPolicy`] for the details. Ids are never given twice, even to
//! records lost from an unsynced tail that a peer already received: they
//! come from a reservation written durably every 1,024 records, and after
//! an unclean stop the buffer starts past it (`ledger.rs`,
//! "Reservations"), so a peer that deduplicates by id never mistakes a new
//! record for one it had.
//!
//! # When full
//!
//! [`WhenFull::DropOldest`] deletes the oldest segment(s), acknowledged or
//! not, and counts each unacknowledged record deleted under `drop_oldest`.
//! [`WhenFull::Block`] refuses the push with [`BufferError::Full`]
//! (retryable). Downsampling needs to know what the records mean, which this
//! crate must not; it will plug in above the buffer: a `Compactor` owned by
//! the sink wrapper that, on `Full`, reads the oldest unacknowledged records
//! with `next`, pushes their aggregate, and acks the originals (each counted
//! by the wrapper under `downsample`), so the buffer itself only ever
//! appends and deletes whole acknowledged segments.

#![forbid(unsafe_code)]

mod buffer;
mod config;
mod error;
mod frame;
mod ledger;
mod recovery;
mod segment;
mod stats;

pub use buffer::DiskBuffer;
pub use config::{
    BufferConfig, DEFAULT_FSYNC_INTERVAL, DEFAULT_MAX_SEGMENT_SIZE, DEFAULT_MAX_SIZE, FsyncPolicy,
    WhenFull,
};
pub use error::BufferError;
pub use frame::HEADER_LEN;
pub use ledger::LedgerState;
pub use stats::{DropReason, Dropped, Pushed, Record, RecoveryReport, Stats};
