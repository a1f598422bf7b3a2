//! OTLP/gRPC: the collector services `TraceService`, `MetricsService` and
//! `LogsService` (`opentelemetry-proto`'s generated tonic servers), gzip
//! accepted. Refusals map to gRPC codes as the OTLP spec says:
//! INVALID_ARGUMENT and RESOURCE_EXHAUSTED without retry info (not
//! retried), UNAVAILABLE (retried).
//!
//! tonic reads and decodes a message before our services see it, and
//! answers what it cannot take itself: OUT_OF_RANGE past the size limit
//! (which OTLP exporters would retry forever), INTERNAL for protobuf that
//! does not decode. A layer in front ([`tonic_refusal`]) turns those into
//! the codes above and counts them like every other refusal.
//!
//! Who sends a request is checked before tonic reads its message, by
//! [`Gate`]: the device of the client certificate (`identity`; the
//! certificate comes with the connection, [`GrpcPeer`]) and the bearer
//! token of the `authorization` metadata (`auth`). A request that fails is
//! answered UNAUTHENTICATED (no valid token), PERMISSION_DENIED (the
//! certificate or the token's grants do not allow it) or UNAVAILABLE (no
//! token keys yet), counted and audited as over HTTP.

use super::convert::{Admitted, Failure, Ingest, Refusal, Request, Response};
use crate::http_util::PeerIdentity;
use iotel_engine::Shutdown;
use iotel_formats::otlp::proto::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use iotel_formats::otlp::proto::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use iotel_formats::otlp::proto::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use iotel_formats::otlp::proto::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use iotel_formats::otlp::proto::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use iotel_formats::otlp::proto::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::net::SocketAddr;
use std::sync::Arc;
use tonic::codec::CompressionEncoding;

#[derive(Debug, Clone)]
struct Grpc(Arc<Ingest>);

/// What tonic answered on its own, before a service saw the request, as
/// the refusal the OTLP spec asks for; `None` for every other status.
fn tonic_refusal(status: &tonic::Status, max_decoded: usize) -> Option<Refusal> {
    let m = status.message();
    let (failure, code, reason) = match status.code() {
        tonic::Code::OutOfRange if m.starts_with("Error, decoded message length too large") => (
            Failure::TooLarge,
            "too_large",
            format!("the message is larger than max_decoded_size ({max_decoded} bytes)"),
        ),
        tonic::Code::ResourceExhausted if m.starts_with("Error decompressing: size limit") => (
            Failure::TooLarge,
            "decoded_too_large",
            format!("the message inflates past max_decoded_size ({max_decoded} bytes)"),
        ),
        tonic::Code::Internal if m.starts_with("Error decompressing") => (
            Failure::BadRequest,
            "bad_gzip",
            format!("grpc-encoding gzip, but the message does not inflate: {m}"),
        ),
        tonic::Code::Internal if m.starts_with("failed to decode Protobuf message") => (
            Failure::BadRequest,
            "bad_payload",
            format!("not a valid OTLP protobuf message: {m}"),
        ),
        tonic::Code::Internal
            if m.starts_with("protocol error") || m.starts_with("Unexpected EOF") =>
        {
            (
                Failure::BadRequest,
                "bad_frame",
                format!("not a valid gRPC message: {m}"),
            )
        }
        _ => return None,
    };
    Some(Refusal::new(failure, code, reason))
}

/// `response`, or — when it is a status tonic gave on its own — the
/// refusal it stands for, counted.
fn rewrite(
    ingest: &Ingest,
    max_decoded: usize,
    response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    match response
        .extensions()
        .get::<tonic::Status>()
        .and_then(|s| tonic_refusal(s, max_decoded))
    {
        Some(r) => status(ingest, &r).into_http(),
        None => response,
    }
}

fn status(ingest: &Ingest, r: &Refusal) -> tonic::Status {
    ingest.count_refusal(r, "gRPC");
    let code = match r.grpc_code() {
        3 => tonic::Code::InvalidArgument,
        8 => tonic::Code::ResourceExhausted,
        5 => tonic::Code::NotFound,
        7 => tonic::Code::PermissionDenied,
        12 => tonic::Code::Unimplemented,
        16 => tonic::Code::Unauthenticated,
        _ => tonic::Code::Unavailable,
    };
    tonic::Status::new(code, r.reason.clone())
}

impl Grpc {
    async fn export<T>(
        &self,
        request: tonic::Request<T>,
        wrap: fn(T) -> Request,
    ) -> Result<Response, tonic::Status> {
        // Put there by the gate; without it, `ingest` refuses whatever
        // `auth` or `identity` ask for.
        let admitted = request
            .extensions()
            .get::<Admitted>()
            .cloned()
            .unwrap_or_default();
        self.0
            .ingest(wrap(request.into_inner()), &admitted)
            .await
            .map_err(|r| status(&self.0, &r))
    }
}

