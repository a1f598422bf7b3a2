//! The keys the HTTP sinks `loki`, `otlp` and
//! `prometheus_remote_write` share — `headers`, `batch` (its count and
//! timeout), `buffer`, `request_timeout`, `retry` — checked and turned into
//! the delivery loop's [`Settings`] in one place.
//!
//! Each sink keeps its own config struct (serde's `flatten` does not go
//! with `deny_unknown_fields`), checks its `endpoint` and its own keys, and
//! lends these to an [`HttpSinkKeys`].

use super::Settings;
use crate::Problem;
use crate::http_util::Body;
use crate::sinks::buffer::BufferConfig;
use crate::sinks::http_delivery::RetryConfig;
use bytes::Bytes;
use iotel_engine::config::Duration;
use std::num::NonZeroUsize;

/// A sink's shared keys, borrowed from its config.
#[derive(Debug)]
pub(crate) struct HttpSinkKeys<'a> {
    /// "log records", "samples": what the logs call the sink's events.
    pub unit: &'static str,
    /// The key of the most events per request (`batch.max_events`,
    /// `batch.max_samples`) and its value.
    pub max_events: (&'static str, NonZeroUsize),
    pub batch_timeout: Duration,
    pub buffer: &'a BufferConfig,
    pub request_timeout: Duration,
    pub retry: &'a RetryConfig,
    /// Every header of a request, or what is wrong with the configured
    /// ones (see `http_delivery::request_headers`).
    pub headers: Result<http::HeaderMap, Vec<Problem>>,
}

impl HttpSinkKeys<'_> {
    /// Problems with `request_timeout`, `retry`, `buffer` and `headers`, in
    /// that order; the sink checks `endpoint` and `batch` itself.
    pub(crate) fn validate(self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.request_timeout.get().is_zero() {
            p.push(Problem::new(
                "request_timeout",
                "expected a duration above 0s, such as \"10s\"",
            ));
        }
        p.extend(self.retry.validate());
        let (key, max_events) = self.max_events;
        if let BufferConfig::Memory(m) = self.buffer
            && m.max_events < max_events
        {
            p.push(Problem::new(
                "buffer.max_events",
                format!(
                    "expected at least {key} ({max_events}), got {}",
                    m.max_events
                ),
            ));
        }
        p.extend(self.buffer.validate("buffer"));
        if let Err(problems) = self.headers {
            p.extend(problems);
        }
        p
    }

    /// The delivery loop's settings, and where the requests go.
    ///
    /// # Errors
    /// The first problem with the headers (`validate` reports them all).
    pub(crate) fn build(self, endpoint: http::Uri) -> Result<(Settings, Endpoint), Problem> {
        let headers = self.headers.map_err(|problems| {
            problems
                .into_iter()
                .next()
                .unwrap_or_else(|| Problem::new("headers", "invalid header"))
        })?;
        let settings = Settings {
            peer: endpoint.to_string(),
            unit: self.unit,
            max_events: self.max_events.1.get(),
            batch_timeout: self.batch_timeout.get(),
            request_timeout: self.request_timeout.get(),
            retry: self.retry.policy(),
            rate: None,
            buffer: self.buffer.clone(),
            client: None,
        };
        Ok((
            settings,
            Endpoint {
                uri: endpoint,
                headers,
            },
        ))
    }
}

/// Where a sink's requests go, with every header they carry.
#[derive(Debug)]
pub(crate) struct Endpoint {
    uri: http::Uri,
    /// Configured values are marked sensitive.
    headers: http::HeaderMap,
}

impl Endpoint {
    /// Every header of a request.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }

    /// A POST of `body`.
    pub(crate) fn post(&self, body: Bytes) -> http::Request<Body> {
        let mut r = http::Request::new(Body::new(body));
        *r.method_mut() = http::Method::POST;
        *r.uri_mut() = self.uri.clone();
        *r.headers_mut() = self.headers.clone();
        r
    }
}
