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
    /// The client certificate's identity does not allow it (HTTP only).
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
}

impl Refusal {
    pub fn new(failure: Failure, code: &'static str, reason: impl Into<String>) -> Self {
        Refusal {
            failure,
            code,
            reason: reason.into(),
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
            Failure::Unavailable => 14,
        }
    }
}

impl From<crate::sources::http_receiver::Refused> for Refusal {
    /// A refusal of the shared HTTP receiver code (reading the body,
    /// inflating it), under the same code and reason.
    fn from(r: crate::sources::http_receiver::Refused) -> Self {
        let failure = match r.status {
            413 => Failure::TooLarge,
            415 => Failure::Unsupported,
            404 => Failure::NotFound,
            405 => Failure::MethodNotAllowed,
            503 => Failure::Unavailable,
            _ => Failure::BadRequest,
        };
        Refusal::new(failure, r.code, r.reason)
    }
}

/// Turns requests into events downstream; one per source, shared by its
/// servers.
#[derive(Debug)]
pub struct Ingest {
    pub id: String,
    pub out: Output,
    pub metrics: ComponentMetrics,
    not_mapped: [Counter; 3],
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
        }
    }

    /// Converts, hands downstream and waits until every sink has the
    /// events safe; the response reports what was rejected.
    ///
    /// # Errors
    /// `Unavailable` when a sink could not store the events (they count as
    /// dropped there) or the node is stopping.
    pub async fn ingest(
        &self,
        request: Request,
        identity: Option<(&crate::tls::identity::Binding, &crate::tls::identity::Bound)>,
    ) -> Result<Response, Refusal> {
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
        if let Some((binding, who)) = identity {
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
