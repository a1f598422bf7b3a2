#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;
use serde_json::json;
use std::fs;
use std::sync::Mutex;
use std::time::Duration as StdDuration;

const BOOT_A: &str = "5e1f8a44-3c2b-4a8e-9a55-0d3b8d2c7f10";
const BOOT_B: &str = "0b7c31d2-9e4f-4d6a-8f21-6a5c4e3b2a19";
/// Wall time of the first reading, Unix milliseconds.
const T0: i64 = 1_764_000_000_000;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// A device with a boot id, an uptime of 100.25 s and firmware 2.4.1.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "proc/sys/kernel/random/boot_id", &format!("{BOOT_A}\n"));
    write(r, "proc/uptime", "100.25 180.10\n");
    write(
        r,
        "etc/os-release",
        "NAME=\"Acme OS\"\n# the build\nVERSION_ID=\"2.4.1\"\nPRETTY_NAME=\"Acme OS 2.4.1\"\n",
    );
    dir
}

fn config(root: &Path) -> Config {
    Config {
        interval: Duration::from_secs(30),
        procfs_root: root.join("proc"),
        firmware_file: root.join("etc/os-release"),
        firmware_format: FirmwareFormat::OsRelease,
        firmware_key: None,
        model_file: None,
        upgrade_marker_file: None,
    }
}

fn open(root: &Path, m: &ComponentMetrics) -> Lifecycle {
    Lifecycle::open(config(root), &root.join("state"), m)
}

fn metrics() -> ComponentMetrics {
    ComponentMetrics::detached("lc", "device_lifecycle")
}

fn values(metrics: &[Metric]) -> Vec<String> {
    metrics
        .iter()
        .map(|m| format!("{}{} {}", m.name, m.labels, m.value))
        .collect()
}

/// Each event as its severity, message and fields.
fn events(r: &Reading) -> Vec<serde_json::Value> {
    r.events
        .iter()
        .map(|e| {
            json!({
                "severity": e.severity.map(|s| format!("{s:?}")),
                "message": e.message,
                "fields": e.fields,
            })
        })
        .collect()
}

fn state(root: &Path) -> State {
    StateFile::in_dir(&root.join("state"))
        .load()
        .unwrap()
        .unwrap()
}

#[test]
fn the_first_start_emits_the_metrics_and_no_event() {
    let dir = fixture();
    let m = metrics();
    let mut lc = open(dir.path(), &m);
    let r = lc.read(T0, Instant::now(), &m);
    assert_eq!(events(&r), Vec::<serde_json::Value>::new());
    assert_eq!(
        values(&r.metrics),
        [
            r#"device_info{firmware="2.4.1"} 1"#,
            "device_boot_time_seconds{} 1763999900",
            "device_uptime_seconds{} 100.25",
            "device_boots_total{} 0",
            "device_firmware_changes_total{} 0",
            r#"iotel_agent_restarts_total{reason="clean"} 0"#,
            r#"iotel_agent_restarts_total{reason="crash"} 0"#,
        ]
    );
    assert_eq!(
        state(dir.path()),
        State {
            version: 1,
            boot_id: Some(BOOT_A.into()),
            uptime_secs: Some(100.25),
            saved_at_unix_ms: T0,
            firmware: Some("2.4.1".into()),
            running: true,
            ..State::default()
        }
    );
    lc.stop(&m);
    assert!(!state(dir.path()).running);
    assert_eq!(m.errors("sensor_unavailable").get(), 0);
}

#[test]
fn a_changed_boot_id_after_a_clean_stop_is_a_boot() {
    let dir = fixture();
    let m = metrics();
    let mut lc = open(dir.path(), &m);
    lc.read(T0, Instant::now(), &m);
    lc.stop(&m);

    write(
        dir.path(),
        "proc/sys/kernel/random/boot_id",
        &format!("{BOOT_B}\n"),
    );
    write(dir.path(), "proc/uptime", "20.00 30.00\n");
    let mut lc = open(dir.path(), &m);
    let r = lc.read(T0 + 120_000, Instant::now(), &m);
    assert_eq!(
        events(&r),
        [json!({
            "severity": "Info",
            "message": format!("the device booted (boot id {BOOT_B}), up 20s"),
            "fields": {
                "event.name": "device.boot",
                "device.boot.detected_by": "boot_id",
                "device.boot.previous_shutdown": "clean",
                "device.boot.id": BOOT_B,
                "device.boot.previous_id": BOOT_A,
                "device.boot.time": 1_764_000_100,
                "system.uptime": 20.0,
            },
        })]
    );
    assert!(values(&r.metrics).contains(&"device_boots_total{} 1".to_string()));
    let s = state(dir.path());
    assert_eq!((s.boot_id.as_deref(), s.boots_total), (Some(BOOT_B), 1));
    // Later readings of the same boot are no boot.
    let r = lc.read(T0 + 150_000, Instant::now(), &m);
    assert!(r.events.is_empty(), "{:?}", events(&r));
}

