use super::*;
use iotel_engine::{ComponentError, ComponentKey, Input, Shutdown};
use iotel_model::{Labels, LogRecord, Metric, MetricType, Severity, Span, SpanStatus};
use tokio::sync::mpsc;

/// 2024-03-10T00:00:00Z, in seconds.
const MIDNIGHT: i64 = 1_710_028_800;
const NS: i64 = 1_000_000_000;

fn config(toml: &str) -> Config {
    toml::from_str(toml).unwrap()
}

/// Runs the sink over `batches` until its input closes; returns its metrics.
async fn run(cfg: &Config, config_dir: &Path, batches: Vec<Events>) -> ComponentMetrics {
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    let mut cx = BuildContext::for_test("out");
    cx.config_dir = config_dir.to_path_buf();
    let sink = cfg.build(&cx).unwrap();
    let (tx, rx) = mpsc::channel(batches.len().max(1));
    let metrics = ComponentMetrics::detached("out", "file");
    for b in batches {
        tx.send(b.into()).await.unwrap();
    }
    drop(tx);
    let result: Result<(), ComponentError> = sink
        .run(SinkContext {
            key: ComponentKey {
                id: "out".into(),
                type_name: "file".into(),
            },
            input: Input::new(rx, metrics.clone()),
            shutdown: Shutdown::never(),
            metrics: metrics.clone(),
            data_dir: std::env::temp_dir(),
        })
        .await;
    result.unwrap();
    metrics
}

fn log(ts_ns: i64, message: &str) -> LogRecord {
    LogRecord::new(ts_ns, message)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn writes_one_exact_json_line_per_metric_log_and_span() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let cfg = config(&format!("path = \"{}\"", out.display()));

    let metric = Metric::new(
        "temp_celsius",
        MetricType::Gauge,
        Labels::from_pairs([("sensor", "s1")]),
        21.5,
        MIDNIGHT * 1000,
    );
    let mut record = log(MIDNIGHT * NS + 5, "door \"A\" opened");
    record.labels = Labels::from_pairs([("device_id", "dev-42")]);
    record.severity = Some(Severity::Warn);
    record.fields.insert("seq".into(), serde_json::json!(7));
    let span = Span {
        trace_id: [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36,
        ],
        span_id: [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
        parent_span_id: None,
        name: "upload".into(),
        start_ns: MIDNIGHT * NS,
        end_ns: MIDNIGHT * NS + 1500,
        labels: Labels::empty(),
        attributes: serde_json::Map::new(),
        status: SpanStatus::Ok,
    };
    let metrics = run(
        &cfg,
        dir.path(),
        vec![
            Events::Metrics(vec![metric]),
            Events::Logs(vec![record]),
            Events::Traces(vec![span]),
        ],
    )
    .await;

    assert_eq!(
        read(&out),
        concat!(
            r#"{"signal":"metric","name":"temp_celsius","labels":{"sensor":"s1"},"value":21.5,"timestamp_ms":1710028800000,"meta":{"family":"temp_celsius","type":"gauge"}}"#,
            "\n",
            r#"{"signal":"log","timestamp_ns":1710028800000000005,"labels":{"device_id":"dev-42"},"message":"door \"A\" opened","severity":"WARN","fields":{"seq":7}}"#,
            "\n",
            r#"{"signal":"span","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","name":"upload","start_ns":1710028800000000000,"end_ns":1710028800000001500,"labels":{},"status":"ok"}"#,
            "\n",
        )
    );
    assert_eq!(metrics.sent_total(), 3);
}

#[tokio::test]
async fn text_encoding_writes_what_the_console_sink_writes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let cfg = config(&format!(
        "path = \"{}\"\nencoding = \"text\"",
        out.display()
    ));
    let metric = Metric::new(
        "up",
        MetricType::Gauge,
        Labels::from_pairs([("job", "a")]),
        1.0,
        MIDNIGHT * 1000,
    );
    run(
        &cfg,
        dir.path(),
        vec![
            Events::Logs(vec![
                log(MIDNIGHT * NS, "first"),
                log(MIDNIGHT * NS, "second"),
            ]),
            Events::Metrics(vec![metric]),
        ],
    )
    .await;
    assert_eq!(read(&out), "first\nsecond\nup{job=\"a\"} 1 1710028800000\n");
}

#[tokio::test]
async fn events_of_two_days_go_to_the_file_of_their_day() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&format!(
        "path = \"{}/%Y-%m-%d.ndjson\"\nencoding = \"text\"",
        dir.path().display()
    ));
    let metrics = run(
        &cfg,
        dir.path(),
        vec![
            Events::Logs(vec![
                log((MIDNIGHT - 2) * NS, "day 1, a"),
                log((MIDNIGHT - 1) * NS, "day 1, b"),
                log(MIDNIGHT * NS, "day 2, a"),
            ]),
            Events::Logs(vec![log(MIDNIGHT * NS + 1, "day 2, b")]),
            // Late: back to a file that was closed at the rollover.
            Events::Logs(vec![log(MIDNIGHT * NS - 1, "day 1, late")]),
        ],
    )
    .await;
    assert_eq!(
        read(&dir.path().join("2024-03-09.ndjson")),
        "day 1, a\nday 1, b\nday 1, late\n"
    );
    assert_eq!(
        read(&dir.path().join("2024-03-10.ndjson")),
        "day 2, a\nday 2, b\n"
    );
    assert_eq!(metrics.sent_total(), 5);
}

