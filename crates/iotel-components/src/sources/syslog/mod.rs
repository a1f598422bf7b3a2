//! `syslog`: receives syslog messages (RFC 5424 and the BSD format of RFC
//! 3164) over UDP or TCP and emits them as log records.
//!
//! ```toml
//! [sources.syslog]
//! type = "syslog"
//! address = "udp://0.0.0.0:5514"     # or "tcp://0.0.0.0:5514"
//! labels = { site = "plant-7" }
//! ```
//!
//! - UDP: one message per datagram (RFC 5426). A datagram longer than
//!   `max_message_bytes` is cut there and flagged.
//! - TCP with `tls`: syslog over TLS (RFC 5425), the listener table of
//!   `crate::tls::server` (client certificates when it has a `ca_file`,
//!   reloaded when the files change, `iotel_tls_cert_expiry_seconds`).
//!   Frames as on plain TCP: RFC 5425's octet counting, and lines from
//!   senders that use them. A failed handshake closes that connection
//!   (`tls_handshake_failed`). UDP has no TLS.
//! - With `identity` as well, every record of a connection gets the device
//!   its client certificate names (`crate::tls::identity`): a peer with no
//!   such certificate, in another trust domain or revoked is disconnected
//!   (counted under `no_identity`, `wrong_trust_domain`, `revoked`); a
//!   record that names another device drops its batch (`identity_mismatch`,
//!   counted as discarded) or, with `policy = "overwrite"`, is given the
//!   certificate's.
//! - An address other than a loopback one without `tls` needs `plaintext =
//!   true` (a warning is logged at start).
//! - TCP: RFC 6587 framing, told per frame (see `framing.rs`): octet
//!   counting (`LEN SP MSG`) when the frame starts with a digit, else one
//!   message per line. A frame longer than `max_message_bytes` is cut there
//!   and flagged, the rest skipped as it arrives; nothing is buffered past
//!   it. At most `max_connections` at once (more are closed at once, counted
//!   and logged); a connection silent for `idle_timeout` is closed.
//!
//! Messages are parsed by `iotel_formats::syslog` (its docs list the fields
//! set). Two low-cardinality parts become stream labels: `hostname` and
//! `app_name` (moved out of the fields), on top of the static `labels`, where
//! they win over a static label of the same name. Every record gets the
//! field `source_ip`, the sender's address. A message that does not parse is
//! kept whole as the message, with the field `parse_error` saying where and
//! what was expected, counted in `iotel_component_errors_total{error_code=
//! "parse_error"}` and logged with the peer (the 1st, 2nd, 4th, 8th… time).
//! A cut message gets the field `truncated = true` and is counted under
//! `error_code="message_truncated"`. Empty messages (blank lines) are
//! dropped and counted as discarded with reason `empty_message`.

mod framing;
#[cfg(test)]
mod tests;
#[cfg(all(test, feature = "tls"))]
mod tls_tests;

use crate::http_util;
use crate::transforms::names::static_label_problems;
use crate::tz::resolve_timezone;
use crate::{BuildContext, Problem};
use framing::Framer;
use iotel_engine::config::{ByteSize, Duration};
use iotel_engine::{
    ComponentError, ComponentFuture, ComponentMetrics, Counter, Output, Shutdown, Source,
    SourceContext,
};
use iotel_formats::syslog;
use iotel_model::{Events, Labels, LogRecord, now_unix_ns};
use jiff::tz::TimeZone;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen: `udp://host:port` or `tcp://host:port`, e.g.
    /// `udp://0.0.0.0:5514`.
    pub address: String,
    /// The longest message; longer ones are cut here and flagged. 256B to
    /// 16MiB.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: ByteSize,
    /// TCP connections at once; more are closed when accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: NonZeroUsize,
    /// A TCP connection that sends nothing for this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// Static labels on every record.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The time zone of BSD (RFC 3164) timestamps, which carry no offset:
    /// `"UTC"`, `"local"` or an IANA name. Default `"UTC"`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// TLS on a `tcp://` listener (RFC 5425).
    #[serde(default)]
    pub tls: Option<Box<crate::tls::ServerTls>>,
    /// Without `tls`, receive unencrypted on an address other than a
    /// loopback one.
    #[serde(default)]
    pub plaintext: bool,
    /// Binds every record of a TLS connection to the device its client
    /// certificate names (`crate::tls::identity`); needs `tls` with a
    /// `ca_file`.
    #[serde(default)]
    pub identity: Option<Box<crate::tls::identity::IdentityConfig>>,
}

