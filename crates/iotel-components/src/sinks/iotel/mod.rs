//! `iotel`: sends events to a gateway or cloud node over the native protocol
//! (`crate::native_protocol`), the agent's way upstream.
//!
//! - Every input batch goes into the sink's buffer first (`buffer`, see
//!   `sinks::buffer`): with `type = "disk"` it survives outages, restarts
//!   and crashes; the batch is acknowledged to the source that sent it once
//!   it is there.
//! - Buffered batches are read oldest first and joined into one request of
//!   up to `batch.max_events` events of one signal (one native frame; joining
//!   several scrapes is what makes the per-batch dictionary pay off). A
//!   request goes out once that many are waiting, or the oldest waited
//!   `batch.timeout`, or a backlog is draining.
//! - One request is in flight at a time, so batches arrive in buffer order.
//!   The frame's sequence is the first buffer id it covers and the
//!   `Iotel-Last-Sequence` header the last; ids increase across restarts,
//!   so the receiver drops retransmits.
//! - A batch leaves the buffer only when the receiver answered 200, or 409
//!   (it had those ids already: a retransmit after a lost answer). 429, 5xx,
//!   connection errors and timeouts retry the same request with jittered
//!   exponential backoff (`retry`), honouring `Retry-After`. Other 4xx drop
//!   the batch, counted (`discarded`, reason `rejected`), with a warning
//!   quoting the receiver.
//! - `drain.max_events_per_second` paces sending (a backlog after an outage
//!   included) so a fleet coming back does not flatten its gateway. Order is
//!   strictly oldest first: live data queues behind the backlog.
//! - At shutdown the sink keeps sending for at most three
//!   `request_timeout`s (and never past the node's deadline). What is left
//!   stays in a disk buffer for the next start; a memory buffer's leftovers
//!   are counted as discarded, reason `shutdown`.

#[cfg(test)]
mod tests;

use super::buffer::{BufferConfig, Buffered, PushError, SinkBuffer, WhenFull};
use super::http_delivery::{self as request, Action, Answer, Delivery, Exchange, Jitter, describe};
use super::prometheus_remote_write::RetryConfig;
use crate::http_util::{self, Body};
use crate::native_protocol::{BATCH_PATH, LAST_SEQUENCE, NEXT_SEQUENCE};
use crate::{BuildContext, Problem};
use bytes::Bytes;
use iotel_engine::config::Duration;
use iotel_engine::{Batch, ComponentError, ComponentFuture, Sink, SinkContext};
use iotel_formats::native::{self, Compression};
use iotel_model::Events;
use serde::Deserialize;
use std::future::Future;
use std::num::{NonZeroU64, NonZeroUsize};
use std::pin::Pin;
use std::time::Instant;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The receiver, e.g. `http://gateway:7070`; the path defaults to
    /// `/iotel/v1/batch`.
    pub endpoint: String,
    /// This agent's name on the wire; the receiver dedups per agent. Default:
    /// the host name.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// `none`, `snappy` (default), `zstd` or `lz4`.
    #[serde(default)]
    pub compression: CompressionName,
    #[serde(default)]
    pub batch: BatchConfig,
    /// How long one request may take, answer included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub drain: DrainConfig,
    #[serde(default)]
    pub buffer: BufferConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionName {
    None,
    #[default]
    Snappy,
    Zstd,
    Lz4,
}

impl CompressionName {
    fn get(self) -> Compression {
        match self {
            CompressionName::None => Compression::None,
            CompressionName::Snappy => Compression::Snappy,
            CompressionName::Zstd => Compression::Zstd,
            CompressionName::Lz4 => Compression::Lz4,
        }
    }
}

/// `batch`: how much goes into one request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Events per request at most.
    #[serde(default = "default_batch_max_events")]
    pub max_events: NonZeroUsize,
    /// A request goes out once the oldest waiting batch is this old.
    #[serde(default = "default_batch_timeout")]
    pub timeout: Duration,
}

/// `drain`: pacing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainConfig {
    /// Events sent per second at most; unset, as fast as the receiver takes
    /// them.
    #[serde(default)]
    pub max_events_per_second: Option<NonZeroU64>,
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_batch_max_events() -> NonZeroUsize {
    NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN)
}

