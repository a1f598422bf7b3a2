//! [`DiskBuffer`]: the write, read, ack and space-keeping paths.

use crate::config::{BufferConfig, DEFAULT_FSYNC_INTERVAL, FsyncPolicy, WhenFull};
use crate::error::{BufferError, io_error};
use crate::frame::{self, FLAG_SKIP, HEADER_LEN};
use crate::ledger::{Ledger, RESERVATION, sync_dir};
use crate::recovery::{self, Recovered};
use crate::segment::{Scanned, Scanner, Segment};
use crate::stats::{
    DropReason, Dropped, LostIds, Pushed, Record, RecoveryReport, Stats, count_gap,
};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A segmented, checksummed on-disk queue of opaque records with
/// at-least-once delivery. See the crate docs for the format and the rules.
///
/// Not shared between threads or processes: one owner drives it (the sink's
/// task, later through an async wrapper).
#[derive(Debug)]
pub struct DiskBuffer {
    config: BufferConfig,
    max_payload: u32,
    /// Oldest first; the last one is being written. Never empty.
    segments: VecDeque<Segment>,
    writer: File,
    /// The oldest id still wanted: all below were acknowledged or dropped.
    head_id: u64,
    next_id: u64,
    /// Ids below this may have been handed out (see `ledger.rs`,
    /// "Reservations"); at least `next_id`.
    reserved_until: u64,
    /// Opened after an unclean stop: the ids `next_id .. reserved_until`
    /// may have been handed out by the previous run. The first push writes
    /// a skip marker over them and takes its id from `reserved_until`.
    skip_pending: bool,
    read: ReadCursor,
    /// Records handed out and not yet acknowledged: (id, written_unix_ms).
    /// 16 bytes each; bounded by what the sink has in flight.
    in_flight: VecDeque<(u64, u64)>,
    oldest_unacked_unix_ms: Option<u64>,
    lost: LostIds,
    dropped: Dropped,
    bytes: u64,
    /// Appended since the last fsync of `writer`.
    unsynced_data: bool,
    /// What the ledger on disk says.
    persisted: Ledger,
    last_sync: Instant,
    /// Whether `push`, `next` and `ack` sync when the interval says one is
    /// due (see [`DiskBuffer::sync_on_call_only`]).
    auto_sync: bool,
    frame_buf: Vec<u8>,
}

