//! Delivery of buffered batches over HTTP, one request at a time: the loop
//! the `iotel` and `prometheus_remote_write` sinks share. What differs
//! between them — how batches become a request body, what the request looks
//! like, what a peer's answer may add — is their [`Protocol`].
//!
//! - Every input batch goes into the sink's [`SinkBuffer`] first and is
//!   acknowledged upstream once there (under `block` the sink stops reading
//!   its input while the buffer is full: that is the backpressure; under
//!   `drop_oldest` the buffer makes room itself; under `downsample` the
//!   backlog is compacted when no request awaits an answer).
//! - Buffered batches are read oldest first into the protocol until it says
//!   the next does not fit; a request goes out once `max_events` are in, the
//!   oldest waited `batch_timeout`, or more batches are waiting (a backlog).
//! - A batch leaves the buffer only when the peer answered 2xx, or when the
//!   protocol recognises that the peer already had it. 429, 5xx (or the
//!   statuses the protocol names), connection errors and timeouts retry the
//!   same body with jittered exponential backoff (`http_delivery`); other
//!   answers drop the batch, counted as discarded with reason `rejected`.
//!   A 2xx whose body says the peer dropped some of the events (OTLP's
//!   partial success) counts those as discarded, reason `rejected`, and
//!   the rest as sent.
//! - `rate` paces requests, a backlog after an outage included. Order is
//!   strictly oldest first.
//! - When the input closes the sink keeps sending for at most three
//!   `request_timeout`s, and it stops at the node's deadline even while its
//!   input is still open (held back by a full buffer); what is left
//!   stays in a disk buffer for the next start, or is counted as discarded
//!   (reason `shutdown`) from a memory buffer.

pub(crate) mod log_batch;
#[cfg(test)]
pub(crate) mod test_peer;

use super::buffer::{BufferConfig, PushError, SinkBuffer, WhenFull};
use super::http_delivery::{self as request, Action, Delivery, Exchange, Jitter, describe};
use crate::http_util::{self, Body};
use bytes::Bytes;
use iotel_engine::{Batch, ComponentError, Gauge, SinkContext};
use iotel_model::Events;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// How batches become requests, for one kind of peer.
pub(crate) trait Protocol: Send {
    /// Whether `events` may join what was added since the last `clear`
    /// (always, when nothing was).
    fn fits(&self, events: &Events) -> bool;
    /// Adds a batch to the next request.
    fn add(&mut self, events: Events);
    /// The request body of everything added, which covers the buffer ids
    /// `first ..= last`. What was added may be dropped now: a retry sends
    /// the same body.
    fn encode(&mut self, first: u64, last: u64) -> Result<Bytes, String>;
    /// Forgets what was added.
    fn clear(&mut self);
    /// The request carrying `body`.
    fn request(&self, body: Bytes, first: u64, last: u64) -> http::Request<Body>;
    /// When the answer says the peer already had some of the batch: the
    /// first id it does not have (everything below was delivered before).
    fn peer_has_below(&self, _exchange: &Exchange) -> Option<u64> {
        None
    }
    /// Whether an answer with `status` (not 2xx) is worth sending again;
    /// by default 429 and 5xx.
    fn retryable(&self, status: u16) -> bool {
        request::retryable(status)
    }
    /// When a 2xx answer says the peer dropped some of the events all the
    /// same: how many (at most the request's), and what it said.
    fn partially_rejected(&self, _exchange: &Exchange) -> Option<PartialRejection> {
        None
    }
}

/// What a peer that accepted a request said it dropped of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartialRejection {
    /// Events dropped; 0 when the peer only warned.
    pub events: usize,
    pub message: String,
}

/// What every buffered HTTP sink is configured with.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// For logs: where requests go.
    pub peer: String,
    /// "events", "samples": what the logs call the sink's events.
    pub unit: &'static str,
    pub max_events: usize,
    pub batch_timeout: Duration,
    pub request_timeout: Duration,
    pub retry: request::RetryPolicy,
    /// Events per second at most.
    pub rate: Option<u64>,
    pub buffer: BufferConfig,
}

/// How long before the node's shutdown deadline the final flush gives up.
const FLUSH_MARGIN: Duration = Duration::from_millis(500);

/// The request in flight.
type Pending = Pin<Box<dyn Future<Output = Exchange> + Send>>;

