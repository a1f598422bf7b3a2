//! `loki`: sends log records to Loki's push API
//! (`/loki/api/v1/push`), protobuf + snappy (default) or JSON.
//!
//! - How records become streams, entries, structured metadata and lines is
//!   `iotel_formats::loki` (module docs there): stream labels are the
//!   record's labels (or those listed in `labels`), sanitised to names Loki
//!   takes (`service.name` → `service_name`, as the OpenTelemetry
//!   Collector's Loki exporter does); `structured_metadata` names the fields
//!   sent as Loki 3 structured metadata; `level` says where the severity
//!   goes; entries are sorted by time within each stream.
//! - Records wait in the sink's buffer (`buffer`, memory by default, or on
//!   disk). A request goes out once `batch.max_events` records or about
//!   `batch.max_bytes` are waiting, or the oldest waited `batch.timeout`
//!   (Promtail: `batchsize` 1 MiB, `batchwait` 1s).
//! - The delivery loop is `sinks::buffered`: one request in flight, 2xx
//!   delivers; 429, 5xx, connection errors and timeouts retry the same body
//!   with jittered exponential backoff, honouring `Retry-After`; any other
//!   status (Loki's 400 "entry out of order", "entry too far behind", "max
//!   line size exceeded", …) drops the batch with a warning that quotes
//!   Loki's answer, counted as discarded with reason `rejected` (error
//!   `http_4xx`), and delivery goes on with the next batch. Loki may have
//!   stored the good entries of a request it answered 400; they are counted
//!   as rejected all the same, since the answer does not say which.
//! - `tenant_id` is sent as `X-Scope-OrgID`.
//!
//! Error codes counted (`iotel_component_errors_total`): `http_5xx`,
//! `http_429`, `connection_failed`, `request_timeout` per failed attempt;
//! `http_4xx` (or `http_3xx`) per rejected batch.

#[cfg(test)]
mod tests;

