//! The `file_tail` source's async driver: it sends the tailer's batches
//! downstream and commits positions once they are acknowledged.
//!
//! - Every batch is sent with [`Output::send_acked`]. Acknowledgements are
//!   taken in the order batches were sent: an acknowledged batch commits
//!   the offsets it reached in each file; a batch that was not (a sink could
//!   not store it) sets every file back to its committed offset, and the
//!   lines after it are read again after a second — at-least-once.
//! - Up to [`MAX_IN_FLIGHT`] batches may wait for their acknowledgement
//!   while reading goes on, so a sink that batches for a while is kept fed.
//! - Committed positions are written to `positions.json` (see
//!   `positions.rs`) at most every `positions_sync_interval` and once more
//!   at shutdown, after the last acknowledgements came in. A clean stop
//!   resumes exactly where it left off; a crash reads again at most what
//!   was committed in the last interval.
//!
//! File I/O never runs on the async runtime's thread: each round of reads
//! (and each positions write, which fsyncs) runs on tokio's blocking pool,
//! and the tailer moves there and back by value — a slow disk (an SD card)
//! must not stall the edge's single runtime thread, which also serves the
//! transforms, the sinks and the node API. A round reads at most one
//! buffer (`batch_max_bytes`) into the tailer's own buffer and allocates
//! nothing per line; the lines are split into records back on the
//! runtime's thread, so their memory comes from one allocator arena (glibc
//! gives each thread its own, and records made on the pool and freed on the
//! runtime's thread would keep a second one grown). One hop per batch costs
//! a few microseconds.

use super::positions::PositionsFile;
use super::tailer::{Checkpoint, Settings, TailMetrics, Tailer};
use iotel_engine::{ComponentError, ComponentFuture, Output, Source, SourceContext};
use iotel_model::Events;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// The pause before reading again after a batch was not acknowledged.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Batches sent and not yet acknowledged, at most; past this the source
/// waits for acknowledgements before it reads on.
const MAX_IN_FLIGHT: usize = 256;

#[derive(Debug)]
pub(super) struct FileTail {
    pub settings: Settings,
    pub poll_interval: std::time::Duration,
    pub sync_interval: std::time::Duration,
}

impl Source for FileTail {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture {
        Box::pin(self.tail(cx))
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ComponentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ComponentError::new(format!("the file reader stopped: {e}")))
}

type AckFuture = Pin<Box<dyn Future<Output = bool> + Send>>;

/// A batch sent downstream, waiting for its acknowledgement.
struct InFlight {
    acked: AckFuture,
    checkpoint: Checkpoint,
}

/// Batches in the order they were sent.
#[derive(Default)]
struct Pending(VecDeque<InFlight>);

impl Pending {
    /// Waits for the oldest batch's acknowledgement (forever when none).
    async fn oldest(&mut self) -> bool {
        match self.0.front_mut() {
            Some(f) => f.acked.as_mut().await,
            None => std::future::pending().await,
        }
    }

    /// Applies the oldest batch's outcome: `false` when it failed, after
    /// which the tailer was rewound and nothing is pending.
    fn apply_oldest(&mut self, ok: bool, tailer: &mut Tailer) -> bool {
        let Some(f) = self.0.pop_front() else {
            return true;
        };
        if ok {
            tailer.commit(&f.checkpoint);
        } else {
            self.0.clear();
            tailer.rewind();
        }
        ok
    }

    /// Applies the outcomes already known, oldest first, without waiting:
    /// `false` when one failed.
    fn apply_ready(&mut self, tailer: &mut Tailer) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        while let Some(f) = self.0.front_mut() {
            match f.acked.as_mut().poll(&mut cx) {
                Poll::Ready(ok) => {
                    if !self.apply_oldest(ok, tailer) {
                        return false;
                    }
                }
                Poll::Pending => break,
            }
        }
        true
    }
}

