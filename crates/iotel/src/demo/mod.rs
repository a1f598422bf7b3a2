//! `iotel demo`: the whole chain on one machine, in one command. A cloud
//! node on its embedded default, a site gateway and a few edge agents, each
//! a process of this binary, over mutual TLS with a development PKI made
//! for the run; `iotel loadgen` simulates the devices (metrics, logs and
//! spans) behind the agents. Prints each node's status page, runs until
//! Ctrl-C (or `--duration`), then stops everything it started and removes
//! its directory.
//!
//! ```text
//! loadgen ──▶ agent-1 ─┐ mTLS (device certs)    mTLS + signed batches
//! loadgen ──▶ agent-2 ─┴──────────────▶ gateway ─────────────────────▶ cloud
//!                                                              metrics: exporter
//!                                                              logs, spans: file
//! ```

mod configs;

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Prints a line; a closed stdout (the reader went away) is no reason to
/// stop before cleaning up.
macro_rules! say {
    () => {{
        let _ = writeln!(std::io::stdout());
    }};
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Simulated devices, spread over the agents.
    #[arg(long, default_value_t = 50)]
    pub devices: usize,
    /// Edge agents.
    #[arg(long, default_value_t = 2)]
    pub agents: usize,
    /// Stop after this long (e.g. `30s`); without it, run until Ctrl-C.
    #[arg(long)]
    pub duration: Option<iotel_engine::config::Duration>,
    /// Also run Prometheus (Debian package `prometheus`), scraping the
    /// cloud's metrics.
    #[arg(long)]
    pub with_prometheus: bool,
    /// Run the cloud as an ingest node and a worker on NATS JetStream
    /// (Debian package `nats-server`), as a cloud scales out.
    #[arg(long)]
    pub with_nats: bool,
    /// Also run Mosquitto (Debian package `mosquitto`) at the site, with
    /// devices that speak only MQTT publishing JSON readings to it, which
    /// the gateway bridges.
    #[arg(long)]
    pub with_mosquitto: bool,
    /// Devices that speak only MQTT, with --with-mosquitto.
    #[arg(long, default_value_t = 5)]
    pub mqtt_devices: usize,
    /// Keep the demo's directory (configs, certificates, logs, data).
    #[arg(long)]
    pub keep: bool,
}

/// The API ports the roles use by default; others when these are taken.
const CLOUD_API: u16 = 8688;
const GATEWAY_API: u16 = 8687;
const AGENT_API: u16 = 8686;
const CLOUD_METRICS: u16 = 9600;
const PROMETHEUS: u16 = 9090;
const CLOUD_WORKER_API: u16 = 8689;
const NATS: u16 = 4222;
const MQTT: u16 = 1883;

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    if args.agents == 0 || args.devices < args.agents {
        bail!(
            "--devices ({}) must be at least --agents ({}), which must be at least 1",
            args.devices,
            args.agents
        );
    }
    let prometheus = if args.with_prometheus {
        Some(find_program("prometheus").context(
            "--with-prometheus: `prometheus` is not installed (Debian package `prometheus`)",
        )?)
    } else {
        None
    };
    let nats = if args.with_nats {
        Some(find_program("nats-server").context(
            "--with-nats: `nats-server` is not installed (Debian package `nats-server`)",
        )?)
    } else {
        None
    };
    // Should the demo itself fail, what it started stops with it.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        stop_started();
        default_hook(info);
    }));
    let dir = std::env::temp_dir().join(format!("iotel-demo-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut demo = Demo {
        dir: dir.clone(),
        children: Vec::new(),
        keep: args.keep,
    };
    let mosquitto = if args.with_mosquitto {
        Some(find_program("mosquitto").context(
            "--with-mosquitto: `mosquitto` is not installed (Debian package `mosquitto`)",
        )?)
    } else {
        None
    };
    let code = demo.run(
        &args,
        [prometheus.as_deref(), nats.as_deref(), mosquitto.as_deref()],
    );
    demo.stop();
    code
}

/// What the demo started, stopped and removed however it ends.
struct Demo {
    dir: PathBuf,
    /// (name, process), in start order.
    children: Vec<(String, Child)>,
    keep: bool,
}

/// A node the demo runs: its name and API address.
struct Node {
    name: String,
    api: SocketAddr,
}

