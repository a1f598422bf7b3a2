//! What a load run counts: events sent and acknowledged per signal, request
//! outcomes, and latencies as percentiles.

use serde_json::json;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Latencies in microseconds; percentiles are read at the end.
#[derive(Default)]
pub struct Latencies(Mutex<Vec<u32>>);

impl Latencies {
    pub fn record(&self, micros: u64, times: usize) {
        let v = u32::try_from(micros).unwrap_or(u32::MAX);
        if let Ok(mut all) = self.0.lock() {
            all.extend(std::iter::repeat_n(v, times));
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// p50, p90, p99 and the maximum, in milliseconds; `None` when empty.
    pub fn percentiles(&self) -> Option<[f64; 4]> {
        let mut v = self.0.lock().ok()?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |q: f64| {
            let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
            f64::from(v[i]) / 1000.0
        };
        Some([at(0.50), at(0.90), at(0.99), at(1.0)])
    }
}

/// Counters of one signal.
#[derive(Default)]
pub struct SignalCounts {
    pub generated: AtomicU64,
    pub acked: AtomicU64,
    pub refused: AtomicU64,
    pub received: AtomicU64,
    pub duplicates: AtomicU64,
}

#[derive(Default)]
pub struct Stats {
    /// metrics, logs, traces
    pub signals: [SignalCounts; 3],
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    /// Requests answered 409: the receiver had them (a retransmit).
    pub already_had: AtomicU64,
    pub errors: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Send until acknowledged, per event.
    pub ack_latency: Latencies,
    /// Generated (true time) until received at `--listen`, per event.
    pub end_to_end: Latencies,
}

pub const SIGNAL_NAMES: [&str; 3] = ["metrics", "logs", "traces"];

impl Stats {
    pub fn error(&self, what: impl Into<String>) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(what.into()).or_default() += 1;
        }
    }

    pub fn total(&self, f: impl Fn(&SignalCounts) -> &AtomicU64) -> u64 {
        self.signals
            .iter()
            .map(|s| f(s).load(Ordering::Relaxed))
            .sum()
    }

    /// The summary as printed at the end of a run.
    pub fn summary(&self, seconds: f64, listening: bool) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let per = |f: &dyn Fn(&SignalCounts) -> u64| {
            SIGNAL_NAMES
                .iter()
                .zip(&self.signals)
                .map(|(name, s)| format!("{} {name}", f(s)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let acked = self.total(|s| &s.acked);
        out.push_str(&format!(
            "generated: {}\nacked:     {} in {seconds:.1} s: {:.0} events/s\n",
            per(&|s| load(&s.generated)),
            per(&|s| load(&s.acked)),
            acked as f64 / seconds.max(1e-9)
        ));
        out.push_str(&format!(
            "requests:  {} sent, {} retried, {} already received (409), {} events refused\n",
            load(&self.requests),
            load(&self.retries),
            load(&self.already_had),
            self.total(|s| &s.refused)
        ));
        if let Ok(errors) = self.errors.lock()
            && !errors.is_empty()
        {
            let list: Vec<String> = errors.iter().map(|(k, v)| format!("{v}× {k}")).collect();
            out.push_str(&format!("errors:    {}\n", list.join("; ")));
        }
        if let Some(p) = self.ack_latency.percentiles() {
            out.push_str(&format!(
                "ack latency (sent → acknowledged): {}\n",
                fmt_p(p)
            ));
        }
        if listening {
            let received = self.total(|s| &s.received);
            out.push_str(&format!(
                "received at --listen: {} ({} lost of those acked, {} duplicates)\n",
                per(&|s| load(&s.received)),
                acked.saturating_sub(received),
                self.total(|s| &s.duplicates)
            ));
            if let Some(p) = self.end_to_end.percentiles() {
                out.push_str(&format!(
                    "end-to-end latency (generated → received): {}\n",
                    fmt_p(p)
                ));
            }
        }
        out
    }

    /// The same as JSON, for benchmark scripts.
    pub fn to_json(&self, seconds: f64) -> serde_json::Value {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let signals: serde_json::Map<String, serde_json::Value> = SIGNAL_NAMES
            .iter()
            .zip(&self.signals)
            .map(|(name, s)| {
                (
                    (*name).to_string(),
                    json!({
                        "generated": load(&s.generated),
                        "acked": load(&s.acked),
                        "refused": load(&s.refused),
                        "received": load(&s.received),
                        "duplicates": load(&s.duplicates),
                    }),
                )
            })
            .collect();
        let p = |l: &Latencies| {
            l.percentiles()
                .map(|[p50, p90, p99, max]| json!({"p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max}))
        };
        json!({
            "seconds": seconds,
            "signals": signals,
            "acked_per_second": self.total(|s| &s.acked) as f64 / seconds.max(1e-9),
            "requests": load(&self.requests),
            "retries": load(&self.retries),
            "already_received": load(&self.already_had),
            "errors": self.errors.lock().map(|e| e.clone()).unwrap_or_default(),
            "ack_latency": p(&self.ack_latency),
            "end_to_end_latency": p(&self.end_to_end),
        })
    }
}

fn fmt_p([p50, p90, p99, max]: [f64; 4]) -> String {
    format!("p50 {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {max:.1} ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_the_nearest_rank_values() {
        let l = Latencies::default();
        for ms in 1..=100u64 {
            l.record(ms * 1000, 1);
        }
        assert_eq!(l.percentiles(), Some([50.0, 90.0, 99.0, 100.0]));
        l.record(500_000, 100);
        assert_eq!(l.len(), 200);
        assert_eq!(l.percentiles(), Some([100.0, 500.0, 500.0, 500.0]));
        assert_eq!(Latencies::default().percentiles(), None);
    }
}
