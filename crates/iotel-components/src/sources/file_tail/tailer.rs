//! The tailer: finds files, reads them into batches, follows rotation and
//! keeps each file's positions. Plain synchronous code: the source runs the
//! I/O half of each round ([`Tailer::read_round`]) on the blocking pool and
//! the splitting half ([`Tailer::take_batch`]) on the runtime's thread (see
//! `source.rs`); tests drive it directly.
//!
//! Each watched file has three offsets, in this order:
//! `committed ≤ emitted ≤ read`. `read` is how far the line reader has
//! consumed (it may hold a partial line or multiline lines), `emitted` is
//! the end of the last record put in a batch, `committed` the end of the
//! last record whose batch was acknowledged — the offset stored in the
//! positions file. A failed acknowledgement sets every file back to
//! `committed` ([`Tailer::rewind`]).
//!
//! Rotation:
//! - rename + create: the renamed file is read to its end and kept open for
//!   `rotate_wait` after it last grew (the writer may not have reopened
//!   yet), then finished; the new file at the path is read from its start,
//!   only once the renamed one was read to its end, so the lines of the
//!   path stay in order. A renamed file that still matches `include` stays
//!   watched under its new name.
//! - copytruncate: a file shorter than what was read, or whose first bytes
//!   changed, is read again from its start.
//! - deleted while open: read to its end, finished.
//!
//! A finished file is released (closed, its position dropped) once all its
//! records are acknowledged, so a failed batch can still be read again.

use super::lines::{BatchOut, LineCounters, LineReader, Multiline, MultilineRule, Warnings};
use super::positions::{FileId, Fingerprint, Position};
use super::watched::{Segment, State, Watched};
use iotel_engine::{ComponentMetrics, Counter, Gauge};
use iotel_model::{Labels, LogRecord, now_unix_ns};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The round buffer's size: `batch_max_bytes`, within these bounds. One
/// buffer for every file, so many files cost no more memory than one;
/// large, so a busy file costs few system calls.
const MIN_ROUND_BUFFER: usize = 16 * 1024;
const MAX_ROUND_BUFFER: usize = 1 << 20;

/// Where to start in a file with no stored position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

/// What the tailer does, from a validated config.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Glob patterns, absolute.
    pub include: Vec<String>,
    pub exclude: Vec<glob::Pattern>,
    pub read_from: ReadFrom,
    pub max_line_bytes: usize,
    pub multiline: Option<MultilineRule>,
    /// Static labels; `filename` is added per file.
    pub labels: Labels,
    pub batch_max_lines: usize,
    pub batch_max_bytes: usize,
    pub glob_interval: Duration,
    pub rotate_wait: Duration,
}

/// The tailer's own metrics.
#[derive(Debug, Clone)]
pub(crate) struct TailMetrics {
    files: Gauge,
    read_bytes: Counter,
    renamed: Counter,
    copytruncated: Counter,
    pub(super) lines: LineCounters,
    component: ComponentMetrics,
}

impl TailMetrics {
    pub fn new(metrics: &ComponentMetrics) -> Self {
        let r = metrics.registry();
        let id = metrics.id();
        let rotations = |kind| {
            r.counter(
                "iotel_file_tail_rotations_total",
                "Rotations a file_tail source followed, by kind (rename, copytruncate).",
                &[("component_id", id), ("kind", kind)],
            )
        };
        Self {
            files: r.gauge(
                "iotel_file_tail_files_watched",
                "Files a file_tail source has open.",
                &[("component_id", id)],
            ),
            read_bytes: r.counter(
                "iotel_file_tail_read_bytes_total",
                "Bytes a file_tail source read from its files.",
                &[("component_id", id)],
            ),
            renamed: rotations("rename"),
            copytruncated: rotations("copytruncate"),
            lines: LineCounters::new(metrics),
            component: metrics.clone(),
        }
    }
}

/// A batch's end in each file it read from.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint(Vec<Mark>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    key: u64,
    generation: u32,
    offset: u64,
}

