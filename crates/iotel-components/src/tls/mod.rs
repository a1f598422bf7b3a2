//! TLS for every hop, with rustls and the ring provider, TLS 1.2 and 1.3
//! only: [`client`] for components that connect (the `tls` table with
//! `ca_file`, `cert_file`, `key_file`, `server_name`).

mod client;

pub use client::*;
