//! `opentelemetry::propagation::TextMapPropagator` for W3C Trace Context and
//! B3, so this crate's strict parsers plug into an OpenTelemetry SDK:
//! `opentelemetry::global::set_text_map_propagator(W3cPropagator::new())`.

use crate::{Extract, Inject, SpanContext, SpanId, TraceFlags, TraceId, TraceState, b3, w3c};
use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{self as ot, TraceContextExt};

struct FromExtractor<'a>(&'a dyn Extractor);

impl Extract for FromExtractor<'_> {
    fn get_all(&self, name: &str) -> Vec<&str> {
        self.0.get_all(name).unwrap_or_default()
    }
}

struct ToInjector<'a>(&'a mut dyn Injector);

impl Inject for ToInjector<'_> {
    fn set(&mut self, name: &str, value: String) {
        self.0.set(name, value);
    }
}

/// Our context to OpenTelemetry's, marked remote.
pub fn to_otel(ctx: &SpanContext) -> ot::SpanContext {
    let state = ot::TraceState::from_key_value(ctx.trace_state.iter()).unwrap_or_default();
    ot::SpanContext::new(
        ot::TraceId::from_bytes(ctx.trace_id.0),
        ot::SpanId::from_bytes(ctx.span_id.0),
        ot::TraceFlags::new(ctx.trace_flags.to_byte()),
        true,
        state,
    )
}

/// OpenTelemetry's context to ours; `None` when it is invalid.
pub fn from_otel(ctx: &ot::SpanContext) -> Option<SpanContext> {
    if !ctx.is_valid() {
        return None;
    }
    Some(SpanContext {
        trace_id: TraceId(ctx.trace_id().to_bytes()),
        span_id: SpanId(ctx.span_id().to_bytes()),
        trace_flags: TraceFlags::from_byte(ctx.trace_flags().to_u8()),
        trace_state: TraceState::parse(&ctx.trace_state().header()).unwrap_or_default(),
    })
}

/// W3C `traceparent` / `tracestate`.
#[derive(Debug)]
pub struct W3cPropagator {
    fields: [String; 2],
}

impl W3cPropagator {
    pub fn new() -> Self {
        Self {
            fields: [w3c::TRACEPARENT.to_owned(), w3c::TRACESTATE.to_owned()],
        }
    }
}

impl Default for W3cPropagator {
    fn default() -> Self {
        Self::new()
    }
}

impl TextMapPropagator for W3cPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        if let Some(ctx) = from_otel(cx.span().span_context()) {
            w3c::inject(&ctx, &mut ToInjector(injector));
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match w3c::extract(&FromExtractor(extractor)) {
            Ok(ctx) => cx.with_remote_span_context(to_otel(&ctx)),
            Err(_) => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}

/// B3, single or multi header.
#[derive(Debug)]
pub struct B3Propagator {
    encoding: b3::Encoding,
    fields: Vec<String>,
}

impl B3Propagator {
    pub fn new(encoding: b3::Encoding) -> Self {
        let mut fields = Vec::new();
        if matches!(
            encoding,
            b3::Encoding::Single | b3::Encoding::SingleAndMulti
        ) {
            fields.push(b3::B3.to_owned());
        }
        if matches!(encoding, b3::Encoding::Multi | b3::Encoding::SingleAndMulti) {
            for f in [
                b3::TRACE_ID,
                b3::SPAN_ID,
                b3::PARENT_SPAN_ID,
                b3::SAMPLED,
                b3::FLAGS,
            ] {
                fields.push(f.to_owned());
            }
        }
        Self { encoding, fields }
    }
}

impl Default for B3Propagator {
    fn default() -> Self {
        Self::new(b3::Encoding::Single)
    }
}

impl TextMapPropagator for B3Propagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        if let Some(ctx) = from_otel(cx.span().span_context()) {
            let ctx = b3::B3Context::from_span_context(&ctx);
            b3::inject(&ctx, self.encoding, &mut ToInjector(injector));
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match b3::extract(&FromExtractor(extractor)) {
            Ok(b3::B3::Context(ctx)) => cx.with_remote_span_context(to_otel(&ctx.span_context())),
            _ => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}
