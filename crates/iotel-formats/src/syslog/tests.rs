#![allow(clippy::unwrap_used)]

use super::*;
use jiff::Timestamp;
use proptest::prelude::*;
use serde_json::json;

fn utc_at(received: &str) -> Options {
    Options {
        received_ns: ns(received),
        timezone: TimeZone::UTC,
    }
}

fn ns(rfc3339: &str) -> i64 {
    i64::try_from(rfc3339.parse::<Timestamp>().unwrap().as_nanosecond()).unwrap()
}

fn opts() -> Options {
    utc_at("2024-06-15T12:00:00Z")
}

fn parse_str(s: &str) -> Result<Message, ParseError> {
    parse(s.as_bytes(), &opts())
}

fn error(s: &str) -> String {
    parse_str(s).unwrap_err().to_string()
}

fn sd(id: &str, params: &[(&str, &str)]) -> SdElement {
    SdElement {
        id: id.into(),
        params: params
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    }
}

fn some(s: &str) -> Option<String> {
    Some(s.to_string())
}

#[test]
fn rfc5424_example_with_bom_and_millisecond_timestamp_parses_field_by_field() {
    let m = parse(
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8",
        &opts(),
    )
    .unwrap();
    assert_eq!(
        m,
        Message {
            format: Format::Rfc5424 { version: 1 },
            facility: 4,
            severity: 2,
            timestamp_ns: Some(ns("2003-10-11T22:14:15.003Z")),
            hostname: some("mymachine.example.com"),
            app_name: some("su"),
            procid: None,
            msgid: some("ID47"),
            structured_data: vec![],
            msg: "'su root' failed for lonvick on /dev/pts/8".into(),
        }
    );
}

#[test]
fn rfc5424_timestamp_with_microseconds_and_negative_offset_is_converted_to_utc() {
    let m = parse_str(
        "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nothing.",
    )
    .unwrap();
    assert_eq!(m.facility, 20);
    assert_eq!(m.severity, 5);
    assert_eq!(m.timestamp_ns, Some(ns("2003-08-24T12:14:15.000003Z")));
    assert_eq!(m.procid, some("8710"));
    assert_eq!(m.msgid, None);
    assert_eq!(m.msg, "%% It's time to make the do-nothing.");
}

