//! The connector every HTTP client of iotel dials through: plain TCP for
//! `http://`, TLS over it for `https://`, with the material of the
//! component's [`ClientTlsSource`] as it is when the connection is made.
//! It serves hyper's pooled client (HTTP/1) and tonic's channels (gRPC,
//! HTTP/2 with ALPN `h2`) alike.
//!
//! A few dozen lines around tokio-rustls instead of hyper-rustls: the
//! config is read per connection from the source (which is what makes
//! rotation work without rebuilding clients), and nothing else is pulled
//! in (hyper-rustls would add its own root and provider features to keep
//! off).

use super::ClientTlsSource;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Dials `http://` in plain TCP and `https://` with TLS.
#[derive(Debug, Clone)]
pub struct HttpsConnector {
    http: HttpConnector,
    tls: Arc<ClientTlsSource>,
}

impl HttpsConnector {
    /// A connector with TCP_NODELAY, using `tls` for `https://`.
    pub fn new(tls: Arc<ClientTlsSource>) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        // The scheme is ours to judge: https is dialled here too.
        http.enforce_http(false);
        Self { http, tls }
    }
}

impl tower_service::Service<http::Uri> for HttpsConnector {
    type Response = MaybeTlsStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<MaybeTlsStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let https = uri.scheme_str() == Some("https");
        // An IPv6 literal comes in brackets.
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = self.tls.clone();
        let connecting = self.http.call(uri);
        Box::pin(async move {
            let tcp = connecting.await?;
            if !https {
                return Ok(MaybeTlsStream::Plain(tcp));
            }
            let config = tls.current().map_err(|e| tls_error(&host, e))?;
            // The configured name goes as SNI too, and is the one checked.
            let name = tls.server_name().unwrap_or(&host).to_string();
            let server_name = ServerName::try_from(name.clone())
                .map_err(|e| tls_error(&host, format!("server name {name:?}: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp.into_inner())
                .await
                .map_err(|e| tls_error(&host, e.to_string()))?;
            Ok(MaybeTlsStream::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

fn tls_error(host: &str, e: impl std::fmt::Display) -> BoxError {
    format!("TLS with {host} failed: {e}").into()
}

/// A connection: plain, or TLS over TCP.
#[derive(Debug)]
pub enum MaybeTlsStream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>),
}

impl Connection for MaybeTlsStream {
    fn connected(&self) -> Connected {
        match self {
            MaybeTlsStream::Plain(s) => s.connected(),
            MaybeTlsStream::Tls(s) => {
                let (tcp, tls) = s.inner().get_ref();
                let connected = tcp.connected();
                if tls.alpn_protocol() == Some(b"h2") {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
}

impl hyper::rt::Read for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(s) => s.is_write_vectored(),
            MaybeTlsStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}
