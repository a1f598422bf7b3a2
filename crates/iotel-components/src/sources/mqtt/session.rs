//! The connection to the broker, the subscription, and the order of
//! acknowledgements.
//!
//! One task polls rumqttc's event loop (v5 or 3.1.1, behind [`Client`] and
//! [`Connection`]) and handles each PUBLISH in turn: decode, hand the events
//! downstream with an acknowledgement to wait on, make the span. A second
//! task, the acker, waits on those acknowledgements in the order the
//! messages came (MQTT wants PUBACKs in order) and sends the PUBACK of each
//! message whose events every sink has safe. rumqttc runs with manual acks,
//! so nothing is acknowledged otherwise.
//!
//! A connection error is logged with the broker's address, counted
//! (`error_code="connection"`), and followed by a wait of 100ms doubling
//! up to `max_reconnect_delay` before the event loop reconnects. On the
//! first connection, and on every one after which the broker kept no
//! session, the source subscribes again. PUBACKs queued for a connection
//! that dropped are discarded by rumqttc; the broker sends those messages
//! again on the resumed session.
//!
//! A message whose events a sink could not store stays unacknowledged. The
//! broker sends it again only on a new connection (and holds one of its
//! in-flight slots until then, so enough of them would stall the
//! subscription): the source waits `NOT_STORED_RETRY_DELAY`, then
//! disconnects and reconnects at once, resuming the session.
//!
//! TLS material (`tls`) is a `crate::tls::ClientTlsSource`: before each
//! reconnection the source asks it for the current config, which reads the
//! files again when they changed, so a rotated CA or client certificate is
//! presented from the next connection on without a restart.

use super::decode::{Decoder, Rejected};
use super::spans::{Received, consumer_span, matches};
use super::{BrokerUrl, Config, Protocol, SpanPolicy, TopicPattern, default_client_id};
use crate::{BuildContext, Problem};
use bytes::Bytes;
use iotel_engine::{
    Acked, ComponentError, ComponentFuture, ComponentMetrics, Counter, Output, Source,
    SourceContext,
};
use iotel_model::{Events, now_unix_ns};
use iotel_propagation::{ParseError, SpanContext};
use rumqttc::v5::mqttbytes::v5 as v5b;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The first wait after a connection error; it doubles per failure.
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// The wait before reconnecting to get unstored messages sent again.
const NOT_STORED_RETRY_DELAY: Duration = Duration::from_secs(1);
/// How long a stopping source sends its last PUBACKs and DISCONNECT.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);
/// Requests (acks, subscriptions) queued towards the event loop.
const REQUEST_CAPACITY: usize = 1024;

pub(super) fn build(config: &Config, cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
    let url = BrokerUrl::parse(&config.url).map_err(|e| Problem::new("url", e))?;
    let password = match (&config.password, &config.password_file) {
        (Some(p), _) => Some(p.expose().to_string()),
        (None, Some(file)) => {
            let path = cx.config_dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Problem::new("password_file", format!("{}: {e}", path.display())))?;
            Some(
                text.strip_suffix('\n')
                    .unwrap_or(&text)
                    .trim_end_matches('\r')
                    .to_string(),
            )
        }
        (None, None) => None,
    };
    let tls = if url.tls {
        let tls = config.tls.clone().unwrap_or_default();
        Some(Arc::new(crate::tls::ClientTlsSource::load(
            &tls,
            "tls",
            &cx.config_dir,
            Vec::new(),
            Some(cx.metrics.clone()),
        )?))
    } else {
        None
    };
    let client_id = config
        .client_id
        .clone()
        .unwrap_or_else(|| default_client_id(&cx.id));
    Ok(Box::new(MqttSource {
        config: config.clone(),
        url,
        password,
        tls,
        client_id,
    }))
}

#[derive(Debug)]
struct MqttSource {
    config: Config,
    url: BrokerUrl,
    password: Option<String>,
    tls: Option<Arc<crate::tls::ClientTlsSource>>,
    client_id: String,
}

impl Source for MqttSource {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture {
        Box::pin(self.consume(cx))
    }
}

/// A PUBLISH as both protocols give it.
#[derive(Debug)]
struct Message {
    topic: String,
    payload: Bytes,
    qos1: bool,
    pkid: u16,
    user_properties: Vec<(String, String)>,
}

