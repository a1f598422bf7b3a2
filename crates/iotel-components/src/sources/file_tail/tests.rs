use super::positions::{FileId, Position, PositionsFile};
use super::tailer::{TailMetrics, Tailer};
use super::*;
use iotel_engine::{ComponentError, ComponentKey, ComponentMetrics, Output, SourceContext};
use iotel_model::{Events, LogRecord};
use std::io::Write;
use std::path::Path;
use std::time::Duration as StdDuration;
use std::time::Instant;

fn config(text: &str) -> Config {
    toml::from_str(text).unwrap()
}

fn problems(text: &str) -> Vec<(String, String)> {
    config(text)
        .validate()
        .into_iter()
        .map(|p| (p.key, p.message))
        .collect()
}

#[test]
fn config_errors_name_their_key() {
    assert_eq!(
        problems(
            r#"
include = []
exclude = ["[a"]
poll_interval = "0s"
max_line_bytes = "32MiB"
labels = { filename = "x", "bad-name" = "y", job = "" }
multiline = { start_pattern = "(", timeout = "0s" }
"#
        ),
        [
            (
                "include".into(),
                "expected at least one glob pattern, such as \"/var/log/app/*.log\"".into()
            ),
            (
                "exclude[0]".into(),
                "invalid glob pattern \"[a\": Pattern syntax error near position 0: invalid range \
                 pattern"
                    .into()
            ),
            (
                "poll_interval".into(),
                "expected a duration greater than zero".into()
            ),
            (
                "max_line_bytes".into(),
                "expected between 1 byte and 16MiB, got 32MiB".into()
            ),
            (
                "multiline.start_pattern".into(),
                "regex parse error: unclosed group".into()
            ),
            (
                "multiline.timeout".into(),
                "expected a duration greater than zero".into()
            ),
            (
                "labels.bad-name".into(),
                "not a valid label name (expected letters, digits, '_' and '.', not starting with \
                 a digit or '.')"
                    .into()
            ),
            (
                "labels.filename".into(),
                "`filename` is set on every record to the file's path; choose another name".into()
            ),
            (
                "labels.job".into(),
                "expected a non-empty value (an empty label is an absent one)".into()
            ),
        ]
    );
}

#[test]
fn defaults_are_as_documented() {
    let c = config(r#"include = ["/var/log/*.log"]"#);
    assert_eq!(c.validate(), vec![]);
    assert_eq!(c.read_from, ReadFrom::Beginning);
    assert_eq!(c.poll_interval, Duration::from_millis(250));
    assert_eq!(c.glob_interval, Duration::from_secs(1));
    assert_eq!(c.rotate_wait, Duration::from_secs(5));
    assert_eq!(c.max_line_bytes, ByteSize(102_400));
    assert_eq!(c.batch_max_lines.get(), 1000);
    assert_eq!(c.batch_max_bytes, ByteSize(65_536));
    assert_eq!(c.positions_sync_interval, Duration::from_secs(1));
    let m = config("include = [\"x\"]\nmultiline = { start_pattern = \"^\\\\S\" }")
        .multiline
        .unwrap();
    assert_eq!(m.timeout, Duration::from_secs(1));
    assert_eq!(m.max_lines.get(), 500);
}

/// A tailer of `dir` with `extra` config keys (include defaults to
/// `dir/*.log`), and its metrics.
fn tailer(dir: &Path, extra: &str, stored: Vec<Position>) -> (Tailer, ComponentMetrics) {
    let text = if extra.contains("include") {
        extra.replace("{DIR}", &dir.display().to_string())
    } else {
        format!("include = [\"{}/*.log\"]\n{extra}", dir.display())
    };
    let c = config(&text);
    assert_eq!(c.validate(), vec![], "{text}");
    let mut cx = BuildContext::for_test("tail");
    cx.config_dir = dir.to_path_buf();
    let metrics = ComponentMetrics::detached("tail", "file_tail");
    let t = Tailer::new(c.settings(&cx).unwrap(), TailMetrics::new(&metrics), stored);
    (t, metrics)
}

fn messages(records: &[LogRecord]) -> Vec<String> {
    records.iter().map(|r| r.message.clone()).collect()
}

/// Batches until one is not full, committing each; their messages.
fn drain(t: &mut Tailer, now: Instant) -> Vec<String> {
    let mut all = Vec::new();
    loop {
        let b = t.next_batch(now);
        t.commit(&b.checkpoint);
        all.extend(messages(&b.records));
        if !b.full {
            return all;
        }
    }
}

fn append(path: &Path, text: &[u8]) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text)
        .unwrap();
}

