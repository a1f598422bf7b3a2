use super::*;
use iotel_model::{Labels, LogRecord, Severity};
use proptest::prelude::*;
use serde_json::json;

fn config(text: &str) -> Config {
    toml::from_str(text).unwrap()
}

fn sampler(text: &str) -> (Sample, BuildContext) {
    let cfg = config(text);
    assert_eq!(cfg.validate(), vec![], "{text}");
    let cx = BuildContext::for_test("thin");
    (Sample::new(&cfg, &cx).unwrap(), cx)
}

fn record(labels: &[(&str, &str)], message: &str) -> LogRecord {
    let mut r = LogRecord::new(1, message);
    r.labels = Labels::from_pairs(labels.iter().copied());
    r
}

fn device(id: &str, message: &str) -> LogRecord {
    let mut r = record(&[("job", "app")], message);
    r.fields.insert("device_id".into(), json!(id));
    r
}

fn messages(out: &[LogRecord]) -> Vec<&str> {
    out.iter().map(|r| r.message.as_str()).collect()
}

fn kept(cx: &BuildContext, reason: &str) -> u64 {
    cx.metrics
        .registry()
        .counter(
            "iotel_sample_kept_total",
            "",
            &[("component_id", "thin"), ("reason", reason)],
        )
        .get()
}

fn rate_gauge(cx: &BuildContext, rule: &str) -> f64 {
    cx.metrics
        .registry()
        .gauge(
            "iotel_sample_rate",
            "",
            &[("component_id", "thin"), ("rule", rule)],
        )
        .get()
}

fn problems(text: &str) -> Vec<(String, String)> {
    config(text)
        .validate()
        .into_iter()
        .map(|p| (p.key, p.message))
        .collect()
}

#[test]
fn without_by_each_stream_keeps_its_first_record_then_one_in_n() {
    let (mut s, cx) = sampler("rate = 0.25");
    let batch: Vec<LogRecord> = (0..10)
        .flat_map(|i| {
            [
                record(&[("job", "a")], &format!("a{i}")),
                record(&[("job", "b")], &format!("b{i}")),
            ]
        })
        .collect();
    let out = s.process(batch);
    assert_eq!(messages(&out), ["a0", "b0", "a4", "b4", "a8", "b8"]);
    assert_eq!(cx.metrics.discards("sampled").get(), 14);
    assert_eq!(kept(&cx, "sampled"), 6);
    assert_eq!(kept(&cx, "severity"), 0);
}

#[test]
fn a_rate_that_is_not_a_reciprocal_spreads_evenly() {
    let (mut s, _) = sampler("rate = 0.3");
    let batch: Vec<LogRecord> = (0..10).map(|i| record(&[], &i.to_string())).collect();
    let out = s.process(batch);
    assert_eq!(messages(&out), ["0", "4", "7"]);
    let batch: Vec<LogRecord> = (0..1000).map(|i| record(&[], &i.to_string())).collect();
    assert_eq!(s.process(batch).len(), 300);
}

#[test]
fn severe_records_are_never_sampled_out_and_are_counted_apart() {
    let (mut s, cx) = sampler("rate = 0.01");
    let mut batch = Vec::new();
    for i in 0..100 {
        let mut r = record(&[], &format!("{i}"));
        r.severity = Some(match i % 4 {
            0 => Severity::Info,
            1 => Severity::Error,
            2 => Severity::Fatal,
            _ => Severity::Warn,
        });
        batch.push(r);
    }
    let out = s.process(batch);
    let severe = out
        .iter()
        .filter(|r| r.severity >= Some(Severity::Error))
        .count();
    assert_eq!(severe, 50);
    assert_eq!(out.len(), 51, "the first info record, then none of 50");
    assert_eq!(kept(&cx, "severity"), 50);
    assert_eq!(kept(&cx, "sampled"), 1);
    assert_eq!(cx.metrics.discards("sampled").get(), 49);
}

#[test]
fn the_severity_threshold_is_configurable_and_none_samples_everything() {
    let mut warn = record(&[], "w");
    warn.severity = Some(Severity::Warn);
    let mut error = record(&[], "e");
    error.severity = Some(Severity::Error);
    let batch = || {
        vec![
            record(&[], "first"),
            warn.clone(),
            error.clone(),
            record(&[], "plain"),
        ]
    };
    let (mut s, _) = sampler("rate = 0.001\nkeep_severity_at_least = \"warning\"");
    assert_eq!(messages(&s.process(batch())), ["first", "w", "e"]);
    let (mut s, _) = sampler("rate = 0.001\nkeep_severity_at_least = \"none\"");
    assert_eq!(messages(&s.process(batch())), ["first"]);
    let e = toml::from_str::<Config>("keep_severity_at_least = \"loud\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "unknown severity \"loud\": expected trace, debug, info, warn, error, fatal or none"
        ),
        "{e}"
    );
}

