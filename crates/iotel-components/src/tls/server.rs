//! Server TLS: the `tls` table of a receiver's listener:
//!
//! ```toml
//! tls = { cert_file = "server.pem", key_file = "server.key", ca_file = "ca.pem" }
//! ```
//!
//! - `cert_file` + `key_file`: the server's certificate chain (leaf first)
//!   and its private key (PKCS#8, PKCS#1 or SEC1), PEM.
//! - `ca_file`: PEM CA certificates client certificates must chain to.
//! - `verify_client`: require and verify a client certificate; default
//!   true when `ca_file` is set (mutual TLS), and it needs `ca_file`.
//! - `min_version`: `"1.2"` (default) or `"1.3"`; TLS 1.3 is preferred.
//! - `reload_interval`: how often the three files' modification times are
//!   checked (default 5s). A changed file is read again; new handshakes use
//!   the new material, open connections keep theirs. A reload that fails
//!   (a half-written file, bad PEM, a key that does not fit) keeps the old
//!   material, is logged naming the file and counted (`tls_reload_failed`).
//!
//! Exported per listener: `iotel_tls_cert_expiry_seconds{component_id,
//! file}`, the seconds until the `notAfter` of the server's leaf
//! certificate (`file` = cert_file) and of the earliest-expiring CA in
//! `ca_file`, updated at each check.
//!
//! A failed handshake (no client certificate, an unknown CA, an expired
//! certificate, garbage instead of a ClientHello, a handshake slower than
//! 10s) closes that connection only, counted as `tls_handshake_failed`
//! and logged with its reason (the 1st, 2nd, 4th, 8th…).
//!
//! Sessions are not resumed: each connection's handshake verifies the
//! client certificate against the CAs loaded then.
//!
//! A listener without a `tls` table on an address other than a loopback
//! one needs `plaintext = true` ([`validate_plaintext`]), and says so at
//! start ([`warn_plaintext`]).

use crate::Problem;
use iotel_engine::config::Duration;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Default: true when `ca_file` is set.
    #[serde(default)]
    pub verify_client: Option<bool>,
    #[serde(default = "default_min_version")]
    pub min_version: String,
    #[serde(default = "default_reload_interval")]
    pub reload_interval: Duration,
}

fn default_min_version() -> String {
    "1.2".into()
}

fn default_reload_interval() -> Duration {
    Duration(std::time::Duration::from_secs(5))
}

impl ServerTls {
    /// Whether clients must present a certificate that chains to `ca_file`.
    pub fn verifies_clients(&self) -> bool {
        self.verify_client.unwrap_or(self.ca_file.is_some())
    }

    /// Problems under `key` (`tls`), without touching the files.
    pub fn validate(&self, key: &str) -> Vec<Problem> {
        let mut p = Vec::new();
        if !cfg!(feature = "tls") {
            p.push(Problem::new(
                key,
                "this build has no TLS support (the `tls` feature)",
            ));
        }
        if self.verify_client == Some(true) && self.ca_file.is_none() {
            p.push(Problem::new(
                format!("{key}.ca_file"),
                "verify_client is true: expected ca_file with the CAs client certificates chain to",
            ));
        }
        if !matches!(self.min_version.as_str(), "1.2" | "1.3") {
            p.push(Problem::new(
                format!("{key}.min_version"),
                format!("expected \"1.2\" or \"1.3\", got {:?}", self.min_version),
            ));
        }
        if self.reload_interval.get() < std::time::Duration::from_secs(1) {
            p.push(Problem::new(
                format!("{key}.reload_interval"),
                "expected at least 1s",
            ));
        }
        p
    }
}

/// Problems with a listener's `tls` and `identity` tables together: an
/// identity needs a listener that verifies client certificates.
pub fn validate_listener(
    tls: Option<&ServerTls>,
    identity: Option<&super::identity::IdentityConfig>,
) -> Vec<Problem> {
    let mut p = tls.map(|t| t.validate("tls")).unwrap_or_default();
    if let Some(i) = identity {
        p.extend(i.validate("identity"));
        if !tls.is_some_and(ServerTls::verifies_clients) {
            p.push(Problem::new(
                "identity",
                "identities come from client certificates: expected tls with a ca_file",
            ));
        }
    }
    p
}

/// The problem with a listener on `address` without a `tls` table (`tls`
/// false): on any address but a loopback one it needs `plaintext = true`,
/// the explicit opt-in to unencrypted connections. `key` is the address's
/// key path (`address`, `http_address`). A `tls` table with `plaintext =
/// true` contradicts itself.
pub fn validate_plaintext(
    key: &str,
    address: std::net::SocketAddr,
    tls: bool,
    plaintext: bool,
) -> Vec<Problem> {
    if tls && plaintext {
        return vec![Problem::new(
            "plaintext",
            "expected either a tls table or plaintext = true, not both",
        )];
    }
    if tls || plaintext || address.ip().is_loopback() {
        return Vec::new();
    }
    vec![Problem::new(
        key,
        format!(
            "listening in plaintext on {address}: add a tls table, or set plaintext = true to \
             accept unencrypted connections"
        ),
    )]
}

