//! The `file_tail` and `stdin` sources end to end: the real binary
//! (`iotel agent`) tails a file the test writes, rotates, truncates,
//! deletes, and is stopped, killed and restarted; a `file` sink records
//! what came through. Every line carries its sequence number, so each is
//! counted: `line 000042`.

#![allow(clippy::unwrap_used)]

mod util;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use util::{Iotel, wait_for};

/// An agent tailing `{DIR}/app.log` into `{DIR}/received.ndjson`, with
/// short intervals so the tests run fast; `extra` adds source keys.
fn config(extra: &str) -> String {
    format!(
        r#"
[api]
address = "{{API}}"

[sources.logs]
type = "file_tail"
include = ["{{DIR}}/app.log"]
poll_interval = "20ms"
glob_interval = "100ms"
rotate_wait = "1s"
positions_sync_interval = "100ms"
labels = {{ job = "e2e" }}
{extra}

[sinks.out]
type = "file"
inputs = ["logs"]
path = "{{DIR}}/received.ndjson"
"#
    )
}

fn lines(range: std::ops::Range<u64>) -> String {
    range.map(|i| format!("line {i:06}\n")).collect()
}

/// Every record the sink wrote, in order. A line torn by a kill -9 in the
/// middle of a write has the next run's first record glued to it; that
/// record is recovered, the torn one (never acknowledged, so sent again)
/// is skipped.
fn records(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("received.ndjson")).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str(line) {
            out.push(v);
        } else if let Some(i) = line.rfind("{\"signal\"")
            && let Ok(v) = serde_json::from_str(&line[i..])
        {
            out.push(v);
        }
    }
    out
}

/// The sequence numbers of the `line NNNNNN` records, in arrival order.
fn seqs(dir: &Path) -> Vec<u64> {
    records(dir)
        .iter()
        .filter_map(|v| v["message"].as_str()?.strip_prefix("line ")?.parse().ok())
        .collect()
}

fn wait_for_count(node: &Iotel, n: usize) {
    wait_for(
        &format!("{n} records to arrive"),
        Duration::from_secs(60),
        || (seqs(node.dir()).len() >= n).then_some(()),
    );
}

