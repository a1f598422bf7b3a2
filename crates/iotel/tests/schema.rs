//! The `schema` transform in a running node: records that pass reach the
//! default output's sink, records that fail reach the sink that takes
//! `<id>.dead_letter`, each with its reason, every one counted.

// Helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod util;

use std::path::Path;
use std::time::Duration;
use util::*;

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn seqs(records: &[serde_json::Value]) -> Vec<u64> {
    records
        .iter()
        .map(|r| r["fields"]["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn failed_records_reach_the_dead_letter_sink_with_their_reason_and_the_rest_flow_on() {
    let config = r#"
[api]
address = "{API}"

[sources.gen]
type = "generator"
signal = "log"
message = "reading"
interval = "10ms"
batch_size = 7
count = 60

# Keeps the node running once the counted generator is done.
[sources.keep]
type = "generator"
signal = "log"
interval = "1h"

[sinks.kept]
type = "file"
inputs = ["keep"]
path = "{DIR}/keep.ndjson"

[transforms.check]
type = "schema"
inputs = ["gen"]
path = "every-third.json"

[sinks.good]
type = "file"
inputs = ["check"]
path = "{DIR}/good.ndjson"

[sinks.rejects]
type = "file"
inputs = ["check.dead_letter"]
path = "{DIR}/rejects.ndjson"
"#;
    let schema = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["seq"],
  "properties": { "seq": { "type": "integer", "multipleOf": 3 } }
}"#;
    let node = Iotel::start("agent", config, &[("every-third.json", schema)]);
    let (good_path, rejects_path) = (
        node.dir().join("good.ndjson"),
        node.dir().join("rejects.ndjson"),
    );
    wait_for(
        "all 60 records in the two files",
        Duration::from_secs(20),
        || (lines(&good_path).len() + lines(&rejects_path).len() == 60).then_some(()),
    );

    let good = lines(&good_path);
    let rejects = lines(&rejects_path);
    assert_eq!(
        seqs(&good),
        (0..60).filter(|s| s % 3 == 0).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&rejects),
        (0..60).filter(|s| s % 3 != 0).collect::<Vec<_>>()
    );
    assert!(
        good.iter()
            .all(|r| r["fields"].get("schema_error").is_none())
    );
    for r in &rejects {
        let seq = r["fields"]["seq"].as_u64().unwrap();
        assert_eq!(
            r["fields"]["schema_error"],
            serde_json::json!(format!("at /seq: {seq} is not a multiple of 3")),
        );
        assert_eq!(r["message"], serde_json::json!(format!("reading {seq}")));
    }
    assert_eq!(
        node.metric("iotel_schema_invalid_total", &["component_id=\"check\""]),
        40.0
    );
}

#[test]
fn an_unknown_named_output_fails_the_config_check_naming_the_key() {
    let config = r#"
[sources.gen]
type = "generator"
signal = "log"

[transforms.check]
type = "schema"
inputs = ["gen"]
path = "s.json"

[sinks.rejects]
type = "file"
inputs = ["check.rejected"]
path = "r.ndjson"
"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("iotel.toml"), config).unwrap();
    std::fs::write(dir.path().join("s.json"), "{}").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_iotel"))
        .args(["config", "check", "--config"])
        .arg(dir.path().join("iotel.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "sinks.rejects.inputs: unknown input \"check.rejected\": schema \"check\" has no output \"rejected\" (named outputs: dead_letter; or one signal of it: \"check.metrics\", \"check.logs\", \"check.traces\")"
        ),
        "{stderr}"
    );
}
