//! `device_lifecycle`: the agent tells the moments of its device's life by
//! itself — boots, firmware changes, its own restarts — and emits them with
//! the names of `docs/device-lifecycle.md` (see [`crate::lifecycle`]).
//!
//! Each reading (every `interval`) takes:
//!
//! | what | from |
//! |---|---|
//! | the boot id | `<procfs_root>/sys/kernel/random/boot_id` |
//! | the uptime | the first field of `<procfs_root>/uptime` |
//! | the firmware version | `firmware_file`: os-release's `firmware_key` (`VERSION_ID`), or a plain file's first line |
//! | the model | `model_file`'s first line, when set (a device tree's `/proc/device-tree/model`) |
//!
//! and emits the metrics `device_info{firmware, model}`,
//! `device_boot_time_seconds`, `device_uptime_seconds`, `device_boots_total`,
//! `device_firmware_changes_total` and `iotel_agent_restarts_total{reason}`,
//! and, when something happened, the log events `device.boot`,
//! `device.crash`, `device.firmware.changed` and `iotel.agent.restart` —
//! and, with an `upgrade_marker_file`, `device.firmware.upgrade.start` when
//! the update tool's marker appears and `device.firmware.upgrade.end` when
//! it goes (a gateway's `device_lifecycle` transform flags an upgrade that
//! never ends, even when the device never comes back).
//!
//! A boot is a changed boot id; without a boot id, an uptime that went back
//! or grew less than the time that passed ([`detect::new_boot`]). The last
//! boot id, firmware and the agent's `running` marker are kept in the
//! agent's data dir ([`state`]), so a restart of the agent on the same boot
//! is a restart, not a boot, and a marker found set at start means the
//! previous run never stopped cleanly. On its very first start the agent
//! knows no earlier boot or firmware, and emits no event.
//!
//! A file that is missing or unreadable is reported once (a warning naming
//! the path), counted (`error_code="sensor_unavailable"`) and left out; the
//! other readings go on.

pub mod detect;
pub mod state;
#[cfg(test)]
mod tests;

use crate::lifecycle::{self as names, event};
use crate::{BuildContext, Problem};
use detect::{BootReading, DetectedBy, Verdict, new_boot};
use iotel_engine::config::Duration;
use iotel_engine::{ComponentError, ComponentFuture, ComponentMetrics, Source, SourceContext};
use iotel_model::{
    Events, Labels, LogRecord, Metric, MetricMeta, MetricType, Severity, now_unix_ms,
};
use serde::Deserialize;
use serde_json::Value;
use state::{State, StateFile, Upgrade};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How `firmware_file` holds the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirmwareFormat {
    /// `KEY=value` lines, as `/etc/os-release`; the value of `firmware_key`.
    #[default]
    OsRelease,
    /// The file's first line.
    Plain,
}

/// The os-release key that holds the firmware version by default.
pub const DEFAULT_FIRMWARE_KEY: &str = "VERSION_ID";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Time between readings.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Where procfs is mounted; tests point it at a fixture tree.
    #[serde(default = "default_procfs_root")]
    pub procfs_root: PathBuf,
    /// The file that holds the firmware version.
    #[serde(default = "default_firmware_file")]
    pub firmware_file: PathBuf,
    #[serde(default)]
    pub firmware_format: FirmwareFormat,
    /// The os-release key of the version; [`DEFAULT_FIRMWARE_KEY`] when unset.
    #[serde(default)]
    pub firmware_key: Option<String>,
    /// A file whose first line is the device's model; none by default.
    #[serde(default)]
    pub model_file: Option<PathBuf>,
    /// A file the update tool writes when an upgrade starts (its first
    /// line the target version, or empty) and removes when it is over;
    /// none by default.
    #[serde(default)]
    pub upgrade_marker_file: Option<PathBuf>,
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_procfs_root() -> PathBuf {
    PathBuf::from("/proc")
}

