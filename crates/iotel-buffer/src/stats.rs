//! What the buffer reports: counters of dropped records by reason, stats, and
//! the bookkeeping that keeps each lost id counted exactly once.

use crate::ledger::LedgerState;

/// Why a record left the buffer without being acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Deleted by `when_full = drop_oldest` to make room.
    DropOldest,
    /// Its frame was damaged (bad checksum, impossible length, unknown
    /// version, cut off), or its bytes are missing from inside a segment.
    Corrupt,
    /// The segment file that held it is gone.
    SegmentMissing,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [
        DropReason::DropOldest,
        DropReason::Corrupt,
        DropReason::SegmentMissing,
    ];

    /// The stable label value of `iotel_buffer_dropped_total{reason}`.
    pub fn code(self) -> &'static str {
        match self {
            DropReason::DropOldest => "drop_oldest",
            DropReason::Corrupt => "corrupt",
            DropReason::SegmentMissing => "segment_missing",
        }
    }
}

/// Records dropped, per reason, since this process opened the buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub drop_oldest: u64,
    pub corrupt: u64,
    pub segment_missing: u64,
}

impl Dropped {
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::DropOldest => self.drop_oldest,
            DropReason::Corrupt => self.corrupt,
            DropReason::SegmentMissing => self.segment_missing,
        }
    }

    pub(crate) fn add(&mut self, reason: DropReason, n: u64) {
        let c = match reason {
            DropReason::DropOldest => &mut self.drop_oldest,
            DropReason::Corrupt => &mut self.corrupt,
            DropReason::SegmentMissing => &mut self.segment_missing,
        };
        *c += n;
    }

    pub fn total(&self) -> u64 {
        DropReason::ALL.iter().map(|r| self.get(*r)).sum()
    }
}

/// A snapshot for the buffer's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of all segment files (`iotel_buffer_bytes`); includes acked
    /// records in segments not yet deleted.
    pub bytes: u64,
    /// Records not yet acknowledged, whether handed out or not
    /// (`iotel_buffer_records`).
    pub records: u64,
    /// When the oldest unacknowledged record was pushed; its age is
    /// `iotel_buffer_oldest_age_seconds`. `None` when empty.
    pub oldest_unacked_unix_ms: Option<u64>,
    /// `iotel_buffer_dropped_total{reason}`.
    pub dropped: Dropped,
}

/// What `push` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// The record's id.
    pub id: u64,
    /// Unacknowledged records deleted to make room (`drop_oldest`).
    pub dropped: u64,
}

/// A record handed out by `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: u64,
    pub written_unix_ms: u64,
    pub payload: Vec<u8>,
}

/// What `open` found and repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub ledger: LedgerState,
    /// Segment files found (after deleting fully acknowledged ones).
    pub segments: usize,
    /// Unacknowledged records that will be replayed, oldest first.
    pub records: u64,
    /// The oldest id still wanted and the next id to be given.
    pub head_id: u64,
    pub next_id: u64,
    /// Damaged regions skipped inside segments.
    pub damaged_regions: u64,
    /// Bytes cut from the end of the last segment (a torn tail).
    pub truncated_bytes: u64,
    /// Records found lost, by reason (also in [`Stats::dropped`]).
    pub lost: Dropped,
    /// Ids skipped because the last stop was unclean: ids the previous run
    /// may have given to records that did not survive (see the crate docs,
    /// "Fsync policies"). Not records, not counted as lost.
    pub skipped_ids: u64,
}

/// Ids known to be lost, as sorted, disjoint half-open ranges, so that a loss
/// seen again (a rewind re-reads the damage, the reader meets what recovery
/// already counted) is not counted twice. Small: one entry per damaged region.
#[derive(Debug, Default)]
pub(crate) struct LostIds {
    ranges: Vec<(u64, u64)>,
}

