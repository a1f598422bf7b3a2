//! OTLP/HTTP: `POST /v1/{traces,metrics,logs}`, protobuf or JSON, plain or
//! gzip; answers in the request's format (OTLP/HTTP spec, "OTLP/HTTP
//! Response"): 200 with an `Export*ServiceResponse`, else a
//! `google.rpc.Status`.

use super::Config;
use super::convert::{Failure, Ingest, Refusal, Request, Response};
use crate::http_util::{self, Body};
use crate::sources::http_receiver::{gunzip, read_body};
use hyper::body::Incoming;
use iotel_engine::{ComponentError, ComponentFuture, Source, SourceContext};
use iotel_formats::otlp::{self, RpcStatus, logs, metrics, traces};
use prost::Message;
use std::sync::Arc;

#[derive(Debug)]
pub(super) struct OtlpSource {
    pub(super) config: Config,
    pub(super) tls: Option<crate::tls::server::TlsListener>,
    /// The same material for OTLP/gRPC, with ALPN `h2`.
    pub(super) grpc_tls: Option<crate::tls::server::TlsListener>,
    pub(super) identity: Option<Arc<crate::tls::identity::Binding>>,
    #[cfg(feature = "auth")]
    pub(super) auth: Option<Arc<crate::auth::Auth>>,
}

impl Source for OtlpSource {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture {
        Box::pin(self.serve(cx))
    }
}

impl OtlpSource {
    async fn serve(self, cx: SourceContext) -> Result<(), ComponentError> {
        let id = cx.metrics.id().to_string();
        let mut ingest = Ingest::new(
            id.clone(),
            cx.out.clone(),
            cx.metrics.clone(),
            cx.registry(),
        );
        ingest.identity = self.identity.clone();
        #[cfg(feature = "auth")]
        if let Some(auth) = &self.auth {
            tokio::spawn(auth.clone().keep_keys(cx.shutdown.clone()));
            ingest.auth = Some(auth.clone());
        }
        let ingest = Arc::new(ingest);
        let limits = Limits {
            max_body: usize::try_from(self.config.max_body_size.bytes()).unwrap_or(usize::MAX),
            max_decoded: usize::try_from(self.config.max_decoded_size.bytes())
                .unwrap_or(usize::MAX),
        };
        let listener = http_util::bind(self.config.http_address)
            .await
            .map_err(ComponentError::new)?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(
            component = %id,
            "receiving OTLP/HTTP on {scheme}://{}/v1/{{traces,metrics,logs}}",
            self.config.http_address
        );
        match &self.tls {
            Some(tls) => {
                tokio::spawn(tls.clone().watch(cx.shutdown.clone()));
            }
            None => tracing::warn!(
                component = %id,
                "listening without TLS on {}; set tls = {{ cert_file, key_file, ca_file }} to \
                 encrypt OTLP/HTTP and authenticate clients by their certificates",
                self.config.http_address
            ),
        }
        let tls = if self.grpc_tls.is_some() {
            "with TLS"
        } else {
            "without TLS"
        };
        tracing::info!(
            component = %id,
            "receiving OTLP/gRPC on {} ({tls})",
            self.config.grpc_address
        );
        if let Some(t) = &self.grpc_tls {
            tokio::spawn(t.clone().watch(cx.shutdown.clone()));
        }
        let grpc = super::grpc::serve(
            self.config.grpc_address,
            ingest.clone(),
            limits.max_decoded,
            self.grpc_tls.clone(),
            cx.shutdown.clone(),
        );
        let http = http_util::serve_with(listener, cx.shutdown.clone(), self.tls, move |req| {
            let ingest = ingest.clone();
            // In a task of its own: a client that hangs up must not cancel
            // a request whose events are already downstream.
            let handling = tokio::spawn(async move { handle(&ingest, limits, req).await });
            async move {
                handling.await.unwrap_or_else(|e| {
                    tracing::error!("handling an OTLP/HTTP request failed: {e}");
                    http_util::response(500, "text/plain; charset=utf-8", "internal error\n")
                })
            }
        });
        let ((), grpc) = tokio::join!(http, grpc);
        grpc.map_err(ComponentError::new)
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_body: usize,
    max_decoded: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => otlp::CONTENT_TYPE,
            Format::Json => otlp::JSON_CONTENT_TYPE,
        }
    }
}

async fn handle(
    ingest: &Ingest,
    limits: Limits,
    req: hyper::Request<Incoming>,
) -> http::Response<Body> {
    // Errors before the content type is known are answered in protobuf,
    // the OTLP/HTTP default.
    let format = content_format(&req).unwrap_or(Format::Protobuf);
    match accept(ingest, limits, req).await {
        Ok(response) => http_util::response(200, format.content_type(), encode(format, &response)),
        Err(r) => {
            ingest.count_refusal(&r, "HTTP");
            refuse(format, &r)
        }
    }
}