#[tokio::test]
async fn directories_are_created_and_relative_paths_follow_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config("path = \"logs/%Y/%m/%d/%H%M%S.ndjson\"\nencoding = \"text\"");
    run(
        &cfg,
        dir.path(),
        vec![Events::Logs(vec![log((MIDNIGHT + 3661) * NS, "x")])],
    )
    .await;
    assert_eq!(
        read(&dir.path().join("logs/2024/03/10/010101.ndjson")),
        "x\n"
    );
}

#[tokio::test]
async fn an_existing_file_is_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    std::fs::write(&out, "kept\n").unwrap();
    let cfg = config(&format!(
        "path = \"{}\"\nencoding = \"text\"",
        out.display()
    ));
    run(&cfg, dir.path(), vec![Events::Logs(vec![log(0, "added")])]).await;
    assert_eq!(read(&out), "kept\nadded\n");
}

#[tokio::test]
async fn a_failed_write_is_counted_and_the_sink_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the 2024 directory should be: that year cannot be written.
    std::fs::write(dir.path().join("2024"), "").unwrap();
    let cfg = config(&format!(
        "path = \"{}/%Y/out.log\"\nencoding = \"text\"",
        dir.path().display()
    ));
    let next_year = (MIDNIGHT + 366 * 86_400) * NS;
    let metrics = run(
        &cfg,
        dir.path(),
        vec![
            Events::Logs(vec![log(MIDNIGHT * NS, "lost"), log(MIDNIGHT * NS, "lost")]),
            Events::Logs(vec![log(next_year, "kept")]),
        ],
    )
    .await;
    assert_eq!(metrics.errors("write_failed").get(), 1);
    assert_eq!(metrics.discards("write_failed").get(), 2);
    assert_eq!(metrics.sent_total(), 1);
    assert_eq!(read(&dir.path().join("2025/out.log")), "kept\n");
}

#[test]
fn validate_refuses_an_empty_path_and_unknown_time_fields() {
    let problems = config("path = \"\"").validate();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "path");

    let problems = config("path = \"/var/log/%Y-%J.ndjson\"").validate();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "path");
    assert!(
        problems[0]
            .message
            .starts_with("invalid time field in \"/var/log/%Y-%J.ndjson\": "),
        "{}",
        problems[0].message
    );
    assert!(config("path = \"/var/log/50%.ndjson\"").validate().len() == 1);

    assert!(
        config("path = \"/var/log/100%%-%F.ndjson\"")
            .validate()
            .is_empty()
    );
    assert!(
        config("path = \"/var/log/iotel.ndjson\"")
            .validate()
            .is_empty()
    );
    assert!(toml::from_str::<Config>("path = \"x\"\nrotate = true").is_err());
    assert!(toml::from_str::<Config>("encoding = \"json\"").is_err());
}

#[test]
fn an_unknown_time_zone_is_refused_at_build() {
    let cfg = config("path = \"x\"\ntimezone = \"Mars/Olympus_Mons\"");
    let Err(problem) = cfg.build(&BuildContext::for_test("out")) else {
        panic!("built with an unknown time zone");
    };
    assert_eq!(problem.key, "timezone");
}

#[test]
fn path_fields_are_filled_in_utc_by_default() {
    let cfg = config("path = \"/x/%Y-%m-%dT%H:%M:%S%z.log\"");
    assert!(cfg.validate().is_empty());
    let mut t = PathTemplate::new(&cfg.path, TimeZone::UTC);
    assert_eq!(
        t.render(i128::from(MIDNIGHT - 1) * 1_000_000_000).unwrap(),
        PathBuf::from("/x/2024-03-09T23:59:59+0000.log")
    );
}

#[test]
fn subsecond_fields_are_rendered_for_each_event() {
    assert!(uses_subseconds("/x/%H%M%S%.3f.log"));
    assert!(uses_subseconds("/x/%N"));
    assert!(!uses_subseconds("/x/%%f-%F.log"));
    assert!(!uses_subseconds("/x/%Y-%m-%d.log"));
    let mut t = PathTemplate::new("%S.%3f", TimeZone::UTC);
    let base = i128::from(MIDNIGHT) * 1_000_000_000;
    assert_eq!(t.render(base + 1_000_000).unwrap(), PathBuf::from("00.001"));
    assert_eq!(t.render(base + 2_000_000).unwrap(), PathBuf::from("00.002"));
    let mut t = PathTemplate::new("%S", TimeZone::UTC);
    assert_eq!(t.render(base + 1_000_000).unwrap(), PathBuf::from("00"));
    assert_eq!(t.render(base + NS as i128).unwrap(), PathBuf::from("01"));
}
