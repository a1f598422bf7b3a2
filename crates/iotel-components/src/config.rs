//! The node config: parse, then validate, then build.
//!
//! [`load`] turns TOML text into a [`Loaded`] config or every error it finds,
//! each naming the file, the key path and what was expected. Nothing in here
//! starts anything: `iotel config check` is [`load`] plus [`Loaded::build`].

use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::transforms::TransformConfig;
use crate::{BuildContext, Problem};
use iotel_engine::config::{ConfigError, ConfigErrors, Duration, interpolate};
use iotel_engine::graph::{self, ComponentKind, NodeDecl};
use iotel_engine::{BuiltComponent, BuiltNode, ComponentKey};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

/// `[api]`: the node API (`/healthz`, `/readyz`, `/metrics`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_api_address")]
    pub address: SocketAddr,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// HTTPS, with client certificates when it has a `ca_file`
    /// (`crate::tls::server`).
    #[serde(default)]
    pub tls: Option<Box<crate::tls::ServerTls>>,
    /// Without `tls`, serve unencrypted on an address other than a
    /// loopback one.
    #[serde(default)]
    pub plaintext: bool,
    /// A file holding the bearer token that changing requests (retiring a
    /// metric family) must carry.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl ApiConfig {
    /// Whether changing requests can be authenticated: a bearer token, or
    /// verified client certificates.
    pub fn authenticates_changes(&self) -> bool {
        self.token_file.is_some()
            || self
                .tls
                .as_ref()
                .is_some_and(|t| t.ca_file.is_some() && t.verifies_clients())
    }

    /// What `iotel config check` warns of: an API beyond loopback that
    /// cannot authenticate changing requests refuses them all.
    pub fn warnings(&self) -> Vec<Problem> {
        if !self.enabled || self.address.ip().to_canonical().is_loopback() {
            return Vec::new();
        }
        if self.authenticates_changes() {
            return Vec::new();
        }
        vec![Problem::new(
            "address",
            format!(
                "the node API listens on {} beyond loopback without authentication: \
                 retiring and enabling metric families (DELETE/PUT /api/v1/metrics/...) \
                 answer 403; set token_file, or a tls table with ca_file (client certificates)",
                self.address
            ),
        )]
    }

    /// Problems under `api`: its `tls` table, and a plaintext listener
    /// that is not on a loopback address.
    pub fn validate(&self) -> Vec<Problem> {
        if !self.enabled {
            return Vec::new();
        }
        let mut p = crate::tls::server::validate_listener(self.tls.as_deref(), None);
        if self
            .token_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            p.push(Problem::new(
                "token_file",
                "expected the path of a file holding the bearer token",
            ));
        }
        p.extend(crate::tls::server::validate_plaintext(
            "address",
            self.address,
            self.tls.is_some(),
            self.plaintext,
        ));
        p
    }
}

fn default_api_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8686))
}

fn default_true() -> bool {
    true
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            address: default_api_address(),
            enabled: true,
            tls: None,
            plaintext: false,
            token_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeFlavor {
    /// One thread: the edge default, smallest footprint.
    CurrentThread,
    /// A worker per core (or `worker_threads`): gateways and clouds.
    MultiThread,
}

/// `[runtime]`: how the engine's tasks are scheduled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Unset: the role's default (agent: current_thread; gateway, cloud: multi_thread).
    pub flavor: Option<RuntimeFlavor>,
    /// Worker threads of a multi-thread runtime; unset: one per core.
    pub worker_threads: Option<NonZeroUsize>,
    /// How long shutdown may take to flush before the rest is aborted.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: Duration,
    /// Batches a component's input channel holds before its inputs wait.
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: NonZeroUsize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            flavor: None,
            worker_threads: None,
            shutdown_timeout: default_shutdown_timeout(),
            channel_capacity: default_channel_capacity(),
        }
    }
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_channel_capacity() -> NonZeroUsize {
    NonZeroUsize::new(16).unwrap_or(NonZeroUsize::MIN)
}

