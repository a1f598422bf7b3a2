//! Delivery of buffered batches over HTTP, one request at a time: the loop
//! the `iotel`, `prometheus_remote_write`, `loki` and `otlp` sinks
//! share. What differs between them — how batches become a request body,
//! what the request looks like, what a peer's answer may add — is their
//! [`Protocol`]; the config keys they have in common become [`Settings`] in
//! `keys.rs`.
//!
//! - Every input batch goes into the sink's [`SinkBuffer`] first and is
//!   acknowledged upstream once there (under `block` the sink stops reading
//!   its input while the buffer is full: that is the backpressure; under
//!   `drop_oldest` the buffer makes room itself; under `downsample` the
//!   backlog is compacted when no request awaits an answer).
//! - Buffered batches are read oldest first into the protocol until it says
//!   the next does not fit; a request goes out once `max_events` are in, the
//!   oldest is due, or more batches are waiting (a backlog). While a request
//!   waits for its answer, the next is read (and encoded once full, when
//!   the protocol [encodes ahead](Protocol::encodes_ahead)), so it goes
//!   out as soon as the answer came; not under `drop_oldest`, where
//!   batches read for a request can no longer make room. `batch_timeout`
//!   is the oldest batch's latency budget: the request goes out that long
//!   after it was buffered minus what a request may take (the smoothed
//!   mean plus four mean deviations, as TCP's retransmission timeout, or
//!   the 99th percentile of the last minute's requests if that is more,
//!   and a tenth of the timeout for the moments between due and sent; at
//!   most half the timeout), so that the peer acknowledges it within
//!   `batch_timeout` after it came in. Under light load requests are small
//!   and go out on time; under heavy load they fill to `max_events` first.
//! - A batch leaves the buffer only when the peer answered 2xx, or when the
//!   protocol recognises that the peer already had it. 429, 5xx (or the
//!   statuses the protocol names), connection errors and timeouts retry the
//!   same body with jittered exponential backoff (`http_delivery`); other
//!   answers drop the batch, counted as discarded with reason `rejected`.
//!   A 2xx whose body says the peer dropped some of the events (OTLP's
//!   partial success) counts those as discarded, reason `rejected`, and
//!   the rest as sent.
//! - When the input closes the sink keeps sending for at most three
//!   `request_timeout`s, and it stops at the node's deadline even while its
//!   input is still open (held back by a full buffer); what is left
//!   stays in a disk buffer for the next start, or is counted as discarded
//!   (reason `shutdown`) from a memory buffer.
//!
//! # Backlog mode: two lanes
//!
//! With a `rate` (the `iotel` sink's `drain.max_events_per_second`) and a
//! protocol that has a live lane ([`Protocol::live_lane`]), the sink sends
//! in one of two modes (`lanes.rs`):
//!
//! - **In order** (the normal mode): oldest first, one lane, unpaced.
//! - **Backlog mode**, entered when the sink, about to send, finds more
//!   waiting than one request takes (after an outage, or at start with a
//!   disk backlog). It opens the buffer's live lane at the next id
//!   ([`SinkBuffer::begin_live`]): batches pushed from then on are live.
//!   The *backlog lane* sends the older ones, oldest first, each request
//!   paced by `rate`; the *live lane* sends the live ones, oldest first
//!   among themselves, unpaced. One request is in flight at a time:
//!   whenever a live request is due it goes first, else a backlog request
//!   when the pacer allows. Live batches a peer took are acknowledged out
//!   of order ([`SinkBuffer::mark_delivered`]). When the backlog lane has
//!   nothing left below the live lane's start, the sink is back in order
//!   (the live batches not yet sent go with it).
//!
//! Without a `rate`, or with a protocol without a live lane, order is
//! strictly oldest first, and `rate` (if any) paces every request.

mod lanes;
mod latency;

pub(crate) mod keys;
pub(crate) mod log_batch;
#[cfg(test)]
pub(crate) mod test_peer;
#[cfg(all(test, feature = "tls"))]
mod tls_client_tests;

