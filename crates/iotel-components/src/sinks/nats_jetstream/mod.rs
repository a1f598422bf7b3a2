//! `nats_jetstream`: publishes events into NATS JetStream, the cloud tier's
//! stream engine, for workers to consume (the `nats_jetstream` source).
//!
//! ```toml
//! [sinks.stream]
//! type = "nats_jetstream"
//! inputs = ["ingest"]
//! url = "nats://127.0.0.1:4222"
//! buffer = { type = "disk", max_size = "1GiB", when_full = "block" }
//! ```
//!
//! - **Subjects.** Every batch is split by tenant and shard into one
//!   message per `iotel.<tenant>.<signal>.<shard>`: the tenant is the
//!   `tenant_label` label (`default` when an event has none), the signal
//!   `metrics`, `logs` or `traces`, and the shard
//!   `fnv1a64(tenant, 0x00, device_id) % shards` (see [`shard`]), so one
//!   device's events always land on one subject and workers can split a
//!   tenant by shard. A tenant's characters that a subject token cannot hold
//!   (`.`, `*`, `>`, whitespace) become `_` in the subject; the label itself
//!   is unchanged.
//! - **Payload.** A message is one native batch frame
//!   (`iotel_formats::native`) compressed with lz4, the same bytes the
//!   `iotel` sink sends, so the source decodes it with the same limits.
//! - **Delivery.** Input batches go into the sink's `buffer` first (see
//!   `sinks::buffered`) and are acknowledged upstream there; a buffered
//!   batch leaves the buffer only once JetStream acknowledged every message
//!   made of it (each `PublishAckFuture` awaited). A message JetStream did
//!   not acknowledge — the server is down, no stream takes the subject, no
//!   answer within `request_timeout` — makes the whole request fail and be
//!   sent again with backoff (`retry`); messages it had stored already are
//!   dropped by JetStream as duplicates, because each carries a
//!   deterministic `Nats-Msg-Id`: `<publisher_id>:<first>-<last>:<subject>`,
//!   the buffer ids the request covers. With a disk buffer that survives
//!   restarts too (within the stream's `duplicate_window`).
//! - **The stream.** Before the first publish (and again after a failure)
//!   the sink looks up `stream`; when it is missing and `create_stream` is
//!   true (the default) it creates it with subjects `iotel.>`, file storage,
//!   `max_age`, `max_bytes`, `replicas` and `duplicate_window`. An existing
//!   stream is used as it is, as long as its subjects take `iotel.>`; one
//!   that does not is an error (`stream_mismatch`), retried, so an operator
//!   can fix it without data being dropped.
//!
//! Counted: `iotel_nats_published_messages_total`,
//! `iotel_nats_published_bytes_total` (payload bytes),
//! `iotel_nats_duplicate_messages_total` (messages JetStream already had),
//! and failed attempts in `iotel_component_errors_total` by `error_code`:
//! `disconnected`, `stream_not_found`, `stream_mismatch`, `stream_check_failed`,
//! `publish_timeout`, `publish_failed`, `max_payload_exceeded`,
//! `request_timeout`. A message over the server's `max_payload` is never
//! taken; its request is dropped, counted as discarded (reason `rejected`).

mod publish;
#[cfg(test)]
mod tests;

use super::buffer::BufferConfig;
use super::buffered::{self, Settings};
use super::http_delivery::RetryConfig;
use crate::{BuildContext, Problem};
use iotel_engine::config::{ByteSize, Duration};
use iotel_engine::{ComponentFuture, Sink, SinkContext};
use serde::Deserialize;
use std::num::{NonZeroU32, NonZeroUsize};

