//! The node API: `/healthz` (alive), `/readyz` (running and not stopping),
//! `/metrics` (the node's own metrics, text 0.0.4 or OpenMetrics by the
//! request's `Accept`), the status page at `/` and what it reads,
//! `/api/v1/components` (the graph and each component's counts, JSON; see
//! `status`), and the metric families the node's sources emit, which an
//! operator may retire and enable again:
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/v1/metrics` | `{"families":[…]}`, each as `GET /api/v1/metrics/{name}` answers |
//! | `GET /api/v1/metrics/{name}` | the family, or 404 |
//! | `DELETE /api/v1/metrics/{name}` | retires it: 200 `{"name":…,"state":"retired"}`, or 404 |
//! | `PUT /api/v1/metrics/{name}` | enables it again: 200 `{"name":…,"state":"active"}`, or 404 |
//!
//! Changing requests are authenticated as [`auth`] says, and each one that
//! changes something is logged (target `iotel::audit`) with who asked.
//! Retirements are kept across restarts ([`lifecycle`]).
//!
//! With an `[api]` tls table it speaks HTTPS only (client certificates when
//! the table has a `ca_file`).

pub mod auth;
pub mod lifecycle;
#[cfg(test)]
mod tests;

use crate::status;
use auth::{Access, Decision};
use iotel_components::http_util::{Body, PeerIdentity, Tls, peer_of, response, serve_with};
use iotel_engine::families::FamilyInfo;
use iotel_engine::{Registry, Shutdown};
use iotel_formats::prometheus::encode::{EncodeOptions, encode, negotiate};
use lifecycle::{ChangeError, Lifecycle};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;

const FAMILIES_PATH: &str = "/api/v1/metrics";

/// What the API answers from.
#[derive(Debug, Clone)]
pub struct Api {
    pub registry: Registry,
    pub ready: Arc<AtomicBool>,
    pub lifecycle: Lifecycle,
    pub access: Access,
    /// What the node runs, for the status page.
    pub node: Arc<status::Node>,
}

pub async fn serve(listener: TcpListener, shutdown: Shutdown, tls: Option<Tls>, api: Api) {
    let api = Arc::new(api);
    serve_with(listener, shutdown, tls, move |req| {
        let api = api.clone();
        let request = Api::request(&req);
        async move { api.answer(&request).await }
    })
    .await;
}

/// One request, as far as the API looks at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: http::Method,
    pub path: String,
    pub query: Option<String>,
    pub accept: Option<String>,
    pub authorization: Option<String>,
    /// The verified client certificate of the connection, if any.
    pub identity: Option<PeerIdentity>,
    /// The peer, for the audit line.
    pub peer: String,
}

impl Api {
    fn request<B>(req: &hyper::Request<B>) -> Request {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Request {
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            query: req.uri().query().map(str::to_string),
            accept: header(http::header::ACCEPT),
            authorization: header(http::header::AUTHORIZATION),
            identity: req.extensions().get::<PeerIdentity>().cloned(),
            peer: peer_of(req),
        }
    }

    /// Answers one request.
    pub async fn answer(&self, req: &Request) -> hyper::Response<Body> {
        if req.path == FAMILIES_PATH {
            return match req.method {
                http::Method::GET | http::Method::HEAD => {
                    let families = self.lifecycle.families().list();
                    json(200, &Listing { families })
                }
                _ => method_not_allowed("GET, HEAD"),
            };
        }
        if let Some(name) = req
            .path
            .strip_prefix(FAMILIES_PATH)
            .and_then(|p| p.strip_prefix('/'))
            .filter(|n| !n.is_empty() && !n.contains('/'))
        {
            return self.family(req, name).await;
        }
        if let Some(output) = req.path.strip_prefix(crate::tap::PATH) {
            if req.method != http::Method::GET {
                return method_not_allowed("GET");
            }
            let sinks: Vec<&str> = self
                .node
                .components
                .iter()
                .filter(|c| c.kind == "sink")
                .map(|c| c.id.as_str())
                .collect();
            return crate::tap::answer(&self.registry, output, req.query.as_deref(), &sinks).await;
        }
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return response(405, "text/plain", "method not allowed\n");
        }
        match req.path.as_str() {
            "/" => response(200, "text/html; charset=utf-8", status::PAGE),
            "/api/v1/components" => response(
                200,
                "application/json",
                status::components_json(&self.node, &self.registry),
            ),
            "/healthz" => response(200, "text/plain", "ok\n"),
            "/readyz" if self.ready.load(Ordering::SeqCst) => {
                response(200, "text/plain", "ready\n")
            }
            "/readyz" => response(503, "text/plain", "not ready\n"),
            "/metrics" => {
                let format = negotiate(req.accept.as_deref());
                let mut body = String::new();
                encode(
                    &self.registry.snapshot(),
                    format,
                    &EncodeOptions::default(),
                    &mut body,
                );
                response(200, format.content_type(), body)
            }
            _ => response(
                404,
                "text/plain",
                "not found: try /, /healthz, /readyz, /metrics, /api/v1/components or \
                 /api/v1/metrics\n",
            ),
        }
    }

    /// `/api/v1/metrics/{name}`.
    async fn family(&self, req: &Request, name: &str) -> hyper::Response<Body> {
        let retire = match req.method {
            http::Method::GET | http::Method::HEAD => {
                return match self.lifecycle.families().get(name) {
                    Some(f) => json(200, &f),
                    None => unknown(name),
                };
            }
            http::Method::DELETE => true,
            http::Method::PUT => false,
            _ => return method_not_allowed("GET, HEAD, DELETE, PUT"),
        };
        let (status, message) = match self
            .access
            .decide(req.authorization.as_deref(), req.identity.as_ref())
        {
            Decision::Allow(who) => return self.change(req, name, retire, who).await,
            Decision::Unauthorized(message) => (401, message),
            Decision::Forbidden(message) => (403, message),
        };
        tracing::warn!(
            target: "iotel::audit",
            peer = %req.peer,
            family = name,
            "refused {} of a metric family: {message}",
            req.method
        );
        let mut r = error(status, &message);
        if status == 401 {
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"iotel\""),
            );
        }
        r
    }

    /// Retires (`retire`) or enables `name` for `who`, who may.
    async fn change(
        &self,
        req: &Request,
        name: &str,
        retire: bool,
        who: String,
    ) -> hyper::Response<Body> {
        let lifecycle = self.lifecycle.clone();
        let owned = name.to_string();
        let changed = tokio::task::spawn_blocking(move || {
            if retire {
                lifecycle.retire(&owned)
            } else {
                lifecycle.enable(&owned)
            }
        })
        .await;
        match changed {
            Ok(Ok(f)) => {
                tracing::info!(
                    target: "iotel::audit",
                    peer = %req.peer,
                    who = %who,
                    family = name,
                    "metric family {}",
                    if retire { "retired" } else { "enabled" }
                );
                json(200, &state_of(&f))
            }
            Ok(Err(ChangeError::Unknown(_))) => unknown(name),
            Ok(Err(e)) => {
                tracing::error!(target: "iotel::audit", peer = %req.peer, who = %who, family = name, "{e}");
                error(500, &e.to_string())
            }
            Err(e) => error(500, &format!("the change did not finish: {e}")),
        }
    }
}

/// How the API of `loaded` decides on changing requests: its address and
/// its `[api]` token and client certificates.
///
/// # Errors
/// The token file cannot be read or holds no token, naming the config file
/// and key.
pub fn access(loaded: &iotel_components::config::Loaded) -> Result<Access, String> {
    let token = match &loaded.api.token_file {
        Some(f) if loaded.api.enabled => Some(
            auth::Token::read(&loaded.config_dir.join(f))
                .map_err(|e| format!("{}: api.token_file: {e}", loaded.file))?,
        ),
        _ => None,
    };
    let client_certificates = loaded
        .api
        .tls
        .as_ref()
        .is_some_and(|t| t.verifies_clients());
    Ok(Access {
        loopback: auth::is_loopback(loaded.api.address),
        token,
        client_certificates,
    })
}

/// `GET /api/v1/metrics`: an object, so fields can join the list later.
#[derive(serde::Serialize)]
struct Listing {
    families: Vec<FamilyInfo>,
}

fn state_of(f: &FamilyInfo) -> serde_json::Value {
    serde_json::json!({ "name": f.name, "state": f.state })
}

fn json(status: u16, value: &impl serde::Serialize) -> hyper::Response<Body> {
    let mut body = serde_json::to_string(value).unwrap_or_else(|e| {
        // Our own types always serialize; say so if one ever does not.
        format!("{{\"error\":\"cannot write the answer: {e}\"}}")
    });
    body.push('\n');
    response(status, "application/json", body)
}

fn error(status: u16, message: &str) -> hyper::Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

fn unknown(name: &str) -> hyper::Response<Body> {
    error(404, &format!("unknown metric family \"{name}\""))
}

fn method_not_allowed(allow: &'static str) -> hyper::Response<Body> {
    let mut r = error(405, &format!("method not allowed: use {allow}"));
    r.headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    r
}
