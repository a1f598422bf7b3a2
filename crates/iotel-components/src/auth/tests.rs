#![allow(clippy::unwrap_used)]

use super::test_keys::*;
use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

struct Setup {
    dir: tempfile::TempDir,
    auth: Auth,
}

fn setup(keys: &[&TestKey], extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    write_jwks(dir.path(), keys);
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    let config: Config = toml::from_str(&format!(
        "issuer = \"https://idp.example\"\naudience = \"iotel-cloud\"\n\
         jwks_file = \"jwks.json\"\npolicy_file = \"policy.toml\"\naudit_log = \"audit.jsonl\"\n{extra}"
    ))
    .unwrap();
    assert_eq!(config.validate(), vec![]);
    let mut cx = BuildContext::for_test("cloud_in");
    cx.config_dir = dir.path().to_path_buf();
    let auth = config.build(&cx).unwrap();
    Setup { dir, auth }
}

fn write_jwks(dir: &std::path::Path, keys: &[&TestKey]) {
    let set = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    std::fs::write(dir.join("jwks.json"), set.to_string()).unwrap();
}

impl Setup {
    async fn check(&self, token: &str) -> Result<Principal, AuthError> {
        self.auth.keys.refresh().await.unwrap();
        self.auth
            .authenticate(Some(&format!("Bearer {token}")))
            .await
    }

    fn audit_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn code(r: Result<Principal, AuthError>) -> (&'static str, String) {
    let e = r.unwrap_err();
    assert_eq!(e.status(), 401, "{e}");
    (e.code(), e.to_string())
}

#[tokio::test]
async fn a_valid_token_gives_its_subject_tenant_and_roles() {
    let (ed, ec) = (ed25519("ed-1"), es256("ec-1"));
    let s = setup(&[&ed, &ec], "");
    for key in [&ed, &ec] {
        let p = s.check(&sign(key, &claims())).await.unwrap();
        assert_eq!(
            p,
            Principal {
                subject: "gw-site-1".into(),
                tenant: Some("acme".into()),
                roles: vec!["writer".into()],
            }
        );
    }
    let mut c = claims();
    c["roles"] = json!("writer reader");
    let p = s.check(&sign(&ed, &c)).await.unwrap();
    assert_eq!(p.roles, ["writer", "reader"]);
}

#[tokio::test]
async fn expired_early_wrong_audience_and_wrong_issuer_tokens_are_refused() {
    let ed = ed25519("ed-1");
    let s = setup(&[&ed], "leeway = \"30s\"");
    let mut c = claims();
    c["exp"] = json!(now() - 31 - 5);
    assert_eq!(
        code(s.check(&sign(&ed, &c)).await),
        ("token_expired", "the token has expired".into())
    );
    // Within the leeway it still passes.
    c["exp"] = json!(now() - 10);
    s.check(&sign(&ed, &c)).await.unwrap();

    let mut c = claims();
    c["nbf"] = json!(now() + 120);
    assert_eq!(
        code(s.check(&sign(&ed, &c)).await),
        (
            "token_not_yet_valid",
            "the token is not valid yet (nbf)".into()
        )
    );
    let mut c = claims();
    c["aud"] = json!("someone-else");
    assert_eq!(
        code(s.check(&sign(&ed, &c)).await),
        (
            "wrong_audience",
            "the token is not for audience \"iotel-cloud\"".into()
        )
    );
    let mut c = claims();
    c["iss"] = json!("https://evil.example");
    assert_eq!(
        code(s.check(&sign(&ed, &c)).await),
        (
            "wrong_issuer",
            "the token is not from issuer \"https://idp.example\"".into()
        )
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        code(s.check(&sign(&ed, &c)).await),
        ("missing_claim", "the token has no \"exp\" claim".into())
    );
}

#[tokio::test]
async fn forged_tokens_never_verify() {
    let ed = ed25519("ed-1");
    let s = setup(&[&ed], "");

    // alg: none, no signature.
    let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = B64.encode(claims().to_string());
    assert_eq!(
        code(s.check(&format!("{header}.{body}.")).await),
        (
            "unsigned_token",
            "alg none: unsigned tokens are never accepted".into()
        )
    );

    // HS256 with the public key as the HMAC secret.
    let public = ed.jwk["x"].as_str().unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("ed-1".into());
    let token =
        jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(public.as_bytes())).unwrap();
    assert_eq!(
        code(s.check(&token).await),
        (
            "algorithm_not_accepted",
            "algorithm HS256 is not accepted (accepted: RS256, ES256, EdDSA)".into()
        )
    );