/// The first token of every subject this sink publishes to.
pub const SUBJECT_PREFIX: &str = "iotel";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The server(s): `nats://host:port` (`tls://` for TLS), several
    /// separated by commas.
    #[serde(default = "default_url")]
    pub url: String,
    /// The stream the subjects are stored in.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Create `stream` when it is missing; `false`: only check it exists.
    #[serde(default = "default_true")]
    pub create_stream: bool,
    /// A created stream's retention by age; `0s`: unlimited.
    #[serde(default = "default_max_age")]
    pub max_age: Duration,
    /// A created stream's size limit; unset: unlimited.
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
    /// A created stream's replicas (1 on a single server).
    #[serde(default = "default_replicas")]
    pub replicas: NonZeroU32,
    /// A created stream's window in which a `Nats-Msg-Id` seen before is
    /// dropped as a duplicate.
    #[serde(default = "default_duplicate_window")]
    pub duplicate_window: Duration,
    /// Shards per tenant and signal.
    #[serde(default = "default_shards")]
    pub shards: NonZeroU32,
    /// The label naming an event's tenant.
    #[serde(default = "default_tenant_label")]
    pub tenant_label: String,
    /// This sink's name in message ids; unique per publishing node.
    /// Default: `<host name>/<component id>`.
    #[serde(default)]
    pub publisher_id: Option<String>,
    #[serde(default)]
    pub batch: BatchConfig,
    /// How long one request (every message of it, acknowledgements
    /// included) may take.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub buffer: BufferConfig,
}

/// `batch`: how much goes into one request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Events per request, about (default 10,000).
    #[serde(default = "default_batch_max_events")]
    pub max_events: NonZeroUsize,
    /// A request goes out once the oldest waiting batch is this old.
    #[serde(default = "default_batch_timeout")]
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: default_batch_max_events(),
            timeout: default_batch_timeout(),
        }
    }
}

pub(crate) fn default_url() -> String {
    "nats://127.0.0.1:4222".to_string()
}

pub(crate) fn default_stream() -> String {
    "IOTEL".to_string()
}

fn default_true() -> bool {
    true
}

fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_replicas() -> NonZeroU32 {
    NonZeroU32::MIN
}

fn default_duplicate_window() -> Duration {
    Duration::from_secs(120)
}

fn default_shards() -> NonZeroU32 {
    NonZeroU32::new(16).unwrap_or(NonZeroU32::MIN)
}

pub(crate) fn default_tenant_label() -> String {
    "tenant".to_string()
}

fn default_batch_max_events() -> NonZeroUsize {
    NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN)
}

// The cloud tier streams: batches wait little.
fn default_batch_timeout() -> Duration {
    Duration::from_millis(200)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Checks a server list: one or more `nats://`, `tls://` (or `ws://`-less)
/// addresses separated by commas.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    if url.trim().is_empty() {
        return Err("expected a server such as \"nats://127.0.0.1:4222\"".to_string());
    }
    for part in url.split(',') {
        let part = part.trim();
        if !(part.starts_with("nats://") || part.starts_with("tls://")) {
            return Err(format!(
                "expected nats://host[:port] or tls://host[:port], got {part:?}"
            ));
        }
        part.parse::<async_nats::ServerAddr>()
            .map_err(|e| format!("{part:?}: {e}"))?;
    }
    Ok(())
}

