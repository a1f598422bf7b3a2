//! `iotel`: receives native batches from agents (and gateways) over HTTP,
//! the receiving end of the `iotel` sink. The protocol is in
//! `crate::native_protocol`.
//!
//! - A batch is answered 200 only once every sink downstream has it safe
//!   (in its disk buffer, written to its file; see `iotel_engine::Ack`), so
//!   an agent acknowledges nothing the receiver could still lose; a batch a
//!   sink could not store is answered 503 (`not_stored`) and comes again.
//! - Retransmits are dropped by (agent id, sequence) with a window of
//!   received id ranges that survives restarts (`dedup.rs`): answered 409
//!   with the ids of the request received before (`Iotel-Received`, and
//!   `Iotel-Next-Sequence` when they start the request), counted as
//!   discarded, reason `duplicate`. The window is written after the batch
//!   is safe and before the answer, so a receiver killed between the two
//!   takes that batch once more (at-least-once).
//! - One batch per agent at a time: a second request from an agent whose
//!   batch is still being handled is answered 503 with `Retry-After`.
//! - While the node's fullest sink buffer is 95% full, new batches are
//!   answered 503 `buffers_full` with `Retry-After: 5`: the agent keeps
//!   them, rather than this node drop or
//!   block on them.
//! - Bad input is answered with a 4xx and the reason, counted as an error
//!   under a stable code, and logged (the 1st, 2nd, 4th, 8th… of each code):
//!   a body over `max_body_size` (413, before reading it when
//!   `Content-Length` says so), a frame that does not decode (400, code
//!   `bad_frame`; an unknown format version: 400, `unsupported_version`; a
//!   compression this build lacks: 415, `unsupported_compression`), a
//!   body that would decompress past `max_decoded_size` or hold more than
//!   `max_events` (413, `too_large`), a bad `Iotel-Last-Sequence` or
//!   `Iotel-Oldest-Sequence` (400, `bad_sequence`).
//! - With `tls` the listener speaks HTTPS only (`crate::tls::server`); with
//!   `identity` as well, every batch is bound to the device (or gateway)
//!   its client certificate names (`crate::tls::identity`): 403 with
//!   `no_identity`, `wrong_trust_domain`, `revoked` or `identity_mismatch`.

mod dedup;
#[cfg(test)]
mod identity_tests;
#[cfg(test)]
mod tests;

#[cfg(feature = "auth")]
use super::http_receiver::authenticate;
use super::http_receiver::{Refused, check_room, read_body};
use crate::http_util::{self, Body};
use crate::id_ranges::format_ranges;
use crate::native_protocol::{BATCH_PATH, LAST_SEQUENCE, NEXT_SEQUENCE, OLDEST_SEQUENCE, RECEIVED};
use crate::{BuildContext, Problem};
use dedup::{MAX_RANGES, Sequences, Verdict};
use hyper::body::Incoming;
use hyper::{Request, Response};
use iotel_engine::config::ByteSize;
use iotel_engine::{
    ComponentError, ComponentFuture, ComponentMetrics, Counter, Output, Source, SourceContext,
};
use iotel_formats::native::{self, DecodeError, Limits};
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen, e.g. `0.0.0.0:7070`.
    pub address: SocketAddr,
    /// The largest request body, as sent (compressed).
    #[serde(default = "super::http_receiver::default_max_body_size")]
    pub max_body_size: ByteSize,
    /// The largest body once decompressed: the decompression-bomb guard.
    #[serde(default = "super::http_receiver::default_max_decoded_size")]
    pub max_decoded_size: ByteSize,
    /// Events (samples, log records, spans) in one batch at most.
    #[serde(default = "default_max_events")]
    pub max_events: NonZeroUsize,
    /// Agents whose sequences the dedup window remembers.
    #[serde(default = "default_max_agents")]
    pub max_agents: NonZeroUsize,
    /// Bearer tokens and RBAC: every batch needs a token whose tenant it
    /// is for (`crate::auth`).
    #[cfg(feature = "auth")]
    #[serde(default)]
    pub auth: Option<crate::auth::Config>,
    /// HTTPS, with client certificates when it has a `ca_file`.
    #[serde(default)]
    pub tls: Option<Box<crate::tls::ServerTls>>,
    /// Without `tls`, accept unencrypted connections on an address other
    /// than a loopback one (`crate::tls::server::validate_plaintext`).
    #[serde(default)]
    pub plaintext: bool,
    /// Binds batches to the device in the client certificate; needs `tls`
    /// with a `ca_file`.
    #[serde(default)]
    pub identity: Option<Box<crate::tls::identity::IdentityConfig>>,
}

fn default_max_events() -> NonZeroUsize {
    NonZeroUsize::new(1 << 20).unwrap_or(NonZeroUsize::MIN)
}

