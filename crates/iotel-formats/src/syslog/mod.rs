//! Syslog messages: RFC 5424 and the BSD format of RFC 3164, parsed into a
//! [`Message`] and from there into a model [`LogRecord`].
//!
//! [`parse`] tells the two apart by what follows `<PRI>`: a VERSION (`1`,
//! then a space) means RFC 5424, anything else the BSD format.
//!
//! - **RFC 5424** is parsed strictly, as the RFC's ABNF says: PRI 0-191,
//!   VERSION, TIMESTAMP (RFC 3339 with up to nine fraction digits, `Z` or a
//!   `±hh:mm` offset, or `-`), HOSTNAME (at most 255 printable ASCII
//!   characters), APP-NAME (48), PROCID (128), MSGID (32), each `-` when
//!   absent, STRUCTURED-DATA (`-` or `[SD-ID PARAM="VALUE" ...]...`, with
//!   `\"`, `\\` and `\]` escaped in values; a backslash before any other
//!   character is kept as it is), then a space and MSG. A UTF-8 byte order
//!   mark opening MSG is removed.
//! - **RFC 3164** is parsed leniently, as rsyslog does: a missing `<PRI>`
//!   means `user.notice` (13); the timestamp `Mmm dd hh:mm:ss` (the day may
//!   be space-padded; a year and fraction of a second may follow, and an RFC
//!   3339 timestamp is taken too) is optional; it carries no year and no
//!   offset, so it is taken in [`Options::timezone`] and in the year of
//!   [`Options::received_ns`] — the year before when the message says
//!   December and it is January, the year after when it says January and it
//!   is December. Then HOSTNAME (only after a timestamp; a word that ends in
//!   `:` or holds `[` is the TAG instead), then `TAG[PID]: ` (optional) and
//!   the rest is MSG. The only errors are a malformed `<PRI>` and a date
//!   that does not exist (30 February).
//!
//! In both, MSG that is not valid UTF-8 is kept with U+FFFD in place of the
//! invalid bytes, and trailing line ends (`\n`, `\r`) and NUL bytes, which
//! many senders append, are removed.
//!
//! Errors name the byte offset (from 0, into the message as received) and
//! what was expected there.
//!
//! # As a log record
//!
//! [`Message::into_log_record`] maps severity to the model's
//! ([`severity`]), takes the message's timestamp (or the receive time when
//! it has none) and sets these fields when the message has them:
//!
//! | field | value |
//! |---|---|
//! | `facility` | the facility's keyword: `kern`, `user`, `daemon`, `auth`, `local0`… ([`FACILITY_NAMES`]) |
//! | `syslog_severity` | the severity's keyword, `emerg` … `debug` (the model's severity merges some) |
//! | `hostname`, `app_name`, `procid`, `msgid` | strings |
//! | `version` | the RFC 5424 VERSION, a number (absent for BSD messages) |
//! | `structured_data` | an object per SD-ID with its parameters: `{"exampleSDID@32473": {"iut": "3"}}`; a parameter named twice in one element gets an array of its values |
//!
//! Structured data is a nested object rather than flattened names such as
//! `sd.<id>.<param>`: SD-IDs hold `.` and `@` (`origin`, `meta`,
//! `exampleSDID@32473`), which flattened names could not tell apart from
//! the separators, and the object is what JSON-speaking sinks expect.

mod rfc3164;
mod rfc5424;
#[cfg(test)]
mod tests;

use iotel_model::{LogRecord, Severity};
use jiff::tz::TimeZone;
use serde_json::{Map, Value};

/// What parsing needs besides the bytes.
#[derive(Debug, Clone)]
pub struct Options {
    /// When the message was received, nanoseconds since the Unix epoch: the
    /// year of BSD timestamps is inferred from it.
    pub received_ns: i64,
    /// The zone BSD timestamps (which carry no offset) are taken in.
    pub timezone: TimeZone,
}

/// Which RFC a message followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 5424, with its VERSION.
    Rfc5424 { version: u16 },
    /// RFC 3164, the BSD format.
    Rfc3164,
}

/// One structured-data element: `[id name="value" ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement {
    pub id: String,
    /// In the order written; a name may repeat.
    pub params: Vec<(String, String)>,
}

/// A parsed syslog message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub format: Format,
    /// 0-23.
    pub facility: u8,
    /// 0 (emergency) to 7 (debug).
    pub severity: u8,
    /// `None`: the message has no timestamp (RFC 5424 `-`, a BSD message
    /// without one).
    pub timestamp_ns: Option<i64>,
    pub hostname: Option<String>,
    pub app_name: Option<String>,
    pub procid: Option<String>,
    pub msgid: Option<String>,
    pub structured_data: Vec<SdElement>,
    pub msg: String,
}

/// A message that does not parse: where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {message}")]
pub struct ParseError {
    /// From 0, into the message as received.
    pub offset: usize,
    /// What was expected there (and what was found).
    pub message: String,
}

