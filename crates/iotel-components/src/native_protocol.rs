//! The native protocol between tiers over HTTP: what the `iotel` sink sends
//! and the `iotel` source answers. The batch itself is a native frame
//! (`iotel_formats::native`); this is the HTTP around it.
//!
//! ```text
//! POST /iotel/v1/batch
//! Content-Type: application/x-iotel-batch
//! Iotel-Last-Sequence: 1041          (optional; the frame's sequence if absent)
//! Iotel-Oldest-Sequence: 977         (optional; the frame's sequence if absent)
//!
//! <native frame: agent id, sequence = the first buffer id in the batch, …>
//! ```
//!
//! A batch covers the agent's buffer ids `sequence ..= Iotel-Last-Sequence`
//! as a whole (some may be missing: dropped by the agent's buffer, or
//! delivered before out of order). Ids increase across the agent's
//! restarts. `Iotel-Oldest-Sequence` is the oldest id the agent may still
//! send: every id below it was delivered or given up. An agent sends its
//! ids oldest first, except that while a backlog drains it sends new
//! batches ahead of it (the live lane): the receiver keeps, per agent, the
//! ranges of ids it received above a floor (every id below the floor
//! arrived or will never be sent; without `Iotel-Oldest-Sequence` the
//! floor rises to each accepted batch's sequence, as for an agent that
//! sends strictly in order), and answers:
//!
//! | answer | meaning | the agent |
//! |---|---|---|
//! | 200 | the batch is safe downstream of the receiver | acknowledges the batch |
//! | 409 + `Iotel-Received: a-b,…` (+ `Iotel-Next-Sequence: n`) | the ids in those inclusive ranges of the batch were received before (a retransmit); `n` is present when they start the batch: every id from the sequence up to `n - 1` | marks those ids delivered, and sends the rest again, in requests that do not span them |
//! | 400, 413, 415 | the batch is broken or too large; sending it again cannot help | drops it, counted |
//! | 404, 405 | wrong path or method: a misconfigured endpoint | drops it, counted |
//! | 429, 503 (+ `Retry-After`), other 5xx | not now | retries with backoff |
//!
//! 409 covers a whole retransmit (`Iotel-Received` is the whole batch,
//! `n = Iotel-Last-Sequence + 1`), a partial one at its start (a batch
//! regrouped after the agent restarted overlaps what arrived) and received
//! ids in its middle or at its end (after a restart an agent sends its whole
//! buffer again, live batches it had delivered out of order included). An
//! agent that predates `Iotel-Received` acknowledges the ids below `n`;
//! it never meets the third kind, which only the live lane causes.
//!
//! `Iotel-Received` lists at most 64 ranges per agent (the receiver's
//! bound): it writes a single id as `7` and a range as `200-205`, comma
//! separated, lowest first, clipped to the batch.

/// The path batches are POSTed to.
pub const BATCH_PATH: &str = "/iotel/v1/batch";

/// Request header: the last buffer id the batch covers.
pub const LAST_SEQUENCE: &str = "iotel-last-sequence";

/// Request header: the oldest buffer id the agent may still send; every id
/// below it was delivered or given up.
pub const OLDEST_SEQUENCE: &str = "iotel-oldest-sequence";

/// Response header on 409: the next id the receiver wants from the agent,
/// when the batch's first ids were received before.
pub const NEXT_SEQUENCE: &str = "iotel-next-sequence";

/// Response header on 409: the batch's ids received before, as inclusive
/// ranges (`200-205,300-310`, a single id as `7`), lowest first.
pub const RECEIVED: &str = "iotel-received";
