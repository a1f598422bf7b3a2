//! The carriers from other crates, each compiled with its feature.

// Without features nothing here is used.
#![allow(unused_imports, dead_code)]
// Test helpers outside #[test] fns: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use iotel_propagation::{SpanContext, SpanId, TraceFlags, TraceId, b3, w3c};

fn context() -> SpanContext {
    let mut ctx = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
    );
    ctx.trace_state.insert("rojo", "00f067aa0ba902b7").unwrap();
    ctx
}

#[cfg(feature = "http")]
#[test]
fn http_header_map_is_a_case_insensitive_carrier() {
    let mut headers = http::HeaderMap::new();
    w3c::inject(&context(), &mut headers);
    assert_eq!(
        headers["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    assert_eq!(w3c::extract(&headers).unwrap(), context());

    let mut incoming = http::HeaderMap::new();
    incoming.insert("TraceParent", headers["traceparent"].clone());
    incoming.append("tracestate", "a=1".parse().unwrap());
    incoming.append("tracestate", "b=2".parse().unwrap());
    let ctx = w3c::extract(&incoming).unwrap();
    assert_eq!(ctx.trace_state.header(), "a=1,b=2");

    let mut b3_headers = http::HeaderMap::new();
    let b = b3::B3Context::from_span_context(&context());
    b3::inject(&b, b3::Encoding::SingleAndMulti, &mut b3_headers);
    assert_eq!(
        b3_headers["X-B3-TraceId"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(b3::extract(&b3_headers).unwrap(), b3::B3::Context(b));
}

#[cfg(feature = "tonic")]
#[test]
fn tonic_metadata_carries_text_and_grpc_trace_bin() {
    use iotel_propagation::tonic_metadata;
    let mut metadata = tonic::metadata::MetadataMap::new();
    w3c::inject(&context(), &mut metadata);
    assert_eq!(w3c::extract(&metadata).unwrap(), context());

    tonic_metadata::inject_grpc_trace_bin(&context(), &mut metadata);
    let mut expected = context();
    expected.trace_state = Default::default();
    assert_eq!(
        tonic_metadata::extract_grpc_trace_bin(&metadata).unwrap(),
        expected
    );
    // On the wire (HTTP/2 headers) the binary value is base64.
    let headers = metadata.into_headers();
    assert_eq!(
        headers["grpc-trace-bin"],
        "AABL+S81d7NNpqPOkp0ODkc2AQDwZ6oLqQK3AgE"
    );
}

#[cfg(feature = "rumqttc")]
#[test]
fn rumqttc_publish_properties_carry_the_mqtt_binding() {
    use rumqttc::v5::mqttbytes::v5::PublishProperties;
    let mut props = PublishProperties {
        user_properties: vec![("app".to_owned(), "1".to_owned())],
        ..Default::default()
    };
    w3c::inject(&context(), &mut props);
    assert_eq!(props.user_properties.len(), 3);
    assert_eq!(w3c::extract(&props).unwrap(), context());
}

#[cfg(feature = "json")]
#[test]
fn mqtt3_json_envelope_sets_and_reads_outermost_fields() {
    use iotel_propagation::mqtt::json;
    let payload = br#"{"_type":"cmd","configuration":{"settingB":42}}"#;
    let out = json::inject_bytes(&context(), payload).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        value["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    assert_eq!(value["tracestate"], "rojo=00f067aa0ba902b7");
    assert_eq!(value["configuration"]["settingB"], 42);
    assert_eq!(json::extract_bytes(&out).unwrap(), context());

    assert_eq!(
        json::inject_bytes(&context(), b"[1]").unwrap_err().code(),
        "envelope"
    );
    assert_eq!(json::extract_bytes(b"{}").unwrap_err().code(), "missing");
    assert_eq!(
        json::extract_bytes(br#"{"traceparent": 5}"#)
            .unwrap_err()
            .code(),
        "envelope"
    );
}

#[cfg(feature = "opentelemetry")]
#[test]
fn opentelemetry_propagators_extract_and_inject() {
    use iotel_propagation::otel::{B3Propagator, W3cPropagator};
    use opentelemetry::Context;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use std::collections::HashMap;

    let mut carrier: HashMap<String, String> = HashMap::new();
    carrier.insert(
        "traceparent".into(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
    );
    carrier.insert("tracestate".into(), "rojo=00f067aa0ba902b7".into());
    let w3c_prop = W3cPropagator::new();
    let cx = w3c_prop.extract_with_context(&Context::new(), &carrier);
    let span = cx.span();
    let sc = span.span_context();
    assert!(sc.is_remote() && sc.is_sampled());
    assert_eq!(
        sc.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(sc.trace_state().get("rojo"), Some("00f067aa0ba902b7"));

    let mut out: HashMap<String, String> = HashMap::new();
    w3c_prop.inject_context(&cx, &mut out);
    assert_eq!(out, carrier);
    assert_eq!(
        w3c_prop.fields().collect::<Vec<_>>(),
        ["traceparent", "tracestate"]
    );

    // Strict: uppercase hex is rejected, the context stays empty.
    carrier.insert(
        "traceparent".into(),
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01".into(),
    );
    let cx = w3c_prop.extract_with_context(&Context::new(), &carrier);
    assert!(!cx.span().span_context().is_valid());

    let b3_prop = B3Propagator::default();
    let mut b3_carrier: HashMap<String, String> = HashMap::new();
    b3_carrier.insert("b3".into(), "a3ce929d0e0e4736-00f067aa0ba902b7-d".into());
    let cx = b3_prop.extract_with_context(&Context::new(), &b3_carrier);
    assert!(cx.span().span_context().is_sampled());
    let mut out: HashMap<String, String> = HashMap::new();
    b3_prop.inject_context(&cx, &mut out);
    assert_eq!(out["b3"], "a3ce929d0e0e4736-00f067aa0ba902b7-1");
}