/// Records read by one [`Tailer::next_batch`], and where they end.
#[derive(Debug)]
pub(crate) struct Batch {
    pub records: Vec<LogRecord>,
    pub checkpoint: Checkpoint,
    /// The batch filled up: more is waiting to be read now.
    pub full: bool,
}

/// Finds, reads and follows files. See the module docs.
#[derive(Debug)]
pub(crate) struct Tailer {
    s: Settings,
    m: TailMetrics,
    files: Vec<Watched>,
    next_key: u64,
    /// Positions loaded at start, claimed by the first scan.
    stored: HashMap<FileId, Position>,
    scanned_once: bool,
    last_scan: Option<Instant>,
    /// What a round read, in `segments`; allocated once, here.
    buf: Vec<u8>,
    segments: Vec<Segment>,
    /// The round buffer filled up: more is waiting to be read.
    round_filled: bool,
    /// Each file's `emitted` before a batch, to see which it reached.
    emitted_before: Vec<u64>,
    /// Where the next round of reads starts, so every file gets its turn.
    next_start: usize,
    /// Errors already logged (one line per path and kind, not per poll).
    reported: HashSet<String>,
    /// Positions changed since they were last taken.
    dirty: bool,
}

impl Tailer {
    pub fn new(s: Settings, m: TailMetrics, stored: Vec<Position>) -> Self {
        let round_buffer = s.batch_max_bytes.clamp(MIN_ROUND_BUFFER, MAX_ROUND_BUFFER);
        Self {
            s,
            m,
            files: Vec::new(),
            next_key: 0,
            stored: stored.into_iter().map(|p| (p.id(), p)).collect(),
            scanned_once: false,
            last_scan: None,
            buf: vec![0; round_buffer],
            segments: Vec::with_capacity(64),
            round_filled: false,
            emitted_before: Vec::new(),
            next_start: 0,
            reported: HashSet::new(),
            dirty: false,
        }
    }

    /// [`read_round`](Self::read_round) then
    /// [`take_batch`](Self::take_batch), on one thread (for tests).
    #[cfg(test)]
    pub fn next_batch(&mut self, now: Instant) -> Batch {
        self.read_round(now);
        self.take_batch(now)
    }

    /// The I/O half of a round, run on the blocking pool: looks for files
    /// when a scan is due, checks each file for truncation, and reads new
    /// bytes into the round buffer, files in turn, until it is full. It
    /// allocates nothing per line: records are made by
    /// [`take_batch`](Self::take_batch) on the runtime's thread, so their
    /// memory comes from that thread's allocator arena and is not spread
    /// over two.
    pub fn read_round(&mut self, now: Instant) {
        if self
            .last_scan
            .is_none_or(|t| now.saturating_duration_since(t) >= self.s.glob_interval)
        {
            self.scan(now);
        }
        self.segments.clear();
        self.round_filled = false;
        for w in &mut self.files {
            w.read_to_end = false;
        }
        let mut used = 0;
        let n = self.files.len();
        for i in 0..n {
            let idx = (self.next_start + i) % n;
            if !self.check_file(idx, now) {
                continue;
            }
            used = self.read_file(idx, used);
            if used == self.buf.len() {
                self.round_filled = true;
                self.next_start = idx + 1;
                break;
            }
        }
    }

    /// The CPU half of a round, on the runtime's thread: splits what
    /// [`read_round`](Self::read_round) read into records, up to the batch
    /// limits (bytes left over are read again next round), hands on
    /// multiline records whose timeout passed, and finishes files that are
    /// gone and read to their end.
    pub fn take_batch(&mut self, now: Instant) -> Batch {
        let ts = now_unix_ns();
        let mut out = BatchOut::new(self.s.batch_max_lines, self.s.batch_max_bytes);
        self.emitted_before.clear();
        self.emitted_before
            .extend(self.files.iter().map(|w| w.emitted));
        let Tailer {
            s,
            m,
            files,
            buf,
            segments,
            ..
        } = self;
        for seg in segments.iter() {
            let w = &mut files[seg.idx];
            // After a segment cut short by the batch limit, the file's
            // later segments wait for the next round.
            if out.is_full() || w.lines.offset() != seg.offset {
                continue;
            }
            let consumed = w.split(&buf[seg.start..seg.end], s, m, ts, now, &mut out);
            m.read_bytes.add(consumed as u64);
        }
        for w in files.iter_mut().filter(|w| !w.finished) {
            w.at_eof = !w.read_failed && w.lines.offset() >= w.size;
            if w.at_eof {
                w.end_of_data(s, m, ts, now, &mut out);
            }
        }
        let mut checkpoint = Checkpoint::default();
        for (w, before) in files.iter().zip(&self.emitted_before) {
            if w.emitted != *before {
                checkpoint.0.push(Mark {
                    key: w.key,
                    generation: w.generation,
                    offset: w.emitted,
                });
            }
        }
        self.release_finished();
        Batch {
            full: self.round_filled || out.is_full(),
            records: out.take(),
            checkpoint,
        }
    }

