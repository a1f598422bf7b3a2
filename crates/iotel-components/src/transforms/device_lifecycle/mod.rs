//! `device_lifecycle`: a device's firmware changes and upgrades that never
//! report back, told from the events that flow past — for devices that do
//! not run the agent but report their own info metric, upgrade steps and
//! results (over MQTT, OTLP), typically at a gateway.
//!
//! ```toml
//! [transforms.lifecycle]
//! type = "device_lifecycle"
//! inputs = ["devices"]
//! upgrade_timeout = "30m"
//! ```
//!
//! Every event passes unchanged. Per device (the `device_label` label of an
//! event), it keeps the firmware label of the last `device_info` sample and
//! whether an upgrade is under way, and sends to its named output `events`
//! (logs, taken as input `<id>.events`):
//!
//! - `device.firmware.changed` (`firmware.from`, `firmware.to`) when a
//!   device's `device_info` sample carries another `firmware` than the last
//!   one. A device that sends `device.firmware.changed` itself (an agent
//!   with the `device_lifecycle` source) is left to do so.
//! - `device.firmware.upgrade.timeout` (severity WARN; `firmware.from`,
//!   `firmware.to` when known, `firmware.result = "timeout"`, and the
//!   upgrade's `trace_id` when it came as spans) when an upgrade started — a
//!   `device.firmware.upgrade.start` event, or a span of an upgrade's step
//!   (`firmware.download`, `firmware.verify`, `firmware.apply`,
//!   `device.reboot`) — and within `upgrade_timeout` nothing reported back:
//!   no `firmware.upgrade` span, no `device.firmware.upgrade.end` event, no
//!   firmware change. Each upgrade is flagged once, and counted in
//!   `iotel_device_lifecycle_upgrade_timeouts_total{component_id}`.
//!
//! A transform runs when a batch arrives, so timeouts are checked then: on a
//! gateway, where batches arrive all the time, a timeout is flagged within
//! moments of its deadline; with no traffic at all, at the next batch. The
//! clock is injectable ([`Clock`]), so tests step it. Each device's last
//! firmware and the upgrades under way are kept across a clean restart of
//! the node in its data dir ([`state`]).

mod state;
#[cfg(test)]
mod tests;

use crate::lifecycle::{self as names, event};
use crate::{BuildContext, Problem};
use iotel_engine::config::Duration;
use iotel_engine::{ComponentMetrics, Counter, Transform};
use iotel_model::{Events, Labels, LogRecord, Metric, Severity, Span, now_unix_ms};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The named output lifecycle events go to.
pub const EVENTS: &str = "events";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The label that names the device an event is of.
    #[serde(default = "default_device_label")]
    pub device_label: String,
    /// The info metric whose `firmware` label is the device's version.
    #[serde(default = "default_info_metric")]
    pub info_metric: String,
    /// How long an upgrade may run without reporting back.
    #[serde(default = "default_upgrade_timeout")]
    pub upgrade_timeout: Duration,
    /// Devices tracked at most; more are counted
    /// (`error_code="too_many_devices"`) and not tracked.
    #[serde(default = "default_max_devices")]
    pub max_devices: NonZeroUsize,
}

fn default_device_label() -> String {
    "device_id".into()
}

fn default_info_metric() -> String {
    "device_info".into()
}

fn default_upgrade_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}

fn default_max_devices() -> NonZeroUsize {
    NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN)
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.device_label.is_empty() {
            p.push(Problem::new("device_label", "expected a label name"));
        }
        if self.info_metric.is_empty() {
            p.push(Problem::new("info_metric", "expected a metric name"));
        }
        if self.upgrade_timeout.get() < std::time::Duration::from_secs(1) {
            p.push(Problem::new(
                "upgrade_timeout",
                format!("expected at least 1s, got {}", self.upgrade_timeout),
            ));
        }
        p
    }

    /// # Errors
    /// None today; the signature is every component's.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        let store = state::StateFile::in_dir(&cx.data_dir.join("device_lifecycle").join(&cx.id));
        Ok(Box::new(
            DeviceLifecycle::new(self.clone(), Clock::System, &cx.metrics).with_state(store),
        ))
    }
}

