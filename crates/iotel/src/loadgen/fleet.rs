//! The simulated fleet: devices with realistic label sets, each producing
//! metrics, log lines and spans at configured rates, with a clock that
//! drifts from true time by a fixed offset per device.
//!
//! Everything is derived from the seed, so two runs with the same seed
//! generate the same fleet.

use iotel_model::{Events, Labels, LogRecord, Metric, MetricType, Severity, Span, SpanStatus};
use std::sync::Arc;

const MODELS: [&str; 5] = ["th-200", "th-300", "pm-10", "vib-3", "gw-lite"];
const FIRMWARE: [&str; 4] = ["1.4.2", "1.5.0", "1.5.1", "2.0.0-rc1"];
const ASSET_CLASSES: [&str; 4] = ["pump", "compressor", "conveyor", "hvac"];
const LINES: [&str; 3] = ["line-a", "line-b", "line-c"];

/// The series every device reports, cycled through at the metric rate.
const SERIES: [(&str, MetricType); 10] = [
    ("device_temperature_celsius", MetricType::Gauge),
    ("device_humidity_ratio", MetricType::Gauge),
    ("device_battery_volts", MetricType::Gauge),
    ("device_rssi_dbm", MetricType::Gauge),
    ("device_cpu_ratio", MetricType::Gauge),
    ("device_memory_bytes", MetricType::Gauge),
    ("device_uptime_seconds", MetricType::Counter),
    ("device_messages_sent_total", MetricType::Counter),
    ("device_reconnects_total", MetricType::Counter),
    ("device_readings_total", MetricType::Counter),
];

const LOG_LINES: [(&str, Severity); 6] = [
    ("sensor read ok", Severity::Info),
    ("published reading to broker", Severity::Debug),
    ("reading outside calibrated range", Severity::Warn),
    ("broker connection lost, reconnecting", Severity::Warn),
    ("firmware check: up to date", Severity::Info),
    ("sensor bus timeout", Severity::Error),
];

/// One simulated device.
pub struct Device {
    pub index: usize,
    /// The device clock minus true time, in milliseconds.
    pub drift_ms: i64,
    labels: Labels,
    /// Per series: the series' labels, and its metadata shared by samples.
    series: Vec<(Arc<str>, Labels, MetricType)>,
    next_series: usize,
    counters: [f64; SERIES.len()],
    /// Each series' last sample time: a series never has two samples at
    /// the same millisecond, so every sample can be told apart downstream.
    last_ms: [i64; SERIES.len()],
    log_seq: u64,
    /// Events produced so far, per signal.
    produced: [u64; 3],
}

/// What every device produces per second.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub metrics: f64,
    pub logs: f64,
    pub spans: f64,
}

impl Device {
    pub fn new(index: usize, site: &str, tenant: Option<&str>, drift_ms: i64) -> Device {
        let id = device_id(index);
        let mut b = Labels::empty().to_builder();
        b.set("device_id", &id)
            .set("model", MODELS[index % MODELS.len()])
            .set("firmware", FIRMWARE[(index / 7) % FIRMWARE.len()])
            .set(
                "asset_class",
                ASSET_CLASSES[(index / 3) % ASSET_CLASSES.len()],
            )
            .set("line", LINES[index % LINES.len()])
            .set("site", site);
        if let Some(t) = tenant {
            b.set("tenant", t);
        }
        let labels = b.build();
        let series = SERIES
            .iter()
            .map(|(name, kind)| (Arc::from(*name), labels.clone(), *kind))
            .collect();
        Device {
            index,
            drift_ms,
            labels,
            series,
            next_series: 0,
            counters: [0.0; SERIES.len()],
            last_ms: [i64::MIN; SERIES.len()],
            log_seq: 0,
            produced: [0; 3],
        }
    }

