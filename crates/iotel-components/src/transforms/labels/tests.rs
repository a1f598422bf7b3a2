use super::*;
use iotel_model::{Labels, LogRecord};
use serde_json::json;
use std::time::Duration as StdDuration;

fn config(text: &str) -> Config {
    toml::from_str(text).unwrap()
}

fn promoter(text: &str) -> (PromoteLabels, BuildContext, Instant) {
    let cfg = config(text);
    assert_eq!(cfg.validate(), vec![], "{text}");
    let cx = BuildContext::for_test("streams");
    let t0 = Instant::now();
    (PromoteLabels::new(&cfg, &cx, t0), cx, t0)
}

fn record(labels: &[(&str, &str)], fields: serde_json::Value) -> LogRecord {
    let mut r = LogRecord::new(1, "line");
    r.labels = Labels::from_pairs(labels.iter().copied());
    let serde_json::Value::Object(map) = fields else {
        panic!("fields must be an object");
    };
    r.fields = map;
    r
}

fn not_promoted(cx: &BuildContext, label: &str) -> u64 {
    cx.metrics
        .registry()
        .counter(
            "iotel_labels_not_promoted_total",
            "",
            &[
                ("component_id", "streams"),
                ("label", label),
                ("reason", "cardinality_limit"),
            ],
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
fn listed_fields_become_labels_of_the_same_name_and_leave_the_fields() {
    let (mut p, _, t0) = promoter(
        r#"fields = ["level", "device_id"]
max_values_per_label = 10"#,
    );
    let mut batch = vec![record(
        &[("job", "app")],
        json!({"level": "error", "device_id": "dev-1", "msg_id": 7}),
    )];
    p.process(&mut batch, t0);
    assert_eq!(
        batch[0].labels,
        Labels::from_pairs([("job", "app"), ("level", "error"), ("device_id", "dev-1")])
    );
    assert_eq!(
        serde_json::Value::Object(batch[0].fields.clone()),
        json!({"msg_id": 7})
    );
}

#[test]
fn a_table_renames_and_remove_from_fields_false_keeps_the_fields() {
    let (mut p, _, t0) = promoter(
        r#"fields = { device_id = "dev", level = "lvl" }
remove_from_fields = false
max_values_per_label = 10"#,
    );
    let mut batch = vec![record(&[], json!({"dev": "d7", "lvl": "warn"}))];
    p.process(&mut batch, t0);
    assert_eq!(
        batch[0].labels,
        Labels::from_pairs([("device_id", "d7"), ("level", "warn")])
    );
    assert_eq!(
        serde_json::Value::Object(batch[0].fields.clone()),
        json!({"dev": "d7", "lvl": "warn"})
    );
}

#[test]
fn non_string_values_are_written_as_json_and_null_or_empty_promote_nothing() {
    let (mut p, _, t0) = promoter(
        r#"fields = ["code", "ok", "tags", "obj", "none", "empty", "missing"]
max_values_per_label = 10"#,
    );
    let mut batch = vec![record(
        &[],
        json!({"code": 503, "ok": true, "tags": ["a", "b"], "obj": {"k": 1.5}, "none": null, "empty": ""}),
    )];
    p.process(&mut batch, t0);
    assert_eq!(
        batch[0].labels,
        Labels::from_pairs([
            ("code", "503"),
            ("ok", "true"),
            ("tags", r#"["a","b"]"#),
            ("obj", r#"{"k":1.5}"#),
        ])
    );
    assert_eq!(
        serde_json::Value::Object(batch[0].fields.clone()),
        json!({"none": null, "empty": ""})
    );
}

#[test]
fn a_promoted_value_replaces_an_existing_label() {
    let (mut p, _, t0) = promoter("fields = [\"level\"]\nmax_values_per_label = 10");
    let mut batch = vec![record(&[("level", "info")], json!({"level": "error"}))];
    p.process(&mut batch, t0);
    assert_eq!(batch[0].labels, Labels::from_pairs([("level", "error")]));
}

#[test]
fn new_values_past_the_limit_stay_fields_are_counted_and_warned_once() {
    let (mut p, cx, t0) = promoter(
        r#"fields = ["device_id", "level"]
max_values_per_label = 2"#,
    );
    let mut batch: Vec<LogRecord> = ["a", "b", "c", "a", "d"]
        .iter()
        .map(|d| record(&[], json!({"device_id": d, "level": "info"})))
        .collect();
    p.process(&mut batch, t0);
    let promoted: Vec<Option<&str>> = batch.iter().map(|r| r.labels.get("device_id")).collect();
    assert_eq!(promoted, [Some("a"), Some("b"), None, Some("a"), None]);
    // Records over the limit keep the value as a field; level is promoted
    // on all of them, its own limit untouched.
    assert_eq!(batch[2].fields.get("device_id"), Some(&json!("c")));
    assert_eq!(batch[4].fields.get("device_id"), Some(&json!("d")));
    assert!(batch.iter().all(|r| r.labels.get("level") == Some("info")));
    assert!(batch.iter().all(|r| !r.fields.contains_key("level")));
    assert_eq!(not_promoted(&cx, "device_id"), 2);
    assert_eq!(not_promoted(&cx, "level"), 0);
    assert_eq!(p.warnings(), 1, "one warning per label per warn_interval");
}

#[test]
fn a_value_not_seen_for_the_ttl_frees_its_place() {
    let (mut p, cx, t0) = promoter(
        r#"fields = ["device_id"]
max_values_per_label = 1
value_ttl = "1m"
warn_interval = "10s""#,
    );
    let one = |d: &str| vec![record(&[], json!({"device_id": d}))];
    let mut b = one("a");
    p.process(&mut b, t0);
    assert_eq!(b[0].labels.get("device_id"), Some("a"));
    let mut b = one("b");
    p.process(&mut b, t0 + StdDuration::from_secs(30));
    assert_eq!(b[0].labels.get("device_id"), None);
    let mut b = one("b");
    p.process(&mut b, t0 + StdDuration::from_secs(61));
    assert_eq!(b[0].labels.get("device_id"), Some("b"));
    assert_eq!(not_promoted(&cx, "device_id"), 1);
}

#[test]
fn records_of_one_stream_share_one_label_set() {
    let (mut p, _, t0) = promoter("fields = [\"level\"]\nmax_values_per_label = 10");
    let stream = Labels::from_pairs([("job", "app")]);
    let mut batch: Vec<LogRecord> = (0..3)
        .map(|_| {
            let mut r = record(&[], json!({"level": "info"}));
            r.labels = stream.clone();
            r
        })
        .collect();
    batch.push(record(&[("job", "app")], json!({"level": "warn"})));
    p.process(&mut batch, t0);
    assert_eq!(batch[0].labels.get("level"), Some("info"));
    assert!(std::ptr::eq(
        batch[0].labels.iter().next().unwrap(),
        batch[2].labels.iter().next().unwrap()
    ));
    assert_eq!(batch[3].labels.get("level"), Some("warn"));
}

#[test]
fn records_without_the_fields_pass_unchanged() {
    let (mut p, _, t0) = promoter("fields = [\"level\"]\nmax_values_per_label = 10");
    let original = record(&[("job", "app")], json!({"other": 1}));
    let mut batch = vec![original.clone()];
    p.process(&mut batch, t0);
    assert_eq!(batch[0], original);
}

#[test]
fn invalid_label_names_duplicates_and_empty_lists_are_config_errors() {
    assert_eq!(
        problems(
            r#"fields = ["level", "device-id", "level"]
max_values_per_label = 10"#
        ),
        [
            (
                "fields[1]".to_string(),
                "\"device-id\" is not a valid label name (expected [a-zA-Z_][a-zA-Z0-9_]*)"
                    .to_string()
            ),
            (
                "fields[2]".to_string(),
                "label \"level\" is listed twice".to_string()
            ),
        ]
    );
    assert_eq!(
        problems(
            r#"fields = { "9lives" = "cat", dev = "" , a = "x", b = "x" }
max_values_per_label = 10"#
        ),
        [
            (
                "fields.9lives".to_string(),
                "\"9lives\" is not a valid label name (expected [a-zA-Z_][a-zA-Z0-9_]*)"
                    .to_string()
            ),
            (
                "fields.b".to_string(),
                "field \"x\" is promoted twice".to_string()
            ),
            (
                "fields.dev".to_string(),
                "expected a field name".to_string()
            ),
        ]
    );
    assert_eq!(
        problems("fields = []\nmax_values_per_label = 10"),
        [(
            "fields".to_string(),
            "promotes nothing: name at least one field".to_string()
        )]
    );
}

#[test]
fn the_fields_key_takes_a_list_or_a_table_and_the_limit_is_required() {
    let e = toml::from_str::<Config>("fields = 3\nmax_values_per_label = 10")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("expected a list of field names or a table of label = \"field\""),
        "{e}"
    );
    let e = toml::from_str::<Config>("fields = [\"a\"]")
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing field `max_values_per_label`"), "{e}");
    let e = toml::from_str::<Config>("fields = [\"a\"]\nmax_values_per_label = 0")
        .unwrap_err()
        .to_string();
    assert!(e.contains("nonzero"), "{e}");
}

#[test]
fn other_signals_pass_through() {
    let cfg = config("fields = [\"a\"]\nmax_values_per_label = 1");
    let mut t = cfg.build(&BuildContext::for_test("streams")).unwrap();
    let mut out = Vec::new();
    t.transform(Events::Metrics(vec![]), &mut out);
    assert_eq!(out.len(), 1);
}
