//! A synthetic fleet with known anomalies, to measure the `anomaly`
//! transform: how many injected anomalies it finds (recall) and how many
//! of its events are real (precision), per kind.
//!
//! Each device reports `machine_temperature_celsius` every `interval_ms`
//! with the labels `device_id`, `line` (8), `shift` (3), `firmware` (4
//! versions, `2.4.1` on about one device in ten) and `asset_class` (4): a
//! level of its own, a daily cycle (peak mid-afternoon, amplitude 5–15),
//! Gaussian noise (σ 0.5–1.5 per device). After `warmup_days` of clean
//! data, the injected anomalies, each sized in the device's σ:
//!
//! - `spike`: one sample off by 7–12 σ (up or down);
//! - `level_shift`: +5–8 σ for 6 hours;
//! - `drift`: a ramp from 0 to +10 σ over 12 hours, then back;
//! - `firmware_fault`: every device on `2.4.1` at once, +6 σ for 4 hours.
//!
//! An injected anomaly is found when an anomaly opens on its device
//! between its start and `tolerance_samples` samples after its end; an
//! event that matches no injected anomaly is false. The same seed gives
//! the same fleet.

#![allow(clippy::cast_precision_loss)]

use super::Anomaly;
use crate::BuildContext;
use iotel_engine::Transform;
use iotel_model::{Events, Labels, Metric, MetricType};
use std::sync::Arc;

pub const METRIC: &str = "machine_temperature_celsius";
pub const BAD_FIRMWARE: &str = "2.4.1";
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// 2026-01-05T00:00:00Z.
const T0_MS: i64 = 1_767_571_200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Spike,
    LevelShift,
    Drift,
    FirmwareFault,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Spike,
        Kind::LevelShift,
        Kind::Drift,
        Kind::FirmwareFault,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Spike => "spike",
            Kind::LevelShift => "level_shift",
            Kind::Drift => "drift",
            Kind::FirmwareFault => "firmware_fault",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub devices: usize,
    pub days: i64,
    pub interval_ms: i64,
    pub warmup_days: i64,
    pub seed: u64,
    /// Kinds injected.
    pub kinds: Vec<Kind>,
    /// Devices per batch (a batch is what one scrape or push brings).
    pub batch_devices: usize,
    pub tolerance_samples: i64,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            devices: 200,
            days: 6,
            interval_ms: 120_000,
            warmup_days: 2,
            seed: 7,
            kinds: Kind::ALL.to_vec(),
            batch_devices: 50,
            tolerance_samples: 10,
        }
    }
}

/// One injected anomaly.
#[derive(Debug, Clone)]
pub struct Injected {
    pub device: usize,
    pub kind: Kind,
    pub start_ms: i64,
    pub end_ms: i64,
    /// In σ; negative for a spike down.
    pub size: f64,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub labels: Labels,
    pub firmware_bad: bool,
    level: f64,
    amplitude: f64,
    sigma: f64,
}

