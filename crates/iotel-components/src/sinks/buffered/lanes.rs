//! The sending side of the delivery loop: which lane's request goes next,
//! how a request is filled from the buffer, and what an answer does to the
//! buffer. The two modes and their lanes are described in the parent
//! module's docs.
//!
//! Invariants:
//! - A request covers the ids `first ..= last` of its batches as a whole
//!   (the receiver records that range), so it never spans an id it does
//!   not carry unless that id is gone for good: the backlog lane's
//!   requests stop before an id delivered out of order, and the live
//!   lane's hold consecutive ids only (an id missing there may still come
//!   from the backlog lane).
//! - The main lane acknowledges cumulatively (everything up to its
//!   request's last id was handed out before it); the live lane marks its
//!   requests' ids delivered, out of order.
//! - Each lane has its own protocol (its own request being built), so a
//!   live request can be built and sent while a backlog request waits for
//!   the pacer.
//! - In order, the main lane reads the request after the one in flight
//!   while it waits for the answer (`next`), and encodes it once it is
//!   full: when the answer comes the next request is ready, and reading
//!   the buffer back and encoding do not add to what a request takes.
//!   Its batches were handed out after the ones in flight, so the
//!   cumulative acknowledgement of the request in flight never covers
//!   them.

use super::{Answering, Driver, PeerHas, Protocol, unix_ms};
use crate::http_util;
use crate::id_ranges::{IdRanges, format_ranges};
use crate::sinks::buffer::Buffered;
use crate::sinks::http_delivery::{Action, Exchange, describe};
use bytes::Bytes;
use iotel_engine::{ComponentError, SinkContext};
use std::time::{Duration, Instant};

/// Which lane a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LaneId {
    /// The only lane in order; the backlog lane in backlog mode.
    Main,
    Live,
}

/// One lane: its protocol and the request it builds.
#[derive(Debug)]
pub(super) struct Lane<P> {
    protocol: P,
    out: Outgoing,
    /// The main lane in order: the request after `out`, read while `out`
    /// is encoded (sent, or waiting to be sent again). The protocol holds
    /// its batches until it is encoded.
    next: Outgoing,
}

impl<P> Lane<P> {
    pub(super) fn new(protocol: P) -> Self {
        Self {
            protocol,
            out: Outgoing::default(),
            next: Outgoing::default(),
        }
    }
}

/// The buffered batches in a lane's next request: their ids, sizes and ages.
#[derive(Debug, Default)]
struct Outgoing {
    /// (id, events, written_unix_ms), oldest first.
    batches: Vec<(u64, usize, u64)>,
    events: usize,
    /// A batch read that did not fit.
    carry: Option<Buffered>,
    /// The encoded request, kept for retries.
    body: Option<Bytes>,
    /// Encoding it ahead of its turn failed: the failure is handled when it
    /// is the lane's request.
    failed: Option<String>,
    /// It went out at least once.
    sent: bool,
}

impl Outgoing {
    fn first_id(&self) -> Option<u64> {
        self.batches.first().map(|b| b.0)
    }

    fn last_id(&self) -> Option<u64> {
        self.batches.last().map(|b| b.0)
    }

    /// Events of the batches whose ids are in `ids`.
    fn events_in(&self, ids: &IdRanges) -> usize {
        self.batches
            .iter()
            .filter(|b| ids.contains(b.0))
            .map(|b| b.1)
            .sum()
    }

    fn is_empty(&self) -> bool {
        self.batches.is_empty() && self.carry.is_none()
    }

    /// Whether it takes no more batches: `max_events` are in, or one read
    /// did not fit.
    fn is_full(&self, max_events: usize) -> bool {
        self.carry.is_some() || self.events >= max_events
    }

    fn clear(&mut self) {
        self.batches.clear();
        self.events = 0;
        self.carry = None;
        self.body = None;
        self.failed = None;
        self.sent = false;
    }

    /// Whether it takes no more batches: encoded, or failed to.
    fn sealed(&self) -> bool {
        self.body.is_some() || self.failed.is_some()
    }
}

impl<P: Protocol> Driver<P> {
    fn lane(&self, lane: LaneId) -> Option<&Lane<P>> {
        match lane {
            LaneId::Main => Some(&self.main),
            LaneId::Live => self.live.as_ref(),
        }
    }

    fn lane_mut(&mut self, lane: LaneId) -> Option<&mut Lane<P>> {
        match lane {
            LaneId::Main => Some(&mut self.main),
            LaneId::Live => self.live.as_mut(),
        }
    }

