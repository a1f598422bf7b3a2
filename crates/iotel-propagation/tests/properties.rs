//! Parsers never panic on any input; formatting then parsing gives back the
//! same context, in every format.

#![allow(clippy::unwrap_used)]

use iotel_propagation::{
    SpanContext, SpanId, TraceFlags, TraceId, TraceState, b3, grpc_bin, mqtt, w3c, w3c::TraceParent,
};
use proptest::prelude::*;

fn context() -> impl Strategy<Value = SpanContext> {
    (
        any::<[u8; 16]>().prop_filter("non-zero", |b| *b != [0; 16]),
        any::<[u8; 8]>().prop_filter("non-zero", |b| *b != [0; 8]),
        any::<bool>(),
        proptest::collection::vec(("[a-z][a-z0-9_*/-]{0,20}", "[!-+.-<>-~]{1,20}"), 0..8),
    )
        .prop_map(|(t, s, sampled, members)| {
            let mut ctx = SpanContext::new(TraceId(t), SpanId(s), TraceFlags::sampled(sampled));
            for (k, v) in members.iter().rev() {
                ctx.trace_state.insert(k, v).unwrap();
            }
            ctx
        })
}

proptest! {
    #[test]
    fn parsers_never_panic_on_any_string(s in "\\PC{0,80}") {
        let _ = TraceParent::parse(&s);
        let _ = TraceState::parse(&s);
        let _ = b3::parse_single(&s);
        let carrier = vec![("x-b3-traceid".to_owned(), s.clone()), ("x-b3-spanid".to_owned(), s.clone())];
        let _ = b3::extract(&carrier);
    }

    #[test]
    fn parsers_never_panic_on_near_valid_headers(
        s in "[0-9a-fA-F.-]{2}-[0-9a-f.-]{30,34}-[0-9a-f-]{14,18}-[0-9a-f.-]{1,3}[ -~]{0,5}"
    ) {
        let _ = TraceParent::parse(&s);
        let _ = b3::parse_single(&s);
    }

    #[test]
    fn grpc_trace_bin_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        let _ = grpc_bin::decode(&bytes);
    }

    #[test]
    fn w3c_inject_then_extract_round_trips(ctx in context()) {
        let mut carrier = Vec::new();
        w3c::inject(&ctx, &mut carrier);
        prop_assert_eq!(w3c::extract(&carrier).unwrap(), ctx);
    }

    #[test]
    fn traceparent_format_then_parse_round_trips(ctx in context()) {
        let tp = TraceParent::parse(&w3c::format_traceparent(&ctx)).unwrap();
        prop_assert_eq!((tp.trace_id, tp.parent_id, tp.trace_flags), (ctx.trace_id, ctx.span_id, ctx.trace_flags));
    }

    #[test]
    fn tracestate_header_then_parse_round_trips(ctx in context()) {
        prop_assert_eq!(TraceState::parse(&ctx.trace_state.header()).unwrap(), ctx.trace_state);
    }

    #[test]
    fn b3_single_and_multi_round_trip(
        ctx in context(),
        parent in proptest::option::of(any::<[u8; 8]>().prop_filter("non-zero", |b| *b != [0; 8])),
        sampling in prop_oneof![
            Just(b3::Sampling::Accept), Just(b3::Sampling::Deny),
            Just(b3::Sampling::Debug), Just(b3::Sampling::Defer)
        ],
    ) {
        let mut b = b3::B3Context::from_span_context(&ctx);
        b.sampling = sampling;
        // The single header carries a parent only after a sampling state.
        b.parent_span_id = parent.map(SpanId).filter(|_| sampling != b3::Sampling::Defer);
        prop_assert_eq!(b3::parse_single(&b3::format_single(&b)).unwrap(), b3::B3::Context(b));
        let mut carrier = Vec::new();
        b3::inject(&b, b3::Encoding::Multi, &mut carrier);
        prop_assert_eq!(b3::extract(&carrier).unwrap(), b3::B3::Context(b));
    }

    #[test]
    fn grpc_trace_bin_round_trips(ctx in context()) {
        let mut expected = ctx.clone();
        expected.trace_state = TraceState::new();
        prop_assert_eq!(grpc_bin::decode(&grpc_bin::encode(&ctx)).unwrap(), expected);
    }

    #[test]
    fn mqtt_v5_round_trips_beside_other_properties(ctx in context(), other in "[a-z]{1,8}") {
        let mut props = vec![(other.clone(), "v".to_owned())];
        mqtt::inject_v5(&ctx, &mut props);
        prop_assert_eq!(mqtt::extract_v5(&props).unwrap(), ctx);
    }
}