/// Logs the warning of a listener that accepts unencrypted connections
/// from other hosts (`plaintext = true` on an address that is not a
/// loopback one); nothing for a loopback address or one with TLS.
pub fn warn_plaintext(component: &str, address: std::net::SocketAddr, tls: bool) {
    if tls || address.ip().is_loopback() {
        return;
    }
    tracing::warn!(
        component,
        "listening in plaintext on {address} (plaintext = true): anyone on the network can read \
         and forge what is sent here; add a tls table to encrypt"
    );
}

#[cfg(feature = "tls")]
pub use imp::*;

#[cfg(feature = "tls")]
mod imp {
    use super::ServerTls;
    use crate::http_util::PeerIdentity;
    use crate::{BuildContext, Problem};
    use iotel_engine::{ComponentMetrics, Gauge, Shutdown};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
    use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
    use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
    use rustls::sign::CertifiedKey;
    use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, RwLock};
    use std::time::SystemTime;
    use tokio::net::TcpStream;

    /// A handshake slower than this is abandoned.
    pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

    /// What the files hold, read and checked.
    struct Material {
        key: Arc<CertifiedKey>,
        verifier: Option<Arc<dyn ClientCertVerifier>>,
        /// Unix seconds of the leaf's and the earliest CA's `notAfter`.
        cert_not_after: i64,
        ca_not_after: Option<i64>,
    }

    #[derive(Debug, Clone)]
    struct Files {
        key: String,
        cert: PathBuf,
        private: PathBuf,
        ca: Option<PathBuf>,
        verify: bool,
    }

    impl Files {
        fn paths(&self) -> impl Iterator<Item = &Path> {
            [Some(&self.cert), Some(&self.private), self.ca.as_ref()]
                .into_iter()
                .flatten()
                .map(PathBuf::as_path)
        }

        fn mtimes(&self) -> Vec<Option<SystemTime>> {
            self.paths()
                .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
                .collect()
        }

        fn load(
            &self,
            provider: &Arc<rustls::crypto::CryptoProvider>,
        ) -> Result<Material, Problem> {
            let key = &self.key;
            let certs = |field: &str,
                         path: &Path|
             -> Result<Vec<CertificateDer<'static>>, Problem> {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| {
                        Problem::new(format!("{key}.{field}"), format!("{}: {e}", path.display()))
                    })?;
                if certs.is_empty() {
                    return Err(Problem::new(
                        format!("{key}.{field}"),
                        format!("{}: expected PEM certificates, found none", path.display()),
                    ));
                }
                Ok(certs)
            };
            let chain = certs("cert_file", &self.cert)?;
            let cert_not_after = not_after(&chain[0]).map_err(|e| {
                Problem::new(
                    format!("{key}.cert_file"),
                    format!("{}: {e}", self.cert.display()),
                )
            })?;
            let private = PrivateKeyDer::from_pem_file(&self.private).map_err(|e| {
                Problem::new(
                    format!("{key}.key_file"),
                    format!("{}: {e}", self.private.display()),
                )
            })?;
            let signing = provider
                .key_provider
                .load_private_key(private)
                .map_err(|e| {
                    Problem::new(
                        format!("{key}.key_file"),
                        format!("{}: {e}", self.private.display()),
                    )
                })?;
            let certified = CertifiedKey::new(chain, signing);
            certified.keys_match().map_err(|e| {
                Problem::new(
                    format!("{key}.key_file"),
                    format!(
                        "{} does not fit {}: {e}",
                        self.private.display(),
                        self.cert.display()
                    ),
                )
            })?;
            let (verifier, ca_not_after) = match &self.ca {
                Some(ca) if self.verify => {
                    let cas = certs("ca_file", ca)?;
                    let mut roots = rustls::RootCertStore::empty();
                    let mut earliest: Option<i64> = None;
                    for c in &cas {
                        if let Ok(t) = not_after(c) {
                            earliest = Some(earliest.map_or(t, |e| e.min(t)));
                        }
                    }
                    let (added, _) = roots.add_parsable_certificates(cas);
                    if added == 0 {
                        return Err(Problem::new(
                            format!("{key}.ca_file"),
                            format!("{}: no usable CA certificate", ca.display()),
                        ));
                    }
                    let v = WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| {
                        Problem::new(format!("{key}.ca_file"), format!("{}: {e}", ca.display()))
                    })?;
                    (Some(v), earliest)
                }
                _ => (None, None),
            };
            Ok(Material {
                key: Arc::new(certified),
                verifier,
                cert_not_after,
                ca_not_after,
            })
        }
    }

    /// The gauge of certificate expiry, for listeners and clients alike.
    pub const CERT_EXPIRY: &str = "iotel_tls_cert_expiry_seconds";
    pub const CERT_EXPIRY_HELP: &str = "Seconds until the notAfter of a TLS certificate a \
        component presents (file = its cert_file) and of the earliest-expiring CA in its ca_file.";

    /// Unix seconds of the `notAfter` of the first certificate in a PEM
    /// file (`leaf`), or of the earliest-expiring one; `None` when the file
    /// holds no certificate that parses.
    pub(crate) fn pem_not_after(path: &Path, leaf: bool) -> Option<i64> {
        let certs = CertificateDer::pem_file_iter(path)
            .ok()?
            .filter_map(Result::ok)
            .take(if leaf { 1 } else { usize::MAX });
        certs.filter_map(|c| not_after(&c).ok()).min()
    }

    /// Unix seconds of a certificate's `notAfter`.
    fn not_after(der: &CertificateDer<'_>) -> Result<i64, String> {
        let (_, c) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        Ok(c.validity().not_after.timestamp())
    }

    /// The server certificate new handshakes get; swapped on reload.
    #[derive(Debug)]
    struct Resolver(RwLock<Arc<CertifiedKey>>);

    impl ResolvesServerCert for Resolver {
        fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(read(&self.0).clone())
        }
    }

    /// Delegates to the current webpki verifier; swapped on reload. It
    /// sends no CA names in its certificate request (they cannot be lent
    /// out of a swappable value): clients present their one certificate.
    #[derive(Debug)]
    struct SwapVerifier(RwLock<Arc<dyn ClientCertVerifier>>);

    impl SwapVerifier {
        fn current(&self) -> Arc<dyn ClientCertVerifier> {
            read(&self.0).clone()
        }
    }

    impl ClientCertVerifier for SwapVerifier {
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            &[]
        }

        fn verify_client_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            now: UnixTime,
        ) -> Result<ClientCertVerified, Error> {
            self.current()
                .verify_client_cert(end_entity, intermediates, now)
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, Error> {
            self.current().verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, Error> {
            self.current().verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.current().supported_verify_schemes()
        }
    }

    fn read<T: Clone>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
        l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write<T>(l: &RwLock<T>, v: T) {
        *l.write().unwrap_or_else(std::sync::PoisonError::into_inner) = v;
    }

    /// A listener's TLS: the acceptor, the material behind it and what
    /// watches its files. Cheap to clone.
    #[derive(Clone)]
    pub struct TlsListener {
        acceptor: tokio_rustls::TlsAcceptor,
        inner: Arc<Inner>,
    }

    impl std::fmt::Debug for TlsListener {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("TlsListener")
                .field("cert_file", &self.inner.files.cert)
                .finish_non_exhaustive()
        }
    }

    struct Inner {
        files: Files,
        provider: Arc<rustls::crypto::CryptoProvider>,
        resolver: Arc<Resolver>,
        verifier: Option<Arc<SwapVerifier>>,
        interval: std::time::Duration,
        metrics: ComponentMetrics,
        cert_expiry: Gauge,
        ca_expiry: Option<Gauge>,
        not_after: RwLock<(i64, Option<i64>)>,
    }

    impl ServerTls {
        /// Reads the files and makes the acceptor; `alpn` lists the
        /// protocols the listener speaks (`h2`, `http/1.1`), in order of
        /// preference.
        ///
        /// # Errors
        /// A file that cannot be read or holds no usable PEM, a key that
        /// does not fit the certificate; each names the key and the file.
        pub fn build(
            &self,
            key: &str,
            cx: &BuildContext,
            alpn: &[&[u8]],
        ) -> Result<TlsListener, Problem> {
            let files = Files {
                key: key.to_string(),
                cert: cx.resolve(&self.cert_file),
                private: cx.resolve(&self.key_file),
                ca: self.ca_file.as_ref().map(|p| cx.resolve(p)),
                verify: self.verifies_clients(),
            };
            if files.verify && files.ca.is_none() {
                return Err(Problem::new(
                    format!("{key}.ca_file"),
                    "verify_client is true: expected ca_file",
                ));
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let material = files.load(&provider)?;
            let versions: &[&'static rustls::SupportedProtocolVersion] =
                if self.min_version == "1.3" {
                    &[&rustls::version::TLS13]
                } else {
                    &[&rustls::version::TLS13, &rustls::version::TLS12]
                };
            let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(|e| Problem::new(key, e.to_string()))?;
            let resolver = Arc::new(Resolver(RwLock::new(material.key)));
            let verifier = material
                .verifier
                .map(|v| Arc::new(SwapVerifier(RwLock::new(v))));
            let mut config = match &verifier {
                Some(v) => builder.with_client_cert_verifier(v.clone()),
                None => builder.with_no_client_auth(),
            }
            .with_cert_resolver(resolver.clone());
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            // No resumption: every connection's client certificate is
            // verified against the CAs of now, and presents the server
            // certificate of now.
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
            let registry = cx.metrics.registry();
            let gauge = |file: &Path| {
                registry.gauge(
                    CERT_EXPIRY,
                    CERT_EXPIRY_HELP,
                    &[
                        ("component_id", &cx.id),
                        ("file", &file.display().to_string()),
                    ],
                )
            };
            let inner = Inner {
                cert_expiry: gauge(&files.cert),
                ca_expiry: files.ca.as_deref().filter(|_| files.verify).map(gauge),
                files,
                provider,
                resolver,
                verifier,
                interval: self.reload_interval.get(),
                metrics: cx.metrics.clone(),
                not_after: RwLock::new((material.cert_not_after, material.ca_not_after)),
            };
            inner.export_expiry();
            Ok(TlsListener {
                acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
                inner: Arc::new(inner),
            })
        }
    }

    impl Inner {
        fn export_expiry(&self) {
            let now = jiff::Timestamp::now().as_second();
            let (cert, ca) = *read(&self.not_after);
            #[allow(clippy::cast_precision_loss)]
            self.cert_expiry.set((cert - now) as f64);
            if let (Some(g), Some(ca)) = (&self.ca_expiry, ca) {
                #[allow(clippy::cast_precision_loss)]
                g.set((ca - now) as f64);
            }
        }

        /// Reads the files again; on success new handshakes use them.
        fn reload(&self) -> Result<(), Problem> {
            let m = self.files.load(&self.provider)?;
            write(&self.resolver.0, m.key);
            if let (Some(swap), Some(v)) = (&self.verifier, m.verifier) {
                write(&swap.0, v);
            }
            write(&self.not_after, (m.cert_not_after, m.ca_not_after));
            Ok(())
        }
    }

    impl TlsListener {
        /// Checks the files every `reload_interval` until `shutdown` and
        /// reloads them when one changed; updates the expiry gauges.
        pub async fn watch(self, mut shutdown: Shutdown) {
            let inner = &self.inner;
            let mut seen = inner.files.mtimes();
            loop {
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(inner.interval) => {}
                }
                let now = inner.files.mtimes();
                if now != seen {
                    match inner.reload() {
                        Ok(()) => {
                            seen = now;
                            tracing::info!(
                                component = %inner.metrics.id(),
                                "reloaded the TLS certificate {} (new connections use it)",
                                inner.files.cert.display()
                            );
                        }
                        Err(p) => {
                            // Kept as not seen: tried again at the next
                            // check, when a half-written file is complete.
                            let errors = inner.metrics.errors("tls_reload_failed");
                            errors.inc();
                            if errors.get().is_power_of_two() {
                                tracing::warn!(
                                    component = %inner.metrics.id(),
                                    "reloading TLS material failed, keeping the previous: {}: {} \
                                     (failed reloads so far: {})",
                                    p.key,
                                    p.message,
                                    errors.get()
                                );
                            }
                        }
                    }
                }
                inner.export_expiry();
            }
        }

        /// Checks the files now, as [`TlsListener::watch`] does.
        ///
        /// # Errors
        /// What is wrong with the files; the previous material stays.
        pub fn reload_now(&self) -> Result<(), Problem> {
            self.inner.reload()
        }

        /// The handshake on an accepted connection, within
        /// [`HANDSHAKE_TIMEOUT`]: the stream and the client certificate's
        /// identity, or `None` (counted and logged) when it fails.
        pub async fn accept(
            &self,
            stream: TcpStream,
            peer: SocketAddr,
        ) -> Option<(
            tokio_rustls::server::TlsStream<TcpStream>,
            Option<PeerIdentity>,
        )> {
            let failed = |reason: String| {
                let errors = self.inner.metrics.errors("tls_handshake_failed");
                errors.inc();
                if errors.get().is_power_of_two() {
                    tracing::warn!(
                        component = %self.inner.metrics.id(),
                        "TLS handshake with {peer} failed: {reason} (failed handshakes so far: {})",
                        errors.get()
                    );
                }
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
                Err(_) => {
                    failed(format!("no handshake within {HANDSHAKE_TIMEOUT:?}"));
                    None
                }
                Ok(Err(e)) => {
                    failed(e.to_string());
                    None
                }
                Ok(Ok(s)) => {
                    let identity = s
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| super::super::identity::peer_identity(c));
                    Some((s, identity))
                }
            }
        }
    }
}
