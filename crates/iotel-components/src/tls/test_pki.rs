//! Certificates for tests: a CA, server and client leaves with chosen
//! names, validity, key usages and serials, and a TLS client.
#![allow(clippy::unwrap_used)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Ca {
    pub pem: String,
    /// Appended to the leaves it issues (an intermediate's own PEM), as
    /// `iotel certs` writes them.
    chain: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2090, 1, 1);
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            chain: String::new(),
            issuer: Issuer::new(p, key),
        }
    }

    /// An intermediate CA under this one.
    pub fn intermediate(&self, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2090, 1, 1);
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Ca {
            pem: cert.pem(),
            chain: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A leaf; `spiffe` is a URI SAN, `usage` its extended key usages.
    pub fn leaf(&self, leaf: Leaf<'_>) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, leaf.cn);
        if let Some(uri) = leaf.spiffe {
            p.subject_alt_names
                .push(SanType::URI(uri.to_string().try_into().unwrap()));
        }
        p.subject_alt_names
            .push(SanType::DnsName("localhost".try_into().unwrap()));
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = leaf.usage.to_vec();
        p.not_before = leaf.not_before;
        p.not_after = leaf.not_after;
        p.serial_number = Some(SerialNumber::from_slice(leaf.serial));
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: format!("{}{}", cert.pem(), self.chain),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn client(&self, cn: &str, spiffe: Option<&str>, serial: &[u8]) -> Issued {
        self.leaf(Leaf {
            cn,
            spiffe,
            serial,
            ..Leaf::default()
        })
    }

    pub fn server(&self, serial: &[u8]) -> Issued {
        self.leaf(Leaf {
            cn: "localhost",
            usage: &[ExtendedKeyUsagePurpose::ServerAuth],
            serial,
            ..Leaf::default()
        })
    }
}

pub struct Leaf<'a> {
    pub cn: &'a str,
    pub spiffe: Option<&'a str>,
    pub usage: &'a [ExtendedKeyUsagePurpose],
    pub not_before: time::OffsetDateTime,
    pub not_after: time::OffsetDateTime,
    pub serial: &'a [u8],
}

impl Default for Leaf<'_> {
    fn default() -> Self {
        Leaf {
            cn: "dev-1",
            spiffe: None,
            usage: &[ExtendedKeyUsagePurpose::ClientAuth],
            not_before: rcgen::date_time_ymd(2021, 1, 1),
            not_after: rcgen::date_time_ymd(2089, 1, 1),
            serial: &[0x01],
        }
    }
}

pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// Writes `NAME.pem` and `NAME.key` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

/// A rustls client trusting `ca_pem`, with `cert` as its certificate.
pub fn client_config(ca_pem: &str, cert: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match cert {
        None => b.with_no_client_auth(),
        Some(c) => {
            let chain = CertificateDer::pem_slice_iter(c.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    })
}

/// An HTTP/1 connection over TLS to `addr`: the request sender and the
/// serial (hex) of the server's certificate.
pub async fn connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<(
    hyper::client::conn::http1::SendRequest<crate::http_util::Body>,
    String,
)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let serial = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(crate::tls::identity::peer_identity)
        .map(|i| i.serial_hex)
        .unwrap_or_default();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok((sender, serial))
}

/// Sends one request on a connection: the status and body, or the error
/// (a TLS alert from the server shows here with TLS 1.3).
pub async fn request(
    sender: &mut hyper::client::conn::http1::SendRequest<crate::http_util::Body>,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, String), String> {
    use http_body_util::BodyExt;
    let req = http::Request::post(path)
        .header(http::header::HOST, "localhost")
        // What OTLP/HTTP needs; the native protocol does not look.
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .body(crate::http_util::Body::new(body.into()))
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| {
        use std::error::Error;
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        text
    })?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

/// Connects and sends one request; any failure as text.
pub async fn connect_and_send(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, String), String> {
    let (mut s, _) = connect(addr, config).await.map_err(|e| e.to_string())?;
    request(&mut s, path, body).await
}
