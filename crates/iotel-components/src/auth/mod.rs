//! Bearer-token authentication and role-based access, for receivers that
//! take data from other tenants' gateways and SDKs (the cloud role): an
//! OAuth2 resource server.
//!
//! - A request carries `Authorization: Bearer <JWT>`. The token's
//!   signature is verified with a key from the configured JWKS ([`keys`]),
//!   chosen by the token's `kid`; then `iss`, `aud`, `exp` (required) and
//!   `nbf` (when present) with a bounded leeway.
//! - Refused: `alg: none` and every symmetric algorithm (HS256 …), so a
//!   token "signed" with a public key as an HMAC secret never verifies; a
//!   token whose `alg` is not the one its key declares; an algorithm not
//!   in `algorithms`.
//! - The verified token gives a [`Principal`]: `sub`, the tenant claim
//!   (`tenant_claim`, default `tenant`) and the roles (`roles_claim`,
//!   default `roles`: a list, or a space-separated string).
//! - [`policy::Policy`] (the `policy_file`) says what a principal may do.
//!   Writes are for the token's own tenant: a record naming another is
//!   refused. Every refusal is counted and, with `audit_log`, written
//!   there as a JSON line.
//!
//! A receiver answers 401 (with `WWW-Authenticate: Bearer error=…`) for a
//! missing or invalid token, 403 for a refusal, 503 while no key set could
//! be loaded. Nothing falls back to open access.

pub mod keys;
pub mod policy;
pub mod signing;
#[cfg(test)]
pub(crate) mod test_keys;
#[cfg(test)]
mod tests;

pub use policy::{Action, Policy, Principal};

use crate::{BuildContext, Problem};
use iotel_engine::config::Duration;
use iotel_model::{Events, Signal};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use keys::{KeySource, KeyStore};
use serde::Deserialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The longest leeway allowed for `exp` and `nbf`.
const MAX_LEEWAY_SECS: u64 = 300;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// The `aud` tokens must carry (one of them, when a list).
    pub audience: String,
    /// The JWKS as a file, reread when it changes.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The JWKS at a URL, fetched at start and every `jwks_refresh`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM certificates to trust (only these) for an `https://`
    /// `jwks_url`; without it, the system's trust store.
    #[serde(default)]
    pub jwks_ca_file: Option<PathBuf>,
    #[serde(default = "default_refresh")]
    pub jwks_refresh: Duration,
    /// Clock skew tolerated on `exp` and `nbf`; at most 5m.
    #[serde(default = "default_leeway")]
    pub leeway: Duration,
    /// The signature algorithms accepted.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    pub policy_file: PathBuf,
    /// The label that names a record's tenant: a record that names
    /// another tenant than the token's is refused; one that names none is
    /// given the token's.
    #[serde(default = "default_tenant_label")]
    pub tenant_label: String,
    /// Where refusals are written, one JSON object a line.
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    /// Every batch must carry a gateway's signature (`Iotel-Signature`) by
    /// the Ed25519 key of its token's subject ([`signing`]).
    #[serde(default)]
    pub require_batch_signatures: bool,
}

fn default_refresh() -> Duration {
    Duration(std::time::Duration::from_secs(300))
}

fn default_leeway() -> Duration {
    Duration(std::time::Duration::from_secs(30))
}

fn default_algorithms() -> Vec<String> {
    ["RS256", "ES256", "EdDSA"].map(String::from).to_vec()
}

fn default_tenant_claim() -> String {
    "tenant".into()
}

fn default_tenant_label() -> String {
    "tenant".into()
}

fn default_roles_claim() -> String {
    "roles".into()
}

