//! `prometheus_exporter`: serves the latest sample of every series it
//! receives on `GET /metrics`, for Prometheus to scrape.
//!
//! - One sample per series (name + labels): a newer sample replaces the one
//!   held, whatever its timestamp (a device whose clock stepped back must not
//!   freeze its series).
//! - A series not updated for `staleness` leaves the exposition, as it would
//!   go stale in Prometheus. Stale series are swept on each scrape, and when
//!   the store is full before a new series is refused.
//! - At most `max_series` series are held; a new series past that is dropped
//!   and counted (`iotel_component_discarded_events_total{reason="max_series"}`).
//! - The answer is text 0.0.4 or OpenMetrics by the scrape's `Accept` header,
//!   series in the order they were first seen, grouped by family.
//!
//! - With `tls` (the listener table of `crate::tls::server`) the endpoint
//!   speaks HTTPS only; with a `ca_file` in it, scrapers must present a
//!   client certificate that chains to it. The files are reloaded when they
//!   change, and `iotel_tls_cert_expiry_seconds` tells when they expire.
//!   Without `tls`, an address other than a loopback one needs
//!   `plaintext = true`.
//!
//! - A metric family retired through the node API (`DELETE
//!   /api/v1/metrics/{name}`) leaves the exposition at the next scrape, not
//!   after `staleness`; samples of it still on their way are dropped on
//!   arrival. Once it is enabled again, its series come back with their next
//!   samples.
//!
//! The HTTP server starts when the sink runs and stops when its input closes.

use crate::http_util::{self, Body};
use crate::{BuildContext, Problem};
use iotel_engine::config::Duration;
use iotel_engine::families::Retired;
use iotel_engine::{ComponentError, ComponentFuture, Sink, SinkContext};
use iotel_formats::prometheus::encode::{EncodeOptions, encode, negotiate};
use iotel_model::{Events, Labels, Metric};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::net::TcpListener;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen, e.g. `127.0.0.1:9598`.
    pub address: SocketAddr,
    /// A series not updated for this long leaves the exposition.
    #[serde(default = "default_staleness")]
    pub staleness: Duration,
    /// Expose each sample's own timestamp; off, Prometheus stamps samples
    /// with its scrape time.
    #[serde(default)]
    pub timestamps: bool,
    /// Series held at most; new series past this are dropped and counted.
    #[serde(default = "default_max_series")]
    pub max_series: NonZeroUsize,
    /// HTTPS, with client certificates when it has a `ca_file`.
    #[serde(default)]
    pub tls: Option<Box<crate::tls::ServerTls>>,
    /// Without `tls`, serve unencrypted on an address other than a
    /// loopback one.
    #[serde(default)]
    pub plaintext: bool,
}

fn default_staleness() -> Duration {
    Duration::from_secs(300)
}

fn default_max_series() -> NonZeroUsize {
    NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN)
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.staleness.get().is_zero() {
            p.push(Problem::new(
                "staleness",
                "expected a duration above 0s, such as \"5m\"",
            ));
        }
        p.extend(crate::tls::server::validate_listener(
            self.tls.as_deref(),
            None,
        ));
        p.extend(crate::tls::server::validate_plaintext(
            "address",
            self.address,
            self.tls.is_some(),
            self.plaintext,
        ));
        p
    }

    /// # Errors
    /// A `tls` file that cannot be read or does not fit; the address is
    /// bound when the sink runs.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, Problem> {
        let mut exporter = self.exporter();
        exporter.tls = self.listener_tls(cx)?;
        Ok(Box::new(exporter))
    }

    #[cfg(feature = "tls")]
    fn listener_tls(&self, cx: &BuildContext) -> Result<Option<http_util::Tls>, Problem> {
        self.tls
            .as_ref()
            .map(|t| t.build("tls", cx, &[b"http/1.1"]))
            .transpose()
    }

    #[cfg(not(feature = "tls"))]
    fn listener_tls(&self, _cx: &BuildContext) -> Result<Option<http_util::Tls>, Problem> {
        match self.tls {
            Some(_) => Err(Problem::new("tls", crate::tls::NOT_BUILT_IN)),
            None => Ok(None),
        }
    }

    fn exporter(&self) -> Exporter {
        Exporter {
            address: self.address,
            staleness: self.staleness.get(),
            timestamps: self.timestamps,
            max_series: self.max_series.get(),
            tls: None,
        }
    }
}

#[derive(Debug)]
struct Exporter {
    address: SocketAddr,
    staleness: std::time::Duration,
    timestamps: bool,
    max_series: usize,
    tls: Option<http_util::Tls>,
}

impl Sink for Exporter {
    fn run(self: Box<Self>, cx: SinkContext) -> ComponentFuture {
        Box::pin(async move {
            let listener = http_util::bind(self.address)
                .await
                .map_err(ComponentError::new)?;
            self.serve(listener, cx).await
        })
    }
}