    // A valid signature from another key under the trusted key's kid.
    let mut impostor = ed25519("ed-1");
    impostor.kid = "ed-1";
    assert_eq!(
        code(s.check(&sign(&impostor, &claims())).await),
        (
            "bad_signature",
            "the token's signature does not verify".into()
        )
    );

    // ES256 under the kid of an EdDSA key.
    let mut ec = es256("ed-1");
    ec.kid = "ed-1";
    assert_eq!(
        code(s.check(&sign(&ec, &claims())).await),
        (
            "algorithm_mismatch",
            "the token says ES256 but key \"ed-1\" is for Some(EdDSA)".into()
        )
    );

    // The payload changed after signing.
    let token = sign(&ed, &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let mut c = claims();
    c["tenant"] = json!("globex");
    let tampered = format!("{}.{}.{}", parts[0], B64.encode(c.to_string()), parts[2]);
    assert_eq!(code(s.check(&tampered).await).0, "bad_signature");

    assert_eq!(code(s.check("not-a-jwt").await).0, "malformed_token");
    let e = s.auth.authenticate(None).await.unwrap_err();
    assert_eq!(e, AuthError::Missing);
    assert_eq!(e.www_authenticate(), "Bearer");
}

#[tokio::test]
async fn a_new_key_at_the_issuer_is_picked_up_on_its_first_token() {
    let (old, new) = (ed25519("2026-10"), ed25519("2026-11"));
    let s = setup(&[&old], "");
    s.check(&sign(&old, &claims())).await.unwrap();
    // The issuer rolls its keys; the file changes under the receiver.
    write_jwks(s.dir.path(), &[&old, &new]);
    let p = s
        .auth
        .authenticate(Some(&format!("Bearer {}", sign(&new, &claims()))))
        .await
        .unwrap();
    assert_eq!(p.subject, "gw-site-1");
    // A kid nobody has: refused, and no second reload within the interval.
    let stranger = ed25519("nobody");
    let e = s
        .auth
        .authenticate(Some(&format!("Bearer {}", sign(&stranger, &claims()))))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unknown_key");
    assert_eq!(
        e.to_string(),
        format!(
            "no key with kid \"nobody\" in {}",
            s.dir.path().join("jwks.json").display()
        )
    );
    assert!(!s.auth.keys.may_refresh(false));
}

#[tokio::test]
async fn writes_for_another_tenant_are_refused_and_audited() {
    let ed = ed25519("ed-1");
    let s = setup(&[&ed], "");
    let p = s.check(&sign(&ed, &claims())).await.unwrap();
    s.auth
        .authorize(&p, "acme", Signal::Metrics, Action::Write, "10.0.0.9:5123")
        .unwrap();
    let d = s
        .auth
        .authorize(&p, "globex", Signal::Logs, Action::Write, "10.0.0.9:5123")
        .unwrap_err();
    assert_eq!(d.code, "cross_tenant");
    assert_eq!(
        d.reason,
        "the token is for tenant \"acme\"; it cannot write for tenant \"globex\""
    );
    // The role grants writes only: a read is not granted.
    let d = s
        .auth
        .authorize(&p, "acme", Signal::Metrics, Action::Read, "10.0.0.9:5123")
        .unwrap_err();
    assert_eq!(
        d.reason,
        "no grant lets \"gw-site-1\" (roles: writer) read metrics for tenant \"acme\""
    );
    let lines = s.audit_lines();
    assert_eq!(lines.len(), 2);
    let l = &lines[0];
    assert_eq!(l["decision"], "deny");
    assert_eq!(l["code"], "cross_tenant");
    assert_eq!(l["subject"], "gw-site-1");
    assert_eq!(l["token_tenant"], "acme");
    assert_eq!(l["tenant"], "globex");
    assert_eq!(l["signal"], "logs");
    assert_eq!(l["action"], "write");
    assert_eq!(l["peer"], "10.0.0.9:5123");
    assert_eq!(lines[1]["code"], "not_granted");

    let reader = Principal {
        subject: "dashboards".into(),
        tenant: None,
        roles: vec![],
    };
    s.auth
        .authorize(&reader, "globex", Signal::Metrics, Action::Read, "-")
        .unwrap();
    assert_eq!(
        s.auth
            .authorize(&reader, "globex", Signal::Logs, Action::Read, "-")
            .unwrap_err()
            .code,
        "not_granted"
    );
    assert_eq!(
        s.auth
            .authorize(&reader, "initech", Signal::Metrics, Action::Read, "-")
            .unwrap_err()
            .code,
        "not_granted"
    );
}

#[test]
fn policy_files_with_mistakes_are_refused_naming_the_grant() {
    let typo = "[[grant]]\nrol = \"writer\"\ntenants = [\"*\"]\nsignals = [\"*\"]\nactions = [\"write\"]\n";
    let e = Policy::parse(typo).unwrap_err();
    assert!(e.contains("line 2"), "{e}");
    assert!(e.contains("unknown field `rol`"), "{e}");
    for (text, expected) in [
        (
            "[[grant]]\nrole = \"w\"\ntenants = [\"*\"]\nsignals = [\"metric\"]\nactions = [\"write\"]\n",
            "grant[0]: signals: unknown signal \"metric\"; expected metrics, logs, traces or \"*\"",
        ),
        (
            "[[grant]]\nrole = \"w\"\ntenants = [\"*\"]\nsignals = [\"*\"]\nactions = [\"writes\"]\n",
            "grant[0]: actions: unknown action \"writes\"; expected write, read or admin",
        ),
        (
            "[[grant]]\nrole = \"w\"\nsubject = \"s\"\ntenants = [\"*\"]\nsignals = [\"*\"]\nactions = [\"write\"]\n",
            "grant[0]: has both `role` and `subject`; a grant names one of them",
        ),
        (
            "[[grant]]\ntenants = [\"*\"]\nsignals = [\"*\"]\nactions = [\"write\"]\n",
            "grant[0]: needs a non-empty `role` or `subject`",
        ),
        (
            "[[grant]]\nrole = \"w\"\ntenants = []\nsignals = [\"*\"]\nactions = [\"write\"]\n",
            "grant[0]: `tenants` is empty: the grant would allow nothing (remove it or list what it allows)",
        ),
    ] {
        assert_eq!(Policy::parse(text).unwrap_err(), expected);
    }
}

#[test]
fn a_receiver_with_a_bad_policy_or_jwks_does_not_build() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), "[[grant]]\nrole = 1\n").unwrap();
    std::fs::write(
        dir.path().join("jwks.json"),
        json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}).to_string(),
    )
    .unwrap();
    let mut cx = BuildContext::for_test("cloud_in");
    cx.config_dir = dir.path().to_path_buf();
    let config = |policy: &str| -> Config {
        toml::from_str(&format!(
            "issuer = \"i\"\naudience = \"a\"\njwks_file = \"jwks.json\"\npolicy_file = \"{policy}\"\n"
        ))
        .unwrap()
    };
    let e = config("policy.toml").build(&cx).unwrap_err();
    assert_eq!(e.key, "policy_file");
    assert!(
        e.message
            .starts_with(&format!("{}: ", dir.path().join("policy.toml").display())),
        "{}",
        e.message
    );
    std::fs::write(dir.path().join("ok.toml"), POLICY).unwrap();
    let e = config("ok.toml").build(&cx).unwrap_err();
    assert_eq!(e.key, "jwks_file");
    assert_eq!(
        e.message,
        format!(
            "{}: no usable key (hmac: a symmetric (oct) key; only public keys are accepted)",
            dir.path().join("jwks.json").display()
        )
    );
    let e = config("missing.toml").build(&cx).unwrap_err();
    assert!(
        e.message.contains("cannot read the policy file"),
        "{}",
        e.message
    );
}

