//! The fault-injecting proxy of the test harness (`util::proxy`), checked
//! against a tiny HTTP-ish upstream written here, before other tests trust it
//! to tell a lost record from a proxy bug.

// Test helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use util::proxy::{Fault, FaultProxy, ProxyStats};
use util::{free_port, wait_for};

const DEADLINE: Duration = Duration::from_secs(10);

/// How an upstream connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Eof,
    Error(ErrorKind),
}

/// Everything one upstream connection received, logged when it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ended {
    received: Vec<u8>,
    end: End,
}

/// An HTTP/1.1-ish server on a free loopback port: it answers each request
/// (a head, then a `Content-Length` body) with 200 and the request's body,
/// keeps the connection open, and logs what each connection received when
/// it ends. Its threads end with the test process.
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    ended: Arc<Mutex<Vec<Ended>>>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(Mutex::new(Vec::new()));
        let (accepted2, ended2) = (Arc::clone(&accepted), Arc::clone(&ended));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                accepted2.fetch_add(1, Ordering::SeqCst);
                let ended = Arc::clone(&ended2);
                std::thread::spawn(move || {
                    let log = answer_requests(stream);
                    ended.lock().unwrap().push(log);
                });
            }
        });
        Upstream {
            addr,
            accepted,
            ended,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits for `n` connections to have ended and returns their logs.
    fn wait_ended(&self, n: usize) -> Vec<Ended> {
        wait_for(
            &format!("{n} upstream connections to end"),
            DEADLINE,
            || {
                let ended = self.ended.lock().unwrap();
                (ended.len() >= n).then(|| ended.clone())
            },
        )
    }
}

fn answer_requests(mut stream: TcpStream) -> Ended {
    let mut received = Vec::new();
    let mut answered = 0;
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                return Ended {
                    received,
                    end: End::Eof,
                };
            }
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => {
                return Ended {
                    received,
                    end: End::Error(e.kind()),
                };
            }
        }
        while let Some((len, body)) = complete_request(&received[answered..]) {
            let _ = stream.write_all(&response(body));
            answered += len;
        }
    }
}

/// The length and body of the request at the start of `bytes`, once all of
/// it is there.
fn complete_request(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let body_len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(Some(0), |v| v.trim().parse().ok())?;
    let end = head_end + body_len;
    (bytes.len() >= end).then(|| (end, &bytes[head_end..end]))
}

fn request(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /push HTTP/1.1\r\nHost: receiver\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn response(body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(body);
    r
}

/// `len` bytes in which every byte value occurs.
fn binary_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Sends one request on `s` and reads exactly one answer's worth of bytes.
fn round_trip(s: &mut TcpStream, body: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(&request(body))?;
    let mut answer = vec![0u8; response(body).len()];
    s.read_exact(&mut answer)?;
    Ok(answer)
}

/// A new connection that carries one request and its exact answer.
fn round_trip_works(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    round_trip(&mut s, b"ping").is_ok_and(|answer| answer == response(b"ping"))
}

/// Half-closes `s` and reads until the proxy passes the upstream's EOF on.
fn finish(mut s: TcpStream) -> Vec<u8> {
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    rest
}

fn stats_when(proxy: &FaultProxy, what: &str, ok: impl Fn(&ProxyStats) -> bool) -> ProxyStats {
    wait_for(what, DEADLINE, || Some(proxy.stats()).filter(&ok))
}

/// The names of this process's threads that belong to the proxy on `addr`.
fn proxy_threads(addr: SocketAddr) -> Vec<String> {
    let prefix = format!("fpx-{}-", addr.port());
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

#[test]
fn pass_forwards_every_byte_both_ways_unchanged() {
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(upstream.addr);
    let body = binary_body(300_000);

    let mut s = connect(proxy.addr());
    let answer = round_trip(&mut s, &body).unwrap();
    assert!(
        answer == response(&body),
        "the answer differs from the upstream's"
    );
    assert_eq!(finish(s), b"");

    let ended = upstream.wait_ended(1);
    assert_eq!(ended.len(), 1);
    assert!(
        ended[0].received == request(&body),
        "the upstream got other bytes"
    );
    assert_eq!(ended[0].end, End::Eof);
    assert_eq!(
        proxy.stats(),
        ProxyStats {
            connections_accepted: 1,
            bytes_to_upstream: request(&body).len() as u64,
            bytes_to_client: response(&body).len() as u64,
            ..ProxyStats::default()
        }
    );
}

#[test]
fn refuse_makes_connect_fail_until_pass_reopens_the_same_port() {
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(upstream.addr);
    let addr = proxy.addr();

    proxy.set(Fault::Refuse);
    let refused = TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);

    proxy.set(Fault::Pass);
    assert_eq!(proxy.addr(), addr);
    let mut s = connect(addr);
    assert_eq!(round_trip(&mut s, b"back").unwrap(), response(b"back"));
}

#[test]
fn refuse_cuts_connections_that_are_already_open() {
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(upstream.addr);
    let mut s = connect(proxy.addr());
    assert_eq!(round_trip(&mut s, b"one").unwrap(), response(b"one"));

    proxy.set(Fault::Refuse);

    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "expected EOF");
    let ended = upstream.wait_ended(1);
    assert_eq!(
        ended,
        [Ended {
            received: request(b"one"),
            end: End::Eof
        }]
    );
    assert_eq!(proxy.stats().connections_cut, 1);
}

