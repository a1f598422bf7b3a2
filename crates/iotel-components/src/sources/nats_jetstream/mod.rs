//! `nats_jetstream`: a worker of the cloud tier. Takes the native batches
//! the `nats_jetstream` sink published from a durable pull consumer that
//! any number of worker processes share, and acknowledges each message
//! only once every sink downstream has its events safe.
//!
//! ```toml
//! [sources.work]
//! type = "nats_jetstream"
//! url = "nats://127.0.0.1:4222"
//! durable = "iotel-workers"
//! filter_subjects = ["iotel.acme.*.*"]
//! ```
//!
//! - **Consumer.** `durable` on `stream`, made when missing (explicit acks,
//!   `ack_wait`, `max_ack_pending`, every message from the start,
//!   `filter_subjects`); one that exists is used as it is, so its settings
//!   are the first worker's. Workers pull up to `batch` messages at a time,
//!   waiting at most `max_wait` for them; JetStream hands each message to
//!   one worker at a time.
//! - **Delivery** (`consume.rs`). A message is decoded (a native frame, with
//!   `max_decoded_size` and `max_events` as limits) and its events sent
//!   downstream with an end-to-end acknowledgement (`iotel_engine::Ack`).
//!   Once every sink has them safe, the message is acknowledged to
//!   JetStream (and the acknowledgement confirmed); while a sink is still
//!   at it, the worker tells JetStream every `ack_wait / 2` that it is in
//!   progress, so a slow sink does not cause a redelivery. When a sink
//!   could not store the events, the message is negatively acknowledged
//!   with `nak_delay`, and JetStream delivers it again (to any worker).
//! - **Dead letters.** A message whose delivery number reached
//!   `max_deliver` and still failed, or that comes a time past it (a worker
//!   died each time it handled it), and a message that does not decode, is
//!   published (with JetStream's acknowledgement) to `dead_letter_subject`
//!   — `{subject}` replaced by its own subject — with the headers
//!   `Iotel-Dead-Letter-Reason` (`max_deliver`, `decode: <code>`),
//!   `Iotel-Original-Subject` and `Iotel-Deliveries`, and then terminated
//!   (JetStream delivers it no more). When that publish fails, the message
//!   is negatively acknowledged and comes again. The default
//!   `iotel.dead.{subject}` is stored in the sink's stream (`iotel.>`) and
//!   is outside the default filter `iotel.*.*.*`.
//! - **Duplicates** (`window.rs`). JetStream delivers at least once: a
//!   message whose acknowledgement was lost (the server restarted, the
//!   connection dropped after the sink stored it) comes again. The worker
//!   remembers the `Nats-Msg-Id` (else stream and sequence) of the last
//!   `dedup_window` messages it acknowledged: such a message is
//!   acknowledged again without being sent downstream, counted as
//!   discarded, reason `duplicate`. A delivery of a message the worker is
//!   still handling is left alone (the handling acknowledges it). The
//!   window lives in the worker's memory: a message whose worker died
//!   after its sink stored it and before the acknowledgement goes to
//!   another worker and is sent downstream once more (at-least-once); the
//!   sinks downstream (Prometheus remote write, Loki) take such a repeat
//!   of identical samples or records without a second copy.
//!
//! Counted: `iotel_nats_acked_messages_total`,
//! `iotel_nats_nacked_messages_total`,
//! `iotel_nats_redelivered_messages_total` (deliveries after the first),
//! `iotel_nats_dead_letters_total{reason}`,
//! `iotel_nats_duplicate_deliveries_total`, and errors in
//! `iotel_component_errors_total` by `error_code`: `consumer_failed`,
//! `fetch_failed`, `ack_failed`, `dead_letter_failed`, and a frame's decode
//! error code (`bad_frame`, `too_large`, …).

mod consume;
#[cfg(test)]
mod tests;
mod window;

use crate::sinks::nats_jetstream::{check_stream_name, check_url, default_stream, default_url};
use crate::{BuildContext, Problem};
use iotel_engine::Source;
use iotel_engine::config::{ByteSize, Duration};
use serde::Deserialize;
use std::num::{NonZeroU32, NonZeroUsize};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The server(s): `nats://host:port` (`tls://` for TLS), several
    /// separated by commas.
    #[serde(default = "default_url")]
    pub url: String,
    #[serde(default = "default_stream")]
    pub stream: String,
    /// The durable consumer's name; every worker that names it shares it.
    #[serde(default = "default_durable")]
    pub durable: String,
    /// The subjects the consumer takes (two or more need nats-server 2.10).
    #[serde(default = "default_filter_subjects")]
    pub filter_subjects: Vec<String>,
    /// Messages per pull.
    #[serde(default = "default_batch")]
    pub batch: NonZeroUsize,
    /// How long one pull waits for messages.
    #[serde(default = "default_max_wait")]
    pub max_wait: Duration,
    /// How long JetStream waits for an acknowledgement before delivering a
    /// message again (a worker in progress extends it).
    #[serde(default = "default_ack_wait")]
    pub ack_wait: Duration,
    /// Messages handed out and not acknowledged, over all workers.
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: NonZeroU32,
    /// Deliveries of a message before it goes to the dead letters.
    #[serde(default = "default_max_deliver")]
    pub max_deliver: NonZeroU32,
    /// The delay JetStream waits before delivering a failed message again.
    #[serde(default = "default_nak_delay")]
    pub nak_delay: Duration,
    /// Where messages go that cannot be handled; `{subject}` is replaced by
    /// the message's subject.
    #[serde(default = "default_dead_letter_subject")]
    pub dead_letter_subject: String,
    /// Messages remembered as acknowledged, to drop their redeliveries.
    #[serde(default = "default_dedup_window")]
    pub dedup_window: NonZeroUsize,
    /// A frame's body once decompressed, at most.
    #[serde(default = "default_max_decoded_size")]
    pub max_decoded_size: ByteSize,
    /// Events in one frame, at most.
    #[serde(default = "default_max_events")]
    pub max_events: NonZeroUsize,
}

