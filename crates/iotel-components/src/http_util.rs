//! A small HTTP/1 server on hyper, shared by the node API and the exporter.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use iotel_engine::Shutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub type Body = Full<Bytes>;

/// A client that has not sent its request headers by then is disconnected.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A plain response with a status, content type and body.
pub fn response(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// Binds `addr`.
///
/// # Errors
/// The bind error, with the address in its message.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// The address a request came from, in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The peer of a request as text, `-` when unknown.
pub fn peer_of<B>(req: &Request<B>) -> String {
    req.extensions()
        .get::<PeerAddr>()
        .map_or_else(|| "-".to_string(), |p| p.0.to_string())
}

/// The verified client certificate of a TLS connection, in the
/// extensions of each request on it (next to [`PeerAddr`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The first `spiffe://` URI SAN.
    pub spiffe_id: Option<String>,
    /// The subject's first CN.
    pub common_name: Option<String>,
    /// The serial number, lowercase hex as encoded.
    pub serial_hex: String,
}

/// A listener's TLS, for [`serve_with`]; uninhabited without the `tls`
/// feature.
#[cfg(feature = "tls")]
pub type Tls = crate::tls::server::TlsListener;
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone)]
pub enum Tls {}

/// Serves HTTP/1 connections on `listener` with `handler` until `shutdown`;
/// then open connections finish the request they are handling and close.
/// Each request carries its peer's address as a [`PeerAddr`] extension.
///
/// Plain TCP only: no TLS code is reachable from here, so a build whose
/// only servers are plain (the edge agent's API and exporter) does not
/// carry rustls' server side and the certificate parser in its binary.
pub async fn serve<F, Fut>(listener: TcpListener, shutdown: Shutdown, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    accept_loop(
        listener,
        shutdown,
        handler,
        |stream, peer, handler, stop| connection(TokioIo::new(stream), peer, None, handler, stop),
    )
    .await;
}

/// [`serve`], with TLS when `tls` is given: each connection's handshake
/// runs in its own task with a timeout; one that fails closes that
/// connection only (counted and logged by the listener). Requests on a
/// connection with a verified client certificate carry a [`PeerIdentity`].
pub async fn serve_with<F, Fut>(
    listener: TcpListener,
    shutdown: Shutdown,
    tls: Option<Tls>,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    match tls {
        None => serve(listener, shutdown, handler).await,
        #[cfg(feature = "tls")]
        Some(tls) => {
            accept_loop(
                listener,
                shutdown,
                handler,
                move |stream, peer, handler, stop| {
                    let tls = tls.clone();
                    async move {
                        if let Some((stream, identity)) = tls.accept(stream, peer).await {
                            connection(TokioIo::new(stream), peer, identity, handler, stop).await;
                        }
                    }
                },
            )
            .await;
        }
        #[cfg(not(feature = "tls"))]
        Some(never) => match never {},
    }
}

/// Accepts connections until `shutdown` and runs `serve_one` for each in
/// its own task.
async fn accept_loop<F, Fut, S, SFut>(
    listener: TcpListener,
    mut shutdown: Shutdown,
    handler: F,
    serve_one: S,
) where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
    S: Fn(tokio::net::TcpStream, SocketAddr, Arc<F>, Shutdown) -> SFut,
    SFut: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors, most likely: pause rather
                    // than spin the edge agent's only thread.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve_one(stream, peer, handler.clone(), shutdown.clone()));
    }
}

async fn connection<I, F, Fut>(
    io: I,
    peer: SocketAddr,
    identity: Option<PeerIdentity>,
    handler: Arc<F>,
    mut stop: Shutdown,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        if let Some(identity) = &identity {
            req.extensions_mut().insert(identity.clone());
        }
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    // At shutdown a request being handled is finished and answered;
    // an idle keep-alive connection is closed, so nothing holds the
    // handler (and what it holds) past the server.
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.wait() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!("HTTP connection ended with an error: {e}");
    }
}

