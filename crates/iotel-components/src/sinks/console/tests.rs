use super::*;
use iotel_model::{Events, LogRecord};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// A stdout whose reader went away after `ok_writes` writes.
struct ClosedAfter {
    ok_writes: usize,
    written: Vec<u8>,
}

impl AsyncWrite for ClosedAfter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.ok_writes == 0 {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        self.ok_writes -= 1;
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn logs(messages: &[&str]) -> Events {
    Events::Logs(messages.iter().map(|m| LogRecord::new(1, *m)).collect())
}

#[tokio::test]
async fn a_failed_write_is_counted_and_the_sink_keeps_going() {
    let metrics = ComponentMetrics::detached("out", "console");
    let (tx, rx) = mpsc::channel(4);
    tx.send(logs(&["first"]).into()).await.unwrap();
    tx.send(logs(&["second", "third"]).into()).await.unwrap();
    tx.send(logs(&["fourth"]).into()).await.unwrap();
    drop(tx);
    let mut input = Input::new(rx, metrics.clone());
    let mut out = ClosedAfter {
        ok_writes: 1,
        written: Vec::new(),
    };
    let console = Console {
        encoding: Encoding::Text,
    };
    console.write_all(&mut out, &mut input, &metrics).await;
    assert_eq!(String::from_utf8(out.written).unwrap(), "first\n");
    assert_eq!(metrics.sent_total(), 1);
    assert_eq!(metrics.errors("write_failed").get(), 2);
    assert_eq!(metrics.discards("write_failed").get(), 3);
}
