//! Propagation vectors for every format, valid and invalid, including the
//! cases the W3C Trace Context spec and its test suite call out.

use iotel_propagation::{
    ParseError, SpanContext, SpanId, TraceFlags, TraceId, TraceState, b3, grpc_bin, mqtt, w3c,
    w3c::TraceParent,
};

const TRACE: &str = "12345678901234567890123456789012";
const SPAN: &str = "1234567890123456";

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn traceparent_valid_vectors_parse() {
    for (header, sampled, version) in [
        (
            "00-12345678901234567890123456789012-1234567890123456-01",
            true,
            0,
        ),
        (
            "00-12345678901234567890123456789012-1234567890123456-00",
            false,
            0,
        ),
        // OWS around the value.
        (
            " \t00-12345678901234567890123456789012-1234567890123456-01\t ",
            true,
            0,
        ),
        // Unknown flags are ignored.
        (
            "00-12345678901234567890123456789012-1234567890123456-ff",
            true,
            0,
        ),
        (
            "00-12345678901234567890123456789012-1234567890123456-02",
            false,
            0,
        ),
        // Future versions: the 00 fields, then nothing or `-` and more.
        (
            "cc-12345678901234567890123456789012-1234567890123456-01",
            true,
            0xcc,
        ),
        (
            "cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
            true,
            0xcc,
        ),
        (
            "01-12345678901234567890123456789012-1234567890123456-00-",
            false,
            1,
        ),
    ] {
        let tp = TraceParent::parse(header).unwrap_or_else(|e| panic!("{header:?}: {e}"));
        assert_eq!(tp.trace_id.to_string(), TRACE, "{header}");
        assert_eq!(tp.parent_id.to_string(), SPAN, "{header}");
        assert_eq!(tp.trace_flags.is_sampled(), sampled, "{header}");
        assert_eq!(tp.version, version, "{header}");
    }
}

#[test]
fn traceparent_invalid_vectors_are_rejected_with_a_reason() {
    for (header, code) in [
        ("", "length"),
        ("00", "length"),
        // Version 00 is exactly 55 characters.
        (
            "00-12345678901234567890123456789012-1234567890123456-01.",
            "length",
        ),
        (
            "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
            "length",
        ),
        // A future version must be followed by `-`.
        (
            "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like",
            "invalid_char",
        ),
        (
            "ff-12345678901234567890123456789012-1234567890123456-01",
            "forbidden_version",
        ),
        (
            ".0-12345678901234567890123456789012-1234567890123456-01",
            "invalid_char",
        ),
        (
            "0.-12345678901234567890123456789012-1234567890123456-01",
            "invalid_char",
        ),
        (
            "000-12345678901234567890123456789012-1234567890123456-01",
            "length",
        ),
        (
            "0000-12345678901234567890123456789012-1234567890123456-01",
            "length",
        ),
        (
            "0-12345678901234567890123456789012-1234567890123456-01",
            "length",
        ),
        (
            "00-00000000000000000000000000000000-1234567890123456-01",
            "zero_id",
        ),
        (
            "00-.2345678901234567890123456789012-1234567890123456-01",
            "invalid_char",
        ),
        (
            "00-1234567890123456789012345678901.-1234567890123456-01",
            "invalid_char",
        ),
        (
            "00-123456789012345678901234567890123-1234567890123456-01",
            "length",
        ),
        (
            "00-1234567890123456789012345678901-1234567890123456-01",
            "length",
        ),
        (
            "00-12345678901234567890123456789012-0000000000000000-01",
            "zero_id",
        ),
        (
            "00-12345678901234567890123456789012-.234567890123456-01",
            "invalid_char",
        ),
        (
            "00-12345678901234567890123456789012-123456789012345.-01",
            "invalid_char",
        ),
        (
            "00-12345678901234567890123456789012-12345678901234567-01",
            "length",
        ),
        (
            "00-12345678901234567890123456789012-123456789012345-01",
            "length",
        ),
        (
            "00-12345678901234567890123456789012-1234567890123456-.0",
            "invalid_char",
        ),
        (
            "00-12345678901234567890123456789012-1234567890123456-0.",
            "invalid_char",
        ),
        (
            "00-12345678901234567890123456789012-1234567890123456-001",
            "length",
        ),
        (
            "00-12345678901234567890123456789012-1234567890123456-1",
            "length",
        ),
        // Uppercase hex is not HEXDIGLC.
        (
            "00-1234567890123456789012345678901A-1234567890123456-01",
            "invalid_char",
        ),
        (
            "00-12345678901234567890123456789012-123456789012345A-01",
            "invalid_char",
        ),
        (
            "0A-12345678901234567890123456789012-1234567890123456-01",
            "invalid_char",
        ),
        (
            "00_12345678901234567890123456789012-1234567890123456-01",
            "invalid_char",
        ),
    ] {
        let err = TraceParent::parse(header).expect_err(header);
        assert_eq!(err.code(), code, "{header:?}: {err}");
    }
}

