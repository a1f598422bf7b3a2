//! Measures the `anomaly` transform on the synthetic fleet: recall and
//! precision per anomaly kind, per detector, as a Markdown table.
//!
//! `cargo run --release -p iotel-components --example anomaly_eval [devices]`
//!
//! Each kind is measured on a run where only it is injected (so a false
//! event counts against the kind it was run for); the last row injects
//! them all at once.

use iotel_components::transforms::anomaly::synthetic::{
    Fleet, Kind, Spec, evaluate, transform_for,
};

fn main() -> Result<(), String> {
    let devices: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().map_err(|e| format!("devices: {e}")))
        .transpose()?
        .unwrap_or(500);
    let detectors: [(&str, &str); 3] = [
        ("zscore", ", threshold = 5.0, window = 60"),
        ("ewma", ", threshold = 5.0, alpha = 0.05"),
        (
            "seasonal",
            ", threshold = 5.0, buckets = 96, min_samples = 10, alpha = 0.02",
        ),
    ];
    println!("{devices} devices, 6 days at one sample per 2 minutes (2 days of warm-up)\n");
    println!(
        "| injected | detector | anomalies | found | recall | events | precision | false events per device-day | firmware ranked first |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut runs: Vec<(String, Vec<Kind>)> = Kind::ALL
        .iter()
        .map(|k| (k.as_str().to_string(), vec![*k]))
        .collect();
    runs.push(("all four".into(), Kind::ALL.to_vec()));
    for (label, kinds) in runs {
        let fleet = Fleet::generate(Spec {
            devices,
            kinds: kinds.clone(),
            ..Spec::default()
        });
        for (detector, extra) in detectors {
            let mut t = transform_for(detector, extra)?;
            let started = std::time::Instant::now();
            let r = evaluate(&fleet, &mut t);
            let (injected, found) = kinds.iter().fold((0, 0), |(i, f), k| {
                let s = r.kind(*k);
                (i + s.injected, f + s.found)
            });
            let explained = if kinds.contains(&Kind::FirmwareFault) {
                format!("{:.0} %", 100.0 * r.explained_share())
            } else {
                "–".into()
            };
            println!(
                "| {label} | {detector} | {injected} | {found} | {:.2} | {} | {:.2} | {:.3} | {explained} |",
                if injected == 0 {
                    1.0
                } else {
                    found as f64 / injected as f64
                },
                r.events,
                r.precision(),
                r.false_per_device_day(),
            );
            eprintln!(
                "{label}/{detector}: {} samples in {:?}",
                r.samples,
                started.elapsed()
            );
        }
    }
    Ok(())
}
