//! The client TLS material a component connects with, reloaded when its
//! files change.
//!
//! A [`ClientTlsSource`] holds the current `rustls::ClientConfig` behind a
//! lock; every new connection asks for it ([`ClientTlsSource::current`]).
//! At most once per check interval (a few seconds) that call compares the
//! modification times and sizes of `ca_file`, `cert_file` and `key_file`
//! with those of the material in use; when one changed, the whole config is
//! rebuilt from the files and swapped in. Rebuilding (rather than swapping
//! only the certified key) also swaps the trust roots and starts a fresh
//! session-resumption cache, so the next connection makes a full handshake
//! and presents the new certificate: a resumed TLS 1.3 session would carry
//! the old identity on. Connections already open keep the material they
//! were made with until they close.
//!
//! A reload that fails (a half-written file, a key that does not fit the
//! certificate) keeps the material in use, logs what is wrong, and counts
//! an error `tls_reload_failed` on the component; the files are tried
//! again once they change again.
//!
//! With the component's metrics, `iotel_tls_cert_expiry_seconds{
//! component_id, file}` tells the seconds until the `notAfter` of the
//! client certificate (`file` = cert_file) and of the earliest-expiring CA
//! in `ca_file`, as listeners export theirs; set on load and on each
//! reload, and brought up to date at each check.
//!
//! Without a `tls` table the source trusts the system's roots, read on the
//! first `https` connection: a component that only speaks plain HTTP never
//! reads them.

use super::ClientTls;
use crate::Problem;
use iotel_engine::ComponentMetrics;
use rustls::ClientConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How often, at most, the files are checked for changes; in tests, at
/// every connection.
const CHECK_EVERY: Duration = if cfg!(test) {
    Duration::ZERO
} else {
    Duration::from_secs(5)
};

/// What identifies a version of a file: its modification time and size.
type Stamp = Option<(SystemTime, u64)>;

/// A component's client TLS material; see the module docs.
#[derive(Debug)]
pub struct ClientTlsSource {
    /// The `tls` table, its key path (`tls`) and the directory its paths
    /// are relative to; `None`: the system's roots, nothing to reload.
    files: Option<Files>,
    /// ALPN protocols offered (`h2` for gRPC; none for HTTP/1).
    alpn: Vec<Vec<u8>>,
    /// The config in use; `None` until the system roots are first needed.
    current: RwLock<Option<Arc<ClientConfig>>>,
    /// When the files were last checked, and their stamps then.
    checked: Mutex<Checked>,
    check_every: Duration,
    /// Counts failed reloads (`tls_reload_failed`); absent in tests that
    /// build a source alone.
    metrics: Option<ComponentMetrics>,
    /// The expiry gauges of `cert_file` and `ca_file`, with the `notAfter`
    /// (Unix seconds) of the material in use.
    expiry: Mutex<Vec<(iotel_engine::Gauge, i64)>>,
}

#[derive(Debug)]
struct Files {
    tls: ClientTls,
    key: String,
    dir: PathBuf,
}

#[derive(Debug)]
struct Checked {
    at: Instant,
    stamps: Vec<Stamp>,
}

impl Files {
    fn paths(&self) -> Vec<PathBuf> {
        [&self.tls.ca_file, &self.tls.cert_file, &self.tls.key_file]
            .into_iter()
            .flatten()
            .map(|p| self.dir.join(p))
            .collect()
    }

    fn stamps(&self) -> Vec<Stamp> {
        self.paths().iter().map(|p| stamp(p)).collect()
    }

