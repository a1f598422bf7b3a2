//! `otlp`: sends traces, metrics and logs to any OTLP backend (an
//! OpenTelemetry Collector, Jaeger, Tempo, Loki's OTLP intake) over
//! OTLP/HTTP (protobuf) or OTLP/gRPC, gzip-compressed by default.
//!
//! - How events map onto OTLP is `iotel_formats::otlp::{traces, metrics,
//!   logs}` (module docs there): labels become resource attributes, fields
//!   and span attributes typed attributes; samples are put back together
//!   into gauges, cumulative sums, histograms and summaries. A request
//!   carries one signal: batches of another signal go in the next one.
//! - `endpoint` as the OpenTelemetry Collector's exporters read it: for
//!   `protocol = "http"` the base URL, to which `/v1/traces`,
//!   `/v1/metrics` and `/v1/logs` are appended (`traces_endpoint`,
//!   `metrics_endpoint`, `logs_endpoint` give a signal's full URL instead);
//!   for `protocol = "grpc"` `http://host:port`, without a path.
//! - Batching, buffering and delivery are `sinks::buffered`'s, as for the
//!   `loki` sink. Retries follow the OTLP spec. Over HTTP: 429, 502, 503
//!   and 504 (and connection errors, timeouts) are retried with jittered
//!   exponential backoff, honouring `Retry-After`; every other status drops
//!   the batch. Over gRPC: CANCELLED, DEADLINE_EXCEEDED, ABORTED,
//!   OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are retried, and
//!   RESOURCE_EXHAUSTED only when the status carries a
//!   `google.rpc.RetryInfo`, whose delay is honoured as `Retry-After` is;
//!   every other code drops the batch. A dropped batch is counted as
//!   discarded with reason `rejected`, with a warning that quotes the
//!   answer.
//! - A success whose response carries a `partial_success` counts its
//!   rejected spans / data points / log records as discarded (reason
//!   `rejected`, error `partial_success`) and the rest as sent, and logs
//!   the peer's `error_message`.
//!
//! Error codes counted (`iotel_component_errors_total`): `http_5xx`,
//! `http_429`, `connection_failed`, `request_timeout`, `grpc_<code>`
//! (`grpc_unavailable`, `grpc_resource_exhausted`, …) per failed attempt;
//! `http_4xx` / `http_5xx` / `grpc_<code>` per rejected batch;
//! `partial_success`; `invalid_trace_id`, `invalid_span_id` per log record.

#[cfg(feature = "otlp")]
mod batch;
#[cfg(feature = "otlp")]
mod grpc;
#[cfg(feature = "otlp")]
mod sink;
#[cfg(test)]
mod tests;
#[cfg(all(test, feature = "otlp"))]
mod tests_grpc;

use super::buffer::BufferConfig;
use super::buffered::keys::HttpSinkKeys;
use super::buffered::log_batch::LogBatchConfig;
use super::http_delivery::{Headers, RetryConfig, request_headers};
use crate::http_util;
use crate::{BuildContext, Problem};
use iotel_engine::Sink;
use iotel_engine::config::Duration;
use serde::Deserialize;

/// The paths of OTLP/HTTP, appended to `endpoint`.
pub const TRACES_PATH: &str = "/v1/traces";
pub const METRICS_PATH: &str = "/v1/metrics";
pub const LOGS_PATH: &str = "/v1/logs";
/// OTLP/HTTP's binary encoding.
const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";

/// Headers gRPC itself sets, which `headers` may not.
const GRPC_RESERVED: &[(&str, &str)] = &[
    ("content-type", "gRPC sets it"),
    ("te", "gRPC sets it"),
    ("user-agent", "the sink sets it"),
    ("grpc-timeout", "set request_timeout instead"),
    ("grpc-encoding", "set compression instead"),
    ("grpc-accept-encoding", "gRPC sets it"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `http`: the base URL, e.g. `http://127.0.0.1:4318`; `grpc`:
    /// `http://host:port`, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// `http` (OTLP/HTTP protobuf, the default, as the OpenTelemetry SDKs')
    /// or `grpc`.
    #[serde(default)]
    pub protocol: ProtocolName,
    /// `http` only: the full URL of a signal, in place of `endpoint` +
    /// `/v1/traces` (and so on).
    pub traces_endpoint: Option<String>,
    pub metrics_endpoint: Option<String>,
    pub logs_endpoint: Option<String>,
    /// `gzip` (default) or `none`.
    #[serde(default)]
    pub compression: CompressionName,
    #[serde(default)]
    pub batch: LogBatchConfig,
    /// Where events wait: see `sinks::buffer`.
    #[serde(default)]
    pub buffer: BufferConfig,
    /// How long one request may take, answer included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Extra request headers (gRPC: metadata), e.g. `Authorization`.
    #[serde(default)]
    pub headers: Headers,
    /// TLS for an `https://` endpoint: a private CA, a client certificate
    /// (mTLS), the server's name (see `crate::tls`); without it, https
    /// trusts the system's roots.
    #[serde(default)]
    pub tls: Option<Box<crate::tls::ClientTls>>,
}

/// OTLP's two transports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolName {
    #[default]
    Http,
    Grpc,
}

