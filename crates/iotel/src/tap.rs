//! Watching what leaves a component: the node API's
//! `GET /api/v1/tap/{output}?rate=N` and `iotel tap`, which asks it again
//! and again.
//!
//! One request watches the output for a second and answers with a sample
//! of what left it then, as JSON lines (the `file` sink's encoding), at
//! most `rate` events (default 10, at most 1000), chosen evenly from the
//! second (reservoir sampling), in the order they left. The headers say
//! what the sample is of: `Iotel-Tap-Left` (events that left the output in
//! that second) and `Iotel-Tap-Shown` (lines in the body). Watching costs
//! the pipeline nothing it waits for (see `iotel_engine::tap`).

use iotel_components::http_util::{Body, response};
use iotel_engine::Registry;
use iotel_engine::tap::Seen;
use iotel_model::Events;
use std::time::Duration;

pub const PATH: &str = "/api/v1/tap/";

/// How long one request watches.
const WINDOW: Duration = Duration::from_secs(1);

pub const DEFAULT_RATE: usize = 10;
pub const MAX_RATE: usize = 1000;

pub const LEFT: &str = "iotel-tap-left";
pub const SHOWN: &str = "iotel-tap-shown";

/// Answers `GET /api/v1/tap/{output}?{query}`. `sinks` are the node's sink
/// ids, for a clearer answer when one is asked for.
pub async fn answer(
    registry: &Registry,
    output: &str,
    query: Option<&str>,
    sinks: &[&str],
) -> hyper::Response<Body> {
    let rate = match parse_rate(query) {
        Ok(r) => r,
        Err(e) => return response(400, "text/plain", format!("{e}\n")),
    };
    let Some(mut watch) = registry.taps().watch(output) else {
        let text = if sinks.contains(&output) {
            format!("{output:?} is a sink: nothing leaves it downstream; tap one of its inputs\n")
        } else {
            format!(
                "no output {output:?}; outputs that can be tapped: {}\n",
                registry.taps().outputs().join(", ")
            )
        };
        return response(404, "text/plain", text);
    };
    let mut sample = Reservoir::new(rate);
    let mut left = 0u64;
    let deadline = tokio::time::Instant::now() + WINDOW;
    loop {
        tokio::select! {
            seen = watch.next() => match seen {
                Some(Seen::Batch { left: n, sample: events }) => {
                    left += n as u64;
                    // Events of a batch past its copied sample count as
                    // seen, spread over the ones copied.
                    sample.offer_batch(&events, n);
                }
                // Batches that passed while this watcher was behind.
                Some(Seen::Skipped { .. }) => {}
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    let events = sample.into_events();
    let mut body = Vec::new();
    for e in &events {
        iotel_components::sinks::encode_lines(e, false, &mut body);
    }
    let mut r = response(200, "application/x-ndjson", body);
    let h = r.headers_mut();
    h.insert(LEFT, http::HeaderValue::from(left));
    h.insert(SHOWN, http::HeaderValue::from(events.len()));
    r
}

fn parse_rate(query: Option<&str>) -> Result<usize, String> {
    let Some(value) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("rate="))
    else {
        return Ok(DEFAULT_RATE);
    };
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_RATE).contains(&n) => Ok(n),
        _ => Err(format!(
            "rate: expected events per second from 1 to {MAX_RATE}, got {value:?}"
        )),
    }
}

/// A uniform sample of at most `size` events of a stream (Algorithm R),
/// kept with their place so they come out in order.
struct Reservoir {
    size: usize,
    /// Events offered so far (counting those a batch's copy left out).
    seen: u64,
    kept: Vec<(u64, Events)>,
    rng: u64,
}