    /// Whether `rate` paces the main lane: in backlog mode, or always when
    /// there is no live lane.
    fn paces(&self) -> bool {
        self.s.rate.is_some() && (self.backlog || self.live.is_none())
    }

    /// Reads what is waiting into the lanes and says which lane has a
    /// request to send now, encoded: the live lane's first, then the main
    /// lane's when the pacer allows. Enters and leaves backlog mode.
    pub(super) fn next_request(
        &mut self,
        closing: bool,
        cx: &SinkContext,
    ) -> Result<Option<LaneId>, ComponentError> {
        let now_ms = unix_ms();
        if self.backlog {
            self.fill(LaneId::Live, cx)?;
            if self.ready(LaneId::Live, now_ms, closing, cx)? {
                return Ok(Some(LaneId::Live));
            }
        }
        if self.paced_until.is_some() {
            return Ok(None);
        }
        self.fill_main(cx)?;
        if self.backlog && self.main.out.is_empty() {
            // The backlog lane found nothing below the live lane's start.
            self.end_backlog(cx);
            self.fill_main(cx)?;
        }
        if !self.backlog && self.live.is_some() && !self.main.out.sent {
            let waiting = self.buffer.stats().records;
            if self.main.out.carry.is_some() || waiting > self.main.out.batches.len() as u64 {
                self.begin_backlog(waiting, cx);
            }
        }
        Ok(self
            .ready(LaneId::Main, now_ms, closing, cx)?
            .then_some(LaneId::Main))
    }

    /// Encodes the lane's request if it is due; whether it has one to send.
    fn ready(
        &mut self,
        lane: LaneId,
        now_ms: u64,
        closing: bool,
        cx: &SinkContext,
    ) -> Result<bool, ComponentError> {
        // The backlog lane's batches waited long enough.
        let force = closing || (lane == LaneId::Main && self.backlog);
        let Some(l) = self.lane(lane) else {
            return Ok(false);
        };
        if l.out.body.is_none() && (l.out.failed.is_some() || self.due(&l.out, now_ms, force)) {
            // What a request takes counts from here, with the time spent
            // reading its batches back: encoding is part of it too.
            if lane == LaneId::Main {
                let now = Instant::now();
                self.request_started = Some(now.checked_sub(self.filling).unwrap_or(now));
                self.filling = Duration::ZERO;
            }
            self.encode(lane, cx)?;
        }
        Ok(self.lane(lane).is_some_and(|l| l.out.body.is_some()))
    }

    /// Sends the request of `lane` now; starts the pacer for a paced one.
    pub(super) fn start(
        &mut self,
        lane: LaneId,
        now: Instant,
        client: &http_util::Client,
    ) -> Option<Answering> {
        let oldest = self.buffer.oldest_id();
        let paces = lane == LaneId::Main && self.paces();
        let l = self.lane(lane)?;
        let (Some(body), Some(first), Some(last)) =
            (&l.out.body, l.out.first_id(), l.out.last_id())
        else {
            return None;
        };
        let request = l.protocol.send(
            client,
            self.s.request_timeout,
            body.clone(),
            [first, last, oldest.min(first)],
        );
        let events = l.out.events;
        if let Some(l) = self.lane_mut(lane) {
            l.out.sent = true;
        }
        if let Some(rate) = self.s.rate.filter(|_| paces) {
            let secs = events as f64 / rate as f64;
            self.paced_until = Some(now + Duration::from_secs_f64(secs));
        }
        if lane == LaneId::Live || self.request_started.is_none() {
            self.request_started = Some(now);
        }
        Some(request)
    }

    /// Whether nothing is waiting to be sent, nor being sent.
    pub(super) fn holds_nothing(&self) -> bool {
        self.main.out.is_empty()
            && self.main.next.is_empty()
            && self.live.as_ref().is_none_or(|l| l.out.is_empty())
            && self.buffer.is_empty()
    }

    /// When the oldest batch of a request being filled is due.
    pub(super) fn batch_timer(&self, now: Instant) -> Option<Instant> {
        std::iter::once(&self.main)
            .chain(self.live.as_ref())
            .filter_map(|l| match (&l.out.body, l.out.batches.first()) {
                (None, Some(&(_, _, written))) => {
                    let age = unix_ms().saturating_sub(written);
                    let wait = self.flush_age_ms().saturating_sub(age);
                    Some(now + Duration::from_millis(wait))
                }
                _ => None,
            })
            .min()
    }