#[test]
fn a_boot_after_the_agent_never_stopped_is_a_boot_and_a_crash() {
    let dir = fixture();
    let m = metrics();
    let mut lc = open(dir.path(), &m);
    lc.read(T0, Instant::now(), &m);
    drop(lc); // no stop: the power went

    write(
        dir.path(),
        "proc/sys/kernel/random/boot_id",
        &format!("{BOOT_B}\n"),
    );
    write(dir.path(), "proc/uptime", "20.00 30.00\n");
    let mut lc = open(dir.path(), &m);
    let r = lc.read(T0 + 120_000, Instant::now(), &m);
    let got = events(&r);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["fields"]["event.name"], "device.boot");
    assert_eq!(got[0]["fields"]["device.boot.previous_shutdown"], "unclean");
    assert_eq!(
        got[1],
        json!({
            "severity": "Error",
            "message": "the device restarted without the agent stopping before: a power loss, \
                        a watchdog reset or a kernel panic",
            "fields": {"event.name": "device.crash", "device.crash.reason": "unclean_shutdown"},
        })
    );
}

#[test]
fn an_agent_restart_on_the_same_boot_is_a_restart_not_a_boot() {
    let dir = fixture();
    let m = metrics();
    let mut lc = open(dir.path(), &m);
    lc.read(T0, Instant::now(), &m);
    lc.stop(&m);

    // Restarted cleanly a minute later.
    write(dir.path(), "proc/uptime", "160.25 300.00\n");
    let mut lc = open(dir.path(), &m);
    let r = lc.read(T0 + 60_000, Instant::now(), &m);
    assert_eq!(
        events(&r),
        [json!({
            "severity": "Info",
            "message": "the agent restarted on the same boot, after a clean stop",
            "fields": {"event.name": "iotel.agent.restart", "iotel.agent.restart.reason": "clean"},
        })]
    );
    drop(lc); // killed

    write(dir.path(), "proc/uptime", "220.25 400.00\n");
    let mut lc = open(dir.path(), &m);
    let r = lc.read(T0 + 120_000, Instant::now(), &m);
    assert_eq!(
        events(&r),
        [json!({
            "severity": "Warn",
            "message": "the agent restarted on the same boot without having stopped cleanly: \
                        it crashed or was killed",
            "fields": {"event.name": "iotel.agent.restart", "iotel.agent.restart.reason": "crash"},
        })]
    );
    let v = values(&r.metrics);
    assert!(v.contains(&"device_boots_total{} 0".to_string()), "{v:?}");
    assert!(
        v.contains(&r#"iotel_agent_restarts_total{reason="clean"} 1"#.to_string()),
        "{v:?}"
    );
    assert!(
        v.contains(&r#"iotel_agent_restarts_total{reason="crash"} 1"#.to_string()),
        "{v:?}"
    );
    // Only the first reading of a run compares with the previous run.
    let r = lc.read(T0 + 150_000, Instant::now(), &m);
    assert!(r.events.is_empty(), "{:?}", events(&r));
}

#[test]
fn a_restart_is_told_at_the_first_reading_that_can_tell_and_only_once() {
    let dir = fixture();
    let r = dir.path();
    let m = metrics();
    let mut lc = open(r, &m);
    lc.read(T0, Instant::now(), &m);
    lc.stop(&m);

    // Restarted while procfs cannot be read: nothing told yet.
    fs::rename(r.join("proc"), r.join("proc.away")).unwrap();
    let mut lc = open(r, &m);
    let start = Instant::now();
    assert!(lc.read(T0 + 60_000, start, &m).events.is_empty());
    fs::rename(r.join("proc.away"), r.join("proc")).unwrap();
    write(r, "proc/uptime", "190.25 1.00\n");
    let got = events(&lc.read(T0 + 90_000, start + StdDuration::from_secs(30), &m));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["fields"]["iotel.agent.restart.reason"], "clean");
    let later = lc.read(T0 + 120_000, start + StdDuration::from_secs(60), &m);
    assert!(later.events.is_empty(), "{:?}", events(&later));
}

#[test]
fn without_a_boot_id_an_uptime_that_went_back_is_a_boot() {
    let dir = fixture();
    fs::remove_file(dir.path().join("proc/sys/kernel/random/boot_id")).unwrap();
    let m = metrics();
    let mut lc = open(dir.path(), &m);
    let start = Instant::now();
    write(dir.path(), "proc/uptime", "1000.00 1.00\n");
    assert!(lc.read(T0, start, &m).events.is_empty());
    write(dir.path(), "proc/uptime", "5.00 1.00\n");
    let r = lc.read(T0 + 30_000, start + StdDuration::from_secs(30), &m);
    assert_eq!(
        events(&r),
        [json!({
            "severity": "Info",
            "message": "the device booted, up 5s",
            "fields": {
                "event.name": "device.boot",
                "device.boot.detected_by": "uptime",
                "device.boot.previous_shutdown": "unknown",
                "device.boot.time": 1_764_000_025,
                "system.uptime": 5.0,
            },
        })]
    );
    // The missing boot id is reported once.
    assert_eq!(m.errors("sensor_unavailable").get(), 1);
}

#[test]
fn without_a_boot_id_an_uptime_that_grew_less_than_the_time_passed_is_a_boot() {
    let dir = fixture();
    fs::remove_file(dir.path().join("proc/sys/kernel/random/boot_id")).unwrap();
    let m = metrics();
    let mut lc = open(dir.path(), &m);
    lc.read(T0, Instant::now(), &m);
    lc.stop(&m);

    // An hour later the device has been up 200 s: it booted meanwhile.
    write(dir.path(), "proc/uptime", "200.00 1.00\n");
    let mut lc = open(dir.path(), &m);
    let r = lc.read(T0 + 3_600_000, Instant::now(), &m);
    let got = events(&r);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["fields"]["device.boot.detected_by"], "uptime");
    assert_eq!(got[0]["fields"]["device.boot.previous_shutdown"], "clean");
    lc.stop(&m);

    // Another hour on, up an hour more (give or take the tolerance): no boot.
    write(dir.path(), "proc/uptime", "3795.00 1.00\n");
    let mut lc = open(dir.path(), &m);
    let r = lc.read(T0 + 7_200_000, Instant::now(), &m);
    assert_eq!(events(&r)[0]["fields"]["event.name"], "iotel.agent.restart");
}

