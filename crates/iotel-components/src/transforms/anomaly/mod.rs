//! `anomaly`: per-series streaming anomaly detection on metrics, with an
//! explanation of which label values concentrate the anomalies.
//!
//! ```toml
//! [transforms.anomalies]
//! type = "anomaly"
//! inputs = ["enrich"]
//! dimensions = ["line", "shift", "firmware", "asset_class"]
//! explain_window = "10m"
//! rules = [
//!   { metric = "machine_temperature_celsius", detector = "seasonal", threshold = 5.0 },
//!   { metric = "machine_.*", detector = "zscore", window = 60 },
//! ]
//!
//! [sinks.alerts]
//! type = "loki"
//! inputs = ["anomalies.anomalies"]
//! ```
//!
//! Samples pass on unchanged to the default output. A series is the
//! metric name with its labels other than the `dimensions` (those are
//! context, added by `enrich`, and may change without making a new
//! series). The first rule whose `metric` regex (anchored) matches the
//! name picks the detector (see `detectors`); a series no rule matches is
//! not tracked. When a sample scores `threshold` or more (after
//! `min_samples`), the series' anomaly opens and a log record goes to the
//! named output `anomalies`; after `clear_after` samples in a row scoring
//! under half the threshold it closes, with a second record. Both carry the series'
//! labels and the fields `anomaly.state` (`open`, `closed`), `anomaly.kind`
//! (`above`, `below`), `anomaly.detector`, `anomaly.score` (when closed:
//! the highest), `anomaly.value`, `anomaly.expected`, `anomaly.since`
//! (RFC 3339), `metric`, and `explanation` (see `explain`).
//!
//! Bad input: NaN and ±∞ samples are skipped by the detectors and counted
//! (`reason="not_finite"`), as are samples not newer than the series' last
//! (`reason="not_newer"`), and those of a series whose 64-bit id (a hash
//! of name and labels) another series already has
//! (`reason="hash_collision"`). A constant series gets a floor for its scale. A
//! gap longer than `max_gap` starts the series' detector afresh (an open
//! anomaly closes with `anomaly.reason = "gap"`). At `max_series`, the
//! least recently seen eighth is dropped and counted.

mod detectors;
mod explain;
pub mod synthetic;
#[cfg(test)]
mod tests;

use crate::transforms::describe::regex_reason;
use crate::{BuildContext, Problem};
use detectors::{Detector, Ewma, Params, Score, Seasonal, Window};
use explain::{Explainer, Values};
use iotel_engine::config::Duration;
use iotel_engine::{Counter, Gauge, Transform};
use iotel_model::{Events, Labels, LogRecord, Metric, MetricType, Severity};
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::Arc;

/// The named output anomaly events go to.
pub const ANOMALIES: &str = "anomalies";
/// The gauge sample `score_metric` adds.
pub const SCORE_METRIC: &str = "iotel_anomaly_score";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which metrics are watched and how; the first match wins.
    pub rules: Vec<Rule>,
    /// Labels the explanation ranks. Default none.
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// How long a closed anomaly still counts for explanations. Default
    /// `"10m"`.
    #[serde(default = "default_explain_window")]
    pub explain_window: Duration,
    /// Label values per explanation. Default 3.
    #[serde(default = "default_explain_top")]
    pub explain_top: NonZeroUsize,
    /// Series kept. Default 100000.
    #[serde(default = "default_max_series")]
    pub max_series: NonZeroUsize,
    /// A longer silence restarts a series' detector. Default `"1h"`.
    #[serde(default = "default_max_gap")]
    pub max_gap: Duration,
    /// Also send `iotel_anomaly_score` samples while a series is
    /// anomalous (and a 0 when it closes). Default false.
    #[serde(default)]
    pub score_metric: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    Zscore,
    Ewma,
    Seasonal,
}