impl FileTail {
    async fn tail(self, cx: SourceContext) -> Result<(), ComponentError> {
        let SourceContext {
            out,
            mut shutdown,
            metrics,
            data_dir,
            ..
        } = cx;
        let id = metrics.id().to_string();
        let store = PositionsFile::in_dir(&data_dir.join("file_tail").join(&id));
        let loaded = {
            let store = store.clone();
            blocking(move || store.load()).await?
        };
        let stored = loaded.unwrap_or_else(|e| {
            metrics.error("positions_unreadable");
            tracing::warn!(
                component = %id,
                "{e}; starting without stored positions (files are read as `read_from` says)"
            );
            Vec::new()
        });
        let mut tailer = Tailer::new(self.settings, TailMetrics::new(&metrics), stored);
        let mut sync = Sync::new(store, self.sync_interval);
        let mut out: Option<Output> = Some(out);
        let mut pending = Pending::default();
        let mut retry_at: Option<Instant> = None;
        while let Some(output) = out.as_mut() {
            if shutdown.is_triggered() {
                break;
            }
            let may_read =
                pending.0.len() < MAX_IN_FLIGHT && retry_at.is_none_or(|t| Instant::now() >= t);
            let mut more = false;
            if may_read {
                retry_at = None;
                tailer = blocking(move || {
                    tailer.read_round(Instant::now());
                    tailer
                })
                .await?;
                let batch = tailer.take_batch(Instant::now());
                more = batch.full;
                if !batch.records.is_empty() {
                    let (open, acked) = output.send_acked(Events::Logs(batch.records)).await;
                    pending.0.push_back(InFlight {
                        acked: Box::pin(acked.wait()),
                        checkpoint: batch.checkpoint,
                    });
                    if !open {
                        tracing::info!(component = %id, "nothing consumes this source any more; stopping");
                        out = None;
                        continue;
                    }
                }
            }
            if !pending.apply_ready(&mut tailer) {
                retry_at = Some(Instant::now() + RETRY_AFTER);
                not_acknowledged(&metrics, &id);
            }
            sync.maybe_write(&mut tailer, &metrics, &id).await;
            if more && may_read {
                continue;
            }
            tokio::select! {
                _ = shutdown.wait() => break,
                ok = pending.oldest() => {
                    if !pending.apply_oldest(ok, &mut tailer) {
                        retry_at = Some(Instant::now() + RETRY_AFTER);
                        not_acknowledged(&metrics, &id);
                    }
                }
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
        // Downstream drains what it holds once this source's output is
        // gone; the acknowledgements of what was sent still come in.
        drop(out);
        // Leave time for the final positions write before the node aborts
        // what still runs: a second, or half of what is left.
        let limit = shutdown.deadline().map_or_else(
            || Instant::now() + std::time::Duration::from_secs(5),
            |d| {
                let left = d.saturating_duration_since(Instant::now());
                Instant::now() + left.saturating_sub((left / 2).min(RETRY_AFTER))
            },
        );
        while !pending.0.is_empty() {
            let wait = tokio::time::timeout_at(limit.into(), pending.oldest()).await;
            match wait {
                Ok(ok) => {
                    if !pending.apply_oldest(ok, &mut tailer) {
                        break;
                    }
                }
                Err(_) => {
                    tracing::warn!(
                        component = %id,
                        "{} batch(es) still unacknowledged at shutdown; their lines are read \
                         again on the next start",
                        pending.0.len()
                    );
                    break;
                }
            }
        }
        sync.finish(&tailer, &metrics, &id).await;
        Ok(())
    }
}

fn not_acknowledged(metrics: &iotel_engine::ComponentMetrics, id: &str) {
    metrics.error("not_acknowledged");
    tracing::warn!(
        component = %id,
        "a batch was not acknowledged downstream; reading again from the last acknowledged \
         positions in {RETRY_AFTER:?}"
    );
}

/// Writes committed positions at most every interval, off the runtime's
/// thread, one write at a time.
struct Sync {
    store: PositionsFile,
    interval: std::time::Duration,
    next: Instant,
    writing: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    failing: bool,
}

impl Sync {
    fn new(store: PositionsFile, interval: std::time::Duration) -> Self {
        Self {
            store,
            interval,
            next: Instant::now() + interval,
            writing: None,
            failing: false,
        }
    }

    async fn maybe_write(
        &mut self,
        tailer: &mut Tailer,
        metrics: &iotel_engine::ComponentMetrics,
        id: &str,
    ) {
        if self.writing.as_ref().is_some_and(|h| h.is_finished())
            && let Some(h) = self.writing.take()
            && !self.report(h.await, metrics, id)
        {
            // Written again at the next interval.
            tailer.mark_changed();
        }
        let now = Instant::now();
        if self.writing.is_some() || now < self.next {
            return;
        }
        self.next = now + self.interval;
        if let Some(positions) = tailer.positions_if_changed() {
            let store = self.store.clone();
            self.writing = Some(tokio::task::spawn_blocking(move || store.save(&positions)));
        }
    }

    /// Waits for a write under way, then writes the final positions.
    async fn finish(
        &mut self,
        tailer: &Tailer,
        metrics: &iotel_engine::ComponentMetrics,
        id: &str,
    ) {
        if let Some(h) = self.writing.take() {
            let _ = h.await;
        }
        let store = self.store.clone();
        let positions = tailer.positions();
        let written = tokio::task::spawn_blocking(move || store.save(&positions)).await;
        self.report(written, metrics, id);
    }

    /// Logs a failed write (once until one succeeds); `true` when written.
    fn report(
        &mut self,
        r: Result<std::io::Result<()>, tokio::task::JoinError>,
        metrics: &iotel_engine::ComponentMetrics,
        id: &str,
    ) -> bool {
        let e = match r {
            Ok(Ok(())) => {
                self.failing = false;
                return true;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        metrics.error("positions_write_failed");
        if !std::mem::replace(&mut self.failing, true) {
            tracing::warn!(
                component = %id,
                "cannot write {}: {e}; a restart reads again what was read since the last write",
                self.store.path().display()
            );
        }
        false
    }
}
