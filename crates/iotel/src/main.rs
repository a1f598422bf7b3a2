//! `iotel`: the one binary. Parses the command line and hands over to the
//! library crates; everything else lives there.

mod api;
#[cfg(feature = "watch")]
mod api_client;
#[cfg(feature = "certs")]
mod certs;
mod cli;
#[cfg(any(feature = "watch", feature = "loadgen"))]
mod client_tls;
#[cfg(all(feature = "certs", feature = "loadgen"))]
mod demo;
mod lint;
#[cfg(feature = "loadgen")]
mod loadgen;
mod logging;
mod node;
mod status;
mod tap;
#[cfg(feature = "watch")]
mod top;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Err(e) = logging::init(cli.log_level.as_deref(), cli.log_format) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
