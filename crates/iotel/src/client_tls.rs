//! The CA and client certificate a command-line client (`iotel loadgen`,
//! `iotel top`, `iotel tap`) uses towards an https:// peer.

use iotel_components::http_util;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM CA to trust for an https:// peer (else the system's roots).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for a peer that asks for one (mutual TLS);
    /// with --key-file.
    #[arg(long)]
    pub cert_file: Option<PathBuf>,
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

impl TlsArgs {
    /// An HTTP client trusting `--ca-file` and presenting `--cert-file`,
    /// when given; else the plain client.
    ///
    /// # Errors
    /// What is wrong with the files, naming the flag.
    pub fn client(&self) -> Result<http_util::Client, String> {
        let table = (self.ca_file.is_some() || self.cert_file.is_some()).then(|| {
            iotel_components::tls::ClientTls {
                ca_file: self.ca_file.clone(),
                cert_file: self.cert_file.clone(),
                key_file: self.key_file.clone(),
                server_name: None,
            }
        });
        let cx = iotel_components::BuildContext {
            id: "client".into(),
            metrics: iotel_engine::ComponentMetrics::detached("client", "client"),
            data_dir: std::env::temp_dir(),
            config_dir: PathBuf::from("."),
        };
        Ok(http_util::client_for(table.as_ref(), &cx)
            .map_err(|p| {
                format!(
                    "{}: {}",
                    p.key.replace("tls.", "--").replace('_', "-"),
                    p.message
                )
            })?
            .unwrap_or_else(http_util::client))
    }
}
