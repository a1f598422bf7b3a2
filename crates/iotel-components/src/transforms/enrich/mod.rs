//! `enrich`: adds labels to metrics, logs and spans — static ones, a
//! device's row from a metadata table, and labels from the event's own time.
//!
//! ```toml
//! [transforms.tags]
//! type = "enrich"
//! inputs = ["node"]
//! labels = { site = "plant-7" }
//! device_metadata = { path = "devices.csv", key = "device_id" }
//! time = { timezone = "Europe/Berlin", hour_of_day = true, shifts = { night = "22:00-06:00", day = "06:00-14:00", late = "14:00-22:00" } }
//! ```
//!
//! Enrich's labels replace labels of the same name the event already has.
//! They are set in this order, later ones winning: `labels`, then the
//! device's metadata row (more specific than a static label), then the time
//! labels `hour_of_day` and `shift`.
//!
//! Label names may be OpenTelemetry attribute names with `.` between their
//! parts, such as `deployment.environment`. Logs and spans get the name as
//! written; metrics get it as a Prometheus label name, every `.` (and any
//! other character a Prometheus label name may not hold) replaced by `_`:
//! `deployment_environment`, as OpenTelemetry's Prometheus exporters spell
//! it. Both spellings are made once, when the transform is built.
//!
//! The event's time is a metric's `timestamp_ms`, a log's `timestamp_ns` and
//! a span's `start_ns`.
//!
//! The device's row is looked up by the key label's value after `labels`
//! were set, so an agent configured with `labels = { device_id = "dev-42" }`
//! picks its own row for everything it sends. Events whose key label has a
//! value the table does not list pass on without metadata labels and are
//! counted in `iotel_enrich_metadata_misses_total{component_id}`; events
//! without the key label are not counted (they are not device events).

mod metadata;
#[cfg(test)]
mod tests;
mod time;

use crate::transforms::names::{
    ATTRIBUTE_NAME_RULE, is_valid_attribute_name, prometheus_label_name, static_label_problems,
};
use crate::tz::resolve_timezone;
use crate::{BuildContext, Problem};
use iotel_engine::{Counter, Transform};
use iotel_model::{Events, Labels};
use jiff::Timestamp;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use time::{HOUR_OF_DAY_LABEL, SHIFT_LABEL};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Static labels set on every event, replacing a label of the same name
    /// the event already has. Names are letters, digits, `_` and `.` (for
    /// OpenTelemetry names such as `deployment.environment`, which metrics
    /// get as `deployment_environment`), not starting with a digit or `.`;
    /// values are not empty.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// A table of labels per device, read when the transform is built.
    #[serde(default)]
    pub device_metadata: Option<DeviceMetadataConfig>,
    /// Labels from the event's own time.
    #[serde(default)]
    pub time: Option<TimeConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceMetadataConfig {
    /// The file, relative to the config file's directory unless absolute.
    /// Read once, when the transform is built.
    pub path: PathBuf,
    /// The label whose value names the device, and in CSV the column that
    /// holds it. Default `"device_id"`.
    #[serde(default = "default_key")]
    pub key: String,
    /// `csv` (a header row; one row per device) or `toml` (one
    /// `[devices.<id>]` table per device). Default: from the file's
    /// extension, `.csv` or `.toml`.
    #[serde(default)]
    pub format: Option<MetadataFormat>,
}

