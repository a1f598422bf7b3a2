//! The linter's tests: exact findings for each rule, limits, and
//! properties over arbitrary input.

#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn lines(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn lint(format: Format, input: &str) -> Report {
    lint_bytes(input.as_bytes(), LintOptions::new(format))
}

/// Findings as `(line, column, code, message)`.
fn findings(report: &Report) -> Vec<(usize, usize, &'static str, String)> {
    report
        .findings
        .iter()
        .map(|f| (f.line, f.column, f.code, f.message.clone()))
        .collect()
}

fn codes(report: &Report) -> Vec<(usize, &'static str)> {
    report.findings.iter().map(|f| (f.line, f.code)).collect()
}

#[test]
fn a_clean_text_exposition_has_no_findings() {
    let input = lines(&[
        "# HELP http_requests_total Requests served.",
        "# TYPE http_requests_total counter",
        "http_requests_total{code=\"200\"} 10",
        "http_requests_total{code=\"500\"} 1",
        "# HELP request_duration_seconds How long requests take.",
        "# TYPE request_duration_seconds histogram",
        "request_duration_seconds_bucket{le=\"0.1\"} 1",
        "request_duration_seconds_bucket{le=\"+Inf\"} 2",
        "request_duration_seconds_sum 0.3",
        "request_duration_seconds_count 2",
    ]);
    let report = lint(Format::Text, &input);
    assert_eq!(findings(&report), vec![]);
    assert_eq!(report.exit_code(), 0);
    assert_eq!((report.lines, report.samples), (10, 6));
}

#[test]
fn a_clean_openmetrics_exposition_has_no_findings() {
    let input = lines(&[
        "# TYPE device_temperature_celsius gauge",
        "# UNIT device_temperature_celsius celsius",
        "# HELP device_temperature_celsius Board temperature.",
        "device_temperature_celsius{sensor=\"cpu\"} 41.5",
        "# TYPE uplink_packets counter",
        "# HELP uplink_packets Packets sent upstream.",
        "uplink_packets_total 17 # {trace_id=\"abc\"} 1 1700000000.5",
        "uplink_packets_created 1700000000",
        "# EOF",
    ]);
    let report = lint(Format::OpenMetrics, &input);
    assert_eq!(findings(&report), vec![]);
    assert_eq!(report.exit_code(), 0);
}

#[test]
fn promtool_rules_give_promtool_messages_at_the_family_line() {
    let input = lines(&[
        "# HELP foo_count x",
        "# TYPE foo_count counter",
        "foo_count 1",
        "# TYPE bar_total gauge",
        "bar_total{le=\"1\",quantile=\"2\"} 3",
        "# HELP http_latency_milliseconds x",
        "# TYPE http_latency_milliseconds gauge",
        "http_latency_milliseconds 1",
        "# HELP fooBar_ms x",
        "# TYPE fooBar_ms gauge",
        "fooBar_ms{myLabel=\"a\"} 1",
        "# HELP a:b_gauge x",
        "# TYPE a:b_gauge gauge",
        "a:b_gauge 1",
    ]);
    let report = lint(Format::Text, &input);
    let s = |m: &str| m.to_string();
    assert_eq!(
        findings(&report),
        vec![
            (
                1,
                8,
                "counter-total-suffix",
                s("counter metrics should have \"_total\" suffix")
            ),
            (
                1,
                8,
                "reserved-suffix",
                s("non-histogram and non-summary metrics should not have \"_count\" suffix")
            ),
            (4, 8, "no-help", s("no help text")),
            (
                4,
                8,
                "total-suffix-non-counter",
                s("non-counter metrics should not have \"_total\" suffix")
            ),
            (
                5,
                11,
                "reserved-label",
                s("non-histogram metrics should not have \"le\" label")
            ),
            (
                5,
                18,
                "reserved-label",
                s("non-summary metrics should not have \"quantile\" label")
            ),
            (
                6,
                8,
                "non-base-unit",
                s("use base unit \"seconds\" instead of \"milliseconds\"")
            ),
            (
                9,
                8,
                "camel-case",
                s("metric names should be written in 'snake_case' not 'camelCase'")
            ),
            (
                9,
                8,
                "unit-abbreviation",
                s("metric names should not contain abbreviated units")
            ),
            (
                11,
                11,
                "camel-case",
                s("label names should be written in 'snake_case' not 'camelCase'")
            ),
            (
                12,
                8,
                "type-in-name",
                s("metric name should not include type 'gauge'")
            ),
            (
                12,
                8,
                "colon-in-name",
                s("metric names should not contain ':'")
            ),
        ]
    );
    assert_eq!(report.exit_code(), 1);
    assert_eq!((report.errors, report.warnings), (0, 12));
}