#[derive(Debug)]
enum Polled {
    Connected {
        session_present: bool,
    },
    Message(Message),
    /// The filters the broker refused, by index.
    SubAck {
        refused: Vec<usize>,
    },
    Other,
}

#[derive(Debug, Clone)]
enum Client {
    V5(rumqttc::v5::AsyncClient),
    V311(rumqttc::AsyncClient),
}

enum Connection {
    V5(Box<rumqttc::v5::EventLoop>),
    V311(Box<rumqttc::EventLoop>),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

impl Client {
    fn subscribe(&self, topics: &[String], qos1: bool) -> Result<(), String> {
        match self {
            Client::V5(c) => {
                let qos = if qos1 {
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce
                } else {
                    rumqttc::v5::mqttbytes::QoS::AtMostOnce
                };
                c.try_subscribe_many(topics.iter().map(|t| v5b::Filter::new(t.clone(), qos)))
                    .map_err(|e| e.to_string())
            }
            Client::V311(c) => {
                let qos = if qos1 {
                    rumqttc::QoS::AtLeastOnce
                } else {
                    rumqttc::QoS::AtMostOnce
                };
                c.try_subscribe_many(
                    topics
                        .iter()
                        .map(|t| rumqttc::SubscribeFilter::new(t.clone(), qos)),
                )
                .map_err(|e| e.to_string())
            }
        }
    }

    /// Sends the PUBACK of QoS 1 message `pkid`.
    async fn ack(&self, pkid: u16) -> Result<(), String> {
        match self {
            Client::V5(c) => {
                let mut p = v5b::Publish::new(
                    "",
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    Vec::<u8>::new(),
                    None,
                );
                p.pkid = pkid;
                c.ack(&p).await.map_err(|e| e.to_string())
            }
            Client::V311(c) => {
                let mut p = rumqttc::Publish::new("", rumqttc::QoS::AtLeastOnce, Vec::<u8>::new());
                p.pkid = pkid;
                c.ack(&p).await.map_err(|e| e.to_string())
            }
        }
    }

    fn disconnect(&self) {
        let _ = match self {
            Client::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Client::V311(c) => c.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

impl Connection {
    async fn poll(&mut self) -> Result<Polled, String> {
        match self {
            Connection::V5(l) => {
                use rumqttc::v5::Event;
                use v5b::Packet;
                Ok(match l.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::ConnAck(c)) => Polled::Connected {
                        session_present: c.session_present,
                    },
                    Event::Incoming(Packet::Publish(p)) => Polled::Message(Message {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload,
                        qos1: p.qos == rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        pkid: p.pkid,
                        user_properties: p
                            .properties
                            .map(|p| p.user_properties)
                            .unwrap_or_default(),
                    }),
                    Event::Incoming(Packet::SubAck(s)) => Polled::SubAck {
                        refused: s
                            .return_codes
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| !matches!(c, v5b::SubscribeReasonCode::Success(_)))
                            .map(|(i, _)| i)
                            .collect(),
                    },
                    _ => Polled::Other,
                })
            }
            Connection::V311(l) => {
                use rumqttc::{Event, Packet};
                Ok(match l.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::ConnAck(c)) => Polled::Connected {
                        session_present: c.session_present,
                    },
                    Event::Incoming(Packet::Publish(p)) => Polled::Message(Message {
                        topic: p.topic,
                        payload: p.payload,
                        qos1: p.qos == rumqttc::QoS::AtLeastOnce,
                        pkid: p.pkid,
                        user_properties: Vec::new(),
                    }),
                    Event::Incoming(Packet::SubAck(s)) => Polled::SubAck {
                        refused: s
                            .return_codes
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| !matches!(c, rumqttc::SubscribeReasonCode::Success(_)))
                            .map(|(i, _)| i)
                            .collect(),
                    },
                    _ => Polled::Other,
                })
            }
        }
    }
}

/// A message waiting for its events to be safe before its PUBACK.
#[derive(Debug)]
struct Pending {
    pkid: u16,
    topic: String,
    acks: Vec<Acked>,
}

impl Connection {
    /// The transport of the next (re)connection.
    fn set_transport(&mut self, t: rumqttc::Transport) {
        match self {
            Connection::V5(l) => {
                l.options.set_transport(t);
            }
            Connection::V311(l) => {
                l.mqtt_options.set_transport(t);
            }
        }
    }
}

