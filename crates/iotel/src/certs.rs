//! `iotel certs`: a development PKI, so that every hop can run mutual TLS
//! from the first minute.
//!
//! ```text
//! DIR/ca.pem, ca.key                     root CA (10 years): the trust anchor, `ca_file`
//! DIR/intermediate.pem, intermediate.key  issuing CA (5 years), signed by the root
//! DIR/devices/ID.pem, ID.key             device client cert: CN ID, spiffe://TD/device/ID
//! DIR/gateways/ID.pem, ID.key            gateway cert (server and client): CN ID,
//!                                        spiffe://TD/gateway/ID, DNS names and IPs
//! DIR/gateways/ID.signing.key            the gateway's Ed25519 key for its tokens and
//!                                        batch signatures (the `iotel` sink's `sign`)
//! DIR/gateways.jwks                      every gateway's public signing key, kid = ID:
//!                                        the cloud's `auth.jwks_file`
//! DIR/servers/NAME.pem, NAME.key         server cert for DNS names and IPs
//! ```
//!
//! Leaf `.pem` files hold the leaf and then the intermediate, the chain a
//! peer needs to verify them against `ca.pem`. Keys are ECDSA P-256 in
//! PKCS#8, written with mode 0600; files are replaced atomically (written
//! beside, then renamed), so a process watching them never reads half a
//! file. The trust domain (`--trust-domain`, default `iotel.test`) is kept
//! in the CAs as their SPIFFE URI (`spiffe://TD`) and read back from the
//! intermediate when issuing. Serial numbers are derived from each new
//! key, so every issued cert has its own; they are printed, for deny lists.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create the root CA and the intermediate that issues every other cert.
    Init {
        #[command(flatten)]
        dir: DirArg,
        /// The SPIFFE trust domain of the identities this PKI issues.
        #[arg(long, default_value = "iotel.test")]
        trust_domain: String,
        /// Replace an existing CA (every cert it issued stops verifying).
        #[arg(long)]
        force: bool,
    },
    /// Issue a device's client cert: CN and SPIFFE id from `--device-id`.
    IssueDevice {
        #[command(flatten)]
        dir: DirArg,
        #[arg(long)]
        device_id: String,
        #[command(flatten)]
        validity: Validity,
    },
    /// Issue a gateway's cert, for serving agents and for calling the cloud.
    IssueGateway {
        #[command(flatten)]
        dir: DirArg,
        #[arg(long)]
        gateway_id: String,
        #[command(flatten)]
        names: Names,
        #[command(flatten)]
        validity: Validity,
    },
    /// Issue a server cert for DNS names and IP addresses.
    IssueServer {
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        names: Names,
        #[command(flatten)]
        validity: Validity,
    },
}

#[derive(Debug, Args)]
pub struct DirArg {
    /// Where the PKI's files are.
    #[arg(long, default_value = "certs")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct Names {
    /// A DNS name the cert is valid for (repeat for more).
    #[arg(long)]
    pub dns: Vec<String>,
    /// An IP address the cert is valid for (repeat for more).
    #[arg(long)]
    pub ip: Vec<IpAddr>,
}