#[test]
fn a_family_without_type_or_help_is_flagged_once_at_its_first_sample() {
    let report = lint(Format::Text, &lines(&["up 1", "up{job=\"a\"} 1"]));
    assert_eq!(
        findings(&report),
        vec![
            (1, 1, "no-help", "no help text".to_string()),
            (
                1,
                1,
                "no-type",
                "no TYPE line; the family is untyped".to_string()
            ),
        ]
    );
}

#[test]
fn grammar_errors_have_their_line_and_column_and_exit_code_2() {
    let input = lines(&["# TYPE a gauge", "a{x=\"1\" 2", "a 1 2 3"]);
    let report = lint(Format::Text, &input);
    assert_eq!(
        findings(&report)[..2],
        [
            (
                2,
                9,
                "syntax",
                "expected ',' or '}' after the value of label \"x\"".to_string()
            ),
            (
                3,
                7,
                "syntax",
                "unexpected text after the timestamp".to_string()
            ),
        ]
    );
    assert_eq!(report.exit_code(), 2);
}

#[test]
fn openmetrics_needs_eof_single_spaces_and_no_blank_lines() {
    let input = lines(&["# TYPE a gauge", "", "a  1"]);
    let report = lint(Format::OpenMetrics, &input);
    assert_eq!(
        findings(&report),
        vec![
            (
                2,
                1,
                "syntax",
                "blank lines are not allowed in OpenMetrics".to_string()
            ),
            (3, 3, "syntax", "expected a value".to_string()),
            (
                4,
                1,
                "missing-eof",
                "expected '# EOF' at the end of the exposition".to_string()
            ),
        ]
    );
}

#[test]
fn openmetrics_samples_carry_the_suffix_their_type_requires() {
    let input = lines(&[
        "# TYPE c counter",
        "# HELP c x",
        "c 1",
        "# TYPE h histogram",
        "# HELP h x",
        "h_bucket 1",
        "h 2",
        "# EOF",
    ]);
    let report = lint(Format::OpenMetrics, &input);
    assert_eq!(
        codes(&report),
        vec![
            (3, "sample-suffix"),
            (6, "missing-le"),
            (7, "sample-suffix")
        ]
    );
    assert_eq!(
        report.findings[0].message,
        "a sample of the counter \"c\" must be named with _total or _created after the family name"
    );
}

#[test]
fn interleaved_families_are_an_error_in_openmetrics_and_a_warning_in_text() {
    let body = [
        "# HELP a x",
        "# TYPE a gauge",
        "# HELP b x",
        "# TYPE b gauge",
        "a 1",
        "b 1",
        "a{x=\"1\"} 2",
    ];
    let text = lint(Format::Text, &lines(&body));
    assert_eq!(codes(&text), vec![(7, "interleaved-family")]);
    assert_eq!(text.exit_code(), 1);
    let mut om = body.to_vec();
    om.push("# EOF");
    let om = lint(Format::OpenMetrics, &lines(&om));
    assert_eq!(codes(&om), vec![(7, "interleaved-family")]);
    assert_eq!(om.findings[0].severity, Severity::Error);
    assert_eq!(
        om.findings[0].message,
        "samples of \"a\" after those of another family: OpenMetrics does not allow interleaved families"
    );
}

#[test]
fn duplicate_series_are_flagged_where_they_repeat() {
    let input = lines(&[
        "# HELP a x",
        "# TYPE a gauge",
        "a{x=\"1\",y=\"2\"} 1",
        "a{y=\"2\",x=\"1\"} 2",
        "a{x=\"2\"} 3",
    ]);
    let report = lint(Format::Text, &input);
    assert_eq!(
        findings(&report),
        vec![(
            4,
            1,
            "duplicate-series",
            "duplicate series a{x=\"1\",y=\"2\"}".to_string()
        )]
    );
}

#[test]
fn a_label_with_more_values_than_the_threshold_is_flagged_once() {
    let mut body = vec!["# HELP a x".to_string(), "# TYPE a gauge".to_string()];
    for i in 0..5 {
        body.push(format!("a{{device=\"d{i}\",site=\"s\"}} 1"));
    }
    let mut options = LintOptions::new(Format::Text);
    options.max_label_values = 3;
    let report = lint_bytes(
        lines(&body.iter().map(String::as_str).collect::<Vec<_>>()).as_bytes(),
        options,
    );
    assert_eq!(
        findings(&report),
        vec![(
            6,
            3,
            "high-cardinality",
            "label \"device\" has more than 3 distinct values in this family".to_string()
        )]
    );
}

