//! `device_health`: the device's own sensors and the agent's own footprint.
//!
//! | metric | from |
//! |---|---|
//! | `cpu_temp_celsius{zone, sensor}` | `<sysfs_root>/class/thermal/thermal_zone*/temp` (millidegrees) and `type` |
//! | `battery_level_percent{supply}` | `<sysfs_root>/class/power_supply/*/capacity` where `type` is `Battery` |
//! | `signal_rssi_dbm{interface}` | the signal level column of `<procfs_root>/net/wireless` |
//! | `process_cpu_seconds_total` | utime + stime of `<procfs_root>/self/stat`, at USER_HZ = 100 |
//! | `process_resident_memory_bytes` | `VmRSS` of `<procfs_root>/self/status` |
//!
//! A sensor that is missing or unreadable is reported once (a warning naming
//! the path) and skipped; it never stops the others. Readings run on
//! tokio's blocking pool, so a slow sysfs file does not stall the runtime.
//! A sensor whose metric families are all retired through the node API is
//! not read at all.

use crate::{BuildContext, Problem};
use iotel_engine::config::Duration;
use iotel_engine::families::{FamilyGate, Retired};
use iotel_engine::{ComponentError, ComponentFuture, ComponentMetrics, Source, SourceContext};
use iotel_model::{Events, Labels, Metric, MetricMeta, MetricType, now_unix_ms};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensor {
    CpuTemp,
    Battery,
    Wireless,
    Process,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Time between readings.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Where sysfs is mounted; tests point it at a fixture tree.
    #[serde(default = "default_sysfs_root")]
    pub sysfs_root: PathBuf,
    /// Where procfs is mounted; tests point it at a fixture tree.
    #[serde(default = "default_procfs_root")]
    pub procfs_root: PathBuf,
    /// Which sensors to read; all by default.
    #[serde(default = "default_sensors")]
    pub sensors: BTreeSet<Sensor>,
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_sysfs_root() -> PathBuf {
    PathBuf::from("/sys")
}

fn default_procfs_root() -> PathBuf {
    PathBuf::from("/proc")
}

fn default_sensors() -> BTreeSet<Sensor> {
    [
        Sensor::CpuTemp,
        Sensor::Battery,
        Sensor::Wireless,
        Sensor::Process,
    ]
    .into()
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
        if self.sensors.is_empty() {
            p.push(Problem::new(
                "sensors",
                "expected at least one of: cpu_temp, battery, wireless, process",
            ));
        }
        p
    }

    /// # Errors
    /// None today; the signature is every component's.
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
        Ok(Box::new(DeviceHealth::new(self.clone())))
    }
}

/// Reads the sensors; also used on its own in tests.
#[derive(Debug)]
pub struct DeviceHealth {
    config: Config,
    /// Paths already reported missing, so each is reported once.
    reported: BTreeSet<PathBuf>,
    temp: Arc<MetricMeta>,
    battery: Arc<MetricMeta>,
    rssi: Arc<MetricMeta>,
    cpu: Arc<MetricMeta>,
    rss: Arc<MetricMeta>,
    /// The node's retired families as of this reading: a sensor whose
    /// families are all retired is not read.
    retired: Option<Arc<Retired>>,
}

fn meta(name: &str, kind: MetricType, help: &str, unit: &str) -> Arc<MetricMeta> {
    let mut m = MetricMeta::new(name, kind).with_help(help);
    m.unit = Some(unit.into());
    Arc::new(m)
}