/// The facility keywords by code, as rsyslog and RFC 5424 name them.
pub const FACILITY_NAMES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// The severity keywords by code.
pub const SEVERITY_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// The model's severity for a syslog severity code: emergency, alert and
/// critical are `Fatal`, error `Error`, warning `Warn`, notice and
/// informational `Info`, debug `Debug`.
pub fn severity(code: u8) -> Severity {
    match code {
        0..=2 => Severity::Fatal,
        3 => Severity::Error,
        4 => Severity::Warn,
        5 | 6 => Severity::Info,
        _ => Severity::Debug,
    }
}

/// Parses one message (one UDP datagram, one TCP frame).
///
/// # Errors
/// A malformed `<PRI>`, anything off the RFC 5424 grammar in a message that
/// declares a VERSION, a date that does not exist, a timestamp outside the
/// years 1678-2262 (what nanoseconds in an `i64` hold).
pub fn parse(input: &[u8], options: &Options) -> Result<Message, ParseError> {
    let mut c = Cursor::new(input);
    let pri = if c.peek() == Some(b'<') {
        Some(c.pri()?)
    } else {
        None
    };
    let (facility, severity) = match pri {
        Some(p) => (p / 8, p % 8),
        // rsyslog's default for a message without PRI: user.notice.
        None => (1, 5),
    };
    match pri.and_then(|_| rfc5424::version(&mut c)) {
        Some(version) => rfc5424::parse(c, facility, severity, version),
        None => rfc3164::parse(c, facility, severity, options),
    }
}

impl Message {
    /// The message as a log record (see the module docs for its fields).
    /// `received_ns` is its time when the message carries none.
    pub fn into_log_record(self, received_ns: i64) -> LogRecord {
        let mut fields = Map::new();
        let facility = FACILITY_NAMES
            .get(usize::from(self.facility))
            .copied()
            .unwrap_or("user");
        fields.insert("facility".into(), Value::from(facility));
        let severity_name = SEVERITY_NAMES
            .get(usize::from(self.severity))
            .copied()
            .unwrap_or("debug");
        fields.insert("syslog_severity".into(), Value::from(severity_name));
        for (name, value) in [
            ("hostname", self.hostname),
            ("app_name", self.app_name),
            ("procid", self.procid),
            ("msgid", self.msgid),
        ] {
            if let Some(v) = value {
                fields.insert(name.into(), Value::String(v));
            }
        }
        if let Format::Rfc5424 { version } = self.format {
            fields.insert("version".into(), Value::from(version));
        }
        if !self.structured_data.is_empty() {
            fields.insert(
                "structured_data".into(),
                Value::Object(structured_data_object(self.structured_data)),
            );
        }
        LogRecord {
            timestamp_ns: self.timestamp_ns.unwrap_or(received_ns),
            labels: iotel_model::Labels::empty(),
            message: self.msg,
            severity: Some(severity(self.severity)),
            fields,
        }
    }
}

/// `{id: {param: value}}`; a repeated parameter gets an array of values, a
/// repeated SD-ID (which RFC 5424 forbids) its parameters merged.
fn structured_data_object(elements: Vec<SdElement>) -> Map<String, Value> {
    let mut out = Map::new();
    for e in elements {
        let entry = out.entry(e.id).or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(params) = entry else {
            continue;
        };
        for (name, value) in e.params {
            match params.get_mut(&name) {
                None => {
                    params.insert(name, Value::String(value));
                }
                Some(Value::Array(values)) => values.push(Value::String(value)),
                Some(first) => {
                    let first = first.take();
                    params.insert(name, Value::Array(vec![first, Value::String(value)]));
                }
            }
        }
    }
    out
}

/// A position in the input, with the helpers both grammars share.
#[derive(Debug, Clone)]
struct Cursor<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self { input, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.input.get(self.pos + ahead).copied()
    }

    fn rest(&self) -> &'a [u8] {
        self.input.get(self.pos..).unwrap_or_default()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    /// An error at the cursor: `expected ..., found ...`.
    fn expected(&self, what: &str) -> ParseError {
        self.expected_at(self.pos, what)
    }

    fn expected_at(&self, offset: usize, what: &str) -> ParseError {
        ParseError {
            offset,
            message: format!(
                "expected {what}, found {}",
                describe(self.input.get(offset))
            ),
        }
    }

    /// Consumes `b` or fails with `expected {what}`.
    fn expect(&mut self, b: u8, what: &str) -> Result<(), ParseError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    /// Consumes exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize, what: &str) -> Result<u32, ParseError> {
        let mut v = 0u32;
        for _ in 0..n {
            match self.peek() {
                Some(d @ b'0'..=b'9') => {
                    v = v * 10 + u32::from(d - b'0');
                    self.pos += 1;
                }
                _ => return Err(self.expected(what)),
            }
        }
        Ok(v)
    }

    /// `<PRIVAL>`: one to three digits, 0-191.
    fn pri(&mut self) -> Result<u8, ParseError> {
        self.expect(b'<', "'<' opening PRI")?;
        let start = self.pos;
        let mut v = 0u32;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            if self.pos - start == 3 {
                return Err(self.expected("'>' closing PRI (PRI is 0-191)"));
            }
            v = v * 10 + u32::from(d - b'0');
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.expected("PRI digits (0-191)"));
        }
        if v > 191 {
            return Err(ParseError {
                offset: start,
                message: format!("expected PRI 0-191, found {v}"),
            });
        }
        self.expect(b'>', "'>' closing PRI")?;
        // At most 191: fits.
        Ok(u8::try_from(v).unwrap_or(191))
    }

    /// The fraction of a second after `.`: one to nine digits, as
    /// nanoseconds.
    fn fraction(&mut self) -> Result<i32, ParseError> {
        let start = self.pos;
        let mut ns = 0i32;
        let mut n = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            if n == 9 {
                return Err(self.expected("at most nine digits of a fraction of a second"));
            }
            ns = ns * 10 + i32::from(d - b'0');
            n += 1;
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.expected("digits of a fraction of a second after '.'"));
        }
        for _ in n..9 {
            ns *= 10;
        }
        Ok(ns)
    }
}