fn counter(metrics: &ComponentMetrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut all = vec![("component_id", "tail")];
    all.extend_from_slice(labels);
    metrics.registry().counter(name, "", &all).get()
}

fn numbered(range: std::ops::Range<u32>) -> String {
    range.map(|i| format!("line {i}\n")).collect()
}

fn expect(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("line {i}")).collect()
}

#[test]
fn every_line_becomes_a_record_labelled_with_its_file_and_the_static_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::write(&path, "one\r\ntwo\npartial").unwrap();
    let (mut t, metrics) = tailer(dir.path(), "labels = { job = \"app\" }", vec![]);
    let b = t.next_batch(Instant::now());
    assert_eq!(messages(&b.records), ["one", "two"]);
    assert!(!b.full);
    let want = Labels::from_pairs([("filename", path.to_str().unwrap()), ("job", "app")]);
    assert!(
        b.records
            .iter()
            .all(|r| r.labels == want && r.fields.is_empty())
    );
    assert_eq!(
        counter(&metrics, "iotel_file_tail_read_bytes_total", &[]),
        16
    );
    // The partial line waits for its newline.
    append(&path, b" line\n");
    assert_eq!(drain(&mut t, Instant::now()), ["partial line"]);
}

#[test]
fn a_batch_ends_at_batch_max_lines_and_the_rest_follows() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.log"), numbered(0..5)).unwrap();
    let (mut t, _) = tailer(dir.path(), "batch_max_lines = 2", vec![]);
    let now = Instant::now();
    let sizes: Vec<(usize, bool)> = (0..3)
        .map(|_| {
            let b = t.next_batch(now);
            (b.records.len(), b.full)
        })
        .collect();
    assert_eq!(sizes, [(2, true), (2, true), (1, false)]);
}

#[test]
fn read_from_end_skips_what_is_there_at_start_but_not_files_that_appear_later() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.log");
    std::fs::write(&old, numbered(0..3)).unwrap();
    let (mut t, _) = tailer(dir.path(), "read_from = \"end\"", vec![]);
    let t0 = Instant::now();
    assert_eq!(drain(&mut t, t0), Vec::<String>::new());
    append(&old, b"line 3\n");
    std::fs::write(dir.path().join("new.log"), "new 0\n").unwrap();
    assert_eq!(
        drain(&mut t, t0 + StdDuration::from_secs(1)),
        ["line 3", "new 0"]
    );
}

#[test]
fn a_restart_resumes_at_the_committed_positions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    std::fs::write(&path, numbered(0..4)).unwrap();
    let (mut t, _) = tailer(dir.path(), "batch_max_lines = 3", vec![]);
    let now = Instant::now();
    let b = t.next_batch(now);
    t.commit(&b.checkpoint);
    // Read but never acknowledged: read again after the restart.
    let unacked = t.next_batch(now);
    assert_eq!(messages(&unacked.records), expect(3..4));
    let positions = t.positions();
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].offset, 21);
    assert_eq!(positions[0].path, path.display().to_string());
    append(&path, numbered(4..6).as_bytes());
    let (mut t, _) = tailer(dir.path(), "read_from = \"end\"", positions);
    assert_eq!(drain(&mut t, now), expect(3..6));
}