#[derive(Debug, Args)]
pub struct Validity {
    /// How long the cert is valid, in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

/// Runs one `certs` command; prints what it wrote.
///
/// # Errors
/// A bad argument, a missing CA, or a file that cannot be written, naming it.
pub fn run(command: CertsCommand) -> Result<()> {
    match command {
        CertsCommand::Init {
            dir,
            trust_domain,
            force,
        } => init(&dir.dir, &trust_domain, force),
        CertsCommand::IssueDevice {
            dir,
            device_id,
            validity,
        } => {
            check_id("--device-id", &device_id)?;
            let ca = IssuingCa::load(&dir.dir)?;
            let spiffe = format!("spiffe://{}/device/{device_id}", ca.trust_domain);
            issue(
                &ca,
                Leaf {
                    common_name: &device_id,
                    spiffe: Some(spiffe),
                    names: &Names {
                        dns: vec![],
                        ip: vec![],
                    },
                    usages: &[ExtendedKeyUsagePurpose::ClientAuth],
                    days: validity.days,
                },
                &dir.dir.join("devices").join(&device_id),
            )
        }
        CertsCommand::IssueGateway {
            dir,
            gateway_id,
            names,
            validity,
        } => {
            check_id("--gateway-id", &gateway_id)?;
            let ca = IssuingCa::load(&dir.dir)?;
            let spiffe = format!("spiffe://{}/gateway/{gateway_id}", ca.trust_domain);
            issue(
                &ca,
                Leaf {
                    common_name: &gateway_id,
                    spiffe: Some(spiffe),
                    names: &names,
                    usages: &[
                        ExtendedKeyUsagePurpose::ServerAuth,
                        ExtendedKeyUsagePurpose::ClientAuth,
                    ],
                    days: validity.days,
                },
                &dir.dir.join("gateways").join(&gateway_id),
            )?;
            signing_key(&dir.dir, &gateway_id)
        }
        CertsCommand::IssueServer {
            dir,
            names,
            validity,
        } => {
            let Some(first) = names.dns.first().cloned() else {
                bail!("issue-server needs at least one --dns NAME (the cert's common name)");
            };
            check_id("--dns", &first)?;
            let ca = IssuingCa::load(&dir.dir)?;
            issue(
                &ca,
                Leaf {
                    common_name: &first,
                    spiffe: None,
                    names: &names,
                    usages: &[ExtendedKeyUsagePurpose::ServerAuth],
                    days: validity.days,
                },
                &dir.dir.join("servers").join(&first),
            )
        }
    }
}

/// A SPIFFE trust domain: lowercase letters, digits, `.`, `-`, `_`.
fn check_trust_domain(td: &str) -> Result<()> {
    if td.is_empty()
        || !td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        bail!(
            "--trust-domain {td:?}: expected lowercase letters, digits, '.', '-' and '_' (a SPIFFE trust domain)"
        );
    }
    Ok(())
}

/// An id that becomes a SPIFFE path segment and a file name: letters,
/// digits, `.`, `-`, `_`, not `.` or `..`.
fn check_id(flag: &str, id: &str) -> Result<()> {
    if id.is_empty()
        || id == "."
        || id == ".."
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        bail!(
            "{flag} {id:?}: expected letters, digits, '.', '-' and '_' (it becomes a SPIFFE path segment and a file name)"
        );
    }
    Ok(())
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "iotel development PKI");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn ca_params(
    common_name: &str,
    trust_domain: &str,
    path_len: Option<u8>,
    years: i64,
) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(common_name);
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::minutes(5);
    p.not_after = now + Duration::days(365 * years);
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn init(dir: &Path, trust_domain: &str, force: bool) -> Result<()> {
    check_trust_domain(trust_domain)?;
    let root_pem = dir.join("ca.pem");
    if root_pem.exists() && !force {
        bail!(
            "{} exists: a CA is already there (use --force to replace it; every cert it issued stops verifying)",
            root_pem.display()
        );
    }
    let root_key = KeyPair::generate()?;
    // Named after the key too: two PKIs never share CA names, so a cert
    // from the other is an unknown issuer, not a bad signature.
    let tag: String = CertificateParams::default()
        .key_identifier(&root_key)
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let root_params = ca_params(
        &format!("iotel development root CA {tag}"),
        trust_domain,
        Some(1),
        10,
    )?;
    let root = root_params.self_signed(&root_key)?;
    let root_issuer = Issuer::new(root_params, &root_key);
    let int_key = KeyPair::generate()?;
    let int = ca_params(
        &format!("iotel development issuing CA {tag}"),
        trust_domain,
        Some(0),
        5,
    )?
    .signed_by(&int_key, &root_issuer)?;
    write_file(&dir.join("ca.key"), &root_key.serialize_pem(), 0o600)?;
    write_file(&root_pem, &root.pem(), 0o644)?;
    write_file(
        &dir.join("intermediate.key"),
        &int_key.serialize_pem(),
        0o600,
    )?;
    write_file(&dir.join("intermediate.pem"), &int.pem(), 0o644)?;
    println!(
        "root CA         {} (trust anchor: give it as ca_file)",
        root_pem.display()
    );
    println!(
        "intermediate CA {} (issues every other cert)",
        dir.join("intermediate.pem").display()
    );
    println!("trust domain    spiffe://{trust_domain}");
    Ok(())
}

/// The intermediate, read back to issue with.
struct IssuingCa {
    pem: String,
    key: KeyPair,
    trust_domain: String,
}

impl IssuingCa {
    fn load(dir: &Path) -> Result<IssuingCa> {
        let pem_path = dir.join("intermediate.pem");
        let key_path = dir.join("intermediate.key");
        let pem = fs::read_to_string(&pem_path).with_context(|| {
            format!(
                "reading {} (run `iotel certs init --dir {}` first)",
                pem_path.display(),
                dir.display()
            )
        })?;
        let key_pem = fs::read_to_string(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("{}: not a PEM private key", key_path.display()))?;
        let trust_domain = trust_domain_of(&pem)
            .with_context(|| format!("{}: the issuing CA", pem_path.display()))?;
        Ok(IssuingCa {
            pem,
            key,
            trust_domain,
        })
    }
}