/// The asymmetric signature algorithms by their JOSE names.
fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        for (key, v) in [
            ("issuer", &self.issuer),
            ("audience", &self.audience),
            ("tenant_claim", &self.tenant_claim),
            ("roles_claim", &self.roles_claim),
            ("tenant_label", &self.tenant_label),
        ] {
            if v.is_empty() {
                p.push(Problem::new(key, "must not be empty"));
            }
        }
        match (&self.jwks_file, &self.jwks_url) {
            (None, None) => p.push(Problem::new(
                "jwks_file",
                "set jwks_file or jwks_url: the keys tokens are verified with",
            )),
            (Some(_), Some(_)) => p.push(Problem::new(
                "jwks_url",
                "set jwks_file or jwks_url, not both",
            )),
            (None, Some(url)) => {
                if let Err(e) = crate::http_util::parse_http_url(url) {
                    p.push(Problem::new("jwks_url", e));
                }
            }
            (Some(_), None) => {}
        }
        if self.jwks_ca_file.is_some() {
            match &self.jwks_url {
                Some(url)
                    if url
                        .get(..8)
                        .is_some_and(|s| s.eq_ignore_ascii_case("https://")) =>
                {
                    if !cfg!(feature = "tls") {
                        p.push(Problem::new("jwks_ca_file", crate::tls::NOT_BUILT_IN));
                    }
                }
                _ => p.push(Problem::new(
                    "jwks_ca_file",
                    "only for an https:// jwks_url",
                )),
            }
        }
        if self.leeway.get().as_secs() > MAX_LEEWAY_SECS {
            p.push(Problem::new(
                "leeway",
                format!(
                    "{} is too lenient; at most 5m",
                    humantime(self.leeway.get())
                ),
            ));
        }
        if self.jwks_refresh.get() < std::time::Duration::from_secs(1) {
            p.push(Problem::new("jwks_refresh", "expected at least 1s"));
        }
        if self.algorithms.is_empty() {
            p.push(Problem::new("algorithms", "must list at least one"));
        }
        for (i, a) in self.algorithms.iter().enumerate() {
            if parse_algorithm(a).is_none() {
                let why = if a.starts_with("HS") {
                    "symmetric algorithms are not accepted: the key a receiver verifies with could also sign"
                } else if a.eq_ignore_ascii_case("none") {
                    "unsigned tokens are never accepted"
                } else {
                    "expected RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA"
                };
                p.push(Problem::new(
                    format!("algorithms[{i}]"),
                    format!("{a:?}: {why}"),
                ));
            }
        }
        p
    }

    /// Reads the policy and (from a file) the keys: a receiver with auth
    /// does not start without a valid policy.
    ///
    /// # Errors
    /// The policy or the JWKS file, naming it and what is wrong.
    pub fn build(&self, cx: &BuildContext) -> Result<Auth, Problem> {
        let policy = Policy::load(&cx.resolve(&self.policy_file))
            .map_err(|e| Problem::new("policy_file", e))?;
        let source = match (&self.jwks_file, &self.jwks_url) {
            (Some(f), _) => KeySource::File(cx.resolve(f)),
            (None, Some(u)) => KeySource::Url(
                crate::http_util::parse_http_url(u).map_err(|e| Problem::new("jwks_url", e))?,
            ),
            (None, None) => return Err(Problem::new("jwks_file", "set jwks_file or jwks_url")),
        };
        let ca = self.jwks_ca_file.as_ref().map(|ca| crate::tls::ClientTls {
            ca_file: Some(ca.clone()),
            ..crate::tls::ClientTls::default()
        });
        let client = crate::http_util::client_for(ca.as_ref(), cx)
            .map_err(|p| Problem::new("jwks_ca_file", p.message))?;
        let store = KeyStore::new(source).with_client(client);
        if let KeySource::File(path) = &store.source {
            let text = std::fs::read(path).map_err(|e| {
                Problem::new(
                    "jwks_file",
                    format!("{}: cannot read the JWKS file: {e}", path.display()),
                )
            })?;
            keys::parse_jwks(&text)
                .map_err(|e| Problem::new("jwks_file", format!("{}: {e}", path.display())))?;
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.algorithms = self
            .algorithms
            .iter()
            .filter_map(|a| parse_algorithm(a))
            .collect();
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway.get().as_secs();
        let audit = match &self.audit_log {
            None => None,
            Some(p) => {
                let path = cx.resolve(p);
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| {
                        Problem::new(
                            "audit_log",
                            format!("{}: cannot open the audit log: {e}", path.display()),
                        )
                    })?;
                Some(Mutex::new(file))
            }
        };
        Ok(Auth {
            keys: Arc::new(store),
            refresh: self.jwks_refresh.get(),
            validation,
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            tenant_claim: self.tenant_claim.clone(),
            roles_claim: self.roles_claim.clone(),
            tenant_label: self.tenant_label.clone(),
            require_batch_signatures: self.require_batch_signatures,
            policy,
            audit,
        })
    }
}

fn humantime(d: std::time::Duration) -> String {
    format!("{}s", d.as_secs())
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that is not valid; what is wrong with it.
    Invalid { code: &'static str, reason: String },
    /// No key set could be loaded (yet): the failure.
    KeysUnavailable(String),
}

impl AuthError {
    /// The HTTP status to answer: 401, or 503 while there are no keys.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::KeysUnavailable(_) => 503,
            _ => 401,
        }
    }

    /// A stable code, for counters and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Invalid { code, .. } => code,
            AuthError::KeysUnavailable(_) => "keys_unavailable",
        }
    }

    /// The `WWW-Authenticate` header of a 401 (RFC 6750 §3).
    pub fn www_authenticate(&self) -> String {
        match self {
            AuthError::Missing => "Bearer".into(),
            other => format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                quoted(&other.to_string())
            ),
        }
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Missing => {
                f.write_str("no bearer token (expected Authorization: Bearer <JWT>)")
            }
            AuthError::Invalid { reason, .. } => f.write_str(reason),
            AuthError::KeysUnavailable(e) => write!(f, "cannot verify tokens: {e}"),
        }
    }
}

