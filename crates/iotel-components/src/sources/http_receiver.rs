//! What the HTTP receivers share (`iotel`, `prometheus_remote_write`,
//! `loki`, and `otlp` for bodies): the refusal a request gets, reading a
//! body within its limits and inflating gzip within `max_decoded_size`,
//! bearer-token authentication, and — for the push receivers
//! (`PushConfig`, `Push`) — one path, the device identity of a client
//! certificate (`identity`), handing events downstream and answering 204
//! only once every sink has them safe.

use crate::http_util::{self, Body};
use crate::{BuildContext, Problem};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use iotel_engine::config::ByteSize;
use iotel_engine::{ComponentFuture, ComponentMetrics, Output, Source, SourceContext};
use iotel_model::Events;
use serde::Deserialize;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// A request body slower than this is refused: a stalled client must not
/// hold a connection (and the node's shutdown) forever.
pub(crate) const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// An answer that is not success: HTTP status, a stable error code (the
/// `error_code` label of the errors counter), the reason for the peer.
#[derive(Debug)]
pub(crate) struct Refused {
    pub status: u16,
    pub code: &'static str,
    pub reason: String,
    /// `WWW-Authenticate`, on a 401.
    pub www_authenticate: Option<String>,
}

impl Refused {
    pub(crate) fn new(status: u16, code: &'static str, reason: impl Into<String>) -> Self {
        Refused {
            status,
            code,
            reason: reason.into(),
            www_authenticate: None,
        }
    }

    /// Counts the refusal under its code and, when `log`, logs the 1st,
    /// 2nd, 4th, 8th… of the code; `what` was refused ("batch").
    pub(crate) fn count(&self, metrics: &ComponentMetrics, component: &str, what: &str, log: bool) {
        let errors = metrics.errors(self.code);
        errors.inc();
        if log && errors.get().is_power_of_two() {
            tracing::warn!(
                component = %component,
                "refused a {what} with HTTP {} ({}): {} (such refusals so far: {})",
                self.status,
                self.code,
                self.reason,
                errors.get()
            );
        }
    }

    /// Over `max_decoded_size` by the length a snappy header states.
    pub(crate) fn decoded_too_large(size: usize, limit: usize) -> Self {
        Refused::new(
            413,
            "decoded_too_large",
            format!(
                "the body would decompress to {size} bytes, over max_decoded_size ({limit} bytes)"
            ),
        )
    }

    /// The plain-text response: `Retry-After` on a 503, `Connection: close`
    /// on a 413 (the body may be left unread), `WWW-Authenticate` on a 401
    /// and on a 403 by the token's grants.
    pub(crate) fn response(&self) -> Response<Body> {
        let mut resp = http_util::response(
            self.status,
            "text/plain; charset=utf-8",
            self.reason.clone(),
        );
        let headers = resp.headers_mut();
        if let Some(v) = self
            .www_authenticate
            .as_deref()
            .and_then(|v| http::HeaderValue::from_str(v).ok())
        {
            headers.insert(http::header::WWW_AUTHENTICATE, v);
        }
        match self.status {
            503 => {
                let after = if self.code == BUFFERS_FULL { 5 } else { 1 };
                headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(after));
            }
            413 => {
                headers.insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            _ => {}
        }
        resp
    }
}

/// The refusal code while the node's buffers are full.
pub(crate) const BUFFERS_FULL: &str = "buffers_full";

/// At or above this fill of the node's fullest sink buffer, receivers turn
/// new data away (503, `Retry-After: 5`) rather than take what a sink
/// would have to drop or hold back: the sender keeps it in its own buffer.
pub(crate) const FULL_AT: f64 = 0.95;

/// 503 `buffers_full` while the node's fullest sink buffer is at least
/// [`FULL_AT`] full.
pub(crate) fn check_room(registry: &iotel_engine::Registry) -> Result<(), Refused> {
    let fill = registry.backlog().fullest();
    if fill >= FULL_AT {
        return Err(Refused::new(
            503,
            BUFFERS_FULL,
            format!(
                "this node's buffers are full (the fullest at {:.0}%); send again later",
                fill * 100.0
            ),
        ));
    }
    Ok(())
}

