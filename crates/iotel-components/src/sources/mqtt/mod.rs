//! `mqtt`: subscribes to topics on an MQTT broker (v5 or 3.1.1, plain or
//! TLS) and turns each message into events: log records (`format = "json"`
//! or `"raw"`) or metric samples (`"sparkplug_b"`), and a consumer span for
//! each message that carries trace context.
//!
//! ```toml
//! [sources.plant]
//! type = "mqtt"
//! url = "mqtts://broker.plant.local:8883"
//! topics = ["spBv1.0/plant1/#"]
//! format = "sparkplug_b"
//! username = "iotel"
//! password_file = "/run/secrets/mqtt"
//! tls = { ca_file = "ca.pem" }
//! ```
//!
//! - **Delivery.** With `qos = 1` (the default) and a persistent session
//!   (`clean_start = false`), a message is acknowledged (PUBACK) only once
//!   every sink downstream has its events safe (`iotel_engine::Ack`), in
//!   the order received; one a sink could not store is not acknowledged,
//!   and the source reconnects a second later, resuming the session, so
//!   that the broker sends it again. A message
//!   that does not decode is acknowledged (sending it again would not
//!   help), counted and logged.
//! - **Payloads** (`decode.rs`): JSON objects (or arrays of them) become
//!   log records with the object as fields; raw payloads become the body of
//!   one record (valid UTF-8 only; anything else is rejected and counted);
//!   Sparkplug B payloads go through `iotel_formats::sparkplug`. Records
//!   get the label `topic` (named by `topic_label`, `""` for none);
//!   Sparkplug samples are labelled by group, edge node and device instead.
//! - **Spans** (`spans.rs`): per the OpenTelemetry messaging semantic
//!   conventions, parented to the publisher's span from the `traceparent` /
//!   `tracestate` user properties (v5) or, with `trace_envelope = true`,
//!   the JSON payload's fields of those names (the W3C MQTT binding's
//!   envelope for 3.1.1).
//! - **Connection** (`session.rs`): a broker that refuses, drops or cannot
//!   be reached is logged with its address and counted
//!   (`iotel_component_errors_total{error_code="connection"}`); the source
//!   reconnects with exponential backoff (100ms doubling up to
//!   `max_reconnect_delay`) and subscribes again.

#[cfg(feature = "mqtt")]
mod decode;
mod json_metrics;
#[cfg(feature = "mqtt")]
mod session;
#[cfg(feature = "mqtt")]
mod spans;
#[cfg(all(test, feature = "mqtt"))]
mod tests;
mod topic;

pub use json_metrics::JsonMetricsConfig;
pub use topic::TopicPattern;

use crate::tls::ClientTls;
use crate::{BuildContext, Problem};
use iotel_engine::config::{ByteSize, Duration};
use iotel_engine::{SignalSet, Source};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The broker: `mqtt://host:port` (default port 1883) or
    /// `mqtts://host:port` (8883).
    #[serde(default = "default_url")]
    pub url: String,
    /// Topic filters to subscribe to (`+` one whole level, `#` the rest).
    #[serde(default = "default_topics")]
    pub topics: Vec<String>,
    #[serde(default)]
    pub protocol: Protocol,
    /// Default `iotel-<hostname>-<component id>`: stable across restarts,
    /// so the broker keeps the session.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Password>,
    /// A file whose content (trailing newline removed) is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// 0 or 1.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Start a new session on connect (and drop what the broker kept).
    /// Default false: QoS 1 messages survive a restart of iotel.
    #[serde(default)]
    pub clean_start: bool,
    /// MQTT v5: how long the broker keeps the session (subscriptions and
    /// unacknowledged QoS 1 messages) after a disconnect. Up to 136 years.
    #[serde(default = "default_session_expiry")]
    pub session_expiry: Duration,
    #[serde(default = "default_keep_alive")]
    pub keep_alive: Duration,
    /// The largest message taken; larger ones end the connection (the
    /// broker is told so by MQTT v5's Maximum Packet Size).
    #[serde(default = "default_max_packet_size")]
    pub max_packet_size: ByteSize,
    /// The longest wait between reconnection attempts.
    #[serde(default = "default_max_reconnect_delay")]
    pub max_reconnect_delay: Duration,
    #[serde(default)]
    pub format: PayloadFormat,
    #[serde(default)]
    pub spans: SpanPolicy,
    /// Read trace context from a JSON payload's `traceparent` /
    /// `tracestate` fields (MQTT 3.1.1 has no user properties).
    #[serde(default)]
    pub trace_envelope: bool,
    /// The label that carries the topic; `""` for none.
    #[serde(default = "default_topic_label")]
    pub topic_label: String,
    /// Labels from the topic's levels, e.g. `"plant/{site}/{device_id}/#"`
    /// (see `topic.rs`).
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// `format = "json_metrics"`: how JSON readings become samples.
    #[serde(default)]
    pub json_metrics: JsonMetricsConfig,
    /// TLS for `mqtts://` (see `crate::tls`).
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "v5")]
    V5,
    #[serde(rename = "v311")]
    V311,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    #[default]
    Json,
    /// JSON readings as gauge samples (`json_metrics.rs`).
    JsonMetrics,
    Raw,
    SparkplugB,
}

