//! Cost of the `anomaly` transform per sample at many series, and the
//! memory they hold (bench/anomaly.sh runs it).
//!
//! `anomaly_bench <detector> [series] [rounds]`: every round sends one
//! sample of each series, in batches of 1,000; the first `window` rounds
//! (60) fill the detectors and are not timed, the next `rounds` are. Only
//! the `transform` calls are timed (making the samples is not). Prints
//! ns/sample and the process's RSS (VmRSS, VmHWM) with one round of
//! samples made, then after the run (the difference: the series' state).

use iotel_components::BuildContext;
use iotel_components::transforms::anomaly::Config;
use iotel_engine::Transform;
use iotel_model::{Events, Labels, Metric, MetricType};
use std::time::{Duration, Instant};

fn rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    format!("VmRSS {} VmHWM {}", kb("VmRSS:"), kb("VmHWM:"))
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let detector = args.next().unwrap_or_else(|| "zscore".into());
    let series: usize = args
        .next()
        .map_or(Ok(100_000), |a| a.parse())
        .map_err(|e| format!("series: {e}"))?;
    let rounds: i64 = args
        .next()
        .map_or(Ok(20), |a| a.parse())
        .map_err(|e| format!("rounds: {e}"))?;
    let warmup = 60;
    let text = format!(
        "dimensions = [\"line\", \"shift\", \"firmware\", \"asset_class\"]\n\
         max_series = {series}\n\
         rules = [{{ metric = \"machine_.*\", detector = \"{detector}\", buckets = 96 }}]\n"
    );
    let cfg: Config = toml::from_str(&text).map_err(|e| e.to_string())?;
    if !cfg.validate().is_empty() {
        return Err(format!("{:?}", cfg.validate()));
    }
    let mut t = cfg
        .build_anomaly(&BuildContext::for_test("bench"))
        .map_err(|p| format!("{p:?}"))?;
    let mut batches: Vec<Vec<Metric>> = (0..series)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(|ids| {
            ids.iter()
                .map(|i| {
                    let labels = Labels::from_pairs([
                        ("device_id", format!("d{i:06}")),
                        ("line", format!("L{}", i % 8)),
                        ("shift", ["early", "late", "night"][i % 3].to_string()),
                        ("firmware", format!("2.{}", i % 5)),
                        ("asset_class", format!("c{}", i % 4)),
                    ]);
                    Metric::new(
                        "machine_temperature_celsius",
                        MetricType::Gauge,
                        labels,
                        0.0,
                        0,
                    )
                })
                .collect()
        })
        .collect();
    // The samples of one round are made before the series: what the
    // series hold is the difference.
    let before = rss();
    let mut timed = Duration::ZERO;
    let mut samples = 0u64;
    let mut out = Vec::new();
    let mut routed = Vec::new();
    let mut events = 0usize;
    for round in 0..warmup + rounds {
        for (b, batch) in batches.iter_mut().enumerate() {
            for (i, m) in batch.iter_mut().enumerate() {
                // Noise-like values from a cheap hash, one sample a minute.
                let h = ((round as u64 * 0x9E37_79B9) ^ (b * 1000 + i) as u64)
                    .wrapping_mul(0xBF58_476D_1CE4_E5B9);
                m.value = 20.0 + (h >> 40) as f64 / (1u64 << 24) as f64;
                m.timestamp_ms = 1_767_571_200_000 + round * 60_000;
            }
            let events_in = Events::Metrics(std::mem::take(batch));
            let start = Instant::now();
            t.transform(events_in, &mut out);
            t.routed(&mut routed);
            let took = start.elapsed();
            if round >= warmup {
                timed += took;
                samples += 1000.min(series as u64);
            }
            if let Some(Events::Metrics(m)) = out.drain(..).next() {
                *batch = m;
            }
            events += routed.drain(..).map(|(_, e)| e.len()).sum::<usize>();
        }
    }
    let ns = timed.as_nanos() as f64 / samples.max(1) as f64;
    println!(
        "{detector}: {series} series, {samples} timed samples: {ns:.0} ns/sample; anomaly events {events}; with the samples only: {before}; after {}",
        rss()
    );
    Ok(())
}