#[test]
fn lenient_or_symmetric_settings_are_config_errors() {
    let c: Config = toml::from_str(
        "issuer = \"i\"\naudience = \"\"\npolicy_file = \"p\"\nleeway = \"10m\"\n\
         algorithms = [\"ES256\", \"HS256\", \"none\"]\n",
    )
    .unwrap();
    let problems: Vec<(String, String)> = c
        .validate()
        .into_iter()
        .map(|p| (p.key, p.message))
        .collect();
    assert_eq!(
        problems,
        [
            ("audience".to_string(), "must not be empty".to_string()),
            (
                "jwks_file".into(),
                "set jwks_file or jwks_url: the keys tokens are verified with".into()
            ),
            ("leeway".into(), "600s is too lenient; at most 5m".into()),
            (
                "algorithms[1]".into(),
                "\"HS256\": symmetric algorithms are not accepted: the key a receiver verifies with could also sign".into()
            ),
            (
                "algorithms[2]".into(),
                "\"none\": unsigned tokens are never accepted".into()
            ),
        ]
    );
}

#[tokio::test]
async fn with_the_jwks_url_down_every_request_is_refused_naming_why() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    let config: Config = toml::from_str(&format!(
        "issuer = \"i\"\naudience = \"a\"\njwks_url = \"http://127.0.0.1:{port}/jwks\"\npolicy_file = \"policy.toml\"\n"
    ))
    .unwrap();
    let mut cx = BuildContext::for_test("cloud_in");
    cx.config_dir = dir.path().to_path_buf();
    let auth = config.build(&cx).unwrap();
    let ed = ed25519("ed-1");
    let e = auth.keys.refresh().await.unwrap_err();
    assert!(
        e.starts_with(&format!("GET http://127.0.0.1:{port}/jwks: ")),
        "{e}"
    );
    let e = auth
        .authenticate(Some(&format!("Bearer {}", sign(&ed, &claims()))))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 503);
    assert_eq!(e.code(), "keys_unavailable");
    assert!(
        e.to_string().starts_with(&format!(
            "cannot verify tokens: GET http://127.0.0.1:{port}/jwks: "
        )),
        "{e}"
    );
}

