//! What a component is to the engine, and what the engine hands it.

use crate::families::FamilyGate;
use crate::metrics::{ComponentMetrics, Registry};
use crate::shutdown::Shutdown;
use iotel_model::{Events, Signal};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};

/// A component's running task.
pub type ComponentFuture =
    Pin<Box<dyn Future<Output = Result<(), ComponentError>> + Send + 'static>>;

/// A component failed for good; the engine logs it, counts it in
/// `iotel_component_failures_total` and marks the node not ready.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ComponentError {
    pub message: String,
}

impl ComponentError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A component's id and type, for logs and metric labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentKey {
    pub id: String,
    pub type_name: String,
}

/// Emits events. Runs until its shutdown signal fires or it runs dry.
pub trait Source: Send {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture;
}

/// Turns batches into batches, synchronously, one input batch at a time.
pub trait Transform: Send {
    /// Handles one batch, pushing whatever it emits onto `out`.
    fn transform(&mut self, events: Events, out: &mut Vec<Events>);

    /// Called once after the last input, at shutdown, to emit what is held.
    fn flush(&mut self, _out: &mut Vec<Events>) {}

    /// Hands over what the last `transform` or `flush` sent to named
    /// outputs, as (output name, events): a record that failed validation
    /// goes to `dead_letter`, which other components take as input
    /// `<id>.dead_letter`. Called after each of them.
    fn routed(&mut self, _out: &mut Vec<(&'static str, Events)>) {}
}

/// Delivers events to a peer. Runs until its input closes, then flushes.
pub trait Sink: Send {
    fn run(self: Box<Self>, cx: SinkContext) -> ComponentFuture;
}

/// What a source is given to run.
#[derive(Debug)]
pub struct SourceContext {
    pub key: ComponentKey,
    pub out: Output,
    pub shutdown: Shutdown,
    pub metrics: ComponentMetrics,
    pub data_dir: PathBuf,
}

/// What a sink is given to run.
#[derive(Debug)]
pub struct SinkContext {
    pub key: ComponentKey,
    pub input: Input,
    /// Fires when the node shuts down; a sink keeps draining its input until
    /// it closes, but may stop waiting on a dead peer once this fires.
    pub shutdown: Shutdown,
    pub metrics: ComponentMetrics,
    pub data_dir: PathBuf,
}

impl SourceContext {
    pub fn registry(&self) -> &Registry {
        self.metrics.registry()
    }
}

impl SinkContext {
    pub fn registry(&self) -> &Registry {
        self.metrics.registry()
    }
}

/// A batch travelling between components, with the acknowledgement of the
/// source that produced it.
#[derive(Debug)]
pub struct Batch {
    pub events: Events,
    pub ack: Ack,
}

impl From<Events> for Batch {
    fn from(events: Events) -> Self {
        Batch {
            events,
            ack: Ack::none(),
        }
    }
}

/// End-to-end acknowledgement: a source that must tell its peer when data is
/// safe (the native protocol's receiver) sends a batch with
/// [`Output::send_acked`] and waits. Every copy of the batch downstream holds
/// a clone of its `Ack`; transforms pass it to what they emit from the batch.
///
/// Each holder calls [`done`](Ack::done) once its copy is handled: a sink
/// when the events are safe (in its disk buffer, written to its file) or
/// deliberately dropped by its policy, a transform once it passed on what it
/// made of the batch (nothing, for a filter). A clone dropped without `done`
/// — a sink that could not store the batch, a channel dropped at shutdown, a
/// consumer that is gone — fails the whole acknowledgement, so the source can
/// tell its peer to send the batch again. [`Input::recv`] calls `done` on
/// receipt, for sinks that hold events in memory only.
#[derive(Debug, Default)]
pub struct Ack {
    shared: Option<Arc<AckShared>>,
    done: bool,
}

#[derive(Debug)]
struct AckShared {
    failed: AtomicBool,
    tx: Option<oneshot::Sender<bool>>,
}

impl Drop for AckShared {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(!self.failed.load(Ordering::Relaxed));
        }
    }
}

