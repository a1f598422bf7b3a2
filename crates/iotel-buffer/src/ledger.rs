//! The ledger: a 40-byte file that says which records are done with.
//!
//! ```text
//! offset size field
//!      0    4 magic          b"iotl"
//!      4    4 crc32c         u32 LE: CRC-32C (Castagnoli) of bytes 8..40
//!      8    1 version        2
//!      9    7 reserved       zero
//!     16    8 head_id        u64 LE: the oldest id still wanted; every id below
//!                            it was acknowledged or dropped (and counted)
//!     24    8 next_id        u64 LE: one past the last record known durable
//!     32    8 reserved_until u64 LE: ids below it may have been given to
//!                            records; the next open after an unclean stop
//!                            starts its ids here
//! ```
//!
//! Version 1 ledgers (32 bytes, without `reserved_until`) are still read,
//! as if `reserved_until` were `next_id`. Do not reorder or resize these
//! fields (see `frame.rs`).
//!
//! The read position is deliberately not stored: after a restart every
//! record from `head_id` on is replayed (at-least-once).
//!
//! The ledger is replaced, never edited: written to `ledger.tmp`, fsynced,
//! renamed over `ledger.dat`, then the directory is fsynced, so a crash leaves
//! either the old or the new ledger whole. It is written only after the
//! segment data it describes is synced, so `next_id` never claims a record
//! that is not durable.
//!
//! # Reservations
//!
//! Under `fsync` = interval or never, a power cut can lose records that
//! were already read and delivered to a peer. If the next open gave their
//! ids to new records, a peer that deduplicates by id would drop those new
//! records as retransmits. So ids are handed out from a reservation: before
//! a push takes an id at or past `reserved_until`, the buffer reserves the
//! next [`RESERVATION`] ids by writing the ledger durably (one fsync per
//! 1,024 records, under every policy). A clean close gives back what is
//! left; an open after an unclean stop (ledger `reserved_until` above the
//! last record found) starts at `reserved_until` and writes a skip marker
//! (`frame.rs`) over the ids in between, so they are not counted as lost.

use crate::error::{BufferError, io_error};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;

pub(crate) const LEDGER_FILE: &str = "ledger.dat";
pub(crate) const LEDGER_TMP: &str = "ledger.tmp";
const MAGIC: [u8; 4] = *b"iotl";
const VERSION: u8 = 2;
const LEN: usize = 40;
const V1_LEN: usize = 32;
/// Ids reserved at a time (see "Reservations").
pub(crate) const RESERVATION: u64 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ledger {
    pub head_id: u64,
    pub next_id: u64,
    pub reserved_until: u64,
}

/// What reading the ledger found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerState {
    /// The ledger was read and its checksum matched.
    Valid,
    /// No ledger: a new buffer, or one whose ledger was deleted.
    Missing,
    /// A ledger was there but unreadable (bad checksum, size, magic or
    /// version). The buffer replays every record still on disk.
    Corrupt,
}

impl Ledger {
    pub(crate) fn encode(self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[8] = VERSION;
        b[16..24].copy_from_slice(&self.head_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.next_id.to_le_bytes());
        b[32..40].copy_from_slice(&self.reserved_until.to_le_bytes());
        let crc = crc32c::crc32c(&b[8..]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// `None` for anything but a valid ledger. Never panics.
    pub(crate) fn decode(b: &[u8]) -> Option<Ledger> {
        let version = match b.len() {
            LEN => VERSION,
            V1_LEN => 1,
            _ => return None,
        };
        if b[0..4] != MAGIC || b[8] != version || b[9..16] != [0; 7] {
            return None;
        }
        let crc = u32::from_le_bytes(b[4..8].try_into().ok()?);
        if crc32c::crc32c(&b[8..]) != crc {
            return None;
        }
        let u64_at = |at: usize| b[at..at + 8].try_into().ok().map(u64::from_le_bytes);
        let head_id = u64_at(16)?;
        let next_id = u64_at(24)?;
        let reserved_until = if version == 1 { next_id } else { u64_at(32)? };
        (head_id <= next_id && next_id <= reserved_until).then_some(Ledger {
            head_id,
            next_id,
            reserved_until,
        })
    }

    /// Reads `dir/ledger.dat`.
    pub(crate) fn read(dir: &Path) -> Result<(Option<Ledger>, LedgerState), BufferError> {
        let path = dir.join(LEDGER_FILE);
        match fs::read(&path) {
            Ok(bytes) => match Ledger::decode(&bytes) {
                Some(l) => Ok((Some(l), LedgerState::Valid)),
                None => Ok((None, LedgerState::Corrupt)),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => Ok((None, LedgerState::Missing)),
            Err(e) => Err(io_error("read", &path, e)),
        }
    }

    /// Replaces `dir/ledger.dat` atomically; with `durable`, fsyncs the file
    /// before the rename and the directory after it.
    pub(crate) fn write(self, dir: &Path, durable: bool) -> Result<(), BufferError> {
        let tmp = dir.join(LEDGER_TMP);
        let path = dir.join(LEDGER_FILE);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_error("create", &tmp, e))?;
        f.write_all(&self.encode())
            .map_err(|e| io_error("write", &tmp, e))?;
        if durable {
            f.sync_all().map_err(|e| io_error("fsync", &tmp, e))?;
        }
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| io_error("rename", &tmp, e))?;
        if durable {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

/// Fsyncs a directory so that creations, renames and deletions in it survive
/// power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), BufferError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger {
            head_id: 17,
            next_id: 99,
            reserved_until: 4195,
        };
        l.write(dir.path(), true).unwrap();
        assert_eq!(
            Ledger::read(dir.path()).unwrap(),
            (Some(l), LedgerState::Valid)
        );
        assert!(!dir.path().join(LEDGER_TMP).exists());
    }

    #[test]
    fn a_missing_ledger_is_reported_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Ledger::read(dir.path()).unwrap(),
            (None, LedgerState::Missing)
        );
    }

    #[test]
    fn any_flipped_bit_or_wrong_size_makes_the_ledger_corrupt() {
        let good = Ledger {
            head_id: 5,
            next_id: 6,
            reserved_until: 7,
        }
        .encode();
        for byte in 0..LEN {
            for bit in 0..8 {
                let mut b = good;
                b[byte] ^= 1 << bit;
                assert_eq!(Ledger::decode(&b), None, "byte {byte} bit {bit}");
            }
        }
        assert_eq!(Ledger::decode(&good[..39]), None);
        assert_eq!(Ledger::decode(&[]), None);
    }

    #[test]
    fn a_ledger_whose_head_is_past_its_next_id_is_corrupt() {
        let b = Ledger {
            head_id: 7,
            next_id: 6,
            reserved_until: 8,
        }
        .encode();
        assert_eq!(Ledger::decode(&b), None);
        let c = Ledger {
            head_id: 1,
            next_id: 6,
            reserved_until: 5,
        }
        .encode();
        assert_eq!(Ledger::decode(&c), None);
    }

    #[test]
    fn a_version_1_ledger_is_read_with_nothing_reserved_past_next_id() {
        let mut b = [0u8; V1_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[8] = 1;
        b[16..24].copy_from_slice(&3u64.to_le_bytes());
        b[24..32].copy_from_slice(&9u64.to_le_bytes());
        let crc = crc32c::crc32c(&b[8..]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Ledger::decode(&b),
            Some(Ledger {
                head_id: 3,
                next_id: 9,
                reserved_until: 9
            })
        );
    }
}
