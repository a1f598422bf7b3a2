//! `auth` on the otlp source: bearer tokens over OTLP/HTTP (the
//! `Authorization` header) and OTLP/gRPC (the `authorization` metadata),
//! writes for the token's own tenant only, refusals counted and audited.
#![allow(clippy::unwrap_used)]

use super::Config;
use super::tests::{PROTOBUF, Running, post, start};
use crate::auth::test_keys::{TestKey, auth_table, claims, ed25519, now, sign};
use iotel_formats::otlp::proto::collector::logs::v1::logs_service_client::LogsServiceClient;
use iotel_formats::otlp::{RpcStatus, logs};
use iotel_model::{Events, Labels, LogRecord};
use prost::Message;
use serde_json::{Value, json};

fn record(tenant: Option<&str>) -> LogRecord {
    let mut r = LogRecord::new(1_700_000_000_000_000_000, "door open");
    if let Some(t) = tenant {
        r.labels = Labels::from_pairs([("tenant", t)]);
    }
    r
}

fn audit_lines(dir: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Each audit line as "decision code", and the tenant written to for a
/// denial, in order.
fn audited(dir: &std::path::Path) -> Vec<String> {
    audit_lines(dir)
        .into_iter()
        .map(|l| {
            assert!(l["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{l}");
            let line = format!(
                "{} {}",
                l["decision"].as_str().unwrap(),
                l["code"].as_str().unwrap()
            );
            match l["tenant"].as_str() {
                Some(t) => format!("{line} {t}"),
                None => line,
            }
        })
        .collect()
}

/// Tokens: none, expired, for another audience, valid.
fn tokens(key: &TestKey) -> [Option<String>; 4] {
    let mut expired = claims();
    expired["exp"] = json!(now() - 600);
    let mut elsewhere = claims();
    elsewhere["aud"] = json!("someone-else");
    [
        None,
        Some(sign(key, &expired)),
        Some(sign(key, &elsewhere)),
        Some(sign(key, &claims())),
    ]
}

async fn started(dir: &std::path::Path, key: &TestKey) -> Running {
    start(&auth_table(dir, &[key])).await
}

#[tokio::test]
async fn otlp_http_needs_a_valid_bearer_token_for_its_own_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let key = ed25519("k1");
    let mut r = started(dir.path(), &key).await;
    let [none, expired, elsewhere, valid] = tokens(&key);
    let body = |records: Vec<LogRecord>| logs::encode(records, 5).0;
    let send = |token: Option<String>, body: Vec<u8>| {
        let http = r.http;
        async move {
            let bearer = token.map(|t| format!("Bearer {t}"));
            let mut headers = vec![PROTOBUF];
            if let Some(b) = &bearer {
                headers.push(("authorization", b.as_str()));
            }
            post(http, "/v1/logs", body, &headers).await
        }
    };

    let refusals = [
        (
            none,
            "no bearer token (expected Authorization: Bearer <JWT>)",
            "Bearer".to_string(),
            "missing_token",
        ),
        (
            expired,
            "the token has expired",
            "Bearer error=\"invalid_token\", error_description=\"the token has expired\"".into(),
            "token_expired",
        ),
        (
            elsewhere,
            "the token is not for audience \"iotel-cloud\"",
            "Bearer error=\"invalid_token\", error_description=\"the token is not for \
             audience 'iotel-cloud'\""
                .into(),
            "wrong_audience",
        ),
    ];
    for (token, message, challenge, code) in refusals {
        let a = send(token, body(vec![record(None)])).await;
        assert_eq!(a.status, 401, "{code}");
        assert_eq!(a.www_authenticate.as_deref(), Some(challenge.as_str()));
        let status = RpcStatus::decode(&a.body[..]).unwrap();
        assert_eq!((status.code, status.message.as_str()), (16, message));
        assert_eq!(r.metrics.errors(code).get(), 1, "{code}");
    }

    // A valid token: records naming no tenant get the token's.
    let (a, events) = tokio::join!(
        send(
            valid.clone(),
            body(vec![record(None), record(Some("acme"))])
        ),
        r.rx.recv()
    );
    assert_eq!(a.status, 200);
    let Some(Events::Logs(records)) = events else {
        panic!("logs")
    };
    let tenants: Vec<_> = records.iter().map(|r| r.labels.clone()).collect();
    assert_eq!(
        tenants,
        vec![
            Labels::from_pairs([("tenant", "acme")]),
            Labels::from_pairs([("tenant", "acme")])
        ]
    );

    // A record for another tenant: the whole request is refused.
    let a = send(valid, body(vec![record(None), record(Some("globex"))])).await;
    assert_eq!(a.status, 403);
    let reason = "the token is for tenant \"acme\"; it cannot write for tenant \"globex\"";
    let status = RpcStatus::decode(&a.body[..]).unwrap();
    assert_eq!((status.code, status.message.as_str()), (7, reason));
    assert_eq!(
        a.www_authenticate.as_deref(),
        Some(
            "Bearer error=\"insufficient_scope\", error_description=\"the token is for \
             tenant 'acme'; it cannot write for tenant 'globex'\""
        )
    );
    assert_eq!(r.metrics.errors("cross_tenant").get(), 1);
    assert!(r.rx.try_recv().is_none());

    assert_eq!(
        audited(dir.path()),
        [
            "unauthenticated missing_token",
            "unauthenticated token_expired",
            "unauthenticated wrong_audience",
            "deny cross_tenant globex",
        ]
    );
    let denial = audit_lines(dir.path()).pop().unwrap();
    assert_eq!(
        (&denial["subject"], &denial["signal"], &denial["action"]),
        (&json!("gw-site-1"), &json!("logs"), &json!("write"))
    );
    r.stop().await;
}

#[tokio::test]
async fn otlp_grpc_takes_the_bearer_token_from_the_metadata_and_checks_its_grants() {
    let dir = tempfile::tempdir().unwrap();
    let key = ed25519("k1");
    let mut r = started(dir.path(), &key).await;
    let [none, expired, elsewhere, valid] = tokens(&key);
    let client = LogsServiceClient::connect(format!("http://{}", r.grpc))
        .await
        .unwrap();
    let export = |token: Option<String>, records: Vec<LogRecord>| {
        let (request, _) = logs::export_request(records, 5);
        let mut request = tonic::Request::new(request);
        if let Some(t) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let mut client = client.clone();
        async move {
            client
                .export(request)
                .await
                .map(|_| ())
                .map_err(|s| (s.code(), s.message().to_string()))
        }
    };

    let refusals = [
        (
            none,
            "no bearer token (expected Authorization: Bearer <JWT>)",
            "missing_token",
        ),
        (expired, "the token has expired", "token_expired"),
        (
            elsewhere,
            "the token is not for audience \"iotel-cloud\"",
            "wrong_audience",
        ),
    ];
    for (token, message, code) in refusals {
        assert_eq!(
            export(token, vec![record(None)]).await,
            Err((tonic::Code::Unauthenticated, message.to_string())),
            "{code}"
        );
        assert_eq!(r.metrics.errors(code).get(), 1, "{code}");
    }

    let (answer, events) = tokio::join!(export(valid.clone(), vec![record(None)]), r.rx.recv());
    assert_eq!(answer, Ok(()));
    let Some(Events::Logs(records)) = events else {
        panic!("logs")
    };
    assert_eq!(records[0].labels, Labels::from_pairs([("tenant", "acme")]));

    // Cross-tenant: PERMISSION_DENIED, counted and audited.
    assert_eq!(
        export(valid, vec![record(Some("globex"))]).await,
        Err((
            tonic::Code::PermissionDenied,
            "the token is for tenant \"acme\"; it cannot write for tenant \"globex\"".into()
        ))
    );
    assert_eq!(r.metrics.errors("cross_tenant").get(), 1);

    // Its own tenant, but no role the policy grants writes to.
    let mut reader = claims();
    reader["roles"] = json!(["reader"]);
    let (code, message) = export(Some(sign(&key, &reader)), vec![record(None)])
        .await
        .unwrap_err();
    assert_eq!(code, tonic::Code::PermissionDenied);
    assert!(
        message.starts_with("no grant lets \"gw-site-1\" (roles: reader) write"),
        "{message}"
    );
    assert_eq!(r.metrics.errors("not_granted").get(), 1);
    assert!(r.rx.try_recv().is_none());
    assert_eq!(
        audited(dir.path()),
        [
            "unauthenticated missing_token",
            "unauthenticated token_expired",
            "unauthenticated wrong_audience",
            "deny cross_tenant globex",
            "deny not_granted acme",
        ]
    );
    drop(client);
    r.stop().await;
}

#[test]
fn signed_batches_are_refused_in_the_otlp_auth_table() {
    let dir = tempfile::tempdir().unwrap();
    let table = auth_table(dir.path(), &[&ed25519("k1")]);
    let cfg: Config = toml::from_str(&format!("{table}require_batch_signatures = true\n")).unwrap();
    let problems: Vec<_> = cfg
        .validate()
        .into_iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    assert_eq!(
        problems,
        [
            "auth.require_batch_signatures: only the iotel source takes signed batches; remove it here"
        ]
    );
}
