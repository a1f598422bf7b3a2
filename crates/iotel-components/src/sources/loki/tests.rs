#![allow(clippy::unwrap_used)]

use super::*;
use crate::sources::http_receiver::testing::{Running, send, start};
use iotel_formats::loki::proto;
use iotel_model::{Labels, LogRecord, Severity};
use prost::Message;
use serde_json::json;
use std::io::Write;

const PROTOBUF: &[(&str, &str)] = &[
    ("content-type", "application/x-protobuf"),
    ("content-encoding", "snappy"),
];
const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

async fn run(extra: &str) -> Running {
    start("loki", build, extra).await
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(raw).unwrap();
    e.finish().unwrap()
}

fn entry(seconds: i64, nanos: i32, line: &str, metadata: &[(&str, &str)]) -> proto::EntryAdapter {
    proto::EntryAdapter {
        timestamp: Some(proto::Timestamp { seconds, nanos }),
        line: line.into(),
        structured_metadata: metadata
            .iter()
            .map(|(n, v)| proto::LabelPairAdapter {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect(),
    }
}

/// A push as Promtail sends it: two streams, structured metadata on one
/// entry.
fn push_request() -> Vec<u8> {
    let request = proto::PushRequest {
        streams: vec![
            proto::StreamAdapter {
                labels: r#"{job="pump", device_id="dev-42"}"#.into(),
                entries: vec![
                    entry(
                        1_700_000_000,
                        5,
                        "pressure high",
                        &[("level", "warn"), ("trace_id", "ab12")],
                    ),
                    entry(1_700_000_001, 0, "pressure ok", &[]),
                ],
                hash: 0,
            },
            proto::StreamAdapter {
                labels: r#"{job="valve"}"#.into(),
                entries: vec![entry(1_700_000_002, 0, "closed", &[])],
                hash: 0,
            },
        ],
    };
    snappy(&request.encode_to_vec())
}

/// What [`push_request`] holds, as records.
fn expected(tenant: Option<&str>) -> Vec<LogRecord> {
    let pump = Labels::from_pairs([("device_id", "dev-42"), ("job", "pump")]);
    let valve = Labels::from_pairs([("job", "valve")]);
    let mut a = LogRecord::new(1_700_000_000_000_000_005, "pressure high");
    a.labels = pump.clone();
    a.severity = Some(Severity::Warn);
    a.fields.insert("trace_id".into(), json!("ab12"));
    let mut b = LogRecord::new(1_700_000_001_000_000_000, "pressure ok");
    b.labels = pump;
    let mut c = LogRecord::new(1_700_000_002_000_000_000, "closed");
    c.labels = valve;
    let mut records = vec![a, b, c];
    if let Some(t) = tenant {
        for r in &mut records {
            r.labels = r.labels.with("tenant", t);
        }
    }
    records
}

fn json_request() -> Vec<u8> {
    json!({"streams": [
        {"stream": {"job": "pump", "device_id": "dev-42"},
         "values": [["1700000000000000005", "pressure high", {"level": "warn", "trace_id": "ab12"}],
                    ["1700000001000000000", "pressure ok"]]},
        {"stream": {"job": "valve"}, "values": [["1700000002000000000", "closed"]]}
    ]})
    .to_string()
    .into_bytes()
}

fn logs(events: Events) -> Vec<LogRecord> {
    let Events::Logs(records) = events else {
        panic!("logs")
    };
    records
}

#[tokio::test]
async fn a_protobuf_push_becomes_its_records_field_by_field() {
    let mut r = run("").await;
    let records = logs(r.accepted(DEFAULT_PATH, push_request(), PROTOBUF).await);
    let want = expected(None);
    assert_eq!(records.len(), 3);
    for (got, want) in records.iter().zip(&want) {
        assert_eq!(got.timestamp_ns, want.timestamp_ns);
        assert_eq!(got.labels, want.labels);
        assert_eq!(got.message, want.message);
        assert_eq!(got.severity, want.severity);
        assert_eq!(got.fields, want.fields);
    }
    assert_eq!(records, want);
    // Without Content-Encoding, and without Content-Type, as Loki takes it.
    let records = logs(
        r.accepted(DEFAULT_PATH, push_request(), &PROTOBUF[..1])
            .await,
    );
    assert_eq!(records, want);
    let records = logs(r.accepted(DEFAULT_PATH, push_request(), &[]).await);
    assert_eq!(records, want);
    r.stop().await;
}

#[tokio::test]
async fn a_json_push_plain_or_gzipped_becomes_the_same_records() {
    let mut r = run("").await;
    let records = logs(r.accepted(DEFAULT_PATH, json_request(), JSON).await);
    assert_eq!(records, expected(None));
    let gzipped = [
        ("content-type", "application/json; charset=utf-8"),
        ("content-encoding", "gzip"),
    ];
    let records = logs(
        r.accepted(DEFAULT_PATH, gzip(&json_request()), &gzipped)
            .await,
    );
    assert_eq!(records, expected(None));
    r.stop().await;
}

#[tokio::test]
async fn the_scope_org_id_header_becomes_the_tenant_label_of_every_record() {
    let mut r = run("").await;
    let mut headers = PROTOBUF.to_vec();
    headers.push(("x-scope-orgid", "acme"));
    let records = logs(r.accepted(DEFAULT_PATH, push_request(), &headers).await);
    assert_eq!(records, expected(Some("acme")));
    // Over a tenant stream label.
    let body = json!({"streams": [{"stream": {"job": "x", "tenant": "other"},
                                    "values": [["1", "l"]]}]})
    .to_string()
    .into_bytes();
    let mut headers = JSON.to_vec();
    headers.push(("x-scope-orgid", "acme"));
    let records = logs(r.accepted(DEFAULT_PATH, body, &headers).await);
    assert_eq!(
        records[0].labels,
        Labels::from_pairs([("job", "x"), ("tenant", "acme")])
    );
    r.stop().await;
}

#[tokio::test]
async fn bad_pushes_get_their_status_reason_and_counter() {
    let mut r = run("max_body_size = \"2KiB\"\nmax_decoded_size = \"4KiB\"").await;
    let a = r
        .post(DEFAULT_PATH, b"{\"streams\": 1}".to_vec(), JSON)
        .await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            400,
            "not a valid Loki push request: streams: expected an array of streams"
        )
    );
    let bad_time = json!({"streams": [{"stream": {"job": "x"}, "values": [["soon", "l"]]}]});
    let a = r
        .post(DEFAULT_PATH, bad_time.to_string().into_bytes(), JSON)
        .await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            400,
            "not a valid Loki push request: streams[0].values[0][0]: expected a string of \
             nanoseconds since the epoch"
        )
    );
    let a = r
        .post(DEFAULT_PATH, b"\xff\xff\xff\xff".to_vec(), PROTOBUF)
        .await;
    assert_eq!(a.status, 400);
    assert!(
        a.body
            .starts_with("not a valid Loki push request: snappy: "),
        "{}",
        a.body
    );
    assert_eq!(r.metrics.errors("bad_payload").get(), 3);
    let gz = [
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    let a = r.post(DEFAULT_PATH, b"not gzip".to_vec(), &gz).await;
    assert_eq!(a.status, 400);
    assert!(
        a.body
            .starts_with("Content-Encoding gzip, but the body does not inflate: "),
        "{}",
        a.body
    );
    assert_eq!(r.metrics.errors("bad_gzip").get(), 1);

    // Bombs: a snappy header stating 1 GiB, refused before inflating; gzip
    // inflating past max_decoded_size, cut off there.
    let bomb = vec![0x80, 0x80, 0x80, 0x80, 0x04, 0x00];
    let a = r.post(DEFAULT_PATH, bomb, PROTOBUF).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            413,
            "the body would decompress to 1073741824 bytes, over max_decoded_size (4096 bytes)"
        )
    );
    let a = r.post(DEFAULT_PATH, gzip(&vec![b' '; 1 << 20]), &gz).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (413, "the body inflates past max_decoded_size (4096 bytes)")
    );
    assert_eq!(r.metrics.errors("decoded_too_large").get(), 2);
    let a = r.post(DEFAULT_PATH, vec![b' '; 4096], JSON).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            413,
            "the body is 4096 bytes, over max_body_size (2048 bytes)"
        )
    );
    assert_eq!(r.metrics.errors("too_large").get(), 1);

    // Content types and encodings the push API does not speak.
    let a = r
        .post(
            DEFAULT_PATH,
            json_request(),
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            415,
            "Content-Type \"text/plain\": expected application/x-protobuf or application/json"
        )
    );
    assert_eq!(r.metrics.errors("unsupported_content_type").get(), 1);
    let a = r
        .post(
            DEFAULT_PATH,
            push_request(),
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip"),
            ],
        )
        .await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            415,
            "Content-Encoding \"gzip\": expected snappy or none for protobuf"
        )
    );
    let a = r
        .post(
            DEFAULT_PATH,
            json_request(),
            &[
                ("content-type", "application/json"),
                ("content-encoding", "br"),
            ],
        )
        .await;
    assert_eq!(a.status, 415);
    assert_eq!(r.metrics.errors("unsupported_encoding").get(), 2);

    let a = r.post("/api/prom/push", json_request(), JSON).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            404,
            "no such path; Loki push requests go to POST /loki/api/v1/push"
        )
    );
    let a = send(r.addr, "PUT", DEFAULT_PATH, json_request(), JSON).await;
    assert_eq!(a.status, 405);
    assert_eq!(r.metrics.errors("not_found").get(), 1);
    assert_eq!(r.metrics.errors("method_not_allowed").get(), 1);

    assert!(r.rx.try_recv().is_none());
    assert_eq!(
        logs(r.accepted(DEFAULT_PATH, json_request(), JSON).await).len(),
        3
    );
    r.stop().await;
}

