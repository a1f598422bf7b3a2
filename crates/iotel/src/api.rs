//! The node API: `/healthz` (alive), `/readyz` (running and not stopping),
//! `/metrics` (the node's own metrics, text 0.0.4 or OpenMetrics by the
//! request's `Accept`). With an `[api]` tls table it speaks HTTPS only
//! (client certificates when the table has a `ca_file`).

use iotel_components::http_util::{Body, Tls, response, serve_with};
use iotel_engine::{Registry, Shutdown};
use iotel_formats::prometheus::encode::{EncodeOptions, encode, negotiate};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;

pub async fn serve(
    listener: TcpListener,
    shutdown: Shutdown,
    tls: Option<Tls>,
    registry: Registry,
    ready: Arc<AtomicBool>,
) {
    serve_with(listener, shutdown, tls, move |req| {
        let registry = registry.clone();
        let ready = ready.clone();
        async move {
            handle(
                req.method(),
                req.uri().path(),
                accept(&req),
                &registry,
                &ready,
            )
        }
    })
    .await;
}

fn accept<B>(req: &hyper::Request<B>) -> Option<String> {
    req.headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn handle(
    method: &http::Method,
    path: &str,
    accept: Option<String>,
    registry: &Registry,
    ready: &AtomicBool,
) -> hyper::Response<Body> {
    if method != http::Method::GET && method != http::Method::HEAD {
        return response(405, "text/plain", "method not allowed\n");
    }
    match path {
        "/healthz" => response(200, "text/plain", "ok\n"),
        "/readyz" if ready.load(Ordering::SeqCst) => response(200, "text/plain", "ready\n"),
        "/readyz" => response(503, "text/plain", "not ready\n"),
        "/metrics" => {
            let format = negotiate(accept.as_deref());
            let mut body = String::new();
            encode(
                &registry.snapshot(),
                format,
                &EncodeOptions::default(),
                &mut body,
            );
            response(200, format.content_type(), body)
        }
        _ => response(
            404,
            "text/plain",
            "not found: try /healthz, /readyz or /metrics\n",
        ),
    }
}
