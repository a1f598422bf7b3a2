use super::*;
use iotel_engine::shutdown::{self, ShutdownTrigger};
use iotel_engine::{ComponentKey, TestReceiver};
use iotel_formats::native::Compression;
use iotel_model::{Events, LogRecord};
use std::path::Path;
use std::time::Duration;

struct Running {
    addr: SocketAddr,
    rx: TestReceiver,
    metrics: ComponentMetrics,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), ComponentError>>,
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

async fn start(data_dir: &Path, extra: &str) -> Running {
    let addr = free_addr();
    let cfg: Config = toml::from_str(&format!("address = \"{addr}\"\n{extra}")).unwrap();
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate().len());
    let (out, rx) = Output::for_test(16);
    let metrics = ComponentMetrics::detached("in", "iotel");
    let (trigger, shutdown) = shutdown::channel();
    let cx = SourceContext {
        key: ComponentKey {
            id: "in".into(),
            type_name: "iotel".into(),
        },
        out,
        shutdown,
        metrics: metrics.clone(),
        data_dir: data_dir.to_path_buf(),
    };
    let task = tokio::spawn(cfg.build(&BuildContext::for_test("in")).unwrap().run(cx));
    // Listening once a connection is accepted.
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Running {
        addr,
        rx,
        metrics,
        trigger,
        task,
    }
}

impl Running {
    async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

fn logs(range: std::ops::Range<u32>) -> Events {
    Events::Logs(
        range
            .map(|i| LogRecord::new(i64::from(i), format!("line {i}")))
            .collect(),
    )
}

fn frame(agent: &str, seq: u64, events: &Events) -> Vec<u8> {
    native::encode(agent, seq, events, Compression::Snappy).unwrap()
}

struct Answered {
    status: u16,
    next: Option<u64>,
    /// `Iotel-Received`.
    received: Option<String>,
    body: String,
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Answered {
    let a = crate::sources::http_receiver::testing::send(addr, method, path, body, headers).await;
    Answered {
        status: a.status,
        next: a
            .headers
            .get(NEXT_SEQUENCE)
            .map(|v| v.to_str().unwrap().parse().unwrap()),
        received: a
            .headers
            .get(RECEIVED)
            .map(|v| v.to_str().unwrap().to_string()),
        body: a.body,
    }
}

async fn post(addr: SocketAddr, body: Vec<u8>, last: Option<u64>) -> Answered {
    let last = last.map(|l| l.to_string());
    let headers: Vec<(&str, &str)> = last.iter().map(|l| (LAST_SEQUENCE, l.as_str())).collect();
    send(addr, "POST", BATCH_PATH, body, &headers).await
}

/// Posts a batch of `first ..= last` from an agent whose oldest unsettled
/// id is `oldest`, as the live lane's agents do.
async fn post_from(addr: SocketAddr, first: u64, last: u64, oldest: u64, n: u32) -> Answered {
    let (last, oldest) = (last.to_string(), oldest.to_string());
    let headers = [
        (LAST_SEQUENCE, last.as_str()),
        (OLDEST_SEQUENCE, oldest.as_str()),
    ];
    let body = frame("dev-1", first, &logs(0..n));
    send(addr, "POST", BATCH_PATH, body, &headers).await
}

/// Posts a batch that must be accepted; returns what went downstream.
async fn accepted(r: &mut Running, body: Vec<u8>, last: Option<u64>) -> Events {
    let (answered, events) = tokio::join!(post(r.addr, body, last), r.rx.recv());
    assert_eq!((answered.status, answered.body.as_str()), (200, ""));
    events.unwrap()
}

#[tokio::test]
async fn a_batch_is_answered_only_once_downstream_has_it_safe() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path(), "").await;
    let addr = r.addr;
    let request =
        tokio::spawn(async move { post(addr, frame("dev-1", 10, &logs(0..3)), Some(12)).await });
    let held = r.rx.recv_batch().await.unwrap();
    assert_eq!(held.events, logs(0..3));
    assert!(held.ack.is_awaited());
    // Still holding the batch: no answer yet.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!request.is_finished());
    held.ack.done();
    let answered = request.await.unwrap();
    assert_eq!((answered.status, answered.body.as_str()), (200, ""));
    assert_eq!(
        r.metrics.sent_total(),
        0,
        "the output, not the source, counts sent"
    );
    r.stop().await;
}