#[tokio::test]
async fn a_push_downstream_could_not_store_is_answered_503_with_retry_after() {
    let mut r = run("").await;
    let a = r.not_stored(DEFAULT_PATH, json_request(), JSON).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            503,
            "the events could not be stored downstream; send them again"
        )
    );
    assert_eq!(a.headers["retry-after"], "1");
    assert_eq!(r.metrics.errors("not_stored").get(), 1);
    r.stop().await;
}

#[cfg(feature = "auth")]
#[tokio::test]
async fn with_auth_a_push_needs_a_token_for_the_tenant_it_names() {
    use crate::auth::test_keys::{auth_table, claims, ed25519, sign};
    let dir = tempfile::tempdir().unwrap();
    let key = ed25519("k1");
    let mut r = run(&auth_table(dir.path(), &[&key])).await;

    let a = r.post(DEFAULT_PATH, json_request(), JSON).await;
    assert_eq!(a.status, 401);
    assert!(a.headers.contains_key("www-authenticate"));
    assert_eq!(r.metrics.errors("missing_token").get(), 1);
    let forged = format!("Bearer {}", sign(&ed25519("k1"), &claims()));
    let mut headers = JSON.to_vec();
    headers.push(("authorization", &forged));
    let a = r.post(DEFAULT_PATH, json_request(), &headers).await;
    assert_eq!(a.status, 401);
    assert_eq!(r.metrics.errors("bad_signature").get(), 1);

    // A valid token: records get its tenant; X-Scope-OrgID may name it.
    let bearer = format!("Bearer {}", sign(&key, &claims()));
    let mut headers = JSON.to_vec();
    headers.push(("authorization", &bearer));
    let records = logs(r.accepted(DEFAULT_PATH, json_request(), &headers).await);
    assert_eq!(records, expected(Some("acme")));
    headers.push(("x-scope-orgid", "acme"));
    let records = logs(r.accepted(DEFAULT_PATH, json_request(), &headers).await);
    assert_eq!(records, expected(Some("acme")));

    // Another tenant in X-Scope-OrgID: refused, nothing downstream.
    headers.pop();
    headers.push(("x-scope-orgid", "globex"));
    let a = r.post(DEFAULT_PATH, json_request(), &headers).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            403,
            "the token is for tenant \"acme\"; it cannot write for tenant \"globex\""
        )
    );
    assert_eq!(r.metrics.errors("cross_tenant").get(), 1);
    assert!(r.rx.try_recv().is_none());
    r.stop().await;
}

