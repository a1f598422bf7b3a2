//! The verification keys: a JWKS (RFC 7517) from a file or a URL, kept
//! and refreshed.
//!
//! Only asymmetric keys are taken (RSA, EC P-256/P-384, Ed25519). A
//! symmetric (`oct`) key in the set is skipped with a warning: a key the
//! receiver verifies with must not be one that can also sign. A key that
//! declares its `alg` is used for that algorithm only.
//!
//! When a refresh fails the last good set stays in use and the failure is
//! kept to be reported; with no good set yet, every request is refused
//! (503) naming the failure — never let through.

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Where the key set comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    File(PathBuf),
    Url(http::Uri),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "{}", p.display()),
            KeySource::Url(u) => write!(f, "{u}"),
        }
    }
}

/// One usable key.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    /// The one algorithm the key declares, if it does.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
    /// The raw public key of an Ed25519 key, for batch signatures.
    pub ed25519: Option<Vec<u8>>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The keys of one set and what was skipped.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    pub keys: Vec<Key>,
    /// Why each skipped key was skipped.
    pub skipped: Vec<String>,
}

/// Parses a JWKS document.
///
/// # Errors
/// A document that is not a JWKS, or has no usable key.
pub fn parse_jwks(text: &[u8]) -> Result<Keys, String> {
    let set: JwkSet =
        serde_json::from_slice(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut out = Keys::default();
    for (i, jwk) in set.keys.iter().enumerate() {
        let name = jwk
            .common
            .key_id
            .clone()
            .unwrap_or_else(|| format!("keys[{i}]"));
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            out.skipped.push(format!(
                "{name}: a symmetric (oct) key; only public keys are accepted"
            ));
            continue;
        }
        let alg = match jwk.common.key_algorithm.map(algorithm) {
            None => None,
            Some(Some(a)) => Some(a),
            Some(None) => {
                out.skipped
                    .push(format!("{name}: its alg is not a signature algorithm"));
                continue;
            }
        };
        let ed25519 = match &jwk.algorithm {
            AlgorithmParameters::OctetKeyPair(p) => {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(&p.x)
                    .ok()
                    .filter(|k| k.len() == 32)
            }
            _ => None,
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => out.keys.push(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
                ed25519,
            }),
            Err(e) => out.skipped.push(format!("{name}: {e}")),
        }
    }
    if out.keys.is_empty() {
        return Err(format!(
            "no usable key{}",
            if out.skipped.is_empty() {
                String::new()
            } else {
                format!(" ({})", out.skipped.join("; "))
            }
        ));
    }
    Ok(out)
}

fn algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[derive(Debug, Default)]
struct State {
    keys: Option<Arc<Keys>>,
    /// The last refresh's failure, while it is the latest news.
    error: Option<String>,
    /// The file's modification time when read.
    modified: Option<SystemTime>,
    last_attempt: Option<Instant>,
}

/// The current keys, shared by a receiver's connections.
#[derive(Debug)]
pub struct KeyStore {
    pub source: KeySource,
    state: Mutex<State>,
    /// The fewest seconds between two refreshes an unknown `kid` asks for.
    pub min_interval: Duration,
    /// The client a URL is fetched with (`jwks_ca_file`); `None`: the
    /// default one, which trusts the system's roots for https.
    client: Option<crate::http_util::Client>,
}

impl KeyStore {
    pub fn new(source: KeySource) -> Self {
        KeyStore {
            source,
            state: Mutex::new(State::default()),
            min_interval: Duration::from_secs(30),
            client: None,
        }
    }

    /// Fetches a URL with `client` (one trusting `jwks_ca_file`).
    #[must_use]
    pub fn with_client(mut self, client: Option<crate::http_util::Client>) -> Self {
        self.client = client;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The keys, or why there are none.
    ///
    /// # Errors
    /// No set was loaded yet: the failure.
    pub fn current(&self) -> Result<Arc<Keys>, String> {
        let s = self.lock();
        s.keys.clone().ok_or_else(|| {
            s.error
                .clone()
                .unwrap_or_else(|| format!("the keys from {} are not loaded yet", self.source))
        })
    }

    /// Whether a refresh may run now (`forced`: the periodic one, which
    /// always may; otherwise at most one per `min_interval`).
    pub fn may_refresh(&self, forced: bool) -> bool {
        let mut s = self.lock();
        let due = forced
            || s.last_attempt
                .is_none_or(|t| t.elapsed() >= self.min_interval);
        if due {
            s.last_attempt = Some(Instant::now());
        }
        due
    }

    /// Reloads the set. A file is read again only when it changed.
    ///
    /// # Errors
    /// The failure, also kept for [`KeyStore::current`] while no set is
    /// loaded; the last good set stays.
    pub async fn refresh(&self) -> Result<(), String> {
        let fetched = match &self.source {
            KeySource::File(path) => {
                let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                if modified.is_some() && modified == self.lock().modified {
                    return Ok(());
                }
                std::fs::read(path)
                    .map_err(|e| format!("{}: cannot read the JWKS file: {e}", path.display()))
                    .and_then(|b| parse_jwks(&b).map_err(|e| format!("{}: {e}", path.display())))
                    .map(|k| (k, modified))
            }
            KeySource::Url(uri) => {
                let client = self.client.clone().unwrap_or_else(crate::http_util::client);
                fetch(&client, uri).await.map(|k| (k, None))
            }
        };
        let mut s = self.lock();
        match fetched {
            Ok((keys, modified)) => {
                for skipped in &keys.skipped {
                    tracing::warn!("JWKS {}: skipped key {skipped}", self.source);
                }
                s.keys = Some(Arc::new(keys));
                s.error = None;
                s.modified = modified;
                Ok(())
            }
            Err(e) => {
                s.error = Some(e.clone());
                Err(e)
            }
        }
    }
}

/// An error and its causes: the client's own message ("client error
/// (Connect)") says little; the cause (a TLS failure) says what happened.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// The largest JWKS document taken.
const MAX_JWKS_BYTES: usize = 1 << 20;

async fn fetch(client: &crate::http_util::Client, uri: &http::Uri) -> Result<Keys, String> {
    use http_body_util::BodyExt;
    let request = http::Request::get(uri.clone())
        .header(http::header::USER_AGENT, crate::http_util::USER_AGENT)
        .header(http::header::ACCEPT, "application/json")
        .body(crate::http_util::Body::new(bytes::Bytes::new()))
        .map_err(|e| format!("GET {uri}: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| format!("GET {uri}: no answer within 10s"))?
        .map_err(|e| format!("GET {uri}: {}", with_causes(&e)))?;
    if !response.status().is_success() {
        return Err(format!("GET {uri}: answered {}", response.status()));
    }
    let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| format!("GET {uri}: reading the body: {e}"))?
        .to_bytes();
    parse_jwks(&body).map_err(|e| format!("GET {uri}: {e}"))
}