fn default_batch_timeout() -> Duration {
    Duration::from_secs(1)
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: default_batch_max_events(),
            timeout: default_batch_timeout(),
        }
    }
}

/// How long before the node's shutdown deadline the final flush gives up.
const FLUSH_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if let Err(e) = endpoint(&self.endpoint) {
            p.push(Problem::new("endpoint", e));
        }
        if self.agent_id.as_ref().is_some_and(String::is_empty) {
            p.push(Problem::new("agent_id", "expected a non-empty name"));
        }
        if !self.compression.get().is_built_in() {
            p.push(Problem::new(
                "compression",
                format!(
                    "{} is not built into this binary; built in: {}",
                    self.compression.get().as_str(),
                    Compression::ALL
                        .iter()
                        .filter(|c| c.is_built_in())
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        for (key, d) in [
            ("batch.timeout", self.batch.timeout),
            ("request_timeout", self.request_timeout),
            ("retry.initial_backoff", self.retry.initial_backoff),
        ] {
            if d.get().is_zero() {
                p.push(Problem::new(key, "expected a duration above 0s"));
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
        p.extend(self.buffer.validate("buffer"));
        p
    }

    /// # Errors
    /// A bad endpoint, or no host name to use as the agent id.
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, Problem> {
        Ok(Box::new(self.sink()?))
    }

    fn sink(&self) -> Result<NativeSink, Problem> {
        let endpoint = endpoint(&self.endpoint).map_err(|e| Problem::new("endpoint", e))?;
        let agent_id = match &self.agent_id {
            Some(id) => id.clone(),
            None => host_name().ok_or_else(|| {
                Problem::new(
                    "agent_id",
                    "no host name to default to (read from /proc/sys/kernel/hostname); set \
                     agent_id",
                )
            })?,
        };
        Ok(NativeSink {
            endpoint,
            agent_id,
            compression: self.compression.get(),
            max_events: self.batch.max_events.get(),
            batch_timeout: self.batch.timeout.get(),
            request_timeout: self.request_timeout.get(),
            retry: request::RetryPolicy {
                initial_backoff: self.retry.initial_backoff.get(),
                max_backoff: self.retry.max_backoff.get(),
            },
            rate: self.drain.max_events_per_second.map(NonZeroU64::get),
            buffer: self.buffer.clone(),
        })
    }
}

/// The endpoint URL, with the batch path when none is given.
fn endpoint(url: &str) -> Result<http::Uri, String> {
    let uri = http_util::parse_http_url(url)?;
    if uri.path() != "/" {
        return Ok(uri);
    }
    let mut parts = uri.into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static(BATCH_PATH));
    http::Uri::from_parts(parts).map_err(|e| format!("{url}: {e}"))
}

fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[derive(Debug)]
struct NativeSink {
    endpoint: http::Uri,
    agent_id: String,
    compression: Compression,
    max_events: usize,
    batch_timeout: std::time::Duration,
    request_timeout: std::time::Duration,
    retry: request::RetryPolicy,
    rate: Option<u64>,
    buffer: BufferConfig,
}

impl Sink for NativeSink {
    fn run(self: Box<Self>, cx: SinkContext) -> ComponentFuture {
        Box::pin(self.deliver(cx))
    }
}

/// The request in flight.
type Pending = Pin<Box<dyn Future<Output = Exchange> + Send>>;

async fn answer(in_flight: &mut Option<Pending>) -> Exchange {
    match in_flight {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Buffered batches read for the next request, oldest first, all of one
/// signal; and the request body once encoded (kept for retries).
#[derive(Debug, Default)]
struct Outgoing {
    batches: Vec<Buffered>,
    events: usize,
    /// A batch read that did not fit (another signal, or over max_events).
    carry: Option<Buffered>,
    body: Option<Bytes>,
}

impl Outgoing {
    fn first_id(&self) -> Option<u64> {
        self.batches.first().map(|b| b.id)
    }

    fn last_id(&self) -> Option<u64> {
        self.batches.last().map(|b| b.id)
    }

    /// Removes the batches with ids below `next`; returns their events.
    fn take_below(&mut self, next: u64) -> usize {
        let k = self.batches.partition_point(|b| b.id < next);
        let n: usize = self.batches.drain(..k).map(|b| b.events.len()).sum();
        self.events -= n;
        self.body = None;
        n
    }
}

impl NativeSink {
    /// Whether the waiting batches make a request now.
    fn due(&self, out: &Outgoing, now_ms: u64, closing: bool) -> bool {
        let Some(oldest) = out.batches.first() else {
            return false;
        };
        closing
            || out.carry.is_some()
            || out.events >= self.max_events
            || now_ms.saturating_sub(oldest.written_unix_ms)
                >= self.batch_timeout.as_millis() as u64
    }

    /// Reads buffered batches into `out` until it is full or none is left.
    fn fill(
        &self,
        buffer: &mut SinkBuffer,
        out: &mut Outgoing,
        cx: &SinkContext,
    ) -> Result<(), ComponentError> {
        if out.body.is_some() {
            return Ok(());
        }
        loop {
            let next = match out.carry.take() {
                Some(b) => b,
                None => {
                    if out.events >= self.max_events {
                        return Ok(());
                    }
                    match buffer.next() {
                        Ok(Some(b)) => b,
                        Ok(None) => return Ok(()),
                        Err(e) => {
                            cx.metrics.error("buffer_read_failed");
                            return Err(ComponentError::new(format!(
                                "reading the buffer failed: {e}"
                            )));
                        }
                    }
                }
            };
            let fits = out.batches.first().is_none_or(|first| {
                first.events.signal() == next.events.signal()
                    && out.events + next.events.len() <= self.max_events
            });
            if !fits {
                out.carry = Some(next);
                return Ok(());
            }
            out.events += next.events.len();
            out.batches.push(next);
        }
    }

    /// One frame of every waiting batch.
    fn encode(&self, out: &Outgoing) -> Result<Bytes, String> {
        let mut iter = out.batches.iter();
        let Some(first) = iter.next() else {
            return Err("nothing to send".into());
        };
        let mut events = first.events.clone();
        for b in iter {
            // `fill` keeps one signal per request.
            let _ = events.append(b.events.clone());
        }
        native::encode(&self.agent_id, first.id, &events, self.compression)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }

    fn request(&self, body: Bytes, last: u64) -> http::Request<Body> {
        let mut r = http::Request::new(Body::new(body));
        *r.method_mut() = http::Method::POST;
        *r.uri_mut() = self.endpoint.clone();
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(native::CONTENT_TYPE),
        );
        h.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static(http_util::USER_AGENT),
        );
        h.insert(LAST_SEQUENCE, http::HeaderValue::from(last));
        r
    }

    async fn deliver(self, mut cx: SinkContext) -> Result<(), ComponentError> {
        let id = cx.metrics.id().to_string();
        let dir = cx.data_dir.join("buffers").join(&id);
        let mut buffer = SinkBuffer::open(&self.buffer, &dir, &cx.metrics)
            .map_err(|e| ComponentError::new(format!("opening the buffer failed: {e}")))?;
        let durable = matches!(self.buffer, BufferConfig::Disk(_));
        // Under `drop_oldest` a buffer is full only when every batch in it
        // is being sent: the new batch is dropped (counted), not waited on.
        let blocking = self.buffer.when_full() == WhenFull::Block;
        let client = http_util::client();
        let mut delivery = Delivery::new(self.retry);
        let mut jitter = Jitter::new();
        let mut out = Outgoing::default();
        let mut in_flight: Option<Pending> = None;
        let mut retry_at: Option<Instant> = None;
        let mut flush_deadline: Option<Instant> = None;
        // A batch refused by a full `block` buffer, waiting for room; input
        // is not read meanwhile: that is the backpressure.
        let mut blocked: Option<Batch> = None;
        // Pacing: the earliest moment the next request may go.
        let mut paced_until: Option<Instant> = None;
        let slowdown = cx.registry().gauge(
            "iotel_backlog_slowdown_factor",
            "How many times less often sources that adapt to backlog produce (1: normal); \
             follows the fullest sink buffer of the node.",
            &[],
        );
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(
            component = %id,
            "sending to {} as agent {:?}",
            self.endpoint,
            self.agent_id
        );
        loop {
            let now = Instant::now();
            if retry_at.is_some_and(|t| t <= now) {
                retry_at = None;
            }
            if paced_until.is_some_and(|t| t <= now) {
                paced_until = None;
            }
            if flush_deadline.is_some_and(|t| t <= now) {
                break;
            }
            if let Some(b) = blocked.take() {
                match buffer.push(&b.events) {
                    Err(PushError::Full) if blocking => blocked = Some(b),
                    other => self.pushed(other, &b.events, &cx),
                }
            }
            let closing = flush_deadline.is_some();
            if in_flight.is_none() && retry_at.is_none() && paced_until.is_none() {
                self.fill(&mut buffer, &mut out, &cx)?;
                if out.body.is_none() && self.due(&out, unix_ms(), closing) {
                    match self.encode(&out) {
                        Ok(b) => out.body = Some(b),
                        Err(e) => {
                            // Not expected: the events decoded from the buffer.
                            let n = out.events;
                            if let Some(last) = out.last_id() {
                                ack(&mut buffer, last, &cx)?;
                            }
                            out.take_below(u64::MAX);
                            cx.metrics.discarded("encode_failed", n);
                            tracing::warn!(component = %id, "encoding {n} events failed: {e}");
                        }
                    }
                }
                if let (Some(body), Some(last)) = (&out.body, out.last_id()) {
                    in_flight = Some(Box::pin(request::post(
                        client.clone(),
                        self.request(body.clone(), last),
                        self.request_timeout,
                    )));
                    if let Some(rate) = self.rate {
                        let secs = out.events as f64 / rate as f64;
                        paced_until = Some(now + std::time::Duration::from_secs_f64(secs));
                    }
                }
            }
            if closing && out.batches.is_empty() && out.carry.is_none() && buffer.is_empty() {
                break;
            }
            let batch_timer = match (&out.body, out.batches.first()) {
                (None, Some(b)) => {
                    let age = unix_ms().saturating_sub(b.written_unix_ms);
                    let wait = (self.batch_timeout.as_millis() as u64).saturating_sub(age);
                    Some(now + std::time::Duration::from_millis(wait))
                }
                _ => None,
            };
            let wake = [retry_at, paced_until, batch_timer, flush_deadline]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                batch = cx.input.recv_batch(), if !closing && blocked.is_none() => match batch {
                    Some(b) => match buffer.push(&b.events) {
                        Err(PushError::Full) if blocking => blocked = Some(b),
                        other => self.pushed(other, &b.events, &cx),
                    },
                    None => {
                        let own = Instant::now() + self.request_timeout.saturating_mul(3);
                        let node = cx
                            .shutdown
                            .deadline()
                            .map(|d| d.checked_sub(FLUSH_MARGIN).unwrap_or(d));
                        flush_deadline = Some(node.map_or(own, |n| n.min(own)));
                    }
                },
                exchange = answer(&mut in_flight) => {
                    in_flight = None;
                    self.on_answer(exchange, &mut out, &mut buffer, &mut delivery, &mut jitter, &mut retry_at, &cx)?;
                },
                _ = tick.tick() => {
                    if let Err(e) = buffer.sync_if_due() {
                        cx.metrics.error("buffer_sync_failed");
                        tracing::warn!(component = %id, "syncing the buffer failed: {e}");
                    }
                },
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake.unwrap_or(now))),
                    if wake.is_some() => {}
            }
            buffer.update_metrics();
            self.report_backlog(&buffer, &cx, &slowdown);
        }
        if let Some(b) = blocked.take() {
            cx.metrics.discarded("shutdown", b.events.len());
        }
        let left = buffer.stats();
        if durable {
            if left.records > 0 {
                tracing::info!(
                    component = %id,
                    "{} batch(es) stay in the disk buffer {} and are sent after the next start",
                    left.records,
                    dir.display()
                );
            }
            if let Err(e) = buffer.close() {
                tracing::warn!(component = %id, "closing the buffer failed: {e}");
            }
        } else {
            let n = left.events.unwrap_or(0) as usize;
            if n > 0 {
                cx.metrics.discarded("shutdown", n);
                tracing::warn!(
                    component = %id,
                    "the input closed and {n} events were not delivered to {} within 3 × \
                     request_timeout; dropped them (counted as discarded, reason \"shutdown\")",
                    self.endpoint
                );
            }
        }
        Ok(())
    }

    /// Tells the node how full the buffer is; logs a change of the
    /// slowdown factor that follows.
    fn report_backlog(&self, buffer: &SinkBuffer, cx: &SinkContext, gauge: &iotel_engine::Gauge) {
        let fill = buffer.fill_ratio();
        if let Some(factor) = cx.registry().backlog().report(cx.metrics.id(), fill) {
            gauge.set(f64::from(factor));
            if factor > 1 {
                tracing::warn!(
                    component = %cx.metrics.id(),
                    "the buffer is {:.0}% full: sources that adapt now produce {factor}× less often \
                     until it drains",
                    fill * 100.0
                );
            } else {
                tracing::info!(
                    component = %cx.metrics.id(),
                    "the buffer drained to {:.0}%: sources back to their configured rate",
                    fill * 100.0
                );
            }
        }
    }

    /// Counts what a push did that is not "stored".
    fn pushed(&self, result: Result<(), PushError>, events: &Events, cx: &SinkContext) {
        let Err(e) = result else {
            return;
        };
        let n = events.len();
        cx.metrics.discarded(e.code(), n);
        let errors = cx.metrics.errors(e.code());
        errors.inc();
        // The 1st, 2nd, 4th, 8th… of each kind.
        if errors.get().is_power_of_two() {
            tracing::warn!(
                component = %cx.metrics.id(),
                "a batch of {n} events could not be buffered: {e} (counted as discarded, reason \
                 {:?}; {} such batches so far)",
                e.code(),
                errors.get()
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_answer(
        &self,
        exchange: Exchange,
        out: &mut Outgoing,
        buffer: &mut SinkBuffer,
        delivery: &mut Delivery,
        jitter: &mut Jitter,
        retry_at: &mut Option<Instant>,
        cx: &SinkContext,
    ) -> Result<(), ComponentError> {
        let id = cx.metrics.id();
        let (Some(first), Some(last)) = (out.first_id(), out.last_id()) else {
            return Ok(());
        };
        let n = out.events;
        if let Answer::Status { status: 409, .. } = exchange.answer {
            let next = exchange
                .headers
                .get(NEXT_SEQUENCE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(next) = next.filter(|n| *n > first) {
                // The receiver had ids below `next`: they were delivered.
                let upto = next.min(last + 1) - 1;
                ack(buffer, upto, cx)?;
                let had = out.take_below(next);
                cx.metrics.sent(had);
                tracing::debug!(
                    component = %id,
                    "the receiver already had {had} events (sequences {first}..{upto})"
                );
                return Ok(());
            }
        }
        match delivery.on_answer(&exchange.answer, jitter.next()) {
            Action::Delivered { after_failures } => {
                ack(buffer, last, cx)?;
                out.take_below(u64::MAX);
                cx.metrics.sent(n);
                if after_failures > 0 {
                    tracing::info!(
                        component = %id,
                        "delivered to {} again after {after_failures} failed attempts",
                        self.endpoint
                    );
                }
            }
            Action::Retry {
                delay,
                failures,
                code,
            } => {
                cx.metrics.error(code);
                *retry_at = Some(Instant::now() + delay);
                if failures.is_power_of_two() {
                    tracing::warn!(
                        component = %id,
                        "sending {n} events to {} failed ({}); retrying in {delay:?} (failed \
                         attempts: {failures})",
                        self.endpoint,
                        describe(&exchange),
                    );
                }
            }
            Action::Reject { code } => {
                ack(buffer, last, cx)?;
                out.take_below(u64::MAX);
                cx.metrics.discarded("rejected", n);
                cx.metrics.error(code);
                tracing::warn!(
                    component = %id,
                    "{} refused {n} events ({}); dropped them (counted as discarded, reason \
                     \"rejected\"), as sending them again would not help",
                    self.endpoint,
                    describe(&exchange),
                );
            }
        }
        Ok(())
    }
}

fn ack(buffer: &mut SinkBuffer, id: u64, cx: &SinkContext) -> Result<(), ComponentError> {
    buffer.ack(id).map_err(|e| {
        cx.metrics.error("buffer_ack_failed");
        ComponentError::new(format!("acknowledging buffered batches failed: {e}"))
    })
}

fn unix_ms() -> u64 {
    u64::try_from(iotel_model::now_unix_ms()).unwrap_or(0)
}