/// One declared component.
#[derive(Debug, Clone)]
pub enum ComponentConfig {
    Source(SourceConfig),
    Transform(TransformConfig),
    Sink(SinkConfig),
}

#[derive(Debug, Clone)]
pub struct Component {
    pub id: String,
    pub inputs: Vec<String>,
    pub config: ComponentConfig,
}

impl Component {
    pub fn kind(&self) -> ComponentKind {
        match self.config {
            ComponentConfig::Source(_) => ComponentKind::Source,
            ComponentConfig::Transform(_) => ComponentKind::Transform,
            ComponentConfig::Sink(_) => ComponentKind::Sink,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match &self.config {
            ComponentConfig::Source(c) => c.type_name(),
            ComponentConfig::Transform(c) => c.type_name(),
            ComponentConfig::Sink(c) => c.type_name(),
        }
    }
}

/// A config that parsed, validated and whose graph checked out.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file as the user named it, for messages.
    pub file: String,
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub runtime: RuntimeConfig,
    /// In an order where each component follows its inputs.
    pub components: Vec<Component>,
}

/// Where a config comes from and what overrides it.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    /// The name used in messages: the path as given, or `<builtin agent>`.
    pub file: &'a str,
    pub text: &'a str,
    /// Directory relative paths inside the config resolve against.
    pub config_dir: &'a Path,
    /// `--data-dir`, which wins over the file's `data_dir`.
    pub data_dir_override: Option<&'a Path>,
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "data_dir",
    "api",
    "runtime",
    "sources",
    "transforms",
    "sinks",
];

/// Default `data_dir` when neither the file nor `--data-dir` sets one.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/iotel";

