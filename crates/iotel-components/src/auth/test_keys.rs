//! Keys, tokens and a policy for tests of receivers with `auth`.

#![allow(clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

/// A signing key and its public JWK.
pub(crate) struct TestKey {
    pub encoding: EncodingKey,
    pub jwk: Value,
    pub alg: Algorithm,
    pub kid: &'static str,
}

pub(crate) fn ed25519(kid: &'static str) -> TestKey {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    TestKey {
        encoding: EncodingKey::from_ed_der(doc.as_ref()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA",
                    "x": B64.encode(pair.public_key().as_ref())}),
        alg: Algorithm::EdDSA,
        kid,
    }
}

pub(crate) fn es256(kid: &'static str) -> TestKey {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    TestKey {
        encoding: EncodingKey::from_ec_der(doc.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid,
                    "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])}),
        alg: Algorithm::ES256,
        kid,
    }
}

pub(crate) fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

pub(crate) fn claims() -> Value {
    json!({"iss": "https://idp.example", "aud": "iotel-cloud", "sub": "gw-site-1",
           "exp": now() + 600, "tenant": "acme", "roles": ["writer"]})
}

pub(crate) fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.into());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

pub(crate) const POLICY: &str = r#"
[[grant]]
role = "writer"
tenants = ["{tenant}"]
signals = ["*"]
actions = ["write"]

[[grant]]
role = "gateway"
tenants = ["{tenant}"]
signals = ["*"]
actions = ["write"]

[[grant]]
subject = "dashboards"
tenants = ["acme", "globex"]
signals = ["metrics"]
actions = ["read"]
"#;

/// Writes `keys` as a JWKS file and [`POLICY`] beside it; returns the
/// receiver's `[auth]` table for them.
pub(crate) fn auth_table(dir: &std::path::Path, keys: &[&TestKey]) -> String {
    auth_table_jwks(dir, keys.iter().map(|k| k.jwk.clone()).collect())
}

/// [`auth_table`] for JWKs as they are.
pub(crate) fn auth_table_jwks(dir: &std::path::Path, jwks: Vec<Value>) -> String {
    std::fs::write(dir.join("jwks.json"), json!({ "keys": jwks }).to_string()).unwrap();
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    format!(
        "[auth]\nissuer = \"https://idp.example\"\naudience = \"iotel-cloud\"\n\
         jwks_file = \"{}\"\npolicy_file = \"{}\"\naudit_log = \"{}\"\n",
        dir.join("jwks.json").display(),
        dir.join("policy.toml").display(),
        dir.join("audit.jsonl").display()
    )
}

/// A new Ed25519 key as a PKCS#8 PEM file in `dir`, named after `id`.
pub(crate) fn ed25519_key_file(dir: &std::path::Path, id: &str) -> std::path::PathBuf {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
    let path = dir.join(format!("{id}.signing.key"));
    std::fs::write(
        &path,
        format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    path
}

/// A gateway's signer, with the token claims the receivers in tests take.
pub(crate) fn gateway_signer(dir: &std::path::Path, id: &str) -> super::signing::Signer {
    super::signing::Signer::load(
        &ed25519_key_file(dir, id),
        id,
        "https://idp.example",
        "iotel-cloud",
        "acme",
        300,
    )
    .unwrap()
}
