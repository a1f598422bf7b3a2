//! The node's own metrics: a registry of counters and gauges that renders to
//! model [`Metric`]s, so the node API exposes them and the `internal_metrics`
//! source ships them like any other metric.

use iotel_model::{Labels, Metric, MetricMeta, MetricType, now_unix_ms};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug)]
struct Cell {
    /// Counters hold an integer; gauges the bits of an `f64`.
    bits: AtomicU64,
}

/// A monotonically increasing count.
#[derive(Debug, Clone)]
pub struct Counter(Arc<Cell>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.bits.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.bits.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone)]
pub struct Gauge(Arc<Cell>);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.bits.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.bits.load(Ordering::Relaxed))
    }
}

#[derive(Debug)]
struct Family {
    meta: Arc<MetricMeta>,
    series: BTreeMap<Labels, Arc<Cell>>,
}

/// Where a node's own metrics live. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    families: Arc<Mutex<BTreeMap<String, Family>>>,
    /// The node's backlog pressure; here because every component already
    /// holds the registry.
    backlog: crate::backlog::Backlog,
    /// Where operators watch what leaves a component (see [`crate::tap`]).
    taps: crate::tap::Taps,
    /// The node's metric families, seen and retired; here for the same
    /// reason.
    metric_families: crate::families::MetricFamilies,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Family>> {
        // A poisoned lock only means another thread panicked mid-update of a
        // counter map; the map itself is still consistent.
        self.families.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cell(&self, name: &str, help: &str, kind: MetricType, labels: &[(&str, &str)]) -> Arc<Cell> {
        // A counter's family is named without `_total`, as OpenMetrics has it.
        let name = match kind {
            MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let mut families = self.lock();
        let family = families.entry(name.to_string()).or_insert_with(|| Family {
            meta: Arc::new(MetricMeta::new(name, kind).with_help(help)),
            series: BTreeMap::new(),
        });
        let labels = Labels::from_pairs(labels.iter().copied());
        family
            .series
            .entry(labels)
            .or_insert_with(|| {
                let zero = if kind == MetricType::Gauge {
                    0f64.to_bits()
                } else {
                    0
                };
                Arc::new(Cell {
                    bits: AtomicU64::new(zero),
                })
            })
            .clone()
    }

    /// The node's tap points (see [`crate::tap`]).
    pub fn taps(&self) -> &crate::tap::Taps {
        &self.taps
    }

    /// The node-wide backlog pressure (see [`crate::backlog`]).
    pub fn backlog(&self) -> &crate::backlog::Backlog {
        &self.backlog
    }

    /// The node's metric families (see [`crate::families`]).
    pub fn families(&self) -> &crate::families::MetricFamilies {
        &self.metric_families
    }

    /// The counter `name{labels}`, created at zero on first use.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        Counter(self.cell(name, help, MetricType::Counter, labels))
    }

    /// The gauge `name{labels}`, created at zero on first use.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        Gauge(self.cell(name, help, MetricType::Gauge, labels))
    }

    /// Every series' current value, families in name order.
    pub fn snapshot(&self) -> Vec<Metric> {
        let now = now_unix_ms();
        let families = self.lock();
        let mut out = Vec::new();
        for (name, f) in families.iter() {
            let name: Arc<str> = Arc::from(name.as_str());
            let series_name: Arc<str> = match f.meta.kind {
                MetricType::Counter => Arc::from(format!("{name}_total")),
                _ => name.clone(),
            };
            for (labels, cell) in &f.series {
                let bits = cell.bits.load(Ordering::Relaxed);
                let value = match f.meta.kind {
                    MetricType::Gauge => f64::from_bits(bits),
                    _ => bits as f64,
                };
                out.push(Metric {
                    name: series_name.clone(),
                    labels: labels.clone(),
                    value,
                    timestamp_ms: now,
                    meta: f.meta.clone(),
                    exemplar: None,
                });
            }
        }
        out
    }
}

/// The counters every component has, labelled with its id, kind and type.
#[derive(Debug, Clone)]
pub struct ComponentMetrics {
    registry: Registry,
    id: Arc<str>,
    kind: &'static str,
    type_name: Arc<str>,
    received: Counter,
    sent: Counter,
}

impl ComponentMetrics {
    pub fn new(registry: &Registry, id: &str, kind: &'static str, type_name: &str) -> Self {
        let labels = [
            ("component_id", id),
            ("component_kind", kind),
            ("component_type", type_name),
        ];
        Self {
            received: registry.counter(
                "iotel_component_received_events_total",
                "Events a component received from its inputs or its peer.",
                &labels,
            ),
            sent: registry.counter(
                "iotel_component_sent_events_total",
                "Events a component sent downstream or delivered to its peer.",
                &labels,
            ),
            registry: registry.clone(),
            id: Arc::from(id),
            kind,
            type_name: Arc::from(type_name),
        }
    }

    /// Metrics attached to a private registry, for components run in tests.
    pub fn detached(id: &str, type_name: &str) -> Self {
        Self::new(&Registry::default(), id, "test", type_name)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn received(&self, n: usize) {
        self.received.add(n as u64);
    }

    pub fn sent(&self, n: usize) {
        self.sent.add(n as u64);
    }

    pub fn sent_total(&self) -> u64 {
        self.sent.get()
    }

    pub fn received_total(&self) -> u64 {
        self.received.get()
    }

    /// Counts one error under its stable code (e.g. `scrape_failed`).
    pub fn error(&self, code: &str) {
        self.errors(code).inc();
    }

    /// The error counter for `code`, to keep when it is hit often.
    pub fn errors(&self, code: &str) -> Counter {
        self.registry.counter(
            "iotel_component_errors_total",
            "Errors a component met, by error code.",
            &[
                ("component_id", &self.id),
                ("component_kind", self.kind),
                ("component_type", &self.type_name),
                ("error_code", code),
            ],
        )
    }

    /// Counts `n` events dropped for `reason` (e.g. `queue_full`).
    pub fn discarded(&self, reason: &str, n: usize) {
        self.discards(reason).add(n as u64);
    }

    /// The drop counter for `reason`, to keep when it is hit often.
    pub fn discards(&self, reason: &str) -> Counter {
        self.registry.counter(
            "iotel_component_discarded_events_total",
            "Events a component dropped, by reason.",
            &[
                ("component_id", &self.id),
                ("component_kind", self.kind),
                ("component_type", &self.type_name),
                ("reason", reason),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_counters_with_total_and_keeps_gauge_values() {
        let r = Registry::default();
        r.counter("iotel_x", "x", &[("a", "1")]).add(3);
        r.counter("iotel_x", "x", &[("a", "1")]).inc();
        r.gauge("iotel_depth", "d", &[]).set(2.5);
        let snap = r.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(&*snap[0].name, "iotel_depth");
        assert_eq!(snap[0].value, 2.5);
        assert_eq!(&*snap[1].name, "iotel_x_total");
        assert_eq!(snap[1].value, 4.0);
        assert_eq!(snap[1].labels.get("a"), Some("1"));
        assert_eq!(snap[1].meta.kind, MetricType::Counter);
    }
}
