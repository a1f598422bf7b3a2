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
    let cx = BuildContext::for_test("ts");
    (cfg.build(&cx).unwrap(), cx)
}

fn ns(rfc3339: &str) -> i64 {
    i64::try_from(rfc3339.parse::<Timestamp>().unwrap().as_nanosecond()).unwrap()
}

/// A record received at 1970-01-01T00:00:00.000000042Z with `time = value`.
fn record(value: Value) -> LogRecord {
    let mut r = LogRecord::new(42, "m");
    r.fields.insert("time".into(), value);
    r
}

fn run(t: &mut Box<dyn Transform>, records: Vec<LogRecord>) -> Vec<LogRecord> {
    let mut out = Vec::new();
    t.transform(Events::Logs(records), &mut out);
    let [Events::Logs(logs)] = &out[..] else {
        panic!("expected one batch of logs, got {out:?}")
    };
    logs.clone()
}

fn times(t: &mut Box<dyn Transform>, values: Vec<Value>) -> Vec<i64> {
    run(t, values.into_iter().map(record).collect())
        .iter()
        .map(|r| r.timestamp_ns)
        .collect()
}

#[test]
fn formats_are_tried_in_order_and_the_first_that_parses_sets_the_time() {
    let (mut t, cx) = build(
        r#"
field = "time"
formats = ["rfc3339", "%Y-%m-%d %H:%M:%S%.f", "%d/%b/%Y:%H:%M:%S %z", "unix_ms"]
timezone = "Europe/Berlin"
"#,
    );
    assert_eq!(
        times(
            &mut t,
            vec![
                json!("2024-06-15T10:00:00.5+02:00"),
                // No offset: Berlin, summer time.
                json!("2024-06-15 10:00:00.123456789"),
                json!("2024-01-15 10:00:00"),
                json!("15/Jun/2024:10:00:00 -0700"),
                json!(1_718_445_600_250i64),
                json!("1718445600250"),
            ]
        ),
        [
            ns("2024-06-15T08:00:00.5Z"),
            ns("2024-06-15T08:00:00.123456789Z"),
            ns("2024-01-15T09:00:00Z"),
            ns("2024-06-15T17:00:00Z"),
            ns("2024-06-15T10:00:00.25Z"),
            ns("2024-06-15T10:00:00.25Z"),
        ]
    );
    assert_eq!(cx.metrics.errors("timestamp_unparsed").get(), 0);
}

#[test]
fn unix_units_take_fractions_and_numbers() {
    let check = |format: &str, value: Value, want: i64| {
        let (mut t, _) = build(&format!("field = \"time\"\nformats = [\"{format}\"]"));
        assert_eq!(
            times(&mut t, vec![value.clone()]),
            [want],
            "{format} {value}"
        );
    };
    check("unix", json!(1_700_000_000), 1_700_000_000_000_000_000);
    check(
        "unix",
        json!("1700000000.123456789123"),
        1_700_000_000_123_456_789,
    );
    check("unix", json!(1_700_000_000.5), 1_700_000_000_500_000_000);
    check("unix", json!("-1.5"), -1_500_000_000);
    check(
        "unix_ms",
        json!("1700000000123.4567"),
        1_700_000_000_123_456_700,
    );
    check(
        "unix_us",
        json!(1_700_000_000_123_456i64),
        1_700_000_000_123_456_000,
    );
    check(
        "unix_ns",
        json!("1700000000123456789"),
        1_700_000_000_123_456_789,
    );
}

#[test]
fn precision_truncates_towards_the_past_and_remove_field_removes_it() {
    let (mut t, _) = build(
        r#"
field = "time"
formats = ["unix_ns"]
precision = "ms"
remove_field = true
"#,
    );
    let out = run(
        &mut t,
        vec![
            record(json!(1_700_000_000_123_456_789i64)),
            record(json!(-1)),
        ],
    );
    assert_eq!(out[0].timestamp_ns, 1_700_000_000_123_000_000);
    assert_eq!(out[0].fields, serde_json::Map::new());
    assert_eq!(out[1].timestamp_ns, -1_000_000);
}

