//! A service for the W3C Trace Context test suite (w3c/trace-context, `test/`).
//!
//! ```text
//! cargo run -p iotel-propagation --features http --example tracecontext_service -- 127.0.0.1:5000
//! python test/test.py http://127.0.0.1:5000/test
//! ```
//!
//! The harness POSTs a JSON array of `{"url": ..., "arguments": [...]}` to
//! any path. For each item the service POSTs `arguments` (as JSON) to `url`,
//! carrying a `traceparent` in the incoming trace with a new span id, the
//! incoming flags and `tracestate`; an invalid or missing `traceparent`
//! starts a new trace.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use iotel_propagation::w3c;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One callback the harness asks for.
#[derive(Debug, serde::Deserialize)]
struct Callback {
    url: String,
    #[serde(default)]
    arguments: serde_json::Value,
}

/// Serves the test-suite protocol on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    loop {
        let (stream, _) = listener.accept().await?;
        let client = client.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, client.clone()));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {e}");
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    client: HttpClient,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "POST a JSON array\n"));
    }
    let parent = w3c::extract_or_new(req.headers());
    let body = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                &format!("reading the body: {e}\n"),
            ));
        }
    };
    let callbacks: Vec<Callback> = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                &format!("expected a JSON array of {{\"url\", \"arguments\"}}: {e}\n"),
            ));
        }
    };
    for callback in callbacks {
        // Each outgoing call is its own span under the incoming parent.
        let span = parent.child();
        let mut headers = HeaderMap::new();
        w3c::inject(&span, &mut headers);
        if let Err(e) = call(&client, &callback, headers).await {
            eprintln!("calling {}: {e}", callback.url);
        }
    }
    Ok(reply(StatusCode::OK, "ok\n"))
}

async fn call(
    client: &HttpClient,
    callback: &Callback,
    headers: HeaderMap,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let body = serde_json::to_vec(&callback.arguments)?;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(callback.url.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    request.headers_mut().extend(headers);
    let response = client.request(request).await?;
    // Drain the body so the connection can be reused.
    response.into_body().collect().await?;
    Ok(())
}

fn reply(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5000".to_owned())
        .parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(addr).await?;
        eprintln!(
            "tracecontext_service listening on http://{}",
            listener.local_addr()?
        );
        serve(listener).await
    })?;
    Ok(())
}
