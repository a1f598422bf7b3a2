//! `prometheus_remote_write`: sends metrics to a Prometheus remote write 1.0
//! endpoint (Prometheus with `--web.enable-remote-write-receiver`, Mimir,
//! Thanos receive, VictoriaMetrics, another iotel).
//!
//! - Samples wait in a bounded queue (`queue.rs`). A batch is sent once
//!   `batch.max_samples` are queued or the oldest has waited
//!   `batch.timeout`. When the queue is full the oldest samples are dropped
//!   and counted (`discarded`, reason `queue_full`); the batch in flight is
//!   never among them.
//! - One request is in flight at a time, so samples reach the peer in order,
//!   as Prometheus wants them. Input keeps flowing into the queue meanwhile,
//!   during retries too.
//! - Each answer is judged by the pure rules in `delivery.rs`: 2xx delivers
//!   the batch (`sent`); 429, 5xx, connection errors and timeouts retry the
//!   same batch with jittered exponential backoff, honouring `Retry-After`;
//!   any other status drops it (`discarded`, reason `rejected`, and an error
//!   `http_4xx`) with a warning that quotes the peer's answer.
//! - When the input closes (shutdown) what is queued is flushed without
//!   waiting for `batch.timeout`, for at most three `request_timeout`s;
//!   whatever is left then is counted as `discarded`, reason `shutdown`.
//!
//! Error codes counted (`iotel_component_errors_total`): `http_5xx`,
//! `http_429`, `connection_failed`, `request_timeout` per failed attempt;
//! `http_4xx` (or `http_3xx`) per rejected batch.

mod queue;
#[cfg(test)]
mod tests;

use super::http_delivery::{
    self as request, Action, Delivery, Exchange, Jitter, RetryPolicy, describe,
};
use crate::http_util::{self, Body};
use crate::{BuildContext, Problem};
use bytes::Bytes;
use iotel_engine::config::Duration;
use iotel_engine::{ComponentError, ComponentFuture, Sink, SinkContext};
use iotel_formats::remote_write;
use iotel_model::Events;
use queue::MemoryQueue;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::time::Instant;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to POST, e.g. `http://prometheus:9090/api/v1/write`.
    pub endpoint: String,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub queue: QueueConfig,
    /// How long one request may take, answer included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Extra request headers, e.g. `X-Scope-OrgID` for Mimir.
    #[serde(default)]
    pub headers: Headers,
}

/// `batch`: when a request is sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Samples per request at most; a request goes out as soon as this many
    /// are queued.
    #[serde(default = "default_batch_max_samples")]
    pub max_samples: NonZeroUsize,
    /// A request goes out once the oldest queued sample waited this long.
    #[serde(default = "default_batch_timeout")]
    pub timeout: Duration,
}

/// `queue`: the samples held while the endpoint is slow or away.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Samples held at most; past this the oldest are dropped.
    #[serde(default = "default_queue_max_samples")]
    pub max_samples: NonZeroUsize,
}

/// `retry`: the backoff between attempts to send a batch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// The wait after the first failure; doubled after each further one.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// The longest wait, `Retry-After` included.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
}

/// How long before the node's shutdown deadline the final flush gives up.
const FLUSH_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Extra request headers by name. Values stay out of `Debug` output: they
/// may be credentials (`Authorization`).
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Headers(pub BTreeMap<String, String>);

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "***")))
            .finish()
    }
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

// Smaller than Prometheus' 2,000 per send: the request buffers scale with
// it, and on the edge memory is the scarce thing, not requests per second.
fn default_batch_max_samples() -> NonZeroUsize {
    NonZeroUsize::new(500).unwrap_or(NonZeroUsize::MIN)
}

fn default_batch_timeout() -> Duration {
    Duration::from_secs(1)
}

// About 1.3 MB of samples at most: an outage longer than that is what the
// disk buffer is for.
fn default_queue_max_samples() -> NonZeroUsize {
    NonZeroUsize::new(20_000).unwrap_or(NonZeroUsize::MIN)
}

fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_samples: default_batch_max_samples(),
            timeout: default_batch_timeout(),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_samples: default_queue_max_samples(),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

