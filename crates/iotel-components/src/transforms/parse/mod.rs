//! `parse`: parses a log record's message (or one of its fields) as JSON,
//! logfmt or a regular expression with named groups, and sets the parsed
//! values as fields (logs).
//!
//! ```toml
//! [transforms.app_json]
//! type = "parse"
//! inputs = ["syslog"]
//! format = "json"
//! severity_field = "level"
//! message_field = "msg"
//! ```
//!
//! - `json`: the text must be one JSON object; its members become fields
//!   with their JSON values (nested objects stay objects).
//! - `logfmt`: see `logfmt.rs`; values are strings, flags `true`.
//! - `regex`: `pattern` with named groups (`(?P<name>...)` or
//!   `(?<name>...)`), matched anywhere in the text (anchor it with `^…$` to
//!   match the whole); each group that took part becomes a string field.
//!
//! Where the parsed values go: with `target`, as one object in the field
//! `target`; without, as top-level fields. A parsed name the record already
//! has is a conflict, counted in `iotel_parse_field_conflicts_total
//! {component_id}`: with `overwrite = true` (the default) the parsed value
//! replaces the record's, with `false` the record's is kept and the parsed
//! one dropped.
//!
//! `severity_field` names a parsed field whose value (`"warn"`,
//! `"ERROR"`, …; see `Severity::parse`) sets the record's severity; a value
//! it does not know leaves the severity as it was. The field stays.
//! `message_field` names a parsed field that becomes the record's message
//! (a string as it is, anything else as JSON text) and is not also set as a
//! field. Both are looked up in the parsed values, before `target`.
//!
//! A record that does not parse passes on unchanged but for the field
//! `parse_error`, which says why, and is counted in
//! `iotel_component_errors_total{error_code}` under one of: `invalid_json`,
//! `not_an_object`, `invalid_logfmt`, `no_match`, `field_missing` (the
//! record has no `field`), `field_not_a_string`.

mod logfmt;
#[cfg(test)]
mod tests;

use crate::transforms::describe::{json_kind, regex_reason};
use crate::{BuildContext, Problem};
use iotel_engine::{Counter, Transform};
use iotel_model::{Events, LogRecord, Severity};
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The field a record that does not parse gets, with the reason.
pub const PARSE_ERROR_FIELD: &str = "parse_error";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Logfmt,
    Regex,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub format: Format,
    /// For `format = "regex"` (and only for it): a regular expression with
    /// at least one named group.
    #[serde(default)]
    pub pattern: Option<String>,
    /// The field whose text is parsed; unset: the record's message.
    #[serde(default)]
    pub field: Option<String>,
    /// Put the parsed values into this field, as one object; unset: as
    /// top-level fields.
    #[serde(default)]
    pub target: Option<String>,
    /// Whether a parsed value replaces a field of the same name the record
    /// already has. Default true.
    #[serde(default = "default_overwrite")]
    pub overwrite: bool,
    /// A parsed field whose value sets the record's severity.
    #[serde(default)]
    pub severity_field: Option<String>,
    /// A parsed field that becomes the record's message.
    #[serde(default)]
    pub message_field: Option<String>,
}

fn default_overwrite() -> bool {
    true
}

/// The compiled pattern, or why it is no good.
fn compile(pattern: &str) -> Result<Regex, String> {
    let re = Regex::new(pattern).map_err(|e| {
        format!(
            "invalid regular expression \"{pattern}\": {}",
            regex_reason(&e)
        )
    })?;
    if re.capture_names().flatten().next().is_none() {
        return Err(format!(
            "\"{pattern}\" has no named group such as (?P<name>...): nothing would be extracted"
        ));
    }
    Ok(re)
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        match (self.format, &self.pattern) {
            (Format::Regex, None) => p.push(Problem::new(
                "pattern",
                "missing: format = \"regex\" needs a pattern with named groups, e.g. \"^(?P<level>\\\\w+) (?P<msg>.*)$\"",
            )),
            (Format::Regex, Some(pattern)) => {
                if let Err(e) = compile(pattern) {
                    p.push(Problem::new("pattern", e));
                }
            }
            (_, Some(_)) => p.push(Problem::new(
                "pattern",
                "only for format = \"regex\"",
            )),
            (_, None) => {}
        }
        for (key, value) in [
            ("field", &self.field),
            ("target", &self.target),
            ("severity_field", &self.severity_field),
            ("message_field", &self.message_field),
        ] {
            if value.as_deref() == Some("") {
                p.push(Problem::new(key, "expected a field name, got \"\""));
            }
        }
        p
    }

    /// # Errors
    /// A pattern that does not compile (`validate` refused it already).
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        let parser = match self.format {
            Format::Json => Parser::Json,
            Format::Logfmt => Parser::Logfmt,
            Format::Regex => {
                let pattern = self.pattern.as_deref().unwrap_or_default();
                Parser::Regex(compile(pattern).map_err(|e| Problem::new("pattern", e))?)
            }
        };
        Ok(Box::new(Parse {
            parser,
            field: self.field.clone(),
            target: self.target.clone(),
            overwrite: self.overwrite,
            severity_field: self.severity_field.clone(),
            message_field: self.message_field.clone(),
            conflicts: cx.metrics.registry().counter(
                "iotel_parse_field_conflicts_total",
                "Parsed fields whose name a log record already had (replaced or kept, as \
                 overwrite says).",
                &[("component_id", &cx.id)],
            ),
            failures: FAILURE_CODES
                .iter()
                .map(|code| (*code, cx.metrics.errors(code)))
                .collect(),
        }))
    }
}

