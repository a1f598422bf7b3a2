//! `prometheus_remote_write`: receives Prometheus remote write 1.0 — what
//! Prometheus, Grafana Agent/Alloy, vmagent and the OpenTelemetry
//! Collector's `prometheusremotewrite` exporter send — as metric samples.
//!
//! - `POST <path>` (default `/api/v1/write`) with `Content-Type:
//!   application/x-protobuf` and `Content-Encoding: snappy`; the body is a
//!   `prometheus.WriteRequest` in snappy's block format. How it maps onto
//!   samples is `iotel_formats::remote_write::decode_with_limit`.
//! - A request is answered 204 only once every sink downstream has its
//!   samples safe (`iotel_engine::Ack`); when a sink could not store them,
//!   503 with `Retry-After`, which Prometheus retries.
//! - Bad input is answered with a 4xx and the reason, which Prometheus does
//!   not retry, counted as an error under a stable code and logged (the 1st,
//!   2nd, 4th, 8th… of each code): a body that does not decode (400,
//!   `bad_payload`), over `max_body_size` as sent (413, `too_large`, before
//!   reading when `Content-Length` says so), whose snappy header states a
//!   decoded length over `max_decoded_size` (413, `decoded_too_large`:
//!   checked before anything is inflated), another content type or encoding
//!   — remote write 2.0 included — (415, `unsupported_content_type`,
//!   `unsupported_encoding`).
//! - With `identity` (mutual TLS), every request is bound to the device its
//!   client certificate names (`crate::tls::identity`): its samples get
//!   `device_id`; 403 `no_identity`, `wrong_trust_domain`, `revoked`
//!   before the body is read, `identity_mismatch` for one naming another
//!   device.

#[cfg(test)]
mod tests;

use super::http_receiver::{Handler, Push, Refused, header_essence};
use crate::{BuildContext, Problem};
use hyper::Request;
use hyper::body::Incoming;
use iotel_engine::Source;
use iotel_formats::remote_write::{self, DecodeError};
use iotel_model::Events;
use std::sync::Arc;

/// The path remote write requests go to unless `path` says otherwise.
pub const DEFAULT_PATH: &str = "/api/v1/write";

/// `address`, `path`, `max_body_size`, `max_decoded_size`, `auth`, `tls`,
/// `identity`.
pub type Config = super::http_receiver::PushConfig;

/// # Errors
/// With `auth`: a policy or key file that does not load.
pub fn build(config: &Config, cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
    let handle: Handler =
        |push, req| Box::pin(async move { push.answer(accept(&push, req).await) });
    config.build(cx, "remote write request", DEFAULT_PATH, handle)
}

async fn accept(push: &Arc<Push>, req: Request<Incoming>) -> Result<(), Refused> {
    let sender = push.admit(&req).await?;
    check_headers(&req)?;
    let body = super::http_receiver::read_body(req, push.max_body).await?;
    let samples =
        remote_write::decode_with_limit(&body, push.max_decoded).map_err(decode_refusal)?;
    push.deliver(sender, Events::Metrics(samples)).await
}

/// Remote write 1.0's headers: protobuf, snappy. A 2.0 sender
/// (`proto=io.prometheus.write.v2.Request`) is told 415 and falls back.
fn check_headers<B>(req: &Request<B>) -> Result<(), Refused> {
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?").to_ascii_lowercase());
    let essence = header_essence(req, http::header::CONTENT_TYPE);
    let proto = content_type
        .as_deref()
        .and_then(|t| {
            t.split(';')
                .skip(1)
                .find_map(|p| p.trim().strip_prefix("proto="))
        })
        .map(|p| p.trim_matches('"').to_string());
    if essence.as_deref() != Some(remote_write::CONTENT_TYPE)
        || proto.is_some_and(|p| p != "prometheus.writerequest")
    {
        return Err(Refused::new(
            415,
            "unsupported_content_type",
            format!(
                "Content-Type {}: expected {} (remote write 1.0)",
                content_type.map_or_else(|| "none".into(), |t| format!("{t:?}")),
                remote_write::CONTENT_TYPE
            ),
        ));
    }
    let encoding = header_essence(req, http::header::CONTENT_ENCODING);
    if encoding.as_deref() != Some(remote_write::CONTENT_ENCODING) {
        return Err(Refused::new(
            415,
            "unsupported_encoding",
            format!(
                "Content-Encoding {}: expected {}",
                encoding.map_or_else(|| "none".into(), |e| format!("{e:?}")),
                remote_write::CONTENT_ENCODING
            ),
        ));
    }
    Ok(())
}

fn decode_refusal(e: DecodeError) -> Refused {
    match e {
        DecodeError::TooLarge { size, limit } => Refused::decoded_too_large(size, limit),
        e => Refused::new(
            400,
            "bad_payload",
            format!("not a valid remote write request: {e}"),
        ),
    }
}