/// Checks a stream name: JetStream refuses `.`, `*`, `>`, whitespace and
/// path separators in it.
pub(crate) fn check_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("expected a stream name such as \"IOTEL\"".to_string());
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace())
    {
        return Err(format!("{name:?}: a stream name cannot contain {c:?}"));
    }
    Ok(())
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if let Err(e) = check_url(&self.url) {
            p.push(Problem::new("url", e));
        }
        if let Err(e) = check_stream_name(&self.stream) {
            p.push(Problem::new("stream", e));
        }
        if self.tenant_label.is_empty() {
            p.push(Problem::new(
                "tenant_label",
                "expected a label name such as \"tenant\"",
            ));
        }
        if self.publisher_id.as_ref().is_some_and(String::is_empty) {
            p.push(Problem::new("publisher_id", "expected a non-empty name"));
        }
        if self.shards.get() > 65_536 {
            p.push(Problem::new(
                "shards",
                format!("expected 1 to 65536, got {}", self.shards),
            ));
        }
        if self.replicas.get() > 5 {
            p.push(Problem::new(
                "replicas",
                format!("expected 1 to 5 (JetStream's limit), got {}", self.replicas),
            ));
        }
        if self.duplicate_window.get().is_zero() {
            p.push(Problem::new(
                "duplicate_window",
                "expected a duration above 0s, such as \"2m\"",
            ));
        }
        if !self.max_age.get().is_zero() && self.duplicate_window > self.max_age {
            p.push(Problem::new(
                "duplicate_window",
                format!(
                    "expected at most max_age ({}), got {}",
                    self.max_age, self.duplicate_window
                ),
            ));
        }
        if self.max_bytes.is_some_and(|b| b.bytes() == 0) {
            p.push(Problem::new(
                "max_bytes",
                "expected a size above 0 (leave it out for no limit)",
            ));
        }
        for (key, d) in [
            ("batch.timeout", self.batch.timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if d.get().is_zero() {
                p.push(Problem::new(key, "expected a duration above 0s"));
            }
        }
        p.extend(self.retry.validate());
        p.extend(self.buffer.validate("buffer"));
        p
    }

    /// # Errors
    /// No host name to make the default `publisher_id` of.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, Problem> {
        let publisher_id = match &self.publisher_id {
            Some(id) => id.clone(),
            None => format!(
                "{}/{}",
                host_name().ok_or_else(|| Problem::new(
                    "publisher_id",
                    "no host name to default to (read from /proc/sys/kernel/hostname); set \
                     publisher_id"
                ))?,
                cx.id
            ),
        };
        Ok(Box::new(NatsSink {
            config: self.clone(),
            publisher_id,
        }))
    }

    fn settings(&self) -> Settings {
        Settings {
            peer: format!("{} (stream {})", self.url, self.stream),
            unit: "events",
            max_events: self.batch.max_events.get(),
            batch_timeout: self.batch.timeout.get(),
            request_timeout: self.request_timeout.get(),
            retry: self.retry.policy(),
            rate: None,
            buffer: self.buffer.clone(),
            client: None,
        }
    }
}

fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// The shard of a device: FNV-1a (64 bit) over the tenant's bytes, one
/// 0x00 byte and the device id's bytes, modulo `shards`. Stable across
/// builds, platforms and releases (it is part of how data is laid out in
/// the stream), and cheap; not meant to resist chosen keys.
pub fn shard(tenant: &str, device_id: &str, shards: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in tenant.bytes().chain([0u8]).chain(device_id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    (h % u64::from(shards.max(1))) as u32
}

/// A tenant as one subject token: `.`, `*`, `>` and whitespace become `_`;
/// an empty one is `default`.
pub fn subject_token(tenant: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control();
    if tenant.is_empty() {
        std::borrow::Cow::Borrowed("default")
    } else if tenant.contains(bad) {
        std::borrow::Cow::Owned(
            tenant
                .chars()
                .map(|c| if bad(c) { '_' } else { c })
                .collect(),
        )
    } else {
        std::borrow::Cow::Borrowed(tenant)
    }
}

#[derive(Debug)]
struct NatsSink {
    config: Config,
    publisher_id: String,
}

impl Sink for NatsSink {
    fn run(self: Box<Self>, cx: SinkContext) -> ComponentFuture {
        let NatsSink {
            config,
            publisher_id,
        } = *self;
        Box::pin(async move {
            let settings = config.settings();
            let protocol = publish::Publisher::start(&config, publisher_id, &cx).await?;
            buffered::deliver(settings, protocol, cx).await
        })
    }
}

/// Connects to `url`: the client reconnects on its own, forever, and a
/// server down at start is no error (publishes fail until it is up).
pub(crate) async fn connect(
    url: &str,
    name: &str,
    component: &str,
) -> Result<async_nats::Client, String> {
    let component = component.to_string();
    let url_log = url.to_string();
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            // 100ms doubling up to 5s: the cloud tier's server comes back
            // fast, and this is the only thing waiting on it.
            let shift = u32::try_from(attempts.min(6)).unwrap_or(6);
            std::time::Duration::from_millis(100 << shift).min(std::time::Duration::from_secs(5))
        })
        .event_callback(move |event| {
            let component = component.clone();
            let url = url_log.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!(component = %component, "connected to NATS at {url}");
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(
                            component = %component,
                            "lost the connection to NATS at {url}; reconnecting"
                        );
                    }
                    other => {
                        tracing::debug!(component = %component, "NATS: {other}");
                    }
                }
            }
        })
        .connect(url)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))
}