fn invalid(code: &'static str, reason: impl Into<String>) -> AuthError {
    AuthError::Invalid {
        code,
        reason: reason.into(),
    }
}

/// A refusal by the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub code: &'static str,
    pub reason: String,
}

impl Denied {
    /// The `WWW-Authenticate` of a 403 for it (RFC 6750 §3.1:
    /// `insufficient_scope`, the token does not grant the request).
    pub fn www_authenticate(&self) -> String {
        format!(
            "Bearer error=\"insufficient_scope\", error_description=\"{}\"",
            quoted(&self.reason)
        )
    }
}

/// `s` fit for a quoted-string of a header: `"` and `\\` become `'`,
/// anything but visible ASCII and space `?`.
fn quoted(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// One receiver's authentication and policy.
#[derive(Debug)]
pub struct Auth {
    keys: Arc<KeyStore>,
    refresh: std::time::Duration,
    validation: Validation,
    issuer: String,
    audience: String,
    tenant_claim: String,
    roles_claim: String,
    tenant_label: String,
    /// Batches must be signed ([`signing`]).
    pub require_batch_signatures: bool,
    policy: Policy,
    audit: Option<Mutex<std::fs::File>>,
}

impl Auth {
    /// Loads the keys, then refreshes them every `jwks_refresh` until
    /// `shutdown`. A failure is logged and kept; requests are refused with
    /// it while no set was ever loaded.
    pub async fn keep_keys(self: Arc<Self>, mut shutdown: iotel_engine::Shutdown) {
        loop {
            if self.keys.may_refresh(true)
                && let Err(e) = self.keys.refresh().await
            {
                tracing::warn!("loading the token keys failed: {e}");
            }
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(self.refresh) => {}
            }
        }
    }

    /// Verifies the `Authorization` header's bearer token.
    ///
    /// # Errors
    /// Why the request is not authenticated.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            let alg_none = token
                .split('.')
                .next()
                .and_then(|h| {
                    use base64::Engine;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(h)
                        .ok()
                })
                .is_some_and(|h| {
                    serde_json::from_slice::<serde_json::Value>(&h).is_ok_and(|v| {
                        v["alg"]
                            .as_str()
                            .is_some_and(|a| a.eq_ignore_ascii_case("none"))
                    })
                });
            if alg_none {
                invalid(
                    "unsigned_token",
                    "alg none: unsigned tokens are never accepted",
                )
            } else {
                invalid("malformed_token", format!("not a JWT: {e}"))
            }
        })?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(invalid(
                "algorithm_not_accepted",
                format!(
                    "algorithm {:?} is not accepted (accepted: {})",
                    header.alg,
                    self.validation
                        .algorithms
                        .iter()
                        .map(|a| format!("{a:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let mut keys = self.keys.current().map_err(AuthError::KeysUnavailable)?;
        let find = |keys: &keys::Keys| -> Option<keys::Key> {
            match &header.kid {
                Some(kid) => keys
                    .keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                    .cloned(),
                None if keys.keys.len() == 1 => keys.keys.first().cloned(),
                None => None,
            }
        };
        let mut key = find(&keys);
        if key.is_none() && self.keys.may_refresh(false) {
            // A key rolled over at the issuer: look again, at most once per
            // half minute whatever tokens arrive.
            if let Err(e) = self.keys.refresh().await {
                tracing::warn!("reloading the token keys for an unknown kid failed: {e}");
            }
            keys = self.keys.current().map_err(AuthError::KeysUnavailable)?;
            key = find(&keys);
        }
        let Some(key) = key else {
            return Err(match &header.kid {
                Some(kid) => invalid(
                    "unknown_key",
                    format!("no key with kid {kid:?} in {}", self.keys.source),
                ),
                None => invalid(
                    "unknown_key",
                    format!(
                        "the token has no kid and {} has {} keys",
                        self.keys.source,
                        keys.keys.len()
                    ),
                ),
            });
        };
        if key.alg.is_some_and(|a| a != header.alg) {
            return Err(invalid(
                "algorithm_mismatch",
                format!(
                    "the token says {:?} but key {:?} is for {:?}",
                    header.alg,
                    key.kid.as_deref().unwrap_or("-"),
                    key.alg
                ),
            ));
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key.key,
            &validation,
        )
        .map_err(|e| self.explain(&e))?;
        let claims = data.claims;
        let subject = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let tenant = match claims.get(&self.tenant_claim) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(t)) => Some(t.clone()),
            Some(_) => {
                return Err(invalid(
                    "bad_claim",
                    format!("claim {:?} is not a string", self.tenant_claim),
                ));
            }
        };
        let roles = match claims.get(&self.roles_claim) {
            None | Some(serde_json::Value::Null) => vec![],
            Some(serde_json::Value::String(s)) => s.split_whitespace().map(String::from).collect(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect(),
            Some(_) => {
                return Err(invalid(
                    "bad_claim",
                    format!(
                        "claim {:?} is neither a list nor a string",
                        self.roles_claim
                    ),
                ));
            }
        };
        Ok(Principal {
            subject,
            tenant,
            roles,
        })
    }

    fn explain(&self, e: &jsonwebtoken::errors::Error) -> AuthError {
        match e.kind() {
            ErrorKind::ExpiredSignature => invalid("token_expired", "the token has expired"),
            ErrorKind::ImmatureSignature => {
                invalid("token_not_yet_valid", "the token is not valid yet (nbf)")
            }
            ErrorKind::InvalidAudience => invalid(
                "wrong_audience",
                format!("the token is not for audience {:?}", self.audience),
            ),
            ErrorKind::InvalidIssuer => invalid(
                "wrong_issuer",
                format!("the token is not from issuer {:?}", self.issuer),
            ),
            ErrorKind::InvalidSignature => {
                invalid("bad_signature", "the token's signature does not verify")
            }
            ErrorKind::InvalidAlgorithm => invalid(
                "algorithm_mismatch",
                "the token's algorithm does not fit its key",
            ),
            ErrorKind::MissingRequiredClaim(c) => {
                invalid("missing_claim", format!("the token has no {c:?} claim"))
            }
            _ => invalid("malformed_token", format!("not a valid JWT: {e}")),
        }
    }

    /// Whether `who` may do `action` on `signal` for `tenant`: a write
    /// must be for the token's own tenant, and the policy must grant it.
    /// A refusal is written to the audit log.
    ///
    /// # Errors
    /// The refusal, with its reason.
    pub fn authorize(
        &self,
        who: &Principal,
        tenant: &str,
        signal: Signal,
        action: Action,
        peer: &str,
    ) -> Result<(), Denied> {
        let denied = if action == Action::Write && who.tenant.as_deref() != Some(tenant) {
            Some(Denied {
                code: "cross_tenant",
                reason: match &who.tenant {
                    Some(own) => format!(
                        "the token is for tenant {own:?}; it cannot write for tenant {tenant:?}"
                    ),
                    None => format!(
                        "the token has no {:?} claim; it cannot write for tenant {tenant:?}",
                        self.tenant_claim
                    ),
                },
            })
        } else if !self.policy.allows(who, tenant, signal, action) {
            Some(Denied {
                code: "not_granted",
                reason: format!(
                    "no grant lets {:?} (roles: {}) {action} {signal} for tenant {tenant:?}",
                    who.subject,
                    if who.roles.is_empty() {
                        "none".to_string()
                    } else {
                        who.roles.join(", ")
                    }
                ),
            })
        } else {
            None
        };
        match denied {
            None => Ok(()),
            Some(d) => {
                self.audit_denial(
                    who,
                    &d,
                    peer,
                    serde_json::json!({
                        "tenant": tenant,
                        "signal": signal.as_str(),
                        "action": action.to_string(),
                    }),
                );
                Err(d)
            }
        }
    }

    /// Checks a batch written by `who`: it must be for the token's own
    /// tenant, and granted. Records that name no tenant are given it.
    ///
    /// # Errors
    /// The refusal (audited): the token has no tenant, a record names
    /// another, or the policy does not grant the write.
    pub fn authorize_write(
        &self,
        who: &Principal,
        events: &mut Events,
        peer: &str,
    ) -> Result<(), Denied> {
        let label = self.tenant_label.as_str();
        let mut other: Option<String> = None;
        events.for_each(|e| {
            if other.is_none()
                && let Some(t) = e.labels().get(label)
                && who.tenant.as_deref() != Some(t)
            {
                other = Some(t.to_string());
            }
        });
        let tenant = match (other, &who.tenant) {
            (Some(t), _) => t,
            (None, Some(own)) => own.clone(),
            (None, None) => String::new(),
        };
        self.authorize(who, &tenant, events.signal(), Action::Write, peer)?;
        let stamp = |labels: &mut iotel_model::Labels| {
            if labels.get(label).is_none() {
                *labels = labels.with(label, &tenant);
            }
        };
        match events {
            Events::Metrics(v) => v.iter_mut().for_each(|m| stamp(&mut m.labels)),
            Events::Logs(v) => v.iter_mut().for_each(|r| stamp(&mut r.labels)),
            Events::Traces(v) => v.iter_mut().for_each(|s| stamp(&mut s.labels)),
        }
        Ok(())
    }

    /// Checks a batch's signature (`Iotel-Signature`, over `hops` and the
    /// body, before anything decodes it) against the Ed25519 key of
    /// `who`'s token: the key id must be the token's subject. The frame's
    /// agent id is checked once decoded ([`Auth::check_agent`]).
    ///
    /// # Errors
    /// The refusal (audited): unsigned, signed by another key, changed
    /// after signing, or signed too long ago.
    pub fn verify_batch(
        &self,
        who: &Principal,
        signature: Option<&str>,
        hops: &str,
        body: &[u8],
        peer: &str,
    ) -> Result<(), Denied> {
        let check = || -> Result<(), Denied> {
            let deny = |code: &'static str, reason: String| Denied { code, reason };
            let value = signature.ok_or_else(|| {
                deny(
                    "unsigned_batch",
                    "the batch has no Iotel-Signature; this receiver takes signed batches only"
                        .into(),
                )
            })?;
            let s = signing::parse_signature(value)
                .map_err(|e| deny("bad_batch_signature", format!("Iotel-Signature: {e}")))?;
            if s.key_id != who.subject {
                return Err(deny(
                    "bad_batch_signature",
                    format!(
                        "signed by {:?}, but the token is {:?}'s",
                        s.key_id, who.subject
                    ),
                ));
            }
            let keys = self
                .keys
                .current()
                .map_err(|e| deny("keys_unavailable", e))?;
            let public = keys
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(s.key_id.as_str()))
                .and_then(|k| k.ed25519.as_deref())
                .ok_or_else(|| {
                    deny(
                        "bad_batch_signature",
                        format!(
                            "no Ed25519 key with kid {:?} in {}",
                            s.key_id, self.keys.source
                        ),
                    )
                })?;
            signing::verify(public, &s, hops, body, jiff::Timestamp::now().as_second())
                .map_err(|e| deny("bad_batch_signature", e))
        };
        check().inspect_err(|d| self.audit_batch(who, d, peer))
    }

    /// With signed batches, the frame must be the signer's own: its agent
    /// id is the token's subject.
    ///
    /// # Errors
    /// The refusal (audited).
    pub fn check_agent(&self, who: &Principal, agent_id: &str, peer: &str) -> Result<(), Denied> {
        // A node sending several streams names them `<node>/<stream>`.
        let node = agent_id.split('/').next().unwrap_or(agent_id);
        if !self.require_batch_signatures || node == who.subject {
            return Ok(());
        }
        let d = Denied {
            code: "bad_batch_signature",
            reason: format!(
                "the frame is agent {agent_id:?}'s, but it was signed by {:?}",
                who.subject
            ),
        };
        self.audit_batch(who, &d, peer);
        Err(d)
    }

    fn audit_batch(&self, who: &Principal, d: &Denied, peer: &str) {
        self.audit_denial(who, d, peer, serde_json::json!({}));
    }

    /// A refusal of `who`'s request as an audit line, with `extra` fields.
    fn audit_denial(&self, who: &Principal, d: &Denied, peer: &str, extra: serde_json::Value) {
        let mut line = serde_json::json!({
            "time": jiff::Timestamp::now().to_string(),
            "decision": "deny",
            "code": d.code,
            "reason": d.reason,
            "subject": who.subject,
            "token_tenant": who.tenant,
            "peer": peer,
        });
        if let (Some(line), serde_json::Value::Object(extra)) = (line.as_object_mut(), extra) {
            line.extend(extra);
        }
        self.audit(&line);
    }

    /// Writes an authentication failure to the audit log.
    pub fn audit_failure(&self, e: &AuthError, peer: &str) {
        self.audit(&serde_json::json!({
            "time": jiff::Timestamp::now().to_string(),
            "decision": "unauthenticated",
            "code": e.code(),
            "reason": e.to_string(),
            "peer": peer,
        }));
    }

    fn audit(&self, line: &serde_json::Value) {
        let Some(file) = &self.audit else { return };
        let mut f = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = writeln!(f, "{line}") {
            tracing::warn!("writing the audit log failed: {e}");
        }
    }
}
