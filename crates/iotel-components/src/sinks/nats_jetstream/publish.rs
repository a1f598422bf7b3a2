//! The sink's side of the buffered delivery loop (`sinks::buffered`):
//! batches become one native frame per subject, a request is every frame
//! of it in one [`Envelope`], and sending it publishes each frame to
//! JetStream and waits for every acknowledgement.

use super::{Config, SUBJECT_PREFIX, shard, subject_token};
use crate::http_util;
use crate::sinks::buffered::Protocol;
use crate::sinks::http_delivery::{Answer, Exchange};
use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use iotel_engine::{ComponentError, Counter, SinkContext};
use iotel_formats::native::{self, Compression};
use iotel_model::{Events, Labels};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A message is sealed once its frame holds about this much before
/// compression, well inside NATS's default `max_payload` (1 MiB).
const MESSAGE_TARGET_BYTES: usize = 512 << 10;

/// A request stops taking batches once its frames hold this much before
/// compression.
const REQUEST_TARGET_BYTES: usize = 8 << 20;

/// Events pushed into a frame at once, so a large batch is sealed into
/// messages of about [`MESSAGE_TARGET_BYTES`].
const CHUNK_EVENTS: usize = 1_000;

/// What the publishing needs, shared with the requests in flight.
#[derive(Debug)]
struct Shared {
    url: String,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: jetstream::stream::Config,
    create_stream: bool,
    /// Set once the stream was found (or made) and fits.
    stream_ready: AtomicBool,
    component: String,
    published_messages: Counter,
    published_bytes: Counter,
    duplicates: Counter,
}

/// One request's frames, by subject.
#[derive(Debug)]
pub(super) struct Publisher {
    shared: Arc<Shared>,
    publisher_id: String,
    tenant_label: String,
    shards: u32,
    max_events: usize,
    /// Frames being filled, by subject.
    open: BTreeMap<String, native::Builder>,
    /// Frames full enough to be a message of their own, in order sealed.
    sealed: Vec<(String, native::Builder)>,
    events: usize,
}

impl Publisher {
    /// Connects (the client keeps reconnecting; a server down now is no
    /// error) and registers the sink's counters.
    ///
    /// # Errors
    /// A URL the client refuses.
    pub(super) async fn start(
        config: &Config,
        publisher_id: String,
        cx: &SinkContext,
    ) -> Result<Publisher, ComponentError> {
        let id = cx.metrics.id().to_string();
        let client = super::connect(&config.url, &format!("iotel {publisher_id}"), &id)
            .await
            .map_err(ComponentError::new)?;
        let js = jetstream::new(client.clone());
        let labels = [("component_id", id.as_str())];
        let registry = cx.registry();
        let stream = jetstream::stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{SUBJECT_PREFIX}.>")],
            max_age: config.max_age.get(),
            max_bytes: config
                .max_bytes
                .map_or(-1, |b| i64::try_from(b.bytes()).unwrap_or(i64::MAX)),
            num_replicas: config.replicas.get() as usize,
            duplicate_window: config.duplicate_window.get(),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        Ok(Publisher {
            shared: Arc::new(Shared {
                url: config.url.clone(),
                client,
                js,
                stream,
                create_stream: config.create_stream,
                stream_ready: AtomicBool::new(false),
                published_messages: registry.counter(
                    "iotel_nats_published_messages_total",
                    "Messages JetStream acknowledged to a nats_jetstream sink.",
                    &labels,
                ),
                published_bytes: registry.counter(
                    "iotel_nats_published_bytes_total",
                    "Payload bytes of the messages JetStream acknowledged to a nats_jetstream sink.",
                    &labels,
                ),
                duplicates: registry.counter(
                    "iotel_nats_duplicate_messages_total",
                    "Messages JetStream acknowledged as duplicates (it had their Nats-Msg-Id): \
                     a retry of a request it had partly stored.",
                    &labels,
                ),
                component: id,
            }),
            publisher_id,
            tenant_label: config.tenant_label.clone(),
            shards: config.shards.get(),
            max_events: config.batch.max_events.get(),
            open: BTreeMap::new(),
            sealed: Vec::new(),
            events: 0,
        })
    }

    fn approx_bytes(&self) -> usize {
        self.open
            .values()
            .chain(self.sealed.iter().map(|(_, b)| b))
            .map(native::Builder::approx_bytes)
            .sum()
    }

    /// The subject of an event with `labels`.
    fn subject(&self, signal: &str, labels: &Labels) -> String {
        let tenant = labels.get(&self.tenant_label).unwrap_or("default");
        let device = labels.get("device_id").unwrap_or("");
        format!(
            "{SUBJECT_PREFIX}.{}.{signal}.{}",
            subject_token(tenant),
            shard(tenant, device, self.shards)
        )
    }

