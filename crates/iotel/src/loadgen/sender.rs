//! Simulated agents: each sends its devices' events as native batches,
//! retrying until acknowledged, as a real agent with a buffer does.

use super::fleet::{self, Device, Rates};
use super::stats::Stats;
use super::{CompressionArg, LoadgenArgs};
use anyhow::Context;
use bytes::Bytes;
use http_body_util::BodyExt;
use iotel_components::http_util::{self, Body, Client};
use iotel_components::native_protocol::{BATCH_PATH, LAST_SEQUENCE};
use iotel_formats::native::{self, Compression};
use iotel_model::{Events, Signal};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Where batches go, and how.
#[derive(Clone)]
pub struct Target {
    client: Client,
    endpoint: http::Uri,
    compression: Compression,
    bearer: Option<Arc<str>>,
}

impl Target {
    pub fn new(args: &LoadgenArgs) -> anyhow::Result<Target> {
        let target = args.target.as_deref().unwrap_or_default();
        let endpoint = http_util::parse_http_url_with_default_path(target, BATCH_PATH)
            .map_err(anyhow::Error::msg)
            .context("--target")?;
        let client = args.tls.client().map_err(anyhow::Error::msg)?;
        let bearer = match &args.bearer_token_file {
            Some(path) => Some(Arc::from(
                std::fs::read_to_string(path)
                    .with_context(|| format!("--bearer-token-file {}", path.display()))?
                    .trim(),
            )),
            None => None,
        };
        Ok(Target {
            client,
            endpoint,
            compression: match args.compression {
                CompressionArg::None => Compression::None,
                CompressionArg::Snappy => Compression::Snappy,
                CompressionArg::Zstd => Compression::Zstd,
                CompressionArg::Lz4 => Compression::Lz4,
            },
            bearer,
        })
    }

    pub fn endpoint(&self) -> String {
        self.endpoint.to_string()
    }

    /// Posts one frame; the receiver's status, or the error.
    async fn post(&self, frame: Bytes, sequence: u64) -> Result<u16, String> {
        let mut r = http::Request::new(Body::new(frame));
        *r.method_mut() = http::Method::POST;
        *r.uri_mut() = self.endpoint.clone();
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(native::CONTENT_TYPE),
        );
        h.insert(LAST_SEQUENCE, http::HeaderValue::from(sequence));
        if let Some(token) = &self.bearer
            && let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {token}"))
        {
            h.insert(http::header::AUTHORIZATION, v);
        }
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            let resp = self.client.request(r).await.map_err(|e| {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                msg
            })?;
            let status = resp.status().as_u16();
            // Read the answer to the end so the connection is reused.
            let _ = resp.into_body().collect().await;
            Ok(status)
        })
        .await;
        answer.unwrap_or_else(|_| Err("no answer within 10s".into()))
    }
}

/// One simulated agent and its devices.
pub struct Agent {
    pub id: String,
    pub devices: Vec<Device>,
    pub rng: fastrand::Rng,
    pub flapping: bool,
    pub rates: Rates,
    pub interval: Duration,
    pub offset: Duration,
}

/// A batch waiting to be acknowledged: its frame, sequence, signal, size
/// and when it was first tried.
struct Pending {
    frame: Bytes,
    sequence: u64,
    signal: usize,
    events: usize,
    since: Instant,
}

impl Agent {
    /// Generates and sends until `generate_until`, then sends what is left
    /// until `drain_until`.
    pub async fn run(
        mut self,
        target: Target,
        stats: Arc<Stats>,
        [started, generate_until, drain_until]: [Instant; 3],
    ) {
        // Sequences grow across runs with the same agent ids, so a
        // receiver's dedup window never takes a new run for a retransmit.
        let mut sequence = u64::try_from(iotel_model::now_unix_ms()).unwrap_or(0) * 1000;
        let mut queue: VecDeque<Pending> = VecDeque::new();
        let mut generated_all = false;
        let mut link_up = true;
        let mut link_flips_at = Instant::now() + self.link_period(true);
        let mut backoff = Duration::from_millis(50);
        tokio::time::sleep(self.offset).await;
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = Instant::now();
            if now >= drain_until {
                break;
            }
            if !generated_all {
                // The last tick generates up to the end of the run exactly.
                generated_all = now >= generate_until;
                let since_start = now.min(generate_until).duration_since(started);
                for events in self.generate(since_start.as_secs_f64()) {
                    let signal = signal_index(events.signal());
                    let n = events.len();
                    match native::encode(&self.id, sequence, &events, target.compression) {
                        Ok(frame) => {
                            stats.signals[signal]
                                .generated
                                .fetch_add(n as u64, Ordering::Relaxed);
                            queue.push_back(Pending {
                                frame: Bytes::from(frame),
                                sequence,
                                signal,
                                events: n,
                                since: now,
                            });
                            sequence += 1;
                        }
                        Err(e) => stats.error(format!("encode: {e}")),
                    }
                }
            }
            if self.flapping && now >= link_flips_at && now < generate_until {
                link_up = !link_up;
                link_flips_at = now + self.link_period(link_up);
            }
            if !link_up && now < generate_until {
                continue;
            }
            // Send oldest first until one is not acknowledged.
            while let Some(p) = queue.front() {
                if Instant::now() >= drain_until {
                    break;
                }
                stats.requests.fetch_add(1, Ordering::Relaxed);
                let counts = &stats.signals[p.signal];
                match target.post(p.frame.clone(), p.sequence).await {
                    Ok(200..=299) => {
                        counts.acked.fetch_add(p.events as u64, Ordering::Relaxed);
                        stats
                            .ack_latency
                            .record(p.since.elapsed().as_micros() as u64, p.events);
                    }
                    Ok(409) => {
                        stats.already_had.fetch_add(1, Ordering::Relaxed);
                        counts.acked.fetch_add(p.events as u64, Ordering::Relaxed);
                    }
                    Ok(status @ (429 | 500..=599)) => {
                        stats.error(format!("HTTP {status}"));
                        stats.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(self.jitter(backoff)).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        break;
                    }
                    Ok(status) => {
                        stats.error(format!("HTTP {status} (refused, not retried)"));
                        counts.refused.fetch_add(p.events as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        stats.error(e);
                        stats.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(self.jitter(backoff)).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        break;
                    }
                }
                backoff = Duration::from_millis(50);
                queue.pop_front();
            }
            if generated_all && queue.is_empty() {
                break;
            }
        }
    }

    /// Every device's events due `since_start` seconds into the run, one
    /// batch a signal.
    fn generate(&mut self, since_start: f64) -> Vec<Events> {
        let now = iotel_model::now_unix_ms();
        let mut out = fleet::Produced::default();
        for d in &mut self.devices {
            d.tick(&mut self.rng, self.rates, since_start, now, &mut out);
        }
        out.into_batches()
    }

    /// How long the link stays in its new state: up 5 to 30 s, down 1 to
    /// 10 s.
    fn link_period(&mut self, up: bool) -> Duration {
        let ms = if up {
            self.rng.u64(5_000..30_000)
        } else {
            self.rng.u64(1_000..10_000)
        };
        Duration::from_millis(ms)
    }

    fn jitter(&mut self, d: Duration) -> Duration {
        d.mul_f64(0.5 + self.rng.f64())
    }
}

pub fn signal_index(s: Signal) -> usize {
    match s {
        Signal::Metrics => 0,
        Signal::Logs => 1,
        Signal::Traces => 2,
    }
}
