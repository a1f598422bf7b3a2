//! The worker's loop: pull, decode, send downstream, acknowledge (see the
//! parent module's docs for the rules).

use super::Config;
use super::window::{Seen, Window};
use async_nats::jetstream::{self, AckKind, consumer::pull};
use iotel_engine::{
    Acked, ComponentError, ComponentFuture, ComponentMetrics, Counter, Output, Source,
    SourceContext,
};
use iotel_formats::native::{self, Limits};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;

static NO_METADATA: AtomicU64 = AtomicU64::new(0);

/// The header that names why a message is a dead letter.
pub const DEAD_LETTER_REASON: &str = "Iotel-Dead-Letter-Reason";
/// The subject a dead letter was first published to.
pub const ORIGINAL_SUBJECT: &str = "Iotel-Original-Subject";
/// How many times it was delivered.
pub const DELIVERIES: &str = "Iotel-Deliveries";

#[derive(Debug)]
pub(super) struct Worker {
    pub(super) config: Config,
}

impl Source for Worker {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture {
        Box::pin(run(self.config, cx))
    }
}

/// What the handling of messages shares with the loop.
#[derive(Debug)]
struct Shared {
    config: Config,
    js: jetstream::Context,
    metrics: ComponentMetrics,
    window: Mutex<Window>,
    acked: Counter,
    nacked: Counter,
    duplicates: Counter,
    redelivered: Counter,
}

impl Shared {
    fn window(&self) -> MutexGuard<'_, Window> {
        // A panic elsewhere leaves the sets consistent.
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn id(&self) -> &str {
        self.metrics.id()
    }

    fn dead_letters(&self, reason: &str) -> Counter {
        self.metrics.registry().counter(
            "iotel_nats_dead_letters_total",
            "Messages a nats_jetstream source published to its dead-letter subject, by reason.",
            &[("component_id", self.id()), ("reason", reason)],
        )
    }
}

