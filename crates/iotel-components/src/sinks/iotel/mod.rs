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
//! - One request is in flight at a time. The frame's sequence is the first
//!   buffer id it covers and the `Iotel-Last-Sequence` header the last;
//!   `Iotel-Oldest-Sequence` is the buffer's oldest id not yet settled. Ids
//!   increase across restarts, so the receiver drops retransmits.
//! - A batch leaves the buffer only when the receiver answered 200, or 409
//!   (it had those ids already: a retransmit after a lost answer, or after a
//!   restart; `Iotel-Received` says which). 429, 5xx, connection errors and
//!   timeouts retry the same request with jittered exponential backoff
//!   (`retry`), honouring `Retry-After`. Other 4xx drop the batch, counted
//!   (`discarded`, reason `rejected`), with a warning quoting the receiver.
//! - Without `drain.max_events_per_second` batches arrive strictly oldest
//!   first. With it, a backlog (after an outage, or at start) drains oldest
//!   first at that rate, so a fleet coming back does not flatten its
//!   gateway, while batches pushed since go ahead of it, unpaced: the live
//!   lane (see `sinks::buffered`, "Backlog mode").
//! - At shutdown the sink keeps sending for at most three
//!   `request_timeout`s (and never past the node's deadline). What is left
//!   stays in a disk buffer for the next start; a memory buffer's leftovers
//!   are counted as discarded, reason `shutdown`.

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_live;

use super::buffer::BufferConfig;
use super::buffered::{self, PeerHas, Protocol, Settings};
use super::http_delivery::{Answer, Exchange, RetryConfig};
use crate::http_util::{self, Body};
use crate::id_ranges::parse_ranges;
use crate::native_protocol::{BATCH_PATH, LAST_SEQUENCE, NEXT_SEQUENCE, OLDEST_SEQUENCE, RECEIVED};
use crate::{BuildContext, Problem};
use bytes::Bytes;
use iotel_engine::config::Duration;
use iotel_engine::{ComponentFuture, Sink, SinkContext};
use iotel_formats::native::{self, Compression};
use iotel_model::Events;
use serde::Deserialize;
use std::num::{NonZeroU64, NonZeroUsize};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The receiver, e.g. `http://gateway:7070`; the path defaults to
    /// `/iotel/v1/batch`.
    pub endpoint: String,
    /// This agent's name on the wire; the receiver dedups per agent. Default:
    /// the host name; `{host}` in it is replaced by the host name. A `/`
    /// suffix names one stream of a node that sends several (a gateway's
    /// `{host}/metrics` and `{host}/logs` sinks): the node's identity, its
    /// signing key id, is the part before the `/`.
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
    /// TLS for an `https://` endpoint: a private CA, a client certificate
    /// (mTLS), the server's name (see `crate::tls`); without it, https
    /// trusts the system's roots.
    #[serde(default)]
    pub tls: Option<Box<crate::tls::ClientTls>>,
    /// A gateway's credentials towards the cloud: a bearer token it signs
    /// itself, and a signature on every batch (`crate::auth::signing`).
    #[cfg(feature = "auth")]
    #[serde(default)]
    pub sign: Option<SignConfig>,
}

/// `sign`: the gateway's own key, token and batch signatures.
#[cfg(feature = "auth")]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignConfig {
    /// The Ed25519 private key (PKCS#8 PEM), e.g. the `.signing.key` of
    /// `iotel certs issue-gateway`; its key id is `agent_id` (the part
    /// before a `/stream` suffix).
    pub key_file: std::path::PathBuf,
    /// The tenant the gateway writes for (the token's `tenant` claim).
    pub tenant: String,
    /// The token's `aud`: the cloud's `auth.audience`.
    pub audience: String,
    /// The token's `iss`: the cloud's `auth.issuer` for gateways.
    #[serde(default = "default_sign_issuer")]
    pub issuer: String,
    /// How long a token is valid; a new one is made at half of it.
    #[serde(default = "default_token_ttl")]
    pub token_ttl: Duration,
}

#[cfg(feature = "auth")]
fn default_sign_issuer() -> String {
    "iotel-gateways".into()
}

#[cfg(feature = "auth")]
fn default_token_ttl() -> Duration {
    Duration::from_secs(300)
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
    /// Events per request, about: batches join a request while it holds
    /// fewer (default 20,000).
    #[serde(default = "default_batch_max_events")]
    pub max_events: NonZeroUsize,
    /// A request goes out once the oldest waiting batch is this old
    /// (default 10s).
    #[serde(default = "default_batch_timeout")]
    pub timeout: Duration,
}