    /// Whether what was read makes a request now.
    fn due(&self, out: &Outgoing, now_ms: u64, force: bool) -> bool {
        let Some(&(_, _, oldest)) = out.batches.first() else {
            return false;
        };
        force
            || out.is_full(self.s.max_events)
            // Written "in the future": the clock stepped back; do not wait.
            || now_ms < oldest
            || now_ms - oldest >= self.flush_age_ms()
    }

    /// How old a request's oldest batch is when it goes out: the batch
    /// timeout less what a request may take and a tenth of the timeout for
    /// the moments between due and sent (at most half of it), so that it
    /// is acknowledged within `batch_timeout` after it came in.
    fn flush_age_ms(&self) -> u64 {
        let timeout = self.s.batch_timeout.as_millis() as u64;
        let took = self
            .request_ms
            .map_or(0.0, |(mean, deviation)| mean + 4.0 * deviation)
            .max(self.request_p99_ms)
            .round() as u64;
        timeout - (took + timeout / 10).min(timeout / 2)
    }

    /// Smooths in how long a delivered request took: its mean and mean
    /// deviation, as TCP estimates a round trip (RFC 6298), so that the
    /// allowance covers the slow requests too, not just the typical one;
    /// and counts it in the minute's percentiles, which cover the slow
    /// ones that come in bursts.
    fn request_took(&mut self, now: Instant) {
        if let Some(started) = self.request_started.take() {
            let ms = now.duration_since(started).as_secs_f64() * 1000.0;
            let now_ms = unix_ms();
            self.requests.record(ms.round() as u64, 1, now_ms);
            self.request_p99_ms = self.requests.quantile(0.99).unwrap_or(0.0) * 1000.0;
            self.request_ms = Some(match self.request_ms {
                Some((mean, deviation)) => (
                    mean + (ms - mean) * 0.125,
                    deviation + ((ms - mean).abs() - deviation) * 0.25,
                ),
                None => (ms, ms / 2.0),
            });
        }
    }

    /// Enters backlog mode: `waiting` batches are the backlog.
    fn begin_backlog(&mut self, waiting: u64, cx: &SinkContext) {
        let start = self.buffer.begin_live();
        self.backlog = true;
        tracing::info!(
            component = %cx.metrics.id(),
            "{waiting} batch(es) wait: sending them oldest first at {} {}/s at most, while \
             batches from id {start} on go ahead of them, unpaced (the live lane)",
            self.s.rate.unwrap_or(0),
            self.s.unit
        );
    }

    /// Leaves backlog mode: the live lane's batches not yet sent are read
    /// in order with the rest.
    fn end_backlog(&mut self, cx: &SinkContext) {
        if let Some(live) = &mut self.live {
            live.out.clear();
            live.protocol.clear();
        }
        self.buffer.end_live();
        self.backlog = false;
        tracing::info!(
            component = %cx.metrics.id(),
            "the backlog is delivered: sending oldest first again"
        );
    }

    /// Forgets what both lanes read, and leaves backlog mode (before the
    /// buffer is compacted, which closes its live lane).
    pub(super) fn clear_lanes(&mut self) {
        for lane in [LaneId::Main, LaneId::Live] {
            if let Some(l) = self.lane_mut(lane) {
                l.out.clear();
                l.next.clear();
                l.protocol.clear();
            }
        }
        self.backlog = false;
    }

    /// Fills the main lane's request, adding the time it takes (reading
    /// the buffer back) to the request's. While a request is encoded,
    /// fills the one after it instead: that time is not the request's.
    fn fill_main(&mut self, cx: &SinkContext) -> Result<(), ComponentError> {
        if self.main.out.body.is_some() {
            return self.prefill(cx);
        }
        let started = Instant::now();
        let filled = self.fill(LaneId::Main, cx);
        self.filling += started.elapsed();
        filled
    }

    /// In order, while the main lane's request is encoded (in flight, or
    /// waiting to be sent again): reads the request after it, and encodes
    /// that once it is full, so it can go out as soon as the answer came.
    pub(super) fn prefill(&mut self, cx: &SinkContext) -> Result<(), ComponentError> {
        if !self.reads_ahead
            || self.backlog
            || self.main.out.body.is_none()
            || self.main.next.sealed()
        {
            return Ok(());
        }
        self.fill(LaneId::Main, cx)?;
        let next = &mut self.main.next;
        if let (true, true, Some(first), Some(last)) = (
            self.main.protocol.encodes_ahead(),
            next.is_full(self.s.max_events),
            next.first_id(),
            next.last_id(),
        ) {
            match self.main.protocol.encode(first, last) {
                Ok(b) => next.body = Some(b),
                // Handled once it is the lane's request.
                Err(e) => next.failed = Some(e),
            }
            self.main.protocol.clear();
        }
        Ok(())
    }