impl DetectorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::Zscore => "zscore",
            DetectorKind::Ewma => "ewma",
            DetectorKind::Seasonal => "seasonal",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Metric name, a regex anchored at both ends.
    pub metric: String,
    pub detector: DetectorKind,
    /// Score at which a sample is anomalous. Default 4.0.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// `zscore`: samples in the rolling window. Default 60.
    #[serde(default = "default_window")]
    pub window: NonZeroUsize,
    /// Samples (`seasonal`: per bucket) before a series is judged.
    /// Default 20.
    #[serde(default = "default_min_samples")]
    pub min_samples: NonZeroUsize,
    /// `ewma`: weight of a new sample; `seasonal`: its learning rate once
    /// a bucket has `1/alpha` samples. Default 0.1.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// `seasonal`: the cycle. Default `"24h"`.
    #[serde(default = "default_period")]
    pub period: Duration,
    /// `seasonal`: buckets per period. Default 24.
    #[serde(default = "default_buckets")]
    pub buckets: NonZeroUsize,
    /// Floor of the scale (in the metric's unit), so a constant series is
    /// judged. Default 0 (the floor is then 0.001 · |expected|, at least
    /// 1e-9).
    #[serde(default)]
    pub min_deviation: f64,
    /// Samples in a row scoring under half the threshold that close an
    /// anomaly. Default 3.
    #[serde(default = "default_clear_after")]
    pub clear_after: NonZeroUsize,
}

fn default_explain_window() -> Duration {
    Duration::from_secs(600)
}
fn default_explain_top() -> NonZeroUsize {
    NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN)
}
fn default_max_series() -> NonZeroUsize {
    NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN)
}
fn default_max_gap() -> Duration {
    Duration::from_secs(3600)
}
fn default_threshold() -> f64 {
    4.0
}
fn default_window() -> NonZeroUsize {
    NonZeroUsize::new(60).unwrap_or(NonZeroUsize::MIN)
}
fn default_min_samples() -> NonZeroUsize {
    NonZeroUsize::new(20).unwrap_or(NonZeroUsize::MIN)
}
fn default_alpha() -> f64 {
    0.1
}
fn default_period() -> Duration {
    Duration::from_secs(86_400)
}
fn default_buckets() -> NonZeroUsize {
    NonZeroUsize::new(24).unwrap_or(NonZeroUsize::MIN)
}
fn default_clear_after() -> NonZeroUsize {
    NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.get().as_millis()).unwrap_or(i64::MAX)
}