fn default_max_agents() -> NonZeroUsize {
    NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN)
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = super::http_receiver::validate_sizes(self.max_body_size, self.max_decoded_size);
        p.extend(crate::tls::server::validate_listener(
            self.tls.as_deref(),
            self.identity.as_deref(),
        ));
        p.extend(crate::tls::server::validate_plaintext(
            "address",
            self.address,
            self.tls.is_some(),
            self.plaintext,
        ));
        #[cfg(feature = "auth")]
        p.extend(super::http_receiver::validate_auth(self.auth.as_ref()));
        p
    }

    /// # Errors
    /// With `auth`: a policy or key file that does not load.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
        #[cfg(feature = "auth")]
        let auth = super::http_receiver::build_auth(self.auth.as_ref(), cx)?;
        let tls = match &self.tls {
            None => None,
            Some(t) => Some(t.build("tls", cx, &[b"http/1.1"])?),
        };
        let identity = match &self.identity {
            None => None,
            Some(i) => Some(Arc::new(i.build("identity", cx)?)),
        };
        Ok(Box::new(NativeSource {
            config: self.clone(),
            tls,
            identity,
            #[cfg(feature = "auth")]
            auth,
        }))
    }
}

#[derive(Debug)]
struct NativeSource {
    config: Config,
    tls: Option<crate::tls::server::TlsListener>,
    identity: Option<Arc<crate::tls::identity::Binding>>,
    #[cfg(feature = "auth")]
    auth: Option<Arc<crate::auth::Auth>>,
}

impl Source for NativeSource {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture {
        Box::pin(self.serve(cx))
    }
}

impl NativeSource {
    async fn serve(self, cx: SourceContext) -> Result<(), ComponentError> {
        let id = cx.metrics.id().to_string();
        let dir = cx.data_dir.join("iotel").join(&id);
        let (sequences, loaded) = Sequences::open(&dir, self.config.max_agents.get())
            .map_err(|e| ComponentError::new(format!("the dedup window: {e}")))?;
        if loaded.bad_lines > 0 {
            tracing::warn!(
                component = %id,
                "the dedup window in {} had {} unreadable line(s) (a torn write after a crash); \
                 skipped them — a retransmit of the batches they recorded is taken again",
                dir.display(),
                loaded.bad_lines
            );
        }
        let listener = http_util::bind(self.config.address)
            .await
            .map_err(ComponentError::new)?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(
            component = %id,
            "receiving native batches on {scheme}://{}{BATCH_PATH} ({} agent(s) in the dedup window)",
            self.config.address,
            loaded.agents
        );
        match &self.tls {
            Some(tls) => {
                tokio::spawn(tls.clone().watch(cx.shutdown.clone()));
            }
            None => tracing::warn!(
                component = %id,
                "listening without TLS on {}; set tls = {{ cert_file, key_file, ca_file }} to \
                 encrypt batches and authenticate agents by their certificates",
                self.config.address
            ),
        }
        let limits = Limits {
            max_body_bytes: usize::try_from(self.config.max_decoded_size.bytes())
                .unwrap_or(usize::MAX),
            max_records: self.config.max_events.get(),
        };
        #[cfg(feature = "auth")]
        if let Some(auth) = &self.auth {
            tokio::spawn(auth.clone().keep_keys(cx.shutdown.clone()));
        }
        let receiver = Arc::new(Receiver {
            #[cfg(feature = "auth")]
            auth: self.auth.clone(),
            identity: self.identity.clone(),
            merged_gaps: cx.registry().counter(
                "iotel_dedup_gaps_merged_total",
                "Gaps in an agent's received ids a receiver's dedup window merged into what it \
                 takes as received, to keep 64 ranges per agent; a batch the agent sends later \
                 into such a gap is dropped as a retransmit.",
                &[("component_id", &id)],
            ),
            evictions: cx.registry().counter(
                "iotel_dedup_evictions_total",
                "Agents forgotten by a receiver's dedup window to stay within max_agents; a \
                 retransmit from them would be taken again.",
                &[("component_id", &id)],
            ),
            id,
            out: cx.out.clone(),
            metrics: cx.metrics.clone(),
            sequences: Mutex::new(sequences),
            busy: Mutex::new(HashSet::new()),
            limits,
            max_body: usize::try_from(self.config.max_body_size.bytes()).unwrap_or(usize::MAX),
        });
        http_util::serve_with(listener, cx.shutdown.clone(), self.tls, move |req| {
            let receiver = receiver.clone();
            // In a task of its own: an agent that hangs up (its request
            // timed out) cancels the connection's future, and a batch
            // already handed downstream must still be recorded in the dedup
            // window, or its retransmit would be taken twice.
            let handling = tokio::spawn(async move { receiver.handle(req).await });
            async move {
                handling.await.unwrap_or_else(|e| {
                    tracing::error!("handling a native batch failed: {e}");
                    http_util::response(500, "text/plain; charset=utf-8", "internal error\n")
                })
            }
        })
        .await;
        Ok(())
    }
}

