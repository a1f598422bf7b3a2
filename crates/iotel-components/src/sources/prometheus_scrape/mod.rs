//! `prometheus_scrape`: scrapes Prometheus and OpenMetrics endpoints, as
//! Prometheus does.
//!
//! Each target is scraped every `interval` with a `timeout`. The body is
//! parsed as it streams in and sent downstream in chunks, so a large
//! exposition is never held whole.
//!
//! The timeout is one deadline, set when the scrape starts, on the request
//! and on each read of the body — never on sending downstream: a slow
//! consumer holds the scrape back (that is backpressure), it does not make a
//! healthy target `up 0`. When the deadline passes mid-body, the samples
//! already parsed are still sent (each is a complete line, as valid as the
//! ones sent before it), a line cut off by the deadline is not, and the
//! target is `up 0`. `scrape_samples_scraped` counts the samples sent
//! downstream, also when the scrape failed part-way. Every sample gets `job` and `instance`
//! labels; a sample that already has one keeps its value as `exported_job` /
//! `exported_instance` (Prometheus' `honor_labels = false`). The target's
//! parser adds them, so its series cache holds each series' final label set,
//! built once. After each scrape the target's `up`, `scrape_duration_seconds`
//! and `scrape_samples_scraped` are emitted, as Prometheus records them.
//!
//! With `adapt_to_backlog` (the default) a target is scraped only every 2nd,
//! 4th or 8th interval while the node's backlog factor says so (a sink's
//! buffer is filling up during an outage; see `iotel_engine::backlog`);
//! `iotel_scrape_interval_seconds` shows the interval in force.
//!
//! `https://` targets are scraped over TLS: with the system's trust roots,
//! or with the `tls` table (`crate::tls::ClientTls`: `ca_file`, a client
//! certificate in `cert_file` + `key_file`, `server_name`), whose files are
//! read again when they change (new connections use them) and whose
//! certificates' expiry is exported as `iotel_tls_cert_expiry_seconds`. A
//! plain `http://` target on another host is scraped as asked, with a
//! warning at start.

use crate::http_util::{self, Body};
use crate::{BuildContext, Problem};
use bytes::Bytes;
use http_body_util::BodyExt;
use iotel_engine::config::Duration;
use iotel_engine::{ComponentFuture, ComponentMetrics, Output, Shutdown, Source, SourceContext};
use iotel_formats::prometheus::Format;
use iotel_formats::prometheus::parse::{ParseError, Parser};
use iotel_model::{Events, Labels, Metric, MetricMeta, MetricType, now_unix_ms};
use serde::Deserialize;
use std::sync::Arc;

/// What Prometheus 2.x sends: OpenMetrics preferred, text 0.0.4 accepted.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Samples sent downstream per batch while a body streams in.
const CHUNK_SAMPLES: usize = 1000;

const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
const MAX_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// URLs to scrape, e.g. `http://127.0.0.1:9100/metrics`.
    pub targets: Vec<String>,
    /// Time between scrapes of a target: 1s to 5m.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// How long a scrape may take; at most `interval`. Default: 10s or `interval`, whichever is shorter.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// The `job` label; default: the component id.
    #[serde(default)]
    pub job: Option<String>,
    /// Keep the timestamps an exposition carries (true) or stamp every sample with the scrape time.
    #[serde(default = "default_true")]
    pub honor_timestamps: bool,
    /// Scrape less often while a sink's buffer of this node fills up (see
    /// `iotel_engine::backlog`): every 2nd, 4th or 8th interval.
    #[serde(default = "default_true")]
    pub adapt_to_backlog: bool,
    /// TLS for the `https://` targets: a private CA, a client certificate.
    #[serde(default)]
    pub tls: Option<crate::tls::ClientTls>,
}

fn default_interval() -> Duration {
    Duration::from_secs(15)
}

fn default_true() -> bool {
    true
}

/// A target URL that validated: `http://host[:port]/path`.
#[derive(Debug, Clone)]
struct Target {
    uri: http::Uri,
    /// `host:port`, the `instance` label.
    instance: String,
}