/// Parses and validates a config.
///
/// # Errors
/// Every error found, each with file, key path and what was expected.
pub fn load(
    src: &Source<'_>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    let file = src.file;
    let err = |path: &str, msg: String| ConfigError::new(file, path, msg);
    let text = interpolate(src.text, env).map_err(|errs| {
        ConfigErrors(
            errs.into_iter()
                .map(|(line, m)| ConfigError::new(file, "", m).at_line(Some(line)))
                .collect(),
        )
    })?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        ConfigError::new(file, "", format!("invalid TOML: {}", e.message())).at_line(line)
    })?;

    let mut errors = ConfigErrors::default();
    for key in table.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            errors.push(err(
                key,
                format!(
                    "unknown key; expected one of: {}",
                    TOP_LEVEL_KEYS.join(", ")
                ),
            ));
        }
    }

    let api: ApiConfig = section(&mut table, "api", file, &mut errors).unwrap_or_default();
    for p in api.validate() {
        errors.push(err(&format!("api.{}", p.key), p.message));
    }
    let runtime: RuntimeConfig =
        section(&mut table, "runtime", file, &mut errors).unwrap_or_default();
    let data_dir = match (src.data_dir_override, table.remove("data_dir")) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(toml::Value::String(s))) if !s.is_empty() => PathBuf::from(s),
        (None, Some(other)) => {
            errors.push(err(
                "data_dir",
                format!(
                    "expected a non-empty directory path, got {}",
                    other.type_str()
                ),
            ));
            PathBuf::from(DEFAULT_DATA_DIR)
        }
        (None, None) => PathBuf::from(DEFAULT_DATA_DIR),
    };

    let mut components = Vec::new();
    let mut placeholders = Vec::new();
    for kind in [
        ComponentKind::Source,
        ComponentKind::Transform,
        ComponentKind::Sink,
    ] {
        let Some(value) = table.remove(kind.table()) else {
            continue;
        };
        let toml::Value::Table(entries) = value else {
            errors.push(err(
                kind.table(),
                format!(
                    "expected a table of {} by id, e.g. [{}.my_id]",
                    kind.table(),
                    kind.table()
                ),
            ));
            continue;
        };
        for (id, body) in entries {
            let path = format!("{}.{id}", kind.table());
            match component(kind, &id, body, file, &path, &mut errors) {
                Ok(c) => components.push(c),
                // Keep its place in the graph so its neighbours are not
                // reported for a mistake that is its own.
                Err(inputs) => placeholders.push(NodeDecl {
                    id,
                    kind,
                    type_name: "invalid component".into(),
                    inputs,
                    signals: match kind {
                        ComponentKind::Source => iotel_engine::SignalSet::NONE,
                        _ => iotel_engine::SignalSet::ALL,
                    },
                    claims: vec![],
                    outputs: vec![],
                    output_signals: vec![],
                }),
            }
        }
    }

    if components.iter().all(|c| c.kind() != ComponentKind::Source) && errors.is_empty() {
        errors.push(err("sources", "expected at least one source".into()));
    }
    if components.iter().all(|c| c.kind() != ComponentKind::Sink) && errors.is_empty() {
        errors.push(err("sinks", "expected at least one sink".into()));
    }

    let decls: Vec<NodeDecl> = components
        .iter()
        .map(|c| NodeDecl {
            id: c.id.clone(),
            kind: c.kind(),
            type_name: c.type_name().to_string(),
            inputs: c.inputs.clone(),
            signals: match &c.config {
                ComponentConfig::Source(s) => s.signals(),
                ComponentConfig::Transform(t) => t.signals(),
                ComponentConfig::Sink(s) => s.signals(),
            },
            claims: match &c.config {
                ComponentConfig::Source(s) => s.claims(),
                ComponentConfig::Transform(_) => vec![],
                ComponentConfig::Sink(s) => s.claims(),
            },
            outputs: match &c.config {
                ComponentConfig::Transform(t) => {
                    t.outputs().iter().map(|o| o.to_string()).collect()
                }
                _ => vec![],
            },
            output_signals: match &c.config {
                ComponentConfig::Transform(t) => t
                    .output_signals()
                    .iter()
                    .map(|(o, s)| (o.to_string(), *s))
                    .collect(),
                _ => vec![],
            },
        })
        // The node API claims its port like a component; its id cannot clash
        // with a component's, which may not contain brackets.
        .chain(api.enabled.then(|| NodeDecl {
            id: "[api]".into(),
            kind: ComponentKind::Source,
            type_name: "node API".into(),
            inputs: vec![],
            signals: iotel_engine::SignalSet::NONE,
            claims: vec![format!("port {}", api.address)],
            outputs: vec![],
            output_signals: vec![],
        }))
        .chain(placeholders)
        .collect();
    let order = match graph::check(&decls) {
        Ok(order) => order,
        Err(graph_errors) => {
            for e in graph_errors {
                errors.push(err(&e.path, e.message));
            }
            vec![]
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    components.sort_by_key(|c| order.iter().position(|id| *id == c.id));
    Ok(Loaded {
        file: file.to_string(),
        config_dir: src.config_dir.to_path_buf(),
        data_dir,
        api,
        runtime,
        components,
    })
}

/// Deserializes `table[key]`, recording an error with its key path.
fn section<T: DeserializeOwned>(
    table: &mut toml::Table,
    key: &str,
    file: &str,
    errors: &mut ConfigErrors,
) -> Option<T> {
    let value = table.remove(key)?;
    deserialize(value, file, key, errors)
}

fn deserialize<T: DeserializeOwned>(
    value: toml::Value,
    file: &str,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let mut full = path.to_string();
            for segment in e.path().iter() {
                match segment {
                    Segment::Seq { index } => full.push_str(&format!("[{index}]")),
                    Segment::Map { key } => {
                        full.push('.');
                        full.push_str(key);
                    }
                    // The component type: the table we wrapped the body in.
                    Segment::Enum { .. } | Segment::Unknown => {}
                }
            }
            errors.push(ConfigError::new(
                file,
                full,
                describe_serde_error(&e.into_inner().to_string()),
            ));
            None
        }
    }
}

