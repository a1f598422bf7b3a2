//! Syslog over TCP, RFC 6587: frames out of a byte stream, without I/O.
//!
//! Each frame's framing is told by its first byte, as rsyslog does: a
//! digit 1-9 starts octet counting (`MSG-LEN SP MSG`, MSG-LEN up to ten
//! digits); anything else, and digits not followed by a space, starts a
//! frame that ends at the next LF (a CR before the LF is removed). Both may
//! alternate on one connection.
//!
//! The buffer never holds more than `max + MAX_HEADER` bytes:
//! - an octet-counted frame longer than `max` gives its first `max` bytes,
//!   flagged truncated, and the rest is skipped as it arrives;
//! - a line with no LF within `max` bytes gives those bytes, flagged
//!   truncated, and the rest of the line is skipped;
//! - at the end of the stream, what is buffered is the last frame: a line
//!   without its LF is whole, an octet-counted frame cut short is truncated.

use bytes::BufMut;

/// The longest octet-counting header: ten digits and a space.
pub(super) const MAX_HEADER: usize = 11;

/// Bytes read at most at once.
const READ_CHUNK: usize = 16 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a frame.
    Start,
    /// Skipping the rest of an oversize octet-counted frame.
    SkipBytes(u64),
    /// Skipping the rest of an oversize line.
    SkipLine,
}

/// One frame: its message bytes, and whether they are cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Frame<'a> {
    pub bytes: &'a [u8],
    pub truncated: bool,
}

#[derive(Debug)]
pub(super) struct Framer {
    buf: Vec<u8>,
    /// Where the unconsumed bytes in `buf` start.
    start: usize,
    max: usize,
    state: State,
}

impl Framer {
    /// A framer for messages of at most `max` bytes.
    pub(super) fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max,
            state: State::Start,
        }
    }

    fn capacity(&self) -> usize {
        self.max + MAX_HEADER
    }

    /// How many more bytes may be buffered now; never 0 when
    /// [`Framer::next_frame`] has just returned `None`.
    pub(super) fn room(&self) -> usize {
        self.capacity().saturating_sub(self.buf.len() - self.start)
    }

    /// Where to read into: at most [`Framer::room`] bytes (and at most a
    /// read chunk), after what is buffered.
    pub(super) fn spare(&mut self) -> impl BufMut + '_ {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let room = self.room().min(READ_CHUNK);
        self.buf.reserve(room);
        (&mut self.buf).limit(room)
    }

    /// Appends bytes, for tests; a connection reads into
    /// [`Framer::spare`].
    #[cfg(test)]
    pub(super) fn push(&mut self, bytes: &[u8]) {
        let mut spare = self.spare();
        spare.put_slice(bytes);
    }

    /// Bytes buffered but not yet framed.
    #[cfg(test)]
    pub(super) fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame, or `None` until more bytes come. With `eof`
    /// (no more bytes will come), what is left is the last frame.
    pub(super) fn next_frame(&mut self, eof: bool) -> Option<Frame<'_>> {
        loop {
            let data = &self.buf[self.start..];
            match self.state {
                State::SkipBytes(n) => {
                    let k = usize::try_from(n).unwrap_or(usize::MAX).min(data.len());
                    self.start += k;
                    let left = n - k as u64;
                    if left > 0 {
                        self.state = State::SkipBytes(left);
                        return None;
                    }
                    self.state = State::Start;
                }
                State::SkipLine => match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.start += i + 1;
                        self.state = State::Start;
                    }
                    None => {
                        self.start += data.len();
                        return None;
                    }
                },
                State::Start => {
                    if data.is_empty() {
                        return None;
                    }
                    return match octet_header(data, eof) {
                        Header::Counted { header, len } => self.counted(header, len, eof),
                        Header::NeedMore => None,
                        Header::Line => self.line(eof),
                    };
                }
            }
        }
    }

    fn counted(&mut self, header: usize, len: u64, eof: bool) -> Option<Frame<'_>> {
        let begin = self.start + header;
        let body = self.buf.len() - begin;
        let (take, skip, truncated) = if len > self.max as u64 {
            (self.max, len - self.max as u64, true)
        } else {
            // At most `max`: fits.
            (usize::try_from(len).unwrap_or(self.max), 0, false)
        };
        if body >= take {
            self.start = begin + take;
            if skip > 0 {
                self.state = State::SkipBytes(skip);
            }
            return Some(Frame {
                bytes: &self.buf[begin..begin + take],
                truncated,
            });
        }
        if !eof {
            return None;
        }
        self.start = self.buf.len();
        Some(Frame {
            bytes: &self.buf[begin..],
            truncated: true,
        })
    }

    fn line(&mut self, eof: bool) -> Option<Frame<'_>> {
        let begin = self.start;
        let data = &self.buf[begin..];
        let window = &data[..data.len().min(self.max + 1)];
        if let Some(i) = window.iter().position(|&b| b == b'\n') {
            self.start = begin + i + 1;
            let line = &self.buf[begin..begin + i];
            return Some(Frame {
                bytes: line.strip_suffix(b"\r").unwrap_or(line),
                truncated: false,
            });
        }
        if data.len() > self.max {
            self.start = begin + self.max;
            self.state = State::SkipLine;
            return Some(Frame {
                bytes: &self.buf[begin..begin + self.max],
                truncated: true,
            });
        }
        if !eof {
            return None;
        }
        self.start = self.buf.len();
        Some(Frame {
            bytes: &self.buf[begin..],
            truncated: false,
        })
    }
}

enum Header {
    /// Octet counting: the header's length (digits and space) and MSG-LEN.
    Counted { header: usize, len: u64 },
    /// Too few bytes to tell.
    NeedMore,
    /// LF framing.
    Line,
}

fn octet_header(data: &[u8], eof: bool) -> Header {
    if !matches!(data.first(), Some(b'1'..=b'9')) {
        return Header::Line;
    }
    let digits = data
        .iter()
        .take(MAX_HEADER)
        .take_while(|b| b.is_ascii_digit())
        .count();
    match data.get(digits) {
        Some(b' ') if digits < MAX_HEADER => {
            let len = data[..digits]
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            Header::Counted {
                header: digits + 1,
                len,
            }
        }
        None if digits < MAX_HEADER && !eof => Header::NeedMore,
        _ => Header::Line,
    }
}
