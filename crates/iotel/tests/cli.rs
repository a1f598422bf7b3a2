//! The command line as a user meets it: `--version`, `config check` and its
//! exit codes and messages, and graceful shutdown on SIGTERM.

// Test helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod util;

use std::process::Command;
use std::time::Duration;
use util::{Iotel, wait_for};

fn iotel(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_prints_the_crate_version() {
    let (code, out, _) = iotel(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("iotel {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn certs_makes_a_pki_and_issues_a_device_cert_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let (code, out, err) = iotel(&["certs", "init", "--dir", dir]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("trust domain    spiffe://iotel.test\n"),
        "{out}"
    );
    let (code, out, err) = iotel(&["certs", "issue-device", "--dir", dir, "--device-id", "d1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "cert   {dir}/devices/d1.pem (with the issuing CA)\n"
        )),
        "{out}"
    );
    assert!(
        out.contains("spiffe spiffe://iotel.test/device/d1\n"),
        "{out}"
    );
    let (code, _, err) = iotel(&["certs", "issue-device", "--dir", dir, "--device-id", "a/b"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: --device-id \"a/b\": expected letters, digits, '.', '-' and '_' (it becomes a SPIFFE path segment and a file name)\n"
    );
}

#[test]
fn config_check_accepts_every_shipped_config() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config");
    let mut files: Vec<_> = ["edge.toml", "gateway.toml", "cloud.toml"]
        .iter()
        .map(|f| format!("{root}/{f}"))
        .collect();
    for e in std::fs::read_dir(format!("{root}/examples")).unwrap() {
        let path = e.unwrap().path();
        // Beside the configs: the files they name (schemas/).
        if path.extension().is_some_and(|x| x == "toml") {
            files.push(path.display().to_string());
        }
    }
    for f in files {
        let (code, out, err) = iotel(&["config", "check", "--config", &f]);
        assert_eq!(code, 0, "{f} did not check out:\n{err}");
        assert!(out.contains(": valid ("), "{out}");
    }
}

#[test]
fn config_check_reports_every_mistake_with_file_and_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        r#"
[sources.app]
type = "prometheus_scrape"
targets = ["http://127.0.0.1:9100/metrics"]
interval = "10m"

[sources.logs]
type = "generator"
signal = "log"

[transforms.loop_a]
type = "relabel"
inputs = ["loop_b"]
rules = []

[transforms.loop_b]
type = "relabel"
inputs = ["loop_a"]
rules = []

[sinks.prom]
type = "prometheus_remote_write"
inputs = ["app", "logs", "ghost"]
endpoint = "htp://x"

[sinks.other]
type = "carrier_pigeon"
inputs = ["app"]
"#,
    )
    .unwrap();
    let (code, out, err) = iotel(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert_eq!(out, "");
    let f = path.display();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{f}: sources.app.interval: expected between 1s and 5m, got 10m"),
            format!(
                "{f}: sinks.other.type: unknown sink type \"carrier_pigeon\"; expected one of: console, file, iotel, loki, nats_jetstream, otlp, prometheus_exporter, prometheus_remote_write"
            ),
            format!(
                "{f}: sinks.prom.endpoint: invalid URL \"htp://x\": expected http://host[:port]/path"
            ),
            format!(
                "{f}: sinks.prom.inputs: unknown input \"ghost\": no source or transform has that id"
            ),
            format!("{f}: transforms: the graph has a cycle through: loop_a, loop_b"),
            format!(
                "{f}: sinks.prom.inputs: prometheus_remote_write \"prom\" takes metrics but input \"logs\" sends logs"
            ),
            "6 error(s) in ".to_string() + &f.to_string(),
        ]
    );
}

#[test]
fn a_policy_file_with_a_typo_stops_the_config_at_check_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[grant]]\nrole = \"gateway\"\ntenant = [\"{tenant}\"]\nsignals = [\"*\"]\nactions = [\"write\"]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("jwks.json"), r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#).unwrap();
    let path = dir.path().join("cloud.toml");
    std::fs::write(
        &path,
        r#"
[sources.in]
type = "iotel"
address = "127.0.0.1:0"
auth = { issuer = "i", audience = "a", jwks_file = "jwks.json", policy_file = "policy.toml" }

[sinks.out]
type = "console"
inputs = ["in"]
"#,
    )
    .unwrap();
    let (code, out, err) = iotel(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    let policy = dir.path().join("policy.toml");
    assert!(
        err.starts_with(&format!(
            "{}: sources.in.auth.policy_file: {}: TOML parse error at line 3",
            path.display(),
            policy.display()
        )),
        "{err}"
    );
    assert!(err.contains("unknown field `tenant`"), "{err}");
}