fn default_max_message_bytes() -> ByteSize {
    ByteSize(64 << 10)
}

fn default_max_connections() -> NonZeroUsize {
    NonZeroUsize::new(256).unwrap_or(NonZeroUsize::MIN)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_timezone() -> String {
    "UTC".into()
}

const MIN_MESSAGE_BYTES: u64 = 256;
const MAX_MESSAGE_BYTES: u64 = 16 << 20;

/// Datagrams taken at once into one batch when several are waiting.
const UDP_BATCH: usize = 256;

/// The label sets a connection keeps, by (hostname, app_name), before it
/// starts over.
const LABEL_CACHE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// `udp://host:port` or `tcp://host:port`.
fn parse_address(address: &str) -> Result<(Transport, SocketAddr), String> {
    let bad = || {
        format!(
            "expected udp://host:port or tcp://host:port with an IP address, e.g. \
             \"udp://0.0.0.0:5514\", got \"{address}\""
        )
    };
    let (transport, rest) = if let Some(rest) = address.strip_prefix("udp://") {
        (Transport::Udp, rest)
    } else if let Some(rest) = address.strip_prefix("tcp://") {
        (Transport::Tcp, rest)
    } else {
        return Err(bad());
    };
    let addr = rest.parse::<SocketAddr>().map_err(|_| bad())?;
    Ok((transport, addr))
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        match parse_address(&self.address) {
            Err(e) => p.push(Problem::new("address", e)),
            Ok((transport, addr)) => {
                if transport == Transport::Udp && self.tls.is_some() {
                    p.push(Problem::new(
                        "tls",
                        "syslog over UDP has no TLS: use a tcp:// address with tls",
                    ));
                }
                p.extend(crate::tls::server::validate_plaintext(
                    "address",
                    addr,
                    self.tls.is_some(),
                    self.plaintext,
                ));
            }
        }
        p.extend(crate::tls::server::validate_listener(
            self.tls.as_deref(),
            self.identity.as_deref(),
        ));
        let size = self.max_message_bytes;
        if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&size.bytes()) {
            p.push(Problem::new(
                "max_message_bytes",
                format!(
                    "expected {} to {}, got {size}",
                    ByteSize(MIN_MESSAGE_BYTES),
                    ByteSize(MAX_MESSAGE_BYTES)
                ),
            ));
        }
        if self.idle_timeout.get().is_zero() {
            p.push(Problem::new(
                "idle_timeout",
                "expected a duration above zero, e.g. \"5m\"",
            ));
        }
        p.extend(static_label_problems("labels", "label", &self.labels, None));
        if self.timezone.trim().is_empty() {
            p.push(Problem::new(
                "timezone",
                "expected \"UTC\", \"local\" or an IANA time zone name such as \"Europe/Berlin\"",
            ));
        }
        p
    }

    /// The port this source listens on: a TCP port is claimed as
    /// `port host:port`, as every TCP listener is; a UDP one as
    /// `udp port host:port`, which a TCP listener on the same number does
    /// not clash with.
    pub fn claims(&self) -> Vec<String> {
        match parse_address(&self.address) {
            Ok((Transport::Tcp, addr)) => vec![format!("port {addr}")],
            Ok((Transport::Udp, addr)) => vec![format!("udp port {addr}")],
            Err(_) => vec![],
        }
    }

    /// # Errors
    /// An unknown time zone (`timezone`).
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
        let (transport, addr) =
            parse_address(&self.address).map_err(|e| Problem::new("address", e))?;
        let timezone = resolve_timezone(&self.timezone).map_err(|e| Problem::new("timezone", e))?;
        Ok(Box::new(SyslogSource {
            transport,
            addr,
            tls: self.listener_tls(cx)?,
            #[cfg(feature = "tls")]
            identity: match &self.identity {
                Some(i) => Some(Arc::new(i.build("identity", cx)?)),
                None => None,
            },
            max_connections: self.max_connections.get(),
            idle_timeout: self.idle_timeout.get(),
            receiver: Arc::new(Receiver {
                max_message: usize::try_from(self.max_message_bytes.bytes()).unwrap_or(usize::MAX),
                labels: Labels::from_pairs(&self.labels),
                timezone,
                parse_errors: cx.metrics.errors("parse_error"),
                truncated: cx.metrics.errors("message_truncated"),
                empty: cx.metrics.discards("empty_message"),
                metrics: cx.metrics.clone(),
            }),
        }))
    }
}