#[derive(Debug)]
struct ReadCursor {
    /// `first_id` of the segment being read.
    segment: u64,
    scanner: Option<Scanner>,
    /// The next id wanted; lower ids met on disk are skipped.
    expected: u64,
    /// Set when the previous segment ended in damage: ids below this were
    /// in it (see `count_gap`).
    damaged_until: u64,
    last_read: Option<u64>,
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl DiskBuffer {
    /// Opens (or creates) the buffer in `config.dir`, recovering whatever a
    /// crash left there (see the crate docs, "Recovery").
    ///
    /// # Errors
    ///
    /// [`BufferError::InvalidConfig`] for inconsistent sizes, and
    /// [`BufferError::Io`] when the file system fails. Damaged contents are
    /// never an error: they are repaired or skipped and counted in the report.
    pub fn open(config: BufferConfig) -> Result<(DiskBuffer, RecoveryReport), BufferError> {
        config.validate()?;
        let max_payload = u32::try_from(config.max_payload()).unwrap_or(u32::MAX);
        let Recovered {
            mut segments,
            head_id,
            next_id,
            oldest_unacked_unix_ms,
            lost,
            report,
            reserved_until,
        } = recovery::recover(&config, max_payload)?;
        if segments.is_empty() {
            let seg = Segment::new(&config.dir, next_id, 0);
            File::create(&seg.path).map_err(|e| io_error("create", &seg.path, e))?;
            segments.push_back(seg);
        }
        let active = segments.back().map_or(&config.dir, |s| &s.path);
        let writer = OpenOptions::new()
            .append(true)
            .open(active)
            .map_err(|e| io_error("open", active, e))?;
        let durable = config.fsync != FsyncPolicy::Never;
        let bytes = segments.iter().map(|s| s.len).sum();
        let front = segments.front().map_or(next_id, |s| s.first_id);
        let mut buffer = DiskBuffer {
            max_payload,
            segments,
            writer,
            head_id,
            next_id,
            reserved_until,
            skip_pending: reserved_until > next_id,
            read: ReadCursor {
                segment: front,
                scanner: None,
                expected: head_id,
                damaged_until: 0,
                last_read: None,
            },
            in_flight: VecDeque::new(),
            oldest_unacked_unix_ms,
            lost,
            dropped: report.lost,
            bytes,
            unsynced_data: false,
            // Forces the first checkpoint to write.
            persisted: Ledger {
                head_id: 0,
                next_id: 0,
                reserved_until: 0,
            },
            last_sync: Instant::now(),
            auto_sync: true,
            frame_buf: Vec::new(),
            config,
        };
        // Record what recovery decided (and create the ledger of a new buffer).
        if durable {
            sync_dir(&buffer.config.dir)?;
        }
        buffer.checkpoint(durable)?;
        Ok((buffer, report))
    }

    /// Appends a record and returns its id.
    ///
    /// # Errors
    ///
    /// [`BufferError::RecordTooLarge`] if it can never fit in a segment;
    /// [`BufferError::Full`] (retryable) under `when_full = block` when the
    /// unacknowledged records fill `max_size`; [`BufferError::Io`].
    pub fn push(&mut self, record: &[u8]) -> Result<Pushed, BufferError> {
        if record.len() as u64 > u64::from(self.max_payload) {
            return Err(BufferError::RecordTooLarge {
                len: record.len(),
                max_payload: u64::from(self.max_payload),
            });
        }
        self.frame_buf.clear();
        let skip = self.skip_pending.then_some(self.next_id);
        let first_id = self.reserved_until;
        if let Some(from) = skip {
            // Said on disk in the same write as the record that follows,
            // so no reader counts the skipped ids as lost.
            frame::encode_skip(from, first_id - 1, now_unix_ms(), &mut self.frame_buf);
        }
        let frame_len = (self.frame_buf.len() + HEADER_LEN + record.len()) as u64;
        let dropped = self.make_room(frame_len)?;
        let active_len = self.segments.back().map_or(0, |s| s.len);
        if active_len > 0 && active_len + frame_len > self.config.max_segment_size.get() {
            self.rotate()?;
        }
        let id = if skip.is_some() {
            first_id
        } else {
            self.next_id
        };
        if id >= self.reserved_until {
            self.reserve(id)?;
        }
        let ts = now_unix_ms();
        frame::encode(id, ts, record, &mut self.frame_buf);
        let Some(active) = self.segments.back_mut() else {
            return Err(io_error(
                "write",
                &self.config.dir,
                std::io::Error::other("no segment to write to"),
            ));
        };
        if let Err(e) = self.writer.write_all(&self.frame_buf) {
            // Take back a partial frame so the next push does not follow
            // garbage; if even that fails, recovery will truncate it.
            let _ = self.writer.set_len(active.len);
            return Err(io_error("write", &active.path, e));
        }
        active.len += frame_len;
        self.bytes += frame_len;
        if let Some(from) = skip {
            self.lost.insert(from, id);
            self.skip_pending = false;
            if self.head_id >= from {
                self.set_head(id);
            }
        }
        self.next_id = id + 1;
        self.unsynced_data = true;
        if self.oldest_unacked_unix_ms.is_none() {
            self.oldest_unacked_unix_ms = Some(ts);
        }
        match self.config.fsync {
            FsyncPolicy::Always => self.sync_data()?,
            _ if self.auto_sync => self.sync_if_due()?,
            _ => {}
        }
        Ok(Pushed { id, dropped })
    }

    /// The oldest record not yet handed out since the last open or
    /// [`rewind`](Self::rewind), or `None` when there is none yet. Damaged
    /// records are skipped and counted.
    ///
    /// # Errors
    ///
    /// [`BufferError::Io`] when the file system fails.
    // Not `Iterator`: `None` means "nothing yet", not "done" (a later push
    // makes the next call return a record), and each call may fail.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record>, BufferError> {
        if self.auto_sync {
            self.sync_if_due()?;
        }
        loop {
            let idx = match self
                .segments
                .iter()
                .position(|s| s.first_id == self.read.segment)
            {
                Some(i) => i,
                None => {
                    // Our segment was deleted (dropped or acked): carry on
                    // with the oldest one left.
                    self.read.segment = self.segments.front().map_or(0, |s| s.first_id);
                    self.read.scanner = None;
                    self.read.damaged_until = 0;
                    self.read.expected = self.read.expected.max(self.head_id);
                    0
                }
            };
            let Some(seg) = self.segments.get(idx) else {
                return Ok(None);
            };
            let scanner = match &mut self.read.scanner {
                Some(s) => s,
                None => self.read.scanner.insert(Scanner::open(
                    &seg.path,
                    0,
                    seg.len,
                    self.max_payload,
                )?),
            };
            scanner.set_limit(seg.len);
            match scanner.next()? {
                Scanned::Record { header, .. } => {
                    if header.id < self.read.expected {
                        continue;
                    }
                    let skip = header.flags == FLAG_SKIP;
                    let found = if skip {
                        recovery::skip_start(scanner.payload(), self.read.expected, header.id)
                    } else {
                        header.id
                    };
                    count_gap(
                        &mut self.lost,
                        &mut self.dropped,
                        self.read.expected,
                        found,
                        self.read.damaged_until,
                        seg.first_id,
                    );
                    self.read.damaged_until = 0;
                    if skip {
                        self.lost.insert(found, header.id + 1);
                        self.read.expected = header.id + 1;
                        continue;
                    }
                    let payload = scanner.payload().to_vec();
                    if self.in_flight.is_empty() {
                        self.oldest_unacked_unix_ms = Some(header.written_unix_ms);
                    }
                    self.read.expected = header.id + 1;
                    self.read.last_read = Some(header.id);
                    self.in_flight
                        .push_back((header.id, header.written_unix_ms));
                    return Ok(Some(Record {
                        id: header.id,
                        written_unix_ms: header.written_unix_ms,
                        payload,
                    }));
                }
                Scanned::Damage { .. } => {}
                Scanned::End { valid_end, limit } => {
                    let Some(next) = self.segments.get(idx + 1) else {
                        return Ok(None);
                    };
                    if valid_end < limit {
                        self.read.damaged_until = next.first_id;
                    }
                    self.read.segment = next.first_id;
                    self.read.scanner = None;
                }
            }
        }
    }