#[test]
fn setting_another_fault_cuts_open_connections_but_pass_keeps_them() {
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(upstream.addr);
    let mut s = connect(proxy.addr());
    assert_eq!(round_trip(&mut s, b"one").unwrap(), response(b"one"));

    proxy.set(Fault::Pass);
    assert_eq!(round_trip(&mut s, b"two").unwrap(), response(b"two"));
    assert_eq!(proxy.stats().connections_cut, 0);

    proxy.set(Fault::DropResponse);
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "expected EOF");
    assert_eq!(proxy.stats().connections_cut, 1);
}

#[test]
fn reset_mid_request_forwards_exactly_after_bytes_then_resets_the_client() {
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(upstream.addr);
    proxy.set(Fault::ResetMidRequest { after_bytes: 10 });
    let sent = request(&binary_body(100));

    let mut s = connect(proxy.addr());
    s.write_all(&sent).unwrap();
    let mut buf = [0u8; 64];
    let err = s.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);

    let ended = upstream.wait_ended(1);
    assert_eq!(
        ended,
        [Ended {
            received: sent[..10].to_vec(),
            end: End::Eof
        }]
    );
    let stats = proxy.stats();
    assert_eq!(stats.bytes_to_upstream, 10);
    assert_eq!(stats.bytes_to_client, 0);
    assert_eq!(stats.connections_cut, 1);
}

#[test]
fn blackhole_accepts_but_never_answers_nor_closes() {
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(upstream.addr);
    proxy.set(Fault::Blackhole);

    let mut s = connect(proxy.addr());
    s.write_all(&request(b"into the void")).unwrap();
    stats_when(&proxy, "the proxy to accept", |s| {
        s.connections_accepted == 1
    });
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    let err = s.read(&mut buf).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "expected a read timeout, got {err}"
    );

    assert_eq!(upstream.accepted(), 0);
    let stats = proxy.stats();
    assert_eq!(stats.bytes_to_upstream, 0);
    assert_eq!(stats.bytes_to_client, 0);
}

#[test]
fn slow_drip_delivers_the_whole_response_and_counts_its_bytes() {
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(upstream.addr);
    proxy.set(Fault::SlowDrip {
        bytes_per_sec: NonZeroU64::new(4000).unwrap(),
    });
    let body = binary_body(1000);

    let mut s = connect(proxy.addr());
    assert!(round_trip(&mut s, &body).unwrap() == response(&body));
    assert_eq!(finish(s), b"");

    let stats = proxy.stats();
    assert_eq!(stats.bytes_to_upstream, request(&body).len() as u64);
    assert_eq!(stats.bytes_to_client, response(&body).len() as u64);
    assert_eq!(stats.connections_cut, 0);
}

#[test]
fn drop_response_delivers_the_request_and_closes_the_client_without_an_answer() {
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(upstream.addr);
    proxy.set(Fault::DropResponse);
    let sent = request(&binary_body(5000));

    let mut s = connect(proxy.addr());
    s.write_all(&sent).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"", "the client got response bytes");

    let ended = upstream.wait_ended(1);
    assert_eq!(ended.len(), 1);
    assert!(ended[0].received == sent, "the upstream got other bytes");
    assert_eq!(ended[0].end, End::Eof);
    let stats = proxy.stats();
    assert_eq!(stats.responses_dropped, 1);
    assert_eq!(stats.bytes_to_client, 0);
}

#[test]
fn flapping_alternates_between_refusing_and_passing() {
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(upstream.addr);
    let addr = proxy.addr();
    proxy.set(Fault::Flapping {
        up: Duration::from_millis(200),
        down: Duration::from_millis(200),
    });

    let refused = || match TcpStream::connect(addr) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(()),
        _ => None,
    };
    wait_for("a refused connect", DEADLINE, refused);
    wait_for("a round trip", DEADLINE, || {
        round_trip_works(addr).then_some(())
    });
    wait_for("a refused connect again", DEADLINE, refused);
}

#[test]
fn set_upstream_sends_new_connections_to_the_new_address() {
    let old = Upstream::start();
    let new = Upstream::start();
    let proxy = FaultProxy::start(old.addr);
    assert!(round_trip_works(proxy.addr()));

    proxy.set_upstream(new.addr);
    assert!(round_trip_works(proxy.addr()));

    assert_eq!(new.wait_ended(1)[0].received, request(b"ping"));
    assert_eq!(old.accepted(), 1);
}

#[test]
fn an_upstream_that_refuses_makes_the_proxy_close_the_client() {
    let nothing: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = FaultProxy::start(nothing);

    let mut s = connect(proxy.addr());
    let mut answer = Vec::new();
    assert_eq!(s.read_to_end(&mut answer).unwrap(), 0, "expected EOF");
    assert_eq!(proxy.stats().upstream_connect_failures, 1);
}

#[test]
fn dropping_the_proxy_ends_its_threads_and_closes_its_connections() {
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(upstream.addr);
    let addr = proxy.addr();
    proxy.set(Fault::SlowDrip {
        bytes_per_sec: NonZeroU64::new(1).unwrap(),
    });
    let mut dripping = connect(addr);
    dripping.write_all(&request(b"slow")).unwrap();
    let mut first = [0u8; 1];
    dripping.read_exact(&mut first).unwrap();
    let mut idle = connect(addr);
    stats_when(&proxy, "both connections accepted", |s| {
        s.connections_accepted == 2
    });
    assert!(!proxy_threads(addr).is_empty());

    drop(proxy);

    assert_eq!(proxy_threads(addr), Vec::<String>::new());
    // Both clients had nothing left unread at the proxy: a plain EOF.
    let mut rest = Vec::new();
    dripping.read_to_end(&mut rest).unwrap();
    assert!(
        rest.len() + 1 < response(b"slow").len(),
        "the drip finished"
    );
    assert_eq!(idle.read_to_end(&mut rest).unwrap(), 0, "expected EOF");
    let refused = TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}
