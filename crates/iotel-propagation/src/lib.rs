//! Trace context for device apps.
//!
//! Reads and writes the span context that crosses process boundaries, in the
//! formats devices and their peers speak:
//!
//! - [`w3c`]: W3C Trace Context Level 1, `traceparent` and `tracestate`,
//!   parsed strictly; an invalid header starts a new trace
//!   ([`w3c::extract_or_new`]) instead of failing the request.
//! - [`b3`]: Zipkin B3, the `b3` single header and the `X-B3-*` headers.
//! - [`grpc_bin`]: `grpc-trace-bin`, OpenCensus' binary format in gRPC.
//! - [`mqtt`]: the W3C MQTT binding (v5 user properties) and an opt-in JSON
//!   envelope for MQTT 3.1.1.
//!
//! The core has no I/O and needs only `thiserror` and `getrandom`. Carriers
//! are the [`Extract`] and [`Inject`] traits; features add them for
//! `http::HeaderMap` (`http`), `tonic::metadata::MetadataMap` (`tonic`) and
//! rumqttc v5 `PublishProperties` (`rumqttc`), and `opentelemetry` adds
//! `TextMapPropagator`s ([`otel`]).
//!
//! ```
//! use iotel_propagation::w3c;
//!
//! let mut incoming = vec![(
//!     "traceparent".to_owned(),
//!     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
//! )];
//! let parent = w3c::extract_or_new(&incoming);
//! let span = parent.child(); // this process's span
//! let mut outgoing: Vec<(String, String)> = Vec::new();
//! w3c::inject(&span, &mut outgoing);
//! assert!(outgoing[0].1.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
//! # incoming.clear();
//! ```

#![forbid(unsafe_code)]

mod adapters;
pub mod b3;
mod carrier;
mod context;
mod error;
pub mod grpc_bin;
mod ids;
pub mod mqtt;
#[cfg(feature = "opentelemetry")]
pub mod otel;
mod tracestate;
pub mod w3c;

#[cfg(feature = "tonic")]
pub use adapters::tonic_metadata;
pub use carrier::{Extract, Inject};
pub use context::SpanContext;
pub use error::ParseError;
pub use ids::{SpanId, TraceFlags, TraceId};
pub use tracestate::{MAX_MEMBERS, TraceState};
