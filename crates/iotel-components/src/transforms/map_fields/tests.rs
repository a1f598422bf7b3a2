#![allow(clippy::unwrap_used)]

use super::*;
use iotel_model::{LogRecord, Span};
use serde_json::json;

fn config(text: &str) -> Config {
    toml::from_str(text).unwrap()
}

fn build(text: &str) -> (Box<dyn Transform>, BuildContext) {
    let cfg = config(text);
    assert_eq!(cfg.validate(), vec![], "{text}");
    let cx = BuildContext::for_test("canon");
    (cfg.build(&cx).unwrap(), cx)
}

fn log(fields: Value, labels: &[(&str, &str)]) -> LogRecord {
    let mut r = LogRecord::new(1, "m");
    let Value::Object(m) = fields else { panic!() };
    r.fields = m;
    r.labels = Labels::from_pairs(labels.iter().copied());
    r
}

fn run_logs(t: &mut Box<dyn Transform>, logs: Vec<LogRecord>) -> Vec<LogRecord> {
    let mut out = Vec::new();
    t.transform(Events::Logs(logs), &mut out);
    let [Events::Logs(logs)] = &out[..] else {
        panic!("expected one batch of logs, got {out:?}")
    };
    logs.clone()
}

fn conflicts(cx: &BuildContext) -> u64 {
    cx.metrics
        .registry()
        .counter(
            "iotel_map_fields_conflicts_total",
            "",
            &[("component_id", "canon")],
        )
        .get()
}

const CANONICAL: &str = r#"
rename = { user_id = "subject_identifier", action = "event_type", http_status = "http.status_code", http_status_code = "http.status_code", statusCode = "http.status_code" }
resource = { "cloud.provider" = "aws", "cloud.region" = "eu-west-1", device_id = "dev-1" }
"#;

#[test]
fn fields_are_renamed_to_canonical_names_and_resource_labels_added() {
    let (mut t, cx) = build(CANONICAL);
    let out = run_logs(
        &mut t,
        vec![
            log(
                json!({"user_id": "u1", "action": "login", "http_status": 200, "other": 1}),
                &[],
            ),
            log(json!({"statusCode": 404}), &[("device_id", "dev-9")]),
        ],
    );
    assert_eq!(
        Value::Object(out[0].fields.clone()),
        json!({"subject_identifier": "u1", "event_type": "login", "http.status_code": 200, "other": 1})
    );
    assert_eq!(
        out[0].labels,
        Labels::from_pairs([
            ("cloud.provider", "aws"),
            ("cloud.region", "eu-west-1"),
            ("device_id", "dev-1")
        ])
    );
    assert_eq!(
        Value::Object(out[1].fields.clone()),
        json!({"http.status_code": 404})
    );
    // An existing label is kept.
    assert_eq!(out[1].labels.get("device_id"), Some("dev-9"));
    assert_eq!(out[1].labels.get("cloud.region"), Some("eu-west-1"));
    assert_eq!(conflicts(&cx), 0);
}

#[test]
fn when_several_names_are_present_the_first_in_byte_order_wins_and_the_rest_stay_counted() {
    let (mut t, cx) = build(CANONICAL);
    let out = run_logs(
        &mut t,
        vec![
            log(
                json!({"http_status": 1, "http_status_code": 2, "statusCode": 3}),
                &[],
            ),
            log(json!({"http.status_code": 0, "http_status": 1}), &[]),
        ],
    );
    assert_eq!(
        Value::Object(out[0].fields.clone()),
        json!({"http.status_code": 1, "http_status_code": 2, "statusCode": 3})
    );
    // A field already named as the target wins.
    assert_eq!(
        Value::Object(out[1].fields.clone()),
        json!({"http.status_code": 0, "http_status": 1})
    );
    assert_eq!(conflicts(&cx), 3);
}

#[test]
fn overwrite_resource_replaces_existing_labels() {
    let (mut t, _) = build("resource = { device_id = \"dev-1\" }\noverwrite_resource = true");
    let out = run_logs(&mut t, vec![log(json!({}), &[("device_id", "dev-9")])]);
    assert_eq!(out[0].labels, Labels::from_pairs([("device_id", "dev-1")]));
}

#[test]
fn spans_get_their_attributes_renamed_and_resource_labels() {
    let (mut t, _) = build(CANONICAL);
    let Value::Object(attributes) = json!({"statusCode": 500}) else {
        panic!()
    };
    let span = Span {
        trace_id: [1; 16],
        span_id: [2; 8],
        parent_span_id: None,
        name: "GET /".into(),
        start_ns: 0,
        end_ns: 1,
        labels: Labels::empty(),
        attributes,
        status: iotel_model::SpanStatus::Unset,
    };
    let mut out = Vec::new();
    t.transform(Events::Traces(vec![span]), &mut out);
    let [Events::Traces(spans)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(
        Value::Object(spans[0].attributes.clone()),
        json!({"http.status_code": 500})
    );
    assert_eq!(spans[0].labels.get("cloud.provider"), Some("aws"));
}

#[test]
fn config_errors_name_the_key() {
    let got: Vec<(String, String)> = config(
        r#"
rename = { a = "a", b = "c", c = "d", e = "" }
resource = { "1bad" = "x", good = "" }
"#,
    )
    .validate()
    .into_iter()
    .map(|p| (p.key, p.message))
    .collect();
    let want: Vec<(String, String)> = [
        ("rename.a", "renames the field to its own name"),
        (
            "rename.b",
            "renames to \"c\", which is renamed too; renames do not chain, so rename to the final name",
        ),
        ("rename.e", "expected the new name, got \"\""),
        (
            "resource.1bad",
            "not a valid attribute name (expected letters, digits, '_' and '.', not starting with a digit or '.')",
        ),
        (
            "resource.good",
            "expected a non-empty value (an empty label is an absent one)",
        ),
    ]
    .iter()
    .map(|(k, m)| (k.to_string(), m.to_string()))
    .collect();
    assert_eq!(got, want);
    let none = config("").validate();
    assert_eq!(none[0].message, "changes nothing: set rename or resource");
}