#[test]
fn a_failed_acknowledgement_reads_again_from_the_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    std::fs::write(&path, numbered(0..4)).unwrap();
    let (mut t, _) = tailer(dir.path(), "batch_max_lines = 2", vec![]);
    let now = Instant::now();
    let first = t.next_batch(now);
    t.commit(&first.checkpoint);
    let second = t.next_batch(now);
    assert_eq!(messages(&second.records), expect(2..4));
    t.rewind();
    // The failed batch's checkpoint no longer commits anything.
    t.commit(&second.checkpoint);
    assert_eq!(t.positions()[0].offset, 14);
    assert_eq!(drain(&mut t, now), expect(2..4));
    assert_eq!(t.positions()[0].offset, 28);
}

#[test]
fn a_stored_position_whose_fingerprint_differs_belongs_to_another_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    std::fs::write(&path, numbered(0..2)).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    // The same inode, but the file that was there began differently (the
    // inode was reused after a rotation).
    let stale = Position::new(
        &path,
        FileId::of(&meta),
        7,
        positions::Fingerprint::of_prefix(b"something else\n"),
    );
    let (mut t, _) = tailer(dir.path(), "", vec![stale]);
    assert_eq!(drain(&mut t, Instant::now()), expect(0..2));
}

#[test]
fn rename_and_create_reads_the_renamed_file_to_its_end_then_the_new_one_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::write(&path, numbered(0..3)).unwrap();
    let include = format!("include = [\"{}\"]", path.display());
    let (mut t, metrics) = tailer(dir.path(), &include, vec![]);
    let t0 = Instant::now();
    assert_eq!(drain(&mut t, t0), expect(0..3));
    // The writer still holds the old file after the rename and writes two
    // more lines to it before it reopens the path.
    let mut writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
    writer.write_all(numbered(3..5).as_bytes()).unwrap();
    std::fs::write(&path, numbered(5..7)).unwrap();
    let t1 = t0 + StdDuration::from_secs(2);
    assert_eq!(drain(&mut t, t1), expect(3..7));
    assert_eq!(
        counter(
            &metrics,
            "iotel_file_tail_rotations_total",
            &[("kind", "rename")]
        ),
        1
    );
    assert_eq!(t.watched(), 2);
    // A late line to the renamed file within rotate_wait is still read.
    writer.write_all(b"late\n").unwrap();
    assert_eq!(drain(&mut t, t1 + StdDuration::from_secs(1)), ["late"]);
    // Five seconds after it last grew, it is finished and released.
    let t2 = t1 + StdDuration::from_secs(7);
    assert_eq!(drain(&mut t, t2), Vec::<String>::new());
    let _ = t.next_batch(t2);
    assert_eq!(t.watched(), 1);
    let labels: Vec<String> = t.positions().iter().map(|p| p.path.clone()).collect();
    assert_eq!(labels, [path.display().to_string()]);
}

#[test]
fn a_file_renamed_while_stopped_resumes_under_its_old_name_before_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::write(&path, numbered(0..2)).unwrap();
    let include = format!("include = [\"{}*\"]", path.display());
    let (mut t, _) = tailer(dir.path(), &include, vec![]);
    assert_eq!(drain(&mut t, Instant::now()), expect(0..2));
    let positions = t.positions();
    drop(t);
    let rotated = dir.path().join("app.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    append(&rotated, numbered(2..4).as_bytes());
    std::fs::write(&path, numbered(4..6)).unwrap();
    let (mut t, _) = tailer(dir.path(), &include, positions);
    let b = t.next_batch(Instant::now());
    assert_eq!(messages(&b.records), expect(2..6));
    let names: Vec<&str> = b
        .records
        .iter()
        .map(|r| r.labels.get("filename").unwrap())
        .collect();
    assert!(
        names.iter().all(|n| *n == path.to_str().unwrap()),
        "{names:?}"
    );
}

