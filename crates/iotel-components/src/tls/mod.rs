//! TLS for every hop, with rustls and the ring provider, TLS 1.2 and 1.3
//! only: [`client`] for components that connect (the `tls` table with
//! `ca_file`, `cert_file`, `key_file`, `server_name`); [`server`] for
//! receivers' listeners, [`identity`] for the device identities of their
//! client certificates.

mod client;
#[cfg(feature = "tls")]
mod client_connector;
#[cfg(feature = "tls")]
mod client_reload;
#[cfg(all(test, feature = "tls"))]
pub(crate) mod client_test_peer;
pub mod identity;
pub mod server;
#[cfg(all(test, feature = "tls"))]
pub(crate) mod test_pki;
#[cfg(all(test, feature = "tls"))]
mod tests;

pub use client::*;
#[cfg(feature = "tls")]
pub use client_connector::*;
#[cfg(feature = "tls")]
pub use client_reload::*;
pub use server::ServerTls;
