//! The node API: `/healthz` (alive), `/readyz` (running and not stopping),
//! `/metrics` (the node's own metrics, text 0.0.4 or OpenMetrics by the
//! request's `Accept`), `/api/v1/components` (the graph and each
//! component's counts, JSON) and the status page at `/` (see `status`). With an `[api]` tls table it speaks HTTPS only
//! (client certificates when the table has a `ca_file`).

use crate::status;
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
    node: Arc<status::Node>,
) {
    serve_with(listener, shutdown, tls, move |req| {
        let registry = registry.clone();
        let ready = ready.clone();
        let node = node.clone();
        async move {
            handle(
                req.method(),
                req.uri().path(),
                accept(&req),
                &registry,
                &ready,
                &node,
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
    node: &status::Node,
) -> hyper::Response<Body> {
    if method != http::Method::GET && method != http::Method::HEAD {
        return response(405, "text/plain", "method not allowed\n");
    }
    match path {
        "/" => response(200, "text/html; charset=utf-8", status::PAGE),
        "/api/v1/components" => response(
            200,
            "application/json",
            status::components_json(node, registry),
        ),
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
            "not found: try /, /api/v1/components, /healthz, /readyz or /metrics\n",
        ),
    }
}
