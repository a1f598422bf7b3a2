//! A gateway's own credentials towards the cloud: a short-lived JWT it
//! signs itself (EdDSA), and an Ed25519 signature on every batch it
//! forwards.
//!
//! The signature covers (`Iotel-Signature: keyid=ID, t=UNIX_SECONDS,
//! sig=BASE64URL`):
//!
//! ```text
//! iotel-batch-signature-v1\n
//! <t>\n
//! <Iotel-Hops>\n           the forwarding chain, e.g. "gateway:site-1"
//! <hex SHA-256 of the body>
//! ```
//!
//! The body is the native frame: its agent id and sequence, and every
//! record with the `device_id` the gateway bound, so none of it can change
//! after signing. The receiver verifies with the key of the token's
//! subject (`keyid` must be that subject and the frame's agent id),
//! refuses a `t` more than [`MAX_AGE_SECS`] from its own clock, and drops
//! a replay within that window as a retransmit by (agent id, sequence).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Mutex;

/// The request header with the batch signature.
pub const SIGNATURE: &str = "iotel-signature";
/// The request header with the forwarding chain.
pub const HOPS: &str = "iotel-hops";
/// How far a signature's time may be from the receiver's clock.
pub const MAX_AGE_SECS: i64 = 300;

/// What a gateway signs with.
pub struct Signer {
    pub key_id: String,
    pair: Ed25519KeyPair,
    encoding: EncodingKey,
    claims: serde_json::Value,
    ttl_secs: i64,
    /// The current token and when it stops being handed out.
    token: Mutex<Option<(String, i64)>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The DER inside a PEM file's first block.
fn pem_der(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN "))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END "))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

impl Signer {
    /// Reads an Ed25519 private key (PKCS#8 PEM, as `iotel certs
    /// issue-gateway` writes it).
    ///
    /// # Errors
    /// The file, and what is wrong with it.
    pub fn load(
        key_file: &Path,
        key_id: &str,
        issuer: &str,
        audience: &str,
        tenant: &str,
        ttl_secs: i64,
    ) -> Result<Signer, String> {
        let text = std::fs::read_to_string(key_file)
            .map_err(|e| format!("{}: cannot read the signing key: {e}", key_file.display()))?;
        let der = pem_der(&text).ok_or_else(|| {
            format!(
                "{}: not a PEM private key (expected -----BEGIN PRIVATE KEY-----)",
                key_file.display()
            )
        })?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| format!("{}: not an Ed25519 PKCS#8 key ({e})", key_file.display()))?;
        Ok(Signer {
            key_id: key_id.to_string(),
            pair,
            encoding: EncodingKey::from_ed_der(&der),
            claims: serde_json::json!({
                "iss": issuer, "aud": audience, "sub": key_id,
                "tenant": tenant, "roles": ["gateway"],
            }),
            ttl_secs,
            token: Mutex::new(None),
        })
    }

    /// The public key, as a JWK with `kid` = the key id.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "kid": self.key_id, "x": B64.encode(self.pair.public_key().as_ref())})
    }

    /// A bearer token valid for the configured time; the same one is
    /// handed out until half of it has passed.
    pub fn token(&self, now: i64) -> String {
        let mut t = self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((token, until)) = t.as_ref()
            && now < *until
        {
            return token.clone();
        }
        let mut claims = self.claims.clone();
        claims["iat"] = now.into();
        claims["nbf"] = now.into();
        claims["exp"] = (now + self.ttl_secs).into();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key_id.clone());
        // Signing with a key that parsed cannot fail.
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap_or_default();
        *t = Some((token.clone(), now + self.ttl_secs / 2));
        token
    }

    /// The `Iotel-Signature` value for `body` sent along `hops` at `now`.
    pub fn sign(&self, body: &[u8], hops: &str, now: i64) -> String {
        let sig = self.pair.sign(signed_text(now, hops, body).as_bytes());
        format!(
            "keyid={}, t={now}, sig={}",
            self.key_id,
            B64.encode(sig.as_ref())
        )
    }
}

fn signed_text(t: i64, hops: &str, body: &[u8]) -> String {
    let digest: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("iotel-batch-signature-v1\n{t}\n{hops}\n{digest}")
}

/// A parsed `Iotel-Signature`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub key_id: String,
    pub t: i64,
    pub sig: Vec<u8>,
}

/// Parses `keyid=…, t=…, sig=…`.
///
/// # Errors
/// What is missing or malformed.
pub fn parse_signature(value: &str) -> Result<Signature, String> {
    let (mut key_id, mut t, mut sig) = (None, None, None);
    for part in value.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not key=value"))?;
        match k {
            "keyid" => key_id = Some(v.to_string()),
            "t" => {
                t = Some(
                    v.parse::<i64>()
                        .map_err(|_| format!("t={v:?} is not a number"))?,
                )
            }
            "sig" => {
                sig = Some(
                    B64.decode(v)
                        .map_err(|_| "sig is not base64url".to_string())?,
                )
            }
            _ => {}
        }
    }
    Ok(Signature {
        key_id: key_id.ok_or("no keyid")?,
        t: t.ok_or("no t")?,
        sig: sig.ok_or("no sig")?,
    })
}

/// Checks a batch's signature with `public_key` (Ed25519, 32 bytes).
///
/// # Errors
/// Why it does not verify: too old or too far ahead, or a signature that
/// does not match the body and hops.
pub fn verify(
    public_key: &[u8],
    s: &Signature,
    hops: &str,
    body: &[u8],
    now: i64,
) -> Result<(), String> {
    if (now - s.t).abs() > MAX_AGE_SECS {
        return Err(format!(
            "signed at {} but it is {now} here: more than {MAX_AGE_SECS}s apart (a replay, or a clock off)",
            s.t
        ));
    }
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(signed_text(s.t, hops, body).as_bytes(), &s.sig)
        .map_err(|_| "the batch signature does not verify: the batch or its hops changed after signing, or another key signed it".to_string())
}