    /// Acknowledges every record up to and including `id`: they will not
    /// be handed out again, even after a restart (once the ledger is
    /// written: at once under `fsync = always`, else at the next sync).
    ///
    /// # Errors
    ///
    /// [`BufferError::AckOutOfRange`] if `id` was not handed out yet;
    /// [`BufferError::Io`].
    pub fn ack(&mut self, id: u64) -> Result<(), BufferError> {
        if self.read.last_read.is_none_or(|last| id > last) {
            return Err(BufferError::AckOutOfRange {
                id,
                last_read: self.read.last_read,
            });
        }
        if id >= self.head_id {
            self.set_head(id + 1);
        }
        match self.config.fsync {
            FsyncPolicy::Always => self.persist(),
            _ if self.auto_sync => self.sync_if_due(),
            _ => Ok(()),
        }
    }

    /// Under an interval (or `Never`) fsync policy, syncs only when
    /// [`sync_if_due`](Self::sync_if_due) is called, not also in `push`,
    /// `next` and `ack`: for a caller that times syncs itself, so that an
    /// fsync does not stall it at a moment that matters (a sink syncs
    /// while its request is on the wire). The caller must call
    /// `sync_if_due` at least every interval.
    pub fn sync_on_call_only(&mut self) {
        self.auto_sync = false;
    }

