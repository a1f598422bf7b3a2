//! `iotel loadgen`: a simulated fleet against an agent, a gateway or a
//! cloud endpoint, over the native protocol.
//!
//! Devices are grouped into simulated agents (`--devices-per-agent`); each
//! agent sends its devices' metrics, log lines and spans every `--interval`
//! as native batches (one per signal), with its own agent id and increasing
//! sequences, and retries what was not acknowledged (429, 5xx, connection
//! errors) with backoff, as a real agent does. Each device's clock is off by
//! a fixed drift (up to `--clock-drift`), and a share of agents
//! (`--flapping`) lose their link for a few seconds at a time, keeping what
//! they generate meanwhile and sending it when the link is back.
//!
//! With `--listen ADDR` loadgen also receives native batches, as the last
//! hop of the chain under test would send them (an `iotel` sink pointed at
//! ADDR): it then reports how many of the acknowledged events arrived, the
//! duplicates, and the end-to-end latency from when an event was generated
//! (true time, the device's drift taken out) to its arrival.

mod fleet;
mod mqtt;
mod receiver;
mod sender;
mod stats;

use anyhow::Context;
use clap::{Args, ValueEnum};
use fleet::Rates;
use stats::Stats;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct LoadgenArgs {
    /// The receiver: an `iotel` source, e.g. `http://127.0.0.1:7070`
    /// (the path defaults to /iotel/v1/batch).
    #[arg(long, required_unless_present = "mqtt", conflicts_with = "mqtt")]
    pub target: Option<String>,
    /// Devices that speak only MQTT instead: each publishes its readings as
    /// JSON to `plant/<site>/<device id>/telemetry` on this broker
    /// (`mqtt://host[:port]`), QoS 1, every --interval.
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,
    /// Simulated devices.
    #[arg(long, default_value_t = 50)]
    pub devices: usize,
    /// The number of the first device (`dev-00000` by default): loadgens
    /// that share a receiver take different ranges.
    #[arg(long, default_value_t = 0)]
    pub first_device: usize,
    /// Devices per simulated agent (one agent id and connection each).
    #[arg(long, default_value_t = 100)]
    pub devices_per_agent: usize,
    /// Metric samples per device per second.
    #[arg(long, default_value_t = 10.0)]
    pub metrics_per_second: f64,
    /// Log lines per device per second.
    #[arg(long, default_value_t = 1.0)]
    pub logs_per_second: f64,
    /// Spans per device per second.
    #[arg(long, default_value_t = 0.0)]
    pub spans_per_second: f64,
    /// How long to generate, e.g. `60s`, `5m`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How often each agent sends.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// The largest clock drift of a device (each gets a fixed one in
    /// ± this).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub clock_drift: Duration,
    /// The share of agents whose link drops now and then (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub flapping: f64,
    /// `none`, `snappy`, `zstd` or `lz4`.
    #[arg(long, value_enum, default_value_t = CompressionArg::Snappy)]
    pub compression: CompressionArg,
    /// A `tenant` label on every event.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The `site` label of every device.
    #[arg(long, default_value = "site-1")]
    pub site: String,
    /// Receive the chain's output here and report end-to-end latency.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// After generating, how long to wait for what is unacknowledged or
    /// not yet received.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    #[command(flatten)]
    pub tls: crate::client_tls::TlsArgs,
    /// A file holding a bearer token sent with every request.
    #[arg(long)]
    pub bearer_token_file: Option<PathBuf>,
    /// Write the summary as JSON to this file too.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
    /// Seed of the fleet's randomness.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    None,
    Snappy,
    Zstd,
    Lz4,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<iotel_engine::config::Duration>().map(|d| d.get())
}

