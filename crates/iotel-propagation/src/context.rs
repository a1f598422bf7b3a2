//! The span context that crosses process boundaries.

use crate::{SpanId, TraceFlags, TraceId, TraceState};

/// What one process tells the next about the span it is in: which trace,
/// which span (the next one's parent), whether it is sampled, and the
/// vendors' `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_flags: TraceFlags,
    pub trace_state: TraceState,
}

impl SpanContext {
    /// A context with an empty `tracestate`.
    pub fn new(trace_id: TraceId, span_id: SpanId, trace_flags: TraceFlags) -> Self {
        Self {
            trace_id,
            span_id,
            trace_flags,
            trace_state: TraceState::new(),
        }
    }

    /// The first span of a new trace: random trace and span ids.
    pub fn new_root(sampled: bool) -> Self {
        Self::new(
            TraceId::random(),
            SpanId::random(),
            TraceFlags::sampled(sampled),
        )
    }

    /// A span under this one: same trace, flags and `tracestate`, a new
    /// random span id. Inject the child, not the received context, into the
    /// requests a service makes.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            trace_flags: self.trace_flags,
            trace_state: self.trace_state.clone(),
        }
    }

    /// Both ids non-zero.
    pub fn is_valid(&self) -> bool {
        self.trace_id.is_valid() && self.span_id.is_valid()
    }

    pub fn is_sampled(&self) -> bool {
        self.trace_flags.is_sampled()
    }
}
