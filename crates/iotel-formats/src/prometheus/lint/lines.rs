//! What the linter reads from a line's text itself: the escapes and blanks
//! the scrape parser lets through but the formats do not allow, where a
//! label is in a line, and texts for messages.

use iotel_model::Metric;

/// A fault in a line the parser accepted: its byte offset and what is
/// wrong.
pub(super) type Fault = (usize, String);

/// The escapes a quoted label value may have: `\\`, `\"` and `\n` (in both
/// formats).
pub(super) fn label_value_escapes(line: &str) -> Option<Fault> {
    // Most lines have no escapes: one fast search instead of a scan.
    line.find('\\')?;
    let b = line.as_bytes();
    let mut in_quotes = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => in_quotes = !in_quotes,
            b'\\' if in_quotes => {
                if !matches!(b.get(i + 1), Some(b'\\' | b'"' | b'n')) {
                    return Some((
                        i,
                        format!(
                            "invalid escape sequence {} in a label value: only \\\\, \\\" and \\n are allowed",
                            escape_text(line, i)
                        ),
                    ));
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The escapes a HELP text may have: `\\` and `\n`, and in OpenMetrics
/// `\"`. `at` is where the text starts in its line.
pub(super) fn help_escapes(help: &str, at: usize, openmetrics: bool) -> Option<Fault> {
    let b = help.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let ok = match b.get(i + 1) {
                Some(b'\\' | b'n') => true,
                Some(b'"') => openmetrics,
                _ => false,
            };
            if !ok {
                let allowed = if openmetrics {
                    "\\\\, \\\" and \\n"
                } else {
                    "\\\\ and \\n"
                };
                return Some((
                    at + i,
                    format!(
                        "invalid escape sequence {} in HELP: only {allowed} are allowed",
                        escape_text(help, i)
                    ),
                ));
            }
            i += 1;
        }
        i += 1;
    }
    None
}

/// Text format: what Prometheus' text parser (and `promtool`) rejects that
/// the scrape parser reads: a carriage return before the newline, blanks
/// after a sample's value or timestamp or after a TYPE line's type, and
/// types text 0.0.4 does not have.
pub(super) fn text_line_fault(line: &str) -> Option<Fault> {
    if let Some(rest) = line.strip_suffix('\r') {
        return Some((
            rest.len(),
            "carriage return before the newline: text format lines end with \\n".into(),
        ));
    }
    let trimmed = line.trim_start_matches([' ', '\t']);
    let is_type = trimmed
        .strip_prefix('#')
        .map(|r| r.trim_start_matches([' ', '\t']))
        .is_some_and(|r| r.starts_with("TYPE ") || r.starts_with("TYPE\t"));
    if trimmed.starts_with('#') && !is_type {
        return None;
    }
    if trimmed.ends_with([' ', '\t']) {
        let end = line.trim_end_matches([' ', '\t']).len();
        let what = if is_type {
            "blanks after the metric type"
        } else {
            "blanks after the sample's value or timestamp"
        };
        return Some((end, format!("{what}: not allowed in text format")));
    }
    if is_type {
        let kind = trimmed.rsplit([' ', '\t']).next().unwrap_or_default();
        let known = ["counter", "gauge", "histogram", "summary", "untyped"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(kind));
        if !known {
            return Some((
                line.len() - kind.len(),
                format!(
                    "unknown metric type {kind:?} in text format 0.0.4: expected counter, gauge, histogram, summary or untyped"
                ),
            ));
        }
    }
    None
}

/// `\x` at `at` of `s`, quoted for a message.
fn escape_text(s: &str, at: usize) -> String {
    let next = s[at + 1..].chars().next();
    match next {
        Some(c) => format!("'\\{c}'"),
        None => "'\\' at the end".into(),
    }
}

/// The column (1-based, in characters) of a byte offset of a line.
pub(super) fn column_of(line: &str, mut at: usize) -> usize {
    at = at.min(line.len());
    while !line.is_char_boundary(at) {
        at -= 1;
    }
    line[..at].chars().count() + 1
}

/// HELP text with `\\` and `\n` decoded (and `\"`, which OpenMetrics
/// escapes), at most 1 KiB of it kept.
pub(super) fn unescape_help(raw: &str) -> String {
    const MAX_HELP_BYTES: usize = 1024;
    let mut out = String::with_capacity(raw.len().min(MAX_HELP_BYTES));
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if out.len() >= MAX_HELP_BYTES {
            out.push('…');
            break;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The column of label `name` in a sample line: where `name` is followed,
/// after blanks, by `=` inside the label set; 1 if not found.
pub(super) fn label_column(line: &str, name: &str) -> usize {
    let Some(open) = line.find('{') else {
        return 1;
    };
    let b = line.as_bytes();
    let mut from = open + 1;
    while let Some(found) = line.get(from..).and_then(|rest| rest.find(name)) {
        let at = from + found;
        let before = b[at - 1];
        let after = line[at + name.len()..].trim_start_matches([' ', '\t']);
        if matches!(before, b'{' | b',' | b' ' | b'\t') && after.starts_with('=') {
            return line[..at].chars().count() + 1;
        }
        from = at + name.len();
    }
    1
}

/// `name{a="1"}` for a message, cut short if long.
pub(super) fn series_text(m: &Metric) -> String {
    const MAX_CHARS: usize = 200;
    let mut s = m.name.to_string();
    if !m.labels.is_empty() {
        s.push('{');
        for (i, l) in m.labels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!("{}={:?}", l.name, &*l.value));
        }
        s.push('}');
    }
    if let Some((cut, _)) = s.char_indices().nth(MAX_CHARS) {
        s.truncate(cut);
        s.push('…');
    }
    s
}
