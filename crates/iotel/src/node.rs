//! A running node: the engine's graph plus the node API, until a signal.

use crate::api;
use anyhow::Context;
use iotel_components::config::Loaded;
use iotel_engine::{Registry, Topology, TopologyOptions, shutdown};
use std::process::ExitCode;

pub async fn run(loaded: Loaded) -> anyhow::Result<ExitCode> {
    let registry = Registry::default();
    let nodes = match loaded.build(&registry) {
        Ok(n) => n,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let api_tls = match api_tls(&loaded, &registry) {
        Ok(t) => t,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let access = match api::access(&loaded) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for p in loaded.api.warnings() {
        tracing::warn!("{}: api.{}: {}", loaded.file, p.key, p.message);
    }
    // Retirements kept from an earlier run apply before any source runs.
    let lifecycle = api::lifecycle::Lifecycle::open(registry.families().clone(), &loaded.data_dir);
    let (api_stop, api_shutdown) = shutdown::channel();
    let api_listener = if loaded.api.enabled {
        Some(
            iotel_components::http_util::bind(loaded.api.address)
                .await
                .map_err(anyhow::Error::msg)
                .context("starting the node API")?,
        )
    } else {
        None
    };
    let opts = TopologyOptions {
        data_dir: loaded.data_dir.clone(),
        channel_capacity: loaded.runtime.channel_capacity.get(),
    };
    let topology = Topology::start(nodes, &registry, &opts);
    if let Some(listener) = api_listener {
        let scheme = if api_tls.is_some() { "https" } else { "http" };
        tracing::info!("node API listening on {scheme}://{}", loaded.api.address);
        iotel_components::tls::server::warn_plaintext(
            "[api]",
            loaded.api.address,
            api_tls.is_some(),
        );
        #[cfg(feature = "tls")]
        if let Some(tls) = &api_tls {
            tokio::spawn(tls.clone().watch(api_shutdown.clone()));
        }
        let api = api::Api {
            registry: registry.clone(),
            ready: topology.ready(),
            lifecycle,
            access,
            node: std::sync::Arc::new(crate::status::Node::of(&loaded)),
        };
        tokio::spawn(api::serve(listener, api_shutdown, api_tls, api));
    }
    tracing::info!(config = %loaded.file, components = loaded.components.len(), "iotel started");

    let (signal_trigger, signal) = shutdown::channel();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: flushing what the pipeline holds");
        signal_trigger.trigger();
    });
    let registry_at_end = topology.registry().clone();
    let clean = topology
        .run_until(signal, loaded.runtime.shutdown_timeout.get())
        .await;
    api_stop.trigger();
    log_totals(&registry_at_end);
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The node API's TLS, read from the `[api]` tls table's files.
#[cfg(feature = "tls")]
fn api_tls(
    loaded: &Loaded,
    registry: &Registry,
) -> Result<Option<iotel_components::http_util::Tls>, iotel_engine::config::ConfigErrors> {
    loaded.build_api_tls(registry)
}

/// Builds without TLS refuse an `[api]` tls table when the config loads.
#[cfg(not(feature = "tls"))]
fn api_tls(
    _loaded: &Loaded,
    _registry: &Registry,
) -> Result<Option<iotel_components::http_util::Tls>, iotel_engine::config::ConfigErrors> {
    Ok(None)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM ({e}); only SIGINT stops the node");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Logs each component's final counts, so what a run moved and dropped is on
/// record after the node API is gone.
fn log_totals(registry: &Registry) {
    use std::collections::BTreeMap;
    let mut totals: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    for m in registry.snapshot() {
        let slot = match &*m.name {
            "iotel_component_received_events_total" => 0,
            "iotel_component_sent_events_total" => 1,
            "iotel_component_discarded_events_total" => 2,
            _ => continue,
        };
        // `[api]`: the node API's TLS counters, not a component.
        if let Some(id) = m
            .labels
            .get("component_id")
            .filter(|id| !id.starts_with('['))
        {
            totals.entry(id.to_string()).or_default()[slot] += m.value as u64;
        }
    }
    for (id, [received, sent, discarded]) in totals {
        tracing::info!(component = %id, received, sent, discarded, "final totals");
    }
}
