//! The native protocol between tiers over HTTP: what the `iotel` sink sends
//! and the `iotel` source answers. The batch itself is a native frame
//! (`iotel_formats::native`); this is the HTTP around it.
//!
//! ```text
//! POST /iotel/v1/batch
//! Content-Type: application/x-iotel-batch
//! Iotel-Last-Sequence: 1041          (optional; the frame's sequence if absent)
//!
//! <native frame: agent id, sequence = the first buffer id in the batch, …>
//! ```
//!
//! A batch covers the agent's buffer ids `sequence ..= Iotel-Last-Sequence`
//! (some may be missing: dropped by the agent's buffer). Ids increase
//! across the agent's restarts, so the receiver keeps, per agent, the next
//! id it wants and drops what it has seen:
//!
//! | answer | meaning | the agent |
//! |---|---|---|
//! | 200 | the batch is safe downstream of the receiver | acknowledges the batch |
//! | 409 + `Iotel-Next-Sequence: n` | ids below `n` were received before (a retransmit) | acknowledges ids below `n`, sends the rest again |
//! | 400, 413, 415 | the batch is broken or too large; sending it again cannot help | drops it, counted |
//! | 404, 405 | wrong path or method: a misconfigured endpoint | drops it, counted |
//! | 429, 503 (+ `Retry-After`), other 5xx | not now | retries with backoff |
//!
//! 409 covers both a whole retransmit (every id below `n`) and a partial one
//! (a batch regrouped after the agent restarted overlaps what arrived).

/// The path batches are POSTed to.
pub const BATCH_PATH: &str = "/iotel/v1/batch";

/// Request header: the last buffer id the batch covers.
pub const LAST_SEQUENCE: &str = "iotel-last-sequence";

/// Response header on 409: the next id the receiver wants from the agent.
pub const NEXT_SEQUENCE: &str = "iotel-next-sequence";
