//! `loki`: receives Loki's push API — what Promtail, Grafana Agent/Alloy,
//! Fluent Bit's `loki` output and Vector's `loki` sink send — as log
//! records. (The `loki` sink is the other direction; sources and sinks are
//! separate namespaces.)
//!
//! - `POST <path>` (default `/loki/api/v1/push`): `application/x-protobuf`,
//!   a snappy-compressed `logproto.PushRequest` (`Content-Encoding` absent
//!   or `snappy`; a request without `Content-Type` is taken as protobuf, as
//!   Loki does), or `application/json`, plain or `Content-Encoding: gzip`.
//!   How a request maps onto records is `iotel_formats::loki::decode`:
//!   stream labels become labels, the line the message, structured
//!   metadata `level` the severity and other structured metadata string
//!   fields.
//! - `X-Scope-OrgID`, when present, becomes the `tenant` label of every
//!   record of the request (over a `tenant` stream label), as Loki files
//!   the request under that tenant.
//! - A request is answered 204 only once every sink downstream has its
//!   records safe; when a sink could not store them, 503 with
//!   `Retry-After`, which Loki clients retry.
//! - Bad input is answered with a 4xx and the reason, counted under a
//!   stable code and logged (the 1st, 2nd, 4th, 8th… of each code):
//!   `bad_payload`, `bad_gzip` (400), `too_large`, `decoded_too_large`
//!   (413: a snappy body is checked against `max_decoded_size` by the
//!   length its header states, before anything is inflated; gzip is
//!   inflated at most that far), `unsupported_content_type`,
//!   `unsupported_encoding` (415).
//! - With `identity` (mutual TLS), every request is bound to the device its
//!   client certificate names (`crate::tls::identity`): its records get
//!   `device_id`; 403 `no_identity`, `wrong_trust_domain`, `revoked`
//!   before the body is read, `identity_mismatch` for one naming another
//!   device.

#[cfg(test)]
mod tests;

use super::http_receiver::{Handler, Push, Refused, gunzip, header_essence, read_body};
use crate::{BuildContext, Problem};
use hyper::Request;
use hyper::body::Incoming;
use iotel_engine::Source;
use iotel_formats::loki::{self, DecodeError};
use iotel_model::Events;
use std::sync::Arc;

/// The path push requests go to unless `path` says otherwise.
pub const DEFAULT_PATH: &str = loki::PUSH_PATH;

/// The header naming the tenant of a request.
pub const TENANT_HEADER: &str = "X-Scope-OrgID";

/// The label the tenant of [`TENANT_HEADER`] goes to.
pub const TENANT_LABEL: &str = "tenant";

/// `address`, `path`, `max_body_size`, `max_decoded_size`, `auth`, `tls`,
/// `identity`.
pub type Config = super::http_receiver::PushConfig;

/// # Errors
/// With `auth`: a policy or key file that does not load.
pub fn build(config: &Config, cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
    let handle: Handler =
        |push, req| Box::pin(async move { push.answer(accept(&push, req).await) });
    config.build(cx, "Loki push request", DEFAULT_PATH, handle)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json { gzip: bool },
}

async fn accept(push: &Arc<Push>, req: Request<Incoming>) -> Result<(), Refused> {
    let sender = push.admit(&req).await?;
    let format = format_of(&req)?;
    let tenant = match req.headers().get(TENANT_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    Refused::new(
                        400,
                        "bad_tenant",
                        format!("{TENANT_HEADER} {v:?}: expected a tenant name"),
                    )
                })?
                .to_string(),
        ),
    };
    let body = read_body(req, push.max_body).await?;
    let mut records = match format {
        Format::Protobuf => loki::decode_protobuf_with_limit(&body, push.max_decoded),
        Format::Json { gzip: false } => loki::decode_json(&body),
        Format::Json { gzip: true } => loki::decode_json(&gunzip(&body, push.max_decoded)?),
    }
    .map_err(decode_refusal)?;
    if let Some(t) = tenant {
        for r in &mut records {
            r.labels = r.labels.with(TENANT_LABEL, &t);
        }
    }
    push.deliver(sender, Events::Logs(records)).await
}

fn format_of<B>(req: &Request<B>) -> Result<Format, Refused> {
    let encoding = header_essence(req, http::header::CONTENT_ENCODING);
    let encoding = encoding
        .as_deref()
        .filter(|e| !e.is_empty() && *e != "identity");
    let content_type = header_essence(req, http::header::CONTENT_TYPE);
    let format = match content_type.as_deref().filter(|t| !t.is_empty()) {
        None | Some(loki::CONTENT_TYPE_PROTOBUF) => Format::Protobuf,
        Some(loki::CONTENT_TYPE_JSON) => Format::Json {
            gzip: encoding == Some("gzip"),
        },
        Some(other) => {
            return Err(Refused::new(
                415,
                "unsupported_content_type",
                format!(
                    "Content-Type {other:?}: expected {} or {}",
                    loki::CONTENT_TYPE_PROTOBUF,
                    loki::CONTENT_TYPE_JSON
                ),
            ));
        }
    };
    let allowed = match format {
        Format::Protobuf => encoding.is_none() || encoding == Some("snappy"),
        Format::Json { .. } => encoding.is_none() || encoding == Some("gzip"),
    };
    if !allowed {
        let expected = match format {
            Format::Protobuf => "snappy or none for protobuf",
            Format::Json { .. } => "gzip or none for JSON",
        };
        return Err(Refused::new(
            415,
            "unsupported_encoding",
            format!(
                "Content-Encoding {:?}: expected {expected}",
                encoding.unwrap_or_default()
            ),
        ));
    }
    Ok(format)
}

fn decode_refusal(e: DecodeError) -> Refused {
    match e {
        DecodeError::TooLarge { size, limit } => Refused::decoded_too_large(size, limit),
        e => Refused::new(
            400,
            "bad_payload",
            format!("not a valid Loki push request: {e}"),
        ),
    }
}
