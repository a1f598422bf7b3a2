#![allow(clippy::unwrap_used)]

use super::auth::{Access, Decision, Token, is_loopback};
use super::lifecycle::{FILE_NAME, Lifecycle};
use super::*;
use http_body_util::BodyExt;
use iotel_model::{Labels, Metric, MetricMeta, MetricType};

fn access(loopback: bool, token: Option<&str>, client_certificates: bool) -> Access {
    Access {
        loopback,
        token: token.map(Token::new),
        client_certificates,
    }
}

fn identity() -> PeerIdentity {
    PeerIdentity {
        spiffe_id: Some("spiffe://plant-7/operator".into()),
        common_name: Some("operator".into()),
        serial_hex: "0a".into(),
    }
}

#[test]
fn listener_addresses_are_classified_as_loopback_or_beyond() {
    for a in [
        "127.0.0.1:8686",
        "127.0.0.2:1",
        "[::1]:8686",
        "[::ffff:127.0.0.1]:8686",
    ] {
        assert!(is_loopback(a.parse().unwrap()), "{a}");
    }
    for a in [
        "0.0.0.0:8686",
        "[::]:8686",
        "10.1.2.3:8686",
        "[fe80::1]:8686",
    ] {
        assert!(!is_loopback(a.parse().unwrap()), "{a}");
    }
}

#[test]
fn beyond_loopback_a_token_is_required_and_compared_exactly() {
    let a = access(false, Some("s3cret"), false);
    assert_eq!(
        a.decide(None, None),
        Decision::Unauthorized(
            "this request changes the node: send Authorization: Bearer <token>".into()
        )
    );
    for wrong in [
        "Bearer s3cre",
        "Bearer s3cret2",
        "Bearer S3CRET",
        "Basic s3cret",
        "Bearer ",
    ] {
        assert!(
            matches!(a.decide(Some(wrong), None), Decision::Unauthorized(_)),
            "{wrong}"
        );
    }
    assert_eq!(
        a.decide(Some("Bearer s3cret"), None),
        Decision::Allow("bearer token".into())
    );
    assert_eq!(
        a.decide(Some("bearer s3cret"), None),
        Decision::Allow("bearer token".into())
    );
}

#[test]
fn a_verified_client_certificate_is_enough_and_names_who_asked() {
    let a = access(false, Some("s3cret"), true);
    assert_eq!(
        a.decide(None, Some(&identity())),
        Decision::Allow("spiffe://plant-7/operator".into())
    );
    let cn_only = PeerIdentity {
        spiffe_id: None,
        ..identity()
    };
    assert_eq!(
        access(false, None, true).decide(None, Some(&cn_only)),
        Decision::Allow("CN=operator".into())
    );
    assert!(matches!(
        access(false, None, true).decide(None, None),
        Decision::Forbidden(m) if m.contains("client certificate")
    ));
}

#[test]
fn loopback_without_authentication_is_the_local_operator_and_beyond_is_refused() {
    assert_eq!(
        access(true, None, false).decide(None, None),
        Decision::Allow("local".into())
    );
    // A configured token is required on loopback too.
    assert!(matches!(
        access(true, Some("t"), false).decide(None, None),
        Decision::Unauthorized(_)
    ));
    assert_eq!(
        access(false, None, false).decide(Some("Bearer anything"), None),
        Decision::Forbidden(
            "this request changes the node, and the node API listens beyond loopback without \
             authentication: set [api] token_file (a bearer token), or a [api] tls table with \
             ca_file (client certificates)"
                .into()
        )
    );
}

#[test]
fn a_token_file_is_read_trimmed_and_an_empty_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("token");
    std::fs::write(&f, "  abc123\n").unwrap();
    let t = Token::read(&f).unwrap();
    assert_eq!(t, Token::new("abc123"));
    assert_eq!(format!("{t:?}"), "***");
    std::fs::write(&f, "\n").unwrap();
    assert_eq!(
        Token::read(&f).unwrap_err(),
        format!(
            "the token file {} is empty: expected a bearer token",
            f.display()
        )
    );
}

/// An API over a registry whose source `gen` emitted `temp_celsius` (2
/// series) and `jobs` (a counter), keeping its state in `dir`.
fn api(dir: &std::path::Path, access: Access) -> Api {
    let registry = Registry::default();
    let temp =
        Arc::new(MetricMeta::new("temp_celsius", MetricType::Gauge).with_help("Temperature."));
    let jobs = Arc::new(MetricMeta::new("jobs_total", MetricType::Counter));
    let sample = |meta: &Arc<MetricMeta>, name: &str, s: &str| Metric {
        name: Arc::from(name),
        labels: Labels::from_pairs([("sensor", s)]),
        value: 1.0,
        timestamp_ms: 0,
        meta: meta.clone(),
        exemplar: None,
    };
    registry.families().gate("gen").admit(&mut vec![
        sample(&temp, "temp_celsius", "a"),
        sample(&temp, "temp_celsius", "b"),
        sample(&jobs, "jobs_total", "a"),
    ]);
    Api {
        lifecycle: Lifecycle::open(registry.families().clone(), dir),
        registry,
        ready: Arc::new(AtomicBool::new(true)),
        access,
        node: Arc::new(crate::status::Node {
            config: "iotel.toml".into(),
            version: "0.1.0",
            started_unix_ms: 0,
            components: vec![],
        }),
    }
}

