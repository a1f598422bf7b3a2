//! `correlate`: gives device, gateway and rule-engine logs the same four
//! labels (`device_id`, `gateway_id`, `rule_id`, `trace_id`), joins them by
//! `trace_id` in event-time windows, and emits one chain record per trace
//! with the joined records and the hop latencies.
//!
//! ```toml
//! [transforms.chains]
//! type = "correlate"
//! inputs = ["device_logs", "gateway_logs", "rule_logs"]
//! device_gateway = "10s"
//! gateway_rule = "5s"
//! allowed_lateness = "30s"
//! max_traces = 100000
//! device = { match = { source = "device" }, device_id = "dev", trace_id = "trace" }
//! gateway = { match = { source = "gateway" }, device_id = "deviceId", gateway_id = "gw", trace_id = "traceparent" }
//! rule = { match = { source = "rules" }, device_id = "ctx.device", rule_id = "rule", trace_id = "trace_id" }
//! ```
//!
//! # Records
//!
//! A log record belongs to the first hop (`device`, `gateway`, `rule`)
//! whose `match` it satisfies: every name listed has the value given. A
//! name is looked up as a label, then as a field (a `.` in the name walks
//! into nested objects when no field has the whole name); strings, numbers
//! and booleans match by their text. The hop's mapping names where the
//! record keeps each unified id (default: the unified name itself); the
//! ids found are set as labels, replacing labels of those names. A trace id
//! written as a W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`)
//! gives its trace id; a 32-digit hex id is lowercased; any other text is
//! used as it is.
//!
//! Every record passes on, in its batch, with the unified labels added:
//! joining only reads it. Metrics and spans are not taken. The join itself
//! (watermark, windows, deadlines, the memory bound) is described in
//! [`join`].
//!
//! # The chain record
//!
//! Each trace gives one log record, in a batch of its own after the batch
//! that closed it:
//!
//! - `timestamp_ns`: the earliest joined record's;
//! - labels `correlate = "chain"`, `trace_id`, and `device_id`,
//!   `gateway_id`, `rule_id` when a joined record had them (the device's
//!   record first, then the gateway's, then the rule's);
//! - message `chain <trace id> complete: device → gateway +120ms → rule +35ms`
//!   (hops held, with the latency from the previous one held);
//! - fields: `status` (`complete`, `window_closed`, `evicted`, `shutdown`),
//!   `complete` (bool), `missing` (the expected hops not joined),
//!   `hops.<hop>.timestamp_ns` and `hops.<hop>.message` per joined hop, and
//!   in ms (fractional, negative when the clocks disagree)
//!   `device_gateway_ms`, `gateway_rule_ms`, `device_rule_ms` for each pair
//!   joined.
//!
//! # Counted
//!
//! Each with `component_id`: `iotel_correlate_records_total{hop}` (`hop` is
//! `device`, `gateway`, `rule` or `unmatched`),
//! `iotel_correlate_unjoined_records_total{reason}` (`late`,
//! `outside_window`, `duplicate`, `no_trace_id`; the records still pass on),
//! `iotel_correlate_chains_total{status}`,
//! `iotel_correlate_evicted_traces_total`, and the gauge
//! `iotel_correlate_traces` (traces held).

pub mod join;
#[cfg(test)]
mod tests;

use crate::{BuildContext, Problem};
use iotel_engine::config::Duration;
use iotel_engine::{Counter, Gauge, Transform};
use iotel_model::{Events, LabelsBuilder, LogRecord};
use join::{Chain, Hop, Join, Limits, Outcome, Seen, Status};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

