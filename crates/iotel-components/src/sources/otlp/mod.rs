//! `otlp`: receives traces, metrics and logs as OTLP — over HTTP
//! (protobuf and JSON, `POST /v1/traces`, `/v1/metrics`, `/v1/logs` on
//! `http_address`) and over gRPC (`grpc_address`) — the way an OpenTelemetry
//! Collector's `otlp` receiver does.
//!
//! - How OTLP maps onto events is `iotel_formats::otlp::{logs, traces,
//!   metrics}` (module docs there). Records the converter rejects (a span
//!   with an invalid id, a delta sum, …) are counted as discarded under
//!   their reason and reported back in the response's `partial_success`
//!   (`rejected_spans` / `rejected_data_points`, with a message naming the
//!   first); the rest flows. Span events and span links, which the model
//!   has no place for, and exemplars beyond one per sample (or without a
//!   value) are counted in `iotel_otlp_not_mapped_total{part}`.
//! - A request is answered only once every sink downstream has its events
//!   safe (`iotel_engine::Ack`): success (HTTP 200 / gRPC OK) then, or —
//!   when a sink could not store them — HTTP 503 with `Retry-After` / gRPC
//!   UNAVAILABLE, which OTLP exporters retry.
//! - Bad input never takes the source down: a body that does not decode is
//!   HTTP 400 / INVALID_ARGUMENT with the reason (not retried); a body over
//!   `max_body_size` as sent, or over `max_decoded_size` once gunzipped (a
//!   gzip bomb is cut off there, never inflated whole), is HTTP 413 / gRPC
//!   RESOURCE_EXHAUSTED (not retried); an unknown `Content-Type` or
//!   `Content-Encoding` is HTTP 415. Each is counted as an error under a stable code and logged
//!   (the 1st, 2nd, 4th, 8th… of each code).
//! - `tls` puts OTLP/HTTP and OTLP/gRPC under TLS (`crate::tls::server`;
//!   ALPN `http/1.1` and `h2`). With `identity` (client certificates),
//!   requests on both transports are bound to the device the certificate
//!   names (`crate::tls::identity`): HTTP 403 / gRPC PERMISSION_DENIED with
//!   `no_identity`, `wrong_trust_domain`, `revoked` (before the body is
//!   read) or `identity_mismatch`.
//! - `auth` (`crate::auth`) asks every request for a bearer token — the
//!   `Authorization` header over HTTP, the `authorization` metadata over
//!   gRPC — checked before the body is read: HTTP 401 with
//!   `WWW-Authenticate: Bearer …` / gRPC UNAUTHENTICATED for a missing or
//!   invalid one (503 / UNAVAILABLE while no keys are loaded). Records
//!   naming no tenant get the token's; a request with a record for another
//!   tenant, or one the policy does not grant, is refused whole with HTTP
//!   403 (`WWW-Authenticate: Bearer error="insufficient_scope"`) / gRPC
//!   PERMISSION_DENIED. Each refusal is counted under its code and written
//!   to the audit log. With both, the certificate is checked first.

#[cfg(all(test, feature = "otlp", feature = "auth"))]
mod auth_tests;
#[cfg(feature = "otlp")]
mod convert;
#[cfg(feature = "otlp")]
mod grpc;
#[cfg(feature = "otlp")]
mod http;
#[cfg(all(test, feature = "otlp"))]
mod identity_tests;
#[cfg(all(test, feature = "otlp"))]
mod tests;