/// Where a gRPC connection comes from: its address and, over mutual TLS,
/// the client certificate's identity. tonic puts it in the extensions of
/// every request on the connection.
#[derive(Debug, Clone)]
pub(super) struct GrpcPeer {
    pub addr: std::net::SocketAddr,
    pub identity: Option<PeerIdentity>,
}

/// Admits each request before tonic reads its message: the client
/// certificate's identity and the bearer token checked
/// ([`Ingest::admit`]); a refusal is answered right away, else the request
/// goes on with [`Admitted`] in its extensions.
#[derive(Debug, Clone)]
struct Gate<S> {
    inner: S,
    ingest: Arc<Ingest>,
}

impl<S, B> tower::Service<http::Request<B>> for Gate<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let ingest = self.ingest.clone();
        Box::pin(async move {
            let (peer, certificate) = match req.extensions().get::<GrpcPeer>() {
                Some(p) => (p.addr.to_string(), p.identity.clone()),
                None => (
                    req.extensions()
                        .get::<tonic::transport::server::TcpConnectInfo>()
                        .and_then(tonic::transport::server::TcpConnectInfo::remote_addr)
                        .map_or_else(|| "-".to_string(), |a| a.to_string()),
                    None,
                ),
            };
            let authorization = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match ingest
                .admit(authorization, certificate.as_ref(), peer)
                .await
            {
                Ok(admitted) => {
                    req.extensions_mut().insert(admitted);
                    inner.call(req).await
                }
                Err(r) => Ok(status(&ingest, &r).into_http()),
            }
        })
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        match Grpc::export(self, request, Request::Traces).await? {
            Response::Traces(r) => Ok(tonic::Response::new(r)),
            _ => Err(tonic::Status::internal("a response of another signal")),
        }
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        match Grpc::export(self, request, Request::Metrics).await? {
            Response::Metrics(r) => Ok(tonic::Response::new(r)),
            _ => Err(tonic::Status::internal("a response of another signal")),
        }
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        match Grpc::export(self, request, Request::Logs).await? {
            Response::Logs(r) => Ok(tonic::Response::new(r)),
            _ => Err(tonic::Status::internal("a response of another signal")),
        }
    }
}

/// Serves the three services on `addr` until `shutdown`. `max_decoded` is
/// the largest message, as sent and once decompressed.
///
/// # Errors
/// The bind or transport error, with the address.
pub(super) async fn serve(
    addr: SocketAddr,
    ingest: Arc<Ingest>,
    max_decoded: usize,
    tls: Option<crate::tls::server::TlsListener>,
    mut shutdown: Shutdown,
) -> Result<(), String> {
    let svc = Grpc(ingest.clone());
    let gate = ingest.clone();
    let router = tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(move |r| {
            rewrite(&ingest, max_decoded, r)
        }))
        .layer(tower::layer::layer_fn(move |inner| Gate {
            inner,
            ingest: gate.clone(),
        }))
        .add_service(
            TraceServiceServer::new(svc.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_decoded),
        )
        .add_service(
            MetricsServiceServer::new(svc.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_decoded),
        )
        .add_service(
            LogsServiceServer::new(svc)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_decoded),
        );
    let stop = shutdown.clone();
    match tls {
        None => router
            .serve_with_shutdown(addr, async move { shutdown.wait().await })
            .await
            .map_err(|e| format!("OTLP/gRPC on {addr}: {e}")),
        Some(tls) => {
            let listener = crate::http_util::bind(addr).await?;
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            tokio::spawn(accept_tls(listener, tls, tx, stop));
            router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                    async move { shutdown.wait().await },
                )
                .await
                .map_err(|e| format!("OTLP/gRPC on {addr}: {e}"))
        }
    }
}

/// Accepts connections and hands those whose handshake succeeds to tonic;
/// each handshake in a task of its own, a failed one counted by the
/// listener.
async fn accept_tls(
    listener: tokio::net::TcpListener,
    tls: crate::tls::server::TlsListener,
    tx: tokio::sync::mpsc::Sender<Result<TlsIo, std::io::Error>>,
    mut shutdown: Shutdown,
) {
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("accepting an OTLP/gRPC connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let (tls, tx) = (tls.clone(), tx.clone());
        tokio::spawn(async move {
            if let Some((s, identity)) = tls.accept(stream, peer).await {
                let peer = GrpcPeer {
                    addr: peer,
                    identity,
                };
                let _ = tx.send(Ok(TlsIo(s, peer))).await;
            }
        });
    }
}

/// A TLS connection as tonic serves it, with its peer.
struct TlsIo(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    GrpcPeer,
);

impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = GrpcPeer;

    fn connect_info(&self) -> GrpcPeer {
        self.1.clone()
    }
}

impl tokio::io::AsyncRead for TlsIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
