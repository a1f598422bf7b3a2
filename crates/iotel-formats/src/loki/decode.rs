//! Push requests back into records: stream labels become the record's
//! labels, the line its message, structured metadata `level` its severity
//! (when it names one) and every other structured metadata pair a string
//! field. Records come out stream by stream, in request order.

use super::{LEVEL, MAX_DECOMPRESSED_BYTES, proto};
use iotel_model::{Labels, LogRecord, Severity};
use prost::Message;
use serde_json::Value;

/// Why a push request could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    #[error("snappy: the body would decompress to {size} bytes, more than the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// `at` names the place: `streams[2].stream`, `streams[0].values[5][0]`.
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
}

impl DecodeError {
    /// A stable code for metric labels (`snappy`, `too_large`, `protobuf`,
    /// `json`, `invalid`).
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Snappy(_) => "snappy",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Protobuf(_) => "protobuf",
            DecodeError::Json(_) => "json",
            DecodeError::Invalid { .. } => "invalid",
        }
    }

    fn invalid(at: String, message: impl Into<String>) -> Self {
        DecodeError::Invalid {
            at,
            message: message.into(),
        }
    }
}

/// Decodes a protobuf push request body (snappy-compressed), decompressing
/// at most [`MAX_DECOMPRESSED_BYTES`].
///
/// # Errors
/// See [`decode_protobuf_with_limit`].
pub fn decode_protobuf(body: &[u8]) -> Result<Vec<LogRecord>, DecodeError> {
    decode_protobuf_with_limit(body, MAX_DECOMPRESSED_BYTES)
}

/// Decodes a protobuf push request body, refusing one that would decompress
/// to more than `max_decompressed_bytes`.
///
/// # Errors
/// A body that is not snappy, would decompress past the limit, is not a
/// `PushRequest`, has a stream selector that does not parse, or a timestamp
/// outside what nanoseconds in an `i64` hold (1677 to 2262).
pub fn decode_protobuf_with_limit(
    body: &[u8],
    max_decompressed_bytes: usize,
) -> Result<Vec<LogRecord>, DecodeError> {
    let request = decode_request(body, max_decompressed_bytes)?;
    let mut out = Vec::new();
    for (i, stream) in request.streams.into_iter().enumerate() {
        let labels = parse_selector(&stream.labels)
            .map_err(|e| DecodeError::invalid(format!("streams[{i}].labels"), e))?;
        for (j, e) in stream.entries.into_iter().enumerate() {
            let t = e.timestamp.unwrap_or_default();
            let ns = nanos(i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
                .filter(|_| (0..1_000_000_000).contains(&t.nanos))
                .ok_or_else(|| {
                    DecodeError::invalid(
                        format!("streams[{i}].entries[{j}].timestamp"),
                        format!(
                            "{}s {}ns is not a time between 1677 and 2262",
                            t.seconds, t.nanos
                        ),
                    )
                })?;
            let metadata = e.structured_metadata.into_iter().map(|l| (l.name, l.value));
            out.push(record(&labels, ns, e.line, metadata));
        }
    }
    Ok(out)
}

/// The `PushRequest` message of a protobuf body, snappy-decompressed,
/// refusing a body that would decompress to more than
/// `max_decompressed_bytes`.
///
/// # Errors
/// A body that is not snappy, would decompress past the limit, or is not a
/// `PushRequest`.
pub fn decode_request(
    body: &[u8],
    max_decompressed_bytes: usize,
) -> Result<proto::PushRequest, DecodeError> {
    let size = snap::raw::decompress_len(body)?;
    if size > max_decompressed_bytes {
        return Err(DecodeError::TooLarge {
            size,
            limit: max_decompressed_bytes,
        });
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    Ok(proto::PushRequest::decode(raw.as_slice())?)
}

/// Decodes a JSON push request body:
/// `{"streams":[{"stream":{…},"values":[["<ns>","<line>",{…}?],…]}]}`.
///
/// # Errors
/// Bad JSON, or a part that is not where or what the push API says, named
/// by its path (`streams[0].values[3][0]: expected a string of
/// nanoseconds since the epoch`).
pub fn decode_json(body: &[u8]) -> Result<Vec<LogRecord>, DecodeError> {
    let root: Value = serde_json::from_slice(body)?;
    let streams = root
        .get("streams")
        .and_then(Value::as_array)
        .ok_or_else(|| DecodeError::invalid("streams".into(), "expected an array of streams"))?;
    let mut out = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        let at = |what: &str| format!("streams[{i}].{what}");
        let pairs = s
            .get("stream")
            .and_then(Value::as_object)
            .ok_or_else(|| DecodeError::invalid(at("stream"), "expected an object of labels"))?;
        let mut labels = Vec::with_capacity(pairs.len());
        for (name, value) in pairs {
            let value = value.as_str().ok_or_else(|| {
                DecodeError::invalid(at(&format!("stream.{name}")), "expected a string")
            })?;
            labels.push((name.as_str(), value));
        }
        let labels = Labels::from_pairs(labels);
        let values = s
            .get("values")
            .and_then(Value::as_array)
            .ok_or_else(|| DecodeError::invalid(at("values"), "expected an array of entries"))?;
        for (j, v) in values.iter().enumerate() {
            let at = |k: usize| format!("streams[{i}].values[{j}][{k}]");
            let parts = v
                .as_array()
                .filter(|a| a.len() == 2 || a.len() == 3)
                .ok_or_else(|| {
                    DecodeError::invalid(
                        format!("streams[{i}].values[{j}]"),
                        "expected [\"<ns>\", \"<line>\"] or [\"<ns>\", \"<line>\", {…}]",
                    )
                })?;
            let ns = parts[0]
                .as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| {
                    DecodeError::invalid(at(0), "expected a string of nanoseconds since the epoch")
                })?;
            let line = parts[1]
                .as_str()
                .ok_or_else(|| DecodeError::invalid(at(1), "expected a string"))?;
            let mut metadata = Vec::new();
            if let Some(m) = parts.get(2) {
                let m = m.as_object().ok_or_else(|| {
                    DecodeError::invalid(at(2), "expected an object of structured metadata")
                })?;
                for (name, value) in m {
                    let value = value.as_str().ok_or_else(|| {
                        DecodeError::invalid(format!("{}.{name}", at(2)), "expected a string")
                    })?;
                    metadata.push((name.clone(), value.to_string()));
                }
            }
            out.push(record(&labels, ns, line.to_string(), metadata.into_iter()));
        }
    }
    Ok(out)
}