/// Bounds that keep a series' state small.
const MAX_WINDOW: usize = 10_000;
const MAX_BUCKETS: usize = 1_440;
const MAX_EXPLAIN_TOP: usize = 50;

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.rules.is_empty() {
            p.push(Problem::new(
                "rules",
                "expected at least one rule, e.g. [{ metric = \"temperature_celsius\", detector = \"zscore\" }]",
            ));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let at = |k: &str| format!("rules[{i}].{k}");
            if let Err(e) = Regex::new(&format!("^(?:{})$", r.metric)) {
                p.push(Problem::new(
                    at("metric"),
                    format!(
                        "expected a regex, got \"{}\": {}",
                        r.metric,
                        regex_reason(&e)
                    ),
                ));
            }
            if !(r.threshold.is_finite() && r.threshold > 0.0) {
                p.push(Problem::new(
                    at("threshold"),
                    format!("expected a number above 0, got {}", r.threshold),
                ));
            }
            if r.window.get() < 3 || r.window.get() > MAX_WINDOW {
                p.push(Problem::new(
                    at("window"),
                    format!("expected 3 to {MAX_WINDOW} samples, got {}", r.window),
                ));
            }
            if r.detector == DetectorKind::Zscore && r.min_samples > r.window {
                p.push(Problem::new(
                    at("min_samples"),
                    format!(
                        "expected at most window ({}), got {}",
                        r.window, r.min_samples
                    ),
                ));
            }
            if r.min_samples.get() > usize::from(u16::MAX) {
                p.push(Problem::new(
                    at("min_samples"),
                    format!("expected at most {}, got {}", u16::MAX, r.min_samples),
                ));
            }
            if !(r.alpha > 0.0 && r.alpha <= 1.0) {
                p.push(Problem::new(
                    at("alpha"),
                    format!("expected a number in (0, 1], got {}", r.alpha),
                ));
            }
            if r.buckets.get() > MAX_BUCKETS {
                p.push(Problem::new(
                    at("buckets"),
                    format!("expected 1 to {MAX_BUCKETS}, got {}", r.buckets),
                ));
            }
            if r.period.get() < std::time::Duration::from_secs(r.buckets.get() as u64) {
                p.push(Problem::new(
                    at("period"),
                    format!(
                        "expected at least 1s per bucket ({}s), got {}",
                        r.buckets, r.period
                    ),
                ));
            }
            if !(r.min_deviation.is_finite() && r.min_deviation >= 0.0) {
                p.push(Problem::new(
                    at("min_deviation"),
                    format!("expected a number ≥ 0, got {}", r.min_deviation),
                ));
            }
            if r.clear_after.get() > usize::from(u16::MAX) {
                p.push(Problem::new(
                    at("clear_after"),
                    format!("expected at most {}, got {}", u16::MAX, r.clear_after),
                ));
            }
        }
        for (i, d) in self.dimensions.iter().enumerate() {
            if d.is_empty() {
                p.push(Problem::new(
                    format!("dimensions[{i}]"),
                    "expected a label name, got \"\"",
                ));
            } else if self.dimensions[..i].contains(d) {
                p.push(Problem::new(
                    format!("dimensions[{i}]"),
                    format!("\"{d}\" is listed twice"),
                ));
            }
        }
        if self.explain_top.get() > MAX_EXPLAIN_TOP {
            p.push(Problem::new(
                "explain_top",
                format!("expected 1 to {MAX_EXPLAIN_TOP}, got {}", self.explain_top),
            ));
        }
        for (key, d) in [
            ("explain_window", self.explain_window),
            ("max_gap", self.max_gap),
        ] {
            if d.get() < std::time::Duration::from_secs(1) {
                p.push(Problem::new(key, format!("expected at least 1s, got {d}")));
            }
        }
        p
    }

    /// # Errors
    /// A rule's regex that does not compile (caught by `validate` first).
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        Ok(Box::new(self.build_anomaly(cx)?))
    }

    /// # Errors
    /// As `build`.
    pub fn build_anomaly(&self, cx: &BuildContext) -> Result<Anomaly, Problem> {
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.iter().enumerate() {
            let regex = Regex::new(&format!("^(?:{})$", r.metric))
                .map_err(|e| Problem::new(format!("rules[{i}].metric"), regex_reason(&e)))?;
            rules.push(CompiledRule {
                regex,
                kind: r.detector,
                params: Params {
                    window: r.window.get().min(MAX_WINDOW),
                    min_samples: u32::try_from(r.min_samples.get()).unwrap_or(u32::MAX),
                    alpha: r.alpha,
                    threshold: r.threshold,
                    min_deviation: r.min_deviation,
                    period_ms: millis(r.period).max(1),
                    buckets: r.buckets.get().min(MAX_BUCKETS),
                },
                clear_after: u16::try_from(r.clear_after.get()).unwrap_or(u16::MAX),
            });
        }
        let registry = cx.metrics.registry();
        let id = [("component_id", cx.id.as_str())];
        let skipped = |reason: &str| {
            registry.counter(
                "iotel_anomaly_skipped_samples_total",
                "Samples the anomaly detectors did not judge, by reason.",
                &[("component_id", &cx.id), ("reason", reason)],
            )
        };
        Ok(Anomaly {
            rules,
            dims: self
                .dimensions
                .iter()
                .map(|d| Arc::from(d.as_str()))
                .collect(),
            open_now: 0,
            explainer: Explainer::new(&self.dimensions, millis(self.explain_window)),
            explain_top: self.explain_top.get().min(MAX_EXPLAIN_TOP),
            max_series: self.max_series.get(),
            max_gap_ms: millis(self.max_gap),
            score_metric: self.score_metric,
            series: ById::default(),
            names: HashMap::new(),
            now_ms: i64::MIN,
            pending: Vec::new(),
            routed: Vec::new(),
            opened: registry.counter(
                "iotel_anomaly_opened_total",
                "Anomalies the anomaly transform opened.",
                &id,
            ),
            closed: registry.counter(
                "iotel_anomaly_closed_total",
                "Anomalies the anomaly transform closed.",
                &id,
            ),
            not_finite: skipped("not_finite"),
            not_newer: skipped("not_newer"),
            collision: skipped("hash_collision"),
            gap_resets: registry.counter(
                "iotel_anomaly_gap_resets_total",
                "Series whose detector restarted after a gap longer than max_gap.",
                &id,
            ),
            evicted: registry.counter(
                "iotel_anomaly_evicted_series_total",
                "Series the anomaly transform dropped from a full table.",
                &id,
            ),
            held: registry.gauge(
                "iotel_anomaly_series",
                "Series the anomaly transform holds a detector for.",
                &id,
            ),
            open_gauge: registry.gauge("iotel_anomaly_open", "Series whose anomaly is open.", &id),
        })
    }
}