/// Headers the sink sets itself, for the protocol or the connection.
const RESERVED_HEADERS: &[&str] = &[
    "content-encoding",
    "content-length",
    "content-type",
    "connection",
    "host",
    "transfer-encoding",
    "user-agent",
    "x-prometheus-remote-write-version",
];

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if let Err(e) = http_util::parse_http_url(&self.endpoint) {
            p.push(Problem::new("endpoint", e));
        }
        let positive = [
            ("batch.timeout", self.batch.timeout, "1s"),
            ("request_timeout", self.request_timeout, "10s"),
            ("retry.initial_backoff", self.retry.initial_backoff, "100ms"),
        ];
        for (key, d, example) in positive {
            if d.get().is_zero() {
                p.push(Problem::new(
                    key,
                    format!("expected a duration above 0s, such as \"{example}\""),
                ));
            }
        }
        if self.retry.max_backoff < self.retry.initial_backoff {
            p.push(Problem::new(
                "retry.max_backoff",
                format!(
                    "expected at least retry.initial_backoff ({}), got {}",
                    self.retry.initial_backoff, self.retry.max_backoff
                ),
            ));
        }
        if self.queue.max_samples < self.batch.max_samples {
            p.push(Problem::new(
                "queue.max_samples",
                format!(
                    "expected at least batch.max_samples ({}), got {}",
                    self.batch.max_samples, self.queue.max_samples
                ),
            ));
        }
        if let Err(problems) = self.request_headers() {
            p.extend(problems);
        }
        p
    }

    /// # Errors
    /// The first problem `validate` reports about the endpoint or headers.
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, Problem> {
        Ok(Box::new(self.remote_write()?))
    }

    fn remote_write(&self) -> Result<RemoteWrite, Problem> {
        let endpoint =
            http_util::parse_http_url(&self.endpoint).map_err(|e| Problem::new("endpoint", e))?;
        let headers = self.request_headers().map_err(|problems| {
            problems
                .into_iter()
                .next()
                .unwrap_or_else(|| Problem::new("headers", "invalid header"))
        })?;
        Ok(RemoteWrite {
            endpoint,
            headers,
            batch_max_samples: self.batch.max_samples.get(),
            batch_timeout: self.batch.timeout.get(),
            queue_max_samples: self.queue.max_samples.get(),
            request_timeout: self.request_timeout.get(),
            retry: RetryPolicy {
                initial_backoff: self.retry.initial_backoff.get(),
                max_backoff: self.retry.max_backoff.get(),
            },
        })
    }

    /// Every header of a request: the protocol's, then the configured ones.
    fn request_headers(&self) -> Result<http::HeaderMap, Vec<Problem>> {
        use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
        let mut map = http::HeaderMap::new();
        map.insert(
            CONTENT_ENCODING,
            HeaderValue::from_static(remote_write::CONTENT_ENCODING),
        );
        map.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(remote_write::CONTENT_TYPE),
        );
        map.insert(
            HeaderName::from_static("x-prometheus-remote-write-version"),
            HeaderValue::from_static(remote_write::VERSION),
        );
        map.insert(USER_AGENT, HeaderValue::from_static(http_util::USER_AGENT));
        let mut problems = Vec::new();
        for (name, value) in &self.headers.0 {
            let key = format!("headers.{name}");
            let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
                problems.push(Problem::new(key, "invalid header name"));
                continue;
            };
            if RESERVED_HEADERS.contains(&header.as_str()) {
                problems.push(Problem::new(
                    key,
                    format!("{name} is set by the sink itself and cannot be configured"),
                ));
                continue;
            }
            let Ok(mut v) = HeaderValue::from_str(value) else {
                problems.push(Problem::new(
                    key,
                    "invalid header value: expected visible ASCII characters and spaces",
                ));
                continue;
            };
            v.set_sensitive(true);
            map.insert(header, v);
        }
        if problems.is_empty() {
            Ok(map)
        } else {
            Err(problems)
        }
    }
}

#[derive(Debug)]
struct RemoteWrite {
    endpoint: http::Uri,
    /// Every header of a request; configured values are marked sensitive.
    headers: http::HeaderMap,
    batch_max_samples: usize,
    batch_timeout: std::time::Duration,
    queue_max_samples: usize,
    request_timeout: std::time::Duration,
    retry: RetryPolicy,
}

impl Sink for RemoteWrite {
    fn run(self: Box<Self>, cx: SinkContext) -> ComponentFuture {
        Box::pin(self.deliver(cx))
    }
}

/// The request in flight.
type Pending = Pin<Box<dyn Future<Output = Exchange> + Send>>;

