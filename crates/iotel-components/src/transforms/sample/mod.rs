//! `sample`: keeps a fraction of log records, per stream or per device,
//! never the severe ones, and fewer while the node is backlogged.
//!
//! ```toml
//! [transforms.thin]
//! type = "sample"
//! inputs = ["parsed"]
//! rate = 0.1
//! by = "device_id"
//! streams = [{ selector = '{job="noisy"}', rate = 0.001 }]
//! keep_severity_at_least = "error"
//! ```
//!
//! **Which rate.** A record takes the rate of the first entry of `streams`
//! whose selector (the `filter` transform's LogQL subset) matches it, else
//! `rate`. A selector with line filters picks lines, not whole streams.
//!
//! **Severity.** A record whose severity is at least
//! `keep_severity_at_least` (default `error`) is always kept. Records
//! without a severity are sampled like any other.
//!
//! **How a record is picked.** With `by`, the record's value of that field
//! (or, when it has no such field, of that stream label) decides, so
//! `by = "device_id"` with `rate = 0.01` keeps every line of 1 % of the
//! devices rather than 1 % of each device's lines. The value is hashed with
//! 64-bit FNV-1a over its UTF-8 bytes followed by MurmurHash3's 64-bit
//! finalizer, and the record is kept when the hash is below rate × 2⁶⁴.
//! The hash has no key and no seed, so the choice is the same on every node
//! and across restarts, and a value kept at one rate is kept at every higher
//! one. A non-string field is hashed as its JSON text (`42`, `true`).
//!
//! Without `by`, or for a record that has neither the field nor the label
//! (or has them empty or `null`),
//! each stream (label set, per `streams` entry) keeps one record in every
//! 1 / rate, deterministically: the first, then every 1/rate-th after it
//! (at rate 0.3, three in ten, evenly spread). At most
//! [`MAX_TRACKED_STREAMS`] streams are tracked; past that the counts start
//! over, which keeps the next record of each stream.
//!
//! **Backlog.** With `adapt_to_backlog` (the default) the rate is divided by
//! the node's backlog slowdown factor (1, 2, 4 or 8; see
//! `iotel_engine::backlog`) while a sink's buffer fills up during an
//! outage. The rate in effect is exported in
//! `iotel_sample_rate{component_id, rule}` (`rule` is `default` or
//! `streams[i]`) and logged when it changes.
//!
//! **Counted.** Records sampled out in
//! `iotel_component_discarded_events_total{reason="sampled"}`; records kept
//! in `iotel_sample_kept_total{component_id, reason}`, `reason` being
//! `severity` (kept for their severity, not sampled) or `sampled` (picked
//! by the rate).

mod hash;
#[cfg(test)]
mod tests;

use crate::transforms::filter::selector::{self, Compiled};
use crate::{BuildContext, Problem};
use iotel_engine::{Counter, Gauge, Registry, Transform};
use iotel_model::{Events, Labels, LogRecord, Severity};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use hash::stable_hash;

/// Streams whose 1-in-N position is remembered at once.
pub const MAX_TRACKED_STREAMS: usize = 4096;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The fraction of records kept, above 0 and at most 1, where no entry
    /// of `streams` matches. Default 1 (all; useful with `streams` or
    /// `adapt_to_backlog`).
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// A field (or, failing that, stream label) whose value picks the
    /// records kept, so all or none of a device's lines are. Default none:
    /// one in every 1 / rate per stream.
    #[serde(default)]
    pub by: Option<String>,
    /// Rates for the streams a selector matches; the first match wins.
    #[serde(default)]
    pub streams: Vec<StreamRate>,
    /// Records at least this severe are always kept: `trace`, `debug`,
    /// `info`, `warn`, `error`, `fatal`, or `none` to sample every severity.
    /// Default `error`.
    #[serde(default = "default_keep_severity")]
    pub keep_severity_at_least: KeepSeverity,
    /// Divide the rate by the node's backlog slowdown factor. Default true.
    #[serde(default = "default_adapt_to_backlog")]
    pub adapt_to_backlog: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRate {
    /// A selector as `filter` takes it, e.g. `{job="noisy"}`.
    pub selector: String,
    /// The fraction of the matching records kept, above 0 and at most 1.
    pub rate: f64,
}

fn default_rate() -> f64 {
    1.0
}

fn default_keep_severity() -> KeepSeverity {
    KeepSeverity(Some(Severity::Error))
}

fn default_adapt_to_backlog() -> bool {
    true
}

/// The least severity that is never sampled out; `None` samples all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepSeverity(pub Option<Severity>);

