//! Every source type, in one enum.

pub mod device_health;
pub mod device_lifecycle;
#[cfg(feature = "logs")]
pub mod file_tail;
pub mod generator;
// The OTLP/HTTP server reads and inflates bodies with it too.
#[cfg(any(feature = "receiver", feature = "otlp"))]
#[cfg_attr(not(feature = "receiver"), allow(dead_code))]
mod http_receiver;
pub mod internal_metrics;
#[cfg(feature = "receiver")]
pub mod iotel;
#[cfg(all(feature = "receiver", feature = "logs"))]
pub mod loki;
pub mod mqtt;
#[cfg(feature = "nats")]
pub mod nats_jetstream;
pub mod otlp;
#[cfg(feature = "receiver")]
pub mod prometheus_remote_write;
pub mod prometheus_scrape;
#[cfg(feature = "logs")]
pub mod stdin;
#[cfg(feature = "logs")]
pub mod syslog;

use crate::{BuildContext, Problem};
use iotel_engine::{SignalSet, Source};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
// Externally tagged: the loader moves `type` out of the table and wraps the
// body in it, so errors keep their key path (see `config::component`).
#[serde(rename_all = "snake_case")]
pub enum SourceConfig {
    DeviceHealth(device_health::Config),
    DeviceLifecycle(device_lifecycle::Config),
    #[cfg(feature = "logs")]
    FileTail(file_tail::Config),
    Generator(generator::Config),
    InternalMetrics(internal_metrics::Config),
    #[cfg(feature = "receiver")]
    Iotel(iotel::Config),
    #[cfg(all(feature = "receiver", feature = "logs"))]
    Loki(loki::Config),
    // Boxed: the largest config by far.
    Mqtt(Box<mqtt::Config>),
    #[cfg(feature = "nats")]
    NatsJetstream(nats_jetstream::Config),
    Otlp(otlp::Config),
    #[cfg(feature = "receiver")]
    PrometheusRemoteWrite(prometheus_remote_write::Config),
    PrometheusScrape(prometheus_scrape::Config),
    #[cfg(feature = "logs")]
    Stdin(stdin::Config),
    #[cfg(feature = "logs")]
    Syslog(syslog::Config),
}