#[test]
fn traceparent_errors_say_what_and_where() {
    let err =
        TraceParent::parse("00-1234567890123456789012345678901.-1234567890123456-01").unwrap_err();
    assert_eq!(
        err.to_string(),
        "trace id: invalid character '.' at byte 34, expected lowercase hex digit"
    );
    let err =
        TraceParent::parse("00-123456789012345678901234567890123-1234567890123456-01").unwrap_err();
    assert_eq!(
        err.to_string(),
        "trace id: expected 32 hex digits, found 33"
    );
}

#[test]
fn extract_keeps_the_traceparent_and_drops_an_invalid_tracestate() {
    let carrier = headers(&[
        (
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-01",
        ),
        ("tracestate", "foo=1,foo=2"),
    ]);
    let ctx = w3c::extract(&carrier).unwrap();
    assert_eq!(ctx.trace_id.to_string(), TRACE);
    assert!(ctx.trace_state.is_empty());
}

#[test]
fn extract_combines_tracestate_headers_in_order_and_ignores_empty_ones() {
    let carrier = headers(&[
        (
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-00",
        ),
        ("tracestate", ""),
        ("tracestate", "foo=1,bar=2"),
        ("tracestate", "rojo=1,congo=2"),
        ("tracestate", "baz=3"),
    ]);
    let ctx = w3c::extract(&carrier).unwrap();
    assert_eq!(ctx.trace_state.header(), "foo=1,bar=2,rojo=1,congo=2,baz=3");
}

#[test]
fn extract_rejects_missing_and_duplicated_traceparent() {
    let err = w3c::extract(&headers(&[("tracestate", "foo=1")])).unwrap_err();
    assert_eq!(err.code(), "missing");
    let err = w3c::extract(&headers(&[
        (
            "traceparent",
            "00-12345678901234567890123456789011-1234567890123456-01",
        ),
        (
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-01",
        ),
    ]))
    .unwrap_err();
    assert_eq!(
        err,
        ParseError::Duplicate {
            header: "traceparent",
            count: 2
        }
    );
}

#[test]
fn extract_or_new_starts_a_new_trace_on_invalid_input() {
    let carrier = headers(&[
        (
            "traceparent",
            "00-00000000000000000000000000000000-1234567890123456-01",
        ),
        ("tracestate", "foo=1"),
    ]);
    let a = w3c::extract_or_new(&carrier);
    let b = w3c::extract_or_new(&carrier);
    assert!(a.is_valid() && b.is_valid());
    assert_ne!(a.trace_id, b.trace_id);
    assert!(a.trace_state.is_empty());
}

#[test]
fn inject_writes_version_00_and_the_known_flags_only() {
    let mut ctx = SpanContext::new(
        TraceId::from_hex(TRACE).unwrap(),
        SpanId::from_hex(SPAN).unwrap(),
        TraceFlags::from_byte(0xff),
    );
    ctx.trace_state.insert("congo", "t61rcWkgMzE").unwrap();
    let mut out = Vec::new();
    w3c::inject(&ctx, &mut out);
    assert_eq!(
        out,
        headers(&[
            (
                "traceparent",
                "00-12345678901234567890123456789012-1234567890123456-01"
            ),
            ("tracestate", "congo=t61rcWkgMzE"),
        ])
    );
}