/// Serde's messages, reworded where they read poorly in a config.
fn describe_serde_error(msg: &str) -> String {
    // toml appends "\nin `key`"; the key path already says where.
    let msg = msg.lines().next().unwrap_or_default();
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        return format!("unknown component type {rest}");
    }
    if msg == "missing field `type`" {
        return "missing key `type` (the component type)".into();
    }
    msg.replace("missing field", "missing key")
        .replace("unknown field", "unknown key")
}

/// Parses and validates one component; on failure returns the inputs it
/// declared, so the graph check can still place it.
fn component(
    kind: ComponentKind,
    id: &str,
    body: toml::Value,
    file: &str,
    path: &str,
    errors: &mut ConfigErrors,
) -> Result<Component, Vec<String>> {
    let err = |key: &str, msg: String| {
        let p = if key.is_empty() {
            path.to_string()
        } else {
            format!("{path}.{key}")
        };
        ConfigError::new(file, p, msg)
    };
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        errors.push(err(
            "",
            "component ids may use only letters, digits, '_' and '-'".into(),
        ));
    }
    let toml::Value::Table(mut body) = body else {
        errors.push(err(
            "",
            format!("expected a table, e.g. [{path}] with a `type` key"),
        ));
        return Err(vec![]);
    };
    let inputs = match (kind, body.remove("inputs")) {
        (ComponentKind::Source, Some(_)) => {
            errors.push(err("inputs", "sources take no inputs".into()));
            vec![]
        }
        (_, None) => vec![],
        (_, Some(toml::Value::Array(items))) => {
            let mut inputs = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    toml::Value::String(s) => inputs.push(s),
                    other => errors.push(err(
                        &format!("inputs[{i}]"),
                        format!(
                            "expected a component id (a string), got {}",
                            other.type_str()
                        ),
                    )),
                }
            }
            inputs
        }
        (_, Some(other)) => {
            errors.push(err(
                "inputs",
                format!("expected a list of component ids, got {}", other.type_str()),
            ));
            vec![]
        }
    };
    // Component enums are externally tagged (`{ generator = { ... } }`): an
    // internally tagged enum buffers its body and loses the key path of errors.
    let type_name = match body.remove("type") {
        Some(toml::Value::String(t)) => t,
        Some(other) => {
            errors.push(err(
                "type",
                format!(
                    "expected the component type as a string, got {}",
                    other.type_str()
                ),
            ));
            return Err(inputs);
        }
        None => {
            errors.push(err(
                "type",
                "missing key `type` (the component type)".into(),
            ));
            return Err(inputs);
        }
    };
    let known = match kind {
        ComponentKind::Source => SourceConfig::TYPES,
        ComponentKind::Transform => TransformConfig::TYPES,
        ComponentKind::Sink => SinkConfig::TYPES,
    };
    let missing = match kind {
        ComponentKind::Source => SourceConfig::missing_feature(&type_name),
        ComponentKind::Transform => TransformConfig::missing_feature(&type_name),
        ComponentKind::Sink => SinkConfig::missing_feature(&type_name),
    };
    if let Some(feature) = missing {
        errors.push(err("type", crate::not_built(&type_name, feature).message));
        return Err(inputs);
    }
    if !known.contains(&type_name.as_str()) {
        errors.push(err(
            "type",
            format!(
                "unknown {} type \"{type_name}\"; expected one of: {}",
                kind.as_str(),
                known.join(", ")
            ),
        ));
        return Err(inputs);
    }
    let value = toml::Value::Table(toml::Table::from_iter([(
        type_name,
        toml::Value::Table(body),
    )]));
    let parsed = match kind {
        ComponentKind::Source => {
            deserialize(value, file, path, errors).map(ComponentConfig::Source)
        }
        ComponentKind::Transform => {
            deserialize(value, file, path, errors).map(ComponentConfig::Transform)
        }
        ComponentKind::Sink => deserialize(value, file, path, errors).map(ComponentConfig::Sink),
    };
    let Some(config) = parsed else {
        return Err(inputs);
    };
    let problems = match &config {
        ComponentConfig::Source(c) => c.validate(),
        ComponentConfig::Transform(c) => c.validate(),
        ComponentConfig::Sink(c) => c.validate(),
    };
    for p in problems {
        errors.push(err(&p.key, p.message));
    }
    Ok(Component {
        id: id.to_string(),
        inputs,
        config,
    })
}