#[test]
fn a_firmware_change_is_emitted_once_with_from_and_to_and_survives_a_restart() {
    let dir = fixture();
    let m = metrics();
    let mut lc = open(dir.path(), &m);
    let start = Instant::now();
    lc.read(T0, start, &m);
    write(dir.path(), "etc/os-release", "VERSION_ID=2.5.0\n");
    let r = lc.read(T0 + 30_000, start + StdDuration::from_secs(30), &m);
    assert_eq!(
        events(&r),
        [json!({
            "severity": "Info",
            "message": "the firmware changed from 2.4.1 to 2.5.0",
            "fields": {
                "event.name": "device.firmware.changed",
                "firmware.from": "2.4.1",
                "firmware.to": "2.5.0",
            },
        })]
    );
    let v = values(&r.metrics);
    assert_eq!(v[0], r#"device_info{firmware="2.5.0"} 1"#);
    assert!(v.contains(&"device_firmware_changes_total{} 1".to_string()));
    let r = lc.read(T0 + 60_000, start + StdDuration::from_secs(60), &m);
    assert!(r.events.is_empty());
    lc.stop(&m);

    // The agent restarts: 2.5.0 is remembered, so no change again.
    let mut lc = open(dir.path(), &m);
    write(dir.path(), "proc/uptime", "200.25 1.00\n");
    let r = lc.read(T0 + 100_000, Instant::now(), &m);
    let names: Vec<_> = events(&r)
        .iter()
        .map(|e| e["fields"]["event.name"].clone())
        .collect();
    assert_eq!(names, [json!("iotel.agent.restart")]);
    assert!(values(&r.metrics).contains(&"device_firmware_changes_total{} 1".to_string()));
}

#[test]
fn a_plain_firmware_file_and_a_device_tree_model_label_the_info_metric() {
    let dir = fixture();
    write(dir.path(), "etc/version", "v7.1-rc2\nbuilt 2026-11-01\n");
    write(dir.path(), "proc/device-tree/model", "Acme Gateway Rev B\0");
    let mut cfg = config(dir.path());
    cfg.firmware_file = dir.path().join("etc/version");
    cfg.firmware_format = FirmwareFormat::Plain;
    cfg.model_file = Some(dir.path().join("proc/device-tree/model"));
    let m = metrics();
    let mut lc = Lifecycle::open(cfg, &dir.path().join("state"), &m);
    let r = lc.read(T0, Instant::now(), &m);
    assert_eq!(
        values(&r.metrics)[0],
        r#"device_info{firmware="v7.1-rc2",model="Acme Gateway Rev B"} 1"#
    );
}

#[test]
fn an_update_tools_marker_starts_an_upgrade_and_its_removal_ends_it_ok_or_failed() {
    let dir = fixture();
    let r = dir.path();
    let mut cfg = config(r);
    cfg.upgrade_marker_file = Some(r.join("run/upgrade"));
    let m = metrics();
    let mut lc = Lifecycle::open(cfg.clone(), &r.join("state"), &m);
    assert!(lc.read(T0, Instant::now(), &m).events.is_empty());

    write(r, "run/upgrade", "2.5.0\n");
    let got = events(&lc.read(T0 + 30_000, Instant::now(), &m));
    assert_eq!(
        got,
        [json!({
            "severity": "Info",
            "message": "a firmware upgrade started to 2.5.0",
            "fields": {
                "event.name": "device.firmware.upgrade.start",
                "firmware.from": "2.4.1",
                "firmware.to": "2.5.0",
            },
        })]
    );
    lc.stop(&m);

    // The device reboots into 2.5.0; the tool removes its marker.
    let mut lc = Lifecycle::open(cfg.clone(), &r.join("state"), &m);
    write(r, "proc/sys/kernel/random/boot_id", &format!("{BOOT_B}\n"));
    write(r, "proc/uptime", "15.00 1.00\n");
    write(r, "etc/os-release", "VERSION_ID=2.5.0\n");
    let got = events(&lc.read(T0 + 120_000, Instant::now(), &m));
    let names: Vec<_> = got
        .iter()
        .map(|e| e["fields"]["event.name"].clone())
        .collect();
    // The marker is still there: no second start.
    assert_eq!(
        names,
        [json!("device.boot"), json!("device.firmware.changed")]
    );
    fs::remove_file(r.join("run/upgrade")).unwrap();
    let got = events(&lc.read(T0 + 150_000, Instant::now(), &m));
    assert_eq!(
        got,
        [json!({
            "severity": "Info",
            "message": "the firmware upgrade is over: ok",
            "fields": {
                "event.name": "device.firmware.upgrade.end",
                "firmware.result": "ok",
                "firmware.from": "2.4.1",
                "firmware.to": "2.5.0",
            },
        })]
    );

    // Another one, after which the firmware is what it was.
    write(r, "run/upgrade", "2.6.0\n");
    lc.read(T0 + 180_000, Instant::now(), &m);
    fs::remove_file(r.join("run/upgrade")).unwrap();
    let got = events(&lc.read(T0 + 210_000, Instant::now(), &m));
    assert_eq!(
        got,
        [json!({
            "severity": "Error",
            "message": "the firmware upgrade is over and the firmware did not change: failed",
            "fields": {
                "event.name": "device.firmware.upgrade.end",
                "firmware.result": "failed",
                "firmware.from": "2.5.0",
                "firmware.to": "2.6.0",
            },
        })]
    );
    assert!(lc.read(T0 + 240_000, Instant::now(), &m).events.is_empty());
    assert_eq!(m.errors("sensor_unavailable").get(), 0);
}

/// Captures what the component logs.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| {
                l.split_once(": device_lifecycle: ")
                    .map_or(l, |(_, r)| r)
                    .to_string()
            })
            .collect()
    }
}

fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

#[test]
fn garbage_and_missing_files_are_reported_once_by_path_counted_and_left_out() {
    let (logs, _guard) = capture();
    let dir = fixture();
    let r = dir.path();
    write(r, "proc/sys/kernel/random/boot_id", "not a boot id!\n");
    write(r, "proc/uptime", "abc\n");
    fs::remove_file(r.join("etc/os-release")).unwrap();
    let m = metrics();
    let mut lc = open(r, &m);
    for i in 0..3 {
        let reading = lc.read(T0 + i * 30_000, Instant::now(), &m);
        assert!(reading.events.is_empty());
        assert_eq!(
            values(&reading.metrics),
            [
                "device_boots_total{} 0",
                "device_firmware_changes_total{} 0",
                r#"iotel_agent_restarts_total{reason="clean"} 0"#,
                r#"iotel_agent_restarts_total{reason="crash"} 0"#,
            ]
        );
    }
    assert_eq!(m.errors("sensor_unavailable").get(), 3);
    let p = r.display();
    assert_eq!(
        logs.lines(),
        [
            format!(
                "leaving out {p}/proc/sys/kernel/random/boot_id: expected a boot id such as \
                 \"5e1f8a44-3c2b-4a8e-9a55-0d3b8d2c7f10\", got \"not a boot id!\""
            ),
            format!(
                "leaving out {p}/proc/uptime: expected the seconds since boot (such as \
                 \"3605.21 7110.52\"), got \"abc\""
            ),
            format!("leaving out {p}/etc/os-release: No such file or directory (os error 2)"),
        ]
    );
}