fn default_firmware_file() -> PathBuf {
    PathBuf::from("/etc/os-release")
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.interval.get() < std::time::Duration::from_secs(1) {
            p.push(Problem::new(
                "interval",
                format!("expected at least 1s, got {}", self.interval),
            ));
        }
        match (&self.firmware_key, self.firmware_format) {
            (Some(_), FirmwareFormat::Plain) => p.push(Problem::new(
                "firmware_key",
                "only for firmware_format = \"os_release\"; a plain file's first line is the version",
            )),
            (Some(k), FirmwareFormat::OsRelease) if k.is_empty() || k.contains('=') => {
                p.push(Problem::new(
                    "firmware_key",
                    format!("expected an os-release key such as \"VERSION_ID\", got \"{k}\""),
                ))
            }
            _ => {}
        }
        p
    }

    /// # Errors
    /// None today; the signature is every component's.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
        let mut config = self.clone();
        config.firmware_file = cx.resolve(&self.firmware_file);
        config.model_file = self.model_file.as_deref().map(|p| cx.resolve(p));
        config.upgrade_marker_file = self.upgrade_marker_file.as_deref().map(|p| cx.resolve(p));
        Ok(Box::new(LifecycleSource { config }))
    }

    fn firmware_key(&self) -> &str {
        self.firmware_key.as_deref().unwrap_or(DEFAULT_FIRMWARE_KEY)
    }
}

/// The configured source; opens its state when it starts running.
#[derive(Debug)]
struct LifecycleSource {
    config: Config,
}

/// A reading's output: the events that happened, and the metrics.
#[derive(Debug, Default)]
pub struct Reading {
    pub events: Vec<LogRecord>,
    pub metrics: Vec<Metric>,
}

/// The detector and its remembered state; also used on its own in tests.
#[derive(Debug)]
pub struct Lifecycle {
    config: Config,
    store: StateFile,
    /// What is remembered now, as last saved or about to be.
    state: State,
    /// What the previous run of the agent left, until a reading could be
    /// compared with it.
    previous: Option<State>,
    /// This run's last reading, with its monotonic and wall times.
    last: Option<(BootReading, Instant, i64)>,
    /// Paths already reported unreadable, so each is reported once.
    reported: BTreeSet<PathBuf>,
    metas: Metas,
}

#[derive(Debug)]
struct Metas {
    info: Arc<MetricMeta>,
    boot_time: Arc<MetricMeta>,
    uptime: Arc<MetricMeta>,
    boots: Arc<MetricMeta>,
    firmware_changes: Arc<MetricMeta>,
    restarts: Arc<MetricMeta>,
}

fn meta(name: &str, kind: MetricType, help: &str, unit: Option<&str>) -> Arc<MetricMeta> {
    let mut m = MetricMeta::new(name, kind).with_help(help);
    m.unit = unit.map(Arc::from);
    Arc::new(m)
}

impl Metas {
    fn new() -> Self {
        Self {
            info: meta(
                "device_info",
                MetricType::Gauge,
                "The device's firmware version and model; always 1.",
                None,
            ),
            boot_time: meta(
                "device_boot_time_seconds",
                MetricType::Gauge,
                "When the device booted, Unix seconds.",
                Some("seconds"),
            ),
            uptime: meta(
                "device_uptime_seconds",
                MetricType::Gauge,
                "Time since the device booted.",
                Some("seconds"),
            ),
            boots: meta(
                "device_boots",
                MetricType::Counter,
                "Boots of the device the agent saw.",
                None,
            ),
            firmware_changes: meta(
                "device_firmware_changes",
                MetricType::Counter,
                "Changes of the device's firmware version the agent saw.",
                None,
            ),
            restarts: meta(
                "iotel_agent_restarts",
                MetricType::Counter,
                "Restarts of the agent on the same boot, by how the previous run ended.",
                None,
            ),
        }
    }
}

/// How the agent's previous run ended, as told by its `running` marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreviousShutdown {
    Clean,
    Unclean,
    /// The boot was seen while the agent ran (a fixture tree, a procfs of
    /// another machine): the agent did not stop in between.
    Unknown,
}

impl PreviousShutdown {
    fn as_str(self) -> &'static str {
        match self {
            PreviousShutdown::Clean => "clean",
            PreviousShutdown::Unclean => "unclean",
            PreviousShutdown::Unknown => "unknown",
        }
    }
}