proptest::proptest! {
    #[test]
    fn the_format_follows_content_type_and_encoding_or_is_refused_with_415(
        content_type in proptest::option::of("[ -~]{0,40}|application/json|application/x-protobuf"),
        encoding in proptest::option::of("[ -~]{0,12}|gzip|snappy"),
    ) {
        let mut req = http::Request::builder();
        if let Some(t) = &content_type {
            req = req.header("content-type", t);
        }
        if let Some(e) = &encoding {
            req = req.header("content-encoding", e);
        }
        let req = req.body(()).unwrap();
        let essence = |v: &Option<String>| {
            v.as_deref()
                .map(|v| v.split(';').next().unwrap().trim().to_ascii_lowercase())
                .filter(|v| !v.is_empty())
        };
        let encoding_essence = essence(&encoding).filter(|e| e != "identity");
        let want = match (essence(&content_type).as_deref(), encoding_essence.as_deref()) {
            (None | Some("application/x-protobuf"), None | Some("snappy")) => Some(Format::Protobuf),
            (Some("application/json"), None) => Some(Format::Json { gzip: false }),
            (Some("application/json"), Some("gzip")) => Some(Format::Json { gzip: true }),
            _ => None,
        };
        match format_of(&req) {
            Ok(f) => proptest::prop_assert_eq!(Some(f), want),
            Err(r) => {
                proptest::prop_assert_eq!(want, None);
                proptest::prop_assert_eq!(r.status, 415);
            }
        }
    }
}

