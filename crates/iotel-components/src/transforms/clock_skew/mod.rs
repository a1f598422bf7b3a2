//! `clock_skew`: estimates each device's clock offset from when its spans
//! end and when they arrive, and corrects the spans' times at the first
//! iotel hop (spans; logs and metrics pass unchanged).
//!
//! ```toml
//! [transforms.skew]
//! type = "clock_skew"
//! inputs = ["otlp_in"]
//! device_label = "device_id"
//! window = "10m"
//! threshold = "1s"
//! max_devices = 10000
//! ```
//!
//! # The estimate
//!
//! A span is exported after it ends, so for every span of a device
//!
//! ```text
//! d = receive time (local clock) − end (device clock) = offset + delay,  delay ≥ 0
//! ```
//!
//! where `offset` is local time − device time (positive: the device is
//! behind) and `delay` the time from the span's end to its arrival (export
//! batching, the link). The estimate is the smallest `d` in a sliding
//! `window` (NTP's minimum-delay filter: the sample with the least delay
//! says the most about the offset):
//!
//! ```text
//! estimate = min d = offset + min delay   ⇒   0 ≤ estimate − offset ≤ min delay in the window
//! ```
//!
//! So the estimate is an upper bound of the offset, off by the smallest
//! export delay in the window, never more: corrected times are late by at
//! most that. The window is kept as 8 sub-windows of `window / 8`, each
//! holding its smallest `d`, so a device costs a fixed few dozen bytes.
//!
//! A device whose clock is behind by less than its export delay cannot be
//! told apart from an accurate one. So a positive estimate is applied only
//! past `threshold`. A negative estimate is always applied: a span cannot
//! arrive before it ended, so the device is ahead by at least that much
//! (and after the correction no span of the window ends after it arrived).
//! The spans of one device in a batch first feed the estimate, then are
//! corrected with it: `start += estimate`, `end += estimate`.
//!
//! The estimate needs some spans that are exported soon after they end: a
//! device that only ever sends spans it kept for hours (store and forward)
//! looks hours behind. Set `threshold` above the longest delay such devices
//! have, or leave them out of this transform.
//!
//! # Within a batch
//!
//! After the device offsets, a child span that still starts before its
//! parent (both in the batch, from different devices) is shifted as
//! Jaeger's clock-skew adjuster does: centred in the parent when it is not
//! longer than the parent, else to start with it. Its descendants of the
//! same device move with it. A span that ends before it starts (its
//! device's clock stepped while it ran) gets its start set to its end.
//!
//! # Marks and counters
//!
//! A corrected span gets the attribute `iotel.clock_skew.adjusted_ns`, the
//! signed nanoseconds added to its times; one whose start was clamped to
//! its end also gets `iotel.clock_skew.negative_duration_ns`, the duration
//! it had. A span that already carries `iotel.clock_skew.adjusted_ns` was
//! corrected by an earlier hop and is neither used nor corrected again.
//! Spans without the device label pass unchanged. Counted:
//! `iotel_clock_skew_adjusted_spans_total`, `iotel_clock_skew_unlabelled_spans_total`
//! and `iotel_clock_skew_evicted_devices_total` (devices dropped from a
//! full table, the least recently seen eighth at a time, to make room for a
//! new one; a dropped device starts from no samples when it comes back), each with `component_id`; the gauge
//! `iotel_clock_skew_devices{component_id}` is the number of devices held.

mod estimate;
#[cfg(test)]
mod tests;

use crate::{BuildContext, Problem};
use estimate::Estimates;
use iotel_engine::config::Duration;
use iotel_engine::{Counter, Gauge, Transform};
use iotel_model::{Events, Span};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

/// The attribute holding the signed nanoseconds a span was shifted by.
pub const ADJUSTED_ATTRIBUTE: &str = "iotel.clock_skew.adjusted_ns";
/// The attribute holding the negative duration a span had before its
/// start was clamped to its end.
pub const NEGATIVE_DURATION_ATTRIBUTE: &str = "iotel.clock_skew.negative_duration_ns";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The label naming the device whose clock made a span. Default
    /// `device_id`.
    #[serde(default = "default_device_label")]
    pub device_label: String,
    /// How far back samples count. Default `"10m"`.
    #[serde(default = "default_window")]
    pub window: Duration,
    /// A positive estimate (device behind) is applied only past this.
    /// Default `"1s"`.
    #[serde(default = "default_threshold")]
    pub threshold: Duration,
    /// Devices kept; a new device at a full table drops the least recently
    /// seen eighth. Default 10000.
    #[serde(default = "default_max_devices")]
    pub max_devices: NonZeroUsize,
}

