//! The per-series streaming detectors. Each scores a sample against what
//! the series' past says to expect, then learns from it:
//!
//! - `zscore`: the median and the MAD (median absolute deviation) of the
//!   last `window` samples; score = |x − median| / (1.4826 · MAD). Robust:
//!   a spike moves neither the median nor the MAD much.
//! - `ewma`: an exponentially weighted mean and variance (weight `alpha`);
//!   score = |x − mean| / σ. The cheapest; follows a slow drift.
//! - `seasonal`: a robust baseline per bucket of the period (e.g. 24 hourly
//!   buckets of a day): each bucket keeps a level, the series one mean
//!   absolute deviation from those levels, both learnt with residuals
//!   clipped at `threshold` deviations so an anomaly does not drag the
//!   baseline; score = |x − level| / (1.2533 · deviation). Sees a value
//!   that is normal at noon but not at midnight.
//!
//! Every scale has a floor, so a constant series (MAD 0) gets a finite
//! score: `max(min_deviation, 0.001 · |expected|)`. Only finite values
//! reach a detector (the transform skips NaN and ±∞ and counts them).
//! State is fixed per series: `window` f32 values twice for `zscore`, three
//! numbers for `ewma`, six bytes per bucket for `seasonal`.

/// What a detector says of one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Deviations from the expected value, ≥ 0, finite.
    pub score: f64,
    pub expected: f64,
    /// Whether the detector had `min_samples` to judge by.
    pub ready: bool,
}

/// The parameters a rule gives its detectors.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub window: usize,
    pub min_samples: u32,
    pub alpha: f64,
    pub threshold: f64,
    pub min_deviation: f64,
    /// Seasonal: the period, in ms, and its buckets.
    pub period_ms: i64,
    pub buckets: usize,
}

/// One series' detector state.
#[derive(Debug, Clone)]
pub enum Detector {
    ZScore(Window),
    Ewma(Ewma),
    Seasonal(Seasonal),
}

impl Detector {
    /// Scores `x` (finite) at `t_ms`, then learns it.
    pub fn observe(&mut self, p: &Params, t_ms: i64, x: f64) -> Score {
        match self {
            Detector::ZScore(w) => w.observe(p, x),
            Detector::Ewma(e) => e.observe(p, x),
            Detector::Seasonal(s) => s.observe(p, t_ms, x),
        }
    }
}

fn floor(p: &Params, expected: f64) -> f64 {
    let f = p.min_deviation.max(0.001 * expected.abs());
    if f.is_finite() && f > 0.0 { f } else { 1e-9 }
}

/// A score that is finite whatever the inputs (a huge value over a tiny
/// scale saturates).
fn score(x: f64, expected: f64, scale: f64) -> f64 {
    let s = (x - expected).abs() / scale;
    if s.is_finite() { s } else { f64::MAX }
}

/// The last `window` values, as f32 to halve the memory of 100,000 series:
/// in arrival order (to know which leaves next) and sorted (so the median
/// is at hand and the MAD half a pass away, instead of a sort per sample).
#[derive(Debug, Clone)]
pub struct Window {
    values: Vec<f32>,
    sorted: Vec<f32>,
    /// Where the next value goes once `values` is full.
    next: usize,
}

impl Window {
    pub fn new(window: usize) -> Self {
        Self {
            values: Vec::with_capacity(window.min(64)),
            sorted: Vec::with_capacity(window.min(64)),
            next: 0,
        }
    }

    /// The window's values in order (for tests).
    #[cfg(test)]
    pub fn sorted(&self) -> &[f32] {
        &self.sorted
    }

    fn observe(&mut self, p: &Params, x: f64) -> Score {
        let out = if self.sorted.is_empty() {
            Score {
                score: 0.0,
                expected: x,
                ready: false,
            }
        } else {
            let (mid, mad) = median_and_mad(&self.sorted);
            let scale = (1.4826 * mad).max(floor(p, mid));
            Score {
                score: score(x, mid, scale),
                expected: mid,
                ready: self.sorted.len() >= p.min_samples as usize,
            }
        };
        // f32 holds any finite f64 only up to ±3.4e38: beyond, clamp.
        let v = x.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32;
        if self.values.len() < p.window {
            self.values.push(v);
        } else if let Some(slot) = self.values.get_mut(self.next) {
            let old = std::mem::replace(slot, v);
            self.next = (self.next + 1) % p.window;
            if let Ok(i) = self.sorted.binary_search_by(|s| s.total_cmp(&old)) {
                self.sorted.remove(i);
            }
        }
        let (Ok(i) | Err(i)) = self.sorted.binary_search_by(|s| s.total_cmp(&v));
        self.sorted.insert(i, v);
        out
    }
}

