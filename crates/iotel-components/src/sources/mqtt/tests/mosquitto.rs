//! A real Mosquitto broker for tests: started on a free loopback port with
//! its own config and directory, stopped (by PID) when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Mosquitto {
    pub port: u16,
    /// The TLS listener ([`Mosquitto::start_tls`]).
    pub tls_port: Option<u16>,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// With [`Mosquitto::start_mtls`]: the CA client certificates chain to.
    client_ca: Option<String>,
}

fn binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("mosquitto");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let sbin = PathBuf::from("/usr/sbin/mosquitto");
    sbin.is_file().then_some(sbin)
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl Mosquitto {
    /// A broker; a test without one fails.
    pub fn start() -> Option<Self> {
        Self::start_with(false, None)
    }

    /// A broker with a second listener on `tls_port`: TLS with a test CA
    /// (`ca.pem` in its directory) and user `iotel`, password `s3cret`
    /// (also in `password`); the plain listener stays anonymous.
    pub fn start_tls() -> Option<Self> {
        Self::start_with(true, None)
    }

    /// A broker whose TLS listener requires a client certificate from
    /// `client_ca` (PEM) and takes its CN as the username, which it logs
    /// with each connection (`u'CN'`); no password.
    pub fn start_mtls(client_ca: &str) -> Option<Self> {
        Self::start_with(true, Some(client_ca.to_string()))
    }

    fn start_with(tls: bool, client_ca: Option<String>) -> Option<Self> {
        // A missing peer fails the test; it never skips it.
        let Some(bin) = binary() else {
            panic!(
                "mosquitto is not installed (Debian package `mosquitto`; scripts/test installs it)"
            );
        };
        let free = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let port = free();
        let dir = tempfile::tempdir().unwrap();
        let mut m = Mosquitto {
            port,
            tls_port: tls.then(free),
            dir,
            child: None,
            client_ca,
        };
        m.write_config(&bin);
        m.spawn(&bin);
        Some(m)
    }

    fn write_config(&self, _bin: &std::path::Path) {
        let d = self.dir.path();
        let mut conf = format!(
            "per_listener_settings true\npersistence true\n\
             persistence_location {}/\nlog_dest file {}\nlog_type all\n\
             listener {} 127.0.0.1\nallow_anonymous true\n",
            d.display(),
            d.join("mosquitto.log").display(),
            self.port,
        );
        if let Some(tls_port) = self.tls_port {
            make_certificates(d);
            let passwd = d.join("passwd");
            run(Command::new("mosquitto_passwd")
                .args(["-b", "-c"])
                .arg(&passwd)
                .args(["iotel", "s3cret"]));
            std::fs::write(d.join("password"), "s3cret\n").unwrap();
            let auth = match &self.client_ca {
                None => format!(
                    "password_file {}\ncafile {}\n",
                    passwd.display(),
                    d.join("ca.pem").display()
                ),
                Some(pem) => {
                    std::fs::write(d.join("client-ca.pem"), pem).unwrap();
                    format!(
                        "cafile {}\nrequire_certificate true\nuse_identity_as_username true\n",
                        d.join("client-ca.pem").display()
                    )
                }
            };
            conf.push_str(&format!(
                "listener {tls_port} 127.0.0.1\nallow_anonymous false\n{auth}\
                 certfile {}\nkeyfile {}\n",
                d.join("server.pem").display(),
                d.join("server.key").display(),
            ));
        }
        // As root, Mosquitto would switch to the `mosquitto` user, which
        // cannot write the temporary directory.
        if running_as_root() {
            conf.push_str("user root\n");
        }
        std::fs::write(d.join("mosquitto.conf"), conf).unwrap();
    }

    fn spawn(&mut self, bin: &std::path::Path) {
        let child = Command::new(bin)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Kills the broker (SIGKILL: connections drop without a word).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, with the same directory.
    pub fn restart(&mut self) {
        self.kill();
        let bin = binary().unwrap();
        self.spawn(&bin);
    }

    /// Waits until the log shows `times` subscriptions of `client_id` to
    /// `filter` (Mosquitto logs `<client id> <qos> <filter>`).
    pub async fn wait_subscribed(&self, client_id: &str, filter: &str, times: usize) {
        let line = format!(" {client_id} ");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let log = self.log();
            let n = log
                .lines()
                .filter(|l| l.contains(&line) && l.trim_end().ends_with(&format!(" {filter}")))
                .count();
            if n >= times {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{client_id} did not subscribe to {filter} {times} time(s); broker log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Mosquitto {
    /// Waits until the log holds `text` at least `times` times.
    pub async fn wait_logged(&self, text: &str, times: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let log = self.log();
            if log.matches(text).count() >= times {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{text:?} not logged {times} time(s); broker log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 and localhost
/// signed by it (`server.pem`, `server.key`), made with openssl.
fn make_certificates(d: &std::path::Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .current_dir(d)
        .args(["req", "-x509"])
        .args(ec)
        .args(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"])
        .args(["-subj", "/CN=iotel test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    run(Command::new("openssl")
        .current_dir(d)
        .arg("req")
        .args(ec)
        .args([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]));
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .current_dir(d)
        .args([
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
        ])
        .args(["-CAcreateserial", "-out", "server.pem", "-days", "2"])
        .args(["-extfile", "server.ext"]));
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}