async fn answer(in_flight: &mut Option<Pending>) -> Exchange {
    match in_flight {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The buffered batches in the next request: their ids, sizes and ages.
#[derive(Debug, Default)]
struct Outgoing {
    /// (id, events, written_unix_ms), oldest first.
    batches: Vec<(u64, usize, u64)>,
    events: usize,
    /// A batch read that did not fit.
    carry: Option<super::buffer::Buffered>,
    /// The encoded request, kept for retries.
    body: Option<Bytes>,
}

impl Outgoing {
    fn first_id(&self) -> Option<u64> {
        self.batches.first().map(|b| b.0)
    }

    fn last_id(&self) -> Option<u64> {
        self.batches.last().map(|b| b.0)
    }

    /// Events of the batches with ids below `next`.
    fn events_below(&self, next: u64) -> usize {
        self.batches
            .iter()
            .take_while(|b| b.0 < next)
            .map(|b| b.1)
            .sum()
    }

    fn clear(&mut self) {
        self.batches.clear();
        self.events = 0;
        self.carry = None;
        self.body = None;
    }
}

/// The state of one sink's delivery.
struct Driver<P> {
    s: Settings,
    protocol: P,
    buffer: SinkBuffer,
    out: Outgoing,
    delivery: Delivery,
    jitter: Jitter,
    retry_at: Option<Instant>,
    slowdown: Gauge,
}

/// Runs a buffered sink until its input closed and it flushed.
pub(crate) async fn deliver<P: Protocol>(
    s: Settings,
    protocol: P,
    mut cx: SinkContext,
) -> Result<(), ComponentError> {
    let id = cx.metrics.id().to_string();
    let dir = cx.data_dir.join("buffers").join(&id);
    let buffer = SinkBuffer::open(&s.buffer, &dir, &cx.metrics)
        .map_err(|e| ComponentError::new(format!("opening the buffer failed: {e}")))?;
    let durable = matches!(s.buffer, BufferConfig::Disk(_));
    let policy = s.buffer.when_full();
    let client = http_util::client();
    let mut d = Driver {
        delivery: Delivery::new(s.retry),
        slowdown: cx.registry().gauge(
            "iotel_backlog_slowdown_factor",
            "How many times less often sources that adapt to backlog produce (1: normal); \
             follows the fullest sink buffer of the node.",
            &[],
        ),
        s,
        protocol,
        buffer,
        out: Outgoing::default(),
        jitter: Jitter::new(),
        retry_at: None,
    };
    let mut in_flight: Option<Pending> = None;
    let mut flush_deadline: Option<Instant> = None;
    // A batch refused by a full buffer, waiting for room; input is not read
    // meanwhile: that is the backpressure.
    let mut blocked: Option<Batch> = None;
    // Pacing: the earliest moment the next request may go.
    let mut paced_until: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Set once the node is stopping: a sink whose input stays open (held
    // back by a full buffer, or fed by a receiver still answering) must
    // still end within the node's deadline, accounting for what it holds.
    let mut stopping = false;
    let mut hard_deadline: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if d.retry_at.is_some_and(|t| t <= now) {
            d.retry_at = None;
        }
        if paced_until.is_some_and(|t| t <= now) {
            paced_until = None;
        }
        if flush_deadline.is_some_and(|t| t <= now) || hard_deadline.is_some_and(|t| t <= now) {
            break;
        }
        if let Some(b) = blocked.take() {
            blocked = d.push(b, policy, in_flight.is_none(), &cx)?;
        }
        let closing = flush_deadline.is_some();
        if in_flight.is_none() && d.retry_at.is_none() && paced_until.is_none() {
            d.fill(&cx)?;
            if d.out.body.is_none() && d.due(unix_ms(), closing) {
                d.encode(&cx)?;
            }
            if let (Some(body), Some(first), Some(last)) =
                (&d.out.body, d.out.first_id(), d.out.last_id())
            {
                in_flight = Some(Box::pin(request::post(
                    client.clone(),
                    d.protocol.request(body.clone(), first, last),
                    d.s.request_timeout,
                )));
                if let Some(rate) = d.s.rate {
                    let secs = d.out.events as f64 / rate as f64;
                    paced_until = Some(now + Duration::from_secs_f64(secs));
                }
            }
        }
        if closing && d.out.batches.is_empty() && d.out.carry.is_none() && d.buffer.is_empty() {
            break;
        }
        let batch_timer = match (&d.out.body, d.out.batches.first()) {
            (None, Some(&(_, _, written))) => {
                let age = unix_ms().saturating_sub(written);
                let wait = (d.s.batch_timeout.as_millis() as u64).saturating_sub(age);
                Some(now + Duration::from_millis(wait))
            }
            _ => None,
        };
        let wake = [
            d.retry_at,
            paced_until,
            batch_timer,
            flush_deadline,
            hard_deadline,
        ]
        .into_iter()
        .flatten()
        .min();
        tokio::select! {
            batch = cx.input.recv_batch(), if !closing && blocked.is_none() => match batch {
                Some(b) => blocked = d.push(b, policy, in_flight.is_none(), &cx)?,
                None => {
                    let own = Instant::now() + d.s.request_timeout.saturating_mul(3);
                    let node = cx
                        .shutdown
                        .deadline()
                        .map(|t| t.checked_sub(FLUSH_MARGIN).unwrap_or(t));
                    flush_deadline = Some(node.map_or(own, |n| n.min(own)));
                }
            },
            () = cx.shutdown.wait(), if !stopping => {
                stopping = true;
                hard_deadline = cx
                    .shutdown
                    .deadline()
                    .map(|node| node.checked_sub(FLUSH_MARGIN).unwrap_or(node));
            },
            exchange = answer(&mut in_flight) => {
                in_flight = None;
                d.on_answer(&exchange, &cx)?;
            },
            _ = tick.tick() => {
                if let Err(e) = d.buffer.sync_if_due() {
                    cx.metrics.error("buffer_sync_failed");
                    tracing::warn!(component = %id, "syncing the buffer failed: {e}");
                }
            },
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake.unwrap_or(now))),
                if wake.is_some() => {}
        }
        d.buffer.update_metrics();
        d.report_backlog(&cx);
    }
    if let Some(b) = blocked.take() {
        cx.metrics.discarded("shutdown", b.events.len());
    }
    let left = d.buffer.stats();
    if durable {
        if left.records > 0 {
            tracing::info!(
                component = %id,
                "{} batch(es) stay in the disk buffer {} and are sent after the next start",
                left.records,
                dir.display()
            );
        }
        if let Err(e) = d.buffer.close() {
            tracing::warn!(component = %id, "closing the buffer failed: {e}");
        }
    } else {
        let n = left.events.unwrap_or(0) as usize;
        if n > 0 {
            cx.metrics.discarded("shutdown", n);
            tracing::warn!(
                component = %id,
                "the input closed and {n} {} were not delivered to {} within 3 × request_timeout; \
                 dropped them (counted as discarded, reason \"shutdown\")",
                d.s.unit,
                d.s.peer
            );
        }
    }
    Ok(())
}