    fn load(&self, alpn: &[Vec<u8>]) -> Result<ClientConfig, Problem> {
        let mut config = self.tls.client_config(&self.key, &self.dir)?;
        config.alpn_protocols = alpn.to_vec();
        Ok(config)
    }
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl ClientTlsSource {
    /// The material of a `tls` table (under `key`, paths relative to
    /// `config_dir`), read now; failed reloads are counted on `metrics`.
    ///
    /// # Errors
    /// What [`ClientTls::client_config`] finds wrong with the files.
    pub fn load(
        tls: &ClientTls,
        key: &str,
        config_dir: &Path,
        alpn: Vec<Vec<u8>>,
        metrics: Option<ComponentMetrics>,
    ) -> Result<Self, Problem> {
        let files = Files {
            tls: tls.clone(),
            key: key.to_string(),
            dir: config_dir.to_path_buf(),
        };
        // Stamped before reading, so a change during the read is seen.
        let stamps = files.stamps();
        let config = files.load(&alpn)?;
        let source = Self {
            files: Some(files),
            alpn,
            current: RwLock::new(Some(Arc::new(config))),
            checked: Mutex::new(Checked {
                at: Instant::now(),
                stamps,
            }),
            check_every: CHECK_EVERY,
            metrics,
            expiry: Mutex::new(Vec::new()),
        };
        if let Some(files) = &source.files {
            source.note_expiry(files);
        }
        Ok(source)
    }

    /// The system's trust roots, read on first use; no client certificate.
    pub fn system(alpn: Vec<Vec<u8>>) -> Self {
        Self {
            files: None,
            alpn,
            current: RwLock::new(None),
            checked: Mutex::new(Checked {
                at: Instant::now(),
                stamps: Vec::new(),
            }),
            check_every: CHECK_EVERY,
            metrics: None,
            expiry: Mutex::new(Vec::new()),
        }
    }

    /// Checks the files at most this often (tests check on every call).
    #[must_use]
    pub fn with_check_interval(mut self, every: Duration) -> Self {
        self.check_every = every;
        self
    }

    /// The name the server's certificate must carry, when the table sets
    /// one.
    pub fn server_name(&self) -> Option<&str> {
        self.files.as_ref()?.tls.server_name.as_deref()
    }

    /// The config for a new connection, reloaded first if its files
    /// changed.
    ///
    /// # Errors
    /// Only without a `tls` table: the system has no usable trust roots.
    pub fn current(&self) -> Result<Arc<ClientConfig>, String> {
        match &self.files {
            Some(files) => self.reload_if_changed(files),
            None => {
                if let Some(c) = self.read().as_ref() {
                    return Ok(c.clone());
                }
                let mut config = ClientTls::default()
                    .client_config("tls", Path::new("."))
                    .map_err(|p| p.message)?;
                config.alpn_protocols = self.alpn.clone();
                let config = Arc::new(config);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(config.clone());
                Ok(config)
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<Arc<ClientConfig>>> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    fn reload_if_changed(&self, files: &Files) -> Result<Arc<ClientConfig>, String> {
        {
            let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if now.duration_since(checked.at) >= self.check_every {
                checked.at = now;
                let stamps = files.stamps();
                if stamps != checked.stamps {
                    checked.stamps = stamps;
                    self.reload(files);
                }
                self.export_expiry();
            }
        }
        self.read()
            .clone()
            .ok_or_else(|| "no TLS material loaded".to_string())
    }

    fn reload(&self, files: &Files) {
        let shown = files
            .paths()
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match files.load(&self.alpn) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(config));
                self.note_expiry(files);
                tracing::info!(
                    component = self.component(),
                    "reloaded the TLS material from {shown}; new connections use it"
                );
            }
            Err(p) => {
                if let Some(m) = &self.metrics {
                    m.error("tls_reload_failed");
                }
                tracing::warn!(
                    component = self.component(),
                    "reloading the TLS material failed, keeping the material in use: {}: {}",
                    p.key,
                    p.message
                );
            }
        }
    }

    /// Reads the `notAfter` of `cert_file`'s leaf and of `ca_file`'s
    /// earliest CA for the expiry gauges, and sets them.
    fn note_expiry(&self, files: &Files) {
        let Some(m) = &self.metrics else {
            return;
        };
        let mut noted = Vec::new();
        for (path, leaf) in [(&files.tls.cert_file, true), (&files.tls.ca_file, false)] {
            let Some(path) = path.as_ref().map(|p| files.dir.join(p)) else {
                continue;
            };
            if let Some(t) = super::server::pem_not_after(&path, leaf) {
                let file = path.display().to_string();
                let labels = [("component_id", m.id()), ("file", file.as_str())];
                let g = m.registry().gauge(
                    super::server::CERT_EXPIRY,
                    super::server::CERT_EXPIRY_HELP,
                    &labels,
                );
                noted.push((g, t));
            }
        }
        *self.expiry.lock().unwrap_or_else(|e| e.into_inner()) = noted;
        self.export_expiry();
    }

    fn export_expiry(&self) {
        let now = jiff::Timestamp::now().as_second();
        for (g, t) in self.expiry.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            #[allow(clippy::cast_precision_loss)]
            g.set((t - now) as f64);
        }
    }

    fn component(&self) -> &str {
        self.metrics.as_ref().map_or("-", |m| m.id())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::tls::client_test_peer::TestCa;

    fn source(dir: &Path) -> ClientTlsSource {
        let tls = ClientTls {
            ca_file: Some("ca.pem".into()),
            cert_file: Some("c.pem".into()),
            key_file: Some("c.key".into()),
            server_name: None,
        };
        ClientTlsSource::load(&tls, "tls", dir, vec![b"h2".to_vec()], None).unwrap()
    }

    #[test]
    fn changed_files_are_read_again_only_once_the_check_interval_passed() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("ca");
        ca.write(dir.path(), "ca.pem");
        ca.client("a", 1).write(dir.path(), "c");
        let hourly = source(dir.path()).with_check_interval(Duration::from_secs(3600));
        let every = source(dir.path());
        let first = hourly.current().unwrap();
        assert_eq!(first.alpn_protocols, [b"h2".to_vec()]);
        ca.client("a", 2).write(dir.path(), "c");
        assert!(Arc::ptr_eq(&first, &hourly.current().unwrap()));
        let before = every.read().clone().unwrap();
        let after = every.current().unwrap();
        assert!(!Arc::ptr_eq(&before, &after));
        assert_eq!(after.alpn_protocols, [b"h2".to_vec()]);
        // Unchanged since: the same config.
        assert!(Arc::ptr_eq(&after, &every.current().unwrap()));
    }
}