use super::buffer::{BufferConfig, PushError, SinkBuffer, WhenFull};
use super::http_delivery::{self as request, Delivery, Exchange, Jitter};
use crate::http_util::{self, Body};
use bytes::Bytes;
use iotel_engine::{Batch, ComponentError, Gauge, SinkContext};
use iotel_model::Events;
use lanes::{Lane, LaneId};
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
    /// The request carrying `body`, which covers the buffer ids `first ..=
    /// last`; `oldest` is the oldest id the sink may still send (every id
    /// below it was delivered or given up).
    fn request(&self, body: Bytes, first: u64, last: u64, oldest: u64) -> http::Request<Body>;
    /// Sends `body` (covering `first ..= last`) and reads the answer, all
    /// within `timeout`; by default a POST of [`Protocol::request`] with
    /// the sink's HTTP client. A protocol with a transport of its own
    /// (OTLP/gRPC) sends it there.
    fn send(
        &self,
        client: &http_util::Client,
        timeout: Duration,
        body: Bytes,
        [first, last, oldest]: [u64; 3],
    ) -> Pin<Box<dyn Future<Output = Exchange> + Send>> {
        Box::pin(request::post(
            client.clone(),
            self.request(body, first, last, oldest),
            timeout,
        ))
    }
    /// What a refusal says the peer already had of the request; `None` when
    /// it says nothing of the kind.
    fn peer_has(&self, _exchange: &Exchange) -> Option<PeerHas> {
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
    /// An empty protocol like this one, for the live lane (see the module
    /// docs); `None`: this protocol's peer needs batches strictly in order.
    fn live_lane(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
    /// Whether the next request may be encoded while one waits for its
    /// answer: whether sending a request again and reading its answer need
    /// nothing of the protocol but the request's body and ids (see
    /// `lanes.rs`); by default they do not.
    fn encodes_ahead(&self) -> bool {
        true
    }
}

/// What a peer that accepted a request said it dropped of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartialRejection {
    /// Events dropped; 0 when the peer only warned.
    pub events: usize,
    pub message: String,
}

/// What a peer said it already had of a request (a retransmit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PeerHas {
    /// The first id it wants: it has every id from the request's first
    /// below this.
    pub next: Option<u64>,
    /// Ids it has, as inclusive ranges.
    pub ranges: Vec<(u64, u64)>,
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
    /// Events per second at most: of the backlog lane when the protocol has
    /// a live lane, else of every request.
    pub rate: Option<u64>,
    pub buffer: BufferConfig,
    /// The client of the sink's `tls` table; `None`: [`http_util::client`].
    pub client: Option<http_util::Client>,
}

/// How long before the node's shutdown deadline the final flush gives up.
const FLUSH_MARGIN: Duration = Duration::from_millis(500);

/// The answer to a request being sent.
type Answering = Pin<Box<dyn Future<Output = Exchange> + Send>>;

/// The request in flight, and the lane it came from.
type Pending = (LaneId, Answering);

async fn answer(in_flight: &mut Option<Pending>) -> (LaneId, Exchange) {
    match in_flight {
        Some((lane, f)) => (*lane, f.await),
        None => std::future::pending().await,
    }
}