    /// The events due by `since_start_s` seconds into the run (at true time
    /// `now_ms`) and not produced yet, appended to the three batches. Counts
    /// follow from the time since the start alone, so a run of D seconds
    /// produces exactly ⌊rate × D⌋ events of each signal per device.
    pub fn tick(
        &mut self,
        rng: &mut fastrand::Rng,
        rates: Rates,
        since_start_s: f64,
        now_ms: i64,
        out: &mut Produced,
    ) {
        let device_now = now_ms + self.drift_ms;
        for _ in 0..self.due(0, rates.metrics * since_start_s) {
            let i = self.next_series;
            self.next_series = (i + 1) % self.series.len();
            let (name, labels, kind) = &self.series[i];
            let at = device_now.max(self.last_ms[i].saturating_add(1));
            self.last_ms[i] = at;
            let value = match kind {
                MetricType::Counter => {
                    self.counters[i] += 1.0 + rng.f64() * 4.0;
                    self.counters[i]
                }
                _ => gauge_value(i, self.index, rng),
            };
            out.metrics
                .push(Metric::new(name.clone(), *kind, labels.clone(), value, at));
        }
        for _ in 0..self.due(1, rates.logs * since_start_s) {
            let (message, severity) = LOG_LINES[rng.usize(..LOG_LINES.len())];
            let mut r = LogRecord::new(device_now * 1_000_000, message);
            r.labels = self.labels.clone();
            r.severity = Some(severity);
            r.fields.insert("seq".into(), self.log_seq.into());
            self.log_seq += 1;
            out.logs.push(r);
        }
        for _ in 0..self.due(2, rates.spans * since_start_s) {
            let mut trace_id = [0u8; 16];
            let mut span_id = [0u8; 8];
            rng.fill(&mut trace_id);
            rng.fill(&mut span_id);
            trace_id[0] |= 1;
            span_id[0] |= 1;
            let took_ns = 200_000 + rng.i64(0..20_000_000);
            let end_ns = device_now * 1_000_000;
            out.spans.push(Span {
                trace_id,
                span_id,
                parent_span_id: None,
                name: "publish reading".into(),
                start_ns: end_ns - took_ns,
                end_ns,
                labels: self.labels.clone(),
                attributes: serde_json::Map::new(),
                status: SpanStatus::Ok,
            });
        }
    }

    /// How many events of signal `k` are due when `total` should have been
    /// produced by now; counts them as produced.
    fn due(&mut self, k: usize, total: f64) -> usize {
        // A hair above, so 0.1 × 30 is 3 and not 2.999….
        let total = (total + 1e-6).floor() as u64;
        let n = total.saturating_sub(self.produced[k]);
        self.produced[k] += n;
        n as usize
    }
}

pub fn device_id(index: usize) -> String {
    format!("dev-{index:05}")
}

/// The index of a device id this fleet made.
pub fn device_index(id: &str) -> Option<usize> {
    id.strip_prefix("dev-")?.parse().ok()
}

fn gauge_value(series: usize, device: usize, rng: &mut fastrand::Rng) -> f64 {
    let base = 10.0 + (device % 17) as f64;
    match series {
        0 => base + rng.f64() * 2.0,
        1 => 0.3 + rng.f64() * 0.4,
        2 => 3.3 + rng.f64() * 0.8,
        3 => -90.0 + rng.f64() * 40.0,
        4 => rng.f64() * 0.6,
        _ => 2.0e6 + rng.f64() * 1.0e6,
    }
}

/// What devices produced in one tick.
#[derive(Default)]
pub struct Produced {
    pub metrics: Vec<Metric>,
    pub logs: Vec<LogRecord>,
    pub spans: Vec<Span>,
}

impl Produced {
    /// The three signals' event batches, leaving out empty ones.
    pub fn into_batches(self) -> Vec<Events> {
        let mut v = Vec::with_capacity(3);
        if !self.metrics.is_empty() {
            v.push(Events::Metrics(self.metrics));
        }
        if !self.logs.is_empty() {
            v.push(Events::Logs(self.logs));
        }
        if !self.spans.is_empty() {
            v.push(Events::Traces(self.spans));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_produces_its_rates_over_time_and_carries_its_labels_and_drift() {
        let mut d = Device::new(12, "site-1", Some("acme"), 2_500);
        let mut rng = fastrand::Rng::with_seed(1);
        let rates = Rates {
            metrics: 10.0,
            logs: 0.5,
            spans: 0.25,
        };
        let mut p = Produced::default();
        for t in 1..=40 {
            let since_start = f64::from(t) * 0.1;
            d.tick(&mut rng, rates, since_start, 1_000_000, &mut p);
        }
        let (m, l, s) = (p.metrics, p.logs, p.spans);
        assert_eq!((m.len(), l.len(), s.len()), (40, 2, 1));
        assert_eq!(m[0].labels.get("device_id"), Some("dev-00012"));
        assert_eq!(m[0].labels.get("tenant"), Some("acme"));
        assert_eq!(m[0].timestamp_ms, 1_002_500);
        assert_eq!(l[1].fields["seq"], 1);
        assert_eq!(s[0].end_ns, 1_002_500 * 1_000_000);
        assert_eq!(device_index("dev-00012"), Some(12));
    }

    #[test]
    fn a_series_never_has_two_samples_at_the_same_millisecond() {
        let mut d = Device::new(1, "site-1", None, 0);
        let mut rng = fastrand::Rng::with_seed(1);
        let rates = Rates {
            metrics: 10.0,
            logs: 0.0,
            spans: 0.0,
        };
        let mut p = Produced::default();
        // A late tick owes two samples of every series at once.
        d.tick(&mut rng, rates, 2.0, 5_000, &mut p);
        let keys: std::collections::BTreeSet<(String, i64)> = p
            .metrics
            .iter()
            .map(|m| (m.name.to_string(), m.timestamp_ms))
            .collect();
        assert_eq!((p.metrics.len(), keys.len()), (20, 20));
    }
}
