//! Taps: a sample of the events leaving a component, for an operator to see
//! what a component does to real data (`iotel tap`, the node API's
//! `/api/v1/tap/{output}`).
//!
//! Every source and transform output has a [`TapPoint`], named by the
//! component id (a transform's named output: `id.name`). While nobody
//! watches, a send costs one atomic load. While someone does, each batch
//! that leaves is offered to the watchers: at most [`MAX_PER_BATCH`]
//! events of it, evenly spread, are copied into a small broadcast channel;
//! a watcher that falls behind skips batches. What a watcher did not get
//! is still counted (`left` against `shown`), so the sample says what it
//! is a sample of. The pipeline never waits for a watcher.

use iotel_model::Events;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Events of one batch copied to the watchers at most.
pub const MAX_PER_BATCH: usize = 100;

/// Batches a watcher may lag behind before it skips some.
const CHANNEL_BATCHES: usize = 16;

/// The tap points of a node, by output name. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Taps(Arc<Mutex<BTreeMap<String, Arc<TapPoint>>>>);

impl Taps {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<TapPoint>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tap point of `output`, made on first use (the topology makes
    /// one per output it wires).
    pub fn point(&self, output: &str) -> Arc<TapPoint> {
        self.lock()
            .entry(output.to_string())
            .or_insert_with(|| Arc::new(TapPoint::new()))
            .clone()
    }

    /// Starts watching `output`; `None` when the node has no such output.
    pub fn watch(&self, output: &str) -> Option<Watch> {
        let point = self.lock().get(output)?.clone();
        let rx = point.tx.subscribe();
        point.watchers.fetch_add(1, Ordering::SeqCst);
        Some(Watch { point, rx })
    }

    /// The outputs that can be watched, sorted.
    pub fn outputs(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

/// One output's tap.
#[derive(Debug)]
pub struct TapPoint {
    watchers: AtomicUsize,
    /// (events in the batch, the copied sample)
    tx: broadcast::Sender<(usize, Events)>,
}

impl TapPoint {
    fn new() -> Self {
        Self {
            watchers: AtomicUsize::new(0),
            tx: broadcast::channel(CHANNEL_BATCHES).0,
        }
    }

    /// Offers a batch that leaves the output to whoever watches.
    #[inline]
    pub fn offer(&self, events: &Events) {
        if self.watchers.load(Ordering::Relaxed) > 0 {
            let _ = self.tx.send((events.len(), spread(events, MAX_PER_BATCH)));
        }
    }
}

/// At most `max` events of `events`, evenly spread, in order.
fn spread(events: &Events, max: usize) -> Events {
    fn pick<T: Clone>(v: &[T], max: usize) -> Vec<T> {
        if v.len() <= max {
            return v.to_vec();
        }
        (0..max).map(|i| v[i * v.len() / max].clone()).collect()
    }
    match events {
        Events::Metrics(v) => Events::Metrics(pick(v, max)),
        Events::Logs(v) => Events::Logs(pick(v, max)),
        Events::Traces(v) => Events::Traces(pick(v, max)),
    }
}

/// A watcher of one output; stops watching when dropped.
#[derive(Debug)]
pub struct Watch {
    point: Arc<TapPoint>,
    rx: broadcast::Receiver<(usize, Events)>,
}

/// What a watcher got next.
#[derive(Debug)]
pub enum Seen {
    /// A batch of `left` events left the output; `sample` is what was
    /// copied of it.
    Batch { left: usize, sample: Events },
    /// The watcher fell behind and `batches` batches passed unseen.
    Skipped { batches: u64 },
}

impl Watch {
    /// The next batch, or `None` once the output is gone.
    pub async fn next(&mut self) -> Option<Seen> {
        match self.rx.recv().await {
            Ok((left, sample)) => Some(Seen::Batch { left, sample }),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Seen::Skipped { batches: n }),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.point.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use iotel_model::{Labels, Metric, MetricType};

    fn metrics(n: usize) -> Events {
        Events::Metrics(
            (0..n)
                .map(|i| Metric::new("m", MetricType::Gauge, Labels::empty(), i as f64, 0))
                .collect(),
        )
    }

    fn values(e: &Events) -> Vec<f64> {
        match e {
            Events::Metrics(v) => v.iter().map(|m| m.value).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn nothing_is_copied_until_someone_watches_and_then_a_spread_sample() {
        let taps = Taps::default();
        let point = taps.point("src");
        point.offer(&metrics(3));
        assert!(taps.watch("other").is_none());
        let mut watch = taps.watch("src").unwrap();
        point.offer(&metrics(2));
        point.offer(&metrics(1000));
        match watch.next().await.unwrap() {
            Seen::Batch { left, sample } => {
                assert_eq!((left, values(&sample)), (2, vec![0.0, 1.0]))
            }
            other => panic!("{other:?}"),
        }
        match watch.next().await.unwrap() {
            Seen::Batch { left, sample } => {
                assert_eq!(left, 1000);
                let v = values(&sample);
                assert_eq!(v.len(), MAX_PER_BATCH);
                assert_eq!(&v[..3], [0.0, 10.0, 20.0]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(taps.outputs(), ["src"]);
        drop(watch);
        assert_eq!(point.watchers.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_told_how_many_batches_it_missed() {
        let taps = Taps::default();
        let point = taps.point("src");
        let mut watch = taps.watch("src").unwrap();
        for _ in 0..CHANNEL_BATCHES + 3 {
            point.offer(&metrics(1));
        }
        match watch.next().await.unwrap() {
            Seen::Skipped { batches } => assert_eq!(batches, 3),
            other => panic!("{other:?}"),
        }
    }
}