#[test]
fn by_keeps_all_or_none_of_a_devices_records() {
    let (mut s, _) = sampler("rate = 0.1\nby = \"device_id\"");
    let mut batch = Vec::new();
    for d in 0..200 {
        for i in 0..5 {
            batch.push(device(&format!("dev-{d}"), &format!("dev-{d}/{i}")));
        }
    }
    let out = s.process(batch);
    let mut per_device = std::collections::BTreeMap::<&str, usize>::new();
    for r in &out {
        *per_device
            .entry(r.fields["device_id"].as_str().unwrap())
            .or_default() += 1;
    }
    assert!(per_device.values().all(|&n| n == 5), "{per_device:?}");
    let devices = per_device.len();
    assert!((8..=35).contains(&devices), "{devices} of 200 devices kept");
    // Pinned by the stable hash: the same devices on every node.
    let expected: Vec<String> = (0..200)
        .map(|d| format!("dev-{d}"))
        .filter(|d| stable_hash(d.as_bytes()) < u64::MAX / 10)
        .collect();
    let got: Vec<String> = per_device.keys().map(|k| k.to_string()).collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(got, expected_sorted);
}

#[test]
fn by_falls_back_to_the_label_then_to_one_in_n() {
    let (mut s, _) = sampler("rate = 0.5\nby = \"device_id\"");
    let kept_value = (0..)
        .map(|i| format!("d{i}"))
        .find(|d| stable_hash(d.as_bytes()) < u64::MAX / 2)
        .unwrap();
    let dropped_value = (0..)
        .map(|i| format!("d{i}"))
        .find(|d| stable_hash(d.as_bytes()) >= u64::MAX / 2)
        .unwrap();
    let batch = vec![
        record(&[("device_id", &kept_value)], "label kept"),
        record(&[("device_id", &dropped_value)], "label dropped"),
        record(&[], "no value 1"),
        record(&[], "no value 2"),
        record(&[], "no value 3"),
    ];
    assert_eq!(
        messages(&s.process(batch)),
        ["label kept", "no value 1", "no value 3"]
    );
}

#[test]
fn a_non_string_by_field_is_hashed_as_its_json_text() {
    let (mut s, _) = sampler("rate = 0.5\nby = \"unit\"");
    let (k, d) = {
        let mut k = None;
        let mut d = None;
        for i in 0..100u32 {
            let h = stable_hash(i.to_string().as_bytes());
            if h < u64::MAX / 2 {
                k.get_or_insert(i);
            } else {
                d.get_or_insert(i);
            }
        }
        (k.unwrap(), d.unwrap())
    };
    let mut a = record(&[], "kept");
    a.fields.insert("unit".into(), json!(k));
    let mut b = record(&[], "dropped");
    b.fields.insert("unit".into(), json!(d));
    assert_eq!(messages(&s.process(vec![a, b])), ["kept"]);
}

#[test]
fn the_first_matching_stream_rule_sets_the_rate() {
    let (mut s, cx) = sampler(
        r#"rate = 0.5
streams = [
  { selector = '{job="noisy"}', rate = 0.1 },
  { selector = '{job=~"noisy|chatty"}', rate = 1.0 },
  { selector = '{} |= "debug"', rate = 0.25 },
]"#,
    );
    let mut batch = Vec::new();
    for i in 0..20 {
        batch.push(record(&[("job", "noisy")], &format!("n{i}")));
        batch.push(record(&[("job", "chatty")], &format!("c{i}")));
        batch.push(record(&[("job", "x")], &format!("debug x{i}")));
        batch.push(record(&[("job", "x")], &format!("x{i}")));
    }
    let out = s.process(batch);
    let count = |p: &str| out.iter().filter(|r| r.message.starts_with(p)).count();
    assert_eq!(count("n"), 2);
    assert_eq!(count("c"), 20);
    assert_eq!(count("debug"), 5);
    assert_eq!(count("x"), 10);
    assert_eq!(rate_gauge(&cx, "streams[0]"), 0.1);
    assert_eq!(rate_gauge(&cx, "default"), 0.5);
}

#[test]
fn the_rate_falls_with_the_backlog_and_the_gauge_shows_it() {
    let (mut s, cx) = sampler("rate = 0.5\nby = \"device_id\"");
    let batch = || -> Vec<LogRecord> {
        (0..4000)
            .map(|d| device(&format!("dev-{d}"), "x"))
            .collect()
    };
    let normal = s.process(batch()).len();
    assert_eq!(rate_gauge(&cx, "default"), 0.5);
    cx.metrics.registry().backlog().report("up", 0.95);
    let backlogged = s.process(batch());
    assert_eq!(rate_gauge(&cx, "default"), 0.0625);
    assert!(
        (150..=350).contains(&backlogged.len()),
        "{}",
        backlogged.len()
    );
    assert!((1800..=2200).contains(&normal), "{normal}");
    // Consistent: every device kept at the lower rate was kept before.
    cx.metrics.registry().backlog().report("up", 0.0);
    let again = s.process(batch());
    assert_eq!(again.len(), normal);
    assert_eq!(rate_gauge(&cx, "default"), 0.5);
}