#[test]
fn copytruncate_reads_the_file_again_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::write(&path, numbered(0..3)).unwrap();
    let (mut t, metrics) = tailer(dir.path(), "", vec![]);
    let now = Instant::now();
    assert_eq!(drain(&mut t, now), expect(0..3));
    std::fs::copy(&path, dir.path().join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, b"line 3\n");
    assert_eq!(drain(&mut t, now), expect(3..4));
    assert_eq!(t.positions()[0].offset, 7);
    assert_eq!(
        counter(
            &metrics,
            "iotel_file_tail_rotations_total",
            &[("kind", "copytruncate")]
        ),
        1
    );
}

#[test]
fn a_file_rewritten_past_the_old_offset_is_noticed_by_its_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::write(&path, "short\n").unwrap();
    let (mut t, metrics) = tailer(dir.path(), "", vec![]);
    let now = Instant::now();
    assert_eq!(drain(&mut t, now), ["short"]);
    // Truncated and written again faster than a poll: longer than before.
    std::fs::write(&path, numbered(0..3)).unwrap();
    assert_eq!(drain(&mut t, now), expect(0..3));
    assert_eq!(
        counter(
            &metrics,
            "iotel_file_tail_rotations_total",
            &[("kind", "copytruncate")]
        ),
        1
    );
}

#[test]
fn a_file_deleted_while_open_is_read_to_its_end_then_released_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::write(&path, numbered(0..2)).unwrap();
    let (mut t, _) = tailer(dir.path(), "", vec![]);
    let t0 = Instant::now();
    assert_eq!(drain(&mut t, t0), expect(0..2));
    append(&path, b"line 2\nno newline");
    std::fs::remove_file(&path).unwrap();
    let t1 = t0 + StdDuration::from_secs(1);
    let b = t.next_batch(t1);
    assert_eq!(messages(&b.records), ["line 2", "no newline"]);
    // Kept until its last records are acknowledged.
    assert_eq!(t.watched(), 1);
    t.commit(&b.checkpoint);
    let _ = t.next_batch(t1);
    assert_eq!(t.watched(), 0);
    assert_eq!(t.positions(), vec![]);
}

#[test]
fn excluded_files_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.log"), "a\n").unwrap();
    std::fs::write(dir.path().join("b.log"), "b\n").unwrap();
    let (mut t, _) = tailer(dir.path(), "exclude = [\"**/b.log\"]", vec![]);
    assert_eq!(drain(&mut t, Instant::now()), ["a"]);
}

#[test]
fn multiline_records_are_joined_and_the_last_one_flushed_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::write(&path, "ERROR boom\n  at a()\n  at b()\nINFO fine\n").unwrap();
    let (mut t, _) = tailer(
        dir.path(),
        "multiline = { start_pattern = '^[A-Z]+ ', timeout = \"2s\" }",
        vec![],
    );
    let t0 = Instant::now();
    let b = t.next_batch(t0);
    assert_eq!(messages(&b.records), ["ERROR boom\n  at a()\n  at b()"]);
    t.commit(&b.checkpoint);
    // "INFO fine" is held and not committed: a restart would read it again.
    assert_eq!(t.positions()[0].offset, 29);
    assert_eq!(
        drain(&mut t, t0 + StdDuration::from_millis(500)),
        Vec::<String>::new()
    );
    assert_eq!(drain(&mut t, t0 + StdDuration::from_secs(2)), ["INFO fine"]);
    assert_eq!(t.positions()[0].offset, 39);
}