    /// Reads buffered batches into the lane's protocol until the next does
    /// not fit (or would make the request span an id it must not) or none
    /// is left: into the lane's request, or while that is encoded, into
    /// the main lane's next (see [`Driver::prefill`]).
    fn fill(&mut self, lane: LaneId, cx: &SinkContext) -> Result<(), ComponentError> {
        let max_events = self.s.max_events;
        let (l, buffer) = match lane {
            LaneId::Main => (&mut self.main, &mut self.buffer),
            LaneId::Live => match &mut self.live {
                Some(l) => (l, &mut self.buffer),
                None => return Ok(()),
            },
        };
        let out = if l.out.body.is_none() {
            &mut l.out
        } else if lane == LaneId::Main && self.reads_ahead && !self.backlog && !l.next.sealed() {
            // The batch that did not fit the request starts the next.
            if l.next.is_empty() {
                l.next.carry = l.out.carry.take();
            }
            &mut l.next
        } else {
            return Ok(());
        };
        loop {
            let next = match out.carry.take() {
                Some(b) => b,
                None => {
                    if out.events >= max_events {
                        return Ok(());
                    }
                    let read = match lane {
                        LaneId::Main => buffer.next(),
                        LaneId::Live => buffer.next_live(),
                    };
                    match read {
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
            if let Some(last) = out.last_id() {
                let gap = match lane {
                    LaneId::Main => buffer.delivered_between(last, next.id),
                    LaneId::Live => next.id != last + 1,
                };
                if gap || !l.protocol.fits(&next.events) {
                    out.carry = Some(next);
                    return Ok(());
                }
            }
            let n = next.events.len();
            out.batches.push((next.id, n, next.written_unix_ms));
            out.events += n;
            l.protocol.add(next.events);
        }
    }

    fn encode(&mut self, lane: LaneId, cx: &SinkContext) -> Result<(), ComponentError> {
        let Some(l) = self.lane_mut(lane) else {
            return Ok(());
        };
        let (Some(first), Some(last)) = (l.out.first_id(), l.out.last_id()) else {
            return Ok(());
        };
        let encoded = match l.out.failed.take() {
            Some(e) => Err(e),
            None => l.protocol.encode(first, last),
        };
        match encoded {
            Ok(b) => l.out.body = Some(b),
            Err(e) => {
                // Not expected: the events decoded from the buffer.
                let n = l.out.events;
                self.settle(lane, first, last, cx)?;
                self.forget_request(lane);
                cx.metrics.discarded("encode_failed", n);
                tracing::warn!(component = %cx.metrics.id(), "encoding {n} {} failed: {e}", self.s.unit);
            }
        }
        Ok(())
    }

    /// Drops what was read for the lane's request (it was settled): the
    /// next one read (if any) becomes the lane's request.
    fn forget_request(&mut self, lane: LaneId) {
        if let Some(l) = self.lane_mut(lane) {
            // The protocol holds the next request's batches until it is
            // encoded; else what it holds is the settled request's.
            if l.next.batches.is_empty() || l.next.sealed() {
                l.protocol.clear();
            }
            let carry = l.out.carry.take();
            l.out = std::mem::take(&mut l.next);
            if l.out.carry.is_none() {
                l.out.carry = carry;
            }
        }
    }

    /// Takes the lane's request `first ..= last` off the buffer: delivered
    /// or given up.
    fn settle(
        &mut self,
        lane: LaneId,
        first: u64,
        last: u64,
        cx: &SinkContext,
    ) -> Result<(), ComponentError> {
        match lane {
            LaneId::Main => self.ack(last, cx),
            LaneId::Live => {
                self.buffer.mark_delivered(first, last);
                Ok(())
            }
        }
    }

    fn ack(&mut self, id: u64, cx: &SinkContext) -> Result<(), ComponentError> {
        self.buffer.ack(id).map_err(|e| {
            cx.metrics.error("buffer_ack_failed");
            ComponentError::new(format!("acknowledging buffered batches failed: {e}"))
        })
    }

    pub(super) fn on_answer(
        &mut self,
        lane: LaneId,
        exchange: &Exchange,
        cx: &SinkContext,
    ) -> Result<(), ComponentError> {
        let id = cx.metrics.id();
        let Some(l) = self.lane(lane) else {
            return Ok(());
        };
        let (Some(first), Some(last)) = (l.out.first_id(), l.out.last_id()) else {
            return Ok(());
        };
        let n = l.out.events;
        if let Some(has) = l.protocol.peer_has(exchange)
            && self.on_peer_has(lane, &has, cx)?
        {
            self.request_started = None;
            return Ok(());
        }
        let protocol = match lane {
            LaneId::Main => &self.main.protocol,
            LaneId::Live => match &self.live {
                Some(l) => &l.protocol,
                None => return Ok(()),
            },
        };
        let partial = protocol.partially_rejected(exchange);
        let action = self
            .delivery
            .on_answer_with(&exchange.answer, self.jitter.next(), |s| {
                protocol.retryable(s)
            });
        match action {
            Action::Delivered { after_failures } => {
                self.request_took(Instant::now());
                let out = match lane {
                    LaneId::Main => Some(&self.main.out),
                    LaneId::Live => self.live.as_ref().map(|l| &l.out),
                };
                let now = unix_ms();
                for &(_, events, written) in out.map_or(&[][..], |o| &o.batches) {
                    self.latency
                        .record(now.saturating_sub(written), events, now);
                }
                self.settle(lane, first, last, cx)?;
                self.forget_request(lane);
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
                // The next attempt is timed from when it goes out.
                self.request_started = None;
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
                self.request_started = None;
                self.settle(lane, first, last, cx)?;
                self.forget_request(lane);
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

    /// The peer had some of the lane's request: those ids were delivered,
    /// by an earlier attempt whose answer was lost, or before a restart.
    /// They are taken off the buffer and the rest is read again, into
    /// requests that do not span them. Returns whether `has` named any id
    /// of the request (else the answer is handled as any other).
    fn on_peer_has(
        &mut self,
        lane: LaneId,
        has: &PeerHas,
        cx: &SinkContext,
    ) -> Result<bool, ComponentError> {
        let Some(l) = self.lane(lane) else {
            return Ok(false);
        };
        let (Some(first), Some(last)) = (l.out.first_id(), l.out.last_id()) else {
            return Ok(false);
        };
        let mut had = IdRanges::new();
        if let Some(next) = has.next.filter(|next| *next > first) {
            if next > last + 1 {
                // The receiver has seen ids beyond this whole request from
                // an older receiver's window: the request is acknowledged,
                // but something is off.
                tracing::warn!(
                    component = %cx.metrics.id(),
                    "{} already has ids up to {} from this agent, past this request's \
                     {first}..={last}: is another agent using the same agent_id, or did the \
                     clock step back? The request's {} {} are taken as delivered",
                    self.s.peer,
                    next - 1,
                    l.out.events,
                    self.s.unit
                );
                cx.metrics.error("sequence_ahead");
            }
            had.insert(first, next.min(last + 1) - 1);
        }
        for &(a, b) in &has.ranges {
            had.insert(a.max(first), b.min(last));
        }
        if had.is_empty() {
            return Ok(false);
        }
        let events = l.out.events_in(&had);
        let ranges: Vec<(u64, u64)> = had.iter().collect();
        // What starts a main lane request is acknowledged at once; the rest
        // once the reader skips it. Marked before the rewind, so that what
        // `drop_oldest` deleted while it was being sent counts as sent, not
        // dropped.
        if let Some((_, upto)) = had.first().filter(|r| r.0 == first && lane == LaneId::Main) {
            self.ack(upto, cx)?;
        }
        for &(a, b) in &ranges {
            self.buffer.mark_delivered(a, b);
        }
        match lane {
            LaneId::Main => {
                self.main.out.clear();
                self.main.next.clear();
                self.main.protocol.clear();
                self.buffer.rewind();
            }
            LaneId::Live => {
                if let Some(live) = &mut self.live {
                    live.out.clear();
                    live.protocol.clear();
                }
                self.buffer.rewind_live();
            }
        }
        cx.metrics.sent(events);
        tracing::debug!(
            component = %cx.metrics.id(),
            "{} already had {events} {} (ids {})",
            self.s.peer,
            self.s.unit,
            format_ranges(&ranges)
        );
        Ok(true)
    }
}
