//! The process's own logs: `--log-format json` (one JSON object a line),
//! `IOTEL_LOG` filters, and the warning a bad filter gets.

// Test helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod util;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use util::{Proc, free_port, wait_for};

const PLAINTEXT_WARNING: &str = "listening in plaintext on 0.0.0.0:";

/// An agent whose node API listens off loopback in plaintext (a warning at
/// start) and whose generator writes to a file (info lines at start and at
/// exit), run with `args` before the role and `env`.
fn agent(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[api]
address = "0.0.0.0:{}"
plaintext = true

[sources.gen]
type = "generator"
signal = "log"
interval = "100ms"

[sinks.out]
type = "file"
inputs = ["gen"]
path = "{}/out.ndjson"
"#,
        free_port(),
        dir.path().display()
    );
    std::fs::write(dir.path().join("iotel.toml"), config).unwrap();
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend([
        "agent".into(),
        "--config".into(),
        dir.path().join("iotel.toml").display().to_string(),
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
    ]);
    Proc::spawn(
        "iotel",
        Path::new(env!("CARGO_BIN_EXE_iotel")),
        &all,
        dir,
        env,
    )
}

/// Runs `iotel lint metrics /dev/null` (it logs nothing of its own) with
/// `env`: the exit code and what was logged (stderr without the lint's
/// summary line).
fn lint_nothing(env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .args(["lint", "metrics", "/dev/null"])
        .env_remove("IOTEL_LOG_FORMAT")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logged = stderr
        .lines()
        .filter(|l| !l.starts_with("/dev/null: "))
        .map(|l| format!("{l}\n"))
        .collect();
    (out.status.code().unwrap_or(-1), logged)
}

#[cfg(feature = "log-json")]
#[test]
fn json_logs_are_one_object_a_line_with_timestamp_level_target_and_fields() {
    let mut node = agent(&["--log-format", "json"], &[("IOTEL_LOG", "info")]);
    wait_for("the started line", Duration::from_secs(20), || {
        node.stderr().contains("iotel started").then_some(())
    });
    let status = node.terminate(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "{}", node.report());
    let stderr = node.stderr();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON object ({e}): {l}\n{}", node.report()))
        })
        .collect();
    for line in &lines {
        let obj = line.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        // `span` and `spans` only in a span; no other keys.
        keys.retain(|k| *k != "span" && *k != "spans");
        assert_eq!(keys, ["fields", "level", "target", "timestamp"], "{line}");
        let ts = line["timestamp"].as_str().unwrap();
        assert!(
            ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "{ts}"
        );
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    let started = lines
        .iter()
        .find(|l| l["fields"]["message"] == "iotel started")
        .unwrap();
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["target"], "iotel::node");
    assert_eq!(started["fields"]["components"], 2);
    let warning = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .unwrap()
                .starts_with(PLAINTEXT_WARNING)
        })
        .unwrap();
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["fields"]["component"], "[api]");
    let totals = lines
        .iter()
        .find(|l| l["fields"]["message"] == "final totals" && l["fields"]["component"] == "gen")
        .unwrap();
    assert_eq!(totals["fields"]["discarded"], 0);
    assert!(totals["fields"]["sent"].as_u64().is_some(), "{totals}");
}

#[test]
fn iotel_log_warn_keeps_warnings_and_suppresses_info_lines() {
    let mut node = agent(&[], &[("IOTEL_LOG", "warn")]);
    wait_for("the plaintext warning", Duration::from_secs(20), || {
        node.stderr().contains(PLAINTEXT_WARNING).then_some(())
    });
    // The node is up once its file sink has written.
    let out = node.dir.path().join("out.ndjson");
    wait_for("a line in the file sink", Duration::from_secs(20), || {
        (std::fs::metadata(&out).ok()?.len() > 0).then_some(())
    });
    let status = node.terminate(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "{}", node.report());
    let stderr = node.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    // The plaintext API and its unauthenticated changes: warnings only.
    assert_eq!(lines.len(), 2, "{}", node.report());
    assert!(
        lines.iter().all(|l| l.contains(" WARN iotel")),
        "{}",
        node.report()
    );
    assert!(
        lines.iter().any(|l| l.contains(PLAINTEXT_WARNING)),
        "{}",
        node.report()
    );
}

#[test]
fn a_bad_log_filter_directive_is_named_in_a_warning_and_the_rest_applies() {
    let (code, stderr) = lint_nothing(&[("IOTEL_LOG", "warn,iotel=loud")]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].ends_with(
            " WARN iotel::logging: log filter (--log-level / IOTEL_LOG): ignoring \
             \"iotel=loud\": \"loud\" is not a level (off, error, warn, info, debug, trace)"
        ),
        "{stderr}"
    );
}

#[cfg(feature = "log-json")]
#[test]
fn iotel_log_format_json_in_the_environment_writes_json() {
    let (code, logged) = lint_nothing(&[("IOTEL_LOG", "info,loud"), ("IOTEL_LOG_FORMAT", "json")]);
    assert_eq!(code, 0, "{logged}");
    let line: serde_json::Value = serde_json::from_str(logged.trim_end()).unwrap();
    assert_eq!(line["level"], "WARN");
    assert_eq!(
        line["fields"]["message"],
        "log filter (--log-level / IOTEL_LOG): ignoring \"loud\": expected a level \
         (off, error, warn, info, debug, trace) or TARGET=LEVEL"
    );
}

#[test]
fn an_unknown_log_format_is_refused_with_the_ones_there_are() {
    let out = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .args(["--log-format", "xml", "lint", "metrics", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "error: invalid value 'xml' for '--log-format <LOG_FORMAT>'\n  [possible values: text, json]\n"
        ),
        "{stderr}"
    );
}

#[cfg(not(feature = "log-json"))]
#[test]
fn json_logs_in_a_build_without_them_fail_with_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .args(["--log-format", "json", "lint", "metrics", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: --log-format json: this build of iotel has no JSON logs (built without the \
         `log-json` feature); use --log-format text or a build with `--features log-json`\n"
    );
}
