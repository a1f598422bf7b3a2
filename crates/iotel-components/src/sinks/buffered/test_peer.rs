//! Test fixtures for the buffered HTTP sinks: an in-process HTTP peer on a
//! free loopback port that records every request and answers from a
//! script, a harness that runs a sink on its input, a wait with a deadline,
//! and a capture of what the sink logs.

#![allow(clippy::unwrap_used)]

use crate::http_util;
use bytes::Bytes;
use http_body_util::BodyExt;
use iotel_engine::{
    Batch, ComponentError, ComponentKey, ComponentMetrics, Input, Shutdown, ShutdownTrigger, Sink,
    SinkContext,
};
use iotel_model::Events;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// One scripted answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: Bytes,
    /// Wait for this before answering.
    pub gate: Option<Arc<Notify>>,
    /// Then wait this long (to outlast the client's timeout).
    pub delay: Duration,
}

pub(crate) fn reply(status: u16) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: Bytes::new(),
        gate: None,
        delay: Duration::ZERO,
    }
}

/// A request as the peer saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// When the request arrived.
    pub at: Instant,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug)]
pub(crate) struct Peer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _stop: ShutdownTrigger,
}

impl Peer {
    /// Serves on a free loopback port, answering from `script`, then 204.
    pub(crate) async fn start(script: Vec<Reply>) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (stop, stopped) = iotel_engine::shutdown::channel();
        let recorder = seen.clone();
        tokio::spawn(http_util::serve(listener, stopped, move |req| {
            let seen = recorder.clone();
            let script = script.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                seen.lock().unwrap().push(Seen {
                    path: parts.uri.path().to_string(),
                    headers: parts.headers,
                    body,
                    at: Instant::now(),
                });
                let r = script.lock().unwrap().pop_front().unwrap_or(reply(204));
                if let Some(gate) = &r.gate {
                    gate.notified().await;
                }
                if !r.delay.is_zero() {
                    tokio::time::sleep(r.delay).await;
                }
                let mut resp = http_util::response(r.status, "text/plain", r.body);
                for (k, v) in r.headers {
                    resp.headers_mut()
                        .insert(k, http::HeaderValue::from_static(v));
                }
                resp
            }
        }));
        Peer {
            addr,
            seen,
            _stop: stop,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A sink running on an input the test feeds.
pub(crate) struct Running {
    tx: Option<mpsc::Sender<Batch>>,
    pub metrics: ComponentMetrics,
    task: JoinHandle<Result<(), ComponentError>>,
}

impl Running {
    pub(crate) fn start(sink: Box<dyn Sink>, id: &str, type_name: &str) -> Running {
        Self::start_with(sink, id, type_name, Shutdown::never())
    }

    /// As `start`, stopped by `shutdown`.
    pub(crate) fn start_with(
        sink: Box<dyn Sink>,
        id: &str,
        type_name: &str,
        shutdown: Shutdown,
    ) -> Running {
        let (tx, rx) = mpsc::channel(8);
        let metrics = ComponentMetrics::detached(id, type_name);
        let cx = SinkContext {
            key: ComponentKey {
                id: id.into(),
                type_name: type_name.into(),
            },
            input: Input::new(rx, metrics.clone()),
            shutdown,
            metrics: metrics.clone(),
            data_dir: std::env::temp_dir(),
        };
        Running {
            tx: Some(tx),
            metrics,
            task: tokio::spawn(sink.run(cx)),
        }
    }

    pub(crate) async fn send(&self, events: Events) {
        let tx = self.tx.as_ref().unwrap();
        tx.send(events.into()).await.unwrap();
    }

    /// Closes the input and waits for the sink to finish.
    pub(crate) async fn close(mut self) -> ComponentMetrics {
        drop(self.tx.take());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the sink finishes after its input closed")
            .unwrap()
            .unwrap();
        self.metrics
    }

    pub(crate) fn sent(&self) -> u64 {
        self.metrics.sent_total()
    }

    pub(crate) fn discarded(&self, reason: &str) -> u64 {
        self.metrics.discards(reason).get()
    }

    pub(crate) fn errors(&self, code: &str) -> u64 {
        self.metrics.errors(code).get()
    }
}

/// Waits for `cond`, failing after a deadline.
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What was logged on this thread (the sink's too, under a current-thread
/// runtime) while the guard lives: one line per event, without time or
/// colours.
#[derive(Debug, Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub(crate) fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::INFO)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// The lines that contain `needle`.
    pub(crate) fn lines_with(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}
