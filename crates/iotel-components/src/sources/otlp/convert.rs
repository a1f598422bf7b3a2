//! What HTTP and gRPC share: an export request of any signal → events,
//! handed downstream and acknowledged, → the response to send.

use iotel_engine::{ComponentMetrics, Counter, Output, Registry};
use iotel_formats::otlp::proto::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use iotel_formats::otlp::proto::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use iotel_formats::otlp::proto::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use iotel_formats::otlp::{Rejected, logs, metrics, traces};
use iotel_model::Events;
use std::sync::Arc;

/// A decoded export request.
#[derive(Debug)]
pub enum Request {
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Traces(ExportTraceServiceRequest),
}

/// The success response of a request.
#[derive(Debug)]
pub enum Response {
    Logs(ExportLogsServiceResponse),
    Metrics(ExportMetricsServiceResponse),
    Traces(ExportTraceServiceResponse),
}

/// Why a request was not taken, for the peer: HTTP status and gRPC code
/// follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Does not decode, or is not what the endpoint takes: not retryable.
    BadRequest,
    /// Over a size limit.
    TooLarge,
    /// An unknown content type or encoding.
    Unsupported,
    /// No place for the path (HTTP only).
    NotFound,
    /// Wrong HTTP method.
    MethodNotAllowed,
    /// No valid bearer token (HTTP 401, gRPC UNAUTHENTICATED).
    Unauthenticated,
    /// The client certificate's identity or the token's grants do not
    /// allow it (HTTP 403, gRPC PERMISSION_DENIED).
    Forbidden,
    /// Downstream could not store the events, or the node is stopping:
    /// retryable.
    Unavailable,
}

/// An answer that is not success: what, a stable error code, and the
/// reason for the peer.
#[derive(Debug)]
pub struct Refusal {
    pub failure: Failure,
    pub code: &'static str,
    pub reason: String,
    /// `WWW-Authenticate` of an HTTP 401, or of a 403 by the token's grants
    /// (RFC 6750 §3).
    pub www_authenticate: Option<String>,
}

impl Refusal {
    pub fn new(failure: Failure, code: &'static str, reason: impl Into<String>) -> Self {
        Refusal {
            failure,
            code,
            reason: reason.into(),
            www_authenticate: None,
        }
    }

    /// The gRPC status code (`google.rpc.Code`) that says the same: 3
    /// INVALID_ARGUMENT, 8 RESOURCE_EXHAUSTED, 14 UNAVAILABLE, …
    pub fn grpc_code(&self) -> i32 {
        match self.failure {
            Failure::BadRequest | Failure::Unsupported => 3,
            Failure::TooLarge => 8,
            Failure::NotFound => 5,
            Failure::MethodNotAllowed => 12,
            Failure::Forbidden => 7,
            Failure::Unauthenticated => 16,
            Failure::Unavailable => 14,
        }
    }
}

impl From<crate::sources::http_receiver::Refused> for Refusal {
    /// A refusal of the shared HTTP receiver code (reading the body,
    /// inflating it), under the same code and reason.
    fn from(r: crate::sources::http_receiver::Refused) -> Self {
        let failure = match r.status {
            401 => Failure::Unauthenticated,
            403 => Failure::Forbidden,
            413 => Failure::TooLarge,
            415 => Failure::Unsupported,
            404 => Failure::NotFound,
            405 => Failure::MethodNotAllowed,
            503 => Failure::Unavailable,
            _ => Failure::BadRequest,
        };
        Refusal {
            www_authenticate: r.www_authenticate,
            ..Refusal::new(failure, r.code, r.reason)
        }
    }
}

/// Who sent a request, as far as the source checks: the device its client
/// certificate names (with `identity`) and the token's principal (with
/// `auth`). Put in a gRPC request's extensions once admitted.
#[derive(Debug, Clone, Default)]
pub struct Admitted {
    pub bound: Option<crate::tls::identity::Bound>,
    #[cfg(feature = "auth")]
    pub principal: Option<crate::auth::Principal>,
    /// The peer's address, for the audit log.
    #[cfg(feature = "auth")]
    pub peer: String,
}

/// Turns requests into events downstream; one per source, shared by its
/// servers.
#[derive(Debug)]
pub struct Ingest {
    pub id: String,
    pub out: Output,
    pub metrics: ComponentMetrics,
    not_mapped: [Counter; 3],
    /// `identity`: requests bound to the client certificate's device.
    pub identity: Option<Arc<crate::tls::identity::Binding>>,
    /// `auth`: bearer tokens and the policy.
    #[cfg(feature = "auth")]
    pub auth: Option<Arc<crate::auth::Auth>>,
}

impl Ingest {
    pub fn new(id: String, out: Output, metrics: ComponentMetrics, registry: &Registry) -> Self {
        let counter = |part: &str| {
            registry.counter(
                "iotel_otlp_not_mapped_total",
                "Parts of received OTLP records the event model has no place for and the otlp \
                 source left out (the records themselves were taken).",
                &[("component_id", &id), ("part", part)],
            )
        };
        let not_mapped = [
            counter("span_event"),
            counter("span_link"),
            counter("exemplar"),
        ];
        Ingest {
            id,
            out,
            metrics,
            not_mapped,
            identity: None,
            #[cfg(feature = "auth")]
            auth: None,
        }
    }

