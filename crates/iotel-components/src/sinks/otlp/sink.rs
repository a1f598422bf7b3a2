//! The sink itself: OTLP's side of the buffered delivery loop, over HTTP or
//! gRPC (not in builds without the `otlp` feature).

use super::batch::SignalBatch;
use super::grpc::GrpcClient;
use super::*;
use crate::http_util::{Body, Client};
use crate::sinks::buffered::keys::Endpoint;
use crate::sinks::buffered::{self, PartialRejection, Protocol, Settings};
use crate::sinks::http_delivery::{self, Answer, Exchange};
use bytes::Bytes;
use iotel_engine::{ComponentFuture, ComponentMetrics, SinkContext};
use iotel_formats::otlp::proto::collector::logs::v1::ExportLogsServiceResponse;
use iotel_formats::otlp::proto::collector::metrics::v1::ExportMetricsServiceResponse;
use iotel_formats::otlp::proto::collector::trace::v1::ExportTraceServiceResponse;
use iotel_formats::otlp::{logs, metrics, traces};
use iotel_model::{Events, Signal};
use prost::Message;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;

impl Config {
    pub(super) fn sink(&self) -> Result<OtlpSink, Problem> {
        let endpoints = self.endpoints().map_err(|problems| {
            problems
                .into_iter()
                .next()
                .unwrap_or_else(|| Problem::new("endpoint", "invalid endpoint"))
        })?;
        let gzip = self.compression == CompressionName::Gzip;
        let (transport, settings) = match endpoints {
            Endpoints::Http {
                traces,
                metrics,
                logs,
            } => {
                let base =
                    signal_url(&self.endpoint, "").map_err(|e| Problem::new("endpoint", e))?;
                let (mut settings, traces) = self.keys().build(traces)?;
                let (_, metrics) = self.keys().build(metrics)?;
                let (_, logs) = self.keys().build(logs)?;
                settings.peer = base.to_string();
                (
                    Transport::Http {
                        traces,
                        metrics,
                        logs,
                    },
                    settings,
                )
            }
            Endpoints::Grpc(uri) => {
                let (settings, endpoint) = self.keys().build(uri.clone())?;
                let client = GrpcClient::new(uri, endpoint.headers().clone(), gzip);
                (Transport::Grpc(client), settings)
            }
        };
        Ok(OtlpSink {
            settings,
            protocol: OtlpProtocol {
                transport,
                gzip,
                batch: SignalBatch::new(&self.batch),
                signal: None,
                metrics: None,
            },
        })
    }
}

#[derive(Debug)]
pub(super) struct OtlpSink {
    pub(super) settings: Settings,
    pub(super) protocol: OtlpProtocol,
}

impl Sink for OtlpSink {
    fn run(self: Box<Self>, cx: SinkContext) -> ComponentFuture {
        let OtlpSink {
            settings,
            mut protocol,
        } = *self;
        protocol.metrics = Some(cx.metrics.clone());
        Box::pin(async move {
            let over = match &mut protocol.transport {
                Transport::Http { .. } => "OTLP/HTTP",
                Transport::Grpc(client) => {
                    client.connect();
                    "OTLP/gRPC"
                }
            };
            tracing::info!(component = %cx.metrics.id(), "sending over {over} to {}", settings.peer);
            buffered::deliver(settings, protocol, cx).await
        })
    }
}

/// Where requests go.
#[derive(Debug)]
pub(super) enum Transport {
    Http {
        traces: Endpoint,
        metrics: Endpoint,
        logs: Endpoint,
    },
    Grpc(GrpcClient),
}

/// OTLP's side of the delivery loop.
#[derive(Debug)]
pub(super) struct OtlpProtocol {
    pub(super) transport: Transport,
    pub(super) gzip: bool,
    pub(super) batch: SignalBatch,
    /// The signal of the request encoded last (kept for its retries).
    pub(super) signal: Option<Signal>,
    /// The sink's counters, for the invalid ids found while encoding; set
    /// when the sink starts.
    pub(super) metrics: Option<ComponentMetrics>,
}

impl OtlpProtocol {
    fn count_invalid(&self, stats: logs::Stats) {
        let Some(m) = &self.metrics else {
            return;
        };
        for (code, field, digits, n) in [
            (
                "invalid_trace_id",
                logs::TRACE_ID,
                32,
                stats.invalid_trace_ids,
            ),
            ("invalid_span_id", logs::SPAN_ID, 16, stats.invalid_span_ids),
        ] {
            if n == 0 {
                continue;
            }
            let errors = m.errors(code);
            let before = errors.get();
            errors.add(n as u64);
            // The 1st, 2nd, 4th, 8th… time the count passes a power of two.
            if (before + 1..=errors.get()).any(u64::is_power_of_two) {
                tracing::warn!(
                    component = %m.id(),
                    "{n} record(s) had a {field} field that is not {digits} hex digits (or is all \
                     zeros); sent it as an attribute instead (error {code:?}, {} so far)",
                    errors.get()
                );
            }
        }
    }

