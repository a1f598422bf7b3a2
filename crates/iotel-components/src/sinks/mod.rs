//! Every sink type, in one enum.

pub mod buffer;
mod buffered;
pub mod console;
pub mod file;
mod http_delivery;
pub mod iotel;
#[cfg(feature = "logs")]
pub mod loki;
#[cfg(feature = "nats")]
pub mod nats_jetstream;
pub mod otlp;
pub mod prometheus_exporter;
pub mod prometheus_remote_write;

pub use buffered::log_batch::LogBatchConfig;
pub use http_delivery::{Headers, RetryConfig};

use crate::{BuildContext, Problem};
use iotel_engine::{SignalSet, Sink};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
// Externally tagged: the loader moves `type` out of the table and wraps the
// body in it, so errors keep their key path (see `config::component`).
#[serde(rename_all = "snake_case")]
pub enum SinkConfig {
    Console(console::Config),
    File(file::Config),
    Iotel(iotel::Config),
    #[cfg(feature = "logs")]
    Loki(loki::Config),
    #[cfg(feature = "nats")]
    NatsJetstream(nats_jetstream::Config),
    Otlp(otlp::Config),
    PrometheusExporter(prometheus_exporter::Config),
    PrometheusRemoteWrite(prometheus_remote_write::Config),
}

impl SinkConfig {
    /// Every type name, as written in `type = "..."`.
    pub const TYPES: &'static [&'static str] = &[
        "console",
        "file",
        "iotel",
        "loki",
        "nats_jetstream",
        "otlp",
        "prometheus_exporter",
        "prometheus_remote_write",
    ];

    /// The Cargo feature a type needs when this build left it out (the
    /// edge build keeps only what a device needs): the loader says so
    /// instead of calling the type unknown.
    pub fn missing_feature(type_name: &str) -> Option<&'static str> {
        const LOGS: &[&str] = &["loki"];
        if !cfg!(feature = "nats") && type_name == "nats_jetstream" {
            return Some("nats");
        }
        (!cfg!(feature = "logs") && LOGS.contains(&type_name)).then_some("logs")
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::Console(_) => "console",
            SinkConfig::File(_) => "file",
            SinkConfig::Iotel(_) => "iotel",
            #[cfg(feature = "logs")]
            SinkConfig::Loki(_) => "loki",
            #[cfg(feature = "nats")]
            SinkConfig::NatsJetstream(_) => "nats_jetstream",
            SinkConfig::Otlp(_) => "otlp",
            SinkConfig::PrometheusExporter(_) => "prometheus_exporter",
            SinkConfig::PrometheusRemoteWrite(_) => "prometheus_remote_write",
        }
    }

    /// The signals this sink takes.
    pub fn signals(&self) -> SignalSet {
        match self {
            SinkConfig::Console(_)
            | SinkConfig::File(_)
            | SinkConfig::Iotel(_)
            | SinkConfig::Otlp(_) => SignalSet::ALL,
            #[cfg(feature = "nats")]
            SinkConfig::NatsJetstream(_) => SignalSet::ALL,
            SinkConfig::PrometheusExporter(_) | SinkConfig::PrometheusRemoteWrite(_) => {
                SignalSet::METRICS
            }
            #[cfg(feature = "logs")]
            SinkConfig::Loki(_) => SignalSet::LOGS,
        }
    }

    pub fn validate(&self) -> Vec<Problem> {
        match self {
            SinkConfig::Console(_) => vec![],
            SinkConfig::File(c) => c.validate(),
            SinkConfig::Iotel(c) => c.validate(),
            #[cfg(feature = "logs")]
            SinkConfig::Loki(c) => c.validate(),
            #[cfg(feature = "nats")]
            SinkConfig::NatsJetstream(c) => c.validate(),
            SinkConfig::Otlp(c) => c.validate(),
            SinkConfig::PrometheusExporter(c) => c.validate(),
            SinkConfig::PrometheusRemoteWrite(c) => c.validate(),
        }
    }

    /// Ports and directories this sink claims.
    pub fn claims(&self) -> Vec<String> {
        match self {
            SinkConfig::PrometheusExporter(c) => vec![format!("port {}", c.address)],
            _ => vec![],
        }
    }

    /// # Errors
    /// A problem found only when building, such as an unreadable file.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, Problem> {
        match self {
            SinkConfig::Console(c) => c.build(cx),
            SinkConfig::File(c) => c.build(cx),
            SinkConfig::Iotel(c) => c.build(cx),
            #[cfg(feature = "logs")]
            SinkConfig::Loki(c) => c.build(cx),
            #[cfg(feature = "nats")]
            SinkConfig::NatsJetstream(c) => c.build(cx),
            SinkConfig::Otlp(c) => c.build(cx),
            SinkConfig::PrometheusExporter(c) => c.build(cx),
            SinkConfig::PrometheusRemoteWrite(c) => c.build(cx),
        }
    }
}

/// Writes one line per event: JSON (`text == false`) or plain text.
pub fn encode_lines(events: &iotel_model::Events, text: bool, buf: &mut Vec<u8>) {
    use std::io::Write;
    events.for_each(|e| {
        if text {
            let _ = match e {
                iotel_model::EventRef::Metric(m) => {
                    writeln!(buf, "{}{} {} {}", m.name, m.labels, m.value, m.timestamp_ms)
                }
                iotel_model::EventRef::Log(l) => writeln!(buf, "{}", l.message),
                iotel_model::EventRef::Span(s) => {
                    writeln!(buf, "{} {}ns", s.name, s.end_ns - s.start_ns)
                }
            };
        } else if serde_json::to_writer(&mut *buf, &e).is_ok() {
            buf.push(b'\n');
        }
    });
}
