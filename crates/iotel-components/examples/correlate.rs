//! Throughput and memory of the `correlate` transform with 100,000 traces
//! in flight: synthetic device, gateway and rule-engine logs, each trace's
//! three records spread so that, at every moment, 100,000 traces have their
//! device record joined and wait for their rule's. Run by
//! `bench/correlate.sh`.
//!
//! ```text
//! correlate [traces] [in_flight]      defaults 1000000 100000
//! ```
//!
//! Trace `i` has its device record at `T0 + i × 100 µs`, its gateway's
//! 5 ms later and its rule's 8 ms later (10,000 traces a second of event
//! time). Records arrive in batches of 1,000 in the order: device of `i`,
//! gateway of `i − in_flight / 2`, rule of `i − in_flight`. Only the
//! transform's own calls are timed; the records are made outside.

use iotel_components::BuildContext;
use iotel_components::transforms::correlate::{Config, Correlate};
use iotel_engine::Transform;
use iotel_model::{Events, Labels, LogRecord};
use serde_json::json;
use std::time::{Duration, Instant};

const T0: i64 = 1_774_800_000_000_000_000;
const SPACING_NS: i64 = 100_000;
const BATCH: usize = 1_000;

const CONFIG: &str = r#"
device_gateway = "10s"
gateway_rule = "5s"
allowed_lateness = "15s"
max_traces = 1000000
device = { match = { source = "device" }, device_id = "dev", trace_id = "trace" }
gateway = { match = { source = "gateway" }, device_id = "deviceId", gateway_id = "gw", trace_id = "traceparent" }
rule = { match = { source = "rules" }, device_id = "ctx.device", rule_id = "rule" }
"#;

struct Maker {
    device: Labels,
    gateway: Labels,
    rule: Labels,
}

impl Maker {
    fn trace_id(i: usize) -> String {
        format!("{:016x}{:016x}", 0x4bf9_2f35_77b3_4da6_u64, i as u64)
    }

    fn time(i: usize) -> i64 {
        T0 + i as i64 * SPACING_NS
    }

    fn device(&self, i: usize) -> LogRecord {
        let mut r = LogRecord::new(Self::time(i), "reading sent");
        r.labels = self.device.clone();
        r.fields
            .insert("dev".into(), json!(format!("dev-{}", i % 5000)));
        r.fields.insert("trace".into(), json!(Self::trace_id(i)));
        r
    }

    fn gateway(&self, i: usize) -> LogRecord {
        let mut r = LogRecord::new(Self::time(i) + 5_000_000, "forwarded upstream");
        r.labels = self.gateway.clone();
        r.fields
            .insert("deviceId".into(), json!(format!("dev-{}", i % 5000)));
        r.fields.insert(
            "traceparent".into(),
            json!(format!("00-{}-00f067aa0ba902b7-01", Self::trace_id(i))),
        );
        r
    }

    fn rule(&self, i: usize) -> LogRecord {
        let mut r = LogRecord::new(Self::time(i) + 8_000_000, "rule over_temperature fired");
        r.labels = self.rule.clone();
        r.fields.insert(
            "ctx".into(),
            json!({ "device": format!("dev-{}", i % 5000) }),
        );
        r.fields.insert("rule".into(), json!("over_temperature"));
        r.fields.insert("trace_id".into(), json!(Self::trace_id(i)));
        r
    }
}

#[derive(Default)]
struct Stats {
    busy: Duration,
    /// CPU time of this thread in the transform, in ticks of 10 ms.
    cpu_ticks: u64,
    events: u64,
    chains: u64,
    complete: u64,
    peak_open: usize,
    peak_held: usize,
    /// (open, held) half way through.
    at_mid: Option<(usize, usize)>,
}

impl Stats {
    fn run(&mut self, t: &mut Correlate, batch: Vec<LogRecord>) {
        self.events += batch.len() as u64;
        let mut out = Vec::new();
        let (start, cpu) = (Instant::now(), thread_cpu_ticks());
        t.transform(Events::Logs(batch), &mut out);
        self.busy += start.elapsed();
        self.cpu_ticks += thread_cpu_ticks().saturating_sub(cpu);
        // The first batch is the records passed on; chains follow.
        for e in out.into_iter().skip(1) {
            if let Events::Logs(v) = e {
                self.chains += v.len() as u64;
                self.complete += v
                    .iter()
                    .filter(|r| r.fields.get("complete") == Some(&json!(true)))
                    .count() as u64;
            }
        }
        self.peak_open = self.peak_open.max(t.traces_open());
        self.peak_held = self.peak_held.max(t.traces_held());
    }
}

/// utime + stime of this thread, in USER_HZ (100) ticks: the kernel
/// charges each tick to the thread running, so summed over thousands of
/// batches the figure is fair even though one batch is shorter than a tick.
fn thread_cpu_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0;
    };
    let Some((_, after_comm)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15; 12 and 13 after `comm`.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let traces: usize = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let in_flight: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let config: Config = toml::from_str(CONFIG)?;
    let cx = BuildContext::for_test("correlate");
    let mut t = config.correlate(&cx);
    let maker = Maker {
        device: Labels::from_pairs([("source", "device")]),
        gateway: Labels::from_pairs([("source", "gateway"), ("gw", "gw-7")]),
        rule: Labels::from_pairs([("source", "rules")]),
    };
    let rss_before = status_kib("VmRSS:");

    let mut stats = Stats::default();
    let mut batch = Vec::with_capacity(BATCH);
    let half = in_flight / 2;
    for i in 0..traces + in_flight {
        if i < traces {
            batch.push(maker.device(i));
        }
        if i >= half && i - half < traces {
            batch.push(maker.gateway(i - half));
        }
        if i >= in_flight {
            batch.push(maker.rule(i - in_flight));
        }
        if batch.len() >= BATCH {
            stats.run(
                &mut t,
                std::mem::replace(&mut batch, Vec::with_capacity(BATCH)),
            );
            if i >= traces / 2 && stats.at_mid.is_none() {
                stats.at_mid = Some((t.traces_open(), t.traces_held()));
            }
        }
    }
    stats.run(&mut t, batch);
    let mut rest = Vec::new();
    let start = Instant::now();
    t.flush(&mut rest);
    stats.busy += start.elapsed();
    let Stats {
        busy,
        cpu_ticks,
        events,
        chains,
        complete,
        peak_open,
        peak_held,
        at_mid,
    } = stats;
    let (open_mid, held_mid) = at_mid.unwrap_or_default();

    let secs = busy.as_secs_f64();
    println!("correlate: {traces} traces, {events} records, {in_flight} traces in flight");
    println!(
        "  throughput      {:.0} records/s ({:.2} s in the transform)",
        events as f64 / secs,
        secs
    );
    let cpu_secs = cpu_ticks as f64 / 100.0;
    println!(
        "  CPU             {:.0} records per CPU-second ({:.2} CPU-s in the transform)",
        events as f64 / cpu_secs.max(0.01),
        cpu_secs
    );
    println!("  chains          {chains} emitted while running, {complete} complete");
    println!(
        "  traces open     {open_mid} at mid-run, peak {peak_open} (device record joined, rule's not yet)"
    );
    println!(
        "  traces held     {held_mid} at mid-run, peak {peak_held} (open + complete ones remembered until the watermark passes them)"
    );
    println!(
        "  memory          peak RSS {:.1} MiB (RSS before the run {:.1} MiB)",
        status_kib("VmHWM:") as f64 / 1024.0,
        rss_before as f64 / 1024.0
    );
    Ok(())
}