#[test]
fn a_bad_timestamp_keeps_the_receive_time_and_is_flagged_and_counted() {
    let (mut t, cx) = build(
        r#"
field = "time"
formats = ["rfc3339", "unix"]
remove_field = true
"#,
    );
    let mut missing = LogRecord::new(42, "no time");
    missing.fields.insert("other".into(), json!(1));
    let out = run(
        &mut t,
        vec![
            record(json!("2024-13-01T00:00:00Z")),
            record(json!(true)),
            record(json!("yesterday")),
            missing,
        ],
    );
    for r in &out {
        assert_eq!(r.timestamp_ns, 42);
        assert_eq!(r.fields.get(UNPARSED_FIELD), Some(&json!(true)));
    }
    // The field stays: nothing is lost.
    assert_eq!(
        out[0].fields.get("time"),
        Some(&json!("2024-13-01T00:00:00Z"))
    );
    assert_eq!(cx.metrics.errors("timestamp_unparsed").get(), 3);
    assert_eq!(cx.metrics.errors("field_missing").get(), 1);
}

#[test]
fn config_errors_name_the_format_by_its_index() {
    let problems = config(
        r#"
field = ""
formats = ["rfc3339", "unix_s", "%Y-%m-%d %Q%", "%H:%M:%S"]
timezone = " "
"#,
    )
    .validate();
    let got: Vec<(String, String)> = problems.into_iter().map(|p| (p.key, p.message)).collect();
    assert_eq!(got.len(), 5, "{got:#?}");
    assert_eq!(
        got[0],
        ("field".into(), "expected a field name, got \"\"".into())
    );
    assert_eq!(
        got[1],
        (
            "formats[1]".into(),
            "unknown format \"unix_s\"; expected one of rfc3339, unix, unix_ms, unix_us, unix_ns, or a strftime format with % directives such as \"%Y-%m-%d %H:%M:%S\"".into()
        )
    );
    assert_eq!(got[2].0, "formats[2]");
    assert!(
        got[2]
            .1
            .starts_with("invalid strftime format \"%Y-%m-%d %Q%\": "),
        "{}",
        got[2].1
    );
    assert_eq!(got[3].0, "formats[3]");
    assert!(
        got[3]
            .1
            .starts_with("strftime format \"%H:%M:%S\" gives no full date and time (e.g. it lacks %Y, %m or %d): "),
        "{}",
        got[3].1
    );
    assert_eq!(got[4].0, "timezone");

    let empty = config("field = \"t\"\nformats = []").validate();
    assert_eq!(empty[0].key, "formats");
    assert_eq!(
        empty[0].message,
        "expected at least one format: rfc3339, unix, unix_ms, unix_us, unix_ns, or a strftime format"
    );
    let e = toml::from_str::<Config>("field = \"t\"\nformats = [\"unix\"]\nprecision = \"min\"")
        .unwrap_err();
    assert!(
        e.message()
            .starts_with("unknown variant `min`, expected one of `s`, `ms`, `us`, `ns`"),
        "{}",
        e.message()
    );
}

#[test]
fn an_unknown_time_zone_is_a_build_error() {
    let e = config("field = \"t\"\nformats = [\"unix\"]\ntimezone = \"Mars/Olympus\"")
        .build(&BuildContext::for_test("ts"))
        .err()
        .unwrap();
    assert_eq!(e.key, "timezone");
    assert!(
        e.message.starts_with("unknown time zone \"Mars/Olympus\""),
        "{}",
        e.message
    );
}

proptest! {
    #[test]
    fn unix_seconds_with_nine_fraction_digits_are_exact(
        s in -9_000_000_000i64..9_000_000_000,
        nanos in 0i64..1_000_000_000,
    ) {
        let text = if s < 0 {
            format!("-{}.{nanos:09}", -s)
        } else {
            format!("{s}.{nanos:09}")
        };
        let sign = if s < 0 { -1 } else { 1 };
        prop_assert_eq!(unix(&text, 1_000_000_000), Some(s * 1_000_000_000 + sign * nanos));
    }

    #[test]
    fn unix_never_panics(text in "-?[0-9.]{0,30}", unit in prop::sample::select(vec![1i64, 1_000, 1_000_000, 1_000_000_000])) {
        let _ = unix(&text, unit);
    }
}