fn parse_target(url: &str) -> Result<Target, String> {
    let uri = http_util::parse_http_url(url)?;
    let default_port = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let instance = format!(
        "{}:{}",
        uri.host().unwrap_or_default(),
        uri.port_u16().unwrap_or(default_port)
    );
    Ok(Target { uri, instance })
}

impl Config {
    fn timeout(&self) -> std::time::Duration {
        self.timeout
            .map(Duration::get)
            .unwrap_or_else(|| self.interval.get().min(std::time::Duration::from_secs(10)))
    }

    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.targets.is_empty() {
            p.push(Problem::new(
                "targets",
                "expected at least one URL to scrape",
            ));
        }
        for (i, t) in self.targets.iter().enumerate() {
            if let Err(e) = parse_target(t) {
                p.push(Problem::new(format!("targets[{i}]"), e));
            }
        }
        if let Some(tls) = &self.tls {
            if cfg!(feature = "tls") {
                p.extend(tls.validate("tls"));
            } else {
                p.push(Problem::new("tls", crate::tls::NOT_BUILT_IN));
            }
            let https = self.targets.iter().any(|t| {
                t.get(..8)
                    .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
            });
            if !https && !self.targets.is_empty() {
                p.push(Problem::new(
                    "tls",
                    "no target is https://: the tls table applies to https:// targets only",
                ));
            }
        }
        if self.job.as_deref() == Some("") {
            p.push(Problem::new(
                "job",
                "expected a non-empty job name (or leave it out to use the component id)",
            ));
        }
        let iv = self.interval.get();
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&iv) {
            p.push(Problem::new(
                "interval",
                format!("expected between 1s and 5m, got {}", self.interval),
            ));
        }
        if let Some(t) = self.timeout
            && (t.get().is_zero() || t.get() > iv)
        {
            p.push(Problem::new(
                "timeout",
                format!(
                    "expected more than 0s and at most the interval ({}), got {t}",
                    self.interval
                ),
            ));
        }
        p
    }

    /// # Errors
    /// A target that does not parse (already refused by `validate`).
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
        let targets = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| parse_target(t).map_err(|e| Problem::new(format!("targets[{i}]"), e)))
            .collect::<Result<Vec<_>, _>>()?;
        let client = http_util::client_for(self.tls.as_ref(), cx)?;
        Ok(Box::new(Scrape {
            client,
            targets,
            interval: self.interval.get(),
            timeout: self.timeout(),
            job: self.job.clone().unwrap_or_else(|| cx.id.clone()),
            honor_timestamps: self.honor_timestamps,
            adapt_to_backlog: self.adapt_to_backlog,
        }))
    }
}

#[derive(Debug)]
struct Scrape {
    /// The client of the `tls` table; `None`: the system's roots.
    client: Option<http_util::Client>,
    targets: Vec<Target>,
    interval: std::time::Duration,
    timeout: std::time::Duration,
    job: String,
    honor_timestamps: bool,
    adapt_to_backlog: bool,
}

impl Source for Scrape {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture {
        Box::pin(async move {
            let client = self.client.unwrap_or_else(http_util::client);
            let mut tasks = tokio::task::JoinSet::new();
            for target in self.targets {
                http_util::warn_if_plaintext(cx.metrics.id(), &target.uri);
                let scraper = TargetScraper::new(
                    target,
                    &self.job,
                    self.honor_timestamps,
                    self.timeout,
                    client.clone(),
                );
                tasks.spawn(scraper.run(
                    Cadence {
                        interval: self.interval,
                        adapt: self.adapt_to_backlog,
                    },
                    cx.out.clone(),
                    cx.shutdown.clone(),
                    cx.metrics.clone(),
                ));
            }
            while tasks.join_next().await.is_some() {}
            Ok(())
        })
    }
}

/// When a target is scraped.
#[derive(Debug, Clone, Copy)]
struct Cadence {
    interval: std::time::Duration,
    /// Whether to stretch the interval by the node's backlog factor.
    adapt: bool,
}

/// Why a scrape did not complete.
#[derive(Debug)]
enum ScrapeError {
    Failed(String),
    /// The deadline passed during the request or a read of the body.
    TimedOut,
}

/// What one scrape did: the samples it sent downstream, and its error.
#[derive(Debug)]
struct Scraped {
    sent: u64,
    error: Option<ScrapeError>,
}

