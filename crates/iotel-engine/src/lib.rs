//! The iotel engine: a graph of named components — sources, transforms, sinks —
//! connected by bounded channels.
//!
//! The engine knows no component type. Components implement [`Source`],
//! [`Transform`] or [`Sink`]; the config layer describes each with a
//! [`graph::NodeDecl`] so the graph can be checked before anything starts, and
//! [`topology::Topology`] runs the built components and shuts them down in
//! order, sources first, so what is in flight reaches the sinks.

pub mod backlog;
pub mod component;
pub mod config;
pub mod families;
pub mod graph;
pub mod metrics;
pub mod shutdown;
pub mod tap;
pub mod topology;

pub use backlog::Backlog;
pub use component::{
    Ack, Acked, Batch, ComponentError, ComponentFuture, ComponentKey, Input, Output, Sink,
    SinkContext, Source, SourceContext, TestReceiver, Transform,
};
pub use families::{FamilyGate, FamilyInfo, FamilyState, MetricFamilies};
pub use graph::{ComponentKind, NodeDecl, SignalSet};
pub use metrics::{ComponentMetrics, Counter, Gauge, Registry};
pub use shutdown::{Shutdown, ShutdownTrigger};
pub use tap::Taps;
pub use topology::{BuiltComponent, BuiltNode, RunningTopology, Topology, TopologyOptions};
