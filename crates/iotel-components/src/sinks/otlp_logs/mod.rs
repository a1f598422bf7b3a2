//! `otlp_logs`: sends log records to an OTLP/HTTP endpoint (an
//! OpenTelemetry Collector, Loki's or any backend's OTLP intake) as
//! protobuf `ExportLogsServiceRequest`s, gzip-compressed by default.
//!
//! - How records map onto OTLP is `iotel_formats::otlp::logs` (module docs
//!   there): labels become resource attributes (one `ResourceLogs` per
//!   label set), fields typed attributes, the message the body, the
//!   severity `severity_number` + `severity_text`; fields `trace_id` (32
//!   hex digits) and `span_id` (16) become the record's ids. An id field
//!   that is not a valid id stays an attribute and is counted as an error
//!   (`invalid_trace_id`, `invalid_span_id`).
//! - `endpoint` is the full URL, as the OpenTelemetry exporters' per-signal
//!   `…_LOGS_ENDPOINT`: `http://collector:4318/v1/logs`. A URL without a
//!   path gets `/v1/logs`.
//! - Batching, buffering and delivery are `sinks::buffered`'s, as for the
//!   `loki` sink; retries follow the OTLP/HTTP spec: 429, 502, 503 and 504
//!   (and connection errors, timeouts) are retried with jittered
//!   exponential backoff, honouring `Retry-After`; every other status
//!   (400, 401, 413, 500, …) drops the batch, counted as discarded with
//!   reason `rejected`, with a warning that quotes the answer.
//! - A 2xx whose `ExportLogsServiceResponse` carries a `partial_success`
//!   counts its `rejected_log_records` as discarded (reason `rejected`,
//!   error `partial_success`) and the rest as sent, and logs the peer's
//!   `error_message`.
//!
//! Error codes counted (`iotel_component_errors_total`): `http_5xx`,
//! `http_429`, `connection_failed`, `request_timeout` per failed attempt;
//! `http_4xx` / `http_5xx` per rejected batch; `partial_success`;
//! `invalid_trace_id`, `invalid_span_id` per record.

#[cfg(test)]
mod tests;

use super::buffer::BufferConfig;
use super::buffered::keys::{Endpoint, HttpSinkKeys};
use super::buffered::log_batch::{LogBatch, LogBatchConfig};
use super::buffered::{self, PartialRejection, Protocol, Settings};
use super::http_delivery::{Answer, Exchange, Headers, RetryConfig, request_headers};
use crate::http_util::{self, Body};
use crate::{BuildContext, Problem};
use bytes::Bytes;
use iotel_engine::config::Duration;
use iotel_engine::{ComponentFuture, ComponentMetrics, Sink, SinkContext};
use iotel_formats::otlp::{self, logs};
use iotel_model::Events;
use serde::Deserialize;
use std::io::Write;

/// The path of OTLP/HTTP logs.
pub const LOGS_PATH: &str = "/v1/logs";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The full URL, e.g. `http://127.0.0.1:4318/v1/logs`; a URL without a
    /// path gets `/v1/logs`.
    pub endpoint: String,
    /// `gzip` (default) or `none`.
    #[serde(default)]
    pub compression: CompressionName,
    #[serde(default)]
    pub batch: LogBatchConfig,
    /// Where records wait: see `sinks::buffer`.
    #[serde(default)]
    pub buffer: BufferConfig,
    /// How long one request may take, answer included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Extra request headers, e.g. `Authorization`.
    #[serde(default)]
    pub headers: Headers,
}

/// The OpenTelemetry Collector's `otlphttp` exporter compresses with gzip by
/// default; so does this sink, at gzip's fastest level, which is where
/// most of the gain is for the least CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionName {
    #[default]
    Gzip,
    None,
}

// The OpenTelemetry exporters' default (`OTEL_EXPORTER_OTLP_TIMEOUT`).
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if let Err(e) = endpoint(&self.endpoint) {
            p.push(Problem::new("endpoint", e));
        }
        p.extend(self.batch.validate());
        p.extend(self.keys().validate());
        p
    }

    /// # Errors
    /// The first problem `validate` reports about the endpoint or headers.
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, Problem> {
        Ok(Box::new(self.sink()?))
    }

    fn sink(&self) -> Result<OtlpLogsSink, Problem> {
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

    fn keys(&self) -> HttpSinkKeys<'_> {
        HttpSinkKeys {
            unit: "log records",
            max_events: ("batch.max_events", self.batch.max_events),
            batch_timeout: self.batch.timeout,
            buffer: &self.buffer,
            request_timeout: self.request_timeout,
            retry: &self.retry,
            headers: self.request_headers(),
        }
    }

    fn request_headers(&self) -> Result<http::HeaderMap, Vec<Problem>> {
        use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, USER_AGENT};
        let mut map = http::HeaderMap::new();
        map.insert(CONTENT_TYPE, HeaderValue::from_static(otlp::CONTENT_TYPE));
        if self.compression == CompressionName::Gzip {
            map.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        map.insert(USER_AGENT, HeaderValue::from_static(http_util::USER_AGENT));
        request_headers(map, &self.headers, &[])
    }
}

/// The endpoint URL, with the logs path when none is given.
fn endpoint(url: &str) -> Result<http::Uri, String> {
    http_util::parse_http_url_with_default_path(url, LOGS_PATH)
}

#[derive(Debug)]
struct OtlpLogsSink {
    settings: Settings,
    protocol: OtlpProtocol,
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
struct OtlpProtocol {
    endpoint: Endpoint,
    gzip: bool,
    batch: LogBatch,
    /// The sink's counters, for the invalid ids found while encoding; set
    /// when the sink starts.
    metrics: Option<ComponentMetrics>,
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
