//! One watched file: its handle, identity, offsets and line reader, and how
//! its bytes become records (see `tailer.rs` for the offsets' meaning).

use super::lines::{BatchOut, Line, LineReader, Multiline, Origin, Warnings, to_record};
use super::positions::{FileId, Fingerprint};
use super::tailer::{Settings, TailMetrics};
use iotel_model::Labels;
use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Matched by the include patterns.
    Active,
    /// No longer matched: renamed away, excluded, or deleted.
    Gone { deleted: bool },
}

#[derive(Debug)]
pub(super) struct Watched {
    /// Unique for the tailer's life (identities are reused).
    pub(super) key: u64,
    pub(super) id: FileId,
    /// Where the file is now.
    pub(super) path: PathBuf,
    /// The `filename` label: where the file was first found (or, after a
    /// restart, the path its stored position was recorded under).
    pub(super) name: String,
    pub(super) labels: Labels,
    pub(super) file: File,
    pub(super) fp: Fingerprint,
    pub(super) lines: LineReader,
    pub(super) multiline: Option<Multiline>,
    pub(super) emitted: u64,
    pub(super) committed: u64,
    /// Bumped when the file is read again from elsewhere (truncation, a
    /// rewind), so marks from before no longer commit.
    pub(super) generation: u32,
    pub(super) size: u64,
    pub(super) at_eof: bool,
    pub(super) last_growth: Instant,
    pub(super) state: State,
    /// Read to its end for good; released once `committed == emitted`.
    pub(super) finished: bool,
    /// A renamed predecessor at the same path, to be read to its end first.
    pub(super) waits_for: Option<u64>,
    /// The last stat or read of it failed (logged once, counted each time).
    pub(super) read_failed: bool,
    /// This round read it up to its size: its successor may follow in the
    /// same round (its bytes come after it in the round buffer).
    pub(super) read_to_end: bool,
    pub(super) warnings: Warnings,
}

/// Bytes of one file in the round buffer: `buf[start..end]` is what the
/// file holds at `offset`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segment {
    pub(super) idx: usize,
    pub(super) offset: u64,
    pub(super) start: usize,
    pub(super) end: usize,
}

impl Watched {
    /// Splits `data`, the bytes at the line reader's offset, into records;
    /// returns how many bytes were consumed (fewer when `out` filled up).
    pub(super) fn split(
        &mut self,
        data: &[u8],
        s: &Settings,
        m: &TailMetrics,
        ts: i64,
        now: Instant,
        out: &mut BatchOut,
    ) -> usize {
        let Watched {
            name,
            labels,
            lines,
            multiline,
            emitted,
            warnings,
            ..
        } = self;
        let origin = Origin {
            name,
            labels,
            max_line_bytes: s.max_line_bytes,
        };
        let mut emit = |line: Line<'_>| {
            *emitted = line.end;
            out.push(to_record(line, ts, origin, &m.lines, warnings, now))
        };
        match multiline {
            Some(ml) => lines.feed(data, &mut |l| ml.push(l, now, &mut emit)),
            None => lines.feed(data, &mut emit),
        }
    }

    /// At the end of what the file holds: hands on a multiline record whose
    /// timeout passed, and finishes a file that is gone for good (deleted,
    /// or renamed away and quiet for `rotate_wait`), with its last line
    /// even without a newline.
    pub(super) fn end_of_data(
        &mut self,
        s: &Settings,
        m: &TailMetrics,
        ts: i64,
        now: Instant,
        out: &mut BatchOut,
    ) {
        let gone_for_good = match self.state {
            State::Active => false,
            State::Gone { deleted } => {
                deleted || now.saturating_duration_since(self.last_growth) >= s.rotate_wait
            }
        };
        let Watched {
            name,
            labels,
            lines,
            multiline,
            emitted,
            warnings,
            finished,
            ..
        } = self;
        let origin = Origin {
            name,
            labels,
            max_line_bytes: s.max_line_bytes,
        };
        let mut emit = |line: Line<'_>| {
            *emitted = line.end;
            out.push(to_record(line, ts, origin, &m.lines, warnings, now))
        };
        if let Some(ml) = multiline.as_mut() {
            let _ = ml.flush_due(now, &mut emit);
        }
        if gone_for_good {
            match multiline {
                Some(ml) => {
                    lines.finish(&mut |l| ml.push(l, now, &mut emit));
                    let _ = ml.flush(&mut emit);
                }
                None => lines.finish(&mut emit),
            }
            *finished = true;
            tracing::info!(
                "{name} is read to its end; closing it once its records are acknowledged"
            );
        }
    }
}