impl<P: Protocol> Driver<P> {
    /// Whether what was read makes a request now.
    fn due(&self, now_ms: u64, closing: bool) -> bool {
        let Some(&(_, _, oldest)) = self.out.batches.first() else {
            return false;
        };
        closing
            || self.out.carry.is_some()
            || self.out.events >= self.s.max_events
            // Written "in the future": the clock stepped back; do not wait.
            || now_ms < oldest
            || now_ms - oldest >= self.s.batch_timeout.as_millis() as u64
    }

    /// Stores an input batch, in pieces of at most `max_events` so a
    /// request never has to hold more. Returns what has to wait for room.
    fn push(
        &mut self,
        mut b: Batch,
        policy: WhenFull,
        idle: bool,
        cx: &SinkContext,
    ) -> Result<Option<Batch>, ComponentError> {
        while b.events.len() > self.s.max_events {
            let rest = split_off(&mut b.events, self.s.max_events);
            let head = Batch {
                events: std::mem::replace(&mut b.events, rest),
                ack: b.ack.clone(),
            };
            if let Some(mut waiting) = self.push_one(head, policy, idle, cx)? {
                // Put the piece back in front of the rest and wait.
                let _ = waiting.events.append(b.events);
                return Ok(Some(waiting));
            }
        }
        self.push_one(b, policy, idle, cx)
    }