/// Which messages get a consumer span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanPolicy {
    /// Those that carry trace context.
    #[default]
    Traced,
    /// Every message; one without trace context starts a trace.
    All,
    None,
}

/// A password: its `Debug` prints `***`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

fn default_url() -> String {
    "mqtt://127.0.0.1:1883".to_string()
}

fn default_topics() -> Vec<String> {
    vec!["#".to_string()]
}

fn default_qos() -> u8 {
    1
}

fn default_session_expiry() -> Duration {
    Duration(std::time::Duration::from_secs(24 * 3600))
}

fn default_keep_alive() -> Duration {
    Duration(std::time::Duration::from_secs(30))
}

fn default_max_packet_size() -> ByteSize {
    ByteSize(1 << 20)
}

fn default_max_reconnect_delay() -> Duration {
    Duration(std::time::Duration::from_secs(30))
}

fn default_topic_label() -> String {
    "topic".to_string()
}

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    /// # Errors
    /// What is wrong, in words.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(format!(
                "expected mqtt://host[:port] or mqtts://host[:port], got {url:?}"
            ));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: an IPv6 address needs its closing ]"))?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err(format!("{url:?}: expected :port after ]")),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains(['/', '@', '?', '#']) {
            return Err(format!(
                "{url:?}: expected a host name or address, then an optional :port, and nothing else"
            ));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{url:?}: expected a port 1-65535, got {p:?}"))?,
        };
        Ok(BrokerUrl {
            tls,
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Checks a topic filter against the MQTT grammar (v5 §4.7, 3.1.1 §4.7):
/// not empty, no NUL, `#` only alone as the last level, `+` only as a whole
/// level.
///
/// # Errors
/// What is wrong, in words.
pub fn check_topic_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("expected a topic filter, got an empty string".to_string());
    }
    if filter.len() > 65_535 {
        return Err("a topic filter is at most 65535 bytes".to_string());
    }
    if filter.contains('\0') {
        return Err(format!("{filter:?}: a topic filter cannot contain NUL"));
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(format!(
                "{filter:?}: `#` must be a whole level and the last one (like `a/#`)"
            ));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!(
                "{filter:?}: `+` must be a whole level (like `a/+/b`)"
            ));
        }
    }
    Ok(())
}

