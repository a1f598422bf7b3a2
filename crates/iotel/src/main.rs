//! `iotel`: the one binary. Parses the command line and hands over to the
//! library crates; everything else lives there.

mod api;
#[cfg(feature = "watch")]
mod api_client;
#[cfg(feature = "certs")]
mod certs;
mod cli;
#[cfg(all(feature = "certs", feature = "loadgen"))]
mod demo;
mod lint;
#[cfg(feature = "loadgen")]
mod loadgen;
mod node;
mod status;
mod tap;
#[cfg(feature = "watch")]
mod top;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.log_level.as_deref());
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: Option<&str>) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let spec = level
        .map(str::to_string)
        .or_else(|| std::env::var("IOTEL_LOG").ok());
    let filter = match spec.as_deref().map(str::parse::<Targets>) {
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            eprintln!(
                "warning: ignoring log filter {:?} ({e}); logging at info",
                spec.unwrap_or_default()
            );
            Targets::new().with_default(tracing::Level::INFO)
        }
        None => Targets::new().with_default(tracing::Level::INFO),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    tracing_subscriber::registry().with(fmt).with(filter).init();
}