    fn split<T>(
        &mut self,
        signal: &str,
        v: Vec<T>,
        labels: fn(&T) -> &Labels,
        wrap: fn(Vec<T>) -> Events,
    ) {
        let mut groups: BTreeMap<String, Vec<T>> = BTreeMap::new();
        // Consecutive events of one device share a subject: compute it once.
        let mut last: Option<(Labels, String)> = None;
        for e in v {
            let l = labels(&e);
            let subject = match &last {
                Some((have, s)) if have == l => s.clone(),
                _ => {
                    let s = self.subject(signal, l);
                    last = Some((l.clone(), s.clone()));
                    s
                }
            };
            groups.entry(subject).or_default().push(e);
        }
        for (subject, mut group) in groups {
            while !group.is_empty() {
                let rest = group.split_off(group.len().min(CHUNK_EVENTS));
                let chunk = wrap(std::mem::replace(&mut group, rest));
                let builder = self.open.entry(subject.clone()).or_default();
                // One signal per request subject: the signal is in it.
                let _ = builder.push(&chunk);
                if builder.approx_bytes() >= MESSAGE_TARGET_BYTES
                    && let Some(full) = self.open.remove(&subject)
                {
                    self.sealed.push((subject.clone(), full));
                }
            }
        }
    }
}

impl Protocol for Publisher {
    fn fits(&self, _events: &Events) -> bool {
        self.events < self.max_events && self.approx_bytes() < REQUEST_TARGET_BYTES
    }

    fn add(&mut self, events: Events) {
        self.events += events.len();
        match events {
            Events::Metrics(v) => self.split("metrics", v, |m| &m.labels, Events::Metrics),
            Events::Logs(v) => self.split("logs", v, |r| &r.labels, Events::Logs),
            Events::Traces(v) => self.split("traces", v, |s| &s.labels, Events::Traces),
        }
    }

    /// Every frame, lz4-compressed, with its subject and message id
    /// `<publisher_id>:<first>-<last>:<subject>:<part>` (`part` counts the
    /// messages of one subject in the request, from 0).
    fn encode(&mut self, first: u64, last: u64) -> Result<Bytes, String> {
        let mut out = BytesMut::new();
        let mut parts: BTreeMap<String, u32> = BTreeMap::new();
        let open = std::mem::take(&mut self.open);
        let sealed = std::mem::take(&mut self.sealed);
        self.events = 0;
        for (subject, mut builder) in sealed.into_iter().chain(open) {
            let part = parts.entry(subject.clone()).or_default();
            let id = format!("{}:{first}-{last}:{subject}:{part}", self.publisher_id);
            *part += 1;
            let frame = builder
                .finish(&self.publisher_id, first, Compression::Lz4)
                .map_err(|e| e.to_string())?;
            Envelope {
                subject,
                id,
                payload: Bytes::from(frame),
            }
            .write(&mut out);
        }
        Ok(out.freeze())
    }

    fn clear(&mut self) {
        self.open.clear();
        self.sealed.clear();
        self.events = 0;
    }

    fn request(&self, _body: Bytes, _f: u64, _l: u64, _o: u64) -> http::Request<http_util::Body> {
        // Never called: `send` publishes to JetStream.
        http::Request::new(http_util::Body::new(Bytes::new()))
    }

    fn send(
        &self,
        _client: &http_util::Client,
        timeout: Duration,
        body: Bytes,
        _ids: [u64; 3],
    ) -> Pin<Box<dyn Future<Output = Exchange> + Send>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            match tokio::time::timeout(timeout, shared.publish_all(body)).await {
                Ok(Ok(())) => exchange(
                    Answer::Status {
                        status: 200,
                        retry_after: None,
                    },
                    String::new(),
                ),
                Ok(Err((answer, detail))) => exchange(answer, detail),
                Err(_) => exchange(
                    Answer::Failed {
                        code: "request_timeout",
                    },
                    format!("JetStream did not acknowledge within {timeout:?} (request_timeout)"),
                ),
            }
        })
    }
}

fn exchange(answer: Answer, detail: String) -> Exchange {
    Exchange {
        answer,
        detail,
        body: Bytes::new(),
        headers: http::HeaderMap::new(),
    }
}

/// A failed attempt: how the delivery loop is to judge it, and why.
type Failure = (Answer, String);

fn retry(code: &'static str, detail: String) -> Failure {
    (Answer::Failed { code }, detail)
}

