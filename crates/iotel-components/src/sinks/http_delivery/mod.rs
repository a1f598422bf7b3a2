//! Delivery of batches over HTTP, shared by the sinks that POST them
//! (`prometheus_remote_write`, `iotel`).
//!
//! What to do with a batch after an attempt to send it is the retry policy
//! here, without I/O, so every rule is unit-tested without a socket;
//! `request.rs` makes the one POST and reads the answer.
//!
//! | answer                                  | action                                   |
//! |-----------------------------------------|------------------------------------------|
//! | 2xx                                     | delivered: remove the batch, count sent  |
//! | 429, 5xx                                | retry the same batch after a backoff     |
//! | no answer (connect error, reset, timeout) | retry the same batch after a backoff   |
//! | any other status (4xx, 3xx, …)          | reject: drop the batch, count it         |
//!
//! A protocol may narrow which statuses are retried
//! ([`Delivery::on_answer_with`]): OTLP retries 429, 502, 503 and 504 only.
//! A protocol that is not plain HTTP (OTLP/gRPC) judges its peer's
//! refusals itself ([`Answer::Refused`]): retried or rejected as it says,
//! with the delay it read (gRPC's `RetryInfo`) in place of `Retry-After`.
//!
//! The backoff doubles from `initial_backoff` per failed attempt up to
//! `max_backoff`, with "equal jitter": a delay is drawn between half the
//! current step and the whole step, so many agents that lost the same peer
//! do not come back in lockstep. A `Retry-After` the peer sent wins over the
//! backoff, bounded by `initial_backoff` below (a `Retry-After: 0` loop would
//! spin) and `max_backoff` above. Any delivered or rejected batch resets the
//! backoff.

mod headers;
mod request;

pub use headers::Headers;
pub(crate) use headers::request_headers;
pub(crate) use request::{Exchange, post};

use std::time::{Duration, SystemTime};

/// The answer to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The peer answered with `status`, and maybe a `Retry-After` (already
    /// parsed, see [`parse_retry_after`]).
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: the connection failed or the request timed out. `code` is
    /// the error code to count it under.
    Failed { code: &'static str },
    /// A refusal in a protocol's own terms (a gRPC status), which the
    /// protocol judged: whether sending again may help, the error code to
    /// count it under, and a delay the peer asked for (gRPC's `RetryInfo`).
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    Refused {
        code: &'static str,
        retryable: bool,
        retry_after: Option<Duration>,
    },
}

/// What to do with the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Delivered; `after_failures` attempts had failed before.
    Delivered { after_failures: u32 },
    /// Send the same batch again after `delay`. `failures` counts the failed
    /// attempts so far, this one included; `code` is the error code.
    Retry {
        delay: Duration,
        failures: u32,
        code: &'static str,
    },
    /// The peer refused the batch and would refuse it again: drop it.
    Reject { code: &'static str },
}

/// The backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// `retry`: the backoff between attempts to send a batch, as every HTTP
/// sink configures it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// The wait after the first failure; doubled after each further one.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: iotel_engine::config::Duration,
    /// The longest wait, `Retry-After` included.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: iotel_engine::config::Duration,
}

fn default_initial_backoff() -> iotel_engine::config::Duration {
    iotel_engine::config::Duration::from_millis(100)
}

fn default_max_backoff() -> iotel_engine::config::Duration {
    iotel_engine::config::Duration::from_secs(30)
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

impl RetryConfig {
    /// Problems under the key `retry`.
    pub fn validate(&self) -> Vec<crate::Problem> {
        let mut p = Vec::new();
        if self.initial_backoff.get().is_zero() {
            p.push(crate::Problem::new(
                "retry.initial_backoff",
                "expected a duration above 0s, such as \"100ms\"",
            ));
        }
        if self.max_backoff < self.initial_backoff {
            p.push(crate::Problem::new(
                "retry.max_backoff",
                format!(
                    "expected at least retry.initial_backoff ({}), got {}",
                    self.initial_backoff, self.max_backoff
                ),
            ));
        }
        p
    }

    pub(crate) fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            initial_backoff: self.initial_backoff.get(),
            max_backoff: self.max_backoff.get(),
        }
    }
}

/// The retry state of the batch at the head of the queue.
#[derive(Debug)]
pub(crate) struct Delivery {
    policy: RetryPolicy,
    /// Failed attempts of the current batch.
    failures: u32,
}

