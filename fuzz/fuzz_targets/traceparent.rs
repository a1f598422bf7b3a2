//! Feeds arbitrary bytes to every trace-context parser of iotel-propagation:
//! W3C `traceparent` and `tracestate` (alone and as header lists), B3 single
//! and multi header, `grpc-trace-bin` and the MQTT v5 user properties. None
//! may panic; what parses must format back to something that parses to the
//! same ids.

#![no_main]

use iotel_propagation::{TraceState, b3, grpc_bin, mqtt, w3c};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The binary format takes the bytes as they are.
    if let Ok(ctx) = grpc_bin::decode(data) {
        let again = grpc_bin::decode(&grpc_bin::encode(&ctx)).expect("re-encoded context decodes");
        assert_eq!(again.trace_id, ctx.trace_id);
        assert_eq!(again.span_id, ctx.span_id);
    }
    let text = String::from_utf8_lossy(data);
    let _ = w3c::TraceParent::parse(&text);
    let _ = TraceState::parse(&text);
    // Split on newlines into header values: several tracestate headers,
    // and the B3 multi-header fields in order.
    let lines: Vec<&str> = text.split('\n').collect();
    let _ = TraceState::parse_headers(lines.iter().copied());
    let _ = b3::parse_single(&text);
    const NAMES: [&str; 7] = [
        "traceparent",
        "tracestate",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
    ];
    let pairs: Vec<(String, String)> = lines
        .iter()
        .enumerate()
        .map(|(i, v)| (NAMES[i % NAMES.len()].to_owned(), (*v).to_owned()))
        .collect();
    if let Ok(ctx) = w3c::extract(&pairs) {
        let mut out: Vec<(String, String)> = Vec::new();
        w3c::inject(&ctx, &mut out);
        let again = w3c::extract(&out).expect("injected traceparent parses");
        assert_eq!(again.trace_id, ctx.trace_id);
        assert_eq!(again.span_id, ctx.span_id);
    }
    let _ = b3::extract_multi(&pairs);
    let _ = b3::extract(&pairs);
    let _ = mqtt::extract_v5(&pairs);
});