impl Config {
    #[cfg(feature = "tls")]
    fn listener_tls(&self, cx: &BuildContext) -> Result<Option<http_util::Tls>, Problem> {
        self.tls
            .as_ref()
            .map(|t| t.build("tls", cx, &[]))
            .transpose()
    }

    #[cfg(not(feature = "tls"))]
    fn listener_tls(&self, _cx: &BuildContext) -> Result<Option<http_util::Tls>, Problem> {
        match self.tls {
            Some(_) => Err(Problem::new("tls", crate::tls::NOT_BUILT_IN)),
            None => Ok(None),
        }
    }
}

#[derive(Debug)]
struct SyslogSource {
    transport: Transport,
    addr: SocketAddr,
    tls: Option<http_util::Tls>,
    #[cfg(feature = "tls")]
    identity: Option<Arc<crate::tls::identity::Binding>>,
    max_connections: usize,
    idle_timeout: std::time::Duration,
    receiver: Arc<Receiver>,
}

impl Source for SyslogSource {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture {
        match self.transport {
            Transport::Udp => Box::pin(self.udp(cx)),
            Transport::Tcp => Box::pin(self.tcp(cx)),
        }
    }
}

impl SyslogSource {
    async fn udp(self, mut cx: SourceContext) -> Result<(), ComponentError> {
        let socket = UdpSocket::bind(self.addr).await.map_err(|e| {
            ComponentError::new(format!("cannot listen on udp://{}: {e}", self.addr))
        })?;
        tracing::info!(component = %cx.key.id, "receiving syslog on udp://{}", self.addr);
        crate::tls::server::warn_plaintext(&cx.key.id, self.addr, false);
        let rx = &self.receiver;
        let mut labels = LabelCache::default();
        // One byte more than a message may have: a datagram that fills it
        // was longer.
        let mut buf = vec![0u8; rx.max_message + 1];
        let mut shutdown = cx.shutdown.clone();
        let recv_errors = cx.metrics.errors("receive_failed");
        loop {
            let first = tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                r = socket.recv_from(&mut buf) => r,
            };
            let received_ns = now_unix_ns();
            let mut batch = Vec::new();
            let mut next = Some(first);
            while let Some(result) = next.take() {
                match result {
                    Ok((n, peer)) => {
                        let frame = datagram_frame(&buf, n, rx.max_message);
                        if let Some(r) = rx.record(frame, peer, received_ns, &mut labels) {
                            batch.push(r);
                        }
                    }
                    Err(e) => {
                        // Nothing that was sent is lost here (a datagram
                        // that arrived is read whole or cut and flagged),
                        // but a socket that keeps failing must be seen.
                        recv_errors.inc();
                        if recv_errors.get().is_power_of_two() {
                            tracing::warn!(
                                component = %cx.key.id,
                                "receiving a datagram failed: {e} (such failures so far: {})",
                                recv_errors.get()
                            );
                        }
                        break;
                    }
                }
                if batch.len() < UDP_BATCH {
                    next = match socket.try_recv_from(&mut buf) {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                        r => Some(r),
                    };
                }
            }
            if !rx.send(&mut cx.out, batch).await {
                return Ok(());
            }
        }
    }

    async fn tcp(self, cx: SourceContext) -> Result<(), ComponentError> {
        let listener = TcpListener::bind(self.addr).await.map_err(|e| {
            ComponentError::new(format!("cannot listen on tcp://{}: {e}", self.addr))
        })?;
        let over = if self.tls.is_some() { " over TLS" } else { "" };
        tracing::info!(component = %cx.key.id, "receiving syslog on tcp://{}{over}", self.addr);
        crate::tls::server::warn_plaintext(&cx.key.id, self.addr, self.tls.is_some());
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            tokio::spawn(tls.clone().watch(cx.shutdown.clone()));
        }
        let refused = cx.metrics.errors("connection_limit");
        let open = cx.registry().gauge(
            "iotel_syslog_open_connections",
            "TCP connections a syslog source has open.",
            &[("component_id", &cx.key.id)],
        );
        let mut shutdown = cx.shutdown.clone();
        let mut connections = JoinSet::new();
        loop {
            open.set(connections.len() as f64);
            tokio::select! {
                _ = shutdown.wait() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if connections.len() >= self.max_connections {
                            refused.inc();
                            if refused.get().is_power_of_two() {
                                tracing::warn!(
                                    component = %cx.key.id,
                                    "closed the connection from {peer}: {} connections are open, \
                                     max_connections (such refusals so far: {})",
                                    connections.len(),
                                    refused.get()
                                );
                            }
                            drop(stream);
                            continue;
                        }
                        connections.spawn(accept(stream, self.tls.clone(), Connection {
                            peer,
                            receiver: self.receiver.clone(),
                            out: cx.out.clone(),
                            shutdown: cx.shutdown.clone(),
                            idle_timeout: self.idle_timeout,
                            id: cx.key.id.clone(),
                            #[cfg(feature = "tls")]
                            identity: self.identity.clone(),
                            #[cfg(feature = "tls")]
                            bound: None,
                        }));
                    }
                    Err(e) => {
                        // Out of file descriptors, most likely: pause rather
                        // than spin.
                        tracing::warn!(component = %cx.key.id, "accepting a connection failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                },
            }
        }
        // Connections see the shutdown too and end after their last frame.
        while connections.join_next().await.is_some() {}
        open.set(0.0);
        Ok(())
    }
}