/// `max_body_size` and `max_decoded_size` checks every receiver makes.
pub(crate) fn validate_sizes(max_body_size: ByteSize, max_decoded_size: ByteSize) -> Vec<Problem> {
    let mut p = Vec::new();
    for (key, size) in [
        ("max_body_size", max_body_size),
        ("max_decoded_size", max_decoded_size),
    ] {
        if size.bytes() < 1024 {
            p.push(Problem::new(
                key,
                format!("expected at least 1KiB, got {size}"),
            ));
        }
        if usize::try_from(size.bytes()).is_err() {
            p.push(Problem::new(key, format!("{size} is too large here")));
        }
    }
    p
}

/// A size from config as `usize` (validated to fit).
pub(crate) fn usize_of(size: ByteSize) -> usize {
    usize::try_from(size.bytes()).unwrap_or(usize::MAX)
}

/// The config of a push receiver (`prometheus_remote_write`, `loki`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// Where to listen, e.g. `0.0.0.0:9201`.
    pub address: SocketAddr,
    /// The path requests are POSTed to; each type has its default.
    #[serde(default)]
    pub path: Option<String>,
    /// The largest request body, as sent (compressed).
    #[serde(default = "default_max_body_size")]
    pub max_body_size: ByteSize,
    /// The largest body once decompressed: the decompression-bomb guard.
    #[serde(default = "default_max_decoded_size")]
    pub max_decoded_size: ByteSize,
    /// Bearer tokens and RBAC: every request needs a token whose tenant it
    /// is for (`crate::auth`).
    #[cfg(feature = "auth")]
    #[serde(default)]
    pub auth: Option<crate::auth::Config>,
    /// HTTPS on the listener, with client certificates when it has a
    /// `ca_file` (`crate::tls::server`).
    #[serde(default)]
    pub tls: Option<Box<crate::tls::ServerTls>>,
    /// Binds every request to the device in the client certificate
    /// (`crate::tls::identity`); needs `tls` with a `ca_file`.
    #[serde(default)]
    pub identity: Option<Box<crate::tls::identity::IdentityConfig>>,
    /// Without `tls`, accept unencrypted connections on an address other
    /// than a loopback one (`crate::tls::server::validate_plaintext`).
    #[serde(default)]
    pub plaintext: bool,
}

/// `max_body_size` of the receivers: 8 MiB.
pub(crate) fn default_max_body_size() -> ByteSize {
    ByteSize(8 << 20)
}

/// `max_decoded_size` of the receivers: 32 MiB.
pub(crate) fn default_max_decoded_size() -> ByteSize {
    ByteSize(32 << 20)
}

/// Handles one request of a push receiver.
pub(crate) type Handler =
    fn(Arc<Push>, Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

impl PushConfig {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = validate_sizes(self.max_body_size, self.max_decoded_size);
        if let Some(path) = &self.path
            && !path.starts_with('/')
        {
            p.push(Problem::new(
                "path",
                format!("expected a path starting with /, got {path:?}"),
            ));
        }
        #[cfg(feature = "auth")]
        p.extend(validate_auth_unsigned(self.auth.as_ref()));
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
        p
    }

    /// # Errors
    /// With `auth`: a policy or key file that does not load; with `tls` or
    /// `identity`: a file that does not load.
    pub(crate) fn build(
        &self,
        cx: &BuildContext,
        what: &'static str,
        default_path: &'static str,
        handle: Handler,
    ) -> Result<Box<dyn Source>, Problem> {
        #[cfg(feature = "auth")]
        let auth = build_auth(self.auth.as_ref(), cx)?;
        let tls = self
            .tls
            .as_ref()
            .map(|t| t.build("tls", cx, &[b"http/1.1"]))
            .transpose()?;
        let identity = self
            .identity
            .as_ref()
            .map(|i| i.build("identity", cx).map(Arc::new))
            .transpose()?;
        Ok(Box::new(PushSource {
            config: self.clone(),
            tls,
            identity,
            what,
            path: self.path.clone().unwrap_or_else(|| default_path.into()),
            handle,
            #[cfg(feature = "auth")]
            auth,
        }))
    }
}

