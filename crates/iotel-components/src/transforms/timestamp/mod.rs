//! `timestamp`: sets a log record's time from one of its fields (logs).
//!
//! ```toml
//! [transforms.event_time]
//! type = "timestamp"
//! inputs = ["app_json"]
//! field = "time"
//! formats = ["rfc3339", "%Y-%m-%d %H:%M:%S%.f", "unix_ms"]
//! timezone = "Europe/Berlin"
//! ```
//!
//! `formats` are tried in order; the first that parses the field's value
//! wins:
//!
//! - `rfc3339`: `2024-06-15T10:00:00.5+02:00` (an offset or `Z` required);
//! - `unix`, `unix_ms`, `unix_us`, `unix_ns`: seconds, milliseconds,
//!   microseconds or nanoseconds since the epoch, as a number or a string,
//!   with a fraction allowed (`1718445600.25`); digits past nanoseconds are
//!   dropped;
//! - anything with a `%`: a strftime format as jiff's `strtime` reads it
//!   (`%Y-%m-%d %H:%M:%S%.f`, `%d/%b/%Y:%H:%M:%S %z`); it must give a date
//!   and a time. Without an offset (`%z`) or zone (`%Q`) it is taken in
//!   `timezone`.
//!
//! A number is read as its decimal text by the other formats too. The time
//! is truncated to `precision` (towards the past).
//!
//! Where no format parses the value, or the record has no such field, the
//! record keeps the time it had (for most sources, when it was received),
//! gets the field `timestamp_unparsed = true`, and is counted in
//! `iotel_component_errors_total{error_code}`, `timestamp_unparsed` or
//! `field_missing`; the first, second, fourth… of them are logged with the
//! value. `remove_field` removes the field only once it parsed.

#[cfg(test)]
mod tests;

use crate::transforms::describe::json_kind;
use crate::tz::resolve_timezone;
use crate::{BuildContext, Problem};
use iotel_engine::{Counter, Transform};
use iotel_model::{Events, LogRecord};
use jiff::Timestamp;
use jiff::fmt::strtime;
use jiff::tz::TimeZone;
use serde::Deserialize;
use serde_json::Value;

/// The field a record whose time did not parse gets.
pub const UNPARSED_FIELD: &str = "timestamp_unparsed";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The field holding the time.
    pub field: String,
    /// Formats to try, in order: `rfc3339`, `unix`, `unix_ms`, `unix_us`,
    /// `unix_ns` or a strftime format.
    pub formats: Vec<String>,
    /// The zone of times whose format carries no offset: `"UTC"`, `"local"`
    /// or an IANA name. Default `"UTC"`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Truncate the time to this unit. Default `"ns"` (keep it all).
    #[serde(default)]
    pub precision: Precision,
    /// Remove the field once its time was taken. Default false.
    #[serde(default)]
    pub remove_field: bool,
}

fn default_timezone() -> String {
    "UTC".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    S,
    Ms,
    Us,
    #[default]
    Ns,
}

impl Precision {
    fn nanos(self) -> i64 {
        match self {
            Precision::S => 1_000_000_000,
            Precision::Ms => 1_000_000,
            Precision::Us => 1_000,
            Precision::Ns => 1,
        }
    }
}

/// One format, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TimeFormat {
    Rfc3339,
    /// Nanoseconds per unit.
    Unix(i64),
    Strftime(String),
}

const NAMED: &str = "rfc3339, unix, unix_ms, unix_us, unix_ns";

fn time_format(f: &str) -> Result<TimeFormat, String> {
    Ok(match f {
        "rfc3339" => TimeFormat::Rfc3339,
        "unix" => TimeFormat::Unix(1_000_000_000),
        "unix_ms" => TimeFormat::Unix(1_000_000),
        "unix_us" => TimeFormat::Unix(1_000),
        "unix_ns" => TimeFormat::Unix(1),
        f if f.contains('%') => {
            check_strftime(f)?;
            TimeFormat::Strftime(f.to_string())
        }
        f => {
            return Err(format!(
                "unknown format \"{f}\"; expected one of {NAMED}, or a strftime format with \
                 % directives such as \"%Y-%m-%d %H:%M:%S\""
            ));
        }
    })
}