fn default_key() -> String {
    "device_id".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataFormat {
    Csv,
    Toml,
}

impl DeviceMetadataConfig {
    /// The format set, or the one the extension names.
    fn format(&self) -> Option<MetadataFormat> {
        self.format.or_else(|| {
            match self
                .path
                .extension()?
                .to_str()?
                .to_ascii_lowercase()
                .as_str()
            {
                "csv" => Some(MetadataFormat::Csv),
                "toml" => Some(MetadataFormat::Toml),
                _ => None,
            }
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    /// The time zone local time is taken in: `"UTC"`, `"local"` (the
    /// machine's) or an IANA name such as `"Europe/Berlin"`, as the `file`
    /// sink's `timezone`. Default `"UTC"`. Looked up in the system's time
    /// zone database (`/usr/share/zoneinfo`) when the transform is built.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Adds `hour_of_day`, the local hour from `"0"` to `"23"`. Default false.
    #[serde(default)]
    pub hour_of_day: bool,
    /// Named daily windows of local time, `"HH:MM-HH:MM"`, start inclusive,
    /// end exclusive; a window may wrap over midnight (`"22:00-06:00"`) and
    /// end at `"24:00"`. Adds `shift` with the name of the window the time
    /// falls in, and no `shift` when it falls in none. Windows may not
    /// overlap.
    #[serde(default)]
    pub shifts: BTreeMap<String, String>,
}

fn default_timezone() -> String {
    "UTC".into()
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        p.extend(static_label_problems("labels", "label", &self.labels, None));
        if let Some(m) = &self.device_metadata {
            if m.path.as_os_str().is_empty() {
                p.push(Problem::new("device_metadata.path", "expected a file path"));
            } else if m.format().is_none() {
                p.push(Problem::new(
                    "device_metadata.format",
                    format!(
                        "cannot tell the format of \"{}\" from its extension; set format = \"csv\" or \"toml\"",
                        m.path.display()
                    ),
                ));
            }
            if !is_valid_attribute_name(&m.key) {
                p.push(Problem::new(
                    "device_metadata.key",
                    format!(
                        "\"{}\" is not a valid label name ({ATTRIBUTE_NAME_RULE})",
                        m.key
                    ),
                ));
            }
        }
        if let Some(t) = &self.time {
            if t.timezone.trim().is_empty() {
                p.push(Problem::new(
                    "time.timezone",
                    "expected \"UTC\", \"local\" or an IANA time zone name such as \"Europe/Berlin\"",
                ));
            }
            if let Err(errors) = time::parse_shifts(&t.shifts) {
                for (name, message) in errors {
                    p.push(Problem::new(format!("time.shifts.{name}"), message));
                }
            }
            if !t.hour_of_day && t.shifts.is_empty() {
                p.push(Problem::new(
                    "time",
                    "adds no label: set hour_of_day = true or define shifts",
                ));
            }
        }
        if self.labels.is_empty() && self.device_metadata.is_none() && self.time.is_none() {
            p.push(Problem::new(
                "",
                "adds no label: set labels, device_metadata or time",
            ));
        }
        p
    }

    /// Reads the metadata table and looks up the time zone.
    ///
    /// # Errors
    /// An unreadable or malformed metadata file (`device_metadata.path`,
    /// naming the file and line) or an unknown time zone (`time.timezone`).
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        let metadata = match &self.device_metadata {
            Some(m) => Some(load_metadata(
                m,
                &cx.resolve(&m.path),
                self.labels.get(&m.key).cloned(),
            )?),
            None => None,
        };
        let time = match &self.time {
            Some(t) => {
                let tz =
                    resolve_timezone(&t.timezone).map_err(|e| Problem::new("time.timezone", e))?;
                let shifts = time::parse_shifts(&t.shifts).map_err(|mut e| {
                    let (name, message) = e.swap_remove(0);
                    Problem::new(format!("time.shifts.{name}"), message)
                })?;
                Some(time::TimeLabeler::new(tz, t.hour_of_day, shifts))
            }
            None => None,
        };
        Ok(Box::new(Enrich {
            labels: self
                .labels
                .iter()
                .map(|(n, v)| SetLabel::new(n, v))
                .collect(),
            metadata,
            time,
            misses: cx.metrics.registry().counter(
                "iotel_enrich_metadata_misses_total",
                "Events whose device key the enrich metadata table does not list.",
                &[("component_id", &cx.id)],
            ),
            scratch: Vec::new(),
        }))
    }
}

fn load_metadata(
    m: &DeviceMetadataConfig,
    file: &Path,
    static_id: Option<String>,
) -> Result<Metadata, Problem> {
    let problem = |message: String| Problem::new("device_metadata.path", message);
    let bytes =
        std::fs::read(file).map_err(|e| problem(format!("cannot read {}: {e}", file.display())))?;
    let table = match m.format() {
        Some(MetadataFormat::Csv) => metadata::parse_csv(&bytes, &m.key),
        Some(MetadataFormat::Toml) => match std::str::from_utf8(&bytes) {
            Ok(text) => metadata::parse_toml(text, &m.key),
            Err(_) => Err(metadata::FileError {
                line: None,
                message: "invalid UTF-8".into(),
            }),
        },
        // validate() refused this config already.
        None => {
            return Err(Problem::new(
                "device_metadata.format",
                "set format = \"csv\" or \"toml\"",
            ));
        }
    }
    .map_err(|e| problem(e.describe(file)))?;
    tracing::debug!(file = %file.display(), devices = table.len(), "loaded device metadata");
    Ok(Metadata {
        key: m.key.clone(),
        metric_key: prometheus_label_name(&m.key).into_owned(),
        static_id,
        table,
    })
}

#[derive(Debug)]
struct Metadata {
    key: String,
    /// `key` as metrics spell it.
    metric_key: String,
    /// The key's value when `labels` sets it: then every event is that device.
    static_id: Option<String>,
    table: metadata::Table,
}

/// One label enrich sets, its name spelled both ways once, at build time.
#[derive(Debug, Clone)]
struct SetLabel {
    /// As written: what logs and spans get.
    name: Arc<str>,
    /// As a Prometheus label name: what metrics get. The same `Arc` as
    /// `name` when the name is already one.
    metric_name: Arc<str>,
    value: Arc<str>,
}

impl SetLabel {
    fn new(name: &str, value: &str) -> Self {
        let name: Arc<str> = Arc::from(name);
        let metric_name = match prometheus_label_name(&name) {
            std::borrow::Cow::Borrowed(_) => name.clone(),
            std::borrow::Cow::Owned(n) => Arc::from(n),
        };
        Self {
            name,
            metric_name,
            value: Arc::from(value),
        }
    }

    fn name(&self, signal: Signal) -> &Arc<str> {
        match signal {
            Signal::Metric => &self.metric_name,
            Signal::LogOrSpan => &self.name,
        }
    }
}

/// Which spelling of a label name an event gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// Prometheus label names.
    Metric,
    /// Names as written.
    LogOrSpan,
}

/// The running transform.
#[derive(Debug)]
pub struct Enrich {
    labels: Vec<SetLabel>,
    metadata: Option<Metadata>,
    time: Option<time::TimeLabeler>,
    misses: Counter,
    /// The time labels of the event at hand; reused.
    scratch: Vec<(Arc<str>, Arc<str>)>,
}

impl Enrich {
    /// `labels` with enrich's labels set, sharing the original when nothing
    /// changes.
    fn enrich(&mut self, labels: &Labels, time: Option<Timestamp>, signal: Signal) -> Labels {
        let row: &[SetLabel] = match &self.metadata {
            Some(m) => match m
                .static_id
                .as_deref()
                .or_else(|| {
                    labels.get(match signal {
                        Signal::Metric => &m.metric_key,
                        Signal::LogOrSpan => &m.key,
                    })
                })
                .filter(|id| !id.is_empty())
            {
                Some(id) => match m.table.get(id) {
                    Some(row) => row,
                    None => {
                        self.misses.inc();
                        &[]
                    }
                },
                None => &[],
            },
            None => &[],
        };
        self.scratch.clear();
        if let (Some(t), Some(time)) = (&self.time, time) {
            t.labels(time, &mut self.scratch);
        }
        let updates = || {
            self.labels
                .iter()
                .chain(row)
                .map(|l| (l.name(signal), &l.value))
                .chain(self.scratch.iter().map(|(n, v)| (n, v)))
        };
        if updates().all(|(n, v)| labels.get(n) == Some(&**v)) {
            return labels.clone();
        }
        let mut b = labels.to_builder();
        for (n, v) in updates() {
            b.set_shared(n.clone(), v.clone());
        }
        b.build()
    }
}

fn from_ms(ms: i64) -> Option<Timestamp> {
    Timestamp::from_millisecond(ms).ok()
}

fn from_ns(ns: i64) -> Option<Timestamp> {
    Timestamp::from_nanosecond(i128::from(ns)).ok()
}

impl Transform for Enrich {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        let events = match events {
            Events::Metrics(mut v) => {
                for m in &mut v {
                    m.labels = self.enrich(&m.labels, from_ms(m.timestamp_ms), Signal::Metric);
                }
                Events::Metrics(v)
            }
            Events::Logs(mut v) => {
                for l in &mut v {
                    l.labels = self.enrich(&l.labels, from_ns(l.timestamp_ns), Signal::LogOrSpan);
                }
                Events::Logs(v)
            }
            Events::Traces(mut v) => {
                for s in &mut v {
                    s.labels = self.enrich(&s.labels, from_ns(s.start_ns), Signal::LogOrSpan);
                }
                Events::Traces(v)
            }
        };
        out.push(events);
    }
}