impl Loaded {
    /// Builds every component. Nothing runs yet.
    ///
    /// # Errors
    /// Every component that failed to build (an unreadable table, a bad
    /// schema file), with its key path.
    pub fn build(&self, registry: &iotel_engine::Registry) -> Result<Vec<BuiltNode>, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut nodes = Vec::new();
        for c in &self.components {
            let cx = BuildContext {
                id: c.id.clone(),
                metrics: iotel_engine::ComponentMetrics::new(
                    registry,
                    &c.id,
                    c.kind().as_str(),
                    c.type_name(),
                ),
                data_dir: self.data_dir.clone(),
                config_dir: self.config_dir.clone(),
            };
            let built = match &c.config {
                ComponentConfig::Source(s) => s.build(&cx).map(BuiltComponent::Source),
                ComponentConfig::Transform(t) => t.build(&cx).map(BuiltComponent::Transform),
                ComponentConfig::Sink(s) => s.build(&cx).map(BuiltComponent::Sink),
            };
            match built {
                Ok(component) => nodes.push(BuiltNode {
                    key: ComponentKey {
                        id: c.id.clone(),
                        type_name: c.type_name().to_string(),
                    },
                    inputs: c.inputs.clone(),
                    component,
                }),
                Err(Problem { key, message }) => {
                    let path = if key.is_empty() {
                        format!("{}.{}", c.kind().table(), c.id)
                    } else {
                        format!("{}.{}.{key}", c.kind().table(), c.id)
                    };
                    errors.push(ConfigError::new(&self.file, path, message));
                }
            }
        }
        errors.into_result(nodes)
    }

    /// The node API's TLS: the `[api]` tls table's files read, `None`
    /// without one (or with the API off). Its metrics (the certificate
    /// expiry, failed handshakes) go to `registry` as component `[api]`, the
    /// id the graph check gives the API (no component's id has brackets).
    ///
    /// # Errors
    /// A file that cannot be read or does not fit, under `api.tls`.
    #[cfg(feature = "tls")]
    pub fn build_api_tls(
        &self,
        registry: &iotel_engine::Registry,
    ) -> Result<Option<crate::tls::server::TlsListener>, ConfigErrors> {
        let Some(tls) = self.api.tls.as_ref().filter(|_| self.api.enabled) else {
            return Ok(None);
        };
        let cx = BuildContext {
            id: "[api]".into(),
            metrics: iotel_engine::ComponentMetrics::new(registry, "[api]", "api", "node_api"),
            data_dir: self.data_dir.clone(),
            config_dir: self.config_dir.clone(),
        };
        tls.build("api.tls", &cx, &[b"http/1.1"])
            .map(Some)
            .map_err(|p| {
                let mut errors = ConfigErrors::default();
                errors.push(ConfigError::new(&self.file, p.key, p.message));
                errors
            })
    }
}

/// `text` as the config file `/etc/iotel/edge.toml`, for tests.
#[cfg(test)]
pub(crate) fn test_source(text: &str) -> Source<'_> {
    Source {
        file: "edge.toml",
        text,
        config_dir: Path::new("/etc/iotel"),
        data_dir_override: None,
    }
}

/// Loads `text` as [`test_source`] does, with `env` for the environment:
/// how components' tests load a config. The errors are as the binary prints
/// them.
#[cfg(test)]
pub(crate) fn load_for_test(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Loaded, Vec<String>> {
    load(&test_source(text), env).map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

#[cfg(test)]
mod tests;
