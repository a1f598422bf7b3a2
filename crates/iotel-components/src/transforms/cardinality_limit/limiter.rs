//! The limiter's state: live series per metric and info values per device.
//!
//! Invariants:
//! - A series is a 64-bit hash of its label set (info labels removed) under
//!   the metric's name; a collision merges two series, which at 64 bits and
//!   a few thousand series per metric is negligible.
//! - `LiveSet::next_sweep` is never later than the earliest moment one
//!   of its series can expire: last-seen times only grow, so the minimum
//!   found by a sweep plus the TTL stays a lower bound. A metric at its limit
//!   therefore sweeps at most once per expiry, not once per dropped sample.
//! - Every `series_ttl` a full sweep forgets expired series, metrics left
//!   without series, and devices not seen for `series_ttl`; state is bounded
//!   by what was live in the last two TTLs.

use super::Config;
use crate::BuildContext;
use iotel_engine::{Counter, Registry, Transform};
use iotel_model::{Events, Labels, LabelsBuilder, Metric, MetricMeta, MetricType};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The running transform. [`CardinalityLimit::process`] takes the time as an
/// argument, so tests drive the clock.
#[derive(Debug)]
pub struct CardinalityLimit {
    max_series: usize,
    ttl: Duration,
    warn_interval: Duration,
    info: Option<InfoSeries>,
    metrics: HashMap<Arc<str>, MetricSeries>,
    devices: HashMap<Arc<str>, Device>,
    hasher: RandomState,
    next_sweep: Option<Instant>,
    registry: Registry,
    component_id: Arc<str>,
    discards: Counter,
    /// Samples that carried info labels but no device key: the labels were
    /// stripped and went into no info series.
    without_device: WithoutDevice,
    /// Series-limit warnings logged so far, and the drop count the last one
    /// reported: only so tests can see the warnings without a log
    /// subscriber.
    #[cfg(test)]
    warnings: (u64, u64),
}

/// Counts samples whose info labels were stripped with no device to carry
/// them, warning at most once per `warn_interval`.
#[derive(Debug)]
struct WithoutDevice {
    counter: Counter,
    since_warning: u64,
    last_warning: Option<Instant>,
}

/// How info series are made; present when `info_labels` is not empty.
#[derive(Debug)]
struct InfoSeries {
    /// The info label names, in config order.
    labels: Vec<Arc<str>>,
    device_key: Arc<str>,
    interval: Duration,
    name: Arc<str>,
    meta: Arc<MetricMeta>,
}

#[derive(Debug)]
struct MetricSeries {
    series: LiveSet,
    /// `iotel_cardinality_dropped_total{metric}`, created on the metric's
    /// first drop: a counter per metric seen would grow the node's own
    /// metrics with the very cardinality this transform caps.
    dropped: Option<Counter>,
    dropped_since_warning: u64,
    last_warning: Option<Instant>,
}

#[derive(Debug)]
struct Device {
    /// One value per info label, `None` until a sample carried it.
    values: Vec<Option<Arc<str>>>,
    last_emitted: Instant,
    last_seen: Instant,
}

/// The value of `name` as the shared string the label set holds.
fn shared_value<'a>(labels: &'a Labels, name: &str) -> Option<&'a Arc<str>> {
    labels
        .iter()
        .find(|l| &*l.name == name)
        .map(|l| &l.value)
        .filter(|v| !v.is_empty())
}

fn expired(last_seen: Instant, now: Instant, ttl: Duration) -> bool {
    now.saturating_duration_since(last_seen) >= ttl
}

impl CardinalityLimit {
    pub fn new(config: &Config, cx: &BuildContext) -> Self {
        let info = (!config.info_labels.is_empty()).then(|| {
            let family = config
                .info_metric
                .strip_suffix("_info")
                .unwrap_or(&config.info_metric);
            InfoSeries {
                labels: config
                    .info_labels
                    .iter()
                    .map(|l| Arc::from(l.as_str()))
                    .collect(),
                device_key: Arc::from(config.device_key.as_str()),
                interval: config.info_interval.get(),
                name: Arc::from(config.info_metric.as_str()),
                meta: Arc::new(MetricMeta::new(family, MetricType::Info).with_help(format!(
                    "Identifying labels of a device: {}.",
                    config.info_labels.join(", ")
                ))),
            }
        });
        Self {
            max_series: config.max_series_per_metric.get(),
            ttl: config.series_ttl.get(),
            warn_interval: config.warn_interval.get(),
            info,
            metrics: HashMap::new(),
            devices: HashMap::new(),
            hasher: RandomState::new(),
            next_sweep: None,
            registry: cx.metrics.registry().clone(),
            component_id: Arc::from(cx.id.as_str()),
            discards: cx.metrics.discards("cardinality_limit"),
            without_device: WithoutDevice {
                counter: cx.metrics.registry().counter(
                    "iotel_cardinality_info_without_device_total",
                    "Samples whose info labels were removed but went into no info series: the sample had no device key.",
                    &[("component_id", &cx.id)],
                ),
                since_warning: 0,
                last_warning: None,
            },
            #[cfg(test)]
            warnings: (0, 0),
        }
    }

