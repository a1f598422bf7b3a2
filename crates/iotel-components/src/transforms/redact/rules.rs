//! The redaction rules: hand-written scanners for the built-in kinds of
//! PII, and user regexes.
//!
//! The scanners look for their anchor character first (`@` for e-mail
//! addresses, `+` for phone numbers, `.` and `:` for IP addresses) and
//! return `None` without allocating when a text has none to replace, which
//! is most log lines: the regex build has no literal prefilters, so a
//! regex per rule would walk every byte of every line several times.

use regex::bytes::{Captures, Regex};
use sha2::{Digest, Sha256};
use std::net::Ipv6Addr;

/// A rule, ready to run.
#[derive(Debug, Clone)]
pub(super) enum Rule {
    /// `alice@example.com` → `email:<16 hex>`.
    Email(Pseudonyms),
    /// `+86 138 1234 5678` → `+86****5678`.
    Phone,
    /// `192.0.2.7` → `ipv4:<16 hex>`.
    Ipv4(Pseudonyms),
    /// `2001:db8::7` → `ipv6:<16 hex>`.
    Ipv6(Pseudonyms),
    Custom {
        regex: Regex,
        replacement: String,
    },
}

/// Salted SHA-256 pseudonyms: `<kind>:<the first 8 bytes of
/// SHA-256(salt ‖ value) in lowercase hex>`.
#[derive(Clone)]
pub(super) struct Pseudonyms {
    /// The hasher with the salt already fed in.
    salted: Sha256,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonyms(***)")
    }
}

impl Pseudonyms {
    pub(super) fn new(salt: &str) -> Self {
        Self {
            salted: Sha256::new_with_prefix(salt.as_bytes()),
        }
    }

    fn write(&self, kind: &str, value: &[u8], out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = self.salted.clone().chain_update(value).finalize();
        out.push_str(kind);
        out.push(':');
        for b in &digest[..8] {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

impl Rule {
    /// `text` with this rule's matches replaced and how many there were;
    /// `None` when there were none.
    pub(super) fn apply(&self, text: &str) -> Option<(String, u64)> {
        match self {
            Rule::Email(p) => replace_all(text, find_email, |m, out| {
                p.write("email", m.to_ascii_lowercase().as_bytes(), out);
            }),
            Rule::Phone => replace_all(text, find_phone, mask_phone),
            Rule::Ipv4(p) => replace_all(text, find_ipv4, |m, out| {
                p.write("ipv4", m.as_bytes(), out);
            }),
            // Hashed in its canonical form, so `2001:DB8:0::1` and
            // `2001:db8::1` get one pseudonym.
            Rule::Ipv6(p) => replace_all(text, find_ipv6, |m, out| {
                let canonical = m.parse::<Ipv6Addr>().map(|a| a.to_string());
                let value = canonical.as_deref().unwrap_or(m);
                p.write("ipv6", value.as_bytes(), out);
            }),
            Rule::Custom { regex, replacement } => {
                let mut n = 0;
                let replaced = regex.replace_all(text.as_bytes(), |caps: &Captures<'_>| {
                    n += 1;
                    let mut dst = Vec::new();
                    caps.expand(replacement.as_bytes(), &mut dst);
                    dst
                });
                match replaced {
                    std::borrow::Cow::Borrowed(_) => None,
                    std::borrow::Cow::Owned(bytes) => {
                        // Only a pattern compiled without Unicode that
                        // matched part of a character can split one.
                        let s = String::from_utf8(bytes)
                            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                        Some((s, n))
                    }
                }
            }
        }
    }
}

/// Replaces every match `find` reports (start, end; searching from an
/// offset) with what `write` makes of it.
fn replace_all(
    text: &str,
    find: impl Fn(&str, usize) -> Option<(usize, usize)>,
    write: impl Fn(&str, &mut String),
) -> Option<(String, u64)> {
    let mut from = 0;
    let mut copied = 0;
    let mut out: Option<String> = None;
    let mut n = 0;
    while let Some((start, end)) = find(text, from) {
        let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 16));
        o.push_str(&text[copied..start]);
        write(&text[start..end], o);
        copied = end;
        from = end;
        n += 1;
    }
    out.map(|mut o| {
        o.push_str(&text[copied..]);
        (o, n)
    })
}