#[test]
fn an_os_release_without_the_key_is_reported_with_what_was_expected() {
    let (logs, _guard) = capture();
    let dir = fixture();
    write(dir.path(), "etc/os-release", "NAME=Acme\n");
    let m = metrics();
    let mut lc = open(dir.path(), &m);
    let r = lc.read(T0, Instant::now(), &m);
    assert!(!values(&r.metrics)[0].starts_with("device_info"));
    assert_eq!(
        logs.lines(),
        [format!(
            "leaving out {}/etc/os-release: expected a line VERSION_ID=<firmware version>",
            dir.path().display()
        )]
    );
}

#[test]
fn an_unreadable_state_is_reported_and_replaced_and_the_agent_starts_afresh() {
    let (logs, _guard) = capture();
    let dir = fixture();
    write(dir.path(), "state/state.json", "{ torn");
    let m = metrics();
    let mut lc = open(dir.path(), &m);
    assert!(lc.read(T0, Instant::now(), &m).events.is_empty());
    assert_eq!(m.errors("state_unreadable").get(), 1);
    assert_eq!(state(dir.path()).boot_id.as_deref(), Some(BOOT_A));
    let lines = logs.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "starting without the remembered state: {}/state/state.json is not a lifecycle \
             state: ",
            dir.path().display()
        )),
        "{lines:?}"
    );
}

#[test]
fn config_problems_name_the_key() {
    let dir = fixture();
    let mut c = config(dir.path());
    c.interval = Duration::from_millis(500);
    c.firmware_format = FirmwareFormat::Plain;
    c.firmware_key = Some("VERSION".into());
    assert_eq!(
        c.validate(),
        [
            Problem::new("interval", "expected at least 1s, got 500ms"),
            Problem::new(
                "firmware_key",
                "only for firmware_format = \"os_release\"; a plain file's first line is the version"
            ),
        ]
    );
    c.firmware_format = FirmwareFormat::OsRelease;
    c.firmware_key = Some(String::new());
    c.interval = Duration::from_secs(1);
    assert_eq!(
        c.validate(),
        [Problem::new(
            "firmware_key",
            "expected an os-release key such as \"VERSION_ID\", got \"\""
        )]
    );
}

