use super::selector::{self, FilterOp, MatchOp, Selector};
use super::*;
use iotel_model::{Labels, LogRecord};
use proptest::prelude::*;

fn record(labels: &[(&str, &str)], message: &str) -> LogRecord {
    let mut r = LogRecord::new(1_700_000_000_000_000_000, message);
    r.labels = Labels::from_pairs(labels.iter().copied());
    r
}

fn matches(src: &str, labels: &[(&str, &str)], message: &str) -> bool {
    let s = selector::compile(src).unwrap();
    s.matches_labels(&Labels::from_pairs(labels.iter().copied())) && s.matches_line(message)
}

fn error(src: &str) -> String {
    selector::compile(src).unwrap_err().to_string()
}

fn config(text: &str) -> Config {
    toml::from_str(text).unwrap()
}

/// Runs one batch through a filter built from `text`; returns the messages
/// that passed and the count of records discarded as `filtered`.
fn run(text: &str, records: Vec<LogRecord>) -> (Vec<String>, u64) {
    let cfg = config(text);
    assert_eq!(cfg.validate(), vec![], "{text}");
    let cx = BuildContext::for_test("f");
    let mut f = cfg.build(&cx).unwrap();
    let mut out = Vec::new();
    f.transform(Events::Logs(records), &mut out);
    let kept = out
        .into_iter()
        .flat_map(|e| match e {
            Events::Logs(v) => v,
            other => panic!("unexpected {other:?}"),
        })
        .map(|r| r.message)
        .collect();
    (kept, cx.metrics.discards("filtered").get())
}

#[test]
fn the_issue_example_keeps_errors_of_the_app_but_not_healthchecks() {
    let src = r#"{job="edge-app"} |~ "ERROR|panic" != "healthcheck""#;
    let app = [("job", "edge-app")];
    assert!(matches(src, &app, "12:00 ERROR disk full"));
    assert!(matches(src, &app, "thread main panic: oops"));
    assert!(!matches(src, &app, "ERROR healthcheck failed"));
    assert!(!matches(src, &app, "INFO all good"));
    assert!(!matches(src, &[("job", "other")], "ERROR disk full"));
    assert!(!matches(src, &[], "ERROR disk full"));
}