#[cfg(feature = "auth")]
#[tokio::test]
async fn with_identity_overwrite_and_auth_records_get_the_tenant_and_the_certificates_device() {
    use crate::auth::test_keys::{auth_table, claims, ed25519, sign};
    use crate::sources::http_receiver::testing::send_tls;
    use crate::tls::test_pki::{Ca, client_config};
    let dir = tempfile::tempdir().unwrap();
    let key = ed25519("k1");
    let ca = Ca::new("device CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let (cert, server_key) = ca.server(&[0x61]).write(dir.path(), "server");
    let mut r = run(&format!(
        "tls = {{ cert_file = \"{}\", key_file = \"{}\", ca_file = \"{}\" }}\n\
         identity = {{ policy = \"overwrite\" }}\n{}",
        cert.display(),
        server_key.display(),
        ca_file.display(),
        auth_table(dir.path(), &[&key])
    ))
    .await;
    // The certificate is dev-7's; the push names dev-42 on one stream.
    let dev = ca.client("dev-7", None, &[0x07]);
    let client = client_config(&ca.pem, Some(&dev));
    let bearer = format!("Bearer {}", sign(&key, &claims()));
    let mut headers = JSON.to_vec();
    headers.push(("authorization", &bearer));
    let (a, events) = tokio::join!(
        send_tls(
            r.addr,
            client.clone(),
            DEFAULT_PATH,
            json_request(),
            &headers
        ),
        r.rx.recv()
    );
    assert_eq!(a.status, 204, "{}", a.body);
    let mut want = expected(Some("acme"));
    for w in &mut want {
        w.labels = w.labels.with("device_id", "dev-7");
    }
    assert_eq!(logs(events.unwrap()), want);
    assert_eq!(r.metrics.errors("identity_overwritten").get(), 2);

    // Without a token the certificate alone is not enough.
    let a = send_tls(r.addr, client, DEFAULT_PATH, json_request(), JSON).await;
    assert_eq!(a.status, 401);
    assert_eq!(r.metrics.errors("missing_token").get(), 1);
    assert!(r.rx.try_recv().is_none());
    r.stop().await;
}