    /// Limits one batch at time `now`, returning what passes, with info
    /// samples placed before the sample that triggered them.
    pub fn process(&mut self, metrics: Vec<Metric>, now: Instant) -> Vec<Metric> {
        self.sweep_if_due(now);
        let mut out = Vec::with_capacity(metrics.len());
        let mut dropped = 0;
        for mut m in metrics {
            if self.info.as_ref().is_some_and(|i| i.name != m.name)
                && let Some(info) = self.observe_device(&mut m, now)
            {
                out.push(info);
            }
            if self.admit(&m, now) {
                out.push(m);
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.discards.add(dropped);
        }
        out
    }

    /// Strips the info labels off `m`, records them for its device, and
    /// returns the device's info sample when one is due.
    fn observe_device(&mut self, m: &mut Metric, now: Instant) -> Option<Metric> {
        let info = self.info.as_ref()?;
        let values: Vec<Option<Arc<str>>> = info
            .labels
            .iter()
            .map(|n| shared_value(&m.labels, n).cloned())
            .collect();
        let carried_any = values.iter().any(Option::is_some);
        if carried_any {
            let mut b = m.labels.to_builder();
            b.retain(|l| !info.labels.contains(&l.name));
            m.labels = b.build();
        }
        let Some(device_id) = shared_value(&m.labels, &info.device_key).cloned() else {
            if carried_any {
                self.without_device.record(
                    now,
                    self.warn_interval,
                    &self.component_id,
                    &info.device_key,
                );
            }
            return None;
        };
        let device = match self.devices.entry(device_id.clone()) {
            Entry::Occupied(entry) => {
                let d = entry.into_mut();
                d.last_seen = now;
                let mut changed = false;
                for (known, new) in d.values.iter_mut().zip(values) {
                    if let Some(new) = new
                        && known.as_ref() != Some(&new)
                    {
                        *known = Some(new);
                        changed = true;
                    }
                }
                let due = now.saturating_duration_since(d.last_emitted) >= info.interval;
                if !changed && !due {
                    return None;
                }
                d
            }
            Entry::Vacant(entry) if carried_any => entry.insert(Device {
                values,
                last_emitted: now,
                last_seen: now,
            }),
            Entry::Vacant(_) => return None,
        };
        device.last_emitted = now;
        let mut b = LabelsBuilder::with_capacity(info.labels.len() + 1);
        b.set_shared(info.device_key.clone(), device_id);
        for (name, value) in info.labels.iter().zip(&device.values) {
            if let Some(v) = value {
                b.set_shared(name.clone(), v.clone());
            }
        }
        Some(Metric {
            name: info.name.clone(),
            labels: b.build(),
            value: 1.0,
            timestamp_ms: m.timestamp_ms,
            meta: info.meta.clone(),
            exemplar: None,
        })
    }

    /// Whether `m`'s series is live or may become live.
    fn admit(&mut self, m: &Metric, now: Instant) -> bool {
        let hash = self.hasher.hash_one(&m.labels);
        let state = self
            .metrics
            .entry(m.name.clone())
            .or_insert_with(|| MetricSeries {
                series: LiveSet::new(now, self.ttl),
                dropped: None,
                dropped_since_warning: 0,
                last_warning: None,
            });
        if state.series.admit(hash, now, self.max_series, self.ttl) {
            return true;
        }
        state
            .dropped
            .get_or_insert_with(|| {
                self.registry.counter(
                    "iotel_cardinality_dropped_total",
                    "Samples of new series dropped because their metric had reached max_series_per_metric.",
                    &[("component_id", &self.component_id), ("metric", &m.name)],
                )
            })
            .inc();
        state.dropped_since_warning += 1;
        let warn_due = state
            .last_warning
            .is_none_or(|t| now.saturating_duration_since(t) >= self.warn_interval);
        if warn_due {
            tracing::warn!(
                component_id = %self.component_id,
                metric = %m.name,
                max_series_per_metric = self.max_series,
                dropped = state.dropped_since_warning,
                "dropping samples of new series: the metric has reached max_series_per_metric (dropped counts the samples since the last warning)"
            );
            state.last_warning = Some(now);
            #[cfg(test)]
            {
                self.warnings = (self.warnings.0 + 1, state.dropped_since_warning);
            }
            state.dropped_since_warning = 0;
        }
        false
    }

    /// Every `series_ttl`, forgets expired series, empty metrics and
    /// devices that stopped sending.
    fn sweep_if_due(&mut self, now: Instant) {
        let Some(due) = self.next_sweep else {
            self.next_sweep = Some(now + self.ttl);
            return;
        };
        if now < due {
            return;
        }
        let ttl = self.ttl;
        for state in self.metrics.values_mut() {
            state.series.sweep(now, ttl);
        }
        self.metrics.retain(|_, s| !s.series.is_empty());
        self.devices.retain(|_, d| !expired(d.last_seen, now, ttl));
        self.next_sweep = Some(now + ttl);
    }

    /// Series-limit warnings logged so far, and the number of drops the
    /// last one reported.
    #[cfg(test)]
    pub(super) fn warnings(&self) -> (u64, u64) {
        self.warnings
    }

    /// Series of `metric` held now, expired or not.
    #[cfg(test)]
    pub(super) fn held_series(&self, metric: &str) -> usize {
        self.metrics.get(metric).map_or(0, |s| s.series.len())
    }

    #[cfg(test)]
    pub(super) fn held_metrics_and_devices(&self) -> (usize, usize) {
        (self.metrics.len(), self.devices.len())
    }
}

impl WithoutDevice {
    fn record(&mut self, now: Instant, warn_interval: Duration, component_id: &str, key: &str) {
        self.counter.inc();
        self.since_warning += 1;
        if self
            .last_warning
            .is_none_or(|t| now.saturating_duration_since(t) >= warn_interval)
        {
            tracing::warn!(
                component_id,
                device_key = key,
                samples = self.since_warning,
                "removed info labels from samples without the device key; they went into no info series (samples counts those since the last warning)"
            );
            self.last_warning = Some(now);
            self.since_warning = 0;
        }
    }
}

/// Keys (64-bit hashes) seen within a TTL, at most a given number of them:
/// the live series of one metric here, the values of one promoted label in
/// the `labels` transform.
#[derive(Debug)]
pub(crate) struct LiveSet {
    /// Key → when it was last seen.
    series: HashMap<u64, Instant>,
    /// No key can expire before this.
    next_sweep: Instant,
}

impl LiveSet {
    pub(crate) fn new(now: Instant, ttl: Duration) -> Self {
        Self {
            series: HashMap::new(),
            next_sweep: now + ttl,
        }
    }

    /// Whether `key` is live or may become live (then it is, from `now`):
    /// a new key is admitted while fewer than `max` keys are live, expired
    /// ones forgotten first when at `max`.
    pub(crate) fn admit(&mut self, key: u64, now: Instant, max: usize, ttl: Duration) -> bool {
        if let Some(seen) = self.series.get_mut(&key) {
            *seen = now;
            return true;
        }
        if self.series.len() >= max && now >= self.next_sweep {
            self.sweep(now, ttl);
        }
        if self.series.len() < max {
            self.series.insert(key, now);
            return true;
        }
        false
    }

    /// Forgets keys not seen for `ttl`.
    pub(crate) fn sweep(&mut self, now: Instant, ttl: Duration) {
        self.series.retain(|_, seen| !expired(*seen, now, ttl));
        let oldest = self.series.values().min().copied().unwrap_or(now);
        self.next_sweep = oldest + ttl;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.series.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

impl Transform for CardinalityLimit {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        let Events::Metrics(metrics) = events else {
            out.push(events);
            return;
        };
        let kept = self.process(metrics, Instant::now());
        if !kept.is_empty() {
            out.push(Events::Metrics(kept));
        }
    }
}
