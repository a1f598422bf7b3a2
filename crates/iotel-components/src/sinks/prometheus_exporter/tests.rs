use super::*;
use iotel_engine::{Batch, ComponentKey, ComponentMetrics, Input, Shutdown};
use iotel_model::{MetricMeta, MetricType};
use std::time::Duration as StdDuration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const OPENMETRICS: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

fn gauge(name: &str, labels: &[(&str, &str)], value: f64) -> Metric {
    let mut m = Metric::new(
        name,
        MetricType::Gauge,
        Labels::from_pairs(labels.iter().copied()),
        value,
        1_700_000_000_000,
    );
    m.meta = Arc::new(MetricMeta::new(name, MetricType::Gauge).with_help("Temperature."));
    m
}

fn counter(family: &str, labels: &[(&str, &str)], value: f64) -> Metric {
    Metric {
        name: Arc::from(format!("{family}_total")),
        labels: Labels::from_pairs(labels.iter().copied()),
        value,
        timestamp_ms: 1_700_000_000_500,
        meta: Arc::new(MetricMeta::new(family, MetricType::Counter)),
        exemplar: None,
    }
}

fn context(rx: mpsc::Receiver<Batch>, metrics: &ComponentMetrics) -> SinkContext {
    SinkContext {
        key: ComponentKey {
            id: "prom".into(),
            type_name: "prometheus_exporter".into(),
        },
        input: Input::new(rx, metrics.clone()),
        shutdown: Shutdown::never(),
        metrics: metrics.clone(),
        data_dir: std::env::temp_dir(),
    }
}

fn config(addr: SocketAddr, extra: &str) -> Config {
    toml::from_str(&format!("address = \"{addr}\"\n{extra}")).unwrap()
}

/// An exporter serving on a free loopback port, fed through its input.
struct Running {
    addr: SocketAddr,
    tx: mpsc::Sender<Batch>,
    metrics: ComponentMetrics,
    task: JoinHandle<Result<(), ComponentError>>,
    samples_sent: u64,
}

impl Running {
    async fn start(extra: &str) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(8);
        let metrics = ComponentMetrics::detached("prom", "prometheus_exporter");
        let exporter = config(addr, extra).exporter();
        let task = tokio::spawn(exporter.serve(listener, context(rx, &metrics)));
        Running {
            addr,
            tx,
            metrics,
            task,
            samples_sent: 0,
        }
    }

    /// Sends a batch and waits until the sink has stored or dropped it.
    async fn send(&mut self, batch: Vec<Metric>) {
        self.samples_sent += batch.len() as u64;
        self.tx.send(Events::Metrics(batch).into()).await.unwrap();
        let want = self.samples_sent;
        let metrics = self.metrics.clone();
        wait_for("the batch to be handled", || {
            let done = metrics.sent_total()
                + metrics.discards("max_series").get()
                + metrics.discards("retired").get();
            (done >= want).then_some(())
        })
        .await;
    }

    async fn get(&self, path: &str, accept: Option<&str>) -> Reply {
        request(self.addr, "GET", path, accept).await
    }
}

/// Polls `check` every few milliseconds until it answers, for at most 10s.
async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + StdDuration::from_secs(10);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    allow: String,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection, read to its end.
async fn request(addr: SocketAddr, method: &str, path: &str, accept: Option<&str>) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(": "))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_string())
            .unwrap_or_default()
    };
    Reply {
        status,
        content_type: header("content-type"),
        allow: header("allow"),
        body: body.to_string(),
    }
}