    /// The batch with `checkpoint` was acknowledged.
    pub fn commit(&mut self, checkpoint: &Checkpoint) {
        for mark in &checkpoint.0 {
            if let Some(w) = self.files.iter_mut().find(|w| w.key == mark.key)
                && w.generation == mark.generation
                && mark.offset > w.committed
            {
                w.committed = mark.offset;
                self.dirty = true;
            }
        }
    }

    /// A batch was not acknowledged: every file goes back to its committed
    /// offset, and what follows it is read again.
    pub fn rewind(&mut self) {
        self.segments.clear();
        for w in &mut self.files {
            w.generation += 1;
            w.lines.reset(w.committed);
            if let Some(m) = &mut w.multiline {
                m.reset();
            }
            w.emitted = w.committed;
            w.at_eof = false;
            w.finished = false;
        }
    }

    /// Every watched file's committed position.
    pub fn positions(&self) -> Vec<Position> {
        self.files
            .iter()
            .map(|w| Position::new(&w.path, w.id, w.committed, w.fp))
            .collect()
    }

    /// The positions, when they changed since the last call.
    pub fn positions_if_changed(&mut self) -> Option<Vec<Position>> {
        std::mem::take(&mut self.dirty).then(|| self.positions())
    }

    /// Makes the next [`positions_if_changed`](Self::positions_if_changed)
    /// return the positions (a write of them failed).
    pub fn mark_changed(&mut self) {
        self.dirty = true;
    }

    /// How many files are open.
    #[cfg(test)]
    pub fn watched(&self) -> usize {
        self.files.len()
    }

    fn report_once(&mut self, key: String, message: impl FnOnce() -> String) {
        if self.reported.insert(key) {
            tracing::warn!(component = self.m.component.id(), "{}", message());
        }
    }

    /// Expands the include patterns: each matching regular file once (the
    /// first path found for an identity), in pattern order.
    fn expand(&mut self) -> Vec<(PathBuf, FileId)> {
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        for pattern in self.s.include.clone() {
            let paths = match glob::glob(&pattern) {
                Ok(p) => p,
                Err(e) => {
                    self.report_once(format!("pattern {pattern}"), || {
                        format!("include pattern {pattern:?}: {e}")
                    });
                    continue;
                }
            };
            for entry in paths {
                let path = match entry {
                    Ok(p) => p,
                    Err(e) => {
                        self.m.component.error("glob_failed");
                        self.report_once(format!("glob {}", e.path().display()), || {
                            format!(
                                "cannot look for files in {}: {}",
                                e.path().display(),
                                e.error()
                            )
                        });
                        continue;
                    }
                };
                if self.s.exclude.iter().any(|x| x.matches_path(&path)) {
                    continue;
                }
                // Gone between listing and now, or not a regular file.
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if meta.is_file() && seen.insert(FileId::of(&meta)) {
                    found.push((path, FileId::of(&meta)));
                }
            }
        }
        found
    }