#[test]
fn rfc5424_structured_data_elements_and_escapes_are_read() {
    let m = parse_str(
        r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high" note="a \"q\" b\\c \]d \e ]x"]"#,
    )
    .unwrap();
    assert_eq!(
        m.structured_data,
        vec![
            sd(
                "exampleSDID@32473",
                &[
                    ("iut", "3"),
                    ("eventSource", "Application"),
                    ("eventID", "1011")
                ]
            ),
            sd(
                "examplePriority@32473",
                &[("class", "high"), ("note", r#"a "q" b\c ]d \e ]x"#)]
            ),
        ]
    );
    assert_eq!(m.msg, "");
}

#[test]
fn rfc5424_nil_values_leave_the_fields_absent_and_the_record_takes_the_receive_time() {
    let m = parse_str("<13>1 - - - - - -").unwrap();
    assert_eq!(
        m,
        Message {
            format: Format::Rfc5424 { version: 1 },
            facility: 1,
            severity: 5,
            timestamp_ns: None,
            hostname: None,
            app_name: None,
            procid: None,
            msgid: None,
            structured_data: vec![],
            msg: String::new(),
        }
    );
    let r = m.into_log_record(42);
    assert_eq!(r.timestamp_ns, 42);
    assert_eq!(
        serde_json::Value::Object(r.fields),
        json!({"facility": "user", "syslog_severity": "notice", "version": 1})
    );
}

#[test]
fn a_log_record_gets_severity_and_every_header_field() {
    let r = parse_str(
        r#"<11>1 2024-06-15T10:00:00+02:00 gw-1 sensord 77 TEMP [meta sequenceId="1"][origin ip="10.0.0.1" ip="10.0.0.2"] too hot"#,
    )
    .unwrap()
    .into_log_record(0);
    assert_eq!(r.timestamp_ns, ns("2024-06-15T08:00:00Z"));
    assert_eq!(r.message, "too hot");
    assert_eq!(r.severity, Some(Severity::Error));
    assert!(r.labels.is_empty());
    assert_eq!(
        serde_json::Value::Object(r.fields),
        json!({
            "facility": "user",
            "syslog_severity": "err",
            "hostname": "gw-1",
            "app_name": "sensord",
            "procid": "77",
            "msgid": "TEMP",
            "version": 1,
            "structured_data": {
                "meta": {"sequenceId": "1"},
                "origin": {"ip": ["10.0.0.1", "10.0.0.2"]},
            },
        })
    );
}

#[test]
fn syslog_severities_map_onto_the_models() {
    let got: Vec<Severity> = (0..8).map(severity).collect();
    assert_eq!(
        got,
        [
            Severity::Fatal,
            Severity::Fatal,
            Severity::Fatal,
            Severity::Error,
            Severity::Warn,
            Severity::Info,
            Severity::Info,
            Severity::Debug
        ]
    );
}

#[test]
fn trailing_newlines_and_nuls_are_removed_and_invalid_utf8_is_replaced() {
    let m = parse(b"<13>1 - - - - - - caf\xC3\xA9 \xFF!\r\n\0", &opts()).unwrap();
    assert_eq!(m.msg, "café \u{FFFD}!");
}

#[test]
fn rfc5424_errors_name_the_byte_and_what_was_expected() {
    let cases = [
        (
            "<13",
            "byte 3: expected '>' closing PRI, found the end of the message",
        ),
        ("<>1 -", "byte 1: expected PRI digits (0-191), found '>'"),
        (
            "<192>1 - - - - - -",
            "byte 1: expected PRI 0-191, found 192",
        ),
        (
            "<1234>",
            "byte 4: expected '>' closing PRI (PRI is 0-191), found '4'",
        ),
        (
            "<13>1 2003-10-11 22:14:15Z h a p m -",
            "byte 16: expected 'T' between date and time, found a space",
        ),
        (
            "<13>1 2003-10-11T22:14:15 h a p m -",
            "byte 25: expected 'Z' or a UTC offset such as +02:00, found a space",
        ),
        (
            "<13>1 2003-02-30T22:14:15Z h a p m -",
            "byte 6: expected a valid date and time, found 2003-02-30 22:14:15",
        ),
        (
            "<13>1 1500-01-01T00:00:00Z h a p m -",
            "byte 6: expected a timestamp between the years 1678 and 2262, found the year 1500",
        ),
        (
            "<13>1 2003-10-11T22:14:15.Z h a p m -",
            "byte 26: expected digits of a fraction of a second after '.', found 'Z'",
        ),
        (
            "<13>1 2003-10-11T22:14:15.0000000001Z h a p m -",
            "byte 35: expected at most nine digits of a fraction of a second, found '1'",
        ),
        (
            "<13>1 -  a p m -",
            "byte 8: expected HOSTNAME (printable ASCII, or '-' when absent), found a space",
        ),
        (
            "<13>1 - h a p m",
            "byte 15: expected a space after MSGID, found the end of the message",
        ),
        (
            "<13>1 - h a p m x",
            "byte 16: expected STRUCTURED-DATA: '-' or '[', found 'x'",
        ),
        (
            "<13>1 - h a p m -x",
            "byte 17: expected a space between STRUCTURED-DATA and MSG, found 'x'",
        ),
        (
            "<13>1 - h a p m [id a=\"1\" b=2]",
            "byte 28: expected '\"' opening the value of \"b\", found '2'",
        ),
        (
            "<13>1 - h a p m [id a=\"1",
            "byte 24: expected '\"' closing the value of \"a\", found the end of the message",
        ),
        (
            "<13>1 - h a p m [id a]",
            "byte 21: expected '=' after PARAM-NAME \"a\", found ']'",
        ),
        (
            "<13>1 - h a p m [id]x",
            "byte 20: expected a space between STRUCTURED-DATA and MSG, found 'x'",
        ),
        (
            "<13>1 - h a p m [id\ta=\"1\"]",
            "byte 19: expected a space before a PARAM-NAME or ']' closing SD-ELEMENT \"id\", found byte 0x09",
        ),
        (
            "<13>1 - h a p m []",
            "byte 17: expected SD-ID (printable ASCII but '=', ']', '\"' and space), found ']'",
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(input, want)| error(input) != *want)
        .map(|(input, _)| format!("{input}\n  got: {}", error(input)))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let long_app = format!("<13>1 - h {} p m -", "a".repeat(49));
    assert_eq!(
        error(&long_app),
        "byte 58: expected a space after APP-NAME, which is at most 48 characters, found 'a'"
    );
    let e = parse(b"<13>1 - h a p m [id a=\"\xC3(\"]", &opts()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "byte 23: expected UTF-8 in the value of \"a\", found byte 0xc3"
    );
}

#[test]
fn bsd_message_with_host_and_tag_parses_in_the_receive_year_and_zone() {
    let o = Options {
        received_ns: ns("2024-10-12T08:00:00Z"),
        timezone: jiff::tz::TimeZone::get("Europe/Berlin").unwrap(),
    };
    let m = parse(
        b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        &o,
    )
    .unwrap();
    assert_eq!(
        m,
        Message {
            format: Format::Rfc3164,
            facility: 4,
            severity: 2,
            // 22:14:15 in Berlin in October is CEST, UTC+2.
            timestamp_ns: Some(ns("2024-10-11T20:14:15Z")),
            hostname: some("mymachine"),
            app_name: some("su"),
            procid: None,
            msgid: None,
            structured_data: vec![],
            msg: "'su root' failed for lonvick on /dev/pts/8".into(),
        }
    );
    let r = m.into_log_record(0);
    assert_eq!(
        serde_json::Value::Object(r.fields),
        json!({"facility": "auth", "syslog_severity": "crit", "hostname": "mymachine", "app_name": "su"})
    );
}

#[test]
fn bsd_year_rolls_back_for_december_messages_received_in_january_and_forward_the_other_way() {
    let m = parse(
        b"<13>Dec 31 23:59:59 h app: x",
        &utc_at("2025-01-01T00:00:05Z"),
    )
    .unwrap();
    assert_eq!(m.timestamp_ns, Some(ns("2024-12-31T23:59:59Z")));
    let m = parse(
        b"<13>Jan  1 00:00:01 h app: x",
        &utc_at("2024-12-31T23:59:59Z"),
    )
    .unwrap();
    assert_eq!(m.timestamp_ns, Some(ns("2025-01-01T00:00:01Z")));
}

#[test]
fn bsd_variants_are_read_leniently() {
    struct Case {
        input: &'static str,
        time: Option<&'static str>,
        host: Option<&'static str>,
        app: Option<&'static str>,
        pid: Option<&'static str>,
        msg: &'static str,
    }
    let cases = [
        Case {
            input: "<30>Jun  5 07:08:09 gw sshd[1234]: Accepted key",
            time: Some("2024-06-05T07:08:09Z"),
            host: Some("gw"),
            app: Some("sshd"),
            pid: Some("1234"),
            msg: "Accepted key",
        },
        // No hostname: the first word is a tag.
        Case {
            input: "<30>Jun  5 07:08:09 cron[7]: tick",
            time: Some("2024-06-05T07:08:09Z"),
            host: None,
            app: Some("cron"),
            pid: Some("7"),
            msg: "tick",
        },
        // No tag.
        Case {
            input: "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
            time: Some("2024-02-05T17:32:18Z"),
            host: Some("10.0.0.99"),
            app: None,
            pid: None,
            msg: "Use the BFG!",
        },
        // A year and milliseconds, then a Cisco-style colon.
        Case {
            input: "<187>Jun 15 2023 10:00:00.250: %LINK-3-UPDOWN: down",
            time: Some("2023-06-15T10:00:00.25Z"),
            host: None,
            app: Some("%LINK-3-UPDOWN"),
            pid: None,
            msg: "down",
        },
        // An RFC 3339 timestamp in a BSD message.
        Case {
            input: "<13>2024-06-01T10:00:00.5+01:00 host app: hi",
            time: Some("2024-06-01T09:00:00.5Z"),
            host: Some("host"),
            app: Some("app"),
            pid: None,
            msg: "hi",
        },
        // No timestamp: no hostname either (as rsyslog).
        Case {
            input: "<13>app: hello there",
            time: None,
            host: None,
            app: Some("app"),
            pid: None,
            msg: "hello there",
        },
        // No PRI at all.
        Case {
            input: "plain text line\n",
            time: None,
            host: None,
            app: None,
            pid: None,
            msg: "plain text line",
        },
        // Something that looks like a month but is not a timestamp.
        Case {
            input: "<13>Mayday mayday",
            time: None,
            host: None,
            app: None,
            pid: None,
            msg: "Mayday mayday",
        },
        // A VERSION-looking digit not followed by a space is BSD.
        Case {
            input: "<13>1x",
            time: None,
            host: None,
            app: None,
            pid: None,
            msg: "1x",
        },
    ];
    for c in cases {
        let m = parse_str(c.input).unwrap();
        assert_eq!(m.format, Format::Rfc3164, "{}", c.input);
        assert_eq!(m.timestamp_ns, c.time.map(ns), "{}", c.input);
        assert_eq!(m.hostname.as_deref(), c.host, "{}", c.input);
        assert_eq!(m.app_name.as_deref(), c.app, "{}", c.input);
        assert_eq!(m.procid.as_deref(), c.pid, "{}", c.input);
        assert_eq!(m.msg, c.msg, "{}", c.input);
    }
    let m = parse_str("no pri").unwrap();
    assert_eq!((m.facility, m.severity), (1, 5));
}

#[test]
fn bsd_errors_are_a_bad_pri_and_a_date_that_does_not_exist() {
    assert_eq!(
        error("<x>hi"),
        "byte 1: expected PRI digits (0-191), found 'x'"
    );
    assert_eq!(
        error("<13>Feb 30 10:00:00 h a: b"),
        "byte 4: expected a valid date and time, found 2024-02-30 10:00:00"
    );
}

// ---- Property tests -------------------------------------------------------

/// RFC 5424 text for `m`, written independently of the parser.
fn encode(m: &Message, offset_minutes: i32, fraction_digits: usize) -> Vec<u8> {
    let Format::Rfc5424 { version } = m.format else {
        panic!("not 5424")
    };
    let nil = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let ts = match m.timestamp_ns {
        None => "-".to_string(),
        Some(t) => {
            let offset = jiff::tz::Offset::from_seconds(offset_minutes * 60).unwrap();
            let dt = offset.to_datetime(Timestamp::from_nanosecond(i128::from(t)).unwrap());
            let mut s = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            );
            if fraction_digits > 0 {
                let frac = format!("{:09}", dt.subsec_nanosecond());
                s.push('.');
                s.push_str(&frac[..fraction_digits]);
            }
            if offset_minutes == 0 {
                s.push('Z');
            } else {
                let a = offset_minutes.abs();
                let sign = if offset_minutes < 0 { '-' } else { '+' };
                s.push_str(&format!("{sign}{:02}:{:02}", a / 60, a % 60));
            }
            s
        }
    };
    let mut out = format!(
        "<{}>{version} {ts} {} {} {} {} ",
        u32::from(m.facility) * 8 + u32::from(m.severity),
        nil(&m.hostname),
        nil(&m.app_name),
        nil(&m.procid),
        nil(&m.msgid)
    );
    if m.structured_data.is_empty() {
        out.push('-');
    }
    for e in &m.structured_data {
        out.push('[');
        out.push_str(&e.id);
        for (n, v) in &e.params {
            out.push_str(&format!(" {n}=\""));
            for ch in v.chars() {
                if matches!(ch, '"' | '\\' | ']') {
                    out.push('\\');
                }
                out.push(ch);
            }
            out.push('"');
        }
        out.push(']');
    }
    let mut bytes = out.into_bytes();
    if !m.msg.is_empty() {
        bytes.push(b' ');
        bytes.extend_from_slice(b"\xEF\xBB\xBF");
        bytes.extend_from_slice(m.msg.as_bytes());
    }
    bytes
}

fn header(max: usize) -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        proptest::string::string_regex(&format!("[!-~]{{1,{max}}}"))
            .unwrap()
            .prop_filter("'-' is absent", |s| s != "-"),
    )
}