struct PushSource {
    config: PushConfig,
    tls: Option<http_util::Tls>,
    identity: Option<Arc<crate::tls::identity::Binding>>,
    what: &'static str,
    path: String,
    handle: Handler,
    #[cfg(feature = "auth")]
    auth: Option<Arc<crate::auth::Auth>>,
}

impl std::fmt::Debug for PushSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushSource")
            .field("config", &self.config)
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl Source for PushSource {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture {
        let push = Arc::new(Push {
            id: cx.metrics.id().to_string(),
            what: self.what,
            path: self.path,
            out: cx.out.clone(),
            metrics: cx.metrics.clone(),
            max_body: usize_of(self.config.max_body_size),
            max_decoded: usize_of(self.config.max_decoded_size),
            identity: self.identity,
            #[cfg(feature = "auth")]
            auth: self.auth,
        });
        Box::pin(serve(
            self.config.address,
            push,
            cx.shutdown,
            self.tls,
            self.handle,
        ))
    }
}

/// Reads a request body of at most `max_body` bytes: refused before reading
/// when `Content-Length` says it is larger (413, `too_large`), while reading
/// once it grows past (413), when it does not arrive within
/// [`BODY_READ_TIMEOUT`] (408, `body_timeout`) or breaks off (400,
/// `bad_body`).
///
/// # Errors
/// The refusal.
pub(crate) async fn read_body(req: Request<Incoming>, max_body: usize) -> Result<Bytes, Refused> {
    let too_large = |size: String| {
        Refused::new(
            413,
            "too_large",
            format!("the body is {size}, over max_body_size ({max_body} bytes)"),
        )
    };
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > max_body as u64) {
        return Err(too_large(format!("{n} bytes")));
    }
    let reading = http_body_util::Limited::new(req.into_body(), max_body).collect();
    Ok(tokio::time::timeout(BODY_READ_TIMEOUT, reading)
        .await
        .map_err(|_| {
            Refused::new(
                408,
                "body_timeout",
                format!("the body did not arrive within {BODY_READ_TIMEOUT:?}"),
            )
        })?
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large("larger".into())
            } else {
                Refused::new(400, "bad_body", format!("reading the body failed: {e}"))
            }
        })?
        .to_bytes())
}

/// Inflates at most `max` bytes: a gzip bomb is cut off there.
///
/// # Errors
/// Not gzip (400, `bad_gzip`), or more than `max` bytes once inflated
/// (413, `decoded_too_large`).
#[cfg(any(feature = "logs", feature = "otlp"))]
pub(crate) fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, Refused> {
    use std::io::Read;
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::GzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| {
            Refused::new(
                400,
                "bad_gzip",
                format!("Content-Encoding gzip, but the body does not inflate: {e}"),
            )
        })?;
    if out.len() > max {
        return Err(Refused::new(
            413,
            "decoded_too_large",
            format!("the body inflates past max_decoded_size ({max} bytes)"),
        ));
    }
    Ok(out)
}

/// The problems of a receiver's `auth` table, under `auth.`.
#[cfg(feature = "auth")]
pub(crate) fn validate_auth(auth: Option<&crate::auth::Config>) -> Vec<Problem> {
    auth.map(|a| {
        a.validate()
            .into_iter()
            .map(|x| Problem::new(format!("auth.{}", x.key), x.message))
            .collect()
    })
    .unwrap_or_default()
}

/// [`validate_auth`] for a receiver that takes no signed batches (all but
/// the `iotel` source): `require_batch_signatures` would check nothing.
#[cfg(feature = "auth")]
pub(crate) fn validate_auth_unsigned(auth: Option<&crate::auth::Config>) -> Vec<Problem> {
    let mut p = validate_auth(auth);
    if auth.is_some_and(|a| a.require_batch_signatures) {
        p.push(Problem::new(
            "auth.require_batch_signatures",
            "only the iotel source takes signed batches; remove it here",
        ));
    }
    p
}