#[test]
fn tracestate_accepts_every_allowed_character_and_ows() {
    let key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    let vendor_key = format!("{key}@a-z0-9_-*/");
    let value: String = (0x20u8..=0x2b)
        .chain(0x2d..=0x3c)
        .chain(0x3e..=0x7e)
        .map(char::from)
        .collect();
    for k in [key.to_owned(), vendor_key] {
        let ts = TraceState::parse(&format!("{k}={value}")).unwrap();
        assert_eq!(ts.get(&k), Some(value.as_str()));
    }
    let ts = TraceState::parse("foo=1 \t , \t bar=2,\t \tbaz=3\t").unwrap();
    assert_eq!(ts.header(), "foo=1,bar=2,baz=3");
    let ts = TraceState::parse(",, foo=1 ,,").unwrap();
    assert_eq!(ts.header(), "foo=1");
}

#[test]
fn tracestate_invalid_vectors_are_rejected() {
    let long_key = "z".repeat(257);
    let long_tenant = format!("{}@v=1", "t".repeat(242));
    let long_system = format!("t@{}=1", "v".repeat(15));
    let long_value = format!("foo={}", "v".repeat(257));
    let cases = [
        "foo =1",
        "FOO=1",
        "foo.bar=1",
        "foo@=1,bar=2",
        "@foo=1,bar=2",
        "foo@@bar=1,bar=2",
        "foo@bar@baz=1,bar=2",
        "foo=bar=baz",
        "foo=,bar=3",
        "foo",
        "1foo=1",
        "foo=1 x\u{7f}",
        "foo=ä",
        &long_key,
        &long_tenant,
        &long_system,
        &long_value,
    ];
    for case in cases {
        let header = if case.contains('=') || case == "foo" {
            case.to_owned()
        } else {
            format!("{case}=1")
        };
        let err = TraceState::parse(&header).expect_err(&header);
        assert_eq!(err.code(), "tracestate_member", "{header:?}: {err}");
    }
    assert_eq!(
        TraceState::parse("foo=1,foo=1").unwrap_err().code(),
        "tracestate_duplicate_key"
    );
}