#[tokio::test]
async fn retransmits_are_answered_409_with_the_next_sequence_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path(), "").await;
    accepted(&mut r, frame("dev-1", 10, &logs(0..3)), Some(12)).await;
    // The same batch again: all of it seen.
    let again = post(r.addr, frame("dev-1", 10, &logs(0..3)), Some(12)).await;
    assert_eq!((again.status, again.next), (409, Some(13)));
    assert_eq!(
        again.body,
        "agent \"dev-1\": sequences 10..=12 were partly or wholly received before (all of it); \
         the next wanted is 13"
    );
    // Regrouped after a restart: 11..=14 overlaps.
    let overlap = post(r.addr, frame("dev-1", 11, &logs(1..6)), Some(14)).await;
    assert_eq!((overlap.status, overlap.next), (409, Some(13)));
    // Another agent with the same ids is not a duplicate.
    assert_eq!(
        accepted(&mut r, frame("dev-2", 10, &logs(0..1)), None).await,
        logs(0..1)
    );
    // Past the window: new; a gap is fine.
    assert_eq!(
        accepted(&mut r, frame("dev-1", 20, &logs(7..8)), None).await,
        logs(7..8)
    );
    assert_eq!(r.metrics.errors("duplicate").get(), 1);
    assert_eq!(r.metrics.errors("sequence_overlap").get(), 1);
    assert_eq!(r.metrics.discards("duplicate").get(), 3 + 5);
    r.stop().await;
}

#[tokio::test]
async fn the_dedup_window_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path(), "").await;
    accepted(&mut r, frame("dev-1", 5, &logs(0..2)), Some(6)).await;
    r.stop().await;
    let r = start(dir.path(), "").await;
    let again = post(r.addr, frame("dev-1", 5, &logs(0..2)), Some(6)).await;
    assert_eq!((again.status, again.next), (409, Some(7)));
    r.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_4xx_with_the_reason_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(
        dir.path(),
        "max_body_size = \"4KiB\"\nmax_decoded_size = \"8KiB\"",
    )
    .await;
    let good = frame("dev-1", 1, &logs(0..2));

    let garbage = post(r.addr, b"hello, world".to_vec(), None).await;
    assert_eq!(garbage.status, 400);
    assert_eq!(
        garbage.body,
        "not a valid native batch: not a native batch: expected magic \"IOTL\", found [68, 65, 6c, 6c]"
    );

    let truncated = post(r.addr, good[..good.len() - 3].to_vec(), None).await;
    assert_eq!(truncated.status, 400);
    assert!(
        truncated.body.starts_with("not a valid native batch: "),
        "{}",
        truncated.body
    );

    let mut version = good.clone();
    version[4] = 9;
    let v = post(r.addr, version, None).await;
    assert_eq!(
        (v.status, v.body.as_str()),
        (
            400,
            "format version 9 is not supported: this build reads version(s) [1]"
        )
    );

    // A bomb: a small body that decompresses past max_decoded_size.
    let big = Events::Logs(vec![LogRecord::new(0, "x".repeat(64 << 10))]);
    let bomb = frame("dev-1", 2, &big);
    assert!(bomb.len() < 4096, "{}", bomb.len());
    let b = post(r.addr, bomb, None).await;
    assert_eq!(b.status, 413);
    assert!(b.body.contains("more than the limit of 8192"), "{}", b.body);

    let huge = post(r.addr, vec![0; 8192], None).await;
    assert_eq!(
        (huge.status, huge.body.as_str()),
        (
            413,
            "the body is 8192 bytes, over max_body_size (4096 bytes)"
        )
    );

    let seq = post(r.addr, good.clone(), Some(0)).await;
    assert_eq!(
        (seq.status, seq.body.as_str()),
        (400, "iotel-last-sequence 0 is below the frame's sequence 1")
    );
    let nameless = post(r.addr, frame("", 1, &logs(0..1)), None).await;
    assert_eq!(nameless.status, 400);

    assert_eq!(
        send(r.addr, "POST", "/", good.clone(), &[]).await.status,
        404
    );
    assert_eq!(
        send(r.addr, "GET", BATCH_PATH, vec![], &[]).await.status,
        405
    );

    assert_eq!(r.metrics.errors("bad_frame").get(), 3);
    assert_eq!(r.metrics.errors("unsupported_version").get(), 1);
    assert_eq!(r.metrics.errors("too_large").get(), 2);
    assert_eq!(r.metrics.errors("bad_sequence").get(), 1);
    // The receiver still takes good batches.
    assert_eq!(accepted(&mut r, good, None).await, logs(0..2));
    r.stop().await;
}

