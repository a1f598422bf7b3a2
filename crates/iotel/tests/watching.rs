//! Watching a running node: the status page as a browser shows it (a real
//! node, and Debian's Chromium in headless mode loading the page from the
//! node's API, running its script against the live JSON, and printing the
//! DOM and a screenshot), `iotel top --batch` and `iotel tap`.

#![allow(clippy::unwrap_used)]

mod util;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use util::{Iotel, free_port, http_get, wait_for};

/// Debian's Chromium; `None` when it is not installed, except under
/// `CI=true`, where that fails the test.
fn chromium() -> Option<&'static Path> {
    let bin = Path::new("/usr/bin/chromium");
    if bin.is_file() {
        return Some(bin);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "`chromium` is not installed (Debian package `chromium`); scripts/test installs it"
    );
    eprintln!("skipped: chromium is not installed (Debian package `chromium`)");
    None
}

/// Runs headless Chromium on `url` with `args`, in its own profile dir,
/// giving the page's script `budget_ms` of (virtual) time.
fn headless(bin: &Path, url: &str, budget_ms: u32, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--virtual-time-budget={budget_ms}"),
            "--window-size=1400,900",
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The text of the first element after `marker` in `dom`, up to the next tag.
fn text_after<'a>(dom: &'a str, marker: &str) -> &'a str {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} is not in the page:\n{dom}"));
    let rest = &dom[at + marker.len()..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap();
    &rest[start..start + end]
}