/// The median of sorted finite values and their median absolute deviation
/// from it (0 and 0 for none). The deviations are walked outwards from the
/// median, smallest first (the values below it and above it are each in
/// order of deviation already), so this costs half a pass.
pub fn median_and_mad(sorted: &[f32]) -> (f64, f64) {
    let n = sorted.len();
    let at = |i: usize| sorted.get(i).map_or(0.0, |v| f64::from(*v));
    if n == 0 {
        return (0.0, 0.0);
    }
    let mid = if n % 2 == 1 {
        at(n / 2)
    } else {
        (at(n / 2 - 1) + at(n / 2)) / 2.0
    };
    // Below the split: values ≤ mid, walked downwards; from it: values
    // above, walked upwards.
    let split = sorted.partition_point(|v| f64::from(*v) <= mid);
    let (mut below, mut above) = (split, split);
    let want = n / 2;
    let (mut before, mut last) = (0.0, 0.0);
    for rank in 0..=want {
        let down = (below > 0).then(|| mid - at(below - 1));
        let up = (above < n).then(|| at(above) - mid);
        let d = match (down, up) {
            (Some(a), Some(b)) if a <= b => {
                below -= 1;
                a
            }
            (Some(a), None) => {
                below -= 1;
                a
            }
            (_, Some(b)) => {
                above += 1;
                b
            }
            (None, None) => break,
        };
        if rank + 1 == want {
            before = d;
        }
        if rank == want {
            last = d;
        }
    }
    let mad = if n % 2 == 1 {
        last
    } else {
        (before + last) / 2.0
    };
    (mid, mad)
}

/// An exponentially weighted mean and variance.
#[derive(Debug, Clone, Default)]
pub struct Ewma {
    mean: f64,
    var: f64,
    n: u32,
}

impl Ewma {
    fn observe(&mut self, p: &Params, x: f64) -> Score {
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
            self.n = 1;
            return Score {
                score: 0.0,
                expected: x,
                ready: false,
            };
        }
        let scale = self.var.sqrt().max(floor(p, self.mean));
        let out = Score {
            score: score(x, self.mean, scale),
            expected: self.mean,
            ready: self.n >= p.min_samples,
        };
        let diff = x - self.mean;
        let mean = self.mean + p.alpha * diff;
        let var = (1.0 - p.alpha) * (self.var + p.alpha * diff * diff);
        // Far past f64's range the update overflows: keep the last state.
        if mean.is_finite() && var.is_finite() {
            self.mean = mean;
            self.var = var;
        }
        self.n = self.n.saturating_add(1);
        out
    }
}

/// A robust level per bucket of the period, and one deviation for the
/// series (pooled over the buckets: many more samples than one bucket
/// holds, so a steadier scale).
#[derive(Debug, Clone)]
pub struct Seasonal {
    /// Per bucket: level and samples (f32 and u16 to keep 96 buckets
    /// small).
    level: Vec<f32>,
    seen: Vec<u16>,
    /// Mean absolute residual from the bucket levels.
    deviation: f64,
    residuals: u32,
}

impl Seasonal {
    pub fn new(buckets: usize) -> Self {
        Self {
            level: vec![0.0; buckets],
            seen: vec![0; buckets],
            deviation: 0.0,
            residuals: 0,
        }
    }

    fn observe(&mut self, p: &Params, t_ms: i64, x: f64) -> Score {
        let period = p.period_ms.max(1);
        let buckets = self.level.len().max(1);
        let phase = t_ms.rem_euclid(period);
        let b = usize::try_from(i128::from(phase) * buckets as i128 / i128::from(period))
            .unwrap_or(0)
            .min(buckets - 1);
        let (Some(level), Some(seen)) = (self.level.get_mut(b), self.seen.get_mut(b)) else {
            return Score {
                score: 0.0,
                expected: x,
                ready: false,
            };
        };
        let clamp = |v: f64| v.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32;
        if *seen == 0 {
            *level = clamp(x);
            *seen = 1;
            return Score {
                score: 0.0,
                expected: x,
                ready: false,
            };
        }
        let l = f64::from(*level);
        let d = self.deviation;
        let scale = (1.2533 * d).max(floor(p, l));
        let out = Score {
            score: score(x, l, scale),
            expected: l,
            ready: u32::from(*seen) >= p.min_samples,
        };
        // Clip the residual so an anomaly moves the baseline only a little;
        // while there is no deviation yet (the first samples), learn freely.
        let residual = x - l;
        let limit = if d > 0.0 {
            p.threshold * scale
        } else {
            f64::MAX
        };
        let r = residual.clamp(-limit, limit);
        // Learning rates: an average over the first samples, then `alpha`.
        let rate = (1.0 / f64::from(*seen + 1)).max(p.alpha);
        *level = clamp(l + rate * r);
        *seen = seen.saturating_add(1);
        // The deviation learns only from calm samples (under half the
        // threshold) once judged: a slow drift would otherwise widen it as
        // fast as it grows and never be seen.
        if !out.ready || out.score < p.threshold / 2.0 {
            let pooled = (1.0 / f64::from(self.residuals.saturating_add(1))).max(p.alpha / 4.0);
            let next = d + pooled * (r.abs() - d);
            if next.is_finite() {
                self.deviation = next;
            }
            self.residuals = self.residuals.saturating_add(1);
        }
        out
    }
}
