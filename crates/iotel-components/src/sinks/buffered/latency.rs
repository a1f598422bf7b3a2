//! The latency a buffered sink adds: from a batch entering the sink's
//! buffer to the peer acknowledging the request that carried it (batching
//! wait, queueing behind a backlog, retries and the request itself),
//! weighted by events, exported as quantiles over a sliding minute:
//!
//! `iotel_sink_latency_seconds{component_id, quantile="0.5"|"0.9"|"0.99"}`
//!
//! The same window, one count per request, gives how long requests take
//! (from the moment a request was due, its reading back and encoding
//! included, to the answer):
//!
//! `iotel_sink_request_seconds{component_id, quantile="0.5"|"0.9"|"0.99"}`
//!
//! Latencies go into log-scale buckets 10% apart (1 ms to about 4.9 h), so
//! the memory is fixed (two windows of 176 counters) whatever the rate, and
//! a quantile is the geometric middle of its bucket: within 5% of the true
//! value. The minute is two half-minute windows: the quantiles cover the
//! current window and the one before it. With nothing delivered in that
//! minute the gauges read 0.

use iotel_engine::{Gauge, Registry};

const BUCKETS: usize = 176;
/// Each bucket's upper bound is this times the one before.
const GROWTH: f64 = 1.1;
/// A window's length; two make the minute quantiles cover.
const WINDOW_MS: u64 = 30_000;
pub(super) const QUANTILES: [(f64, &str); 3] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99")];

/// Event-weighted latency counts for one sink.
pub(super) struct LatencyWindow {
    /// [current, previous]
    counts: [[u64; BUCKETS]; 2],
    /// When the current window started, Unix ms.
    started_ms: u64,
    gauges: [Gauge; QUANTILES.len()],
}

impl LatencyWindow {
    /// The added latency of a sink's events.
    pub(super) fn new(registry: &Registry, component_id: &str, now_ms: u64) -> Self {
        Self::named(
            registry,
            "iotel_sink_latency_seconds",
            "Time from a batch entering a sink's buffer to the peer's acknowledgement, weighted \
             by events, over the last minute (within 5%).",
            component_id,
            now_ms,
        )
    }

    /// How long a sink's requests take.
    pub(super) fn requests(registry: &Registry, component_id: &str, now_ms: u64) -> Self {
        Self::named(
            registry,
            "iotel_sink_request_seconds",
            "Time a sink's delivered requests took, from due (reading back and encoding \
             included) to the peer's answer, over the last minute (within 5%).",
            component_id,
            now_ms,
        )
    }

    fn named(registry: &Registry, name: &str, help: &str, component_id: &str, now_ms: u64) -> Self {
        let gauge = |q: &str| {
            registry.gauge(
                name,
                help,
                &[("component_id", component_id), ("quantile", q)],
            )
        };
        Self {
            counts: [[0; BUCKETS]; 2],
            started_ms: now_ms,
            gauges: QUANTILES.map(|(_, q)| gauge(q)),
        }
    }

    /// Records `events` events delivered `latency_ms` after they were
    /// buffered.
    pub(super) fn record(&mut self, latency_ms: u64, events: usize, now_ms: u64) {
        self.rotate(now_ms);
        self.counts[0][bucket(latency_ms)] += events as u64;
    }

    /// Moves to a new window when the current one is over, and sets the
    /// gauges.
    pub(super) fn update(&mut self, now_ms: u64) {
        self.rotate(now_ms);
        for ((q, _), g) in QUANTILES.iter().zip(&self.gauges) {
            g.set(self.quantile(*q).unwrap_or(0.0));
        }
    }

    fn rotate(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.started_ms);
        if elapsed < WINDOW_MS {
            return;
        }
        self.counts[1] = if elapsed < 2 * WINDOW_MS {
            self.counts[0]
        } else {
            [0; BUCKETS]
        };
        self.counts[0] = [0; BUCKETS];
        self.started_ms = now_ms - elapsed % WINDOW_MS;
    }

    /// The `q` quantile in seconds: the geometric middle of the bucket it
    /// falls in; `None` with nothing recorded.
    pub(super) fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.counts.iter().flatten().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for b in 0..BUCKETS {
            seen += self.counts[0][b] + self.counts[1][b];
            if seen >= rank {
                return Some(middle_ms(b) / 1000.0);
            }
        }
        Some(middle_ms(BUCKETS - 1) / 1000.0)
    }
}

/// Bucket 0 holds up to 1 ms; bucket `b` up to 1.1^b ms; the last one
/// everything above.
fn bucket(latency_ms: u64) -> usize {
    if latency_ms <= 1 {
        return 0;
    }
    let b = ((latency_ms as f64).ln() / GROWTH.ln()).ceil() as usize;
    b.min(BUCKETS - 1)
}

fn upper_bound_ms(b: usize) -> f64 {
    GROWTH.powi(b as i32)
}

/// Bucket 0 reads as 1 ms; any other as the geometric middle of its bounds.
fn middle_ms(b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        upper_bound_ms(b) / GROWTH.sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_five_percent_of_the_true_value_and_weighted_by_events() {
        let registry = Registry::default();
        let mut w = LatencyWindow::new(&registry, "up", 0);
        assert_eq!(w.quantile(0.99), None);
        // 98 events at 20 ms, 2 at 400 ms: p50 20 ms, p99 400 ms.
        w.record(20, 98, 1);
        w.record(400, 2, 2);
        let p50 = w.quantile(0.5).unwrap();
        let p99 = w.quantile(0.99).unwrap();
        assert!((0.019..=0.021).contains(&p50), "{p50}");
        assert!((0.380..=0.420).contains(&p99), "{p99}");
        w.update(3);
        let snapshot = registry.snapshot();
        let got: Vec<(String, f64)> = snapshot
            .iter()
            .filter(|m| &*m.name == "iotel_sink_latency_seconds")
            .map(|m| (m.labels.get("quantile").unwrap_or("").to_string(), m.value))
            .collect();
        assert_eq!(got.len(), 3);
        assert!(got.contains(&("0.99".to_string(), p99)), "{got:?}");
    }

    #[test]
    fn what_was_delivered_more_than_a_minute_ago_is_forgotten() {
        let mut w = LatencyWindow::new(&Registry::default(), "up", 0);
        w.record(5_000, 10, 1_000);
        // Still counted in the previous window…
        w.record(10, 10, 31_000);
        assert!(w.quantile(0.99).unwrap() >= 4.75);
        // …and gone two windows on, while the later one stays a window more.
        w.update(61_000);
        assert!(w.quantile(0.99).unwrap() <= 0.011);
        w.update(95_000);
        assert_eq!(w.quantile(0.99), None);
    }

    #[test]
    fn buckets_cover_sub_millisecond_to_hours_without_overflow() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        for ms in [2, 10, 99, 1_000, 60_000, 3_600_000] {
            let b = bucket(ms);
            assert!(upper_bound_ms(b) >= ms as f64, "{ms}");
            assert!(upper_bound_ms(b) <= ms as f64 * GROWTH + 1e-9, "{ms}");
        }
    }
}