#[test]
fn the_status_page_draws_the_graph_with_each_components_counts_and_buffer() {
    let Some(bin) = chromium() else {
        return;
    };
    // A remote-write peer that is not there: its sink's errors, buffer and
    // age grow. A filter that drops the lines with a 3 in them: discards.
    let dead = free_port();
    let node = Iotel::start(
        "agent",
        &format!(
            r#"
[api]
address = "{{API}}"

[sources.lines]
type = "generator"
signal = "log"
interval = "50ms"
batch_size = 10
count = 100

[sources.readings]
type = "generator"
signal = "metric"
interval = "100ms"
batch_size = 5

[transforms.quiet]
type = "filter"
inputs = ["lines"]
selector = '{{}} |= "3"'
action = "drop"

[sinks.archive]
type = "file"
inputs = ["quiet"]
path = "{{DIR}}/lines.ndjson"

[sinks.central]
type = "prometheus_remote_write"
inputs = ["readings"]
endpoint = "http://127.0.0.1:{dead}/api/v1/write"
buffer = {{ type = "disk", max_size = "64MiB" }}
"#
        ),
        &[],
    );
    // Every line generated and filtered; the sink to nowhere failed.
    wait_for("the lines and a failure", Duration::from_secs(30), || {
        let archived = node.metric(
            "iotel_component_sent_events_total",
            &[r#"component_id="archive""#],
        );
        let failed = node.metric(
            "iotel_component_errors_total",
            &[r#"component_id="central""#],
        );
        (archived == 81.0 && failed > 0.0).then_some(())
    });
    let (status, content_type, _) = http_get(node.api, "/", None).unwrap();
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/html; charset=utf-8")
    );

    let url = format!("http://{}/", node.api);
    let dom = headless(bin, &url, 5000, &["--dump-dom"]);
    // The script ran against the node and says so.
    assert_eq!(text_after(&dom, r#"id="state""#), "live");
    assert!(text_after(&dom, r#"id="config""#).ends_with("iotel.toml"));
    // The graph: a box per component, an arrow per input.
    for id in ["lines", "readings", "quiet", "archive", "central"] {
        assert!(
            dom.contains(&format!(r#"data-component="{id}" transform="translate("#)),
            "no box for {id}:\n{dom}"
        );
    }
    for (from, to) in [
        ("lines", "quiet"),
        ("quiet", "archive"),
        ("readings", "central"),
    ] {
        assert!(
            dom.contains(&format!(r#"data-from="{from}" data-to="{to}""#)),
            "no arrow {from} → {to}:\n{dom}"
        );
    }
    // The table: the filter's discards by reason, the failing sink's
    // errors and its buffer.
    let row = |id: &str| {
        let start = dom.find(&format!(r#"<tr data-component="{id}">"#)).unwrap();
        let end = dom[start..].find("</tr>").unwrap();
        dom[start..start + end].to_string()
    };
    let quiet = row("quiet");
    assert!(
        quiet.contains(
            r#"<td class="num warn" title="{&quot;filtered&quot;:19}">19 (filtered 19)</td>"#
        ),
        "{quiet}"
    );
    let central = row("central");
    assert!(
        central.contains("<td>prometheus_remote_write</td>"),
        "{central}"
    );
    assert!(central.contains(r#"<td class="num bad""#), "{central}");
    // A few hundred events of 64 MiB: hundredths of a percent.
    assert!(
        central.contains(r#"<td class="buffer"><span class="gauge" title="0.0% full"><i style="width:0%"></i></span>0.0"#),
        "{central}"
    );
    assert!(central.contains(" events, oldest "), "{central}");
    assert!(central.ends_with(r#"<td class="num">–</td>"#), "{central}");
    assert!(central.contains(" MiB</td>"), "{central}");
    assert!(row("archive").contains(r#"<td class="buffer"><span class="mute">–</span>"#));
    assert_eq!(
        text_after(&dom, r#"<td colspan="3" class="mute""#),
        "no TLS in use"
    );

    // And as a picture: a PNG of the window's size.
    let shot = node.dir().join("status.png");
    headless(
        bin,
        &url,
        5000,
        &[&format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1400, 900));
    assert!(png.len() > 20_000, "a blank page? {} bytes", png.len());
}

/// A node whose source sends 30 log lines at start (then one an hour) to
/// a file.
const THIRTY_LINES: &str = r#"
[api]
address = "{API}"

[sources.lines]
type = "generator"
signal = "log"
interval = "1h"
batch_size = 30

[sinks.archive]
type = "file"
inputs = ["lines"]
path = "{DIR}/lines.ndjson"
"#;

#[test]
fn the_components_json_has_the_graph_and_totals() {
    let node = Iotel::start("agent", THIRTY_LINES, &[]);
    let json = wait_for("every line archived", Duration::from_secs(30), || {
        let (status, content_type, body) = http_get(node.api, "/api/v1/components", None)?;
        assert_eq!((status, content_type.as_str()), (200, "application/json"));
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        (json["components"][1]["sent"] == 30).then_some(json)
    });
    assert_eq!(
        json["node"]["components"],
        serde_json::json!([
            {"id": "lines", "kind": "source", "type": "generator", "inputs": []},
            {"id": "archive", "kind": "sink", "type": "file", "inputs": ["lines"]},
        ])
    );
    assert_eq!(json["components"][0]["id"], "lines");
    assert_eq!(json["components"][0]["sent"], 30);
    assert_eq!(json["components"][1]["received"], 30);
    assert_eq!(json["components"][1]["errors"], 0);
}

/// Runs `iotel <command>` with `args`: exit code, stdout, stderr.
fn iotel(command: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .arg(command)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn top(args: &[&str]) -> (i32, String, String) {
    iotel("top", args)
}

#[test]
fn top_in_batch_mode_prints_a_table_per_reading() {
    let node = Iotel::start("agent", THIRTY_LINES, &[]);
    wait_for("every line archived", Duration::from_secs(30), || {
        (node.metric(
            "iotel_component_sent_events_total",
            &[r#"component_id="archive""#],
        ) == 30.0)
            .then_some(())
    });
    let api = node.api.to_string();
    let (code, stdout, stderr) = top(&["--api", &api, "--batch", "2", "--interval", "200ms"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{stdout}");
    for table in lines.chunks(4) {
        assert!(
            table[0].starts_with(&format!("iotel top · http://{api} · ")),
            "{stdout}"
        );
        assert!(table[1].starts_with("COMPONENT"), "{stdout}");
        let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            cols(table[2]),
            [
                "lines",
                "source",
                "generator",
                "0",
                "0",
                "0",
                "0",
                "0",
                "-",
                "-",
                "-"
            ]
        );
        assert_eq!(
            cols(table[3]),
            [
                "archive", "sink", "file", "0", "0", "0", "0", "0", "-", "-", "-"
            ]
        );
    }
    // Only what the filter names.
    let (code, stdout, _) = top(&["--api", &api, "--batch", "1", "--filter", "sink"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(stdout.lines().nth(2).unwrap().starts_with("archive"));
}

#[test]
fn top_says_when_the_node_is_down_or_not_an_iotel_node() {
    let closed = free_port();
    let (code, stdout, stderr) = top(&[
        "--api",
        &format!("127.0.0.1:{closed}"),
        "--batch",
        "2",
        "--interval",
        "100ms",
    ]);
    assert_eq!((code, stdout.as_str()), (1, ""));
    let expected = format!(
        "cannot reach the node API at http://127.0.0.1:{closed}: Connection refused (os error \
         111) (is the node running, with [api] address there?); reading again in 100ms\n"
    );
    assert_eq!(stderr, expected.repeat(2));

    let other = util::serve_exposition("up 1\n");
    let (code, _, stderr) = top(&["--api", &other.to_string(), "--batch", "1"]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(&format!(
            "http://{other}/api/v1/components answered, but not with an iotel node's JSON ("
        )),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(&format!(
            "): is http://{other} an iotel node API?; reading again in 1s\n"
        )),
        "{stderr}"
    );
}

fn tap(args: &[&str]) -> (i32, String, String) {
    iotel("tap", args)
}

#[test]
fn tap_shows_what_leaves_a_transform_and_says_what_cannot_be_tapped() {
    let node = Iotel::start(
        "agent",
        r#"
[api]
address = "{API}"

[sources.lines]
type = "generator"
signal = "log"
interval = "20ms"
batch_size = 10

[transforms.quiet]
type = "filter"
inputs = ["lines"]
selector = '{} |= "3"'
action = "drop"

[sinks.archive]
type = "file"
inputs = ["quiet"]
path = "{DIR}/lines.ndjson"
"#,
        &[],
    );
    let api = node.api.to_string();
    let (code, stdout, stderr) = tap(&["--api", &api, "quiet", "--rate", "5", "--limit", "12"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12, "{stdout}");
    for l in &lines {
        let message = l["message"].as_str().unwrap();
        assert!(message.starts_with("generated line "), "{l}");
        // The filter took out every line with a 3.
        assert!(!message.contains('3'), "{l}");
    }
    // Before the filter, the 3s are there; and at most the rate per second.
    let (code, stdout, stderr) = tap(&["--api", &api, "lines", "--rate", "1000", "--limit", "400"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.lines().any(|l| l.contains('3')), "{stdout}");
    assert!(
        stderr.starts_with("shown 400 of the ")
            && stderr.ends_with(" events that left lines while watched (at most 1000/s)\n"),
        "{stderr}"
    );

    let (code, stdout, stderr) = tap(&["--api", &api, "archive"]);
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert_eq!(
        stderr,
        format!(
            "http://{api}: \"archive\" is a sink: nothing leaves it downstream; tap one of its \
             inputs\n"
        )
    );
    let (code, _, stderr) = tap(&["--api", &api, "nope"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        format!("http://{api}: no output \"nope\"; outputs that can be tapped: lines, quiet\n")
    );
    let (code, _, stderr) = tap(&["--api", &api, "quiet", "--rate", "0"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "error: --rate: expected events per second from 1 to 1000, got 0\n"
    );
}

#[test]
fn top_reads_an_api_that_asks_for_client_certificates() {
    let pki = tempfile::tempdir().unwrap();
    let p = pki.path().display().to_string();
    for args in [
        vec!["init", "--dir", &p],
        vec![
            "issue-server",
            "--dir",
            &p,
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
        ],
        vec!["issue-device", "--dir", &p, "--device-id", "operator"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_iotel"))
            .arg("certs")
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let port = free_port();
    let mut node = Iotel::start_unready(
        "agent",
        &format!(
            r#"
[api]
address = "127.0.0.1:{port}"
tls = {{ cert_file = "{p}/servers/localhost.pem", key_file = "{p}/servers/localhost.key", ca_file = "{p}/ca.pem" }}

[sources.lines]
type = "generator"
signal = "log"
interval = "1h"

[sinks.archive]
type = "file"
inputs = ["lines"]
path = "{{DIR}}/lines.ndjson"
"#
        ),
    );
    let api = format!("https://localhost:{port}");
    let ca = format!("{p}/ca.pem");
    let (cert, key) = (
        format!("{p}/devices/operator.pem"),
        format!("{p}/devices/operator.key"),
    );
    let stdout = wait_for("top over mutual TLS", Duration::from_secs(30), || {
        let (code, stdout, _) = top(&[
            "--api",
            &api,
            "--ca-file",
            &ca,
            "--cert-file",
            &cert,
            "--key-file",
            &key,
            "--batch",
            "1",
        ]);
        (code == 0).then_some(stdout)
    });
    assert!(
        stdout.lines().nth(2).unwrap().starts_with("lines "),
        "{stdout}"
    );
    // Without a client certificate the node refuses the handshake.
    let (code, stdout, stderr) = top(&["--api", &api, "--ca-file", &ca, "--batch", "1"]);
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(
        stderr.starts_with(&format!("cannot reach the node API at {api}: ")),
        "{stderr}"
    );
    node.proc.terminate(Duration::from_secs(10));
}
