//! logfmt: `key=value key2="quoted \"value\"" flag`, as Heroku and Go's
//! `go-logfmt` write it.
//!
//! - Pairs are separated by spaces or tabs.
//! - A key is everything up to `=`, a space or the end; it may not start
//!   with `=` or `"`.
//! - A value is bare (up to the next space; it may hold `=`) or quoted. In a
//!   quoted value `\"`, `\\`, `\n`, `\r`, `\t`, `\/` and `\uXXXX` are
//!   unescaped; a backslash before anything else is kept as written. A
//!   quoted value must be followed by a space or the end.
//! - A key without `=` is a flag: `true`. `key=` is the empty string.
//! - A later pair replaces an earlier one of the same key.
//! - Values are strings (no number guessing), flags booleans.
//! - A line with no `key=value` pair at all (plain text) is not logfmt.

use serde_json::{Map, Value};

/// Where a line stops being logfmt, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {message}")]
pub(crate) struct LogfmtError {
    pub offset: usize,
    pub message: String,
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Parses one line.
///
/// # Errors
/// A key starting with `=` or `"`, an unterminated quoted value, a quoted
/// value followed by something other than a space, no `key=value` pair.
pub(crate) fn parse(line: &str) -> Result<Map<String, Value>, LogfmtError> {
    let b = line.as_bytes();
    let err = |offset: usize, message: String| LogfmtError { offset, message };
    let mut out = Map::new();
    let mut pairs = 0;
    let mut i = 0;
    loop {
        while i < b.len() && is_space(b[i]) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == b'=' {
            return Err(err(i, "expected a key before '='".into()));
        }
        if b[i] == b'"' {
            return Err(err(i, "expected a key, found '\"'".into()));
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && !is_space(b[i]) {
            i += 1;
        }
        // Stopped at ASCII or the end: a char boundary.
        let key = &line[key_start..i];
        if i >= b.len() || is_space(b[i]) {
            out.insert(key.to_string(), Value::Bool(true));
            continue;
        }
        // At '='.
        i += 1;
        pairs += 1;
        if i < b.len() && b[i] == b'"' {
            let (value, end) = quoted(line, i + 1).ok_or_else(|| {
                err(
                    i,
                    format!("expected '\"' closing the quoted value of \"{key}\""),
                )
            })?;
            i = end;
            if i < b.len() && !is_space(b[i]) {
                return Err(err(
                    i,
                    format!("expected a space after the quoted value of \"{key}\""),
                ));
            }
            out.insert(key.to_string(), Value::String(value));
        } else {
            let start = i;
            while i < b.len() && !is_space(b[i]) {
                i += 1;
            }
            out.insert(key.to_string(), Value::String(line[start..i].to_string()));
        }
    }
    if pairs == 0 {
        return Err(err(0, "expected key=value pairs, found none".into()));
    }
    Ok(out)
}

/// A quoted value starting after its opening quote at `start`: the value
/// and the index after its closing quote; `None` when it is not closed.
fn quoted(line: &str, start: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = line[start..].char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((out, start + at + 1)),
            '\\' => {
                let rest = chars.as_str();
                let mut peek = rest.chars();
                match peek.next() {
                    Some(e @ ('"' | '\\' | '/')) => {
                        out.push(e);
                        chars.next();
                    }
                    Some('n') => {
                        out.push('\n');
                        chars.next();
                    }
                    Some('r') => {
                        out.push('\r');
                        chars.next();
                    }
                    Some('t') => {
                        out.push('\t');
                        chars.next();
                    }
                    Some('u') => match rest
                        .get(1..5)
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .and_then(char::from_u32)
                    {
                        Some(u) if rest[1..5].bytes().all(|b| b.is_ascii_hexdigit()) => {
                            out.push(u);
                            for _ in 0..5 {
                                chars.next();
                            }
                        }
                        _ => out.push('\\'),
                    },
                    _ => out.push('\\'),
                }
            }
            c => out.push(c),
        }
    }
    None
}