/// The unified label names, in [`Hop`] order of the ids, then the trace.
pub const DEVICE_ID: &str = "device_id";
pub const GATEWAY_ID: &str = "gateway_id";
pub const RULE_ID: &str = "rule_id";
pub const TRACE_ID: &str = "trace_id";
/// The label marking a chain record, and its value.
pub const CHAIN_LABEL: &str = "correlate";
pub const CHAIN_VALUE: &str = "chain";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Device logs: which records, and where their ids are.
    #[serde(default)]
    pub device: Option<Box<HopConfig>>,
    /// Gateway logs.
    #[serde(default)]
    pub gateway: Option<Box<HopConfig>>,
    /// Rule-engine logs.
    #[serde(default)]
    pub rule: Option<Box<HopConfig>>,
    /// How far apart in event time a device's and a gateway's record of one
    /// trace may be, either way. Default `"10s"`.
    #[serde(default = "default_device_gateway")]
    pub device_gateway: Duration,
    /// How far apart a gateway's and a rule's record may be. Default `"5s"`.
    #[serde(default = "default_gateway_rule")]
    pub gateway_rule: Duration,
    /// How far behind the newest event time a record may be and still join.
    /// Default `"30s"`.
    #[serde(default = "default_allowed_lateness")]
    pub allowed_lateness: Duration,
    /// Traces held at most; a new one at a full table evicts the one whose
    /// window closes first. Default 100000.
    #[serde(default = "default_max_traces")]
    pub max_traces: NonZeroUsize,
    /// Whether chains missing a hop are emitted (else only counted).
    /// Default true.
    #[serde(default = "default_emit_partial")]
    pub emit_partial: bool,
}

/// Which records are one hop's, and where its ids are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HopConfig {
    /// Label or field names and the values a record must have, all of them.
    #[serde(rename = "match")]
    pub selector: BTreeMap<String, String>,
    /// The label or field holding the device id. Default `"device_id"`.
    #[serde(default = "default_device_id")]
    pub device_id: String,
    /// The label or field holding the gateway id. Default `"gateway_id"`.
    #[serde(default = "default_gateway_id")]
    pub gateway_id: String,
    /// The label or field holding the rule id. Default `"rule_id"`.
    #[serde(default = "default_rule_id")]
    pub rule_id: String,
    /// The label or field holding the trace id or a `traceparent`.
    /// Default `"trace_id"`.
    #[serde(default = "default_trace_id")]
    pub trace_id: String,
}

fn default_device_gateway() -> Duration {
    Duration::from_secs(10)
}

fn default_gateway_rule() -> Duration {
    Duration::from_secs(5)
}

fn default_allowed_lateness() -> Duration {
    Duration::from_secs(30)
}

fn default_max_traces() -> NonZeroUsize {
    NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN)
}

fn default_emit_partial() -> bool {
    true
}

fn default_device_id() -> String {
    DEVICE_ID.into()
}

fn default_gateway_id() -> String {
    GATEWAY_ID.into()
}

fn default_rule_id() -> String {
    RULE_ID.into()
}

fn default_trace_id() -> String {
    TRACE_ID.into()
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.get().as_nanos()).unwrap_or(i64::MAX)
}