/// Letters, digits and `_`: what may not touch a match on either side.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_local_part(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// The next e-mail address at or after `from`: a local part of
/// `[A-Za-z0-9._%+-]`, `@`, and a domain of at least two dot-separated
/// labels of `[A-Za-z0-9-]` whose last is at least two letters.
pub(super) fn find_email(text: &str, from: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let mut search = from;
    while let Some(rel) = text[search..].find('@') {
        let at = search + rel;
        search = at + 1;
        let mut start = at;
        while start > from && is_local_part(b[start - 1]) {
            start -= 1;
        }
        while start < at && b[start] == b'.' {
            start += 1;
        }
        if start == at {
            continue;
        }
        let mut run = at + 1;
        while run < b.len() && is_domain(b[run]) {
            run += 1;
        }
        if let Some(len) = domain_len(&b[at + 1..run]) {
            return Some((start, at + 1 + len));
        }
    }
    None
}

/// The length of the longest prefix of `run` that is a domain name.
fn domain_len(run: &[u8]) -> Option<usize> {
    let mut ends = Vec::new();
    for (i, &c) in run.iter().enumerate() {
        if c == b'.' {
            ends.push(i);
        }
    }
    ends.push(run.len());
    // Try the longest candidate first: all labels, then one fewer, ...
    for k in (1..ends.len()).rev() {
        let candidate = &run[..ends[k]];
        let mut labels = candidate.split(|&c| c == b'.');
        let tld = candidate.rsplit(|&c| c == b'.').next()?;
        if labels.all(|l| !l.is_empty())
            && tld.len() >= 2
            && tld.iter().all(u8::is_ascii_alphabetic)
        {
            return Some(ends[k]);
        }
    }
    None
}

/// E.164 country codes of one and two digits; all others have three.
const TWO_DIGIT_COUNTRY_CODES: &[&[u8; 2]] = &[
    b"20", b"27", b"30", b"31", b"32", b"33", b"34", b"36", b"39", b"40", b"41", b"43", b"44",
    b"45", b"46", b"47", b"48", b"49", b"51", b"52", b"53", b"54", b"55", b"56", b"57", b"58",
    b"60", b"61", b"62", b"63", b"64", b"65", b"66", b"81", b"82", b"84", b"86", b"90", b"91",
    b"92", b"93", b"94", b"95", b"98",
];

/// How many of `digits` (at least 3) are the country code.
fn country_code_len(digits: &[u8]) -> usize {
    match digits {
        [b'1' | b'7', ..] => 1,
        [a, b, ..] if TWO_DIGIT_COUNTRY_CODES.contains(&&[*a, *b]) => 2,
        _ => 3,
    }
}

/// The next international phone number at or after `from`: `+`, then 8 to
/// 15 digits (E.164's most) in groups separated by up to two of ` -.()`,
/// not touching a letter, digit or `_` on either side.
///
/// Two rules keep a number from running into the text after it: a
/// separator with a space may only follow a group of at most four digits
/// (`+49 30 1234567 10.0.0.1` ends before the address), and a number does
/// not end inside a run of digit groups joined without a space
/// (`+44 20 7946 0958 10.100.0.1` ends at `0958`, leaving the address
/// whole for the `ipv4` rule). Otherwise groups are taken while they fit,
/// so a short number right after a phone number may be masked with it.
pub(super) fn find_phone(text: &str, from: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let is_sep = |c: u8| matches!(c, b' ' | b'-' | b'.' | b'(' | b')');
    let mut search = from;
    while let Some(rel) = text[search..].find('+') {
        let plus = search + rel;
        search = plus + 1;
        if plus > 0 && is_word(b[plus - 1]) {
            continue;
        }
        let mut i = plus + 1;
        let mut digits = 0;
        // The end of the longest run of whole groups that is a number.
        let mut best = None;
        loop {
            let group = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == group {
                break;
            }
            digits += i - group;
            if digits > 15 {
                break;
            }
            let mut next = i;
            while next - i < 2 && next < b.len() && is_sep(b[next]) {
                next += 1;
            }
            let continues = next < b.len() && b[next].is_ascii_digit();
            let spaced = b[i..next].contains(&b' ');
            let ends_a_run = !continues || spaced;
            if digits >= 8 && ends_a_run && !(i < b.len() && is_word(b[i])) {
                best = Some(i);
            }
            if !continues || (spaced && i - group > 4) {
                break;
            }
            i = next;
        }
        if let Some(end) = best {
            return Some((plus, end));
        }
    }
    None
}

