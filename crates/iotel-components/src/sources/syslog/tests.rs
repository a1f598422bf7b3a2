#![allow(clippy::unwrap_used)]

use super::framing::{Frame, Framer};
use super::*;
use iotel_engine::shutdown::{self, ShutdownTrigger};
use iotel_engine::{ComponentKey, TestReceiver};
use iotel_model::Severity;
use proptest::prelude::*;
use serde_json::json;
use std::time::{Duration as StdDuration, Instant};
use tokio::io::AsyncWriteExt;

// ---- Framing --------------------------------------------------------------

/// Every frame `bytes` gives when fed in `chunks`, then closed.
fn frames_of(max: usize, bytes: &[u8], chunks: &[usize]) -> Vec<(Vec<u8>, bool)> {
    let mut f = Framer::new(max);
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let want = sizes.next().copied().unwrap_or(1).max(1);
        let n = want.min(rest.len()).min(f.room());
        assert!(n > 0, "the framer has no room and gives no frame");
        f.push(&rest[..n]);
        rest = &rest[n..];
        while let Some(Frame { bytes, truncated }) = f.next_frame(false) {
            out.push((bytes.to_vec(), truncated));
        }
        assert!(f.buffered() <= max + framing::MAX_HEADER);
    }
    while let Some(Frame { bytes, truncated }) = f.next_frame(true) {
        out.push((bytes.to_vec(), truncated));
    }
    out
}

fn whole(s: &str) -> (Vec<u8>, bool) {
    (s.as_bytes().to_vec(), false)
}

#[test]
fn framer_tells_octet_counting_from_lines_per_frame() {
    let stream = b"11 <13>1 - - -<13>line one\r\n4 a\nbc12x not counted\n\n3 end";
    let got = frames_of(100, stream, &[1]);
    assert_eq!(
        got,
        vec![
            whole("<13>1 - - -"),
            whole("<13>line one"),
            whole("a\nbc"),
            whole("12x not counted"),
            whole(""),
            whole("end"),
        ]
    );
}

#[test]
fn framer_cuts_oversize_frames_and_skips_their_rest() {
    let mut stream = format!("30 {}", "a".repeat(30)).into_bytes();
    stream.extend_from_slice(format!("{}\n", "b".repeat(25)).as_bytes());
    stream.extend_from_slice(b"ok\n");
    let got = frames_of(10, &stream, &[3, 7, 1]);
    assert_eq!(
        got,
        vec![
            ("a".repeat(10).into_bytes(), true),
            ("b".repeat(10).into_bytes(), true),
            whole("ok"),
        ]
    );
}

#[test]
fn framer_gives_a_last_line_without_lf_whole_and_a_cut_octet_frame_truncated() {
    assert_eq!(frames_of(100, b"tail", &[2]), vec![whole("tail")]);
    assert_eq!(
        frames_of(100, b"10 abc", &[2]),
        vec![(b"abc".to_vec(), true)]
    );
    // Digits at the end of the stream are a line.
    assert_eq!(frames_of(100, b"123", &[1]), vec![whole("123")]);
}

fn frame_text() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..40)
}

proptest! {
    #[test]
    fn framer_returns_every_message_however_the_stream_is_split(
        messages in proptest::collection::vec((frame_text(), any::<bool>()), 1..8),
        chunks in proptest::collection::vec(1usize..20, 1..8),
    ) {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for (m, counted) in &messages {
            // A line can hold no LF, and a CR before its LF is framing.
            let line_ok = !m.contains(&b'\n') && !m.ends_with(b"\r")
                && !m.first().is_some_and(|b| (b'1'..=b'9').contains(b));
            if *counted || !line_ok {
                stream.extend_from_slice(format!("{} ", m.len()).as_bytes());
                if m.is_empty() {
                    // "0 " is not octet counting; leave it out.
                    stream.truncate(stream.len() - 2);
                    continue;
                }
                stream.extend_from_slice(m);
            } else {
                stream.extend_from_slice(m);
                stream.push(b'\n');
            }
            want.push((m.clone(), false));
        }
        prop_assert_eq!(frames_of(64, &stream, &chunks), want);
    }

    #[test]
    fn framer_never_stalls_or_grows_past_its_bound_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        chunks in proptest::collection::vec(1usize..50, 1..8),
        max in 1usize..40,
    ) {
        for (frame, _) in frames_of(max, &bytes, &chunks) {
            prop_assert!(frame.len() <= max);
        }
    }
}

// ---- Config ---------------------------------------------------------------