impl Config {
    fn hops(&self) -> [(Hop, Option<&HopConfig>); 3] {
        [
            (Hop::Device, self.device.as_deref()),
            (Hop::Gateway, self.gateway.as_deref()),
            (Hop::Rule, self.rule.as_deref()),
        ]
    }

    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let configured = self.hops().iter().filter(|(_, c)| c.is_some()).count();
        if configured < 2 {
            p.push(Problem::new(
                "device",
                "expected at least two of the tables `device`, `gateway` and `rule`, \
                 each with a `match`, to join records of",
            ));
        }
        for (hop, c) in self.hops() {
            let Some(c) = c else { continue };
            let at = hop.as_str();
            if c.selector.is_empty() {
                p.push(Problem::new(
                    format!("{at}.match"),
                    "expected at least one label or field and its value, such as { source = \"gateway\" }",
                ));
            }
            for (name, _) in c.selector.iter().filter(|(n, _)| n.is_empty()) {
                p.push(Problem::new(
                    format!("{at}.match"),
                    format!("expected a label or field name, got \"{name}\""),
                ));
            }
            for (key, v) in [
                ("device_id", &c.device_id),
                ("gateway_id", &c.gateway_id),
                ("rule_id", &c.rule_id),
                ("trace_id", &c.trace_id),
            ] {
                if v.is_empty() {
                    p.push(Problem::new(
                        format!("{at}.{key}"),
                        "expected a label or field name, got \"\"",
                    ));
                }
            }
        }
        for (key, d, example) in [
            ("device_gateway", self.device_gateway, "10s"),
            ("gateway_rule", self.gateway_rule, "5s"),
        ] {
            if d.get().is_zero() {
                p.push(Problem::new(
                    key,
                    format!("expected a window above 0s, such as \"{example}\""),
                ));
            }
        }
        p
    }

    /// # Errors
    /// None today; the signature is every component's.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        Ok(Box::new(self.correlate(cx)))
    }

    /// The running transform.
    pub fn correlate(&self, cx: &BuildContext) -> Correlate {
        let registry = cx.metrics.registry();
        let id = cx.id.as_str();
        let hops = self.hops().map(|(_, c)| c.map(HopMatcher::new));
        let records = ["device", "gateway", "rule", "unmatched"].map(|hop| {
            registry.counter(
                "iotel_correlate_records_total",
                "Log records correlate took, by the hop they matched.",
                &[("component_id", id), ("hop", hop)],
            )
        });
        let unjoined = ["late", "outside_window", "duplicate", "no_trace_id"].map(|reason| {
            registry.counter(
                "iotel_correlate_unjoined_records_total",
                "Records of a hop correlate passed on without joining them to a trace, by reason.",
                &[("component_id", id), ("reason", reason)],
            )
        });
        let chains = Status::ALL.map(|s| {
            registry.counter(
                "iotel_correlate_chains_total",
                "Trace chains correlate closed, by why.",
                &[("component_id", id), ("status", s.as_str())],
            )
        });
        Correlate {
            join: Join::new(Limits {
                device_gateway_ns: nanos(self.device_gateway),
                gateway_rule_ns: nanos(self.gateway_rule),
                allowed_lateness_ns: nanos(self.allowed_lateness),
                max_traces: self.max_traces.get(),
                expected: hops.each_ref().map(Option::is_some),
            }),
            hops,
            label_names: [
                DEVICE_ID,
                GATEWAY_ID,
                RULE_ID,
                TRACE_ID,
                CHAIN_LABEL,
                CHAIN_VALUE,
            ]
            .map(Arc::from),
            emit_partial: self.emit_partial,
            records,
            unjoined,
            chains,
            evicted: registry.counter(
                "iotel_correlate_evicted_traces_total",
                "Traces correlate closed early to stay within max_traces.",
                &[("component_id", id)],
            ),
            traces: registry.gauge(
                "iotel_correlate_traces",
                "Traces correlate holds.",
                &[("component_id", id)],
            ),
        }
    }
}

/// A hop's selector and id names, ready to look up.
#[derive(Debug)]
struct HopMatcher {
    selector: Vec<(String, String)>,
    /// Names of `device_id`, `gateway_id`, `rule_id`, `trace_id`.
    names: [String; 4],
}

impl HopMatcher {
    fn new(c: &HopConfig) -> Self {
        Self {
            selector: c
                .selector
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            names: [
                c.device_id.clone(),
                c.gateway_id.clone(),
                c.rule_id.clone(),
                c.trace_id.clone(),
            ],
        }
    }

    fn matches(&self, r: &LogRecord) -> bool {
        self.selector
            .iter()
            .all(|(name, want)| lookup(r, name).is_some_and(|v| v == want.as_str()))
    }
}