impl Shared {
    /// Publishes every message of `body` and waits for each
    /// acknowledgement; fails on the first message JetStream did not store.
    async fn publish_all(&self, body: Bytes) -> Result<(), Failure> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            // Publishing now would only queue in the client.
            return Err(retry(
                "disconnected",
                format!("not connected to NATS at {}", self.url),
            ));
        }
        self.ensure_stream().await?;
        let messages = Envelope::read_all(body).map_err(|e| {
            (
                Answer::Refused {
                    code: "encode_failed",
                    retryable: false,
                    retry_after: None,
                },
                e,
            )
        })?;
        let mut pending = Vec::with_capacity(messages.len());
        for m in messages {
            let bytes = m.payload.len() as u64;
            let publish = jetstream::message::PublishMessage::build()
                .payload(m.payload)
                .message_id(&m.id);
            let ack = self
                .js
                .send_publish(m.subject.clone(), publish)
                .await
                .map_err(|e| self.publish_failed(&m.subject, &e))?;
            pending.push((m.subject, bytes, ack));
        }
        for (subject, bytes, ack) in pending {
            let ack = ack.await.map_err(|e| self.publish_failed(&subject, &e))?;
            if ack.duplicate {
                self.duplicates.inc();
            } else {
                self.published_messages.inc();
                self.published_bytes.add(bytes);
            }
        }
        Ok(())
    }

    fn publish_failed(&self, subject: &str, e: &jetstream::context::PublishError) -> Failure {
        let detail = format!("publishing to {subject} on {}: {e}", self.url);
        match e.kind() {
            PublishErrorKind::StreamNotFound => {
                // Look the stream up again before the next attempt.
                self.stream_ready.store(false, Ordering::Relaxed);
                retry("stream_not_found", detail)
            }
            PublishErrorKind::TimedOut => retry("publish_timeout", detail),
            PublishErrorKind::MaxPayloadExceeded => (
                Answer::Refused {
                    code: "max_payload_exceeded",
                    retryable: false,
                    retry_after: None,
                },
                detail,
            ),
            _ => retry("publish_failed", detail),
        }
    }

    /// Finds (or makes) the stream, once; checks it takes `iotel.>`.
    async fn ensure_stream(&self) -> Result<(), Failure> {
        if self.stream_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let name = &self.stream.name;
        let info = if self.create_stream {
            self.js
                .get_or_create_stream(self.stream.clone())
                .await
                .map(|s| s.cached_info().clone())
                .map_err(|e| {
                    retry(
                        "stream_check_failed",
                        format!("creating or finding stream {name} on {}: {e}", self.url),
                    )
                })?
        } else {
            let stream = self.js.get_stream(name).await.map_err(|e| {
                retry(
                    "stream_not_found",
                    format!(
                        "stream {name} on {}: {e} (create_stream is false: create it, with \
                         subjects \"{SUBJECT_PREFIX}.>\")",
                        self.url
                    ),
                )
            })?;
            stream.cached_info().clone()
        };
        let want = format!("{SUBJECT_PREFIX}.>");
        let subjects = &info.config.subjects;
        if !subjects.iter().any(|s| *s == want || s == ">") {
            return Err(retry(
                "stream_mismatch",
                format!(
                    "stream {name} on {} takes the subjects {subjects:?}, not \"{want}\": add \
                     it to the stream or name another stream",
                    self.url
                ),
            ));
        }
        tracing::info!(
            component = %self.component,
            "publishing to stream {name} on {} (subjects {subjects:?})",
            self.url
        );
        self.stream_ready.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// One message of a request, as the request body carries it between
/// `encode` and `send` (and keeps it for retries):
///
/// ```text
/// u16 BE  subject length, subject (UTF-8)
/// u16 BE  message id length, message id (UTF-8)
/// u32 BE  payload length, payload (a native frame)
/// ```
///
/// repeated to the end of the body. It never leaves the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub subject: String,
    pub id: String,
    pub payload: Bytes,
}

impl Envelope {
    fn write(&self, out: &mut BytesMut) {
        // Subjects and ids are built here, far below 64 KiB; a frame is
        // below 4 GiB (the builder's limits).
        out.put_u16(self.subject.len() as u16);
        out.put_slice(self.subject.as_bytes());
        out.put_u16(self.id.len() as u16);
        out.put_slice(self.id.as_bytes());
        out.put_u32(self.payload.len() as u32);
        out.put_slice(&self.payload);
    }

    /// # Errors
    /// A body that is not a sequence of envelopes.
    pub(crate) fn read_all(mut body: Bytes) -> Result<Vec<Envelope>, String> {
        fn take(body: &mut Bytes, n: usize) -> Result<Bytes, String> {
            if body.remaining() < n {
                return Err(format!("a request body ends {n} bytes early"));
            }
            Ok(body.split_to(n))
        }
        fn text(b: Bytes) -> Result<String, String> {
            String::from_utf8(b.to_vec()).map_err(|_| "a subject or id is not UTF-8".to_string())
        }
        let mut out = Vec::new();
        while body.has_remaining() {
            let n = usize::from(take(&mut body, 2)?.get_u16());
            let subject = text(take(&mut body, n)?)?;
            let n = usize::from(take(&mut body, 2)?.get_u16());
            let id = text(take(&mut body, n)?)?;
            let n = take(&mut body, 4)?.get_u32() as usize;
            let payload = take(&mut body, n)?;
            out.push(Envelope {
                subject,
                id,
                payload,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
impl Envelope {
    pub(crate) fn write_for_test(&self, out: &mut BytesMut) {
        self.write(out);
    }
}