struct Receiver {
    #[cfg(feature = "auth")]
    auth: Option<Arc<crate::auth::Auth>>,
    identity: Option<Arc<crate::tls::identity::Binding>>,
    id: String,
    out: Output,
    metrics: ComponentMetrics,
    sequences: Mutex<Sequences>,
    /// Agents with a batch being handled.
    busy: Mutex<HashSet<String>>,
    limits: Limits,
    max_body: usize,
    evictions: Counter,
    merged_gaps: Counter,
}

/// An answer that is not 200: status, error code, reason for the peer.
struct Refusal {
    status: u16,
    code: &'static str,
    reason: String,
    next_sequence: Option<u64>,
    /// `Iotel-Received`, as written.
    received: Option<String>,
    /// `WWW-Authenticate`, on a 401.
    www_authenticate: Option<String>,
}

impl Refusal {
    fn new(status: u16, code: &'static str, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            reason: reason.into(),
            next_sequence: None,
            received: None,
            www_authenticate: None,
        }
    }
}

/// Removes an agent from the busy set however its request ends.
struct BusyGuard<'a> {
    busy: &'a Mutex<HashSet<String>>,
    agent: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        lock(self.busy).remove(&self.agent);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Receiver {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        match self.accept(req).await {
            Ok(()) => http_util::response(200, "text/plain; charset=utf-8", ""),
            Err(r) => self.refuse(r),
        }
    }

    fn refuse(&self, r: Refusal) -> Response<Body> {
        let refused = Refused {
            status: r.status,
            code: r.code,
            reason: r.reason,
            www_authenticate: r.www_authenticate,
        };
        // A retransmit is routine: counted, not logged.
        refused.count(&self.metrics, &self.id, "batch", r.status != 409);
        let mut resp = refused.response();
        let headers = resp.headers_mut();
        if let Some(next) = r.next_sequence {
            headers.insert(NEXT_SEQUENCE, http::HeaderValue::from(next));
        }
        if let Some(v) = r
            .received
            .and_then(|r| http::HeaderValue::from_str(&r).ok())
        {
            headers.insert(RECEIVED, v);
        }
        resp
    }

    async fn accept(&self, req: Request<Incoming>) -> Result<(), Refusal> {
        if req.uri().path() != BATCH_PATH {
            return Err(Refusal::new(
                404,
                "not_found",
                format!("no such path; batches go to POST {BATCH_PATH}"),
            ));
        }
        if req.method() != http::Method::POST {
            return Err(Refusal::new(
                405,
                "method_not_allowed",
                format!("expected POST {BATCH_PATH}, got {}", req.method()),
            ));
        }
        // The certificate's identity is checked before anything else.
        let bound = match &self.identity {
            None => None,
            Some(b) => Some(
                b.check(req.extensions().get::<http_util::PeerIdentity>())
                    .map_err(|d| Refusal::new(403, d.code, d.reason))?,
            ),
        };
        #[cfg(feature = "auth")]
        let principal = match &self.auth {
            None => None,
            Some(auth) => Some((auth, authenticate(auth, &req).await?)),
        };
        let sequence_header = |name: &str| match req.headers().get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map(Some)
                .ok_or_else(|| {
                    Refusal::new(
                        400,
                        "bad_sequence",
                        format!("{name}: expected an unsigned integer, got {v:?}"),
                    )
                }),
        };
        #[cfg(feature = "auth")]
        let peer = http_util::peer_of(&req);
        #[cfg(feature = "auth")]
        let header_text = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        #[cfg(feature = "auth")]
        let (signature, hops) = (
            header_text(crate::auth::signing::SIGNATURE),
            header_text(crate::auth::signing::HOPS).unwrap_or_default(),
        );
        let last = sequence_header(LAST_SEQUENCE)?;
        let oldest = sequence_header(OLDEST_SEQUENCE)?;
        let body = read_body(req, self.max_body).await?;
        // A forged or changed batch is refused before anything decodes it.
        #[cfg(feature = "auth")]
        if let Some((auth, who)) = &principal
            && auth.require_batch_signatures
        {
            auth.verify_batch(who, signature.as_deref(), &hops, &body, &peer)
                .map_err(|d| Refusal::new(403, d.code, d.reason))?;
        }
        let mut batch = native::decode(&body, &self.limits).map_err(decode_refusal)?;
        let header = batch.header;
        let n = batch.events.len();
        if header.agent_id.is_empty() {
            return Err(Refusal::new(
                400,
                "bad_frame",
                "the frame names no agent: expected an agent id",
            ));
        }
        #[cfg(feature = "auth")]
        if let Some((auth, who)) = &principal {
            auth.check_agent(who, &header.agent_id, &peer)
                .map_err(|d| Refusal::new(403, d.code, d.reason))?;
            auth.authorize_write(who, &mut batch.events, &peer)
                .map_err(|d| Refusal::new(403, d.code, d.reason))?;
        }
        if let (Some(b), Some(who)) = (&self.identity, &bound) {
            b.stamp(who, &mut batch.events)
                .map_err(|d| Refusal::new(403, d.code, d.reason))?;
        }
        let first = header.sequence;
        let last = last.unwrap_or(first);
        if last < first {
            return Err(Refusal::new(
                400,
                "bad_sequence",
                format!("{LAST_SEQUENCE} {last} is below the frame's sequence {first}"),
            ));
        }
        if !lock(&self.busy).insert(header.agent_id.clone()) {
            return Err(Refusal::new(
                503,
                "agent_busy",
                format!(
                    "a batch from agent {:?} is still being handled; send again later",
                    header.agent_id
                ),
            ));
        }
        let _busy = BusyGuard {
            busy: &self.busy,
            agent: header.agent_id.clone(),
        };
        // Turned away as busy or for want of room, the batch comes again:
        // received only now.
        check_room(self.metrics.registry())?;
        self.metrics.received(n);
        let verdict = lock(&self.sequences).check(&header.agent_id, first, last);
        if let Verdict::Seen { received, whole } = &verdict {
            self.metrics.discarded("duplicate", n);
            let next = verdict.next_sequence(first);
            let ranges = format_ranges(received);
            let agent = &header.agent_id;
            let (code, reason) = match (whole, next) {
                (true, _) | (false, Some(_)) => {
                    let (code, what) = if *whole {
                        ("duplicate", "all of it")
                    } else {
                        ("sequence_overlap", "part of it")
                    };
                    let next = next.unwrap_or(first);
                    (
                        code,
                        format!(
                            "agent {agent:?}: sequences {first}..={last} were partly or wholly \
                             received before ({what}); the next wanted is {next}"
                        ),
                    )
                }
                (false, None) => (
                    "sequence_overlap",
                    format!(
                        "agent {agent:?}: of sequences {first}..={last}, {ranges} were received \
                         before; send the rest without them"
                    ),
                ),
            };
            return Err(Refusal {
                status: 409,
                code,
                reason,
                next_sequence: next,
                received: Some(ranges),
                www_authenticate: None,
            });
        }
        let mut out = self.out.clone();
        let (open, acked) = out.send_acked(batch.events).await;
        if !open {
            return Err(Refusal::new(
                503,
                "no_consumer",
                "the receiver is shutting down",
            ));
        }
        if !acked.wait().await {
            // Dropped downstream (counted there): the agent keeps it and
            // sends it again.
            return Err(Refusal::new(
                503,
                "not_stored",
                "the batch could not be stored downstream; send it again",
            ));
        }
        let mut sequences = lock(&self.sequences);
        let evicted = sequences.evicted;
        let committed = sequences.commit(&header.agent_id, first, last, oldest);
        self.evictions.add(sequences.evicted - evicted);
        drop(sequences);
        match committed {
            Ok(c) if c.merged_gaps > 0 => {
                self.merged_gaps.add(c.merged_gaps);
                if self.merged_gaps.get().is_power_of_two() {
                    tracing::warn!(
                        component = %self.id,
                        "agent {:?} left more than {MAX_RANGES} gaps in the ids it delivered; the \
                         lowest is now taken as received, and a batch it sends later into it is \
                         dropped as a retransmit (gaps merged so far: {})",
                        header.agent_id,
                        self.merged_gaps.get()
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                // The batch is safe; only its dedup record is not: a
                // retransmit of it would be taken again.
                self.metrics.error("dedup_write_failed");
                tracing::warn!(component = %self.id, "recording a delivered batch failed: {e}");
            }
        }
        Ok(())
    }
}

impl From<Refused> for Refusal {
    fn from(r: Refused) -> Self {
        let mut refusal = Refusal::new(r.status, r.code, r.reason);
        refusal.www_authenticate = r.www_authenticate;
        refusal
    }
}

fn decode_refusal(e: DecodeError) -> Refusal {
    match e {
        DecodeError::BodyTooLarge { .. }
        | DecodeError::TooManyRecords { .. }
        | DecodeError::DecompressedTooLarge { .. } => Refusal::new(413, "too_large", e.to_string()),
        DecodeError::CompressionNotBuiltIn { .. } => {
            Refusal::new(415, "unsupported_compression", e.to_string())
        }
        DecodeError::UnsupportedVersion { .. } => {
            Refusal::new(400, "unsupported_version", e.to_string())
        }
        e => Refusal::new(400, "bad_frame", format!("not a valid native batch: {e}")),
    }
}