/// A datagram's message: at most `max` bytes, flagged when it was longer.
fn datagram_frame(buf: &[u8], n: usize, max: usize) -> framing::Frame<'_> {
    framing::Frame {
        bytes: &buf[..n.min(max)],
        truncated: n > max,
    }
}

struct Connection {
    peer: SocketAddr,
    receiver: Arc<Receiver>,
    out: Output,
    shutdown: Shutdown,
    idle_timeout: std::time::Duration,
    id: String,
    /// The `identity` table, and who the peer's certificate names.
    #[cfg(feature = "tls")]
    identity: Option<Arc<crate::tls::identity::Binding>>,
    #[cfg(feature = "tls")]
    bound: Option<crate::tls::identity::Bound>,
}

/// Reads a connection, after its TLS handshake when the listener has TLS
/// (a failed one is counted and logged by the listener, and ends here).
/// With `identity`, a peer whose certificate names no device, in another
/// trust domain or revoked is counted under that code, logged and
/// disconnected.
async fn accept(stream: TcpStream, tls: Option<http_util::Tls>, mut c: Connection) {
    match tls {
        None => connection(stream, c).await,
        #[cfg(feature = "tls")]
        Some(tls) => {
            let mut stop = c.shutdown.clone();
            let accepted = tokio::select! {
                _ = stop.wait() => None,
                a = tls.accept(stream, c.peer) => a,
            };
            let Some((stream, identity)) = accepted else {
                return;
            };
            if let Some(binding) = &c.identity {
                match binding.check(identity.as_ref()) {
                    Ok(bound) => c.bound = Some(bound),
                    Err(d) => {
                        let errors = c.receiver.metrics.errors(d.code);
                        errors.inc();
                        if errors.get().is_power_of_two() {
                            tracing::warn!(
                                component = %c.id,
                                "closed the connection from {} ({}): {} (such connections so \
                                 far: {})",
                                c.peer,
                                d.code,
                                d.reason,
                                errors.get()
                            );
                        }
                        return;
                    }
                }
            }
            connection(stream, c).await;
        }
        #[cfg(not(feature = "tls"))]
        Some(never) => match never {},
    }
}

async fn connection<S: AsyncRead + Unpin>(mut stream: S, mut c: Connection) {
    let rx = &c.receiver;
    let mut framer = Framer::new(rx.max_message);
    let mut labels = LabelCache::default();
    loop {
        let read = {
            let mut spare = framer.spare();
            tokio::select! {
                _ = c.shutdown.wait() => Ok(0),
                r = tokio::time::timeout(c.idle_timeout, stream.read_buf(&mut spare)) => match r {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::debug!(
                            component = %c.id,
                            "closing the connection from {}: idle for idle_timeout",
                            c.peer
                        );
                        Ok(0)
                    }
                },
            }
        };
        let eof = match read {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => {
                tracing::debug!(component = %c.id, "the connection from {} failed: {e}", c.peer);
                true
            }
        };
        let received_ns = now_unix_ns();
        let mut batch = Vec::new();
        while let Some(frame) = framer.next_frame(eof) {
            if let Some(r) = rx.record(frame, c.peer, received_ns, &mut labels) {
                batch.push(r);
            }
        }
        #[cfg(feature = "tls")]
        let batch = c.stamp(batch);
        if !rx.send(&mut c.out, batch).await || eof {
            return;
        }
    }
}