impl Lifecycle {
    /// Loads the state in `dir` and marks the agent running. A state that
    /// cannot be read or saved is reported and counted; the source runs on
    /// without it.
    pub fn open(config: Config, dir: &Path, metrics: &ComponentMetrics) -> Self {
        let store = StateFile::in_dir(dir);
        let previous = store.load().unwrap_or_else(|e| {
            tracing::warn!("device_lifecycle: starting without the remembered state: {e}");
            metrics.error("state_unreadable");
            None
        });
        let mut state = previous.clone().unwrap_or_default();
        state.running = true;
        let mut me = Self {
            config,
            store,
            state,
            previous,
            last: None,
            reported: BTreeSet::new(),
            metas: Metas::new(),
        };
        me.save(metrics);
        me
    }

    fn save(&mut self, metrics: &ComponentMetrics) {
        if let Err(e) = self.store.save(&self.state) {
            tracing::warn!("device_lifecycle: {e}");
            metrics.error("state_write_failed");
        }
    }

    /// The agent stops cleanly: the marker is cleared, with the last
    /// reading's uptime.
    pub fn stop(&mut self, metrics: &ComponentMetrics) {
        self.state.running = false;
        if let Some((r, _, wall_ms)) = &self.last
            && r.uptime_secs.is_some()
        {
            self.state.uptime_secs = r.uptime_secs;
            self.state.saved_at_unix_ms = *wall_ms;
        }
        self.save(metrics);
    }