use super::buffer::BufferConfig;
use super::buffered::keys::{Endpoint, HttpSinkKeys};
use super::buffered::log_batch::{LogBatch, LogBatchConfig};
use super::buffered::{self, Protocol, Settings};
use super::http_delivery::{Headers, RetryConfig, request_headers};
use crate::http_util::{self, Body};
use crate::{BuildContext, Problem};
use bytes::Bytes;
use iotel_engine::config::Duration;
use iotel_engine::{ComponentFuture, Sink, SinkContext};
use iotel_formats::loki::{self, Encoding, LevelAs, LineFormat, Mapping};
use iotel_model::Events;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The push URL, e.g. `http://loki:3100/loki/api/v1/push`; a URL without
    /// a path gets `/loki/api/v1/push`.
    pub endpoint: String,
    /// `protobuf` (snappy-compressed, default) or `json`.
    #[serde(default)]
    pub encoding: EncodingName,
    /// The tenant, sent as `X-Scope-OrgID` (Loki with `auth_enabled`).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// The record labels that become stream labels, by name; unset: all.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Fields (or labels that are not stream labels) sent as structured
    /// metadata (Loki 3).
    #[serde(default = "default_structured_metadata")]
    pub structured_metadata: Vec<String>,
    /// `message` (default): the line is the message; `json`: the message
    /// and the other fields as one JSON object.
    #[serde(default)]
    pub line_format: LineFormatName,
    /// Where the severity goes: `metadata` (default), `label`, `none`.
    #[serde(default)]
    pub level: LevelName,
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
    /// TLS for an `https://` endpoint: a private CA, a client certificate
    /// (mTLS), the server's name (see `crate::tls`); without it, https
    /// trusts the system's roots.
    #[serde(default)]
    pub tls: Option<Box<crate::tls::ClientTls>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingName {
    #[default]
    Protobuf,
    Json,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineFormatName {
    #[default]
    Message,
    Json,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LevelName {
    #[default]
    Metadata,
    Label,
    None,
}

fn default_structured_metadata() -> Vec<String> {
    vec!["trace_id".into(), "span_id".into()]
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Headers a user may not set with `headers`, and what to do instead.
const RESERVED: &[(&str, &str)] = &[("x-scope-orgid", "set tenant_id instead")];

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if let Err(e) = endpoint(&self.endpoint) {
            p.push(Problem::new("endpoint", e));
        }
        if let Some(t) = &self.tenant_id
            && (t.is_empty() || http::HeaderValue::from_str(t).is_err())
        {
            p.push(Problem::new(
                "tenant_id",
                "expected a non-empty tenant id of visible ASCII characters",
            ));
        }
        for (key, names) in [
            ("labels", self.labels.as_deref().unwrap_or_default()),
            ("structured_metadata", self.structured_metadata.as_slice()),
        ] {
            for (i, name) in names.iter().enumerate() {
                if name.is_empty() {
                    p.push(Problem::new(format!("{key}[{i}]"), "expected a name"));
                } else if names[..i].contains(name) {
                    p.push(Problem::new(
                        format!("{key}[{i}]"),
                        format!("{name:?} is listed twice"),
                    ));
                }
            }
        }
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
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, Problem> {
        let mut sink = self.sink()?;
        sink.settings.client = http_util::client_for(self.tls.as_deref(), cx)?;
        Ok(Box::new(sink))
    }

    fn sink(&self) -> Result<LokiSink, Problem> {
        let endpoint = endpoint(&self.endpoint).map_err(|e| Problem::new("endpoint", e))?;
        let (settings, endpoint) = self.keys().build(endpoint)?;
        Ok(LokiSink {
            settings,
            protocol: LokiProtocol {
                endpoint,
                encoding: self.encoding(),
                mapping: self.mapping(),
                batch: LogBatch::new(&self.batch),
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

    fn encoding(&self) -> Encoding {
        match self.encoding {
            EncodingName::Protobuf => Encoding::Protobuf,
            EncodingName::Json => Encoding::Json,
        }
    }

    fn mapping(&self) -> Mapping {
        Mapping {
            stream_labels: self.labels.clone(),
            structured_metadata: self.structured_metadata.clone(),
            line_format: match self.line_format {
                LineFormatName::Message => LineFormat::Message,
                LineFormatName::Json => LineFormat::Json,
            },
            level: match self.level {
                LevelName::Metadata => LevelAs::Metadata,
                LevelName::Label => LevelAs::Label,
                LevelName::None => LevelAs::None,
            },
        }
    }

    /// Every header of a request: the protocol's, then the configured ones.
    fn request_headers(&self) -> Result<http::HeaderMap, Vec<Problem>> {
        use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
        let encoding = self.encoding();
        let mut map = http::HeaderMap::new();
        map.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        );
        if let Some(e) = encoding.content_encoding() {
            map.insert(CONTENT_ENCODING, HeaderValue::from_static(e));
        }
        map.insert(USER_AGENT, HeaderValue::from_static(http_util::USER_AGENT));
        if let Some(v) = self
            .tenant_id
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
        {
            map.insert(HeaderName::from_static("x-scope-orgid"), v);
        }
        request_headers(map, &self.headers, RESERVED)
    }
}

/// The endpoint URL, with the push path when none is given.
fn endpoint(url: &str) -> Result<http::Uri, String> {
    http_util::parse_http_url_with_default_path(url, loki::PUSH_PATH)
}

#[derive(Debug)]
struct LokiSink {
    settings: Settings,
    protocol: LokiProtocol,
}

impl Sink for LokiSink {
    fn run(self: Box<Self>, cx: SinkContext) -> ComponentFuture {
        let LokiSink { settings, protocol } = *self;
        tracing::info!(component = %cx.metrics.id(), "sending logs to Loki at {}", settings.peer);
        Box::pin(buffered::deliver(settings, protocol, cx))
    }
}

/// Loki's side of the delivery loop.
#[derive(Debug)]
struct LokiProtocol {
    endpoint: Endpoint,
    encoding: Encoding,
    mapping: Mapping,
    batch: LogBatch,
}

impl Protocol for LokiProtocol {
    fn fits(&self, events: &Events) -> bool {
        self.batch.fits(events)
    }

    fn add(&mut self, events: Events) {
        self.batch.add(events);
    }

    fn encode(&mut self, _first: u64, _last: u64) -> Result<Bytes, String> {
        loki::encode(self.batch.take(), &self.mapping, self.encoding)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }

    fn clear(&mut self) {
        self.batch.clear();
    }

    fn request(&self, body: Bytes, _first: u64, _last: u64, _oldest: u64) -> http::Request<Body> {
        self.endpoint.post(body)
    }
}
