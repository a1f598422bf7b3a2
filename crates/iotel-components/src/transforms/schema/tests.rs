#![cfg(feature = "schema")]

use super::*;
use serde_json::json;
use std::path::Path;

const SCHEMA: &str = r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["device_id", "temperature"],
  "properties": {
    "device_id": { "type": "string", "pattern": "^dev-[0-9]+$" },
    "temperature": { "$ref": "#/$defs/celsius" }
  },
  "$defs": { "celsius": { "type": "number", "minimum": -40, "maximum": 125 } }
}"##;

fn build_in(dir: &Path, toml_text: &str) -> Result<(Box<dyn Transform>, BuildContext), Problem> {
    let cfg: Config = toml::from_str(toml_text).unwrap();
    assert_eq!(cfg.validate(), vec![]);
    let mut cx = BuildContext::for_test("check");
    cx.config_dir = dir.to_path_buf();
    cfg.build(&cx).map(|t| (t, cx))
}

fn build_err(dir: &Path, toml_text: &str) -> Problem {
    match build_in(dir, toml_text) {
        Ok(_) => panic!("built: {toml_text}"),
        Err(p) => p,
    }
}

fn with_schema(schema: &str, toml_text: &str) -> Result<Box<dyn Transform>, Problem> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("device.json"), schema).unwrap();
    build_in(dir.path(), toml_text).map(|(t, _)| t)
}

fn record(message: &str, fields: serde_json::Value) -> LogRecord {
    let mut r = LogRecord::new(1_700_000_000_000_000_000, message);
    if let serde_json::Value::Object(m) = fields {
        r.fields = m;
    }
    r
}

fn logs(events: Events) -> Vec<LogRecord> {
    match events {
        Events::Logs(l) => l,
        other => panic!("expected logs, got {other:?}"),
    }
}

#[test]
fn valid_records_pass_and_invalid_ones_go_to_dead_letter_with_the_reason() {
    let mut t = with_schema(SCHEMA, r#"path = "device.json""#).unwrap();
    let batch = vec![
        record("ok 1", json!({"device_id": "dev-1", "temperature": 21.5})),
        record("hot", json!({"device_id": "dev-2", "temperature": "hot"})),
        record("ok 2", json!({"device_id": "dev-3", "temperature": -3})),
        record("bad id", json!({"device_id": "plant", "temperature": 200})),
        record("empty", json!({})),
    ];
    let mut out = Vec::new();
    t.transform(Events::Logs(batch), &mut out);
    let mut routed = Vec::new();
    t.routed(&mut routed);

    let good: Vec<_> = out.into_iter().flat_map(logs).collect();
    assert_eq!(
        good.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(),
        ["ok 1", "ok 2"]
    );
    assert!(good.iter().all(|r| !r.fields.contains_key(ERROR_FIELD)));

    assert_eq!(routed.len(), 1);
    let (name, dead) = routed.pop().unwrap();
    assert_eq!(name, "dead_letter");
    let dead = logs(dead);
    let reasons: Vec<(&str, &str)> = dead
        .iter()
        .map(|r| (r.message.as_str(), r.fields[ERROR_FIELD].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("hot", r#"at /temperature: "hot" is not of type "number""#),
            (
                "bad id",
                r#"at /device_id: "plant" does not match "^dev-[0-9]+$"; at /temperature: 200 is greater than the maximum of 125"#
            ),
            (
                "empty",
                r#""device_id" is a required property; "temperature" is a required property"#
            ),
        ]
    );
    // The rest of a dead letter is the record as it came.
    assert_eq!(dead[0].fields["device_id"], json!("dev-2"));
    // Nothing is left for the next call.
    t.routed(&mut routed);
    assert!(routed.is_empty());
}

#[test]
fn max_errors_caps_the_reasons_and_says_how_many_more() {
    let schema = r#"{"type":"object","properties":{
        "a":{"type":"string"},"b":{"type":"string"},"c":{"type":"string"}}}"#;
    let mut t = with_schema(schema, "path = \"device.json\"\nmax_errors = 1").unwrap();
    let mut out = Vec::new();
    t.transform(
        Events::Logs(vec![record("x", json!({"a": 1, "b": 2, "c": 3}))]),
        &mut out,
    );
    let mut routed = Vec::new();
    t.routed(&mut routed);
    let dead = logs(routed.pop().unwrap().1);
    assert_eq!(
        dead[0].fields[ERROR_FIELD],
        json!(r#"at /a: 1 is not of type "string"; and 2 more"#)
    );
}

#[test]
fn validate_record_checks_the_whole_record() {
    let schema = r#"{"type":"object","required":["severity"],
        "properties":{"message":{"maxLength":5}}}"#;
    let mut t = with_schema(schema, "path = \"device.json\"\nvalidate = \"record\"").unwrap();
    let mut warn = record("short", json!({}));
    warn.severity = Some(iotel_model::Severity::Warn);
    let mut out = Vec::new();
    t.transform(
        Events::Logs(vec![warn, record("no severity", json!({}))]),
        &mut out,
    );
    let mut routed = Vec::new();
    t.routed(&mut routed);
    assert_eq!(logs(out.pop().unwrap())[0].message, "short");
    let dead = logs(routed.pop().unwrap().1);
    assert_eq!(
        dead[0].fields[ERROR_FIELD],
        json!(
            r#""severity" is a required property; at /message: "no severity" is longer than 5 characters"#
        )
    );
}

#[test]
fn failures_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("device.json"), SCHEMA).unwrap();
    let (mut t, cx) = build_in(dir.path(), r#"path = "device.json""#).unwrap();
    let mut out = Vec::new();
    t.transform(
        Events::Logs(vec![record("a", json!({})), record("b", json!({}))]),
        &mut out,
    );
    let counted = cx
        .metrics
        .registry()
        .counter(
            "iotel_schema_invalid_total",
            "",
            &[("component_id", "check")],
        )
        .get();
    assert_eq!(counted, 2);
}

#[test]
fn a_schema_that_is_missing_not_json_or_invalid_is_a_problem_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.json");
    let shown = path.display().to_string();

    let missing = build_err(dir.path(), r#"path = "device.json""#);
    assert_eq!(missing.key, "path");
    assert!(
        missing
            .message
            .starts_with(&format!("cannot read schema {shown}: ")),
        "{}",
        missing.message
    );

    std::fs::write(&path, "{ \"type\": ").unwrap();
    let not_json = build_err(dir.path(), r#"path = "device.json""#);
    assert_eq!(
        not_json.message,
        format!("schema {shown} is not JSON: EOF while parsing a value at line 1 column 10")
    );

    std::fs::write(&path, r#"{"type": "integer", "minimum": "zero"}"#).unwrap();
    let invalid = build_err(dir.path(), r#"path = "device.json""#);
    assert_eq!(
        invalid.message,
        format!(
            "schema {shown} is not a valid JSON Schema (draft 2020-12): at /minimum: \"zero\" is not of type \"number\""
        )
    );
}

#[test]
fn an_unknown_key_is_refused() {
    let err = toml::from_str::<Config>("path = \"x.json\"\nschema = \"y\"").unwrap_err();
    assert!(err.to_string().contains("unknown field `schema`"), "{err}");
}
