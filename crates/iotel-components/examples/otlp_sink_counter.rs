//! An OTLP/gRPC trace receiver that counts: spans, requests, and the bytes
//! of the requests as protobuf (re-encoded with the same generated
//! messages, which gives the bytes the sender encoded) and gzipped at
//! gzip's fastest level (every 10th request, to keep the receiver light;
//! the ratio is applied to the rest). Prints one line a second:
//!
//! ```text
//! spans=N requests=N proto_bytes=N gzip_sampled=N proto_sampled=N
//! ```
//!
//! `otlp_sink_counter ADDRESS` (e.g. 127.0.0.1:4319). For
//! `bench/otlp-traces.sh`.

use iotel_formats::otlp::proto::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use iotel_formats::otlp::proto::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
struct Counts {
    spans: AtomicU64,
    requests: AtomicU64,
    proto_bytes: AtomicU64,
    gzip_sampled: AtomicU64,
    proto_sampled: AtomicU64,
}

#[derive(Debug, Clone, Default)]
struct Counter(Arc<Counts>);

#[tonic::async_trait]
impl TraceService for Counter {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        let spans: usize = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let c = &self.0;
        let n = c.requests.fetch_add(1, Ordering::Relaxed);
        let body = req.encode_to_vec();
        c.proto_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        if n.is_multiple_of(10) {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            if gz.write_all(&body).is_ok()
                && let Ok(z) = gz.finish()
            {
                c.gzip_sampled.fetch_add(z.len() as u64, Ordering::Relaxed);
                c.proto_sampled
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
            }
        }
        c.spans.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .ok_or("usage: otlp_sink_counter ADDRESS")?
        .parse()?;
    let counter = Counter::default();
    let counts = counter.0.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            println!(
                "spans={} requests={} proto_bytes={} gzip_sampled={} proto_sampled={}",
                counts.spans.load(Ordering::Relaxed),
                counts.requests.load(Ordering::Relaxed),
                counts.proto_bytes.load(Ordering::Relaxed),
                counts.gzip_sampled.load(Ordering::Relaxed),
                counts.proto_sampled.load(Ordering::Relaxed),
            );
        }
    });
    tonic::transport::Server::builder()
        .add_service(
            TraceServiceServer::new(counter)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .max_decoding_message_size(64 << 20),
        )
        .serve(addr)
        .await?;
    Ok(())
}
