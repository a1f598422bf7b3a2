//! Full TLS handshakes against a listener, as fast as they go: each of
//! CONCURRENCY tasks connects, handshakes (with a client certificate when
//! given) and closes, again and again, for SECONDS. Prints handshakes per
//! second. The listener must not resume sessions (iotel's do not), so each
//! is a full handshake.
//!
//!     tls_handshakes ADDR SERVER_NAME CA_FILE [CERT_FILE KEY_FILE] [SECONDS] [CONCURRENCY]
//!
//! `bench/tls-handshakes.sh` runs it against an `iotel` source with mTLS.

use iotel_components::tls::ClientTls;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: tls_handshakes ADDR SERVER_NAME CA_FILE [CERT_FILE KEY_FILE] [SECONDS] [CONCURRENCY]";
    let (Some(addr), Some(name), Some(ca)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (cert, key) = (
        args.get(4).map(PathBuf::from),
        args.get(5).map(PathBuf::from),
    );
    let seconds: u64 = args.get(6).and_then(|s| s.parse().ok()).unwrap_or(10);
    let concurrency: usize = args.get(7).and_then(|s| s.parse().ok()).unwrap_or(4);
    let tls = ClientTls {
        ca_file: Some(PathBuf::from(ca)),
        cert_file: cert,
        key_file: key,
        server_name: Some(name.clone()),
    };
    let mut config = match tls.client_config("tls", std::path::Path::new(".")) {
        Ok(c) => c,
        Err(p) => {
            eprintln!("{}: {}", p.key, p.message);
            std::process::exit(1);
        }
    };
    config.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server_name =
        rustls::pki_types::ServerName::try_from(name.clone()).expect("a DNS name or an IP address");
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (connector, server_name) = (connector.clone(), server_name.clone());
        let (done, failed, addr) = (done.clone(), failed.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let ok = match tokio::net::TcpStream::connect(&addr).await {
                    Ok(tcp) => connector.connect(server_name.clone(), tcp).await.is_ok(),
                    Err(_) => false,
                };
                if ok { &done } else { &failed }.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let (n, f) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "handshakes {n} failed {f} seconds {secs:.1} per_second {:.0}",
        n as f64 / secs
    );
}