impl<'de> Deserialize<'de> for KeepSeverity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.eq_ignore_ascii_case("none") {
            return Ok(KeepSeverity(None));
        }
        Severity::parse(&s).map(|s| KeepSeverity(Some(s))).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown severity \"{s}\": expected trace, debug, info, warn, error, fatal or none"
            ))
        })
    }
}

fn rate_problem(key: String, rate: f64) -> Option<Problem> {
    (!(rate > 0.0 && rate <= 1.0)).then(|| {
        Problem::new(
            key,
            format!("expected a rate above 0 and at most 1 (0.01 keeps 1 %), got {rate}"),
        )
    })
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        p.extend(rate_problem("rate".into(), self.rate));
        if self.by.as_deref() == Some("") {
            p.push(Problem::new("by", "expected a field or label name"));
        }
        for (i, s) in self.streams.iter().enumerate() {
            if let Err(e) = selector::compile(&s.selector) {
                p.push(Problem::new(
                    format!("streams[{i}].selector"),
                    e.to_string(),
                ));
            }
            p.extend(rate_problem(format!("streams[{i}].rate"), s.rate));
        }
        p
    }

    /// # Errors
    /// A selector that does not compile (`validate` reports it first).
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        Ok(Box::new(Sample::new(self, cx)?))
    }
}

/// One rate and where it applies.
#[derive(Debug)]
struct Rule {
    /// `None` for the default rate.
    selector: Option<Compiled>,
    /// `streams[i]` or `default`, for the gauge and the log.
    name: String,
    rate: f64,
    /// The rate in effect, for `iotel_sample_rate`.
    gauge: Gauge,
}

/// The running transform.
#[derive(Debug)]
pub struct Sample {
    /// `streams` in order, then the default.
    rules: Vec<Rule>,
    by: Option<String>,
    keep_severity: Option<Severity>,
    adapt_to_backlog: bool,
    registry: Registry,
    component_id: String,
    /// The backlog factor the rates were last set for.
    factor: u32,
    /// Per rule, its rate divided by `factor`, as a threshold on the hash:
    /// kept when below it.
    thresholds: Vec<u64>,
    /// Per rule, its rate divided by `factor`, in 1/2³² steps, for 1-in-N.
    steps: Vec<u64>,
    /// 1-in-N state per (rule, stream): the credit, in 1/2³² of a record.
    credits: HashMap<u64, u64>,
    stream_hasher: RandomState,
    /// The last label set seen, whether each rule's label matchers hold
    /// for it, and its stream hash per rule (0 until computed).
    last: Option<(Labels, Vec<bool>, Vec<u64>)>,
    sampled_out: Counter,
    kept_for_severity: Counter,
    kept_sampled: Counter,
}

/// 1 in fixed point: credits and steps count in 1/2³² of a record.
const ONE: u64 = 1 << 32;

impl Sample {
    /// # Errors
    /// A selector that does not compile.
    pub fn new(config: &Config, cx: &BuildContext) -> Result<Self, Problem> {
        let registry = cx.metrics.registry().clone();
        let gauge = |rule: &str| {
            registry.gauge(
                "iotel_sample_rate",
                "The fraction of log records a sample rule keeps now: its rate, divided by the backlog slowdown factor.",
                &[("component_id", &cx.id), ("rule", rule)],
            )
        };
        let mut rules = Vec::with_capacity(config.streams.len() + 1);
        for (i, s) in config.streams.iter().enumerate() {
            let key = format!("streams[{i}]");
            let selector = selector::compile(&s.selector)
                .map_err(|e| Problem::new(format!("{key}.selector"), e.to_string()))?;
            rules.push(Rule {
                selector: Some(selector),
                rate: s.rate,
                gauge: gauge(&key),
                name: key,
            });
        }
        rules.push(Rule {
            selector: None,
            rate: config.rate,
            gauge: gauge("default"),
            name: "default".into(),
        });
        let kept = |reason: &str| {
            registry.counter(
                "iotel_sample_kept_total",
                "Log records the sample transform kept: for their severity, or picked by the rate.",
                &[("component_id", &cx.id), ("reason", reason)],
            )
        };
        let mut sample = Self {
            by: config.by.clone(),
            keep_severity: config.keep_severity_at_least.0,
            adapt_to_backlog: config.adapt_to_backlog,
            component_id: cx.id.clone(),
            factor: 1,
            thresholds: Vec::new(),
            steps: Vec::new(),
            credits: HashMap::new(),
            stream_hasher: RandomState::new(),
            last: None,
            sampled_out: cx.metrics.discards("sampled"),
            kept_for_severity: kept("severity"),
            kept_sampled: kept("sampled"),
            rules,
            registry,
        };
        sample.set_factor(1);
        Ok(sample)
    }