/// What was found at a position, for messages.
fn describe(b: Option<&u8>) -> String {
    match b {
        None => "the end of the message".into(),
        Some(b' ') => "a space".into(),
        Some(&b) if b.is_ascii_graphic() => format!("'{}'", char::from(b)),
        Some(b) => format!("byte 0x{b:02x}"),
    }
}

/// MSG as text: a leading UTF-8 BOM removed, invalid UTF-8 replaced,
/// trailing line ends and NULs removed.
fn message_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b'\n' | b'\r' | 0))
        .map_or(0, |i| i + 1);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// A civil date and time at a UTC offset (seconds), as nanoseconds since the
/// epoch.
fn to_ns(
    c: &Cursor<'_>,
    start: usize,
    (year, month, day): (u32, u32, u32),
    (hour, minute, second, nanos): (u32, u32, u32, i32),
    at: Zone<'_>,
) -> Result<i64, ParseError> {
    let invalid = |what: String| ParseError {
        offset: start,
        message: what,
    };
    let small = |v: u32| i8::try_from(v).unwrap_or(i8::MAX);
    let dt = jiff::civil::DateTime::new(
        i16::try_from(year).unwrap_or(i16::MAX),
        small(month),
        small(day),
        small(hour),
        small(minute),
        small(second),
        nanos,
    )
    .map_err(|_| {
        invalid(format!(
            "expected a valid date and time, found {year:04}-{month:02}-{day:02} \
             {hour:02}:{minute:02}:{second:02}"
        ))
    })?;
    let ts = match at {
        Zone::Offset(seconds) => jiff::tz::Offset::from_seconds(seconds)
            .and_then(|o| o.to_timestamp(dt))
            .map_err(|_| c.expected_at(start, "a UTC offset within ±25:59"))?,
        Zone::Tz(tz) => tz
            .to_ambiguous_timestamp(dt)
            .compatible()
            .map_err(|e| invalid(format!("expected a time that exists in {tz:?}: {e}")))?,
    };
    i64::try_from(ts.as_nanosecond()).map_err(|_| {
        invalid(format!(
            "expected a timestamp between the years 1678 and 2262, found the year {year}"
        ))
    })
}

/// Where a civil time is: at a fixed offset or in a zone.
#[derive(Debug, Clone, Copy)]
enum Zone<'a> {
    Offset(i32),
    Tz(&'a TimeZone),
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` at the cursor (RFC 3339, `T` and
/// `Z` in either case).
fn rfc3339(c: &mut Cursor<'_>) -> Result<i64, ParseError> {
    let start = c.pos;
    let year = c.digits(4, "a four-digit year")?;
    c.expect(b'-', "'-' after the year")?;
    let month = c.digits(2, "a two-digit month")?;
    c.expect(b'-', "'-' after the month")?;
    let day = c.digits(2, "a two-digit day")?;
    match c.peek() {
        Some(b'T' | b't') => c.pos += 1,
        _ => return Err(c.expected("'T' between date and time")),
    }
    let hour = c.digits(2, "a two-digit hour")?;
    c.expect(b':', "':' after the hour")?;
    let minute = c.digits(2, "two-digit minutes")?;
    c.expect(b':', "':' after the minutes")?;
    let second = c.digits(2, "two-digit seconds")?;
    let nanos = if c.peek() == Some(b'.') {
        c.pos += 1;
        c.fraction()?
    } else {
        0
    };
    let offset = match c.peek() {
        Some(b'Z' | b'z') => {
            c.pos += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            c.pos += 1;
            let h = c.digits(2, "two-digit offset hours")?;
            c.expect(b':', "':' in the UTC offset")?;
            let m = c.digits(2, "two-digit offset minutes")?;
            if m > 59 {
                return Err(c.expected_at(c.pos - 2, "offset minutes 00-59"));
            }
            let s = i32::try_from(h * 3600 + m * 60).unwrap_or(i32::MAX);
            if sign == b'-' { -s } else { s }
        }
        _ => return Err(c.expected("'Z' or a UTC offset such as +02:00")),
    };
    to_ns(
        c,
        start,
        (year, month, day),
        (hour, minute, second, nanos),
        Zone::Offset(offset),
    )
}