impl Exporter {
    /// Serves scrapes on `listener` while storing what arrives, until the
    /// input closes.
    async fn serve(self, listener: TcpListener, mut cx: SinkContext) -> Result<(), ComponentError> {
        let store = Arc::new(SharedStore(Mutex::new(Store::new(
            self.max_series,
            self.staleness,
        ))));
        let opts = EncodeOptions {
            timestamps: self.timestamps,
        };
        let address = listener.local_addr().unwrap_or(self.address);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(
            component = cx.metrics.id(),
            "serving metrics on {scheme}://{address}/metrics"
        );
        crate::tls::server::warn_plaintext(cx.metrics.id(), address, self.tls.is_some());
        let (stop, stopped) = iotel_engine::shutdown::channel();
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            tokio::spawn(tls.clone().watch(stopped.clone()));
        }
        let families = cx.registry().families().clone();
        let server = tokio::spawn(http_util::serve_with(listener, stopped, self.tls, {
            let store = store.clone();
            move |req| {
                let store = store.clone();
                let retired = families.retired();
                async move { scrape(&req, &store, retired.as_deref(), &opts) }
            }
        }));
        let max_series_drops = cx.metrics.discards("max_series");
        let mut warned = false;
        while let Some(events) = cx.input.recv().await {
            let Events::Metrics(mut batch) = events else {
                // The graph sends this sink metrics only.
                cx.metrics.discarded("unsupported_signal", events.len());
                continue;
            };
            // Retired after these left their source: dropped here too.
            if let Some(retired) = cx.registry().families().retired() {
                let before = batch.len();
                batch.retain(|m| !retired.covers(m));
                if batch.len() < before {
                    cx.metrics.discarded("retired", before - batch.len());
                }
            }
            let (stored, dropped) = store.lock().insert(batch, Instant::now());
            cx.metrics.sent(stored);
            if dropped > 0 {
                max_series_drops.add(dropped as u64);
                if !warned {
                    warned = true;
                    tracing::warn!(
                        component = cx.metrics.id(),
                        "holding max_series = {} series; new series are dropped \
                         (counted as discarded, reason \"max_series\")",
                        self.max_series
                    );
                }
            }
        }
        stop.trigger();
        if let Err(e) = server.await {
            return Err(ComponentError::new(format!(
                "the HTTP server on {address} failed: {e}"
            )));
        }
        Ok(())
    }
}

/// Answers one request: the exposition on `/metrics` and `/`.
fn scrape<B>(
    req: &http::Request<B>,
    store: &SharedStore,
    retired: Option<&Retired>,
    opts: &EncodeOptions,
) -> http::Response<Body> {
    if !matches!(req.uri().path(), "/metrics" | "/") {
        return http_util::response(404, "text/plain", "not found: try /metrics\n");
    }
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        let mut r = http_util::response(405, "text/plain", "method not allowed: use GET\n");
        r.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = negotiate(accept);
    let metrics = {
        let mut store = store.lock();
        if let Some(retired) = retired {
            store.forget_retired(retired);
        }
        store.snapshot(Instant::now())
    };
    let mut body = String::new();
    encode(&metrics, format, opts, &mut body);
    http_util::response(200, format.content_type(), body)
}

#[derive(Debug)]
struct SharedStore(Mutex<Store>);

impl SharedStore {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters: at worst one sample is missing.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    name: Arc<str>,
    labels: Labels,
}

#[derive(Debug)]
struct Entry {
    metric: Metric,
    updated: Instant,
    /// When the series was first seen, for a stable exposition order.
    seq: u64,
}

/// The latest sample of every series, without I/O: time is passed in.
#[derive(Debug)]
struct Store {
    series: HashMap<SeriesKey, Entry>,
    next_seq: u64,
    max_series: usize,
    staleness: std::time::Duration,
}

impl Store {
    fn new(max_series: usize, staleness: std::time::Duration) -> Self {
        Self {
            series: HashMap::new(),
            next_seq: 0,
            max_series,
            staleness,
        }
    }

    /// Stores a batch received at `now`; returns how many samples were
    /// stored and how many new series were dropped for `max_series`.
    fn insert(&mut self, batch: Vec<Metric>, now: Instant) -> (usize, usize) {
        let (mut stored, mut dropped) = (0, 0);
        let mut swept = false;
        for metric in batch {
            let key = SeriesKey {
                name: metric.name.clone(),
                labels: metric.labels.clone(),
            };
            if let Some(e) = self.series.get_mut(&key) {
                // A series keeps its last exemplar until a newer one comes,
                // as client libraries do: the bucket a slow request fell in
                // still leads to its trace after later samples without one.
                let kept = match metric.exemplar {
                    None => e.metric.exemplar.take(),
                    Some(_) => None,
                };
                e.metric = metric;
                if kept.is_some() {
                    e.metric.exemplar = kept;
                }
                e.updated = now;
                stored += 1;
                continue;
            }
            if self.series.len() >= self.max_series && !swept {
                self.sweep(now);
                swept = true;
            }
            if self.series.len() >= self.max_series {
                dropped += 1;
                continue;
            }
            self.series.insert(
                key,
                Entry {
                    metric,
                    updated: now,
                    seq: self.next_seq,
                },
            );
            self.next_seq += 1;
            stored += 1;
        }
        (stored, dropped)
    }

    /// Forgets series not updated for `staleness` before `now`.
    fn sweep(&mut self, now: Instant) {
        let staleness = self.staleness;
        self.series
            .retain(|_, e| now.saturating_duration_since(e.updated) < staleness);
    }

    /// Forgets the series of retired families.
    fn forget_retired(&mut self, retired: &Retired) {
        self.series.retain(|_, e| !retired.covers(&e.metric));
    }

    /// The live series at `now`, in first-seen order.
    fn snapshot(&mut self, now: Instant) -> Vec<Metric> {
        self.sweep(now);
        let mut entries: Vec<&Entry> = self.series.values().collect();
        entries.sort_unstable_by_key(|e| e.seq);
        entries.into_iter().map(|e| e.metric.clone()).collect()
    }
}

#[cfg(test)]
mod tests;
#[cfg(all(test, feature = "tls"))]
mod tls_tests;