#[test]
fn reserved_label_names_are_flagged() {
    let input = lines(&["# HELP a x", "# TYPE a gauge", "a{__meta=\"1\"} 1"]);
    assert_eq!(
        findings(&lint(Format::Text, &input)),
        vec![(
            3,
            3,
            "internal-label-name",
            "label name \"__meta\" starts with \"__\", which is reserved for internal use"
                .to_string()
        )]
    );
}

#[test]
fn openmetrics_names_with_a_unit_suffix_want_a_unit_line() {
    let input = lines(&[
        "# TYPE up_seconds gauge",
        "# HELP up_seconds x",
        "up_seconds 1",
        "# EOF",
    ]);
    assert_eq!(
        findings(&lint(Format::OpenMetrics, &input)),
        vec![(
            1,
            8,
            "unit-missing",
            "the name ends in the unit \"seconds\" but the family has no UNIT line".to_string()
        )]
    );
    // A unit that is not the name's suffix is a grammar error.
    let input = lines(&[
        "# TYPE up_seconds gauge",
        "# UNIT up_seconds bytes",
        "# EOF",
    ]);
    assert_eq!(
        codes(&lint(Format::OpenMetrics, &input)),
        vec![(2, "syntax")]
    );
}

#[test]
fn a_body_that_is_not_text_is_an_error_with_its_column() {
    let report = lint_bytes(
        b"up 1\nab\xff\xfe\x00\n\x00\x01\x02\n",
        LintOptions::new(Format::Text),
    );
    assert_eq!(
        findings(&report),
        [
            (1, 1, "no-help", "no help text".to_string()),
            (
                1,
                1,
                "no-type",
                "no TYPE line; the family is untyped".to_string()
            ),
            (
                2,
                3,
                "not-utf8",
                "invalid UTF-8: the exposition must be UTF-8 text".to_string()
            ),
            (
                3,
                1,
                "not-text",
                "NUL byte: the exposition must be text".to_string()
            ),
        ]
    );
    assert_eq!(report.exit_code(), 2);
}

#[test]
fn a_line_longer_than_the_limit_is_skipped_and_the_next_one_is_read() {
    let mut input = vec![b'a'; MAX_LINE_BYTES + 10];
    input.extend_from_slice(b"\n# HELP b x\n# TYPE b gauge\nb 1\n");
    let mut linter = Linter::new(LintOptions::new(Format::Text));
    for chunk in input.chunks(4096) {
        linter.feed(chunk);
    }
    let report = linter.finish();
    assert_eq!(
        findings(&report),
        vec![(
            1,
            1,
            "line-too-long",
            format!("line longer than {MAX_LINE_BYTES} bytes; skipped")
        )]
    );
    assert_eq!((report.lines, report.samples), (4, 1));
}

#[test]
fn past_the_limits_findings_are_counted_and_notes_say_what_stopped() {
    let mut body = String::new();
    for i in 0..20 {
        body.push_str(&format!("m{i} 1\nm{i} 1\n"));
    }
    for i in 0..6 {
        body.push_str(&format!("m0{{a=\"{i}\"}} 1\n"));
    }
    let mut options = LintOptions::new(Format::Text);
    options.limits = Limits {
        max_families: 5,
        max_series: 3,
        max_findings: 6,
    };
    let report = lint_bytes(body.as_bytes(), options);
    // Five families each with no-help and no-type and a duplicate; m0 again
    // later: interleaved, and its series set full at the third.
    assert_eq!((report.errors, report.warnings), (0, 16));
    // Six kept, and the two notes, one for each limit, always kept.
    assert_eq!(report.findings.len(), 8);
    assert_eq!(report.findings_not_kept, 10);
    assert_eq!(report.families.len(), 5);
    assert_eq!(report.samples, 46);
    let notes: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Note)
        .map(|f| (f.line, f.message.as_str()))
        .collect();
    assert_eq!(
        notes,
        vec![
            (
                11,
                "more than 5 families: later families are checked for grammar only"
            ),
            (
                43,
                "more than 3 series in family \"m0\": duplicates of its later series are not looked for"
            ),
        ]
    );
}