    /// Sets the rates in effect for backlog factor `factor`.
    fn set_factor(&mut self, factor: u32) {
        self.factor = factor;
        self.thresholds.clear();
        self.steps.clear();
        for r in &self.rules {
            let rate = r.rate / f64::from(factor);
            r.gauge.set(rate);
            // Float to integer casts saturate: a rate of 1 is u64::MAX,
            // which `keep` treats as "all".
            self.thresholds
                .push((rate * 18_446_744_073_709_551_616.0) as u64);
            self.steps.push((rate * ONE as f64).round() as u64);
        }
    }

    /// The backlog factor now, logging when it changes the rates.
    fn follow_backlog(&mut self) {
        let factor = if self.adapt_to_backlog {
            self.registry.backlog().factor()
        } else {
            1
        };
        if factor != self.factor {
            self.set_factor(factor);
            let rates: Vec<String> = self
                .rules
                .iter()
                .map(|r| format!("{} {}", r.name, r.rate / f64::from(factor)))
                .collect();
            tracing::info!(
                component_id = %self.component_id,
                "sampling at rate {} (backlog slowdown ×{factor})",
                rates.join(", ")
            );
        }
    }

    /// Samples one batch, returning what is kept.
    pub fn process(&mut self, mut records: Vec<LogRecord>) -> Vec<LogRecord> {
        self.follow_backlog();
        let before = records.len();
        let mut for_severity = 0u64;
        records.retain(|r| {
            if self
                .keep_severity
                .is_some_and(|k| r.severity.is_some_and(|s| s >= k))
            {
                for_severity += 1;
                return true;
            }
            self.keep(r)
        });
        let kept = records.len() as u64;
        self.kept_for_severity.add(for_severity);
        self.kept_sampled.add(kept - for_severity);
        self.sampled_out.add((before - records.len()) as u64);
        records
    }

    /// Whether the rate picks `r`.
    fn keep(&mut self, r: &LogRecord) -> bool {
        if !matches!(&self.last, Some((labels, ..)) if *labels == r.labels) {
            let label_matches = self
                .rules
                .iter()
                .map(|rule| {
                    rule.selector
                        .as_ref()
                        .is_none_or(|s| s.matches_labels(&r.labels))
                })
                .collect();
            self.last = Some((r.labels.clone(), label_matches, vec![0; self.rules.len()]));
        }
        let Some((_, label_matches, stream_hashes)) = &mut self.last else {
            return true;
        };
        let Some(i) = self
            .rules
            .iter()
            .zip(label_matches.iter())
            .position(|(rule, &m)| {
                m && rule
                    .selector
                    .as_ref()
                    .is_none_or(|s| s.matches_line(&r.message))
            })
        else {
            return true;
        };
        let threshold = self.thresholds[i];
        if threshold == u64::MAX {
            return true;
        }
        if let Some(value) = self.by.as_deref().and_then(|by| by_value(r, by)) {
            return stable_hash(value.as_bytes()) < threshold;
        }
        // One in every 1 / rate of this stream.
        if stream_hashes[i] == 0 {
            stream_hashes[i] = self.stream_hasher.hash_one((i, &r.labels)).max(1);
        }
        let key = stream_hashes[i];
        if !self.credits.contains_key(&key) && self.credits.len() >= MAX_TRACKED_STREAMS {
            self.credits.clear();
        }
        let credit = self.credits.entry(key).or_insert(ONE);
        let keep = *credit >= ONE;
        if keep {
            *credit -= ONE;
        }
        *credit += self.steps[i];
        keep
    }
}

/// The value `by` names: the field's, else the label's.
/// An empty string or `null` counts as no value.
fn by_value<'a>(r: &'a LogRecord, by: &str) -> Option<std::borrow::Cow<'a, str>> {
    match r.fields.get(by) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(std::borrow::Cow::Borrowed(s)),
        Some(serde_json::Value::String(_) | serde_json::Value::Null) | None => r
            .labels
            .get(by)
            .filter(|v| !v.is_empty())
            .map(std::borrow::Cow::Borrowed),
        Some(other) => Some(std::borrow::Cow::Owned(other.to_string())),
    }
}

impl Transform for Sample {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        let Events::Logs(records) = events else {
            out.push(events);
            return;
        };
        let kept = self.process(records);
        if !kept.is_empty() {
            out.push(Events::Logs(kept));
        }
    }
}