    /// Checks who sends a request before its body is read: first the
    /// client certificate's identity (with `identity`), then the bearer
    /// token of `authorization` (with `auth`; a failure is written to the
    /// audit log).
    ///
    /// # Errors
    /// `Forbidden` for a certificate that names no device, another trust
    /// domain or a revoked one; `Unauthenticated` for a missing or invalid
    /// token; `Unavailable` while no token keys could be loaded.
    #[cfg_attr(not(feature = "auth"), allow(clippy::unused_async, unused_variables))]
    pub async fn admit(
        &self,
        authorization: Option<&str>,
        certificate: Option<&crate::http_util::PeerIdentity>,
        peer: String,
    ) -> Result<Admitted, Refusal> {
        let bound = match &self.identity {
            None => None,
            Some(b) => Some(
                b.check(certificate)
                    .map_err(|d| Refusal::new(Failure::Forbidden, d.code, d.reason))?,
            ),
        };
        #[cfg(feature = "auth")]
        let principal = match &self.auth {
            None => None,
            Some(auth) => Some(auth.authenticate(authorization).await.map_err(|e| {
                auth.audit_failure(&e, &peer);
                if e.status() == 401 {
                    Refusal {
                        www_authenticate: Some(e.www_authenticate()),
                        ..Refusal::new(Failure::Unauthenticated, e.code(), e.to_string())
                    }
                } else {
                    Refusal::new(Failure::Unavailable, e.code(), e.to_string())
                }
            })?),
        };
        Ok(Admitted {
            bound,
            #[cfg(feature = "auth")]
            principal,
            #[cfg(feature = "auth")]
            peer,
        })
    }

    /// Converts, hands downstream and waits until every sink has the
    /// events safe; the response reports what was rejected.
    ///
    /// # Errors
    /// `Unavailable` when a sink could not store the events (they count as
    /// dropped there) or the node is stopping.
    /// With `auth`, the records must be for the token's tenant (a record
    /// naming none is given it; `Forbidden` otherwise, audited); with
    /// `identity`, they are bound to the certificate's device (`Forbidden`
    /// for one that names another, with `policy = "reject"`).
    pub async fn ingest(&self, request: Request, admitted: &Admitted) -> Result<Response, Refusal> {
        let (mut events, rejected, response) = match request {
            Request::Logs(r) => {
                let records = logs::records(r);
                (
                    Events::Logs(records),
                    Rejected::default(),
                    Response::Logs(ExportLogsServiceResponse::default()),
                )
            }
            Request::Traces(r) => {
                let d = traces::spans(r);
                self.not_mapped[0].add(d.dropped_events);
                self.not_mapped[1].add(d.dropped_links);
                let response = Response::Traces(traces::response(&d.rejected));
                (Events::Traces(d.spans), d.rejected, response)
            }
            Request::Metrics(r) => {
                let d = metrics::samples(r);
                self.not_mapped[2].add(d.dropped_exemplars);
                let response = Response::Metrics(metrics::response(&d.rejected));
                (Events::Metrics(d.samples), d.rejected, response)
            }
        };
        // Nothing falls back to open access: a request that was not
        // admitted while `auth` or `identity` is set is refused.
        #[cfg(feature = "auth")]
        if let Some(auth) = &self.auth {
            let who = admitted.principal.as_ref().ok_or_else(|| {
                Refusal::new(
                    Failure::Unauthenticated,
                    "missing_token",
                    "the request was not authenticated",
                )
            })?;
            auth.authorize_write(who, &mut events, &admitted.peer)
                .map_err(|d| Refusal {
                    www_authenticate: Some(d.www_authenticate()),
                    ..Refusal::new(Failure::Forbidden, d.code, d.reason)
                })?;
        }
        if let Some(binding) = &self.identity {
            let who = admitted.bound.as_ref().ok_or_else(|| {
                Refusal::new(
                    Failure::Forbidden,
                    "no_identity",
                    "the request was not bound to a client certificate",
                )
            })?;
            binding
                .stamp(who, &mut events)
                .map_err(|d| Refusal::new(Failure::Forbidden, d.code, d.reason))?;
        }
        let total = usize::try_from(rejected.total()).unwrap_or(usize::MAX);
        self.metrics.received(events.len().saturating_add(total));
        for (reason, n) in &rejected.by_reason {
            self.metrics
                .discarded(reason, usize::try_from(*n).unwrap_or(usize::MAX));
        }
        if let Some(first) = &rejected.first {
            let warned = self.metrics.errors("partial_success");
            warned.inc();
            if warned.get().is_power_of_two() {
                tracing::warn!(
                    component = %self.id,
                    "rejected {} OTLP record(s) of a request and took the rest; first: {first} \
                     (such requests so far: {})",
                    rejected.total(),
                    warned.get()
                );
            }
        }
        if events.is_empty() {
            return Ok(response);
        }
        let mut out = self.out.clone();
        let (open, acked) = out.send_acked(events).await;
        if !open {
            return Err(Refusal::new(
                Failure::Unavailable,
                "no_consumer",
                "the receiver is shutting down; send again later",
            ));
        }
        if !acked.wait().await {
            return Err(Refusal::new(
                Failure::Unavailable,
                "not_stored",
                "the events could not be stored downstream; send them again",
            ));
        }
        Ok(response)
    }

    /// Counts a refusal and logs the 1st, 2nd, 4th, 8th… of its code.
    pub fn count_refusal(&self, r: &Refusal, transport: &str) {
        let errors = self.metrics.errors(r.code);
        errors.inc();
        if errors.get().is_power_of_two() {
            tracing::warn!(
                component = %self.id,
                "refused an OTLP/{transport} request ({}): {} (such refusals so far: {})",
                r.code,
                r.reason,
                errors.get()
            );
        }
    }
}
