//! `file`: appends every event to a file, one per line — newline-delimited
//! JSON (the `console` sink's JSON lines) or plain text.
//!
//! The path is a template: strftime fields (`%Y`, `%m`, `%d`, `%H`, …, see
//! jiff's `strtime`) are filled from each event's own time (a metric's
//! timestamp, a log record's, a span's start), in UTC unless `timezone` says
//! otherwise, so `/var/log/iotel/%Y-%m-%d.ndjson` starts a new file each day
//! and a late event still lands in the file of its day. A relative path is
//! resolved against the config file's directory.
//!
//! Directories are created as needed; files are opened for appending and
//! kept open while batches keep going to them. A file that a batch did not
//! write to is closed after that batch (the day rolled over), and is opened
//! again if a later event belongs to it. Each batch is flushed to the
//! operating system before the next is read; only then is the batch
//! acknowledged to a source that waits for it (the `iotel` receiver answers
//! its agent then). A batch not written in full fails that acknowledgement,
//! so the agent sends it again.
//!
//! A write that fails is logged and counted (`write_failed`, as an error and
//! as discarded events) and the sink goes on with the next batch, reopening
//! the file.

use crate::sinks::console::Encoding;
use crate::tz::resolve_timezone;
use crate::{BuildContext, Problem};
use iotel_engine::{ComponentFuture, ComponentMetrics, Sink, SinkContext};
use iotel_model::Events;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Files kept open at once; past this a file is closed after each write.
const MAX_OPEN_FILES: usize = 16;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file to append to: a template with strftime fields from each
    /// event's time, e.g. `/var/log/iotel/%Y-%m-%d.ndjson`.
    pub path: String,
    /// `json` (one object per line) or `text`, as the `console` sink writes.
    #[serde(default)]
    pub encoding: Encoding,
    /// The time zone of the path's fields: `UTC` (the default), `local`, or
    /// an IANA name such as `Europe/Berlin`.
    #[serde(default)]
    pub timezone: Option<String>,
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.path.trim().is_empty() {
            p.push(Problem::new(
                "path",
                "expected a file path, such as \"/var/log/iotel/%Y-%m-%d.ndjson\"",
            ));
        } else if let Err(e) =
            jiff::fmt::strtime::format(&self.path, &Timestamp::UNIX_EPOCH.to_zoned(TimeZone::UTC))
        {
            p.push(Problem::new(
                "path",
                format!(
                    "invalid time field in \"{}\": {e} (write %% for a literal %)",
                    self.path
                ),
            ));
        }
        if self
            .timezone
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            p.push(Problem::new(
                "timezone",
                "expected \"UTC\", \"local\" or an IANA time zone name",
            ));
        }
        p
    }

    /// # Errors
    /// A time zone that is not known on this machine.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, Problem> {
        let tz = match self.timezone.as_deref() {
            None => TimeZone::UTC,
            Some(t) => resolve_timezone(t).map_err(|e| Problem::new("timezone", e))?,
        };
        Ok(Box::new(FileSink {
            path: PathTemplate::new(&self.path, tz),
            base_dir: cx.config_dir.clone(),
            text: self.encoding == Encoding::Text,
            files: HashMap::new(),
        }))
    }
}

/// A path template, rendered per event with a one-entry cache: events of one
/// batch mostly share their second.
#[derive(Debug)]
struct PathTemplate {
    template: String,
    tz: TimeZone,
    /// Without `%` the path is the template.
    has_fields: bool,
    /// `%f`/`%N`: the path changes within a second.
    subsecond: bool,
    last: Option<(i128, PathBuf)>,
}

impl PathTemplate {
    fn new(template: &str, tz: TimeZone) -> Self {
        Self {
            template: template.to_string(),
            tz,
            has_fields: template.contains('%'),
            subsecond: uses_subseconds(template),
            last: None,
        }
    }

    /// The path for an event at `ns` nanoseconds since the Unix epoch.
    fn render(&mut self, ns: i128) -> Result<PathBuf, String> {
        if !self.has_fields {
            return Ok(PathBuf::from(&self.template));
        }
        let key = if self.subsecond {
            ns
        } else {
            ns.div_euclid(1_000_000_000)
        };
        if let Some((k, path)) = &self.last
            && *k == key
        {
            return Ok(path.clone());
        }
        let ts = Timestamp::from_nanosecond(ns)
            .map_err(|e| format!("event time {ns}ns is out of range: {e}"))?;
        let path = jiff::fmt::strtime::format(&self.template, &ts.to_zoned(self.tz.clone()))
            .map(PathBuf::from)
            .map_err(|e| format!("rendering the path \"{}\": {e}", self.template))?;
        self.last = Some((key, path.clone()));
        Ok(path)
    }
}

