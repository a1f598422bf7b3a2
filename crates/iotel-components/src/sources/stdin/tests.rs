use super::*;
use iotel_engine::TestReceiver;
use iotel_model::LogRecord;
use tokio::io::AsyncWriteExt;

fn reader(text: &str) -> Reader {
    let c: Config = toml::from_str(text).unwrap();
    assert_eq!(c.validate(), vec![], "{text}");
    Reader {
        max_line_bytes: file_tail::line_limit(c.max_line_bytes),
        multiline: c.multiline.as_ref().map(|m| m.rule().unwrap()),
        labels: Labels::from_pairs(&c.labels),
        batch_max_lines: c.batch_max_lines.get(),
    }
}

async fn records(rx: &mut TestReceiver) -> Vec<LogRecord> {
    let mut all = Vec::new();
    while let Some(ev) = rx.recv().await {
        let Events::Logs(logs) = ev else {
            panic!("expected logs")
        };
        all.extend(logs);
    }
    all
}

fn messages(records: &[LogRecord]) -> Vec<&str> {
    records.iter().map(|r| r.message.as_str()).collect()
}

#[tokio::test]
async fn every_line_becomes_a_record_and_the_source_ends_at_end_of_input() {
    let (out, mut rx) = Output::for_test(16);
    let metrics = ComponentMetrics::detached("in", "stdin");
    let input: &[u8] = b"one\r\ntwo\n\xFFbad\nlast without newline";
    reader("labels = { job = \"pipe\" }\nbatch_max_lines = 2")
        .read_all(input, out, Shutdown::never(), &metrics)
        .await
        .unwrap();
    let got = records(&mut rx).await;
    assert_eq!(
        messages(&got),
        ["one", "two", "\u{FFFD}bad", "last without newline"]
    );
    assert!(
        got.iter()
            .all(|r| r.labels == Labels::from_pairs([("job", "pipe")]))
    );
    assert_eq!(got[2].fields["invalid_utf8"], true);
    assert_eq!(metrics.errors("invalid_utf8").get(), 1);
}

#[tokio::test]
async fn a_multiline_record_still_held_at_end_of_input_is_handed_on() {
    let (out, mut rx) = Output::for_test(16);
    let metrics = ComponentMetrics::detached("in", "stdin");
    let input: &[u8] = b"ERROR a\n  at x\nERROR b\n  at y";
    reader("multiline = { start_pattern = '^ERROR' }")
        .read_all(input, out, Shutdown::never(), &metrics)
        .await
        .unwrap();
    assert_eq!(
        messages(&records(&mut rx).await),
        ["ERROR a\n  at x", "ERROR b\n  at y"]
    );
}

#[tokio::test]
async fn a_held_multiline_record_is_handed_on_after_its_timeout_while_input_stays_open() {
    let (out, mut rx) = Output::for_test(16);
    let metrics = ComponentMetrics::detached("in", "stdin");
    let (mut writer, input) = tokio::io::duplex(1024);
    let r = reader("multiline = { start_pattern = '^ERROR', timeout = \"50ms\" }");
    let task = tokio::spawn(async move {
        r.read_all(input, out, Shutdown::never(), &metrics)
            .await
            .unwrap()
    });
    writer.write_all(b"ERROR a\n  at x\n").await.unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .expect("the record within its timeout")
        .unwrap();
    let Events::Logs(logs) = first else {
        panic!("expected logs")
    };
    assert_eq!(messages(&logs), ["ERROR a\n  at x"]);
    drop(writer);
    task.await.unwrap();
    assert_eq!(records(&mut rx).await.len(), 0);
}

#[test]
fn config_errors_name_their_key() {
    let c: Config =
        toml::from_str("max_line_bytes = 0\nmultiline = { start_pattern = \"[\" }").unwrap();
    let got: Vec<(String, String)> = c
        .validate()
        .into_iter()
        .map(|p| (p.key, p.message))
        .collect();
    assert_eq!(
        got,
        [
            (
                "max_line_bytes".to_string(),
                "expected between 1 byte and 16MiB, got 0B".to_string()
            ),
            (
                "multiline.start_pattern".to_string(),
                "regex parse error: unclosed character class".to_string()
            ),
        ]
    );
}