    fn scan(&mut self, now: Instant) {
        self.last_scan = Some(now);
        let found = self.expand();
        let by_id: HashMap<FileId, &PathBuf> = found.iter().map(|(p, id)| (*id, p)).collect();
        for w in &mut self.files {
            if w.state != State::Active {
                continue;
            }
            match by_id.get(&w.id) {
                Some(&p) if *p == w.path => {}
                Some(&p) => {
                    self.m.renamed.inc();
                    tracing::info!(
                        "{} was renamed to {} (rotated); still watching it",
                        w.path.display(),
                        p.display()
                    );
                    w.path = p.clone();
                    w.at_eof = false;
                    self.dirty = true;
                }
                None => {
                    let deleted = w.file.metadata().map_or(true, |m| m.nlink() == 0);
                    w.state = State::Gone { deleted };
                    w.at_eof = false;
                    w.last_growth = now;
                    if deleted {
                        tracing::info!(
                            "{} was deleted while open; reading it to its end, then releasing it",
                            w.path.display()
                        );
                    } else {
                        self.m.renamed.inc();
                        tracing::info!(
                            "{} was renamed away (rotated) or excluded; reading it to its end",
                            w.path.display()
                        );
                    }
                }
            }
        }
        let mut new: Vec<(Watched, bool)> = Vec::new();
        for (path, id) in found {
            if !self.files.iter().any(|w| w.id == id)
                && let Some(opened) = self.open(&path, now)
            {
                new.push(opened);
            }
        }
        // Files resumed from a stored position first, so a new file at the
        // path one of them was recorded under reads after it.
        new.sort_by_key(|(_, resumed)| !resumed);
        for (mut w, _) in new {
            let predecessor = self
                .files
                .iter_mut()
                .filter(|p| p.name == w.name && (p.path != w.path || p.state != State::Active))
                .max_by_key(|p| p.key);
            if let Some(p) = predecessor {
                w.waits_for = Some(p.key);
                p.at_eof = false;
            }
            self.files.push(w);
        }
        if !self.scanned_once {
            self.scanned_once = true;
            // What the first scan did not claim belongs to files that are
            // gone.
            self.stored.clear();
        }
        self.m.files.set(self.files.len() as f64);
    }

    /// Opens a newly found file and decides where to start: its stored
    /// position when identity and fingerprint agree, else `read_from` for
    /// files present at start and the beginning for files that appear
    /// later. `true` with a file resumed from a stored position.
    fn open(&mut self, path: &Path, now: Instant) -> Option<(Watched, bool)> {
        let opened = File::open(path).and_then(|f| f.metadata().map(|m| (f, m)));
        let (file, meta) = match opened {
            Ok(fm) => fm,
            Err(e) => {
                self.m.component.error("open_failed");
                self.report_once(format!("open {}", path.display()), || {
                    format!("cannot open {}: {e}", path.display())
                });
                return None;
            }
        };
        let id = FileId::of(&meta);
        if !meta.is_file() || self.files.iter().any(|w| w.id == id) {
            return None;
        }
        let size = meta.len();
        let fp = Fingerprint::read(&file, size).unwrap_or_default();
        let stored = self.stored.remove(&id).filter(|p| {
            p.fingerprint()
                .is_some_and(|fp| fp.matches(&file, size).unwrap_or(false))
        });
        let (offset, name, resumed) = match stored {
            Some(p) if p.offset > size => {
                self.m.copytruncated.inc();
                tracing::warn!(
                    "{} is shorter ({size} bytes) than its stored position ({}): it was \
                     truncated while iotel was stopped; reading it from the start",
                    path.display(),
                    p.offset
                );
                (0, p.path, true)
            }
            Some(p) => (p.offset, p.path, true),
            None if !self.scanned_once && self.s.read_from == ReadFrom::End => {
                (size, path.display().to_string(), false)
            }
            None => (0, path.display().to_string(), false),
        };
        tracing::info!(
            "watching {} from byte {offset}{}",
            path.display(),
            if resumed {
                " (its stored position)"
            } else {
                ""
            }
        );
        self.reported.remove(&format!("open {}", path.display()));
        let key = self.next_key;
        self.next_key += 1;
        self.dirty = true;
        let w = Watched {
            key,
            id,
            path: path.to_path_buf(),
            labels: self.s.labels.with("filename", &name),
            name,
            file,
            fp,
            lines: LineReader::new(self.s.max_line_bytes, offset),
            multiline: self
                .s
                .multiline
                .clone()
                .map(|rule| Multiline::new(rule, self.s.max_line_bytes)),
            emitted: offset,
            committed: offset,
            generation: 0,
            size,
            at_eof: false,
            last_growth: now,
            state: State::Active,
            finished: false,
            waits_for: None,
            read_failed: false,
            read_to_end: false,
            warnings: Warnings::default(),
        };
        Some((w, resumed))
    }

