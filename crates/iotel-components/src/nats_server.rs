//! A real NATS server with JetStream for tests: `nats-server -js` on a free
//! loopback port with its own store directory, stopped (SIGKILL, by PID)
//! when dropped. Debian's package `nats-server` installs it in /usr/sbin
//! (scripts/test installs it). A missing server fails the test; it never
//! skips it.
//!
//! Only std and tempfile: the binary's end-to-end tests include this file
//! too (`#[path]`).

#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct NatsServer {
    pub port: u16,
    /// Holds the JetStream store (`store/`) and the log (`nats.log`).
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// Starts so far: the log says "Server is ready" once per start.
    starts: usize,
}

fn binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("nats-server");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let sbin = PathBuf::from("/usr/sbin/nats-server");
    sbin.is_file().then_some(sbin)
}

impl NatsServer {
    /// A server with JetStream, ready for clients.
    pub fn start() -> NatsServer {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut s = NatsServer {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            starts: 1,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let Some(bin) = binary() else {
            panic!(
                "nats-server is not installed (Debian package `nats-server`; scripts/test \
                 installs it)"
            );
        };
        let store = self.dir.path().join("store");
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&store)
            .arg("-l")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Ready once it says so (JetStream recovered its store first).
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = self.log();
            if log.matches("Server is ready").count() >= self.starts
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL: connections drop without a word).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.starts += 1;
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