impl Clone for Ack {
    fn clone(&self) -> Self {
        Ack {
            shared: self.shared.clone(),
            done: false,
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if !self.done
            && let Some(s) = &self.shared
        {
            s.failed.store(true, Ordering::Relaxed);
        }
    }
}

impl Ack {
    /// An acknowledgement nobody waits for.
    pub fn none() -> Self {
        Ack::default()
    }

    /// Whether a source waits on this acknowledgement.
    pub fn is_awaited(&self) -> bool {
        self.shared.is_some()
    }

    /// This copy of the batch is handled.
    pub fn done(mut self) {
        self.done = true;
    }

    /// A new acknowledgement and the future that completes once it and
    /// every clone of it are gone.
    pub fn new() -> (Ack, Acked) {
        let (tx, rx) = oneshot::channel();
        let shared = AckShared {
            failed: AtomicBool::new(false),
            tx: Some(tx),
        };
        (
            Ack {
                shared: Some(Arc::new(shared)),
                done: false,
            },
            Acked(rx),
        )
    }
}

/// Completes once every clone of its [`Ack`] is gone.
#[derive(Debug)]
pub struct Acked(oneshot::Receiver<bool>);

impl Acked {
    /// Waits until every copy of the batch is handled: `true` when each was
    /// marked done, `false` when any was dropped without.
    pub async fn wait(self) -> bool {
        self.0.await.unwrap_or(false)
    }
}

/// A component's way downstream: one bounded channel per consumer. Sending
/// waits while a consumer's channel is full — that is the backpressure.
#[derive(Debug, Clone)]
pub struct Output {
    senders: Vec<mpsc::Sender<Batch>>,
    /// Per sender, the one signal it takes (an input `id.metrics`), or
    /// `None` for all.
    only: Vec<Option<Signal>>,
    metrics: ComponentMetrics,
    /// Where an operator may watch what leaves (see [`crate::tap`]).
    tap: Option<std::sync::Arc<crate::tap::TapPoint>>,
    /// A source's: removes retired metric families and notes the rest
    /// (see [`crate::families`]).
    gate: Option<FamilyGate>,
}

impl Output {
    pub fn new(senders: Vec<mpsc::Sender<Batch>>, metrics: ComponentMetrics) -> Self {
        let only = vec![None; senders.len()];
        Self {
            senders,
            only,
            metrics,
            tap: None,
            gate: None,
        }
    }

    /// The output, offering what leaves it at `tap`.
    pub fn with_tap(mut self, tap: std::sync::Arc<crate::tap::TapPoint>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// An output whose consumers each take every signal (`None`) or one.
    pub fn filtered(
        routes: Vec<(mpsc::Sender<Batch>, Option<Signal>)>,
        metrics: ComponentMetrics,
    ) -> Self {
        let (senders, only) = routes.into_iter().unzip();
        Self {
            senders,
            only,
            metrics,
            tap: None,
            gate: None,
        }
    }

    /// This output with a source's family gate: metric samples of retired
    /// families are removed before any consumer sees them, counted as
    /// discarded (reason `retired`).
    pub fn with_gate(mut self, gate: FamilyGate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The gate, for a source that can skip the work of making samples of
    /// retired families (see [`FamilyGate::current_retired`]).
    pub fn gate(&mut self) -> Option<&mut FamilyGate> {
        self.gate.as_mut()
    }

    /// An output to a single channel, for driving a component in tests.
    pub fn for_test(capacity: usize) -> (Self, TestReceiver) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Self::new(vec![tx], ComponentMetrics::detached("test", "test")),
            TestReceiver(rx),
        )
    }

    /// Sends a batch to every consumer, waiting for room.
    ///
    /// Returns `false` once no consumer is left, so a source can stop.
    pub async fn send(&mut self, events: Events) -> bool {
        self.send_with(events, Ack::none()).await
    }

