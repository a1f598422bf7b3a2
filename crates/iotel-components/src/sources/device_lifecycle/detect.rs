//! What the lifecycle source reads, parsed, and the one rule that tells a
//! new boot — all without I/O, so each is tested (and property-tested) on
//! its own.

/// `/proc/uptime`: `"<seconds since boot> <idle seconds>"`; the first field.
///
/// # Errors
/// What was expected, when the text does not start with a finite,
/// non-negative number of seconds.
pub fn parse_uptime(text: &str) -> Result<f64, String> {
    let first = text.split_whitespace().next().unwrap_or("");
    match first.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!(
            "expected the seconds since boot (such as \"3605.21 7110.52\"), got \"{}\"",
            clip(text.trim())
        )),
    }
}

/// `/proc/sys/kernel/random/boot_id`: a UUID the kernel makes at each boot.
/// Any token of hex digits and dashes is taken (as the kernel writes them),
/// lowercased.
///
/// # Errors
/// What was expected, when the text is empty or holds something else.
pub fn parse_boot_id(text: &str) -> Result<String, String> {
    let t = text.trim();
    if !t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(format!(
            "expected a boot id such as \"5e1f8a44-3c2b-4a8e-9a55-0d3b8d2c7f10\", got \"{}\"",
            clip(t)
        ))
    }
}

/// The value of `key` in an os-release file (`KEY=value` lines; values
/// may be quoted with `"` or `'`; inside double quotes a backslash escapes
/// `"`, `\`, `$` and `` ` ``, as os-release(5) says). The last assignment
/// wins, as when a shell sources the file. `None` when the key is absent or
/// its value empty.
pub fn os_release_value(text: &str, key: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() == key {
            found = Some(unquote(v.trim()));
        }
    }
    found.filter(|v| !v.is_empty())
}

fn unquote(v: &str) -> String {
    if let Some(inner) = v.strip_prefix('\'') {
        return inner.strip_suffix('\'').unwrap_or(inner).to_string();
    }
    let Some(inner) = v.strip_prefix('"') else {
        return v.to_string();
    };
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('"' | '\\' | '$' | '`')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A firmware version read from a plain file: its first line, trimmed.
pub fn plain_value(text: &str) -> Option<String> {
    let v = text.lines().next().unwrap_or("").trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// At most 60 characters of a bad value, for a message.
fn clip(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// How far the uptime may fall behind the time that passed between two
/// readings before it counts as a boot: a reading's own delay, a clock
/// slewed by NTP.
pub const UPTIME_TOLERANCE_SECS: f64 = 10.0;

/// One reading of the device's boot.
#[derive(Debug, Clone, PartialEq)]
pub struct BootReading {
    pub boot_id: Option<String>,
    pub uptime_secs: Option<f64>,
}

/// What told a new boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectedBy {
    BootId,
    Uptime,
}

impl DetectedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            DetectedBy::BootId => "boot_id",
            DetectedBy::Uptime => "uptime",
        }
    }
}

/// What two readings say about the boots they were taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    SameBoot,
    NewBoot(DetectedBy),
    /// The readings lack what would tell (no boot ids, no uptimes).
    CannotTell,
}

/// Whether `now` is of a later boot than `before`, `elapsed_secs` apart
/// (`None` when the time between them is not known).
///
/// With a boot id in both readings, the boot id alone decides. Without, the
/// uptime does: it is a boot when the uptime went back, or grew by less
/// than the time that passed (less [`UPTIME_TOLERANCE_SECS`]) — the device
/// booted in between and has been up for less time than since the last
/// reading.
pub fn new_boot(before: &BootReading, now: &BootReading, elapsed_secs: Option<f64>) -> Verdict {
    if let (Some(a), Some(b)) = (&before.boot_id, &now.boot_id) {
        return if a == b {
            Verdict::SameBoot
        } else {
            Verdict::NewBoot(DetectedBy::BootId)
        };
    }
    let (Some(a), Some(b)) = (before.uptime_secs, now.uptime_secs) else {
        return Verdict::CannotTell;
    };
    if b < a {
        return Verdict::NewBoot(DetectedBy::Uptime);
    }
    match elapsed_secs {
        Some(e) if e > 0.0 && b + UPTIME_TOLERANCE_SECS < a + e => {
            Verdict::NewBoot(DetectedBy::Uptime)
        }
        _ => Verdict::SameBoot,
    }
}