pub fn run(args: LoadgenArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(args.devices > 0, "--devices must be at least 1");
    anyhow::ensure!(
        args.devices_per_agent > 0,
        "--devices-per-agent must be at least 1"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.flapping),
        "--flapping is a share of agents: expected 0 to 1, got {}",
        args.flapping
    );
    anyhow::ensure!(
        !args.interval.is_zero(),
        "--interval must be more than zero"
    );
    for (flag, rate) in [
        ("--metrics-per-second", args.metrics_per_second),
        ("--logs-per-second", args.logs_per_second),
        ("--spans-per-second", args.spans_per_second),
    ] {
        anyhow::ensure!(
            rate.is_finite() && rate >= 0.0,
            "{flag}: expected a rate of 0 or more, got {rate}"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: LoadgenArgs) -> anyhow::Result<std::process::ExitCode> {
    if let Some(url) = args.mqtt.clone() {
        return run_mqtt(&args, &url).await;
    }
    let stats = Arc::new(Stats::default());
    let target = sender::Target::new(&args)?;
    let drifts = fleet_drifts(&args);
    let receiver = match args.listen {
        Some(addr) => Some(receiver::start(addr, stats.clone(), drifts.clone()).await?),
        None => None,
    };
    let rates = Rates {
        metrics: args.metrics_per_second,
        logs: args.logs_per_second,
        spans: args.spans_per_second,
    };
    let agents = args.devices.div_ceil(args.devices_per_agent);
    eprintln!(
        "loadgen: {} devices in {agents} agent(s) → {} for {:?}; per device {} samples/s, {} log lines/s, {} spans/s",
        args.devices,
        target.endpoint(),
        args.duration,
        args.metrics_per_second,
        args.logs_per_second,
        args.spans_per_second
    );
    let started = Instant::now();
    let generate_until = started + args.duration;
    let drain_until = generate_until + args.drain_timeout;
    let mut tasks = Vec::with_capacity(agents);
    let flapping = (args.flapping * agents as f64).round() as usize;
    for a in 0..agents {
        let first = a * args.devices_per_agent;
        let last = (first + args.devices_per_agent).min(args.devices);
        let sim = sender::Agent {
            id: format!("loadgen-{}-{a:04}", args.site),
            devices: (args.first_device + first..args.first_device + last)
                .map(|i| fleet::Device::new(i, &args.site, args.tenant.as_deref(), drifts[i]))
                .collect(),
            rng: fastrand::Rng::with_seed(args.seed ^ (a as u64).wrapping_mul(0x9e37_79b9)),
            flapping: a < flapping,
            rates,
            interval: args.interval,
            // Spread the agents' first sends over one interval.
            offset: args.interval.mul_f64(a as f64 / agents as f64),
        };
        tasks.push(tokio::spawn(sim.run(
            target.clone(),
            stats.clone(),
            [started, generate_until, drain_until],
        )));
    }

    let bar = progress_bar(args.duration);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while Instant::now() < generate_until {
        tick.tick().await;
        let secs = started.elapsed().as_secs_f64();
        bar.set_position(secs.min(args.duration.as_secs_f64()) as u64);
        bar.set_message(format!(
            "{:.0} events/s acked",
            stats.total(|s| &s.acked) as f64 / secs.max(0.25)
        ));
    }
    bar.finish_and_clear();
    let generated_for = started.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    let acked = stats.total(|s| &s.acked);
    if let Some(r) = &receiver {
        // What was acknowledged reaches the listener a little later: wait
        // for all of it, or until the drain timeout.
        while Instant::now() < drain_until {
            tick.tick().await;
            let unique = stats.total(|s| &s.received) - stats.total(|s| &s.duplicates);
            if unique >= acked {
                break;
            }
        }
        r.stop();
    }
    let listening = receiver.is_some();
    print!("{}", stats.summary(generated_for, listening));
    if let Some(path) = &args.report_json {
        let text = serde_json::to_string_pretty(&stats.to_json(generated_for))?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let lost = listening && stats.total(|s| &s.received) - stats.total(|s| &s.duplicates) < acked;
    let unacked = stats.total(|s| &s.generated) > acked + stats.total(|s| &s.refused);
    Ok(
        if lost
            || unacked
            || stats
                .signals
                .iter()
                .any(|s| s.refused.load(Ordering::Relaxed) > 0)
        {
            std::process::ExitCode::FAILURE
        } else {
            std::process::ExitCode::SUCCESS
        },
    )
}

/// Each device's clock drift in milliseconds, spread evenly in
/// ± `--clock-drift` by the seed.
/// `--mqtt`: the devices publish to a broker; what counts is what the
/// broker acknowledged.
async fn run_mqtt(args: &LoadgenArgs, url: &str) -> anyhow::Result<std::process::ExitCode> {
    let stats = Arc::new(Stats::default());
    let devices = args.first_device..args.first_device + args.devices;
    eprintln!(
        "loadgen: {} MQTT devices → {url} for {:?}; {} readings each every {:?}",
        args.devices,
        args.duration,
        mqtt::READINGS,
        args.interval
    );
    let started = Instant::now();
    let until = started + args.duration;
    mqtt::run(
        url,
        &args.site,
        devices,
        args.interval,
        stats.clone(),
        [until, until + args.drain_timeout],
    )
    .await?;
    let generated_for = started
        .elapsed()
        .as_secs_f64()
        .min(args.duration.as_secs_f64());
    print!("{}", stats.summary(generated_for, false));
    let s = &stats.signals[0];
    Ok(
        if s.acked.load(Ordering::Relaxed) < s.generated.load(Ordering::Relaxed) {
            std::process::ExitCode::FAILURE
        } else {
            std::process::ExitCode::SUCCESS
        },
    )
}

fn fleet_drifts(args: &LoadgenArgs) -> Arc<Vec<i64>> {
    let max = i64::try_from(args.clock_drift.as_millis()).unwrap_or(i64::MAX / 4);
    let mut rng = fastrand::Rng::with_seed(args.seed);
    Arc::new(
        (0..args.first_device + args.devices)
            .map(|_| if max == 0 { 0 } else { rng.i64(-max..=max) })
            .collect(),
    )
}

fn progress_bar(duration: Duration) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(duration.as_secs());
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} s  {msg}") {
        bar.set_style(style);
    }
    bar
}
