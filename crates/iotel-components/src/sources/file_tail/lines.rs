//! Lines out of a byte stream, and records out of lines — no I/O, shared by
//! `file_tail` and `stdin`.
//!
//! [`LineReader`] is fed whatever a read returned and calls back once per
//! complete line. It never holds more than `max_line_bytes` of a line: a
//! longer line keeps its first `max_line_bytes` (cut back to a character
//! boundary) and the rest is skipped as it streams past, so a 10 MB line
//! costs at most `max_line_bytes` of memory. A line ends at `\n`; a `\r`
//! before it is dropped (CRLF). A line that is not yet terminated waits for
//! its newline, however many feeds that takes.
//!
//! Every line knows the byte offsets where it starts and just past its
//! newline. A file's position is the end of the last record handed on, so a
//! restart reads again exactly what was not handed on: a partial last line,
//! and the lines a [`Multiline`] still holds.
//!
//! [`to_record`] turns a line into a [`LogRecord`]: invalid UTF-8 is
//! replaced with U+FFFD and flagged, a truncated line flagged, both counted
//! and reported with the source and the byte offset.

use iotel_engine::Counter;
use iotel_model::{Labels, LogRecord};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// A line (or a joined multiline record) and where it was in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line<'a> {
    /// The text without its `\n` / `\r\n`, at most `max_line_bytes` long.
    pub bytes: &'a [u8],
    /// Offset of its first byte.
    pub start: u64,
    /// Offset just past its newline: where reading resumes after it.
    pub end: u64,
    /// Its full length without the terminator; more than `bytes.len()`
    /// when it was truncated.
    pub len: u64,
}

impl Line<'_> {
    pub fn truncated(&self) -> bool {
        self.len > self.bytes.len() as u64
    }
}

/// A partial line's buffer above this size is given back once the line is
/// handed on, so one long line does not keep its memory for good.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Splits a byte stream into lines, holding at most `max_line_bytes` of one.
#[derive(Debug)]
pub(crate) struct LineReader {
    max: usize,
    /// The first bytes (up to `max`) of the current line while it spans
    /// feeds.
    partial: Vec<u8>,
    /// The current line's length so far, including what was skipped.
    len: u64,
    /// Whether the last byte of the current line so far is `\r`.
    last_cr: bool,
    /// Offset of the current line's first byte.
    start: u64,
    /// Offset of the next byte to be fed.
    offset: u64,
}

impl LineReader {
    pub fn new(max_line_bytes: usize, offset: u64) -> Self {
        Self {
            max: max_line_bytes.max(1),
            partial: Vec::new(),
            len: 0,
            last_cr: false,
            start: offset,
            offset,
        }
    }

    /// Forgets the current line and goes on from `offset`.
    pub fn reset(&mut self, offset: u64) {
        self.clear_line();
        self.start = offset;
        self.offset = offset;
    }

    /// Offset of the next byte to be fed.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether part of a line was fed and awaits its newline.
    #[cfg(test)]
    pub fn has_partial(&self) -> bool {
        self.len > 0
    }