/// The state of one sink's delivery.
struct Driver<P> {
    s: Settings,
    buffer: SinkBuffer,
    /// The only lane in order; the backlog lane in backlog mode.
    main: Lane<P>,
    /// The live lane, when `rate` is set and the protocol has one.
    live: Option<Lane<P>>,
    /// In backlog mode: the buffer's live lane is open.
    backlog: bool,
    delivery: Delivery,
    jitter: Jitter,
    retry_at: Option<Instant>,
    /// Pacing: the earliest moment the next paced request may go.
    paced_until: Option<Instant>,
    slowdown: Gauge,
    latency: latency::LatencyWindow,
    /// How long delivered requests took.
    requests: latency::LatencyWindow,
    /// Their 99th percentile, ms, as of the last one.
    request_p99_ms: f64,
    /// When the request in flight went out.
    request_started: Option<Instant>,
    /// Time spent reading the main lane's next request from the buffer.
    filling: Duration,
    /// How long delivered requests took: the smoothed mean and mean
    /// deviation (ms).
    request_ms: Option<(f64, f64)>,
    /// Whether the main lane reads its next request while one is in
    /// flight: not under `drop_oldest`, whose buffer can drop only
    /// batches not read for a request.
    reads_ahead: bool,
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
    if let Ok(uri) = s.peer.parse::<http::Uri>() {
        http_util::warn_if_plaintext(&id, &uri);
    }
    let client = s.client.clone().unwrap_or_else(http_util::client);
    let live = s.rate.and_then(|_| protocol.live_lane()).map(Lane::new);
    let mut d = Driver {
        delivery: Delivery::new(s.retry),
        slowdown: cx.registry().gauge(
            "iotel_backlog_slowdown_factor",
            "How many times less often sources that adapt to backlog produce (1: normal); \
             follows the fullest sink buffer of the node.",
            &[],
        ),
        latency: latency::LatencyWindow::new(cx.registry(), &id, unix_ms()),
        requests: latency::LatencyWindow::requests(cx.registry(), &id, unix_ms()),
        request_p99_ms: 0.0,
        request_started: None,
        filling: Duration::ZERO,
        request_ms: None,
        reads_ahead: policy != WhenFull::DropOldest,
        s,
        main: Lane::new(protocol),
        live,
        backlog: false,
        buffer,
        jitter: Jitter::new(),
        retry_at: None,
        paced_until: None,
    };
    let mut in_flight: Option<Pending> = None;
    let mut flush_deadline: Option<Instant> = None;
    // A batch refused by a full buffer, waiting for room; input is not read
    // meanwhile: that is the backpressure.
    let mut blocked: Option<Batch> = None;
    // A quarter of the default fsync interval, so syncs keep to it.
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Set once the node is stopping: a sink whose input stays open (held
    // back by a full buffer, or fed by a receiver still answering) must
    // still end within the node's deadline, accounting for what it holds.
    let mut stopping = false;
    let mut hard_deadline: Option<Instant> = None;
    // The timer said a disk buffer's sync may be due.
    let mut sync_due = false;
    loop {
        let now = Instant::now();
        if d.retry_at.is_some_and(|t| t <= now) {
            d.retry_at = None;
        }
        if d.paced_until.is_some_and(|t| t <= now) {
            d.paced_until = None;
        }
        if flush_deadline.is_some_and(|t| t <= now) || hard_deadline.is_some_and(|t| t <= now) {
            break;
        }
        if let Some(b) = blocked.take() {
            blocked = d.push(b, policy, in_flight.is_none(), &cx)?;
        }
        let closing = flush_deadline.is_some();
        if in_flight.is_none()
            && d.retry_at.is_none()
            && let Some(lane) = d.next_request(closing, &cx)?
            && let Some(f) = d.start(lane, now, &client)
        {
            in_flight = Some((lane, f));
        }
        // A due sync: now that a due request went out (or none is due),
        // so the fsync overlaps the round trip instead of delaying it.
        if std::mem::take(&mut sync_due) {
            d.sync(&cx);
        }
        // While the request waits for its answer, the next one is read.
        d.prefill(&cx)?;
        if closing && d.holds_nothing() {
            break;
        }
        let wake = [
            d.retry_at,
            d.paced_until,
            d.batch_timer(now),
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
            (lane, exchange) = answer(&mut in_flight) => {
                in_flight = None;
                d.on_answer(lane, &exchange, &cx)?;
            },
            _ = tick.tick() => {
                d.latency.update(unix_ms());
                d.requests.update(unix_ms());
                sync_due = true;
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
                // It closes the live lane too.
                self.clear_lanes();
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

    /// Syncs the buffer if its `fsync` interval says so.
    fn sync(&mut self, cx: &SinkContext) {
        if let Err(e) = self.buffer.sync_if_due() {
            cx.metrics.error("buffer_sync_failed");
            tracing::warn!(component = %cx.metrics.id(), "syncing the buffer failed: {e}");
        }
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