#[test]
fn descriptors_give_name_description_unit_type_and_class() {
    let input = lines(&[
        "# TYPE device_uptime_seconds counter",
        "# UNIT device_uptime_seconds seconds",
        "# HELP device_uptime_seconds Seconds since boot \\\"ok\\\".",
        "device_uptime_seconds_total 5",
        "# TYPE radio_rssi gauge",
        "# HELP radio_rssi Signal.",
        "radio_rssi{peer=\"a\"} -70",
        "radio_rssi{peer=\"b\"} -71",
        "# TYPE soil_moisture_ratio gauge",
        "# HELP soil_moisture_ratio Moisture.",
        "soil_moisture_ratio 0.3",
        "# TYPE queue_depth gauge",
        "# HELP queue_depth Depth.",
        "queue_depth 0",
        "# EOF",
    ]);
    let report = lint(Format::OpenMetrics, &input);
    let got: Vec<_> = report
        .families
        .iter()
        .map(|f| {
            (
                f.name.as_str(),
                f.description.as_deref(),
                f.unit.as_deref(),
                f.kind,
                f.class.as_str(),
                f.samples,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "device_uptime_seconds",
                Some("Seconds since boot \"ok\"."),
                Some("seconds"),
                MetricType::Counter,
                "device",
                1
            ),
            (
                "radio_rssi",
                Some("Signal."),
                None,
                MetricType::Gauge,
                "network",
                2
            ),
            (
                "soil_moisture_ratio",
                Some("Moisture."),
                None,
                MetricType::Gauge,
                "sensor",
                1
            ),
            (
                "queue_depth",
                Some("Depth."),
                None,
                MetricType::Gauge,
                "application",
                1
            ),
        ]
    );
    let json = report.to_json("x.om");
    assert_eq!(json["families"][1]["class"], "network");
    assert_eq!(json["summary"]["exit_code"], 1);
    assert_eq!(json["findings"][0]["code"], "unit-missing");
}

#[test]
fn globs_match_prefixes_suffixes_and_substrings() {
    assert!(glob_matches("device_*", "device_uptime"));
    assert!(!glob_matches("device_*", "my_device_uptime"));
    assert!(glob_matches("*_celsius", "temp_celsius"));
    assert!(!glob_matches("*_celsius", "temp_celsius_max"));
    assert!(glob_matches("*rssi*", "rssi"));
    assert!(glob_matches("a*b*c", "abc"));
    assert!(!glob_matches("a*b*c", "acb"));
    assert!(glob_matches("exact", "exact"));
    assert!(!glob_matches("exact", "exactly"));
    assert!(!glob_matches("ab*ba", "aba"));
}

#[test]
fn classes_from_rules_are_tried_in_order_with_a_fallback() {
    let classes = SignalClasses::new(
        vec![
            ("power".into(), vec!["*_volts".into(), "battery_*".into()]),
            ("device".into(), vec!["*".into()]),
        ],
        "other".into(),
    );
    assert_eq!(classes.classify("battery_volts"), "power");
    assert_eq!(classes.classify("queue_depth"), "device");
    let none = SignalClasses::new(Vec::new(), "other".into());
    assert_eq!(none.classify("x"), "other");
}

fn report_key(r: &Report) -> (Vec<Finding>, Vec<FamilyDescriptor>, u64, u64, usize, u64) {
    (
        r.findings.clone(),
        r.families.clone(),
        r.errors,
        r.warnings,
        r.lines,
        r.samples,
    )
}