/// Where the transform takes the time from.
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// Unix milliseconds a test sets.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    fn now_ms(&self) -> i64 {
        match self {
            Clock::System => now_unix_ms(),
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

/// An upgrade under way.
#[derive(Debug, Clone)]
struct Pending {
    deadline_ms: i64,
    from: Option<String>,
    to: Option<String>,
    trace_id: Option<String>,
    /// The labels of the event that started it, for the timeout's.
    labels: Labels,
}

#[derive(Debug, Default)]
struct Device {
    firmware: Option<String>,
    /// The device sends `device.firmware.changed` itself.
    reports_changes: bool,
    upgrade: Option<Pending>,
    /// The trace of the last upgrade that ended or timed out: a step span
    /// of it arriving late starts no new upgrade.
    ended_trace: Option<String>,
}

#[derive(Debug)]
pub struct DeviceLifecycle {
    config: Config,
    clock: Clock,
    devices: HashMap<String, Device>,
    /// Pending upgrades by deadline, for the timeouts due.
    deadlines: BTreeSet<(i64, String)>,
    routed: Vec<LogRecord>,
    metrics: ComponentMetrics,
    timeouts: Counter,
    /// Where what it remembers is kept across restarts of the node.
    store: Option<state::StateFile>,
}

impl DeviceLifecycle {
    pub fn new(config: Config, clock: Clock, metrics: &ComponentMetrics) -> Self {
        let timeouts = metrics.registry().counter(
            "iotel_device_lifecycle_upgrade_timeouts_total",
            "Firmware upgrades that started and did not report back within upgrade_timeout.",
            &[("component_id", metrics.id())],
        );
        Self {
            config,
            clock,
            devices: HashMap::new(),
            deadlines: BTreeSet::new(),
            routed: Vec::new(),
            metrics: metrics.clone(),
            timeouts,
            store: None,
        }
    }

    /// Remembers across restarts in `store`: loads what it holds now, and
    /// saves when the node stops. A file that cannot be read is reported
    /// and counted (`error_code="state_unreadable"`); the transform then
    /// starts empty.
    fn with_state(mut self, store: state::StateFile) -> Self {
        match store.load() {
            Ok(Some(saved)) => self.restore(saved),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(
                    component = %self.metrics.id(),
                    "device_lifecycle: starting without the remembered devices: {e}"
                );
                self.metrics.error("state_unreadable");
            }
        }
        self.store = Some(store);
        self
    }

    fn restore(&mut self, saved: state::Saved) {
        for d in saved.devices {
            let upgrade = d.upgrade.map(|u| Pending {
                deadline_ms: u.deadline_unix_ms,
                from: u.from,
                to: u.to,
                trace_id: u.trace_id,
                labels: Labels::from_pairs(u.labels),
            });
            if let Some(p) = &upgrade {
                self.deadlines.insert((p.deadline_ms, d.id.clone()));
            }
            self.devices.insert(
                d.id,
                Device {
                    firmware: d.firmware,
                    reports_changes: d.reports_changes,
                    upgrade,
                    ended_trace: d.ended_trace,
                },
            );
        }
    }

    fn snapshot(&self) -> state::Saved {
        let mut devices: Vec<state::SavedDevice> = self
            .devices
            .iter()
            .map(|(id, d)| state::SavedDevice {
                id: id.clone(),
                firmware: d.firmware.clone(),
                reports_changes: d.reports_changes,
                ended_trace: d.ended_trace.clone(),
                upgrade: d.upgrade.as_ref().map(|p| state::SavedUpgrade {
                    deadline_unix_ms: p.deadline_ms,
                    from: p.from.clone(),
                    to: p.to.clone(),
                    trace_id: p.trace_id.clone(),
                    labels: p
                        .labels
                        .iter()
                        .map(|l| (l.name.to_string(), l.value.to_string()))
                        .collect(),
                }),
            })
            .collect();
        devices.sort_by(|a, b| a.id.cmp(&b.id));
        state::Saved {
            version: 0,
            devices,
        }
    }

    /// The device an event is of; `None` for a device not tracked, which
    /// is counted once when refused for the limit.
    fn device(&mut self, labels: &Labels) -> Option<(String, &mut Device)> {
        let id = labels.get(&self.config.device_label)?.to_string();
        if !self.devices.contains_key(&id) && self.devices.len() >= self.config.max_devices.get() {
            self.metrics.error("too_many_devices");
            return None;
        }
        let d = self.devices.entry(id.clone()).or_default();
        Some((id, d))
    }

    fn on_metric(&mut self, m: &Metric) {
        if *m.name != *self.config.info_metric {
            return;
        }
        let Some(fw) = m.labels.get("firmware").map(str::to_string) else {
            return;
        };
        let ts = m.timestamp_ms.saturating_mul(1_000_000);
        let Some((id, d)) = self.device(&m.labels) else {
            return;
        };
        let old = d.firmware.replace(fw.clone());
        let changed = old.as_ref().is_some_and(|o| *o != fw);
        if !changed {
            return;
        }
        let emit = !d.reports_changes;
        let finished = d.upgrade.take();
        if let Some(p) = finished {
            self.deadlines.remove(&(p.deadline_ms, id));
        }
        if emit && let Some(old) = old {
            let mut labels = m.labels.to_builder();
            labels.remove("firmware");
            labels.remove("model");
            let mut r = event(
                ts,
                names::FIRMWARE_CHANGED,
                Severity::Info,
                format!("the firmware changed from {old} to {fw}"),
                [
                    (names::FIRMWARE_FROM, Value::from(old)),
                    (names::FIRMWARE_TO, Value::from(fw)),
                ],
            );
            r.labels = labels.build();
            self.routed.push(r);
        }
    }

    fn on_log(&mut self, r: &LogRecord) {
        let Some(name) = r.fields.get(names::EVENT_NAME).and_then(Value::as_str) else {
            return;
        };
        let field = |k: &str| r.fields.get(k).and_then(Value::as_str).map(str::to_string);
        match name {
            names::UPGRADE_START => {
                let start = Start {
                    from: field(names::FIRMWARE_FROM),
                    to: field(names::FIRMWARE_TO),
                    trace_id: field("trace_id"),
                };
                self.start(&r.labels, start);
            }
            names::UPGRADE_END => self.finish(&r.labels, None),
            names::FIRMWARE_CHANGED => {
                let to = field(names::FIRMWARE_TO);
                if let Some((_, d)) = self.device(&r.labels) {
                    d.reports_changes = true;
                    if to.is_some() {
                        d.firmware = to;
                    }
                }
                self.finish(&r.labels, None);
            }
            _ => {}
        }
    }

    fn on_span(&mut self, s: &Span) {
        match s.name.as_str() {
            names::SPAN_UPGRADE => self.finish(&s.labels, Some(hex(&s.trace_id))),
            names::SPAN_DOWNLOAD | names::SPAN_VERIFY | names::SPAN_APPLY | names::SPAN_REBOOT => {
                let attr = |k: &str| {
                    s.attributes
                        .get(k)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                let start = Start {
                    from: attr(names::FIRMWARE_FROM),
                    to: attr(names::FIRMWARE_TO),
                    trace_id: Some(hex(&s.trace_id)),
                };
                self.start(&s.labels, start);
            }
            _ => {}
        }
    }

    /// An upgrade started, unless one is already under way.
    fn start(&mut self, labels: &Labels, start: Start) {
        let deadline = self.clock.now_ms().saturating_add(
            i64::try_from(self.config.upgrade_timeout.get().as_millis()).unwrap_or(i64::MAX),
        );
        let Some((id, d)) = self.device(labels) else {
            return;
        };
        if d.upgrade.is_some() || (start.trace_id.is_some() && d.ended_trace == start.trace_id) {
            return;
        }
        let from = start.from.or_else(|| d.firmware.clone());
        d.upgrade = Some(Pending {
            deadline_ms: deadline,
            from,
            to: start.to,
            trace_id: start.trace_id,
            labels: labels.clone(),
        });
        self.deadlines.insert((deadline, id));
    }

    /// The device reported back (with the upgrade's trace, when it came
    /// as a span): its upgrade, if any, is over.
    fn finish(&mut self, labels: &Labels, trace_id: Option<String>) {
        let Some(id) = labels.get(&self.config.device_label) else {
            return;
        };
        let Some(d) = self.devices.get_mut(id) else {
            return;
        };
        if trace_id.is_some() {
            d.ended_trace = trace_id;
        }
        if let Some(p) = d.upgrade.take() {
            self.deadlines.remove(&(p.deadline_ms, id.to_string()));
        }
    }

    /// Flags every upgrade whose deadline passed, once.
    fn expire(&mut self) {
        let now = self.clock.now_ms();
        while let Some((deadline, _)) = self.deadlines.first()
            && *deadline <= now
        {
            let Some((_, id)) = self.deadlines.pop_first() else {
                break;
            };
            let Some(d) = self.devices.get_mut(&id) else {
                continue;
            };
            let Some(p) = d.upgrade.take() else {
                continue;
            };
            if p.trace_id.is_some() {
                d.ended_trace.clone_from(&p.trace_id);
            }
            let mut attrs = vec![(names::FIRMWARE_RESULT, Value::from("timeout"))];
            if let Some(f) = &p.from {
                attrs.push((names::FIRMWARE_FROM, Value::from(f.as_str())));
            }
            if let Some(t) = &p.to {
                attrs.push((names::FIRMWARE_TO, Value::from(t.as_str())));
            }
            if let Some(t) = &p.trace_id {
                attrs.push(("trace_id", Value::from(t.as_str())));
            }
            let mut r = event(
                now.saturating_mul(1_000_000),
                names::UPGRADE_TIMEOUT,
                Severity::Warn,
                format!(
                    "the firmware upgrade of {id}{} did not report back within {}",
                    p.to.as_deref()
                        .map_or(String::new(), |t| format!(" to {t}")),
                    self.config.upgrade_timeout
                ),
                attrs,
            );
            r.labels = p.labels;
            self.routed.push(r);
            self.timeouts.inc();
        }
    }

    /// Upgrades under way (for tests).
    pub fn pending(&self) -> usize {
        self.deadlines.len()
    }
}

struct Start {
    from: Option<String>,
    to: Option<String>,
    trace_id: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl Transform for DeviceLifecycle {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        match &events {
            Events::Metrics(v) => v.iter().for_each(|m| self.on_metric(m)),
            Events::Logs(v) => v.iter().for_each(|r| self.on_log(r)),
            Events::Traces(v) => v.iter().for_each(|s| self.on_span(s)),
        }
        self.expire();
        out.push(events);
    }

    fn flush(&mut self, _out: &mut Vec<Events>) {
        self.expire();
        if let Some(store) = &self.store
            && let Err(e) = store.save(&self.snapshot())
        {
            tracing::warn!(
                component = %self.metrics.id(),
                "device_lifecycle: the devices' firmware and upgrades under way are not kept \
                 for the next start: {e}"
            );
            self.metrics.error("state_write_failed");
        }
    }

    fn routed(&mut self, out: &mut Vec<(&'static str, Events)>) {
        if !self.routed.is_empty() {
            out.push((EVENTS, Events::Logs(std::mem::take(&mut self.routed))));
        }
    }
}