fn default_device_label() -> String {
    "device_id".into()
}

fn default_window() -> Duration {
    Duration::from_secs(600)
}

fn default_threshold() -> Duration {
    Duration::from_secs(1)
}

fn default_max_devices() -> NonZeroUsize {
    NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN)
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.get().as_nanos()).unwrap_or(i64::MAX)
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.device_label.is_empty() {
            p.push(Problem::new(
                "device_label",
                "expected a label name, got \"\"",
            ));
        }
        if self.window.get() < std::time::Duration::from_secs(1) {
            p.push(Problem::new(
                "window",
                format!("expected at least 1s, got {}", self.window),
            ));
        }
        p
    }

    /// # Errors
    /// None today; the signature is every component's.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        Ok(Box::new(self.build_with_clock(cx, Arc::new(SystemClock))))
    }

    /// The transform reading the time from `clock` (tests set it).
    pub fn build_with_clock(&self, cx: &BuildContext, clock: Arc<dyn Clock>) -> ClockSkew {
        let counter = |name: &str, help: &str| {
            cx.metrics
                .registry()
                .counter(name, help, &[("component_id", &cx.id)])
        };
        ClockSkew {
            device_label: self.device_label.clone(),
            threshold_ns: nanos(self.threshold),
            estimates: Estimates::new(nanos(self.window), self.max_devices.get()),
            clock,
            adjusted: counter(
                "iotel_clock_skew_adjusted_spans_total",
                "Spans clock_skew shifted or clamped.",
            ),
            unlabelled: counter(
                "iotel_clock_skew_unlabelled_spans_total",
                "Spans clock_skew passed on unchanged for want of the device label.",
            ),
            evicted: counter(
                "iotel_clock_skew_evicted_devices_total",
                "Devices clock_skew dropped from its table to make room for new ones.",
            ),
            devices: cx.metrics.registry().gauge(
                "iotel_clock_skew_devices",
                "Devices clock_skew holds an estimate for.",
                &[("component_id", &cx.id)],
            ),
        }
    }
}

/// Where the receive time comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, ns since the Unix epoch.
    fn now_ns(&self) -> i64;
}

/// The system's clock.
#[derive(Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// The running transform.
#[derive(Debug)]
pub struct ClockSkew {
    device_label: String,
    threshold_ns: i64,
    estimates: Estimates,
    clock: Arc<dyn Clock>,
    adjusted: Counter,
    unlabelled: Counter,
    evicted: Counter,
    devices: Gauge,
}

/// Adds `by` to a span's shift attribute.
fn mark(span: &mut Span, by: i64) {
    let before = span
        .attributes
        .get(ADJUSTED_ATTRIBUTE)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    span.attributes.insert(
        ADJUSTED_ATTRIBUTE.into(),
        Value::from(before.saturating_add(by)),
    );
}

fn shift(span: &mut Span, by: i64) {
    span.start_ns = span.start_ns.saturating_add(by);
    span.end_ns = span.end_ns.saturating_add(by);
    mark(span, by);
}

impl ClockSkew {
    /// The device offsets to apply to a batch, after feeding them its spans.
    fn offsets(&mut self, spans: &[Span], fresh: &[bool], now: i64) -> HashMap<String, i64> {
        for (s, _) in spans.iter().zip(fresh).filter(|(_, f)| **f) {
            if let Some(device) = s.labels.get(&self.device_label) {
                let evicted = self
                    .estimates
                    .observe(device, now, now.saturating_sub(s.end_ns));
                self.evicted.add(evicted as u64);
            }
        }
        let mut offsets = HashMap::new();
        for (s, _) in spans.iter().zip(fresh).filter(|(_, f)| **f) {
            let Some(device) = s.labels.get(&self.device_label) else {
                continue;
            };
            if offsets.contains_key(device) {
                continue;
            }
            let offset = self.estimates.offset(device, now).unwrap_or(0);
            if offset < 0 || offset > self.threshold_ns {
                offsets.insert(device.to_string(), offset);
            }
        }
        offsets
    }

