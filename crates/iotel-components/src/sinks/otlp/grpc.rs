//! OTLP/gRPC: one unary `Export` call per request, and what its status
//! means for the batch.
//!
//! The body is encoded once, by the sink, like an OTLP/HTTP body, and kept
//! for retries; the call sends those bytes as they are ([`EncodedCodec`])
//! on the `Export` method of the collector services that
//! `opentelemetry-proto`'s generated tonic clients call, so a retry costs
//! no re-encoding and one path serves the three signals. tonic frames and
//! gzip-compresses it.
//!
//! | gRPC status                                   | action                               |
//! |-----------------------------------------------|--------------------------------------|
//! | OK                                            | delivered (the response may carry a partial success) |
//! | CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS | retried |
//! | RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo` in its details | retried after its delay |
//! | RESOURCE_EXHAUSTED without, and every other code | rejected: the batch is dropped, counted |
//!
//! These are the OTLP spec's rules ("OTLP/gRPC Response", "Failures"). A
//! `RetryInfo` delay is honoured on every retryable code, bounded by
//! `retry.initial_backoff` and `retry.max_backoff` as `Retry-After` is. A
//! connection that cannot be made is UNAVAILABLE (tonic's mapping), so it
//! is retried.

use crate::sinks::http_delivery::{Answer, Exchange};
use bytes::{Buf, BufMut, Bytes};
use iotel_model::Signal;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

/// The `Export` methods of the OTLP collector services.
const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
const LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Where and how the sink calls.
#[derive(Debug)]
pub(super) struct GrpcClient {
    uri: http::Uri,
    metadata: tonic::metadata::MetadataMap,
    gzip: bool,
    /// Made when the sink starts (tonic's channel needs the runtime).
    grpc: Option<tonic::client::Grpc<Channel>>,
    /// The `tls` table's material; `None`: https trusts the system's roots.
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<crate::tls::ClientTlsSource>>,
}

