#![allow(clippy::unwrap_used)]

use super::*;
use crate::sources::http_receiver::testing::{Running, send, send_tls, start};
use iotel_formats::remote_write::proto;
use iotel_model::{Labels, Metric, MetricType};
use prost::Message;

const HEADERS: &[(&str, &str)] = &[
    ("content-type", "application/x-protobuf"),
    ("content-encoding", "snappy"),
    ("x-prometheus-remote-write-version", "0.1.0"),
];

async fn run(extra: &str) -> Running {
    start("prometheus_remote_write", build, extra).await
}

fn label(name: &str, value: &str) -> proto::Label {
    proto::Label {
        name: name.into(),
        value: value.into(),
    }
}

/// A request as Prometheus writes it: two series, one with two samples,
/// and the metadata of one family.
fn request() -> proto::WriteRequest {
    proto::WriteRequest {
        timeseries: vec![
            proto::TimeSeries {
                labels: vec![
                    label("__name__", "plant_temp_celsius"),
                    label("instance", "dev-42:9100"),
                    label("sensor", "s1"),
                ],
                samples: vec![
                    proto::Sample {
                        value: 21.5,
                        timestamp: 1_700_000_000_000,
                    },
                    proto::Sample {
                        value: 21.75,
                        timestamp: 1_700_000_015_000,
                    },
                ],
                exemplars: vec![],
            },
            proto::TimeSeries {
                labels: vec![label("__name__", "up"), label("job", "edge")],
                samples: vec![proto::Sample {
                    value: 1.0,
                    timestamp: 1_700_000_000_000,
                }],
                exemplars: vec![],
            },
        ],
        metadata: vec![proto::MetricMetadata {
            r#type: proto::MetricType::Gauge as i32,
            metric_family_name: "plant_temp_celsius".into(),
            help: "Temperature at the sensor.".into(),
            unit: String::new(),
        }],
    }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

#[tokio::test]
async fn a_remote_write_request_becomes_its_exact_samples_and_is_answered_204() {
    let mut r = run("").await;
    let events = r
        .accepted(DEFAULT_PATH, snappy(&request().encode_to_vec()), HEADERS)
        .await;
    let Events::Metrics(samples) = events else {
        panic!("metrics")
    };
    let got: Vec<(String, String, f64, i64, MetricType)> = samples
        .iter()
        .map(|m| {
            (
                m.name.to_string(),
                m.labels.to_string(),
                m.value,
                m.timestamp_ms,
                m.meta.kind,
            )
        })
        .collect();
    let temp_labels = Labels::from_pairs([("instance", "dev-42:9100"), ("sensor", "s1")]);
    let up_labels = Labels::from_pairs([("job", "edge")]);
    assert_eq!(
        got,
        [
            (
                "plant_temp_celsius".to_string(),
                temp_labels.to_string(),
                21.5,
                1_700_000_000_000,
                MetricType::Gauge
            ),
            (
                "plant_temp_celsius".to_string(),
                temp_labels.to_string(),
                21.75,
                1_700_000_015_000,
                MetricType::Gauge
            ),
            (
                "up".to_string(),
                up_labels.to_string(),
                1.0,
                1_700_000_000_000,
                MetricType::Unknown
            ),
        ]
    );
    assert_eq!(
        samples[0].meta.help.as_deref(),
        Some("Temperature at the sensor.")
    );
    // What the encoder of the remote write sink sends is taken as well.
    let sent = Metric::new(
        "packets_total",
        MetricType::Counter,
        Labels::from_pairs([("dir", "rx")]),
        1234.0,
        5,
    );
    let events = r
        .accepted(
            DEFAULT_PATH,
            remote_write::encode(std::slice::from_ref(&sent)),
            HEADERS,
        )
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(r.metrics.errors("bad_payload").get(), 0);
    r.stop().await;
}

#[tokio::test]
async fn an_empty_request_is_answered_204_and_sends_nothing_downstream() {
    let mut r = run("").await;
    let body = snappy(&proto::WriteRequest::default().encode_to_vec());
    let a = r.post(DEFAULT_PATH, body, HEADERS).await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert!(r.rx.try_recv().is_none());
    r.stop().await;
}

#[tokio::test]
async fn bad_requests_get_their_status_reason_and_counter() {
    let r = run("max_body_size = \"2KiB\"\nmax_decoded_size = \"4KiB\"").await;
    let good = snappy(&request().encode_to_vec());

    // Not snappy: 400 with the reason, not retried by Prometheus.
    let a = r
        .post(DEFAULT_PATH, b"\xff\xff\xff\xff\xff\xff".to_vec(), HEADERS)
        .await;
    assert_eq!(a.status, 400);
    assert!(
        a.body
            .starts_with("not a valid remote write request: snappy: "),
        "{}",
        a.body
    );
    // Snappy, but not a WriteRequest; then a series without a name.
    let a = r.post(DEFAULT_PATH, snappy(b"\x0a\xff"), HEADERS).await;
    assert_eq!(a.status, 400);
    let nameless = proto::WriteRequest {
        timeseries: vec![proto::TimeSeries {
            labels: vec![label("job", "a")],
            samples: vec![],
            exemplars: vec![],
        }],
        metadata: vec![],
    };
    let a = r
        .post(DEFAULT_PATH, snappy(&nameless.encode_to_vec()), HEADERS)
        .await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            400,
            "not a valid remote write request: time series 0 has no __name__ label"
        )
    );
    assert_eq!(r.metrics.errors("bad_payload").get(), 3);

    // A snappy bomb: its header states 1 GiB; refused before inflating.
    let bomb = vec![0x80, 0x80, 0x80, 0x80, 0x04, 0x00];
    let a = r.post(DEFAULT_PATH, bomb, HEADERS).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            413,
            "the body would decompress to 1073741824 bytes, over max_decoded_size (4096 bytes)"
        )
    );
    // A real one: under 2 KiB as sent, inflating to 32 KiB.
    let zeros = snappy(&vec![0u8; 32 << 10]);
    assert!(zeros.len() < 2048, "{}", zeros.len());
    let a = r.post(DEFAULT_PATH, zeros, HEADERS).await;
    assert_eq!(a.status, 413);
    assert_eq!(r.metrics.errors("decoded_too_large").get(), 2);

    // Over max_body_size as sent, known from Content-Length.
    let a = r.post(DEFAULT_PATH, vec![0; 4096], HEADERS).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            413,
            "the body is 4096 bytes, over max_body_size (2048 bytes)"
        )
    );
    assert_eq!(a.headers["connection"], "close");
    assert_eq!(r.metrics.errors("too_large").get(), 1);

    // The wrong content type, remote write 2.0, the wrong encoding.
    let mut json = HEADERS.to_vec();
    json[0] = ("content-type", "application/json");
    let a = r.post(DEFAULT_PATH, good.clone(), &json).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            415,
            "Content-Type \"application/json\": expected application/x-protobuf (remote write 1.0)"
        )
    );
    let mut v2 = HEADERS.to_vec();
    v2[0] = (
        "content-type",
        "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    );
    let a = r.post(DEFAULT_PATH, good.clone(), &v2).await;
    assert_eq!(a.status, 415);
    assert_eq!(r.metrics.errors("unsupported_content_type").get(), 2);
    let a = r.post(DEFAULT_PATH, good.clone(), &HEADERS[..1]).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (415, "Content-Encoding none: expected snappy")
    );
    let mut gzip = HEADERS.to_vec();
    gzip[1] = ("content-encoding", "gzip");
    let a = r.post(DEFAULT_PATH, good.clone(), &gzip).await;
    assert_eq!(a.status, 415);
    assert_eq!(r.metrics.errors("unsupported_encoding").get(), 2);

    // Another path, another method.
    let a = r.post("/write", good.clone(), HEADERS).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            404,
            "no such path; remote write requests go to POST /api/v1/write"
        )
    );
    let a = send(r.addr, "GET", DEFAULT_PATH, vec![], &[]).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (405, "expected POST /api/v1/write, got GET")
    );
    assert_eq!(r.metrics.errors("not_found").get(), 1);
    assert_eq!(r.metrics.errors("method_not_allowed").get(), 1);
    // Nothing of it went downstream, and a good request still flows.
    let mut r = r;
    assert!(r.rx.try_recv().is_none());
    assert_eq!(r.accepted(DEFAULT_PATH, good, HEADERS).await.len(), 3);
    r.stop().await;
}

