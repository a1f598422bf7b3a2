//! `--listen`: takes native batches from the last hop of the chain under
//! test, counts what arrives (and what arrives twice), and measures the
//! end-to-end latency of each event from its true generation time.

use super::fleet;
use super::sender::signal_index;
use super::stats::Stats;
use http_body_util::BodyExt;
use iotel_components::http_util::{self, response};
use iotel_engine::{ShutdownTrigger, shutdown};
use iotel_formats::native;
use iotel_model::{EventRef, Events};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

pub struct Receiver {
    stop: ShutdownTrigger,
}

impl Receiver {
    pub fn stop(&self) {
        self.stop.trigger();
    }
}

/// Listens on `addr`; `drifts` is each device's clock drift in ms.
pub async fn start(
    addr: SocketAddr,
    stats: Arc<Stats>,
    drifts: Arc<Vec<i64>>,
) -> anyhow::Result<Receiver> {
    let listener = http_util::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {addr}: {e}"))?;
    let (stop, stopped) = shutdown::channel();
    let seen: Arc<Seen> = Arc::new((0..SEEN_SHARDS).map(|_| Mutex::default()).collect());
    tokio::spawn(http_util::serve(listener, stopped, move |req| {
        let (stats, drifts, seen) = (stats.clone(), drifts.clone(), seen.clone());
        async move {
            let Ok(body) = req.into_body().collect().await else {
                return response(400, "text/plain", "cannot read the body\n");
            };
            match native::decode(&body.to_bytes(), &native::Limits::default()) {
                Ok(batch) => {
                    take(&batch.events, &stats, &drifts, &seen);
                    response(200, "text/plain", "")
                }
                Err(e) => {
                    stats.error(format!("--listen got a bad batch: {e}"));
                    response(400, "text/plain", format!("{e}\n"))
                }
            }
        }
    }));
    eprintln!("loadgen: receiving native batches on http://{addr}");
    Ok(Receiver { stop })
}

/// Every event received so far, by a hash of what identifies it, in shards:
/// a set of millions that doubles rehashes them all at once, which would
/// hold up the request that caused it (and show as the sender's latency).
type Seen = Vec<Mutex<HashSet<u64>>>;

const SEEN_SHARDS: usize = 256;

fn take(events: &Events, stats: &Stats, drifts: &[i64], seen: &Seen) {
    let signal = signal_index(events.signal());
    let counts = &stats.signals[signal];
    let now_ms = iotel_model::now_unix_ms();
    let mut latencies = Vec::with_capacity(events.len());
    let mut keys = Vec::with_capacity(events.len());
    events.for_each(|e| {
        let device = e.labels().get("device_id").and_then(fleet::device_index);
        let drift = device.and_then(|i| drifts.get(i)).copied().unwrap_or(0);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        e.labels().get("device_id").hash(&mut h);
        let device_ms = match e {
            EventRef::Metric(m) => {
                m.name.hash(&mut h);
                m.timestamp_ms.hash(&mut h);
                m.timestamp_ms
            }
            EventRef::Log(l) => {
                l.fields.get("seq").map(ToString::to_string).hash(&mut h);
                l.timestamp_ns / 1_000_000
            }
            EventRef::Span(s) => {
                s.span_id.hash(&mut h);
                s.end_ns / 1_000_000
            }
        };
        keys.push(h.finish());
        let generated = device_ms - drift;
        latencies.push(u64::try_from((now_ms - generated).max(0)).unwrap_or(0) * 1000);
    });
    let duplicates = keys
        .into_iter()
        .filter(|k| {
            let shard = &seen[(*k >> 56) as usize % SEEN_SHARDS];
            shard.lock().is_ok_and(|mut s| !s.insert(*k))
        })
        .count();
    counts
        .received
        .fetch_add(latencies.len() as u64, Ordering::Relaxed);
    counts
        .duplicates
        .fetch_add(duplicates as u64, Ordering::Relaxed);
    for l in latencies {
        stats.end_to_end.record(l, 1);
    }
}