    /// One reading at wall time `wall_ms` and monotonic time `mono`.
    pub fn read(&mut self, wall_ms: i64, mono: Instant, metrics: &ComponentMetrics) -> Reading {
        let boot = BootReading {
            boot_id: self.read_boot_id(metrics),
            uptime_secs: self.read_uptime(metrics),
        };
        let mut out = Reading::default();
        let mut dirty = false;
        let ts = wall_ms.saturating_mul(1_000_000);

        // Within this run, against the last reading; at the first reading
        // that can tell, against what the previous run left.
        let (verdict, before, shutdown, across_runs) = match (&self.last, &self.previous) {
            (Some((last, at, _)), _) => {
                let elapsed = mono.saturating_duration_since(*at).as_secs_f64();
                (
                    new_boot(last, &boot, Some(elapsed)),
                    last.boot_id.clone(),
                    PreviousShutdown::Unknown,
                    false,
                )
            }
            (None, Some(prev)) => {
                let before = BootReading {
                    boot_id: prev.boot_id.clone(),
                    uptime_secs: prev.uptime_secs,
                };
                let elapsed = (wall_ms - prev.saved_at_unix_ms) as f64 / 1000.0;
                let shutdown = if prev.running {
                    PreviousShutdown::Unclean
                } else {
                    PreviousShutdown::Clean
                };
                (
                    new_boot(&before, &boot, Some(elapsed)),
                    prev.boot_id.clone(),
                    shutdown,
                    true,
                )
            }
            (None, None) => (Verdict::CannotTell, None, PreviousShutdown::Unknown, false),
        };
        if across_runs && verdict == Verdict::SameBoot {
            self.agent_restart(ts, shutdown, &mut out);
            dirty = true;
        }
        // Compared with the previous run once; this run's readings go on
        // from the first one taken.
        if across_runs && verdict != Verdict::CannotTell || self.last.is_some() {
            self.previous = None;
        }
        if let Verdict::NewBoot(by) = verdict {
            self.boot(ts, wall_ms, by, before, &boot, shutdown, &mut out);
        }
        // Remember the boot: after a boot, and when first seen.
        let first_seen = boot.boot_id.is_some() && self.state.boot_id.is_none()
            || boot.uptime_secs.is_some() && self.state.uptime_secs.is_none();
        if matches!(verdict, Verdict::NewBoot(_)) || first_seen {
            if boot.boot_id.is_some() {
                self.state.boot_id = boot.boot_id.clone();
            }
            if boot.uptime_secs.is_some() {
                self.state.uptime_secs = boot.uptime_secs;
                self.state.saved_at_unix_ms = wall_ms;
            }
            dirty = true;
        }
        if boot.boot_id.is_some() || boot.uptime_secs.is_some() {
            self.last = Some((boot.clone(), mono, wall_ms));
        }

        if let Some(fw) = self.read_firmware(metrics) {
            let model = self.read_model(metrics);
            let mut labels = vec![("firmware", fw.as_str())];
            if let Some(m) = &model {
                labels.push(("model", m.as_str()));
            }
            out.metrics.push(sample(
                &self.metas.info,
                Labels::from_pairs(labels),
                1.0,
                wall_ms,
            ));
            match self.state.firmware.clone() {
                Some(old) if old != fw => {
                    out.events.push(event(
                        ts,
                        names::FIRMWARE_CHANGED,
                        Severity::Info,
                        format!("the firmware changed from {old} to {fw}"),
                        [
                            (names::FIRMWARE_FROM, Value::from(old)),
                            (names::FIRMWARE_TO, Value::from(fw.clone())),
                        ],
                    ));
                    self.state.firmware_changes_total += 1;
                    self.state.firmware = Some(fw);
                    dirty = true;
                }
                Some(_) => {}
                None => {
                    self.state.firmware = Some(fw);
                    dirty = true;
                }
            }
        }
        if self.config.upgrade_marker_file.is_some() {
            dirty |= self.upgrade(ts, metrics, &mut out);
        }
        if dirty {
            self.save(metrics);
        }
        self.push_metrics(wall_ms, &boot, &mut out.metrics);
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn boot(
        &mut self,
        ts: i64,
        wall_ms: i64,
        by: DetectedBy,
        before: Option<String>,
        boot: &BootReading,
        shutdown: PreviousShutdown,
        out: &mut Reading,
    ) {
        self.state.boots_total += 1;
        let mut attrs = vec![
            (names::BOOT_DETECTED_BY, Value::from(by.as_str())),
            (
                names::BOOT_PREVIOUS_SHUTDOWN,
                Value::from(shutdown.as_str()),
            ),
        ];
        if let Some(id) = &boot.boot_id {
            attrs.push((names::BOOT_ID, Value::from(id.as_str())));
        }
        if let Some(id) = &before {
            attrs.push((names::BOOT_PREVIOUS_ID, Value::from(id.as_str())));
        }
        if let Some(up) = boot.uptime_secs {
            attrs.push((names::BOOT_TIME, Value::from(boot_time(wall_ms, up))));
            attrs.push((names::UPTIME, Value::from(up)));
        }
        let up = boot
            .uptime_secs
            .map_or(String::new(), |u| format!(", up {u}s"));
        let id = boot
            .boot_id
            .as_deref()
            .map_or(String::new(), |b| format!(" (boot id {b})"));
        out.events.push(event(
            ts,
            names::DEVICE_BOOT,
            Severity::Info,
            format!("the device booted{id}{up}"),
            attrs,
        ));
        if shutdown == PreviousShutdown::Unclean {
            out.events.push(event(
                ts,
                names::DEVICE_CRASH,
                Severity::Error,
                "the device restarted without the agent stopping before: a power loss, a \
                 watchdog reset or a kernel panic"
                    .into(),
                [(names::CRASH_REASON, Value::from("unclean_shutdown"))],
            ));
        }
    }

    fn agent_restart(&mut self, ts: i64, shutdown: PreviousShutdown, out: &mut Reading) {
        let (reason, severity, message) = if shutdown == PreviousShutdown::Unclean {
            self.state.agent_restarts_crash_total += 1;
            (
                "crash",
                Severity::Warn,
                "the agent restarted on the same boot without having stopped cleanly: it \
                 crashed or was killed",
            )
        } else {
            self.state.agent_restarts_clean_total += 1;
            (
                "clean",
                Severity::Info,
                "the agent restarted on the same boot, after a clean stop",
            )
        };
        out.events.push(event(
            ts,
            names::AGENT_RESTART,
            severity,
            message.into(),
            [(names::RESTART_REASON, Value::from(reason))],
        ));
    }

    fn push_metrics(&self, wall_ms: i64, boot: &BootReading, out: &mut Vec<Metric>) {
        let m = &self.metas;
        let s = &self.state;
        if let Some(up) = boot.uptime_secs {
            out.push(sample(
                &m.boot_time,
                Labels::empty(),
                boot_time(wall_ms, up) as f64,
                wall_ms,
            ));
            out.push(sample(&m.uptime, Labels::empty(), up, wall_ms));
        }
        out.push(total(&m.boots, Labels::empty(), s.boots_total, wall_ms));
        out.push(total(
            &m.firmware_changes,
            Labels::empty(),
            s.firmware_changes_total,
            wall_ms,
        ));
        for (reason, n) in [
            ("clean", s.agent_restarts_clean_total),
            ("crash", s.agent_restarts_crash_total),
        ] {
            out.push(total(
                &m.restarts,
                Labels::from_pairs([("reason", reason)]),
                n,
                wall_ms,
            ));
        }
    }

    /// Reports an unreadable file the first time only.
    fn unavailable(&mut self, path: &Path, why: &str, metrics: &ComponentMetrics) {
        if self.reported.insert(path.to_path_buf()) {
            tracing::warn!("device_lifecycle: leaving out {}: {why}", path.display());
            metrics.error("sensor_unavailable");
        }
    }

    fn read_file(&mut self, path: &Path, metrics: &ComponentMetrics) -> Option<String> {
        match std::fs::read_to_string(path) {
            Ok(s) => Some(s),
            Err(e) => {
                self.unavailable(path, &e.to_string(), metrics);
                None
            }
        }
    }

    fn parsed<T>(
        &mut self,
        path: PathBuf,
        metrics: &ComponentMetrics,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.read_file(&path, metrics)?;
        match parse(&text) {
            Ok(v) => Some(v),
            Err(why) => {
                self.unavailable(&path, &why, metrics);
                None
            }
        }
    }

    fn read_boot_id(&mut self, metrics: &ComponentMetrics) -> Option<String> {
        let path = self.config.procfs_root.join("sys/kernel/random/boot_id");
        self.parsed(path, metrics, detect::parse_boot_id)
    }

    fn read_uptime(&mut self, metrics: &ComponentMetrics) -> Option<f64> {
        let path = self.config.procfs_root.join("uptime");
        self.parsed(path, metrics, detect::parse_uptime)
    }

    fn read_firmware(&mut self, metrics: &ComponentMetrics) -> Option<String> {
        let path = self.config.firmware_file.clone();
        let key = self.config.firmware_key().to_string();
        match self.config.firmware_format {
            FirmwareFormat::OsRelease => self.parsed(path, metrics, |t| {
                detect::os_release_value(t, &key)
                    .ok_or_else(|| format!("expected a line {key}=<firmware version>"))
            }),
            FirmwareFormat::Plain => self.parsed(path, metrics, |t| {
                detect::plain_value(t)
                    .ok_or_else(|| "expected the firmware version on the first line".to_string())
            }),
        }
    }

    /// An upgrade starts when the marker file appears and ends when it
    /// goes: `ok` when the firmware changed meanwhile, else `failed` (the
    /// device rolled back, or the tool gave up). Whether the state changed.
    fn upgrade(&mut self, ts: i64, metrics: &ComponentMetrics, out: &mut Reading) -> bool {
        let Some(path) = self.config.upgrade_marker_file.clone() else {
            return false;
        };
        let marker = match std::fs::read_to_string(&path) {
            Ok(text) => Some(detect::plain_value(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                // Unreadable: neither started nor over.
                self.unavailable(&path, &e.to_string(), metrics);
                return false;
            }
        };
        let firmware = self.state.firmware.clone();
        let version = |v: &Option<String>| v.as_deref().map(Value::from);
        match (marker, self.state.upgrade.take()) {
            (Some(to), None) => {
                let mut attrs = Vec::new();
                if let Some(f) = version(&firmware) {
                    attrs.push((names::FIRMWARE_FROM, f));
                }
                if let Some(t) = version(&to) {
                    attrs.push((names::FIRMWARE_TO, t));
                }
                out.events.push(event(
                    ts,
                    names::UPGRADE_START,
                    Severity::Info,
                    format!(
                        "a firmware upgrade started{}",
                        to.as_deref().map_or(String::new(), |t| format!(" to {t}"))
                    ),
                    attrs,
                ));
                self.state.upgrade = Some(Upgrade { from: firmware, to });
                true
            }
            (None, Some(up)) => {
                let ok = firmware.is_some() && firmware != up.from;
                let mut attrs = vec![(
                    names::FIRMWARE_RESULT,
                    Value::from(if ok { "ok" } else { "failed" }),
                )];
                if let Some(f) = version(&up.from) {
                    attrs.push((names::FIRMWARE_FROM, f));
                }
                if let Some(t) = version(&if ok { firmware } else { up.to }) {
                    attrs.push((names::FIRMWARE_TO, t));
                }
                let (severity, message) = if ok {
                    (Severity::Info, "the firmware upgrade is over: ok")
                } else {
                    (
                        Severity::Error,
                        "the firmware upgrade is over and the firmware did not change: failed",
                    )
                };
                out.events.push(event(
                    ts,
                    names::UPGRADE_END,
                    severity,
                    message.into(),
                    attrs,
                ));
                true
            }
            (Some(_), Some(up)) => {
                self.state.upgrade = Some(up);
                false
            }
            (None, None) => false,
        }
    }

    fn read_model(&mut self, metrics: &ComponentMetrics) -> Option<String> {
        let path = self.config.model_file.clone()?;
        // A device tree's model ends with a NUL.
        self.parsed(path, metrics, |t| {
            detect::plain_value(t.trim_end_matches('\0'))
                .ok_or_else(|| "expected the model on the first line".to_string())
        })
    }
}

/// The boot's time, whole Unix seconds.
fn boot_time(wall_ms: i64, uptime_secs: f64) -> i64 {
    (wall_ms as f64 / 1000.0 - uptime_secs).round() as i64
}

fn sample(meta: &Arc<MetricMeta>, labels: Labels, value: f64, now: i64) -> Metric {
    Metric {
        name: meta.family.clone(),
        labels,
        value,
        timestamp_ms: now,
        meta: meta.clone(),
        exemplar: None,
    }
}

fn total(meta: &Arc<MetricMeta>, labels: Labels, n: u64, now: i64) -> Metric {
    let mut m = sample(meta, labels, n as f64, now);
    m.name = Arc::from(format!("{}_total", meta.family));
    m
}

impl Source for LifecycleSource {
    fn run(self: Box<Self>, mut cx: SourceContext) -> ComponentFuture {
        Box::pin(async move {
            let dir = cx.data_dir.join("device_lifecycle").join(cx.metrics.id());
            let metrics = cx.metrics.clone();
            let config = self.config.clone();
            // Reading and writing files may block: on the blocking pool, the
            // state moving there and back (as `device_health` does).
            let blocking = |e: tokio::task::JoinError| {
                ComponentError::new(format!("reading the device's lifecycle: {e}"))
            };
            let mut lc =
                tokio::task::spawn_blocking(move || Lifecycle::open(config, &dir, &metrics))
                    .await
                    .map_err(blocking)?;
            let mut tick = tokio::time::interval(self.config.interval.get());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cx.shutdown.wait() => break,
                    _ = tick.tick() => {}
                }
                let metrics = cx.metrics.clone();
                let (back, reading) = tokio::task::spawn_blocking(move || {
                    let reading = lc.read(now_unix_ms(), Instant::now(), &metrics);
                    (lc, reading)
                })
                .await
                .map_err(blocking)?;
                lc = back;
                if !reading.events.is_empty() && !cx.out.send(Events::Logs(reading.events)).await {
                    break;
                }
                if !cx.out.send(Events::Metrics(reading.metrics)).await {
                    break;
                }
            }
            let metrics = cx.metrics.clone();
            tokio::task::spawn_blocking(move || lc.stop(&metrics))
                .await
                .map_err(blocking)?;
            Ok(())
        })
    }
}