    /// Stores one piece. Returns it when it has to wait for room.
    fn push_one(
        &mut self,
        b: Batch,
        policy: WhenFull,
        idle: bool,
        cx: &SinkContext,
    ) -> Result<Option<Batch>, ComponentError> {
        match self.buffer.push(&b.events) {
            Ok(()) => {
                b.ack.done();
                Ok(None)
            }
            Err(PushError::Full) if policy == WhenFull::Block => Ok(Some(b)),
            // The disk is full or failing for now: hold the input back and
            // try again, rather than drop what a peer may not send again.
            Err(e @ PushError::Io(_)) if e.is_retryable() => {
                let errors = cx.metrics.errors(e.code());
                errors.inc();
                if errors.get().is_power_of_two() {
                    tracing::warn!(
                        component = %cx.metrics.id(),
                        "buffering failed ({e}); holding the input back and trying again"
                    );
                }
                Ok(Some(b))
            }
            Err(PushError::Full) if policy == WhenFull::Downsample => {
                // Compaction rereads the backlog from its head, so nothing
                // may be waiting for an answer.
                if !idle {
                    return Ok(Some(b));
                }
                self.out.clear();
                self.protocol.clear();
                let compacted = self.buffer.compact().map_err(|e| {
                    cx.metrics.error("buffer_compact_failed");
                    ComponentError::new(format!("compacting the buffer failed: {e}"))
                })?;
                let Batch { events, ack } = b;
                if compacted.freed {
                    tracing::info!(
                        component = %cx.metrics.id(),
                        "the buffer is full: downsampled its {} oldest batches, {} {} to {}",
                        compacted.batches_in,
                        compacted.events_in,
                        self.s.unit,
                        compacted.events_out
                    );
                    let again = self.buffer.push(&events);
                    if again.is_ok() {
                        ack.done();
                    }
                    self.pushed(again, &events, cx);
                } else {
                    self.pushed(Err(PushError::Full), &events, cx);
                }
                Ok(None)
            }
            // Under `drop_oldest` a buffer is full only when every batch in
            // it is being sent: the new one is dropped, counted.
            other => {
                self.pushed(other, &b.events, cx);
                Ok(None)
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
                "a batch of {n} {} could not be buffered: {e} (counted as discarded, reason {:?}; \
                 {} such batches so far)",
                self.s.unit,
                e.code(),
                errors.get()
            );
        }
    }

