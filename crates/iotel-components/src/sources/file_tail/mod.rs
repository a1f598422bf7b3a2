//! `file_tail`: follows log files, as Promtail, Vector's `file` source and
//! Fluent Bit's `tail` input do. Each line becomes a log record whose
//! message is the line, stamped with the time it was read and labelled
//! `filename` (the path) plus the configured static labels.
//!
//! The tailer (`tailer.rs`) finds and reads files and follows rotation; the
//! driver (`source.rs`) sends its batches downstream and commits positions
//! once they are acknowledged; `lines.rs` splits lines (shared with `stdin`)
//! and `positions.rs` keeps the positions file.

pub(crate) mod lines;
mod positions;
mod source;
mod tailer;
mod watched;

#[cfg(test)]
mod tests;

use crate::transforms::describe::regex_reason;
use crate::transforms::names::static_label_problems;
use crate::{BuildContext, Problem};
use iotel_engine::config::{ByteSize, Duration};
use iotel_engine::{SignalSet, Source};
use iotel_model::Labels;
use lines::MultilineRule;
use serde::Deserialize;
use source::FileTail;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use tailer::Settings;

pub use tailer::ReadFrom;

/// The largest `max_line_bytes`: a line (and a multiline record) is held
/// in memory up to this size, per file.
const MAX_LINE_BYTES_LIMIT: u64 = 16 << 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Glob patterns of the files to follow, e.g. `/var/log/app/*.log`;
    /// relative ones are resolved against the config file's directory.
    pub include: Vec<String>,
    /// Glob patterns of paths to leave out, e.g. `*.gz`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where to start in a file present at start that has no stored
    /// position; files that appear later are read from their beginning.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// How often open files are checked for new lines.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Duration,
    /// How often the include patterns are expanded again to find new,
    /// renamed and deleted files.
    #[serde(default = "default_glob_interval")]
    pub glob_interval: Duration,
    /// How long a file renamed away is kept open after it last grew, for a
    /// writer that has not reopened its log yet.
    #[serde(default = "default_rotate_wait")]
    pub rotate_wait: Duration,
    /// Lines longer than this keep their first `max_line_bytes` and are
    /// flagged `truncated = true`.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: ByteSize,
    /// Joins continuation lines (a stack trace) to the line that starts a
    /// record.
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    /// Static labels set on every record, besides `filename`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Records per batch at most.
    #[serde(default = "default_batch_max_lines")]
    pub batch_max_lines: NonZeroUsize,
    /// Message bytes per batch at most (a batch ends after the record that
    /// reaches it).
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: ByteSize,
    /// How often committed positions are written to disk.
    #[serde(default = "default_positions_sync_interval")]
    pub positions_sync_interval: Duration,
}

/// How lines are joined into multiline records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A regex; a line it matches (anywhere, unless anchored with `^`)
    /// starts a new record, any other line continues the current one.
    pub start_pattern: String,
    /// A record is handed on when no line was added to it for this long.
    #[serde(default = "default_multiline_timeout")]
    pub timeout: Duration,
    /// A record is handed on once it has this many lines.
    #[serde(default = "default_multiline_max_lines")]
    pub max_lines: NonZeroUsize,
}

fn default_poll_interval() -> Duration {
    Duration::from_millis(250)
}

fn default_glob_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_rotate_wait() -> Duration {
    Duration::from_secs(5)
}

/// As Vector's `max_line_bytes`: 100 KiB.
pub(crate) fn default_max_line_bytes() -> ByteSize {
    ByteSize(100 * 1024)
}

fn default_batch_max_lines() -> NonZeroUsize {
    NonZeroUsize::new(1000).unwrap_or(NonZeroUsize::MIN)
}

fn default_batch_max_bytes() -> ByteSize {
    ByteSize(64 * 1024)
}

fn default_positions_sync_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_multiline_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_multiline_max_lines() -> NonZeroUsize {
    NonZeroUsize::new(500).unwrap_or(NonZeroUsize::MIN)
}

/// A regex error in one line, as `regex parse error: <what>`.
fn regex_error(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(_) => format!("regex parse error: {}", regex_reason(e)),
        _ => e.to_string(),
    }
}

impl MultilineConfig {
    pub(crate) fn validate(&self, p: &mut Vec<Problem>) {
        if let Err(e) = regex::bytes::Regex::new(&self.start_pattern) {
            p.push(Problem::new("multiline.start_pattern", regex_error(&e)));
        }
        if self.timeout.get().is_zero() {
            p.push(Problem::new(
                "multiline.timeout",
                "expected a duration greater than zero",
            ));
        }
    }