impl Demo {
    /// `peers`: the Prometheus, nats-server and Mosquitto to run, if asked.
    fn run(&mut self, args: &DemoArgs, peers: [Option<&Path>; 3]) -> Result<ExitCode> {
        let [prometheus, nats, mosquitto] = peers;
        let exe = std::env::current_exe().context("finding this program")?;
        let pki = self.dir.join("pki");
        self.certificates(&exe, &pki, args.agents)?;

        let mut notes = Vec::new();
        let mut port = |name: &str, wanted: Option<u16>| pick_port(name, wanted, &mut notes);
        let cloud_api = port("the cloud's API", Some(CLOUD_API))?;
        let cloud_in = port("the cloud's receiver", None)?;
        let cloud_metrics = port("the cloud's metrics", Some(CLOUD_METRICS))?;
        let gateway_api = port("the gateway's API", Some(GATEWAY_API))?;
        let gateway_in = port("the gateway's receiver", None)?;
        let mut agents = Vec::new();
        for i in 1..=args.agents {
            let wanted = (i == 1).then_some(AGENT_API);
            let api = port(&format!("agent-{i}'s API"), wanted)?;
            agents.push((i, api, port(&format!("agent-{i}'s receiver"), None)?));
        }
        let worker_api = match nats {
            Some(_) => Some(port("the cloud worker's API", Some(CLOUD_WORKER_API))?),
            None => None,
        };
        let nats_port = match nats {
            Some(_) => Some(port("NATS", Some(NATS))?),
            None => None,
        };
        let mqtt_port = match mosquitto {
            Some(_) => Some(port("Mosquitto", Some(MQTT))?),
            None => None,
        };
        let prometheus_port = match prometheus {
            Some(_) => Some(port("Prometheus", Some(PROMETHEUS))?),
            None => None,
        };
        for n in &notes {
            say!("{n}");
        }

        let dir = self.dir.clone();
        let files = configs::Files {
            dir: &dir,
            pki: &pki,
        };
        let mut nodes = Vec::new();
        if let (Some(bin), Some(port)) = (nats, nats_port) {
            self.nats(bin, port)?;
        }
        let cloud = files.cloud(cloud_api, cloud_in, cloud_metrics, nats_port)?;
        nodes.push(self.node(&exe, "cloud", "cloud", &cloud, cloud_api)?);
        if let (Some(api), Some(port)) = (worker_api, nats_port) {
            let worker = files.worker(api, cloud_metrics, port)?;
            nodes.push(self.node(&exe, "cloud-worker", "cloud", &worker, api)?);
        }
        if let (Some(bin), Some(port)) = (mosquitto, mqtt_port) {
            let config = files.mosquitto(port)?;
            let mut cmd = Command::new(bin);
            cmd.arg("-c").arg(config);
            self.spawn("mosquitto", cmd)?;
            self.wait_port("mosquitto", port)?;
        }
        let gateway = files.gateway(gateway_api, gateway_in, cloud_in, mqtt_port)?;
        nodes.push(self.node(&exe, "gateway", "gateway", &gateway, gateway_api)?);
        for &(i, api, receiver) in &agents {
            let config = files.agent(i, api, receiver, gateway_in)?;
            nodes.push(self.node(&exe, &format!("agent-{i}"), "agent", &config, api)?);
        }
        for node in &nodes {
            self.wait_ready(node)?;
        }
        if let (Some(bin), Some(port)) = (prometheus, prometheus_port) {
            let config = files.prometheus(cloud_metrics, &[cloud_api, gateway_api])?;
            self.prometheus(bin, &config, port)?;
        }
        // The devices, spread over the agents.
        let per_agent = args.devices / args.agents;
        for &(i, _, receiver) in &agents {
            let first = (i - 1) * per_agent;
            let count = if i == args.agents {
                args.devices - first
            } else {
                per_agent
            };
            self.loadgen(&exe, i, receiver, first, count)?;
        }
        if let Some(port) = mqtt_port {
            let mut cmd = Command::new(&exe);
            cmd.args([
                "loadgen",
                "--mqtt",
                &format!("mqtt://127.0.0.1:{port}"),
                "--first-device",
                &args.devices.to_string(),
                "--devices",
                &args.mqtt_devices.to_string(),
                "--duration",
                "87600h",
            ]);
            self.spawn("mqtt-devices", cmd)?;
        }

        say!(
            "iotel demo: {} devices behind {} agents, a gateway and a cloud, over mutual TLS \
             (development certificates in {})",
            args.devices,
            args.agents,
            pki.display()
        );
        for node in &nodes {
            say!("{} http://{}/", node.name, node.api);
        }
        if let Some(port) = prometheus_port {
            say!("prometheus http://127.0.0.1:{port}/");
        }
        if let Some(port) = mqtt_port {
            say!(
                "{} more devices publish to Mosquitto at mqtt://127.0.0.1:{port} \
                 (plant/site-1/<device>/telemetry); the gateway bridges them",
                args.mqtt_devices
            );
        }
        if let Some(port) = nats_port {
            say!(
                "the cloud publishes to NATS JetStream at nats://127.0.0.1:{port} \
                 (subjects iotel.{}.<signal>.<shard>); the cloud worker takes from it",
                configs::TENANT
            );
        }
        say!(
            "the fleet's metrics at the cloud: http://127.0.0.1:{cloud_metrics}/metrics; its logs \
             and spans: {}",
            self.dir.join("cloud/*.ndjson").display()
        );
        match args.duration {
            Some(d) => say!("stopping in {d}"),
            None => say!(
                "Ctrl-C stops it{}",
                if self.keep {
                    String::new()
                } else {
                    format!(" and removes {}", self.dir.display())
                }
            ),
        }
        let _ = std::io::stdout().flush();

        let stopped_by = self.wait(args.duration.map(|d| d.get()))?;
        // The backends' sinks: on the worker when there is one.
        let backends = &nodes[usize::from(worker_api.is_some())];
        if let Some(totals) = cloud_totals(backends.api) {
            say!("{totals}");
        }
        match stopped_by {
            Some(name) => {
                eprintln!(
                    "{name} stopped by itself; its log: {}",
                    self.dir.join(format!("logs/{name}.log")).display()
                );
                self.keep = true;
                Ok(ExitCode::FAILURE)
            }
            None => Ok(ExitCode::SUCCESS),
        }
    }