impl MqttSource {
    /// TLS with the current material (read again if its files changed);
    /// `None` for plain MQTT, or when the material cannot be had (then the
    /// transport in use stays).
    fn transport(&self) -> Option<rumqttc::Transport> {
        let tls = self.tls.as_ref()?;
        match tls.current() {
            Ok(config) => Some(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(config),
            )),
            Err(e) => {
                tracing::warn!("no TLS material for {}: {e}", self.url);
                None
            }
        }
    }

    /// Before a reconnection: the TLS material as it is now.
    fn refresh_tls(&self, connection: &mut Connection) {
        if let Some(t) = self.transport() {
            connection.set_transport(t);
        }
    }

    fn connect(&self) -> (Client, Connection) {
        let c = &self.config;
        let host = self.url.host.clone();
        match c.protocol {
            Protocol::V5 => {
                let mut o = rumqttc::v5::MqttOptions::new(&self.client_id, host, self.url.port);
                o.set_keep_alive(c.keep_alive.get())
                    .set_clean_start(c.clean_start)
                    .set_manual_acks(true)
                    .set_max_packet_size(u32::try_from(c.max_packet_size.bytes()).ok())
                    .set_session_expiry_interval(
                        u32::try_from(c.session_expiry.get().as_secs()).ok(),
                    );
                if let Some(user) = &c.username {
                    o.set_credentials(user, self.password.clone().unwrap_or_default());
                }
                if let Some(t) = self.transport() {
                    o.set_transport(t);
                }
                let (client, l) = rumqttc::v5::AsyncClient::new(o, REQUEST_CAPACITY);
                (Client::V5(client), Connection::V5(Box::new(l)))
            }
            Protocol::V311 => {
                let mut o = rumqttc::MqttOptions::new(&self.client_id, host, self.url.port);
                let max = usize::try_from(c.max_packet_size.bytes()).unwrap_or(usize::MAX);
                o.set_keep_alive(c.keep_alive.get())
                    .set_clean_session(c.clean_start)
                    .set_manual_acks(true)
                    .set_max_packet_size(max, max);
                if let Some(user) = &c.username {
                    o.set_credentials(user, self.password.clone().unwrap_or_default());
                }
                if let Some(t) = self.transport() {
                    o.set_transport(t);
                }
                let (client, l) = rumqttc::AsyncClient::new(o, REQUEST_CAPACITY);
                (Client::V311(client), Connection::V311(Box::new(l)))
            }
        }
    }

    async fn consume(self, cx: SourceContext) -> Result<(), ComponentError> {
        let SourceContext {
            out,
            mut shutdown,
            metrics,
            ..
        } = cx;
        let id = metrics.id().to_string();
        let (client, mut connection) = self.connect();
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let not_stored = Arc::new(tokio::sync::Notify::new());
        let acker = tokio::spawn(ack_in_order(
            client.clone(),
            ack_rx,
            metrics.clone(),
            not_stored.clone(),
        ));
        // A disconnect of our own making: the error that follows is not a
        // failure.
        let mut leaving = false;
        let mut handler = Handler {
            decoder: Decoder {
                topic_pattern: self
                    .config
                    .topic_pattern
                    .as_deref()
                    .and_then(|p| TopicPattern::parse(p).ok()),
                json_metrics: self.config.json_metrics.clone(),
                ..Decoder::new(
                    self.config.format,
                    &self.config.topic_label,
                    self.config.trace_envelope,
                )
            },
            gaps: metrics.registry().counter(
                "iotel_sparkplug_sequence_gaps_total",
                "Sparkplug B messages whose seq did not follow the edge node's last one.",
                &[("component_id", &id)],
            ),
            out,
            metrics: metrics.clone(),
            id: id.clone(),
            source: &self,
        };
        let mut subscribed = false;
        let mut delay = FIRST_RECONNECT_DELAY;
        tracing::info!(
            component = %id,
            "connecting to {} as {:?}, subscribing to {:?}",
            self.url,
            self.client_id,
            self.config.topics
        );
        loop {
            let polled = tokio::select! {
                () = shutdown.wait() => break,
                p = connection.poll() => p,
                () = not_stored.notified(), if !leaving => {
                    tracing::info!(
                        component = %id,
                        "reconnecting to {} in {NOT_STORED_RETRY_DELAY:?} so that it sends the \
                         messages that could not be stored again",
                        self.url
                    );
                    tokio::select! {
                        () = shutdown.wait() => break,
                        () = tokio::time::sleep(NOT_STORED_RETRY_DELAY) => {}
                    }
                    client.disconnect();
                    leaving = true;
                    continue;
                }
            };
            match polled {
                Ok(Polled::Connected { session_present }) => {
                    delay = FIRST_RECONNECT_DELAY;
                    leaving = false;
                    tracing::info!(
                        component = %id,
                        "connected to {} (session present: {session_present})",
                        self.url
                    );
                    if !subscribed || !session_present {
                        if let Err(e) = client.subscribe(&self.config.topics, self.config.qos == 1)
                        {
                            metrics.error("subscribe");
                            tracing::warn!(component = %id, "subscribing at {} failed: {e}", self.url);
                        }
                        subscribed = true;
                    }
                }
                Ok(Polled::Message(m)) => {
                    let Some(pending) = handler.handle(m).await else {
                        tracing::info!(component = %id, "no consumer left downstream; stopping");
                        break;
                    };
                    if let Some(p) = pending {
                        let _ = ack_tx.send(p);
                    }
                }
                Ok(Polled::SubAck { refused }) => {
                    for i in refused {
                        metrics.error("subscribe_refused");
                        let filter = self.config.topics.get(i).map_or("?", String::as_str);
                        tracing::error!(
                            component = %id,
                            "{} refused the subscription to {filter:?} (not authorised, or a \
                             filter it does not support)",
                            self.url
                        );
                    }
                }
                Ok(Polled::Other) => {}
                Err(e) if leaving => {
                    tracing::debug!(component = %id, "disconnected from {} on purpose: {e}", self.url);
                    self.refresh_tls(&mut connection);
                }
                Err(e) => {
                    metrics.error("connection");
                    tracing::warn!(
                        component = %id,
                        "connection to {} failed or dropped: {e}; reconnecting in {delay:?}",
                        self.url
                    );
                    tokio::select! {
                        () = shutdown.wait() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(self.config.max_reconnect_delay.get());
                    self.refresh_tls(&mut connection);
                }
            }
        }
        // PUBACKs of what is already safe go out before the DISCONNECT;
        // what is not acknowledged by then comes again with the session.
        drop(ack_tx);
        let drained = async {
            let _ = acker.await;
            client.disconnect();
        };
        let flushing = async { while connection.poll().await.is_ok() {} };
        let _ = tokio::time::timeout(SHUTDOWN_FLUSH, async {
            tokio::join!(drained, flushing);
        })
        .await;
        Ok(())
    }
}

