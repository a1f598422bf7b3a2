//! iotel's components and the config that declares them.
//!
//! Every component type is listed in one of three plain enums —
//! [`sources::SourceConfig`], [`transforms::TransformConfig`],
//! [`sinks::SinkConfig`] — each variant holding that component's config
//! struct from its own directory. [`config::load`] parses, validates and
//! checks the graph; [`config::Loaded::build`] builds what validated.

#[cfg(feature = "auth")]
pub mod auth;
pub mod config;
pub mod http_util;
pub(crate) mod id_ranges;
pub mod lifecycle;
pub mod native_protocol;
#[cfg(all(test, feature = "nats"))]
pub(crate) mod nats_server;
pub mod sinks;
pub mod sources;
pub mod state_file;
pub mod tls;
pub mod transforms;
pub mod tz;

/// A problem with one component's config: the key under the component
/// (`endpoint`, `rules[2].regex`) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The problem of a component type this build left out with its Cargo
/// feature (the edge build keeps only what a device needs).
#[cfg_attr(
    all(
        feature = "logs",
        feature = "schema",
        feature = "otlp",
        feature = "mqtt"
    ),
    allow(dead_code)
)]
pub(crate) fn not_built(type_name: &str, feature: &str) -> Problem {
    Problem::new(
        "type",
        format!(
            "this build of iotel has no `{type_name}` (built without the `{feature}` feature, \
             as the edge build is by default); use a build with it"
        ),
    )
}

/// What building a component may use besides its own config.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub id: String,
    /// The component's own counters (events in/out, errors, drops); the same
    /// counters the engine updates once the component runs.
    pub metrics: iotel_engine::ComponentMetrics,
    pub data_dir: std::path::PathBuf,
    /// The directory of the config file, against which relative paths in a
    /// component's config (a metadata table, a schema) are resolved.
    pub config_dir: std::path::PathBuf,
}

impl BuildContext {
    /// A context for building a component in a test.
    pub fn for_test(id: &str) -> Self {
        Self {
            id: id.to_string(),
            metrics: iotel_engine::ComponentMetrics::detached(id, "test"),
            data_dir: std::env::temp_dir(),
            config_dir: std::env::temp_dir(),
        }
    }

    /// `path` resolved against the config file's directory.
    pub fn resolve(&self, path: &std::path::Path) -> std::path::PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.config_dir.join(path)
        }
    }
}