    /// # Errors
    /// The start pattern does not compile (refused by `validate` already).
    pub(crate) fn rule(&self) -> Result<MultilineRule, Problem> {
        Ok(MultilineRule {
            start: regex::bytes::Regex::new(&self.start_pattern)
                .map_err(|e| Problem::new("multiline.start_pattern", regex_error(&e)))?,
            timeout: self.timeout.get(),
            max_lines: self.max_lines.get(),
        })
    }
}

/// Checks the keys `stdin` shares with `file_tail`.
pub(crate) fn validate_common(
    max_line_bytes: ByteSize,
    multiline: Option<&MultilineConfig>,
    labels: &BTreeMap<String, String>,
    reserved_label: Option<&str>,
    p: &mut Vec<Problem>,
) {
    if !(1..=MAX_LINE_BYTES_LIMIT).contains(&max_line_bytes.bytes()) {
        p.push(Problem::new(
            "max_line_bytes",
            format!("expected between 1 byte and 16MiB, got {max_line_bytes}"),
        ));
    }
    if let Some(m) = multiline {
        m.validate(p);
    }
    p.extend(static_label_problems(
        "labels",
        "label",
        labels,
        reserved_label.map(|name| (name, "the file's path")),
    ));
}

/// The line length as a `usize` (validated to at most 16 MiB).
pub(crate) fn line_limit(max_line_bytes: ByteSize) -> usize {
    usize::try_from(max_line_bytes.bytes())
        .unwrap_or(usize::MAX)
        .max(1)
}

fn positive(p: &mut Vec<Problem>, key: &str, d: Duration) {
    if d.get().is_zero() {
        p.push(Problem::new(key, "expected a duration greater than zero"));
    }
}

impl Config {
    pub fn signals(&self) -> SignalSet {
        SignalSet::LOGS
    }

    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.include.is_empty() {
            p.push(Problem::new(
                "include",
                "expected at least one glob pattern, such as \"/var/log/app/*.log\"",
            ));
        }
        for (key, patterns) in [("include", &self.include), ("exclude", &self.exclude)] {
            for (i, pattern) in patterns.iter().enumerate() {
                if pattern.trim().is_empty() {
                    p.push(Problem::new(
                        format!("{key}[{i}]"),
                        "expected a glob pattern",
                    ));
                } else if let Err(e) = glob::Pattern::new(pattern) {
                    p.push(Problem::new(
                        format!("{key}[{i}]"),
                        format!("invalid glob pattern \"{pattern}\": {e}"),
                    ));
                }
            }
        }
        positive(&mut p, "poll_interval", self.poll_interval);
        positive(&mut p, "glob_interval", self.glob_interval);
        positive(
            &mut p,
            "positions_sync_interval",
            self.positions_sync_interval,
        );
        if self.batch_max_bytes.bytes() == 0 {
            p.push(Problem::new(
                "batch_max_bytes",
                "expected a size greater than zero",
            ));
        }
        validate_common(
            self.max_line_bytes,
            self.multiline.as_ref(),
            &self.labels,
            Some("filename"),
            &mut p,
        );
        p
    }

    /// # Errors
    /// A pattern or regex that does not compile (refused by `validate`).
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
        Ok(Box::new(FileTail {
            settings: self.settings(cx)?,
            poll_interval: self.poll_interval.get(),
            sync_interval: self.positions_sync_interval.get(),
        }))
    }

    fn settings(&self, cx: &BuildContext) -> Result<Settings, Problem> {
        let include = self
            .include
            .iter()
            .map(|p| cx.resolve(std::path::Path::new(p)).display().to_string())
            .collect();
        let exclude = self
            .exclude
            .iter()
            .enumerate()
            .map(|(i, x)| {
                glob::Pattern::new(x).map_err(|e| {
                    Problem::new(
                        format!("exclude[{i}]"),
                        format!("invalid glob pattern: {e}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let multiline = self
            .multiline
            .as_ref()
            .map(MultilineConfig::rule)
            .transpose()?;
        Ok(Settings {
            include,
            exclude,
            read_from: self.read_from,
            max_line_bytes: line_limit(self.max_line_bytes),
            multiline,
            labels: Labels::from_pairs(&self.labels),
            batch_max_lines: self.batch_max_lines.get(),
            batch_max_bytes: usize::try_from(self.batch_max_bytes.bytes()).unwrap_or(usize::MAX),
            glob_interval: self.glob_interval.get(),
            rotate_wait: self.rotate_wait.get(),
        })
    }
}