/// The source as the engine runs it: a reading at once, and the `running`
/// marker cleared when it stops.
#[tokio::test]
async fn the_running_source_emits_a_reading_and_clears_its_marker_at_shutdown() {
    use iotel_engine::{ComponentKey, Output, shutdown};

    let dir = fixture();
    let data = dir.path().join("data");
    let (out, mut rx) = Output::for_test(4);
    let (trigger, stop) = shutdown::channel();
    let m = metrics();
    let task = tokio::spawn(
        config(dir.path())
            .build(&BuildContext::for_test("lc"))
            .unwrap()
            .run(SourceContext {
                key: ComponentKey {
                    id: "lc".into(),
                    type_name: "device_lifecycle".into(),
                },
                out,
                shutdown: stop,
                metrics: m.clone(),
                data_dir: data.clone(),
            }),
    );
    let Some(Events::Metrics(reading)) = rx.recv().await else {
        panic!("expected a reading")
    };
    assert_eq!(values(&reading)[0], r#"device_info{firmware="2.4.1"} 1"#);
    let path = data.join("device_lifecycle/lc/state.json");
    let s = StateFile::in_dir(path.parent().unwrap())
        .load()
        .unwrap()
        .unwrap();
    assert!(s.running);
    trigger.trigger();
    task.await.unwrap().unwrap();
    let s = StateFile::in_dir(path.parent().unwrap())
        .load()
        .unwrap()
        .unwrap();
    assert!(!s.running);
    assert_eq!(s.uptime_secs, Some(100.25));
}

#[test]
fn boot_ids_decide_over_uptimes() {
    let r = |id: Option<&str>, up: Option<f64>| BootReading {
        boot_id: id.map(str::to_string),
        uptime_secs: up,
    };
    use detect::{DetectedBy::*, Verdict::*};
    // Same boot id: no boot, whatever the uptime says.
    assert_eq!(
        new_boot(&r(Some("a"), Some(500.0)), &r(Some("a"), Some(1.0)), None),
        SameBoot
    );
    assert_eq!(
        new_boot(&r(Some("a"), None), &r(Some("b"), None), None),
        NewBoot(BootId)
    );
    assert_eq!(
        new_boot(&r(None, Some(10.0)), &r(Some("b"), Some(40.0)), Some(30.0)),
        SameBoot
    );
    assert_eq!(
        new_boot(&r(None, Some(10.0)), &r(None, Some(15.0)), Some(30.0)),
        NewBoot(Uptime)
    );
    assert_eq!(
        new_boot(&r(None, None), &r(Some("b"), Some(40.0)), Some(30.0)),
        CannotTell
    );
    // A wall clock that stepped back tells nothing; the uptime still grew.
    assert_eq!(
        new_boot(&r(None, Some(10.0)), &r(None, Some(40.0)), Some(-3600.0)),
        SameBoot
    );
}

proptest! {
    #[test]
    fn uptime_parsing_takes_the_first_field_and_never_panics(s in ".{0,40}") {
        let _ = detect::parse_uptime(&s);
    }

    #[test]
    fn an_uptime_as_the_kernel_writes_it_parses_back(
        up in 0u64..10_000_000_000, idle in 0u64..10_000_000_000,
    ) {
        let text = format!("{}.{:02} {}.{:02}\n", up / 100, up % 100, idle / 100, idle % 100);
        let got = detect::parse_uptime(&text).unwrap();
        prop_assert!((got - up as f64 / 100.0).abs() < 1e-6, "{text} → {got}");
    }

    #[test]
    fn boot_id_parsing_never_panics_and_takes_every_uuid(
        s in ".{0,80}", id in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    ) {
        let _ = detect::parse_boot_id(&s);
        prop_assert_eq!(detect::parse_boot_id(&format!("{}\n", id.to_uppercase())).unwrap(), id);
    }

    #[test]
    fn an_os_release_value_round_trips_through_shell_quoting(
        value in "[^\\x00-\\x1f\\x7f]{1,30}", other in "[A-Z_]{1,12}",
    ) {
        let mut quoted = String::from("\"");
        for c in value.chars() {
            if matches!(c, '"' | '\\' | '$' | '`') {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        let text = format!("# comment\n{other}_X=1\nVERSION_ID={quoted}\n");
        prop_assert_eq!(detect::os_release_value(&text, "VERSION_ID"), Some(value));
    }

    #[test]
    fn os_release_parsing_never_panics(s in "(?s).{0,200}", key in "[A-Z_]{1,10}") {
        let _ = detect::os_release_value(&s, &key);
    }
}
