use super::*;
use std::fs;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "sys/class/thermal/thermal_zone0/temp", "48500\n");
    write(r, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n");
    write(r, "sys/class/thermal/cooling_device0/type", "fan\n");
    write(r, "sys/class/power_supply/BAT0/type", "Battery\n");
    write(r, "sys/class/power_supply/BAT0/capacity", "87\n");
    write(r, "sys/class/power_supply/AC/type", "Mains\n");
    write(
        r,
        "proc/net/wireless",
        "Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE\n \
         face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n \
         wlan0: 0000   54.  -56.  -256        0      0      0      0      0        0\n",
    );
    write(
        r,
        "proc/self/stat",
        "4242 (iotel agent) S 1 4242 4242 0 -1 4194560 600 0 0 0 250 50 0 0 20 0 2 0 100 12345678 900 18446744073709551615\n",
    );
    write(
        r,
        "proc/self/status",
        "Name:\tiotel\nVmRSS:\t    3912 kB\nThreads:\t2\n",
    );
    dir
}

fn config(root: &Path) -> Config {
    Config {
        interval: Duration::from_secs(30),
        sysfs_root: root.join("sys"),
        procfs_root: root.join("proc"),
        sensors: default_sensors(),
    }
}

fn values(metrics: &[Metric]) -> Vec<String> {
    metrics
        .iter()
        .map(|m| format!("{}{} {}", m.name, m.labels, m.value))
        .collect()
}

#[test]
fn reads_every_sensor_from_a_fixture_tree() {
    let dir = fixture();
    let mut h = DeviceHealth::new(config(dir.path()));
    let m = ComponentMetrics::detached("h", "device_health");
    assert_eq!(
        values(&h.read(&m)),
        [
            r#"cpu_temp_celsius{sensor="cpu-thermal",zone="thermal_zone0"} 48.5"#,
            r#"battery_level_percent{supply="BAT0"} 87"#,
            r#"signal_rssi_dbm{interface="wlan0"} -56"#,
            "process_cpu_seconds_total{} 3",
            "process_resident_memory_bytes{} 4005888",
        ]
    );
}

#[test]
fn a_missing_sensor_is_reported_once_and_the_rest_still_read() {
    let dir = fixture();
    fs::remove_file(dir.path().join("proc/net/wireless")).unwrap();
    fs::remove_dir_all(dir.path().join("sys/class/power_supply")).unwrap();
    let mut h = DeviceHealth::new(config(dir.path()));
    let m = ComponentMetrics::detached("h", "device_health");
    for _ in 0..3 {
        let names: Vec<String> = h.read(&m).iter().map(|m| m.name.to_string()).collect();
        assert_eq!(
            names,
            [
                "cpu_temp_celsius",
                "process_cpu_seconds_total",
                "process_resident_memory_bytes"
            ]
        );
    }
    assert_eq!(m.errors("sensor_unavailable").get(), 2);
}

#[test]
fn a_malformed_reading_is_skipped_not_fatal() {
    let dir = fixture();
    write(dir.path(), "sys/class/thermal/thermal_zone0/temp", "hot\n");
    let mut h = DeviceHealth::new(config(dir.path()));
    let m = ComponentMetrics::detached("h", "device_health");
    let names: Vec<String> = h.read(&m).iter().map(|m| m.name.to_string()).collect();
    assert!(!names.contains(&"cpu_temp_celsius".to_string()));
    assert_eq!(names.len(), 4);
    assert_eq!(m.errors("sensor_unavailable").get(), 1);
    // Reported once, not on every reading.
    h.read(&m);
    assert_eq!(m.errors("sensor_unavailable").get(), 1);
}

#[test]
fn a_sensor_whose_families_are_retired_is_not_read() {
    let dir = fixture();
    let mut h = DeviceHealth::new(config(dir.path()));
    let m = ComponentMetrics::detached("h", "device_health");
    let families = iotel_engine::MetricFamilies::default();
    let retire = |name: &str, kind| iotel_engine::families::RetiredFamily {
        name: name.into(),
        kind,
        help: None,
        unit: None,
        components: vec![],
    };
    // The battery's one family; one of the two of the process sensor.
    families.restore([
        retire("battery_level_percent", MetricType::Gauge),
        retire("process_cpu_seconds", MetricType::Counter),
    ]);
    h.retired = families.retired();
    // A battery that cannot be read would be reported: it is not read.
    fs::remove_dir_all(dir.path().join("sys/class/power_supply")).unwrap();
    let names: Vec<String> = h.read(&m).iter().map(|m| m.name.to_string()).collect();
    assert_eq!(
        names,
        [
            "cpu_temp_celsius",
            "signal_rssi_dbm",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes"
        ]
    );
    assert_eq!(m.errors("sensor_unavailable").get(), 0);
}

/// On a current-thread runtime, as the agent runs, a sensor file whose read
/// blocks (here a FIFO nobody writes yet) must not stall other tasks.
#[tokio::test]
async fn a_blocking_sensor_read_does_not_stall_the_runtime() {
    use iotel_engine::{ComponentKey, Output, shutdown};
    use std::time::Duration as StdDuration;

    let dir = fixture();
    let fifo = dir.path().join("proc/net/wireless");
    fs::remove_file(&fifo).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let mut cfg = config(dir.path());
    cfg.sensors = [Sensor::Wireless].into();

    // Opens the FIFO for writing, which lets the read go on, when told to or
    // after 5s at the latest, so a failing test ends.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let writer_fifo = fifo.clone();
    let writer = std::thread::spawn(move || {
        let _ = released.recv_timeout(StdDuration::from_secs(5));
        fs::write(
            &writer_fifo,
            "header\nheader\n wlan0: 0000   54.  -61.  -256  0 0 0 0 0  0\n",
        )
        .unwrap();
    });

    let (out, mut rx) = Output::for_test(4);
    let (trigger, stop) = shutdown::channel();
    let metrics = ComponentMetrics::detached("h", "device_health");
    let task = tokio::spawn(
        cfg.build(&BuildContext::for_test("h"))
            .unwrap()
            .run(SourceContext {
                key: ComponentKey {
                    id: "h".into(),
                    type_name: "device_health".into(),
                },
                out,
                shutdown: stop,
                metrics: metrics.clone(),
                data_dir: std::env::temp_dir(),
            }),
    );
    // The source starts reading at once and blocks on the FIFO; this timer
    // fires on time only if the runtime's thread is free.
    let started = std::time::Instant::now();
    tokio::time::sleep(StdDuration::from_millis(100)).await;
    let stalled = started.elapsed();
    let _ = release.send(());
    let Some(Events::Metrics(reading)) = rx.recv().await else {
        panic!("expected a reading")
    };
    assert!(
        stalled < StdDuration::from_secs(3),
        "stalled for {stalled:?}"
    );
    assert_eq!(
        values(&reading),
        [r#"signal_rssi_dbm{interface="wlan0"} -61"#]
    );
    trigger.trigger();
    task.await.unwrap().unwrap();
    writer.join().unwrap();
}
