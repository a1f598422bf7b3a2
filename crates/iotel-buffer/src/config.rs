use crate::error::BufferError;
use crate::frame::HEADER_LEN;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

/// When the buffer forces written records to stable storage.
///
/// What each risks on power loss (a `kill -9` of the process loses nothing
/// under any policy: every push is handed to the kernel before it returns):
///
/// - `Always`: the segment is fsynced before `push` returns and the ledger
///   after every `ack`. Power loss loses no pushed record and replays no acked
///   one. The slowest: one fsync per push.
/// - `Interval(d)` (default 1 s): segment and ledger are fsynced when the
///   last sync is older than `d`, checked on `push`, `next` and `ack` and by
///   [`sync_if_due`](crate::DiskBuffer::sync_if_due) on a caller's timer.
///   Power loss can lose the records of the last `d` (plus however long the
///   buffer sat idle without `sync_if_due`), possibly leaving a torn tail
///   that recovery truncates; acks of the last `d` are replayed. Records
///   lost this way were never synced, so nothing on disk knows they existed:
///   they are not counted.
/// - `Never`: the buffer never fsyncs; the kernel writes back when it
///   likes (Linux: within about 30 s by default). The ledger is still
///   replaced (without fsync) at the 1 s cadence so a process crash replays
///   little. Power loss can lose any amount of recent data, or leave a
///   ledger that points past the data (counted as lost at the next open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    Always,
    Interval(Duration),
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(DEFAULT_FSYNC_INTERVAL)
    }
}

/// The default of `FsyncPolicy::Interval`.
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(1);

/// What `push` does when the record does not fit in `max_size`.
///
/// Segments fully acknowledged are always deleted first; the policy decides
/// only when unacknowledged records fill the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenFull {
    /// Delete the oldest segment(s), acknowledged or not, until the record
    /// fits; each unacknowledged record deleted is counted under
    /// `drop_oldest`. The edge default: fresh data beats old data.
    #[default]
    DropOldest,
    /// Refuse the record with [`BufferError::Full`] (retryable) so the
    /// caller applies backpressure to its source.
    Block,
}

/// Where and how big a [`DiskBuffer`](crate::DiskBuffer) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferConfig {
    /// The buffer's own directory; created if missing. Nothing else may
    /// write there.
    pub dir: PathBuf,
    /// Budget for all segment files together, in bytes (frames included).
    /// At least twice `max_segment_size`, so the segment being written never
    /// has to be dropped to make room.
    pub max_size: NonZeroU64,
    /// Size at which a segment is closed and a new one started; also the
    /// largest frame (so the largest record is this minus 32 bytes), and the
    /// unit `drop_oldest` deletes at once.
    pub max_segment_size: NonZeroU64,
    pub fsync: FsyncPolicy,
    pub when_full: WhenFull,
    /// The id the first record of a *new* buffer gets: one whose directory
    /// holds neither a ledger nor a segment. A buffer that already exists
    /// continues from its own ids and ignores this. Ids are never 0, so 0
    /// (the default) starts at 1.
    ///
    /// A caller that hands ids on to a peer which drops ids it has seen
    /// (the native protocol's sequence) sets it from the clock, so that a
    /// buffer whose directory was deleted does not start again below what
    /// the peer already has.
    pub first_id: u64,
}

/// Default `max_size`: 64 MiB, the edge example.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 20;
/// Default `max_segment_size`: 4 MiB, so `drop_oldest` gives up 1/16 of a
/// full default buffer at a time.
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 4 << 20;

impl BufferConfig {
    /// The defaults, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        BufferConfig {
            dir: dir.into(),
            max_size: NonZeroU64::new(DEFAULT_MAX_SIZE).unwrap_or(NonZeroU64::MIN),
            max_segment_size: NonZeroU64::new(DEFAULT_MAX_SEGMENT_SIZE).unwrap_or(NonZeroU64::MIN),
            fsync: FsyncPolicy::default(),
            when_full: WhenFull::default(),
            first_id: 0,
        }
    }

    /// Checks the sizes against each other. No I/O.
    ///
    /// # Errors
    ///
    /// [`BufferError::InvalidConfig`] naming the offending option.
    pub fn validate(&self) -> Result<(), BufferError> {
        let seg = self.max_segment_size.get();
        let bad = |reason: String| Err(BufferError::InvalidConfig { reason });
        if seg <= HEADER_LEN as u64 {
            return bad(format!(
                "max_segment_size {seg} must be larger than the {HEADER_LEN}-byte record header"
            ));
        }
        if seg > u64::from(u32::MAX) {
            return bad(format!("max_segment_size {seg} must be at most 4 GiB"));
        }
        if self.max_size.get() < seg.saturating_mul(2) {
            return bad(format!(
                "max_size {} must be at least twice max_segment_size {seg}",
                self.max_size
            ));
        }
        if self.fsync == FsyncPolicy::Interval(Duration::ZERO) {
            return bad("fsync interval must be above zero; use Always".into());
        }
        Ok(())
    }

    /// The largest payload one record may have.
    pub fn max_payload(&self) -> u64 {
        self.max_segment_size
            .get()
            .saturating_sub(HEADER_LEN as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_size: u64, seg: u64) -> BufferConfig {
        BufferConfig {
            max_size: NonZeroU64::new(max_size).unwrap(),
            max_segment_size: NonZeroU64::new(seg).unwrap(),
            ..BufferConfig::new("/tmp/x")
        }
    }

    #[test]
    fn defaults_are_valid() {
        BufferConfig::new("/tmp/x").validate().unwrap();
        assert_eq!(
            BufferConfig::new("/tmp/x").fsync,
            FsyncPolicy::Interval(Duration::from_secs(1))
        );
    }

    #[test]
    fn max_size_below_two_segments_is_refused() {
        let e = cfg(1000, 600).validate().unwrap_err();
        assert!(e.to_string().contains("at least twice"), "{e}");
        cfg(1200, 600).validate().unwrap();
    }

    #[test]
    fn a_segment_no_larger_than_a_header_is_refused() {
        assert_eq!(
            cfg(1000, 32).validate().unwrap_err().code(),
            "invalid_config"
        );
        assert_eq!(cfg(1000, 33).max_payload(), 1);
    }
}
