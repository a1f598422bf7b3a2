//! What a node shows of itself beyond `/metrics`: its graph and each
//! component's counts as JSON (`GET /api/v1/components`, read by the status
//! page and `iotel top`), and the status page (`GET /`).
//!
//! The counts are the node's own metrics, gathered per component: events
//! received, sent, discarded (by reason) and errors (by code); for a sink
//! with a buffer its depth, size and oldest batch's age; the added latency
//! where a sink measures it; and the TLS certificates' expiry. Counts are
//! totals since the node started: readers take rates from two readings.

use iotel_components::config::Loaded;
use iotel_engine::Registry;
use iotel_model::Metric;
use serde::Serialize;
use std::collections::BTreeMap;

#[cfg(test)]
mod tests;

/// The status page: one file, no assets from elsewhere.
pub const PAGE: &str = include_str!("page.html");

/// What the node runs, as its config declared it.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// The config file as it was named.
    pub config: String,
    pub version: &'static str,
    /// Unix milliseconds.
    pub started_unix_ms: i64,
    pub components: Vec<Declared>,
}

/// One component of the graph.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Declared {
    pub id: String,
    pub kind: &'static str,
    #[serde(rename = "type")]
    pub type_name: &'static str,
    pub inputs: Vec<String>,
}

impl Node {
    pub fn of(loaded: &Loaded) -> Self {
        Self {
            config: loaded.file.clone(),
            version: env!("CARGO_PKG_VERSION"),
            started_unix_ms: iotel_model::now_unix_ms(),
            components: loaded
                .components
                .iter()
                .map(|c| Declared {
                    id: c.id.clone(),
                    kind: c.kind().as_str(),
                    type_name: c.type_name(),
                    inputs: c.inputs.clone(),
                })
                .collect(),
        }
    }
}

/// The answer of `/api/v1/components`.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    pub node: &'a Node,
    /// Unix milliseconds of this reading.
    pub now_unix_ms: i64,
    pub components: Vec<Counts>,
    pub tls: Vec<Certificate>,
}

/// One component's totals.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Counts {
    pub id: String,
    pub received: u64,
    pub sent: u64,
    pub discarded: u64,
    pub discarded_by_reason: BTreeMap<String, u64>,
    pub errors: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    /// A sink's buffer, when it has one.
    pub buffer: Option<Buffer>,
    /// A sink's added latency at the 99th percentile over the last
    /// minute, seconds, when it measures it (0: nothing delivered then).
    pub latency_p99_seconds: Option<f64>,
    /// It stopped with an error.
    pub failed: bool,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Buffer {
    pub events: u64,
    pub batches: u64,
    /// A disk buffer's files.
    pub bytes: Option<u64>,
    pub oldest_age_seconds: f64,
    /// 0 to 1 of its `max_events` or `max_size`.
    pub fill_ratio: f64,
}

/// A certificate a component presents or trusts, and when it expires.
#[derive(Debug, Serialize, PartialEq)]
pub struct Certificate {
    pub component_id: String,
    pub file: String,
    pub expires_in_seconds: f64,
}

/// Gathers the registry's metrics per component of `node`.
pub fn summary<'a>(node: &'a Node, metrics: &[Metric]) -> Summary<'a> {
    let mut by_id: BTreeMap<&str, Counts> = node
        .components
        .iter()
        .map(|c| {
            (
                c.id.as_str(),
                Counts {
                    id: c.id.clone(),
                    ..Counts::default()
                },
            )
        })
        .collect();
    let mut tls = Vec::new();
    for m in metrics {
        let Some(id) = m.labels.get("component_id") else {
            continue;
        };
        if &*m.name == "iotel_tls_cert_expiry_seconds" {
            tls.push(Certificate {
                component_id: id.to_string(),
                file: m.labels.get("file").unwrap_or_default().to_string(),
                expires_in_seconds: m.value,
            });
            continue;
        }
        let Some(c) = by_id.get_mut(id) else {
            continue;
        };
        let n = if m.value.is_finite() && m.value > 0.0 {
            m.value as u64
        } else {
            0
        };
        match &*m.name {
            "iotel_component_received_events_total" => c.received += n,
            "iotel_component_sent_events_total" => c.sent += n,
            "iotel_component_discarded_events_total" => {
                c.discarded += n;
                let reason = m.labels.get("reason").unwrap_or("unknown");
                *c.discarded_by_reason.entry(reason.to_string()).or_default() += n;
            }
            "iotel_component_errors_total" => {
                c.errors += n;
                let code = m.labels.get("error_code").unwrap_or("unknown");
                *c.errors_by_code.entry(code.to_string()).or_default() += n;
            }
            "iotel_component_failures_total" => c.failed |= n > 0,
            "iotel_buffer_events" => c.buffer.get_or_insert_default().events = n,
            "iotel_buffer_records" => c.buffer.get_or_insert_default().batches = n,
            "iotel_buffer_bytes" => c.buffer.get_or_insert_default().bytes = Some(n),
            "iotel_buffer_oldest_age_seconds" => {
                c.buffer.get_or_insert_default().oldest_age_seconds = m.value;
            }
            "iotel_buffer_fill_ratio" => c.buffer.get_or_insert_default().fill_ratio = m.value,
            "iotel_sink_latency_seconds" if m.labels.get("quantile") == Some("0.99") => {
                c.latency_p99_seconds = m.value.is_finite().then_some(m.value);
            }
            _ => {}
        }
    }
    tls.sort_by(|a, b| a.expires_in_seconds.total_cmp(&b.expires_in_seconds));
    Summary {
        node,
        now_unix_ms: iotel_model::now_unix_ms(),
        components: node
            .components
            .iter()
            .filter_map(|c| by_id.remove(c.id.as_str()))
            .collect(),
        tls,
    }
}

/// The JSON of `/api/v1/components`.
pub fn components_json(node: &Node, registry: &Registry) -> String {
    serde_json::to_string(&summary(node, &registry.snapshot())).unwrap_or_else(|e| {
        // Not expected: every field serializes.
        format!("{{\"error\":{:?}}}", e.to_string())
    })
}