    /// The protobuf `Export…ServiceRequest` of `events`.
    fn encode_events(&self, events: Events) -> Vec<u8> {
        match events {
            Events::Logs(records) => {
                let observed = u64::try_from(iotel_model::now_unix_ns()).unwrap_or(0);
                let (body, stats) = logs::encode(records, observed);
                self.count_invalid(stats);
                body
            }
            Events::Traces(spans) => traces::export_request(spans).encode_to_vec(),
            Events::Metrics(samples) => metrics::export_request(samples).encode_to_vec(),
        }
    }
}

/// gzip at its fastest level.
pub(super) fn gzip(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    gz.write_all(body)
        .and_then(|()| gz.finish())
        .map_err(|e| format!("gzip: {e}"))
}

impl Protocol for OtlpProtocol {
    fn fits(&self, events: &Events) -> bool {
        self.batch.fits(events)
    }

    fn add(&mut self, events: Events) {
        self.batch.add(events);
    }

    fn encode(&mut self, _first: u64, _last: u64) -> Result<Bytes, String> {
        let events = self
            .batch
            .take()
            .ok_or_else(|| "a request without events".to_string())?;
        self.signal = Some(events.signal());
        let body = self.encode_events(events);
        // gRPC compresses its frames itself.
        if !self.gzip || matches!(self.transport, Transport::Grpc(_)) {
            return Ok(Bytes::from(body));
        }
        gzip(&body).map(Bytes::from)
    }

    fn clear(&mut self) {
        self.batch.clear();
        self.signal = None;
    }

    /// A request's path and the reading of its answer follow the signal
    /// it was encoded with, which the protocol remembers.
    fn encodes_ahead(&self) -> bool {
        false
    }

    fn request(&self, body: Bytes, _first: u64, _last: u64, _oldest: u64) -> http::Request<Body> {
        let Transport::Http {
            traces,
            metrics,
            logs,
        } = &self.transport
        else {
            // gRPC requests go through `send`; this is never asked of it.
            return http::Request::new(Body::new(body));
        };
        match self.signal {
            Some(Signal::Traces) => traces.post(body),
            Some(Signal::Metrics) => metrics.post(body),
            Some(Signal::Logs) | None => logs.post(body),
        }
    }

    fn send(
        &self,
        client: &Client,
        timeout: std::time::Duration,
        body: Bytes,
        [first, last, oldest]: [u64; 3],
    ) -> Pin<Box<dyn Future<Output = Exchange> + Send>> {
        match &self.transport {
            Transport::Grpc(grpc) => {
                grpc.export(self.signal.unwrap_or(Signal::Logs), body, timeout)
            }
            Transport::Http { .. } => Box::pin(http_delivery::post(
                client.clone(),
                self.request(body, first, last, oldest),
                timeout,
            )),
        }
    }

    /// OTLP/HTTP: "429, 502, 503, 504 are retryable; all other 4xx and 5xx
    /// are not". (gRPC statuses are judged in `grpc.rs`.)
    fn retryable(&self, status: u16) -> bool {
        matches!(status, 429 | 502 | 503 | 504)
    }

    fn partially_rejected(&self, exchange: &Exchange) -> Option<PartialRejection> {
        if !matches!(
            exchange.answer,
            Answer::Status {
                status: 200..=299,
                ..
            }
        ) {
            return None;
        }
        match partial_success(self.signal?, &exchange.body) {
            Ok(p) => p,
            Err(e) => {
                // The events were taken; only the details are lost.
                tracing::debug!("the OTLP response is not an Export…ServiceResponse: {e}");
                None
            }
        }
    }
}

/// The partial success of a `signal` response body, if it has one.
fn partial_success(
    signal: Signal,
    body: &[u8],
) -> Result<Option<PartialRejection>, prost::DecodeError> {
    let rejection = |rejected: i64, message: String| {
        (rejected != 0 || !message.is_empty()).then(|| PartialRejection {
            events: usize::try_from(rejected.max(0)).unwrap_or(usize::MAX),
            message,
        })
    };
    Ok(match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(body)?
            .partial_success
            .and_then(|p| rejection(p.rejected_spans, p.error_message)),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)?
            .partial_success
            .and_then(|p| rejection(p.rejected_data_points, p.error_message)),
        Signal::Logs => ExportLogsServiceResponse::decode(body)?
            .partial_success
            .and_then(|p| rejection(p.rejected_log_records, p.error_message)),
    })
}
