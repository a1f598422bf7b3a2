//! RFC 5424, after `<PRI>`: strict, as its ABNF says (section 6).

use super::{Cursor, Format, Message, ParseError, SdElement, message_text, rfc3339};

/// VERSION and the space after it (`NONZERO-DIGIT 0*2DIGIT SP`), consumed
/// when present; `None`, consuming nothing, when the message is not RFC 5424.
pub(super) fn version(c: &mut Cursor<'_>) -> Option<u16> {
    let mut v = 0u16;
    let mut n = 0;
    loop {
        match c.peek_at(n) {
            Some(b'0') if n == 0 => return None,
            Some(d @ b'0'..=b'9') if n < 3 => {
                v = v * 10 + u16::from(d - b'0');
                n += 1;
            }
            Some(b' ') if n > 0 => {
                c.pos += n + 1;
                return Some(v);
            }
            _ => return None,
        }
    }
}

/// The rest of an RFC 5424 message, from TIMESTAMP on.
pub(super) fn parse(
    mut c: Cursor<'_>,
    facility: u8,
    severity: u8,
    version: u16,
) -> Result<Message, ParseError> {
    let timestamp_ns = if c.peek() == Some(b'-') {
        c.pos += 1;
        None
    } else {
        Some(rfc3339(&mut c)?)
    };
    c.expect(b' ', "a space after TIMESTAMP")?;
    let hostname = header_field(&mut c, 255, "HOSTNAME")?;
    c.expect(b' ', "a space after HOSTNAME")?;
    let app_name = header_field(&mut c, 48, "APP-NAME")?;
    c.expect(b' ', "a space after APP-NAME")?;
    let procid = header_field(&mut c, 128, "PROCID")?;
    c.expect(b' ', "a space after PROCID")?;
    let msgid = header_field(&mut c, 32, "MSGID")?;
    c.expect(b' ', "a space after MSGID")?;
    let structured_data = structured_data(&mut c)?;
    let msg = if c.at_end() {
        String::new()
    } else {
        c.expect(b' ', "a space between STRUCTURED-DATA and MSG")?;
        message_text(c.rest())
    };
    Ok(Message {
        format: Format::Rfc5424 { version },
        facility,
        severity,
        timestamp_ns,
        hostname,
        app_name,
        procid,
        msgid,
        structured_data,
        msg,
    })
}

fn is_print_us_ascii(b: u8) -> bool {
    (33..=126).contains(&b)
}

/// HOSTNAME, APP-NAME, PROCID or MSGID: 1 to `max` printable ASCII
/// characters; `-` is absent.
fn header_field(c: &mut Cursor<'_>, max: usize, name: &str) -> Result<Option<String>, ParseError> {
    let start = c.pos;
    while c.peek().is_some_and(is_print_us_ascii) {
        if c.pos - start == max {
            return Err(c.expected(&format!(
                "a space after {name}, which is at most {max} characters"
            )));
        }
        c.pos += 1;
    }
    let bytes = &c.input[start..c.pos];
    match bytes {
        [] => Err(c.expected(&format!("{name} (printable ASCII, or '-' when absent)"))),
        b"-" => Ok(None),
        // Printable ASCII: valid UTF-8.
        _ => Ok(Some(String::from_utf8_lossy(bytes).into_owned())),
    }
}

/// `-` or one or more `[SD-ID *(SP PARAM-NAME="PARAM-VALUE")]`.
fn structured_data(c: &mut Cursor<'_>) -> Result<Vec<SdElement>, ParseError> {
    match c.peek() {
        Some(b'-') => {
            c.pos += 1;
            Ok(vec![])
        }
        Some(b'[') => {
            let mut elements = Vec::new();
            while c.peek() == Some(b'[') {
                elements.push(element(c)?);
            }
            Ok(elements)
        }
        _ => Err(c.expected("STRUCTURED-DATA: '-' or '['")),
    }
}

fn element(c: &mut Cursor<'_>) -> Result<SdElement, ParseError> {
    c.expect(b'[', "'[' opening an SD-ELEMENT")?;
    let id = sd_name(c, "SD-ID")?;
    let mut params = Vec::new();
    loop {
        match c.peek() {
            Some(b']') => {
                c.pos += 1;
                return Ok(SdElement { id, params });
            }
            Some(b' ') => {
                c.pos += 1;
                let name = sd_name(c, "PARAM-NAME")?;
                c.expect(b'=', &format!("'=' after PARAM-NAME \"{name}\""))?;
                c.expect(b'"', &format!("'\"' opening the value of \"{name}\""))?;
                let value = param_value(c, &name)?;
                params.push((name, value));
            }
            _ => {
                return Err(c.expected(&format!(
                    "a space before a PARAM-NAME or ']' closing SD-ELEMENT \"{id}\""
                )));
            }
        }
    }
}

/// SD-ID or PARAM-NAME: 1 to 32 printable ASCII characters but `=`, space,
/// `]` and `"`.
fn sd_name(c: &mut Cursor<'_>, what: &str) -> Result<String, ParseError> {
    let start = c.pos;
    while c
        .peek()
        .is_some_and(|b| is_print_us_ascii(b) && !matches!(b, b'=' | b']' | b'"'))
    {
        if c.pos - start == 32 {
            return Err(c.expected(&format!(
                "the end of {what}, which is at most 32 characters"
            )));
        }
        c.pos += 1;
    }
    if c.pos == start {
        return Err(c.expected(&format!(
            "{what} (printable ASCII but '=', ']', '\"' and space)"
        )));
    }
    Ok(String::from_utf8_lossy(&c.input[start..c.pos]).into_owned())
}

/// PARAM-VALUE up to its closing `"`, unescaping `\"`, `\\` and `\]`; a
/// backslash before anything else is kept as written (RFC 5424, 6.3.3).
fn param_value(c: &mut Cursor<'_>, name: &str) -> Result<String, ParseError> {
    let start = c.pos;
    let mut value = Vec::new();
    loop {
        match c.peek() {
            None => {
                return Err(c.expected(&format!("'\"' closing the value of \"{name}\"")));
            }
            Some(b'"') => break,
            Some(b'\\') => match c.peek_at(1) {
                Some(e @ (b'"' | b'\\' | b']')) => {
                    value.push(e);
                    c.pos += 2;
                }
                _ => {
                    value.push(b'\\');
                    c.pos += 1;
                }
            },
            Some(b) => {
                value.push(b);
                c.pos += 1;
            }
        }
    }
    // Escapes are ASCII: the raw bytes are valid UTF-8 exactly when the
    // unescaped ones are, and give the offset of a bad byte.
    if let Err(e) = std::str::from_utf8(&c.input[start..c.pos]) {
        let at = start + e.valid_up_to();
        return Err(c.expected_at(at, &format!("UTF-8 in the value of \"{name}\"")));
    }
    c.pos += 1;
    Ok(String::from_utf8(value).unwrap_or_default())
}
