//! The host application's view of every edge node: births, aliases,
//! sequence numbers and deaths (see the module docs of `sparkplug`).
//!
//! State per edge node (`group`, `edge_node`):
//! - the metrics its last NBIRTH declared (name → datatype, alias → name),
//!   the `bdSeq` of that birth, and the last `seq` seen;
//! - per device, the metrics of its last DBIRTH.
//!
//! An NBIRTH replaces the node's state (its devices must be born again); an
//! NDEATH whose `bdSeq` matches ends it, a DDEATH ends the device's. Data
//! before a birth cannot be read (an alias means nothing yet) and is
//! dropped as `sparkplug_no_birth`.

use super::{MessageType, Payload, PayloadMetric, STALE_NAN, Topic, metric_name, sample_value};
use iotel_model::{Labels, Metric, MetricType};
use std::collections::HashMap;

/// What one Sparkplug message came to.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Samples, in payload order (staleness markers after a death).
    pub samples: Vec<Metric>,
    /// Metrics of the payload that did not become samples, with why.
    pub dropped: Vec<Dropped>,
    /// The `seq` was not the one after the last.
    pub sequence_gap: Option<SequenceGap>,
    /// The message carries no metrics by design (NCMD, DCMD, STATE) or was
    /// an old session's NDEATH; what it was, for a debug log.
    pub ignored: Option<&'static str>,
}

/// Metrics dropped for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// A stable code, the metric label of the drop counter.
    pub reason: &'static str,
    pub count: usize,
    /// The first metric dropped so, in words.
    pub example: String,
}

/// A `seq` that did not follow the last one of the edge node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceGap {
    pub expected: u8,
    pub got: u8,
}

#[derive(Debug, Default)]
struct Declared {
    /// Sample name (sanitised) → datatype.
    datatypes: HashMap<String, Option<u32>>,
    /// Alias → metric name as declared.
    aliases: HashMap<u64, String>,
    /// Sanitised names in birth order, for staleness markers.
    series: Vec<String>,
}

#[derive(Debug, Default)]
struct Node {
    declared: Declared,
    bd_seq: Option<u64>,
    last_seq: Option<u8>,
    devices: HashMap<String, Declared>,
}

/// Every edge node seen, by (group, edge node).
#[derive(Debug, Default)]
pub struct Host {
    nodes: HashMap<(String, String), Node>,
}

/// The session counter of NBIRTH and NDEATH: bookkeeping, not telemetry.
const BD_SEQ: &str = "bdSeq";

impl Host {
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles one message of topic `topic` (already parsed) with decoded
    /// `payload`; `now_ms` stamps samples whose payload carries no time.
    pub fn handle(&mut self, topic: &Topic<'_>, payload: &Payload, now_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        let Topic::Message {
            group,
            kind,
            edge_node,
            device,
        } = *topic
        else {
            out.ignored = Some("STATE");
            return out;
        };
        let key = (group.to_string(), edge_node.to_string());
        let mut labels = vec![("edge_node", edge_node), ("group", group)];
        if let Some(d) = device {
            labels.insert(0, ("device", d));
        }
        let labels = Labels::from_pairs(labels);
        let ts = payload
            .timestamp
            .and_then(|t| i64::try_from(t).ok())
            .unwrap_or(now_ms);
        let device = device.unwrap_or("");
        match kind {
            MessageType::NCmd | MessageType::DCmd => {
                out.ignored = Some(kind.as_str());
            }
            MessageType::NBirth => {
                let node = Node {
                    declared: declare(&payload.metrics),
                    bd_seq: bd_seq(payload),
                    last_seq: payload.seq.map(|s| s as u8),
                    devices: HashMap::new(),
                };
                samples(&node.declared, payload, &labels, ts, &mut out);
                self.nodes.insert(key, node);
            }
            MessageType::NDeath => match self.nodes.get(&key) {
                Some(node) if bd_seq(payload).is_none_or(|b| Some(b) == node.bd_seq) => {
                    let node = self.nodes.remove(&key).unwrap_or_default();
                    stale(&node.declared, &labels, ts, &mut out);
                    let mut devices: Vec<_> = node.devices.into_iter().collect();
                    devices.sort_by(|a, b| a.0.cmp(&b.0));
                    for (d, declared) in devices {
                        let labels = labels.with("device", &d);
                        stale(&declared, &labels, ts, &mut out);
                    }
                }
                Some(_) => out.ignored = Some("NDEATH of an earlier session (bdSeq)"),
                None => out.ignored = Some("NDEATH of a node not born"),
            },
            MessageType::NData | MessageType::DBirth | MessageType::DData | MessageType::DDeath => {
                let Some(node) = self.nodes.get_mut(&key) else {
                    drop_all(payload, "sparkplug_no_birth", kind, &mut out);
                    return out;
                };
                out.sequence_gap = check_seq(node, payload.seq);
                match kind {
                    MessageType::NData => samples(&node.declared, payload, &labels, ts, &mut out),
                    MessageType::DBirth => {
                        let declared = declare(&payload.metrics);
                        samples(&declared, payload, &labels, ts, &mut out);
                        node.devices.insert(device.to_string(), declared);
                    }
                    MessageType::DData => match node.devices.get(device) {
                        Some(declared) => samples(declared, payload, &labels, ts, &mut out),
                        None => drop_all(payload, "sparkplug_no_birth", kind, &mut out),
                    },
                    _ => {
                        if let Some(declared) = node.devices.remove(device) {
                            stale(&declared, &labels, ts, &mut out);
                        }
                    }
                }
            }
        }
        out
    }
}

