//! Client TLS: the `tls` table every client component takes:
//!
//! ```toml
//! tls = { ca_file = "ca.pem", cert_file = "client.pem", key_file = "client.key", server_name = "broker.local" }
//! ```
//!
//! - `ca_file`: PEM certificates to trust for the server; without it, the
//!   system's trust store.
//! - `cert_file` + `key_file`: a PEM client certificate (chain) and its
//!   private key (PKCS#8, PKCS#1 or SEC1), for mutual TLS; both or neither.
//! - `server_name`: the name the server's certificate must carry; without
//!   it, the host of the component's URL: for a peer reached by IP address
//!   whose certificate names it by DNS name. HTTP and gRPC clients also send
//!   it as SNI; the `mqtt` source sends the URL's host.
//!
//! rustls with the ring provider, TLS 1.2 and 1.3 only. HTTP and gRPC
//! clients dial through `client_connector.rs` and reload the files when
//! they change (`client_reload.rs`).

use crate::Problem;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Why a `tls` table is refused by a build without TLS.
pub const NOT_BUILT_IN: &str = "this build has no TLS support (the `tls` feature)";

/// Problems with the `tls` table of a component that sends to `url`: the
/// table's own, a table with a plain `http://` URL, or a table in a build
/// without TLS.
pub fn validate_client_table(tls: Option<&ClientTls>, url: &str) -> Vec<Problem> {
    let Some(tls) = tls else {
        return Vec::new();
    };
    if !cfg!(feature = "tls") {
        return vec![Problem::new("tls", NOT_BUILT_IN)];
    }
    let mut p = tls.validate("tls");
    if url
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    {
        p.push(Problem::new(
            "tls",
            format!("{url} is plain HTTP: use https:// for TLS"),
        ));
    }
    p
}

impl ClientTls {
    /// Problems under `key` (`tls`), without touching the files.
    pub fn validate(&self, key: &str) -> Vec<Problem> {
        let mut p = Vec::new();
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => p.push(Problem::new(
                format!("{key}.key_file"),
                "cert_file is set: expected key_file with the certificate's private key",
            )),
            (None, Some(_)) => p.push(Problem::new(
                format!("{key}.cert_file"),
                "key_file is set: expected cert_file with the client certificate",
            )),
            _ => {}
        }
        if self.server_name.as_deref() == Some("") {
            p.push(Problem::new(
                format!("{key}.server_name"),
                "expected a DNS name or an IP address, got an empty string",
            ));
        }
        p
    }

    /// Reads the files into a rustls client config (paths relative to
    /// `config_dir`).
    ///
    /// # Errors
    /// A file that cannot be read or holds no usable PEM, a key that does
    /// not fit the certificate; each names the key and the file.
    #[cfg(feature = "tls")]
    pub fn client_config(
        &self,
        key: &str,
        config_dir: &std::path::Path,
    ) -> Result<rustls::ClientConfig, Problem> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let path = |p: &PathBuf| config_dir.join(p);
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(ca) => {
                let ca = path(ca);
                let certs = CertificateDer::pem_file_iter(&ca)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| {
                        Problem::new(format!("{key}.ca_file"), format!("{}: {e}", ca.display()))
                    })?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(Problem::new(
                        format!("{key}.ca_file"),
                        format!("{}: expected PEM certificates, found none", ca.display()),
                    ));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(Problem::new(
                        format!("{key}.ca_file"),
                        "the system has no trusted certificates; set ca_file",
                    ));
                }
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Problem::new(key, e.to_string()))?;
        let builder = match &self.server_name {
            None => builder.with_root_certificates(roots),
            Some(name) => {
                let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
                    Problem::new(format!("{key}.server_name"), format!("{name:?}: {e}"))
                })?;
                let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    std::sync::Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| Problem::new(format!("{key}.ca_file"), e.to_string()))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(std::sync::Arc::new(verify::NamedServer {
                        inner,
                        name,
                    }))
            }
        };
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(private)) => {
                let cert = path(cert);
                let private = path(private);
                let chain = CertificateDer::pem_file_iter(&cert)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| {
                        Problem::new(
                            format!("{key}.cert_file"),
                            format!("{}: {e}", cert.display()),
                        )
                    })?;
                if chain.is_empty() {
                    return Err(Problem::new(
                        format!("{key}.cert_file"),
                        format!("{}: expected a PEM certificate, found none", cert.display()),
                    ));
                }
                let pk = PrivateKeyDer::from_pem_file(&private).map_err(|e| {
                    Problem::new(
                        format!("{key}.key_file"),
                        format!("{}: {e}", private.display()),
                    )
                })?;
                builder.with_client_auth_cert(chain, pk).map_err(|e| {
                    let why = match e {
                        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                            "the key does not match the certificate".to_string()
                        }
                        e => e.to_string(),
                    };
                    Problem::new(
                        format!("{key}.key_file"),
                        format!("{} with {}: {why}", private.display(), cert.display()),
                    )
                })
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }
}

/// Verifies the server's certificate for a configured name instead of the
/// one connected to; everything else is webpki's ordinary verification.
#[cfg(feature = "tls")]
mod verify {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, Error, SignatureScheme};
    use std::sync::Arc;

    #[derive(Debug)]
    pub(super) struct NamedServer {
        pub inner: Arc<rustls::client::WebPkiServerVerifier>,
        pub name: ServerName<'static>,
    }

    impl ServerCertVerifier for NamedServer {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            _connected_to: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            self.inner
                .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn unreadable_or_empty_files_are_problems_naming_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty.pem"), "no certificates here\n").unwrap();
        let tls = ClientTls {
            ca_file: Some("missing.pem".into()),
            ..ClientTls::default()
        };
        let p = tls.client_config("tls", dir.path()).unwrap_err();
        assert_eq!(p.key, "tls.ca_file");
        assert!(p.message.contains("missing.pem"), "{}", p.message);
        let tls = ClientTls {
            ca_file: Some("empty.pem".into()),
            ..ClientTls::default()
        };
        let p = tls.client_config("tls", dir.path()).unwrap_err();
        assert_eq!(p.key, "tls.ca_file");
        assert!(
            p.message
                .ends_with("empty.pem: expected PEM certificates, found none"),
            "{}",
            p.message
        );
    }

    #[test]
    fn a_certificate_needs_its_key_and_names_must_not_be_empty() {
        let tls = ClientTls {
            key_file: Some("k.pem".into()),
            server_name: Some(String::new()),
            ..ClientTls::default()
        };
        let keys: Vec<String> = tls.validate("tls").into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["tls.cert_file", "tls.server_name"]);
    }
}