#[test]
fn binary_garbage_and_a_10_mb_line_are_flagged_and_the_good_lines_around_them_flow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let mut content = b"good 0\n".to_vec();
    content.extend_from_slice(b"\x00\xFF\xFE\x01garbage\x9F\n");
    content.extend_from_slice(b"good 1\n");
    content.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
    content.extend_from_slice(b"\ngood 2\n");
    std::fs::write(&path, &content).unwrap();
    let (mut t, metrics) = tailer(dir.path(), "max_line_bytes = \"1KiB\"", vec![]);
    let mut records = Vec::new();
    let now = Instant::now();
    loop {
        let b = t.next_batch(now);
        t.commit(&b.checkpoint);
        records.extend(b.records);
        if !b.full {
            break;
        }
    }
    let got: Vec<(
        String,
        Option<&serde_json::Value>,
        Option<&serde_json::Value>,
    )> = records
        .iter()
        .map(|r| {
            let shown = if r.message.len() > 20 {
                format!("{}…{}", &r.message[..3], r.message.len())
            } else {
                r.message.clone()
            };
            (
                shown,
                r.fields.get("truncated"),
                r.fields.get("invalid_utf8"),
            )
        })
        .collect();
    let yes = serde_json::Value::Bool(true);
    assert_eq!(
        got,
        [
            ("good 0".into(), None, None),
            (
                "\0\u{FFFD}\u{FFFD}\u{1}garbage\u{FFFD}".into(),
                None,
                Some(&yes)
            ),
            ("good 1".into(), None, None),
            ("xxx…1024".into(), Some(&yes), None),
            ("good 2".into(), None, None),
        ]
    );
    let errors = |code| metrics.errors(code).get();
    assert_eq!(errors("invalid_utf8"), 1);
    assert_eq!(errors("line_truncated"), 1);
    assert_eq!(t.positions()[0].offset, content.len() as u64);
}

/// Runs a `file_tail` source over `dir` with fast intervals; the batches
/// come out on the returned receiver, unacknowledged.
fn start_source(
    dir: &Path,
    data_dir: &Path,
) -> (
    iotel_engine::TestReceiver,
    iotel_engine::ShutdownTrigger,
    tokio::task::JoinHandle<Result<(), ComponentError>>,
) {
    let c = config(&format!(
        "include = [\"{}/*.log\"]\npoll_interval = \"10ms\"\nglob_interval = \"10ms\"\n\
         positions_sync_interval = \"10ms\"",
        dir.display()
    ));
    let source = c.build(&BuildContext::for_test("tail")).unwrap();
    let (out, rx) = Output::for_test(4);
    let (trigger, shutdown) = iotel_engine::shutdown::channel();
    let cx = SourceContext {
        key: ComponentKey {
            id: "tail".into(),
            type_name: "file_tail".into(),
        },
        out,
        shutdown,
        metrics: ComponentMetrics::detached("tail", "file_tail"),
        data_dir: data_dir.to_path_buf(),
    };
    (rx, trigger, tokio::spawn(source.run(cx)))
}

fn stored_offset(data_dir: &Path) -> Option<u64> {
    let store = PositionsFile::in_dir(&data_dir.join("file_tail").join("tail"));
    store.load().ok()?.first().map(|p| p.offset)
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + StdDuration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn positions_are_written_only_after_acknowledgement_and_a_failed_batch_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.log"), "one\ntwo\n").unwrap();
    let (mut rx, trigger, task) = start_source(dir.path(), data.path());
    let batch = rx.recv_batch().await.unwrap();
    assert_eq!(batch.events.len(), 2);
    // Not acknowledged: dropped without `done`.
    drop(batch);
    let again = rx.recv_batch().await.unwrap();
    let Events::Logs(logs) = &again.events else {
        panic!("expected logs")
    };
    assert_eq!(messages(logs), ["one", "two"]);
    // The positions file holds 0 until the batch is acknowledged.
    wait_until("positions at 0", || stored_offset(data.path()) == Some(0)).await;
    again.ack.done();
    wait_until("positions at 8", || stored_offset(data.path()) == Some(8)).await;
    trigger.trigger();
    task.await.unwrap().unwrap();
    assert_eq!(stored_offset(data.path()), Some(8));
}