/// A receiver's `auth`, built.
///
/// # Errors
/// A policy or key file that does not load, under `auth.`.
#[cfg(feature = "auth")]
pub(crate) fn build_auth(
    auth: Option<&crate::auth::Config>,
    cx: &BuildContext,
) -> Result<Option<Arc<crate::auth::Auth>>, Problem> {
    auth.map(|a| {
        a.build(cx)
            .map(Arc::new)
            .map_err(|x| Problem::new(format!("auth.{}", x.key), x.message))
    })
    .transpose()
}

/// The request's principal, or the refusal (401 with `WWW-Authenticate`,
/// or 503 while no keys are loaded), written to the audit log.
#[cfg(feature = "auth")]
pub(crate) async fn authenticate<B>(
    auth: &crate::auth::Auth,
    req: &Request<B>,
) -> Result<crate::auth::Principal, Refused> {
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    auth.authenticate(header).await.map_err(|e| {
        auth.audit_failure(&e, &http_util::peer_of(req));
        let mut r = Refused::new(e.status(), e.code(), e.to_string());
        if e.status() == 401 {
            r.www_authenticate = Some(e.www_authenticate());
        }
        r
    })
}

/// The essence of a `Content-Type` or `Content-Encoding` header, lowercase
/// (`application/x-protobuf` of `application/x-protobuf; charset=…`);
/// `None` when absent.
pub(crate) fn header_essence<B>(req: &Request<B>, name: http::HeaderName) -> Option<String> {
    req.headers().get(name).map(|v| {
        v.to_str()
            .unwrap_or("?")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
}

/// A push receiver: where its events go, its counters, and its `auth`.
pub(crate) struct Push {
    pub id: String,
    /// What a request is, in log lines: "remote write request".
    pub what: &'static str,
    /// The one path it takes requests on.
    pub path: String,
    pub out: Output,
    pub metrics: ComponentMetrics,
    pub max_body: usize,
    pub max_decoded: usize,
    /// `identity`: requests bound to the client certificate's device.
    pub identity: Option<Arc<crate::tls::identity::Binding>>,
    #[cfg(feature = "auth")]
    pub auth: Option<Arc<crate::auth::Auth>>,
}

/// Who sent a request, once authenticated.
pub(crate) struct Sender {
    /// The device of the client certificate, with `identity`.
    bound: Option<crate::tls::identity::Bound>,
    #[cfg(feature = "auth")]
    who: Option<(Arc<crate::auth::Auth>, crate::auth::Principal)>,
    #[cfg(feature = "auth")]
    peer: String,
}

impl Push {
    /// 404 for another path, 405 for another method than POST; then the
    /// sender: the client certificate's device when `identity` is
    /// configured (403 `no_identity`, `wrong_trust_domain`, `revoked`),
    /// authenticated when `auth` is.
    ///
    /// # Errors
    /// The refusal.
    pub(crate) async fn admit<B>(&self, req: &Request<B>) -> Result<Sender, Refused> {
        if req.uri().path() != self.path {
            return Err(Refused::new(
                404,
                "not_found",
                format!("no such path; {}s go to POST {}", self.what, self.path),
            ));
        }
        if req.method() != http::Method::POST {
            return Err(Refused::new(
                405,
                "method_not_allowed",
                format!("expected POST {}, got {}", self.path, req.method()),
            ));
        }
        let bound = match &self.identity {
            None => None,
            Some(b) => Some(
                b.check(req.extensions().get::<http_util::PeerIdentity>())
                    .map_err(|d| Refused::new(403, d.code, d.reason))?,
            ),
        };
        #[cfg(feature = "auth")]
        let who = match &self.auth {
            None => None,
            Some(auth) => Some((auth.clone(), authenticate(auth, req).await?)),
        };
        Ok(Sender {
            bound,
            #[cfg(feature = "auth")]
            who,
            #[cfg(feature = "auth")]
            peer: http_util::peer_of(req),
        })
    }

    /// Checks the events against the sender's token (with `auth`: records
    /// naming no tenant are given the token's) and binds them to its
    /// certificate's device (with `identity`), hands them downstream and
    /// waits until every sink has them safe.
    ///
    /// # Errors
    /// 403 for a write the token does not allow (`cross_tenant`,
    /// `not_granted`, audited) or a record naming another device than the
    /// certificate's (`identity_mismatch`); 503 when a sink could not
    /// store them (`not_stored`) or the node is stopping (`no_consumer`).
    pub(crate) async fn deliver(&self, sender: Sender, mut events: Events) -> Result<(), Refused> {
        if events.is_empty() {
            return Ok(());
        }
        #[cfg(feature = "auth")]
        if let Some((auth, who)) = &sender.who {
            auth.authorize_write(who, &mut events, &sender.peer)
                .map_err(|d| Refused {
                    www_authenticate: Some(d.www_authenticate()),
                    ..Refused::new(403, d.code, d.reason)
                })?;
        }
        if let (Some(binding), Some(who)) = (&self.identity, &sender.bound) {
            binding
                .stamp(who, &mut events)
                .map_err(|d| Refused::new(403, d.code, d.reason))?;
        }
        check_room(self.metrics.registry())?;
        self.metrics.received(events.len());
        let mut out = self.out.clone();
        let (open, acked) = out.send_acked(events).await;
        if !open {
            return Err(Refused::new(
                503,
                "no_consumer",
                "the receiver is shutting down; send again later",
            ));
        }
        if !acked.wait().await {
            // Dropped downstream (counted there): the sender retries.
            return Err(Refused::new(
                503,
                "not_stored",
                "the events could not be stored downstream; send them again",
            ));
        }
        Ok(())
    }

    /// 204 for success; else the refusal, counted under its code and logged
    /// (the 1st, 2nd, 4th, 8th… of each code).
    pub(crate) fn answer(&self, result: Result<(), Refused>) -> Response<Body> {
        match result {
            Ok(()) => http_util::response(204, "text/plain; charset=utf-8", ""),
            Err(r) => {
                r.count(&self.metrics, &self.id, self.what, true);
                r.response()
            }
        }
    }
}

/// Serves `handle` for a push receiver on `address` until shutdown; each
/// request in a task of its own, so a client that hangs up does not cancel
/// a request whose events are already downstream.
///
/// # Errors
/// The address cannot be bound.
async fn serve(
    address: SocketAddr,
    push: Arc<Push>,
    shutdown: iotel_engine::Shutdown,
    tls: Option<http_util::Tls>,
    handle: Handler,
) -> Result<(), iotel_engine::ComponentError> {
    let listener = http_util::bind(address)
        .await
        .map_err(iotel_engine::ComponentError::new)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        component = %push.id,
        "receiving {}s on {scheme}://{address}{}",
        push.what,
        push.path
    );
    match &tls {
        Some(tls) => {
            tokio::spawn(tls.clone().watch(shutdown.clone()));
        }
        None => tracing::warn!(
            component = %push.id,
            "listening without TLS on {address}; set tls = {{ cert_file, key_file }} to encrypt \
             pushes (and ca_file to require client certificates)"
        ),
    }
    #[cfg(feature = "auth")]
    if let Some(auth) = &push.auth {
        tokio::spawn(auth.clone().keep_keys(shutdown.clone()));
    }
    http_util::serve_with(listener, shutdown, tls, move |req| {
        let push = push.clone();
        let what = push.what;
        let handling = tokio::spawn(handle(push, req));
        async move {
            handling.await.unwrap_or_else(|e| {
                tracing::error!("handling a {what} failed: {e}");
                http_util::response(500, "text/plain; charset=utf-8", "internal error\n")
            })
        }
    })
    .await;
    Ok(())
}

/// Runs a push receiver in-process and talks HTTP to it, for its tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod testing {
    use super::PushConfig;
    use crate::http_util;
    use crate::{BuildContext, Problem};
    use http_body_util::BodyExt;
    use iotel_engine::shutdown::{self, ShutdownTrigger};
    use iotel_engine::{
        ComponentError, ComponentKey, ComponentMetrics, Output, Source, SourceContext, TestReceiver,
    };
    use std::net::SocketAddr;
    use std::time::Duration;

    pub(crate) struct Running {
        pub addr: SocketAddr,
        pub rx: TestReceiver,
        pub metrics: ComponentMetrics,
        trigger: ShutdownTrigger,
        task: tokio::task::JoinHandle<Result<(), ComponentError>>,
    }

    type Build = fn(&PushConfig, &BuildContext) -> Result<Box<dyn Source>, Problem>;

    /// Starts the source `build` makes of `address = <free port>` and
    /// `extra` (more TOML keys), and waits until it listens.
    pub(crate) async fn start(type_name: &str, build: Build, extra: &str) -> Running {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let cfg: PushConfig = toml::from_str(&format!("address = \"{addr}\"\n{extra}")).unwrap();
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
        let (out, rx) = Output::for_test(16);
        let metrics = ComponentMetrics::detached("in", type_name);
        let (trigger, shutdown) = shutdown::channel();
        let cx = SourceContext {
            key: ComponentKey {
                id: "in".into(),
                type_name: type_name.into(),
            },
            out,
            shutdown,
            metrics: metrics.clone(),
            data_dir: std::env::temp_dir(),
        };
        let mut bcx = BuildContext::for_test("in");
        bcx.metrics = metrics.clone();
        let task = tokio::spawn(build(&cfg, &bcx).unwrap().run(cx));
        let listening = async {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), listening)
            .await
            .expect("the source listens within 10 s");
        Running {
            addr,
            rx,
            metrics,
            trigger,
            task,
        }
    }

    impl Running {
        pub(crate) async fn stop(self) {
            self.trigger.trigger();
            self.task.await.unwrap().unwrap();
        }

        /// Sends a request that must be taken; returns what went downstream.
        pub(crate) async fn accepted(
            &mut self,
            path: &str,
            body: Vec<u8>,
            headers: &[(&str, &str)],
        ) -> iotel_model::Events {
            let (a, events) = tokio::join!(
                send(self.addr, "POST", path, body, headers),
                tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            );
            assert_eq!(a.status, 204, "{}", a.body);
            events.unwrap().unwrap()
        }
    }

    impl Running {
        /// POSTs `body` to `path`; the answer.
        pub(crate) async fn post(
            &self,
            path: &str,
            body: Vec<u8>,
            headers: &[(&str, &str)],
        ) -> Answered {
            send(self.addr, "POST", path, body, headers).await
        }

        /// Sends a request whose events the sink downstream drops without
        /// marking them done (it could not store them); the answer.
        pub(crate) async fn not_stored(
            &mut self,
            path: &str,
            body: Vec<u8>,
            headers: &[(&str, &str)],
        ) -> Answered {
            let dropping = async {
                let batch = tokio::time::timeout(Duration::from_secs(10), self.rx.recv_batch())
                    .await
                    .unwrap()
                    .unwrap();
                drop(batch);
            };
            let (a, ()) = tokio::join!(send(self.addr, "POST", path, body, headers), dropping);
            a
        }
    }

    /// POSTs `body` to `path` of `addr` over TLS as the client `config`
    /// says (its client certificate); the answer.
    pub(crate) async fn send_tls(
        addr: SocketAddr,
        config: std::sync::Arc<rustls::ClientConfig>,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Answered {
        let (mut sender, _) = crate::tls::test_pki::connect(addr, config).await.unwrap();
        let mut r = http::Request::post(path).header(http::header::HOST, "localhost");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let resp = sender
            .send_request(r.body(http_util::Body::new(body.into())).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answered {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub(crate) struct Answered {
        pub status: u16,
        pub headers: http::HeaderMap,
        pub body: String,
    }

    pub(crate) async fn send(
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Answered {
        let mut r = http::Request::new(http_util::Body::new(body.into()));
        *r.method_mut() = method.parse().unwrap();
        *r.uri_mut() = format!("http://{addr}{path}").parse().unwrap();
        for (k, v) in headers {
            r.headers_mut().insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let resp = http_util::client().request(r).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answered {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}