/// The answer to the request in flight; never, when there is none.
async fn answer(in_flight: &mut Option<Pending>) -> Exchange {
    match in_flight {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

impl RemoteWrite {
    fn request(&self, body: Bytes) -> http::Request<Body> {
        let mut r = http::Request::new(Body::new(body));
        *r.method_mut() = http::Method::POST;
        *r.uri_mut() = self.endpoint.clone();
        *r.headers_mut() = self.headers.clone();
        r
    }

    /// Whether to send a new batch now.
    fn batch_due(&self, queue: &MemoryQueue, now: Instant, closing: bool) -> bool {
        !queue.is_empty()
            && (closing
                || queue.len() >= self.batch_max_samples
                || queue
                    .oldest_arrival()
                    .is_some_and(|t| now.duration_since(t) >= self.batch_timeout))
    }

    /// Queues what arrives and delivers it, one request at a time, until the
    /// input closed and the queue is flushed or the flush deadline passed.
    async fn deliver(self, mut cx: SinkContext) -> Result<(), ComponentError> {
        let id = cx.metrics.id().to_string();
        let client = http_util::client();
        let mut queue = MemoryQueue::new(self.queue_max_samples);
        let mut delivery = Delivery::new(self.retry);
        let mut jitter = Jitter::new();
        // Reused for every batch: past the first few, encoding allocates
        // only the body each request owns.
        let mut encoder = remote_write::Encoder::new();
        // The pinned batch at the head of the queue, encoded once for all
        // its attempts; `None` when no batch is pinned.
        let mut body: Option<Bytes> = None;
        let mut in_flight: Option<Pending> = None;
        // While set, the pinned batch waits to be retried.
        let mut retry_at: Option<Instant> = None;
        // Set when the input closed: the final flush ends by then.
        let mut flush_deadline: Option<Instant> = None;
        let queue_full = cx.metrics.discards("queue_full");
        let mut warned_full = false;
        tracing::info!(component = %id, "sending metrics to {}", self.endpoint);
        loop {
            let now = Instant::now();
            if retry_at.is_some_and(|t| t <= now) {
                retry_at = None;
            }
            if flush_deadline.is_some_and(|t| t <= now) {
                break;
            }
            let closing = flush_deadline.is_some();
            if in_flight.is_none() && retry_at.is_none() {
                if body.is_none() && self.batch_due(&queue, now, closing) {
                    let batch = queue.peek_batch(self.batch_max_samples);
                    body = Some(Bytes::copy_from_slice(encoder.encode(batch)));
                }
                if let Some(b) = &body {
                    let request = self.request(b.clone());
                    in_flight = Some(Box::pin(request::post(
                        client.clone(),
                        request,
                        self.request_timeout,
                    )));
                }
            }
            if closing && queue.is_empty() {
                break;
            }
            // The next moment something is due if no input or answer comes.
            let batch_timer = if body.is_none() {
                queue.oldest_arrival().map(|t| t + self.batch_timeout)
            } else {
                None
            };
            let wake = [retry_at, batch_timer, flush_deadline]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                events = cx.input.recv(), if !closing => match events {
                    Some(Events::Metrics(batch)) => {
                        let dropped = queue.push(batch, Instant::now());
                        if dropped > 0 {
                            queue_full.add(dropped as u64);
                            if !warned_full {
                                warned_full = true;
                                tracing::warn!(
                                    component = %id,
                                    "the queue holds queue.max_samples = {} samples; dropping the \
                                     oldest (counted as discarded, reason \"queue_full\")",
                                    self.queue_max_samples
                                );
                            }
                        }
                    }
                    // The graph sends this sink metrics only.
                    Some(other) => cx.metrics.discarded("unsupported_signal", other.len()),
                    None => {
                        // Stop trying a little before the node aborts the
                        // sink, so what is left is still counted.
                        let own = Instant::now() + self.request_timeout.saturating_mul(3);
                        let node = cx.shutdown.deadline().map(|d| d.checked_sub(FLUSH_MARGIN).unwrap_or(d));
                        flush_deadline = Some(node.map_or(own, |n| n.min(own)));
                    }
                },
                exchange = answer(&mut in_flight) => {
                    in_flight = None;
                    let n = queue.pinned();
                    match delivery.on_answer(&exchange.answer, jitter.next()) {
                        Action::Delivered { after_failures } => {
                            queue.ack();
                            body = None;
                            cx.metrics.sent(n);
                            warned_full = false;
                            if after_failures > 0 {
                                tracing::info!(
                                    component = %id,
                                    "delivered to {} again after {after_failures} failed attempts",
                                    self.endpoint
                                );
                            }
                        }
                        Action::Retry { delay, failures, code } => {
                            cx.metrics.error(code);
                            retry_at = Some(Instant::now() + delay);
                            // Every failure is counted; the log gets the
                            // 1st, 2nd, 4th, 8th… of a streak.
                            if failures.is_power_of_two() {
                                tracing::warn!(
                                    component = %id,
                                    "sending {n} samples to {} failed ({}); retrying in {delay:?} \
                                     (failed attempts: {failures})",
                                    self.endpoint,
                                    describe(&exchange),
                                );
                            }
                        }
                        Action::Reject { code } => {
                            queue.ack();
                            body = None;
                            cx.metrics.discarded("rejected", n);
                            cx.metrics.error(code);
                            tracing::warn!(
                                component = %id,
                                "{} refused {n} samples ({}); dropped them (counted as discarded, \
                                 reason \"rejected\"), as retrying would not help",
                                self.endpoint,
                                describe(&exchange),
                            );
                        }
                    }
                },
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake.unwrap_or(now))),
                    if wake.is_some() => {}
            }
        }
        let left = queue.len();
        if left > 0 {
            cx.metrics.discarded("shutdown", left);
            tracing::warn!(
                component = %id,
                "the input closed and {left} samples were not delivered to {} within 3 × \
                 request_timeout; dropped them (counted as discarded, reason \"shutdown\")",
                self.endpoint
            );
        }
        Ok(())
    }
}
