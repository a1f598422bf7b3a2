//! Backlog pressure, node-wide: sinks report how full their buffers are,
//! and sources that can produce less (a scrape can come less often) read a
//! slowdown factor from it, so a long outage fills the buffer more slowly and
//! the backlog drains sooner once the peer is back.
//!
//! The factor follows the fullest buffer of the node, with a high-water mark
//! at half full and hysteresis so it does not flap:
//!
//! | fullest buffer | factor | back down once below |
//! |---|---|---|
//! | < 50 % | 1 | |
//! | ≥ 50 % | 2 | 40 % |
//! | ≥ 75 % | 4 | 65 % |
//! | ≥ 90 % | 8 | 80 % |
//!
//! One node, one factor: a backlog towards one peer slows every source that
//! takes part, whichever sink it feeds. Fine for an edge agent with one way
//! upstream, which is where it matters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// (fill at or above which the factor applies, the factor, fill below which
/// it is released), highest first.
const STEPS: [(f64, u32, f64); 3] = [(0.9, 8, 0.8), (0.75, 4, 0.65), (0.5, 2, 0.4)];

/// Shared by every component of a node; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Backlog(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Each reporting sink's latest fill, 0 to 1.
    fills: Mutex<BTreeMap<String, f64>>,
    factor: AtomicU32,
}

impl Backlog {
    /// Records that `sink`'s buffer is `fill` full (0 to 1). Returns the new
    /// factor when this changed it, so the caller can log and export it.
    pub fn report(&self, sink: &str, fill: f64) -> Option<u32> {
        let fill = if fill.is_finite() {
            fill.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mut fills = self.0.fills.lock().unwrap_or_else(|p| p.into_inner());
        if fills.get(sink) == Some(&fill) {
            return None;
        }
        fills.insert(sink.to_string(), fill);
        let fullest = fills.values().copied().fold(0.0, f64::max);
        let old = self.factor();
        let new = next_factor(old, fullest);
        drop(fills);
        (new != old).then(|| {
            self.0.factor.store(new, Ordering::Relaxed);
            new
        })
    }

    /// The fill of the node's fullest buffer, 0 to 1.
    pub fn fullest(&self) -> f64 {
        let fills = self.0.fills.lock().unwrap_or_else(|p| p.into_inner());
        fills.values().copied().fold(0.0, f64::max)
    }

    /// How many times less often sources should produce: 1, 2, 4 or 8.
    pub fn factor(&self) -> u32 {
        self.0.factor.load(Ordering::Relaxed).max(1)
    }
}

/// The factor after `current`, for the fullest buffer at `fill`.
fn next_factor(current: u32, fill: f64) -> u32 {
    for (on, factor, off) in STEPS {
        if fill >= on || (current >= factor && fill >= off) {
            return factor;
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_factor_rises_with_the_fullest_buffer_and_falls_with_hysteresis() {
        let b = Backlog::default();
        assert_eq!(b.factor(), 1);
        assert_eq!(b.report("a", 0.3), None);
        assert_eq!(b.report("a", 0.5), Some(2));
        assert_eq!(b.report("a", 0.45), None, "held above 40 %");
        assert_eq!(b.report("b", 0.95), Some(8));
        assert_eq!(b.report("b", 0.85), None);
        assert_eq!(b.report("b", 0.7), Some(4));
        assert_eq!(b.report("b", 0.0), Some(2), "a is still at 45 %");
        assert_eq!(b.report("a", 0.39), Some(1));
        assert_eq!(b.factor(), 1);
    }

    #[test]
    fn nonsense_fills_are_read_as_empty_or_full() {
        let b = Backlog::default();
        assert_eq!(b.report("a", 7.0), Some(8));
        assert_eq!(b.report("a", f64::NAN), Some(1));
        assert_eq!(b.report("a", -1.0), None);
    }

    #[test]
    fn each_step_has_its_thresholds() {
        let cases = [
            (1, 0.49, 1),
            (1, 0.5, 2),
            (1, 0.75, 4),
            (1, 0.9, 8),
            (2, 0.4, 2),
            (2, 0.39, 1),
            (4, 0.65, 4),
            (4, 0.64, 2),
            (8, 0.8, 8),
            (8, 0.79, 4),
        ];
        for (current, fill, want) in cases {
            assert_eq!(next_factor(current, fill), want, "{current} at {fill}");
        }
    }
}
