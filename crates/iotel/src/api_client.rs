//! Reading a node's API from the command line (`iotel top`, `iotel tap`):
//! the address as an operator writes it, and errors that say what is wrong
//! with the node or the address rather than with HTTP.

use bytes::Bytes;
use http_body_util::BodyExt;
use iotel_components::http_util::{self, Body};
use serde::de::DeserializeOwned;
use std::time::Duration;

pub use crate::client_tls::TlsArgs;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// A node's API.
#[derive(Clone)]
pub struct ApiClient {
    /// `http://host:port`, without a trailing slash.
    base: String,
    client: http_util::Client,
}

impl ApiClient {
    /// `api` is `host:port` or an `http://` / `https://` URL; `tls` the
    /// CA and client certificate for an https:// one.
    pub fn new(api: &str, tls: &TlsArgs) -> Result<Self, String> {
        let api = api.trim().trim_end_matches('/');
        let base = if api.contains("://") {
            api.to_string()
        } else {
            format!("http://{api}")
        };
        let uri: http::Uri = base
            .parse()
            .map_err(|e| format!("--api {api:?} is not host:port or a URL: {e}"))?;
        match (uri.scheme_str(), uri.authority()) {
            (Some("http" | "https"), Some(_)) => {}
            _ => {
                return Err(format!(
                    "--api {api:?}: expected host:port or http(s)://host:port"
                ));
            }
        }
        let client = tls.client()?;
        Ok(Self { base, client })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// GETs `path` and reads its JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let url = format!("{}{path}", self.base);
        let (status, _, body) = self.get(&url).await?;
        check(&url, &self.base, status, &body)?;
        serde_json::from_slice(&body).map_err(|e| {
            format!(
                "{url} answered, but not with an iotel node's JSON ({e}): is {} an iotel node API?",
                self.base
            )
        })
    }

    /// GETs `path`: the status, headers and body, whatever the status;
    /// errors only when no answer came.
    pub async fn get_raw(
        &self,
        path: &str,
    ) -> Result<(http::StatusCode, http::HeaderMap, Bytes), String> {
        self.get(&format!("{}{path}", self.base)).await
    }

    async fn get(&self, url: &str) -> Result<(http::StatusCode, http::HeaderMap, Bytes), String> {
        let req = http::Request::get(url)
            .header(http::header::USER_AGENT, http_util::USER_AGENT)
            .body(Body::new(Bytes::new()))
            .map_err(|e| format!("{url}: {e}"))?;
        let resp = tokio::time::timeout(TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| format!("{} did not answer within {TIMEOUT:?}", self.base))?
            .map_err(|e| {
                format!(
                    "cannot reach the node API at {}: {} (is the node running, with [api] \
                     address there?)",
                    self.base,
                    root_cause(&e)
                )
            })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| format!("{url}: the answer did not arrive within {TIMEOUT:?}"))?
            .map_err(|e| format!("{url}: reading the answer failed: {e}"))?
            .to_bytes();
        Ok((status, headers, body))
    }
}

/// An answer that is not 2xx as an error naming what it means.
pub fn check(url: &str, base: &str, status: http::StatusCode, body: &[u8]) -> Result<(), String> {
    if status == http::StatusCode::NOT_FOUND {
        return Err(format!(
            "{url} answered 404: {base} is not an iotel node API, or one too old for this"
        ));
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(format!("{url} answered {status}: {}", text.trim()));
    }
    Ok(())
}

/// The innermost error's text: "connection refused" rather than hyper's
/// "client error (Connect)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(inner) = e.source() {
        e = inner;
    }
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_may_be_host_port_or_a_url() {
        let base = |a: &str| ApiClient::new(a, &TlsArgs::default()).map(|c| c.base().to_string());
        assert_eq!(
            base("127.0.0.1:8686").as_deref(),
            Ok("http://127.0.0.1:8686")
        );
        assert_eq!(
            base("https://gw-1:8686/").as_deref(),
            Ok("https://gw-1:8686")
        );
        assert_eq!(
            base("ftp://gw-1:8686").err().as_deref(),
            Some("--api \"ftp://gw-1:8686\": expected host:port or http(s)://host:port")
        );
        assert!(base("a b").is_err());
    }

    #[tokio::test]
    async fn a_closed_port_is_reported_as_a_node_not_reached() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("its address").port()
        };
        let client =
            ApiClient::new(&format!("127.0.0.1:{port}"), &TlsArgs::default()).expect("an address");
        let e = client
            .get_json::<serde_json::Value>("/api/v1/components")
            .await
            .expect_err("nothing listens");
        assert_eq!(
            e,
            format!(
                "cannot reach the node API at http://127.0.0.1:{port}: Connection refused (os \
                 error 111) (is the node running, with [api] address there?)"
            )
        );
    }
}
