//! The sink itself: OTLP/HTTP's side of the buffered delivery loop (not in
//! builds without the `otlp` feature).

use super::*;
use crate::http_util::Body;
use crate::sinks::buffered::keys::Endpoint;
use crate::sinks::buffered::log_batch::LogBatch;
use crate::sinks::buffered::{self, PartialRejection, Protocol, Settings};
use crate::sinks::http_delivery::{Answer, Exchange};
use bytes::Bytes;
use iotel_engine::{ComponentFuture, ComponentMetrics, SinkContext};
use iotel_formats::otlp::logs;
use iotel_model::Events;
use std::io::Write;

impl Config {
    pub(super) fn sink(&self) -> Result<OtlpLogsSink, Problem> {
        let endpoint = endpoint(&self.endpoint).map_err(|e| Problem::new("endpoint", e))?;
        let (settings, endpoint) = self.keys().build(endpoint)?;
        Ok(OtlpLogsSink {
            settings,
            protocol: OtlpProtocol {
                endpoint,
                gzip: self.compression == CompressionName::Gzip,
                batch: LogBatch::new(&self.batch),
                metrics: None,
            },
        })
    }
}

#[derive(Debug)]
pub(super) struct OtlpLogsSink {
    pub(super) settings: Settings,
    pub(super) protocol: OtlpProtocol,
}

impl Sink for OtlpLogsSink {
    fn run(self: Box<Self>, cx: SinkContext) -> ComponentFuture {
        let OtlpLogsSink {
            settings,
            mut protocol,
        } = *self;
        protocol.metrics = Some(cx.metrics.clone());
        tracing::info!(component = %cx.metrics.id(), "sending logs over OTLP/HTTP to {}", settings.peer);
        Box::pin(buffered::deliver(settings, protocol, cx))
    }
}

/// OTLP/HTTP's side of the delivery loop.
#[derive(Debug)]
pub(super) struct OtlpProtocol {
    pub(super) endpoint: Endpoint,
    pub(super) gzip: bool,
    pub(super) batch: LogBatch,
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
}

impl Protocol for OtlpProtocol {
    fn fits(&self, events: &Events) -> bool {
        self.batch.fits(events)
    }

    fn add(&mut self, events: Events) {
        self.batch.add(events);
    }

    fn encode(&mut self, _first: u64, _last: u64) -> Result<Bytes, String> {
        let observed = u64::try_from(iotel_model::now_unix_ns()).unwrap_or(0);
        let (body, stats) = logs::encode(self.batch.take(), observed);
        self.count_invalid(stats);
        if !self.gzip {
            return Ok(Bytes::from(body));
        }
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(&body)
            .and_then(|()| gz.finish())
            .map(Bytes::from)
            .map_err(|e| format!("gzip: {e}"))
    }

    fn clear(&mut self) {
        self.batch.clear();
    }

    fn request(&self, body: Bytes, _first: u64, _last: u64, _oldest: u64) -> http::Request<Body> {
        self.endpoint.post(body)
    }

    /// OTLP/HTTP: "429, 502, 503, 504 are retryable; all other 4xx and 5xx
    /// are not".
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
        match logs::decode_response(&exchange.body) {
            Ok(p) => p.map(|p| PartialRejection {
                events: usize::try_from(p.rejected).unwrap_or(usize::MAX),
                message: p.message,
            }),
            Err(e) => {
                // The records were taken (2xx); only the details are lost.
                tracing::debug!("the OTLP response body is not an ExportLogsServiceResponse: {e}");
                None
            }
        }
    }
}
