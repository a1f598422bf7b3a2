//! The command line.

use crate::node;
use anyhow::Context;
#[cfg(feature = "completions")]
use clap::CommandFactory;
use clap::{Args, Parser, Subcommand, ValueEnum};
use iotel_components::config::{self, Loaded, RuntimeFlavor};
#[cfg(feature = "completions")]
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "iotel",
    version,
    about = "Observability pipeline for IoT fleets: metrics, logs and traces from device to cloud."
)]
pub struct Cli {
    /// Log filter, e.g. `info` or `info,iotel_components::sinks=debug` (default: `info`).
    #[arg(long, global = true, env = "IOTEL_LOG")]
    pub log_level: Option<String>,
    /// Log lines as text, or as one JSON object a line.
    #[arg(long, global = true, env = "IOTEL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a demo fleet on this machine: agents, a gateway and a cloud over
    /// mutual TLS, with simulated devices, until Ctrl-C.
    #[cfg(all(feature = "certs", feature = "loadgen"))]
    Demo(crate::demo::DemoArgs),
    /// Run the edge agent (default config: config/edge.toml).
    Agent(RunArgs),
    /// Run a site gateway (default config: config/gateway.toml).
    Gateway(RunArgs),
    /// Run the multi-tenant cloud ingest (default config: config/cloud.toml).
    Cloud(RunArgs),
    /// Work with config files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Make a development PKI: CAs and device, gateway and server certs.
    #[cfg(feature = "certs")]
    #[command(subcommand)]
    Certs(crate::certs::CertsCommand),
    /// Simulate a fleet of devices against an agent, gateway or cloud
    /// endpoint and report throughput and latency.
    #[cfg(feature = "loadgen")]
    Loadgen(Box<crate::loadgen::LoadgenArgs>),
    /// Check expositions for grammar and naming conventions.
    #[command(subcommand)]
    Lint(crate::lint::LintCommand),
    /// A live view of a running node: each component's rates, errors,
    /// drops and buffers.
    #[cfg(feature = "watch")]
    Top(crate::top::TopArgs),
    /// Print a sample of the events leaving a component, as JSON lines.
    #[cfg(feature = "watch")]
    Tap(crate::tap::TapArgs),
    /// Print a shell completion script on stdout.
    #[cfg(feature = "completions")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How the process's own log lines are written (on stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people: time, level, target and message on one line.
    Text,
    /// One JSON object a line: timestamp, level, target, fields (with the
    /// message) and the spans it was logged in.
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file; without it the role's default config is used.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Where buffers and position files live; overrides `data_dir` in the file.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a config without starting anything. Exit code 0: valid.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// A role: only a default config and a default runtime.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    Agent,
    Gateway,
    Cloud,
}

impl Role {
    fn default_config(self) -> (&'static str, &'static str) {
        match self {
            Role::Agent => (
                "<builtin config/edge.toml>",
                include_str!("../../../config/edge.toml"),
            ),
            Role::Gateway => (
                "<builtin config/gateway.toml>",
                include_str!("../../../config/gateway.toml"),
            ),
            Role::Cloud => (
                "<builtin config/cloud.toml>",
                include_str!("../../../config/cloud.toml"),
            ),
        }
    }

    fn default_flavor(self) -> RuntimeFlavor {
        match self {
            Role::Agent => RuntimeFlavor::CurrentThread,
            Role::Gateway | Role::Cloud => RuntimeFlavor::MultiThread,
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Agent(a) => run_role(Role::Agent, a),
        Command::Gateway(a) => run_role(Role::Gateway, a),
        Command::Cloud(a) => run_role(Role::Cloud, a),
        Command::Config(ConfigCommand::Check { config, data_dir }) => {
            Ok(check(&config, data_dir.as_deref()))
        }
        #[cfg(feature = "certs")]
        Command::Certs(c) => crate::certs::run(c).map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "loadgen")]
        Command::Loadgen(a) => crate::loadgen::run(*a),
        Command::Lint(c) => Ok(crate::lint::run(c)),
        #[cfg(all(feature = "certs", feature = "loadgen"))]
        Command::Demo(a) => crate::demo::run(a),
        #[cfg(feature = "watch")]
        Command::Top(a) => crate::top::run(a),
        #[cfg(feature = "watch")]
        Command::Tap(a) => crate::tap::run(a),
        #[cfg(feature = "completions")]
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a failed write
            // (`iotel completions bash | head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "iotel", &mut script);
            let mut out = std::io::stdout().lock();
            match out.write_all(&script).and_then(|()| out.flush()) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
                Err(e) => Err(anyhow::Error::new(e).context("writing the completion script")),
            }
        }
    }
}

/// Loads and validates a config, printing every error. `None` when invalid.
fn load(file: &str, text: &str, config_dir: &Path, data_dir: Option<&Path>) -> Option<Loaded> {
    let src = config::Source {
        file,
        text,
        config_dir,
        data_dir_override: data_dir,
    };
    match config::load(&src, |name| std::env::var(name).ok()) {
        Ok(loaded) => Some(loaded),
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!("{} error(s) in {file}", errors.len());
            None
        }
    }
}

fn read_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the config file: {e}", path.display()))
}

fn config_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn check(path: &Path, data_dir: Option<&Path>) -> ExitCode {
    let text = match read_file(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let file = path.display().to_string();
    let Some(loaded) = load(&file, &text, &config_dir(path), data_dir) else {
        return ExitCode::FAILURE;
    };
    // Building reads tables and schemas a component names; nothing starts.
    let registry = iotel_engine::Registry::default();
    let built = loaded.build(&registry);
    #[cfg(feature = "tls")]
    let built = match (built, loaded.build_api_tls(&registry)) {
        (Ok(_), Ok(_)) => Ok(()),
        (Err(mut e), Err(api)) => {
            e.0.extend(api.0);
            Err(e)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    if let Err(errors) = built {
        for e in &errors.0 {
            eprintln!("{e}");
        }
        eprintln!("{} error(s) in {file}", errors.len());
        return ExitCode::FAILURE;
    }
    if let Err(e) = crate::api::access(&loaded) {
        eprintln!("{e}");
        eprintln!("1 error(s) in {file}");
        return ExitCode::FAILURE;
    }
    for p in loaded.api.warnings() {
        eprintln!("warning: {file}: api.{}: {}", p.key, p.message);
    }
    println!("{file}: valid ({} components)", loaded.components.len());
    ExitCode::SUCCESS
}

fn run_role(role: Role, args: RunArgs) -> anyhow::Result<ExitCode> {
    let (file, text, dir) = match &args.config {
        Some(path) => (
            path.display().to_string(),
            read_file(path).map_err(anyhow::Error::msg)?,
            config_dir(path),
        ),
        None => {
            let (name, text) = role.default_config();
            (name.to_string(), text.to_string(), PathBuf::from("."))
        }
    };
    let Some(loaded) = load(&file, &text, &dir, args.data_dir.as_deref()) else {
        return Ok(ExitCode::FAILURE);
    };
    let flavor = loaded.runtime.flavor.unwrap_or(role.default_flavor());
    let mut builder = match flavor {
        RuntimeFlavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        RuntimeFlavor::MultiThread => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = loaded.runtime.worker_threads {
                b.worker_threads(n.get());
            }
            b
        }
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(node::run(loaded))
}
