//! W3C `tracestate`: an ordered list of at most 32 vendor `key=value` members.
//!
//! Grammar (Trace Context Level 1, section 3.3):
//!
//! ```text
//! list        = list-member 0*31( OWS "," OWS list-member )
//! list-member = key "=" value      ; empty members between commas are allowed
//! key         = simple-key / multi-tenant-key
//! simple-key  = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
//! multi-tenant-key = tenant-id "@" system-id
//! tenant-id   = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
//! system-id   = lcalpha 0*13( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
//! value       = 0*255(chr) nblk-chr
//! chr         = %x20 / nblk-chr
//! nblk-chr    = %x21-2B / %x2D-3C / %x3E-7E
//! ```
//!
//! A list that breaks any rule (a bad key or value, a duplicate key, more than
//! 32 members) is discarded whole, as the spec and its test suite expect.

use crate::ParseError;

/// The most list members a `tracestate` may hold.
pub const MAX_MEMBERS: usize = 32;

/// An ordered, validated `tracestate`: the leftmost member is the most recent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceState(Vec<(String, String)>);

impl TraceState {
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Parses one `tracestate` header value.
    ///
    /// # Errors
    /// The first member that breaks the grammar, a duplicate key, or more
    /// than 32 members.
    pub fn parse(header: &str) -> Result<Self, ParseError> {
        Self::parse_headers(std::iter::once(header))
    }

    /// Parses several `tracestate` headers as one list, in order (HTTP allows
    /// a list to be split over header lines). Empty headers are ignored.
    ///
    /// # Errors
    /// As [`TraceState::parse`], over the combined list.
    pub fn parse_headers<'a>(
        headers: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ParseError> {
        let mut members: Vec<(String, String)> = Vec::new();
        let mut count = 0;
        for header in headers {
            for raw in header.split(',') {
                let member = raw.trim_matches(is_ows);
                if member.is_empty() {
                    continue;
                }
                count += 1;
                if count > MAX_MEMBERS {
                    // Discarded whole anyway: only count the rest.
                    continue;
                }
                let (key, value) = parse_member(count - 1, member)?;
                if members.iter().any(|(k, _)| k == key) {
                    return Err(ParseError::TraceStateDuplicateKey {
                        key: key.to_owned(),
                    });
                }
                members.push((key.to_owned(), value.to_owned()));
            }
        }
        if count > MAX_MEMBERS {
            return Err(ParseError::TraceStateTooLong { count });
        }
        Ok(Self(members))
    }

    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Puts `key=value` first (a vendor updating its entry), removing any
    /// older entry for the key; when the list would pass 32 members the
    /// rightmost is dropped, as the spec allows.
    ///
    /// # Errors
    /// `key` or `value` breaks the grammar.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), ParseError> {
        let member = format!("{key}={value}");
        parse_member(0, &member)?;
        self.0.retain(|(k, _)| k != key);
        self.0.insert(0, (key.to_owned(), value.to_owned()));
        self.0.truncate(MAX_MEMBERS);
        Ok(())
    }

    /// Removes the entry for `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(at).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The header value: members joined by `,` without whitespace.
    pub fn header(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out
    }
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn member_error(index: usize, member: &str, reason: &'static str) -> ParseError {
    ParseError::TraceStateMember {
        index,
        member: member.to_owned(),
        reason,
    }
}

fn parse_member(index: usize, member: &str) -> Result<(&str, &str), ParseError> {
    let Some((key, value)) = member.split_once('=') else {
        return Err(member_error(index, member, "no `=`"));
    };
    if let Err(reason) = check_key(key) {
        return Err(member_error(index, member, reason));
    }
    if let Err(reason) = check_value(value) {
        return Err(member_error(index, member, reason));
    }
    Ok((key, value))
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/')
}

fn check_key(key: &str) -> Result<(), &'static str> {
    let bytes = key.as_bytes();
    match key.split_once('@') {
        None => {
            if bytes.is_empty() {
                return Err("empty key");
            }
            if bytes.len() > 256 {
                return Err("key longer than 256 characters");
            }
            if !bytes[0].is_ascii_lowercase() {
                return Err("key must start with a lowercase letter");
            }
            if !bytes.iter().all(|&c| is_key_char(c)) {
                return Err("key has a character other than a-z 0-9 _ - * /");
            }
        }
        Some((tenant, system)) => {
            let (tenant, system) = (tenant.as_bytes(), system.as_bytes());
            if tenant.is_empty() || tenant.len() > 241 {
                return Err("tenant id must be 1 to 241 characters");
            }
            if !(tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit()) {
                return Err("tenant id must start with a lowercase letter or digit");
            }
            if system.is_empty() || system.len() > 14 {
                return Err("system id must be 1 to 14 characters");
            }
            if !system[0].is_ascii_lowercase() {
                return Err("system id must start with a lowercase letter");
            }
            if !tenant.iter().chain(system).all(|&c| is_key_char(c)) {
                return Err("key has a character other than a-z 0-9 _ - * / and one @");
            }
        }
    }
    Ok(())
}

fn is_value_char(c: u8) -> bool {
    matches!(c, 0x20..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e)
}

fn check_value(value: &str) -> Result<(), &'static str> {
    let bytes = value.as_bytes();
    let Some(&last) = bytes.last() else {
        return Err("empty value");
    };
    if bytes.len() > 256 {
        return Err("value longer than 256 characters");
    }
    if !bytes.iter().all(|&c| is_value_char(c)) {
        return Err("value has a character outside printable ASCII or a `,` or `=`");
    }
    if last == b' ' {
        return Err("value ends with a space");
    }
    Ok(())
}