/// A strftime format is good when jiff can write a time with it and read
/// that back as a date and time. Pure: the sample is in UTC, so no time
/// zone is looked up.
fn check_strftime(f: &str) -> Result<(), String> {
    let sample = Timestamp::new(1_718_445_600, 123_456_789)
        .map_err(|e| e.to_string())?
        .to_zoned(TimeZone::UTC);
    let text =
        strtime::format(f, &sample).map_err(|e| format!("invalid strftime format \"{f}\": {e}"))?;
    let tm = strtime::parse(f, &text)
        .map_err(|e| format!("strftime format \"{f}\" cannot read back what it writes: {e}"))?;
    if tm.timestamp().is_none() {
        tm.to_datetime().map_err(|e| {
            format!("strftime format \"{f}\" gives no full date and time (e.g. it lacks %Y, %m or %d): {e}")
        })?;
    }
    Ok(())
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.field.is_empty() {
            p.push(Problem::new("field", "expected a field name, got \"\""));
        }
        if self.formats.is_empty() {
            p.push(Problem::new(
                "formats",
                format!("expected at least one format: {NAMED}, or a strftime format"),
            ));
        }
        for (i, f) in self.formats.iter().enumerate() {
            if let Err(e) = time_format(f) {
                p.push(Problem::new(format!("formats[{i}]"), e));
            }
        }
        if self.timezone.trim().is_empty() {
            p.push(Problem::new(
                "timezone",
                "expected \"UTC\", \"local\" or an IANA time zone name such as \"Europe/Berlin\"",
            ));
        }
        p
    }

    /// # Errors
    /// An unknown time zone (`timezone`), a bad format (`formats[i]`,
    /// refused by `validate` already).
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        let formats = self
            .formats
            .iter()
            .enumerate()
            .map(|(i, f)| time_format(f).map_err(|e| Problem::new(format!("formats[{i}]"), e)))
            .collect::<Result<Vec<_>, _>>()?;
        let timezone = resolve_timezone(&self.timezone).map_err(|e| Problem::new("timezone", e))?;
        Ok(Box::new(TimestampTransform {
            field: self.field.clone(),
            formats,
            timezone,
            precision: self.precision.nanos(),
            remove_field: self.remove_field,
            unparsed: cx.metrics.errors("timestamp_unparsed"),
            missing: cx.metrics.errors("field_missing"),
            id: cx.id.clone(),
        }))
    }
}

/// The running transform.
#[derive(Debug)]
pub struct TimestampTransform {
    field: String,
    formats: Vec<TimeFormat>,
    timezone: TimeZone,
    precision: i64,
    remove_field: bool,
    unparsed: Counter,
    missing: Counter,
    id: String,
}

impl TimestampTransform {
    /// The time `value` gives under the first format that reads it.
    fn parse(&self, value: &Value) -> Result<i64, String> {
        let text = match value {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            other => return Err(format!("{} is not a time", json_kind(other))),
        };
        self.formats
            .iter()
            .find_map(|f| self.parse_as(f, &text))
            .ok_or_else(|| format!("\"{text}\" matches none of the formats"))
    }

    fn parse_as(&self, format: &TimeFormat, text: &str) -> Option<i64> {
        let ts = match format {
            TimeFormat::Rfc3339 => text.parse::<Timestamp>().ok()?,
            TimeFormat::Unix(unit) => return unix(text, *unit),
            TimeFormat::Strftime(f) => {
                let tm = strtime::parse(f, text).ok()?;
                if tm.offset().is_some() || tm.timestamp().is_some() {
                    tm.to_timestamp().ok()?
                } else if tm.iana_time_zone().is_some() {
                    tm.to_zoned().ok()?.timestamp()
                } else {
                    self.timezone
                        .to_ambiguous_timestamp(tm.to_datetime().ok()?)
                        .compatible()
                        .ok()?
                }
            }
        };
        i64::try_from(ts.as_nanosecond()).ok()
    }

    fn record(&self, r: &mut LogRecord) {
        let Some(value) = r.fields.get(&self.field) else {
            self.flag(r, &self.missing, &format!("no field \"{}\"", self.field));
            return;
        };
        match self.parse(value) {
            Ok(ns) => {
                r.timestamp_ns = ns - ns.rem_euclid(self.precision);
                if self.remove_field {
                    r.fields.remove(&self.field);
                }
            }
            Err(reason) => self.flag(r, &self.unparsed, &reason),
        }
    }

    fn flag(&self, r: &mut LogRecord, counter: &Counter, reason: &str) {
        counter.inc();
        if counter.get().is_power_of_two() {
            tracing::warn!(
                component = %self.id,
                "kept a log record's own time: {reason} (such records so far: {})",
                counter.get()
            );
        }
        r.fields.insert(UNPARSED_FIELD.into(), Value::Bool(true));
    }
}

/// `-?digits[.digits]` in units of `unit` nanoseconds, as nanoseconds;
/// fraction digits past a nanosecond are dropped.
fn unix(text: &str, unit: i64) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || digits.ends_with('.') {
        return None;
    }
    let whole: i64 = int.parse().ok()?;
    let mut ns = whole.checked_mul(unit)?;
    // The fraction of one unit, in nanoseconds: at most `unit` digits' worth.
    let mut scale = unit;
    for d in frac.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        ns = ns.checked_add(i64::from(d - b'0') * scale)?;
    }
    Some(if negative { -ns } else { ns })
}

impl Transform for TimestampTransform {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        let events = match events {
            Events::Logs(mut logs) => {
                for r in &mut logs {
                    self.record(r);
                }
                Events::Logs(logs)
            }
            // The graph gives a logs transform only logs.
            other => other,
        };
        out.push(events);
    }
}