/// What components dial through: with the `tls` feature, plain TCP for
/// `http://` and TLS for `https://` (`crate::tls::HttpsConnector`).
#[cfg(feature = "tls")]
pub type Connector = crate::tls::HttpsConnector;
/// What components dial through: plain TCP only in builds without TLS.
#[cfg(not(feature = "tls"))]
pub type Connector = hyper_util::client::legacy::connect::HttpConnector;

/// The HTTP client type components use.
pub type Client = hyper_util::client::legacy::Client<Connector, Body>;

/// An HTTP/1 client with a connection pool; `https://` trusts the system's
/// roots (read on the first https connection).
pub fn client() -> Client {
    #[cfg(feature = "tls")]
    let connector = crate::tls::HttpsConnector::new(std::sync::Arc::new(
        crate::tls::ClientTlsSource::system(Vec::new()),
    ));
    #[cfg(not(feature = "tls"))]
    let connector = {
        let mut c = hyper_util::client::legacy::connect::HttpConnector::new();
        c.set_nodelay(true);
        c
    };
    with_connector(connector)
}

fn with_connector(connector: Connector) -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .build(connector)
}

/// The client of a component with a `tls` table (under the key `tls`):
/// its CA, client certificate and server name, reloaded when the files
/// change; `None` without a table (use [`client`]).
///
/// # Errors
/// What is wrong with the table's files, naming the key and the file; in
/// builds without TLS, that there is none.
pub fn client_for(
    tls: Option<&crate::tls::ClientTls>,
    cx: &crate::BuildContext,
) -> Result<Option<Client>, crate::Problem> {
    let Some(tls) = tls else {
        return Ok(None);
    };
    #[cfg(feature = "tls")]
    {
        let source = crate::tls::ClientTlsSource::load(
            tls,
            "tls",
            &cx.config_dir,
            Vec::new(),
            Some(cx.metrics.clone()),
        )?;
        Ok(Some(with_connector(crate::tls::HttpsConnector::new(
            std::sync::Arc::new(source),
        ))))
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = (tls, cx);
        Err(crate::Problem::new("tls", crate::tls::NOT_BUILT_IN))
    }
}

/// Logs a warning when `uri` sends in plaintext to a host other than this
/// one (`localhost` or a loopback address).
pub fn warn_if_plaintext(component: &str, uri: &http::Uri) {
    if uri.scheme_str() != Some("http") {
        return;
    }
    let host = uri.host().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        tracing::warn!(
            component,
            "sending in plaintext to {host}: use an https:// endpoint to encrypt (and a tls \
             table for a private CA or a client certificate)"
        );
    }
}

/// The `User-Agent` iotel sends.
pub const USER_AGENT: &str = concat!("iotel/", env!("CARGO_PKG_VERSION"));

/// Checks a peer URL: `http://host[:port]/path`, or `https://` in builds
/// with TLS, without credentials (they would end up in logs). The message
/// names the URL and what was expected.
///
/// # Errors
/// What is wrong with the URL, for a config error.
pub fn parse_http_url(url: &str) -> Result<http::Uri, String> {
    let bad = || format!("invalid URL \"{url}\": expected http://host[:port]/path");
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") if cfg!(feature = "tls") => {}
        Some("https") => {
            return Err(format!(
                "invalid URL \"{url}\": https needs TLS support, which this build does not have \
                 (the `tls` feature)"
            ));
        }
        _ => return Err(bad()),
    }
    let authority = uri.authority().ok_or_else(bad)?;
    if authority.as_str().contains('@') {
        return Err(
            "invalid URL: credentials in the URL are not supported; set an Authorization header instead".into(),
        );
    }
    if authority.host().is_empty() {
        return Err(bad());
    }
    Ok(uri)
}

/// A peer URL as [`parse_http_url`] checks it, with `default_path` when it
/// has none (`http://loki:3100` → `http://loki:3100/loki/api/v1/push`).
///
/// # Errors
/// What is wrong with the URL, for a config error.
pub fn parse_http_url_with_default_path(
    url: &str,
    default_path: &'static str,
) -> Result<http::Uri, String> {
    let uri = parse_http_url(url)?;
    if uri.path() != "/" {
        return Ok(uri);
    }
    let mut parts = uri.into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static(default_path));
    http::Uri::from_parts(parts).map_err(|e| format!("{url}: {e}"))
}
