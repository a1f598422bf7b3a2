//! Opening a buffer directory: what is trusted, what is repaired, what is
//! counted. The rules (also in the crate docs):
//!
//! 1. `ledger.tmp` is a ledger write that did not finish: deleted.
//! 2. The ledger gives `head_id` and `next_id`. A missing or corrupt ledger
//!    is not trusted at all: every record still on disk is replayed, from
//!    the oldest segment (at-least-once: replaying beats losing). With
//!    neither a ledger nor a segment the buffer is new: its ids start at
//!    `first_id` (at least 1).
//! 3. Segments whose ids are all below `head_id` (the next segment's name is
//!    at or below it) were fully acknowledged: deleted without reading.
//! 4. Every other segment is scanned frame by frame. A frame with a bad
//!    checksum, an impossible length (above `max_segment_size`), a wrong
//!    magic or an unknown version is skipped: the scan moves forward byte by
//!    byte to the next offset where a whole checksum-valid frame starts, and
//!    carries on from there. So a flipped bit costs one record, not the
//!    segment.
//! 5. Ids are consecutive, so what is lost is counted by id, never guessed
//!    from bytes. Ids missing from a segment's name (its first id) on, or
//!    before the next segment's name when the segment ended in damage (cut
//!    short, or garbage after its last valid frame), were in that segment:
//!    `corrupt`. Ids missing between a segment that ended cleanly and the
//!    next segment's name were in a segment that is gone:
//!    `segment_missing` (a segment cut exactly between two frames looks
//!    the same, and is counted so). Records with ids below what was
//!    already seen (acknowledged, or duplicated) are skipped.
//! 6. The last segment is the one appended to: bytes after its last valid
//!    frame are a torn tail and are truncated. A torn frame that the ledger
//!    does not know of was never synced and is not counted; ids the ledger's
//!    `next_id` says were written but no segment holds are counted (as
//!    `corrupt` when the last segment ended in damage, else
//!    `segment_missing`). Damage in other segments is left in place, read
//!    around, and deleted with its segment once acknowledged.
//! 7. `next_id` becomes the largest of the ledger's, one past the last valid
//!    record, and the last segment's name. When the ledger's
//!    `reserved_until` is above it, the last stop was unclean and ids up to
//!    it may have been handed out: the next push writes a skip marker over
//!    them (`frame.rs`), so they are never reused nor counted as lost.
//! 8. A skip marker met while scanning: ids missing before its `skip_from`
//!    are counted as in rule 5; `skip_from ..= id` are stepped over
//!    uncounted.
//! 9. Nothing on disk can make `open` panic; only file-system errors fail it.
//!
//! Counters belong to the process: damage still on disk is counted again by
//! the next process that opens the buffer, until its segment is deleted.

use crate::config::BufferConfig;
use crate::error::{BufferError, io_error};
use crate::frame::FLAG_SKIP;
use crate::ledger::{LEDGER_TMP, Ledger};
use crate::segment::{self, Scanned, Scanner, Segment};
use crate::stats::{Dropped, LostIds, RecoveryReport, count_gap};
use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io::ErrorKind;

/// The state `open` rebuilds.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub segments: VecDeque<Segment>,
    pub head_id: u64,
    pub next_id: u64,
    pub oldest_unacked_unix_ms: Option<u64>,
    pub lost: LostIds,
    pub report: RecoveryReport,
    /// What the ledger reserved, at least `next_id`. Above `next_id` the
    /// last stop was unclean, and ids up to it may have been handed out.
    pub reserved_until: u64,
}

/// The lowest id there is, and the first of a new buffer whose `first_id`
/// is 0.
pub(crate) const FIRST_ID: u64 = 1;