impl Delivery {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            failures: 0,
        }
    }

    /// Decides after an attempt, retrying the statuses [`retryable`] names.
    /// `jitter` is a random number in `[0, 1]`.
    #[cfg(test)]
    pub(crate) fn on_answer(&mut self, answer: &Answer, jitter: f64) -> Action {
        self.on_answer_with(answer, jitter, retryable)
    }

    /// Like [`Delivery::on_answer`], with `retryable` saying which statuses
    /// outside 2xx are worth sending again; the others reject.
    pub(crate) fn on_answer_with(
        &mut self,
        answer: &Answer,
        jitter: f64,
        retryable: impl Fn(u16) -> bool,
    ) -> Action {
        let (retry_after, code) = match *answer {
            Answer::Status { status, .. } if (200..300).contains(&status) => {
                return Action::Delivered {
                    after_failures: std::mem::take(&mut self.failures),
                };
            }
            Answer::Status {
                status,
                retry_after,
            } if retryable(status) => (
                retry_after,
                if status == 429 {
                    "http_429"
                } else {
                    "http_5xx"
                },
            ),
            Answer::Status { status, .. } => {
                self.failures = 0;
                return Action::Reject {
                    code: match status {
                        400..=499 => "http_4xx",
                        300..=399 => "http_3xx",
                        500..=599 => "http_5xx",
                        _ => "http_unexpected_status",
                    },
                };
            }
            Answer::Failed { code } => (None, code),
            Answer::Refused {
                code,
                retryable: true,
                retry_after,
            } => (retry_after, code),
            Answer::Refused { code, .. } => {
                self.failures = 0;
                return Action::Reject { code };
            }
        };
        let backoff = self.backoff(self.failures, jitter);
        self.failures = self.failures.saturating_add(1);
        let delay = match retry_after {
            Some(d) => d.clamp(self.policy.initial_backoff, self.policy.max_backoff),
            None => backoff,
        };
        Action::Retry {
            delay,
            failures: self.failures,
            code,
        }
    }

    /// The delay after `failures` earlier failures: `initial · 2^failures`
    /// capped at `max`, then jittered into `[step/2, step]`.
    fn backoff(&self, failures: u32, jitter: f64) -> Duration {
        let RetryPolicy {
            initial_backoff,
            max_backoff,
        } = self.policy;
        let step = initial_backoff
            .checked_mul(1u32.checked_shl(failures).unwrap_or(u32::MAX))
            .unwrap_or(max_backoff)
            .min(max_backoff);
        // In whole nanoseconds, so a jitter of 1 gives the step exactly.
        let half = step / 2;
        let extra = (half.as_nanos() as f64 * jitter.clamp(0.0, 1.0)) as u64;
        step - half + Duration::from_nanos(extra)
    }
}