#[tokio::test]
async fn a_chunked_body_without_content_length_is_cut_off_at_max_body_size() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut r = run("max_body_size = \"1KiB\"").await;
    let mut stream = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    let head = format!(
        "POST {DEFAULT_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // 2 KiB in 512-byte chunks, no end: the receiver answers once past 1 KiB.
    for _ in 0..4 {
        let chunk = format!("200\r\n{}\r\n", "x".repeat(512));
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(
        answer.ends_with("the body is larger, over max_body_size (1024 bytes)"),
        "{answer}"
    );
    assert_eq!(r.metrics.errors("too_large").get(), 1);
    assert!(r.rx.try_recv().is_none());
    r.stop().await;
}

#[tokio::test]
async fn a_request_downstream_could_not_store_is_answered_503_with_retry_after() {
    let mut r = run("path = \"/receive\"").await;
    let body = snappy(&request().encode_to_vec());
    let a = r.not_stored("/receive", body, HEADERS).await;
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

#[test]
fn config_keys_have_their_defaults_and_bad_values_are_named() {
    let c: Config = toml::from_str("address = \"127.0.0.1:9201\"").unwrap();
    assert_eq!(c.path, None);
    assert_eq!(c.max_body_size.bytes(), 8 << 20);
    assert_eq!(c.max_decoded_size.bytes(), 32 << 20);
    assert!(c.validate().is_empty());
    let c: Config =
        toml::from_str("address = \"127.0.0.1:9201\"\npath = \"write\"\nmax_body_size = \"10B\"")
            .unwrap();
    let problems: Vec<String> = c
        .validate()
        .iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    assert_eq!(
        problems,
        [
            "max_body_size: expected at least 1KiB, got 10B",
            "path: expected a path starting with /, got \"write\""
        ]
    );
    let e = toml::from_str::<Config>("address = \"127.0.0.1:9201\"\nurl = \"x\"").unwrap_err();
    assert!(e.to_string().contains("unknown field `url`"), "{e}");
}

#[cfg(feature = "auth")]
#[tokio::test]
async fn with_auth_a_request_needs_a_valid_token_for_its_own_tenant() {
    use crate::auth::test_keys::{auth_table, claims, ed25519, sign};
    let dir = tempfile::tempdir().unwrap();
    let key = ed25519("k1");
    let mut r = run(&auth_table(dir.path(), &[&key])).await;
    let body = snappy(&request().encode_to_vec());

    let a = r.post(DEFAULT_PATH, body.clone(), HEADERS).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            401,
            "no bearer token (expected Authorization: Bearer <JWT>)"
        )
    );
    assert!(
        a.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"),
        "{:?}",
        a.headers
    );
    assert_eq!(r.metrics.errors("missing_token").get(), 1);

    let bearer = format!("Bearer {}", sign(&key, &claims()));
    let mut with_token = HEADERS.to_vec();
    with_token.push(("authorization", &bearer));
    let events = r.accepted(DEFAULT_PATH, body.clone(), &with_token).await;
    let Events::Metrics(samples) = events else {
        panic!("metrics")
    };
    assert_eq!(samples.len(), 3);
    for m in &samples {
        assert_eq!(m.labels.get("tenant"), Some("acme"), "{}", m.name);
    }

    // A series naming another tenant: the whole request is refused.
    let mut other = request();
    other.timeseries[1].labels.push(label("tenant", "globex"));
    let a = r
        .post(DEFAULT_PATH, snappy(&other.encode_to_vec()), &with_token)
        .await;
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
    fn only_protobuf_with_snappy_passes_the_header_check(
        content_type in "[ -~]{0,60}",
        encoding in "[ -~]{0,20}",
    ) {
        let req = http::Request::builder()
            .header("content-type", &content_type)
            .header("content-encoding", &encoding)
            .body(())
            .unwrap();
        let essence = |v: &str| v.split(';').next().unwrap().trim().to_ascii_lowercase();
        let ok = check_headers(&req).is_ok();
        proptest::prop_assert_eq!(
            ok,
            essence(&content_type) == "application/x-protobuf"
                && !content_type.to_ascii_lowercase().contains("proto=")
                && essence(&encoding) == "snappy"
        );
    }
}