fn bd_seq(payload: &Payload) -> Option<u64> {
    payload
        .metrics
        .iter()
        .find(|m| m.name.as_deref() == Some(BD_SEQ))
        .and_then(|m| match m.value {
            Some(super::Value::Long(v)) => Some(v),
            Some(super::Value::Int(v)) => Some(u64::from(v)),
            _ => None,
        })
}

/// Compares `seq` with the node's last and takes it as the new last.
fn check_seq(node: &mut Node, seq: Option<u64>) -> Option<SequenceGap> {
    let got = seq? as u8;
    let gap = node.last_seq.and_then(|last| {
        let expected = last.wrapping_add(1);
        (got != expected).then_some(SequenceGap { expected, got })
    });
    node.last_seq = Some(got);
    gap
}

fn declare(metrics: &[PayloadMetric]) -> Declared {
    let mut d = Declared::default();
    for m in metrics {
        let Some(name) = m.name.as_deref() else {
            continue;
        };
        if name == BD_SEQ {
            continue;
        }
        let sample = metric_name(name);
        if let Some(alias) = m.alias {
            d.aliases.insert(alias, name.to_string());
        }
        if d.datatypes.insert(sample.clone(), m.datatype).is_none() {
            d.series.push(sample);
        }
    }
    d
}

fn drop_one(out: &mut Outcome, reason: &'static str, example: impl FnOnce() -> String) {
    match out.dropped.iter_mut().find(|d| d.reason == reason) {
        Some(d) => d.count += 1,
        None => out.dropped.push(Dropped {
            reason,
            count: 1,
            example: example(),
        }),
    }
}

fn drop_all(payload: &Payload, reason: &'static str, kind: MessageType, out: &mut Outcome) {
    let n = payload.metrics.len();
    if n > 0 {
        out.dropped.push(Dropped {
            reason,
            count: n,
            example: format!("{} before the birth certificate it needs", kind.as_str()),
        });
    }
}

fn describe(m: &PayloadMetric) -> String {
    match (&m.name, m.alias) {
        (Some(n), _) => format!("metric {n:?}"),
        (None, Some(a)) => format!("alias {a}"),
        (None, None) => "a metric with neither name nor alias".to_string(),
    }
}

fn samples(declared: &Declared, payload: &Payload, labels: &Labels, ts: i64, out: &mut Outcome) {
    for m in &payload.metrics {
        let name = match (&m.name, m.alias) {
            (Some(n), _) => n.as_str(),
            (None, Some(a)) => match declared.aliases.get(&a) {
                Some(n) => n.as_str(),
                None => {
                    drop_one(out, "sparkplug_unknown_alias", || {
                        format!("alias {a}, which no birth certificate declared")
                    });
                    continue;
                }
            },
            (None, None) => {
                drop_one(out, "sparkplug_no_name", || describe(m));
                continue;
            }
        };
        if name == BD_SEQ {
            continue;
        }
        let sample = metric_name(name);
        if m.is_null == Some(true) {
            drop_one(out, "sparkplug_null_value", || {
                format!("{} is null", describe(m))
            });
            continue;
        }
        let datatype = m
            .datatype
            .or_else(|| declared.datatypes.get(&sample).copied().flatten());
        let Some(value) = m.value.as_ref().and_then(|v| sample_value(v, datatype)) else {
            drop_one(out, "sparkplug_unsupported_value", || {
                format!(
                    "{} has no numeric or boolean value (datatype {})",
                    describe(m),
                    datatype.map_or_else(|| "unknown".to_string(), |d| d.to_string())
                )
            });
            continue;
        };
        let ts = m
            .timestamp
            .and_then(|t| i64::try_from(t).ok())
            .unwrap_or(ts);
        out.samples.push(Metric::new(
            sample,
            MetricType::Gauge,
            labels.clone(),
            value,
            ts,
        ));
    }
}

fn stale(declared: &Declared, labels: &Labels, ts: i64, out: &mut Outcome) {
    for name in &declared.series {
        out.samples.push(Metric::new(
            name.as_str(),
            MetricType::Gauge,
            labels.clone(),
            f64::from_bits(STALE_NAN),
            ts,
        ));
    }
}
