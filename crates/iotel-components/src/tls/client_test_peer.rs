//! Test fixtures for TLS clients: a small PKI made with rcgen, and an
//! in-process HTTPS peer on a free loopback port that requires a client
//! certificate from the test CA, records who connected (the client
//! certificate's CN and serial) and what they sent, and answers 200.
//! Each connection carries one request, so every request is a new
//! handshake.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// A certificate authority that issues server and client certificates.
pub(crate) struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
#[derive(Clone)]
pub(crate) struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// Writes `NAME.pem` and `NAME.key` into `dir`; returns their paths.
    pub(crate) fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    fn server_config_parts(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        (chain, key)
    }
}

impl TestCa {
    pub(crate) fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate as `NAME` into `dir`.
    pub(crate) fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A server certificate for `dns` names, and 127.0.0.1 when `ip`.
    pub(crate) fn server(&self, dns: &[&str], ip: bool) -> Issued {
        let mut params =
            CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        if ip {
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate with this CN and serial.
    pub(crate) fn client(&self, cn: &str, serial: u8) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(vec![serial]));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A request as the peer saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub path: String,
    pub body: Bytes,
    /// The client certificate's CN, when it sent one.
    pub client_cn: Option<String>,
    /// The client certificate's serial, as lowercase hex.
    pub client_serial: Option<String>,
}

/// An HTTPS peer; see the module docs.
pub(crate) struct TlsPeer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The server's material; swapped by [`TlsPeer::set_cert`].
    config: Arc<Mutex<Arc<rustls::ServerConfig>>>,
    client_ca: Option<String>,
    /// Handshakes that failed, with rustls' reason.
    failed: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn server_config(cert: &Issued, client_ca: Option<&str>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let (chain, key) = cert.server_config_parts();
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The CN and serial of a DER certificate.
pub(crate) fn identity(der: &[u8]) -> (Option<String>, Option<String>) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .map(str::to_string);
    let serial = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    (cn, Some(serial))
}

impl TlsPeer {
    /// Serves with `cert`; requires a client certificate issued by
    /// `client_ca` when given.
    pub(crate) async fn start(cert: &Issued, client_ca: Option<&TestCa>) -> TlsPeer {
        Self::answering(cert, client_ca, Bytes::new()).await
    }

    /// As [`TlsPeer::start`], answering every request with `body`.
    pub(crate) async fn answering(
        cert: &Issued,
        client_ca: Option<&TestCa>,
        body: Bytes,
    ) -> TlsPeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client_ca = client_ca.map(|ca| ca.pem.clone());
        let config = Arc::new(Mutex::new(server_config(cert, client_ca.as_deref())));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (config, seen, failed) = (config.clone(), seen.clone(), failed.clone());
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = tokio_rustls::TlsAcceptor::from(config.lock().unwrap().clone());
                    let (seen, failed, answer) = (seen.clone(), failed.clone(), body.clone());
                    tokio::spawn(async move {
                        let tls = match acceptor.accept(tcp).await {
                            Ok(t) => t,
                            Err(e) => {
                                failed.lock().unwrap().push(e.to_string());
                                return;
                            }
                        };
                        let (cn, serial) = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map_or((None, None), |c| identity(c));
                        let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                            let seen = seen.clone();
                            let (cn, serial) = (cn.clone(), serial.clone());
                            let answer = answer.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let body: hyper::body::Incoming = body;
                                let body = body.collect().await.unwrap().to_bytes();
                                seen.lock().unwrap().push(Seen {
                                    path: parts.uri.path().to_string(),
                                    body,
                                    client_cn: cn,
                                    client_serial: serial,
                                });
                                Ok::<_, std::convert::Infallible>(crate::http_util::response(
                                    200,
                                    "application/json",
                                    answer,
                                ))
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .keep_alive(false)
                            .serve_connection(TokioIo::new(tls), svc)
                            .await;
                    });
                }
            }
        });
        TlsPeer {
            addr,
            seen,
            config,
            client_ca,
            failed,
            task,
        }
    }

    /// Serves with `cert` from the next connection on.
    pub(crate) fn set_cert(&self, cert: &Issued) {
        *self.config.lock().unwrap() = server_config(cert, self.client_ca.as_deref());
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn failed_handshakes(&self) -> Vec<String> {
        self.failed.lock().unwrap().clone()
    }
}