#[test]
fn batch_signatures_verify_only_for_the_same_body_hops_and_key_within_five_minutes() {
    use super::signing::{MAX_AGE_SECS, parse_signature, verify};
    let dir = tempfile::tempdir().unwrap();
    let signer = gateway_signer(dir.path(), "site-1");
    let public = B64.decode(signer.jwk()["x"].as_str().unwrap()).unwrap();
    let now = 1_800_000_000;
    let header = signer.sign(b"frame bytes", "gateway:site-1", now);
    assert!(
        header.starts_with("keyid=site-1, t=1800000000, sig="),
        "{header}"
    );
    let s = parse_signature(&header).unwrap();
    verify(
        &public,
        &s,
        "gateway:site-1",
        b"frame bytes",
        now + MAX_AGE_SECS,
    )
    .unwrap();
    let bad = "the batch signature does not verify: the batch or its hops changed after signing, or another key signed it";
    assert_eq!(
        verify(&public, &s, "gateway:site-1", b"frame bytez", now).unwrap_err(),
        bad
    );
    assert_eq!(
        verify(&public, &s, "gateway:site-2", b"frame bytes", now).unwrap_err(),
        bad
    );
    let other = gateway_signer(dir.path(), "site-2");
    let other_public = B64.decode(other.jwk()["x"].as_str().unwrap()).unwrap();
    assert_eq!(
        verify(&other_public, &s, "gateway:site-1", b"frame bytes", now).unwrap_err(),
        bad
    );
    assert_eq!(
        verify(
            &public,
            &s,
            "gateway:site-1",
            b"frame bytes",
            now + MAX_AGE_SECS + 1
        )
        .unwrap_err(),
        "signed at 1800000000 but it is 1800000301 here: more than 300s apart (a replay, or a clock off)"
    );
    assert_eq!(
        parse_signature("keyid=a, t=x, sig=AA").unwrap_err(),
        "t=\"x\" is not a number"
    );
    assert_eq!(parse_signature("keyid=a, t=1").unwrap_err(), "no sig");
}