#[test]
fn adapt_to_backlog_false_keeps_the_configured_rate() {
    let (mut s, cx) = sampler("rate = 0.5\nadapt_to_backlog = false");
    cx.metrics.registry().backlog().report("up", 0.95);
    let out = s.process((0..100).map(|i| record(&[], &i.to_string())).collect());
    assert_eq!(out.len(), 50);
    assert_eq!(rate_gauge(&cx, "default"), 0.5);
}

#[test]
fn rate_one_keeps_everything() {
    let (mut s, cx) = sampler("");
    let out = s.process((0..100).map(|i| record(&[], &i.to_string())).collect());
    assert_eq!(out.len(), 100);
    assert_eq!(kept(&cx, "sampled"), 100);
}

#[test]
fn tracked_streams_are_bounded() {
    let (mut s, _) = sampler("rate = 0.5");
    let batch: Vec<LogRecord> = (0..MAX_TRACKED_STREAMS + 10)
        .map(|i| record(&[("stream", &i.to_string())], "x"))
        .collect();
    s.process(batch);
    assert!(s.credits.len() <= MAX_TRACKED_STREAMS);
}

#[test]
fn rates_out_of_range_and_bad_selectors_are_config_errors() {
    assert_eq!(
        problems(
            r#"rate = 0.0
streams = [{ selector = '{job="a"} | json', rate = 1.5 }, { selector = '{a=~"("}', rate = -1.0 }]"#
        ),
        [
            (
                "rate".to_string(),
                "expected a rate above 0 and at most 1 (0.01 keeps 1 %), got 0".to_string()
            ),
            (
                "streams[0].selector".to_string(),
                r#"column 11: "| json" is not supported: only line filters (|=, !=, |~, !~) may follow the stream selector"#.to_string()
            ),
            (
                "streams[0].rate".to_string(),
                "expected a rate above 0 and at most 1 (0.01 keeps 1 %), got 1.5".to_string()
            ),
            (
                "streams[1].selector".to_string(),
                r#"column 5: invalid regular expression "(": unclosed group at character 1 of the pattern"#.to_string()
            ),
            (
                "streams[1].rate".to_string(),
                "expected a rate above 0 and at most 1 (0.01 keeps 1 %), got -1".to_string()
            ),
        ]
    );
    assert_eq!(
        problems("rate = nan\nby = \"\""),
        [
            (
                "rate".to_string(),
                "expected a rate above 0 and at most 1 (0.01 keeps 1 %), got NaN".to_string()
            ),
            (
                "by".to_string(),
                "expected a field or label name".to_string()
            ),
        ]
    );
}

proptest! {
    #[test]
    fn the_same_by_value_always_gets_the_same_decision(
        value in ".{1,20}",
        rate in 0.001f64..1.0,
        others in proptest::collection::vec(".{0,8}", 0..10),
    ) {
        let (mut a, _) = sampler(&format!("rate = {rate}\nby = \"device_id\""));
        let (mut b, _) = sampler(&format!("rate = {rate}\nby = \"device_id\""));
        // A second sampler that saw other values first decides the same.
        b.process(others.iter().map(|o| device(o, "other")).collect());
        let first = a.process(vec![device(&value, "x")]).len();
        let again = a.process(vec![device(&value, "x")]).len();
        let elsewhere = b.process(vec![device(&value, "x")]).len();
        prop_assert_eq!(first, again);
        prop_assert_eq!(first, elsewhere);
    }
}

proptest! {
    // Each case samples 20,000 records.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn the_kept_fraction_of_many_values_is_near_the_rate(
        rate in 0.02f64..0.98,
        prefix in "[a-z]{0,6}",
    ) {
        let (mut s, _) = sampler(&format!("rate = {rate}\nby = \"device_id\""));
        let n = 20_000;
        let batch = (0..n).map(|i| device(&format!("{prefix}{i}"), "x")).collect();
        let kept = s.process(batch).len() as f64 / f64::from(n);
        // Five standard deviations of a binomial at this n.
        let tolerance = 5.0 * (rate * (1.0 - rate) / f64::from(n)).sqrt();
        prop_assert!((kept - rate).abs() <= tolerance, "kept {kept} at rate {rate}");
    }
}