#[tokio::test]
async fn over_mutual_tls_a_push_is_taken_and_a_client_without_a_certificate_is_not() {
    use crate::tls::test_pki::{Ca, client_config, connect, request as tls_request};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("push CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let (cert, key) = ca.server(&[0x61]).write(dir.path(), "server");
    let mut r = run(&format!(
        "tls = {{ cert_file = \"{}\", key_file = \"{}\", ca_file = \"{}\" }}",
        cert.display(),
        key.display(),
        ca_file.display()
    ))
    .await;
    let client = ca.client("prom-1", None, &[0x62]);
    let (mut sender, serial) = connect(r.addr, client_config(&ca.pem, Some(&client)))
        .await
        .unwrap();
    assert_eq!(serial, "61");
    let mut req = http::Request::post(DEFAULT_PATH).header(http::header::HOST, "localhost");
    for (k, v) in HEADERS {
        req = req.header(*k, *v);
    }
    let req = req
        .body(crate::http_util::Body::new(
            snappy(&request().encode_to_vec()).into(),
        ))
        .unwrap();
    let (answer, events) = tokio::join!(sender.send_request(req), r.rx.recv());
    assert_eq!(answer.unwrap().status(), 204);
    assert_eq!(events.unwrap().len(), 3);

    // Without a client certificate nothing gets through.
    let refused = match connect(r.addr, client_config(&ca.pem, None)).await {
        Err(e) => Err(e.to_string()),
        Ok((mut s, _)) => tls_request(&mut s, DEFAULT_PATH, vec![]).await,
    };
    assert!(refused.is_err(), "{refused:?}");
    assert!(r.rx.try_recv().is_none());
}

/// A receiver over mutual TLS with `identity` (a TOML inline table; the
/// deny list `deny.txt` revokes serial 09), its CA, and the directory.
async fn run_with_identity(
    identity: &str,
    extra: &str,
) -> (Running, crate::tls::test_pki::Ca, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::tls::test_pki::Ca::new("device CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    std::fs::write(dir.path().join("deny.txt"), "09 # lost in transit\n").unwrap();
    let (cert, key) = ca.server(&[0x61]).write(dir.path(), "server");
    let identity = identity.replace("DENY", &dir.path().join("deny.txt").display().to_string());
    let r = run(&format!(
        "tls = {{ cert_file = \"{}\", key_file = \"{}\", ca_file = \"{}\" }}\n\
         identity = {identity}\n{extra}",
        cert.display(),
        key.display(),
        ca_file.display()
    ))
    .await;
    (r, ca, dir)
}

#[tokio::test]
async fn with_identity_samples_get_the_certificates_device_id_and_a_spoofed_one_is_refused() {
    use crate::tls::test_pki::client_config;
    let (mut r, ca, _dir) = run_with_identity(
        "{ trust_domain = \"iotel.test\", deny_list = \"DENY\" }",
        "",
    )
    .await;
    let dev = ca.client("dev-7", Some("spiffe://iotel.test/device/dev-7"), &[0x07]);
    let client = client_config(&ca.pem, Some(&dev));
    let body = snappy(&request().encode_to_vec());
    let (a, events) = tokio::join!(
        send_tls(r.addr, client.clone(), DEFAULT_PATH, body, HEADERS),
        r.rx.recv()
    );
    assert_eq!(a.status, 204, "{}", a.body);
    let Some(Events::Metrics(samples)) = events else {
        panic!("metrics")
    };
    assert_eq!(samples.len(), 3);
    for m in &samples {
        assert_eq!(m.labels.get("device_id"), Some("dev-7"), "{}", m.name);
    }

    // A series claiming another device: the whole request is refused.
    let mut spoofed = request();
    spoofed.timeseries[1]
        .labels
        .push(label("device_id", "dev-8"));
    let a = send_tls(
        r.addr,
        client,
        DEFAULT_PATH,
        snappy(&spoofed.encode_to_vec()),
        HEADERS,
    )
    .await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            403,
            "a record claims device_id \"dev-8\", but the client certificate is \"dev-7\"'s"
        )
    );
    assert_eq!(r.metrics.errors("identity_mismatch").get(), 1);

    // A revoked serial and another trust domain: refused before the body.
    let revoked = ca.client("dev-9", Some("spiffe://iotel.test/device/dev-9"), &[0x09]);
    let a = send_tls(
        r.addr,
        client_config(&ca.pem, Some(&revoked)),
        DEFAULT_PATH,
        vec![],
        HEADERS,
    )
    .await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            403,
            "device_id \"dev-9\" (certificate serial 09) is revoked: \"9\" in the deny list"
        )
    );
    assert_eq!(r.metrics.errors("revoked").get(), 1);
    let foreign = ca.client("dev-7", Some("spiffe://other.test/device/dev-7"), &[0x0a]);
    let a = send_tls(
        r.addr,
        client_config(&ca.pem, Some(&foreign)),
        DEFAULT_PATH,
        vec![],
        HEADERS,
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(r.metrics.errors("wrong_trust_domain").get(), 1);
    assert!(r.rx.try_recv().is_none());
    r.stop().await;
}

#[test]
fn identity_needs_tls_with_a_ca_file() {
    let cfg: Config =
        toml::from_str("address = \"127.0.0.1:9201\"\nidentity = { policy = \"overwrite\" }")
            .unwrap();
    let problems: Vec<_> = cfg
        .validate()
        .into_iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    assert_eq!(
        problems,
        ["identity: identities come from client certificates: expected tls with a ca_file"]
    );
}