#[derive(Debug)]
struct CompiledRule {
    regex: Regex,
    kind: DetectorKind,
    params: Params,
    clear_after: u16,
}

impl CompiledRule {
    fn detector(&self) -> Detector {
        match self.kind {
            DetectorKind::Zscore => Detector::ZScore(Window::new(self.params.window)),
            DetectorKind::Ewma => Detector::Ewma(Ewma::default()),
            DetectorKind::Seasonal => Detector::Seasonal(Seasonal::new(self.params.buckets)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Open {
    since_ms: i64,
    peak: f64,
    above: bool,
}

#[derive(Debug)]
struct Series {
    name: Arc<str>,
    labels: Labels,
    rule: u16,
    detector: Detector,
    last_ms: i64,
    values: Values,
    open: Option<Open>,
    normal_run: u16,
}

/// An anomaly event waiting for the batch's explanation.
#[derive(Debug)]
struct Pending {
    record: LogRecord,
}

/// Names seen, with the rule they matched; cleared when this large.
const MAX_NAMES: usize = 10_000;

/// The running transform.
#[derive(Debug)]
pub struct Anomaly {
    rules: Vec<CompiledRule>,
    /// The `dimensions`, shared with each sample's lookup.
    dims: Arc<[Arc<str>]>,
    /// Series whose anomaly is open.
    open_now: usize,
    explainer: Explainer,
    explain_top: usize,
    max_series: usize,
    max_gap_ms: i64,
    score_metric: bool,
    series: ById<Series>,
    names: HashMap<Arc<str>, Option<u16>>,
    now_ms: i64,
    pending: Vec<Pending>,
    routed: Vec<LogRecord>,
    opened: Counter,
    closed: Counter,
    not_finite: Counter,
    not_newer: Counter,
    collision: Counter,
    gap_resets: Counter,
    evicted: Counter,
    held: Gauge,
    open_gauge: Gauge,
}

fn is_dimension(dims: &[Arc<str>], name: &str) -> bool {
    dims.iter().any(|d| &**d == name)
}

/// The series' identity: name and labels other than the dimensions.
fn series_id(dims: &[Arc<str>], name: &str, labels: &Labels) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    for l in labels.iter().filter(|l| !is_dimension(dims, &l.name)) {
        l.name.hash(&mut h);
        l.value.hash(&mut h);
    }
    h.finish()
}

fn same_series(dims: &[Arc<str>], s: &Series, name: &str, labels: &Labels) -> bool {
    if &*s.name != name {
        return false;
    }
    if s.labels == *labels {
        return true;
    }
    let a = s.labels.iter().filter(|l| !is_dimension(dims, &l.name));
    let b = labels.iter().filter(|l| !is_dimension(dims, &l.name));
    a.eq(b)
}

/// The series' dimension values, sharing the labels' strings.
fn values_of(dims: &[Arc<str>], labels: &Labels) -> Values {
    dims.iter()
        .map(|d| {
            labels
                .iter()
                .find(|l| l.name == *d)
                .map(|l| l.value.clone())
        })
        .collect()
}

/// Hashes the series ids, which are hashes already, by passing them on.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ById<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

fn describe(name: &str, labels: &Labels) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|l| format!("{}=\"{}\"", l.name, l.value))
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// `v` to the 7 significant digits the detectors keep (they hold values
/// as f32), so 20.05 is not written 20.049999237060547.
fn tidy(v: f64) -> f64 {
    let short = v as f32;
    if short.is_finite() {
        short.to_string().parse().unwrap_or(v)
    } else {
        v
    }
}

fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

impl Anomaly {
    fn rule_for(&mut self, name: &Arc<str>) -> Option<u16> {
        if let Some(r) = self.names.get(name) {
            return *r;
        }
        if self.names.len() >= MAX_NAMES {
            self.names.clear();
        }
        let r = self
            .rules
            .iter()
            .position(|r| r.regex.is_match(name))
            .and_then(|i| u16::try_from(i).ok());
        self.names.insert(name.clone(), r);
        r
    }

    /// Drops the least recently seen eighth of the series.
    fn evict(&mut self) {
        let mut seen: Vec<(i64, u64)> = self.series.iter().map(|(k, s)| (s.last_ms, *k)).collect();
        let n = (seen.len() / 8).max(1).min(seen.len());
        if n == 0 {
            return;
        }
        seen.select_nth_unstable(n - 1);
        for (_, k) in seen.into_iter().take(n) {
            if let Some(s) = self.series.remove(&k) {
                if s.open.is_some() {
                    self.open_now = self.open_now.saturating_sub(1);
                }
                self.explainer.remove_series(k, &s.values);
            }
        }
        self.evicted.add(n as u64);
    }

    fn event(
        &self,
        s: &Series,
        state: &str,
        t_ms: i64,
        sc: &Score,
        x: f64,
        open: Open,
    ) -> LogRecord {
        let rule = self.rules.get(usize::from(s.rule));
        let detector = rule.map_or("", |r| r.kind.as_str());
        let kind = if open.above { "above" } else { "below" };
        let mut fields = Map::new();
        fields.insert("anomaly.state".into(), json!(state));
        fields.insert("anomaly.kind".into(), json!(kind));
        fields.insert("anomaly.detector".into(), json!(detector));
        let score = if state == "open" { sc.score } else { open.peak };
        fields.insert("anomaly.score".into(), number(score));
        fields.insert("anomaly.value".into(), number(x));
        let expected = tidy(sc.expected);
        fields.insert("anomaly.expected".into(), number(expected));
        fields.insert("anomaly.since".into(), json!(rfc3339(open.since_ms)));
        fields.insert("metric".into(), json!(&*s.name));
        let message = if state == "open" {
            format!(
                "anomaly: {} is {x} where {} was expected ({detector} score {:.1}, {kind})",
                describe(&s.name, &s.labels),
                expected,
                sc.score
            )
        } else {
            format!(
                "anomaly over: {} back to normal after {}s (highest {detector} score {:.1})",
                describe(&s.name, &s.labels),
                t_ms.saturating_sub(open.since_ms) / 1000,
                open.peak
            )
        };
        let mut r = LogRecord::new(t_ms.saturating_mul(1_000_000), message);
        r.labels = s.labels.clone();
        r.severity = Some(if state == "open" {
            Severity::Warn
        } else {
            Severity::Info
        });
        r.fields = fields;
        r
    }

    fn score_sample(s: &Series, t_ms: i64, score: f64) -> Metric {
        let labels = s.labels.with("metric", &s.name);
        Metric::new(SCORE_METRIC, MetricType::Gauge, labels, score, t_ms)
    }

    /// Judges one sample; anomaly events go to `pending`, score samples
    /// to `scores`.
    fn observe(&mut self, m: &Metric, scores: &mut Vec<Metric>) {
        let Some(rule) = self.rule_for(&m.name) else {
            return;
        };
        if !m.value.is_finite() {
            self.not_finite.inc();
            return;
        }
        let t = m.timestamp_ms;
        self.now_ms = self.now_ms.max(t);
        let dims = self.dims.clone();
        let id = series_id(&dims, &m.name, &m.labels);
        if let Some(s) = self.series.get(&id) {
            if !same_series(&dims, s, &m.name, &m.labels) {
                self.collision.inc();
                return;
            }
        } else {
            if self.series.len() >= self.max_series {
                self.evict();
            }
            let Some(r) = self.rules.get(usize::from(rule)) else {
                return;
            };
            let values = values_of(&dims, &m.labels);
            self.explainer.add_series(&values);
            self.series.insert(
                id,
                Series {
                    name: m.name.clone(),
                    labels: m.labels.clone(),
                    rule,
                    detector: r.detector(),
                    last_ms: i64::MIN,
                    values,
                    open: None,
                    normal_run: 0,
                },
            );
        }
        let Some(s) = self.series.get_mut(&id) else {
            return;
        };
        let Some(r) = self.rules.get(usize::from(s.rule)) else {
            return;
        };
        if s.labels != m.labels {
            let values = values_of(&dims, &m.labels);
            if values != s.values {
                self.explainer.relabel(id, &s.values, &values);
                s.values = values;
            }
            s.labels = m.labels.clone();
        }
        if s.last_ms != i64::MIN && t <= s.last_ms {
            self.not_newer.inc();
            return;
        }
        let mut events = Vec::new();
        if s.last_ms != i64::MIN && t.saturating_sub(s.last_ms) > self.max_gap_ms {
            self.gap_resets.inc();
            s.detector = r.detector();
            if let Some(open) = s.open.take() {
                s.normal_run = 0;
                events.push((
                    "closed_gap",
                    open,
                    Score {
                        score: 0.0,
                        expected: f64::NAN,
                        ready: false,
                    },
                ));
            }
        }
        s.last_ms = t;
        let sc = s.detector.observe(&r.params, t, m.value);
        let anomalous = sc.ready && sc.score >= r.params.threshold;
        // Hysteresis: only a score under half the threshold counts towards
        // closing, so a score hovering at the threshold does not flap.
        let calm = sc.score < r.params.threshold / 2.0;
        match (&mut s.open, anomalous) {
            (None, true) => {
                let open = Open {
                    since_ms: t,
                    peak: sc.score,
                    above: m.value > sc.expected,
                };
                s.open = Some(open);
                s.normal_run = 0;
                events.push(("open", open, sc));
            }
            (Some(open), true) => {
                open.peak = open.peak.max(sc.score);
                s.normal_run = 0;
            }
            (Some(_), false) if !calm => s.normal_run = 0,
            (Some(open), false) => {
                s.normal_run = s.normal_run.saturating_add(1);
                if s.normal_run >= r.clear_after {
                    let open = *open;
                    s.open = None;
                    s.normal_run = 0;
                    events.push(("closed", open, sc));
                }
            }
            (None, false) => {}
        }
        if self.score_metric && (s.open.is_some() || events.iter().any(|e| e.0 != "open")) {
            scores.push(Self::score_sample(
                s,
                t,
                if s.open.is_some() { sc.score } else { 0.0 },
            ));
        }
        if events.is_empty() {
            return;
        }
        let Some(s) = self.series.get(&id) else {
            return;
        };
        let mut records = Vec::new();
        for (what, open, sc) in &events {
            let state = if *what == "open" { "open" } else { "closed" };
            let mut record = self.event(s, state, t, sc, m.value, *open);
            if *what == "closed_gap" {
                record.fields.insert("anomaly.reason".into(), json!("gap"));
                record.fields.insert("anomaly.expected".into(), Value::Null);
            }
            records.push((state == "open", record));
        }
        let values = s.values.clone();
        for (open, record) in records {
            if open {
                self.open_now += 1;
                self.opened.inc();
                self.explainer.opened(id, &values);
            } else {
                self.open_now = self.open_now.saturating_sub(1);
                self.closed.inc();
                self.explainer.closed(id, t);
            }
            self.pending.push(Pending { record });
        }
    }
}

impl Transform for Anomaly {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        let Events::Metrics(metrics) = events else {
            out.push(events);
            return;
        };
        let mut scores = Vec::new();
        for m in &metrics {
            self.observe(m, &mut scores);
        }
        if !self.pending.is_empty() {
            self.explainer.prune(self.now_ms);
            let explanation: Vec<Value> = self
                .explainer
                .explain(self.explain_top)
                .iter()
                .map(explain::Item::to_json)
                .collect();
            for p in self.pending.drain(..) {
                let mut r = p.record;
                r.fields
                    .insert("explanation".into(), Value::Array(explanation.clone()));
                self.routed.push(r);
            }
        }
        self.held.set(self.series.len() as f64);
        self.open_gauge.set(self.open_now as f64);
        out.push(Events::Metrics(metrics));
        if !scores.is_empty() {
            out.push(Events::Metrics(scores));
        }
    }

    fn routed(&mut self, out: &mut Vec<(&'static str, Events)>) {
        if !self.routed.is_empty() {
            out.push((ANOMALIES, Events::Logs(std::mem::take(&mut self.routed))));
        }
    }
}