async fn call(api: &Api, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let req = Request {
        method: method.parse().unwrap(),
        path: path.into(),
        query: None,
        accept: None,
        authorization: token.map(|t| format!("Bearer {t}")),
        identity: None,
        peer: "127.0.0.1:50000".into(),
    };
    let r = api.answer(&req).await;
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn families_are_listed_retired_and_enabled_with_exact_answers() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path(), access(true, None, false));
    assert_eq!(
        call(&api, "GET", "/api/v1/metrics", None).await,
        (
            200,
            "{\"families\":[\
             {\"name\":\"jobs\",\"type\":\"counter\",\"help\":null,\"unit\":null,\"series\":1,\"components\":[\"gen\"],\"state\":\"active\"},\
             {\"name\":\"temp_celsius\",\"type\":\"gauge\",\"help\":\"Temperature.\",\"unit\":null,\"series\":2,\"components\":[\"gen\"],\"state\":\"active\"}\
             ]}\n"
                .into()
        )
    );
    assert_eq!(
        call(&api, "DELETE", "/api/v1/metrics/jobs", None).await,
        (200, "{\"name\":\"jobs\",\"state\":\"retired\"}\n".into())
    );
    assert_eq!(
        call(&api, "GET", "/api/v1/metrics/jobs", None).await,
        (
            200,
            "{\"name\":\"jobs\",\"type\":\"counter\",\"help\":null,\"unit\":null,\"series\":0,\"components\":[\"gen\"],\"state\":\"retired\"}\n"
                .into()
        )
    );
    assert_eq!(
        call(&api, "DELETE", "/api/v1/metrics/nope", None).await,
        (
            404,
            "{\"error\":\"unknown metric family \\\"nope\\\"\"}\n".into()
        )
    );
    assert_eq!(
        call(&api, "PUT", "/api/v1/metrics/nope", None).await,
        (
            404,
            "{\"error\":\"unknown metric family \\\"nope\\\"\"}\n".into()
        )
    );
    assert_eq!(call(&api, "GET", "/api/v1/metrics/nope", None).await.0, 404);
    assert_eq!(
        call(&api, "PUT", "/api/v1/metrics/jobs", None).await,
        (200, "{\"name\":\"jobs\",\"state\":\"active\"}\n".into())
    );
    assert_eq!(
        call(&api, "POST", "/api/v1/metrics/jobs", None).await,
        (
            405,
            "{\"error\":\"method not allowed: use GET, HEAD, DELETE, PUT\"}\n".into()
        )
    );
}

#[tokio::test]
async fn a_retirement_is_kept_in_the_data_dir_and_restored_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = api(dir.path(), access(true, None, false));
    assert_eq!(
        call(&first, "DELETE", "/api/v1/metrics/temp_celsius", None)
            .await
            .0,
        200
    );
    let file = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
    assert_eq!(
        file,
        "{\n  \"retired\": [\n    {\n      \"name\": \"temp_celsius\",\n      \"type\": \"gauge\",\n      \
         \"help\": \"Temperature.\",\n      \"unit\": null,\n      \"components\": [\n        \"gen\"\n      \
         ]\n    }\n  ]\n}\n"
    );
    // A new node over the same data dir, before anything flows.
    let registry = Registry::default();
    let lifecycle = Lifecycle::open(registry.families().clone(), dir.path());
    let retired = registry.families().retired().unwrap();
    let temp = Metric::new("temp_celsius", MetricType::Gauge, Labels::empty(), 1.0, 0);
    assert!(retired.covers(&temp));
    // Enabled again, the file says so.
    lifecycle.enable("temp_celsius").unwrap();
    assert!(registry.families().retired().is_none());
    let file = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
    assert_eq!(file, "{\n  \"retired\": []\n}\n");
}

#[tokio::test]
async fn a_change_that_cannot_be_kept_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // The data dir is a file: nothing can be written under it.
    let blocked = dir.path().join("data");
    std::fs::write(&blocked, "").unwrap();
    let api = api(&blocked, access(true, None, false));
    let (status, body) = call(&api, "DELETE", "/api/v1/metrics/jobs", None).await;
    assert_eq!(status, 500);
    assert!(
        body.starts_with(&format!(
            "{{\"error\":\"cannot keep the change across restarts in {}",
            blocked.join(FILE_NAME).display()
        )),
        "{body}"
    );
    assert!(api.registry.families().retired().is_none());
}

#[tokio::test]
async fn changing_requests_need_the_token_when_one_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path(), access(false, Some("s3cret"), false));
    let req = |authorization: Option<&str>| Request {
        method: http::Method::DELETE,
        path: "/api/v1/metrics/jobs".into(),
        query: None,
        accept: None,
        authorization: authorization.map(str::to_string),
        identity: None,
        peer: "10.0.0.9:41000".into(),
    };
    let refused = api.answer(&req(None)).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()[http::header::WWW_AUTHENTICATE],
        "Bearer realm=\"iotel\""
    );
    assert_eq!(api.answer(&req(Some("Bearer nope"))).await.status(), 401);
    // Reading stays open.
    assert_eq!(call(&api, "GET", "/api/v1/metrics/jobs", None).await.0, 200);
    assert_eq!(
        call(&api, "DELETE", "/api/v1/metrics/jobs", Some("s3cret")).await,
        (200, "{\"name\":\"jobs\",\"state\":\"retired\"}\n".into())
    );
}

#[tokio::test]
async fn the_health_paths_answer_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(dir.path(), access(true, None, false));
    assert_eq!(
        call(&api, "GET", "/healthz", None).await,
        (200, "ok\n".into())
    );
    assert_eq!(
        call(&api, "GET", "/readyz", None).await,
        (200, "ready\n".into())
    );
    assert_eq!(call(&api, "POST", "/healthz", None).await.0, 405);
    assert_eq!(
        call(&api, "GET", "/nope", None).await,
        (
            404,
            "not found: try /, /healthz, /readyz, /metrics, /api/v1/components or \
             /api/v1/metrics\n"
                .into()
        )
    );
}