/// A label's value, else a field's (a `.` walks into objects when no field
/// has the whole name) as text; none for objects, arrays, null and "".
fn lookup<'a>(r: &'a LogRecord, name: &str) -> Option<Cow<'a, str>> {
    if let Some(v) = r.labels.get(name) {
        return (!v.is_empty()).then_some(Cow::Borrowed(v));
    }
    let v = r.fields.get(name).or_else(|| {
        let mut parts = name.split('.');
        let first = r.fields.get(parts.next()?)?;
        parts.try_fold(first, |v, p| v.get(p))
    })?;
    match v {
        Value::String(s) if !s.is_empty() => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        _ => None,
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The trace id in `v`: a `traceparent`'s trace id, a hex id lowercased,
/// else `v` trimmed.
pub fn trace_id_of(v: &str) -> Cow<'_, str> {
    let v = v.trim();
    let mut parts = v.split('-');
    if let (Some(version), Some(trace), Some(parent), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) && version.len() == 2
        && trace.len() == 32
        && parent.len() == 16
        && flags.len() == 2
        && is_hex(version)
        && is_hex(trace)
        && is_hex(parent)
        && is_hex(flags)
    {
        return match trace.bytes().any(|b| b.is_ascii_uppercase()) {
            true => Cow::Owned(trace.to_ascii_lowercase()),
            false => Cow::Borrowed(trace),
        };
    }
    if v.len() == 32 && is_hex(v) && v.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Owned(v.to_ascii_lowercase());
    }
    Cow::Borrowed(v)
}

/// The running transform.
#[derive(Debug)]
pub struct Correlate {
    join: Join,
    /// `device_id`, `gateway_id`, `rule_id`, `trace_id`, `correlate`, and
    /// the value `chain`.
    label_names: [Arc<str>; 6],
    hops: [Option<HopMatcher>; 3],
    emit_partial: bool,
    /// By [`Hop`] index, then unmatched.
    records: [Counter; 4],
    /// late, outside_window, duplicate, no_trace_id.
    unjoined: [Counter; 4],
    /// By [`Status::ALL`] order.
    chains: [Counter; 4],
    evicted: Counter,
    traces: Gauge,
}

impl Correlate {
    /// Labels one record and offers it to the join.
    fn observe(&mut self, r: &mut LogRecord, chains: &mut Vec<Chain>) {
        let Some(hop) = Hop::ALL.into_iter().find(|h| {
            self.hops[*h as usize]
                .as_ref()
                .is_some_and(|m| m.matches(r))
        }) else {
            self.records[3].inc();
            return;
        };
        self.records[hop as usize].inc();
        let Some(m) = self.hops[hop as usize].as_ref() else {
            return;
        };
        let ids: [Option<Arc<str>>; 3] =
            [0, 1, 2].map(|i| lookup(r, &m.names[i]).map(|v| Arc::from(v.as_ref())));
        let trace: Option<Arc<str>> =
            lookup(r, &m.names[3]).map(|v| Arc::from(trace_id_of(&v).as_ref()));
        // The values are shared with the join's copy, the names with every
        // record.
        let mut labels = r.labels.to_builder();
        for (name, v) in self.label_names[..3].iter().zip(&ids) {
            if let Some(v) = v {
                labels.set_shared(name.clone(), v.clone());
            }
        }
        if let Some(t) = &trace {
            labels.set_shared(self.label_names[3].clone(), t.clone());
        }
        r.labels = labels.build();
        let Some(trace) = trace.filter(|t| !t.is_empty()) else {
            self.unjoined[3].inc();
            return;
        };
        let seen = Seen {
            timestamp_ns: r.timestamp_ns,
            message: r.message.clone(),
            ids,
        };
        let (outcome, evicted) = self.join.observe(&trace, hop, seen, chains);
        self.evicted.add(evicted as u64);
        match outcome {
            Outcome::Joined => {}
            Outcome::Late => self.unjoined[0].inc(),
            Outcome::OutsideWindow => self.unjoined[1].inc(),
            Outcome::Duplicate => self.unjoined[2].inc(),
        }
    }

    /// Counts `chains` and turns those to emit into records.
    fn emit(&self, chains: Vec<Chain>, out: &mut Vec<Events>) {
        let mut records = Vec::with_capacity(chains.len());
        for c in chains {
            let i = Status::ALL.iter().position(|s| *s == c.status).unwrap_or(0);
            self.chains[i].inc();
            if c.status == Status::Complete || self.emit_partial {
                records.push(chain_record(c, &self.join_expected(), &self.label_names));
            }
        }
        self.traces.set(self.join.traces() as f64);
        if !records.is_empty() {
            out.push(Events::Logs(records));
        }
    }