/// splitmix64: small, seedable, good enough for test data.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(z: u64) -> f64 {
    ((mix(z) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

fn key(seed: u64, a: u64, b: u64) -> u64 {
    mix(seed ^ mix(a.wrapping_mul(0x1000_0001) ^ mix(b)))
}

#[derive(Debug, Clone)]
pub struct Fleet {
    pub spec: Spec,
    pub devices: Vec<Device>,
    pub injected: Vec<Injected>,
}

impl Fleet {
    pub fn generate(spec: Spec) -> Fleet {
        let s = spec.seed;
        let pick =
            |d: usize, what: u64, n: usize| (mix(key(s, d as u64, what)) % n as u64) as usize;
        let lines = ["L1", "L2", "L3", "L4", "L5", "L6", "L7", "L8"];
        let shifts = ["early", "late", "night"];
        let firmwares = ["2.3.0", "2.3.1", "2.4.0"];
        let classes = ["pump", "compressor", "conveyor", "press"];
        let devices: Vec<Device> = (0..spec.devices)
            .map(|d| {
                let bad = unit(key(s, d as u64, 11)) < 0.1;
                let firmware = if bad {
                    BAD_FIRMWARE
                } else {
                    firmwares[pick(d, 12, firmwares.len())]
                };
                Device {
                    labels: Labels::from_pairs([
                        ("device_id", format!("d{d:05}").as_str()),
                        ("line", lines[pick(d, 13, lines.len())]),
                        ("shift", shifts[pick(d, 14, shifts.len())]),
                        ("firmware", firmware),
                        ("asset_class", classes[pick(d, 15, classes.len())]),
                    ]),
                    firmware_bad: bad,
                    level: 20.0 + 40.0 * unit(key(s, d as u64, 16)),
                    amplitude: 5.0 + 10.0 * unit(key(s, d as u64, 17)),
                    sigma: 0.5 + unit(key(s, d as u64, 18)),
                }
            })
            .collect();
        let mut injected = Vec::new();
        let start = spec.warmup_days * DAY_MS;
        // The firmware fault: the day after the warm-up, 10:00 to 14:00.
        let fault = (start + DAY_MS + 10 * HOUR_MS, start + DAY_MS + 14 * HOUR_MS);
        if spec.kinds.contains(&Kind::FirmwareFault) {
            for (d, dev) in devices.iter().enumerate().filter(|(_, d)| d.firmware_bad) {
                let _ = dev;
                injected.push(Injected {
                    device: d,
                    kind: Kind::FirmwareFault,
                    start_ms: fault.0,
                    end_ms: fault.1,
                    size: 6.0,
                });
            }
        }
        let span = (spec.days - spec.warmup_days) * DAY_MS - 13 * HOUR_MS;
        for d in 0..spec.devices {
            for (i, kind) in [Kind::Spike, Kind::LevelShift, Kind::Drift]
                .into_iter()
                .enumerate()
            {
                if !spec.kinds.contains(&kind) {
                    continue;
                }
                let share = if kind == Kind::Spike { 0.3 } else { 0.15 };
                if unit(key(s, d as u64, 20 + i as u64)) >= share || span <= 0 {
                    continue;
                }
                let length = match kind {
                    Kind::Spike => spec.interval_ms,
                    Kind::LevelShift => 6 * HOUR_MS,
                    _ => 12 * HOUR_MS,
                };
                // A start on the sample grid that overlaps nothing injected
                // on this device, nor the firmware fault; a few tries.
                for attempt in 0..8u64 {
                    let at = start
                        + ((unit(key(s, d as u64, 30 + 8 * i as u64 + attempt)) * span as f64)
                            as i64
                            / spec.interval_ms)
                            * spec.interval_ms;
                    let end = at + length;
                    let clear = |a: i64, b: i64| end + 2 * HOUR_MS <= a || b + 2 * HOUR_MS <= at;
                    let overlaps = injected
                        .iter()
                        .filter(|j: &&Injected| j.device == d || j.kind == Kind::FirmwareFault)
                        .any(|j| !clear(j.start_ms, j.end_ms));
                    if overlaps {
                        continue;
                    }
                    let u = unit(key(s, d as u64, 60 + i as u64));
                    let size = match kind {
                        Kind::Spike if u < 0.5 => -(7.0 + 10.0 * u),
                        Kind::Spike => 7.0 + 10.0 * (u - 0.5),
                        Kind::LevelShift => 5.0 + 3.0 * u,
                        _ => 10.0,
                    };
                    injected.push(Injected {
                        device: d,
                        kind,
                        start_ms: at,
                        end_ms: end,
                        size,
                    });
                    break;
                }
            }
        }
        Fleet {
            spec,
            devices,
            injected,
        }
    }

    /// Device `d`'s value at step `step` (time `step · interval` after the
    /// start), before injections.
    fn clean(&self, d: usize, dev: &Device, step: i64) -> f64 {
        let t = step * self.spec.interval_ms;
        let day = (t % DAY_MS) as f64 / DAY_MS as f64;
        // Peak at 15:00.
        let cycle = (2.0 * std::f64::consts::PI * (day - 0.375)).sin();
        let (u1, u2) = (
            unit(key(self.spec.seed, d as u64, 1_000_000 + step as u64)),
            unit(key(self.spec.seed ^ 0xABCD, d as u64, step as u64)),
        );
        let gauss = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        dev.level + dev.amplitude * cycle + dev.sigma * gauss
    }

    pub fn steps(&self) -> i64 {
        self.spec.days * DAY_MS / self.spec.interval_ms
    }

    /// Every sample of step `step`, one `Vec` per batch of devices.
    pub fn batches(&self, step: i64, injected_by_device: &[Vec<usize>]) -> Vec<Vec<Metric>> {
        let t = step * self.spec.interval_ms;
        let name: Arc<str> = Arc::from(METRIC);
        let mut batches = Vec::new();
        let mut batch = Vec::with_capacity(self.spec.batch_devices);
        for (d, dev) in self.devices.iter().enumerate() {
            let mut v = self.clean(d, dev, step);
            for j in injected_by_device.get(d).into_iter().flatten() {
                let Some(i) = self.injected.get(*j) else {
                    continue;
                };
                if t < i.start_ms || t >= i.end_ms.max(i.start_ms + 1) {
                    continue;
                }
                v += dev.sigma
                    * match i.kind {
                        Kind::Drift => {
                            i.size * (t - i.start_ms) as f64 / (i.end_ms - i.start_ms) as f64
                        }
                        _ => i.size,
                    };
            }
            batch.push(Metric::new(
                name.clone(),
                MetricType::Gauge,
                dev.labels.clone(),
                v,
                T0_MS + t,
            ));
            if batch.len() >= self.spec.batch_devices {
                batches.push(std::mem::take(&mut batch));
            }
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        batches
    }
}

/// What one kind scored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KindScore {
    pub injected: usize,
    pub found: usize,
}

impl KindScore {
    pub fn recall(&self) -> f64 {
        if self.injected == 0 {
            1.0
        } else {
            self.found as f64 / self.injected as f64
        }
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Per kind, in `Kind::ALL` order (kinds not injected have 0).
    pub kinds: Vec<(Kind, KindScore)>,
    /// Anomalies opened.
    pub events: usize,
    /// Of them, those matching an injected anomaly.
    pub true_events: usize,
    /// Events matched to the firmware fault, and of them those whose
    /// explanation ranks `firmware=2.4.1` first.
    pub firmware_events: usize,
    pub firmware_explained: usize,
    pub samples: usize,
    pub device_days: f64,
}

impl Report {
    pub fn precision(&self) -> f64 {
        if self.events == 0 {
            1.0
        } else {
            self.true_events as f64 / self.events as f64
        }
    }

    pub fn false_per_device_day(&self) -> f64 {
        (self.events - self.true_events) as f64 / self.device_days.max(1.0)
    }

    pub fn kind(&self, k: Kind) -> KindScore {
        self.kinds
            .iter()
            .find(|(kind, _)| *kind == k)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }

    pub fn explained_share(&self) -> f64 {
        if self.firmware_events == 0 {
            0.0
        } else {
            self.firmware_explained as f64 / self.firmware_events as f64
        }
    }
}

/// Runs `transform` over the fleet and scores its anomaly events.
pub fn evaluate(fleet: &Fleet, transform: &mut Anomaly) -> Report {
    let mut by_device: Vec<Vec<usize>> = vec![Vec::new(); fleet.devices.len()];
    for (j, i) in fleet.injected.iter().enumerate() {
        if let Some(v) = by_device.get_mut(i.device) {
            v.push(j);
        }
    }
    let index: std::collections::HashMap<&str, usize> = fleet
        .devices
        .iter()
        .enumerate()
        .filter_map(|(d, dev)| Some((dev.labels.get("device_id")?, d)))
        .collect();
    let tolerance = fleet.spec.tolerance_samples * fleet.spec.interval_ms;
    let mut found = vec![false; fleet.injected.len()];
    let mut report = Report {
        device_days: fleet.devices.len() as f64 * (fleet.spec.days - fleet.spec.warmup_days) as f64,
        ..Report::default()
    };
    let mut out = Vec::new();
    let mut routed = Vec::new();
    for step in 0..fleet.steps() {
        for batch in fleet.batches(step, &by_device) {
            report.samples += batch.len();
            transform.transform(Events::Metrics(batch), &mut out);
            out.clear();
            transform.routed(&mut routed);
            for (_, events) in routed.drain(..) {
                let Events::Logs(records) = events else {
                    continue;
                };
                for r in records {
                    if r.fields.get("anomaly.state").and_then(|v| v.as_str()) != Some("open") {
                        continue;
                    }
                    report.events += 1;
                    let t = r.timestamp_ns / 1_000_000 - T0_MS;
                    let Some(d) = r.labels.get("device_id").and_then(|id| index.get(id)) else {
                        continue;
                    };
                    let hit = by_device.get(*d).into_iter().flatten().find(|j| {
                        fleet
                            .injected
                            .get(**j)
                            .is_some_and(|i| t >= i.start_ms && t <= i.end_ms + tolerance)
                    });
                    let Some(j) = hit else { continue };
                    report.true_events += 1;
                    if let Some(f) = found.get_mut(*j) {
                        *f = true;
                    }
                    if fleet.injected.get(*j).map(|i| i.kind) == Some(Kind::FirmwareFault) {
                        report.firmware_events += 1;
                        let first = r
                            .fields
                            .get("explanation")
                            .and_then(|e| e.get(0))
                            .map(|e| (e["dimension"].as_str(), e["value"].as_str()));
                        if first == Some((Some("firmware"), Some(BAD_FIRMWARE))) {
                            report.firmware_explained += 1;
                        }
                    }
                }
            }
        }
    }
    report.kinds = Kind::ALL
        .iter()
        .map(|k| {
            let mut s = KindScore::default();
            for (i, f) in fleet.injected.iter().zip(&found) {
                if i.kind == *k {
                    s.injected += 1;
                    s.found += usize::from(*f);
                }
            }
            (*k, s)
        })
        .collect();
    report
}

/// The transform for `detector` with the settings the evaluation uses
/// (see README): one rule on `machine_temperature_celsius`.
///
/// # Errors
/// A config that does not validate (a bug in the settings here).
pub fn transform_for(detector: &str, extra: &str) -> Result<Anomaly, String> {
    let text = format!(
        "dimensions = [\"line\", \"shift\", \"firmware\", \"asset_class\"]\n\
         rules = [{{ metric = \"{METRIC}\", detector = \"{detector}\"{extra} }}]\n"
    );
    let cfg: super::Config = toml::from_str(&text).map_err(|e| e.to_string())?;
    let problems = cfg.validate();
    if !problems.is_empty() {
        return Err(format!("{problems:?}"));
    }
    cfg.build_anomaly(&BuildContext::for_test("anomaly"))
        .map_err(|p| format!("{p:?}"))
}