/// Every error code a record that does not parse is counted under.
const FAILURE_CODES: [&str; 6] = [
    "invalid_json",
    "not_an_object",
    "invalid_logfmt",
    "no_match",
    "field_missing",
    "field_not_a_string",
];

#[derive(Debug)]
enum Parser {
    Json,
    Logfmt,
    Regex(Regex),
}

/// Why a record did not parse: the error code and the reason.
#[derive(Debug)]
struct Failure {
    code: &'static str,
    reason: String,
}

impl Failure {
    fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

impl Parser {
    fn parse(&self, text: &str) -> Result<Map<String, Value>, Failure> {
        match self {
            Parser::Json => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => Ok(m),
                Ok(other) => Err(Failure::new(
                    "not_an_object",
                    format!("expected a JSON object, got {}", json_kind(&other)),
                )),
                Err(e) => Err(Failure::new("invalid_json", format!("not JSON: {e}"))),
            },
            Parser::Logfmt => logfmt::parse(text)
                .map_err(|e| Failure::new("invalid_logfmt", format!("not logfmt: {e}"))),
            Parser::Regex(re) => {
                let caps = re
                    .captures(text)
                    .ok_or_else(|| Failure::new("no_match", "the pattern did not match"))?;
                Ok(re
                    .capture_names()
                    .flatten()
                    .filter_map(|name| {
                        caps.name(name)
                            .map(|m| (name.to_string(), Value::String(m.as_str().to_string())))
                    })
                    .collect())
            }
        }
    }
}

/// The running transform.
#[derive(Debug)]
pub struct Parse {
    parser: Parser,
    field: Option<String>,
    target: Option<String>,
    overwrite: bool,
    severity_field: Option<String>,
    message_field: Option<String>,
    conflicts: Counter,
    /// By error code, made once.
    failures: Vec<(&'static str, Counter)>,
}

impl Parse {
    fn record(&self, r: &mut LogRecord) -> Result<(), Failure> {
        let text = match &self.field {
            None => r.message.as_str(),
            Some(f) => match r.fields.get(f) {
                None => {
                    return Err(Failure::new(
                        "field_missing",
                        format!("no field \"{f}\" to parse"),
                    ));
                }
                Some(Value::String(s)) => s.as_str(),
                Some(other) => {
                    return Err(Failure::new(
                        "field_not_a_string",
                        format!("field \"{f}\" is {}, expected a string", json_kind(other)),
                    ));
                }
            },
        };
        let mut parsed = self.parser.parse(text)?;
        if let Some(severity) = self
            .severity_field
            .as_ref()
            .and_then(|f| parsed.get(f))
            .and_then(Value::as_str)
            .and_then(Severity::parse)
        {
            r.severity = Some(severity);
        }
        if let Some(message) = self.message_field.as_ref().and_then(|f| parsed.remove(f)) {
            r.message = match message {
                Value::String(s) => s,
                other => other.to_string(),
            };
        }
        match &self.target {
            Some(t) => self.set(&mut r.fields, t.clone(), Value::Object(parsed)),
            None => {
                for (name, value) in parsed {
                    self.set(&mut r.fields, name, value);
                }
            }
        }
        Ok(())
    }

    fn set(&self, fields: &mut Map<String, Value>, name: String, value: Value) {
        if fields.contains_key(&name) {
            self.conflicts.inc();
            if !self.overwrite {
                return;
            }
        }
        fields.insert(name, value);
    }
}

impl Transform for Parse {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        let events = match events {
            Events::Logs(mut logs) => {
                for r in &mut logs {
                    if let Err(f) = self.record(r) {
                        if let Some((_, c)) = self.failures.iter().find(|(c, _)| *c == f.code) {
                            c.inc();
                        }
                        r.fields
                            .insert(PARSE_ERROR_FIELD.into(), Value::String(f.reason));
                    }
                }
                Events::Logs(logs)
            }
            // The graph gives a logs transform only logs.
            other => other,
        };
        out.push(events);
    }
}
