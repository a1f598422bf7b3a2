//! Device identities from client certificates: a receiver's `identity`
//! table binds what arrives on a mutual-TLS connection to the identity in
//! the peer's verified certificate.
//!
//! ```toml
//! identity = { trust_domain = "iotel.test", policy = "reject", deny_list = "revoked.txt" }
//! ```
//!
//! - The identity: with `from = "spiffe"` (default), the last segment of
//!   the certificate's SPIFFE id when it is `spiffe://TD/device/ID` (put in
//!   `label`, default `device_id`) or `spiffe://TD/gateway/ID` (put in
//!   `gateway_label`, default `gateway_id`), else the subject's CN (in
//!   `label`); with `from = "cn"`, always the CN.
//! - `trust_domain`: the certificate must carry a SPIFFE id in it; another
//!   (or none) is refused with 403 `wrong_trust_domain`.
//! - A record without the label gets the identity. One that names another
//!   is, with `policy = "reject"` (default), refused with its whole batch
//!   (403 `identity_mismatch`); with `policy = "overwrite"`, given the
//!   identity and counted (`identity_overwritten`).
//! - `deny_list`: a file of revoked device ids and certificate serials (hex,
//!   colons allowed, compared as numbers), one a line, `#` comments. Its
//!   modification time is checked at each request and it is read again when
//!   it changed; a file that cannot be read keeps the previous list (logged,
//!   counted `deny_list_reload_failed`). A listed peer is refused with 403
//!   `revoked`.
//! - A request without a verified client certificate: 403 `no_identity`.