    /// Makes the next [`next`](Self::next) start again at the oldest
    /// unacknowledged record, as after a restart (for a sink whose peer went
    /// away before acknowledging).
    pub fn rewind(&mut self) {
        self.read.segment = self.segments.front().map_or(0, |s| s.first_id);
        self.read.scanner = None;
        // `head_id` itself, not one before: every id below it was
        // acknowledged (or dropped) and is never handed out again.
        self.read.expected = self.head_id;
        self.read.damaged_until = 0;
        self.read.last_read = self.head_id.checked_sub(1);
        self.in_flight.clear();
    }

    /// The oldest id still wanted: every id below it was acknowledged or
    /// dropped (`when_full = drop_oldest` moves it past the records it
    /// deletes), and is never handed out again.
    pub fn head_id(&self) -> u64 {
        self.head_id
    }

    /// Current size, depth, age and drop counters.
    pub fn stats(&self) -> Stats {
        let records = self
            .next_id
            .saturating_sub(self.head_id)
            .saturating_sub(self.lost.count_in(self.head_id, self.next_id));
        Stats {
            bytes: self.bytes,
            records,
            oldest_unacked_unix_ms: if records == 0 {
                None
            } else {
                self.oldest_unacked_unix_ms
            },
            dropped: self.dropped,
        }
    }

    /// Fsyncs written records, then writes the ledger durably and deletes
    /// fully acknowledged segments, whatever the fsync policy.
    ///
    /// # Errors
    ///
    /// [`BufferError::Io`].
    pub fn sync(&mut self) -> Result<(), BufferError> {
        self.sync_data()?;
        self.checkpoint(true)
    }

    /// Syncs if the fsync policy says one is due. Call it on a timer
    /// (every interval) so an idle buffer does not hold unsynced data.
    ///
    /// # Errors
    ///
    /// [`BufferError::Io`].
    pub fn sync_if_due(&mut self) -> Result<(), BufferError> {
        let (interval, durable) = match self.config.fsync {
            FsyncPolicy::Always => return Ok(()),
            FsyncPolicy::Interval(d) => (d, true),
            FsyncPolicy::Never => (DEFAULT_FSYNC_INTERVAL, false),
        };
        if self.last_sync.elapsed() < interval {
            return Ok(());
        }
        if durable {
            self.sync_data()?;
        }
        self.checkpoint(durable)
    }

    /// Syncs and closes: the clean shutdown. Dropping the buffer instead is
    /// like a crash of the process: nothing pushed is lost, but acks since
    /// the last sync are replayed at the next open.
    ///
    /// # Errors
    ///
    /// [`BufferError::Io`].
    pub fn close(mut self) -> Result<(), BufferError> {
        // A clean stop: the next open needs no skip (unless this run's
        // open still owed one).
        if !self.skip_pending {
            self.reserved_until = self.next_id;
        }
        self.sync()
    }

    /// Reserves the next ids durably before the first of them is handed
    /// out (see `ledger.rs`, "Reservations"). The ledger written keeps what
    /// it said of the records, whose data may not be synced yet.
    fn reserve(&mut self, id: u64) -> Result<(), BufferError> {
        self.reserved_until = id + RESERVATION;
        let reserved = Ledger {
            reserved_until: self.reserved_until,
            ..self.persisted
        };
        reserved.write(&self.config.dir, true)?;
        self.persisted = reserved;
        Ok(())
    }

    fn sync_data(&mut self) -> Result<(), BufferError> {
        if self.unsynced_data {
            let path = self.segments.back().map_or(&self.config.dir, |s| &s.path);
            self.writer
                .sync_data()
                .map_err(|e| io_error("fsync", path, e))?;
            self.unsynced_data = false;
        }
        Ok(())
    }