/// The outcome of one scrape, for the synthetic series.
#[derive(Debug, Default)]
struct Report {
    up: bool,
    samples: u64,
    duration_s: f64,
}

struct TargetScraper {
    target: Target,
    /// `job` and `instance`, the labels of the synthetic series.
    target_labels: Labels,
    honor_timestamps: bool,
    timeout: std::time::Duration,
    client: http_util::Client,
    /// Adds `job` and `instance` to every sample.
    parser: Parser,
    up: Arc<MetricMeta>,
    duration: Arc<MetricMeta>,
    scraped: Arc<MetricMeta>,
}

impl std::fmt::Debug for TargetScraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetScraper")
            .field("target", &self.target)
            .finish()
    }
}

impl TargetScraper {
    fn new(
        target: Target,
        job: &str,
        honor_timestamps: bool,
        timeout: std::time::Duration,
        client: http_util::Client,
    ) -> Self {
        let target_labels = [("job", job), ("instance", target.instance.as_str())];
        let mut parser = Parser::new(Format::Text);
        parser.set_target_labels(&target_labels);
        Self {
            // As the parser does, and Prometheus: an empty value is no label.
            target_labels: Labels::from_pairs(
                target_labels.into_iter().filter(|(_, v)| !v.is_empty()),
            ),
            target,
            honor_timestamps,
            timeout,
            client,
            parser,
            up: Arc::new(
                MetricMeta::new("up", MetricType::Gauge)
                    .with_help("1 if the last scrape of the target succeeded, else 0."),
            ),
            duration: Arc::new(
                MetricMeta::new("scrape_duration_seconds", MetricType::Gauge)
                    .with_help("How long the last scrape took."),
            ),
            scraped: Arc::new(
                MetricMeta::new("scrape_samples_scraped", MetricType::Gauge)
                    .with_help("Samples the last scrape returned."),
            ),
        }
    }