fn sd_name() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r"[!#-<>-\[\\^-~]{1,32}").unwrap()
}

fn elements() -> impl Strategy<Value = Vec<SdElement>> {
    let element = (
        sd_name(),
        proptest::collection::vec((sd_name(), any::<String>()), 0..4),
    )
        .prop_map(|(id, params)| SdElement { id, params });
    proptest::collection::vec(element, 0..4).prop_map(|mut v| {
        // SD-IDs are unique in a message.
        let mut seen = std::collections::HashSet::new();
        v.retain(|e| seen.insert(e.id.clone()));
        v
    })
}

/// Timestamps RFC 5424 can carry at nanosecond precision, with how many
/// fraction digits to write (the value is truncated to them).
fn timestamp() -> impl Strategy<Value = Option<(i64, usize)>> {
    proptest::option::of(
        (
            -9_000_000_000i64..9_000_000_000,
            0i64..1_000_000_000,
            0usize..=9,
        )
            .prop_map(|(s, nanos, digits)| {
                let unit = 10i64.pow(9 - u32::try_from(digits).unwrap());
                (s * 1_000_000_000 + nanos / unit * unit, digits)
            }),
    )
}

fn message() -> impl Strategy<Value = (Message, i32, usize)> {
    (
        (1u16..1000, 0u8..24, 0u8..8, timestamp()),
        (header(255), header(48), header(128), header(32)),
        elements(),
        any::<String>(),
        -1439i32..1440,
    )
        .prop_map(
            |((version, facility, severity, ts), (h, a, p, m), sd, msg, offset)| {
                let msg = msg
                    .trim_end_matches(['\n', '\r', '\0'])
                    .trim_start_matches('\u{feff}')
                    .to_string();
                let message = Message {
                    format: Format::Rfc5424 { version },
                    facility,
                    severity,
                    timestamp_ns: ts.map(|(t, _)| t),
                    hostname: h,
                    app_name: a,
                    procid: p,
                    msgid: m,
                    structured_data: sd,
                    msg,
                };
                (message, offset, ts.map_or(0, |(_, d)| d))
            },
        )
}

proptest! {
    #[test]
    fn any_valid_rfc5424_message_round_trips_field_by_field(
        (m, offset, digits) in message()
    ) {
        let bytes = encode(&m, offset, digits);
        let parsed = parse(&bytes, &opts());
        prop_assert_eq!(parsed, Ok(m), "{}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&bytes, &opts());
        let mut with_pri = b"<13>1 ".to_vec();
        with_pri.extend_from_slice(&bytes);
        let _ = parse(&with_pri, &opts());
        let mut bsd = b"<13>Oct 11 ".to_vec();
        bsd.extend_from_slice(&bytes);
        let _ = parse(&bsd, &opts());
    }

    #[test]
    fn truncated_or_corrupted_valid_messages_never_panic(
        (m, offset, digits) in message(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let bytes = encode(&m, offset, digits);
        let _ = parse(&bytes[..cut.index(bytes.len() + 1)], &opts());
        let mut corrupted = bytes.clone();
        let i = flip.index(corrupted.len());
        corrupted[i] = byte;
        let _ = parse(&corrupted, &opts());
    }
}