    /// Writes the ledger if it changed, then deletes the segments it says
    /// are fully acknowledged. Data it describes must be synced first when
    /// `durable`.
    fn checkpoint(&mut self, durable: bool) -> Result<(), BufferError> {
        let now = Ledger {
            head_id: self.head_id,
            next_id: self.next_id,
            reserved_until: self.reserved_until,
        };
        if now != self.persisted {
            now.write(&self.config.dir, durable)?;
            self.persisted = now;
        }
        self.last_sync = Instant::now();
        while self.segments.len() > 1 && self.segments[1].first_id <= self.persisted.head_id {
            self.delete_front()?;
        }
        Ok(())
    }

    fn delete_front(&mut self) -> Result<(), BufferError> {
        if let Some(seg) = self.segments.pop_front() {
            if self.read.segment == seg.first_id {
                self.read.scanner = None;
            }
            fs::remove_file(&seg.path).map_err(|e| io_error("delete", &seg.path, e))?;
            self.bytes -= seg.len;
        }
        Ok(())
    }

    fn set_head(&mut self, head: u64) {
        // Lost and skipped ids are not wanted either.
        let head = self.lost.first_kept_from(head);
        self.head_id = head;
        while self.in_flight.front().is_some_and(|&(id, _)| id < head) {
            self.in_flight.pop_front();
        }
        self.lost.forget_below(head);
        self.read.expected = self.read.expected.max(head);
        // The oldest unacked record is the first in flight; with none in
        // flight it is the next one `next` reads, whose time is known only
        // once read: until then keep the previous value, which is older, so
        // the age errs high rather than reading as zero while records wait.
        if let Some(&(_, ts)) = self.in_flight.front() {
            self.oldest_unacked_unix_ms = Some(ts);
        } else if head >= self.next_id {
            self.oldest_unacked_unix_ms = None;
        }
    }

    /// Makes pushed records and the ledger durable as the fsync policy
    /// allows (under `Never` the ledger is replaced without fsync).
    fn persist(&mut self) -> Result<(), BufferError> {
        let durable = self.config.fsync != FsyncPolicy::Never;
        if durable {
            self.sync_data()?;
        }
        self.checkpoint(durable)
    }

    /// Frees space for a frame of `frame_len` bytes, per `when_full`.
    /// Returns the number of unacknowledged records dropped.
    fn make_room(&mut self, frame_len: u64) -> Result<u64, BufferError> {
        let max_size = self.config.max_size.get();
        let mut dropped = 0;
        while self.bytes + frame_len > max_size {
            // Acknowledged segments go first, whatever the policy.
            if self.segments.len() > 1 && self.segments[1].first_id <= self.head_id {
                self.persist()?;
                continue;
            }
            if self.config.when_full == WhenFull::Block || self.segments.len() < 2 {
                return Err(BufferError::Full {
                    frame_len,
                    used: self.bytes,
                    max_size,
                });
            }
            let (first, next) = (self.segments[0].first_id, self.segments[1].first_id);
            let start = first.max(self.head_id);
            let n = next.saturating_sub(start) - self.lost.count_in(start, next);
            dropped += n;
            self.dropped.add(DropReason::DropOldest, n);
            self.set_head(next);
            // The ledger must say these are gone before their file is.
            self.persist()?;
        }
        Ok(dropped)
    }

    /// Closes the segment being written and starts the next one.
    fn rotate(&mut self) -> Result<(), BufferError> {
        let durable = self.config.fsync != FsyncPolicy::Never;
        if durable {
            self.sync_data()?;
        }
        let seg = Segment::new(&self.config.dir, self.next_id, 0);
        self.writer = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&seg.path)
            .map_err(|e| io_error("create", &seg.path, e))?;
        if durable {
            sync_dir(&self.config.dir)?;
        }
        self.segments.push_back(seg);
        Ok(())
    }
}