impl GrpcClient {
    pub(super) fn new(uri: http::Uri, headers: http::HeaderMap, gzip: bool) -> Self {
        Self {
            uri,
            metadata: tonic::metadata::MetadataMap::from_headers(headers),
            gzip,
            grpc: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Connects with the material of a `tls` table (offering ALPN `h2`).
    ///
    /// # Errors
    /// What is wrong with the table's files; in builds without TLS, that
    /// there is none.
    pub(super) fn set_tls(
        &mut self,
        tls: Option<&crate::tls::ClientTls>,
        cx: &crate::BuildContext,
    ) -> Result<(), crate::Problem> {
        let Some(tls) = tls else {
            return Ok(());
        };
        #[cfg(feature = "tls")]
        {
            self.tls = Some(std::sync::Arc::new(crate::tls::ClientTlsSource::load(
                tls,
                "tls",
                &cx.config_dir,
                vec![b"h2".to_vec()],
                Some(cx.metrics.clone()),
            )?));
            Ok(())
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = (tls, cx);
            Err(crate::Problem::new("tls", crate::tls::NOT_BUILT_IN))
        }
    }

    /// Prepares the channel; it connects on the first call, and again after
    /// a connection is lost.
    pub(super) fn connect(&mut self) {
        let endpoint = Channel::builder(self.uri.clone())
            .tcp_nodelay(true)
            .user_agent(crate::http_util::USER_AGENT);
        // The user agent is a valid header value; else keep tonic's.
        let endpoint = endpoint.unwrap_or_else(|_| Channel::builder(self.uri.clone()));
        // Dialled by iotel's connector: plain for http://, TLS for https://.
        #[cfg(feature = "tls")]
        let channel = {
            let source = self.tls.clone().unwrap_or_else(|| {
                std::sync::Arc::new(crate::tls::ClientTlsSource::system(vec![b"h2".to_vec()]))
            });
            endpoint.connect_with_connector_lazy(crate::tls::HttpsConnector::new(source))
        };
        #[cfg(not(feature = "tls"))]
        let channel = endpoint.connect_lazy();
        let mut grpc = tonic::client::Grpc::new(channel);
        if self.gzip {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        }
        self.grpc = Some(grpc.accept_compressed(CompressionEncoding::Gzip));
    }

    /// Calls `Export` of `signal`'s service with `body`, an encoded request.
    pub(super) fn export(
        &self,
        signal: Signal,
        body: Bytes,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Exchange> + Send>> {
        let grpc = self.grpc.clone();
        let metadata = self.metadata.clone();
        Box::pin(async move {
            let Some(mut grpc) = grpc else {
                return failed(
                    "connection_failed",
                    "the gRPC channel was not set up".into(),
                );
            };
            let mut request = tonic::Request::new(body);
            *request.metadata_mut() = metadata;
            request.set_timeout(timeout);
            let path = http::uri::PathAndQuery::from_static(match signal {
                Signal::Traces => TRACES,
                Signal::Metrics => METRICS,
                Signal::Logs => LOGS,
            });
            let call = async {
                grpc.ready()
                    .await
                    .map_err(|e| tonic::Status::unavailable(describe(&e)))?;
                grpc.unary(request, path, EncodedCodec).await
            };
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(response)) => Exchange {
                    // gRPC OK.
                    answer: Answer::Status {
                        status: 200,
                        retry_after: None,
                    },
                    detail: String::new(),
                    body: response.into_inner(),
                    headers: http::HeaderMap::new(),
                },
                Ok(Err(status)) => refused(&status),
                Err(_) => failed(
                    "request_timeout",
                    format!("no answer within {timeout:?} (request_timeout)"),
                ),
            }
        })
    }
}

fn failed(code: &'static str, detail: String) -> Exchange {
    Exchange {
        answer: Answer::Failed { code },
        detail,
        body: Bytes::new(),
        headers: http::HeaderMap::new(),
    }
}

/// The exchange of a call that ended with a status other than OK.
pub(super) fn refused(status: &tonic::Status) -> Exchange {
    let (retryable, retry_after) = judge(status.code(), status.details());
    let mut detail = format!("gRPC {}", code_name(status.code()).to_uppercase());
    if !status.message().is_empty() {
        detail.push_str(&format!(": {:?}", status.message()));
    }
    if let Some(source) = std::error::Error::source(status) {
        detail.push_str(&format!(" ({})", describe(source)));
    }
    if let Some(d) = retry_after {
        detail.push_str(&format!(", retry after {d:?}"));
    }
    Exchange {
        answer: Answer::Refused {
            code: error_code(status.code()),
            retryable,
            retry_after,
        },
        detail,
        body: Bytes::new(),
        headers: http::HeaderMap::new(),
    }
}

/// Whether a code is worth sending again, and after what delay the peer
/// asked for, by the OTLP spec (see the module docs).
pub(super) fn judge(code: tonic::Code, details: &[u8]) -> (bool, Option<Duration>) {
    use tonic::Code as C;
    let retry_after = retry_delay(details);
    let retryable = match code {
        C::Cancelled
        | C::DeadlineExceeded
        | C::Aborted
        | C::OutOfRange
        | C::Unavailable
        | C::DataLoss => true,
        C::ResourceExhausted => retry_after.is_some(),
        _ => false,
    };
    (retryable, retry_after)
}

/// `google.rpc.Status`, as `grpc-status-details-bin` carries it.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

pub(super) const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The delay of a `RetryInfo` among a status's details (a negative one is
/// none at all: retry at once, within the backoff's bounds).
pub(super) fn retry_delay(details: &[u8]) -> Option<Duration> {
    use prost::Message;
    if details.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(details).ok()?;
    let any = status
        .details
        .iter()
        .find(|a| a.type_url == RETRY_INFO_TYPE)?;
    let info = RetryInfo::decode(any.value.as_slice()).ok()?;
    let d = info.retry_delay.unwrap_or_default();
    let secs = u64::try_from(d.seconds).unwrap_or(0);
    let nanos = u32::try_from(d.nanos).unwrap_or(0).min(999_999_999);
    Some(Duration::new(secs, nanos))
}

/// The error code a gRPC status is counted under: `grpc_` and the code's
/// name in snake case.
pub(super) fn error_code(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "grpc_ok",
        C::Cancelled => "grpc_cancelled",
        C::Unknown => "grpc_unknown",
        C::InvalidArgument => "grpc_invalid_argument",
        C::DeadlineExceeded => "grpc_deadline_exceeded",
        C::NotFound => "grpc_not_found",
        C::AlreadyExists => "grpc_already_exists",
        C::PermissionDenied => "grpc_permission_denied",
        C::ResourceExhausted => "grpc_resource_exhausted",
        C::FailedPrecondition => "grpc_failed_precondition",
        C::Aborted => "grpc_aborted",
        C::OutOfRange => "grpc_out_of_range",
        C::Unimplemented => "grpc_unimplemented",
        C::Internal => "grpc_internal",
        C::Unavailable => "grpc_unavailable",
        C::DataLoss => "grpc_data_loss",
        C::Unauthenticated => "grpc_unauthenticated",
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    error_code(code).trim_start_matches("grpc_")
}

fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Sends bytes that are already an encoded message, and hands back the
/// response's bytes undecoded (the sink reads the partial success from
/// them as it does from an OTLP/HTTP body).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct EncodedCodec;

impl Codec for EncodedCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = EncodedCodec;
    type Decoder = EncodedCodec;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        EncodedCodec
    }
}

impl Encoder for EncodedCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for EncodedCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