    /// Reads buffered batches into the protocol until the next does not fit
    /// or none is left.
    fn fill(&mut self, cx: &SinkContext) -> Result<(), ComponentError> {
        if self.out.body.is_some() {
            return Ok(());
        }
        loop {
            let next = match self.out.carry.take() {
                Some(b) => b,
                None => {
                    if self.out.events >= self.s.max_events {
                        return Ok(());
                    }
                    match self.buffer.next() {
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
            if !self.out.batches.is_empty() && !self.protocol.fits(&next.events) {
                self.out.carry = Some(next);
                return Ok(());
            }
            let n = next.events.len();
            self.out.batches.push((next.id, n, next.written_unix_ms));
            self.out.events += n;
            self.protocol.add(next.events);
        }
    }

    fn encode(&mut self, cx: &SinkContext) -> Result<(), ComponentError> {
        let (Some(first), Some(last)) = (self.out.first_id(), self.out.last_id()) else {
            return Ok(());
        };
        match self.protocol.encode(first, last) {
            Ok(b) => self.out.body = Some(b),
            Err(e) => {
                // Not expected: the events decoded from the buffer.
                let n = self.out.events;
                self.ack(last, cx)?;
                self.forget_request();
                cx.metrics.discarded("encode_failed", n);
                tracing::warn!(component = %cx.metrics.id(), "encoding {n} {} failed: {e}", self.s.unit);
            }
        }
        Ok(())
    }

    /// Drops what was read for the request (it was acknowledged).
    fn forget_request(&mut self) {
        let carry = self.out.carry.take();
        self.out.clear();
        self.out.carry = carry;
        self.protocol.clear();
    }

    fn ack(&mut self, id: u64, cx: &SinkContext) -> Result<(), ComponentError> {
        self.buffer.ack(id).map_err(|e| {
            cx.metrics.error("buffer_ack_failed");
            ComponentError::new(format!("acknowledging buffered batches failed: {e}"))
        })
    }

    fn on_answer(&mut self, exchange: &Exchange, cx: &SinkContext) -> Result<(), ComponentError> {
        let id = cx.metrics.id();
        let (Some(first), Some(last)) = (self.out.first_id(), self.out.last_id()) else {
            return Ok(());
        };
        let n = self.out.events;
        if let Some(next) = self
            .protocol
            .peer_has_below(exchange)
            .filter(|next| *next > first)
        {
            // The peer had ids below `next`: they were delivered, by an
            // earlier attempt whose answer was lost.
            if next > last + 1 {
                // The receiver has seen ids beyond this whole request: the
                // request is acknowledged, but something is off.
                tracing::warn!(
                    component = %id,
                    "{} already has ids up to {} from this agent, past this request's {first}..={last}: \
                     is another agent using the same agent_id, or did the clock step back? The \
                     request's {} {} are taken as delivered",
                    self.s.peer,
                    next - 1,
                    n,
                    self.s.unit
                );
                cx.metrics.error("sequence_ahead");
            }
            let upto = next.min(last + 1) - 1;
            let had = self.out.events_below(next);
            self.ack(upto, cx)?;
            cx.metrics.sent(had);
            tracing::debug!(
                component = %id,
                "{} already had {had} {} (ids {first}..={upto})",
                self.s.peer,
                self.s.unit
            );
            // Read the rest again from the buffer, as a new request.
            self.out.clear();
            self.protocol.clear();
            self.buffer.rewind();
            return Ok(());
        }
        let protocol = &self.protocol;
        match self
            .delivery
            .on_answer_with(&exchange.answer, self.jitter.next(), |s| {
                protocol.retryable(s)
            }) {
            Action::Delivered { after_failures } => {
                let partial = self.protocol.partially_rejected(exchange);
                self.ack(last, cx)?;
                self.forget_request();
                match partial {
                    None => cx.metrics.sent(n),
                    Some(p) => self.partially_delivered(n, &p, cx),
                }
                if after_failures > 0 {
                    tracing::info!(
                        component = %id,
                        "delivered to {} again after {after_failures} failed attempts",
                        self.s.peer
                    );
                }
            }
            Action::Retry {
                delay,
                failures,
                code,
            } => {
                cx.metrics.error(code);
                self.retry_at = Some(Instant::now() + delay);
                if failures.is_power_of_two() {
                    tracing::warn!(
                        component = %id,
                        "sending {n} {} to {} failed ({}); retrying in {delay:?} (failed \
                         attempts: {failures})",
                        self.s.unit,
                        self.s.peer,
                        describe(exchange),
                    );
                }
            }
            Action::Reject { code } => {
                self.ack(last, cx)?;
                self.forget_request();
                cx.metrics.discarded("rejected", n);
                cx.metrics.error(code);
                tracing::warn!(
                    component = %id,
                    "{} refused {n} {} ({}); dropped them (counted as discarded, reason \
                     \"rejected\"), as sending them again would not help",
                    self.s.peer,
                    self.s.unit,
                    describe(exchange),
                );
            }
        }
        Ok(())
    }

    /// Counts a request the peer took but dropped `p.events` of.
    fn partially_delivered(&self, n: usize, p: &PartialRejection, cx: &SinkContext) {
        let dropped = p.events.min(n);
        cx.metrics.sent(n - dropped);
        if dropped == 0 {
            tracing::warn!(
                component = %cx.metrics.id(),
                "{} took {n} {} with a warning: {:?}",
                self.s.peer,
                self.s.unit,
                p.message
            );
            return;
        }
        cx.metrics.discarded("rejected", dropped);
        cx.metrics.error("partial_success");
        tracing::warn!(
            component = %cx.metrics.id(),
            "{} took {} of {n} {} and rejected {dropped} (counted as discarded, reason \
             \"rejected\"): {:?}",
            self.s.peer,
            n - dropped,
            self.s.unit,
            p.message
        );
    }

    /// Tells the node how full the buffer is; logs a change of the
    /// slowdown factor that follows.
    fn report_backlog(&self, cx: &SinkContext) {
        let fill = self.buffer.fill_ratio();
        if let Some(factor) = cx.registry().backlog().report(cx.metrics.id(), fill) {
            self.slowdown.set(f64::from(factor));
            if factor > 1 {
                tracing::warn!(
                    component = %cx.metrics.id(),
                    "the buffer is {:.0}% full: sources that adapt now produce {factor}× less \
                     often until it drains",
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
}

/// Leaves the first `at` events in `events` and returns the rest.
fn split_off(events: &mut Events, at: usize) -> Events {
    match events {
        Events::Metrics(v) => Events::Metrics(v.split_off(at)),
        Events::Logs(v) => Events::Logs(v.split_off(at)),
        Events::Traces(v) => Events::Traces(v.split_off(at)),
    }
}

fn unix_ms() -> u64 {
    u64::try_from(iotel_model::now_unix_ms()).unwrap_or(0)
}
