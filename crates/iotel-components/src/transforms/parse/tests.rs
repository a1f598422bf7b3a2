#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn config(text: &str) -> Config {
    toml::from_str(text).unwrap()
}

fn build(text: &str) -> (Box<dyn Transform>, BuildContext) {
    let cfg = config(text);
    assert_eq!(cfg.validate(), vec![], "{text}");
    let cx = BuildContext::for_test("p");
    (cfg.build(&cx).unwrap(), cx)
}

fn run(t: &mut Box<dyn Transform>, records: Vec<LogRecord>) -> Vec<LogRecord> {
    let mut out = Vec::new();
    t.transform(Events::Logs(records), &mut out);
    let [Events::Logs(logs)] = &out[..] else {
        panic!("expected one batch of logs, got {out:?}")
    };
    logs.clone()
}

fn one(t: &mut Box<dyn Transform>, r: LogRecord) -> LogRecord {
    run(t, vec![r]).remove(0)
}

fn line(message: &str) -> LogRecord {
    LogRecord::new(7, message)
}

fn with_fields(message: &str, fields: Value) -> LogRecord {
    let mut r = line(message);
    let Value::Object(m) = fields else { panic!() };
    r.fields = m;
    r
}

fn fields(r: &LogRecord) -> Value {
    Value::Object(r.fields.clone())
}

fn errors(cx: &BuildContext, code: &str) -> u64 {
    cx.metrics.errors(code).get()
}

fn problems(text: &str) -> Vec<(String, String)> {
    config(text)
        .validate()
        .into_iter()
        .map(|p| (p.key, p.message))
        .collect()
}

fn problem(key: &str, message: &str) -> (String, String) {
    (key.to_string(), message.to_string())
}

