//! What a component is to the engine, and what the engine hands it.

use crate::metrics::{ComponentMetrics, Registry};
use crate::shutdown::Shutdown;
use iotel_model::Events;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
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
/// The source's wait ends once every clone is gone: each sink drops its clone
/// when the events are safe (in its disk buffer, written to its file,
/// delivered) or counted as discarded, and a transform that emits nothing
/// from a batch drops it at once.
///
/// An `Ack` never fails: "done" means handled and accounted for, not
/// necessarily delivered; every drop has its own counter.
#[derive(Debug, Clone, Default)]
pub struct Ack(Option<Arc<oneshot::Sender<()>>>);

impl Ack {
    /// An acknowledgement nobody waits for.
    pub fn none() -> Self {
        Ack(None)
    }

    /// Whether a source waits on this acknowledgement.
    pub fn is_awaited(&self) -> bool {
        self.0.is_some()
    }

    /// A new acknowledgement and the future that completes once it and
    /// every clone of it are dropped.
    pub fn new() -> (Ack, Acked) {
        let (tx, rx) = oneshot::channel();
        (Ack(Some(Arc::new(tx))), Acked(rx))
    }
}

/// Completes once every clone of its [`Ack`] is dropped.
#[derive(Debug)]
pub struct Acked(oneshot::Receiver<()>);

impl Acked {
    /// Waits until every copy of the batch is handled.
    pub async fn wait(self) {
        // The sender is never used: all clones dropped closes the channel.
        let _ = self.0.await;
    }
}

/// A component's way downstream: one bounded channel per consumer. Sending
/// waits while a consumer's channel is full — that is the backpressure.
#[derive(Debug, Clone)]
pub struct Output {
    senders: Vec<mpsc::Sender<Batch>>,
    metrics: ComponentMetrics,
}

impl Output {
    pub fn new(senders: Vec<mpsc::Sender<Batch>>, metrics: ComponentMetrics) -> Self {
        Self { senders, metrics }
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
    pub async fn send_with(&mut self, events: Events, ack: Ack) -> bool {
        let n = events.len();
        if n == 0 {
            return !self.senders.is_empty();
        }
        let mut delivered = false;
        if let Some((last, rest)) = self.senders.split_last() {
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
        } else if self.senders.is_empty() {
            self.metrics.discarded("no_consumer", n);
        } else {
            self.metrics.discarded("downstream_closed", n);
        }
        self.senders.retain(|tx| !tx.is_closed());
        !self.senders.is_empty()
    }
}

/// The far end of [`Output::for_test`].
#[derive(Debug)]
pub struct TestReceiver(mpsc::Receiver<Batch>);

impl TestReceiver {
    /// The next batch's events; its acknowledgement is dropped (done).
    pub async fn recv(&mut self) -> Option<Events> {
        self.0.recv().await.map(|b| b.events)
    }

    /// The next batch's events if one is waiting.
    pub fn try_recv(&mut self) -> Option<Events> {
        self.0.try_recv().ok().map(|b| b.events)
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
        self.recv_batch().await.map(|b| b.events)
    }

    /// The next batch with its acknowledgement, for a sink that makes events
    /// safe (a disk buffer, a file) before dropping it.
    pub async fn recv_batch(&mut self) -> Option<Batch> {
        let b = self.rx.recv().await?;
        self.metrics.received(b.events.len());
        Some(b)
    }
}
