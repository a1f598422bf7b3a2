//! `prometheus_remote_write`: sends metrics to a Prometheus remote write 1.0
//! endpoint (Prometheus with `--web.enable-remote-write-receiver`, Mimir,
//! Thanos receive, VictoriaMetrics, another iotel).
//!
//! - Samples wait in the sink's buffer (`buffer`, memory by default, or on
//!   disk; see `sinks::buffer`). A request is sent once `batch.max_samples`
//!   are waiting or the oldest has waited `batch.timeout`; whole input
//!   batches go into a request, so a request may hold a little more when one
//!   batch alone is larger.
//! - One request is in flight at a time, so samples reach the peer in order,
//!   as Prometheus wants them. Input keeps flowing into the buffer meanwhile,
//!   during retries too.
//! - The delivery loop is `sinks::buffered`, shared with the `iotel` sink;
//!   each answer is judged by the pure rules in `http_delivery`: 2xx
//!   delivers the batch (`sent`); 429, 5xx, connection errors and timeouts
//!   retry the same body with jittered exponential backoff, honouring
//!   `Retry-After`; any other status drops it (`discarded`, reason
//!   `rejected`, and an error `http_4xx`) with a warning that quotes the
//!   peer's answer.
//! - When the input closes (shutdown) what is waiting is flushed without
//!   waiting for `batch.timeout`, for at most three `request_timeout`s;
//!   what is left then stays in a disk buffer, or is counted as
//!   `discarded`, reason `shutdown`, from a memory one.
//!
//! Error codes counted (`iotel_component_errors_total`): `http_5xx`,
//! `http_429`, `connection_failed`, `request_timeout` per failed attempt;
//! `http_4xx` (or `http_3xx`) per rejected batch.

#[cfg(test)]
mod tests;

use super::buffer::BufferConfig;
use super::buffered::keys::{Endpoint, HttpSinkKeys};
use super::buffered::{self, Protocol, Settings};
use super::http_delivery::{Headers, RetryConfig, request_headers};
use crate::http_util::{self, Body};
use crate::{BuildContext, Problem};
use bytes::Bytes;
use iotel_engine::config::Duration;
use iotel_engine::{ComponentFuture, Sink, SinkContext};
use iotel_formats::remote_write;
use iotel_model::{Events, Metric};
use serde::Deserialize;
use std::num::NonZeroUsize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to POST, e.g. `http://prometheus:9090/api/v1/write`.
    pub endpoint: String,
    #[serde(default)]
    pub batch: BatchConfig,
    /// Where samples wait: see `sinks::buffer`.
    #[serde(default)]
    pub buffer: BufferConfig,
    /// How long one request may take, answer included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Extra request headers, e.g. `X-Scope-OrgID` for Mimir.
    #[serde(default)]
    pub headers: Headers,
    /// TLS for an `https://` endpoint: a private CA, a client certificate
    /// (mTLS), the server's name (see `crate::tls`); without it, https
    /// trusts the system's roots.
    #[serde(default)]
    pub tls: Option<Box<crate::tls::ClientTls>>,
}

/// `batch`: when a request is sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Samples per request at most; a request goes out as soon as this many
    /// are queued.
    #[serde(default = "default_batch_max_samples")]
    pub max_samples: NonZeroUsize,
    /// A request goes out once the oldest queued sample waited this long.
    #[serde(default = "default_batch_timeout")]
    pub timeout: Duration,
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

// Smaller than Prometheus' 2,000 per send: the request buffers scale with
// it, and on the edge memory is the scarce thing, not requests per second.
fn default_batch_max_samples() -> NonZeroUsize {
    NonZeroUsize::new(500).unwrap_or(NonZeroUsize::MIN)
}