impl DeviceHealth {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            reported: BTreeSet::new(),
            temp: meta(
                "cpu_temp_celsius",
                MetricType::Gauge,
                "Temperature of a thermal zone.",
                "celsius",
            ),
            battery: meta(
                "battery_level_percent",
                MetricType::Gauge,
                "Battery charge level.",
                "percent",
            ),
            rssi: meta(
                "signal_rssi_dbm",
                MetricType::Gauge,
                "Wireless signal level.",
                "dbm",
            ),
            cpu: meta(
                "process_cpu_seconds",
                MetricType::Counter,
                "CPU time the agent used, user plus system.",
                "seconds",
            ),
            rss: meta(
                "process_resident_memory_bytes",
                MetricType::Gauge,
                "Resident memory of the agent.",
                "bytes",
            ),
            retired: None,
        }
    }

    /// Whether every family `sensor` makes is retired.
    fn retired(&self, sensor: Sensor) -> bool {
        let Some(retired) = &self.retired else {
            return false;
        };
        match sensor {
            Sensor::CpuTemp => retired.covers_family(&self.temp),
            Sensor::Battery => retired.covers_family(&self.battery),
            Sensor::Wireless => retired.covers_family(&self.rssi),
            Sensor::Process => retired.covers_family(&self.cpu) && retired.covers_family(&self.rss),
        }
    }

    /// One reading of every configured sensor.
    pub fn read(&mut self, metrics: &ComponentMetrics) -> Vec<Metric> {
        let now = now_unix_ms();
        let mut out = Vec::new();
        let sensors = self.config.sensors.clone();
        for sensor in sensors {
            if self.retired(sensor) {
                continue;
            }
            match sensor {
                Sensor::CpuTemp => self.read_thermal(now, metrics, &mut out),
                Sensor::Battery => self.read_battery(now, metrics, &mut out),
                Sensor::Wireless => self.read_wireless(now, metrics, &mut out),
                Sensor::Process => self.read_process(now, metrics, &mut out),
            }
        }
        out
    }

    /// Reports a missing or unreadable sensor the first time only.
    fn missing(&mut self, path: &Path, why: &str, metrics: &ComponentMetrics) {
        if self.reported.insert(path.to_path_buf()) {
            tracing::warn!("device_health: leaving out {}: {why}", path.display());
            metrics.error("sensor_unavailable");
        }
    }

    fn list(&mut self, dir: &Path, metrics: &ComponentMetrics) -> Vec<PathBuf> {
        match std::fs::read_dir(dir) {
            Ok(rd) => {
                let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                v.sort();
                v
            }
            Err(e) => {
                self.missing(dir, &e.to_string(), metrics);
                vec![]
            }
        }
    }

    fn read_trimmed(&mut self, path: &Path, metrics: &ComponentMetrics) -> Option<String> {
        match std::fs::read_to_string(path) {
            Ok(s) => Some(s.trim().to_string()),
            Err(e) => {
                self.missing(path, &e.to_string(), metrics);
                None
            }
        }
    }

    fn read_thermal(&mut self, now: i64, metrics: &ComponentMetrics, out: &mut Vec<Metric>) {
        let dir = self.config.sysfs_root.join("class/thermal");
        for zone in self.list(&dir, metrics) {
            let Some(name) = zone
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if !name.starts_with("thermal_zone") {
                continue;
            }
            let Some(raw) = self.read_trimmed(&zone.join("temp"), metrics) else {
                continue;
            };
            let Ok(milli) = raw.parse::<i64>() else {
                self.missing(
                    &zone.join("temp"),
                    &format!("expected millidegrees Celsius, got \"{raw}\""),
                    metrics,
                );
                continue;
            };
            let sensor = std::fs::read_to_string(zone.join("type"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            let labels = Labels::from_pairs([("zone", name.as_str()), ("sensor", sensor.as_str())]);
            out.push(sample(&self.temp, labels, milli as f64 / 1000.0, now));
        }
    }

    fn read_battery(&mut self, now: i64, metrics: &ComponentMetrics, out: &mut Vec<Metric>) {
        let dir = self.config.sysfs_root.join("class/power_supply");
        for supply in self.list(&dir, metrics) {
            let is_battery =
                std::fs::read_to_string(supply.join("type")).is_ok_and(|t| t.trim() == "Battery");
            if !is_battery {
                continue;
            }
            let Some(name) = supply
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            let Some(raw) = self.read_trimmed(&supply.join("capacity"), metrics) else {
                continue;
            };
            match raw.parse::<f64>() {
                Ok(pct) => out.push(sample(
                    &self.battery,
                    Labels::from_pairs([("supply", name)]),
                    pct,
                    now,
                )),
                Err(_) => self.missing(
                    &supply.join("capacity"),
                    &format!("expected a percentage, got \"{raw}\""),
                    metrics,
                ),
            }
        }
    }

    fn read_wireless(&mut self, now: i64, metrics: &ComponentMetrics, out: &mut Vec<Metric>) {
        let path = self.config.procfs_root.join("net/wireless");
        let Some(text) = self.read_trimmed(&path, metrics) else {
            return;
        };
        // Two header lines, then: `wlan0: 0000   54.  -56.  -256  0 0 0 0 0  0`
        for line in text.lines().skip(2) {
            let Some((iface, rest)) = line.split_once(':') else {
                continue;
            };
            let level = rest
                .split_whitespace()
                .nth(2)
                .map(|l| l.trim_end_matches('.'));
            match level.and_then(|l| l.parse::<f64>().ok()) {
                Some(dbm) => out.push(sample(
                    &self.rssi,
                    Labels::from_pairs([("interface", iface.trim())]),
                    dbm,
                    now,
                )),
                None => self.missing(
                    &path,
                    &format!("cannot read the signal level of \"{}\"", iface.trim()),
                    metrics,
                ),
            }
        }
    }

    fn read_process(&mut self, now: i64, metrics: &ComponentMetrics, out: &mut Vec<Metric>) {
        const USER_HZ: f64 = 100.0;
        let stat_path = self.config.procfs_root.join("self/stat");
        if let Some(stat) = self.read_trimmed(&stat_path, metrics) {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
            let fields: Vec<&str> = after.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the line; 12 and 13 after `comm`.
            match (
                fields.get(11).and_then(|v| v.parse::<u64>().ok()),
                fields.get(12).and_then(|v| v.parse::<u64>().ok()),
            ) {
                (Some(u), Some(s)) => {
                    let mut m = sample(&self.cpu, Labels::empty(), (u + s) as f64 / USER_HZ, now);
                    m.name = Arc::from("process_cpu_seconds_total");
                    out.push(m);
                }
                _ => self.missing(&stat_path, "expected utime and stime fields", metrics),
            }
        }
        let status_path = self.config.procfs_root.join("self/status");
        if let Some(status) = self.read_trimmed(&status_path, metrics) {
            let kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            match kib {
                Some(kib) => out.push(sample(&self.rss, Labels::empty(), (kib * 1024) as f64, now)),
                None => self.missing(&status_path, "expected a VmRSS line", metrics),
            }
        }
    }
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

impl Source for DeviceHealth {
    fn run(self: Box<Self>, mut cx: SourceContext) -> ComponentFuture {
        Box::pin(async move {
            let mut tick = tokio::time::interval(self.config.interval.get());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut health = self;
            loop {
                tokio::select! {
                    _ = cx.shutdown.wait() => break,
                    _ = tick.tick() => {}
                }
                // sysfs reads can block for long (an ACPI battery answers
                // slowly); on the agent's single-threaded runtime that would
                // stall every other component, so they run on the blocking
                // pool, the state moving there and back.
                let metrics = cx.metrics.clone();
                health.retired = cx.out.gate().and_then(FamilyGate::current_retired);
                let (back, reading) = tokio::task::spawn_blocking(move || {
                    let reading = health.read(&metrics);
                    (health, reading)
                })
                .await
                .map_err(|e| ComponentError::new(format!("reading the sensors: {e}")))?;
                health = back;
                if !cx.out.send(Events::Metrics(reading)).await {
                    break;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