impl SourceConfig {
    /// Every type name, as written in `type = "..."`.
    pub const TYPES: &'static [&'static str] = &[
        "device_health",
        "device_lifecycle",
        "file_tail",
        "generator",
        "internal_metrics",
        "iotel",
        "loki",
        "mqtt",
        "nats_jetstream",
        "otlp",
        "prometheus_remote_write",
        "prometheus_scrape",
        "stdin",
        "syslog",
    ];

    /// The Cargo feature a type needs when this build left it out (the
    /// edge build keeps only what a device needs): the loader says so
    /// instead of calling the type unknown.
    pub fn missing_feature(type_name: &str) -> Option<&'static str> {
        const LOGS: &[&str] = &["file_tail", "stdin", "syslog", "loki"];
        const RECEIVER: &[&str] = &["iotel", "prometheus_remote_write", "loki"];
        if !cfg!(feature = "receiver") && RECEIVER.contains(&type_name) {
            return Some("receiver");
        }
        if !cfg!(feature = "logs") && LOGS.contains(&type_name) {
            return Some("logs");
        }
        if !cfg!(feature = "nats") && type_name == "nats_jetstream" {
            return Some("nats");
        }
        None
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::DeviceHealth(_) => "device_health",
            SourceConfig::DeviceLifecycle(_) => "device_lifecycle",
            #[cfg(feature = "logs")]
            SourceConfig::FileTail(_) => "file_tail",
            SourceConfig::Generator(_) => "generator",
            SourceConfig::InternalMetrics(_) => "internal_metrics",
            #[cfg(feature = "receiver")]
            SourceConfig::Iotel(_) => "iotel",
            #[cfg(all(feature = "receiver", feature = "logs"))]
            SourceConfig::Loki(_) => "loki",
            SourceConfig::Mqtt(_) => "mqtt",
            #[cfg(feature = "nats")]
            SourceConfig::NatsJetstream(_) => "nats_jetstream",
            SourceConfig::Otlp(_) => "otlp",
            #[cfg(feature = "receiver")]
            SourceConfig::PrometheusRemoteWrite(_) => "prometheus_remote_write",
            SourceConfig::PrometheusScrape(_) => "prometheus_scrape",
            #[cfg(feature = "logs")]
            SourceConfig::Stdin(_) => "stdin",
            #[cfg(feature = "logs")]
            SourceConfig::Syslog(_) => "syslog",
        }
    }

    /// The signals this source emits.
    pub fn signals(&self) -> SignalSet {
        match self {
            SourceConfig::Generator(c) => c.signals(),
            // Its metrics every reading; a boot, a firmware change, a
            // restart as log events.
            SourceConfig::DeviceLifecycle(_) => SignalSet::METRICS.union(SignalSet::LOGS),
            #[cfg(feature = "logs")]
            SourceConfig::FileTail(c) => c.signals(),
            #[cfg(feature = "logs")]
            SourceConfig::Stdin(c) => c.signals(),
            #[cfg(feature = "receiver")]
            SourceConfig::Iotel(_) => SignalSet::ALL,
            #[cfg(all(feature = "receiver", feature = "logs"))]
            SourceConfig::Loki(_) => SignalSet::LOGS,
            #[cfg(feature = "receiver")]
            SourceConfig::PrometheusRemoteWrite(_) => SignalSet::METRICS,
            SourceConfig::Mqtt(c) => c.signals(),
            SourceConfig::Otlp(_) => SignalSet::ALL,
            #[cfg(feature = "nats")]
            SourceConfig::NatsJetstream(_) => SignalSet::ALL,
            #[cfg(feature = "logs")]
            SourceConfig::Syslog(_) => SignalSet::LOGS,
            SourceConfig::DeviceHealth(_)
            | SourceConfig::InternalMetrics(_)
            | SourceConfig::PrometheusScrape(_) => SignalSet::METRICS,
        }
    }

    pub fn validate(&self) -> Vec<Problem> {
        match self {
            SourceConfig::DeviceHealth(c) => c.validate(),
            SourceConfig::DeviceLifecycle(c) => c.validate(),
            #[cfg(feature = "logs")]
            SourceConfig::FileTail(c) => c.validate(),
            SourceConfig::Generator(c) => c.validate(),
            SourceConfig::InternalMetrics(c) => c.validate(),
            #[cfg(feature = "receiver")]
            SourceConfig::Iotel(c) => c.validate(),
            #[cfg(all(feature = "receiver", feature = "logs"))]
            SourceConfig::Loki(c) => c.validate(),
            #[cfg(feature = "receiver")]
            SourceConfig::PrometheusRemoteWrite(c) => c.validate(),
            #[cfg(feature = "mqtt")]
            SourceConfig::Mqtt(c) => c.validate(),
            #[cfg(not(feature = "mqtt"))]
            SourceConfig::Mqtt(_) => vec![crate::not_built(self.type_name(), "mqtt")],
            #[cfg(feature = "nats")]
            SourceConfig::NatsJetstream(c) => c.validate(),
            #[cfg(feature = "otlp")]
            SourceConfig::Otlp(c) => c.validate(),
            #[cfg(not(feature = "otlp"))]
            SourceConfig::Otlp(_) => vec![crate::not_built(self.type_name(), "otlp")],
            SourceConfig::PrometheusScrape(c) => c.validate(),
            #[cfg(feature = "logs")]
            SourceConfig::Stdin(c) => c.validate(),
            #[cfg(feature = "logs")]
            SourceConfig::Syslog(c) => c.validate(),
        }
    }

    /// Ports and directories this source claims.
    pub fn claims(&self) -> Vec<String> {
        match self {
            #[cfg(feature = "receiver")]
            SourceConfig::Iotel(c) => vec![format!("port {}", c.address)],
            #[cfg(all(feature = "receiver", feature = "logs"))]
            SourceConfig::Loki(c) => vec![format!("port {}", c.address)],
            #[cfg(feature = "receiver")]
            SourceConfig::PrometheusRemoteWrite(c) => vec![format!("port {}", c.address)],
            SourceConfig::Otlp(c) => c.claims(),
            #[cfg(feature = "logs")]
            SourceConfig::Syslog(c) => c.claims(),
            _ => vec![],
        }
    }

    /// # Errors
    /// A problem found only when building, such as an unreadable file.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, Problem> {
        match self {
            SourceConfig::DeviceHealth(c) => c.build(cx),
            SourceConfig::DeviceLifecycle(c) => c.build(cx),
            #[cfg(feature = "logs")]
            SourceConfig::FileTail(c) => c.build(cx),
            SourceConfig::Generator(c) => c.build(cx),
            SourceConfig::InternalMetrics(c) => c.build(cx),
            #[cfg(feature = "receiver")]
            SourceConfig::Iotel(c) => c.build(cx),
            #[cfg(all(feature = "receiver", feature = "logs"))]
            SourceConfig::Loki(c) => loki::build(c, cx),
            #[cfg(feature = "receiver")]
            SourceConfig::PrometheusRemoteWrite(c) => prometheus_remote_write::build(c, cx),
            SourceConfig::Mqtt(c) => c.build(cx),
            #[cfg(feature = "nats")]
            SourceConfig::NatsJetstream(c) => c.build(cx),
            SourceConfig::Otlp(c) => c.build(cx),
            SourceConfig::PrometheusScrape(c) => c.build(cx),
            #[cfg(feature = "logs")]
            SourceConfig::Stdin(c) => c.build(cx),
            #[cfg(feature = "logs")]
            SourceConfig::Syslog(c) => c.build(cx),
        }
    }
}