/// Bytes that look like expositions often enough to reach the rules.
fn exposition_bytes() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just("# HELP a_total x".to_string()),
        Just("# TYPE a counter".to_string()),
        Just("# TYPE a_total counter".to_string()),
        Just("# UNIT a_seconds seconds".to_string()),
        Just("# EOF".to_string()),
        "[a-z_]{1,6}(\\{[a-z]{1,3}=\"[a-z0-9]{0,3}\"\\})? [0-9]{1,3}",
        "[ -~]{0,20}",
    ];
    prop_oneof![
        proptest::collection::vec(line, 0..30).prop_map(|l| l.join("\n").into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

proptest! {
    #[test]
    fn any_bytes_lint_without_panicking_however_they_are_cut(
        input in exposition_bytes(),
        cut in 1usize..64,
        openmetrics in any::<bool>(),
    ) {
        let format = if openmetrics { Format::OpenMetrics } else { Format::Text };
        let whole = lint_bytes(&input, LintOptions::new(format));
        let mut linter = Linter::new(LintOptions::new(format));
        for chunk in input.chunks(cut) {
            linter.feed(chunk);
        }
        let cut_up = linter.finish();
        prop_assert_eq!(report_key(&whole), report_key(&cut_up));
        prop_assert_eq!(whole.bytes, input.len() as u64);
        for f in &whole.findings {
            prop_assert!(f.line >= 1 && f.column >= 1);
            prop_assert!(f.line <= whole.lines + 1);
        }
        let expected = if whole.errors > 0 { 2 } else { u8::from(whole.warnings > 0) };
        prop_assert_eq!(whole.exit_code(), expected);
    }
}

#[test]
fn escapes_the_formats_do_not_have_are_grammar_errors() {
    let input = lines(&[
        "# HELP a x \\\"y\\\"",
        "# TYPE a gauge",
        "a{b=\"x\\ay\"} 1",
        "a{b=\"ok \\\\ \\\" \\n\"} 2",
    ]);
    let s = |m: &str| m.to_string();
    assert_eq!(
        findings(&lint(Format::Text, &input)),
        vec![
            (
                1,
                12,
                "syntax",
                s("invalid escape sequence '\\\"' in HELP: only \\\\ and \\n are allowed")
            ),
            (
                3,
                7,
                "syntax",
                s(
                    "invalid escape sequence '\\a' in a label value: only \\\\, \\\" and \\n are allowed"
                )
            ),
        ]
    );
    let mut om: Vec<&str> = input.lines().collect();
    om.push("# EOF");
    // OpenMetrics allows `\"` in HELP.
    assert_eq!(
        codes(&lint(Format::OpenMetrics, &lines(&om))),
        vec![(3, "syntax")]
    );
}

#[test]
fn text_lines_with_what_prometheus_text_parser_rejects_are_grammar_errors() {
    let input =
        "# HELP a x\n# TYPE a gauge \na 1 \na{b=\"1\"} 2\r\n# TYPE i info\n# HELP i x\ni 1\n";
    let s = |m: &str| m.to_string();
    assert_eq!(
        findings(&lint(Format::Text, input)),
        vec![
            (
                2,
                15,
                "syntax",
                s("blanks after the metric type: not allowed in text format")
            ),
            (
                3,
                4,
                "syntax",
                s("blanks after the sample's value or timestamp: not allowed in text format")
            ),
            (
                4,
                11,
                "syntax",
                s("carriage return before the newline: text format lines end with \\n")
            ),
            (
                5,
                10,
                "syntax",
                s(
                    "unknown metric type \"info\" in text format 0.0.4: expected counter, gauge, histogram, summary or untyped"
                )
            ),
        ]
    );
}

#[test]
fn in_text_a_counter_sample_named_apart_from_its_type_line_is_a_family_of_its_own() {
    // As Prometheus' text parser reads it: `foo` has no samples, and
    // `foo_total` has neither HELP nor TYPE.
    let input = lines(&["# HELP foo x", "# TYPE foo counter", "foo_total 1"]);
    let report = lint(Format::Text, &input);
    assert_eq!(
        findings(&report),
        vec![
            (3, 1, "no-help", "no help text".to_string()),
            (
                3,
                1,
                "no-type",
                "no TYPE line; the family is untyped".to_string()
            ),
        ]
    );
    assert_eq!(report.families[1].name, "foo_total");
    assert_eq!(report.families[1].kind, MetricType::Unknown);
}

#[test]
fn past_the_family_limit_grammar_is_still_checked_and_eof_still_known() {
    // 150,000 families, the limit at ten: the parser forgets its families
    // every 20,000 lines, and nothing spurious comes of it.
    let mut body = String::new();
    for i in 0..150_000 {
        body.push_str(&format!("# TYPE f{i} gauge\nf{i} 1\n"));
    }
    body.push_str("bad line\n# EOF\n");
    let mut options = LintOptions::new(Format::OpenMetrics);
    options.limits.max_families = 10;
    let report = lint_bytes(body.as_bytes(), options);
    let not_conventions: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Warning)
        .map(|f| (f.line, f.code))
        .collect();
    assert_eq!(not_conventions, vec![(21, "limit"), (300_001, "syntax")]);
    assert_eq!(report.families.len(), 10);
    assert_eq!(report.samples, 150_000);
    // And after `# EOF`, whatever the resets: past the limit, then `# EOF`,
    // then more lines than the parser's reset interval.
    let mut options = LintOptions::new(Format::OpenMetrics);
    options.limits.max_families = 10;
    let mut body = String::new();
    for i in 0..20 {
        body.push_str(&format!("# TYPE f{i} gauge\nf{i} 1\n"));
    }
    body.push_str("# EOF\n");
    for i in 0..110_000 {
        body.push_str(&format!("g{i} 1\n"));
    }
    let report = lint_bytes(body.as_bytes(), options);
    let codes: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Warning)
        .map(|f| (f.line, f.code, f.message.as_str()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (
                21,
                "limit",
                "more than 10 families: later families are checked for grammar only"
            ),
            (42, "syntax", "unexpected content after '# EOF'"),
        ]
    );
}