fn config(text: &str) -> Config {
    toml::from_str(text).unwrap()
}

#[test]
fn config_errors_name_the_key_and_what_was_expected() {
    let c = config(
        r#"
address = "127.0.0.1:5514"
max_message_bytes = "100B"
idle_timeout = "0s"
labels = { "1x" = "a", site = "" }
"#,
    );
    let got: Vec<(String, String)> = c
        .validate()
        .into_iter()
        .map(|p| (p.key, p.message))
        .collect();
    let want = [
        (
            "address",
            "expected udp://host:port or tcp://host:port with an IP address, e.g. \"udp://0.0.0.0:5514\", got \"127.0.0.1:5514\"",
        ),
        ("max_message_bytes", "expected 256B to 16MiB, got 100B"),
        (
            "idle_timeout",
            "expected a duration above zero, e.g. \"5m\"",
        ),
        (
            "labels.1x",
            "not a valid label name (expected letters, digits, '_' and '.', not starting with a digit or '.')",
        ),
        (
            "labels.site",
            "expected a non-empty value (an empty label is an absent one)",
        ),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, m)| (k.to_string(), m.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn tcp_and_udp_claim_their_ports_apart() {
    assert_eq!(
        config(r#"address = "tcp://0.0.0.0:5514""#).claims(),
        ["port 0.0.0.0:5514"]
    );
    assert_eq!(
        config(r#"address = "udp://0.0.0.0:5514""#).claims(),
        ["udp port 0.0.0.0:5514"]
    );
    let e = config("address = \"udp://0.0.0.0:1\"\ntimezone = \"Mars/Olympus\"")
        .build(&BuildContext::for_test("in"))
        .err()
        .unwrap();
    assert_eq!(e.key, "timezone");
    assert!(
        e.message.starts_with("unknown time zone \"Mars/Olympus\""),
        "{}",
        e.message
    );
}

// ---- Sockets --------------------------------------------------------------

pub(super) struct Running {
    pub(super) addr: SocketAddr,
    rx: TestReceiver,
    cx: BuildContext,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), ComponentError>>,
}

const DEADLINE: StdDuration = StdDuration::from_secs(10);

pub(super) async fn start(transport: &str, extra: &str) -> Running {
    let addr = match transport {
        "udp" => std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap(),
        _ => std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap(),
    };
    let cfg = config(&format!("address = \"{transport}://{addr}\"\n{extra}"));
    assert_eq!(cfg.validate(), vec![]);
    let cx = BuildContext::for_test("in");
    let (out, rx) = Output::for_test(64);
    let (trigger, shutdown) = shutdown::channel();
    let source_cx = SourceContext {
        key: ComponentKey {
            id: "in".into(),
            type_name: "syslog".into(),
        },
        out,
        shutdown,
        metrics: cx.metrics.clone(),
        data_dir: std::env::temp_dir(),
    };
    let task = tokio::spawn(cfg.build(&cx).unwrap().run(source_cx));
    let mut running = Running {
        addr,
        rx,
        cx,
        trigger,
        task,
    };
    running.wait_until_listening(transport).await;
    running
}

/// The message of the records that tell a UDP source is listening.
const PROBE: &str = "listening?";

impl Running {
    async fn wait_until_listening(&mut self, transport: &str) {
        let deadline = Instant::now() + DEADLINE;
        if transport == "tcp" {
            // A connection is accepted; then wait until it is gone again,
            // so it does not count against max_connections.
            let probe = loop {
                if let Ok(c) = TcpStream::connect(self.addr).await {
                    break c;
                }
                assert!(Instant::now() < deadline, "the source never listened");
                tokio::time::sleep(StdDuration::from_millis(5)).await;
            };
            let open = self.cx.metrics.registry().gauge(
                "iotel_syslog_open_connections",
                "",
                &[("component_id", "in")],
            );
            let wait_for = |want: f64, what: &'static str| {
                let open = open.clone();
                async move {
                    while open.get() != want {
                        assert!(
                            Instant::now() < deadline,
                            "the probe connection was never {what}"
                        );
                        tokio::time::sleep(StdDuration::from_millis(5)).await;
                    }
                }
            };
            wait_for(1.0, "accepted").await;
            drop(probe);
            wait_for(0.0, "closed").await;
            return;
        }
        // UDP: probes until one is received; `records` skips late ones.
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        loop {
            client
                .send_to(format!("<13>probe: {PROBE}").as_bytes(), self.addr)
                .unwrap();
            if let Ok(Some(_)) =
                tokio::time::timeout(StdDuration::from_millis(50), self.rx.recv()).await
            {
                return;
            }
            assert!(Instant::now() < deadline, "the source never listened");
        }
    }
}

impl Running {
    /// The next `n` records, waiting at most the deadline.
    pub(super) async fn records(&mut self, n: usize) -> Vec<LogRecord> {
        let mut got = Vec::new();
        while got.len() < n {
            match tokio::time::timeout(DEADLINE, self.rx.recv()).await {
                Ok(Some(Events::Logs(v))) => {
                    got.extend(v.into_iter().filter(|r| r.message != PROBE))
                }
                Ok(other) => panic!("expected logs, got {other:?}"),
                Err(_) => panic!("only {} of {n} records arrived: {got:#?}", got.len()),
            }
        }
        assert_eq!(got.len(), n, "{got:#?}");
        got
    }

    pub(super) fn errors(&self, code: &str) -> u64 {
        self.cx.metrics.errors(code).get()
    }

    fn discarded(&self, reason: &str) -> u64 {
        self.cx.metrics.discards(reason).get()
    }

    pub(super) async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the source stops")
            .unwrap()
            .unwrap();
    }
}

fn fields(r: &LogRecord) -> serde_json::Value {
    serde_json::Value::Object(r.fields.clone())
}

#[tokio::test]
async fn udp_datagrams_become_records_and_garbage_is_kept_with_its_parse_error() {
    let mut s = start("udp", "labels = { site = \"plant-7\" }").await;
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for datagram in [
        &b"<165>1 2003-10-11T22:14:15.003Z gw-1 evntslog - ID47 [exampleSDID@32473 iut=\"3\"] An event\n"[..],
        b"<999>garbage",
        b"",
        b"<30>Oct 11 22:14:15 gw-2 sshd[42]: Accepted key",
    ] {
        client.send_to(datagram, s.addr).await.unwrap();
    }
    let r = s.records(3).await;

    assert_eq!(r[0].timestamp_ns, 1_065_910_455_003_000_000);
    assert_eq!(r[0].message, "An event");
    assert_eq!(r[0].severity, Some(Severity::Info));
    assert_eq!(
        r[0].labels,
        Labels::from_pairs([
            ("app_name", "evntslog"),
            ("hostname", "gw-1"),
            ("site", "plant-7")
        ])
    );
    assert_eq!(
        fields(&r[0]),
        json!({
            "facility": "local4",
            "syslog_severity": "notice",
            "msgid": "ID47",
            "version": 1,
            "structured_data": {"exampleSDID@32473": {"iut": "3"}},
            "source_ip": "127.0.0.1",
        })
    );

    assert_eq!(r[1].message, "<999>garbage");
    assert_eq!(r[1].severity, None);
    assert_eq!(r[1].labels, Labels::from_pairs([("site", "plant-7")]));
    assert_eq!(
        fields(&r[1]),
        json!({"parse_error": "byte 1: expected PRI 0-191, found 999", "source_ip": "127.0.0.1"})
    );

    assert_eq!(r[2].message, "Accepted key");
    assert_eq!(
        r[2].labels,
        Labels::from_pairs([
            ("app_name", "sshd"),
            ("hostname", "gw-2"),
            ("site", "plant-7")
        ])
    );
    assert_eq!(
        fields(&r[2]),
        json!({"facility": "daemon", "syslog_severity": "info", "procid": "42", "source_ip": "127.0.0.1"})
    );

    assert_eq!(s.errors("parse_error"), 1);
    assert_eq!(s.discarded("empty_message"), 1);
    s.stop().await;
}

#[tokio::test]
async fn udp_datagrams_over_max_message_bytes_are_cut_and_flagged() {
    let mut s = start("udp", "max_message_bytes = \"256B\"").await;
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let long = format!("<13>app: {}", "x".repeat(400));
    client.send_to(long.as_bytes(), s.addr).await.unwrap();
    let r = s.records(1).await;
    assert_eq!(r[0].message.len(), 256 - "<13>app: ".len());
    assert_eq!(r[0].fields.get("truncated"), Some(&json!(true)));
    assert_eq!(s.errors("message_truncated"), 1);
    s.stop().await;
}

#[tokio::test]
async fn tcp_takes_both_framings_on_one_connection_split_at_odd_boundaries() {
    let mut s = start("tcp", "").await;
    let good1 = "<34>1 2003-10-11T22:14:15.003Z host su - ID47 - first";
    let good2 = "<13>Oct 11 22:14:15 host app: second";
    let good3 = "<13>1 - host app - - - third\nwith a newline";
    let stream = format!(
        "{} {good1}{good2}\n\x01\x02 garbage line\n\r\n{} {good3}<13>1 - h a - - - last",
        good1.len(),
        good3.len()
    );
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let bytes = stream.as_bytes();
    let mut i = 0;
    for size in [1, 3, 7, 2, 13, 5, 11].iter().cycle() {
        if i >= bytes.len() {
            break;
        }
        let end = (i + size).min(bytes.len());
        conn.write_all(&bytes[i..end]).await.unwrap();
        conn.flush().await.unwrap();
        i = end;
        tokio::task::yield_now().await;
    }
    conn.shutdown().await.unwrap();
    let r = s.records(5).await;
    let messages: Vec<&str> = r.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "first",
            "second",
            "\u{1}\u{2} garbage line",
            "third\nwith a newline",
            "last"
        ]
    );
    assert_eq!(
        r[2].fields.get("parse_error"),
        None,
        "a line without PRI is a BSD message"
    );
    assert_eq!(r[0].labels.get("hostname"), Some("host"));
    assert_eq!(r[1].labels.get("app_name"), Some("app"));
    assert_eq!(s.discarded("empty_message"), 1);
    s.stop().await;
}