async fn run(config: Config, mut cx: SourceContext) -> Result<(), ComponentError> {
    let id = cx.metrics.id().to_string();
    let client = crate::sinks::nats_jetstream::connect(
        &config.url,
        &format!("iotel {id} ({})", config.durable),
        &id,
    )
    .await
    .map_err(ComponentError::new)?;
    let js = jetstream::new(client.clone());
    let labels = [("component_id", id.as_str())];
    let registry = cx.registry().clone();
    let shared = Arc::new(Shared {
        window: Mutex::new(Window::new(config.dedup_window.get())),
        acked: registry.counter(
            "iotel_nats_acked_messages_total",
            "Messages a nats_jetstream source acknowledged once every sink had their events.",
            &labels,
        ),
        nacked: registry.counter(
            "iotel_nats_nacked_messages_total",
            "Messages a nats_jetstream source handed back for redelivery (a sink failed).",
            &labels,
        ),
        duplicates: registry.counter(
            "iotel_nats_duplicate_deliveries_total",
            "Deliveries of messages a nats_jetstream source had acknowledged before, dropped.",
            &labels,
        ),
        redelivered: registry.counter(
            "iotel_nats_redelivered_messages_total",
            "Deliveries to a nats_jetstream source of messages JetStream had delivered before \
             (to this worker or another) without an acknowledgement.",
            &labels,
        ),
        config,
        js,
        metrics: cx.metrics.clone(),
    });
    let mut tasks = JoinSet::new();
    let mut backoff = Duration::from_millis(100);
    let mut consumer: Option<jetstream::consumer::PullConsumer> = None;
    'outer: while !cx.shutdown.is_triggered() {
        // Settle what finished; bound what is in flight.
        while tasks.try_join_next().is_some() {}
        while tasks.len() >= shared.config.max_ack_pending.get() as usize {
            tokio::select! {
                _ = tasks.join_next() => {}
                () = cx.shutdown.wait() => break 'outer,
            }
        }
        let c = match &consumer {
            Some(c) => c.clone(),
            None => match open_consumer(&shared).await {
                Ok(c) => {
                    backoff = Duration::from_millis(100);
                    consumer = Some(c.clone());
                    c
                }
                Err(e) => {
                    shared.metrics.error("consumer_failed");
                    tracing::warn!(component = %id, "{e}; trying again in {backoff:?}");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = cx.shutdown.wait() => break 'outer,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        let pull = c
            .batch()
            .max_messages(shared.config.batch.get())
            .expires(shared.config.max_wait.get())
            .messages()
            .await;
        let mut messages = match pull {
            Ok(m) => m,
            Err(e) => {
                fetch_failed(&shared, &e.to_string(), &mut backoff, &mut cx).await;
                // The consumer may be gone: look it up again.
                consumer = None;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                m = messages.next() => m,
                () = cx.shutdown.wait() => break 'outer,
            };
            match next {
                None => break,
                Some(Ok(m)) => {
                    backoff = Duration::from_millis(100);
                    if !handle(&shared, m, &mut cx.out, &mut tasks).await {
                        break 'outer;
                    }
                }
                Some(Err(e)) => {
                    fetch_failed(&shared, &e.to_string(), &mut backoff, &mut cx).await;
                    break;
                }
            }
        }
    }
    // Sinks downstream can only finish once nothing more comes.
    drop(cx.out);
    // Acknowledge what the sinks settle; what they do not settle before
    // the node stops comes again after `ack_wait`.
    let wait = async { while tasks.join_next().await.is_some() {} };
    match cx.shutdown.deadline() {
        Some(d) => {
            let _ = tokio::time::timeout_at(tokio::time::Instant::from_std(d), wait).await;
        }
        None => wait.await,
    }
    Ok(())
}

async fn fetch_failed(shared: &Shared, e: &str, backoff: &mut Duration, cx: &mut SourceContext) {
    shared.metrics.error("fetch_failed");
    tracing::warn!(
        component = %shared.id(),
        "pulling from {} ({}) failed: {e}; trying again in {backoff:?}",
        shared.config.durable,
        shared.config.url
    );
    tokio::select! {
        () = tokio::time::sleep(*backoff) => {}
        () = cx.shutdown.wait() => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
}

/// Finds or makes the durable consumer.
async fn open_consumer(shared: &Shared) -> Result<jetstream::consumer::PullConsumer, String> {
    let c = &shared.config;
    let stream = shared
        .js
        .get_stream(&c.stream)
        .await
        .map_err(|e| format!("stream {} on {}: {e}", c.stream, c.url))?;
    let (filter_subject, filter_subjects) = match c.filter_subjects.as_slice() {
        [one] => (one.clone(), Vec::new()),
        many => (String::new(), many.to_vec()),
    };
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &c.durable,
            pull::Config {
                durable_name: Some(c.durable.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: c.ack_wait.get(),
                // Dead letters are this source's work: JetStream never
                // gives up on a message by itself.
                max_deliver: -1,
                max_ack_pending: i64::from(c.max_ack_pending.get()),
                filter_subject,
                filter_subjects,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            format!(
                "consumer {} on stream {} ({}): {e}",
                c.durable, c.stream, c.url
            )
        })?;
    let info = consumer.cached_info();
    if c.filter_subjects.len() > 1 && info.config.filter_subjects.is_empty() {
        return Err(format!(
            "consumer {}: the server ignored filter_subjects (they need nats-server 2.10 or \
             later); name one subject, or one filter with wildcards",
            c.durable
        ));
    }
    tracing::info!(
        component = %shared.id(),
        "consuming {} of stream {} on {} as {}",
        if info.config.filter_subject.is_empty() {
            format!("{:?}", info.config.filter_subjects)
        } else {
            info.config.filter_subject.clone()
        },
        c.stream,
        c.url,
        c.durable
    );
    Ok(consumer)
}

/// Handles one delivery. Returns `false` once nothing downstream is left.
async fn handle(
    shared: &Arc<Shared>,
    m: jetstream::Message,
    out: &mut Output,
    tasks: &mut JoinSet<()>,
) -> bool {
    let (delivered, key) = match m.info() {
        Ok(info) => (
            info.delivered,
            format!("{}:{}", info.stream, info.stream_sequence),
        ),
        // No JetStream metadata (never seen from a pull consumer): a key
        // of its own, so nothing else is taken for it.
        Err(_) => (
            1,
            format!(
                "no-metadata:{}",
                NO_METADATA.fetch_add(1, Ordering::Relaxed)
            ),
        ),
    };
    let id = m
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map_or(key, |v| v.as_str().to_string());
    let subject = m.subject.to_string();
    let max_deliver = i64::from(shared.config.max_deliver.get());
    if delivered > 1 {
        shared.redelivered.inc();
    }
    let seen = shared.window().seen(&id);
    match seen {
        Seen::InFlight => {
            // Its handling acknowledges it (by stream sequence).
            return true;
        }
        Seen::Done => {
            shared.duplicates.inc();
            let events = native::decode_header(&m.payload).map_or(0, |h| h.records as usize);
            shared.metrics.discarded("duplicate", events);
            let (_, acker) = m.split();
            if let Err(e) = acker.double_ack().await {
                ack_failed(shared, &subject, &e.to_string());
            }
            return true;
        }
        Seen::New => {}
    }
    if delivered > max_deliver {
        // Delivered past the limit without an outcome: a worker died each
        // time it handled it.
        let task = dead_letter(
            shared.clone(),
            m,
            "max_deliver".to_string(),
            None,
            delivered,
        );
        tasks.spawn(task);
        return true;
    }
    let limits = Limits {
        max_body_bytes: usize::try_from(shared.config.max_decoded_size.bytes())
            .unwrap_or(usize::MAX),
        max_records: shared.config.max_events.get(),
    };
    let batch = match native::decode(&m.payload, &limits) {
        Ok(b) => b,
        Err(e) => {
            let code = e.code();
            let errors = shared.metrics.errors(code);
            errors.inc();
            if errors.get().is_power_of_two() {
                tracing::warn!(
                    component = %shared.id(),
                    "a message on {subject} ({id}) is not a native batch ({e}); it goes to the \
                     dead letters"
                );
            }
            let task = dead_letter(
                shared.clone(),
                m,
                format!("decode: {code}"),
                None,
                delivered,
            );
            tasks.spawn(task);
            return true;
        }
    };
    let events = batch.events.len();
    shared.window().begin(&id);
    let (open, acked) = out.send_acked(batch.events).await;
    if !open {
        shared.window().end(&id, false);
        return false;
    }
    tasks.spawn(settle(shared.clone(), m, id, acked, delivered, events));
    true
}

/// Waits for the sinks' verdict on a message's events, telling JetStream
/// meanwhile that the work is in progress; then acknowledges, hands it
/// back, or sends it to the dead letters.
async fn settle(
    shared: Arc<Shared>,
    m: jetstream::Message,
    id: String,
    acked: Acked,
    delivered: i64,
    events: usize,
) {
    let subject = m.subject.to_string();
    let every = shared.config.ack_wait.get() / 2;
    let wait = acked.wait();
    tokio::pin!(wait);
    let stored = loop {
        tokio::select! {
            stored = &mut wait => break stored,
            () = tokio::time::sleep(every) => {
                // A slow sink: keep the message ours.
                let _ = m.ack_with(AckKind::Progress).await;
            }
        }
    };
    if stored {
        match m.double_ack().await {
            Ok(()) => {
                shared.acked.inc();
                shared.window().end(&id, true);
            }
            Err(e) => {
                // It comes again; the window knows it was stored.
                shared.window().end(&id, true);
                ack_failed(&shared, &subject, &e.to_string());
            }
        }
        return;
    }
    shared.window().end(&id, false);
    if delivered >= i64::from(shared.config.max_deliver.get()) {
        dead_letter(
            shared,
            m,
            "max_deliver".to_string(),
            Some(events),
            delivered,
        )
        .await;
        return;
    }
    shared.nacked.inc();
    let nacks = shared.metrics.errors("not_stored");
    nacks.inc();
    if nacks.get().is_power_of_two() {
        tracing::warn!(
            component = %shared.id(),
            "a sink could not store the {events} event(s) of a message on {subject} (delivery \
             {delivered} of {}); JetStream delivers it again in {:?}",
            shared.config.max_deliver,
            shared.config.nak_delay
        );
    }
    if let Err(e) = m
        .ack_with(AckKind::Nak(Some(shared.config.nak_delay.get())))
        .await
    {
        ack_failed(&shared, &subject, &e.to_string());
    }
}

fn ack_failed(shared: &Shared, subject: &str, e: &str) {
    let errors = shared.metrics.errors("ack_failed");
    errors.inc();
    if errors.get().is_power_of_two() {
        tracing::warn!(
            component = %shared.id(),
            "acknowledging a message on {subject} failed ({e}); JetStream delivers it again \
             after ack_wait"
        );
    }
}

/// Publishes `m` to its dead-letter subject, then terminates it; a publish
/// that fails hands it back instead.
async fn dead_letter(
    shared: Arc<Shared>,
    m: jetstream::Message,
    reason: String,
    events: Option<usize>,
    delivered: i64,
) {
    let subject = m.subject.to_string();
    let target = shared.config.dead_letter_for(&subject);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(DEAD_LETTER_REASON, reason.as_str());
    headers.insert(ORIGINAL_SUBJECT, subject.as_str());
    headers.insert(DELIVERIES, delivered.to_string().as_str());
    if let Some(id) = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")) {
        headers.insert("Nats-Msg-Id", format!("dead:{}", id.as_str()).as_str());
    }
    let published = match shared
        .js
        .publish_with_headers(target.clone(), headers, m.payload.clone())
        .await
    {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match published {
        Ok(()) => {
            shared.dead_letters(&reason).inc();
            let events = events.unwrap_or_else(|| {
                native::decode_header(&m.payload).map_or(0, |h| h.records as usize)
            });
            shared.metrics.discarded("dead_letter", events);
            tracing::warn!(
                component = %shared.id(),
                "a message on {subject} went to the dead letters at {target} ({reason}, \
                 delivered {delivered} time(s))"
            );
            if let Err(e) = m.ack_with(AckKind::Term).await {
                ack_failed(&shared, &subject, &e.to_string());
            }
        }
        Err(e) => {
            let errors = shared.metrics.errors("dead_letter_failed");
            errors.inc();
            if errors.get().is_power_of_two() {
                tracing::warn!(
                    component = %shared.id(),
                    "publishing a dead letter to {target} failed ({e}); the message on \
                     {subject} comes again"
                );
            }
            let _ = m
                .ack_with(AckKind::Nak(Some(shared.config.nak_delay.get())))
                .await;
        }
    }
}