#[test]
fn tracestate_length_limits_are_exact() {
    let ok = [
        format!("{}=1", "z".repeat(256)),
        format!("{}@{}=1", "t".repeat(241), "v".repeat(14)),
        format!("foo={}", "v".repeat(256)),
    ];
    for header in ok {
        TraceState::parse(&header).unwrap_or_else(|e| panic!("{e}"));
    }
    let members = |n: usize| {
        (1..=n)
            .map(|i| format!("bar{i:02}={i:02}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(TraceState::parse(&members(32)).unwrap().len(), 32);
    assert_eq!(
        TraceState::parse(&members(33)).unwrap_err(),
        ParseError::TraceStateTooLong { count: 33 }
    );
}

#[test]
fn tracestate_insert_moves_the_key_first_and_keeps_32() {
    let mut ts = TraceState::parse("a=1,b=2").unwrap();
    ts.insert("b", "3").unwrap();
    assert_eq!(ts.header(), "b=3,a=1");
    for i in 0..40 {
        ts.insert(&format!("k{i}"), "v").unwrap();
    }
    assert_eq!(ts.len(), 32);
    assert_eq!(ts.iter().next(), Some(("k39", "v")));
    assert!(ts.insert("BAD", "v").is_err());
    assert_eq!(ts.remove("k39").as_deref(), Some("v"));
}

#[test]
fn b3_single_header_vectors() {
    let full = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90";
    let b3::B3::Context(ctx) = b3::parse_single(full).unwrap() else {
        panic!("context expected")
    };
    assert_eq!(ctx.trace_id.to_string(), "80f198ee56343ba864fe8b2a57d3eff7");
    assert_eq!(ctx.span_id.to_string(), "e457b5a2e4d86bd1");
    assert_eq!(ctx.sampling, b3::Sampling::Accept);
    assert_eq!(ctx.parent_span_id.unwrap().to_string(), "05e3ac9a4f6e3b90");
    assert_eq!(b3::format_single(&ctx), full);

    // 64-bit trace id: zero-extended, and sent back as 16 digits.
    let short = "a3ce929d0e0e4736-00f067aa0ba902b7-d";
    let b3::B3::Context(ctx) = b3::parse_single(short).unwrap() else {
        panic!("context expected")
    };
    assert_eq!(ctx.trace_id.to_string(), "0000000000000000a3ce929d0e0e4736");
    assert_eq!(ctx.sampling, b3::Sampling::Debug);
    assert!(ctx.span_context().is_sampled());
    assert_eq!(b3::format_single(&ctx), short);

    let b3::B3::Context(ctx) = b3::parse_single("a3ce929d0e0e4736-00f067aa0ba902b7").unwrap()
    else {
        panic!("context expected")
    };
    assert_eq!(ctx.sampling, b3::Sampling::Defer);

    assert_eq!(
        b3::parse_single("0").unwrap(),
        b3::B3::SamplingOnly(b3::Sampling::Deny)
    );
    assert_eq!(
        b3::parse_single("1").unwrap(),
        b3::B3::SamplingOnly(b3::Sampling::Accept)
    );
    assert_eq!(
        b3::parse_single("d").unwrap(),
        b3::B3::SamplingOnly(b3::Sampling::Debug)
    );
}

#[test]
fn b3_single_header_invalid_vectors() {
    for header in [
        "",
        "2",
        "true",
        "a3ce929d0e0e4736",
        "a3ce929d0e0e4736-00f067aa0ba902b7-2",
        "a3ce929d0e0e4736-00f067aa0ba902b7-1-00f067aa0ba902b7-x",
        "A3CE929D0E0E4736-00f067aa0ba902b7-1",
        "a3ce929d0e0e473-00f067aa0ba902b7-1",
        "a3ce929d0e0e47360-00f067aa0ba902b7-1",
        "0000000000000000-00f067aa0ba902b7-1",
        "a3ce929d0e0e4736-0000000000000000-1",
        "a3ce929d0e0e4736-00f067aa0ba902b-1",
        "a3ce929d0e0e4736-00f067aa0ba902b7-1-0000000000000000",
        "a3ce929d0e0e4736-00f067aa0ba902b7--",
    ] {
        assert!(b3::parse_single(header).is_err(), "{header:?}");
    }
}

#[test]
fn b3_multi_header_vectors() {
    let carrier = headers(&[
        ("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("X-B3-SpanId", "e457b5a2e4d86bd1"),
        ("X-B3-ParentSpanId", "05e3ac9a4f6e3b90"),
        ("X-B3-Sampled", "1"),
    ]);
    // Pair lists match names exactly; HTTP carriers case-insensitively.
    let map: std::collections::HashMap<String, String> = carrier.into_iter().collect();
    let b3::B3::Context(ctx) = b3::extract(&map).unwrap() else {
        panic!("context expected")
    };
    assert_eq!(ctx.sampling, b3::Sampling::Accept);
    assert_eq!(ctx.parent_span_id.unwrap().to_string(), "05e3ac9a4f6e3b90");

    let mut out = Vec::new();
    b3::inject(&ctx, b3::Encoding::Multi, &mut out);
    assert_eq!(
        out,
        headers(&[
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
            ("x-b3-sampled", "1"),
        ])
    );

    // Debug flag: implies sampled, sent without X-B3-Sampled.
    let debug = headers(&[
        ("x-b3-traceid", "a3ce929d0e0e4736"),
        ("x-b3-spanid", "00f067aa0ba902b7"),
        ("x-b3-flags", "1"),
    ]);
    let b3::B3::Context(ctx) = b3::extract(&debug).unwrap() else {
        panic!("context expected")
    };
    assert_eq!(ctx.sampling, b3::Sampling::Debug);
    let mut out = Vec::new();
    b3::inject(&ctx, b3::Encoding::Multi, &mut out);
    assert_eq!(out, debug);

    // Legacy true/false, and a sampling decision alone.
    let legacy = headers(&[
        ("x-b3-traceid", "a3ce929d0e0e4736"),
        ("x-b3-spanid", "00f067aa0ba902b7"),
        ("x-b3-sampled", "false"),
    ]);
    let b3::B3::Context(ctx) = b3::extract(&legacy).unwrap() else {
        panic!("context expected")
    };
    assert_eq!(ctx.sampling, b3::Sampling::Deny);
    assert_eq!(
        b3::extract(&headers(&[("x-b3-sampled", "0")])).unwrap(),
        b3::B3::SamplingOnly(b3::Sampling::Deny)
    );
    let new = b3::extract_or_new(&headers(&[("x-b3-sampled", "0")]));
    assert!(new.is_valid() && !new.is_sampled());
}

#[test]
fn b3_multi_header_invalid_vectors() {
    for carrier in [
        vec![],
        vec![("x-b3-traceid", "a3ce929d0e0e4736")],
        vec![("x-b3-spanid", "00f067aa0ba902b7")],
        vec![
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", "00f067aa0ba902b"),
        ],
        vec![
            ("x-b3-traceid", "a3ce929d0e0e473"),
            ("x-b3-spanid", "00f067aa0ba902b7"),
        ],
        vec![
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", "00f067aa0ba902b7"),
            ("x-b3-sampled", "yes"),
        ],
        vec![
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", "00f067aa0ba902b7"),
            ("x-b3-flags", "2"),
        ],
        vec![
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-traceid", "a3ce929d0e0e4737"),
            ("x-b3-spanid", "00f067aa0ba902b7"),
        ],
    ] {
        assert!(b3::extract(&headers(&carrier)).is_err(), "{carrier:?}");
    }
}

#[test]
fn grpc_trace_bin_vectors() {
    let ctx = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
    );
    let bytes = grpc_bin::encode(&ctx);
    let expected: [u8; 29] = [
        0, 0, 0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
        0x47, 0x36, 1, 0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7, 2, 1,
    ];
    assert_eq!(bytes, expected);
    assert_eq!(grpc_bin::decode(&bytes).unwrap(), ctx);
    // Without trace options: not sampled. With a newer sender's extra field: skipped.
    assert!(!grpc_bin::decode(&bytes[..27]).unwrap().is_sampled());
    let mut extended = bytes.to_vec();
    extended.extend_from_slice(&[7, 1, 2, 3]);
    assert_eq!(grpc_bin::decode(&extended).unwrap(), ctx);

    for (bad, code) in [
        (&[][..], "binary"),
        (&[1][..], "binary_version"),
        (&bytes[..10], "binary"),
        (&bytes[..26], "binary"),
        (&bytes[..28], "binary"),
    ] {
        assert_eq!(grpc_bin::decode(bad).unwrap_err().code(), code, "{bad:?}");
    }
    let mut wrong_order = bytes;
    wrong_order[1] = 1;
    assert_eq!(grpc_bin::decode(&wrong_order).unwrap_err().code(), "binary");
    let mut zero = bytes;
    zero[2..18].fill(0);
    assert_eq!(grpc_bin::decode(&zero).unwrap_err().code(), "zero_id");
}

#[test]
fn mqtt_v5_user_properties_follow_the_w3c_binding() {
    let ctx = w3c::extract_or_new(&headers(&[
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        (
            "tracestate",
            "congo=lZWRzIHRoNhcm5hbCBwbGVhc3VyZS4,rojo=00f067aa0ba902b7",
        ),
    ]));
    let mut props = headers(&[("app", "x"), ("traceparent", "stale")]);
    mqtt::inject_v5(&ctx, &mut props);
    assert_eq!(props[0], ("app".to_owned(), "x".to_owned()));
    assert_eq!(props.iter().filter(|(k, _)| k == "traceparent").count(), 1);
    assert_eq!(mqtt::extract_v5(&props).unwrap(), ctx);
    // MQTT names match exactly: the binding says all lower case.
    let upper = headers(&[(
        "TraceParent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )]);
    assert_eq!(mqtt::extract_v5(&upper).unwrap_err().code(), "missing");
}