#[tokio::test]
async fn tcp_garbage_between_good_messages_is_kept_flagged_and_the_good_ones_flow() {
    let mut s = start("tcp", "").await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"<13>1 - h a - - - one\n<13>1 2003-13-01T00:00:00Z h a - - - bad month\n<13>1 - h a - - - two\n")
        .await
        .unwrap();
    let r = s.records(3).await;
    assert_eq!(r[0].message, "one");
    assert_eq!(
        r[1].message,
        "<13>1 2003-13-01T00:00:00Z h a - - - bad month"
    );
    assert_eq!(
        r[1].fields.get("parse_error"),
        Some(&json!(
            "byte 6: expected a valid date and time, found 2003-13-01 00:00:00"
        ))
    );
    assert_eq!(r[2].message, "two");
    assert_eq!(s.errors("parse_error"), 1);
    s.stop().await;
}

#[tokio::test]
async fn tcp_oversize_frames_are_cut_flagged_and_the_next_frame_is_intact() {
    let mut s = start("tcp", "max_message_bytes = \"256B\"").await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let body = format!("<13>1 - h a - - - {}", "y".repeat(1000));
    let stream = format!(
        "{} {body}<13>1 - h a - - - after counted\n<13>app: {}\n<13>1 - h a - - - after line\n",
        body.len(),
        "z".repeat(600)
    );
    conn.write_all(stream.as_bytes()).await.unwrap();
    let r = s.records(4).await;
    assert_eq!(r[0].message, "y".repeat(256 - "<13>1 - h a - - - ".len()));
    assert_eq!(r[0].fields.get("truncated"), Some(&json!(true)));
    assert_eq!(r[1].message, "after counted");
    assert_eq!(r[1].fields.get("truncated"), None);
    assert_eq!(r[2].message, "z".repeat(256 - "<13>app: ".len()));
    assert_eq!(r[2].fields.get("truncated"), Some(&json!(true)));
    assert_eq!(r[3].message, "after line");
    assert_eq!(s.errors("message_truncated"), 2);
    s.stop().await;
}

/// Reads until the peer closes, within the deadline.
async fn closed_by_peer(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(DEADLINE, conn.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn connections_past_max_connections_are_closed_and_counted() {
    let mut s = start("tcp", "max_connections = 1").await;
    let mut first = TcpStream::connect(s.addr).await.unwrap();
    first.write_all(b"<13>app: one\n").await.unwrap();
    assert_eq!(s.records(1).await[0].message, "one");
    let mut second = TcpStream::connect(s.addr).await.unwrap();
    assert!(closed_by_peer(&mut second).await);
    assert_eq!(s.errors("connection_limit"), 1);
    // The first connection still works.
    first.write_all(b"<13>app: two\n").await.unwrap();
    assert_eq!(s.records(1).await[0].message, "two");
    s.stop().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_idle_timeout() {
    let mut s = start("tcp", "idle_timeout = \"50ms\"").await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"<13>app: partial without LF")
        .await
        .unwrap();
    assert!(closed_by_peer(&mut conn).await);
    // What was buffered is the last frame.
    assert_eq!(s.records(1).await[0].message, "partial without LF");
    s.stop().await;
}
