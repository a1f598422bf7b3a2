#![allow(clippy::unwrap_used)]

use super::*;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::os::unix::fs::PermissionsExt;
use webpki::{EndEntityCert, KeyUsage};

fn dir_arg(dir: &Path) -> DirArg {
    DirArg {
        dir: dir.to_path_buf(),
    }
}

fn init_in(dir: &Path, trust_domain: &str) {
    run(CertsCommand::Init {
        dir: dir_arg(dir),
        trust_domain: trust_domain.into(),
        force: false,
    })
    .unwrap();
}

fn device(dir: &Path, id: &str) -> Result<()> {
    run(CertsCommand::IssueDevice {
        dir: dir_arg(dir),
        device_id: id.into(),
        validity: Validity { days: 30 },
    })
}

/// Every certificate in a PEM file, in order.
fn chain(path: &Path) -> Vec<CertificateDer<'static>> {
    let text = fs::read(path).unwrap();
    x509_parser::pem::Pem::iter_from_buffer(&text)
        .map(|p| CertificateDer::from(p.unwrap().contents))
        .collect()
}

fn now_plus(days: u64) -> UnixTime {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    UnixTime::since_unix_epoch(now + std::time::Duration::from_secs(days * 86_400))
}

/// Verifies `leaf_file` (leaf, then intermediates) against `ca_file` the
/// way rustls does.
fn verify(
    ca_file: &Path,
    leaf_file: &Path,
    usage: KeyUsage,
    at: UnixTime,
) -> Result<(), webpki::Error> {
    let anchors = chain(ca_file);
    let anchors: Vec<_> = anchors
        .iter()
        .map(|c| webpki::anchor_from_trusted_cert(c).unwrap())
        .collect();
    let certs = chain(leaf_file);
    let leaf = EndEntityCert::try_from(&certs[0]).unwrap();
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &certs[1..],
        at,
        usage,
        None,
        None,
    )
    .map(|_| ())
}

struct Parsed {
    common_name: String,
    uris: Vec<String>,
    dns: Vec<String>,
    not_after: i64,
}

fn parse(path: &Path) -> Parsed {
    let certs = chain(path);
    let (_, c) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
    let mut uris = vec![];
    let mut dns = vec![];
    if let Some(san) = c.subject_alternative_name().unwrap() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::URI(u) => uris.push(u.to_string()),
                x509_parser::extensions::GeneralName::DNSName(d) => dns.push(d.to_string()),
                _ => {}
            }
        }
    }
    Parsed {
        common_name: c
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string(),
        uris,
        dns,
        not_after: c.validity().not_after.timestamp(),
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_device_cert_names_the_device_verifies_for_client_auth_and_its_key_is_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_in(dir, "fleet.example");
    device(dir, "pump-7").unwrap();

    let pem = dir.join("devices/pump-7.pem");
    let p = parse(&pem);
    assert_eq!(p.common_name, "pump-7");
    assert_eq!(p.uris, ["spiffe://fleet.example/device/pump-7"]);
    assert!(p.dns.is_empty());
    let expected_end = OffsetDateTime::now_utc().unix_timestamp() + 30 * 86_400;
    assert!((p.not_after - expected_end).abs() < 60, "{}", p.not_after);
    assert_eq!(chain(&pem).len(), 2, "the leaf and the issuing CA");

    let ca = dir.join("ca.pem");
    verify(&ca, &pem, KeyUsage::client_auth(), now_plus(0)).unwrap();
    assert!(
        matches!(
            verify(&ca, &pem, KeyUsage::server_auth(), now_plus(0)),
            Err(webpki::Error::RequiredEkuNotFoundContext(_))
        ),
        "a device cert is for clients only"
    );
    assert!(matches!(
        verify(&ca, &pem, KeyUsage::client_auth(), now_plus(31)),
        Err(webpki::Error::CertExpired { .. })
    ));

    for key in ["ca.key", "intermediate.key", "devices/pump-7.key"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
    assert_eq!(mode(&dir.join("ca.pem")), 0o644);
    assert!(!dir.join("devices/pump-7.tmp").exists());
}

#[test]
fn a_cert_from_another_pki_does_not_verify() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    init_in(a.path(), "iotel.test");
    init_in(b.path(), "iotel.test");
    device(b.path(), "rogue").unwrap();
    assert_eq!(
        verify(
            &a.path().join("ca.pem"),
            &b.path().join("devices/rogue.pem"),
            KeyUsage::client_auth(),
            now_plus(0),
        ),
        Err(webpki::Error::UnknownIssuer)
    );
}