    /// Jaeger's in-trace fix: children that start before their parent,
    /// from another device, move into the parent; a device's descendants
    /// move with their span.
    fn fix_children(&self, spans: &mut [Span], fresh: &[bool]) -> Vec<bool> {
        let mut moved = vec![false; spans.len()];
        let by_id: HashMap<([u8; 16], [u8; 8]), usize> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.trace_id, s.span_id), i))
            .collect();
        let parent_of = |s: &Span| {
            s.parent_span_id
                .and_then(|p| by_id.get(&(s.trace_id, p)).copied())
        };
        // Parents before children: order by depth, each span's found once
        // (a cycle of parent ids is cut where the walk comes back).
        let mut depths: Vec<Option<usize>> = vec![None; spans.len()];
        for i in 0..spans.len() {
            let mut path = Vec::new();
            let mut j = i;
            let base = loop {
                if let Some(d) = depths[j] {
                    break d + 1;
                }
                path.push(j);
                match parent_of(&spans[j]) {
                    Some(p) if path.len() <= spans.len() => j = p,
                    _ => break 0,
                }
            };
            for (k, at) in path.iter().rev().enumerate() {
                depths[*at].get_or_insert(base + k);
            }
        }
        let depth = |i: usize| depths[i].unwrap_or(0);
        let mut order: Vec<(usize, usize)> = (0..spans.len()).map(|i| (depth(i), i)).collect();
        order.sort_unstable();
        // The shift each span got here, which its same-device children
        // inherit.
        let mut shifts = vec![0i64; spans.len()];
        for (_, i) in order {
            let Some(p) = parent_of(&spans[i]) else {
                continue;
            };
            if !fresh[i] || p == i {
                continue;
            }
            let (child, parent) = (&spans[i], &spans[p]);
            let same_device = match (
                child.labels.get(&self.device_label),
                parent.labels.get(&self.device_label),
            ) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            let by = if same_device {
                shifts[p]
            } else if child.start_ns < parent.start_ns {
                let child_len = child.end_ns.saturating_sub(child.start_ns);
                let parent_len = parent.end_ns.saturating_sub(parent.start_ns);
                let target = if child_len <= parent_len {
                    parent
                        .start_ns
                        .saturating_add(parent_len.saturating_sub(child_len) / 2)
                } else {
                    parent.start_ns
                };
                target.saturating_sub(child.start_ns)
            } else {
                0
            };
            if by != 0 {
                shifts[i] = by;
                shift(&mut spans[i], by);
                moved[i] = true;
            }
        }
        moved
    }
}

impl Transform for ClockSkew {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        let Events::Traces(mut spans) = events else {
            // Logs and metrics pass unchanged.
            out.push(events);
            return;
        };
        let now = self.clock.now_ns();
        // Spans an earlier hop corrected are left as they are.
        let fresh: Vec<bool> = spans
            .iter()
            .map(|s| !s.attributes.contains_key(ADJUSTED_ATTRIBUTE))
            .collect();
        let offsets = self.offsets(&spans, &fresh, now);
        let mut changed = vec![false; spans.len()];
        for (i, s) in spans.iter_mut().enumerate() {
            if !fresh[i] {
                continue;
            }
            let Some(device) = s.labels.get(&self.device_label) else {
                self.unlabelled.inc();
                continue;
            };
            if let Some(by) = offsets.get(device).copied() {
                shift(s, by);
                changed[i] = true;
            }
            if s.end_ns < s.start_ns {
                let duration = s.end_ns.saturating_sub(s.start_ns);
                s.start_ns = s.end_ns;
                s.attributes
                    .insert(NEGATIVE_DURATION_ATTRIBUTE.into(), Value::from(duration));
                if !changed[i] {
                    mark(s, 0);
                }
                changed[i] = true;
            }
        }
        let moved = self.fix_children(&mut spans, &fresh);
        let n = changed
            .iter()
            .zip(&moved)
            .filter(|(a, b)| **a || **b)
            .count();
        self.adjusted.add(n as u64);
        self.devices.set(self.estimates.len() as f64);
        out.push(Events::Traces(spans));
    }
}

#[cfg(test)]
impl ClockSkew {
    pub(super) fn estimate(&self, device: &str) -> Option<i64> {
        self.estimates.offset(device, self.clock.now_ns())
    }

    pub(super) fn devices(&self) -> f64 {
        self.devices.get()
    }
}
