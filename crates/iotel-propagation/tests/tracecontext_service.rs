//! Runs the test-suite service example on a free port against a small local
//! listener standing in for the W3C harness, and checks what it forwards.

// Test helpers outside #[test] fns: a panic is a failed test.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../examples/tracecontext_service.rs"]
mod service;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use iotel_propagation::w3c::TraceParent;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A callback the harness received: path, headers, body.
type Received = (String, HeaderMap, Bytes);

/// The harness side: records every request and answers 200.
async fn start_harness() -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let headers = req.headers().clone();
                        let body = req.into_body().collect().await?.to_bytes();
                        tx.send((path, headers, body)).ok();
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                    .ok();
            });
        }
    });
    (addr, rx)
}

async fn start_service() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(service::serve(listener));
    addr
}

/// POSTs `body` to the service with `headers`, returning the status.
async fn post(service: SocketAddr, headers: &[(&str, &str)], body: String) -> u16 {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::post(format!("http://{service}/test"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    response.status().as_u16()
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the service called back within 10 s")
        .unwrap()
}

fn traceparent(headers: &HeaderMap) -> TraceParent {
    let values: Vec<_> = headers.get_all("traceparent").iter().collect();
    assert_eq!(values.len(), 1, "one traceparent: {headers:?}");
    TraceParent::parse(values[0].to_str().unwrap()).unwrap()
}

const PARENT: &str = "00-12345678901234567890123456789012-1234567890123456-01";

#[tokio::test]
async fn service_forwards_the_trace_with_a_new_span_id_to_every_url() {
    let (harness, mut rx) = start_harness().await;
    let service = start_service().await;
    let body = format!(
        r#"[{{"url": "http://{harness}/0", "arguments": [{{"k": 1}}]}},
           {{"url": "http://{harness}/1", "arguments": []}}]"#
    );
    let status = post(
        service,
        &[
            ("TraceParent", PARENT),
            ("tracestate", "foo=1,bar=2"),
            ("tracestate", "baz=3"),
        ],
        body,
    )
    .await;
    assert_eq!(status, 200);

    let mut span_ids = Vec::new();
    for expected_path in ["/0", "/1"] {
        let (path, headers, body) = next(&mut rx).await;
        assert_eq!(path, expected_path);
        let tp = traceparent(&headers);
        assert_eq!(tp.version, 0);
        assert_eq!(tp.trace_id.to_string(), "12345678901234567890123456789012");
        assert_ne!(tp.parent_id.to_string(), "1234567890123456");
        assert!(tp.trace_flags.is_sampled());
        assert_eq!(headers.get("tracestate").unwrap(), "foo=1,bar=2,baz=3");
        span_ids.push(tp.parent_id);
        let expected_body = if path == "/0" { r#"[{"k":1}]"# } else { "[]" };
        assert_eq!(body, expected_body.as_bytes());
    }
    assert_ne!(span_ids[0], span_ids[1], "each call is its own span");
}

#[tokio::test]
async fn service_starts_a_new_trace_for_an_invalid_traceparent_and_drops_its_tracestate() {
    let (harness, mut rx) = start_harness().await;
    let service = start_service().await;
    for bad in [
        "00-00000000000000000000000000000000-1234567890123456-01",
        "ff-12345678901234567890123456789012-1234567890123456-01",
        "00-12345678901234567890123456789012-1234567890123456-01.",
        "00-1234567890123456789012345678901A-1234567890123456-01",
    ] {
        let body = format!(r#"[{{"url": "http://{harness}/cb", "arguments": []}}]"#);
        let status = post(
            service,
            &[("traceparent", bad), ("tracestate", "foo=1")],
            body,
        )
        .await;
        assert_eq!(status, 200, "{bad}");
        let (_, headers, _) = next(&mut rx).await;
        let tp = traceparent(&headers);
        assert!(tp.trace_id.is_valid());
        assert_ne!(
            tp.trace_id.to_string(),
            "12345678901234567890123456789012",
            "{bad}"
        );
        assert!(headers.get("tracestate").is_none(), "{bad}: {headers:?}");
    }
}

#[tokio::test]
async fn service_treats_two_traceparent_headers_as_invalid() {
    let (harness, mut rx) = start_harness().await;
    let service = start_service().await;
    let body = format!(r#"[{{"url": "http://{harness}/cb", "arguments": []}}]"#);
    let other = "00-12345678901234567890123456789011-1234567890123456-01";
    post(
        service,
        &[("traceparent", other), ("traceparent", PARENT)],
        body,
    )
    .await;
    let tp = traceparent(&next(&mut rx).await.1);
    assert_ne!(tp.trace_id.to_string(), "12345678901234567890123456789011");
    assert_ne!(tp.trace_id.to_string(), "12345678901234567890123456789012");
}

#[tokio::test]
async fn service_rejects_a_body_that_is_not_the_protocol() {
    let service = start_service().await;
    assert_eq!(post(service, &[], "{\"url\": 1}".to_owned()).await, 400);
}