/// Whether a strftime template has a fractional-seconds field (`%f`, `%.3f`,
/// `%N`), so its value may change within a second.
fn uses_subseconds(template: &str) -> bool {
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        for d in chars.by_ref() {
            match d {
                // Flags, width, `.` and colons come before the field letter.
                '-' | '_' | '^' | '#' | '.' | ':' | '0'..='9' => continue,
                'f' | 'N' => return true,
                _ => break,
            }
        }
    }
    false
}

#[derive(Debug)]
struct FileSink {
    path: PathTemplate,
    base_dir: PathBuf,
    text: bool,
    files: HashMap<PathBuf, tokio::fs::File>,
}

impl Sink for FileSink {
    fn run(mut self: Box<Self>, mut cx: SinkContext) -> ComponentFuture {
        Box::pin(async move {
            let mut buf = Vec::new();
            // The batch's acknowledgement is given once its lines are
            // written and flushed to the kernel.
            while let Some(iotel_engine::Batch { events, ack }) = cx.input.recv_batch().await {
                let mut written = Vec::new();
                let mut all_written = true;
                for (path, events) in self.split(events) {
                    let n = events.len();
                    let path = match path {
                        Ok(p) => self.base_dir.join(p),
                        Err(e) => {
                            failed(&cx.metrics, "path_template_failed", n, &e);
                            all_written = false;
                            continue;
                        }
                    };
                    buf.clear();
                    crate::sinks::encode_lines(&events, self.text, &mut buf);
                    match self.append(&path, &buf).await {
                        Ok(()) => cx.metrics.sent(n),
                        Err(e) => {
                            failed(&cx.metrics, "write_failed", n, &e);
                            self.files.remove(&path);
                            all_written = false;
                        }
                    }
                    written.push(path);
                }
                // What this batch did not write to has rolled over.
                self.files.retain(|p, _| written.contains(p));
                // A source waiting on the batch learns whether it is safe.
                if all_written {
                    ack.done();
                }
            }
            Ok(())
        })
    }
}

fn failed(metrics: &ComponentMetrics, code: &str, n: usize, message: &str) {
    tracing::warn!(component = metrics.id(), "{message}; {n} events dropped");
    metrics.error(code);
    metrics.discarded(code, n);
}

impl FileSink {
    /// Splits a batch by the file each event goes to, keeping the order of
    /// events within a file and the order in which files first appear.
    fn split(&mut self, events: Events) -> Vec<(Result<PathBuf, String>, Events)> {
        let path = &mut self.path;
        match events {
            Events::Metrics(v) => group(
                v,
                |m| path.render(i128::from(m.timestamp_ms) * 1_000_000),
                Events::Metrics,
            ),
            Events::Logs(v) => group(v, |l| path.render(i128::from(l.timestamp_ns)), Events::Logs),
            Events::Traces(v) => group(v, |s| path.render(i128::from(s.start_ns)), Events::Traces),
        }
    }

    /// Appends `buf` to `path` and flushes it, opening the file (and creating
    /// its directory) when it is not open.
    async fn append(&mut self, path: &Path, buf: &[u8]) -> Result<(), String> {
        if !self.files.contains_key(path) {
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
            }
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            self.files.insert(path.to_path_buf(), file);
        }
        let Some(file) = self.files.get_mut(path) else {
            return Err(format!("{} was not open", path.display()));
        };
        let written = match file.write_all(buf).await {
            Ok(()) => file.flush().await,
            Err(e) => Err(e),
        };
        written.map_err(|e| format!("cannot write to {}: {e}", path.display()))?;
        if self.files.len() > MAX_OPEN_FILES {
            self.files.remove(path);
        }
        Ok(())
    }
}

/// Moves `items` into groups by `key`, in first-seen order of keys.
fn group<T, K: PartialEq>(
    items: Vec<T>,
    mut key: impl FnMut(&T) -> K,
    wrap: fn(Vec<T>) -> Events,
) -> Vec<(K, Events)> {
    let mut groups: Vec<(K, Vec<T>)> = Vec::new();
    for item in items {
        let k = key(&item);
        // Mostly one group, or the last one again.
        match groups.iter_mut().rev().find(|(g, _)| *g == k) {
            Some((_, v)) => v.push(item),
            None => groups.push((k, vec![item])),
        }
    }
    groups.into_iter().map(|(k, v)| (k, wrap(v))).collect()
}

#[cfg(test)]
mod tests;
