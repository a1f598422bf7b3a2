//! `cardinality_limit`: caps the live series of every metric, and moves
//! per-device identifying labels (firmware version, GPS position) out of
//! every sample into one info series per device.
//!
//! ```toml
//! [transforms.govern]
//! type = "cardinality_limit"
//! inputs = ["tags"]
//! max_series_per_metric = 500
//! info_labels = ["firmware_version", "location_gps"]
//! ```
//!
//! **Series limit.** Per metric name (the sample's name, e.g.
//! `http_requests_total`) the transform keeps the set of live series: label
//! sets seen within `series_ttl`. A sample of a live series always passes. A
//! sample of a new series passes while the metric has fewer than
//! `max_series_per_metric` live series; past that it is dropped and counted
//! in `iotel_cardinality_dropped_total{component_id, metric}` (a series
//! that exists only for metrics that have had a drop) and
//! `iotel_component_discarded_events_total{reason="cardinality_limit"}`, and
//! at most once per `warn_interval` per metric a warning is logged with the
//! number dropped since the previous warning. A series not seen for
//! `series_ttl` stops counting, so a new one can take its place; expired
//! series are forgotten lazily, keeping memory bounded by what is live.
//!
//! **Info labels.** Labels named in `info_labels` are removed from every
//! sample before its series is counted. For each device (the value of
//! `device_key`) the transform emits an OpenMetrics info sample,
//! `device_info{device_id="..", firmware_version="..", location_gps=".."} 1`
//! (family `device`, type info), when the device is first seen with info
//! labels, when one of their values changes, and again every
//! `info_interval` while the device keeps sending, so the series never goes
//! stale in Prometheus. Values are merged across samples: a sample that
//! carries only `firmware_version` keeps the last `location_gps`. A sample
//! without `device_key` loses its info labels too, with no device to carry
//! them: such samples are counted in
//! `iotel_cardinality_info_without_device_total{component_id}` and warned
//! about at most once per `warn_interval`. Info
//! samples are not subject to the limit; samples already named
//! `info_metric` pass unchanged.
//!
//! Time here is the node's monotonic clock, not sample timestamps, so
//! delayed or replayed batches do not age series.

mod limiter;
#[cfg(test)]
mod tests;

use crate::transforms::names::{LABEL_NAME_RULE, is_valid_label_name, is_valid_metric_name};
use crate::{BuildContext, Problem};
use iotel_engine::Transform;
use iotel_engine::config::Duration;
use serde::Deserialize;
use std::num::NonZeroUsize;

pub use limiter::CardinalityLimit;
#[cfg(feature = "logs")]
pub(crate) use limiter::LiveSet;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The most live series one metric name may have; samples of further new
    /// series are dropped. Required.
    pub max_series_per_metric: NonZeroUsize,
    /// A series not seen for this long stops counting as live. Default `"5m"`.
    #[serde(default = "default_series_ttl")]
    pub series_ttl: Duration,
    /// At most one warning per metric per this interval while its new series
    /// are dropped. Default `"1m"`.
    #[serde(default = "default_warn_interval")]
    pub warn_interval: Duration,
    /// Labels removed from every sample and carried instead by one info
    /// series per device. Default none.
    #[serde(default)]
    pub info_labels: Vec<String>,
    /// The label that names the device, for info series. Default `"device_id"`.
    #[serde(default = "default_device_key")]
    pub device_key: String,
    /// The sample name of the info series; must end in `_info` (its family
    /// is the name without it). Default `"device_info"`.
    #[serde(default = "default_info_metric")]
    pub info_metric: String,
    /// How often a device's info series is sent again while the device keeps
    /// sending. Default `"1m"`.
    #[serde(default = "default_info_interval")]
    pub info_interval: Duration,
}

fn default_series_ttl() -> Duration {
    Duration::from_secs(300)
}

fn default_warn_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_device_key() -> String {
    "device_id".into()
}

fn default_info_metric() -> String {
    "device_info".into()
}

fn default_info_interval() -> Duration {
    Duration::from_secs(60)
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        for (key, d) in [
            ("series_ttl", self.series_ttl),
            ("warn_interval", self.warn_interval),
            ("info_interval", self.info_interval),
        ] {
            if d.get().is_zero() {
                p.push(Problem::new(key, "expected a duration greater than zero"));
            }
        }
        if !is_valid_label_name(&self.device_key) {
            p.push(Problem::new(
                "device_key",
                format!(
                    "\"{}\" is not a valid label name ({LABEL_NAME_RULE})",
                    self.device_key
                ),
            ));
        }
        for (i, name) in self.info_labels.iter().enumerate() {
            let key = format!("info_labels[{i}]");
            if !is_valid_label_name(name) {
                p.push(Problem::new(
                    key,
                    format!("\"{name}\" is not a valid label name ({LABEL_NAME_RULE})"),
                ));
            } else if *name == self.device_key {
                p.push(Problem::new(
                    key,
                    format!("\"{name}\" is the device_key; it names the device and stays on every sample"),
                ));
            } else if self.info_labels[..i].contains(name) {
                p.push(Problem::new(key, format!("\"{name}\" is listed twice")));
            }
        }
        let family = self.info_metric.strip_suffix("_info").unwrap_or_default();
        if !is_valid_metric_name(&self.info_metric) || family.is_empty() {
            p.push(Problem::new(
                "info_metric",
                format!(
                    "\"{}\" is not an info sample name: expected a metric name ending in _info, such as \"device_info\"",
                    self.info_metric
                ),
            ));
        }
        p
    }

    /// # Errors
    /// None today; the signature is every component's.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        Ok(Box::new(CardinalityLimit::new(self, cx)))
    }
}