#[tokio::test]
async fn a_batch_downstream_could_not_store_is_answered_503_and_taken_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path(), "").await;
    let addr = r.addr;
    let request =
        tokio::spawn(async move { post(addr, frame("dev-1", 10, &logs(0..3)), Some(12)).await });
    // The sink drops its copy without marking it done: it could not store it.
    drop(r.rx.recv_batch().await.unwrap());
    let answered = request.await.unwrap();
    assert_eq!(
        (answered.status, answered.body.as_str()),
        (
            503,
            "the batch could not be stored downstream; send it again"
        )
    );
    assert_eq!(r.metrics.errors("not_stored").get(), 1);
    // Not recorded as delivered: the retransmit is taken.
    assert_eq!(
        accepted(&mut r, frame("dev-1", 10, &logs(0..3)), Some(12)).await,
        logs(0..3)
    );
    r.stop().await;
}

#[tokio::test]
async fn ids_received_ahead_of_a_backlog_are_answered_409_with_iotel_received() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path(), "").await;
    let addr = r.addr;
    // The live lane's 100..=110 arrive while the backlog from 50 drains.
    let (live, events) = tokio::join!(post_from(addr, 100, 110, 50, 2), r.rx.recv());
    assert_eq!((live.status, events.unwrap().len()), (200, 2));
    // After a restart the agent sends its whole buffer again, in larger
    // requests: received ids in the middle, then at the end.
    let middle = post_from(addr, 95, 120, 50, 3).await;
    assert_eq!(
        (middle.status, middle.next, middle.received.as_deref()),
        (409, None, Some("100-110"))
    );
    assert_eq!(
        middle.body,
        "agent \"dev-1\": of sequences 95..=120, 100-110 were received before; send the rest \
         without them"
    );
    let end = post_from(addr, 90, 105, 50, 4).await;
    assert_eq!(
        (end.status, end.next, end.received.as_deref()),
        (409, None, Some("100-105"))
    );
    // A received start: the next sequence too, as for older agents.
    let start_of = post_from(addr, 100, 115, 50, 5).await;
    assert_eq!(
        (start_of.status, start_of.next, start_of.received.as_deref()),
        (409, Some(111), Some("100-110"))
    );
    let whole = post_from(addr, 101, 104, 50, 6).await;
    assert_eq!(
        (whole.status, whole.next, whole.received.as_deref()),
        (409, Some(105), Some("101-104"))
    );
    // The backlog below is new; once it is in, 50..=110 is one floor.
    let (backlog, _) = tokio::join!(post_from(addr, 50, 99, 50, 7), r.rx.recv());
    assert_eq!(backlog.status, 200);
    let overlap = post_from(addr, 105, 112, 105, 8).await;
    assert_eq!(
        (overlap.status, overlap.next, overlap.received.as_deref()),
        (409, Some(111), Some("105-110"))
    );
    assert_eq!(r.metrics.errors("duplicate").get(), 1);
    assert_eq!(r.metrics.errors("sequence_overlap").get(), 4);
    assert_eq!(r.metrics.discards("duplicate").get(), 3 + 4 + 5 + 6 + 8);
    // A bad Iotel-Oldest-Sequence is refused like a bad last sequence.
    let bad = send(
        addr,
        "POST",
        BATCH_PATH,
        frame("dev-1", 200, &logs(0..1)),
        &[(OLDEST_SEQUENCE, "x")],
    )
    .await;
    assert_eq!(
        (bad.status, bad.body.as_str()),
        (
            400,
            "iotel-oldest-sequence: expected an unsigned integer, got \"x\""
        )
    );
    r.stop().await;
}

