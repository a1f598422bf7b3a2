//! OTLP/gRPC: the collector services `TraceService`, `MetricsService` and
//! `LogsService` (`opentelemetry-proto`'s generated tonic servers), gzip
//! accepted. Refusals map to gRPC codes as the OTLP spec says:
//! INVALID_ARGUMENT (not retried), RESOURCE_EXHAUSTED and UNAVAILABLE
//! (retried).

use super::convert::{Ingest, Refusal, Request, Response};
use iotel_engine::Shutdown;
use iotel_formats::otlp::proto::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use iotel_formats::otlp::proto::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use iotel_formats::otlp::proto::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use iotel_formats::otlp::proto::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use iotel_formats::otlp::proto::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use iotel_formats::otlp::proto::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::net::SocketAddr;
use std::sync::Arc;
use tonic::codec::CompressionEncoding;

#[derive(Debug, Clone)]
struct Grpc(Arc<Ingest>);

fn status(ingest: &Ingest, r: &Refusal) -> tonic::Status {
    ingest.count_refusal(r, "gRPC");
    let code = match r.grpc_code() {
        3 => tonic::Code::InvalidArgument,
        8 => tonic::Code::ResourceExhausted,
        5 => tonic::Code::NotFound,
        12 => tonic::Code::Unimplemented,
        _ => tonic::Code::Unavailable,
    };
    tonic::Status::new(code, r.reason.clone())
}

impl Grpc {
    async fn export(&self, request: Request) -> Result<Response, tonic::Status> {
        self.0
            .ingest(request)
            .await
            .map_err(|r| status(&self.0, &r))
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        match Grpc::export(self, Request::Traces(request.into_inner())).await? {
            Response::Traces(r) => Ok(tonic::Response::new(r)),
            _ => Err(tonic::Status::internal("a response of another signal")),
        }
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        match Grpc::export(self, Request::Metrics(request.into_inner())).await? {
            Response::Metrics(r) => Ok(tonic::Response::new(r)),
            _ => Err(tonic::Status::internal("a response of another signal")),
        }
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        match Grpc::export(self, Request::Logs(request.into_inner())).await? {
            Response::Logs(r) => Ok(tonic::Response::new(r)),
            _ => Err(tonic::Status::internal("a response of another signal")),
        }
    }
}

/// Serves the three services on `addr` until `shutdown`. `max_decoded` is
/// the largest message once decompressed: tonic itself answers past it,
/// with OUT_OF_RANGE (which OTLP exporters retry), before our code sees
/// the request, so it is not counted in the component's errors.
///
/// # Errors
/// The bind or transport error, with the address.
pub(super) async fn serve(
    addr: SocketAddr,
    ingest: Arc<Ingest>,
    max_decoded: usize,
    mut shutdown: Shutdown,
) -> Result<(), String> {
    let svc = Grpc(ingest);
    tonic::transport::Server::builder()
        .add_service(
            TraceServiceServer::new(svc.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_decoded),
        )
        .add_service(
            MetricsServiceServer::new(svc.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_decoded),
        )
        .add_service(
            LogsServiceServer::new(svc)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_decoded),
        )
        .serve_with_shutdown(addr, async move { shutdown.wait().await })
        .await
        .map_err(|e| format!("OTLP/gRPC on {addr}: {e}"))
}