#[test]
fn gateway_certs_serve_and_call_and_server_certs_serve_their_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_in(dir, "iotel.test");
    run(CertsCommand::IssueGateway {
        dir: dir_arg(dir),
        gateway_id: "site-1".into(),
        names: Names {
            dns: vec!["gw.site-1.local".into()],
            ip: vec!["127.0.0.1".parse().unwrap()],
        },
        validity: Validity { days: 365 },
    })
    .unwrap();
    let gw = dir.join("gateways/site-1.pem");
    let p = parse(&gw);
    assert_eq!(p.common_name, "site-1");
    assert_eq!(p.uris, ["spiffe://iotel.test/gateway/site-1"]);
    assert_eq!(p.dns, ["gw.site-1.local"]);
    let ca = dir.join("ca.pem");
    verify(&ca, &gw, KeyUsage::client_auth(), now_plus(0)).unwrap();
    verify(&ca, &gw, KeyUsage::server_auth(), now_plus(0)).unwrap();

    run(CertsCommand::IssueServer {
        dir: dir_arg(dir),
        names: Names {
            dns: vec!["cloud.example".into(), "ingest.cloud.example".into()],
            ip: vec![],
        },
        validity: Validity { days: 10 },
    })
    .unwrap();
    let server = dir.join("servers/cloud.example.pem");
    let p = parse(&server);
    assert_eq!(p.common_name, "cloud.example");
    assert!(p.uris.is_empty());
    assert_eq!(p.dns, ["cloud.example", "ingest.cloud.example"]);
    verify(&ca, &server, KeyUsage::server_auth(), now_plus(0)).unwrap();
    let certs = chain(&server);
    let leaf = EndEntityCert::try_from(&certs[0]).unwrap();
    leaf.verify_is_valid_for_subject_name(
        &rustls_pki_types::ServerName::try_from("ingest.cloud.example").unwrap(),
    )
    .unwrap();
    assert!(
        leaf.verify_is_valid_for_subject_name(
            &rustls_pki_types::ServerName::try_from("other.example").unwrap()
        )
        .is_err()
    );
}

#[test]
fn each_issued_cert_has_its_own_serial() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_in(dir, "iotel.test");
    let serial = |id: &str| {
        device(dir, id).unwrap();
        serial_of(&chain(&dir.join(format!("devices/{id}.pem")))[0]).unwrap()
    };
    let (a, b) = (serial("a"), serial("b"));
    let a_again = serial("a");
    assert_ne!(a, b);
    assert_ne!(a, a_again, "reissuing makes a new key and serial");
    assert_eq!(a.len(), 40, "{a}");
}

#[test]
fn mistakes_are_refused_with_what_was_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let e = device(dir, "pump-1").unwrap_err();
    assert_eq!(
        format!("{e:#}").split(": No such file").next().unwrap(),
        format!(
            "reading {} (run `iotel certs init --dir {}` first)",
            dir.join("intermediate.pem").display(),
            dir.display()
        )
    );

    init_in(dir, "iotel.test");
    let e = run(CertsCommand::Init {
        dir: dir_arg(dir),
        trust_domain: "iotel.test".into(),
        force: false,
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{} exists: a CA is already there (use --force to replace it; every cert it issued stops verifying)",
            dir.join("ca.pem").display()
        )
    );

    let e = device(dir, "../etc").unwrap_err();
    assert_eq!(
        e.to_string(),
        "--device-id \"../etc\": expected letters, digits, '.', '-' and '_' (it becomes a SPIFFE path segment and a file name)"
    );
    let e = run(CertsCommand::Init {
        dir: dir_arg(&dir.join("x")),
        trust_domain: "Fleet.Example".into(),
        force: false,
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "--trust-domain \"Fleet.Example\": expected lowercase letters, digits, '.', '-' and '_' (a SPIFFE trust domain)"
    );
    let e = run(CertsCommand::IssueServer {
        dir: dir_arg(dir),
        names: Names {
            dns: vec![],
            ip: vec![],
        },
        validity: Validity { days: 1 },
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "issue-server needs at least one --dns NAME (the cert's common name)"
    );
}

#[test]
fn a_gateway_gets_a_signing_key_whose_public_half_the_cloud_can_load() {
    use iotel_components::auth::{keys, signing};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_in(dir, "iotel.test");
    let gateway = |id: &str| {
        run(CertsCommand::IssueGateway {
            dir: dir_arg(dir),
            gateway_id: id.into(),
            names: Names {
                dns: vec![],
                ip: vec![],
            },
            validity: Validity { days: 1 },
        })
        .unwrap();
    };
    gateway("site-1");
    gateway("site-2");
    gateway("site-1");
    let key_file = dir.join("gateways/site-1.signing.key");
    assert_eq!(mode(&key_file), 0o600);
    let jwks = fs::read(dir.join("gateways.jwks")).unwrap();
    let set = keys::parse_jwks(&jwks).unwrap();
    let kids: Vec<_> = set.keys.iter().map(|k| k.kid.clone().unwrap()).collect();
    assert_eq!(kids, ["site-2", "site-1"], "reissuing replaces the old key");

    let signer =
        signing::Signer::load(&key_file, "site-1", "iotel-gateways", "cloud", "acme", 300).unwrap();
    let now = 1_800_000_000;
    let header = signer.sign(b"frame", "gateway:site-1", now);
    let s = signing::parse_signature(&header).unwrap();
    let public = set.keys[1].ed25519.as_deref().unwrap();
    signing::verify(public, &s, "gateway:site-1", b"frame", now).unwrap();
    let other = set.keys[0].ed25519.as_deref().unwrap();
    assert!(signing::verify(other, &s, "gateway:site-1", b"frame", now).is_err());
}