#[tokio::test]
async fn serves_the_latest_sample_of_each_series_in_text_and_openmetrics() {
    let mut sink = Running::start("").await;
    sink.send(vec![
        gauge("temp_celsius", &[("sensor", "s1")], 21.5),
        counter("packets", &[("dir", "rx")], 1234.0),
        gauge("temp_celsius", &[("sensor", "s2")], 20.0),
    ])
    .await;
    sink.send(vec![gauge("temp_celsius", &[("sensor", "s1")], 22.0)])
        .await;

    let text = sink.get("/metrics", None).await;
    assert_eq!(text.status, 200);
    assert_eq!(
        text.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(
        text.body,
        "# HELP temp_celsius Temperature.\n\
         # TYPE temp_celsius gauge\n\
         temp_celsius{sensor=\"s1\"} 22\n\
         temp_celsius{sensor=\"s2\"} 20\n\
         # TYPE packets_total counter\n\
         packets_total{dir=\"rx\"} 1234\n"
    );

    let om = sink.get("/", Some(OPENMETRICS)).await;
    assert_eq!(om.status, 200);
    assert_eq!(
        om.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(
        om.body,
        "# HELP temp_celsius Temperature.\n\
         # TYPE temp_celsius gauge\n\
         temp_celsius{sensor=\"s1\"} 22.0\n\
         temp_celsius{sensor=\"s2\"} 20.0\n\
         # TYPE packets counter\n\
         packets_total{dir=\"rx\"} 1234.0\n\
         # EOF\n"
    );
    assert_eq!(sink.metrics.sent_total(), 4);
}

#[tokio::test]
async fn timestamps_option_exposes_each_samples_time() {
    let mut sink = Running::start("timestamps = true").await;
    sink.send(vec![counter("packets", &[], 7.0)]).await;
    assert_eq!(
        sink.get("/metrics", None).await.body,
        "# TYPE packets_total counter\npackets_total 7 1700000000500\n"
    );
    assert_eq!(
        sink.get("/metrics", Some(OPENMETRICS)).await.body,
        "# TYPE packets counter\npackets_total 7.0 1700000000.500\n# EOF\n"
    );
}

#[tokio::test]
async fn other_paths_are_404_and_other_methods_405() {
    let sink = Running::start("").await;
    let r = sink.get("/nope", None).await;
    assert_eq!(r.status, 404);
    let r = request(sink.addr, "POST", "/metrics", None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.allow, "GET, HEAD");
    let r = request(sink.addr, "HEAD", "/metrics", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
}

#[tokio::test]
async fn new_series_past_max_series_are_dropped_and_counted() {
    let mut sink = Running::start("max_series = 2").await;
    sink.send(vec![
        gauge("g", &[("i", "1")], 1.0),
        gauge("g", &[("i", "2")], 2.0),
        gauge("g", &[("i", "3")], 3.0),
    ])
    .await;
    // A series already held is still updated.
    sink.send(vec![gauge("g", &[("i", "1")], 10.0)]).await;
    assert_eq!(sink.metrics.discards("max_series").get(), 1);
    assert_eq!(sink.metrics.sent_total(), 3);
    assert_eq!(
        sink.get("/metrics", None).await.body,
        "# HELP g Temperature.\n# TYPE g gauge\ng{i=\"1\"} 10\ng{i=\"2\"} 2\n"
    );
}

#[tokio::test]
async fn a_series_not_updated_within_staleness_leaves_the_exposition() {
    let mut sink = Running::start("staleness = \"50ms\"").await;
    sink.send(vec![gauge("g", &[], 1.0)]).await;
    let addr = sink.addr;
    let deadline = Instant::now() + StdDuration::from_secs(10);
    loop {
        let body = request(addr, "GET", "/metrics", None).await.body;
        if body.is_empty() {
            break;
        }
        assert_eq!(body, "# HELP g Temperature.\n# TYPE g gauge\ng 1\n");
        assert!(Instant::now() < deadline, "g never went stale");
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_retired_family_leaves_the_exposition_at_once_and_returns_when_enabled() {
    let mut sink = Running::start("").await;
    sink.send(vec![gauge("g", &[], 1.0), gauge("h", &[], 2.0)])
        .await;
    let families = sink.metrics.registry().families().clone();
    families.restore([iotel_engine::families::RetiredFamily {
        name: "g".into(),
        kind: MetricType::Gauge,
        help: None,
        unit: None,
        components: vec![],
    }]);
    let only_h = "# HELP h Temperature.\n# TYPE h gauge\nh 2\n";
    assert_eq!(sink.get("/metrics", None).await.body, only_h);
    // A sample that was on its way when the family was retired.
    sink.send(vec![gauge("g", &[], 3.0)]).await;
    assert_eq!(sink.metrics.discards("retired").get(), 1);
    assert_eq!(sink.get("/metrics", None).await.body, only_h);

    families.enable("g").unwrap();
    assert_eq!(sink.get("/metrics", None).await.body, only_h);
    sink.send(vec![gauge("g", &[], 4.0)]).await;
    assert_eq!(
        sink.get("/metrics", None).await.body,
        "# HELP h Temperature.\n# TYPE h gauge\nh 2\n# HELP g Temperature.\n# TYPE g gauge\ng 4\n"
    );
}

#[tokio::test]
async fn the_server_stops_when_the_input_closes() {
    let sink = Running::start("").await;
    assert_eq!(sink.get("/metrics", None).await.status, 200);
    drop(sink.tx);
    sink.task.await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(sink.addr).await.is_err());
}

#[tokio::test]
async fn a_bind_failure_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (_tx, rx) = mpsc::channel(1);
    let metrics = ComponentMetrics::detached("prom", "prometheus_exporter");
    let sink = config(addr, "")
        .build(&BuildContext::for_test("prom"))
        .unwrap();
    let err = sink.run(context(rx, &metrics)).await.unwrap_err();
    assert!(
        err.message
            .starts_with(&format!("cannot listen on {addr}: ")),
        "{err}"
    );
}

#[test]
fn config_has_defaults_and_refuses_zero_staleness_and_unknown_keys() {
    let c: Config = toml::from_str("address = \"127.0.0.1:9598\"").unwrap();
    assert_eq!(c.staleness, Duration::from_secs(300));
    assert!(!c.timestamps);
    assert_eq!(c.max_series.get(), 100_000);
    assert!(c.validate().is_empty());

    let c: Config = toml::from_str("address = \"127.0.0.1:9598\"\nstaleness = \"0s\"").unwrap();
    let problems = c.validate();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "staleness");

    assert!(toml::from_str::<Config>("address = \"127.0.0.1:9598\"\nport = 1").is_err());
    assert!(toml::from_str::<Config>("address = \"127.0.0.1:9598\"\nmax_series = 0").is_err());
    assert!(toml::from_str::<Config>("staleness = \"5m\"").is_err());
}

#[test]
fn store_sweeps_series_older_than_staleness_and_keeps_first_seen_order() {
    let t0 = Instant::now();
    let ms = StdDuration::from_millis;
    let mut store = Store::new(10, ms(50));
    store.insert(vec![gauge("a", &[], 1.0)], t0);
    store.insert(vec![gauge("b", &[], 2.0)], t0 + ms(30));
    let names = |v: Vec<Metric>| v.iter().map(|m| m.name.to_string()).collect::<Vec<_>>();
    assert_eq!(names(store.snapshot(t0 + ms(49))), ["a", "b"]);
    assert_eq!(names(store.snapshot(t0 + ms(50))), ["b"]);
    // `a` comes back as a new series, after `b`.
    store.insert(vec![gauge("a", &[], 3.0)], t0 + ms(60));
    assert_eq!(names(store.snapshot(t0 + ms(60))), ["b", "a"]);
    // Updating `b` keeps it alive and in place.
    store.insert(vec![gauge("b", &[], 4.0)], t0 + ms(70));
    let snap = store.snapshot(t0 + ms(100));
    assert_eq!(names(snap.clone()), ["b", "a"]);
    assert_eq!(snap[0].value, 4.0);
}

#[test]
fn a_full_store_sweeps_stale_series_before_refusing_a_new_one() {
    let t0 = Instant::now();
    let ms = StdDuration::from_millis;
    let mut store = Store::new(2, ms(50));
    assert_eq!(
        store.insert(vec![gauge("a", &[], 1.0), gauge("b", &[], 1.0)], t0),
        (2, 0)
    );
    assert_eq!(
        store.insert(vec![gauge("c", &[], 1.0)], t0 + ms(10)),
        (0, 1)
    );
    assert_eq!(
        store.insert(vec![gauge("c", &[], 1.0)], t0 + ms(50)),
        (1, 0)
    );
    assert_eq!(store.series.len(), 1);
}

#[tokio::test]
async fn a_buckets_exemplar_is_exposed_in_openmetrics_until_a_newer_one_replaces_it() {
    let meta = Arc::new(MetricMeta::new("latency_seconds", MetricType::Histogram));
    let bucket = |le: &str, value: f64, trace: Option<&str>| Metric {
        name: "latency_seconds_bucket".into(),
        labels: Labels::from_pairs([("le", le)]),
        value,
        timestamp_ms: 1_700_000_000_500,
        meta: meta.clone(),
        exemplar: trace.map(|t| {
            Box::new(iotel_model::Exemplar {
                labels: Labels::from_pairs([("trace_id", t)]),
                value: 2.5,
                timestamp_ms: Some(1_700_000_000_250),
            })
        }),
    };
    let slow = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut sink = Running::start("").await;
    sink.send(vec![
        bucket("1", 4.0, None),
        bucket("+Inf", 5.0, Some(slow)),
    ])
    .await;
    // Later samples of the bucket without an exemplar keep the last one.
    sink.send(vec![bucket("1", 6.0, None), bucket("+Inf", 7.0, None)])
        .await;
    let om = sink.get("/metrics", Some(OPENMETRICS)).await;
    assert_eq!(
        om.body,
        "# TYPE latency_seconds histogram\n\
         latency_seconds_bucket{le=\"1.0\"} 6\n\
         latency_seconds_bucket{le=\"+Inf\"} 7 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 2.5 1700000000.250\n\
         # EOF\n"
    );
    let newer = "0af7651916cd43dd8448eb211c80319c";
    sink.send(vec![bucket("+Inf", 8.0, Some(newer))]).await;
    let om = sink.get("/metrics", Some(OPENMETRICS)).await;
    assert!(
        om.body
            .contains(&format!("}} 8 # {{trace_id=\"{newer}\"}} 2.5")),
        "{}",
        om.body
    );
    // Prometheus text 0.0.4 has no exemplars.
    let text = sink.get("/metrics", None).await;
    assert!(!text.body.contains("trace_id"), "{}", text.body);
}