fn default_durable() -> String {
    "iotel-workers".to_string()
}

fn default_filter_subjects() -> Vec<String> {
    vec![format!(
        "{}.*.*.*",
        crate::sinks::nats_jetstream::SUBJECT_PREFIX
    )]
}

fn default_batch() -> NonZeroUsize {
    NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN)
}

fn default_max_wait() -> Duration {
    Duration::from_secs(1)
}

fn default_ack_wait() -> Duration {
    Duration::from_secs(30)
}

fn default_max_ack_pending() -> NonZeroU32 {
    NonZeroU32::new(1_000).unwrap_or(NonZeroU32::MIN)
}

fn default_max_deliver() -> NonZeroU32 {
    NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN)
}

fn default_nak_delay() -> Duration {
    Duration::from_secs(1)
}

fn default_dead_letter_subject() -> String {
    "iotel.dead.{subject}".to_string()
}

fn default_dedup_window() -> NonZeroUsize {
    NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN)
}

fn default_max_decoded_size() -> ByteSize {
    ByteSize(32 << 20)
}

fn default_max_events() -> NonZeroUsize {
    NonZeroUsize::new(1 << 20).unwrap_or(NonZeroUsize::MIN)
}

/// Checks a subject or filter: dot-separated non-empty tokens without
/// whitespace, `*` only as a whole token, `>` only as the whole last one.
pub(crate) fn check_subject(s: &str, wildcards: bool) -> Result<(), String> {
    if s.is_empty() {
        return Err("expected a subject such as \"iotel.*.*.*\"".to_string());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{s:?}: a subject cannot contain whitespace"));
    }
    let tokens: Vec<&str> = s.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Err(format!(
                "{s:?}: a subject cannot have an empty token (\"..\")"
            ));
        }
        let wild = t.contains(['*', '>']);
        if wild && !wildcards {
            return Err(format!("{s:?}: expected a subject without wildcards"));
        }
        if wild && !(*t == "*" || (*t == ">" && i + 1 == tokens.len())) {
            return Err(format!(
                "{s:?}: `*` must be a whole token, `>` the whole last one (like \"a.*.>\")"
            ));
        }
    }
    Ok(())
}

/// Whether `subject` matches `filter` (NATS wildcards: `*` one token, `>`
/// one or more).
pub(crate) fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if let Err(e) = check_url(&self.url) {
            p.push(Problem::new("url", e));
        }
        if let Err(e) = check_stream_name(&self.stream) {
            p.push(Problem::new("stream", e));
        }
        if let Err(e) = check_stream_name(&self.durable) {
            p.push(Problem::new(
                "durable",
                e.replace("a stream name", "a consumer name"),
            ));
        }
        if self.filter_subjects.is_empty() {
            p.push(Problem::new(
                "filter_subjects",
                "expected at least one subject filter, such as \"iotel.*.*.*\"",
            ));
        }
        for (i, f) in self.filter_subjects.iter().enumerate() {
            if let Err(e) = check_subject(f, true) {
                p.push(Problem::new(format!("filter_subjects[{i}]"), e));
            }
        }
        // A dead letter the consumer took again would go round forever.
        let example = self.dead_letter_for("iotel.acme.metrics.0");
        match check_subject(&example, false) {
            Err(e) => p.push(Problem::new(
                "dead_letter_subject",
                format!("{e} (with {{subject}} = iotel.acme.metrics.0)"),
            )),
            Ok(()) => {
                if let Some(f) = self
                    .filter_subjects
                    .iter()
                    .find(|f| subject_matches(f, &example))
                {
                    p.push(Problem::new(
                        "dead_letter_subject",
                        format!(
                            "{example:?} (for iotel.acme.metrics.0) matches filter {f:?}: the \
                             consumer would take its dead letters again"
                        ),
                    ));
                }
            }
        }
        if self.max_wait.get() < std::time::Duration::from_millis(10) {
            p.push(Problem::new(
                "max_wait",
                format!("expected at least 10ms, got {}", self.max_wait),
            ));
        }
        if self.ack_wait.get() < std::time::Duration::from_secs(1) {
            p.push(Problem::new(
                "ack_wait",
                format!("expected at least 1s, got {}", self.ack_wait),
            ));
        }
        if self.batch.get() > self.max_ack_pending.get() as usize {
            p.push(Problem::new(
                "batch",
                format!(
                    "expected at most max_ack_pending ({}), got {}",
                    self.max_ack_pending, self.batch
                ),
            ));
        }
        if self.max_decoded_size.bytes() < 1024 {
            p.push(Problem::new(
                "max_decoded_size",
                format!("expected at least 1KiB, got {}", self.max_decoded_size),
            ));
        }
        p
    }

    /// The dead-letter subject of a message on `subject`.
    pub fn dead_letter_for(&self, subject: &str) -> String {
        self.dead_letter_subject.replace("{subject}", subject)
    }

    /// # Errors
    /// None today; kept for the common shape.
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
        Ok(Box::new(consume::Worker {
            config: self.clone(),
        }))
    }
}