fn content_format<B>(req: &hyper::Request<B>) -> Option<Format> {
    let ct = req
        .headers()
        .get(http::header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(otlp::CONTENT_TYPE) {
        Some(Format::Protobuf)
    } else if essence.eq_ignore_ascii_case(otlp::JSON_CONTENT_TYPE) {
        Some(Format::Json)
    } else {
        None
    }
}

fn encode(format: Format, response: &Response) -> Vec<u8> {
    match (format, response) {
        (Format::Protobuf, Response::Logs(r)) => r.encode_to_vec(),
        (Format::Protobuf, Response::Metrics(r)) => r.encode_to_vec(),
        (Format::Protobuf, Response::Traces(r)) => r.encode_to_vec(),
        (Format::Json, Response::Logs(r)) => json(r),
        (Format::Json, Response::Metrics(r)) => json(r),
        (Format::Json, Response::Traces(r)) => json(r),
    }
}

/// A response as OTLP/JSON, without the `"partialSuccess": null` the
/// generated serde mapping writes for "none": `{}` then.
fn json(response: &impl serde::Serialize) -> Vec<u8> {
    let mut v = serde_json::to_value(response).unwrap_or_default();
    if let serde_json::Value::Object(o) = &mut v {
        o.retain(|_, v| !v.is_null());
    }
    v.to_string().into_bytes()
}

fn refuse(format: Format, r: &Refusal) -> http::Response<Body> {
    let status = match r.failure {
        Failure::BadRequest => 400,
        Failure::TooLarge => 413,
        Failure::Unsupported => 415,
        Failure::NotFound => 404,
        Failure::MethodNotAllowed => 405,
        Failure::Unauthenticated => 401,
        Failure::Forbidden => 403,
        Failure::Unavailable => 503,
    };
    let body = match format {
        Format::Protobuf => RpcStatus {
            code: r.grpc_code(),
            message: r.reason.clone(),
        }
        .encode_to_vec(),
        Format::Json => serde_json::json!({"code": r.grpc_code(), "message": r.reason})
            .to_string()
            .into_bytes(),
    };
    let mut resp = http_util::response(status, format.content_type(), body);
    let headers = resp.headers_mut();
    if let Some(v) = r
        .www_authenticate
        .as_deref()
        .and_then(|v| http::HeaderValue::from_str(v).ok())
    {
        headers.insert(http::header::WWW_AUTHENTICATE, v);
    }
    match r.failure {
        Failure::Unavailable => {
            headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(1));
        }
        Failure::TooLarge => {
            // The body may be left unread: do not reuse the connection.
            headers.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        _ => {}
    }
    resp
}

#[derive(Debug, Clone, Copy)]
enum Signal {
    Logs,
    Metrics,
    Traces,
}

async fn accept(
    ingest: &Ingest,
    limits: Limits,
    req: hyper::Request<Incoming>,
) -> Result<Response, Refusal> {
    let signal = match req.uri().path() {
        "/v1/logs" => Signal::Logs,
        "/v1/metrics" => Signal::Metrics,
        "/v1/traces" => Signal::Traces,
        _ => {
            return Err(Refusal::new(
                Failure::NotFound,
                "not_found",
                "no such path; OTLP/HTTP takes POST /v1/traces, /v1/metrics and /v1/logs",
            ));
        }
    };
    if req.method() != http::Method::POST {
        return Err(Refusal::new(
            Failure::MethodNotAllowed,
            "method_not_allowed",
            format!("expected POST, got {}", req.method()),
        ));
    }
    // The certificate's identity and the token are checked before the
    // body is read.
    let admitted = ingest
        .admit(
            req.headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            req.extensions().get::<http_util::PeerIdentity>(),
            http_util::peer_of(&req),
        )
        .await?;
    let Some(format) = content_format(&req) else {
        let got = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map_or_else(|| "none".to_string(), |v| format!("{v:?}"));
        return Err(Refusal::new(
            Failure::Unsupported,
            "unsupported_content_type",
            format!(
                "Content-Type {got}: expected {} or {}",
                otlp::CONTENT_TYPE,
                otlp::JSON_CONTENT_TYPE
            ),
        ));
    };
    let gzip = match req
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "identity") => false,
        Some("gzip") => true,
        Some(other) => {
            return Err(Refusal::new(
                Failure::Unsupported,
                "unsupported_encoding",
                format!("Content-Encoding {other:?}: expected gzip or none"),
            ));
        }
    };
    let body = read_body(req, limits.max_body).await?;
    let body = if gzip {
        gunzip(&body, limits.max_decoded)?
    } else {
        body.to_vec()
    };
    let request = decode(signal, format, &body)?;
    ingest.ingest(request, &admitted).await
}

fn decode(signal: Signal, format: Format, body: &[u8]) -> Result<Request, Refusal> {
    let what = match signal {
        Signal::Logs => "ExportLogsServiceRequest",
        Signal::Metrics => "ExportMetricsServiceRequest",
        Signal::Traces => "ExportTraceServiceRequest",
    };
    let bad = |e: String| {
        Refusal::new(
            Failure::BadRequest,
            "bad_payload",
            format!("not a valid {what}: {e}"),
        )
    };
    match format {
        Format::Protobuf => match signal {
            Signal::Logs => logs::decode_request(body).map(Request::Logs),
            Signal::Metrics => metrics::decode_request(body).map(Request::Metrics),
            Signal::Traces => traces::decode_request(body).map(Request::Traces),
        }
        .map_err(|e| bad(e.to_string())),
        Format::Json => match signal {
            Signal::Logs => logs::decode_json_request(body).map(Request::Logs),
            Signal::Metrics => metrics::decode_json_request(body).map(Request::Metrics),
            Signal::Traces => traces::decode_json_request(body).map(Request::Traces),
        }
        .map_err(|e| bad(e.to_string())),
    }
}
