//! The CPU a gateway spends signing a batch and a cloud verifying it
//! (`auth::signing`), and a cloud verifying a gateway's token, on batches
//! the size gateways send: native frames of 100, 1,000 and 10,000 metric
//! samples (snappy). Prints microseconds per operation, measured over
//! enough repetitions to take about a second each.
//!
//!     bash bench/batch-signing.sh

use base64::Engine;
use iotel_components::auth::signing::{Signer, parse_signature, verify};
use iotel_formats::native::{self, Compression};
use iotel_model::{Events, Labels, Metric, MetricType};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use std::time::Instant;

fn frame(samples: usize) -> Vec<u8> {
    let events = Events::Metrics(
        (0..samples)
            .map(|i| {
                let device = format!("pump-{}", i % 500);
                let sensor = format!("s{}", i % 7);
                Metric::new(
                    "device_temperature_celsius",
                    MetricType::Gauge,
                    Labels::from_pairs([
                        ("device_id", device.as_str()),
                        ("sensor", sensor.as_str()),
                        ("site", "plant-3"),
                    ]),
                    20.0 + (i % 97) as f64 / 10.0,
                    1_800_000_000_000 + (i / 500) as i64 * 15_000,
                )
            })
            .collect(),
    );
    native::encode("site-1", 1, &events, Compression::Snappy).expect("encodes")
}

/// Microseconds per call of `f`, over about a second.
fn per_call(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < 1.0 {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let dir = std::env::temp_dir().join(format!("iotel-batch-signing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key");
    let pem = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
    let key_file = dir.join("site-1.signing.key");
    std::fs::write(
        &key_file,
        format!("-----BEGIN PRIVATE KEY-----\n{pem}\n-----END PRIVATE KEY-----\n"),
    )
    .expect("key file");
    let signer =
        Signer::load(&key_file, "site-1", "iotel-gateways", "cloud", "acme", 300).expect("signer");
    let public = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signer.jwk()["x"].as_str().expect("x"))
        .expect("public key");
    let now = 1_800_000_000;
    println!("| samples | frame bytes | sign µs | verify µs | sign+verify µs per 1,000 samples |");
    println!("|---:|---:|---:|---:|---:|");
    for samples in [100, 1_000, 10_000] {
        let body = frame(samples);
        let hops = "gateway:site-1";
        let sign = per_call(|| {
            std::hint::black_box(signer.sign(&body, hops, now));
        });
        let header = signer.sign(&body, hops, now);
        let s = parse_signature(&header).expect("parses");
        let check = per_call(|| {
            verify(&public, &s, hops, &body, now).expect("verifies");
        });
        println!(
            "| {samples} | {} | {sign:.1} | {check:.1} | {:.1} |",
            body.len(),
            (sign + check) * 1000.0 / samples as f64
        );
    }
    let token = signer.token(now);
    // Each call past half the token's life makes a new one.
    let mut at = now;
    let fresh = per_call(|| {
        at += 1_000;
        std::hint::black_box(signer.token(at));
    });
    println!();
    println!(
        "token (EdDSA JWT, {} bytes): made anew every 150 s, {fresh:.1} µs each",
        token.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