fn default_batch_timeout() -> Duration {
    Duration::from_secs(1)
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_samples: default_batch_max_samples(),
            timeout: default_batch_timeout(),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if let Err(e) = http_util::parse_http_url(&self.endpoint) {
            p.push(Problem::new("endpoint", e));
        }
        if self.batch.timeout.get().is_zero() {
            p.push(Problem::new(
                "batch.timeout",
                "expected a duration above 0s, such as \"1s\"",
            ));
        }
        p.extend(self.keys().validate());
        p.extend(crate::tls::validate_client_table(
            self.tls.as_deref(),
            &self.endpoint,
        ));
        p
    }

    /// # Errors
    /// The first problem `validate` reports about the endpoint or headers.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, Problem> {
        let mut sink = self.remote_write()?;
        sink.settings.client = http_util::client_for(self.tls.as_deref(), cx)?;
        Ok(Box::new(sink))
    }

    fn remote_write(&self) -> Result<RemoteWrite, Problem> {
        let endpoint =
            http_util::parse_http_url(&self.endpoint).map_err(|e| Problem::new("endpoint", e))?;
        let (settings, endpoint) = self.keys().build(endpoint)?;
        Ok(RemoteWrite {
            settings,
            protocol: RemoteWriteProtocol {
                endpoint,
                max_samples: self.batch.max_samples.get(),
                samples: Vec::new(),
                encoder: remote_write::Encoder::new(),
            },
        })
    }

    fn keys(&self) -> HttpSinkKeys<'_> {
        HttpSinkKeys {
            unit: "samples",
            max_events: ("batch.max_samples", self.batch.max_samples),
            batch_timeout: self.batch.timeout,
            buffer: &self.buffer,
            request_timeout: self.request_timeout,
            retry: &self.retry,
            headers: self.request_headers(),
        }
    }

    /// Every header of a request: the protocol's, then the configured ones.
    fn request_headers(&self) -> Result<http::HeaderMap, Vec<Problem>> {
        use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
        let mut map = http::HeaderMap::new();
        map.insert(
            CONTENT_ENCODING,
            HeaderValue::from_static(remote_write::CONTENT_ENCODING),
        );
        map.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(remote_write::CONTENT_TYPE),
        );
        map.insert(
            HeaderName::from_static("x-prometheus-remote-write-version"),
            HeaderValue::from_static(remote_write::VERSION),
        );
        map.insert(USER_AGENT, HeaderValue::from_static(http_util::USER_AGENT));
        request_headers(map, &self.headers, &[])
    }
}

#[derive(Debug)]
struct RemoteWrite {
    settings: Settings,
    protocol: RemoteWriteProtocol,
}

impl Sink for RemoteWrite {
    fn run(self: Box<Self>, cx: SinkContext) -> ComponentFuture {
        let RemoteWrite { settings, protocol } = *self;
        tracing::info!(component = %cx.metrics.id(), "sending metrics to {}", settings.peer);
        Box::pin(buffered::deliver(settings, protocol, cx))
    }
}

/// Remote write's side of the delivery loop.
#[derive(Debug)]
struct RemoteWriteProtocol {
    endpoint: Endpoint,
    max_samples: usize,
    /// The next request's samples.
    samples: Vec<Metric>,
    /// Reused for every request: past the first few, encoding allocates
    /// only the body each request owns.
    encoder: remote_write::Encoder,
}

impl Protocol for RemoteWriteProtocol {
    fn fits(&self, events: &Events) -> bool {
        self.samples.is_empty() || self.samples.len() + events.len() <= self.max_samples
    }

    fn add(&mut self, events: Events) {
        // The graph sends this sink metrics only.
        if let Events::Metrics(m) = events {
            self.samples.extend(m);
        }
    }

    fn encode(&mut self, _first: u64, _last: u64) -> Result<Bytes, String> {
        let body = Bytes::copy_from_slice(self.encoder.encode(&self.samples));
        self.samples.clear();
        Ok(body)
    }

    fn clear(&mut self) {
        self.samples.clear();
    }

    fn request(&self, body: Bytes, _first: u64, _last: u64, _oldest: u64) -> http::Request<Body> {
        self.endpoint.post(body)
    }
}