fn nanos(ns: i128) -> Option<i64> {
    i64::try_from(ns).ok()
}

fn record(
    labels: &Labels,
    timestamp_ns: i64,
    line: String,
    metadata: impl Iterator<Item = (String, String)>,
) -> LogRecord {
    let mut r = LogRecord::new(timestamp_ns, line);
    r.labels = labels.clone();
    for (name, value) in metadata {
        if name == LEVEL
            && r.severity.is_none()
            && let Some(s) = Severity::parse(&value)
        {
            r.severity = Some(s);
            continue;
        }
        r.fields.insert(name, Value::String(value));
    }
    r
}

/// Parses a stream selector, `{a="1", b="x"}`: names `[a-zA-Z_][a-zA-Z0-9_]*`,
/// values in double quotes with Go's escapes (`\\ \" \n \r \t \a \b \f \v
/// \xNN \NNN \uNNNN \UNNNNNNNN`) or in backquotes (raw). Only `=`, as a
/// pushed stream has no other matchers.
///
/// # Errors
/// What was expected, and where (a byte offset).
pub fn parse_selector(s: &str) -> Result<Labels, String> {
    let mut p = Parser { s, i: 0 };
    p.ws();
    p.expect('{')?;
    let mut pairs: Vec<(String, String)> = Vec::new();
    p.ws();
    if !p.eat('}') {
        loop {
            p.ws();
            let name = p.name()?;
            p.ws();
            p.expect('=')?;
            p.ws();
            let value = p.string()?;
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(format!("duplicate label name {name:?}"));
            }
            pairs.push((name, value));
            p.ws();
            if p.eat('}') {
                break;
            }
            p.expect(',')?;
        }
    }
    p.ws();
    if p.i != s.len() {
        return Err(format!(
            "unexpected {:?} after the closing brace",
            &s[p.i..]
        ));
    }
    Ok(Labels::from_pairs(pairs))
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.i..].chars().next()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.i += self.peek().map_or(1, char::len_utf8);
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.i += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.expected(&format!("{c:?}")))
        }
    }

    fn expected(&self, what: &str) -> String {
        match self.peek() {
            Some(c) => format!("expected {what} at byte {}, found {c:?}", self.i),
            None => format!("expected {what} at byte {}, found the end", self.i),
        }
    }

    fn name(&mut self) -> Result<String, String> {
        let start = self.i;
        let rest = &self.s[start..];
        let len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if len == 0 || rest.as_bytes()[0].is_ascii_digit() {
            return Err(self.expected("a label name"));
        }
        self.i += len;
        Ok(rest[..len].to_string())
    }

    fn string(&mut self) -> Result<String, String> {
        if self.eat('`') {
            let rest = &self.s[self.i..];
            let end = rest
                .find('`')
                .ok_or_else(|| "unterminated `string`".to_string())?;
            self.i += end + 1;
            return Ok(rest[..end].to_string());
        }
        self.expect('"')?;
        let mut out = String::new();
        loop {
            let c = self
                .peek()
                .ok_or_else(|| "unterminated quoted string".to_string())?;
            self.i += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\n' => return Err("newline in a quoted string".into()),
                '\\' => self.escape(&mut out)?,
                c => out.push(c),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), String> {
        let at = self.i;
        let c = self
            .peek()
            .ok_or_else(|| "unterminated quoted string".to_string())?;
        self.i += c.len_utf8();
        let simple = match c {
            '\\' => Some('\\'),
            '"' => Some('"'),
            '\'' => Some('\''),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'v' => Some('\u{b}'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            return Ok(());
        }
        let (digits, radix) = match c {
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='7' => {
                self.i -= 1;
                (3, 8)
            }
            _ => return Err(format!("unknown escape \\{c} at byte {at}")),
        };
        let text = self
            .s
            .get(self.i..self.i + digits)
            .ok_or_else(|| format!("short escape at byte {at}"))?;
        let n = u32::from_str_radix(text, radix).map_err(|_| format!("bad escape at byte {at}"))?;
        self.i += digits;
        // \x and octal escapes are bytes in Go; only ASCII ones make a
        // character on their own here.
        let ch = match c {
            'u' | 'U' => char::from_u32(n),
            _ if n < 0x80 => char::from_u32(n),
            _ => None,
        }
        .ok_or_else(|| format!("escape at byte {at} is not a character"))?;
        out.push(ch);
        Ok(())
    }
}