#[test]
fn label_matchers_follow_prometheus_semantics_with_anchored_regexes() {
    let l = [("job", "edge-app"), ("env", "prod")];
    assert!(matches(r#"{job="edge-app"}"#, &l, ""));
    assert!(!matches(r#"{job="edge"}"#, &l, ""));
    assert!(matches(r#"{job!="edge"}"#, &l, ""));
    assert!(matches(r#"{job=~"edge.*"}"#, &l, ""));
    assert!(!matches(r#"{job=~"edge"}"#, &l, ""), "anchored at the end");
    assert!(!matches(r#"{job=~"app"}"#, &l, ""), "anchored at the start");
    assert!(matches(r#"{job=~"edge-app|cloud"}"#, &l, ""));
    assert!(!matches(r#"{job=~"edge|cloud"}"#, &l, ""));
    assert!(matches(r#"{job!~"cloud.*", env="prod"}"#, &l, ""));
    assert!(!matches(r#"{job!~"edge.*"}"#, &l, ""));
    // A missing label reads as "".
    assert!(matches(r#"{region!="eu"}"#, &l, ""));
    assert!(matches(r#"{region=""}"#, &l, ""));
    assert!(!matches(r#"{job=""}"#, &l, ""));
    assert!(matches(r#"{region=~".*"}"#, &l, ""));
    assert!(!matches(r#"{region=~".+"}"#, &l, ""));
    // Case-insensitive regexes fold ASCII.
    assert!(matches(r#"{job=~"(?i)EDGE-.*"}"#, &l, ""));
}

#[test]
fn label_matchers_look_at_labels_not_fields() {
    let mut r = record(&[], "x");
    r.fields.insert("job".into(), "edge-app".into());
    let (kept, dropped) = run(r#"selector = '{job="edge-app"}'"#, vec![r]);
    assert_eq!((kept.len(), dropped), (0, 1));
}

#[test]
fn line_filters_all_hold_and_regexes_are_not_anchored() {
    let l: [(&str, &str); 0] = [];
    assert!(matches(r#"{} |= "disk""#, &l, "the disk is full"));
    assert!(!matches(r#"{} |= "Disk""#, &l, "the disk is full"));
    assert!(matches(r#"{} != "disk""#, &l, "all good"));
    assert!(matches(r#"{} |~ "d.sk""#, &l, "the disk is full"));
    assert!(matches(r#"{} |~ "(?i)DISK""#, &l, "the disk is full"));
    assert!(!matches(r#"{} !~ "d.sk""#, &l, "the disk is full"));
    assert!(matches(r#"{} |= "disk" |= "full""#, &l, "the disk is full"));
    assert!(!matches(
        r#"{} |= "disk" |= "empty""#,
        &l,
        "the disk is full"
    ));
    assert!(matches(r#"{} |= """#, &l, "anything"));
    assert!(!matches(r#"{} != """#, &l, "anything"));
    assert!(matches(r#"{} |~ "^the""#, &l, "the disk"));
    assert!(!matches(r#"{} |~ "^disk""#, &l, "the disk"));
}

#[test]
fn an_empty_selector_matches_every_record() {
    assert!(matches("{}", &[], ""));
    assert!(matches(" { } ", &[("a", "b")], "x"));
}

#[test]
fn strings_take_go_escapes_and_backtick_raw_strings() {
    let s =
        Selector::parse(r#"{a="q\"b\\s\n\t\x41\101\u00e9\U0001F600", b=`raw\d+`} |~ `\d+` |= "é""#)
            .unwrap();
    assert_eq!(s.matchers[0].value, "q\"b\\s\n\tAAé😀");
    assert_eq!(s.matchers[1].value, "raw\\d+");
    assert_eq!(s.filters[0].value, "\\d+");
    assert_eq!(s.filters[1].value, "é");
    assert!(matches(r#"{} |~ `\d{3}`"#, &[], "code 503"));
    assert!(matches(r#"{} |~ "\\d{3}""#, &[], "code 503"));
}

#[test]
fn whitespace_comments_and_a_trailing_comma_are_allowed() {
    let s =
        Selector::parse("\n{ job = \"a\" ,\n env=\"b\", } # only these\n |= \"x\" # and this\n")
            .unwrap();
    assert_eq!(s.to_string(), r#"{job="a", env="b"} |= "x""#);
}

#[test]
fn the_parsed_selector_is_what_was_written() {
    let s =
        Selector::parse(r#"{job="a",env!="b",x=~"c",y!~"d"} |= "1" != "2" |~ "3" !~ "4""#).unwrap();
    let m: Vec<_> = s
        .matchers
        .iter()
        .map(|m| (m.name.as_str(), m.op, m.value.as_str(), m.column))
        .collect();
    assert_eq!(
        m,
        [
            ("job", MatchOp::Equal, "a", 6),
            ("env", MatchOp::NotEqual, "b", 15),
            ("x", MatchOp::Regex, "c", 22),
            ("y", MatchOp::NotRegex, "d", 29),
        ]
    );
    let f: Vec<_> = s.filters.iter().map(|f| (f.op, f.value.as_str())).collect();
    assert_eq!(
        f,
        [
            (FilterOp::Contains, "1"),
            (FilterOp::NotContains, "2"),
            (FilterOp::Regex, "3"),
            (FilterOp::NotRegex, "4"),
        ]
    );
}

#[test]
fn unsupported_logql_is_refused_with_its_column() {
    let cases = [
        (
            r#"{job="edge-app"} |= "x" | json"#,
            r#"column 25: "| json" is not supported: only line filters (|=, !=, |~, !~) may follow the stream selector"#,
        ),
        (
            r#"{job="a"} | level="error""#,
            r#"column 11: "| level" is not supported: only line filters (|=, !=, |~, !~) may follow the stream selector"#,
        ),
        (
            r#"{job="a"} | line_format "{{.msg}}""#,
            r#"column 11: "| line_format" is not supported: only line filters (|=, !=, |~, !~) may follow the stream selector"#,
        ),
        (
            r#"{job="a"} |> "<_> error <_>""#,
            r#"column 11: "|>" is not supported: pattern filters are not; only line filters (|=, !=, |~, !~) may follow the stream selector"#,
        ),
        (
            r#"{job="a"} |= "x" or "y""#,
            r#"column 18: "or" is not supported between line filter strings: use one regex filter instead, such as |~ "a|b""#,
        ),
        (
            r#"{job="a"} |= ip("10.0.0.0/8")"#,
            r#"column 14: expected a string in "double quotes" or `backticks` after |=, found "ip(", which is not supported"#,
        ),
        (
            r#"rate({job="a"}[5m])"#,
            r#"column 1: "rate(" is not supported: metric queries are not; expected a log stream selector such as {job="app"}"#,
        ),
        (
            r#"sum by (job) (count_over_time({job="a"}[1m]))"#,
            r#"column 1: "sum" is not supported: metric queries are not; expected a log stream selector such as {job="app"}"#,
        ),
    ];
    for (src, want) in cases {
        assert_eq!(error(src), want, "{src}");
    }
}

#[test]
fn syntax_errors_name_the_column_and_what_was_found() {
    let cases = [
        (
            "",
            r#"column 1: expected a stream selector such as {job="app"}, found the end of the selector"#,
        ),
        (
            "   ",
            r#"column 4: expected a stream selector such as {job="app"}, found the end of the selector"#,
        ),
        (
            r#"|= "x""#,
            r#"column 1: expected a stream selector such as {job="app"}, found "|=""#,
        ),
        (
            r#"{job="a""#,
            r#"column 9: expected "," or "}" after a label matcher, found the end of the selector"#,
        ),
        (
            r#"{job="a" env="b"}"#,
            r#"column 10: expected "," or "}" after a label matcher, found "env""#,
        ),
        (
            r#"{9job="a"}"#,
            r#"column 2: expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) or "}", found "9job=""#,
        ),
        (
            r#"{job=="a"}"#,
            r#"column 6: expected a string in "double quotes" or `backticks` after job=, found "=""#,
        ),
        (
            r#"{job:"a"}"#,
            r#"column 5: expected =, !=, =~ or !~ after label name "job", found ":""#,
        ),
        (
            r#"{job='a'}"#,
            r#"column 6: single-quoted strings are not supported: expected a string in "double quotes" or `backticks`"#,
        ),
        (
            r#"{job="a}"#,
            r#"column 6: unterminated string: no closing ""#,
        ),
        (
            "{job=`a}",
            "column 6: unterminated `raw string`: no closing backtick",
        ),
        (
            r#"{job="a\qb"}"#,
            r#"column 8: invalid escape "\\q" in string (expected \a \b \f \n \r \t \v \\ \" \xhh \ooo \uhhhh or \Uhhhhhhhh)"#,
        ),
        (
            r#"{job="a\x4"}"#,
            r#"column 8: invalid escape in string: \x takes 2 hex digits"#,
        ),
        (
            r#"{job="\xff"}"#,
            r#"column 6: string is not valid UTF-8 after its \x or octal escapes are applied"#,
        ),
        (
            "{job=\"a\nb\"}",
            r#"column 8: newline in string: write \n, or use a `raw string` in backticks"#,
        ),
        (
            r#"{job="a"} "x""#,
            r#"column 11: expected a line filter (|=, !=, |~, !~) or the end of the selector, found "\"x\"""#,
        ),
        (
            r#"{job="a"} |= "x" |="#,
            r#"column 20: expected a string in "double quotes" or `backticks` after |=, found the end of the selector"#,
        ),
    ];
    for (src, want) in cases {
        assert_eq!(error(src), want, "{src:?}");
    }
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_eq!(
        error(r#"{a="é€"} | json"#),
        r#"column 10: "| json" is not supported: only line filters (|=, !=, |~, !~) may follow the stream selector"#
    );
}

#[test]
fn a_regex_that_does_not_compile_is_named_with_its_column() {
    assert_eq!(
        error(r#"{job=~"edge-(app"}"#),
        r#"column 7: invalid regular expression "edge-(app": unclosed group at character 6 of the pattern"#
    );
    assert_eq!(
        error(r#"{job="a"} |~ "x[""#),
        r#"column 14: invalid regular expression "x[": unclosed character class at character 2 of the pattern"#
    );
}

#[test]
fn config_errors_name_the_selector_key() {
    let p = config(r#"selector = '{job="a"} | json'"#).validate();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].key, "selector");
    assert_eq!(
        p[0].message,
        r#"column 11: "| json" is not supported: only line filters (|=, !=, |~, !~) may follow the stream selector"#
    );
    let e = toml::from_str::<Config>(
        r#"selector = "{}"
action = "maybe""#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("unknown variant `maybe`, expected `keep` or `drop`"),
        "{e}"
    );
    assert!(toml::from_str::<Config>("action = \"keep\"").is_err());
}

#[test]
fn keep_passes_matches_and_counts_the_rest_as_filtered() {
    let batch = vec![
        record(&[("job", "edge-app")], "ERROR disk full"),
        record(&[("job", "edge-app")], "INFO ok"),
        record(&[("job", "edge-app")], "ERROR healthcheck"),
        record(&[("job", "other")], "ERROR disk full"),
        record(&[("job", "edge-app")], "panic: boom"),
    ];
    let (kept, filtered) = run(
        r#"selector = '{job="edge-app"} |~ "ERROR|panic" != "healthcheck"'"#,
        batch,
    );
    assert_eq!(kept, ["ERROR disk full", "panic: boom"]);
    assert_eq!(filtered, 3);
}

#[test]
fn drop_removes_matches_and_passes_the_rest() {
    let batch = vec![
        record(&[("job", "a")], "GET /healthz 200"),
        record(&[("job", "a")], "GET /api 500"),
        record(&[("job", "b")], "GET /healthz 200"),
    ];
    let (kept, filtered) = run(
        r#"selector = '{job="a"} |= "/healthz"'
action = "drop""#,
        batch,
    );
    assert_eq!(kept, ["GET /api 500", "GET /healthz 200"]);
    assert_eq!(filtered, 1);
}

#[test]
fn a_batch_filtered_away_entirely_emits_nothing_and_other_signals_pass() {
    let cfg = config(r#"selector = '{job="a"}'"#);
    let cx = BuildContext::for_test("f");
    let mut f = cfg.build(&cx).unwrap();
    let mut out = Vec::new();
    f.transform(Events::Logs(vec![record(&[], "x")]), &mut out);
    assert!(out.is_empty());
    f.transform(Events::Metrics(vec![]), &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn quote_escapes_what_the_parser_unescapes() {
    assert_eq!(selector::quote("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
}

fn matcher_strategy() -> impl Strategy<Value = (String, MatchOp, String)> {
    (
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}",
        prop_oneof![
            Just(MatchOp::Equal),
            Just(MatchOp::NotEqual),
            Just(MatchOp::Regex),
            Just(MatchOp::NotRegex),
        ],
        any::<String>(),
    )
}

fn filter_strategy() -> impl Strategy<Value = (FilterOp, String)> {
    (
        prop_oneof![
            Just(FilterOp::Contains),
            Just(FilterOp::NotContains),
            Just(FilterOp::Regex),
            Just(FilterOp::NotRegex),
        ],
        any::<String>(),
    )
}

/// What a selector says, without where it was written.
type Meaning = (Vec<(String, MatchOp, String)>, Vec<(FilterOp, String)>);

fn meaning(s: &Selector) -> Meaning {
    (
        s.matchers
            .iter()
            .map(|m| (m.name.clone(), m.op, m.value.clone()))
            .collect(),
        s.filters.iter().map(|f| (f.op, f.value.clone())).collect(),
    )
}

proptest! {
    #[test]
    fn the_parser_never_panics_on_arbitrary_text(src in any::<String>()) {
        let _ = selector::compile(&src);
    }

    #[test]
    fn the_parser_never_panics_on_selector_like_text(
        src in r#"[{}=!~|"`\\a-z0-9 ,#\n()\[\]<>.*é]{0,40}"#,
    ) {
        if let Err(e) = selector::compile(&src) {
            prop_assert!(e.column >= 1 && e.column <= src.chars().count() + 1, "{e} for {src:?}");
        }
    }

    #[test]
    fn a_printed_selector_parses_back_to_itself(
        matchers in proptest::collection::vec(matcher_strategy(), 0..4),
        filters in proptest::collection::vec(filter_strategy(), 0..4),
    ) {
        let s = Selector {
            matchers: matchers
                .into_iter()
                .map(|(name, op, value)| selector::LabelMatcher { name, op, value, column: 0 })
                .collect(),
            filters: filters
                .into_iter()
                .map(|(op, value)| selector::LineFilter { op, value, column: 0 })
                .collect(),
        };
        let printed = s.to_string();
        let parsed = Selector::parse(&printed);
        prop_assert!(parsed.is_ok(), "{printed}: {parsed:?}");
        prop_assert_eq!(meaning(&parsed.unwrap()), meaning(&s));
    }
}