impl LostIds {
    /// Marks `start..end` lost; returns how many of its ids were not already.
    pub(crate) fn insert(&mut self, start: u64, end: u64) -> u64 {
        if start >= end {
            return 0;
        }
        let known = self.count_in(start, end);
        let mut lo = start;
        let mut hi = end;
        self.ranges.retain(|&(s, e)| {
            let touches = s <= hi && lo <= e;
            if touches {
                lo = lo.min(s);
                hi = hi.max(e);
            }
            !touches
        });
        let at = self.ranges.partition_point(|&(s, _)| s < lo);
        self.ranges.insert(at, (lo, hi));
        (end - start) - known
    }

    /// How many ids of `start..end` are lost.
    pub(crate) fn count_in(&self, start: u64, end: u64) -> u64 {
        self.ranges
            .iter()
            .map(|&(s, e)| e.min(end).saturating_sub(s.max(start)))
            .sum()
    }

    /// The first id at or after `id` that is not lost.
    pub(crate) fn first_kept_from(&self, id: u64) -> u64 {
        self.ranges
            .iter()
            .find(|&&(s, e)| s <= id && id < e)
            .map_or(id, |&(_, e)| e)
    }

    /// Forgets everything below `head` (acknowledged or dropped).
    pub(crate) fn forget_below(&mut self, head: u64) {
        self.ranges.retain_mut(|r| {
            r.0 = r.0.max(head);
            r.0 < r.1
        });
    }
}

/// Counts the ids `expected..found` the reader skipped over, each once.
///
/// `found` is in the segment named `segment_first_id`. Ids up to
/// `damaged_until` belong to the previous segment, which ended in damage
/// (it was cut short or its last frames are garbage): `corrupt`. Ids from
/// the segment's own name on were in this segment: `corrupt`. Ids in
/// between were in no segment that is still there: `segment_missing`.
pub(crate) fn count_gap(
    lost: &mut LostIds,
    dropped: &mut Dropped,
    expected: u64,
    found: u64,
    damaged_until: u64,
    segment_first_id: u64,
) {
    let found = found.max(expected);
    let a = damaged_until.clamp(expected, found);
    let b = segment_first_id.clamp(a, found);
    let n = lost.insert(expected, a) + lost.insert(b, found);
    dropped.add(DropReason::Corrupt, n);
    dropped.add(DropReason::SegmentMissing, lost.insert(a, b));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_ids_count_each_id_once() {
        let mut l = LostIds::default();
        assert_eq!(l.insert(5, 8), 3);
        assert_eq!(l.insert(5, 8), 0);
        assert_eq!(l.insert(7, 10), 2);
        assert_eq!(l.insert(1, 2), 1);
        assert_eq!(l.count_in(0, 100), 6);
        assert_eq!(l.count_in(6, 9), 3);
        l.forget_below(7);
        assert_eq!(l.count_in(0, 100), 3);
    }

    #[test]
    fn a_gap_before_a_segment_name_is_missing_and_after_it_corrupt() {
        let mut l = LostIds::default();
        let mut d = Dropped::default();
        // Expected 10, segment named 20 starts with record 23.
        count_gap(&mut l, &mut d, 10, 23, 0, 20);
        assert_eq!(d.segment_missing, 10);
        assert_eq!(d.corrupt, 3);
        // Seen again after a rewind: nothing new.
        count_gap(&mut l, &mut d, 10, 23, 0, 20);
        assert_eq!(d.total(), 13);
    }

    #[test]
    fn a_gap_after_a_segment_that_ended_in_damage_is_corrupt_up_to_its_end() {
        let mut l = LostIds::default();
        let mut d = Dropped::default();
        // Expected 8; the segment before ended damaged and the next segment
        // (named 11) is gone, so is 16's first record: 16 is found at 17.
        count_gap(&mut l, &mut d, 8, 17, 11, 16);
        assert_eq!(d.corrupt, 3 + 1);
        assert_eq!(d.segment_missing, 5);
    }

    #[test]
    fn drop_reason_codes_are_stable() {
        let codes: Vec<_> = DropReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes, ["drop_oldest", "corrupt", "segment_missing"]);
    }
}