    fn join_expected(&self) -> [bool; 3] {
        self.hops.each_ref().map(Option::is_some)
    }

    /// The traces held now, emitted or not (for tests and benchmarks).
    pub fn traces_held(&self) -> usize {
        self.join.traces()
    }

    /// The traces held whose chain is not emitted yet.
    pub fn traces_open(&self) -> usize {
        self.join.open()
    }
}

impl Transform for Correlate {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        let Events::Logs(mut records) = events else {
            out.push(events);
            return;
        };
        let mut chains = Vec::new();
        for r in &mut records {
            self.observe(r, &mut chains);
        }
        self.join.advance(&mut chains);
        out.push(Events::Logs(records));
        self.emit(chains, out);
    }

    fn flush(&mut self, out: &mut Vec<Events>) {
        let mut chains = Vec::new();
        self.join.drain(&mut chains);
        self.emit(chains, out);
    }
}

fn ms_between(a: i64, b: i64) -> f64 {
    b.saturating_sub(a) as f64 / 1e6
}

/// The chain record of `c` (see the module docs); `names` are the label
/// names `device_id`, `gateway_id`, `rule_id`, `trace_id`, `correlate`
/// and the value `chain`, shared by every chain.
fn chain_record(c: Chain, expected: &[bool; 3], names: &[Arc<str>; 6]) -> LogRecord {
    use std::fmt::Write;
    let at = |h: Hop| c.hops[h as usize].as_ref().map(|s| s.timestamp_ns);
    let start = Hop::ALL
        .iter()
        .filter_map(|&h| at(h))
        .min()
        .unwrap_or_default();
    let mut labels = LabelsBuilder::with_capacity(5);
    labels.set_shared(names[4].clone(), names[5].clone());
    labels.set_shared(names[3].clone(), Arc::from(c.trace_id.as_ref()));
    for (i, name) in names[..3].iter().enumerate() {
        let found = c.hops.iter().flatten().find_map(|s| s.ids[i].as_ref());
        if let Some(v) = found {
            labels.set_shared(name.clone(), v.clone());
        }
    }
    let mut message = format!("chain {} {}: ", c.trace_id, c.status.as_str());
    let mut previous: Option<i64> = None;
    for h in Hop::ALL {
        let Some(t) = at(h) else { continue };
        if let Some(p) = previous {
            let _ = write!(message, " → {} {:+}ms", h.as_str(), ms_between(p, t));
        } else {
            message.push_str(h.as_str());
        }
        previous = Some(t);
    }
    let missing: Vec<Value> = Hop::ALL
        .into_iter()
        .filter(|h| expected[*h as usize] && c.hops[*h as usize].is_none())
        .map(|h| Value::from(h.as_str()))
        .collect();
    let mut fields = Map::new();
    fields.insert("status".into(), Value::from(c.status.as_str()));
    fields.insert("complete".into(), Value::from(missing.is_empty()));
    fields.insert("missing".into(), Value::Array(missing));
    for (name, a, b) in [
        ("device_gateway_ms", Hop::Device, Hop::Gateway),
        ("gateway_rule_ms", Hop::Gateway, Hop::Rule),
        ("device_rule_ms", Hop::Device, Hop::Rule),
    ] {
        if let (Some(a), Some(b)) = (at(a), at(b)) {
            fields.insert(name.into(), Value::from(ms_between(a, b)));
        }
    }
    let mut hops = Map::new();
    for (h, s) in Hop::ALL.into_iter().zip(c.hops) {
        let Some(s) = s else { continue };
        let Seen {
            timestamp_ns,
            message,
            ..
        } = *s;
        let mut hop = Map::new();
        hop.insert("timestamp_ns".into(), Value::from(timestamp_ns));
        hop.insert("message".into(), Value::from(message));
        hops.insert(h.as_str().into(), Value::Object(hop));
    }
    fields.insert("hops".into(), Value::Object(hops));
    let mut r = LogRecord::new(start, message);
    r.labels = labels.build();
    r.fields = fields;
    r
}