#[tokio::test]
async fn the_received_ranges_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path(), "").await;
    let (live, _) = tokio::join!(post_from(r.addr, 100, 110, 50, 1), r.rx.recv());
    assert_eq!(live.status, 200);
    r.stop().await;
    let mut r = start(dir.path(), "").await;
    let again = post_from(r.addr, 60, 120, 50, 1).await;
    assert_eq!(
        (again.status, again.received.as_deref()),
        (409, Some("100-110"))
    );
    let (next, _) = tokio::join!(post_from(r.addr, 111, 111, 50, 1), r.rx.recv());
    assert_eq!(next.status, 200);
    r.stop().await;
}

#[cfg(feature = "auth")]
#[tokio::test]
async fn with_auth_a_batch_needs_a_valid_token_for_its_own_tenant() {
    use crate::auth::test_keys::{auth_table, claims, ed25519, sign};
    let dir = tempfile::tempdir().unwrap();
    let key = ed25519("k1");
    let mut r = start(dir.path(), &auth_table(dir.path(), &[&key])).await;
    let bearer = format!("Bearer {}", sign(&key, &claims()));

    // No token: 401 with the challenge, nothing downstream.
    let a = send(
        r.addr,
        "POST",
        BATCH_PATH,
        frame("gw-1", 1, &logs(0..2)),
        &[],
    )
    .await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.body,
        "no bearer token (expected Authorization: Bearer <JWT>)"
    );
    assert_eq!(r.metrics.errors("missing_token").get(), 1);

    // A token signed by a stranger's key under the trusted kid.
    let forged = format!("Bearer {}", sign(&ed25519("k1"), &claims()));
    let a = send(
        r.addr,
        "POST",
        BATCH_PATH,
        frame("gw-1", 1, &logs(0..2)),
        &[("authorization", &forged)],
    )
    .await;
    assert_eq!(a.status, 401);
    assert_eq!(r.metrics.errors("bad_signature").get(), 1);

    // Valid: records without a tenant get the token's.
    let with_token = [("authorization", bearer.as_str())];
    let (a, events) = tokio::join!(
        send(
            r.addr,
            "POST",
            BATCH_PATH,
            frame("gw-1", 1, &logs(0..2)),
            &with_token,
        ),
        r.rx.recv()
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let Some(Events::Logs(records)) = events else {
        panic!("logs")
    };
    assert_eq!(records.len(), 2);
    for rec in &records {
        assert_eq!(rec.labels.get("tenant"), Some("acme"));
    }

    // A record naming another tenant: the whole batch is refused, audited.
    let mut other = logs(2..4);
    if let Events::Logs(v) = &mut other {
        v[1].labels = v[1].labels.with("tenant", "globex");
    }
    let a = send(
        r.addr,
        "POST",
        BATCH_PATH,
        frame("gw-1", 2, &other),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(
        a.body,
        "the token is for tenant \"acme\"; it cannot write for tenant \"globex\""
    );
    assert_eq!(r.metrics.errors("cross_tenant").get(), 1);
    assert!(r.rx.try_recv().is_none());
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let codes: Vec<&str> = lines.iter().map(|l| l["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["missing_token", "bad_signature", "cross_tenant"]);
    assert!(
        lines[2]["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{}",
        lines[2]
    );
    r.stop().await;
}

#[cfg(feature = "auth")]
#[tokio::test]
async fn with_signed_batches_required_tampered_unsigned_foreign_and_replayed_batches_are_refused() {
    use crate::auth::signing::{HOPS, SIGNATURE};
    use crate::auth::test_keys::{auth_table_jwks, gateway_signer};
    let dir = tempfile::tempdir().unwrap();
    let (site1, site2) = (
        gateway_signer(dir.path(), "site-1"),
        gateway_signer(dir.path(), "site-2"),
    );
    let table = auth_table_jwks(dir.path(), vec![site1.jwk(), site2.jwk()])
        + "require_batch_signatures = true\n";
    let mut r = start(dir.path(), &table).await;
    let now = jiff::Timestamp::now().as_second();
    let signed = |signer: &crate::auth::signing::Signer, body: &[u8], hops: &str| {
        vec![
            (
                "authorization".to_string(),
                format!("Bearer {}", signer.token(now)),
            ),
            (HOPS.to_string(), hops.to_string()),
            (SIGNATURE.to_string(), signer.sign(body, hops, now)),
        ]
    };
    let post_with = |body: Vec<u8>, headers: Vec<(String, String)>| async move {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        send(r.addr, "POST", BATCH_PATH, body, &h).await
    };

    let body = frame("site-1", 1, &logs(0..3));
    let headers = signed(&site1, &body, "gateway:site-1");
    let (a, events) = tokio::join!(
        post_with(body.clone(), headers.clone()),
        tokio::time::timeout(Duration::from_secs(10), r.rx.recv())
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(events.unwrap().unwrap().len(), 3);

    // The same request again: a replay is a retransmit.
    let a = post_with(body.clone(), headers.clone()).await;
    assert_eq!(a.status, 409);
    assert_eq!(r.metrics.discards("duplicate").get(), 3);

    // Changed after signing: the body, then the hops.
    let mut tampered = frame("site-1", 2, &logs(0..3));
    let headers2 = signed(&site1, &tampered, "gateway:site-1");
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let a = post_with(tampered, headers2).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.body.starts_with("the batch signature does not verify"),
        "{}",
        a.body
    );
    let body = frame("site-1", 2, &logs(0..3));
    let mut headers3 = signed(&site1, &body, "gateway:site-1");
    headers3[1].1 = "gateway:elsewhere".into();
    let a = post_with(body.clone(), headers3).await;
    assert_eq!(a.status, 403);

    // Unsigned, with a valid token.
    let a = post_with(
        body.clone(),
        signed(&site1, &body, "gateway:site-1")[..1].to_vec(),
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(
        a.body,
        "the batch has no Iotel-Signature; this receiver takes signed batches only"
    );

    // Site 2's token and signature on a frame that says it is site 1's.
    let a = post_with(body.clone(), signed(&site2, &body, "gateway:site-2")).await;
    assert_eq!(a.status, 403);
    assert_eq!(
        a.body,
        "the frame is agent \"site-1\"'s, but it was signed by \"site-2\""
    );
    // Site 1's signature under site 2's token.
    let mut mixed = signed(&site1, &body, "gateway:site-1");
    mixed[0] = signed(&site2, &body, "gateway:site-1")[0].clone();
    let a = post_with(body.clone(), mixed).await;
    assert_eq!(a.status, 403);
    assert_eq!(
        a.body,
        "signed by \"site-1\", but the token is \"site-2\"'s"
    );
    // One stream of site 1 (`site-1/metrics`) is site 1's; a stream named
    // after site 1 by site 2 is not.
    let stream = frame("site-1/metrics", 1, &logs(0..2));
    let (a, events) = tokio::join!(
        post_with(stream.clone(), signed(&site1, &stream, "gateway:site-1")),
        tokio::time::timeout(Duration::from_secs(10), r.rx.recv())
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(events.unwrap().unwrap().len(), 2);
    let a = post_with(stream.clone(), signed(&site2, &stream, "gateway:site-2")).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            403,
            "the frame is agent \"site-1/metrics\"'s, but it was signed by \"site-2\""
        )
    );
    let sneaky = frame("site-1x/metrics", 1, &logs(0..2));
    let a = post_with(sneaky.clone(), signed(&site1, &sneaky, "gateway:site-1")).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(r.metrics.errors("bad_batch_signature").get(), 6);
    assert_eq!(r.metrics.errors("unsigned_batch").get(), 1);
    assert!(r.rx.try_recv().is_none());
    r.stop().await;
}

#[tokio::test]
async fn while_the_buffers_are_full_batches_are_answered_503_retry_after_and_taken_later() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path(), "").await;
    let backlog = r.metrics.registry().backlog().clone();
    backlog.report("to_cloud", 0.96);
    let a = crate::sources::http_receiver::testing::send(
        r.addr,
        "POST",
        BATCH_PATH,
        frame("dev-1", 1, &logs(0..3)),
        &[],
    )
    .await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            503,
            "this node's buffers are full (the fullest at 96%); send again later"
        )
    );
    assert_eq!(a.headers["retry-after"], "5");
    assert_eq!(r.metrics.errors("buffers_full").get(), 1);
    assert_eq!(r.metrics.received_total(), 0);
    assert!(r.rx.try_recv().is_none());
    // Room again: the same batch is taken.
    backlog.report("to_cloud", 0.5);
    assert_eq!(
        accepted(&mut r, frame("dev-1", 1, &logs(0..3)), None).await,
        logs(0..3)
    );
    r.stop().await;
}