#[cfg(feature = "tls")]
impl Connection {
    /// Gives the records the peer's identity. A batch with a record that
    /// names another device is dropped (`policy = "reject"`), counted under
    /// `identity_mismatch` as received and discarded, and logged.
    fn stamp(&self, batch: Vec<LogRecord>) -> Vec<LogRecord> {
        let (Some(binding), Some(who)) = (&self.identity, &self.bound) else {
            return batch;
        };
        let mut events = Events::Logs(batch);
        if let Err(d) = binding.stamp(who, &mut events) {
            let rx = &self.receiver;
            let n = events.len();
            rx.metrics.received(n);
            rx.metrics.discarded(d.code, n);
            let errors = rx.metrics.errors(d.code);
            errors.inc();
            if errors.get().is_power_of_two() {
                tracing::warn!(
                    component = %self.id,
                    "dropped {n} record(s) from {} ({}): {} (such batches so far: {})",
                    self.peer,
                    d.code,
                    d.reason,
                    errors.get()
                );
            }
            return Vec::new();
        }
        match events {
            Events::Logs(batch) => batch,
            _ => Vec::new(),
        }
    }
}

/// What every socket of the source shares: turns frames into records.
#[derive(Debug)]
struct Receiver {
    max_message: usize,
    labels: Labels,
    timezone: TimeZone,
    parse_errors: Counter,
    truncated: Counter,
    empty: Counter,
    metrics: ComponentMetrics,
}

impl Receiver {
    /// The record of one message; `None` for an empty one (counted).
    fn record(
        &self,
        frame: framing::Frame<'_>,
        peer: SocketAddr,
        received_ns: i64,
        labels: &mut LabelCache,
    ) -> Option<LogRecord> {
        let bytes = trim_end(frame.bytes);
        if bytes.is_empty() {
            self.empty.inc();
            return None;
        }
        let options = syslog::Options {
            received_ns,
            timezone: self.timezone.clone(),
        };
        let mut record = match syslog::parse(bytes, &options) {
            Ok(m) => {
                let mut r = m.into_log_record(received_ns);
                let hostname = take_string(&mut r, "hostname");
                let app_name = take_string(&mut r, "app_name");
                r.labels = labels.get(&self.labels, hostname, app_name);
                r
            }
            Err(e) => {
                self.parse_errors.inc();
                if self.parse_errors.get().is_power_of_two() {
                    tracing::warn!(
                        component = %self.metrics.id(),
                        "a syslog message from {peer} does not parse, kept whole with \
                         parse_error: {e} (such messages so far: {})",
                        self.parse_errors.get()
                    );
                }
                let mut r = LogRecord::new(received_ns, String::from_utf8_lossy(bytes));
                r.labels = self.labels.clone();
                r.fields
                    .insert("parse_error".into(), Value::String(e.to_string()));
                r
            }
        };
        record
            .fields
            .insert("source_ip".into(), Value::String(peer.ip().to_string()));
        if frame.truncated {
            self.truncated.inc();
            if self.truncated.get().is_power_of_two() {
                tracing::warn!(
                    component = %self.metrics.id(),
                    "a syslog message from {peer} is longer than max_message_bytes ({} bytes); \
                     kept its start with truncated = true (such messages so far: {})",
                    self.max_message,
                    self.truncated.get()
                );
            }
            record.fields.insert("truncated".into(), Value::Bool(true));
        }
        Some(record)
    }

    /// Sends a batch; `false` once nobody is downstream.
    async fn send(&self, out: &mut Output, batch: Vec<LogRecord>) -> bool {
        if batch.is_empty() {
            return true;
        }
        self.metrics.received(batch.len());
        out.send(Events::Logs(batch)).await
    }
}

/// Without trailing line ends and NULs, which senders append.
fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b'\n' | b'\r' | 0))
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

fn take_string(r: &mut LogRecord, name: &str) -> Option<String> {
    match r.fields.remove(name) {
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            r.fields.insert(name.into(), other);
            None
        }
        None => None,
    }
}

/// Label sets by (hostname, app_name), so a sender's records share one.
#[derive(Debug, Default)]
struct LabelCache {
    sets: HashMap<(Option<String>, Option<String>), Labels>,
}

impl LabelCache {
    fn get(
        &mut self,
        static_labels: &Labels,
        hostname: Option<String>,
        app_name: Option<String>,
    ) -> Labels {
        if hostname.is_none() && app_name.is_none() {
            return static_labels.clone();
        }
        let key = (hostname, app_name);
        if let Some(l) = self.sets.get(&key) {
            return l.clone();
        }
        if self.sets.len() >= LABEL_CACHE {
            self.sets.clear();
        }
        let mut b = static_labels.to_builder();
        if let Some(h) = &key.0 {
            b.set("hostname", h);
        }
        if let Some(a) = &key.1 {
            b.set("app_name", a);
        }
        let labels = b.build();
        self.sets.insert(key, labels.clone());
        labels
    }
}