    /// Splits `data` — the bytes at [`offset`](Self::offset) — calling
    /// `emit` for each complete line, and stops early after a line for
    /// which `emit` breaks. Returns how many bytes were consumed: all of
    /// `data`, or up to the end of the line after which `emit` broke.
    pub fn feed(
        &mut self,
        data: &[u8],
        emit: &mut impl FnMut(Line<'_>) -> ControlFlow<()>,
    ) -> usize {
        let mut pos = 0;
        while let Some(i) = memchr::memchr(b'\n', &data[pos..]) {
            let chunk = &data[pos..pos + i];
            pos += i + 1;
            let end = self.offset + pos as u64;
            let flow = if self.len == 0 {
                // The whole line is in `data`: handed on without a copy.
                let full = chunk.strip_suffix(b"\r").unwrap_or(chunk);
                let line = Line {
                    bytes: clip(full, self.max),
                    start: self.start,
                    end,
                    len: full.len() as u64,
                };
                self.start = end;
                emit(line)
            } else {
                self.push(chunk);
                self.emit_current(end, emit)
            };
            if flow.is_break() {
                self.offset += pos as u64;
                return pos;
            }
        }
        self.push(&data[pos..]);
        self.offset += data.len() as u64;
        data.len()
    }

    /// Hands on the unterminated last line, for a stream that has ended.
    pub fn finish(&mut self, emit: &mut impl FnMut(Line<'_>) -> ControlFlow<()>) {
        if self.len > 0 {
            let _ = self.emit_current(self.offset, emit);
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let Some(&last) = bytes.last() else { return };
        let take = (self.max - self.partial.len()).min(bytes.len());
        self.partial.extend_from_slice(&bytes[..take]);
        self.len += bytes.len() as u64;
        self.last_cr = last == b'\r';
    }

    fn emit_current(
        &mut self,
        end: u64,
        emit: &mut impl FnMut(Line<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let mut len = self.len;
        let mut kept = self.partial.len();
        if self.last_cr {
            // The `\r` is in `partial` unless bytes were skipped after it.
            if kept as u64 == len {
                kept -= 1;
            }
            len -= 1;
        }
        let kept_bytes = &self.partial[..kept];
        let bytes = if (kept as u64) < len {
            trim_partial_char(kept_bytes)
        } else {
            kept_bytes
        };
        let flow = emit(Line {
            bytes,
            start: self.start,
            end,
            len,
        });
        self.clear_line();
        self.start = end;
        flow
    }

    fn clear_line(&mut self) {
        self.partial.clear();
        if self.partial.capacity() > KEEP_CAPACITY {
            self.partial = Vec::new();
        }
        self.len = 0;
        self.last_cr = false;
    }
}

/// The first `max` bytes of a line, cut back to a character boundary when
/// they end inside one.
fn clip(line: &[u8], max: usize) -> &[u8] {
    if line.len() <= max {
        line
    } else {
        trim_partial_char(&line[..max])
    }
}

/// `bytes` without a UTF-8 sequence cut off at its end (a truncation's
/// leftover: the first one to three bytes of a character); other bytes,
/// valid or not, are left as they are.
fn trim_partial_char(bytes: &[u8]) -> &[u8] {
    for k in 1..=bytes.len().min(3) {
        let tail = &bytes[bytes.len() - k..];
        if let Err(e) = std::str::from_utf8(tail)
            && e.valid_up_to() == 0
            && e.error_len().is_none()
        {
            return &bytes[..bytes.len() - k];
        }
    }
    bytes
}

/// How lines are joined into one record.
#[derive(Debug, Clone)]
pub(crate) struct MultilineRule {
    /// A line matching this starts a new record; any other line continues
    /// the current one.
    pub start: regex::bytes::Regex,
    /// A record is handed on when no line was added to it for this long.
    pub timeout: Duration,
    /// A record is handed on once it has this many lines.
    pub max_lines: usize,
}

/// Joins lines into records: a line matching the start pattern begins a new
/// record, the lines after it that do not match are added to it with `\n`
/// between them. The joined text is held to `max_bytes` like a single line
/// (the rest is skipped and the record flagged truncated), so memory stays
/// bounded whatever `max_lines` says.
#[derive(Debug)]
pub(crate) struct Multiline {
    rule: MultilineRule,
    max_bytes: usize,
    text: Vec<u8>,
    lines: usize,
    /// The record's full length, joins and skipped bytes included.
    len: u64,
    start: u64,
    end: u64,
    last_line_at: Option<Instant>,
}

impl Multiline {
    pub fn new(rule: MultilineRule, max_bytes: usize) -> Self {
        Self {
            rule,
            max_bytes: max_bytes.max(1),
            text: Vec::new(),
            lines: 0,
            len: 0,
            start: 0,
            end: 0,
            last_line_at: None,
        }
    }

    /// Whether lines are held, waiting for the record to end.
    pub fn is_pending(&self) -> bool {
        self.lines > 0
    }

    /// Forgets the record being joined (the stream was rewound).
    pub fn reset(&mut self) {
        self.clear();
    }

    /// Takes one line; a line that starts a new record first hands on the
    /// one held. Breaks when `emit` did.
    pub fn push(
        &mut self,
        line: Line<'_>,
        now: Instant,
        emit: &mut impl FnMut(Line<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let mut flow = ControlFlow::Continue(());
        if self.lines > 0 && self.rule.start.is_match(line.bytes) {
            flow = self.flush(emit);
        }
        self.append(line, now);
        if self.lines >= self.rule.max_lines && self.flush(emit).is_break() {
            flow = ControlFlow::Break(());
        }
        flow
    }

    /// Hands on the record held when its last line is `timeout` old.
    pub fn flush_due(
        &mut self,
        now: Instant,
        emit: &mut impl FnMut(Line<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        match self.last_line_at {
            Some(t) if now.saturating_duration_since(t) >= self.rule.timeout => self.flush(emit),
            _ => ControlFlow::Continue(()),
        }
    }

    /// Hands on the record held, if any.
    pub fn flush(&mut self, emit: &mut impl FnMut(Line<'_>) -> ControlFlow<()>) -> ControlFlow<()> {
        if self.lines == 0 {
            return ControlFlow::Continue(());
        }
        let flow = emit(Line {
            bytes: &self.text,
            start: self.start,
            end: self.end,
            len: self.len,
        });
        self.clear();
        flow
    }

    fn append(&mut self, line: Line<'_>, now: Instant) {
        if self.lines == 0 {
            self.start = line.start;
        } else {
            if self.text.len() < self.max_bytes {
                self.text.push(b'\n');
            }
            self.len += 1;
        }
        let room = self.max_bytes.saturating_sub(self.text.len());
        self.text.extend_from_slice(clip(line.bytes, room));
        self.len += line.len;
        self.end = line.end;
        self.lines += 1;
        self.last_line_at = Some(now);
    }

    fn clear(&mut self) {
        self.text.clear();
        if self.text.capacity() > KEEP_CAPACITY {
            self.text = Vec::new();
        }
        self.lines = 0;
        self.len = 0;
        self.last_line_at = None;
    }
}

/// What happens to bad lines: counted here, reported by [`Warnings`].
#[derive(Debug, Clone)]
pub(crate) struct LineCounters {
    /// `iotel_component_errors_total{error_code="line_truncated"}`.
    pub truncated: Counter,
    /// `iotel_component_errors_total{error_code="invalid_utf8"}`.
    pub invalid_utf8: Counter,
}

impl LineCounters {
    pub fn new(metrics: &iotel_engine::ComponentMetrics) -> Self {
        Self {
            truncated: metrics.errors("line_truncated"),
            invalid_utf8: metrics.errors("invalid_utf8"),
        }
    }
}

/// One warning per kind right away, then at most one per this interval
/// with how many were left unsaid: a binary file must not flood the log.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Rate-limited warnings about one source's bad lines.
#[derive(Debug, Default)]
pub(crate) struct Warnings {
    truncated: WarnState,
    invalid_utf8: WarnState,
}

#[derive(Debug, Default)]
struct WarnState {
    last: Option<Instant>,
    unsaid: u64,
}

impl WarnState {
    /// `Some(unsaid)` when a warning is due now.
    fn due(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < WARN_EVERY)
        {
            self.unsaid += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unsaid))
    }
}

fn more(unsaid: u64) -> String {
    if unsaid == 0 {
        String::new()
    } else {
        format!(" ({unsaid} more such lines since the last warning)")
    }
}

/// Where a record came from, for warnings and labels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a> {
    /// The file's path, or `stdin`.
    pub name: &'a str,
    pub labels: &'a Labels,
    pub max_line_bytes: usize,
}

/// A line as a log record read at `timestamp_ns`: invalid UTF-8 replaced
/// and flagged `invalid_utf8 = true`, a truncated line flagged
/// `truncated = true`; both counted and reported.
pub(crate) fn to_record(
    line: Line<'_>,
    timestamp_ns: i64,
    origin: Origin<'_>,
    counters: &LineCounters,
    warnings: &mut Warnings,
    now: Instant,
) -> LogRecord {
    let (message, invalid) = match std::str::from_utf8(line.bytes) {
        Ok(s) => (s.to_owned(), false),
        Err(_) => (String::from_utf8_lossy(line.bytes).into_owned(), true),
    };
    let mut r = LogRecord::new(timestamp_ns, message);
    r.labels = origin.labels.clone();
    if line.truncated() {
        counters.truncated.inc();
        r.fields.insert("truncated".into(), true.into());
        if let Some(unsaid) = warnings.truncated.due(now) {
            tracing::warn!(
                "{}: the line at byte offset {} is {} bytes, longer than max_line_bytes ({}); \
                 kept its first {} bytes and flagged the record truncated{}",
                origin.name,
                line.start,
                line.len,
                origin.max_line_bytes,
                line.bytes.len(),
                more(unsaid)
            );
        }
    }
    if invalid {
        counters.invalid_utf8.inc();
        r.fields.insert("invalid_utf8".into(), true.into());
        if let Some(unsaid) = warnings.invalid_utf8.due(now) {
            tracing::warn!(
                "{}: the line at byte offset {} is not valid UTF-8 (binary data?); invalid bytes \
                 were replaced with U+FFFD and the record flagged invalid_utf8{}",
                origin.name,
                line.start,
                more(unsaid)
            );
        }
    }
    r
}

/// Room reserved for a batch's first record; it grows from there.
const INITIAL_BATCH_CAPACITY: usize = 128;

/// Records gathered for one batch, up to a number of lines and of bytes.
#[derive(Debug)]
pub(crate) struct BatchOut {
    pub records: Vec<LogRecord>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
}

impl BatchOut {
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        Self {
            records: Vec::new(),
            bytes: 0,
            max_lines: max_lines.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    /// Adds a record; breaks once the batch is full.
    pub fn push(&mut self, r: LogRecord) -> ControlFlow<()> {
        if self.records.capacity() == 0 {
            // An idle poll allocates nothing; a busy one grows from here.
            self.records
                .reserve(self.max_lines.min(INITIAL_BATCH_CAPACITY));
        }
        self.bytes += r.message.len();
        self.records.push(r);
        if self.is_full() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    pub fn is_full(&self) -> bool {
        self.records.len() >= self.max_lines || self.bytes >= self.max_bytes
    }

    /// The records so far, leaving the batch empty. Spare capacity is
    /// given back: the batch may wait in channels downstream for a while.
    pub fn take(&mut self) -> Vec<LogRecord> {
        self.bytes = 0;
        let mut records = std::mem::take(&mut self.records);
        if records.capacity() > records.len() + records.len() / 4 {
            records.shrink_to_fit();
        }
        records
    }
}

#[cfg(test)]
#[path = "lines_tests.rs"]
mod tests;