fn assert_exactly(got: &[u64], want: std::ops::Range<u64>) {
    let want: Vec<u64> = want.collect();
    if got != want {
        let missing: Vec<&u64> = want.iter().filter(|i| !got.contains(i)).take(10).collect();
        panic!(
            "expected {} lines in order, each once; got {} (first missing: {missing:?})",
            want.len(),
            got.len()
        );
    }
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

#[test]
fn rotation_by_rename_and_create_delivers_every_line_once_in_order() {
    let node = Iotel::start("agent", &config(""), &[]);
    let log = node.dir().join("app.log");
    let mut writer = std::fs::File::create(&log).unwrap();
    writer.write_all(lines(0..1000).as_bytes()).unwrap();
    wait_for_count(&node, 1000);
    // logrotate's `create`: rename, then a new file at the path; the
    // application still writes to the old one until it reopens its log.
    std::fs::rename(&log, node.dir().join("app.log.1")).unwrap();
    writer.write_all(lines(1000..1500).as_bytes()).unwrap();
    let mut reopened = std::fs::File::create(&log).unwrap();
    reopened.write_all(lines(1500..3000).as_bytes()).unwrap();
    wait_for_count(&node, 3000);
    assert_exactly(&seqs(node.dir()), 0..3000);
    assert_eq!(
        node.metric("iotel_file_tail_rotations_total", &["kind=\"rename\""]),
        1.0
    );
    // The renamed file is closed once it stayed unchanged for rotate_wait.
    wait_for(
        "the renamed file to be released",
        Duration::from_secs(30),
        || (node.metric("iotel_file_tail_files_watched", &[]) == 1.0).then_some(()),
    );
    let labels = &records(node.dir())[2999]["labels"];
    assert_eq!(labels["filename"], log.display().to_string());
    assert_eq!(labels["job"], "e2e");
}

#[test]
fn copytruncate_delivers_the_lines_written_after_the_truncation() {
    let node = Iotel::start("agent", &config(""), &[]);
    let log = node.dir().join("app.log");
    append(&log, &lines(0..500));
    wait_for_count(&node, 500);
    // logrotate's `copytruncate`: copy, then truncate in place.
    std::fs::copy(&log, node.dir().join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &lines(500..600));
    wait_for_count(&node, 600);
    assert_exactly(&seqs(node.dir()), 0..600);
    assert_eq!(
        node.metric(
            "iotel_file_tail_rotations_total",
            &["kind=\"copytruncate\""]
        ),
        1.0
    );
}

#[test]
fn a_restart_resumes_where_it_left_off_with_each_line_exactly_once() {
    let mut node = Iotel::start("agent", &config(""), &[]);
    let log = node.dir().join("app.log");
    append(&log, &lines(0..1000));
    wait_for_count(&node, 1000);
    let status = node.proc.terminate(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "{status}\n{}", node.proc.report());
    let positions =
        std::fs::read_to_string(node.dir().join("data/file_tail/logs/positions.json")).unwrap();
    assert!(positions.contains("\"offset\": 12000"), "{positions}");
    // Written while the agent was stopped.
    append(&log, &lines(1000..2000));
    let dir = std::mem::replace(&mut node.proc.dir, tempfile::tempdir().unwrap());
    let node = Iotel::restart_in(dir, node.api.port(), "agent");
    wait_for_count(&node, 2000);
    assert_exactly(&seqs(node.dir()), 0..2000);
}

#[test]
fn kill_9_mid_stream_loses_no_line_and_repeats_only_one_bounded_stretch() {
    let node = Iotel::start("agent", &config(""), &[]);
    let log = node.dir().join("app.log");
    let total = 20_000;
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for chunk in 0..total / 100 {
                append(&log, &lines(chunk * 100..(chunk + 1) * 100));
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    wait_for_count(&node, 3000);
    let (dir, api, role) = node.kill9();
    let before_kill = seqs(dir.path()).len();
    // Where the restart resumes: the position last written, every 100ms.
    let stored: u64 =
        std::fs::read_to_string(dir.path().join("data/file_tail/logs/positions.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["files"][0]["offset"].as_u64())
            .unwrap_or(0);
    let node = Iotel::restart_in(dir, api, &role);
    writer.join().unwrap();
    wait_for("every line to arrive", Duration::from_secs(60), || {
        let mut s = seqs(node.dir());
        s.sort_unstable();
        s.dedup();
        (s.len() as u64 == total).then_some(())
    });
    let got = seqs(node.dir());
    // The run after the restart starts again at the last stored position,
    // which is behind what the first run delivered by at most what it read
    // in its last positions interval: one stretch of lines, in order.
    let first_run = &got[..before_kill];
    let second_run = &got[before_kill..];
    assert_exactly(first_run, 0..before_kill as u64);
    let resumed_at = second_run[0];
    assert_eq!(resumed_at, stored / 12, "each line is 12 bytes");
    assert!(resumed_at <= before_kill as u64, "resumed at {resumed_at}");
    assert_exactly(second_run, resumed_at..total);
    // Repeated: what was delivered after the last positions write.
    let duplicates = before_kill as u64 - resumed_at;
    eprintln!("{duplicates} line(s) delivered twice after kill -9");
}

#[test]
fn read_from_end_skips_the_lines_already_there() {
    let node = Iotel::start(
        "agent",
        &config("read_from = \"end\""),
        &[("app.log", &lines(0..100))],
    );
    wait_for("the file to be watched", Duration::from_secs(30), || {
        (node.metric("iotel_file_tail_files_watched", &[]) == 1.0).then_some(())
    });
    append(&node.dir().join("app.log"), &lines(100..200));
    wait_for_count(&node, 100);
    assert_exactly(&seqs(node.dir()), 100..200);
}

#[test]
fn a_file_deleted_while_open_is_read_to_its_end_and_released() {
    let node = Iotel::start("agent", &config(""), &[]);
    let log = node.dir().join("app.log");
    append(&log, &lines(0..100));
    wait_for_count(&node, 100);
    // Deleted right after lines it was not yet seen to have: they are
    // still read, from the descriptor the source holds.
    append(&log, &lines(100..150));
    std::fs::remove_file(&log).unwrap();
    wait_for_count(&node, 150);
    assert_exactly(&seqs(node.dir()), 0..150);
    wait_for("the file to be released", Duration::from_secs(30), || {
        (node.metric("iotel_file_tail_files_watched", &[]) == 0.0).then_some(())
    });
    let positions = node.dir().join("data/file_tail/logs/positions.json");
    wait_for(
        "its position to be dropped",
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(&positions).unwrap_or_default();
            text.contains("\"files\": []").then_some(())
        },
    );
}

#[test]
fn binary_garbage_and_a_10_mb_line_are_flagged_and_the_good_lines_around_them_arrive() {
    let node = Iotel::start("agent", &config(""), &[]);
    let log = node.dir().join("app.log");
    let mut content = b"line 000000\n\x00\x01\xFF\xFEbinary\x9F\x00\nline 000001\n".to_vec();
    let long_at = content.len();
    content.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
    content.extend_from_slice(b"\nline 000002\n");
    std::fs::write(&log, &content).unwrap();
    wait_for_count(&node, 3);
    let got = records(node.dir());
    assert_eq!(got.len(), 5, "{got:?}");
    assert_exactly(&seqs(node.dir()), 0..3);
    assert_eq!(got[1]["message"], "\0\u{1}\u{FFFD}\u{FFFD}binary\u{FFFD}\0");
    assert_eq!(got[1]["fields"]["invalid_utf8"], true);
    let long = got[3]["message"].as_str().unwrap();
    assert_eq!(long.len(), 102_400);
    assert!(long.bytes().all(|b| b == b'x'));
    assert_eq!(got[3]["fields"]["truncated"], true);
    for code in ["invalid_utf8", "line_truncated"] {
        let label = format!("error_code=\"{code}\"");
        assert_eq!(
            node.metric("iotel_component_errors_total", &[&label]),
            1.0,
            "{code}"
        );
    }
    let stderr = node.proc.stderr();
    let want = format!(
        "{}: the line at byte offset {long_at} is 10485760 bytes, longer than max_line_bytes \
         (102400); kept its first 102400 bytes",
        log.display()
    );
    assert!(stderr.contains(&want), "{want}\n{stderr}");
    let want = format!(
        "{}: the line at byte offset 12 is not valid UTF-8",
        log.display()
    );
    assert!(stderr.contains(&want), "{want}\n{stderr}");
}

#[test]
fn stdin_lines_become_records_and_the_node_stops_at_end_of_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.ndjson");
    let config = format!(
        r#"
[api]
enabled = false

[sources.pipe]
type = "stdin"
labels = {{ job = "pipe" }}

[sinks.out]
type = "file"
inputs = ["pipe"]
path = "{}"
"#,
        out.display()
    );
    std::fs::write(dir.path().join("iotel.toml"), config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .args(["agent", "--config", "iotel.toml", "--data-dir", "data"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("iotel.err")).unwrap())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(lines(0..1000).as_bytes()).unwrap();
    stdin.write_all(b"last line without newline").unwrap();
    drop(stdin);
    let status = wait_for("iotel to exit", Duration::from_secs(30), || {
        child.try_wait().unwrap()
    });
    let stderr = std::fs::read_to_string(dir.path().join("iotel.err")).unwrap();
    assert!(status.success(), "{status}\n{stderr}");
    assert_exactly(&seqs(dir.path()), 0..1000);
    let got = records(dir.path());
    assert_eq!(got.len(), 1001);
    assert_eq!(got[1000]["message"], "last line without newline");
    assert_eq!(got[1000]["labels"]["job"], "pipe");
}