struct Handler<'a> {
    decoder: Decoder,
    gaps: Counter,
    out: Output,
    metrics: ComponentMetrics,
    id: String,
    source: &'a MqttSource,
}

impl Handler<'_> {
    /// Decodes and hands on one message. `None` once no consumer is left;
    /// else the PUBACK to wait for, if the message is QoS 1.
    async fn handle(&mut self, m: Message) -> Option<Option<Pending>> {
        let start_ns = now_unix_ns();
        let mut acks = Vec::new();
        let (envelope, error) = match self.decoder.decode(&m.topic, &m.payload, start_ns) {
            Ok(d) => {
                let dropped: usize = d.dropped.iter().map(|d| d.1).sum();
                self.metrics
                    .received(d.events.as_ref().map_or(0, Events::len) + dropped);
                for (reason, n, example) in &d.dropped {
                    let counter = self.metrics.discards(reason);
                    let before = counter.get();
                    counter.add(*n as u64);
                    if crossed_power_of_two(before, counter.get()) {
                        tracing::warn!(
                            component = %self.id,
                            "dropped {n} ({reason}): {example} (so far: {})",
                            counter.get()
                        );
                    }
                }
                if d.topic_unmatched {
                    let errors = self.metrics.errors("topic_unmatched");
                    errors.inc();
                    if errors.get().is_power_of_two() {
                        tracing::warn!(
                            component = %self.id,
                            "topic {:?} does not match topic_pattern {:?}: its events are taken \
                             without the pattern's labels (such messages so far: {})",
                            m.topic,
                            self.source.config.topic_pattern.as_deref().unwrap_or_default(),
                            errors.get()
                        );
                    }
                }
                if let Some(gap) = d.sequence_gap {
                    self.gaps.inc();
                    tracing::warn!(
                        component = %self.id,
                        "topic {:?}: Sparkplug seq {} where {} was expected; messages of this \
                         edge node were lost (sequence gaps so far: {})",
                        m.topic,
                        gap.got,
                        gap.expected,
                        self.gaps.get()
                    );
                }
                if let Some(events) = d.events {
                    let (open, acked) = self.out.send_acked(events).await;
                    if !open {
                        return None;
                    }
                    acks.push(acked);
                }
                (d.envelope, None)
            }
            Err(Rejected { code, message }) => {
                self.metrics.received(1);
                let counter = self.metrics.discards(code);
                counter.inc();
                if counter.get().is_power_of_two() {
                    tracing::warn!(
                        component = %self.id,
                        "rejected a message ({code}): {message} (such messages so far: {})",
                        counter.get()
                    );
                }
                (None, Some(code))
            }
        };
        if self.source.config.spans != SpanPolicy::None {
            let parent = self.trace_context(&m, envelope);
            if parent.is_some() || self.source.config.spans == SpanPolicy::All {
                let filter = self
                    .source
                    .config
                    .topics
                    .iter()
                    .find(|f| matches(f, &m.topic))
                    .map_or(m.topic.as_str(), String::as_str);
                let span = consumer_span(
                    parent.as_ref(),
                    &Received {
                        topic: &m.topic,
                        filter,
                        client_id: &self.source.client_id,
                        broker_host: &self.source.url.host,
                        broker_port: self.source.url.port,
                        body_size: m.payload.len(),
                        start_ns,
                        end_ns: now_unix_ns(),
                        error,
                    },
                );
                let (open, acked) = self.out.send_acked(Events::Traces(vec![span])).await;
                if !open {
                    return None;
                }
                acks.push(acked);
            }
        }
        Some(m.qos1.then_some(Pending {
            pkid: m.pkid,
            topic: m.topic,
            acks,
        }))
    }

    /// The publisher's span: from the v5 user properties, else from the
    /// JSON envelope. A malformed one is counted and logged, and the
    /// message is treated as carrying none.
    fn trace_context(
        &self,
        m: &Message,
        envelope: Option<Result<SpanContext, ParseError>>,
    ) -> Option<SpanContext> {
        let from_properties = iotel_propagation::mqtt::extract_v5(&m.user_properties);
        let found = match (from_properties, envelope) {
            (Err(ParseError::Missing { .. }), Some(e)) => e,
            (r, _) => r,
        };
        match found {
            Ok(ctx) => Some(ctx),
            Err(ParseError::Missing { .. }) => None,
            Err(e) => {
                let counter = self.metrics.errors("invalid_trace_context");
                counter.inc();
                if counter.get().is_power_of_two() {
                    tracing::warn!(
                        component = %self.id,
                        "topic {:?}: ignored invalid trace context: {e} (so far: {})",
                        m.topic,
                        counter.get()
                    );
                }
                None
            }
        }
    }
}

/// Whether a counter that went from `before` to `after` passed 1, 2, 4, 8…
fn crossed_power_of_two(before: u64, after: u64) -> bool {
    after > before && (before == 0 || after.ilog2() > before.ilog2())
}

/// Sends each message's PUBACK, in arrival order, once every sink has its
/// events safe.
async fn ack_in_order(
    client: Client,
    mut pending: mpsc::UnboundedReceiver<Pending>,
    metrics: ComponentMetrics,
    not_stored: Arc<tokio::sync::Notify>,
) {
    while let Some(p) = pending.recv().await {
        let mut stored = true;
        for acked in p.acks {
            stored &= acked.wait().await;
        }
        if stored {
            if let Err(e) = client.ack(p.pkid).await {
                tracing::debug!(component = %metrics.id(), "PUBACK of {:?} not sent: {e}", p.topic);
            }
        } else {
            not_stored.notify_one();
            let counter = metrics.errors("not_stored");
            counter.inc();
            if counter.get().is_power_of_two() {
                tracing::warn!(
                    component = %metrics.id(),
                    "a message on topic {:?} could not be stored downstream; it is left \
                     unacknowledged for the broker to send again (so far: {})",
                    p.topic,
                    counter.get()
                );
            }
        }
    }
}
