//! Who may change the node through its API.
//!
//! Reading (`GET`) is open as it always was. A changing request (`DELETE`,
//! `PUT`) is let through when
//!
//! 1. its connection presented a client certificate the `[api]` tls table's
//!    `ca_file` verified (mutual TLS), or
//! 2. it carries `Authorization: Bearer <token>` with the token of
//!    `[api] token_file` (compared in constant time), or
//! 3. neither is configured and the API listens on a loopback address only:
//!    whoever can reach it is a local operator.
//!
//! With a token configured, a request without it (or with another) is
//! answered 401 with `WWW-Authenticate: Bearer`. With only client
//! certificates configured, a request without one is answered 403. Beyond
//! loopback with neither, every changing request is answered 403 with what
//! to configure (and `iotel config check` warns).

use iotel_components::http_util::PeerIdentity;
use std::net::SocketAddr;
use std::path::Path;

/// The bearer token of `[api] token_file`; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Token {
    /// Reads the token from `path`: the file's content without surrounding
    /// whitespace.
    ///
    /// # Errors
    /// The file cannot be read, or holds no token.
    pub fn read(path: &Path) -> Result<Token, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!(
                "the token file {} is empty: expected a bearer token",
                path.display()
            ));
        }
        if token.chars().any(char::is_whitespace) {
            return Err(format!(
                "the token file {} holds more than one word: expected one bearer token",
                path.display()
            ));
        }
        Ok(Token(token.to_string()))
    }

    #[cfg(test)]
    pub fn new(token: &str) -> Token {
        Token(token.to_string())
    }

    /// Whether `offered` is this token, in time that does not depend on
    /// where they differ (only on the offered length).
    fn matches(&self, offered: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        let mut diff = u8::from(a.len() != b.len());
        for (i, &y) in b.iter().enumerate() {
            let x = a.get(i).copied().unwrap_or(0);
            diff |= x ^ y;
        }
        diff == 0
    }
}

/// Whether `address` is on this host only: a loopback address (an
/// unspecified one, `0.0.0.0` or `::`, listens on every interface).
pub fn is_loopback(address: SocketAddr) -> bool {
    address.ip().to_canonical().is_loopback()
}

/// How the API decides on changing requests.
#[derive(Debug, Clone)]
pub struct Access {
    /// The API listens on a loopback address only.
    pub loopback: bool,
    pub token: Option<Token>,
    /// Connections may present client certificates that `ca_file`
    /// verifies.
    pub client_certificates: bool,
}

/// The outcome for one changing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let through; who it is, for the audit line.
    Allow(String),
    /// 401, with `WWW-Authenticate: Bearer` and this message.
    Unauthorized(String),
    /// 403, with this message.
    Forbidden(String),
}

impl Access {
    /// Decides on a changing request with these credentials.
    pub fn decide(&self, authorization: Option<&str>, identity: Option<&PeerIdentity>) -> Decision {
        if let Some(id) = identity {
            let who = id
                .spiffe_id
                .clone()
                .or_else(|| id.common_name.as_ref().map(|cn| format!("CN={cn}")))
                .unwrap_or_else(|| format!("certificate serial {}", id.serial_hex));
            return Decision::Allow(who);
        }
        if let Some(token) = &self.token {
            let offered = authorization.and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
            return match offered {
                Some(t) if token.matches(t) => Decision::Allow("bearer token".into()),
                Some(_) => Decision::Unauthorized("invalid bearer token".into()),
                None => Decision::Unauthorized(
                    "this request changes the node: send Authorization: Bearer <token>".into(),
                ),
            };
        }
        if self.client_certificates {
            return Decision::Forbidden(
                "this request changes the node: connect with a client certificate that chains \
                 to [api] tls.ca_file"
                    .into(),
            );
        }
        if self.loopback {
            return Decision::Allow("local".into());
        }
        Decision::Forbidden(
            "this request changes the node, and the node API listens beyond loopback without \
             authentication: set [api] token_file (a bearer token), or a [api] tls table with \
             ca_file (client certificates)"
                .into(),
        )
    }
}
