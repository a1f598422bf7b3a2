//! Which label values concentrate the anomalies.
//!
//! Two populations, counted per (dimension, value): every series held, and
//! the anomalous series — those with an anomaly open now or closed within
//! `explain_window`. For each value held by an anomalous series:
//!
//! ```text
//! share_anomalous = anomalous series with it / anomalous series
//! share_all       = series with it / series
//! lift            = share_anomalous / share_all
//! ```
//!
//! Values are ranked by `share_anomalous − share_all` (how many more of
//! the anomalous series have it than chance says), largest first, and only
//! those with a lift above 1 are kept. The difference, not the lift alone,
//! ranks: a value held by one series in the fleet has a huge lift as soon
//! as that one series is anomalous, yet explains nothing of a fault that
//! hit fifty; the difference puts the value most anomalous series share
//! first (`firmware=2.4.1` when every device on that firmware went wrong at
//! once). The counts are kept as series come, go and turn anomalous, so an
//! explanation costs a pass over the anomalous series' distinct values,
//! not over the series.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// One ranked label value.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub dimension: Arc<str>,
    pub value: Arc<str>,
    pub share_anomalous: f64,
    pub share_all: f64,
    pub lift: f64,
}

impl Item {
    pub fn to_json(&self) -> Value {
        json!({
            "dimension": &*self.dimension,
            "value": &*self.value,
            "share_anomalous": round(self.share_anomalous),
            "share_all": round(self.share_all),
            "lift": round(self.lift),
        })
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A series' values of the dimensions, in the order of `dimensions`.
pub type Values = Box<[Option<Arc<str>>]>;

#[derive(Debug)]
struct Recent {
    values: Values,
    /// When it leaves the anomalous population; `None` while open.
    until_ms: Option<i64>,
}

#[derive(Debug)]
pub struct Explainer {
    dimensions: Vec<Arc<str>>,
    window_ms: i64,
    all: HashMap<(usize, Arc<str>), u32>,
    total: u32,
    anomalous: HashMap<(usize, Arc<str>), u32>,
    recent: HashMap<u64, Recent>,
    /// The earliest `until_ms` in `recent`, to prune only when due.
    next_expiry: i64,
}

fn add(map: &mut HashMap<(usize, Arc<str>), u32>, values: &Values, by: i64) {
    for (d, v) in values.iter().enumerate() {
        let Some(v) = v else { continue };
        let key = (d, v.clone());
        let n = map.entry(key.clone()).or_insert(0);
        *n = u32::try_from((i64::from(*n) + by).max(0)).unwrap_or(u32::MAX);
        if *n == 0 {
            map.remove(&key);
        }
    }
}

impl Explainer {
    pub fn new(dimensions: &[String], window_ms: i64) -> Self {
        Self {
            dimensions: dimensions.iter().map(|d| Arc::from(d.as_str())).collect(),
            window_ms,
            all: HashMap::new(),
            total: 0,
            anomalous: HashMap::new(),
            recent: HashMap::new(),
            next_expiry: i64::MAX,
        }
    }

    /// A series now held, with these values.
    pub fn add_series(&mut self, values: &Values) {
        self.total = self.total.saturating_add(1);
        add(&mut self.all, values, 1);
    }

    /// A series no longer held (evicted).
    pub fn remove_series(&mut self, id: u64, values: &Values) {
        self.total = self.total.saturating_sub(1);
        add(&mut self.all, values, -1);
        if let Some(r) = self.recent.remove(&id) {
            add(&mut self.anomalous, &r.values, -1);
        }
    }

    /// A series' values changed (its firmware was upgraded, say).
    pub fn relabel(&mut self, id: u64, old: &Values, new: &Values) {
        add(&mut self.all, old, -1);
        add(&mut self.all, new, 1);
        if let Some(r) = self.recent.get_mut(&id) {
            add(&mut self.anomalous, &r.values, -1);
            add(&mut self.anomalous, new, 1);
            r.values = new.clone();
        }
    }

    /// A series' anomaly opened.
    pub fn opened(&mut self, id: u64, values: &Values) {
        match self.recent.get_mut(&id) {
            Some(r) => r.until_ms = None,
            None => {
                add(&mut self.anomalous, values, 1);
                self.recent.insert(
                    id,
                    Recent {
                        values: values.clone(),
                        until_ms: None,
                    },
                );
            }
        }
    }

    /// A series' anomaly closed at `now_ms`: it counts as anomalous for
    /// `explain_window` more.
    pub fn closed(&mut self, id: u64, now_ms: i64) {
        if let Some(r) = self.recent.get_mut(&id) {
            let until = now_ms.saturating_add(self.window_ms);
            r.until_ms = Some(until);
            self.next_expiry = self.next_expiry.min(until);
        }
    }

    /// Drops the series whose anomaly closed more than `explain_window`
    /// before `now_ms`.
    pub fn prune(&mut self, now_ms: i64) {
        if now_ms < self.next_expiry {
            return;
        }
        let mut next = i64::MAX;
        let anomalous = &mut self.anomalous;
        self.recent.retain(|_, r| match r.until_ms {
            Some(u) if u <= now_ms => {
                add(anomalous, &r.values, -1);
                false
            }
            Some(u) => {
                next = next.min(u);
                true
            }
            None => true,
        });
        self.next_expiry = next;
    }

    /// Anomalous series counted now.
    #[cfg(test)]
    pub fn anomalous_series(&self) -> usize {
        self.recent.len()
    }

    /// The `top` label values that concentrate the anomalies most.
    pub fn explain(&self, top: usize) -> Vec<Item> {
        let n_anomalous = self.recent.len() as f64;
        let n_all = f64::from(self.total.max(1));
        if n_anomalous == 0.0 {
            return Vec::new();
        }
        let mut items: Vec<Item> = self
            .anomalous
            .iter()
            .filter_map(|((d, v), a)| {
                let all = f64::from(self.all.get(&(*d, v.clone())).copied().unwrap_or(0).max(*a));
                let share_anomalous = f64::from(*a) / n_anomalous;
                let share_all = (all / n_all).min(1.0);
                let lift = share_anomalous / share_all.max(f64::MIN_POSITIVE);
                let dimension = self.dimensions.get(*d)?.clone();
                (lift > 1.0).then(|| Item {
                    dimension,
                    value: v.clone(),
                    share_anomalous,
                    share_all,
                    lift,
                })
            })
            .collect();
        items.sort_by(|a, b| {
            (b.share_anomalous - b.share_all)
                .total_cmp(&(a.share_anomalous - a.share_all))
                .then_with(|| b.lift.total_cmp(&a.lift))
                .then_with(|| a.dimension.cmp(&b.dimension))
                .then_with(|| a.value.cmp(&b.value))
        });
        items.truncate(top);
        items
    }
}