    async fn run(
        mut self,
        cadence: Cadence,
        mut out: Output,
        mut shutdown: Shutdown,
        metrics: ComponentMetrics,
    ) {
        let mut tick = tokio::time::interval(cadence.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let effective = metrics.registry().gauge(
            "iotel_scrape_interval_seconds",
            "The time between scrapes of a target now: the configured interval, stretched while a \
             sink's buffer fills up.",
            &[
                ("component_id", metrics.id()),
                ("target", &self.target.uri.to_string()),
            ],
        );
        let mut factor = 1;
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => {}
            }
            let now = if cadence.adapt {
                metrics.registry().backlog().factor()
            } else {
                1
            };
            if now != factor {
                factor = now;
                tracing::info!(
                    target = %self.target.uri,
                    "scraping every {:?} (backlog slowdown ×{factor})",
                    cadence.interval * factor
                );
            }
            effective.set((cadence.interval * factor).as_secs_f64());
            ticks += 1;
            if !(ticks - 1).is_multiple_of(u64::from(factor)) {
                continue;
            }
            let started = tokio::time::Instant::now();
            let start_ms = now_unix_ms();
            let deadline = started + self.timeout;
            let outcome = self.scrape(start_ms, deadline, &mut out, &metrics).await;
            let report = Report {
                duration_s: started.elapsed().as_secs_f64(),
                up: outcome.error.is_none(),
                samples: outcome.sent,
            };
            match outcome.error {
                None => {}
                Some(ScrapeError::Failed(e)) => {
                    metrics.error("scrape_failed");
                    tracing::warn!(target = %self.target.uri, "scrape failed: {e}");
                }
                Some(ScrapeError::TimedOut) => {
                    metrics.error("scrape_timeout");
                    tracing::warn!(target = %self.target.uri, "scrape timed out after {:?}", self.timeout);
                }
            }
            let synthetic = self.report(&report, start_ms);
            if !out.send(Events::Metrics(synthetic)).await {
                return;
            }
        }
    }

    fn report(&self, r: &Report, ts: i64) -> Vec<Metric> {
        [
            (&self.up, if r.up { 1.0 } else { 0.0 }),
            (&self.duration, r.duration_s),
            (&self.scraped, r.samples as f64),
        ]
        .into_iter()
        .map(|(meta, value)| Metric {
            name: meta.family.clone(),
            labels: self.target_labels.clone(),
            value,
            timestamp_ms: ts,
            meta: meta.clone(),
            exemplar: None,
        })
        .collect()
    }

    /// Scrapes once, sending samples downstream as they parse. `deadline`
    /// bounds the request and each read of the body, not the sending.
    async fn scrape(
        &mut self,
        start_ms: i64,
        deadline: tokio::time::Instant,
        out: &mut Output,
        metrics: &ComponentMetrics,
    ) -> Scraped {
        let mut sent = 0;
        let error = self
            .scrape_into(start_ms, deadline, out, metrics, &mut sent)
            .await
            .err();
        Scraped { sent, error }
    }

    /// The scrape, adding to `sent` as samples go downstream.
    async fn scrape_into(
        &mut self,
        start_ms: i64,
        deadline: tokio::time::Instant,
        out: &mut Output,
        metrics: &ComponentMetrics,
        sent: &mut u64,
    ) -> Result<(), ScrapeError> {
        let failed = ScrapeError::Failed;
        let req = http::Request::get(self.target.uri.clone())
            .header(http::header::ACCEPT, ACCEPT)
            .header(http::header::USER_AGENT, http_util::USER_AGENT)
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", self.timeout.as_secs_f64()),
            )
            .body(Body::new(Bytes::new()))
            .map_err(|e| failed(e.to_string()))?;
        let resp = tokio::time::timeout_at(deadline, self.client.request(req))
            .await
            .map_err(|_| ScrapeError::TimedOut)?
            .map_err(|e| failed(format!("request failed: {e}")))?;
        if !resp.status().is_success() {
            return Err(failed(format!(
                "server returned HTTP status {}",
                resp.status()
            )));
        }
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/plain");
        self.parser
            .reset(Format::from_content_type(content_type), start_ms);
        let mut body = resp.into_body();
        let mut samples = Vec::with_capacity(CHUNK_SAMPLES);
        let mut errors = Vec::new();
        loop {
            // `Some` once the body ended, well or not. On an error the
            // parser is not finished: a line cut off mid-way (`temp 21` of
            // `temp 21.5`) would parse as a wrong sample.
            let end = match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Some(chunk) = frame.data_ref() {
                        self.parser.feed(chunk, &mut samples, &mut errors);
                    }
                    None
                }
                Ok(Some(Err(e))) => Some(Err(failed(format!("reading the body failed: {e}")))),
                Ok(None) => {
                    self.parser.finish(&mut samples, &mut errors);
                    Some(Ok(()))
                }
                Err(_) => Some(Err(ScrapeError::TimedOut)),
            };
            self.report_parse_errors(&mut errors, metrics);
            if samples.len() >= CHUNK_SAMPLES || (end.is_some() && !samples.is_empty()) {
                *sent += samples.len() as u64;
                let batch = std::mem::replace(&mut samples, Vec::with_capacity(CHUNK_SAMPLES));
                out.send(Events::Metrics(self.stamp(batch, start_ms))).await;
            }
            if let Some(result) = end {
                return result;
            }
        }
    }

    fn report_parse_errors(&self, errors: &mut Vec<ParseError>, metrics: &ComponentMetrics) {
        if errors.is_empty() {
            return;
        }
        metrics.errors("parse_error").add(errors.len() as u64);
        for e in errors.iter().take(3) {
            tracing::warn!(target = %self.target.uri, "malformed exposition: {e}");
        }
        if errors.len() > 3 {
            tracing::warn!(target = %self.target.uri, "{} more malformed lines in this chunk", errors.len() - 3);
        }
        errors.clear();
    }

    /// Stamps every sample with the scrape time unless timestamps are
    /// honoured (`job` and `instance` are already there: the parser adds
    /// them).
    fn stamp(&self, mut samples: Vec<Metric>, start_ms: i64) -> Vec<Metric> {
        if !self.honor_timestamps {
            for m in &mut samples {
                m.timestamp_ms = start_ms;
            }
        }
        samples
    }
}

#[cfg(test)]
mod tests;
#[cfg(all(test, feature = "tls"))]
mod tls_tests;