/// The trust domain in a CA's `spiffe://TD` URI name.
fn trust_domain_of(pem: &str) -> Result<String> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?;
    let cert = p
        .parse_x509()
        .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| anyhow::anyhow!("bad subject alternative names: {e}"))?;
    san.into_iter()
        .flat_map(|s| s.value.general_names.iter())
        .find_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => u
                .strip_prefix("spiffe://")
                .filter(|td| !td.contains('/'))
                .map(str::to_string),
            _ => None,
        })
        .context("it has no spiffe://TRUST_DOMAIN name; was it made by `iotel certs init`?")
}

struct Leaf<'a> {
    common_name: &'a str,
    spiffe: Option<String>,
    names: &'a Names,
    usages: &'a [ExtendedKeyUsagePurpose],
    days: u32,
}

fn issue(ca: &IssuingCa, leaf: Leaf<'_>, stem: &Path) -> Result<()> {
    if leaf.days == 0 {
        bail!("--days 0: a cert must be valid for at least a day");
    }
    let issuer = Issuer::from_ca_cert_pem(&ca.pem, &ca.key)
        .context("the issuing CA's certificate does not parse")?;
    let mut p = CertificateParams::default();
    p.distinguished_name = name(leaf.common_name);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = leaf.usages.to_vec();
    p.use_authority_key_identifier_extension = true;
    if let Some(uri) = &leaf.spiffe {
        p.subject_alt_names
            .push(SanType::URI(uri.clone().try_into()?));
    }
    for dns in &leaf.names.dns {
        p.subject_alt_names.push(SanType::DnsName(
            dns.clone()
                .try_into()
                .with_context(|| format!("--dns {dns:?}: not a DNS name"))?,
        ));
    }
    for ip in &leaf.names.ip {
        p.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::minutes(5);
    p.not_after = now + Duration::days(i64::from(leaf.days));
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    let serial = serial_of(cert.der())?;
    // Not `with_extension`: names such as `cloud.example` have dots.
    let file = |ext: &str| {
        let mut name = stem.as_os_str().to_os_string();
        name.push(ext);
        PathBuf::from(name)
    };
    let (cert_path, key_path) = (file(".pem"), file(".key"));
    write_file(&key_path, &key.serialize_pem(), 0o600)?;
    write_file(&cert_path, &format!("{}{}", cert.pem(), ca.pem), 0o644)?;
    println!("cert   {} (with the issuing CA)", cert_path.display());
    println!("key    {}", key_path.display());
    println!("cn     {}", leaf.common_name);
    if let Some(uri) = &leaf.spiffe {
        println!("spiffe {uri}");
    }
    println!("serial {serial}");
    println!("until  {}", p.not_after);
    Ok(())
}

/// Makes the gateway's Ed25519 signing key and puts its public key in
/// `DIR/gateways.jwks` (replacing an older one of the same gateway).
fn signing_key(dir: &Path, gateway_id: &str) -> Result<()> {
    use base64::Engine;
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let key_path = dir
        .join("gateways")
        .join(format!("{gateway_id}.signing.key"));
    write_file(&key_path, &key.serialize_pem(), 0o600)?;
    let jwks_path = dir.join("gateways.jwks");
    let mut keys: Vec<serde_json::Value> = match fs::read(&jwks_path) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .with_context(|| format!("{}: not a JWKS document", jwks_path.display()))?["keys"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(e).with_context(|| format!("reading {}", jwks_path.display())),
    };
    keys.retain(|k| k["kid"] != gateway_id);
    keys.push(serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": gateway_id,
        "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.public_key_raw()),
    }));
    let text = serde_json::to_string_pretty(&serde_json::json!({ "keys": keys }))?;
    write_file(&jwks_path, &format!("{text}\n"), 0o644)?;
    println!("signing key {}", key_path.display());
    println!("public key  {} (kid {gateway_id:?})", jwks_path.display());
    Ok(())
}

/// The serial number as lowercase hex, the form deny lists take.
fn serial_of(der: &[u8]) -> Result<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| anyhow::anyhow!("the issued cert does not parse: {e}"))?;
    Ok(cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Writes `contents` to `path` with `mode`, atomically: to a file beside
/// it, then renamed over it.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    // A stale file beside it keeps its old mode through `open`.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", tmp.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests;
