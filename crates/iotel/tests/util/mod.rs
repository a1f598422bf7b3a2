//! Shared test harness: free ports, a real Prometheus, the iotel binary, and
//! a tiny HTTP client. A failing test prints the command, the directory
//! listing and the process output.

// A harness fails the test that uses it; a panic with the report is the point.
#![allow(dead_code, clippy::unwrap_used)]

pub mod proxy;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns `Some` or `deadline` passes.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A blocking HTTP/1.0 GET: (status, body), or None when nothing answers.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    Some((status, content_type, body.to_string()))
}

fn find_binary(name: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/local/bin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{name}` is not installed: these tests run against the real server (Debian package `prometheus`); `bash .ci/run` installs it"
    )
}

fn listing(dir: &Path) -> String {
    let mut out = String::new();
    for e in walk(dir) {
        out.push_str(&format!("  {}\n", e.display()));
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(walk(&p));
            } else {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

/// A child process whose output goes to files in its own directory, and
/// which is stopped (by PID) when dropped.
pub struct Proc {
    pub name: String,
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub command: String,
}

impl Proc {
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        dir: tempfile::TempDir,
        env: &[(&str, &str)],
    ) -> Proc {
        let out = std::fs::File::create(dir.path().join(format!("{name}.out"))).unwrap();
        let err = std::fs::File::create(dir.path().join(format!("{name}.err"))).unwrap();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .current_dir(dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc {
            name: name.to_string(),
            child: Some(child),
            command: format!("{} {}", program.display(), args.join(" ")),
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// How many threads the process runs now.
    pub fn threads(&self) -> u32 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Threads:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.out", self.name)))
            .unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.err", self.name)))
            .unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let end = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not stop within {within:?} of SIGTERM\n{}",
                    self.name,
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The command, the files and the output, for a failure message.
    pub fn report(&self) -> String {
        format!(
            "--- {} ---\ncommand: {}\nfiles:\n{}stdout:\n{}\nstderr:\n{}\n",
            self.name,
            self.command,
            listing(self.dir.path()),
            self.stdout(),
            self.stderr()
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.report());
        }
    }
}

/// A real Prometheus on a free loopback port, with remote write receiving on.
pub struct Prometheus {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Starts Prometheus with `scrape_configs` (YAML list items, may be empty).
    pub fn start(scrape_configs: &str, extra_args: &[&str]) -> Prometheus {
        let bin = find_binary("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{scrape_configs}\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let mut args = vec![
            format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ),
            format!("--web.listen-address={addr}"),
            "--log.level=warn".to_string(),
        ];
        if !extra_args.contains(&"--enable-feature=agent") {
            args.push(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ));
            args.push("--web.enable-remote-write-receiver".into());
        } else {
            args.push(format!(
                "--storage.agent.path={}",
                dir.path().join("data").display()
            ));
        }
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let proc = Proc::spawn("prometheus", &bin, &args, dir, &[]);
        let p = Prometheus { proc, addr };
        wait_for("Prometheus to be ready", Duration::from_secs(60), || {
            http_get(p.addr, "/-/ready", None).filter(|(s, _, _)| *s == 200)
        });
        p
    }

    /// An instant query: each result's labels and value.
    pub fn query(&self, promql: &str) -> Vec<(serde_json::Map<String, serde_json::Value>, String)> {
        let q: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, _, body) = http_get(self.addr, &format!("/api/v1/query?query={q}"), None)
            .expect("Prometheus answers");
        assert_eq!(status, 200, "query {promql} failed: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"].as_object().unwrap().clone(),
                    r["value"][1].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Waits until `promql` returns at least one result.
    pub fn wait_for_series(
        &self,
        promql: &str,
    ) -> Vec<(serde_json::Map<String, serde_json::Value>, String)> {
        wait_for(
            &format!("Prometheus to have {promql}"),
            Duration::from_secs(60),
            || {
                let r = self.query(promql);
                (!r.is_empty()).then_some(r)
            },
        )
    }
}

/// The iotel binary with a config written into its own temporary directory.
pub struct Iotel {
    pub proc: Proc,
    pub api: SocketAddr,
}

impl Iotel {
    /// Runs `iotel <role> --config iotel.toml`; `config` may use `{API}` for
    /// the node API address and `{DIR}` for the process' directory.
    pub fn start(role: &str, config: &str, files: &[(&str, &str)]) -> Iotel {
        Self::start_on(free_port(), role, config, files)
    }

    /// As [`Iotel::start`], with the node API on `api_port`.
    pub fn start_on(api_port: u16, role: &str, config: &str, files: &[(&str, &str)]) -> Iotel {
        let dir = tempfile::tempdir().unwrap();
        let api: SocketAddr = format!("127.0.0.1:{api_port}").parse().unwrap();
        let text = config
            .replace("{API}", &api.to_string())
            .replace("{DIR}", &dir.path().display().to_string());
        std::fs::write(dir.path().join("iotel.toml"), text).unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        Self::restart_in(dir, api_port, role)
    }

    /// As [`Iotel::start`], without waiting for a plain-HTTP `/readyz`:
    /// for a node whose API speaks HTTPS (`api` is unused then).
    pub fn start_unready(role: &str, config: &str) -> Iotel {
        let dir = tempfile::tempdir().unwrap();
        let text = config.replace("{DIR}", &dir.path().display().to_string());
        std::fs::write(dir.path().join("iotel.toml"), text).unwrap();
        let args = vec![
            role.to_string(),
            "--config".into(),
            dir.path().join("iotel.toml").display().to_string(),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
        ];
        let proc = Proc::spawn(
            "iotel",
            Path::new(env!("CARGO_BIN_EXE_iotel")),
            &args,
            dir,
            &[("IOTEL_LOG", "info")],
        );
        Iotel {
            proc,
            api: "127.0.0.1:0".parse().unwrap(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.proc.dir.path()
    }

    /// Kills the process with SIGKILL, as a crash or power cut would, and
    /// hands back its directory (config and data) for a restart.
    pub fn kill9(mut self) -> (tempfile::TempDir, u16, String) {
        if let Some(mut child) = self.proc.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        let dir = std::mem::replace(&mut self.proc.dir, tempfile::tempdir().unwrap());
        // Keep the first run's output for a failure report.
        for ext in ["out", "err"] {
            let from = dir.path().join(format!("{}.{ext}", self.proc.name));
            let to = dir.path().join(format!("{}.killed.{ext}", self.proc.name));
            let _ = std::fs::rename(from, to);
        }
        let role = self
            .proc
            .command
            .split_whitespace()
            .nth(1)
            .unwrap_or("agent")
            .to_string();
        (dir, self.api.port(), role)
    }

    /// Starts `iotel <role>` again in `dir`, with the config and data left
    /// there by an earlier run, its API on `api_port`.
    pub fn restart_in(dir: tempfile::TempDir, api_port: u16, role: &str) -> Iotel {
        let api: SocketAddr = format!("127.0.0.1:{api_port}").parse().unwrap();
        let args = vec![
            role.to_string(),
            "--config".into(),
            dir.path().join("iotel.toml").display().to_string(),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
        ];
        let proc = Proc::spawn(
            "iotel",
            Path::new(env!("CARGO_BIN_EXE_iotel")),
            &args,
            dir,
            &[("IOTEL_LOG", "info")],
        );
        let node = Iotel { proc, api };
        wait_for("iotel to be ready", Duration::from_secs(30), || {
            http_get(node.api, "/readyz", None).filter(|(s, _, _)| *s == 200)
        });
        node
    }

    /// The sum of every series of `name` on the node's /metrics whose
    /// labels include each of `labels` (written `key="value"`).
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let (_, _, body) = http_get(self.api, "/metrics", None).unwrap_or_default();
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Serves a fixed exposition on a free loopback port from a thread, as a
/// device app's /metrics would. Stops when the process ends.
pub fn serve_exposition(body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// A real Mosquitto (Debian package `mosquitto`, in /usr/sbin) on a free
/// loopback port, anonymous, logging everything to `mosquitto.log` in its
/// directory; stopped (by PID) when dropped. `None` when it is not
/// installed, except under `CI=true`, where that fails the test.
pub struct Mosquitto {
    pub proc: Proc,
    pub port: u16,
}

impl Mosquitto {
    pub fn start() -> Option<Mosquitto> {
        let bin = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .chain(["/usr/sbin"])
            .map(|d| Path::new(d).join("mosquitto"))
            .find(|p| p.is_file());
        let Some(bin) = bin else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "`mosquitto` is not installed (Debian package `mosquitto`); scripts/test installs it"
            );
            eprintln!("skipped: mosquitto is not installed (Debian package `mosquitto`)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let root = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        // As root, Mosquitto would switch to the `mosquitto` user, which
        // cannot write the temporary directory.
        let conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest file {}\nlog_type all\n{}",
            dir.path().join("mosquitto.log").display(),
            if root { "user root\n" } else { "" }
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
        let args = vec![
            "-c".to_string(),
            dir.path().join("mosquitto.conf").display().to_string(),
        ];
        let proc = Proc::spawn("mosquitto", &bin, &args, dir, &[]);
        wait_for("Mosquitto to listen", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Some(Mosquitto { proc, port })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.proc.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}