pub(crate) fn recover(config: &BufferConfig, max_payload: u32) -> Result<Recovered, BufferError> {
    let dir = &config.dir;
    fs::create_dir_all(dir).map_err(|e| io_error("create directory", dir, e))?;
    let tmp = dir.join(LEDGER_TMP);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(io_error("delete", &tmp, e)),
        _ => {}
    }
    let (ledger, ledger_state) = Ledger::read(dir)?;
    let mut segments: VecDeque<Segment> = segment::list(dir)?.into();

    let head_id = match (ledger, segments.front()) {
        (Some(l), _) => l.head_id,
        (None, Some(s)) => s.first_id,
        (None, None) => config.first_id.max(FIRST_ID),
    };
    while segments.len() > 1 && segments[1].first_id <= head_id {
        if let Some(s) = segments.pop_front() {
            fs::remove_file(&s.path).map_err(|e| io_error("delete", &s.path, e))?;
        }
    }

    let mut lost = LostIds::default();
    let mut dropped = Dropped::default();
    let mut expected = head_id;
    let mut records = 0u64;
    let mut oldest = None;
    let mut damaged_regions = 0u64;
    let mut truncated_bytes = 0u64;
    let mut damaged_until = 0u64;
    let last = segments.len().saturating_sub(1);
    let names: Vec<u64> = segments.iter().map(|s| s.first_id).collect();
    for (i, seg) in segments.iter_mut().enumerate() {
        let mut scanner = Scanner::open(&seg.path, 0, seg.len, max_payload)?;
        loop {
            match scanner.next()? {
                Scanned::Record { header, .. } => {
                    if header.id < expected {
                        continue;
                    }
                    let found = if header.flags == FLAG_SKIP {
                        skip_start(scanner.payload(), expected, header.id)
                    } else {
                        header.id
                    };
                    count_gap(
                        &mut lost,
                        &mut dropped,
                        expected,
                        found,
                        damaged_until,
                        seg.first_id,
                    );
                    damaged_until = 0;
                    expected = header.id + 1;
                    if header.flags == FLAG_SKIP {
                        // Never used: not lost, not records.
                        lost.insert(found, expected);
                        continue;
                    }
                    records += 1;
                    oldest.get_or_insert(header.written_unix_ms);
                }
                Scanned::Damage { .. } => damaged_regions += 1,
                Scanned::End { valid_end, limit } => {
                    if valid_end < limit {
                        damaged_regions += 1;
                        // Ids up to the next segment's name were in here.
                        damaged_until = names.get(i + 1).copied().unwrap_or(u64::MAX);
                        if i == last {
                            let f = OpenOptions::new()
                                .write(true)
                                .open(&seg.path)
                                .map_err(|e| io_error("open", &seg.path, e))?;
                            f.set_len(valid_end)
                                .map_err(|e| io_error("truncate", &seg.path, e))?;
                            truncated_bytes = limit - valid_end;
                        }
                    }
                    // Writes go after the last valid frame of the last segment.
                    seg.len = if i == last { valid_end } else { limit };
                    break;
                }
            }
        }
    }
    if let Some(l) = ledger
        && l.next_id > expected
    {
        // Written and synced once, but no segment holds them: cut from the
        // last segment if it ended in damage, else its successor is gone.
        count_gap(
            &mut lost,
            &mut dropped,
            expected,
            l.next_id,
            damaged_until,
            u64::MAX,
        );
    }
    let next_id = [
        expected,
        ledger.map_or(FIRST_ID, |l| l.next_id),
        segments.back().map_or(FIRST_ID, |s| s.first_id),
    ]
    .into_iter()
    .max()
    .unwrap_or(FIRST_ID);
    // Lost and skipped ids right at the head are not wanted either.
    let head_id = lost.first_kept_from(head_id).min(next_id);
    let reserved_until = ledger.map_or(next_id, |l| l.reserved_until.max(next_id));

    let report = RecoveryReport {
        ledger: ledger_state,
        segments: segments.len(),
        records,
        head_id,
        next_id,
        damaged_regions,
        truncated_bytes,
        lost: dropped,
        skipped_ids: reserved_until - next_id,
    };
    Ok(Recovered {
        segments,
        head_id,
        next_id,
        oldest_unacked_unix_ms: oldest,
        lost,
        report,
        reserved_until,
    })
}

/// Where the ids a skip marker covers start: its payload, kept within
/// `expected ..= id` whatever the (checksum-valid) payload says.
pub(crate) fn skip_start(payload: &[u8], expected: u64, id: u64) -> u64 {
    let from = payload.try_into().map_or(id, u64::from_le_bytes);
    from.clamp(expected, id)
}