#[tokio::test]
async fn a_gateway_token_is_reused_until_half_its_life_and_verifies_at_the_cloud() {
    let dir = tempfile::tempdir().unwrap();
    let signer = gateway_signer(dir.path(), "site-1");
    let now = now();
    let t1 = signer.token(now);
    assert_eq!(signer.token(now + 149), t1);
    let t2 = signer.token(now + 150);
    assert_ne!(t2, t1);
    let config: Config = toml::from_str(
        &super::test_keys::auth_table_jwks(dir.path(), vec![signer.jwk()]).replace("[auth]\n", ""),
    )
    .unwrap();
    let mut cx = BuildContext::for_test("cloud_in");
    cx.config_dir = dir.path().to_path_buf();
    let auth = config.build(&cx).unwrap();
    auth.keys.refresh().await.unwrap();
    let p = auth
        .authenticate(Some(&format!("Bearer {t1}")))
        .await
        .unwrap();
    assert_eq!(
        p,
        Principal {
            subject: "site-1".into(),
            tenant: Some("acme".into()),
            roles: vec!["gateway".into()],
        }
    );
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn keys_load_from_an_https_jwks_url_trusting_jwks_ca_file_only() {
    use crate::tls::client_test_peer::{TestCa, TlsPeer};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    let ca = TestCa::new("idp CA");
    ca.write(dir.path(), "idp-ca.pem");
    TestCa::new("another CA").write(dir.path(), "other-ca.pem");
    let ed = ed25519("ed-1");
    let jwks = json!({"keys": [ed.jwk.clone()]}).to_string();
    let peer = TlsPeer::answering(&ca.server(&["idp.local"], true), None, jwks.into()).await;
    let auth = |ca_file: &str| {
        let config: Config = toml::from_str(&format!(
            "issuer = \"https://idp.example\"\naudience = \"iotel-cloud\"\n\
             jwks_url = \"{}\"\njwks_ca_file = \"{ca_file}\"\npolicy_file = \"policy.toml\"\n",
            peer.url("/jwks")
        ))
        .unwrap();
        assert_eq!(config.validate(), vec![]);
        let mut cx = BuildContext::for_test("cloud_in");
        cx.config_dir = dir.path().to_path_buf();
        config.build(&cx).unwrap()
    };
    let good = auth("idp-ca.pem");
    good.keys.refresh().await.unwrap();
    let p = good
        .authenticate(Some(&format!("Bearer {}", sign(&ed, &claims()))))
        .await
        .unwrap();
    assert_eq!(p.subject, "gw-site-1");
    assert_eq!(peer.seen()[0].path, "/jwks");

    let e = auth("other-ca.pem").keys.refresh().await.unwrap_err();
    assert_eq!(
        e,
        format!(
            "GET {}: client error (Connect): TLS with 127.0.0.1 failed: invalid peer \
             certificate: UnknownIssuer",
            peer.url("/jwks")
        )
    );
}

#[test]
fn jwks_ca_file_is_only_for_an_https_jwks_url() {
    let config: Config = toml::from_str(
        "issuer = \"i\"\naudience = \"a\"\njwks_url = \"http://idp/jwks\"\n\
         jwks_ca_file = \"ca.pem\"\npolicy_file = \"policy.toml\"\n",
    )
    .unwrap();
    let p: Vec<String> = config
        .validate()
        .into_iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    assert_eq!(p, ["jwks_ca_file: only for an https:// jwks_url"]);
}

proptest::proptest! {
    #[test]
    fn any_refusal_reason_gives_a_valid_www_authenticate_header(reason in "\\PC{0,60}") {
        let denied = Denied { code: "cross_tenant", reason: reason.clone() };
        let header = denied.www_authenticate();
        proptest::prop_assert!(http::HeaderValue::from_str(&header).is_ok(), "{header:?}");
        let invalid = AuthError::Invalid { code: "bad_claim", reason };
        proptest::prop_assert!(
            http::HeaderValue::from_str(&invalid.www_authenticate()).is_ok()
        );
    }
}