use crate::Problem;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityFrom {
    #[default]
    Spiffe,
    Cn,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMismatch {
    #[default]
    Reject,
    Overwrite,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    #[serde(default = "default_label")]
    pub label: String,
    #[serde(default = "default_gateway_label")]
    pub gateway_label: String,
    #[serde(default)]
    pub from: IdentityFrom,
    #[serde(default)]
    pub policy: OnMismatch,
    #[serde(default)]
    pub trust_domain: Option<String>,
    #[serde(default)]
    pub deny_list: Option<PathBuf>,
}

fn default_label() -> String {
    "device_id".into()
}

fn default_gateway_label() -> String {
    "gateway_id".into()
}

impl IdentityConfig {
    /// Problems under `key` (`identity`).
    pub fn validate(&self, key: &str) -> Vec<Problem> {
        let mut p = Vec::new();
        for (k, v) in [
            ("label", &self.label),
            ("gateway_label", &self.gateway_label),
        ] {
            if v.is_empty() {
                p.push(Problem::new(format!("{key}.{k}"), "must not be empty"));
            }
        }
        if let Some(td) = &self.trust_domain
            && (td.is_empty() || td.contains('/') || td.contains(':'))
        {
            p.push(Problem::new(
                format!("{key}.trust_domain"),
                format!("expected a trust domain name like \"iotel.test\", got {td:?}"),
            ));
        }
        p
    }
}

/// Splits `spiffe://TD/path` into the trust domain and the path.
pub fn split_spiffe(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("spiffe://")?;
    let (td, path) = rest.split_once('/').unwrap_or((rest, ""));
    Some((td, path))
}

/// A serial number or hex string as compared: lowercase, no colons, no
/// leading zeros.
pub fn normalize_serial(s: &str) -> String {
    let hex: String = s
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hex.trim_start_matches('0').to_string()
}

#[cfg(feature = "tls")]
pub use imp::*;

#[cfg(feature = "tls")]
mod imp {
    use super::{IdentityConfig, IdentityFrom, OnMismatch, normalize_serial, split_spiffe};
    use crate::http_util::PeerIdentity;
    use crate::{BuildContext, Problem};
    use iotel_engine::{ComponentMetrics, Counter};
    use iotel_model::{Events, Labels};
    use rustls::pki_types::CertificateDer;
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::time::SystemTime;

    /// The identity in a verified leaf certificate.
    pub fn peer_identity(der: &CertificateDer<'_>) -> Option<PeerIdentity> {
        let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
        let common_name = c
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let spiffe_id = c.subject_alternative_name().ok().flatten().and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                x509_parser::extensions::GeneralName::URI(u) if u.starts_with("spiffe://") => {
                    Some((*u).to_string())
                }
                _ => None,
            })
        });
        let serial_hex = c.raw_serial().iter().fold(String::new(), |mut s, b| {
            use std::fmt::Write;
            let _ = write!(s, "{b:02x}");
            s
        });
        Some(PeerIdentity {
            spiffe_id,
            common_name,
            serial_hex,
        })
    }

    /// A refusal: always 403, with a stable code.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Denied {
        pub code: &'static str,
        pub reason: String,
    }

    fn deny(code: &'static str, reason: String) -> Denied {
        Denied { code, reason }
    }

    /// Who a connection is: the label its records get and its value.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Bound {
        pub label: String,
        pub value: String,
    }

    /// A built `identity` table.
    #[derive(Debug)]
    pub struct Binding {
        config: IdentityConfig,
        deny_list: Option<DenyList>,
        overwritten: Counter,
    }

    impl IdentityConfig {
        /// Reads the deny list.
        ///
        /// # Errors
        /// A deny list that cannot be read, naming it.
        pub fn build(&self, key: &str, cx: &BuildContext) -> Result<Binding, Problem> {
            let deny_list = match &self.deny_list {
                None => None,
                Some(p) => Some(
                    DenyList::load(cx.resolve(p), cx.metrics.clone())
                        .map_err(|e| Problem::new(format!("{key}.deny_list"), e))?,
                ),
            };
            Ok(Binding {
                config: self.clone(),
                deny_list,
                overwritten: cx.metrics.errors("identity_overwritten"),
            })
        }
    }

    impl Binding {
        /// The identity of a connection's peer, checked against the trust
        /// domain and the deny list.
        ///
        /// # Errors
        /// `no_identity`, `wrong_trust_domain`, `revoked`.
        pub fn check(&self, peer: Option<&PeerIdentity>) -> Result<Bound, Denied> {
            let c = &self.config;
            let peer = peer.ok_or_else(|| {
                deny(
                    "no_identity",
                    "this receiver takes data from peers with a verified client certificate only"
                        .into(),
                )
            })?;
            let spiffe = peer.spiffe_id.as_deref().and_then(split_spiffe);
            if let Some(want) = &c.trust_domain {
                match spiffe {
                    Some((td, _)) if td == want => {}
                    Some((td, _)) => {
                        return Err(deny(
                            "wrong_trust_domain",
                            format!(
                                "the certificate's SPIFFE id {:?} is in trust domain {td:?}, expected {want:?}",
                                peer.spiffe_id.as_deref().unwrap_or_default()
                            ),
                        ));
                    }
                    None => {
                        return Err(deny(
                            "wrong_trust_domain",
                            format!(
                                "the certificate carries no SPIFFE id; expected one in trust domain {want:?}"
                            ),
                        ));
                    }
                }
            }
            let from_spiffe = match (c.from, spiffe) {
                (IdentityFrom::Spiffe, Some((_, path))) => {
                    let mut parts = path.split('/');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some("device"), Some(id), None) if !id.is_empty() => {
                            Some((c.label.clone(), id.to_string()))
                        }
                        (Some("gateway"), Some(id), None) if !id.is_empty() => {
                            Some((c.gateway_label.clone(), id.to_string()))
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            let (label, value) = match from_spiffe {
                Some(b) => b,
                None => match peer.common_name.as_deref().filter(|cn| !cn.is_empty()) {
                    Some(cn) => (c.label.clone(), cn.to_string()),
                    None => {
                        return Err(deny(
                            "no_identity",
                            "the certificate names no device: expected a SPIFFE id \
                             spiffe://TD/device/ID or a subject CN"
                                .into(),
                        ));
                    }
                },
            };
            if let Some(list) = &self.deny_list
                && let Some(entry) = list.denies(&value, &peer.serial_hex)
            {
                return Err(deny(
                    "revoked",
                    format!(
                        "{label} {value:?} (certificate serial {}) is revoked: {entry:?} in the deny list",
                        peer.serial_hex
                    ),
                ));
            }
            Ok(Bound { label, value })
        }

        /// Stamps the identity on every record of a batch.
        ///
        /// # Errors
        /// With `policy = "reject"`, a record naming another identity:
        /// `identity_mismatch`, and nothing is changed.
        pub fn stamp(&self, who: &Bound, events: &mut Events) -> Result<(), Denied> {
            let label = who.label.as_str();
            if self.config.policy == OnMismatch::Reject {
                let mut other: Option<String> = None;
                events.for_each(|e| {
                    if other.is_none()
                        && let Some(v) = e.labels().get(label)
                        && v != who.value
                    {
                        other = Some(v.to_string());
                    }
                });
                if let Some(v) = other {
                    return Err(deny(
                        "identity_mismatch",
                        format!(
                            "a record claims {label} {v:?}, but the client certificate is {:?}'s",
                            who.value
                        ),
                    ));
                }
            }
            let mut overwritten = 0u64;
            let mut set = |labels: &mut Labels| match labels.get(label) {
                Some(v) if v == who.value => {}
                Some(_) => {
                    overwritten += 1;
                    *labels = labels.with(label, &who.value);
                }
                None => *labels = labels.with(label, &who.value),
            };
            match events {
                Events::Metrics(v) => v.iter_mut().for_each(|m| set(&mut m.labels)),
                Events::Logs(v) => v.iter_mut().for_each(|r| set(&mut r.labels)),
                Events::Traces(v) => v.iter_mut().for_each(|s| set(&mut s.labels)),
            }
            self.overwritten.add(overwritten);
            Ok(())
        }
    }

    /// Revoked device ids and serials, read again when the file changes.
    #[derive(Debug)]
    struct DenyList {
        path: PathBuf,
        metrics: ComponentMetrics,
        state: Mutex<DenyState>,
    }

    #[derive(Debug)]
    struct DenyState {
        modified: Option<SystemTime>,
        ids: HashSet<String>,
        serials: HashSet<String>,
    }

    fn mtime(path: &Path) -> Option<SystemTime> {
        std::fs::metadata(path).and_then(|m| m.modified()).ok()
    }

    fn parse(path: &Path) -> Result<(HashSet<String>, HashSet<String>), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut ids = HashSet::new();
        let mut serials = HashSet::new();
        for line in text.lines() {
            let entry = line.split('#').next().unwrap_or_default().trim();
            if entry.is_empty() {
                continue;
            }
            ids.insert(entry.to_string());
            if entry.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                serials.insert(normalize_serial(entry));
            }
        }
        Ok((ids, serials))
    }

    impl DenyList {
        fn load(path: PathBuf, metrics: ComponentMetrics) -> Result<Self, String> {
            let modified = mtime(&path);
            let (ids, serials) = parse(&path)?;
            Ok(DenyList {
                path,
                metrics,
                state: Mutex::new(DenyState {
                    modified,
                    ids,
                    serials,
                }),
            })
        }

        /// The entry that denies `id` or `serial`, after reading the file
        /// again if it changed.
        fn denies(&self, id: &str, serial: &str) -> Option<String> {
            let mut s = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = mtime(&self.path);
            if now != s.modified {
                match parse(&self.path) {
                    Ok((ids, serials)) => {
                        s.ids = ids;
                        s.serials = serials;
                        s.modified = now;
                    }
                    Err(e) => {
                        let errors = self.metrics.errors("deny_list_reload_failed");
                        errors.inc();
                        if errors.get().is_power_of_two() {
                            tracing::warn!(
                                component = %self.metrics.id(),
                                "reading the deny list failed, keeping the previous one: {e}"
                            );
                        }
                    }
                }
            }
            if s.ids.contains(id) {
                return Some(id.to_string());
            }
            let serial = normalize_serial(serial);
            s.serials.contains(&serial).then_some(serial)
        }
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::http_util::PeerIdentity;
    use proptest::prelude::*;

    fn binding(extra: &str) -> Binding {
        let c: IdentityConfig = toml::from_str(extra).unwrap();
        c.build("identity", &crate::BuildContext::for_test("in"))
            .unwrap()
    }

    fn peer(spiffe: Option<&str>, cn: Option<&str>) -> PeerIdentity {
        PeerIdentity {
            spiffe_id: spiffe.map(str::to_string),
            common_name: cn.map(str::to_string),
            serial_hex: "01".into(),
        }
    }

    fn bound(label: &str, value: &str) -> Bound {
        Bound {
            label: label.into(),
            value: value.into(),
        }
    }

    #[test]
    fn the_identity_is_the_spiffe_device_or_gateway_id_else_the_cn() {
        let b = binding("");
        let check = |s: Option<&str>, cn: Option<&str>| b.check(Some(&peer(s, cn)));
        assert_eq!(
            check(Some("spiffe://td/device/d1"), Some("x")),
            Ok(bound("device_id", "d1"))
        );
        assert_eq!(
            check(Some("spiffe://td/gateway/g1"), Some("x")),
            Ok(bound("gateway_id", "g1"))
        );
        for other in [
            "spiffe://td/service/s1",
            "spiffe://td/device/",
            "spiffe://td/device/a/b",
            "spiffe://td",
        ] {
            assert_eq!(
                check(Some(other), Some("cn-1")),
                Ok(bound("device_id", "cn-1"))
            );
        }
        assert_eq!(check(None, Some("cn-1")), Ok(bound("device_id", "cn-1")));
        assert_eq!(check(None, None).unwrap_err().code, "no_identity");
        assert_eq!(b.check(None).unwrap_err().code, "no_identity");
        let cn = binding("from = \"cn\"\nlabel = \"node\"");
        assert_eq!(
            cn.check(Some(&peer(Some("spiffe://td/device/d1"), Some("cn-1")))),
            Ok(bound("node", "cn-1"))
        );
    }

    #[test]
    fn deny_list_entries_are_ids_or_serials_compared_as_numbers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("deny.txt"),
            "# revoked\n\n00:0A:1b\ndev-9 # stolen\n",
        )
        .unwrap();
        let mut cx = crate::BuildContext::for_test("in");
        cx.config_dir = dir.path().to_path_buf();
        let c: IdentityConfig = toml::from_str("deny_list = \"deny.txt\"").unwrap();
        let b = c.build("identity", &cx).unwrap();
        let with_serial = |cn: &str, serial: &str| PeerIdentity {
            serial_hex: serial.into(),
            ..peer(None, Some(cn))
        };
        assert_eq!(
            b.check(Some(&with_serial("d1", "0a1b"))).unwrap_err().code,
            "revoked"
        );
        assert_eq!(
            b.check(Some(&with_serial("dev-9", "02"))).unwrap_err().code,
            "revoked"
        );
        assert!(b.check(Some(&with_serial("d1", "0a1c"))).is_ok());
        let missing: IdentityConfig = toml::from_str("deny_list = \"nope.txt\"").unwrap();
        let p = missing.build("identity", &cx).unwrap_err();
        assert_eq!(p.key, "identity.deny_list");
        assert!(p.message.contains("nope.txt"), "{}", p.message);
    }

    proptest! {
        #[test]
        fn any_bytes_as_a_certificate_give_no_identity_and_no_panic(
            der in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let der = rustls::pki_types::CertificateDer::from(der);
            let _ = peer_identity(&der);
        }

        #[test]
        fn any_spiffe_id_or_cn_gives_an_identity_or_a_denial_and_no_panic(
            s in "\\PC{0,40}", cn in proptest::option::of("\\PC{0,10}")
        ) {
            let b = binding("trust_domain = \"td\"");
            let _ = b.check(Some(&peer(Some(&s), cn.as_deref())));
            prop_assert_eq!(normalize_serial(&normalize_serial(&s)), normalize_serial(&s));
        }
    }
}
