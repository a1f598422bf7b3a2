//! `schema`: validates log records against a JSON Schema (draft 2020-12).
//!
//! ```toml
//! [transforms.check]
//! type = "schema"
//! inputs = ["parse"]
//! path = "schemas/device-log.json"
//! validate = "fields"        # or "record"
//!
//! [sinks.rejects]
//! type = "file"
//! inputs = ["check.dead_letter"]
//! path = "/var/lib/iotel/rejects.ndjson"
//! ```
//!
//! Records that pass go on to the transform's default output (`check`).
//! Records that fail go, unchanged but for one added field, to its named
//! output `dead_letter`, which any sink or transform takes as input
//! `<id>.dead_letter`: the field `schema_error` says why, e.g.
//! `at /temperature: "hot" is not of type "number"` (up to `max_errors`
//! reasons, separated by `; `). Each is counted in
//! `iotel_schema_invalid_total{component_id}`. With nothing taking
//! `dead_letter`, the engine counts them as discarded with reason
//! `unconnected_dead_letter` and warns: never dropped silently.
//!
//! What is validated: `validate = "fields"` (default) the record's
//! structured fields as one JSON object, as `parse` leaves them;
//! `validate = "record"` the whole record as the `file` sink writes it
//! (`timestamp_ns`, `labels`, `message`, `severity`, `fields`).
//!
//! The schema file is read and compiled once, when the transform is built:
//! a file that is missing, not JSON, or not a valid draft 2020-12 schema
//! fails the config check with the file and the reason. It must be
//! self-contained: `$ref`s within the file (`#/$defs/…`) resolve, remote
//! and other-file `$ref`s do not (no network at validation time).

#[cfg(test)]
mod tests;

use crate::{BuildContext, Problem};
#[cfg(feature = "schema")]
use iotel_engine::Counter;
use iotel_engine::Transform;
#[cfg(feature = "schema")]
use iotel_model::{Events, LogRecord};
use serde::Deserialize;
use std::num::NonZeroUsize;
use std::path::PathBuf;

/// The named output failed records go to.
pub const DEAD_LETTER: &str = "dead_letter";
/// The field a dead letter's reasons are written to.
pub const ERROR_FIELD: &str = "schema_error";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The schema file, relative to the config file's directory unless
    /// absolute.
    pub path: PathBuf,
    /// What is validated against it.
    #[serde(default)]
    pub validate: Target,
    /// At most this many reasons in `schema_error`. Default 5.
    #[serde(default = "default_max_errors")]
    pub max_errors: NonZeroUsize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The record's structured fields, as one object.
    #[default]
    Fields,
    /// The whole record as JSON.
    Record,
}

fn default_max_errors() -> NonZeroUsize {
    NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN)
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        if self.path.as_os_str().is_empty() {
            return vec![Problem::new(
                "path",
                "expected the path of a JSON Schema file",
            )];
        }
        vec![]
    }

    /// # Errors
    /// Always: this build has no JSON Schema validator.
    #[cfg(not(feature = "schema"))]
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        Err(crate::not_built("schema", "schema"))
    }

    /// # Errors
    /// The schema file cannot be read, is not JSON, or is not a valid
    /// draft 2020-12 schema.
    #[cfg(feature = "schema")]
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        let path = cx.resolve(&self.path);
        let shown = path.display();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Problem::new("path", format!("cannot read schema {shown}: {e}")))?;
        let schema: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Problem::new("path", format!("schema {shown} is not JSON: {e}")))?;
        jsonschema::draft202012::meta::validate(&schema).map_err(|e| {
            Problem::new(
                "path",
                format!(
                    "schema {shown} is not a valid JSON Schema (draft 2020-12): {}{e}",
                    location(&e.instance_path().to_string())
                ),
            )
        })?;
        let validator = jsonschema::draft202012::new(&schema)
            .map_err(|e| Problem::new("path", format!("schema {shown} cannot be compiled: {e}")))?;
        let invalid = cx.metrics.registry().counter(
            "iotel_schema_invalid_total",
            "Log records that failed JSON Schema validation, sent to the dead_letter output.",
            &[("component_id", cx.metrics.id())],
        );
        Ok(Box::new(SchemaCheck {
            validator,
            target: self.validate,
            max_errors: self.max_errors.get(),
            invalid,
            dead: Vec::new(),
        }))
    }
}

/// `at /a/b: ` for a JSON pointer, nothing for the root.
#[cfg(feature = "schema")]
fn location(pointer: &str) -> String {
    if pointer.is_empty() {
        String::new()
    } else {
        format!("at {pointer}: ")
    }
}

#[cfg(feature = "schema")]
struct SchemaCheck {
    validator: jsonschema::Validator,
    target: Target,
    max_errors: usize,
    invalid: Counter,
    /// Failed records of the last batch, for `routed`.
    dead: Vec<LogRecord>,
}

#[cfg(feature = "schema")]
impl std::fmt::Debug for SchemaCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaCheck")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "schema")]
impl SchemaCheck {
    /// The reasons `record` fails, or `None` when it passes.
    fn check(&self, record: &LogRecord) -> Option<String> {
        let instance = match self.target {
            Target::Fields => serde_json::Value::Object(record.fields.clone()),
            Target::Record => serde_json::to_value(record).unwrap_or(serde_json::Value::Null),
        };
        let mut reasons = Vec::new();
        let mut more = 0usize;
        for e in self.validator.iter_errors(&instance) {
            if reasons.len() < self.max_errors {
                reasons.push(format!("{}{e}", location(&e.instance_path().to_string())));
            } else {
                more += 1;
            }
        }
        if reasons.is_empty() {
            return None;
        }
        if more > 0 {
            reasons.push(format!("and {more} more"));
        }
        Some(reasons.join("; "))
    }
}

#[cfg(feature = "schema")]
impl Transform for SchemaCheck {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        let Events::Logs(records) = events else {
            // The graph check lets only logs in.
            out.push(events);
            return;
        };
        let mut good = Vec::with_capacity(records.len());
        for mut r in records {
            match self.check(&r) {
                None => good.push(r),
                Some(reason) => {
                    self.invalid.inc();
                    r.fields
                        .insert(ERROR_FIELD.into(), serde_json::Value::String(reason));
                    self.dead.push(r);
                }
            }
        }
        if !good.is_empty() {
            out.push(Events::Logs(good));
        }
    }

    fn routed(&mut self, out: &mut Vec<(&'static str, Events)>) {
        if !self.dead.is_empty() {
            out.push((DEAD_LETTER, Events::Logs(std::mem::take(&mut self.dead))));
        }
    }
}
