//! RFC 3164, the BSD format, after `<PRI>`: lenient, as rsyslog is. Every
//! part but PRI is optional; what cannot be told apart is MSG.

use super::{Cursor, Format, Message, Options, ParseError, Zone, message_text, rfc3339, to_ns};

const MONTHS: [&[u8; 3]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

/// The rest of a BSD message: `[TIMESTAMP SP [HOSTNAME SP]] [TAG[PID]: ]MSG`.
pub(super) fn parse(
    mut c: Cursor<'_>,
    facility: u8,
    severity: u8,
    options: &Options,
) -> Result<Message, ParseError> {
    skip_spaces(&mut c);
    let timestamp_ns = timestamp(&mut c, options)?;
    let mut hostname = None;
    if timestamp_ns.is_some() {
        skip_spaces(&mut c);
        let word = word(&c);
        let tag_like = word.ends_with(b":") || word.contains(&b'[');
        if !word.is_empty() && !tag_like && c.peek_at(word.len()) == Some(b' ') {
            hostname = Some(String::from_utf8_lossy(word).into_owned());
            c.pos += word.len();
            skip_spaces(&mut c);
        }
    }
    let (app_name, procid) = match tag(&c) {
        Some((app, pid, len)) => {
            c.pos += len;
            if c.peek() == Some(b' ') {
                c.pos += 1;
            }
            (Some(app), pid)
        }
        None => (None, None),
    };
    Ok(Message {
        format: Format::Rfc3164,
        facility,
        severity,
        timestamp_ns,
        hostname,
        app_name,
        procid,
        msgid: None,
        structured_data: vec![],
        msg: message_text(c.rest()),
    })
}

fn skip_spaces(c: &mut Cursor<'_>) {
    while c.peek() == Some(b' ') {
        c.pos += 1;
    }
}

/// The bytes up to the next space or the end.
fn word<'a>(c: &Cursor<'a>) -> &'a [u8] {
    let rest = c.rest();
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    &rest[..end]
}

/// `TAG:` or `TAG[PID]:` at the cursor: the tag, the pid and the length
/// through the colon. The tag is printable and holds no `[` or `:`.
fn tag(c: &Cursor<'_>) -> Option<(String, Option<String>, usize)> {
    let rest = c.rest();
    let tag_end = rest
        .iter()
        .position(|&b| !b.is_ascii_graphic() || b == b'[' || b == b':')?;
    if tag_end == 0 {
        return None;
    }
    let tag = String::from_utf8_lossy(&rest[..tag_end]).into_owned();
    match rest[tag_end] {
        b':' => Some((tag, None, tag_end + 1)),
        b'[' => {
            let pid_start = tag_end + 1;
            let pid_len = rest[pid_start..].iter().position(|&b| b == b']')?;
            let pid = &rest[pid_start..pid_start + pid_len];
            if pid.is_empty() || !pid.iter().all(u8::is_ascii_graphic) {
                return None;
            }
            let colon = pid_start + pid_len + 1;
            (rest.get(colon) == Some(&b':')).then(|| {
                (
                    tag,
                    Some(String::from_utf8_lossy(pid).into_owned()),
                    colon + 1,
                )
            })
        }
        _ => None,
    }
}

/// A BSD timestamp (`Mmm dd [yyyy ]hh:mm:ss[.frac]`) or an RFC 3339 one at
/// the cursor, consumed with a `:` right after it (as Cisco devices write);
/// `None`, consuming nothing, when there is none.
///
/// # Errors
/// A BSD timestamp whose date does not exist.
fn timestamp(c: &mut Cursor<'_>, options: &Options) -> Result<Option<i64>, ParseError> {
    if c.peek().is_some_and(|b| b.is_ascii_digit()) {
        let mut probe = c.clone();
        return Ok(match rfc3339(&mut probe) {
            Ok(ns) if ends_timestamp(&mut probe) => {
                *c = probe;
                Some(ns)
            }
            _ => None,
        });
    }
    let mut probe = c.clone();
    let Some((date, time, year)) = bsd_parts(&mut probe) else {
        return Ok(None);
    };
    if !ends_timestamp(&mut probe) {
        return Ok(None);
    }
    let start = c.pos;
    *c = probe;
    let (month, day) = date;
    let year = match year {
        Some(y) => y,
        None => infer_year(month, options),
    };
    to_ns(
        c,
        start,
        (year, month, day),
        time,
        Zone::Tz(&options.timezone),
    )
    .map(Some)
}

/// A timestamp ends at a space, the end, or a `:` (consumed).
fn ends_timestamp(c: &mut Cursor<'_>) -> bool {
    match c.peek() {
        None | Some(b' ') => true,
        Some(b':') => {
            c.pos += 1;
            true
        }
        _ => false,
    }
}

type Date = (u32, u32);
type Time = (u32, u32, u32, i32);

/// `Mmm dd [yyyy ]hh:mm:ss[.frac]`: (month, day), time, year if written.
fn bsd_parts(c: &mut Cursor<'_>) -> Option<(Date, Time, Option<u32>)> {
    let name = c.rest().get(..3)?;
    let month = MONTHS
        .iter()
        .position(|m| name.eq_ignore_ascii_case(&m[..]))?;
    c.pos += 3;
    if c.peek() != Some(b' ') {
        return None;
    }
    skip_spaces(c);
    let day = number(c, 1, 2)?;
    c.expect(b' ', "").ok()?;
    let mut year = None;
    if c.rest()
        .get(..5)
        .is_some_and(|y| y[..4].iter().all(u8::is_ascii_digit) && y[4] == b' ')
    {
        year = Some(number(c, 4, 4)?);
        c.pos += 1;
    }
    let hour = number(c, 2, 2)?;
    c.expect(b':', "").ok()?;
    let minute = number(c, 2, 2)?;
    c.expect(b':', "").ok()?;
    let second = number(c, 2, 2)?;
    let nanos = if c.peek() == Some(b'.') && c.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
        c.pos += 1;
        c.fraction().ok()?
    } else {
        0
    };
    // Month index 0-11: fits.
    let month = u32::try_from(month).unwrap_or(0) + 1;
    Some(((month, day), (hour, minute, second, nanos), year))
}

/// `min` to `max` ASCII digits as a number.
fn number(c: &mut Cursor<'_>, min: usize, max: usize) -> Option<u32> {
    let start = c.pos;
    let mut v = 0u32;
    while let Some(d @ b'0'..=b'9') = c.peek() {
        if c.pos - start == max {
            return None;
        }
        v = v * 10 + u32::from(d - b'0');
        c.pos += 1;
    }
    (c.pos - start >= min).then_some(v)
}

/// The year of a BSD timestamp: the receive time's year in the configured
/// zone, the one before for a December message received in January, the
/// one after for a January message received in December (a sender's clock
/// a little ahead).
fn infer_year(month: u32, options: &Options) -> u32 {
    let now = jiff::Timestamp::from_nanosecond(i128::from(options.received_ns))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(options.timezone.clone());
    let year = u32::try_from(now.year()).unwrap_or(1970);
    match (month, now.month()) {
        (12, 1) => year - 1,
        (1, 12) => year + 1,
        _ => year,
    }
}