    /// Sends a batch and returns the future that completes once every
    /// consumer has handled it (see [`Ack`]). The future completes at once
    /// when no consumer took it.
    pub async fn send_acked(&mut self, events: Events) -> (bool, Acked) {
        let (ack, acked) = Ack::new();
        let open = self.send_with(events, ack).await;
        (open, acked)
    }

    /// Sends a batch carrying `ack` (a transform passes on its input's).
    pub async fn send_with(&mut self, mut events: Events, ack: Ack) -> bool {
        if let (Some(gate), Events::Metrics(batch)) = (&mut self.gate, &mut events) {
            let removed = gate.admit(batch);
            if removed > 0 {
                self.metrics.discarded("retired", removed);
                if batch.is_empty() {
                    // Dropped on purpose: handled, as far as the source's
                    // peer is concerned.
                    ack.done();
                    return !self.senders.is_empty();
                }
            }
        }
        let n = events.len();
        if n == 0 {
            return !self.senders.is_empty();
        }
        if let Some(tap) = &self.tap {
            tap.offer(&events);
        }
        let signal = events.signal();
        let takers: Vec<&mpsc::Sender<Batch>> = self
            .senders
            .iter()
            .zip(&self.only)
            .filter(|(_, only)| only.is_none_or(|s| s == signal))
            .map(|(tx, _)| tx)
            .collect();
        let mut delivered = false;
        if let Some((last, rest)) = takers.split_last() {
            for tx in rest {
                let copy = Batch {
                    events: events.clone(),
                    ack: ack.clone(),
                };
                delivered |= tx.send(copy).await.is_ok();
            }
            delivered |= last.send(Batch { events, ack }).await.is_ok();
        }
        if delivered {
            self.metrics.sent(n);
        } else if takers.is_empty() {
            self.metrics.discarded("no_consumer", n);
        } else {
            self.metrics.discarded("downstream_closed", n);
        }
        let mut i = 0;
        while i < self.senders.len() {
            if self.senders[i].is_closed() {
                self.senders.remove(i);
                self.only.remove(i);
            } else {
                i += 1;
            }
        }
        !self.senders.is_empty()
    }
}

/// The far end of [`Output::for_test`].
#[derive(Debug)]
pub struct TestReceiver(mpsc::Receiver<Batch>);

impl TestReceiver {
    /// The next batch's events; its acknowledgement is given (done).
    pub async fn recv(&mut self) -> Option<Events> {
        let Batch { events, ack } = self.0.recv().await?;
        ack.done();
        Some(events)
    }

    /// The next batch's events if one is waiting.
    pub fn try_recv(&mut self) -> Option<Events> {
        let Batch { events, ack } = self.0.try_recv().ok()?;
        ack.done();
        Some(events)
    }

    /// The next batch with its acknowledgement.
    pub async fn recv_batch(&mut self) -> Option<Batch> {
        self.0.recv().await
    }
}

/// A component's inputs, merged into one channel.
#[derive(Debug)]
pub struct Input {
    rx: mpsc::Receiver<Batch>,
    metrics: ComponentMetrics,
}

impl Input {
    pub fn new(rx: mpsc::Receiver<Batch>, metrics: ComponentMetrics) -> Self {
        Self { rx, metrics }
    }

    /// The next batch, or `None` once every input has closed. Its
    /// acknowledgement is given at once: for sinks that hold events only in
    /// memory, receiving is as safe as they get.
    pub async fn recv(&mut self) -> Option<Events> {
        let Batch { events, ack } = self.recv_batch().await?;
        ack.done();
        Some(events)
    }

    /// The next batch with its acknowledgement, for a sink that makes events
    /// safe (a disk buffer, a file) before dropping it.
    pub async fn recv_batch(&mut self) -> Option<Batch> {
        let b = self.rx.recv().await?;
        self.metrics.received(b.events.len());
        Some(b)
    }
}