/// `+86 138-1234-5678` → `+86****5678`: the country code and the last four
/// digits, four stars for the rest whatever its length.
fn mask_phone(m: &str, out: &mut String) {
    let digits: Vec<u8> = m.bytes().filter(u8::is_ascii_digit).collect();
    let cc = country_code_len(&digits);
    out.push('+');
    for &d in &digits[..cc] {
        out.push(char::from(d));
    }
    out.push_str("****");
    for &d in &digits[digits.len() - 4..] {
        out.push(char::from(d));
    }
}

/// The next IPv4 address at or after `from`: four dot-separated decimal
/// octets up to 255, not part of a longer dotted or alphanumeric run.
pub(super) fn find_ipv4(text: &str, from: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    if !text[from..].contains('.') {
        return None;
    }
    let mut i = from;
    while i < b.len() {
        let starts = b[i].is_ascii_digit() && (i == 0 || !(is_word(b[i - 1]) || b[i - 1] == b'.'));
        if starts && let Some(end) = ipv4_at(b, i) {
            return Some((i, end));
        }
        i += 1;
    }
    None
}

/// The end of the IPv4 address starting at `start`, if one does.
fn ipv4_at(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    for octet in 0..4 {
        if octet > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let digits_start = i;
        let mut value = 0u32;
        while i < b.len() && b[i].is_ascii_digit() && i - digits_start < 3 {
            value = value * 10 + u32::from(b[i] - b'0');
            i += 1;
        }
        if i == digits_start || value > 255 {
            return None;
        }
    }
    let touches = |j: usize| b.get(j).is_some_and(|&c| is_word(c));
    let dotted_on = b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit);
    (!touches(i) && !dotted_on).then_some(i)
}

fn is_ipv6_char(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

/// The next IPv6 address at or after `from`: a run of hex digits, `:` and
/// `.` (for an embedded IPv4 address) with at least two colons, not
/// touching a letter, digit or `_`, that parses as an IPv6 address, possibly
/// after dropping trailing `:` and `.`. The unspecified address `::` is not
/// an address of anyone and is left alone.
pub(super) fn find_ipv6(text: &str, from: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let mut search = from;
    loop {
        let colon = search + text[search..].find(':')?;
        let mut start = colon;
        while start > from && is_ipv6_char(b[start - 1]) {
            start -= 1;
        }
        let mut end = colon;
        while end < b.len() && is_ipv6_char(b[end]) {
            end += 1;
        }
        search = end.max(colon + 1);
        if b[start..end].iter().filter(|&&c| c == b':').count() < 2
            || (start > 0 && is_word(b[start - 1]))
            || (end < b.len() && is_word(b[end]))
        {
            continue;
        }
        let mut candidate = &text[start..end];
        loop {
            if let Ok(addr) = candidate.parse::<Ipv6Addr>() {
                if !addr.is_unspecified() {
                    return Some((start, start + candidate.len()));
                }
                break;
            }
            match candidate.strip_suffix([':', '.']) {
                Some(shorter) => candidate = shorter,
                None => break,
            }
        }
    }
}