#[test]
fn config_check_names_an_unreadable_file() {
    let (code, _, err) = iotel(&["config", "check", "--config", "/nonexistent/iotel.toml"]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "/nonexistent/iotel.toml: cannot read the config file: No such file or directory (os error 2)"
    );
}

#[test]
fn config_check_refuses_every_plaintext_listener_off_loopback_unless_it_opts_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        r#"
[api]
address = "0.0.0.0:8686"

[sources.agents]
type = "iotel"
address = "0.0.0.0:7070"

[sources.devices]
type = "otlp"
http_address = "0.0.0.0:4318"

[sources.syslog]
type = "syslog"
address = "udp://0.0.0.0:5514"

[sources.lan]
type = "syslog"
address = "tcp://0.0.0.0:5514"
plaintext = true

[sources.loki]
type = "loki"
address = "0.0.0.0:3100"
plaintext = true

[sources.prw]
type = "prometheus_remote_write"
address = "10.0.0.1:9201"

[sources.local_prw]
type = "prometheus_remote_write"
address = "127.0.0.1:9202"

[sources.gen]
type = "generator"
signal = "metric"

[sinks.scrape]
type = "prometheus_exporter"
inputs = ["gen"]
address = "[::]:9598"

[sinks.out]
type = "console"
inputs = ["agents", "devices", "syslog", "lan", "loki", "prw", "local_prw"]
"#,
    )
    .unwrap();
    let (code, out, err) = iotel(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    let f = path.display();
    let refused = |key: &str, addr: &str| {
        format!(
            "{f}: {key}: listening in plaintext on {addr}: add a tls table, or set plaintext = \
             true to accept unencrypted connections"
        )
    };
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            refused("api.address", "0.0.0.0:8686"),
            refused("sources.agents.address", "0.0.0.0:7070"),
            refused("sources.devices.http_address", "0.0.0.0:4318"),
            refused("sources.prw.address", "10.0.0.1:9201"),
            refused("sources.syslog.address", "0.0.0.0:5514"),
            refused("sinks.scrape.address", "[::]:9598"),
            format!("6 error(s) in {f}"),
        ]
    );
}

#[test]
fn config_check_warns_of_an_api_beyond_loopback_that_cannot_authenticate_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let config = |api: &str| {
        format!(
            "[api]\n{api}\n\n[sources.gen]\ntype = \"generator\"\nsignal = \"metric\"\n\n\
             [sinks.out]\ntype = \"console\"\ninputs = [\"gen\"]\n"
        )
    };
    std::fs::write(
        &path,
        config("address = \"0.0.0.0:8686\"\nplaintext = true"),
    )
    .unwrap();
    let (code, out, err) = iotel(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(": valid (2 components)"), "{out}");
    assert_eq!(
        err,
        format!(
            "warning: {}: api.address: the node API listens on 0.0.0.0:8686 beyond loopback \
             without authentication: retiring and enabling metric families (DELETE/PUT \
             /api/v1/metrics/...) answer 403; set token_file, or a tls table with ca_file \
             (client certificates)\n",
            path.display()
        )
    );

    // With a token: no warning; a token file that is missing is an error.
    std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
    std::fs::write(
        &path,
        config("address = \"0.0.0.0:8686\"\nplaintext = true\ntoken_file = \"token\""),
    )
    .unwrap();
    let (code, _, err) = iotel(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_eq!((code, err.as_str()), (0, ""));
    std::fs::remove_file(dir.path().join("token")).unwrap();
    let (code, _, err) = iotel(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!(
            "{}: api.token_file: cannot read the token file {}: ",
            path.display(),
            dir.path().join("token").display()
        )),
        "{err}"
    );
}

#[test]
fn plaintext_true_listeners_off_loopback_start_with_a_warning_each() {
    let api_port = util::free_port();
    let syslog_port = util::free_port();
    let mut node = Iotel::start_on(
        api_port,
        "agent",
        &format!(
            r#"
[api]
address = "0.0.0.0:{api_port}"
plaintext = true

[sources.syslog]
type = "syslog"
address = "udp://0.0.0.0:{syslog_port}"
plaintext = true

[sinks.out]
type = "console"
inputs = ["syslog"]
"#
        ),
        &[],
    );
    let warned = |component: &str, addr: String| {
        let want = format!(
            "listening in plaintext on {addr} (plaintext = true): anyone on the network can \
             read and forge what is sent here; add a tls table to encrypt component=\"{component}\""
        );
        let line = wait_for(&want, Duration::from_secs(10), || {
            let stderr = node.proc.stderr();
            stderr
                .lines()
                .find(|l| l.ends_with(&want))
                .map(str::to_string)
        });
        assert!(line.contains(" WARN "), "{line}");
    };
    warned("[api]", format!("0.0.0.0:{api_port}"));
    warned("syslog", format!("0.0.0.0:{syslog_port}"));
    let status = node.proc.terminate(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "{}", node.proc.report());
}