#[test]
fn json_members_become_fields_with_severity_and_message_taken_from_them() {
    let (mut t, _) = build(
        r#"
format = "json"
severity_field = "level"
message_field = "msg"
"#,
    );
    let r = one(
        &mut t,
        line(r#"{"level":"WARN","msg":"disk almost full","disk":{"free_mb":12},"tags":["a"]}"#),
    );
    assert_eq!(r.message, "disk almost full");
    assert_eq!(r.severity, Some(Severity::Warn));
    assert_eq!(r.timestamp_ns, 7);
    assert_eq!(
        fields(&r),
        json!({"level": "WARN", "disk": {"free_mb": 12}, "tags": ["a"]})
    );
}

#[test]
fn a_non_json_line_and_non_object_json_are_kept_flagged_and_counted() {
    let (mut t, cx) = build(r#"format = "json""#);
    let out = run(
        &mut t,
        vec![line("plain text"), line("[1, 2]"), line(r#"{"ok":true}"#)],
    );
    assert_eq!(out[0].message, "plain text");
    assert_eq!(
        fields(&out[0]),
        json!({"parse_error": "not JSON: expected value at line 1 column 1"})
    );
    assert_eq!(out[1].message, "[1, 2]");
    assert_eq!(
        fields(&out[1]),
        json!({"parse_error": "expected a JSON object, got an array"})
    );
    assert_eq!(fields(&out[2]), json!({"ok": true}));
    assert_eq!(errors(&cx, "invalid_json"), 1);
    assert_eq!(errors(&cx, "not_an_object"), 1);
}

#[test]
fn logfmt_pairs_become_string_fields_and_flags_true() {
    let (mut t, _) = build(
        r#"
format = "logfmt"
severity_field = "level"
"#,
    );
    let r = one(
        &mut t,
        line(r#"level=error msg="could not \"connect\"\n" retry= tls path=/a=b"#),
    );
    assert_eq!(r.severity, Some(Severity::Error));
    assert_eq!(
        fields(&r),
        json!({"level": "error", "msg": "could not \"connect\"\n", "retry": "", "tls": true, "path": "/a=b"})
    );
}

#[test]
fn logfmt_errors_name_the_byte() {
    let (mut t, cx) = build(r#"format = "logfmt""#);
    let cases = [
        (
            "just some words",
            "not logfmt: byte 0: expected key=value pairs, found none",
        ),
        (
            r#"a=1 msg="open"#,
            "not logfmt: byte 8: expected '\"' closing the quoted value of \"msg\"",
        ),
        (
            r#"a="x"y"#,
            "not logfmt: byte 5: expected a space after the quoted value of \"a\"",
        ),
        ("a=1 =2", "not logfmt: byte 4: expected a key before '='"),
    ];
    for (input, want) in cases {
        let r = one(&mut t, line(input));
        assert_eq!(r.message, input);
        assert_eq!(fields(&r), json!({ "parse_error": want }), "{input}");
    }
    assert_eq!(errors(&cx, "invalid_logfmt"), 4);
}

#[test]
fn regex_named_groups_that_took_part_become_fields() {
    let (mut t, cx) = build(
        r#"
format = "regex"
pattern = '^(?P<level>[A-Z]+) \[(?P<module>\w+)\](?: code=(?P<code>\d+))? (?P<msg>.*)$'
severity_field = "level"
message_field = "msg"
"#,
    );
    let out = run(
        &mut t,
        vec![
            line("ERROR [net] code=7 link down"),
            line("INFO [app] started"),
            line("garbage"),
        ],
    );
    assert_eq!(out[0].message, "link down");
    assert_eq!(out[0].severity, Some(Severity::Error));
    assert_eq!(
        fields(&out[0]),
        json!({"level": "ERROR", "module": "net", "code": "7"})
    );
    assert_eq!(out[1].message, "started");
    assert_eq!(fields(&out[1]), json!({"level": "INFO", "module": "app"}));
    assert_eq!(out[2].message, "garbage");
    assert_eq!(out[2].severity, None);
    assert_eq!(
        fields(&out[2]),
        json!({"parse_error": "the pattern did not match"})
    );
    assert_eq!(errors(&cx, "no_match"), 1);
}

#[test]
fn a_field_is_parsed_into_a_target_object() {
    let (mut t, cx) = build(
        r#"
format = "json"
field = "payload"
target = "data"
"#,
    );
    let out = run(
        &mut t,
        vec![
            with_fields("m", json!({"payload": r#"{"t": 21.5}"#})),
            with_fields("m", json!({"other": 1})),
            with_fields("m", json!({"payload": 5})),
        ],
    );
    assert_eq!(
        fields(&out[0]),
        json!({"payload": r#"{"t": 21.5}"#, "data": {"t": 21.5}})
    );
    assert_eq!(
        fields(&out[1]),
        json!({"other": 1, "parse_error": "no field \"payload\" to parse"})
    );
    assert_eq!(
        fields(&out[2]),
        json!({"payload": 5, "parse_error": "field \"payload\" is a number, expected a string"})
    );
    assert_eq!(errors(&cx, "field_missing"), 1);
    assert_eq!(errors(&cx, "field_not_a_string"), 1);
}

#[test]
fn conflicts_replace_or_keep_as_overwrite_says_and_are_counted() {
    let conflicts = |cx: &BuildContext| {
        cx.metrics
            .registry()
            .counter(
                "iotel_parse_field_conflicts_total",
                "",
                &[("component_id", "p")],
            )
            .get()
    };
    let record = || with_fields(r#"{"a": "new", "b": "new"}"#, json!({"a": "old"}));
    let (mut t, cx) = build(r#"format = "json""#);
    assert_eq!(
        fields(&one(&mut t, record())),
        json!({"a": "new", "b": "new"})
    );
    assert_eq!(conflicts(&cx), 1);
    let (mut t, cx) = build("format = \"json\"\noverwrite = false");
    assert_eq!(
        fields(&one(&mut t, record())),
        json!({"a": "old", "b": "new"})
    );
    assert_eq!(conflicts(&cx), 1);
}

#[test]
fn an_unknown_severity_value_leaves_the_severity_alone() {
    let (mut t, _) = build("format = \"json\"\nseverity_field = \"level\"");
    let mut r = line(r#"{"level": "loud"}"#);
    r.severity = Some(Severity::Info);
    assert_eq!(one(&mut t, r).severity, Some(Severity::Info));
    let r = one(&mut t, line(r#"{"level": 3}"#));
    assert_eq!(r.severity, None);
}

#[test]
fn config_errors_name_the_key() {
    assert_eq!(
        problems("format = \"regex\"\npattern = '(?P<x>[a-'"),
        [problem(
            "pattern",
            "invalid regular expression \"(?P<x>[a-\": unclosed character class"
        )]
    );
    assert_eq!(
        problems("format = \"regex\"\npattern = '(\\d+) (.*)'"),
        [problem(
            "pattern",
            "\"(\\d+) (.*)\" has no named group such as (?P<name>...): nothing would be extracted"
        )]
    );
    assert_eq!(
        problems("format = \"regex\""),
        [problem(
            "pattern",
            "missing: format = \"regex\" needs a pattern with named groups, e.g. \"^(?P<level>\\\\w+) (?P<msg>.*)$\""
        )]
    );
    assert_eq!(
        problems("format = \"json\"\npattern = '(?P<x>.)'\ntarget = \"\""),
        [
            problem("pattern", "only for format = \"regex\""),
            problem("target", "expected a field name, got \"\"")
        ]
    );
    let e = toml::from_str::<Config>("format = \"xml\"").unwrap_err();
    assert!(
        e.message()
            .starts_with("unknown variant `xml`, expected one of `json`, `logfmt`, `regex`"),
        "{}",
        e.message()
    );
}

// ---- logfmt properties ----------------------------------------------------

/// logfmt text for `pairs`, written independently of the parser: values
/// quoted when they must be, escapes as go-logfmt writes them.
fn encode_logfmt(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let bare = !v.is_empty()
                && !v
                    .chars()
                    .any(|c| c == ' ' || c == '\t' || c == '"' || c == '\\' || c.is_control());
            if bare {
                format!("{k}={v}")
            } else {
                let mut q = String::from("\"");
                for c in v.chars() {
                    match c {
                        '"' => q.push_str("\\\""),
                        '\\' => q.push_str("\\\\"),
                        '\n' => q.push_str("\\n"),
                        '\r' => q.push_str("\\r"),
                        '\t' => q.push_str("\\t"),
                        c if c.is_control() => q.push_str(&format!("\\u{:04x}", u32::from(c))),
                        c => q.push(c),
                    }
                }
                q.push('"');
                format!("{k}={q}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

proptest! {
    #[test]
    fn logfmt_round_trips_any_pairs(
        pairs in proptest::collection::vec(
            ("[a-zA-Z_][a-zA-Z0-9_.-]{0,8}", any::<String>()),
            1..6,
        )
    ) {
        let text = encode_logfmt(&pairs);
        let mut want = Map::new();
        for (k, v) in &pairs {
            want.insert(k.clone(), Value::String(v.clone()));
        }
        prop_assert_eq!(logfmt::parse(&text), Ok(want), "{}", text);
    }

    #[test]
    fn logfmt_never_panics_on_any_text(s in any::<String>()) {
        let _ = logfmt::parse(&s);
    }

    #[test]
    fn logfmt_never_panics_on_quote_and_escape_heavy_text(s in "[a=\" \\\\u0-9nrt]{0,40}") {
        let _ = logfmt::parse(&s);
    }
}

// ---- In a config ----------------------------------------------------------

fn load(text: &str) -> Result<crate::config::Loaded, Vec<String>> {
    crate::config::load_for_test(text, |_| None)
}

const PIPELINE: &str = r#"
[sources.syslog]
type = "syslog"
address = "udp://127.0.0.1:5514"

[sources.syslog_tcp]
type = "syslog"
address = "tcp://127.0.0.1:5514"

[transforms.app_json]
type = "parse"
inputs = ["syslog", "syslog_tcp"]
format = "json"

[transforms.event_time]
type = "timestamp"
inputs = ["app_json"]
field = "time"
formats = ["rfc3339"]

[transforms.canonical]
type = "map_fields"
inputs = ["event_time"]
rename = { statusCode = "http.status_code" }

[sinks.out]
type = "console"
inputs = ["canonical"]
"#;

#[test]
fn a_syslog_parse_timestamp_map_fields_pipeline_loads_and_udp_and_tcp_share_a_port_number() {
    let loaded = load(PIPELINE).unwrap();
    let types: Vec<&str> = loaded.components.iter().map(|c| c.type_name()).collect();
    assert_eq!(
        types,
        [
            "syslog",
            "syslog",
            "parse",
            "timestamp",
            "map_fields",
            "console"
        ]
    );
}

#[test]
fn a_bad_pattern_and_a_bad_format_are_config_errors_with_file_and_key_path() {
    let text = PIPELINE
        .replace(
            "format = \"json\"",
            "format = \"regex\"\npattern = \"(?P<level>\\\\w+\"",
        )
        .replace(
            "formats = [\"rfc3339\"]",
            "formats = [\"rfc3339\", \"unix\", \"%Y-%m-%d %Q%\"]",
        );
    let errors = load(&text).unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(
        errors[0],
        "edge.toml: transforms.app_json.pattern: invalid regular expression \"(?P<level>\\w+\": unclosed group"
    );
    assert!(
        errors[1].starts_with(
            "edge.toml: transforms.event_time.formats[2]: invalid strftime format \"%Y-%m-%d %Q%\": "
        ),
        "{}",
        errors[1]
    );
}

#[test]
fn two_syslog_sources_on_one_tcp_port_are_refused() {
    let text = PIPELINE.replace("udp://127.0.0.1:5514", "tcp://127.0.0.1:5514");
    let errors = load(&text).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("port 127.0.0.1:5514 is already claimed by component \"syslog"),
        "{}",
        errors[0]
    );
}