    /// Stats a file before it is read: truncation, fingerprint, growth.
    /// `false` when it is not to be read this round.
    fn check_file(&mut self, idx: usize, now: Instant) -> bool {
        if let Some(pred) = self.files[idx].waits_for {
            if self
                .files
                .iter()
                .any(|p| p.key == pred && !p.at_eof && !p.read_to_end && !p.finished)
            {
                return false;
            }
            self.files[idx].waits_for = None;
        }
        let Tailer { m, files, .. } = self;
        let w = &mut files[idx];
        if w.finished {
            return false;
        }
        let size = match w.file.metadata() {
            Ok(meta) => meta.len(),
            Err(e) => {
                w.read_failed = true;
                m.component.error("read_failed");
                let (path, key) = (w.path.display().to_string(), format!("stat {}", w.key));
                self.report_once(key, || format!("cannot stat {path}: {e}"));
                return false;
            }
        };
        let mut truncated = size < w.lines.offset();
        if !truncated && size > w.size && w.fp.bytes > 0 {
            // Grown: is its start still what it was?
            truncated = !w.fp.matches(&w.file, size).unwrap_or(true);
        }
        if truncated {
            m.copytruncated.inc();
            tracing::info!(
                "{} was truncated (copytruncate rotation) to {size} bytes after {} were read; \
                 reading it from the start",
                w.path.display(),
                w.lines.offset()
            );
            w.generation += 1;
            w.lines.reset(0);
            if let Some(ml) = &mut w.multiline {
                ml.reset();
            }
            w.emitted = 0;
            w.committed = 0;
            w.fp = Fingerprint::default();
            w.size = 0;
            self.dirty = true;
        }
        if !w.fp.is_full()
            && size > w.fp.bytes
            && let Ok(fp) = Fingerprint::read(&w.file, size)
        {
            w.fp = fp;
            self.dirty = true;
        }
        if size > w.size {
            w.last_growth = now;
        }
        w.size = size;
        w.read_failed = false;
        true
    }

    /// Reads a file's new bytes into the round buffer from `used` on;
    /// returns how much of the buffer is used after.
    fn read_file(&mut self, idx: usize, mut used: usize) -> usize {
        let Tailer {
            m,
            files,
            buf,
            segments,
            ..
        } = self;
        let w = &mut files[idx];
        let mut offset = w.lines.offset();
        let mut error = None;
        while offset < w.size && used < buf.len() {
            let want = usize::try_from(w.size - offset).unwrap_or(usize::MAX);
            let end = buf.len().min(used.saturating_add(want));
            match w.file.read_at(&mut buf[used..end], offset) {
                Ok(0) => break,
                Ok(n) => {
                    segments.push(Segment {
                        idx,
                        offset,
                        start: used,
                        end: used + n,
                    });
                    used += n;
                    offset += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        w.read_to_end = error.is_none() && offset >= w.size;
        if let Some(e) = error {
            w.read_failed = true;
            m.component.error("read_failed");
            let (path, key) = (w.path.display().to_string(), format!("read {}", w.key));
            self.report_once(key, || {
                format!("cannot read {path} at byte offset {offset}: {e}")
            });
        }
        used
    }

    /// Closes finished files whose records are all acknowledged; their
    /// positions are dropped with them.
    fn release_finished(&mut self) {
        let before = self.files.len();
        self.files.retain(|w| {
            let done = w.finished && w.committed >= w.emitted;
            if done {
                tracing::info!("released {}", w.path.display());
            }
            !done
        });
        if self.files.len() != before {
            self.dirty = true;
            self.m.files.set(self.files.len() as f64);
        }
    }
}