/// `drain`: pacing a backlog.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainConfig {
    /// Events of a backlog sent per second at most, while newer batches go
    /// ahead unpaced (the live lane); unset, everything is sent oldest
    /// first, as fast as the receiver takes it.
    #[serde(default)]
    pub max_events_per_second: Option<NonZeroU64>,
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

// Ten scrapes of 2,000 series. The frame's dictionary and series table are
// a fixed cost per request: one scrape per frame is only ~1.5× smaller than
// remote write, ten are ~4–10× (bench/encoded-size.sh), and the builder
// holds about 220 KB for them.
fn default_batch_max_events() -> NonZeroUsize {
    NonZeroUsize::new(20_000).unwrap_or(NonZeroUsize::MIN)
}

// Metrics from the edge may wait this long to join a larger request; on a
// disk buffer they are safe meanwhile.
fn default_batch_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: default_batch_max_events(),
            timeout: default_batch_timeout(),
        }
    }
}

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
        for (key, d, example) in [
            ("batch.timeout", self.batch.timeout, "10s"),
            ("request_timeout", self.request_timeout, "10s"),
        ] {
            if d.get().is_zero() {
                p.push(Problem::new(
                    key,
                    format!("expected a duration above 0s, such as \"{example}\""),
                ));
            }
        }
        #[cfg(feature = "auth")]
        if let Some(sign) = &self.sign {
            for (key, v) in [
                ("sign.tenant", &sign.tenant),
                ("sign.audience", &sign.audience),
                ("sign.issuer", &sign.issuer),
            ] {
                if v.is_empty() {
                    p.push(Problem::new(key, "must not be empty"));
                }
            }
            if sign.token_ttl.get() < std::time::Duration::from_secs(10) {
                p.push(Problem::new("sign.token_ttl", "expected at least 10s"));
            }
        }
        p.extend(self.retry.validate());
        p.extend(self.buffer.validate("buffer"));
        p.extend(crate::tls::validate_client_table(
            self.tls.as_deref(),
            &self.endpoint,
        ));
        p
    }

    /// # Errors
    /// A bad endpoint, or no host name to use as the agent id.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, Problem> {
        let mut sink = self.sink()?;
        sink.settings.client = http_util::client_for(self.tls.as_deref(), cx)?;
        #[cfg(feature = "auth")]
        if let Some(sign) = &self.sign {
            let signer = crate::auth::signing::Signer::load(
                &cx.resolve(&sign.key_file),
                node_id(&sink.protocol.agent_id),
                &sign.issuer,
                &sign.audience,
                &sign.tenant,
                i64::try_from(sign.token_ttl.get().as_secs()).unwrap_or(i64::MAX),
            )
            .map_err(|e| Problem::new("sign.key_file", e))?;
            sink.protocol.signer = Some(std::sync::Arc::new(signer));
        }
        Ok(Box::new(sink))
    }

    fn sink(&self) -> Result<NativeSink, Problem> {
        let endpoint = endpoint(&self.endpoint).map_err(|e| Problem::new("endpoint", e))?;
        let host = || {
            host_name().ok_or_else(|| {
                Problem::new(
                    "agent_id",
                    "no host name to default to or put in {host} (read from \
                     /proc/sys/kernel/hostname); set agent_id",
                )
            })
        };
        let agent_id = match &self.agent_id {
            Some(id) if id.contains("{host}") => id.replace("{host}", &host()?),
            Some(id) => id.clone(),
            None => host()?,
        };
        Ok(NativeSink {
            settings: Settings {
                peer: endpoint.to_string(),
                unit: "events",
                max_events: self.batch.max_events.get(),
                batch_timeout: self.batch.timeout.get(),
                request_timeout: self.request_timeout.get(),
                retry: self.retry.policy(),
                rate: self.drain.max_events_per_second.map(NonZeroU64::get),
                buffer: self.buffer.clone(),
                client: None,
            },
            protocol: NativeProtocol {
                endpoint,
                agent_id,
                compression: self.compression.get(),
                max_events: self.batch.max_events.get(),
                builder: native::Builder::new(),
                #[cfg(feature = "auth")]
                signer: None,
            },
        })
    }
}

/// The endpoint URL, with the batch path when none is given.
fn endpoint(url: &str) -> Result<http::Uri, String> {
    http_util::parse_http_url_with_default_path(url, BATCH_PATH)
}

/// The node an agent id names: the part before a `/stream` suffix.
#[cfg(feature = "auth")]
pub(crate) fn node_id(agent_id: &str) -> &str {
    agent_id.split('/').next().unwrap_or(agent_id)
}

fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[derive(Debug)]
struct NativeSink {
    settings: Settings,
    protocol: NativeProtocol,
}

impl Sink for NativeSink {
    fn run(self: Box<Self>, cx: SinkContext) -> ComponentFuture {
        let NativeSink { settings, protocol } = *self;
        tracing::info!(
            component = %cx.metrics.id(),
            "sending to {} as agent {:?}",
            settings.peer,
            protocol.agent_id
        );
        Box::pin(buffered::deliver(settings, protocol, cx))
    }
}

/// A request stops taking batches once its frame holds this much before
/// compression, well inside a receiver's default `max_decoded_size` (32 MiB)
/// and, compressed, `max_body_size` (8 MiB): large log records must not make
/// a request the receiver refuses.
const MAX_FRAME_BYTES: usize = 4 << 20;

/// The native protocol's side of the delivery loop.
#[derive(Debug)]
struct NativeProtocol {
    endpoint: http::Uri,
    agent_id: String,
    compression: Compression,
    max_events: usize,
    /// What the next request carries, encoded as it is added: its memory is
    /// about the size of the frame, not of the events.
    builder: native::Builder,
    #[cfg(feature = "auth")]
    signer: Option<std::sync::Arc<crate::auth::signing::Signer>>,
}

impl Protocol for NativeProtocol {
    /// A batch joins while the frame has room left, even if it then goes
    /// past `max_events` by part of itself: a batch that did not fit would
    /// have to be held decoded (a scrape: ~250 KB) while a backlog waits.
    fn fits(&self, events: &Events) -> bool {
        self.builder.signal().is_none_or(|have| {
            have == events.signal()
                && self.builder.records() < self.max_events
                && self.builder.approx_bytes() < MAX_FRAME_BYTES
        })
    }

    fn add(&mut self, events: Events) {
        // `fits` keeps one signal per request.
        let _ = self.builder.push(&events);
    }

    fn encode(&mut self, first: u64, _last: u64) -> Result<Bytes, String> {
        let frame = self
            .builder
            .finish(&self.agent_id, first, self.compression)
            .map(Bytes::from)
            .map_err(|e| e.to_string());
        self.builder.clear();
        frame
    }

    fn clear(&mut self) {
        self.builder.clear();
    }

    fn request(&self, body: Bytes, _first: u64, last: u64, oldest: u64) -> http::Request<Body> {
        #[cfg(feature = "auth")]
        let signed = self.signer.as_ref().map(|signer| {
            let now = jiff::Timestamp::now().as_second();
            let hops = format!("gateway:{}", node_id(&self.agent_id));
            let signature = signer.sign(&body, &hops, now);
            (format!("Bearer {}", signer.token(now)), hops, signature)
        });
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
        h.insert(OLDEST_SEQUENCE, http::HeaderValue::from(oldest));
        #[cfg(feature = "auth")]
        if let Some((bearer, hops, signature)) = signed {
            for (name, value) in [
                (http::header::AUTHORIZATION, bearer),
                (
                    http::HeaderName::from_static(crate::auth::signing::HOPS),
                    hops,
                ),
                (
                    http::HeaderName::from_static(crate::auth::signing::SIGNATURE),
                    signature,
                ),
            ] {
                if let Ok(v) = http::HeaderValue::from_str(&value) {
                    h.insert(name, v);
                }
            }
        }
        r
    }

    /// A 409 lists the ids the receiver had (`Iotel-Received`), and names
    /// the first it wants when they start the request
    /// (`Iotel-Next-Sequence`; a receiver that predates `Iotel-Received`
    /// sends only that).
    fn peer_has(&self, exchange: &Exchange) -> Option<PeerHas> {
        if !matches!(exchange.answer, Answer::Status { status: 409, .. }) {
            return None;
        }
        let header = |name: &str| exchange.headers.get(name)?.to_str().ok();
        let next = header(NEXT_SEQUENCE).and_then(|v| v.trim().parse().ok());
        let ranges = header(RECEIVED).and_then(parse_ranges).unwrap_or_default();
        (next.is_some() || !ranges.is_empty()).then_some(PeerHas { next, ranges })
    }

    fn live_lane(&self) -> Option<Self> {
        Some(NativeProtocol {
            endpoint: self.endpoint.clone(),
            agent_id: self.agent_id.clone(),
            compression: self.compression,
            max_events: self.max_events,
            builder: native::Builder::new(),
            #[cfg(feature = "auth")]
            signer: self.signer.clone(),
        })
    }
}