/// The OpenTelemetry Collector's OTLP exporters compress with gzip by
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

/// Where each signal goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoints {
    Http {
        traces: http::Uri,
        metrics: http::Uri,
        logs: http::Uri,
    },
    Grpc(http::Uri),
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = self.endpoints().err().unwrap_or_default();
        p.extend(self.batch.validate());
        p.extend(self.keys().validate());
        p.extend(crate::tls::validate_client_table(
            self.tls.as_deref(),
            &self.endpoint,
        ));
        p
    }

    /// # Errors
    /// The first problem `validate` reports about the endpoint or headers.
    #[cfg(feature = "otlp")]
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, Problem> {
        let mut sink = self.sink()?;
        match &mut sink.protocol.transport {
            sink::Transport::Http { .. } => {
                sink.settings.client = http_util::client_for(self.tls.as_deref(), cx)?;
            }
            sink::Transport::Grpc(client) => client.set_tls(self.tls.as_deref(), cx)?,
        }
        Ok(Box::new(sink))
    }

    /// # Errors
    /// Always: this build has no OTLP encoder.
    #[cfg(not(feature = "otlp"))]
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, Problem> {
        Err(crate::not_built("otlp", "otlp"))
    }

    fn keys(&self) -> HttpSinkKeys<'_> {
        HttpSinkKeys {
            unit: "events",
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
        if self.protocol == ProtocolName::Grpc {
            // The configured ones only: they become the request's metadata.
            return request_headers(http::HeaderMap::new(), &self.headers, GRPC_RESERVED);
        }
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

    /// Every signal's URL, or every problem with them.
    fn endpoints(&self) -> Result<Endpoints, Vec<Problem>> {
        let mut problems = Vec::new();
        let overrides = [
            ("traces_endpoint", &self.traces_endpoint, TRACES_PATH),
            ("metrics_endpoint", &self.metrics_endpoint, METRICS_PATH),
            ("logs_endpoint", &self.logs_endpoint, LOGS_PATH),
        ];
        if self.protocol == ProtocolName::Grpc {
            for (key, url, _) in overrides {
                if url.is_some() {
                    problems.push(Problem::new(
                        key,
                        "only for protocol = \"http\": gRPC sends every signal to endpoint",
                    ));
                }
            }
            return match grpc_endpoint(&self.endpoint) {
                Ok(uri) if problems.is_empty() => Ok(Endpoints::Grpc(uri)),
                Ok(_) => Err(problems),
                Err(e) => {
                    problems.insert(0, Problem::new("endpoint", e));
                    Err(problems)
                }
            };
        }
        let base = http_util::parse_http_url(&self.endpoint);
        if let Err(e) = &base {
            problems.push(Problem::new("endpoint", e.clone()));
        }
        let mut uris = Vec::new();
        for (key, url, path) in overrides {
            let uri = match url {
                Some(url) => http_util::parse_http_url(url).map_err(|e| Problem::new(key, e)),
                // A bad base URL is reported once, above.
                None if base.is_err() => continue,
                None => signal_url(&self.endpoint, path).map_err(|e| Problem::new("endpoint", e)),
            };
            match uri {
                Ok(u) => uris.push(u),
                Err(p) => problems.push(p),
            }
        }
        match <[http::Uri; 3]>::try_from(uris) {
            Ok([traces, metrics, logs]) if problems.is_empty() => Ok(Endpoints::Http {
                traces,
                metrics,
                logs,
            }),
            _ => Err(problems),
        }
    }
}

/// `base` + `path`, as the Collector's `otlphttp` exporter joins them:
/// `http://c:4318` and `http://c:4318/` give `http://c:4318/v1/traces`,
/// `http://c/otlp` gives `http://c/otlp/v1/traces`.
fn signal_url(base: &str, path: &str) -> Result<http::Uri, String> {
    http_util::parse_http_url(&format!("{}{path}", base.trim_end_matches('/')))
}

/// `http://host:port`, nothing after.
fn grpc_endpoint(url: &str) -> Result<http::Uri, String> {
    let uri = http_util::parse_http_url(url)?;
    if uri.path() != "/" || uri.query().is_some() {
        return Err(format!(
            "invalid gRPC endpoint \"{url}\": expected http://host:port, without a path"
        ));
    }
    Ok(uri)
}