impl Config {
    /// The signals this source emits: logs or metrics by `format`, and
    /// traces unless `spans = "none"`.
    pub fn signals(&self) -> SignalSet {
        let data = match self.format {
            PayloadFormat::Json | PayloadFormat::Raw => SignalSet::LOGS,
            PayloadFormat::SparkplugB | PayloadFormat::JsonMetrics => SignalSet::METRICS,
        };
        match self.spans {
            SpanPolicy::None => data,
            _ => data.union(SignalSet::TRACES),
        }
    }

    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        match BrokerUrl::parse(&self.url) {
            Ok(url) => {
                if !url.tls && self.tls.is_some() {
                    p.push(Problem::new(
                        "tls",
                        format!("{} is plain MQTT: use mqtts:// for TLS", self.url),
                    ));
                }
            }
            Err(e) => p.push(Problem::new("url", e)),
        }
        if self.topics.is_empty() {
            p.push(Problem::new(
                "topics",
                "expected at least one topic filter, such as \"sensors/#\"",
            ));
        }
        for (i, t) in self.topics.iter().enumerate() {
            if let Err(e) = check_topic_filter(t) {
                p.push(Problem::new(format!("topics[{i}]"), e));
            } else if self.topics[..i].contains(t) {
                p.push(Problem::new(
                    format!("topics[{i}]"),
                    format!("{t:?} is listed twice"),
                ));
            }
        }
        if self.qos > 1 {
            p.push(Problem::new(
                "qos",
                format!("expected 0 or 1, got {}", self.qos),
            ));
        }
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 65_535)
        {
            p.push(Problem::new(
                "client_id",
                "expected 1 to 65535 bytes (leave it out for iotel-<hostname>-<id>)",
            ));
        }
        if self.password.is_some() && self.password_file.is_some() {
            p.push(Problem::new(
                "password_file",
                "password is set too: expected one of them",
            ));
        }
        if (self.password.is_some() || self.password_file.is_some()) && self.username.is_none() {
            p.push(Problem::new(
                "username",
                "a password needs a username (MQTT sends none without it)",
            ));
        }
        let keep_alive = self.keep_alive.get();
        if keep_alive < std::time::Duration::from_secs(5) || keep_alive.as_secs() > 65_535 {
            p.push(Problem::new(
                "keep_alive",
                format!("expected 5s to 65535s, got {}", self.keep_alive),
            ));
        }
        if self.session_expiry.get().as_secs() > u64::from(u32::MAX) {
            p.push(Problem::new(
                "session_expiry",
                format!(
                    "expected at most {}s, got {}",
                    u32::MAX,
                    self.session_expiry
                ),
            ));
        }
        if self.max_packet_size.bytes() < 1024 || self.max_packet_size.bytes() > 256 << 20 {
            p.push(Problem::new(
                "max_packet_size",
                format!("expected 1KiB to 256MiB, got {}", self.max_packet_size),
            ));
        }
        if self.max_reconnect_delay.get() < std::time::Duration::from_millis(100) {
            p.push(Problem::new(
                "max_reconnect_delay",
                format!("expected at least 100ms, got {}", self.max_reconnect_delay),
            ));
        }
        if self.trace_envelope && self.format != PayloadFormat::Json {
            p.push(Problem::new(
                "trace_envelope",
                "the envelope is a JSON payload's fields: it needs format = \"json\"",
            ));
        }
        if let Some(tls) = &self.tls {
            p.extend(tls.validate("tls"));
        }
        if let Some(pattern) = &self.topic_pattern {
            if self.format == PayloadFormat::SparkplugB {
                p.push(Problem::new(
                    "topic_pattern",
                    "Sparkplug B labels come from its own topic namespace (group, edge_node, \
                     device): leave topic_pattern out",
                ));
            } else if let Err(e) = TopicPattern::parse(pattern) {
                p.push(Problem::new("topic_pattern", e));
            }
        }
        let j = &self.json_metrics;
        if self.format != PayloadFormat::JsonMetrics
            && (!j.metric_prefix.is_empty()
                || !j.label_fields.is_empty()
                || j.timestamp_field.is_some())
        {
            p.push(Problem::new(
                "json_metrics",
                "applies to format = \"json_metrics\" only",
            ));
        }
        if !j.metric_prefix.is_empty()
            && !j
                .metric_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            p.push(Problem::new(
                "json_metrics.metric_prefix",
                format!(
                    "expected letters, digits, `_` or `:`, got {:?}",
                    j.metric_prefix
                ),
            ));
        }
        p
    }

    /// # Errors
    /// An unreadable `password_file` or TLS file.
    #[cfg(feature = "mqtt")]
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
        session::build(self, cx)
    }

    /// # Errors
    /// Always: this build has no MQTT client.
    #[cfg(not(feature = "mqtt"))]
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
        Err(crate::not_built("mqtt", "mqtt"))
    }
}

/// The client id when none is configured: `iotel-<hostname>-<component
/// id>`, with characters outside `[0-9A-Za-z_-]` as `-`.
pub fn default_client_id(component_id: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host = host.trim();
    let host = if host.is_empty() { "host" } else { host };
    format!("iotel-{host}-{component_id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