impl Reservoir {
    fn new(size: usize) -> Self {
        Self {
            size,
            seen: 0,
            kept: Vec::with_capacity(size),
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// A number below `n` (xorshift; a sample needs no better).
    fn below(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n.max(1)
    }

    /// Offers the copied part of a batch of `left` events: each copied
    /// event stands for `left / copied` of them.
    fn offer_batch(&mut self, events: &Events, left: usize) {
        let copied = events.len().max(1);
        let weight = (left / copied).max(1) as u64;
        for one in singletons(events) {
            // The copied event is the first of its `weight`: offered once,
            // at the place of all of them.
            self.seen += weight;
            if self.kept.len() < self.size {
                self.kept.push((self.seen, one));
            } else {
                let j = self.below(self.seen);
                if (j as usize) < self.size {
                    self.kept[j as usize] = (self.seen, one);
                }
            }
        }
    }

    fn into_events(mut self) -> Vec<Events> {
        self.kept.sort_by_key(|(at, _)| *at);
        self.kept.into_iter().map(|(_, e)| e).collect()
    }
}

/// Each event of `events` as a batch of its own.
fn singletons(events: &Events) -> Vec<Events> {
    match events {
        Events::Metrics(v) => v.iter().map(|m| Events::Metrics(vec![m.clone()])).collect(),
        Events::Logs(v) => v.iter().map(|l| Events::Logs(vec![l.clone()])).collect(),
        Events::Traces(v) => v.iter().map(|s| Events::Traces(vec![s.clone()])).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotel_model::{Labels, Metric, MetricType};

    fn metrics(range: std::ops::Range<usize>) -> Events {
        Events::Metrics(
            range
                .map(|i| Metric::new("m", MetricType::Gauge, Labels::empty(), i as f64, 0))
                .collect(),
        )
    }

    fn values(events: Vec<Events>) -> Vec<f64> {
        events
            .into_iter()
            .flat_map(|e| match e {
                Events::Metrics(v) => v.into_iter().map(|m| m.value),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn the_rate_is_checked_and_defaults_to_ten() {
        assert_eq!(parse_rate(None), Ok(10));
        assert_eq!(parse_rate(Some("rate=250")), Ok(250));
        assert_eq!(
            parse_rate(Some("rate=0")),
            Err("rate: expected events per second from 1 to 1000, got \"0\"".into())
        );
        assert!(parse_rate(Some("x=1&rate=abc")).is_err());
    }

    #[test]
    fn a_sample_keeps_everything_below_its_size_and_otherwise_a_spread_in_order() {
        let mut r = Reservoir::new(5);
        r.offer_batch(&metrics(0..3), 3);
        assert_eq!(values(r.into_events()), [0.0, 1.0, 2.0]);

        let mut r = Reservoir::new(50);
        for start in (0..10_000).step_by(100) {
            r.offer_batch(&metrics(start..start + 100), 100);
        }
        let v = values(r.into_events());
        assert_eq!(v.len(), 50);
        assert!(v.windows(2).all(|w| w[0] < w[1]), "in order: {v:?}");
        // Spread: some from each half.
        assert!(v.iter().any(|x| *x < 5000.0) && v.iter().any(|x| *x >= 5000.0));
    }
}

/// `iotel tap`.
#[cfg(feature = "watch")]
#[derive(Debug, clap::Args)]
pub struct TapArgs {
    /// The node API: host:port or http(s)://host:port.
    #[arg(long, default_value = "127.0.0.1:8686")]
    pub api: String,
    /// The component whose output to watch (a transform's named output:
    /// `id.name`).
    pub component: String,
    /// Events per second at most.
    #[arg(long, default_value_t = DEFAULT_RATE)]
    pub rate: usize,
    /// Stop after this many events.
    #[arg(long)]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub tls: crate::api_client::TlsArgs,
}

/// Asks the node for a second's sample at a time and prints it, until
/// Ctrl-C, `--limit` or a closed stdout; then says on stderr how much of
/// what left the component was shown.
#[cfg(feature = "watch")]
pub fn run(args: TapArgs) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write;
    use std::process::ExitCode;
    if !(1..=MAX_RATE).contains(&args.rate) {
        anyhow::bail!(
            "--rate: expected events per second from 1 to {MAX_RATE}, got {}",
            args.rate
        );
    }
    let client =
        crate::api_client::ApiClient::new(&args.api, &args.tls).map_err(anyhow::Error::msg)?;
    let path = format!("{PATH}{}?rate={}", args.component, args.rate);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let header = |h: &http::HeaderMap, name: &str| -> u64 {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (mut left, mut shown) = (0u64, 0u64);
    let mut stdout = std::io::stdout().lock();
    let code = rt.block_on(async {
        loop {
            let answer = tokio::select! {
                a = client.get_raw(&path) => a,
                _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            };
            let (status, headers, body) = match answer {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("{e}; trying again in 1s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
                    }
                }
            };
            if status == http::StatusCode::NOT_FOUND && headers.get(SHOWN).is_none() {
                let text = String::from_utf8_lossy(&body);
                if text.starts_with("no output") || text.contains("is a sink") {
                    eprintln!("{}: {}", client.base(), text.trim());
                } else {
                    eprintln!(
                        "{}{path} answered 404: {} is not an iotel node API, or one too old for \
                         this",
                        client.base(),
                        client.base()
                    );
                }
                return ExitCode::FAILURE;
            }
            let url = format!("{}{path}", client.base());
            if let Err(e) = crate::api_client::check(&url, client.base(), status, &body) {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
            left += header(&headers, LEFT);
            let mut lines = body.split(|b| *b == b'\n').filter(|l| !l.is_empty());
            let mut done = false;
            for line in lines.by_ref() {
                if args.limit.is_some_and(|limit| shown >= limit) {
                    done = true;
                    break;
                }
                let written = stdout
                    .write_all(line)
                    .and_then(|()| stdout.write_all(b"\n"));
                if written.is_err() {
                    // The reader went away (`| head`): that is the end.
                    return ExitCode::SUCCESS;
                }
                shown += 1;
            }
            let _ = stdout.flush();
            if done || args.limit.is_some_and(|limit| shown >= limit) {
                return ExitCode::SUCCESS;
            }
        }
    });
    if code == ExitCode::SUCCESS {
        eprintln!(
            "shown {shown} of the {left} events that left {} while watched (at most {}/s)",
            args.component, args.rate
        );
    }
    Ok(code)
}
