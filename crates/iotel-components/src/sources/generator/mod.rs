//! `generator`: emits log lines or metric samples at a set rate, each with a
//! sequence number in a field named `seq` — for tests, benchmarks and demos
//! (as Fluent Bit's `dummy` input or Vector's `demo_logs`).
//!
//! Logs carry `seq` as a structured field; metric samples carry it as the
//! label `seq` and as their value, on the gauge `iotel_generator_sample`.

use crate::{BuildContext, Problem};
use iotel_engine::config::Duration;
use iotel_engine::{ComponentFuture, SignalSet, Source, SourceContext};
use iotel_model::{
    Events, Labels, LogRecord, Metric, MetricMeta, MetricType, now_unix_ms, now_unix_ns,
};
use serde::Deserialize;
use std::num::NonZeroUsize;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratedSignal {
    Log,
    Metric,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub signal: GeneratedSignal,
    /// Time between batches.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Events per batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: NonZeroUsize,
    /// Stop after this many events; unset runs until shutdown.
    #[serde(default)]
    pub count: Option<u64>,
    /// The message of generated log lines; `seq` is appended.
    #[serde(default = "default_message")]
    pub message: String,
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_batch_size() -> NonZeroUsize {
    NonZeroUsize::MIN
}

fn default_message() -> String {
    "generated line".into()
}

impl Config {
    pub fn signals(&self) -> SignalSet {
        match self.signal {
            GeneratedSignal::Log => SignalSet::LOGS,
            GeneratedSignal::Metric => SignalSet::METRICS,
        }
    }

    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.interval.get().is_zero() {
            p.push(Problem::new(
                "interval",
                "expected a duration greater than zero",
            ));
        }
        p
    }

    /// # Errors
    /// None today; the signature is every component's.
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
        Ok(Box::new(Generator {
            config: self.clone(),
        }))
    }
}

#[derive(Debug)]
pub struct Generator {
    config: Config,
}

impl Generator {
    fn batch(&self, first_seq: u64, n: u64, meta: &Arc<MetricMeta>) -> Events {
        let seqs = first_seq..first_seq + n;
        match self.config.signal {
            GeneratedSignal::Log => Events::Logs(
                seqs.map(|seq| {
                    let mut r =
                        LogRecord::new(now_unix_ns(), format!("{} {seq}", self.config.message));
                    r.fields.insert("seq".into(), seq.into());
                    r
                })
                .collect(),
            ),
            GeneratedSignal::Metric => Events::Metrics(
                seqs.map(|seq| Metric {
                    name: meta.family.clone(),
                    labels: Labels::from_pairs([("seq", seq.to_string())]),
                    value: seq as f64,
                    timestamp_ms: now_unix_ms(),
                    meta: meta.clone(),
                    exemplar: None,
                })
                .collect(),
            ),
        }
    }
}

impl Source for Generator {
    fn run(self: Box<Self>, mut cx: SourceContext) -> ComponentFuture {
        Box::pin(async move {
            let meta = Arc::new(
                MetricMeta::new("iotel_generator_sample", MetricType::Gauge)
                    .with_help("A generated sample; its value is its sequence number."),
            );
            let mut tick = tokio::time::interval(self.config.interval.get());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u64;
            loop {
                let n = match self.config.count {
                    Some(c) if seq >= c => break,
                    Some(c) => (c - seq).min(self.config.batch_size.get() as u64),
                    None => self.config.batch_size.get() as u64,
                };
                tokio::select! {
                    _ = cx.shutdown.wait() => break,
                    _ = tick.tick() => {}
                }
                if !cx.out.send(self.batch(seq, n, &meta)).await {
                    break;
                }
                seq += n;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotel_engine::{ComponentKey, ComponentMetrics, Output, Shutdown};

    #[tokio::test]
    async fn emits_exactly_count_logs_with_consecutive_seq_then_stops() {
        let cfg: Config =
            toml::from_str("signal = \"log\"\ninterval = \"1ms\"\ncount = 5\nbatch_size = 2")
                .unwrap();
        let (out, mut rx) = Output::for_test(16);
        let cx = SourceContext {
            key: ComponentKey {
                id: "g".into(),
                type_name: "generator".into(),
            },
            out,
            shutdown: Shutdown::never(),
            metrics: ComponentMetrics::detached("g", "generator"),
            data_dir: std::env::temp_dir(),
        };
        cfg.build(&BuildContext::for_test("g"))
            .unwrap()
            .run(cx)
            .await
            .unwrap();
        let mut seqs = Vec::new();
        while let Some(ev) = rx.try_recv() {
            let Events::Logs(logs) = ev else {
                panic!("expected logs")
            };
            seqs.extend(logs.iter().map(|l| l.fields["seq"].as_u64().unwrap()));
        }
        assert_eq!(seqs, [0, 1, 2, 3, 4]);
    }
}