    /// The development PKI: a CA, the cloud's server certificate, the
    /// gateway's certificate and signing key, a device certificate per
    /// agent.
    fn certificates(&self, exe: &Path, pki: &Path, agents: usize) -> Result<()> {
        let dir = pki.display().to_string();
        let mut steps: Vec<Vec<String>> = vec![
            vec![
                "init".into(),
                "--trust-domain".into(),
                configs::TRUST_DOMAIN.into(),
            ],
            vec![
                "issue-server".into(),
                "--dns".into(),
                "localhost".into(),
                "--ip".into(),
                "127.0.0.1".into(),
            ],
            vec![
                "issue-gateway".into(),
                "--gateway-id".into(),
                configs::GATEWAY.into(),
                "--dns".into(),
                "localhost".into(),
                "--ip".into(),
                "127.0.0.1".into(),
            ],
        ];
        for i in 1..=agents {
            steps.push(vec![
                "issue-device".into(),
                "--device-id".into(),
                format!("agent-{i}"),
            ]);
        }
        for step in steps {
            let out = Command::new(exe)
                .arg("certs")
                .args(&step)
                .args(["--dir", &dir])
                .output()
                .context("running iotel certs")?;
            if !out.status.success() {
                bail!(
                    "iotel certs {} failed: {}",
                    step.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(())
    }

    /// Starts a node of `role` with `config`, its output in `logs/NAME.log`.
    fn node(
        &mut self,
        exe: &Path,
        name: &str,
        role: &str,
        config: &Path,
        api: u16,
    ) -> Result<Node> {
        let data = self.dir.join(name);
        let mut cmd = Command::new(exe);
        cmd.args([role, "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(&data);
        self.spawn(name, cmd)?;
        Ok(Node {
            name: name.to_string(),
            api: SocketAddr::from(([127, 0, 0, 1], api)),
        })
    }

    fn loadgen(
        &mut self,
        exe: &Path,
        agent: usize,
        receiver: u16,
        first: usize,
        count: usize,
    ) -> Result<()> {
        let mut cmd = Command::new(exe);
        cmd.args([
            "loadgen",
            "--target",
            &format!("http://127.0.0.1:{receiver}"),
            "--first-device",
            &first.to_string(),
            "--devices",
            &count.to_string(),
            "--devices-per-agent",
            &count.to_string(),
            "--metrics-per-second",
            "1",
            "--logs-per-second",
            "0.2",
            "--spans-per-second",
            "0.2",
            "--tenant",
            configs::TENANT,
            "--seed",
            &agent.to_string(),
            "--duration",
            "87600h",
        ]);
        self.spawn(&format!("devices-{agent}"), cmd)
    }

    fn nats(&mut self, bin: &Path, port: u16) -> Result<()> {
        let mut cmd = Command::new(bin);
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(self.dir.join("nats"));
        self.spawn("nats", cmd)?;
        self.wait_port("nats", port)
    }

    /// Waits up to 10 s for the peer `name` to listen on `port`.
    fn wait_port(&mut self, name: &str, port: u16) -> Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                self.keep = true;
                bail!(
                    "{name} did not listen on {addr} within 10s; its log: {}",
                    self.dir.join(format!("logs/{name}.log")).display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn prometheus(&mut self, bin: &Path, config: &Path, port: u16) -> Result<()> {
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("prometheus").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        self.spawn("prometheus", cmd)
    }

    fn spawn(&mut self, name: &str, mut cmd: Command) -> Result<()> {
        let log = std::fs::File::create(self.dir.join(format!("logs/{name}.log")))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        if let Ok(mut pids) = STARTED.lock() {
            pids.push(child.id());
        }
        self.children.push((name.to_string(), child));
        Ok(())
    }

    /// Waits up to 30 s for a node's `/readyz`; a node that ended is said
    /// at once, with the end of its log.
    fn wait_ready(&mut self, node: &Node) -> Result<()> {
        let log = self.dir.join(format!("logs/{}.log", node.name));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if get(node.api, "/readyz").is_some_and(|(s, _)| s == 200) {
                return Ok(());
            }
            let ended = self
                .children
                .iter_mut()
                .find(|(name, _)| *name == node.name)
                .is_some_and(|(_, c)| matches!(c.try_wait(), Ok(Some(_))));
            if ended {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                self.keep = true;
                bail!(
                    "{} stopped at start ({}):\n{}",
                    node.name,
                    log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.keep = true;
        bail!(
            "{} did not get ready within 30s; its log: {}",
            node.name,
            log.display()
        )
    }

    /// Until Ctrl-C, `duration`, or a child that ends by itself (its name).
    fn wait(&mut self, duration: Option<Duration>) -> Result<Option<String>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let until = duration.map(|d| Instant::now() + d);
        rt.block_on(async {
            let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            loop {
                for (name, child) in &mut self.children {
                    if let Ok(Some(_)) = child.try_wait() {
                        return Ok(Some(name.clone()));
                    }
                }
                if until.is_some_and(|t| Instant::now() >= t) {
                    return Ok(None);
                }
                tokio::select! {
                    _ = &mut ctrl_c => {
                        say!();
                        return Ok(None);
                    }
                    _ = term.recv() => return Ok(None),
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        })
    }

    /// Stops every child, the devices first and the cloud last, each with
    /// SIGTERM and then SIGKILL after 10 s; removes the directory unless
    /// kept.
    fn stop(&mut self) {
        while let Some((name, mut child)) = self.children.pop() {
            if let Ok(Some(_)) = child.try_wait() {
                continue;
            }
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        eprintln!("{name} did not stop within 10s; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if self.keep {
            say!("kept {}", self.dir.display());
        } else if std::fs::remove_dir_all(&self.dir).is_ok() {
            say!("removed {}", self.dir.display());
        }
    }
}

/// Every process the demo started, for [`stop_started`].
static STARTED: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Sends SIGTERM to every process the demo started: when the demo itself
/// fails (a panic), so that none is left running.
fn stop_started() {
    let pids = STARTED.lock().map(|p| p.clone()).unwrap_or_default();
    for pid in pids.iter().rev() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// A port for `what`: `wanted` when it is free, else one the system picks;
/// a note says which when `wanted` was taken.
fn pick_port(what: &str, wanted: Option<u16>, notes: &mut Vec<String>) -> Result<u16> {
    if let Some(p) = wanted
        && TcpListener::bind(("127.0.0.1", p)).is_ok()
    {
        return Ok(p);
    }
    let free = TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .context("finding a free port")?
        .port();
    if let Some(p) = wanted {
        notes.push(format!("port {p} is taken: {what} is on 127.0.0.1:{free}"));
    }
    Ok(free)
}

fn find_program(name: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A plain GET on loopback: the status and body.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// What the cloud received, by signal: its sinks' received counts.
fn cloud_totals(api: SocketAddr) -> Option<String> {
    let (_, body) = get(api, "/metrics")?;
    let mut by_sink = [0u64; 3];
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("iotel_component_received_events_total{") else {
            continue;
        };
        let Some(slot) = ["metrics", "logs", "spans"]
            .iter()
            .position(|id| rest.contains(&format!("component_id=\"{id}\"")))
        else {
            continue;
        };
        by_sink[slot] += line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
    }
    Some(format!(
        "the cloud received {} metric samples, {} log lines and {} spans",
        by_sink[0], by_sink[1], by_sink[2]
    ))
}