use crate::{BuildContext, Problem};
use iotel_engine::Source;
use iotel_engine::config::ByteSize;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to serve OTLP/gRPC.
    #[serde(default = "default_grpc_address")]
    pub grpc_address: SocketAddr,
    /// Where to serve OTLP/HTTP (protobuf and JSON).
    #[serde(default = "default_http_address")]
    pub http_address: SocketAddr,
    /// The largest request, as sent (compressed).
    #[serde(default = "default_max_body_size")]
    pub max_body_size: ByteSize,
    /// The largest request once decompressed: the gzip-bomb guard.
    #[serde(default = "default_max_decoded_size")]
    pub max_decoded_size: ByteSize,
    /// HTTPS on `http_address`, with client certificates when it has a
    /// `ca_file`.
    #[serde(default)]
    pub tls: Option<Box<crate::tls::ServerTls>>,
    /// Without `tls`, accept unencrypted connections on an address other
    /// than a loopback one (`crate::tls::server::validate_plaintext`).
    #[serde(default)]
    pub plaintext: bool,
    /// Binds OTLP/HTTP and OTLP/gRPC requests to the device in the client
    /// certificate; needs `tls` with a `ca_file`.
    #[serde(default)]
    pub identity: Option<Box<crate::tls::identity::IdentityConfig>>,
    /// Bearer tokens and RBAC on both transports: every request needs a
    /// token whose tenant it is for (`crate::auth`).
    #[cfg(feature = "auth")]
    #[serde(default)]
    pub auth: Option<crate::auth::Config>,
}

fn default_grpc_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4317))
}

fn default_http_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4318))
}

fn default_max_body_size() -> ByteSize {
    ByteSize(4 << 20)
}

fn default_max_decoded_size() -> ByteSize {
    ByteSize(16 << 20)
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        for (key, size) in [
            ("max_body_size", self.max_body_size),
            ("max_decoded_size", self.max_decoded_size),
        ] {
            if size.bytes() < 1024 {
                p.push(Problem::new(
                    key,
                    format!("expected at least 1KiB, got {size}"),
                ));
            }
            if usize::try_from(size.bytes()).is_err() {
                p.push(Problem::new(key, format!("{size} is too large here")));
            }
        }
        p.extend(crate::tls::server::validate_listener(
            self.tls.as_deref(),
            self.identity.as_deref(),
        ));
        #[cfg(all(feature = "auth", feature = "otlp"))]
        p.extend(crate::sources::http_receiver::validate_auth_unsigned(
            self.auth.as_ref(),
        ));
        for (key, address) in [
            ("http_address", self.http_address),
            ("grpc_address", self.grpc_address),
        ] {
            let found = crate::tls::server::validate_plaintext(
                key,
                address,
                self.tls.is_some(),
                self.plaintext,
            );
            // Both addresses: a contradiction in the table is told once.
            for f in found {
                if !p.contains(&f) {
                    p.push(f);
                }
            }
        }
        if self.grpc_address == self.http_address {
            p.push(Problem::new(
                "grpc_address",
                format!(
                    "{} is also http_address; gRPC and HTTP need a port each",
                    self.grpc_address
                ),
            ));
        }
        p
    }

    /// Ports this source listens on.
    pub fn claims(&self) -> Vec<String> {
        vec![
            format!("port {}", self.grpc_address),
            format!("port {}", self.http_address),
        ]
    }

    /// # Errors
    /// With `tls` or `identity`: a file that does not load.
    #[cfg(feature = "otlp")]
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
        let (tls, grpc_tls) = match &self.tls {
            None => (None, None),
            Some(t) => (
                Some(t.build("tls", cx, &[b"http/1.1"])?),
                Some(t.build("tls", cx, &[b"h2"])?),
            ),
        };
        let identity = match &self.identity {
            None => None,
            Some(i) => Some(std::sync::Arc::new(i.build("identity", cx)?)),
        };
        Ok(Box::new(http::OtlpSource {
            config: self.clone(),
            tls,
            grpc_tls,
            identity,
            #[cfg(feature = "auth")]
            auth: crate::sources::http_receiver::build_auth(self.auth.as_ref(), cx)?,
        }))
    }

    /// # Errors
    /// Always: this build has no OTLP decoder.
    #[cfg(not(feature = "otlp"))]
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
        Err(crate::not_built("otlp", "otlp"))
    }
}