#[test]
fn sigterm_flushes_everything_accepted_and_exits_zero() {
    let mut node = Iotel::start(
        "agent",
        r#"
[api]
address = "{API}"

[sources.gen]
type = "generator"
signal = "log"
interval = "1ms"
batch_size = 50

[sinks.out]
type = "file"
inputs = ["gen"]
path = "{DIR}/out.ndjson"
"#,
        &[],
    );
    let out = node.dir().join("out.ndjson");
    wait_for("some lines to be written", Duration::from_secs(20), || {
        let n = std::fs::read_to_string(&out).ok()?.lines().count();
        (n >= 500).then_some(n)
    });
    let status = node.proc.terminate(Duration::from_secs(20)).unwrap();
    assert!(
        status.success(),
        "exit status {status}\n{}",
        node.proc.report()
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let seqs: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["fields"]["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    // Every event the generator sent before it stopped is in the file, in
    // order, no gaps: the count comes from the node's final totals.
    let stderr = node.proc.stderr();
    let totals = stderr
        .lines()
        .find(|l| l.contains("final totals") && l.contains("component=gen "))
        .unwrap_or_else(|| panic!("no final totals for gen in:\n{stderr}"));
    let sent: u64 = totals
        .split_whitespace()
        .find_map(|w| w.strip_prefix("sent="))
        .and_then(|v| v.parse().ok())
        .unwrap();
    let expected: Vec<u64> = (0..sent).collect();
    assert_eq!(seqs, expected);
    assert!(totals.contains("discarded=0"), "{totals}");
}

#[test]
fn node_api_answers_health_readiness_and_metrics_in_both_formats() {
    let node = Iotel::start(
        "agent",
        r#"
[api]
address = "{API}"

[sources.gen]
type = "generator"
signal = "metric"
interval = "10ms"
count = 3

# Runs on, so the node does not stop once the generator is done.
[sources.own]
type = "internal_metrics"
interval = "1s"

[sinks.out]
type = "file"
inputs = ["gen", "own"]
path = "{DIR}/out.ndjson"
"#,
        &[],
    );
    assert_eq!(util::http_get(node.api, "/healthz", None).unwrap().0, 200);
    assert_eq!(util::http_get(node.api, "/readyz", None).unwrap().0, 200);
    assert_eq!(util::http_get(node.api, "/nope", None).unwrap().0, 404);

    let sent = r#"iotel_component_sent_events_total{component_id="gen",component_kind="source",component_type="generator"} 3"#;
    let (status, content_type, text) = wait_for(
        "the generator's 3 events on /metrics",
        Duration::from_secs(10),
        || util::http_get(node.api, "/metrics", None).filter(|(_, _, body)| body.contains(sent)),
    );
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        text.contains("# TYPE iotel_component_sent_events_total counter\n"),
        "{text}"
    );

    let (status, content_type, om) = util::http_get(
        node.api,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(
        om.contains("# TYPE iotel_component_sent_events counter\n"),
        "{om}"
    );
    assert!(om.contains(sent), "{om}");
    assert!(om.ends_with("# EOF\n"), "{om}");
}

#[test]
fn gateway_and_cloud_run_the_same_engine_on_a_multi_thread_runtime() {
    for role in ["gateway", "cloud"] {
        let mut node = Iotel::start(
            role,
            &r#"
[api]
address = "{API}"

[runtime]
worker_threads = 2

[sources.gen]
type = "generator"
signal = "metric"
interval = "10ms"

# No file sink: tokio's blocking pool would add threads of its own.
[sinks.local]
type = "prometheus_exporter"
inputs = ["gen"]
address = "127.0.0.1:PORT"
"#
            .replace("PORT", &util::free_port().to_string()),
            &[],
        );
        let threads = node.proc.threads();
        assert!(
            threads >= 3,
            "{role} runs {threads} threads; expected the main thread and 2 workers"
        );
        let status = node.proc.terminate(Duration::from_secs(20)).unwrap();
        assert!(
            status.success(),
            "{role} exited with {status}\n{}",
            node.proc.report()
        );
    }
}

#[test]
fn the_agent_runs_on_one_thread() {
    // Components that touch files use tokio's blocking pool; this graph does
    // not, so the one thread is the runtime's.
    let config = r#"
[api]
address = "{API}"

[sources.gen]
type = "generator"
signal = "metric"
interval = "10ms"

[sinks.local]
type = "prometheus_exporter"
inputs = ["gen"]
address = "127.0.0.1:PORT"
"#
    .replace("PORT", &util::free_port().to_string());
    let node = Iotel::start("agent", &config, &[]);
    let threads = node.proc.threads();
    assert_eq!(threads, 1);
}
