//! One POST of a batch, and what came back. The only I/O of the sink's
//! delivery; what to make of the answer is decided in `delivery`.

use super::{Answer, parse_retry_after};
use crate::http_util::{Body, Client};
use http_body_util::BodyExt;
use std::time::{Duration, SystemTime};

/// How much of a response body is read. Remote write answers are short (an
/// empty 204, or an error message); past this the rest is left unread.
const MAX_BODY_READ: usize = 64 << 10;

/// How much of a response body a log line quotes.
const MAX_BODY_LOGGED: usize = 512;

/// What one attempt produced.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub answer: Answer,
    /// For the log: the start of the response body, or what went wrong.
    pub detail: String,
    /// The response body, up to `MAX_BODY_READ` bytes, for a protocol that
    /// reads the answer (OTLP's partial success); empty when there was no
    /// response.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub body: bytes::Bytes,
    /// The response's headers; empty when there was no response.
    pub headers: http::HeaderMap,
}

/// Sends `request`, reads the answer, all within `timeout`.
pub(crate) async fn post(
    client: Client,
    request: http::Request<Body>,
    timeout: Duration,
) -> Exchange {
    match tokio::time::timeout(timeout, exchange(client, request)).await {
        Ok(e) => e,
        Err(_) => Exchange {
            answer: Answer::Failed {
                code: "request_timeout",
            },
            detail: format!("no answer within {timeout:?} (request_timeout)"),
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::new(),
        },
    }
}

async fn exchange(client: Client, request: http::Request<Body>) -> Exchange {
    let response = match client.request(request).await {
        Ok(r) => r,
        Err(e) => {
            return Exchange {
                answer: Answer::Failed {
                    code: "connection_failed",
                },
                detail: describe(&e),
                headers: http::HeaderMap::new(),
                body: bytes::Bytes::new(),
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let (parts, mut body) = response.into_parts();
    let mut start = Vec::new();
    // A body that breaks off still leaves the status, which is the answer.
    while start.len() < MAX_BODY_READ {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    start.extend_from_slice(data);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    let logged = &start[..start.len().min(MAX_BODY_LOGGED)];
    Exchange {
        answer: Answer::Status {
            status,
            retry_after,
        },
        detail: String::from_utf8_lossy(logged).trim().to_string(),
        headers: parts.headers,
        body: bytes::Bytes::from(start),
    }
}

/// An error and its causes: hyper's own message says little
/// ("client error (Connect)"); the cause says what happened.
fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
