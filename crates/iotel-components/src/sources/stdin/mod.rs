//! `stdin`: lines from standard input as log records, for tests and pipes
//! (`journalctl -f | iotel agent --config pipe.toml`). Each line is one
//! record, stamped with the time it was read and labelled with the static
//! labels of the config; lines are split, truncated, checked for UTF-8 and
//! optionally joined as `file_tail` does (see `file_tail/lines.rs`).
//!
//! The source ends at end of input, after handing on a last line that had
//! no newline and a multiline record still held; once every source has
//! ended, the node drains its sinks and stops. Standard input cannot be
//! read again, so batches are sent without waiting for acknowledgements.

use crate::sources::file_tail::lines::{
    BatchOut, Line, LineCounters, LineReader, Multiline, Origin, Warnings, to_record,
};
use crate::sources::file_tail::{self, MultilineConfig};
use crate::{BuildContext, Problem};
use iotel_engine::config::ByteSize;
use iotel_engine::{
    ComponentError, ComponentFuture, ComponentMetrics, Output, Shutdown, SignalSet, Source,
    SourceContext,
};
use iotel_model::{Events, Labels, now_unix_ns};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt};

/// One read's size.
const READ_BUFFER: usize = 64 * 1024;

/// Message bytes per batch at most, as `file_tail`'s default.
const BATCH_MAX_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Lines longer than this keep their first `max_line_bytes` and are
    /// flagged `truncated = true`.
    #[serde(default = "file_tail::default_max_line_bytes")]
    pub max_line_bytes: ByteSize,
    /// Joins continuation lines to the line that starts a record.
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    /// Static labels set on every record.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Records per batch at most; a batch also ends with each read.
    #[serde(default = "default_batch_max_lines")]
    pub batch_max_lines: NonZeroUsize,
}

fn default_batch_max_lines() -> NonZeroUsize {
    NonZeroUsize::new(1000).unwrap_or(NonZeroUsize::MIN)
}

impl Config {
    pub fn signals(&self) -> SignalSet {
        SignalSet::LOGS
    }

    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        file_tail::validate_common(
            self.max_line_bytes,
            self.multiline.as_ref(),
            &self.labels,
            None,
            &mut p,
        );
        p
    }

    /// # Errors
    /// A multiline pattern that does not compile (refused by `validate`).
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
        Ok(Box::new(Stdin {
            reader: Reader {
                max_line_bytes: file_tail::line_limit(self.max_line_bytes),
                multiline: self
                    .multiline
                    .as_ref()
                    .map(MultilineConfig::rule)
                    .transpose()?,
                labels: Labels::from_pairs(&self.labels),
                batch_max_lines: self.batch_max_lines.get(),
            },
        }))
    }
}

#[derive(Debug)]
struct Stdin {
    reader: Reader,
}

impl Source for Stdin {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture {
        Box::pin(async move {
            self.reader
                .read_all(tokio::io::stdin(), cx.out, cx.shutdown, &cx.metrics)
                .await
        })
    }
}

/// Reads lines from any byte stream into batches.
#[derive(Debug)]
struct Reader {
    max_line_bytes: usize,
    multiline: Option<file_tail::lines::MultilineRule>,
    labels: Labels,
    batch_max_lines: usize,
}

impl Reader {
    /// Reads `input` to its end (or until shutdown), sending its lines.
    async fn read_all<R: AsyncRead + Unpin>(
        self,
        mut input: R,
        mut out: Output,
        mut shutdown: Shutdown,
        metrics: &ComponentMetrics,
    ) -> Result<(), ComponentError> {
        let counters = LineCounters::new(metrics);
        let mut warnings = Warnings::default();
        let mut lines = LineReader::new(self.max_line_bytes, 0);
        let timeout = self.multiline.as_ref().map(|r| r.timeout);
        let mut multiline = self
            .multiline
            .map(|rule| Multiline::new(rule, self.max_line_bytes));
        let mut batch = BatchOut::new(self.batch_max_lines, BATCH_MAX_BYTES);
        let mut buf = vec![0u8; READ_BUFFER];
        let origin = Origin {
            name: "stdin",
            labels: &self.labels,
            max_line_bytes: self.max_line_bytes,
        };
        loop {
            // While a multiline record is held, a read waits at most its
            // timeout; the record is handed on when nothing came.
            let wait = multiline
                .as_ref()
                .filter(|m| m.is_pending())
                .and(timeout)
                .unwrap_or(std::time::Duration::MAX);
            let read = tokio::select! {
                _ = shutdown.wait() => None,
                r = tokio::time::timeout(wait, input.read(&mut buf)) => Some(r),
            };
            let now = Instant::now();
            let ts = now_unix_ns();
            let mut take = |data: &[u8], batch: &mut BatchOut, finish: bool| {
                let mut emit = |line: Line<'_>| {
                    batch.push(to_record(line, ts, origin, &counters, &mut warnings, now))
                };
                let consumed = match &mut multiline {
                    Some(m) => lines.feed(data, &mut |l| m.push(l, now, &mut emit)),
                    None => lines.feed(data, &mut emit),
                };
                match &mut multiline {
                    Some(m) if finish => {
                        lines.finish(&mut |l| m.push(l, now, &mut emit));
                        let _ = m.flush(&mut emit);
                    }
                    Some(m) if data.is_empty() => {
                        let _ = m.flush_due(now, &mut emit);
                    }
                    None if finish => lines.finish(&mut emit),
                    _ => {}
                }
                consumed
            };
            let ended = match read {
                // Shutdown: what is held goes out, as at the end of input.
                None | Some(Ok(Ok(0))) => true,
                // Nothing came within the multiline timeout.
                Some(Err(_elapsed)) => {
                    take(&[], &mut batch, false);
                    false
                }
                Some(Ok(Ok(n))) => {
                    let mut pos = 0;
                    while pos < n {
                        pos += take(&buf[pos..n], &mut batch, false);
                        if batch.is_full() && !send(&mut out, &mut batch).await {
                            return Ok(());
                        }
                    }
                    false
                }
                Some(Ok(Err(e))) if e.kind() == std::io::ErrorKind::Interrupted => false,
                Some(Ok(Err(e))) => {
                    return Err(ComponentError::new(format!("reading stdin failed: {e}")));
                }
            };
            if ended {
                take(&[], &mut batch, true);
                send(&mut out, &mut batch).await;
                return Ok(());
            }
            if !send(&mut out, &mut batch).await {
                return Ok(());
            }
        }
    }
}

/// Sends what the batch holds; `false` once nothing consumes this source.
async fn send(out: &mut Output, batch: &mut BatchOut) -> bool {
    if batch.records.is_empty() {
        return true;
    }
    out.send(Events::Logs(batch.take())).await
}

#[cfg(test)]
mod tests;