/// Whether a status is worth sending the batch again, by default: 429 and
/// 5xx.
pub(crate) fn retryable(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date (RFC 9110
/// IMF-fixdate, e.g. `Wed, 21 Oct 2015 07:28:00 GMT`), as a delay from `now`.
/// A date in the past is a zero delay. Returns `None` for anything else, so
/// the sink falls back to its own backoff. (The obsolete RFC 850 and asctime
/// date forms are not accepted.)
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    static PARSER: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    let at = SystemTime::from(PARSER.parse_timestamp(value).ok()?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An answer for the log: `HTTP 400: "body…"` or the connection error.
pub(crate) fn describe(exchange: &Exchange) -> String {
    match exchange.answer {
        Answer::Status { status, .. } if exchange.detail.is_empty() => format!("HTTP {status}"),
        Answer::Status { status, .. } => format!("HTTP {status}: {:?}", exchange.detail),
        Answer::Failed { .. } | Answer::Refused { .. } => exchange.detail.clone(),
    }
}

/// A small random source for jitter: xorshift64*, seeded per process. Not
/// for anything that needs real randomness.
#[derive(Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        Self(h.finish() | 1)
    }

    /// A number in `[0, 1)`.
    pub(crate) fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(30),
    };

    fn status(status: u16) -> Answer {
        Answer::Status {
            status,
            retry_after: None,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn each_status_maps_to_its_action() {
        let mut d = Delivery::new(POLICY);
        for s in [200, 204, 299] {
            assert_eq!(
                d.on_answer(&status(s), 1.0),
                Action::Delivered { after_failures: 0 },
                "{s}"
            );
        }
        for (s, code) in [
            (500, "http_5xx"),
            (503, "http_5xx"),
            (599, "http_5xx"),
            (429, "http_429"),
        ] {
            let mut d = Delivery::new(POLICY);
            assert_eq!(
                d.on_answer(&status(s), 1.0),
                Action::Retry {
                    delay: ms(100),
                    failures: 1,
                    code
                },
                "{s}"
            );
        }
        for (s, code) in [
            (400, "http_4xx"),
            (401, "http_4xx"),
            (404, "http_4xx"),
            (413, "http_4xx"),
            (301, "http_3xx"),
            (101, "http_unexpected_status"),
        ] {
            assert_eq!(d.on_answer(&status(s), 1.0), Action::Reject { code }, "{s}");
        }
        let failed = Answer::Failed {
            code: "request_timeout",
        };
        assert!(matches!(
            d.on_answer(&failed, 1.0),
            Action::Retry {
                code: "request_timeout",
                ..
            }
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut d = Delivery::new(POLICY);
        let delays: Vec<Duration> = (0..12)
            .map(|_| retry(d.on_answer(&status(503), 1.0)).0)
            .collect();
        let want: Vec<Duration> = [
            100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000,
        ]
        .into_iter()
        .map(ms)
        .collect();
        assert_eq!(delays, want);
        // Far past the cap, no overflow.
        for _ in 0..100 {
            d.on_answer(&status(503), 1.0);
        }
        assert_eq!(retry(d.on_answer(&status(503), 1.0)), (ms(30_000), 113));
    }

    /// The (delay, failures) of a retry.
    fn retry(action: Action) -> (Duration, u32) {
        match action {
            Action::Retry {
                delay, failures, ..
            } => (delay, failures),
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn jitter_keeps_a_delay_between_half_and_the_whole_step() {
        let mut d = Delivery::new(POLICY);
        d.on_answer(&status(500), 0.0);
        d.on_answer(&status(500), 0.0);
        // Third failure: the step is 400ms.
        assert_eq!(retry(d.on_answer(&status(500), 0.0)), (ms(200), 3));
        let mut d = Delivery::new(POLICY);
        assert_eq!(retry(d.on_answer(&status(500), 0.5)), (ms(75), 1));
    }

    #[test]
    fn success_and_rejection_reset_the_backoff() {
        let mut d = Delivery::new(POLICY);
        d.on_answer(&status(500), 1.0);
        d.on_answer(&status(500), 1.0);
        assert_eq!(
            d.on_answer(&status(200), 1.0),
            Action::Delivered { after_failures: 2 }
        );
        assert_eq!(retry(d.on_answer(&status(500), 1.0)), (ms(100), 1));
        d.on_answer(&status(400), 1.0);
        assert_eq!(retry(d.on_answer(&status(500), 1.0)), (ms(100), 1));
    }

    #[test]
    fn retry_after_wins_over_the_backoff_within_its_bounds() {
        let mut d = Delivery::new(POLICY);
        let with = |status: u16, secs: u64| Answer::Status {
            status,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(retry(d.on_answer(&with(429, 1), 1.0)).0, ms(1000));
        // Capped by max_backoff, and at least initial_backoff.
        assert_eq!(retry(d.on_answer(&with(429, 3600), 1.0)).0, ms(30_000));
        assert_eq!(retry(d.on_answer(&with(429, 0), 1.0)).0, ms(100));
        // A 503 may carry one too; the failures keep counting.
        assert_eq!(retry(d.on_answer(&with(503, 2), 1.0)), (ms(2000), 4));
    }

    #[test]
    fn a_refusal_the_protocol_judged_is_retried_or_rejected_as_it_says() {
        let mut d = Delivery::new(POLICY);
        let refused = |retryable, retry_after| Answer::Refused {
            code: "grpc_unavailable",
            retryable,
            retry_after,
        };
        assert_eq!(
            d.on_answer(&refused(true, None), 1.0),
            Action::Retry {
                delay: ms(100),
                failures: 1,
                code: "grpc_unavailable"
            }
        );
        assert_eq!(
            retry(d.on_answer(&refused(true, Some(ms(1500))), 1.0)),
            (ms(1500), 2)
        );
        assert_eq!(
            d.on_answer(&refused(false, Some(ms(1500))), 1.0),
            Action::Reject {
                code: "grpc_unavailable"
            }
        );
        assert_eq!(retry(d.on_answer(&refused(true, None), 1.0)), (ms(100), 1));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21T07:28:00Z
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past"
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-1", "1.5", "soon", "Wed, 21 Oct 2015"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn jitter_stays_in_the_unit_interval_and_varies() {
        let mut j = Jitter::new();
        let draws: Vec<f64> = (0..1000).map(|_| j.next()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(draws.iter().any(|x| *x < 0.1) && draws.iter().any(|x| *x > 0.9));
    }
}
