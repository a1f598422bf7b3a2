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

#[cfg(feature = "otlp")]
mod sink;
#[cfg(test)]
mod tests;

use super::buffer::BufferConfig;
use super::buffered::keys::HttpSinkKeys;
use super::buffered::log_batch::LogBatchConfig;
use super::http_delivery::{Headers, RetryConfig, request_headers};
use crate::http_util;
use crate::{BuildContext, Problem};
use iotel_engine::Sink;
use iotel_engine::config::Duration;
use serde::Deserialize;

/// The path of OTLP/HTTP logs.
pub const LOGS_PATH: &str = "/v1/logs";
/// OTLP/HTTP's binary encoding.
const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";

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
    #[cfg(feature = "otlp")]
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, Problem> {
        Ok(Box::new(self.sink()?))
    }

    /// # Errors
    /// Always: this build has no OTLP encoder.
    #[cfg(not(feature = "otlp"))]
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, Problem> {
        Err(crate::not_built("otlp_logs", "otlp"))
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
        map.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE_PROTOBUF),
        );
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
